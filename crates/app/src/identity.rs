//! Identity services: replaying a tenant's log with the operators' decisions, fan views,
//! lookups, possible duplicates, decisions and undoing merges.
//!
//! Decisions are stored with their position in the log (`after_seq`) and replayed there, so
//! the live engine and a replay always agree. Confirm and distinct take effect at the end of
//! the log. Undoing a merge records a *distinct* decision just before the event that merged
//! the two fans and rebuilds the tenant's engine from the log, so everything derived from the
//! events (counts, leads, later layers) is recomputed along the split.

use std::collections::HashMap;

use serde::Serialize;
use siyu_domain::{Identity, IdentityKind, Layer, Millis};
use siyu_engine::{
    Cause, Decision, DecisionError, FanId, Merge, PossibleDuplicate, SegmentCause, TenantEngine,
};
use siyu_store::{LiveMark, NewDecision, Store, StoredDecision, TenantId};

use crate::AppError;

fn to_decision(d: &StoredDecision) -> Option<Decision> {
    let (a, b) = (FanId(d.fan_a), FanId(d.fan_b));
    match d.kind.as_str() {
        "confirm" => Some(Decision::Confirm { a, b }),
        "distinct" => Some(Decision::Distinct { a, b }),
        _ => None,
    }
}

fn apply_stored(engine: &mut TenantEngine, d: &StoredDecision) {
    if d.kind == "shared" {
        match d
            .value
            .as_deref()
            .and_then(|v| v.split_once(':'))
            .and_then(|(k, v)| Some((k.parse::<IdentityKind>().ok()?, v)))
        {
            Some((kind, value)) => engine.mark_shared(d.id, kind, value),
            None => tracing::warn!(decision = d.id, "unreadable shared-value fact"),
        }
        return;
    }
    match to_decision(d) {
        Some(decision) => {
            if let Err(e) = engine.decide(d.id, decision) {
                // A later undo can make an earlier decision moot (the fans are already one,
                // or a fan it named is no longer created); replay skips it.
                tracing::debug!(decision = d.id, error = %e, "decision skipped on replay");
            }
        }
        None => tracing::warn!(decision = d.id, kind = %d.kind, "unknown decision kind"),
    }
}

/// Records values found shared after a merge was made through them, as facts that apply from
/// the start of the log.
pub(crate) fn record_shared(
    store: &dyn Store,
    tenant: TenantId,
    found: &[(IdentityKind, String)],
    now: Millis,
) -> Result<(), AppError> {
    tracing::info!(
        tenant,
        values = found.len(),
        "values found shared after merges through them; recorded, the next catch-up splits those merges"
    );
    for (kind, value) in found {
        tracing::debug!(tenant, kind = %kind, "a value turned out to be shared; splitting the merge it made");
        let value = format!("{}:{value}", kind.as_str());
        store.add_decision(
            tenant,
            &NewDecision {
                kind: "shared",
                fan_a: 0,
                fan_b: 0,
                after_seq: 0,
                value: Some(&value),
                created_at: now,
            },
        )?;
    }
    Ok(())
}

/// If the engine found merges that a shared value made wrongly, records the values. The
/// engine is rebuilt without those merges at its next catch-up (the writer's next poll, within
/// [`crate::ingest::POLL`]), which sees the recorded facts: one replay for however many values
/// were found meanwhile, instead of one per ingested batch that finds one.
pub fn correct(
    store: &dyn Store,
    engine: &mut TenantEngine,
    tenant: TenantId,
) -> Result<(), AppError> {
    let found = engine.identities_mut().take_corrections();
    if !found.is_empty() {
        record_shared(store, tenant, &found, crate::segments::now_of(engine))?;
    }
    Ok(())
}

/// Replaces a live engine with a rebuilt one, carrying its live layers and saved segments over:
/// the new engine goes live at the old clock and records, with `cause`, every fan the rebuild
/// moved between layers or in or out of a segment.
pub fn swap_in(engine: &mut TenantEngine, mut new: TenantEngine, cause: Cause) {
    if let (Some(clock), Some(before)) = (engine.clock(), engine.live_layers()) {
        new.start_live_against(clock, &|f| before.get(&f).copied(), cause);
        new.set_stored_clock(engine.stored_clock());
        new.set_flushed_seq(engine.flushed_seq());
        // Saved segments carry over: fans whose membership the rebuild changed are recorded.
        let old = &*engine;
        let segment_cause = match cause {
            Cause::Rules => SegmentCause::Rules,
            _ => SegmentCause::Identity,
        };
        for (id, e) in new.set_segments(
            old.segment_defs(),
            &|seg, fan| {
                old.identities()
                    .current(fan)
                    .and_then(|f| old.is_member(seg, f))
                    .unwrap_or(false)
            },
            segment_cause,
        ) {
            tracing::warn!(segment = id, error = %e, "saved segment cannot be evaluated");
        }
    }
    // Callers store what the old engine recorded before any rebuild (`live_step` runs first);
    // what could not be stored moves over, to be stored with the next step.
    new.carry_unstored(engine);
    *engine = new;
}

/// Where a replay turns live: at the tenant's stored [`LiveMark`], against the layers the
/// stored transitions record.
struct GoLive {
    tenant: TenantId,
    mark: LiveMark,
    recorded: HashMap<FanId, Layer>,
    /// The saved segments that existed at the mark, and the members their stored entries
    /// and exits record: put in force at the mark, so that the events after it enter and
    /// exit fans one by one, as a running server would have.
    segments: Vec<siyu_engine::SegmentDef>,
    members: std::collections::HashSet<(i64, i64)>,
    now: Millis,
}

impl GoLive {
    /// Called before anything placed after log position `after` is applied: turns the engine
    /// live once the replay passes the mark. A layer that differs there from the recorded one
    /// (rules changed or a merge undone while no server ran) gets a transition.
    fn before(&self, engine: &mut TenantEngine, after: i64) {
        if engine.clock().is_none() && after >= self.mark.seq {
            let cause = if engine.rules_version() != self.mark.rules_version {
                Cause::Rules
            } else {
                Cause::Identity
            };
            engine.start_live_against(self.mark.clock, &|f| self.recorded.get(&f).copied(), cause);
            engine.set_stored_clock(self.mark.clock);
            let segment_cause = match cause {
                Cause::Rules => SegmentCause::Rules,
                _ => SegmentCause::Identity,
            };
            crate::segments::put_in_force(
                engine,
                self.tenant,
                self.segments.clone(),
                &|seg, fan| self.members.contains(&(seg, fan.0)),
                segment_cause,
            );
        }
    }

    /// Moves the clock to an event's time before it is applied, so events stored while no
    /// server ran move their fans at their own time, with the decays between them in order.
    fn reach(&self, engine: &mut TenantEngine, ts: Millis) {
        if let Some(clock) = engine.clock() {
            engine.tick(ts.clamp(clock, self.now));
        }
    }
}

/// Builds a tenant's engine for a server start: replays the log, turning live at the stored
/// [`LiveMark`] so that whatever happened since the layers were last stored — events imported
/// meanwhile, windows that slid, rules changed, merges undone — is recorded as transitions,
/// each at its own time. Without a mark (layers never stored) live layers start now, with no
/// history.
pub fn resume_live(
    store: &dyn Store,
    tenant: TenantId,
    now: Millis,
) -> Result<TenantEngine, AppError> {
    let Some(mark) = store.live_mark(tenant)? else {
        let mut engine = replay(store, tenant)?;
        engine.start_live(now);
        crate::segments::sync(
            store,
            &mut engine,
            tenant,
            &|_, _| false,
            SegmentCause::Created,
        )?;
        return Ok(engine);
    };
    let recorded = store
        .recorded_layers(tenant)?
        .into_iter()
        .filter_map(|(fan, layer)| Some((FanId(fan), layer.parse().ok()?)))
        .collect();
    let members: std::collections::HashSet<(i64, i64)> =
        store.recorded_members(tenant)?.into_iter().collect();
    let stored = store.segments(tenant)?;
    let at_mark: Vec<_> = stored
        .iter()
        .filter(|s| s.created_at <= mark.clock)
        .cloned()
        .collect();
    let mut engine = replay_with(
        store,
        tenant,
        Some(&GoLive {
            tenant,
            mark,
            recorded,
            segments: crate::segments::defs(tenant, &at_mark),
            members,
            now,
        }),
        false,
    )?;
    // Segments saved after the mark (by the CLI while no server ran) get their members now;
    // what time changed since the last event is recorded by the next sweep.
    crate::segments::sync(
        store,
        &mut engine,
        tenant,
        &|_, _| false,
        SegmentCause::Created,
    )?;
    Ok(engine)
}

/// Applies the log after the engine's position, with `decisions` interleaved at theirs.
fn interleave(
    store: &dyn Store,
    engine: &mut TenantEngine,
    tenant: TenantId,
    mut decisions: Vec<StoredDecision>,
    go_live: Option<&GoLive>,
) -> Result<(), AppError> {
    decisions.sort_by_key(|d| (d.after_seq, d.id));
    let mut pending = decisions.into_iter().peekable();
    store.scan(tenant, engine.last_seq(), &mut |s| {
        while let Some(d) = pending.next_if(|d| d.after_seq < s.seq) {
            if let Some(g) = go_live {
                g.before(engine, d.after_seq);
            }
            apply_stored(engine, &d);
        }
        if let Some(g) = go_live {
            g.before(engine, s.seq - 1);
            g.reach(engine, s.event.ts);
        }
        engine.apply(s.seq, &s.event);
        Ok(())
    })?;
    for d in pending {
        if let Some(g) = go_live {
            g.before(engine, d.after_seq);
        }
        apply_stored(engine, &d);
    }
    if let Some(g) = go_live {
        g.before(engine, i64::MAX);
    }
    Ok(())
}

/// Builds a tenant's engine from nothing: every event and every decision, in log order.
/// A replay that finds values shared after merges made through them records them and replays
/// again (rarely more than once: each round learns every such value it meets).
pub fn replay(store: &dyn Store, tenant: TenantId) -> Result<TenantEngine, AppError> {
    replay_with(store, tenant, None, true)
}

/// [`replay`] for a live engine's rebuild: it stores no snapshot (a write of tens to hundreds
/// of megabytes beside ingest); the writer's next tick stores the swapped-in engine's.
pub fn rebuild(store: &dyn Store, tenant: TenantId) -> Result<TenantEngine, AppError> {
    replay_with(store, tenant, None, false)
}

fn replay_with(
    store: &dyn Store,
    tenant: TenantId,
    go_live: Option<&GoLive>,
    save: bool,
) -> Result<TenantEngine, AppError> {
    const ROUNDS: usize = 8;
    for round in 1.. {
        // The first round starts from the stored snapshot when it can (it must not be past
        // where the replay turns live); later rounds learned values the snapshot merged
        // through, so they start from nothing.
        let resumed = match round {
            1 => crate::snapshots::load(store, tenant, go_live.map(|g| g.mark.seq))?,
            _ => None,
        };
        let from = resumed.as_ref().map_or(0, |(e, _)| e.last_seq());
        let (mut engine, decisions) = match resumed {
            Some(r) => r,
            None => (TenantEngine::new(), store.decisions(tenant, 0)?),
        };
        engine.set_snapshot_seq(from);
        load_rules(store, &mut engine, tenant)?;
        interleave(store, &mut engine, tenant, decisions, go_live)?;
        let found = engine.identities_mut().take_corrections();
        // A replay that goes live leaves its snapshot to the writer's next tick: storing a
        // large one (hundreds of megabytes) here would hold a starting server's socket shut.
        if found.is_empty() && go_live.is_none() && save {
            crate::snapshots::save_if_due(store, tenant, &mut engine);
        }
        if found.is_empty() || round == ROUNDS {
            // Tags are kept with their times; all of them, manual and automatic.
            crate::segments::load_tags(store, &mut engine, tenant, false)?;
            return Ok(engine);
        }
        let now = go_live.map_or_else(|| crate::segments::now_of(&engine), |g| g.now);
        record_shared(store, tenant, &found, now)?;
    }
    unreachable!("the loop returns")
}

/// Puts the tenant's stored layer rules in force if they changed (set by another process).
fn load_rules(
    store: &dyn Store,
    engine: &mut TenantEngine,
    tenant: TenantId,
) -> Result<(), AppError> {
    let Some((version, text)) = store.rules(tenant)? else {
        return Ok(());
    };
    if version != engine.rules_version() {
        match siyu_engine::Rules::from_toml(&text) {
            Ok(rules) => engine.set_rules(version, rules),
            // Only checked rules are stored; keep what is in force and say so.
            Err(e) => tracing::error!(tenant, version, error = %e, "stored layer rules unreadable"),
        }
    }
    Ok(())
}

/// What another process (the CLI beside a server) wrote that an engine has not taken in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum News {
    None,
    /// New rules, decisions at the end of the log, tags or saved segments: [`catch_up`].
    Some,
    /// A decision placed before the engine's position (an undo, a shared value): a replay.
    Rebuild,
}

/// Looks for [`News`] with the engine only read, so the writer can check often while
/// readers go on.
pub fn news(store: &dyn Store, engine: &TenantEngine, tenant: TenantId) -> Result<News, AppError> {
    let decisions = store.decisions(tenant, engine.decisions_seen())?;
    if decisions.iter().any(|d| d.after_seq < engine.last_seq()) {
        return Ok(News::Rebuild);
    }
    if !decisions.is_empty() || store.last_seq(tenant)? > engine.last_seq() {
        return Ok(News::Some);
    }
    if let Some((version, _)) = store.rules(tenant)?
        && version != engine.rules_version()
    {
        return Ok(News::Some);
    }
    if !store
        .tag_changes(tenant, None, engine.tags_seen(), 1)?
        .is_empty()
    {
        return Ok(News::Some);
    }
    if engine.clock().is_some() {
        let stored = store.segments(tenant)?;
        let held = engine.segment_defs();
        if stored.len() != held.len() || stored.iter().zip(&held).any(|(s, h)| s.id != h.id) {
            return Ok(News::Some);
        }
    }
    Ok(News::None)
}

/// Brings an engine up to date with the store: new events, and decisions made elsewhere (the
/// CLI beside a server). A decision placed before the engine's position (an undo) means a
/// full replay.
pub fn catch_up(
    store: &dyn Store,
    engine: &mut TenantEngine,
    tenant: TenantId,
) -> Result<(), AppError> {
    load_rules(store, engine, tenant)?;
    let new = store.decisions(tenant, engine.decisions_seen())?;
    if new.iter().any(|d| d.after_seq < engine.last_seq()) {
        let rebuilt = replay(store, tenant)?;
        swap_in(engine, rebuilt, Cause::Identity);
        return Ok(());
    }
    interleave(store, engine, tenant, new, None)?;
    // Tags added and segments saved by another process (the CLI beside a server).
    crate::segments::load_tags(store, engine, tenant, true)?;
    crate::segments::sync(store, engine, tenant, &|_, _| false, SegmentCause::Created)
}

/// A merge as shown to operators, with the linking event's id.
#[derive(Debug, Clone, Serialize)]
pub struct MergeView {
    #[serde(flatten)]
    pub merge: Merge,
    pub event_id: Option<String>,
}

/// One identity value of a fan.
#[derive(Debug, Clone, Serialize)]
pub struct IdentityValue {
    pub kind: IdentityKind,
    pub value: String,
}

/// What `siyu fan show` and `GET /api/fans/{id}` answer.
#[derive(Debug, Clone, Serialize)]
pub struct FanView {
    /// The fan's current id.
    pub fan: FanId,
    /// The id asked for, when it was merged away into `fan`.
    pub merged_from: Option<FanId>,
    /// Events of this fan, across all the fans merged into it.
    pub events: u64,
    /// The fan's layer now, why, and its latest events across the three domains.
    pub layer: Option<siyu_engine::Explanation>,
    pub identities: Vec<IdentityValue>,
    pub merges: Vec<MergeView>,
    pub possible_duplicates: Vec<PossibleDuplicate>,
}

impl FanView {
    /// Fills in the id of each merge's linking event, from the log: done after the engine is
    /// let go, so a reader does no I/O while it holds the engine.
    pub fn link_events(&mut self, store: &dyn Store, tenant: TenantId) -> Result<(), AppError> {
        for m in &mut self.merges {
            m.event_id = match m.merge.cause {
                siyu_engine::MergeCause::Event | siyu_engine::MergeCause::Alias => store
                    .event_at(tenant, m.merge.seq)?
                    .map(|e| e.event.id.as_str().to_string()),
                siyu_engine::MergeCause::Operator => None,
            };
        }
        Ok(())
    }
}

/// A fan with its identities, merge history and open possible duplicates, from the engine
/// alone (the merges' event ids come from [`FanView::link_events`]).
pub fn fan_view(engine: &TenantEngine, asked: FanId) -> Option<FanView> {
    let fan = engine.identities().current(asked)?;
    let graph = engine.identities();
    let identities = graph
        .identities_of(fan)
        .into_iter()
        .map(|(kind, value)| IdentityValue { kind, value })
        .collect();
    let merges = graph
        .merges_of(fan)
        .into_iter()
        .map(|merge| MergeView {
            merge,
            event_id: None,
        })
        .collect();
    let possible_duplicates = engine
        .identities()
        .possible_duplicates()
        .into_iter()
        .filter(|d| d.a == fan || d.b == fan)
        .collect();
    let events = engine.events_of(fan);
    let layer = engine.explain(fan, crate::segments::now_of(engine), 30);
    Some(FanView {
        fan,
        merged_from: (fan != asked).then_some(asked),
        events,
        layer,
        identities,
        merges,
        possible_duplicates,
    })
}

/// Why an identity request was refused (the edge maps these to 4xx).
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The store or the writer failed (not the request's fault).
    #[error(transparent)]
    App(#[from] AppError),
    #[error("unknown identity kind {0:?}")]
    UnknownKind(String),
    /// The value cannot be normalized; its code is the one ingest gives the same value
    /// (`invalid_phone`, `invalid_email`, `invalid_identity`).
    #[error("{0}")]
    BadValue(siyu_domain::IdentityError),
    #[error(transparent)]
    Decision(#[from] DecisionError),
    #[error("fan {0} was never merged into another fan; there is nothing to undo")]
    NotMerged(i64),
}

impl From<siyu_store::StoreError> for IdentityError {
    fn from(e: siyu_store::StoreError) -> Self {
        IdentityError::App(e.into())
    }
}

impl IdentityError {
    pub fn code(&self) -> &'static str {
        match self {
            IdentityError::App(e) => e.code(),
            IdentityError::UnknownKind(_) => "unknown_identity_kind",
            IdentityError::BadValue(e) => e.code().as_str(),
            IdentityError::Decision(DecisionError::UnknownFan(_)) => "fan_not_found",
            IdentityError::Decision(DecisionError::AlreadyOne(..)) => "already_merged",
            IdentityError::Decision(DecisionError::MarkedDistinct(..)) => "marked_distinct",
            IdentityError::NotMerged(_) => "not_merged",
        }
    }
}

/// Parses a lookup: the kind's name and a raw value, normalized exactly as at ingest.
pub fn parse_lookup(kind: &str, value: &str) -> Result<Identity, IdentityError> {
    let kind: IdentityKind = kind
        .parse()
        .map_err(|_| IdentityError::UnknownKind(kind.to_string()))?;
    Identity::parse(kind, value).map_err(IdentityError::BadValue)
}

/// Records and applies a confirm/distinct decision at the end of the log.
pub fn decide(
    store: &dyn Store,
    tenant: TenantId,
    engine: &mut TenantEngine,
    d: Decision,
) -> Result<Result<(), IdentityError>, AppError> {
    if let Err(e) = engine.identities_mut().check(d) {
        return Ok(Err(e.into()));
    }
    let (kind, a, b) = match d {
        Decision::Confirm { a, b } => ("confirm", a, b),
        Decision::Distinct { a, b } => ("distinct", a, b),
    };
    let id = store.add_decision(
        tenant,
        &NewDecision {
            kind,
            fan_a: a.0,
            fan_b: b.0,
            after_seq: engine.last_seq(),
            value: None,
            created_at: crate::segments::now_of(engine),
        },
    )?;
    Ok(engine.decide(id, d).map_err(IdentityError::from))
}

/// Undoes the merge that absorbed `from`: records a distinct decision just before the merging
/// event; the caller has the engine rebuilt with it.
pub fn unmerge(
    store: &dyn Store,
    tenant: TenantId,
    engine: &TenantEngine,
    from: FanId,
) -> Result<Result<(), IdentityError>, AppError> {
    let Some(m) = engine.identities().merge_absorbing(from) else {
        return Ok(Err(if engine.identities().current(from).is_none() {
            IdentityError::Decision(DecisionError::UnknownFan(from.0))
        } else {
            IdentityError::NotMerged(from.0)
        }));
    };
    store.add_decision(
        tenant,
        &NewDecision {
            kind: "distinct",
            fan_a: m.into.0,
            fan_b: m.from.0,
            after_seq: m.seq - 1,
            value: None,
            created_at: crate::segments::now_of(engine),
        },
    )?;
    Ok(Ok(()))
}
