//! Request bodies: the content type must be JSON, gzip is undone here (with the limit applied
//! to the *decompressed* size, so a small bomb cannot expand past it), and axum's raw-size
//! rejection becomes our JSON 413.

use std::io::Read;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use serde_json::Value;

use crate::ApiError;

/// The raw body, or our JSON 413 / 400 when axum could not read it.
pub fn raw_body(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(limit)
        } else {
            ApiError::bad("invalid_body", None, r.body_text())
        }
    })
}

/// Checks headers and size, decompresses, and parses JSON.
pub fn json_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<Value, ApiError> {
    let body = raw_body(body, limit)?;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime != "application/json" && !mime.ends_with("+json") {
        return Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type must be application/json, not {:?}",
            if ct.is_empty() { "(none)" } else { ct }
        )));
    }
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    let bytes: Vec<u8> = match encoding.as_str() {
        "identity" | "" => body.to_vec(),
        "gzip" | "x-gzip" => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&body[..])
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| {
                    ApiError::bad(
                        "invalid_body",
                        None,
                        format!("gzip body cannot be read: {e}"),
                    )
                })?;
            if out.len() > limit {
                return Err(ApiError::TooLarge(limit));
            }
            out
        }
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "Content-Encoding {other:?} is not supported; use gzip or none"
            )));
        }
    };
    crate::strict::from_slice(&bytes).map_err(ApiError::from)
}

/// A JSON object body ([`json_body`]) with only the `allowed` keys; `None` allows any (the
/// service names an unknown one itself).
pub fn json_object(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    limit: usize,
    allowed: Option<&[&str]>,
) -> Result<serde_json::Map<String, Value>, ApiError> {
    let Value::Object(o) = json_body(headers, body, limit)? else {
        return Err(ApiError::bad(
            "invalid_body",
            None,
            "the body must be a JSON object",
        ));
    };
    if let Some(allowed) = allowed
        && let Some(k) = o.keys().find(|k| !allowed.contains(&k.as_str()))
    {
        return Err(ApiError::bad(
            "unknown_field",
            Some(k),
            format!("unknown field {k:?}; expected {}", allowed.join(", ")),
        ));
    }
    Ok(o)
}
