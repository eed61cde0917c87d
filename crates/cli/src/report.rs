//! `siyu report dedup`.

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
            if args.json {
                output::json(&flow)?;
            } else {
                print_flow(&flow);
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
