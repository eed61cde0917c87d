//! Connectors: the Douyin webhook `POST /webhooks/douyin/{tenant}` and the settings API
//! `GET|PUT /api/connectors/douyin` and `GET|PUT /api/connectors/oceanengine` (admin key).
//!
//! The webhook authenticates by signature, not by API key: the raw body is handed to the app
//! untouched, since the signature covers its exact bytes. Answers never contain credentials.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State as Axum;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Map, Value, json};
use siyu_app::connectors::{self, OceanEngineChange, SettingError};
use siyu_app::douyin::{Answer, DeliveryError};
use siyu_domain::time;

use crate::extract::TenantParam;
use crate::openapi::{AdminErrors, BodyErrors};
use crate::{ApiError, State, auth, body, schema};

/// Largest webhook body accepted (Douyin's deliveries are a few KB).
pub const WEBHOOK_BODY_LIMIT: usize = 1024 * 1024;

impl From<DeliveryError> for ApiError {
    fn from(e: DeliveryError) -> Self {
        let code = e.code();
        match e {
            // One answer for an unknown tenant, a tenant without a secret and a bad signature:
            // a stranger learns nothing about which tenants exist.
            DeliveryError::Unauthorized(_) => ApiError::Status {
                status: StatusCode::UNAUTHORIZED,
                code,
                message:
                    "the delivery is not signed by a Douyin app of this server (X-Douyin-Signature)"
                        .into(),
                field: None,
            },
            DeliveryError::Invalid(e) => ApiError::BadRequest {
                code,
                message: e.message,
                field: e.field,
            },
            DeliveryError::App(e) => e.into(),
            DeliveryError::Internal(detail) => ApiError::Internal(detail),
        }
    }
}

impl From<SettingError> for ApiError {
    fn from(e: SettingError) -> Self {
        ApiError::bad(e.code(), Some(e.field), e.message)
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `POST /webhooks/douyin/{tenant}`: one Douyin delivery.
#[utoipa::path(
    post,
    path = "/webhooks/douyin/{tenant}",
    summary = "A Douyin webhook delivery",
    tag = "connectors",
    params(
        ("tenant" = String, Path, description = "The tenant's name"),
        ("X-Douyin-Signature" = Option<String>, Header, description = "SHA-1 hex of the tenant's client secret followed by the body, as Douyin signs"),
        ("Msg-Id" = Option<String>, Header, description = "Douyin's delivery id, kept as `props.msg_id`; the event id comes from the signed body (`douyin:` + its `log_id`, else `douyin:sha256:` + the body's SHA-256), so a retried or replayed delivery is stored once"),
    ),
    request_body(content = schema::DouyinDelivery, description = "One delivery, exactly as Douyin sent it (the signature covers these bytes); at most 1 MiB"),
    responses(
        (status = 200, description = "`verify_webhook` answered, or the delivery stored", body = schema::DeliveryAnswer),
        (status = 400, description = "The delivery cannot be mapped (`invalid_json`, `missing_field`, …; `field` names the delivery's field)", body = schema::Error),
        (status = 401, description = "`unauthorized`: no such tenant, no client secret set, or a missing or wrong signature, answered alike", body = schema::Error),
        (status = 413, description = "Over 1 MiB (`payload_too_large`)", body = schema::Error),
        (status = 500, description = "Internal error (`internal`); Douyin retries", body = schema::Error),
        (status = 503, description = "Shutting down (`shutting_down`), or the store does not answer (`store_unavailable`); Douyin retries", body = schema::Error),
    ),
)]
pub async fn douyin_webhook(
    Axum(state): Axum<State>,
    TenantParam(tenant): TenantParam,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let raw = body::raw_body(raw, WEBHOOK_BODY_LIMIT)?;
    let answer = state
        .app
        .douyin_delivery(
            &tenant,
            header(&headers, "x-douyin-signature"),
            header(&headers, "msg-id"),
            &raw,
        )
        .await?;
    Ok(Json(match answer {
        Answer::Challenge(c) => json!({ "challenge": c }),
        Answer::Stored {
            event_id,
            duplicate,
        } => json!({"status": "ok", "event_id": event_id, "duplicate": duplicate}),
    }))
}

/// Runs a blocking app call off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, siyu_app::AppError> + Send + 'static,
) -> Result<T, ApiError> {
    crate::blocking(move || Ok(f()?)).await
}

/// A settings body: a JSON object with only the named fields.
fn settings_body(
    headers: &HeaderMap,
    raw: Result<Bytes, BytesRejection>,
    allowed: &[&str],
) -> Result<Map<String, Value>, ApiError> {
    let Value::Object(obj) = body::json_body(headers, raw, 64 * 1024)? else {
        return Err(ApiError::bad(
            "invalid_body",
            None,
            "the body must be a JSON object",
        ));
    };
    if let Some(k) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::bad(
            "unknown_field",
            Some(k),
            format!("unknown setting {k:?}; settable: {}", allowed.join(", ")),
        ));
    }
    Ok(obj)
}

/// A string setting (numbers are taken as their digits).
fn string_field(obj: &Map<String, Value>, name: &'static str) -> Result<Option<String>, ApiError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(SettingError::new(name, format!("{name} must be a string")).into()),
    }
}

/// `GET /api/connectors/douyin`.
#[utoipa::path(
    get,
    path = "/api/connectors/douyin",
    summary = "The Douyin connector",
    tag = "connectors",
    security(("admin_key" = [])),
    responses((status = 200, description = "The Douyin connector (never the secret)", body = schema::DouyinConnector), AdminErrors),
)]
pub async fn douyin_get(
    Axum(state): Axum<State>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let app = state.app.clone();
    let settings = blocking(move || app.douyin_settings(tenant.id)).await?;
    Ok(Json(connectors::douyin_view(
        &tenant.name,
        settings.as_ref(),
    )))
}

/// `PUT /api/connectors/douyin`, `{"client_secret": "..."}`.
#[utoipa::path(
    put,
    path = "/api/connectors/douyin",
    summary = "Set the Douyin client secret",
    tag = "connectors",
    security(("admin_key" = [])),
    request_body = schema::DouyinChange,
    responses(
        (status = 200, description = "Set", body = schema::DouyinConnector),
        (status = 400, description = "`invalid_json`, `duplicate_key` (`field`: the key's path), `invalid_body`, `unknown_field`, `invalid_connector_setting` (`field`: `client_secret`)", body = schema::Error),
        AdminErrors,
        BodyErrors,
    ),
)]
pub async fn douyin_put(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let obj = settings_body(&headers, raw, &["client_secret"])?;
    let secret = string_field(&obj, "client_secret")?
        .ok_or_else(|| SettingError::new("client_secret", "client_secret is required"))?;
    let app = state.app.clone();
    let settings = blocking(move || app.set_douyin(tenant.id, &secret)).await??;
    tracing::info!(tenant = %tenant.name, "Douyin client secret set");
    Ok(Json(connectors::douyin_view(&tenant.name, Some(&settings))))
}

/// `GET /api/connectors/oceanengine`: the settings (without the token) and the position.
#[utoipa::path(
    get,
    path = "/api/connectors/oceanengine",
    summary = "The Ocean Engine lead poller",
    tag = "connectors",
    security(("admin_key" = [])),
    responses((status = 200, description = "The lead poller's settings (never the token) and its position", body = schema::OceanEngineConnector), AdminErrors),
)]
pub async fn oceanengine_get(
    Axum(state): Axum<State>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let app = state.app.clone();
    let found = blocking(move || app.oceanengine_settings(tenant.id)).await?;
    Ok(Json(match found {
        Some((s, position)) => {
            connectors::oceanengine_view(&tenant.name, Some(&s), position.as_ref())
        }
        None => connectors::oceanengine_view(&tenant.name, None, None),
    }))
}

/// `PUT /api/connectors/oceanengine`, `{"advertiser_id", "access_token", "base_url", "start",
/// "page_size"}`; absent fields keep their value.
#[utoipa::path(
    put,
    path = "/api/connectors/oceanengine",
    summary = "Set up the Ocean Engine lead poller",
    tag = "connectors",
    security(("admin_key" = [])),
    request_body = schema::OceanEngineChange,
    responses(
        (status = 200, description = "Set; a new advertiser or start puts the poller back at the start", body = schema::OceanEngineConnector),
        (status = 400, description = "`invalid_json`, `duplicate_key` (`field`: the key's path), `invalid_body`, `unknown_field`, `invalid_connector_setting` (`field`: the setting), `target_not_allowed` (`field`: `base_url`: not https, or a loopback, private, link-local, unspecified or CGNAT host, unless the server runs with `SIYU_ALLOW_PRIVATE_TARGETS=1`)", body = schema::Error),
        AdminErrors,
        BodyErrors,
    ),
)]
pub async fn oceanengine_put(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let obj = settings_body(
        &headers,
        raw,
        &[
            "advertiser_id",
            "access_token",
            "base_url",
            "start",
            "page_size",
        ],
    )?;
    let start = match string_field(&obj, "start")? {
        None => None,
        Some(s) => Some(time::parse_rfc3339(&s).ok_or_else(|| {
            SettingError::new(
                "start",
                format!("start {s:?} is not an RFC 3339 time such as 2026-10-01T00:00:00+08:00"),
            )
        })?),
    };
    let page_size = match obj.get("page_size") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| SettingError::new("page_size", "page_size must be a number"))?,
        ),
    };
    let change = OceanEngineChange {
        advertiser_id: string_field(&obj, "advertiser_id")?,
        access_token: string_field(&obj, "access_token")?,
        base_url: string_field(&obj, "base_url")?,
        start,
        page_size,
    };
    let app = state.app.clone();
    let tid = tenant.id;
    let settings = blocking(move || app.set_oceanengine(tid, change)).await??;
    tracing::info!(tenant = %tenant.name, "Ocean Engine lead poller set");
    Ok(Json(connectors::oceanengine_view(
        &tenant.name,
        Some(&settings.0),
        settings.1.as_ref(),
    )))
}
