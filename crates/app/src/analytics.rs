//! Analytics reports (docs/analytics.md): the layer funnel, three-domain attribution of
//! orders, historical LTV and weekly cohort retention, read from the tenant's engine (the
//! same fans, merges and orders as every other report) with calendar buckets in the tenant's
//! time zone (the journeys' send policy's, Asia/Shanghai by default).

use jiff::civil::Date;
use jiff::tz::TimeZone;
use siyu_domain::Millis;
use siyu_domain::time::MS_PER_DAY;
use siyu_engine::analytics::{Attribution, Funnel, LtvReport, Retention, Weeks};
use siyu_store::TenantId;

use crate::{App, AppError};

/// Weeks of retention at most (a cohort's weeks are kept as the bits of one word).
pub const MAX_WEEKS: usize = 52;

/// Local weeks, Monday to Sunday, numbered from the Monday 1970-01-05.
pub struct LocalWeeks(pub TimeZone);

const EPOCH_MONDAY: i64 = 4;

fn local_date(tz: &TimeZone, t: Millis) -> Date {
    jiff::Timestamp::from_millisecond(t)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned(tz.clone())
        .date()
}

fn days_since_epoch(d: Date) -> i64 {
    // Exact: both are civil dates, and the span is whole days.
    d.since(Date::constant(1970, 1, 1))
        .map_or(0, |s| i64::from(s.get_days()))
}

impl Weeks for LocalWeeks {
    fn week_of(&self, t: Millis) -> i64 {
        (days_since_epoch(local_date(&self.0, t)) - EPOCH_MONDAY).div_euclid(7)
    }

    fn start_of(&self, week: i64) -> Millis {
        let days = week * 7 + EPOCH_MONDAY;
        let date = Date::constant(1970, 1, 1)
            .checked_add(jiff::Span::new().days(days))
            .unwrap_or(Date::MAX);
        date.to_zoned(self.0.clone())
            .map_or(days * MS_PER_DAY, |z| z.timestamp().as_millisecond())
    }

    fn name_of(&self, week: i64) -> String {
        local_date(&self.0, self.start_of(week)).to_string()
    }
}

/// The local month (`2026-11`) of an instant in `tz`.
pub fn month_of(tz: TimeZone) -> impl Fn(Millis) -> String {
    move |t: Millis| {
        let d = local_date(&tz, t);
        format!("{:04}-{:02}", d.year(), d.month())
    }
}

impl App {
    /// The tenant's time zone: the journeys' send policy's.
    pub fn tenant_tz(&self, tenant: TenantId) -> Result<TimeZone, AppError> {
        let s = crate::journeys::settings::load(&**self.store(), tenant)
            .map_err(|e| AppError::Store(siyu_store::StoreError::Corrupt(e.to_string())))?;
        Ok(TimeZone::get(&s.time_zone).unwrap_or(TimeZone::UTC))
    }

    /// The layer funnel from `from` to `to`.
    pub fn funnel(&self, tenant: TenantId, from: Millis, to: Millis) -> Result<Funnel, AppError> {
        self.ingestor.read(tenant, |e| e.funnel(from, to))
    }

    /// Attribution of the orders with `from <= ts < to`.
    pub fn attribution(
        &self,
        tenant: TenantId,
        from: Millis,
        to: Millis,
    ) -> Result<Attribution, AppError> {
        self.ingestor.read(tenant, |e| e.attribution(from, to))
    }

    /// Historical LTV as of `as_of`, cohorts by local month.
    pub fn ltv(&self, tenant: TenantId, as_of: Millis) -> Result<LtvReport, AppError> {
        let month = month_of(self.tenant_tz(tenant)?);
        self.ingestor.read(tenant, |e| e.ltv(as_of, &month))
    }

    /// Weekly retention of the cohorts first seen in `[from, to)`, activity up to `as_of`.
    pub fn retention(
        &self,
        tenant: TenantId,
        from: Millis,
        to: Millis,
        as_of: Millis,
        weeks: usize,
    ) -> Result<Retention, AppError> {
        let cal = LocalWeeks(self.tenant_tz(tenant)?);
        let weeks = weeks.clamp(1, MAX_WEEKS);
        self.ingestor
            .read(tenant, |e| e.retention(from, to, as_of, weeks, &cal))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_weeks_start_on_monday_midnight_in_the_zone() {
        let cal = LocalWeeks(TimeZone::get("Asia/Shanghai").unwrap());
        // 2026-12-07 (a Monday) 00:30 in Shanghai is 2026-12-06 16:30 UTC.
        let t = siyu_domain::time::parse_rfc3339("2026-12-06T16:30:00Z").unwrap();
        let w = cal.week_of(t);
        assert_eq!(cal.name_of(w), "2026-12-07");
        assert_eq!(
            cal.start_of(w),
            siyu_domain::time::parse_rfc3339("2026-12-06T16:00:00Z").unwrap()
        );
        // A minute before that Monday is the week before.
        assert_eq!(cal.week_of(cal.start_of(w) - 60_000), w - 1);
        assert_eq!(cal.name_of(w - 1), "2026-11-30");
    }
}
