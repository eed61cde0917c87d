//! Analytics reports (docs/analytics.md): the layer funnel, three-domain attribution of
//! orders, historical LTV and weekly cohort retention, read from the tenant's engine (the
//! same fans, merges and orders as every other report) with calendar buckets in the tenant's
//! time zone (the journeys' send policy's, Asia/Shanghai by default).

use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde::Serialize;
use siyu_domain::Millis;
use siyu_domain::time::MS_PER_DAY;
use siyu_engine::analytics::{Attribution, Funnel, LtvReport, Retention, Weeks};
use siyu_store::TenantId;

use crate::{App, AppError};

/// Points of a flow's series at most (a day each up to this many days).
pub const MAX_SERIES_POINTS: usize = 400;

/// Weeks of retention at most (a cohort's weeks are kept as the bits of one word).
pub const MAX_WEEKS: usize = 52;

/// Local weeks, Monday to Sunday, numbered from the Monday 1970-01-05.
pub struct LocalWeeks {
    tz: TimeZone,
    days: LocalDays,
}

impl LocalWeeks {
    /// Weeks of `tz`, for instants up to about `until` (later ones keep the offset then).
    pub fn new(tz: TimeZone, until: Millis) -> LocalWeeks {
        LocalWeeks {
            days: LocalDays::new(&tz, until),
            tz,
        }
    }
}

const EPOCH_MONDAY: i64 = 4;

/// A time zone's UTC offsets as spans from 1900 to a year past an instant, so that the local
/// day of an instant is a binary search and an addition rather than a conversion: retention
/// asks it of every event (30M on the benchmark's brand: 0.7 s of conversions, and the report
/// then took 1.5 s through the server against 0.8 s with a fixed offset). Instants before
/// 1900 keep its offset; instants past the end keep the last.
struct LocalDays {
    starts: Vec<Millis>,
    offsets: Vec<Millis>,
}

impl LocalDays {
    fn new(tz: &TimeZone, until: Millis) -> LocalDays {
        let end = until.saturating_add(366 * MS_PER_DAY);
        let offset_ms = |o: jiff::tz::Offset| i64::from(o.seconds()) * 1000;
        // 1900-01-01T00:00:00Z.
        let start = jiff::Timestamp::from_second(-2_208_988_800).unwrap_or_default();
        let mut days = LocalDays {
            starts: vec![Millis::MIN],
            offsets: vec![offset_ms(tz.to_offset(start))],
        };
        for t in tz.following(start) {
            let at = t.timestamp().as_millisecond();
            if at > end {
                break;
            }
            days.starts.push(at);
            days.offsets.push(offset_ms(t.offset()));
        }
        days
    }

    /// Days since 1970-01-01 of the local date of `t`.
    fn day_of(&self, t: Millis) -> i64 {
        let i = self.starts.partition_point(|&s| s <= t).saturating_sub(1);
        (t + self.offsets[i]).div_euclid(MS_PER_DAY)
    }
}

fn local_date(tz: &TimeZone, t: Millis) -> Date {
    jiff::Timestamp::from_millisecond(t)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned(tz.clone())
        .date()
}

impl Weeks for LocalWeeks {
    fn week_of(&self, t: Millis) -> i64 {
        (self.days.day_of(t) - EPOCH_MONDAY).div_euclid(7)
    }

    fn start_of(&self, week: i64) -> Millis {
        let days = week * 7 + EPOCH_MONDAY;
        let date = Date::constant(1970, 1, 1)
            .checked_add(jiff::Span::new().days(days))
            .unwrap_or(Date::MAX);
        date.to_zoned(self.tz.clone())
            .map_or(days * MS_PER_DAY, |z| z.timestamp().as_millisecond())
    }

    fn name_of(&self, week: i64) -> String {
        local_date(&self.tz, self.start_of(week)).to_string()
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

    /// The flow's series from `from` to `to`: `from`, then every `step`-th local midnight
    /// after it, then `to` — one local day a point unless the period has more than
    /// [`MAX_SERIES_POINTS`] days (then as many days a point as keep it under). Returns the
    /// step in days with the points.
    pub fn flow_series(
        &self,
        tenant: TenantId,
        from: Millis,
        to: Millis,
    ) -> Result<(u32, Vec<siyu_engine::layers::SeriesPoint>), AppError> {
        let cal = self.tenant_tz(tenant)?;
        let first = local_date(&cal, from);
        let days = i64::from(
            local_date(&cal, to)
                .since(first)
                .map_or(0, |s| s.get_days()),
        );
        let step = (days / MAX_SERIES_POINTS as i64 + 1).max(1);
        let mut instants = vec![from];
        let mut k = step;
        while k <= days {
            let midnight = first
                .checked_add(jiff::Span::new().days(k))
                .ok()
                .and_then(|d| d.to_zoned(cal.clone()).ok())
                .map(|z| z.timestamp().as_millisecond());
            match midnight {
                Some(m) if m > from && m < to => instants.push(m),
                _ => {}
            }
            k += step;
        }
        instants.push(to);
        let points = self.ingestor.read(tenant, |e| e.layer_series(&instants))?;
        Ok((step as u32, points))
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
        let cal = LocalWeeks::new(self.tenant_tz(tenant)?, as_of.max(to));
        let weeks = weeks.clamp(1, MAX_WEEKS);
        self.ingestor
            .read(tenant, |e| e.retention(from, to, as_of, weeks, &cal))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use siyu_domain::time::{Clock, ManualClock};
    use siyu_store::{Durability, SqliteStore, Store};

    use super::*;
    use crate::targets::TargetPolicy;
    use crate::{EngineMode, Safeguards};

    /// Noon in Shanghai of day `d` (days since 1970-01-01, local).
    fn noon(d: i64) -> Millis {
        d * MS_PER_DAY - 8 * 3_600_000 + 12 * 3_600_000
    }

    #[test]
    fn predictions_fit_the_tenants_orders_as_a_summary_file_would() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(dir.path(), Durability::Normal).unwrap());
        crate::tenants::create(&*store, &crate::TenantName::parse("acme").unwrap()).unwrap();
        let tenant = store.tenants().unwrap()[0].id;
        let today = 20_400;
        let clock = Arc::new(ManualClock::new(noon(today)));
        let guard = Safeguards::new(
            crate::secrets::Sealer::from_keys(&[7; 32], None),
            TargetPolicy::ALLOW_PRIVATE,
        );
        let app = App::start_with(store, EngineMode::Live, clock.clone(), guard).unwrap();
        // Buyers drawn from the models themselves, in whole days; each becomes orders on the
        // days its summary says (repeats spread to end on the recency's day, each worth the
        // customer's mean), so the tenant's summary is exactly these rows.
        let drawn = siyu_ltv::simulate::simulate(&siyu_ltv::simulate::Simulation {
            customers: 1500,
            bgnbd: siyu_ltv::BgNbd {
                r: 0.6,
                alpha: 12.0,
                a: 0.8,
                b: 2.5,
            },
            gamma_gamma: Some(siyu_ltv::GammaGamma {
                p: 6.0,
                q: 4.0,
                v: 15.0,
            }),
            observed: (20.0, 300.0),
            whole_units: true,
            seed: 7,
        });
        let mut expected = Vec::new();
        let mut events = Vec::new();
        for (i, c) in drawn.iter().enumerate() {
            let (x, tx, t) = (c.frequency() as i64, c.recency() as i64, c.T() as i64);
            if x > tx {
                continue; // more repeats than days: not a summary of daily purchases
            }
            let first = today - t;
            let m = c.monetary().map(|m| (m * 100.0).round() / 100.0);
            let mut days: Vec<i64> = (1..=x).map(|k| first + tx - (x - k)).collect();
            days.insert(0, first);
            for (k, d) in days.iter().enumerate() {
                let amount = if k == 0 { 10.0 } else { m.unwrap_or(1.0) };
                events.push(
                    siyu_domain::Event::from_value(
                        serde_json::json!({"id": format!("o{i}-{k}"), "type": "order",
                            "ts": siyu_domain::time::format_rfc3339(noon(*d)),
                            "identities": {"user_id": format!("u{i}")},
                            "props": {"order_id": format!("o{i}-{k}"), "amount": amount}}),
                        app.time_bounds(clock.now()),
                    )
                    .unwrap(),
                );
            }
            expected.push(
                siyu_ltv::Customer::parse(
                    i as u64,
                    x as f64,
                    tx as f64,
                    t as f64,
                    if x > 0 { m } else { None },
                )
                .unwrap(),
            );
        }
        for chunk in events.chunks(2000) {
            let rx = app.ingestor.submit(tenant, chunk.to_vec()).unwrap();
            rx.blocking_recv().unwrap().unwrap();
        }
        let p = app.ltv_predicted(tenant, clock.now(), 90).unwrap();
        let direct = siyu_ltv::fit_bgnbd(&expected).unwrap();
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * b.abs().max(1.0);
        let (got, want) = (p.bgnbd.params, direct.params);
        assert!(
            close(got.r, want.r)
                && close(got.alpha, want.alpha)
                && close(got.a, want.a)
                && close(got.b, want.b),
            "{got:?} vs {want:?}"
        );
        assert_eq!(p.bgnbd.customers, expected.len() as u64);
        let gg = siyu_ltv::fit_gamma_gamma(&expected).unwrap();
        let got = p.gamma_gamma.as_ref().unwrap().params;
        assert!(
            close(got.p, gg.params.p) && close(got.v, gg.params.v),
            "{got:?}"
        );
        // The groups hold every buyer once; orders and revenue add up to the total.
        assert_eq!(p.total.buyers, expected.len() as u64);
        let cohorts: u64 = p.by_cohort.iter().map(|r| r.buyers).sum();
        let layers: u64 = p.by_layer.iter().map(|r| r.buyers).sum();
        assert_eq!((cohorts, layers), (p.total.buyers, p.total.buyers));
        let orders: f64 = p.by_layer.iter().map(|r| r.expected_orders).sum();
        assert!(close(orders, p.total.expected_orders));
        let want_orders: f64 = expected
            .iter()
            .map(|c| direct.params.expected_purchases(c, 90.0).unwrap())
            .sum();
        assert!(
            close(p.total.expected_orders, want_orders),
            "{} vs {want_orders}",
            p.total.expected_orders
        );
        assert!(p.total.expected_revenue_fen.unwrap() > 0.0);
    }

    #[test]
    fn a_tenant_without_repeat_buyers_is_told_so() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(dir.path(), Durability::Normal).unwrap());
        crate::tenants::create(&*store, &crate::TenantName::parse("acme").unwrap()).unwrap();
        let tenant = store.tenants().unwrap()[0].id;
        let clock = Arc::new(ManualClock::new(noon(20_400)));
        let guard = Safeguards::new(
            crate::secrets::Sealer::from_keys(&[7; 32], None),
            TargetPolicy::ALLOW_PRIVATE,
        );
        let app = App::start_with(store, EngineMode::Live, clock.clone(), guard).unwrap();
        let e = siyu_domain::Event::from_value(
            serde_json::json!({"id": "o", "type": "order",
                "ts": siyu_domain::time::format_rfc3339(noon(20_390)),
                "identities": {"user_id": "u"}, "props": {"order_id": "o", "amount": 5}}),
            app.time_bounds(clock.now()),
        )
        .unwrap();
        app.ingestor
            .submit(tenant, vec![e])
            .unwrap()
            .blocking_recv()
            .unwrap()
            .unwrap();
        let err = app.ltv_predicted(tenant, clock.now(), 30).unwrap_err();
        assert_eq!(err.code(), "no_repeat_buyers", "{err}");
    }

    #[test]
    fn local_days_are_the_zones_own_dates_across_its_transitions() {
        let day = |tz: &TimeZone, t: Millis| {
            local_date(tz, t)
                .since(Date::constant(1970, 1, 1))
                .unwrap()
                .get_days() as i64
        };
        let until = siyu_domain::time::parse_rfc3339("2026-12-08T00:00:00Z").unwrap();
        for name in ["America/New_York", "Asia/Shanghai", "Europe/London", "UTC"] {
            let tz = TimeZone::get(name).unwrap();
            let days = LocalDays::new(&tz, until);
            // Every transition, a second either side; then every 7 hours 13 minutes from 1969
            // to two years past `until` (after its end the last offset holds, as for
            // Shanghai; New York and London still change, so they stop at the end).
            let mut instants: Vec<Millis> = days.starts[1..]
                .iter()
                .flat_map(|&t| [t - 1000, t, t + 1000])
                .collect();
            let last = if days.starts.len() > 1 && name != "Asia/Shanghai" {
                until + 366 * MS_PER_DAY
            } else {
                until + 2 * 366 * MS_PER_DAY
            };
            instants.extend((-(400 * MS_PER_DAY)..last).step_by(26_000_000).skip(400));
            for t in instants {
                assert_eq!(days.day_of(t), day(&tz, t), "{name} at {t}");
            }
        }
        // New York changes twice a year: the spans hold them all.
        let ny = LocalDays::new(&TimeZone::get("America/New_York").unwrap(), until);
        assert!(ny.starts.len() > 100, "{}", ny.starts.len());
    }

    #[test]
    fn local_weeks_start_on_monday_midnight_in_the_zone() {
        let cal = LocalWeeks::new(TimeZone::get("Asia/Shanghai").unwrap(), 0);
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

// ---------------------------------------------------------------------------------------------
// Predictive LTV

/// Why a prediction could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    #[error(transparent)]
    App(#[from] AppError),
    /// The tenant's orders cannot fit the models (no repeat buyers, nothing varies, ...).
    #[error("the tenant's orders cannot be modelled")]
    Model(#[from] siyu_ltv::LtvError),
}

impl PredictError {
    pub fn code(&self) -> &'static str {
        match self {
            PredictError::App(e) => e.code(),
            PredictError::Model(e) => e.code(),
        }
    }
}

/// Predicted figures of one group of buyers over the horizon.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct PredictedRow {
    /// A layer, a month (`2026-11`), or `total`.
    pub key: String,
    pub buyers: u64,
    /// The mean probability that a buyer of the group is still alive (will buy again).
    pub p_alive_mean: f64,
    /// Buyers more likely alive than not.
    pub likely_alive: u64,
    pub expected_orders: f64,
    /// Expected revenue over the horizon, in fen; `None` when the Gamma-Gamma model could not
    /// be fitted (too few repeat buyers with an amount).
    pub expected_revenue_fen: Option<f64>,
}

/// The fitted models and what they predict per layer and per acquisition cohort.
#[derive(Debug, Clone, Serialize)]
pub struct PredictedLtv {
    #[serde(serialize_with = "siyu_domain::time::rfc3339")]
    pub as_of: Millis,
    pub horizon_days: u32,
    /// Buyers whose first order day is the day of `as_of`: no time observed yet, left out.
    pub too_new: u64,
    pub bgnbd: siyu_ltv::Fit<siyu_ltv::BgNbd>,
    /// In yuan.
    pub gamma_gamma: Option<siyu_ltv::Fit<siyu_ltv::GammaGamma>>,
    /// Why Gamma-Gamma was not fitted, when it was not.
    pub gamma_gamma_error: Option<String>,
    pub total: PredictedRow,
    pub by_layer: Vec<PredictedRow>,
    pub by_cohort: Vec<PredictedRow>,
}

#[derive(Default)]
struct PredSums {
    buyers: u64,
    p_alive: f64,
    likely: u64,
    orders: f64,
    revenue: f64,
}

impl PredSums {
    fn row(&self, key: String, revenue: bool) -> PredictedRow {
        PredictedRow {
            key,
            buyers: self.buyers,
            p_alive_mean: if self.buyers == 0 {
                0.0
            } else {
                self.p_alive / self.buyers as f64
            },
            likely_alive: self.likely,
            expected_orders: self.orders,
            expected_revenue_fen: revenue.then_some(self.revenue),
        }
    }
}

/// Days a prediction may look ahead at most (ten years).
pub const MAX_HORIZON_DAYS: u32 = 3650;

impl App {
    /// Fits BG/NBD and Gamma-Gamma to the tenant's buyers as of `as_of` (days in the tenant's
    /// time zone; amounts in yuan) and predicts, per buyer, the probability they are alive,
    /// their orders and their revenue over the next `horizon_days`; summed by layer (as of
    /// `as_of`) and by acquisition cohort (the local month of the first event).
    pub fn ltv_predicted(
        &self,
        tenant: TenantId,
        as_of: Millis,
        horizon_days: u32,
    ) -> Result<PredictedLtv, PredictError> {
        let tz = self.tenant_tz(tenant)?;
        let offset_ms = jiff::Timestamp::from_millisecond(as_of)
            .map_or(0, |t| i64::from(tz.to_offset(t).seconds()) * 1000);
        let (buyers, layers) = self.ingestor.read(tenant, |e| {
            (e.buyers(as_of, offset_ms), e.layers_as_of(as_of).layers)
        })?;
        let mut customers = Vec::with_capacity(buyers.len());
        let mut kept = Vec::with_capacity(buyers.len());
        let mut too_new = 0;
        for (i, b) in buyers.iter().enumerate() {
            if b.age <= 0.0 {
                too_new += 1;
                continue;
            }
            let monetary = (b.frequency > 0).then_some(b.monetary_fen / 100.0);
            customers.push(siyu_ltv::Customer::parse(
                i as u64 + 1,
                f64::from(b.frequency),
                b.recency,
                b.age,
                monetary,
            )?);
            kept.push(b);
        }
        let bgnbd = siyu_ltv::fit_bgnbd(&customers)?;
        let (gamma_gamma, gamma_gamma_error) = match siyu_ltv::fit_gamma_gamma(&customers) {
            Ok(f) => (Some(f), None),
            Err(e) => (None, Some(format!("{} ({})", e, e.code()))),
        };
        let month = month_of(tz);
        let t = f64::from(horizon_days);
        let mut total = PredSums::default();
        let mut by_layer: [PredSums; 4] = Default::default();
        let mut by_cohort: std::collections::BTreeMap<String, PredSums> = Default::default();
        for (c, b) in customers.iter().zip(&kept) {
            let p = bgnbd.params.p_alive(c);
            let orders = bgnbd.params.expected_purchases(c, t)?;
            let revenue = match &gamma_gamma {
                Some(g) => {
                    orders
                        * g.params
                            .expected_value(c.frequency(), c.monetary().unwrap_or(0.0))?
                        * 100.0
                }
                None => 0.0,
            };
            let add = |s: &mut PredSums| {
                s.buyers += 1;
                s.p_alive += p;
                s.likely += u64::from(p > 0.5);
                s.orders += orders;
                s.revenue += revenue;
            };
            add(&mut total);
            if let Some(Some(l)) = layers.get(b.node as usize) {
                add(&mut by_layer[*l as usize]);
            }
            add(by_cohort.entry(month(b.first_seen)).or_default());
        }
        let has_revenue = gamma_gamma.is_some();
        Ok(PredictedLtv {
            as_of,
            horizon_days,
            too_new,
            bgnbd,
            gamma_gamma,
            gamma_gamma_error,
            total: total.row("total".into(), has_revenue),
            by_layer: siyu_domain::Layer::ALL
                .iter()
                .map(|l| by_layer[*l as usize].row(l.as_str().into(), has_revenue))
                .collect(),
            by_cohort: by_cohort
                .into_iter()
                .map(|(k, s)| s.row(k, has_revenue))
                .collect(),
        })
    }
}
