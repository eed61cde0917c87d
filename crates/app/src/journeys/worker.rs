//! The journey worker: follows each served tenant's trigger stream (consumer
//! [`CONSUMER`]) and its runs' timers, and moves runs through the state machine.
//!
//! One [`JourneyWorker::step`] per tenant:
//! 1. reads a page of triggers after its cursor (events, layer changes, segment entries) and
//!    the runs whose timer is due;
//! 2. loads what the rules need for the fans involved — their runs (all ids merged into
//!    each), their facts (opt-out, Douyin authorization and conversation), today's sends —
//!    and, where templates or channels need them, their recent events' identities and props;
//! 3. under the engine's read lock (no I/O), applies the triggers in stream order: facts from
//!    events (opt-out words, authorizations, incoming messages and replies), goals reached,
//!    merges (a fan keeps one open run per journey, the older), entries (reentry, filter),
//!    then wakes due runs; every run moves as far as it can;
//! 4. commits everything — runs, history, outbox rows, tasks, counters, facts and the cursor
//!    — in **one transaction** ([`siyu_store::Journeys::commit_runs`]), then rings the outbox.
//!
//! A crash before the commit loses the whole step, which is taken again from the same cursor
//! and timers: nothing is skipped, nothing done twice (entries are keyed by trigger position,
//! outbox rows by run and step). Tags and outcome events go through the outbox too (internal
//! channels [`TAGS`] and [`EVENTS`]), so they are as durable as the step that made them; a
//! branch right after a tag step sees the tag through the state machine's overlay.
//!
//! Timers are rows (`wake_at`, indexed): waiting fans cost no memory here, and the worker
//! sleeps until the earliest timer or the next trigger, never scanning on a fixed beat.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};
use siyu_domain::Millis;
use siyu_domain::trigger::{Trigger as StreamTrigger, TriggerType, TypeSet, What};
use siyu_engine::{FanId, TenantEngine};
use siyu_journey::def::{Channel, Journey, Reentry, Trigger};
use siyu_journey::policy::{self, ImDecision, ImState};
use siyu_journey::run::{
    self, Advance, Ctx, Effect, Fan, Input, Policy, RecordKind, Run, RunData, RunState,
};
use siyu_journey::variants::Arm;
use siyu_store::journeys::{
    FanSends, JourneyIds, RunBatch, StoredFanState, StoredOutbox, StoredRun, StoredRunEvent,
    StoredTask, VariantDelta,
};
use siyu_store::{Store, TenantId};

use super::{Bell, JourneyError, parse_stored, settings};
use crate::App;
use crate::triggers::{Read, Start};

/// The worker's cursor on the trigger stream.
pub const CONSUMER: &str = "journeys";
/// The internal outbox channel that applies tags.
pub const TAGS: &str = "siyu.tags";
/// The internal outbox channel that appends outcome events.
pub const EVENTS: &str = "siyu.events";
/// Triggers and due runs taken per step.
pub const PAGE: usize = 2000;

static GENERATION: AtomicU64 = AtomicU64::new(1);

/// Definitions, pauses or policies changed: the worker reloads them.
pub fn bump_generation() {
    GENERATION.fetch_add(1, Ordering::SeqCst);
}

/// The bell the worker waits on (rung by new triggers and by changed definitions).
pub fn bell() -> &'static Bell {
    static BELL: OnceLock<Bell> = OnceLock::new();
    BELL.get_or_init(Bell::default)
}

/// What a step did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepReport {
    pub triggers: usize,
    pub entered: usize,
    pub woken: usize,
    /// Step executions (the state machine's step records).
    pub steps: usize,
    pub outbox: usize,
    /// There is more to do at once (a full page).
    pub more: bool,
    /// The earliest timer left.
    pub next_wake: Option<Millis>,
}

impl StepReport {
    fn add(&mut self, o: &StepReport) {
        self.triggers += o.triggers;
        self.entered += o.entered;
        self.woken += o.woken;
        self.steps += o.steps;
        self.outbox += o.outbox;
        self.more |= o.more;
        self.next_wake = match (self.next_wake, o.next_wake) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

/// A journey in force, parsed.
struct Live {
    name: String,
    version: i64,
    paused: bool,
    /// Triggers at or before this position start no run (they came before the journey).
    starts_after: i64,
    def: Arc<Journey>,
}

/// What the worker keeps per tenant (definitions and counters; no per-fan state).
struct TenantState {
    generation: u64,
    live: Vec<Live>,
    /// Every version a run may be on, parsed once.
    versions: HashMap<(String, i64), Arc<Journey>>,
    /// Saved segments' names by id.
    segments: HashMap<i64, String>,
    ids: JourneyIds,
    cursor: i64,
    policy: Policy,
    configured: [bool; 4],
    next_wake: Option<Millis>,
    /// Schedules: the local day each fired last (this process), and fans still to enter.
    fired: HashMap<String, i32>,
    backlog: Vec<(String, i64)>,
    /// Template fields read from events (nickname, name) are needed.
    needs_profile: bool,
}

/// The journey worker (see the module docs).
pub struct JourneyWorker {
    app: Arc<App>,
    tenants: HashMap<TenantId, TenantState>,
    pub page: usize,
}

impl JourneyWorker {
    pub fn new(app: Arc<App>) -> JourneyWorker {
        JourneyWorker {
            app,
            tenants: HashMap::new(),
            page: PAGE,
        }
    }

    /// One step for every tenant this node serves.
    pub fn step(&mut self, now: Millis) -> Result<StepReport, JourneyError> {
        let served = self.app.ingestor.served();
        self.tenants.retain(|t, _| served.contains(t));
        let mut total = StepReport::default();
        let mut first_err = None;
        for tenant in served {
            match self.step_tenant(tenant, now) {
                Ok(r) => total.add(&r),
                Err(e) => {
                    // The tenant's state is reloaded next time (ids, cursor, timers).
                    self.tenants.remove(&tenant);
                    tracing::warn!(tenant, error = %e, code = e.code(), "journey step failed");
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) if total == StepReport::default() => Err(e),
            _ => Ok(total),
        }
    }

    /// Steps until `stop` receives: at once while there is more, else until the next
    /// trigger, a changed definition or the earliest timer (at most a second, so a missed
    /// bell costs at most that).
    pub fn run_until_stopped(mut self, stop: std::sync::mpsc::Receiver<()>) {
        let clock = self.app.ingestor.clock().clone();
        loop {
            if !matches!(stop.try_recv(), Err(std::sync::mpsc::TryRecvError::Empty)) {
                return;
            }
            let seen = bell().seen();
            let now = clock.now();
            let report = match self.step(now) {
                Ok(r) => r,
                Err(_) => {
                    bell().wait(seen, Duration::from_secs(1));
                    continue;
                }
            };
            if report.more {
                continue;
            }
            let wait = report
                .next_wake
                .map_or(1000, |w| (w - clock.now()).clamp(0, 1000));
            if wait > 0 {
                bell().wait(seen, Duration::from_millis(wait as u64));
            }
        }
    }

    fn state(&mut self, tenant: TenantId) -> Result<&mut TenantState, JourneyError> {
        let generation = GENERATION.load(Ordering::SeqCst);
        let fresh = match self.tenants.get(&tenant) {
            Some(s) => s.generation != generation,
            None => true,
        };
        if fresh {
            let old = self.tenants.remove(&tenant);
            let st = load_state(&self.app, tenant, generation, old)?;
            self.tenants.insert(tenant, st);
        }
        Ok(self.tenants.get_mut(&tenant).expect("just inserted"))
    }

    /// One step for one tenant.
    pub fn step_tenant(
        &mut self,
        tenant: TenantId,
        now: Millis,
    ) -> Result<StepReport, JourneyError> {
        let page = self.page;
        let app = self.app.clone();
        let st = self.state(tenant)?;
        let store = app.store().clone();
        let types = TypeSet::of([
            TriggerType::Event,
            TriggerType::LayerChanged,
            TriggerType::SegmentEntered,
        ]);
        let triggers = app
            .triggers(
                tenant,
                &Read {
                    from: Start::After(st.cursor),
                    types,
                    fan: None,
                    limit: page,
                },
            )
            .map_err(|e| match e {
                crate::triggers::TriggerError::App(a) => JourneyError::App(a),
                other => JourneyError::internal(other.to_string()),
            })?;
        // Only what a journey can act on: entries, goals and fan facts (a page of outcome
        // events, say, moves the cursor and nothing else).
        let mut triggers = triggers;
        let full_page = triggers.triggers.len() >= page;
        triggers.triggers.retain(|t| relevant(st, &t.what));
        let due: Vec<StoredRun> = if st.next_wake.is_some_and(|w| w <= now) {
            store.due_runs(tenant, now, page)?
        } else {
            Vec::new()
        };
        schedule(&app, tenant, st, now)?;
        let backlog: Vec<(String, i64)> = {
            let n = st.backlog.len().min(page);
            st.backlog.drain(..n).collect()
        };
        let moved = triggers.next_after != st.cursor;
        if triggers.triggers.is_empty() && due.is_empty() && backlog.is_empty() && !moved {
            return Ok(StepReport {
                next_wake: st.next_wake,
                ..StepReport::default()
            });
        }
        let mut batch = Batch::new(tenant, now, st.ids);
        // Which fans are involved, with every id merged into each.
        let mut wanted: Vec<i64> = triggers.triggers.iter().filter_map(|t| t.fan).collect();
        wanted.extend(due.iter().map(|r| r.fan));
        wanted.extend(backlog.iter().map(|(_, f)| *f));
        wanted.sort_unstable();
        wanted.dedup();
        let needs_profile = st.needs_profile;
        let (groups, recent) = app.ingestor.read(tenant, |e| {
            let mut groups: HashMap<i64, Vec<i64>> = HashMap::new();
            let mut recent: HashMap<i64, Vec<i64>> = HashMap::new();
            for &f in &wanted {
                let Some(cur) = e.identities().current(FanId(f)) else {
                    continue;
                };
                if groups.contains_key(&cur.0) {
                    continue;
                }
                let ids: Vec<i64> = e
                    .identities()
                    .ids_of(cur)
                    .into_iter()
                    .map(|x| x.0)
                    .collect();
                if needs_profile {
                    recent.insert(cur.0, e.recent_seqs(cur, 8));
                }
                groups.insert(cur.0, ids);
            }
            (groups, recent)
        })?;
        let all_ids: Vec<i64> = groups.values().flatten().copied().collect();
        let runs = store.runs_of(tenant, &all_ids, false)?;
        let states = store.fan_states(tenant, &all_ids)?;
        let day = policy::local_day(&st.policy.tz, now);
        let sends = store.fan_sends(tenant, &all_ids, day)?;
        // Events whose props or identities matter: facts, goals, anchors of new runs.
        let mut seqs: Vec<i64> = Vec::new();
        for t in &triggers.triggers {
            if let What::Event {
                seq, event_type, ..
            } = &t.what
                && (FACT_EVENTS.contains(&event_type.as_str())
                    || st.live.iter().any(|l| {
                        l.def.goal.as_ref().is_some_and(|g| &g.event == event_type)
                            || matches!(&l.def.trigger, Trigger::Event(e) if e == event_type)
                    }))
            {
                seqs.push(*seq);
            }
            if let Some(seq) = cause_seq(&t.what) {
                seqs.push(seq);
            }
        }
        for s in recent.values() {
            seqs.extend(s);
        }
        seqs.sort_unstable();
        seqs.dedup();
        let events: HashMap<i64, siyu_store::StoredEvent> = store
            .events_at(tenant, &seqs)?
            .into_iter()
            .map(|e| (e.seq, e))
            .collect();
        // The fans as the batch sees them.
        let mut fans: HashMap<i64, FanCache> = HashMap::new();
        let owner: HashMap<i64, i64> = groups
            .iter()
            .flat_map(|(cur, ids)| ids.iter().map(move |i| (*i, *cur)))
            .collect();
        for (cur, ids) in &groups {
            let _ = ids;
            let mut c = FanCache {
                fan: *cur,
                state: StoredFanState {
                    fan: *cur,
                    ..StoredFanState::default()
                },
                ..FanCache::default()
            };
            c.profile = profile(recent.get(cur).map_or(&[][..], |v| v), &events);
            fans.insert(*cur, c);
        }
        for s in states {
            if let Some(c) = owner.get(&s.fan).and_then(|f| fans.get_mut(f)) {
                c.merge_state(s);
            }
        }
        for s in sends {
            if let Some(c) = owner.get(&s.fan).and_then(|f| fans.get_mut(f)) {
                *c.sends.entry(s.channel).or_default() += s.count;
            }
        }
        for r in runs {
            if let Some(c) = owner.get(&r.fan).and_then(|f| fans.get_mut(f)) {
                c.runs.push(r.id);
                batch.runs.insert(r.id, from_stored(&r)?);
            }
        }
        // Every version a loaded run is on (runs finish on the version they started).
        for r in batch.runs.values() {
            let k = (r.journey.clone(), r.version);
            if !st.versions.contains_key(&k)
                && let Some(text) = store.journey_version(tenant, &r.journey, r.version)?
            {
                st.versions.insert(k, Arc::new(parse_stored(&text)?));
            }
        }
        let mut report = StepReport {
            triggers: triggers.triggers.len(),
            ..StepReport::default()
        };
        let arms = store_arms(&*store, tenant, st)?;
        let st_ref: &TenantState = st;
        app.ingestor
            .read(tenant, |engine| -> Result<(), JourneyError> {
                let mut w = Work {
                    st: st_ref,
                    engine,
                    batch: &mut batch,
                    fans: &mut fans,
                    events: &events,
                    arms: &arms,
                    report: &mut report,
                    day,
                };
                for fan in groups.keys().copied().collect::<Vec<_>>() {
                    w.settle_merges(fan)?;
                }
                for t in &triggers.triggers {
                    w.trigger(t)?;
                }
                for r in &due {
                    let cur = owner.get(&r.fan).copied().unwrap_or(r.fan);
                    w.wake(r.id, cur)?;
                }
                for (journey, fan) in &backlog {
                    let cur = owner.get(fan).copied().unwrap_or(*fan);
                    let key = format!("{journey}:{cur}:d{day}");
                    w.enter_named(journey, cur, key)?;
                }
                Ok(())
            })??;
        let cursor = triggers.next_after;
        let mut rows = batch.rows(day, &fans)?;
        // Invitations name the group with room each fan is placed in (its seat held).
        if !batch.invites.is_empty() {
            let asks: Vec<(i64, &str)> = batch
                .invites
                .iter()
                .map(|(_, fan, t)| (*fan, t.as_str()))
                .collect();
            let placed = self.app.place_invites(tenant, &asks)?;
            for ((at, _, _), g) in batch.invites.iter().zip(&placed) {
                let row = &mut rows.outbox[*at];
                let mut p: Value = serde_json::from_str(&row.payload)
                    .map_err(|e| siyu_store::StoreError::Corrupt(e.to_string()))?;
                let group = json!({"id": g.id, "name": g.name, "template": g.template});
                if p["send"]["channel"] == "webhook" {
                    p["send"]["group"] = group.clone();
                }
                p["group"] = group;
                row.payload = p.to_string();
            }
        }
        // Tasks are numbered from the store's highest under the lock the lead worker's tasks
        // take too: one inbox, one id space, no collision.
        let _tasks_held = (!rows.tasks.is_empty()).then(crate::leads::write_lock);
        if _tasks_held.is_some() {
            let mut next = store.journey_ids(tenant)?.task;
            for t in &mut rows.tasks {
                next += 1;
                t.id = next;
            }
        }
        store.commit_runs(
            tenant,
            &RunBatch {
                new_runs: &rows.new_runs,
                updated_runs: &rows.updated_runs,
                history: &rows.history,
                outbox: &rows.outbox,
                tasks: &rows.tasks,
                variants: &rows.variants,
                fan_states: &rows.fan_states,
                fan_sends: &rows.fan_sends,
                cursor: Some((CONSUMER, cursor)),
                now,
            },
        )?;
        report.outbox = rows.outbox.len();
        let st = self.tenants.get_mut(&tenant).expect("loaded above");
        st.cursor = cursor;
        st.ids = batch.ids;
        // The earliest timer: the store's, unless this batch set an earlier one.
        st.next_wake = store.next_wake(tenant)?;
        report.next_wake = st.next_wake;
        report.more = full_page
            || due.len() >= page
            || !st.backlog.is_empty()
            || st.next_wake.is_some_and(|w| w <= now);
        if !rows.outbox.is_empty() {
            super::outbox::bell().ring();
        }
        Ok(report)
    }
}

/// Whether a trigger can start a run, reach a goal or change a fan's facts.
fn relevant(st: &TenantState, w: &What) -> bool {
    let defs = || st.live.iter().map(|l| &l.def).chain(st.versions.values());
    match w {
        What::Event { event_type, .. } => {
            FACT_EVENTS.contains(&event_type.as_str())
                || defs().any(|d| {
                    matches!(&d.trigger, Trigger::Event(e) if e == event_type)
                        || d.goal.as_ref().is_some_and(|g| &g.event == event_type)
                })
        }
        What::LayerChanged { .. } => st
            .live
            .iter()
            .any(|l| matches!(l.def.trigger, Trigger::LayerEntered(_))),
        What::SegmentEntered { .. } => st
            .live
            .iter()
            .any(|l| matches!(l.def.trigger, Trigger::SegmentEntered(_))),
        _ => false,
    }
}

/// Event types whose props or identities change a fan's facts.
const FACT_EVENTS: &[&str] = &[
    "private_message_in",
    "unsubscribe",
    "x_authorize",
    "x_unauthorize",
    "x_journey_task_done",
];

/// The event a derived trigger came from.
fn cause_seq(w: &What) -> Option<i64> {
    match w {
        What::Event { seq, .. } => Some(*seq),
        What::LayerChanged { seq, .. } | What::SegmentEntered { seq, .. } => *seq,
        _ => None,
    }
}

fn load_state(
    app: &App,
    tenant: TenantId,
    generation: u64,
    old: Option<TenantState>,
) -> Result<TenantState, JourneyError> {
    let store = app.store();
    let mut live = Vec::new();
    let mut versions = old.as_ref().map(|o| o.versions.clone()).unwrap_or_default();
    for s in store.journeys(tenant)? {
        let def = match versions.get(&(s.name.clone(), s.version)) {
            Some(d) => d.clone(),
            None => {
                let d = Arc::new(parse_stored(&s.definition)?);
                versions.insert((s.name.clone(), s.version), d.clone());
                d
            }
        };
        live.push(Live {
            name: s.name,
            version: s.version,
            paused: s.paused,
            starts_after: s.starts_after,
            def,
        });
    }
    let segments = store
        .segments(tenant)?
        .into_iter()
        .map(|s| (s.id, s.name))
        .collect();
    let policy = settings::load(&**store, tenant)?.policy()?;
    let mut configured = [false; 4];
    for (i, c) in Channel::ALL.iter().enumerate() {
        configured[i] = match c {
            Channel::Task => true,
            _ => super::outbox::configured(app, tenant, c.as_str())?,
        };
    }
    let needs_profile = live.iter().any(|l| uses_profile(&l.def));
    let (cursor, ids, fired, backlog) = match old {
        // Only definitions changed: where the worker stands is kept.
        Some(o) => (o.cursor, o.ids, o.fired, o.backlog),
        None => (
            // A first start reads the stream from its beginning: facts (opt-outs,
            // authorizations, conversations) hold from history, while each journey starts
            // runs only for what came after it was applied (`starts_after`).
            store
                .trigger_cursor(tenant, CONSUMER)?
                .map_or(0, |c| c.after),
            store.journey_ids(tenant)?,
            HashMap::new(),
            Vec::new(),
        ),
    };
    Ok(TenantState {
        generation,
        live,
        versions,
        segments,
        ids,
        cursor,
        policy,
        configured,
        next_wake: store.next_wake(tenant)?,
        fired,
        backlog,
        needs_profile,
    })
}

/// Whether a journey reads fields that come from the fan's events (or sends by Douyin).
fn uses_profile(j: &Journey) -> bool {
    use siyu_journey::def::{Message, StepKind};
    let reads = |t: &siyu_journey::template::Template| {
        t.fields()
            .any(|f| matches!(f, "nickname" | "name" | "douyin_open_id" | "phone"))
    };
    j.steps.iter().any(|s| match &s.kind {
        StepKind::Send(s) => {
            s.channel == Channel::DouyinIm
                || match &s.message {
                    Message::Text(t) => reads(t),
                    Message::Variants { arms, .. } => arms.iter().any(|a| reads(&a.text)),
                }
        }
        StepKind::InviteGroup { channel, text, .. } => *channel == Channel::DouyinIm || reads(text),
        StepKind::Task { text, .. } => reads(text),
        StepKind::AssignLead { .. } => true,
        _ => false,
    })
}

/// Daily schedules: at their time, the segment's members queue to enter (once a day).
fn schedule(
    app: &App,
    tenant: TenantId,
    st: &mut TenantState,
    now: Millis,
) -> Result<(), JourneyError> {
    let day = policy::local_day(&st.policy.tz, now);
    let mut fire = Vec::new();
    for l in &st.live {
        if l.paused {
            continue;
        }
        if let Trigger::Schedule { at, segment } = &l.def.trigger {
            let midnight = policy::next_time_of_day(
                &st.policy.tz,
                now,
                siyu_journey::duration::TimeOfDay { minutes: 0 },
            );
            // Today's instant of `at`: the next one after the day's start.
            let day_start = midnight - siyu_domain::time::MS_PER_DAY;
            let today_at = policy::next_time_of_day(&st.policy.tz, day_start - 1, *at);
            if now >= today_at && st.fired.get(&l.name) != Some(&day) {
                fire.push((l.name.clone(), segment.clone()));
            }
        }
    }
    for (name, segment) in fire {
        st.fired.insert(name.clone(), day);
        let Some(id) = st
            .segments
            .iter()
            .find(|(_, n)| **n == segment)
            .map(|(id, _)| *id)
        else {
            tracing::warn!(tenant, journey = %name, segment = %segment, "scheduled segment is gone");
            continue;
        };
        let members = app.ingestor.read(tenant, |e| {
            e.segment_members(id)
                .map(|a| a.fan_ids(e.identities(), 0, usize::MAX))
                .unwrap_or_default()
        })?;
        st.backlog
            .extend(members.into_iter().map(|f| (name.clone(), f.0)));
    }
    Ok(())
}

/// Fields read from a fan's recent events, latest first.
#[derive(Debug, Clone, Default)]
struct Profile {
    nickname: Option<String>,
    name: Option<String>,
    douyin_open_id: Option<String>,
    phone: Option<String>,
    /// An identity to hang outcome events on.
    anchor: Option<(String, String)>,
}

fn profile(seqs: &[i64], events: &HashMap<i64, siyu_store::StoredEvent>) -> Profile {
    let mut p = Profile::default();
    for s in seqs {
        let Some(ev) = events.get(s) else { continue };
        absorb(&mut p, &ev.event);
    }
    p
}

fn absorb(p: &mut Profile, e: &siyu_domain::Event) {
    let prop = |k: &str| e.props.get(k).and_then(Value::as_str).map(str::to_string);
    if p.nickname.is_none() {
        p.nickname = prop("nickname").or_else(|| prop("nick_name"));
    }
    if p.name.is_none() {
        p.name = prop("name");
    }
    for id in e.identities.iter() {
        let (kind, value) = (id.kind.as_str(), id.value().to_string());
        if kind == "douyin_open_id" && p.douyin_open_id.is_none() {
            p.douyin_open_id = Some(value.clone());
        }
        if kind == "phone" && p.phone.is_none() {
            p.phone = Some(value.clone());
        }
        if p.anchor.is_none() {
            p.anchor = Some((kind.to_string(), value));
        }
    }
}

/// A phone as staff and messages may show it: 138****8000.
pub fn mask_phone(p: &str) -> String {
    let digits: String = p.trim_start_matches("+86").to_string();
    let n = digits.chars().count();
    if n < 7 {
        return "*".repeat(n);
    }
    let head: String = digits.chars().take(3).collect();
    let tail: String = digits.chars().skip(n - 4).collect();
    format!("{head}****{tail}")
}

/// A fan as this batch sees it.
#[derive(Debug, Clone, Default)]
struct FanCache {
    fan: i64,
    state: StoredFanState,
    state_dirty: bool,
    /// Sends today by channel (and `douyin_im.proactive`), before and during this batch.
    sends: HashMap<String, i32>,
    /// Sends this batch made, to add to the store's counts.
    sends_new: HashMap<String, i32>,
    profile: Profile,
    /// Its runs (all journeys, every id merged into it), by id.
    runs: Vec<i64>,
}

impl FanCache {
    /// A stored row of one of the fan's ids joins what is known (the fan's own row wins where
    /// both say something; opt-out and authorization hold if any id has them).
    fn merge_state(&mut self, s: StoredFanState) {
        let mine = s.fan == self.fan;
        let st = &mut self.state;
        if st.opted_out_at.is_none() {
            st.opted_out_at = s.opted_out_at;
            st.opt_out_reason = s.opt_out_reason.clone();
        }
        if st.authorized_at.is_none() || mine {
            st.authorized_at = st.authorized_at.or(s.authorized_at);
        }
        if s.im_in_at > st.im_in_at {
            st.im_in_at = s.im_in_at;
            st.im_conversation = s.im_conversation.clone();
            st.im_message = s.im_message.clone();
            st.im_replies = s.im_replies;
        }
        if s.last_send_at > st.last_send_at {
            st.last_send_at = s.last_send_at;
            st.last_send_run = s.last_send_run;
            st.last_send_step = s.last_send_step.clone();
        }
        if !mine {
            // Stored under the fan it is now, from this batch on.
            self.state_dirty = true;
        }
        st.fan = self.fan;
    }
}

/// The rows a batch commits.
#[derive(Default)]
struct Rows {
    new_runs: Vec<StoredRun>,
    updated_runs: Vec<StoredRun>,
    history: Vec<StoredRunEvent>,
    outbox: Vec<StoredOutbox>,
    tasks: Vec<StoredTask>,
    variants: Vec<VariantDelta>,
    fan_states: Vec<StoredFanState>,
    fan_sends: Vec<FanSends>,
}

/// What a step changes, before it is committed.
struct Batch {
    tenant: TenantId,
    now: Millis,
    ids: JourneyIds,
    /// Every run the batch looked at, by id.
    runs: HashMap<i64, Run>,
    created: HashSet<i64>,
    changed: HashSet<i64>,
    history: Vec<StoredRunEvent>,
    outbox: Vec<StoredOutbox>,
    tasks: Vec<StoredTask>,
    variants: Vec<VariantDelta>,
    /// `invite_group` sends: (index in `outbox`, fan, group template), placed at the commit.
    invites: Vec<(usize, i64, String)>,
}

impl Batch {
    fn new(tenant: TenantId, now: Millis, ids: JourneyIds) -> Batch {
        Batch {
            tenant,
            now,
            ids,
            runs: HashMap::new(),
            created: HashSet::new(),
            changed: HashSet::new(),
            history: Vec::new(),
            outbox: Vec::new(),
            tasks: Vec::new(),
            variants: Vec::new(),
            invites: Vec::new(),
        }
    }

    fn rows(&mut self, day: i32, fans: &HashMap<i64, FanCache>) -> Result<Rows, JourneyError> {
        let mut rows = Rows {
            history: std::mem::take(&mut self.history),
            outbox: std::mem::take(&mut self.outbox),
            tasks: std::mem::take(&mut self.tasks),
            variants: std::mem::take(&mut self.variants),
            ..Rows::default()
        };
        let mut ids: Vec<i64> = self.changed.iter().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let r = to_stored(&self.runs[&id])?;
            if self.created.contains(&id) {
                rows.new_runs.push(r);
            } else {
                rows.updated_runs.push(r);
            }
        }
        for c in fans.values() {
            if c.state_dirty {
                rows.fan_states.push(c.state.clone());
            }
            for (channel, n) in &c.sends_new {
                rows.fan_sends.push(FanSends {
                    fan: c.fan,
                    channel: channel.clone(),
                    day,
                    count: *n,
                });
            }
        }
        Ok(rows)
    }

    /// A history line for a run (numbered after its last).
    fn history(
        &mut self,
        run: &mut Run,
        at: Millis,
        step: Option<String>,
        kind: RecordKind,
        reason: Option<String>,
        detail: Option<Value>,
    ) {
        run.data.hist += 1;
        self.history.push(StoredRunEvent {
            run: run.id,
            n: run.data.hist,
            at,
            step,
            kind: kind.as_i16(),
            reason,
            detail: detail.map(|d| d.to_string()),
        });
    }

    /// An outbox row.
    fn outbox(&mut self, channel: &str, run: &Run, step: &str, key: String, payload: Value) {
        self.ids.outbox += 1;
        self.outbox.push(StoredOutbox {
            id: self.ids.outbox,
            channel: channel.to_string(),
            run: run.id,
            step: step.to_string(),
            fan: run.fan,
            key,
            payload: payload.to_string(),
            state: run::OutboxState::Pending.as_i16(),
            attempts: 0,
            next_at: self.now,
            created_at: self.now,
            settled_at: None,
            answer: None,
        });
    }

    /// An outcome event, appended by the outbox (idempotent by its id).
    fn outcome(&mut self, run: &Run, step: &str, kind: &str, id: String, props: Value) {
        let Some((k, v)) = &run.data.anchor else {
            tracing::debug!(
                run = run.id,
                kind,
                "no identity to hang the outcome event on"
            );
            return;
        };
        let event = json!({
            "id": id,
            "type": kind,
            "ts": siyu_domain::time::format_rfc3339(self.now),
            "domain": "private",
            "identities": {k: v},
            "props": props,
            "source": "siyu",
        });
        let key = format!("{}-{id}", self.tenant);
        self.outbox(EVENTS, run, step, key, json!({ "event": event }));
    }
}

/// The batch's work under the engine's read lock: no I/O here.
struct Work<'a> {
    st: &'a TenantState,
    engine: &'a TenantEngine,
    batch: &'a mut Batch,
    fans: &'a mut HashMap<i64, FanCache>,
    events: &'a HashMap<i64, siyu_store::StoredEvent>,
    arms: &'a Evidence,
    report: &'a mut StepReport,
    day: i32,
}

impl Work<'_> {
    fn def_of(&self, run: &Run) -> Option<Arc<Journey>> {
        self.st
            .versions
            .get(&(run.journey.clone(), run.version))
            .cloned()
    }

    fn paused(&self, journey: &str) -> bool {
        self.st.live.iter().any(|l| l.name == journey && l.paused)
    }

    /// Keeps one open run per journey for a fan whose ids were merged: the older goes on.
    fn settle_merges(&mut self, fan: i64) -> Result<(), JourneyError> {
        let Some(c) = self.fans.get(&fan) else {
            return Ok(());
        };
        let ids = c.runs.clone();
        let mut open: HashMap<String, Vec<i64>> = HashMap::new();
        for id in &ids {
            let r = self.batch.runs.get_mut(id).expect("loaded with the fan");
            if r.fan != fan {
                r.fan = fan;
                self.batch.changed.insert(*id);
            }
            if !r.state.is_final() {
                open.entry(r.journey.clone()).or_default().push(*id);
            }
        }
        for (_, mut runs) in open {
            if runs.len() < 2 {
                continue;
            }
            runs.sort_by_key(|id| {
                let r = &self.batch.runs[id];
                (r.entered_at, r.id)
            });
            let keep = runs[0];
            for id in &runs[1..] {
                self.advance(*id, Input::MergedInto { fan, run: keep })?;
            }
        }
        Ok(())
    }

    fn trigger(&mut self, t: &StreamTrigger) -> Result<(), JourneyError> {
        let Some(fan) = t.fan else { return Ok(()) };
        if !self.fans.contains_key(&fan) {
            return Ok(());
        }
        if let What::Event {
            seq, event_type, ..
        } = &t.what
        {
            self.facts(fan, *seq, event_type)?;
            self.goals(fan, event_type)?;
        }
        let live: Vec<(String, i64, Arc<Journey>)> = self
            .st
            .live
            .iter()
            .filter(|l| !l.paused && t.id > l.starts_after && self.starts(&l.def.trigger, &t.what))
            .map(|l| (l.name.clone(), l.version, l.def.clone()))
            .collect();
        for (name, version, def) in live {
            let key = format!("{name}:{fan}:{}", t.id);
            let anchor = cause_seq(&t.what)
                .and_then(|s| self.events.get(&s))
                .and_then(|e| anchor_of(&e.event));
            self.enter(&name, version, &def, fan, key, anchor)?;
        }
        Ok(())
    }

    fn starts(&self, trigger: &Trigger, what: &What) -> bool {
        match (trigger, what) {
            (Trigger::Event(want), What::Event { event_type, .. }) => want == event_type,
            (Trigger::LayerEntered(l), What::LayerChanged { from, to, .. }) => {
                to == l && from.as_ref() != Some(l)
            }
            (Trigger::SegmentEntered(name), What::SegmentEntered { segment, .. }) => {
                self.st.segments.get(segment) == Some(name)
            }
            _ => false,
        }
    }

    /// A scheduled entry (the backlog of a daily schedule).
    fn enter_named(&mut self, journey: &str, fan: i64, key: String) -> Result<(), JourneyError> {
        let Some(l) = self.st.live.iter().find(|l| l.name == journey && !l.paused) else {
            return Ok(());
        };
        let (version, def) = (l.version, l.def.clone());
        if !self.fans.contains_key(&fan) {
            return Ok(());
        }
        let already = self.fans[&fan]
            .runs
            .iter()
            .any(|id| self.batch.runs[id].entry_key == key);
        if already {
            return Ok(());
        }
        self.enter(journey, version, &def, fan, key, None)
    }

    /// Starts a run if the journey's reentry rule and filter let the fan in.
    fn enter(
        &mut self,
        name: &str,
        version: i64,
        def: &Arc<Journey>,
        fan: i64,
        key: String,
        anchor: Option<(String, String)>,
    ) -> Result<(), JourneyError> {
        let now = self.batch.now;
        let c = &self.fans[&fan];
        let mine: Vec<&Run> = c
            .runs
            .iter()
            .map(|id| &self.batch.runs[id])
            .filter(|r| r.journey == name)
            .collect();
        if mine.iter().any(|r| r.entry_key == key) {
            return Ok(());
        }
        let allowed = match def.reentry {
            Reentry::Once => mine.is_empty(),
            Reentry::Always => mine.iter().all(|r| r.state.is_final()),
            Reentry::After(d) => mine
                .iter()
                .all(|r| r.state.is_final() && r.entered_at.saturating_add(d) <= now),
        };
        if !allowed {
            return Ok(());
        }
        if let Some(f) = &def.filter
            && !self.engine.matches(FanId(fan), &f.expr, &[])
        {
            return Ok(());
        }
        self.batch.ids.run += 1;
        let id = self.batch.ids.run;
        let mut r = Run::new(id, def, version, fan, key);
        r.data.anchor = anchor.or_else(|| c.profile.anchor.clone());
        self.batch.runs.insert(id, r);
        self.batch.created.insert(id);
        self.fans.get_mut(&fan).expect("checked").runs.push(id);
        self.report.entered += 1;
        self.advance(id, Input::Enter)
    }

    /// Facts an event changes: opt-out, authorization, the conversation, replies, tasks done.
    fn facts(&mut self, fan: i64, seq: i64, ty: &str) -> Result<(), JourneyError> {
        if !FACT_EVENTS.contains(&ty) {
            return Ok(());
        }
        let Some(ev) = self.events.get(&seq) else {
            return Ok(());
        };
        let e = &ev.event;
        let prop = |k: &str| {
            e.props.get(k).and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
        };
        let now = self.batch.now;
        let c = self.fans.get_mut(&fan).expect("checked by the caller");
        let mut replied = None;
        match ty {
            "unsubscribe" if c.state.opted_out_at.is_none() => {
                c.state.opted_out_at = Some(e.ts);
                c.state.opt_out_reason = Some("unsubscribe".into());
                c.state_dirty = true;
            }
            "private_message_in" => {
                let text = prop("text").unwrap_or_default();
                if policy::is_opt_out(&text) {
                    if c.state.opted_out_at.is_none() {
                        c.state.opted_out_at = Some(e.ts);
                        c.state.opt_out_reason = Some(format!("im:{text}"));
                    }
                } else if c.state.im_in_at.is_none_or(|at| e.ts >= at) {
                    c.state.im_in_at = Some(e.ts);
                    c.state.im_conversation = prop("conversation_short_id");
                    c.state.im_message = prop("server_message_id");
                    c.state.im_replies = 0;
                }
                if let (Some(run), Some(step)) =
                    (c.state.last_send_run, c.state.last_send_step.clone())
                    && c.state.last_send_at.is_some_and(|at| at <= e.ts.max(now))
                {
                    replied = Some((run, step));
                    c.state.last_send_run = None;
                    c.state.last_send_step = None;
                }
                c.state_dirty = true;
            }
            "x_authorize" => {
                c.state.authorized_at = Some(e.ts);
                c.state_dirty = true;
            }
            "x_unauthorize" => {
                c.state.authorized_at = None;
                c.state_dirty = true;
            }
            "x_journey_task_done" => {
                let run = e.props.get("run").and_then(Value::as_i64);
                let step = prop("step");
                if let Some(run) = run
                    && let Some(mut r) = self.batch.runs.remove(&run)
                {
                    let detail =
                        json!({"task": e.props.get("task"), "outcome": e.props.get("outcome")});
                    self.batch
                        .history(&mut r, now, step, RecordKind::TaskDone, None, Some(detail));
                    self.batch.runs.insert(run, r);
                    self.batch.changed.insert(run);
                }
            }
            _ => {}
        }
        if let Some((run, step)) = replied
            && let Some(mut r) = self.batch.runs.remove(&run)
        {
            self.batch.history(
                &mut r,
                now,
                Some(step.clone()),
                RecordKind::Replied,
                None,
                None,
            );
            let id = format!("siyu.{}.{run}.replied.{seq}", self.batch.tenant);
            self.batch.outcome(
                &r,
                &step,
                "x_journey_replied",
                id,
                json!({"run": run, "step": step, "journey": r.journey}),
            );
            self.batch.runs.insert(run, r);
            self.batch.changed.insert(run);
        }
        Ok(())
    }

    /// Open runs of the fan whose goal this event is reach it.
    fn goals(&mut self, fan: i64, ty: &str) -> Result<(), JourneyError> {
        let ids = self.fans[&fan].runs.clone();
        for id in ids {
            let r = &self.batch.runs[&id];
            if r.state.is_final() {
                continue;
            }
            let Some(def) = self.def_of(r) else { continue };
            if def.goal.as_ref().is_some_and(|g| g.event == ty) {
                self.advance(id, Input::Goal)?;
            }
        }
        Ok(())
    }

    /// A due run's timer fired.
    fn wake(&mut self, id: i64, _fan: i64) -> Result<(), JourneyError> {
        let Some(r) = self.batch.runs.get(&id) else {
            return Ok(());
        };
        if r.state.is_final() {
            return Ok(());
        }
        self.report.woken += 1;
        if self.paused(&r.journey.clone()) {
            let held = r.state == RunState::Held;
            if held {
                // A paused journey's held run has no timer until it is resumed.
                let r = self.batch.runs.get_mut(&id).expect("present");
                r.wake_at = None;
                self.batch.changed.insert(id);
                return Ok(());
            }
            return self.advance(id, Input::Hold);
        }
        if r.state == RunState::Held {
            self.advance(id, Input::Resume)?;
        }
        self.advance(id, Input::Wake)
    }

    /// Moves one run and turns what it did into rows.
    fn advance(&mut self, id: i64, input: Input) -> Result<(), JourneyError> {
        let Some(mut r) = self.batch.runs.remove(&id) else {
            return Ok(());
        };
        let Some(def) = self.def_of(&r) else {
            tracing::error!(run = id, journey = %r.journey, version = r.version, "a run's journey version is missing");
            self.batch.runs.insert(id, r);
            return Ok(());
        };
        let fan = r.fan;
        let Some(cache) = self.fans.get(&fan) else {
            self.batch.runs.insert(id, r);
            return Ok(());
        };
        let arms = self.arms;
        let (journey, version) = (r.journey.clone(), r.version);
        let arms_of = |step: &str| -> Vec<Arm> {
            arms.get(&(journey.clone(), version, step.to_string()))
                .map(|v| v.iter().map(|(_, a)| *a).collect())
                .unwrap_or_default()
        };
        let configured =
            |c: Channel| self.st.configured[Channel::ALL.iter().position(|x| *x == c).unwrap_or(0)];
        let fcx = FanCx {
            engine: self.engine,
            cache,
        };
        let cx = Ctx {
            now: self.batch.now,
            fan: &fcx,
            policy: &self.st.policy,
            configured: &configured,
            arms: &arms_of,
        };
        let out: Advance = run::advance(&def, &mut r, input, &cx);
        self.report.steps += out.steps;
        self.apply(&def, &mut r, out)?;
        self.batch.changed.insert(id);
        self.batch.runs.insert(id, r);
        Ok(())
    }

    fn apply(&mut self, def: &Journey, r: &mut Run, out: Advance) -> Result<(), JourneyError> {
        let now = self.batch.now;
        let tenant = self.batch.tenant;
        let step_id = |i: Option<usize>| i.and_then(|i| def.steps.get(i)).map(|s| s.id.clone());
        let mut converted_at: Option<String> = None;
        for rec in &out.records {
            let step = step_id(rec.step);
            if rec.kind == RecordKind::Converted {
                converted_at = Some(step.clone().unwrap_or_default());
            }
            self.batch.history(
                r,
                rec.at,
                step,
                rec.kind,
                rec.reason.map(|s| s.as_str().to_string()),
                rec.detail.clone(),
            );
        }
        for e in out.effects {
            match e {
                Effect::Send {
                    step,
                    channel,
                    text,
                    format,
                    variant,
                    im,
                    invite,
                } => {
                    let sid = def.steps[step].id.clone();
                    let key = self.key(r, &sid);
                    let c = self.fans.get_mut(&r.fan).expect("the run's fan is loaded");
                    let send = match channel {
                        Channel::Webhook => {
                            let mut b = json!({
                                "journey": r.journey, "version": r.version, "run": r.id,
                                "step": sid, "fan_id": r.fan, "text": text,
                                "idempotency_key": key, "channel": "webhook",
                                "at": siyu_domain::time::format_rfc3339(now),
                            });
                            if let Some(v) = &variant {
                                b["variant"] = json!(v);
                            }
                            if let Some(g) = &invite {
                                b["invite_group"] = json!(g);
                            }
                            b
                        }
                        Channel::DouyinIm => {
                            let (scene, conversation, message) = match &im {
                                Some(ImDecision::Reply {
                                    conversation,
                                    message,
                                }) => ("reply", Some(conversation.clone()), Some(message.clone())),
                                _ => ("proactive", None, None),
                            };
                            json!({
                                "to_user_id": c.profile.douyin_open_id, "text": text,
                                "scene": scene, "conversation_id": conversation,
                                "server_message_id": message, "idempotency_key": key,
                            })
                        }
                        Channel::WecomRobot => json!({
                            "msgtype": match format {
                                siyu_journey::def::Format::Markdown => "markdown",
                                siyu_journey::def::Format::Text => "text",
                            },
                            "content": text,
                        }),
                        Channel::Task => continue,
                    };
                    let ch = channel.as_str();
                    *c.sends.entry(ch.to_string()).or_default() += 1;
                    *c.sends_new.entry(ch.to_string()).or_default() += 1;
                    match &im {
                        Some(ImDecision::Proactive) => {
                            *c.sends.entry(PROACTIVE.into()).or_default() += 1;
                            *c.sends_new.entry(PROACTIVE.into()).or_default() += 1;
                        }
                        Some(ImDecision::Reply { .. }) => c.state.im_replies += 1,
                        _ => {}
                    }
                    c.state.fan = r.fan;
                    c.state.last_send_at = Some(now);
                    c.state.last_send_run = Some(r.id);
                    c.state.last_send_step = Some(sid.clone());
                    c.state_dirty = true;
                    let payload = json!({
                        "send": send, "anchor": r.data.anchor, "journey": r.journey,
                        "version": r.version,
                    });
                    if let Some(Some(template)) = &invite {
                        let at = self.batch.outbox.len();
                        self.batch.invites.push((at, r.fan, template.clone()));
                    }
                    self.batch.outbox(ch, r, &sid, key, payload);
                }
                Effect::Tag { step, tag, on } => {
                    let sid = def.steps[step].id.clone();
                    let key = self.key(r, &sid);
                    let payload = json!({"fan": r.fan, "tag": tag, "on": on, "source": format!("journey:{}", r.journey)});
                    self.batch.outbox(TAGS, r, &sid, key, payload);
                }
                Effect::Lead { step, team } => {
                    let sid = def.steps[step].id.clone();
                    let key = self.key(r, &sid);
                    let payload = json!({"fan": r.fan, "team": team, "journey": r.journey});
                    self.batch
                        .outbox(crate::leads::LEADS, r, &sid, key, payload);
                }
                Effect::Task {
                    step,
                    team,
                    text,
                    due_at,
                } => {
                    self.batch.tasks.push(StoredTask {
                        // Numbered at the commit.
                        id: 0,
                        team,
                        text,
                        fan: Some(r.fan),
                        run: Some(r.id),
                        step: Some(def.steps[step].id.clone()),
                        state: run::TaskState::Open.as_i16(),
                        agent: None,
                        outcome: None,
                        created_at: now,
                        due_at: Some(due_at),
                        updated_at: now,
                    });
                }
                Effect::Variant {
                    step,
                    arm,
                    sent,
                    converted,
                    failed,
                } => self.batch.variants.push(VariantDelta {
                    journey: r.journey.clone(),
                    version: r.version,
                    step,
                    arm,
                    sent,
                    converted,
                    failed,
                }),
            }
        }
        if let Some(step) = converted_at {
            let id = format!("siyu.{tenant}.{}.converted", r.id);
            let props =
                json!({"run": r.id, "journey": r.journey, "version": r.version, "step": step});
            self.batch
                .outcome(r, &step, "x_journey_converted", id, props);
        }
        let _ = self.day;
        Ok(())
    }

    /// The idempotency key of a step's outbox row: tenant, run and step; a step taken again
    /// (a loop) adds its history line.
    fn key(&self, r: &mut Run, step: &str) -> String {
        let tenant = self.batch.tenant;
        if r.data.sent_steps.iter().any(|s| s == step) {
            format!("{tenant}-{}-{step}-{}", r.id, r.data.hist)
        } else {
            r.data.sent_steps.push(step.to_string());
            format!("{tenant}-{}-{step}", r.id)
        }
    }
}

/// The sends-per-day counter of Douyin proactive messages.
const PROACTIVE: &str = "douyin_im.proactive";

/// An event's best identity for outcome events: an account id before a phone.
fn anchor_of(e: &siyu_domain::Event) -> Option<(String, String)> {
    let mut best: Option<(bool, String, String)> = None;
    for id in e.identities.iter() {
        let strong = id.kind.one_per_person();
        if best.as_ref().is_none_or(|(s, _, _)| strong && !s) {
            best = Some((strong, id.kind.as_str().to_string(), id.value().to_string()));
        }
    }
    best.map(|(_, k, v)| (k, v))
}

/// The fan as the state machine asks about it.
struct FanCx<'a> {
    engine: &'a TenantEngine,
    cache: &'a FanCache,
}

impl Fan for FanCx<'_> {
    fn matches(&self, expr: &siyu_domain::audience::Expr, pending: &[(String, bool)]) -> bool {
        self.engine.matches(FanId(self.cache.fan), expr, pending)
    }

    fn field(&self, name: &str) -> Option<String> {
        let p = &self.cache.profile;
        match name {
            "fan_id" => Some(self.cache.fan.to_string()),
            "layer" => self
                .engine
                .live_layer(FanId(self.cache.fan))
                .map(|l| l.label_zh().to_string()),
            "nickname" => p.nickname.clone(),
            "name" => p.name.clone(),
            "douyin_open_id" => p.douyin_open_id.clone(),
            "phone" => p.phone.as_deref().map(mask_phone),
            _ => None,
        }
    }

    fn opted_out(&self) -> bool {
        self.cache.state.opted_out_at.is_some()
    }

    fn sends_today(&self, channel: Channel) -> i32 {
        self.cache.sends.get(channel.as_str()).copied().unwrap_or(0)
    }

    fn im(&self) -> ImState {
        let s = &self.cache.state;
        ImState {
            last_in: match (s.im_in_at, &s.im_conversation, &s.im_message) {
                (Some(at), Some(c), Some(m)) => Some((at, c.clone(), m.clone())),
                _ => None,
            },
            replies: s.im_replies,
            authorized: s.authorized_at.is_some(),
            proactive_today: self.cache.sends.get(PROACTIVE).copied().unwrap_or(0),
        }
    }
}

/// Variant steps' arms with their counters, by (journey, version, step).
type Evidence = HashMap<(String, i64, String), Vec<(String, Arm)>>;

/// Every variant step's evidence, per (journey, version, step): arms in the definition's
/// order with their counters.
fn store_arms(
    store: &dyn Store,
    tenant: TenantId,
    st: &TenantState,
) -> Result<Evidence, JourneyError> {
    use siyu_journey::def::{Message, StepKind};
    let mut out = HashMap::new();
    for l in &st.live {
        let has = l.def.steps.iter().any(|s| {
            matches!(&s.kind, StepKind::Send(x) if matches!(x.message, Message::Variants { .. }))
        });
        if !has {
            continue;
        }
        let stored = store.variants(tenant, &l.name)?;
        for s in &l.def.steps {
            let StepKind::Send(x) = &s.kind else { continue };
            let Message::Variants { arms, .. } = &x.message else {
                continue;
            };
            let v = l.version;
            {
                let list = arms
                    .iter()
                    .map(|a| {
                        let (c, f) = stored
                            .iter()
                            .filter(|x| x.version == v && x.step == s.id && x.arm == a.id)
                            .fold((0, 0), |(c, f), x| (c + x.converted, f + x.failed));
                        (
                            a.id.clone(),
                            Arm {
                                converted: c.max(0) as u64,
                                failed: f.max(0) as u64,
                            },
                        )
                    })
                    .collect();
                out.insert((l.name.clone(), v, s.id.clone()), list);
            }
        }
    }
    Ok(out)
}

fn to_stored(r: &Run) -> Result<StoredRun, JourneyError> {
    Ok(StoredRun {
        id: r.id,
        journey: r.journey.clone(),
        version: r.version,
        fan: r.fan,
        entry_key: r.entry_key.clone(),
        state: r.state.as_i16(),
        step: i32::try_from(r.step).unwrap_or(i32::MAX),
        wake_at: r.wake_at,
        entered_at: r.entered_at,
        goal_by: r.goal_by,
        updated_at: r.updated_at,
        data: serde_json::to_string(&r.data).map_err(|e| JourneyError::internal(e.to_string()))?,
    })
}

fn from_stored(r: &StoredRun) -> Result<Run, JourneyError> {
    let state = RunState::from_i16(r.state)
        .ok_or_else(|| JourneyError::internal(format!("run {} has state {}", r.id, r.state)))?;
    let data: RunData = serde_json::from_str(&r.data)
        .map_err(|e| JourneyError::internal(format!("run {} data: {e}", r.id)))?;
    Ok(Run {
        id: r.id,
        journey: r.journey.clone(),
        version: r.version,
        fan: r.fan,
        entry_key: r.entry_key.clone(),
        state,
        step: usize::try_from(r.step).unwrap_or(usize::MAX),
        wake_at: r.wake_at,
        entered_at: r.entered_at,
        goal_by: r.goal_by,
        updated_at: r.updated_at,
        data,
    })
}

/// Appends an outcome event for a fan now (a task completed through the API), hung on one of
/// the fan's identities; idempotent by `id`.
pub fn append_outcome(
    app: &App,
    tenant: TenantId,
    fan: i64,
    id: &str,
    ty: &str,
    props: Value,
) -> Result<(), JourneyError> {
    let seqs = app.ingestor.read(tenant, |e| {
        e.identities()
            .current(FanId(fan))
            .map(|f| e.recent_seqs(f, 1))
            .unwrap_or_default()
    })?;
    let Some(seq) = seqs.first() else {
        return Ok(());
    };
    let Some(ev) = app.store().event_at(tenant, *seq)? else {
        return Ok(());
    };
    let Some((k, v)) = anchor_of(&ev.event) else {
        return Ok(());
    };
    let now = app.ingestor.clock().now();
    let event = json!({
        "id": id, "type": ty, "ts": siyu_domain::time::format_rfc3339(now),
        "domain": "private", "identities": {k: v}, "props": props, "source": "siyu",
    });
    super::outbox::append_events(app, tenant, vec![event])
}
