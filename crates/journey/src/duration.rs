//! Durations (`"45s"`, `"90m"`, `"2h"`, `"30d"`, `"1w"`) and times of day (`"09:30"`), as
//! journey files write them.
//!
//! One number and one unit, nothing else: a file is written by programs and read by
//! operators, and `"1h30m"` or `"2 hours"` would be one more dialect for both to learn.
//! [`format`] prints what [`parse`] reads, so a stored journey prints back as it was written.

use siyu_domain::Millis;
use siyu_domain::time::MS_PER_DAY;

/// The longest duration a file may write: a journey that waits longer is a calendar, not a
/// step.
pub const MAX: Millis = 366 * MS_PER_DAY;

/// The units, largest first, so [`format`] finds the largest that divides.
const UNITS: [(char, Millis); 5] = [
    ('w', 7 * MS_PER_DAY),
    ('d', MS_PER_DAY),
    ('h', 3_600_000),
    ('m', 60_000),
    ('s', 1_000),
];

const ALLOWED: &str =
    "a positive whole number and one unit (s, m, h, d or w), such as \"90m\" or \"30d\"";

/// Parses a duration: a positive integer and one unit, `s`, `m`, `h`, `d` or `w` (no
/// spaces, no mixed units; at most 366 days). The message says what is allowed.
pub fn parse(s: &str) -> Result<Millis, String> {
    let refused = || format!("\"{s}\" is not a duration; expected {ALLOWED}");
    let Some(unit) = s.chars().last() else {
        return Err(format!("the duration is empty; expected {ALLOWED}"));
    };
    let Some(&(_, per)) = UNITS.iter().find(|(u, _)| *u == unit) else {
        return Err(refused());
    };
    let digits = &s[..s.len() - unit.len_utf8()];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(refused());
    }
    let too_long = || format!("\"{s}\" is longer than 366 days");
    // Leading zeros make an arbitrarily long string of digits; they are no number to refuse.
    let n: Millis = match digits.trim_start_matches('0') {
        "" => return Err(format!("\"{s}\" is zero; expected {ALLOWED}")),
        d if d.len() > 18 => return Err(too_long()),
        d => d.parse().map_err(|_| refused())?,
    };
    match n.checked_mul(per) {
        Some(ms) if ms <= MAX => Ok(ms),
        _ => Err(too_long()),
    }
}

/// Formats a duration the way [`parse`] reads it, in the largest unit that divides it.
/// A value `parse` could not have produced (not whole seconds, or not positive) prints in
/// milliseconds, `"1500ms"`, so that it is visibly not a file's duration.
pub fn format(ms: Millis) -> String {
    match UNITS.iter().find(|(_, per)| ms > 0 && ms % per == 0) {
        Some((unit, per)) => format!("{}{unit}", ms / per),
        None => format!("{ms}ms"),
    }
}

/// A time of day, `HH:MM` on a 24-hour clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeOfDay {
    /// Minutes after midnight, 0..1440.
    pub minutes: u16,
}

impl TimeOfDay {
    /// Parses `HH:MM`, two digits each, `00:00` to `23:59`.
    pub fn parse(s: &str) -> Result<TimeOfDay, String> {
        let refused =
            || format!("\"{s}\" is not a time of day; expected HH:MM from 00:00 to 23:59");
        let b = s.as_bytes();
        let digit = |i: usize| (b[i] as char).to_digit(10).map(|d| d as u16);
        if b.len() != 5 || b[2] != b':' {
            return Err(refused());
        }
        let (Some(h1), Some(h2), Some(m1), Some(m2)) = (digit(0), digit(1), digit(3), digit(4))
        else {
            return Err(refused());
        };
        let (hours, minutes) = (h1 * 10 + h2, m1 * 10 + m2);
        if hours > 23 || minutes > 59 {
            return Err(refused());
        }
        Ok(TimeOfDay {
            minutes: hours * 60 + minutes,
        })
    }
}

impl std::fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:02}:{:02}", self.minutes / 60, self.minutes % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn durations_in_each_unit() {
        assert_eq!(parse("45s"), Ok(45_000));
        assert_eq!(parse("90m"), Ok(5_400_000));
        assert_eq!(parse("2h"), Ok(7_200_000));
        assert_eq!(parse("30d"), Ok(30 * MS_PER_DAY));
        assert_eq!(parse("1w"), Ok(7 * MS_PER_DAY));
        assert_eq!(parse("366d"), Ok(MAX));
        assert_eq!(parse("007d"), Ok(7 * MS_PER_DAY));
    }

    #[test]
    fn refused_durations_say_what_is_allowed() {
        for bad in [
            "", "2", "h", "0h", "-2h", "+2h", "2 h", " 2h", "1h30m", "2H", "2hours", "1.5h", "2ms",
            "２h", "2时",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(
                e.contains("expected a positive whole number"),
                "{bad:?}: {e}"
            );
        }
        assert!(parse("367d").unwrap_err().contains("366 days"));
        assert!(parse("53w").unwrap_err().contains("366 days"));
        assert!(
            parse("99999999999999999999999s")
                .unwrap_err()
                .contains("366 days")
        );
    }

    #[test]
    fn format_uses_the_largest_unit_that_divides() {
        assert_eq!(format(7_200_000), "2h");
        assert_eq!(format(5_400_000), "90m");
        assert_eq!(format(14 * MS_PER_DAY), "2w");
        assert_eq!(format(30 * MS_PER_DAY), "30d");
        assert_eq!(format(45_000), "45s");
        assert_eq!(format(1_500), "1500ms");
        assert_eq!(format(0), "0ms");
    }

    #[test]
    fn times_of_day() {
        assert_eq!(TimeOfDay::parse("09:30"), Ok(TimeOfDay { minutes: 570 }));
        assert_eq!(TimeOfDay::parse("00:00"), Ok(TimeOfDay { minutes: 0 }));
        assert_eq!(TimeOfDay::parse("23:59").unwrap().to_string(), "23:59");
        for bad in [
            "24:00",
            "12:60",
            "9:30",
            "09:3",
            "0930",
            "09-30",
            "09:30 ",
            "",
            "１２:００",
        ] {
            let e = TimeOfDay::parse(bad).unwrap_err();
            assert!(e.contains("HH:MM"), "{bad:?}: {e}");
        }
    }

    proptest! {
        #[test]
        fn durations_round_trip(n in 1i64..=366, unit in 0usize..5) {
            let (u, per) = UNITS[unit];
            let written = format!("{n}{u}");
            match parse(&written) {
                Ok(ms) => {
                    prop_assert_eq!(ms, n * per);
                    prop_assert_eq!(parse(&format(ms)), Ok(ms));
                }
                Err(_) => prop_assert!(n * per > MAX),
            }
        }

        #[test]
        fn times_of_day_round_trip(minutes in 0u16..1440) {
            let t = TimeOfDay { minutes };
            prop_assert_eq!(TimeOfDay::parse(&t.to_string()), Ok(t));
        }

        #[test]
        fn arbitrary_text_never_panics(s in ".{0,12}") {
            let _ = parse(&s);
            let _ = TimeOfDay::parse(&s);
        }
    }
}
