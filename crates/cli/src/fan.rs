//! `siyu fan show|lookup`.

use siyu_app::FanView;
use siyu_domain::time::format_rfc3339;
use siyu_engine::FanId;

use crate::cli::{FanArgs, FanCommand};
use crate::output;

pub fn run(args: FanArgs) -> anyhow::Result<()> {
    let (app, tenant) = args.at.open()?;
    match args.command {
        FanCommand::Show { id } => {
            let view = app
                .fan(tenant.id, FanId(id))?
                .ok_or(siyu_app::IdentityError::Decision(
                    siyu_engine::DecisionError::UnknownFan(id),
                ))?;
            if args.json {
                output::json(&view)?;
            } else {
                print_fan(&view);
            }
        }
        FanCommand::Lookup { kind, value } => {
            let fans = app.lookup(tenant.id, &kind, &value)?;
            if args.json {
                output::json(&serde_json::json!({ "fans": fans }))?;
            } else if fans.is_empty() {
                outln!("no fan holds {kind} {value:?}");
            } else {
                for (i, f) in fans.iter().enumerate() {
                    if i > 0 {
                        outln!();
                    }
                    print_fan(f);
                }
            }
        }
    }
    Ok(())
}

pub fn print_fan(v: &FanView) {
    match v.merged_from {
        Some(asked) => outln!(
            "fan {} (fan {} was merged into it), {} events",
            v.fan.0,
            asked.0,
            v.events
        ),
        None => outln!("fan {}, {} events", v.fan.0, v.events),
    }
    if let Some(x) = &v.layer {
        outln!("  layer  {}", x.why);
        if !x.timeline.is_empty() {
            outln!("  latest events, newest first");
            for t in &x.timeline {
                outln!(
                    "    {}  {} {:<20}",
                    format_rfc3339(t.ts),
                    t.domain.label_zh(),
                    t.r#type
                );
            }
        }
    }
    outln!("  identities");
    for i in &v.identities {
        outln!("    {:<18} {}", i.kind.as_str(), i.value);
    }
    if !v.merges.is_empty() {
        outln!("  merge history");
        for m in &v.merges {
            let via = match &m.merge.via {
                Some((k, val)) => format!("via {} {}", k.as_str(), val),
                None => "by an operator".to_string(),
            };
            let event = m
                .event_id
                .as_deref()
                .map(|e| format!(" (event {e})"))
                .unwrap_or_default();
            outln!(
                "    {}  fan {} → fan {} {via}{event}   undo: siyu identity undo {}",
                format_rfc3339(m.merge.ts),
                m.merge.from.0,
                m.merge.into.0,
                m.merge.from.0
            );
        }
    }
    if !v.possible_duplicates.is_empty() {
        outln!("  possible duplicates (kept apart: different one-per-person ids)");
        for d in &v.possible_duplicates {
            outln!(
                "    fan {} ~ fan {} share {} {} since {}   siyu identity confirm|distinct {} {}",
                d.a.0,
                d.b.0,
                d.via.0.as_str(),
                d.via.1,
                format_rfc3339(d.ts),
                d.a.0,
                d.b.0
            );
        }
    }
}
