//! Ingest endpoints: native `POST /api/events` and Segment-compatible `POST /v1/*`.
//!
//! Every `/v1/*` answer that is an error, from a refused batch to a wrong write key or an
//! unknown path, goes out as a [`SegmentError`] (top-level `code` and `message` too).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State as Axum;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use serde_json::{Value, json};
use siyu_app::{BatchOutcome, Rejection, parse_batch};
use siyu_domain::segment::{self, Kind};
use siyu_domain::{Domain, time};

use crate::error::SegmentError;
use crate::openapi::{BodyErrors, SegmentErrors};
use crate::{ApiError, State, auth, body, schema};

/// Answers a batch: 200 with the outcome, or 400 when nothing in it was acceptable.
fn answer(
    outcome: BatchOutcome,
    total: usize,
    extra: Option<(&str, Value)>,
) -> Result<Json<Value>, ApiError> {
    let mut v = serde_json::to_value(&outcome).map_err(|e| ApiError::Internal(e.to_string()))?;
    if total > 0 && outcome.rejected.len() == total {
        v["error"] = json!({
            "code": "all_events_rejected",
            "message": format!("all {total} events were rejected; see rejected[] for each reason"),
            "field": null,
        });
        return Err(ApiError::AllRejected(v));
    }
    if let Some((k, x)) = extra {
        v[k] = x;
    }
    Ok(Json(v))
}

/// `POST /api/events`: a JSON array of native events, `{"events": [...]}`, or one event.
///
/// Valid events are stored even when others in the batch are refused.
#[utoipa::path(
    post,
    path = "/api/events",
    summary = "Ingest native events",
    tag = "ingest",
    security(("write_key" = []), ("admin_key" = [])),
    request_body(content = schema::EventBatch, description = "At most 10,000 events and 8 MiB (after gzip is undone); `Content-Encoding: gzip` is accepted"),
    responses(
        (status = 200, description = "What happened to each event", body = schema::BatchOutcome),
        (status = 400, description = "The body is not a batch (`invalid_json`, `duplicate_key` (`field`: the key's path), `invalid_body`, `unknown_field` (a key beside `events` in a batch object), `invalid_batch`, `empty_batch`, `batch_too_large`), or every event was refused (`all_events_rejected`, with the batch answer)", body = schema::IngestRefused),
        (status = 401, description = "No key, or not a key of this server (`unauthorized`)", body = schema::Error),
        BodyErrors,
        (status = 500, description = "Internal error (`internal`): nothing unacknowledged was stored", body = schema::Error),
        (status = 503, description = "Shutting down (`shutting_down`), or the store does not answer (`store_unavailable`): retry with the same event ids", body = schema::Error),
    ),
)]
pub async fn native(
    Axum(state): Axum<State>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::tenant(&state, auth::header_key(&headers)).await?;
    let limit = state.limits.native_body;
    let values = match body::json_body(&headers, raw, limit)? {
        Value::Array(a) => a,
        Value::Object(mut o) if o.contains_key("events") => {
            if let Some(k) = o.keys().find(|k| k.as_str() != "events") {
                return Err(ApiError::bad(
                    "unknown_field",
                    Some(k),
                    format!("unknown field {k:?}; a batch object has only events"),
                ));
            }
            match o.remove("events") {
                Some(Value::Array(a)) => a,
                _ => {
                    return Err(ApiError::bad(
                        "invalid_batch",
                        Some("events"),
                        "events must be an array",
                    ));
                }
            }
        }
        v @ Value::Object(_) => vec![v],
        _ => {
            return Err(ApiError::bad(
                "invalid_batch",
                None,
                "the body must be an array of events, {\"events\": [...]}, or one event object",
            ));
        }
    };
    if values.is_empty() {
        return Err(ApiError::bad(
            "empty_batch",
            None,
            "the batch has no events",
        ));
    }
    if values.len() > state.limits.native_events {
        return Err(ApiError::bad(
            "batch_too_large",
            None,
            format!("at most {} events per request", state.limits.native_events),
        ));
    }
    let total = values.len();
    let (events, rejected) = parse_batch(values, state.app.time_bounds(time::now_ms()));
    let mut outcome = BatchOutcome {
        rejected,
        ..Default::default()
    };
    state.app.ingest(tenant.id, events, &mut outcome).await?;
    answer(outcome, total, None)
}

async fn segment(
    state: State,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
    kind: Option<Kind>,
) -> Result<Json<Value>, ApiError> {
    let limits = state.limits;
    let mut body = body::json_body(&headers, raw, limits.segment_body)?;
    let Value::Object(obj) = &mut body else {
        return Err(ApiError::bad(
            "invalid_batch",
            None,
            "the body must be a JSON object",
        ));
    };
    // Segment sends the write key as the basic-auth user; some clients put it in the body.
    let key = auth::header_key(&headers).or_else(|| {
        obj.get("writeKey")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let tenant = auth::tenant(&state, key).await?;
    let sent_at = obj
        .get("sentAt")
        .and_then(Value::as_str)
        .map(str::to_string);
    let messages = match kind {
        Some(_) => vec![body],
        None => match obj.remove("batch") {
            Some(Value::Array(a)) => a,
            _ => {
                return Err(ApiError::bad(
                    "invalid_batch",
                    Some("batch"),
                    "batch must be an array of messages",
                ));
            }
        },
    };
    if messages.is_empty() {
        return Err(ApiError::bad(
            "empty_batch",
            Some("batch"),
            "the batch has no messages",
        ));
    }
    let cx = segment::Context {
        sent_at: sent_at.as_deref(),
        custom_domain: tenant.custom_domain.parse().unwrap_or(Domain::Private),
        bounds: state.app.time_bounds(time::now_ms()),
    };
    let total = messages.len();
    let mut events = Vec::with_capacity(total);
    let mut outcome = BatchOutcome::default();
    for (i, m) in messages.into_iter().enumerate() {
        let size = serde_json::to_vec(&m)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > limits.segment_event {
            let id = m
                .get("messageId")
                .and_then(Value::as_str)
                .map(str::to_string);
            outcome
                .rejected
                .push(siyu_app::too_large(i, id, limits.segment_event));
            continue;
        }
        match segment::to_event(m, kind, &cx) {
            Ok(e) => events.push(e),
            Err(e) => outcome.rejected.push(Rejection::new(i, e)),
        }
    }
    state.app.ingest(tenant.id, events, &mut outcome).await?;
    // Segment's clients look only at the status; `success` is what Segment itself answers.
    answer(outcome, total, Some(("success", Value::Bool(true))))
}

macro_rules! segment_endpoint {
    ($($name:ident => $kind:expr, $path:literal, $body:ty, $what:literal);*) => {$(
        #[doc = concat!("`POST ", $path, "`: ", $what, ".")]
        #[utoipa::path(
            post,
            path = $path,
            summary = $what,
            tag = "ingest",
            security(("write_key_basic" = []), ("write_key" = [])),
            request_body(content = $body, description = "At most 32 KB per message, 500 KB per request; `Content-Encoding: gzip` is accepted"),
            responses(
                (status = 200, description = "What happened to each message", body = schema::SegmentOutcome),
                (status = 400, description = "The body is not a message or batch (`invalid_json`, `duplicate_key` (`field`: the key's path), `invalid_body`, `invalid_batch`, `empty_batch`), or every message was refused (`all_events_rejected`, with the batch answer)", body = schema::SegmentRefused),
                SegmentErrors,
            ),
        )]
        pub async fn $name(
            Axum(state): Axum<State>,
            headers: HeaderMap,
            raw: Result<Bytes, BytesRejection>,
        ) -> Result<Json<Value>, SegmentError> {
            Ok(segment(state, headers, raw, $kind).await?)
        }
    )*};
}

/// Any other path under `/v1/`: a 404 a Segment or RudderStack client can read (a data-plane
/// URL with a path in it ends up here).
#[utoipa::path(
    method(get, post, put, patch, delete),
    path = "/v1/{path}",
    summary = "Any other path under /v1/: 404",
    tag = "ingest",
    params(("path" = String, Path, description = "Any path under /v1/ other than the routes above, with or without more slashes")),
    responses((status = 404, description = "No such endpoint (`not_found`)", body = schema::SegmentErrorBody)),
)]
pub async fn segment_not_found() -> SegmentError {
    SegmentError(ApiError::NotFound)
}

segment_endpoint!(
    segment_batch => None, "/v1/batch", schema::SegmentBatch, "A batch of Segment messages of any kind";
    segment_track => Some(Kind::Track), "/v1/track", schema::Message, "One Segment track message";
    segment_identify => Some(Kind::Identify), "/v1/identify", schema::Message, "One Segment identify message";
    segment_page => Some(Kind::Page), "/v1/page", schema::Message, "One Segment page message";
    segment_screen => Some(Kind::Screen), "/v1/screen", schema::Message, "One Segment screen message";
    segment_group => Some(Kind::Group), "/v1/group", schema::Message, "One Segment group message";
    segment_alias => Some(Kind::Alias), "/v1/alias", schema::Message, "One Segment alias message"
);
