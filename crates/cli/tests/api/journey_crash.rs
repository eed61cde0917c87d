//! The journeys' crash guarantee, end to end: `siyu serve` killed with SIGKILL while follows
//! are coming in, runs are moving and webhook sends are in flight, then restarted on the same
//! store. Afterwards no step was skipped, none was done twice, no timer was lost, and the
//! channel saw a repeated request only with the same idempotency key and byte-identical body,
//! and only a few of them (the rows in flight at the kill).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::both;
use crate::durability::{create_tenant, start_server};
use crate::helpers::{Backend, fresh_location, store_flags};

/// Follows, one per fan.
const N: usize = 600;
/// Follows per ingest request.
const BATCH: usize = 10;
/// The webhook lane's concurrency (set explicitly; it is also the default).
const CONCURRENCY: usize = 16;
const SECRET: &str = "whsec-crash-test-0001";
const JOURNEY: &str = "crash";

/// A tag, a branch on it, a send, a timer, a second send, a second tag, an exit.
const DEFINITION: &str = r#"name = "crash"
trigger = { event = "follow" }

[[steps]]
id = "t1"
type = "tag"
tag = "crash_welcomed"

[[steps]]
id = "check"
type = "branch"
if = 'tag("crash_welcomed")'
then = "hello"
else = "out"

[[steps]]
id = "hello"
type = "send"
channel = "webhook"
text = "欢迎关注 {{fan_id}}"

[[steps]]
id = "later"
type = "wait"
for = "1s"

[[steps]]
id = "again"
type = "send"
channel = "webhook"
text = "还在吗 {{fan_id}}"

[[steps]]
id = "t2"
type = "tag"
tag = "crash_greeted"

[[steps]]
id = "out"
type = "exit"
"#;

// ---------------------------------------------------------------------------------------------
// The server, killed on drop

/// `siyu serve` as a child process; killed (SIGKILL) and reaped when dropped, so a failing
/// test leaves no server behind.
struct Server {
    child: Option<Child>,
    url: String,
}

impl Server {
    fn start(flags: &[String]) -> Server {
        let (child, url) = start_server(flags);
        Server {
            child: Some(child),
            url,
        }
    }

    /// SIGKILL: no chance to flush, drain or settle anything.
    fn kill_9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL siyu serve");
            c.wait().expect("reap siyu serve");
        }
    }

    /// SIGTERM, and a clean exit.
    fn terminate(mut self) {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = child.wait().unwrap();
        assert!(exit.success(), "siyu serve exited with {exit} on SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The webhook receiver

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Got {
    key: Option<String>,
    signature_ok: bool,
    body: Vec<u8>,
}

/// A local webhook: HTTP/1.1 with keep-alive, a thread per connection, 200 to every request
/// whose signature is right (401 otherwise), 20 ms slow on every 7th request so that sends are
/// in flight at the kill. Records every request.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Got>>>,
    stop: Arc<AtomicBool>,
    addr: std::net::SocketAddr,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicUsize::new(0));
        {
            let (got, stop) = (got.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    let (got, count) = (got.clone(), count.clone());
                    std::thread::spawn(move || serve_connection(conn, &got, &count));
                }
            });
        }
        Receiver {
            url: format!("http://{addr}/hooks/siyu"),
            got,
            stop,
            addr,
        }
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    fn distinct_keys(&self) -> usize {
        let got = self.got.lock().unwrap();
        got.iter()
            .filter_map(|g| g.key.as_deref())
            .collect::<HashSet<_>>()
            .len()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
    }
}

/// Serves one connection's requests until it closes.
fn serve_connection(conn: TcpStream, got: &Mutex<Vec<Got>>, count: &AtomicUsize) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
    let mut writer = match conn.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers: Vec<(String, String)> = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" || h == "\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let len: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let signature_ok = header("x-siyu-signature")
            .is_some_and(|s| s == siyu_app::channels::sign(SECRET.as_bytes(), &body));
        got.lock().unwrap().push(Got {
            key: header("idempotency-key"),
            signature_ok,
            body,
        });
        if count.fetch_add(1, Ordering::SeqCst) % 7 == 6 {
            std::thread::sleep(Duration::from_millis(20));
        }
        let close = header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));
        let answer = if signature_ok {
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}"
        } else {
            "HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n"
        };
        if writer.write_all(answer.as_bytes()).is_err() || writer.flush().is_err() || close {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The API

/// One admin or write request; the status and the answer (`Null` when not JSON).
async fn call(
    method: &str,
    url: &str,
    key: &str,
    body: Option<(&str, Vec<u8>)>,
) -> Option<(u16, Value)> {
    let mut req = reqwest::Client::new()
        .request(method.parse().unwrap(), url)
        .bearer_auth(key)
        .timeout(Duration::from_secs(10));
    if let Some((ct, bytes)) = body {
        req = req.header("content-type", ct).body(bytes);
    }
    let r = req.send().await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().await.unwrap_or(Value::Null)))
}

async fn put_json(server: &Server, path: &str, key: &str, body: Value) -> (u16, Value) {
    let url = format!("{}{path}", server.url);
    let body = Some(("application/json", body.to_string().into_bytes()));
    call("PUT", &url, key, body).await.expect("PUT")
}

async fn get_json(server: &Server, path: &str, key: &str) -> Value {
    let url = format!("{}{path}", server.url);
    let (status, v) = call("GET", &url, key, None).await.expect("GET");
    assert_eq!(status, 200, "GET {path}: {v}");
    v
}

/// The follows of ingest batch `n`: fans `crash-{i}`, a minute ago.
fn follows(n: usize, ts: &str) -> Value {
    Value::Array(
        (n * BATCH..(n + 1) * BATCH)
            .map(|i| {
                json!({"id": format!("crash-follow-{i}"), "type": "follow", "ts": ts,
                       "identities": {"douyin_open_id": format!("crash-{i}")}})
            })
            .collect(),
    )
}

/// Sends a batch; `true` when the server acknowledged every event of it (stored now or before).
async fn ingest(client: &reqwest::Client, url: &str, key: &str, body: &Value) -> bool {
    let Ok(r) = client
        .post(format!("{url}/api/events"))
        .bearer_auth(key)
        .json(body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
    else {
        return false;
    };
    if !r.status().is_success() {
        return false;
    }
    let Ok(v) = r.json::<Value>().await else {
        return false;
    };
    let stored = v["accepted"].as_u64().unwrap_or(0) + v["duplicates"].as_u64().unwrap_or(0);
    assert_eq!(stored, BATCH as u64, "an ingest answer: {v}");
    true
}

/// A step of the report by id.
fn step<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == id))
        .unwrap_or_else(|| panic!("no step {id} in {report}"))
}

/// Every send seen by the receiver and settled as delivered, every run completed. (The tag
/// steps' rows go through the internal lane `siyu.tags`, which the report does not count:
/// the fans' tags are looked at apart.)
fn finished(report: &Value, keys: usize) -> bool {
    let n = N as u64;
    keys >= 2 * N
        && report["runs"]["completed"].as_u64() == Some(n)
        && ["hello", "again"]
            .iter()
            .all(|s| step(report, s)["delivered"].as_u64() == Some(n))
}

// ---------------------------------------------------------------------------------------------
// The test

async fn kill_9_mid_journey_skips_nothing_and_does_nothing_twice(b: Backend) {
    let receiver = Receiver::start();
    let (location, _dir) = fresh_location(b);
    let flags = store_flags(&location);
    let (write, admin) = create_tenant(&flags);
    let mut server = Server::start(&flags);

    let (status, v) = put_json(
        &server,
        "/api/channels/webhook",
        &admin,
        json!({"url": receiver.url, "secret": SECRET, "concurrency": CONCURRENCY}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    // The server runs on the wall clock: no quiet hours, no cap, whatever the hour.
    let (status, v) = put_json(
        &server,
        "/api/journeys/policy",
        &admin,
        json!({"quiet_start": "00:00", "quiet_end": "00:00", "daily_cap": null}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = call(
        "POST",
        &format!("{}/api/journeys", server.url),
        &admin,
        Some(("application/toml", DEFINITION.as_bytes().to_vec())),
    )
    .await
    .expect("apply");
    assert_eq!(status, 201, "{v}");

    // One client sends the follows in batches, a little paced so the kill lands mid-stream;
    // it stops at the first batch the server does not acknowledge.
    let ts = siyu_domain::time::format_rfc3339(siyu_domain::time::now_ms() - 60_000);
    let batches = N / BATCH;
    let acked: Arc<Mutex<BTreeSet<usize>>> = Arc::default();
    let client = {
        let (acked, url, key, ts) = (acked.clone(), server.url.clone(), write.clone(), ts.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            for n in 0..batches {
                if !ingest(&client, &url, &key, &follows(n, &ts)).await {
                    break; // the server is gone
                }
                acked.lock().unwrap().insert(n);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    // About a third acknowledged, and the webhook busy: kill -9.
    let started = Instant::now();
    while (acked.lock().unwrap().len() < batches / 3 || receiver.got().is_empty())
        && started.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    server.kill_9();
    let at_kill = (acked.lock().unwrap().len(), receiver.got().len());
    client.await.unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(
        at_kill.0 >= batches / 3 && at_kill.1 > 0,
        "the kill came too early: {at_kill:?}"
    );
    assert!(
        acked.len() < batches,
        "every batch was acknowledged before the kill: nothing was in flight"
    );
    eprintln!(
        "{b:?}: killed with {} of {batches} batches acknowledged and {} webhook requests received",
        acked.len(),
        at_kill.1
    );

    // Restart on the same store; send again every batch not acknowledged (the same ids).
    let server = Server::start(&flags);
    let client = reqwest::Client::new();
    for n in (0..batches).filter(|n| !acked.contains(n)) {
        assert!(
            ingest(&client, &server.url, &write, &follows(n, &ts)).await,
            "batch {n} after the restart"
        );
    }

    // Wait for every run to finish: polled, with a deadline.
    let deadline = Instant::now() + Duration::from_secs(180);
    let report = loop {
        let report = get_json(&server, &format!("/api/journeys/{JOURNEY}/report"), &admin).await;
        if finished(&report, receiver.distinct_keys()) {
            break report;
        }
        assert!(
            Instant::now() < deadline,
            "not finished in time: {} distinct keys of {}; report {report}",
            receiver.distinct_keys(),
            2 * N
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // What the channel saw: per key, the same body every time; per fan, the two steps once.
    let got = receiver.got();
    assert!(
        got.iter().all(|g| g.signature_ok),
        "a request with a bad signature"
    );
    let mut by_key: BTreeMap<String, Vec<&Got>> = BTreeMap::new();
    for g in &got {
        let key = g.key.clone().expect("every request has an Idempotency-Key");
        by_key.entry(key).or_default().push(g);
    }
    let mut by_fan: BTreeMap<i64, BTreeMap<String, String>> = BTreeMap::new();
    let mut repeated = Vec::new();
    for (key, reqs) in &by_key {
        let first = &reqs[0].body;
        assert!(
            reqs.iter().all(|r| &r.body == first),
            "key {key}: {} requests with different bodies",
            reqs.len()
        );
        if reqs.len() > 1 {
            repeated.push((key.clone(), reqs.len()));
        }
        let body: Value = serde_json::from_slice(first).expect("a JSON body");
        assert_eq!(body["idempotency_key"], key.as_str(), "{body}");
        assert_eq!(body["journey"], JOURNEY, "{body}");
        let (run, sid) = (
            body["run"].as_i64().unwrap(),
            body["step"].as_str().unwrap(),
        );
        assert!(
            key.ends_with(&format!("-{run}-{sid}")),
            "key {key} of run {run}, step {sid}"
        );
        let fan = body["fan_id"].as_i64().expect("fan_id");
        let text = body["text"].as_str().unwrap();
        assert!(text.ends_with(&format!(" {fan}")), "{text} for fan {fan}");
        let prev = by_fan
            .entry(fan)
            .or_default()
            .insert(sid.to_string(), key.clone());
        assert!(prev.is_none(), "fan {fan}: step {sid} under two keys");
    }
    assert_eq!(by_key.len(), 2 * N, "distinct idempotency keys");
    assert_eq!(by_fan.len(), N, "fans reached");
    for (fan, steps) in &by_fan {
        assert_eq!(
            steps.keys().map(String::as_str).collect::<Vec<_>>(),
            ["again", "hello"],
            "fan {fan}"
        );
        let runs: BTreeSet<&str> = steps
            .values()
            .map(|k| k.rsplit_once('-').unwrap().0)
            .collect();
        assert_eq!(runs.len(), 1, "fan {fan}: both sends of one run: {steps:?}");
    }
    // A repeat is a row that had been taken and not yet settled at the kill. The lane delivers
    // in rounds of its concurrency and settles each round before it starts the next, so that
    // is at most one round: `CONCURRENCY` requests. (The bound allows twice that; a repeat
    // count near it would mean rows answered well before the kill were sent again.)
    let repeats = got.len() - by_key.len();
    eprintln!(
        "{b:?}: {} requests, {} distinct keys, {repeats} repeats: {repeated:?}",
        got.len(),
        by_key.len()
    );
    assert!(
        repeats <= 2 * CONCURRENCY,
        "{repeats} repeated requests: {repeated:?}"
    );

    // The report: every step entered once per fan, every send sent and delivered once.
    let n = N as u64;
    assert_eq!(report["runs"]["entered"], n, "{report}");
    assert_eq!(report["runs"]["completed"], n, "{report}");
    assert_eq!(report["runs"]["waiting"], 0, "{report}");
    assert_eq!(report["runs"]["held"], 0, "{report}");
    for id in ["t1", "check", "hello", "later", "again", "t2"] {
        let s = step(&report, id);
        assert_eq!(s["entered"], n, "step {id}: {s}");
        assert_eq!(s["waiting"], 0, "step {id}: {s}");
        assert_eq!(s["failed"], 0, "step {id}: {s}");
        assert_eq!(s["pending"], 0, "step {id}: {s}");
        assert_eq!(s["skipped"], json!({}), "step {id}: {s}");
    }
    for id in ["hello", "again"] {
        let s = step(&report, id);
        assert_eq!(
            (s["sent"].as_u64(), s["delivered"].as_u64()),
            (Some(n), Some(n)),
            "step {id}: {s}"
        );
    }

    // Each fan has both tags (applied by the tags lane: polled), each added exactly once.
    for fan in by_fan.keys() {
        let path = format!("/api/fans/{fan}/tags");
        let h = loop {
            let h = get_json(&server, &path, &admin).await;
            let tags = h["tags"].as_array().cloned().unwrap_or_default();
            if ["crash_welcomed", "crash_greeted"]
                .iter()
                .all(|t| tags.iter().any(|x| x == t))
            {
                break h;
            }
            assert!(
                Instant::now() < deadline,
                "fan {fan}: tags not applied in time: {h}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        for tag in ["crash_welcomed", "crash_greeted"] {
            let added = h["history"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["tag"] == tag && e["change"] == "added")
                .count();
            assert_eq!(added, 1, "fan {fan}, tag {tag}: {h}");
        }
    }

    server.terminate();
}

both!(kill_9_mid_journey_skips_nothing_and_does_nothing_twice);
