//! `siyu identity duplicates|confirm|distinct|undo|export|eval`.

use std::fs::File;
use std::io::{BufWriter, Write};

use anyhow::Context;
use siyu_domain::IdentityKind;
use siyu_domain::time::format_rfc3339;
use siyu_engine::{Decision, FanId};

use crate::cli::{IdentityArgs, IdentityCommand};
use crate::output;

pub fn run(args: IdentityArgs) -> anyhow::Result<()> {
    let writes = matches!(
        args.command,
        IdentityCommand::Confirm { .. }
            | IdentityCommand::Distinct { .. }
            | IdentityCommand::Undo { .. }
    );
    let _lock = match writes {
        true => args.at.store.lock_for("identity")?,
        false => None,
    };
    let (app, tenant) = args.at.open()?;
    let t = tenant.id;
    match args.command {
        IdentityCommand::Duplicates => {
            let dups = app.possible_duplicates(t)?;
            if args.json {
                output::json(&serde_json::json!({ "possible_duplicates": dups }))?;
            } else if dups.is_empty() {
                outln!("no open possible duplicates");
            } else {
                outln!(
                    "{} possible duplicates (fans kept apart by the guard):",
                    dups.len()
                );
                for d in &dups {
                    outln!(
                        "  fan {} ~ fan {}  share {} {}  since {}",
                        d.a.0,
                        d.b.0,
                        d.via.0.as_str(),
                        d.via.1,
                        format_rfc3339(d.ts)
                    );
                }
                outln!("decide with: siyu identity confirm A B  |  siyu identity distinct A B");
            }
        }
        IdentityCommand::Confirm { a, b } => {
            app.decide(
                t,
                Decision::Confirm {
                    a: FanId(a),
                    b: FanId(b),
                },
            )?;
            report(args.json, "confirmed", a, b)?;
        }
        IdentityCommand::Distinct { a, b } => {
            app.decide(
                t,
                Decision::Distinct {
                    a: FanId(a),
                    b: FanId(b),
                },
            )?;
            report(args.json, "distinct", a, b)?;
        }
        IdentityCommand::Undo { from } => {
            app.unmerge(t, FanId(from))?;
            if args.json {
                output::json(&serde_json::json!({"undone": from}))?;
            } else {
                outln!("fan {from} is split back out; the tenant was recomputed from its events");
            }
        }
        IdentityCommand::Export { out } => {
            let mut w = BufWriter::new(
                File::create(&out).with_context(|| format!("cannot create {}", out.display()))?,
            );
            writeln!(w, "kind,value,fan_id")?;
            let mut rows = 0u64;
            let mut err = None;
            app.ingestor.read(t, |e| {
                e.identities().for_each_value(|kind, value, fan| {
                    if err.is_none() {
                        rows += 1;
                        if let Err(x) =
                            writeln!(w, "{},{},{}", kind.as_str(), csv_field(value), fan.0)
                        {
                            err = Some(x);
                        }
                    }
                })
            })?;
            if let Some(e) = err {
                return Err(e.into());
            }
            w.flush()?;
            if args.json {
                output::json(&serde_json::json!({"rows": rows, "out": out}))?;
            } else {
                outln!(
                    "wrote {} identity values to {}",
                    output::n(rows),
                    out.display()
                );
            }
        }
        IdentityCommand::Eval { truth } => {
            let text = std::fs::read_to_string(&truth)
                .with_context(|| format!("cannot read {}", truth.display()))?;
            let rows =
                parse_truth(&text).map_err(|e| anyhow::anyhow!("{}: {e}", truth.display()))?;
            let eval = app
                .ingestor
                .read(t, |e| e.identities().evaluate(rows.iter().copied()))?;
            if args.json {
                output::json(&eval)?;
            } else {
                outln!(
                    "{} true people, {} fans over {} identity values ({} not seen)",
                    output::n(eval.people),
                    output::n(eval.fans),
                    output::n(eval.values),
                    output::n(eval.missing)
                );
                outln!(
                    "pairwise precision {:.4}, recall {:.4}",
                    eval.precision,
                    eval.recall
                );
                outln!(
                    "fans holding one-per-person ids of two true people: {}",
                    eval.wrong_merges
                );
                outln!(
                    "true people still split over two or more fans: {}",
                    output::n(eval.split_people)
                );
            }
        }
    }
    Ok(())
}

fn report(json: bool, what: &str, a: i64, b: i64) -> anyhow::Result<()> {
    if json {
        output::json(&serde_json::json!({"decision": what, "a": a, "b": b}))
    } else {
        outln!("fans {a} and {b}: {what}");
        Ok(())
    }
}

/// Quotes a CSV field when it needs it.
fn csv_field(v: &str) -> std::borrow::Cow<'_, str> {
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\"")).into()
    } else {
        v.into()
    }
}

/// The generator's truth file (`kind,value,person` with a header line) as rows for
/// [`siyu_engine::IdentityGraph::evaluate`]; an error names the line.
pub fn parse_truth(text: &str) -> anyhow::Result<Vec<(IdentityKind, &str, &str)>> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let mut parts = line.splitn(3, ',');
        let (Some(k), Some(v), Some(p)) = (parts.next(), parts.next(), parts.next()) else {
            anyhow::bail!("line {}: expected kind,value,person", i + 1);
        };
        let kind: IdentityKind = k
            .parse()
            .map_err(|_| anyhow::anyhow!("line {}: unknown identity kind {k:?}", i + 1))?;
        rows.push((kind, v, p));
    }
    Ok(rows)
}
