//! The SQLite backend of [`crate::leads::Leads`] (tables of migration 15).
//!
//! Like the journey worker's (`sqlite_journeys`), a step of the lead worker is one
//! `IMMEDIATE` transaction on the write connection, fenced first: inserts and upserts go many
//! rows per statement (`insert_many_then`), updates one cached statement per row. A lead id or
//! an arrival's event id stored twice fails the statement and with it the transaction; which
//! one it was is found afterwards, so the common path pays nothing for it. Reads use the read
//! pool, so a report never waits for a commit.

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use crate::leads::*;
use crate::sqlite::{SqliteStore, fenced, insert_many_then};
use crate::{Result, StoreError, TenantId};

/// The states a lead is closed in, as SQL (both backends).
pub(crate) const CLOSED_STATES: &str = "('won', 'lost', 'invalid', 'merged')";

const LEAD_COLUMNS: &str = "id, fan, state, team, owner, created_at, assigned_at, first_contact_due, first_contact_at, last_follow_up_at, escalated_at, closed_at, channel, province, city, clue_state, intention, updated_at";

fn lead_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredLead> {
    Ok(StoredLead {
        id: r.get(0)?,
        fan: r.get(1)?,
        state: r.get(2)?,
        team: r.get(3)?,
        owner: r.get(4)?,
        created_at: r.get(5)?,
        assigned_at: r.get(6)?,
        first_contact_due: r.get(7)?,
        first_contact_at: r.get(8)?,
        last_follow_up_at: r.get(9)?,
        escalated_at: r.get(10)?,
        closed_at: r.get(11)?,
        channel: r.get(12)?,
        province: r.get(13)?,
        city: r.get(14)?,
        clue_state: r.get(15)?,
        intention: r.get(16)?,
        updated_at: r.get(17)?,
    })
}

const AGENT_COLUMNS: &str = "name, team, capacity, daily_cap, hours_start, hours_end, weight, active, created_at, updated_at";

fn agent_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredAgent> {
    let start: Option<i32> = r.get(4)?;
    let end: Option<i32> = r.get(5)?;
    Ok(StoredAgent {
        name: r.get(0)?,
        team: r.get(1)?,
        capacity: r.get(2)?,
        daily_cap: r.get(3)?,
        hours: start.zip(end),
        weight: r.get(6)?,
        active: r.get(7)?,
        created_at: r.get(8)?,
        updated_at: r.get(9)?,
    })
}

/// The keys of a lead batch that must be new: which one a failed batch stored twice (both
/// backends name it the same way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeadUnique {
    LeadId,
    EventId,
}

impl LeadUnique {
    /// The batch's keys of this kind, as text.
    pub(crate) fn keys(self, batch: &LeadBatch<'_>) -> Vec<String> {
        match self {
            LeadUnique::LeadId => batch.new_leads.iter().map(|l| l.id.to_string()).collect(),
            LeadUnique::EventId => batch.arrivals.iter().map(|a| a.event_id.clone()).collect(),
        }
    }

    /// The error a batch fails with: the key given twice in it, else `stored` (the first of
    /// its keys the store already held), named.
    pub(crate) fn refused(self, batch: &LeadBatch<'_>, stored: Option<String>) -> StoreError {
        let keys = self.keys(batch);
        let mut seen = std::collections::HashSet::with_capacity(keys.len());
        let twice = keys.iter().find(|k| !seen.insert(k.as_str())).cloned();
        let what = match self {
            LeadUnique::LeadId => "a lead id",
            LeadUnique::EventId => "an arrival's event id",
        };
        StoreError::Corrupt(match (twice, stored) {
            (Some(k), _) => format!("{what} {k:?} is twice in one batch; nothing of it was stored"),
            (None, Some(k)) => {
                format!("{what} {k:?} is already stored; nothing of the batch was stored")
            }
            (None, None) => format!(
                "{what} (or another key) of the batch is already stored; nothing of it was stored"
            ),
        })
    }
}

/// Why a batch was not committed.
enum Failed {
    Store(StoreError),
    Duplicate(LeadUnique),
}

impl<E: Into<StoreError>> From<E> for Failed {
    fn from(e: E) -> Failed {
        Failed::Store(e.into())
    }
}

/// A unique or primary key violation as `Duplicate(which)`, anything else as it is.
fn unique(which: LeadUnique) -> impl Fn(StoreError) -> Failed {
    move |e| match &e {
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, _))
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            Failed::Duplicate(which)
        }
        _ => Failed::Store(e),
    }
}

/// Values as a JSON array, for `IN (SELECT value FROM json_each(?))`.
fn json<T: serde::Serialize + ?Sized>(values: &T) -> String {
    serde_json::to_string(values).unwrap_or_default()
}

/// Rows of a cached statement.
fn rows<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Runs `f` in a fenced `IMMEDIATE` transaction on the write connection.
fn write<T>(
    store: &SqliteStore,
    tenant: TenantId,
    f: impl FnOnce(&Transaction<'_>) -> Result<T>,
) -> Result<T> {
    let mut conn = store.conn();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    fenced(&tx, &store.fences, tenant)?;
    let out = f(&tx)?;
    tx.commit()?;
    Ok(out)
}

fn write_batch(tx: &Transaction<'_>, tenant: TenantId, b: &LeadBatch<'_>) -> Result<(), Failed> {
    if !b.new_groups.is_empty() {
        let rows = b.new_groups;
        insert_many_then(
            tx,
            "INSERT INTO fan_groups (tenant_id, id, name, template, capacity, owner, members, created_at) VALUES",
            "",
            8,
            rows.len(),
            |i, v| {
                let r = &rows[i];
                v.extend_from_slice(&[
                    &tenant,
                    &r.id,
                    &r.name,
                    &r.template,
                    &r.capacity,
                    &r.owner,
                    &r.members,
                    &r.created_at,
                ]);
            },
        )?;
    }
    if !b.new_leads.is_empty() {
        let rows = b.new_leads;
        insert_many_then(
            tx,
            "INSERT INTO leads (tenant_id, id, fan, state, team, owner, created_at, assigned_at, first_contact_due, first_contact_at, last_follow_up_at, escalated_at, closed_at, channel, province, city, clue_state, intention, updated_at) VALUES",
            "",
            19,
            rows.len(),
            |i, v| {
                let r = &rows[i];
                v.extend_from_slice(&[
                    &tenant,
                    &r.id,
                    &r.fan,
                    &r.state,
                    &r.team,
                    &r.owner,
                    &r.created_at,
                    &r.assigned_at,
                    &r.first_contact_due,
                    &r.first_contact_at,
                    &r.last_follow_up_at,
                    &r.escalated_at,
                    &r.closed_at,
                    &r.channel,
                    &r.province,
                    &r.city,
                    &r.clue_state,
                    &r.intention,
                    &r.updated_at,
                ]);
            },
        )
        .map_err(unique(LeadUnique::LeadId))?;
    }
    if !b.updated_leads.is_empty() {
        let mut update = tx.prepare_cached(
            "UPDATE leads SET fan = ?3, state = ?4, team = ?5, owner = ?6, assigned_at = ?7,
                 first_contact_due = ?8, first_contact_at = ?9, last_follow_up_at = ?10,
                 escalated_at = ?11, closed_at = ?12, channel = ?13, province = ?14, city = ?15,
                 clue_state = ?16, intention = ?17, updated_at = ?18
             WHERE tenant_id = ?1 AND id = ?2",
        )?;
        for r in b.updated_leads {
            let n = update.execute(params![
                tenant,
                r.id,
                r.fan,
                r.state,
                r.team,
                r.owner,
                r.assigned_at,
                r.first_contact_due,
                r.first_contact_at,
                r.last_follow_up_at,
                r.escalated_at,
                r.closed_at,
                r.channel,
                r.province,
                r.city,
                r.clue_state,
                r.intention,
                r.updated_at
            ])?;
            if n == 0 {
                return Err(Failed::Store(StoreError::Corrupt(format!(
                    "lead {} is not stored; nothing of the batch was stored",
                    r.id
                ))));
            }
        }
    }
    if !b.arrivals.is_empty() {
        let rows = b.arrivals;
        insert_many_then(
            tx,
            "INSERT INTO lead_arrivals (tenant_id, event_id, lead, channel, ts, repeat) VALUES",
            "",
            6,
            rows.len(),
            |i, v| {
                let r = &rows[i];
                v.extend_from_slice(&[&tenant, &r.event_id, &r.lead, &r.channel, &r.ts, &r.repeat]);
            },
        )
        .map_err(unique(LeadUnique::EventId))?;
    }
    if !b.moved_arrivals.is_empty() {
        let mut update = tx.prepare_cached(
            "UPDATE lead_arrivals SET lead = ?3 WHERE tenant_id = ?1 AND event_id = ?2",
        )?;
        for (event_id, lead) in b.moved_arrivals {
            update.execute(params![tenant, event_id, lead])?;
        }
    }
    if !b.log.is_empty() {
        let rows = b.log;
        insert_many_then(
            tx,
            "INSERT INTO lead_log (tenant_id, id, lead, at, kind, agent, result, detail) VALUES",
            "",
            8,
            rows.len(),
            |i, v| {
                let r = &rows[i];
                v.extend_from_slice(&[
                    &tenant, &r.id, &r.lead, &r.at, &r.kind, &r.agent, &r.result, &r.detail,
                ]);
            },
        )?;
    }
    if !b.agent_days.is_empty() {
        let rows = b.agent_days;
        insert_many_then(
            tx,
            "INSERT INTO agent_days (tenant_id, agent, day, count) VALUES",
            "ON CONFLICT (tenant_id, agent, day) DO UPDATE SET count = count + excluded.count",
            4,
            rows.len(),
            |i, v| {
                let r = &rows[i];
                v.extend_from_slice(&[&tenant, &r.agent, &r.day, &r.count]);
            },
        )?;
    }
    if !b.pointers.is_empty() {
        let mut update = tx.prepare_cached(
            "UPDATE teams SET last_agent = ?3 WHERE tenant_id = ?1 AND name = ?2",
        )?;
        for (team, agent) in b.pointers {
            update.execute(params![tenant, team, agent])?;
        }
    }
    if !b.members.is_empty() {
        let rows = b.members;
        insert_many_then(
            tx,
            "INSERT INTO group_members (tenant_id, group_id, fan, joined_at, left_at, active_at) VALUES",
            "ON CONFLICT (tenant_id, group_id, fan) DO UPDATE SET
                 joined_at = excluded.joined_at, left_at = excluded.left_at,
                 active_at = excluded.active_at",
            6,
            rows.len(),
            |i, v| {
                let r = &rows[i];
                v.extend_from_slice(&[
                    &tenant,
                    &r.group,
                    &r.fan,
                    &r.joined_at,
                    &r.left_at,
                    &r.active_at,
                ]);
            },
        )?;
    }
    if !b.invites.is_empty() {
        let rows = b.invites;
        insert_many_then(
            tx,
            "INSERT INTO group_invites (tenant_id, group_id, fan, invited_at) VALUES",
            "ON CONFLICT (tenant_id, group_id, fan) DO UPDATE SET invited_at = excluded.invited_at",
            4,
            rows.len(),
            |i, v| {
                let r = &rows[i];
                v.extend_from_slice(&[&tenant, &r.group, &r.fan, &r.invited_at]);
            },
        )?;
    }
    if !b.members.is_empty() {
        // A fan in the group no longer holds a seat by invitation.
        let mut seated = tx.prepare_cached(
            "DELETE FROM group_invites WHERE tenant_id = ?1 AND group_id = ?2 AND fan = ?3",
        )?;
        for m in b.members.iter().filter(|m| m.left_at.is_none()) {
            seated.execute(params![tenant, m.group, m.fan])?;
        }
    }
    crate::sqlite_journeys::insert_tasks(tx, tenant, b.tasks)?;
    if !b.group_sizes.is_empty() {
        let mut update = tx.prepare_cached(
            "UPDATE fan_groups SET members = ?3 WHERE tenant_id = ?1 AND id = ?2",
        )?;
        for (group, members) in b.group_sizes {
            update.execute(params![tenant, group, members])?;
        }
    }
    if !b.group_days.is_empty() {
        let rows = b.group_days;
        insert_many_then(
            tx,
            "INSERT INTO group_days (tenant_id, group_id, day, joins, leaves, messages) VALUES",
            "ON CONFLICT (tenant_id, group_id, day) DO UPDATE SET
                 joins = joins + excluded.joins, leaves = leaves + excluded.leaves,
                 messages = messages + excluded.messages",
            6,
            rows.len(),
            |i, v| {
                let r = &rows[i];
                v.extend_from_slice(&[&tenant, &r.group, &r.day, &r.joins, &r.leaves, &r.messages]);
            },
        )?;
    }
    if let Some((consumer, after)) = b.cursor {
        tx.prepare_cached(
            "INSERT INTO trigger_cursors (tenant_id, consumer, after_id, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (tenant_id, consumer) DO UPDATE SET after_id = ?3, updated_at = ?4",
        )?
        .execute(params![tenant, consumer, after, b.now])?;
    }
    Ok(())
}

/// The first of `which`'s keys of the batch the store holds.
fn stored_key(
    conn: &Connection,
    tenant: TenantId,
    which: LeadUnique,
    b: &LeadBatch<'_>,
) -> Result<Option<String>> {
    Ok(match which {
        LeadUnique::LeadId => {
            let ids: Vec<i64> = b.new_leads.iter().map(|l| l.id).collect();
            conn.query_row(
                "SELECT id FROM leads WHERE tenant_id = ?1
                   AND id IN (SELECT value FROM json_each(?2)) ORDER BY id LIMIT 1",
                params![tenant, json(&ids)],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .map(|id| id.to_string())
        }
        LeadUnique::EventId => conn
            .query_row(
                "SELECT event_id FROM lead_arrivals WHERE tenant_id = ?1
                   AND event_id IN (SELECT value FROM json_each(?2)) ORDER BY event_id LIMIT 1",
                params![tenant, json(&which.keys(b))],
                |r| r.get(0),
            )
            .optional()?,
    })
}

impl Leads for SqliteStore {
    fn put_team(&self, tenant: TenantId, team: &StoredTeam) -> Result<()> {
        write(self, tenant, |tx| {
            tx.prepare_cached(
                "INSERT INTO teams (tenant_id, name, strategy, first_contact_ms, recycle_ms, lead_agent, escalate, last_agent, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (tenant_id, name) DO UPDATE SET
                     strategy = excluded.strategy, first_contact_ms = excluded.first_contact_ms,
                     recycle_ms = excluded.recycle_ms, lead_agent = excluded.lead_agent,
                     escalate = excluded.escalate, updated_at = excluded.updated_at",
            )?
            .execute(params![
                tenant,
                team.name,
                team.strategy,
                team.first_contact_ms,
                team.recycle_ms,
                team.lead_agent,
                team.escalate,
                team.last_agent,
                team.created_at,
                team.updated_at
            ])?;
            Ok(())
        })
    }

    fn teams(&self, tenant: TenantId) -> Result<Vec<StoredTeam>> {
        self.read(|c| {
            rows(
                c,
                "SELECT name, strategy, first_contact_ms, recycle_ms, lead_agent, escalate,
                        last_agent, created_at, updated_at
                 FROM teams WHERE tenant_id = ?1 ORDER BY name",
                [tenant],
                |r| {
                    Ok(StoredTeam {
                        name: r.get(0)?,
                        strategy: r.get(1)?,
                        first_contact_ms: r.get(2)?,
                        recycle_ms: r.get(3)?,
                        lead_agent: r.get(4)?,
                        escalate: r.get(5)?,
                        last_agent: r.get(6)?,
                        created_at: r.get(7)?,
                        updated_at: r.get(8)?,
                    })
                },
            )
        })
    }

    fn put_agent(&self, tenant: TenantId, agent: &StoredAgent) -> Result<()> {
        let (start, end) = agent.hours.unzip();
        write(self, tenant, |tx| {
            tx.prepare_cached(
                "INSERT INTO agents (tenant_id, name, team, capacity, daily_cap, hours_start, hours_end, weight, active, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (tenant_id, name) DO UPDATE SET
                     team = excluded.team, capacity = excluded.capacity,
                     daily_cap = excluded.daily_cap, hours_start = excluded.hours_start,
                     hours_end = excluded.hours_end, weight = excluded.weight,
                     active = excluded.active, updated_at = excluded.updated_at",
            )?
            .execute(params![
                tenant,
                agent.name,
                agent.team,
                agent.capacity,
                agent.daily_cap,
                start,
                end,
                agent.weight,
                agent.active,
                agent.created_at,
                agent.updated_at
            ])?;
            Ok(())
        })
    }

    fn agents(&self, tenant: TenantId) -> Result<Vec<StoredAgent>> {
        self.read(|c| {
            rows(
                c,
                &format!("SELECT {AGENT_COLUMNS} FROM agents WHERE tenant_id = ?1 ORDER BY name"),
                [tenant],
                agent_from_row,
            )
        })
    }

    fn put_lead_rules(&self, tenant: TenantId, rules: &[StoredRule]) -> Result<()> {
        write(self, tenant, |tx| {
            tx.prepare_cached("DELETE FROM lead_rules WHERE tenant_id = ?1")?
                .execute([tenant])?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO lead_rules (tenant_id, id, position, expr, team, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for (i, r) in rules.iter().enumerate() {
                let position = i32::try_from(i + 1).unwrap_or(i32::MAX);
                insert.execute(params![
                    tenant,
                    r.id,
                    position,
                    r.expr,
                    r.team,
                    r.created_at
                ])?;
            }
            Ok(())
        })
    }

    fn lead_rules(&self, tenant: TenantId) -> Result<Vec<StoredRule>> {
        self.read(|c| {
            rows(
                c,
                "SELECT id, position, expr, team, created_at FROM lead_rules
                 WHERE tenant_id = ?1 ORDER BY position, id",
                [tenant],
                |r| {
                    Ok(StoredRule {
                        id: r.get(0)?,
                        position: r.get(1)?,
                        expr: r.get(2)?,
                        team: r.get(3)?,
                        created_at: r.get(4)?,
                    })
                },
            )
        })
    }

    fn lead_ids(&self, tenant: TenantId) -> Result<LeadIds> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT (SELECT COALESCE(MAX(id), 0) FROM leads WHERE tenant_id = ?1),
                        (SELECT COALESCE(MAX(id), 0) FROM lead_log WHERE tenant_id = ?1),
                        (SELECT COALESCE(MAX(id), 0) FROM fan_groups WHERE tenant_id = ?1)",
            )?
            .query_row([tenant], |r| {
                Ok(LeadIds {
                    lead: r.get(0)?,
                    log: r.get(1)?,
                    group: r.get(2)?,
                })
            })?)
        })
    }

    fn commit_leads(&self, tenant: TenantId, batch: &LeadBatch<'_>) -> Result<()> {
        let mut conn = self.conn();
        let outcome: Result<(), Failed> = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            fenced(&tx, &self.fences, tenant)?;
            write_batch(&tx, tenant, batch)?;
            tx.commit()?;
            Ok(())
        })();
        match outcome {
            Ok(()) => Ok(()),
            Err(Failed::Store(e)) => Err(e),
            // Rolled back: what the store holds is what was committed before.
            Err(Failed::Duplicate(which)) => {
                Err(which.refused(batch, stored_key(&conn, tenant, which, batch)?))
            }
        }
    }

    fn leads(&self, tenant: TenantId, filter: &LeadFilter<'_>) -> Result<Vec<StoredLead>> {
        self.read(|c| {
            rows(
                c,
                &format!(
                    "SELECT {LEAD_COLUMNS} FROM leads
                     WHERE tenant_id = ?1 AND (?2 IS NULL OR state = ?2)
                       AND (?3 IS NULL OR owner = ?3) AND (?4 IS NULL OR team = ?4)
                       AND (?5 IS NULL OR fan = ?5)
                       AND (NOT ?6 OR state NOT IN {CLOSED_STATES})
                       AND (NOT ?7 OR owner IS NULL)
                     ORDER BY id LIMIT ?8"
                ),
                params![
                    tenant,
                    filter.state,
                    filter.owner,
                    filter.team,
                    filter.fan,
                    filter.open,
                    filter.pooled,
                    i64::try_from(filter.limit).unwrap_or(i64::MAX)
                ],
                lead_from_row,
            )
        })
    }

    fn lead(&self, tenant: TenantId, id: i64) -> Result<Option<StoredLead>> {
        self.read(|c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {LEAD_COLUMNS} FROM leads WHERE tenant_id = ?1 AND id = ?2"
            ))?
            .query_row(params![tenant, id], lead_from_row)
            .optional()?)
        })
    }

    fn open_leads_of(&self, tenant: TenantId, fans: &[i64]) -> Result<Vec<StoredLead>> {
        if fans.is_empty() {
            return Ok(Vec::new());
        }
        self.read(|c| {
            rows(
                c,
                &format!(
                    "SELECT {LEAD_COLUMNS} FROM leads
                     WHERE tenant_id = ?1 AND fan IN (SELECT value FROM json_each(?2))
                       AND state NOT IN {CLOSED_STATES}
                     ORDER BY id"
                ),
                params![tenant, json(fans)],
                lead_from_row,
            )
        })
    }

    fn arrivals(&self, tenant: TenantId, lead: i64) -> Result<Vec<StoredArrival>> {
        self.read(|c| {
            rows(
                c,
                "SELECT lead, event_id, channel, ts, repeat FROM lead_arrivals
                 WHERE tenant_id = ?1 AND lead = ?2 ORDER BY ts, event_id",
                params![tenant, lead],
                arrival_from_row,
            )
        })
    }

    fn arrivals_of(&self, tenant: TenantId, leads: &[i64]) -> Result<Vec<StoredArrival>> {
        if leads.is_empty() {
            return Ok(Vec::new());
        }
        self.read(|c| {
            rows(
                c,
                "SELECT lead, event_id, channel, ts, repeat FROM lead_arrivals
                 WHERE tenant_id = ?1 AND lead IN (SELECT value FROM json_each(?2))
                 ORDER BY lead, ts, event_id",
                params![tenant, serde_json::to_string(leads).unwrap_or_default()],
                arrival_from_row,
            )
        })
    }

    fn arrivals_known(&self, tenant: TenantId, event_ids: &[&str]) -> Result<Vec<String>> {
        if event_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.read(|c| {
            rows(
                c,
                "SELECT event_id FROM lead_arrivals
                 WHERE tenant_id = ?1 AND event_id IN (SELECT value FROM json_each(?2))
                 ORDER BY event_id",
                params![tenant, json(event_ids)],
                |r| r.get(0),
            )
        })
    }

    fn lead_log(&self, tenant: TenantId, lead: i64) -> Result<Vec<StoredLeadLog>> {
        self.read(|c| {
            rows(
                c,
                "SELECT id, lead, at, kind, agent, result, detail FROM lead_log
                 WHERE tenant_id = ?1 AND lead = ?2 ORDER BY id",
                params![tenant, lead],
                |r| {
                    Ok(StoredLeadLog {
                        id: r.get(0)?,
                        lead: r.get(1)?,
                        at: r.get(2)?,
                        kind: r.get(3)?,
                        agent: r.get(4)?,
                        result: r.get(5)?,
                        detail: r.get(6)?,
                    })
                },
            )
        })
    }

    fn open_per_owner(&self, tenant: TenantId) -> Result<Vec<(String, i64)>> {
        self.read(|c| {
            rows(
                c,
                &format!(
                    "SELECT owner, COUNT(*) FROM leads
                     WHERE tenant_id = ?1 AND owner IS NOT NULL AND state NOT IN {CLOSED_STATES}
                     GROUP BY owner ORDER BY owner"
                ),
                [tenant],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
    }

    fn agent_days(&self, tenant: TenantId, day: i32) -> Result<Vec<AgentDay>> {
        self.read(|c| {
            rows(
                c,
                "SELECT agent, day, count FROM agent_days
                 WHERE tenant_id = ?1 AND day = ?2 ORDER BY agent",
                params![tenant, day],
                |r| {
                    Ok(AgentDay {
                        agent: r.get(0)?,
                        day: r.get(1)?,
                        count: r.get(2)?,
                    })
                },
            )
        })
    }

    fn groups(&self, tenant: TenantId) -> Result<Vec<StoredGroup>> {
        self.read(|c| {
            rows(
                c,
                "SELECT id, name, template, capacity, owner, members, created_at FROM fan_groups
                 WHERE tenant_id = ?1 ORDER BY id",
                [tenant],
                |r| {
                    Ok(StoredGroup {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        template: r.get(2)?,
                        capacity: r.get(3)?,
                        owner: r.get(4)?,
                        members: r.get(5)?,
                        created_at: r.get(6)?,
                    })
                },
            )
        })
    }

    fn members(
        &self,
        tenant: TenantId,
        group: i64,
        fans: Option<&[i64]>,
    ) -> Result<Vec<StoredMember>> {
        self.read(|c| {
            rows(
                c,
                "SELECT group_id, fan, joined_at, left_at, active_at FROM group_members
                 WHERE tenant_id = ?1 AND group_id = ?2
                   AND (?3 IS NULL OR fan IN (SELECT value FROM json_each(?3)))
                 ORDER BY joined_at, fan",
                params![tenant, group, fans.map(json)],
                |r| {
                    Ok(StoredMember {
                        group: r.get(0)?,
                        fan: r.get(1)?,
                        joined_at: r.get(2)?,
                        left_at: r.get(3)?,
                        active_at: r.get(4)?,
                    })
                },
            )
        })
    }

    fn invites_held(
        &self,
        tenant: TenantId,
        since: siyu_domain::Millis,
    ) -> Result<Vec<(i64, i64)>> {
        self.read(|c| {
            rows(
                c,
                "SELECT group_id, COUNT(*) FROM group_invites
                 WHERE tenant_id = ?1 AND invited_at >= ?2 GROUP BY group_id ORDER BY group_id",
                params![tenant, since],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
    }

    fn invites_of(&self, tenant: TenantId, fans: &[i64]) -> Result<Vec<StoredInvite>> {
        if fans.is_empty() {
            return Ok(Vec::new());
        }
        self.read(|c| {
            rows(
                c,
                "SELECT group_id, fan, invited_at FROM group_invites
                 WHERE tenant_id = ?1 AND fan IN (SELECT value FROM json_each(?2))
                 ORDER BY group_id, fan",
                params![tenant, serde_json::to_string(fans).unwrap_or_default()],
                |r| {
                    Ok(StoredInvite {
                        group: r.get(0)?,
                        fan: r.get(1)?,
                        invited_at: r.get(2)?,
                    })
                },
            )
        })
    }

    fn groups_of(&self, tenant: TenantId, fan: i64) -> Result<Vec<i64>> {
        self.read(|c| {
            rows(
                c,
                "SELECT group_id FROM group_members
                 WHERE tenant_id = ?1 AND fan = ?2 AND left_at IS NULL ORDER BY group_id",
                params![tenant, fan],
                |r| r.get(0),
            )
        })
    }

    fn group_days(&self, tenant: TenantId, group: i64, from_day: i32) -> Result<Vec<GroupDay>> {
        self.read(|c| {
            rows(
                c,
                "SELECT group_id, day, joins, leaves, messages FROM group_days
                 WHERE tenant_id = ?1 AND group_id = ?2 AND day >= ?3 ORDER BY day",
                params![tenant, group, from_day],
                |r| {
                    Ok(GroupDay {
                        group: r.get(0)?,
                        day: r.get(1)?,
                        joins: r.get(2)?,
                        leaves: r.get(3)?,
                        messages: r.get(4)?,
                    })
                },
            )
        })
    }
}

fn arrival_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredArrival> {
    Ok(StoredArrival {
        lead: r.get(0)?,
        event_id: r.get(1)?,
        channel: r.get(2)?,
        ts: r.get(3)?,
        repeat: r.get(4)?,
    })
}

impl crate::spend::Spend for SqliteStore {
    fn put_spend(
        &self,
        tenant: TenantId,
        rows: &[crate::spend::StoredSpend],
        now: siyu_domain::Millis,
    ) -> Result<usize> {
        write(self, tenant, |tx| {
            let mut known = tx.prepare_cached(
                "SELECT 1 FROM spend WHERE tenant_id = ?1 AND day = ?2 AND channel = ?3 AND domain = ?4",
            )?;
            let mut put = tx.prepare_cached(
                "INSERT INTO spend (tenant_id, day, channel, domain, amount_fen, imported_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (tenant_id, day, channel, domain) DO UPDATE SET
                     amount_fen = excluded.amount_fen, imported_at = excluded.imported_at",
            )?;
            let mut replaced = 0;
            for r in rows {
                replaced += usize::from(known.exists(params![tenant, r.day, r.channel, r.domain])?);
                put.execute(params![
                    tenant,
                    r.day,
                    r.channel,
                    r.domain,
                    r.amount_fen,
                    now
                ])?;
            }
            Ok(replaced)
        })
    }

    fn spend(
        &self,
        tenant: TenantId,
        from_day: i32,
        to_day: i32,
    ) -> Result<Vec<crate::spend::StoredSpend>> {
        self.read(|c| {
            rows(
                c,
                "SELECT day, channel, domain, amount_fen FROM spend
                 WHERE tenant_id = ?1 AND day >= ?2 AND day < ?3 ORDER BY day, channel, domain",
                params![tenant, from_day, to_day],
                |r| {
                    Ok(crate::spend::StoredSpend {
                        day: r.get(0)?,
                        channel: r.get(1)?,
                        domain: r.get(2)?,
                        amount_fen: r.get(3)?,
                    })
                },
            )
        })
    }
}
