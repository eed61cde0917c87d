//! `siyu bench leads`: lead routing end to end on the embedded store (and PostgreSQL with
//! `--postgres`) — `--leads` lead forms, `--repeats` of them from people who already left one
//! (through another channel), routed by the lead worker across `--agents` agents of one
//! `round_robin` team, with capacity and working-hour checks on the way:
//!
//! - a tenth of the agents are outside their working hours for the whole run (their hours
//!   begin an hour after the run starts, in the tenant's time zone);
//! - a tenth have a capacity of 50 open leads, and fill up;
//! - the rest can take any number.
//!
//! The forms are taken in first (timed apart); the worker then starts cold and the clock
//! stops when every form is a lead or an arrival on one. Reported: assignments per second,
//! the fairness of round robin among the agents who could always take a lead (most leads over
//! fewest), how many agents of each kind got leads, and the second follow-ups the repeats
//! created — leads of a person who already had an open one — which must be 0.

use std::collections::HashMap;
use std::time::Instant;

use serde_json::{Value, json};
use siyu_app::leads::worker::LeadWorker;
use siyu_app::leads::{AgentSpec, TeamSpec};
use siyu_domain::time::{Clock, SystemClock};
use siyu_store::leads::LeadFilter;

use crate::bench_journeys::{Place, fresh};
use crate::output;

/// The forms: `leads` of them, a `repeats` share from people seen before (through another
/// channel), the rest from new people; deterministic.
fn forms(leads: u64, repeats: f64, ts: i64) -> Vec<Value> {
    let channels = ["live", "ad", "private_message"];
    let mut people = 0u64;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..leads)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let repeat = people > 0 && (x % 10_000) as f64 / 10_000.0 < repeats;
            let who = if repeat {
                (x >> 20) % people
            } else {
                people += 1;
                people - 1
            };
            json!({"id": format!("form-{i}"), "type": "lead_form",
                   "ts": siyu_domain::time::format_rfc3339(ts),
                   "identities": {"phone": format!("139{who:08}")},
                   "props": {"channel": channels[(i % 3) as usize]}})
        })
        .collect()
}

fn run_one(
    place: Place,
    leads: u64,
    agents: u64,
    repeats: f64,
    say: &dyn Fn(&str),
) -> anyhow::Result<Value> {
    say(&format!("{}:", place.name()));
    let b = fresh(place)?;
    let err = |e: siyu_app::leads::LeadsError| anyhow::anyhow!("{e}");
    b.app
        .put_team(
            b.tenant,
            &TeamSpec {
                name: "tmk".into(),
                strategy: Some("round_robin".into()),
                first_contact: Some("2h".into()),
                ..TeamSpec::default()
            },
        )
        .map_err(err)?;
    // Hours that begin an hour from now and last an hour: outside them for the whole run.
    let minute = b
        .app
        .lead_minute(b.tenant, SystemClock.now())
        .map_err(err)?;
    let t = |m: u16| format!("{:02}:{:02}", (m % 1440) / 60, m % 60);
    let later = format!("{}-{}", t(minute + 60), t(minute + 120));
    let mut kinds: HashMap<String, &'static str> = HashMap::new();
    for i in 0..agents {
        let name = format!("agent{i:03}");
        let (kind, capacity, hours) = match i % 10 {
            0 => ("off_hours", None, Some(later.clone())),
            1 => ("capacity_50", Some(50), None),
            _ => ("unlimited", None, None),
        };
        kinds.insert(name.clone(), kind);
        b.app
            .put_agent(
                b.tenant,
                &AgentSpec {
                    name,
                    team: Some("tmk".into()),
                    capacity,
                    hours,
                    ..AgentSpec::default()
                },
            )
            .map_err(err)?;
    }
    say(&format!("taking in {} lead forms ...", output::n(leads)));
    let t0 = Instant::now();
    b.ingest(forms(leads, repeats, SystemClock.now() - 60_000))?;
    let ingest_s = t0.elapsed().as_secs_f64();
    say("routing ...");
    let mut w = LeadWorker::new(b.app.clone());
    let t0 = Instant::now();
    let (mut new, mut repeated, mut assigned, mut steps) = (0usize, 0usize, 0usize, 0usize);
    loop {
        let r = w.step(SystemClock.now()).map_err(err)?;
        steps += 1;
        new += r.new_leads;
        repeated += r.repeats;
        assigned += r.assigned;
        if !r.more && new + repeated >= leads as usize {
            break;
        }
        anyhow::ensure!(steps < 100_000, "the worker did not finish");
    }
    let s = t0.elapsed().as_secs_f64();
    let all = b
        .app
        .leads(
            b.tenant,
            &LeadFilter {
                limit: usize::MAX >> 1,
                ..LeadFilter::default()
            },
        )
        .map_err(err)?;
    let mut per_fan: HashMap<i64, usize> = HashMap::new();
    let mut per_agent: HashMap<String, i64> = HashMap::new();
    for l in &all {
        *per_fan.entry(l.fan).or_default() += 1;
        if let Some(o) = &l.owner {
            *per_agent.entry(o.clone()).or_default() += 1;
        }
    }
    let second_follow_ups: usize = per_fan.values().map(|n| n - 1).sum();
    let by_kind = |k: &str| -> Vec<i64> {
        kinds
            .iter()
            .filter(|(_, v)| **v == k)
            .map(|(n, _)| per_agent.get(n).copied().unwrap_or(0))
            .collect()
    };
    let eligible = by_kind("unlimited");
    let fairness = siyu_leads::route::fairness(&eligible);
    let pooled = all.iter().filter(|l| l.owner.is_none()).count();
    Ok(json!({
        "lead_forms": leads,
        "repeat_share_asked": repeats,
        "agents": agents,
        "new_leads": new,
        "repeats_absorbed": repeated,
        "assigned": assigned,
        "pooled": pooled,
        "seconds": s,
        "worker_steps": steps,
        "assignments_per_second": assigned as f64 / s,
        "forms_per_second": leads as f64 / s,
        "round_robin_fairness_max_over_min": fairness,
        "eligible_min_max": [eligible.iter().min(), eligible.iter().max()],
        "leads_to_off_hours_agents": by_kind("off_hours").iter().sum::<i64>(),
        "leads_to_capacity_50_agents": by_kind("capacity_50").iter().sum::<i64>(),
        "capacity_50_agents_over_50": by_kind("capacity_50").iter().filter(|n| **n > 50).count(),
        "second_follow_ups": second_follow_ups,
        "ingest_seconds_before": ingest_s,
        "includes": "the lead worker from a cold start: reading the trigger stream, each form's fan from the live engine, repeat detection against open leads, the rules (none here: one team), round robin with the capacity and working-hour checks, and each step's commit of leads, arrivals, log lines and day counts; the forms' ingest is timed apart",
    }))
}

/// Runs the benchmark and prints its result.
pub fn run(
    leads: u64,
    agents: u64,
    repeats: f64,
    postgres: Option<&str>,
    json_out: bool,
) -> anyhow::Result<()> {
    let say = |s: &str| {
        if !json_out {
            errln!("{s}");
        }
    };
    anyhow::ensure!(
        (0.0..1.0).contains(&repeats),
        "--repeats is a share from 0 to below 1"
    );
    anyhow::ensure!(
        agents >= 10,
        "--agents: at least 10 (a tenth of them are kept off hours)"
    );
    let sqlite = run_one(Place::sqlite()?, leads, agents, repeats, &say)?;
    let pg = match postgres {
        Some(url) => Some(run_one(
            Place::postgres(url)?,
            leads,
            agents,
            repeats,
            &say,
        )?),
        None => None,
    };
    let mut result = json!({"sqlite": sqlite});
    if let Some(p) = &pg {
        result["postgres"] = p.clone();
    }
    if json_out {
        outln!("{}", serde_json::to_string_pretty(&result)?);
        return Ok(());
    }
    for (name, r) in
        std::iter::once(("SQLite", &sqlite)).chain(pg.iter().map(|p| ("PostgreSQL", p)))
    {
        outln!(
            "{name}: {} assignments/s ({} forms: {} leads, {} repeats absorbed; {} assigned in {:.2} s); round-robin fairness {:.3}; second follow-ups {}",
            output::n(r["assignments_per_second"].as_f64().unwrap_or(0.0) as u64),
            output::n(leads),
            output::n(r["new_leads"].as_u64().unwrap_or(0)),
            output::n(r["repeats_absorbed"].as_u64().unwrap_or(0)),
            output::n(r["assigned"].as_u64().unwrap_or(0)),
            r["seconds"].as_f64().unwrap_or(0.0),
            r["round_robin_fairness_max_over_min"]
                .as_f64()
                .unwrap_or(f64::NAN),
            r["second_follow_ups"],
        );
    }
    Ok(())
}
