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
        let field = e.chain().find_map(|c| {
            if let Some(r) = c.downcast_ref::<crate::forward::RemoteError>() {
                return r.field().map(str::to_string);
            }
            if let Some(j) = c.downcast_ref::<siyu_app::journeys::JourneyError>() {
                return j.field();
            }
            if let Some(l) = c.downcast_ref::<siyu_app::leads::LeadsError>() {
                return l.field().map(str::to_string);
            }
            if let Some(siyu_app::spend::SpendError::Invalid { column, .. }) = c.downcast_ref() {
                return Some(column.to_string());
            }
            if let Some(l) = c.downcast_ref::<siyu_ltv::LtvError>() {
                return l.field().map(str::to_string);
            }
            c.downcast_ref::<siyu_app::channels::ChannelError>()
                .and_then(|c| c.field().map(str::to_string))
        });
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
        if let Some(j) = cause.downcast_ref::<siyu_app::journeys::JourneyError>() {
            return j.code();
        }
        if let Some(c) = cause.downcast_ref::<siyu_app::channels::ChannelError>() {
            return c.code();
        }
        if let Some(l) = cause.downcast_ref::<siyu_app::leads::LeadsError>() {
            return l.code();
        }
        if let Some(s) = cause.downcast_ref::<siyu_app::spend::SpendError>() {
            return s.code();
        }
        if let Some(l) = cause.downcast_ref::<siyu_ltv::LtvError>() {
            return l.code();
        }
        if let Some(p) = cause.downcast_ref::<siyu_app::analytics::PredictError>() {
            return p.code();
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

/// A column label in both languages, as reports show it (`sent 发送`).
#[derive(Debug, Clone, Copy)]
pub struct Label {
    pub key: &'static str,
    pub zh: &'static str,
    pub en: &'static str,
}

/// Every column label the journey, task, channel and LTV commands print: one table, so each word
/// is translated once.
#[rustfmt::skip]
pub const LABELS: &[Label] = &[
    Label { key: "step", zh: "步骤", en: "step" },
    Label { key: "type", zh: "类型", en: "type" },
    Label { key: "channel", zh: "渠道", en: "channel" },
    Label { key: "entered", zh: "进入", en: "entered" },
    Label { key: "waiting", zh: "等待中", en: "waiting" },
    Label { key: "sent", zh: "发送", en: "sent" },
    Label { key: "delivered", zh: "送达", en: "delivered" },
    Label { key: "pending", zh: "待送达", en: "pending" },
    Label { key: "failed", zh: "失败", en: "failed" },
    Label { key: "skipped", zh: "跳过", en: "skipped" },
    Label { key: "fell_back", zh: "转人工", en: "fell back" },
    Label { key: "converted", zh: "转化", en: "converted" },
    Label { key: "replied", zh: "回复", en: "replied" },
    Label { key: "awaiting_goal", zh: "待转化", en: "awaiting goal" },
    Label { key: "held", zh: "暂停中", en: "held" },
    Label { key: "completed", zh: "完成", en: "completed" },
    Label { key: "merged", zh: "已合并", en: "merged" },
    Label { key: "conversion_rate", zh: "转化率", en: "conversion" },
    Label { key: "variant", zh: "版本", en: "variant" },
    Label { key: "rate", zh: "转化率", en: "rate" },
    Label { key: "interval95", zh: "95%区间", en: "95% interval" },
    Label { key: "share", zh: "流量占比", en: "share" },
    Label { key: "steps", zh: "步骤", en: "steps" },
    Label { key: "runs", zh: "旅程实例", en: "runs" },
    Label { key: "variants", zh: "内容版本", en: "variants" },
    Label { key: "journey", zh: "旅程", en: "journey" },
    Label { key: "version", zh: "版本号", en: "version" },
    Label { key: "paused", zh: "已暂停", en: "paused" },
    Label { key: "active", zh: "运行中", en: "active" },
    Label { key: "trigger", zh: "触发", en: "trigger" },
    Label { key: "updated", zh: "更新于", en: "updated" },
    Label { key: "id", zh: "编号", en: "id" },
    Label { key: "team", zh: "团队", en: "team" },
    Label { key: "state", zh: "状态", en: "state" },
    Label { key: "agent", zh: "处理人", en: "agent" },
    Label { key: "due", zh: "截止", en: "due" },
    Label { key: "overdue", zh: "逾期", en: "overdue" },
    Label { key: "text", zh: "内容", en: "text" },
    Label { key: "fan", zh: "粉丝", en: "fan" },
    Label { key: "attempts", zh: "尝试", en: "attempts" },
    Label { key: "answer", zh: "渠道应答", en: "answer" },
    Label { key: "configured", zh: "已配置", en: "configured" },
    Label { key: "killed", zh: "已停用", en: "killed" },
    Label { key: "concurrency", zh: "并发", en: "concurrency" },
    Label { key: "timeout_ms", zh: "超时ms", en: "timeout ms" },
    Label { key: "target", zh: "目标", en: "target" },
    Label { key: "name", zh: "名称", en: "name" },
    Label { key: "strategy", zh: "分配方式", en: "strategy" },
    Label { key: "first_contact", zh: "首次联系时限", en: "first contact" },
    Label { key: "recycle_after", zh: "回收期", en: "recycle after" },
    Label { key: "lead_agent", zh: "组长", en: "lead agent" },
    Label { key: "escalate", zh: "超时处理", en: "escalate" },
    Label { key: "agents", zh: "成员", en: "agents" },
    Label { key: "capacity", zh: "容量", en: "capacity" },
    Label { key: "daily_cap", zh: "日上限", en: "daily cap" },
    Label { key: "hours", zh: "工作时间", en: "hours" },
    Label { key: "weight", zh: "权重", en: "weight" },
    Label { key: "open_leads", zh: "未结线索", en: "open leads" },
    Label { key: "today", zh: "今日", en: "today" },
    Label { key: "position", zh: "顺序", en: "position" },
    Label { key: "if", zh: "条件", en: "if" },
    Label { key: "owner", zh: "负责人", en: "owner" },
    Label { key: "arrivals", zh: "到达次数", en: "arrivals" },
    Label { key: "created", zh: "创建于", en: "created" },
    Label { key: "kind", zh: "方式", en: "kind" },
    Label { key: "result", zh: "结果", en: "result" },
    Label { key: "at", zh: "时间", en: "at" },
    Label { key: "repeat", zh: "重复", en: "repeat" },
    Label { key: "template", zh: "模板", en: "template" },
    Label { key: "members_of", zh: "成员/容量", en: "members/capacity" },
    Label { key: "invited", zh: "已邀请", en: "invited" },
    Label { key: "active_7d", zh: "7日活跃", en: "active 7d" },
    Label { key: "joins", zh: "入群", en: "joins" },
    Label { key: "leaves", zh: "退群", en: "leaves" },
    Label { key: "messages", zh: "发言", en: "messages" },
    Label { key: "date", zh: "日期", en: "date" },
    Label { key: "model", zh: "模型", en: "model" },
    Label { key: "customers", zh: "客户", en: "customers" },
    Label { key: "repeat_customers", zh: "复购客户", en: "repeat customers" },
    Label { key: "distinct_rows", zh: "不同行", en: "distinct rows" },
    Label { key: "log_likelihood", zh: "对数似然", en: "log-likelihood" },
    Label { key: "iterations", zh: "迭代", en: "iterations" },
    Label { key: "parameters", zh: "参数", en: "parameters" },
];

/// The label of `key` as `en 中文` (the key itself if the table lacks it).
pub fn label(key: &str) -> String {
    match LABELS.iter().find(|l| l.key == key) {
        Some(l) => format!("{} {}", l.en, l.zh),
        None => key.to_string(),
    }
}

/// The English label of `key`.
pub fn en(key: &str) -> &str {
    LABELS.iter().find(|l| l.key == key).map_or(key, |l| l.en)
}

/// The Chinese label of `key`.
pub fn zh(key: &str) -> &str {
    LABELS.iter().find(|l| l.key == key).map_or(key, |l| l.zh)
}

/// A table's two header rows for `keys`: English, then Chinese.
pub fn headers(keys: &[&str]) -> [Vec<String>; 2] {
    [
        keys.iter().map(|k| en(k).to_string()).collect(),
        keys.iter().map(|k| zh(k).to_string()).collect(),
    ]
}

/// The width `s` takes on a terminal: CJK and full-width characters take two columns.
pub fn width(s: &str) -> usize {
    s.chars()
        .map(|c| match c as u32 {
            0x1100..=0x115F
            | 0x2E80..=0x303E
            | 0x3041..=0x33FF
            | 0x3400..=0x4DBF
            | 0x4E00..=0x9FFF
            | 0xA000..=0xA4CF
            | 0xAC00..=0xD7A3
            | 0xF900..=0xFAFF
            | 0xFE30..=0xFE4F
            | 0xFF00..=0xFF60
            | 0xFFE0..=0xFFE6 => 2,
            _ => 1,
        })
        .sum()
}

/// Rows of cells as an aligned table, two spaces between columns and two before the first;
/// `align` has one letter per column, `l` (left) or `r` (right, for numbers); columns beyond
/// it are left-aligned.
pub fn table(rows: &[Vec<String>], align: &str) {
    let right: Vec<bool> = align.chars().map(|c| c == 'r').collect();
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| width(s))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let pad = " ".repeat(widths[c].saturating_sub(width(cell)));
            line.push_str("  ");
            if right.get(c).copied().unwrap_or(false) {
                line.push_str(&pad);
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&pad);
            }
        }
        outln!("{}", line.trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_takes_two_columns_and_every_label_is_once_in_the_table() {
        assert_eq!(width("sent 发送"), 9);
        assert_eq!(width("abc"), 3);
        assert_eq!(label("fell_back"), "fell back 转人工");
        assert_eq!(label("no_such_key"), "no_such_key");
        let mut keys: Vec<_> = LABELS.iter().map(|l| l.key).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), LABELS.len());
    }
}
