//! The JSON API, health and metrics.

use axum::Json;
use axum::extract::State as Axum;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::{ApiError, State, auth};

/// `GET /api/stats` (admin key): events, fans, and counts by type and domain.
pub async fn stats(Axum(state): Axum<State>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let app = state.app.clone();
    let stats = tokio::task::spawn_blocking(move || app.stats(tenant.id))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(Json(json!({
        "tenant": tenant.name,
        "events": stats.events,
        "fans": stats.fans,
        "by_type": stats.by_type,
        "by_domain": stats.by_domain,
    })))
}

/// `GET /healthz`: the process is up and its store answers.
pub async fn healthz(Axum(state): Axum<State>) -> Result<Json<Value>, ApiError> {
    let store = state.app.store.clone();
    let backend = store.backend();
    tokio::task::spawn_blocking(move || store.tenants())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(json!({"status": "ok", "store": backend})))
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::render(),
    )
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound
}
