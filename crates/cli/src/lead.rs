//! `siyu team create|list`, `siyu agent add|set|list`, `siyu route add|list|remove` and
//! `siyu lead list|show|log|state|assign|claim`: leads to teams, over the services of
//! `siyu_app::leads`.
//!
//! Beside a running SQLite server, the commands that write go through it (`crate::forward`):
//! `POST /api/teams`, `POST /api/agents`, `PATCH /api/agents/{name}`, `POST /api/routes`,
//! `DELETE /api/routes/{id}`, `POST /api/leads/{id}/log|state|assign|claim` — so its lead
//! worker sees the change at once — and print what they print here, from its answer. The
//! reading commands read the store directly. A refusal names its code and the flag or
//! argument at fault, and nothing is stored. `crate::group` opens and forwards the same way.

use serde_json::{Map, Value, json};
use siyu_app::leads::{AgentSpec, LeadsError, TeamSpec};
use siyu_store::leads::{LeadFilter, StoredRule};

use crate::cli::{
    AgentArgs, AgentCommand, AgentLimits, LeadArgs, LeadCommand, RouteArgs, RouteCommand, TeamArgs,
    TeamCommand,
};
use crate::forward::{self, Remote};
use crate::output::{self, headers, table};

/// How a refused field is named on the command line.
fn flag_of(field: &str) -> String {
    match field {
        "name" => "NAME".into(),
        "id" => "ID".into(),
        "state" => "STATE".into(),
        f => format!("--{}", f.replace('_', "-")),
    }
}

/// A refusal with the flag or argument it is about in front.
fn refused(e: anyhow::Error) -> anyhow::Error {
    refused_as(e, flag_of)
}

/// [`refused`] with a command's own names for the fields (`flag_of`).
pub(crate) fn refused_as(e: anyhow::Error, flag_of: fn(&str) -> String) -> anyhow::Error {
    let field = e.chain().find_map(|c| {
        if let Some(l) = c.downcast_ref::<LeadsError>() {
            return l.field().map(str::to_string);
        }
        c.downcast_ref::<forward::RemoteError>()
            .and_then(|r| r.field().map(str::to_string))
    });
    match field {
        Some(f) => {
            let shown = flag_of(&f);
            e.context(shown)
        }
        None => e,
    }
}

fn leads_err(e: LeadsError) -> anyhow::Error {
    refused(anyhow::Error::new(e))
}

/// A JSON body of the fields given.
fn body(fields: &[(&str, Option<Value>)]) -> Value {
    let mut o = Map::new();
    for (k, v) in fields {
        if let Some(v) = v {
            o.insert((*k).to_string(), v.clone());
        }
    }
    Value::Object(o)
}

fn s(v: &Option<String>) -> Option<Value> {
    v.clone().map(Value::String)
}

fn n(v: Option<i64>) -> Option<Value> {
    v.map(|n| json!(n))
}

/// Opens the store for a writing command, or the server beside it that holds it.
pub(crate) enum Target {
    Local(Option<siyu_store::DirLock>),
    Remote(Remote),
}

pub(crate) fn target(
    at: &crate::cli::TenantStoreArgs,
    command: &str,
    writes: bool,
) -> anyhow::Result<Target> {
    if !writes {
        return Ok(Target::Local(None));
    }
    match at.store.lock_for(command) {
        Ok(lock) => Ok(Target::Local(lock)),
        Err(e) => Ok(Target::Remote(Remote::beside(
            e,
            &at.store.location()?,
            at.tenant.as_deref(),
        )?)),
    }
}

fn send(remote: &Remote, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
    remote.send(method, path, body).map_err(refused)
}

pub(crate) fn opt(v: &Value, k: &str) -> String {
    match &v[k] {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// team

pub fn team(args: TeamArgs) -> anyhow::Result<()> {
    let writes = matches!(args.command, TeamCommand::Create { .. });
    let _lock = match target(&args.at, "team", writes)? {
        Target::Local(lock) => lock,
        Target::Remote(remote) => {
            let TeamCommand::Create { .. } = &args.command else {
                unreachable!("only create writes")
            };
            let spec = team_spec(args.command);
            let b = body(&[
                ("name", Some(Value::String(spec.name.clone()))),
                ("strategy", s(&spec.strategy)),
                ("first_contact", s(&spec.first_contact)),
                ("recycle_after", s(&spec.recycle_after)),
                ("lead_agent", s(&spec.lead_agent)),
                ("escalate", s(&spec.escalate)),
            ]);
            let v = send(&remote, "POST", "/api/teams", Some(&b))?;
            return print_team(args.json, &v);
        }
    };
    let (app, tenant) = args.at.open()?;
    match args.command {
        c @ TeamCommand::Create { .. } => {
            let view = app.put_team(tenant.id, &team_spec(c)).map_err(leads_err)?;
            print_team(args.json, &json!(view))?;
        }
        TeamCommand::List => {
            let teams = app.teams(tenant.id)?;
            if args.json {
                return output::json(&json!({ "teams": teams }));
            }
            if teams.is_empty() {
                outln!("no teams; create one with `siyu team create NAME`");
                return Ok(());
            }
            let mut rows: Vec<Vec<String>> = headers(&[
                "team",
                "strategy",
                "first_contact",
                "recycle_after",
                "lead_agent",
                "escalate",
                "agents",
            ])
            .into();
            for t in teams {
                let v = json!(t);
                rows.push(vec![
                    t.name.clone(),
                    t.strategy.to_string(),
                    opt(&v, "first_contact"),
                    opt(&v, "recycle_after"),
                    opt(&v, "lead_agent"),
                    t.escalate.to_string(),
                    t.agents.join(", "),
                ]);
            }
            table(&rows, "lllllll");
        }
    }
    Ok(())
}

fn team_spec(c: TeamCommand) -> TeamSpec {
    match c {
        TeamCommand::Create {
            name,
            strategy,
            first_contact,
            recycle_after,
            lead_agent,
            escalate,
        } => TeamSpec {
            name,
            strategy,
            first_contact,
            recycle_after,
            lead_agent,
            escalate,
        },
        TeamCommand::List => TeamSpec::default(),
    }
}

fn print_team(json: bool, v: &Value) -> anyhow::Result<()> {
    if json {
        return output::json(v);
    }
    outln!(
        "team {}: {}, first contact within {}, recycled after {}, escalates by {} to {}",
        opt(v, "name"),
        opt(v, "strategy"),
        opt(v, "first_contact"),
        opt(v, "recycle_after"),
        opt(v, "escalate"),
        opt(v, "lead_agent"),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// agent

pub fn agent(args: AgentArgs) -> anyhow::Result<()> {
    let writes = !matches!(args.command, AgentCommand::List);
    let _lock = match target(&args.at, "agent", writes)? {
        Target::Local(lock) => lock,
        Target::Remote(remote) => {
            let (spec, new) = agent_spec(args.command);
            let mut fields = vec![
                ("team", s(&spec.team)),
                ("capacity", n(spec.capacity)),
                ("daily_cap", n(spec.daily_cap)),
                ("hours", s(&spec.hours)),
                ("weight", n(spec.weight)),
                ("active", spec.active.map(Value::Bool)),
            ];
            let v = if new {
                fields.push(("name", Some(Value::String(spec.name.clone()))));
                send(&remote, "POST", "/api/agents", Some(&body(&fields)))?
            } else {
                let path = format!("/api/agents/{}", forward::path_segment(&spec.name));
                send(&remote, "PATCH", &path, Some(&body(&fields)))?
            };
            return print_agent(args.json, &v);
        }
    };
    let (app, tenant) = args.at.open()?;
    let t = tenant.id;
    match args.command {
        AgentCommand::List => {
            let agents = app.agents(t)?;
            if args.json {
                return output::json(&json!({ "agents": agents }));
            }
            if agents.is_empty() {
                outln!("no agents; add one with `siyu agent add NAME --team TEAM`");
                return Ok(());
            }
            let mut rows: Vec<Vec<String>> = headers(&[
                "agent",
                "team",
                "active",
                "capacity",
                "daily_cap",
                "hours",
                "weight",
                "open_leads",
                "today",
            ])
            .into();
            for a in agents {
                let v = json!(a);
                rows.push(vec![
                    a.name.clone(),
                    a.team.clone(),
                    if a.active { "yes" } else { "no" }.into(),
                    opt(&v, "capacity"),
                    opt(&v, "daily_cap"),
                    opt(&v, "hours"),
                    a.weight.to_string(),
                    a.open_leads.to_string(),
                    a.today.to_string(),
                ]);
            }
            table(&rows, "lllrrlrrr");
        }
        c => {
            let (spec, new) = agent_spec(c);
            if !new && !app.agents(t)?.iter().any(|a| a.name == spec.name) {
                return Err(leads_err(LeadsError::NoAgent(spec.name)));
            }
            let view = app.put_agent(t, &spec).map_err(leads_err)?;
            print_agent(args.json, &json!(view))?;
        }
    }
    Ok(())
}

/// The agent a command asks for, and whether it adds one.
fn agent_spec(c: AgentCommand) -> (AgentSpec, bool) {
    let with =
        |name: String, team: Option<String>, l: AgentLimits, active: Option<bool>| AgentSpec {
            name,
            team,
            capacity: l.capacity,
            daily_cap: l.daily_cap,
            hours: l.hours,
            weight: l.weight,
            active,
        };
    match c {
        AgentCommand::Add { name, team, limits } => (with(name, Some(team), limits, None), true),
        AgentCommand::Set {
            name,
            team,
            limits,
            active,
            inactive,
        } => (
            with(name, team, limits, active.or(inactive.then_some(false))),
            false,
        ),
        AgentCommand::List => (AgentSpec::default(), false),
    }
}

fn print_agent(json: bool, v: &Value) -> anyhow::Result<()> {
    if json {
        return output::json(v);
    }
    outln!(
        "agent {} in team {}: {}, capacity {}, daily cap {}, hours {}, weight {}; {} open leads, {} today",
        opt(v, "name"),
        opt(v, "team"),
        if v["active"].as_bool().unwrap_or(false) {
            "active"
        } else {
            "inactive"
        },
        opt(v, "capacity"),
        opt(v, "daily_cap"),
        opt(v, "hours"),
        opt(v, "weight"),
        opt(v, "open_leads"),
        opt(v, "today"),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// route

/// A routing rule as the API shows it (`GET /api/routes`).
fn rules_json(rules: &[StoredRule]) -> Value {
    json!({ "routes": rules.iter().map(|r| json!({
        "id": r.id, "position": r.position, "if": r.expr, "team": r.team,
        "created_at": siyu_domain::time::format_rfc3339(r.created_at),
    })).collect::<Vec<_>>() })
}

pub fn route(args: RouteArgs) -> anyhow::Result<()> {
    let writes = !matches!(args.command, RouteCommand::List);
    let _lock = match target(&args.at, "route", writes)? {
        Target::Local(lock) => lock,
        Target::Remote(remote) => {
            let v = match &args.command {
                RouteCommand::Add { expr, team } => send(
                    &remote,
                    "POST",
                    "/api/routes",
                    Some(&json!({ "if": expr, "team": team })),
                )?,
                RouteCommand::Remove { id } => {
                    send(&remote, "DELETE", &format!("/api/routes/{id}"), None)?
                }
                RouteCommand::List => unreachable!("list does not write"),
            };
            return print_rules(args.json, &v);
        }
    };
    let (app, tenant) = args.at.open()?;
    let t = tenant.id;
    let rules = match args.command {
        RouteCommand::Add { expr, team } => app.add_route(t, &expr, &team).map_err(leads_err)?,
        RouteCommand::Remove { id } => app.remove_route(t, id).map_err(leads_err)?,
        RouteCommand::List => app.store().lead_rules(t)?,
    };
    print_rules(args.json, &rules_json(&rules))
}

fn print_rules(json: bool, v: &Value) -> anyhow::Result<()> {
    if json {
        return output::json(v);
    }
    let rules = v["routes"].as_array().cloned().unwrap_or_default();
    if rules.is_empty() {
        outln!(
            "no routing rules: with one team, every lead goes to it; add one with `siyu route add --if EXPRESSION --team TEAM`"
        );
        return Ok(());
    }
    let mut rows: Vec<Vec<String>> = headers(&["id", "position", "if", "team"]).into();
    for r in &rules {
        rows.push(vec![
            opt(r, "id"),
            opt(r, "position"),
            opt(r, "if"),
            opt(r, "team"),
        ]);
    }
    table(&rows, "rrll");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// lead

pub fn lead(args: LeadArgs) -> anyhow::Result<()> {
    use LeadCommand as C;
    let writes = !matches!(args.command, C::List { .. } | C::Show { .. } | C::Report);
    let _lock = match target(&args.at, "lead", writes)? {
        Target::Local(lock) => lock,
        Target::Remote(remote) => {
            let (id, action, b) = match &args.command {
                C::Log {
                    id,
                    kind,
                    result,
                    agent,
                } => (
                    *id,
                    "log",
                    body(&[
                        ("kind", Some(Value::String(kind.clone()))),
                        ("result", s(result)),
                        ("agent", s(agent)),
                    ]),
                ),
                C::State { id, state, agent } => (
                    *id,
                    "state",
                    body(&[
                        ("state", Some(Value::String(state.clone()))),
                        ("agent", s(agent)),
                    ]),
                ),
                C::Assign { id, agent } => (*id, "assign", json!({ "agent": agent })),
                C::Claim { id, agent } => (*id, "claim", json!({ "agent": agent })),
                C::List { .. } | C::Show { .. } | C::Report => unreachable!("reads do not write"),
            };
            let v = send(
                &remote,
                "POST",
                &format!("/api/leads/{id}/{action}"),
                Some(&b),
            )?;
            return print_lead(args.json, &v);
        }
    };
    let (app, tenant) = args.at.open()?;
    let t = tenant.id;
    let changed = match args.command {
        C::List {
            state,
            agent,
            team,
            pool,
            limit,
        } => {
            let filter = LeadFilter {
                state: state.as_deref(),
                owner: agent.as_deref(),
                team: team.as_deref(),
                pooled: pool,
                limit: limit.clamp(1, 10_000),
                ..LeadFilter::default()
            };
            let list = app.leads_json(t, &filter).map_err(leads_err)?;
            return print_leads(args.json, &list);
        }
        C::Show { id } => {
            let detail = app.lead_detail(t, id).map_err(leads_err)?;
            return print_detail(args.json, &detail);
        }
        C::Report => {
            let r = app.lead_report(t).map_err(leads_err)?;
            return print_report(args.json, &r);
        }
        C::Log {
            id,
            kind,
            result,
            agent,
        } => app.log_follow_up(t, id, &kind, result.as_deref(), agent.as_deref()),
        C::State { id, state, agent } => app.set_lead_state(t, id, &state, agent.as_deref()),
        C::Assign { id, agent } => app.assign_lead(t, id, &agent, false),
        C::Claim { id, agent } => app.assign_lead(t, id, &agent, true),
    }
    .map_err(leads_err)?;
    print_lead(args.json, &app.lead_json(t, &changed).map_err(leads_err)?)
}

fn print_leads(json: bool, list: &[Value]) -> anyhow::Result<()> {
    if json {
        return output::json(&list);
    }
    if list.is_empty() {
        outln!("no leads; lead forms (lead_form events) become leads under `siyu serve`");
        return Ok(());
    }
    let mut rows: Vec<Vec<String>> = headers(&[
        "id", "state", "owner", "team", "channel", "arrivals", "fan", "created",
    ])
    .into();
    for l in list {
        rows.push(vec![
            opt(l, "id"),
            opt(l, "state"),
            match &l["owner"] {
                Value::String(o) => o.clone(),
                _ => "(pool)".into(),
            },
            opt(l, "team"),
            opt(l, "channel"),
            l["arrivals"].as_array().map_or(0, Vec::len).to_string(),
            opt(l, "fan_id"),
            opt(l, "created_at"),
        ]);
    }
    table(&rows, "rllllrrl");
    Ok(())
}

fn print_lead(json: bool, l: &Value) -> anyhow::Result<()> {
    if json {
        return output::json(l);
    }
    outln!(
        "lead {}: {}, owner {}, team {}",
        opt(l, "id"),
        opt(l, "state"),
        match &l["owner"] {
            Value::String(o) => o.clone(),
            _ => "none (in the pool)".into(),
        },
        opt(l, "team"),
    );
    Ok(())
}

fn print_detail(json: bool, d: &Value) -> anyhow::Result<()> {
    if json {
        return output::json(d);
    }
    let l = &d["lead"];
    print_lead(false, l)?;
    for k in [
        "fan_id",
        "channel",
        "province",
        "city",
        "created_at",
        "assigned_at",
        "first_contact_due",
        "first_contact_at",
        "last_follow_up_at",
        "closed_at",
    ] {
        if !l[k].is_null() {
            outln!("  {k}: {}", opt(l, k));
        }
    }
    let mut rows: Vec<Vec<String>> = headers(&["channel", "at", "repeat"]).into();
    for a in l["arrivals"].as_array().into_iter().flatten() {
        rows.push(vec![
            opt(a, "channel"),
            opt(a, "ts"),
            if a["repeat"].as_bool().unwrap_or(false) {
                "yes"
            } else {
                "no"
            }
            .into(),
        ]);
    }
    outln!("arrivals:");
    table(&rows, "lll");
    let log = d["log"].as_array().cloned().unwrap_or_default();
    if !log.is_empty() {
        outln!("log:");
        let mut rows: Vec<Vec<String>> = headers(&["at", "kind", "agent", "result"]).into();
        for e in &log {
            rows.push(vec![
                opt(e, "at"),
                opt(e, "kind"),
                opt(e, "agent"),
                opt(e, "result"),
            ]);
        }
        table(&rows, "llll");
    }
    Ok(())
}

fn print_report(json: bool, r: &siyu_app::leads::report::LeadReport) -> anyhow::Result<()> {
    if json {
        return output::json(r);
    }
    outln!(
        "{} leads, {} open, {} in a pool; {} repeat arrivals absorbed (no second follow-up)",
        output::n(r.leads as u64),
        output::n(r.open as u64),
        output::n(r.pooled as u64),
        output::n(r.repeats as u64)
    );
    let mut rows: Vec<Vec<String>> = headers(&["state", "状态", "leads"]).into();
    for s in &r.by_state {
        rows.push(vec![s.state.into(), s.label.into(), s.leads.to_string()]);
    }
    table(&rows, "llr");
    let mut rows: Vec<Vec<String>> = headers(&["channel", "leads", "repeats"]).into();
    for c in &r.by_channel {
        rows.push(vec![
            c.channel.clone(),
            c.leads.to_string(),
            c.repeats.to_string(),
        ]);
    }
    table(&rows, "lrr");
    let mut rows: Vec<Vec<String>> = headers(&["agent", "leads", "open", "won"]).into();
    for a in &r.by_agent {
        rows.push(vec![
            a.agent.clone(),
            a.leads.to_string(),
            a.open.to_string(),
            a.won.to_string(),
        ]);
    }
    table(&rows, "lrrr");
    let m = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.1} min"));
    outln!(
        "first contact: p50 {}, p90 {} over {} leads contacted; in time: {}",
        m(r.first_contact_minutes.p50),
        m(r.first_contact_minutes.p90),
        r.first_contact_minutes.count,
        r.first_contact_in_time
            .map_or("-".to_string(), |x| format!("{:.1}%", x * 100.0))
    );
    for t in &r.repeats_by_team {
        outln!(
            "team {}: {} leads, {} repeats absorbed",
            t.team.as_deref().unwrap_or("(none)"),
            t.leads,
            t.repeats
        );
    }
    Ok(())
}
