//! Query parameters, parsed once for every handler: a bad one is refused with its name.

use std::collections::HashMap;

use crate::ApiError;

/// An optional RFC 3339 query parameter, refused with its name when it is not one.
pub(crate) fn time(q: &HashMap<String, String>, k: &str) -> Result<Option<i64>, ApiError> {
    q.get(k)
        .map(|v| {
            siyu_domain::time::parse_rfc3339(v).ok_or_else(|| {
                ApiError::bad(
                    "invalid_timestamp",
                    Some(k),
                    format!("{k} {v:?} is not an RFC 3339 time"),
                )
            })
        })
        .transpose()
}

/// A string parameter that, when given, is not empty (`invalid_field` naming it).
pub(crate) fn label(q: &HashMap<String, String>, k: &str) -> Result<Option<String>, ApiError> {
    match q.get(k) {
        None => Ok(None),
        Some(v) if v.is_empty() => Err(ApiError::bad(
            "invalid_field",
            Some(k),
            format!("{k} must not be empty; leave it out for all"),
        )),
        Some(v) => Ok(Some(v.clone())),
    }
}

/// A non-negative integer query parameter, `default` when absent.
pub(crate) fn number(q: &HashMap<String, String>, k: &str, default: i64) -> Result<i64, ApiError> {
    match q.get(k) {
        None => Ok(default),
        Some(v) => v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            ApiError::bad(
                "invalid_number",
                Some(k),
                format!("{k} {v:?} is not a non-negative integer"),
            )
        }),
    }
}

/// A non-negative integer query parameter that may be absent.
pub(crate) fn optional_number(
    q: &HashMap<String, String>,
    k: &str,
) -> Result<Option<i64>, ApiError> {
    q.get(k).map(|_| number(q, k, 0)).transpose()
}

/// `after` (default 0) and `limit` (default 1000, clamped to 1..=10,000) of a log read.
pub(crate) fn page(q: &HashMap<String, String>) -> Result<(i64, usize), ApiError> {
    Ok((
        number(q, "after", 0)?,
        number(q, "limit", 1000)?.clamp(1, 10_000) as usize,
    ))
}
