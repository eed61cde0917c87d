//! The rules a send obeys, each a pure decision that says why: quiet hours in the tenant's
//! time zone, a frequency cap per fan per channel per day, opt-out words, Douyin's
//! private-message rules (reply window, proactive authorization and quota) and WeCom group
//! robots' limits. The defaults and their sources are in docs/journeys.md.
//!
//! Times are [`Millis`] since the epoch; local times are resolved in the tenant's
//! [`jiff::tz::TimeZone`]. A local time that a DST gap skips resolves to the first instant
//! after the gap (02:30 on New York's spring-forward day is 03:00 EDT); one that a fold
//! repeats has two instants, and "the next instant with that local time" takes whichever
//! comes first after the given instant.

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone};
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
        QuietHours {
            start: TimeOfDay { minutes: 22 * 60 },
            end: TimeOfDay { minutes: 8 * 60 },
        }
    }

    /// `None` if `at` is outside quiet hours; else the instant they end (the first instant
    /// at which a send may go): the next instant after `at` whose local time is `end`.
    /// Quiet hours include `start` and exclude `end`.
    pub fn ends_after(&self, tz: &jiff::tz::TimeZone, at: Millis) -> Option<Millis> {
        const MINUTE: i64 = 60_000;
        let start = i64::from(self.start.minutes) * MINUTE;
        let end = i64::from(self.end.minutes) * MINUTE;
        let t = ms_of_day(tz.to_datetime(timestamp(at)));
        let quiet = match start.cmp(&end) {
            std::cmp::Ordering::Equal => false,
            std::cmp::Ordering::Less => start <= t && t < end,
            std::cmp::Ordering::Greater => t >= start || t < end,
        };
        quiet.then(|| next_time_of_day(tz, at, self.end))
    }
}

/// `at` as a jiff instant, saturated to jiff's range (±9999 years).
fn timestamp(at: Millis) -> Timestamp {
    Timestamp::from_millisecond(at).unwrap_or(if at < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// Milliseconds since local midnight.
fn ms_of_day(dt: DateTime) -> i64 {
    let t = dt.time();
    ((i64::from(t.hour()) * 60 + i64::from(t.minute())) * 60 + i64::from(t.second())) * 1000
        + i64::from(t.millisecond())
}

/// The instants whose local time in `tz` is `dt`, earliest first: one as a rule, two in a
/// fold, and in a gap the instant the gap ends (the first valid one after it).
fn instants_of(tz: &TimeZone, dt: DateTime) -> Vec<Timestamp> {
    match tz.to_ambiguous_timestamp(dt).offset() {
        AmbiguousOffset::Unambiguous { offset } => {
            offset.to_timestamp(dt).ok().into_iter().collect()
        }
        AmbiguousOffset::Fold { before, after } => [before, after]
            .into_iter()
            .filter_map(|o| o.to_timestamp(dt).ok())
            .collect(),
        // Read with the offset after the gap, `dt` names an instant before the transition;
        // the transition that follows it is where the gap ends.
        AmbiguousOffset::Gap { after, .. } => after
            .to_timestamp(dt)
            .ok()
            .and_then(|t| tz.following(t).next())
            .map(|transition| transition.timestamp())
            .into_iter()
            .collect(),
    }
}

/// The next instant strictly after `at` whose local time is `tod` (DST gaps: the first
/// instant after the gap; folds: each of the two instants in turn).
pub fn next_time_of_day(tz: &jiff::tz::TimeZone, at: Millis, tod: TimeOfDay) -> Millis {
    let after = timestamp(at);
    let today = tz.to_datetime(after).date();
    let (hour, minute) = ((tod.minutes / 60).min(23) as i8, (tod.minutes % 60) as i8);
    // The day before too: an offset change can put the answer on a different local date
    // than a naive "today or tomorrow" would.
    let mut day = today.yesterday().unwrap_or(today);
    let mut found = None;
    for _ in 0..5 {
        let candidate = instants_of(tz, day.at(hour, minute, 0, 0))
            .into_iter()
            .find(|t| *t > after);
        if let Some(t) = candidate {
            found = Some(found.map_or(t, |f: Timestamp| f.min(t)));
        }
        match day.tomorrow() {
            Ok(next) => day = next,
            Err(_) => break,
        }
    }
    // Only at the edge of jiff's range (year 9999) is there no next day.
    found.map_or(at.saturating_add(86_400_000), |t| t.as_millisecond())
}

/// The local day of `at`: days since 1970-01-01 in `tz`.
pub fn local_day(tz: &jiff::tz::TimeZone, at: Millis) -> i32 {
    days_from_civil(tz.to_datetime(timestamp(at)).date())
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian; Howard Hinnant's algorithm).
fn days_from_civil(date: Date) -> i32 {
    let (m, d) = (i32::from(date.month()), i32::from(date.day()));
    let y = i32::from(date.year()) - i32::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Whether a private message's text opts the fan out: after trimming whitespace and
/// punctuation and folding full-width letters and case, it is exactly `退订`, `TD`, `T` or
/// `stop` (`td`, `Ｔ Ｄ`, `STOP!` count; `退订了吗` and `stop by` do not).
pub fn is_opt_out(text: &str) -> bool {
    let folded: String = text.chars().map(fold_full_width).collect();
    let core = folded.trim_matches(|c: char| c.is_whitespace() || is_punctuation(c));
    if core == "退订" {
        return true;
    }
    let letters: String = core.chars().filter(|c| !c.is_whitespace()).collect();
    ["TD", "T", "STOP"]
        .iter()
        .any(|word| letters.eq_ignore_ascii_case(word))
}

/// A full-width ASCII form (U+FF01..=U+FF5E, `Ｔ`, `！`) as its ASCII character; others as
/// they are.
fn fold_full_width(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        _ => c,
    }
}

/// ASCII punctuation and the punctuation fans type around a word in Chinese: CJK symbols
/// and punctuation (`。`, `、`, `【】`, `〜`), the general punctuation block (`…`, `—`,
/// `“”`), `·` and `～` and the rest of the full-width forms that are not letters or digits.
fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
        || matches!(c,
            '\u{00A1}'..='\u{00BF}' // ¡ « · » ¿ and the like
            | '\u{2010}'..='\u{206F}' // general punctuation
            | '\u{3000}'..='\u{303F}' // CJK symbols and punctuation
            | '\u{FE10}'..='\u{FE1F}' // vertical forms
            | '\u{FE30}'..='\u{FE6F}' // compatibility and small forms
            | '\u{FF01}'..='\u{FF0F}'
            | '\u{FF1A}'..='\u{FF20}'
            | '\u{FF3B}'..='\u{FF40}'
            | '\u{FF5B}'..='\u{FF65}')
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
    Reply {
        conversation: String,
        message: String,
    },
    /// A proactive message to an authorized fan.
    Proactive,
    /// Not allowed, and why.
    Forbidden(Skip),
}

/// Decides a Douyin private message at `now`, in this order:
/// 1. the fan's latest message is inside the reply window (`now - at <= reply_window`) and
///    fewer than `replies_per_message` replies went since: a [`ImDecision::Reply`] citing it;
/// 2. else, the fan authorized proactive messages: [`ImDecision::Proactive`] if fewer than
///    `proactive_per_day` went today, else forbidden with [`Skip::DailyCap`];
/// 3. else, inside the window but the replies are used up: [`Skip::DailyCap`];
/// 4. else (no message at all, or only an older one, and no authorization):
///    [`Skip::OutsideReplyWindow`].
///
/// [`Skip::NotAuthorized`] is not decided here: the caller uses it for a step explicitly
/// marked proactive, sent to a fan who has not authorized.
pub fn douyin_decide(rules: &DouyinRules, im: &ImState, now: Millis) -> ImDecision {
    let in_window = im
        .last_in
        .as_ref()
        .filter(|(at, _, _)| now.saturating_sub(*at) <= rules.reply_window);
    if let Some((_, conversation, message)) = in_window
        && im.replies < rules.replies_per_message
    {
        return ImDecision::Reply {
            conversation: conversation.clone(),
            message: message.clone(),
        };
    }
    if im.authorized {
        return if im.proactive_today < rules.proactive_per_day {
            ImDecision::Proactive
        } else {
            ImDecision::Forbidden(Skip::DailyCap)
        };
    }
    if in_window.is_some() {
        ImDecision::Forbidden(Skip::DailyCap)
    } else {
        ImDecision::Forbidden(Skip::OutsideReplyWindow)
    }
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
    /// `now` (an entry exactly 60 s old no longer counts); else `Err(at)`: the instant a
    /// send may go, when the oldest counted send leaves the window. With `per_minute == 0`
    /// nothing is ever admitted: `Err(Millis::MAX)`.
    pub fn admit(&mut self, now: Millis, per_minute: usize) -> Result<(), Millis> {
        const WINDOW: Millis = 60_000;
        let horizon = now.saturating_sub(WINDOW);
        while self.sent.front().is_some_and(|&t| t <= horizon) {
            self.sent.pop_front();
        }
        if self.sent.len() < per_minute {
            // Keep oldest first even if a caller's clock steps back.
            let at = self.sent.partition_point(|&t| t <= now);
            self.sent.insert(at, now);
            Ok(())
        } else {
            Err(self
                .sent
                .front()
                .map_or(Millis::MAX, |&t| t.saturating_add(WINDOW)))
        }
    }
}

/// What an HTTP answer means for a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Try again (timeouts, connection errors, 408, 429, 5xx), not before the instant
    /// `after` if the channel said (`Retry-After`).
    Retry {
        after: Option<Millis>,
    },
    /// Other 4xx, or an answer the channel's protocol calls a refusal.
    Permanent,
}

/// An HTTP status (and `Retry-After` value, seconds or an HTTP date, relative to `now`) as a
/// verdict; `None` status means the request never got an answer (timeout, connection).
///
/// 2xx is delivered; 408, 429 and 5xx are retried; every other status (other 4xx, 1xx,
/// 3xx) is permanent. `Retry-After` counts for 429 and 5xx only: integer seconds become
/// `now + s`, an HTTP date (`Wed, 21 Oct 2015 07:28:00 GMT`) that instant, anything else is
/// ignored.
pub fn classify(status: Option<u16>, retry_after: Option<&str>, now: Millis) -> Verdict {
    match status {
        None | Some(408) => Verdict::Retry { after: None },
        Some(200..=299) => Verdict::Delivered,
        Some(429 | 500..=599) => Verdict::Retry {
            after: retry_after.and_then(|v| parse_retry_after(v, now)),
        },
        Some(_) => Verdict::Permanent,
    }
}

/// A `Retry-After` value as an instant: delay-seconds or an HTTP date.
fn parse_retry_after(value: &str, now: Millis) -> Option<Millis> {
    static PARSER: jiff::fmt::rfc2822::DateTimeParser = jiff::fmt::rfc2822::DateTimeParser::new();
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits to fit is as far in the future as can be said.
        let seconds: i64 = value.parse().unwrap_or(i64::MAX);
        return Some(now.saturating_add(seconds.saturating_mul(1000)));
    }
    PARSER
        .parse_timestamp(value)
        .ok()
        .map(|t| t.as_millisecond())
}

/// The delay in milliseconds before attempt `attempt + 1` after `attempt` failures:
/// exponential from 1 s (`attempt` 0), doubling, capped at 10 min, with jitter drawn from
/// `jitter` in [0, 1) (so the delay is in [base/2, base)), and never shorter than
/// `retry_after` when given. `retry_after` is a delay in ms, not an instant: a caller with
/// [`Verdict::Retry`]'s `after` passes `after - now`. Saturates for any `attempt`.
pub fn backoff(attempt: i32, jitter: f64, retry_after: Option<Millis>) -> Millis {
    const BASE: Millis = 1000;
    const CAP: Millis = 600_000;
    let doublings = attempt.clamp(0, 30) as u32;
    let base = BASE.saturating_mul(1 << doublings).min(CAP);
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let half = base / 2;
    // Below `base` even if `jitter` is 1.0.
    let delay = (half + (jitter * half as f64) as Millis).min(base - 1);
    retry_after.map_or(delay, |wait| delay.max(wait))
}

/// Attempts before a retryable failure is given up as dead.
pub const MAX_ATTEMPTS: i32 = 12;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(s: &str) -> Millis {
        s.parse::<Timestamp>().unwrap().as_millisecond()
    }

    fn tz(name: &str) -> TimeZone {
        TimeZone::get(name).unwrap()
    }

    fn tod(h: u16, m: u16) -> TimeOfDay {
        TimeOfDay {
            minutes: h * 60 + m,
        }
    }

    #[test]
    fn default_quiet_hours_are_ten_at_night_to_eight_in_the_morning() {
        let q = QuietHours::default_hours();
        assert_eq!((q.start, q.end), (tod(22, 0), tod(8, 0)));
    }

    #[test]
    fn quiet_hours_spanning_midnight_end_on_the_right_day() {
        let sh = tz("Asia/Shanghai");
        let q = QuietHours::default_hours();
        // 23:00 local: ends the next morning at 08:00 (+08:00).
        assert_eq!(
            q.ends_after(&sh, ms("2024-01-01T15:00:00Z")),
            Some(ms("2024-01-02T00:00:00Z"))
        );
        // 07:00 local: ends the same morning.
        assert_eq!(
            q.ends_after(&sh, ms("2024-01-01T23:00:00Z")),
            Some(ms("2024-01-02T00:00:00Z"))
        );
        // 22:00 exactly is quiet, 08:00 exactly is not.
        assert_eq!(
            q.ends_after(&sh, ms("2024-01-01T14:00:00Z")),
            Some(ms("2024-01-02T00:00:00Z"))
        );
        assert_eq!(q.ends_after(&sh, ms("2024-01-02T00:00:00Z")), None);
        assert_eq!(
            q.ends_after(&sh, ms("2024-01-01T23:59:59.999Z")),
            Some(ms("2024-01-02T00:00:00Z"))
        );
        // Noon and 21:59 local: not quiet.
        assert_eq!(q.ends_after(&sh, ms("2024-01-01T04:00:00Z")), None);
        assert_eq!(q.ends_after(&sh, ms("2024-01-01T13:59:00Z")), None);
    }

    #[test]
    fn quiet_hours_inside_one_day_and_none() {
        let sh = tz("Asia/Shanghai");
        let lunch = QuietHours {
            start: tod(12, 0),
            end: tod(14, 0),
        };
        assert_eq!(
            lunch.ends_after(&sh, ms("2024-01-01T05:00:00Z")),
            Some(ms("2024-01-01T06:00:00Z"))
        );
        assert_eq!(lunch.ends_after(&sh, ms("2024-01-01T06:00:00Z")), None);
        assert_eq!(lunch.ends_after(&sh, ms("2024-01-01T03:59:00Z")), None);
        let none = QuietHours {
            start: tod(9, 0),
            end: tod(9, 0),
        };
        for h in 0..24 {
            let at = ms("2024-01-01T00:00:00Z") + h * 3_600_000;
            assert_eq!(none.ends_after(&sh, at), None);
        }
    }

    #[test]
    fn quiet_hours_ending_inside_a_dst_gap_end_when_the_gap_does() {
        let ny = tz("America/New_York");
        let q = QuietHours {
            start: tod(22, 0),
            end: tod(2, 30),
        };
        // 2024-03-10 01:00 EST; 02:30 does not exist that night, 03:00 EDT is 07:00Z.
        assert_eq!(
            q.ends_after(&ny, ms("2024-03-10T06:00:00Z")),
            Some(ms("2024-03-10T07:00:00Z"))
        );
        // Default hours across the gap: 23:00 EST on the 9th ends at 08:00 EDT.
        assert_eq!(
            QuietHours::default_hours().ends_after(&ny, ms("2024-03-10T04:00:00Z")),
            Some(ms("2024-03-10T12:00:00Z"))
        );
    }

    #[test]
    fn next_time_of_day_is_strictly_after() {
        let sh = tz("Asia/Shanghai");
        let nine = tod(9, 0);
        assert_eq!(
            next_time_of_day(&sh, ms("2024-01-01T00:59:00Z"), nine),
            ms("2024-01-01T01:00:00Z")
        );
        assert_eq!(
            next_time_of_day(&sh, ms("2024-01-01T01:00:00Z"), nine),
            ms("2024-01-02T01:00:00Z")
        );
        assert_eq!(
            next_time_of_day(&sh, ms("2023-12-31T16:00:00Z"), tod(0, 0)),
            ms("2024-01-01T16:00:00Z")
        );
        // Year end.
        assert_eq!(
            next_time_of_day(&sh, ms("2024-12-31T02:00:00Z"), nine),
            ms("2025-01-01T01:00:00Z")
        );
    }

    #[test]
    fn next_time_of_day_in_a_dst_gap_is_the_first_instant_after_it() {
        let ny = tz("America/New_York");
        let half_past_two = tod(2, 30);
        for at in [
            "2024-03-09T17:00:00Z",
            "2024-03-10T06:00:00Z",
            "2024-03-10T06:59:59.999Z",
        ] {
            assert_eq!(
                next_time_of_day(&ny, ms(at), half_past_two),
                ms("2024-03-10T07:00:00Z"),
                "{at}"
            );
        }
        // From the gap's end on, the next 02:30 is the following night (EDT).
        assert_eq!(
            next_time_of_day(&ny, ms("2024-03-10T07:00:00Z"), half_past_two),
            ms("2024-03-11T06:30:00Z")
        );
        // A time of day the gap does not touch keeps its local time.
        assert_eq!(
            next_time_of_day(&ny, ms("2024-03-10T06:00:00Z"), tod(9, 0)),
            ms("2024-03-10T13:00:00Z")
        );
    }

    #[test]
    fn next_time_of_day_in_a_dst_fold_takes_each_occurrence() {
        let ny = tz("America/New_York");
        let half_past_one = tod(1, 30);
        // 2024-11-03: 01:30 EDT is 05:30Z, 01:30 EST is 06:30Z.
        assert_eq!(
            next_time_of_day(&ny, ms("2024-11-03T05:00:00Z"), half_past_one),
            ms("2024-11-03T05:30:00Z")
        );
        assert_eq!(
            next_time_of_day(&ny, ms("2024-11-03T05:30:00Z"), half_past_one),
            ms("2024-11-03T06:30:00Z")
        );
        assert_eq!(
            next_time_of_day(&ny, ms("2024-11-03T06:30:00Z"), half_past_one),
            ms("2024-11-04T06:30:00Z")
        );
    }

    #[test]
    fn local_days_count_from_the_epoch_in_local_time() {
        let sh = tz("Asia/Shanghai");
        assert_eq!(local_day(&TimeZone::UTC, 0), 0);
        assert_eq!(local_day(&TimeZone::UTC, -1), -1);
        assert_eq!(local_day(&sh, ms("1970-01-01T15:59:59Z")), 0);
        assert_eq!(local_day(&sh, ms("1970-01-01T16:00:00Z")), 1);
        assert_eq!(local_day(&sh, ms("2024-03-10T00:00:00Z")), 19_792);
        assert_eq!(local_day(&sh, ms("2024-03-09T16:00:00Z")), 19_792);
        assert_eq!(local_day(&sh, ms("2024-03-09T15:59:59Z")), 19_791);
    }

    proptest! {
        #[test]
        fn local_day_agrees_with_jiff(at in -5_000_000_000_000i64..10_000_000_000_000) {
            let sh = tz("Asia/Shanghai");
            let date = timestamp(at).to_zoned(sh.clone()).date();
            let days = date
                .since((jiff::Unit::Day, jiff::civil::date(1970, 1, 1)))
                .unwrap()
                .get_days();
            prop_assert_eq!(local_day(&sh, at), days);
        }

        #[test]
        fn next_time_of_day_is_after_and_has_that_local_time(
            at in 0i64..4_000_000_000_000,
            minutes in 0u16..1440,
        ) {
            let ny = tz("America/New_York");
            let next = next_time_of_day(&ny, at, TimeOfDay { minutes });
            prop_assert!(next > at);
            prop_assert!(next - at <= 25 * 3_600_000);
            let local = timestamp(next).to_zoned(ny.clone());
            let local_minutes = local.hour() as u16 * 60 + local.minute() as u16;
            // Equal, or the end of a gap that skipped it.
            if local_minutes != minutes {
                let gap_end = ny.preceding(timestamp(next + 1)).next().unwrap().timestamp();
                prop_assert_eq!(gap_end.as_millisecond(), next);
            }
        }
    }

    #[test]
    fn opt_out_words() {
        for yes in [
            "退订",
            "TD",
            "td",
            "Td",
            "T",
            "t",
            "STOP",
            "stop",
            "Stop",
            "STOP!",
            " 退订。",
            "退订！",
            "Ｔ Ｄ",
            "ＴＤ",
            "ｔｄ",
            "Ｔ",
            "ＳＴＯＰ",
            "T D",
            "s t o p",
            "td~",
            "TD～",
            "【退订】",
            "「退订」",
            "退订…",
            "\u{3000}退订\u{3000}",
            "?td?",
            "\n STOP. \t",
        ] {
            assert!(is_opt_out(yes), "{yes:?}");
        }
        for no in [
            "",
            " ",
            "!!",
            "退订了吗",
            "退",
            "不退订",
            "stop by",
            "TDD",
            "TDS",
            "stopp",
            "S",
            "TT",
            "tea",
            "退订 TD",
            "td 退订",
            "T.D",
            "你好",
            "Ｔ Ｄ Ｄ",
        ] {
            assert!(!is_opt_out(no), "{no:?}");
        }
    }

    proptest! {
        #[test]
        fn opt_out_never_panics(text in any::<String>()) {
            let _ = is_opt_out(&text);
        }

        #[test]
        fn opt_out_ignores_surrounding_punctuation(
            word in prop::sample::select(vec!["退订", "TD", "t", "Stop"]),
            left in "[ 。！!.?？~～、\\t]{0,4}",
            right in "[ 。！!.?？~～、\\t]{0,4}",
        ) {
            let text = format!("{left}{word}{right}");
            prop_assert!(is_opt_out(&text), "{:?}", text);
        }

        #[test]
        fn opt_out_refuses_a_longer_message(
            word in prop::sample::select(vec!["退订", "TD", "T", "STOP"]),
            tail in "[a-zA-Z\u{4e00}-\u{9fa5}]{1,5}",
        ) {
            let text = format!("{word}{tail}");
            // "T" and "d" make "Td", which is one.
            prop_assume!(!text.eq_ignore_ascii_case("td"));
            prop_assert!(!is_opt_out(&text), "{:?}", text);
        }
    }

    const HOUR: Millis = 3_600_000;

    fn im(
        last_in: Option<Millis>,
        replies: i32,
        authorized: bool,
        proactive_today: i32,
    ) -> ImState {
        ImState {
            last_in: last_in.map(|at| (at, "conv".to_owned(), "msg".to_owned())),
            replies,
            authorized,
            proactive_today,
        }
    }

    #[test]
    fn douyin_replies_inside_the_window_with_replies_left() {
        let rules = DouyinRules::default();
        let now = 100 * HOUR;
        let reply = ImDecision::Reply {
            conversation: "conv".to_owned(),
            message: "msg".to_owned(),
        };
        assert_eq!(
            douyin_decide(&rules, &im(Some(now - HOUR), 0, false, 0), now),
            reply
        );
        // The window's edge is inside it.
        assert_eq!(
            douyin_decide(&rules, &im(Some(now - 48 * HOUR), 4, false, 0), now),
            reply
        );
        // A reply goes before the proactive quota is touched.
        assert_eq!(
            douyin_decide(&rules, &im(Some(now), 0, true, 3), now),
            reply
        );
    }

    #[test]
    fn douyin_goes_proactive_for_an_authorized_fan_with_quota_left() {
        let rules = DouyinRules::default();
        let now = 100 * HOUR;
        // No message at all.
        assert_eq!(
            douyin_decide(&rules, &im(None, 0, true, 0), now),
            ImDecision::Proactive
        );
        // An old message.
        assert_eq!(
            douyin_decide(&rules, &im(Some(now - 48 * HOUR - 1), 0, true, 2), now),
            ImDecision::Proactive
        );
        // Inside the window with the replies used up.
        assert_eq!(
            douyin_decide(&rules, &im(Some(now - HOUR), 5, true, 0), now),
            ImDecision::Proactive
        );
    }

    #[test]
    fn douyin_forbids_with_the_reason() {
        let rules = DouyinRules::default();
        let now = 100 * HOUR;
        let forbidden = |s| ImDecision::Forbidden(s);
        // Authorized, quota used.
        assert_eq!(
            douyin_decide(&rules, &im(None, 0, true, 3), now),
            forbidden(Skip::DailyCap)
        );
        assert_eq!(
            douyin_decide(&rules, &im(Some(now - 49 * HOUR), 0, true, 3), now),
            forbidden(Skip::DailyCap)
        );
        // Not authorized, inside the window, replies used.
        assert_eq!(
            douyin_decide(&rules, &im(Some(now - HOUR), 5, false, 0), now),
            forbidden(Skip::DailyCap)
        );
        // Not authorized, outside the window or no message.
        assert_eq!(
            douyin_decide(&rules, &im(Some(now - 48 * HOUR - 1), 0, false, 0), now),
            forbidden(Skip::OutsideReplyWindow)
        );
        assert_eq!(
            douyin_decide(&rules, &im(None, 0, false, 0), now),
            forbidden(Skip::OutsideReplyWindow)
        );
    }

    #[test]
    fn skip_codes_round_trip() {
        for s in Skip::ALL {
            assert_eq!(Skip::parse(s.as_str()), Some(s));
        }
        assert_eq!(Skip::parse("nope"), None);
    }

    #[test]
    fn rate_window_admits_per_minute_and_says_when() {
        let mut w = RateWindow::default();
        for i in 0..20 {
            assert_eq!(w.admit(1000 + i * 100, WECOM_PER_MINUTE), Ok(()));
        }
        assert_eq!(w.admit(5000, WECOM_PER_MINUTE), Err(61_000));
        assert_eq!(w.admit(60_999, WECOM_PER_MINUTE), Err(61_000));
        // The oldest is exactly 60 s old: it no longer counts.
        assert_eq!(w.admit(61_000, WECOM_PER_MINUTE), Ok(()));
        assert_eq!(w.admit(61_000, WECOM_PER_MINUTE), Err(61_100));
        assert_eq!(w.sent.len(), 20);
        // A minute of silence empties it.
        assert_eq!(w.admit(200_000, WECOM_PER_MINUTE), Ok(()));
        assert_eq!(w.sent.len(), 1);
        assert_eq!(RateWindow::default().admit(0, 0), Err(Millis::MAX));
    }

    proptest! {
        #[test]
        fn rate_window_never_admits_more_than_per_minute(
            gaps in prop::collection::vec(0i64..5_000, 1..300),
            per_minute in 1usize..30,
        ) {
            let mut w = RateWindow::default();
            let mut admitted: Vec<Millis> = Vec::new();
            let mut now = 0;
            for gap in gaps {
                now += gap;
                match w.admit(now, per_minute) {
                    Ok(()) => admitted.push(now),
                    Err(at) => {
                        prop_assert!(at > now);
                        let mut probe = w.clone();
                        prop_assert!(probe.admit(at, per_minute).is_ok());
                        prop_assert!(w.clone().admit(at - 1, per_minute).is_err());
                    }
                }
                let recent = admitted.iter().filter(|&&t| t > now - 60_000).count();
                prop_assert!(recent <= per_minute);
            }
        }
    }

    #[test]
    fn classify_statuses() {
        let now = ms("2015-10-21T07:00:00Z");
        assert_eq!(classify(None, None, now), Verdict::Retry { after: None });
        assert_eq!(
            classify(None, Some("5"), now),
            Verdict::Retry { after: None }
        );
        for ok in [200, 201, 204, 299] {
            assert_eq!(classify(Some(ok), None, now), Verdict::Delivered);
        }
        for retry in [408, 429, 500, 502, 503, 599] {
            assert_eq!(
                classify(Some(retry), None, now),
                Verdict::Retry { after: None }
            );
        }
        for permanent in [
            100, 101, 301, 304, 400, 401, 403, 404, 409, 413, 499, 600, 0,
        ] {
            assert_eq!(
                classify(Some(permanent), Some("5"), now),
                Verdict::Permanent,
                "{permanent}"
            );
        }
    }

    #[test]
    fn classify_reads_retry_after() {
        let now = ms("2015-10-21T07:00:00Z");
        let after = |v| match classify(Some(429), Some(v), now) {
            Verdict::Retry { after } => after,
            other => panic!("{other:?}"),
        };
        assert_eq!(after("120"), Some(now + 120_000));
        assert_eq!(after(" 0 "), Some(now));
        assert_eq!(
            after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(ms("2015-10-21T07:28:00Z"))
        );
        assert_eq!(after("99999999999999999999999"), Some(Millis::MAX));
        for garbage in [
            "",
            "soon",
            "-5",
            "1.5",
            "12s",
            "21 Oct 2015",
            "Wed, 32 Oct 2015 07:28:00 GMT",
        ] {
            assert_eq!(after(garbage), None, "{garbage:?}");
        }
        assert_eq!(
            classify(Some(503), Some("7"), now),
            Verdict::Retry {
                after: Some(now + 7000)
            }
        );
        // 408 is a timeout: the header is not part of it.
        assert_eq!(
            classify(Some(408), Some("7"), now),
            Verdict::Retry { after: None }
        );
    }

    #[test]
    fn backoff_doubles_from_a_second_to_ten_minutes() {
        assert_eq!(backoff(0, 0.0, None), 500);
        assert_eq!(backoff(0, 0.5, None), 750);
        assert_eq!(backoff(0, 0.999_999, None), 999);
        assert_eq!(backoff(1, 0.0, None), 1000);
        assert_eq!(backoff(3, 0.0, None), 4000);
        assert_eq!(backoff(9, 0.0, None), 256_000);
        assert_eq!(backoff(10, 0.0, None), 300_000);
        assert_eq!(backoff(11, 0.0, None), 300_000);
        assert_eq!(backoff(i32::MAX, 0.999, None), 599_700);
        assert_eq!(backoff(-3, 0.0, None), 500);
        assert_eq!(backoff(2, 0.0, Some(10_000)), 10_000);
        assert_eq!(backoff(2, 0.0, Some(10)), 2000);
        assert_eq!(backoff(2, f64::NAN, None), 2000);
    }

    proptest! {
        #[test]
        fn backoff_stays_in_its_band(attempt in any::<i32>(), jitter in 0.0f64..1.0, wait in prop::option::of(0i64..10_000_000)) {
            let base = 1000i64.saturating_mul(1i64 << attempt.clamp(0, 30)).min(600_000);
            let delay = backoff(attempt, jitter, None);
            prop_assert!(base / 2 <= delay && delay < base);
            let with_wait = backoff(attempt, jitter, wait);
            prop_assert_eq!(with_wait, wait.map_or(delay, |w| w.max(delay)));
        }
    }
}
