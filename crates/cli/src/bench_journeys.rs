//! `siyu bench journeys`: SOP journeys end to end on the embedded store — the run worker, the
//! outbox and a local webhook receiver that speaks the webhook protocol (and checks each
//! request's signature), in one process:
//!
//! 1. **Throughput**: `--fans` fans follow; a five-step journey (tag, branch on the tag, send
//!    by webhook, tag, exit) runs for each. The follows are taken in first; the workers then
//!    start cold, and the clock stops when the receiver has every message and every tag is
//!    applied. Steps per second = step executions / that time.
//! 2. **Latency**: for `--latency-seconds`, `--rate` events a second each make a new fan
//!    enter a saved segment whose journey sends by webhook; each message's time from the
//!    event's submission to its arrival at the receiver.
//! 3. **Waiting**: `--waiting` fans enter a journey that waits a day; the process's resident
//!    memory before and after, per waiting fan; then a restart (a new app on the same store)
//!    and the time until the worker has taken up every timer.
//! 4. **Variants**: Thompson sampling's allocation (the function the state machine calls) on a
//!    simulated population where b converts at 6% and a at 3%.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use siyu_app::journeys::outbox::OutboxWorker;
use siyu_app::journeys::worker::JourneyWorker;
use siyu_app::{App, EngineMode, Safeguards};
use siyu_domain::time::{Clock, SystemClock};
use siyu_store::{Durability, Location, Store, TenantId};

use crate::bench::percentile;
use crate::output;

/// What the receiver got: arrival instants by the message's text, and bad signatures.
#[derive(Default)]
struct Received {
    arrivals: Mutex<Vec<(String, Instant)>>,
    count: AtomicU64,
    bad_signatures: AtomicU64,
}

/// A webhook receiver on 127.0.0.1: keep-alive HTTP/1.1, one thread per connection, 200 to
/// every request whose `X-Siyu-Signature` verifies.
fn receiver(secret: &'static str) -> anyhow::Result<(String, Arc<Received>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let got = Arc::new(Received::default());
    let record = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let record = record.clone();
            std::thread::spawn(move || connection(conn, secret, &record));
        }
    });
    Ok((url, got))
}

fn connection(conn: std::net::TcpStream, secret: &str, got: &Received) {
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
        let mut signature = String::new();
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
                } else if k == "x-siyu-signature" {
                    signature = v.to_string();
                }
            }
        }
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let at = Instant::now();
        if siyu_app::channels::sign(secret.as_bytes(), &body) != signature {
            got.bad_signatures.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(v) = serde_json::from_slice::<Value>(&body)
            && let Some(text) = v["text"].as_str()
        {
            got.arrivals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((text.to_string(), at));
        }
        got.count.fetch_add(1, Ordering::Relaxed);
        if out
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            .is_err()
        {
            return;
        }
    }
}

/// Where a bench's store lives: a temporary folder, or a fresh PostgreSQL schema dropped
/// when the bench ends.
pub(crate) enum Place {
    Sqlite(tempfile::TempDir),
    Postgres {
        url: String,
        scoped: String,
        schema: String,
    },
}

impl Place {
    pub(crate) fn sqlite() -> anyhow::Result<Place> {
        Ok(Place::Sqlite(tempfile::tempdir()?))
    }

    pub(crate) fn postgres(url: &str) -> anyhow::Result<Place> {
        let (scoped, schema) = crate::bench::fresh_schema(url)?;
        Ok(Place::Postgres {
            url: url.to_string(),
            scoped,
            schema,
        })
    }

    fn location(&self) -> Location {
        match self {
            Place::Sqlite(dir) => Location::Sqlite(dir.path().to_path_buf()),
            Place::Postgres { scoped, .. } => Location::Postgres(scoped.clone()),
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Place::Sqlite(_) => "sqlite",
            Place::Postgres { .. } => "postgres",
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if let Place::Postgres { url, schema, .. } = self {
            crate::bench::drop_schema(url, schema);
        }
    }
}

pub(crate) struct Bench {
    store: Arc<dyn Store>,
    pub(crate) app: Arc<App>,
    pub(crate) tenant: TenantId,
    guard: Safeguards,
    // Last: the store is closed before its schema is dropped.
    _place: Place,
}

pub(crate) fn fresh(place: Place) -> anyhow::Result<Bench> {
    let store = siyu_store::open(&place.location(), Durability::Normal)?;
    let name = siyu_app::TenantName::parse("bench")?;
    siyu_app::tenants::create(&*store, &name)?;
    let tenant = store.tenants()?[0].id;
    let mut key = [0u8; 32];
    for (i, b) in key.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31).wrapping_add(7);
    }
    let guard = Safeguards::new(
        siyu_app::secrets::Sealer::from_keys(&key, None),
        siyu_app::targets::TargetPolicy::ALLOW_PRIVATE,
    );
    let app = start(&store, &guard)?;
    Ok(Bench {
        store,
        app,
        tenant,
        guard,
        _place: place,
    })
}

fn start(store: &Arc<dyn Store>, guard: &Safeguards) -> anyhow::Result<Arc<App>> {
    Ok(Arc::new(App::start_with(
        store.clone(),
        EngineMode::Live,
        Arc::new(SystemClock),
        guard.clone(),
    )?))
}

impl Bench {
    fn webhook(&self, url: &str, secret: &str) -> anyhow::Result<()> {
        siyu_app::channels::set_channel(
            &*self.store,
            &self.guard,
            self.tenant,
            siyu_app::channels::ChannelKind::Webhook,
            &json!({"url": url, "secret": secret, "concurrency": 32}),
            SystemClock.now(),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        // Quiet hours would defer the sends: the bench measures the machinery, at any hour.
        self.app
            .set_journey_policy(
                self.tenant,
                &json!({"quiet_start": "00:00", "quiet_end": "00:00", "daily_cap": null}),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        self.app.journeys_changed();
        Ok(())
    }

    /// Takes in events in batches, waiting for each commit.
    pub(crate) fn ingest(&self, events: Vec<Value>) -> anyhow::Result<()> {
        let now = SystemClock.now();
        for chunk in events.chunks(5000) {
            let parsed = chunk
                .iter()
                .map(|v| siyu_domain::Event::from_value(v.clone(), self.app.time_bounds(now)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            let rx = self.app.ingestor.submit(self.tenant, parsed)?;
            rx.blocking_recv().context("writer stopped")??;
        }
        Ok(())
    }

    /// Starts both workers on their threads; stopping is dropping the senders.
    fn workers(&self) -> anyhow::Result<Workers> {
        let (stop_j, j_rx) = std::sync::mpsc::channel::<()>();
        let (stop_o, o_rx) = std::sync::mpsc::channel::<()>();
        let jw = JourneyWorker::new(self.app.clone());
        let ow = OutboxWorker::new(self.app.clone());
        let j = std::thread::Builder::new()
            .name("bench-journeys".into())
            .spawn(move || jw.run_until_stopped(j_rx))?;
        let o = std::thread::Builder::new()
            .name("bench-outbox".into())
            .spawn(move || ow.run_until_stopped(o_rx))?;
        Ok(Workers {
            stops: Some((stop_j, stop_o)),
            threads: vec![j, o],
        })
    }

    /// Pending outbox rows of every lane (0: everything delivered).
    fn pending(&self) -> anyhow::Result<bool> {
        for lane in siyu_app::journeys::outbox::LANES {
            if self.store.outbox_next_at(self.tenant, lane)?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

struct Workers {
    stops: Option<(std::sync::mpsc::Sender<()>, std::sync::mpsc::Sender<()>)>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stops = None;
        siyu_app::journeys::worker::bell().ring();
        siyu_app::journeys::outbox::bell().ring();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn follows(n: u64, prefix: &str, ts: i64) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({"id": format!("{prefix}-{i}"), "type": "follow",
                   "ts": siyu_domain::time::format_rfc3339(ts),
                   "identities": {"douyin_open_id": format!("{prefix}{i}")}})
        })
        .collect()
}

const FIVE_STEPS: &str = r#"
name = "bench"
trigger = { event = "follow" }
[[steps]]
id = "t1"
type = "tag"
tag = "entered"
[[steps]]
id = "b"
type = "branch"
if = 'tag("entered")'
then = "send"
else = "out"
[[steps]]
id = "send"
type = "send"
channel = "webhook"
text = "欢迎 {{fan_id}}"
[[steps]]
id = "t2"
type = "tag"
tag = "welcomed"
[[steps]]
id = "out"
type = "exit"
"#;

/// Polls `done` every 2 ms until it holds or `limit` passes; the time it took.
fn until(
    limit: Duration,
    mut done: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<Duration> {
    let t = Instant::now();
    while !done()? {
        anyhow::ensure!(t.elapsed() < limit, "not done after {limit:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(t.elapsed())
}

fn throughput(place: Place, fans: u64, say: &dyn Fn(&str)) -> anyhow::Result<Value> {
    say(&format!("{}:", place.name()));
    let b = fresh(place)?;
    let (url, got) = receiver("bench-secret")?;
    b.webhook(&url, "bench-secret")?;
    b.app
        .apply_journey(b.tenant, FIVE_STEPS)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    say(&format!("taking in {} follows ...", output::n(fans)));
    let t = Instant::now();
    b.ingest(follows(fans, "f", SystemClock.now() - 60_000))?;
    let ingest_s = t.elapsed().as_secs_f64();
    say("running the journey ...");
    let t = Instant::now();
    let workers = b.workers()?;
    until(Duration::from_secs(600), || {
        Ok(got.count.load(Ordering::Relaxed) >= fans && !b.pending()?)
    })?;
    let s = t.elapsed().as_secs_f64();
    drop(workers);
    let rep = b
        .app
        .journey_report(b.tenant, "bench")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let steps: i64 = rep.steps.iter().map(|s| s.entered).sum();
    anyhow::ensure!(
        got.bad_signatures.load(Ordering::Relaxed) == 0,
        "the receiver saw bad signatures"
    );
    Ok(json!({
        "fans": fans,
        "steps": steps,
        "messages_received": got.count.load(Ordering::Relaxed),
        "seconds": s,
        "steps_per_second": steps as f64 / s,
        "messages_per_second": fans as f64 / s,
        "ingest_seconds_before": ingest_s,
        "includes": "the run worker from a cold start, its commits, the outbox's deliveries to the local receiver (signature checked there), the tag steps applied through the writer, the outcome events appended; the follows' ingest is timed apart",
    }))
}

fn latency(place: Place, seconds: u64, rate: u64, say: &dyn Fn(&str)) -> anyhow::Result<Value> {
    say(&format!("{}:", place.name()));
    let b = fresh(place)?;
    let (url, got) = receiver("bench-secret")?;
    b.webhook(&url, "bench-secret")?;
    b.app
        .segment_save(b.tenant, "刚评论", "count(live_comment, 1d) >= 1", None)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    b.app
        .apply_journey(
            b.tenant,
            r#"
name = "latency"
trigger = { segment_entered = "刚评论" }
[[steps]]
id = "send"
type = "send"
channel = "webhook"
text = "{{douyin_open_id}}"
"#,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let workers = b.workers()?;
    let n = seconds * rate;
    say(&format!(
        "{} segment entries at {rate}/s, each timed to its webhook ...",
        output::n(n)
    ));
    let mut sent: Vec<Instant> = Vec::with_capacity(n as usize);
    let start = Instant::now();
    // Batches of 10 every 10 ms: `rate` a second, as a busy tenant sends them.
    let per_tick = (rate / 100).max(1);
    let mut i = 0u64;
    while i < n {
        let due = start + Duration::from_micros(i * 1_000_000 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let k = per_tick.min(n - i);
        let now = SystemClock.now();
        let events: Vec<siyu_domain::Event> = (i..i + k)
            .map(|j| {
                siyu_domain::Event::from_value(
                    json!({"id": format!("c-{j}"), "type": "live_comment",
                           "ts": siyu_domain::time::format_rfc3339(now),
                           "identities": {"douyin_open_id": format!("p{j}")}}),
                    b.app.time_bounds(now),
                )
                .map_err(|e| anyhow::anyhow!("{}", e.message))
            })
            .collect::<Result<_, _>>()?;
        let at = Instant::now();
        let rx = b.app.ingestor.submit(b.tenant, events)?;
        rx.blocking_recv().context("writer stopped")??;
        sent.extend(std::iter::repeat_n(at, k as usize));
        i += k;
    }
    let achieved = n as f64 / start.elapsed().as_secs_f64();
    until(Duration::from_secs(120), || {
        Ok(got.count.load(Ordering::Relaxed) >= n)
    })?;
    drop(workers);
    let arrivals = got.arrivals.lock().unwrap_or_else(|e| e.into_inner());
    let mut ms: Vec<f64> = arrivals
        .iter()
        .filter_map(|(text, at)| {
            let j: usize = text.strip_prefix('p')?.parse().ok()?;
            Some(at.duration_since(*sent.get(j)?).as_secs_f64() * 1e3)
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    Ok(json!({
        "entries": n,
        "rate_asked": rate,
        "rate_achieved": achieved,
        "measured": ms.len(),
        "event_to_webhook_ms": {"p50": percentile(&ms, 50.0), "p90": percentile(&ms, 90.0),
                                "p99": percentile(&ms, 99.0), "max": ms.last()},
        "includes": "from submitting the event to the writer to the webhook request's arrival: the commit, the live segment entry, the trigger, the run worker's commit, the outbox's request",
    }))
}

/// The process's resident memory, bytes (Linux).
fn rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = s
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

fn waiting(fans: u64, say: &dyn Fn(&str)) -> anyhow::Result<Value> {
    let b = fresh(Place::sqlite()?)?;
    let (url, _got) = receiver("bench-secret")?;
    b.webhook(&url, "bench-secret")?;
    b.app
        .apply_journey(
            b.tenant,
            r#"
name = "tomorrow"
trigger = { event = "follow" }
[[steps]]
id = "w"
type = "wait"
for = "1d"
[[steps]]
id = "send"
type = "send"
channel = "webhook"
text = "明天见"
"#,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    say(&format!(
        "{} fans entering a one-day wait ...",
        output::n(fans)
    ));
    b.ingest(follows(fans, "w", SystemClock.now() - 60_000))?;
    let before = rss();
    let mut w = JourneyWorker::new(b.app.clone());
    let mut entered = 0;
    let t = Instant::now();
    while entered < fans as usize {
        let r = w
            .step(SystemClock.now())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        entered += r.entered;
        anyhow::ensure!(
            r.entered > 0 || r.more,
            "the worker stopped short at {entered}"
        );
    }
    let enter_s = t.elapsed().as_secs_f64();
    let after = rss();
    let waiting = b
        .app
        .journey_report(b.tenant, "tomorrow")
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .runs
        .waiting;
    drop(w);
    say("restarting with them waiting ...");
    let Bench {
        store,
        app,
        guard,
        tenant,
        _place,
    } = b;
    if let Ok(mut a) = Arc::try_unwrap(app) {
        a.ingestor.shutdown();
    }
    let t = Instant::now();
    let app = start(&store, &guard)?;
    let app_s = t.elapsed().as_secs_f64();
    let mut w = JourneyWorker::new(app.clone());
    let r = w
        .step(SystemClock.now())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let ready_s = t.elapsed().as_secs_f64();
    let next = r.next_wake;
    anyhow::ensure!(next.is_some(), "no timer after the restart");
    let _ = tenant;
    let per_fan = match (before, after) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / fans as f64),
        _ => None,
    };
    Ok(json!({
        "fans": fans,
        "waiting": waiting,
        "enter_seconds": enter_s,
        "rss_before_bytes": before,
        "rss_after_bytes": after,
        "bytes_per_waiting_fan": per_fan,
        "restart_app_seconds": app_s,
        "restart_ready_seconds": ready_s,
        "includes": "memory: the whole process's resident set before the worker ran and after every fan waits (engine, store caches and worker included); restart: a new app on the same store (engines from snapshot and log) and the worker's first step, which finds the earliest timer",
    }))
}

fn variants() -> Value {
    let run = |delay| {
        let s = siyu_journey::variants::simulate(&[0.03, 0.06], 20_000, delay, 0x5159);
        json!({"outcome_delay_entries": delay, "allocations": s.allocations,
               "share_of_last_10pct_to_b": s.late_shares[1], "regret_vs_always_b": s.regret,
               "conversions": s.conversions})
    };
    json!({"rates": {"a": 0.03, "b": 0.06}, "entries": 20_000,
           "runs": [run(0), run(1000)],
           "includes": "siyu_journey::variants::thompson, the allocation the state machine calls, on a simulated population; outcomes become known immediately (delay 0) or 1,000 entries later"})
}

/// Runs the four parts and prints their results (throughput and latency on PostgreSQL too,
/// with `postgres`).
pub fn run(
    fans: u64,
    latency_seconds: u64,
    rate: u64,
    waiting_fans: u64,
    postgres: Option<&str>,
    json_out: bool,
) -> anyhow::Result<()> {
    let say = |s: &str| {
        if !json_out {
            errln!("{s}");
        }
    };
    let t = throughput(Place::sqlite()?, fans, &say)?;
    let l = latency(Place::sqlite()?, latency_seconds, rate, &say)?;
    let pg = match postgres {
        Some(url) => Some((
            throughput(Place::postgres(url)?, fans, &say)?,
            latency(Place::postgres(url)?, latency_seconds, rate, &say)?,
        )),
        None => None,
    };
    let w = waiting(waiting_fans, &say)?;
    let v = variants();
    let mut result = json!({"throughput": t, "latency": l, "waiting": w, "variants": v});
    if let Some((t, l)) = &pg {
        result["postgres"] = json!({"throughput": t, "latency": l});
    }
    if json_out {
        outln!("{}", serde_json::to_string_pretty(&result)?);
        return Ok(());
    }
    let both =
        std::iter::once(("SQLite", &t, &l)).chain(pg.iter().map(|(t, l)| ("PostgreSQL", t, l)));
    for (name, t, l) in both {
        outln!(
            "{name} throughput: {} steps/s ({} fans, {} steps in {:.2} s)",
            output::n(t["steps_per_second"].as_f64().unwrap_or(0.0) as u64),
            output::n(fans),
            output::n(t["steps"].as_i64().unwrap_or(0) as u64),
            t["seconds"].as_f64().unwrap_or(0.0)
        );
        let lat = &l["event_to_webhook_ms"];
        outln!(
            "{name} latency: event → webhook p50 {:.1} ms, p99 {:.1} ms at {:.0} entries/s",
            lat["p50"].as_f64().unwrap_or(f64::NAN),
            lat["p99"].as_f64().unwrap_or(f64::NAN),
            l["rate_achieved"].as_f64().unwrap_or(0.0)
        );
    }
    outln!(
        "waiting: {:.0} bytes per waiting fan; restart ready in {:.2} s",
        w["bytes_per_waiting_fan"].as_f64().unwrap_or(f64::NAN),
        w["restart_ready_seconds"].as_f64().unwrap_or(f64::NAN)
    );
    for r in v["runs"].as_array().into_iter().flatten() {
        outln!(
            "variants (delay {}): {:.1}% of the last 10% to b, regret {:.1}",
            r["outcome_delay_entries"],
            r["share_of_last_10pct_to_b"].as_f64().unwrap_or(0.0) * 100.0,
            r["regret_vs_always_b"].as_f64().unwrap_or(0.0)
        );
    }
    Ok(())
}
