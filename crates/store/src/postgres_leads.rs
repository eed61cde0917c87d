//! The PostgreSQL backend of [`crate::leads::Leads`] (tables of migration 15).
//!
//! A step of the lead worker is one transaction on the writer's connection, fenced (`FOR
//! SHARE` on the lease row) first, with one statement per kind of row: inserts, updates and
//! upserts take all of the batch's rows of their kind from arrays (`unnest`), so a batch is a
//! dozen round trips whatever its size. A statement cannot touch one row twice, so the day
//! counters' deltas are summed and the memberships, pointers and sizes deduplicated (the last
//! wins) before they are sent. The updates join the arrays on the key alone and keep any other
//! condition out of `WHERE`: on tables without statistics yet, the planner would otherwise
//! scan the whole table per row. A lead id or event id stored twice fails the transaction;
//! which one it was is asked afterwards. Reads use the reader's connection.

use std::collections::HashMap;

use postgres::Client;
use postgres::error::SqlState;

use crate::leads::*;
use crate::postgres::{PostgresStore, fenced, sql_limit};
use crate::sqlite_leads::{CLOSED_STATES, LeadUnique};
use crate::{Result, StoreError, TenantId};

const LEAD_COLUMNS: &str = "id, fan, state, team, owner, created_at, assigned_at, first_contact_due, first_contact_at, last_follow_up_at, escalated_at, closed_at, channel, province, city, clue_state, intention, updated_at";

fn lead_from_row(r: &postgres::Row) -> StoredLead {
    StoredLead {
        id: r.get(0),
        fan: r.get(1),
        state: r.get(2),
        team: r.get(3),
        owner: r.get(4),
        created_at: r.get(5),
        assigned_at: r.get(6),
        first_contact_due: r.get(7),
        first_contact_at: r.get(8),
        last_follow_up_at: r.get(9),
        escalated_at: r.get(10),
        closed_at: r.get(11),
        channel: r.get(12),
        province: r.get(13),
        city: r.get(14),
        clue_state: r.get(15),
        intention: r.get(16),
        updated_at: r.get(17),
    }
}

const AGENT_COLUMNS: &str = "name, team, capacity, daily_cap, hours_start, hours_end, weight, active, created_at, updated_at";

fn agent_from_row(r: &postgres::Row) -> StoredAgent {
    let start: Option<i32> = r.get(4);
    let end: Option<i32> = r.get(5);
    StoredAgent {
        name: r.get(0),
        team: r.get(1),
        capacity: r.get(2),
        daily_cap: r.get(3),
        hours: start.zip(end),
        weight: r.get(6),
        active: r.get(7),
        created_at: r.get(8),
        updated_at: r.get(9),
    }
}

/// Why a batch was not committed.
enum Failed {
    Store(StoreError),
    Duplicate(LeadUnique),
}

impl From<StoreError> for Failed {
    fn from(e: StoreError) -> Failed {
        Failed::Store(e)
    }
}

impl From<postgres::Error> for Failed {
    fn from(e: postgres::Error) -> Failed {
        Failed::Store(e.into())
    }
}

/// A unique violation as `Duplicate(which)`, anything else as it is.
fn unique(which: LeadUnique) -> impl Fn(postgres::Error) -> Failed {
    move |e| match e.code() {
        Some(&SqlState::UNIQUE_VIOLATION) => Failed::Duplicate(which),
        _ => Failed::Store(e.into()),
    }
}

/// The column of one field of every row.
fn col<'a, R, T>(rows: &'a [R], f: impl Fn(&'a R) -> T) -> Vec<T> {
    rows.iter().map(f).collect()
}

/// `rows` with only the last of each key, in the order of those lasts.
fn last_by<'a, R, K: std::hash::Hash + Eq>(rows: &'a [R], key: impl Fn(&'a R) -> K) -> Vec<&'a R> {
    let mut last: HashMap<K, usize> = HashMap::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        last.insert(key(r), i);
    }
    let mut keep: Vec<usize> = last.into_values().collect();
    keep.sort_unstable();
    keep.into_iter().map(|i| &rows[i]).collect()
}

fn write_batch(
    c: &mut Client,
    fences: &crate::Fences,
    tenant: TenantId,
    b: &LeadBatch<'_>,
) -> Result<(), Failed> {
    let mut tx = c.transaction()?;
    fenced(&mut tx, fences, tenant)?;
    let rows = b.new_groups;
    if !rows.is_empty() {
        tx.execute(
            "INSERT INTO fan_groups (tenant_id, id, name, template, capacity, owner, members, created_at)
             SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::text[], $5::integer[], $6::text[],
                                      $7::integer[], $8::bigint[])",
            &[
                &tenant,
                &col(rows, |r| r.id),
                &col(rows, |r| r.name.as_str()),
                &col(rows, |r| r.template.as_str()),
                &col(rows, |r| r.capacity),
                &col(rows, |r| r.owner.as_deref()),
                &col(rows, |r| r.members),
                &col(rows, |r| r.created_at),
            ],
        )?;
    }
    let rows = b.new_leads;
    if !rows.is_empty() {
        tx.execute(
            "INSERT INTO leads (tenant_id, id, fan, state, team, owner, created_at, assigned_at, first_contact_due,
                                first_contact_at, last_follow_up_at, escalated_at, closed_at, channel, province,
                                city, clue_state, intention, updated_at)
             SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::bigint[],
                                      $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[],
                                      $13::bigint[], $14::text[], $15::text[], $16::text[], $17::text[],
                                      $18::text[], $19::bigint[])",
            &[
                &tenant,
                &col(rows, |r| r.id),
                &col(rows, |r| r.fan),
                &col(rows, |r| r.state.as_str()),
                &col(rows, |r| r.team.as_deref()),
                &col(rows, |r| r.owner.as_deref()),
                &col(rows, |r| r.created_at),
                &col(rows, |r| r.assigned_at),
                &col(rows, |r| r.first_contact_due),
                &col(rows, |r| r.first_contact_at),
                &col(rows, |r| r.last_follow_up_at),
                &col(rows, |r| r.escalated_at),
                &col(rows, |r| r.closed_at),
                &col(rows, |r| r.channel.as_str()),
                &col(rows, |r| r.province.as_deref()),
                &col(rows, |r| r.city.as_deref()),
                &col(rows, |r| r.clue_state.as_deref()),
                &col(rows, |r| r.intention.as_deref()),
                &col(rows, |r| r.updated_at),
            ],
        )
        .map_err(unique(LeadUnique::LeadId))?;
    }
    if !b.updated_leads.is_empty() {
        let rows = last_by(b.updated_leads, |r| r.id);
        let updated: std::collections::HashSet<i64> = tx
            .query(
                "UPDATE leads l SET fan = u.fan, state = u.state, team = u.team, owner = u.owner,
                     assigned_at = u.assigned_at, first_contact_due = u.first_contact_due,
                     first_contact_at = u.first_contact_at, last_follow_up_at = u.last_follow_up_at,
                     escalated_at = u.escalated_at, closed_at = u.closed_at, channel = u.channel,
                     province = u.province, city = u.city, clue_state = u.clue_state,
                     intention = u.intention, updated_at = u.updated_at
                 FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::bigint[],
                             $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[],
                             $13::text[], $14::text[], $15::text[], $16::text[], $17::text[], $18::bigint[])
                      AS u(id, fan, state, team, owner, assigned_at, first_contact_due, first_contact_at,
                           last_follow_up_at, escalated_at, closed_at, channel, province, city,
                           clue_state, intention, updated_at)
                 WHERE l.tenant_id = $1 AND l.id = u.id
                 RETURNING l.id",
                &[
                    &tenant,
                    &col(&rows, |r| r.id),
                    &col(&rows, |r| r.fan),
                    &col(&rows, |r| r.state.as_str()),
                    &col(&rows, |r| r.team.as_deref()),
                    &col(&rows, |r| r.owner.as_deref()),
                    &col(&rows, |r| r.assigned_at),
                    &col(&rows, |r| r.first_contact_due),
                    &col(&rows, |r| r.first_contact_at),
                    &col(&rows, |r| r.last_follow_up_at),
                    &col(&rows, |r| r.escalated_at),
                    &col(&rows, |r| r.closed_at),
                    &col(&rows, |r| r.channel.as_str()),
                    &col(&rows, |r| r.province.as_deref()),
                    &col(&rows, |r| r.city.as_deref()),
                    &col(&rows, |r| r.clue_state.as_deref()),
                    &col(&rows, |r| r.intention.as_deref()),
                    &col(&rows, |r| r.updated_at),
                ],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if let Some(r) = rows.iter().find(|r| !updated.contains(&r.id)) {
            return Err(Failed::Store(StoreError::Corrupt(format!(
                "lead {} is not stored; nothing of the batch was stored",
                r.id
            ))));
        }
    }
    let rows = b.arrivals;
    if !rows.is_empty() {
        tx.execute(
            "INSERT INTO lead_arrivals (tenant_id, event_id, lead, channel, ts, repeat)
             SELECT $1, * FROM unnest($2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::boolean[])",
            &[
                &tenant,
                &col(rows, |r| r.event_id.as_str()),
                &col(rows, |r| r.lead),
                &col(rows, |r| r.channel.as_str()),
                &col(rows, |r| r.ts),
                &col(rows, |r| r.repeat),
            ],
        )
        .map_err(unique(LeadUnique::EventId))?;
    }
    if !b.moved_arrivals.is_empty() {
        let rows = last_by(b.moved_arrivals, |r| r.0.as_str());
        tx.execute(
            "UPDATE lead_arrivals a SET lead = u.lead
             FROM unnest($2::text[], $3::bigint[]) AS u(event_id, lead)
             WHERE a.tenant_id = $1 AND a.event_id = u.event_id",
            &[&tenant, &col(&rows, |r| r.0.as_str()), &col(&rows, |r| r.1)],
        )?;
    }
    let rows = b.log;
    if !rows.is_empty() {
        tx.execute(
            "INSERT INTO lead_log (tenant_id, id, lead, at, kind, agent, result, detail)
             SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::text[],
                                      $7::text[], $8::text[])",
            &[
                &tenant,
                &col(rows, |r| r.id),
                &col(rows, |r| r.lead),
                &col(rows, |r| r.at),
                &col(rows, |r| r.kind.as_str()),
                &col(rows, |r| r.agent.as_deref()),
                &col(rows, |r| r.result.as_deref()),
                &col(rows, |r| r.detail.as_deref()),
            ],
        )?;
    }
    if !b.agent_days.is_empty() {
        let mut sums: HashMap<(&str, i32), i32> = HashMap::new();
        for d in b.agent_days {
            *sums.entry((d.agent.as_str(), d.day)).or_default() += d.count;
        }
        let rows: Vec<_> = sums.into_iter().collect();
        tx.execute(
            "INSERT INTO agent_days AS d (tenant_id, agent, day, count)
             SELECT $1, * FROM unnest($2::text[], $3::integer[], $4::integer[])
             ON CONFLICT (tenant_id, agent, day) DO UPDATE SET count = d.count + excluded.count",
            &[
                &tenant,
                &col(&rows, |r| r.0.0),
                &col(&rows, |r| r.0.1),
                &col(&rows, |r| r.1),
            ],
        )?;
    }
    if !b.pointers.is_empty() {
        let rows = last_by(b.pointers, |r| r.0.as_str());
        tx.execute(
            "UPDATE teams t SET last_agent = u.agent
             FROM unnest($2::text[], $3::text[]) AS u(name, agent)
             WHERE t.tenant_id = $1 AND t.name = u.name",
            &[
                &tenant,
                &col(&rows, |r| r.0.as_str()),
                &col(&rows, |r| r.1.as_str()),
            ],
        )?;
    }
    if !b.members.is_empty() {
        let rows = last_by(b.members, |r| (r.group, r.fan));
        tx.execute(
            "INSERT INTO group_members (tenant_id, group_id, fan, joined_at, left_at, active_at)
             SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[])
             ON CONFLICT (tenant_id, group_id, fan) DO UPDATE SET
                 joined_at = excluded.joined_at, left_at = excluded.left_at,
                 active_at = excluded.active_at",
            &[
                &tenant,
                &col(&rows, |r| r.group),
                &col(&rows, |r| r.fan),
                &col(&rows, |r| r.joined_at),
                &col(&rows, |r| r.left_at),
                &col(&rows, |r| r.active_at),
            ],
        )?;
    }
    if !b.invites.is_empty() {
        let rows = last_by(b.invites, |r| (r.group, r.fan));
        tx.execute(
            "INSERT INTO group_invites (tenant_id, group_id, fan, invited_at)
             SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::bigint[])
             ON CONFLICT (tenant_id, group_id, fan) DO UPDATE SET invited_at = excluded.invited_at",
            &[
                &tenant,
                &col(&rows, |r| r.group),
                &col(&rows, |r| r.fan),
                &col(&rows, |r| r.invited_at),
            ],
        )?;
    }
    // A fan in the group no longer holds a seat by invitation.
    let seated: Vec<&StoredMember> = b.members.iter().filter(|m| m.left_at.is_none()).collect();
    if !seated.is_empty() {
        tx.execute(
            "DELETE FROM group_invites i USING unnest($2::bigint[], $3::bigint[]) AS s(g, f)
             WHERE i.tenant_id = $1 AND i.group_id = s.g AND i.fan = s.f",
            &[
                &tenant,
                &col(&seated, |r| r.group),
                &col(&seated, |r| r.fan),
            ],
        )?;
    }
    crate::postgres_journeys::insert_tasks(&mut tx, tenant, b.tasks)?;
    if !b.group_sizes.is_empty() {
        let rows = last_by(b.group_sizes, |r| r.0);
        tx.execute(
            "UPDATE fan_groups g SET members = u.members
             FROM unnest($2::bigint[], $3::integer[]) AS u(id, members)
             WHERE g.tenant_id = $1 AND g.id = u.id",
            &[&tenant, &col(&rows, |r| r.0), &col(&rows, |r| r.1)],
        )?;
    }
    if !b.group_days.is_empty() {
        let mut sums: HashMap<(i64, i32), (i32, i32, i32)> = HashMap::new();
        for d in b.group_days {
            let s = sums.entry((d.group, d.day)).or_default();
            *s = (s.0 + d.joins, s.1 + d.leaves, s.2 + d.messages);
        }
        let rows: Vec<_> = sums.into_iter().collect();
        tx.execute(
            "INSERT INTO group_days AS d (tenant_id, group_id, day, joins, leaves, messages)
             SELECT $1, * FROM unnest($2::bigint[], $3::integer[], $4::integer[], $5::integer[], $6::integer[])
             ON CONFLICT (tenant_id, group_id, day) DO UPDATE SET
                 joins = d.joins + excluded.joins, leaves = d.leaves + excluded.leaves,
                 messages = d.messages + excluded.messages",
            &[
                &tenant,
                &col(&rows, |r| r.0.0),
                &col(&rows, |r| r.0.1),
                &col(&rows, |r| r.1.0),
                &col(&rows, |r| r.1.1),
                &col(&rows, |r| r.1.2),
            ],
        )?;
    }
    if let Some((consumer, after)) = b.cursor {
        tx.execute(
            "INSERT INTO trigger_cursors (tenant_id, consumer, after_id, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (tenant_id, consumer) DO UPDATE SET after_id = $3, updated_at = $4",
            &[&tenant, &consumer, &after, &b.now],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// The first of `which`'s keys of the batch the store holds.
fn stored_key(
    c: &mut Client,
    tenant: TenantId,
    which: LeadUnique,
    b: &LeadBatch<'_>,
) -> Result<Option<String>> {
    Ok(match which {
        LeadUnique::LeadId => {
            let ids: Vec<i64> = b.new_leads.iter().map(|l| l.id).collect();
            c.query_opt(
                "SELECT id FROM leads WHERE tenant_id = $1 AND id = ANY($2) ORDER BY id LIMIT 1",
                &[&tenant, &ids],
            )?
            .map(|r| r.get::<_, i64>(0).to_string())
        }
        LeadUnique::EventId => c
            .query_opt(
                "SELECT event_id FROM lead_arrivals WHERE tenant_id = $1 AND event_id = ANY($2)
                 ORDER BY event_id COLLATE \"C\" LIMIT 1",
                &[&tenant, &which.keys(b)],
            )?
            .map(|r| r.get(0)),
    })
}

impl PostgresStore {
    /// Runs `f` in a fenced transaction on the writer's connection.
    fn fenced_write(
        &self,
        tenant: TenantId,
        f: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<()>,
    ) -> Result<()> {
        self.writer(|c| {
            let mut tx = c.transaction()?;
            fenced(&mut tx, &self.fences, tenant)?;
            f(&mut tx)?;
            tx.commit()?;
            Ok(())
        })
    }
}

impl Leads for PostgresStore {
    fn put_team(&self, tenant: TenantId, team: &StoredTeam) -> Result<()> {
        self.fenced_write(tenant, |tx| {
            tx.execute(
                "INSERT INTO teams (tenant_id, name, strategy, first_contact_ms, recycle_ms, lead_agent, escalate, last_agent, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (tenant_id, name) DO UPDATE SET
                     strategy = excluded.strategy, first_contact_ms = excluded.first_contact_ms,
                     recycle_ms = excluded.recycle_ms, lead_agent = excluded.lead_agent,
                     escalate = excluded.escalate, updated_at = excluded.updated_at",
                &[
                    &tenant,
                    &team.name,
                    &team.strategy,
                    &team.first_contact_ms,
                    &team.recycle_ms,
                    &team.lead_agent,
                    &team.escalate,
                    &team.last_agent,
                    &team.created_at,
                    &team.updated_at,
                ],
            )?;
            Ok(())
        })
    }

    fn teams(&self, tenant: TenantId) -> Result<Vec<StoredTeam>> {
        self.reader(|c| {
            Ok(c.query(
                "SELECT name, strategy, first_contact_ms, recycle_ms, lead_agent, escalate,
                        last_agent, created_at, updated_at
                 FROM teams WHERE tenant_id = $1 ORDER BY name COLLATE \"C\"",
                &[&tenant],
            )?
            .iter()
            .map(|r| StoredTeam {
                name: r.get(0),
                strategy: r.get(1),
                first_contact_ms: r.get(2),
                recycle_ms: r.get(3),
                lead_agent: r.get(4),
                escalate: r.get(5),
                last_agent: r.get(6),
                created_at: r.get(7),
                updated_at: r.get(8),
            })
            .collect())
        })
    }

    fn put_agent(&self, tenant: TenantId, agent: &StoredAgent) -> Result<()> {
        let (start, end) = agent.hours.unzip();
        self.fenced_write(tenant, |tx| {
            tx.execute(
                "INSERT INTO agents (tenant_id, name, team, capacity, daily_cap, hours_start, hours_end, weight, active, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                 ON CONFLICT (tenant_id, name) DO UPDATE SET
                     team = excluded.team, capacity = excluded.capacity,
                     daily_cap = excluded.daily_cap, hours_start = excluded.hours_start,
                     hours_end = excluded.hours_end, weight = excluded.weight,
                     active = excluded.active, updated_at = excluded.updated_at",
                &[
                    &tenant,
                    &agent.name,
                    &agent.team,
                    &agent.capacity,
                    &agent.daily_cap,
                    &start,
                    &end,
                    &agent.weight,
                    &agent.active,
                    &agent.created_at,
                    &agent.updated_at,
                ],
            )?;
            Ok(())
        })
    }

    fn agents(&self, tenant: TenantId) -> Result<Vec<StoredAgent>> {
        self.reader(|c| {
            Ok(c.query(
                &format!(
                    "SELECT {AGENT_COLUMNS} FROM agents WHERE tenant_id = $1 ORDER BY name COLLATE \"C\""
                ),
                &[&tenant],
            )?
            .iter()
            .map(agent_from_row)
            .collect())
        })
    }

    fn put_lead_rules(&self, tenant: TenantId, rules: &[StoredRule]) -> Result<()> {
        let positions: Vec<i32> = (1..=rules.len())
            .map(|p| i32::try_from(p).unwrap_or(i32::MAX))
            .collect();
        self.fenced_write(tenant, |tx| {
            tx.execute("DELETE FROM lead_rules WHERE tenant_id = $1", &[&tenant])?;
            if !rules.is_empty() {
                tx.execute(
                    "INSERT INTO lead_rules (tenant_id, id, position, expr, team, created_at)
                     SELECT $1, * FROM unnest($2::bigint[], $3::integer[], $4::text[], $5::text[], $6::bigint[])",
                    &[
                        &tenant,
                        &col(rules, |r| r.id),
                        &positions,
                        &col(rules, |r| r.expr.as_str()),
                        &col(rules, |r| r.team.as_str()),
                        &col(rules, |r| r.created_at),
                    ],
                )?;
            }
            Ok(())
        })
    }

    fn lead_rules(&self, tenant: TenantId) -> Result<Vec<StoredRule>> {
        self.reader(|c| {
            Ok(c.query(
                "SELECT id, position, expr, team, created_at FROM lead_rules
                 WHERE tenant_id = $1 ORDER BY position, id",
                &[&tenant],
            )?
            .iter()
            .map(|r| StoredRule {
                id: r.get(0),
                position: r.get(1),
                expr: r.get(2),
                team: r.get(3),
                created_at: r.get(4),
            })
            .collect())
        })
    }

    fn lead_ids(&self, tenant: TenantId) -> Result<LeadIds> {
        self.reader(|c| {
            let r = c.query_one(
                "SELECT (SELECT COALESCE(MAX(id), 0) FROM leads WHERE tenant_id = $1),
                        (SELECT COALESCE(MAX(id), 0) FROM lead_log WHERE tenant_id = $1),
                        (SELECT COALESCE(MAX(id), 0) FROM fan_groups WHERE tenant_id = $1)",
                &[&tenant],
            )?;
            Ok(LeadIds {
                lead: r.get(0),
                log: r.get(1),
                group: r.get(2),
            })
        })
    }

    fn commit_leads(&self, tenant: TenantId, batch: &LeadBatch<'_>) -> Result<()> {
        self.writer(|c| match write_batch(c, &self.fences, tenant, batch) {
            Ok(()) => Ok(()),
            Err(Failed::Store(e)) => Err(e),
            // Rolled back: what the store holds is what was committed before.
            Err(Failed::Duplicate(which)) => {
                Err(which.refused(batch, stored_key(c, tenant, which, batch)?))
            }
        })
    }

    fn leads(&self, tenant: TenantId, filter: &LeadFilter<'_>) -> Result<Vec<StoredLead>> {
        self.reader(|c| {
            Ok(c.query(
                &format!(
                    "SELECT {LEAD_COLUMNS} FROM leads
                     WHERE tenant_id = $1 AND ($2::text IS NULL OR state = $2)
                       AND ($3::text IS NULL OR owner = $3) AND ($4::text IS NULL OR team = $4)
                       AND ($5::bigint IS NULL OR fan = $5)
                       AND (NOT $6 OR state NOT IN {CLOSED_STATES})
                       AND (NOT $7 OR owner IS NULL)
                     ORDER BY id LIMIT $8"
                ),
                &[
                    &tenant,
                    &filter.state,
                    &filter.owner,
                    &filter.team,
                    &filter.fan,
                    &filter.open,
                    &filter.pooled,
                    &sql_limit(filter.limit),
                ],
            )?
            .iter()
            .map(lead_from_row)
            .collect())
        })
    }

    fn lead(&self, tenant: TenantId, id: i64) -> Result<Option<StoredLead>> {
        self.reader(|c| {
            Ok(c.query_opt(
                &format!("SELECT {LEAD_COLUMNS} FROM leads WHERE tenant_id = $1 AND id = $2"),
                &[&tenant, &id],
            )?
            .map(|r| lead_from_row(&r)))
        })
    }

    fn open_leads_of(&self, tenant: TenantId, fans: &[i64]) -> Result<Vec<StoredLead>> {
        if fans.is_empty() {
            return Ok(Vec::new());
        }
        self.reader(|c| {
            Ok(c.query(
                &format!(
                    "SELECT {LEAD_COLUMNS} FROM leads
                     WHERE tenant_id = $1 AND fan = ANY($2) AND state NOT IN {CLOSED_STATES}
                     ORDER BY id"
                ),
                &[&tenant, &fans],
            )?
            .iter()
            .map(lead_from_row)
            .collect())
        })
    }

    fn arrivals(&self, tenant: TenantId, lead: i64) -> Result<Vec<StoredArrival>> {
        self.reader(|c| {
            Ok(c.query(
                "SELECT lead, event_id, channel, ts, repeat FROM lead_arrivals
                 WHERE tenant_id = $1 AND lead = $2 ORDER BY ts, event_id COLLATE \"C\"",
                &[&tenant, &lead],
            )?
            .iter()
            .map(arrival_from_row)
            .collect())
        })
    }

    fn arrivals_of(&self, tenant: TenantId, leads: &[i64]) -> Result<Vec<StoredArrival>> {
        if leads.is_empty() {
            return Ok(Vec::new());
        }
        self.reader(|c| {
            Ok(c.query(
                "SELECT lead, event_id, channel, ts, repeat FROM lead_arrivals
                 WHERE tenant_id = $1 AND lead = ANY($2) ORDER BY lead, ts, event_id COLLATE \"C\"",
                &[&tenant, &leads],
            )?
            .iter()
            .map(arrival_from_row)
            .collect())
        })
    }

    fn arrivals_known(&self, tenant: TenantId, event_ids: &[&str]) -> Result<Vec<String>> {
        if event_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.reader(|c| {
            Ok(c.query(
                "SELECT event_id FROM lead_arrivals WHERE tenant_id = $1 AND event_id = ANY($2)
                 ORDER BY event_id COLLATE \"C\"",
                &[&tenant, &event_ids],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
        })
    }

    fn lead_log(&self, tenant: TenantId, lead: i64) -> Result<Vec<StoredLeadLog>> {
        self.reader(|c| {
            Ok(c.query(
                "SELECT id, lead, at, kind, agent, result, detail FROM lead_log
                 WHERE tenant_id = $1 AND lead = $2 ORDER BY id",
                &[&tenant, &lead],
            )?
            .iter()
            .map(|r| StoredLeadLog {
                id: r.get(0),
                lead: r.get(1),
                at: r.get(2),
                kind: r.get(3),
                agent: r.get(4),
                result: r.get(5),
                detail: r.get(6),
            })
            .collect())
        })
    }

    fn open_per_owner(&self, tenant: TenantId) -> Result<Vec<(String, i64)>> {
        self.reader(|c| {
            Ok(c.query(
                &format!(
                    "SELECT owner, COUNT(*) FROM leads
                     WHERE tenant_id = $1 AND owner IS NOT NULL AND state NOT IN {CLOSED_STATES}
                     GROUP BY owner ORDER BY owner COLLATE \"C\""
                ),
                &[&tenant],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
        })
    }

    fn agent_days(&self, tenant: TenantId, day: i32) -> Result<Vec<AgentDay>> {
        self.reader(|c| {
            Ok(c.query(
                "SELECT agent, day, count FROM agent_days
                 WHERE tenant_id = $1 AND day = $2 ORDER BY agent COLLATE \"C\"",
                &[&tenant, &day],
            )?
            .iter()
            .map(|r| AgentDay {
                agent: r.get(0),
                day: r.get(1),
                count: r.get(2),
            })
            .collect())
        })
    }

    fn groups(&self, tenant: TenantId) -> Result<Vec<StoredGroup>> {
        self.reader(|c| {
            Ok(c.query(
                "SELECT id, name, template, capacity, owner, members, created_at FROM fan_groups
                 WHERE tenant_id = $1 ORDER BY id",
                &[&tenant],
            )?
            .iter()
            .map(|r| StoredGroup {
                id: r.get(0),
                name: r.get(1),
                template: r.get(2),
                capacity: r.get(3),
                owner: r.get(4),
                members: r.get(5),
                created_at: r.get(6),
            })
            .collect())
        })
    }

    fn members(
        &self,
        tenant: TenantId,
        group: i64,
        fans: Option<&[i64]>,
    ) -> Result<Vec<StoredMember>> {
        self.reader(|c| {
            Ok(c.query(
                "SELECT group_id, fan, joined_at, left_at, active_at FROM group_members
                 WHERE tenant_id = $1 AND group_id = $2 AND ($3::BIGINT[] IS NULL OR fan = ANY($3))
                 ORDER BY joined_at, fan",
                &[&tenant, &group, &fans],
            )?
            .iter()
            .map(|r| StoredMember {
                group: r.get(0),
                fan: r.get(1),
                joined_at: r.get(2),
                left_at: r.get(3),
                active_at: r.get(4),
            })
            .collect())
        })
    }

    fn invites_held(
        &self,
        tenant: TenantId,
        since: siyu_domain::Millis,
    ) -> Result<Vec<(i64, i64)>> {
        self.reader(|c| {
            Ok(c.query(
                "SELECT group_id, COUNT(*) FROM group_invites
                 WHERE tenant_id = $1 AND invited_at >= $2 GROUP BY group_id ORDER BY group_id",
                &[&tenant, &since],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
        })
    }

    fn invites_of(&self, tenant: TenantId, fans: &[i64]) -> Result<Vec<StoredInvite>> {
        if fans.is_empty() {
            return Ok(Vec::new());
        }
        self.reader(|c| {
            Ok(c.query(
                "SELECT group_id, fan, invited_at FROM group_invites
                 WHERE tenant_id = $1 AND fan = ANY($2) ORDER BY group_id, fan",
                &[&tenant, &fans],
            )?
            .iter()
            .map(|r| StoredInvite {
                group: r.get(0),
                fan: r.get(1),
                invited_at: r.get(2),
            })
            .collect())
        })
    }

    fn groups_of(&self, tenant: TenantId, fan: i64) -> Result<Vec<i64>> {
        self.reader(|c| {
            Ok(c.query(
                "SELECT group_id FROM group_members
                 WHERE tenant_id = $1 AND fan = $2 AND left_at IS NULL ORDER BY group_id",
                &[&tenant, &fan],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
        })
    }

    fn group_days(&self, tenant: TenantId, group: i64, from_day: i32) -> Result<Vec<GroupDay>> {
        self.reader(|c| {
            Ok(c.query(
                "SELECT group_id, day, joins, leaves, messages FROM group_days
                 WHERE tenant_id = $1 AND group_id = $2 AND day >= $3 ORDER BY day",
                &[&tenant, &group, &from_day],
            )?
            .iter()
            .map(|r| GroupDay {
                group: r.get(0),
                day: r.get(1),
                joins: r.get(2),
                leaves: r.get(3),
                messages: r.get(4),
            })
            .collect())
        })
    }
}

fn arrival_from_row(r: &postgres::Row) -> StoredArrival {
    StoredArrival {
        lead: r.get(0),
        event_id: r.get(1),
        channel: r.get(2),
        ts: r.get(3),
        repeat: r.get(4),
    }
}

impl crate::spend::Spend for PostgresStore {
    fn put_spend(
        &self,
        tenant: TenantId,
        rows: &[crate::spend::StoredSpend],
        now: siyu_domain::Millis,
    ) -> Result<usize> {
        let mut replaced = 0;
        self.fenced_write(tenant, |tx| {
            for r in rows {
                // xmax is 0 for a row this statement inserted, its old transaction for one it
                // updated.
                let row = tx.query_one(
                    "INSERT INTO spend (tenant_id, day, channel, domain, amount_fen, imported_at)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (tenant_id, day, channel, domain) DO UPDATE SET
                         amount_fen = excluded.amount_fen, imported_at = excluded.imported_at
                     RETURNING (xmax <> 0)",
                    &[&tenant, &r.day, &r.channel, &r.domain, &r.amount_fen, &now],
                )?;
                replaced += usize::from(row.get::<_, bool>(0));
            }
            Ok(())
        })?;
        Ok(replaced)
    }

    fn spend(
        &self,
        tenant: TenantId,
        from_day: i32,
        to_day: i32,
    ) -> Result<Vec<crate::spend::StoredSpend>> {
        self.reader(|c| {
            Ok(c.query(
                "SELECT day, channel, domain, amount_fen FROM spend
                 WHERE tenant_id = $1 AND day >= $2 AND day < $3
                 ORDER BY day, channel COLLATE \"C\", domain",
                &[&tenant, &from_day, &to_day],
            )?
            .iter()
            .map(|r| crate::spend::StoredSpend {
                day: r.get(0),
                channel: r.get(1),
                domain: r.get(2),
                amount_fen: r.get(3),
            })
            .collect())
        })
    }
}
