//! One owner per tenant when several `siyu serve` nodes share one PostgreSQL database.
//!
//! A [`Leaser`] runs beside a node's writer (started in [`crate::EngineMode::Leased`]). Every
//! [`Leaser::step`] — a second apart, so a new tenant is served within a second — it takes
//! free leases up to its fair share; every third of the lease's length it also keeps the
//! node's row alive and renews the leases it holds. Its fair share is (the tenants divided by
//! the nodes alive, rounded up), and gives one up when it holds more than that, so that a
//! node that joins gets work and the tenants of one that died are taken over within the
//! lease's length. Taking a tenant means: take its lease (a new fencing token), resume its
//! engine from the snapshot, the log and the live mark exactly as a start does, and hand it
//! to the writer ([`crate::Ingestor::adopt`]). Giving one up means: the writer stores what the
//! engine derived and drops it, and only then is the lease released, so the next owner
//! resumes from a mark that covers everything derived here. A lease found lost (renewal
//! refused: this node stalled past it and another took it) drops the engine at once; the
//! store refuses anything this node still tries to write for it (see `siyu_store::leases`).
//!
//! So each derived row is stored by exactly one node: the mark moves only with what was
//! stored, under the token, and the next owner derives again from there.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use rand::Rng;
use siyu_domain::Millis;
use siyu_domain::time::Clock;
use siyu_store::{Node, Store, TenantId};

use crate::{App, AppError};

/// A node's lease settings.
#[derive(Debug, Clone)]
pub struct LeaseOptions {
    /// How long a lease (and a node's row) lasts without renewal: the longest a dead node's
    /// tenants wait for another node.
    pub ttl: Duration,
    /// The address other nodes and the CLI reach this node at (`host:port`).
    pub addr: String,
}

impl LeaseOptions {
    /// A step every third of the lease: two renewals can fail before it expires.
    pub fn interval(&self) -> Duration {
        self.ttl / 3
    }

    fn ttl_ms(&self) -> Millis {
        self.ttl.as_millis() as Millis
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".to_string())
}

/// Whether a node id (`host-pid-random`, see [`new_node`]) names a process of this host that
/// is gone: a server restarted after `kill -9` takes its predecessor's leases at once instead
/// of waiting for them to expire. Any other node's leases expire.
fn dead_here(node: &str) -> bool {
    let mut parts = node.rsplitn(3, '-');
    let (Some(_), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(pid) = pid.parse::<i32>() else {
        return false;
    };
    if host != hostname() || pid as u32 == std::process::id() || pid <= 0 {
        return false;
    }
    #[cfg(unix)]
    {
        // SAFETY: signal 0 only asks whether the process exists; no pointers.
        let r = unsafe { libc::kill(pid, 0) };
        r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
    }
    #[cfg(not(unix))]
    false
}

/// This node's identity: an id unique per process run (`host-pid-random`; `host` defaults to
/// the host's name) and the secret the CLI forwards with.
pub fn new_node(addr: &str, host: Option<&str>) -> Node {
    let mut rng = rand::rng();
    let host = host.map_or_else(hostname, str::to_string);
    let secret: [u8; 24] = rng.random();
    Node {
        id: format!("{host}-{}-{:08x}", std::process::id(), rng.random::<u32>()),
        addr: addr.to_string(),
        secret: format!("sy_n_{}", hex::encode(secret)),
        expires_at: 0,
    }
}

/// What a step did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LeaseStep {
    pub taken: Vec<TenantId>,
    pub released: Vec<TenantId>,
    pub lost: Vec<TenantId>,
}

/// Takes, keeps and gives up this node's tenants (see the module docs).
pub struct Leaser {
    app: Arc<App>,
    node: Node,
    options: LeaseOptions,
    clock: Arc<dyn Clock>,
    /// Tenant → the token of its lease held here.
    held: BTreeMap<TenantId, i64>,
    /// When the leases were last renewed (`None`: never).
    renewed_at: Option<Millis>,
}

/// How often a [`Leaser`] looks for free leases (a new tenant, a dead node's).
pub const LOOK: Duration = Duration::from_secs(1);

impl Leaser {
    pub fn new(app: Arc<App>, node: Node, options: LeaseOptions) -> Leaser {
        let clock = app.ingestor.clock().clone();
        Leaser {
            app,
            node,
            options,
            clock,
            held: BTreeMap::new(),
            renewed_at: None,
        }
    }

    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The tenants held here.
    pub fn held(&self) -> Vec<TenantId> {
        self.held.keys().copied().collect()
    }

    fn store(&self) -> &dyn Store {
        &**self.app.store()
    }

    /// One round: heartbeat and renew (when a third of the lease has passed since the last
    /// renewal), take free leases up to the fair share, shed one above it.
    pub fn step(&mut self) -> Result<LeaseStep, AppError> {
        let now = self.clock.now();
        let until = now + self.options.ttl_ms();
        let mut done = LeaseStep::default();
        let due = self
            .renewed_at
            .is_none_or(|at| now - at >= self.options.interval().as_millis() as Millis);
        if due {
            self.renew(now, until, &mut done)?;
        }
        self.balance(now, until, &mut done)?;
        Ok(done)
    }

    fn renew(&mut self, now: Millis, until: Millis, done: &mut LeaseStep) -> Result<(), AppError> {
        self.node.expires_at = until;
        self.store().heartbeat(&self.node)?;
        for (tenant, token) in self.held.clone() {
            if !self
                .store()
                .renew_lease(tenant, &self.node.id, token, until)?
            {
                tracing::warn!(tenant, node = %self.node.id, "lease lost to another node");
                self.held.remove(&tenant);
                self.app.ingestor.disown(tenant);
                done.lost.push(tenant);
            }
        }
        self.renewed_at = Some(now);
        Ok(())
    }

    fn balance(
        &mut self,
        now: Millis,
        until: Millis,
        done: &mut LeaseStep,
    ) -> Result<(), AppError> {
        let nodes = self.store().nodes(now)?.len().max(1);
        let tenants = self.store().tenants()?;
        let fair = tenants.len().div_ceil(nodes);
        let leases: BTreeMap<TenantId, siyu_store::Lease> = self
            .store()
            .leases()?
            .into_iter()
            .map(|l| (l.tenant, l))
            .collect();
        for t in &tenants {
            if self.held.len() >= fair {
                break;
            }
            let lease = leases.get(&t.id);
            let elsewhere = lease.filter(|l| l.live(now) && l.node != self.node.id);
            // A lease of this host's process that is gone is taken as if expired.
            let dead = elsewhere.filter(|l| dead_here(&l.node));
            if self.held.contains_key(&t.id) || (elsewhere.is_some() && dead.is_none()) {
                continue;
            }
            let at = dead.map_or(now, |l| l.expires_at.max(now));
            if let Some(l) = dead {
                tracing::info!(tenant = %t.name, node = %l.node, "taking over from a process of this host that is gone");
                let _ = self.store().remove_node(&l.node);
            }
            if let Some(lease) = self.store().acquire_lease(t.id, &self.node.id, at, until)? {
                match self.take(t.id, now) {
                    Ok(()) => {
                        tracing::info!(tenant = %t.name, token = lease.token, "serving tenant");
                        self.held.insert(t.id, lease.token);
                        done.taken.push(t.id);
                    }
                    Err(e) => {
                        tracing::error!(tenant = %t.name, error = %e, "could not load a tenant taken over; giving it up");
                        let _ = self.app.ingestor.release(t.id);
                        self.store()
                            .release_lease(t.id, &self.node.id, lease.token)?;
                    }
                }
            }
        }
        if nodes > 1 && self.held.len() > fair {
            // The newest tenant goes first: the oldest keep their node while the cluster
            // settles.
            if let Some((&tenant, &token)) = self.held.iter().next_back() {
                self.give_up(tenant, token)?;
                done.released.push(tenant);
            }
        }
        Ok(())
    }

    /// Resumes a tenant's engine as a start does and hands it to the writer.
    fn take(&self, tenant: TenantId, now: Millis) -> Result<(), AppError> {
        let mut engine = crate::identity::resume_live(self.store(), tenant, now)?;
        crate::ingest::live_step(self.store(), &mut engine, tenant, now);
        self.app.ingestor.adopt(tenant, engine)
    }

    fn give_up(&mut self, tenant: TenantId, token: i64) -> Result<(), AppError> {
        self.app.ingestor.release(tenant)?;
        self.held.remove(&tenant);
        self.store().release_lease(tenant, &self.node.id, token)?;
        tracing::info!(tenant, "gave a tenant up to another node");
        Ok(())
    }

    /// Gives every tenant up (what each derived stored first) and removes the node: on a
    /// graceful stop, the other nodes take them at their next step rather than after expiry.
    pub fn release_all(&mut self) {
        for (tenant, token) in self.held.clone() {
            if let Err(e) = self.give_up(tenant, token) {
                tracing::warn!(tenant, error = %e, "could not give a tenant up; its lease expires");
            }
        }
        if let Err(e) = self.store().remove_node(&self.node.id) {
            tracing::warn!(error = %e, "could not remove this node's row; it expires");
        }
    }

    /// Steps every [`LOOK`] (or every renewal interval, if shorter) until `stop` is sent or
    /// dropped, then gives everything up.
    pub fn run_until_stopped(mut self, stop: Receiver<()>) {
        loop {
            if let Err(e) = self.step() {
                tracing::error!(error = %e, "lease step failed; retrying");
            }
            match stop.recv_timeout(LOOK.min(self.options.interval())) {
                Err(RecvTimeoutError::Timeout) => continue,
                _ => break,
            }
        }
        self.release_all();
    }
}

/// Who serves a tenant, as a request that arrived here needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// This process.
    Here,
    /// Another node, at this address.
    Elsewhere(String),
    /// No node holds it right now (passing between nodes): try again shortly.
    Nobody,
}

impl App {
    /// Who serves `tenant`: here, unless engines are leased and another node holds it.
    pub fn owner(&self, tenant: TenantId) -> Result<Owner, AppError> {
        if self.ingestor.serves(tenant) {
            return Ok(Owner::Here);
        }
        let now = self.ingestor.clock().now();
        let Some(lease) = self
            .store()
            .leases()?
            .into_iter()
            .find(|l| l.tenant == tenant && l.live(now))
        else {
            return Ok(Owner::Nobody);
        };
        Ok(self
            .store()
            .nodes(now)?
            .into_iter()
            .find(|n| n.id == lease.node)
            .map_or(Owner::Nobody, |n| Owner::Elsewhere(n.addr)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use siyu_domain::time::ManualClock;
    use siyu_store::{Durability, SqliteStore};

    use crate::EngineMode;

    const T0: Millis = 1_793_000_000_000;

    fn node(app: &Arc<App>, id: &str) -> Leaser {
        let mut n = new_node("127.0.0.1:1", None);
        n.id = id.to_string();
        Leaser::new(
            app.clone(),
            n,
            LeaseOptions {
                ttl: Duration::from_secs(15),
                addr: "127.0.0.1:1".into(),
            },
        )
    }

    #[test]
    fn nodes_share_tenants_and_take_over_a_dead_ones() {
        let dir = tempfile::tempdir().unwrap();
        let open = || -> Arc<dyn Store> {
            Arc::new(SqliteStore::open(dir.path(), Durability::Normal).unwrap())
        };
        let clock = Arc::new(ManualClock::new(T0));
        let start = |store: Arc<dyn Store>| {
            store.require_leases();
            Arc::new(App::start_with_clock(store, EngineMode::Leased, clock.clone()).unwrap())
        };
        let (app_a, app_b) = (start(open()), start(open()));
        for name in ["t1", "t2", "t3", "t4"] {
            let name = crate::TenantName::parse(name).unwrap();
            crate::tenants::create(&**app_a.store(), &name).unwrap();
        }
        let mut a = node(&app_a, "a");
        assert_eq!(
            a.step().unwrap().taken.len(),
            4,
            "alone, a takes every tenant"
        );
        assert_eq!(app_a.ingestor.served().len(), 4);
        let mut b = node(&app_b, "b");
        assert!(b.step().unwrap().taken.is_empty(), "all held by a");
        // a sheds down to its share, b takes what a gave up.
        for _ in 0..4 {
            a.step().unwrap();
            b.step().unwrap();
        }
        assert_eq!((a.held().len(), b.held().len()), (2, 2));
        assert!(a.held().iter().all(|t| !b.held().contains(t)), "disjoint");
        let t = a.held()[0];
        assert_eq!(
            app_b.owner(t).unwrap(),
            Owner::Elsewhere("127.0.0.1:1".into())
        );
        assert!(matches!(
            app_b.stats(t),
            Err(AppError::NotOwner(x)) if x == t
        ));
        // a dies (no more steps): after its lease expires, b takes its tenants.
        clock.advance(16_000);
        b.step().unwrap();
        assert_eq!(b.held().len(), 4);
        // a wakes up: its renewals are refused, and it serves nothing.
        let lost = a.step().unwrap().lost;
        assert_eq!(lost.len(), 2);
        app_a.ingestor.tick();
        assert!(app_a.ingestor.served().is_empty());
    }
}
