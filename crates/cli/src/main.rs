//! `siyu`: the command line. Thin: parse flags into checked options, open the store, call the
//! services, print. Each subcommand lives in its own module; all printing goes through
//! `output` (its macros never panic on a closed pipe), which the two lints below enforce.

#![deny(clippy::print_stdout, clippy::print_stderr)]

#[macro_use]
mod output;

mod alloc;
mod bench;
mod bench_analytics;
mod bench_journeys;
mod bench_leads;
mod bench_ltv;
mod bench_readers;
mod channel;
mod cli;
mod connector;
mod demo;
mod fan;
mod forward;
mod gen_cmd;
mod group;
mod identity;
mod import;
mod journey;
mod lead;
mod ltv;
mod report;
mod safeguards;
mod segment;
mod serve;
mod spend;
mod tenant;

use std::io::IsTerminal;

use clap::Parser;

#[global_allocator]
static ALLOCATOR: alloc::Allocator = alloc::Allocator;

fn main() {
    alloc::init();
    let cli = cli::Cli::parse();
    let serves = match cli.command {
        cli::Command::Serve(_) => true,
        cli::Command::Demo(ref d) => d.serve,
        _ => false,
    };
    if serves {
        output::serving();
    }
    // The server logs what it does; one-shot commands only warnings (their output is the report).
    let default_level = if serves { "info" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SIYU_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(colours(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR"),
        ))
        .init();
    let json = cli.json();
    if let Err(e) = run(cli) {
        output::fail(&e, json);
    }
}

/// Colours in the logs only for a person at a terminal who has not asked for none
/// (<https://no-color.org>: `NO_COLOR` set and not empty); a file or a pipe gets plain text.
fn colours(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

fn run(cli: cli::Cli) -> anyhow::Result<()> {
    use cli::Command::*;
    match cli.command {
        Serve(a) => serve::run(a),
        Tenant(a) => tenant::run(a),
        Gen(a) => gen_cmd::run(a),
        Import(a) => import::run(a),
        Demo(a) => demo::run(a),
        Fan(a) => fan::run(a),
        Identity(a) => identity::run(a),
        Report(a) => report::run(a),
        Segment(a) => segment::run(a),
        Tag(a) => segment::tag(a),
        Bench(a) => bench::run(a),
        Connector(a) => connector::run(a),
        Journey(a) => journey::run(a),
        Task(a) => journey::task(a),
        Channel(a) => channel::run(a),
        Team(a) => lead::team(a),
        Agent(a) => lead::agent(a),
        Route(a) => lead::route(a),
        Lead(a) => lead::lead(a),
        Group(a) => group::run(a),
        ImportSpend(a) => spend::run(a),
        Ltv(a) => ltv::run(a),
    }
}

#[cfg(test)]
mod tests {
    use super::colours;

    #[test]
    fn logs_are_coloured_only_on_a_terminal_without_no_color() {
        assert!(colours(true, None));
        assert!(colours(true, Some("".into())));
        assert!(!colours(true, Some("1".into())));
        assert!(!colours(false, None));
        assert!(!colours(false, Some("".into())));
    }
}
