//! `siyu bench ingest`: the ingest benchmarks of docs/BENCHMARKS.md, in one run, on the same
//! generated events, beside the raw SQLite baseline.
//!
//! - **raw SQLite**: the same rows (already parsed, columns ready) inserted with one prepared
//!   `INSERT` into the same table, one transaction per 5,000 rows — what SQLite itself can do.
//! - **import → SQLite / PostgreSQL**: `siyu import` of the JSON-lines file: read, parse,
//!   validate, normalize, deduplicate, append.
//! - **HTTP**: `POST /api/events` over loopback in batches, several clients at once, against a
//!   server with full durability (fsync per group commit).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;
use serde_json::{Value, json};
use siyu_app::{App, EngineMode, Ingestor};
use siyu_domain::Event;
use siyu_store::{Durability, Location};

use crate::cli::{BenchArgs, BenchWhat};
use crate::{import, output};

#[derive(Debug, Serialize)]
struct Row {
    name: String,
    events: u64,
    seconds: f64,
    events_per_second: f64,
    /// This rate divided by raw SQLite's.
    vs_raw_sqlite: f64,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.what {
        BenchWhat::Ingest {
            events,
            postgres,
            batch,
            clients,
        } => ingest(events, postgres.as_deref(), batch, clients, args.json),
        BenchWhat::Identity { events, people } => identity(events, people, args.json),
        BenchWhat::Ltv {
            customers,
            seed,
            write,
        } => crate::bench_ltv::run(customers, seed, write.as_deref(), args.json),
        BenchWhat::Leads {
            leads,
            agents,
            repeats,
            postgres,
        } => crate::bench_leads::run(leads, agents, repeats, postgres.as_deref(), args.json),
        BenchWhat::Journeys {
            fans,
            latency_seconds,
            rate,
            waiting,
            postgres,
        } => crate::bench_journeys::run(
            fans,
            latency_seconds,
            rate,
            waiting,
            postgres.as_deref(),
            args.json,
        ),
        BenchWhat::Layers {
            fans,
            days,
            duckdb,
            work,
        } => layers(fans, days, duckdb, work, args.json),
        BenchWhat::Analytics {
            fans,
            days,
            duckdb,
            work,
        } => crate::bench_analytics::run(fans, days, duckdb, work, args.json),
        BenchWhat::Triggers {
            events,
            segments,
            probes,
        } => triggers(events, segments, probes, args.json),
        BenchWhat::Segments {
            fans,
            days,
            expr,
            duckdb,
            work,
        } => segments(fans, days, &expr, duckdb, work, args.json),
        BenchWhat::Readers {
            events,
            batch,
            clients,
            readers,
            rounds,
        } => crate::bench_readers::run(events, batch, clients, readers, rounds, args.json),
    }
}

/// Generates about `n` events into a file and returns them parsed too.
pub(crate) fn generate(n: u64, dir: &Path) -> anyhow::Result<(std::path::PathBuf, Vec<String>)> {
    let mut fans = 1_000u64;
    let days = 90;
    let probe = |fans| siyu_gen::GenConfig {
        fans,
        days,
        seed: 7,
        end: crate::gen_cmd::default_end(),
    };
    while siyu_gen::estimate_events(&probe(fans)) < n + n / 10 {
        fans = fans * 3 / 2 + 1;
    }
    let mut buf = Vec::new();
    siyu_gen::generate(&probe(fans), &mut buf, None, &mut |_| {})?;
    let text = String::from_utf8(buf)?;
    let lines: Vec<String> = text.lines().take(n as usize).map(str::to_string).collect();
    anyhow::ensure!(
        lines.len() as u64 == n,
        "generated only {} events",
        lines.len()
    );
    let path = dir.join("events.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n")?;
    Ok((path, lines))
}

fn raw_sqlite(dir: &Path, events: &[Event]) -> anyhow::Result<f64> {
    drop(siyu_store::SqliteStore::open(dir, Durability::Normal)?);
    let mut conn = rusqlite::Connection::open(dir.join("siyu.db"))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "cache_size", -262_144)?;
    conn.execute(
        "INSERT INTO tenants (name, created_at) VALUES ('raw', 0)",
        [],
    )?;
    // Columns prepared outside the timing: the baseline is SQLite's insert rate alone.
    let rows: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e.id.as_str().to_string(),
                e.ty.name(),
                e.domain().as_str(),
                e.ts,
                e.identities.to_json(),
                (!e.props.is_empty()).then(|| serde_json::to_string(&e.props).unwrap_or_default()),
                e.source.clone(),
            )
        })
        .collect();
    let started = Instant::now();
    for (c, chunk) in rows.chunks(5_000).enumerate() {
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO events (tenant_id, seq, id, type, domain, ts, identities, props, source, received_at)
                 VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0)",
            )?;
            for (i, r) in chunk.iter().enumerate() {
                stmt.execute(rusqlite::params![
                    (c * 5_000 + i) as i64 + 1,
                    r.0,
                    r.1,
                    r.2,
                    r.3,
                    r.4,
                    r.5,
                    r.6
                ])?;
            }
        }
        tx.commit()?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// `siyu import` of `file` into a fresh tenant. `fenced`: as a node sharing the database does
/// (`siyu_store::leases`), every append checks the tenant's lease token in its transaction.
fn import_into(location: &Location, file: &Path, fenced: bool) -> anyhow::Result<(f64, u64)> {
    let store = siyu_store::open(location, Durability::Normal)?;
    siyu_app::tenants::create(&*store, &siyu_app::TenantName::parse("bench")?)?;
    let tenant = App::resolve_tenant(&*store, Some("bench"))?;
    if fenced {
        store.require_leases();
        let now = siyu_domain::time::now_ms();
        store
            .acquire_lease(tenant.id, "bench", now, now + 3_600_000)?
            .context("the bench's lease")?;
    }
    let ingestor = Ingestor::start(store.clone(), EngineMode::WriteOnly)?;
    let started = Instant::now();
    let s = import::import_files(
        &import::Sink::Local(&ingestor),
        &tenant.name,
        tenant.id,
        &[(file.to_path_buf(), import::Format::Jsonl)],
        false,
        siyu_domain::event::DEFAULT_MIN_TS,
    )?;
    drop(ingestor);
    store.flush()?;
    Ok((started.elapsed().as_secs_f64(), s.accepted))
}

pub(crate) fn fresh_schema(url: &str) -> anyhow::Result<(String, String)> {
    let schema = format!("siyu_bench_{}", std::process::id());
    let mut c = url
        .parse::<postgres::Config>()?
        .connect(postgres::NoTls)
        .with_context(|| "cannot connect to --postgres".to_string())?;
    c.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
    ))?;
    let sep = if url.contains('?') { '&' } else { '?' };
    Ok((
        format!("{url}{sep}options=-c%20search_path%3D{schema}"),
        schema,
    ))
}

pub(crate) fn drop_schema(url: &str, schema: &str) {
    if let Ok(mut c) = url
        .parse::<postgres::Config>()
        .and_then(|c| c.connect(postgres::NoTls))
    {
        let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
    }
}

pub(crate) fn http(
    dir: &Path,
    lines: &[String],
    batch: usize,
    clients: usize,
) -> anyhow::Result<(f64, u64)> {
    let r = http_with(dir, lines, batch, clients, &[], 0, 0)?;
    Ok((r.seconds, r.accepted))
}

/// What an HTTP ingest run measured.
pub(crate) struct HttpRun {
    pub(crate) seconds: f64,
    pub(crate) accepted: u64,
    /// segment_entered / segment_exited triggers stored during the ingest.
    triggers: usize,
    /// With probes: (POST → acknowledgement, acknowledgement → trigger read), seconds each.
    probes: Vec<(f64, f64)>,
    /// With readers: every read they made while the ingest ran.
    pub(crate) reads: Vec<crate::bench_readers::Read>,
    /// With readers: the most fans a stats read reported.
    pub(crate) fans_seen: u64,
}

/// HTTP ingest of `lines` into a fresh store with `segments` saved first; then, with
/// `probes`, that many single events that each make a new fan enter a probe segment, timed
/// from the POST to its acknowledgement and from the acknowledgement to the trigger read back
/// through a long poll of `GET /api/segments/triggers`. With `readers`, that many reader
/// threads read beside the ingest (`bench_readers::spawn`) from its first acknowledgement to
/// its end.
pub(crate) fn http_with(
    dir: &Path,
    lines: &[String],
    batch: usize,
    clients: usize,
    segments: &[String],
    probes: usize,
    readers: usize,
) -> anyhow::Result<HttpRun> {
    let store = siyu_store::open(&Location::Sqlite(dir.to_path_buf()), Durability::Full)?;
    let keys = siyu_app::tenants::create(&*store, &siyu_app::TenantName::parse("bench")?)?;
    let tenant = App::resolve_tenant(&*store, Some(&keys.tenant))?.id;
    let app = Arc::new(App::start(store, EngineMode::Live)?);
    let mut probe_segment = None;
    if !segments.is_empty() || probes > 0 {
        for (i, expr) in segments.iter().enumerate() {
            app.segment_save(tenant, &format!("bench-{i}"), expr, None)
                .map_err(|e| anyhow::anyhow!("segment {expr:?}: {e}"))?;
        }
        if probes > 0 {
            let saved = app
                .segment_save(tenant, "probe", "count(x_probe, 1d) >= 1", None)
                .map_err(|e| anyhow::anyhow!("probe segment: {e}"))?;
            probe_segment = Some(saved.id);
        }
    }
    let bodies: Vec<String> = lines
        .chunks(batch)
        .map(|c| format!("[{}]", c.join(",")))
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let run = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        // The bench measures the server, not its per-key rate limit.
        let settings = siyu_server::Settings {
            rate: None,
            ..siyu_server::Settings::default()
        };
        let server = tokio::spawn(siyu_server::serve(
            listener,
            siyu_server::app(app.clone(), &settings),
            settings,
            async {
                let _ = stop_rx.await;
            },
        ));
        let client = reqwest::Client::new();
        let url = format!("http://{addr}/api/events");
        // Clients pop from the end: reversed, the batches go out in the file's (time) order,
        // as live traffic arrives.
        let mut bodies = bodies;
        bodies.reverse();
        let queue = Arc::new(std::sync::Mutex::new(bodies));
        let gate = Arc::new(crate::bench_readers::Gate::default());
        let started = Instant::now();
        let reader_threads =
            crate::bench_readers::spawn(addr, &keys.admin_key, readers, gate.clone())?;
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (client, url, queue, key, gate) = (
                client.clone(),
                url.clone(),
                queue.clone(),
                keys.write_key.clone(),
                gate.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut accepted = 0u64;
                loop {
                    let Some(body) = queue.lock().unwrap_or_else(|p| p.into_inner()).pop() else {
                        break;
                    };
                    let r = client
                        .post(&url)
                        .bearer_auth(&key)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await?;
                    anyhow::ensure!(r.status().is_success(), "HTTP {}", r.status());
                    let v: serde_json::Value = r.json().await?;
                    accepted += v["accepted"].as_u64().unwrap_or(0);
                    gate.acked();
                }
                anyhow::Ok(accepted)
            }));
        }
        let mut accepted = 0;
        let mut failed = None;
        for t in tasks {
            match t.await? {
                Ok(a) => accepted += a,
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        gate.stop();
        let reads =
            tokio::task::spawn_blocking(move || crate::bench_readers::join(reader_threads)).await?;
        if let Some(e) = failed {
            return Err(e);
        }
        let reads = reads?;
        let triggers = {
            let app = app.clone();
            tokio::task::spawn_blocking(move || {
                app.segment_triggers(tenant, None, None, 0, usize::MAX)
                    .map(|t| t.len())
            })
            .await??
        };
        let mut timings = Vec::new();
        if let Some(segment) = probe_segment {
            let base = format!("http://{addr}");
            let mut after = 0i64;
            for i in 0..probes {
                let body = json!([{
                    "id": format!("probe-{i}"), "type": "x_probe", "domain": "private",
                    "ts": siyu_domain::time::format_rfc3339(siyu_domain::time::now_ms()),
                    "identities": {"douyin_open_id": format!("probe-fan-{i}")},
                }]);
                let sent = Instant::now();
                let r = client
                    .post(format!("{base}/api/events"))
                    .bearer_auth(&keys.write_key)
                    .json(&body)
                    .send()
                    .await?;
                anyhow::ensure!(r.status().is_success(), "probe HTTP {}", r.status());
                let acked = Instant::now();
                loop {
                    let v: serde_json::Value = client
                        .get(format!(
                            "{base}/api/segments/triggers?segment={segment}&after={after}&wait=5"
                        ))
                        .bearer_auth(&keys.admin_key)
                        .send()
                        .await?
                        .json()
                        .await?;
                    after = v["next_after"].as_i64().unwrap_or(after);
                    let found = v["triggers"].as_array().is_some_and(|t| {
                        t.iter()
                            .any(|t| t["event_id"] == format!("probe-{i}").as_str())
                    });
                    if found {
                        break;
                    }
                    anyhow::ensure!(acked.elapsed().as_secs() < 30, "probe {i}: no trigger");
                }
                timings.push(((acked - sent).as_secs_f64(), acked.elapsed().as_secs_f64()));
            }
        }
        let _ = stop_tx.send(());
        server.await??;
        anyhow::Ok(HttpRun {
            seconds,
            accepted,
            triggers,
            probes: timings,
            reads,
            fans_seen: gate.fans_seen(),
        })
    })?;
    Ok(run)
}

/// `k` saved segments of the kinds operators write: layers with windowed counts, negations,
/// sums, identities, first domains — over the catalogue's common types and several windows.
fn bench_segments(k: usize) -> Vec<String> {
    const LAYERS: [&str; 4] = ["potential", "passerby", "favorable", "true_love"];
    const TYPES: [&str; 10] = [
        "video_view",
        "video_like",
        "live_watch",
        "private_message_in",
        "order",
        "video_comment",
        "live_comment",
        "ad_click",
        "lead_form",
        "follow",
    ];
    const WINDOWS: [&str; 3] = ["1d", "7d", "30d"];
    (0..k)
        .map(|i| {
            let (l, t, w) = (LAYERS[i % 4], TYPES[(i / 4) % 10], WINDOWS[(i / 40) % 3]);
            match i % 5 {
                0 => format!("layer >= {l} and count({t}, {w}) >= 2"),
                1 => format!("follows and not count({t}, {w}) > 0"),
                2 => format!(
                    "layer = {l} and sum(order.amount, 180d) > {}",
                    50 * (i % 7 + 1)
                ),
                3 => format!("has(phone) and last({t}) within {w}"),
                _ => format!(
                    "first_domain = commercial and count(*, {w}) >= {}",
                    i % 5 + 1
                ),
            }
        })
        .collect()
}

/// Percentile `p` (0..=100) of sorted values.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `siyu bench triggers`: HTTP ingest throughput with no saved segment and with `segments`
/// of them, on the same events; then `probes` acknowledgement → trigger latencies.
fn triggers(n: u64, segments: usize, probes: usize, json_out: bool) -> anyhow::Result<()> {
    let say = |s: &str| {
        if !json_out {
            errln!("{s}");
        }
    };
    let tmp = tempfile::tempdir()?;
    say(&format!("generating about {} events ...", output::n(n)));
    let (_, lines) = generate(n, tmp.path())?;
    say("HTTP ingest with no saved segment ...");
    let none = http_with(&tmp.path().join("none"), &lines, 500, 4, &[], 0, 0)?;
    say(&format!(
        "HTTP ingest with {segments} saved segments, then {probes} probes ..."
    ));
    let exprs = bench_segments(segments.saturating_sub(1));
    let with = http_with(&tmp.path().join("with"), &lines, 500, 4, &exprs, probes, 0)?;
    let rate = |r: &HttpRun| r.accepted as f64 / r.seconds;
    let mut ack: Vec<f64> = with.probes.iter().map(|p| p.0 * 1e3).collect();
    let mut trig: Vec<f64> = with.probes.iter().map(|p| p.1 * 1e3).collect();
    ack.sort_by(f64::total_cmp);
    trig.sort_by(f64::total_cmp);
    let result = json!({
        "events": with.accepted,
        "saved_segments": segments,
        "events_per_second_without": rate(&none),
        "events_per_second_with": rate(&with),
        "ratio": rate(&with) / rate(&none),
        "triggers_stored": with.triggers,
        "probes": probes,
        "post_to_ack_ms": {"p50": percentile(&ack, 50.0), "p99": percentile(&ack, 99.0), "max": ack.last()},
        "ack_to_trigger_ms": {"p50": percentile(&trig, 50.0), "p99": percentile(&trig, 99.0), "max": trig.last()},
    });
    outln!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}

fn ingest(
    n: u64,
    postgres: Option<&str>,
    batch: usize,
    clients: usize,
    json_out: bool,
) -> anyhow::Result<()> {
    anyhow::ensure!(n > 0, "--events must be at least 1");
    anyhow::ensure!((1..=10_000).contains(&batch), "--batch must be 1..=10000");
    anyhow::ensure!(clients >= 1, "--clients must be at least 1");
    let tmp = tempfile::tempdir()?;
    let say = |s: &str| {
        if !json_out {
            errln!("{s}")
        }
    };
    say(&format!("generating {} events ...", output::n(n)));
    let (file, lines) = generate(n, tmp.path())?;
    let now = siyu_domain::time::now_ms();
    let events: Vec<Event> = lines
        .iter()
        .map(|l| siyu_domain::parse_event(l, now))
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("generated event refused: {e}"))?;

    let mut rows: Vec<Row> = Vec::new();
    let mut push = |name: &str, seconds: f64, stored: u64| {
        rows.push(Row {
            name: name.into(),
            events: stored,
            seconds,
            events_per_second: stored as f64 / seconds,
            vs_raw_sqlite: 0.0,
        });
    };
    say("raw SQLite inserts ...");
    let raw_dir = tmp.path().join("raw");
    push(
        "raw SQLite INSERT (same rows, 5,000 per transaction)",
        raw_sqlite(&raw_dir, &events)?,
        n,
    );
    say("siyu import → SQLite ...");
    let (s, a) = import_into(&Location::Sqlite(tmp.path().join("import")), &file, false)?;
    push("siyu import → SQLite (embedded)", s, a);
    if let Some(url) = postgres {
        say("siyu import → PostgreSQL ...");
        let (scoped, schema) = fresh_schema(url)?;
        let r = import_into(&Location::Postgres(scoped), &file, false);
        drop_schema(url, &schema);
        let (s, a) = r?;
        push("siyu import → PostgreSQL", s, a);
        say("siyu import → PostgreSQL, fenced ...");
        let (scoped, schema) = fresh_schema(url)?;
        let r = import_into(&Location::Postgres(scoped), &file, true);
        drop_schema(url, &schema);
        let (s, a) = r?;
        push(
            "siyu import → PostgreSQL, fenced (each append checks the lease, as a node does)",
            s,
            a,
        );
    }
    say(&format!(
        "HTTP ingest, {clients} clients × {batch} events per request ..."
    ));
    let (s, a) = http(&tmp.path().join("http"), &lines, batch, clients)?;
    push(
        &format!(
            "HTTP POST /api/events → SQLite ({batch}/request, {clients} clients, fsync per commit)"
        ),
        s,
        a,
    );

    let raw = rows[0].events_per_second;
    for r in &mut rows {
        r.vs_raw_sqlite = r.events_per_second / raw;
    }
    for r in &rows {
        anyhow::ensure!(
            r.events == n,
            "{}: stored {} of {n} events",
            r.name,
            r.events
        );
    }
    if json_out {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({"events": n, "results": rows}))?
        );
    } else {
        outln!("| what | events | seconds | events/s | vs raw SQLite |");
        outln!("|---|---:|---:|---:|---:|");
        for r in &rows {
            outln!(
                "| {} | {} | {:.2} | {} | {:.2} |",
                r.name,
                output::n(r.events),
                r.seconds,
                output::n(r.events_per_second as u64),
                r.vs_raw_sqlite
            );
        }
    }
    Ok(())
}

/// A small deterministic generator (splitmix64) for the identity workload.
pub(crate) struct Mix(pub(crate) u64);

impl Mix {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn hashed(x: u64, salt: u64) -> u64 {
    Mix(x ^ salt.rotate_left(17)).next()
}

/// Events for the identity benchmark: person `p` (skewed towards active people) with their
/// open id and one more value. 1% of people write a family member's phone.
fn identity_workload(events: u64, people: u64) -> Vec<siyu_domain::Identities> {
    use siyu_domain::{Identities, Identity, IdentityKind as K};
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let text = |x: u64, y: u64, len: usize| -> String {
        let mut s = String::with_capacity(len);
        for i in 0..len {
            let w = if i < 10 { x } else { y };
            s.push(B64[((w >> ((i % 10) * 6)) & 63) as usize] as char);
        }
        s
    };
    let mut rng = Mix(20261125);
    let mut out = Vec::with_capacity(events as usize);
    for n in 0..events {
        // Squaring a uniform draw makes low-numbered people more active.
        let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
        let p = ((u * u) * people as f64) as u64;
        let (h1, h2) = (hashed(p, 1), hashed(p, 2));
        let open = format!("_000{}", text(h1, h2, 32));
        let other = match rng.next() % 10 {
            0..=5 => {
                let owner = if hashed(p, 3).is_multiple_of(100) {
                    p.saturating_sub(1)
                } else {
                    p
                };
                let digits = 13_000_000_000 + hashed(owner, 4) % 6_999_999_999;
                (K::Phone, format!("+86{digits}"))
            }
            6 | 7 => (K::LeadId, format!("clue_{}", 1_000_000_000_000_000_000 + n)),
            8 => (K::DouyinUnionId, text(hashed(p, 5), hashed(p, 6), 28)),
            _ => (
                K::WecomExternalId,
                format!("wm{}", text(hashed(p, 7), hashed(p, 8), 30)),
            ),
        };
        let ids = vec![
            Identity::from_stored(K::DouyinOpenId, &open),
            Identity::from_stored(other.0, &other.1),
        ];
        out.push(Identities::new(ids).expect("two kinds"));
    }
    out
}

fn identity(events: u64, people: u64, json_out: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        events > 0 && people > 0,
        "--events and --people must be at least 1"
    );
    if !json_out {
        errln!(
            "building {} events for {} people ...",
            output::n(events),
            output::n(people)
        );
    }
    let workload = identity_workload(events, people);
    let links: u64 = workload.iter().map(|i| i.len() as u64).sum();
    let mut graph = siyu_engine::IdentityGraph::new();
    let started = Instant::now();
    for (seq, ids) in workload.iter().enumerate() {
        graph.resolve(seq as i64 + 1, 0, ids);
    }
    let seconds = started.elapsed().as_secs_f64();
    let values = graph.value_count();
    let bytes = graph.heap_bytes();
    let result = json!({
        "events": events,
        "links": links,
        "seconds": seconds,
        "links_per_second": links as f64 / seconds,
        "values": values,
        "fans": graph.fan_count(),
        "graph_bytes": bytes,
        "bytes_per_value": bytes as f64 / values as f64,
    });
    if json_out {
        outln!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        outln!(
            "| events | links | seconds | links/s | values | fans | graph bytes | bytes/value |"
        );
        outln!("|---:|---:|---:|---:|---:|---:|---:|---:|");
        outln!(
            "| {} | {} | {:.2} | {} | {} | {} | {} | {:.1} |",
            output::n(events),
            output::n(links),
            seconds,
            output::n((links as f64 / seconds) as u64),
            output::n(values),
            output::n(graph.fan_count()),
            output::n(bytes as u64),
            bytes as f64 / values as f64
        );
    }
    Ok(())
}

/// Hands complete lines written into it to a function: lets the generator feed the engine
/// without holding gigabytes of text.
struct Lines<F: FnMut(&str)> {
    buf: Vec<u8>,
    f: F,
}

impl<F: FnMut(&str)> std::io::Write for Lines<F> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(nl) = self.buf[start..].iter().position(|b| *b == b'\n') {
            if let Ok(line) = std::str::from_utf8(&self.buf[start..start + nl]) {
                (self.f)(line);
            }
            start += nl + 1;
        }
        self.buf.drain(..start);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A generated brand applied to an engine, as `bench layers` and `bench segments` use it.
pub(crate) struct Brand {
    pub(crate) engine: siyu_engine::TenantEngine,
    pub(crate) as_of: siyu_domain::Millis,
    pub(crate) events: u64,
    apply_time: std::time::Duration,
    /// Live layers run beside, as a server would (`with_live`).
    live: Option<LiveRun>,
}

struct LiveRun {
    time: std::time::Duration,
    transitions: u64,
}

/// Generates `fans` fans over `days` days and applies them; with `with_live`, a second engine
/// runs live layers as the events arrive in time order, its clock following them — what a
/// server does, transitions and decay included — and must end where the recompute ends.
pub(crate) fn brand(
    fans: u64,
    days: u32,
    with_live: bool,
    say: &dyn Fn(&str),
) -> anyhow::Result<Brand> {
    let end = crate::gen_cmd::default_end();
    let cfg = siyu_gen::GenConfig {
        fans,
        days,
        seed: 11,
        end,
    };
    let as_of = end.as_millisecond();
    say(&format!(
        "generating and applying {} fans over {days} days (about {} events) ...",
        output::n(fans),
        output::n(siyu_gen::estimate_events(&cfg))
    ));
    let mut engine = siyu_engine::TenantEngine::new();
    let mut live = with_live.then(|| {
        let mut live = siyu_engine::TenantEngine::new();
        live.start_live(as_of - i64::from(days) * siyu_domain::time::MS_PER_DAY);
        live
    });
    let mut seq = 0i64;
    let mut apply_time = std::time::Duration::ZERO;
    let mut live_time = std::time::Duration::ZERO;
    let mut transitions = 0u64;
    {
        let mut sink = Lines {
            buf: Vec::new(),
            f: |line: &str| {
                if let Ok(e) = siyu_domain::parse_event(line, as_of) {
                    seq += 1;
                    let t = Instant::now();
                    engine.apply(seq, &e);
                    apply_time += t.elapsed();
                    if let Some(live) = live.as_mut() {
                        let t = Instant::now();
                        live.tick(e.ts);
                        live.apply(seq, &e);
                        transitions += live.take_transitions().len() as u64;
                        live_time += t.elapsed();
                    }
                }
            },
        };
        siyu_gen::generate(&cfg, &mut sink, None, &mut |_| {})?;
    }
    let live = match live {
        Some(mut live) => {
            let t = Instant::now();
            live.tick(as_of);
            transitions += live.take_transitions().len() as u64;
            live_time += t.elapsed();
            anyhow::ensure!(
                live.live_counts() == Some(engine.layers_as_of(as_of).counts()),
                "live layers differ from the recompute"
            );
            Some(LiveRun {
                time: live_time,
                transitions,
            })
        }
        None => None,
    };
    Ok(Brand {
        engine,
        as_of,
        events: seq as u64,
        apply_time,
        live,
    })
}

/// Writes every event as DuckDB reads it: the fan Siyu resolved it to, arrival order, time,
/// type and the properties the rules and segments read.
pub(crate) fn events_csv(
    engine: &siyu_engine::TenantEngine,
    dir: &Path,
    say: &dyn Fn(&str),
) -> anyhow::Result<std::path::PathBuf> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let csv_path = dir.join("events.csv");
    say(&format!("writing {} for DuckDB ...", csv_path.display()));
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&csv_path)?);
    writeln!(w, "fan,seq,ts,type,duration_s,grp,amount_fen,kinds,domain")?;
    let mut err = None;
    engine.for_each_event(|r| {
        if err.is_none() {
            let res = writeln!(
                w,
                "{},{},{},{},{},{},{},{},{}",
                r.fan.0,
                r.index,
                r.ts,
                r.r#type,
                r.duration_s,
                r.group.unwrap_or(""),
                r.amount_fen,
                r.kinds,
                r.domain.as_str()
            );
            if let Err(e) = res {
                err = Some(e);
            }
        }
    });
    if let Some(e) = err {
        return Err(e.into());
    }
    w.flush()?;
    Ok(csv_path)
}

/// Runs `f` `runs` times (at least once): the median and the minimum seconds, and the last
/// run's answer.
pub(crate) fn timed<T>(runs: usize, mut f: impl FnMut() -> T) -> (f64, f64, T) {
    let mut seconds = Vec::new();
    let mut out = None;
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        out = Some(f());
        seconds.push(t.elapsed().as_secs_f64());
    }
    seconds.sort_by(f64::total_cmp);
    (
        seconds[seconds.len() / 2],
        seconds[0],
        out.expect("at least one run"),
    )
}

/// Runs one of the DuckDB scripts in `bench/` and returns the JSON it prints.
pub(crate) fn duckdb_script(
    script: &str,
    args: &[String],
    say: &dyn Fn(&str),
) -> anyhow::Result<Value> {
    say(&format!("running bench/{script} ..."));
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../bench")
        .join(script);
    let out = std::process::Command::new("python3")
        .arg(&path)
        .args(args)
        .output()
        .with_context(|| format!("running python3 bench/{script}"))?;
    anyhow::ensure!(
        out.status.success(),
        "DuckDB script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn layers(
    fans: u64,
    days: u32,
    duckdb: bool,
    work: Option<std::path::PathBuf>,
    json_out: bool,
) -> anyhow::Result<()> {
    let say = |s: &str| {
        if !json_out {
            errln!("{s}");
        }
    };
    let b = brand(fans, days, true, &say)?;
    let (engine, as_of, events) = (&b.engine, b.as_of, b.events);
    let live = b.live.as_ref().context("live layers ran")?;
    say("recomputing layers as of the end, 5 times ...");
    let (siyu_seconds, siyu_min, counts) = timed(5, || engine.layers_as_of(as_of).counts());
    let mut result = json!({
        "fans": counts.total(),
        "events": events,
        "as_of": siyu_domain::time::format_rfc3339(as_of),
        "counts": counts,
        "recompute_seconds_median": siyu_seconds,
        "recompute_seconds_min": siyu_min,
        "apply_microseconds_per_event": b.apply_time.as_secs_f64() * 1e6 / events as f64,
        "live_microseconds_per_event": live.time.as_secs_f64() * 1e6 / events as f64,
        "live_transitions": live.transitions,
    });
    if duckdb {
        let tmp = tempfile::tempdir()?;
        let dir = work.unwrap_or_else(|| tmp.path().to_path_buf());
        let csv_path = events_csv(engine, &dir, &say)?;
        let d = duckdb_script(
            "layers_duckdb.py",
            &[csv_path.display().to_string(), as_of.to_string()],
            &say,
        )?;
        let ours = serde_json::to_value(counts)?;
        let same = ["potential", "passerby", "favorable", "true_love"]
            .iter()
            .all(|k| d["counts"][k].as_u64() == ours[k].as_u64());
        let dq = d["query_seconds"].as_f64().unwrap_or(f64::NAN);
        result["duckdb"] = d;
        result["identical_counts"] = json!(same);
        result["speedup_vs_duckdb"] = json!(dq / siyu_seconds);
    }
    outln!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}

/// The segment benchmark's expression: five clauses mixing a layer, windowed counts, a sum
/// and a negation. bench/segments_duckdb.py holds the same query in SQL.
pub const BENCH_SEGMENT: &str = "layer >= favorable and count(live_watch, 7d) >= 1 \
    and sum(order.amount, 180d) > 100 and not count(private_message_in, 30d) >= 3 and has(phone)";

fn segments(
    fans: u64,
    days: u32,
    expr: &str,
    duckdb: bool,
    work: Option<std::path::PathBuf>,
    json_out: bool,
) -> anyhow::Result<()> {
    let say = |s: &str| {
        if !json_out {
            errln!("{s}");
        }
    };
    let parsed = siyu_domain::audience::parse(expr)
        .map_err(|e| anyhow::anyhow!("the expression was refused: {e}"))?;
    let mut b = brand(fans, days, false, &say)?;
    let as_of = b.as_of;
    let day = siyu_domain::time::MS_PER_DAY;
    // A server's engine has live layers at its clock; start them as of the end.
    b.engine.start_live(as_of);
    let engine = &b.engine;
    type Eval<'a> = &'a dyn Fn(i64) -> Result<siyu_engine::Audience, siyu_engine::EvalError>;
    let now: Eval = &|t| engine.audience(&parsed, t);
    let by_snapshot: Eval = &|t| engine.audience_by_snapshot(&parsed, t);
    // 7 evaluations as of `t`: (count, median, min).
    let time = |f: Eval, t: i64| -> anyhow::Result<(usize, f64, f64)> {
        let (median, min, audience) = timed(7, || f(t));
        Ok((audience?.count(), median, min))
    };
    // One evaluation as of each of the 30 days before the end: (counts, seconds each).
    let series = |f: Eval| -> anyhow::Result<(Vec<usize>, Vec<f64>)> {
        let (mut counts, mut secs) = (Vec::new(), Vec::new());
        for k in 1..=30 {
            let start = Instant::now();
            counts.push(f(as_of - k * day)?.count());
            secs.push(start.elapsed().as_secs_f64());
        }
        Ok((counts, secs))
    };
    let summary = |counts: &[usize], secs: &[f64]| {
        let mut sorted = secs.to_vec();
        sorted.sort_by(f64::total_cmp);
        json!({
            "instants": secs.len(),
            "seconds_total": secs.iter().sum::<f64>(),
            "seconds_per_instant_mean": secs.iter().sum::<f64>() / secs.len() as f64,
            "seconds_per_instant_median": sorted[sorted.len() / 2],
            "seconds_per_instant_max": sorted[sorted.len() - 1],
            "counts": counts,
        })
    };
    say("evaluating as of the live clock, 7 times ...");
    let (count, median, min) = time(now, as_of)?;
    say("evaluating as of one millisecond earlier, 7 times ...");
    let (count_past, median_past, min_past) = time(now, as_of - 1)?;
    say("the same by the whole snapshot path (before issue 11), 7 times ...");
    let (count_snap, median_snap, min_snap) = time(by_snapshot, as_of - 1)?;
    say("a daily series: as of each of the last 30 days ...");
    let (series_counts, series_secs) = series(now)?;
    say("the same series by the whole snapshot path ...");
    let (snap_counts, snap_secs) = series(by_snapshot)?;
    anyhow::ensure!(
        count_past == count_snap && series_counts == snap_counts,
        "the two paths disagree"
    );
    let mut result = json!({
        "expr": expr,
        "fans": b.engine.stats().fans,
        "events": b.events,
        "as_of": siyu_domain::time::format_rfc3339(as_of),
        "count": count,
        "seconds_median": median,
        "seconds_min": min,
        "as_of_past": {"count": count_past, "seconds_median": median_past, "seconds_min": min_past},
        "as_of_past_by_snapshot": {"count": count_snap, "seconds_median": median_snap, "seconds_min": min_snap},
        "daily_series": summary(&series_counts, &series_secs),
        "daily_series_by_snapshot": summary(&snap_counts, &snap_secs),
    });
    if duckdb {
        anyhow::ensure!(
            expr == BENCH_SEGMENT,
            "--duckdb compares the default expression only (its SQL is in bench/segments_duckdb.py)"
        );
        let tmp = tempfile::tempdir()?;
        let dir = work.unwrap_or_else(|| tmp.path().to_path_buf());
        let csv_path = events_csv(&b.engine, &dir, &say)?;
        let d = duckdb_script(
            "segments_duckdb.py",
            &[csv_path.display().to_string(), as_of.to_string()],
            &say,
        )?;
        let past = as_of - 15 * day;
        let d_past = duckdb_script(
            "segments_duckdb.py",
            &[csv_path.display().to_string(), past.to_string()],
            &say,
        )?;
        let dq = d["query_seconds"].as_f64().unwrap_or(f64::NAN);
        let dq_past = d_past["query_seconds"].as_f64().unwrap_or(f64::NAN);
        let series_max = series_secs.iter().copied().fold(0.0, f64::max);
        result["identical_count"] = json!(d["count"].as_u64() == Some(count as u64));
        result["identical_count_15_days_earlier"] =
            json!(d_past["count"].as_u64() == Some(series_counts[14] as u64));
        result["duckdb"] = d;
        result["duckdb_15_days_earlier"] = d_past;
        result["speedup_vs_duckdb"] = json!(dq / median);
        result["speedup_vs_duckdb_as_of_past"] = json!(dq / median_past);
        result["speedup_vs_duckdb_as_of_past_by_snapshot"] = json!(dq / median_snap);
        result["speedup_vs_duckdb_daily_series_slowest_instant"] = json!(dq_past / series_max);
    }
    outln!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}
