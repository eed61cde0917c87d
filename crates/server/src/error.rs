//! The HTTP edge's one error type: every failure maps to a status and a stable code here.
//!
//! Two shapes of the same answer: the native `{"error": {"code", "message", "field"}}`, and
//! for the Segment-compatible `/v1/*` routes ([`SegmentError`]) the same body with `code` and
//! `message` also at the top level. RudderStack's Python SDK reads `payload['code']` from
//! every error body; without it the SDK raises `KeyError`, counts that as retryable and
//! retries a refused batch for minutes while `flush()` blocks.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use siyu_app::AppError;

#[derive(Debug)]
pub enum ApiError {
    /// 400: the request is wrong; `field` names what.
    BadRequest {
        code: &'static str,
        message: String,
        field: Option<String>,
    },
    /// Any other status with a code: 404 for a missing fan, 409 for a decision that
    /// contradicts the state.
    Status {
        status: StatusCode,
        code: &'static str,
        message: String,
        field: Option<String>,
    },
    /// 400: a file in the body (a journey definition) was refused; like `BadRequest`, with
    /// the file's 1-based `line` in the body too. `field` is the path in the file
    /// (`steps[2].then`); none for a TOML syntax error.
    BadFile {
        code: &'static str,
        message: String,
        field: Option<String>,
        line: usize,
    },
    /// 400 with a batch answer attached (every event was refused).
    AllRejected(Value),
    /// 401: no key, or not a key of this server.
    Unauthorized(String),
    /// 403: a write key used where an admin key is needed.
    Forbidden,
    NotFound,
    /// 405: the path exists, the method does not (the `Allow` header lists those that do).
    MethodNotAllowed,
    /// 413
    TooLarge(usize),
    /// 415
    UnsupportedMediaType(String),
    /// 503: shutting down.
    Unavailable,
    /// 503 with `Retry-After: 1`: another node serves the tenant, or it is passing between
    /// nodes (see `crate::owner`).
    Moving,
    /// 503: the store does not answer (PostgreSQL down or restarting); logged once here, the
    /// client sees no detail and retries.
    StoreUnavailable(String),
    /// 500: logged once here; the client sees no detail.
    Internal(String),
    /// 408: the body did not arrive within the body timeout (seconds).
    BodyTimeout(u64),
    /// 429: the key has used its requests for now; `Retry-After` says in how many seconds one
    /// more is let through.
    RateLimited {
        retry_after: u64,
    },
}

impl ApiError {
    pub fn bad(code: &'static str, field: Option<&str>, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            code,
            message: message.into(),
            field: field.map(str::to_string),
        }
    }
}

impl From<crate::strict::StrictError> for ApiError {
    fn from(e: crate::strict::StrictError) -> Self {
        match e {
            crate::strict::StrictError::Syntax(e) => ApiError::bad(
                "invalid_json",
                None,
                format!("the body is not valid JSON: {e}"),
            ),
            crate::strict::StrictError::DuplicateKey(path) => ApiError::bad(
                "duplicate_key",
                Some(&path),
                format!("the key {path} appears twice in one object; send each key once"),
            ),
        }
    }
}

impl From<siyu_app::IdentityError> for ApiError {
    fn from(e: siyu_app::IdentityError) -> Self {
        use siyu_app::IdentityError as E;
        let e = match e {
            E::App(e) => return e.into(),
            e => e,
        };
        let code = e.code();
        let (status, field) = match &e {
            E::App(_) => (StatusCode::INTERNAL_SERVER_ERROR, None),
            E::Decision(siyu_engine::DecisionError::UnknownFan(_)) => (StatusCode::NOT_FOUND, None),
            E::UnknownKind(_) => (StatusCode::BAD_REQUEST, Some("kind")),
            E::BadValue(_) => (StatusCode::BAD_REQUEST, Some("value")),
            E::Decision(_) | E::NotMerged(_) => (StatusCode::CONFLICT, None),
        };
        ApiError::Status {
            status,
            code,
            message: e.to_string(),
            field: field.map(str::to_string),
        }
    }
}

impl From<siyu_app::segments::SegmentError> for ApiError {
    fn from(e: siyu_app::segments::SegmentError) -> Self {
        use siyu_app::segments::SegmentError;
        // Not the request's fault: the store's or the writer's answer.
        let e = match e {
            SegmentError::App(e) => return e.into(),
            e => e,
        };
        let status = match &e {
            SegmentError::NotFound(_) | SegmentError::NoFan(_) => StatusCode::NOT_FOUND,
            SegmentError::Exists(_) => StatusCode::CONFLICT,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::Status {
            status,
            code: e.code(),
            message: e.to_string(),
            field: e.field().map(str::to_string),
        }
    }
}

impl From<siyu_app::triggers::TriggerError> for ApiError {
    fn from(e: siyu_app::triggers::TriggerError) -> Self {
        use siyu_app::triggers::TriggerError;
        // Not the request's fault: the store's or the writer's answer.
        let e = match e {
            TriggerError::App(e) => return e.into(),
            e => e,
        };
        let status = match &e {
            TriggerError::NoFan(_) | TriggerError::NoCursor(_) => StatusCode::NOT_FOUND,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::Status {
            status,
            code: e.code(),
            message: e.to_string(),
            field: e.field().map(str::to_string),
        }
    }
}

impl From<siyu_app::LayerError> for ApiError {
    fn from(e: siyu_app::LayerError) -> Self {
        match e {
            siyu_app::LayerError::App(e) => e.into(),
            siyu_app::LayerError::Rules(ref r) => ApiError::Status {
                status: StatusCode::BAD_REQUEST,
                code: e.code(),
                field: Some(format!("line {}", r.line)),
                message: e.to_string(),
            },
        }
    }
}

impl From<siyu_app::analytics::PredictError> for ApiError {
    fn from(e: siyu_app::analytics::PredictError) -> Self {
        use siyu_app::analytics::PredictError as E;
        match e {
            E::App(e) => e.into(),
            // The request is fine; the tenant's orders cannot identify the models.
            E::Model(m) => ApiError::Status {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: m.code(),
                message: format!("the tenant's orders cannot be modelled: {m}"),
                field: None,
            },
        }
    }
}

impl From<siyu_app::spend::SpendError> for ApiError {
    fn from(e: siyu_app::spend::SpendError) -> Self {
        use siyu_app::spend::SpendError as E;
        match e {
            E::App(e) => e.into(),
            E::Invalid {
                line,
                column,
                code,
                ref message,
            } => ApiError::BadFile {
                code,
                message: format!("line {line}, column {column}: {message}"),
                field: Some(column.to_string()),
                line: usize::try_from(line).unwrap_or(usize::MAX),
            },
        }
    }
}

impl From<siyu_app::journeys::JourneyError> for ApiError {
    fn from(e: siyu_app::journeys::JourneyError) -> Self {
        use siyu_app::journeys::JourneyError as E;
        // Not the request's fault: the store's or the writer's answer.
        let e = match e {
            E::App(e) => return e.into(),
            e => e,
        };
        let (code, field, line) = (e.code(), e.field(), e.line());
        let status = match &e {
            E::Invalid(_) => {
                return ApiError::BadFile {
                    code,
                    message: e.to_string(),
                    field: field.filter(|f| !f.is_empty()),
                    line: line.unwrap_or(1),
                };
            }
            E::NoJourney(_) | E::NoTask(_) => StatusCode::NOT_FOUND,
            E::TaskConflict { .. } => StatusCode::CONFLICT,
            E::InvalidPolicy { .. } | E::InvalidArgument { .. } => StatusCode::BAD_REQUEST,
            E::App(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::Status {
            status,
            code,
            message: e.to_string(),
            field,
        }
    }
}

impl From<siyu_app::leads::LeadsError> for ApiError {
    fn from(e: siyu_app::leads::LeadsError) -> Self {
        use siyu_app::leads::LeadsError as E;
        // Not the request's fault: the store's or the writer's answer.
        let e = match e {
            E::App(e) => return e.into(),
            e => e,
        };
        let status = match &e {
            E::NoTeam(_) | E::NoAgent(_) | E::NoLead(_) | E::NoGroup(_) => StatusCode::NOT_FOUND,
            // A rule id that is not there is a missing thing too.
            E::Invalid(r) if r.code == "rule_not_found" => StatusCode::NOT_FOUND,
            // The lead's or the agent's state forbids it now: a conflict, not bad input.
            E::Invalid(r)
                if matches!(
                    r.code,
                    "state_not_allowed"
                        | "lead_closed"
                        | "lead_owned"
                        | "daily_cap"
                        | "agent_inactive"
                        | "duplicate_group"
                ) =>
            {
                StatusCode::CONFLICT
            }
            E::Invalid(_) => StatusCode::BAD_REQUEST,
            E::App(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::Status {
            status,
            code: e.code(),
            message: e.to_string(),
            field: e.field().map(str::to_string),
        }
    }
}

impl From<siyu_app::channels::ChannelError> for ApiError {
    fn from(e: siyu_app::channels::ChannelError) -> Self {
        use siyu_app::channels::ChannelError as E;
        // Not the request's fault: the store's or the sealer's answer.
        let e = match e {
            E::App(e) => return e.into(),
            e => e,
        };
        let (status, field) = match &e {
            // The path names no channel.
            E::UnknownChannel(_) => (StatusCode::NOT_FOUND, Some("kind")),
            // A kill switch before the settings: PUT them first.
            E::NotConfigured(_) => (StatusCode::CONFLICT, Some("kind")),
            E::Invalid { field, .. } | E::TargetNotAllowed { field, .. } => {
                (StatusCode::BAD_REQUEST, Some(field.as_str()))
            }
            E::App(_) => (StatusCode::INTERNAL_SERVER_ERROR, None),
        };
        ApiError::Status {
            status,
            code: e.code(),
            field: field.map(str::to_string),
            message: e.to_string(),
        }
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::WriterStopped => ApiError::Unavailable,
            e if e.code() == "tenant_moving" => ApiError::Moving,
            e if e.code() == "store_unavailable" => ApiError::StoreUnavailable(e.to_string()),
            AppError::InvalidTenantName(_) | AppError::AmbiguousTenant(_) | AppError::NoTenant => {
                ApiError::bad(e.code(), None, e.to_string())
            }
            AppError::InvalidKeyRole(_) => ApiError::bad(e.code(), Some("key"), e.to_string()),
            AppError::InvalidGrace(_) => {
                ApiError::bad(e.code(), Some("grace_seconds"), e.to_string())
            }
            other => ApiError::Internal(format!("{other}")),
        }
    }
}

fn body(code: &str, message: &str, field: Option<&str>) -> Value {
    json!({"error": {"code": code, "message": message, "field": field}})
}

impl ApiError {
    /// The status and the native JSON body.
    fn parts(self) -> (StatusCode, Value) {
        match self {
            ApiError::BadRequest {
                code,
                message,
                field,
            } => (
                StatusCode::BAD_REQUEST,
                body(code, &message, field.as_deref()),
            ),
            ApiError::Status {
                status,
                code,
                message,
                field,
            } => (status, body(code, &message, field.as_deref())),
            ApiError::BadFile {
                code,
                message,
                field,
                line,
            } => {
                let mut v = body(code, &message, field.as_deref());
                v["error"]["line"] = json!(line);
                (StatusCode::BAD_REQUEST, v)
            }
            ApiError::AllRejected(v) => (StatusCode::BAD_REQUEST, v),
            ApiError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, body("unauthorized", &m, None)),
            ApiError::Forbidden => (
                StatusCode::FORBIDDEN,
                body(
                    "forbidden",
                    "this needs the tenant's admin key; a write key may only ingest",
                    None,
                ),
            ),
            ApiError::NotFound => (
                StatusCode::NOT_FOUND,
                body("not_found", "no such endpoint", None),
            ),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                body(
                    "method_not_allowed",
                    "this endpoint does not take this method; see the Allow header",
                    None,
                ),
            ),
            ApiError::TooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                body(
                    "payload_too_large",
                    &format!("the request body is larger than {limit} bytes"),
                    None,
                ),
            ),
            ApiError::UnsupportedMediaType(m) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                body("unsupported_media_type", &m, None),
            ),
            ApiError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                body(
                    "shutting_down",
                    "the server is shutting down; retry on another node or later",
                    None,
                ),
            ),
            ApiError::Moving => (
                StatusCode::SERVICE_UNAVAILABLE,
                body(
                    "tenant_moving",
                    "this tenant is passing between nodes; retry in a second (events are stored \
                     once per id)",
                    None,
                ),
            ),
            ApiError::StoreUnavailable(detail) => {
                tracing::warn!(%detail, "the store is unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    body(
                        "store_unavailable",
                        "the store is unavailable; nothing of this request was stored unless it \
                         was acknowledged: retry (events are stored once per id)",
                        None,
                    ),
                )
            }
            ApiError::BodyTimeout(seconds) => (
                StatusCode::REQUEST_TIMEOUT,
                body(
                    "request_timeout",
                    &format!("the request body did not arrive within {seconds} s"),
                    None,
                ),
            ),
            ApiError::RateLimited { retry_after } => (
                StatusCode::TOO_MANY_REQUESTS,
                body(
                    "rate_limited",
                    &format!(
                        "this key has sent more requests than its rate limit; retry in {retry_after} s"
                    ),
                    None,
                ),
            ),
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    body(
                        "internal",
                        "internal error; nothing of this request was stored unless it was acknowledged",
                        None,
                    ),
                )
            }
        }
    }

    /// The `Retry-After` header the answer carries, in seconds.
    fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited { retry_after } => Some(*retry_after),
            ApiError::Moving => Some(1),
            _ => None,
        }
    }
}

/// The answer, with `Retry-After` when the error has one.
fn respond(status: StatusCode, value: Value, retry_after: Option<u64>) -> Response {
    let mut response = (status, Json(value)).into_response();
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry_after = self.retry_after();
        let (status, value) = self.parts();
        respond(status, value, retry_after)
    }
}

/// An [`ApiError`] answered in the Segment-compatible shape (every `/v1/*` route): the native
/// body plus `code` and `message` at the top level, copied from `error`.
#[derive(Debug)]
pub struct SegmentError(pub ApiError);

impl From<ApiError> for SegmentError {
    fn from(e: ApiError) -> Self {
        SegmentError(e)
    }
}

impl IntoResponse for SegmentError {
    fn into_response(self) -> Response {
        let retry_after = self.0.retry_after();
        let (status, mut value) = self.0.parts();
        let top = value
            .get("error")
            .map(|e| (e["code"].clone(), e["message"].clone()));
        if let (Some((code, message)), Value::Object(o)) = (top, &mut value) {
            o.insert("code".into(), code);
            o.insert("message".into(), message);
        }
        respond(status, value, retry_after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journey_errors_have_their_statuses_and_a_refused_file_its_line() {
        use siyu_app::journeys::JourneyError;
        let refused = JourneyError::Invalid(siyu_journey::def::DefError {
            line: 7,
            field: "steps[2].then".into(),
            code: "unknown_step",
            message: "no step is named \"ofer\"".into(),
        });
        let (status, body) = ApiError::from(refused).parts();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], "unknown_step");
        assert_eq!(body["error"]["field"], "steps[2].then");
        assert_eq!(body["error"]["line"], 7);
        let syntax = JourneyError::Invalid(siyu_journey::def::DefError {
            line: 2,
            field: String::new(),
            code: "invalid_journey",
            message: "invalid inline table".into(),
        });
        let (_, body) = ApiError::from(syntax).parts();
        assert_eq!(body["error"]["field"], Value::Null);
        for (e, status, code) in [
            (
                JourneyError::NoJourney("x".into()),
                StatusCode::NOT_FOUND,
                "journey_not_found",
            ),
            (
                JourneyError::NoTask(3),
                StatusCode::NOT_FOUND,
                "task_not_found",
            ),
            (
                JourneyError::TaskConflict {
                    id: 3,
                    state: "done",
                    wanted: "claimed",
                },
                StatusCode::CONFLICT,
                "task_conflict",
            ),
        ] {
            let (s, body) = ApiError::from(e).parts();
            assert_eq!((s, body["error"]["code"].as_str()), (status, Some(code)));
            assert!(body["error"].get("line").is_none(), "{body}");
        }
    }

    #[test]
    fn leads_errors_have_their_statuses_codes_and_fields() {
        use siyu_app::leads::LeadsError;
        use siyu_leads::LeadError;
        for (e, status, code, field) in [
            (
                LeadsError::NoAgent("x".into()),
                StatusCode::NOT_FOUND,
                "agent_not_found",
                Some("agent"),
            ),
            (
                LeadsError::NoTeam("t".into()),
                StatusCode::NOT_FOUND,
                "team_not_found",
                Some("team"),
            ),
            (
                LeadsError::NoLead(3),
                StatusCode::NOT_FOUND,
                "lead_not_found",
                None,
            ),
            (
                LeadsError::Invalid(LeadError::new("hours", "invalid_hours", "9-5")),
                StatusCode::BAD_REQUEST,
                "invalid_hours",
                Some("hours"),
            ),
            (
                LeadsError::Invalid(LeadError::new("state", "state_not_allowed", "no")),
                StatusCode::CONFLICT,
                "state_not_allowed",
                Some("state"),
            ),
            (
                LeadsError::Invalid(LeadError::new("id", "rule_not_found", "no rule 9")),
                StatusCode::NOT_FOUND,
                "rule_not_found",
                Some("id"),
            ),
        ] {
            let (s, body) = ApiError::from(e).parts();
            assert_eq!(s, status, "{body}");
            assert_eq!(body["error"]["code"], code, "{body}");
            assert_eq!(body["error"]["field"].as_str(), field, "{body}");
        }
    }

    #[test]
    fn a_store_that_does_not_answer_is_a_503_to_retry_without_detail() {
        let failures = [
            AppError::Commit {
                code: "store_unavailable",
                message: "PostgreSQL: connection refused at 10.0.0.7".into(),
            },
            AppError::Store(siyu_store::StoreError::Io {
                path: "10.0.0.7".into(),
                source: std::io::Error::other("connection refused"),
            }),
        ];
        for e in failures {
            let (status, body) = ApiError::from(e).parts();
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(body["error"]["code"], "store_unavailable");
            assert!(!body.to_string().contains("10.0.0.7"), "{body}");
        }
        let (status, _) = ApiError::from(AppError::Store(siyu_store::StoreError::Corrupt(
            "event seq 1: id".into(),
        )))
        .parts();
        assert_eq!(
            status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "corruption is not retried"
        );
    }
}
