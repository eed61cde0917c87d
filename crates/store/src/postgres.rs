//! The server backend: PostgreSQL through the synchronous `postgres` client.
//!
//! Writes go through one client behind a mutex (the ingest writer is single anyway); reads
//! that may run while a write is in progress (key lookups, scans) use a second client, so a
//! long scan never blocks ingestion. A batch is one multi-row `INSERT ... SELECT FROM unnest(...)
//! ON CONFLICT DO NOTHING RETURNING`, i.e. one round trip per transaction, not per event.
//!
//! A connection PostgreSQL ended (a restart, an outage) is replaced by the next call: while
//! the server is away every call fails at once, and once it is back the store works again
//! without a restart of the process (see `PostgresStore::with`).

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};
use siyu_domain::Millis;

use crate::{
    AppendBatch, Appended, KeyRole, LiveMark, LiveRecord, NewDecision, Result, StoreError,
    StoredConnector, StoredDecision, StoredEvent, StoredSegment, StoredSegmentChange,
    StoredTagChange, StoredTransition, Tenant, TenantId, row_to_event,
};

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE tenants (
    tenant_id     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    created_at    BIGINT NOT NULL,
    next_seq      BIGINT NOT NULL DEFAULT 1,
    custom_domain TEXT NOT NULL DEFAULT 'private'
);
CREATE TABLE api_keys (
    tenant_id  BIGINT NOT NULL REFERENCES tenants(tenant_id),
    key_hash   TEXT NOT NULL UNIQUE,
    role       TEXT NOT NULL CHECK (role IN ('write', 'admin')),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, key_hash)
);
CREATE TABLE events (
    tenant_id   BIGINT NOT NULL,
    seq         BIGINT NOT NULL,
    id          TEXT NOT NULL,
    type        TEXT NOT NULL,
    domain      TEXT NOT NULL,
    ts          BIGINT NOT NULL,
    identities  TEXT NOT NULL,
    props       TEXT,
    source      TEXT,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, seq),
    UNIQUE (tenant_id, id)
);
"#,
    r#"
CREATE TABLE identity_decisions (
    tenant_id  BIGINT NOT NULL REFERENCES tenants(tenant_id),
    id         BIGINT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('confirm', 'distinct', 'shared')),
    fan_a      BIGINT NOT NULL,
    fan_b      BIGINT NOT NULL,
    after_seq  BIGINT NOT NULL,
    value      TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
"#,
    r#"
CREATE TABLE layer_rules (
    tenant_id  BIGINT NOT NULL REFERENCES tenants(tenant_id),
    version    BIGINT NOT NULL,
    rules      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, version)
);
"#,
    r#"
CREATE TABLE layer_transitions (
    tenant_id  BIGINT NOT NULL REFERENCES tenants(tenant_id),
    id         BIGINT NOT NULL,
    fan        BIGINT NOT NULL,
    from_layer TEXT,
    to_layer   TEXT NOT NULL,
    at         BIGINT NOT NULL,
    cause      TEXT NOT NULL CHECK (cause IN ('event', 'decay')),
    seq        BIGINT,
    event_id   TEXT,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX layer_transitions_fan ON layer_transitions (tenant_id, fan, id);
"#,
    // 5: transitions caused by rules changes and identity decisions; where live layers were
    // last stored (see `LiveMark`).
    r#"
ALTER TABLE layer_transitions DROP CONSTRAINT layer_transitions_cause_check;
ALTER TABLE layer_transitions ADD CONSTRAINT layer_transitions_cause_check
    CHECK (cause IN ('event', 'decay', 'rules', 'identity'));
CREATE TABLE layer_marks (
    tenant_id     BIGINT PRIMARY KEY REFERENCES tenants(tenant_id),
    clock         BIGINT NOT NULL,
    seq           BIGINT NOT NULL,
    rules_version BIGINT NOT NULL
);
"#,
    // 6: connectors: per-tenant connector settings and poller checkpoints.
    r#"
CREATE TABLE connectors (
    tenant_id  BIGINT NOT NULL REFERENCES tenants(tenant_id),
    kind       TEXT NOT NULL,
    config     TEXT NOT NULL,
    state      TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, kind)
);
"#,
    // 7: saved segments, their entries and exits, and tag changes.
    r#"
CREATE TABLE segments (
    tenant_id  BIGINT NOT NULL REFERENCES tenants(tenant_id),
    id         BIGINT NOT NULL,
    name       TEXT NOT NULL,
    expr       TEXT NOT NULL,
    tag        TEXT,
    created_at BIGINT NOT NULL,
    deleted_at BIGINT,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX segments_live_name ON segments (tenant_id, name) WHERE deleted_at IS NULL;
CREATE TABLE segment_changes (
    tenant_id  BIGINT NOT NULL REFERENCES tenants(tenant_id),
    id         BIGINT NOT NULL,
    segment_id BIGINT NOT NULL,
    fan        BIGINT NOT NULL,
    entered    BOOLEAN NOT NULL,
    at         BIGINT NOT NULL,
    cause      TEXT NOT NULL CHECK (cause IN ('event', 'time', 'identity', 'rules', 'tag', 'created')),
    seq        BIGINT,
    event_id   TEXT,
    PRIMARY KEY (tenant_id, id)
);
CREATE TABLE tag_changes (
    tenant_id BIGINT NOT NULL REFERENCES tenants(tenant_id),
    id        BIGINT NOT NULL,
    fan       BIGINT NOT NULL,
    tag       TEXT NOT NULL,
    added     BOOLEAN NOT NULL,
    at        BIGINT NOT NULL,
    source    TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX tag_changes_fan ON tag_changes (tenant_id, fan, id);
"#,
    // 8: engine snapshots, the latest per tenant.
    r#"
CREATE TABLE snapshots (
    tenant_id      BIGINT PRIMARY KEY REFERENCES tenants(tenant_id),
    format         BIGINT NOT NULL,
    last_seq       BIGINT NOT NULL,
    decisions_seen BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    parts          BIGINT NOT NULL
);
CREATE TABLE snapshot_parts (
    tenant_id BIGINT NOT NULL REFERENCES tenants(tenant_id),
    part      BIGINT NOT NULL,
    data      BYTEA NOT NULL,
    PRIMARY KEY (tenant_id, part)
);
"#,
    // 9: one trigger stream (see the SQLite migration of the same number).
    r#"
UPDATE layer_transitions SET id = -(4 * id + 1);
UPDATE layer_transitions SET id = -id;
UPDATE segment_changes SET id = -(4 * id + 2);
UPDATE segment_changes SET id = -id;
UPDATE tag_changes SET id = -(4 * id + 3);
UPDATE tag_changes SET id = -id;
CREATE TABLE trigger_cursors (
    tenant_id  BIGINT NOT NULL REFERENCES tenants(tenant_id),
    consumer   TEXT NOT NULL,
    after_id   BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, consumer)
);
"#,
    // 10: snapshot parts stored as they are (EXTERNAL: no pglz compression when written,
    // none to undo when read at a start), and the fans' transition index covering their
    // layers. A snapshot is written on a connection of its own (see `put_snapshot`).
    r#"
ALTER TABLE snapshot_parts ALTER COLUMN data SET STORAGE EXTERNAL;
-- Every fan's last recorded layer (`recorded_layers`, read at each start) from the index.
DROP INDEX layer_transitions_fan;
CREATE INDEX layer_transitions_fan ON layer_transitions (tenant_id, fan, id) INCLUDE (to_layer);
"#,
    // nodes and tenants' leases (see `crate::leases`).
    r#"
CREATE TABLE nodes (
    node_id    TEXT PRIMARY KEY,
    addr       TEXT NOT NULL,
    secret     TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE TABLE tenant_leases (
    tenant_id  BIGINT PRIMARY KEY REFERENCES tenants(tenant_id),
    node_id    TEXT NOT NULL,
    token      BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
"#,
    // 12: key rotation. A key replaced with a grace period works until `expires_at` (NULL:
    // until it is rotated).
    r#"
ALTER TABLE api_keys ADD COLUMN expires_at BIGINT;
"#,
    // 13: journeys (see the SQLite migration of the same number). Columns hold the Rust
    // types' widths: SMALLINT for the closed sets, INTEGER for steps, counts and days.
    r#"
CREATE TABLE journey_versions (
    tenant_id  BIGINT NOT NULL REFERENCES tenants(tenant_id),
    name       TEXT NOT NULL,
    version    BIGINT NOT NULL CHECK (version >= 1),
    definition TEXT NOT NULL,
    applied_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name, version)
);
CREATE TABLE journeys (
    tenant_id  BIGINT NOT NULL REFERENCES tenants(tenant_id),
    name       TEXT NOT NULL,
    version    BIGINT NOT NULL,
    paused     BOOLEAN NOT NULL DEFAULT false,
    applied_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    -- The trigger stream's head when the journey was first applied (see SQLite's).
    starts_after BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, name)
);
CREATE TABLE journey_runs (
    tenant_id  BIGINT NOT NULL,
    id         BIGINT NOT NULL,
    journey    TEXT NOT NULL,
    version    BIGINT NOT NULL,
    fan        BIGINT NOT NULL,
    entry_key  TEXT NOT NULL,
    state      SMALLINT NOT NULL CHECK (state >= 0),
    step       INTEGER NOT NULL,
    wake_at    BIGINT,
    entered_at BIGINT NOT NULL,
    goal_by    BIGINT,
    updated_at BIGINT NOT NULL,
    data       TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, entry_key)
);
-- Only runs with a timer, ties by id.
CREATE INDEX journey_runs_wake ON journey_runs (tenant_id, wake_at, id) WHERE wake_at IS NOT NULL;
CREATE INDEX journey_runs_fan ON journey_runs (tenant_id, fan);
-- The report's counts of runs, and a journey's runs for its history counts and outbox rows.
CREATE INDEX journey_runs_journey ON journey_runs (tenant_id, journey, version, state, step);
CREATE TABLE journey_history (
    tenant_id BIGINT NOT NULL,
    run       BIGINT NOT NULL,
    n         INTEGER NOT NULL,
    at        BIGINT NOT NULL,
    step      TEXT,
    kind      SMALLINT NOT NULL CHECK (kind >= 0),
    reason    TEXT,
    detail    TEXT,
    PRIMARY KEY (tenant_id, run, n)
);
CREATE TABLE outbox (
    tenant_id  BIGINT NOT NULL,
    id         BIGINT NOT NULL,
    channel    TEXT NOT NULL,
    run        BIGINT NOT NULL,
    step       TEXT NOT NULL,
    fan        BIGINT NOT NULL,
    key        TEXT NOT NULL,
    payload    TEXT NOT NULL,
    state      SMALLINT NOT NULL CHECK (state IN (0, 1, 2)),
    attempts   INTEGER NOT NULL CHECK (attempts >= 0),
    next_at    BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    settled_at BIGINT,
    answer     TEXT,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, key)
);
CREATE INDEX outbox_due ON outbox (tenant_id, channel, state, next_at, id);
CREATE TABLE tasks (
    tenant_id  BIGINT NOT NULL REFERENCES tenants(tenant_id),
    id         BIGINT NOT NULL,
    team       TEXT NOT NULL,
    text       TEXT NOT NULL,
    fan        BIGINT,
    run        BIGINT,
    step       TEXT,
    state      SMALLINT NOT NULL CHECK (state IN (0, 1, 2)),
    agent      TEXT,
    outcome    TEXT,
    created_at BIGINT NOT NULL,
    due_at     BIGINT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX tasks_state ON tasks (tenant_id, state, team);
CREATE TABLE journey_fans (
    tenant_id       BIGINT NOT NULL,
    fan             BIGINT NOT NULL,
    opted_out_at    BIGINT,
    opt_out_reason  TEXT,
    authorized_at   BIGINT,
    im_in_at        BIGINT,
    im_conversation TEXT,
    im_message      TEXT,
    im_replies      INTEGER NOT NULL CHECK (im_replies >= 0),
    last_send_at    BIGINT,
    last_send_run   BIGINT,
    last_send_step  TEXT,
    PRIMARY KEY (tenant_id, fan)
);
CREATE TABLE fan_sends (
    tenant_id BIGINT NOT NULL,
    fan       BIGINT NOT NULL,
    channel   TEXT NOT NULL,
    day       INTEGER NOT NULL,
    count     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, fan, channel, day)
);
CREATE TABLE journey_variants (
    tenant_id BIGINT NOT NULL,
    journey   TEXT NOT NULL,
    version   BIGINT NOT NULL,
    step      TEXT NOT NULL,
    arm       TEXT NOT NULL,
    sent      BIGINT NOT NULL,
    converted BIGINT NOT NULL,
    failed    BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, journey, version, step, arm)
);
"#,
    // 14: outbox rows by run (see the SQLite migration of the same number): with the tables'
    // statistics not yet gathered after a burst, the planner's nested loop over runs would
    // otherwise scan the outbox once per run.
    "CREATE INDEX outbox_run ON outbox (tenant_id, run);",
    // 15: leads (see the SQLite migration of the same number). Ids and times BIGINT,
    // counts, positions and minutes INTEGER.
    r#"
CREATE TABLE teams (
    tenant_id        BIGINT NOT NULL REFERENCES tenants(tenant_id),
    name             TEXT NOT NULL,
    strategy         TEXT NOT NULL,
    first_contact_ms BIGINT,
    recycle_ms       BIGINT,
    lead_agent       TEXT,
    escalate         TEXT NOT NULL,
    last_agent       TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
CREATE TABLE agents (
    tenant_id   BIGINT NOT NULL REFERENCES tenants(tenant_id),
    name        TEXT NOT NULL,
    team        TEXT NOT NULL,
    capacity    INTEGER,
    daily_cap   INTEGER,
    -- Working hours, minutes after midnight; both NULL: all day.
    hours_start INTEGER,
    hours_end   INTEGER,
    weight      INTEGER NOT NULL,
    active      BOOLEAN NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
CREATE TABLE lead_rules (
    tenant_id  BIGINT NOT NULL REFERENCES tenants(tenant_id),
    id         BIGINT NOT NULL,
    position   INTEGER NOT NULL,
    expr       TEXT NOT NULL,
    team       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE TABLE leads (
    tenant_id         BIGINT NOT NULL,
    id                BIGINT NOT NULL,
    fan               BIGINT NOT NULL,
    state             TEXT NOT NULL,
    team              TEXT,
    owner             TEXT,
    created_at        BIGINT NOT NULL,
    assigned_at       BIGINT,
    first_contact_due BIGINT,
    first_contact_at  BIGINT,
    last_follow_up_at BIGINT,
    escalated_at      BIGINT,
    closed_at         BIGINT,
    channel           TEXT NOT NULL,
    province          TEXT,
    city              TEXT,
    clue_state        TEXT,
    intention         TEXT,
    updated_at        BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX leads_fan ON leads (tenant_id, fan);
CREATE INDEX leads_owner ON leads (tenant_id, owner, state);
CREATE INDEX leads_state ON leads (tenant_id, state);
CREATE TABLE lead_arrivals (
    tenant_id BIGINT NOT NULL,
    event_id  TEXT NOT NULL,
    lead      BIGINT NOT NULL,
    channel   TEXT NOT NULL,
    ts        BIGINT NOT NULL,
    repeat    BOOLEAN NOT NULL,
    PRIMARY KEY (tenant_id, event_id)
);
CREATE INDEX lead_arrivals_lead ON lead_arrivals (tenant_id, lead, ts);
CREATE TABLE lead_log (
    tenant_id BIGINT NOT NULL,
    id        BIGINT NOT NULL,
    lead      BIGINT NOT NULL,
    at        BIGINT NOT NULL,
    kind      TEXT NOT NULL,
    agent     TEXT,
    result    TEXT,
    detail    TEXT,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX lead_log_lead ON lead_log (tenant_id, lead, id);
CREATE TABLE agent_days (
    tenant_id BIGINT NOT NULL,
    agent     TEXT NOT NULL,
    day       INTEGER NOT NULL,
    count     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, agent, day)
);
CREATE TABLE fan_groups (
    tenant_id  BIGINT NOT NULL,
    id         BIGINT NOT NULL,
    name       TEXT NOT NULL,
    template   TEXT NOT NULL,
    capacity   INTEGER NOT NULL,
    owner      TEXT,
    members    INTEGER NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE TABLE group_members (
    tenant_id BIGINT NOT NULL,
    group_id  BIGINT NOT NULL,
    fan       BIGINT NOT NULL,
    joined_at BIGINT NOT NULL,
    left_at   BIGINT,
    active_at BIGINT,
    PRIMARY KEY (tenant_id, group_id, fan)
);
CREATE INDEX group_members_fan ON group_members (tenant_id, fan);
CREATE TABLE group_days (
    tenant_id BIGINT NOT NULL,
    group_id  BIGINT NOT NULL,
    day       INTEGER NOT NULL,
    joins     INTEGER NOT NULL,
    leaves    INTEGER NOT NULL,
    messages  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, group_id, day)
);
"#,
    r#"
-- Seats held in fan groups for invited fans (issue 14): a group's members plus the
-- invitations out never pass its capacity.
CREATE TABLE group_invites (
    tenant_id  BIGINT NOT NULL,
    group_id   BIGINT NOT NULL,
    fan        BIGINT NOT NULL,
    invited_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, group_id, fan)
);
CREATE INDEX group_invites_fan ON group_invites (tenant_id, fan);
CREATE INDEX group_invites_at ON group_invites (tenant_id, invited_at);
"#,
    r#"
-- Acquisition spend per local day, channel and domain (issue 15): CAC's numerator.
CREATE TABLE spend (
    tenant_id   BIGINT NOT NULL,
    day         INTEGER NOT NULL,
    channel     TEXT NOT NULL,
    domain      TEXT NOT NULL,
    amount_fen  BIGINT NOT NULL,
    imported_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, day, channel, domain)
);
"#,
];

/// Serializes migrations of concurrent openers (several nodes, parallel tests).
const MIGRATION_LOCK: i64 = 0x5179_7500;

/// With the tenant id, serializes writers of a tenant's snapshot (the two-key advisory lock
/// space, apart from [`MIGRATION_LOCK`]'s).
const SNAPSHOT_LOCK: i32 = 0x5179_7501;

/// The next id of a per-tenant id sequence kept as `MAX(id)` (the caller holds the tenant
/// row's lock).
fn next_id(tx: &mut postgres::Transaction<'_>, table: &str, tenant: TenantId) -> Result<i64> {
    Ok(tx
        .query_one(
            &format!("SELECT COALESCE(MAX(id), 0) + 1 FROM {table} WHERE tenant_id = $1"),
            &[&tenant],
        )?
        .get(0))
}

/// The highest trigger position a tenant's derived logs hold (see `crate::triggers`); the
/// caller holds the tenant row's lock.
fn taken(tx: &mut postgres::Transaction<'_>, tenant: TenantId) -> Result<i64> {
    Ok(tx.query_one(crate::triggers::TAKEN, &[&tenant])?.get(0))
}

fn insert_tags(
    tx: &mut postgres::Transaction<'_>,
    tenant: TenantId,
    rows: &[StoredTagChange],
    ids: &[i64],
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let fans: Vec<i64> = rows.iter().map(|r| r.fan).collect();
    let tags: Vec<&str> = rows.iter().map(|r| r.tag.as_str()).collect();
    let added: Vec<bool> = rows.iter().map(|r| r.added).collect();
    let at: Vec<i64> = rows.iter().map(|r| r.at).collect();
    let source: Vec<&str> = rows.iter().map(|r| r.source.as_str()).collect();
    tx.execute(
        "INSERT INTO tag_changes (tenant_id, id, fan, tag, added, at, source)
         SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::boolean[], $6::bigint[], $7::text[])",
        &[&tenant, &ids, &fans, &tags, &added, &at, &source],
    )?;
    Ok(())
}

pub struct PostgresStore {
    /// Where the clients connect, again after a connection is lost (PostgreSQL restarted).
    config: postgres::Config,
    /// `None` after a connection was found ended (a new one is made by the next call), and
    /// once `Drop` has moved the client out.
    writer: Mutex<Option<Connection>>,
    /// Idle read connections: a read takes one (or connects a new one when none is idle, so
    /// reads never wait for each other — a long report does not stall the outbox's polls),
    /// and puts it back, [`READERS_KEPT`] at most.
    readers: Mutex<Vec<Connection>>,
    /// [`IDLE_CHECK`]; tests shorten it.
    idle_check: Duration,
    /// The lease tokens its writes check (see `crate::leases`).
    pub(crate) fences: crate::Fences,
}

/// A client and when it was last used.
struct Connection {
    client: Client,
    used: Instant,
}

/// How long a connection attempt may take when the URL does not say (`connect_timeout`): a
/// host that drops packets would otherwise hold a request for the system's TCP timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection unused for this long is checked with one round trip before a call uses it, so
/// that one PostgreSQL ended while it was idle (a restart between requests) is replaced
/// rather than failing the call. A busy connection is not checked: a call that finds it ended
/// fails, and the next one connects again.
const IDLE_CHECK: Duration = Duration::from_millis(100);

/// How long that check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Idle read connections a store keeps.
const READERS_KEPT: usize = 4;

fn config(url: &str) -> Result<postgres::Config> {
    let mut config: postgres::Config = url
        .parse()
        .map_err(|e: postgres::Error| StoreError::BadUrl(e.to_string()))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    Ok(config)
}

/// Whether a connection can no longer be used: closed, or not answering a no-op query.
fn ended(client: &mut Client) -> bool {
    client.is_closed() || client.is_valid(CHECK_TIMEOUT).is_err()
}

impl PostgresStore {
    pub fn open(url: &str) -> Result<PostgresStore> {
        let config = config(url)?;
        let mut writer = config.connect(NoTls)?;
        migrate(&mut writer)?;
        let reader = config.connect(NoTls)?;
        let used = Instant::now();
        Ok(PostgresStore {
            config,
            writer: Mutex::new(Some(Connection {
                client: writer,
                used,
            })),
            readers: Mutex::new(vec![Connection {
                client: reader,
                used,
            }]),
            idle_check: IDLE_CHECK,
            fences: crate::Fences::default(),
        })
    }

    /// Runs `f` on a client, connecting first if the last connection ended. A call that fails
    /// on a connection that ended under it is not retried here (its transaction may or may
    /// not have committed): it returns the error, and the next call connects again.
    fn with<T>(
        &self,
        connection: &Mutex<Option<Connection>>,
        f: impl FnOnce(&mut Client) -> Result<T>,
    ) -> Result<T> {
        let mut guard = connection.lock().unwrap_or_else(|p| p.into_inner());
        if guard.as_mut().is_some_and(|c| {
            c.client.is_closed() || (c.used.elapsed() >= self.idle_check && ended(&mut c.client))
        }) {
            *guard = None;
        }
        let c = match guard.as_mut() {
            Some(c) => c,
            None => guard.insert(Connection {
                client: self.config.connect(NoTls)?,
                used: Instant::now(),
            }),
        };
        let result = f(&mut c.client);
        c.used = Instant::now();
        if result.is_err() && ended(&mut c.client) {
            *guard = None;
        }
        result
    }

    pub(crate) fn writer<T>(&self, f: impl FnOnce(&mut Client) -> Result<T>) -> Result<T> {
        self.with(&self.writer, f)
    }

    /// Runs `f` on an idle read connection, or a new one; the connection checks and the
    /// reconnection are those of [`Self::with`].
    pub(crate) fn reader<T>(&self, f: impl FnOnce(&mut Client) -> Result<T>) -> Result<T> {
        let idle = || self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut c = loop {
            match idle() {
                Some(mut c) => {
                    if c.client.is_closed()
                        || (c.used.elapsed() >= self.idle_check && ended(&mut c.client))
                    {
                        close(c.client);
                        continue;
                    }
                    break c;
                }
                None => {
                    break Connection {
                        client: self.config.connect(NoTls)?,
                        used: Instant::now(),
                    };
                }
            }
        };
        let result = f(&mut c.client);
        c.used = Instant::now();
        if result.is_err() && ended(&mut c.client) {
            close(c.client);
            return result;
        }
        let mut idle = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < READERS_KEPT {
            idle.push(c);
        } else {
            drop(idle);
            close(c.client);
        }
        result
    }
}

/// The synchronous client closes its connection with its own runtime's `block_on`, which panics
/// inside an async context (a server task, a `#[tokio::test]`). So the clients are closed on a
/// plain thread of their own, wherever the store is dropped.
impl Drop for PostgresStore {
    fn drop(&mut self) {
        let clients = [self
            .writer
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()];
        let readers = std::mem::take(self.readers.get_mut().unwrap_or_else(|p| p.into_inner()));
        let _ = std::thread::spawn(move || drop((clients, readers))).join();
    }
}

/// A refusal to write (a standby, `default_transaction_read_only`) as [`StoreError::ReadOnly`].
fn read_only_or(e: postgres::Error) -> StoreError {
    match e.code() {
        Some(&postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION) => StoreError::ReadOnly(
            "PostgreSQL is read-only here (a standby, or default_transaction_read_only)".into(),
        ),
        _ => e.into(),
    }
}

fn migrate(client: &mut Client) -> Result<()> {
    migrate_on(client).map_err(|e| match e {
        StoreError::Postgres(p) => read_only_or(p),
        other => other,
    })
}

fn migrate_on(client: &mut Client) -> Result<()> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )?;
    let done: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )?
        .get(0);
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done as usize) {
        tx.batch_execute(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
            &[&(i as i64 + 1), &siyu_domain::time::now_ms()],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// A page size as a `LIMIT`: PostgreSQL refuses a negative one, which is what `usize::MAX`
/// ("all of them") becomes as an `i64`.
pub(crate) fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// The columns `scan` and `event_at` select, as an event.
const EVENT_COLUMNS: &str = "seq, id, type, domain, ts, identities, props, source, received_at";

fn event_from_row(r: &postgres::Row) -> Result<StoredEvent> {
    row_to_event(
        r.get(0),
        r.get(1),
        r.get(2),
        r.get(3),
        r.get(4),
        r.get(5),
        r.get(6),
        r.get(7),
        r.get(8),
    )
}

fn tenant_from_row(r: &postgres::Row) -> Tenant {
    Tenant {
        id: r.get(0),
        name: r.get(1),
        created_at: r.get(2),
        custom_domain: r.get(3),
    }
}

impl crate::Tenants for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn create_tenant(
        &self,
        name: &str,
        write_key_hash: &str,
        admin_key_hash: &str,
        now: Millis,
    ) -> Result<Tenant> {
        self.writer(|client| {
            let mut tx = client.transaction()?;
            let row = tx.query_opt(
                "INSERT INTO tenants (name, created_at) VALUES ($1, $2)
                 ON CONFLICT (name) DO NOTHING
                 RETURNING tenant_id, name, created_at, custom_domain",
                &[&name, &now],
            )?;
            let Some(row) = row else {
                return Err(StoreError::TenantExists(name.to_string()));
            };
            let tenant = tenant_from_row(&row);
            for (hash, role) in [(write_key_hash, KeyRole::Write), (admin_key_hash, KeyRole::Admin)] {
                tx.execute(
                    "INSERT INTO api_keys (tenant_id, key_hash, role, created_at) VALUES ($1, $2, $3, $4)",
                    &[&tenant.id, &hash, &role.as_str(), &now],
                )?;
            }
            tx.commit()?;
            Ok(tenant)
        })
    }

    fn tenants(&self) -> Result<Vec<Tenant>> {
        self.reader(|c| {
            let rows = c.query(
                "SELECT tenant_id, name, created_at, custom_domain FROM tenants ORDER BY tenant_id",
                &[],
            )?;
            Ok(rows.iter().map(tenant_from_row).collect())
        })
    }

    fn key_lookup(&self, key_hash: &str) -> Result<Option<crate::KeyMatch>> {
        let row = self.reader(|c| {
            Ok(c.query_opt(
                "SELECT t.tenant_id, t.name, t.created_at, t.custom_domain, k.role, k.expires_at
                 FROM api_keys k JOIN tenants t ON t.tenant_id = k.tenant_id WHERE k.key_hash = $1",
                &[&key_hash],
            )?)
        })?;
        row.map(|r| {
            Ok(crate::KeyMatch {
                tenant: tenant_from_row(&r),
                role: KeyRole::from_stored(r.get(4))?,
                expires_at: r.get(5),
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
        self.writer(|client| {
            let mut tx = client.transaction()?;
            // Locks the tenant's row: two rotations of one tenant run one after the other.
            let known = tx.query_opt(
                "SELECT tenant_id FROM tenants WHERE tenant_id = $1 FOR UPDATE",
                &[&tenant],
            )?;
            if known.is_none() {
                return Err(StoreError::NoSuchTenant(tenant.to_string()));
            }
            tx.execute(
                "UPDATE api_keys SET expires_at = LEAST(COALESCE(expires_at, $3), $3)
                 WHERE tenant_id = $1 AND role = $2",
                &[&tenant, &role.as_str(), &retire_at],
            )?;
            tx.execute(
                "DELETE FROM api_keys WHERE tenant_id = $1 AND role = $2 AND expires_at <= $3",
                &[&tenant, &role.as_str(), &now],
            )?;
            tx.execute(
                "INSERT INTO api_keys (tenant_id, key_hash, role, created_at) VALUES ($1, $2, $3, $4)",
                &[&tenant, &new_hash, &role.as_str(), &now],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn set_custom_domain(&self, tenant: TenantId, domain: siyu_domain::Domain) -> Result<()> {
        let n = self.writer(|c| {
            Ok(c.execute(
                "UPDATE tenants SET custom_domain = $2 WHERE tenant_id = $1",
                &[&tenant, &domain.as_str()],
            )?)
        })?;
        if n == 0 {
            return Err(StoreError::NoSuchTenant(tenant.to_string()));
        }
        Ok(())
    }
}

impl crate::EventLog for PostgresStore {
    fn append(
        &self,
        batches: &[AppendBatch<'_>],
        received_at: Millis,
    ) -> Result<Vec<Vec<Appended>>> {
        self.writer(|client| append(client, &self.fences, batches, received_at))
    }

    fn scan(
        &self,
        tenant: TenantId,
        after: i64,
        f: &mut dyn FnMut(StoredEvent) -> Result<()>,
    ) -> Result<()> {
        use postgres::fallible_iterator::FallibleIterator;
        self.reader(|client| {
            let mut rows = client.query_raw(
                &format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = $1 AND seq > $2 ORDER BY seq"
                ),
                [&tenant as &(dyn postgres::types::ToSql + Sync), &after],
            )?;
            while let Some(r) = rows.next()? {
                f(event_from_row(&r)?)?;
            }
            Ok(())
        })
    }

    fn event_at(&self, tenant: TenantId, seq: i64) -> Result<Option<StoredEvent>> {
        self.reader(|c| {
            c.query_opt(
                &format!("SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = $1 AND seq = $2"),
                &[&tenant, &seq],
            )?
            .map(|r| event_from_row(&r))
            .transpose()
        })
    }

    fn events_at(&self, tenant: TenantId, seqs: &[i64]) -> Result<Vec<StoredEvent>> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        self.reader(|c| {
            c.query(
                &format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = $1 AND seq = ANY($2) ORDER BY seq"
                ),
                &[&tenant, &seqs],
            )?
            .iter()
            .map(event_from_row)
            .collect()
        })
    }

    fn event_count(&self, tenant: TenantId) -> Result<u64> {
        let n: i64 = self.reader(|c| {
            Ok(c.query_one(
                "SELECT COUNT(*) FROM events WHERE tenant_id = $1",
                &[&tenant],
            )?
            .get(0))
        })?;
        Ok(n as u64)
    }

    fn last_seq(&self, tenant: TenantId) -> Result<i64> {
        self.reader(|c| {
            Ok(c.query_one(
                "SELECT COALESCE(MAX(seq), 0)::BIGINT FROM events WHERE tenant_id = $1",
                &[&tenant],
            )?
            .get(0))
        })
    }

    fn check_writable(&self) -> Result<()> {
        self.probe_write()
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }
}

impl PostgresStore {
    fn probe_write(&self) -> Result<()> {
        self.writer(|c| {
            let mut tx = c.transaction()?;
            tx.execute(
                "UPDATE schema_migrations SET applied_at = applied_at
                 WHERE version = (SELECT MAX(version) FROM schema_migrations)",
                &[],
            )
            .map_err(read_only_or)?;
            tx.commit()?;
            Ok(())
        })
    }
}

impl crate::Decisions for PostgresStore {
    fn set_rules(&self, tenant: TenantId, toml: &str) -> Result<i64> {
        self.writer(|c| {
            let mut tx = c.transaction()?;
            tx.execute("SELECT 1 FROM tenants WHERE tenant_id = $1 FOR UPDATE", &[&tenant])?;
            let version: i64 = tx
                .query_one(
                    "SELECT COALESCE(MAX(version), 0) + 1 FROM layer_rules WHERE tenant_id = $1",
                    &[&tenant],
                )?
                .get(0);
            tx.execute(
                "INSERT INTO layer_rules (tenant_id, version, rules, created_at) VALUES ($1, $2, $3, $4)",
                &[&tenant, &version, &toml, &siyu_domain::time::now_ms()],
            )?;
            tx.commit()?;
            Ok(version)
        })
    }

    fn rules(&self, tenant: TenantId) -> Result<Option<(i64, String)>> {
        self.reader(|c| {
            Ok(c.query_opt(
                "SELECT version, rules FROM layer_rules WHERE tenant_id = $1 ORDER BY version DESC LIMIT 1",
                &[&tenant],
            )?
            .map(|r| (r.get(0), r.get(1))))
        })
    }

    fn add_decision(&self, tenant: TenantId, d: &NewDecision<'_>) -> Result<i64> {
        self.writer(|c| {
            let mut tx = c.transaction()?;
            // The tenant row lock serializes decision ids per tenant across nodes.
            tx.execute("SELECT 1 FROM tenants WHERE tenant_id = $1 FOR UPDATE", &[&tenant])?;
            let id: i64 = tx
                .query_one(
                    "SELECT COALESCE(MAX(id), 0) + 1 FROM identity_decisions WHERE tenant_id = $1",
                    &[&tenant],
                )?
                .get(0);
            tx.execute(
                "INSERT INTO identity_decisions (tenant_id, id, kind, fan_a, fan_b, after_seq, value, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[&tenant, &id, &d.kind, &d.fan_a, &d.fan_b, &d.after_seq, &d.value, &d.created_at],
            )?;
            tx.commit()?;
            Ok(id)
        })
    }

    fn decisions(&self, tenant: TenantId, after_id: i64) -> Result<Vec<StoredDecision>> {
        self.reader(|c| {
            let rows = c.query(
                "SELECT id, kind, fan_a, fan_b, after_seq, created_at, value FROM identity_decisions
                 WHERE tenant_id = $1 AND id > $2 ORDER BY id",
                &[&tenant, &after_id],
            )?;
            Ok(rows
                .iter()
                .map(|r| StoredDecision {
                    id: r.get(0),
                    kind: r.get(1),
                    fan_a: r.get(2),
                    fan_b: r.get(3),
                    after_seq: r.get(4),
                    created_at: r.get(5),
                    value: r.get(6),
                })
                .collect())
        })
    }
}

impl crate::LiveLog for PostgresStore {
    fn record_live(&self, tenant: TenantId, rec: &LiveRecord<'_>, mark: &LiveMark) -> Result<()> {
        self.writer(|c| {
            let mut tx = c.transaction()?;
            fenced(&mut tx, &self.fences, tenant)?;
            if !rec.is_empty() {
                // Serializes id assignment among writers of this tenant.
                tx.execute("SELECT 1 FROM tenants WHERE tenant_id = $1 FOR UPDATE", &[&tenant])?;
            }
            let (ids, segment_ids, tag_ids) = if rec.is_empty() {
                Default::default()
            } else {
                crate::triggers::positions(taken(&mut tx, tenant)?, mark.seq, rec)
            };
            let rows = rec.transitions;
            if !rows.is_empty() {
                let fans: Vec<i64> = rows.iter().map(|r| r.fan).collect();
                let from: Vec<Option<&str>> = rows.iter().map(|r| r.from.as_deref()).collect();
                let to: Vec<&str> = rows.iter().map(|r| r.to.as_str()).collect();
                let at: Vec<i64> = rows.iter().map(|r| r.at).collect();
                let cause: Vec<&str> = rows.iter().map(|r| r.cause.as_str()).collect();
                let seq: Vec<Option<i64>> = rows.iter().map(|r| r.seq).collect();
                let event_ids: Vec<Option<&str>> =
                    rows.iter().map(|r| r.event_id.as_deref()).collect();
                tx.execute(
                    "INSERT INTO layer_transitions (tenant_id, id, fan, from_layer, to_layer, at, cause, seq, event_id)
                     SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::bigint[], $7::text[], $8::bigint[], $9::text[])",
                    &[&tenant, &ids, &fans, &from, &to, &at, &cause, &seq, &event_ids],
                )?;
            }
            let rows = rec.segment_changes;
            if !rows.is_empty() {
                let ids = &segment_ids;
                let segs: Vec<i64> = rows.iter().map(|r| r.segment).collect();
                let fans: Vec<i64> = rows.iter().map(|r| r.fan).collect();
                let entered: Vec<bool> = rows.iter().map(|r| r.entered).collect();
                let at: Vec<i64> = rows.iter().map(|r| r.at).collect();
                let cause: Vec<&str> = rows.iter().map(|r| r.cause.as_str()).collect();
                let seq: Vec<Option<i64>> = rows.iter().map(|r| r.seq).collect();
                let event_ids: Vec<Option<&str>> =
                    rows.iter().map(|r| r.event_id.as_deref()).collect();
                tx.execute(
                    "INSERT INTO segment_changes (tenant_id, id, segment_id, fan, entered, at, cause, seq, event_id)
                     SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::boolean[], $6::bigint[], $7::text[], $8::bigint[], $9::text[])",
                    &[&tenant, &ids, &segs, &fans, &entered, &at, &cause, &seq, &event_ids],
                )?;
            }
            insert_tags(&mut tx, tenant, rec.tag_changes, &tag_ids)?;
            tx.execute(
                "INSERT INTO layer_marks (tenant_id, clock, seq, rules_version) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (tenant_id) DO UPDATE SET clock = $2, seq = $3, rules_version = $4",
                &[&tenant, &mark.clock, &mark.seq, &mark.rules_version],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn segment_changes(
        &self,
        tenant: TenantId,
        segment: Option<i64>,
        fans: Option<&[i64]>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredSegmentChange>> {
        self.reader(|c| {
            Ok(c.query(
                "SELECT id, segment_id, fan, entered, at, cause, seq, event_id FROM segment_changes
                 WHERE tenant_id = $1 AND id > $2 AND ($3::bigint IS NULL OR segment_id = $3)
                   AND ($4::bigint[] IS NULL OR fan = ANY($4))
                 ORDER BY id LIMIT $5",
                &[&tenant, &after, &segment, &fans, &sql_limit(limit)],
            )?
            .iter()
            .map(|r| StoredSegmentChange {
                id: r.get(0),
                segment: r.get(1),
                fan: r.get(2),
                entered: r.get(3),
                at: r.get(4),
                cause: r.get(5),
                seq: r.get(6),
                event_id: r.get(7),
            })
            .collect())
        })
    }

    fn recorded_members(&self, tenant: TenantId) -> Result<Vec<(i64, i64)>> {
        self.reader(|c| {
            Ok(c.query(
                "SELECT segment_id, fan FROM (
                     SELECT DISTINCT ON (segment_id, fan) segment_id, fan, entered FROM segment_changes
                     WHERE tenant_id = $1 ORDER BY segment_id, fan, id DESC) last
                 WHERE entered",
                &[&tenant],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
        })
    }

    fn live_mark(&self, tenant: TenantId) -> Result<Option<LiveMark>> {
        self.reader(|c| {
            Ok(c.query_opt(
                "SELECT clock, seq, rules_version FROM layer_marks WHERE tenant_id = $1",
                &[&tenant],
            )?
            .map(|r| LiveMark {
                clock: r.get(0),
                seq: r.get(1),
                rules_version: r.get(2),
            }))
        })
    }

    fn recorded_layers(&self, tenant: TenantId) -> Result<Vec<(i64, String)>> {
        self.reader(|c| {
            Ok(c.query(
                "SELECT DISTINCT ON (fan) fan, to_layer FROM layer_transitions
                 WHERE tenant_id = $1 ORDER BY fan, id DESC",
                &[&tenant],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
        })
    }

    fn transitions(
        &self,
        tenant: TenantId,
        fans: Option<&[i64]>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredTransition>> {
        self.reader(|c| {
            let rows = c.query(
                "SELECT id, fan, from_layer, to_layer, at, cause, seq, event_id FROM layer_transitions
                 WHERE tenant_id = $1 AND id > $2 AND ($3::bigint[] IS NULL OR fan = ANY($3))
                 ORDER BY id LIMIT $4",
                &[&tenant, &after, &fans, &sql_limit(limit)],
            )?;
            Ok(rows
                .iter()
                .map(|r| StoredTransition {
                    id: r.get(0),
                    fan: r.get(1),
                    from: r.get(2),
                    to: r.get(3),
                    at: r.get(4),
                    cause: r.get(5),
                    seq: r.get(6),
                    event_id: r.get(7),
                })
                .collect())
        })
    }
}

impl crate::Segments for PostgresStore {
    fn create_segment(
        &self,
        tenant: TenantId,
        name: &str,
        expr: &str,
        tag: Option<&str>,
        now: Millis,
    ) -> Result<StoredSegment> {
        self.writer(|c| {
            let mut tx = c.transaction()?;
            tx.execute("SELECT 1 FROM tenants WHERE tenant_id = $1 FOR UPDATE", &[&tenant])?;
            let taken: bool = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM segments WHERE tenant_id = $1 AND name = $2 AND deleted_at IS NULL)",
                    &[&tenant, &name],
                )?
                .get(0);
            if taken {
                return Err(StoreError::SegmentExists(name.to_string()));
            }
            let id = next_id(&mut tx, "segments", tenant)?;
            tx.execute(
                "INSERT INTO segments (tenant_id, id, name, expr, tag, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                &[&tenant, &id, &name, &expr, &tag, &now],
            )?;
            tx.commit()?;
            Ok(StoredSegment {
                id,
                name: name.to_string(),
                expr: expr.to_string(),
                tag: tag.map(str::to_string),
                created_at: now,
            })
        })
    }

    fn segments(&self, tenant: TenantId) -> Result<Vec<StoredSegment>> {
        self.reader(|c| {
            Ok(c.query(
                "SELECT id, name, expr, tag, created_at FROM segments
                 WHERE tenant_id = $1 AND deleted_at IS NULL ORDER BY id",
                &[&tenant],
            )?
            .iter()
            .map(|r| StoredSegment {
                id: r.get(0),
                name: r.get(1),
                expr: r.get(2),
                tag: r.get(3),
                created_at: r.get(4),
            })
            .collect())
        })
    }

    fn delete_segment(&self, tenant: TenantId, id: i64, now: Millis) -> Result<bool> {
        self.writer(|c| {
            Ok(c.execute(
                "UPDATE segments SET deleted_at = $3 WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL",
                &[&tenant, &id, &now],
            )? > 0)
        })
    }

    fn add_tag_changes(&self, tenant: TenantId, rows: &[StoredTagChange]) -> Result<()> {
        self.writer(|c| {
            let mut tx = c.transaction()?;
            // The tenant row's lock serializes positions; placed after the last event stored.
            let last_seq: i64 = tx
                .query_opt(
                    "SELECT next_seq - 1 FROM tenants WHERE tenant_id = $1 FOR UPDATE",
                    &[&tenant],
                )?
                .ok_or_else(|| StoreError::NoSuchTenant(tenant.to_string()))?
                .get(0);
            let rec = LiveRecord {
                tag_changes: rows,
                ..LiveRecord::default()
            };
            let (_, _, ids) = crate::triggers::positions(taken(&mut tx, tenant)?, last_seq, &rec);
            insert_tags(&mut tx, tenant, rows, &ids)?;
            tx.commit()?;
            Ok(())
        })
    }

    fn tag_changes(
        &self,
        tenant: TenantId,
        fans: Option<&[i64]>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredTagChange>> {
        self.reader(|c| {
            Ok(c.query(
                "SELECT id, fan, tag, added, at, source FROM tag_changes
                 WHERE tenant_id = $1 AND id > $2 AND ($3::bigint[] IS NULL OR fan = ANY($3))
                 ORDER BY id LIMIT $4",
                &[&tenant, &after, &fans, &sql_limit(limit)],
            )?
            .iter()
            .map(|r| StoredTagChange {
                id: r.get(0),
                fan: r.get(1),
                tag: r.get(2),
                added: r.get(3),
                at: r.get(4),
                source: r.get(5),
            })
            .collect())
        })
    }
}

impl crate::Connectors for PostgresStore {
    // connectors

    fn set_connector(&self, tenant: TenantId, kind: &str, config: &str, now: Millis) -> Result<()> {
        self.writer(|c| {
            c.execute(
                "INSERT INTO connectors (tenant_id, kind, config, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (tenant_id, kind) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at",
                &[&tenant, &kind, &config, &now],
            )?;
            Ok(())
        })
    }

    fn connector(&self, tenant: TenantId, kind: &str) -> Result<Option<StoredConnector>> {
        self.reader(|c| {
            Ok(c.query_opt(
                "SELECT config, state, updated_at FROM connectors WHERE tenant_id = $1 AND kind = $2",
                &[&tenant, &kind],
            )?
            .map(|r| StoredConnector {
                config: r.get(0),
                state: r.get(1),
                updated_at: r.get(2),
            }))
        })
    }

    fn connectors(&self, kind: &str) -> Result<Vec<(TenantId, StoredConnector)>> {
        self.reader(|c| {
            let rows = c.query(
                "SELECT tenant_id, config, state, updated_at FROM connectors WHERE kind = $1 ORDER BY tenant_id",
                &[&kind],
            )?;
            Ok(rows
                .iter()
                .map(|r| {
                    (
                        r.get(0),
                        StoredConnector {
                            config: r.get(1),
                            state: r.get(2),
                            updated_at: r.get(3),
                        },
                    )
                })
                .collect())
        })
    }

    fn set_connector_state(&self, tenant: TenantId, kind: &str, state: &str) -> Result<()> {
        let n = self.writer(|c| {
            let mut tx = c.transaction()?;
            fenced(&mut tx, &self.fences, tenant)?;
            let n = tx.execute(
                "UPDATE connectors SET state = $3 WHERE tenant_id = $1 AND kind = $2",
                &[&tenant, &kind, &state],
            )?;
            tx.commit()?;
            Ok(n)
        })?;
        if n == 0 {
            return Err(StoreError::NoSuchConnector {
                tenant,
                kind: kind.to_string(),
            });
        }
        Ok(())
    }
}

/// One transaction for all batches; one multi-row insert per batch.
fn append(
    client: &mut Client,
    fences: &crate::Fences,
    batches: &[AppendBatch<'_>],
    received_at: Millis,
) -> Result<Vec<Vec<Appended>>> {
    let mut tx = client.transaction()?;
    let reserve = tx.prepare(
        "UPDATE tenants SET next_seq = next_seq + $2 WHERE tenant_id = $1 RETURNING next_seq - $2",
    )?;
    let insert = tx.prepare(
        "INSERT INTO events (tenant_id, seq, id, type, domain, ts, identities, props, source, received_at)
         SELECT $1, s, i, t, d, ts, idn, p, src, $2
         FROM unnest($3::bigint[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::text[], $9::text[], $10::text[])
              AS u(s, i, t, d, ts, idn, p, src)
         ON CONFLICT (tenant_id, id) DO NOTHING
         RETURNING seq",
    )?;
    let mut out = Vec::with_capacity(batches.len());
    for batch in batches {
        let n = batch.events.len() as i64;
        if n == 0 {
            out.push(Vec::new());
            continue;
        }
        fenced(&mut tx, fences, batch.tenant)?;
        let first: i64 = tx
            .query_opt(&reserve, &[&batch.tenant, &n])?
            .ok_or_else(|| StoreError::NoSuchTenant(batch.tenant.to_string()))?
            .get(0);
        let seqs: Vec<i64> = (first..first + n).collect();
        let ids: Vec<&str> = batch.events.iter().map(|e| e.id.as_str()).collect();
        let types: Vec<&str> = batch.encoded.iter().map(|e| e.ty.as_ref()).collect();
        let domains: Vec<&str> = batch.events.iter().map(|e| e.domain().as_str()).collect();
        let ts: Vec<i64> = batch.events.iter().map(|e| e.ts).collect();
        let idents: Vec<&str> = batch
            .encoded
            .iter()
            .map(|e| e.identities.as_str())
            .collect();
        let props: Vec<Option<&str>> = batch.encoded.iter().map(|e| e.props.as_deref()).collect();
        let sources: Vec<Option<&str>> = batch.events.iter().map(|e| e.source.as_deref()).collect();
        let stored: HashSet<i64> = tx
            .query(
                &insert,
                &[
                    &batch.tenant,
                    &received_at,
                    &seqs,
                    &ids,
                    &types,
                    &domains,
                    &ts,
                    &idents,
                    &props,
                    &sources,
                ],
            )?
            .iter()
            .map(|r| r.get::<_, i64>(0))
            .collect();
        out.push(
            seqs.iter()
                .map(|s| {
                    if stored.contains(s) {
                        Appended::Stored(*s)
                    } else {
                        Appended::Duplicate
                    }
                })
                .collect(),
        );
    }
    tx.commit()?;
    Ok(out)
}

impl crate::Snapshots for PostgresStore {
    /// On a connection of its own, in one transaction: the writer's connection goes on
    /// committing events meanwhile (a snapshot of a large tenant takes seconds to write), and
    /// readers see the old snapshot until the new one is whole. Writers of one tenant's
    /// snapshot are serialized by an advisory lock, not the tenant's row, which every append
    /// locks.
    fn put_snapshot(&self, tenant: TenantId, snap: &crate::StoredSnapshot) -> Result<()> {
        let mut client = self.config.connect(NoTls)?;
        let out = put_snapshot_on(&mut client, &self.fences, tenant, snap);
        close(client);
        out
    }

    fn snapshot(&self, tenant: TenantId) -> Result<Option<crate::StoredSnapshot>> {
        self.reader(|c| {
            let mut tx = c.build_transaction().read_only(true).start()?;
            let Some(row) = tx.query_opt(
                "SELECT format, last_seq, decisions_seen, created_at, parts FROM snapshots WHERE tenant_id = $1",
                &[&tenant],
            )?
            else {
                return Ok(None);
            };
            let format: i64 = row.get(0);
            let parts: i64 = row.get(4);
            let mut snap = crate::StoredSnapshot {
                format: u32::try_from(format)
                    .map_err(|_| StoreError::Corrupt(format!("snapshot format {format}")))?,
                last_seq: row.get(1),
                decisions_seen: row.get(2),
                created_at: row.get(3),
                data: Vec::new(),
            };
            let rows = tx.query(
                "SELECT data FROM snapshot_parts WHERE tenant_id = $1 ORDER BY part",
                &[&tenant],
            )?;
            if rows.len() as i64 != parts {
                return Err(StoreError::Corrupt(format!(
                    "snapshot of tenant {tenant} has {} of its {parts} parts",
                    rows.len()
                )));
            }
            let bytes = rows.iter().map(|r| r.get::<_, &[u8]>(0).len()).sum();
            snap.data.reserve_exact(bytes);
            for r in rows {
                snap.data.extend_from_slice(r.get::<_, &[u8]>(0));
            }
            tx.commit()?;
            Ok(Some(snap))
        })
    }

    fn drop_snapshot(&self, tenant: TenantId) -> Result<()> {
        self.writer(|c| {
            let mut tx = c.transaction()?;
            tx.execute(
                "DELETE FROM snapshot_parts WHERE tenant_id = $1",
                &[&tenant],
            )?;
            tx.execute("DELETE FROM snapshots WHERE tenant_id = $1", &[&tenant])?;
            tx.commit()?;
            Ok(())
        })
    }
}

fn put_snapshot_on(
    client: &mut Client,
    fences: &crate::Fences,
    tenant: TenantId,
    snap: &crate::StoredSnapshot,
) -> Result<()> {
    let format = i64::from(snap.format);
    let mut tx = client.transaction()?;
    fenced(&mut tx, fences, tenant)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&SNAPSHOT_LOCK, &((tenant & 0x7fff_ffff) as i32)],
    )?;
    let held = tx
        .query_opt(
            "SELECT format, last_seq, decisions_seen FROM snapshots WHERE tenant_id = $1",
            &[&tenant],
        )?
        .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1), r.get::<_, i64>(2)));
    if let Some((f, seq, decisions)) = held
        && crate::further_along((u32::try_from(f).unwrap_or(u32::MAX), seq, decisions), snap)
    {
        return Ok(());
    }
    tx.execute(
        "DELETE FROM snapshot_parts WHERE tenant_id = $1",
        &[&tenant],
    )?;
    let parts: Vec<&[u8]> = snap.data.chunks(crate::SNAPSHOT_PART_BYTES).collect();
    let insert =
        tx.prepare("INSERT INTO snapshot_parts (tenant_id, part, data) VALUES ($1, $2, $3)")?;
    for (i, part) in parts.iter().enumerate() {
        tx.execute(&insert, &[&tenant, &(i as i64), part])?;
    }
    tx.execute(
        "INSERT INTO snapshots (tenant_id, format, last_seq, decisions_seen, created_at, parts)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (tenant_id) DO UPDATE SET
             format = excluded.format, last_seq = excluded.last_seq,
             decisions_seen = excluded.decisions_seen, created_at = excluded.created_at,
             parts = excluded.parts",
        &[
            &tenant,
            &format,
            &snap.last_seq,
            &snap.decisions_seen,
            &snap.created_at,
            &(parts.len() as i64),
        ],
    )?;
    tx.commit()?;
    Ok(())
}

/// Closes a client on a plain thread (see `PostgresStore`'s `Drop`).
fn close(client: Client) {
    let _ = std::thread::spawn(move || drop(client)).join();
}

impl crate::TriggerLog for PostgresStore {
    fn event_heads(
        &self,
        tenant: TenantId,
        after: i64,
        upto: i64,
        only: Option<&[i64]>,
        limit: usize,
    ) -> Result<Vec<crate::EventHead>> {
        let limit = limit.min(i64::MAX as usize) as i64;
        let only: Option<Vec<i64>> = only.map(<[i64]>::to_vec);
        self.reader(|c| {
            Ok(c.query(
                "SELECT seq, id, type, ts FROM events
                 WHERE tenant_id = $1 AND seq > $2 AND seq <= $3
                   AND ($4::bigint[] IS NULL OR seq = ANY($4))
                 ORDER BY seq LIMIT $5",
                &[&tenant, &after, &upto, &only, &limit],
            )?
            .iter()
            .map(|r| crate::EventHead {
                seq: r.get(0),
                id: r.get(1),
                ty: r.get(2),
                ts: r.get(3),
            })
            .collect())
        })
    }

    fn trigger_cursor(
        &self,
        tenant: TenantId,
        consumer: &str,
    ) -> Result<Option<crate::StoredCursor>> {
        self.reader(|c| {
            Ok(c.query_opt(
                "SELECT consumer, after_id, updated_at FROM trigger_cursors
                 WHERE tenant_id = $1 AND consumer = $2",
                &[&tenant, &consumer],
            )?
            .map(|r| crate::StoredCursor {
                consumer: r.get(0),
                after: r.get(1),
                updated_at: r.get(2),
            }))
        })
    }

    fn set_trigger_cursor(
        &self,
        tenant: TenantId,
        consumer: &str,
        after: i64,
        now: Millis,
    ) -> Result<()> {
        self.writer(|c| {
            c.execute(
                "INSERT INTO trigger_cursors (tenant_id, consumer, after_id, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (tenant_id, consumer) DO UPDATE SET after_id = $3, updated_at = $4",
                &[&tenant, &consumer, &after, &now],
            )?;
            Ok(())
        })
    }

    fn trigger_cursors(&self, tenant: TenantId) -> Result<Vec<crate::StoredCursor>> {
        self.reader(|c| {
            Ok(c.query(
                "SELECT consumer, after_id, updated_at FROM trigger_cursors
                 WHERE tenant_id = $1 ORDER BY consumer",
                &[&tenant],
            )?
            .iter()
            .map(|r| crate::StoredCursor {
                consumer: r.get(0),
                after: r.get(1),
                updated_at: r.get(2),
            })
            .collect())
        })
    }
}

/// Fails with `NotOwner` unless the lease this handle holds for `tenant` is still the
/// tenant's (see `crate::leases`), and keeps the lease row from passing to another node until
/// the transaction ends (`FOR SHARE`); nothing is checked until leases are required.
pub(crate) fn fenced(
    tx: &mut postgres::Transaction<'_>,
    fences: &crate::Fences,
    tenant: TenantId,
) -> Result<()> {
    let Some((node, token)) = fences.check(tenant)? else {
        return Ok(());
    };
    let held = tx
        .query_opt(
            "SELECT 1 FROM tenant_leases WHERE tenant_id = $1 AND node_id = $2 AND token = $3 FOR SHARE",
            &[&tenant, &node, &token],
        )?
        .is_some();
    if !held {
        fences.forget(tenant);
        return Err(StoreError::NotOwner(tenant));
    }
    Ok(())
}

impl crate::Leases for PostgresStore {
    fn heartbeat(&self, node: &crate::Node) -> Result<()> {
        self.writer(|c| {
            c.execute(
                "INSERT INTO nodes (node_id, addr, secret, expires_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (node_id) DO UPDATE SET addr = $2, secret = $3, expires_at = $4",
                &[&node.id, &node.addr, &node.secret, &node.expires_at],
            )?;
            Ok(())
        })
    }

    fn remove_node(&self, id: &str) -> Result<()> {
        self.writer(|c| {
            c.execute("DELETE FROM nodes WHERE node_id = $1", &[&id])?;
            Ok(())
        })
    }

    fn nodes(&self, now: Millis) -> Result<Vec<crate::Node>> {
        self.reader(|c| {
            Ok(c.query(
                "SELECT node_id, addr, secret, expires_at FROM nodes WHERE expires_at > $1 ORDER BY node_id",
                &[&now],
            )?
            .iter()
            .map(|r| crate::Node {
                id: r.get(0),
                addr: r.get(1),
                secret: r.get(2),
                expires_at: r.get(3),
            })
            .collect())
        })
    }

    fn acquire_lease(
        &self,
        tenant: TenantId,
        node: &str,
        now: Millis,
        expires_at: Millis,
    ) -> Result<Option<crate::Lease>> {
        let token: Option<i64> = self.writer(|c| {
            Ok(c.query_opt(
                "INSERT INTO tenant_leases AS l (tenant_id, node_id, token, expires_at) VALUES ($1, $2, 1, $4)
                 ON CONFLICT (tenant_id) DO UPDATE SET
                     token = CASE WHEN l.node_id = excluded.node_id THEN l.token ELSE l.token + 1 END,
                     node_id = excluded.node_id, expires_at = excluded.expires_at
                 WHERE l.node_id = excluded.node_id OR l.expires_at <= $3
                 RETURNING token",
                &[&tenant, &node, &now, &expires_at],
            )?
            .map(|r| r.get(0)))
        })?;
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
        let n = self.writer(|c| {
            Ok(c.execute(
                "UPDATE tenant_leases SET expires_at = $4 WHERE tenant_id = $1 AND node_id = $2 AND token = $3",
                &[&tenant, &node, &token, &expires_at],
            )?)
        })?;
        if n == 0 {
            self.fences.forget(tenant);
        }
        Ok(n == 1)
    }

    fn release_lease(&self, tenant: TenantId, node: &str, token: i64) -> Result<()> {
        self.fences.forget(tenant);
        self.writer(|c| {
            c.execute(
                "UPDATE tenant_leases SET expires_at = 0 WHERE tenant_id = $1 AND node_id = $2 AND token = $3",
                &[&tenant, &node, &token],
            )?;
            Ok(())
        })
    }

    fn leases(&self) -> Result<Vec<crate::Lease>> {
        self.reader(|c| {
            Ok(c.query(
                "SELECT tenant_id, node_id, token, expires_at FROM tenant_leases ORDER BY tenant_id",
                &[],
            )?
            .iter()
            .map(|r| crate::Lease {
                tenant: r.get(0),
                node: r.get(1),
                token: r.get(2),
                expires_at: r.get(3),
            })
            .collect())
        })
    }

    fn require_leases(&self) {
        self.fences.require();
    }
}

#[cfg(test)]
mod tests {
    //! Sessions ended under a store, as a restart of PostgreSQL ends them, but without
    //! stopping the server other tests use: `pg_terminate_backend` on the store's own sessions
    //! (found by their `application_name`).
    use super::*;
    use crate::testing::{base_url, fresh_postgres};
    use crate::{LiveLog, Segments, Tenants};

    /// A store on a fresh schema whose sessions are named `app`.
    fn open(schema: &crate::testing::TestSchema, app: &str) -> PostgresStore {
        PostgresStore::open(&format!("{}&application_name={app}", schema.url)).unwrap()
    }

    /// Ends every session named `app`, waits until they are gone, and says how many there were.
    fn end_sessions(app: &str) -> usize {
        let mut c = Client::connect(&base_url(), NoTls).unwrap();
        let ended = c
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                &[&app],
            )
            .unwrap()
            .len();
        let started = Instant::now();
        let count = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1";
        while c.query_one(count, &[&app]).unwrap().get::<_, i64>(0) > 0 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "sessions still there"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        ended
    }

    #[test]
    fn sessions_ended_while_idle_are_replaced_before_the_next_call() {
        let schema = fresh_postgres();
        let app = format!("siyu_idle_{}", std::process::id());
        let mut store = open(&schema, &app);
        store.idle_check = Duration::ZERO;
        store.create_tenant("a", "w1", "a1", 0).unwrap();
        assert_eq!(store.tenants().unwrap().len(), 1);
        assert_eq!(end_sessions(&app), 2, "the writer's and the reader's");
        // Neither call fails: the ended sessions are found before use.
        assert_eq!(store.tenants().unwrap().len(), 1);
        store.create_tenant("b", "w2", "a2", 0).unwrap();
        assert_eq!(store.tenants().unwrap().len(), 2);
    }

    #[test]
    fn a_call_on_a_session_ended_under_it_fails_and_the_next_connects_again() {
        let schema = fresh_postgres();
        let app = format!("siyu_busy_{}", std::process::id());
        let mut store = open(&schema, &app);
        store.idle_check = Duration::MAX;
        store.create_tenant("a", "w1", "a1", 0).unwrap();
        assert_eq!(end_sessions(&app), 2);
        // Not retried: a write that fails this way may have committed.
        let e = store.create_tenant("b", "w2", "a2", 0).unwrap_err();
        assert_eq!(e.code(), "store_unavailable", "{e}");
        store.create_tenant("b", "w2", "a2", 0).unwrap();
        assert!(store.tenants().is_err(), "the reader's session ended too");
        assert_eq!(store.tenants().unwrap().len(), 2);
    }

    #[test]
    fn a_page_of_every_row_is_not_a_negative_limit() {
        let schema = fresh_postgres();
        let store = PostgresStore::open(&schema.url).unwrap();
        let t = store.create_tenant("a", "w", "a", 0).unwrap().id;
        assert!(
            store
                .transitions(t, None, 0, usize::MAX)
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .segment_changes(t, None, None, 0, usize::MAX)
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .tag_changes(t, None, 0, usize::MAX)
                .unwrap()
                .is_empty()
        );
    }
}
