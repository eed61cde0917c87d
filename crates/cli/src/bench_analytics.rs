//! `siyu bench analytics`: every report of docs/analytics.md timed on a generated brand's
//! engine (what the server's handlers call on its readers' pool; the HTTP round trip and the
//! JSON are not in the figure), and with `--duckdb` the same attribution, LTV and retention
//! in SQL over the same events (bench/analytics_duckdb.py), their figures compared.

use serde_json::{Value, json};
use siyu_domain::Millis;
use siyu_domain::time::MS_PER_DAY;

use crate::bench::{brand, duckdb_script, events_csv};

/// UTC+8: the brand's local time (Asia/Shanghai has no daylight saving).
const OFFSET_MS: Millis = 8 * 3_600_000;

/// Weeks in the local calendar for the benchmark (Monday first, UTC+8).
struct Shanghai;

impl siyu_engine::analytics::Weeks for Shanghai {
    fn week_of(&self, t: Millis) -> i64 {
        ((t + OFFSET_MS).div_euclid(MS_PER_DAY) - 4).div_euclid(7)
    }
    fn start_of(&self, week: i64) -> Millis {
        (week * 7 + 4) * MS_PER_DAY - OFFSET_MS
    }
    fn name_of(&self, week: i64) -> String {
        siyu_app::spend::date_of(i32::try_from(week * 7 + 4).unwrap_or(0))
    }
}

fn month(t: Millis) -> String {
    siyu_domain::time::format_rfc3339(t + OFFSET_MS)[..7].to_string()
}

/// Median and minimum seconds of 5 runs, and the last run's answer.
fn time<T>(f: impl FnMut() -> T) -> (f64, f64, T) {
    crate::bench::timed(5, f)
}

pub fn run(
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
    let b = brand(fans, days, false, &say)?;
    let (e, to) = (&b.engine, b.as_of);
    let from = to - 30 * MS_PER_DAY;
    say("timing every report 5 times ...");
    let mut reports = serde_json::Map::new();
    let mut put = |name: &str, (median, min, _): (f64, f64, ())| {
        reports.insert(
            name.to_string(),
            json!({"seconds_median": median, "seconds_min": min}),
        );
    };
    put("funnel_30d", time(|| drop(e.funnel(from, to))));
    let instants: Vec<Millis> = (0..=30).map(|d| from + d * MS_PER_DAY).collect();
    put(
        "flow_series_31_points",
        time(|| drop(e.layer_series(&instants))),
    );
    let (m, n, attribution) = time(|| e.attribution(from, to));
    put("attribution_30d", (m, n, ()));
    put("acquired_30d", time(|| drop(e.acquired(from, to))));
    let (m, n, ltv) = time(|| e.ltv(to, &month));
    put("ltv", (m, n, ()));
    let retention_from = to - 12 * 7 * MS_PER_DAY;
    let (m, n, retention) = time(|| e.retention(retention_from, to, to, 12, &Shanghai));
    put("retention_12_weeks", (m, n, ()));
    let (m, n, fit) = time(|| {
        let buyers = e.buyers(to, OFFSET_MS);
        let customers: Vec<siyu_ltv::Customer> = buyers
            .iter()
            .filter(|b| b.age > 0.0)
            .enumerate()
            .filter_map(|(i, b)| {
                let m = (b.frequency > 0).then_some(b.monetary_fen / 100.0);
                siyu_ltv::Customer::parse(i as u64, f64::from(b.frequency), b.recency, b.age, m)
                    .ok()
            })
            .collect();
        (
            customers.len(),
            siyu_ltv::fit_bgnbd(&customers)
                .map(|f| f.params)
                .map_err(|e| e.code()),
        )
    });
    put("predictive_fit", (m, n, ()));
    let mut result = json!({
        "fans": b.engine.stats().fans,
        "events": b.events,
        "as_of": siyu_domain::time::format_rfc3339(to),
        "includes": "each report computed on the engine, as the server's handler calls it on the readers' pool; generating and applying the brand, the HTTP round trip and the JSON are not included",
        "reports": reports,
        "attribution": {"orders": attribution.orders, "revenue_fen": attribution.revenue_fen, "crossed": attribution.crossed},
        "ltv_total": ltv.total,
        "retention_cohorts": retention.cohorts.len(),
        "predictive_buyers": fit.0,
        "predictive_bgnbd": match &fit.1 { Ok(p) => json!(p), Err(code) => json!({"error": code}) },
    });
    if duckdb {
        let tmp = tempfile::tempdir()?;
        let dir = work.unwrap_or_else(|| tmp.path().to_path_buf());
        let csv_path = events_csv(e, &dir, &say)?;
        let d = duckdb_script(
            "analytics_duckdb.py",
            &[
                csv_path.display().to_string(),
                from.to_string(),
                to.to_string(),
            ],
            &say,
        )?;
        let ours_first: Vec<Value> = attribution
            .by_domain
            .iter()
            .map(|c| {
                json!([
                    c.domain,
                    c.first_touch.orders as u64,
                    c.first_touch.revenue_fen as u64
                ])
            })
            .collect();
        let same_attribution = d["attribution"]["orders"] == json!(attribution.orders)
            && d["attribution"]["revenue_fen"] == json!(attribution.revenue_fen)
            && d["attribution"]["first_touch"] == json!(ours_first);
        let same_ltv = d["ltv"]["fans"] == json!(ltv.total.fans)
            && d["ltv"]["revenue_fen"] == json!(ltv.total.revenue_fen)
            && d["ltv"]["repeat_buyers"] == json!(ltv.total.repeat_buyers);
        let ratio = |ours: &str, theirs: &str| {
            d["seconds"][theirs].as_f64().unwrap_or(f64::NAN)
                / result["reports"][ours]["seconds_median"]
                    .as_f64()
                    .unwrap_or(f64::NAN)
        };
        let speedup = json!({
            "attribution_30d": ratio("attribution_30d", "attribution"),
            "ltv": ratio("ltv", "ltv"),
            "retention_12_weeks": ratio("retention_12_weeks", "retention"),
        });
        result["duckdb"] = d.clone();
        result["identical"] = json!({"attribution": same_attribution, "ltv": same_ltv});
        result["speedup_vs_duckdb"] = speedup;
    }
    outln!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}
