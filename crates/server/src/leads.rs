//! The leads API: teams, agents and routing rules, and the leads they own — list, show, log a
//! follow-up, change the state, assign, claim from the pool. Every route takes the tenant's
//! admin key; each handler parses the request (a body's unknown field is refused by name),
//! calls one `App` service of `siyu_app::leads` on a blocking thread, and answers its view.
//! A refusal names its `field`; nothing is stored then.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State as Axum;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Map, Value, json};
use siyu_app::leads::{AgentSpec, LeadsError, TeamSpec};
use siyu_store::TenantId;
use siyu_store::leads::{LeadFilter, StoredLead, StoredRule};

use crate::extract::{IdParam, NameParam, Query};
use crate::openapi::{AdminErrors, BodyErrors};
use crate::query::{label, number};
use crate::{ApiError, State, auth, blocking, schema};

/// The bodies here are a few fields.
const BODY_LIMIT: usize = 64 * 1024;

/// The fields of a team's body.
pub const TEAM_FIELDS: &[&str] = &[
    "name",
    "strategy",
    "first_contact",
    "recycle_after",
    "lead_agent",
    "escalate",
];
/// The fields of an agent's body.
pub const AGENT_FIELDS: &[&str] = &[
    "name",
    "team",
    "capacity",
    "daily_cap",
    "hours",
    "weight",
    "active",
];

pub(crate) fn object(
    headers: &HeaderMap,
    raw: Result<Bytes, BytesRejection>,
    allowed: &[&str],
) -> Result<Map<String, Value>, ApiError> {
    crate::body::json_object(headers, raw, BODY_LIMIT, Some(allowed))
}

/// An optional string field (`null` is absent).
pub(crate) fn text(o: &Map<String, Value>, k: &str) -> Result<Option<String>, ApiError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::bad(
            "invalid_field",
            Some(k),
            format!("{k} must be a string"),
        )),
    }
}

/// A required string field.
pub(crate) fn required(o: &Map<String, Value>, k: &str) -> Result<String, ApiError> {
    text(o, k)?.ok_or_else(|| ApiError::bad("missing_field", Some(k), format!("{k} is required")))
}

/// An optional integer field; its range is the app's to check.
pub(crate) fn integer(o: &Map<String, Value>, k: &str) -> Result<Option<i64>, ApiError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| {
            ApiError::bad("invalid_field", Some(k), format!("{k} must be an integer"))
        }),
    }
}

fn boolean(o: &Map<String, Value>, k: &str) -> Result<Option<bool>, ApiError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ApiError::bad(
            "invalid_field",
            Some(k),
            format!("{k} must be true or false"),
        )),
    }
}

/// The team a body asks for.
pub fn team_spec(o: &Map<String, Value>) -> Result<TeamSpec, ApiError> {
    Ok(TeamSpec {
        name: required(o, "name")?,
        strategy: text(o, "strategy")?,
        first_contact: text(o, "first_contact")?,
        recycle_after: text(o, "recycle_after")?,
        lead_agent: text(o, "lead_agent")?,
        escalate: text(o, "escalate")?,
    })
}

/// The agent a body asks for; `name` from the path for a `PATCH`.
pub fn agent_spec(o: &Map<String, Value>, name: Option<String>) -> Result<AgentSpec, ApiError> {
    Ok(AgentSpec {
        name: match name {
            Some(n) => n,
            None => required(o, "name")?,
        },
        team: text(o, "team")?,
        capacity: integer(o, "capacity")?,
        daily_cap: integer(o, "daily_cap")?,
        hours: text(o, "hours")?,
        weight: integer(o, "weight")?,
        active: boolean(o, "active")?,
    })
}

/// A routing rule as the API shows it.
pub fn rule_json(r: &StoredRule) -> Value {
    json!({
        "id": r.id, "position": r.position, "if": r.expr, "team": r.team,
        "created_at": siyu_domain::time::format_rfc3339(r.created_at),
    })
}

fn rules_json(rules: &[StoredRule]) -> Value {
    json!({ "routes": rules.iter().map(rule_json).collect::<Vec<_>>() })
}

/// A positive id of the path.
fn path_id(id: &str, code: &'static str, what: &str) -> Result<i64, ApiError> {
    id.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::bad(code, Some("id"), format!("{id:?} is not a {what} id")))
}

/// `GET /api/teams` → every team with its agents.
#[utoipa::path(
    get,
    operation_id = "leads_teams",
    path = "/api/teams",
    summary = "Teams",
    tag = "leads",
    security(("admin_key" = [])),
    responses((status = 200, description = "Every team of the tenant, with its agents' names", body = schema::Teams), AdminErrors),
)]
pub async fn teams(Axum(state): Axum<State>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let app = state.app.clone();
    let teams = blocking(move || Ok(app.teams(tenant.id)?)).await?;
    Ok(Json(json!({ "teams": teams })))
}

/// `POST /api/teams` → the team created or changed.
#[utoipa::path(
    post,
    operation_id = "leads_team_put",
    path = "/api/teams",
    summary = "Create or change a team",
    tag = "leads",
    security(("admin_key" = [])),
    request_body = schema::TeamChange,
    responses(
        (status = 201, description = "Stored (a team of that name is changed)", body = schema::Team),
        (status = 400, description = "`invalid_json`, `duplicate_key`, `invalid_body`, `unknown_field` (`field`: the key), `missing_field`, `invalid_field`; `invalid_name` (`field`: `name`), `invalid_strategy` (`strategy`), `invalid_duration` (`first_contact`, `recycle_after`), `invalid_escalation` (`escalate`)", body = schema::Error),
        (status = 404, description = "`agent_not_found` (`field`: `agent`): the lead agent is not an agent", body = schema::Error),
        AdminErrors,
        BodyErrors,
    ),
)]
pub async fn team_put(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let spec = team_spec(&object(&headers, raw, TEAM_FIELDS)?)?;
    let app = state.app.clone();
    let team = blocking(move || Ok(app.put_team(tenant.id, &spec)?)).await?;
    Ok((StatusCode::CREATED, Json(json!(team))))
}

/// `GET /api/agents` → every agent with their load.
#[utoipa::path(
    get,
    operation_id = "leads_agents",
    path = "/api/agents",
    summary = "Agents",
    tag = "leads",
    security(("admin_key" = [])),
    responses((status = 200, description = "Every agent of the tenant, with their open leads and today's count", body = schema::Agents), AdminErrors),
)]
pub async fn agents(Axum(state): Axum<State>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let app = state.app.clone();
    let agents = blocking(move || Ok(app.agents(tenant.id)?)).await?;
    Ok(Json(json!({ "agents": agents })))
}

/// `POST /api/agents` → the agent added (or changed).
#[utoipa::path(
    post,
    operation_id = "leads_agent_add",
    path = "/api/agents",
    summary = "Add an agent",
    tag = "leads",
    security(("admin_key" = [])),
    request_body = schema::AgentChange,
    responses(
        (status = 201, description = "Stored (an agent of that name is changed: fields left out keep their value)", body = schema::Agent),
        (status = 400, description = "`invalid_json`, `duplicate_key`, `invalid_body`, `unknown_field` (`field`: the key), `missing_field` (`name`, or `team` for a new agent), `invalid_field`; `invalid_name`, `invalid_capacity` (`capacity`, `daily_cap`), `invalid_hours` (`hours`), `invalid_weight` (`weight`)", body = schema::Error),
        (status = 404, description = "`team_not_found` (`field`: `team`)", body = schema::Error),
        AdminErrors,
        BodyErrors,
    ),
)]
pub async fn agent_add(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let spec = agent_spec(&object(&headers, raw, AGENT_FIELDS)?, None)?;
    let app = state.app.clone();
    let agent = blocking(move || Ok(app.put_agent(tenant.id, &spec)?)).await?;
    Ok((StatusCode::CREATED, Json(json!(agent))))
}

/// `PATCH /api/agents/{name}` → the agent as changed.
#[utoipa::path(
    patch,
    operation_id = "leads_agent_set",
    path = "/api/agents/{name}",
    summary = "Change an agent",
    tag = "leads",
    security(("admin_key" = [])),
    params(("name" = String, Path, description = "The agent's name")),
    request_body = schema::AgentChange,
    responses(
        (status = 200, description = "Changed; fields left out keep their value. A deactivated agent's or one moved to another team's open leads go back to routing", body = schema::Agent),
        (status = 400, description = "`invalid_path`, `invalid_json`, `duplicate_key`, `invalid_body`, `unknown_field` (`field`: the key), `invalid_field`; `invalid_capacity`, `invalid_hours`, `invalid_weight`", body = schema::Error),
        (status = 404, description = "`agent_not_found` (`field`: `agent`), `team_not_found` (`field`: `team`)", body = schema::Error),
        AdminErrors,
        BodyErrors,
    ),
)]
pub async fn agent_set(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    NameParam(name): NameParam,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let allowed: Vec<&str> = AGENT_FIELDS
        .iter()
        .copied()
        .filter(|f| *f != "name")
        .collect();
    let spec = agent_spec(&object(&headers, raw, &allowed)?, Some(name))?;
    let app = state.app.clone();
    let agent = blocking(move || {
        if !app.agents(tenant.id)?.iter().any(|a| a.name == spec.name) {
            return Err(LeadsError::NoAgent(spec.name.clone()).into());
        }
        Ok(app.put_agent(tenant.id, &spec)?)
    })
    .await?;
    Ok(Json(json!(agent)))
}

/// `GET /api/routes` → the routing rules in order.
#[utoipa::path(
    get,
    operation_id = "leads_routes",
    path = "/api/routes",
    summary = "Routing rules",
    tag = "leads",
    security(("admin_key" = [])),
    responses((status = 200, description = "The routing rules, in the order they are tried (the first match wins)", body = schema::Routes), AdminErrors),
)]
pub async fn routes(Axum(state): Axum<State>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let app = state.app.clone();
    let rules = blocking(move || {
        Ok(app
            .store()
            .lead_rules(tenant.id)
            .map_err(LeadsError::from)?)
    })
    .await?;
    Ok(Json(rules_json(&rules)))
}

/// `POST /api/routes {"if", "team"}` → the rules with the new one last.
#[utoipa::path(
    post,
    operation_id = "leads_route_add",
    path = "/api/routes",
    summary = "Add a routing rule",
    tag = "leads",
    security(("admin_key" = [])),
    request_body = schema::RouteNew,
    responses(
        (status = 201, description = "Appended: the rules in order, the new one last", body = schema::Routes),
        (status = 400, description = "`invalid_json`, `duplicate_key`, `invalid_body`, `unknown_field` (`field`: the key), `missing_field`, `invalid_field`; `invalid_expression`, `unknown_tag` (`field`: `if`)", body = schema::Error),
        (status = 404, description = "`team_not_found` (`field`: `team`)", body = schema::Error),
        AdminErrors,
        BodyErrors,
    ),
)]
pub async fn route_add(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let o = object(&headers, raw, &["if", "team"])?;
    let (expr, team) = (required(&o, "if")?, required(&o, "team")?);
    let app = state.app.clone();
    let rules = blocking(move || Ok(app.add_route(tenant.id, &expr, &team)?)).await?;
    Ok((StatusCode::CREATED, Json(rules_json(&rules))))
}

/// `DELETE /api/routes/{id}` → the rules left.
#[utoipa::path(
    delete,
    operation_id = "leads_route_remove",
    path = "/api/routes/{id}",
    summary = "Remove a routing rule",
    tag = "leads",
    security(("admin_key" = [])),
    params(("id" = i64, Path, description = "A rule id")),
    responses(
        (status = 200, description = "Removed: the rules left, in order", body = schema::Routes),
        (status = 400, description = "`invalid_rule_id` (`field`: `id`)", body = schema::Error),
        (status = 404, description = "`rule_not_found` (`field`: `id`)", body = schema::Error),
        AdminErrors,
    ),
)]
pub async fn route_remove(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    IdParam(id): IdParam,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let id = path_id(&id, "invalid_rule_id", "rule")?;
    let app = state.app.clone();
    let rules = blocking(move || Ok(app.remove_route(tenant.id, id)?)).await?;
    Ok(Json(rules_json(&rules)))
}

/// `GET /api/reports/leads` → the leads report.
#[utoipa::path(
    get,
    operation_id = "reports_leads",
    path = "/api/reports/leads",
    summary = "The leads report",
    description = "Leads by state, by channel and by agent; time to first contact (p50/p90, minutes) and the share in time; the repeat arrivals each team absorbed.",
    tag = "leads",
    security(("admin_key" = [])),
    responses(
        (status = 200, description = "The report", body = schema::LeadReport),
        AdminErrors,
    ),
)]
pub async fn report(Axum(state): Axum<State>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let app = state.app.clone();
    let r = blocking(move || Ok(app.lead_report(tenant.id)?)).await?;
    Ok(Json(json!(r)))
}

/// `GET /api/leads?state=&agent=&team=&pool=&limit=` → leads, newest first.
#[utoipa::path(
    get,
    operation_id = "leads_list",
    path = "/api/leads",
    summary = "Leads",
    tag = "leads",
    security(("admin_key" = [])),
    params(
        ("state" = Option<String>, Query, description = "`new`, `contacted`, `qualified`, `won`, `lost`, `invalid` or `merged`"),
        ("agent" = Option<String>, Query, description = "Only this agent's"),
        ("team" = Option<String>, Query, description = "Only this team's"),
        ("pool" = Option<bool>, Query, description = "`true`: only leads without an owner (the team's pool)"),
        ("limit" = Option<i64>, Query, minimum = 0, description = "At most this many (default 100; clamped to 1–10,000)"),
    ),
    responses(
        (status = 200, description = "The leads, each with its arrivals", body = schema::Leads),
        (status = 400, description = "`invalid_state` (`field`: `state`), `invalid_field` (`agent`, `team`, `pool`), `invalid_number` (`limit`), `invalid_query`", body = schema::Error),
        AdminErrors,
    ),
)]
pub async fn leads(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    Query(q): Query,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let lead_state = label(&q, "state")?;
    let agent = label(&q, "agent")?;
    let team = label(&q, "team")?;
    let pooled = match q.get("pool").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(v) => {
            return Err(ApiError::bad(
                "invalid_field",
                Some("pool"),
                format!("pool {v:?} must be true or false"),
            ));
        }
    };
    let limit = number(&q, "limit", 100)?.clamp(1, 10_000) as usize;
    let app = state.app.clone();
    let list = blocking(move || {
        let filter = LeadFilter {
            state: lead_state.as_deref(),
            owner: agent.as_deref(),
            team: team.as_deref(),
            pooled,
            limit,
            ..LeadFilter::default()
        };
        Ok(app.leads_json(tenant.id, &filter)?)
    })
    .await?;
    Ok(Json(json!({ "leads": list })))
}

/// `GET /api/leads/{id}` → the lead, its arrivals and its log.
#[utoipa::path(
    get,
    operation_id = "leads_get",
    path = "/api/leads/{id}",
    summary = "A lead with its log",
    tag = "leads",
    security(("admin_key" = [])),
    params(("id" = i64, Path, description = "A lead id")),
    responses(
        (status = 200, description = "The lead with its arrivals, and its log oldest first", body = schema::LeadDetail),
        (status = 400, description = "`invalid_lead_id` (`field`: `id`)", body = schema::Error),
        (status = 404, description = "`lead_not_found`", body = schema::Error),
        AdminErrors,
    ),
)]
pub async fn lead(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    IdParam(id): IdParam,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let id = path_id(&id, "invalid_lead_id", "lead")?;
    let app = state.app.clone();
    Ok(Json(
        blocking(move || Ok(app.lead_detail(tenant.id, id)?)).await?,
    ))
}

/// Runs a change of one lead and answers the lead as changed.
async fn change(
    state: State,
    headers: HeaderMap,
    id: String,
    raw: Result<Bytes, BytesRejection>,
    allowed: &'static [&'static str],
    f: impl FnOnce(&siyu_app::App, TenantId, i64, &Map<String, Value>) -> Result<StoredLead, ApiError>
    + Send
    + 'static,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let id = path_id(&id, "invalid_lead_id", "lead")?;
    let o = object(&headers, raw, allowed)?;
    let app = state.app.clone();
    let lead = blocking(move || {
        let lead = f(&app, tenant.id, id, &o)?;
        Ok(app.lead_json(tenant.id, &lead)?)
    })
    .await?;
    Ok(Json(lead))
}

/// `POST /api/leads/{id}/log {"kind", "result", "agent"}`: a follow-up.
#[utoipa::path(
    post,
    operation_id = "leads_log",
    path = "/api/leads/{id}/log",
    summary = "Log a follow-up",
    tag = "leads",
    security(("admin_key" = [])),
    params(("id" = i64, Path, description = "A lead id")),
    request_body = schema::LeadFollowUp,
    responses(
        (status = 200, description = "Logged; a call, message or visit is the first contact if none was made and moves a `new` lead to `contacted`", body = schema::Lead),
        (status = 400, description = "`invalid_lead_id` (`field`: `id`), `invalid_json`, `duplicate_key`, `invalid_body`, `unknown_field`, `missing_field`, `invalid_field`; `invalid_follow_up` (`field`: `kind`)", body = schema::Error),
        (status = 404, description = "`lead_not_found`, `agent_not_found` (`field`: `agent`)", body = schema::Error),
        (status = 409, description = "`lead_closed` (`field`: `id`)", body = schema::Error),
        AdminErrors,
        BodyErrors,
    ),
)]
pub async fn log(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    IdParam(id): IdParam,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    change(
        state,
        headers,
        id,
        raw,
        &["kind", "result", "agent"],
        |app, t, id, o| {
            let kind = required(o, "kind")?;
            let result = text(o, "result")?;
            let agent = text(o, "agent")?;
            Ok(app.log_follow_up(t, id, &kind, result.as_deref(), agent.as_deref())?)
        },
    )
    .await
}

/// `POST /api/leads/{id}/state {"state", "agent"}`.
#[utoipa::path(
    post,
    operation_id = "leads_state",
    path = "/api/leads/{id}/state",
    summary = "Change a lead's state",
    tag = "leads",
    security(("admin_key" = [])),
    params(("id" = i64, Path, description = "A lead id")),
    request_body = schema::LeadStateChange,
    responses(
        (status = 200, description = "Changed, in the allowed order (new → contacted → qualified → won; lost or invalid from any open state)", body = schema::Lead),
        (status = 400, description = "`invalid_lead_id` (`field`: `id`), `invalid_json`, `duplicate_key`, `invalid_body`, `unknown_field`, `missing_field`, `invalid_field`; `invalid_state` (`field`: `state`)", body = schema::Error),
        (status = 404, description = "`lead_not_found`", body = schema::Error),
        (status = 409, description = "`state_not_allowed` (`field`: `state`): not next in the order from the lead's state", body = schema::Error),
        AdminErrors,
        BodyErrors,
    ),
)]
pub async fn set_state(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    IdParam(id): IdParam,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    change(
        state,
        headers,
        id,
        raw,
        &["state", "agent"],
        |app, t, id, o| {
            let to = required(o, "state")?;
            let agent = text(o, "agent")?;
            Ok(app.set_lead_state(t, id, &to, agent.as_deref())?)
        },
    )
    .await
}

/// `POST /api/leads/{id}/assign {"agent"}`.
#[utoipa::path(
    post,
    operation_id = "leads_assign",
    path = "/api/leads/{id}/assign",
    summary = "Give a lead to an agent",
    tag = "leads",
    security(("admin_key" = [])),
    params(("id" = i64, Path, description = "A lead id")),
    request_body = schema::LeadAgent,
    responses(
        (status = 200, description = "The agent owns the lead now", body = schema::Lead),
        (status = 400, description = "`invalid_lead_id` (`field`: `id`), `invalid_json`, `duplicate_key`, `invalid_body`, `unknown_field`, `missing_field`, `invalid_field`", body = schema::Error),
        (status = 404, description = "`lead_not_found`, `agent_not_found` (`field`: `agent`)", body = schema::Error),
        (status = 409, description = "`agent_inactive` (`field`: `agent`), `lead_closed` (`field`: `id`)", body = schema::Error),
        AdminErrors,
        BodyErrors,
    ),
)]
pub async fn assign(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    IdParam(id): IdParam,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    change(state, headers, id, raw, &["agent"], |app, t, id, o| {
        let agent = required(o, "agent")?;
        Ok(app.assign_lead(t, id, &agent, false)?)
    })
    .await
}

/// `POST /api/leads/{id}/claim {"agent"}`: an agent takes a lead from the pool.
#[utoipa::path(
    post,
    operation_id = "leads_claim",
    path = "/api/leads/{id}/claim",
    summary = "Claim a lead from the pool",
    tag = "leads",
    security(("admin_key" = [])),
    params(("id" = i64, Path, description = "A lead id")),
    request_body = schema::LeadAgent,
    responses(
        (status = 200, description = "The agent owns the lead now", body = schema::Lead),
        (status = 400, description = "`invalid_lead_id` (`field`: `id`), `invalid_json`, `duplicate_key`, `invalid_body`, `unknown_field`, `missing_field`, `invalid_field`", body = schema::Error),
        (status = 404, description = "`lead_not_found`, `agent_not_found` (`field`: `agent`)", body = schema::Error),
        (status = 409, description = "`lead_owned`, `lead_closed` (`field`: `id`): not in the pool; `agent_inactive`, `daily_cap` (`field`: `agent`)", body = schema::Error),
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
    change(state, headers, id, raw, &["agent"], |app, t, id, o| {
        let agent = required(o, "agent")?;
        Ok(app.assign_lead(t, id, &agent, true)?)
    })
    .await
}
