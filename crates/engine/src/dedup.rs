//! Lead deduplication (线索去重): how many of the leads each channel delivered were people the
//! brand already had a lead for, and how channels overlap.
//!
//! Each `lead_form` is kept as (time, fan node, channel); the fan is resolved at report time,
//! so a merge (or an undone merge) changes the report at once. The channel is the form's
//! `props.channel` (`live`, `ad`, `private_message`, ...), else the event's `source`.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use siyu_domain::{Event, Millis};

use crate::identity::{FanId, IdentityGraph};

#[derive(Debug, Clone, Copy)]
struct LeadRec {
    ts: Millis,
    node: u32,
    channel: u16,
}

/// Every lead seen, compactly.
#[derive(Debug, Default)]
pub(crate) struct Leads {
    recs: Vec<LeadRec>,
    channels: Vec<String>,
    index: HashMap<String, u16>,
}

/// One channel's line of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DedupRow {
    pub channel: String,
    /// Lead forms received.
    pub leads: u64,
    /// Distinct fans among them.
    pub people: u64,
    /// Leads from a person this channel already had a lead from: `leads - people`.
    pub repeat_leads: u64,
    /// 线索重复率: `repeat_leads / leads` (0 when there are no leads).
    pub repeat_ratio: f64,
}

impl DedupRow {
    fn new(channel: String, leads: u64, people: u64) -> DedupRow {
        let repeat_leads = leads - people;
        DedupRow {
            channel,
            leads,
            people,
            repeat_leads,
            repeat_ratio: if leads == 0 {
                0.0
            } else {
                repeat_leads as f64 / leads as f64
            },
        }
    }
}

/// The report. `overlap[i][j]` is the number of people with leads through both
/// `channels[i]` and `channels[j]` (the diagonal is each channel's people).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DedupReport {
    #[serde(serialize_with = "siyu_domain::time::rfc3339_opt")]
    pub from: Option<Millis>,
    #[serde(serialize_with = "siyu_domain::time::rfc3339_opt")]
    pub to: Option<Millis>,
    pub channels: Vec<DedupRow>,
    /// All channels together: repeats here include a person's leads through other channels.
    pub total: DedupRow,
    /// People who left leads through more than one channel.
    pub multi_channel_people: u64,
    pub overlap: Vec<Vec<u64>>,
}

impl Leads {
    /// Every lead form as (time, identity node, channel), in arrival order.
    pub(crate) fn each(&self) -> impl Iterator<Item = (Millis, u32, &str)> {
        self.recs
            .iter()
            .map(|r| (r.ts, r.node, self.channels[r.channel as usize].as_str()))
    }

    pub(crate) fn push(&mut self, e: &Event, node: u32) {
        let name = e
            .props
            .get("channel")
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .or(e.source.as_deref())
            .unwrap_or("unknown");
        let channel = match self.index.get(name) {
            Some(c) => *c,
            None => {
                let c = self.channels.len().min(u16::MAX as usize) as u16;
                self.channels.push(name.to_string());
                self.index.insert(name.to_string(), c);
                c
            }
        };
        self.recs.push(LeadRec {
            ts: e.ts,
            node,
            channel,
        });
    }

    pub(crate) fn report(
        &self,
        graph: &IdentityGraph,
        from: Option<Millis>,
        to: Option<Millis>,
    ) -> DedupReport {
        let n = self.channels.len();
        let mut leads = vec![0u64; n];
        let mut people: Vec<HashSet<FanId>> = vec![HashSet::new(); n];
        let mut by_fan: HashMap<FanId, Vec<u16>> = HashMap::new();
        let mut total = 0u64;
        for r in &self.recs {
            if from.is_some_and(|f| r.ts < f) || to.is_some_and(|t| r.ts >= t) {
                continue;
            }
            let fan = graph.fan(r.node);
            total += 1;
            leads[r.channel as usize] += 1;
            people[r.channel as usize].insert(fan);
            let chans = by_fan.entry(fan).or_default();
            if !chans.contains(&r.channel) {
                chans.push(r.channel);
            }
        }
        let mut overlap = vec![vec![0u64; n]; n];
        let mut multi = 0;
        for chans in by_fan.values() {
            if chans.len() > 1 {
                multi += 1;
            }
            for &a in chans {
                for &b in chans {
                    overlap[a as usize][b as usize] += 1;
                }
            }
        }
        // Busiest channel first; the overlap matrix follows the same order.
        let mut order: Vec<usize> = (0..n).filter(|&c| leads[c] > 0).collect();
        order.sort_by(|&a, &b| {
            leads[b]
                .cmp(&leads[a])
                .then(self.channels[a].cmp(&self.channels[b]))
        });
        DedupReport {
            from,
            to,
            channels: order
                .iter()
                .map(|&c| DedupRow::new(self.channels[c].clone(), leads[c], people[c].len() as u64))
                .collect(),
            total: DedupRow::new("all".into(), total, by_fan.len() as u64),
            multi_channel_people: multi,
            overlap: order
                .iter()
                .map(|&a| order.iter().map(|&b| overlap[a][b]).collect())
                .collect(),
        }
    }
}

impl crate::snapshot::Snap for LeadRec {
    fn put(&self, w: &mut crate::snapshot::Writer) {
        w.put(&self.ts);
        w.put(&self.node);
        w.put(&self.channel);
    }
    fn take(r: &mut crate::snapshot::Reader<'_>) -> Result<Self, crate::snapshot::SnapshotError> {
        Ok(LeadRec {
            ts: r.take()?,
            node: r.take()?,
            channel: r.take()?,
        })
    }
}

impl crate::snapshot::Snap for Leads {
    fn put(&self, w: &mut crate::snapshot::Writer) {
        w.put(&self.recs);
        w.put(&self.channels);
    }
    fn take(r: &mut crate::snapshot::Reader<'_>) -> Result<Self, crate::snapshot::SnapshotError> {
        let recs = r.take()?;
        let channels: Vec<String> = r.take()?;
        let index = channels
            .iter()
            .enumerate()
            .map(|(i, c)| (c.clone(), i as u16))
            .collect();
        Ok(Leads {
            recs,
            channels,
            index,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::TenantEngine;
    use siyu_domain::parse_event;

    fn lead(seq: i64, ts: &str, channel: &str, ids: &str) -> (i64, siyu_domain::Event) {
        let text = format!(
            r#"{{"id":"{seq}","type":"lead_form","ts":"{ts}","identities":{ids},"props":{{"channel":"{channel}"}},"source":"douyin"}}"#
        );
        (seq, parse_event(&text, 1_900_000_000_000).unwrap())
    }

    #[test]
    fn repeats_per_channel_and_overlap() {
        let mut e = TenantEngine::new();
        for (seq, ev) in [
            lead(
                1,
                "2026-10-01T00:00:00Z",
                "live",
                r#"{"douyin_open_id":"a","phone":"13800138000"}"#,
            ),
            lead(
                2,
                "2026-10-02T00:00:00Z",
                "ad",
                r#"{"lead_id":"c1","phone":"138 0013 8000"}"#,
            ),
            lead(
                3,
                "2026-10-03T00:00:00Z",
                "live",
                r#"{"douyin_open_id":"a"}"#,
            ),
            lead(
                4,
                "2026-10-04T00:00:00Z",
                "ad",
                r#"{"lead_id":"c2","phone":"13900139000"}"#,
            ),
            lead(
                5,
                "2026-10-05T00:00:00Z",
                "private_message",
                r#"{"douyin_open_id":"b","phone":"13900139000"}"#,
            ),
        ] {
            e.apply(seq, &ev);
        }
        let r = e.dedup_report(None, None);
        assert_eq!(r.total.leads, 5);
        assert_eq!(r.total.people, 2);
        assert_eq!(r.total.repeat_leads, 3);
        let live = r.channels.iter().find(|c| c.channel == "live").unwrap();
        assert_eq!((live.leads, live.people, live.repeat_leads), (2, 1, 1));
        assert!((live.repeat_ratio - 0.5).abs() < 1e-9);
        assert_eq!(r.multi_channel_people, 2);
        let i = |name: &str| r.channels.iter().position(|c| c.channel == name).unwrap();
        assert_eq!(r.overlap[i("live")][i("ad")], 1);
        assert_eq!(r.overlap[i("ad")][i("private_message")], 1);
        assert_eq!(r.overlap[i("live")][i("private_message")], 0);
        assert_eq!(r.overlap[i("ad")][i("ad")], 2);

        let t = |s| siyu_domain::time::parse_rfc3339(s);
        let window = e.dedup_report(t("2026-10-02T00:00:00Z"), t("2026-10-04T00:00:00Z"));
        assert_eq!(window.total.leads, 2, "Oct 2 and Oct 3 only");
    }
}
