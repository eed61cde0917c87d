//! Segment-compatible ingest: what Segment's and RudderStack's libraries send.

use base64::Engine;
use serde_json::{Value, json};

use crate::both;
use crate::helpers::{Backend, spawn_app};

async fn post(
    app: &crate::helpers::TestApp,
    path: &str,
    auth: Option<&str>,
    body: &Value,
    gzip: bool,
) -> (u16, Value) {
    let mut bytes = body.to_string().into_bytes();
    let mut req = app
        .client
        .post(format!("{}{path}", app.base))
        .header("content-type", "application/json");
    if gzip {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&bytes).unwrap();
        bytes = e.finish().unwrap();
        req = req.header("content-encoding", "gzip");
    }
    if let Some(user) = auth {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:"));
        req = req.header("authorization", format!("Basic {basic}"));
    }
    let r = req.body(bytes).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn a_segment_batch_with_basic_auth_and_gzip_lands(b: Backend) {
    let app = spawn_app(b).await;
    let batch = json!({
        "batch": [
            {"type": "identify", "userId": "u1", "anonymousId": "anon-1", "messageId": "m1",
             "traits": {"phone": "138 0013 8000", "email": "Li@Example.com", "name": "李华"},
             "timestamp": "2026-10-01T12:00:00.123456+00:00"},
            {"type": "track", "event": "Order Completed", "userId": "u1", "messageId": "m2",
             "properties": {"order_id": "o1", "total": 199.0}, "timestamp": "2026-10-01T12:05:00+00:00"},
            {"type": "track", "event": "Coupon Viewed", "anonymousId": "anon-1", "messageId": "m3"},
            {"type": "page", "name": "Home", "anonymousId": "anon-1", "messageId": "m4"},
        ],
        "sentAt": "2026-10-01T12:06:00Z",
        "context": {"library": {"name": "analytics-python", "version": "2.3.3"}}
    });
    let (s, v) = post(&app, "/v1/batch", Some(&app.write_key), &batch, true).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["accepted"].as_u64(), v["success"].as_bool()),
        (Some(4), Some(true))
    );
    let stats = app.stats().await;
    assert_eq!(stats["fans"], 1);
    assert_eq!(stats["by_type"]["order"], 1);
    assert_eq!(stats["by_type"]["x_coupon_viewed"], 1);
    assert_eq!(stats["by_type"]["x_identify"], 1);
    // Retried by the library: all duplicates.
    let (_, v) = post(&app, "/v1/batch", Some(&app.write_key), &batch, false).await;
    assert_eq!(v["duplicates"], 4);
    app.stop().await;
}

async fn single_message_endpoints_and_write_key_in_body(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.write_key.clone();
    let cases = [
        (
            "/v1/track",
            json!({"event": "follow", "userId": "u2", "messageId": "t1", "writeKey": key}),
        ),
        (
            "/v1/identify",
            json!({"userId": "u2", "traits": {"phone": "8613900139000"}, "messageId": "t2", "writeKey": key}),
        ),
        (
            "/v1/page",
            json!({"anonymousId": "a2", "name": "Live", "messageId": "t3", "writeKey": key}),
        ),
        (
            "/v1/alias",
            json!({"previousId": "a2", "userId": "u2", "messageId": "t4", "writeKey": key}),
        ),
    ];
    for (path, body) in cases {
        let (s, v) = post(&app, path, None, &body, false).await;
        assert_eq!((s, v["accepted"].as_u64()), (200, Some(1)), "{path}: {v}");
    }
    let stats = app.stats().await;
    assert_eq!(
        stats["fans"], 1,
        "alias linked the anonymous visitor to the user"
    );
    assert_eq!(stats["by_type"]["follow"], 1);
    app.stop().await;
}

async fn segment_bad_input(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.write_key.clone();
    // No key anywhere.
    let (s, v) = post(
        &app,
        "/v1/track",
        None,
        &json!({"event": "x", "userId": "u", "messageId": "m"}),
        false,
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    // An event over 32 KB is refused on its own; the rest of the batch lands.
    let big = "x".repeat(33 * 1024);
    let batch = json!({"batch": [
        {"type": "track", "event": "Big", "userId": "u", "messageId": "big", "properties": {"blob": big}},
        {"type": "track", "event": "Small", "userId": "u", "messageId": "small"},
        {"type": "identify", "userId": "u", "traits": {"phone": "12"}, "messageId": "badphone"},
    ]});
    let (s, v) = post(&app, "/v1/batch", Some(&key), &batch, false).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["accepted"], 1);
    assert_eq!(v["rejected"][0]["code"], "event_too_large");
    assert_eq!(v["rejected"][0]["id"], "big");
    assert_eq!(v["rejected"][1]["field"], "traits.phone");
    // A batch over 500 KB is refused whole.
    let many: Vec<Value> = (0..20)
        .map(|i| json!({"type": "track", "event": "Big", "userId": "u", "messageId": format!("b{i}"), "properties": {"blob": "y".repeat(30 * 1024)}}))
        .collect();
    let (s, v) = post(
        &app,
        "/v1/batch",
        Some(&key),
        &json!({"batch": many}),
        false,
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    let (s, v) = post(
        &app,
        "/v1/batch",
        Some(&key),
        &json!({"batch": "nope"}),
        false,
    )
    .await;
    assert_eq!((s, v["error"]["field"].as_str()), (400, Some("batch")));
    assert_eq!(app.event_count().await, 1);
    app.stop().await;
}

async fn custom_events_go_to_the_tenants_domain(b: Backend) {
    let app = spawn_app(b).await;
    let patch = |body: Value| {
        app.client
            .patch(format!("{}/api/tenant", app.base))
            .bearer_auth(&app.admin_key)
            .json(&body)
            .send()
    };
    let r = patch(json!({"custom_domain": "web"})).await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["field"], "custom_domain");
    let r = patch(json!({"custom_domain": "商域"})).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["custom_domain"], "commercial");
    let msg = json!({"event": "Form Viewed", "userId": "u", "messageId": "m1"});
    let (s, _) = post(&app, "/v1/track", Some(&app.write_key.clone()), &msg, false).await;
    assert_eq!(s, 200);
    assert_eq!(app.stats().await["by_domain"]["commercial"], 1);
    app.stop().await;
}

/// The fans holding an identity value, by id.
async fn fans_of(app: &crate::helpers::TestApp, kind: &str, value: &str) -> Vec<i64> {
    let (s, v) = app
        .get(&format!("/api/fans/lookup?kind={kind}&value={value}"))
        .await;
    assert_eq!(s, 200, "{v}");
    v["fans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["fan"].as_i64().unwrap())
        .collect()
}

/// Segment's alias allows a user id as `previousId`: the two users' fans become one, the
/// merge names the alias, survives a rebuild from the log, and can be undone.
async fn an_alias_of_a_user_id_merges_the_two_fans(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.write_key.clone();
    let batch = json!({"batch": [
        {"type": "identify", "userId": "u-old", "messageId": "i1",
         "context": {"traits": {"phone": "138 0013 8000"}}},
        {"type": "identify", "userId": "u-new", "messageId": "i2"},
    ]});
    let (s, v) = post(&app, "/v1/batch", Some(&key), &batch, false).await;
    assert_eq!((s, v["accepted"].as_u64()), (200, Some(2)), "{v}");
    let (old, new) = (
        fans_of(&app, "user_id", "u-old").await,
        fans_of(&app, "user_id", "u-new").await,
    );
    assert_ne!(old, new, "two user ids, two fans");

    let alias = json!({"previousId": "u-old", "userId": "u-new", "messageId": "al-1"});
    let (s, v) = post(&app, "/v1/alias", Some(&key), &alias, false).await;
    assert_eq!((s, v["accepted"].as_u64()), (200, Some(1)), "{v}");
    let one = fans_of(&app, "user_id", "u-old").await;
    assert_eq!(one.len(), 1);
    assert_eq!(fans_of(&app, "user_id", "u-new").await, one, "one fan");
    assert_eq!(app.stats().await["fans"], 1);
    let (_, fan) = app.get(&format!("/api/fans/{}", one[0])).await;
    let merges = fan["merges"].as_array().unwrap();
    assert_eq!(merges.len(), 1, "{fan}");
    assert_eq!(merges[0]["cause"], "alias");
    assert_eq!(
        merges[0]["event_id"], "al-1",
        "the alias is the linking event"
    );
    assert_eq!(merges[0]["via"], json!(["user_id", "u-old"]));
    let from = merges[0]["from"].as_i64().unwrap();

    // Rebuilt from the log, the alias links the same fans.
    let app = app.restart().await;
    assert_eq!(fans_of(&app, "user_id", "u-new").await, one);
    assert_eq!(app.stats().await["fans"], 1);

    // An operator can undo it like any merge; the split survives a rebuild too.
    let (s, v) = app
        .admin_post(&format!("/api/fans/{from}/unmerge"), &json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(app.stats().await["fans"], 2);
    let app = app.restart().await;
    assert_eq!(app.stats().await["fans"], 2);
    assert_ne!(
        fans_of(&app, "user_id", "u-old").await,
        fans_of(&app, "user_id", "u-new").await
    );
    app.stop().await;
}

/// RudderStack's Python SDK reads `payload['code']` from every error body and retries for
/// minutes when it is missing, so every `/v1/*` error carries `code` and `message` at the top
/// level beside the native `error` object; `/api/*` errors keep the native shape only.
async fn v1_errors_carry_a_top_level_code(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.write_key.clone();
    let bad_phone = json!({"batch": [
        {"type": "track", "event": "x", "userId": "u", "messageId": "m1",
         "context": {"traits": {"phone": "138-abc"}}},
    ]});
    let track = json!({"event": "x", "userId": "u", "messageId": "m"});
    let many: Vec<Value> = (0..20)
        .map(|i| json!({"type": "track", "event": "Big", "userId": "u", "messageId": format!("b{i}"), "properties": {"blob": "y".repeat(30 * 1024)}}))
        .collect();
    // (what, path, key, body, status, code)
    let cases = [
        (
            "every event refused",
            "/v1/batch",
            Some(key.as_str()),
            bad_phone,
            400,
            "all_events_rejected",
        ),
        (
            "no key",
            "/v1/track",
            None,
            track.clone(),
            401,
            "unauthorized",
        ),
        (
            "wrong key",
            "/v1/batch",
            Some("sy_w_wrong"),
            json!({"batch": [track.clone()]}),
            401,
            "unauthorized",
        ),
        (
            "too large",
            "/v1/batch",
            Some(key.as_str()),
            json!({"batch": many}),
            413,
            "payload_too_large",
        ),
        (
            "unknown path",
            "/v1/v1/batch",
            Some(key.as_str()),
            track.clone(),
            404,
            "not_found",
        ),
    ];
    for (what, path, auth, body, status, code) in cases {
        let (s, v) = post(&app, path, auth, &body, false).await;
        assert_eq!(s, status, "{what}: {v}");
        assert_eq!(v["code"], code, "{what}: {v}");
        assert_eq!(v["error"]["code"], code, "{what}: {v}");
        assert_eq!(v["message"], v["error"]["message"], "{what}: {v}");
        assert!(
            v["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}"
        );
    }
    // A fully refused batch keeps its batch answer beside the error.
    let (_, v) = post(
        &app,
        "/v1/batch",
        Some(&key),
        &json!({"batch": [{"type": "identify", "userId": "u", "traits": {"phone": "12"}, "messageId": "p"}]}),
        false,
    )
    .await;
    assert_eq!(v["rejected"][0]["code"], "invalid_phone", "{v}");
    assert_eq!(v["rejected"][0]["field"], "traits.phone", "{v}");
    // 415: not JSON.
    let r = app
        .client
        .post(format!("{}/v1/batch", app.base))
        .basic_auth(&key, Some(""))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "unsupported_media_type", "{v}");
    // The native API keeps its one shape.
    let (s, v) = app
        .post_raw("/api/events", "", "application/json", b"[]".to_vec(), None)
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    assert!(v.get("code").is_none(), "{v}");
    assert_eq!(app.event_count().await, 0);
    app.stop().await;
}

/// Issue 12: one event dated 0000-01-01 (Segment) or 0001-01-01 (native) made the tenant's
/// per-day index cover two thousand years. Both are refused, naming the sender's field.
async fn events_before_the_earliest_time_are_refused_on_both_paths(b: Backend) {
    let app = spawn_app(b).await;
    let mut old = crate::helpers::event("old", "follow", "13800138000");
    old["ts"] = json!("0001-01-01T00:00:00Z");
    let (s, v) = app.post_events(&json!([old])).await;
    assert_eq!(s, 400, "{v}");
    let r = &v["rejected"][0];
    assert_eq!(
        (r["code"].as_str(), r["field"].as_str()),
        (Some("timestamp_too_old"), Some("ts")),
        "{v}"
    );
    let msg = json!({"event": "follow", "userId": "u1", "messageId": "m-old",
                     "timestamp": "0000-01-01T00:00:00Z"});
    let (s, v) = post(&app, "/v1/track", Some(&app.write_key), &msg, false).await;
    assert_eq!(s, 400, "{v}");
    let r = &v["rejected"][0];
    assert_eq!(
        (r["code"].as_str(), r["field"].as_str()),
        (Some("timestamp_too_old"), Some("timestamp")),
        "{v}"
    );
    // The floor itself is accepted.
    let msg = json!({"event": "follow", "userId": "u1", "messageId": "m-2000",
                     "timestamp": "2000-01-01T00:00:00Z"});
    let (s, v) = post(&app, "/v1/track", Some(&app.write_key), &msg, false).await;
    assert_eq!((s, v["accepted"].as_u64()), (200, Some(1)), "{v}");
    assert_eq!(app.event_count().await, 1);
    app.stop().await;
}

both!(
    events_before_the_earliest_time_are_refused_on_both_paths,
    an_alias_of_a_user_id_merges_the_two_fans,
    v1_errors_carry_a_top_level_code,
    custom_events_go_to_the_tenants_domain,
    a_segment_batch_with_basic_auth_and_gzip_lands,
    single_message_endpoints_and_write_key_in_body,
    segment_bad_input,
);
