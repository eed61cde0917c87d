//! SOP journeys as a service: applying definitions (versioned; a run finishes on the version
//! it started), pausing and resuming them, their reports, the staff task inbox, dead letters,
//! and the tenant's send policy. The two workers that make journeys act live beside:
//!
//! - [`worker`]: follows the trigger stream and the runs' timers, moves runs through the
//!   state machine (`siyu_journey::run`) and commits each batch — runs, history, outbox rows,
//!   tasks, counters and its cursor — in one transaction.
//! - [`outbox`]: delivers outbox rows per channel (each channel its own queue and
//!   concurrency), retries with backoff, keeps dead letters, and reports outcomes as events.
//!
//! Both are steppable (`step(now)`), as the lead poller is, and run as threads in `siyu serve`.

pub mod outbox;
pub mod settings;
pub mod worker;

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use siyu_domain::Millis;
use siyu_domain::time::format_rfc3339;
use siyu_journey::def::{self, DefError, Journey, StepKind, Trigger};
use siyu_journey::run::{OutboxState, RecordKind, RunState, TaskState};
use siyu_journey::variants::{self, Arm};
use siyu_store::TenantId;
use siyu_store::journeys::{OutboxFilter, StoredOutbox, StoredTask, TaskChange, TaskFilter};

use crate::{App, AppError};

/// Why a journey request was refused.
#[derive(Debug, thiserror::Error)]
pub enum JourneyError {
    #[error(transparent)]
    App(#[from] AppError),
    /// The file was refused; the old version (if any) stays in force.
    #[error("{0}; nothing changed")]
    Invalid(DefError),
    #[error("no journey {0:?} in this tenant")]
    NoJourney(String),
    #[error("no task {0} in this tenant")]
    NoTask(i64),
    #[error("task {id} is {state}: it cannot be {wanted}")]
    TaskConflict {
        id: i64,
        state: &'static str,
        wanted: &'static str,
    },
    #[error("{field}: {message}")]
    InvalidPolicy {
        field: &'static str,
        message: String,
    },
    #[error("{field}: {message}")]
    InvalidArgument {
        field: &'static str,
        message: String,
    },
}

impl From<siyu_store::StoreError> for JourneyError {
    fn from(e: siyu_store::StoreError) -> Self {
        JourneyError::App(e.into())
    }
}

/// What the journey worker asks of leads and groups (placing invitations) fails only as the
/// store or the app does; anything else would be a bug, reported as stored data gone wrong.
impl From<crate::leads::LeadsError> for JourneyError {
    fn from(e: crate::leads::LeadsError) -> Self {
        match e {
            crate::leads::LeadsError::App(e) => JourneyError::App(e),
            e => JourneyError::App(siyu_store::StoreError::Corrupt(e.to_string()).into()),
        }
    }
}

impl JourneyError {
    /// A stable machine code for the edge.
    pub fn code(&self) -> &'static str {
        match self {
            JourneyError::App(e) => e.code(),
            JourneyError::Invalid(e) => e.code,
            JourneyError::NoJourney(_) => "journey_not_found",
            JourneyError::NoTask(_) => "task_not_found",
            JourneyError::TaskConflict { .. } => "task_conflict",
            JourneyError::InvalidPolicy { .. } => "invalid_policy",
            JourneyError::InvalidArgument { .. } => "invalid_argument",
        }
    }

    /// The request field (or the journey file's field path) the error is about.
    pub fn field(&self) -> Option<String> {
        match self {
            JourneyError::Invalid(e) => Some(e.field.clone()),
            JourneyError::InvalidPolicy { field, .. }
            | JourneyError::InvalidArgument { field, .. } => Some((*field).to_string()),
            _ => None,
        }
    }

    /// The journey file's line, for a refused file.
    pub fn line(&self) -> Option<usize> {
        match self {
            JourneyError::Invalid(e) => Some(e.line),
            _ => None,
        }
    }

    pub(crate) fn internal(message: String) -> JourneyError {
        JourneyError::App(AppError::Store(siyu_store::StoreError::Corrupt(message)))
    }
}

/// A wake-up shared by the workers: spurious wake-ups are fine, a waiter looks again. A std
/// `Mutex` and `Condvar`, not tokio's: the workers are plain threads doing blocking I/O.
#[derive(Debug, Default)]
pub struct Bell {
    rung: Mutex<u64>,
    cv: Condvar,
}

impl Bell {
    pub fn ring(&self) {
        let mut n = self.rung.lock().unwrap_or_else(|e| e.into_inner());
        *n = n.wrapping_add(1);
        self.cv.notify_all();
    }

    /// How often it has rung: pass it to [`Bell::wait`].
    pub fn seen(&self) -> u64 {
        *self.rung.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until it rings after `seen`, or `limit` passes.
    pub fn wait(&self, seen: u64, limit: Duration) {
        let n = self.rung.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self
            .cv
            .wait_timeout_while(n, limit, |n| *n == seen)
            .unwrap_or_else(|e| e.into_inner());
    }
}

/// What `siyu journey apply` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Applied {
    pub journey: String,
    pub version: i64,
    /// The file was the version in force already: nothing changed.
    pub unchanged: bool,
}

/// A journey as listed.
#[derive(Debug, Clone, Serialize)]
pub struct JourneySummary {
    pub name: String,
    pub version: i64,
    pub paused: bool,
    /// The trigger, as the file writes it (`event = "follow"`).
    pub trigger: String,
    pub steps: usize,
    pub applied_at: String,
    pub updated_at: String,
}

/// A journey with its definition.
#[derive(Debug, Clone, Serialize)]
pub struct JourneyDetail {
    #[serde(flatten)]
    pub summary: JourneySummary,
    pub definition: String,
    pub step_list: Vec<StepView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepView {
    pub id: String,
    #[serde(rename = "type")]
    pub ty: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<&'static str>,
}

/// `siyu journey report`: per step and per variant, from the runs' history and the outbox.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub journey: String,
    pub version: i64,
    pub paused: bool,
    pub runs: RunTotals,
    pub steps: Vec<StepReport>,
    pub variants: Vec<VariantReport>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RunTotals {
    pub entered: i64,
    /// Waiting at a step (a wait, or quiet hours).
    pub waiting: i64,
    pub awaiting_goal: i64,
    pub held: i64,
    pub completed: i64,
    pub converted: i64,
    pub merged: i64,
    /// converted / entered (0 with no entries).
    pub conversion_rate: f64,
}

/// One step's numbers (every version's runs, by step id).
#[derive(Debug, Clone, Default, Serialize)]
pub struct StepReport {
    pub id: String,
    #[serde(rename = "type")]
    pub ty: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<&'static str>,
    /// Step executions (every run that reached the step, each time it did).
    pub entered: i64,
    /// Runs waiting at the step now.
    pub waiting: i64,
    /// Messages handed to the channel (sends and invitations).
    pub sent: i64,
    /// Of those, delivered, waiting for delivery, and given up (dead letters).
    pub delivered: i64,
    pub pending: i64,
    pub failed: i64,
    /// Skipped, by reason.
    pub skipped: BTreeMap<String, i64>,
    /// Forbidden by the channel's rules and handed to staff as a task, by reason.
    pub fell_back: BTreeMap<String, i64>,
    /// Runs that reached the goal while at this step.
    pub converted: i64,
    /// Replies to this step's messages.
    pub replied: i64,
}

/// One variant's numbers.
#[derive(Debug, Clone, Serialize)]
pub struct VariantReport {
    pub step: String,
    pub variant: String,
    pub sent: i64,
    pub converted: i64,
    /// Goal windows closed without the goal.
    pub failed: i64,
    /// converted / sent.
    pub rate: f64,
    /// Wilson 95% interval of the rate.
    pub interval95: [f64; 2],
    /// The share of new entries Thompson sampling gives it now.
    pub share: f64,
}

/// An outbox row as shown (dead letters).
#[derive(Debug, Clone, Serialize)]
pub struct OutboxView {
    pub id: i64,
    pub channel: String,
    pub run: i64,
    pub step: String,
    pub fan_id: i64,
    pub idempotency_key: String,
    pub state: &'static str,
    pub attempts: i32,
    pub created_at: String,
    pub next_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settled_at: Option<String>,
    /// The channel's last answer.
    pub answer: Option<String>,
    pub payload: Value,
}

impl OutboxView {
    fn of(r: StoredOutbox) -> OutboxView {
        OutboxView {
            id: r.id,
            channel: r.channel,
            run: r.run,
            step: r.step,
            fan_id: r.fan,
            idempotency_key: r.key,
            state: OutboxState::from_i16(r.state).map_or("unknown", OutboxState::as_str),
            attempts: r.attempts,
            created_at: format_rfc3339(r.created_at),
            next_at: format_rfc3339(r.next_at),
            settled_at: r.settled_at.map(format_rfc3339),
            answer: r.answer,
            payload: serde_json::from_str(&r.payload).unwrap_or(Value::Null),
        }
    }
}

/// A staff task as shown.
#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    pub id: i64,
    pub team: String,
    pub text: String,
    pub fan_id: Option<i64>,
    pub run: Option<i64>,
    pub step: Option<String>,
    pub state: &'static str,
    pub agent: Option<String>,
    pub outcome: Option<String>,
    pub created_at: String,
    pub due_at: Option<String>,
    /// Open or claimed past its due time.
    pub overdue: bool,
}

impl TaskView {
    fn of(t: StoredTask, now: Millis) -> TaskView {
        let state = TaskState::from_i16(t.state);
        TaskView {
            id: t.id,
            team: t.team,
            text: t.text,
            fan_id: t.fan,
            run: t.run,
            step: t.step,
            state: state.map_or("unknown", TaskState::as_str),
            agent: t.agent,
            outcome: t.outcome,
            created_at: format_rfc3339(t.created_at),
            due_at: t.due_at.map(format_rfc3339),
            overdue: state != Some(TaskState::Done) && t.due_at.is_some_and(|d| d < now),
        }
    }
}

/// Which tasks to list.
#[derive(Debug, Clone, Default)]
pub struct TaskQuery {
    pub team: Option<String>,
    pub agent: Option<String>,
    pub state: Option<TaskState>,
    pub limit: usize,
}

/// A trigger as the file writes it.
pub fn trigger_text(t: &Trigger) -> String {
    match t {
        Trigger::Event(e) => format!("event = {e:?}"),
        Trigger::LayerEntered(l) => format!("layer_entered = {:?}", l.as_str()),
        Trigger::SegmentEntered(s) => format!("segment_entered = {s:?}"),
        Trigger::Schedule { at, segment } => format!("schedule = \"{at}\", segment = {segment:?}"),
    }
}

/// A step's type and channel, as the file writes them.
pub fn step_kind(k: &StepKind) -> (&'static str, Option<&'static str>) {
    match k {
        StepKind::Send(s) => ("send", Some(s.channel.as_str())),
        StepKind::Wait(_) => ("wait", None),
        StepKind::Branch { .. } => ("branch", None),
        StepKind::Tag(_) => ("tag", None),
        StepKind::Untag(_) => ("untag", None),
        StepKind::InviteGroup { channel, .. } => ("invite_group", Some(channel.as_str())),
        StepKind::AssignLead { .. } => ("assign_lead", None),
        StepKind::Task { .. } => ("task", None),
        StepKind::Exit => ("exit", None),
    }
}

/// Parses a stored definition (it was checked when applied; segments may have been deleted
/// since, which the worker tolerates: such a trigger matches nothing).
pub fn parse_stored(text: &str) -> Result<Journey, JourneyError> {
    def::parse(text, None)
        .map_err(|e| JourneyError::internal(format!("stored journey unreadable: {e}")))
}

fn summary(s: &siyu_store::journeys::StoredJourney, j: &Journey) -> JourneySummary {
    JourneySummary {
        name: s.name.clone(),
        version: s.version,
        paused: s.paused,
        trigger: trigger_text(&j.trigger),
        steps: j.steps.len(),
        applied_at: format_rfc3339(s.applied_at),
        updated_at: format_rfc3339(s.updated_at),
    }
}

impl App {
    pub(crate) fn now(&self) -> Millis {
        self.ingestor.clock().now()
    }

    /// Checks a journey file and puts it in force as a new version (the same text as the
    /// version in force changes nothing). Runs already going finish on their version.
    pub fn apply_journey(&self, tenant: TenantId, text: &str) -> Result<Applied, JourneyError> {
        self.store().check_writable()?;
        let segments: Vec<String> = self
            .store()
            .segments(tenant)?
            .into_iter()
            .map(|s| s.name)
            .collect();
        let j = def::parse(text, Some(&segments)).map_err(JourneyError::Invalid)?;
        if let Some(current) = self
            .store()
            .journeys(tenant)?
            .into_iter()
            .find(|s| s.name == j.name)
            && current.definition == text
        {
            return Ok(Applied {
                journey: j.name,
                version: current.version,
                unchanged: true,
            });
        }
        // What is in the stream now is history: the journey starts no run for it.
        let head = siyu_domain::trigger::event_position(self.store().last_seq(tenant)? + 1) - 1;
        let version = self
            .store()
            .put_journey(tenant, &j.name, text, head, self.now())?;
        self.journeys_changed();
        Ok(Applied {
            journey: j.name,
            version,
            unchanged: false,
        })
    }

    /// Tells the journey worker that definitions or their pause changed.
    pub fn journeys_changed(&self) {
        worker::bump_generation();
        self.journey_bell().ring();
    }

    /// The bell the journey worker waits on.
    pub fn journey_bell(&self) -> &'static Bell {
        worker::bell()
    }

    /// The tenant's journeys at their current versions.
    pub fn journeys(&self, tenant: TenantId) -> Result<Vec<JourneySummary>, JourneyError> {
        self.store()
            .journeys(tenant)?
            .iter()
            .map(|s| Ok(summary(s, &parse_stored(&s.definition)?)))
            .collect()
    }

    /// One journey with its definition.
    pub fn journey(&self, tenant: TenantId, name: &str) -> Result<JourneyDetail, JourneyError> {
        let s = self
            .store()
            .journeys(tenant)?
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| JourneyError::NoJourney(name.to_string()))?;
        let j = parse_stored(&s.definition)?;
        Ok(JourneyDetail {
            summary: summary(&s, &j),
            step_list: j
                .steps
                .iter()
                .map(|st| {
                    let (ty, channel) = step_kind(&st.kind);
                    StepView {
                        id: st.id.clone(),
                        ty,
                        channel,
                    }
                })
                .collect(),
            definition: s.definition,
        })
    }

    /// Pauses (the kill switch) or resumes a journey: paused, it starts no run and moves none;
    /// resumed, held runs take up where they were.
    pub fn set_journey_paused(
        &self,
        tenant: TenantId,
        name: &str,
        paused: bool,
    ) -> Result<JourneySummary, JourneyError> {
        self.store().check_writable()?;
        if !self
            .store()
            .set_journey_paused(tenant, name, paused, self.now())?
        {
            return Err(JourneyError::NoJourney(name.to_string()));
        }
        if !paused {
            self.store().wake_held(tenant, name, self.now())?;
        }
        self.journeys_changed();
        Ok(self.journey(tenant, name)?.summary)
    }

    /// A journey's report (every version's runs, by step id; the current version's steps
    /// first, in order).
    pub fn journey_report(&self, tenant: TenantId, name: &str) -> Result<Report, JourneyError> {
        let detail = self.journey(tenant, name)?;
        let j = parse_stored(&detail.definition)?;
        let store = self.store();
        let mut steps: Vec<StepReport> = j
            .steps
            .iter()
            .map(|s| {
                let (ty, channel) = step_kind(&s.kind);
                StepReport {
                    id: s.id.clone(),
                    ty,
                    channel,
                    ..StepReport::default()
                }
            })
            .collect();
        fn slot<'a>(steps: &'a mut Vec<StepReport>, id: &str) -> &'a mut StepReport {
            if let Some(i) = steps.iter().position(|s| s.id == id) {
                return &mut steps[i];
            }
            steps.push(StepReport {
                id: id.to_string(),
                ty: "removed",
                ..StepReport::default()
            });
            steps.last_mut().expect("just pushed")
        }
        let mut totals = RunTotals::default();
        for c in store.step_counts(tenant, name)? {
            let Some(kind) = RecordKind::from_i16(c.kind) else {
                continue;
            };
            if kind == RecordKind::Entered {
                totals.entered += c.count;
                continue;
            }
            let Some(step) = c.step.as_deref() else {
                continue;
            };
            let s = slot(&mut steps, step);
            if kind.is_step() {
                s.entered += c.count;
            }
            let reason = || c.reason.clone().unwrap_or_else(|| "unknown".into());
            match kind {
                RecordKind::Sent | RecordKind::Invited => s.sent += c.count,
                RecordKind::Skipped => *s.skipped.entry(reason()).or_default() += c.count,
                RecordKind::FellBack => *s.fell_back.entry(reason()).or_default() += c.count,
                RecordKind::Converted => s.converted += c.count,
                RecordKind::Replied => s.replied += c.count,
                _ => {}
            }
        }
        for c in store.outbox_counts(tenant, name)? {
            let s = slot(&mut steps, &c.step);
            match OutboxState::from_i16(c.state) {
                Some(OutboxState::Delivered) => s.delivered += c.count,
                Some(OutboxState::Pending) => s.pending += c.count,
                Some(OutboxState::Dead) => s.failed += c.count,
                None => {}
            }
        }
        // Waiting counts: runs at a step index of their own version.
        let mut versions: BTreeMap<i64, Journey> = BTreeMap::new();
        for c in store.run_counts(tenant, name)? {
            let Some(state) = RunState::from_i16(c.state) else {
                continue;
            };
            match state {
                RunState::Waiting => totals.waiting += c.count,
                RunState::AwaitingGoal => totals.awaiting_goal += c.count,
                RunState::Held => totals.held += c.count,
                RunState::Completed => totals.completed += c.count,
                RunState::Converted => totals.converted += c.count,
                RunState::Merged => totals.merged += c.count,
            }
            if matches!(state, RunState::Waiting | RunState::Held) {
                if let std::collections::btree_map::Entry::Vacant(slot) = versions.entry(c.version)
                {
                    let text = if c.version == detail.summary.version {
                        Some(detail.definition.clone())
                    } else {
                        store.journey_version(tenant, name, c.version)?
                    };
                    if let Some(text) = text {
                        slot.insert(parse_stored(&text)?);
                    }
                }
                if let Some(st) = versions
                    .get(&c.version)
                    .and_then(|v| v.steps.get(usize::try_from(c.step).unwrap_or(usize::MAX)))
                {
                    slot(&mut steps, &st.id.clone()).waiting += c.count;
                }
            }
        }
        totals.conversion_rate = if totals.entered > 0 {
            totals.converted as f64 / totals.entered as f64
        } else {
            0.0
        };
        let variants = variant_reports(&store.variants(tenant, name)?, &j);
        Ok(Report {
            journey: name.to_string(),
            version: detail.summary.version,
            paused: detail.summary.paused,
            runs: totals,
            steps,
            variants,
        })
    }

    /// Outbox rows given up as dead (of one journey, or all).
    pub fn dead_letters(
        &self,
        tenant: TenantId,
        journey: Option<&str>,
        limit: usize,
    ) -> Result<Vec<OutboxView>, JourneyError> {
        Ok(self
            .store()
            .outbox(
                tenant,
                &OutboxFilter {
                    state: Some(OutboxState::Dead.as_i16()),
                    journey,
                    limit: limit.clamp(1, 10_000),
                    ..OutboxFilter::default()
                },
            )?
            .into_iter()
            .map(OutboxView::of)
            .collect())
    }

    /// Dead letters back in their queue (these ids, or all); how many.
    pub fn retry_dead_letters(
        &self,
        tenant: TenantId,
        ids: Option<&[i64]>,
    ) -> Result<usize, JourneyError> {
        self.store().check_writable()?;
        let n = self.store().retry_dead(tenant, ids, self.now())?;
        outbox::bell().ring();
        Ok(n)
    }

    /// Staff tasks, oldest first.
    pub fn tasks(&self, tenant: TenantId, q: &TaskQuery) -> Result<Vec<TaskView>, JourneyError> {
        let now = self.now();
        Ok(self
            .store()
            .tasks(
                tenant,
                &TaskFilter {
                    team: q.team.as_deref(),
                    agent: q.agent.as_deref(),
                    state: q.state.map(TaskState::as_i16),
                    limit: q.limit.clamp(1, 10_000),
                },
            )?
            .into_iter()
            .map(|t| TaskView::of(t, now))
            .collect())
    }

    /// Claims an open task for an agent.
    pub fn claim_task(
        &self,
        tenant: TenantId,
        id: i64,
        agent: &str,
    ) -> Result<TaskView, JourneyError> {
        let agent = check_label("agent", agent)?;
        self.change_task(tenant, id, &TaskChange::Claim { agent }, "claimed", |t| {
            t.state == TaskState::Claimed.as_i16()
        })
    }

    /// Completes a task with an outcome; the outcome comes back as a `x_journey_task_done`
    /// event (and so as a trigger and on the run's history).
    pub fn complete_task(
        &self,
        tenant: TenantId,
        id: i64,
        agent: &str,
        outcome: &str,
    ) -> Result<TaskView, JourneyError> {
        let agent = check_label("agent", agent)?;
        let outcome = check_text("outcome", outcome, 1000)?;
        let view = self.change_task(
            tenant,
            id,
            &TaskChange::Done {
                agent,
                outcome: outcome.clone(),
            },
            "completed",
            |t| t.state == TaskState::Done.as_i16(),
        )?;
        if let Some(fan) = view.fan_id {
            let props = json!({"task": id, "run": view.run, "step": view.step, "outcome": outcome,
                               "team": view.team, "agent": view.agent});
            worker::append_outcome(
                self,
                tenant,
                fan,
                &format!("siyu.task.{id}.done"),
                "x_journey_task_done",
                props,
            )?;
        }
        Ok(view)
    }

    fn change_task(
        &self,
        tenant: TenantId,
        id: i64,
        change: &TaskChange,
        wanted: &'static str,
        applied: impl Fn(&StoredTask) -> bool,
    ) -> Result<TaskView, JourneyError> {
        self.store().check_writable()?;
        let before = self
            .store()
            .task(tenant, id)?
            .ok_or(JourneyError::NoTask(id))?;
        let after = self
            .store()
            .update_task(tenant, id, change, self.now())?
            .ok_or(JourneyError::NoTask(id))?;
        if after == before || !applied(&after) {
            return Err(JourneyError::TaskConflict {
                id,
                state: TaskState::from_i16(after.state).map_or("unknown", TaskState::as_str),
                wanted,
            });
        }
        Ok(TaskView::of(after, self.now()))
    }

    /// The tenant's send policy.
    pub fn journey_policy(
        &self,
        tenant: TenantId,
    ) -> Result<settings::PolicySettings, JourneyError> {
        settings::load(&**self.store(), tenant)
    }

    /// Changes some of the tenant's send policy.
    pub fn set_journey_policy(
        &self,
        tenant: TenantId,
        body: &Value,
    ) -> Result<settings::PolicySettings, JourneyError> {
        self.store().check_writable()?;
        let s = settings::set(&**self.store(), tenant, body, self.now())?;
        self.journeys_changed();
        Ok(s)
    }
}

/// Variant counters as the report shows them, in the definition's order.
fn variant_reports(
    stored: &[siyu_store::journeys::StoredVariant],
    j: &Journey,
) -> Vec<VariantReport> {
    let mut out = Vec::new();
    for step in &j.steps {
        let StepKind::Send(s) = &step.kind else {
            continue;
        };
        let def::Message::Variants { arms, .. } = &s.message else {
            continue;
        };
        let sum = |arm: &str| {
            stored
                .iter()
                .filter(|v| v.step == step.id && v.arm == arm)
                .fold((0, 0, 0), |(a, b, c), v| {
                    (a + v.sent, b + v.converted, c + v.failed)
                })
        };
        let counts: Vec<(i64, i64, i64)> = arms.iter().map(|a| sum(&a.id)).collect();
        let evidence: Vec<Arm> = counts
            .iter()
            .map(|&(_, c, f)| Arm {
                converted: c.max(0) as u64,
                failed: f.max(0) as u64,
            })
            .collect();
        let shares = variants::shares(&evidence, 10_000);
        for (k, a) in arms.iter().enumerate() {
            let (sent, converted, failed) = counts[k];
            let (lo, hi) = variants::interval95(converted.max(0) as u64, sent.max(0) as u64);
            out.push(VariantReport {
                step: step.id.clone(),
                variant: a.id.clone(),
                sent,
                converted,
                failed,
                rate: if sent > 0 {
                    converted as f64 / sent as f64
                } else {
                    0.0
                },
                interval95: [lo, hi],
                share: shares.get(k).copied().unwrap_or(0.0),
            });
        }
    }
    out
}

/// An agent's or team's name: 1–64 characters, no control characters.
pub fn check_label(field: &'static str, s: &str) -> Result<String, JourneyError> {
    let n = s.chars().count();
    if n == 0 || n > 64 || s.chars().any(char::is_control) || s.trim() != s {
        return Err(JourneyError::InvalidArgument {
            field,
            message: format!(
                "{field} must be 1–64 characters without control characters or surrounding spaces"
            ),
        });
    }
    Ok(s.to_string())
}

fn check_text(field: &'static str, s: &str, max: usize) -> Result<String, JourneyError> {
    let n = s.chars().count();
    if n == 0 || n > max || s.chars().any(|c| c.is_control() && c != '\n') {
        return Err(JourneyError::InvalidArgument {
            field,
            message: format!("{field} must be 1–{max} characters without control characters"),
        });
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests;
