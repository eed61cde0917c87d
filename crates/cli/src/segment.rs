//! `siyu segment count|export`.

use std::io::Write;

use anyhow::Context;
use siyu_app::segments::SegmentError;

use crate::cli::{SegmentArgs, SegmentCommand, parse_time};
use crate::output;

pub fn run(args: SegmentArgs) -> anyhow::Result<()> {
    // A typo is reported before anything is opened.
    let (SegmentCommand::Count { expr, .. } | SegmentCommand::Export { expr, .. }) = &args.command;
    siyu_app::segments::parse(expr).map_err(|e| refused(expr, e))?;
    let (app, tenant) = args.at.open()?;
    match args.command {
        SegmentCommand::Count {
            expr,
            as_of,
            sample,
        } => {
            let as_of = as_of.map(|t| parse_time("--as-of", &t)).transpose()?;
            let answer = app
                .segment_count(tenant.id, &expr, as_of, sample)?
                .map_err(|e| refused(&expr, e))?;
            if args.json {
                output::json(&answer)?;
            } else {
                println!(
                    "{} of {} fans as of {}",
                    output::n(answer.count as u64),
                    output::n(answer.fans as u64),
                    answer.as_of
                );
                for m in &answer.sample {
                    println!(
                        "  fan {:<10} {:<10} {}",
                        m.fan.0,
                        m.layer.map_or("-", |l| l.as_str()),
                        m.identities.join(" ")
                    );
                }
            }
        }
        SegmentCommand::Export { expr, out, as_of } => {
            let as_of = as_of.map(|t| parse_time("--as-of", &t)).transpose()?;
            // Written to a temporary file and renamed: a refused expression or a failure
            // leaves no partial export behind.
            let tmp = out.with_extension("csv.partial");
            let file = std::fs::File::create(&tmp)
                .with_context(|| format!("cannot create {}", tmp.display()))?;
            let mut w = csv::Writer::from_writer(std::io::BufWriter::new(file));
            w.write_record([
                "fan_id",
                "layer",
                "engagement_30d",
                "orders_180d",
                "identities",
            ])?;
            let result = app.segment_export(tenant.id, &expr, as_of, &mut |m| {
                w.write_record([
                    m.fan.0.to_string(),
                    m.layer.map_or(String::new(), |l| l.as_str().to_string()),
                    m.engagement_30d.to_string(),
                    m.orders_180d.to_string(),
                    m.identities.join(";"),
                ])
                .map_err(std::io::Error::other)
            });
            let n = match result {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(refused(&expr, e));
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e.into());
                }
            };
            w.into_inner()
                .map_err(|e| anyhow::anyhow!("{}", e.error()))?
                .flush()?;
            std::fs::rename(&tmp, &out)?;
            if args.json {
                output::json(&serde_json::json!({"count": n, "out": out.display().to_string()}))?;
            } else {
                println!("{} fans written to {}", output::n(n as u64), out.display());
            }
        }
    }
    Ok(())
}

/// A refused expression: the error, after the expression with a caret under the column it
/// names (on stderr; stdout stays a JSON document under --json).
fn refused(expr: &str, e: SegmentError) -> anyhow::Error {
    if let SegmentError::Parse(p) = &e {
        // The expression, and a caret under the column (the message follows as the error).
        for line in p.pointer(expr).lines() {
            let line = line
                .split_once('^')
                .map_or(line.to_string(), |(pad, _)| format!("{pad}^"));
            eprintln!("  {line}");
        }
    }
    anyhow::Error::new(e)
}
