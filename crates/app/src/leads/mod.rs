//! Leads to teams as a service: teams, agents and routing rules (each checked whole before
//! anything is stored), and what operators and agents do to a lead — change its state in the
//! allowed order, log a follow-up, claim it from the pool, hand it to an agent. The decisions
//! are `siyu_leads`'s; this module reads the store, asks them, and writes what they decide in
//! one transaction ([`siyu_store::Leads::commit_leads`]). [`worker`] turns lead forms into
//! leads and keeps them owned.

pub mod groups;
pub mod report;
pub mod worker;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

use serde::Serialize;
use serde_json::json;
use siyu_domain::Millis;
use siyu_leads::sla::{self, Escalate};
use siyu_leads::{FollowUp, Hours, LeadError as Refusal, LeadState, Strategy};
use siyu_store::TenantId;
use siyu_store::leads::{
    AgentDay, LeadBatch, LeadFilter, StoredAgent, StoredArrival, StoredLead, StoredLeadLog,
    StoredRule, StoredTeam,
};

use crate::{App, AppError};

/// Why a leads request was refused; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum LeadsError {
    #[error(transparent)]
    App(#[from] AppError),
    #[error("{0}")]
    Invalid(Refusal),
    #[error("no team {0:?} in this tenant")]
    NoTeam(String),
    #[error("no agent {0:?} in this tenant")]
    NoAgent(String),
    #[error("no lead {0} in this tenant")]
    NoLead(i64),
    #[error("no fan group {0:?} in this tenant")]
    NoGroup(String),
}

impl From<siyu_store::StoreError> for LeadsError {
    fn from(e: siyu_store::StoreError) -> Self {
        LeadsError::App(e.into())
    }
}

impl From<Refusal> for LeadsError {
    fn from(e: Refusal) -> Self {
        LeadsError::Invalid(e)
    }
}

impl LeadsError {
    /// A stable machine code for the edge.
    pub fn code(&self) -> &'static str {
        match self {
            LeadsError::App(e) => e.code(),
            LeadsError::Invalid(e) => e.code,
            LeadsError::NoTeam(_) => "team_not_found",
            LeadsError::NoAgent(_) => "agent_not_found",
            LeadsError::NoLead(_) => "lead_not_found",
            LeadsError::NoGroup(_) => "group_not_found",
        }
    }

    /// The request field the error is about.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            LeadsError::Invalid(e) => Some(e.field),
            LeadsError::NoTeam(_) => Some("team"),
            LeadsError::NoAgent(_) => Some("agent"),
            LeadsError::NoGroup(_) => Some("group"),
            _ => None,
        }
    }
}

fn refused(field: &'static str, code: &'static str, message: impl Into<String>) -> LeadsError {
    LeadsError::Invalid(Refusal::new(field, code, message))
}

/// A team or agent name: 1 to 64 letters, digits, `_`, `-` or `.`.
fn check_name(field: &'static str, s: &str) -> Result<(), LeadsError> {
    let n = s.chars().count();
    if (1..=64).contains(&n)
        && s.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        Ok(())
    } else {
        Err(refused(
            field,
            "invalid_name",
            format!("\"{s}\" must be 1 to 64 letters, digits, \"_\", \"-\" or \".\""),
        ))
    }
}

/// A duration field (`2h`, `3d`); the refusal names the field.
fn duration(field: &'static str, s: &str) -> Result<i64, LeadsError> {
    siyu_journey::duration::parse(s).map_err(|m| refused(field, "invalid_duration", m))
}

/// A team as asked for (`siyu team create`, `POST /api/teams`).
#[derive(Debug, Clone, Default)]
pub struct TeamSpec {
    pub name: String,
    pub strategy: Option<String>,
    pub first_contact: Option<String>,
    pub recycle_after: Option<String>,
    pub lead_agent: Option<String>,
    pub escalate: Option<String>,
}

/// An agent as asked for (`siyu agent add`, `POST /api/agents`); `None` keeps what an
/// existing agent has (or the default for a new one).
#[derive(Debug, Clone, Default)]
pub struct AgentSpec {
    pub name: String,
    pub team: Option<String>,
    pub capacity: Option<i64>,
    pub daily_cap: Option<i64>,
    pub hours: Option<String>,
    pub weight: Option<i64>,
    pub active: Option<bool>,
}

/// A team as shown.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TeamView {
    pub name: String,
    pub strategy: &'static str,
    pub first_contact: Option<String>,
    pub recycle_after: Option<String>,
    pub lead_agent: Option<String>,
    pub escalate: &'static str,
    pub agents: Vec<String>,
}

/// An agent as shown, with the load routing sees.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AgentView {
    pub name: String,
    pub team: String,
    pub capacity: Option<i32>,
    pub daily_cap: Option<i32>,
    pub hours: Option<String>,
    pub weight: i32,
    pub active: bool,
    pub open_leads: i64,
    pub today: i64,
}

fn cap(field: &'static str, v: Option<i64>) -> Result<Option<i32>, LeadsError> {
    match v {
        None => Ok(None),
        Some(n) if (0..=1_000_000).contains(&n) => Ok(Some(n as i32)),
        Some(n) => Err(refused(
            field,
            "invalid_capacity",
            format!("{n} is not a capacity; expected 0 to 1000000"),
        )),
    }
}

impl App {
    /// Creates a team or changes one (by name); every field is checked first.
    pub fn put_team(&self, tenant: TenantId, spec: &TeamSpec) -> Result<TeamView, LeadsError> {
        check_name("name", &spec.name)?;
        let strategy = Strategy::parse(spec.strategy.as_deref().unwrap_or("round_robin"))?;
        let first_contact_ms = spec
            .first_contact
            .as_deref()
            .map(|s| duration("first_contact", s))
            .transpose()?;
        let recycle_ms = spec
            .recycle_after
            .as_deref()
            .map(|s| duration("recycle_after", s))
            .transpose()?;
        let escalate = Escalate::parse(spec.escalate.as_deref().unwrap_or("reassign"))?;
        let store = self.store();
        let agents = store.agents(tenant)?;
        if let Some(l) = &spec.lead_agent
            && !agents.iter().any(|a| &a.name == l)
        {
            return Err(LeadsError::NoAgent(l.clone()));
        }
        store.check_writable()?;
        let now = self.now();
        let created_at = store
            .teams(tenant)?
            .into_iter()
            .find(|t| t.name == spec.name)
            .map_or(now, |t| t.created_at);
        let team = StoredTeam {
            name: spec.name.clone(),
            strategy: strategy.as_str().into(),
            first_contact_ms,
            recycle_ms,
            lead_agent: spec.lead_agent.clone(),
            escalate: escalate.as_str().into(),
            last_agent: None,
            created_at,
            updated_at: now,
        };
        store.put_team(tenant, &team)?;
        Ok(team_view(&team, &agents))
    }

    pub fn teams(&self, tenant: TenantId) -> Result<Vec<TeamView>, LeadsError> {
        let agents = self.store().agents(tenant)?;
        Ok(self
            .store()
            .teams(tenant)?
            .iter()
            .map(|t| team_view(t, &agents))
            .collect())
    }

    /// Adds an agent or changes one (by name): a field not given keeps its value. Changing
    /// the team or deactivating an agent hands their open leads back to routing (the lead
    /// worker does it on its next step).
    pub fn put_agent(&self, tenant: TenantId, spec: &AgentSpec) -> Result<AgentView, LeadsError> {
        check_name("name", &spec.name)?;
        let store = self.store();
        let old = store
            .agents(tenant)?
            .into_iter()
            .find(|a| a.name == spec.name);
        let team = match (&spec.team, &old) {
            (Some(t), _) => t.clone(),
            (None, Some(o)) => o.team.clone(),
            (None, None) => {
                return Err(refused(
                    "team",
                    "missing_field",
                    "a new agent needs a team (--team)",
                ));
            }
        };
        if !store.teams(tenant)?.iter().any(|t| t.name == team) {
            return Err(LeadsError::NoTeam(team));
        }
        let capacity = match spec.capacity {
            Some(_) => cap("capacity", spec.capacity)?,
            None => old.as_ref().and_then(|o| o.capacity),
        };
        let daily_cap = match spec.daily_cap {
            Some(_) => cap("daily_cap", spec.daily_cap)?,
            None => old.as_ref().and_then(|o| o.daily_cap),
        };
        let hours = match spec.hours.as_deref() {
            Some("" | "all") => None,
            Some(h) => {
                let h = Hours::parse(h)?;
                Some((i32::from(h.start), i32::from(h.end)))
            }
            None => old.as_ref().and_then(|o| o.hours),
        };
        let weight = match spec.weight {
            Some(w) if (1..=1000).contains(&w) => w as i32,
            Some(w) => {
                return Err(refused(
                    "weight",
                    "invalid_weight",
                    format!("{w} is not a weight; expected 1 to 1000"),
                ));
            }
            None => old.as_ref().map_or(1, |o| o.weight),
        };
        store.check_writable()?;
        let now = self.now();
        let agent = StoredAgent {
            name: spec.name.clone(),
            team,
            capacity,
            daily_cap,
            hours,
            weight,
            active: spec
                .active
                .unwrap_or_else(|| old.as_ref().is_none_or(|o| o.active)),
            created_at: old.as_ref().map_or(now, |o| o.created_at),
            updated_at: now,
        };
        store.put_agent(tenant, &agent)?;
        Ok(self
            .agents(tenant)?
            .into_iter()
            .find(|a| a.name == agent.name)
            .expect("just stored"))
    }

    pub fn agents(&self, tenant: TenantId) -> Result<Vec<AgentView>, LeadsError> {
        let store = self.store();
        let open = store.open_per_owner(tenant)?;
        let today = self.lead_day(tenant)?;
        let days = store.agent_days(tenant, today)?;
        Ok(store
            .agents(tenant)?
            .into_iter()
            .map(|a| AgentView {
                open_leads: open
                    .iter()
                    .find(|(n, _)| *n == a.name)
                    .map_or(0, |(_, c)| *c),
                today: days
                    .iter()
                    .find(|d| d.agent == a.name)
                    .map_or(0, |d| i64::from(d.count)),
                hours: a.hours.map(|(s, e)| {
                    Hours {
                        start: s as u16,
                        end: e as u16,
                    }
                    .to_string()
                }),
                name: a.name,
                team: a.team,
                capacity: a.capacity,
                daily_cap: a.daily_cap,
                weight: a.weight,
                active: a.active,
            })
            .collect())
    }

    /// Appends a routing rule: leads whose fan matches `expr` go to `team` (rules are tried
    /// in order, the first match wins). The expression is checked by the segment language,
    /// and every tag it names must exist.
    pub fn add_route(
        &self,
        tenant: TenantId,
        expr: &str,
        team: &str,
    ) -> Result<Vec<StoredRule>, LeadsError> {
        let parsed = siyu_domain::audience::parse(expr).map_err(|e| {
            refused(
                "if",
                "invalid_expression",
                format!("column {}: {}", e.column, e.message),
            )
        })?;
        let store = self.store();
        if !store.teams(tenant)?.iter().any(|t| t.name == team) {
            return Err(LeadsError::NoTeam(team.to_string()));
        }
        let known: Vec<String> = self.ingestor.read(tenant, |e| {
            e.tags().names().into_iter().map(str::to_string).collect()
        })?;
        let mut named = Vec::new();
        tags_of(&parsed, &mut named);
        for tag in named {
            if !known.contains(&tag) {
                return Err(refused(
                    "if",
                    "unknown_tag",
                    format!("no fan has ever had the tag \"{tag}\""),
                ));
            }
        }
        store.check_writable()?;
        let mut rules = store.lead_rules(tenant)?;
        let id = rules.iter().map(|r| r.id).max().unwrap_or(0) + 1;
        rules.push(StoredRule {
            id,
            position: rules.len() as i32 + 1,
            expr: expr.to_string(),
            team: team.to_string(),
            created_at: self.now(),
        });
        store.put_lead_rules(tenant, &rules)?;
        Ok(store.lead_rules(tenant)?)
    }

    /// Removes a routing rule by id.
    pub fn remove_route(&self, tenant: TenantId, id: i64) -> Result<Vec<StoredRule>, LeadsError> {
        let store = self.store();
        let mut rules = store.lead_rules(tenant)?;
        let before = rules.len();
        rules.retain(|r| r.id != id);
        if rules.len() == before {
            return Err(refused("id", "rule_not_found", format!("no rule {id}")));
        }
        store.check_writable()?;
        store.put_lead_rules(tenant, &rules)?;
        Ok(store.lead_rules(tenant)?)
    }

    /// Leads matching a filter.
    pub fn leads(
        &self,
        tenant: TenantId,
        filter: &LeadFilter<'_>,
    ) -> Result<Vec<StoredLead>, LeadsError> {
        if let Some(s) = filter.state {
            LeadState::parse(s)?;
        }
        Ok(self.store().leads(tenant, filter)?)
    }

    /// Leads as `siyu lead list` and `GET /api/leads` show them, each with its arrivals (read
    /// for the whole page at once).
    pub fn leads_json(
        &self,
        tenant: TenantId,
        filter: &LeadFilter<'_>,
    ) -> Result<Vec<serde_json::Value>, LeadsError> {
        let leads = self.leads(tenant, filter)?;
        let ids: Vec<i64> = leads.iter().map(|l| l.id).collect();
        let mut arrivals: HashMap<i64, Vec<StoredArrival>> = HashMap::new();
        for a in self.store().arrivals_of(tenant, &ids)? {
            arrivals.entry(a.lead).or_default().push(a);
        }
        Ok(leads
            .iter()
            .map(|l| lead_json(l, arrivals.get(&l.id).map_or(&[], Vec::as_slice)))
            .collect())
    }

    /// One lead as [`App::leads_json`] shows it.
    pub fn lead_json(
        &self,
        tenant: TenantId,
        lead: &StoredLead,
    ) -> Result<serde_json::Value, LeadsError> {
        Ok(lead_json(lead, &self.store().arrivals(tenant, lead.id)?))
    }

    /// Moves a lead to a state, in the allowed order.
    pub fn set_lead_state(
        &self,
        tenant: TenantId,
        id: i64,
        to: &str,
        agent: Option<&str>,
    ) -> Result<StoredLead, LeadsError> {
        let _held = write_lock();
        let to = LeadState::parse(to)?;
        let mut lead = self.lead_or_404(tenant, id)?;
        let from = LeadState::parse(&lead.state)?;
        from.change_to(to)?;
        let now = self.now();
        lead.state = to.as_str().into();
        lead.updated_at = now;
        if !to.is_open() {
            lead.closed_at = Some(now);
        }
        if to == LeadState::Contacted && lead.first_contact_at.is_none() {
            lead.first_contact_at = Some(now);
        }
        let line = self.log_line(
            tenant,
            id,
            "state",
            agent,
            Some(to.as_str()),
            Some(json!({"from": from.as_str()}).to_string()),
        )?;
        self.commit_one(tenant, &lead, &[line], &[])?;
        Ok(lead)
    }

    /// Logs a follow-up; a call, message or visit is the first contact if none was made, and
    /// moves a `new` lead to `contacted`.
    pub fn log_follow_up(
        &self,
        tenant: TenantId,
        id: i64,
        kind: &str,
        result: Option<&str>,
        agent: Option<&str>,
    ) -> Result<StoredLead, LeadsError> {
        let _held = write_lock();
        let kind = FollowUp::parse(kind)?;
        if let Some(a) = agent {
            self.agent_or_404(tenant, a)?;
        }
        let mut lead = self.lead_or_404(tenant, id)?;
        let state = LeadState::parse(&lead.state)?;
        if !state.is_open() {
            return Err(refused(
                "id",
                "lead_closed",
                format!(
                    "lead {id} is {}: follow-ups are for open leads",
                    state.as_str()
                ),
            ));
        }
        let now = self.now();
        lead.last_follow_up_at = Some(now);
        lead.updated_at = now;
        let mut lines = vec![self.log_line(tenant, id, kind.as_str(), agent, result, None)?];
        if kind.contacts() {
            lead.first_contact_at.get_or_insert(now);
            if state == LeadState::New {
                lead.state = LeadState::Contacted.as_str().into();
                let mut l = lines[0].clone();
                l.kind = "state".into();
                l.result = Some("contacted".into());
                l.detail = Some(json!({"from": "new"}).to_string());
                lines.push(l);
            }
        }
        self.commit_one(tenant, &lead, &lines, &[])?;
        Ok(lead)
    }

    /// Gives a lead to an agent (an operator's choice, or an agent claiming from the pool with
    /// `claim`): the agent must be active; a claim must also be within their daily cap.
    pub fn assign_lead(
        &self,
        tenant: TenantId,
        id: i64,
        agent: &str,
        claim: bool,
    ) -> Result<StoredLead, LeadsError> {
        let _held = write_lock();
        let a = self.agent_or_404(tenant, agent)?;
        if !a.active {
            return Err(refused(
                "agent",
                "agent_inactive",
                format!("agent \"{agent}\" is inactive"),
            ));
        }
        let mut lead = self.lead_or_404(tenant, id)?;
        if !LeadState::parse(&lead.state)?.is_open() {
            return Err(refused(
                "id",
                "lead_closed",
                format!("lead {id} is {}", lead.state),
            ));
        }
        if claim && lead.owner.is_some() {
            return Err(refused(
                "id",
                "lead_owned",
                format!(
                    "lead {id} is not in the pool: it belongs to {:?}",
                    lead.owner
                ),
            ));
        }
        let day = self.lead_day(tenant)?;
        let today = self
            .store()
            .agent_days(tenant, day)?
            .into_iter()
            .find(|d| d.agent == agent)
            .map_or(0, |d| d.count);
        if claim && a.daily_cap.is_some_and(|c| today >= c) {
            return Err(refused(
                "agent",
                "daily_cap",
                format!("agent \"{agent}\" has had {today} leads today, their daily cap"),
            ));
        }
        let team = self
            .store()
            .teams(tenant)?
            .into_iter()
            .find(|t| t.name == a.team);
        let now = self.now();
        let from = lead.owner.replace(agent.to_string());
        lead.team = Some(a.team.clone());
        lead.assigned_at = Some(now);
        lead.first_contact_due = if lead.first_contact_at.is_none() {
            sla::first_contact_due(now, team.and_then(|t| t.first_contact_ms))
        } else {
            lead.first_contact_due
        };
        lead.escalated_at = None;
        lead.updated_at = now;
        let line = self.log_line(
            tenant,
            id,
            if claim { "claimed" } else { "assigned" },
            Some(agent),
            None,
            Some(json!({"from": from}).to_string()),
        )?;
        self.commit_one(
            tenant,
            &lead,
            &[line],
            &[AgentDay {
                agent: agent.to_string(),
                day,
                count: 1,
            }],
        )?;
        Ok(lead)
    }

    /// A lead with its arrivals and log, as `siyu lead show` prints it.
    pub fn lead_detail(&self, tenant: TenantId, id: i64) -> Result<serde_json::Value, LeadsError> {
        let lead = self.lead_or_404(tenant, id)?;
        let arrivals = self.store().arrivals(tenant, id)?;
        let log = self.store().lead_log(tenant, id)?;
        Ok(json!({
            "lead": lead_json(&lead, &arrivals),
            "log": log.iter().map(|l| json!({
                "at": siyu_domain::time::format_rfc3339(l.at), "kind": l.kind, "agent": l.agent,
                "result": l.result,
                "detail": l.detail.as_deref().and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok()),
            })).collect::<Vec<_>>(),
        }))
    }

    fn lead_or_404(&self, tenant: TenantId, id: i64) -> Result<StoredLead, LeadsError> {
        self.store().lead(tenant, id)?.ok_or(LeadsError::NoLead(id))
    }

    fn agent_or_404(&self, tenant: TenantId, name: &str) -> Result<StoredAgent, LeadsError> {
        self.store()
            .agents(tenant)?
            .into_iter()
            .find(|a| a.name == name)
            .ok_or_else(|| LeadsError::NoAgent(name.to_string()))
    }

    /// A log line; its id is given by [`Self::commit_one`].
    fn log_line(
        &self,
        _tenant: TenantId,
        lead: i64,
        kind: &str,
        agent: Option<&str>,
        result: Option<&str>,
        detail: Option<String>,
    ) -> Result<StoredLeadLog, LeadsError> {
        Ok(StoredLeadLog {
            id: 0,
            lead,
            at: self.now(),
            kind: kind.to_string(),
            agent: agent.map(str::to_string),
            result: result.map(str::to_string),
            detail,
        })
    }

    /// Commits one lead's change with its log lines, numbered from the store's highest id.
    /// The caller holds [`write_lock`] from reading the lead on, so neither the ids nor the
    /// lead itself can change under it (the worker's step holds it too).
    fn commit_one(
        &self,
        tenant: TenantId,
        lead: &StoredLead,
        log: &[StoredLeadLog],
        days: &[AgentDay],
    ) -> Result<(), LeadsError> {
        self.store().check_writable()?;
        let mut next = self.store().lead_ids(tenant)?.log;
        let log: Vec<StoredLeadLog> = log
            .iter()
            .map(|l| {
                next += 1;
                StoredLeadLog {
                    id: next,
                    ..l.clone()
                }
            })
            .collect();
        self.store().commit_leads(
            tenant,
            &LeadBatch {
                updated_leads: std::slice::from_ref(lead),
                log: &log,
                agent_days: days,
                now: self.now(),
                ..LeadBatch::default()
            },
        )?;
        CHANGES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        crate::journeys::worker::bell().ring();
        Ok(())
    }

    /// Today in the tenant's time zone (the journeys' policy's), as days since 1970-01-01.
    pub fn lead_day(&self, tenant: TenantId) -> Result<i32, LeadsError> {
        let tz = self.lead_tz(tenant)?;
        Ok(siyu_journey::policy::local_day(&tz, self.now()))
    }

    pub(crate) fn lead_tz(&self, tenant: TenantId) -> Result<jiff::tz::TimeZone, LeadsError> {
        Ok(self.tenant_tz(tenant)?)
    }

    /// The local minute of the day at `at` in the tenant's time zone.
    pub fn lead_minute(&self, tenant: TenantId, at: Millis) -> Result<u16, LeadsError> {
        let tz = self.lead_tz(tenant)?;
        Ok(minute_of_day(&tz, at))
    }
}

/// Held from reading the highest ids to committing what used them, by the lead worker's step,
/// by every change made here and by the journey worker's commits that hold tasks (the lead
/// worker makes tasks too, in the same inbox): the ids of one process's writes never collide. (Several
/// nodes never write one tenant: its lease names one owner.)
pub fn write_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counts the changes made to leads outside the worker (an operator's assignment, a
/// follow-up): the worker checks every open lead's service level again when it moved.
pub(crate) static CHANGES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl App {
    /// Journeys' `assign_lead` steps, delivered by the outbox's [`LEADS`] lane: each row
    /// (`payload`: `fan`, `team`) makes the fan a lead of that team, routed at once — or, for a
    /// fan with an open lead, an arrival on it (channel `journey`), the owner kept. The row's
    /// key is the arrival's id, so a row delivered twice changes nothing.
    pub fn leads_from_journeys(
        &self,
        tenant: TenantId,
        rows: &[(String, i64, String)],
    ) -> Result<(), LeadsError> {
        let store = self.store();
        let _held = write_lock();
        let now = self.now();
        let tz = self.lead_tz(tenant)?;
        let day = siyu_journey::policy::local_day(&tz, now);
        let minute = minute_of_day(&tz, now);
        let teams = store.teams(tenant)?;
        let mut router = worker::router_of(
            &teams,
            &store.agents(tenant)?,
            &store.open_per_owner(tenant)?,
            &store.agent_days(tenant, day)?,
        );
        let keys: Vec<&str> = rows.iter().map(|(k, _, _)| k.as_str()).collect();
        let known = store.arrivals_known(tenant, &keys)?;
        let groups: Vec<(i64, Vec<i64>)> = self.ingestor.read(tenant, |e| {
            rows.iter()
                .map(|(_, fan, _)| {
                    let cur = e
                        .identities()
                        .current(siyu_engine::FanId(*fan))
                        .unwrap_or(siyu_engine::FanId(*fan));
                    (
                        cur.0,
                        e.identities()
                            .ids_of(cur)
                            .into_iter()
                            .map(|f| f.0)
                            .collect(),
                    )
                })
                .collect()
        })?;
        let all: Vec<i64> = groups.iter().flat_map(|(_, ids)| ids.clone()).collect();
        let mut open: std::collections::HashMap<i64, StoredLead> = std::collections::HashMap::new();
        for l in store.open_leads_of(tenant, &all)? {
            if let Some((cur, _)) = groups.iter().find(|(_, ids)| ids.contains(&l.fan))
                && open.get(cur).is_none_or(|o| l.id < o.id)
            {
                open.insert(*cur, l);
            }
        }
        let ids = store.lead_ids(tenant)?;
        let mut b = worker::Batch {
            next_lead: ids.lead,
            next_log: ids.log,
            ..worker::Batch::default()
        };
        let mut report = worker::LeadReport::default();
        for ((key, _, team), (cur, _)) in rows.iter().zip(&groups) {
            if known.iter().any(|k| k == key) || b.arrivals.iter().any(|a| &a.event_id == key) {
                continue;
            }
            let arrival = |lead: i64, repeat: bool| siyu_store::leads::StoredArrival {
                lead,
                event_id: key.clone(),
                channel: "journey".into(),
                ts: now,
                repeat,
            };
            if let Some(l) = open.get(cur) {
                b.arrivals.push(arrival(l.id, true));
                b.log(
                    l.id,
                    now,
                    "repeat",
                    l.owner.as_deref(),
                    json!({"channel": "journey", "event_id": key}),
                );
                continue;
            }
            b.next_lead += 1;
            let mut lead = StoredLead {
                id: b.next_lead,
                fan: *cur,
                state: LeadState::New.as_str().into(),
                team: teams.iter().any(|t| &t.name == team).then(|| team.clone()),
                created_at: now,
                channel: "journey".into(),
                updated_at: now,
                ..StoredLead::default()
            };
            b.arrivals.push(arrival(lead.id, false));
            if lead.team.is_none() {
                b.log(
                    lead.id,
                    now,
                    "pooled",
                    None,
                    json!({"why": "unknown_team", "team": team}),
                );
            } else {
                worker::assign(
                    &mut b,
                    &mut router,
                    &teams,
                    &mut lead,
                    minute,
                    now,
                    true,
                    &mut report,
                );
            }
            open.insert(*cur, lead.clone());
            b.new.push(lead);
        }
        let days: Vec<AgentDay> = b
            .days
            .into_iter()
            .map(|(agent, count)| AgentDay { agent, day, count })
            .collect();
        store.check_writable()?;
        store.commit_leads(
            tenant,
            &LeadBatch {
                new_leads: &b.new,
                arrivals: &b.arrivals,
                log: &b.log,
                agent_days: &days,
                now,
                ..LeadBatch::default()
            },
        )?;
        CHANGES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

/// The internal outbox lane journeys' `assign_lead` steps go through.
pub const LEADS: &str = "siyu.leads";

/// The local minute of the day (`0..1440`) of an instant.
pub fn minute_of_day(tz: &jiff::tz::TimeZone, at: Millis) -> u16 {
    let t = jiff::Timestamp::from_millisecond(at).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let dt = tz.to_datetime(t);
    (dt.hour() as u16) * 60 + dt.minute() as u16
}

/// The tags an expression names.
fn tags_of(e: &siyu_domain::audience::Expr, out: &mut Vec<String>) {
    use siyu_domain::audience::{Expr, Pred};
    match e {
        Expr::And(v) | Expr::Or(v) => v.iter().for_each(|x| tags_of(x, out)),
        Expr::Not(x) => tags_of(x, out),
        Expr::Pred(Pred::Tag(t)) => out.push(t.clone()),
        Expr::Pred(_) => {}
    }
}

fn team_view(t: &StoredTeam, agents: &[StoredAgent]) -> TeamView {
    TeamView {
        name: t.name.clone(),
        strategy: Strategy::parse(&t.strategy).unwrap_or_default().as_str(),
        first_contact: t.first_contact_ms.map(siyu_journey::duration::format),
        recycle_after: t.recycle_ms.map(siyu_journey::duration::format),
        lead_agent: t.lead_agent.clone(),
        escalate: Escalate::parse(&t.escalate).unwrap_or_default().as_str(),
        agents: agents
            .iter()
            .filter(|a| a.team == t.name)
            .map(|a| a.name.clone())
            .collect(),
    }
}

/// A lead as `siyu lead list --json` and `/api/leads` show it: the fields other programs
/// depend on (`id`, `fan_id`, `state`, `owner`, `arrivals`) and the rest.
pub fn lead_json(
    l: &StoredLead,
    arrivals: &[siyu_store::leads::StoredArrival],
) -> serde_json::Value {
    let t = |m: Option<Millis>| m.map(siyu_domain::time::format_rfc3339);
    json!({
        "id": l.id, "fan_id": l.fan, "state": l.state, "owner": l.owner, "team": l.team,
        "channel": l.channel, "province": l.province, "city": l.city,
        "clue_state": l.clue_state, "intention": l.intention,
        "created_at": siyu_domain::time::format_rfc3339(l.created_at),
        "assigned_at": t(l.assigned_at), "first_contact_due": t(l.first_contact_due),
        "first_contact_at": t(l.first_contact_at), "last_follow_up_at": t(l.last_follow_up_at),
        "closed_at": t(l.closed_at),
        "arrivals": arrivals.iter().map(|a| json!({
            "channel": a.channel, "ts": siyu_domain::time::format_rfc3339(a.ts),
            "event_id": a.event_id, "repeat": a.repeat,
        })).collect::<Vec<_>>(),
    })
}
