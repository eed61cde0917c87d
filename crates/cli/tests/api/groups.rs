//! Fan groups (粉丝群) as an operator runs them: opened over the API and from the CLI (directly,
//! and through the server beside SQLite), listed and shown by id and by name, refusals that
//! name their code and field and store nothing, the admin key on every route, group events
//! ingested through the API changing members and activity once the lead worker has stepped,
//! and `--help` that explains templates and overflow.

use serde_json::{Value, json};
use siyu_domain::time::{format_rfc3339, now_ms};

use crate::both;
use crate::cli::{json_of, run};
use crate::durability::{create_tenant, start_server};
use crate::helpers::{Backend, TestApp, fresh_location, spawn_app, store_flags};
use crate::leads::{Server, refused};

/// The listing's groups.
async fn listed(app: &TestApp) -> Vec<Value> {
    let (s, v) = app.get("/api/groups").await;
    assert_eq!(s, 200, "{v}");
    v["groups"].as_array().cloned().unwrap()
}

/// Asserts an API refusal: its status, code and field.
fn refusal(got: (u16, Value), status: u16, code: &str, field: &str) {
    let (s, v) = got;
    assert_eq!(
        (s, &v["error"]["code"], &v["error"]["field"]),
        (status, &json!(code), &json!(field)),
        "{v}"
    );
}

fn group_event(id: &str, ty: &str, who: &str, group: &str, ago_ms: i64) -> Value {
    json!({"id": id, "type": ty, "ts": format_rfc3339(now_ms() - ago_ms),
           "identities": {"douyin_open_id": who}, "props": {"group_id": group}})
}

async fn groups_are_opened_listed_and_shown_over_the_api(b: Backend) {
    let app = spawn_app(b).await;
    assert_eq!(listed(&app).await, Vec::<Value>::new());
    let (s, g) = app
        .admin_post(
            "/api/groups",
            &json!({"name": "会员群 1", "template": "会员群", "capacity": 2}),
        )
        .await;
    assert_eq!(s, 201, "{g}");
    assert_eq!(
        (
            &g["name"],
            &g["template"],
            &g["capacity"],
            &g["owner"],
            &g["members"],
            &g["joins"]
        ),
        (
            &json!("会员群 1"),
            &json!("会员群"),
            &json!(2),
            &Value::Null,
            &json!(0),
            &json!(0)
        ),
        "{g}"
    );
    assert_eq!(g["daily"].as_array().unwrap().len(), 30, "{g}");
    let id = g["id"].as_i64().unwrap();
    assert_eq!(listed(&app).await, vec![g.clone()]);
    let (s, by_id) = app.get(&format!("/api/groups/{id}")).await;
    assert_eq!((s, &by_id), (200, &g));
    let (s, by_name) = app.get("/api/groups/%E4%BC%9A%E5%91%98%E7%BE%A4%201").await;
    assert_eq!((s, &by_name), (200, &g));

    // Refusals name their field and store nothing.
    let post = |body: Value| {
        let app = &app;
        async move { app.admin_post("/api/groups", &body).await }
    };
    refusal(
        post(json!({"name": "g", "capacity": 0})).await,
        400,
        "invalid_capacity",
        "capacity",
    );
    refusal(
        post(json!({"name": "g", "capacity": "big"})).await,
        400,
        "invalid_field",
        "capacity",
    );
    refusal(
        post(json!({"name": "g", "colour": "red"})).await,
        400,
        "unknown_field",
        "colour",
    );
    refusal(
        post(json!({"template": "t"})).await,
        400,
        "missing_field",
        "name",
    );
    refusal(
        post(json!({"name": "g", "owner": "nobody"})).await,
        404,
        "agent_not_found",
        "agent",
    );
    refusal(
        post(json!({"name": "会员群 1"})).await,
        409,
        "duplicate_group",
        "name",
    );
    refusal(
        app.get("/api/groups/999").await,
        404,
        "group_not_found",
        "group",
    );
    assert_eq!(
        listed(&app).await,
        vec![g.clone()],
        "a refusal stored something"
    );

    // An owner must be an agent; with one, the group is theirs.
    let (s, v) = app.admin_post("/api/teams", &json!({"name": "tmk"})).await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = app
        .admin_post("/api/agents", &json!({"name": "小王", "team": "tmk"}))
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, owned) = app
        .admin_post("/api/groups", &json!({"name": "vip", "owner": "小王"}))
        .await;
    assert_eq!(
        (s, &owned["owner"], &owned["template"], &owned["capacity"]),
        (201, &json!("小王"), &json!("vip"), &json!(500)),
        "{owned}"
    );

    // Group events through the ingest API; the lead worker, stepped here, applies them.
    let (s, v) = app
        .post_events(&json!([
            group_event("j1", "group_join", "oA", "会员群 1", 60_000),
            group_event("j2", "group_join", "oB", "会员群 1", 50_000),
            group_event("m1", "group_message", "oA", "会员群 1", 40_000),
            group_event("l1", "group_leave", "oB", "会员群 1", 30_000),
            group_event("j3", "group_join", "oC", "dy_9", 20_000),
        ]))
        .await;
    assert_eq!(s, 200, "{v}");
    let worker = app.app();
    tokio::task::spawn_blocking(move || {
        siyu_app::leads::worker::LeadWorker::new(worker)
            .step(now_ms())
            .unwrap()
    })
    .await
    .unwrap();
    let groups = listed(&app).await;
    let facts: Vec<(&str, &str, i64, i64, i64, i64, i64)> = groups
        .iter()
        .map(|g| {
            (
                g["name"].as_str().unwrap(),
                g["template"].as_str().unwrap(),
                g["members"].as_i64().unwrap(),
                g["active_7d"].as_i64().unwrap(),
                g["joins"].as_i64().unwrap(),
                g["leaves"].as_i64().unwrap(),
                g["messages"].as_i64().unwrap(),
            )
        })
        .collect();
    // A group an event names that Siyu did not know is opened from the template `external`.
    assert_eq!(
        facts,
        [
            ("会员群 1", "会员群", 1, 1, 2, 1, 1),
            ("vip", "vip", 0, 0, 0, 0, 0),
            ("dy_9", "external", 1, 0, 1, 0, 0),
        ]
    );
    let daily_joins: i64 = groups[0]["daily"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["joins"].as_i64().unwrap())
        .sum();
    assert_eq!(daily_joins, 2, "{}", groups[0]);
    let (s, shown) = app.get(&format!("/api/groups/{id}")).await;
    assert_eq!((s, &shown), (200, &groups[0]));

    // The CLI reads the same store and prints the same JSON.
    let flags = store_flags(&app.location);
    let cli = json_of(&run(&["group", "list", "--json"], &flags));
    assert_eq!(cli, json!({ "groups": groups }));
    let human =
        String::from_utf8_lossy(&run(&["group", "show", "会员群 1"], &flags).stdout).into_owned();
    assert!(
        human.contains("1 of 2 members") && human.contains('█'),
        "{human}"
    );
    app.stop().await;
}

async fn every_group_route_needs_the_admin_key(b: Backend) {
    let app = spawn_app(b).await;
    let routes: [(&str, &str, Option<Value>); 3] = [
        ("GET", "/api/groups", None),
        ("POST", "/api/groups", Some(json!({"name": "g"}))),
        ("GET", "/api/groups/g", None),
    ];
    for (method, path, body) in routes {
        for (key, status) in [(app.write_key.as_str(), 403), ("", 401)] {
            let mut req = app
                .client
                .request(method.parse().unwrap(), format!("{}{path}", app.base));
            if !key.is_empty() {
                req = req.bearer_auth(key);
            }
            if let Some(b) = &body {
                req = req.json(b);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status().as_u16(), status, "{method} {path} with {key:?}");
        }
    }
    assert_eq!(listed(&app).await, Vec::<Value>::new());
    app.stop().await;
}

async fn groups_are_opened_from_the_cli_directly_and_through_the_server(b: Backend) {
    let (location, _d) = fresh_location(b);
    let flags = store_flags(&location);
    let (_, admin) = create_tenant(&flags);
    json_of(&run(&["team", "create", "tmk", "--json"], &flags));
    json_of(&run(
        &["agent", "add", "小王", "--team", "tmk", "--json"],
        &flags,
    ));
    let out = String::from_utf8_lossy(&run(&["group", "list"], &flags).stdout).into_owned();
    assert!(out.contains("no fan groups"), "{out}");
    let g = json_of(&run(
        &[
            "group",
            "create",
            "会员群 1",
            "--template",
            "会员群",
            "--capacity",
            "200",
            "--owner",
            "小王",
            "--json",
        ],
        &flags,
    ));
    assert_eq!(
        (&g["id"], &g["template"], &g["capacity"], &g["owner"]),
        (&json!(1), &json!("会员群"), &json!(200), &json!("小王")),
        "{g}"
    );
    assert_eq!(json_of(&run(&["group", "show", "1", "--json"], &flags)), g);
    assert_eq!(
        json_of(&run(&["group", "show", "会员群 1", "--json"], &flags)),
        g
    );
    let human = String::from_utf8_lossy(&run(&["group", "list"], &flags).stdout).into_owned();
    for w in [
        "members/capacity",
        "成员/容量",
        "active 7d",
        "0/200",
        "小王",
    ] {
        assert!(human.contains(w), "{w:?} not in:\n{human}");
    }
    let human = String::from_utf8_lossy(&run(&["group", "show", "1"], &flags).stdout).into_owned();
    assert!(
        human.contains("0 of 200 members") && human.contains("日期"),
        "{human}"
    );

    // Refusals, directly and (on SQLite) through a running server: code, field and flag.
    let refusals = |flags: &[String]| {
        let before = json_of(&run(&["group", "list", "--json"], flags));
        let cases: [(&[&str], &str, &str, &str); 3] = [
            (
                &["group", "create", "g", "--capacity", "0"],
                "invalid_capacity",
                "capacity",
                "--capacity",
            ),
            (
                &["group", "create", "g", "--owner", "nobody"],
                "agent_not_found",
                "agent",
                "--owner",
            ),
            (
                &["group", "create", "会员群 1"],
                "duplicate_group",
                "name",
                "NAME",
            ),
        ];
        for (args, code, field, flag) in cases {
            let mut with_json = args.to_vec();
            with_json.push("--json");
            refused(&run(&with_json, flags), code, field);
            let out = run(args, flags);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains(code) && stderr.contains(flag),
                "{args:?}: {stderr}"
            );
        }
        refused(
            &run(&["group", "show", "nope", "--json"], flags),
            "group_not_found",
            "group",
        );
        assert_eq!(
            json_of(&run(&["group", "list", "--json"], flags)),
            before,
            "a refusal stored something"
        );
    };
    refusals(&flags);

    let (child, base) = start_server(&flags);
    let server = Server(Some(child));
    refusals(&flags);
    let g2 = json_of(&run(
        &[
            "group",
            "create",
            "会员群 2",
            "--template",
            "会员群",
            "--json",
        ],
        &flags,
    ));
    assert_eq!(
        (&g2["id"], &g2["capacity"]),
        (&json!(2), &json!(500)),
        "{g2}"
    );
    let api: Value = reqwest::Client::new()
        .get(format!("{base}/api/groups"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(api["groups"].as_array().map(Vec::len), Some(2), "{api}");
    assert_eq!(api, json_of(&run(&["group", "list", "--json"], &flags)));
    server.stop();
}

both!(
    groups_are_opened_listed_and_shown_over_the_api,
    every_group_route_needs_the_admin_key,
    groups_are_opened_from_the_cli_directly_and_through_the_server,
);

#[test]
fn group_help_explains_templates_and_overflow() {
    let cases: &[(&[&str], &[&str])] = &[
        (&[], &["group", "粉丝群"]),
        (
            &["group"],
            &[
                "create",
                "list",
                "show",
                "粉丝群",
                "template",
                "<template> N",
                "full",
                "group_join",
                "props.group_id",
            ],
        ),
        (
            &["group", "create"],
            &["--template", "--capacity", "--owner", "500", "overflow"],
        ),
        (&["group", "list"], &["7 days", "30 days", "capacity"]),
        (&["group", "show"], &["ID_OR_NAME", "30 days"]),
    ];
    crate::helpers::help_says(cases);
}
