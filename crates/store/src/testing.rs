//! Helpers for tests of this crate and of the crates above it: a fresh, isolated PostgreSQL
//! schema per test, so the one test suite runs against both backends side by side, and
//! dropped again when the test ends.
//!
//! There is no silent skip: if PostgreSQL cannot be reached the test fails and says where it
//! looked. Set `SIYU_TEST_DATABASE_URL` to point elsewhere.
//!
//! [`Cluster`] stops and starts the local PostgreSQL under a running server, for the outage
//! tests, which run only when `SIYU_TEST_DATABASE_URL` is set (see there); [`Faulty`] fails
//! chosen store calls.

use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};

/// The PostgreSQL the tests use.
pub fn base_url() -> String {
    std::env::var("SIYU_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// The prefix of every test schema: `siyu_t_<pid>_<n>`.
const PREFIX: &str = "siyu_t_";

fn connect() -> postgres::Client {
    let base = base_url();
    base.parse::<postgres::Config>()
        .unwrap_or_else(|e| panic!("SIYU_TEST_DATABASE_URL {base:?} is not a URL: {e}"))
        .connect(postgres::NoTls)
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL for the tests is not reachable at {base} ({e}). \
                 Start it or set SIYU_TEST_DATABASE_URL; the PostgreSQL tests never skip."
            )
        })
}

/// An empty schema of its own for one test; dropped (with everything in it) when this is.
/// Hold it for as long as anything uses [`TestSchema::url`], and declare it before the store
/// that uses it, so that the store is dropped first.
#[derive(Debug)]
pub struct TestSchema {
    /// A URL whose connections use the schema.
    pub url: String,
    name: String,
}

/// Creates a new empty schema. The first call in a process also drops the schemas that test
/// processes no longer running left behind (killed before they could drop their own).
pub fn fresh_postgres() -> TestSchema {
    static N: AtomicU32 = AtomicU32::new(0);
    static SWEEP: Once = Once::new();
    SWEEP.call_once(sweep_orphans);
    let name = format!(
        "{PREFIX}{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    connect()
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
        ))
        .expect("create test schema");
    let base = base_url();
    let sep = if base.contains('?') { '&' } else { '?' };
    TestSchema {
        url: format!("{base}{sep}options=-c%20search_path%3D{name}"),
        name,
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        // The synchronous client cannot run inside an async context: use a thread of its own.
        let name = std::mem::take(&mut self.name);
        let dropped = std::thread::spawn(move || {
            connect().batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) && !std::thread::panicking() {
            eprintln!("warning: could not drop a test schema: {dropped:?}");
        }
    }
}

/// Drops `siyu_t_<pid>_*` schemas whose process is gone.
fn sweep_orphans() {
    let mut client = connect();
    let Ok(rows) = client.query(
        "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'siyu\\_t\\_%'",
        &[],
    ) else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        let pid = name[PREFIX.len()..]
            .split('_')
            .next()
            .and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"));
        }
    }
}

/// A store that fails chosen calls of `record_live` and `append` (counted from 1) and passes
/// everything else to the store it wraps: for tests of what a failed write must not lose.
pub struct Faulty {
    pub inner: std::sync::Arc<dyn crate::Store>,
    record_live_calls: AtomicU32,
    append_calls: AtomicU32,
    fail_record_live: Vec<u32>,
    fail_append: Vec<u32>,
    /// Armed by [`Faulty::hold_next_record_live`].
    hold: std::sync::Mutex<Option<Hold>>,
    /// Armed by [`Faulty::hold_next_scan`].
    hold_scan: std::sync::Mutex<Option<Hold>>,
}

type Hold = (
    std::sync::mpsc::SyncSender<()>,
    std::sync::mpsc::Receiver<()>,
);

impl Faulty {
    pub fn new(
        inner: std::sync::Arc<dyn crate::Store>,
        fail_record_live: &[u32],
        fail_append: &[u32],
    ) -> Faulty {
        Faulty {
            inner,
            record_live_calls: AtomicU32::new(0),
            append_calls: AtomicU32::new(0),
            fail_record_live: fail_record_live.to_vec(),
            fail_append: fail_append.to_vec(),
            hold: std::sync::Mutex::new(None),
            hold_scan: std::sync::Mutex::new(None),
        }
    }

    /// [`Faulty::hold_next_record_live`] for the next `scan` (a replay reading the log).
    pub fn hold_next_scan(
        &self,
    ) -> (
        std::sync::mpsc::Receiver<()>,
        std::sync::mpsc::SyncSender<()>,
    ) {
        let (entered_tx, entered) = std::sync::mpsc::sync_channel(1);
        let (release, release_rx) = std::sync::mpsc::sync_channel(1);
        *self.hold_scan.lock().unwrap_or_else(|p| p.into_inner()) = Some((entered_tx, release_rx));
        (entered, release)
    }

    /// Makes the next `record_live` call stop inside the store: the first receiver gets a
    /// message once the call is in, and the call goes on when the sender sends or is dropped.
    /// For tests of what others can do while a commit is in progress.
    pub fn hold_next_record_live(
        &self,
    ) -> (
        std::sync::mpsc::Receiver<()>,
        std::sync::mpsc::SyncSender<()>,
    ) {
        let (entered_tx, entered) = std::sync::mpsc::sync_channel(1);
        let (release, release_rx) = std::sync::mpsc::sync_channel(1);
        *self.hold.lock().unwrap_or_else(|p| p.into_inner()) = Some((entered_tx, release_rx));
        (entered, release)
    }

    /// How many times `record_live` was called.
    pub fn record_live_calls(&self) -> u32 {
        self.record_live_calls.load(Ordering::SeqCst)
    }

    fn fault(what: &str) -> crate::StoreError {
        crate::StoreError::Io {
            path: format!("(injected fault in {what})"),
            source: std::io::Error::other("injected fault"),
        }
    }
}

/// Passes a method through to `inner`.
macro_rules! pass {
    ($($name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        $(fn $name(&self $(, $arg: $ty)*) -> $ret { self.inner.$name($($arg),*) })*
    };
}

impl crate::Snapshots for Faulty {
    pass! {
        put_snapshot(&self, tenant: crate::TenantId, snap: &crate::StoredSnapshot) -> crate::Result<()>;
        snapshot(&self, tenant: crate::TenantId) -> crate::Result<Option<crate::StoredSnapshot>>;
        drop_snapshot(&self, tenant: crate::TenantId) -> crate::Result<()>;
    }
}

impl crate::TriggerLog for Faulty {
    pass! {
        event_heads(&self, tenant: crate::TenantId, after: i64, upto: i64, only: Option<&[i64]>, limit: usize) -> crate::Result<Vec<crate::EventHead>>;
        trigger_cursor(&self, tenant: crate::TenantId, consumer: &str) -> crate::Result<Option<crate::StoredCursor>>;
        set_trigger_cursor(&self, tenant: crate::TenantId, consumer: &str, after: i64, now: siyu_domain::Millis) -> crate::Result<()>;
        trigger_cursors(&self, tenant: crate::TenantId) -> crate::Result<Vec<crate::StoredCursor>>;
    }
}

impl crate::Tenants for Faulty {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    pass! {
        create_tenant(&self, name: &str, write_key_hash: &str, admin_key_hash: &str, now: siyu_domain::Millis) -> crate::Result<crate::Tenant>;
        tenants(&self) -> crate::Result<Vec<crate::Tenant>>;
        key_lookup(&self, key_hash: &str) -> crate::Result<Option<crate::KeyMatch>>;
        rotate_key(&self, tenant: crate::TenantId, role: crate::KeyRole, new_hash: &str, now: siyu_domain::Millis, retire_at: siyu_domain::Millis) -> crate::Result<()>;
        set_custom_domain(&self, tenant: crate::TenantId, domain: siyu_domain::Domain) -> crate::Result<()>;
    }
}

impl crate::EventLog for Faulty {
    fn append(
        &self,
        batches: &[crate::AppendBatch<'_>],
        received_at: siyu_domain::Millis,
    ) -> crate::Result<Vec<Vec<crate::Appended>>> {
        let n = self.append_calls.fetch_add(1, Ordering::SeqCst) + 1;
        if self.fail_append.contains(&n) {
            return Err(Faulty::fault("append"));
        }
        self.inner.append(batches, received_at)
    }

    fn scan(
        &self,
        tenant: crate::TenantId,
        after: i64,
        f: &mut dyn FnMut(crate::StoredEvent) -> crate::Result<()>,
    ) -> crate::Result<()> {
        let held = self
            .hold_scan
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some((entered, release)) = held {
            let _ = entered.send(());
            let _ = release.recv();
        }
        self.inner.scan(tenant, after, f)
    }

    pass! {
        event_at(&self, tenant: crate::TenantId, seq: i64) -> crate::Result<Option<crate::StoredEvent>>;
        events_at(&self, tenant: crate::TenantId, seqs: &[i64]) -> crate::Result<Vec<crate::StoredEvent>>;
        event_count(&self, tenant: crate::TenantId) -> crate::Result<u64>;
        last_seq(&self, tenant: crate::TenantId) -> crate::Result<i64>;
        flush(&self) -> crate::Result<()>;
        check_writable(&self) -> crate::Result<()>;
    }
}

impl crate::Decisions for Faulty {
    // Named in full: `Leads` has a `rules` of its own.
    fn rules(&self, tenant: crate::TenantId) -> crate::Result<Option<(i64, String)>> {
        crate::Decisions::rules(&*self.inner, tenant)
    }

    pass! {
        set_rules(&self, tenant: crate::TenantId, toml: &str) -> crate::Result<i64>;
        add_decision(&self, tenant: crate::TenantId, d: &crate::NewDecision<'_>) -> crate::Result<i64>;
        decisions(&self, tenant: crate::TenantId, after_id: i64) -> crate::Result<Vec<crate::StoredDecision>>;
    }
}

impl crate::LiveLog for Faulty {
    fn record_live(
        &self,
        tenant: crate::TenantId,
        rec: &crate::LiveRecord<'_>,
        mark: &crate::LiveMark,
    ) -> crate::Result<()> {
        let n = self.record_live_calls.fetch_add(1, Ordering::SeqCst) + 1;
        let held = self.hold.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((entered, release)) = held {
            let _ = entered.send(());
            let _ = release.recv();
        }
        if self.fail_record_live.contains(&n) {
            return Err(Faulty::fault("record_live"));
        }
        self.inner.record_live(tenant, rec, mark)
    }

    pass! {
        segment_changes(&self, tenant: crate::TenantId, segment: Option<i64>, fans: Option<&[i64]>, after: i64, limit: usize) -> crate::Result<Vec<crate::StoredSegmentChange>>;
        recorded_members(&self, tenant: crate::TenantId) -> crate::Result<Vec<(i64, i64)>>;
        live_mark(&self, tenant: crate::TenantId) -> crate::Result<Option<crate::LiveMark>>;
        recorded_layers(&self, tenant: crate::TenantId) -> crate::Result<Vec<(i64, String)>>;
        transitions(&self, tenant: crate::TenantId, fans: Option<&[i64]>, after: i64, limit: usize) -> crate::Result<Vec<crate::StoredTransition>>;
    }
}

impl crate::Segments for Faulty {
    pass! {
        create_segment(&self, tenant: crate::TenantId, name: &str, expr: &str, tag: Option<&str>, now: siyu_domain::Millis) -> crate::Result<crate::StoredSegment>;
        segments(&self, tenant: crate::TenantId) -> crate::Result<Vec<crate::StoredSegment>>;
        delete_segment(&self, tenant: crate::TenantId, id: i64, now: siyu_domain::Millis) -> crate::Result<bool>;
        add_tag_changes(&self, tenant: crate::TenantId, rows: &[crate::StoredTagChange]) -> crate::Result<()>;
        tag_changes(&self, tenant: crate::TenantId, fans: Option<&[i64]>, after: i64, limit: usize) -> crate::Result<Vec<crate::StoredTagChange>>;
    }
}

impl crate::Connectors for Faulty {
    pass! {
        set_connector(&self, tenant: crate::TenantId, kind: &str, config: &str, now: siyu_domain::Millis) -> crate::Result<()>;
        connector(&self, tenant: crate::TenantId, kind: &str) -> crate::Result<Option<crate::StoredConnector>>;
        connectors(&self, kind: &str) -> crate::Result<Vec<(crate::TenantId, crate::StoredConnector)>>;
        set_connector_state(&self, tenant: crate::TenantId, kind: &str, state: &str) -> crate::Result<()>;
    }
}

impl crate::Journeys for Faulty {
    pass! {
        put_journey(&self, tenant: crate::TenantId, name: &str, definition: &str, starts_after: i64, now: siyu_domain::Millis) -> crate::Result<i64>;
        journeys(&self, tenant: crate::TenantId) -> crate::Result<Vec<crate::journeys::StoredJourney>>;
        journey_version(&self, tenant: crate::TenantId, name: &str, version: i64) -> crate::Result<Option<String>>;
        set_journey_paused(&self, tenant: crate::TenantId, name: &str, paused: bool, now: siyu_domain::Millis) -> crate::Result<bool>;
        journey_ids(&self, tenant: crate::TenantId) -> crate::Result<crate::journeys::JourneyIds>;
        commit_runs(&self, tenant: crate::TenantId, batch: &crate::journeys::RunBatch<'_>) -> crate::Result<()>;
        due_runs(&self, tenant: crate::TenantId, now: siyu_domain::Millis, limit: usize) -> crate::Result<Vec<crate::journeys::StoredRun>>;
        next_wake(&self, tenant: crate::TenantId) -> crate::Result<Option<siyu_domain::Millis>>;
        runs_of(&self, tenant: crate::TenantId, fans: &[i64], open_only: bool) -> crate::Result<Vec<crate::journeys::StoredRun>>;
        run(&self, tenant: crate::TenantId, id: i64) -> crate::Result<Option<crate::journeys::StoredRun>>;
        run_history(&self, tenant: crate::TenantId, run: i64) -> crate::Result<Vec<crate::journeys::StoredRunEvent>>;
        step_counts(&self, tenant: crate::TenantId, journey: &str) -> crate::Result<Vec<crate::journeys::StepCount>>;
        run_counts(&self, tenant: crate::TenantId, journey: &str) -> crate::Result<Vec<crate::journeys::RunCount>>;
        variants(&self, tenant: crate::TenantId, journey: &str) -> crate::Result<Vec<crate::journeys::StoredVariant>>;
        fan_states(&self, tenant: crate::TenantId, fans: &[i64]) -> crate::Result<Vec<crate::journeys::StoredFanState>>;
        fan_sends(&self, tenant: crate::TenantId, fans: &[i64], day: i32) -> crate::Result<Vec<crate::journeys::FanSends>>;
        outbox_due(&self, tenant: crate::TenantId, channel: &str, now: siyu_domain::Millis, limit: usize) -> crate::Result<Vec<crate::journeys::StoredOutbox>>;
        outbox_next_at(&self, tenant: crate::TenantId, channel: &str) -> crate::Result<Option<siyu_domain::Millis>>;
        settle_outbox(&self, tenant: crate::TenantId, settled: &[crate::journeys::Settle], outcomes: &[crate::journeys::StoredOutbox]) -> crate::Result<()>;
        outbox(&self, tenant: crate::TenantId, filter: &crate::journeys::OutboxFilter<'_>) -> crate::Result<Vec<crate::journeys::StoredOutbox>>;
        retry_dead(&self, tenant: crate::TenantId, ids: Option<&[i64]>, now: siyu_domain::Millis) -> crate::Result<usize>;
        tasks(&self, tenant: crate::TenantId, filter: &crate::journeys::TaskFilter<'_>) -> crate::Result<Vec<crate::journeys::StoredTask>>;
        task(&self, tenant: crate::TenantId, id: i64) -> crate::Result<Option<crate::journeys::StoredTask>>;
        update_task(&self, tenant: crate::TenantId, id: i64, change: &crate::journeys::TaskChange, now: siyu_domain::Millis) -> crate::Result<Option<crate::journeys::StoredTask>>;
        wake_held(&self, tenant: crate::TenantId, journey: &str, now: siyu_domain::Millis) -> crate::Result<usize>;
        outbox_counts(&self, tenant: crate::TenantId, journey: &str) -> crate::Result<Vec<crate::journeys::OutboxCount>>;
    }
}

impl crate::Spend for Faulty {
    pass! {
        put_spend(&self, tenant: crate::TenantId, rows: &[crate::spend::StoredSpend], now: siyu_domain::Millis) -> crate::Result<usize>;
        spend(&self, tenant: crate::TenantId, from_day: i32, to_day: i32) -> crate::Result<Vec<crate::spend::StoredSpend>>;
    }
}

impl crate::Leads for Faulty {
    pass! {
        lead_rules(&self, tenant: crate::TenantId) -> crate::Result<Vec<crate::leads::StoredRule>>;
        put_team(&self, tenant: crate::TenantId, team: &crate::leads::StoredTeam) -> crate::Result<()>;
        teams(&self, tenant: crate::TenantId) -> crate::Result<Vec<crate::leads::StoredTeam>>;
        put_agent(&self, tenant: crate::TenantId, agent: &crate::leads::StoredAgent) -> crate::Result<()>;
        agents(&self, tenant: crate::TenantId) -> crate::Result<Vec<crate::leads::StoredAgent>>;
        put_lead_rules(&self, tenant: crate::TenantId, rules: &[crate::leads::StoredRule]) -> crate::Result<()>;
        lead_ids(&self, tenant: crate::TenantId) -> crate::Result<crate::leads::LeadIds>;
        commit_leads(&self, tenant: crate::TenantId, batch: &crate::leads::LeadBatch<'_>) -> crate::Result<()>;
        leads(&self, tenant: crate::TenantId, filter: &crate::leads::LeadFilter<'_>) -> crate::Result<Vec<crate::leads::StoredLead>>;
        lead(&self, tenant: crate::TenantId, id: i64) -> crate::Result<Option<crate::leads::StoredLead>>;
        open_leads_of(&self, tenant: crate::TenantId, fans: &[i64]) -> crate::Result<Vec<crate::leads::StoredLead>>;
        arrivals(&self, tenant: crate::TenantId, lead: i64) -> crate::Result<Vec<crate::leads::StoredArrival>>;
        arrivals_known(&self, tenant: crate::TenantId, event_ids: &[&str]) -> crate::Result<Vec<String>>;
        lead_log(&self, tenant: crate::TenantId, lead: i64) -> crate::Result<Vec<crate::leads::StoredLeadLog>>;
        open_per_owner(&self, tenant: crate::TenantId) -> crate::Result<Vec<(String, i64)>>;
        agent_days(&self, tenant: crate::TenantId, day: i32) -> crate::Result<Vec<crate::leads::AgentDay>>;
        groups(&self, tenant: crate::TenantId) -> crate::Result<Vec<crate::leads::StoredGroup>>;
        members(&self, tenant: crate::TenantId, group: i64, fans: Option<&[i64]>) -> crate::Result<Vec<crate::leads::StoredMember>>;
        groups_of(&self, tenant: crate::TenantId, fan: i64) -> crate::Result<Vec<i64>>;
        group_days(&self, tenant: crate::TenantId, group: i64, from_day: i32) -> crate::Result<Vec<crate::leads::GroupDay>>;
        invites_held(&self, tenant: crate::TenantId, since: siyu_domain::Millis) -> crate::Result<Vec<(i64, i64)>>;
        invites_of(&self, tenant: crate::TenantId, fans: &[i64]) -> crate::Result<Vec<crate::leads::StoredInvite>>;
        arrivals_of(&self, tenant: crate::TenantId, leads: &[i64]) -> crate::Result<Vec<crate::leads::StoredArrival>>;
    }
}

impl crate::Leases for Faulty {
    fn require_leases(&self) {
        self.inner.require_leases()
    }

    pass! {
        heartbeat(&self, node: &crate::Node) -> crate::Result<()>;
        remove_node(&self, id: &str) -> crate::Result<()>;
        nodes(&self, now: siyu_domain::Millis) -> crate::Result<Vec<crate::Node>>;
        acquire_lease(&self, tenant: crate::TenantId, node: &str, now: siyu_domain::Millis, expires_at: siyu_domain::Millis) -> crate::Result<Option<crate::Lease>>;
        renew_lease(&self, tenant: crate::TenantId, node: &str, token: i64, expires_at: siyu_domain::Millis) -> crate::Result<bool>;
        release_lease(&self, tenant: crate::TenantId, node: &str, token: i64) -> crate::Result<()>;
        leases(&self) -> crate::Result<Vec<crate::Lease>>;
    }
}

/// The local PostgreSQL cluster that serves [`base_url`], for tests that take it away under a
/// running server and bring it back: found among `pg_lsclusters` by the URL's port, controlled
/// with `pg_ctlcluster` (which needs root or the cluster's owner).
///
/// Such a test stops the machine's PostgreSQL, so it is opt-in: [`Cluster::from_env`] is
/// `None` when `SIYU_TEST_DATABASE_URL` is unset (CI sets it). Once it is set, a cluster that
/// cannot be found or controlled fails the test; it never skips.
#[derive(Debug)]
pub struct Cluster {
    version: String,
    name: String,
    host: String,
    port: u16,
}

/// How long a start or a stop may take before the test gives up.
const CLUSTER_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

impl Cluster {
    /// The cluster serving `SIYU_TEST_DATABASE_URL`, or `None` (with a note on stderr) when
    /// that is unset. Panics when it is set and no local cluster serves it.
    pub fn from_env() -> Option<Cluster> {
        if std::env::var_os("SIYU_TEST_DATABASE_URL").is_none() {
            eprintln!(
                "skipped: this test stops and starts the local PostgreSQL; set \
                 SIYU_TEST_DATABASE_URL (as CI does) to run it"
            );
            return None;
        }
        let base = base_url();
        let config: postgres::Config = base
            .parse()
            .unwrap_or_else(|e| panic!("SIYU_TEST_DATABASE_URL {base:?} is not a URL: {e}"));
        let host = match config.get_hosts().first() {
            Some(postgres::config::Host::Tcp(h)) => h.clone(),
            Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".to_string(),
        };
        assert!(
            ["127.0.0.1", "::1", "localhost"].contains(&host.as_str()) || host.starts_with('/'),
            "SIYU_TEST_DATABASE_URL {base} is not on this machine: the outage tests stop and \
             start a local PostgreSQL"
        );
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let out = std::process::Command::new("pg_lsclusters")
            .arg("--no-header")
            .output()
            .unwrap_or_else(|e| {
                panic!("pg_lsclusters (postgresql-common) is needed to control PostgreSQL: {e}")
            });
        let listing = String::from_utf8_lossy(&out.stdout);
        // `15 main 5432 online postgres /var/lib/postgresql/15/main /var/log/...`
        let (version, name) = listing
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.len() > 2 && f[2] == port.to_string())
            .map(|f| (f[0].to_string(), f[1].to_string()))
            .unwrap_or_else(|| {
                panic!(
                    "no local PostgreSQL cluster listens on port {port} (SIYU_TEST_DATABASE_URL \
                     {base}); pg_lsclusters says:\n{listing}"
                )
            });
        Some(Cluster {
            version,
            name,
            host,
            port,
        })
    }

    /// Stops the cluster (fast mode: sessions are ended, open transactions roll back) and
    /// returns the outage; dropping it, or [`Outage::end`], starts the cluster again.
    pub fn stop(&self) -> Outage<'_> {
        self.ctl("stop").unwrap_or_else(|e| panic!("{e}"));
        let outage = Outage {
            cluster: self,
            since: std::time::Instant::now(),
            over: false,
        };
        assert!(!self.ready(), "PostgreSQL still answers after a stop");
        outage
    }

    /// Restarts the cluster (every session is ended) and waits until it accepts connections.
    pub fn restart(&self) {
        self.ctl("restart")
            .and_then(|()| self.wait_ready())
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Whether the cluster accepts connections (`pg_isready`).
    pub fn ready(&self) -> bool {
        std::process::Command::new("pg_isready")
            .args(["-q", "-h", &self.host, "-p", &self.port.to_string()])
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Polls `pg_isready` until the cluster accepts connections, for at most a minute.
    fn wait_ready(&self) -> Result<(), String> {
        let started = std::time::Instant::now();
        while !self.ready() {
            if started.elapsed() > CLUSTER_DEADLINE {
                return Err(format!(
                    "PostgreSQL {} {} did not accept connections within {CLUSTER_DEADLINE:?}",
                    self.version, self.name
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Ok(())
    }

    fn ctl(&self, action: &str) -> Result<(), String> {
        let out = std::process::Command::new("pg_ctlcluster")
            .args([
                "--skip-systemctl-redirect",
                &self.version,
                &self.name,
                action,
            ])
            .output()
            .map_err(|e| {
                format!("pg_ctlcluster (postgresql-common) is needed to {action} PostgreSQL: {e}")
            })?;
        if !out.status.success() {
            return Err(format!(
                "pg_ctlcluster {} {} {action} failed (it needs root or the cluster's owner): {}{}",
                self.version,
                self.name,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }

    /// Starts the cluster and waits until it accepts connections.
    fn start(&self) -> Result<(), String> {
        self.ctl("start").and_then(|()| self.wait_ready())
    }
}

/// A stopped cluster. It is started again however the test ends: by [`Outage::end`], or when
/// this is dropped (a failed assertion unwinding through it).
#[must_use = "dropping the outage starts PostgreSQL again at once"]
pub struct Outage<'a> {
    cluster: &'a Cluster,
    since: std::time::Instant,
    over: bool,
}

impl Outage<'_> {
    /// How long the cluster has been down.
    pub fn elapsed(&self) -> std::time::Duration {
        self.since.elapsed()
    }

    /// Starts the cluster, waits until it accepts connections, and returns how long it was
    /// down.
    pub fn end(mut self) -> std::time::Duration {
        let down = self.since.elapsed();
        let started = self.cluster.start();
        // A failed start is tried once more by `drop`.
        self.over = started.is_ok();
        started.unwrap_or_else(|e| panic!("{e}"));
        down
    }
}

impl Drop for Outage<'_> {
    fn drop(&mut self) {
        if self.over {
            return;
        }
        // No panic here: this may run while a failed assertion unwinds.
        if let Err(e) = self.cluster.start() {
            eprintln!("{e}: PostgreSQL is down, start it by hand");
        }
    }
}
