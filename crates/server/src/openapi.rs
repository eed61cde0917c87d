//! `GET /openapi.json`: the OpenAPI 3.1 document of every route, for Swagger UI, client
//! generators and Schemathesis (`tests/schemathesis/run.sh` runs it against a live server in CI).
//!
//! The router and the document come from the same place: every route is registered with
//! `utoipa_axum::routes!` from its handler's `#[utoipa::path]` (see [`crate::routes`]), so a route
//! cannot be added without its path, parameters and answers being in the document. The two
//! routes axum's path syntax and utoipa's cannot share — the `/v1/{*rest}` catch-all and this
//! document itself — are listed in [`ApiDoc`]. The schemas are in [`crate::schema`]; the error
//! answers shared by many routes are the `IntoResponses` enums here.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoResponses, Modify, OpenApi};

use crate::schema::{Error, SegmentErrorBody};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Siyu",
        description = "Siyu (私域), a self-hosted private-domain operations engine: ingest \
            (native, Segment-compatible, Douyin webhooks), fans and identity, layers, segments \
            and tags, journeys and channels, leads. Every error is `{\"error\": {\"code\", \"message\", \
            \"field\"}}` with a stable `code` (a refused journey file adds its `line`); on `/v1/*` \
            also with `code` and `message` at the top level. Every \
            time in an answer is RFC 3339 in UTC with milliseconds (`2026-11-20T12:31:07.000Z`).",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(crate::ingest::segment_not_found, document),
    modifiers(&Security, &OperationIds),
    tags(
        (name = "ingest", description = "Events in: native, Segment-compatible (docs/ingest.md)"),
        (name = "fans", description = "Fans, identity decisions, the dedup report (docs/identity.md)"),
        (name = "layers", description = "Layer reports, flows, transitions, rules (docs/layers.md)"),
        (name = "analytics", description = "The funnel, three-domain attribution, lifetime value and retention (docs/analytics.md)"),
        (name = "segments", description = "Segments, triggers and tags (docs/segments.md)"),
        (name = "triggers", description = "The one trigger stream and its consumers' cursors (docs/triggers.md)"),
        (name = "connectors", description = "Douyin and Ocean Engine (docs/connectors.md)"),
        (name = "journeys", description = "SOP journeys, their reports, the send policy, dead letters and staff tasks (docs/journeys.md)"),
        (name = "channels", description = "Where journeys' messages leave: webhook, Douyin IM, WeCom robot"),
        (name = "leads", description = "Leads to teams: teams, agents, routing rules, and the leads they own; fan groups (粉丝群) (docs/leads.md)"),
        (name = "tenant", description = "The tenant's settings and totals"),
        (name = "operations", description = "Health, metrics, this document"),
    ),
)]
pub(crate) struct ApiDoc;

/// The security schemes: each tenant has an admin key and a write key.
struct Security;

impl Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(description))
                    .build(),
            )
        };
        components.add_security_scheme(
            "admin_key",
            bearer("`Authorization: Bearer <admin key>`: the tenant's admin key (`siyu tenant create` prints it); every route under /api/ takes it"),
        );
        components.add_security_scheme(
            "operator_secret",
            bearer("`Authorization: Bearer <secret>`: the running server's own secret, from its data directory's lock file (0600); what `siyu tenant create` beside a running server sends"),
        );
        components.add_security_scheme(
            "write_key",
            bearer(
                "`Authorization: Bearer <write key>`: the tenant's write key; it may only ingest",
            ),
        );
        components.add_security_scheme(
            "write_key_basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "HTTP Basic with the write key as the user name and no password (what Segment's and RudderStack's libraries send); `writeKey` in the body also works",
                    ))
                    .build(),
            ),
        );
    }
}

/// One handler that serves several methods (the `/v1/` catch-all) has one operation id per
/// method: `NAME_METHOD`. Operation ids must be unique in a document.
struct OperationIds;

impl Modify for OperationIds {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        for item in api.paths.paths.values_mut() {
            let ops = [
                ("get", &mut item.get),
                ("put", &mut item.put),
                ("post", &mut item.post),
                ("delete", &mut item.delete),
                ("patch", &mut item.patch),
            ];
            let ids: Vec<Option<String>> = ops
                .iter()
                .map(|(_, o)| o.as_ref().and_then(|o| o.operation_id.clone()))
                .collect();
            for (method, op) in ops {
                if let Some(op) = op {
                    let shared = op.operation_id.as_ref().is_some_and(|id| {
                        ids.iter().filter(|i| i.as_ref() == Some(id)).count() > 1
                    });
                    if shared {
                        op.operation_id = op.operation_id.take().map(|id| format!("{id}_{method}"));
                    }
                }
            }
        }
    }
}

/// Adds the answers of [`crate::guard`], which runs before every handler, to the operations it
/// guards, so that no handler has to list them: 429 `rate_limited` (with `Retry-After`) on
/// every operation that takes a key in the headers, 401 on `/v1/{path}` too (a key in the
/// headers is checked before the path is known to be none), and 408 `request_timeout` and 413
/// on every operation with a body.
pub(crate) fn add_guard_answers(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::header::HeaderBuilder;
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    let answer = |schema: &str, description: &str, retry_after: bool| {
        let mut r = ResponseBuilder::new().description(description).content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(schema)))
                .build(),
        );
        if retry_after {
            r = r.header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(ObjectBuilder::new().schema_type(Type::Integer))
                    .description(Some("Seconds until the key may send one more request"))
                    .build(),
            );
        }
        RefOr::T(r.build())
    };
    for (path, item) in doc.paths.paths.iter_mut() {
        let segment = path.starts_with("/v1/");
        let schema = if segment { "SegmentErrorBody" } else { "Error" };
        let keyed = path.starts_with("/api/") || segment;
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            let responses = &mut op.responses.responses;
            if keyed {
                responses.entry("401".into()).or_insert_with(|| {
                    answer(
                        schema,
                        "The key in the headers is not a key of this server (`unauthorized`)",
                        false,
                    )
                });
                responses.entry("429".into()).or_insert_with(|| {
                    answer(schema, "The key has sent more requests than its rate limit (`rate_limited`); retry after `Retry-After` seconds", true)
                });
            }
            if op.request_body.is_some() {
                responses.entry("408".into()).or_insert_with(|| {
                    answer(
                        schema,
                        "The body did not arrive within the body timeout (`request_timeout`)",
                        false,
                    )
                });
                responses.entry("413".into()).or_insert_with(|| {
                    answer(
                        schema,
                        "The body is larger than the route's limit (`payload_too_large`)",
                        false,
                    )
                });
            }
        }
    }
}

/// The document, built once.
pub(crate) fn json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        crate::openapi()
            .to_json()
            .expect("the OpenAPI document serializes")
    })
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    summary = "This OpenAPI document",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of this server", content_type = "application/json", body = Object)),
)]
pub(crate) async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], json())
}

// ---------------------------------------------------------------------------------------------
// Error answers shared by many routes

/// The errors of every route that takes the admin key.
#[derive(IntoResponses)]
#[allow(dead_code)] // described, never constructed
pub(crate) enum AdminErrors {
    /// No key, or not a key of this server (`unauthorized`).
    #[response(status = 401)]
    Unauthorized(Error),
    /// A write key where the admin key is needed (`forbidden`).
    #[response(status = 403)]
    Forbidden(Error),
    /// Internal error (`internal`); logged by the server, no detail in the answer.
    #[response(status = 500)]
    Internal(Error),
    /// The store does not answer (`store_unavailable`): PostgreSQL is down or restarting;
    /// retry.
    #[response(status = 503)]
    StoreUnavailable(Error),
}

/// The errors of reading a JSON body.
#[derive(IntoResponses)]
#[allow(dead_code)] // described, never constructed
pub(crate) enum BodyErrors {
    /// The body is larger than the route's limit (`payload_too_large`).
    #[response(status = 413)]
    TooLarge(Error),
    /// Not `Content-Type: application/json` (`unsupported_media_type`), or a
    /// `Content-Encoding` other than gzip.
    #[response(status = 415)]
    UnsupportedMediaType(Error),
}

/// The errors of the Segment-compatible routes besides 400.
#[derive(IntoResponses)]
#[allow(dead_code)] // described, never constructed
pub(crate) enum SegmentErrors {
    /// No write key, or not a key of this server (`unauthorized`).
    #[response(status = 401)]
    Unauthorized(SegmentErrorBody),
    /// The body is over 500 KB (`payload_too_large`).
    #[response(status = 413)]
    TooLarge(SegmentErrorBody),
    /// Not JSON (`unsupported_media_type`).
    #[response(status = 415)]
    UnsupportedMediaType(SegmentErrorBody),
    /// Internal error (`internal`): nothing of the request was stored.
    #[response(status = 500)]
    Internal(SegmentErrorBody),
    /// The server is shutting down (`shutting_down`), or the store does not answer
    /// (`store_unavailable`): retry.
    #[response(status = 503)]
    Unavailable(SegmentErrorBody),
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    /// The router is built in `lib.rs` with `routes!`, which registers a handler with its
    /// `#[utoipa::path]`; a plain `.route(...)` registers it without documentation. The only two
    /// are documented in [`super::ApiDoc`].
    #[test]
    fn every_route_is_registered_with_its_documentation() {
        let plain: Vec<&str> = include_str!("lib.rs")
            .lines()
            .map(str::trim)
            .filter(|l| {
                l.contains(".route(") || l.contains(".route_service(") || l.contains(".nest(")
            })
            .collect();
        assert_eq!(
            plain,
            [
                r#".route("/v1/{*rest}", any(ingest::segment_not_found))"#,
                r#".route("/openapi.json", get(openapi::document))"#,
            ],
            "register routes with routes!(handler) so that they are documented"
        );
    }

    #[test]
    fn operation_ids_are_unique_and_every_operation_has_answers() {
        let doc = crate::openapi();
        let mut ids = HashSet::new();
        for (path, item) in &doc.paths.paths {
            for op in [&item.get, &item.put, &item.post, &item.delete, &item.patch]
                .into_iter()
                .flatten()
            {
                let id = op.operation_id.clone().expect("an operation id");
                assert!(ids.insert(id.clone()), "{path}: operation id {id} twice");
                assert!(!op.responses.responses.is_empty(), "{path}: no responses");
            }
        }
        assert!(ids.len() >= 40, "{} operations", ids.len());
    }
}
