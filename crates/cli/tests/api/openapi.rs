//! `GET /openapi.json` against the running server: the document parses, lists exactly the
//! routes the router serves (so a route added without its documentation fails here), and what
//! it says about statuses and errors holds on the wire. Schemathesis checks every answer against
//! the document's schemas in CI (`tests/schemathesis/run.sh`); these are the checks that need
//! no generated input, plus the answers Schemathesis and its review turned up.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::both;
use crate::helpers::{Backend, TestApp, spawn_app};

/// Every route of the server, as `METHOD path` in the document's path syntax. A route added to
/// the router with `routes!` appears in the document and must be added here too (and one added
/// without it is not documented, which `siyu-server`'s own test refuses).
const ROUTES: &[&str] = &[
    "GET /api/triggers",
    "GET /api/triggers/cursors",
    "GET /api/triggers/cursors/{consumer}",
    "PUT /api/triggers/cursors/{consumer}",
    "POST /api/events",
    "GET /api/stats",
    "GET /api/tenant",
    "PATCH /api/tenant",
    "POST /api/tenant/keys/rotate",
    "POST /api/tenants",
    "GET /api/fans/lookup",
    "GET /api/fans/{id}",
    "POST /api/fans/{id}/unmerge",
    "GET /api/fans/{id}/tags",
    "GET /api/identity/duplicates",
    "POST /api/identity/confirm",
    "POST /api/identity/distinct",
    "GET /api/reports/dedup",
    "GET /api/reports/layers",
    "GET /api/reports/flow",
    "GET /api/reports/funnel",
    "GET /api/reports/attribution",
    "GET /api/reports/ltv",
    "GET /api/reports/retention",
    "GET /api/reports/cac",
    "GET /api/reports/ltv/predicted",
    "POST /api/spend",
    "GET /api/layers/transitions",
    "GET /api/rules",
    "PUT /api/rules",
    "GET /api/connectors/douyin",
    "PUT /api/connectors/douyin",
    "GET /api/connectors/oceanengine",
    "PUT /api/connectors/oceanengine",
    "POST /webhooks/douyin/{tenant}",
    "POST /api/segments/preview",
    "GET /api/segments/triggers",
    "GET /api/segments",
    "POST /api/segments",
    "GET /api/segments/{id}",
    "DELETE /api/segments/{id}",
    "GET /api/segments/{id}/members",
    "POST /api/tags",
    "POST /api/tags/auto",
    "POST /api/journeys",
    "GET /api/journeys",
    "GET /api/journeys/policy",
    "PUT /api/journeys/policy",
    "GET /api/journeys/{name}",
    "POST /api/journeys/{name}/pause",
    "POST /api/journeys/{name}/resume",
    "GET /api/journeys/{name}/report",
    "GET /api/dead-letters",
    "POST /api/dead-letters/retry",
    "GET /api/tasks",
    "POST /api/tasks/{id}/claim",
    "POST /api/tasks/{id}/done",
    "GET /api/channels",
    "PUT /api/channels/{kind}",
    "POST /api/channels/{kind}/kill",
    "POST /api/channels/{kind}/resume",
    "GET /api/teams",
    "POST /api/teams",
    "GET /api/agents",
    "POST /api/agents",
    "PATCH /api/agents/{name}",
    "GET /api/routes",
    "POST /api/routes",
    "DELETE /api/routes/{id}",
    "GET /api/leads",
    "GET /api/reports/leads",
    "GET /api/leads/{id}",
    "POST /api/leads/{id}/log",
    "POST /api/leads/{id}/state",
    "POST /api/leads/{id}/assign",
    "POST /api/leads/{id}/claim",
    "GET /api/groups",
    "POST /api/groups",
    "GET /api/groups/{id}",
    "GET /healthz",
    "GET /metrics",
    "GET /openapi.json",
    "POST /v1/batch",
    "POST /v1/track",
    "POST /v1/identify",
    "POST /v1/page",
    "POST /v1/screen",
    "POST /v1/group",
    "POST /v1/alias",
    "GET /v1/{path}",
    "POST /v1/{path}",
    "PUT /v1/{path}",
    "PATCH /v1/{path}",
    "DELETE /v1/{path}",
];

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

async fn document(app: &TestApp) -> Value {
    let r = app
        .client
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let text = r.text().await.unwrap();
    serde_json::from_str(&text).expect("the document is JSON")
}

/// `METHOD path` of every operation in the document.
fn operations(doc: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            if item.get(m.to_ascii_lowercase()).is_some() {
                out.insert(format!("{m} {path}"));
            }
        }
    }
    out
}

/// A concrete URL path for a documented one.
fn concrete(path: &str) -> String {
    path.replace("{id}", "1")
        .replace("{tenant}", "acme")
        .replace("{name}", "welcome")
        .replace("{kind}", "webhook")
        .replace("{path}", "no-such-endpoint")
}

async fn call(app: &TestApp, method: &str, path: &str) -> (u16, Option<String>, Value) {
    let r = app
        .client
        .request(method.parse().unwrap(), format!("{}{path}", app.base))
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let allow = r
        .headers()
        .get("allow")
        .map(|v| v.to_str().unwrap().to_string());
    (status, allow, r.json().await.unwrap_or(Value::Null))
}

async fn the_document_lists_every_route(backend: Backend) {
    let app = spawn_app(backend).await;
    let doc = document(&app).await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["title"], "Siyu");
    let documented = operations(&doc);
    let expected: BTreeSet<String> = ROUTES.iter().map(|r| r.to_string()).collect();
    let missing: Vec<_> = expected.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "routes not documented: {missing:?}; documented but not in ROUTES: {extra:?}"
    );

    // Every documented operation is served (not the router's 404 or 405), and every other
    // method of a documented path is a JSON 405 with `Allow`.
    for (path, item) in doc["paths"].as_object().unwrap() {
        let url = concrete(path);
        for m in METHODS {
            let (status, allow, body) = call(&app, m, &url).await;
            let code = body["error"]["code"].as_str().unwrap_or("").to_string();
            if item.get(m.to_ascii_lowercase()).is_some() {
                assert_ne!(status, 405, "{m} {path} is documented but not served");
                if path != "/v1/{path}" {
                    assert_ne!(code, "not_found", "{m} {path} is documented but not routed");
                }
                let documented = &item[m.to_ascii_lowercase()]["responses"];
                assert!(
                    documented.get(status.to_string()).is_some(),
                    "{m} {path} answered {status}, which its documentation does not list: {body}"
                );
            } else {
                assert_eq!(status, 405, "{m} {path}: {body}");
                assert_eq!(code, "method_not_allowed", "{m} {path}: {body}");
                assert!(allow.is_some(), "{m} {path}: no Allow header");
                if path.starts_with("/v1/") {
                    assert_eq!(body["code"], "method_not_allowed", "{m} {path}: {body}");
                }
            }
        }
    }
    app.stop().await;
}

/// Every operation documents its errors with the error shape, and every route under `/api/`
/// names the admin key (ingest: the write key too), `/v1/*` the write key as Basic user.
async fn errors_and_security_are_documented(backend: Backend) {
    let app = spawn_app(backend).await;
    let doc = document(&app).await;
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["admin_key"]["scheme"], "bearer");
    assert_eq!(schemes["write_key"]["scheme"], "bearer");
    assert_eq!(schemes["write_key_basic"]["scheme"], "basic");
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["Time"]["format"], "date-time");
    assert_eq!(
        schemas["ErrorDetail"]["required"],
        json!(["code", "message", "field"])
    );
    assert_eq!(
        schemas["SegmentErrorBody"]["required"],
        json!(["code", "message", "error"])
    );
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            let Some(op) = item.get(m.to_ascii_lowercase()) else {
                continue;
            };
            let names: Vec<&str> = op["security"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .flat_map(|s| s.as_object().unwrap().keys().map(String::as_str))
                        .collect()
                })
                .unwrap_or_default();
            if path == "/api/events" {
                assert_eq!(names, ["write_key", "admin_key"], "{m} {path}");
            } else if path == "/api/tenants" {
                assert_eq!(names, ["operator_secret"], "{m} {path}");
            } else if path.starts_with("/api/") {
                assert_eq!(names, ["admin_key"], "{m} {path}");
            } else if path.starts_with("/v1/") && path != "/v1/{path}" {
                assert_eq!(names, ["write_key_basic", "write_key"], "{m} {path}");
            }
            let error_schema = if path.starts_with("/v1/") {
                "SegmentErrorBody"
            } else {
                "Error"
            };
            for (status, response) in op["responses"].as_object().unwrap() {
                if status.starts_with('2') || path == "/metrics" || path == "/openapi.json" {
                    continue;
                }
                let text = response["content"]["application/json"]["schema"].to_string();
                assert!(
                    text.contains(error_schema) || text.contains("Refused"),
                    "{m} {path} {status}: {text}"
                );
            }
            if path.starts_with("/api/") {
                for status in ["401", "403", "500"] {
                    if path != "/api/events" || status != "403" {
                        assert!(
                            op["responses"].get(status).is_some(),
                            "{m} {path}: no {status}"
                        );
                    }
                }
            }
        }
    }
    app.stop().await;
}

async fn send(
    app: &TestApp,
    method: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let r = app
        .client
        .request(method.parse().unwrap(), format!("{}{path}", app.base))
        .bearer_auth(&app.admin_key)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// What the review of axum's rejections and Schemathesis's runs found: bad paths, bad
/// methods, bodies over a limit and `null` for an optional field are answered as documented.
async fn bad_input_is_answered_as_documented(backend: Backend) {
    let app = spawn_app(backend).await;

    // A path parameter that is not UTF-8 once decoded: axum's own rejection was plain text.
    let (status, _, body) = call(&app, "GET", "/api/fans/%FF").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "invalid_path");
    assert_eq!(body["error"]["field"], "id");
    let r = app
        .client
        .post(format!("{}/webhooks/douyin/%FF%FE", app.base))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["field"], "tenant");

    // A method a route does not take: axum's 405 had an empty body.
    let (status, allow, body) = call(&app, "DELETE", "/api/stats").await;
    assert_eq!((status, allow.as_deref()), (405, Some("GET,HEAD")));
    assert_eq!(body["error"]["code"], "method_not_allowed");
    let (status, _, body) = call(&app, "GET", "/v1/track").await;
    assert_eq!(status, 405);
    assert_eq!(body["code"], "method_not_allowed");
    assert_eq!(body["error"]["code"], "method_not_allowed");
    let (status, _, body) = call(&app, "GET", "/v1/no/such/thing").await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], "not_found");

    // A rules file over its limit is a 413, like every other body (it was a 400).
    let (status, body) = send(
        &app,
        "PUT",
        "/api/rules",
        "text/plain",
        vec![b'#'; 65 * 1024],
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large");
    // No body at all is the defaults, as documented.
    let (status, body) = send(&app, "PUT", "/api/rules", "text/plain", Vec::new()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["engagement_window_days"], 30);

    // `null` for an optional field is the field left out (it was refused on these).
    let json = |v: Value| v.to_string().into_bytes();
    let (status, body) = send(
        &app,
        "PATCH",
        "/api/tenant",
        "application/json",
        json(json!({"custom_domain": null})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["custom_domain"], "private");
    let (status, body) = send(
        &app,
        "POST",
        "/api/segments/preview",
        "application/json",
        json(json!({"expr": "layer >= passerby", "as_of": null, "sample": null})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(
        &app,
        "POST",
        "/api/tags",
        "application/json",
        json(json!({"tag": "t", "fan": null, "expr": "layer >= passerby", "remove": null})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["changed"], 0);
    app.stop().await;
}

both!(
    the_document_lists_every_route,
    errors_and_security_are_documented,
    bad_input_is_answered_as_documented,
);
