//! The embedded backend: one SQLite file in WAL mode under the data directory.
//!
//! One connection, behind a `std::sync::Mutex`: SQLite allows one writer at a time anyway, and
//! every append is a single short transaction, so a blocking lock held for the transaction is
//! simpler and faster than a pool. Statements are cached, so a batch is one prepared insert
//! stepped per event.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use siyu_domain::Millis;

use crate::{
    AppendBatch, Appended, Durability, KeyRole, NewDecision, Result, StoreError, StoredDecision,
    StoredEvent, Tenant, TenantId, row_to_event,
};
use crate::{
    LiveMark, LiveRecord, StoredConnector, StoredSegment, StoredSegmentChange, StoredTagChange,
    StoredTransition,
};

/// Migrations, in order. Applied once each, recorded in `schema_migrations`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE tenants (
    tenant_id     INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    created_at    INTEGER NOT NULL,
    next_seq      INTEGER NOT NULL DEFAULT 1,
    custom_domain TEXT NOT NULL DEFAULT 'private'
);
CREATE TABLE api_keys (
    tenant_id  INTEGER NOT NULL REFERENCES tenants(tenant_id),
    key_hash   TEXT NOT NULL UNIQUE,
    role       TEXT NOT NULL CHECK (role IN ('write', 'admin')),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, key_hash)
) WITHOUT ROWID;
CREATE TABLE events (
    tenant_id   INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    id          TEXT NOT NULL,
    type        TEXT NOT NULL,
    domain      TEXT NOT NULL,
    ts          INTEGER NOT NULL,
    identities  TEXT NOT NULL,
    props       TEXT,
    source      TEXT,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX events_id ON events (tenant_id, id);
"#,
    r#"
CREATE TABLE identity_decisions (
    tenant_id  INTEGER NOT NULL REFERENCES tenants(tenant_id),
    id         INTEGER NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('confirm', 'distinct', 'shared')),
    fan_a      INTEGER NOT NULL,
    fan_b      INTEGER NOT NULL,
    after_seq  INTEGER NOT NULL,
    value      TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;
"#,
    r#"
CREATE TABLE layer_rules (
    tenant_id  INTEGER NOT NULL REFERENCES tenants(tenant_id),
    version    INTEGER NOT NULL,
    rules      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, version)
) WITHOUT ROWID;
"#,
    r#"
CREATE TABLE layer_transitions (
    tenant_id  INTEGER NOT NULL REFERENCES tenants(tenant_id),
    id         INTEGER NOT NULL,
    fan        INTEGER NOT NULL,
    from_layer TEXT,
    to_layer   TEXT NOT NULL,
    at         INTEGER NOT NULL,
    cause      TEXT NOT NULL CHECK (cause IN ('event', 'decay')),
    seq        INTEGER,
    event_id   TEXT,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;
CREATE INDEX layer_transitions_fan ON layer_transitions (tenant_id, fan, id);
"#,
    // 5: transitions caused by rules changes and identity decisions; where live layers were
    // last stored (see `LiveMark`).
    r#"
CREATE TABLE layer_transitions_new (
    tenant_id  INTEGER NOT NULL REFERENCES tenants(tenant_id),
    id         INTEGER NOT NULL,
    fan        INTEGER NOT NULL,
    from_layer TEXT,
    to_layer   TEXT NOT NULL,
    at         INTEGER NOT NULL,
    cause      TEXT NOT NULL CHECK (cause IN ('event', 'decay', 'rules', 'identity')),
    seq        INTEGER,
    event_id   TEXT,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;
INSERT INTO layer_transitions_new SELECT * FROM layer_transitions;
DROP TABLE layer_transitions;
ALTER TABLE layer_transitions_new RENAME TO layer_transitions;
CREATE INDEX layer_transitions_fan ON layer_transitions (tenant_id, fan, id);
CREATE TABLE layer_marks (
    tenant_id     INTEGER PRIMARY KEY REFERENCES tenants(tenant_id),
    clock         INTEGER NOT NULL,
    seq           INTEGER NOT NULL,
    rules_version INTEGER NOT NULL
);
"#,
    // 6: connectors: per-tenant connector settings and poller checkpoints.
    r#"
CREATE TABLE connectors (
    tenant_id  INTEGER NOT NULL REFERENCES tenants(tenant_id),
    kind       TEXT NOT NULL,
    config     TEXT NOT NULL,
    state      TEXT,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, kind)
) WITHOUT ROWID;
"#,
    // 7: saved segments, their entries and exits, and tag changes.
    r#"
CREATE TABLE segments (
    tenant_id  INTEGER NOT NULL REFERENCES tenants(tenant_id),
    id         INTEGER NOT NULL,
    name       TEXT NOT NULL,
    expr       TEXT NOT NULL,
    tag        TEXT,
    created_at INTEGER NOT NULL,
    deleted_at INTEGER,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX segments_live_name ON segments (tenant_id, name) WHERE deleted_at IS NULL;
CREATE TABLE segment_changes (
    tenant_id  INTEGER NOT NULL REFERENCES tenants(tenant_id),
    id         INTEGER NOT NULL,
    segment_id INTEGER NOT NULL,
    fan        INTEGER NOT NULL,
    entered    INTEGER NOT NULL,
    at         INTEGER NOT NULL,
    cause      TEXT NOT NULL CHECK (cause IN ('event', 'time', 'identity', 'rules', 'tag', 'created')),
    seq        INTEGER,
    event_id   TEXT,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;
CREATE TABLE tag_changes (
    tenant_id INTEGER NOT NULL REFERENCES tenants(tenant_id),
    id        INTEGER NOT NULL,
    fan       INTEGER NOT NULL,
    tag       TEXT NOT NULL,
    added     INTEGER NOT NULL,
    at        INTEGER NOT NULL,
    source    TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;
CREATE INDEX tag_changes_fan ON tag_changes (tenant_id, fan, id);
"#,
    // 8: engine snapshots, the latest per tenant.
    r#"
CREATE TABLE snapshots (
    tenant_id      INTEGER PRIMARY KEY REFERENCES tenants(tenant_id),
    format         INTEGER NOT NULL,
    last_seq       INTEGER NOT NULL,
    decisions_seen INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    parts          INTEGER NOT NULL
);
CREATE TABLE snapshot_parts (
    tenant_id INTEGER NOT NULL REFERENCES tenants(tenant_id),
    part      INTEGER NOT NULL,
    data      BLOB NOT NULL,
    PRIMARY KEY (tenant_id, part)
) WITHOUT ROWID;
"#,
    // 9: one trigger stream. A derived row's id becomes its stream position: the rows stored
    // before sit ahead of every event, each table's in its own residue (4·id + 1, 2, 3) so no
    // two share a position (negated first: an UPDATE checks the key row by row). Cursors of
    // the stream's consumers.
    r#"
UPDATE layer_transitions SET id = -(4 * id + 1);
UPDATE layer_transitions SET id = -id;
UPDATE segment_changes SET id = -(4 * id + 2);
UPDATE segment_changes SET id = -id;
UPDATE tag_changes SET id = -(4 * id + 3);
UPDATE tag_changes SET id = -id;
CREATE TABLE trigger_cursors (
    tenant_id  INTEGER NOT NULL REFERENCES tenants(tenant_id),
    consumer   TEXT NOT NULL,
    after_id   INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, consumer)
) WITHOUT ROWID;
"#,
    // 10: snapshot parts by generation, so a snapshot is written in many short transactions
    // (the writer's commits go on between them) and flipped into place by its header's row.
    // Snapshots are caches: the ones held are dropped, and the next tick stores a new one.
    // The fans' transition index covers their layers.
    r#"
DROP TABLE snapshot_parts;
DELETE FROM snapshots;
ALTER TABLE snapshots ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
CREATE TABLE snapshot_parts (
    tenant_id  INTEGER NOT NULL REFERENCES tenants(tenant_id),
    generation INTEGER NOT NULL,
    part       INTEGER NOT NULL,
    data       BLOB NOT NULL,
    PRIMARY KEY (tenant_id, generation, part)
) WITHOUT ROWID;
-- Every fan's last recorded layer (`recorded_layers`, read at each start) from the index alone.
DROP INDEX layer_transitions_fan;
CREATE INDEX layer_transitions_fan ON layer_transitions (tenant_id, fan, id, to_layer);
"#,
    // 11: nodes and tenants' leases (see `crate::leases`).
    r#"
CREATE TABLE nodes (
    node_id    TEXT PRIMARY KEY,
    addr       TEXT NOT NULL,
    secret     TEXT NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE tenant_leases (
    tenant_id  INTEGER PRIMARY KEY REFERENCES tenants(tenant_id),
    node_id    TEXT NOT NULL,
    token      INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
"#,
    // 12: key rotation. A key replaced with a grace period works until `expires_at` (NULL:
    // until it is rotated).
    r#"
ALTER TABLE api_keys ADD COLUMN expires_at INTEGER;
"#,
    // 13: journeys (see `crate::journeys`): definitions by version, runs with their timers
    // and history, the outbox, staff tasks, the fans' facts for the channels' rules, sends per
    // day and variant counters. Closed sets are `siyu-journey`'s small integers. The tables
    // the journey worker writes by the thousand per batch have no foreign key to `tenants`
    // (PostgreSQL checks one by a trigger per row, a third of a batch's time); their tenant
    // is the writer's own.
    r#"
CREATE TABLE journey_versions (
    tenant_id  INTEGER NOT NULL REFERENCES tenants(tenant_id),
    name       TEXT NOT NULL,
    version    INTEGER NOT NULL CHECK (version >= 1),
    definition TEXT NOT NULL,
    applied_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name, version)
) WITHOUT ROWID;
CREATE TABLE journeys (
    tenant_id  INTEGER NOT NULL REFERENCES tenants(tenant_id),
    name       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    paused     INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    applied_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    -- The trigger stream's head when the journey was first applied: it starts no run for
    -- what came before (history is not an entry).
    starts_after INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, name)
) WITHOUT ROWID;
CREATE TABLE journey_runs (
    tenant_id  INTEGER NOT NULL,
    id         INTEGER NOT NULL,
    journey    TEXT NOT NULL,
    version    INTEGER NOT NULL,
    fan        INTEGER NOT NULL,
    entry_key  TEXT NOT NULL,
    state      INTEGER NOT NULL CHECK (state BETWEEN 0 AND 32767),
    step       INTEGER NOT NULL,
    wake_at    INTEGER,
    entered_at INTEGER NOT NULL,
    goal_by    INTEGER,
    updated_at INTEGER NOT NULL,
    data       TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX journey_runs_entry ON journey_runs (tenant_id, entry_key);
-- Only runs with a timer; the primary key after it orders ties by id.
CREATE INDEX journey_runs_wake ON journey_runs (tenant_id, wake_at) WHERE wake_at IS NOT NULL;
CREATE INDEX journey_runs_fan ON journey_runs (tenant_id, fan);
-- The report's counts of runs, and a journey's runs for its history counts and outbox rows.
CREATE INDEX journey_runs_journey ON journey_runs (tenant_id, journey, version, state, step);
CREATE TABLE journey_history (
    tenant_id INTEGER NOT NULL,
    run       INTEGER NOT NULL,
    n         INTEGER NOT NULL,
    at        INTEGER NOT NULL,
    step      TEXT,
    kind      INTEGER NOT NULL CHECK (kind BETWEEN 0 AND 32767),
    reason    TEXT,
    detail    TEXT,
    PRIMARY KEY (tenant_id, run, n)
) WITHOUT ROWID;
CREATE TABLE outbox (
    tenant_id  INTEGER NOT NULL,
    id         INTEGER NOT NULL,
    channel    TEXT NOT NULL,
    run        INTEGER NOT NULL,
    step       TEXT NOT NULL,
    fan        INTEGER NOT NULL,
    key        TEXT NOT NULL,
    payload    TEXT NOT NULL,
    state      INTEGER NOT NULL CHECK (state IN (0, 1, 2)),
    attempts   INTEGER NOT NULL CHECK (attempts >= 0),
    next_at    INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    settled_at INTEGER,
    answer     TEXT,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX outbox_key ON outbox (tenant_id, key);
CREATE INDEX outbox_due ON outbox (tenant_id, channel, state, next_at);
CREATE TABLE tasks (
    tenant_id  INTEGER NOT NULL REFERENCES tenants(tenant_id),
    id         INTEGER NOT NULL,
    team       TEXT NOT NULL,
    text       TEXT NOT NULL,
    fan        INTEGER,
    run        INTEGER,
    step       TEXT,
    state      INTEGER NOT NULL CHECK (state IN (0, 1, 2)),
    agent      TEXT,
    outcome    TEXT,
    created_at INTEGER NOT NULL,
    due_at     INTEGER,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;
CREATE INDEX tasks_state ON tasks (tenant_id, state, team);
CREATE TABLE journey_fans (
    tenant_id       INTEGER NOT NULL,
    fan             INTEGER NOT NULL,
    opted_out_at    INTEGER,
    opt_out_reason  TEXT,
    authorized_at   INTEGER,
    im_in_at        INTEGER,
    im_conversation TEXT,
    im_message      TEXT,
    im_replies      INTEGER NOT NULL CHECK (im_replies >= 0),
    last_send_at    INTEGER,
    last_send_run   INTEGER,
    last_send_step  TEXT,
    PRIMARY KEY (tenant_id, fan)
) WITHOUT ROWID;
CREATE TABLE fan_sends (
    tenant_id INTEGER NOT NULL,
    fan       INTEGER NOT NULL,
    channel   TEXT NOT NULL,
    day       INTEGER NOT NULL,
    count     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, fan, channel, day)
) WITHOUT ROWID;
CREATE TABLE journey_variants (
    tenant_id INTEGER NOT NULL,
    journey   TEXT NOT NULL,
    version   INTEGER NOT NULL,
    step      TEXT NOT NULL,
    arm       TEXT NOT NULL,
    sent      INTEGER NOT NULL,
    converted INTEGER NOT NULL,
    failed    INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, journey, version, step, arm)
) WITHOUT ROWID;
"#,
    // 14: outbox rows by run, so a journey's report and its dead-letter list join them to its
    // runs by index whatever the planner believes of the tables' sizes.
    "CREATE INDEX outbox_run ON outbox (tenant_id, run);",
    // 15: leads (see `crate::leads`): teams, agents and routing rules, leads with their
    // arrivals and log, agents' day counts, fan groups with their members and day counts.
    // States, kinds and strategies are `siyu-leads`' text. Like the journey worker's tables,
    // the ones a batch writes have no foreign key to `tenants`; their tenant is the writer's.
    r#"
CREATE TABLE teams (
    tenant_id        INTEGER NOT NULL REFERENCES tenants(tenant_id),
    name             TEXT NOT NULL,
    strategy         TEXT NOT NULL,
    first_contact_ms INTEGER,
    recycle_ms       INTEGER,
    lead_agent       TEXT,
    escalate         TEXT NOT NULL,
    last_agent       TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name)
) WITHOUT ROWID;
CREATE TABLE agents (
    tenant_id   INTEGER NOT NULL REFERENCES tenants(tenant_id),
    name        TEXT NOT NULL,
    team        TEXT NOT NULL,
    capacity    INTEGER,
    daily_cap   INTEGER,
    -- Working hours, minutes after midnight; both NULL: all day.
    hours_start INTEGER,
    hours_end   INTEGER,
    weight      INTEGER NOT NULL,
    active      INTEGER NOT NULL CHECK (active IN (0, 1)),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name)
) WITHOUT ROWID;
CREATE TABLE lead_rules (
    tenant_id  INTEGER NOT NULL REFERENCES tenants(tenant_id),
    id         INTEGER NOT NULL,
    position   INTEGER NOT NULL,
    expr       TEXT NOT NULL,
    team       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;
CREATE TABLE leads (
    tenant_id         INTEGER NOT NULL,
    id                INTEGER NOT NULL,
    fan               INTEGER NOT NULL,
    state             TEXT NOT NULL,
    team              TEXT,
    owner             TEXT,
    created_at        INTEGER NOT NULL,
    assigned_at       INTEGER,
    first_contact_due INTEGER,
    first_contact_at  INTEGER,
    last_follow_up_at INTEGER,
    escalated_at      INTEGER,
    closed_at         INTEGER,
    channel           TEXT NOT NULL,
    province          TEXT,
    city              TEXT,
    clue_state        TEXT,
    intention         TEXT,
    updated_at        INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;
CREATE INDEX leads_fan ON leads (tenant_id, fan);
CREATE INDEX leads_owner ON leads (tenant_id, owner, state);
CREATE INDEX leads_state ON leads (tenant_id, state);
CREATE TABLE lead_arrivals (
    tenant_id INTEGER NOT NULL,
    event_id  TEXT NOT NULL,
    lead      INTEGER NOT NULL,
    channel   TEXT NOT NULL,
    ts        INTEGER NOT NULL,
    repeat    INTEGER NOT NULL CHECK (repeat IN (0, 1)),
    PRIMARY KEY (tenant_id, event_id)
) WITHOUT ROWID;
CREATE INDEX lead_arrivals_lead ON lead_arrivals (tenant_id, lead, ts);
CREATE TABLE lead_log (
    tenant_id INTEGER NOT NULL,
    id        INTEGER NOT NULL,
    lead      INTEGER NOT NULL,
    at        INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    agent     TEXT,
    result    TEXT,
    detail    TEXT,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;
CREATE INDEX lead_log_lead ON lead_log (tenant_id, lead, id);
CREATE TABLE agent_days (
    tenant_id INTEGER NOT NULL,
    agent     TEXT NOT NULL,
    day       INTEGER NOT NULL,
    count     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, agent, day)
) WITHOUT ROWID;
CREATE TABLE fan_groups (
    tenant_id  INTEGER NOT NULL,
    id         INTEGER NOT NULL,
    name       TEXT NOT NULL,
    template   TEXT NOT NULL,
    capacity   INTEGER NOT NULL,
    owner      TEXT,
    members    INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;
CREATE TABLE group_members (
    tenant_id INTEGER NOT NULL,
    group_id  INTEGER NOT NULL,
    fan       INTEGER NOT NULL,
    joined_at INTEGER NOT NULL,
    left_at   INTEGER,
    active_at INTEGER,
    PRIMARY KEY (tenant_id, group_id, fan)
) WITHOUT ROWID;
CREATE INDEX group_members_fan ON group_members (tenant_id, fan);
CREATE TABLE group_days (
    tenant_id INTEGER NOT NULL,
    group_id  INTEGER NOT NULL,
    day       INTEGER NOT NULL,
    joins     INTEGER NOT NULL,
    leaves    INTEGER NOT NULL,
    messages  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, group_id, day)
) WITHOUT ROWID;
"#,
    r#"
-- Seats held in fan groups for invited fans (issue 14): a group's members plus the
-- invitations out never pass its capacity.
CREATE TABLE group_invites (
    tenant_id  INTEGER NOT NULL,
    group_id   INTEGER NOT NULL,
    fan        INTEGER NOT NULL,
    invited_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, group_id, fan)
) WITHOUT ROWID;
CREATE INDEX group_invites_fan ON group_invites (tenant_id, fan);
CREATE INDEX group_invites_at ON group_invites (tenant_id, invited_at);
"#,
    r#"
-- Acquisition spend per local day, channel and domain (issue 15): CAC's numerator.
CREATE TABLE spend (
    tenant_id   INTEGER NOT NULL,
    day         INTEGER NOT NULL,
    channel     TEXT NOT NULL,
    domain      TEXT NOT NULL,
    amount_fen  INTEGER NOT NULL,
    imported_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, day, channel, domain)
) WITHOUT ROWID;
"#,
];

pub struct SqliteStore {
    /// The write connection. Its lock can be handed fairly to a waiter
    /// (`MutexGuard::unlock_fair`): a long job done in short transactions (a snapshot's parts)
    /// lets the writer's commits in between them.
    conn: parking_lot::Mutex<Connection>,
    /// Read-only connections for the long reads: a replay's scan of the whole log, a fan
    /// page's event lookups, the snapshot. In WAL mode each reads a committed state beside the
    /// write connection, so a rebuild's seconds-long scan no longer holds `conn` (and with it
    /// every commit) while it feeds the engine row by row.
    readers: ReadPool,
    /// Checkpoints the WAL from its own connection and thread, so the writer never stops to
    /// copy pages into the database file (SQLite's automatic checkpoint runs inside a commit).
    _checkpointer: Checkpointer,
    /// The lease tokens its writes check (see `crate::leases`).
    pub(crate) fences: crate::Fences,
}

/// Idle read-only connections to the database file (see [`SqliteStore::read`]).
struct ReadPool {
    path: std::path::PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReadPool {
    /// Idle connections kept; more are opened while as many reads run at once.
    const KEEP: usize = 8;

    fn open(&self) -> Result<Connection> {
        use rusqlite::OpenFlags;
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // The events a scan reads are read once: a small cache, the OS keeps the pages.
        conn.pragma_update(None, "cache_size", -16_384)?;
        conn.set_prepared_statement_cache_capacity(8);
        Ok(conn)
    }
}

/// A thread with its own connection running a passive WAL checkpoint every second (it never
/// blocks readers or the writer); stopped, with a last checkpoint, when the store is dropped.
struct Checkpointer {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: std::path::PathBuf) -> Result<Checkpointer> {
        let conn = Connection::open(&path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let checkpoint = move || {
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!(error = %e, "WAL checkpoint failed; the next one retries");
            }
        };
        let thread = std::thread::Builder::new()
            .name("siyu-checkpoint".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(std::time::Duration::from_secs(1))
                {
                    checkpoint();
                }
                checkpoint();
            })
            .map_err(|e| StoreError::Io {
                path: path.display().to_string(),
                source: e,
            })?;
        Ok(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The next id of a per-tenant id sequence kept as `MAX(id)` (inside the writing transaction,
/// which holds SQLite's write lock).
fn next_id(tx: &rusqlite::Transaction<'_>, table: &str, tenant: TenantId) -> Result<i64> {
    Ok(tx.query_row(
        &format!("SELECT COALESCE(MAX(id), 0) + 1 FROM {table} WHERE tenant_id = ?1"),
        [tenant],
        |r| r.get(0),
    )?)
}

/// Rows of one of the logs (transitions, triggers, tag changes): `sql` selects with
/// parameters (tenant, after, fans as a JSON array or NULL, limit, then `extra`).
fn log_page<T>(
    conn: &Connection,
    sql: &str,
    (tenant, after, fans, limit): (TenantId, i64, Option<&[i64]>, usize),
    extra: Option<i64>,
    row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let fans = fans.map(|f| serde_json::to_string(f).unwrap_or_default());
    let limit = limit as i64;
    let all: [&dyn rusqlite::ToSql; 5] = [&tenant, &after, &fans, &limit, &extra];
    // `extra` is bound only where the statement has a fifth parameter.
    let n = stmt.parameter_count().min(5);
    let rows = stmt.query_map(&all[..n], row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Inserts rows with many rows per statement (derived records come by the thousand):
/// `prefix` is `INSERT INTO t (c1, ..., cN) VALUES`, `row(i)` gives row `i`'s N values.
fn insert_many<'r>(
    tx: &rusqlite::Transaction<'_>,
    prefix: &str,
    columns: usize,
    rows: usize,
    row: impl Fn(usize, &mut Vec<&'r dyn rusqlite::ToSql>),
) -> Result<()> {
    insert_many_then(tx, prefix, "", columns, rows, row)
}

/// [`insert_many`] with `suffix` after the values (an `ON CONFLICT` clause).
pub(crate) fn insert_many_then<'r>(
    tx: &rusqlite::Transaction<'_>,
    prefix: &str,
    suffix: &str,
    columns: usize,
    rows: usize,
    row: impl Fn(usize, &mut Vec<&'r dyn rusqlite::ToSql>),
) -> Result<()> {
    const ROWS: usize = 64;
    let one = format!("({})", vec!["?"; columns].join(", "));
    // Two statement texts only (full chunks, single rows), so both stay prepared.
    let sql = |n: usize| format!("{prefix} {} {suffix}", vec![one.as_str(); n].join(", "));
    let mut start = 0;
    while start < rows {
        let n = if rows - start >= ROWS { ROWS } else { 1 };
        let mut stmt = tx.prepare_cached(&sql(n))?;
        let mut values: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(n * columns);
        for i in start..start + n {
            row(i, &mut values);
        }
        stmt.execute(values.as_slice())?;
        start += n;
    }
    Ok(())
}

/// The highest trigger position a tenant's derived logs hold (see `crate::triggers`).
fn taken(tx: &rusqlite::Transaction<'_>, tenant: TenantId) -> Result<i64> {
    Ok(tx.query_row(crate::triggers::TAKEN, [tenant], |r| r.get(0))?)
}

fn insert_tags(
    tx: &rusqlite::Transaction<'_>,
    tenant: TenantId,
    rows: &[StoredTagChange],
    ids: &[i64],
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    insert_many(
        tx,
        "INSERT INTO tag_changes (tenant_id, id, fan, tag, added, at, source) VALUES",
        7,
        rows.len(),
        |i, v| {
            let r = &rows[i];
            v.extend_from_slice(&[&tenant, &ids[i], &r.fan, &r.tag, &r.added, &r.at, &r.source]);
        },
    )
}

impl SqliteStore {
    /// Opens `dir/siyu.db`, creating the directory and the schema as needed. The directory is
    /// created owner-only (0700) and the database with its `-wal` and `-shm` files are kept
    /// owner-only (0600), files of earlier versions included: they hold API key hashes and
    /// connector settings.
    pub fn open(dir: &Path, durability: Durability) -> Result<SqliteStore> {
        private_files(dir)?;
        let mut conn = Connection::open(dir.join("siyu.db"))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        let sync = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", sync)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // 256 MiB of page cache keeps the id index of a few million events in memory.
        conn.pragma_update(None, "cache_size", -262_144)?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        conn.set_prepared_statement_cache_capacity(32);
        // Checkpoints run on their own thread (below), not inside the writer's commits.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        migrate(&mut conn)?;
        Ok(SqliteStore {
            conn: parking_lot::Mutex::new(conn),
            readers: ReadPool {
                path: dir.join("siyu.db"),
                idle: Mutex::new(Vec::new()),
            },
            _checkpointer: Checkpointer::start(dir.join("siyu.db"))?,
            fences: crate::Fences::default(),
        })
    }

    /// A read-only connection from the pool (opened when none is idle), returned after `f`.
    /// What it reads was committed before the call: every acknowledged write is there.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let taken = self
            .readers
            .idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop();
        let conn = match taken {
            Some(c) => c,
            None => self.readers.open()?,
        };
        let out = f(&conn);
        let mut idle = self.readers.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < ReadPool::KEEP {
            idle.push(conn);
        }
        out
    }

    pub(crate) fn conn(&self) -> parking_lot::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-done transaction committed
        // (rusqlite rolls back on drop), and the lock does not poison: the connection is
        // still usable.
        self.conn.lock()
    }
}

/// Creates `dir` (0700) and `dir/siyu.db` (0600) if missing, and narrows an existing database
/// and its WAL files to 0600. SQLite creates `-wal` and `-shm` with the database file's mode,
/// so they are born 0600 too. (Unix only: elsewhere the platform's defaults stand.)
fn private_files(dir: &Path) -> Result<()> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| StoreError::Io { path, source }
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
        builder.mode(0o700);
        builder.create(dir).map_err(io(dir))?;
        let db = dir.join("siyu.db");
        // Created only when missing: an existing file is not opened for writing here (one
        // that cannot be written is reported as such by `check_writable`).
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&db)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(&db)(e)),
        }
        for name in ["siyu.db", "siyu.db-wal", "siyu.db-shm"] {
            let path = dir.join(name);
            match std::fs::metadata(&path) {
                Ok(m) if m.permissions().mode() & 0o077 != 0 => {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                        .map_err(|e| match e.kind() {
                            std::io::ErrorKind::PermissionDenied => StoreError::ReadOnly(format!(
                                "{} cannot be changed: {e}",
                                path.display()
                            )),
                            _ => io(&path)(e),
                        })?;
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&path)(e)),
            }
        }
    }
    #[cfg(not(unix))]
    builder.create(dir).map_err(io(dir))?;
    Ok(())
}

fn migrate(conn: &mut Connection) -> Result<()> {
    migrate_on(conn).map_err(|e| match e {
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, m))
            if f.code == rusqlite::ErrorCode::ReadOnly =>
        {
            StoreError::ReadOnly(m.unwrap_or_else(|| "the database is read-only".into()))
        }
        other => other,
    })
}

fn migrate_on(conn: &mut Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let done: i64 = tx.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done as usize) {
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            params![i as i64 + 1, siyu_domain::time::now_ms()],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// The columns `scan` and `event_at` select, as an event.
const EVENT_COLUMNS: &str = "seq, id, type, domain, ts, identities, props, source, received_at";

fn event_from_row(r: &rusqlite::Row<'_>) -> Result<StoredEvent> {
    row_to_event(
        r.get(0)?,
        r.get_ref(1)?.as_str()?,
        r.get_ref(2)?.as_str()?,
        r.get_ref(3)?.as_str()?,
        r.get(4)?,
        r.get_ref(5)?.as_str()?,
        r.get_ref(6)?.as_str_or_null()?,
        r.get(7)?,
        r.get(8)?,
    )
}

fn tenant_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Tenant> {
    Ok(Tenant {
        id: r.get(0)?,
        name: r.get(1)?,
        created_at: r.get(2)?,
        custom_domain: r.get(3)?,
    })
}

impl crate::Tenants for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn create_tenant(
        &self,
        name: &str,
        write_key_hash: &str,
        admin_key_hash: &str,
        now: Millis,
    ) -> Result<Tenant> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let exists: Option<i64> = tx
            .query_row(
                "SELECT tenant_id FROM tenants WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?;
        if exists.is_some() {
            return Err(StoreError::TenantExists(name.to_string()));
        }
        tx.execute(
            "INSERT INTO tenants (name, created_at) VALUES (?1, ?2)",
            params![name, now],
        )?;
        let id = tx.last_insert_rowid();
        for (hash, role) in [
            (write_key_hash, KeyRole::Write),
            (admin_key_hash, KeyRole::Admin),
        ] {
            tx.execute(
                "INSERT INTO api_keys (tenant_id, key_hash, role, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![id, hash, role.as_str(), now],
            )?;
        }
        let tenant = tx.query_row(
            "SELECT tenant_id, name, created_at, custom_domain FROM tenants WHERE tenant_id = ?1",
            [id],
            tenant_from_row,
        )?;
        tx.commit()?;
        Ok(tenant)
    }

    fn tenants(&self) -> Result<Vec<Tenant>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT tenant_id, name, created_at, custom_domain FROM tenants ORDER BY tenant_id",
        )?;
        let rows = stmt.query_map([], tenant_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn key_lookup(&self, key_hash: &str) -> Result<Option<crate::KeyMatch>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT t.tenant_id, t.name, t.created_at, t.custom_domain, k.role, k.expires_at
             FROM api_keys k JOIN tenants t ON t.tenant_id = k.tenant_id WHERE k.key_hash = ?1",
        )?;
        let row = stmt
            .query_row([key_hash], |r| {
                Ok((
                    tenant_from_row(r)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Option<Millis>>(5)?,
                ))
            })
            .optional()?;
        row.map(|(tenant, role, expires_at)| {
            Ok(crate::KeyMatch {
                tenant,
                role: KeyRole::from_stored(&role)?,
                expires_at,
            })
        })
        .transpose()
    }

    fn rotate_key(
        &self,
        tenant: TenantId,
        role: KeyRole,
        new_hash: &str,
        now: Millis,
        retire_at: Millis,
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let known: Option<i64> = tx
            .query_row(
                "SELECT tenant_id FROM tenants WHERE tenant_id = ?1",
                [tenant],
                |r| r.get(0),
            )
            .optional()?;
        if known.is_none() {
            return Err(StoreError::NoSuchTenant(tenant.to_string()));
        }
        tx.execute(
            "UPDATE api_keys SET expires_at = MIN(COALESCE(expires_at, ?3), ?3)
             WHERE tenant_id = ?1 AND role = ?2",
            params![tenant, role.as_str(), retire_at],
        )?;
        tx.execute(
            "DELETE FROM api_keys WHERE tenant_id = ?1 AND role = ?2 AND expires_at <= ?3",
            params![tenant, role.as_str(), now],
        )?;
        tx.execute(
            "INSERT INTO api_keys (tenant_id, key_hash, role, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![tenant, new_hash, role.as_str(), now],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn set_custom_domain(&self, tenant: TenantId, domain: siyu_domain::Domain) -> Result<()> {
        let n = self.conn().execute(
            "UPDATE tenants SET custom_domain = ?2 WHERE tenant_id = ?1",
            params![tenant, domain.as_str()],
        )?;
        if n == 0 {
            return Err(StoreError::NoSuchTenant(tenant.to_string()));
        }
        Ok(())
    }
}

impl crate::EventLog for SqliteStore {
    fn append(
        &self,
        batches: &[AppendBatch<'_>],
        received_at: Millis,
    ) -> Result<Vec<Vec<Appended>>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut out = Vec::with_capacity(batches.len());
        {
            let mut next_seq =
                tx.prepare_cached("SELECT next_seq FROM tenants WHERE tenant_id = ?1")?;
            let mut set_seq =
                tx.prepare_cached("UPDATE tenants SET next_seq = ?2 WHERE tenant_id = ?1")?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO events (tenant_id, seq, id, type, domain, ts, identities, props, source, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (tenant_id, id) DO NOTHING",
            )?;
            for batch in batches {
                fenced(&tx, &self.fences, batch.tenant)?;
                let mut seq: i64 = next_seq
                    .query_row([batch.tenant], |r| r.get(0))
                    .optional()?
                    .ok_or_else(|| StoreError::NoSuchTenant(batch.tenant.to_string()))?;
                let mut outcomes = Vec::with_capacity(batch.events.len());
                debug_assert_eq!(batch.events.len(), batch.encoded.len());
                for (e, enc) in batch.events.iter().zip(batch.encoded) {
                    let n = insert.execute(params![
                        batch.tenant,
                        seq,
                        e.id.as_str(),
                        enc.ty.as_ref(),
                        e.domain().as_str(),
                        e.ts,
                        enc.identities,
                        enc.props,
                        e.source.as_deref(),
                        received_at,
                    ])?;
                    if n == 1 {
                        outcomes.push(Appended::Stored(seq));
                        seq += 1;
                    } else {
                        outcomes.push(Appended::Duplicate);
                    }
                }
                set_seq.execute(params![batch.tenant, seq])?;
                out.push(outcomes);
            }
        }
        tx.commit()?;
        Ok(out)
    }

    fn scan(
        &self,
        tenant: TenantId,
        after: i64,
        f: &mut dyn FnMut(StoredEvent) -> Result<()>,
    ) -> Result<()> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = ?1 AND seq > ?2 ORDER BY seq"
            ))?;
            let mut rows = stmt.query(params![tenant, after])?;
            while let Some(r) = rows.next()? {
                f(event_from_row(r)?)?;
            }
            Ok(())
        })
    }

    fn event_at(&self, tenant: TenantId, seq: i64) -> Result<Option<StoredEvent>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = ?1 AND seq = ?2"
            ))?;
            let mut rows = stmt.query(params![tenant, seq])?;
            rows.next()?.map(event_from_row).transpose()
        })
    }

    fn events_at(&self, tenant: TenantId, seqs: &[i64]) -> Result<Vec<StoredEvent>> {
        let mut sorted = seqs.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        self.read(|conn| {
            let mut out = Vec::with_capacity(sorted.len());
            // `carray` is not compiled in: bounded IN lists, two statement texts at most.
            for chunk in sorted.chunks(256) {
                let marks = vec!["?"; chunk.len()].join(", ");
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = ? AND seq IN ({marks}) ORDER BY seq"
                ))?;
                let mut values: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(chunk.len() + 1);
                values.push(&tenant);
                for s in chunk {
                    values.push(s);
                }
                let mut rows = stmt.query(values.as_slice())?;
                while let Some(r) = rows.next()? {
                    out.push(event_from_row(r)?);
                }
            }
            Ok(out)
        })
    }

    fn event_count(&self, tenant: TenantId) -> Result<u64> {
        let conn = self.conn();
        let n: i64 = conn.query_row(
            "SELECT COUNT(*) FROM events WHERE tenant_id = ?1",
            [tenant],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    fn last_seq(&self, tenant: TenantId) -> Result<i64> {
        let conn = self.conn();
        Ok(conn.query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM events WHERE tenant_id = ?1",
            [tenant],
            |r| r.get(0),
        )?)
    }

    fn check_writable(&self) -> Result<()> {
        self.probe_write()
    }

    fn flush(&self) -> Result<()> {
        let conn = self.conn();
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        Ok(())
    }
}

impl SqliteStore {
    fn probe_write(&self) -> Result<()> {
        let conn = self.conn();
        if conn.is_readonly(rusqlite::MAIN_DB)? {
            return Err(StoreError::ReadOnly(
                "the database file or its directory is read-only".into(),
            ));
        }
        // Rewrites the header's user_version with its own value: a real commit (a WAL frame
        // and its sync), which a full disk refuses.
        let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        conn.pragma_update(None, "user_version", v)
            .map_err(|e| StoreError::ReadOnly(e.to_string()))?;
        Ok(())
    }
}

impl crate::Decisions for SqliteStore {
    fn set_rules(&self, tenant: TenantId, toml: &str) -> Result<i64> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM layer_rules WHERE tenant_id = ?1",
            [tenant],
            |r| r.get(0),
        )?;
        tx.execute(
            "INSERT INTO layer_rules (tenant_id, version, rules, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![tenant, version, toml, siyu_domain::time::now_ms()],
        )?;
        tx.commit()?;
        Ok(version)
    }

    fn rules(&self, tenant: TenantId) -> Result<Option<(i64, String)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT version, rules FROM layer_rules WHERE tenant_id = ?1 ORDER BY version DESC LIMIT 1",
        )?;
        Ok(stmt
            .query_row([tenant], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    fn add_decision(&self, tenant: TenantId, d: &NewDecision<'_>) -> Result<i64> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let id: i64 = tx.query_row(
            "SELECT COALESCE(MAX(id), 0) + 1 FROM identity_decisions WHERE tenant_id = ?1",
            [tenant],
            |r| r.get(0),
        )?;
        tx.execute(
            "INSERT INTO identity_decisions (tenant_id, id, kind, fan_a, fan_b, after_seq, value, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![tenant, id, d.kind, d.fan_a, d.fan_b, d.after_seq, d.value, d.created_at],
        )?;
        tx.commit()?;
        Ok(id)
    }

    fn decisions(&self, tenant: TenantId, after_id: i64) -> Result<Vec<StoredDecision>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, kind, fan_a, fan_b, after_seq, created_at, value FROM identity_decisions
             WHERE tenant_id = ?1 AND id > ?2 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![tenant, after_id], |r| {
            Ok(StoredDecision {
                id: r.get(0)?,
                kind: r.get(1)?,
                fan_a: r.get(2)?,
                fan_b: r.get(3)?,
                after_seq: r.get(4)?,
                created_at: r.get(5)?,
                value: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

impl crate::LiveLog for SqliteStore {
    fn record_live(&self, tenant: TenantId, rec: &LiveRecord<'_>, mark: &LiveMark) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        fenced(&tx, &self.fences, tenant)?;
        let (ids, segment_ids, tag_ids) = if rec.is_empty() {
            Default::default()
        } else {
            crate::triggers::positions(taken(&tx, tenant)?, mark.seq, rec)
        };
        if !rec.transitions.is_empty() {
            insert_many(
                &tx,
                "INSERT INTO layer_transitions (tenant_id, id, fan, from_layer, to_layer, at, cause, seq, event_id) VALUES",
                9,
                rec.transitions.len(),
                |i, v| {
                    let r = &rec.transitions[i];
                    v.extend_from_slice(&[
                        &tenant,
                        &ids[i],
                        &r.fan,
                        &r.from,
                        &r.to,
                        &r.at,
                        &r.cause,
                        &r.seq,
                        &r.event_id,
                    ]);
                },
            )?;
        }
        if !rec.segment_changes.is_empty() {
            let rows = rec.segment_changes;
            let ids = &segment_ids;
            insert_many(
                &tx,
                "INSERT INTO segment_changes (tenant_id, id, segment_id, fan, entered, at, cause, seq, event_id) VALUES",
                9,
                rows.len(),
                |i, v| {
                    let r = &rows[i];
                    v.extend_from_slice(&[
                        &tenant,
                        &ids[i],
                        &r.segment,
                        &r.fan,
                        &r.entered,
                        &r.at,
                        &r.cause,
                        &r.seq,
                        &r.event_id,
                    ]);
                },
            )?;
        }
        insert_tags(&tx, tenant, rec.tag_changes, &tag_ids)?;
        tx.execute(
            "INSERT INTO layer_marks (tenant_id, clock, seq, rules_version) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (tenant_id) DO UPDATE SET clock = ?2, seq = ?3, rules_version = ?4",
            params![tenant, mark.clock, mark.seq, mark.rules_version],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn segment_changes(
        &self,
        tenant: TenantId,
        segment: Option<i64>,
        fans: Option<&[i64]>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredSegmentChange>> {
        log_page(
            &self.conn(),
            "SELECT id, segment_id, fan, entered, at, cause, seq, event_id FROM segment_changes
             WHERE tenant_id = ?1 AND id > ?2 AND (?5 IS NULL OR segment_id = ?5)
               AND (?3 IS NULL OR fan IN (SELECT value FROM json_each(?3)))
             ORDER BY id LIMIT ?4",
            (tenant, after, fans, limit),
            segment,
            |r| {
                Ok(StoredSegmentChange {
                    id: r.get(0)?,
                    segment: r.get(1)?,
                    fan: r.get(2)?,
                    entered: r.get(3)?,
                    at: r.get(4)?,
                    cause: r.get(5)?,
                    seq: r.get(6)?,
                    event_id: r.get(7)?,
                })
            },
        )
    }

    fn recorded_members(&self, tenant: TenantId) -> Result<Vec<(i64, i64)>> {
        let conn = self.conn();
        // SQLite takes the bare columns from the row holding MAX(id).
        let mut stmt = conn.prepare_cached(
            "SELECT segment_id, fan, entered FROM (
                 SELECT segment_id, fan, entered, MAX(id) FROM segment_changes
                 WHERE tenant_id = ?1 GROUP BY segment_id, fan)
             WHERE entered",
        )?;
        let rows = stmt.query_map([tenant], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn live_mark(&self, tenant: TenantId) -> Result<Option<LiveMark>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT clock, seq, rules_version FROM layer_marks WHERE tenant_id = ?1",
                [tenant],
                |r| {
                    Ok(LiveMark {
                        clock: r.get(0)?,
                        seq: r.get(1)?,
                        rules_version: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    fn recorded_layers(&self, tenant: TenantId) -> Result<Vec<(i64, String)>> {
        let conn = self.conn();
        // SQLite takes the bare columns from the row holding MAX(id).
        let mut stmt = conn.prepare_cached(
            "SELECT fan, to_layer, MAX(id) FROM layer_transitions WHERE tenant_id = ?1 GROUP BY fan",
        )?;
        let rows = stmt.query_map([tenant], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn transitions(
        &self,
        tenant: TenantId,
        fans: Option<&[i64]>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredTransition>> {
        log_page(
            &self.conn(),
            "SELECT id, fan, from_layer, to_layer, at, cause, seq, event_id FROM layer_transitions
             WHERE tenant_id = ?1 AND id > ?2
               AND (?3 IS NULL OR fan IN (SELECT value FROM json_each(?3)))
             ORDER BY id LIMIT ?4",
            (tenant, after, fans, limit),
            None,
            |r| {
                Ok(StoredTransition {
                    id: r.get(0)?,
                    fan: r.get(1)?,
                    from: r.get(2)?,
                    to: r.get(3)?,
                    at: r.get(4)?,
                    cause: r.get(5)?,
                    seq: r.get(6)?,
                    event_id: r.get(7)?,
                })
            },
        )
    }
}

impl crate::Segments for SqliteStore {
    fn create_segment(
        &self,
        tenant: TenantId,
        name: &str,
        expr: &str,
        tag: Option<&str>,
        now: Millis,
    ) -> Result<StoredSegment> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let taken: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM segments WHERE tenant_id = ?1 AND name = ?2 AND deleted_at IS NULL)",
            params![tenant, name],
            |r| r.get(0),
        )?;
        if taken {
            return Err(StoreError::SegmentExists(name.to_string()));
        }
        let id = next_id(&tx, "segments", tenant)?;
        tx.execute(
            "INSERT INTO segments (tenant_id, id, name, expr, tag, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![tenant, id, name, expr, tag, now],
        )?;
        tx.commit()?;
        Ok(StoredSegment {
            id,
            name: name.to_string(),
            expr: expr.to_string(),
            tag: tag.map(str::to_string),
            created_at: now,
        })
    }

    fn segments(&self, tenant: TenantId) -> Result<Vec<StoredSegment>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, name, expr, tag, created_at FROM segments
             WHERE tenant_id = ?1 AND deleted_at IS NULL ORDER BY id",
        )?;
        let rows = stmt.query_map([tenant], |r| {
            Ok(StoredSegment {
                id: r.get(0)?,
                name: r.get(1)?,
                expr: r.get(2)?,
                tag: r.get(3)?,
                created_at: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn delete_segment(&self, tenant: TenantId, id: i64, now: Millis) -> Result<bool> {
        Ok(self.conn().execute(
            "UPDATE segments SET deleted_at = ?3 WHERE tenant_id = ?1 AND id = ?2 AND deleted_at IS NULL",
            params![tenant, id, now],
        )? > 0)
    }

    fn add_tag_changes(&self, tenant: TenantId, rows: &[StoredTagChange]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Placed after the last event stored: the engine may not have applied it yet, and
        // readers see nothing beyond what it applied.
        let last_seq: i64 = tx.query_row(
            "SELECT next_seq - 1 FROM tenants WHERE tenant_id = ?1",
            [tenant],
            |r| r.get(0),
        )?;
        let rec = LiveRecord {
            tag_changes: rows,
            ..LiveRecord::default()
        };
        let (_, _, ids) = crate::triggers::positions(taken(&tx, tenant)?, last_seq, &rec);
        insert_tags(&tx, tenant, rows, &ids)?;
        tx.commit()?;
        Ok(())
    }

    fn tag_changes(
        &self,
        tenant: TenantId,
        fans: Option<&[i64]>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredTagChange>> {
        log_page(
            &self.conn(),
            "SELECT id, fan, tag, added, at, source FROM tag_changes
             WHERE tenant_id = ?1 AND id > ?2
               AND (?3 IS NULL OR fan IN (SELECT value FROM json_each(?3)))
             ORDER BY id LIMIT ?4",
            (tenant, after, fans, limit),
            None,
            |r| {
                Ok(StoredTagChange {
                    id: r.get(0)?,
                    fan: r.get(1)?,
                    tag: r.get(2)?,
                    added: r.get(3)?,
                    at: r.get(4)?,
                    source: r.get(5)?,
                })
            },
        )
    }
}

impl crate::Connectors for SqliteStore {
    // connectors

    fn set_connector(&self, tenant: TenantId, kind: &str, config: &str, now: Millis) -> Result<()> {
        self.conn().execute(
            "INSERT INTO connectors (tenant_id, kind, config, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (tenant_id, kind) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at",
            params![tenant, kind, config, now],
        )?;
        Ok(())
    }

    fn connector(&self, tenant: TenantId, kind: &str) -> Result<Option<StoredConnector>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT config, state, updated_at FROM connectors WHERE tenant_id = ?1 AND kind = ?2",
        )?;
        Ok(stmt
            .query_row(params![tenant, kind], |r| {
                Ok(StoredConnector {
                    config: r.get(0)?,
                    state: r.get(1)?,
                    updated_at: r.get(2)?,
                })
            })
            .optional()?)
    }

    fn connectors(&self, kind: &str) -> Result<Vec<(TenantId, StoredConnector)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT tenant_id, config, state, updated_at FROM connectors WHERE kind = ?1 ORDER BY tenant_id",
        )?;
        let rows = stmt.query_map([kind], |r| {
            Ok((
                r.get(0)?,
                StoredConnector {
                    config: r.get(1)?,
                    state: r.get(2)?,
                    updated_at: r.get(3)?,
                },
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn set_connector_state(&self, tenant: TenantId, kind: &str, state: &str) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        fenced(&tx, &self.fences, tenant)?;
        let n = tx.execute(
            "UPDATE connectors SET state = ?3 WHERE tenant_id = ?1 AND kind = ?2",
            params![tenant, kind, state],
        )?;
        tx.commit()?;
        if n == 0 {
            return Err(StoreError::NoSuchConnector {
                tenant,
                kind: kind.to_string(),
            });
        }
        Ok(())
    }
}

/// A snapshot is written as a new generation of parts, each in its own short transaction on
/// the write connection (handed fairly to the writer between parts, so its commits wait for
/// one part at most, not for the whole snapshot), then made the tenant's snapshot by one
/// update of its header row; the older generations are deleted after, part by part. A reader
/// reads the header and its generation's parts in one read transaction on its own
/// connection, so it sees one whole snapshot. A write cut short (a crash) leaves parts of a
/// generation no header names; the next write deletes them with the old ones.
impl crate::Snapshots for SqliteStore {
    fn put_snapshot(&self, tenant: TenantId, snap: &crate::StoredSnapshot) -> Result<()> {
        let held = |conn: &Connection| -> Result<Option<(u32, i64, i64)>> {
            Ok(conn
                .query_row(
                    "SELECT format, last_seq, decisions_seen FROM snapshots WHERE tenant_id = ?1",
                    params![tenant],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?)
        };
        let parts: Vec<&[u8]> = snap.data.chunks(crate::SNAPSHOT_PART_BYTES).collect();
        // The new generation is above every one held, the first part written with it, so
        // that a concurrent writer (a CLI beside the server) picks another.
        let generation = {
            let mut conn = self.conn();
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            if held(&tx)?.is_some_and(|h| crate::further_along(h, snap)) {
                return Ok(());
            }
            let generation: i64 = tx.query_row(
                "SELECT MAX(COALESCE((SELECT MAX(generation) FROM snapshot_parts WHERE tenant_id = ?1), 0),
                            COALESCE((SELECT generation FROM snapshots WHERE tenant_id = ?1), 0)) + 1",
                params![tenant],
                |r| r.get(0),
            )?;
            insert_part(
                &tx,
                tenant,
                generation,
                0,
                parts.first().copied().unwrap_or(&[]),
            )?;
            tx.commit()?;
            parking_lot::MutexGuard::unlock_fair(conn);
            generation
        };
        for (i, part) in parts.iter().enumerate().skip(1) {
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            insert_part(&tx, tenant, generation, i as i64, part)?;
            tx.commit()?;
            parking_lot::MutexGuard::unlock_fair(conn);
        }
        let parts_len = parts.len().max(1) as i64;
        {
            let mut conn = self.conn();
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            fenced(&tx, &self.fences, tenant)?;
            let written: i64 = tx.query_row(
                "SELECT COUNT(*) FROM snapshot_parts WHERE tenant_id = ?1 AND generation = ?2",
                params![tenant, generation],
                |r| r.get(0),
            )?;
            if held(&tx)?.is_some_and(|h| crate::further_along(h, snap)) || written != parts_len {
                // Overtaken by a further snapshot written meanwhile (whose write deleted this
                // generation's parts, or will): this one is not kept.
                drop(tx);
                drop(conn);
                return self.delete_parts(tenant, Parts::Only(generation));
            }
            tx.execute(
                "INSERT OR REPLACE INTO snapshots (tenant_id, format, last_seq, decisions_seen, created_at, parts, generation)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    tenant,
                    snap.format,
                    snap.last_seq,
                    snap.decisions_seen,
                    snap.created_at,
                    parts_len,
                    generation
                ],
            )?;
            tx.commit()?;
        }
        self.delete_parts(tenant, Parts::Except(generation))
    }

    fn snapshot(&self, tenant: TenantId) -> Result<Option<crate::StoredSnapshot>> {
        self.read(|conn| {
            // One read transaction: the header and the parts it names, as one state.
            conn.execute_batch("BEGIN")?;
            let out = read_snapshot(conn, tenant);
            let ended = conn.execute_batch("COMMIT");
            let out = out?;
            ended?;
            Ok(out)
        })
    }

    fn drop_snapshot(&self, tenant: TenantId) -> Result<()> {
        self.conn().execute(
            "DELETE FROM snapshots WHERE tenant_id = ?1",
            params![tenant],
        )?;
        self.delete_parts(tenant, Parts::All)
    }
}

fn insert_part(
    tx: &rusqlite::Transaction<'_>,
    tenant: TenantId,
    generation: i64,
    part: i64,
    data: &[u8],
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO snapshot_parts (tenant_id, generation, part, data) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![tenant, generation, part, data])?;
    Ok(())
}

fn read_snapshot(conn: &Connection, tenant: TenantId) -> Result<Option<crate::StoredSnapshot>> {
    let Some((mut snap, parts, generation)) = conn
        .query_row(
            "SELECT format, last_seq, decisions_seen, created_at, parts, generation FROM snapshots WHERE tenant_id = ?1",
            params![tenant],
            |r| {
                Ok((
                    crate::StoredSnapshot {
                        format: r.get(0)?,
                        last_seq: r.get(1)?,
                        decisions_seen: r.get(2)?,
                        created_at: r.get(3)?,
                        data: Vec::new(),
                    },
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            },
        )
        .optional()?
    else {
        return Ok(None);
    };
    let bytes: i64 = conn.query_row(
        "SELECT COALESCE(SUM(LENGTH(data)), 0) FROM snapshot_parts WHERE tenant_id = ?1 AND generation = ?2",
        params![tenant, generation],
        |r| r.get(0),
    )?;
    snap.data.reserve_exact(usize::try_from(bytes).unwrap_or(0));
    let mut stmt = conn.prepare(
        "SELECT data FROM snapshot_parts WHERE tenant_id = ?1 AND generation = ?2 ORDER BY part",
    )?;
    let mut rows = stmt.query(params![tenant, generation])?;
    let mut read = 0;
    while let Some(row) = rows.next()? {
        snap.data.extend_from_slice(row.get_ref(0)?.as_blob()?);
        read += 1;
    }
    if read != parts {
        return Err(StoreError::Corrupt(format!(
            "snapshot of tenant {tenant} has {read} of its {parts} parts"
        )));
    }
    Ok(Some(snap))
}

/// Which of a tenant's snapshot parts [`SqliteStore::delete_parts`] deletes.
#[derive(Clone, Copy)]
enum Parts {
    All,
    Only(i64),
    Except(i64),
}

impl SqliteStore {
    /// Deletes the tenant's snapshot parts `which`, a few at a time, each batch in its own
    /// transaction.
    fn delete_parts(&self, tenant: TenantId, which: Parts) -> Result<()> {
        let (only, except) = match which {
            Parts::All => (None, None),
            Parts::Only(g) => (Some(g), None),
            Parts::Except(g) => (None, Some(g)),
        };
        loop {
            let conn = self.conn();
            let deleted = conn
                .prepare_cached(
                    "DELETE FROM snapshot_parts WHERE tenant_id = ?1 AND (generation, part) IN
                       (SELECT generation, part FROM snapshot_parts WHERE tenant_id = ?1
                          AND (?2 IS NULL OR generation = ?2) AND (?3 IS NULL OR generation <> ?3)
                        LIMIT 8)",
                )?
                .execute(params![tenant, only, except])?;
            parking_lot::MutexGuard::unlock_fair(conn);
            if deleted == 0 {
                return Ok(());
            }
        }
    }
}

impl crate::TriggerLog for SqliteStore {
    fn event_heads(
        &self,
        tenant: TenantId,
        after: i64,
        upto: i64,
        only: Option<&[i64]>,
        limit: usize,
    ) -> Result<Vec<crate::EventHead>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT seq, id, type, ts FROM events
             WHERE tenant_id = ?1 AND seq > ?2 AND seq <= ?3
               AND (?4 IS NULL OR seq IN (SELECT value FROM json_each(?4)))
             ORDER BY seq LIMIT ?5",
        )?;
        let only = only.map(|s| serde_json::to_string(s).unwrap_or_default());
        let rows = stmt.query_map(params![tenant, after, upto, only, limit as i64], |r| {
            Ok(crate::EventHead {
                seq: r.get(0)?,
                id: r.get(1)?,
                ty: r.get(2)?,
                ts: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn trigger_cursor(
        &self,
        tenant: TenantId,
        consumer: &str,
    ) -> Result<Option<crate::StoredCursor>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT consumer, after_id, updated_at FROM trigger_cursors
                 WHERE tenant_id = ?1 AND consumer = ?2",
                params![tenant, consumer],
                |r| {
                    Ok(crate::StoredCursor {
                        consumer: r.get(0)?,
                        after: r.get(1)?,
                        updated_at: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    fn set_trigger_cursor(
        &self,
        tenant: TenantId,
        consumer: &str,
        after: i64,
        now: Millis,
    ) -> Result<()> {
        self.conn().execute(
            "INSERT INTO trigger_cursors (tenant_id, consumer, after_id, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (tenant_id, consumer) DO UPDATE SET after_id = ?3, updated_at = ?4",
            params![tenant, consumer, after, now],
        )?;
        Ok(())
    }

    fn trigger_cursors(&self, tenant: TenantId) -> Result<Vec<crate::StoredCursor>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT consumer, after_id, updated_at FROM trigger_cursors
             WHERE tenant_id = ?1 ORDER BY consumer",
        )?;
        let rows = stmt.query_map([tenant], |r| {
            Ok(crate::StoredCursor {
                consumer: r.get(0)?,
                after: r.get(1)?,
                updated_at: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

/// Fails with `NotOwner` unless the lease this handle holds for `tenant` is still the
/// tenant's (see `crate::leases`); nothing is checked until leases are required.
pub(crate) fn fenced(tx: &Connection, fences: &crate::Fences, tenant: TenantId) -> Result<()> {
    let Some((node, token)) = fences.check(tenant)? else {
        return Ok(());
    };
    let held = tx
        .query_row(
            "SELECT 1 FROM tenant_leases WHERE tenant_id = ?1 AND node_id = ?2 AND token = ?3",
            params![tenant, node, token],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if !held {
        fences.forget(tenant);
        return Err(StoreError::NotOwner(tenant));
    }
    Ok(())
}

impl crate::Leases for SqliteStore {
    fn heartbeat(&self, node: &crate::Node) -> Result<()> {
        self.conn().execute(
            "INSERT INTO nodes (node_id, addr, secret, expires_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (node_id) DO UPDATE SET addr = ?2, secret = ?3, expires_at = ?4",
            params![node.id, node.addr, node.secret, node.expires_at],
        )?;
        Ok(())
    }

    fn remove_node(&self, id: &str) -> Result<()> {
        self.conn()
            .execute("DELETE FROM nodes WHERE node_id = ?1", [id])?;
        Ok(())
    }

    fn nodes(&self, now: Millis) -> Result<Vec<crate::Node>> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(
            "SELECT node_id, addr, secret, expires_at FROM nodes WHERE expires_at > ?1 ORDER BY node_id",
        )?;
        let rows = st.query_map([now], |r| {
            Ok(crate::Node {
                id: r.get(0)?,
                addr: r.get(1)?,
                secret: r.get(2)?,
                expires_at: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn acquire_lease(
        &self,
        tenant: TenantId,
        node: &str,
        now: Millis,
        expires_at: Millis,
    ) -> Result<Option<crate::Lease>> {
        let token: Option<i64> = self
            .conn()
            .query_row(
                "INSERT INTO tenant_leases (tenant_id, node_id, token, expires_at) VALUES (?1, ?2, 1, ?4)
                 ON CONFLICT (tenant_id) DO UPDATE SET
                     token = CASE WHEN node_id = excluded.node_id THEN token ELSE token + 1 END,
                     node_id = excluded.node_id, expires_at = excluded.expires_at
                 WHERE node_id = excluded.node_id OR expires_at <= ?3
                 RETURNING token",
                params![tenant, node, now, expires_at],
                |r| r.get(0),
            )
            .optional()?;
        Ok(token.map(|token| {
            self.fences.hold(tenant, node, token);
            crate::Lease {
                tenant,
                node: node.to_string(),
                token,
                expires_at,
            }
        }))
    }

    fn renew_lease(
        &self,
        tenant: TenantId,
        node: &str,
        token: i64,
        expires_at: Millis,
    ) -> Result<bool> {
        let n = self.conn().execute(
            "UPDATE tenant_leases SET expires_at = ?4 WHERE tenant_id = ?1 AND node_id = ?2 AND token = ?3",
            params![tenant, node, token, expires_at],
        )?;
        if n == 0 {
            self.fences.forget(tenant);
        }
        Ok(n == 1)
    }

    fn release_lease(&self, tenant: TenantId, node: &str, token: i64) -> Result<()> {
        self.fences.forget(tenant);
        self.conn().execute(
            "UPDATE tenant_leases SET expires_at = 0 WHERE tenant_id = ?1 AND node_id = ?2 AND token = ?3",
            params![tenant, node, token],
        )?;
        Ok(())
    }

    fn leases(&self) -> Result<Vec<crate::Lease>> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(
            "SELECT tenant_id, node_id, token, expires_at FROM tenant_leases ORDER BY tenant_id",
        )?;
        let rows = st.query_map([], |r| {
            Ok(crate::Lease {
                tenant: r.get(0)?,
                node: r.get(1)?,
                token: r.get(2)?,
                expires_at: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn require_leases(&self) {
        self.fences.require();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LiveLog, Segments, Snapshots, Tenants};

    fn snapshot_of(last_seq: i64, bytes: usize) -> crate::StoredSnapshot {
        crate::StoredSnapshot {
            format: 1,
            last_seq,
            decisions_seen: 0,
            created_at: 0,
            data: (0..bytes).map(|i| (i % 253) as u8).collect(),
        }
    }

    fn generations(s: &SqliteStore, tenant: TenantId) -> Vec<(i64, i64)> {
        let conn = s.conn();
        let mut stmt = conn
            .prepare(
                "SELECT generation, COUNT(*) FROM snapshot_parts WHERE tenant_id = ?1
                 GROUP BY generation ORDER BY generation",
            )
            .unwrap();
        stmt.query_map([tenant], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// A write cut short (parts of a generation no header names) is never read, and the next
    /// write deletes it with the generation it replaces.
    #[test]
    fn a_snapshot_written_halfway_is_not_read_and_is_cleaned_up() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path(), Durability::Normal).unwrap();
        let t = s.create_tenant("a", "w", "a", 0).unwrap().id;
        let first = snapshot_of(10, crate::SNAPSHOT_PART_BYTES + 5);
        s.put_snapshot(t, &first).unwrap();
        assert_eq!(generations(&s, t), vec![(1, 2)]);
        // A crash after two parts of a further snapshot.
        s.conn()
            .execute_batch("INSERT INTO snapshot_parts VALUES (1, 2, 0, x'00'), (1, 2, 1, x'01');")
            .unwrap();
        assert_eq!(s.snapshot(t).unwrap().as_ref(), Some(&first));
        let next = snapshot_of(20, 7);
        s.put_snapshot(t, &next).unwrap();
        assert_eq!(s.snapshot(t).unwrap().as_ref(), Some(&next));
        assert_eq!(
            generations(&s, t),
            vec![(3, 1)],
            "only the one named is left"
        );
        s.drop_snapshot(t).unwrap();
        assert_eq!(generations(&s, t), vec![]);
    }

    /// The write connection is free between a snapshot's parts: once the first part is
    /// committed, a commit asked for lands before the last part, not after the whole
    /// snapshot (as it did when a snapshot was one transaction).
    #[test]
    fn commits_go_on_between_a_snapshots_parts() {
        let dir = tempfile::tempdir().unwrap();
        let s = std::sync::Arc::new(SqliteStore::open(dir.path(), Durability::Normal).unwrap());
        let t = s.create_tenant("a", "w", "a", 0).unwrap().id;
        let parts = 12;
        let big = snapshot_of(10, crate::SNAPSHOT_PART_BYTES * parts);
        // Parts committed so far, seen from a reader's connection (no lock of the writer's).
        let committed = |s: &SqliteStore| {
            s.read(|c| {
                Ok(c.query_row(
                    "SELECT COUNT(*) FROM snapshot_parts WHERE tenant_id = ?1",
                    [t],
                    |r| r.get::<_, i64>(0),
                )?)
            })
            .unwrap()
        };
        let writer = {
            let s = s.clone();
            std::thread::spawn(move || s.put_snapshot(t, &big).unwrap())
        };
        while committed(&s) == 0 {
            std::thread::yield_now();
        }
        // A commit (a tenant's creation, standing for a group of events).
        s.create_tenant("b", "w2", "a2", 0).unwrap();
        let written_then = committed(&s);
        writer.join().unwrap();
        assert!(
            written_then < parts as i64,
            "the commit waited for {written_then} of {parts} parts"
        );
        let read = s.snapshot(t).unwrap().unwrap();
        assert_eq!(read.data.len(), crate::SNAPSHOT_PART_BYTES * parts);
    }

    /// Rows stored before the trigger stream keep their order, ahead of every event, and no
    /// two share a position; what is stored after follows them.
    #[test]
    fn migration_9_turns_ids_into_positions() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut conn = Connection::open(dir.path().join("siyu.db")).unwrap();
            conn.execute_batch(
                "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
            )
            .unwrap();
            let tx = conn.transaction().unwrap();
            for (i, sql) in MIGRATIONS[..8].iter().enumerate() {
                tx.execute_batch(sql).unwrap();
                tx.execute(
                    "INSERT INTO schema_migrations VALUES (?1, 0)",
                    [i as i64 + 1],
                )
                .unwrap();
            }
            tx.execute_batch(
                "INSERT INTO tenants (tenant_id, name, created_at) VALUES (1, 't', 0);
                 INSERT INTO layer_transitions (tenant_id, id, fan, from_layer, to_layer, at, cause)
                   VALUES (1, 1, 1, NULL, 'passerby', 0, 'event'), (1, 2, 2, NULL, 'passerby', 0, 'event');
                 INSERT INTO segment_changes (tenant_id, id, segment_id, fan, entered, at, cause)
                   VALUES (1, 1, 1, 1, 1, 0, 'created'), (1, 2, 1, 2, 1, 0, 'created');
                 INSERT INTO tag_changes (tenant_id, id, fan, tag, added, at, source)
                   VALUES (1, 1, 1, 'vip', 1, 0, 'manual');",
            )
            .unwrap();
            tx.commit().unwrap();
        }
        let s = SqliteStore::open(dir.path(), Durability::Normal).unwrap();
        let t: Vec<i64> = s
            .transitions(1, None, 0, 10)
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        let c: Vec<i64> = s
            .segment_changes(1, None, None, 0, 10)
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        let g: Vec<i64> = s
            .tag_changes(1, None, 0, 10)
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!((t, c, g), (vec![5, 9], vec![6, 10], vec![7]));
        // The next rows come after them, with a manual tag placed after the last event (none).
        s.add_tag_changes(
            1,
            &[StoredTagChange {
                id: 0,
                fan: 2,
                tag: "vip".into(),
                added: true,
                at: 0,
                source: "manual".into(),
            }],
        )
        .unwrap();
        assert_eq!(s.tag_changes(1, None, 7, 10).unwrap()[0].id, 11);
        assert_eq!(s.tenants().unwrap().len(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn the_data_directory_and_database_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = root.path().join("data");
        let s = SqliteStore::open(&dir, Durability::Normal).unwrap();
        s.create_tenant("a", "w", "a", 0).unwrap();
        assert_eq!(mode(&dir), 0o700);
        for name in ["siyu.db", "siyu.db-wal", "siyu.db-shm"] {
            assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
        }
        drop(s);
        // A database an earlier version left readable by all is narrowed at the next open.
        std::fs::set_permissions(dir.join("siyu.db"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let _s = SqliteStore::open(&dir, Durability::Normal).unwrap();
        assert_eq!(mode(&dir.join("siyu.db")), 0o600);
    }
}
