//! A tenant's send policy: its time zone, quiet hours, the cap of sends per fan per channel
//! per day, and Douyin's private-message rules (as settings, with the platform's documented
//! values as defaults — see docs/journeys.md for the sources). Stored as JSON in the store's
//! connectors table under [`POLICY`]; a `PUT` names each refused field.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use siyu_journey::duration::{self, TimeOfDay};
use siyu_journey::policy::{DouyinRules, QuietHours};
use siyu_journey::run::Policy;
use siyu_store::{Store, TenantId};

use super::JourneyError;

/// The connectors-table kind the policy is stored under.
pub const POLICY: &str = "journeys.policy";

/// The policy as written and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySettings {
    /// An IANA time zone: quiet hours, `wait until`, schedules and daily caps use it.
    pub time_zone: String,
    /// Quiet hours, `HH:MM` local; equal start and end: none.
    pub quiet_start: String,
    pub quiet_end: String,
    /// Sends per fan per channel per local day; `null`: no cap.
    pub daily_cap: Option<i32>,
    /// Douyin: how long after the fan's latest message a reply may cite it.
    pub douyin_reply_window: String,
    /// Douyin: replies per incoming message.
    pub douyin_replies_per_message: i32,
    /// Douyin: proactive messages per authorized fan per local day.
    pub douyin_proactive_per_day: i32,
}

impl Default for PolicySettings {
    fn default() -> PolicySettings {
        let d = DouyinRules::default();
        PolicySettings {
            time_zone: "Asia/Shanghai".into(),
            quiet_start: "22:00".into(),
            quiet_end: "08:00".into(),
            daily_cap: Some(3),
            douyin_reply_window: duration::format(d.reply_window),
            douyin_replies_per_message: d.replies_per_message,
            douyin_proactive_per_day: d.proactive_per_day,
        }
    }
}

impl PolicySettings {
    /// The policy the state machine uses; every field checked, the first bad one named.
    pub fn policy(&self) -> Result<Policy, JourneyError> {
        let bad =
            |field: &'static str, message: String| JourneyError::InvalidPolicy { field, message };
        let tz = jiff::tz::TimeZone::get(&self.time_zone).map_err(|_| {
            bad(
                "time_zone",
                format!(
                    "{:?} is not a time zone; use an IANA name such as Asia/Shanghai",
                    self.time_zone
                ),
            )
        })?;
        let tod = |field: &'static str, s: &str| {
            TimeOfDay::parse(s).map_err(|m| bad(field, format!("{s:?}: {m}")))
        };
        let quiet = QuietHours {
            start: tod("quiet_start", &self.quiet_start)?,
            end: tod("quiet_end", &self.quiet_end)?,
        };
        if let Some(c) = self.daily_cap
            && !(1..=1000).contains(&c)
        {
            return Err(bad(
                "daily_cap",
                format!("{c} is out of range: 1 to 1000, or null for no cap"),
            ));
        }
        let reply_window = duration::parse(&self.douyin_reply_window).map_err(|m| {
            bad(
                "douyin_reply_window",
                format!("{:?}: {m}", self.douyin_reply_window),
            )
        })?;
        let count = |field: &'static str, n: i32| {
            if (0..=100).contains(&n) {
                Ok(n)
            } else {
                Err(bad(field, format!("{n} is out of range: 0 to 100")))
            }
        };
        Ok(Policy {
            tz,
            quiet,
            daily_cap: self.daily_cap,
            douyin: DouyinRules {
                reply_window,
                replies_per_message: count(
                    "douyin_replies_per_message",
                    self.douyin_replies_per_message,
                )?,
                proactive_per_day: count(
                    "douyin_proactive_per_day",
                    self.douyin_proactive_per_day,
                )?,
            },
        })
    }
}

/// The tenant's policy settings (the defaults until one is set).
pub fn load(store: &dyn Store, tenant: TenantId) -> Result<PolicySettings, JourneyError> {
    match store.connector(tenant, POLICY)? {
        Some(c) => serde_json::from_str(&c.config).map_err(|e| {
            JourneyError::App(crate::AppError::Store(siyu_store::StoreError::Corrupt(
                format!("journey policy of tenant {tenant}: {e}"),
            )))
        }),
        None => Ok(PolicySettings::default()),
    }
}

/// Changes some of the policy's fields (`body` is a JSON object of the fields to change;
/// unknown fields are refused by name); returns the policy in force after it.
pub fn set(
    store: &dyn Store,
    tenant: TenantId,
    body: &Value,
    now: siyu_domain::Millis,
) -> Result<PolicySettings, JourneyError> {
    let Some(changes) = body.as_object() else {
        return Err(JourneyError::InvalidPolicy {
            field: "body",
            message: "the policy must be a JSON object of the fields to change".into(),
        });
    };
    let current = load(store, tenant)?;
    let mut merged =
        serde_json::to_value(&current).map_err(|e| JourneyError::internal(e.to_string()))?;
    let fields = merged
        .as_object_mut()
        .expect("a struct serializes to an object");
    for (k, v) in changes {
        let Some(slot) = fields.get_mut(k) else {
            return Err(JourneyError::InvalidPolicy {
                field: "body",
                message: format!(
                    "unknown policy field {k:?}; use time_zone, quiet_start, quiet_end, daily_cap, douyin_reply_window, douyin_replies_per_message or douyin_proactive_per_day"
                ),
            });
        };
        *slot = v.clone();
    }
    let next: PolicySettings =
        serde_json::from_value(merged).map_err(|e| JourneyError::InvalidPolicy {
            field: "body",
            message: e.to_string(),
        })?;
    next.policy()?;
    let text = serde_json::to_string(&next).map_err(|e| JourneyError::internal(e.to_string()))?;
    store.set_connector(tenant, POLICY, &text, now)?;
    Ok(next)
}
