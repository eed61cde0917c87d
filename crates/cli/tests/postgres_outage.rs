//! Nothing lost, nothing twice when PostgreSQL goes away under a running `siyu serve`: a client
//! posts a fixed set of batches (follows, unfollows, orders, comments, subscriptions; two saved
//! segments) over HTTP; PostgreSQL is stopped for ten seconds in the middle of the run and,
//! later, restarted between two requests.
//!
//! While it is down the server answers every write and health check at once with 503 `store_unavailable`
//! (no hang, no panic); the client sends the failed batch again, with the same event ids, until
//! it is stored. At the end the stored layer transitions and segment entries and exits equal,
//! row for row, those of a server on a fresh schema that had no outage, and every event id is
//! stored once.
//!
//! A test binary of its own: cargo runs test binaries one after another, so no other test of
//! this workspace uses PostgreSQL while this one stops it. It only runs with
//! `SIYU_TEST_DATABASE_URL` set (as in CI), since it stops the machine's PostgreSQL; see
//! `siyu_store::testing::Cluster`. `SIYU_TEST_OUTAGE_SECS` shortens the outage.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use siyu_store::testing::{Cluster, fresh_postgres};
use siyu_store::{EventLog, PostgresStore, Store, Tenants};

/// Every answer during the outage must come within this.
const ANSWERS_WITHIN: Duration = Duration::from_secs(5);

/// How long the client waits before sending a failed batch again.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// The batch before which PostgreSQL is stopped, and the one before which it is restarted.
const STOP_BEFORE: usize = 3;
const RESTART_BEFORE: usize = 5;

/// How long PostgreSQL stays down: ten seconds, or `SIYU_TEST_OUTAGE_SECS`.
fn outage_length() -> Duration {
    let secs = std::env::var("SIYU_TEST_OUTAGE_SECS")
        .ok()
        .map(|s| {
            s.parse()
                .expect("SIYU_TEST_OUTAGE_SECS is a number of seconds")
        })
        .unwrap_or(10);
    Duration::from_secs(secs)
}

/// Eight batches of six events, one per fan, minutes apart and ten days ago: far from any
/// window's edge, so that two runs a few seconds apart derive the same.
fn batches(base: i64) -> Vec<Value> {
    const TYPES: [&str; 11] = [
        "follow",
        "video_comment",
        "order",
        "subscribe",
        "video_share",
        "unfollow",
        "follow",
        "order",
        "video_comment",
        "coupon_claim",
        "unfollow",
    ];
    (0..8)
        .map(|b| {
            let events: Vec<Value> = (0..6)
                .map(|i| {
                    let ty = if b == 0 {
                        "follow"
                    } else {
                        TYPES[(b * 3 + i * 5) % TYPES.len()]
                    };
                    let ts = base + ((b * 6 + i) as i64) * 60_000;
                    let mut e = json!({
                        "id": format!("b{b}-e{i}"),
                        "type": ty,
                        "ts": siyu_domain::time::format_rfc3339(ts),
                        "identities": {"douyin_open_id": format!("f{i}")},
                    });
                    if ty == "order" {
                        e["props"] = json!({"order_id": format!("o-{b}-{i}"), "amount": 99.5});
                    }
                    e
                })
                .collect();
            Value::Array(events)
        })
        .collect()
}

fn siyu() -> Command {
    Command::new(env!("CARGO_BIN_EXE_siyu"))
}

/// A running `siyu serve`; killed if the test fails before it is stopped.
struct Server(Option<Child>);

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A `siyu serve` on port 0 whose log goes to `log`.
fn serve(database: &str, log: &Path) -> (Server, String) {
    let mut child = siyu()
        .args(["serve", "--database-url", database, "--addr", "127.0.0.1:0"])
        .env("SIYU_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("spawn siyu serve");
    let stdout = child.stdout.take().unwrap();
    let server = Server(Some(child));
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read banner");
    let url = line
        .trim()
        .strip_prefix("siyu listening on ")
        .unwrap_or_else(|| panic!("unexpected banner {line:?}"))
        .to_string();
    (server, url)
}

/// SIGTERM, and a clean exit.
fn terminate(mut server: Server) {
    let mut child = server.0.take().unwrap();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "siyu serve exited with {exit} on SIGTERM");
}

/// The stored triggers, in the order they were stored, without ids and wall-clock times (the
/// clock is not injected yet, so two runs read it at different instants).
fn stored(store: &dyn Store, t: i64) -> Vec<String> {
    let mut out: Vec<String> = store
        .transitions(t, None, 0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|r| {
            format!(
                "layer fan {} {:?}->{} cause {} seq {:?} event {:?}",
                r.fan, r.from, r.to, r.cause, r.seq, r.event_id
            )
        })
        .collect();
    out.extend(
        store
            .segment_changes(t, None, None, 0, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|c| {
                format!(
                    "segment {} fan {} entered {} cause {} seq {:?} event {:?}",
                    c.segment, c.fan, c.entered, c.cause, c.seq, c.event_id
                )
            }),
    );
    out
}

/// A client of one server.
struct Client {
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
    url: String,
    write: String,
    admin: String,
}

impl Client {
    /// Sends a request and returns the status, the body and how long the answer took.
    fn call(
        &self,
        method: &str,
        path: &str,
        key: &str,
        body: Option<&Value>,
    ) -> (u16, Value, Duration) {
        let started = Instant::now();
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.url))
            .timeout(Duration::from_secs(30));
        if !key.is_empty() {
            req = req.bearer_auth(key);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        self.rt.block_on(async {
            let r = req
                .send()
                .await
                .unwrap_or_else(|e| panic!("{method} {path}: no answer: {e}"));
            let status = r.status().as_u16();
            (
                status,
                r.json().await.unwrap_or(Value::Null),
                started.elapsed(),
            )
        })
    }

    fn post_events(&self, batch: &Value) -> (u16, Value, Duration) {
        self.call("POST", "/api/events", &self.write, Some(batch))
    }

    /// Polls `/healthz` until it answers 200; panics after a minute.
    fn wait_healthy(&self) {
        let started = Instant::now();
        loop {
            let (status, body, _) = self.call("GET", "/healthz", "", None);
            if status == 200 {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "/healthz still answers {status} {body}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Asserts that an answer during the outage is a prompt 503 `store_unavailable`.
fn unavailable(what: &str, (status, body, took): (u16, Value, Duration)) {
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("store_unavailable")),
        "{what} with PostgreSQL stopped: {body}"
    );
    assert!(took < ANSWERS_WITHIN, "{what} took {took:?} to answer");
}

/// What a run left in the store.
struct Run {
    triggers: Vec<String>,
    events: u64,
    /// Requests answered while PostgreSQL was down.
    refused: usize,
}

/// Runs the batches through a `siyu serve` on a fresh schema; with `cluster`, PostgreSQL is
/// stopped before batch [`STOP_BEFORE`] and restarted before batch [`RESTART_BEFORE`].
fn run(batches: &[Value], cluster: Option<&Cluster>) -> Run {
    let schema = fresh_postgres();
    let dir = tempfile::tempdir().unwrap();
    let out = siyu()
        .args(["tenant", "create", "acme", "--database-url", &schema.url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys: Value = serde_json::from_slice(&out.stdout).unwrap();
    let log = dir.path().join("serve.log");
    let (server, url) = serve(&schema.url, &log);
    let client = Client {
        http: reqwest::Client::new(),
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
        url,
        write: keys["write_key"].as_str().unwrap().into(),
        admin: keys["admin_key"].as_str().unwrap().into(),
    };
    for (name, expr) in [("followers", "follows"), ("fond", "layer >= favorable")] {
        let body = json!({"name": name, "expr": expr});
        let (status, answer, _) = client.call("POST", "/api/segments", &client.admin, Some(&body));
        assert_eq!(status, 201, "{answer}");
    }

    let mut refused = 0;
    for (n, batch) in batches.iter().enumerate() {
        if let Some(cluster) = cluster {
            if n == STOP_BEFORE {
                let outage = cluster.stop();
                // A client sends its batch again and again while the store is away, and the
                // health check says so. Reads answer from memory as long as the key is in the
                // server's cache (a few seconds), then are refused like the rest.
                loop {
                    unavailable("a batch", client.post_events(batch));
                    let (status, body, took) =
                        client.call("GET", "/api/stats", &client.admin, None);
                    if status == 200 {
                        assert_eq!(
                            body["events"],
                            json!(STOP_BEFORE * batch.as_array().map_or(0, Vec::len)),
                            "{body}"
                        );
                    } else {
                        unavailable("stats", (status, body, took));
                        refused += 1;
                    }
                    unavailable("/healthz", client.call("GET", "/healthz", "", None));
                    refused += 2;
                    if outage.elapsed() >= outage_length() {
                        break;
                    }
                    std::thread::sleep(RETRY_PAUSE);
                }
                let down = outage.end();
                eprintln!("PostgreSQL was down for {down:?}; {refused} requests refused");
                client.wait_healthy();
            }
            if n == RESTART_BEFORE {
                cluster.restart();
            }
        }
        // The batch a failed attempt left unsent goes again, with the same ids; the first
        // request after PostgreSQL is back is stored.
        let (status, answer, _) = client.post_events(batch);
        assert_eq!(status, 200, "batch {n}: {answer}");
        assert_eq!(
            (answer["accepted"].as_u64(), answer["duplicates"].as_u64()),
            (Some(6), Some(0)),
            "batch {n}: nothing of a failed attempt was stored: {answer}"
        );
    }
    terminate(server);
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(!log.contains("panicked"), "siyu serve panicked:\n{log}");

    let store = PostgresStore::open(&schema.url).unwrap();
    let tenant = store.tenants().unwrap()[0].id;
    let run = Run {
        triggers: stored(&store, tenant),
        events: store.event_count(tenant).unwrap(),
        refused,
    };
    drop(store);
    run
}

#[test]
fn a_server_keeps_every_trigger_once_across_a_postgres_outage() {
    let Some(cluster) = Cluster::from_env() else {
        return;
    };
    let started = Instant::now();
    let base = siyu_domain::time::now_ms() / 60_000 * 60_000 - 10 * 86_400_000;
    let batches = batches(base);
    let sent: std::collections::HashSet<&str> = batches
        .iter()
        .flat_map(|b| b.as_array().unwrap())
        .map(|e| e["id"].as_str().unwrap())
        .collect();

    let expected = run(&batches, None);
    assert!(
        expected.triggers.iter().any(|r| r.starts_with("layer"))
            && expected.triggers.iter().any(|r| r.contains("entered true"))
            && expected
                .triggers
                .iter()
                .any(|r| r.contains("entered false")),
        "the batches make layer transitions, segment entries and exits: {:#?}",
        expected.triggers
    );
    let got = run(&batches, Some(&cluster));
    assert!(got.refused > 0);
    assert_eq!(got.events, sent.len() as u64, "every event once");
    assert_eq!(expected.events, sent.len() as u64);
    assert_eq!(
        got.triggers, expected.triggers,
        "the triggers after an outage and a restart are those of a run without"
    );
    eprintln!(
        "{} events, {} triggers; both runs in {:?}",
        got.events,
        got.triggers.len(),
        started.elapsed()
    );
}
