//! What the CLI writes, where it goes: every command into a pipe whose reader has gone
//! (`siyu … | head`) exits 0 without a panic; `siyu serve` keeps serving with its stdout
//! closed and logs plain text, not ANSI colours, into a pipe; every file a `--help` names exists.
//!
//! A closed pipe is made deterministic in one of two ways. Either the reader end is closed
//! before the command writes anything, so its first write fails; or the reader takes one byte
//! and closes, for commands whose output is checked to be well over the 64 KiB a Linux pipe
//! holds, so the command cannot have finished writing before the reader left.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use crate::both;
use crate::cli::{json_of, run};
use crate::durability::{siyu, terminate};
use crate::helpers::{Backend, fresh_location, store_flags};

/// Output this large cannot fit in the pipe (64 KiB) while the reader still reads.
const LARGE: usize = 128 * 1024;

/// Runs `siyu ARGS FLAGS` with stdout a pipe whose reader takes `keep` bytes, then closes it.
fn into_closed_pipe(args: &[&str], flags: &[String], keep: usize) -> (ExitStatus, String) {
    let mut child = siyu()
        .args(args)
        .args(flags)
        .env("SIYU_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn siyu");
    let mut stdout = child.stdout.take().unwrap();
    if keep > 0 {
        let mut first = vec![0; keep];
        stdout.read_exact(&mut first).expect("the first bytes");
    }
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The command exits 0, quietly, however early its reader left.
fn assert_quiet_into_closed_pipe(args: &[&str], flags: &[String], keep: usize) {
    let (status, stderr) = into_closed_pipe(args, flags, keep);
    assert!(
        status.success() && !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "siyu {args:?} into a pipe closed after {keep} bytes: {status}\n{stderr}"
    );
}

/// As [`assert_quiet_into_closed_pipe`] after the reader took one byte, for a command whose
/// whole output is first checked to be [`LARGE`].
fn assert_quiet_mid_stream(args: &[&str], flags: &[String]) {
    let whole = run(args, flags);
    assert!(
        whole.status.success(),
        "siyu {args:?}: {}",
        String::from_utf8_lossy(&whole.stderr)
    );
    assert!(
        whole.stdout.len() > LARGE,
        "siyu {args:?} writes only {} bytes: too few to fill the pipe",
        whole.stdout.len()
    );
    assert_quiet_into_closed_pipe(args, flags, 1);
}

/// A brand of a few thousand fans (with a truth file), and 2,500 pairs of fans that share a
/// phone but hold different Douyin accounts: as many possible duplicates.
fn brand(dir: &Path) -> (String, String) {
    let events = dir.join("brand.jsonl");
    let truth = dir.join("truth.csv");
    let out = siyu()
        .args(["gen", "--fans", "2000", "--days", "30", "--seed", "7"])
        .args(["--end", "2026-10-01T00:00:00Z", "--out"])
        .arg(&events)
        .arg("--truth")
        .arg(&truth)
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut pairs = String::new();
    for i in 0..2500 {
        for side in ["a", "b"] {
            pairs.push_str(&format!(
                concat!(
                    r#"{{"id":"pair-{i}-{side}","type":"follow","ts":"2026-09-20T00:00:00Z","#,
                    r#""identities":{{"douyin_open_id":"o{side}{i}","phone":"139{i:08}"}}}}"#,
                    "\n"
                ),
                i = i,
                side = side
            ));
        }
    }
    let pairs_file = dir.join("pairs.jsonl");
    std::fs::write(&pairs_file, pairs).unwrap();
    (
        format!("{} {}", events.display(), pairs_file.display()),
        truth.display().to_string(),
    )
}

async fn every_command_exits_quietly_into_a_closed_pipe(b: Backend) {
    let (location, _d) = fresh_location(b);
    let flags = store_flags(&location);
    let dir = tempfile::tempdir().unwrap();
    json_of(&run(&["tenant", "create", "acme"], &flags));
    let (files, truth) = brand(dir.path());
    let files: Vec<&str> = files.split(' ').collect();
    let mut import = vec!["import"];
    import.extend(&files);
    // Import runs for real into a closed pipe (its summary is printed after the commit) ...
    assert_quiet_into_closed_pipe(&import, &flags, 0);
    // ... and so do the commands that change something: what they did is done.
    assert_quiet_into_closed_pipe(
        &["segment", "save", "everyone", "count(*, 3650d) >= 0"],
        &flags,
        0,
    );
    assert_quiet_into_closed_pipe(&["tag", "add", "vip", "--fan", "1"], &flags, 0);
    let v = json_of(&run(&["segment", "show", "everyone", "--json"], &flags));
    assert!(v["count"].as_u64().unwrap() > 4000, "{v}");
    let v = json_of(&run(&["tag", "history", "1", "--json"], &flags));
    assert_eq!(v["tags"][0], "vip", "{v}");

    let export = dir.path().join("export.csv").display().to_string();
    let ids = dir.path().join("ids.csv").display().to_string();
    let small: &[&[&str]] = &[
        &import,
        &["tenant", "list"],
        &["tenant", "set", "acme", "--custom-domain", "private"],
        &["fan", "show", "1"],
        &[
            "fan",
            "lookup",
            "--kind",
            "phone",
            "--value",
            "139 0000 0001",
        ],
        &[
            "fan",
            "lookup",
            "--kind",
            "phone",
            "--value",
            "138 0000 0000",
        ],
        &["identity", "export", "--out", &ids],
        &["identity", "eval", "--truth", &truth],
        &["report", "dedup"],
        &["report", "layers", "--as-of", "2026-10-01T00:00:00Z"],
        &["report", "flow", "--from", "2026-09-01T00:00:00Z"],
        &["segment", "count", "layer >= favorable"],
        &["segment", "export", "layer >= favorable", "--out", &export],
        &["segment", "list"],
        &["segment", "show", "everyone"],
        &["segment", "triggers"],
        &["tag", "history", "1"],
        &["connector", "douyin"],
        &["connector", "oceanengine"],
        &["journey", "list"],
        &["journey", "dead-letters"],
        &["journey", "policy"],
        &["task", "list"],
        &["channel", "list"],
    ];
    for args in small {
        let mut args = args.to_vec();
        if args[..2] == ["report", "flow"] {
            args.extend(["--to", "2026-10-01T00:00:00Z"]);
        }
        assert_quiet_into_closed_pipe(&args, &flags, 0);
        // Every command but tenant set and connector has --json.
        if !matches!(args[0], "tenant" | "connector") {
            args.push("--json");
            assert_quiet_into_closed_pipe(&args, &flags, 0);
        }
    }
    assert_quiet_into_closed_pipe(&["tenant", "list", "--json"], &flags, 0);

    let large: &[&[&str]] = &[
        &["identity", "duplicates"],
        &[
            "segment",
            "count",
            "count(*, 3650d) >= 0",
            "--sample",
            "4000",
        ],
        &["segment", "members", "everyone", "--limit", "4000"],
    ];
    for args in large {
        assert_quiet_mid_stream(args, &flags);
        let mut args = args.to_vec();
        args.push("--json");
        assert_quiet_mid_stream(&args, &flags);
    }

    // Keys are printed only once: if they cannot be, that is an error, not a quiet exit.
    let (status, stderr) = into_closed_pipe(&["tenant", "create", "beta"], &flags, 0);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("tenant beta was created, but its keys could not be printed")
            && !stderr.contains("panicked"),
        "{stderr}"
    );
}

async fn serve_keeps_serving_with_stdout_closed_and_logs_plain_text(b: Backend) {
    let (location, _d) = fresh_location(b);
    let mut server = siyu()
        .arg("serve")
        .args(store_flags(&location))
        .args(["--addr", "127.0.0.1:0"])
        .env("SIYU_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn siyu serve");
    // Nobody reads the banner: the server must not care.
    drop(server.stdout.take());
    let mut stderr = BufReader::new(server.stderr.take().unwrap());
    let mut log = String::new();
    loop {
        let mut line = String::new();
        let n = stderr.read_line(&mut line).expect("read the log");
        assert!(n > 0, "siyu serve ended before serving:\n{log}");
        log.push_str(&line);
        if line.contains("serving") {
            break;
        }
    }
    if log.contains('\x1b') {
        server.kill().unwrap();
        panic!("ANSI escapes in a log that is not a terminal:\n{log:?}");
    }
    let addr = log
        .split_once(" serving addr=")
        .map(|(_, rest)| rest.trim().to_string())
        .unwrap_or_else(|| panic!("no address in the log:\n{log}"));
    let health = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    terminate(server);
    stderr.read_to_string(&mut log).unwrap();
    assert!(log.contains("stopped"), "{log}");
    assert!(
        !log.contains('\x1b'),
        "ANSI escapes in a log that is not a terminal:\n{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}

both!(
    every_command_exits_quietly_into_a_closed_pipe,
    serve_keeps_serving_with_stdout_closed_and_logs_plain_text,
);

#[test]
fn gen_and_demo_exit_quietly_into_a_closed_pipe() {
    let gen_args = [
        "gen",
        "--fans",
        "500",
        "--days",
        "30",
        "--end",
        "2026-10-01T00:00:00Z",
    ];
    assert_quiet_mid_stream(&gen_args, &[]);
    let dir = tempfile::tempdir().unwrap();
    let flags = vec!["--data".to_string(), dir.path().display().to_string()];
    let demo = ["demo", "--fans", "100", "--days", "5"];
    assert_quiet_into_closed_pipe(&demo, &flags, 0);
    assert_quiet_into_closed_pipe(&[&demo[..], &["--json"]].concat(), &flags, 0);
}

#[test]
fn demo_serve_does_not_suggest_running_itself() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = siyu()
        .args(["demo", "--fans", "100", "--days", "5", "--serve"])
        .args(["--addr", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .env("SIYU_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn siyu demo --serve");
    let mut stdout = BufReader::new(server.stdout.take().unwrap());
    let mut shown = String::new();
    while !shown.contains("Serving on http://") {
        let n = stdout.read_line(&mut shown).expect("read the demo");
        assert!(n > 0, "siyu demo --serve ended before serving:\n{shown}");
    }
    terminate(server);
    assert!(shown.contains("Segment 精准筛选"), "{shown}");
    assert!(!shown.contains("Next:"), "{shown}");
}

/// `siyu --help`, then each command's `--help`, recursively: (the command, its help).
fn every_help() -> Vec<(Vec<String>, String)> {
    let mut todo = vec![vec![]];
    let mut done = Vec::new();
    while let Some(cmd) = todo.pop() {
        let out = siyu().args(&cmd).arg("--help").output().unwrap();
        assert!(out.status.success(), "siyu {cmd:?} --help");
        let help = String::from_utf8(out.stdout).unwrap();
        // Subcommands are listed under "Commands:", one per line, until a blank line.
        let listed = help
            .lines()
            .skip_while(|l| *l != "Commands:")
            .skip(1)
            .take_while(|l| !l.is_empty());
        for line in listed {
            // A description wrapped onto the next line is indented further.
            let Some(name) = line.strip_prefix("  ").filter(|l| !l.starts_with(' ')) else {
                continue;
            };
            let name = name.split_whitespace().next().unwrap();
            if name != "help" {
                todo.push([&cmd[..], &[name.to_string()]].concat());
            }
        }
        done.push((cmd, help));
    }
    done
}

/// The repository's paths (`docs/….md`, `bench/….py`) a text names, with any `#anchor`.
fn paths_named(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for dir in ["docs/", "bench/"] {
        for (i, _) in text.match_indices(dir) {
            let path: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "._-/#".contains(*c))
                .collect();
            found.push(path.trim_end_matches('.').to_string());
        }
    }
    found
}

/// GitHub's anchor for a Markdown heading (for the ASCII headings docs use).
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn every_help_is_quiet_into_a_closed_pipe_and_names_files_that_exist() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let helps = every_help();
    assert!(helps.len() > 40, "{} help texts", helps.len());
    let mut named = 0;
    for (cmd, help) in &helps {
        let mut args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        args.push("--help");
        assert_quiet_into_closed_pipe(&args, &[], 0);
        for path in paths_named(help) {
            named += 1;
            let (file, fragment) = path.split_once('#').unwrap_or((&path, ""));
            let text = std::fs::read_to_string(root.join(file))
                .unwrap_or_else(|e| panic!("siyu {cmd:?} --help names {path}: {e}"));
            if !fragment.is_empty() {
                assert!(
                    text.lines()
                        .filter_map(|l| l.strip_prefix('#'))
                        .any(|h| anchor(h.trim_start_matches('#')) == fragment),
                    "siyu {cmd:?} --help names {path}: no such heading"
                );
            }
        }
    }
    assert!(named >= 5, "only {named} paths named in the help texts");
    assert_quiet_into_closed_pipe(&["--version"], &[], 0);
}
