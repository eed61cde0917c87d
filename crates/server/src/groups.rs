//! The fan groups API (粉丝群): `GET /api/groups`, `POST /api/groups`, `GET /api/groups/{id}`.
//! A group has a capacity, an owner (an agent) and a template; groups of one template fill in
//! order, and placing a fan opens the template's next group when all are full.
//! Membership and activity come from `group_join`, `group_leave` and `group_message` events,
//! which the lead worker applies. Every route takes the tenant's admin key, as the rest of the
//! leads API; a body's unknown field is refused by name.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State as Axum;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::extract::IdParam;
use crate::leads::{integer, object, required, text};
use crate::openapi::{AdminErrors, BodyErrors};
use crate::{ApiError, State, auth, blocking, schema};

/// The fields of a new group's body.
pub const GROUP_FIELDS: &[&str] = &["name", "template", "capacity", "owner"];

/// `GET /api/groups` → every group with its members and its last 30 days.
#[utoipa::path(
    get,
    operation_id = "groups_list",
    path = "/api/groups",
    summary = "Fan groups",
    tag = "leads",
    security(("admin_key" = [])),
    responses((status = 200, description = "Every fan group of the tenant in the order they were opened, with members, active members and the last 30 days' joins, leaves and messages", body = schema::Groups), AdminErrors),
)]
pub async fn list(Axum(state): Axum<State>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let app = state.app.clone();
    let groups = blocking(move || Ok(app.group_views(tenant.id)?)).await?;
    Ok(Json(json!({ "groups": groups })))
}

/// `POST /api/groups {"name", "template", "capacity", "owner"}` → the new group.
#[utoipa::path(
    post,
    operation_id = "groups_create",
    path = "/api/groups",
    summary = "Open a fan group",
    tag = "leads",
    security(("admin_key" = [])),
    request_body = schema::GroupNew,
    responses(
        (status = 201, description = "Opened, empty: its members come from `group_join` events naming it (`props.group_id`: the group's name)", body = schema::Group),
        (status = 400, description = "`invalid_json`, `duplicate_key`, `invalid_body`, `unknown_field` (`field`: the key), `missing_field`, `invalid_field`; `invalid_name` (`field`: `name`, `template`), `invalid_capacity` (`capacity`)", body = schema::Error),
        (status = 404, description = "`agent_not_found` (`field`: `agent`): the owner is not an agent", body = schema::Error),
        (status = 409, description = "`duplicate_group` (`field`: `name`): a group of that name exists", body = schema::Error),
        AdminErrors,
        BodyErrors,
    ),
)]
pub async fn create(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let o = object(&headers, raw, GROUP_FIELDS)?;
    let name = required(&o, "name")?;
    let template = text(&o, "template")?;
    let capacity = integer(&o, "capacity")?;
    let owner = text(&o, "owner")?;
    let app = state.app.clone();
    let view = blocking(move || {
        let g = app.create_group(
            tenant.id,
            &name,
            template.as_deref(),
            capacity,
            owner.as_deref(),
        )?;
        Ok(app.group_view(tenant.id, &g.id.to_string())?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(json!(view))))
}

/// `GET /api/groups/{id}` → one group, by its id or its name.
#[utoipa::path(
    get,
    operation_id = "groups_get",
    path = "/api/groups/{id}",
    summary = "A fan group",
    tag = "leads",
    security(("admin_key" = [])),
    params(("id" = String, Path, description = "The group's id, or its name")),
    responses(
        (status = 200, description = "The group with its members and its last 30 days, oldest first", body = schema::Group),
        (status = 400, description = "`invalid_path` (`field`: `id`)", body = schema::Error),
        (status = 404, description = "`group_not_found` (`field`: `group`)", body = schema::Error),
        AdminErrors,
    ),
)]
pub async fn get(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    IdParam(key): IdParam,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let app = state.app.clone();
    let view = blocking(move || Ok(app.group_view(tenant.id, &key)?)).await?;
    Ok(Json(json!(view)))
}
