//! Leads to teams as an operator runs them: teams and agents from the CLI, lead forms of one
//! person through three channels posted to a running `siyu serve` (whose lead worker makes
//! them one lead with one owner and three arrivals), refusals that name their code and field
//! and store nothing (through the server beside SQLite, directly on PostgreSQL), the admin key
//! on every route, and `--help` that says what each command does.

use std::process::{Child, Output};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::both;
use crate::cli::{json_of, run};
use crate::durability::{create_tenant, start_server, terminate};
use crate::helpers::{Backend, fresh_location, spawn_app, store_flags};

/// Stops a `siyu serve` the test started, even when an assertion fails first.
pub struct Server(pub Option<Child>);

impl Server {
    pub fn stop(mut self) {
        if let Some(c) = self.0.take() {
            terminate(c);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn form(id: &str, ids: Value, channel: &str, ts: &str) -> Value {
    json!({"id": id, "type": "lead_form", "ts": ts, "identities": ids,
           "props": {"channel": channel, "province": "浙江", "city": "杭州"}})
}

async fn post(client: &reqwest::Client, url: &str, key: &str, body: &Value) -> (u16, Value) {
    let r = client
        .post(url)
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// `GET /api/leads` until `done` holds of its leads, for at most 20 s.
async fn leads_until(
    client: &reqwest::Client,
    base: &str,
    admin: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = client
            .get(format!("{base}/api/leads"))
            .bearer_auth(admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        let leads = v["leads"].as_array().cloned().unwrap_or_default();
        if done(&leads) {
            return leads;
        }
        assert!(
            Instant::now() < deadline,
            "the lead worker did not get there within 20 s: {leads:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A refused command: exit 2, `{"error": {code, field}}` on stdout with `--json`, the code on
/// stderr.
pub fn refused(out: &Output, code: &str, field: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(code), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(v["error"]["code"], code, "{v}");
    assert_eq!(v["error"]["field"], field, "{v}");
}

/// What the store holds of teams, agents, rules and leads, as the CLI lists it.
fn everything(flags: &[String]) -> Value {
    json!({
        "teams": json_of(&run(&["team", "list", "--json"], flags)),
        "agents": json_of(&run(&["agent", "list", "--json"], flags)),
        "routes": json_of(&run(&["route", "list", "--json"], flags)),
        "leads": json_of(&run(&["lead", "list", "--json"], flags)),
    })
}

async fn three_forms_of_one_person_are_one_lead_with_one_owner(b: Backend) {
    let (location, _d) = fresh_location(b);
    let flags = store_flags(&location);
    let (write, admin) = create_tenant(&flags);
    let team = json_of(&run(
        &["team", "create", "tmk", "--first-contact", "2h", "--json"],
        &flags,
    ));
    assert_eq!(
        (&team["name"], &team["strategy"], &team["first_contact"]),
        (&json!("tmk"), &json!("round_robin"), &json!("2h")),
        "{team}"
    );
    for name in ["小王", "小李"] {
        let a = json_of(&run(
            &["agent", "add", name, "--team", "tmk", "--json"],
            &flags,
        ));
        assert_eq!(
            (&a["team"], &a["active"]),
            (&json!("tmk"), &json!(true)),
            "{a}"
        );
    }
    let human = run(&["agent", "list"], &flags);
    assert!(String::from_utf8_lossy(&human.stdout).contains("open leads"));

    let (child, base) = start_server(&flags);
    let server = Server(Some(child));
    let client = reqwest::Client::new();
    let events = format!("{base}/api/events");
    // The first form through a live room; the worker makes it a lead with an owner.
    let (s, v) = post(
        &client,
        &events,
        &write,
        &json!([form(
            "f1",
            json!({"douyin_open_id": "oA", "phone": "13800138000"}),
            "live",
            "2026-10-01T10:00:00+08:00"
        )]),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let leads = leads_until(&client, &base, &admin, |l| {
        l.len() == 1 && !l[0]["owner"].is_null()
    })
    .await;
    let fan = leads[0]["fan_id"].clone();
    // The same person again, through an ad (by phone) and a private message (by open id).
    let (s, v) = post(
        &client,
        &events,
        &write,
        &json!([
            form(
                "f2",
                json!({"phone": "13800138000"}),
                "ad",
                "2026-10-01T11:00:00+08:00"
            ),
            form(
                "f3",
                json!({"douyin_open_id": "oA"}),
                "private_message",
                "2026-10-01T12:00:00+08:00"
            ),
        ]),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let leads = leads_until(&client, &base, &admin, |l| {
        l.iter()
            .map(|x| x["arrivals"].as_array().map_or(0, Vec::len))
            .sum::<usize>()
            >= 3
    })
    .await;
    assert_eq!(leads.len(), 1, "one person, one lead: {leads:?}");
    let lead = &leads[0];
    assert_eq!(lead["fan_id"], fan);
    assert_eq!(lead["state"], "new");
    let owner = lead["owner"].as_str().expect("one owner").to_string();
    assert!(owner == "小王" || owner == "小李", "{lead}");
    let arrivals: Vec<(&str, bool)> = lead["arrivals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["channel"].as_str().unwrap(),
                a["repeat"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        arrivals,
        [("live", false), ("ad", true), ("private_message", true)]
    );
    let id = lead["id"].as_i64().unwrap().to_string();

    // The CLI reads the same lead: a JSON array of the same objects.
    let list = json_of(&run(&["lead", "list", "--json"], &flags));
    assert_eq!(list, json!(leads));
    let pooled = json_of(&run(&["lead", "list", "--pool", "--json"], &flags));
    assert_eq!(pooled, json!([]));
    let show = json_of(&run(&["lead", "show", &id, "--json"], &flags));
    assert_eq!(show["lead"]["id"], lead["id"]);
    assert!(!show["log"].as_array().unwrap().is_empty(), "{show}");
    let agents = json_of(&run(&["agent", "list", "--json"], &flags));
    let mine = agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == owner.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        (&mine["open_leads"], &mine["today"]),
        (&json!(1), &json!(1))
    );
    // The report counts the same rows, through the CLI and the API alike.
    let report = json_of(&run(&["lead", "report", "--json"], &flags));
    assert_eq!(
        (&report["leads"], &report["open"], &report["repeats"]),
        (&json!(1), &json!(1), &json!(2)),
        "{report}"
    );
    assert_eq!(
        report["repeats_by_team"],
        json!([{"team": "tmk", "leads": 1, "repeats": 2}])
    );
    let api: Value = client
        .get(format!("{base}/api/reports/leads"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(api, report);

    // Refusals (through the server beside SQLite; directly on PostgreSQL) store nothing.
    let before = everything(&flags);
    refused(
        &run(
            &["lead", "assign", &id, "--agent", "nobody", "--json"],
            &flags,
        ),
        "agent_not_found",
        "agent",
    );
    refused(
        &run(&["lead", "state", &id, "won", "--json"], &flags),
        "state_not_allowed",
        "state",
    );
    refused(
        &run(
            &[
                "agent",
                "add",
                "小张",
                "--team",
                "tmk",
                "--capacity",
                "-1",
                "--json",
            ],
            &flags,
        ),
        "invalid_capacity",
        "capacity",
    );
    refused(
        &run(
            &[
                "agent", "add", "小张", "--team", "tmk", "--hours", "9-5", "--json",
            ],
            &flags,
        ),
        "invalid_hours",
        "hours",
    );
    refused(
        &run(
            &[
                "route",
                "add",
                "--if",
                r#"tag("nope")"#,
                "--team",
                "tmk",
                "--json",
            ],
            &flags,
        ),
        "unknown_tag",
        "if",
    );
    refused(
        &run(
            &["agent", "set", "nobody", "--weight", "2", "--json"],
            &flags,
        ),
        "agent_not_found",
        "agent",
    );
    // Without --json: the code and the flag on stderr.
    let out = run(
        &["agent", "add", "小张", "--team", "tmk", "--capacity", "-1"],
        &flags,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid_capacity") && stderr.contains("--capacity"),
        "{stderr}"
    );
    // The same refusals over HTTP.
    let (s, v) = post(
        &client,
        &format!("{base}/api/leads/{id}/assign"),
        &admin,
        &json!({"agent": "nobody"}),
    )
    .await;
    assert_eq!(
        (s, &v["error"]["code"]),
        (404, &json!("agent_not_found")),
        "{v}"
    );
    let (s, v) = post(
        &client,
        &format!("{base}/api/leads/{id}/state"),
        &admin,
        &json!({"state": "won"}),
    )
    .await;
    assert_eq!(
        (&v["error"]["code"], &v["error"]["field"]),
        (&json!("state_not_allowed"), &json!("state")),
        "{s} {v}"
    );
    let (s, v) = post(
        &client,
        &format!("{base}/api/agents"),
        &admin,
        &json!({"name": "小张", "team": "tmk", "colour": "red"}),
    )
    .await;
    assert_eq!(
        (s, &v["error"]["code"], &v["error"]["field"]),
        (400, &json!("unknown_field"), &json!("colour")),
        "{v}"
    );
    let (s, v) = post(
        &client,
        &format!("{base}/api/teams"),
        &admin,
        &json!({"name": "x", "strategy": "random"}),
    )
    .await;
    assert_eq!(
        (s, &v["error"]["code"], &v["error"]["field"]),
        (400, &json!("invalid_strategy"), &json!("strategy")),
        "{v}"
    );
    assert_eq!(everything(&flags), before, "a refusal stored something");

    // What an agent does: a call is the first contact; the lead moves on in order.
    let v = json_of(&run(
        &[
            "lead", "log", &id, "--kind", "call", "--result", "接通", "--agent", &owner, "--json",
        ],
        &flags,
    ));
    assert_eq!(v["state"], "contacted", "{v}");
    let v = json_of(&run(&["lead", "state", &id, "qualified", "--json"], &flags));
    assert_eq!(v["state"], "qualified", "{v}");
    let other = if owner == "小王" {
        "小李"
    } else {
        "小王"
    };
    let v = json_of(&run(
        &["lead", "assign", &id, "--agent", other, "--json"],
        &flags,
    ));
    assert_eq!(v["owner"], other, "{v}");
    let out = run(&["lead", "claim", &id, "--agent", &owner, "--json"], &flags);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["code"], "lead_owned", "{v}");
    server.stop();
}

async fn teams_agents_and_routes_are_listed_and_changed(b: Backend) {
    let (location, _d) = fresh_location(b);
    let flags = store_flags(&location);
    create_tenant(&flags);
    json_of(&run(
        &[
            "team",
            "create",
            "north",
            "--strategy",
            "least_loaded",
            "--recycle-after",
            "3d",
            "--escalate",
            "task",
            "--json",
        ],
        &flags,
    ));
    json_of(&run(
        &[
            "agent",
            "add",
            "li",
            "--team",
            "north",
            "--capacity",
            "5",
            "--daily-cap",
            "20",
            "--hours",
            "09:00-21:00",
            "--weight",
            "3",
            "--json",
        ],
        &flags,
    ));
    let a = json_of(&run(
        &["agent", "set", "li", "--inactive", "--json"],
        &flags,
    ));
    assert_eq!(
        (&a["active"], &a["capacity"], &a["hours"], &a["weight"]),
        (&json!(false), &json!(5), &json!("09:00-21:00"), &json!(3)),
        "{a}"
    );
    let a = json_of(&run(
        &["agent", "set", "li", "--active", "true", "--json"],
        &flags,
    ));
    assert_eq!(a["active"], true, "{a}");
    let teams = json_of(&run(&["team", "list", "--json"], &flags));
    assert_eq!(teams["teams"][0]["agents"], json!(["li"]), "{teams}");
    assert_eq!(teams["teams"][0]["escalate"], "task", "{teams}");
    let rules = json_of(&run(
        &[
            "route",
            "add",
            "--if",
            "has(phone)",
            "--team",
            "north",
            "--json",
        ],
        &flags,
    ));
    let rule = &rules["routes"][0];
    assert_eq!(
        (&rule["if"], &rule["team"]),
        (&json!("has(phone)"), &json!("north"))
    );
    let id = rule["id"].as_i64().unwrap().to_string();
    let human = String::from_utf8_lossy(&run(&["route", "list"], &flags).stdout).into_owned();
    assert!(human.contains("has(phone)"), "{human}");
    let rules = json_of(&run(&["route", "remove", &id, "--json"], &flags));
    assert_eq!(rules["routes"], json!([]));
    let out = run(&["route", "remove", &id, "--json"], &flags);
    refused(&out, "rule_not_found", "id");
    let human = String::from_utf8_lossy(&run(&["team", "list"], &flags).stdout).into_owned();
    assert!(human.contains("least_loaded"), "{human}");
}

async fn every_leads_route_needs_the_admin_key(b: Backend) {
    let app = spawn_app(b).await;
    let j = |v: Value| Some(v.to_string().into_bytes());
    let routes: Vec<(&str, &str, Option<Vec<u8>>)> = vec![
        ("GET", "/api/teams", None),
        ("POST", "/api/teams", j(json!({"name": "t"}))),
        ("GET", "/api/agents", None),
        ("POST", "/api/agents", j(json!({"name": "a", "team": "t"}))),
        ("PATCH", "/api/agents/a", j(json!({"weight": 2}))),
        ("GET", "/api/routes", None),
        (
            "POST",
            "/api/routes",
            j(json!({"if": "has(phone)", "team": "t"})),
        ),
        ("DELETE", "/api/routes/1", None),
        ("GET", "/api/leads", None),
        ("GET", "/api/leads/1", None),
        ("GET", "/api/reports/leads", None),
        ("POST", "/api/leads/1/log", j(json!({"kind": "call"}))),
        (
            "POST",
            "/api/leads/1/state",
            j(json!({"state": "contacted"})),
        ),
        ("POST", "/api/leads/1/assign", j(json!({"agent": "a"}))),
        ("POST", "/api/leads/1/claim", j(json!({"agent": "a"}))),
    ];
    for (method, path, body) in routes {
        for (key, status) in [(app.write_key.as_str(), 403), ("", 401)] {
            let mut req = app
                .client
                .request(method.parse().unwrap(), format!("{}{path}", app.base));
            if !key.is_empty() {
                req = req.bearer_auth(key);
            }
            if let Some(b) = &body {
                req = req
                    .header("content-type", "application/json")
                    .body(b.clone());
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status().as_u16(), status, "{method} {path} with {key:?}");
        }
    }
    // Nothing was stored with the write key.
    let (s, v) = app.get("/api/teams").await;
    assert_eq!((s, &v["teams"]), (200, &json!([])), "{v}");
    let (s, v) = app.get("/api/leads").await;
    assert_eq!((s, &v["leads"]), (200, &json!([])), "{v}");
    let (s, v) = app.get("/api/leads/1").await;
    assert_eq!(
        (s, &v["error"]["code"]),
        (404, &json!("lead_not_found")),
        "{v}"
    );
    let (s, v) = app.get("/api/leads/x").await;
    assert_eq!((s, &v["error"]["field"]), (400, &json!("id")), "{v}");
    for bad in ["maybe", "", "1"] {
        let (s, v) = app.get(&format!("/api/leads?pool={bad}")).await;
        assert_eq!(
            (s, &v["error"]["field"]),
            (400, &json!("pool")),
            "{bad:?}: {v}"
        );
    }
    let (s, v) = app.get("/api/leads?pool=true").await;
    assert_eq!(s, 200, "{v}");
    app.stop().await;
}

both!(
    three_forms_of_one_person_are_one_lead_with_one_owner,
    teams_agents_and_routes_are_listed_and_changed,
    every_leads_route_needs_the_admin_key,
);

#[test]
fn every_team_agent_route_and_lead_help_says_what_it_does() {
    let cases: &[(&[&str], &[&str])] = &[
        (&[], &["team", "agent", "route", "lead"]),
        (&["team"], &["create", "list"]),
        (
            &["team", "create"],
            &[
                "--strategy",
                "round_robin",
                "least_loaded",
                "weighted",
                "--first-contact",
                "--recycle-after",
                "--lead-agent",
                "--escalate",
            ],
        ),
        (&["team", "list"], &["strategy"]),
        (&["agent"], &["add", "set", "list"]),
        (
            &["agent", "add"],
            &[
                "--team",
                "--capacity",
                "--daily-cap",
                "--hours",
                "09:00-21:00",
                "--weight",
            ],
        ),
        (
            &["agent", "set"],
            &["--active", "--inactive", "keep their value"],
        ),
        (&["agent", "list"], &["open leads", "today"]),
        (&["route"], &["add", "list", "remove"]),
        (&["route", "add"], &["--if", "--team", "first match wins"]),
        (&["route", "list"], &["order"]),
        (&["route", "remove"], &["id"]),
        (
            &["lead"],
            &["list", "show", "log", "state", "assign", "claim"],
        ),
        (
            &["lead", "list"],
            &[
                "--state",
                "--agent",
                "--team",
                "--pool",
                "--limit",
                "JSON array",
            ],
        ),
        (&["lead", "show"], &["arrival", "log"]),
        (
            &["lead", "log"],
            &["--kind", "call", "note", "first contact"],
        ),
        (&["lead", "state"], &["allowed order"]),
        (&["lead", "assign"], &["--agent", "active"]),
        (&["lead", "claim"], &["pool", "daily cap"]),
    ];
    crate::helpers::help_says(cases);
}
