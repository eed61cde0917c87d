//! Snapshots of tenants' engines, so that a start (a server's, or a one-shot CLI read's)
//! loads the latest snapshot and replays only the log after it.
//!
//! A snapshot is a cache of what the log determines, never a source of truth: one that this
//! build cannot read (another format, damaged), one taken past where a replay must turn live,
//! or one that an identity decision made since has overtaken (an undo, or a value found
//! shared, placed before the snapshot's position) is ignored with a log line, and the log is
//! replayed from the start instead. A replay that read more than [`SNAPSHOT_AFTER`] log
//! positions past the snapshot it started from stores a new one.
//!
//! `SIYU_SNAPSHOTS=off` in the environment makes a process neither read nor store snapshots
//! (every start replays the whole log): for benchmarks, and for ruling snapshots out when
//! something looks wrong.

use siyu_engine::TenantEngine;
use siyu_engine::snapshot::FORMAT;
use siyu_store::{Store, StoredDecision, StoredSnapshot, TenantId};

use crate::AppError;

/// How many log positions a replay may read past its snapshot before it stores a new one.
pub const SNAPSHOT_AFTER: i64 = 20_000;

/// The tenant's snapshot as an engine, with the decisions made since it was taken, if the
/// stored snapshot can be used for a replay that must not pass log position `upto`.
pub(crate) fn load(
    store: &dyn Store,
    tenant: TenantId,
    upto: Option<i64>,
) -> Result<Option<(TenantEngine, Vec<StoredDecision>)>, AppError> {
    if !enabled() {
        return Ok(None);
    }
    let Some(s) = store.snapshot(tenant)? else {
        return Ok(None);
    };
    if s.format != FORMAT {
        tracing::info!(
            tenant,
            format = s.format,
            "engine snapshot of another format ignored; replaying the log"
        );
        return Ok(None);
    }
    if upto.is_some_and(|u| s.last_seq > u) {
        return Ok(None);
    }
    let engine = match TenantEngine::from_snapshot(&s.data) {
        Ok(e) => e,
        Err(e) => {
            // Forgotten, so that the snapshot this replay stores replaces it wherever the
            // damaged one claims to be.
            tracing::warn!(tenant, error = %e, "engine snapshot unreadable; replaying the log");
            store.drop_snapshot(tenant)?;
            return Ok(None);
        }
    };
    let since = store.decisions(tenant, engine.decisions_seen())?;
    if since.iter().any(|d| d.after_seq < engine.last_seq()) {
        tracing::info!(
            tenant,
            "an identity decision since the engine snapshot changes what it holds; replaying the log"
        );
        return Ok(None);
    }
    Ok(Some((engine, since)))
}

/// Stores the engine's state as the tenant's snapshot when it is more than
/// [`SNAPSHOT_AFTER`] positions past the snapshot it knows of. A failure only costs the next
/// start a longer replay: it is logged, not returned.
pub(crate) fn save_if_due(store: &dyn Store, tenant: TenantId, engine: &mut TenantEngine) {
    if engine.last_seq() - engine.snapshot_seq() < SNAPSHOT_AFTER || !enabled() {
        return;
    }
    if save(store, tenant, engine) {
        engine.set_snapshot_seq(engine.last_seq());
    }
}

/// What [`save_if_due`] would store for a live engine, encoded under the read lock (readers
/// go on; the writer, which calls this, waits for the encoding only): its writer stores it
/// with no lock held, off its own thread (see `ingest::Writer`), and then records it with
/// [`stored`]. `None` when not due.
pub(crate) fn encode_if_due(cell: &crate::ingest::EngineCell) -> Option<Encoded> {
    let e = crate::ingest::read_engine(cell);
    if e.last_seq() - e.snapshot_seq() < SNAPSHOT_AFTER || !enabled() {
        return None;
    }
    Some(encode(&e))
}

/// A snapshot encoded, not yet stored.
pub(crate) struct Encoded {
    snap: StoredSnapshot,
    encoding: std::time::Duration,
}

impl Encoded {
    /// The last event it holds.
    pub(crate) fn last_seq(&self) -> i64 {
        self.snap.last_seq
    }
}

fn encode(engine: &TenantEngine) -> Encoded {
    let started = std::time::Instant::now();
    let position = engine.position();
    let snap = StoredSnapshot {
        format: FORMAT,
        last_seq: position.last_seq,
        decisions_seen: position.decisions_seen,
        created_at: siyu_domain::time::now_ms(),
        data: engine.snapshot(),
    };
    Encoded {
        snap,
        encoding: started.elapsed(),
    }
}

/// Stores an encoded snapshot; whether it was stored. A failure is logged: it costs the next
/// start a longer replay.
pub(crate) fn put(store: &dyn Store, tenant: TenantId, encoded: &Encoded) -> bool {
    let started = std::time::Instant::now();
    let snap = &encoded.snap;
    match store.put_snapshot(tenant, snap) {
        Ok(()) => {
            tracing::debug!(
                tenant,
                last_seq = snap.last_seq,
                bytes = snap.data.len(),
                encode_ms = encoded.encoding.as_millis() as u64,
                store_ms = started.elapsed().as_millis() as u64,
                "engine snapshot stored"
            );
            true
        }
        Err(e) => {
            tracing::warn!(tenant, error = %e, "engine snapshot not stored");
            false
        }
    }
}

/// Whether snapshots are read and stored (`SIYU_SNAPSHOTS=off` turns them off).
fn enabled() -> bool {
    std::env::var_os("SIYU_SNAPSHOTS").is_none_or(|v| v != "off")
}

/// Stores the engine's state as the tenant's snapshot; whether it was stored.
pub fn save(store: &dyn Store, tenant: TenantId, engine: &TenantEngine) -> bool {
    put(store, tenant, &encode(engine))
}
