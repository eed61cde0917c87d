//! The journeys and channels API as an operator meets it: journey files applied as versions
//! (the same file again changes nothing, a refused file names its field and line and stores
//! nothing), listed, shown, paused, resumed and reported; the send policy changed field by
//! field; dead letters and staff tasks; channel settings whose credentials never come back;
//! and the admin key required everywhere.

use serde_json::{Value, json};
use siyu_app::targets::TargetPolicy;

use crate::both;
use crate::helpers::{Backend, TestApp, spawn_app, spawn_app_guarded};

const WELCOME: &str = r#"name = "welcome"
trigger = { event = "follow" }

[[steps]]
id = "hello"
type = "send"
channel = "webhook"
text = "欢迎关注！"
"#;

/// [`WELCOME`] with a wait and a second message: a new version.
const WELCOME_2: &str = r#"name = "welcome"
trigger = { event = "follow" }

[[steps]]
id = "hello"
type = "send"
channel = "webhook"
text = "欢迎关注！"

[[steps]]
id = "later"
type = "wait"
for = "2h"

[[steps]]
id = "again"
type = "send"
channel = "webhook"
text = "还在吗？"
"#;

/// A step type that does not exist, on line 6.
const SNED: &str = r#"name = "welcome"
trigger = { event = "follow" }

[[steps]]
id = "hello"
type = "sned"
channel = "webhook"
text = "hi"
"#;

/// A branch whose `else` names no step, on line 9.
const NO_STEP: &str = r#"name = "welcome"
trigger = { event = "follow" }

[[steps]]
id = "check"
type = "branch"
if = "has(phone)"
then = "bye"
else = "ofer"

[[steps]]
id = "bye"
type = "exit"
"#;

/// A request body and its content type.
type Body<'a> = Option<(&'a str, Vec<u8>)>;

/// One request: `key` as the bearer (none when empty), an optional body with its content type;
/// the status and the raw answer.
async fn call(app: &TestApp, method: &str, path: &str, key: &str, body: Body<'_>) -> (u16, String) {
    let mut req = app
        .client
        .request(method.parse().unwrap(), format!("{}{path}", app.base));
    if !key.is_empty() {
        req = req.bearer_auth(key);
    }
    if let Some((ct, bytes)) = body {
        req = req.header("content-type", ct).body(bytes);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// [`call`] with the admin key and a JSON body (or none); the answer parsed.
async fn admin(app: &TestApp, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let body = body.map(|b| ("application/json", b.to_string().into_bytes()));
    let (status, text) = call(app, method, path, &app.admin_key, body).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Posts a journey file with a content type.
async fn apply(app: &TestApp, content_type: &str, text: &str) -> (u16, Value) {
    let (status, body) = call(
        app,
        "POST",
        "/api/journeys",
        &app.admin_key,
        Some((content_type, text.as_bytes().to_vec())),
    )
    .await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn error(body: &Value) -> (&str, &Value) {
    (
        body["error"]["code"].as_str().unwrap_or(""),
        &body["error"]["field"],
    )
}

// ---------------------------------------------------------------------------------------------
// Journeys (these need the journeys store)

async fn journeys_are_versioned_and_a_refused_file_stores_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let (status, body) = apply(&app, "text/plain", WELCOME).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body,
        json!({"journey": "welcome", "version": 1, "unchanged": false})
    );

    // The same file again, as application/toml: nothing changes.
    let (status, body) = apply(&app, "application/toml; charset=utf-8", WELCOME).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"journey": "welcome", "version": 1, "unchanged": true})
    );

    // A changed file, as JSON: version 2.
    let (status, body) = admin(
        &app,
        "POST",
        "/api/journeys",
        Some(json!({ "definition": WELCOME_2 })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body,
        json!({"journey": "welcome", "version": 2, "unchanged": false})
    );

    // Refused files name their code, field and line, and change nothing.
    let (status, body) = apply(&app, "application/toml", SNED).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error(&body), ("unknown_step_type", &json!("steps[0].type")));
    assert_eq!(body["error"]["line"], 6, "{body}");
    let (status, body) = apply(&app, "application/toml", NO_STEP).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error(&body), ("unknown_step", &json!("steps[0].else")));
    assert_eq!(body["error"]["line"], 9, "{body}");

    let (status, body) = admin(&app, "GET", "/api/journeys", None).await;
    assert_eq!(status, 200, "{body}");
    let list = body["journeys"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{body}");
    assert_eq!(list[0]["name"], "welcome");
    assert_eq!(list[0]["version"], 2);
    assert_eq!(list[0]["steps"], 3);
    let (_, detail) = admin(&app, "GET", "/api/journeys/welcome", None).await;
    assert_eq!(detail["definition"], WELCOME_2);
    app.stop().await;
}

async fn journeys_are_shown_paused_resumed_and_reported(backend: Backend) {
    let app = spawn_app(backend).await;
    let (status, body) = apply(&app, "text/plain", WELCOME).await;
    assert_eq!(status, 201, "{body}");

    let (status, d) = admin(&app, "GET", "/api/journeys/welcome", None).await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["name"], "welcome");
    assert_eq!(d["version"], 1);
    assert_eq!(d["paused"], false);
    assert_eq!(d["trigger"], "event = \"follow\"");
    assert_eq!(d["steps"], 1);
    assert_eq!(d["definition"], WELCOME);
    assert_eq!(
        d["step_list"],
        json!([{"id": "hello", "type": "send", "channel": "webhook"}])
    );
    for k in ["applied_at", "updated_at"] {
        assert!(d[k].as_str().unwrap().ends_with('Z'), "{k}: {d}");
    }

    let (status, s) = admin(&app, "POST", "/api/journeys/welcome/pause", None).await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(
        (s["name"].clone(), s["paused"].clone()),
        (json!("welcome"), json!(true))
    );
    assert!(s.get("definition").is_none(), "a summary: {s}");
    let (_, list) = admin(&app, "GET", "/api/journeys", None).await;
    assert_eq!(list["journeys"][0]["paused"], true, "{list}");
    let (status, s) = admin(&app, "POST", "/api/journeys/welcome/resume", None).await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["paused"], false);

    let (status, r) = admin(&app, "GET", "/api/journeys/welcome/report", None).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["journey"], "welcome");
    assert_eq!(r["version"], 1);
    assert_eq!(r["paused"], false);
    assert_eq!(r["runs"]["entered"], 0);
    assert_eq!(r["runs"]["conversion_rate"], 0.0);
    assert_eq!(r["steps"][0]["id"], "hello");
    assert_eq!(r["steps"][0]["type"], "send");
    assert_eq!(r["steps"][0]["sent"], 0);
    assert_eq!(r["variants"], json!([]));

    for (method, path) in [
        ("GET", "/api/journeys/nope"),
        ("POST", "/api/journeys/nope/pause"),
        ("POST", "/api/journeys/nope/resume"),
        ("GET", "/api/journeys/nope/report"),
    ] {
        let (status, body) = admin(&app, method, path, None).await;
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert_eq!(
            body["error"]["code"], "journey_not_found",
            "{method} {path}"
        );
    }
    app.stop().await;
}

async fn dead_letters_and_tasks_are_listed(backend: Backend) {
    let app = spawn_app(backend).await;
    let (status, body) = admin(
        &app,
        "GET",
        "/api/dead-letters?journey=welcome&limit=5",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"dead_letters": []}));
    let (status, body) = admin(
        &app,
        "POST",
        "/api/dead-letters/retry",
        Some(json!({"all": true})),
    )
    .await;
    assert_eq!((status, body), (200, json!({"retried": 0})));
    let (status, body) = admin(
        &app,
        "POST",
        "/api/dead-letters/retry",
        Some(json!({"ids": [7, 8]})),
    )
    .await;
    assert_eq!((status, body), (200, json!({"retried": 0})));

    let (status, body) = admin(
        &app,
        "GET",
        "/api/tasks?state=open&team=sales&limit=10",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"tasks": []}));
    let (status, body) = admin(
        &app,
        "POST",
        "/api/tasks/999/claim",
        Some(json!({"agent": "li"})),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "task_not_found");
    let (status, body) = admin(
        &app,
        "POST",
        "/api/tasks/999/done",
        Some(json!({"agent": "li", "outcome": "called"})),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "task_not_found");
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Refused before the journeys store is read

async fn a_refused_journey_file_names_its_field_and_line(backend: Backend) {
    let app = spawn_app(backend).await;
    let (status, body) = apply(&app, "application/toml", SNED).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error(&body), ("unknown_step_type", &json!("steps[0].type")));
    assert_eq!(body["error"]["line"], 6, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("did you mean \"send\"?"),
        "{body}"
    );
    let (status, body) = apply(&app, "text/plain", NO_STEP).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error(&body), ("unknown_step", &json!("steps[0].else")));
    assert_eq!(body["error"]["line"], 9, "{body}");
    // As JSON, the same.
    let (status, body) = admin(
        &app,
        "POST",
        "/api/journeys",
        Some(json!({ "definition": SNED })),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error(&body), ("unknown_step_type", &json!("steps[0].type")));
    // Not TOML: no field, a line.
    let (status, body) = apply(&app, "text/plain", "name = \"x\"\ntrigger = {\n").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error(&body), ("invalid_journey", &Value::Null));
    assert!(body["error"]["line"].as_u64().unwrap() >= 1, "{body}");
    // Other errors carry no line.
    let (status, body) = admin(
        &app,
        "POST",
        "/api/journeys",
        Some(json!({ "definition": WELCOME, "name": "x" })),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error(&body), ("unknown_field", &json!("name")));
    assert!(body["error"].get("line").is_none(), "{body}");
    let (status, body) = admin(
        &app,
        "POST",
        "/api/journeys",
        Some(json!({ "definition": 1 })),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error(&body), ("invalid_field", &json!("definition")));
    let (status, body) = admin(&app, "POST", "/api/journeys", Some(json!({}))).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error(&body), ("missing_field", &json!("definition")));
    let (status, _) = call(
        &app,
        "POST",
        "/api/journeys",
        &app.admin_key,
        Some((
            "application/x-www-form-urlencoded",
            WELCOME.as_bytes().to_vec(),
        )),
    )
    .await;
    assert_eq!(status, 415);
    let (status, body) = call(
        &app,
        "POST",
        "/api/journeys",
        &app.admin_key,
        Some(("text/plain", vec![0xff, 0xfe])),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = call(
        &app,
        "POST",
        "/api/journeys",
        &app.admin_key,
        Some(("text/plain", vec![b'#'; 300 * 1024])),
    )
    .await;
    assert_eq!(status, 413);
    app.stop().await;
}

async fn the_policy_is_changed_field_by_field(backend: Backend) {
    let app = spawn_app(backend).await;
    // `policy` is not taken for a journey's name.
    let (status, p) = admin(&app, "GET", "/api/journeys/policy", None).await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["time_zone"], "Asia/Shanghai");
    assert_eq!(p["quiet_start"], "22:00");
    assert_eq!(p["daily_cap"], 3);
    let (status, body) = admin(&app, "POST", "/api/journeys/policy", None).await;
    assert_eq!(status, 405, "{body}");

    let (status, p) = admin(
        &app,
        "PUT",
        "/api/journeys/policy",
        Some(json!({"daily_cap": 5, "quiet_start": "21:30"})),
    )
    .await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(
        (p["daily_cap"].clone(), p["quiet_start"].clone()),
        (json!(5), json!("21:30"))
    );
    assert_eq!(p["time_zone"], "Asia/Shanghai", "left out: kept");

    let (status, body) = admin(
        &app,
        "PUT",
        "/api/journeys/policy",
        Some(json!({"time_zon": "UTC"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error(&body), ("unknown_field", &json!("time_zon")));
    let (status, body) = admin(
        &app,
        "PUT",
        "/api/journeys/policy",
        Some(json!({"time_zone": "Mars/Olympus_Mons", "daily_cap": 9})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error(&body), ("invalid_policy", &json!("time_zone")));
    let (status, body) = admin(
        &app,
        "PUT",
        "/api/journeys/policy",
        Some(json!({"daily_cap": 0})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error(&body), ("invalid_policy", &json!("daily_cap")));
    let (status, body) = admin(&app, "PUT", "/api/journeys/policy", Some(json!([1]))).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_body");
    let (status, _) = call(
        &app,
        "PUT",
        "/api/journeys/policy",
        &app.admin_key,
        Some((
            "application/json",
            br#"{"daily_cap": 4, "daily_cap": 6}"#.to_vec(),
        )),
    )
    .await;
    assert_eq!(status, 400);

    // Nothing refused was stored.
    let (_, p) = admin(&app, "GET", "/api/journeys/policy", None).await;
    assert_eq!(
        (p["daily_cap"].clone(), p["time_zone"].clone()),
        (json!(5), json!("Asia/Shanghai"))
    );
    app.stop().await;
}

async fn dead_letter_and_task_requests_are_checked(backend: Backend) {
    let app = spawn_app(backend).await;
    let retry = |body: Value| {
        let app = &app;
        async move { admin(app, "POST", "/api/dead-letters/retry", Some(body)).await }
    };
    for (body, code, field) in [
        (json!({}), "invalid_body", "ids"),
        (json!({"ids": [1], "all": true}), "invalid_body", "ids"),
        (json!({"ids": []}), "invalid_field", "ids"),
        (json!({"ids": ["1"]}), "invalid_field", "ids"),
        (json!({"ids": [0]}), "invalid_field", "ids"),
        (json!({"ids": 1}), "invalid_field", "ids"),
        (json!({"all": false}), "invalid_field", "all"),
        (json!({"all": "yes"}), "invalid_field", "all"),
        (json!({"idz": [1]}), "unknown_field", "idz"),
    ] {
        let (status, answer) = retry(body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(error(&answer), (code, &json!(field)), "{body}: {answer}");
    }
    let (status, body) = admin(&app, "GET", "/api/dead-letters?limit=many", None).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error(&body), ("invalid_number", &json!("limit")));

    let (status, body) = admin(&app, "GET", "/api/tasks?state=finished", None).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error(&body), ("invalid_field", &json!("state")));
    let (status, body) = admin(&app, "GET", "/api/tasks?limit=-1", None).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error(&body), ("invalid_number", &json!("limit")));
    let (status, body) = admin(
        &app,
        "POST",
        "/api/tasks/abc/claim",
        Some(json!({"agent": "li"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error(&body), ("invalid_task_id", &json!("id")));
    let (status, body) = admin(&app, "POST", "/api/tasks/1/claim", Some(json!({}))).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error(&body), ("missing_field", &json!("agent")));
    let (status, body) = admin(
        &app,
        "POST",
        "/api/tasks/1/claim",
        Some(json!({"agent": " li"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error(&body), ("invalid_argument", &json!("agent")));
    let (status, body) = admin(
        &app,
        "POST",
        "/api/tasks/1/done",
        Some(json!({"agent": "li", "outcome": "ok", "note": "x"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error(&body), ("unknown_field", &json!("note")));
    let (status, body) = admin(
        &app,
        "POST",
        "/api/tasks/1/done",
        Some(json!({"agent": "li"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error(&body), ("missing_field", &json!("outcome")));
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Channels

const WEBHOOK_SECRET: &str = "whsec-do-not-show-0001";
const ROBOT_KEY: &str = "robot-key-do-not-show-0002";

async fn channel_credentials_are_write_only(backend: Backend) {
    let app = spawn_app(backend).await;
    let (status, body) = admin(&app, "GET", "/api/channels", None).await;
    assert_eq!(status, 200, "{body}");
    let kinds: Vec<&str> = body["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["channel"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["webhook", "douyin_im", "wecom_robot"]);
    assert_eq!(body["channels"][0]["configured"], false);

    // The test app allows private targets (`test_safeguards`): a local receiver will do.
    let settings = json!({"url": "http://127.0.0.1:9/hooks/siyu", "secret": WEBHOOK_SECRET, "timeout_ms": 2000});
    let (status, text) = call(
        &app,
        "PUT",
        "/api/channels/webhook",
        &app.admin_key,
        Some(("application/json", settings.to_string().into_bytes())),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains(WEBHOOK_SECRET), "{text}");
    let view: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(view["configured"], true);
    assert_eq!(view["secret_set"], true);
    assert_eq!(view["url"], "http://127.0.0.1:9/hooks/siyu");
    assert_eq!(view["timeout_ms"], 2000);

    let robot = format!("http://127.0.0.1:9/cgi-bin/webhook/send?key={ROBOT_KEY}");
    let (status, text) = call(
        &app,
        "PUT",
        "/api/channels/wecom_robot",
        &app.admin_key,
        Some((
            "application/json",
            json!({"url": robot}).to_string().into_bytes(),
        )),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains(ROBOT_KEY), "{text}");

    let (status, text) = call(&app, "GET", "/api/channels", &app.admin_key, None).await;
    assert_eq!(status, 200, "{text}");
    assert!(
        !text.contains(WEBHOOK_SECRET) && !text.contains(ROBOT_KEY),
        "{text}"
    );

    // A PUT without the credential keeps it.
    let (status, view) = admin(
        &app,
        "PUT",
        "/api/channels/webhook",
        Some(json!({"concurrency": 4})),
    )
    .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(
        (view["secret_set"].clone(), view["concurrency"].clone()),
        (json!(true), json!(4))
    );

    // Refused settings name their field and change nothing.
    for (body, field) in [
        (json!({"url": "not a url"}), "url"),
        (json!({"secret": ""}), "secret"),
        (json!({"token": "x"}), "token"),
        (json!({"timeout_ms": 5}), "timeout_ms"),
    ] {
        let (status, answer) =
            admin(&app, "PUT", "/api/channels/webhook", Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(
            error(&answer),
            ("invalid_channel_setting", &json!(field)),
            "{body}: {answer}"
        );
    }
    let (status, body) = admin(&app, "PUT", "/api/channels/webhook", Some(json!("x"))).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_body");
    let (_, view) = admin(&app, "GET", "/api/channels", None).await;
    assert_eq!(view["channels"][0]["url"], "http://127.0.0.1:9/hooks/siyu");

    let (status, body) = admin(&app, "PUT", "/api/channels/sms", Some(json!({}))).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(error(&body), ("unknown_channel", &json!("kind")));

    // The kill switch.
    let (status, view) = admin(&app, "POST", "/api/channels/webhook/kill", None).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["killed"], true);
    let (_, list) = admin(&app, "GET", "/api/channels", None).await;
    assert_eq!(list["channels"][0]["killed"], true);
    let (status, view) = admin(&app, "POST", "/api/channels/webhook/resume", None).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["killed"], false);
    assert_eq!(view["secret_set"], true, "the other settings kept");
    let (status, body) = admin(&app, "POST", "/api/channels/douyin_im/kill", None).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "channel_not_configured");
    let (status, body) = admin(&app, "POST", "/api/channels/sms/kill", None).await;
    assert_eq!(status, 404, "{body}");
    app.stop().await;
}

async fn channel_urls_are_held_to_the_target_policy(backend: Backend) {
    let guard = siyu_app::Safeguards::new(
        siyu_app::secrets::Sealer::from_keys(&[0x5a; 32], None),
        TargetPolicy::PUBLIC_ONLY,
    );
    let app = spawn_app_guarded(backend, siyu_server::Limits::default(), guard).await;
    for url in ["http://127.0.0.1:9/hook", "https://10.0.0.7/hook"] {
        let (status, body) = admin(
            &app,
            "PUT",
            "/api/channels/webhook",
            Some(json!({"url": url, "secret": WEBHOOK_SECRET})),
        )
        .await;
        assert_eq!(status, 400, "{url}: {body}");
        assert_eq!(
            error(&body),
            ("target_not_allowed", &json!("url")),
            "{url}: {body}"
        );
    }
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Keys

async fn every_route_needs_the_admin_key(backend: Backend) {
    let app = spawn_app(backend).await;
    let json_body = || Some(("application/json", b"{}".to_vec()));
    let routes: Vec<(&str, &str, Body<'_>)> = vec![
        (
            "POST",
            "/api/journeys",
            Some(("text/plain", WELCOME.as_bytes().to_vec())),
        ),
        ("GET", "/api/journeys", None),
        ("GET", "/api/journeys/welcome", None),
        ("POST", "/api/journeys/welcome/pause", None),
        ("POST", "/api/journeys/welcome/resume", None),
        ("GET", "/api/journeys/welcome/report", None),
        ("GET", "/api/journeys/policy", None),
        ("PUT", "/api/journeys/policy", json_body()),
        ("GET", "/api/dead-letters", None),
        (
            "POST",
            "/api/dead-letters/retry",
            Some(("application/json", br#"{"all": true}"#.to_vec())),
        ),
        ("GET", "/api/tasks", None),
        (
            "POST",
            "/api/tasks/1/claim",
            Some(("application/json", br#"{"agent": "li"}"#.to_vec())),
        ),
        ("POST", "/api/tasks/1/done", json_body()),
        ("GET", "/api/channels", None),
        ("PUT", "/api/channels/webhook", json_body()),
        ("POST", "/api/channels/webhook/kill", None),
        ("POST", "/api/channels/webhook/resume", None),
    ];
    for (method, path, body) in routes {
        let (status, text) = call(&app, method, path, &app.write_key, body.clone()).await;
        assert_eq!(status, 403, "{method} {path}: {text}");
        assert!(text.contains("\"forbidden\""), "{method} {path}: {text}");
        let (status, text) = call(&app, method, path, "", body).await;
        assert_eq!(status, 401, "{method} {path}: {text}");
    }
    // Nothing was stored with the write key.
    let (_, p) = admin(&app, "GET", "/api/journeys/policy", None).await;
    assert_eq!(p["daily_cap"], 3);
    let (_, c) = admin(&app, "GET", "/api/channels", None).await;
    assert_eq!(c["channels"][0]["configured"], false);
    app.stop().await;
}

both!(
    journeys_are_versioned_and_a_refused_file_stores_nothing,
    journeys_are_shown_paused_resumed_and_reported,
    dead_letters_and_tasks_are_listed,
    a_refused_journey_file_names_its_field_and_line,
    the_policy_is_changed_field_by_field,
    dead_letter_and_task_requests_are_checked,
    channel_credentials_are_write_only,
    channel_urls_are_held_to_the_target_policy,
    every_route_needs_the_admin_key,
);
