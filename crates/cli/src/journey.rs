//! `siyu journey apply|list|show|pause|resume|report|dead-letters|retry|policy` and
//! `siyu task list|claim|done`: SOP journeys and the staff inbox they fill, over the services
//! of `siyu_app::journeys`.
//!
//! Beside a running SQLite server, the commands that write (`journey apply|pause|resume|retry`,
//! `journey policy set`, `task claim|done`) go through it (`crate::forward`): `POST
//! /api/journeys` with the file as `application/toml`, `POST /api/journeys/{name}/pause|resume`,
//! `POST /api/dead-letters/retry`, `PUT /api/journeys/policy`, `POST /api/tasks/{id}/claim|done`
//! — so the server's workers see the change at once — and print what they print here, from
//! its answer. The reading commands read the store directly, as every reading command does
//! (a SQLite reader never stalls the server).

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use serde_json::{Map, Value, json};
use siyu_app::journeys::{JourneyDetail, Report, TaskQuery, TaskView};

use crate::cli::{JourneyArgs, JourneyCommand, PolicyCommand, TaskArgs, TaskCommand};
use crate::forward::{self, Remote};
use crate::output::{self, headers, label, table};

/// The policy's fields in the order they are shown.
const POLICY_FIELDS: [&str; 7] = [
    "time_zone",
    "quiet_start",
    "quiet_end",
    "daily_cap",
    "douyin_reply_window",
    "douyin_replies_per_message",
    "douyin_proactive_per_day",
];

pub fn run(args: JourneyArgs) -> anyhow::Result<()> {
    use JourneyCommand as C;
    // The file is read before anything is opened: one that cannot be read is named at once.
    let text = match &args.command {
        C::Apply { file } => Some(read_journey_file(file)?),
        _ => None,
    };
    let writes = match &args.command {
        C::Apply { .. } | C::Pause { .. } | C::Resume { .. } | C::Retry { .. } => true,
        C::Policy { command } => command.is_some(),
        C::List | C::Show { .. } | C::Report { .. } | C::DeadLetters { .. } => false,
    };
    let _lock = match writes {
        true => match args.at.store.lock_for("journey") {
            Ok(lock) => lock,
            // A server holds the data directory: it applies, pauses, retries, and its
            // workers see the change at once.
            Err(e) => {
                let remote =
                    Remote::beside(e, &args.at.store.location()?, args.at.tenant.as_deref())?;
                return journey_through(&remote, args.command, text, args.json);
            }
        },
        false => None,
    };
    let (app, tenant) = args.at.open()?;
    let t = tenant.id;
    match args.command {
        C::Apply { .. } => {
            let applied = app.apply_journey(t, text.as_deref().unwrap_or_default())?;
            print_applied(&applied.journey, applied.version, applied.unchanged)?;
        }
        C::List => {
            let list = app.journeys(t)?;
            if args.json {
                output::json(&json!({ "journeys": list }))?;
            } else if list.is_empty() {
                outln!("no journeys; apply one with `siyu journey apply FILE.toml`");
            } else {
                let mut rows: Vec<Vec<String>> =
                    headers(&["journey", "version", "state", "steps", "updated", "trigger"]).into();
                for j in &list {
                    rows.push(vec![
                        j.name.clone(),
                        j.version.to_string(),
                        state_label(j.paused),
                        j.steps.to_string(),
                        j.updated_at.clone(),
                        j.trigger.clone(),
                    ]);
                }
                table(&rows, "lrlrll");
            }
        }
        C::Show { name } => {
            let detail = app.journey(t, &name)?;
            if args.json {
                output::json(&detail)?;
            } else {
                print_detail(&detail);
            }
        }
        C::Pause { name } => {
            let summary = app.set_journey_paused(t, &name, true)?;
            print_paused(args.json, &name, true, &serde_json::to_value(&summary)?)?;
        }
        C::Resume { name } => {
            let summary = app.set_journey_paused(t, &name, false)?;
            print_paused(args.json, &name, false, &serde_json::to_value(&summary)?)?;
        }
        C::Report { name } => {
            let report = app.journey_report(t, &name)?;
            if args.json {
                output::json(&report)?;
            } else {
                print_report(&report);
            }
        }
        C::DeadLetters { journey, limit } => {
            let rows = app.dead_letters(t, journey.as_deref(), limit)?;
            if args.json {
                output::json(&json!({ "dead_letters": rows }))?;
            } else if rows.is_empty() {
                outln!("no dead letters: every message was delivered or is still being tried");
            } else {
                let mut table_rows: Vec<Vec<String>> = headers(&[
                    "id", "channel", "step", "fan", "attempts", "given_up", "answer",
                ])
                .into();
                for r in &rows {
                    table_rows.push(vec![
                        r.id.to_string(),
                        r.channel.clone(),
                        r.step.clone(),
                        r.fan_id.to_string(),
                        r.attempts.to_string(),
                        r.settled_at.clone().unwrap_or_default(),
                        one_line(r.answer.as_deref().unwrap_or(""), 60),
                    ]);
                }
                table(&table_rows, "rllrrll");
                outln!("retry them with `siyu journey retry ID...` or `siyu journey retry --all`");
            }
        }
        C::Retry { ids, all } => {
            let ids = (!all).then_some(&ids[..]);
            let n = app.retry_dead_letters(t, ids)?;
            print_retried(args.json, n as u64)?;
        }
        C::Policy { command } => {
            let policy = match command {
                None => app.journey_policy(t)?,
                Some(PolicyCommand::Set { fields }) => {
                    app.set_journey_policy(t, &policy_body(fields))?
                }
            };
            print_policy(args.json, &serde_json::to_value(&policy)?)?;
        }
    }
    Ok(())
}

/// A journey file as text: `-` is standard input; a file that cannot be read, or is not
/// UTF-8, is named.
fn read_journey_file(file: &Path) -> anyhow::Result<String> {
    let shown = file.display();
    let bytes = if file == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("cannot read the journey from standard input")?;
        buf
    } else {
        std::fs::read(file).with_context(|| format!("cannot read journey file {shown}"))?
    };
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let name = if file == Path::new("-") {
            "standard input".to_string()
        } else {
            format!("journey file {shown}")
        };
        anyhow::anyhow!("{name} is not UTF-8 text (invalid byte at offset {at})")
    })
}

/// The `journey` commands that write, through the server that holds the data directory,
/// printed as they are here.
fn journey_through(
    remote: &Remote,
    command: JourneyCommand,
    text: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    use JourneyCommand as C;
    match command {
        C::Apply { .. } => {
            let text = text.unwrap_or_default();
            let v =
                remote.send_raw("POST", "/api/journeys", "application/toml", text.as_bytes())?;
            let name = v["journey"]
                .as_str()
                .context("the server's answer names no journey")?;
            print_applied(
                name,
                v["version"].as_i64().unwrap_or_default(),
                v["unchanged"].as_bool().unwrap_or(false),
            )
        }
        C::Pause { name } => pause_through(remote, &name, true, json),
        C::Resume { name } => pause_through(remote, &name, false, json),
        C::Retry { ids, all } => {
            let body = if all {
                json!({ "all": true })
            } else {
                json!({ "ids": ids })
            };
            let v = remote.send("POST", "/api/dead-letters/retry", Some(&body))?;
            print_retried(json, v["retried"].as_u64().unwrap_or_default())
        }
        C::Policy {
            command: Some(PolicyCommand::Set { fields }),
        } => {
            let v = remote.send("PUT", "/api/journeys/policy", Some(&policy_body(fields)))?;
            print_policy(json, &v)
        }
        other => anyhow::bail!("{other:?} does not write: it is not sent to the server"),
    }
}

/// `POST /api/journeys/{name}/pause|resume`.
fn pause_through(remote: &Remote, name: &str, paused: bool, json: bool) -> anyhow::Result<()> {
    let action = if paused { "pause" } else { "resume" };
    let path = format!("/api/journeys/{}/{action}", forward::path_segment(name));
    let v = remote.send("POST", &path, None)?;
    print_paused(json, name, paused, &v)
}

/// `journey apply`'s one JSON object: `{"journey", "version"}`, with `"unchanged": true` only
/// when the file was the version in force.
fn print_applied(journey: &str, version: i64, unchanged: bool) -> anyhow::Result<()> {
    let mut v = json!({ "journey": journey, "version": version });
    if unchanged {
        v["unchanged"] = json!(true);
    }
    outln!("{v}");
    Ok(())
}

fn print_paused(json: bool, name: &str, paused: bool, summary: &Value) -> anyhow::Result<()> {
    if json {
        return output::json(summary);
    }
    let name = summary["name"].as_str().unwrap_or(name);
    let version = summary["version"]
        .as_i64()
        .map_or(String::new(), |v| format!(" (version {v})"));
    if paused {
        outln!("journey {name} paused{version}: it starts no run and moves none until resumed");
    } else {
        outln!("journey {name} resumed{version}: held runs take up where they were");
    }
    Ok(())
}

fn print_retried(json: bool, n: u64) -> anyhow::Result<()> {
    if json {
        output::json(&json!({ "retried": n }))
    } else {
        outln!("{} dead letters back in their queue", output::n(n));
        Ok(())
    }
}

/// `policy set`'s fields as the JSON object the service takes (a key given twice: the last).
fn policy_body(fields: Vec<(String, Value)>) -> Value {
    Value::Object(fields.into_iter().collect::<Map<String, Value>>())
}

fn print_policy(json: bool, policy: &Value) -> anyhow::Result<()> {
    if json {
        return output::json(policy);
    }
    let Some(fields) = policy.as_object() else {
        anyhow::bail!("the policy is not a JSON object: {policy}");
    };
    let mut keys: Vec<&str> = POLICY_FIELDS
        .iter()
        .copied()
        .filter(|k| fields.contains_key(*k))
        .collect();
    keys.extend(
        fields
            .keys()
            .map(String::as_str)
            .filter(|k| !POLICY_FIELDS.contains(k)),
    );
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            let shown = match &fields[*k] {
                Value::Null => "none (no cap)".to_string(),
                Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            vec![k.to_string(), shown]
        })
        .collect();
    outln!("send policy 发送策略");
    table(&rows, "ll");
    Ok(())
}

fn state_label(paused: bool) -> String {
    label(if paused { "paused" } else { "active" })
}

fn print_detail(d: &JourneyDetail) {
    let s = &d.summary;
    outln!(
        "journey {}  version {}  {}",
        s.name,
        s.version,
        state_label(s.paused)
    );
    table(
        &[
            vec![label("trigger"), s.trigger.clone()],
            vec!["applied".into(), s.applied_at.clone()],
            vec![label("updated"), s.updated_at.clone()],
        ],
        "ll",
    );
    outln!("{}", label("steps"));
    let mut rows: Vec<Vec<String>> = headers(&["id", "step", "type", "channel"]).into();
    rows[0][0] = "#".into();
    rows[1][0] = String::new();
    for (i, st) in d.step_list.iter().enumerate() {
        rows.push(vec![
            (i + 1).to_string(),
            st.id.clone(),
            st.ty.to_string(),
            st.channel.unwrap_or("").to_string(),
        ]);
    }
    table(&rows, "rlll");
}

fn percent(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// A map of counts by reason as `reason n, reason n`.
fn by_reason(m: &std::collections::BTreeMap<String, i64>) -> String {
    m.iter()
        .map(|(r, n)| format!("{r} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_report(r: &Report) {
    outln!(
        "journey {}  version {}  {}",
        r.journey,
        r.version,
        state_label(r.paused)
    );
    outln!();
    outln!("{}", label("steps"));
    let keys = [
        "step",
        "type",
        "channel",
        "entered",
        "waiting",
        "sent",
        "delivered",
        "pending",
        "failed",
        "skipped",
        "fell_back",
        "converted",
        "replied",
    ];
    let mut rows: Vec<Vec<String>> = headers(&keys).into();
    let mut reasons = Vec::new();
    for s in &r.steps {
        let sum = |m: &std::collections::BTreeMap<String, i64>| m.values().sum::<i64>();
        rows.push(vec![
            s.id.clone(),
            s.ty.to_string(),
            s.channel.unwrap_or("").to_string(),
            s.entered.to_string(),
            s.waiting.to_string(),
            s.sent.to_string(),
            s.delivered.to_string(),
            s.pending.to_string(),
            s.failed.to_string(),
            sum(&s.skipped).to_string(),
            sum(&s.fell_back).to_string(),
            s.converted.to_string(),
            s.replied.to_string(),
        ]);
        if !s.skipped.is_empty() {
            reasons.push(format!(
                "{}: {} {}",
                s.id,
                label("skipped"),
                by_reason(&s.skipped)
            ));
        }
        if !s.fell_back.is_empty() {
            reasons.push(format!(
                "{}: {} {}",
                s.id,
                label("fell_back"),
                by_reason(&s.fell_back)
            ));
        }
    }
    table(&rows, "lllrrrrrrrrrr");
    for line in &reasons {
        outln!("  {line}");
    }
    outln!();
    outln!("{}", label("runs"));
    let t = &r.runs;
    let mut rows: Vec<Vec<String>> = headers(&[
        "entered",
        "waiting",
        "awaiting_goal",
        "held",
        "completed",
        "converted",
        "merged",
        "conversion_rate",
    ])
    .into();
    rows.push(vec![
        t.entered.to_string(),
        t.waiting.to_string(),
        t.awaiting_goal.to_string(),
        t.held.to_string(),
        t.completed.to_string(),
        t.converted.to_string(),
        t.merged.to_string(),
        percent(t.conversion_rate),
    ]);
    table(&rows, "rrrrrrrr");
    if r.variants.is_empty() {
        return;
    }
    outln!();
    outln!("{}", label("variants"));
    let mut rows: Vec<Vec<String>> = headers(&[
        "step",
        "variant",
        "sent",
        "converted",
        "failed",
        "rate",
        "interval95",
        "share",
    ])
    .into();
    for v in &r.variants {
        rows.push(vec![
            v.step.clone(),
            v.variant.clone(),
            v.sent.to_string(),
            v.converted.to_string(),
            v.failed.to_string(),
            percent(v.rate),
            format!("{}–{}", percent(v.interval95[0]), percent(v.interval95[1])),
            percent(v.share),
        ]);
    }
    table(&rows, "llrrrrrr");
}

/// `s` on one line, cut to `max` characters.
fn one_line(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        flat
    } else {
        let cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// `siyu task list|claim|done`.
pub fn task(args: TaskArgs) -> anyhow::Result<()> {
    use TaskCommand as C;
    let _lock = match args.command {
        C::List { .. } => None,
        _ => match args.at.store.lock_for("task") {
            Ok(lock) => lock,
            // A server holds the data directory: it changes the task, and a done task's
            // outcome reaches its journeys as an event at once.
            Err(e) => {
                let remote =
                    Remote::beside(e, &args.at.store.location()?, args.at.tenant.as_deref())?;
                return task_through(&remote, args.command, args.json);
            }
        },
    };
    let (app, tenant) = args.at.open()?;
    match args.command {
        C::List {
            team,
            agent,
            state,
            limit,
        } => {
            let state = state
                .as_deref()
                .map(|s| {
                    siyu_journey::run::TaskState::parse(s)
                        .with_context(|| format!("--state {s:?} is not open, claimed or done"))
                })
                .transpose()?;
            let tasks = app.tasks(
                tenant.id,
                &TaskQuery {
                    team,
                    agent,
                    state,
                    limit,
                },
            )?;
            if args.json {
                output::json(&json!({ "tasks": tasks }))?;
            } else {
                print_tasks(&tasks);
            }
        }
        C::Claim { id, agent } => {
            let view = app.claim_task(tenant.id, id, &agent)?;
            print_task_change(args.json, &serde_json::to_value(&view)?, id)?;
        }
        C::Done { id, agent, outcome } => {
            let view = app.complete_task(tenant.id, id, &agent, &outcome)?;
            print_task_change(args.json, &serde_json::to_value(&view)?, id)?;
        }
    }
    Ok(())
}

/// `task claim|done` through the server that holds the data directory.
fn task_through(remote: &Remote, command: TaskCommand, json: bool) -> anyhow::Result<()> {
    let (id, action, body) = match command {
        TaskCommand::Claim { id, agent } => (id, "claim", json!({ "agent": agent })),
        TaskCommand::Done { id, agent, outcome } => {
            (id, "done", json!({ "agent": agent, "outcome": outcome }))
        }
        TaskCommand::List { .. } => {
            anyhow::bail!("task list does not write: it is not sent to the server")
        }
    };
    let path = format!(
        "/api/tasks/{}/{action}",
        forward::path_segment(&id.to_string())
    );
    let v = remote.send("POST", &path, Some(&body))?;
    print_task_change(json, &v, id)
}

fn print_task_change(json: bool, v: &Value, id: i64) -> anyhow::Result<()> {
    if json {
        return output::json(v);
    }
    let agent = v["agent"].as_str().unwrap_or("?");
    match v["state"].as_str() {
        Some("done") => outln!(
            "task {id} done by {agent}: {}",
            v["outcome"].as_str().unwrap_or("")
        ),
        Some(state) => outln!("task {id} {state} by {agent}"),
        None => outln!("task {id} changed"),
    }
    Ok(())
}

fn print_tasks(tasks: &[TaskView]) {
    if tasks.is_empty() {
        outln!("no tasks in the inbox");
        return;
    }
    let mut rows: Vec<Vec<String>> =
        headers(&["id", "team", "state", "agent", "due", "text"]).into();
    for t in tasks {
        let due = match (&t.due_at, t.overdue) {
            (Some(d), true) => format!("{d} ! {}", label("overdue")),
            (Some(d), false) => d.clone(),
            (None, _) => "-".into(),
        };
        rows.push(vec![
            t.id.to_string(),
            t.team.clone(),
            t.state.to_string(),
            t.agent.clone().unwrap_or_else(|| "-".into()),
            due,
            one_line(&t.text, 80),
        ]);
    }
    table(&rows, "rlllll");
}
