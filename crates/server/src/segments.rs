//! The segment API: count an expression's fans and look at a sample, before saving it.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State as Axum;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Map, Value, json};
use siyu_app::segments::TagTarget;
use siyu_engine::FanId;

use crate::extract::{IdParam, Query};
use crate::openapi::{AdminErrors, BodyErrors};
use crate::query::{number, optional_number, page};
use crate::{ApiError, State, auth, blocking, schema};

/// A segment request body is small: an expression and a few options.
const BODY_LIMIT: usize = 64 * 1024;

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
#[utoipa::path(
    post,
    path = "/api/segments/preview",
    summary = "Count and sample a segment expression",
    tag = "segments",
    security(("admin_key" = [])),
    request_body = schema::PreviewRequest,
    responses(
        (status = 200, description = "How many fans the expression selects, of how many, and a sample", body = schema::SegmentCount),
        (status = 400, description = "`invalid_json`, `duplicate_key` (`field`: the key's path), `invalid_body`, `unknown_field`, `missing_field`, `invalid_field`; `invalid_segment` (the expression does not parse: the message has the column and a caret), `unknown_group` and the other evaluation codes (docs/segments.md); `invalid_timestamp` (`as_of`)", body = schema::Error),
        AdminErrors,
        BodyErrors,
    ),
)]
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
        None | Some(Value::Null) => 20,
        Some(v) => v.as_u64().filter(|n| *n <= 1000).ok_or_else(|| {
            ApiError::bad(
                "invalid_field",
                Some("sample"),
                "sample must be a number from 0 to 1000",
            )
        })? as usize,
    };
    let app = state.app.clone();
    let answer =
        crate::readers::reading(move || Ok(app.segment_count(tenant.id, &text, as_of, sample)?))
            .await?;
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
#[utoipa::path(
    post,
    path = "/api/segments",
    summary = "Save a segment",
    tag = "segments",
    security(("admin_key" = [])),
    request_body = schema::SegmentCreate,
    responses(
        (status = 201, description = "Saved; its members are computed at once", body = schema::Segment),
        (status = 400, description = "`invalid_json`, `duplicate_key` (`field`: the key's path), `invalid_body`, `unknown_field`, `missing_field`, `invalid_field`; `invalid_segment` (the expression does not parse: the message has the column and a caret), `unknown_group` and the other evaluation codes (docs/segments.md)", body = schema::Error),
        (status = 409, description = "`segment_exists` (`field`: `name`)", body = schema::Error),
        AdminErrors,
        BodyErrors,
    ),
)]
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
        blocking(move || Ok(app.segment_save(tenant.id, &name, &text, tag.as_deref())?)).await?;
    Ok((StatusCode::CREATED, Json(json!(saved))))
}

/// `GET /api/segments` → every saved segment with its count now.
#[utoipa::path(
    get,
    path = "/api/segments",
    summary = "Saved segments",
    tag = "segments",
    security(("admin_key" = [])),
    responses((status = 200, description = "Every saved segment with its count now", body = schema::SegmentList), AdminErrors),
)]
pub async fn list(Axum(state): Axum<State>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let app = state.app.clone();
    let list = crate::readers::reading(move || Ok(app.segment_list(tenant.id)?)).await?;
    Ok(Json(json!({ "segments": list })))
}

/// `GET /api/segments/{id or name}` → the segment and its count now.
#[utoipa::path(
    get,
    path = "/api/segments/{id}",
    summary = "A saved segment",
    tag = "segments",
    security(("admin_key" = [])),
    params(("id" = String, Path, description = "A saved segment's id or name")),
    responses(
        (status = 200, description = "The segment and its count now", body = schema::Segment),
        (status = 400, description = "`invalid_path` (`field`: `id`)", body = schema::Error),
        (status = 404, description = "`segment_not_found`", body = schema::Error),
        AdminErrors,
    ),
)]
pub async fn get(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    IdParam(which): IdParam,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let app = state.app.clone();
    let view = crate::readers::reading(move || Ok(app.segment_get(tenant.id, &which)?)).await?;
    Ok(Json(json!(view)))
}

/// `GET /api/segments/{id or name}/members?offset=N&limit=N` (limit ≤ 10,000, default 100).
#[utoipa::path(
    get,
    path = "/api/segments/{id}/members",
    summary = "A page of a segment's members",
    tag = "segments",
    security(("admin_key" = [])),
    params(
        ("id" = String, Path, description = "A saved segment's id or name"),
        ("offset" = Option<i64>, Query, minimum = 0, description = "Skip this many (default 0)"),
        ("limit" = Option<i64>, Query, minimum = 0, description = "At most this many (default 100; clamped to 1–10,000)"),
    ),
    responses(
        (status = 200, description = "A page of the members now, by fan id", body = schema::Members),
        (status = 400, description = "`invalid_number` (`field`: the parameter), `invalid_query`, `invalid_path`", body = schema::Error),
        (status = 404, description = "`segment_not_found`", body = schema::Error),
        AdminErrors,
    ),
)]
pub async fn members(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    IdParam(which): IdParam,
    Query(q): Query,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let offset = number(&q, "offset", 0)? as usize;
    let limit = number(&q, "limit", 100)?.clamp(1, 10_000) as usize;
    let app = state.app.clone();
    let (count, members) =
        crate::readers::reading(move || Ok(app.segment_members(tenant.id, &which, offset, limit)?))
            .await?;
    let next = (offset + members.len() < count).then_some(offset + members.len());
    Ok(Json(
        json!({"count": count, "offset": offset, "members": members, "next_offset": next}),
    ))
}

/// `DELETE /api/segments/{id or name}`.
#[utoipa::path(
    delete,
    path = "/api/segments/{id}",
    summary = "Delete a saved segment",
    tag = "segments",
    security(("admin_key" = [])),
    params(("id" = String, Path, description = "A saved segment's id or name")),
    responses(
        (status = 200, description = "Deleted (its recorded entries and exits stay)", body = schema::Deleted),
        (status = 400, description = "`invalid_path` (`field`: `id`)", body = schema::Error),
        (status = 404, description = "`segment_not_found`", body = schema::Error),
        AdminErrors,
    ),
)]
pub async fn delete(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    IdParam(which): IdParam,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let app = state.app.clone();
    let id = blocking(move || Ok(app.segment_delete(tenant.id, &which)?)).await?;
    Ok(Json(json!({ "deleted": id })))
}

/// `GET /api/segments/triggers?after=ID&segment=ID&fan=ID&limit=N&wait=S`:
/// `segment_entered` / `segment_exited` triggers, oldest first. With `wait` (seconds, ≤ 30)
/// and nothing new, the answer waits until something is recorded (a long poll).
#[utoipa::path(
    get,
    path = "/api/segments/triggers",
    summary = "Segment entry and exit triggers (long poll)",
    tag = "segments",
    security(("admin_key" = [])),
    params(
        ("after" = Option<i64>, Query, minimum = 0, description = "Triggers with a larger id (the `next_after` of the previous page; default 0)"),
        ("segment" = Option<i64>, Query, minimum = 0, description = "Only this segment's"),
        ("fan" = Option<i64>, Query, minimum = 0, description = "Only this fan's (and the fans merged into it)"),
        ("limit" = Option<i64>, Query, minimum = 0, description = "At most this many (default 1000; clamped to 1–10,000)"),
        ("wait" = Option<i64>, Query, minimum = 0, description = "With nothing new, wait up to this many seconds (at most 30) for a trigger: a long poll"),
    ),
    responses(
        (status = 200, description = "`segment_entered` / `segment_exited` triggers, oldest first", body = schema::Triggers),
        (status = 400, description = "`invalid_number` (`field`: the parameter), `invalid_query`", body = schema::Error),
        AdminErrors,
    ),
)]
pub async fn triggers(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    Query(q): Query,
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
#[utoipa::path(
    post,
    path = "/api/tags",
    summary = "Add or remove a tag",
    tag = "segments",
    security(("admin_key" = [])),
    request_body(content = schema::TagRequest, description = "`tag` and either `fan` or `expr`"),
    responses(
        (status = 200, description = "How many fans changed", body = schema::Changed),
        (status = 400, description = "`invalid_json`, `duplicate_key` (`field`: the key's path), `invalid_body` (neither or both of `fan` and `expr`), `unknown_field`, `missing_field`, `invalid_field`, `invalid_segment` and the other expression codes", body = schema::Error),
        (status = 404, description = "`fan_not_found`", body = schema::Error),
        AdminErrors,
        BodyErrors,
    ),
)]
pub async fn tag(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let o = object(&headers, raw, &["tag", "fan", "expr", "remove"])?;
    let tag = required(&o, "tag")?;
    let target = match (o.get("fan").filter(|f| !f.is_null()), string(&o, "expr")?) {
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
        None | Some(Value::Null) => false,
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
    let n = blocking(move || Ok(app.tag(tenant.id, target, &tag, !remove)?)).await?;
    Ok(Json(json!({ "changed": n })))
}

/// `POST /api/tags/auto {"tag", "expr"}` → 201: a saved segment named `tag:TAG` whose members
/// carry the tag, kept live.
#[utoipa::path(
    post,
    path = "/api/tags/auto",
    summary = "An automatic tag kept by a segment",
    tag = "segments",
    security(("admin_key" = [])),
    request_body = schema::AutoTagRequest,
    responses(
        (status = 201, description = "A segment named `tag:TAG` is saved; its members carry the tag, kept live", body = schema::Segment),
        (status = 400, description = "`invalid_json`, `duplicate_key` (`field`: the key's path), `invalid_body`, `unknown_field`, `missing_field`, `invalid_field`; `invalid_segment` (the expression does not parse: the message has the column and a caret), `unknown_group` and the other evaluation codes (docs/segments.md)", body = schema::Error),
        (status = 409, description = "`segment_exists` (`field`: `name`): the tag already has one", body = schema::Error),
        AdminErrors,
        BodyErrors,
    ),
)]
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
        Ok(app.segment_save(tenant.id, &format!("tag:{tag}"), &text, Some(&tag))?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(json!(saved))))
}

/// `GET /api/fans/{id}/tags` → the fan's tags now and their history.
#[utoipa::path(
    get,
    path = "/api/fans/{id}/tags",
    summary = "A fan's tags and their history",
    tag = "segments",
    security(("admin_key" = [])),
    params(("id" = i64, Path, description = "A fan id")),
    responses(
        (status = 200, description = "The fan's tags now and their history", body = schema::TagHistory),
        (status = 400, description = "`invalid_fan_id` (`field`: `id`)", body = schema::Error),
        (status = 404, description = "`fan_not_found`", body = schema::Error),
        AdminErrors,
    ),
)]
pub async fn fan_tags(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    IdParam(id): IdParam,
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
    let h = blocking(move || Ok(app.tag_history(tenant.id, FanId(id))?)).await?;
    Ok(Json(json!(h)))
}
