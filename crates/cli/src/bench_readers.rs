//! `siyu bench readers`: readers must not stall ingest (issue 11).
//!
//! Fresh servers in this process (SQLite, fsync per group commit, live engine), the same
//! generated events posted to each by the same HTTP clients (`bench::http_with`), in
//! `--rounds` rounds of two phases each (their order alternating from round to round; the
//! report gives each round and the ratio of the medians, since one phase's rate on a shared
//! 2-core machine varies by tens of percent from run to run):
//!
//! - **alone**: the ingest and nothing else;
//! - **beside readers**: the same ingest while reader threads — each its own OS thread, tokio
//!   runtime and connection — loop without pause over `GET /api/stats`, `GET
//!   /api/reports/layers` (as of now), `GET /api/fans/{id}` and `POST /api/segments/preview` of
//!   [`bench::BENCH_SEGMENT`]. They start at the first acknowledged batch and stop when the
//!   last batch is acknowledged; the request in flight then is still timed. A fan id is the
//!   arrival position of the fan's first event, so ids are not 1..n: before its loop each
//!   reader asks once, untimed, for a preview of `layer >= potential` (every fan) with a sample
//!   of 1,000, and its fan pages are of those fans, drawn at random.
//!
//! Every read is timed from send to the last byte of its answer. A read answered with anything
//! but 200 fails the bench with the answer's body: an error is never a fast sample.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Map, Value, json};

use crate::bench::{self, BENCH_SEGMENT, percentile};
use crate::output;

/// What the readers read, in the order each loops over them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Stats,
    Layers,
    Fan,
    Preview,
}

impl Endpoint {
    const ALL: [Endpoint; 4] = [
        Endpoint::Stats,
        Endpoint::Layers,
        Endpoint::Fan,
        Endpoint::Preview,
    ];

    fn key(self) -> &'static str {
        match self {
            Endpoint::Stats => "stats",
            Endpoint::Layers => "layers_report",
            Endpoint::Fan => "fan_page",
            Endpoint::Preview => "segment_preview",
        }
    }

    fn route(self) -> &'static str {
        match self {
            Endpoint::Stats => "GET /api/stats",
            Endpoint::Layers => "GET /api/reports/layers",
            Endpoint::Fan => "GET /api/fans/{id}",
            Endpoint::Preview => "POST /api/segments/preview",
        }
    }
}

/// One timed read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Read {
    pub(crate) endpoint: Endpoint,
    pub(crate) ms: f64,
}

/// Shared between the ingest clients and the readers: when to start, when to stop.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    /// Batches acknowledged so far; readers start at the first.
    acked: AtomicU64,
    /// Set when the ingest's last batch is acknowledged (or it failed).
    done: AtomicBool,
    /// The most fans a stats answer reported (for the report).
    fans_seen: AtomicU64,
}

impl Gate {
    pub(crate) fn acked(&self) {
        self.acked.fetch_add(1, Ordering::Release);
    }

    pub(crate) fn stop(&self) {
        self.done.store(true, Ordering::Release);
    }

    fn done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    pub(crate) fn fans_seen(&self) -> u64 {
        self.fans_seen.load(Ordering::Relaxed)
    }
}

type Reader = JoinHandle<anyhow::Result<Vec<Read>>>;

/// Starts `n` reader threads against the server at `addr`, reading with the admin `key` from
/// the gate's first acknowledgement until it is stopped.
pub(crate) fn spawn(
    addr: SocketAddr,
    key: &str,
    n: usize,
    gate: Arc<Gate>,
) -> anyhow::Result<Vec<Reader>> {
    (0..n)
        .map(|i| {
            let (key, gate) = (key.to_string(), gate.clone());
            std::thread::Builder::new()
                .name(format!("bench-reader-{i}"))
                .spawn(move || {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?
                        .block_on(read_loop(i, addr, key, gate))
                })
                .context("starting a reader thread")
        })
        .collect()
}

/// Waits for every reader; the first failure is the answer.
pub(crate) fn join(readers: Vec<Reader>) -> anyhow::Result<Vec<Read>> {
    let mut reads = Vec::new();
    let mut failed = None;
    for r in readers {
        match r.join() {
            Ok(Ok(mut v)) => reads.append(&mut v),
            Ok(Err(e)) => failed = failed.or(Some(e)),
            Err(_) => failed = failed.or(Some(anyhow::anyhow!("a reader thread panicked"))),
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(reads),
    }
}

async fn read_loop(
    i: usize,
    addr: SocketAddr,
    key: String,
    gate: Arc<Gate>,
) -> anyhow::Result<Vec<Read>> {
    let client = reqwest::Client::new();
    let base = format!("http://{addr}");
    let preview = json!({"expr": BENCH_SEGMENT, "sample": 20}).to_string();
    let mut rng = bench::Mix(0x5EED + i as u64);
    let mut reads = Vec::new();
    while gate.acked.load(Ordering::Acquire) == 0 && !gate.done() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let fans = fan_ids(&client, &base, &key)
        .await
        .with_context(|| format!("reader {i}: learning fan ids"))?;
    'reading: loop {
        for endpoint in Endpoint::ALL {
            if gate.done() {
                break 'reading;
            }
            let (req, what) = match endpoint {
                Endpoint::Stats => (client.get(format!("{base}/api/stats")), String::new()),
                Endpoint::Layers => (
                    client.get(format!("{base}/api/reports/layers")),
                    String::new(),
                ),
                Endpoint::Fan => {
                    let id = fans[(rng.next() % fans.len() as u64) as usize];
                    (
                        client.get(format!("{base}/api/fans/{id}")),
                        format!(" (fan {id})"),
                    )
                }
                Endpoint::Preview => (
                    client
                        .post(format!("{base}/api/segments/preview"))
                        .header("content-type", "application/json")
                        .body(preview.clone()),
                    String::new(),
                ),
            };
            let sent = Instant::now();
            let answer = req
                .bearer_auth(&key)
                .send()
                .await
                .with_context(|| format!("reader {i}: {}{what}", endpoint.route()))?;
            let status = answer.status();
            let body = answer
                .bytes()
                .await
                .with_context(|| format!("reader {i}: {}{what}: body", endpoint.route()))?;
            let ms = sent.elapsed().as_secs_f64() * 1e3;
            anyhow::ensure!(
                status == reqwest::StatusCode::OK,
                "reader {i}: {}{what} answered {status}: {}",
                endpoint.route(),
                String::from_utf8_lossy(&body[..body.len().min(500)])
            );
            if endpoint == Endpoint::Stats {
                let v: Value = serde_json::from_slice(&body).context("stats answer")?;
                let fans = v["fans"].as_u64().context("stats answer without fans")?;
                gate.fans_seen.fetch_max(fans, Ordering::Relaxed);
            }
            reads.push(Read { endpoint, ms });
        }
    }
    Ok(reads)
}

/// Up to 1,000 ids of fans that exist now, from a preview of every fan.
async fn fan_ids(client: &reqwest::Client, base: &str, key: &str) -> anyhow::Result<Vec<i64>> {
    let answer = client
        .post(format!("{base}/api/segments/preview"))
        .bearer_auth(key)
        .json(&json!({"expr": "layer >= potential", "sample": 1000}))
        .send()
        .await?;
    let status = answer.status();
    let v: Value = answer.json().await?;
    anyhow::ensure!(status == reqwest::StatusCode::OK, "answered {status}: {v}");
    let ids: Vec<i64> = v["sample"]
        .as_array()
        .context("a preview without a sample")?
        .iter()
        .filter_map(|m| m["fan"].as_i64())
        .collect();
    anyhow::ensure!(!ids.is_empty(), "no fan yet: {v}");
    Ok(ids)
}

/// Latency summary of some reads, in milliseconds (sorted in place).
fn summary(ms: &mut [f64], seconds: f64) -> Value {
    ms.sort_by(f64::total_cmp);
    json!({
        "count": ms.len(),
        "per_second": ms.len() as f64 / seconds,
        "p50_ms": percentile(ms, 50.0),
        "p90_ms": percentile(ms, 90.0),
        "p99_ms": percentile(ms, 99.0),
        "max_ms": ms.last().copied().unwrap_or(f64::NAN),
    })
}

/// Issue 11's targets.
const RATIO_TARGET: f64 = 0.8;
const P99_TARGET_MS: f64 = 50.0;

/// The median of `xs` (the mean of the middle two for an even count).
fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

pub(crate) fn run(
    n: u64,
    batch: usize,
    clients: usize,
    readers: usize,
    rounds: usize,
    json_out: bool,
) -> anyhow::Result<()> {
    anyhow::ensure!(n > 0, "--events must be at least 1");
    anyhow::ensure!((1..=10_000).contains(&batch), "--batch must be 1..=10000");
    anyhow::ensure!(clients >= 1, "--clients must be at least 1");
    anyhow::ensure!(readers >= 1, "--readers must be at least 1");
    anyhow::ensure!((1..=20).contains(&rounds), "--rounds must be 1..=20");
    let say = |s: &str| {
        if !json_out {
            errln!("{s}")
        }
    };
    let tmp = tempfile::tempdir()?;
    say(&format!("generating {} events ...", output::n(n)));
    let (_, lines) = bench::generate(n, tmp.path())?;
    let mut alone_rates = Vec::new();
    let mut with_rates = Vec::new();
    let mut reads: Vec<Read> = Vec::new();
    let mut read_seconds = 0.0;
    let mut fans_seen = 0;
    for round in 0..rounds {
        // Alternate which phase goes first, so that a drift of the machine over the run
        // (page cache, thermal, a neighbour) falls on both.
        let mut phases = [false, true];
        if round % 2 == 1 {
            phases.reverse();
        }
        for beside in phases {
            let dir = tmp.path().join(format!(
                "round-{round}-{}",
                if beside { "readers" } else { "alone" }
            ));
            if beside {
                say(&format!(
                    "round {}/{rounds}: HTTP ingest into a fresh server beside {readers} readers ...",
                    round + 1
                ));
                let with = bench::http_with(&dir, &lines, batch, clients, &[], 0, readers)?;
                anyhow::ensure!(
                    with.accepted == n,
                    "ingest beside readers: accepted {} of {n} events",
                    with.accepted
                );
                with_rates.push(with.accepted as f64 / with.seconds);
                read_seconds += with.seconds;
                fans_seen = fans_seen.max(with.fans_seen);
                reads.extend(with.reads);
            } else {
                say(&format!(
                    "round {}/{rounds}: HTTP ingest alone, {clients} clients × {batch} events per request ...",
                    round + 1
                ));
                let (secs, got) = bench::http(&dir, &lines, batch, clients)?;
                anyhow::ensure!(got == n, "ingest alone: accepted {got} of {n} events");
                alone_rates.push(got as f64 / secs);
            }
            // Each phase's server and data are gone before the next starts.
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    let alone_rate = median(&alone_rates);
    let with_rate = median(&with_rates);
    let ratio = with_rate / alone_rate;
    let round_ratios: Vec<f64> = alone_rates
        .iter()
        .zip(&with_rates)
        .map(|(a, w)| w / a)
        .collect();

    let mut by = Map::new();
    for e in Endpoint::ALL {
        let mut ms: Vec<f64> = reads
            .iter()
            .filter(|r| r.endpoint == e)
            .map(|r| r.ms)
            .collect();
        by.insert(e.key().into(), summary(&mut ms, read_seconds));
    }
    let mut all: Vec<f64> = reads.iter().map(|r| r.ms).collect();
    let all = summary(&mut all, read_seconds);
    let p99 = all["p99_ms"].as_f64().unwrap_or(f64::NAN);
    let result = json!({
        "events": n,
        "batch": batch,
        "clients": clients,
        "readers": readers,
        "rounds": rounds,
        "fans_at_end": fans_seen,
        "segment_preview_expr": BENCH_SEGMENT,
        "alone": {"events_per_second": alone_rate, "rounds": alone_rates},
        "beside_readers": {"events_per_second": with_rate, "rounds": with_rates},
        "ratio": ratio,
        "round_ratios": round_ratios,
        "reads": all,
        "reads_by_endpoint": by,
        "targets": {
            "ratio_at_least": RATIO_TARGET, "ratio_met": ratio >= RATIO_TARGET,
            "reader_p99_ms_at_most": P99_TARGET_MS, "reader_p99_met": p99 <= P99_TARGET_MS,
        },
    });
    if json_out {
        outln!("{}", serde_json::to_string_pretty(&result)?);
        return Ok(());
    }
    outln!(
        "| HTTP ingest of {} events ({batch}/request, {clients} clients, fsync per commit) | events/s, median of {rounds} | each round |",
        output::n(n)
    );
    outln!("|---|---:|---|");
    let each = |xs: &[f64]| {
        xs.iter()
            .map(|x| output::n(*x as u64))
            .collect::<Vec<_>>()
            .join(", ")
    };
    outln!(
        "| alone | {} | {} |",
        output::n(alone_rate as u64),
        each(&alone_rates)
    );
    outln!(
        "| beside {readers} readers | {} | {} |",
        output::n(with_rate as u64),
        each(&with_rates)
    );
    outln!();
    outln!(
        "ratio of the medians {ratio:.2} (target ≥ {RATIO_TARGET}: {}); by round {}; {} fans at the end",
        met(ratio >= RATIO_TARGET),
        round_ratios
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(", "),
        output::n(fans_seen)
    );
    outln!();
    outln!("| read (all rounds) | count | /s | p50 ms | p90 ms | p99 ms | max ms |");
    outln!("|---|---:|---:|---:|---:|---:|---:|");
    let line = |name: &str, v: &Value| {
        let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        outln!(
            "| {name} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} |",
            output::n(v["count"].as_u64().unwrap_or(0)),
            f("per_second"),
            f("p50_ms"),
            f("p90_ms"),
            f("p99_ms"),
            f("max_ms")
        );
    };
    for e in Endpoint::ALL {
        line(e.route(), &by[e.key()]);
    }
    line("all reads", &all);
    outln!();
    outln!(
        "reader p99 {p99:.2} ms (target ≤ {P99_TARGET_MS} ms: {})",
        met(p99 <= P99_TARGET_MS)
    );
    Ok(())
}

fn met(yes: bool) -> &'static str {
    if yes { "met" } else { "NOT met" }
}
