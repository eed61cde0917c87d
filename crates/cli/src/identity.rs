//! `siyu identity duplicates|confirm|distinct|undo|export|eval`.
//!
//! Beside a running SQLite server, the decisions (`confirm`, `distinct`, `undo`) go through
//! it (`crate::forward`) and print what they print here.

use std::fs::File;
use std::io::{BufWriter, Write};

use anyhow::Context;
use serde_json::{Value, json};
use siyu_domain::IdentityKind;
use siyu_domain::time::format_rfc3339;
use siyu_engine::{Decision, FanId};

use crate::cli::{IdentityArgs, IdentityCommand};
use crate::forward::Remote;
use crate::output;

pub fn run(args: IdentityArgs) -> anyhow::Result<()> {
    let writes = matches!(
        args.command,
        IdentityCommand::Confirm { .. }
            | IdentityCommand::Distinct { .. }
            | IdentityCommand::Undo { .. }
    );
    let _lock = match writes {
        true => match args.at.store.lock_for("identity") {
            Ok(lock) => lock,
            // A server holds the data directory: it decides, and recomputes what follows.
            Err(e) => {
                let remote =
                    Remote::beside(e, &args.at.store.location()?, args.at.tenant.as_deref())?;
                return through(&remote, args.command, args.json);
            }
        },
        false => None,
    };
    let (app, tenant) = args.at.open()?;
    let t = tenant.id;
    match args.command {
        IdentityCommand::Duplicates => {
            let dups = app.possible_duplicates(t)?;
            if args.json {
                output::json(&json!({ "possible_duplicates": dups }))?;
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
            report(args.json, &json!({"decision": "confirm", "a": a, "b": b}))?;
        }
        IdentityCommand::Distinct { a, b } => {
            app.decide(
                t,
                Decision::Distinct {
                    a: FanId(a),
                    b: FanId(b),
                },
            )?;
            report(args.json, &json!({"decision": "distinct", "a": a, "b": b}))?;
        }
        IdentityCommand::Undo { from } => {
            app.unmerge(t, FanId(from))?;
            report_undone(args.json, from)?;
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
                output::json(&json!({"rows": rows, "out": out}))?;
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

/// `identity confirm|distinct|undo` through the server that holds the data directory
/// (`POST /api/identity/confirm|distinct`, `POST /api/fans/{id}/unmerge`), printed as they
/// are here.
fn through(remote: &Remote, command: IdentityCommand, json: bool) -> anyhow::Result<()> {
    let (path, pair) = match command {
        IdentityCommand::Confirm { a, b } => ("/api/identity/confirm", (a, b)),
        IdentityCommand::Distinct { a, b } => ("/api/identity/distinct", (a, b)),
        IdentityCommand::Undo { from } => {
            let undone = remote.send("POST", &format!("/api/fans/{from}/unmerge"), None)?;
            return report_undone(json, undone["undone"].as_i64().unwrap_or(from));
        }
        other => anyhow::bail!("{other:?} does not write: it is not sent to the server"),
    };
    let body = json!({"a": pair.0, "b": pair.1});
    report(json, &remote.send("POST", path, Some(&body))?)
}

/// A decision as `POST /api/identity/confirm|distinct` answers it, `{"decision", "a", "b"}`,
/// printed with the CLI's words (`confirmed`, `distinct`).
fn report(json: bool, decision: &Value) -> anyhow::Result<()> {
    let what = match decision["decision"].as_str() {
        Some("confirm") => "confirmed",
        _ => "distinct",
    };
    let (a, b) = (&decision["a"], &decision["b"]);
    if json {
        output::json(&json!({"decision": what, "a": a, "b": b}))
    } else {
        outln!("fans {a} and {b}: {what}");
        Ok(())
    }
}

fn report_undone(json: bool, from: i64) -> anyhow::Result<()> {
    if json {
        output::json(&json!({"undone": from}))
    } else {
        outln!("fan {from} is split back out; the tenant was recomputed from its events");
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
