//! The CLI as a user runs it: tenants, import (twice, with bad lines, CSV), gen and demo.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::both;
use crate::durability::siyu;
use crate::helpers::{Backend, fresh_location, store_flags};

pub fn run(args: &[&str], flags: &[String]) -> Output {
    siyu()
        .args(args)
        .args(flags)
        .env("SIYU_LOG", "warn")
        .output()
        .unwrap()
}

pub fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

async fn tenants_are_created_once_with_keys(b: Backend) {
    let (location, _d) = fresh_location(b);
    let flags = store_flags(&location);
    let v = json_of(&run(&["tenant", "create", "acme"], &flags));
    assert_eq!(v["tenant"], "acme");
    assert!(v["write_key"].as_str().unwrap().starts_with("sy_w_"));
    assert!(v["admin_key"].as_str().unwrap().starts_with("sy_a_"));
    let again = run(&["tenant", "create", "acme"], &flags);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("tenant_exists"));
    let bad = run(&["tenant", "create", "has space"], &flags);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid_tenant_name"));
    let list = json_of(&run(&["tenant", "list", "--json"], &flags));
    assert_eq!(list["tenants"].as_array().unwrap().len(), 1);
}

async fn import_twice_stores_once_and_explains_rejections(b: Backend) {
    let (location, _d) = fresh_location(b);
    let flags = store_flags(&location);
    json_of(&run(&["tenant", "create", "acme"], &flags));
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "events.jsonl",
        concat!(
            r#"{"id":"1","type":"follow","ts":"2026-10-01T00:00:00Z","identities":{"phone":"138 0013 8000"}}"#,
            "\n",
            r#"{"id":"2","type":"follow","ts":"2026-10-01T00:00:00Z","identities":{"phone":"call me"}}"#,
            "\n",
            "\n",
            r#"{"id":"3","type":"order","ts":"2026-10-02T00:00:00Z","identities":{"phone":"+86-13800138000"},"props":{"order_id":"o1","amount":59}}"#,
            "\n",
            r#"{"id": "#,
            "\n",
            r#"{"id":"4","type":"lead_form","ts":"2026-10-03T00:00:00Z","identities":{"lead_id":"c1","phone":"8613800138000"},"props":{"channel":"ad"}}"#,
            "\n",
            r#"{"id":"5","type":"ordr","ts":"2026-10-03T00:00:00Z","identities":{"phone":"8613800138000"}}"#,
            "\n",
        ),
    );
    let v = json_of(&run(&["import", &file, "--json"], &flags));
    assert_eq!(
        (
            v["accepted"].as_u64(),
            v["duplicates"].as_u64(),
            v["rejected"].as_u64()
        ),
        (Some(3), Some(0), Some(3)),
        "{v}"
    );
    let rejected_file = v["files"][0]["rejected_file"].as_str().unwrap().to_string();
    let lines: Vec<Value> = std::fs::read_to_string(&rejected_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(
        (
            lines[0]["line"].as_u64(),
            lines[0]["code"].as_str(),
            lines[0]["field"].as_str()
        ),
        (Some(2), Some("invalid_phone"), Some("identities.phone"))
    );
    assert_eq!(
        (lines[1]["line"].as_u64(), lines[1]["code"].as_str()),
        (Some(5), Some("invalid_json"))
    );
    assert!(lines[1]["input"].as_str().unwrap().starts_with("{\"id\""));
    assert_eq!(
        (
            lines[2]["line"].as_u64(),
            lines[2]["code"].as_str(),
            lines[2]["message"].as_str()
        ),
        (
            Some(7),
            Some("unknown_event_type"),
            Some("unknown event type \"ordr\"; did you mean \"order\"?")
        )
    );

    let v = json_of(&run(&["import", &file, "--json"], &flags));
    assert_eq!(
        (v["accepted"].as_u64(), v["duplicates"].as_u64()),
        (Some(0), Some(3)),
        "{v}"
    );

    // Plain output names the counts too.
    let out = run(&["import", &file], &flags);
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 accepted, 3 duplicates, 3 rejected"));
}

async fn import_refuses_events_before_the_earliest_time_unless_told_otherwise(b: Backend) {
    let (location, _d) = fresh_location(b);
    let flags = store_flags(&location);
    json_of(&run(&["tenant", "create", "acme"], &flags));
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "old.jsonl",
        r#"{"id":"1","type":"follow","ts":"1999-06-01T00:00:00Z","identities":{"phone":"13800138000"}}"#,
    );
    let v = json_of(&run(&["import", &file, "--json"], &flags));
    assert_eq!(
        (v["accepted"].as_u64(), v["rejected"].as_u64()),
        (Some(0), Some(1)),
        "{v}"
    );
    let rejected_file = v["files"][0]["rejected_file"].as_str().unwrap().to_string();
    let line: Value =
        serde_json::from_str(std::fs::read_to_string(&rejected_file).unwrap().trim()).unwrap();
    assert_eq!(
        (line["code"].as_str(), line["field"].as_str()),
        (Some("timestamp_too_old"), Some("ts"))
    );
    let earlier = [
        "import",
        &file,
        "--json",
        "--min-timestamp",
        "1990-01-01T00:00:00Z",
    ];
    let v = json_of(&run(&earlier, &flags));
    assert_eq!(v["accepted"].as_u64(), Some(1), "{v}");
    let bad = run(&["import", &file, "--min-timestamp", "1990"], &flags);
    assert_eq!(
        bad.status.code(),
        Some(2),
        "a floor that is not a time is a usage error"
    );
}

async fn csv_import_and_a_bad_header_stores_nothing(b: Backend) {
    let (location, _d) = fresh_location(b);
    let flags = store_flags(&location);
    json_of(&run(&["tenant", "create", "acme"], &flags));
    let dir = tempfile::tempdir().unwrap();
    let good = write(
        dir.path(),
        "orders.csv",
        "id,type,ts,phone,douyin_open_id,props.order_id,props.amount,source\n\
         c1,order,2026-10-01T10:00:00+08:00,138 0013 8000,,1001,99.5,shop\n\
         c2,follow,2026-10-01T09:00:00+08:00,,_000abc,,,douyin\n\
         c3,order,2026-10-01T10:00:00+08:00,138 0013 8000,,,12,shop\n",
    );
    let v = json_of(&run(&["import", &good, "--json"], &flags));
    assert_eq!(
        (v["accepted"].as_u64(), v["rejected"].as_u64()),
        (Some(2), Some(1)),
        "{v}"
    );
    let rej = std::fs::read_to_string(v["files"][0]["rejected_file"].as_str().unwrap()).unwrap();
    assert!(
        rej.contains("\"line\":4") && rej.contains("props.order_id"),
        "{rej}"
    );

    let bad = write(
        dir.path(),
        "bad.csv",
        "id,type,ts,telephone\nx,follow,2026-10-01T00:00:00Z,13800138000\n",
    );
    let out = run(&["import", &bad, &good], &flags);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 1") && err.contains("telephone"), "{err}");
    let out = run(&["import", "/nonexistent.jsonl"], &flags);
    assert!(!out.status.success());
    let v = json_of(&run(&["tenant", "list", "--json"], &flags));
    assert_eq!(
        v["tenants"][0]["events"], 2,
        "nothing from the failed runs was stored"
    );
}

async fn demo_generates_imports_and_reruns_idempotently(b: Backend) {
    let (location, _d) = fresh_location(b);
    let flags = store_flags(&location);
    let args = ["demo", "--fans", "400", "--days", "20", "--json"];
    let v = json_of(&run(&args, &flags));
    let accepted = v["import"]["accepted"].as_u64().unwrap();
    assert!(accepted > 400, "{v}");
    assert_eq!(v["import"]["rejected"], 0);
    let fans = v["stats"]["fans"].as_u64().unwrap();
    assert!(
        fans > 440 && fans <= 560,
        "{fans} fans for 400 people and today's 140"
    );

    // The two ready SOPs ran on today's events, whatever the hour (quiet hours only defer).
    let j = &v["journeys"];
    let today = j["today"]["events"].as_u64().unwrap();
    assert!(today > 200, "{j}");
    assert_eq!(j["today"]["new"].as_u64(), Some(today), "{j}");
    assert!(
        v["stats"]["events"].as_u64().unwrap() >= accepted + today,
        "history, today and the journeys' outcome events: {v}"
    );
    let runs = journey_runs(j);
    assert_eq!(
        runs.keys().map(String::as_str).collect::<Vec<_>>(),
        ["call_new_leads", "welcome_favorable"],
        "{j}"
    );
    assert!(runs.values().all(|&n| n > 0), "{j}");
    // 50 lead forms from 40 people: one call each (reentry 30d).
    assert_eq!(runs["call_new_leads"], 40, "{j}");
    // Staff tasks obey no quiet hours: every lead has its call.
    assert_eq!(j["tasks"]["by_team"]["tmk"], 40, "{j}");
    let welcome = report(j, "welcome_favorable");
    assert_eq!(
        welcome["runs"]["entered"].as_i64(),
        Some(
            welcome["runs"]["waiting"].as_i64().unwrap()
                + welcome["runs"]["completed"].as_i64().unwrap()
        ),
        "every run waits for quiet hours or is done: {welcome}"
    );

    let v = json_of(&run(&args, &flags));
    assert_eq!(
        (
            v["import"]["accepted"].as_u64(),
            v["import"]["duplicates"].as_u64()
        ),
        (Some(0), Some(accepted))
    );
    let j2 = &v["journeys"];
    assert_eq!(
        j2["today"]["new"], 0,
        "today's events are stored once: {j2}"
    );
    assert_eq!(journey_runs(j2), runs, "no run starts twice: {j2}");
    assert_eq!(j2["tasks"]["by_team"]["tmk"], 40, "{j2}");
}

fn report<'a>(journeys: &'a Value, name: &str) -> &'a Value {
    journeys["reports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["journey"] == name)
        .unwrap_or_else(|| panic!("no report of {name}: {journeys}"))
}

fn journey_runs(journeys: &Value) -> std::collections::BTreeMap<String, i64> {
    journeys["reports"]
        .as_array()
        .unwrap_or_else(|| panic!("no reports: {journeys}"))
        .iter()
        .map(|r| {
            (
                r["journey"].as_str().unwrap().to_string(),
                r["runs"]["entered"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Outside quiet hours (the hidden test flag sets none), Douyin's rules decide each welcome:
/// fans who wrote get a reply and fans who authorized a proactive message, both through the
/// built-in sink; the others become staff tasks.
#[test]
fn demo_journeys_send_through_the_sink_or_hand_to_staff() {
    let (location, _d) = fresh_location(Backend::Sqlite);
    let flags = store_flags(&location);
    let args = ["demo", "--fans", "200", "--days", "10", "--no-quiet-hours"];
    let v = json_of(&run(&[&args[..], &["--json"]].concat(), &flags));
    let j = &v["journeys"];
    let welcome = report(j, "welcome_favorable");
    let step = &welcome["steps"][0];
    assert_eq!(step["id"], "welcome");
    assert_eq!(
        (
            step["entered"].as_i64(),
            step["sent"].as_i64(),
            step["delivered"].as_i64()
        ),
        (Some(80), Some(40), Some(40)),
        "{welcome}"
    );
    assert_eq!(step["fell_back"]["outside_reply_window"], 40, "{welcome}");
    assert_eq!(
        welcome["steps"][1]["entered"], 80,
        "every welcomed fan is tagged: {welcome}"
    );
    assert_eq!(
        (
            j["sink"]["received"].as_u64(),
            j["sink"]["replies"].as_u64(),
            j["sink"]["proactive"].as_u64()
        ),
        (Some(40), Some(20), Some(20)),
        "{j}"
    );
    assert_eq!(j["tasks"]["by_team"]["community"], 40, "{j}");
    assert_eq!(j["tasks"]["total"], 80, "{j}");
    assert_eq!(j["waiting_for_quiet_hours"], 0, "{j}");

    // The human output, again on the same data: the same numbers, nothing sent twice.
    let out = run(&args, &flags);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "SOP journeys 标准化经营步骤",
        "welcome_favorable v1",
        "call_new_leads v1",
        "转人工 fell back          40   (outside_reply_window 40)",
        "received 0 messages",
        "staff tasks 员工任务: 80 (community 40, tmk 40)",
    ] {
        assert!(text.contains(want), "{want:?} not in:\n{text}");
    }
}

both!(
    tenants_are_created_once_with_keys,
    import_twice_stores_once_and_explains_rejections,
    import_refuses_events_before_the_earliest_time_unless_told_otherwise,
    csv_import_and_a_bad_header_stores_nothing,
    demo_generates_imports_and_reruns_idempotently,
);

#[test]
fn gen_is_deterministic_and_every_line_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.jsonl");
    let b = dir.path().join("b.jsonl");
    for p in [&a, &b] {
        let out = siyu()
            .args([
                "gen",
                "--fans",
                "300",
                "--days",
                "14",
                "--seed",
                "9",
                "--end",
                "2026-10-01T00:00:00Z",
                "--out",
            ])
            .arg(p)
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let text = std::fs::read_to_string(&a).unwrap();
    assert_eq!(text, std::fs::read_to_string(&b).unwrap());
    let now = siyu_domain::time::now_ms();
    for line in text.lines() {
        siyu_domain::parse_event(line, now).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
    let bad = siyu().args(["gen", "--fans", "0"]).output().unwrap();
    assert!(!bad.status.success());
    let bad = siyu().args(["gen", "--end", "tomorrow"]).output().unwrap();
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--end"));
}
