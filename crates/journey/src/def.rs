//! A journey definition: the TOML other programs write (docs/journeys.md), parsed into a
//! checked [`Journey`]. Once a `Journey` exists it is valid: every `then`/`else` names a step,
//! every expression parses, every template field exists, every loop passes a wait. A refused
//! file names the line and the field ([`DefError`]) and nothing changes.
//!
//! ```toml
//! name = "welcome"
//! trigger = { event = "follow" }            # or { layer_entered = "favorable" },
//!                                           # { segment_entered = "复购潜力" },
//!                                           # { schedule = "09:30", segment = "NAME" }
//! filter = "has(douyin_open_id)"            # optional, the segment language, at entry
//! reentry = "once"                          # "once" | "always" | a duration such as "30d"
//! goal = { event = "order", within = "7d" } # optional: reaching it ends the run as converted
//! respect_quiet_hours = true                # default
//!
//! [[steps]]
//! id = "hello"
//! type = "send"       # send | wait | branch | tag | untag | invite_group | assign_lead | task | exit
//! channel = "webhook" # webhook | douyin_im | wecom_robot | task
//! text = "欢迎关注！{{nickname}}"
//! ```

use siyu_domain::audience::Expr;
use siyu_domain::{Layer, Millis};

use crate::duration::TimeOfDay;
use crate::template::Template;

/// Why a journey file was refused: where, which field, what is wrong. Nothing was stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("journey line {line}: {field}: {message}")]
pub struct DefError {
    /// 1-based line of the offending value (or of the table that lacks it).
    pub line: usize,
    /// The field's path: `trigger`, `steps[2].then`, `steps[0].variants[1].text`.
    pub field: String,
    /// A stable machine code (`unknown_step_type`, `unknown_step`, `cycle_without_wait`,
    /// `invalid_expression`, `unknown_channel`, `unknown_template_field`, `invalid_duration`,
    /// `duplicate_step`, `missing_field`, `unknown_field`, `invalid_journey`).
    pub code: &'static str,
    pub message: String,
}

/// A journey, checked. Steps run in order; a step moves to the next one unless it is a
/// `branch` (to `then` or `else`) or an `exit` (the run ends). Running past the last step
/// ends the run too.
#[derive(Debug, Clone, PartialEq)]
pub struct Journey {
    /// 1–64 letters, digits, `_` or `-` (any script).
    pub name: String,
    pub trigger: Trigger,
    /// Checked at entry, as the segment language's source and its parsed form.
    pub filter: Option<Condition>,
    pub reentry: Reentry,
    pub goal: Option<Goal>,
    /// Sends wait for quiet hours to end (default true).
    pub respect_quiet_hours: bool,
    /// At least one.
    pub steps: Vec<Step>,
}

/// What starts a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// An event of this type (a catalogue type or `x_…`), as its name.
    Event(String),
    /// The fan's live layer changed to this one.
    LayerEntered(Layer),
    /// The fan entered the saved segment of this name.
    SegmentEntered(String),
    /// Every day at this time of day (the tenant's time zone), every member of the saved
    /// segment.
    Schedule { at: TimeOfDay, segment: String },
}

/// A segment-language expression as written and as parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub source: String,
    pub expr: Expr,
}

/// Whether a fan may run a journey again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reentry {
    /// Once ever (per journey, across versions).
    Once,
    /// Every entry starts a run (at most one run active per fan and journey at a time).
    Always,
    /// Again once this long has passed since the last entry.
    After(Millis),
}

/// Reaching the goal ends the run as converted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Goal {
    /// An event type's name.
    pub event: String,
    /// Counted from entry.
    pub within: Millis,
}

/// One step.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Unique within the journey; with the run, the idempotency key.
    pub id: String,
    /// 1-based line of the step's `[[steps]]` header, for messages.
    pub line: usize,
    pub kind: StepKind,
}

/// Where a send goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    Webhook,
    DouyinIm,
    WecomRobot,
    Task,
}

impl Channel {
    pub const ALL: [Channel; 4] = [
        Channel::Webhook,
        Channel::DouyinIm,
        Channel::WecomRobot,
        Channel::Task,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Webhook => "webhook",
            Channel::DouyinIm => "douyin_im",
            Channel::WecomRobot => "wecom_robot",
            Channel::Task => "task",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// What a step does.
#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    /// A message to the fan through a channel.
    Send(Send),
    /// Wait `for` a duration, or `until` the next time of day (tenant time zone).
    Wait(Wait),
    /// To `then` if the fan matches `if`, else to `else`; both are step indexes.
    Branch {
        cond: Condition,
        then: usize,
        otherwise: usize,
    },
    Tag(String),
    Untag(String),
    /// Invite the fan to a fan group: an invitation message through `channel`, and the
    /// invitation recorded (issue 14's groups place the fan).
    InviteGroup {
        group: Option<String>,
        channel: Channel,
        text: Template,
        default: Option<String>,
    },
    /// Hand the fan to a team as a lead (a staff task for the team until lead routing lands).
    AssignLead { team: String },
    /// A staff task in the inbox.
    Task {
        text: Template,
        team: String,
        /// Due this long after the task is created.
        due: Millis,
    },
    /// End the run here.
    Exit,
}

/// A send step.
#[derive(Debug, Clone, PartialEq)]
pub struct Send {
    pub channel: Channel,
    pub message: Message,
    /// Fills any missing template field; without it a missing field skips the send with the
    /// reason `missing_field`.
    pub default: Option<String>,
    /// `markdown` for WeCom robots; `text` otherwise.
    pub format: Format,
    /// When the channel's rules forbid the send: a staff task instead (`fallback = "task"`),
    /// for `fallback_team` (default `"default"`).
    pub fallback: Option<Fallback>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Markdown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    pub team: String,
}

/// One text, or variants allocated between fans.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Text(Template),
    Variants {
        arms: Vec<Variant>,
        allocation: Allocation,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// Unique within the step.
    pub id: String,
    pub text: Template,
    /// For `allocation = "fixed"` (default 1); ignored by Thompson sampling.
    pub weight: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocation {
    /// Thompson sampling on the journey's goal (needs a goal).
    Thompson,
    /// By the arms' weights.
    Fixed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    For(Millis),
    Until(TimeOfDay),
}

impl Journey {
    /// The index of the step with this id.
    pub fn step_index(&self, id: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.id == id)
    }
}

/// The fields a template may name (see [`crate::template`]).
pub use crate::template::FIELDS;

/// Parses and checks a journey file. `known_segments` are the tenant's saved segments' names
/// (a `segment_entered` or `schedule` trigger must name one); `None` skips that check (a
/// file checked offline).
pub fn parse(text: &str, known_segments: Option<&[String]>) -> Result<Journey, DefError> {
    let _ = (text, known_segments);
    todo!("issue 13: the journey parser")
}
