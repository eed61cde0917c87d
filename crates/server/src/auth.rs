//! API keys on requests: `Authorization: Bearer KEY`, or HTTP Basic with the key as the user
//! name (what Segment's libraries send), or — for Segment only — `writeKey` in the body.
//!
//! `crate::guard` checks the key in the headers before any body is read; a handler's own call
//! here then finds it in the app's key cache.

use axum::http::{HeaderMap, header};
use base64::Engine;
use siyu_app::{Caller, Role};

use crate::{ApiError, AppState};

/// The key in the `Authorization` header, if any.
pub fn header_key(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.trim().to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let user = text.split_once(':').map(|(u, _)| u).unwrap_or(&text);
        return Some(user.to_string());
    }
    None
}

/// The one answer to a request without a valid key, whatever is wrong with it (no header, a
/// header that is not a key, a key of no tenant): a client probing for keys learns nothing
/// from the differences.
pub fn unauthorized() -> ApiError {
    ApiError::Unauthorized("a missing or unknown API key: send Authorization: Bearer <key>".into())
}

/// Resolves a key to its tenant and role.
pub async fn authenticate(state: &AppState, key: Option<String>) -> Result<Caller, ApiError> {
    let key = key.ok_or_else(unauthorized)?;
    let app = state.app.clone();
    let found = tokio::task::spawn_blocking(move || app.authenticate(&key))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    found.ok_or_else(unauthorized)
}

/// Like [`authenticate`], but only an admin key will do.
pub async fn admin(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let caller = authenticate(state, header_key(headers)).await?;
    match caller.role {
        Role::Admin => Ok(caller),
        Role::Write | Role::Operator => Err(ApiError::Forbidden),
    }
}

/// A caller that speaks for a tenant (a write or admin key), for ingest: the operator's secret
/// names none.
pub async fn tenant(state: &AppState, key: Option<String>) -> Result<Caller, ApiError> {
    let caller = authenticate(state, key).await?;
    match caller.role {
        Role::Operator => Err(ApiError::Forbidden),
        Role::Write | Role::Admin => Ok(caller),
    }
}

/// Only the server's operator (its secret, from the lock file) will do.
pub async fn operator(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let caller = authenticate(state, header_key(headers)).await?;
    match caller.role {
        Role::Operator => Ok(caller),
        Role::Write | Role::Admin => Err(ApiError::Forbidden),
    }
}
