//! Segments and tags through the API and the CLI: typos told where, counts, saved segments
//! whose members follow events at once, triggers, tags by hand and automatic, restarts.

use serde_json::{Value, json};

use crate::both;
use crate::helpers::{Backend, TestApp, spawn_app, store_flags};

fn ev(id: &str, who: &str, ty: &str, ago_hours: i64, props: Value) -> Value {
    let ts = siyu_domain::time::now_ms() - ago_hours * 3_600_000;
    json!({
        "id": id, "type": ty, "ts": siyu_domain::time::format_rfc3339(ts),
        "identities": {"douyin_open_id": who}, "props": props,
    })
}

fn order(id: &str, who: &str, ago_hours: i64, amount: f64) -> Value {
    ev(
        id,
        who,
        "order",
        ago_hours,
        json!({"order_id": id, "amount": amount}),
    )
}

async fn post_ok(app: &TestApp, events: Vec<Value>) {
    let n = events.len() as u64;
    let (s, v) = app.post_events(&Value::Array(events)).await;
    assert_eq!((s, v["accepted"].as_u64()), (200, Some(n)), "{v}");
}

/// A small brand: a follows and watched lives, b follows and bought, c only viewed.
async fn brand(app: &TestApp) {
    post_ok(
        app,
        vec![
            ev("a1", "a", "follow", 100, json!({})),
            ev("a2", "a", "live_watch", 30, json!({"duration_s": 1200})),
            ev("a3", "a", "live_watch", 20, json!({"duration_s": 900})),
            ev("b1", "b", "follow", 200, json!({})),
            order("b2", "b", 48, 399.0),
            order("b3", "b", 24, 199.5),
            ev("c1", "c", "video_view", 10, json!({})),
            ev("g1", "a", "group_join", 5, json!({"group_id": "vip-1"})),
        ],
    )
    .await;
}

async fn delete(app: &TestApp, path: &str) -> (u16, Value) {
    let r = app
        .client
        .delete(format!("{}{path}", app.base))
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn typos_are_told_where_and_nothing_half_saves(b: Backend) {
    let app = spawn_app(b).await;
    brand(&app).await;
    let (s, v) = app
        .admin_post(
            "/api/segments/preview",
            &json!({"expr": "layer >= favorable and count(ordr, 7d) > 1"}),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["code"], "invalid_segment");
    assert_eq!(v["error"]["field"], "expr");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("column 30") && msg.contains("did you mean \"order\""),
        "{msg}"
    );
    for (body, code, field) in [
        (
            json!({"name": "x", "expr": "layer = favorite"}),
            "invalid_segment",
            "expr",
        ),
        (
            json!({"name": "x", "expr": "count(order, 7y) > 1"}),
            "invalid_segment",
            "expr",
        ),
        (
            json!({"name": "x", "expr": "in_group(\"nope\")"}),
            "unknown_group",
            "expr",
        ),
        (
            json!({"name": "", "expr": "follows"}),
            "invalid_field",
            "name",
        ),
        (json!({"expr": "follows"}), "missing_field", "name"),
        (
            json!({"name": "x", "expr": "follows", "colour": 1}),
            "unknown_field",
            "colour",
        ),
    ] {
        let (s, v) = app.admin_post("/api/segments", &body).await;
        assert_eq!(
            (s, v["error"]["code"].as_str(), v["error"]["field"].as_str()),
            (400, Some(code), Some(field)),
            "{body}: {v}"
        );
    }
    let (_, v) = app
        .admin_post(
            "/api/segments/preview",
            &json!({"expr": "follows and in_group(\"nope\")"}),
        )
        .await;
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("segment expression, column 22:"),
        "the unknown group is pointed at: {v}"
    );
    let (_, v) = app.get("/api/segments").await;
    assert_eq!(v["segments"], json!([]), "nothing was half-saved");
    let (s, _) = app
        .admin_post("/api/segments", &json!({"name": "fans", "expr": "follows"}))
        .await;
    assert_eq!(s, 201);
    let (s, v) = app
        .admin_post(
            "/api/segments",
            &json!({"name": "fans", "expr": "subscribed"}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("segment_exists"))
    );

    // The CLI says where too, and exits 2 without opening anything.
    let out = crate::durability::siyu()
        .args(["segment", "count", "layer = 好感 and count(ordr, 7d) > 1"])
        .args(store_flags(&app.location))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("column 22") && err.contains('^') && err.contains("invalid_segment"),
        "{err}"
    );
    app.stop().await;
}

async fn counts_agree_and_saved_members_follow_events(b: Backend) {
    let app = spawn_app(b).await;
    brand(&app).await;
    let expr = "follows and (count(live_watch, 7d) >= 2 or sum(order.amount, 30d) > 500) \
                and not count(order, 12h) > 0";
    let (s, v) = app
        .admin_post("/api/segments/preview", &json!({"expr": expr, "sample": 5}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["count"], 2, "a by lives, b by 598.5 spent: {v}");
    assert_eq!(v["fans"], 3);
    assert_eq!(v["sample"].as_array().unwrap().len(), 2);
    // The CLI counts the same.
    let out = crate::durability::siyu()
        .args(["segment", "count", expr, "--json"])
        .args(store_flags(&app.location))
        .output()
        .unwrap();
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli["count"], 2, "{cli}");
    let (_, v) = app
        .admin_post(
            "/api/segments/preview",
            &json!({"expr": "in_group(\"vip-1\") and layer = 好感粉丝"}),
        )
        .await;
    assert_eq!(v["count"], 1, "{v}");

    // Save a segment of buyers with an automatic tag.
    let (s, saved) = app
        .admin_post(
            "/api/segments",
            &json!({"name": "buyers", "expr": "count(order, 30d) >= 1", "tag": "买过"}),
        )
        .await;
    assert_eq!(s, 201, "{saved}");
    assert_eq!(saved["count"], 1);
    let id = saved["id"].as_i64().unwrap();
    let (_, t) = app.get("/api/segments/triggers").await;
    let list = t["triggers"].as_array().unwrap();
    assert_eq!(list.len(), 1, "b's entry as the segment was saved: {t}");
    assert_eq!(
        (&list[0]["type"], &list[0]["cause"]),
        (&json!("segment_entered"), &json!("created"))
    );
    let after = t["next_after"].as_i64().unwrap();

    // c buys: c enters at once, with the event as the cause.
    let started = std::time::Instant::now();
    post_ok(&app, vec![order("c2", "c", 0, 88.0)]).await;
    let (_, t) = app
        .get(&format!("/api/segments/triggers?after={after}&wait=5"))
        .await;
    let waited = started.elapsed();
    let list = t["triggers"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{t}");
    assert_eq!(
        (
            &list[0]["type"],
            &list[0]["segment"],
            &list[0]["cause"],
            &list[0]["event_id"]
        ),
        (
            &json!("segment_entered"),
            &json!(id),
            &json!("event"),
            &json!("c2")
        )
    );
    assert!(
        waited.as_secs() < 5,
        "the long poll answered when the trigger came"
    );
    let c = list[0]["fan"].as_i64().unwrap();
    let (_, tags) = app.get(&format!("/api/fans/{c}/tags")).await;
    assert_eq!(tags["tags"], json!(["买过"]), "{tags}");
    assert_eq!(tags["history"][0]["source"], format!("segment:{id}"));

    let (_, m) = app.get("/api/segments/buyers/members?limit=1").await;
    assert_eq!(
        (m["count"].as_u64(), m["next_offset"].as_u64()),
        (Some(2), Some(1))
    );
    let (_, m2) = app
        .get(&format!("/api/segments/{id}/members?offset=1"))
        .await;
    assert_eq!(m2["members"].as_array().unwrap().len(), 1);
    assert_ne!(m["members"][0]["fan"], m2["members"][0]["fan"]);
    let (_, list) = app.get("/api/segments").await;
    assert_eq!(list["segments"][0]["count"], 2);

    // A restart keeps members and records nothing twice.
    let (_, t) = app.get("/api/segments/triggers").await;
    let before = t["triggers"].as_array().unwrap().len();
    let app = app.restart().await;
    let (_, v) = app.get("/api/segments/buyers").await;
    assert_eq!(v["count"], 2, "{v}");
    let (_, t) = app.get("/api/segments/triggers").await;
    assert_eq!(t["triggers"].as_array().unwrap().len(), before, "{t}");
    // The CLI lists it.
    let out = crate::durability::siyu()
        .args(["segment", "list", "--json"])
        .args(store_flags(&app.location))
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["segments"][0]["name"], "buyers");

    let (s, _) = delete(&app, "/api/segments/buyers").await;
    assert_eq!(s, 200);
    let (s, v) = app.get("/api/segments/buyers").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("segment_not_found"))
    );
    app.stop().await;
}

async fn tags_by_hand_and_by_expression(b: Backend) {
    let app = spawn_app(b).await;
    brand(&app).await;
    let (_, v) = app
        .get("/api/fans/lookup?kind=douyin_open_id&value=c")
        .await;
    let c = v["fans"][0]["fan"].as_i64().unwrap();
    let (s, v) = app
        .admin_post(
            "/api/segments",
            &json!({"name": "vip", "expr": "tag(\"VIP\")"}),
        )
        .await;
    assert_eq!((s, v["count"].as_u64()), (201, Some(0)), "{v}");
    let (s, v) = app
        .admin_post("/api/tags", &json!({"tag": "VIP", "fan": c}))
        .await;
    assert_eq!((s, v["changed"].as_u64()), (200, Some(1)), "{v}");
    let (_, v) = app.get("/api/segments/vip").await;
    assert_eq!(v["count"], 1, "tagging moved c into the segment: {v}");
    let (_, v) = app
        .admin_post("/api/tags", &json!({"tag": "VIP", "expr": "follows"}))
        .await;
    assert_eq!(v["changed"], 2);
    let (_, v) = app.get("/api/segments/vip").await;
    assert_eq!(v["count"], 3);
    let (_, v) = app
        .admin_post(
            "/api/tags",
            &json!({"tag": "VIP", "fan": c, "remove": true}),
        )
        .await;
    assert_eq!(v["changed"], 1);
    let (_, v) = app.get(&format!("/api/fans/{c}/tags")).await;
    assert_eq!(v["tags"], json!([]));
    assert_eq!(
        v["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["change"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["added", "removed"]
    );
    let (_, t) = app.get("/api/segments/triggers").await;
    let kinds: Vec<(&str, &str)> = t["triggers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["type"].as_str().unwrap(), x["cause"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| k.1 == "tag").count(),
        4,
        "{kinds:?}"
    );
    for (body, code) in [
        (json!({"tag": "VIP"}), "invalid_body"),
        (json!({"tag": "VIP", "fan": 987654}), "fan_not_found"),
        (json!({"tag": "", "fan": c}), "invalid_field"),
        (json!({"tag": "VIP", "expr": "follws"}), "invalid_segment"),
    ] {
        let (s, v) = app.admin_post("/api/tags", &body).await;
        assert!(s == 400 || s == 404, "{body}: {s} {v}");
        assert_eq!(v["error"]["code"], code, "{body}: {v}");
    }
    // An automatic tag, and the CLI's view of a fan's tags.
    let (s, v) = app
        .admin_post(
            "/api/tags/auto",
            &json!({"tag": "直播常客", "expr": "count(live_watch, 7d) >= 2"}),
        )
        .await;
    assert_eq!((s, v["count"].as_u64()), (201, Some(1)), "{v}");
    let (_, v) = app
        .get("/api/fans/lookup?kind=douyin_open_id&value=a")
        .await;
    let a = v["fans"][0]["fan"].as_i64().unwrap();
    let out = crate::durability::siyu()
        .args(["tag", "history", &a.to_string(), "--json"])
        .args(store_flags(&app.location))
        .output()
        .unwrap();
    let h: Value = serde_json::from_slice(&out.stdout).unwrap();
    let tags = h["tags"].as_array().unwrap();
    assert!(
        tags.contains(&json!("VIP")) && tags.contains(&json!("直播常客")),
        "{h}"
    );
    app.stop().await;
}

both!(
    typos_are_told_where_and_nothing_half_saves,
    counts_agree_and_saved_members_follow_events,
    tags_by_hand_and_by_expression
);
