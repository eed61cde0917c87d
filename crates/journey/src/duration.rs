//! Durations (`"45s"`, `"90m"`, `"2h"`, `"30d"`, `"1w"`) and times of day (`"09:30"`), as
//! journey files write them.

use siyu_domain::Millis;

/// Parses a duration: a positive integer and one unit, `s`, `m`, `h`, `d` or `w` (no
/// spaces, no mixed units; at most 366 days). The message says what is allowed.
pub fn parse(s: &str) -> Result<Millis, String> {
    let _ = s;
    todo!("issue 13: durations")
}

/// Formats a duration the way [`parse`] reads it, in the largest unit that divides it.
pub fn format(ms: Millis) -> String {
    let _ = ms;
    todo!("issue 13: durations")
}

/// A time of day, `HH:MM` on a 24-hour clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeOfDay {
    /// Minutes after midnight, 0..1440.
    pub minutes: u16,
}

impl TimeOfDay {
    pub fn parse(s: &str) -> Result<TimeOfDay, String> {
        let _ = s;
        todo!("issue 13: times of day")
    }
}

impl std::fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:02}:{:02}", self.minutes / 60, self.minutes % 60)
    }
}
