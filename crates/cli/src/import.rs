//! `siyu import`: native JSON lines and CSV, streamed through the ingest writer.
//!
//! The main thread reads and parses; the writer thread commits. A few batches are kept in
//! flight, so parsing the next chunk overlaps with committing the last one. Running the same
//! import twice stores nothing twice (event ids are idempotency keys). Refused lines go to
//! `FILE.rejected.jsonl` beside the input, each with its line number, code, field and reason.
//!
//! `--format oceanengine` reads Ocean Engine lead exports instead (JSON lines or CSV, by
//! extension, with the lead API's field names): each lead becomes a `lead_form` through
//! `siyu_domain::oceanengine`.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::{Map, Value};
use siyu_app::ingest::Committed;
use siyu_app::{BatchOutcome, Ingestor, Rejection};
use siyu_domain::{ErrorCode, Event, EventError, IdentityKind, Millis, TimeBounds, time};
use siyu_store::TenantId;
use tokio::sync::oneshot;

use crate::cli::ImportArgs;
use crate::output;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One native event (JSON object) per line.
    Jsonl,
    /// A header row, then one event per row (see docs/ingest.md#csv).
    Csv,
    /// Ocean Engine (巨量引擎) lead exports: JSON lines or CSV (by extension) with the lead
    /// API's fields (clue_id, telephone, name, ad_id, create_time, ...).
    Oceanengine,
}

impl Format {
    fn of(path: &Path) -> anyhow::Result<Format> {
        let name = path.to_string_lossy().to_ascii_lowercase();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        if name.ends_with(".jsonl") || name.ends_with(".ndjson") || name.ends_with(".json") {
            Ok(Format::Jsonl)
        } else if name.ends_with(".csv") {
            Ok(Format::Csv)
        } else {
            bail!(
                "{}: cannot tell the format from the extension; use .jsonl or .csv, or --format",
                path.display()
            )
        }
    }
}

/// Events per batch handed to the writer.
const CHUNK: usize = 5_000;
/// Batches awaiting commit before the reader waits.
const IN_FLIGHT: usize = 4;

#[derive(Debug, Clone, Default, Serialize)]
pub struct FileSummary {
    pub file: String,
    pub lines: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: u64,
    /// Where the refused lines were written, if any were.
    pub rejected_file: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportSummary {
    pub tenant: String,
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub seconds: f64,
    pub events_per_second: f64,
    pub files: Vec<FileSummary>,
}

pub fn run(args: ImportArgs) -> anyhow::Result<()> {
    let location = args.store.location()?;
    // Check every file before storing anything, so a typo in the last name stores nothing.
    let mut plan = Vec::new();
    for f in &args.files {
        let format = match args.format {
            Some(f) => f,
            None => Format::of(f)?,
        };
        anyhow::ensure!(f.is_file(), "{}: no such file", f.display());
        plan.push((f.clone(), format));
    }
    let summary = match args.store.lock_for("import") {
        Ok(_lock) => {
            let store = siyu_store::open(&location, siyu_store::Durability::Normal)?;
            let tenant = siyu_app::App::resolve_tenant(&*store, args.tenant.as_deref())?;
            let ingestor = Ingestor::start(store.clone(), siyu_app::EngineMode::WriteOnly)?;
            let summary = import_files(
                &Sink::Local(&ingestor),
                &tenant.name,
                tenant.id,
                &plan,
                true,
                args.time.min_ts,
            )?;
            drop(ingestor);
            store.flush()?;
            summary
        }
        Err(e) => {
            // A server holds the data directory: it commits what this reads.
            let remote = e
                .downcast_ref::<siyu_store::LockError>()
                .and_then(|l| crate::forward::Remote::from_refusal(l, args.tenant.as_deref()));
            let Some(remote) = remote else { return Err(e) };
            let name = remote.tenant()?;
            if !args.json {
                errln!(
                    "a server holds this data directory; importing through it at {}",
                    remote.base()
                );
            }
            import_files(
                &Sink::Remote(remote),
                &name,
                0,
                &plan,
                true,
                args.time.min_ts,
            )?
        }
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_summary(&summary);
    }
    Ok(())
}

pub fn print_summary(s: &ImportSummary) {
    for f in &s.files {
        let rej = match &f.rejected_file {
            Some(p) => format!(" (reasons in {p})"),
            None => String::new(),
        };
        outln!(
            "{}: {} accepted, {} duplicates, {} rejected{rej}",
            f.file,
            output::n(f.accepted),
            output::n(f.duplicates),
            output::n(f.rejected)
        );
    }
    outln!(
        "imported into tenant {}: {} accepted, {} duplicates, {} rejected in {:.1} s ({} events/s)",
        s.tenant,
        output::n(s.accepted),
        output::n(s.duplicates),
        output::n(s.rejected),
        s.seconds,
        output::n(s.events_per_second as u64)
    );
}

/// Where parsed events go: the local writer, or the server that holds the data directory.
pub enum Sink<'a> {
    Local(&'a Ingestor),
    Remote(crate::forward::Remote),
}

/// Imports files in order into one tenant (`tenant` is its id for a local sink).
pub fn import_files(
    sink: &Sink<'_>,
    name: &str,
    tenant: TenantId,
    files: &[(PathBuf, Format)],
    show_progress: bool,
    min_ts: Millis,
) -> anyhow::Result<ImportSummary> {
    let started = Instant::now();
    let mut summary = ImportSummary {
        tenant: name.to_string(),
        ..Default::default()
    };
    for (path, format) in files {
        let f = import_file(sink, tenant, path, *format, show_progress, min_ts)
            .with_context(|| format!("importing {}", path.display()))?;
        summary.accepted += f.accepted;
        summary.duplicates += f.duplicates;
        summary.rejected += f.rejected;
        summary.files.push(f);
    }
    summary.seconds = started.elapsed().as_secs_f64();
    summary.events_per_second =
        (summary.accepted + summary.duplicates) as f64 / summary.seconds.max(1e-9);
    Ok(summary)
}

/// Counts bytes read, for the progress bar.
struct Counting<R> {
    inner: R,
    n: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n.fetch_add(k as u64, Ordering::Relaxed);
        Ok(k)
    }
}

fn open_input(path: &Path) -> anyhow::Result<(Box<dyn BufRead>, u64, Arc<AtomicU64>)> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let len = file.metadata()?.len();
    let read = Arc::new(AtomicU64::new(0));
    let counting = Counting {
        inner: file,
        n: read.clone(),
    };
    let reader: Box<dyn BufRead> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(BufReader::with_capacity(
            1 << 20,
            flate2::read::MultiGzDecoder::new(BufReader::new(counting)),
        ))
    } else {
        Box::new(BufReader::with_capacity(1 << 20, counting))
    };
    Ok((reader, len, read))
}

/// Commits in flight, oldest first; the writer answers in order. A remote sink is sent one
/// batch at a time (its server group-commits batches from every client).
struct Pipeline<'a> {
    sink: &'a Sink<'a>,
    tenant: TenantId,
    pending: VecDeque<oneshot::Receiver<Result<Committed, siyu_app::AppError>>>,
    outcome: BatchOutcome,
}

impl Pipeline<'_> {
    fn send(&mut self, events: Vec<Event>) -> anyhow::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let ingestor = match self.sink {
            Sink::Local(i) => i,
            Sink::Remote(r) => return r.append(&events, &mut self.outcome),
        };
        while self.pending.len() >= IN_FLIGHT {
            self.wait_one()?;
        }
        self.pending
            .push_back(ingestor.submit(self.tenant, events)?);
        Ok(())
    }

    fn wait_one(&mut self) -> anyhow::Result<()> {
        if let Some(rx) = self.pending.pop_front() {
            let committed = rx
                .blocking_recv()
                .map_err(|_| siyu_app::AppError::WriterStopped)??;
            self.outcome.add_appended(&committed.appended);
        }
        Ok(())
    }

    fn finish(mut self) -> anyhow::Result<BatchOutcome> {
        while !self.pending.is_empty() {
            self.wait_one()?;
        }
        Ok(self.outcome)
    }
}

/// Where refused lines go; created on the first refusal only.
struct RejectLog {
    path: PathBuf,
    out: Option<BufWriter<File>>,
    count: u64,
}

impl RejectLog {
    fn new(input: &Path) -> RejectLog {
        let mut name = input.as_os_str().to_owned();
        name.push(".rejected.jsonl");
        RejectLog {
            path: PathBuf::from(name),
            out: None,
            count: 0,
        }
    }

    fn write(&mut self, line: u64, r: &Rejection, input: &str) -> anyhow::Result<()> {
        if self.out.is_none() {
            let f = File::create(&self.path)
                .with_context(|| format!("cannot write {}", self.path.display()))?;
            self.out = Some(BufWriter::new(f));
        }
        let row = serde_json::json!({
            "line": line, "id": r.id, "code": r.code, "field": r.field,
            "message": r.message, "input": input,
        });
        if let Some(out) = &mut self.out {
            writeln!(out, "{row}")?;
        }
        self.count += 1;
        Ok(())
    }

    /// Flushes, or removes a stale file from an earlier run when nothing was refused.
    fn finish(mut self) -> anyhow::Result<Option<String>> {
        match self.out.take() {
            Some(mut out) => {
                out.flush()?;
                Ok(Some(self.path.display().to_string()))
            }
            None => {
                let _ = std::fs::remove_file(&self.path);
                Ok(None)
            }
        }
    }
}

fn import_file(
    sink: &Sink<'_>,
    tenant: TenantId,
    path: &Path,
    format: Format,
    show_progress: bool,
    min_ts: Millis,
) -> anyhow::Result<FileSummary> {
    let (reader, len, read) = open_input(path)?;
    let bar = if show_progress {
        output::progress(len, "importing")
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut pipeline = Pipeline {
        sink,
        tenant,
        pending: VecDeque::new(),
        outcome: BatchOutcome::default(),
    };
    let mut rejects = RejectLog::new(path);
    let bounds = TimeBounds::new(time::now_ms(), min_ts);
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut lines = 0u64;
    // Ocean Engine exports come as JSON lines or CSV; the extension says which.
    let reading = match format {
        Format::Jsonl => Reading::Lines { leads: false },
        Format::Csv => Reading::EventCsv,
        Format::Oceanengine if matches!(Format::of(path), Ok(Format::Csv)) => Reading::LeadCsv,
        Format::Oceanengine => Reading::Lines { leads: true },
    };
    let mut on_row = |line: u64,
                      parsed: Result<Event, EventError>,
                      text: &dyn Fn() -> String|
     -> anyhow::Result<()> {
        match parsed {
            Ok(e) => {
                chunk.push(e);
                if chunk.len() == CHUNK {
                    pipeline.send(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)))?;
                    bar.set_position(read.load(Ordering::Relaxed));
                }
            }
            Err(e) => rejects.write(line, &Rejection::new(line as usize - 1, e), &text())?,
        }
        Ok(())
    };
    match reading {
        Reading::Lines { leads } => {
            let mut reader = reader;
            let mut buf = Vec::with_capacity(4096);
            loop {
                buf.clear();
                if reader.read_until(b'\n', &mut buf)? == 0 {
                    break;
                }
                lines += 1;
                let bytes = buf.strip_suffix(b"\n").unwrap_or(&buf);
                let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let parsed = match std::str::from_utf8(bytes) {
                    Ok(s) if leads => parse_lead(s, bounds),
                    Ok(s) => siyu_domain::parse_event(s, bounds),
                    Err(_) => Err(EventError::new(
                        ErrorCode::InvalidJson,
                        None,
                        "the line is not UTF-8",
                    )),
                };
                on_row(lines, parsed, &|| {
                    String::from_utf8_lossy(bytes).into_owned()
                })?;
            }
        }
        Reading::LeadCsv => {
            let mut rdr = csv::ReaderBuilder::new()
                .flexible(false)
                .from_reader(reader);
            let header: Vec<String> = rdr
                .headers()?
                .iter()
                .map(|h| h.trim().trim_start_matches('\u{feff}').to_string())
                .collect();
            lines = 1;
            for record in rdr.records() {
                let record = record?;
                lines = record.position().map(|p| p.line()).unwrap_or(lines + 1);
                let lead: Map<String, Value> = header
                    .iter()
                    .zip(record.iter())
                    .filter(|(_, cell)| !cell.trim().is_empty())
                    .map(|(h, cell)| (h.clone(), Value::String(cell.to_string())))
                    .collect();
                let parsed = siyu_domain::oceanengine::lead_to_event(lead, bounds);
                on_row(lines, parsed, &|| {
                    record.iter().collect::<Vec<_>>().join(",")
                })?;
            }
        }
        Reading::EventCsv => {
            let mut rdr = csv::ReaderBuilder::new()
                .flexible(false)
                .from_reader(reader);
            let header = CsvHeader::parse(rdr.headers()?)?;
            lines = 1;
            for record in rdr.records() {
                let record = record?;
                lines = record.position().map(|p| p.line()).unwrap_or(lines + 1);
                let parsed = header
                    .to_value(&record)
                    .and_then(|v| Event::from_value(v, bounds));
                on_row(lines, parsed, &|| {
                    record.iter().collect::<Vec<_>>().join(",")
                })?;
            }
        }
    }
    if !chunk.is_empty() {
        pipeline.send(std::mem::take(&mut chunk))?;
    }
    let outcome = pipeline.finish()?;
    bar.finish_and_clear();
    let rejected = rejects.count;
    Ok(FileSummary {
        file: path.display().to_string(),
        lines,
        accepted: outcome.accepted,
        duplicates: outcome.duplicates,
        rejected,
        rejected_file: rejects.finish()?,
    })
}

/// How a file's rows are read.
enum Reading {
    /// One JSON object per line: a native event, or an Ocean Engine lead.
    Lines { leads: bool },
    /// Native events as CSV.
    EventCsv,
    /// Ocean Engine leads as CSV, the header naming the lead API's fields.
    LeadCsv,
}

/// One Ocean Engine lead from a JSON line.
fn parse_lead(line: &str, bounds: TimeBounds) -> Result<Event, EventError> {
    match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(lead)) => siyu_domain::oceanengine::lead_to_event(lead, bounds),
        Ok(_) => Err(EventError::new(
            ErrorCode::NotAnObject,
            None,
            "a lead must be a JSON object",
        )),
        Err(e) => Err(EventError::new(
            ErrorCode::InvalidJson,
            None,
            format!("malformed JSON: {e}"),
        )),
    }
}

/// What each CSV column means.
enum Column {
    Field(&'static str),
    Identity(IdentityKind),
    Prop(String),
    Props,
}

/// A checked CSV header: `id,type,ts` (required), `domain`, `source`, `props` (a JSON object),
/// any identity kind (`phone`, `douyin_open_id`, ...), and `props.NAME` for single properties.
struct CsvHeader(Vec<Column>);

impl CsvHeader {
    fn parse(h: &csv::StringRecord) -> anyhow::Result<CsvHeader> {
        let mut cols = Vec::new();
        for (i, name) in h.iter().enumerate() {
            let name = name.trim().trim_start_matches('\u{feff}');
            let col = match name {
                "id" => Column::Field("id"),
                "type" => Column::Field("type"),
                "ts" => Column::Field("ts"),
                "domain" => Column::Field("domain"),
                "source" => Column::Field("source"),
                "props" => Column::Props,
                _ => {
                    if let Ok(k) = name.parse::<IdentityKind>() {
                        Column::Identity(k)
                    } else if let Some(p) = name
                        .strip_prefix("props.")
                        .or_else(|| name.strip_prefix("prop."))
                        .filter(|p| !p.is_empty())
                    {
                        Column::Prop(p.to_string())
                    } else if name == "clue_id" {
                        bail!(
                            "line 1, column {} \"clue_id\": this looks like an Ocean Engine lead export; import it with --format oceanengine",
                            i + 1
                        )
                    } else {
                        bail!(
                            "line 1, column {} {name:?}: unknown column; use id, type, ts, domain, source, props, props.NAME or an identity kind",
                            i + 1
                        )
                    }
                }
            };
            cols.push(col);
        }
        for required in ["id", "type", "ts"] {
            if !cols
                .iter()
                .any(|c| matches!(c, Column::Field(f) if *f == required))
            {
                bail!("line 1: the header needs a {required:?} column");
            }
        }
        Ok(CsvHeader(cols))
    }

    fn to_value(&self, r: &csv::StringRecord) -> Result<Value, EventError> {
        let mut obj = Map::new();
        let mut identities = Map::new();
        let mut props = Map::new();
        for (col, cell) in self.0.iter().zip(r.iter()) {
            if cell.is_empty() {
                continue;
            }
            match col {
                Column::Field(f) => {
                    obj.insert((*f).to_string(), cell.into());
                }
                Column::Identity(k) => {
                    identities.insert(k.as_str().to_string(), cell.into());
                }
                Column::Prop(p) => {
                    // Numbers stay numbers ("99.5"), anything else is text ("007", "grp_1").
                    let v = serde_json::from_str::<serde_json::Number>(cell)
                        .map(Value::Number)
                        .unwrap_or_else(|_| cell.into());
                    props.insert(p.clone(), v);
                }
                Column::Props => match serde_json::from_str::<Value>(cell) {
                    Ok(Value::Object(m)) => props.extend(m),
                    _ => {
                        return Err(EventError::new(
                            ErrorCode::InvalidProps,
                            Some("props"),
                            "the props column must hold a JSON object",
                        ));
                    }
                },
            }
        }
        obj.insert("identities".into(), Value::Object(identities));
        if !props.is_empty() {
            obj.insert("props".into(), Value::Object(props));
        }
        Ok(Value::Object(obj))
    }
}
