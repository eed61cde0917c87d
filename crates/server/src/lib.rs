//! Siyu's HTTP server: thin handlers over `siyu-app`.
//!
//! A handler turns the request into domain values (auth, body, events), calls one service, and
//! turns the result into JSON. Bad input is answered with `{"error": {"code", "message",
//! "field"}}` (on the Segment-compatible `/v1/*`, with `code` and `message` at the top level
//! too) and never logged as an error; internal failures are logged once and answered with an
//! opaque 500.
//!
//! # Layout
//! - [`app`]: the router, so tests call it with `oneshot` or serve it on port 0.
//! - [`serve`]: binds, serves, and shuts down gracefully when the given future resolves.
//! - `error`: [`ApiError`], the one place statuses and codes are chosen.
//! - `body`: content type, gzip and size limits for request bodies.
//! - `auth`: bearer and basic-auth keys.
//! - `ingest`: native `POST /api/events` and the Segment-compatible `/v1/*`.
//! - `identity`: fans, lookups, possible duplicates, decisions, the dedup report.
//! - `layers`: layer reports, flows and the rules file.
//! - `segments`: segment previews, saved segments, their triggers, and tags.
//! - `query`: query parameters (times, numbers, pages), refused by name.
//! - `api`: the JSON API (`/api/stats`), `/healthz`, `/metrics`.
//! - `connectors`: the Douyin webhook and the connector settings API.

mod api;
mod auth;
mod body;
mod connectors;
mod error;
mod identity;
mod ingest;
mod layers;
pub mod metrics;
mod query;
mod segments;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{any, get, post};
use siyu_app::App;

pub use error::ApiError;

/// Runs a blocking service call off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
}

/// Limits on request bodies, in bytes. The raw (possibly compressed) body and the decompressed
/// body are both held to the limit.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `POST /api/events`.
    pub native_body: usize,
    /// `POST /v1/*` (Segment's own limit: 500 KB per batch).
    pub segment_body: usize,
    /// One Segment message (Segment's own limit: 32 KB).
    pub segment_event: usize,
    /// Events in one native batch.
    pub native_events: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            native_body: 8 * 1024 * 1024,
            segment_body: 500 * 1024,
            segment_event: 32 * 1024,
            native_events: 10_000,
        }
    }
}

/// What every handler sees.
pub struct AppState {
    pub app: Arc<App>,
    pub limits: Limits,
}

pub type State = Arc<AppState>;

/// The router.
pub fn app(app: Arc<App>, limits: Limits) -> Router {
    let state = Arc::new(AppState { app, limits });
    let segment = Router::new()
        .route("/v1/batch", post(ingest::segment_batch))
        .route("/v1/track", post(ingest::segment_track))
        .route("/v1/identify", post(ingest::segment_identify))
        .route("/v1/page", post(ingest::segment_page))
        .route("/v1/screen", post(ingest::segment_screen))
        .route("/v1/group", post(ingest::segment_group))
        .route("/v1/alias", post(ingest::segment_alias))
        .route("/v1/{*rest}", any(ingest::segment_not_found))
        .layer(DefaultBodyLimit::max(limits.segment_body));
    Router::new()
        .route(
            "/api/events",
            post(ingest::native).layer(DefaultBodyLimit::max(limits.native_body)),
        )
        .route("/api/stats", get(api::stats))
        .route("/api/tenant", get(api::tenant_get).patch(api::tenant_patch))
        .route("/api/fans/lookup", get(identity::lookup))
        .route("/api/fans/{id}", get(identity::fan))
        .route("/api/fans/{id}/unmerge", post(identity::unmerge))
        .route("/api/identity/duplicates", get(identity::duplicates))
        .route("/api/identity/confirm", post(identity::confirm))
        .route("/api/identity/distinct", post(identity::distinct))
        .route("/api/reports/dedup", get(identity::dedup))
        .route("/api/reports/layers", get(layers::layers))
        .route("/api/reports/flow", get(layers::flow))
        .route("/api/layers/transitions", get(layers::transitions))
        .route("/api/rules", get(layers::rules_get).put(layers::rules_put))
        .route(
            "/api/connectors/douyin",
            get(connectors::douyin_get).put(connectors::douyin_put),
        )
        .route(
            "/api/connectors/oceanengine",
            get(connectors::oceanengine_get).put(connectors::oceanengine_put),
        )
        .route(
            "/webhooks/douyin/{tenant}",
            post(connectors::douyin_webhook)
                .layer(DefaultBodyLimit::max(connectors::WEBHOOK_BODY_LIMIT)),
        )
        .route("/api/segments/preview", post(segments::preview))
        .route("/api/segments/triggers", get(segments::triggers))
        .route("/api/segments", get(segments::list).post(segments::create))
        .route(
            "/api/segments/{id}",
            get(segments::get).delete(segments::delete),
        )
        .route("/api/segments/{id}/members", get(segments::members))
        .route("/api/tags", post(segments::tag))
        .route("/api/tags/auto", post(segments::auto_tag))
        .route("/api/fans/{id}/tags", get(segments::fan_tags))
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(api::metrics))
        .merge(segment)
        .fallback(api::not_found)
        .layer(axum::middleware::from_fn(metrics::track))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then stops accepting, finishes the requests in flight, and
/// returns. The caller then drops the [`App`], which drains the ingest queue.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; finishing requests in flight");
}
