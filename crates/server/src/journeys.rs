//! The journeys API (docs/journeys.md): applying journey files, listing, pausing and resuming
//! journeys, their reports, the tenant's send policy, dead letters and the staff task inbox.
//! Every route takes the tenant's admin key; each handler parses the request, calls one
//! `App` service of `siyu_app::journeys`, and answers its view as JSON.
//!
//! `POST /api/journeys` takes the journey file itself (`application/toml` or `text/plain`),
//! or `{"definition": "<toml>"}` as JSON for clients that only speak JSON. A refused file is a
//! 400 whose error names the file's `field` path and `line`; nothing is stored then. The
//! answer is 201 when a new version was stored and 200 when the file was the version in force
//! already (`unchanged: true`), so a deploy script can tell the two apart by status alone.
//!
//! `/api/journeys/policy` is a static path, which axum matches before `/api/journeys/{name}`:
//! a journey named `policy` is listed and reported, but `GET /api/journeys/policy` is the
//! policy.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State as Axum;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use serde_json::{Map, Value, json};
use siyu_app::journeys::TaskQuery;
use siyu_journey::run::TaskState;

use crate::extract::{IdParam, NameParam, Query};
use crate::openapi::{AdminErrors, BodyErrors};
use crate::query::{label, number};
use crate::{ApiError, State, auth, blocking, schema};

/// Largest journey file accepted (a real one is a few KB).
pub const JOURNEY_BODY_LIMIT: usize = 256 * 1024;
/// The other bodies here are a few fields.
const BODY_LIMIT: usize = 64 * 1024;
/// Ids in one `POST /api/dead-letters/retry`.
const MAX_RETRY_IDS: usize = 10_000;

fn object(
    headers: &HeaderMap,
    raw: Result<Bytes, BytesRejection>,
    allowed: &[&str],
) -> Result<Map<String, Value>, ApiError> {
    crate::body::json_object(headers, raw, BODY_LIMIT, Some(allowed))
}

/// A required string field.
fn required(o: &Map<String, Value>, k: &str) -> Result<String, ApiError> {
    match o.get(k) {
        Some(Value::String(s)) => Ok(s.clone()),
        None | Some(Value::Null) => Err(ApiError::bad(
            "missing_field",
            Some(k),
            format!("{k} is required"),
        )),
        Some(_) => Err(ApiError::bad(
            "invalid_field",
            Some(k),
            format!("{k} must be a string"),
        )),
    }
}

/// The lowercased media type of the request, without parameters.
fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The journey file of a `POST /api/journeys`: the raw body as TOML, or the `definition` of
/// a JSON body.
fn definition(headers: &HeaderMap, raw: Result<Bytes, BytesRejection>) -> Result<String, ApiError> {
    let mime = media_type(headers);
    if mime == "application/json" || mime.ends_with("+json") {
        let o = crate::body::json_object(headers, raw, JOURNEY_BODY_LIMIT, Some(&["definition"]))?;
        return required(&o, "definition");
    }
    if mime != "application/toml" && mime != "text/plain" {
        return Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type must be application/toml or text/plain (the journey file), or \
             application/json ({{\"definition\": \"...\"}}), not {:?}",
            if mime.is_empty() {
                "(none)"
            } else {
                mime.as_str()
            }
        )));
    }
    if let Some(enc) = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty() && v != "identity")
    {
        return Err(ApiError::UnsupportedMediaType(format!(
            "Content-Encoding {enc:?} is not supported for a journey file; send it as it is"
        )));
    }
    let body = crate::body::raw_body(raw, JOURNEY_BODY_LIMIT)?;
    String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad("invalid_body", None, "the journey file must be UTF-8 TOML"))
}

/// `POST /api/journeys` with the journey file → the version in force.
#[utoipa::path(
    post,
    operation_id = "journeys_apply",
    path = "/api/journeys",
    summary = "Apply a journey file",
    tag = "journeys",
    security(("admin_key" = [])),
    request_body(
        description = "The journey file (TOML, docs/journeys.md; at most 256 KiB), as the body or as `definition` of a JSON object",
        content(
            (String = "application/toml"),
            (String = "text/plain"),
            (schema::JourneyApply = "application/json"),
        ),
    ),
    responses(
        (status = 201, description = "Stored as a new version; runs already going finish on their version", body = schema::Applied),
        (status = 200, description = "The file is the version in force already: nothing changed (`unchanged: true`)", body = schema::Applied),
        (status = 400, description = "The file was refused and nothing changed: its `code` (`unknown_step_type`, `unknown_step`, `cycle_without_wait`, `invalid_expression`, `unknown_channel`, `unknown_template_field`, `invalid_template`, `invalid_duration`, `unknown_segment`, `duplicate_step`, `missing_field`, `unknown_field`, `invalid_journey`), `field` (the path in the file, `steps[2].then`; `null` for a TOML syntax error) and `line`; or, for a JSON body, `invalid_json`, `duplicate_key`, `invalid_body`, `unknown_field`, `missing_field`, `invalid_field` (`field`: `definition`); `invalid_body` (not UTF-8)", body = schema::Error),
        AdminErrors,
        BodyErrors,
    ),
)]
pub async fn apply(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let text = definition(&headers, raw)?;
    let app = state.app.clone();
    let applied = blocking(move || Ok(app.apply_journey(tenant.id, &text)?)).await?;
    let status = if applied.unchanged {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(json!(applied))))
}

/// `GET /api/journeys` → every journey at its current version.
#[utoipa::path(
    get,
    operation_id = "journeys_list",
    path = "/api/journeys",
    summary = "Journeys",
    tag = "journeys",
    security(("admin_key" = [])),
    responses((status = 200, description = "Every journey of the tenant at its current version, by name", body = schema::JourneyList), AdminErrors),
)]
pub async fn list(Axum(state): Axum<State>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let app = state.app.clone();
    let list = blocking(move || Ok(app.journeys(tenant.id)?)).await?;
    Ok(Json(json!({ "journeys": list })))
}

/// `GET /api/journeys/{name}` → the journey with its definition and steps.
#[utoipa::path(
    get,
    operation_id = "journeys_get",
    path = "/api/journeys/{name}",
    summary = "A journey with its definition",
    tag = "journeys",
    security(("admin_key" = [])),
    params(("name" = String, Path, description = "The journey's name")),
    responses(
        (status = 200, description = "The journey at its current version, with its file and steps", body = schema::JourneyDetail),
        (status = 400, description = "`invalid_path` (`field`: `name`)", body = schema::Error),
        (status = 404, description = "`journey_not_found`", body = schema::Error),
        AdminErrors,
    ),
)]
pub async fn get(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    NameParam(name): NameParam,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let app = state.app.clone();
    let detail = blocking(move || Ok(app.journey(tenant.id, &name)?)).await?;
    Ok(Json(json!(detail)))
}

async fn set_paused(
    state: State,
    headers: HeaderMap,
    name: String,
    paused: bool,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let app = state.app.clone();
    let summary = blocking(move || Ok(app.set_journey_paused(tenant.id, &name, paused)?)).await?;
    Ok(Json(json!(summary)))
}

/// `POST /api/journeys/{name}/pause`: the journey's kill switch.
#[utoipa::path(
    post,
    operation_id = "journeys_pause",
    path = "/api/journeys/{name}/pause",
    summary = "Pause a journey",
    tag = "journeys",
    security(("admin_key" = [])),
    params(("name" = String, Path, description = "The journey's name")),
    responses(
        (status = 200, description = "Paused: it starts no run and moves none until resumed (pausing a paused journey changes nothing)", body = schema::JourneySummary),
        (status = 400, description = "`invalid_path` (`field`: `name`)", body = schema::Error),
        (status = 404, description = "`journey_not_found`", body = schema::Error),
        AdminErrors,
    ),
)]
pub async fn pause(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    NameParam(name): NameParam,
) -> Result<Json<Value>, ApiError> {
    set_paused(state, headers, name, true).await
}

/// `POST /api/journeys/{name}/resume`.
#[utoipa::path(
    post,
    operation_id = "journeys_resume",
    path = "/api/journeys/{name}/resume",
    summary = "Resume a paused journey",
    tag = "journeys",
    security(("admin_key" = [])),
    params(("name" = String, Path, description = "The journey's name")),
    responses(
        (status = 200, description = "Resumed: held runs take up where they were", body = schema::JourneySummary),
        (status = 400, description = "`invalid_path` (`field`: `name`)", body = schema::Error),
        (status = 404, description = "`journey_not_found`", body = schema::Error),
        AdminErrors,
    ),
)]
pub async fn resume(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    NameParam(name): NameParam,
) -> Result<Json<Value>, ApiError> {
    set_paused(state, headers, name, false).await
}

/// `GET /api/journeys/{name}/report` → per step and per variant.
#[utoipa::path(
    get,
    operation_id = "journeys_report",
    path = "/api/journeys/{name}/report",
    summary = "A journey's report",
    tag = "journeys",
    security(("admin_key" = [])),
    params(("name" = String, Path, description = "The journey's name")),
    responses(
        (status = 200, description = "Runs, per step (every version's runs, by step id; the current version's steps first) and per variant", body = schema::JourneyReport),
        (status = 400, description = "`invalid_path` (`field`: `name`)", body = schema::Error),
        (status = 404, description = "`journey_not_found`", body = schema::Error),
        AdminErrors,
    ),
)]
pub async fn report(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    NameParam(name): NameParam,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let app = state.app.clone();
    let report = blocking(move || Ok(app.journey_report(tenant.id, &name)?)).await?;
    Ok(Json(json!(report)))
}

/// `GET /api/journeys/policy` → the tenant's send policy.
#[utoipa::path(
    get,
    operation_id = "journeys_policy_get",
    path = "/api/journeys/policy",
    summary = "The send policy",
    tag = "journeys",
    security(("admin_key" = [])),
    responses((status = 200, description = "The tenant's send policy (the defaults until one is set)", body = schema::Policy), AdminErrors),
)]
pub async fn policy_get(
    Axum(state): Axum<State>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let app = state.app.clone();
    let policy = blocking(move || Ok(app.journey_policy(tenant.id)?)).await?;
    Ok(Json(json!(policy)))
}

/// The fields of the policy, as it serializes: what a `PUT` may name.
fn policy_fields() -> Vec<String> {
    match serde_json::to_value(siyu_app::journeys::settings::PolicySettings::default()) {
        Ok(Value::Object(o)) => o.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// `PUT /api/journeys/policy` with the fields to change → the policy in force after it.
#[utoipa::path(
    put,
    operation_id = "journeys_policy_put",
    path = "/api/journeys/policy",
    summary = "Change the send policy",
    tag = "journeys",
    security(("admin_key" = [])),
    request_body = schema::PolicyChange,
    responses(
        (status = 200, description = "The policy in force now; fields left out keep their value", body = schema::Policy),
        (status = 400, description = "`invalid_json`, `duplicate_key` (`field`: the key's path), `invalid_body`, `unknown_field` (`field`: the key); `invalid_policy` (`field`: `time_zone`, `quiet_start`, `quiet_end`, `daily_cap`, `douyin_reply_window`, `douyin_replies_per_message`, `douyin_proactive_per_day`, or `body` for a value of the wrong type)", body = schema::Error),
        AdminErrors,
        BodyErrors,
    ),
)]
pub async fn policy_put(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let fields = policy_fields();
    let allowed: Vec<&str> = fields.iter().map(String::as_str).collect();
    let o = object(&headers, raw, &allowed)?;
    let app = state.app.clone();
    let policy =
        blocking(move || Ok(app.set_journey_policy(tenant.id, &Value::Object(o))?)).await?;
    Ok(Json(json!(policy)))
}

/// `GET /api/dead-letters?journey=NAME&limit=N` → outbox rows given up, newest first.
#[utoipa::path(
    get,
    operation_id = "journeys_dead_letters",
    path = "/api/dead-letters",
    summary = "Dead letters",
    tag = "journeys",
    security(("admin_key" = [])),
    params(
        ("journey" = Option<String>, Query, description = "Only this journey's"),
        ("limit" = Option<i64>, Query, minimum = 0, description = "At most this many (default 100; clamped to 1–10,000)"),
    ),
    responses(
        (status = 200, description = "Messages the outbox gave up on, with the channel's last answer", body = schema::DeadLetters),
        (status = 400, description = "`invalid_number` (`field`: `limit`), `invalid_field` (`field`: `journey`), `invalid_query`", body = schema::Error),
        AdminErrors,
    ),
)]
pub async fn dead_letters(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    Query(q): Query,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let journey = label(&q, "journey")?;
    let limit = number(&q, "limit", 100)?.clamp(1, 10_000) as usize;
    let app = state.app.clone();
    let rows =
        blocking(move || Ok(app.dead_letters(tenant.id, journey.as_deref(), limit)?)).await?;
    Ok(Json(json!({ "dead_letters": rows })))
}

/// `POST /api/dead-letters/retry {"ids": [..]}` or `{"all": true}` → how many went back.
#[utoipa::path(
    post,
    operation_id = "journeys_retry",
    path = "/api/dead-letters/retry",
    summary = "Retry dead letters",
    tag = "journeys",
    security(("admin_key" = [])),
    request_body(content = schema::RetryRequest, description = "Either `ids` or `all: true`"),
    responses(
        (status = 200, description = "How many dead letters went back to their channel's queue (ids that are not dead letters of this tenant are skipped)", body = schema::Retried),
        (status = 400, description = "`invalid_json`, `duplicate_key` (`field`: the key's path), `invalid_body` (neither or both of `ids` and `all`; `field`: `ids`), `unknown_field`, `invalid_field` (`field`: `ids` or `all`)", body = schema::Error),
        AdminErrors,
        BodyErrors,
    ),
)]
pub async fn retry(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let o = object(&headers, raw, &["ids", "all"])?;
    let ids = match o.get("ids").filter(|v| !v.is_null()) {
        None => None,
        Some(Value::Array(a)) if !a.is_empty() && a.len() <= MAX_RETRY_IDS => Some(
            a.iter()
                .map(|v| v.as_i64().filter(|n| *n > 0))
                .collect::<Option<Vec<i64>>>()
                .ok_or_else(|| {
                    ApiError::bad(
                        "invalid_field",
                        Some("ids"),
                        "ids must be dead letter ids (positive integers)",
                    )
                })?,
        ),
        Some(_) => {
            return Err(ApiError::bad(
                "invalid_field",
                Some("ids"),
                format!("ids must be a list of 1 to {MAX_RETRY_IDS} dead letter ids"),
            ));
        }
    };
    let all = match o.get("all") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(true)) => true,
        Some(_) => {
            return Err(ApiError::bad(
                "invalid_field",
                Some("all"),
                "all must be true (leave it out to retry some ids)",
            ));
        }
    };
    if ids.is_some() == all {
        return Err(ApiError::bad(
            "invalid_body",
            Some("ids"),
            "say which dead letters: either \"ids\": [ID, ...] or \"all\": true",
        ));
    }
    let app = state.app.clone();
    let n = blocking(move || Ok(app.retry_dead_letters(tenant.id, ids.as_deref())?)).await?;
    Ok(Json(json!({ "retried": n })))
}

/// `GET /api/tasks?team=&agent=&state=&limit=` → staff tasks, oldest first.
#[utoipa::path(
    get,
    operation_id = "journeys_tasks",
    path = "/api/tasks",
    summary = "Staff tasks",
    tag = "journeys",
    security(("admin_key" = [])),
    params(
        ("team" = Option<String>, Query, description = "Only this team's"),
        ("agent" = Option<String>, Query, description = "Only those this agent claimed or did"),
        ("state" = Option<String>, Query, description = "`open`, `claimed` or `done`"),
        ("limit" = Option<i64>, Query, minimum = 0, description = "At most this many (default 100; clamped to 1–10,000)"),
    ),
    responses(
        (status = 200, description = "Staff tasks, oldest first", body = schema::Tasks),
        (status = 400, description = "`invalid_field` (`field`: `state`, `team` or `agent`), `invalid_number` (`field`: `limit`), `invalid_query`", body = schema::Error),
        AdminErrors,
    ),
)]
pub async fn tasks(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    Query(q): Query,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let task_state = match q.get("state") {
        None => None,
        Some(s) => Some(TaskState::parse(s).ok_or_else(|| {
            ApiError::bad(
                "invalid_field",
                Some("state"),
                format!("state {s:?} is not a task state: open, claimed or done"),
            )
        })?),
    };
    let query = TaskQuery {
        team: label(&q, "team")?,
        agent: label(&q, "agent")?,
        state: task_state,
        limit: number(&q, "limit", 100)?.clamp(1, 10_000) as usize,
    };
    let app = state.app.clone();
    let list = blocking(move || Ok(app.tasks(tenant.id, &query)?)).await?;
    Ok(Json(json!({ "tasks": list })))
}

/// A task id of the path.
fn task_id(id: &str) -> Result<i64, ApiError> {
    id.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
        ApiError::bad(
            "invalid_task_id",
            Some("id"),
            format!("{id:?} is not a task id"),
        )
    })
}

/// `POST /api/tasks/{id}/claim {"agent"}`.
#[utoipa::path(
    post,
    operation_id = "journeys_claim",
    path = "/api/tasks/{id}/claim",
    summary = "Claim a task",
    tag = "journeys",
    security(("admin_key" = [])),
    params(("id" = i64, Path, description = "A task id")),
    request_body = schema::TaskClaim,
    responses(
        (status = 200, description = "Claimed by the agent", body = schema::Task),
        (status = 400, description = "`invalid_task_id` (`field`: `id`), `invalid_json`, `duplicate_key`, `invalid_body`, `unknown_field`, `missing_field`, `invalid_field`, `invalid_argument` (`field`: `agent`: 1–64 characters, no control characters or surrounding spaces)", body = schema::Error),
        (status = 404, description = "`task_not_found`", body = schema::Error),
        (status = 409, description = "`task_conflict`: the task is claimed or done already", body = schema::Error),
        AdminErrors,
        BodyErrors,
    ),
)]
pub async fn claim(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    IdParam(id): IdParam,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let id = task_id(&id)?;
    let o = object(&headers, raw, &["agent"])?;
    let agent = required(&o, "agent")?;
    let app = state.app.clone();
    let task = blocking(move || Ok(app.claim_task(tenant.id, id, &agent)?)).await?;
    Ok(Json(json!(task)))
}

/// `POST /api/tasks/{id}/done {"agent", "outcome"}`.
#[utoipa::path(
    post,
    operation_id = "journeys_done",
    path = "/api/tasks/{id}/done",
    summary = "Complete a task",
    tag = "journeys",
    security(("admin_key" = [])),
    params(("id" = i64, Path, description = "A task id")),
    request_body = schema::TaskDone,
    responses(
        (status = 200, description = "Done; the outcome comes back as an `x_journey_task_done` event of the fan", body = schema::Task),
        (status = 400, description = "`invalid_task_id` (`field`: `id`), `invalid_json`, `duplicate_key`, `invalid_body`, `unknown_field`, `missing_field`, `invalid_field`, `invalid_argument` (`field`: `agent` or `outcome`)", body = schema::Error),
        (status = 404, description = "`task_not_found`", body = schema::Error),
        (status = 409, description = "`task_conflict`: the task is done already", body = schema::Error),
        AdminErrors,
        BodyErrors,
    ),
)]
pub async fn done(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    IdParam(id): IdParam,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let id = task_id(&id)?;
    let o = object(&headers, raw, &["agent", "outcome"])?;
    let agent = required(&o, "agent")?;
    let outcome = required(&o, "outcome")?;
    let app = state.app.clone();
    let task = blocking(move || Ok(app.complete_task(tenant.id, id, &agent, &outcome)?)).await?;
    Ok(Json(json!(task)))
}
