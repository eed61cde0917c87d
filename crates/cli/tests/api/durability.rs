//! Nothing lost, nothing twice: a server killed with SIGKILL while clients are sending loses
//! no acknowledged event, and re-sending after the restart stores nothing twice. SIGTERM drains
//! and exits cleanly.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::both;
use crate::helpers::{Backend, fresh_location, store_flags};

/// The binary, with the tests' secret key and private targets allowed (the local lead API
/// listens on http://127.0.0.1): given to the child, never set in this process.
pub fn siyu() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_siyu"));
    c.env("SIYU_SECRET_KEY", crate::helpers::TEST_SECRET_KEY)
        .env("SIYU_ALLOW_PRIVATE_TARGETS", "1");
    c
}

/// Starts `siyu serve` on port 0 and returns the child and its base URL.
pub fn start_server(flags: &[String]) -> (Child, String) {
    let mut child = siyu()
        .arg("serve")
        .args(flags)
        .args(["--addr", "127.0.0.1:0"])
        .env("SIYU_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn siyu serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("read banner");
    let url = line
        .trim()
        .strip_prefix("siyu listening on ")
        .unwrap_or_else(|| panic!("unexpected banner {line:?}"))
        .to_string();
    (child, url)
}

/// Creates the tenant `acme` through the CLI: its write and admin keys.
pub fn create_tenant(flags: &[String]) -> (String, String) {
    let v = crate::helpers::stdout_json(siyu().args(["tenant", "create", "acme"]).args(flags));
    (
        v["write_key"].as_str().unwrap().into(),
        v["admin_key"].as_str().unwrap().into(),
    )
}

fn batch(client: usize, n: usize) -> Value {
    let events: Vec<Value> = (0..50)
        .map(|i| {
            json!({"id": format!("c{client}-b{n}-{i}"), "type": "video_like",
                   "ts": "2026-10-01T00:00:00Z",
                   "identities": {"douyin_open_id": format!("o{client}-{}", i % 7)}})
        })
        .collect();
    Value::Array(events)
}

async fn send(client: &reqwest::Client, url: &str, key: &str, body: &Value) -> Option<Value> {
    let r = client
        .post(format!("{url}/api/events"))
        .bearer_auth(key)
        .json(body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

async fn stats(url: &str, key: &str) -> Value {
    admin_get(url, "/api/stats", key).await
}

/// GETs `path` with `key` and returns the JSON answer.
pub async fn admin_get(url: &str, path: &str, key: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{url}{path}"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn kill_9_loses_no_acknowledged_event(b: Backend) {
    let (location, _dir) = fresh_location(b);
    let flags = store_flags(&location);
    let (write, admin) = create_tenant(&flags);
    let (mut server, url) = start_server(&flags);

    // Three clients send batches as fast as they can; every acknowledged batch is recorded.
    let acked: Arc<Mutex<Vec<(usize, usize)>>> = Arc::default();
    let sent: Arc<Mutex<Vec<(usize, usize)>>> = Arc::default();
    let mut tasks = Vec::new();
    for c in 0..3 {
        let (acked, sent, url, key) = (acked.clone(), sent.clone(), url.clone(), write.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            for n in 0.. {
                sent.lock().unwrap().push((c, n));
                match send(&client, &url, &key, &batch(c, n)).await {
                    Some(v) if v["accepted"] == 50 => acked.lock().unwrap().push((c, n)),
                    Some(v) => panic!("unexpected answer {v}"),
                    None => break, // the server is gone
                }
            }
        }));
    }
    let started = Instant::now();
    while acked.lock().unwrap().len() < 30 && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill().unwrap(); // SIGKILL: no chance to flush or drain
    server.wait().unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let sent = sent.lock().unwrap().clone();
    assert!(
        acked.len() >= 30,
        "only {} batches acknowledged",
        acked.len()
    );

    let (server, url) = start_server(&flags);
    let s = stats(&url, &admin).await;
    assert!(
        s["events"].as_u64().unwrap() >= 50 * acked.len() as u64,
        "{s} after {} acknowledged batches",
        acked.len()
    );
    // Every acknowledged event is there: re-sending stores nothing.
    let client = reqwest::Client::new();
    for (c, n) in &acked {
        let v = send(&client, &url, &write, &batch(*c, *n)).await.unwrap();
        assert_eq!(
            (v["accepted"].as_u64(), v["duplicates"].as_u64()),
            (Some(0), Some(50)),
            "batch {c}/{n}"
        );
    }
    // Re-sending what was in flight completes the log exactly once.
    for (c, n) in &sent {
        send(&client, &url, &write, &batch(*c, *n)).await.unwrap();
    }
    let s = stats(&url, &admin).await;
    assert_eq!(s["events"].as_u64().unwrap(), 50 * sent.len() as u64, "{s}");
    assert_eq!(s["fans"].as_u64().unwrap(), 21, "3 clients × 7 open ids");

    // SIGTERM: a clean exit.
    terminate(server);
}

/// Sends SIGTERM and checks that `siyu serve` drains and exits cleanly.
pub fn terminate(mut server: Child) {
    let status = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = server.wait().unwrap();
    assert!(exit.success(), "siyu serve exited with {exit} on SIGTERM");
}

both!(kill_9_loses_no_acknowledged_event);
