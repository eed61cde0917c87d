//! The layer API: fans per layer as of any instant, flows between instants, the rules file.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State as Axum;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use serde_json::{Value, json};

use crate::extract::Query;
use crate::openapi::AdminErrors;
use crate::query::{optional_number, page, time};
use crate::{ApiError, State, auth, blocking, schema};

/// Largest rules file accepted (a real one is a few hundred bytes).
pub const RULES_BODY_LIMIT: usize = 64 * 1024;

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

/// `GET /api/reports/layers?as_of=T` (default now).
#[utoipa::path(
    get,
    path = "/api/reports/layers",
    summary = "Fans per layer as of an instant",
    tag = "layers",
    security(("admin_key" = [])),
    params(("as_of" = Option<String>, Query, format = DateTime, description = "The instant (RFC 3339; default now)")),
    responses(
        (status = 200, description = "Fans per layer as of the instant", body = schema::LayerReport),
        (status = 400, description = "`invalid_timestamp` (`field`: `as_of`), `invalid_query`", body = schema::Error),
        AdminErrors,
    ),
)]
pub async fn layers(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    Query(q): Query,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let as_of = time(&q, "as_of")?.unwrap_or_else(siyu_domain::time::now_ms);
    let app = state.app.clone();
    let c = crate::readers::reading(move || Ok(app.layers(tenant.id, as_of)?)).await?;
    Ok(Json(json!({
        "as_of": siyu_domain::time::format_rfc3339(as_of),
        "potential": c.potential, "passerby": c.passerby,
        "favorable": c.favorable, "true_love": c.true_love,
        "total": c.total(),
    })))
}

/// `GET /api/reports/flow?from=T1&to=T2`.
#[utoipa::path(
    get,
    path = "/api/reports/flow",
    summary = "How fans moved between layers",
    tag = "layers",
    security(("admin_key" = [])),
    params(
        ("from" = String, Query, format = DateTime, description = "The first instant (RFC 3339)"),
        ("to" = String, Query, format = DateTime, description = "The second instant, after `from`"),
    ),
    responses(
        (status = 200, description = "How fans moved between layers, and the series: fans per layer at `from`, at each local midnight in between (every `step_days` days) and at `to`, with the moves since the point before", body = schema::Flow),
        (status = 400, description = "`missing_field`, `invalid_timestamp` (`field`: `from` or `to`), `invalid_range` (`to`: not after `from`), `invalid_query`", body = schema::Error),
        AdminErrors,
    ),
)]
pub async fn flow(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    Query(q): Query,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let need = |k: &str| {
        time(&q, k)?.ok_or_else(|| {
            ApiError::bad(
                "missing_field",
                Some(k),
                format!("query parameter {k} is required"),
            )
        })
    };
    let (from, to) = (need("from")?, need("to")?);
    if from >= to {
        return Err(ApiError::bad(
            "invalid_range",
            Some("to"),
            "to must be after from",
        ));
    }
    let app = state.app.clone();
    let (f, (step, daily)) = crate::readers::reading(move || {
        Ok((
            app.flow(tenant.id, from, to)?,
            app.flow_series(tenant.id, from, to)?,
        ))
    })
    .await?;
    let mut v = serde_json::to_value(f).map_err(internal)?;
    v["daily"] = serde_json::to_value(daily).map_err(internal)?;
    v["step_days"] = step.into();
    Ok(Json(v))
}

/// `GET /api/rules`: the layer rules in force.
#[utoipa::path(
    get,
    path = "/api/rules",
    summary = "The layer rules in force",
    tag = "layers",
    security(("admin_key" = [])),
    responses((status = 200, description = "The layer rules in force", body = schema::Rules), AdminErrors),
)]
pub async fn rules_get(
    Axum(state): Axum<State>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let app = state.app.clone();
    let r = tokio::task::spawn_blocking(move || app.rules(tenant.id))
        .await
        .map_err(internal)??;
    Ok(Json(serde_json::to_value(r).map_err(internal)?))
}

/// `PUT /api/rules` with the TOML file as the body. A bad file is a 400 naming the line; the
/// rules in force stay.
#[utoipa::path(
    put,
    path = "/api/rules",
    summary = "Put a rules file in force",
    tag = "layers",
    security(("admin_key" = [])),
    request_body(content = Option<String>, content_type = "text/plain", description = "The rules file (TOML, docs/layers.md; at most 64 KiB); an empty or absent body is the defaults"),
    responses(
        (status = 200, description = "The rules now in force", body = schema::Rules),
        (status = 400, description = "`invalid_rules` (`field`: `line N`; the rules in force are unchanged), `invalid_body` (not UTF-8)", body = schema::Error),
        (status = 413, description = "Over 64 KiB (`payload_too_large`)", body = schema::Error),
        AdminErrors,
    ),
)]
pub async fn rules_put(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let body = crate::body::raw_body(raw, RULES_BODY_LIMIT)?;
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad("invalid_body", None, "the rules file must be UTF-8 TOML"))?;
    let app = state.app.clone();
    let rules = tokio::task::spawn_blocking(move || app.set_rules(tenant.id, &text))
        .await
        .map_err(internal)??;
    Ok(Json(serde_json::to_value(rules).map_err(internal)?))
}

/// `GET /api/layers/transitions?after=ID&fan=FAN&limit=N`: layer changes, oldest first, for
/// journeys and audits to follow (`after` is the last id seen).
#[utoipa::path(
    get,
    path = "/api/layers/transitions",
    summary = "Layer changes, oldest first",
    tag = "layers",
    security(("admin_key" = [])),
    params(
        ("after" = Option<i64>, Query, minimum = 0, description = "Transitions with a larger id (the `next_after` of the previous page; default 0)"),
        ("fan" = Option<i64>, Query, minimum = 0, description = "Only this fan's (and the fans merged into it)"),
        ("limit" = Option<i64>, Query, minimum = 0, description = "At most this many (default 1000; clamped to 1–10,000)"),
    ),
    responses(
        (status = 200, description = "Layer changes, oldest first", body = schema::Transitions),
        (status = 400, description = "`invalid_number` (`field`: the parameter), `invalid_query`", body = schema::Error),
        AdminErrors,
    ),
)]
pub async fn transitions(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    Query(q): Query,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let (after, limit) = page(&q)?;
    let fan = optional_number(&q, "fan")?.map(siyu_engine::FanId);
    let app = state.app.clone();
    let rows = blocking(move || Ok(app.transitions(tenant.id, fan, after, limit)?)).await?;
    let list: Vec<Value> = rows
        .iter()
        .map(|t| {
            json!({
                "id": t.id, "fan": t.fan.0, "from": t.from.map(|l| l.as_str()), "to": t.to.as_str(),
                "at": siyu_domain::time::format_rfc3339(t.at), "cause": t.cause, "seq": t.seq,
                "event_id": t.event_id,
            })
        })
        .collect();
    let next = rows.last().map_or(after, |t| t.id);
    Ok(Json(json!({"transitions": list, "next_after": next})))
}
