//! Event time. Stored and compared as milliseconds since the Unix epoch (Douyin's own unit);
//! read and written as RFC 3339.

use jiff::Timestamp;

/// Milliseconds since 1970-01-01T00:00:00Z.
pub type Millis = i64;

pub const MS_PER_DAY: Millis = 86_400_000;

/// Parses an RFC 3339 timestamp with an offset (`2026-10-31T00:00:00Z`,
/// `2026-10-31T08:00:00+08:00`). Anything without an offset is refused: an event time that
/// depends on the server's zone is not an event time.
pub fn parse_rfc3339(s: &str) -> Option<Millis> {
    s.parse::<Timestamp>().ok().map(|t| t.as_millisecond())
}

/// Formats as RFC 3339 in UTC with millisecond precision.
pub fn format_rfc3339(ms: Millis) -> String {
    match Timestamp::from_millisecond(ms) {
        Ok(t) => format!("{t:.3}"),
        Err(_) => ms.to_string(),
    }
}

/// The current time in milliseconds.
pub fn now_ms() -> Millis {
    Timestamp::now().as_millisecond()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_offsets_and_refuses_civil_times() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(parse_rfc3339("1970-01-01T08:00:01+08:00"), Some(1000));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(format_rfc3339(1500), "1970-01-01T00:00:01.500Z");
    }
}
