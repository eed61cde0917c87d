//! Fan groups (粉丝群): groups with a capacity and an owner, their membership from
//! `group_join` / `group_leave` events, their activity from `group_message`, and placing a
//! fan in a group with room (opening the template's next group when all are full).
//!
//! An event names its group by `props.group_id` (Douyin's `im_group_id`, a WeCom chat id, or
//! a name an import chose). A group Siyu does not know yet is opened under that name, with
//! the default capacity, from the template `external`: membership is never dropped for want of
//! a definition.

use std::collections::HashMap;

use serde::Serialize;
use siyu_domain::Millis;
use siyu_domain::time::MS_PER_DAY;
use siyu_leads::groups::{self, Group, Place};
use siyu_store::TenantId;
use siyu_store::leads::{GroupDay, LeadBatch, StoredGroup, StoredInvite, StoredMember};

use super::{LeadsError, refused, write_lock};
use crate::App;

/// The template of groups opened because an event named them.
pub const EXTERNAL: &str = "external";

/// A group as shown, with its activity.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GroupView {
    pub id: i64,
    pub name: String,
    pub template: String,
    pub capacity: i32,
    pub owner: Option<String>,
    pub members: i32,
    /// Seats held by invitations out (made in the last 3 days, not yet joined): placement
    /// counts them with the members.
    pub invited: i64,
    /// Members who sent a message in the group in the last 7 days.
    pub active_7d: usize,
    /// Over the days of `daily`.
    pub joins: i64,
    pub leaves: i64,
    pub messages: i64,
    /// The last 30 local days, oldest first (days without activity included, as zeros).
    pub daily: Vec<GroupDayView>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GroupDayView {
    /// `YYYY-MM-DD`, local.
    pub date: String,
    pub joins: i32,
    pub leaves: i32,
    pub messages: i32,
}

/// What group events change, for the lead worker's batch.
#[derive(Debug, Default)]
pub struct GroupChanges {
    pub new_groups: Vec<StoredGroup>,
    pub members: Vec<StoredMember>,
    pub sizes: Vec<(i64, i32)>,
    pub days: Vec<GroupDay>,
}

/// One group event: the fan (as now), the event's type, its group id, its time.
pub struct GroupEvent<'a> {
    pub fan: i64,
    pub ty: &'a str,
    pub group: &'a str,
    pub at: Millis,
}

/// Applies group events in order: joins and leaves change membership (a join of a member or
/// a leave of a non-member changes nothing), messages mark the member active. `next_group`
/// is the highest group id in use; days are local days of `tz`.
pub fn apply(
    store: &dyn siyu_store::Store,
    tenant: TenantId,
    events: &[GroupEvent<'_>],
    next_group: &mut i64,
    tz: &jiff::tz::TimeZone,
    now: Millis,
) -> Result<GroupChanges, LeadsError> {
    let mut out = GroupChanges::default();
    if events.is_empty() {
        return Ok(out);
    }
    let mut by_name: HashMap<String, StoredGroup> = store
        .groups(tenant)?
        .into_iter()
        .map(|g| (g.name.clone(), g))
        .collect();
    // The memberships of the fans these events concern, loaded once per group (not the
    // group's every member: a group may have 100,000), and each group's size before them.
    let mut fans_of: HashMap<&str, Vec<i64>> = HashMap::new();
    for ev in events {
        fans_of.entry(ev.group).or_default().push(ev.fan);
    }
    let mut members: HashMap<i64, HashMap<i64, StoredMember>> = HashMap::new();
    let mut before: HashMap<i64, (i32, i32)> = HashMap::new();
    let mut days: HashMap<(i64, i32), GroupDay> = HashMap::new();
    let mut touched: HashMap<(i64, i64), StoredMember> = HashMap::new();
    for ev in events {
        let g = match by_name.get(ev.group) {
            Some(g) => g.clone(),
            None => {
                *next_group += 1;
                let g = StoredGroup {
                    id: *next_group,
                    name: ev.group.to_string(),
                    template: EXTERNAL.into(),
                    capacity: groups::CAPACITY,
                    owner: None,
                    members: 0,
                    created_at: now,
                };
                out.new_groups.push(g.clone());
                by_name.insert(g.name.clone(), g.clone());
                g
            }
        };
        let list = match members.entry(g.id) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let stored = if out.new_groups.iter().any(|n| n.id == g.id) {
                    Vec::new()
                } else {
                    let fans = fans_of.get(ev.group).map(Vec::as_slice);
                    store.members(tenant, g.id, Some(fans.unwrap_or_default()))?
                };
                let active = stored.iter().filter(|m| m.left_at.is_none()).count();
                before.insert(g.id, (g.members, active as i32));
                v.insert(stored.into_iter().map(|m| (m.fan, m)).collect())
            }
        };
        let day = siyu_journey::policy::local_day(tz, ev.at);
        let d = days.entry((g.id, day)).or_insert(GroupDay {
            group: g.id,
            day,
            ..GroupDay::default()
        });
        let current = list.get(&ev.fan).filter(|m| m.left_at.is_none()).cloned();
        let changed = match (ev.ty, current) {
            ("group_join", None) => {
                d.joins += 1;
                Some(StoredMember {
                    group: g.id,
                    fan: ev.fan,
                    joined_at: ev.at,
                    left_at: None,
                    active_at: None,
                })
            }
            ("group_leave", Some(m)) => {
                d.leaves += 1;
                Some(StoredMember {
                    left_at: Some(ev.at),
                    ..m
                })
            }
            ("group_message", m) => {
                d.messages += 1;
                m.map(|m| StoredMember {
                    active_at: Some(ev.at.max(m.active_at.unwrap_or(ev.at))),
                    ..m
                })
            }
            _ => None,
        };
        if let Some(m) = changed {
            list.insert(m.fan, m.clone());
            touched.insert((m.group, m.fan), m);
        }
    }
    out.members = touched.into_values().collect();
    out.members.sort_by_key(|m| (m.group, m.fan));
    // The stored size moved by as many as joined less those who left, among these fans.
    out.sizes = members
        .iter()
        .map(|(g, list)| {
            let (size, active) = before.get(g).copied().unwrap_or_default();
            let now_active = list.values().filter(|m| m.left_at.is_none()).count() as i32;
            (*g, size + now_active - active)
        })
        .collect();
    out.sizes.sort_unstable();
    out.days = days.into_values().collect();
    out.days.sort_by_key(|d| (d.group, d.day));
    Ok(out)
}

impl App {
    /// Opens a group; `template` groups overflow into each other (default: its own name).
    pub fn create_group(
        &self,
        tenant: TenantId,
        name: &str,
        template: Option<&str>,
        capacity: Option<i64>,
        owner: Option<&str>,
    ) -> Result<StoredGroup, LeadsError> {
        if name.trim().is_empty()
            || name.chars().count() > 100
            || name.chars().any(char::is_control)
        {
            return Err(refused(
                "name",
                "invalid_name",
                "a group's name is 1 to 100 characters",
            ));
        }
        let capacity = match capacity {
            None => groups::CAPACITY,
            Some(c) if (1..=100_000).contains(&c) => c as i32,
            Some(c) => {
                return Err(refused(
                    "capacity",
                    "invalid_capacity",
                    format!("{c} is not a group capacity; expected 1 to 100000"),
                ));
            }
        };
        let store = self.store();
        if let Some(o) = owner
            && !store.agents(tenant)?.iter().any(|a| a.name == o)
        {
            return Err(LeadsError::NoAgent(o.to_string()));
        }
        if let Some(t) = template
            && (t.trim().is_empty() || t.chars().count() > 100 || t.chars().any(char::is_control))
        {
            return Err(refused(
                "template",
                "invalid_name",
                "a group template's name is 1 to 100 characters",
            ));
        }
        if store.groups(tenant)?.iter().any(|g| g.name == name) {
            return Err(refused(
                "name",
                "duplicate_group",
                format!("a group named \"{name}\" exists"),
            ));
        }
        store.check_writable()?;
        let _held = write_lock();
        let g = StoredGroup {
            id: store.lead_ids(tenant)?.group + 1,
            name: name.to_string(),
            template: template.unwrap_or(name).to_string(),
            capacity,
            owner: owner.map(str::to_string),
            members: 0,
            created_at: self.now(),
        };
        store.commit_leads(
            tenant,
            &LeadBatch {
                new_groups: std::slice::from_ref(&g),
                now: self.now(),
                ..LeadBatch::default()
            },
        )?;
        Ok(g)
    }

    /// The groups fans are invited to, one per `(fan, template)` asked, in order: a group of
    /// the template the fan is in already (no seat taken), or the one their invitation still
    /// holds a seat in (renewed), or the template's first group with room counting the seats
    /// invitations hold, or a new one opened from the template (its owner and capacity those
    /// of the template's first group). Seats and new groups are committed before the answer:
    /// asked again (a retried step), a fan gets the same group and holds one seat.
    pub fn place_invites(
        &self,
        tenant: TenantId,
        asks: &[(i64, &str)],
    ) -> Result<Vec<StoredGroup>, LeadsError> {
        if asks.is_empty() {
            return Ok(Vec::new());
        }
        let store = self.store();
        let _held = write_lock();
        let now = self.now();
        let since = now - groups::HOLD_MS;
        let mut all = store.groups(tenant)?;
        let mut held: HashMap<i64, i32> = store
            .invites_held(tenant, since)?
            .into_iter()
            .map(|(g, n)| (g, i32::try_from(n).unwrap_or(i32::MAX)))
            .collect();
        let mut fans: Vec<i64> = asks.iter().map(|(f, _)| *f).collect();
        fans.sort_unstable();
        fans.dedup();
        let mut seats: Vec<StoredInvite> = store
            .invites_of(tenant, &fans)?
            .into_iter()
            .filter(|i| i.invited_at >= since)
            .collect();
        let mut member_of: HashMap<i64, Vec<i64>> = HashMap::new();
        for f in &fans {
            member_of.insert(*f, store.groups_of(tenant, *f)?);
        }
        let mut next_id = store.lead_ids(tenant)?.group;
        let mut new_groups: Vec<StoredGroup> = Vec::new();
        let mut renewed: Vec<StoredInvite> = Vec::new();
        let mut out = Vec::with_capacity(asks.len());
        for &(fan, template) in asks {
            let of_template = |g: &&StoredGroup| g.template == template;
            if let Some(g) = all
                .iter()
                .filter(of_template)
                .find(|g| member_of[&fan].contains(&g.id))
            {
                out.push(g.clone());
                continue;
            }
            let seat = all
                .iter()
                .filter(of_template)
                .find(|g| seats.iter().any(|s| s.group == g.id && s.fan == fan))
                .map(|g| g.id);
            let i = match seat {
                Some(id) => all.iter().position(|g| g.id == id).unwrap_or_default(),
                None => {
                    let placed: Vec<Group> = all
                        .iter()
                        .map(|g| Group {
                            id: g.id,
                            name: g.name.clone(),
                            template: g.template.clone(),
                            capacity: g.capacity,
                            members: g.members,
                            held: held.get(&g.id).copied().unwrap_or(0),
                        })
                        .collect();
                    let i = match groups::place(&placed, template) {
                        Place::Existing(i) => i,
                        Place::Open { name, .. } => {
                            let first = all.iter().find(|g| g.template == template);
                            next_id += 1;
                            let g = StoredGroup {
                                id: next_id,
                                name,
                                template: template.to_string(),
                                capacity: first.map_or(groups::CAPACITY, |f| f.capacity),
                                owner: first.and_then(|f| f.owner.clone()),
                                members: 0,
                                created_at: now,
                            };
                            new_groups.push(g.clone());
                            all.push(g);
                            all.len() - 1
                        }
                    };
                    *held.entry(all[i].id).or_default() += 1;
                    seats.push(StoredInvite {
                        group: all[i].id,
                        fan,
                        invited_at: now,
                    });
                    i
                }
            };
            renewed.push(StoredInvite {
                group: all[i].id,
                fan,
                invited_at: now,
            });
            out.push(all[i].clone());
        }
        store.check_writable()?;
        store.commit_leads(
            tenant,
            &LeadBatch {
                new_groups: &new_groups,
                invites: &renewed,
                now,
                ..LeadBatch::default()
            },
        )?;
        Ok(out)
    }

    /// Every group with its members, activity and the last 30 days, in the order they were
    /// opened.
    pub fn group_views(&self, tenant: TenantId) -> Result<Vec<GroupView>, LeadsError> {
        let tz = self.lead_tz(tenant)?;
        let held = self.held_seats(tenant)?;
        self.store()
            .groups(tenant)?
            .into_iter()
            .map(|g| self.view_of(tenant, g, &tz, &held))
            .collect()
    }

    /// One group, by its id (digits) or its name.
    pub fn group_view(&self, tenant: TenantId, key: &str) -> Result<GroupView, LeadsError> {
        let id: Option<i64> = key.parse().ok();
        let g = self
            .store()
            .groups(tenant)?
            .into_iter()
            .find(|g| Some(g.id) == id || g.name == key)
            .ok_or_else(|| LeadsError::NoGroup(key.to_string()))?;
        let tz = self.lead_tz(tenant)?;
        let held = self.held_seats(tenant)?;
        self.view_of(tenant, g, &tz, &held)
    }

    /// Seats invitations hold now, by group.
    fn held_seats(&self, tenant: TenantId) -> Result<HashMap<i64, i64>, LeadsError> {
        let since = self.now() - groups::HOLD_MS;
        Ok(self
            .store()
            .invites_held(tenant, since)?
            .into_iter()
            .collect())
    }

    fn view_of(
        &self,
        tenant: TenantId,
        g: StoredGroup,
        tz: &jiff::tz::TimeZone,
        held: &HashMap<i64, i64>,
    ) -> Result<GroupView, LeadsError> {
        let store = self.store();
        let now = self.now();
        let today = siyu_journey::policy::local_day(tz, now);
        let from = today - 29;
        let days = store.group_days(tenant, g.id, from)?;
        let active_7d = store
            .members(tenant, g.id, None)?
            .iter()
            .filter(|m| {
                m.left_at.is_none() && m.active_at.is_some_and(|a| a >= now - 7 * MS_PER_DAY)
            })
            .count();
        let daily: Vec<GroupDayView> = (from..=today)
            .map(|d| {
                let got = days.iter().find(|x| x.day == d);
                GroupDayView {
                    date: date_of(d),
                    joins: got.map_or(0, |x| x.joins),
                    leaves: got.map_or(0, |x| x.leaves),
                    messages: got.map_or(0, |x| x.messages),
                }
            })
            .collect();
        Ok(GroupView {
            joins: daily.iter().map(|d| i64::from(d.joins)).sum(),
            leaves: daily.iter().map(|d| i64::from(d.leaves)).sum(),
            messages: daily.iter().map(|d| i64::from(d.messages)).sum(),
            id: g.id,
            name: g.name,
            template: g.template,
            capacity: g.capacity,
            owner: g.owner,
            members: g.members,
            invited: held.get(&g.id).copied().unwrap_or(0),
            active_7d,
            daily,
        })
    }
}

/// `YYYY-MM-DD` of a day number (days since 1970-01-01).
fn date_of(day: i32) -> String {
    let t = jiff::Timestamp::from_second(i64::from(day) * 86_400)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    t.to_zoned(jiff::tz::TimeZone::UTC).date().to_string()
}
