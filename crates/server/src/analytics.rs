//! The analytics reports (docs/analytics.md): the layer funnel, three-domain attribution,
//! historical LTV and weekly retention, each what `siyu report …` prints with `--json`.
//! Read on the readers' pool: a report never holds up ingest.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State as Axum;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

use crate::extract::Query;
use crate::openapi::AdminErrors;
use crate::query::{number, time};
use crate::{ApiError, State, auth, schema};

type Q = std::collections::HashMap<String, String>;

/// `from` and `to` of a period: `to` defaults to now, `from` to `days` before it.
fn period(q: &Q, days: i64) -> Result<(i64, i64), ApiError> {
    let to = time(q, "to")?.unwrap_or_else(siyu_domain::time::now_ms);
    let from = time(q, "from")?.unwrap_or(to - days * siyu_domain::time::MS_PER_DAY);
    if from >= to {
        return Err(ApiError::bad(
            "invalid_range",
            Some("to"),
            "to must be after from",
        ));
    }
    Ok((from, to))
}

fn to_json(v: impl serde::Serialize) -> Result<Json<Value>, ApiError> {
    serde_json::to_value(v)
        .map(Json)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// A report read on the readers' pool, as JSON (the caller has checked the key first, so a
/// request without one is a 401 whatever its query).
async fn report<T: serde::Serialize + Send + 'static>(
    state: &State,
    read: impl FnOnce(&siyu_app::App) -> Result<T, ApiError> + Send + 'static,
) -> Result<Json<Value>, ApiError> {
    let app = state.app.clone();
    to_json(crate::readers::reading(move || read(&app)).await?)
}

/// `GET /api/reports/funnel?from&to`.
#[utoipa::path(
    get,
    path = "/api/reports/funnel",
    summary = "The layer funnel over a period",
    tag = "analytics",
    security(("admin_key" = [])),
    params(
        ("from" = Option<String>, Query, format = DateTime, description = "The period's start (RFC 3339; default 30 days before `to`)"),
        ("to" = Option<String>, Query, format = DateTime, description = "The period's end (RFC 3339; default now)"),
    ),
    responses(
        (status = 200, description = "Of the fans in each layer at `from`, how many stood in the next layer or above at `to`", body = schema::Funnel),
        (status = 400, description = "`invalid_timestamp` (`field`: `from` or `to`), `invalid_range` (`to`: not after `from`), `invalid_query`", body = schema::Error),
        AdminErrors,
    ),
)]
pub async fn funnel(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    Query(q): Query,
) -> Result<Json<Value>, ApiError> {
    let t = auth::admin(&state, &headers).await?.id;
    let (from, to) = period(&q, 30)?;
    report(&state, move |app| Ok(app.funnel(t, from, to)?)).await
}

/// `GET /api/reports/attribution?from&to`.
#[utoipa::path(
    get,
    path = "/api/reports/attribution",
    summary = "Three-domain attribution of a period's orders",
    tag = "analytics",
    security(("admin_key" = [])),
    params(
        ("from" = Option<String>, Query, format = DateTime, description = "Orders at or after (RFC 3339; default 30 days before `to`)"),
        ("to" = Option<String>, Query, format = DateTime, description = "Orders before (RFC 3339; default now)"),
    ),
    responses(
        (status = 200, description = "Orders and revenue by domain under first-touch, last-touch and linear credit", body = schema::Attribution),
        (status = 400, description = "`invalid_timestamp` (`field`: `from` or `to`), `invalid_range` (`to`: not after `from`), `invalid_query`", body = schema::Error),
        AdminErrors,
    ),
)]
pub async fn attribution(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    Query(q): Query,
) -> Result<Json<Value>, ApiError> {
    let t = auth::admin(&state, &headers).await?.id;
    let (from, to) = period(&q, 30)?;
    report(&state, move |app| Ok(app.attribution(t, from, to)?)).await
}

/// `GET /api/reports/ltv?as_of`.
#[utoipa::path(
    get,
    path = "/api/reports/ltv",
    summary = "Historical lifetime value by cohort, first domain and layer",
    tag = "analytics",
    security(("admin_key" = [])),
    params(("as_of" = Option<String>, Query, format = DateTime, description = "Count events up to this instant (RFC 3339; default now)")),
    responses(
        (status = 200, description = "Fans, buyers, orders, revenue, revenue per fan and the repeat-purchase rate per group", body = schema::Ltv),
        (status = 400, description = "`invalid_timestamp` (`field`: `as_of`), `invalid_query`", body = schema::Error),
        AdminErrors,
    ),
)]
pub async fn ltv(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    Query(q): Query,
) -> Result<Json<Value>, ApiError> {
    let t = auth::admin(&state, &headers).await?.id;
    let as_of = time(&q, "as_of")?.unwrap_or_else(siyu_domain::time::now_ms);
    report(&state, move |app| Ok(app.ltv(t, as_of)?)).await
}

/// `GET /api/reports/retention?from&to&as_of&weeks`.
#[utoipa::path(
    get,
    path = "/api/reports/retention",
    summary = "Weekly cohort retention",
    tag = "analytics",
    security(("admin_key" = [])),
    params(
        ("from" = Option<String>, Query, format = DateTime, description = "Cohorts first active at or after (RFC 3339; default `weeks` weeks before `to`)"),
        ("to" = Option<String>, Query, format = DateTime, description = "Cohorts first active before (RFC 3339; default now)"),
        ("as_of" = Option<String>, Query, format = DateTime, description = "Count activity up to (RFC 3339; default now)"),
        ("weeks" = Option<i64>, Query, minimum = 1, maximum = 52, description = "Weeks followed per cohort (default 12)"),
    ),
    responses(
        (status = 200, description = "Each weekly cohort's size and the share active in each week after", body = schema::Retention),
        (status = 400, description = "`invalid_timestamp` (`field`: `from`, `to` or `as_of`), `invalid_range` (`to`: not after `from`), `invalid_number` (`weeks`: not 1 to 52), `invalid_query`", body = schema::Error),
        AdminErrors,
    ),
)]
pub async fn retention(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    Query(q): Query,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let weeks = number(&q, "weeks", 12)?;
    let max = siyu_app::analytics::MAX_WEEKS as i64;
    if !(1..=max).contains(&weeks) {
        return Err(ApiError::bad(
            "invalid_number",
            Some("weeks"),
            format!("weeks {weeks} is not 1 to {max}"),
        ));
    }
    let (from, to) = period(&q, 7 * weeks)?;
    let as_of = time(&q, "as_of")?.unwrap_or_else(siyu_domain::time::now_ms);
    report(&state, move |app| {
        Ok(app.retention(tenant.id, from, to, as_of, weeks as usize)?)
    })
    .await
}

/// Largest spend file accepted: 64 MiB (a million rows and more).
pub const SPEND_BODY_LIMIT: usize = 64 * 1024 * 1024;

/// `POST /api/spend` with the CSV file as the body.
#[utoipa::path(
    post,
    path = "/api/spend",
    summary = "Import a spend file",
    tag = "analytics",
    security(("admin_key" = [])),
    request_body(content = String, content_type = "text/csv", description = "`date,channel,domain,amount`: a local date (YYYY-MM-DD), a channel, public|commercial|private, yuan with at most two decimals (docs/analytics.md)"),
    responses(
        (status = 201, description = "Stored whole; rows of a date, channel and domain stored before are replaced", body = schema::SpendImport),
        (status = 400, description = "The first bad line, nothing stored: `invalid_header`, `invalid_csv`, `invalid_date`, `invalid_channel`, `invalid_domain`, `invalid_amount`, `negative_amount`, `duplicate_row`, `too_many_rows` (`field`: the column, `line`: the line); `invalid_body` (not UTF-8)", body = schema::Error),
        (status = 413, description = "Over 64 MiB (`payload_too_large`)", body = schema::Error),
        AdminErrors,
    ),
)]
pub async fn spend_import(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let body = crate::body::raw_body(raw, SPEND_BODY_LIMIT)?;
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad("invalid_body", None, "the spend file must be UTF-8 CSV"))?;
    let app = state.app.clone();
    let done = crate::blocking(move || Ok(app.import_spend(tenant.id, &text)?)).await?;
    Ok((StatusCode::CREATED, to_json(done)?))
}

/// `GET /api/reports/cac?from&to`.
#[utoipa::path(
    get,
    path = "/api/reports/cac",
    summary = "Acquisition cost by channel and domain",
    tag = "analytics",
    security(("admin_key" = [])),
    params(
        ("from" = Option<String>, Query, format = DateTime, description = "The period's start (RFC 3339; default 30 days before `to`)"),
        ("to" = Option<String>, Query, format = DateTime, description = "The period's end (RFC 3339; default now)"),
    ),
    responses(
        (status = 200, description = "Spend over new followers and over unique leads, by channel and by first-touch domain; repeat leads shown, not counted", body = schema::Cac),
        (status = 400, description = "`invalid_timestamp` (`field`: `from` or `to`), `invalid_range` (`to`: not after `from`), `invalid_query`", body = schema::Error),
        AdminErrors,
    ),
)]
pub async fn cac(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    Query(q): Query,
) -> Result<Json<Value>, ApiError> {
    let t = auth::admin(&state, &headers).await?.id;
    let (from, to) = period(&q, 30)?;
    report(&state, move |app| Ok(app.cac(t, from, to)?)).await
}

/// `GET /api/reports/ltv/predicted?days&as_of`.
#[utoipa::path(
    get,
    path = "/api/reports/ltv/predicted",
    summary = "Predicted lifetime value (BG/NBD and Gamma-Gamma) by layer and cohort",
    tag = "analytics",
    security(("admin_key" = [])),
    params(
        ("days" = Option<i64>, Query, minimum = 1, maximum = 3650, description = "Days ahead (default 90)"),
        ("as_of" = Option<String>, Query, format = DateTime, description = "Count orders up to this instant (RFC 3339; default now)"),
    ),
    responses(
        (status = 200, description = "The fitted parameters, and per layer and acquisition cohort the buyers, their mean probability alive, expected orders and revenue over the horizon", body = schema::PredictedLtv),
        (status = 400, description = "`invalid_number` (`field`: `days`), `invalid_timestamp` (`field`: `as_of`), `invalid_query`", body = schema::Error),
        (status = 422, description = "The tenant's orders cannot identify the model: `no_customers`, `no_repeat_buyers`, `not_identified`, `did_not_converge` (the message says why)", body = schema::Error),
        AdminErrors,
    ),
)]
pub async fn ltv_predicted(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    Query(q): Query,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::admin(&state, &headers).await?;
    let days = number(&q, "days", 90)?;
    let max = i64::from(siyu_app::analytics::MAX_HORIZON_DAYS);
    if !(1..=max).contains(&days) {
        return Err(ApiError::bad(
            "invalid_number",
            Some("days"),
            format!("days {days} is not 1 to {max}"),
        ));
    }
    let as_of = time(&q, "as_of")?.unwrap_or_else(siyu_domain::time::now_ms);
    report(&state, move |app| {
        Ok(app.ltv_predicted(tenant.id, as_of, days as u32)?)
    })
    .await
}
