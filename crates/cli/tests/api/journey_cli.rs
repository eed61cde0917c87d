//! The journey, task and channel commands as an operator runs them: `journey apply` prints
//! one JSON object and a refused file names its line, field and code and stores nothing;
//! channel credentials never come back out; the policy names a bad key; every `--help` says
//! what its command does; and beside a running server the writing commands go through it.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::both;
use crate::cli::{json_of, run};
use crate::durability::{siyu, start_server, terminate};
use crate::helpers::{Backend, fresh_location, store_flags};

const WELCOME: &str = r#"name = "welcome"
trigger = { event = "follow" }

[[steps]]
id = "hello"
type = "send"
channel = "webhook"
text = "欢迎关注！"
"#;

/// `steps[1].type` on line 12 is not a step type.
const BROKEN: &str = r#"name = "broken"
trigger = { event = "follow" }

[[steps]]
id = "hello"
type = "send"
channel = "webhook"
text = "hi"

[[steps]]
id = "later"
type = "snooze"
"#;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.display().to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `siyu ARGS FLAGS` with extra environment variables.
fn run_env(args: &[&str], flags: &[String], env: &[(&str, &str)]) -> Output {
    let mut c = siyu();
    c.args(args).args(flags).env("SIYU_LOG", "warn");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// `siyu journey apply -` with `text` on standard input.
fn apply_stdin(text: &str, flags: &[String]) -> Output {
    use std::io::Write;
    let mut child = siyu()
        .args(["journey", "apply", "-"])
        .args(flags)
        .env("SIYU_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Stdout is exactly one JSON object on one line.
fn one_object(out: &Output) -> Value {
    let text = stdout(out);
    assert!(out.status.success(), "exit {}: {}", out.status, stderr(out));
    assert_eq!(text.lines().count(), 1, "one line: {text:?}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(v.is_object(), "{v}");
    v
}

async fn apply_prints_one_json_object_with_the_version(b: Backend) {
    let (location, _d) = fresh_location(b);
    let flags = store_flags(&location);
    json_of(&run(&["tenant", "create", "acme"], &flags));
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "welcome.toml", WELCOME.as_bytes());
    let v = one_object(&run(&["journey", "apply", &file], &flags));
    assert_eq!(v, serde_json::json!({"journey": "welcome", "version": 1}));
    // The same file again changes nothing, and says so; so does standard input.
    let v = one_object(&run(&["journey", "apply", &file], &flags));
    assert_eq!(
        v,
        serde_json::json!({"journey": "welcome", "version": 1, "unchanged": true})
    );
    let v = one_object(&apply_stdin(WELCOME, &flags));
    assert_eq!(v["unchanged"], true, "{v}");
    let changed = WELCOME.replace("欢迎关注！", "欢迎！");
    let v = one_object(&apply_stdin(&changed, &flags));
    assert_eq!(v, serde_json::json!({"journey": "welcome", "version": 2}));

    let list = json_of(&run(&["journey", "list", "--json"], &flags));
    let journeys = list["journeys"].as_array().unwrap();
    assert_eq!(journeys.len(), 1, "{list}");
    assert_eq!(
        (&journeys[0]["name"], &journeys[0]["version"]),
        (&Value::from("welcome"), &Value::from(2))
    );
    let show = json_of(&run(&["journey", "show", "welcome", "--json"], &flags));
    assert_eq!(show["step_list"][0]["id"], "hello", "{show}");
    assert_eq!(show["definition"], changed.as_str());
    let human = run(&["journey", "show", "welcome"], &flags);
    assert!(stdout(&human).contains("hello"), "{}", stdout(&human));

    // Paused and resumed by name; an unknown name is named.
    let v = json_of(&run(&["journey", "pause", "welcome", "--json"], &flags));
    assert_eq!(v["paused"], true, "{v}");
    let out = run(&["journey", "resume", "welcome"], &flags);
    assert!(stdout(&out).contains("resumed"), "{}", stdout(&out));
    let out = run(&["journey", "pause", "nope"], &flags);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("journey_not_found"),
        "{}",
        stderr(&out)
    );

    // A report with nothing run yet: the step, with zeros, in both languages.
    let report = json_of(&run(&["journey", "report", "welcome", "--json"], &flags));
    assert_eq!(report["steps"][0]["id"], "hello", "{report}");
    assert_eq!(report["runs"]["entered"], 0, "{report}");
    let human = stdout(&run(&["journey", "report", "welcome"], &flags));
    for word in ["delivered", "送达", "fell back", "转人工", "conversion"] {
        assert!(human.contains(word), "{word} in {human}");
    }
    let dead = json_of(&run(&["journey", "dead-letters", "--json"], &flags));
    assert_eq!(dead["dead_letters"], serde_json::json!([]));
    let v = json_of(&run(&["journey", "retry", "--all", "--json"], &flags));
    assert_eq!(v["retried"], 0, "{v}");
}

async fn a_refused_file_names_its_line_field_and_code_and_changes_nothing(b: Backend) {
    let (location, _d) = fresh_location(b);
    let flags = store_flags(&location);
    json_of(&run(&["tenant", "create", "acme"], &flags));
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "broken.toml", BROKEN.as_bytes());
    let out = run(&["journey", "apply", &file], &flags);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("error[unknown_step_type]")
            && err.contains("line 12")
            && err.contains("steps[1].type"),
        "{err}"
    );
    // Its output is JSON, so the error is too, with the field.
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&v["error"]["code"], &v["error"]["field"]),
        (
            &Value::from("unknown_step_type"),
            &Value::from("steps[1].type")
        )
    );

    // A file that is not UTF-8, or not there, is named.
    let latin1 = write(dir.path(), "latin1.toml", b"name = \"caf\xe9\"\n");
    let out = run(&["journey", "apply", &latin1], &flags);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&latin1) && stderr(&out).contains("not UTF-8"),
        "{}",
        stderr(&out)
    );
    let missing = dir.path().join("missing.toml").display().to_string();
    let out = run(&["journey", "apply", &missing], &flags);
    assert!(!out.status.success());
    assert!(stderr(&out).contains(&missing), "{}", stderr(&out));

    let list = json_of(&run(&["journey", "list", "--json"], &flags));
    assert_eq!(
        list["journeys"],
        serde_json::json!([]),
        "nothing was stored"
    );
}

async fn channel_set_then_list_never_shows_a_credential(b: Backend) {
    let (location, _d) = fresh_location(b);
    let flags = store_flags(&location);
    json_of(&run(&["tenant", "create", "acme"], &flags));
    let secrets = [
        "whsec-TOP-SECRET-1",
        "dy-token-TOP-SECRET-2",
        "ROBOTKEY-TOP-SECRET-3",
    ];

    // The kill switch of a channel not set up yet is refused.
    let out = run(&["channel", "kill", "webhook"], &flags);
    assert!(
        stderr(&out).contains("channel_not_configured"),
        "{}",
        stderr(&out)
    );
    // A first set-up without its credential names the flag.
    let out = run(
        &[
            "channel",
            "set",
            "webhook",
            "--url",
            "http://127.0.0.1:9/hook",
        ],
        &flags,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--secret"), "{}", stderr(&out));

    let mut printed = String::new();
    let out = run(
        &[
            "channel",
            "set",
            "webhook",
            "--url",
            "http://127.0.0.1:9/hook",
            "--secret",
            secrets[0],
            "--concurrency",
            "4",
        ],
        &flags,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    printed += &stdout(&out);
    // Credentials can come from the environment instead of the command line.
    let out = run_env(
        &[
            "channel",
            "set",
            "douyin_im",
            "--open-id",
            "biz-open-id",
            "--base",
            "http://127.0.0.1:9",
            "--json",
        ],
        &flags,
        &[("SIYU_DOUYIN_ACCESS_TOKEN", secrets[1])],
    );
    let v = json_of(&out);
    assert_eq!(
        (&v["channel"], &v["configured"]),
        (&Value::from("douyin_im"), &Value::Bool(true))
    );
    printed += &stdout(&out);
    let robot = format!(
        "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={}",
        secrets[2]
    );
    let out = run(&["channel", "set", "wecom_robot", "--url", &robot], &flags);
    assert!(out.status.success(), "{}", stderr(&out));
    printed += &stdout(&out);

    let list = json_of(&run(&["channel", "list", "--json"], &flags));
    let channels = list["channels"].as_array().unwrap();
    assert_eq!(channels.len(), 3);
    assert!(channels.iter().all(|c| c["configured"] == true), "{list}");
    printed += &list.to_string();
    printed += &stdout(&run(&["channel", "list"], &flags));

    let out = json_of(&run(&["channel", "kill", "webhook", "--json"], &flags));
    assert_eq!(out["killed"], true, "{out}");
    let list = json_of(&run(&["channel", "list", "--json"], &flags));
    assert_eq!(list["channels"][0]["killed"], true, "{list}");
    let out = run(&["channel", "resume", "webhook"], &flags);
    assert!(stdout(&out).contains("resumed"), "{}", stdout(&out));
    printed += &stdout(&out);
    let list = json_of(&run(&["channel", "list", "--json"], &flags));
    assert_eq!(list["channels"][0]["killed"], false, "{list}");
    // A later change keeps the stored secret.
    let out = run(
        &["channel", "set", "webhook", "--timeout-ms", "2000"],
        &flags,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    printed += &stdout(&out);

    for s in secrets {
        assert!(!printed.contains(s), "{s} printed:\n{printed}");
    }
}

async fn task_list_on_an_empty_inbox(b: Backend) {
    let (location, _d) = fresh_location(b);
    let flags = store_flags(&location);
    json_of(&run(&["tenant", "create", "acme"], &flags));
    let v = json_of(&run(&["task", "list", "--json"], &flags));
    assert_eq!(v["tasks"], serde_json::json!([]));
    let out = run(
        &["task", "list", "--state", "open", "--team", "north"],
        &flags,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("no tasks"), "{}", stdout(&out));
    let out = run(&["task", "claim", "7", "--agent", "小王"], &flags);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("task_not_found"), "{}", stderr(&out));
    let out = run(&["task", "list", "--state", "lost"], &flags);
    assert!(
        !out.status.success(),
        "a state that is not one is a usage error"
    );
}

async fn policy_set_changes_fields_and_names_a_bad_key(b: Backend) {
    let (location, _d) = fresh_location(b);
    let flags = store_flags(&location);
    json_of(&run(&["tenant", "create", "acme"], &flags));
    let v = json_of(&run(&["journey", "policy", "--json"], &flags));
    assert_eq!(v["time_zone"], "Asia/Shanghai", "{v}");
    let v = json_of(&run(
        &[
            "journey",
            "policy",
            "set",
            "daily_cap=5",
            "time_zone=Asia/Tokyo",
            "--json",
        ],
        &flags,
    ));
    assert_eq!(
        (&v["daily_cap"], &v["time_zone"]),
        (&Value::from(5), &Value::from("Asia/Tokyo")),
        "{v}"
    );
    let v = json_of(&run(
        &[
            "journey",
            "policy",
            "set",
            "daily_cap=null",
            "quiet_start=23:00",
            "--json",
        ],
        &flags,
    ));
    assert_eq!(
        (&v["daily_cap"], &v["quiet_start"]),
        (&Value::Null, &Value::from("23:00"))
    );
    let human = stdout(&run(&["journey", "policy"], &flags));
    assert!(
        human.contains("Asia/Tokyo") && human.contains("no cap"),
        "{human}"
    );

    let out = run(&["journey", "policy", "set", "colour=red"], &flags);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("invalid_policy") && stderr(&out).contains("colour"),
        "{}",
        stderr(&out)
    );
    let out = run(&["journey", "policy", "set", "daily_cap=0"], &flags);
    assert!(stderr(&out).contains("daily_cap"), "{}", stderr(&out));
    let out = run(&["journey", "policy", "set", "daily_cap"], &flags);
    assert!(stderr(&out).contains("KEY=VALUE"), "{}", stderr(&out));
    // Nothing refused was stored.
    let v = json_of(&run(&["journey", "policy", "--json"], &flags));
    assert_eq!(
        (&v["daily_cap"], &v["time_zone"]),
        (&Value::Null, &Value::from("Asia/Tokyo"))
    );
}

both!(
    apply_prints_one_json_object_with_the_version,
    a_refused_file_names_its_line_field_and_code_and_changes_nothing,
    channel_set_then_list_never_shows_a_credential,
    task_list_on_an_empty_inbox,
    policy_set_changes_fields_and_names_a_bad_key,
);

#[test]
fn every_journey_task_and_channel_help_says_what_it_does() {
    let cases: &[(&[&str], &[&str])] = &[
        (&[], &["journey", "task", "channel"]),
        (&["journey"], &["apply", "dead-letters", "policy"]),
        (
            &["journey", "apply"],
            &["journey file", "standard input", "line"],
        ),
        (&["journey", "list"], &["journeys"]),
        (&["journey", "show"], &["definition"]),
        (&["journey", "pause"], &["kill switch"]),
        (&["journey", "resume"], &["held runs"]),
        (
            &["journey", "report"],
            &["skipped by reason", "95%", "interval"],
        ),
        (
            &["journey", "dead-letters"],
            &["gave up", "--journey", "--limit"],
        ),
        (&["journey", "retry"], &["--all", "queue"]),
        (&["journey", "policy"], &["quiet hours", "set"]),
        (
            &["journey", "policy", "set"],
            &["KEY=VALUE", "daily_cap=null"],
        ),
        (&["task"], &["list", "claim", "done"]),
        (
            &["task", "list"],
            &["--team", "--agent", "--state", "overdue"],
        ),
        (&["task", "claim"], &["--agent"]),
        (&["task", "done"], &["--outcome"]),
        (&["channel"], &["set", "list", "kill", "resume"]),
        (
            &["channel", "set"],
            &["webhook", "douyin_im", "wecom_robot"],
        ),
        (
            &["channel", "set", "webhook"],
            &["--url", "--secret", "SIYU_WEBHOOK_SECRET"],
        ),
        (
            &["channel", "set", "douyin_im"],
            &["--access-token", "--open-id", "SIYU_DOUYIN_ACCESS_TOKEN"],
        ),
        (
            &["channel", "set", "wecom_robot"],
            &["--url", "--concurrency"],
        ),
        (&["channel", "list"], &["never a credential"]),
        (&["channel", "kill"], &["nothing is sent"]),
        (&["channel", "resume"], &["kill switch"]),
    ];
    crate::helpers::help_says(cases);
}

#[test]
fn writes_beside_a_running_server_go_through_it() {
    let (location, _d) = fresh_location(Backend::Sqlite);
    let flags = store_flags(&location);
    json_of(&run(&["tenant", "create", "acme"], &flags));
    let (server, _url) = start_server(&flags);
    let dir = tempfile::tempdir().unwrap();
    let broken = write(dir.path(), "broken.toml", BROKEN.as_bytes());
    let welcome = write(dir.path(), "welcome.toml", WELCOME.as_bytes());

    let out = run(&["journey", "apply", &broken], &flags);
    let refused = stderr(&out);
    // Every command runs before any assertion: a failed one must not leave the server running.
    let applied = run(&["journey", "apply", &welcome], &flags);
    let policy = run(
        &["journey", "policy", "set", "daily_cap=4", "--json"],
        &flags,
    );
    let channel = run(
        &[
            "channel",
            "set",
            "webhook",
            "--url",
            "http://127.0.0.1:9/h",
            "--secret",
            "s3cret-XYZ",
        ],
        &flags,
    );
    let paused = run(&["journey", "pause", "welcome", "--json"], &flags);
    terminate(server);

    assert_eq!(out.status.code(), Some(2), "{refused}");
    assert!(
        refused.contains("unknown_step_type") && refused.contains("line 12"),
        "{refused}"
    );
    let v = one_object(&applied);
    assert_eq!(v, serde_json::json!({"journey": "welcome", "version": 1}));
    assert_eq!(json_of(&policy)["daily_cap"], 4);
    assert!(channel.status.success(), "{}", stderr(&channel));
    assert!(!stdout(&channel).contains("s3cret-XYZ"));
    assert_eq!(json_of(&paused)["paused"], true);
    // What the server stored is what the store reads.
    let v = json_of(&run(&["journey", "policy", "--json"], &flags));
    assert_eq!(v["daily_cap"], 4, "{v}");
}
