//! The trigger stream over HTTP: `GET /api/triggers` (a page, or a long poll with `wait`) and
//! the consumers' cursors under `/api/triggers/cursors`. Handlers parse the request and hand
//! it to `siyu_app::triggers`; nothing here reads the store.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State as Axum;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use serde_json::{Value, json};
use siyu_app::triggers::{Consumer, Read, Start, parse_types};
use siyu_domain::trigger::TypeSet;
use siyu_engine::FanId;

use crate::extract::{ConsumerParam, Query};
use crate::openapi::{AdminErrors, BodyErrors};
use crate::query::{number, optional_number};
use crate::{ApiError, State, auth, blocking, schema};

/// `GET /api/triggers?after=&consumer=&types=&fan=&limit=&wait=`: the tenant's triggers in
/// stream order. With `wait` (seconds, ≤ 30) and nothing new, the answer waits until something
/// is (a long poll).
#[utoipa::path(
    get,
    path = "/api/triggers",
    summary = "The trigger stream: events, layer changes, segment entries and exits, tag changes (long poll)",
    tag = "triggers",
    security(("admin_key" = [])),
    params(
        ("after" = Option<i64>, Query, minimum = 0, description = "Triggers at a later position (the `next_after` of the previous page; default 0, or the consumer's cursor)"),
        ("consumer" = Option<String>, Query, description = "Start after this consumer's stored cursor (when `after` is not given); reading does not move it"),
        ("types" = Option<String>, Query, description = "Only these types, comma-separated: event, layer_changed, segment_entered, segment_exited, tag_added, tag_removed"),
        ("fan" = Option<i64>, Query, minimum = 0, description = "Only this fan's (and the fans merged into it)"),
        ("limit" = Option<i64>, Query, minimum = 0, description = "At most this many (default 1000; clamped to 1–10,000)"),
        ("wait" = Option<i64>, Query, minimum = 0, description = "With nothing new, wait up to this many seconds (at most 30): a long poll"),
    ),
    responses(
        (status = 200, description = "Triggers, oldest first, and where the next page starts", body = schema::TriggerPage),
        (status = 400, description = "`invalid_number` (`field`: the parameter), `unknown_trigger_type` (`types`), `invalid_consumer`, `invalid_query`", body = schema::Error),
        (status = 404, description = "`fan_not_found`", body = schema::Error),
        AdminErrors,
    ),
)]
pub async fn stream(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    Query(q): Query,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let from = match (optional_number(&q, "after")?, q.get("consumer")) {
        (Some(after), _) => Start::After(after),
        (None, Some(name)) => Start::Cursor(Consumer::parse(name)?),
        (None, None) => Start::After(0),
    };
    let types = match q.get("types") {
        Some(list) => parse_types(list)?,
        None => TypeSet::ALL,
    };
    let read = Read {
        from,
        types,
        fan: optional_number(&q, "fan")?.map(FanId),
        limit: number(&q, "limit", 1000)?.clamp(1, 10_000) as usize,
    };
    let wait = std::time::Duration::from_secs(number(&q, "wait", 0)?.min(30) as u64);
    let deadline = tokio::time::Instant::now() + wait;
    let mut changed = siyu_app::triggers::subscribe();
    let mut read = read;
    loop {
        changed.borrow_and_update();
        let (app, r) = (state.app.clone(), read.clone());
        let page = blocking(move || Ok(app.triggers(tenant.id, &r)?)).await?;
        if !page.triggers.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(Json(json!(page)));
        }
        // Nothing shown: go on from what was looked at (filtered rows need not be read again).
        read.from = Start::After(page.next_after);
        // Woken by the writer's next unit of work, or at the deadline.
        let _ = tokio::time::timeout_at(deadline, changed.changed()).await;
    }
}

/// `GET /api/triggers/cursors`: every consumer's cursor.
#[utoipa::path(
    get,
    path = "/api/triggers/cursors",
    summary = "Every consumer's cursor",
    tag = "triggers",
    security(("admin_key" = [])),
    responses(
        (status = 200, description = "The cursors, by consumer name", body = schema::Cursors),
        AdminErrors,
    ),
)]
pub async fn cursors(
    Axum(state): Axum<State>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let app = state.app.clone();
    let all = blocking(move || Ok(app.trigger_cursors(tenant.id)?)).await?;
    Ok(Json(json!({ "cursors": all })))
}

/// `GET /api/triggers/cursors/{consumer}`.
#[utoipa::path(
    get,
    path = "/api/triggers/cursors/{consumer}",
    summary = "A consumer's cursor",
    tag = "triggers",
    security(("admin_key" = [])),
    params(("consumer" = String, Path, description = "1–64 lowercase letters, digits, '_', '-' or '.'")),
    responses(
        (status = 200, description = "The cursor", body = schema::Cursor),
        (status = 400, description = "`invalid_consumer`", body = schema::Error),
        (status = 404, description = "`cursor_not_found`", body = schema::Error),
        AdminErrors,
    ),
)]
pub async fn cursor_get(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    ConsumerParam(name): ConsumerParam,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let consumer = Consumer::parse(&name)?;
    let app = state.app.clone();
    let c = blocking(move || Ok(app.trigger_cursor(tenant.id, &consumer)?)).await?;
    Ok(Json(json!(c)))
}

/// `PUT /api/triggers/cursors/{consumer} {"after": N}`: the consumer has handled every trigger
/// up to `after`.
#[utoipa::path(
    put,
    path = "/api/triggers/cursors/{consumer}",
    summary = "Store a consumer's cursor",
    tag = "triggers",
    security(("admin_key" = [])),
    params(("consumer" = String, Path, description = "1–64 lowercase letters, digits, '_', '-' or '.'")),
    request_body = schema::CursorRequest,
    responses(
        (status = 200, description = "The cursor as stored", body = schema::Cursor),
        (status = 400, description = "`invalid_json`, `duplicate_key` (`field`: the key's path), `invalid_body`, `unknown_field`, `missing_field`, `invalid_field` (`after`), `invalid_consumer`, `cursor_ahead` (past the stream's head)", body = schema::Error),
        AdminErrors,
        BodyErrors,
    ),
)]
pub async fn cursor_put(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    ConsumerParam(name): ConsumerParam,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let consumer = Consumer::parse(&name)?;
    let Value::Object(o) = crate::body::json_body(&headers, raw, 4096)? else {
        return Err(ApiError::bad(
            "invalid_body",
            None,
            "the body must be a JSON object: {\"after\": N}",
        ));
    };
    if let Some(k) = o.keys().find(|k| k.as_str() != "after") {
        return Err(ApiError::bad(
            "unknown_field",
            Some(k),
            format!("unknown field {k:?}; expected after"),
        ));
    }
    let after = match o.get("after") {
        None => {
            return Err(ApiError::bad(
                "missing_field",
                Some("after"),
                "after is required: the position of the last trigger handled",
            ));
        }
        Some(v) => v.as_i64().filter(|n| *n >= 0).ok_or_else(|| {
            ApiError::bad(
                "invalid_field",
                Some("after"),
                "after must be a non-negative integer (a trigger's id)",
            )
        })?,
    };
    let app = state.app.clone();
    let c = blocking(move || Ok(app.set_trigger_cursor(tenant.id, &consumer, after)?)).await?;
    Ok(Json(json!(c)))
}
