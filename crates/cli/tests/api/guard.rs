//! What a client gets before any handler runs (`siyu-server`'s `guard` and `serve`): no key,
//! no body read; a declared body over the limit, a 413 before it is sent; half-sent headers and
//! stalled bodies, closed or answered 408 after their timeouts; a key over its rate, a 429
//! until the (injected) clock moves; connections over the limit, kept waiting. Raw TCP where a
//! well-behaved client could not send what is being tested.
//!
//! Timeouts here are shortened to fractions of a second; a test waits for what the server does
//! (an answer, a close), with a generous bound only so that a broken server fails the test
//! instead of hanging it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use siyu_domain::time::{Clock, ManualClock, SystemClock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::both;
use crate::helpers::{Backend, TestApp, event, spawn_app, spawn_app_on};

/// How long a test waits for the server at most before it fails.
const BOUND: Duration = Duration::from_secs(10);

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .expect("connect")
}

/// One answer read off the connection: status, head (lower case), JSON body. `None` if the
/// server closed the connection first.
async fn read_answer(s: &mut TcpStream) -> Option<(u16, String, Value)> {
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let status = head.split(' ').nth(1)?.parse().ok()?;
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0);
        while buf.len() < head_end + length {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = serde_json::from_slice(&buf[head_end..head_end + length]).unwrap_or(Value::Null);
        Some((status, head, body))
    };
    tokio::time::timeout(BOUND, read)
        .await
        .expect("the server answers or closes within the bound")
}

/// Waits for the server to close the connection; true if it did (EOF or reset) without sending
/// anything more.
async fn closed(s: &mut TcpStream) -> bool {
    let mut chunk = [0u8; 64];
    match tokio::time::timeout(BOUND, s.read(&mut chunk)).await {
        Ok(Ok(0) | Err(_)) => true,
        Ok(Ok(_)) => false,
        Err(_) => panic!("the connection is still open after {BOUND:?}"),
    }
}

fn post_head(path: &str, auth: Option<&str>, length: usize) -> String {
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    format!(
        "POST {path} HTTP/1.1\r\nHost: siyu\r\nContent-Type: application/json\r\n{auth}Content-Length: {length}\r\n\r\n"
    )
}

async fn an_unauthenticated_body_is_never_read(b: Backend) {
    let app = spawn_app(b).await;
    // 8 MB announced, none sent: the answer cannot wait for the body.
    let mut answers = Vec::new();
    for auth in [
        None,
        Some("Bearer not-a-key"),
        Some("Basic !!!"),
        Some("Token x"),
    ] {
        let mut s = connect(&app).await;
        s.write_all(post_head("/api/events", auth, 8_000_000).as_bytes())
            .await
            .unwrap();
        let (status, _, body) = read_answer(&mut s).await.expect("an answer");
        assert_eq!(status, 401, "{auth:?}: {body}");
        assert!(closed(&mut s).await, "{auth:?}: the body is not drained");
        answers.push(body);
    }
    // The same answer whatever is wrong with the key, on every route under /api/.
    assert_eq!(answers[0]["error"]["code"], "unauthorized");
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
    for path in ["/api/stats", "/api/segments", "/api/no-such-route"] {
        let r = app
            .client
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert_eq!(r.json::<Value>().await.unwrap(), answers[0], "{path}");
    }
    // Open routes need no key.
    for path in ["/healthz", "/metrics", "/openapi.json"] {
        let r = app
            .client
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    assert_eq!(app.event_count().await, 0);
    app.stop().await;
}

async fn a_declared_body_over_the_limit_is_refused_before_it_is_sent(b: Backend) {
    let app = spawn_app(b).await;
    let bearer = format!("Bearer {}", app.write_key);
    // The native limit is 8 MiB; 9 MB announced, none sent.
    let mut s = connect(&app).await;
    s.write_all(post_head("/api/events", Some(&bearer), 9_000_000).as_bytes())
        .await
        .unwrap();
    let (status, _, body) = read_answer(&mut s).await.expect("an answer");
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large");
    assert!(closed(&mut s).await);
    drop(s);
    // Segment's routes take the key from the body too, so their body is read without one, but
    // only within Segment's 500 KB: over it, refused before it is sent.
    let mut s = connect(&app).await;
    s.write_all(post_head("/v1/batch", None, 600_000).as_bytes())
        .await
        .unwrap();
    let (status, _, body) = read_answer(&mut s).await.expect("an answer");
    assert_eq!(status, 413, "{body}");
    assert_eq!(
        body["code"], "payload_too_large",
        "the Segment shape: {body}"
    );
    // A chunked body has no length to refuse up front: it is counted as it comes, and refused
    // at the limit, not at its end (this one never ends).
    let s = connect(&app).await;
    let (mut rx, mut tx) = s.into_split();
    let head = format!(
        "POST /api/events HTTP/1.1\r\nHost: siyu\r\nContent-Type: application/json\r\n\
         Authorization: {bearer}\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let sender = tokio::spawn(async move {
        tx.write_all(head.as_bytes()).await?;
        let chunk = [
            format!("{:x}\r\n", 1 << 20).into_bytes(),
            vec![b' '; 1 << 20],
            b"\r\n".to_vec(),
        ]
        .concat();
        loop {
            tx.write_all(&chunk).await?;
        }
        #[allow(unreachable_code)]
        std::io::Result::Ok(())
    });
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(BOUND, rx.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed without an answer");
        head.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    // The sender stops when the server closes the connection.
    assert!(sender.await.unwrap().is_err());
    app.stop().await;
}

fn short_timeouts() -> siyu_server::Settings {
    siyu_server::Settings {
        header_timeout: Duration::from_millis(400),
        body_timeout: Duration::from_millis(400),
        ..Default::default()
    }
}

async fn slow_headers_and_idle_connections_are_closed(b: Backend) {
    let settings = short_timeouts();
    let app = spawn_app_on(b, settings, Arc::new(SystemClock)).await;
    // Headers begun, never finished.
    let mut half = connect(&app).await;
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: siyu\r\nX-Slow: ")
        .await
        .unwrap();
    // Nothing sent at all.
    let mut silent = connect(&app).await;
    // A request answered, then nothing: the kept-alive connection is idle.
    let mut idle = connect(&app).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: siyu\r\n\r\n")
        .await
        .unwrap();
    let (status, head, _) = read_answer(&mut idle).await.expect("an answer");
    assert_eq!(status, 200);
    assert!(!head.contains("connection: close"), "{head}");
    let start = Instant::now();
    for (what, s) in [
        ("half-sent headers", &mut half),
        ("no request", &mut silent),
        ("idle keep-alive", &mut idle),
    ] {
        assert!(closed(s).await, "{what}: closed without an answer");
    }
    // All three were closed by the header timeout, not by the bound.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    // The server still serves.
    assert_eq!(app.get("/healthz").await.0, 200);
    app.stop().await;
}

async fn a_stalled_body_is_answered_408(b: Backend) {
    let app = spawn_app_on(b, short_timeouts(), Arc::new(SystemClock)).await;
    let bearer = format!("Bearer {}", app.write_key);
    let mut s = connect(&app).await;
    s.write_all(post_head("/api/events", Some(&bearer), 100).as_bytes())
        .await
        .unwrap();
    s.write_all(b"[{\"id\": ").await.unwrap();
    let (status, _, body) = read_answer(&mut s).await.expect("an answer");
    assert_eq!(status, 408, "{body}");
    assert_eq!(body["error"]["code"], "request_timeout");
    assert!(closed(&mut s).await);
    drop(s);
    // On /v1/*, in the Segment shape.
    let mut s = connect(&app).await;
    s.write_all(post_head("/v1/track", None, 100).as_bytes())
        .await
        .unwrap();
    let (status, _, body) = read_answer(&mut s).await.expect("an answer");
    assert_eq!(status, 408, "{body}");
    assert_eq!(body["code"], "request_timeout");
    drop(s);
    assert_eq!(app.event_count().await, 0);
    app.stop().await;
}

async fn a_key_over_its_rate_waits_for_the_clock(b: Backend) {
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let settings = siyu_server::Settings {
        rate: Some(siyu_server::Rate {
            per_second: 0.5,
            burst: 2,
        }),
        ..Default::default()
    };
    let app = spawn_app_on(b, settings, clock.clone()).await;
    let stats = || async {
        let r = app
            .client
            .get(format!("{}/api/stats", app.base))
            .bearer_auth(&app.admin_key)
            .send()
            .await
            .unwrap();
        let retry = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        (r.status().as_u16(), retry, r.json::<Value>().await.unwrap())
    };
    assert_eq!(stats().await.0, 200);
    assert_eq!(stats().await.0, 200);
    let (status, retry, body) = stats().await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(
        retry.as_deref(),
        Some("2"),
        "half a token a second: 2 s for one"
    );
    // Requests without a valid key take no token from anyone, and get no bucket.
    for _ in 0..5 {
        let r = app
            .client
            .get(format!("{}/api/stats", app.base))
            .bearer_auth("not-a-key")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    // The write key has its own bucket; on /v1/* a key in the headers counts the same.
    let (status, _) = app
        .post_events(&json!([event("e1", "follow", "13800138000")]))
        .await;
    assert_eq!(status, 200);
    let track = json!({"type": "track", "event": "x", "userId": "u1", "messageId": "m1"});
    let segment = || async {
        app.client
            .post(format!("{}/v1/track", app.base))
            .basic_auth(&app.write_key, Some(""))
            .json(&track)
            .send()
            .await
            .unwrap()
    };
    assert_eq!(segment().await.status(), 200);
    let r = segment().await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited", "the Segment shape: {body}");
    // One second is half a token: still refused. Two seconds: one request.
    clock.advance(1_000);
    assert_eq!(stats().await.0, 429);
    clock.advance(1_000);
    assert_eq!(stats().await.0, 200);
    assert_eq!(stats().await.0, 429);
    app.stop().await;
}

async fn connections_over_the_limit_wait_for_a_free_one(b: Backend) {
    let settings = siyu_server::Settings {
        max_connections: 2,
        header_timeout: Duration::from_secs(60),
        ..Default::default()
    };
    let app = spawn_app_on(b, settings, Arc::new(SystemClock)).await;
    let request = b"GET /healthz HTTP/1.1\r\nHost: siyu\r\n\r\n";
    // Two connections, each answered once: both are accepted and held open (keep-alive).
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = connect(&app).await;
        s.write_all(request).await.unwrap();
        assert_eq!(read_answer(&mut s).await.expect("an answer").0, 200);
        held.push(s);
    }
    // A third connects (the kernel's backlog takes it) but is not served...
    let mut third = connect(&app).await;
    third.write_all(request).await.unwrap();
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(300), third.read(&mut byte)).await;
    assert!(early.is_err(), "served beyond the limit: {early:?}");
    // ...until one of the two closes.
    drop(held.pop());
    let (status, _, _) = read_answer(&mut third).await.expect("an answer");
    assert_eq!(status, 200);
    drop((held, third));
    app.stop().await;
}

async fn segment_clients_may_still_send_the_key_in_the_body(b: Backend) {
    let app = spawn_app(b).await;
    let track = |key: &str| {
        json!({"writeKey": key, "type": "track", "event": "Signed Up", "userId": "u-1",
               "messageId": format!("m-{key}")})
    };
    let r = app
        .client
        .post(format!("{}/v1/track", app.base))
        .json(&track(&app.write_key))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(app.event_count().await, 1);
    let r = app
        .client
        .post(format!("{}/v1/track", app.base))
        .json(&track("not-a-key"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "unauthorized", "{body}");
    assert_eq!(app.event_count().await, 1);
    app.stop().await;
}

/// The guard's answers are in the document (Schemathesis holds every answer to it): 429 with
/// `Retry-After` wherever a key is checked, 408 and 413 wherever there is a body.
async fn the_document_lists_the_guards_answers(b: Backend) {
    let app = spawn_app(b).await;
    let doc: Value = app
        .client
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = &op["responses"];
            if path.starts_with("/api/") || path.starts_with("/v1/") {
                for status in ["401", "429"] {
                    assert!(
                        responses.get(status).is_some(),
                        "{method} {path}: no {status}"
                    );
                }
                assert_eq!(
                    responses["429"]["headers"]["Retry-After"]["schema"]["type"], "integer",
                    "{method} {path}"
                );
                checked += 1;
            }
            if op.get("requestBody").is_some() {
                for status in ["408", "413"] {
                    assert!(
                        responses.get(status).is_some(),
                        "{method} {path}: no {status}"
                    );
                }
            }
        }
    }
    assert!(checked > 40, "{checked}");
    app.stop().await;
}

both!(
    an_unauthenticated_body_is_never_read,
    a_declared_body_over_the_limit_is_refused_before_it_is_sent,
    slow_headers_and_idle_connections_are_closed,
    a_stalled_body_is_answered_408,
    a_key_over_its_rate_waits_for_the_clock,
    connections_over_the_limit_wait_for_a_free_one,
    segment_clients_may_still_send_the_key_in_the_body,
    the_document_lists_the_guards_answers,
);
