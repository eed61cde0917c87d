//! Requests for a tenant another node serves (several `siyu serve` nodes on one PostgreSQL,
//! see `siyu_app::owners`): forwarded to that node, so a client or a load balancer may send
//! any request to any node.
//!
//! The tenant comes from the API key in the `Authorization` header (the key cache answers
//! without the store), from the path of a webhook (`/webhooks/douyin/{tenant}`), or — for the
//! Segment-compatible `/v1/*` without a header — from `writeKey` in the body, which is then
//! read within the Segment limit. A request this node serves goes on; one another node serves
//! is sent there once, marked with `X-Siyu-Forwarded`, and the answer is passed back as it
//! is. A tenant no node holds right now (a node died and its lease has not expired yet, or
//! the tenant is passing between nodes), an owner that does not answer, or a request already
//! forwarded that lands on a node that does not serve it, is answered 503 `tenant_moving`
//! with `Retry-After: 1`: the tenant has an owner again within the lease's length, and events
//! are stored once per id, so the retry is safe.
//! On one SQLite process (every tenant served here) this costs one flag check.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State as Axum};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use siyu_app::owners::Owner;
use siyu_store::TenantId;

use crate::{ApiError, State, auth};

/// The header a forwarded request carries (the forwarding node's id).
pub const FORWARDED: &str = "x-siyu-forwarded";

/// Headers that belong to one connection, not to the request (RFC 9110 §7.6.1), and the ones
/// the client library sets again.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// The middleware: passes on what this node serves, forwards the rest.
pub async fn route(Axum(state): Axum<State>, req: Request, next: Next) -> Response {
    if !state.app.ingestor.leased() {
        return next.run(req).await;
    }
    let (req, tenant) = match tenant_of(&state, req).await {
        Ok(found) => found,
        Err(e) => return e.into_response(),
    };
    let Some(tenant) = tenant else {
        // No tenant named (health, metrics, the document) or a key that is no key: the
        // handler answers.
        return next.run(req).await;
    };
    let app = state.app.clone();
    let owner = match tokio::task::spawn_blocking(move || app.owner(tenant)).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return ApiError::from(e).into_response(),
        Err(e) => return ApiError::Internal(e.to_string()).into_response(),
    };
    match owner {
        Owner::Here => next.run(req).await,
        Owner::Elsewhere(_) if req.headers().contains_key(FORWARDED) => moving(tenant),
        Owner::Elsewhere(addr) => forward(&state, &addr, req)
            .await
            .unwrap_or_else(|e| e.into_response()),
        Owner::Nobody => moving(tenant),
    }
}

fn moving(tenant: TenantId) -> Response {
    ApiError::from(siyu_app::AppError::NotOwner(tenant)).into_response()
}

/// The tenant a request is for, if it names one; the request is handed back whole (its body
/// read into memory only for `/v1/*` with the key in the body).
async fn tenant_of(state: &State, req: Request) -> Result<(Request, Option<TenantId>), ApiError> {
    let path = req.uri().path().to_string();
    if let Some(name) = path.strip_prefix("/webhooks/douyin/") {
        let name = name.trim_end_matches('/').to_string();
        let app = state.app.clone();
        let id = crate::blocking(move || {
            Ok(app
                .store()
                .tenants()
                .map_err(siyu_app::AppError::from)?
                .into_iter()
                .find(|t| t.name == name)
                .map(|t| t.id))
        })
        .await?;
        return Ok((req, id));
    }
    let key = match auth::header_key(req.headers()) {
        Some(k) => Some(k),
        None if path.starts_with("/v1/") => {
            let (parts, body) = req.into_parts();
            let bytes = axum::body::to_bytes(body, state.limits.segment_body)
                .await
                .map_err(|_| ApiError::TooLarge(state.limits.segment_body))?;
            let key = body_write_key(&parts.headers, &bytes);
            let req = Request::from_parts(parts, Body::from(bytes));
            return Ok((req, caller(state, key).await?));
        }
        None => None,
    };
    let tenant = caller(state, key).await?;
    Ok((req, tenant))
}

async fn caller(state: &State, key: Option<String>) -> Result<Option<TenantId>, ApiError> {
    let Some(key) = key else { return Ok(None) };
    let app = state.app.clone();
    let found = crate::blocking(move || Ok(app.authenticate(&key)?)).await?;
    // The operator's secret names no tenant: served here.
    Ok(found
        .filter(|c| c.role != siyu_app::Role::Operator)
        .map(|c| c.id))
}

/// `writeKey` at the top of a Segment body (plain JSON only: a gzipped body's key is found by
/// the handler, here, where it is served).
fn body_write_key(headers: &HeaderMap, body: &Bytes) -> Option<String> {
    if headers.contains_key(header::CONTENT_ENCODING) {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get("writeKey")?.as_str().map(str::to_string)
}

/// Sends the request to the owner at `addr` and passes its answer back.
async fn forward(state: &State, addr: &str, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let limit = state.limits.native_body.max(state.limits.segment_body) + 64 * 1024;
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::TooLarge(limit))?;
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let url = format!("http://{addr}{path}");
    let mut out = state.forwarder.request(parts.method.clone(), &url);
    for (name, value) in &parts.headers {
        if !HOP_BY_HOP.contains(&name.as_str()) && name.as_str() != FORWARDED {
            out = out.header(name, value);
        }
    }
    let node = HeaderValue::from_str(&state.node_id).unwrap_or(HeaderValue::from_static("node"));
    let answer = out.header(FORWARDED, node).body(bytes).send().await;
    let answer = match answer {
        Ok(a) => a,
        Err(e) => {
            tracing::debug!(owner = %addr, error = %e, "the tenant's node does not answer");
            return Err(ApiError::from(siyu_app::AppError::NotOwner(0)));
        }
    };
    let status = answer.status();
    let headers = answer.headers().clone();
    let body = answer.bytes().await.map_err(|e| {
        tracing::warn!(owner = %addr, error = %e, "the tenant's node broke off its answer");
        ApiError::from(siyu_app::AppError::NotOwner(0))
    })?;
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    for (name, value) in &headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            response.headers_mut().append(name, value.clone());
        }
    }
    Ok(response)
}
