//! The run state machine: one fan going through one version of a journey.
//!
//! [`advance`] takes a run, its journey, what happened ([`Input`]: the fan entered, the run's
//! timer fired, the fan reached the goal) and what is known of the fan ([`Fan`]), and moves the
//! run as far as it can go *now*: through tags, branches and sends until a wait, quiet hours,
//! the goal window or the end. It returns the [`Effect`]s to carry out (outbox rows, tag
//! changes, tasks, variant counters) and the history [`Record`]s, and it does no I/O: the
//! caller commits the run, its effects and its history in one transaction, so a step is
//! either taken with everything it did or not at all.
//!
//! **Invariant** (held by the tests below): each step execution yields exactly one *step
//! record* (sent, skipped, fell back, waiting, branched, tagged, untagged, tasked, invited,
//! assigned, exited), so a step's `entered` count in the report is the number of its step
//! records; a run ends in exactly one final state, and a goal counts once per run.
//!
//! Determinism: the only randomness (variant draws) comes from a seed derived from the run
//! and the step, so advancing the same run from the same state again (after a crash lost the
//! first commit) picks the same arm, and so does a replay in tests.

use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use siyu_domain::Millis;
use siyu_domain::audience::Expr;

use crate::def::{Allocation, Channel, Format, Journey, Message, StepKind, Wait};
use crate::policy::{DouyinRules, ImDecision, ImState, QuietHours, Skip, douyin_decide};
use crate::variants::{self, Arm};

/// Where a run is. Open states are below 100; final ones at or above.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Waiting for its timer (a wait step, or quiet hours before a send).
    Waiting,
    /// Steps done; waiting for the goal until its deadline.
    AwaitingGoal,
    /// Its journey is paused: nothing happens until it is resumed.
    Held,
    /// Ran to the end (or an exit step), the goal not reached.
    Completed,
    /// Reached the goal.
    Converted,
    /// Its fan was merged into a fan with an older run of the journey, which goes on.
    Merged,
}

impl RunState {
    pub const ALL: [RunState; 6] = [
        RunState::Waiting,
        RunState::AwaitingGoal,
        RunState::Held,
        RunState::Completed,
        RunState::Converted,
        RunState::Merged,
    ];

    pub fn as_i16(self) -> i16 {
        match self {
            RunState::Waiting => 1,
            RunState::AwaitingGoal => 2,
            RunState::Held => 3,
            RunState::Completed => 100,
            RunState::Converted => 101,
            RunState::Merged => 102,
        }
    }

    pub fn from_i16(v: i16) -> Option<RunState> {
        RunState::ALL.into_iter().find(|s| s.as_i16() == v)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Waiting => "waiting",
            RunState::AwaitingGoal => "awaiting_goal",
            RunState::Held => "held",
            RunState::Completed => "completed",
            RunState::Converted => "converted",
            RunState::Merged => "merged",
        }
    }

    pub fn is_final(self) -> bool {
        self.as_i16() >= 100
    }
}

/// What a history line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordKind {
    Entered,
    // Step records: one per step execution.
    Sent,
    Skipped,
    /// The channel's rules forbade the send; a staff task was made instead.
    FellBack,
    Waiting,
    Branched,
    Tagged,
    Untagged,
    Tasked,
    Invited,
    Assigned,
    Exited,
    // Run records.
    /// Quiet hours: the send waits for them to end (the step runs again then).
    Deferred,
    Completed,
    Converted,
    /// The goal window closed without the goal.
    TimedOut,
    Merged,
    Held,
    Resumed,
    // Outcomes that come back from channels and staff.
    Delivered,
    Failed,
    Replied,
    TaskDone,
}

impl RecordKind {
    pub const ALL: [RecordKind; 23] = [
        RecordKind::Entered,
        RecordKind::Sent,
        RecordKind::Skipped,
        RecordKind::FellBack,
        RecordKind::Waiting,
        RecordKind::Branched,
        RecordKind::Tagged,
        RecordKind::Untagged,
        RecordKind::Tasked,
        RecordKind::Invited,
        RecordKind::Assigned,
        RecordKind::Exited,
        RecordKind::Deferred,
        RecordKind::Completed,
        RecordKind::Converted,
        RecordKind::TimedOut,
        RecordKind::Merged,
        RecordKind::Held,
        RecordKind::Resumed,
        RecordKind::Delivered,
        RecordKind::Failed,
        RecordKind::Replied,
        RecordKind::TaskDone,
    ];

    pub fn as_i16(self) -> i16 {
        RecordKind::ALL
            .iter()
            .position(|k| *k == self)
            .map_or(-1, |i| i as i16)
    }

    pub fn from_i16(v: i16) -> Option<RecordKind> {
        RecordKind::ALL.get(usize::try_from(v).ok()?).copied()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Entered => "entered",
            RecordKind::Sent => "sent",
            RecordKind::Skipped => "skipped",
            RecordKind::FellBack => "fell_back",
            RecordKind::Waiting => "waiting",
            RecordKind::Branched => "branched",
            RecordKind::Tagged => "tagged",
            RecordKind::Untagged => "untagged",
            RecordKind::Tasked => "tasked",
            RecordKind::Invited => "invited",
            RecordKind::Assigned => "assigned",
            RecordKind::Exited => "exited",
            RecordKind::Deferred => "deferred",
            RecordKind::Completed => "completed",
            RecordKind::Converted => "converted",
            RecordKind::TimedOut => "timed_out",
            RecordKind::Merged => "merged",
            RecordKind::Held => "held",
            RecordKind::Resumed => "resumed",
            RecordKind::Delivered => "delivered",
            RecordKind::Failed => "failed",
            RecordKind::Replied => "replied",
            RecordKind::TaskDone => "task_done",
        }
    }

    /// Whether it is a step record (one per step execution).
    pub fn is_step(self) -> bool {
        use RecordKind::*;
        matches!(
            self,
            Sent | Skipped
                | FellBack
                | Waiting
                | Branched
                | Tagged
                | Untagged
                | Tasked
                | Invited
                | Assigned
                | Exited
        )
    }
}

/// An outbox row's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxState {
    Pending,
    Delivered,
    Dead,
}

impl OutboxState {
    pub fn as_i16(self) -> i16 {
        match self {
            OutboxState::Pending => 0,
            OutboxState::Delivered => 1,
            OutboxState::Dead => 2,
        }
    }

    pub fn from_i16(v: i16) -> Option<OutboxState> {
        [
            OutboxState::Pending,
            OutboxState::Delivered,
            OutboxState::Dead,
        ]
        .into_iter()
        .find(|s| s.as_i16() == v)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OutboxState::Pending => "pending",
            OutboxState::Delivered => "delivered",
            OutboxState::Dead => "dead",
        }
    }
}

/// A staff task's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    Open,
    Claimed,
    Done,
}

impl TaskState {
    pub fn as_i16(self) -> i16 {
        match self {
            TaskState::Open => 0,
            TaskState::Claimed => 1,
            TaskState::Done => 2,
        }
    }

    pub fn from_i16(v: i16) -> Option<TaskState> {
        [TaskState::Open, TaskState::Claimed, TaskState::Done]
            .into_iter()
            .find(|s| s.as_i16() == v)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Open => "open",
            TaskState::Claimed => "claimed",
            TaskState::Done => "done",
        }
    }

    pub fn parse(s: &str) -> Option<TaskState> {
        [TaskState::Open, TaskState::Claimed, TaskState::Done]
            .into_iter()
            .find(|t| t.as_str() == s)
    }
}

/// A run's state beyond its columns, stored as JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunData {
    /// The variant arm each variant step gave this run: (step id, arm id).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arms: Vec<(String, String)>,
    /// The goal window closed without the goal (counted once).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
    /// Waiting for quiet hours to end before the current step (which runs again on waking),
    /// rather than in a wait step (after which the run moves on).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deferred: bool,
    /// The state to return to when a held run is resumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_from: Option<RunState>,
    /// History lines written so far (the next one is `hist + 1`). Kept by the caller.
    #[serde(default)]
    pub hist: i32,
    /// An identity of the fan (kind, value), to hang outcome events on. Kept by the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor: Option<(String, String)>,
    /// Steps that made an outbox row already: a step taken again (a loop) gets a key with
    /// its history line, so keys stay unique. Kept by the caller.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sent_steps: Vec<String>,
}

/// A run as the state machine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub id: i64,
    pub journey: String,
    pub version: i64,
    pub fan: i64,
    pub entry_key: String,
    pub state: RunState,
    /// The index of the step the run is at.
    pub step: usize,
    pub wake_at: Option<Millis>,
    pub entered_at: Millis,
    pub goal_by: Option<Millis>,
    pub updated_at: Millis,
    pub data: RunData,
}

impl Run {
    /// A run that has not entered yet: [`advance`] with [`Input::Enter`] starts it.
    pub fn new(id: i64, journey: &Journey, version: i64, fan: i64, entry_key: String) -> Run {
        Run {
            id,
            journey: journey.name.clone(),
            version,
            fan,
            entry_key,
            state: RunState::Waiting,
            step: 0,
            wake_at: None,
            entered_at: 0,
            goal_by: None,
            updated_at: 0,
            data: RunData::default(),
        }
    }
}

/// What happened to the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// The fan entered: the run starts at its first step.
    Enter,
    /// The run's timer fired.
    Wake,
    /// The fan reached the journey's goal.
    Goal,
    /// The journey was paused: the run holds.
    Hold,
    /// The journey was resumed: a held run takes up where it was.
    Resume,
    /// The fan was merged into `into`, which has an older open run of the same journey.
    MergedInto { fan: i64, run: i64 },
}

/// What the state machine asks of the fan. The caller answers from the live engine and the
/// store (and counts the sends of its own batch).
pub trait Fan {
    /// Whether the fan matches `expr` now, with `pending` tag changes (tag, added) made by
    /// this advance applied on top of what the engine knows.
    fn matches(&self, expr: &Expr, pending: &[(String, bool)]) -> bool;
    /// A template field (see [`crate::template::FIELDS`]).
    fn field(&self, name: &str) -> Option<String>;
    fn opted_out(&self) -> bool;
    /// Sends through `channel` to the fan today (tenant's local day), before this advance.
    fn sends_today(&self, channel: Channel) -> i32;
    /// The fan's Douyin conversation, before this advance.
    fn im(&self) -> ImState;
}

/// The tenant's rules for sends.
#[derive(Debug, Clone)]
pub struct Policy {
    pub tz: jiff::tz::TimeZone,
    pub quiet: QuietHours,
    /// Sends per fan per channel per local day (fan-reaching channels); `None`: no cap.
    pub daily_cap: Option<i32>,
    pub douyin: DouyinRules,
}

/// What the caller knows beside the fan.
pub struct Ctx<'a> {
    pub now: Millis,
    pub fan: &'a dyn Fan,
    pub policy: &'a Policy,
    /// Whether a channel is set up for the tenant.
    pub configured: &'a dyn Fn(Channel) -> bool,
    /// A variant step's arms' evidence so far, in the step's order.
    pub arms: &'a dyn Fn(&str) -> Vec<Arm>,
}

/// Something the caller carries out, in the same transaction as the run.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// An outbox row.
    Send {
        step: usize,
        channel: Channel,
        text: String,
        format: Format,
        variant: Option<String>,
        /// Douyin: a reply citing a message, or a proactive message.
        im: Option<ImDecision>,
        /// An `invite_group` step: the group invited to.
        invite: Option<Option<String>>,
    },
    /// A tag added (`on`) or removed.
    Tag { step: usize, tag: String, on: bool },
    /// The fan handed to lead routing: a lead for `team` (or an arrival on their open lead).
    Lead { step: usize, team: String },
    /// A staff task.
    Task {
        step: usize,
        team: String,
        text: String,
        due_at: Millis,
    },
    /// A variant's counters move.
    Variant {
        step: String,
        arm: String,
        sent: i64,
        converted: i64,
        failed: i64,
    },
}

/// A history line.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub at: Millis,
    pub step: Option<usize>,
    pub kind: RecordKind,
    pub reason: Option<Skip>,
    pub detail: Option<serde_json::Value>,
}

/// What one [`advance`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Advance {
    pub effects: Vec<Effect>,
    pub records: Vec<Record>,
    /// Steps executed (step records), for throughput counts.
    pub steps: usize,
}

/// When a task made without a `due` (a fallback, a lead, the task channel) is due.
pub const DEFAULT_TASK_DUE: Millis = 24 * 3_600_000;

/// The team of tasks made without one.
pub const DEFAULT_TEAM: &str = "default";

/// Whether a channel reaches the fan (and so obeys quiet hours, caps and opt-out). Staff
/// tasks do not.
pub fn reaches_fan(c: Channel) -> bool {
    !matches!(c, Channel::Task)
}

/// Moves `run` as far as it can go now (see the module docs). `run` is changed in place.
pub fn advance(j: &Journey, run: &mut Run, input: Input, cx: &Ctx<'_>) -> Advance {
    let mut m = Machine {
        j,
        run,
        cx,
        out: Advance::default(),
        pending: Vec::new(),
        sent: Vec::new(),
    };
    m.input(input);
    m.run.updated_at = cx.now;
    m.out
}

struct Machine<'a, 'r> {
    j: &'a Journey,
    run: &'r mut Run,
    cx: &'a Ctx<'a>,
    out: Advance,
    /// Tag changes made by this advance.
    pending: Vec<(String, bool)>,
    /// Sends made by this advance, per channel (for caps and quotas).
    sent: Vec<(Channel, bool)>,
}

impl Machine<'_, '_> {
    fn record(&mut self, step: Option<usize>, kind: RecordKind) {
        self.record_with(step, kind, None, None);
    }

    fn record_with(
        &mut self,
        step: Option<usize>,
        kind: RecordKind,
        reason: Option<Skip>,
        detail: Option<serde_json::Value>,
    ) {
        if kind.is_step() {
            self.out.steps += 1;
        }
        self.out.records.push(Record {
            at: self.cx.now,
            step,
            kind,
            reason,
            detail,
        });
    }

    fn input(&mut self, input: Input) {
        let now = self.cx.now;
        if self.run.state.is_final() {
            return;
        }
        match input {
            Input::Enter => {
                self.run.entered_at = now;
                self.run.goal_by = self.j.goal.as_ref().map(|g| now.saturating_add(g.within));
                self.record(None, RecordKind::Entered);
                self.run.step = 0;
                self.go();
            }
            Input::Wake => match self.run.state {
                RunState::AwaitingGoal => self.time_out_and_finish(),
                RunState::Waiting => {
                    self.run.wake_at = None;
                    if self.run.data.deferred {
                        self.run.data.deferred = false;
                    } else {
                        self.run.step += 1;
                    }
                    self.go();
                }
                // A held run's stale timer, or anything else: nothing to do.
                _ => {}
            },
            Input::Goal => {
                if self.run.goal_by.is_some_and(|by| now <= by) && self.j.goal.is_some() {
                    self.record(Some(self.run.step), RecordKind::Converted);
                    let arms = self.run.data.arms.clone();
                    for (step, arm) in arms {
                        self.out.effects.push(Effect::Variant {
                            step,
                            arm,
                            sent: 0,
                            converted: 1,
                            failed: 0,
                        });
                    }
                    self.finish(RunState::Converted);
                }
            }
            Input::Hold => {
                if self.run.state != RunState::Held {
                    self.run.data.held_from = Some(self.run.state);
                    self.run.state = RunState::Held;
                    self.record(Some(self.run.step), RecordKind::Held);
                }
            }
            Input::Resume => {
                if self.run.state == RunState::Held {
                    let back = self.run.data.held_from.take().unwrap_or(RunState::Waiting);
                    self.run.state = back;
                    self.record(Some(self.run.step), RecordKind::Resumed);
                    // Its timer may have passed while held: it fires now.
                    if self.run.wake_at.is_none_or(|w| w <= now) {
                        self.run.wake_at = Some(now);
                    }
                }
            }
            Input::MergedInto { fan, run } => {
                self.record_with(
                    Some(self.run.step),
                    RecordKind::Merged,
                    None,
                    Some(serde_json::json!({"into_fan": fan, "into_run": run})),
                );
                self.finish(RunState::Merged);
            }
        }
    }

    /// Runs steps from `run.step` until the run waits or ends.
    fn go(&mut self) {
        // A checked journey's loops pass a wait, so this bound is never reached; it keeps a
        // bug from spinning forever.
        let bound = self.j.steps.len() * 4 + 8;
        for _ in 0..bound {
            self.check_goal_window();
            let Some(step) = self.j.steps.get(self.run.step) else {
                return self.end_of_steps();
            };
            let i = self.run.step;
            match &step.kind {
                StepKind::Exit => {
                    self.record(Some(i), RecordKind::Exited);
                    return self.end_of_steps();
                }
                StepKind::Wait(w) => {
                    let until = match w {
                        Wait::For(d) => self.cx.now.saturating_add(*d),
                        Wait::Until(tod) => {
                            crate::policy::next_time_of_day(&self.cx.policy.tz, self.cx.now, *tod)
                        }
                    };
                    self.record_with(
                        Some(i),
                        RecordKind::Waiting,
                        None,
                        Some(serde_json::json!({"until": until})),
                    );
                    self.run.state = RunState::Waiting;
                    self.run.wake_at = Some(until);
                    self.run.data.deferred = false;
                    return;
                }
                StepKind::Branch {
                    cond,
                    then,
                    otherwise,
                } => {
                    let yes = self.cx.fan.matches(&cond.expr, &self.pending);
                    let to = if yes { *then } else { *otherwise };
                    self.record_with(
                        Some(i),
                        RecordKind::Branched,
                        None,
                        Some(serde_json::json!({"to": self.j.steps[to].id, "matched": yes})),
                    );
                    self.run.step = to;
                    continue;
                }
                StepKind::Tag(t) | StepKind::Untag(t) => {
                    let on = matches!(step.kind, StepKind::Tag(_));
                    self.pending.push((t.clone(), on));
                    self.out.effects.push(Effect::Tag {
                        step: i,
                        tag: t.clone(),
                        on,
                    });
                    let kind = if on {
                        RecordKind::Tagged
                    } else {
                        RecordKind::Untagged
                    };
                    self.record_with(Some(i), kind, None, Some(serde_json::json!({"tag": t})));
                }
                StepKind::Task { text, team, due } => {
                    let text = self.render_loose(text, None);
                    self.out.effects.push(Effect::Task {
                        step: i,
                        team: team.clone(),
                        text,
                        due_at: self.cx.now.saturating_add(*due),
                    });
                    self.record_with(
                        Some(i),
                        RecordKind::Tasked,
                        None,
                        Some(serde_json::json!({"team": team})),
                    );
                }
                StepKind::AssignLead { team } => {
                    self.out.effects.push(Effect::Lead {
                        step: i,
                        team: team.clone(),
                    });
                    self.record_with(
                        Some(i),
                        RecordKind::Assigned,
                        None,
                        Some(serde_json::json!({"team": team})),
                    );
                }
                StepKind::Send(s) => {
                    let (text, variant) = match &s.message {
                        Message::Text(t) => (t, None),
                        Message::Variants { arms, allocation } => {
                            let k = self.pick_arm(&step.id, arms, *allocation);
                            (&arms[k].text, Some(arms[k].id.clone()))
                        }
                    };
                    let default = s.default.as_deref();
                    let fallback = s.fallback.as_ref().map(|f| f.team.as_str());
                    if self
                        .send(
                            i, s.channel, text, default, s.format, variant, None, fallback,
                        )
                        .is_break()
                    {
                        return;
                    }
                }
                StepKind::InviteGroup {
                    group,
                    channel,
                    text,
                    default,
                } => {
                    let invite = Some(group.clone());
                    if self
                        .send(
                            i,
                            *channel,
                            text,
                            default.as_deref(),
                            Format::Text,
                            None,
                            invite,
                            None,
                        )
                        .is_break()
                    {
                        return;
                    }
                }
            }
            self.run.step += 1;
        }
        debug_assert!(false, "journey {} ran {bound} steps at once", self.j.name);
        self.end_of_steps();
    }

    /// A variant arm for this run at this step (the one it already has, if it came back).
    fn pick_arm(&mut self, step: &str, arms: &[crate::def::Variant], how: Allocation) -> usize {
        if let Some((_, arm)) = self.run.data.arms.iter().find(|(s, _)| s == step)
            && let Some(k) = arms.iter().position(|a| &a.id == arm)
        {
            return k;
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed(self.run.id, step));
        let k = match how {
            Allocation::Fixed => {
                let w: Vec<f64> = arms.iter().map(|a| a.weight).collect();
                variants::fixed(&w, &mut rng)
            }
            Allocation::Thompson => {
                let mut ev = (self.cx.arms)(step);
                ev.resize(arms.len(), Arm::default());
                variants::thompson(&ev, &mut rng)
            }
        }
        .min(arms.len() - 1);
        self.run
            .data
            .arms
            .push((step.to_string(), arms[k].id.clone()));
        self.out.effects.push(Effect::Variant {
            step: step.to_string(),
            arm: arms[k].id.clone(),
            sent: 1,
            converted: 0,
            failed: 0,
        });
        k
    }

    /// A send (or an invitation): checks the rules, then an outbox row, a fallback task or a
    /// skip. `Break` when the run waits for quiet hours.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        i: usize,
        channel: Channel,
        text: &crate::template::Template,
        default: Option<&str>,
        format: Format,
        variant: Option<String>,
        invite: Option<Option<String>>,
        fallback: Option<&str>,
    ) -> std::ops::ControlFlow<()> {
        let now = self.cx.now;
        let fan_bound = reaches_fan(channel);
        if fan_bound
            && self.j.respect_quiet_hours
            && let Some(end) = self.cx.policy.quiet.ends_after(&self.cx.policy.tz, now)
        {
            self.record_with(
                Some(i),
                RecordKind::Deferred,
                None,
                Some(serde_json::json!({"until": end})),
            );
            self.run.state = RunState::Waiting;
            self.run.wake_at = Some(end);
            self.run.data.deferred = true;
            return std::ops::ControlFlow::Break(());
        }
        let skip = |m: &mut Self, reason: Skip, detail: Option<serde_json::Value>| {
            m.record_with(Some(i), RecordKind::Skipped, Some(reason), detail);
        };
        let rendered = match text.render(&|f| self.cx.fan.field(f), default) {
            Ok(t) => t,
            Err(missing) => {
                skip(
                    self,
                    Skip::MissingField,
                    Some(serde_json::json!({"field": missing.0})),
                );
                return std::ops::ControlFlow::Continue(());
            }
        };
        if fan_bound && self.cx.fan.opted_out() {
            skip(self, Skip::OptedOut, None);
            return std::ops::ControlFlow::Continue(());
        }
        let mut im = None;
        let forbidden = if !(self.cx.configured)(channel) {
            Some(Skip::ChannelNotConfigured)
        } else if channel == Channel::WecomRobot && too_long(&rendered, format) {
            Some(Skip::TooLong)
        } else if fan_bound
            && self.cx.policy.daily_cap.is_some_and(|cap| {
                self.cx.fan.sends_today(channel) + self.sent_now(channel, None) >= cap
            })
        {
            Some(Skip::FrequencyCap)
        } else if channel == Channel::DouyinIm {
            if self.cx.fan.field("douyin_open_id").is_none() {
                Some(Skip::NoDouyinId)
            } else {
                let mut state = self.cx.fan.im();
                state.replies += self.sent_now(channel, Some(false));
                state.proactive_today += self.sent_now(channel, Some(true));
                match douyin_decide(&self.cx.policy.douyin, &state, now) {
                    ImDecision::Forbidden(why) => Some(why),
                    d => {
                        im = Some(d);
                        None
                    }
                }
            }
        } else {
            None
        };
        if let Some(why) = forbidden {
            match fallback {
                Some(team) if why != Skip::OptedOut => {
                    self.out.effects.push(Effect::Task {
                        step: i,
                        team: team.to_string(),
                        text: rendered,
                        due_at: now.saturating_add(DEFAULT_TASK_DUE),
                    });
                    self.record_with(
                        Some(i),
                        RecordKind::FellBack,
                        Some(why),
                        Some(serde_json::json!({"team": team})),
                    );
                }
                _ => skip(self, why, None),
            }
            return std::ops::ControlFlow::Continue(());
        }
        if channel == Channel::Task {
            let team = fallback.unwrap_or(DEFAULT_TEAM).to_string();
            self.out.effects.push(Effect::Task {
                step: i,
                team: team.clone(),
                text: rendered,
                due_at: now.saturating_add(DEFAULT_TASK_DUE),
            });
            self.record_with(
                Some(i),
                RecordKind::Tasked,
                None,
                Some(serde_json::json!({"team": team})),
            );
            return std::ops::ControlFlow::Continue(());
        }
        let proactive = matches!(im, Some(ImDecision::Proactive));
        self.sent.push((channel, proactive));
        let kind = if invite.is_some() {
            RecordKind::Invited
        } else {
            RecordKind::Sent
        };
        let mut detail = serde_json::Map::new();
        detail.insert("channel".into(), channel.as_str().into());
        if let Some(v) = &variant {
            detail.insert("variant".into(), v.clone().into());
        }
        if let Some(d) = &im {
            detail.insert(
                "scene".into(),
                match d {
                    ImDecision::Reply { .. } => "reply",
                    _ => "proactive",
                }
                .into(),
            );
        }
        self.out.effects.push(Effect::Send {
            step: i,
            channel,
            text: rendered,
            format,
            variant,
            im,
            invite,
        });
        self.record_with(Some(i), kind, None, Some(detail.into()));
        std::ops::ControlFlow::Continue(())
    }

    /// Sends through `channel` made by this advance (`proactive`: only Douyin proactive
    /// ones, or only replies).
    fn sent_now(&self, channel: Channel, proactive: Option<bool>) -> i32 {
        self.sent
            .iter()
            .filter(|(c, p)| *c == channel && proactive.is_none_or(|want| want == *p))
            .count() as i32
    }

    /// A staff task's text: fields the fan lacks are shown as `[field]` (a task is read by
    /// staff, never skipped for a hole).
    fn render_loose(&self, t: &crate::template::Template, default: Option<&str>) -> String {
        let fan = self.cx.fan;
        t.render(
            &|f| {
                fan.field(f)
                    .or_else(|| default.map(str::to_string))
                    .or_else(|| Some(format!("[{f}]")))
            },
            None,
        )
        .unwrap_or_default()
    }

    /// Records the goal window's end once, when a run is still going past it.
    fn check_goal_window(&mut self) {
        if let Some(by) = self.run.goal_by
            && self.cx.now > by
            && !self.run.data.timed_out
        {
            self.time_out();
        }
    }

    fn time_out(&mut self) {
        self.run.data.timed_out = true;
        self.record(Some(self.run.step), RecordKind::TimedOut);
        let arms = self.run.data.arms.clone();
        for (step, arm) in arms {
            self.out.effects.push(Effect::Variant {
                step,
                arm,
                sent: 0,
                converted: 0,
                failed: 1,
            });
        }
    }

    fn time_out_and_finish(&mut self) {
        if !self.run.data.timed_out {
            self.time_out();
        }
        self.finish(RunState::Completed);
    }

    /// Past the last step or at an exit: waits for the goal if its window is open.
    fn end_of_steps(&mut self) {
        match self.run.goal_by {
            Some(by) if !self.run.data.timed_out && self.cx.now < by => {
                self.run.state = RunState::AwaitingGoal;
                self.run.wake_at = Some(by);
            }
            _ => self.finish(RunState::Completed),
        }
    }

    fn finish(&mut self, state: RunState) {
        if state == RunState::Completed {
            self.record(Some(self.run.step), RecordKind::Completed);
        }
        self.run.state = state;
        self.run.wake_at = None;
        self.run.data.deferred = false;
    }
}

fn too_long(text: &str, format: Format) -> bool {
    text.len()
        > match format {
            Format::Text => crate::policy::WECOM_TEXT_BYTES,
            Format::Markdown => crate::policy::WECOM_MARKDOWN_BYTES,
        }
}

/// The seed of a run's draw at a step: the same run and step always draw the same.
fn seed(run: i64, step: &str) -> u64 {
    // FNV-1a over the run id and the step id: stable across builds and platforms.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in run.to_le_bytes().iter().chain(step.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::def::parse;

    /// 2026-12-01T10:00:00+08:00 (outside quiet hours in Asia/Shanghai).
    const T0: Millis = 1_796_090_400_000;
    const H: Millis = 3_600_000;

    #[derive(Default)]
    struct F {
        tags: Vec<String>,
        fields: Vec<(&'static str, &'static str)>,
        opted_out: bool,
        sends: i32,
        im: ImState,
    }

    impl Fan for F {
        fn matches(&self, expr: &Expr, pending: &[(String, bool)]) -> bool {
            // Only tag(...) leaves are used in these tests.
            match expr {
                Expr::Pred(siyu_domain::audience::Pred::Tag(t)) => pending
                    .iter()
                    .rev()
                    .find(|(p, _)| p == t)
                    .map_or_else(|| self.tags.contains(t), |(_, on)| *on),
                Expr::Not(x) => !self.matches(x, pending),
                _ => false,
            }
        }
        fn field(&self, name: &str) -> Option<String> {
            self.fields
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
        fn opted_out(&self) -> bool {
            self.opted_out
        }
        fn sends_today(&self, _: Channel) -> i32 {
            self.sends
        }
        fn im(&self) -> ImState {
            self.im.clone()
        }
    }

    fn policy() -> Policy {
        Policy {
            tz: jiff::tz::TimeZone::get("Asia/Shanghai").unwrap(),
            quiet: QuietHours::default_hours(),
            daily_cap: Some(3),
            douyin: DouyinRules::default(),
        }
    }

    fn go(j: &Journey, run: &mut Run, input: Input, fan: &F, now: Millis) -> Advance {
        go_with(j, run, input, fan, now, &|_| Vec::new())
    }

    fn go_with(
        j: &Journey,
        run: &mut Run,
        input: Input,
        fan: &F,
        now: Millis,
        arms: &dyn Fn(&str) -> Vec<Arm>,
    ) -> Advance {
        let p = policy();
        let cx = Ctx {
            now,
            fan,
            policy: &p,
            configured: &|_| true,
            arms,
        };
        advance(j, run, input, &cx)
    }

    fn kinds(a: &Advance) -> Vec<&'static str> {
        a.records.iter().map(|r| r.kind.as_str()).collect()
    }

    fn journey(steps: &str) -> Journey {
        let text = format!(
            "name = \"j\"\ntrigger = {{ event = \"follow\" }}\nreentry = \"always\"\n{steps}"
        );
        parse(&text, None).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    #[test]
    fn assign_lead_hands_the_fan_to_lead_routing() {
        let j = journey("[[steps]]\nid = \"lead\"\ntype = \"assign_lead\"\nteam = \"tmk\"\n");
        let mut run = Run::new(1, &j, 1, 7, "k".into());
        let a = go(&j, &mut run, Input::Enter, &F::default(), T0);
        assert_eq!(kinds(&a), ["entered", "assigned", "completed"]);
        assert!(matches!(&a.effects[..], [Effect::Lead { step: 0, team }] if team == "tmk"));
    }

    const FIVE: &str = r#"
[[steps]]
id = "t1"
type = "tag"
tag = "welcomed"
[[steps]]
id = "b"
type = "branch"
if = 'tag("welcomed")'
then = "s"
else = "out"
[[steps]]
id = "s"
type = "send"
channel = "webhook"
text = "hi {{fan_id}}"
[[steps]]
id = "t2"
type = "tag"
tag = "sent"
[[steps]]
id = "out"
type = "exit"
"#;

    #[test]
    fn five_steps_run_through_at_once_and_a_branch_sees_the_tag_just_added() {
        let j = journey(FIVE);
        let mut run = Run::new(1, &j, 1, 7, "k".into());
        let f = F {
            fields: vec![("fan_id", "7")],
            ..F::default()
        };
        let a = go(&j, &mut run, Input::Enter, &f, T0);
        assert_eq!(
            kinds(&a),
            [
                "entered",
                "tagged",
                "branched",
                "sent",
                "tagged",
                "exited",
                "completed"
            ]
        );
        assert_eq!(a.steps, 5);
        assert_eq!(run.state, RunState::Completed);
        assert_eq!(run.wake_at, None);
        let sends: Vec<_> = a
            .effects
            .iter()
            .filter_map(|e| match e {
                Effect::Send { text, channel, .. } => Some((text.as_str(), *channel)),
                _ => None,
            })
            .collect();
        assert_eq!(sends, [("hi 7", Channel::Webhook)]);
        // Every step record has the step it is about; one per step executed.
        assert!(
            a.records
                .iter()
                .filter(|r| r.kind.is_step())
                .all(|r| r.step.is_some())
        );
        // A final run takes no more input.
        let again = go(&j, &mut run, Input::Wake, &f, T0 + 1);
        assert!(again.records.is_empty() && again.effects.is_empty());
    }

    #[test]
    fn waits_are_timers_and_the_run_moves_on_when_they_fire() {
        let j = journey(
            r#"
[[steps]]
id = "w"
type = "wait"
for = "2h"
[[steps]]
id = "s"
type = "send"
channel = "webhook"
text = "later"
"#,
        );
        let mut run = Run::new(1, &j, 1, 7, "k".into());
        let f = F::default();
        let a = go(&j, &mut run, Input::Enter, &f, T0);
        assert_eq!(kinds(&a), ["entered", "waiting"]);
        assert_eq!(
            (run.state, run.wake_at, run.step),
            (RunState::Waiting, Some(T0 + 2 * H), 0)
        );
        let a = go(&j, &mut run, Input::Wake, &f, T0 + 2 * H);
        assert_eq!(kinds(&a), ["sent", "completed"]);
        assert_eq!(run.state, RunState::Completed);
    }

    #[test]
    fn quiet_hours_defer_a_send_to_their_end_unless_the_journey_says_not_to() {
        let j = journey(
            "[[steps]]\nid = \"s\"\ntype = \"send\"\nchannel = \"webhook\"\ntext = \"x\"\n",
        );
        // 23:00 in Shanghai: quiet until 08:00 the next morning.
        let night = T0 + 13 * H;
        let mut run = Run::new(1, &j, 1, 7, "k".into());
        let a = go(&j, &mut run, Input::Enter, &F::default(), night);
        assert_eq!(kinds(&a), ["entered", "deferred"]);
        assert_eq!(run.wake_at, Some(T0 + 22 * H));
        assert!(a.effects.is_empty());
        assert_eq!(a.steps, 0, "a deferral is not a step execution");
        let a = go(&j, &mut run, Input::Wake, &F::default(), T0 + 22 * H);
        assert_eq!(kinds(&a), ["sent", "completed"]);

        let mut loud = j.clone();
        loud.respect_quiet_hours = false;
        let mut run = Run::new(2, &loud, 1, 7, "k2".into());
        let a = go(&loud, &mut run, Input::Enter, &F::default(), night);
        assert_eq!(kinds(&a), ["entered", "sent", "completed"]);
    }

    #[test]
    fn rules_skip_with_a_reason_and_a_fallback_hands_the_fan_to_staff() {
        let send = |extra: &str| {
            journey(&format!(
                "[[steps]]\nid = \"s\"\ntype = \"send\"\nchannel = \"douyin_im\"\ntext = \"你好{{{{nickname}}}}\"\n{extra}"
            ))
        };
        let with_id = || F {
            fields: vec![("douyin_open_id", "o1"), ("nickname", "小王")],
            ..F::default()
        };
        let reason = |a: &Advance| a.records.iter().find_map(|r| r.reason).map(Skip::as_str);
        // Never wrote, never authorized: outside the reply window.
        let j = send("");
        let mut run = Run::new(1, &j, 1, 7, "k".into());
        let a = go(&j, &mut run, Input::Enter, &with_id(), T0);
        assert_eq!(reason(&a), Some("outside_reply_window"));
        assert!(a.effects.is_empty());
        // The same with a fallback: a task for the team, with the text.
        let j = send("fallback = \"task\"\nfallback_team = \"tmk\"\n");
        let mut run = Run::new(2, &j, 1, 7, "k".into());
        let a = go(&j, &mut run, Input::Enter, &with_id(), T0);
        assert_eq!(kinds(&a), ["entered", "fell_back", "completed"]);
        assert!(
            matches!(&a.effects[..], [Effect::Task { team, text, .. }] if team == "tmk" && text == "你好小王")
        );
        // A message an hour ago: a reply citing it.
        let mut f = with_id();
        f.im.last_in = Some((T0 - H, "c1".into(), "m1".into()));
        let mut run = Run::new(3, &j, 1, 7, "k".into());
        let a = go(&j, &mut run, Input::Enter, &f, T0);
        assert!(
            matches!(&a.effects[..], [Effect::Send { im: Some(ImDecision::Reply { conversation, message }), .. }]
            if conversation == "c1" && message == "m1")
        );
        // Opted out: never messaged, and no fallback either.
        f.opted_out = true;
        let mut run = Run::new(4, &j, 1, 7, "k".into());
        let a = go(&j, &mut run, Input::Enter, &f, T0);
        assert_eq!(reason(&a), Some("opted_out"));
        assert!(a.effects.is_empty());
        // The day's cap.
        let j = journey(
            "[[steps]]\nid = \"s\"\ntype = \"send\"\nchannel = \"webhook\"\ntext = \"x\"\n",
        );
        let f = F {
            sends: 3,
            ..F::default()
        };
        let mut run = Run::new(5, &j, 1, 7, "k".into());
        assert_eq!(
            reason(&go(&j, &mut run, Input::Enter, &f, T0)),
            Some("frequency_cap")
        );
        // No douyin_open_id.
        let j = send("");
        let mut run = Run::new(6, &j, 1, 7, "k".into());
        let f = F {
            fields: vec![("nickname", "小王")],
            ..F::default()
        };
        assert_eq!(
            reason(&go(&j, &mut run, Input::Enter, &f, T0)),
            Some("no_douyin_open_id")
        );
    }

    #[test]
    fn a_missing_field_skips_unless_there_is_a_default() {
        let j = journey(
            "[[steps]]\nid = \"s\"\ntype = \"send\"\nchannel = \"webhook\"\ntext = \"hi {{nickname}}\"\n",
        );
        let mut run = Run::new(1, &j, 1, 7, "k".into());
        let a = go(&j, &mut run, Input::Enter, &F::default(), T0);
        assert_eq!(a.records[1].reason, Some(Skip::MissingField));
        assert_eq!(
            a.records[1].detail,
            Some(serde_json::json!({"field": "nickname"}))
        );
        let j = journey(
            "[[steps]]\nid = \"s\"\ntype = \"send\"\nchannel = \"webhook\"\ntext = \"hi {{nickname}}\"\ndefault = \"朋友\"\n",
        );
        let mut run = Run::new(2, &j, 1, 7, "k".into());
        let a = go(&j, &mut run, Input::Enter, &F::default(), T0);
        assert!(matches!(&a.effects[..], [Effect::Send { text, .. }] if text == "hi 朋友"));
    }

    const GOAL: &str = r#"goal = { event = "order", within = "7d" }
[[steps]]
id = "s"
type = "send"
channel = "webhook"
variants = [{ id = "a", text = "A" }, { id = "b", text = "B" }]
[[steps]]
id = "w"
type = "wait"
for = "1d"
"#;

    #[test]
    fn a_goal_converts_once_and_credits_the_arm_a_window_closing_counts_against_it() {
        let j = journey(GOAL);
        let f = F::default();
        let mut run = Run::new(1, &j, 1, 7, "k".into());
        let a = go(&j, &mut run, Input::Enter, &f, T0);
        let arm = run.data.arms[0].1.clone();
        assert!(a.effects.contains(&Effect::Variant {
            step: "s".into(),
            arm: arm.clone(),
            sent: 1,
            converted: 0,
            failed: 0
        }));
        assert_eq!(run.goal_by, Some(T0 + 7 * 24 * H));
        let a = go(&j, &mut run, Input::Goal, &f, T0 + H);
        assert_eq!(kinds(&a), ["converted"]);
        assert_eq!(
            a.effects,
            [Effect::Variant {
                step: "s".into(),
                arm,
                sent: 0,
                converted: 1,
                failed: 0
            }]
        );
        assert_eq!(run.state, RunState::Converted);
        assert!(
            go(&j, &mut run, Input::Goal, &f, T0 + 2 * H)
                .records
                .is_empty()
        );

        // No goal: steps end, the run awaits it, the window closes.
        let mut run = Run::new(2, &j, 1, 7, "k".into());
        go(&j, &mut run, Input::Enter, &f, T0);
        let a = go(&j, &mut run, Input::Wake, &f, T0 + 24 * H);
        assert!(a.records.is_empty());
        assert_eq!(
            (run.state, run.wake_at),
            (RunState::AwaitingGoal, Some(T0 + 7 * 24 * H))
        );
        let a = go(&j, &mut run, Input::Wake, &f, T0 + 7 * 24 * H);
        assert_eq!(kinds(&a), ["timed_out", "completed"]);
        assert!(matches!(
            &a.effects[..],
            [Effect::Variant { failed: 1, .. }]
        ));
        // A goal after the window converts nothing.
        let mut run = Run::new(3, &j, 1, 7, "k".into());
        go(&j, &mut run, Input::Enter, &f, T0);
        assert!(
            go(&j, &mut run, Input::Goal, &f, T0 + 8 * 24 * H)
                .records
                .is_empty()
        );
    }

    #[test]
    fn a_run_draws_the_same_arm_again_and_thompson_follows_the_evidence() {
        let j = journey(GOAL);
        let f = F::default();
        let pick = |id: i64, arms: &dyn Fn(&str) -> Vec<Arm>| {
            let mut run = Run::new(id, &j, 1, 7, "k".into());
            go_with(&j, &mut run, Input::Enter, &f, T0, arms);
            run.data.arms[0].1.clone()
        };
        let none = |_: &str| Vec::new();
        for id in 0..20 {
            assert_eq!(pick(id, &none), pick(id, &none), "run {id}");
        }
        // b has converted far better: nearly every new run gets b.
        let strong = |_: &str| {
            vec![
                Arm {
                    converted: 3,
                    failed: 97,
                },
                Arm {
                    converted: 60,
                    failed: 40,
                },
            ]
        };
        let b = (0..200).filter(|id| pick(*id, &strong) == "b").count();
        assert!(b >= 190, "{b} of 200");
    }

    #[test]
    fn hold_and_resume_keep_the_run_where_it_was() {
        let j = journey(GOAL);
        let f = F::default();
        let mut run = Run::new(1, &j, 1, 7, "k".into());
        go(&j, &mut run, Input::Enter, &f, T0);
        assert_eq!(run.state, RunState::Waiting);
        go(&j, &mut run, Input::Hold, &f, T0 + 2 * 24 * H);
        assert_eq!(run.state, RunState::Held);
        // Its timer passed while it was held: it fires at once when resumed.
        let a = go(&j, &mut run, Input::Resume, &f, T0 + 3 * 24 * H);
        assert_eq!(kinds(&a), ["resumed"]);
        assert_eq!(
            (run.state, run.wake_at),
            (RunState::Waiting, Some(T0 + 3 * 24 * H))
        );
        go(&j, &mut run, Input::Wake, &f, T0 + 3 * 24 * H);
        assert_eq!(run.state, RunState::AwaitingGoal);
    }

    #[test]
    fn a_merged_run_ends_and_says_into_which() {
        let j = journey(GOAL);
        let mut run = Run::new(2, &j, 1, 8, "k".into());
        go(&j, &mut run, Input::Enter, &F::default(), T0);
        let a = go(
            &j,
            &mut run,
            Input::MergedInto { fan: 7, run: 1 },
            &F::default(),
            T0 + H,
        );
        assert_eq!(kinds(&a), ["merged"]);
        assert_eq!(
            a.records[0].detail,
            Some(serde_json::json!({"into_fan": 7, "into_run": 1}))
        );
        assert_eq!(run.state, RunState::Merged);
    }

    #[test]
    fn stored_codes_round_trip() {
        for s in RunState::ALL {
            assert_eq!(RunState::from_i16(s.as_i16()), Some(s));
        }
        for k in RecordKind::ALL {
            assert_eq!(RecordKind::from_i16(k.as_i16()), Some(k));
        }
        let data = RunData {
            arms: vec![("s".into(), "a".into())],
            anchor: Some(("phone".into(), "+8613800138000".into())),
            hist: 4,
            ..RunData::default()
        };
        let text = serde_json::to_string(&data).unwrap();
        assert_eq!(serde_json::from_str::<RunData>(&text).unwrap(), data);
        assert_eq!(
            serde_json::to_string(&RunData::default()).unwrap(),
            r#"{"hist":0}"#
        );
    }
}
