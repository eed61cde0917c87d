//! The layer API: fans per layer as of any instant, flows between instants, the rules file.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State as Axum};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::query::{optional_number, page, time};
use crate::{ApiError, State, auth, blocking};

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

/// `GET /api/reports/layers?as_of=T` (default now).
pub async fn layers(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let as_of = time(&q, "as_of")?.unwrap_or_else(siyu_domain::time::now_ms);
    let app = state.app.clone();
    let c = tokio::task::spawn_blocking(move || app.layers(tenant.id, as_of))
        .await
        .map_err(internal)??;
    Ok(Json(json!({
        "as_of": siyu_domain::time::format_rfc3339(as_of),
        "potential": c.potential, "passerby": c.passerby,
        "favorable": c.favorable, "true_love": c.true_love,
        "total": c.total(),
    })))
}

/// `GET /api/reports/flow?from=T1&to=T2`.
pub async fn flow(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
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
    let f = tokio::task::spawn_blocking(move || app.flow(tenant.id, from, to))
        .await
        .map_err(internal)??;
    Ok(Json(serde_json::to_value(f).map_err(internal)?))
}

/// `GET /api/rules`: the layer rules in force.
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
pub async fn rules_put(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let body = raw.map_err(|r| ApiError::bad("invalid_body", None, r.body_text()))?;
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad("invalid_body", None, "the rules file must be UTF-8 TOML"))?;
    let app = state.app.clone();
    let r = tokio::task::spawn_blocking(move || app.set_rules(tenant.id, &text))
        .await
        .map_err(internal)??;
    match r {
        Ok(rules) => Ok(Json(serde_json::to_value(rules).map_err(internal)?)),
        Err(e) => Err(ApiError::Status {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_rules",
            message: format!("{e}; the rules in force are unchanged"),
            field: Some(format!("line {}", e.line)),
        }),
    }
}

/// `GET /api/layers/transitions?after=ID&fan=FAN&limit=N`: layer changes, oldest first, for
/// journeys and audits to follow (`after` is the last id seen).
pub async fn transitions(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
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
                "id": t.id, "fan": t.fan, "from": t.from, "to": t.to,
                "at": siyu_domain::time::format_rfc3339(t.at), "cause": t.cause, "seq": t.seq,
                "event_id": t.event_id,
            })
        })
        .collect();
    let next = rows.last().map_or(after, |t| t.id);
    Ok(Json(json!({"transitions": list, "next_after": next})))
}
