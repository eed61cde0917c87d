//! Who serves a tenant when several `siyu serve` nodes share one PostgreSQL database.
//!
//! Each node registers itself ([`Node`]: its id, the address it serves on, a secret the CLI
//! forwards with) and keeps that row alive; each tenant has at most one **lease** ([`Lease`]):
//! the node that holds it, until when, and a **fencing token** that grows every time the
//! lease passes to another node. A node serves a tenant — runs its live engine, its pollers,
//! stores what the engine derives — only while it holds the lease, and renews it well before
//! it expires. When a node dies its leases expire and another node takes them, with a new
//! token.
//!
//! Expiry alone cannot keep a paused node (a long GC-like stall, a frozen VM) from writing
//! after its lease passed on, so every write of derived state (transitions, segment and tag
//! changes with the live mark, snapshots, poller checkpoints) and every append checks the
//! token in its own transaction ([`Fences`]): on PostgreSQL with `FOR SHARE` on the lease row,
//! so a takeover waits for a write that checked the old token to commit, and the new owner,
//! which reads the live mark after its takeover, sees it. A stale node's write fails with
//! [`crate::StoreError::NotOwner`] and stores nothing.
//!
//! Times are the nodes' clocks (milliseconds), so nodes' clocks must agree to well within a
//! lease's length (NTP does). On SQLite only one process opens a data directory for writing
//! (a lock on the directory, see `siyu serve`), which owns every tenant; the tables exist
//! there too, so both backends pass one test suite.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use siyu_domain::Millis;

use crate::{Result, StoreError, TenantId};

/// A `siyu serve` process, as the other nodes and the CLI see it.
#[derive(Clone, PartialEq, Eq)]
pub struct Node {
    /// Unique per process run.
    pub id: String,
    /// Where it serves HTTP (`host:port`), for forwarding.
    pub addr: String,
    /// What the CLI forwards with (see `siyu_app::App::authenticate`); never printed.
    pub secret: String,
    /// Alive until then unless renewed.
    pub expires_at: Millis,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .field("addr", &self.addr)
            .field("secret", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A tenant's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub tenant: TenantId,
    pub node: String,
    /// Grows whenever the lease passes to another node.
    pub token: i64,
    pub expires_at: Millis,
}

impl Lease {
    /// Whether it is held at `now`.
    pub fn live(&self, now: Millis) -> bool {
        self.expires_at > now
    }
}

/// Nodes and tenants' leases.
pub trait Leases {
    /// Registers this node or keeps it alive until `node.expires_at`.
    fn heartbeat(&self, node: &Node) -> Result<()>;

    /// Forgets a node (it stopped).
    fn remove_node(&self, id: &str) -> Result<()>;

    /// The nodes alive at `now`, by id.
    fn nodes(&self, now: Millis) -> Result<Vec<Node>>;

    /// Takes `tenant`'s lease for `node` until `expires_at` if no other node holds it at
    /// `now` (it is new, expired or released, or already `node`'s); the token grows when the
    /// lease passes from another node. `None`: another node holds it. On success, this store
    /// handle's writes for the tenant carry the token (see [`Fences`]).
    fn acquire_lease(
        &self,
        tenant: TenantId,
        node: &str,
        now: Millis,
        expires_at: Millis,
    ) -> Result<Option<Lease>>;

    /// Extends a lease this handle holds; `false` (and the handle's token forgotten) when it
    /// passed to another node meanwhile.
    fn renew_lease(
        &self,
        tenant: TenantId,
        node: &str,
        token: i64,
        expires_at: Millis,
    ) -> Result<bool>;

    /// Gives a lease up at once (it expires now); the handle's token is forgotten first, so
    /// nothing this handle writes for the tenant afterwards is stored.
    fn release_lease(&self, tenant: TenantId, node: &str, token: i64) -> Result<()>;

    /// Every tenant's lease row (live or not), by tenant.
    fn leases(&self) -> Result<Vec<Lease>>;

    /// From now on every write of a tenant's events or derived state through this handle
    /// needs a lease the handle holds; without one it fails with
    /// [`StoreError::NotOwner`]. Servers sharing a database call it before serving.
    fn require_leases(&self);
}

/// The tokens a store handle holds, checked by its writes. Until [`Fences::require`] is
/// called nothing is checked (one process on SQLite, the CLI, tests).
#[derive(Debug, Default)]
pub struct Fences {
    required: AtomicBool,
    tokens: RwLock<HashMap<TenantId, (String, i64)>>,
}

impl Fences {
    pub fn require(&self) {
        self.required.store(true, Ordering::SeqCst);
    }

    pub fn hold(&self, tenant: TenantId, node: &str, token: i64) {
        self.tokens
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant, (node.to_string(), token));
    }

    pub fn forget(&self, tenant: TenantId) {
        self.tokens
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&tenant);
    }

    /// What a write for `tenant` must check in its transaction: `None` when nothing is
    /// required, else the (node, token) held — or `NotOwner` when none is.
    pub fn check(&self, tenant: TenantId) -> Result<Option<(String, i64)>> {
        if !self.required.load(Ordering::SeqCst) {
            return Ok(None);
        }
        self.tokens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&tenant)
            .cloned()
            .map(Some)
            .ok_or(StoreError::NotOwner(tenant))
    }
}
