//! Spend files (`siyu import-spend FILE.csv`) and CAC (获客成本): what was paid per local day,
//! channel and domain, over what the period acquired — new followers, and unique
//! (deduplicated) leads; repeat leads are shown beside them, never counted as acquired.
//!
//! A file is checked whole before anything is stored: the first bad line is refused with its
//! line number, column and a stable code, and nothing of the file is kept. Rows are keyed by
//! (date, channel, domain), so importing a corrected file replaces its rows.

use std::collections::BTreeMap;

use serde::Serialize;
use siyu_domain::{Domain, Millis};
use siyu_store::TenantId;
use siyu_store::spend::StoredSpend;

use crate::{App, AppError};

/// The columns of a spend file, in this order.
pub const COLUMNS: [&str; 4] = ["date", "channel", "domain", "amount"];

/// Rows at most in one file (ten years of a hundred channels a day in three domains).
pub const MAX_ROWS: usize = 1_100_000;

/// Why a spend file was refused; nothing of it was stored.
#[derive(Debug, thiserror::Error)]
pub enum SpendError {
    #[error(transparent)]
    App(#[from] AppError),
    #[error("line {line}, column {column}: {message}")]
    Invalid {
        line: u64,
        column: &'static str,
        code: &'static str,
        message: String,
    },
}

impl From<siyu_store::StoreError> for SpendError {
    fn from(e: siyu_store::StoreError) -> Self {
        SpendError::App(e.into())
    }
}

impl SpendError {
    pub fn code(&self) -> &'static str {
        match self {
            SpendError::App(e) => e.code(),
            SpendError::Invalid { code, .. } => code,
        }
    }
}

fn bad(line: u64, column: &'static str, code: &'static str, message: String) -> SpendError {
    SpendError::Invalid {
        line,
        column,
        code,
        message,
    }
}

/// A yuan amount with at most two decimals, as fen: `1234.5` → 123450.
fn fen(s: &str) -> Option<i64> {
    let s = s.trim();
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 2
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || whole.len() > 12
    {
        return None;
    }
    let w: i64 = whole.parse().ok()?;
    let f: i64 = format!("{frac:0<2}").parse().ok()?;
    w.checked_mul(100)?.checked_add(f)
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date.
fn day_of(s: &str) -> Option<i32> {
    if s.len() != 10 {
        return None;
    }
    let d: jiff::civil::Date = s.parse().ok()?;
    let days = d
        .since(jiff::civil::Date::constant(1970, 1, 1))
        .ok()?
        .get_days();
    Some(days)
}

/// Parses a spend file whole (see the module docs).
pub fn parse(text: &str) -> Result<Vec<StoredSpend>, SpendError> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(text.as_bytes());
    let header = r
        .headers()
        .map_err(|e| bad(1, "header", "invalid_csv", e.to_string()))?
        .clone();
    let names: Vec<&str> = header.iter().map(str::trim).collect();
    if names != COLUMNS {
        return Err(bad(
            1,
            "header",
            "invalid_header",
            format!(
                "the header is {:?}; expected exactly {}",
                names.join(","),
                COLUMNS.join(",")
            ),
        ));
    }
    let mut rows: BTreeMap<(i32, String, String), (u64, i64)> = BTreeMap::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            bad(line, "row", "invalid_csv", e.to_string())
        })?;
        let line = rec.position().map_or(0, |p| p.line());
        let date = rec[0].trim();
        let day = day_of(date).ok_or_else(|| {
            bad(
                line,
                "date",
                "invalid_date",
                format!("{date:?} is not a date such as 2026-11-30"),
            )
        })?;
        let channel = rec[1].trim();
        if channel.is_empty()
            || channel.chars().count() > 64
            || channel.chars().any(char::is_control)
        {
            return Err(bad(
                line,
                "channel",
                "invalid_channel",
                format!("{channel:?} is not a channel name (1 to 64 characters)"),
            ));
        }
        let domain = rec[2].trim();
        let domain: Domain = domain.parse().map_err(|_| {
            bad(
                line,
                "domain",
                "invalid_domain",
                format!("{domain:?} is not a domain; expected public, commercial or private"),
            )
        })?;
        let amount = rec[3].trim();
        if amount.starts_with('-') {
            return Err(bad(
                line,
                "amount",
                "negative_amount",
                format!("{amount} is negative; spend is 0 or more"),
            ));
        }
        let amount_fen = fen(amount).ok_or_else(|| {
            bad(
                line,
                "amount",
                "invalid_amount",
                format!("{amount:?} is not an amount in yuan such as 1234.50"),
            )
        })?;
        let key = (day, channel.to_string(), domain.as_str().to_string());
        if let Some((first, _)) = rows.get(&key) {
            return Err(bad(
                line,
                "date",
                "duplicate_row",
                format!(
                    "{date}, {channel}, {} is on line {first} already",
                    domain.as_str()
                ),
            ));
        }
        rows.insert(key, (line, amount_fen));
        if rows.len() > MAX_ROWS {
            return Err(bad(
                line,
                "row",
                "too_many_rows",
                format!("a spend file holds {MAX_ROWS} rows at most"),
            ));
        }
    }
    Ok(rows
        .into_iter()
        .map(|((day, channel, domain), (_, amount_fen))| StoredSpend {
            day,
            channel,
            domain,
            amount_fen,
        })
        .collect())
}

/// What an import stored.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SpendImport {
    pub rows: usize,
    /// Rows that replaced one stored before (the same date, channel and domain).
    pub replaced: usize,
    pub amount_fen: i64,
    /// The first and last dates of the file.
    pub first_date: Option<String>,
    pub last_date: Option<String>,
}

/// One line of the CAC report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CacRow {
    /// A channel, a domain, or `total`.
    pub key: String,
    pub spend_fen: i64,
    pub new_followers: u64,
    pub unique_leads: u64,
    /// Shown, not counted as acquired.
    pub repeat_leads: u64,
    /// spend / new followers, in fen; `None` without a new follower.
    pub cac_per_follower_fen: Option<f64>,
    /// spend / unique leads, in fen; `None` without a unique lead.
    pub cac_per_lead_fen: Option<f64>,
}

impl CacRow {
    fn of(key: String, spend_fen: i64, a: siyu_engine::analytics::AcquiredCounts) -> CacRow {
        let per = |n: u64| (n > 0).then(|| spend_fen as f64 / n as f64);
        CacRow {
            key,
            spend_fen,
            new_followers: a.new_followers,
            unique_leads: a.unique_leads,
            repeat_leads: a.repeat_leads,
            cac_per_follower_fen: per(a.new_followers),
            cac_per_lead_fen: per(a.unique_leads),
        }
    }
}

/// CAC over a period, by channel and by domain.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CacReport {
    #[serde(serialize_with = "siyu_domain::time::rfc3339")]
    pub from: Millis,
    #[serde(serialize_with = "siyu_domain::time::rfc3339")]
    pub to: Millis,
    /// The local days whose spend counts: from the day of `from` to the day of `to`'s last
    /// instant, both included.
    pub first_day: String,
    pub last_day: String,
    pub total: CacRow,
    pub by_channel: Vec<CacRow>,
    pub by_domain: Vec<CacRow>,
}

/// `YYYY-MM-DD` of a day number (days since 1970-01-01).
pub fn date_of(day: i32) -> String {
    jiff::civil::Date::constant(1970, 1, 1)
        .checked_add(jiff::Span::new().days(i64::from(day)))
        .map_or_else(|_| day.to_string(), |d| d.to_string())
}

impl App {
    /// Checks a spend file whole, then stores it in one transaction.
    pub fn import_spend(&self, tenant: TenantId, text: &str) -> Result<SpendImport, SpendError> {
        let rows = parse(text)?;
        self.store().check_writable()?;
        let replaced = self.store().put_spend(tenant, &rows, self.now())?;
        Ok(SpendImport {
            rows: rows.len(),
            replaced,
            amount_fen: rows.iter().map(|r| r.amount_fen).sum(),
            first_date: rows.iter().map(|r| r.day).min().map(date_of),
            last_date: rows.iter().map(|r| r.day).max().map(date_of),
        })
    }

    /// CAC over `[from, to)`: the spend of the local days the period covers, over what the
    /// engine says the period acquired.
    pub fn cac(&self, tenant: TenantId, from: Millis, to: Millis) -> Result<CacReport, AppError> {
        let tz = self.tenant_tz(tenant)?;
        let (first_day, last_day) = local_days(&tz, from, to);
        let spend = self.store().spend(tenant, first_day, last_day + 1)?;
        let acquired = self.ingestor.read(tenant, |e| e.acquired(from, to))?;
        Ok(cac_report(&spend, &acquired, first_day, last_day))
    }
}

/// The local days (since 1970-01-01) of `from` and of `to`'s last instant.
pub fn local_days(tz: &jiff::tz::TimeZone, from: Millis, to: Millis) -> (i32, i32) {
    let local = |t: Millis| {
        let d = jiff::Timestamp::from_millisecond(t)
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
            .to_zoned(tz.clone())
            .date();
        d.since(jiff::civil::Date::constant(1970, 1, 1))
            .map_or(0, |s| s.get_days())
    };
    (local(from), local(to - 1))
}

/// The CAC report of the spend of days `first_day..=last_day` over what was acquired.
pub fn cac_report(
    spend: &[StoredSpend],
    acquired: &siyu_engine::analytics::Acquired,
    first_day: i32,
    last_day: i32,
) -> CacReport {
    let mut by_channel: BTreeMap<&str, i64> = BTreeMap::new();
    let mut by_domain: BTreeMap<&str, i64> = BTreeMap::new();
    for s in spend {
        *by_channel.entry(&s.channel).or_default() += s.amount_fen;
        *by_domain.entry(&s.domain).or_default() += s.amount_fen;
    }
    let mut channels: Vec<&str> = by_channel
        .keys()
        .copied()
        .chain(acquired.by_channel.keys().map(String::as_str))
        .collect();
    channels.sort_unstable();
    channels.dedup();
    CacReport {
        from: acquired.from,
        to: acquired.to,
        first_day: date_of(first_day),
        last_day: date_of(last_day),
        total: CacRow::of(
            "total".into(),
            spend.iter().map(|s| s.amount_fen).sum(),
            acquired.total,
        ),
        by_channel: channels
            .into_iter()
            .map(|c| {
                CacRow::of(
                    c.to_string(),
                    by_channel.get(c).copied().unwrap_or(0),
                    acquired.by_channel.get(c).copied().unwrap_or_default(),
                )
            })
            .collect(),
        by_domain: acquired
            .by_domain
            .iter()
            .map(|(d, a)| CacRow::of(d.to_string(), by_domain.get(d).copied().unwrap_or(0), *a))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> (u64, &'static str, &'static str) {
        match parse(text).unwrap_err() {
            SpendError::Invalid {
                line, column, code, ..
            } => (line, column, code),
            e => panic!("{e}"),
        }
    }

    #[test]
    fn a_file_parses_whole_in_fen() {
        let rows = parse(
            "date,channel,domain,amount\n2026-11-30,qianchuan,commercial,1234.5\n2026-11-30,live,public,0\n2026-12-01, qianchuan ,commercial,99.99\n",
        )
        .unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].channel, "live");
        assert_eq!(rows[1].amount_fen, 123_450);
        assert_eq!(rows[2].amount_fen, 9_999);
        assert_eq!(rows[2].channel, "qianchuan", "trimmed");
        assert_eq!(date_of(rows[0].day), "2026-11-30");
    }

    #[test]
    fn a_bad_line_is_named_with_its_column_and_code() {
        let h = "date,channel,domain,amount\n";
        assert_eq!(
            refused(&format!(
                "{h}2026-11-30,a,public,1\n2026-13-01,a,public,1\n"
            )),
            (3, "date", "invalid_date")
        );
        assert_eq!(
            refused(&format!("{h}2026-11-30,a,public,-5\n")),
            (2, "amount", "negative_amount")
        );
        assert_eq!(
            refused(&format!("{h}2026-11-30,a,public,1.234\n")),
            (2, "amount", "invalid_amount")
        );
        assert_eq!(
            refused(&format!("{h}2026-11-30,a,outer,1\n")),
            (2, "domain", "invalid_domain")
        );
        assert_eq!(
            refused(&format!("{h}2026-11-30,,public,1\n")),
            (2, "channel", "invalid_channel")
        );
        assert_eq!(
            refused(&format!(
                "{h}2026-11-30,a,public,1\n2026-11-30,a,public,2\n"
            )),
            (3, "date", "duplicate_row")
        );
        assert_eq!(
            refused("day,channel,domain,amount\n"),
            (1, "header", "invalid_header")
        );
        assert_eq!(
            refused(&format!("{h}2026-11-30,a,public\n")),
            (2, "row", "invalid_csv")
        );
        assert_eq!(
            refused(&format!("{h}2026-11-3,a,public,1\n")),
            (2, "date", "invalid_date")
        );
    }
}
