//! The leads report: leads by state, by channel and by agent, how long first contact took,
//! and the repeat leads each team absorbed — the follow-ups dedup saved. Every figure is
//! counted from the leads, their arrivals and their log as stored, the rows routing wrote.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use siyu_leads::LeadState;
use siyu_store::TenantId;
use siyu_store::leads::LeadFilter;

use super::LeadsError;
use crate::App;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LeadReport {
    pub leads: usize,
    pub open: usize,
    /// Leads waiting in a pool (open, no owner).
    pub pooled: usize,
    /// Every state, in the path's order, with its Chinese label; zeros included.
    pub by_state: Vec<StateCount>,
    /// By the channel of a lead's first arrival: most leads first, then most repeats, then
    /// by name.
    pub by_channel: Vec<ChannelCount>,
    /// By owner (agents who own none are left out), most leads first.
    pub by_agent: Vec<AgentCount>,
    /// From a lead's creation to its first contact, over leads contacted; minutes.
    pub first_contact_minutes: Percentiles,
    /// Of the leads whose first contact was due, the share contacted by the deadline.
    pub first_contact_in_time: Option<f64>,
    /// Per team: repeat arrivals absorbed (the follow-ups dedup saved).
    pub repeats_by_team: Vec<TeamRepeats>,
    pub repeats: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StateCount {
    pub state: &'static str,
    pub label: &'static str,
    pub leads: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChannelCount {
    pub channel: String,
    pub leads: usize,
    /// Repeat arrivals through this channel on leads already open.
    pub repeats: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AgentCount {
    pub agent: String,
    pub leads: usize,
    pub open: usize,
    pub won: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TeamRepeats {
    /// `null` for leads no rule placed in a team.
    pub team: Option<String>,
    pub leads: usize,
    pub repeats: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct Percentiles {
    pub count: usize,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
}

/// The nearest-rank percentile of sorted values.
fn rank(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let k = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[k.clamp(1, sorted.len()) - 1])
}

impl App {
    /// The leads report over every lead of the tenant.
    pub fn lead_report(&self, tenant: TenantId) -> Result<LeadReport, LeadsError> {
        let store = self.store();
        let leads = store.leads(
            tenant,
            &LeadFilter {
                limit: usize::MAX >> 1,
                ..LeadFilter::default()
            },
        )?;
        // Repeats per lead, read a thousand leads at a time.
        let mut repeats_of: HashMap<i64, Vec<String>> = HashMap::new();
        for chunk in leads.chunks(1000) {
            let ids: Vec<i64> = chunk.iter().map(|l| l.id).collect();
            for a in store.arrivals_of(tenant, &ids)? {
                if a.repeat {
                    repeats_of.entry(a.lead).or_default().push(a.channel);
                }
            }
        }
        let mut by_state: BTreeMap<LeadState, usize> = BTreeMap::new();
        let mut channels: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        let mut agents: BTreeMap<String, AgentCount> = BTreeMap::new();
        let mut teams: BTreeMap<Option<String>, (usize, usize)> = BTreeMap::new();
        let (mut open, mut pooled, mut repeats) = (0, 0, 0);
        let mut minutes = Vec::new();
        let (mut due, mut in_time) = (0usize, 0usize);
        for l in &leads {
            let state = LeadState::parse(&l.state).unwrap_or(LeadState::New);
            *by_state.entry(state).or_default() += 1;
            if state.is_open() {
                open += 1;
                pooled += usize::from(l.owner.is_none());
            }
            channels.entry(l.channel.clone()).or_default().0 += 1;
            if let Some(o) = &l.owner {
                let a = agents.entry(o.clone()).or_insert(AgentCount {
                    agent: o.clone(),
                    leads: 0,
                    open: 0,
                    won: 0,
                });
                a.leads += 1;
                a.open += usize::from(state.is_open());
                a.won += usize::from(state == LeadState::Won);
            }
            teams.entry(l.team.clone()).or_default().0 += 1;
            for channel in repeats_of.get(&l.id).into_iter().flatten() {
                repeats += 1;
                channels.entry(channel.clone()).or_default().1 += 1;
                teams.entry(l.team.clone()).or_default().1 += 1;
            }
            if let Some(c) = l.first_contact_at {
                minutes.push((c - l.created_at).max(0) as f64 / 60_000.0);
            }
            if let Some(d) = l.first_contact_due {
                due += 1;
                in_time += usize::from(l.first_contact_at.is_some_and(|c| c <= d));
            }
        }
        minutes.sort_by(f64::total_cmp);
        let mut by_channel: Vec<ChannelCount> = channels
            .into_iter()
            .map(|(channel, (leads, repeats))| ChannelCount {
                channel,
                leads,
                repeats,
            })
            .collect();
        by_channel.sort_by(|a, b| {
            (b.leads, b.repeats)
                .cmp(&(a.leads, a.repeats))
                .then(a.channel.cmp(&b.channel))
        });
        let mut by_agent: Vec<AgentCount> = agents.into_values().collect();
        by_agent.sort_by(|a, b| b.leads.cmp(&a.leads).then(a.agent.cmp(&b.agent)));
        Ok(LeadReport {
            leads: leads.len(),
            open,
            pooled,
            by_state: LeadState::ALL
                .into_iter()
                .map(|s| StateCount {
                    state: s.as_str(),
                    label: s.label_zh(),
                    leads: by_state.get(&s).copied().unwrap_or(0),
                })
                .collect(),
            by_channel,
            by_agent,
            first_contact_minutes: Percentiles {
                count: minutes.len(),
                p50: rank(&minutes, 50.0),
                p90: rank(&minutes, 90.0),
            },
            first_contact_in_time: (due > 0).then(|| in_time as f64 / due as f64),
            repeats_by_team: teams
                .into_iter()
                .map(|(team, (leads, repeats))| TeamRepeats {
                    team,
                    leads,
                    repeats,
                })
                .collect(),
            repeats,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::rank;

    #[test]
    fn nearest_rank() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        assert_eq!(rank(&v, 50.0), Some(5.0));
        assert_eq!(rank(&v, 90.0), Some(9.0));
        assert_eq!(rank(&v, 100.0), Some(10.0));
        assert_eq!(rank(&[], 50.0), None);
        assert_eq!(rank(&[3.0], 90.0), Some(3.0));
    }
}
