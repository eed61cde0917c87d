//! Leads, teams and fan groups as stored: teams with their routing strategy and service
//! levels, agents with capacities and working hours, the ordered routing rules, leads with
//! their arrivals (one per lead form or phone given in a private message) and follow-up log,
//! per-agent daily assignment counts, and fan groups with their members and daily counts.
//!
//! Everything one routing step changes is written by [`Leads::commit_leads`] in **one
//! fenced transaction**, with the lead worker's trigger cursor: new and changed leads, their
//! arrivals and log lines, the agents' day counts, group memberships and group day counts. So
//! a crash keeps a step whole or loses it whole, and the step is taken again from the same
//! cursor. Ids of leads, log lines and groups are allocated by the tenant's one writer (the
//! lead worker of the node holding its lease) from [`Leads::lead_ids`]. An arrival's
//! `event_id` is unique per tenant: an arrival stored twice fails the batch with
//! [`crate::StoreError::Corrupt`] naming it, never stored twice.
//!
//! Definitions (teams, agents, rules) are written by their own calls, each one transaction;
//! closed sets (lead states, log kinds, strategies) are stored as text chosen by the
//! `siyu-leads` crate and kept opaque here. Writes are fenced like every derived write.

use siyu_domain::Millis;

use crate::{Result, TenantId};

/// A team: who routing can give its leads to, and its service levels.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredTeam {
    pub name: String,
    /// `round_robin`, `least_loaded` or `weighted`.
    pub strategy: String,
    /// First contact is due this long after assignment (`None`: no service level).
    pub first_contact_ms: Option<i64>,
    /// A lead with no follow-up for this long goes back to the pool (`None`: never).
    pub recycle_ms: Option<i64>,
    /// Who escalations go to (an agent's name), if anyone.
    pub lead_agent: Option<String>,
    /// What an overdue first contact does: `reassign` or `task`.
    pub escalate: String,
    /// The round-robin pointer: the last agent given a lead.
    pub last_agent: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// An agent of a team.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredAgent {
    pub name: String,
    pub team: String,
    /// Open leads at most (`None`: no limit).
    pub capacity: Option<i32>,
    /// Leads assigned per local day at most (`None`: no limit).
    pub daily_cap: Option<i32>,
    /// Working hours in the tenant's time zone, minutes after midnight; `start > end` spans
    /// midnight, `None` is all day.
    pub hours: Option<(i32, i32)>,
    /// The share under `weighted` (1 and up).
    pub weight: i32,
    pub active: bool,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// One routing rule: the first whose expression matches a lead's fan sends it to `team`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredRule {
    pub id: i64,
    /// The rule's place in the order, 1 first.
    pub position: i32,
    /// A segment-language expression over the fan (tags, layer, props, region).
    pub expr: String,
    pub team: String,
    pub created_at: Millis,
}

/// A lead: one person, one owner.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredLead {
    pub id: i64,
    pub fan: i64,
    /// `new`, `contacted`, `qualified`, `won`, `lost`, `invalid` or `merged` (the last four
    /// closed).
    pub state: String,
    /// The team it was routed to; `None` before any rule placed it.
    pub team: Option<String>,
    /// The agent who owns it; `None` while it waits in the team's pool.
    pub owner: Option<String>,
    pub created_at: Millis,
    pub assigned_at: Option<Millis>,
    /// When the first contact is due (from the team's service level at assignment).
    pub first_contact_due: Option<Millis>,
    pub first_contact_at: Option<Millis>,
    pub last_follow_up_at: Option<Millis>,
    /// When an escalation of this lead was last made (so one overdue lead escalates once).
    pub escalated_at: Option<Millis>,
    pub closed_at: Option<Millis>,
    /// The first arrival's channel (`live_form`, `ad_form`, `im_phone`, …) and region.
    pub channel: String,
    pub province: Option<String>,
    pub city: Option<String>,
    /// Ocean Engine's own fields, kept beside Siyu's state.
    pub clue_state: Option<String>,
    pub intention: Option<String>,
    pub updated_at: Millis,
}

/// One arrival of a lead: a lead form, or a phone given in a private message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredArrival {
    pub lead: i64,
    /// The event's id; unique per tenant.
    pub event_id: String,
    pub channel: String,
    pub ts: Millis,
    /// Whether it came to a lead already open (a repeat the dedup absorbed).
    pub repeat: bool,
}

/// One line of a lead's log: a follow-up by an agent, or what Siyu did (assigned, a repeat,
/// back to the pool, escalated, a state change, merged).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredLeadLog {
    pub id: i64,
    pub lead: i64,
    pub at: Millis,
    /// `call`, `message`, `visit`, `note` (follow-ups), or `assigned`, `repeat`, `pooled`,
    /// `recycled`, `escalated`, `state`, `merged`, `split`.
    pub kind: String,
    pub agent: Option<String>,
    pub result: Option<String>,
    /// Anything else, as JSON.
    pub detail: Option<String>,
}

/// Leads given to an agent on one local day (added to the stored count).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentDay {
    pub agent: String,
    /// Days since 1970-01-01 in the tenant's time zone.
    pub day: i32,
    pub count: i32,
}

/// A fan group (粉丝群).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredGroup {
    pub id: i64,
    pub name: String,
    /// The template it was opened from (groups of one template overflow into each other).
    pub template: String,
    pub capacity: i32,
    pub owner: Option<String>,
    /// Members now (kept by the batches that change membership).
    pub members: i32,
    pub created_at: Millis,
}

/// A fan's membership of a group; `left_at` is set when they leave.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredMember {
    pub group: i64,
    pub fan: i64,
    pub joined_at: Millis,
    pub left_at: Option<Millis>,
    /// The last message they sent in the group.
    pub active_at: Option<Millis>,
}

/// A seat held in a group for a fan invited to it, until they join or the invitation is
/// older than the hold (so invitations out never take a group past its capacity).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredInvite {
    pub group: i64,
    pub fan: i64,
    pub invited_at: Millis,
}

/// A group's counts for one local day (added to the stored counts).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupDay {
    pub group: i64,
    pub day: i32,
    pub joins: i32,
    pub leaves: i32,
    pub messages: i32,
}

/// The highest ids in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LeadIds {
    pub lead: i64,
    pub log: i64,
    pub group: i64,
}

/// What one step of the lead worker changes, committed together (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct LeadBatch<'a> {
    /// Inserted; an id already stored fails the batch.
    pub new_leads: &'a [StoredLead],
    /// Replaced by id (all but `id`, `fan`'s history and `created_at`); an id not stored
    /// fails the batch.
    pub updated_leads: &'a [StoredLead],
    /// Inserted; an `event_id` already stored fails the batch.
    pub arrivals: &'a [StoredArrival],
    /// Arrivals moved to another lead (a merge or its undoing): `(event_id, lead)`.
    pub moved_arrivals: &'a [(String, i64)],
    pub log: &'a [StoredLeadLog],
    pub agent_days: &'a [AgentDay],
    /// Teams' round-robin pointers: `(team, last agent)`.
    pub pointers: &'a [(String, String)],
    pub new_groups: &'a [StoredGroup],
    /// Upserted by (group, fan).
    pub members: &'a [StoredMember],
    /// Groups' member counts set: `(group, members)`.
    pub group_sizes: &'a [(i64, i32)],
    pub group_days: &'a [GroupDay],
    /// Seats held for invited fans, upserted by (group, fan). A member stored in the batch
    /// (joined, not left) drops their seat: they sit in the group itself.
    pub invites: &'a [StoredInvite],
    /// Staff tasks the lead worker makes (a merge's other owner, an escalation), inserted as
    /// the journeys' are; ids from [`crate::journeys::JourneyIds::task`].
    pub tasks: &'a [crate::journeys::StoredTask],
    /// The worker's trigger cursor, stored as by `TriggerLog::set_trigger_cursor`.
    pub cursor: Option<(&'a str, i64)>,
    pub now: Millis,
}

/// Which leads to list.
#[derive(Debug, Clone, Default)]
pub struct LeadFilter<'a> {
    pub state: Option<&'a str>,
    pub owner: Option<&'a str>,
    pub team: Option<&'a str>,
    pub fan: Option<i64>,
    /// Only leads not closed (state not `won`, `lost`, `invalid` or `merged`).
    pub open: bool,
    /// Only leads without an owner (the pool).
    pub pooled: bool,
    pub limit: usize,
}

/// The leads capability (see the module docs).
pub trait Leads {
    /// Creates or replaces a team (by name); `last_agent` is kept.
    fn put_team(&self, tenant: TenantId, team: &StoredTeam) -> Result<()>;
    fn teams(&self, tenant: TenantId) -> Result<Vec<StoredTeam>>;

    /// Creates or replaces an agent (by name).
    fn put_agent(&self, tenant: TenantId, agent: &StoredAgent) -> Result<()>;
    fn agents(&self, tenant: TenantId) -> Result<Vec<StoredAgent>>;

    /// Replaces the routing rules with these, in this order (positions 1, 2, …).
    fn put_lead_rules(&self, tenant: TenantId, rules: &[StoredRule]) -> Result<()>;
    fn lead_rules(&self, tenant: TenantId) -> Result<Vec<StoredRule>>;

    fn lead_ids(&self, tenant: TenantId) -> Result<LeadIds>;

    /// Commits a batch (see [`LeadBatch`]) in one fenced transaction.
    fn commit_leads(&self, tenant: TenantId, batch: &LeadBatch<'_>) -> Result<()>;

    /// Leads matching a filter, oldest first.
    fn leads(&self, tenant: TenantId, filter: &LeadFilter<'_>) -> Result<Vec<StoredLead>>;
    fn lead(&self, tenant: TenantId, id: i64) -> Result<Option<StoredLead>>;
    /// The open leads of these fans.
    fn open_leads_of(&self, tenant: TenantId, fans: &[i64]) -> Result<Vec<StoredLead>>;
    /// A lead's arrivals, in time order.
    fn arrivals(&self, tenant: TenantId, lead: i64) -> Result<Vec<StoredArrival>>;
    /// The arrivals of these leads, by lead then time.
    fn arrivals_of(&self, tenant: TenantId, leads: &[i64]) -> Result<Vec<StoredArrival>>;
    /// Whether these event ids are stored as arrivals already.
    fn arrivals_known(&self, tenant: TenantId, event_ids: &[&str]) -> Result<Vec<String>>;
    /// A lead's log, in order.
    fn lead_log(&self, tenant: TenantId, lead: i64) -> Result<Vec<StoredLeadLog>>;
    /// Open leads per owner (the agents' load).
    fn open_per_owner(&self, tenant: TenantId) -> Result<Vec<(String, i64)>>;
    /// Leads given to each agent on a local day.
    fn agent_days(&self, tenant: TenantId, day: i32) -> Result<Vec<AgentDay>>;

    fn groups(&self, tenant: TenantId) -> Result<Vec<StoredGroup>>;
    /// Members of a group (current and past), by join time; with `fans`, only those of them
    /// (what applying a page of group events needs of a group of 100,000).
    fn members(
        &self,
        tenant: TenantId,
        group: i64,
        fans: Option<&[i64]>,
    ) -> Result<Vec<StoredMember>>;
    /// The groups a fan is in now.
    fn groups_of(&self, tenant: TenantId, fan: i64) -> Result<Vec<i64>>;
    /// A group's daily counts from `from_day` on.
    fn group_days(&self, tenant: TenantId, group: i64, from_day: i32) -> Result<Vec<GroupDay>>;
    /// Seats held by invitations made at or after `since`: `(group, seats)`, by group.
    fn invites_held(&self, tenant: TenantId, since: Millis) -> Result<Vec<(i64, i64)>>;
    /// The invitations (any age) of these fans, by group then fan.
    fn invites_of(&self, tenant: TenantId, fans: &[i64]) -> Result<Vec<StoredInvite>>;
}
