//! `siyu group create|list|show`: fan groups (粉丝群), over the services of
//! `siyu_app::leads::groups`.
//!
//! Like the lead commands (`crate::lead`), `create` beside a running SQLite server goes through
//! it (`POST /api/groups`) and prints what it prints here, from its answer; `list` and `show`
//! read the store directly. A refusal names its code and the flag or argument at fault, and
//! nothing is stored. Every printed form comes from the same JSON the API answers.

use serde_json::{Value, json};
use siyu_app::leads::LeadsError;

use crate::cli::{GroupArgs, GroupCommand};
use crate::lead::{Target, opt, refused_as, target};
use crate::output::{self, headers, table};

/// How a refused field is named on `siyu group create`: the owner is checked as an agent, so
/// the app names it `agent`.
fn flag_of(field: &str) -> String {
    match field {
        "name" => "NAME".into(),
        "group" => "ID_OR_NAME".into(),
        "agent" => "--owner".into(),
        f => format!("--{}", f.replace('_', "-")),
    }
}

fn refused(e: LeadsError) -> anyhow::Error {
    refused_as(anyhow::Error::new(e), flag_of)
}

pub fn run(args: GroupArgs) -> anyhow::Result<()> {
    let writes = matches!(args.command, GroupCommand::Create { .. });
    let _lock = match target(&args.at, "group", writes)? {
        Target::Local(lock) => lock,
        Target::Remote(remote) => {
            let GroupCommand::Create {
                name,
                template,
                capacity,
                owner,
            } = &args.command
            else {
                unreachable!("only create writes")
            };
            let mut b = json!({ "name": name });
            for (k, v) in [
                ("template", template.clone().map(Value::String)),
                ("capacity", capacity.map(|c| json!(c))),
                ("owner", owner.clone().map(Value::String)),
            ] {
                if let Some(v) = v {
                    b[k] = v;
                }
            }
            let v = remote
                .send("POST", "/api/groups", Some(&b))
                .map_err(|e| refused_as(e, flag_of))?;
            return print_group(args.json, &v);
        }
    };
    let (app, tenant) = args.at.open()?;
    let t = tenant.id;
    match args.command {
        GroupCommand::Create {
            name,
            template,
            capacity,
            owner,
        } => {
            let g = app
                .create_group(t, &name, template.as_deref(), capacity, owner.as_deref())
                .map_err(refused)?;
            let view = app.group_view(t, &g.id.to_string()).map_err(refused)?;
            print_group(args.json, &json!(view))
        }
        GroupCommand::List => {
            let groups = app.group_views(t).map_err(refused)?;
            print_groups(args.json, &json!({ "groups": groups }))
        }
        GroupCommand::Show { key } => {
            let view = app.group_view(t, &key).map_err(refused)?;
            print_detail(args.json, &json!(view))
        }
    }
}

/// One line of a group's facts.
fn print_group(json: bool, g: &Value) -> anyhow::Result<()> {
    if json {
        return output::json(g);
    }
    outln!(
        "group {} \"{}\" (template \"{}\"): {} of {} members, {} invited, owner {}; {} active in 7 days; 30 days: {} joins, {} leaves, {} messages",
        opt(g, "id"),
        opt(g, "name"),
        opt(g, "template"),
        opt(g, "members"),
        opt(g, "capacity"),
        opt(g, "invited"),
        opt(g, "owner"),
        opt(g, "active_7d"),
        opt(g, "joins"),
        opt(g, "leaves"),
        opt(g, "messages"),
    );
    Ok(())
}

fn print_groups(json: bool, v: &Value) -> anyhow::Result<()> {
    if json {
        return output::json(v);
    }
    let groups = v["groups"].as_array().cloned().unwrap_or_default();
    if groups.is_empty() {
        outln!(
            "no fan groups; open one with `siyu group create NAME`, or send group_join events naming one"
        );
        return Ok(());
    }
    let mut rows: Vec<Vec<String>> = headers(&[
        "id",
        "name",
        "template",
        "members_of",
        "invited",
        "owner",
        "active_7d",
        "joins",
        "leaves",
        "messages",
    ])
    .into();
    for g in &groups {
        rows.push(vec![
            opt(g, "id"),
            opt(g, "name"),
            opt(g, "template"),
            format!("{}/{}", opt(g, "members"), opt(g, "capacity")),
            opt(g, "invited"),
            opt(g, "owner"),
            opt(g, "active_7d"),
            opt(g, "joins"),
            opt(g, "leaves"),
            opt(g, "messages"),
        ]);
    }
    table(&rows, "rllrrlrrrr");
    outln!("  (joins, leaves and messages over the last 30 days)");
    Ok(())
}

/// The group's line, then its 30 days with a bar of each day's joins.
fn print_detail(json: bool, g: &Value) -> anyhow::Result<()> {
    if json {
        return output::json(g);
    }
    print_group(false, g)?;
    let days = g["daily"].as_array().cloned().unwrap_or_default();
    let joins = |d: &Value| d["joins"].as_u64().unwrap_or(0);
    let max = days.iter().map(joins).max().unwrap_or(0);
    let mut rows: Vec<Vec<String>> = headers(&["date", "joins", "leaves", "messages"]).into();
    for d in &days {
        rows.push(vec![
            opt(d, "date"),
            opt(d, "joins"),
            opt(d, "leaves"),
            opt(d, "messages"),
            bar(joins(d), max, 30),
        ]);
    }
    table(&rows, "lrrr");
    Ok(())
}

/// `x` of `max` as up to `width` blocks; any x above zero shows at least one.
fn bar(x: u64, max: u64, width: usize) -> String {
    let k = if max == 0 {
        0
    } else {
        (x as f64 / max as f64 * width as f64).round() as usize
    };
    "█".repeat(k.max(usize::from(x > 0)))
}
