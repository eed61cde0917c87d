//! The lead worker: follows each served tenant's trigger stream (consumer [`CONSUMER`]) and
//! turns lead forms into leads with one owner each.
//!
//! One [`LeadWorker::step`] per tenant:
//! 1. reads a page of event triggers after its cursor and keeps the `lead_form`s;
//! 2. for each, under the engine's read lock: the fan as it is now (every id merged into it)
//!    and whether the fan already has an open lead. If so the form is a **repeat**: an
//!    arrival on that lead, logged, the owner kept — no second follow-up. If not, a new lead,
//!    routed by the ordered rules (the first whose expression matches the fan; with no rule
//!    matching and one team, that team) and given to an agent by the team's strategy, or left
//!    in the team's pool with the reasons every agent was passed over;
//! 3. hands open leads back to routing when their owner was deactivated or moved to another
//!    team, assigns pooled leads to whoever can take them now (oldest first), and applies the
//!    service levels: an overdue first contact escalates once, a lead nobody followed up for
//!    the team's recycle period goes back to the pool (回收). While catching up (the page
//!    was full: more triggers behind it) this waits for the last page, or for the full pass
//!    due every minute, so a backlog of N pages costs N reads of its forms, not N reads of
//!    every open lead;
//! 4. commits everything — leads, arrivals, log lines, day counts, round-robin pointers and
//!    the cursor — in **one transaction** ([`siyu_store::Leads::commit_leads`]).
//!
//! A crash before the commit loses the whole step, taken again from the same cursor; an
//! arrival's event id is unique, so nothing is counted twice.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::json;
use siyu_domain::Millis;
use siyu_domain::trigger::{TriggerType, TypeSet, What};
use siyu_leads::route::{Agent, Assigned, Team};
use siyu_leads::sla::{self, Due, Escalate};
use siyu_leads::{Hours, LeadState, Router, Strategy};
use siyu_store::TenantId;
use siyu_store::journeys::StoredTask;
use siyu_store::leads::{
    AgentDay, LeadBatch, LeadFilter, StoredAgent, StoredArrival, StoredLead, StoredLeadLog,
    StoredTeam,
};

use super::groups::{self, GroupEvent};
use super::{LeadsError, minute_of_day};
use crate::App;
use crate::triggers::{Read, Start};

/// The worker's cursor on the trigger stream.
pub const CONSUMER: &str = "leads";
/// Triggers taken per step.
pub const PAGE: usize = 2000;

/// The events that change fan groups (see [`groups`]).
const GROUP_EVENTS: [&str; 3] = ["group_join", "group_leave", "group_message"];

/// What a step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeadReport {
    pub new_leads: usize,
    pub repeats: usize,
    pub assigned: usize,
    pub pooled: usize,
    pub escalated: usize,
    pub recycled: usize,
    /// A full page: call again at once.
    pub more: bool,
    /// When the worker should look again without a trigger (a deadline, someone's hours).
    pub next_wake: Option<Millis>,
}

/// The lead worker (see the module docs).
pub struct LeadWorker {
    app: Arc<App>,
    pub page: usize,
    memo: HashMap<TenantId, Memo>,
}

/// What the worker remembers of a tenant between steps, so that a step reads every open lead
/// only when something may be due: the first step, a changed agent, or a service-level
/// deadline reached. Otherwise it reads only the pool.
#[derive(Default)]
struct Memo {
    checked: bool,
    agents: Vec<StoredAgent>,
    /// The earliest deadline (first contact, recycling) of any owned lead.
    next_check: Option<Millis>,
    /// [`super::CHANGES`] when it was last read.
    changes: u64,
    /// When every open lead was last read.
    last_full: Millis,
}

/// Every open lead is read at least this often, so fans merged (or a merge undone) since have
/// their leads settled within a minute.
const FULL_EVERY: Millis = 60_000;

/// A step's writes, gathered.
#[derive(Default)]
pub(super) struct Batch {
    pub(super) new: Vec<StoredLead>,
    pub(super) updated: HashMap<i64, StoredLead>,
    pub(super) arrivals: Vec<StoredArrival>,
    pub(super) log: Vec<StoredLeadLog>,
    pub(super) days: HashMap<String, i32>,
    pub(super) next_lead: i64,
    pub(super) next_log: i64,
    /// Staff tasks for people a change concerns (a merge's other owner, an escalation's
    /// team lead), numbered after the journeys' tasks (one inbox, one id space).
    pub(super) tasks: Vec<StoredTask>,
    pub(super) next_task: i64,
}

impl Batch {
    pub(super) fn log(
        &mut self,
        lead: i64,
        at: Millis,
        kind: &str,
        agent: Option<&str>,
        detail: serde_json::Value,
    ) {
        self.next_log += 1;
        self.log.push(StoredLeadLog {
            id: self.next_log,
            lead,
            at,
            kind: kind.into(),
            agent: agent.map(str::to_string),
            result: None,
            detail: (!detail.is_null()).then(|| detail.to_string()),
        });
    }

    /// A task for `agent` of `team` about a lead, in their inbox as claimed by them (it is
    /// theirs, not the team's to take); its id.
    pub(super) fn task(
        &mut self,
        lead: &StoredLead,
        team: &str,
        agent: &str,
        text: String,
        at: Millis,
        due_at: Option<Millis>,
    ) -> i64 {
        self.next_task += 1;
        self.tasks.push(StoredTask {
            id: self.next_task,
            team: team.to_string(),
            text,
            fan: Some(lead.fan),
            run: None,
            step: None,
            state: siyu_journey::run::TaskState::Claimed.as_i16(),
            agent: Some(agent.to_string()),
            outcome: None,
            created_at: at,
            due_at,
            updated_at: at,
        });
        self.next_task
    }
}

/// A form's fan as it is now, every id merged into it, and the team its route names.
type FormFan = (i64, Vec<i64>, Option<String>);

/// The channel of a lead made from a phone given in a private message.
pub const IM_PHONE: &str = "im_phone";

fn is_form(e: &siyu_domain::Event) -> bool {
    e.ty == siyu_domain::EventType::Catalogue(siyu_domain::event_type::CatalogueType::LeadForm)
}

/// Whether a private message carries a phone identity.
fn gives_phone(e: &siyu_domain::Event) -> bool {
    e.ty == siyu_domain::EventType::Catalogue(
        siyu_domain::event_type::CatalogueType::PrivateMessageIn,
    ) && e
        .identities
        .iter()
        .any(|i| i.kind == siyu_domain::IdentityKind::Phone)
}

/// Every id merged into a form's fan.
fn fan_ids(fans: &[Option<FormFan>], cur: i64) -> &[i64] {
    fans.iter()
        .flatten()
        .find(|(c, _, _)| *c == cur)
        .map_or(&[][..], |(_, ids, _)| ids.as_slice())
}

/// Whether any of these fans ever had a lead.
fn had_lead(
    store: &dyn siyu_store::Store,
    tenant: TenantId,
    ids: &[i64],
) -> Result<bool, LeadsError> {
    for f in ids {
        let any = store.leads(
            tenant,
            &LeadFilter {
                fan: Some(*f),
                limit: 1,
                ..LeadFilter::default()
            },
        )?;
        if !any.is_empty() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The channel a lead form came through: its `props.channel`, else the event's source, else
/// `form` (the same rule as the dedup report's).
fn channel_of(e: &siyu_domain::Event) -> String {
    e.props
        .get("channel")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .or_else(|| e.source.clone())
        .unwrap_or_else(|| "form".into())
}

fn prop(e: &siyu_domain::Event, k: &str) -> Option<String> {
    e.props.get(k).and_then(|v| match v {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

pub(super) fn router_of(
    teams: &[StoredTeam],
    agents: &[StoredAgent],
    open: &[(String, i64)],
    days: &[AgentDay],
) -> Router {
    let mut r = Router::default();
    for t in teams {
        let members = agents
            .iter()
            .filter(|a| a.team == t.name)
            .map(|a| Agent {
                name: a.name.clone(),
                active: a.active,
                capacity: a.capacity,
                daily_cap: a.daily_cap,
                hours: a.hours.map(|(s, e)| Hours {
                    start: s as u16,
                    end: e as u16,
                }),
                weight: a.weight,
                open: open
                    .iter()
                    .find(|(n, _)| *n == a.name)
                    .map_or(0, |(_, c)| *c),
                today: days
                    .iter()
                    .find(|d| d.agent == a.name)
                    .map_or(0, |d| i64::from(d.count)),
            })
            .collect();
        let mut team = Team::new(
            &t.name,
            Strategy::parse(&t.strategy).unwrap_or_default(),
            members,
        );
        team.last = t.last_agent.clone();
        r.add(team);
    }
    r
}

impl LeadWorker {
    pub fn new(app: Arc<App>) -> LeadWorker {
        LeadWorker {
            app,
            page: PAGE,
            memo: HashMap::new(),
        }
    }

    /// One step for every tenant this node serves.
    pub fn step(&mut self, now: Millis) -> Result<LeadReport, LeadsError> {
        let mut total = LeadReport::default();
        for tenant in self.app.ingestor.served() {
            let r = self.step_tenant(tenant, now)?;
            total.new_leads += r.new_leads;
            total.repeats += r.repeats;
            total.assigned += r.assigned;
            total.pooled += r.pooled;
            total.escalated += r.escalated;
            total.recycled += r.recycled;
            total.more |= r.more;
            total.next_wake = match (total.next_wake, r.next_wake) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        Ok(total)
    }

    /// Steps until `stop` receives: at once while there is more, else until the next
    /// trigger (the journeys' bell, rung when events are committed) or the earliest wake
    /// (at most a second, so a missed bell costs at most that).
    pub fn run_until_stopped(mut self, stop: std::sync::mpsc::Receiver<()>) {
        use std::time::Duration;
        let bell = crate::journeys::worker::bell();
        let clock = self.app.ingestor.clock().clone();
        loop {
            if !matches!(stop.try_recv(), Err(std::sync::mpsc::TryRecvError::Empty)) {
                return;
            }
            let seen = bell.seen();
            let now = clock.now();
            let report = match self.step(now) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, code = e.code(), "lead step failed");
                    bell.wait(seen, Duration::from_secs(1));
                    continue;
                }
            };
            if report.more {
                continue;
            }
            let wait = report
                .next_wake
                .map_or(1000, |w| (w - clock.now()).clamp(0, 1000));
            if wait > 0 {
                bell.wait(seen, Duration::from_millis(wait as u64));
            }
        }
    }

    /// One step for one tenant (see the module docs).
    pub fn step_tenant(&mut self, tenant: TenantId, now: Millis) -> Result<LeadReport, LeadsError> {
        let app = self.app.clone();
        let store = app.store().clone();
        let teams = store.teams(tenant)?;
        let mut report = LeadReport::default();
        let cursor = store
            .trigger_cursor(tenant, CONSUMER)?
            .map_or(0, |c| c.after);
        let page = app
            .triggers(
                tenant,
                &Read {
                    from: Start::After(cursor),
                    types: TypeSet::of([TriggerType::Event]),
                    fan: None,
                    limit: self.page,
                },
            )
            .map_err(|e| match e {
                crate::triggers::TriggerError::App(a) => LeadsError::App(a),
                other => LeadsError::App(crate::AppError::Store(siyu_store::StoreError::Corrupt(
                    other.to_string(),
                ))),
            })?;
        report.more = page.triggers.len() >= self.page;
        let forms: Vec<(i64, String)> = page
            .triggers
            .iter()
            .filter_map(|t| match &t.what {
                What::Event {
                    seq, event_type, ..
                } if event_type == "lead_form" || event_type == "private_message_in" => {
                    Some((*seq, String::new()))
                }
                _ => None,
            })
            .collect();
        // Group events, with the fan each concerns as it is now.
        let group_triggers: Vec<(i64, i64, &str)> = page
            .triggers
            .iter()
            .filter_map(|t| match &t.what {
                What::Event {
                    seq, event_type, ..
                } if GROUP_EVENTS.contains(&event_type.as_str()) => {
                    Some((*seq, t.fan?, event_type.as_str()))
                }
                _ => None,
            })
            .collect();
        let agents = store.agents(tenant)?;
        let tz = app.lead_tz(tenant)?;
        let day = siyu_journey::policy::local_day(&tz, now);
        let minute = minute_of_day(&tz, now);
        let mut router = router_of(
            &teams,
            &agents,
            &store.open_per_owner(tenant)?,
            &store.agent_days(tenant, day)?,
        );
        let rules = store.lead_rules(tenant)?;
        let parsed: Vec<(siyu_domain::audience::Expr, String)> = rules
            .iter()
            .filter_map(|r| Some((siyu_domain::audience::parse(&r.expr).ok()?, r.team.clone())))
            .collect();
        // From reading the ids to committing what used them (see `write_lock`).
        let _held = super::write_lock();
        let ids = store.lead_ids(tenant)?;
        let seqs: Vec<i64> = group_triggers.iter().map(|(seq, _, _)| *seq).collect();
        let stored = store.events_at(tenant, &seqs)?;
        let mut group_events = Vec::with_capacity(group_triggers.len());
        for ev in &stored {
            if let Some((_, fan, ty)) = group_triggers.iter().find(|(s, _, _)| *s == ev.seq)
                && let Some(g) = prop(&ev.event, "group_id").or_else(|| prop(&ev.event, "group"))
            {
                group_events.push((*fan, *ty, g, ev.event.ts));
            }
        }
        let group_events: Vec<GroupEvent<'_>> = group_events
            .iter()
            .map(|(fan, ty, g, at)| GroupEvent {
                fan: *fan,
                ty,
                group: g,
                at: *at,
            })
            .collect();
        let mut next_group = ids.group;
        let gc = groups::apply(&*store, tenant, &group_events, &mut next_group, &tz, now)?;
        let mut b = Batch {
            next_lead: ids.lead,
            next_log: ids.log,
            next_task: store.journey_ids(tenant)?.task,
            ..Batch::default()
        };
        // The forms' events, and which are stored arrivals already (a page taken again).
        let seqs: Vec<i64> = forms.iter().map(|(seq, _)| *seq).collect();
        // Lead forms, and private messages that carry a phone (a phone given in a chat).
        let events: Vec<siyu_domain::Event> = store
            .events_at(tenant, &seqs)?
            .into_iter()
            .map(|e| e.event)
            .filter(|e| is_form(e) || gives_phone(e))
            .collect();
        let id_strs: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
        let known = store.arrivals_known(tenant, &id_strs)?;
        // Each form's fan as it is now, with every id merged into it, and its route.
        let fans: Vec<Option<FormFan>> = app.ingestor.read(tenant, |e| {
            events
                .iter()
                .map(|ev| {
                    let node = ev.identities.iter().find_map(|id| {
                        e.identities()
                            .lookup(id.kind, id.value())
                            .into_iter()
                            .next()
                    })?;
                    let cur = e.identities().current(node)?;
                    let ids: Vec<i64> = e
                        .identities()
                        .ids_of(cur)
                        .into_iter()
                        .map(|f| f.0)
                        .collect();
                    let team = parsed
                        .iter()
                        .find(|(x, _)| e.matches(cur, x, &[]))
                        .map(|(_, t)| t.clone())
                        .or_else(|| (teams.len() == 1).then(|| teams[0].name.clone()));
                    Some((cur.0, ids, team))
                })
                .collect()
        })?;
        let all_ids: Vec<i64> = fans
            .iter()
            .flatten()
            .flat_map(|(_, ids, _)| ids.clone())
            .collect();
        // Open leads by the fan they belong to now.
        let mut open: HashMap<i64, StoredLead> = HashMap::new();
        for l in store.open_leads_of(tenant, &all_ids)? {
            if let Some((cur, _, _)) = fans
                .iter()
                .flatten()
                .find(|(_, ids, _)| ids.contains(&l.fan))
            {
                // The older one stands for the fan (a merge's two leads are settled apart).
                let keep = open.get(cur).is_none_or(|o| l.id < o.id);
                if keep {
                    open.insert(*cur, l);
                }
            }
        }
        let mut waiting: std::collections::HashSet<String> = std::collections::HashSet::new();
        for (ev, fan) in events.iter().zip(&fans) {
            let Some((cur, _, team)) = fan else { continue };
            if known.iter().any(|k| k == ev.id.as_str()) {
                continue;
            }
            let in_chat = !is_form(ev);
            let channel = if in_chat {
                IM_PHONE.to_string()
            } else {
                channel_of(ev)
            };
            // A phone in a chat is a lead the first time only: a person with a lead, open or
            // closed, already gave it.
            if in_chat
                && (open.contains_key(cur) || had_lead(&*store, tenant, fan_ids(&fans, *cur))?)
            {
                continue;
            }
            if let Some(lead) = open.get(cur) {
                let lead_id = lead.id;
                b.arrivals.push(StoredArrival {
                    lead: lead_id,
                    event_id: ev.id.as_str().to_string(),
                    channel: channel.clone(),
                    ts: ev.ts,
                    repeat: true,
                });
                b.log(
                    lead_id,
                    now,
                    "repeat",
                    lead.owner.as_deref(),
                    json!({"channel": channel, "event_id": ev.id.as_str()}),
                );
                report.repeats += 1;
                continue;
            }
            b.next_lead += 1;
            let mut lead = StoredLead {
                id: b.next_lead,
                fan: *cur,
                state: LeadState::New.as_str().into(),
                team: team.clone(),
                owner: None,
                created_at: ev.ts.min(now),
                channel: channel.clone(),
                province: prop(ev, "province"),
                city: prop(ev, "city"),
                clue_state: prop(ev, "clue_state"),
                intention: prop(ev, "intention").or_else(|| prop(ev, "intention_level")),
                updated_at: now,
                ..StoredLead::default()
            };
            b.arrivals.push(StoredArrival {
                lead: lead.id,
                event_id: ev.id.as_str().to_string(),
                channel,
                ts: ev.ts,
                repeat: false,
            });
            report.new_leads += 1;
            if !assign(
                &mut b,
                &mut router,
                &teams,
                &mut lead,
                minute,
                now,
                true,
                &mut report,
            ) {
                waiting.extend(lead.team.clone());
            }
            open.insert(*cur, lead.clone());
            b.new.push(lead);
        }
        // Leads whose owner can no longer hold them, the pool, and the service levels.
        let changes = super::CHANGES.load(std::sync::atomic::Ordering::SeqCst);
        let full = self.memo.get(&tenant).is_none_or(|m| {
            !m.checked
                || m.agents != agents
                || m.changes != changes
                || m.next_check.is_some_and(|t| t <= now)
                || now - m.last_full >= FULL_EVERY
        });
        // Catching up (a full page, more behind it), the standing leads wait for the last
        // page or the minute's full pass: read on every page, a catch-up over a big import
        // (15,000 pages for 30M events) read every open lead once a page.
        // Between full passes only the pools of the teams there are: a lead of no team (or
        // of a team since removed) has nobody to go to, and a tenant without teams may have
        // 100,000 of them, read every second.
        let mut standing = if report.more && !full {
            Vec::new()
        } else if full {
            store.leads(
                tenant,
                &LeadFilter {
                    open: true,
                    limit: usize::MAX >> 1,
                    ..LeadFilter::default()
                },
            )?
        } else {
            let mut pooled = Vec::new();
            for t in &teams {
                pooled.extend(store.leads(
                    tenant,
                    &LeadFilter {
                        open: true,
                        pooled: true,
                        team: Some(&t.name),
                        limit: usize::MAX >> 1,
                        ..LeadFilter::default()
                    },
                )?);
            }
            pooled
        };
        standing.sort_by_key(|l| l.id);
        if full {
            settle_merges(&app, tenant, &mut standing, &mut b, &mut router, now)?;
        }
        let mut next_wake: Option<Millis> = None;
        for mut lead in standing {
            let Some(team_name) = lead.team.clone() else {
                continue;
            };
            let team_def = teams.iter().find(|t| t.name == team_name);
            if let Some(owner) = lead.owner.clone() {
                let held = agents
                    .iter()
                    .any(|a| a.name == owner && a.active && a.team == team_name);
                if !held {
                    router.released(&team_name, &owner);
                    lead.owner = None;
                    b.log(
                        lead.id,
                        now,
                        "pooled",
                        Some(&owner),
                        json!({"why": "owner_unavailable"}),
                    );
                    assign(
                        &mut b,
                        &mut router,
                        &teams,
                        &mut lead,
                        minute,
                        now,
                        false,
                        &mut report,
                    );
                    b.updated.insert(lead.id, lead);
                    continue;
                }
                let clock = sla::Clock {
                    assigned_at: lead.assigned_at,
                    first_contact_due: lead.first_contact_due,
                    first_contact_at: lead.first_contact_at,
                    last_follow_up_at: lead.last_follow_up_at,
                    escalated_at: lead.escalated_at,
                };
                match sla::check(&clock, team_def.and_then(|t| t.recycle_ms), now) {
                    Due::Fine(next) => {
                        if let Some(n) = next {
                            next_wake = Some(next_wake.map_or(n, |w| w.min(n)));
                        }
                    }
                    Due::Recycle { idle_since } => {
                        router.released(&team_name, &owner);
                        lead.owner = None;
                        lead.assigned_at = None;
                        lead.first_contact_due = None;
                        lead.updated_at = now;
                        b.log(
                            lead.id,
                            now,
                            "recycled",
                            Some(&owner),
                            json!({"idle_since": siyu_domain::time::format_rfc3339(idle_since)}),
                        );
                        report.recycled += 1;
                        b.updated.insert(lead.id, lead);
                    }
                    Due::Overdue { since } => {
                        report.escalated += 1;
                        lead.escalated_at = Some(now);
                        lead.updated_at = now;
                        let how = team_def
                            .map(|t| Escalate::parse(&t.escalate).unwrap_or_default())
                            .unwrap_or_default();
                        let to = team_def.and_then(|t| t.lead_agent.clone());
                        // `task`: one for the team's lead agent (none named: the log says so).
                        let task = match (&to, how) {
                            (Some(l), Escalate::Task) => Some(
                                b.task(
                                    &lead,
                                    &team_name,
                                    l,
                                    siyu_leads::tasks::overdue(lead.id, &owner, since),
                                    now,
                                    team_def
                                        .and_then(|t| t.first_contact_ms)
                                        .map(|d| now.saturating_add(d)),
                                ),
                            ),
                            _ => None,
                        };
                        b.log(
                            lead.id,
                            now,
                            "escalated",
                            Some(&owner),
                            json!({"due": siyu_domain::time::format_rfc3339(since), "action": how.as_str(), "to": to, "task": task}),
                        );
                        if how == Escalate::Reassign {
                            // To the next agent who can take it; it stays if nobody can.
                            let from = owner.clone();
                            if let Some(t) = router.teams.get_mut(&team_name)
                                && let Some(i) = t.agent(&from)
                            {
                                let keep = t.agents[i].active;
                                t.agents[i].active = false;
                                let got = t.assign(minute);
                                t.agents[i].active = keep;
                                if let Assigned::Agent(j) = got {
                                    let name = t.agents[j].name.clone();
                                    router.released(&team_name, &from);
                                    *b.days.entry(name.clone()).or_default() += 1;
                                    lead.owner = Some(name.clone());
                                    lead.assigned_at = Some(now);
                                    lead.first_contact_due = sla::first_contact_due(
                                        now,
                                        team_def.and_then(|t| t.first_contact_ms),
                                    );
                                    lead.escalated_at = None;
                                    b.log(
                                        lead.id,
                                        now,
                                        "assigned",
                                        Some(&name),
                                        json!({"from": from, "why": "overdue"}),
                                    );
                                    report.assigned += 1;
                                }
                            }
                        }
                        b.updated.insert(lead.id, lead);
                    }
                }
            } else if assign(
                &mut b,
                &mut router,
                &teams,
                &mut lead,
                minute,
                now,
                false,
                &mut report,
            ) {
                b.updated.insert(lead.id, lead);
            } else {
                waiting.insert(team_name);
            }
        }
        // Pooled leads wait for the minute someone of their team can next take one.
        for team in &waiting {
            if let Some(m) = router.teams.get(team).and_then(|t| t.until_someone(minute)) {
                let at = now - now % 60_000 + i64::from(m.max(1)) * 60_000;
                next_wake = Some(next_wake.map_or(at, |w| w.min(at)));
            }
        }
        // The service levels' next deadline: from the whole scan, or the one known before and
        // those of the leads this step assigned.
        let mut next_check = if full {
            next_wake
        } else {
            self.memo.get(&tenant).and_then(|m| m.next_check)
        };
        for l in b.new.iter().chain(b.updated.values()) {
            if l.owner.is_none() {
                continue;
            }
            let recycle = l
                .team
                .as_ref()
                .and_then(|t| teams.iter().find(|x| &x.name == t))
                .and_then(|t| t.recycle_ms);
            let clock = sla::Clock {
                assigned_at: l.assigned_at,
                first_contact_due: l.first_contact_due,
                first_contact_at: l.first_contact_at,
                last_follow_up_at: l.last_follow_up_at,
                escalated_at: l.escalated_at,
            };
            if let Due::Fine(Some(t)) = sla::check(&clock, recycle, now) {
                next_check = Some(next_check.map_or(t, |c| c.min(t)));
            }
        }
        self.memo.insert(
            tenant,
            Memo {
                checked: true,
                agents: agents.clone(),
                next_check,
                changes,
                last_full: if full {
                    now
                } else {
                    self.memo.get(&tenant).map_or(now, |m| m.last_full)
                },
            },
        );
        let next_wake = [next_wake, next_check].into_iter().flatten().min();
        report.next_wake = next_wake;
        // New leads assigned in this step were inserted whole; drop their duplicates.
        let new_ids: std::collections::HashSet<i64> = b.new.iter().map(|l| l.id).collect();
        let updated: Vec<StoredLead> = b
            .updated
            .into_values()
            .filter(|l| !new_ids.contains(&l.id))
            .collect();
        let days: Vec<AgentDay> = b
            .days
            .into_iter()
            .map(|(agent, count)| AgentDay { agent, day, count })
            .collect();
        let pointers: Vec<(String, String)> = router
            .teams
            .values()
            .filter_map(|t| {
                let stored = teams.iter().find(|s| s.name == t.name)?.last_agent.clone();
                (t.last != stored).then(|| Some((t.name.clone(), t.last.clone()?)))?
            })
            .collect();
        store.commit_leads(
            tenant,
            &LeadBatch {
                new_leads: &b.new,
                updated_leads: &updated,
                arrivals: &b.arrivals,
                log: &b.log,
                agent_days: &days,
                pointers: &pointers,
                new_groups: &gc.new_groups,
                members: &gc.members,
                group_sizes: &gc.sizes,
                group_days: &gc.days,
                tasks: &b.tasks,
                cursor: Some((CONSUMER, page.next_after)),
                now,
                ..LeadBatch::default()
            },
        )?;
        Ok(report)
    }
}

/// Leads of fans merged or split since: two open leads whose fans are now one person — the
/// newer becomes `merged` into the older (both logged, the newer's owner named on the older's
/// log, its load released); a merged lead whose fan is a person apart again (the merge undone)
/// comes back with the state it had, and is routed on like any open lead.
fn settle_merges(
    app: &App,
    tenant: TenantId,
    standing: &mut Vec<StoredLead>,
    b: &mut Batch,
    router: &mut Router,
    now: Millis,
) -> Result<(), LeadsError> {
    let store = app.store();
    let merged = store.leads(
        tenant,
        &LeadFilter {
            state: Some(LeadState::Merged.as_str()),
            limit: usize::MAX >> 1,
            ..LeadFilter::default()
        },
    )?;
    // Each merged lead with the lead it went into and the state it had.
    let mut apart = Vec::new();
    for m in merged {
        let log = store.lead_log(tenant, m.id)?;
        let Some(detail) = log
            .iter()
            .rev()
            .find(|l| l.kind == "merged")
            .and_then(|l| l.detail.as_deref())
            .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        else {
            continue;
        };
        let (Some(into), Some(state)) = (detail["into"].as_i64(), detail["state"].as_str()) else {
            continue;
        };
        let into_fan = store.lead(tenant, into)?.map(|l| l.fan);
        apart.push((m, into, into_fan, state.to_string()));
    }
    let fans: Vec<i64> = standing
        .iter()
        .map(|l| l.fan)
        .chain(
            apart
                .iter()
                .flat_map(|(m, _, f, _)| [Some(m.fan), *f])
                .flatten(),
        )
        .collect();
    let current: HashMap<i64, i64> = app.ingestor.read(tenant, |e| {
        fans.iter()
            .map(|f| {
                let c = e.identities().current(siyu_engine::FanId(*f));
                (*f, c.map_or(*f, |c| c.0))
            })
            .collect()
    })?;
    let cur = |f: i64| current.get(&f).copied().unwrap_or(f);
    for (mut m, into, into_fan, state) in apart {
        if into_fan.is_some_and(|f| cur(f) == cur(m.fan)) {
            continue;
        }
        m.state = state;
        m.closed_at = None;
        m.updated_at = now;
        let task = match (&m.team, &m.owner) {
            (Some(t), Some(o)) => {
                Some(b.task(&m, t, o, siyu_leads::tasks::split(m.id, into), now, None))
            }
            _ => None,
        };
        b.log(
            m.id,
            now,
            "split",
            m.owner.as_deref(),
            json!({"from": into, "task": task}),
        );
        b.log(into, now, "split", None, json!({"lead": m.id}));
        if let (Some(t), Some(o)) = (&m.team, &m.owner)
            && let Some(team) = router.teams.get_mut(t)
            && let Some(i) = team.agent(o)
        {
            team.agents[i].open += 1;
        }
        b.updated.insert(m.id, m.clone());
        standing.push(m);
    }
    standing.sort_by_key(|l| l.id);
    let mut kept: HashMap<i64, i64> = HashMap::new();
    let owners: HashMap<i64, Option<String>> =
        standing.iter().map(|l| (l.id, l.owner.clone())).collect();
    for l in standing.iter_mut() {
        let person = cur(l.fan);
        let Some(&into) = kept.get(&person) else {
            kept.insert(person, l.id);
            continue;
        };
        let before = std::mem::replace(&mut l.state, LeadState::Merged.as_str().into());
        l.closed_at = Some(now);
        l.updated_at = now;
        // The other owner is told (a task), so nobody goes on chasing the person twice.
        let mut task = None;
        if let (Some(t), Some(o)) = (&l.team, &l.owner) {
            router.released(t, o);
            let keeper = owners.get(&into).cloned().flatten();
            task = Some(b.task(
                l,
                t,
                o,
                siyu_leads::tasks::merged(l.id, into, keeper.as_deref()),
                now,
                None,
            ));
        }
        b.log(
            l.id,
            now,
            "merged",
            l.owner.as_deref(),
            json!({"into": into, "state": before, "task": task}),
        );
        b.log(
            into,
            now,
            "merged",
            None,
            json!({"from": l.id, "owner": l.owner, "state": before}),
        );
        b.updated.insert(l.id, l.clone());
    }
    standing.retain(|l| l.state != LeadState::Merged.as_str());
    Ok(())
}

/// Routes one lead to its team's next agent; whether it got one. A lead left in the pool is
/// logged with the reasons every agent was passed over when `log_pool` (its first time).
#[allow(clippy::too_many_arguments)]
pub(super) fn assign(
    b: &mut Batch,
    router: &mut Router,
    teams: &[StoredTeam],
    lead: &mut StoredLead,
    minute: u16,
    now: Millis,
    log_pool: bool,
    report: &mut LeadReport,
) -> bool {
    let Some(team) = lead.team.clone() else {
        if log_pool {
            b.log(lead.id, now, "pooled", None, json!({"why": "no_route"}));
            report.pooled += 1;
        }
        return false;
    };
    let pooled = match router.assign(&team, minute) {
        Some((Assigned::Agent(i), t)) => {
            let name = t.agents[i].name.clone();
            *b.days.entry(name.clone()).or_default() += 1;
            lead.owner = Some(name.clone());
            lead.assigned_at = Some(now);
            lead.first_contact_due = sla::first_contact_due(
                now,
                teams
                    .iter()
                    .find(|x| x.name == team)
                    .and_then(|x| x.first_contact_ms),
            );
            lead.updated_at = now;
            b.log(lead.id, now, "assigned", Some(&name), json!({"team": team}));
            report.assigned += 1;
            return true;
        }
        Some((Assigned::Pool(passed), _)) => {
            let why: serde_json::Map<String, serde_json::Value> = passed
                .iter()
                .map(|(n, p)| (n.clone(), json!(p.as_str())))
                .collect();
            json!({"team": team, "passed": why})
        }
        None => json!({"why": "unknown_team", "team": team}),
    };
    if log_pool {
        b.log(lead.id, now, "pooled", None, pooled);
        report.pooled += 1;
    }
    false
}
