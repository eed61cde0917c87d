//! The JSON API, health and metrics.

use axum::Json;
use axum::extract::State as Axum;
use axum::http::{HeaderMap, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::error::SegmentError;
use crate::openapi::{AdminErrors, BodyErrors};
use crate::{ApiError, State, auth, schema};

/// `GET /api/stats` (admin key): events, fans, and counts by type and domain.
#[utoipa::path(
    get,
    path = "/api/stats",
    summary = "Totals: events, fans, by type and domain",
    tag = "tenant",
    security(("admin_key" = [])),
    responses((status = 200, description = "Totals", body = schema::Stats), AdminErrors),
)]
pub async fn stats(Axum(state): Axum<State>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let app = state.app.clone();
    let stats = crate::readers::reading(move || Ok(app.stats(tenant.id)?)).await?;
    Ok(Json(json!({
        "tenant": tenant.name,
        "events": stats.events,
        "fans": stats.fans,
        "by_type": stats.by_type,
        "by_domain": stats.by_domain,
    })))
}

/// `GET /api/tenant` (admin key): the tenant's settings.
#[utoipa::path(
    get,
    path = "/api/tenant",
    summary = "The tenant's settings",
    tag = "tenant",
    security(("admin_key" = [])),
    responses((status = 200, description = "The tenant's settings", body = schema::TenantSettings), AdminErrors),
)]
pub async fn tenant_get(
    Axum(state): Axum<State>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    Ok(Json(tenant_json(&tenant.name, &tenant.custom_domain)))
}

/// `POST /api/tenant/keys/rotate` (admin key), `{"key": "write" | "admin", "grace_seconds": N}`:
/// a new key, shown this once; the old one works `grace_seconds` more (default 0: it stops at
/// once).
#[utoipa::path(
    post,
    path = "/api/tenant/keys/rotate",
    summary = "Rotate an API key",
    tag = "tenant",
    security(("admin_key" = [])),
    request_body(content = schema::KeyRotation, description = "Which key, and how long the old one still works"),
    responses(
        (status = 200, description = "The new key, shown this once; the old one stops at once or when its grace ends", body = schema::RotatedKey),
        (status = 400, description = "`invalid_json`, `invalid_body` (not an object), `unknown_field`, `invalid_key_role` (`field`: `key`), `invalid_grace` (`field`: `grace_seconds`)", body = schema::Error),
        AdminErrors,
        BodyErrors,
    ),
)]
pub async fn keys_rotate(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    raw: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let Value::Object(obj) = crate::body::json_body(&headers, raw, 4 * 1024)? else {
        return Err(ApiError::bad(
            "invalid_body",
            None,
            "the body must be a JSON object",
        ));
    };
    if let Some(k) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "key" | "grace_seconds"))
    {
        return Err(ApiError::bad(
            "unknown_field",
            Some(k),
            format!("unknown field {k:?}; accepted: key, grace_seconds"),
        ));
    }
    let role = match obj.get("key") {
        Some(Value::String(s)) => siyu_app::tenants::parse_role(s)?,
        _ => {
            return Err(ApiError::bad(
                "invalid_key_role",
                Some("key"),
                "key is required: write or admin",
            ));
        }
    };
    let grace = match obj.get("grace_seconds") {
        None | Some(Value::Null) => 0,
        Some(v) => v.as_u64().ok_or_else(|| {
            ApiError::bad(
                "invalid_grace",
                Some("grace_seconds"),
                format!(
                    "grace_seconds must be a whole number of seconds, 0 to {}",
                    siyu_app::tenants::MAX_KEY_GRACE_S
                ),
            )
        })?,
    };
    let app = state.app.clone();
    let (id, name) = (tenant.id, tenant.name.clone());
    let rotated = crate::blocking(move || Ok(app.rotate_key(id, &name, role, grace)?)).await?;
    tracing::info!(tenant = %tenant.name, key = role.as_str(), grace_seconds = grace, "API key rotated");
    // The key is in this answer only: no cache may keep it.
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(rotated.to_json()),
    )
        .into_response())
}

/// `POST /api/tenants` (the operator's secret), `{"name": "acme"}`: what `siyu tenant create`
/// sends to the server that holds its data directory. Answers the new tenant's keys, shown
/// this once.
#[utoipa::path(
    post,
    path = "/api/tenants",
    summary = "Create a tenant (the server's operator only)",
    tag = "tenant",
    security(("operator_secret" = [])),
    request_body(content = schema::NewTenant, description = "The tenant's name"),
    responses(
        (status = 200, description = "The tenant and its keys, shown this once", body = schema::TenantKeys),
        (status = 400, description = "`invalid_json`, `duplicate_key`, `invalid_body`, `unknown_field`, `invalid_tenant_name` (`field`: `name`)", body = schema::Error),
        (status = 409, description = "`tenant_exists`", body = schema::Error),
        AdminErrors,
        BodyErrors,
    ),
)]
pub async fn tenants_create(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    raw: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    auth::operator(&state, &headers).await?;
    let Value::Object(obj) = crate::body::json_body(&headers, raw, 4 * 1024)? else {
        return Err(ApiError::bad(
            "invalid_body",
            None,
            "the body must be a JSON object",
        ));
    };
    if let Some(k) = obj.keys().find(|k| k.as_str() != "name") {
        return Err(ApiError::bad(
            "unknown_field",
            Some(k),
            format!("unknown field {k:?}; accepted: name"),
        ));
    }
    let name = obj.get("name").and_then(Value::as_str).unwrap_or("");
    let name = siyu_app::TenantName::parse(name)
        .map_err(|e| ApiError::bad("invalid_tenant_name", Some("name"), e.to_string()))?;
    let app = state.app.clone();
    let keys = crate::blocking(move || {
        siyu_app::tenants::create(&**app.store(), &name).map_err(|e| match e {
            siyu_app::AppError::Store(s @ siyu_store::StoreError::TenantExists(_)) => {
                ApiError::Status {
                    status: axum::http::StatusCode::CONFLICT,
                    code: "tenant_exists",
                    message: s.to_string(),
                    field: Some("name".into()),
                }
            }
            other => other.into(),
        })
    })
    .await?;
    tracing::info!(tenant = %keys.tenant, "tenant created by the operator");
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({"tenant": keys.tenant, "write_key": keys.write_key, "admin_key": keys.admin_key})),
    )
        .into_response())
}

fn tenant_json(name: &str, custom_domain: &str) -> Value {
    json!({"tenant": name, "custom_domain": custom_domain})
}

/// `PATCH /api/tenant` (admin key), `{"custom_domain": "commercial"}`.
#[utoipa::path(
    patch,
    path = "/api/tenant",
    summary = "Change the tenant's settings",
    tag = "tenant",
    security(("admin_key" = [])),
    request_body(content = schema::TenantChange, description = "The settings to change; absent ones keep their value"),
    responses(
        (status = 200, description = "The settings now", body = schema::TenantSettings),
        (status = 400, description = "`invalid_json`, `duplicate_key` (`field`: the key's path), `invalid_body` (not an object), `unknown_field`, `invalid_domain` (`field`: `custom_domain`)", body = schema::Error),
        AdminErrors,
        BodyErrors,
    ),
)]
pub async fn tenant_patch(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    raw: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let body = crate::body::json_body(&headers, raw, 64 * 1024)?;
    let Value::Object(obj) = body else {
        return Err(ApiError::bad(
            "invalid_body",
            None,
            "the body must be a JSON object",
        ));
    };
    if let Some(k) = obj.keys().find(|k| k.as_str() != "custom_domain") {
        return Err(ApiError::bad(
            "unknown_field",
            Some(k),
            format!("unknown setting {k:?}; settable: custom_domain"),
        ));
    }
    let domain = match obj.get("custom_domain") {
        Some(Value::String(s)) => s.parse::<siyu_domain::Domain>().map_err(|_| {
            ApiError::bad(
                "invalid_domain",
                Some("custom_domain"),
                format!("{s:?} is not one of public, commercial, private"),
            )
        })?,
        None | Some(Value::Null) => {
            return Ok(Json(tenant_json(&tenant.name, &tenant.custom_domain)));
        }
        Some(_) => {
            return Err(ApiError::bad(
                "invalid_domain",
                Some("custom_domain"),
                "custom_domain must be a string",
            ));
        }
    };
    let app = state.app.clone();
    tokio::task::spawn_blocking(move || app.set_custom_domain(tenant.id, domain))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(Json(tenant_json(&tenant.name, domain.as_str())))
}

/// `GET /healthz`: the process is up and its store answers.
#[utoipa::path(
    get,
    path = "/healthz",
    summary = "Health: the process is up and its store answers",
    tag = "operations",
    responses(
        (status = 200, description = "Up, and the store answers", body = schema::Health),
        (status = 500, description = "Internal error (`internal`)", body = schema::Error),
        (status = 503, description = "The store does not answer (`store_unavailable`): PostgreSQL is down or restarting", body = schema::Error),
    ),
)]
pub async fn healthz(Axum(state): Axum<State>) -> Result<Json<Value>, ApiError> {
    let app = state.app.clone();
    let backend = tokio::task::spawn_blocking(move || app.health())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let shared = state.app.ingestor.leased();
    let serving = match shared {
        true => state.app.ingestor.served().len(),
        false => {
            let app = state.app.clone();
            crate::blocking(move || {
                Ok(app
                    .store()
                    .tenants()
                    .map_err(siyu_app::AppError::from)?
                    .len())
            })
            .await?
        }
    };
    Ok(Json(
        json!({"status": "ok", "store": backend, "serving": serving, "shared": shared}),
    ))
}

/// `GET /metrics`: Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    summary = "Prometheus metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)),
)]
pub async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::render(),
    )
}

/// Any path that is not a route.
pub async fn not_found() -> ApiError {
    ApiError::NotFound
}

/// A route's path with a method it does not take: a JSON 405, in the Segment shape under
/// `/v1/` (axum adds the `Allow` header).
pub async fn method_not_allowed(uri: Uri) -> Response {
    if uri.path().starts_with("/v1/") {
        SegmentError(ApiError::MethodNotAllowed).into_response()
    } else {
        ApiError::MethodNotAllowed.into_response()
    }
}
