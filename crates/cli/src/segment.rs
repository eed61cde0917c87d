//! `siyu segment count|export|save|list|show|members|delete|triggers` and `siyu tag`.
//!
//! Beside a running SQLite server, the commands that write (`segment save|delete`,
//! `tag add|remove|auto`) go through it (`crate::forward`) and print what they print here.

use std::io::Write;

use anyhow::Context;
use serde_json::json;
use siyu_app::segments::{SavedView, SegmentError, TagTarget};

use crate::cli::{SegmentArgs, SegmentCommand, parse_time};
use crate::forward::{self, Remote};
use crate::output;

pub fn run(args: SegmentArgs) -> anyhow::Result<()> {
    // A typo is reported before anything is opened.
    if let SegmentCommand::Count { expr, .. }
    | SegmentCommand::Export { expr, .. }
    | SegmentCommand::Save { expr, .. } = &args.command
    {
        siyu_app::segments::parse(expr).map_err(|e| refused(expr, e))?;
    }
    let writes = matches!(
        args.command,
        SegmentCommand::Save { .. } | SegmentCommand::Delete { .. }
    );
    let _lock = match writes {
        true => match args.at.store.lock_for("segment") {
            Ok(lock) => lock,
            // A server holds the data directory: it saves or deletes, and keeps members live.
            Err(e) => {
                let remote =
                    Remote::beside(e, &args.at.store.location()?, args.at.tenant.as_deref())?;
                return segment_through(&remote, args.command, args.json);
            }
        },
        false => None,
    };
    let (app, tenant) = args.at.open()?;
    match args.command {
        SegmentCommand::Count {
            expr,
            as_of,
            sample,
        } => {
            let as_of = as_of.map(|t| parse_time("--as-of", &t)).transpose()?;
            let answer = app
                .segment_count(tenant.id, &expr, as_of, sample)
                .map_err(|e| refused(&expr, e))?;
            if args.json {
                output::json(&answer)?;
            } else {
                outln!(
                    "{} of {} fans as of {}",
                    output::n(answer.count as u64),
                    output::n(answer.fans as u64),
                    answer.as_of
                );
                for m in &answer.sample {
                    outln!(
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
                Ok(n) => n,
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(refused(&expr, e));
                }
            };
            w.into_inner()
                .map_err(|e| anyhow::anyhow!("{}", e.error()))?
                .flush()?;
            std::fs::rename(&tmp, &out)?;
            if args.json {
                output::json(&json!({"count": n, "out": out.display().to_string()}))?;
            } else {
                outln!("{} fans written to {}", output::n(n as u64), out.display());
            }
        }
        SegmentCommand::Save { name, expr, tag } => {
            let saved = app
                .segment_save(tenant.id, &name, &expr, tag.as_deref())
                .map_err(|e| refused(&expr, e))?;
            report_saved(args.json, &saved)?;
        }
        SegmentCommand::List => {
            let list = app.segment_list(tenant.id)?;
            if args.json {
                output::json(&json!({ "segments": list }))?;
            } else if list.is_empty() {
                outln!("no saved segments; save one with `siyu segment save NAME 'EXPR'`");
            } else {
                for s in &list {
                    print_saved(s);
                }
            }
        }
        SegmentCommand::Show { segment } => {
            let s = app.segment_get(tenant.id, &segment)?;
            if args.json {
                output::json(&s)?;
            } else {
                print_saved(&s);
            }
        }
        SegmentCommand::Members {
            segment,
            offset,
            limit,
        } => {
            let (count, members) = app.segment_members(tenant.id, &segment, offset, limit)?;
            if args.json {
                output::json(
                    &serde_json::json!({"count": count, "offset": offset, "members": members}),
                )?;
            } else {
                outln!(
                    "{} members; {} from {}",
                    output::n(count as u64),
                    members.len(),
                    offset
                );
                for m in &members {
                    outln!(
                        "  fan {:<10} {:<10} {}",
                        m.fan.0,
                        m.layer.map_or("-", |l| l.as_str()),
                        m.identities.join(" ")
                    );
                }
            }
        }
        SegmentCommand::Delete { segment } => {
            let id = app.segment_delete(tenant.id, &segment)?;
            report_deleted(args.json, id)?;
        }
        SegmentCommand::Triggers {
            after,
            segment,
            limit,
        } => {
            let segment = match segment {
                Some(s) => Some(app.segment_get(tenant.id, &s)?.id),
                None => None,
            };
            let rows = app.segment_triggers(tenant.id, segment, None, after, limit)?;
            if args.json {
                output::json(&json!({ "triggers": rows }))?;
            } else {
                if rows.is_empty() {
                    outln!(
                        "no segment triggers after {after}: they are recorded while `siyu serve` \
                         keeps the saved segments live"
                    );
                }
                for t in &rows {
                    outln!(
                        "{:>8} {} {:<16} segment {:<4} fan {:<10} {}",
                        t.id,
                        t.at,
                        t.r#type,
                        t.segment,
                        t.fan,
                        t.cause
                    );
                }
            }
        }
    }
    Ok(())
}

/// `segment save` and `segment delete` through the server that holds the data directory
/// (`POST /api/segments`, `DELETE /api/segments/{segment}`), printed as they are here.
fn segment_through(remote: &Remote, command: SegmentCommand, json: bool) -> anyhow::Result<()> {
    match command {
        SegmentCommand::Save { name, expr, tag } => {
            let body = json!({ "name": name, "expr": expr, "tag": tag });
            let saved =
                serde_json::from_value(remote.send("POST", "/api/segments", Some(&body))?)?;
            report_saved(json, &saved)
        }
        SegmentCommand::Delete { segment } => {
            let path = format!("/api/segments/{}", forward::path_segment(&segment));
            let deleted = remote.send("DELETE", &path, None)?;
            report_deleted(json, deleted["deleted"].as_i64().unwrap_or_default())
        }
        other => anyhow::bail!("{other:?} does not write: it is not sent to the server"),
    }
}

fn report_saved(json: bool, saved: &SavedView) -> anyhow::Result<()> {
    if json {
        output::json(saved)
    } else {
        outln!(
            "saved segment {} {:?}: {} fans now",
            saved.id,
            saved.name,
            output::n(saved.count as u64)
        );
        Ok(())
    }
}

fn report_deleted(json: bool, id: i64) -> anyhow::Result<()> {
    if json {
        output::json(&json!({ "deleted": id }))
    } else {
        outln!("deleted segment {id}");
        Ok(())
    }
}

fn print_saved(s: &SavedView) {
    outln!(
        "{:>4}  {:<20} {:>10} fans  {}{}",
        s.id,
        s.name,
        output::n(s.count as u64),
        s.expr,
        s.tag
            .as_ref()
            .map_or(String::new(), |t| format!("  [tag {t}]"))
    );
}

/// `siyu tag add|remove|auto|history`.
pub fn tag(args: crate::cli::TagArgs) -> anyhow::Result<()> {
    use crate::cli::TagCommand as C;
    // A typo is reported before anything is opened.
    let target = match &args.command {
        C::Add { fan, expr, .. } | C::Remove { fan, expr, .. } => Some(target(*fan, expr)?),
        C::Auto { expr, .. } => {
            siyu_app::segments::parse(expr).map_err(|e| refused(expr, e))?;
            None
        }
        C::History { .. } => None,
    };
    let _lock = match args.command {
        C::History { .. } => None,
        _ => match args.at.store.lock_for("tag") {
            Ok(lock) => lock,
            // A server holds the data directory: it tags, and keeps automatic tags live.
            Err(e) => {
                let remote =
                    Remote::beside(e, &args.at.store.location()?, args.at.tenant.as_deref())?;
                return tag_through(&remote, args.command, target, args.json);
            }
        },
    };
    let (app, tenant) = args.at.open()?;
    match (args.command, target) {
        (C::Add { tag, .. }, Some(target)) => {
            let n = app.tag(tenant.id, target, &tag, true)?;
            report_tagged(args.json, "added to", &tag, n)?;
        }
        (C::Remove { tag, .. }, Some(target)) => {
            let n = app.tag(tenant.id, target, &tag, false)?;
            report_tagged(args.json, "removed from", &tag, n)?;
        }
        (C::Auto { tag, expr }, _) => {
            let saved = app
                .segment_save(tenant.id, &format!("tag:{tag}"), &expr, Some(&tag))
                .map_err(|e| refused(&expr, e))?;
            report_auto(args.json, &tag, &saved)?;
        }
        (C::History { fan }, _) => {
            let h = app.tag_history(tenant.id, siyu_engine::FanId(fan))?;
            if args.json {
                output::json(&h)?;
            } else {
                outln!("fan {}: {}", h.fan.0, h.tags.join(", "));
                for e in &h.history {
                    outln!("  {} {:<8} {} ({})", e.at, e.change, e.tag, e.source);
                }
            }
        }
        (C::Add { .. } | C::Remove { .. }, None) => {
            anyhow::bail!("say which fans: --fan ID or --expr EXPR")
        }
    }
    Ok(())
}

/// The fans `tag add|remove` changes: one (`--fan`) or an expression's (`--expr`), parsed.
fn target(fan: Option<i64>, expr: &Option<String>) -> anyhow::Result<TagTarget> {
    match (fan, expr) {
        (Some(f), _) => Ok(TagTarget::Fan(siyu_engine::FanId(f))),
        (None, Some(e)) => {
            siyu_app::segments::parse(e).map_err(|err| refused(e, err))?;
            Ok(TagTarget::Expr(e.clone()))
        }
        (None, None) => anyhow::bail!("say which fans: --fan ID or --expr EXPR"),
    }
}

/// `tag add|remove|auto` through the server that holds the data directory (`POST /api/tags`,
/// `POST /api/tags/auto`), printed as they are here.
fn tag_through(
    remote: &Remote,
    command: crate::cli::TagCommand,
    target: Option<TagTarget>,
    json: bool,
) -> anyhow::Result<()> {
    use crate::cli::TagCommand as C;
    let (tag, remove) = match command {
        C::Add { tag, .. } => (tag, false),
        C::Remove { tag, .. } => (tag, true),
        C::Auto { tag, expr } => {
            let body = json!({ "tag": tag, "expr": expr });
            let saved =
                serde_json::from_value(remote.send("POST", "/api/tags/auto", Some(&body))?)?;
            return report_auto(json, &tag, &saved);
        }
        C::History { .. } => {
            anyhow::bail!("tag history does not write: it is not sent to the server")
        }
    };
    let mut body = json!({ "tag": tag, "remove": remove });
    match target {
        Some(TagTarget::Fan(f)) => body["fan"] = json!(f.0),
        Some(TagTarget::Expr(e)) => body["expr"] = json!(e),
        None => anyhow::bail!("say which fans: --fan ID or --expr EXPR"),
    }
    let changed = remote.send("POST", "/api/tags", Some(&body))?;
    let n = changed["changed"].as_u64().unwrap_or_default() as usize;
    let what = if remove { "removed from" } else { "added to" };
    report_tagged(json, what, &tag, n)
}

fn report_auto(json: bool, tag: &str, saved: &SavedView) -> anyhow::Result<()> {
    if json {
        output::json(saved)
    } else {
        outln!(
            "automatic tag {tag:?}: {} fans now (segment {})",
            output::n(saved.count as u64),
            saved.id
        );
        Ok(())
    }
}

fn report_tagged(json: bool, what: &str, tag: &str, n: usize) -> anyhow::Result<()> {
    if json {
        output::json(&json!({ "changed": n }))
    } else {
        outln!("{tag:?} {what} {} fans", output::n(n as u64));
        Ok(())
    }
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
            errln!("  {line}");
        }
    }
    anyhow::Error::new(e)
}
