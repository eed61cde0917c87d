//! The trigger stream through the API: events and what they caused in one order, filters,
//! pages, the long poll, consumers' cursors, bad input, and a restart that changes nothing.

use serde_json::{Value, json};

use crate::both;
use crate::helpers::{Backend, TestApp, spawn_app};

fn ev(id: &str, who: &str, ty: &str, ago_hours: i64, props: Value) -> Value {
    let ts = siyu_domain::time::now_ms() - ago_hours * 3_600_000;
    json!({
        "id": id, "type": ty, "ts": siyu_domain::time::format_rfc3339(ts),
        "identities": {"douyin_open_id": who}, "props": props,
    })
}

async fn post_ok(app: &TestApp, events: Vec<Value>) {
    let n = events.len() as u64;
    let (s, v) = app.post_events(&Value::Array(events)).await;
    assert_eq!((s, v["accepted"].as_u64()), (200, Some(n)), "{v}");
}

/// The whole stream, read in pages of `limit`.
async fn all(app: &TestApp, query: &str, limit: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let (s, v) = app
            .get(&format!("/api/triggers?after={after}&limit={limit}{query}"))
            .await;
        assert_eq!(s, 200, "{v}");
        let page = v["triggers"].as_array().unwrap().clone();
        assert!(page.len() <= limit, "{v}");
        let next = v["next_after"].as_i64().unwrap();
        assert!(next >= after, "{v}");
        if page.is_empty() {
            return out;
        }
        after = next;
        out.extend(page);
    }
}

fn types(list: &[Value]) -> Vec<&str> {
    list.iter().map(|t| t["type"].as_str().unwrap()).collect()
}

async fn events_and_what_they_caused_come_in_one_order(b: Backend) {
    let app = spawn_app(b).await;
    post_ok(
        &app,
        vec![
            ev("a1", "a", "follow", 50, json!({})),
            ev("b1", "b", "video_view", 40, json!({})),
            ev(
                "b2",
                "b",
                "order",
                30,
                json!({"order_id": "o1", "amount": 120.0}),
            ),
        ],
    )
    .await;
    let (s, saved) = app
        .admin_post(
            "/api/segments",
            &json!({"name": "buyers", "expr": "count(order, 30d) >= 1", "tag": "买过"}),
        )
        .await;
    assert_eq!(s, 201, "{saved}");
    let stream = all(&app, "", 1000).await;
    // Positions only grow, and every event comes before what it caused.
    let ids: Vec<i64> = stream.iter().map(|t| t["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let events: Vec<&Value> = stream.iter().filter(|t| t["type"] == "event").collect();
    assert_eq!(
        events
            .iter()
            .map(|t| t["event_id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["a1", "b1", "b2"]
    );
    assert_eq!(events[2]["event_type"], "order");
    for t in stream.iter().filter(|t| t["cause"] == "event") {
        let cause = events
            .iter()
            .find(|e| e["seq"] == t["seq"])
            .unwrap_or_else(|| panic!("{t}: no event with its seq"));
        assert!(
            cause["id"].as_i64() < t["id"].as_i64(),
            "{t} before {cause}"
        );
        assert_eq!(cause["event_id"], t["event_id"], "{t}");
        assert_eq!(cause["fan"], t["fan"], "{t}");
    }
    let layers: Vec<&Value> = stream
        .iter()
        .filter(|t| t["type"] == "layer_changed")
        .collect();
    assert_eq!(layers.len(), 2, "a and b are new fans: {stream:?}");
    assert!(layers.iter().all(|t| t["from"].is_null()), "{layers:?}");
    // The segment's first member and its automatic tag, after the events.
    let tail = &types(&stream)[stream.len() - 2..];
    assert_eq!(tail, ["segment_entered", "tag_added"], "{stream:?}");
    let entered = &stream[stream.len() - 2];
    assert_eq!(
        (&entered["cause"], &entered["segment"]),
        (&json!("created"), &saved["id"])
    );
    assert_eq!(
        stream[stream.len() - 1]["source"],
        format!("segment:{}", saved["id"])
    );
    let b_fan = events[2]["fan"].clone();
    // A tag set by hand follows.
    let (s, v) = app
        .admin_post("/api/tags", &json!({"tag": "VIP", "fan": b_fan}))
        .await;
    assert_eq!(s, 200, "{v}");
    let stream = all(&app, "", 1000).await;
    let last = stream.last().unwrap();
    assert_eq!(
        (&last["type"], &last["tag"], &last["source"], &last["fan"]),
        (&json!("tag_added"), &json!("VIP"), &json!("manual"), &b_fan)
    );

    // Pages of two see the same stream, once.
    assert_eq!(all(&app, "", 2).await, stream);
    // Types and fans filter; what a filter hides is still passed over by `next_after`.
    let only = all(&app, "&types=segment_entered,tag_added", 1).await;
    assert_eq!(
        types(&only),
        ["segment_entered", "tag_added", "tag_added"],
        "{only:?}"
    );
    let mine = all(&app, &format!("&fan={b_fan}"), 1000).await;
    assert!(mine.iter().all(|t| t["fan"] == b_fan), "{mine:?}");
    assert_eq!(
        mine.iter()
            .filter(|t| t["type"] == "event")
            .map(|t| t["event_id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["b1", "b2"]
    );
    assert_eq!(
        mine.len(),
        6,
        "2 events, a layer change, entry, two tags: {mine:?}"
    );

    // A restart derives nothing twice: the stream is the same.
    let app = app.restart().await;
    assert_eq!(all(&app, "", 1000).await, stream);
    app.stop().await;
}

async fn a_long_poll_answers_when_a_trigger_comes(b: Backend) {
    let app = spawn_app(b).await;
    post_ok(&app, vec![ev("a1", "a", "follow", 5, json!({}))]).await;
    let (_, v) = app.get("/api/triggers").await;
    let after = v["next_after"].as_i64().unwrap();
    let (_, empty) = app.get(&format!("/api/triggers?after={after}")).await;
    assert_eq!(empty["triggers"], json!([]), "{empty}");
    assert_eq!(empty["next_after"], after);
    let poll = {
        let (client, base, key) = (app.client.clone(), app.base.clone(), app.admin_key.clone());
        tokio::spawn(async move {
            client
                .get(format!(
                    "{base}/api/triggers?after={after}&types=event&wait=30"
                ))
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    post_ok(&app, vec![ev("a2", "a", "video_view", 1, json!({}))]).await;
    let v = poll.await.unwrap();
    assert_eq!(v["triggers"][0]["event_id"], "a2", "{v}");
    app.stop().await;
}

async fn consumers_keep_their_cursors(b: Backend) {
    let app = spawn_app(b).await;
    post_ok(
        &app,
        vec![
            ev("a1", "a", "follow", 5, json!({})),
            ev("a2", "a", "video_view", 4, json!({})),
        ],
    )
    .await;
    let (s, v) = app.get("/api/triggers/cursors/journeys").await;
    assert_eq!(
        (s, &v["error"]["code"]),
        (404, &json!("cursor_not_found")),
        "{v}"
    );
    let (_, first) = app.get("/api/triggers?limit=1").await;
    let one = first["next_after"].as_i64().unwrap();
    let (s, v) = app
        .admin_put("/api/triggers/cursors/journeys", &json!({"after": one}))
        .await;
    assert_eq!((s, v["after"].as_i64()), (200, Some(one)), "{v}");
    let (_, v) = app.get("/api/triggers/cursors/journeys").await;
    assert_eq!(
        (&v["consumer"], v["after"].as_i64()),
        (&json!("journeys"), Some(one))
    );
    // Reading from the cursor starts after it, and does not move it.
    let (_, from_cursor) = app.get("/api/triggers?consumer=journeys").await;
    let (_, from_after) = app.get(&format!("/api/triggers?after={one}")).await;
    assert_eq!(from_cursor, from_after);
    assert!(!from_cursor["triggers"].as_array().unwrap().is_empty());
    let (_, v) = app.get("/api/triggers/cursors").await;
    assert_eq!(v["cursors"].as_array().unwrap().len(), 1, "{v}");
    // A new consumer starts at the beginning.
    let (_, fresh) = app.get("/api/triggers?consumer=console").await;
    let (_, start) = app.get("/api/triggers").await;
    assert_eq!(fresh, start);

    // Bad input: named, coded, nothing stored.
    let head = start["next_after"].as_i64().unwrap();
    let (s, v) = app
        .admin_put(
            "/api/triggers/cursors/journeys",
            &json!({"after": head + (1 << 24)}),
        )
        .await;
    assert_eq!(
        (s, &v["error"]["code"], &v["error"]["field"]),
        (400, &json!("cursor_ahead"), &json!("after")),
        "{v}"
    );
    for (body, code) in [
        (json!({}), "missing_field"),
        (json!({"after": -1}), "invalid_field"),
        (json!({"after": "3"}), "invalid_field"),
        (json!({"after": 1, "x": 1}), "unknown_field"),
        (json!([1]), "invalid_body"),
    ] {
        let (s, v) = app.admin_put("/api/triggers/cursors/journeys", &body).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (400, Some(code)),
            "{body}: {v}"
        );
    }
    let (s, v) = app
        .admin_put("/api/triggers/cursors/Not%20Ok", &json!({"after": 1}))
        .await;
    assert_eq!(
        (s, &v["error"]["code"]),
        (400, &json!("invalid_consumer")),
        "{v}"
    );
    let (_, v) = app.get("/api/triggers/cursors/journeys").await;
    assert_eq!(v["after"].as_i64(), Some(one), "unchanged by refusals");
    for (query, code, field) in [
        ("types=event,nope", "unknown_trigger_type", "types"),
        ("after=-1", "invalid_number", "after"),
        ("fan=x", "invalid_number", "fan"),
        ("consumer=Bad!", "invalid_consumer", "consumer"),
    ] {
        let (s, v) = app.get(&format!("/api/triggers?{query}")).await;
        assert_eq!(
            (s, v["error"]["code"].as_str(), v["error"]["field"].as_str()),
            (400, Some(code), Some(field)),
            "{query}: {v}"
        );
    }
    // The far end of the stream is an empty page, not an overflow.
    let (s, v) = app
        .get(&format!("/api/triggers?after={}&limit=100000", i64::MAX))
        .await;
    assert_eq!((s, &v["triggers"]), (200, &json!([])), "{v}");
    let (s, v) = app.get("/api/triggers?fan=999").await;
    assert_eq!(
        (s, &v["error"]["code"]),
        (404, &json!("fan_not_found")),
        "{v}"
    );
    app.stop().await;
}

both!(
    events_and_what_they_caused_come_in_one_order,
    a_long_poll_answers_when_a_trigger_comes,
    consumers_keep_their_cursors,
);
