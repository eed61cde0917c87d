//! The identity API: fans, lookups, possible duplicates, operator decisions, the dedup report.
//! All of it needs the tenant's admin key.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State as Axum;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use siyu_engine::{Decision, FanId};

use crate::extract::{IdParam, Query};
use crate::openapi::{AdminErrors, BodyErrors};
use crate::{ApiError, State, auth, blocking, body, schema};

fn fan_not_found(id: i64) -> ApiError {
    ApiError::Status {
        status: StatusCode::NOT_FOUND,
        code: "fan_not_found",
        message: format!("no fan {id} in this tenant"),
        field: None,
    }
}

/// Parses a fan id from the path, naming it when it is not a number.
fn fan_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().map_err(|_| {
        ApiError::bad(
            "invalid_fan_id",
            Some("id"),
            format!("fan id {raw:?} is not a number"),
        )
    })
}

/// `GET /api/fans/{id}`
#[utoipa::path(
    get,
    path = "/api/fans/{id}",
    summary = "A fan, its identities, merges and layer",
    tag = "fans",
    security(("admin_key" = [])),
    params(("id" = i64, Path, description = "A fan id (a merged-away id resolves to its fan)")),
    responses(
        (status = 200, description = "The fan: identities, merges, possible duplicates, and its layer with the numbers that decided it", body = schema::Fan),
        (status = 400, description = "`invalid_fan_id` (`field`: `id`): not a number", body = schema::Error),
        (status = 404, description = "`fan_not_found`", body = schema::Error),
        AdminErrors,
    ),
)]
pub async fn fan(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    IdParam(id): IdParam,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let id = fan_id(&id)?;
    let app = state.app.clone();
    let view = crate::readers::reading(move || Ok(app.fan(tenant.id, FanId(id))?)).await?;
    let view = view.ok_or_else(|| fan_not_found(id))?;
    Ok(Json(
        serde_json::to_value(view).map_err(|e| ApiError::Internal(e.to_string()))?,
    ))
}

/// `GET /api/fans/lookup?kind=phone&value=...`
#[utoipa::path(
    get,
    path = "/api/fans/lookup",
    summary = "Find the fans holding an identity value",
    tag = "fans",
    security(("admin_key" = [])),
    params(
        ("kind" = schema::IdentityKind, Query, description = "The identity kind"),
        ("value" = String, Query, min_length = 1, description = "The value, normalized as at ingest (`138 0013 8000` finds `+8613800138000`)"),
    ),
    responses(
        (status = 200, description = "The fans holding the value (usually one)", body = schema::FanList),
        (status = 400, description = "`missing_field` (`field`: `kind` or `value`), `unknown_identity_kind` (`kind`), `invalid_phone`, `invalid_email`, `invalid_identity` (`value`), `invalid_query`", body = schema::Error),
        AdminErrors,
    ),
)]
pub async fn lookup(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    Query(q): Query,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let get = |k: &str| {
        q.get(k).cloned().ok_or_else(|| {
            ApiError::bad(
                "missing_field",
                Some(k),
                format!("query parameter {k} is required"),
            )
        })
    };
    let (kind, value) = (get("kind")?, get("value")?);
    let app = state.app.clone();
    let fans = crate::readers::reading(move || Ok(app.lookup(tenant.id, &kind, &value)?)).await?;
    Ok(Json(json!({ "fans": fans })))
}

/// `GET /api/identity/duplicates`
#[utoipa::path(
    get,
    path = "/api/identity/duplicates",
    summary = "Possible duplicates",
    tag = "fans",
    security(("admin_key" = [])),
    responses(
        (status = 200, description = "Open possible duplicates", body = schema::Duplicates),
        AdminErrors,
    ),
)]
pub async fn duplicates(
    Axum(state): Axum<State>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let app = state.app.clone();
    let dups = crate::readers::reading(move || Ok(app.possible_duplicates(tenant.id)?)).await?;
    Ok(Json(json!({ "possible_duplicates": dups })))
}

/// Reads `{"a": FAN, "b": FAN}`.
fn pair(
    headers: &HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(FanId, FanId), ApiError> {
    let v = body::json_body(headers, raw, 64 * 1024)?;
    let Value::Object(o) = v else {
        return Err(ApiError::bad(
            "invalid_body",
            None,
            "the body must be {\"a\": FAN_ID, \"b\": FAN_ID}",
        ));
    };
    if let Some(k) = o.keys().find(|k| *k != "a" && *k != "b") {
        return Err(ApiError::bad(
            "unknown_field",
            Some(k),
            format!("unknown field {k:?}; expected a and b"),
        ));
    }
    let id = |k: &str| {
        o.get(k).and_then(Value::as_i64).map(FanId).ok_or_else(|| {
            ApiError::bad(
                "missing_field",
                Some(k),
                format!("{k} must be a fan id (a number)"),
            )
        })
    };
    Ok((id("a")?, id("b")?))
}

async fn decide(
    state: State,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
    confirm: bool,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let (a, b) = pair(&headers, raw)?;
    let d = if confirm {
        Decision::Confirm { a, b }
    } else {
        Decision::Distinct { a, b }
    };
    let app = state.app.clone();
    blocking(move || Ok(app.decide(tenant.id, d)?)).await?;
    Ok(Json(
        json!({"decision": if confirm { "confirm" } else { "distinct" }, "a": a, "b": b}),
    ))
}

/// `POST /api/identity/confirm {"a", "b"}`: they are one person.
#[utoipa::path(
    post,
    path = "/api/identity/confirm",
    summary = "Confirm two fans are one person",
    tag = "fans",
    security(("admin_key" = [])),
    request_body = schema::Pair,
    responses(
        (status = 200, description = "The decision, recorded and applied", body = schema::DecisionAnswer),
        (status = 400, description = "`invalid_json`, `duplicate_key` (`field`: the key's path), `invalid_body`, `unknown_field`, `missing_field` (`field`: `a` or `b`: not a fan id)", body = schema::Error),
        (status = 404, description = "`fan_not_found`: no such fan", body = schema::Error),
        (status = 409, description = "The decision contradicts the state (`already_merged`, `marked_distinct`)", body = schema::Error),
        AdminErrors,
        BodyErrors,
    ),
)]
pub async fn confirm(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    decide(state, headers, raw, true).await
}

/// `POST /api/identity/distinct {"a", "b"}`: they are different people.
#[utoipa::path(
    post,
    path = "/api/identity/distinct",
    summary = "Mark two fans as different people",
    tag = "fans",
    security(("admin_key" = [])),
    request_body = schema::Pair,
    responses(
        (status = 200, description = "The decision, recorded and applied", body = schema::DecisionAnswer),
        (status = 400, description = "`invalid_json`, `duplicate_key` (`field`: the key's path), `invalid_body`, `unknown_field`, `missing_field` (`field`: `a` or `b`: not a fan id)", body = schema::Error),
        (status = 404, description = "`fan_not_found`: no such fan", body = schema::Error),
        (status = 409, description = "The decision contradicts the state (`already_merged`, `marked_distinct`)", body = schema::Error),
        AdminErrors,
        BodyErrors,
    ),
)]
pub async fn distinct(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    decide(state, headers, raw, false).await
}

/// `POST /api/fans/{id}/unmerge`: undo the merge that absorbed fan `id`.
#[utoipa::path(
    post,
    path = "/api/fans/{id}/unmerge",
    summary = "Undo the merge that absorbed a fan",
    tag = "fans",
    security(("admin_key" = [])),
    params(("id" = i64, Path, description = "The fan that was absorbed")),
    responses(
        (status = 200, description = "The merge is undone; everything derived is recomputed", body = schema::Unmerged),
        (status = 400, description = "`invalid_fan_id` (`field`: `id`)", body = schema::Error),
        (status = 404, description = "`fan_not_found`", body = schema::Error),
        (status = 409, description = "`not_merged`: the fan was not merged into another", body = schema::Error),
        AdminErrors,
    ),
)]
pub async fn unmerge(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    IdParam(id): IdParam,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let id = fan_id(&id)?;
    let app = state.app.clone();
    let view = blocking(move || {
        app.unmerge(tenant.id, FanId(id))?;
        Ok(app.fan(tenant.id, FanId(id))?)
    })
    .await?;
    Ok(Json(json!({"undone": id, "fan": view})))
}

/// `GET /api/reports/dedup?from=T&to=T`
#[utoipa::path(
    get,
    path = "/api/reports/dedup",
    summary = "The lead dedup report",
    tag = "fans",
    security(("admin_key" = [])),
    params(
        ("from" = Option<String>, Query, format = DateTime, description = "Leads with `ts >= from` (RFC 3339)"),
        ("to" = Option<String>, Query, format = DateTime, description = "Leads with `ts < to` (RFC 3339)"),
    ),
    responses(
        (status = 200, description = "Leads, people and repeats per channel, and the overlap between channels", body = schema::DedupReport),
        (status = 400, description = "`invalid_timestamp` (`field`: `from` or `to`), `invalid_query`", body = schema::Error),
        AdminErrors,
    ),
)]
pub async fn dedup(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    Query(q): Query,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let (from, to) = (
        crate::query::time(&q, "from")?,
        crate::query::time(&q, "to")?,
    );
    let app = state.app.clone();
    let report =
        crate::readers::reading(move || Ok(app.dedup_report(tenant.id, from, to)?)).await?;
    Ok(Json(
        serde_json::to_value(report).map_err(|e| ApiError::Internal(e.to_string()))?,
    ))
}
