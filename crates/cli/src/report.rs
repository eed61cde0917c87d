//! `siyu report dedup`.

use siyu_engine::DedupReport;

use crate::cli::{ReportArgs, ReportCommand, parse_time};
use crate::output;

pub fn run(args: ReportArgs) -> anyhow::Result<()> {
    let (app, tenant) = args.at.open()?;
    match args.command {
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
    println!("Lead dedup 线索去重");
    println!(
        "  {:<18} {:>10} {:>10} {:>12} {:>8}",
        "channel", "leads", "people", "repeat leads", "repeat%"
    );
    for row in r.channels.iter().chain(std::iter::once(&r.total)) {
        println!(
            "  {:<18} {:>10} {:>10} {:>12} {:>7.1}%",
            row.channel,
            output::n(row.leads),
            output::n(row.people),
            output::n(row.repeat_leads),
            row.repeat_ratio * 100.0
        );
    }
    println!(
        "  {} people left leads through more than one channel",
        output::n(r.multi_channel_people)
    );
    if r.channels.len() > 1 {
        println!("  overlap (people with leads in both)");
        print!("  {:<18}", "");
        for c in &r.channels {
            print!(" {:>16}", c.channel);
        }
        println!();
        for (i, c) in r.channels.iter().enumerate() {
            print!("  {:<18}", c.channel);
            for x in &r.overlap[i] {
                print!(" {:>16}", output::n(*x));
            }
            println!();
        }
    }
}
