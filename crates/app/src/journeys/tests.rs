//! The journey workers driven step by step on a SQLite store with live engines, one manual
//! clock, and a local webhook server that records what it got.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use siyu_domain::time::ManualClock;
use siyu_store::{Durability, SqliteStore, Store, TenantId};

use super::outbox::OutboxWorker;
use super::worker::JourneyWorker;
use crate::targets::TargetPolicy;
use crate::{App, EngineMode, Safeguards};

/// 2026-12-01T10:00:00+08:00: outside quiet hours in Asia/Shanghai.
const T0: i64 = 1_796_090_400_000;

/// One request the local server got.
#[derive(Debug, Clone)]
struct Seen {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A webhook receiver: answers each request with the next scripted status (then 200s).
struct Sink {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Sink {
    fn start(script: Vec<(u16, &'static str)>) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        std::thread::spawn(move || {
            let mut script = script.into_iter();
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (status, extra) = script.next().unwrap_or((200, ""));
                serve(conn, status, extra, &record);
            }
        });
        Sink { url, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(mut conn: std::net::TcpStream, status: u16, extra: &str, seen: &Mutex<Vec<Seen>>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    let _ = reader.read_exact(&mut body);
    seen.lock().unwrap().push(Seen { headers, body });
    let _ = write!(
        conn,
        "HTTP/1.1 {status} X\r\n{extra}Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
}

struct Harness {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    app: Arc<App>,
    tenant: TenantId,
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(dir.path(), Durability::Normal).unwrap());
        let name = crate::TenantName::parse("acme").unwrap();
        crate::tenants::create(&*store, &name).unwrap();
        let tenant = store.tenants().unwrap()[0].id;
        let clock = Arc::new(ManualClock::new(T0));
        let app = start(store.clone(), clock.clone());
        Harness {
            _dir: dir,
            store,
            clock,
            app,
            tenant,
        }
    }

    /// Stops the app (as a crash would: nothing is shut down cleanly) and starts a new one on
    /// the same store.
    fn restart(&mut self) {
        self.app = start(self.store.clone(), self.clock.clone());
    }

    fn events(&self, events: Vec<Value>) {
        let now = self.clock.now_ms();
        let parsed: Vec<siyu_domain::Event> = events
            .into_iter()
            .map(|v| siyu_domain::Event::from_value(v, self.app.time_bounds(now)).unwrap())
            .collect();
        let rx = self.app.ingestor.submit(self.tenant, parsed).unwrap();
        rx.blocking_recv().unwrap().unwrap();
    }

    fn webhook(&self, url: &str) {
        crate::channels::set_channel(
            &**self.app.store(),
            self.app.safeguards(),
            self.tenant,
            crate::channels::ChannelKind::Webhook,
            &json!({"url": url, "secret": "s3cret"}),
            self.clock.now_ms(),
        )
        .unwrap();
        self.app.journeys_changed();
    }
}

trait NowMs {
    fn now_ms(&self) -> i64;
}

impl NowMs for ManualClock {
    fn now_ms(&self) -> i64 {
        siyu_domain::time::Clock::now(self)
    }
}

fn start(store: Arc<dyn Store>, clock: Arc<ManualClock>) -> Arc<App> {
    let guard = Safeguards::new(
        crate::secrets::Sealer::from_keys(&[7; 32], None),
        TargetPolicy::ALLOW_PRIVATE,
    );
    Arc::new(App::start_with(store, EngineMode::Live, clock, guard).unwrap())
}

fn follow(who: &str, id: &str, ts: i64) -> Value {
    json!({"id": id, "type": "follow", "ts": siyu_domain::time::format_rfc3339(ts),
           "identities": {"douyin_open_id": who}})
}

const WELCOME: &str = r#"
name = "welcome"
trigger = { event = "follow" }
reentry = "once"

[[steps]]
id = "t1"
type = "tag"
tag = "welcomed"

[[steps]]
id = "b"
type = "branch"
if = 'tag("welcomed")'
then = "hello"
else = "out"

[[steps]]
id = "hello"
type = "send"
channel = "webhook"
text = "欢迎关注 {{fan_id}}"

[[steps]]
id = "t2"
type = "tag"
tag = "greeted"

[[steps]]
id = "out"
type = "exit"
"#;

/// Steps both workers until neither has anything to do.
fn settle(h: &Harness, w: &mut JourneyWorker, o: &mut OutboxWorker) {
    for _ in 0..20 {
        let now = h.clock.now_ms();
        let a = w.step(now).unwrap();
        let b = o.step(now).unwrap();
        if a == Default::default() && b.delivered + b.retried + b.dead == 0 && !b.more {
            return;
        }
    }
}

#[test]
fn a_follow_runs_the_welcome_journey_once_signed_and_keyed_across_a_restart() {
    let mut h = Harness::new();
    let sink = Sink::start(Vec::new());
    h.webhook(&sink.url);
    let applied = h.app.apply_journey(h.tenant, WELCOME).unwrap();
    assert_eq!((applied.journey.as_str(), applied.version), ("welcome", 1));
    h.events(vec![
        follow("a", "e1", T0 - 1000),
        follow("b", "e2", T0 - 900),
        follow("c", "e3", T0 - 800),
    ]);
    let mut w = JourneyWorker::new(h.app.clone());
    let mut o = OutboxWorker::new(h.app.clone()).with_jitter(|| 0.5);
    let r = w.step(T0).unwrap();
    assert_eq!((r.entered, r.steps), (3, 15), "{r:?}");
    settle(&h, &mut w, &mut o);
    let seen = sink.seen();
    assert_eq!(seen.len(), 3, "one request per fan");
    let mut keys = Vec::new();
    for s in &seen {
        let body: Value = serde_json::from_slice(&s.body).unwrap();
        assert_eq!(body["journey"], "welcome");
        assert_eq!(body["step"], "hello");
        let key = s.header("Idempotency-Key").unwrap().to_string();
        assert_eq!(body["idempotency_key"], key.as_str());
        assert_eq!(
            s.header("X-Siyu-Signature").unwrap(),
            crate::channels::sign(b"s3cret", &s.body)
        );
        assert!(body["text"].as_str().unwrap().starts_with("欢迎关注 "));
        keys.push(key);
    }
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 3);
    // The tags are on, through the writer.
    let tagged = h
        .app
        .ingestor
        .read(h.tenant, |e| {
            let now = crate::segments::now_of(e);
            e.identities()
                .lookup(siyu_domain::IdentityKind::DouyinOpenId, "a")
                .iter()
                .map(|f| e.tags().of(&e.identities().ids_of(*f), now))
                .collect::<Vec<_>>()
        })
        .unwrap();
    assert_eq!(tagged.len(), 1);
    assert!(
        tagged[0].contains(&"welcomed".to_string()) && tagged[0].contains(&"greeted".to_string())
    );
    // The report says it; the deliveries came back as events.
    let rep = h.app.journey_report(h.tenant, "welcome").unwrap();
    assert_eq!(rep.runs.entered, 3);
    assert_eq!(rep.runs.completed, 3);
    let hello = rep.steps.iter().find(|s| s.id == "hello").unwrap();
    assert_eq!(
        (hello.entered, hello.sent, hello.delivered, hello.failed),
        (3, 3, 3, 0)
    );
    let mut delivered = 0;
    h.store
        .scan(h.tenant, 0, &mut |e| {
            delivered += usize::from(e.event.ty.to_string() == "x_journey_delivered");
            Ok(())
        })
        .unwrap();
    assert_eq!(delivered, 3);

    // A crash and a restart: nothing is taken again; a new follower runs once.
    h.restart();
    let mut w = JourneyWorker::new(h.app.clone());
    let mut o = OutboxWorker::new(h.app.clone()).with_jitter(|| 0.5);
    h.clock.set(T0 + 2000);
    h.events(vec![
        follow("d", "e4", T0 + 1000),
        follow("a", "e5", T0 + 1100),
    ]);
    let r = w.step(T0 + 2000).unwrap();
    assert_eq!(r.entered, 1, "{r:?}");
    settle(&h, &mut w, &mut o);

    assert_eq!(
        sink.seen().len(),
        4,
        "only d is new: a ran once already (reentry once)"
    );
}

#[test]
fn a_failing_webhook_backs_off_then_dead_letters_and_a_retry_delivers() {
    let h = Harness::new();
    // 503 with Retry-After, then 400 (permanent), then 200s.
    let sink = Sink::start(vec![(503, "Retry-After: 7\r\n"), (400, "")]);
    h.webhook(&sink.url);
    h.app.apply_journey(h.tenant, WELCOME).unwrap();
    h.events(vec![follow("a", "e1", T0 - 1000)]);
    let mut w = JourneyWorker::new(h.app.clone());
    let mut o = OutboxWorker::new(h.app.clone()).with_jitter(|| 0.0);
    w.step(T0).unwrap();
    let lane = |o: &mut OutboxWorker, at| o.step_lane(h.tenant, "webhook", at).unwrap();
    let r = lane(&mut o, T0);
    assert_eq!((r.delivered, r.retried), (0, 1));
    // Not due before Retry-After.
    assert_eq!(lane(&mut o, T0 + 6000).retried, 0);
    assert_eq!(r.next_at.map(|t| t >= T0 + 7000), Some(true), "{r:?}");
    let r = lane(&mut o, T0 + 7000);
    assert_eq!(r.dead, 1, "a 400 is permanent");
    let dead = h.app.dead_letters(h.tenant, Some("welcome"), 10).unwrap();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].answer.as_deref().unwrap_or("").contains("400"),
        "{:?}",
        dead[0].answer
    );
    assert_eq!(dead[0].attempts, 2);
    assert_eq!(h.app.retry_dead_letters(h.tenant, None).unwrap(), 1);
    assert_eq!(lane(&mut o, T0 + 8000).delivered, 1);
    let keys: Vec<String> = sink
        .seen()
        .iter()
        .map(|s| s.header("Idempotency-Key").unwrap().to_string())
        .collect();
    assert_eq!(keys.len(), 3);
    assert!(
        keys.iter().all(|k| *k == keys[0]),
        "every attempt carries the same key"
    );
    let rep = h.app.journey_report(h.tenant, "welcome").unwrap();
    let hello = rep.steps.iter().find(|s| s.id == "hello").unwrap();
    assert_eq!((hello.delivered, hello.failed), (1, 0));
}

#[test]
fn an_opted_out_fan_is_never_messaged_and_the_reason_is_on_record() {
    let h = Harness::new();
    let sink = Sink::start(Vec::new());
    h.webhook(&sink.url);
    h.app.apply_journey(h.tenant, WELCOME).unwrap();
    h.events(vec![
        json!({"id": "m1", "type": "private_message_in", "ts": siyu_domain::time::format_rfc3339(T0 - 5000),
               "identities": {"douyin_open_id": "a"}, "props": {"text": " 退订 "}}),
    ]);
    let mut w = JourneyWorker::new(h.app.clone());
    let mut o = OutboxWorker::new(h.app.clone());
    w.step(T0).unwrap();
    h.events(vec![
        follow("a", "e1", T0 - 1000),
        follow("b", "e2", T0 - 900),
    ]);
    h.clock.set(T0 + 10);
    settle(&h, &mut w, &mut o);
    assert_eq!(sink.seen().len(), 1, "only b is messaged");
    let rep = h.app.journey_report(h.tenant, "welcome").unwrap();
    let hello = rep.steps.iter().find(|s| s.id == "hello").unwrap();
    assert_eq!(hello.skipped.get("opted_out"), Some(&1));
}

#[test]
fn a_wait_wakes_at_its_instant_and_a_paused_journey_holds_its_runs() {
    let h = Harness::new();
    let sink = Sink::start(Vec::new());
    h.webhook(&sink.url);
    h.app
        .apply_journey(
            h.tenant,
            r#"
name = "later"
trigger = { event = "follow" }
[[steps]]
id = "w"
type = "wait"
for = "1d"
[[steps]]
id = "s"
type = "send"
channel = "webhook"
text = "一天后"
"#,
        )
        .unwrap();
    h.events(vec![follow("a", "e1", T0 - 1000)]);
    let mut w = JourneyWorker::new(h.app.clone());
    let mut o = OutboxWorker::new(h.app.clone());
    let r = w.step(T0).unwrap();
    assert_eq!(r.next_wake, Some(T0 + 86_400_000));
    assert_eq!(w.step(T0 + 86_399_999).unwrap().woken, 0);
    // Paused at the instant: the run holds.
    h.app.set_journey_paused(h.tenant, "later", true).unwrap();
    let r = w.step(T0 + 86_400_000).unwrap();
    assert_eq!(r.woken, 1);
    o.step(T0 + 86_400_000).unwrap();
    assert!(sink.seen().is_empty());
    let rep = h.app.journey_report(h.tenant, "later").unwrap();
    assert_eq!(rep.runs.held, 1);
    // Resumed: the held run takes up where it was and sends.
    h.app.set_journey_paused(h.tenant, "later", false).unwrap();
    h.clock.set(T0 + 86_500_000);
    settle(&h, &mut w, &mut o);
    assert_eq!(sink.seen().len(), 1);
    let rep = h.app.journey_report(h.tenant, "later").unwrap();
    assert_eq!((rep.runs.held, rep.runs.completed), (0, 1));
}

#[test]
fn history_starts_no_run_but_an_old_opt_out_still_holds() {
    let h = Harness::new();
    let sink = Sink::start(Vec::new());
    h.webhook(&sink.url);
    h.events(vec![
        follow("old", "e0", T0 - 9000),
        json!({"id": "m1", "type": "private_message_in", "ts": siyu_domain::time::format_rfc3339(T0 - 8000),
               "identities": {"douyin_open_id": "quiet"}, "props": {"text": "TD"}}),
    ]);
    // Applied after those events: they are history.
    h.app.apply_journey(h.tenant, WELCOME).unwrap();
    let mut w = JourneyWorker::new(h.app.clone());
    let mut o = OutboxWorker::new(h.app.clone());
    assert_eq!(
        w.step(T0).unwrap().entered,
        0,
        "an old follow is not an entry"
    );
    h.events(vec![
        follow("quiet", "e1", T0 - 100),
        follow("new", "e2", T0 - 50),
    ]);
    settle(&h, &mut w, &mut o);
    assert_eq!(
        sink.seen().len(),
        1,
        "only the new follower; the old opt-out holds"
    );
    let rep = h.app.journey_report(h.tenant, "welcome").unwrap();
    assert_eq!(rep.runs.entered, 2);
    let hello = rep.steps.iter().find(|s| s.id == "hello").unwrap();
    assert_eq!(hello.skipped.get("opted_out"), Some(&1));
}

fn pm(who: &str, id: &str, ts: i64, text: &str) -> Value {
    json!({"id": id, "type": "private_message_in", "ts": siyu_domain::time::format_rfc3339(ts),
           "identities": {"douyin_open_id": who},
           "props": {"text": text, "conversation_short_id": format!("conv-{who}"),
                     "server_message_id": format!("msg-{id}")}})
}

#[test]
fn douyin_replies_inside_the_window_asks_staff_outside_it_and_proactive_only_when_authorized() {
    let h = Harness::new();
    // A Douyin-speaking sink: every answer is success.
    let sink = Sink::start(Vec::new());
    let base = sink.url.trim_end_matches("/hook").to_string();
    crate::channels::set_channel(
        &**h.app.store(),
        h.app.safeguards(),
        h.tenant,
        crate::channels::ChannelKind::DouyinIm,
        &json!({"base": base, "access_token": "tok", "open_id": "biz"}),
        T0,
    )
    .unwrap();
    h.app.journeys_changed();
    h.app
        .apply_journey(
            h.tenant,
            r#"
name = "dm"
trigger = { event = "follow" }
[[steps]]
id = "hi"
type = "send"
channel = "douyin_im"
text = "你好"
fallback = "task"
fallback_team = "service"
"#,
        )
        .unwrap();
    h.events(vec![
        // w wrote an hour ago: inside the reply window.
        pm("w", "m1", T0 - 3_600_000, "在吗"),
        // old wrote three days ago: outside it; auth authorized proactive messages.
        pm("old", "m2", T0 - 3 * 86_400_000, "hi"),
        json!({"id": "a1", "type": "x_authorize", "domain": "private",
               "ts": siyu_domain::time::format_rfc3339(T0 - 5000),
               "identities": {"douyin_open_id": "auth"}}),
    ]);
    let mut w = JourneyWorker::new(h.app.clone());
    let mut o = OutboxWorker::new(h.app.clone());
    w.step(T0).unwrap();
    h.events(vec![
        follow("w", "f1", T0 - 100),
        follow("old", "f2", T0 - 90),
        follow("auth", "f3", T0 - 80),
    ]);
    h.clock.set(T0 + 10);
    settle(&h, &mut w, &mut o);
    let bodies: Vec<Value> = sink
        .seen()
        .iter()
        .map(|s| serde_json::from_slice(&s.body).unwrap())
        .collect();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    let reply = bodies.iter().find(|b| b["to_user_id"] == "w").unwrap();
    assert_eq!(reply["scene"], "im_reply_msg");
    assert_eq!(reply["msg_id"], "msg-m1");
    assert_eq!(reply["conversation_id"], "conv-w");
    let proactive = bodies.iter().find(|b| b["to_user_id"] == "auth").unwrap();
    assert_ne!(proactive["scene"], "im_reply_msg");
    let rep = h.app.journey_report(h.tenant, "dm").unwrap();
    let hi = &rep.steps[0];
    assert_eq!(hi.fell_back.get("outside_reply_window"), Some(&1));
    assert_eq!(hi.sent, 2);
    let tasks = h
        .app
        .tasks(
            h.tenant,
            &super::TaskQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(
        (tasks[0].team.as_str(), tasks[0].text.as_str()),
        ("service", "你好")
    );
    // Staff completes it: the outcome comes back as an event and on the run's history.
    h.app
        .complete_task(h.tenant, tasks[0].id, "李雷", "已电话联系")
        .unwrap();
    h.clock.set(T0 + 20);
    settle(&h, &mut w, &mut o);
    let run = tasks[0].run.unwrap();
    let kinds: Vec<&str> = h
        .store
        .run_history(h.tenant, run)
        .unwrap()
        .iter()
        .filter_map(|r| siyu_journey::run::RecordKind::from_i16(r.kind).map(|k| k.as_str()))
        .collect();
    assert!(kinds.contains(&"task_done"), "{kinds:?}");
}

#[test]
fn a_reply_and_the_goal_come_back_as_events_and_on_the_report() {
    let h = Harness::new();
    let sink = Sink::start(Vec::new());
    h.webhook(&sink.url);
    h.app
        .apply_journey(
            h.tenant,
            r#"
name = "convert"
trigger = { event = "follow" }
goal = { event = "order", within = "7d" }
[[steps]]
id = "offer"
type = "send"
channel = "webhook"
text = "新人券"
[[steps]]
id = "w"
type = "wait"
for = "3d"
"#,
        )
        .unwrap();
    let mut w = JourneyWorker::new(h.app.clone());
    let mut o = OutboxWorker::new(h.app.clone());
    // x and y follow as two fans (two open ids).
    h.events(vec![
        follow("x", "f1", T0 - 300),
        follow("y", "f2", T0 - 200),
    ]);
    settle(&h, &mut w, &mut o);
    assert_eq!(sink.seen().len(), 2);
    // x replies, then orders: replied, converted.
    h.clock.set(T0 + 1000);
    h.events(vec![
        pm("x", "m1", T0 + 500, "多少钱"),
        json!({"id": "o1", "type": "order", "ts": siyu_domain::time::format_rfc3339(T0 + 900),
               "identities": {"douyin_open_id": "x"}, "props": {"order_id": "o1", "amount": 99}}),
    ]);
    settle(&h, &mut w, &mut o);
    let rep = h.app.journey_report(h.tenant, "convert").unwrap();
    assert_eq!(rep.runs.converted, 1);
    assert_eq!(rep.steps[0].replied, 1);
    // The outcome events are in the log.
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    h.store
        .scan(h.tenant, 0, &mut |e| {
            let t = e.event.ty.to_string();
            if t.starts_with("x_journey_") {
                *kinds.entry(t).or_default() += 1;
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(kinds.get("x_journey_delivered"), Some(&2), "{kinds:?}");
    assert_eq!(kinds.get("x_journey_replied"), Some(&1), "{kinds:?}");
    assert_eq!(kinds.get("x_journey_converted"), Some(&1), "{kinds:?}");
}

#[test]
fn two_open_runs_of_one_person_become_one_the_older() {
    let h = Harness::new();
    let sink = Sink::start(Vec::new());
    h.webhook(&sink.url);
    h.app
        .apply_journey(
            h.tenant,
            r#"
name = "nurture"
trigger = { event = "follow" }
[[steps]]
id = "w"
type = "wait"
for = "3d"
[[steps]]
id = "s"
type = "send"
channel = "webhook"
text = "三天后"
"#,
        )
        .unwrap();
    let mut w = JourneyWorker::new(h.app.clone());
    let mut o = OutboxWorker::new(h.app.clone());
    // x follows by their Douyin id; a phone-only follow comes from another system.
    h.events(vec![
        follow("x", "f1", T0 - 300),
        json!({"id": "f2", "type": "follow", "ts": siyu_domain::time::format_rfc3339(T0 - 200),
               "identities": {"phone": "13800138000"}}),
    ]);
    settle(&h, &mut w, &mut o);
    // x leaves that phone on a form: one person now, with two open runs until the next
    // trigger of that fan settles it.
    h.clock.set(T0 + 1000);
    h.events(vec![
        json!({"id": "l1", "type": "lead_form", "ts": siyu_domain::time::format_rfc3339(T0 + 500),
               "identities": {"douyin_open_id": "x", "phone": "13800138000"}}),
        follow("x", "f3", T0 + 700),
    ]);
    settle(&h, &mut w, &mut o);
    let rep = h.app.journey_report(h.tenant, "nurture").unwrap();
    assert_eq!(
        (rep.runs.entered, rep.runs.merged, rep.runs.waiting),
        (2, 1, 1),
        "{:?}",
        rep.runs
    );
    // Three days later one message goes, not two.
    h.clock.set(T0 + 3 * 86_400_000 + 1000);
    settle(&h, &mut w, &mut o);
    assert_eq!(sink.seen().len(), 1);
}

#[test]
fn a_daily_schedule_enters_the_segments_members_once_a_day() {
    let h = Harness::new();
    let sink = Sink::start(Vec::new());
    h.webhook(&sink.url);
    h.events(vec![
        follow("x", "f1", T0 - 300),
        follow("y", "f2", T0 - 200),
    ]);
    h.app
        .segment_save(h.tenant, "抖音粉丝", "has(douyin_open_id)", None)
        .unwrap();
    h.app
        .apply_journey(
            h.tenant,
            r#"
name = "morning"
trigger = { schedule = "09:30", segment = "抖音粉丝" }
reentry = "always"
[[steps]]
id = "s"
type = "send"
channel = "webhook"
text = "早安"
"#,
        )
        .unwrap();
    let mut w = JourneyWorker::new(h.app.clone());
    let mut o = OutboxWorker::new(h.app.clone());
    // 10:00: today's 09:30 has passed, so today's round goes now; once.
    settle(&h, &mut w, &mut o);
    assert_eq!(sink.seen().len(), 2);
    h.clock.set(T0 + 3_600_000);
    settle(&h, &mut w, &mut o);
    assert_eq!(sink.seen().len(), 2, "once a day");
    // The next morning, 09:29 and then 09:30.
    h.clock.set(T0 + 86_400_000 - 31 * 60_000);
    settle(&h, &mut w, &mut o);
    assert_eq!(sink.seen().len(), 2);
    h.clock.set(T0 + 86_400_000 - 30 * 60_000);
    settle(&h, &mut w, &mut o);
    assert_eq!(sink.seen().len(), 4);
}

#[test]
fn invite_group_steps_place_each_fan_in_a_group_with_room() {
    let h = Harness::new();
    let sink = Sink::start(vec![]);
    h.webhook(&sink.url);
    h.app
        .create_group(h.tenant, "福利群", None, Some(2), None)
        .unwrap();
    h.app
        .apply_journey(
            h.tenant,
            r#"
name = "invite"
trigger = { event = "follow" }

[[steps]]
id = "inv"
type = "invite_group"
group = "福利群"
channel = "webhook"
text = "进群领福利"
"#,
        )
        .unwrap();
    h.events(vec![
        follow("a", "e1", T0 - 3000),
        follow("b", "e2", T0 - 2000),
        follow("c", "e3", T0 - 1000),
    ]);
    let mut w = JourneyWorker::new(h.app.clone());
    let mut o = OutboxWorker::new(h.app.clone()).with_jitter(|| 0.0);
    settle(&h, &mut w, &mut o);
    let mut groups: Vec<(String, String)> = sink
        .seen()
        .iter()
        .map(|s| {
            let b: Value = serde_json::from_slice(&s.body).unwrap();
            (
                b["group"]["name"].as_str().unwrap().to_string(),
                b["invite_group"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    groups.sort();
    // Two seats in the first group; the third fan opens the next, of the same template.
    assert_eq!(
        groups,
        [
            ("福利群".to_string(), "福利群".to_string()),
            ("福利群".to_string(), "福利群".to_string()),
            ("福利群 2".to_string(), "福利群".to_string()),
        ]
    );
    let views = h.app.group_views(h.tenant).unwrap();
    assert_eq!(views.len(), 2);
    assert_eq!(views[1].capacity, 2, "opened with the template's capacity");
    assert_eq!(h.store.invites_held(h.tenant, 0).unwrap(), [(1, 2), (2, 1)]);
}
