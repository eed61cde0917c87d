//! Identity resolution and lead dedup through the API and the CLI: one person is one fan,
//! merges are explained, family phones are kept apart, operators decide, merges are undone.

use serde_json::{Value, json};

use crate::both;
use crate::helpers::{Backend, TestApp, spawn_app, store_flags};

fn ev(id: &str, ty: &str, ts: &str, ids: Value, props: Value) -> Value {
    json!({"id": id, "type": ty, "ts": ts, "identities": ids, "props": props, "source": "douyin"})
}

async fn post_ok(app: &TestApp, events: Vec<Value>) {
    let (s, v) = app.post_events(&Value::Array(events)).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["rejected"].as_array().unwrap().is_empty(), "{v}");
}

async fn fan_count(app: &TestApp) -> u64 {
    app.stats().await["fans"].as_u64().unwrap()
}

async fn one_person_three_ways_is_one_fan_with_history(b: Backend) {
    let app = spawn_app(b).await;
    post_ok(
        &app,
        vec![
            ev(
                "ad-1",
                "lead_form",
                "2026-10-01T10:00:00Z",
                json!({"lead_id": "clue_1", "phone": "+86-13800138000"}),
                json!({"channel": "ad"}),
            ),
            ev(
                "live-1",
                "lead_form",
                "2026-10-02T20:00:00+08:00",
                json!({"douyin_open_id": "o1", "lead_id": "clue_2"}),
                json!({"channel": "live"}),
            ),
            ev(
                "pm-1",
                "private_message_in",
                "2026-10-03T10:00:00Z",
                json!({"douyin_open_id": "o1", "phone": "138 0013 8000"}),
                json!({"text": "多少钱"}),
            ),
            ev(
                "pm-2",
                "lead_form",
                "2026-10-04T10:00:00Z",
                json!({"douyin_open_id": "o1", "phone": "8613800138000"}),
                json!({"channel": "private_message"}),
            ),
        ],
    )
    .await;
    assert_eq!(fan_count(&app).await, 1);

    // Looked up by the phone written a fourth way.
    let (s, v) = app
        .get("/api/fans/lookup?kind=phone&value=(%2B86)%20138.0013.8000")
        .await;
    assert_eq!(s, 200, "{v}");
    let fans = v["fans"].as_array().unwrap();
    assert_eq!(fans.len(), 1);
    let fan = &fans[0];
    let ids: Vec<(String, String)> = fan["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["kind"].as_str().unwrap().into(),
                i["value"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(ids.contains(&("phone".into(), "+8613800138000".into())));
    assert!(ids.contains(&("douyin_open_id".into(), "o1".into())));
    assert!(ids.contains(&("lead_id".into(), "clue_1".into())));
    let merges = fan["merges"].as_array().unwrap();
    assert_eq!(merges.len(), 1, "{fan}");
    assert_eq!(merges[0]["event_id"], "pm-1");
    assert_eq!(
        merges[0]["via"],
        json!(["phone", "+8613800138000"]),
        "the phone linked them"
    );

    assert_eq!(merges[0]["ts"], "2026-10-03T10:00:00.000Z");

    // A custom event arrives late, older than the last two.
    let mut page = ev(
        "page-1",
        "x_page",
        "2026-10-02T09:00:00Z",
        json!({"douyin_open_id": "o1"}),
        json!({"path": "/price"}),
    );
    page["domain"] = json!("public");
    post_ok(&app, vec![page]).await;

    // The merged-away id still resolves.
    let into = merges[0]["into"].as_i64().unwrap();
    let from = merges[0]["from"].as_i64().unwrap();
    let (s, v) = app.get(&format!("/api/fans/{from}")).await;
    assert_eq!(s, 200);
    assert_eq!(
        (v["fan"].as_i64(), v["merged_from"].as_i64()),
        (Some(into), Some(from))
    );
    // Its timeline: newest first by event time, each event with its own type name, times in
    // RFC 3339 with milliseconds.
    let timeline: Vec<(&str, &str)> = v["layer"]["timeline"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|e| (e["ts"].as_str().unwrap(), e["type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        timeline,
        [
            ("2026-10-04T10:00:00.000Z", "lead_form"),
            ("2026-10-03T10:00:00.000Z", "private_message_in"),
            ("2026-10-02T12:00:00.000Z", "lead_form"),
            ("2026-10-02T09:00:00.000Z", "x_page"),
            ("2026-10-01T10:00:00.000Z", "lead_form"),
        ],
        "{v}"
    );
    assert!(
        siyu_domain::time::parse_rfc3339(v["layer"]["as_of"].as_str().unwrap()).is_some(),
        "{v}"
    );
    // The explanation says the rules' comparisons with the same numbers as the features.
    let layer = &v["layer"];
    assert_eq!(layer["checks"][0]["any_of"][0][0]["feature"], "follows");
    assert_eq!(
        layer["checks"][0]["any_of"][0][0]["value"],
        layer["features"]["follows"]
    );
    assert_eq!(
        layer["why"], "潜在粉丝 Potential: does not follow",
        "no follow event: {v}"
    );

    // Three leads, three channels, one person.
    let (s, r) = app.get("/api/reports/dedup").await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        (r["total"]["leads"].as_u64(), r["total"]["people"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(r["multi_channel_people"], 1);
    let (s, r) = app
        .get("/api/reports/dedup?from=2026-10-02T00:00:00Z")
        .await;
    assert_eq!((s, r["total"]["leads"].as_u64()), (200, Some(2)));
    assert_eq!(
        (&r["from"], &r["to"]),
        (&json!("2026-10-02T00:00:00.000Z"), &Value::Null)
    );
    let (s, r) = app.get("/api/reports/dedup?from=yesterday").await;
    assert_eq!((s, r["error"]["field"].as_str()), (400, Some("from")));

    // Bad lookups name the parameter.
    let (s, v) = app.get("/api/fans/lookup?kind=qq&value=1").await;
    assert_eq!(
        (s, v["error"]["code"].as_str(), v["error"]["field"].as_str()),
        (400, Some("unknown_identity_kind"), Some("kind"))
    );
    // The same bad value gets the same code as at ingest.
    for (query, code) in [
        ("kind=phone&value=138-abc", "invalid_phone"),
        ("kind=email&value=nobody", "invalid_email"),
        ("kind=douyin_open_id&value=%20", "invalid_identity"),
    ] {
        let (s, v) = app.get(&format!("/api/fans/lookup?{query}")).await;
        assert_eq!(
            (s, v["error"]["code"].as_str(), v["error"]["field"].as_str()),
            (400, Some(code), Some("value")),
            "{query}: {v}"
        );
    }
    let (s, v) = app.get("/api/fans/lookup?kind=phone").await;
    assert_eq!((s, v["error"]["field"].as_str()), (400, Some("value")));
    let (s, v) = app
        .get("/api/fans/lookup?kind=phone&value=13900139000")
        .await;
    assert_eq!((s, v["fans"].as_array().map(Vec::len)), (200, Some(0)));
    let (s, v) = app.get("/api/fans/999999").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("fan_not_found"))
    );
    let (s, _) = app.get("/api/fans/abc").await;
    assert_eq!(s, 400);
    app.stop().await;
}

async fn family_phones_stay_apart_until_an_operator_decides(b: Backend) {
    let app = spawn_app(b).await;
    post_ok(
        &app,
        vec![
            ev(
                "m1",
                "lead_form",
                "2026-10-01T10:00:00Z",
                json!({"douyin_open_id": "mum", "phone": "13800138000"}),
                json!({"channel": "live"}),
            ),
            ev(
                "k1",
                "lead_form",
                "2026-10-02T10:00:00Z",
                json!({"douyin_open_id": "kid", "phone": "138 0013 8000"}),
                json!({"channel": "live"}),
            ),
            ev(
                "x1",
                "follow",
                "2026-10-03T10:00:00Z",
                json!({"douyin_open_id": "x", "email": "a@b.cn"}),
                json!({}),
            ),
            ev(
                "y1",
                "follow",
                "2026-10-04T10:00:00Z",
                json!({"douyin_open_id": "y", "email": "A@B.CN"}),
                json!({}),
            ),
        ],
    )
    .await;
    assert_eq!(
        fan_count(&app).await,
        4,
        "shared phone and email never merge two open ids"
    );
    let (_, v) = app
        .get("/api/fans/lookup?kind=phone&value=13800138000")
        .await;
    assert_eq!(
        v["fans"].as_array().unwrap().len(),
        2,
        "a lookup finds both family members"
    );
    let (s, v) = app.get("/api/identity/duplicates").await;
    assert_eq!(s, 200);
    let dups = v["possible_duplicates"].as_array().unwrap().clone();
    assert_eq!(dups.len(), 2, "{v}");
    let pair = |d: &Value| (d["a"].as_i64().unwrap(), d["b"].as_i64().unwrap());
    let (mum, kid) = pair(&dups[0]);
    let (x, y) = pair(&dups[1]);
    assert_eq!(dups[0]["via"], json!(["phone", "+8613800138000"]));

    let (s, _) = app
        .admin_post("/api/identity/distinct", &json!({"a": mum, "b": kid}))
        .await;
    assert_eq!(s, 200);
    let (s, v) = app
        .admin_post("/api/identity/confirm", &json!({"a": mum, "b": kid}))
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("marked_distinct"))
    );
    let (s, _) = app
        .admin_post("/api/identity/confirm", &json!({"a": x, "b": y}))
        .await;
    assert_eq!(s, 200);
    let (s, v) = app
        .admin_post("/api/identity/confirm", &json!({"a": y, "b": x}))
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("already_merged"))
    );
    let (_, v) = app.get("/api/identity/duplicates").await;
    assert!(
        v["possible_duplicates"].as_array().unwrap().is_empty(),
        "{v}"
    );
    assert_eq!(fan_count(&app).await, 3);

    // Bad requests are named; unknown fans are 404.
    let (s, v) = app
        .admin_post("/api/identity/confirm", &json!({"a": x}))
        .await;
    assert_eq!((s, v["error"]["field"].as_str()), (400, Some("b")));
    let (s, v) = app
        .admin_post("/api/identity/confirm", &json!({"a": x, "b": 424242}))
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("fan_not_found"))
    );
    let r = app
        .client
        .post(format!("{}/api/identity/confirm", app.base))
        .bearer_auth(&app.write_key)
        .json(&json!({"a": x, "b": y}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a write key cannot decide");

    // Another tenant's admin key does not see these fans.
    let loc = app.location.clone();
    let other = tokio::task::spawn_blocking(move || {
        let store = siyu_store::open(&loc, siyu_store::Durability::Full).unwrap();
        siyu_app::tenants::create(&*store, &siyu_app::TenantName::parse("other").unwrap()).unwrap()
    })
    .await
    .unwrap();
    let r = app
        .client
        .post(format!("{}/api/identity/confirm", app.base))
        .bearer_auth(&other.admin_key)
        .json(&json!({"a": mum, "b": kid}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Decisions survive a restart: the engine replays them.
    let app = app.restart().await;
    assert_eq!(fan_count(&app).await, 3);
    let (_, v) = app.get("/api/identity/duplicates").await;
    assert!(v["possible_duplicates"].as_array().unwrap().is_empty());
    app.stop().await;
}

async fn undoing_a_merge_splits_the_fan_and_recomputes(b: Backend) {
    let app = spawn_app(b).await;
    post_ok(
        &app,
        vec![
            ev(
                "a1",
                "follow",
                "2026-10-01T10:00:00Z",
                json!({"douyin_open_id": "a"}),
                json!({}),
            ),
            ev(
                "b1",
                "lead_form",
                "2026-10-02T10:00:00Z",
                json!({"lead_id": "clue_9", "phone": "13900139000"}),
                json!({"channel": "ad"}),
            ),
            ev(
                "link",
                "private_message_in",
                "2026-10-03T10:00:00Z",
                json!({"douyin_open_id": "a", "phone": "13900139000"}),
                json!({}),
            ),
            ev(
                "a2",
                "lead_form",
                "2026-10-04T10:00:00Z",
                json!({"douyin_open_id": "a"}),
                json!({"channel": "live"}),
            ),
        ],
    )
    .await;
    assert_eq!(fan_count(&app).await, 1);
    let (_, v) = app.get("/api/fans/lookup?kind=lead_id&value=clue_9").await;
    assert_eq!(v["fans"][0]["events"], 4);
    let merge = v["fans"][0]["merges"][0].clone();
    let (into, from) = (
        merge["into"].as_i64().unwrap(),
        merge["from"].as_i64().unwrap(),
    );
    let (_, r) = app.get("/api/reports/dedup").await;
    assert_eq!(r["total"]["people"], 1);
    // The merged fan's transitions include those recorded under the id merged into it.
    let (_, v) = app
        .get(&format!("/api/layers/transitions?fan={into}"))
        .await;
    let fans: Vec<i64> = v["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["fan"].as_i64().unwrap())
        .collect();
    assert!(fans.contains(&from) && fans.contains(&into), "{v}");

    let (s, v) = app
        .admin_post(&format!("/api/fans/{from}/unmerge"), &json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    // The fan the undo brought back is recorded, caused by the identity decision.
    let (_, tv) = app
        .get(&format!("/api/layers/transitions?fan={from}"))
        .await;
    let last = tv["transitions"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (&last["from"], &last["to"], &last["cause"]),
        (&json!(null), &json!("potential"), &json!("identity")),
        "{tv}"
    );
    assert_eq!(
        v["fan"]["fan"].as_i64(),
        Some(from),
        "the absorbed fan is itself again"
    );
    assert_eq!(fan_count(&app).await, 2);
    let (_, v) = app.get(&format!("/api/fans/{from}")).await;
    let ids: Vec<&str> = v["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["value"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"clue_9") && !ids.contains(&"a"), "{v}");
    assert_eq!(v["events"], 1, "the ad lead's own event went back with it");
    let (_, v) = app.get(&format!("/api/fans/{into}")).await;
    assert!(v["merges"].as_array().unwrap().is_empty());
    assert_eq!(v["events"], 3, "the linking message stays with the open id");
    // Derived state is recomputed: the ad lead and the live lead are two people again.
    let (_, r) = app.get("/api/reports/dedup").await;
    assert_eq!(r["total"]["people"], 2, "{r}");
    assert_eq!(
        app.stats().await["events"],
        4,
        "events are never lost by a split"
    );

    let (s, v) = app
        .admin_post(&format!("/api/fans/{from}/unmerge"), &json!({}))
        .await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("not_merged")));
    let (s, _) = app.admin_post("/api/fans/777777/unmerge", &json!({})).await;
    assert_eq!(s, 404);

    // New events with the linking identities do not merge them back.
    post_ok(
        &app,
        vec![ev(
            "again",
            "private_message_in",
            "2026-10-05T10:00:00Z",
            json!({"douyin_open_id": "a", "phone": "13900139000"}),
            json!({}),
        )],
    )
    .await;
    assert_eq!(fan_count(&app).await, 2);
    let app = app.restart().await;
    assert_eq!(
        fan_count(&app).await,
        2,
        "the undo is replayed after a restart"
    );
    app.stop().await;
}

fn cli(args: &[&str], flags: &[String]) -> std::process::Output {
    crate::durability::siyu()
        .args(args)
        .args(flags)
        .env("SIYU_LOG", "warn")
        .output()
        .unwrap()
}

fn cli_json(args: &[&str], flags: &[String]) -> Value {
    let out = cli(args, flags);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn the_cli_resolves_a_generated_brand_against_its_truth(b: Backend) {
    let (location, _d) = crate::helpers::fresh_location(b);
    let flags = store_flags(&location);
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("brand.jsonl");
    let truth = dir.path().join("truth.csv");
    let out = crate::durability::siyu()
        .args([
            "gen",
            "--fans",
            "3000",
            "--days",
            "60",
            "--seed",
            "5",
            "--end",
            "2026-11-01T00:00:00Z",
            "--out",
        ])
        .arg(&events)
        .arg("--truth")
        .arg(&truth)
        .output()
        .unwrap();
    assert!(out.status.success());
    cli_json(&["tenant", "create", "brand"], &flags);
    let imported = cli_json(&["import", events.to_str().unwrap(), "--json"], &flags);
    assert_eq!(imported["rejected"], 0);

    let eval = cli_json(
        &[
            "identity",
            "eval",
            "--truth",
            truth.to_str().unwrap(),
            "--json",
        ],
        &flags,
    );
    assert!(eval["precision"].as_f64().unwrap() >= 0.99, "{eval}");
    assert!(eval["recall"].as_f64().unwrap() >= 0.99, "{eval}");
    assert_eq!(eval["wrong_merges"], 0, "{eval}");

    let report = cli_json(&["report", "dedup", "--json"], &flags);
    assert!(
        report["total"]["leads"].as_u64().unwrap() > report["total"]["people"].as_u64().unwrap()
    );
    let text = String::from_utf8(cli(&["report", "dedup"], &flags).stdout).unwrap();
    assert!(
        text.contains("repeat%") && text.contains("overlap"),
        "{text}"
    );

    let export = dir.path().join("ids.csv");
    cli_json(
        &[
            "identity",
            "export",
            "--out",
            export.to_str().unwrap(),
            "--json",
        ],
        &flags,
    );
    let csv = std::fs::read_to_string(&export).unwrap();
    assert!(csv.starts_with("kind,value,fan_id\n"));
    let rows = csv.lines().count() - 1;
    let truth_rows = std::fs::read_to_string(&truth).unwrap().lines().count() - 1;
    assert!(
        rows >= truth_rows * 99 / 100,
        "{rows} exported for {truth_rows} true values"
    );

    // Look a person up by phone from the CLI, and decide on a possible duplicate.
    let phone_row = csv.lines().find(|l| l.starts_with("phone,")).unwrap();
    let phone = phone_row.split(',').nth(1).unwrap();
    let v = cli_json(
        &[
            "fan", "lookup", "--kind", "phone", "--value", phone, "--json",
        ],
        &flags,
    );
    assert!(!v["fans"].as_array().unwrap().is_empty());
    let dups = cli_json(&["identity", "duplicates", "--json"], &flags);
    if let Some(d) = dups["possible_duplicates"].as_array().unwrap().first() {
        let (a, b2) = (d["a"].to_string(), d["b"].to_string());
        cli_json(&["identity", "distinct", &a, &b2, "--json"], &flags);
        let again = cli(&["identity", "confirm", &a, &b2], &flags);
        assert_eq!(again.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&again.stderr).contains("marked_distinct"));
    }
    let bad = cli(
        &["fan", "lookup", "--kind", "phone", "--value", "138-abc"],
        &flags,
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("invalid_phone"),
        "the code ingest gives the same phone: {}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let missing = cli(&["fan", "show", "987654321"], &flags);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("fan_not_found"));
}

both!(
    one_person_three_ways_is_one_fan_with_history,
    family_phones_stay_apart_until_an_operator_decides,
    undoing_a_merge_splits_the_fan_and_recomputes,
    the_cli_resolves_a_generated_brand_against_its_truth,
);

mod layers {
    //! Layers through the API and the CLI.

    use serde_json::{Value, json};

    use crate::both;
    use crate::helpers::{Backend, spawn_app, store_flags};

    fn ev(id: &str, who: &str, ty: &str, ts: &str, props: Value) -> Value {
        json!({"id": id, "type": ty, "ts": ts, "identities": {"douyin_open_id": who}, "props": props})
    }

    async fn layers_flow_rules_and_explanations(b: Backend) {
        let app = spawn_app(b).await;
        let events = json!([
            ev("1", "a", "follow", "2026-10-01T00:00:00Z", json!({})),
            ev("2", "b", "video_view", "2026-10-01T00:00:00Z", json!({})),
            ev("3", "c", "follow", "2026-10-10T00:00:00Z", json!({})),
            ev("4", "c", "subscribe", "2026-10-10T00:00:00Z", json!({})),
            ev(
                "5",
                "a",
                "private_message_in",
                "2026-10-12T00:00:00Z",
                json!({})
            ),
            ev(
                "6",
                "a",
                "private_message_in",
                "2026-10-12T01:00:00Z",
                json!({})
            ),
            ev("7", "a", "video_comment", "2026-10-12T02:00:00Z", json!({})),
        ]);
        let (s, v) = app.post_events(&events).await;
        assert_eq!((s, v["accepted"].as_u64()), (200, Some(7)), "{v}");

        let (s, v) = app
            .get("/api/reports/layers?as_of=2026-10-05T00:00:00Z")
            .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(
            (
                v["potential"].as_u64(),
                v["passerby"].as_u64(),
                v["favorable"].as_u64()
            ),
            (Some(1), Some(1), Some(0))
        );
        let (_, v) = app
            .get("/api/reports/layers?as_of=2026-10-13T00:00:00Z")
            .await;
        assert_eq!(
            v["favorable"], 2,
            "a by engagement 11, c by subscription: {v}"
        );
        // Windows slide: a month later a decays back to passerby.
        let (_, v) = app
            .get("/api/reports/layers?as_of=2026-11-13T00:00:00Z")
            .await;
        assert_eq!(
            (v["passerby"].as_u64(), v["favorable"].as_u64()),
            (Some(1), Some(1))
        );

        let (s, f) = app
            .get("/api/reports/flow?from=2026-10-05T00:00:00Z&to=2026-10-13T00:00:00Z")
            .await;
        assert_eq!(s, 200, "{f}");
        let rows = f["rows"].as_array().unwrap();
        assert_eq!(rows[1]["from"], "passerby");
        assert_eq!(rows[1]["to"]["favorable"], 1, "a moved up");
        assert_eq!(rows[4]["from"], "new");
        assert_eq!(rows[4]["to"]["favorable"], 1, "c is new");
        assert_eq!(f["moved_up"], 1);
        let (s, v) = app
            .get("/api/reports/flow?from=2026-10-13T00:00:00Z&to=2026-10-05T00:00:00Z")
            .await;
        assert_eq!((s, v["error"]["field"].as_str()), (400, Some("to")));
        let (s, v) = app.get("/api/reports/layers?as_of=soon").await;
        assert_eq!((s, v["error"]["field"].as_str()), (400, Some("as_of")));

        // Every layer change was stored as a transition with its cause.
        let (s, v) = app.get("/api/layers/transitions").await;
        assert_eq!(s, 200, "{v}");
        let list = v["transitions"].as_array().unwrap();
        assert!(!list.is_empty(), "{v}");
        assert!(
            list[0]["from"].is_null(),
            "a fan's first transition starts from nothing"
        );
        assert!(
            list.iter()
                .all(|t| t["cause"] == "event" || t["cause"] == "decay"),
            "{v}"
        );
        let next = v["next_after"].as_i64().unwrap();
        let (_, v) = app
            .get(&format!("/api/layers/transitions?after={next}"))
            .await;
        assert!(v["transitions"].as_array().unwrap().is_empty());
        let (s, v) = app.get("/api/layers/transitions?after=-1").await;
        assert_eq!((s, v["error"]["field"].as_str()), (400, Some("after")));

        // A fan's explanation, in numbers.
        let (_, v) = app
            .get("/api/fans/lookup?kind=douyin_open_id&value=a")
            .await;
        let why = v["fans"][0]["layer"]["why"].as_str().unwrap().to_string();
        assert!(why.starts_with("路人粉丝"), "decayed by now: {why}");

        // Rules: a bad file names the line and changes nothing; a good one takes effect.
        let put = |body: &'static str| {
            app.client
                .put(format!("{}/api/rules", app.base))
                .bearer_auth(&app.admin_key)
                .body(body)
                .send()
        };
        let r = put("[weights]\nvideo_like = 1\nbuy = 2\n").await.unwrap();
        assert_eq!(r.status(), 400);
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            (v["error"]["code"].as_str(), v["error"]["field"].as_str()),
            (Some("invalid_rules"), Some("line 3"))
        );
        let (_, v) = app
            .get("/api/reports/layers?as_of=2026-10-13T00:00:00Z")
            .await;
        assert_eq!(v["favorable"], 2, "old rules still in force");
        let r = put("[favorable]\nengagement = 20\n").await.unwrap();
        assert_eq!(r.status(), 200);
        let (_, v) = app
            .get("/api/reports/layers?as_of=2026-10-13T00:00:00Z")
            .await;
        assert_eq!(v["favorable"], 1, "a needs 20 now: {v}");
        let app = app.restart().await;
        let (_, v) = app.get("/api/rules").await;
        assert_eq!(
            v["favorable"]["engagement"], 20,
            "rules survive a restart: {v}"
        );

        // The CLI sees the same.
        let flags = store_flags(&app.location);
        let out = crate::durability::siyu()
            .args([
                "report",
                "layers",
                "--as-of",
                "2026-10-13T00:00:00Z",
                "--json",
            ])
            .args(&flags)
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            (v["favorable"].as_u64(), v["total"].as_u64()),
            (Some(1), Some(3))
        );
        let out = crate::durability::siyu()
            .args([
                "report",
                "flow",
                "--from",
                "2026-10-05T00:00:00Z",
                "--to",
                "2026-10-13T00:00:00Z",
            ])
            .args(&flags)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("新增 new") && text.contains("moved up"),
            "{text}"
        );
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("rules.toml");
        std::fs::write(&bad, "orders_window_days = 0\n").unwrap();
        let out = crate::durability::siyu()
            .args(["tenant", "rules", "acme"])
            .arg(&bad)
            .args(&flags)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("error[invalid_rules]")
                && err.contains("line 1")
                && err.contains("the rules in force are unchanged"),
            "{err}"
        );
        app.stop().await;
    }

    /// Changes that fall due while no server runs (a window sliding, events imported, rules
    /// replaced) are recorded when the next server starts, each at its own time and cause;
    /// rules put in force through the API record the fans they move.
    async fn changes_while_no_server_ran_are_recorded(b: Backend) {
        use siyu_domain::time::{MS_PER_DAY, format_rfc3339, now_ms};
        let app = spawn_app(b).await;
        let loc = app.location.clone();
        let now = now_ms();
        let hour = 3_600_000;
        let t0 = now - 40 * MS_PER_DAY;
        let pm_at = t0 + hour;
        let b_at = now - 5 * MS_PER_DAY;
        tokio::task::spawn_blocking(move || {
            let store = siyu_store::open(&loc, siyu_store::Durability::Full).unwrap();
            let tenant = store.tenants().unwrap()[0].id;
            let append = |evs: Vec<Value>| {
                let events: Vec<_> = evs
                    .iter()
                    .map(|e| siyu_domain::parse_event(&e.to_string(), now).unwrap())
                    .collect();
                let encoded = siyu_store::Encoded::all(&events);
                store
                    .append(
                        &[siyu_store::AppendBatch {
                            tenant,
                            events: &events,
                            encoded: &encoded,
                        }],
                        now,
                    )
                    .unwrap();
            };
            // A server that ran 40 days ago took a follow and three messages (engagement 12)...
            append(vec![
                ev("a1", "a", "follow", &format_rfc3339(t0), json!({})),
                ev(
                    "a2",
                    "a",
                    "private_message_in",
                    &format_rfc3339(pm_at),
                    json!({}),
                ),
                ev(
                    "a3",
                    "a",
                    "private_message_in",
                    &format_rfc3339(pm_at),
                    json!({}),
                ),
                ev(
                    "a4",
                    "a",
                    "private_message_in",
                    &format_rfc3339(pm_at),
                    json!({}),
                ),
            ]);
            let row = |from: Option<&str>, to: &str, seq: i64| siyu_store::StoredTransition {
                id: 0,
                fan: 1,
                from: from.map(str::to_string),
                to: to.into(),
                at: t0,
                cause: "event".into(),
                seq: Some(seq),
                event_id: Some(format!("a{seq}")),
            };
            // ...stored what it saw, and stopped.
            store
                .record_live(
                    tenant,
                    &siyu_store::LiveRecord {
                        transitions: &[
                            row(None, "passerby", 1),
                            row(Some("passerby"), "favorable", 4),
                        ],
                        ..Default::default()
                    },
                    &siyu_store::LiveMark {
                        clock: pm_at + hour,
                        seq: 4,
                        rules_version: 0,
                    },
                )
                .unwrap();
            // Meanwhile an import brought a new follower.
            append(vec![ev(
                "b1",
                "b",
                "follow",
                &format_rfc3339(b_at),
                json!({}),
            )]);
        })
        .await
        .unwrap();

        let app = app.restart().await;
        // After the two rows stored above, at the positions after their mark's event.
        let after = siyu_domain::trigger::event_position(4) + 2;
        let (s, v) = app
            .get(&format!("/api/layers/transitions?after={after}"))
            .await;
        assert_eq!(s, 200, "{v}");
        let list = v["transitions"].as_array().unwrap();
        assert_eq!(list.len(), 2, "{v}");
        assert_eq!(
            (
                &list[0]["fan"],
                &list[0]["from"],
                &list[0]["to"],
                &list[0]["cause"]
            ),
            (
                &json!(1),
                &json!("favorable"),
                &json!("passerby"),
                &json!("decay")
            ),
            "{v}"
        );
        assert_eq!(
            list[0]["at"],
            format_rfc3339(pm_at + 30 * MS_PER_DAY),
            "the decay is recorded when the window slid, though no server ran"
        );
        assert_eq!(
            (
                &list[1]["fan"],
                &list[1]["to"],
                &list[1]["cause"],
                &list[1]["event_id"]
            ),
            (&json!(5), &json!("passerby"), &json!("event"), &json!("b1")),
            "{v}"
        );
        assert_eq!(
            list[1]["at"],
            format_rfc3339(b_at),
            "at the event's own time"
        );
        let (_, again) = app
            .get(&format!(
                "/api/layers/transitions?after={}",
                v["next_after"]
            ))
            .await;
        assert!(
            again["transitions"].as_array().unwrap().is_empty(),
            "a restart records nothing twice: {again}"
        );

        // A rules file stored while the server is down moves fans on the next start.
        let recent = format_rfc3339(now - hour);
        let msgs: Vec<Value> = (1..=3)
            .map(|i| {
                ev(
                    &format!("b{}", i + 1),
                    "b",
                    "private_message_in",
                    &recent,
                    json!({}),
                )
            })
            .collect();
        let (s, _) = app.post_events(&Value::Array(msgs)).await;
        assert_eq!(s, 200);
        let (_, v) = app
            .get(&format!(
                "/api/layers/transitions?fan=5&after={}",
                v["next_after"]
            ))
            .await;
        assert_eq!(v["transitions"][0]["to"], "favorable", "{v}");
        let last = v["next_after"].as_i64().unwrap();
        let mut app = app;
        app.halt().await;
        let loc = app.location.clone();
        tokio::task::spawn_blocking(move || {
            let store = siyu_store::open(&loc, siyu_store::Durability::Full).unwrap();
            let tenant = store.tenants().unwrap()[0].id;
            store
                .set_rules(tenant, "[favorable]\nengagement = 20\n")
                .unwrap();
        })
        .await
        .unwrap();
        let app = app.restart().await;
        let (_, v) = app
            .get(&format!("/api/layers/transitions?after={last}"))
            .await;
        let list = v["transitions"].as_array().unwrap();
        assert_eq!(list.len(), 1, "{v}");
        assert_eq!(
            (
                &list[0]["fan"],
                &list[0]["from"],
                &list[0]["to"],
                &list[0]["cause"]
            ),
            (
                &json!(5),
                &json!("favorable"),
                &json!("passerby"),
                &json!("rules")
            ),
        );
        // Through the API, in a running server.
        let r = app
            .client
            .put(format!("{}/api/rules", app.base))
            .bearer_auth(&app.admin_key)
            .body("[favorable]\nengagement = 10\n")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let (_, v) = app
            .get(&format!("/api/layers/transitions?after={}", last + 1))
            .await;
        let list = v["transitions"].as_array().unwrap();
        assert_eq!(
            (list.len(), &list[0]["to"], &list[0]["cause"]),
            (1, &json!("favorable"), &json!("rules")),
            "{v}"
        );
        app.stop().await;
    }

    both!(
        layers_flow_rules_and_explanations,
        changes_while_no_server_ran_are_recorded
    );
}
