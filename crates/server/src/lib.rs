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
//! - [`serve`]: the accept loop: the connection limit, the header timeout, and a graceful
//!   shutdown when the given future resolves.
//! - `guard`: what runs before a handler: the key from the headers, the per-key rate limit,
//!   and the body read within its limit and its timeout (no work before authentication).
//! - `linger`: a connection closed after an early answer still delivers that answer.
//! - `error`: [`ApiError`], the one place statuses and codes are chosen.
//! - `body`: content type, gzip and size limits for request bodies.
//! - `strict`: the JSON parse of every body, refusing a key repeated in one object.
//! - `auth`: bearer and basic-auth keys.
//! - `ingest`: native `POST /api/events` and the Segment-compatible `/v1/*`.
//! - `identity`: fans, lookups, possible duplicates, decisions, the dedup report.
//! - `layers`: layer reports, flows and the rules file.
//! - `segments`: segment previews, saved segments, their triggers, and tags.
//! - `query`: query parameters (times, numbers, pages), refused by name.
//! - `extract`: `Query` and path extractors whose rejections are JSON errors.
//! - `openapi`: `GET /openapi.json`, built from the same routes as the router ([`openapi()`]).
//! - `schema`: the request and answer bodies, described for the document.
//! - `readers`: the pool engine reads run on, below the writer's priority.
//! - `api`: the JSON API (`/api/stats`), `/healthz`, `/metrics`.
//! - `connectors`: the Douyin webhook and the connector settings API.
//! - `journeys`: journey files, pause and resume, reports, the send policy, dead letters and
//!   staff tasks.
//! - `channels`: the channels journeys send through, and their kill switches.
//! - `leads`: teams, agents, routing rules, and the leads they own.
//! - `groups`: fan groups (粉丝群), their members and activity.
//! - `owner`: requests for a tenant another node serves, forwarded there.

mod analytics;
mod api;
mod auth;
mod body;
mod channels;
mod connectors;
mod error;
mod extract;
mod groups;
mod guard;
mod identity;
mod ingest;
mod journeys;
mod layers;
mod leads;
mod linger;
pub mod metrics;
mod openapi;
mod owner;
mod query;
mod readers;
mod schema;
mod segments;
mod strict;
mod triggers;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{any, get};
use siyu_app::App;
use utoipa::OpenApi;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

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

/// How the server holds its ground against clients that send too much, too slowly or too
/// often (docs/ingest.md, "Limits"). `siyu serve` takes each as a flag.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub limits: Limits,
    /// Connections open at once. At the limit the server stops accepting: new connections wait
    /// in the kernel's listen backlog until one closes (none is refused by the server itself).
    pub max_connections: usize,
    /// From the connection's start (or the end of its previous answer, on a kept-alive
    /// connection) to the end of the request's headers; then the connection is closed. The
    /// same timer closes idle kept-alive connections.
    pub header_timeout: Duration,
    /// From the end of the headers to the end of the body; then the answer is a 408.
    pub body_timeout: Duration,
    /// Requests per authenticated key; `None`: unlimited.
    pub rate: Option<Rate>,
}

/// A token bucket per key: `burst` requests at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            limits: Limits::default(),
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            rate: Some(Rate {
                per_second: 1000.0,
                burst: 2000,
            }),
        }
    }
}

/// What every handler sees.
pub struct AppState {
    pub app: Arc<App>,
    pub limits: Limits,
    /// Sends requests for tenants another node serves there (see `owner`).
    pub forwarder: reqwest::Client,
    /// Named in the requests this node forwards.
    pub node_id: String,
    /// The rate limiter and the body timeout, for [`guard`].
    guard: guard::Guard,
}

pub type State = Arc<AppState>;

/// Every route, registered from its handler's `#[utoipa::path]` so that the router and the
/// OpenAPI document are built from the same list: a route added here is documented, and
/// `crates/cli/tests/api/openapi.rs` fails for a route the document does not describe. The
/// only routes not added with `routes!` are the two [`openapi::ApiDoc`] lists.
fn routes(limits: Limits) -> OpenApiRouter<State> {
    let segment = OpenApiRouter::new()
        .routes(routes!(ingest::segment_batch))
        .routes(routes!(ingest::segment_track))
        .routes(routes!(ingest::segment_identify))
        .routes(routes!(ingest::segment_page))
        .routes(routes!(ingest::segment_screen))
        .routes(routes!(ingest::segment_group))
        .routes(routes!(ingest::segment_alias))
        // Documented as `/v1/{path}` in `openapi::ApiDoc`: utoipa's paths have no wildcard.
        .route("/v1/{*rest}", any(ingest::segment_not_found))
        .layer(DefaultBodyLimit::max(limits.segment_body));
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(ingest::native).layer(DefaultBodyLimit::max(limits.native_body)))
        .routes(routes!(api::stats))
        .routes(routes!(api::tenants_create))
        .routes(routes!(api::tenant_get, api::tenant_patch))
        .routes(routes!(api::keys_rotate))
        .routes(routes!(identity::lookup))
        .routes(routes!(identity::fan))
        .routes(routes!(identity::unmerge))
        .routes(routes!(identity::duplicates))
        .routes(routes!(identity::confirm))
        .routes(routes!(identity::distinct))
        .routes(routes!(identity::dedup))
        .routes(routes!(layers::layers))
        .routes(routes!(layers::flow))
        .routes(routes!(analytics::funnel))
        .routes(routes!(analytics::attribution))
        .routes(routes!(analytics::ltv))
        .routes(routes!(analytics::retention))
        .routes(routes!(analytics::cac))
        .routes(routes!(analytics::ltv_predicted))
        .routes(
            routes!(analytics::spend_import)
                .layer(DefaultBodyLimit::max(analytics::SPEND_BODY_LIMIT)),
        )
        .routes(routes!(layers::transitions))
        .routes(
            routes!(layers::rules_get, layers::rules_put)
                .layer(DefaultBodyLimit::max(layers::RULES_BODY_LIMIT)),
        )
        .routes(routes!(connectors::douyin_get, connectors::douyin_put))
        .routes(routes!(
            connectors::oceanengine_get,
            connectors::oceanengine_put
        ))
        .routes(
            routes!(connectors::douyin_webhook)
                .layer(DefaultBodyLimit::max(connectors::WEBHOOK_BODY_LIMIT)),
        )
        .routes(routes!(segments::preview))
        .routes(routes!(segments::triggers))
        .routes(routes!(triggers::stream))
        .routes(routes!(triggers::cursors))
        .routes(routes!(triggers::cursor_get, triggers::cursor_put))
        .routes(routes!(segments::list, segments::create))
        .routes(routes!(segments::get, segments::delete))
        .routes(routes!(segments::members))
        .routes(routes!(segments::tag))
        .routes(routes!(segments::auto_tag))
        .routes(routes!(segments::fan_tags))
        .routes(
            routes!(journeys::list, journeys::apply)
                .layer(DefaultBodyLimit::max(journeys::JOURNEY_BODY_LIMIT)),
        )
        // Static, so matched before `{name}`.
        .routes(routes!(journeys::policy_get, journeys::policy_put))
        .routes(routes!(journeys::get))
        .routes(routes!(journeys::pause))
        .routes(routes!(journeys::resume))
        .routes(routes!(journeys::report))
        .routes(routes!(journeys::dead_letters))
        .routes(routes!(journeys::retry))
        .routes(routes!(journeys::tasks))
        .routes(routes!(journeys::claim))
        .routes(routes!(journeys::done))
        .routes(routes!(channels::list))
        .routes(routes!(channels::put))
        .routes(routes!(channels::kill))
        .routes(routes!(channels::resume))
        .routes(routes!(leads::teams, leads::team_put))
        .routes(routes!(leads::agents, leads::agent_add))
        .routes(routes!(leads::agent_set))
        .routes(routes!(leads::routes, leads::route_add))
        .routes(routes!(leads::route_remove))
        .routes(routes!(leads::leads))
        .routes(routes!(leads::report))
        .routes(routes!(leads::lead))
        .routes(routes!(leads::log))
        .routes(routes!(leads::set_state))
        .routes(routes!(leads::assign))
        .routes(routes!(leads::claim))
        .routes(routes!(groups::list, groups::create))
        .routes(routes!(groups::get))
        .routes(routes!(api::healthz))
        .routes(routes!(api::metrics))
        // Listed in `openapi::ApiDoc` too: the document describes itself.
        .route("/openapi.json", get(openapi::document))
        .merge(segment)
}

/// The OpenAPI document of [`app`]'s routes (served at `GET /openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = routes(Limits::default()).split_for_parts().1;
    openapi::add_guard_answers(&mut doc);
    // `ApiDoc`'s own paths come first; they read better after the routes they complete.
    for path in ["/v1/{path}", "/openapi.json"] {
        if let Some(item) = doc.paths.paths.shift_remove(path) {
            doc.paths.paths.insert(path.to_string(), item);
        }
    }
    doc
}

/// The router. The rate limiter's time is the app's clock (`app.ingestor.clock()`), so tests
/// that move a manual clock move the buckets too.
pub fn app(app: Arc<App>, settings: &Settings) -> Router {
    let guard = guard::Guard::new(settings, app.ingestor.clock().clone());
    let limits = settings.limits;
    let forwarder = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(2))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default();
    let state = Arc::new(AppState {
        app,
        limits,
        forwarder,
        node_id: format!("pid-{}", std::process::id()),
        guard,
    });
    let (router, _) = routes(limits).split_for_parts();
    router
        .fallback(api::not_found)
        // After every route: it is set on the routes registered so far.
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            owner::route,
        ))
        // Inside the metrics, so that what the guard refuses is counted.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ))
        .layer(axum::middleware::from_fn(metrics::track))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then stops accepting, finishes the requests in flight, and
/// returns. The caller then drops the [`App`], which drains the ingest queue.
///
/// hyper's own HTTP/1 connections, not `axum::serve`, which sets no header timeout and no
/// connection limit. A connection holds one of `max_connections` permits from accept to close;
/// with none left the loop stops accepting, so the next connections wait in the listen
/// backlog (the kernel's, bounded) and cost this process nothing.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let permits = Arc::new(tokio::sync::Semaphore::new(settings.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout);
    let service = hyper_util::service::TowerToHyperService::new(router);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break, // closed: never, the semaphore is ours
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(linger::Lingering::new(stream));
        let connection = graceful.watch(http.serve_connection(io, service.clone()));
        tokio::spawn(async move {
            // A client that goes away or times out is not the server's error.
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// An accept that failed: a connection reset before it was accepted is the client's affair;
/// anything else (out of file descriptors) is waited out a moment rather than spun on.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::warn!(error = %e, "accept failed; waiting a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
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
