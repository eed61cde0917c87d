//! The rules a send obeys, each a pure decision that says why: quiet hours in the tenant's
//! time zone, a frequency cap per fan per channel per day, opt-out words, Douyin's
//! private-message rules (reply window, proactive authorization and quota) and WeCom group
//! robots' limits. The defaults and their sources are in docs/journeys.md.

use siyu_domain::Millis;

use crate::duration::TimeOfDay;

/// Why a send was not made. Stable codes: they are stored in run histories and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Skip {
    /// Douyin: the fan's latest private message is older than the reply window (or there is
    /// none) and the fan has not authorized proactive messages.
    OutsideReplyWindow,
    /// Douyin: a proactive message to a fan who has not authorized them.
    NotAuthorized,
    /// Douyin: the proactive quota for today is used (or the replies allowed per message).
    DailyCap,
    /// The tenant's cap of sends per fan per channel per day is reached.
    FrequencyCap,
    /// The fan opted out (unsubscribe, 退订 / TD / T / stop).
    OptedOut,
    /// A template field the fan lacks, with no default.
    MissingField,
    /// Douyin: the fan has no douyin_open_id.
    NoDouyinId,
    /// The channel is not configured for the tenant.
    ChannelNotConfigured,
    /// The message is longer than the channel allows.
    TooLong,
}

impl Skip {
    pub const ALL: [Skip; 9] = [
        Skip::OutsideReplyWindow,
        Skip::NotAuthorized,
        Skip::DailyCap,
        Skip::FrequencyCap,
        Skip::OptedOut,
        Skip::MissingField,
        Skip::NoDouyinId,
        Skip::ChannelNotConfigured,
        Skip::TooLong,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Skip::OutsideReplyWindow => "outside_reply_window",
            Skip::NotAuthorized => "not_authorized",
            Skip::DailyCap => "daily_cap",
            Skip::FrequencyCap => "frequency_cap",
            Skip::OptedOut => "opted_out",
            Skip::MissingField => "missing_field",
            Skip::NoDouyinId => "no_douyin_open_id",
            Skip::ChannelNotConfigured => "channel_not_configured",
            Skip::TooLong => "too_long",
        }
    }

    pub fn parse(s: &str) -> Option<Skip> {
        Skip::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Quiet hours: sends wait from `start` until `end` (local time; `start > end` spans
/// midnight, `start == end` means none).
#[derive(Debug, Clone, PartialEq)]
pub struct QuietHours {
    pub start: TimeOfDay,
    pub end: TimeOfDay,
}

impl QuietHours {
    /// 22:00–08:00.
    pub fn default_hours() -> QuietHours {
        todo!("issue 13: policies")
    }

    /// `None` if `at` is outside quiet hours; else the instant they end (the first instant
    /// at which a send may go).
    pub fn ends_after(&self, tz: &jiff::tz::TimeZone, at: Millis) -> Option<Millis> {
        let _ = (tz, at);
        todo!("issue 13: policies")
    }
}

/// The next instant strictly after `at` whose local time is `tod` (DST gaps: the first
/// instant after the gap).
pub fn next_time_of_day(tz: &jiff::tz::TimeZone, at: Millis, tod: TimeOfDay) -> Millis {
    let _ = (tz, at, tod);
    todo!("issue 13: policies")
}

/// The local day of `at`: days since 1970-01-01 in `tz`.
pub fn local_day(tz: &jiff::tz::TimeZone, at: Millis) -> i32 {
    let _ = (tz, at);
    todo!("issue 13: policies")
}

/// Whether a private message's text opts the fan out: after trimming whitespace and
/// punctuation and folding full-width letters and case, it is exactly `退订`, `TD`, `T` or
/// `stop` (`td`, `Ｔ Ｄ`, `STOP!` count; `退订了吗` and `stop by` do not).
pub fn is_opt_out(text: &str) -> bool {
    let _ = text;
    todo!("issue 13: policies")
}

/// Douyin private-message rules, as settings (defaults from the platform's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DouyinRules {
    /// A reply may cite the fan's latest message this long after it (48 h).
    pub reply_window: Millis,
    /// Replies allowed per incoming message (5).
    pub replies_per_message: i32,
    /// Proactive messages per authorized fan per local day (3: one touch a day, at most 3
    /// messages in it).
    pub proactive_per_day: i32,
}

impl Default for DouyinRules {
    fn default() -> DouyinRules {
        DouyinRules {
            reply_window: 48 * 3_600_000,
            replies_per_message: 5,
            proactive_per_day: 3,
        }
    }
}

/// What Siyu knows of a fan's private-message conversation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImState {
    /// The latest incoming message: when, its conversation and message ids.
    pub last_in: Option<(Millis, String, String)>,
    /// Replies sent since that message.
    pub replies: i32,
    /// The fan authorized proactive messages (and has not withdrawn it).
    pub authorized: bool,
    /// Proactive messages sent to the fan today (local day).
    pub proactive_today: i32,
}

/// How a Douyin private message may go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImDecision {
    /// A reply citing the fan's message (`conversation`, `message`).
    Reply { conversation: String, message: String },
    /// A proactive message to an authorized fan.
    Proactive,
    /// Not allowed, and why.
    Forbidden(Skip),
}

/// Decides a Douyin private message at `now`: a reply inside the window with replies left;
/// else proactive if authorized with quota left; else forbidden with the reason
/// (`outside_reply_window` for a fan who never authorized, `daily_cap` for a used quota).
pub fn douyin_decide(rules: &DouyinRules, im: &ImState, now: Millis) -> ImDecision {
    let _ = (rules, im, now);
    todo!("issue 13: policies")
}

/// WeCom group robot limits: text content at most 2,048 bytes, markdown at most 4,096
/// (UTF-8), 20 messages per minute per robot.
pub const WECOM_TEXT_BYTES: usize = 2048;
pub const WECOM_MARKDOWN_BYTES: usize = 4096;
pub const WECOM_PER_MINUTE: usize = 20;

/// A sliding one-minute window of sends per robot: [`RateWindow::admit`] says when the next
/// send may go.
#[derive(Debug, Clone, Default)]
pub struct RateWindow {
    /// Send instants within the last minute, oldest first.
    pub sent: std::collections::VecDeque<Millis>,
}

impl RateWindow {
    /// `Ok(())` and records the send if fewer than `per_minute` went in the minute before
    /// `now`; else `Err(at)`: the instant a send may go.
    pub fn admit(&mut self, now: Millis, per_minute: usize) -> Result<(), Millis> {
        let _ = (now, per_minute);
        todo!("issue 13: policies")
    }
}

/// What an HTTP answer means for a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Try again (timeouts, connection errors, 5xx, 429), not before `after` if the channel
    /// said (`Retry-After`).
    Retry { after: Option<Millis> },
    /// Other 4xx, or an answer the channel's protocol calls a refusal.
    Permanent,
}

/// An HTTP status (and `Retry-After` value, seconds or an HTTP date, relative to `now`) as a
/// verdict; `None` status means the request never got an answer (timeout, connection).
pub fn classify(status: Option<u16>, retry_after: Option<&str>, now: Millis) -> Verdict {
    let _ = (status, retry_after, now);
    todo!("issue 13: policies")
}

/// The delay before attempt `attempt + 1` after `attempt` failures: exponential from 1 s,
/// doubling, capped at 10 min, with full jitter drawn from `jitter` in [0, 1) (so the delay
/// is in [base/2, base)), and never before `retry_after` when given.
pub fn backoff(attempt: i32, jitter: f64, retry_after: Option<Millis>) -> Millis {
    let _ = (attempt, jitter, retry_after);
    todo!("issue 13: policies")
}

/// Attempts before a retryable failure is given up as dead.
pub const MAX_ATTEMPTS: i32 = 12;
