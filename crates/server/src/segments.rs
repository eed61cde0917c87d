//! The segment API: count an expression's fans and look at a sample, before saving it.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State as Axum};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Map, Value, json};
use siyu_app::segments::{SegmentError, TagTarget};
use siyu_engine::FanId;

use crate::query::{number, optional_number, page};
use crate::{ApiError, State, auth, blocking};

/// A segment request body is small: an expression and a few options.
const BODY_LIMIT: usize = 64 * 1024;

impl From<SegmentError> for ApiError {
    fn from(e: SegmentError) -> Self {
        let status = match &e {
            SegmentError::NotFound(_) | SegmentError::NoFan(_) => StatusCode::NOT_FOUND,
            SegmentError::Exists(_) => StatusCode::CONFLICT,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::Status {
            status,
            code: e.code(),
            message: e.to_string(),
            field: e.field().map(str::to_string),
        }
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

fn string(o: &Map<String, Value>, k: &str) -> Result<Option<String>, ApiError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::bad(
            "invalid_field",
            Some(k),
            format!("{k} must be a string"),
        )),
    }
}

fn required(o: &Map<String, Value>, k: &str) -> Result<String, ApiError> {
    string(o, k)?.ok_or_else(|| ApiError::bad("missing_field", Some(k), format!("{k} is required")))
}

/// `POST /api/segments {"name", "expr", "tag"?}` → 201 with the saved segment and its count.
pub async fn create(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let o = object(&headers, raw, &["name", "expr", "tag"])?;
    let name = required(&o, "name")?;
    let text = expr(&o)?;
    let tag = string(&o, "tag")?;
    let app = state.app.clone();
    let saved =
        blocking(move || Ok(app.segment_save(tenant.id, &name, &text, tag.as_deref())??)).await?;
    Ok((StatusCode::CREATED, Json(json!(saved))))
}

/// `GET /api/segments` → every saved segment with its count now.
pub async fn list(Axum(state): Axum<State>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let app = state.app.clone();
    let list = blocking(move || Ok(app.segment_list(tenant.id)?)).await?;
    Ok(Json(json!({ "segments": list })))
}

/// `GET /api/segments/{id or name}` → the segment and its count now.
pub async fn get(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    Path(which): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let app = state.app.clone();
    let view = blocking(move || Ok(app.segment_get(tenant.id, &which)??)).await?;
    Ok(Json(json!(view)))
}

/// `GET /api/segments/{id or name}/members?offset=N&limit=N` (limit ≤ 10,000, default 100).
pub async fn members(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    Path(which): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let offset = number(&q, "offset", 0)? as usize;
    let limit = number(&q, "limit", 100)?.clamp(1, 10_000) as usize;
    let app = state.app.clone();
    let (count, members) =
        blocking(move || Ok(app.segment_members(tenant.id, &which, offset, limit)??)).await?;
    let next = (offset + members.len() < count).then_some(offset + members.len());
    Ok(Json(
        json!({"count": count, "offset": offset, "members": members, "next_offset": next}),
    ))
}

/// `DELETE /api/segments/{id or name}`.
pub async fn delete(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    Path(which): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let app = state.app.clone();
    let id = blocking(move || Ok(app.segment_delete(tenant.id, &which)??)).await?;
    Ok(Json(json!({ "deleted": id })))
}

/// `GET /api/segments/triggers?after=ID&segment=ID&fan=ID&limit=N&wait=S`:
/// `segment_entered` / `segment_exited` triggers, oldest first. With `wait` (seconds, ≤ 30)
/// and nothing new, the answer waits until something is recorded (a long poll).
pub async fn triggers(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let (after, limit) = page(&q)?;
    let segment = optional_number(&q, "segment")?;
    let fan = optional_number(&q, "fan")?.map(FanId);
    let wait = std::time::Duration::from_secs(number(&q, "wait", 0)?.min(30) as u64);
    let deadline = tokio::time::Instant::now() + wait;
    let mut changed = siyu_app::segments::subscribe_changes();
    loop {
        changed.borrow_and_update();
        let app = state.app.clone();
        let rows =
            blocking(move || Ok(app.segment_triggers(tenant.id, segment, fan, after, limit)?))
                .await?;
        if !rows.is_empty() || tokio::time::Instant::now() >= deadline {
            let next = rows.last().map_or(after, |t| t.id);
            return Ok(Json(json!({"triggers": rows, "next_after": next})));
        }
        // Woken by the next stored change, or at the deadline.
        let _ = tokio::time::timeout_at(deadline, changed.changed()).await;
    }
}

/// `POST /api/tags {"tag", "fan": ID | "expr": "...", "remove"?: bool}` → how many fans
/// changed.
pub async fn tag(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let o = object(&headers, raw, &["tag", "fan", "expr", "remove"])?;
    let tag = required(&o, "tag")?;
    let target = match (o.get("fan"), string(&o, "expr")?) {
        (Some(f), None) => TagTarget::Fan(FanId(f.as_i64().ok_or_else(|| {
            ApiError::bad(
                "invalid_field",
                Some("fan"),
                "fan must be a fan id (a number)",
            )
        })?)),
        (None, Some(e)) => TagTarget::Expr(e),
        _ => {
            return Err(ApiError::bad(
                "invalid_body",
                Some("fan"),
                "say which fans: either \"fan\": ID or \"expr\": \"...\"",
            ));
        }
    };
    let remove = match o.get("remove") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::bad(
                "invalid_field",
                Some("remove"),
                "remove must be true or false",
            ));
        }
    };
    let app = state.app.clone();
    let n = blocking(move || Ok(app.tag(tenant.id, target, &tag, !remove)??)).await?;
    Ok(Json(json!({ "changed": n })))
}

/// `POST /api/tags/auto {"tag", "expr"}` → 201: a saved segment named `tag:TAG` whose members
/// carry the tag, kept live.
pub async fn auto_tag(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let o = object(&headers, raw, &["tag", "expr"])?;
    let tag = required(&o, "tag")?;
    let text = expr(&o)?;
    let app = state.app.clone();
    let saved = blocking(move || {
        Ok(app.segment_save(tenant.id, &format!("tag:{tag}"), &text, Some(&tag))??)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(json!(saved))))
}

/// `GET /api/fans/{id}/tags` → the fan's tags now and their history.
pub async fn fan_tags(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let id: i64 = id.parse().map_err(|_| {
        ApiError::bad(
            "invalid_fan_id",
            Some("id"),
            format!("{id:?} is not a fan id"),
        )
    })?;
    let app = state.app.clone();
    let h = blocking(move || Ok(app.tag_history(tenant.id, FanId(id))??)).await?;
    Ok(Json(json!(h)))
}
