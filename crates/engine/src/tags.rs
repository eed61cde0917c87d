//! Tags on fans: operators' labels (`高意向`), added and removed by hand or kept by an automatic
//! tag's segment. Each change is kept with its time, so a tag can be asked about as of any
//! instant and a fan's tag history can be shown.

use std::collections::HashMap;

use serde::Serialize;
use siyu_domain::Millis;

use crate::identity::FanId;

/// One tag change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TagChange {
    pub fan: FanId,
    pub tag: String,
    /// `true`: added; `false`: removed.
    pub on: bool,
    #[serde(serialize_with = "siyu_domain::time::rfc3339")]
    pub at: Millis,
    /// Who made it: `manual`, or `segment:<id>` for an automatic tag.
    pub source: String,
}

/// Every tag's history per fan id, in the order the changes were made.
#[derive(Debug, Default)]
pub struct Tags {
    by_name: HashMap<String, HashMap<FanId, Vec<(Millis, bool)>>>,
}

/// Whether a history (in the order made) has the tag on as of `as_of` (ties: the later change).
fn on_at(h: &[(Millis, bool)], as_of: Millis) -> bool {
    let mut last: Option<(Millis, bool)> = None;
    for &(at, on) in h {
        if at <= as_of && last.is_none_or(|(t, _)| at >= t) {
            last = Some((at, on));
        }
    }
    last.is_some_and(|(_, on)| on)
}

impl Tags {
    pub fn apply(&mut self, c: &TagChange) {
        self.by_name
            .entry(c.tag.clone())
            .or_default()
            .entry(c.fan)
            .or_default()
            .push((c.at, c.on));
    }

    /// The fans (as tagged: ids may have been merged since) carrying `tag` as of `as_of`.
    pub fn fans_with(&self, tag: &str, as_of: Millis) -> Vec<FanId> {
        let Some(by_fan) = self.by_name.get(tag) else {
            return Vec::new();
        };
        let mut fans: Vec<FanId> = by_fan
            .iter()
            .filter(|(_, h)| on_at(h, as_of))
            .map(|(f, _)| *f)
            .collect();
        fans.sort_unstable();
        fans
    }

    /// Whether any of a fan's ids carries `tag` as of `as_of`.
    pub fn has(&self, tag: &str, ids: &[FanId], as_of: Millis) -> bool {
        self.by_name.get(tag).is_some_and(|by_fan| {
            ids.iter()
                .any(|id| by_fan.get(id).is_some_and(|h| on_at(h, as_of)))
        })
    }

    /// The tags a fan's ids carry as of `as_of`, sorted.
    pub fn of(&self, ids: &[FanId], as_of: Millis) -> Vec<String> {
        let mut v: Vec<String> = self
            .by_name
            .iter()
            .filter(|(_, by_fan)| {
                ids.iter()
                    .any(|id| by_fan.get(id).is_some_and(|h| on_at(h, as_of)))
            })
            .map(|(t, _)| t.clone())
            .collect();
        v.sort_unstable();
        v
    }

    /// Every tag name ever used, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }
}
