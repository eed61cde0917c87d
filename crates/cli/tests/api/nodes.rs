//! One owner per store. Two `siyu serve` nodes on one PostgreSQL serve disjoint tenants,
//! forward each other's requests, and when one is killed with SIGKILL under load the other
//! takes its tenants within the lease: every acknowledged event is stored once, and every
//! fan's `segment_entered` trigger and first layer transition are stored exactly once — none
//! lost, none doubled. On SQLite, a second server on the same data directory, and a command
//! that writes beside a running server, are refused at once with the holder's pid, and an
//! import goes through the server. A store that cannot be written is refused at start.

use std::collections::HashMap;
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use siyu_store::{Location, Store};

use crate::durability::{siyu, start_server};
use crate::helpers::{Backend, fresh_location, store_flags};

const TENANTS: usize = 4;
const FANS: usize = 120;
const BATCH: usize = 10;

fn cli(flags: &[String], args: &[&str]) -> Value {
    let out = siyu().args(args).args(flags).output().unwrap();
    assert!(
        out.status.success(),
        "siyu {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

async fn health(client: &reqwest::Client, url: &str) -> Option<Value> {
    let r = client
        .get(format!("{url}/healthz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    r.json().await.ok()
}

/// Waits (polling, with a deadline) until `ok` holds.
async fn until(what: &str, limit: Duration, mut ok: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !ok().await {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn serving(h: &Option<Value>) -> u64 {
    h.as_ref().and_then(|h| h["serving"].as_u64()).unwrap_or(0)
}

fn batch(tenant: usize, n: usize) -> Value {
    let ts = siyu_domain::time::format_rfc3339(siyu_domain::time::now_ms());
    Value::Array(
        (n * BATCH..(n + 1) * BATCH)
            .map(|i| {
                json!({"id": format!("t{tenant}-e{i}"), "type": "live_watch", "ts": ts,
                       "identities": {"douyin_open_id": format!("t{tenant}-fan{i}")}})
            })
            .collect(),
    )
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

async fn two_nodes_survive_the_death_of_one() {
    let (location, _schema) = fresh_location(Backend::Postgres);
    let flags = store_flags(&location);
    let mut keys = Vec::new();
    for t in 0..TENANTS {
        let name = format!("t{t}");
        let k = cli(&flags, &["tenant", "create", &name]);
        cli(
            &flags,
            &[
                "segment",
                "save",
                "watchers",
                "count(live_watch, 30d) >= 1",
                "--tenant",
                &name,
            ],
        );
        keys.push(k["write_key"].as_str().unwrap().to_string());
    }
    // Named as two hosts: b cannot see that a's process is gone, and waits for its leases to
    // expire, as a node on another machine would.
    let node = |name: &str| -> Vec<String> {
        let mut f = flags.clone();
        f.extend(["--lease-ttl", "3", "--node-name", name].map(String::from));
        f
    };
    let (a, url_a) = start_server(&node("host-a"));
    let (b, url_b) = start_server(&node("host-b"));
    let mut guard = Servers(vec![a, b]);
    let client = reqwest::Client::new();
    until(
        "the nodes to share the tenants",
        Duration::from_secs(30),
        async || {
            let (ha, hb) = (health(&client, &url_a).await, health(&client, &url_b).await);
            serving(&ha) == 2 && serving(&hb) == 2
        },
    )
    .await;

    // Every batch is sent until acknowledged, to either node (a node forwards to the
    // tenant's owner); node a is killed once a third are in.
    let batches: Vec<(usize, usize)> = (0..FANS / BATCH)
        .flat_map(|n| (0..TENANTS).map(move |t| (t, n)))
        .collect();
    let mut a_alive = true;
    let mut refused_while_moving = 0;
    for (i, (t, n)) in batches.iter().copied().enumerate() {
        if i == batches.len() / 3 {
            kill(&mut guard.0[0]);
            a_alive = false;
        }
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            let url = if a_alive && attempt % 2 == i % 2 {
                &url_a
            } else {
                &url_b
            };
            attempt += 1;
            let r = client
                .post(format!("{url}/api/events"))
                .bearer_auth(&keys[t])
                .json(&batch(t, n))
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            match r {
                Ok(r) if r.status().is_success() => {
                    let v: Value = r.json().await.unwrap();
                    assert_eq!(
                        v["accepted"].as_u64().unwrap() + v["duplicates"].as_u64().unwrap(),
                        BATCH as u64,
                        "{v}"
                    );
                    break;
                }
                Ok(r) => {
                    assert_eq!(r.status(), 503, "only a moving tenant is refused");
                    assert_eq!(r.headers()["retry-after"], "1");
                    refused_while_moving += 1;
                }
                Err(_) => {} // the killed node
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "batch {t}/{n} never acknowledged"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(
        refused_while_moving > 0,
        "a's tenants were refused until b took them"
    );
    until(
        "b to serve every tenant",
        Duration::from_secs(30),
        async || serving(&health(&client, &url_b).await) == TENANTS as u64,
    )
    .await;

    // Read what is stored, once b has stored what it derived.
    let Location::Postgres(url) = &location else {
        unreachable!()
    };
    let url = url.clone();
    tokio::task::spawn_blocking(move || verify(&url))
        .await
        .unwrap();
    drop(guard);
}

/// Every acknowledged event stored once; every fan's entry and first layer stored once.
fn verify(url: &str) {
    let store = siyu_store::open(
        &Location::Postgres(url.to_string()),
        siyu_store::Durability::Full,
    )
    .unwrap();
    for t in store.tenants().unwrap() {
        assert_eq!(
            store.event_count(t.id).unwrap(),
            FANS as u64,
            "tenant {}",
            t.name
        );
        let entered = |s: &dyn Store| -> HashMap<i64, usize> {
            let mut per_fan = HashMap::new();
            for c in s.segment_changes(t.id, None, None, 0, usize::MAX).unwrap() {
                assert!(c.entered, "nobody leaves: {c:?}");
                *per_fan.entry(c.fan).or_default() += 1;
            }
            per_fan
        };
        let started = Instant::now();
        while entered(&*store).len() < FANS {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "tenant {}: triggers lost: {} of {FANS} fans entered",
                t.name,
                entered(&*store).len()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let doubled: Vec<_> = entered(&*store)
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .collect();
        assert!(
            doubled.is_empty(),
            "tenant {}: segment_entered twice: {doubled:?}",
            t.name
        );
        let mut first = HashMap::<i64, usize>::new();
        for tr in store.transitions(t.id, None, 0, usize::MAX).unwrap() {
            if tr.from.is_none() {
                *first.entry(tr.fan).or_default() += 1;
            }
        }
        assert_eq!(
            first.len(),
            FANS,
            "tenant {}: every fan's first layer",
            t.name
        );
        assert!(
            first.values().all(|n| *n == 1),
            "tenant {}: a first layer twice",
            t.name
        );
    }
    let leases = store.leases().unwrap();
    assert_eq!(leases.len(), TENANTS);
    let holders: std::collections::HashSet<_> = leases.iter().map(|l| l.node.as_str()).collect();
    assert_eq!(holders.len(), 1, "one node holds every lease: {leases:?}");
}

/// Kills the servers a test started, whether it passes or panics.
struct Servers(Vec<Child>);

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            kill(c);
        }
    }
}

/// A second server beside a running one is refused; `siyu import` and every other command
/// that writes goes through the running one instead of writing beside it.
async fn beside_a_server_writes_go_through_it() {
    let (location, _dir) = fresh_location(Backend::Sqlite);
    let flags = store_flags(&location);
    let keys = cli(&flags, &["tenant", "create", "acme"]);
    let admin_key = keys["admin_key"].as_str().unwrap().to_string();
    let (first, url) = start_server(&flags);
    let pid = first.id().to_string();
    let mut guard = Servers(vec![first]);
    let addr = url.strip_prefix("http://").unwrap().to_string();
    let out = siyu()
        .arg("serve")
        .args(&flags)
        .args(["--addr", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error[store_locked]")
            && err.contains(&format!("pid {pid}"))
            && err.contains(&addr),
        "{err}"
    );
    // An import goes through the server, which commits and derives it.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    let lines: Vec<String> = (0..30)
        .map(|i| json!({"id": format!("e{i}"), "type": "live_watch", "ts": "2026-10-01T00:00:00Z",
                        "identities": {"douyin_open_id": format!("fan{i}")}, "props": {"room": "r1"}}).to_string())
        .collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    for run in 0..2 {
        let v =
            crate::helpers::stdout_json(siyu().arg("import").arg(&file).args(&flags).arg("--json"));
        let (accepted, duplicates) = if run == 0 { (30, 0) } else { (0, 30) };
        assert_eq!(
            (v["accepted"].as_u64(), v["duplicates"].as_u64()),
            (Some(accepted), Some(duplicates)),
            "{v}"
        );
        assert_eq!(v["tenant"], "acme");
    }
    let admin = admin_key.as_str();
    let stats: Value = reqwest::Client::new()
        .get(format!("{url}/api/stats"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["events"], 30, "{stats}");
    writes_go_through(&flags, &url, admin).await;
    // A tenant is created through the server, which serves it at once; a key rotated through
    // it stops at once.
    let beta = cli(&flags, &["tenant", "create", "beta"]);
    assert_eq!(beta["tenant"], "beta");
    let client = reqwest::Client::new();
    let ingest = async |key: &str| {
        client
            .post(format!("{url}/api/events"))
            .bearer_auth(key)
            .json(
                &json!([{"id": "b1", "type": "video_like", "ts": "2026-10-01T00:00:00Z",
                           "identities": {"douyin_open_id": "b"}}]),
            )
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(ingest(beta["write_key"].as_str().unwrap()).await, 200);
    // With two tenants, a write through the server names one, as it would without a server.
    let (code, err) = cli_fails(&flags, &["segment", "save", "x", "layer >= potential"]);
    assert!(
        code == Some(2) && err.contains("error[tenant_ambiguous]"),
        "{err}"
    );
    let (code, err) = cli_fails(
        &flags,
        &["tenant", "set", "nosuch", "--custom-domain", "public"],
    );
    assert!(
        code == Some(2) && err.contains("error[tenant_not_found]"),
        "{err}"
    );
    let saved = cli(
        &flags,
        &[
            "segment",
            "save",
            "x",
            "layer >= potential",
            "--tenant",
            "beta",
            "--json",
        ],
    );
    assert_eq!(saved["count"], 1, "{saved}");
    let rotated = cli(&flags, &["tenant", "rotate", "beta", "--key", "write"]);
    assert_eq!(rotated["tenant"], "beta");
    assert_eq!(
        ingest(beta["write_key"].as_str().unwrap()).await,
        401,
        "the old key stopped"
    );
    assert_eq!(ingest(rotated["write_key"].as_str().unwrap()).await, 200);
    let dup = siyu()
        .args(["tenant", "create", "beta"])
        .args(&flags)
        .output()
        .unwrap();
    assert!(!dup.status.success());
    assert!(
        String::from_utf8_lossy(&dup.stderr).contains("tenant_exists")
            || String::from_utf8_lossy(&dup.stderr).contains("already exists"),
        "{}",
        String::from_utf8_lossy(&dup.stderr)
    );
    // Reading beside it is fine.
    let out = siyu()
        .args(["tenant", "list"])
        .args(&flags)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    kill(&mut guard.0[0]);
    // The lock went with the process: a command that writes goes on now.
    cli(&flags, &["tenant", "create", "gamma"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_nodes_survive_the_death_of_one() {
    two_nodes_survive_the_death_of_one().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beside_a_sqlite_server_writes_go_through_it() {
    beside_a_server_writes_go_through_it().await
}

/// Runs a command that is expected to fail; its exit code and stderr.
fn cli_fails(flags: &[String], args: &[&str]) -> (Option<i32>, String) {
    let out = siyu().args(args).args(flags).output().unwrap();
    assert!(!out.status.success(), "siyu {args:?} succeeded");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a command that prints text; its stdout.
fn cli_text(flags: &[String], args: &[&str]) -> String {
    let out = siyu().args(args).args(flags).output().unwrap();
    assert!(
        out.status.success(),
        "siyu {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Segments, tags, identity decisions, tenant settings, layer rules and connectors, set with
/// the CLI beside the server (30 fans `fan0`…`fan29` in tenant acme, its only one): each is
/// answered as it would be locally, and seen at once through the server's API.
async fn writes_go_through(flags: &[String], url: &str, admin: &str) {
    let client = reqwest::Client::new();
    let get = async |path: &str| -> Value {
        client
            .get(format!("{url}{path}"))
            .bearer_auth(admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    };
    let names = async || -> Vec<String> {
        let list = get("/api/segments").await;
        list["segments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect()
    };

    // Segments: saved and deleted through the server, which keeps them live.
    let saved = cli(
        flags,
        &["segment", "save", "s", "layer >= potential", "--json"],
    );
    assert_eq!(
        (saved["name"].as_str(), saved["count"].as_u64()),
        (Some("s"), Some(30)),
        "{saved}"
    );
    assert_eq!(names().await, ["s"]);
    let text = cli_text(flags, &["segment", "save", "t", "layer >= potential"]);
    assert!(
        text.starts_with("saved segment ") && text.contains("\"t\": 30 fans now"),
        "{text}"
    );
    let (code, err) = cli_fails(flags, &["segment", "save", "s", "layer >= potential"]);
    assert!(
        code == Some(2) && err.contains("error[segment_exists]"),
        "{err}"
    );
    // A typo is refused here, before the server is asked.
    let (code, err) = cli_fails(flags, &["segment", "save", "u", "layer >= potentail"]);
    assert!(
        code == Some(2) && err.contains("error[invalid_segment]"),
        "{err}"
    );
    let deleted = cli(flags, &["segment", "delete", "t", "--json"]);
    assert!(deleted["deleted"].as_i64().is_some(), "{deleted}");
    assert_eq!(names().await, ["s"]);

    // Tags: by hand and automatic.
    let fan = async |open_id: &str| -> i64 {
        let v = get(&format!(
            "/api/fans/lookup?kind=douyin_open_id&value={open_id}"
        ))
        .await;
        v["fans"][0]["fan"].as_i64().unwrap()
    };
    let (f0, f1) = (fan("fan0").await, fan("fan1").await);
    let added = cli(
        flags,
        &["tag", "add", "vip", "--fan", &f0.to_string(), "--json"],
    );
    assert_eq!(added["changed"], 1, "{added}");
    let added = cli(
        flags,
        &[
            "tag",
            "add",
            "vip",
            "--expr",
            "layer >= potential",
            "--json",
        ],
    );
    assert_eq!(added["changed"], 29, "{added}");
    let removed = cli_text(flags, &["tag", "remove", "vip", "--fan", &f1.to_string()]);
    assert_eq!(removed, "\"vip\" removed from 1 fans\n");
    let tags = async |f: i64| get(&format!("/api/fans/{f}/tags")).await["tags"].clone();
    assert_eq!(tags(f0).await, json!(["vip"]));
    assert_eq!(tags(f1).await, json!([]));
    let auto = cli(
        flags,
        &["tag", "auto", "loyal", "layer >= potential", "--json"],
    );
    assert_eq!(auto["count"], 30, "{auto}");
    assert_eq!(names().await, ["s", "tag:loyal"]);

    // Identity decisions: a merge confirmed and undone, two fans kept apart for good.
    let (f2, f3, f4, f5) = (
        fan("fan2").await,
        fan("fan3").await,
        fan("fan4").await,
        fan("fan5").await,
    );
    let (a, b) = (f2.to_string(), f3.to_string());
    let decided = cli(flags, &["identity", "confirm", &a, &b, "--json"]);
    assert_eq!(decided, json!({"decision": "confirmed", "a": f2, "b": f3}));
    let kept = get(&format!("/api/fans/{f2}")).await["fan"]
        .as_i64()
        .unwrap();
    let absorbed = if kept == f2 { f3 } else { f2 };
    assert_eq!(
        get(&format!("/api/fans/{absorbed}")).await["fan"],
        kept,
        "one fan now"
    );
    let undone = cli_text(flags, &["identity", "undo", &absorbed.to_string()]);
    assert!(
        undone.starts_with(&format!("fan {absorbed} is split back out")),
        "{undone}"
    );
    assert_eq!(
        get(&format!("/api/fans/{absorbed}")).await["fan"],
        absorbed,
        "two fans again"
    );
    let (c, d) = (f4.to_string(), f5.to_string());
    let decided = cli_text(flags, &["identity", "distinct", &c, &d]);
    assert_eq!(decided, format!("fans {f4} and {f5}: distinct\n"));
    let (code, err) = cli_fails(flags, &["identity", "confirm", &c, &d]);
    assert!(
        code == Some(2) && err.contains("error[marked_distinct]"),
        "{err}"
    );

    // Tenant settings and layer rules.
    let set = cli_text(
        flags,
        &["tenant", "set", "acme", "--custom-domain", "commercial"],
    );
    assert_eq!(
        set,
        "tenant acme: custom events without a domain go to commercial\n"
    );
    assert_eq!(get("/api/tenant").await["custom_domain"], "commercial");
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("rules.toml");
    std::fs::write(&good, "[favorable]\nengagement = 20\n").unwrap();
    let rules = cli_text(flags, &["tenant", "rules", "acme", good.to_str().unwrap()]);
    assert_eq!(
        rules,
        "tenant acme: layer rules version 1 in force (engagement window 30 d, orders window 180 d)\n"
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[weights]\nvideo_like = 1\nbuy = 2\n").unwrap();
    let (code, err) = cli_fails(flags, &["tenant", "rules", "acme", bad.to_str().unwrap()]);
    assert!(
        code == Some(2)
            && err.contains(&format!(
                "error[invalid_rules]: {}: rules line 3",
                bad.display()
            ))
            && err.contains("the rules in force are unchanged"),
        "{err}"
    );
    let in_force = get("/api/rules").await;
    assert_eq!(
        (
            in_force["version"].as_i64(),
            in_force["favorable"]["engagement"].as_i64()
        ),
        (Some(1), Some(20)),
        "the good file is in force, the bad one changed nothing: {in_force}"
    );

    // Connectors: credentials travel to the server and are never printed.
    let douyin = cli(
        flags,
        &["connector", "douyin", "--client-secret", "s3cret-douyin"],
    );
    assert_eq!(douyin["client_secret_set"], true, "{douyin}");
    assert!(!douyin.to_string().contains("s3cret"), "{douyin}");
    assert_eq!(get("/api/connectors/douyin").await, douyin);
    // The server checks the settings (a page of 1–100 leads) as this command would.
    let base = "https://127.0.0.1:9";
    let mut args = vec![
        "connector",
        "oceanengine",
        "--advertiser-id",
        "42",
        "--access-token",
        "s3cret-token",
        "--base-url",
        base,
    ];
    let (code, err) = cli_fails(flags, &[&args[..], &["--page-size", "500"]].concat());
    assert!(
        code == Some(2) && err.contains("error[invalid_connector_setting]"),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
    assert_eq!(
        get("/api/connectors/oceanengine").await["access_token_set"],
        false
    );
    args.extend(["--page-size", "50"]);
    let oceanengine = cli(flags, &args);
    assert!(!oceanengine.to_string().contains("s3cret"), "{oceanengine}");
    let seen = get("/api/connectors/oceanengine").await;
    for v in [&oceanengine, &seen] {
        assert_eq!(
            (
                &v["advertiser_id"],
                &v["access_token_set"],
                &v["base_url"],
                &v["page_size"]
            ),
            (&json!("42"), &json!(true), &json!(base), &json!(50)),
            "{v}"
        );
    }
}

/// Runs `siyu serve` expecting it to refuse to start; its stderr.
fn refused_start(flags: &[String]) -> String {
    let out = siyu()
        .arg("serve")
        .args(flags)
        .args(["--addr", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "siyu serve started on a read-only store"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Takes the immutable attribute off a file again, whatever the test did.
struct Immutable(std::path::PathBuf);

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn sqlite_a_store_that_cannot_be_written_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let flags = vec!["--data".to_string(), data.display().to_string()];
    cli(&flags, &["tenant", "create", "acme"]);
    // Read-only even for root (the tests run as root, whom file modes do not stop).
    let db = data.join("siyu.db");
    let ok = std::process::Command::new("chattr")
        .arg("+i")
        .arg(&db)
        .status()
        .unwrap();
    assert!(
        ok.success(),
        "chattr +i failed: this test needs an ext2/3/4 or similar temp dir"
    );
    let _undo = Immutable(db);
    let err = refused_start(&flags);
    assert!(
        err.contains("error[store_read_only]") && err.contains("read-only"),
        "{err}"
    );
}

#[test]
fn postgres_a_read_only_database_is_refused_at_start() {
    let (location, _schema) = crate::helpers::fresh_location_blocking(Backend::Postgres);
    let flags = store_flags(&location);
    cli(&flags, &["tenant", "create", "acme"]);
    let Location::Postgres(url) = &location else {
        unreachable!()
    };
    // The session is read-only, as on a standby: the URL's options add the setting.
    let read_only = url.replace(
        "options=",
        "options=-c%20default_transaction_read_only%3Don%20",
    );
    assert_ne!(&read_only, url, "the test URL carries options");
    let err = refused_start(&["--database-url".into(), read_only]);
    assert!(
        err.contains("error[store_read_only]") && err.contains("read-only"),
        "{err}"
    );
}
