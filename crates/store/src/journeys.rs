//! Journeys as stored: definitions by version, runs with their timers and history, the
//! per-channel outbox, the staff task inbox, and the per-fan facts the channels' rules read
//! (opt-out, Douyin authorization and the latest incoming private message, sends per day).
//!
//! Everything a run's step changes is written by [`Journeys::commit_runs`] in **one
//! transaction**, with the journey worker's trigger cursor: the runs, their history, the
//! outbox rows and tasks they created, the variant counters and the fan facts. So a crash
//! either keeps a step with all it did or loses it with all it did, and the step is taken
//! again from the same trigger or timer after a restart. Ids of runs and outbox rows are
//! allocated by the one writer of the tenant (the journey worker of the node holding its
//! lease), from [`Journeys::journey_ids`]; task ids too, read at the commit under the lock
//! the lead worker's tasks (`crate::leads::LeadBatch::tasks`) take as well; an `entry_key` or an outbox `key` stored twice is
//! refused (the transaction fails with [`crate::StoreError::Corrupt`] naming the key), never
//! stored twice.
//!
//! Closed sets (run states, history kinds, outbox states, task states) are stored as the
//! small integers of `siyu-journey`'s enums' `as_i16`; this crate keeps them opaque.
//! Writes are fenced like every derived write (see [`crate::leases`]).

use siyu_domain::Millis;

use crate::{Result, TenantId};

/// A journey's current version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredJourney {
    pub name: String,
    pub version: i64,
    /// The TOML as applied.
    pub definition: String,
    pub paused: bool,
    /// When this version was applied.
    pub applied_at: Millis,
    /// When it was last paused or resumed (or applied).
    pub updated_at: Millis,
    /// The trigger stream's position when the journey was first applied: triggers at or
    /// before it start no run.
    pub starts_after: i64,
}

/// One run: a fan going through one version of a journey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRun {
    pub id: i64,
    pub journey: String,
    pub version: i64,
    pub fan: i64,
    /// Unique per tenant: the entry that started the run (journey, fan and the trigger's
    /// position or the schedule's day), so a trigger delivered twice starts one run.
    pub entry_key: String,
    /// `siyu_journey::run::RunState` as its `as_i16`.
    pub state: i16,
    /// The index of the step the run is at.
    pub step: i32,
    /// When its timer fires (a wait, quiet hours, a goal window); `None` without a timer.
    pub wake_at: Option<Millis>,
    pub entered_at: Millis,
    /// The goal's deadline, if the journey has a goal.
    pub goal_by: Option<Millis>,
    pub updated_at: Millis,
    /// `siyu-journey`'s extra run state as JSON (variant arms taken, flags); opaque here.
    pub data: String,
}

/// One line of a run's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRunEvent {
    pub run: i64,
    /// 1, 2, … within the run.
    pub n: i32,
    pub at: Millis,
    /// The step's id, if the line is about a step.
    pub step: Option<String>,
    /// `siyu_journey::run::RecordKind` as its `as_i16`.
    pub kind: i16,
    /// A skip's or failure's reason code (`outside_reply_window`, `opted_out`, …).
    pub reason: Option<String>,
    /// Anything else, as JSON (the variant, the branch taken, the fan merged into).
    pub detail: Option<String>,
}

/// An outbox row: one delivery to one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOutbox {
    pub id: i64,
    /// The channel's kind (`webhook`, `douyin_im`, `wecom_robot`, or an internal one).
    pub channel: String,
    pub run: i64,
    pub step: String,
    pub fan: i64,
    /// The idempotency key the channel sees; unique per tenant.
    pub key: String,
    /// What to send, as JSON (built when the step ran; credentials are added at send time).
    pub payload: String,
    /// 0 pending, 1 delivered, 2 dead (`siyu_journey`'s `OutboxState`).
    pub state: i16,
    pub attempts: i32,
    /// When the next attempt is due (pending rows).
    pub next_at: Millis,
    pub created_at: Millis,
    pub settled_at: Option<Millis>,
    /// The channel's last answer or error (status and body, cut to 2 KiB).
    pub answer: Option<String>,
}

/// What became of an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    Delivered {
        id: i64,
        at: Millis,
        answer: Option<String>,
    },
    /// Try again at `next_at`; `attempts` is the new count.
    Retry {
        id: i64,
        attempts: i32,
        next_at: Millis,
        answer: String,
    },
    Dead {
        id: i64,
        attempts: i32,
        at: Millis,
        answer: String,
    },
}

/// Which outbox rows to list.
#[derive(Debug, Clone, Default)]
pub struct OutboxFilter<'a> {
    pub state: Option<i16>,
    pub channel: Option<&'a str>,
    /// Rows of this journey's runs.
    pub journey: Option<&'a str>,
    pub fan: Option<i64>,
    pub limit: usize,
}

/// A staff task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTask {
    pub id: i64,
    pub team: String,
    pub text: String,
    pub fan: Option<i64>,
    /// The run and step that made it (none for a task made by hand).
    pub run: Option<i64>,
    pub step: Option<String>,
    /// 0 open, 1 claimed, 2 done (`siyu_journey`'s `TaskState`).
    pub state: i16,
    pub agent: Option<String>,
    pub outcome: Option<String>,
    pub created_at: Millis,
    pub due_at: Option<Millis>,
    pub updated_at: Millis,
}

/// Which tasks to list.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter<'a> {
    pub team: Option<&'a str>,
    pub agent: Option<&'a str>,
    pub state: Option<i16>,
    pub limit: usize,
}

/// A change to a task, applied only from the state it names (so two agents cannot both
/// claim one task).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskChange {
    /// open → claimed by `agent`.
    Claim { agent: String },
    /// open or claimed → done with an outcome; `agent` is kept if set, else this one.
    Done { agent: String, outcome: String },
}

/// A fan's facts the channels' rules read. One row per fan that has any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredFanState {
    pub fan: i64,
    /// Opted out of marketing sends (for good), when and why (`unsubscribe`, `im:退订`).
    pub opted_out_at: Option<Millis>,
    pub opt_out_reason: Option<String>,
    /// Authorized proactive private messages (Douyin `x_authorize`), and not withdrawn.
    pub authorized_at: Option<Millis>,
    /// The latest incoming private message: when, its conversation and message ids.
    pub im_in_at: Option<Millis>,
    pub im_conversation: Option<String>,
    pub im_message: Option<String>,
    /// Replies sent since that message.
    pub im_replies: i32,
    /// The last send through any channel (for `replied` outcomes), its run and step.
    pub last_send_at: Option<Millis>,
    pub last_send_run: Option<i64>,
    pub last_send_step: Option<String>,
}

/// Sends to a fan through a channel on one local day (for frequency caps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanSends {
    pub fan: i64,
    pub channel: String,
    /// Days since 1970-01-01 in the tenant's time zone.
    pub day: i32,
    pub count: i32,
}

/// A change to a variant's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariantDelta {
    pub journey: String,
    pub version: i64,
    pub step: String,
    pub arm: String,
    pub sent: i64,
    pub converted: i64,
    pub failed: i64,
}

/// A variant's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVariant {
    pub version: i64,
    pub step: String,
    pub arm: String,
    pub sent: i64,
    pub converted: i64,
    /// Runs that reached the end of the goal window without converting.
    pub failed: i64,
}

/// History lines of a journey's runs by version, step, kind and reason (the report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepCount {
    pub version: i64,
    pub step: Option<String>,
    pub kind: i16,
    pub reason: Option<String>,
    pub count: i64,
}

/// A journey's runs by version, state and current step (waiting counts in the report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunCount {
    pub version: i64,
    pub state: i16,
    pub step: i32,
    pub count: i64,
}

/// A journey's outbox rows by step and state (the report's delivered, pending, failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxCount {
    pub step: String,
    pub state: i16,
    pub count: i64,
}

/// The highest ids in use, to allocate from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JourneyIds {
    pub run: i64,
    pub outbox: i64,
    pub task: i64,
}

/// Everything one step of the journey worker changes, committed together.
#[derive(Debug, Clone, Default)]
pub struct RunBatch<'a> {
    /// Inserted; an `entry_key` already stored fails the batch.
    pub new_runs: &'a [StoredRun],
    /// Replaced by id: everything but what makes the run the run it is (its journey,
    /// version, `entry_key` and `entered_at`, which are kept). An id not stored fails the
    /// batch.
    pub updated_runs: &'a [StoredRun],
    pub history: &'a [StoredRunEvent],
    /// Inserted; a `key` already stored fails the batch.
    pub outbox: &'a [StoredOutbox],
    /// Inserted.
    pub tasks: &'a [StoredTask],
    /// Added to the counters (rows created at zero).
    pub variants: &'a [VariantDelta],
    /// Upserted whole, by fan.
    pub fan_states: &'a [StoredFanState],
    /// Added to the day's counts (rows created at zero).
    pub fan_sends: &'a [FanSends],
    /// The worker's trigger cursor, stored as by `TriggerLog::set_trigger_cursor`.
    pub cursor: Option<(&'a str, i64)>,
    pub now: Millis,
}

/// The journeys capability (see the module docs).
pub trait Journeys {
    /// Stores a new version of a journey (1 for a new name) and makes it current; whether it
    /// is paused, and where it starts (`starts_after`, taken from the first version), are
    /// kept. Returns the version.
    fn put_journey(
        &self,
        tenant: TenantId,
        name: &str,
        definition: &str,
        starts_after: i64,
        now: Millis,
    ) -> Result<i64>;

    /// The tenant's journeys at their current versions, by name.
    fn journeys(&self, tenant: TenantId) -> Result<Vec<StoredJourney>>;

    /// One version's definition (runs finish on the version they started).
    fn journey_version(&self, tenant: TenantId, name: &str, version: i64)
    -> Result<Option<String>>;

    /// Pauses or resumes a journey; `false` if there is none of that name.
    fn set_journey_paused(
        &self,
        tenant: TenantId,
        name: &str,
        paused: bool,
        now: Millis,
    ) -> Result<bool>;

    /// The highest run, outbox and task ids in use.
    fn journey_ids(&self, tenant: TenantId) -> Result<JourneyIds>;

    /// Commits a batch (see [`RunBatch`]) in one fenced transaction.
    fn commit_runs(&self, tenant: TenantId, batch: &RunBatch<'_>) -> Result<()>;

    /// Runs whose timer is due (`wake_at <= now`), earliest first, at most `limit`.
    fn due_runs(&self, tenant: TenantId, now: Millis, limit: usize) -> Result<Vec<StoredRun>>;

    /// The earliest timer, if any run has one.
    fn next_wake(&self, tenant: TenantId) -> Result<Option<Millis>>;

    /// The runs of these fans (all journeys); with `open_only`, only runs not finished
    /// (state below 100, see `siyu_journey::run::RunState`).
    fn runs_of(&self, tenant: TenantId, fans: &[i64], open_only: bool) -> Result<Vec<StoredRun>>;

    /// One run.
    fn run(&self, tenant: TenantId, id: i64) -> Result<Option<StoredRun>>;

    /// A run's history, in order.
    fn run_history(&self, tenant: TenantId, run: i64) -> Result<Vec<StoredRunEvent>>;

    /// A journey's history lines counted by version, step, kind and reason.
    fn step_counts(&self, tenant: TenantId, journey: &str) -> Result<Vec<StepCount>>;

    /// A journey's runs counted by version, state and step.
    fn run_counts(&self, tenant: TenantId, journey: &str) -> Result<Vec<RunCount>>;

    /// A journey's variant counters (all versions).
    fn variants(&self, tenant: TenantId, journey: &str) -> Result<Vec<StoredVariant>>;

    /// These fans' facts (fans without a row are left out).
    fn fan_states(&self, tenant: TenantId, fans: &[i64]) -> Result<Vec<StoredFanState>>;

    /// These fans' sends on `day`, by channel.
    fn fan_sends(&self, tenant: TenantId, fans: &[i64], day: i32) -> Result<Vec<FanSends>>;

    /// Pending rows of a channel due by `now`, by `next_at` then id, at most `limit`.
    fn outbox_due(
        &self,
        tenant: TenantId,
        channel: &str,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<StoredOutbox>>;

    /// The earliest `next_at` of a channel's pending rows.
    fn outbox_next_at(&self, tenant: TenantId, channel: &str) -> Result<Option<Millis>>;

    /// Records attempts' outcomes in one fenced transaction (a row no longer pending is left
    /// as it is; one outcome per row). A delivery leaves `attempts` as it was: it counts the
    /// attempts that failed. `outcomes` are rows inserted in the same transaction (the
    /// outcome events the settling reports, for the events lane), each skipped when its id or
    /// key is stored already: settling a repeat adds nothing twice.
    fn settle_outbox(
        &self,
        tenant: TenantId,
        settled: &[Settle],
        outcomes: &[StoredOutbox],
    ) -> Result<()>;

    /// Outbox rows matching a filter, newest first.
    fn outbox(&self, tenant: TenantId, filter: &OutboxFilter<'_>) -> Result<Vec<StoredOutbox>>;

    /// Dead rows back to pending, due at `now`, attempts reset (these ids, or all with
    /// `None`); returns how many.
    fn retry_dead(&self, tenant: TenantId, ids: Option<&[i64]>, now: Millis) -> Result<usize>;

    /// Tasks matching a filter, oldest first.
    fn tasks(&self, tenant: TenantId, filter: &TaskFilter<'_>) -> Result<Vec<StoredTask>>;

    /// One task.
    fn task(&self, tenant: TenantId, id: i64) -> Result<Option<StoredTask>>;

    /// Applies a change if the task is in the state it needs; returns the task after it, or
    /// `Ok(None)` when there is no such task. A change from the wrong state returns the task
    /// unchanged (the caller compares).
    fn update_task(
        &self,
        tenant: TenantId,
        id: i64,
        change: &TaskChange,
        now: Millis,
    ) -> Result<Option<StoredTask>>;

    /// Gives the held runs of a journey (state 3) a timer at `now`, so the worker resumes
    /// them; returns how many.
    fn wake_held(&self, tenant: TenantId, journey: &str, now: Millis) -> Result<usize>;

    /// A journey's outbox rows (its runs' sends, not the internal lanes) counted by step and
    /// state.
    fn outbox_counts(&self, tenant: TenantId, journey: &str) -> Result<Vec<OutboxCount>>;
}

/// Which unique key of a batch was already stored (or given twice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unique {
    EntryKey,
    OutboxKey,
}

impl Unique {
    /// The batch's keys of this kind.
    pub(crate) fn keys<'a>(self, batch: &'a RunBatch<'_>) -> Vec<&'a str> {
        match self {
            Unique::EntryKey => batch
                .new_runs
                .iter()
                .map(|r| r.entry_key.as_str())
                .collect(),
            Unique::OutboxKey => batch.outbox.iter().map(|o| o.key.as_str()).collect(),
        }
    }

    /// The error a batch fails with: the key given twice in it, else `stored` (the first of
    /// its keys the store already held), named.
    pub(crate) fn refused(self, batch: &RunBatch<'_>, stored: Option<String>) -> crate::StoreError {
        let keys = self.keys(batch);
        let mut seen = std::collections::HashSet::with_capacity(keys.len());
        let twice = keys
            .iter()
            .find(|k| !seen.insert(**k))
            .map(|k| k.to_string());
        let what = match self {
            Unique::EntryKey => "a run's entry key",
            Unique::OutboxKey => "an outbox key",
        };
        crate::StoreError::Corrupt(match (twice, stored) {
            (Some(k), _) => format!("{what} {k:?} is twice in one batch; nothing of it was stored"),
            (None, Some(k)) => {
                format!("{what} {k:?} is already stored; nothing of the batch was stored")
            }
            (None, None) => format!(
                "{what} (or an id) of the batch is already stored; nothing of it was stored"
            ),
        })
    }
}

/// The reports' rows in one order on both backends (PostgreSQL orders text by its collation,
/// SQLite by bytes): sorted here, by their keys, `None` first.
pub(crate) fn sort_step_counts(rows: &mut [StepCount]) {
    rows.sort_by(|a, b| {
        (a.version, &a.step, a.kind, &a.reason).cmp(&(b.version, &b.step, b.kind, &b.reason))
    });
}

pub(crate) fn sort_variants(rows: &mut [StoredVariant]) {
    rows.sort_by(|a, b| (a.version, &a.step, &a.arm).cmp(&(b.version, &b.step, &b.arm)));
}

pub(crate) fn sort_fan_sends(rows: &mut [FanSends]) {
    rows.sort_by(|a, b| (a.fan, &a.channel).cmp(&(b.fan, &b.channel)));
}
