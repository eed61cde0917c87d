//! The demo's two ready SOPs (`examples/journeys/`), run on a "today" slice of fresh events
//! through the live engine, against a built-in local sink that speaks Douyin's send-message
//! protocol.
//!
//! History starts no run (a journey reacts only to triggers after its first apply), so the
//! demo applies the SOPs after the import, then takes in today's events — follows, private
//! messages, subscriptions and engagement that make fans 好感粉丝, and lead forms, some from a
//! person who already left one — and waits until both workers are idle. Today's events have
//! fixed ids: a second demo run stores none of them again and starts no run twice.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use siyu_app::journeys::outbox::OutboxWorker;
use siyu_app::journeys::worker::JourneyWorker;
use siyu_app::journeys::{Report, TaskQuery};
use siyu_app::targets::TargetPolicy;
use siyu_app::{App, EngineMode, Safeguards};
use siyu_domain::time::{Clock, SystemClock, format_rfc3339};
use siyu_store::{Appended, Location, Store, TenantId};

use crate::output;

/// The SOPs shipped with the product, as operators can copy them.
pub const JOURNEYS: [(&str, &str); 2] = [
    (
        "welcome_favorable",
        include_str!("../../../../examples/journeys/welcome_favorable.toml"),
    ),
    (
        "call_new_leads",
        include_str!("../../../../examples/journeys/call_new_leads.toml"),
    ),
];

/// Fans in today's slice (leads come on top).
const TODAY_FANS: u64 = 100;
/// Lead forms in today's slice; every fourth person fills in a second one.
const TODAY_LEADS: u64 = 40;
/// How long the demo waits for the workers at most.
const IDLE_LIMIT: Duration = Duration::from_secs(120);

/// What the sink got.
#[derive(Default)]
struct Received {
    messages: AtomicU64,
    replies: AtomicU64,
    proactive: AtomicU64,
}

/// A Douyin Open Platform stand-in on 127.0.0.1: `POST /im/send/msg/` answers success
/// (`data.error_code` 0) and is counted; anything else is a 404.
fn sink() -> anyhow::Result<(String, Arc<Received>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let base = format!("http://{}", listener.local_addr()?);
    let got = Arc::new(Received::default());
    let record = got.clone();
    std::thread::Builder::new()
        .name("demo-sink".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let record = record.clone();
                let _ = std::thread::Builder::new()
                    .name("demo-sink-conn".into())
                    .spawn(move || connection(conn, &record));
            }
        })?;
    Ok((base, got))
}

fn connection(conn: std::net::TcpStream, got: &Received) {
    let _ = conn.set_nodelay(true);
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut len = 0usize;
        let mut token = false;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
                if k == "content-length" {
                    len = v.parse().unwrap_or(0);
                } else if k == "access-token" {
                    token = !v.is_empty();
                }
            }
        }
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("");
        let ok = line.starts_with("POST ") && path.starts_with("/im/send/msg/") && token;
        let answer = if ok {
            got.messages.fetch_add(1, Ordering::Relaxed);
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            match v["scene"].as_str() {
                Some("im_reply_msg") => got.replies.fetch_add(1, Ordering::Relaxed),
                _ => got.proactive.fetch_add(1, Ordering::Relaxed),
            };
            r#"{"data": {"error_code": 0, "description": ""}, "extra": {"error_code": 0}}"#
        } else {
            ""
        };
        let head = if ok { "200 OK" } else { "404 Not Found" };
        let reply = format!(
            "HTTP/1.1 {head}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if out.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// What the demo's journeys did, for the human and the JSON output.
pub struct Outcome {
    pub today_events: u64,
    pub today_new: u64,
    pub sink_base: String,
    pub sink_messages: u64,
    pub sink_replies: u64,
    pub sink_proactive: u64,
    pub tasks_by_team: BTreeMap<String, u64>,
    pub reports: Vec<Report>,
    /// Runs waiting at a send step now (quiet hours).
    pub waiting_sends: i64,
    pub quiet: (String, String),
}

impl Outcome {
    pub fn to_json(&self) -> Value {
        json!({
            "files": JOURNEYS.iter().map(|(n, _)| format!("examples/journeys/{n}.toml")).collect::<Vec<_>>(),
            "today": {"events": self.today_events, "new": self.today_new,
                      "duplicates": self.today_events - self.today_new},
            "sink": {"base": self.sink_base, "received": self.sink_messages,
                     "replies": self.sink_replies, "proactive": self.sink_proactive},
            "tasks": {"total": self.tasks_by_team.values().sum::<u64>(), "by_team": self.tasks_by_team},
            "waiting_for_quiet_hours": self.waiting_sends,
            "reports": self.reports,
        })
    }
}

/// The demo's safeguards: the key of the data directory (or `SIYU_SECRET_KEY`), created on
/// first use as `siyu serve` does, and loopback targets allowed for the demo's sink.
fn safeguards(location: &Location) -> anyhow::Result<Safeguards> {
    let mut guard = crate::safeguards::load(location)?;
    guard.targets = TargetPolicy::ALLOW_PRIVATE;
    Ok(guard)
}

/// Applies the SOPs, takes in today's events on a live app and runs both workers until idle.
pub fn run(
    store: &Arc<dyn Store>,
    location: &Location,
    tenant: TenantId,
    no_quiet_hours: bool,
) -> anyhow::Result<Outcome> {
    let guard = safeguards(location).context("the demo's journeys need a secret key")?;
    let app = Arc::new(App::start_with(
        store.clone(),
        EngineMode::Live,
        Arc::new(SystemClock),
        guard.clone(),
    )?);
    let (base, got) = sink()?;
    let now = SystemClock.now();
    siyu_app::channels::set_channel(
        &**store,
        &guard,
        tenant,
        siyu_app::channels::ChannelKind::DouyinIm,
        &json!({"base": base, "access_token": "demo-access-token",
                "open_id": "demo-business-open-id", "killed": false}),
        now,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    if no_quiet_hours {
        app.set_journey_policy(
            tenant,
            &json!({"quiet_start": "00:00", "quiet_end": "00:00"}),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    for (name, text) in JOURNEYS {
        app.apply_journey(tenant, text)
            .map_err(|e| anyhow::anyhow!("examples/journeys/{name}.toml: {e}"))?;
    }
    app.journeys_changed();

    // The outbox on its thread (its lanes deliver in parallel); the journey worker stepped
    // here, so the demo knows when it has caught up.
    let (stop, stop_rx) = std::sync::mpsc::channel::<()>();
    let ow = OutboxWorker::new(app.clone());
    let outbox = std::thread::Builder::new()
        .name("demo-outbox".into())
        .spawn(move || ow.run_until_stopped(stop_rx))?;
    let mut jw = JourneyWorker::new(app.clone());
    let result = (|| {
        let events = today(now);
        let today_events = events.len() as u64;
        let parsed = events
            .into_iter()
            .map(|v| siyu_domain::Event::from_value(v, app.time_bounds(now)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("today's events: {}", e.message))?;
        let committed = app
            .ingestor
            .submit(tenant, parsed)?
            .blocking_recv()
            .context("writer stopped")??;
        let today_new = committed
            .appended
            .iter()
            .filter(|a| matches!(a, Appended::Stored(_)))
            .count() as u64;
        idle(&app, store, tenant, &mut jw)?;
        Ok::<_, anyhow::Error>((today_events, today_new))
    })();
    drop(stop);
    siyu_app::journeys::outbox::bell().ring();
    let _ = outbox.join();
    let (today_events, today_new) = result?;

    let mut reports = Vec::new();
    for (name, _) in JOURNEYS {
        reports.push(
            app.journey_report(tenant, name)
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        );
    }
    let mut tasks_by_team = BTreeMap::new();
    let tasks = app
        .tasks(
            tenant,
            &TaskQuery {
                limit: 10_000,
                ..TaskQuery::default()
            },
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for t in tasks {
        *tasks_by_team.entry(t.team).or_insert(0u64) += 1;
    }
    let waiting_sends = reports
        .iter()
        .flat_map(|r| &r.steps)
        .filter(|s| s.channel.is_some_and(|c| c != "task"))
        .map(|s| s.waiting)
        .sum();
    let policy = app
        .journey_policy(tenant)
        .ok()
        .and_then(|p| serde_json::to_value(p).ok())
        .unwrap_or(Value::Null);
    let quiet = (
        policy["quiet_start"]
            .as_str()
            .unwrap_or("22:00")
            .to_string(),
        policy["quiet_end"].as_str().unwrap_or("08:00").to_string(),
    );
    // The sink goes with this process: the channel's queue waits until a real one is set.
    siyu_app::channels::set_killed(
        &**store,
        &guard,
        tenant,
        siyu_app::channels::ChannelKind::DouyinIm,
        true,
        SystemClock.now(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    drop(jw);
    drop(app);
    Ok(Outcome {
        today_events,
        today_new,
        sink_base: base,
        sink_messages: got.messages.load(Ordering::Relaxed),
        sink_replies: got.replies.load(Ordering::Relaxed),
        sink_proactive: got.proactive.load(Ordering::Relaxed),
        tasks_by_team,
        reports,
        waiting_sends,
        quiet,
    })
}

/// Steps the journey worker until it and the outbox have had nothing to do for a while.
fn idle(
    app: &App,
    store: &Arc<dyn Store>,
    tenant: TenantId,
    jw: &mut JourneyWorker,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut quiet_rounds = 0;
    while quiet_rounds < 5 {
        anyhow::ensure!(
            start.elapsed() < IDLE_LIMIT,
            "the demo's journeys were not done after {IDLE_LIMIT:?}"
        );
        let r = jw
            .step(app.ingestor.clock().now())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut pending = false;
        for lane in siyu_app::journeys::outbox::LANES {
            pending |= store.outbox_next_at(tenant, lane)?.is_some();
        }
        if r.more || r.triggers > 0 || r.steps > 0 || r.outbox > 0 || pending {
            quiet_rounds = 0;
            if !r.more {
                std::thread::sleep(Duration::from_millis(10));
            }
        } else {
            quiet_rounds += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

const NICKNAMES: [&str; 8] = [
    "小鹿", "阿杰", "Momo", "橙子", "大白", "Lily", "米粒", "老周",
];
const LEAD_NAMES: [&str; 8] = [
    "王女士",
    "李先生",
    "张女士",
    "刘先生",
    "陈女士",
    "杨先生",
    "赵女士",
    "黄先生",
];

/// Today's slice: a few hundred events stamped in the last ten minutes, the same ids on every
/// run. Fans by `i % 5`: 0 follows and subscribes (好感粉丝 at once, never wrote: a staff
/// task); 1 follows, writes a private message and comments (inside the reply window: a reply);
/// 2 follows, authorizes proactive messages and subscribes (a proactive message); 3 follows
/// and engages to 10 (a staff task); 4 follows and likes a video (路人粉丝: no run). Leads fill
/// in a form; every fourth fills in a second one later (the same person: one call).
fn today(now: i64) -> Vec<Value> {
    let mut events = Vec::new();
    let mut ts = now - 10 * 60_000;
    let mut push = |events: &mut Vec<Value>, id: String, ty: &str, ids: Value, props: Value| {
        ts += 1000;
        let mut e = json!({"id": id, "type": ty, "ts": format_rfc3339(ts.min(now)),
                           "identities": ids});
        if props.as_object().is_some_and(|p| !p.is_empty()) {
            e["props"] = props;
        }
        if ty.starts_with("x_") {
            e["domain"] = json!("private");
        }
        events.push(e);
    };
    for i in 0..TODAY_FANS {
        let open_id = format!("demo-today-{i:03}");
        let ids = || json!({"douyin_open_id": open_id});
        let id = |what: &str| format!("demo-today-{i:03}-{what}");
        let kind = i % 5;
        let follow_props = if kind == 2 {
            json!({})
        } else {
            json!({"nickname": NICKNAMES[(i % 8) as usize]})
        };
        push(&mut events, id("follow"), "follow", ids(), follow_props);
        match kind {
            0 => push(&mut events, id("subscribe"), "subscribe", ids(), json!({})),
            1 => {
                push(
                    &mut events,
                    id("im"),
                    "private_message_in",
                    ids(),
                    json!({"text": "请问新粉有优惠吗？",
                           "conversation_short_id": format!("demo-conv-{i:03}"),
                           "server_message_id": format!("demo-msg-{i:03}")}),
                );
                for k in 0..2 {
                    push(
                        &mut events,
                        id(&format!("comment{k}")),
                        "video_comment",
                        ids(),
                        json!({}),
                    );
                }
            }
            2 => {
                push(
                    &mut events,
                    id("authorize"),
                    "x_authorize",
                    ids(),
                    json!({}),
                );
                push(&mut events, id("subscribe"), "subscribe", ids(), json!({}));
            }
            3 => {
                for k in 0..3 {
                    push(
                        &mut events,
                        id(&format!("comment{k}")),
                        "video_comment",
                        ids(),
                        json!({}),
                    );
                }
                push(&mut events, id("visit"), "homepage_visit", ids(), json!({}));
            }
            _ => push(&mut events, id("like"), "video_like", ids(), json!({})),
        }
    }
    let lead = |i: u64| {
        (
            json!({"phone": format!("+86199{:08}", 20_260_000 + i)}),
            json!({"name": LEAD_NAMES[(i % 8) as usize],
                   "channel": if i.is_multiple_of(2) { "douyin" } else { "oceanengine" }}),
        )
    };
    for i in 0..TODAY_LEADS {
        let (ids, props) = lead(i);
        push(
            &mut events,
            format!("demo-today-lead-{i:03}"),
            "lead_form",
            ids,
            props,
        );
    }
    for i in (0..TODAY_LEADS).step_by(4) {
        let (ids, props) = lead(i);
        push(
            &mut events,
            format!("demo-today-lead-{i:03}-again"),
            "lead_form",
            ids,
            props,
        );
    }
    events
}

/// The figures of a step as the demo prints them: one table of labels.
const FIGURES: [(&str, &str, &str); 9] = [
    ("entered", "进入", "entered"),
    ("waiting", "等待", "waiting"),
    ("sent", "发送", "sent"),
    ("delivered", "送达", "delivered"),
    ("pending", "待送达", "pending"),
    ("failed", "失败", "failed"),
    ("skipped", "跳过", "skipped"),
    ("fell_back", "转人工", "fell back"),
    ("tasks", "任务", "tasks"),
];

/// Display columns of a label (CJK characters take two).
fn width(s: &str) -> usize {
    s.chars()
        .map(|c| if (c as u32) >= 0x2E80 { 2 } else { 1 })
        .sum()
}

fn label(key: &str) -> String {
    let (zh, en) = FIGURES
        .iter()
        .find(|f| f.0 == key)
        .map_or((key, key), |f| (f.1, f.2));
    let text = format!("{zh} {en}");
    let pad = 20usize.saturating_sub(width(&text));
    format!("{text}{}", " ".repeat(pad))
}

fn reasons(m: &BTreeMap<String, i64>) -> String {
    if m.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{k} {}", output::n(*v as u64)))
        .collect();
    format!("   ({})", parts.join(", "))
}

pub fn print(o: &Outcome) {
    outln!(
        "SOP journeys 标准化经营步骤 — two ready SOPs (examples/journeys/), applied after the import"
    );
    outln!(
        "  today: {} fresh events taken in through the live engine ({} new, {} already there)",
        output::n(o.today_events),
        output::n(o.today_new),
        output::n(o.today_events - o.today_new)
    );
    outln!("  history starts no run: journeys react only to what comes after they are applied");
    for r in &o.reports {
        outln!();
        let file =
            JOURNEYS
                .iter()
                .find(|(n, _)| *n == r.journey)
                .map_or(String::new(), |(_, text)| {
                    text.lines()
                        .find(|l| l.starts_with("trigger"))
                        .unwrap_or("")
                        .to_string()
                });
        outln!(
            "  {} v{} — {}; {} runs, {} waiting, {} completed",
            r.journey,
            r.version,
            file,
            output::n(r.runs.entered as u64),
            output::n(r.runs.waiting as u64),
            output::n(r.runs.completed as u64)
        );
        for s in &r.steps {
            let via = s.channel.map_or(String::new(), |c| format!(" via {c}"));
            outln!("    step {} ({}{via})", s.id, s.ty);
            let n = |x: i64| output::n(x.max(0) as u64);
            let line = |key: &str, x: i64, extra: String| {
                outln!("      {}{:>8}{extra}", label(key), n(x));
            };
            line("entered", s.entered, String::new());
            if s.waiting > 0 {
                line("waiting", s.waiting, String::new());
            }
            let messages = matches!(s.ty, "send" | "invite_group");
            let fell_back: i64 = s.fell_back.values().sum();
            if messages {
                line("sent", s.sent, String::new());
                line("delivered", s.delivered, String::new());
                if s.pending > 0 {
                    line("pending", s.pending, String::new());
                }
                if s.failed > 0 {
                    line("failed", s.failed, String::new());
                }
                let skipped: i64 = s.skipped.values().sum();
                line("skipped", skipped, reasons(&s.skipped));
                line("fell_back", fell_back, reasons(&s.fell_back));
                line("tasks", fell_back, String::new());
            } else if matches!(s.ty, "task" | "assign_lead") {
                line("tasks", s.entered - s.waiting, String::new());
            }
        }
    }
    outln!();
    outln!(
        "  the local Douyin IM sink ({}/im/send/msg/) received {} messages: {} replies to fans who wrote, {} proactive to fans who authorized",
        o.sink_base,
        output::n(o.sink_messages),
        output::n(o.sink_replies),
        output::n(o.sink_proactive)
    );
    let teams: Vec<String> = o
        .tasks_by_team
        .iter()
        .map(|(t, n)| format!("{t} {}", output::n(*n)))
        .collect();
    outln!(
        "  staff tasks 员工任务: {} ({}) — fans Douyin forbids messaging proactively, and leads to call; `siyu task list`",
        output::n(o.tasks_by_team.values().sum::<u64>()),
        teams.join(", ")
    );
    if o.waiting_sends > 0 {
        outln!(
            "  quiet hours {}–{} (Asia/Shanghai by default): {} messages wait until {} — then Douyin's rules decide: a message, or a staff task",
            o.quiet.0,
            o.quiet.1,
            output::n(o.waiting_sends as u64),
            o.quiet.1
        );
    }
    outln!(
        "  the demo's douyin_im channel pointed at that sink and is now killed: set a real one, then `siyu channel resume douyin_im`"
    );
}

#[cfg(test)]
mod tests {
    /// Every journey shipped under examples/journeys/ parses, and the demo includes them all.
    #[test]
    fn example_journeys_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/journeys");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let text = std::fs::read_to_string(&path).unwrap();
                let j = siyu_journey::def::parse(&text, None)
                    .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
                assert_eq!(
                    path.file_stem().unwrap().to_str(),
                    Some(j.name.as_str()),
                    "a file is named after its journey"
                );
                seen += 1;
            }
        }
        assert!(seen >= super::JOURNEYS.len());
    }

    #[test]
    fn today_is_the_same_on_every_run_and_ids_are_unique() {
        let a = super::today(1_800_000_000_000);
        let b = super::today(1_800_000_000_000);
        assert_eq!(a, b);
        let ids: std::collections::HashSet<_> =
            a.iter().map(|e| e["id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), a.len());
        assert!(a.len() > 200, "{} events", a.len());
    }
}
