//! The segment API: count an expression's fans and look at a sample, before saving it.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State as Axum;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use serde_json::{Map, Value, json};
use siyu_app::segments::SegmentError;

use crate::identity::blocking;
use crate::{ApiError, State, auth};

/// A segment request body is small: an expression and a few options.
const BODY_LIMIT: usize = 64 * 1024;

impl From<SegmentError> for ApiError {
    fn from(e: SegmentError) -> Self {
        ApiError::bad(e.code(), Some("expr"), e.to_string())
    }
}

/// The object body, with only the `allowed` keys.
fn object(
    headers: &HeaderMap,
    raw: Result<Bytes, BytesRejection>,
    allowed: &[&str],
) -> Result<Map<String, Value>, ApiError> {
    let Value::Object(o) = crate::body::json_body(headers, raw, BODY_LIMIT)? else {
        return Err(ApiError::bad(
            "invalid_body",
            None,
            "the body must be a JSON object",
        ));
    };
    if let Some(k) = o.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::bad(
            "unknown_field",
            Some(k),
            format!("unknown field {k:?}; expected {}", allowed.join(", ")),
        ));
    }
    Ok(o)
}

fn expr(o: &Map<String, Value>) -> Result<String, ApiError> {
    match o.get("expr") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(ApiError::bad(
            "invalid_field",
            Some("expr"),
            "expr must be a string",
        )),
        None => Err(ApiError::bad(
            "missing_field",
            Some("expr"),
            "expr is required: a segment expression such as \"layer >= favorable\"",
        )),
    }
}

/// `POST /api/segments/preview {"expr", "as_of"?, "sample"?}` → count, fans, and a sample of
/// fans (default 20, at most 1000).
pub async fn preview(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let o = object(&headers, raw, &["expr", "as_of", "sample"])?;
    let text = expr(&o)?;
    let as_of = match o.get("as_of") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => Some(siyu_domain::time::parse_rfc3339(t).ok_or_else(|| {
            ApiError::bad(
                "invalid_timestamp",
                Some("as_of"),
                format!("as_of {t:?} is not an RFC 3339 time"),
            )
        })?),
        Some(_) => {
            return Err(ApiError::bad(
                "invalid_timestamp",
                Some("as_of"),
                "as_of must be an RFC 3339 time string",
            ));
        }
    };
    let sample = match o.get("sample") {
        None => 20,
        Some(v) => v.as_u64().filter(|n| *n <= 1000).ok_or_else(|| {
            ApiError::bad(
                "invalid_field",
                Some("sample"),
                "sample must be a number from 0 to 1000",
            )
        })? as usize,
    };
    let app = state.app.clone();
    let answer = blocking(move || Ok(app.segment_count(tenant.id, &text, as_of, sample)??)).await?;
    Ok(Json(json!(answer)))
}
