//! Working hours: `HH:MM-HH:MM` in the tenant's time zone, the end not included. An end
//! before the start spans midnight (`21:00-02:00`, a night shift); `24:00` ends at midnight.

use siyu_journey::duration::TimeOfDay;

use crate::LeadError;

/// Minutes in a day.
pub const DAY: u16 = 1440;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hours {
    /// Minutes after midnight, `0..1440`.
    pub start: u16,
    /// Minutes after midnight, `1..=1440`; not equal to `start`.
    pub end: u16,
}

impl Hours {
    /// Parses `HH:MM-HH:MM`; the refusal names the field `hours`.
    pub fn parse(s: &str) -> Result<Hours, LeadError> {
        let refused = |why: String| {
            LeadError::new(
                "hours",
                "invalid_hours",
                format!("\"{s}\" {why}; expected HH:MM-HH:MM such as 09:00-21:00"),
            )
        };
        let Some((a, b)) = s.split_once('-') else {
            return Err(refused("is not a range".into()));
        };
        let start = TimeOfDay::parse(a.trim()).map_err(refused)?.minutes;
        let end = match b.trim() {
            "24:00" => DAY,
            b => TimeOfDay::parse(b).map_err(refused)?.minutes,
        };
        if start == end {
            return Err(refused("is empty (it starts where it ends)".into()));
        }
        Ok(Hours { start, end })
    }

    /// Whether a local minute of the day (`0..1440`) is inside.
    pub fn contains(self, minute: u16) -> bool {
        if self.start < self.end {
            (self.start..self.end).contains(&minute)
        } else {
            minute >= self.start || minute < self.end
        }
    }

    /// Minutes from `minute` until the hours next begin (0 when inside).
    pub fn until_open(self, minute: u16) -> u16 {
        if self.contains(minute) {
            0
        } else {
            (self.start + DAY - minute) % DAY
        }
    }
}

impl std::fmt::Display for Hours {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        write!(f, "{}-{}", t(self.start), t(self.end))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_end_minute_is_outside() {
        let h = Hours::parse("09:00-21:00").unwrap();
        assert!(h.contains(9 * 60) && h.contains(21 * 60 - 1));
        assert!(!h.contains(21 * 60) && !h.contains(9 * 60 - 1));
    }

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn day_and_night_shifts() {
        let day = Hours::parse("09:00-21:00").unwrap();
        assert!(!day.contains(8 * 60 + 59));
        assert!(day.contains(9 * 60));
        assert!(day.contains(20 * 60 + 59));
        assert!(!day.contains(21 * 60));
        assert_eq!(day.until_open(8 * 60), 60);
        assert_eq!(day.until_open(22 * 60), 11 * 60);
        assert_eq!(day.until_open(12 * 60), 0);
        let night = Hours::parse("21:00-02:00").unwrap();
        assert!(night.contains(23 * 60) && night.contains(60) && !night.contains(2 * 60));
        assert_eq!(night.until_open(2 * 60), 19 * 60);
        let all = Hours::parse("00:00-24:00").unwrap();
        assert!((0..DAY).all(|m| all.contains(m)));
        assert_eq!(all.to_string(), "00:00-24:00");
        assert_eq!(day.to_string(), "09:00-21:00");
    }

    #[test]
    fn bad_hours_name_the_field() {
        for bad in [
            "9-21",
            "09:00",
            "09:00-09:00",
            "25:00-26:00",
            "09:00-21:60",
            "",
        ] {
            let e = Hours::parse(bad).unwrap_err();
            assert_eq!((e.field, e.code), ("hours", "invalid_hours"), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn until_open_lands_inside(start in 0u16..DAY, end in 1u16..=DAY, minute in 0u16..DAY) {
            prop_assume!(start != end);
            let h = Hours { start, end };
            let wait = h.until_open(minute);
            prop_assert!(h.contains((minute + wait) % DAY));
            prop_assert_eq!(Hours::parse(&h.to_string()), Ok(h));
        }

        #[test]
        fn parsing_never_panics(s in ".{0,16}") {
            let _ = Hours::parse(&s);
        }
    }
}
