//! Connectors as a new user meets them: a local sender signs and posts Douyin's documented
//! deliveries (retried, out of order, with `content` as an object and as a string); a local
//! Ocean Engine lead API serves pages, checks the access token and records what it was asked;
//! the poller is stopped mid-window and resumes; an export of leads is imported.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha1::{Digest, Sha1};
use siyu_app::App;
use siyu_app::connectors::{self, OceanEngineChange};
use siyu_app::oceanengine::{
    Checkpoint, HttpLeadSource, LeadPoller, PollError, PollOptions, RunOptions, Step,
};
use siyu_app::targets::TargetPolicy;
use siyu_store::{Durability, Location, Store};

use crate::both;
use crate::cli::{json_of, run};
use crate::durability::{admin_get, siyu, start_server, terminate};
use crate::helpers::{
    Backend, TestApp, fresh_location, spawn_app, start_guarded, store_flags, test_safeguards,
};

pub(crate) const SECRET: &str = "dy-client-secret-0001";

// ---------------------------------------------------------------------------------------------
// Douyin

/// Douyin's side: signs `body` with the client secret the way the platform does.
pub(crate) fn signature(secret: &str, body: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(secret.as_bytes());
    h.update(body);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Posts one delivery as Douyin would: raw body, `Msg-Id`, `X-Douyin-Signature`.
async fn deliver(app: &TestApp, msg_id: &str, body: &str, sig: Option<&str>) -> (u16, Value) {
    deliver_to(app, "acme", msg_id, body, sig).await
}

/// [`deliver`] to the webhook of the tenant named `tenant`.
async fn deliver_to(
    app: &TestApp,
    tenant: &str,
    msg_id: &str,
    body: &str,
    sig: Option<&str>,
) -> (u16, Value) {
    let mut req = app
        .client
        .post(format!("{}/webhooks/douyin/{tenant}", app.base))
        .header("content-type", "application/json")
        .header("msg-id", msg_id)
        .body(body.to_string());
    if let Some(s) = sig {
        req = req.header("x-douyin-signature", s);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn deliver_signed(app: &TestApp, msg_id: &str, payload: &Value) -> (u16, Value) {
    let body = payload.to_string();
    let sig = signature(SECRET, body.as_bytes());
    deliver(app, msg_id, &body, Some(&sig)).await
}

async fn put(app: &TestApp, path: &str, body: &Value) -> (u16, Value) {
    app.admin_put(path, body).await
}

/// Every stored event of the only tenant, read from the store beside the server.
async fn stored_events(location: &Location) -> Vec<siyu_domain::Event> {
    let loc = location.clone();
    tokio::task::spawn_blocking(move || {
        let store = siyu_store::open(&loc, Durability::Full).unwrap();
        let tenant = store.tenants().unwrap()[0].id;
        let mut out = Vec::new();
        store
            .scan(tenant, 0, &mut |e| {
                out.push(e.event);
                Ok(())
            })
            .unwrap();
        out
    })
    .await
    .unwrap()
}

async fn douyin_deliveries_are_verified_mapped_and_stored_once(b: Backend) {
    let app = spawn_app(b).await;

    // Before a secret is set, nothing is accepted; the answer is the one a stranger gets for
    // a tenant that does not exist, or for a wrong signature (below): it names no tenant.
    let (s, not_configured) = deliver_signed(&app, "m0", &json!({"event": "im_receive_msg"})).await;
    assert_eq!(
        (s, not_configured["error"]["code"].as_str()),
        (401, Some("unauthorized")),
        "{not_configured}"
    );
    let body = json!({"event": "im_receive_msg"}).to_string();
    let sig = signature(SECRET, body.as_bytes());
    let (s, no_tenant) = deliver_to(&app, "nobody", "m0", &body, Some(&sig)).await;
    assert_eq!((s, &no_tenant), (401, &not_configured));

    // The operator sets the client secret; no answer ever shows it.
    let (s, v) = put(
        &app,
        "/api/connectors/douyin",
        &json!({"client_secret": SECRET}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["client_secret_set"], true);
    assert_eq!(v["webhook_path"], "/webhooks/douyin/acme");
    let (s, v) = app.get("/api/connectors/douyin").await;
    assert_eq!(s, 200);
    assert!(!v.to_string().contains(SECRET), "{v}");
    let r = app
        .client
        .put(format!("{}/api/connectors/douyin", app.base))
        .bearer_auth(&app.write_key)
        .json(&json!({"client_secret": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a write key cannot set credentials");
    let (s, v) = put(
        &app,
        "/api/connectors/douyin",
        &json!({"client_secret": ""}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str(), v["error"]["field"].as_str()),
        (
            400,
            Some("invalid_connector_setting"),
            Some("client_secret")
        )
    );

    // The platform verifies the URL first.
    let (s, v) = deliver_signed(
        &app,
        "v1",
        &json!({"event": "verify_webhook", "client_key": "awx", "content": {"challenge": 86017}}),
    )
    .await;
    assert_eq!((s, v), (200, json!({"challenge": 86017})));

    let fan = "_000QoUq3E7Rgzo9mHT5FvCBnH1QPsH5tOFQ";
    let brand = "_000Lw7ur9mb3Gr1YcQD7cRPC8rBdNRcc2yB";
    let enter = json!({"event": "im_enter_direct_msg", "client_key": "awx", "log_id": "L1",
        "from_user_id": fan, "to_user_id": brand,
        "content": {"conversation_short_id": "7012", "scene_type": 5, "create_time": 1_790_000_000_000i64,
                    "ad_info": json!({"ad_id": 1_700_000_001u64, "adv_id": 42, "creative_id": 9}).to_string()}});
    let first_message = json!({"event": "im_receive_msg", "client_key": "awx", "log_id": "L2",
        "from_user_id": fan, "to_user_id": brand,
        "content": {"conversation_short_id": "7012", "server_message_id": "s-1", "conversation_type": 1,
                    "message_type": "text", "text": "这款还有货吗", "create_time": 1_790_000_060_000i64}});
    // Douyin sometimes sends content as a string holding the object.
    let second_message = json!({"event": "im_receive_msg", "client_key": "awx", "log_id": "L3",
        "from_user_id": fan, "to_user_id": brand,
        "content": json!({"conversation_short_id": "7012", "server_message_id": "s-2",
                          "message_type": "text", "text": "怎么买", "create_time": 1_790_000_120_000i64}).to_string()});
    let reply = json!({"event": "im_send_msg", "from_user_id": brand, "to_user_id": fan,
        "content": {"conversation_short_id": "7012", "server_message_id": "s-3", "message_type": "text",
                    "text": "有的，点这里", "create_time": 1_790_000_180_000i64}});
    let join = json!({"event": "group_fans_event", "from_user_id": fan, "to_user_id": brand,
        "content": {"im_group_id": "7300000000000000777", "group_type": 1, "create_time": 1_790_000_240_000i64}});
    let unknown = json!({"event": "new_video_digg", "from_user_id": "_000other", "to_user_id": brand,
        "content": {"item_id": "@9VwK"}});

    // Out of order, and with retries (Douyin retries up to three times). The event id comes
    // from the signed body: its log_id, else the body's SHA-256.
    let sends = [
        ("m2", &first_message, false),
        ("m1", &enter, false),
        ("m3", &second_message, false),
        ("m2", &first_message, true),
        ("m4", &reply, false),
        ("m3", &second_message, true),
        ("m5", &join, false),
        ("m1", &enter, true),
        ("m6", &unknown, false),
        ("m2", &first_message, true),
    ];
    let mut ids = std::collections::HashMap::new();
    for (msg_id, payload, duplicate) in sends {
        let (s, v) = deliver_signed(&app, msg_id, payload).await;
        assert_eq!(s, 200, "{msg_id}: {v}");
        assert_eq!(v["duplicate"], duplicate, "{msg_id}: {v}");
        let id = v["event_id"].as_str().unwrap().to_string();
        match payload["log_id"].as_str() {
            Some(log_id) => assert_eq!(id, format!("douyin:{log_id}")),
            None => assert!(id.starts_with("douyin:sha256:"), "{id}"),
        }
        assert_eq!(
            ids.entry(msg_id).or_insert(id.clone()),
            &id,
            "a retry is the same event"
        );
    }
    // A captured delivery replayed under a new Msg-Id (the header is not signed) is the same
    // delivery, with or without a log_id.
    for (payload, first) in [(&first_message, "m2"), (&reply, "m4")] {
        let (s, v) = deliver_signed(&app, "replayed", payload).await;
        assert_eq!((s, v["duplicate"].as_bool()), (200, Some(true)), "{v}");
        assert_eq!(v["event_id"].as_str(), Some(ids[first].as_str()));
    }

    // Forged, unsigned and malformed deliveries are refused and store nothing.
    let body =
        json!({"event": "im_receive_msg", "from_user_id": fan, "content": {"text": "forged"}})
            .to_string();
    let forged = signature("not-the-secret", body.as_bytes());
    let (s, v) = deliver(&app, "f1", &body, Some(&forged)).await;
    assert_eq!(
        (s, &v),
        (401, &not_configured),
        "one answer for every stranger"
    );
    let (s, v) = deliver(&app, "f2", &body, None).await;
    assert_eq!((s, &v), (401, &not_configured));
    let tampered = body.replace("forged", "tampered");
    let (s, _) = deliver(
        &app,
        "f3",
        &tampered,
        Some(&signature(SECRET, body.as_bytes())),
    )
    .await;
    assert_eq!(s, 401, "the signature covers the raw body");
    let broken = "{\"event\": \"im_receive_msg\", ";
    let (s, v) = deliver(
        &app,
        "f4",
        broken,
        Some(&signature(SECRET, broken.as_bytes())),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_json"))
    );
    let no_fan = json!({"event": "im_receive_msg", "to_user_id": brand}).to_string();
    let (s, v) = deliver(
        &app,
        "f5",
        &no_fan,
        Some(&signature(SECRET, no_fan.as_bytes())),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str(), v["error"]["field"].as_str()),
        (400, Some("missing_identity"), Some("from_user_id"))
    );

    // Each stored once, mapped, attributed to the right fan.
    let stats = app.stats().await;
    assert_eq!(stats["events"], 6, "{stats}");
    assert_eq!(stats["by_type"]["private_message_in"], 2);
    assert_eq!(stats["by_type"]["private_message_out"], 1);
    assert_eq!(stats["by_type"]["x_im_enter"], 1);
    assert_eq!(stats["by_type"]["group_join"], 1);
    assert_eq!(stats["by_type"]["x_douyin_new_video_digg"], 1);
    let (s, v) = app
        .get(&format!("/api/fans/lookup?kind=douyin_open_id&value={fan}"))
        .await;
    assert_eq!(s, 200, "{v}");
    let fans = v["fans"].as_array().unwrap();
    assert_eq!(fans.len(), 1, "{v}");
    assert_eq!(
        fans[0]["events"], 5,
        "the fan's five events, the brand's reply included"
    );

    let events = stored_events(&app.location).await;
    let by_id = |msg_id: &str| {
        let e = events
            .iter()
            .find(|e| e.id.as_str() == ids[msg_id])
            .unwrap();
        assert_eq!(
            e.props["msg_id"], msg_id,
            "the first delivery's Msg-Id is kept"
        );
        e
    };
    let m = by_id("m3");
    assert_eq!(m.props["text"], "怎么买");
    assert_eq!(m.props["server_message_id"], "s-2");
    assert_eq!(m.ts, 1_790_000_120_000);
    let e = by_id("m1");
    assert_eq!(e.props["scene_type"], 5);
    assert_eq!(e.props["ad_info"]["ad_id"], 1_700_000_001u64);
    assert_eq!(by_id("m4").props["account_open_id"], brand);
    assert_eq!(by_id("m5").props["group_id"], "7300000000000000777");
    assert_eq!(by_id("m6").props["payload"]["content"]["item_id"], "@9VwK");
    app.stop().await;
}

async fn oceanengine_settings_over_http_never_show_the_token(b: Backend) {
    let app = spawn_app(b).await;
    let (s, v) = app.get("/api/connectors/oceanengine").await;
    assert_eq!((s, &v["access_token_set"]), (200, &json!(false)));
    let path = "/api/connectors/oceanengine";
    let (s, v) = put(&app, path, &json!({"access_token": "t"})).await;
    assert_eq!(
        (s, v["error"]["code"].as_str(), v["error"]["field"].as_str()),
        (
            400,
            Some("invalid_connector_setting"),
            Some("advertiser_id")
        )
    );
    let (s, v) = put(
        &app,
        path,
        &json!({"advertiser_id": "12x", "access_token": "t"}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (400, Some("advertiser_id"))
    );
    let (s, v) = put(&app, path, &json!({"advertiser_id": 1, "token": "t"})).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("unknown_field"))
    );
    let (s, v) = put(
        &app,
        path,
        &json!({"advertiser_id": 1, "access_token": "t", "start": "yesterday"}),
    )
    .await;
    assert_eq!((s, v["error"]["field"].as_str()), (400, Some("start")));

    let (s, v) = put(
        &app,
        path,
        &json!({"advertiser_id": 1769665409798152u64, "access_token": TOKEN,
                "base_url": "http://127.0.0.1:9/", "start": START, "page_size": 50}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["advertiser_id"], "1769665409798152");
    assert_eq!(v["base_url"], "http://127.0.0.1:9");
    assert_eq!(v["page_size"], 50);
    assert_eq!(v["access_token_set"], true);
    assert!(!v.to_string().contains(TOKEN), "{v}");
    let start_ms = siyu_domain::time::parse_rfc3339(START).unwrap();
    let start = siyu_domain::time::format_rfc3339(start_ms);
    assert_eq!(v["position"]["done_until"], start.as_str());
    // Rotating the token keeps the rest, and the position.
    let (s, v) = put(&app, path, &json!({"access_token": "rotated"})).await;
    assert_eq!((s, &v["page_size"]), (200, &json!(50)));
    let (_, v) = app.get(path).await;
    assert!(!v.to_string().contains("rotated"), "{v}");
    assert_eq!(v["position"]["done_until"], start.as_str());
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// A local Ocean Engine lead API

/// What the local lead API was asked.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    at: Instant,
    query: Vec<(String, String)>,
    pub(crate) token: Option<String>,
}

impl Seen {
    fn get(&self, k: &str) -> &str {
        self.query
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }
}

/// `GET /open_api/2/tools/clue/get/` over leads held in memory, with the real envelope.
pub(crate) struct LeadApi {
    pub(crate) base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

pub(crate) const TOKEN: &str = "oe-access-token-1";

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?'));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl LeadApi {
    /// Serves `leads`, taking `delay` per request; the first `failures` requests fail
    /// (alternately an API error code and HTTP 500).
    pub(crate) fn start(leads: Vec<Value>, failures: u32, delay: Duration) -> LeadApi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(Mutex::new(failures));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, f, st) = (seen.clone(), failures.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(conn) = conn {
                    std::thread::sleep(delay);
                    answer(conn, &leads, &s, &f);
                }
            }
        });
        LeadApi { base, seen, stop }
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for LeadApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.base.trim_start_matches("http://"));
    }
}

fn answer(mut conn: TcpStream, leads: &[Value], seen: &Mutex<Vec<Seen>>, failures: &Mutex<u32>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut token = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("access-token")
        {
            token = Some(v.trim().to_string());
        }
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query: Vec<(String, String)> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect();
    let s = Seen {
        at: Instant::now(),
        query,
        token: token.clone(),
    };
    seen.lock().unwrap().push(s.clone());

    let (status, body) = {
        let mut f = failures.lock().unwrap();
        if path != "/open_api/2/tools/clue/get/" {
            (
                "404 Not Found",
                json!({"code": 404, "message": "no such path"}),
            )
        } else if *f > 0 {
            *f -= 1;
            if *f % 2 == 1 {
                (
                    "500 Internal Server Error",
                    json!({"code": 50000, "message": "busy"}),
                )
            } else {
                (
                    "200 OK",
                    json!({"code": 40100, "message": "request too frequent", "request_id": "r"}),
                )
            }
        } else if token.as_deref() != Some(TOKEN) {
            (
                "200 OK",
                json!({"code": 40102, "message": "access token invalid", "request_id": "r"}),
            )
        } else {
            let (from, to) = (s.get("start_time"), s.get("end_time"));
            let page: usize = s.get("page").parse().unwrap_or(1);
            let size: usize = s.get("page_size").parse().unwrap_or(10);
            assert_eq!(s.get("advertiser_ids"), "[1769665409798152]");
            // The API's times are "YYYY-MM-DD HH:MM:SS", which sorts as text.
            let matching: Vec<&Value> = leads
                .iter()
                .filter(|l| {
                    let t = l["create_time"].as_str().unwrap();
                    t >= from && t <= to
                })
                .collect();
            let total_page = matching.len().div_ceil(size);
            let list: Vec<&Value> = matching
                .iter()
                .skip((page - 1) * size)
                .take(size)
                .copied()
                .collect();
            (
                "200 OK",
                json!({"code": 0, "message": "OK", "request_id": "r",
                       "data": {"list": list, "page_info": {"page": page, "page_size": size,
                                 "total_number": matching.len(), "total_page": total_page}}}),
            )
        }
    };
    let body = body.to_string();
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.flush();
    let mut rest = [0u8; 0];
    let _ = conn.read(&mut rest);
}

/// `n` leads, one every `step_s` seconds from 2026-10-01 00:00:00 Beijing; leads 7 and 8 are
/// one person who wrote her phone two ways.
fn leads(n: usize, step_s: i64) -> Vec<Value> {
    leads_from(siyu_domain::time::parse_rfc3339(START).unwrap(), n, step_s)
}

pub(crate) fn leads_from(t0: i64, n: usize, step_s: i64) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let phone = match i {
                7 => "138 0013 8000".to_string(),
                8 => "+86 13800138000".to_string(),
                _ => format!("139{:08}", i),
            };
            json!({
                "clue_id": format!("73{:017}", i), "telephone": phone, "name": format!("客户{i}"),
                "advertiser_id": "1769665409798152", "ad_id": 1_700_000_000u64 + (i % 3) as u64,
                "ad_name": "秋季新品", "promotion_id": 7_290_000_000_000_000_000u64 + i as u64,
                "creative_id": "c-9", "clue_source": 1, "clue_type": 0, "province_name": "浙江",
                "city_name": "杭州", "remark": "",
                "create_time": siyu_domain::oceanengine::format_time(t0 + i as i64 * step_s * 1000),
            })
        })
        .collect()
}

const START: &str = "2026-10-01T00:00:00+08:00";

fn open_app(location: &Location) -> Arc<App> {
    let store = siyu_store::open(location, Durability::Full).unwrap();
    Arc::new(start_guarded(store, test_safeguards()))
}

fn set_up_poller(store: &dyn Store, tenant: i64, base: &str, token: &str, page_size: u32) {
    connectors::set_oceanengine(
        store,
        &test_safeguards(),
        tenant,
        OceanEngineChange {
            advertiser_id: Some("1769665409798152".into()),
            access_token: Some(token.into()),
            base_url: Some(base.into()),
            start: siyu_domain::time::parse_rfc3339(START),
            page_size: Some(page_size),
        },
        siyu_domain::time::now_ms(),
    )
    .unwrap()
    .unwrap();
}

fn lead_ids(store: &dyn Store, tenant: i64) -> Vec<String> {
    let mut ids = Vec::new();
    store
        .scan(tenant, 0, &mut |e| {
            ids.push(e.event.id.as_str().to_string());
            Ok(())
        })
        .unwrap();
    ids
}

/// The end of the test period: late enough that every lead is due.
fn now() -> i64 {
    siyu_domain::time::parse_rfc3339("2026-10-05T00:00:00+08:00").unwrap()
}

fn poller_resumes_after_a_restart_mid_window(b: Backend) {
    let all = leads(250, 900); // 250 leads 15 minutes apart: 2.6 days
    let api = LeadApi::start(all.clone(), 0, Duration::ZERO);
    let (location, _dir) = crate::helpers::fresh_location_blocking(b);
    let tenant = {
        let store = siyu_store::open(&location, Durability::Full).unwrap();
        siyu_app::tenants::create(&*store, &siyu_app::TenantName::parse("acme").unwrap()).unwrap();
        let t = store.tenants().unwrap()[0].id;
        set_up_poller(&*store, t, &api.base, "wrong-token", 40);
        t
    };
    let options = PollOptions::default();

    // A wrong token: refused, nothing stored, nothing checkpointed.
    let app = open_app(&location);
    let mut poller = LeadPoller::new(
        app.clone(),
        tenant,
        Box::new(HttpLeadSource::new(TargetPolicy::ALLOW_PRIVATE)),
        options,
    );
    assert!(matches!(
        poller.step(now()),
        Err(PollError::Api { code: 40102, .. })
    ));
    let (_, position) = connectors::oceanengine(&**app.store(), app.safeguards(), tenant)
        .unwrap()
        .unwrap();
    assert_eq!(position.unwrap()["window_end"], Value::Null);
    connectors::set_oceanengine(
        &**app.store(),
        app.safeguards(),
        tenant,
        OceanEngineChange {
            access_token: Some(TOKEN.into()),
            ..Default::default()
        },
        siyu_domain::time::now_ms(),
    )
    .unwrap()
    .unwrap();

    // Two pages of the first day's window, then the process stops mid-window.
    let mut checkpoints = Vec::new();
    for expected_page in [1, 2] {
        match poller.step(now()).unwrap() {
            Step::Page {
                page,
                leads,
                accepted,
                total_page,
                next,
                ..
            } => {
                assert_eq!((page, leads, accepted), (expected_page, 40, 40));
                assert_eq!(total_page, 3, "96 leads in the first day, 40 a page");
                checkpoints.push(next);
            }
            Step::Idle => panic!("not caught up yet"),
        }
    }
    assert_eq!(checkpoints[1].next_page, 3);
    drop(poller);
    drop(app);

    // Restart. Make it as if the process died after committing page 2 but before its
    // checkpoint: page 2 is fetched again and stores nothing twice.
    let app = open_app(&location);
    app.store()
        .set_connector_state(
            tenant,
            "oceanengine",
            &serde_json::to_string(&checkpoints[0]).unwrap(),
        )
        .unwrap();
    let mut poller = LeadPoller::new(
        app.clone(),
        tenant,
        Box::new(HttpLeadSource::new(TargetPolicy::ALLOW_PRIVATE)),
        options,
    );
    let mut steps = 0;
    let mut duplicates = 0;
    loop {
        match poller.step(now()).unwrap() {
            Step::Idle => break,
            Step::Page {
                duplicates: d,
                rejected,
                ..
            } => {
                assert!(rejected.is_empty(), "{rejected:?}");
                duplicates += d;
                steps += 1;
                assert!(steps < 50, "the poller must come to rest");
            }
        }
    }
    // Page 2 again, all duplicates; and a lead at the very second where one window ends and
    // the next begins is asked for twice (the API's end_time includes that second).
    assert_eq!(duplicates, 40 + 2);
    let ids = lead_ids(&**app.store(), tenant);
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), 250, "every lead stored");
    assert_eq!(unique.len(), 250, "none twice");

    // The last checkpoint is at the end of the last window; a later step finds nothing new.
    let (_, position) = connectors::oceanengine(&**app.store(), app.safeguards(), tenant)
        .unwrap()
        .unwrap();
    let cp: Checkpoint = serde_json::from_value(position.unwrap()).unwrap();
    assert_eq!((cp.window_end, cp.next_page), (None, 1));
    assert!(cp.done_until <= now() - options.lag_ms);
    assert_eq!(poller.step(now()).unwrap(), Step::Idle);

    // What the API saw: the token, whole-second Beijing times, pages in order.
    let seen = api.seen();
    assert!(seen[1..].iter().all(|s| s.token.as_deref() == Some(TOKEN)));
    assert_eq!(seen[1].get("start_time"), "2026-10-01 00:00:00");
    assert_eq!(seen[1].get("end_time"), "2026-10-02 00:00:00");
    assert_eq!(seen[1].get("page_size"), "40");
    let pages: Vec<&str> = seen[1..4].iter().map(|s| s.get("page")).collect();
    assert_eq!(
        pages,
        ["1", "2", "2"],
        "page 2 asked again after the restart"
    );

    // One person's two forms: one fan, two leads, attributed to their ads.
    let fans = app.lookup(tenant, "phone", "13800138000").unwrap();
    assert_eq!(fans.len(), 1);
    assert_eq!(fans[0].events, 2);
    let stored = app.store().event_at(tenant, 1).unwrap().unwrap().event;
    assert_eq!(stored.ty.to_string(), "lead_form");
    assert_eq!(stored.props["ad_name"], "秋季新品");
    assert_eq!(stored.props["channel"], "ad");
    assert!(stored.props["promotion_id"].is_string());
}

async fn poller_restart_test(b: Backend) {
    tokio::task::spawn_blocking(move || poller_resumes_after_a_restart_mid_window(b))
        .await
        .unwrap();
}

fn poller_backs_off_on_errors_then_catches_up(b: Backend) {
    let api = LeadApi::start(leads(30, 600), 3, Duration::ZERO);
    let (location, _dir) = crate::helpers::fresh_location_blocking(b);
    let store = siyu_store::open(&location, Durability::Full).unwrap();
    siyu_app::tenants::create(&*store, &siyu_app::TenantName::parse("acme").unwrap()).unwrap();
    let tenant = store.tenants().unwrap()[0].id;
    set_up_poller(&*store, tenant, &api.base, TOKEN, 100);
    drop(store);
    let app = open_app(&location);
    let (stop, stopped) = std::sync::mpsc::channel();
    let runner = {
        let app = app.clone();
        std::thread::spawn(move || {
            let source = || {
                Box::new(HttpLeadSource::new(TargetPolicy::ALLOW_PRIVATE))
                    as Box<dyn siyu_app::oceanengine::LeadSource>
            };
            siyu_app::oceanengine::run_until_stopped(
                app,
                &source,
                RunOptions {
                    interval: Duration::from_millis(100),
                    initial_backoff: Duration::from_millis(50),
                    max_backoff: Duration::from_millis(400),
                    poll: PollOptions::default(),
                },
                stopped,
            )
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.store().event_count(tenant).unwrap() < 30 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(stop);
    runner.join().unwrap();
    assert_eq!(app.store().event_count(tenant).unwrap(), 30);
    let seen = api.seen();
    assert!(
        seen.len() >= 4,
        "three failures, then success: {}",
        seen.len()
    );
    let gaps: Vec<Duration> = seen.windows(2).take(3).map(|w| w[1].at - w[0].at).collect();
    assert!(gaps[0] >= Duration::from_millis(50), "{gaps:?}");
    assert!(
        gaps[1] >= Duration::from_millis(100),
        "backoff doubles: {gaps:?}"
    );
    assert!(
        gaps[2] >= Duration::from_millis(200),
        "backoff doubles: {gaps:?}"
    );
    // The failed requests were the same page asked again.
    assert!(seen[..4].iter().all(|s| s.get("page") == "1"));
}

async fn poller_backoff_test(b: Backend) {
    tokio::task::spawn_blocking(move || poller_backs_off_on_errors_then_catches_up(b))
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// As a user: the CLI and `siyu serve`

async fn an_export_of_leads_makes_one_fan_per_person(b: Backend) {
    let (location, _d) = fresh_location(b);
    let flags = store_flags(&location);
    json_of(&run(&["tenant", "create", "acme"], &flags));
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("leads.jsonl");
    std::fs::write(
        &jsonl,
        [
            json!({"clue_id": "7300000000000000001", "telephone": "138 0013 8000", "name": "王女士",
                   "advertiser_id": 1769665409798152u64, "ad_id": 1001, "ad_name": "秋季新品",
                   "promotion_id": 7290000000000000001u64, "creative_id": 5001, "clue_source": 1,
                   "clue_type": 0, "province_name": "浙江", "city_name": "杭州",
                   "create_time": "2026-10-01 12:00:00", "remark": "想要试用装"}),
            json!({"clue_id": "7300000000000000002", "telephone": "+86 13800138000", "name": "王",
                   "advertiser_id": 1769665409798152u64, "ad_id": 1002, "ad_name": "双十一预热",
                   "create_time": "2026-10-03 09:30:00"}),
            json!({"name": "匿名", "weixin": "", "create_time": "2026-10-03 10:00:00"}),
        ]
        .iter()
        .map(|v| v.to_string() + "\n")
        .collect::<String>(),
    )
    .unwrap();
    let path = jsonl.display().to_string();
    let v = json_of(&run(
        &["import", "--format", "oceanengine", &path, "--json"],
        &flags,
    ));
    assert_eq!(
        (v["accepted"].as_u64(), v["rejected"].as_u64()),
        (Some(2), Some(1)),
        "{v}"
    );
    let rejected = std::fs::read_to_string(format!("{path}.rejected.jsonl")).unwrap();
    let line: Value = serde_json::from_str(rejected.lines().next().unwrap()).unwrap();
    assert_eq!(line["line"], 3);
    assert_eq!(line["code"], "missing_identity");
    assert!(
        line["message"]
            .as_str()
            .unwrap()
            .contains("no usable identity")
    );

    // The same leads as a CSV export: nothing new.
    let csv = dir.path().join("leads.csv");
    std::fs::write(
        &csv,
        "clue_id,telephone,name,ad_id,create_time\n7300000000000000001,13800138000,王女士,1001,2026-10-01 12:00:00\n7300000000000000002,8613800138000,王,1002,2026-10-03 09:30:00\n",
    )
    .unwrap();
    let v = json_of(&run(
        &[
            "import",
            "--format",
            "oceanengine",
            &csv.display().to_string(),
            "--json",
        ],
        &flags,
    ));
    assert_eq!(
        (v["accepted"].as_u64(), v["duplicates"].as_u64()),
        (Some(0), Some(2))
    );

    let v = json_of(&run(
        &[
            "fan",
            "lookup",
            "--kind",
            "phone",
            "--value",
            "138-0013-8000",
            "--json",
        ],
        &flags,
    ));
    let fans = v["fans"].as_array().unwrap_or_else(|| panic!("{v}"));
    assert_eq!(fans.len(), 1, "{v}");
    assert_eq!(fans[0]["events"], 2);
    let v = json_of(&run(&["report", "dedup", "--json"], &flags));
    assert!(v.to_string().contains("\"ad\""), "{v}");
}

/// Waits until the server has `at_least` events; returns how many it has.
pub(crate) async fn wait_for_events(url: &str, admin: &str, at_least: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let events = admin_get(url, "/api/stats", admin).await["events"]
            .as_u64()
            .unwrap();
        if events >= at_least || Instant::now() > deadline {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn serve_polls_leads_and_survives_kill_9_mid_window(b: Backend) {
    // 30 leads an hour apart, from two days ago: a first window of five pages of five, and a
    // second. The lead API takes 400 ms a request, so the server can be killed mid-window.
    let hour = 3_600_000;
    let t0 = (siyu_domain::time::now_ms() - 2 * siyu_domain::time::MS_PER_DAY) / hour * hour;
    let api = LeadApi::start(leads_from(t0, 30, 3600), 0, Duration::from_millis(400));
    let (location, _d) = fresh_location(b);
    let flags = store_flags(&location);
    let keys = json_of(&run(&["tenant", "create", "acme"], &flags));
    let start = siyu_domain::time::format_rfc3339(t0);
    let v = json_of(
        &siyu()
            .args([
                "connector",
                "oceanengine",
                "--advertiser-id",
                "1769665409798152",
            ])
            .args([
                "--base-url",
                &api.base,
                "--start",
                &start,
                "--page-size",
                "5",
            ])
            .args(&flags)
            .env("SIYU_OCEANENGINE_ACCESS_TOKEN", TOKEN)
            .output()
            .unwrap(),
    );
    assert_eq!(v["access_token_set"], true);
    assert!(!v.to_string().contains(TOKEN), "{v}");
    let v = json_of(&run(
        &["connector", "douyin", "--client-secret", SECRET],
        &flags,
    ));
    assert_eq!(v["client_secret_set"], true);
    assert!(!v.to_string().contains(SECRET));

    let serve_flags = [
        &flags[..],
        &["--poll-interval", "1", "--poll-lag", "1"].map(String::from)[..],
    ]
    .concat();
    let admin = keys["admin_key"].as_str().unwrap();
    let (mut server, url) = start_server(&serve_flags);
    // Two pages are in (so the first is checkpointed): SIGKILL, mid-window.
    let at_kill = wait_for_events(&url, admin, 10).await;
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(
        (10..30).contains(&at_kill),
        "killed mid-window with {at_kill} leads stored"
    );

    let (server, url) = start_server(&serve_flags);
    assert_eq!(
        wait_for_events(&url, admin, 30).await,
        30,
        "every lead, once"
    );
    let v = admin_get(&url, "/api/connectors/oceanengine", admin).await;
    assert_eq!(v["advertiser_id"], "1769665409798152");
    assert!(!v.to_string().contains(TOKEN), "{v}");
    let done_until = v["position"]["done_until"].as_str().unwrap();
    assert!(
        siyu_domain::time::parse_rfc3339(done_until).unwrap() > t0,
        "{v}"
    );
    terminate(server);

    // The restart resumed where the checkpoint was: no page of the first window was asked for
    // more than twice (the one in flight at the kill), and the first page only once.
    let seen = api.seen();
    let first_window = siyu_domain::oceanengine::format_time(t0);
    let asked = |page: &str| {
        seen.iter()
            .filter(|s| s.get("start_time") == first_window && s.get("page") == page)
            .count()
    };
    assert_eq!(asked("1"), 1);
    assert!((1..=5).all(|p| (1..=2).contains(&asked(&p.to_string()))));
}

both!(
    douyin_deliveries_are_verified_mapped_and_stored_once,
    oceanengine_settings_over_http_never_show_the_token,
    poller_restart_test,
    poller_backoff_test,
    an_export_of_leads_makes_one_fan_per_person,
    serve_polls_leads_and_survives_kill_9_mid_window,
);
