//! Printing: errors with their stable code, progress bars only on terminals.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Prints an error on stderr (and as `{"error": {...}}` on stdout in JSON mode) and exits
/// non-zero: 2 for bad input, 1 for a failure of the machine or the store.
pub fn fail(e: &anyhow::Error, json: bool) -> ! {
    let code = error_code(e);
    let message = format!("{e:#}");
    if json {
        println!(
            "{}",
            serde_json::json!({"error": {"code": code, "message": message, "field": null}})
        );
    }
    eprintln!("error[{code}]: {message}");
    std::process::exit(match code {
        "internal" | "store_unavailable" => 1,
        _ => 2,
    })
}

fn error_code(e: &anyhow::Error) -> &'static str {
    for cause in e.chain() {
        if let Some(a) = cause.downcast_ref::<siyu_app::AppError>() {
            return a.code();
        }
        if let Some(i) = cause.downcast_ref::<siyu_app::IdentityError>() {
            return i.code();
        }
        if let Some(c) = cause.downcast_ref::<siyu_app::connectors::SettingError>() {
            return c.code();
        }
        if let Some(s) = cause.downcast_ref::<siyu_app::segments::SegmentError>() {
            return s.code();
        }
        if let Some(s) = cause.downcast_ref::<siyu_store::StoreError>() {
            return s.code();
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
    println!("{}", serde_json::to_string_pretty(value)?);
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
