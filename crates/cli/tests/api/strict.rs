//! Strict bodies (issue 12, item 8): a repeated key is refused with its path, an unknown key of
//! Siyu's own bodies with its name, while Segment's clients keep sending every field they send;
//! and identity values that differ only in invisible characters or in Unicode normalization
//! are one person.

use serde_json::{Value, json};

use crate::both;
use crate::helpers::{Backend, TestApp, spawn_app};

async fn post_text(app: &TestApp, path: &str, key: &str, body: &str) -> (u16, Value) {
    app.post_raw(
        path,
        key,
        "application/json",
        body.as_bytes().to_vec(),
        None,
    )
    .await
}

fn event_with(id: &str, kind: &str, value: &str) -> Value {
    json!({"id": id, "type": "follow", "ts": "2026-10-01T12:00:00+08:00",
           "identities": {kind: value}})
}

async fn invisible_and_decomposed_spellings_are_one_fan(b: Backend) {
    let app = spawn_app(b).await;
    // Each person in four spellings: plain, with a zero-width space, wrapped in a
    // right-to-left override, and decomposed (NFD) or behind a BOM where NFD changes nothing.
    let people = [
        (
            "douyin_open_id",
            [
                "fan-\u{e9}",
                "fan-\u{200B}\u{e9}",
                "\u{202E}fan-\u{e9}\u{202C}",
                "fan-e\u{301}",
            ],
        ),
        (
            "phone",
            [
                "13800138000",
                "1380013\u{200B}8000",
                "\u{202E}13800138000",
                "\u{FEFF}13800138000",
            ],
        ),
        (
            "email",
            [
                "jos\u{e9}@example.com",
                "jos\u{e9}\u{200B}@example.com",
                "\u{202E}jos\u{e9}@example.com",
                "jose\u{301}@example.com",
            ],
        ),
    ];
    let mut batch = Vec::new();
    for (kind, spellings) in &people {
        for (i, v) in spellings.iter().enumerate() {
            batch.push(event_with(&format!("{kind}-{i}"), kind, v));
        }
    }
    let (s, v) = app.post_events(&Value::Array(batch)).await;
    assert_eq!((s, v["accepted"].as_u64()), (200, Some(12)), "{v}");
    let stats = app.stats().await;
    assert_eq!(stats["fans"], 3, "one fan per person: {stats}");
    // Only invisible characters: refused like an empty value.
    let (s, v) = app
        .post_events(&json!([event_with(
            "empty",
            "douyin_open_id",
            "\u{200B}\u{202E}"
        )]))
        .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(
        (
            v["rejected"][0]["code"].as_str(),
            v["rejected"][0]["field"].as_str()
        ),
        (Some("invalid_identity"), Some("identities.douyin_open_id"))
    );
    app.stop().await;
}

async fn a_repeated_key_is_refused_with_its_path(b: Backend) {
    let app = spawn_app(b).await;
    let w = app.write_key.clone();
    let cases = [
        (
            "/api/events",
            r#"[{"id":"d1","type":"follow","ts":"2026-10-01T00:00:00Z","identities":{"phone":"13800138000","phone":"13900139000"}}]"#,
            "[0].identities.phone",
        ),
        (
            "/api/events",
            r#"{"events":[{"id":"d2","type":"follow","ts":"2026-10-01T00:00:00Z","identities":{"phone":"13800138000"}}],"events":[]}"#,
            "events",
        ),
        (
            "/v1/track",
            r#"{"event":"follow","userId":"u1","messageId":"m1","userId":"u2"}"#,
            "userId",
        ),
        (
            "/v1/batch",
            r#"{"batch":[{"type":"track","event":"x","userId":"u","messageId":"m","properties":{"a":1,"a":2}}]}"#,
            "batch[0].properties.a",
        ),
    ];
    for (path, body, at) in cases {
        let (s, v) = post_text(&app, path, &w, body).await;
        assert_eq!(s, 400, "{path} {body}: {v}");
        assert_eq!(
            (v["error"]["code"].as_str(), v["error"]["field"].as_str()),
            (Some("duplicate_key"), Some(at)),
            "{path} {body}: {v}"
        );
    }
    // An admin body too, through the one body parser.
    let r = app
        .client
        .patch(format!("{}/api/tenant", app.base))
        .bearer_auth(&app.admin_key)
        .header("content-type", "application/json")
        .body(r#"{"custom_domain":"public","custom_domain":"private"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "duplicate_key", "{v}");
    assert_eq!(app.event_count().await, 0, "nothing stored");
    app.stop().await;
}

async fn unknown_keys_are_refused_in_siyus_bodies_and_kept_in_segments(b: Backend) {
    let app = spawn_app(b).await;
    let e = event_with("k1", "phone", "13800138000");
    let (s, v) = app.post_events(&json!({"events": [e], "extra": 1})).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(
        (v["error"]["code"].as_str(), v["error"]["field"].as_str()),
        (Some("unknown_field"), Some("extra"))
    );
    let mut with_extra = event_with("k2", "phone", "13800138000");
    with_extra["extra"] = json!(1);
    let (s, v) = app.post_events(&json!([with_extra])).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(
        (
            v["rejected"][0]["code"].as_str(),
            v["rejected"][0]["field"].as_str()
        ),
        (Some("unknown_field"), Some("extra"))
    );
    let (s, v) = app
        .admin_post(
            "/api/segments/preview",
            &json!({"expr": "layer >= potential", "bogus": 1}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str(), v["error"]["field"].as_str()),
        (400, Some("unknown_field"), Some("bogus"))
    );
    // What Segment's and RudderStack's libraries send, and fields Siyu has never heard of.
    let batch = json!({
        "batch": [{"type": "track", "event": "follow", "userId": "u1", "messageId": "m1",
                   "timestamp": "2026-10-01T12:00:00Z", "originalTimestamp": "2026-10-01T12:00:00Z",
                   "sentAt": "2026-10-01T12:00:01Z", "integrations": {"All": true},
                   "context": {"library": {"name": "analytics-python", "version": "2.3.3"},
                               "ip": "1.2.3.4"},
                   "_metadata": {"bundled": ["x"]}, "channel": "server", "version": 2,
                   "some_future_field": {"a": 1}}],
        "sentAt": "2026-10-01T12:00:01Z",
        "context": {"library": {"name": "analytics-python"}},
        "writeKey": app.write_key,
        "_metadata": {"unbundled": []}
    });
    let (s, v) = post_text(&app, "/v1/batch", "", &batch.to_string()).await;
    assert_eq!((s, v["accepted"].as_u64()), (200, Some(1)), "{v}");
    app.stop().await;
}

both!(
    invisible_and_decomposed_spellings_are_one_fan,
    a_repeated_key_is_refused_with_its_path,
    unknown_keys_are_refused_in_siyus_bodies_and_kept_in_segments,
);
