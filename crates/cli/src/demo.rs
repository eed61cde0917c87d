//! `siyu demo`: one command from nothing to a brand Siyu understands.
//!
//! Generates a brand (default 100,000 people over the last 90 days), imports it into the
//! embedded store, and prints what Siyu sees. Running it again on the same data directory
//! imports nothing twice. `--serve` then serves the API with the demo tenant's keys.

use std::path::{Path, PathBuf};

use serde_json::json;
use siyu_app::{App, EngineMode, Ingestor, TenantKeys};
use siyu_domain::Domain;
use siyu_store::{Location, Store};

use crate::cli::DemoArgs;
use crate::{gen_cmd, import, output};

mod sop;

const TENANT: &str = "demo";

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let location = args.store.location()?;
    // Held through the serve that may follow: nothing else writes the demo's store meanwhile.
    let lock = args.store.lock_for("demo")?;
    let store = siyu_store::open(&location, siyu_store::Durability::Normal)?;
    let keys = demo_tenant(&*store, &location)?;
    let tenant = App::resolve_tenant(&*store, Some(TENANT))?;

    let cfg = gen_cmd::config(&args.brand, None)?;
    let work = match &location {
        Location::Sqlite(dir) => dir.join("demo"),
        Location::Postgres(_) => std::env::temp_dir().join("siyu-demo"),
    };
    std::fs::create_dir_all(&work)?;
    // One generated file per brand shape, kept and reused: the store already holds its
    // events, so a later run imports nothing and reports on them as time goes by.
    let stem = format!("brand-seed{}-{}fans-{}d", cfg.seed, cfg.fans, cfg.days);
    remove_dated_files(&work, &stem);
    let events_file = work.join(format!("{stem}.jsonl"));
    let truth_file = work.join(format!("{stem}.truth.csv"));
    if !events_file.exists() || !truth_file.exists() {
        if !args.json {
            errln!(
                "generating {} people over {} days ...",
                output::n(cfg.fans),
                cfg.days
            );
        }
        // Written under names of this process, then renamed into place: two demos that share
        // the work folder (on PostgreSQL it is the system's temporary one) never see each
        // other's half-written files, and the generator's output is the same for both.
        let pid = std::process::id();
        let partial = work.join(format!("{stem}.jsonl.{pid}.part"));
        let partial_truth = work.join(format!("{stem}.truth.csv.{pid}.part"));
        gen_cmd::write_files(&cfg, &partial, Some(&partial_truth))?;
        std::fs::rename(&partial_truth, &truth_file)?;
        std::fs::rename(&partial, &events_file)?;
    }

    let ingestor = Ingestor::start(store.clone(), EngineMode::WriteOnly)?;
    let summary = import::import_files(
        &import::Sink::Local(&ingestor),
        &tenant.name,
        tenant.id,
        &[(events_file.clone(), import::Format::Jsonl)],
        !args.json,
        siyu_domain::event::DEFAULT_MIN_TS,
    )?;
    drop(ingestor);
    store.flush()?;

    // The two ready SOPs, on today's events through the live engine (history starts no run).
    if !args.json {
        errln!("running two SOP journeys on today's events ...");
    }
    let journeys = sop::run(&store, &location, tenant.id, args.no_quiet_hours);
    store.flush()?;

    // What the brand paid, so CAC has a numerator: one generated row a day per paid channel.
    let now = siyu_domain::time::now_ms();
    let tz = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap_or(jiff::tz::TimeZone::UTC);
    let spend_file = work.join(format!("{stem}.spend.csv"));
    let (first_day, last_day) = siyu_app::spend::local_days(
        &tz,
        now - i64::from(cfg.days) * siyu_domain::time::MS_PER_DAY,
        now,
    );
    std::fs::write(&spend_file, spend_csv(first_day, last_day, cfg.seed))?;
    let spend_rows = siyu_app::spend::parse(&std::fs::read_to_string(&spend_file)?)
        .map_err(|e| anyhow::anyhow!("{}: {e}", spend_file.display()))?;
    store.put_spend(tenant.id, &spend_rows, now)?;

    let mut engine = siyu_app::identity::replay(&*store, tenant.id)?;
    let stats = engine.stats();
    // Fans against the generator's people, so the difference is explained by numbers.
    let truth = std::fs::read_to_string(&truth_file)?;
    let eval = engine.identities().evaluate(
        crate::identity::parse_truth(&truth)
            .map_err(|e| anyhow::anyhow!("{}: {e}", truth_file.display()))?,
    );
    let dedup = engine.dedup_report(None, None);
    let month_ago = now - 30 * siyu_domain::time::MS_PER_DAY;
    let funnel = engine.funnel(month_ago, now);
    let (cac_first, cac_last) = siyu_app::spend::local_days(&tz, month_ago, now);
    let cac = siyu_app::spend::cac_report(
        &store.spend(tenant.id, cac_first, cac_last + 1)?,
        &engine.acquired(month_ago, now),
        cac_first,
        cac_last,
    );
    let ltv = engine.ltv(now, &siyu_app::analytics::month_of(tz.clone()));
    let layers = engine.layers_as_of(now).counts();
    let flow = engine.flow(month_ago, now);
    let duplicates = engine.identities_mut().possible_duplicates().len();
    // One audience an operator would ask for, counted as of now.
    let audience = siyu_domain::audience::parse(DEMO_SEGMENT)
        .map_err(|e| anyhow::anyhow!("demo segment: {e}"))?;
    let audience = engine
        .audience(&audience, now)
        .map(|a| a.count())
        .unwrap_or(0);
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "tenant": TENANT,
                "store": location.describe(),
                "events_file": events_file,
                "truth_file": truth_file,
                "import": summary,
                "stats": stats,
                "people": eval,
                "dedup": dedup,
                "possible_duplicates": duplicates,
                "layers": layers,
                "flow_30d": flow,
                "segment": {"expr": DEMO_SEGMENT, "count": audience},
                "spend_file": spend_file,
                "funnel_30d": funnel,
                "cac_30d": cac,
                "ltv_by_layer": ltv.by_layer,
                "journeys": match &journeys {
                    Ok(o) => o.to_json(),
                    Err(e) => json!({"error": format!("{e:#}")}),
                },
            }))?
        );
    } else {
        print_report(&location, &events_file, &summary, &stats, &eval);
        outln!();
        crate::report::print_layers(&layers, now);
        outln!();
        crate::report::print_flow(&flow);
        outln!();
        crate::report::print_dedup(&dedup);
        outln!();
        outln!(
            "  {} pairs of fans share a phone or email but hold different accounts (family phones):",
            output::n(duplicates as u64)
        );
        outln!("  kept apart for review — `siyu identity duplicates`");
        outln!(
            "  score the resolution against the generator's truth: siyu identity eval --truth {}",
            truth_file.display()
        );
        outln!();
        outln!("Segment 精准筛选");
        outln!("  {DEMO_SEGMENT}");
        outln!(
            "  → {} fans; try your own: siyu segment count '...' (docs/segments.md)",
            output::n(audience as u64)
        );
        outln!();
        crate::report::print_funnel(&funnel);
        outln!();
        crate::report::print_cac(&cac);
        outln!(
            "  spend from {} — import yours: siyu import-spend FILE.csv",
            spend_file.display()
        );
        outln!();
        crate::report::print_ltv_by_layer(&ltv);
        outln!("  more: siyu report attribution | ltv | retention (docs/analytics.md)");
        outln!();
        match &journeys {
            Ok(o) => sop::print(o),
            Err(e) => outln!("SOP journeys 标准化经营步骤 — not run: {e:#}"),
        }
        if !args.serve {
            outln!();
            outln!("  Next: `siyu demo --serve` serves this brand on http://127.0.0.1:8080");
        }
    }

    if args.serve {
        drop(store);
        let banner = move |addr: &str| print_serve_banner(addr, keys.as_ref());
        crate::serve::serve_at(&location, &args.addr, Some(&banner), lock)?;
    }
    Ok(())
}

/// A spend file for the demo brand: each local day of `first_day..=last_day`, what it paid
/// the channels its generated leads come from (ad and oceanengine in the commercial domain,
/// live streams' promotion in the public one), varying by day of the week and with the seed.
fn spend_csv(first_day: i32, last_day: i32, seed: u64) -> String {
    let mut out = String::from("date,channel,domain,amount\n");
    for day in first_day..=last_day {
        let date = siyu_app::spend::date_of(day);
        // Weekends cost more (more people watch); the seed shifts the week.
        let weekday = (i64::from(day) + 4 + seed as i64).rem_euclid(7);
        let lift = if weekday >= 5 { 1.3 } else { 1.0 };
        for (channel, domain, base) in [
            ("ad", "commercial", 900.0),
            ("oceanengine", "commercial", 600.0),
            ("live", "public", 300.0),
        ] {
            let yuan: f64 = base * lift + f64::from((day.rem_euclid(13)) * 10);
            out.push_str(&format!("{date},{channel},{domain},{yuan:.2}\n"));
        }
    }
    out
}

/// Removes what earlier versions generated under a dated name (`STEM-YYYYMMDD.*`), one
/// 230 MB file per calendar day, and half-written files left by a generation cut short.
fn remove_dated_files(work: &Path, stem: &str) {
    let Ok(dir) = std::fs::read_dir(work) else {
        return;
    };
    let prefix = format!("{stem}-");
    for entry in dir.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let dated = name
            .strip_prefix(&prefix)
            .is_some_and(|rest| rest.len() > 8 && rest[..8].bytes().all(|b| b.is_ascii_digit()));
        // A generation cut short leaves its `.part` files; one an hour old is nobody's.
        let stale_part = name.ends_with(".part")
            && entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > std::time::Duration::from_secs(3600));
        if dated || stale_part {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The audience the demo counts: favorable fans who watched lives this week but have not bought.
const DEMO_SEGMENT: &str =
    "layer >= favorable and count(live_watch, 7d) >= 1 and not count(order, 30d) > 0";

/// Creates the demo tenant once and keeps its keys beside the data (the demo is local), so a
/// later `siyu demo --serve` can show them again.
fn demo_tenant(store: &dyn Store, location: &Location) -> anyhow::Result<Option<TenantKeys>> {
    let keys_file: Option<PathBuf> = match location {
        Location::Sqlite(dir) => Some(dir.join("demo-keys.json")),
        Location::Postgres(_) => None,
    };
    if store.tenants()?.iter().any(|t| t.name == TENANT) {
        return Ok(keys_file.and_then(|p| read_keys(&p)));
    }
    let keys = siyu_app::tenants::create(store, &siyu_app::TenantName::parse(TENANT)?)?;
    if let Some(p) = keys_file {
        std::fs::write(&p, serde_json::to_string_pretty(&keys)?)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600));
        }
    }
    Ok(Some(keys))
}

fn read_keys(p: &Path) -> Option<TenantKeys> {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()?;
    Some(TenantKeys {
        tenant: v["tenant"].as_str()?.to_string(),
        write_key: v["write_key"].as_str()?.to_string(),
        admin_key: v["admin_key"].as_str()?.to_string(),
    })
}

fn bar(x: u64, max: u64, width: usize) -> String {
    let k = if max == 0 {
        0
    } else {
        (x as f64 / max as f64 * width as f64).round() as usize
    };
    "█".repeat(k.max(usize::from(x > 0)))
}

fn print_report(
    location: &Location,
    file: &Path,
    s: &import::ImportSummary,
    stats: &siyu_engine::Stats,
    eval: &siyu_engine::identity::Evaluation,
) {
    outln!();
    outln!("Siyu 私域 demo — tenant {TENANT}, {}", location.describe());
    outln!("  source: {}", file.display());
    outln!(
        "  import: {} accepted, {} duplicates, {} rejected in {:.1} s ({} events/s)",
        output::n(s.accepted),
        output::n(s.duplicates),
        output::n(s.rejected),
        s.seconds,
        output::n(s.events_per_second as u64)
    );
    outln!();
    outln!(
        "  {} events resolved to {} fans 粉丝 — a fan is one person as far as the events show",
        output::n(stats.events),
        output::n(stats.fans)
    );
    outln!(
        "  the generator made {} people: {} of them are still split over two or more fans,",
        output::n(eval.people),
        output::n(eval.split_people)
    );
    outln!(
        "  because no event ever carried two of their ids together (pairwise precision {:.4}, recall {:.4})",
        eval.precision,
        eval.recall
    );
    outln!();
    outln!("  Events by domain");
    let max = stats.by_domain.values().copied().max().unwrap_or(0);
    for d in Domain::ALL {
        let x = stats.by_domain.get(d.as_str()).copied().unwrap_or(0);
        outln!(
            "    {} {:<11} {:>12}  {}",
            d.label_zh(),
            d.label_en(),
            output::n(x),
            bar(x, max, 40)
        );
    }
    outln!();
    outln!("  Events by type");
    let mut types: Vec<_> = stats.by_type.iter().collect();
    types.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let max = types.first().map(|t| *t.1).unwrap_or(0);
    for (t, x) in types {
        outln!("    {:<20} {:>12}  {}", t, output::n(*x), bar(*x, max, 40));
    }
}

fn print_serve_banner(addr: &str, keys: Option<&TenantKeys>) {
    outln!();
    outln!("Serving on http://{addr}  (Ctrl-C stops)");
    match keys {
        Some(k) => {
            outln!("  write key: {}", k.write_key);
            outln!("  admin key: {}", k.admin_key);
            outln!();
            outln!(
                "  curl -s http://{addr}/api/stats -H 'Authorization: Bearer {}'",
                k.admin_key
            );
            outln!(
                "  curl -s http://{addr}/api/events -H 'Authorization: Bearer {}' -H 'Content-Type: application/json' \\\n    -d '[{{\"id\":\"hello-1\",\"type\":\"follow\",\"ts\":\"{}\",\"identities\":{{\"phone\":\"138 0013 8000\"}}}}]'",
                k.write_key,
                siyu_domain::time::format_rfc3339(siyu_domain::time::now_ms())
            );
        }
        None => outln!("  (the demo tenant's keys were printed when it was created)"),
    }
}
