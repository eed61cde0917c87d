//! Layer rules: the defaults of docs/layers.md, and a per-tenant TOML file that may change weights,
//! windows and thresholds.
//!
//! ```toml
//! engagement_window_days = 30
//! orders_window_days = 180
//! live_watch_seconds_per_point = 300   # live_watch scores ⌊duration_s / 300⌋
//!
//! [weights]                             # any catalogue type; unlisted types score 0
//! video_like = 1
//! private_message_in = 4
//!
//! [true_love]
//! orders = 2                            # orders_180d ≥ 2, or
//! orders_with_engagement = 1            # orders_180d ≥ 1 and engagement_30d ≥ 10, or
//! engagement_with_order = 10
//! group_engagement = 20                 # in_group and engagement_30d ≥ 20
//!
//! [favorable]
//! engagement = 10                       # engagement_30d ≥ 10, or subscribed, or in_group
//! ```
//!
//! A file that cannot be used is refused with the line and the reason, and nothing changes.
//! Values have ranges ([`WINDOW_DAYS`], [`SECONDS_PER_POINT`], [`MAX_WEIGHT`]), so that no
//! file can make the engine's sums wrap: a fan's engagement is a sum of weights over a window,
//! and with weights at most 1,000 it stays below `u32::MAX` until a single fan has more than
//! four million scoring events in one window (the sums saturate beyond that).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use siyu_domain::event_type::CatalogueType;

const CATALOGUE_LEN: usize = 24;

/// The range of `engagement_window_days` and `orders_window_days`: a day to ten years.
pub const WINDOW_DAYS: std::ops::RangeInclusive<u32> = 1..=3650;
/// The range of `live_watch_seconds_per_point`: a second to a day.
pub const SECONDS_PER_POINT: std::ops::RangeInclusive<u32> = 1..=86_400;
/// The largest weight an event type may have.
pub const MAX_WEIGHT: u32 = 1_000;

/// The default weights of docs/layers.md (live_watch is scored by duration instead).
const DEFAULT_WEIGHTS: [(&str, u32); 11] = [
    ("video_like", 1),
    ("video_comment", 3),
    ("video_share", 3),
    ("homepage_visit", 1),
    ("live_enter", 1),
    ("live_comment", 2),
    ("private_message_in", 4),
    ("subscribe", 4),
    ("group_message", 2),
    ("coupon_claim", 3),
    ("store_visit", 5),
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrueLove {
    pub orders: u32,
    pub orders_with_engagement: u32,
    pub engagement_with_order: u32,
    pub group_engagement: u32,
}

impl Default for TrueLove {
    fn default() -> Self {
        TrueLove {
            orders: 2,
            orders_with_engagement: 1,
            engagement_with_order: 10,
            group_engagement: 20,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Favorable {
    pub engagement: u32,
}

impl Default for Favorable {
    fn default() -> Self {
        Favorable { engagement: 10 }
    }
}

/// The rules as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    engagement_window_days: Option<toml::Spanned<u32>>,
    orders_window_days: Option<toml::Spanned<u32>>,
    live_watch_seconds_per_point: Option<toml::Spanned<u32>>,
    #[serde(default)]
    weights: BTreeMap<String, toml::Spanned<u32>>,
    #[serde(default)]
    true_love: TrueLove,
    #[serde(default)]
    favorable: Favorable,
}

/// Checked rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rules {
    pub engagement_window_days: u32,
    pub orders_window_days: u32,
    pub live_watch_seconds_per_point: u32,
    /// Weight by catalogue type index.
    #[serde(serialize_with = "weights_by_name")]
    pub weights: [u32; CATALOGUE_LEN],
    pub true_love: TrueLove,
    pub favorable: Favorable,
}

fn weights_by_name<S: serde::Serializer>(
    w: &[u32; CATALOGUE_LEN],
    s: S,
) -> Result<S::Ok, S::Error> {
    let map: BTreeMap<&str, u32> = CatalogueType::ALL
        .iter()
        .filter(|t| w[**t as usize] > 0)
        .map(|t| (t.as_str(), w[*t as usize]))
        .collect();
    map.serialize(s)
}

impl Default for Rules {
    fn default() -> Self {
        let mut weights = [0; CATALOGUE_LEN];
        for (name, w) in DEFAULT_WEIGHTS {
            if let Some(t) = CatalogueType::ALL.iter().find(|t| t.as_str() == name) {
                weights[*t as usize] = w;
            }
        }
        Rules {
            engagement_window_days: 30,
            orders_window_days: 180,
            live_watch_seconds_per_point: 300,
            weights,
            true_love: TrueLove::default(),
            favorable: Favorable::default(),
        }
    }
}

/// Why a rules file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rules line {line}: {message}")]
pub struct RulesError {
    pub line: usize,
    pub message: String,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

impl Rules {
    /// Parses a rules file over the defaults: what the file does not say stays default.
    pub fn from_toml(text: &str) -> Result<Rules, RulesError> {
        let file: RulesFile = toml::from_str(text).map_err(|e| RulesError {
            line: e.span().map(|s| line_of(text, s.start)).unwrap_or(1),
            message: e.message().trim().to_string(),
        })?;
        let mut rules = Rules::default();
        let within = |v: &Option<toml::Spanned<u32>>,
                      name: &str,
                      range: std::ops::RangeInclusive<u32>,
                      default: u32| match v {
            Some(s) if !range.contains(s.get_ref()) => Err(RulesError {
                line: line_of(text, s.span().start),
                message: format!(
                    "{name} must be {} to {}, not {}",
                    range.start(),
                    range.end(),
                    s.get_ref()
                ),
            }),
            Some(s) => Ok(*s.get_ref()),
            None => Ok(default),
        };
        rules.engagement_window_days = within(
            &file.engagement_window_days,
            "engagement_window_days",
            WINDOW_DAYS,
            30,
        )?;
        rules.orders_window_days = within(
            &file.orders_window_days,
            "orders_window_days",
            WINDOW_DAYS,
            180,
        )?;
        rules.live_watch_seconds_per_point = within(
            &file.live_watch_seconds_per_point,
            "live_watch_seconds_per_point",
            SECONDS_PER_POINT,
            300,
        )?;
        for (name, w) in &file.weights {
            let Some(t) = CatalogueType::ALL.iter().find(|t| t.as_str() == name) else {
                return Err(RulesError {
                    line: line_of(text, w.span().start),
                    message: format!("weights.{name}: not a catalogue event type"),
                });
            };
            if *t == CatalogueType::LiveWatch {
                return Err(RulesError {
                    line: line_of(text, w.span().start),
                    message: "weights.live_watch: live_watch is scored by duration; set live_watch_seconds_per_point".into(),
                });
            }
            if *w.get_ref() > MAX_WEIGHT {
                return Err(RulesError {
                    line: line_of(text, w.span().start),
                    message: format!(
                        "weights.{name} must be 0 to {MAX_WEIGHT}, not {}",
                        w.get_ref()
                    ),
                });
            }
            rules.weights[*t as usize] = *w.get_ref();
        }
        rules.true_love = file.true_love;
        rules.favorable = file.favorable;
        Ok(rules)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_design_md() {
        let r = Rules::default();
        assert_eq!(r.weights[CatalogueType::PrivateMessageIn as usize], 4);
        assert_eq!(r.weights[CatalogueType::StoreVisit as usize], 5);
        assert_eq!(r.weights[CatalogueType::Order as usize], 0);
        assert_eq!(r.weights[CatalogueType::VideoView as usize], 0);
        assert_eq!(Rules::from_toml("").unwrap(), r);
    }

    #[test]
    fn a_file_changes_what_it_names() {
        let r = Rules::from_toml(
            "engagement_window_days = 14\n[weights]\nvideo_view = 1\nvideo_like = 0\n[favorable]\nengagement = 6\n",
        )
        .unwrap();
        assert_eq!(r.engagement_window_days, 14);
        assert_eq!(r.weights[CatalogueType::VideoView as usize], 1);
        assert_eq!(r.weights[CatalogueType::VideoLike as usize], 0);
        assert_eq!(r.favorable.engagement, 6);
        assert_eq!(r.true_love, TrueLove::default());
    }

    #[test]
    fn bad_files_name_the_line() {
        let e = Rules::from_toml("[weights]\nvideo_like = 1\nbuy = 3\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("buy"), "{e}");
        let e = Rules::from_toml("orders_window_days = 0\n").unwrap_err();
        assert_eq!(e.line, 1);
        let e = Rules::from_toml("\n[favorable]\nengagment = 3\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        let e = Rules::from_toml("[weights]\nvideo_like = -1\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        let e = Rules::from_toml("[weights\n").unwrap_err();
        assert_eq!(e.line, 1, "{e}");
        assert!(Rules::from_toml("[weights]\nlive_watch = 2\n").is_err());
    }

    #[test]
    fn values_out_of_range_are_refused_with_the_range() {
        // The probe of issue 12: a weight that wrapped the sums in release builds.
        let e = Rules::from_toml("[weights]\nvideo_like = 4294967295\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("0 to 1000"), "{e}");
        let e = Rules::from_toml("[weights]\nvideo_like = 4294967296\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(Rules::from_toml("[weights]\nvideo_like = 1000\n").is_ok());
        assert!(Rules::from_toml("[weights]\nvideo_like = 1001\n").is_err());
        let e = Rules::from_toml("x = 1\n").unwrap_err();
        assert_eq!(e.line, 1, "{e}");
        let e = Rules::from_toml("\nengagement_window_days = 3651\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("1 to 3650"), "{e}");
        assert!(Rules::from_toml("orders_window_days = 3650\n").is_ok());
        assert!(Rules::from_toml("live_watch_seconds_per_point = 86401\n").is_err());
        assert!(Rules::from_toml("live_watch_seconds_per_point = 86400\n").is_ok());
        let e = Rules::from_toml("engagement_window_days = 0\n").unwrap_err();
        assert!(e.message.contains("1 to 3650"), "{e}");
    }
}
