//! The outbox worker: delivers outbox rows, one lane per tenant and channel, so a channel
//! that is down or slow never delays another (each lane has its own thread, its own queue in
//! the store and its own concurrency limit).
//!
//! A lane's [`OutboxWorker::step_lane`] takes the channel's due rows and delivers them in
//! rounds of the channel's concurrency, on the lane's delivery threads (started with the
//! lane, kept while its settings stay); each round is settled in one transaction while the
//! next is on the wire (so a crash repeats at most two rounds' requests):
//! - delivered (2xx, or the channel's protocol says so) → delivered;
//! - a retryable failure (timeout, connection error, 5xx, 429 honouring `Retry-After`) →
//!   due again after an exponential backoff with jitter ([`siyu_journey::policy::backoff`]),
//!   given up as dead after [`MAX_ATTEMPTS`];
//! - a permanent refusal (other 4xx, an answer the protocol calls a refusal, garbage) → dead,
//!   with the answer kept: `siyu journey dead-letters` lists them, retry one or all.
//!
//! Each settled row's outcome comes back as an event (`x_journey_delivered`,
//! `x_journey_failed`): the settling transaction itself inserts it as a row of the
//! [`EVENTS`] lane, so the outcome is as durable as the settling and never costs the channel's
//! lane a round trip through the tenant's writer. Such a row's id is below zero, made from
//! the row it reports on ([`outcome_id`]), so it needs no id from the run worker's counter and
//! a repeated settling inserts nothing twice. A crash after a request and before its settling
//! sends the row again, with the same idempotency key: the only repeat a channel can see.
//!
//! Two lanes are internal: [`TAGS`] applies journeys' tag steps through the tenant's writer,
//! and [`EVENTS`] appends outcome events; both are idempotent, so a repeat changes nothing.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::Duration;

use serde_json::Value;
use siyu_domain::Millis;
use siyu_engine::FanId;
use siyu_journey::policy::{self, MAX_ATTEMPTS};
use siyu_store::journeys::{Settle, StoredOutbox};
use siyu_store::{StoredTagChange, TenantId};

use super::worker::{EVENTS, TAGS};
use super::{Bell, JourneyError};
use crate::App;
use crate::channels::{self, ChannelKind, Deliver, Outcome};

/// How an adapter's answer starts when it held a row for its rate window (no request made).
const RATE_LIMITED: &str = "rate_limited:";

/// Rows a lane takes per step.
pub const BATCH: usize = 512;

/// The bell lanes wait on (rung when rows are committed or dead letters retried).
pub fn bell() -> &'static Bell {
    static BELL: OnceLock<Bell> = OnceLock::new();
    BELL.get_or_init(Bell::default)
}

/// Every lane a tenant has: the three outbound channels and the two internal ones.
pub const LANES: [&str; 6] = [
    "webhook",
    "douyin_im",
    "wecom_robot",
    TAGS,
    EVENTS,
    crate::leads::LEADS,
];

/// Whether a channel is set up for a tenant (and not killed).
pub fn configured(app: &App, tenant: TenantId, kind: &str) -> Result<bool, JourneyError> {
    let Ok(kind) = ChannelKind::parse(kind) else {
        return Ok(false);
    };
    Ok(
        channels::channel(&**app.store(), app.safeguards(), tenant, kind)
            .map_err(channel_error)?
            .is_some(),
    )
}

fn channel_error(e: channels::ChannelError) -> JourneyError {
    match e {
        channels::ChannelError::App(a) => JourneyError::App(a),
        e => JourneyError::InvalidArgument {
            field: "channel",
            message: e.to_string(),
        },
    }
}

/// A round's outcome, to be written in one transaction: the rows' settling and the outcome
/// rows it reports (see the module docs).
struct Persist {
    outcomes: Vec<StoredOutbox>,
    settled: Vec<Settle>,
}

impl Persist {
    fn write(self, app: &App, tenant: TenantId) -> Result<(), JourneyError> {
        app.store()
            .settle_outbox(tenant, &self.settled, &self.outcomes)?;
        if !self.outcomes.is_empty() {
            bell().ring();
        }
        Ok(())
    }
}

/// What a lane's step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LaneReport {
    pub delivered: usize,
    pub retried: usize,
    pub dead: usize,
    /// A full batch: call again at once.
    pub more: bool,
    /// The channel is killed (or not set up): nothing was taken.
    pub held: bool,
    /// The lane's earliest pending row after the step.
    pub next_at: Option<Millis>,
}

/// A lane's adapter and delivery threads, rebuilt when the channel's settings change.
struct Lane {
    pool: Option<Pool>,
    settings: Option<String>,
    concurrency: usize,
    killed: bool,
}

/// The outbox worker (see the module docs).
pub struct OutboxWorker {
    app: Arc<App>,
    lanes: HashMap<(TenantId, &'static str), Lane>,
    pub batch: usize,
    /// Draws the backoff's jitter; seeded in tests.
    jitter: Box<dyn FnMut() -> f64 + Send>,
}

impl OutboxWorker {
    pub fn new(app: Arc<App>) -> OutboxWorker {
        OutboxWorker {
            app,
            lanes: HashMap::new(),
            batch: BATCH,
            jitter: Box::new(rand::random::<f64>),
        }
    }

    /// The same with a fixed jitter source (tests).
    pub fn with_jitter(mut self, f: impl FnMut() -> f64 + Send + 'static) -> OutboxWorker {
        self.jitter = Box::new(f);
        self
    }

    /// One step of every lane of every tenant this node serves (tests; `siyu serve` runs
    /// each lane on its own thread).
    pub fn step(&mut self, now: Millis) -> Result<LaneReport, JourneyError> {
        let mut total = LaneReport::default();
        for tenant in self.app.ingestor.served() {
            for lane in LANES {
                let r = self.step_lane(tenant, lane, now)?;
                total.delivered += r.delivered;
                total.retried += r.retried;
                total.dead += r.dead;
                total.more |= r.more;
                total.next_at = match (total.next_at, r.next_at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        Ok(total)
    }

    fn lane(&mut self, tenant: TenantId, channel: &'static str) -> Result<&Lane, JourneyError> {
        let kind = ChannelKind::parse(channel).ok();
        let settings = match kind {
            Some(k) => channels::channel(&**self.app.store(), self.app.safeguards(), tenant, k)
                .map_err(channel_error)?,
            None => None,
        };
        let fingerprint = settings.as_ref().map(|s| format!("{s:?}"));
        let stale = self.lanes.get(&(tenant, channel)).is_none_or(|l| {
            l.settings != fingerprint || (kind.is_some() && l.pool.is_none() && settings.is_some())
        });
        if stale {
            let lane = match (&settings, kind) {
                (Some(s), Some(_)) => Lane {
                    pool: Some(Pool::start(
                        Arc::from(channels::adapter(
                            s,
                            self.app.safeguards().targets,
                            self.app.ingestor.clock().clone(),
                        )),
                        s.concurrency().max(1) as usize,
                        &format!("deliver-{tenant}-{channel}"),
                    )),
                    concurrency: s.concurrency().max(1) as usize,
                    killed: s.killed(),
                    settings: fingerprint,
                },
                // Internal lanes need no settings; an outbound one without settings holds.
                _ => Lane {
                    pool: None,
                    settings: fingerprint,
                    concurrency: 1,
                    killed: kind.is_some(),
                },
            };
            self.lanes.insert((tenant, channel), lane);
        }
        Ok(&self.lanes[&(tenant, channel)])
    }

    /// One step of one lane (see the module docs).
    pub fn step_lane(
        &mut self,
        tenant: TenantId,
        channel: &'static str,
        now: Millis,
    ) -> Result<LaneReport, JourneyError> {
        let store = self.app.store().clone();
        let (concurrency, killed) = {
            let l = self.lane(tenant, channel)?;
            (l.concurrency, l.killed)
        };
        if killed {
            return Ok(LaneReport {
                held: true,
                next_at: store.outbox_next_at(tenant, channel)?,
                ..LaneReport::default()
            });
        }
        let rows = store.outbox_due(tenant, channel, now, self.batch)?;
        if rows.is_empty() {
            return Ok(LaneReport {
                next_at: store.outbox_next_at(tenant, channel)?,
                ..LaneReport::default()
            });
        }
        let mut report = LaneReport {
            more: rows.len() >= self.batch,
            ..LaneReport::default()
        };
        if channel == TAGS || channel == EVENTS || channel == crate::leads::LEADS {
            // The internal lanes are idempotent: their whole batch is one round.
            let results = if channel == TAGS {
                self.apply_tags(tenant, &rows)?
            } else if channel == EVENTS {
                self.append(tenant, &rows)?
            } else {
                self.leads(tenant, &rows)?
            };
            self.settle(tenant, true, &rows, results, now, &mut report)
                .write(&self.app, tenant)?;
            report.next_at = store.outbox_next_at(tenant, channel)?;
            return Ok(report);
        }
        // An outbound lane settles what it delivered a round of `concurrency` rows at a time:
        // a crash then sends again at most the rows that were in flight, never rows a channel
        // had answered earlier in the step. The rounds are pipelined: a round's settling is
        // written while the next round is on the wire, so at most two rounds are
        // answered-but-unsettled at a crash (the rows in flight and the round being written).
        let mut written: Option<Persist> = None;
        for part in rows.chunks(concurrency.max(1)) {
            let on_the_wire = match &self.lanes[&(tenant, channel)].pool {
                Some(pool) => pool.submit(part),
                None => {
                    return Err(JourneyError::internal(format!(
                        "lane {channel} has no adapter"
                    )));
                }
            };
            if let Some(p) = written.take() {
                p.write(&self.app, tenant)?;
            }
            let results = on_the_wire.answers();
            written = Some(self.settle(tenant, false, part, results, now, &mut report));
        }
        if let Some(p) = written {
            p.write(&self.app, tenant)?;
        }
        report.next_at = store.outbox_next_at(tenant, channel)?;
        Ok(report)
    }

    /// What a round's answers mean for its rows: their settling and outcome events, to be
    /// written by [`Persist::write`].
    fn settle(
        &mut self,
        tenant: TenantId,
        internal: bool,
        rows: &[StoredOutbox],
        results: Vec<(Outcome, String)>,
        now: Millis,
        report: &mut LaneReport,
    ) -> Persist {
        let mut settled = Vec::with_capacity(rows.len());
        let mut outcomes = Vec::new();
        for (row, (outcome, answer)) in rows.iter().zip(results) {
            // Waiting for a slot of a channel's own rate window (a WeCom robot's 20 a minute)
            // is not a failed attempt: it never gives a row up.
            let attempts = if answer.starts_with(RATE_LIMITED) {
                row.attempts
            } else {
                row.attempts + 1
            };
            match outcome {
                Outcome::Delivered => {
                    report.delivered += 1;
                    if !internal {
                        outcomes.push(outcome_row(tenant, row, "x_journey_delivered", None, now));
                    }
                    settled.push(Settle::Delivered {
                        id: row.id,
                        at: now,
                        answer: (!answer.is_empty()).then_some(answer),
                    });
                }
                Outcome::Retry { after_ms } if attempts < MAX_ATTEMPTS => {
                    report.retried += 1;
                    let wait = policy::backoff(row.attempts, (self.jitter)(), after_ms);
                    settled.push(Settle::Retry {
                        id: row.id,
                        attempts,
                        next_at: now.saturating_add(wait),
                        answer,
                    });
                }
                Outcome::Retry { .. } | Outcome::Permanent => {
                    report.dead += 1;
                    if !internal {
                        outcomes.push(outcome_row(
                            tenant,
                            row,
                            "x_journey_failed",
                            Some(&answer),
                            now,
                        ));
                    }
                    settled.push(Settle::Dead {
                        id: row.id,
                        attempts,
                        at: now,
                        answer,
                    });
                }
            }
        }
        Persist {
            outcomes: outcomes.into_iter().flatten().collect(),
            settled,
        }
    }

    /// Applies tag steps through the tenant's writer: each row adds or removes a tag unless
    /// the fan already is that way (so a repeat changes nothing).
    fn apply_tags(
        &self,
        tenant: TenantId,
        rows: &[StoredOutbox],
    ) -> Result<Vec<(Outcome, String)>, JourneyError> {
        let mut asks = Vec::with_capacity(rows.len());
        for r in rows {
            let v: Value = serde_json::from_str(&r.payload).unwrap_or(Value::Null);
            let tag = v["tag"].as_str().map(str::to_string);
            let on = v["on"].as_bool();
            let source = v["source"].as_str().unwrap_or("journey").to_string();
            asks.push(match (tag, on) {
                (Some(t), Some(on)) => Some((r.fan, t, on, source)),
                _ => None,
            });
        }
        let answers = self.app.ingestor.mutate(tenant, move |store, e| {
            let now = crate::segments::now_of(e);
            let mut rows: Vec<StoredTagChange> = Vec::new();
            let mut out = Vec::with_capacity(asks.len());
            // What this batch has done already, per (fan, tag).
            let mut done: HashMap<(i64, String), bool> = HashMap::new();
            for ask in &asks {
                let Some((fan, tag, on, source)) = ask else {
                    out.push((Outcome::Permanent, "unreadable tag row".to_string()));
                    continue;
                };
                let Some(cur) = e.identities().current(FanId(*fan)) else {
                    out.push((Outcome::Permanent, format!("no fan {fan}")));
                    continue;
                };
                let ids = e.identities().ids_of(cur);
                let has = done
                    .get(&(cur.0, tag.clone()))
                    .copied()
                    .unwrap_or_else(|| e.tags().has(tag, &ids, now));
                if has != *on {
                    if *on {
                        rows.push(StoredTagChange {
                            id: 0,
                            fan: cur.0,
                            tag: tag.clone(),
                            added: true,
                            at: now,
                            source: source.clone(),
                        });
                    } else {
                        for id in &ids {
                            if e.tags().has(tag, &[*id], now) {
                                rows.push(StoredTagChange {
                                    id: 0,
                                    fan: id.0,
                                    tag: tag.clone(),
                                    added: false,
                                    at: now,
                                    source: source.clone(),
                                });
                            }
                        }
                    }
                    done.insert((cur.0, tag.clone()), *on);
                }
                out.push((Outcome::Delivered, String::new()));
            }
            if !rows.is_empty() {
                store.add_tag_changes(tenant, &rows)?;
                crate::segments::load_tags(store, e, tenant, false)?;
            }
            Ok(out)
        })?;
        crate::triggers::notify();
        Ok(answers)
    }

    /// Hands fans to lead routing (journeys' `assign_lead`); an unreadable row is dead.
    fn leads(
        &self,
        tenant: TenantId,
        rows: &[StoredOutbox],
    ) -> Result<Vec<(Outcome, String)>, JourneyError> {
        let mut asks = Vec::new();
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let v: Value = serde_json::from_str(&r.payload).unwrap_or(Value::Null);
            match v["team"].as_str() {
                Some(team) => {
                    asks.push((r.key.clone(), r.fan, team.to_string()));
                    out.push((Outcome::Delivered, String::new()));
                }
                None => out.push((Outcome::Permanent, "unreadable lead row".to_string())),
            }
        }
        self.app
            .leads_from_journeys(tenant, &asks)
            .map_err(|e| JourneyError::internal(e.to_string()))?;
        Ok(out)
    }

    /// Appends outcome events (the rows' `event`); a refused one is a dead row with the
    /// reason.
    fn append(
        &self,
        tenant: TenantId,
        rows: &[StoredOutbox],
    ) -> Result<Vec<(Outcome, String)>, JourneyError> {
        let mut good = Vec::new();
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let v: Value = serde_json::from_str(&r.payload).unwrap_or(Value::Null);
            match siyu_domain::Event::from_value(
                v["event"].clone(),
                self.app.time_bounds(self.app.ingestor.clock().now()),
            ) {
                Ok(e) => {
                    good.push(e);
                    out.push((Outcome::Delivered, String::new()));
                }
                Err(e) => out.push((
                    Outcome::Permanent,
                    format!("{}: {}", e.code.as_str(), e.message),
                )),
            }
        }
        if !good.is_empty() {
            append_parsed(&self.app, tenant, good)?;
        }
        Ok(out)
    }

    /// Runs every lane of every served tenant on its own thread until `stop` receives; lanes
    /// of tenants this node stops serving end, new ones start within a second.
    pub fn run_until_stopped(self, stop: std::sync::mpsc::Receiver<()>) {
        let app = self.app.clone();
        let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut running: HashMap<(TenantId, &'static str), std::thread::JoinHandle<()>> =
            HashMap::new();
        loop {
            if !matches!(stop.try_recv(), Err(std::sync::mpsc::TryRecvError::Empty)) {
                stopped.store(true, Ordering::SeqCst);
                bell().ring();
                for (_, h) in running.drain() {
                    let _ = h.join();
                }
                return;
            }
            running.retain(|_, h| !h.is_finished());
            for tenant in app.ingestor.served() {
                for lane in LANES {
                    if running.contains_key(&(tenant, lane)) {
                        continue;
                    }
                    let (app, stopped) = (app.clone(), stopped.clone());
                    let spawned = std::thread::Builder::new()
                        .name(format!("outbox-{tenant}-{lane}"))
                        .spawn(move || run_lane(app, tenant, lane, &stopped));
                    match spawned {
                        Ok(h) => {
                            running.insert((tenant, lane), h);
                        }
                        Err(e) => tracing::error!(error = %e, "cannot start an outbox lane"),
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(200));
            if running.is_empty() {
                std::thread::sleep(Duration::from_millis(800));
            }
        }
    }
}

/// One lane's loop: at once while there is more, else until the bell or its next due row
/// (at most a second).
fn run_lane(
    app: Arc<App>,
    tenant: TenantId,
    lane: &'static str,
    stopped: &std::sync::atomic::AtomicBool,
) {
    let clock = app.ingestor.clock().clone();
    let mut w = OutboxWorker::new(app.clone());
    while !stopped.load(Ordering::SeqCst) && app.ingestor.serves(tenant) {
        let seen = bell().seen();
        let now = clock.now();
        match w.step_lane(tenant, lane, now) {
            Ok(r) if r.more => continue,
            Ok(r) => {
                let wait = r.next_at.map_or(1000, |t| (t - clock.now()).clamp(0, 1000));
                if wait > 0 {
                    bell().wait(seen, Duration::from_millis(wait as u64));
                }
            }
            Err(e) => {
                tracing::warn!(tenant, lane, error = %e, code = e.code(), "outbox step failed");
                bell().wait(seen, Duration::from_secs(1));
            }
        }
    }
}

/// One request for a lane's delivery threads: a row's key and payload, and where to answer.
struct Job {
    i: usize,
    key: String,
    payload: String,
    reply: mpsc::Sender<(usize, (Outcome, String))>,
}

/// A lane's delivery threads: as many as the channel's concurrency, alive while the lane's
/// settings stay (they end when the pool is dropped and their queue is empty), so a round
/// costs no thread starts.
struct Pool {
    /// `None` when no thread could be started: rounds are then delivered on the lane's own
    /// thread, one request at a time.
    jobs: Option<mpsc::Sender<Job>>,
    adapter: Arc<dyn Deliver>,
}

impl Pool {
    fn start(adapter: Arc<dyn Deliver>, threads: usize, name: &str) -> Pool {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut started = 0;
        for k in 0..threads {
            let (rx, adapter) = (rx.clone(), adapter.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("{name}-{k}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting for a job, never while sending.
                        let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        let Ok(job) = job else { return };
                        let got = deliver_one(&*adapter, &job.key, &job.payload);
                        let _ = job.reply.send((job.i, got));
                    }
                });
            match spawned {
                Ok(_) => started += 1,
                Err(e) => tracing::error!(error = %e, "cannot start a delivery thread"),
            }
        }
        Pool {
            jobs: (started > 0).then_some(tx),
            adapter,
        }
    }

    /// Puts a round on the wire; [`Round::answers`] waits for its answers.
    fn submit(&self, rows: &[StoredOutbox]) -> Round {
        let (reply, answers) = mpsc::channel();
        let mut inline = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            let job = Job {
                i,
                key: r.key.clone(),
                payload: r.payload.clone(),
                reply: reply.clone(),
            };
            match &self.jobs {
                Some(jobs) => {
                    if let Err(mpsc::SendError(job)) = jobs.send(job) {
                        inline.push(job);
                    }
                }
                None => inline.push(job),
            }
        }
        for job in inline {
            let got = deliver_one(&*self.adapter, &job.key, &job.payload);
            let _ = job.reply.send((job.i, got));
        }
        Round {
            n: rows.len(),
            answers,
        }
    }
}

/// A round on the wire.
struct Round {
    n: usize,
    answers: mpsc::Receiver<(usize, (Outcome, String))>,
}

impl Round {
    /// The round's answers in row order; a row whose thread ended without one is retried.
    fn answers(self) -> Vec<(Outcome, String)> {
        let mut slots: Vec<Option<(Outcome, String)>> = (0..self.n).map(|_| None).collect();
        // Every job holds a sender: this ends when all have answered or been dropped.
        for (i, got) in self.answers.iter().take(self.n) {
            if let Some(s) = slots.get_mut(i) {
                *s = Some(got);
            }
        }
        slots
            .into_iter()
            .map(|s| s.unwrap_or((Outcome::Retry { after_ms: None }, "not attempted".into())))
            .collect()
    }
}

/// Delivers one row through an adapter; a panicking adapter is a retryable failure.
fn deliver_one(adapter: &dyn Deliver, key: &str, payload: &str) -> (Outcome, String) {
    let stored: Value = match serde_json::from_str(payload) {
        Ok(v) => v,
        Err(e) => return (Outcome::Permanent, format!("unreadable outbox row: {e}")),
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        adapter.deliver(key, &stored["send"])
    })) {
        Ok(a) => (a.outcome, a.answer),
        Err(_) => (
            Outcome::Retry { after_ms: None },
            "the channel's adapter panicked".into(),
        ),
    }
}

/// The id of the events-lane row reporting a row's outcome: below zero (the run worker's ids
/// are above), one per row and outcome kind, so a repeated settling inserts nothing twice.
pub fn outcome_id(row: i64, delivered: bool) -> i64 {
    -(row * 2 + i64::from(!delivered))
}

/// The events-lane row carrying a settled outbound row's outcome event.
fn outcome_row(
    tenant: TenantId,
    row: &StoredOutbox,
    ty: &str,
    answer: Option<&str>,
    now: Millis,
) -> Option<StoredOutbox> {
    let event = outcome_event(tenant, row, ty, answer, now)?;
    Some(StoredOutbox {
        id: outcome_id(row.id, ty == "x_journey_delivered"),
        channel: EVENTS.to_string(),
        run: row.run,
        step: row.step.clone(),
        fan: row.fan,
        key: format!("{tenant}-{}", event["id"].as_str().unwrap_or_default()),
        payload: serde_json::json!({ "event": event }).to_string(),
        state: 0,
        attempts: 0,
        next_at: now,
        created_at: now,
        settled_at: None,
        answer: None,
    })
}

/// The outcome event of a settled outbound row, hung on the identity stored with it.
fn outcome_event(
    tenant: TenantId,
    row: &StoredOutbox,
    ty: &str,
    answer: Option<&str>,
    now: Millis,
) -> Option<Value> {
    let stored: Value = serde_json::from_str(&row.payload).ok()?;
    let anchor = stored["anchor"].as_array()?;
    let (k, v) = (anchor.first()?.as_str()?, anchor.get(1)?.as_str()?);
    let what = if ty == "x_journey_delivered" {
        "delivered"
    } else {
        "failed"
    };
    let mut props = serde_json::json!({
        "journey": stored["journey"], "version": stored["version"], "run": row.run,
        "step": row.step, "channel": row.channel, "idempotency_key": row.key,
        "attempts": row.attempts + 1,
    });
    if let Some(a) = answer {
        props["answer"] = Value::String(a.chars().take(500).collect());
    }
    Some(serde_json::json!({
        "id": format!("siyu.{tenant}.o{}.{what}", row.id),
        "type": ty,
        "ts": siyu_domain::time::format_rfc3339(now),
        "domain": "private",
        "identities": {k: v},
        "props": props,
        "source": "siyu",
    }))
}

/// Appends outcome events (native JSON) through the tenant's writer; duplicates are ignored.
pub fn append_events(app: &App, tenant: TenantId, events: Vec<Value>) -> Result<(), JourneyError> {
    let mut parsed = Vec::with_capacity(events.len());
    for v in events {
        match siyu_domain::Event::from_value(v, app.time_bounds(app.ingestor.clock().now())) {
            Ok(e) => parsed.push(e),
            Err(e) => {
                tracing::error!(code = e.code.as_str(), message = %e.message, "an outcome event was refused")
            }
        }
    }
    append_parsed(app, tenant, parsed)
}

fn append_parsed(
    app: &App,
    tenant: TenantId,
    events: Vec<siyu_domain::Event>,
) -> Result<(), JourneyError> {
    if events.is_empty() {
        return Ok(());
    }
    let rx = app.ingestor.submit(tenant, events)?;
    rx.blocking_recv()
        .map_err(|_| JourneyError::App(crate::AppError::WriterStopped))??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers by key: `ok…` delivered, `panic…` panics, anything else refused.
    struct ByKey;

    impl Deliver for ByKey {
        fn deliver(&self, key: &str, payload: &Value) -> channels::Attempt {
            assert!(!key.starts_with("panic"), "adapter bug");
            channels::Attempt {
                status: Some(200),
                retry_after: None,
                answer: format!("{key}:{}", payload["n"]),
                outcome: if key.starts_with("ok") {
                    Outcome::Delivered
                } else {
                    Outcome::Permanent
                },
            }
        }
    }

    fn row(key: &str, payload: &str) -> StoredOutbox {
        StoredOutbox {
            id: 1,
            channel: "webhook".into(),
            run: 1,
            step: "s".into(),
            fan: 1,
            key: key.into(),
            payload: payload.into(),
            state: 0,
            attempts: 0,
            next_at: 0,
            created_at: 0,
            settled_at: None,
            answer: None,
        }
    }

    #[test]
    fn a_round_answers_in_row_order_and_a_panic_is_a_retry() {
        for threads in [0, 1, 3] {
            let pool = Pool::start(Arc::new(ByKey), threads, "test");
            let rows: Vec<StoredOutbox> = (0..7)
                .map(|i| {
                    let key = match i {
                        3 => "panic3".to_string(),
                        5 => "no5".to_string(),
                        _ => format!("ok{i}"),
                    };
                    row(&key, &format!(r#"{{"send": {{"n": {i}}}}}"#))
                })
                .chain([row("ok7", "not json")])
                .collect();
            let got = pool.submit(&rows).answers();
            assert_eq!(got.len(), 8);
            for (i, (outcome, answer)) in got.iter().enumerate() {
                match i {
                    3 => assert_eq!(
                        (outcome, answer.as_str()),
                        (
                            &Outcome::Retry { after_ms: None },
                            "the channel's adapter panicked"
                        )
                    ),
                    5 => assert_eq!((outcome, answer.as_str()), (&Outcome::Permanent, "no5:5")),
                    7 => {
                        assert_eq!(outcome, &Outcome::Permanent);
                        assert!(answer.starts_with("unreadable outbox row"), "{answer}");
                    }
                    _ => assert_eq!(
                        (outcome, answer.clone()),
                        (&Outcome::Delivered, format!("ok{i}:{i}"))
                    ),
                }
            }
            // The threads live on after a panic: the next round is answered too.
            let again = pool.submit(&rows[..2]).answers();
            assert_eq!(again[1], (Outcome::Delivered, "ok1:1".to_string()));
        }
    }

    #[test]
    fn outcome_ids_are_below_zero_and_apart_per_row_and_kind() {
        let mut seen = std::collections::HashSet::new();
        for row in 1..1000 {
            for delivered in [true, false] {
                let id = outcome_id(row, delivered);
                assert!(id < 0);
                assert!(seen.insert(id), "{row} {delivered}");
            }
        }
    }
}
