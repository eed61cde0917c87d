//! The channels API: `GET /api/channels`, `PUT /api/channels/{kind}` and each channel's kill
//! switch (admin key). The settings are checked by `siyu_app::channels` (an unknown field is
//! refused by name there, since the fields depend on the kind); credentials are write-only:
//! an answer says whether one is set, never what it is.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State as Axum;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use serde_json::Value;

use crate::extract::KindParam;
use crate::openapi::{AdminErrors, BodyErrors};
use crate::{ApiError, State, auth, blocking, schema};

/// A channel's settings are a few fields.
const BODY_LIMIT: usize = 64 * 1024;

/// `GET /api/channels` → every channel, set up or not.
#[utoipa::path(
    get,
    operation_id = "channels_list",
    path = "/api/channels",
    summary = "Channels",
    tag = "channels",
    security(("admin_key" = [])),
    responses((status = 200, description = "Every channel of the tenant, set up or not (never a credential)", body = schema::Channels), AdminErrors),
)]
pub async fn list(Axum(state): Axum<State>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let app = state.app.clone();
    Ok(Json(blocking(move || Ok(app.channels(tenant.id)?)).await?))
}

/// `PUT /api/channels/{kind}` with the settings → the channel's view.
#[utoipa::path(
    put,
    operation_id = "channels_put",
    path = "/api/channels/{kind}",
    summary = "Set up a channel",
    tag = "channels",
    security(("admin_key" = [])),
    params(("kind" = String, Path, description = "`webhook`, `douyin_im` or `wecom_robot`")),
    request_body(content = schema::ChannelChange, description = "The channel's settings; fields left out keep their stored value (or take their default), so a PUT without the credential keeps the stored one"),
    responses(
        (status = 200, description = "Stored; the workers use it at once", body = schema::Channel),
        (status = 400, description = "`invalid_json`, `duplicate_key` (`field`: the key's path), `invalid_channel_setting` (`field`: the setting, an unknown one too, or `body`), `target_not_allowed` (`field`: `url` or `base`: not https, or a loopback, private, link-local, unspecified or CGNAT host, unless the server runs with `SIYU_ALLOW_PRIVATE_TARGETS=1`)", body = schema::Error),
        (status = 404, description = "`unknown_channel` (`field`: `kind`)", body = schema::Error),
        AdminErrors,
        BodyErrors,
    ),
)]
pub async fn put(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    KindParam(kind): KindParam,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    // The app refuses unknown fields itself, by kind.
    let body = Value::Object(crate::body::json_object(&headers, raw, BODY_LIMIT, None)?);
    let (app, id) = (state.app.clone(), tenant.id);
    let view = blocking(move || Ok(app.set_channel(id, &kind, &body)?)).await?;
    tracing::info!(tenant = %tenant.name, channel = %view["channel"], "channel set up");
    Ok(Json(view))
}

async fn set_killed(
    state: State,
    headers: HeaderMap,
    kind: String,
    killed: bool,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let (app, id) = (state.app.clone(), tenant.id);
    let view = blocking(move || Ok(app.set_channel_killed(id, &kind, killed)?)).await?;
    tracing::info!(tenant = %tenant.name, channel = %view["channel"], killed, "channel kill switch");
    Ok(Json(view))
}

/// `POST /api/channels/{kind}/kill`: nothing is sent through the channel until resumed.
#[utoipa::path(
    post,
    operation_id = "channels_kill",
    path = "/api/channels/{kind}/kill",
    summary = "Stop a channel (kill switch)",
    tag = "channels",
    security(("admin_key" = [])),
    params(("kind" = String, Path, description = "`webhook`, `douyin_im` or `wecom_robot`")),
    responses(
        (status = 200, description = "Killed: the outbox sends nothing through it; its messages wait", body = schema::Channel),
        (status = 404, description = "`unknown_channel` (`field`: `kind`)", body = schema::Error),
        (status = 409, description = "`channel_not_configured` (`field`: `kind`): PUT its settings first", body = schema::Error),
        AdminErrors,
    ),
)]
pub async fn kill(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    KindParam(kind): KindParam,
) -> Result<Json<Value>, ApiError> {
    set_killed(state, headers, kind, true).await
}

/// `POST /api/channels/{kind}/resume`.
#[utoipa::path(
    post,
    operation_id = "channels_resume",
    path = "/api/channels/{kind}/resume",
    summary = "Resume a killed channel",
    tag = "channels",
    security(("admin_key" = [])),
    params(("kind" = String, Path, description = "`webhook`, `douyin_im` or `wecom_robot`")),
    responses(
        (status = 200, description = "Resumed: the outbox delivers through it again", body = schema::Channel),
        (status = 404, description = "`unknown_channel` (`field`: `kind`)", body = schema::Error),
        (status = 409, description = "`channel_not_configured` (`field`: `kind`): PUT its settings first", body = schema::Error),
        AdminErrors,
    ),
)]
pub async fn resume(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    KindParam(kind): KindParam,
) -> Result<Json<Value>, ApiError> {
    set_killed(state, headers, kind, false).await
}
