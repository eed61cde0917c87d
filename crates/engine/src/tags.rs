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
    pub at: Millis,
    /// Who made it: `manual`, or `segment:<id>` for an automatic tag.
    pub source: String,
}

/// Every tag's history, in the order the changes were made.
#[derive(Debug, Default)]
pub struct Tags {
    by_name: HashMap<String, Vec<(FanId, Millis, bool)>>,
}

impl Tags {
    pub fn apply(&mut self, c: &TagChange) {
        self.by_name
            .entry(c.tag.clone())
            .or_default()
            .push((c.fan, c.at, c.on));
    }

    /// The fans (as tagged: ids may have been merged since) carrying `tag` as of `as_of`.
    pub fn fans_with(&self, tag: &str, as_of: Millis) -> Vec<FanId> {
        let Some(h) = self.by_name.get(tag) else {
            return Vec::new();
        };
        let mut state: HashMap<FanId, (Millis, bool)> = HashMap::new();
        for &(fan, at, on) in h {
            if at > as_of {
                continue;
            }
            let e = state.entry(fan).or_insert((Millis::MIN, false));
            if at >= e.0 {
                *e = (at, on);
            }
        }
        let mut fans: Vec<FanId> = state
            .into_iter()
            .filter_map(|(f, (_, on))| on.then_some(f))
            .collect();
        fans.sort_unstable();
        fans
    }

    /// Every tag name ever used, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }
}
