//! Siyu's durable store: the event log and the operational tables, behind one trait with two
//! backends — SQLite (embedded default, WAL) and PostgreSQL (server and scale-out).
//!
//! The trait is synchronous on purpose: every write goes through one writer (the ingest
//! writer thread in `siyu-app`), and SQLite is synchronous anyway. Async callers hop onto a
//! blocking thread once per batch, not per row.
//!
//! Every table leads its key with `tenant_id`, so the PostgreSQL schema can be distributed on it.
//! Within a tenant, `seq` is the arrival order; it is reserved in ranges from the tenant row
//! inside the writing transaction, which also serializes concurrent writers of one tenant.
//!
//! # Layout
//! - [`Store`]: every capability at once, the sum of one trait per capability ([`Tenants`],
//!   [`EventLog`], [`Decisions`], [`LiveLog`], [`Segments`], [`Connectors`]); [`open`] picks
//!   the backend from a [`Location`].
//! - `sqlite`, `postgres`: the backends, each with its migrations.
//! - [`lock`]: one writing process per SQLite data directory ([`DirLock`]).
//! - [`Leases`]: nodes and tenants' leases, with the fencing tokens writes check ([`leases`]).
//! - [`Snapshots`], [`TriggerLog`], [`Journeys`]: capabilities of their own, so that a
//!   capability adds a trait rather than growing [`Store`]; [`triggers`] reads the one
//!   trigger stream; [`journeys`] holds runs, the outbox and tasks (its backends in
//!   `sqlite_journeys` and `postgres_journeys`); [`Leads`]: [`leads`] holds teams, agents,
//!   routing rules, leads with their arrivals and log, and fan groups (its backends in
//!   `sqlite_leads` and `postgres_leads`).
//! - `suite` (tests only): the one test suite both backends must pass.

pub mod journeys;
pub mod leads;
pub mod leases;
pub mod lock;
mod postgres;
mod postgres_journeys;
mod postgres_leads;
pub mod spend;
mod sqlite;
mod sqlite_journeys;
mod sqlite_leads;
#[cfg(test)]
mod suite;
#[doc(hidden)]
pub mod testing;
pub mod triggers;

use std::path::PathBuf;
use std::sync::Arc;

use siyu_domain::{Event, Millis};

pub use journeys::Journeys;
pub use leads::Leads;
pub use leases::{Fences, Lease, Leases, Node};
pub use lock::{DirLock, Holder, LockError};
pub use postgres::PostgresStore;
pub use spend::Spend;
pub use sqlite::SqliteStore;
pub use triggers::{EventHead, StoredCursor, StoredTrigger, TriggerLog, TriggerPage, TriggerQuery};

/// A tenant's numeric id. Never reused.
pub type TenantId = i64;

/// Where the data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A directory holding `siyu.db` (created if missing).
    Sqlite(PathBuf),
    /// A `postgres://` URL.
    Postgres(String),
}

impl Location {
    /// Human description without secrets (a PostgreSQL password is never printed).
    pub fn describe(&self) -> String {
        match self {
            Location::Sqlite(dir) => format!("SQLite in {}", dir.display()),
            Location::Postgres(url) => match url.parse::<::postgres::Config>() {
                Ok(c) => {
                    let host = c
                        .get_hosts()
                        .first()
                        .map(|h| match h {
                            ::postgres::config::Host::Tcp(h) => h.clone(),
                            ::postgres::config::Host::Unix(p) => p.display().to_string(),
                        })
                        .unwrap_or_default();
                    format!(
                        "PostgreSQL at {host}:{}/{}",
                        c.get_ports().first().copied().unwrap_or(5432),
                        c.get_dbname().unwrap_or("")
                    )
                }
                Err(_) => "PostgreSQL".to_string(),
            },
        }
    }
}

/// How hard a commit is pushed to disk (SQLite only; PostgreSQL follows its own settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// fsync on every commit: survives power loss. The server's default.
    #[default]
    Full,
    /// fsync at checkpoints: survives a killed process (kill -9), may lose the last commits on
    /// power loss. For re-runnable bulk imports.
    Normal,
}

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub created_at: Millis,
    /// The domain of custom events whose domain the source cannot say (Segment tracks).
    pub custom_domain: String,
}

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRole {
    /// May only ingest.
    Write,
    /// May use the whole API.
    Admin,
}

impl KeyRole {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyRole::Write => "write",
            KeyRole::Admin => "admin",
        }
    }

    /// Reads a role column this crate wrote.
    fn from_stored(s: &str) -> Result<KeyRole> {
        match s {
            "write" => Ok(KeyRole::Write),
            "admin" => Ok(KeyRole::Admin),
            _ => Err(StoreError::Corrupt(format!("key role {s:?}"))),
        }
    }
}

/// What an API key's hash unlocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMatch {
    pub tenant: Tenant,
    pub role: KeyRole,
    /// When the key stops working: a key replaced by [`Tenants::rotate_key`] with a grace
    /// period. `None`: it works until it is rotated.
    pub expires_at: Option<Millis>,
}

/// The fate of one event in an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Newly stored with this sequence number.
    Stored(i64),
    /// An event with this id was already stored for the tenant; nothing was written.
    Duplicate,
}

/// An event read back from the log.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub seq: i64,
    pub received_at: Millis,
    pub event: Event,
}

/// An operator's identity decision, stored so replay reproduces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDecision {
    /// Increasing per store; the order decisions were made in.
    pub id: i64,
    /// `confirm` or `distinct` (an operator's, about fans `fan_a` and `fan_b`), or `shared`
    /// (found by the engine: `value` is shared by several people).
    pub kind: String,
    pub fan_a: i64,
    pub fan_b: i64,
    /// Applied right after the event with this sequence number (0: before all events).
    pub after_seq: i64,
    pub created_at: Millis,
    /// For `shared`: the identity as `kind:value`.
    pub value: Option<String>,
}

/// A decision to record (see [`StoredDecision`] for the fields).
#[derive(Debug, Clone, Copy)]
pub struct NewDecision<'a> {
    pub kind: &'a str,
    pub fan_a: i64,
    pub fan_b: i64,
    pub after_seq: i64,
    pub value: Option<&'a str>,
    pub created_at: Millis,
}

/// A fan's layer change, as stored (see `siyu_engine::Transition`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTransition {
    /// Its position in the tenant's trigger stream (see [`triggers`]); increasing per tenant.
    pub id: i64,
    pub fan: i64,
    /// `None`: the fan was new.
    pub from: Option<String>,
    pub to: String,
    pub at: Millis,
    /// `event` or `decay`.
    pub cause: String,
    /// The causing event's sequence number and id.
    pub seq: Option<i64>,
    pub event_id: Option<String>,
}

/// How far a tenant's live layers had got when their transitions were last stored: every
/// layer change up to `clock`, and every change caused by events up to `seq`, is in the
/// transitions table. A restart resumes live layers from here, so changes that fall due
/// while no server runs (decays, events imported meanwhile) are still recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveMark {
    pub clock: Millis,
    pub seq: i64,
    /// The layer rules version in force at `clock`.
    pub rules_version: i64,
}

/// A tenant's connector (`douyin`, `oceanengine`): its settings and the position of its poller.
///
/// `config` holds credentials (client secrets, access tokens), so `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredConnector {
    /// The settings as JSON, written and read by `siyu-app`; opaque here.
    pub config: String,
    /// Where a poller stands (JSON, `siyu-app`'s), `None` before its first checkpoint.
    pub state: Option<String>,
    pub updated_at: Millis,
}

impl std::fmt::Debug for StoredConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredConnector")
            .field("config", &"<redacted>")
            .field("state", &self.state)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

/// What a live engine recorded since its last store: layer transitions, segment entries and
/// exits, and automatic-tag changes. Stored together, with the [`LiveMark`], in one
/// transaction.
#[derive(Debug, Clone, Copy, Default)]
pub struct LiveRecord<'a> {
    pub transitions: &'a [StoredTransition],
    pub segment_changes: &'a [StoredSegmentChange],
    pub tag_changes: &'a [StoredTagChange],
}

impl LiveRecord<'_> {
    pub fn is_empty(&self) -> bool {
        self.transitions.is_empty()
            && self.segment_changes.is_empty()
            && self.tag_changes.is_empty()
    }
}

/// A saved segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSegment {
    /// Increasing per tenant, never reused.
    pub id: i64,
    pub name: String,
    /// The expression as the operator wrote it.
    pub expr: String,
    /// An automatic tag its members carry.
    pub tag: Option<String>,
    pub created_at: Millis,
}

/// A `segment_entered` (`entered`) or `segment_exited` trigger, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSegmentChange {
    /// Its position in the tenant's trigger stream (assigned when stored; see [`triggers`]).
    pub id: i64,
    pub segment: i64,
    pub fan: i64,
    pub entered: bool,
    pub at: Millis,
    /// `event`, `time`, `identity`, `rules`, `tag` or `created`.
    pub cause: String,
    pub seq: Option<i64>,
    pub event_id: Option<String>,
}

/// A tag added (`added`) or removed, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTagChange {
    /// Its position in the tenant's trigger stream (assigned when stored; see [`triggers`]).
    pub id: i64,
    pub fan: i64,
    pub tag: String,
    pub added: bool,
    pub at: Millis,
    /// `manual`, or `segment:<id>` for an automatic tag.
    pub source: String,
}

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("SQLite value: {0}")]
    SqliteValue(#[from] rusqlite::types::FromSqlError),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] ::postgres::Error),
    #[error("cannot create data directory {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid database URL: {0}")]
    BadUrl(String),
    #[error("tenant {0:?} already exists")]
    TenantExists(String),
    #[error("no tenant {0:?}")]
    NoSuchTenant(String),
    #[error("a segment named {0:?} already exists")]
    SegmentExists(String),
    #[error("stored data is not what this version wrote: {0}")]
    Corrupt(String),
    #[error("no {kind} connector is set up for tenant {tenant}")]
    NoSuchConnector { tenant: TenantId, kind: String },
    /// The store cannot be written (see [`EventLog::check_writable`]).
    #[error("the store cannot be written: {0}")]
    ReadOnly(String),
    /// A write for a tenant whose lease this store handle does not hold (see [`leases`]).
    #[error("this node does not hold tenant {0}'s lease")]
    NotOwner(TenantId),
}

impl StoreError {
    /// A stable machine code for the edge.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Sqlite(_) | StoreError::Postgres(_) | StoreError::Io { .. } => {
                "store_unavailable"
            }
            StoreError::BadUrl(_) => "invalid_database_url",
            StoreError::TenantExists(_) => "tenant_exists",
            StoreError::NoSuchTenant(_) => "tenant_not_found",
            StoreError::SegmentExists(_) => "segment_exists",
            StoreError::Corrupt(_) | StoreError::SqliteValue(_) => "store_corrupt",
            StoreError::NoSuchConnector { .. } => "connector_not_configured",
            StoreError::NotOwner(_) => "tenant_moving",
            StoreError::ReadOnly(_) => "store_read_only",
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// An event's columns as the log stores them. Encoding is done by the caller, on its own
/// thread, so the single writer spends its time in the database and not in serde.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub ty: std::borrow::Cow<'static, str>,
    pub identities: String,
    /// `None` for no props keeps the log small.
    pub props: Option<String>,
}

impl Encoded {
    pub fn new(e: &Event) -> Encoded {
        Encoded {
            ty: e.ty.name(),
            identities: e.identities.to_json(),
            props: (!e.props.is_empty())
                .then(|| serde_json::to_string(&e.props).unwrap_or_default()),
        }
    }

    pub fn all(events: &[Event]) -> Vec<Encoded> {
        events.iter().map(Encoded::new).collect()
    }
}

/// One tenant's events for an append; several of these commit in one transaction.
/// `encoded[i]` is `events[i]` encoded.
pub struct AppendBatch<'a> {
    pub tenant: TenantId,
    pub events: &'a [Event],
    pub encoded: &'a [Encoded],
}

/// A tenant's engine snapshot (see `siyu_engine::snapshot`) and where in the log it was taken.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredSnapshot {
    /// The snapshot's layout version; a reader of another version ignores it.
    pub format: u32,
    /// The last event applied.
    pub last_seq: i64,
    /// The last identity decision applied.
    pub decisions_seen: i64,
    pub created_at: Millis,
    pub data: Vec<u8>,
}

/// The bytes are many megabytes: Debug shows how many.
impl std::fmt::Debug for StoredSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSnapshot")
            .field("format", &self.format)
            .field("last_seq", &self.last_seq)
            .field("decisions_seen", &self.decisions_seen)
            .field("created_at", &self.created_at)
            .field("bytes", &self.data.len())
            .finish()
    }
}

/// A snapshot is stored in parts of at most this many bytes: a large tenant's snapshot
/// (about 31 bytes per event: close to a gigabyte at 30 million events) would pass
/// PostgreSQL's 1 GB limit on a `bytea` value and SQLite's default limit on a blob, and on
/// SQLite each part is one short transaction that the writer's commits wait for.
pub const SNAPSHOT_PART_BYTES: usize = 4 << 20;

/// Whether a held snapshot `(format, last_seq, decisions_seen)` is kept over `new`: the
/// same format and further along the log (a later event, or the same with later decisions).
fn further_along(held: (u32, i64, i64), new: &StoredSnapshot) -> bool {
    held.0 == new.format && (held.1, held.2) > (new.last_seq, new.decisions_seen)
}

/// Engine snapshots: one per tenant, the latest, so a start replays only the log after it.
/// A snapshot is a cache of what the log determines; losing one costs a longer replay.
pub trait Snapshots {
    /// Keeps `snap` as the tenant's snapshot, unless the one held is further along the log
    /// (a later event, or the same event with later decisions) in the same format.
    fn put_snapshot(&self, tenant: TenantId, snap: &StoredSnapshot) -> Result<()>;

    /// The tenant's snapshot, if one is held.
    fn snapshot(&self, tenant: TenantId) -> Result<Option<StoredSnapshot>>;

    /// Forgets the tenant's snapshot (one that could not be read).
    fn drop_snapshot(&self, tenant: TenantId) -> Result<()>;
}

/// Tenants and their keys.
pub trait Tenants {
    /// Which backend this is (`sqlite`, `postgres`), for logs and benchmarks.
    fn backend(&self) -> &'static str;

    /// Creates a tenant with the hashes of its two keys.
    fn create_tenant(
        &self,
        name: &str,
        write_key_hash: &str,
        admin_key_hash: &str,
        now: Millis,
    ) -> Result<Tenant>;

    /// All tenants, oldest first.
    fn tenants(&self) -> Result<Vec<Tenant>>;

    /// The tenant and role a key hash belongs to, and when the key expires. A key past its
    /// expiry is still found until the next rotation deletes it: the caller compares
    /// `expires_at` with its own clock, so expiry is exact whatever the store's clock says.
    fn key_lookup(&self, key_hash: &str) -> Result<Option<KeyMatch>>;

    /// Gives a tenant a new key of `role` (its hash), in one transaction. The keys of that
    /// role it had stop working at `retire_at` (`now` for at once; a key that already expires
    /// sooner keeps its expiry), and every key of the role expired at `now` is deleted.
    /// An unknown tenant is [`StoreError::NoSuchTenant`].
    fn rotate_key(
        &self,
        tenant: TenantId,
        role: KeyRole,
        new_hash: &str,
        now: Millis,
        retire_at: Millis,
    ) -> Result<()>;

    /// Sets the domain that custom events without one (Segment tracks) are put in.
    fn set_custom_domain(&self, tenant: TenantId, domain: siyu_domain::Domain) -> Result<()>;
}

/// The event log: appended in group commits, read in arrival order.
pub trait EventLog {
    /// Appends several tenants' batches in **one transaction**: when this returns `Ok`, every
    /// `Stored` event is committed. Events whose id the tenant already has (in the log or
    /// earlier in the same call) are `Duplicate` and write nothing. One `Vec` per batch, one
    /// entry per event, in order.
    fn append(
        &self,
        batches: &[AppendBatch<'_>],
        received_at: Millis,
    ) -> Result<Vec<Vec<Appended>>>;

    /// Calls `f` for each of a tenant's events with `seq > after`, in `seq` order, streaming.
    fn scan(
        &self,
        tenant: TenantId,
        after: i64,
        f: &mut dyn FnMut(StoredEvent) -> Result<()>,
    ) -> Result<()>;

    /// One stored event by sequence number.
    fn event_at(&self, tenant: TenantId, seq: i64) -> Result<Option<StoredEvent>>;

    /// Stored events by sequence number, in `seq` order (numbers not stored are left out):
    /// one round trip for a worker's page rather than one per event.
    fn events_at(&self, tenant: TenantId, seqs: &[i64]) -> Result<Vec<StoredEvent>>;

    /// Number of events stored for a tenant.
    fn event_count(&self, tenant: TenantId) -> Result<u64>;

    /// The highest `seq` of a tenant's log (0 when empty): one index lookup, so a writer can
    /// ask often whether another process appended.
    fn last_seq(&self, tenant: TenantId) -> Result<i64>;

    /// Makes everything committed durable on disk now (a checkpoint); a no-op where commits
    /// already are.
    fn flush(&self) -> Result<()>;

    /// Commits a write that changes nothing, to find out at start that the store cannot be
    /// written (a read-only file or mount, a full disk, a read-only PostgreSQL or standby)
    /// rather than from every request after: [`StoreError::ReadOnly`] with the reason.
    fn check_writable(&self) -> Result<()>;
}

/// What operators decide: identity decisions and layer rules, replayed with the log.
pub trait Decisions {
    /// Stores a tenant's layer rules file (already checked by the caller) and returns its
    /// version, which grows with every change.
    fn set_rules(&self, tenant: TenantId, toml: &str) -> Result<i64>;

    /// A tenant's layer rules file and its version; `None` for the defaults.
    fn rules(&self, tenant: TenantId) -> Result<Option<(i64, String)>>;

    /// Records an identity decision; returns its id.
    fn add_decision(&self, tenant: TenantId, d: &NewDecision<'_>) -> Result<i64>;

    /// A tenant's decisions with `id > after_id`, by id.
    fn decisions(&self, tenant: TenantId, after_id: i64) -> Result<Vec<StoredDecision>>;
}

/// What live engines derive, stored with the tenant's [`LiveMark`] (the derived half of
/// the trigger stream, see [`triggers`]).
pub trait LiveLog {
    /// Appends what a live engine recorded (ids are assigned here, in order) and moves the
    /// tenant's [`LiveMark`] to `mark`, in one transaction.
    fn record_live(&self, tenant: TenantId, rec: &LiveRecord<'_>, mark: &LiveMark) -> Result<()>;

    /// Entries and exits with `id > after`, at most `limit`, optionally of one segment and
    /// of some fan ids.
    fn segment_changes(
        &self,
        tenant: TenantId,
        segment: Option<i64>,
        fans: Option<&[i64]>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredSegmentChange>>;

    /// (segment, fan) for every fan the stored changes say is in a segment.
    fn recorded_members(&self, tenant: TenantId) -> Result<Vec<(i64, i64)>>;

    /// Where the tenant's live layers were last stored; `None` before they ever were.
    fn live_mark(&self, tenant: TenantId) -> Result<Option<LiveMark>>;

    /// Each fan's layer as the transitions record it (the `to` of its latest transition).
    fn recorded_layers(&self, tenant: TenantId) -> Result<Vec<(i64, String)>>;

    /// A tenant's transitions with `id > after`, at most `limit`, optionally only those of
    /// the given fan ids (a fan and the ids merged into it).
    fn transitions(
        &self,
        tenant: TenantId,
        fans: Option<&[i64]>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredTransition>>;
}

/// Saved segments and tag changes.
pub trait Segments {
    /// Saves a segment (checked by the caller); a live segment of the same name is refused
    /// with [`StoreError::SegmentExists`].
    fn create_segment(
        &self,
        tenant: TenantId,
        name: &str,
        expr: &str,
        tag: Option<&str>,
        now: Millis,
    ) -> Result<StoredSegment>;

    /// A tenant's saved segments (not deleted), by id.
    fn segments(&self, tenant: TenantId) -> Result<Vec<StoredSegment>>;

    /// Deletes a saved segment; `false` if there was none with that id.
    fn delete_segment(&self, tenant: TenantId, id: i64, now: Millis) -> Result<bool>;

    /// Appends manual tag changes in one transaction (ids assigned here).
    fn add_tag_changes(&self, tenant: TenantId, rows: &[StoredTagChange]) -> Result<()>;

    /// Tag changes with `id > after`, at most `limit`, optionally of some fan ids.
    fn tag_changes(
        &self,
        tenant: TenantId,
        fans: Option<&[i64]>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredTagChange>>;
}

/// Connector settings and their pollers' checkpoints.
pub trait Connectors {
    /// Creates or replaces a tenant's connector settings of one kind; a poller's state is kept.
    fn set_connector(&self, tenant: TenantId, kind: &str, config: &str, now: Millis) -> Result<()>;

    /// A tenant's connector of one kind, if set up.
    fn connector(&self, tenant: TenantId, kind: &str) -> Result<Option<StoredConnector>>;

    /// Every tenant's connector of one kind, by tenant id.
    fn connectors(&self, kind: &str) -> Result<Vec<(TenantId, StoredConnector)>>;

    /// Records where a connector's poller stands (a durable checkpoint, committed on return).
    fn set_connector_state(&self, tenant: TenantId, kind: &str, state: &str) -> Result<()>;
}

/// The store: every capability, implemented by each backend. Internally synchronized; all
/// methods take `&self`. A new capability (an outbox, journeys, leads, users) adds a trait
/// here rather than growing one, and callers that need one capability can ask for just it.
pub trait Store:
    Tenants
    + EventLog
    + Decisions
    + LiveLog
    + Segments
    + Connectors
    + Snapshots
    + TriggerLog
    + Leases
    + Journeys
    + Leads
    + Spend
    + Send
    + Sync
{
}

impl<T> Store for T where
    T: Tenants
        + EventLog
        + Decisions
        + LiveLog
        + Segments
        + Connectors
        + Snapshots
        + TriggerLog
        + Leases
        + Journeys
        + Leads
        + Spend
        + Send
        + Sync
{
}

/// Opens (and migrates) the store at `location`.
pub fn open(location: &Location, durability: Durability) -> Result<Arc<dyn Store>> {
    Ok(match location {
        Location::Sqlite(dir) => Arc::new(SqliteStore::open(dir, durability)?),
        Location::Postgres(url) => Arc::new(PostgresStore::open(url)?),
    })
}

/// Turns a stored row back into an event. The row was written by this crate from a parsed
/// event, so anything unreadable is corruption, not bad input.
#[allow(clippy::too_many_arguments)]
fn row_to_event(
    seq: i64,
    id: &str,
    ty: &str,
    domain: &str,
    ts: Millis,
    identities: &str,
    props: Option<&str>,
    source: Option<String>,
    received_at: Millis,
) -> Result<StoredEvent> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("event seq {seq}: {what}"));
    let domain = domain.parse().map_err(|_| corrupt("domain"))?;
    let event = Event {
        id: siyu_domain::EventId::parse(id).ok_or_else(|| corrupt("id"))?,
        ty: siyu_domain::EventType::from_stored(ty, domain).ok_or_else(|| corrupt("type"))?,
        ts,
        identities: siyu_domain::Identities::from_stored_json(identities)
            .ok_or_else(|| corrupt("identities"))?,
        props: match props {
            Some(p) => serde_json::from_str(p).map_err(|_| corrupt("props"))?,
            None => Default::default(),
        },
        source,
    };
    Ok(StoredEvent {
        seq,
        received_at,
        event,
    })
}
