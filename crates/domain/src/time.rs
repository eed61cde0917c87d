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

/// Where a long-lived worker reads the time: one clock per process, injected, so that a test
/// moves it by hand and two runs of the same input derive the same instants.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Millis;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        now_ms()
    }
}

/// A clock that only moves when told to (tests).
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicI64);

impl ManualClock {
    pub fn new(at: Millis) -> ManualClock {
        ManualClock(std::sync::atomic::AtomicI64::new(at))
    }

    pub fn set(&self, at: Millis) {
        self.0.store(at, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn advance(&self, by: Millis) {
        self.0.fetch_add(by, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// `#[serde(serialize_with = "siyu_domain::time::rfc3339")]`: a [`Millis`] field written as
/// RFC 3339 in UTC with milliseconds (`2026-11-20T12:31:07.000Z`), the one time format of
/// every JSON answer.
pub fn rfc3339<S: serde::Serializer>(ms: &Millis, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_rfc3339(*ms))
}

/// [`rfc3339`] for an optional time (`null` when absent).
pub fn rfc3339_opt<S: serde::Serializer>(ms: &Option<Millis>, s: S) -> Result<S::Ok, S::Error> {
    match ms {
        Some(ms) => s.serialize_str(&format_rfc3339(*ms)),
        None => s.serialize_none(),
    }
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
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn serializes_fields_as_rfc3339_with_milliseconds() {
        #[derive(serde::Serialize)]
        struct T {
            #[serde(serialize_with = "rfc3339")]
            at: Millis,
            #[serde(serialize_with = "rfc3339_opt")]
            until: Option<Millis>,
        }
        let v = serde_json::to_value(T {
            at: 1_788_489_552_108,
            until: None,
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"at": "2026-09-04T02:39:12.108Z", "until": null})
        );
    }
}
