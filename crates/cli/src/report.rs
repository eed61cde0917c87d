//! `siyu report layers|flow|funnel|attribution|ltv|retention|dedup`.

use siyu_engine::DedupReport;

use crate::cli::{ReportArgs, ReportCommand, parse_time};
use crate::output;

pub fn run(args: ReportArgs) -> anyhow::Result<()> {
    let (app, tenant) = args.at.open()?;
    match args.command {
        ReportCommand::Layers { as_of } => {
            let t = match as_of {
                Some(t) => parse_time("--as-of", &t)?,
                None => siyu_domain::time::now_ms(),
            };
            let counts = app.layers(tenant.id, t)?;
            if args.json {
                output::json(&serde_json::json!({
                    "as_of": siyu_domain::time::format_rfc3339(t),
                    "potential": counts.potential,
                    "passerby": counts.passerby,
                    "favorable": counts.favorable,
                    "true_love": counts.true_love,
                    "total": counts.total(),
                }))?;
            } else {
                print_layers(&counts, t);
            }
        }
        ReportCommand::Flow { from, to } => {
            let from = parse_time("--from", &from)?;
            let to = parse_time("--to", &to)?;
            anyhow::ensure!(from < to, "--from must be before --to");
            let flow = app.flow(tenant.id, from, to)?;
            let (step, daily) = app.flow_series(tenant.id, from, to)?;
            if args.json {
                let mut v = serde_json::to_value(&flow)?;
                v["daily"] = serde_json::to_value(&daily)?;
                v["step_days"] = step.into();
                output::json(&v)?;
            } else {
                print_flow(&flow);
                print_series(&daily, step);
            }
        }
        ReportCommand::Funnel { from, to } => {
            let (from, to) = period(from, to, 30)?;
            let f = app.funnel(tenant.id, from, to)?;
            if args.json {
                output::json(&f)?;
            } else {
                print_funnel(&f);
            }
        }
        ReportCommand::Attribution { from, to } => {
            let (from, to) = period(from, to, 30)?;
            let a = app.attribution(tenant.id, from, to)?;
            if args.json {
                output::json(&a)?;
            } else {
                print_attribution(&a);
            }
        }
        ReportCommand::Ltv { as_of } => {
            let as_of = match as_of {
                Some(t) => parse_time("--as-of", &t)?,
                None => siyu_domain::time::now_ms(),
            };
            let r = app.ltv(tenant.id, as_of)?;
            if args.json {
                output::json(&r)?;
            } else {
                print_ltv(&r);
            }
        }
        ReportCommand::Retention {
            from,
            to,
            as_of,
            weeks,
        } => {
            anyhow::ensure!(
                (1..=siyu_app::analytics::MAX_WEEKS).contains(&weeks),
                "--weeks {weeks} is not 1 to {}",
                siyu_app::analytics::MAX_WEEKS
            );
            let (from, to) = period(from, to, 7 * weeks as i64)?;
            let as_of = match as_of {
                Some(t) => parse_time("--as-of", &t)?,
                None => siyu_domain::time::now_ms(),
            };
            let r = app.retention(tenant.id, from, to, as_of, weeks)?;
            if args.json {
                output::json(&r)?;
            } else {
                print_retention(&r);
            }
        }
        ReportCommand::Cac { from, to } => {
            let (from, to) = period(from, to, 30)?;
            let r = app.cac(tenant.id, from, to)?;
            if args.json {
                output::json(&r)?;
            } else {
                print_cac(&r);
            }
        }
        ReportCommand::Dedup { from, to } => {
            let from = from.map(|f| parse_time("--from", &f)).transpose()?;
            let to = to.map(|t| parse_time("--to", &t)).transpose()?;
            let report = app.dedup_report(tenant.id, from, to)?;
            if args.json {
                output::json(&report)?;
            } else {
                print_dedup(&report);
            }
        }
    }
    Ok(())
}

pub fn print_dedup(r: &DedupReport) {
    outln!("Lead dedup 线索去重");
    outln!(
        "  {:<18} {:>10} {:>10} {:>12} {:>8}",
        "channel",
        "leads",
        "people",
        "repeat leads",
        "repeat%"
    );
    for row in r.channels.iter().chain(std::iter::once(&r.total)) {
        outln!(
            "  {:<18} {:>10} {:>10} {:>12} {:>7.1}%",
            row.channel,
            output::n(row.leads),
            output::n(row.people),
            output::n(row.repeat_leads),
            row.repeat_ratio * 100.0
        );
    }
    outln!(
        "  {} people left leads through more than one channel",
        output::n(r.multi_channel_people)
    );
    if r.channels.len() > 1 {
        outln!("  overlap (people with leads in both)");
        out!("  {:<18}", "");
        for c in &r.channels {
            out!(" {:>16}", c.channel);
        }
        outln!();
        for (i, c) in r.channels.iter().enumerate() {
            out!("  {:<18}", c.channel);
            for x in &r.overlap[i] {
                out!(" {:>16}", output::n(*x));
            }
            outln!();
        }
    }
}

/// The funnel, widest layer at the top.
pub fn print_layers(c: &siyu_engine::LayerCounts, as_of: i64) {
    use siyu_domain::Layer;
    outln!(
        "Fan layers 粉丝分层 as of {}",
        siyu_domain::time::format_rfc3339(as_of)
    );
    let max = Layer::ALL
        .iter()
        .map(|l| c.get(*l))
        .max()
        .unwrap_or(0)
        .max(1);
    for l in Layer::ALL {
        let n = c.get(l);
        let bar = "█".repeat(((n as f64 / max as f64) * 40.0).round() as usize);
        let pct = if c.total() == 0 {
            0.0
        } else {
            n as f64 * 100.0 / c.total() as f64
        };
        outln!(
            "  {} {:<10} {:>10} {:>5.1}%  {bar}",
            l.label_zh(),
            l.label_en(),
            output::n(n),
            pct
        );
    }
    outln!("  {:>25} fans", output::n(c.total()));
}

/// The transition matrix: rows where fans were, columns where they are.
pub fn print_flow(f: &siyu_engine::Flow) {
    use siyu_domain::Layer;
    outln!(
        "Layer flow from {} to {}",
        siyu_domain::time::format_rfc3339(f.from),
        siyu_domain::time::format_rfc3339(f.to)
    );
    out!("  {:<16}", "from \\ to");
    for l in Layer::ALL {
        out!(" {:>12}", l.label_zh());
    }
    outln!();
    for (i, row) in f.matrix.iter().enumerate() {
        let label = if i < 4 {
            Layer::ALL[i].label_zh()
        } else {
            "新增 new"
        };
        out!("  {:<16}", label);
        for n in row {
            out!(" {:>12}", output::n(*n));
        }
        outln!();
    }
    let (up, down, same) = f.moves();
    let new: u64 = f.matrix[4].iter().sum();
    outln!(
        "  {} moved up, {} moved down, {} stayed, {} new",
        output::n(up),
        output::n(down),
        output::n(same),
        output::n(new)
    );
}

/// `--from` and `--to`, the end defaulting to now and the start to `days` before it.
fn period(from: Option<String>, to: Option<String>, days: i64) -> anyhow::Result<(i64, i64)> {
    let to = match to {
        Some(t) => parse_time("--to", &t)?,
        None => siyu_domain::time::now_ms(),
    };
    let from = match from {
        Some(f) => parse_time("--from", &f)?,
        None => to - days * siyu_domain::time::MS_PER_DAY,
    };
    anyhow::ensure!(from < to, "--from must be before --to");
    Ok((from, to))
}

/// Fen as yuan: `¥1,234.56`.
pub fn yuan(fen: f64) -> String {
    let cents = fen.round().max(0.0) as u64;
    format!("¥{}.{:02}", output::n(cents / 100), cents % 100)
}

fn pct(r: Option<f64>) -> String {
    r.map_or("-".into(), |r| format!("{:.1}%", r * 100.0))
}

fn layer_zh(key: &str) -> &'static str {
    key.parse::<siyu_domain::Layer>()
        .map_or("", siyu_domain::Layer::label_zh)
}

fn domain_zh(key: &str) -> &'static str {
    key.parse::<siyu_domain::Domain>()
        .map_or("", siyu_domain::Domain::label_zh)
}

pub fn print_funnel(f: &siyu_engine::analytics::Funnel) {
    outln!(
        "Layer funnel 转化漏斗 from {} to {}",
        siyu_domain::time::format_rfc3339(f.from),
        siyu_domain::time::format_rfc3339(f.to)
    );
    for s in &f.steps {
        let bar = "█".repeat((s.rate.unwrap_or(0.0) * 40.0).round() as usize);
        outln!(
            "  {} → {}  {:>10} of {:>10}  {:>6}  {bar}",
            layer_zh(s.from),
            layer_zh(s.to),
            output::n(s.reached),
            output::n(s.fans),
            pct(s.rate),
        );
    }
    outln!(
        "  fans {} at the start, {} at the end ({} new in between)",
        output::n(f.at_from.total()),
        output::n(f.at_to.total()),
        output::n(f.new_fans.total())
    );
}

pub fn print_attribution(a: &siyu_engine::analytics::Attribution) {
    outln!(
        "Three-domain attribution 三域归因, orders from {} to {}",
        siyu_domain::time::format_rfc3339(a.from),
        siyu_domain::time::format_rfc3339(a.to)
    );
    outln!(
        "  {:<18} {:>22} {:>22} {:>22}",
        "domain 域",
        "first touch 首触",
        "last touch 末触",
        "linear 线性"
    );
    let cell = |c: &siyu_engine::analytics::Credit| {
        format!("{:>8.1} {:>13}", c.orders, yuan(c.revenue_fen))
    };
    for d in &a.by_domain {
        outln!(
            "  {:<18} {:>22} {:>22} {:>22}",
            format!("{} {}", domain_zh(d.domain), d.domain),
            cell(&d.first_touch),
            cell(&d.last_touch),
            cell(&d.linear)
        );
    }
    outln!(
        "  {} orders by {} buyers, {}; {} crossed domains ({})",
        output::n(a.orders),
        output::n(a.buyers),
        yuan(a.revenue_fen as f64),
        output::n(a.crossed),
        pct(a.crossed_rate)
    );
}

/// The LTV by layer only (the demo's headline).
pub fn print_ltv_by_layer(r: &siyu_engine::analytics::LtvReport) {
    outln!("Lifetime value by layer 分层价值 (revenue per fan, all time)");
    for x in &r.by_layer {
        outln!(
            "  {:<10} {:>10} fans  {:>12} per fan  repeat {:>6}",
            layer_zh(&x.key),
            output::n(x.fans),
            x.revenue_per_fan_fen.map_or("-".into(), yuan),
            pct(x.repeat_rate)
        );
    }
}

pub fn print_ltv(r: &siyu_engine::analytics::LtvReport) {
    outln!(
        "Lifetime value 生命周期价值 as of {}",
        siyu_domain::time::format_rfc3339(r.as_of)
    );
    let table =
        |title: &str, rows: &[siyu_engine::analytics::LtvRow], label: &dyn Fn(&str) -> String| {
            outln!(
                "  {:<22} {:>10} {:>9} {:>9} {:>15} {:>11} {:>8}",
                title,
                "fans",
                "buyers",
                "orders",
                "revenue",
                "per fan",
                "repeat"
            );
            for x in rows {
                outln!(
                    "  {:<22} {:>10} {:>9} {:>9} {:>15} {:>11} {:>8}",
                    label(&x.key),
                    output::n(x.fans),
                    output::n(x.buyers),
                    output::n(x.orders),
                    yuan(x.revenue_fen as f64 - x.refunds_fen as f64),
                    x.revenue_per_fan_fen.map_or("-".into(), yuan),
                    pct(x.repeat_rate)
                );
            }
        };
    table("cohort 获客月", &r.by_cohort, &|k| k.to_string());
    table("first domain 首触域", &r.by_first_domain, &|k| {
        format!("{} {k}", domain_zh(k))
    });
    table("layer 分层", &r.by_layer, &|k| {
        format!("{} {k}", layer_zh(k))
    });
    table("total 合计", std::slice::from_ref(&r.total), &|_| {
        "".into()
    });
}

pub fn print_retention(r: &siyu_engine::analytics::Retention) {
    outln!(
        "Weekly retention 周留存, cohorts first seen from {} to {}, activity to {}",
        siyu_domain::time::format_rfc3339(r.from),
        siyu_domain::time::format_rfc3339(r.to),
        siyu_domain::time::format_rfc3339(r.as_of)
    );
    if r.cohorts.is_empty() {
        outln!("  no fan was first seen in the period");
        return;
    }
    out!("  {:<12} {:>9}", "week 周", "fans");
    for k in 0..r.weeks {
        out!(" {:>6}", format!("w{k}"));
    }
    outln!();
    for c in &r.cohorts {
        out!("  {:<12} {:>9}", c.week, output::n(c.fans));
        for rate in &c.rates {
            out!(" {:>6}", format!("{:.0}%", rate * 100.0));
        }
        outln!();
    }
}

pub fn print_cac(r: &siyu_app::spend::CacReport) {
    outln!(
        "Acquisition cost 获客成本 from {} to {} (spend of {} to {})",
        siyu_domain::time::format_rfc3339(r.from),
        siyu_domain::time::format_rfc3339(r.to),
        r.first_day,
        r.last_day
    );
    let row = |label: String, c: &siyu_app::spend::CacRow| {
        outln!(
            "  {:<22} {:>14} {:>10} {:>10} {:>8} {:>12} {:>12}",
            label,
            yuan(c.spend_fen as f64),
            output::n(c.new_followers),
            output::n(c.unique_leads),
            output::n(c.repeat_leads),
            c.cac_per_follower_fen.map_or("-".into(), yuan),
            c.cac_per_lead_fen.map_or("-".into(), yuan)
        );
    };
    let head = |title: &str| {
        outln!(
            "  {:<22} {:>14} {:>10} {:>10} {:>8} {:>12} {:>12}",
            title,
            "spend",
            "followers",
            "leads",
            "repeats",
            "CAC/follower",
            "CAC/lead"
        );
    };
    head("channel 渠道");
    for c in &r.by_channel {
        row(c.key.clone(), c);
    }
    head("domain 域");
    for c in &r.by_domain {
        row(format!("{} {}", domain_zh(&c.key), c.key), c);
    }
    row("total 合计".into(), &r.total);
    if r.total.spend_fen == 0 {
        outln!("  no spend for these days: import it with `siyu import-spend FILE.csv`");
    }
}

pub fn print_predicted(p: &siyu_app::analytics::PredictedLtv) {
    outln!(
        "Predicted lifetime value 预测价值, the next {} days from {}",
        p.horizon_days,
        siyu_domain::time::format_rfc3339(p.as_of)
    );
    let b = &p.bgnbd.params;
    outln!(
        "  BG/NBD: r {:.4}, alpha {:.4} days, a {:.4}, b {:.4}; log-likelihood {:.1} over {} buyers",
        b.r,
        b.alpha,
        b.a,
        b.b,
        p.bgnbd.log_likelihood,
        output::n(p.bgnbd.customers)
    );
    match (&p.gamma_gamma, &p.gamma_gamma_error) {
        (Some(g), _) => outln!(
            "  Gamma-Gamma: p {:.4}, q {:.4}, v {:.4} yuan; log-likelihood {:.1} over {} repeat buyers",
            g.params.p,
            g.params.q,
            g.params.v,
            g.log_likelihood,
            output::n(g.customers)
        ),
        (None, Some(e)) => outln!("  Gamma-Gamma not fitted, so no revenue: {e}"),
        (None, None) => {}
    }
    let table = |title: &str,
                 rows: &[siyu_app::analytics::PredictedRow],
                 label: &dyn Fn(&str) -> String| {
        outln!(
            "  {:<22} {:>9} {:>9} {:>10} {:>12} {:>15}",
            title,
            "buyers",
            "P(alive)",
            "likely",
            "orders",
            "revenue"
        );
        for r in rows {
            outln!(
                "  {:<22} {:>9} {:>8.1}% {:>10} {:>12.1} {:>15}",
                label(&r.key),
                output::n(r.buyers),
                r.p_alive_mean * 100.0,
                output::n(r.likely_alive),
                r.expected_orders,
                r.expected_revenue_fen.map_or("-".into(), yuan)
            );
        }
    };
    table("layer 分层", &p.by_layer, &|k| {
        format!("{} {k}", layer_zh(k))
    });
    table("cohort 获客月", &p.by_cohort, &|k| k.to_string());
    table("total 合计", std::slice::from_ref(&p.total), &|_| {
        String::new()
    });
    if p.too_new > 0 {
        outln!(
            "  {} buyers whose first order is today are left out (no time observed yet)",
            output::n(p.too_new)
        );
    }
}

/// The flow's series, a row a point, with a bar of the moves up and down.
pub fn print_series(points: &[siyu_engine::layers::SeriesPoint], step: u32) {
    use siyu_domain::Layer;
    outln!(
        "  series 每日序列 (a point every {step} day(s)): fans per layer, and the moves since the point before"
    );
    out!("  {:<22}", "at");
    for l in Layer::ALL {
        out!(" {:>9}", l.label_zh());
    }
    outln!(" {:>8} {:>8} {:>8}", "up ↑", "down ↓", "new");
    for p in points {
        out!("  {:<22}", siyu_domain::time::format_rfc3339(p.at));
        for l in Layer::ALL {
            out!(" {:>9}", output::n(p.counts.get(l)));
        }
        outln!(
            " {:>8} {:>8} {:>8}",
            output::n(p.up),
            output::n(p.down),
            output::n(p.new)
        );
    }
}
