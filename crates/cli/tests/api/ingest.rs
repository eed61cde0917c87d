//! Native ingest: accepted, duplicates, rejected; every kind of bad input answered with the
//! JSON error shape and nothing stored.

use std::io::Write;

use serde_json::{Value, json};

use crate::both;
use crate::helpers::{Backend, event, spawn_app, spawn_app_with};

async fn accepted_duplicates_and_rejections_are_reported(b: Backend) {
    let app = spawn_app(b).await;
    let batch = json!([
        event("e1", "follow", "138 0013 8000"),
        event("e2", "order", "+86-13800138000"),
        event("e3", "bogus", "13800138000"),
        event("e4", "follow", "138-abc"),
    ]);
    let (status, body) = app.post_events(&batch).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 2);
    assert_eq!(body["duplicates"], 0);
    let rejected = body["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 2);
    assert_eq!(rejected[0]["index"], 2);
    assert_eq!(rejected[0]["id"], "e3");
    assert_eq!(rejected[0]["code"], "unknown_event_type");
    assert_eq!(rejected[0]["field"], "type");
    assert_eq!(rejected[1]["code"], "invalid_phone");
    assert_eq!(rejected[1]["field"], "identities.phone");

    // Re-sending stores nothing new and counts duplicates.
    let (status, body) = app.post_events(&batch).await;
    assert_eq!(status, 200);
    assert_eq!(
        (body["accepted"].as_u64(), body["duplicates"].as_u64()),
        (Some(0), Some(2))
    );

    let stats = app.stats().await;
    assert_eq!(stats["events"], 2);
    assert_eq!(stats["fans"], 1, "both phones normalize to one fan");
    assert_eq!(stats["by_type"]["order"], 1);
    assert_eq!(stats["by_domain"]["private"], 1);
    assert_eq!(stats["by_domain"]["public"], 1);
    app.stop().await;
}

async fn a_mistyped_event_type_gets_a_hint_and_keeps_its_code(b: Backend) {
    let app = spawn_app(b).await;
    let (s, v) = app
        .post_events(&json!([event("t1", "ordr", "13800138000")]))
        .await;
    assert_eq!(s, 400, "{v}");
    let r = &v["rejected"][0];
    assert_eq!(
        (
            r["code"].as_str(),
            r["field"].as_str(),
            r["message"].as_str()
        ),
        (
            Some("unknown_event_type"),
            Some("type"),
            Some("unknown event type \"ordr\"; did you mean \"order\"?")
        ),
        "{v}"
    );
    app.stop().await;
}

async fn one_event_and_the_events_wrapper_are_accepted(b: Backend) {
    let app = spawn_app(b).await;
    let (s, body) = app
        .post_events(&event("solo", "follow", "13900139000"))
        .await;
    assert_eq!((s, body["accepted"].as_u64()), (200, Some(1)));
    let (s, body) = app
        .post_events(&json!({"events": [event("wrapped", "follow", "13900139000")]}))
        .await;
    assert_eq!((s, body["accepted"].as_u64()), (200, Some(1)));
    app.stop().await;
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

async fn bad_input_gets_a_json_error_and_stores_nothing(b: Backend) {
    let limits = siyu_server::Limits {
        native_body: 4096,
        ..Default::default()
    };
    let app = spawn_app_with(b, limits).await;
    let good = json!([event("ok", "follow", "13800138000")])
        .to_string()
        .into_bytes();
    let w = app.write_key.clone();
    // (what, status, code, body, content type, content encoding)
    type Case<'a> = (&'a str, u16, &'a str, Vec<u8>, &'a str, Option<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "malformed JSON",
            400,
            "invalid_json",
            b"[{\"id\": ".to_vec(),
            "application/json",
            None,
        ),
        (
            "wrong content type",
            415,
            "unsupported_media_type",
            good.clone(),
            "text/plain",
            None,
        ),
        (
            "unknown encoding",
            415,
            "unsupported_media_type",
            good.clone(),
            "application/json",
            Some("br"),
        ),
        (
            "broken gzip",
            400,
            "invalid_body",
            b"not gzip".to_vec(),
            "application/json",
            Some("gzip"),
        ),
        (
            "over the limit",
            413,
            "payload_too_large",
            format!(
                "[{}]",
                vec![event("x", "follow", "13800138000").to_string(); 40].join(",")
            )
            .into_bytes(),
            "application/json",
            None,
        ),
        (
            "gzip bomb",
            413,
            "payload_too_large",
            gzip(&vec![b' '; 1 << 20]),
            "application/json",
            Some("gzip"),
        ),
        (
            "empty batch",
            400,
            "empty_batch",
            b"[]".to_vec(),
            "application/json",
            None,
        ),
        (
            "not a batch",
            400,
            "invalid_batch",
            b"42".to_vec(),
            "application/json",
            None,
        ),
        (
            "all invalid",
            400,
            "all_events_rejected",
            json!([event("bad", "nope", "1")]).to_string().into_bytes(),
            "application/json",
            None,
        ),
    ];
    for (what, status, code, body, ct, enc) in cases {
        let (s, v) = app.post_raw("/api/events", &w, ct, body, enc).await;
        assert_eq!(s, status, "{what}: {v}");
        assert_eq!(v["error"]["code"], code, "{what}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}"
        );
    }
    let (s, v) = app
        .post_raw("/api/events", "", "application/json", good.clone(), None)
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (s, _) = app
        .post_raw(
            "/api/events",
            "sy_w_wrong",
            "application/json",
            good.clone(),
            None,
        )
        .await;
    assert_eq!(s, 401);
    assert_eq!(app.event_count().await, 0, "nothing partial was stored");

    // A gzip body within the limit is fine.
    let (s, v) = app
        .post_raw(
            "/api/events",
            &w,
            "application/json",
            gzip(&good),
            Some("gzip"),
        )
        .await;
    assert_eq!((s, v["accepted"].as_u64()), (200, Some(1)), "{v}");
    app.stop().await;
}

async fn the_write_key_only_ingests(b: Backend) {
    let app = spawn_app(b).await;
    let r = app
        .client
        .get(format!("{}/api/stats", app.base))
        .bearer_auth(&app.write_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "forbidden");
    // The admin key may ingest too.
    let (s, _) = app
        .post_raw(
            "/api/events",
            &app.admin_key.clone(),
            "application/json",
            json!([event("a", "follow", "13800138000")])
                .to_string()
                .into_bytes(),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let r = app
        .client
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let metrics = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("siyu_ingest_events_total"), "{metrics}");
    app.stop().await;
}

async fn tenants_are_isolated(b: Backend) {
    let app = spawn_app(b).await;
    let loc = app.location.clone();
    let other = tokio::task::spawn_blocking(move || {
        let store = siyu_store::open(&loc, siyu_store::Durability::Full).unwrap();
        siyu_app::tenants::create(&*store, &siyu_app::TenantName::parse("other").unwrap()).unwrap()
    })
    .await
    .unwrap();
    let batch = json!([event("same-id", "follow", "13800138000")])
        .to_string()
        .into_bytes();
    let (_, a) = app
        .post_raw(
            "/api/events",
            &app.write_key.clone(),
            "application/json",
            batch.clone(),
            None,
        )
        .await;
    let (_, b2) = app
        .post_raw(
            "/api/events",
            &other.write_key,
            "application/json",
            batch,
            None,
        )
        .await;
    assert_eq!(a["accepted"], 1);
    assert_eq!(
        b2["accepted"], 1,
        "the same id in another tenant is not a duplicate"
    );
    assert_eq!(app.event_count().await, 1);
    app.stop().await;
}

both!(
    accepted_duplicates_and_rejections_are_reported,
    a_mistyped_event_type_gets_a_hint_and_keeps_its_code,
    one_event_and_the_events_wrapper_are_accepted,
    bad_input_gets_a_json_error_and_stores_nothing,
    the_write_key_only_ingests,
    tenants_are_isolated,
);
