//! Keys and secrets (issue 12, item 5): API keys rotate over the API and the CLI, and the old
//! key stops at once (or when its grace ends); connector credentials are sealed at rest;
//! outbound URLs that are not public https are refused unless the operator allows them; and a
//! server run at trace level, with every credential in use, logs none of them.

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;

use serde_json::{Value, json};
use siyu_app::Safeguards;
use siyu_app::secrets::Sealer;
use siyu_app::targets::TargetPolicy;
use siyu_store::Durability;

use crate::both;
use crate::cli::{json_of, run};
use crate::connectors::{LeadApi, SECRET, TOKEN, leads_from, signature, wait_for_events};
use crate::durability::{admin_get, siyu, start_server, terminate};
use crate::helpers::{Backend, TEST_SECRET_KEY, fresh_location, spawn_app_guarded, store_flags};

async fn ingest_status(base: &str, key: &str) -> u16 {
    let body = json!([crate::helpers::event("k-1", "video_view", "13800138000")]);
    reqwest::Client::new()
        .post(format!("{base}/api/events"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn rotate(base: &str, admin: &str, body: &Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}/api/tenant/keys/rotate"))
        .bearer_auth(admin)
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn keys_rotate_over_the_api_and_the_cli(b: Backend) {
    let mut app = crate::helpers::spawn_app(b).await;
    let old_write = app.write_key.clone();
    assert_eq!(ingest_status(&app.base, &old_write).await, 200);

    // The write key, at once: the old one is refused on the next request.
    let (s, v) = rotate(&app.base, &app.admin_key, &json!({"key": "write"})).await;
    assert_eq!(s, 200, "{v}");
    let new_write = v["write_key"].as_str().unwrap().to_string();
    assert_eq!(v, json!({"tenant": "acme", "write_key": new_write}));
    assert_eq!(ingest_status(&app.base, &old_write).await, 401);
    assert_eq!(ingest_status(&app.base, &new_write).await, 200);

    // The admin key with an hour's grace: both work meanwhile (the exact end is checked on an
    // injected clock in siyu-app's tests).
    let (s, v) = rotate(
        &app.base,
        &app.admin_key,
        &json!({"key": "admin", "grace_seconds": 3600}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let new_admin = v["admin_key"].as_str().unwrap().to_string();
    assert!(v["previous_key_expires_at"].is_string(), "{v}");
    assert_eq!(
        admin_get(&app.base, "/api/tenant", &app.admin_key).await["tenant"],
        "acme"
    );
    assert_eq!(
        admin_get(&app.base, "/api/tenant", &new_admin).await["tenant"],
        "acme"
    );

    // Refusals name the field; a write key may not rotate.
    for (body, code, field) in [
        (json!({"key": "root"}), "invalid_key_role", "key"),
        (json!({}), "invalid_key_role", "key"),
        (
            json!({"key": "write", "grace_seconds": 604_801}),
            "invalid_grace",
            "grace_seconds",
        ),
        (
            json!({"key": "write", "grace_seconds": -1}),
            "invalid_grace",
            "grace_seconds",
        ),
        (
            json!({"key": "write", "grace": 1}),
            "unknown_field",
            "grace",
        ),
    ] {
        let (s, v) = rotate(&app.base, &new_admin, &body).await;
        assert_eq!(
            (s, &v["error"]["code"], &v["error"]["field"]),
            (400, &json!(code), &json!(field)),
            "{body}"
        );
    }
    let (s, _) = rotate(&app.base, &new_write, &json!({"key": "write"})).await;
    assert_eq!(s, 403);
    assert_eq!(
        ingest_status(&app.base, &new_write).await,
        200,
        "refusals change nothing"
    );

    // The CLI, on the stopped server's store: prints the new key once, the old one is gone.
    app.halt().await;
    let flags = store_flags(&app.location);
    let out = run(&["tenant", "rotate", "acme", "--key", "write"], &flags);
    let v = json_of(&out);
    let cli_write = v["write_key"].as_str().unwrap().to_string();
    assert_eq!(v, json!({"tenant": "acme", "write_key": cli_write}));
    let out = run(&["tenant", "rotate", "acme", "--key", "owner"], &flags);
    assert!(!out.status.success());
    let out = run(&["tenant", "rotate", "nobody", "--key", "write"], &flags);
    assert_eq!(json_of_failure(&out)["error"]["code"], "tenant_not_found");
    app.write_key = cli_write.clone();
    let app = app.restart().await;
    assert_eq!(ingest_status(&app.base, &new_write).await, 401);
    assert_eq!(ingest_status(&app.base, &cli_write).await, 200);
    app.stop().await;
}

fn json_of_failure(out: &std::process::Output) -> Value {
    assert!(!out.status.success());
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

async fn private_targets_are_refused_unless_allowed(b: Backend) {
    // The default policy, as `siyu serve` has it without SIYU_ALLOW_PRIVATE_TARGETS.
    let guard = Safeguards::new(
        Sealer::from_keys(&[0x5a; 32], None),
        TargetPolicy::default(),
    );
    let app = spawn_app_guarded(b, siyu_server::Limits::default(), guard).await;
    let path = "/api/connectors/oceanengine";
    for base in [
        "http://127.0.0.1:9",
        "http://api.oceanengine.com",
        "https://127.0.0.1",
        "https://10.1.2.3",
        "https://[::1]:8443",
        "https://localhost",
        "https://169.254.169.254",
    ] {
        let (s, v) = app
            .admin_put(
                path,
                &json!({"advertiser_id": 1, "access_token": TOKEN, "base_url": base}),
            )
            .await;
        assert_eq!(s, 400, "{base}: {v}");
        assert_eq!(v["error"]["code"], "target_not_allowed", "{base}: {v}");
        assert_eq!(v["error"]["field"], "base_url");
    }
    let (_, v) = app.get(path).await;
    assert_eq!(v["access_token_set"], false, "nothing was stored: {v}");
    let (s, v) = app
        .admin_put(
            path,
            &json!({"advertiser_id": 1, "access_token": TOKEN, "base_url": "https://api.oceanengine.com"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");

    // At rest the token and the client secret are sealed: the store holds neither.
    let (s, _) = app
        .admin_put("/api/connectors/douyin", &json!({"client_secret": SECRET}))
        .await;
    assert_eq!(s, 200);
    let loc = app.location.clone();
    let configs = tokio::task::spawn_blocking(move || {
        let store = siyu_store::open(&loc, Durability::Full).unwrap();
        let t = store.tenants().unwrap()[0].id;
        ["douyin", "oceanengine"].map(|k| store.connector(t, k).unwrap().unwrap().config)
    })
    .await
    .unwrap();
    for c in configs {
        assert!(
            c.contains("sealed:v1:") && !c.contains(TOKEN) && !c.contains(SECRET),
            "{c}"
        );
    }
    app.stop().await;

    // The CLI: refused without the variable, allowed with it.
    let (location, _dir) = fresh_location(b);
    let flags = store_flags(&location);
    json_of(&run(&["tenant", "create", "acme"], &flags));
    let set = |allow: bool| {
        let mut c = siyu();
        if !allow {
            c.env_remove("SIYU_ALLOW_PRIVATE_TARGETS");
        }
        c.args(["connector", "oceanengine", "--advertiser-id", "1"])
            .args(["--base-url", "http://127.0.0.1:9"])
            .args(&flags)
            .env("SIYU_OCEANENGINE_ACCESS_TOKEN", TOKEN)
            .output()
            .unwrap()
    };
    let v = json_of_failure(&set(false));
    assert_eq!(v["error"]["code"], "target_not_allowed", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("base_url"),
        "{v}"
    );
    assert_eq!(json_of(&set(true))["base_url"], "http://127.0.0.1:9");
}

async fn a_wrong_secret_key_is_a_clear_error_and_the_old_key_opens_while_rotating(b: Backend) {
    let (location, _d) = fresh_location(b);
    let flags = store_flags(&location);
    json_of(&run(&["tenant", "create", "acme"], &flags));
    let other = "0123456789abcdef".repeat(4);
    let douyin = |env: &[(&str, &str)], secret: Option<&str>| {
        let mut c = siyu();
        c.args(["connector", "douyin"]).args(&flags);
        for (k, v) in env {
            c.env(k, v);
        }
        if let Some(s) = secret {
            c.env("SIYU_DOUYIN_CLIENT_SECRET", s);
        }
        c.output().unwrap()
    };
    json_of(&douyin(&[], Some(SECRET)));

    // Another key: refused, naming the connector and the field, never the secret.
    let v = json_of_failure(&douyin(&[("SIYU_SECRET_KEY", &other)], None));
    assert_eq!(v["error"]["code"], "secret_key_mismatch", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("douyin") && message.contains("client_secret"),
        "{message}"
    );
    assert!(!v.to_string().contains(SECRET) && !v.to_string().contains(TEST_SECRET_KEY));
    // A key that is not 64 hex characters.
    let v = json_of_failure(&douyin(&[("SIYU_SECRET_KEY", "not-hex")], None));
    assert_eq!(v["error"]["code"], "secret_key_unavailable", "{v}");
    assert!(!v.to_string().contains("not-hex"), "{v}");

    // Rotating: the new key with the old one beside it reads, and a write seals with the new.
    let rotating = [
        ("SIYU_SECRET_KEY", other.as_str()),
        ("SIYU_SECRET_KEY_OLD", TEST_SECRET_KEY),
    ];
    assert_eq!(json_of(&douyin(&rotating, None))["client_secret_set"], true);
    json_of(&douyin(&rotating, Some(SECRET)));
    let v = json_of(&douyin(&[("SIYU_SECRET_KEY", &other)], None));
    assert_eq!(v["client_secret_set"], true, "{v}");

    // Without a key given, SQLite's default key file is made beside the database, 0600.
    if let siyu_store::Location::Sqlite(dir) = &location {
        let mut c = siyu();
        c.env_remove("SIYU_SECRET_KEY");
        let out = c
            .args(["connector", "douyin"])
            .args(&flags)
            .output()
            .unwrap();
        assert_eq!(
            json_of_failure(&out)["error"]["code"],
            "secret_key_mismatch"
        );
        let file = dir.join("secret.key");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}

fn douyin_config(location: &siyu_store::Location) -> String {
    let store = siyu_store::open(location, Durability::Full).unwrap();
    let t = store.tenants().unwrap()[0].id;
    store.connector(t, "douyin").unwrap().unwrap().config
}

async fn serve_seals_what_earlier_versions_stored_in_plain_text(b: Backend) {
    let (location, _d) = fresh_location(b);
    let flags = store_flags(&location);
    json_of(&run(&["tenant", "create", "acme"], &flags));
    let loc = location.clone();
    tokio::task::spawn_blocking(move || {
        let store = siyu_store::open(&loc, Durability::Full).unwrap();
        let t = store.tenants().unwrap()[0].id;
        let plain = json!({ "client_secret": SECRET }).to_string();
        store.set_connector(t, "douyin", &plain, 1).unwrap();
    })
    .await
    .unwrap();
    // Started and stopped: the start is where it seals.
    let (server, _url) = start_server(&flags);
    terminate(server);
    let loc = location.clone();
    let config = tokio::task::spawn_blocking(move || douyin_config(&loc))
        .await
        .unwrap();
    assert!(
        config.contains("sealed:v1:") && !config.contains(SECRET),
        "{config}"
    );
    // And it still opens.
    let v = json_of(&run(&["connector", "douyin"], &flags));
    assert_eq!(v["client_secret_set"], true, "{v}");
}

/// Runs `siyu` with `args` at trace level; returns its output, with stderr (the log) kept.
fn traced(args: &[&str], flags: &[String], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = siyu();
    c.args(args).args(flags).env("SIYU_LOG", "trace");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

async fn nothing_secret_is_logged_at_trace_level(b: Backend) {
    let hour = 3_600_000;
    let t0 = (siyu_domain::time::now_ms() - 2 * siyu_domain::time::MS_PER_DAY) / hour * hour;
    let api = LeadApi::start(leads_from(t0, 3, 3600), 0, std::time::Duration::ZERO);
    let (location, _d) = fresh_location(b);
    let flags = store_flags(&location);
    let mut log = String::new();
    // The log is stderr; stdout is the command's answer (a new tenant's keys, on purpose).
    let mut keep = |out: &std::process::Output| {
        log.push_str(&String::from_utf8_lossy(&out.stderr));
    };

    let out = traced(&["tenant", "create", "acme"], &flags, &[]);
    keep(&out);
    let keys = json_of(&out);
    let (write, admin) = (
        keys["write_key"].as_str().unwrap(),
        keys["admin_key"].as_str().unwrap(),
    );
    let start = siyu_domain::time::format_rfc3339(t0);
    let out = traced(
        &[
            "connector",
            "oceanengine",
            "--advertiser-id",
            "1769665409798152",
            "--base-url",
            &api.base,
            "--start",
            &start,
        ],
        &flags,
        &[("SIYU_OCEANENGINE_ACCESS_TOKEN", TOKEN)],
    );
    keep(&out);
    json_of(&out);
    let out = traced(
        &["connector", "douyin"],
        &flags,
        &[("SIYU_DOUYIN_CLIENT_SECRET", SECRET)],
    );
    keep(&out);
    assert_eq!(json_of(&out)["client_secret_set"], true);

    let mut server = siyu()
        .arg("serve")
        .args(&flags)
        .args([
            "--addr",
            "127.0.0.1:0",
            "--poll-interval",
            "1",
            "--poll-lag",
            "1",
        ])
        .env("SIYU_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The log is read on a thread of its own, so the server never blocks on a full pipe.
    let mut stderr = server.stderr.take().unwrap();
    let server_log = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut banner = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut banner)
        .unwrap();
    let url = banner
        .trim()
        .strip_prefix("siyu listening on ")
        .unwrap()
        .to_string();

    // The poller calls the local lead API with the token; a signed delivery comes in; the
    // keys are used and one is rotated.
    assert_eq!(wait_for_events(&url, admin, 3).await, 3);
    let body = json!({"event": "im_receive_msg", "client_key": "awx", "log_id": "T1",
        "from_user_id": "_000fan", "to_user_id": "_000brand",
        "content": {"conversation_short_id": "1", "server_message_id": "t-1",
                    "message_type": "text", "text": "hi", "create_time": 1_790_000_000_000i64}})
    .to_string();
    let r = reqwest::Client::new()
        .post(format!("{url}/webhooks/douyin/acme"))
        .header("content-type", "application/json")
        .header("msg-id", "trace-1")
        .header("x-douyin-signature", signature(SECRET, body.as_bytes()))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(ingest_status(&url, write).await, 200);
    let (s, v) = rotate(&url, admin, &json!({"key": "write", "grace_seconds": 60})).await;
    assert_eq!(s, 200, "{v}");
    let rotated = v["write_key"].as_str().unwrap().to_string();
    assert_eq!(ingest_status(&url, &rotated).await, 200);
    assert!(
        api.seen().iter().any(|s| s.token.as_deref() == Some(TOKEN)),
        "the token was sent"
    );
    terminate(server);
    log.push_str(&server_log.join().unwrap());

    assert!(log.contains("TRACE"), "the log is at trace level");
    assert!(log.contains("ureq"), "the HTTP client's own log is in it");
    for (what, secret) in [
        ("access token", TOKEN),
        ("client secret", SECRET),
        ("write key", write),
        ("admin key", admin),
        ("rotated key", rotated.as_str()),
        ("secret key", TEST_SECRET_KEY),
    ] {
        let leaks: Vec<String> = log
            .lines()
            .filter(|l| l.contains(secret))
            .map(|l| l.replace(secret, "<THE SECRET>"))
            .collect();
        assert!(leaks.is_empty(), "the {what} is in the log: {leaks:#?}");
    }
}

both!(
    keys_rotate_over_the_api_and_the_cli,
    private_targets_are_refused_unless_allowed,
    a_wrong_secret_key_is_a_clear_error_and_the_old_key_opens_while_rotating,
    serve_seals_what_earlier_versions_stored_in_plain_text,
    nothing_secret_is_logged_at_trace_level,
);
