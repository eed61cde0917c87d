//! Printing: every byte the CLI writes to stdout and stderr goes through here.
//!
//! `println!` panics when stdout is a pipe whose reader has gone (`siyu fan show 7 | head`), and
//! `eprintln!` when stderr is closed. So the CLI prints with [`outln!`], [`out!`] and
//! [`errln!`] instead (clippy's `print_stdout` and `print_stderr` lints, denied in `main.rs`,
//! keep it that way). A closed stdout ends a one-shot command quietly with exit code 0, as
//! `ripgrep` does: whoever read the output has what it wanted. A server (`siyu serve`,
//! `siyu demo --serve`) ignores a closed stdout instead: its work is the socket, not the
//! banner. Stderr is best effort everywhere. Also here: errors with their stable code, and
//! progress bars only on terminals.

use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{ProgressBar, ProgressStyle};

/// `println!` for the CLI: a closed stdout ends the command quietly (see the module docs).
macro_rules! outln {
    () => {
        $crate::output::stdout_fmt(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::stdout_fmt(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for the CLI: a closed stdout ends the command quietly (see the module docs).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::stdout_fmt(format_args!($($arg)*))
    };
}

/// `eprintln!` that never panics: a message that cannot be written to stderr is dropped.
macro_rules! errln {
    ($($arg:tt)*) => {{
        let _ = ::std::io::Write::write_fmt(
            &mut ::std::io::stderr(),
            format_args!("{}\n", format_args!($($arg)*)),
        );
    }};
}

/// Set once, by `main`, for commands that serve: they outlive their stdout.
static SERVING: AtomicBool = AtomicBool::new(false);

/// From now on a failed write to stdout is ignored rather than ending the process.
pub fn serving() {
    SERVING.store(true, Ordering::Relaxed);
}

/// Writes to stdout; what [`outln!`] and [`out!`] expand to.
pub fn stdout_fmt(args: fmt::Arguments<'_>) {
    let written = io::stdout().lock().write_fmt(args);
    if let Err(e) = written {
        stdout_failed(e);
    }
}

/// Writes `text` to stdout and flushes it, handing back any error instead of ending the
/// process: for output that must not be lost silently, such as keys printed only once.
pub fn try_stdout(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Stdout as an [`io::Write`] for bulk output (`siyu gen` without `--out`), with the policy
/// of [`outln!`]: wrap it in a `BufWriter`.
pub struct Stdout;

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = io::stdout().lock().write(buf);
        match written {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                stdout_failed(e);
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        let flushed = io::stdout().lock().flush();
        if let Err(e) = flushed {
            stdout_failed(e);
        }
        Ok(())
    }
}

/// The policy for a failed write to stdout. Returns only while serving.
fn stdout_failed(e: io::Error) {
    if SERVING.load(Ordering::Relaxed) {
        return;
    }
    if e.kind() == io::ErrorKind::BrokenPipe {
        // The reader is gone (`| head`): nothing is wrong, and nothing more can be said.
        std::process::exit(0);
    }
    // Anything else (a full disk behind `>`) is an error like any other.
    fail(
        &anyhow::Error::new(e).context("cannot write to standard output"),
        false,
    )
}

/// Prints an error on stderr (and as `{"error": {...}}` on stdout in JSON mode) and exits
/// non-zero: 2 for bad input, 1 for a failure of the machine or the store. Neither print can
/// end the process early, so the exit code is always the error's.
pub fn fail(e: &anyhow::Error, json: bool) -> ! {
    let code = error_code(e);
    let message = format!("{e:#}");
    if json {
        let field = e
            .chain()
            .find_map(|c| c.downcast_ref::<crate::forward::RemoteError>())
            .and_then(|r| r.field());
        let body = serde_json::json!({"error": {"code": code, "message": message, "field": field}});
        let _ = try_stdout(&format!("{body}\n"));
    }
    errln!("error[{code}]: {message}");
    std::process::exit(match code {
        "internal" | "store_unavailable" => 1,
        _ => 2,
    })
}

fn error_code(e: &anyhow::Error) -> &str {
    for cause in e.chain() {
        // The server's own code, for a command that went through it (`crate::forward`).
        if let Some(r) = cause.downcast_ref::<crate::forward::RemoteError>() {
            return r.code();
        }
        if let Some(a) = cause.downcast_ref::<siyu_app::AppError>() {
            return a.code();
        }
        if let Some(l) = cause.downcast_ref::<siyu_app::LayerError>() {
            return l.code();
        }
        if let Some(i) = cause.downcast_ref::<siyu_app::IdentityError>() {
            return i.code();
        }
        if let Some(c) = cause.downcast_ref::<siyu_app::connectors::SettingError>() {
            return c.code();
        }
        if let Some(c) = cause.downcast_ref::<siyu_app::secrets::SecretError>() {
            return c.code();
        }
        if let Some(s) = cause.downcast_ref::<siyu_app::segments::SegmentError>() {
            return s.code();
        }
        if let Some(s) = cause.downcast_ref::<siyu_store::StoreError>() {
            return s.code();
        }
        if let Some(l) = cause.downcast_ref::<siyu_store::LockError>() {
            return l.code();
        }
        if cause.downcast_ref::<std::io::Error>().is_some() {
            return "io_error";
        }
    }
    "invalid_argument"
}

/// A progress bar on stderr when it is a terminal, hidden otherwise.
pub fn progress(len: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{what:>9} [{{elapsed_precise}}] {{wide_bar}} {{percent:>3}}% {{per_sec}} eta {{eta}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Prints `value` as pretty JSON.
pub fn json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Thousands separators for humans.
pub fn n(x: u64) -> String {
    let s = x.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
