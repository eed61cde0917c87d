//! A journey definition: the TOML other programs write (docs/journeys.md), parsed into a
//! checked [`Journey`]. Once a `Journey` exists it is valid: every `then`/`else` names a step,
//! every expression parses, every template field exists, every loop passes a wait. A refused
//! file names the line and the field ([`DefError`]) and nothing changes.
//!
//! The file is walked as toml's spanned tables rather than deserialized with serde, so that
//! every value keeps its line, a field's path (`steps[3].variants[1].text`) is built as the
//! walk descends, and the keys a table may hold depend on its step `type` — a key a step
//! does not take is refused like a typo, never ignored. Checks that need the whole file
//! (`then`/`else` targets, loops without a wait) run once every step is read.
//!
//! ```toml
//! name = "welcome"
//! trigger = { event = "follow" }            # or { layer_entered = "favorable" },
//!                                           # { segment_entered = "复购潜力" },
//!                                           # { schedule = "09:30", segment = "NAME" }
//! filter = "has(douyin_open_id)"            # optional, the segment language, at entry
//! reentry = "once"                          # "once" (default) | "always" | "30d"
//! goal = { event = "order", within = "7d" } # optional: reaching it ends the run as converted
//! respect_quiet_hours = true                # default
//!
//! [[steps]]
//! id = "hello"
//! type = "send"       # send | wait | branch | tag | untag | invite_group | assign_lead | task | exit
//! channel = "webhook" # webhook | douyin_im | wecom_robot | task
//! text = "欢迎关注！{{nickname}}"
//! ```

use siyu_domain::audience::{self, Expr};
use siyu_domain::event_type::{CatalogueType, CustomName, TypeName, TypeNameError};
use siyu_domain::suggest::did_you_mean;
use siyu_domain::{Layer, Millis};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::duration::{self, TimeOfDay};
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
    /// `invalid_expression`, `unknown_channel`, `unknown_template_field`, `invalid_template`,
    /// `invalid_duration` (durations and times of day), `unknown_segment`, `duplicate_step`,
    /// `missing_field`, `unknown_field`, `invalid_journey`). A TOML syntax error is
    /// `invalid_journey` with an empty `field`.
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
    AssignLead {
        team: String,
    },
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
    let doc = DeTable::parse(text).map_err(|e| DefError {
        line: e.span().map(|s| line_of(text, s.start)).unwrap_or(1),
        field: String::new(),
        code: "invalid_journey",
        message: e.message().trim().to_string(),
    })?;
    let top = Fields {
        text,
        table: doc.get_ref(),
        path: String::new(),
        line: 1,
    };
    top.only(TOP_FIELDS)?;

    let (name, line) = top.required_str("name")?;
    check_name(name).map_err(|m| err(line, "name", "invalid_journey", m))?;

    let trigger = top.table("trigger")?.ok_or_else(|| {
        top.missing(
            "trigger",
            format!("a journey needs a trigger: {TRIGGER_FORMS}"),
        )
    })?;
    let trigger = trigger_of(&trigger, known_segments)?;
    let filter = match top.str("filter")? {
        Some((source, line)) => Some(condition(source, line, "filter")?),
        None => None,
    };
    let reentry = match top.str("reentry")? {
        Some((s, line)) => reentry(s).map_err(|(code, m)| err(line, "reentry", code, m))?,
        // The cautious reading of a file that does not say: a fan gets the journey once.
        None => Reentry::Once,
    };
    let goal = match top.table("goal")? {
        Some(t) => Some(goal(&t)?),
        None => None,
    };
    let respect_quiet_hours = top.bool("respect_quiet_hours")?.unwrap_or(true);
    let steps = steps(&top, goal.is_some())?;
    Ok(Journey {
        name: name.to_string(),
        trigger,
        filter,
        reentry,
        goal,
        respect_quiet_hours,
        steps,
    })
}

/// The step types, as files write them.
pub const STEP_TYPES: [&str; 9] = [
    "send",
    "wait",
    "branch",
    "tag",
    "untag",
    "invite_group",
    "assign_lead",
    "task",
    "exit",
];

impl StepKind {
    /// The step's `type` as a file writes it (one of [`STEP_TYPES`]).
    pub fn type_name(&self) -> &'static str {
        match self {
            StepKind::Send(_) => "send",
            StepKind::Wait(_) => "wait",
            StepKind::Branch { .. } => "branch",
            StepKind::Tag(_) => "tag",
            StepKind::Untag(_) => "untag",
            StepKind::InviteGroup { .. } => "invite_group",
            StepKind::AssignLead { .. } => "assign_lead",
            StepKind::Task { .. } => "task",
            StepKind::Exit => "exit",
        }
    }
}

const TOP_FIELDS: &[&str] = &[
    "name",
    "trigger",
    "filter",
    "reentry",
    "goal",
    "respect_quiet_hours",
    "steps",
];

/// The longest name, id, tag or team.
const MAX_NAME_CHARS: usize = 64;

fn err(
    line: usize,
    field: impl Into<String>,
    code: &'static str,
    message: impl Into<String>,
) -> DefError {
    DefError {
        line,
        field: field.into(),
        code,
        message: message.into(),
    }
}

/// The 1-based line of a byte offset. Counted in bytes, so an offset inside a character
/// cannot panic.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// One table of the file with where it is: its path for messages (`""` at the top,
/// `steps[2]`, `trigger`) and the line a missing field is reported on.
struct Fields<'t, 'i> {
    text: &'t str,
    table: &'t DeTable<'i>,
    path: String,
    line: usize,
}

type Value<'i> = Spanned<DeValue<'i>>;

impl<'t, 'i> Fields<'t, 'i> {
    fn path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn line(&self, v: &Value<'_>) -> usize {
        line_of(self.text, v.span().start)
    }

    /// Refuses any key not in `allowed`, the first in the file first, so a typo is never
    /// silently ignored.
    fn only(&self, allowed: &[&str]) -> Result<(), DefError> {
        let stray = self
            .table
            .iter()
            .filter(|(k, _)| !allowed.contains(&k.get_ref().as_ref()))
            .min_by_key(|(k, _)| k.span().start);
        match stray {
            None => Ok(()),
            Some((k, _)) => {
                let key = k.get_ref().as_ref();
                let message = format!(
                    "unknown field \"{key}\"; expected one of {}{}",
                    allowed.join(", "),
                    did_you_mean(key, allowed.iter().copied())
                );
                Err(err(
                    line_of(self.text, k.span().start),
                    self.path(key),
                    "unknown_field",
                    message,
                ))
            }
        }
    }

    fn get(&self, key: &str) -> Option<&'t Value<'i>> {
        self.table.get(key)
    }

    fn missing(&self, key: &str, message: impl Into<String>) -> DefError {
        err(self.line, self.path(key), "missing_field", message)
    }

    fn wrong_type(&self, key: &str, v: &Value<'_>, expected: &str) -> DefError {
        err(
            self.line(v),
            self.path(key),
            "invalid_journey",
            format!("expected {expected}, found {}", v.get_ref().type_str()),
        )
    }

    /// A string field and the line of its value.
    fn str(&self, key: &str) -> Result<Option<(&'t str, usize)>, DefError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.get_ref() {
                DeValue::String(s) => Ok(Some((s.as_ref(), self.line(v)))),
                _ => Err(self.wrong_type(key, v, "a string")),
            },
        }
    }

    fn required_str(&self, key: &str) -> Result<(&'t str, usize), DefError> {
        self.str(key)?
            .ok_or_else(|| self.missing(key, format!("\"{key}\" is required here")))
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, DefError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.get_ref() {
                DeValue::Boolean(b) => Ok(Some(*b)),
                _ => Err(self.wrong_type(key, v, "true or false")),
            },
        }
    }

    fn table(&self, key: &str) -> Result<Option<Fields<'t, 'i>>, DefError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.get_ref() {
                DeValue::Table(t) => Ok(Some(Fields {
                    text: self.text,
                    table: t,
                    path: self.path(key),
                    line: self.line(v),
                })),
                _ => Err(self.wrong_type(key, v, "a table such as { event = \"order\" }")),
            },
        }
    }

    /// An array of tables (`[[steps]]` or `[{ … }, …]`), each with its path and line.
    fn tables(&self, key: &str) -> Result<Option<Vec<Fields<'t, 'i>>>, DefError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let DeValue::Array(items) = v.get_ref() else {
            return Err(self.wrong_type(key, v, "an array of tables"));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let path = format!("{}[{i}]", self.path(key));
                match item.get_ref() {
                    DeValue::Table(t) => Ok(Fields {
                        text: self.text,
                        table: t,
                        path,
                        line: self.line(item),
                    }),
                    other => Err(err(
                        self.line(item),
                        path,
                        "invalid_journey",
                        format!("expected a table, found {}", other.type_str()),
                    )),
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// A number (integer or float) and the line of its value.
    fn number(&self, key: &str) -> Result<Option<(f64, usize)>, DefError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let n = match v.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                .ok()
                .map(|n| n as f64),
            DeValue::Float(f) => f.as_str().parse::<f64>().ok(),
            _ => return Err(self.wrong_type(key, v, "a number")),
        };
        match n {
            Some(n) => Ok(Some((n, self.line(v)))),
            None => Err(self.wrong_type(key, v, "a number")),
        }
    }

    /// A template field: parsed, its errors placed on the value's line.
    fn template(&self, key: &str) -> Result<Option<Template>, DefError> {
        let Some((s, line)) = self.str(key)? else {
            return Ok(None);
        };
        if s.trim().is_empty() {
            return Err(err(
                line,
                self.path(key),
                "invalid_journey",
                "the text is empty",
            ));
        }
        Template::parse(s).map(Some).map_err(|e| {
            err(
                line,
                self.path(key),
                e.code,
                format!("column {}: {}", e.column, e.message),
            )
        })
    }

    fn required_template(&self, key: &str) -> Result<Template, DefError> {
        self.template(key)?
            .ok_or_else(|| self.missing(key, format!("\"{key}\" is required for this step")))
    }

    fn duration(&self, key: &str) -> Result<Option<Millis>, DefError> {
        match self.str(key)? {
            None => Ok(None),
            Some((s, line)) => duration::parse(s)
                .map(Some)
                .map_err(|m| err(line, self.path(key), "invalid_duration", m)),
        }
    }

    fn channel(&self, key: &str) -> Result<Option<Channel>, DefError> {
        let Some((s, line)) = self.str(key)? else {
            return Ok(None);
        };
        Channel::parse(s).map(Some).ok_or_else(|| {
            let names = Channel::ALL.map(Channel::as_str);
            err(
                line,
                self.path(key),
                "unknown_channel",
                format!(
                    "unknown channel \"{s}\"; expected one of {}{}",
                    names.join(", "),
                    did_you_mean(s, names)
                ),
            )
        })
    }

    /// A short label (a tag, a team, a group): 1–64 characters, no control characters.
    fn label(&self, key: &str) -> Result<Option<String>, DefError> {
        let Some((s, line)) = self.str(key)? else {
            return Ok(None);
        };
        let n = s.chars().count();
        if !(1..=MAX_NAME_CHARS).contains(&n) || s.chars().any(char::is_control) {
            return Err(err(
                line,
                self.path(key),
                "invalid_journey",
                format!(
                    "\"{key}\" must be 1 to {MAX_NAME_CHARS} characters without control characters"
                ),
            ));
        }
        Ok(Some(s.to_string()))
    }

    fn required_label(&self, key: &str) -> Result<String, DefError> {
        self.label(key)?
            .ok_or_else(|| self.missing(key, format!("\"{key}\" is required for this step")))
    }
}

/// A journey's name, a step's or a variant's id: 1–64 letters (any script), digits, `_` or
/// `-`, so it can sit in a URL, a log line and an idempotency key unquoted.
/// Names a journey cannot take: they are paths beside the journeys' own in the HTTP API
/// (`/api/journeys/policy`).
pub const RESERVED_NAMES: &[&str] = &["policy"];

fn check_name(s: &str) -> Result<(), String> {
    if RESERVED_NAMES.contains(&s) {
        return Err(format!(
            "\"{s}\" is reserved (it names the journeys' policy in the API); choose another name"
        ));
    }
    let n = s.chars().count();
    if (1..=MAX_NAME_CHARS).contains(&n)
        && s.chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
    {
        Ok(())
    } else {
        Err(format!(
            "\"{s}\" must be 1 to {MAX_NAME_CHARS} letters, digits, \"_\" or \"-\""
        ))
    }
}

fn condition(source: &str, line: usize, field: &str) -> Result<Condition, DefError> {
    audience::parse(source)
        .map(|expr| Condition {
            source: source.to_string(),
            expr,
        })
        .map_err(|e| {
            err(
                line,
                field,
                "invalid_expression",
                format!("column {}: {}", e.column, e.message),
            )
        })
}

/// An event type's name: a catalogue type or `x_` + a custom name.
fn event_type(f: &Fields<'_, '_>, key: &str) -> Result<String, DefError> {
    let (s, line) = f.required_str(key)?;
    match s.parse::<TypeName>() {
        Ok(_) => Ok(s.to_string()),
        Err(TypeNameError::BadCustomName) => Err(err(
            line,
            f.path(key),
            "invalid_journey",
            format!(
                "\"{s}\": a custom event type is x_ and 1 to {} letters, digits or _",
                CustomName::MAX_CHARS
            ),
        )),
        Err(TypeNameError::Unknown) => Err(err(
            line,
            f.path(key),
            "invalid_journey",
            format!(
                "unknown event type \"{s}\"; expected a catalogue type (follow, order, …) or x_ and a custom name{}",
                did_you_mean(s, CatalogueType::ALL.iter().map(|t| t.as_str()))
            ),
        )),
    }
}

const TRIGGER_KINDS: [&str; 4] = ["event", "layer_entered", "segment_entered", "schedule"];

const TRIGGER_FORMS: &str = "{ event = \"follow\" }, { layer_entered = \"favorable\" }, { segment_entered = \"NAME\" } or { schedule = \"09:30\", segment = \"NAME\" }";

fn trigger_of(t: &Fields<'_, '_>, known_segments: Option<&[String]>) -> Result<Trigger, DefError> {
    t.only(&[
        "event",
        "layer_entered",
        "segment_entered",
        "schedule",
        "segment",
    ])?;
    let kinds: Vec<&str> = TRIGGER_KINDS
        .into_iter()
        .filter(|k| t.get(k).is_some())
        .collect();
    let kind = match kinds[..] {
        [k] => k,
        [] => {
            return Err(err(
                t.line,
                "trigger",
                "missing_field",
                format!("a trigger is one of {TRIGGER_FORMS}"),
            ));
        }
        _ => {
            return Err(err(
                t.line,
                "trigger",
                "invalid_journey",
                format!("a trigger is one kind, not {}", kinds.join(" and ")),
            ));
        }
    };
    if let Some(v) = t.get("segment")
        && kind != "schedule"
    {
        return Err(err(
            t.line(v),
            "trigger.segment",
            "invalid_journey",
            "\"segment\" goes with \"schedule\" only",
        ));
    }
    let segment = |key: &str| -> Result<String, DefError> {
        let (s, line) = t.required_str(key)?;
        match known_segments {
            Some(known) if !known.iter().any(|k| k == s) => Err(err(
                line,
                t.path(key),
                "unknown_segment",
                format!(
                    "no saved segment is named \"{s}\"{}",
                    did_you_mean(s, known.iter().map(String::as_str))
                ),
            )),
            _ if s.is_empty() => Err(err(
                line,
                t.path(key),
                "invalid_journey",
                "the segment's name is empty",
            )),
            _ => Ok(s.to_string()),
        }
    };
    Ok(match kind {
        "event" => Trigger::Event(event_type(t, "event")?),
        "layer_entered" => {
            let (s, line) = t.required_str("layer_entered")?;
            let layer = s.parse::<Layer>().map_err(|()| {
                let names = Layer::ALL.map(Layer::as_str);
                err(
                    line,
                    "trigger.layer_entered",
                    "invalid_journey",
                    format!(
                        "unknown layer \"{s}\"; expected one of {} (or 潜在粉丝, 路人粉丝, 好感粉丝, 真爱粉丝){}",
                        names.join(", "),
                        did_you_mean(s, names)
                    ),
                )
            })?;
            Trigger::LayerEntered(layer)
        }
        "segment_entered" => Trigger::SegmentEntered(segment("segment_entered")?),
        _ => {
            let (s, line) = t.required_str("schedule")?;
            let at = TimeOfDay::parse(s)
                .map_err(|m| err(line, "trigger.schedule", "invalid_duration", m))?;
            let segment = if t.get("segment").is_some() {
                segment("segment")?
            } else {
                return Err(t.missing(
                    "segment",
                    "a schedule runs for the members of a saved segment: segment = \"NAME\"",
                ));
            };
            Trigger::Schedule { at, segment }
        }
    })
}

/// `(code, message)` for a refused value.
fn reentry(s: &str) -> Result<Reentry, (&'static str, String)> {
    match s {
        "once" => Ok(Reentry::Once),
        "always" => Ok(Reentry::Always),
        _ if s.starts_with(|c: char| c.is_ascii_digit()) => duration::parse(s)
            .map(Reentry::After)
            .map_err(|m| ("invalid_duration", m)),
        _ => Err((
            "invalid_journey",
            format!(
                "\"{s}\" is not a reentry; expected \"once\", \"always\" or a duration such as \"30d\"{}",
                did_you_mean(s, ["once", "always"])
            ),
        )),
    }
}

fn goal(t: &Fields<'_, '_>) -> Result<Goal, DefError> {
    t.only(&["event", "within"])?;
    let event = event_type(t, "event")?;
    let within = t.duration("within")?.ok_or_else(|| {
        t.missing(
            "within",
            "a goal says how long a fan has to reach it, counted from entry: within = \"7d\"",
        )
    })?;
    Ok(Goal { event, within })
}

/// A `then`/`else` waiting for every step's id to be known.
struct Jump {
    step: usize,
    then: (String, usize),
    otherwise: (String, usize),
}

fn steps(top: &Fields<'_, '_>, has_goal: bool) -> Result<Vec<Step>, DefError> {
    let tables = top
        .tables("steps")?
        .ok_or_else(|| top.missing("steps", "a journey needs at least one [[steps]]"))?;
    if tables.is_empty() {
        let line = top.get("steps").map(|v| top.line(v)).unwrap_or(1);
        return Err(err(
            line,
            "steps",
            "invalid_journey",
            "a journey needs at least one step",
        ));
    }
    let mut steps: Vec<Step> = Vec::with_capacity(tables.len());
    let mut jumps = Vec::new();
    for (i, t) in tables.iter().enumerate() {
        let (id, id_line) = t.required_str("id")?;
        check_name(id).map_err(|m| err(id_line, t.path("id"), "invalid_journey", m))?;
        if let Some(first) = steps.iter().find(|s| s.id == id) {
            return Err(err(
                id_line,
                t.path("id"),
                "duplicate_step",
                format!(
                    "a step \"{id}\" is already defined on line {}; ids are unique within a journey",
                    first.line
                ),
            ));
        }
        let (kind, kind_line) = t.required_str("type")?;
        let kind = match kind {
            "send" => send(t, has_goal)?,
            "wait" => wait(t)?,
            "branch" => {
                t.only(&["id", "type", "if", "then", "else"])?;
                let (source, line) = t.required_str("if")?;
                let cond = condition(source, line, &t.path("if"))?;
                let target = |key: &str| t.required_str(key).map(|(s, line)| (s.to_string(), line));
                jumps.push(Jump {
                    step: i,
                    then: target("then")?,
                    otherwise: target("else")?,
                });
                // Resolved once every id is known; a later step may be the target.
                StepKind::Branch {
                    cond,
                    then: usize::MAX,
                    otherwise: usize::MAX,
                }
            }
            "tag" | "untag" => {
                t.only(&["id", "type", "tag"])?;
                let tag = t.required_label("tag")?;
                if kind == "tag" {
                    StepKind::Tag(tag)
                } else {
                    StepKind::Untag(tag)
                }
            }
            "invite_group" => {
                t.only(&["id", "type", "group", "channel", "text", "default"])?;
                StepKind::InviteGroup {
                    group: t.label("group")?,
                    channel: t.channel("channel")?.unwrap_or(Channel::DouyinIm),
                    text: t.required_template("text")?,
                    default: t.str("default")?.map(|(s, _)| s.to_string()),
                }
            }
            "assign_lead" => {
                t.only(&["id", "type", "team"])?;
                StepKind::AssignLead {
                    team: t.required_label("team")?,
                }
            }
            "task" => {
                t.only(&["id", "type", "text", "team", "due"])?;
                StepKind::Task {
                    text: t.required_template("text")?,
                    team: t.required_label("team")?,
                    due: t.duration("due")?.unwrap_or(DEFAULT_TASK_DUE),
                }
            }
            "exit" => {
                t.only(&["id", "type"])?;
                StepKind::Exit
            }
            other => {
                return Err(err(
                    kind_line,
                    t.path("type"),
                    "unknown_step_type",
                    format!(
                        "unknown step type \"{other}\"; expected one of {}{}",
                        STEP_TYPES.join(", "),
                        did_you_mean(other, STEP_TYPES)
                    ),
                ));
            }
        };
        steps.push(Step {
            id: id.to_string(),
            line: t.line,
            kind,
        });
    }
    for j in jumps {
        let resolve = |(name, line): &(String, usize), key: &str| {
            steps.iter().position(|s| s.id == *name).ok_or_else(|| {
                err(
                    *line,
                    format!("steps[{}].{key}", j.step),
                    "unknown_step",
                    format!(
                        "no step has the id \"{name}\"{}",
                        did_you_mean(name, steps.iter().map(|s| s.id.as_str()))
                    ),
                )
            })
        };
        let (then_to, else_to) = (resolve(&j.then, "then")?, resolve(&j.otherwise, "else")?);
        if let StepKind::Branch {
            then, otherwise, ..
        } = &mut steps[j.step].kind
        {
            *then = then_to;
            *otherwise = else_to;
        }
    }
    check_loops(&steps)?;
    Ok(steps)
}

/// A task is due a day after it is created unless the step says otherwise.
const DEFAULT_TASK_DUE: Millis = 24 * 3_600_000;

fn wait(t: &Fields<'_, '_>) -> Result<StepKind, DefError> {
    t.only(&["id", "type", "for", "until"])?;
    if let (Some(_), Some(v)) = (t.get("for"), t.get("until")) {
        return Err(err(
            t.line(v),
            t.path("until"),
            "invalid_journey",
            "a wait is either for a duration or until a time of day, not both",
        ));
    }
    if let Some(ms) = t.duration("for")? {
        return Ok(StepKind::Wait(Wait::For(ms)));
    }
    match t.str("until")? {
        Some((s, line)) => TimeOfDay::parse(s)
            .map(|at| StepKind::Wait(Wait::Until(at)))
            .map_err(|m| err(line, t.path("until"), "invalid_duration", m)),
        None => Err(t.missing(
            "for",
            "a wait needs for = \"2h\" (a duration) or until = \"09:00\" (the next time of day)",
        )),
    }
}

fn send(t: &Fields<'_, '_>, has_goal: bool) -> Result<StepKind, DefError> {
    t.only(&[
        "id",
        "type",
        "channel",
        "text",
        "variants",
        "allocation",
        "default",
        "format",
        "fallback",
        "fallback_team",
    ])?;
    let channel = t.channel("channel")?.ok_or_else(|| {
        t.missing(
            "channel",
            "a send needs a channel: webhook, douyin_im, wecom_robot or task",
        )
    })?;
    let message = match (t.get("text"), t.get("variants")) {
        (Some(_), Some(v)) => {
            return Err(err(
                t.line(v),
                t.path("variants"),
                "invalid_journey",
                "a send has either text or variants, not both",
            ));
        }
        (None, None) => {
            return Err(t.missing(
                "text",
                "a send needs text = \"…\" or variants = [{ id = \"a\", text = \"…\" }, …]",
            ));
        }
        (Some(_), None) => {
            if let Some(v) = t.get("allocation") {
                return Err(err(
                    t.line(v),
                    t.path("allocation"),
                    "invalid_journey",
                    "allocation chooses between variants; this send has one text",
                ));
            }
            Message::Text(t.required_template("text")?)
        }
        (None, Some(v)) => {
            let allocation = match t.str("allocation")? {
                None | Some(("thompson", _)) => Allocation::Thompson,
                Some(("fixed", _)) => Allocation::Fixed,
                Some((other, line)) => {
                    return Err(err(
                        line,
                        t.path("allocation"),
                        "invalid_journey",
                        format!(
                            "unknown allocation \"{other}\"; expected \"thompson\" or \"fixed\"{}",
                            did_you_mean(other, ["thompson", "fixed"])
                        ),
                    ));
                }
            };
            if allocation == Allocation::Thompson && !has_goal {
                let line = t.get("allocation").map_or(t.line(v), |a| t.line(a));
                return Err(err(
                    line,
                    t.path("allocation"),
                    "invalid_journey",
                    "Thompson sampling learns which variant reaches the goal, and this journey has no goal; add goal = { event = …, within = … } or set allocation = \"fixed\"",
                ));
            }
            Message::Variants {
                arms: variants(t, v)?,
                allocation,
            }
        }
    };
    let format = match t.str("format")? {
        None | Some(("text", _)) => Format::Text,
        Some(("markdown", line)) if channel != Channel::WecomRobot => {
            return Err(err(
                line,
                t.path("format"),
                "invalid_journey",
                format!(
                    "markdown is for the wecom_robot channel, not {}",
                    channel.as_str()
                ),
            ));
        }
        Some(("markdown", _)) => Format::Markdown,
        Some((other, line)) => {
            return Err(err(
                line,
                t.path("format"),
                "invalid_journey",
                format!("unknown format \"{other}\"; expected \"text\" or \"markdown\""),
            ));
        }
    };
    let fallback = match t.str("fallback")? {
        None => {
            if let Some(v) = t.get("fallback_team") {
                return Err(err(
                    t.line(v),
                    t.path("fallback_team"),
                    "invalid_journey",
                    "fallback_team goes with fallback = \"task\"",
                ));
            }
            None
        }
        Some(("task", _)) => Some(Fallback {
            team: t
                .label("fallback_team")?
                .unwrap_or_else(|| "default".to_string()),
        }),
        Some((other, line)) => {
            return Err(err(
                line,
                t.path("fallback"),
                "invalid_journey",
                format!("unknown fallback \"{other}\"; expected \"task\""),
            ));
        }
    };
    Ok(StepKind::Send(Send {
        channel,
        message,
        default: t.str("default")?.map(|(s, _)| s.to_string()),
        format,
        fallback,
    }))
}

fn variants(t: &Fields<'_, '_>, v: &Value<'_>) -> Result<Vec<Variant>, DefError> {
    let arms = t.tables("variants")?.unwrap_or_default();
    if arms.len() < 2 {
        return Err(err(
            t.line(v),
            t.path("variants"),
            "invalid_journey",
            format!("variants need at least 2 arms, found {}", arms.len()),
        ));
    }
    let mut out: Vec<Variant> = Vec::with_capacity(arms.len());
    for a in &arms {
        a.only(&["id", "text", "weight"])?;
        let (id, line) = a.required_str("id")?;
        check_name(id).map_err(|m| err(line, a.path("id"), "invalid_journey", m))?;
        if out.iter().any(|o| o.id == id) {
            return Err(err(
                line,
                a.path("id"),
                "invalid_journey",
                format!("two variants are named \"{id}\"; ids are unique within a step"),
            ));
        }
        let weight = match a.number("weight")? {
            None => 1.0,
            Some((w, _)) if w.is_finite() && w >= 0.0 => w,
            Some((w, line)) => {
                return Err(err(
                    line,
                    a.path("weight"),
                    "invalid_journey",
                    format!("a weight is a number of 0 or more, not {w}"),
                ));
            }
        };
        out.push(Variant {
            id: id.to_string(),
            text: a.required_template("text")?,
            weight,
        });
    }
    if out.iter().all(|o| o.weight == 0.0) {
        return Err(err(
            t.line(v),
            t.path("variants"),
            "invalid_journey",
            "every variant's weight is 0, so none could be sent",
        ));
    }
    Ok(out)
}

/// Refuses a loop that passes no wait: a run in it would spin through branches (and sends)
/// without ever yielding. A loop through a wait is a legitimate reminder cycle.
fn check_loops(steps: &[Step]) -> Result<(), DefError> {
    let next = |i: usize| -> Vec<usize> {
        match &steps[i].kind {
            StepKind::Exit => vec![],
            StepKind::Branch {
                then, otherwise, ..
            } => vec![*then, *otherwise],
            _ if i + 1 < steps.len() => vec![i + 1],
            _ => vec![],
        }
    };
    let is_wait = |i: usize| matches!(steps[i].kind, StepKind::Wait(_));
    // Depth-first over the graph without its wait steps (a cycle through one is fine), kept
    // on an explicit stack so a long journey cannot overflow the call stack.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut mark = vec![Mark::New; steps.len()];
    for start in (0..steps.len()).filter(|&i| !is_wait(i)) {
        if mark[start] != Mark::New {
            continue;
        }
        let mut path: Vec<(usize, Vec<usize>)> = vec![(start, next(start))];
        mark[start] = Mark::OnPath;
        while let Some((node, todo)) = path.last_mut() {
            let node = *node;
            match todo.pop() {
                None => {
                    mark[node] = Mark::Done;
                    path.pop();
                }
                Some(n) if is_wait(n) || mark[n] == Mark::Done => {}
                Some(n) if mark[n] == Mark::OnPath => {
                    let from = path.iter().position(|(p, _)| *p == n).unwrap_or(0);
                    // Named from its first step in the file, so the message is the same
                    // whichever step the search started from.
                    let mut cycle: Vec<usize> = path[from..].iter().map(|(p, _)| *p).collect();
                    let start = (0..cycle.len()).min_by_key(|&k| cycle[k]).unwrap_or(0);
                    cycle.rotate_left(start);
                    let first = cycle[0];
                    let names: Vec<&str> = cycle
                        .iter()
                        .chain(std::iter::once(&first))
                        .map(|&i| steps[i].id.as_str())
                        .collect();
                    return Err(err(
                        steps[first].line,
                        format!("steps[{first}]"),
                        "cycle_without_wait",
                        format!(
                            "the steps {} loop without a wait step; a loop must pass a wait (type = \"wait\") so a run cannot spin",
                            names.join(" → ")
                        ),
                    ));
                }
                Some(n) => {
                    mark[n] = Mark::OnPath;
                    path.push((n, next(n)));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FULL: &str = r#"name = "复购-welcome_2"
trigger = { event = "follow" }
filter = "has(douyin_open_id)"
reentry = "30d"
goal = { event = "order", within = "7d" }

[[steps]]
id = "hello"
type = "send"
channel = "webhook"
text = "欢迎关注！{{nickname}}"
default = "朋友"

[[steps]]
id = "pause"
type = "wait"
for = "2h"

[[steps]]
id = "check"
type = "branch"
if = "layer = favorable"
then = "offer"
else = "nudge"

[[steps]]
id = "nudge"
type = "send"
channel = "douyin_im"
fallback = "task"
variants = [
  { id = "a", text = "{{ nickname }}，来看看" },
  { id = "b", text = "新品上架", weight = 2.5 },
]

[[steps]]
id = "morning"
type = "wait"
until = "09:00"

[[steps]]
id = "again"
type = "branch"
if = "not tag(\"buyer\")"
then = "check"
else = "offer"

[[steps]]
id = "offer"
type = "send"
channel = "wecom_robot"
format = "markdown"
text = "**{{name}}** 的专属券"
fallback = "task"
fallback_team = "sales"

[[steps]]
id = "mark"
type = "tag"
tag = "已触达"

[[steps]]
id = "unmark"
type = "untag"
tag = "cold"

[[steps]]
id = "group"
type = "invite_group"
text = "加入粉丝群 {{nickname}}"

[[steps]]
id = "lead"
type = "assign_lead"
team = "north"

[[steps]]
id = "call"
type = "task"
text = "给 {{phone}} 打电话"
team = "north"

[[steps]]
id = "done"
type = "exit"
"#;

    fn fails(text: &str) -> DefError {
        parse(text, None).expect_err("should be refused")
    }

    /// Asserts the code, line and field of a refusal, and returns its message.
    #[track_caller]
    fn refused(text: &str, code: &str, line: usize, field: &str) -> String {
        let e = fails(text);
        assert_eq!(
            (e.code, e.line, e.field.as_str()),
            (code, line, field),
            "{e}"
        );
        e.message
    }

    /// A valid journey with these lines appended to its one step.
    fn with_step(lines: &str) -> String {
        format!(
            "name = \"j\"\ntrigger = {{ event = \"follow\" }}\n\n[[steps]]\nid = \"s\"\n{lines}\n"
        )
    }

    fn template(s: &str) -> Template {
        Template::parse(s).unwrap()
    }

    #[test]
    fn a_full_file_parses_with_defaults_and_jumps_resolved() {
        let j = parse(FULL, Some(&[])).unwrap();
        assert_eq!(j.name, "复购-welcome_2");
        assert_eq!(j.trigger, Trigger::Event("follow".into()));
        assert_eq!(j.filter.as_ref().unwrap().source, "has(douyin_open_id)");
        assert_eq!(
            j.filter.as_ref().unwrap().expr,
            audience::parse("has(douyin_open_id)").unwrap()
        );
        assert_eq!(j.reentry, Reentry::After(30 * 86_400_000));
        assert_eq!(
            j.goal,
            Some(Goal {
                event: "order".into(),
                within: 7 * 86_400_000
            })
        );
        assert!(j.respect_quiet_hours);
        let ids: Vec<&str> = j.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "hello", "pause", "check", "nudge", "morning", "again", "offer", "mark", "unmark",
                "group", "lead", "call", "done"
            ]
        );
        assert_eq!(j.steps[0].line, 7);
        assert_eq!(j.steps[1].line, 14);
        assert_eq!(
            j.steps[0].kind,
            StepKind::Send(Send {
                channel: Channel::Webhook,
                message: Message::Text(template("欢迎关注！{{nickname}}")),
                default: Some("朋友".into()),
                format: Format::Text,
                fallback: None,
            })
        );
        assert_eq!(j.steps[1].kind, StepKind::Wait(Wait::For(7_200_000)));
        match &j.steps[2].kind {
            StepKind::Branch {
                cond,
                then,
                otherwise,
            } => {
                assert_eq!(cond.source, "layer = favorable");
                assert_eq!((*then, *otherwise), (6, 3));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            j.steps[3].kind,
            StepKind::Send(Send {
                channel: Channel::DouyinIm,
                message: Message::Variants {
                    arms: vec![
                        Variant {
                            id: "a".into(),
                            text: template("{{nickname}}，来看看"),
                            weight: 1.0
                        },
                        Variant {
                            id: "b".into(),
                            text: template("新品上架"),
                            weight: 2.5
                        },
                    ],
                    allocation: Allocation::Thompson,
                },
                default: None,
                format: Format::Text,
                fallback: Some(Fallback {
                    team: "default".into()
                }),
            })
        );
        assert_eq!(
            j.steps[4].kind,
            StepKind::Wait(Wait::Until(TimeOfDay { minutes: 540 }))
        );
        assert!(matches!(
            j.steps[5].kind,
            StepKind::Branch {
                then: 2,
                otherwise: 6,
                ..
            }
        ));
        match &j.steps[6].kind {
            StepKind::Send(s) => {
                assert_eq!(s.format, Format::Markdown);
                assert_eq!(
                    s.fallback,
                    Some(Fallback {
                        team: "sales".into()
                    })
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(j.steps[7].kind, StepKind::Tag("已触达".into()));
        assert_eq!(j.steps[8].kind, StepKind::Untag("cold".into()));
        assert_eq!(
            j.steps[9].kind,
            StepKind::InviteGroup {
                group: None,
                channel: Channel::DouyinIm,
                text: template("加入粉丝群 {{nickname}}"),
                default: None,
            }
        );
        assert_eq!(
            j.steps[10].kind,
            StepKind::AssignLead {
                team: "north".into()
            }
        );
        assert_eq!(
            j.steps[11].kind,
            StepKind::Task {
                text: template("给 {{phone}} 打电话"),
                team: "north".into(),
                due: 24 * 3_600_000,
            }
        );
        assert_eq!(j.steps[12].kind, StepKind::Exit);
        assert_eq!(j.step_index("offer"), Some(6));
        assert_eq!(
            j.steps
                .iter()
                .map(|s| s.kind.type_name())
                .collect::<Vec<_>>()[..3],
            ["send", "wait", "branch"]
        );
    }

    #[test]
    fn triggers_and_top_level_defaults() {
        let base = "name = \"j\"\n[[steps]]\nid = \"s\"\ntype = \"exit\"\n";
        let with = |t: &str| format!("trigger = {t}\n{base}");
        let j = parse(&with("{ layer_entered = \"好感\" }"), None).unwrap();
        assert_eq!(j.trigger, Trigger::LayerEntered(Layer::Favorable));
        assert_eq!(j.reentry, Reentry::Once);
        assert_eq!(j.goal, None);
        assert_eq!(j.filter, None);
        let j = parse(&with("{ layer_entered = \"true_love\" }"), None).unwrap();
        assert_eq!(j.trigger, Trigger::LayerEntered(Layer::TrueLove));
        let known = vec!["复购潜力".to_string()];
        let j = parse(&with("{ segment_entered = \"复购潜力\" }"), Some(&known)).unwrap();
        assert_eq!(j.trigger, Trigger::SegmentEntered("复购潜力".into()));
        let j = parse(
            &with("{ schedule = \"09:30\", segment = \"anything\" }"),
            None,
        )
        .unwrap();
        assert_eq!(
            j.trigger,
            Trigger::Schedule {
                at: TimeOfDay { minutes: 570 },
                segment: "anything".into()
            }
        );
        let j = parse(&with("{ event = \"x_领券\" }"), None).unwrap();
        assert_eq!(j.trigger, Trigger::Event("x_领券".into()));
        let j = parse(
            &format!(
                "reentry = \"always\"\nrespect_quiet_hours = false\n{}",
                with("{ event = \"order\" }")
            ),
            None,
        )
        .unwrap();
        assert_eq!(j.reentry, Reentry::Always);
        assert!(!j.respect_quiet_hours);
        // The [trigger] table form reads the same.
        let j = parse(&format!("{base}\n[trigger]\nevent = \"follow\"\n"), None).unwrap();
        assert_eq!(j.trigger, Trigger::Event("follow".into()));
    }

    #[test]
    fn a_loop_through_a_wait_is_fine() {
        let text = with_step(
            "type = \"wait\"\nfor = \"1d\"\n\n[[steps]]\nid = \"b\"\ntype = \"branch\"\nif = \"tag('x')\"\nthen = \"done\"\nelse = \"s\"\n\n[[steps]]\nid = \"done\"\ntype = \"exit\"",
        );
        let j = parse(&text, None).unwrap();
        assert!(matches!(
            j.steps[1].kind,
            StepKind::Branch {
                then: 2,
                otherwise: 0,
                ..
            }
        ));
    }

    #[test]
    fn toml_syntax_errors_name_the_line() {
        refused("name = \"j\"\n\ntrigger = \n", "invalid_journey", 3, "");
        refused("name = \"j\"\nname = \"k\"\n", "invalid_journey", 2, "");
    }

    #[test]
    fn missing_fields_name_their_table() {
        let m = refused(
            "trigger = { event = \"follow\" }\n",
            "missing_field",
            1,
            "name",
        );
        assert!(m.contains("required"), "{m}");
        refused("name = \"j\"\n", "missing_field", 1, "trigger");
        refused(
            "name = \"j\"\ntrigger = { event = \"follow\" }\n",
            "missing_field",
            1,
            "steps",
        );
        refused(
            &with_step("channel = \"webhook\""),
            "missing_field",
            4,
            "steps[0].type",
        );
        refused(
            "name = \"j\"\ntrigger = { event = \"follow\" }\n[[steps]]\ntype = \"exit\"\n",
            "missing_field",
            3,
            "steps[0].id",
        );
        refused(
            &with_step("type = \"send\"\ntext = \"hi\""),
            "missing_field",
            4,
            "steps[0].channel",
        );
        refused(
            &with_step("type = \"send\"\nchannel = \"webhook\""),
            "missing_field",
            4,
            "steps[0].text",
        );
        refused(
            &with_step("type = \"wait\""),
            "missing_field",
            4,
            "steps[0].for",
        );
        refused(
            &with_step("type = \"branch\"\nif = \"has(phone)\"\nthen = \"s\""),
            "missing_field",
            4,
            "steps[0].else",
        );
        refused(
            &with_step("type = \"tag\""),
            "missing_field",
            4,
            "steps[0].tag",
        );
        refused(
            &with_step("type = \"invite_group\""),
            "missing_field",
            4,
            "steps[0].text",
        );
        refused(
            &with_step("type = \"assign_lead\""),
            "missing_field",
            4,
            "steps[0].team",
        );
        refused(
            &with_step("type = \"task\"\ntext = \"call\""),
            "missing_field",
            4,
            "steps[0].team",
        );
        refused(
            "name = \"j\"\ntrigger = {}\n[[steps]]\nid = \"s\"\ntype = \"exit\"\n",
            "missing_field",
            2,
            "trigger",
        );
        refused(
            "name = \"j\"\n\ntrigger = { schedule = \"09:30\" }\n[[steps]]\nid = \"s\"\ntype = \"exit\"\n",
            "missing_field",
            3,
            "trigger.segment",
        );
        refused(
            "name = \"j\"\ntrigger = { event = \"follow\" }\ngoal = { event = \"order\" }\n[[steps]]\nid = \"s\"\ntype = \"exit\"\n",
            "missing_field",
            3,
            "goal.within",
        );
        refused(
            &with_step(
                "type = \"send\"\nchannel = \"webhook\"\nallocation = \"fixed\"\nvariants = [\n { id = \"a\" },\n { id = \"b\", text = \"x\" },\n]",
            ),
            "missing_field",
            10,
            "steps[0].variants[0].text",
        );
    }

    #[test]
    fn unknown_fields_are_refused_with_a_hint() {
        let m = refused(
            "name = \"j\"\ntrigger = { event = \"follow\" }\nrespect_quiet_hour = true\n",
            "unknown_field",
            3,
            "respect_quiet_hour",
        );
        assert!(m.ends_with("did you mean \"respect_quiet_hours\"?"), "{m}");
        let m = refused(
            &with_step("type = \"send\"\nchanel = \"webhook\"\ntext = \"hi\""),
            "unknown_field",
            7,
            "steps[0].chanel",
        );
        assert!(m.ends_with("did you mean \"channel\"?"), "{m}");
        // A field of another step type is as unknown as a typo.
        refused(
            &with_step("type = \"exit\"\nfor = \"2h\""),
            "unknown_field",
            7,
            "steps[0].for",
        );
        refused(
            "name = \"j\"\ntrigger = { event = \"follow\", segmnt = \"x\" }\n",
            "unknown_field",
            2,
            "trigger.segmnt",
        );
        refused(
            &with_step(
                "type = \"send\"\nchannel = \"webhook\"\nallocation = \"fixed\"\nvariants = [{ id = \"a\", text = \"x\" }, { id = \"b\", txt = \"y\" }]",
            ),
            "unknown_field",
            9,
            "steps[0].variants[1].txt",
        );
        refused(
            &with_step("type = \"exit\"\n[steps.extra]\nx = 1"),
            "unknown_field",
            7,
            "steps[0].extra",
        );
    }

    #[test]
    fn unknown_step_types_channels_and_steps() {
        let m = refused(
            &with_step("type = \"sned\""),
            "unknown_step_type",
            6,
            "steps[0].type",
        );
        assert!(m.ends_with("did you mean \"send\"?"), "{m}");
        let m = refused(
            &with_step("type = \"send\"\nchannel = \"douyin\"\ntext = \"hi\""),
            "unknown_channel",
            7,
            "steps[0].channel",
        );
        assert!(m.contains("webhook, douyin_im, wecom_robot, task"), "{m}");
        refused(
            &with_step("type = \"invite_group\"\nchannel = \"wecom\"\ntext = \"hi\""),
            "unknown_channel",
            7,
            "steps[0].channel",
        );
        let m = refused(
            &with_step(
                "type = \"branch\"\nif = \"has(phone)\"\nthen = \"s\"\nelse = \"ofer\"\n[[steps]]\nid = \"offer\"\ntype = \"exit\"",
            ),
            "unknown_step",
            9,
            "steps[0].else",
        );
        assert!(m.ends_with("did you mean \"offer\"?"), "{m}");
    }

    #[test]
    fn duplicate_steps() {
        let m = refused(
            &with_step("type = \"exit\"\n[[steps]]\nid = \"s\"\ntype = \"exit\""),
            "duplicate_step",
            8,
            "steps[1].id",
        );
        assert!(m.contains("line 4"), "{m}");
    }

    #[test]
    fn a_loop_without_a_wait_names_its_steps() {
        let text = with_step(
            "type = \"tag\"\ntag = \"t\"\n\n[[steps]]\nid = \"b\"\ntype = \"branch\"\nif = \"tag('x')\"\nthen = \"s\"\nelse = \"done\"\n\n[[steps]]\nid = \"done\"\ntype = \"exit\"",
        );
        let m = refused(&text, "cycle_without_wait", 4, "steps[0]");
        assert!(m.contains("s → b → s"), "{m}");
        let own = with_step("type = \"branch\"\nif = \"tag('x')\"\nthen = \"s\"\nelse = \"s\"");
        let m = refused(&own, "cycle_without_wait", 4, "steps[0]");
        assert!(m.contains("s → s"), "{m}");
    }

    #[test]
    fn expressions_templates_and_durations() {
        let m = refused(
            "name = \"j\"\ntrigger = { event = \"follow\" }\nfilter = \"layer = favorite\"\n",
            "invalid_expression",
            3,
            "filter",
        );
        assert!(m.starts_with("column 9: "), "{m}");
        refused(
            &with_step("type = \"branch\"\nif = \"has(\"\nthen = \"s\"\nelse = \"s\""),
            "invalid_expression",
            7,
            "steps[0].if",
        );
        let m = refused(
            &with_step("type = \"send\"\nchannel = \"webhook\"\ntext = \"你好 {{nickame}}\""),
            "unknown_template_field",
            8,
            "steps[0].text",
        );
        assert!(
            m.starts_with("column 6: ") && m.ends_with("did you mean \"nickname\"?"),
            "{m}"
        );
        let m = refused(
            &with_step("type = \"task\"\nteam = \"t\"\ntext = \"call {{phone\""),
            "invalid_template",
            8,
            "steps[0].text",
        );
        assert!(m.starts_with("column 6: "), "{m}");
        refused(
            &with_step(
                "type = \"send\"\nchannel = \"webhook\"\nallocation = \"fixed\"\nvariants = [\n  { id = \"a\", text = \"x\" },\n  { id = \"b\", text = \"{{}}\" },\n]",
            ),
            "invalid_template",
            11,
            "steps[0].variants[1].text",
        );
        let m = refused(
            &with_step("type = \"wait\"\nfor = \"2 hours\""),
            "invalid_duration",
            7,
            "steps[0].for",
        );
        assert!(m.contains("s, m, h, d or w"), "{m}");
        refused(
            &with_step("type = \"wait\"\nuntil = \"9:00\""),
            "invalid_duration",
            7,
            "steps[0].until",
        );
        refused(
            &with_step("type = \"task\"\ntext = \"x\"\nteam = \"t\"\ndue = \"400d\""),
            "invalid_duration",
            9,
            "steps[0].due",
        );
        refused(
            "name = \"j\"\ntrigger = { event = \"follow\" }\nreentry = \"3O d\"\n",
            "invalid_duration",
            3,
            "reentry",
        );
        refused(
            "name = \"j\"\ntrigger = { schedule = \"25:00\", segment = \"x\" }\n",
            "invalid_duration",
            2,
            "trigger.schedule",
        );
        refused(
            "name = \"j\"\ngoal = { event = \"order\", within = \"7days\" }\ntrigger = { event = \"follow\" }\n",
            "invalid_duration",
            2,
            "goal.within",
        );
    }

    #[test]
    fn unknown_segments_are_refused_with_a_hint() {
        let known = vec!["复购潜力".to_string(), "vip".to_string()];
        let text = "name = \"j\"\ntrigger = { segment_entered = \"vipp\" }\n[[steps]]\nid = \"s\"\ntype = \"exit\"\n";
        let e = parse(text, Some(&known)).unwrap_err();
        assert_eq!(
            (e.code, e.line, e.field.as_str()),
            ("unknown_segment", 2, "trigger.segment_entered")
        );
        assert!(e.message.ends_with("did you mean \"vip\"?"), "{e}");
        assert!(
            parse(text, None).is_ok(),
            "offline, any segment name passes"
        );
        let text = "name = \"j\"\ntrigger = { schedule = \"09:30\", segment = \"nope\" }\n[[steps]]\nid = \"s\"\ntype = \"exit\"\n";
        let e = parse(text, Some(&known)).unwrap_err();
        assert_eq!(
            (e.code, e.line, e.field.as_str()),
            ("unknown_segment", 2, "trigger.segment")
        );
    }

    #[test]
    fn everything_else_is_an_invalid_journey() {
        let top = |lines: &str| format!("{lines}\n[[steps]]\nid = \"s\"\ntype = \"exit\"\n");
        let t = "trigger = { event = \"follow\" }";
        refused(
            &top(&format!("name = \"a b\"\n{t}")),
            "invalid_journey",
            1,
            "name",
        );
        refused(
            &top(&format!("name = \"\"\n{t}")),
            "invalid_journey",
            1,
            "name",
        );
        refused(
            &top(&format!("name = \"{}\"\n{t}", "名".repeat(65))),
            "invalid_journey",
            1,
            "name",
        );
        refused(
            &top(&format!("name = \"policy\"\n{t}")),
            "invalid_journey",
            1,
            "name",
        );
        refused(
            &top(&format!("name = 3\n{t}")),
            "invalid_journey",
            1,
            "name",
        );
        refused(
            &top("name = \"j\"\ntrigger = \"follow\""),
            "invalid_journey",
            2,
            "trigger",
        );
        let m = refused(
            &top("name = \"j\"\ntrigger = { layer_entered = \"favourable\" }"),
            "invalid_journey",
            2,
            "trigger.layer_entered",
        );
        assert!(m.ends_with("did you mean \"favorable\"?"), "{m}");
        let m = refused(
            &top("name = \"j\"\ntrigger = { event = \"ordr\" }"),
            "invalid_journey",
            2,
            "trigger.event",
        );
        assert!(m.ends_with("did you mean \"order\"?"), "{m}");
        refused(
            &top("name = \"j\"\ntrigger = { event = \"x_a b\" }"),
            "invalid_journey",
            2,
            "trigger.event",
        );
        refused(
            &top("name = \"j\"\ntrigger = { event = \"follow\", layer_entered = \"favorable\" }"),
            "invalid_journey",
            2,
            "trigger",
        );
        refused(
            &top("name = \"j\"\ntrigger = { event = \"follow\", segment = \"x\" }"),
            "invalid_journey",
            2,
            "trigger.segment",
        );
        refused(
            &top(&format!(
                "name = \"j\"\n{t}\ngoal = {{ event = \"buy\", within = \"7d\" }}"
            )),
            "invalid_journey",
            3,
            "goal.event",
        );
        let m = refused(
            &top(&format!("name = \"j\"\n{t}\nreentry = \"onse\"")),
            "invalid_journey",
            3,
            "reentry",
        );
        assert!(m.ends_with("did you mean \"once\"?"), "{m}");
        refused(
            &top(&format!("name = \"j\"\n{t}\nrespect_quiet_hours = \"yes\"")),
            "invalid_journey",
            3,
            "respect_quiet_hours",
        );
        refused(
            &format!("name = \"j\"\n{t}\nsteps = []\n"),
            "invalid_journey",
            3,
            "steps",
        );
        refused(
            &format!("name = \"j\"\n{t}\nsteps = [1]\n"),
            "invalid_journey",
            3,
            "steps[0]",
        );
        refused(
            &with_step("type = \"exit\"\nid2 = 1").replace("id = \"s\"", "id = \"a.b\""),
            "invalid_journey",
            5,
            "steps[0].id",
        );
        refused(
            &with_step("type = \"tag\"\ntag = \"\""),
            "invalid_journey",
            7,
            "steps[0].tag",
        );
        refused(
            &with_step("type = \"tag\"\ntag = \"a\\u0007\""),
            "invalid_journey",
            7,
            "steps[0].tag",
        );
        refused(
            &with_step(&format!("type = \"untag\"\ntag = \"{}\"", "t".repeat(65))),
            "invalid_journey",
            7,
            "steps[0].tag",
        );
        refused(
            &with_step("type = \"wait\"\nfor = \"2h\"\nuntil = \"09:00\""),
            "invalid_journey",
            8,
            "steps[0].until",
        );
        refused(
            &with_step("type = \"send\"\nchannel = \"webhook\"\ntext = \"\""),
            "invalid_journey",
            8,
            "steps[0].text",
        );
    }

    #[test]
    fn send_rules() {
        let send = |lines: &str| with_step(&format!("type = \"send\"\n{lines}"));
        let fixed = "allocation = \"fixed\"\n";
        let two = "variants = [{ id = \"a\", text = \"x\" }, { id = \"b\", text = \"y\" }]";
        // Thompson sampling needs a goal, whether written or by default.
        let m = refused(
            &send(&format!("channel = \"webhook\"\n{two}")),
            "invalid_journey",
            8,
            "steps[0].allocation",
        );
        assert!(m.contains("no goal"), "{m}");
        refused(
            &send(&format!(
                "channel = \"webhook\"\nallocation = \"thompson\"\n{two}"
            )),
            "invalid_journey",
            8,
            "steps[0].allocation",
        );
        let j = parse(&send(&format!("channel = \"webhook\"\n{fixed}{two}")), None).unwrap();
        assert!(matches!(
            &j.steps[0].kind,
            StepKind::Send(Send {
                message: Message::Variants {
                    allocation: Allocation::Fixed,
                    ..
                },
                ..
            })
        ));
        refused(
            &send(&format!(
                "channel = \"webhook\"\nallocation = \"random\"\n{two}"
            )),
            "invalid_journey",
            8,
            "steps[0].allocation",
        );
        refused(
            &send(&format!("channel = \"webhook\"\ntext = \"x\"\n{two}")),
            "invalid_journey",
            9,
            "steps[0].variants",
        );
        refused(
            &send("channel = \"webhook\"\ntext = \"x\"\nallocation = \"fixed\""),
            "invalid_journey",
            9,
            "steps[0].allocation",
        );
        refused(
            &send(&format!(
                "channel = \"webhook\"\n{fixed}variants = [{{ id = \"a\", text = \"x\" }}]"
            )),
            "invalid_journey",
            9,
            "steps[0].variants",
        );
        refused(
            &send(&format!(
                "channel = \"webhook\"\n{fixed}variants = [{{ id = \"a\", text = \"x\" }}, {{ id = \"a\", text = \"y\" }}]"
            )),
            "invalid_journey",
            9,
            "steps[0].variants[1].id",
        );
        refused(
            &send(&format!(
                "channel = \"webhook\"\n{fixed}variants = [{{ id = \"a\", text = \"x\", weight = -1 }}, {{ id = \"b\", text = \"y\" }}]"
            )),
            "invalid_journey",
            9,
            "steps[0].variants[0].weight",
        );
        refused(
            &send(&format!(
                "channel = \"webhook\"\n{fixed}variants = [{{ id = \"a\", text = \"x\", weight = nan }}, {{ id = \"b\", text = \"y\" }}]"
            )),
            "invalid_journey",
            9,
            "steps[0].variants[0].weight",
        );
        refused(
            &send(&format!(
                "channel = \"webhook\"\n{fixed}variants = [{{ id = \"a\", text = \"x\", weight = 0 }}, {{ id = \"b\", text = \"y\", weight = 0.0 }}]"
            )),
            "invalid_journey",
            9,
            "steps[0].variants",
        );
        refused(
            &send(&format!("channel = \"webhook\"\n{fixed}variants = \"a\"")),
            "invalid_journey",
            9,
            "steps[0].variants",
        );
        let m = refused(
            &send("channel = \"webhook\"\ntext = \"x\"\nformat = \"markdown\""),
            "invalid_journey",
            9,
            "steps[0].format",
        );
        assert!(m.contains("wecom_robot"), "{m}");
        refused(
            &send("channel = \"wecom_robot\"\ntext = \"x\"\nformat = \"html\""),
            "invalid_journey",
            9,
            "steps[0].format",
        );
        refused(
            &send("channel = \"webhook\"\ntext = \"x\"\nfallback = \"sms\""),
            "invalid_journey",
            9,
            "steps[0].fallback",
        );
        refused(
            &send("channel = \"webhook\"\ntext = \"x\"\nfallback_team = \"t\""),
            "invalid_journey",
            9,
            "steps[0].fallback_team",
        );
    }

    /// Small edits of a valid file: the places a parser is likeliest to trip.
    fn mutate(text: &str, edits: &[(usize, char, u8)]) -> String {
        let mut chars: Vec<char> = text.chars().collect();
        for &(at, c, op) in edits {
            let at = at % (chars.len() + 1);
            match op % 3 {
                0 => chars.insert(at, c),
                1 if at < chars.len() => {
                    chars.remove(at);
                }
                _ if at < chars.len() => chars[at] = c,
                _ => {}
            }
        }
        chars.into_iter().collect()
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,200}") {
            let _ = parse(&s, None);
            let _ = parse(&s, Some(&["复购潜力".to_string()]));
        }

        #[test]
        fn edits_of_a_valid_file_never_panic(
            edits in proptest::collection::vec(
                (any::<usize>(), prop_oneof![
                    Just('"'), Just('{'), Just('}'), Just('['), Just(']'), Just('='), Just('\n'),
                    Just(','), Just('#'), Just(' '), Just('好'), any::<char>(),
                ], any::<u8>()),
                1..6,
            )
        ) {
            let text = mutate(FULL, &edits);
            if let Err(e) = parse(&text, None) {
                prop_assert!(e.line >= 1 && e.line <= text.lines().count().max(1) + 1, "{e}");
            }
        }
    }
}
