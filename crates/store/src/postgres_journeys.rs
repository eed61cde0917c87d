//! The PostgreSQL backend of [`crate::journeys::Journeys`] (tables of migration 13).
//!
//! A batch of the journey worker is one transaction on the writer's connection, fenced
//! (`FOR SHARE` on the lease row) like every derived write, with one statement per kind of
//! row, so a batch of thousands of rows is a dozen round trips: new runs, history lines and
//! outbox rows go in by binary `COPY` (the fastest way in), updates and upserts take all of
//! the batch's rows of their kind from arrays (`unnest`), as the event log's appends do. An
//! upsert cannot touch one row twice in a statement, so the counters' deltas
//! are summed and the fans' facts deduplicated (the last wins) before they are sent. A
//! unique key stored twice fails the transaction; which key it was is asked afterwards.
//! Reads use the reader's connection.

use std::collections::HashMap;

use postgres::Client;
use postgres::error::SqlState;
use postgres::types::Type;
use siyu_domain::Millis;

use crate::journeys::*;
use crate::postgres::{PostgresStore, fenced, sql_limit};
use crate::{Result, StoreError, TenantId};

const RUN_COLUMNS: &str = "id, journey, version, fan, entry_key, state, step, wake_at, entered_at, goal_by, updated_at, data";

fn run_from_row(r: &postgres::Row) -> StoredRun {
    StoredRun {
        id: r.get(0),
        journey: r.get(1),
        version: r.get(2),
        fan: r.get(3),
        entry_key: r.get(4),
        state: r.get(5),
        step: r.get(6),
        wake_at: r.get(7),
        entered_at: r.get(8),
        goal_by: r.get(9),
        updated_at: r.get(10),
        data: r.get(11),
    }
}

const OUTBOX_COLUMNS: &str = "id, channel, run, step, fan, key, payload, state, attempts, next_at, created_at, settled_at, answer";

fn outbox_from_row(r: &postgres::Row) -> StoredOutbox {
    StoredOutbox {
        id: r.get(0),
        channel: r.get(1),
        run: r.get(2),
        step: r.get(3),
        fan: r.get(4),
        key: r.get(5),
        payload: r.get(6),
        state: r.get(7),
        attempts: r.get(8),
        next_at: r.get(9),
        created_at: r.get(10),
        settled_at: r.get(11),
        answer: r.get(12),
    }
}

const TASK_COLUMNS: &str =
    "id, team, text, fan, run, step, state, agent, outcome, created_at, due_at, updated_at";

fn task_from_row(r: &postgres::Row) -> StoredTask {
    StoredTask {
        id: r.get(0),
        team: r.get(1),
        text: r.get(2),
        fan: r.get(3),
        run: r.get(4),
        step: r.get(5),
        state: r.get(6),
        agent: r.get(7),
        outcome: r.get(8),
        created_at: r.get(9),
        due_at: r.get(10),
        updated_at: r.get(11),
    }
}

/// Why a batch was not committed.
enum Failed {
    Store(StoreError),
    Duplicate(Unique),
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
fn unique(which: Unique) -> impl Fn(postgres::Error) -> Failed {
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
fn last_by<R, K: std::hash::Hash + Eq>(rows: &[R], key: impl Fn(&R) -> K) -> Vec<&R> {
    let mut last: HashMap<K, usize> = HashMap::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        last.insert(key(r), i);
    }
    let mut keep: Vec<usize> = last.into_values().collect();
    keep.sort_unstable();
    keep.into_iter().map(|i| &rows[i]).collect()
}

/// One value of a row to copy.
type Value<'v> = &'v (dyn postgres::types::ToSql + Sync);

const I2: Type = Type::INT2;
const I4: Type = Type::INT4;
const I8: Type = Type::INT8;
const TEXT: Type = Type::TEXT;

/// Inserts rows with `COPY ... FROM STDIN BINARY` (`sql`), each row its values of `types`:
/// the fastest way in for the batch's inserts, a fifth faster than `unnest` here.
fn copy_in<'v, const N: usize>(
    tx: &mut postgres::Transaction<'_>,
    sql: &str,
    types: &[Type; N],
    rows: impl Iterator<Item = [Value<'v>; N]>,
) -> Result<(), postgres::Error> {
    let mut w = postgres::binary_copy::BinaryCopyInWriter::new(tx.copy_in(sql)?, types);
    for row in rows {
        w.write(&row)?;
    }
    w.finish()?;
    Ok(())
}

/// Staff tasks, inserted (the journey worker's and the lead worker's).
pub(crate) fn insert_tasks(
    tx: &mut postgres::Transaction<'_>,
    tenant: TenantId,
    rows: &[StoredTask],
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    tx.execute(
        "INSERT INTO tasks (tenant_id, id, team, text, fan, run, step, state, agent, outcome, created_at, due_at, updated_at)
         SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::text[],
                                  $8::smallint[], $9::text[], $10::text[], $11::bigint[], $12::bigint[], $13::bigint[])",
        &[
            &tenant,
            &col(rows, |r| r.id),
            &col(rows, |r| r.team.as_str()),
            &col(rows, |r| r.text.as_str()),
            &col(rows, |r| r.fan),
            &col(rows, |r| r.run),
            &col(rows, |r| r.step.as_deref()),
            &col(rows, |r| r.state),
            &col(rows, |r| r.agent.as_deref()),
            &col(rows, |r| r.outcome.as_deref()),
            &col(rows, |r| r.created_at),
            &col(rows, |r| r.due_at),
            &col(rows, |r| r.updated_at),
        ],
    )?;
    Ok(())
}

fn write_batch(
    c: &mut Client,
    fences: &crate::Fences,
    tenant: TenantId,
    b: &RunBatch<'_>,
) -> Result<(), Failed> {
    let mut tx = c.transaction()?;
    fenced(&mut tx, fences, tenant)?;
    let rows = b.new_runs;
    if !rows.is_empty() {
        copy_in(
            &mut tx,
            "COPY journey_runs (tenant_id, id, journey, version, fan, entry_key, state, step, wake_at, entered_at, goal_by, updated_at, data) FROM STDIN BINARY",
            &[I8, I8, TEXT, I8, I8, TEXT, I2, I4, I8, I8, I8, I8, TEXT],
            rows.iter().map(|r| {
                [
                    &tenant as Value<'_>,
                    &r.id,
                    &r.journey,
                    &r.version,
                    &r.fan,
                    &r.entry_key,
                    &r.state,
                    &r.step,
                    &r.wake_at,
                    &r.entered_at,
                    &r.goal_by,
                    &r.updated_at,
                    &r.data,
                ]
            }),
        )
        .map_err(unique(Unique::EntryKey))?;
    }
    if !b.updated_runs.is_empty() {
        let rows = last_by(b.updated_runs, |r| r.id);
        let updated: std::collections::HashSet<i64> = tx
            .query(
                "UPDATE journey_runs r SET fan = u.fan, state = u.state, step = u.step, wake_at = u.wake_at,
                     goal_by = u.goal_by, updated_at = u.updated_at, data = u.data
                 FROM unnest($2::bigint[], $3::bigint[], $4::smallint[], $5::integer[], $6::bigint[],
                             $7::bigint[], $8::bigint[], $9::text[])
                      AS u(id, fan, state, step, wake_at, goal_by, updated_at, data)
                 WHERE r.tenant_id = $1 AND r.id = u.id
                 RETURNING r.id",
                &[
                    &tenant,
                    &col(&rows, |r| r.id),
                    &col(&rows, |r| r.fan),
                    &col(&rows, |r| r.state),
                    &col(&rows, |r| r.step),
                    &col(&rows, |r| r.wake_at),
                    &col(&rows, |r| r.goal_by),
                    &col(&rows, |r| r.updated_at),
                    &col(&rows, |r| r.data.as_str()),
                ],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if let Some(r) = rows.iter().find(|r| !updated.contains(&r.id)) {
            return Err(Failed::Store(StoreError::Corrupt(format!(
                "run {} is not stored; nothing of the batch was stored",
                r.id
            ))));
        }
    }
    let rows = b.history;
    if !rows.is_empty() {
        copy_in(
            &mut tx,
            "COPY journey_history (tenant_id, run, n, at, step, kind, reason, detail) FROM STDIN BINARY",
            &[I8, I8, I4, I8, TEXT, I2, TEXT, TEXT],
            rows.iter().map(|r| {
                [
                    &tenant as Value<'_>,
                    &r.run,
                    &r.n,
                    &r.at,
                    &r.step,
                    &r.kind,
                    &r.reason,
                    &r.detail,
                ]
            }),
        )?;
    }
    let rows = b.outbox;
    if !rows.is_empty() {
        copy_in(
            &mut tx,
            "COPY outbox (tenant_id, id, channel, run, step, fan, key, payload, state, attempts, next_at, created_at, settled_at, answer) FROM STDIN BINARY",
            &[I8, I8, TEXT, I8, TEXT, I8, TEXT, TEXT, I2, I4, I8, I8, I8, TEXT],
            rows.iter().map(|r| {
                [
                    &tenant as Value<'_>,
                    &r.id,
                    &r.channel,
                    &r.run,
                    &r.step,
                    &r.fan,
                    &r.key,
                    &r.payload,
                    &r.state,
                    &r.attempts,
                    &r.next_at,
                    &r.created_at,
                    &r.settled_at,
                    &r.answer,
                ]
            }),
        )
        .map_err(unique(Unique::OutboxKey))?;
    }
    insert_tasks(&mut tx, tenant, b.tasks)?;
    if !b.variants.is_empty() {
        // (journey, version, step, arm) → (sent, converted, failed)
        type Key<'k> = (&'k str, i64, &'k str, &'k str);
        let mut sums: HashMap<Key<'_>, (i64, i64, i64)> = HashMap::new();
        for v in b.variants {
            let s = sums
                .entry((
                    v.journey.as_str(),
                    v.version,
                    v.step.as_str(),
                    v.arm.as_str(),
                ))
                .or_default();
            *s = (s.0 + v.sent, s.1 + v.converted, s.2 + v.failed);
        }
        let rows: Vec<_> = sums.into_iter().collect();
        tx.execute(
            "INSERT INTO journey_variants AS v (tenant_id, journey, version, step, arm, sent, converted, failed)
             SELECT $1, * FROM unnest($2::text[], $3::bigint[], $4::text[], $5::text[], $6::bigint[], $7::bigint[], $8::bigint[])
             ON CONFLICT (tenant_id, journey, version, step, arm) DO UPDATE SET
                 sent = v.sent + excluded.sent, converted = v.converted + excluded.converted,
                 failed = v.failed + excluded.failed",
            &[
                &tenant,
                &col(&rows, |r| r.0.0),
                &col(&rows, |r| r.0.1),
                &col(&rows, |r| r.0.2),
                &col(&rows, |r| r.0.3),
                &col(&rows, |r| r.1.0),
                &col(&rows, |r| r.1.1),
                &col(&rows, |r| r.1.2),
            ],
        )?;
    }
    if !b.fan_states.is_empty() {
        let rows = last_by(b.fan_states, |r| r.fan);
        tx.execute(
            "INSERT INTO journey_fans (tenant_id, fan, opted_out_at, opt_out_reason, authorized_at, im_in_at, im_conversation,
                                       im_message, im_replies, last_send_at, last_send_run, last_send_step)
             SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::bigint[], $6::bigint[], $7::text[],
                                      $8::text[], $9::integer[], $10::bigint[], $11::bigint[], $12::text[])
             ON CONFLICT (tenant_id, fan) DO UPDATE SET
                 opted_out_at = excluded.opted_out_at, opt_out_reason = excluded.opt_out_reason,
                 authorized_at = excluded.authorized_at, im_in_at = excluded.im_in_at,
                 im_conversation = excluded.im_conversation, im_message = excluded.im_message,
                 im_replies = excluded.im_replies, last_send_at = excluded.last_send_at,
                 last_send_run = excluded.last_send_run, last_send_step = excluded.last_send_step",
            &[
                &tenant,
                &col(&rows, |r| r.fan),
                &col(&rows, |r| r.opted_out_at),
                &col(&rows, |r| r.opt_out_reason.as_deref()),
                &col(&rows, |r| r.authorized_at),
                &col(&rows, |r| r.im_in_at),
                &col(&rows, |r| r.im_conversation.as_deref()),
                &col(&rows, |r| r.im_message.as_deref()),
                &col(&rows, |r| r.im_replies),
                &col(&rows, |r| r.last_send_at),
                &col(&rows, |r| r.last_send_run),
                &col(&rows, |r| r.last_send_step.as_deref()),
            ],
        )?;
    }
    if !b.fan_sends.is_empty() {
        let mut sums: HashMap<(i64, &str, i32), i32> = HashMap::new();
        for s in b.fan_sends {
            *sums.entry((s.fan, s.channel.as_str(), s.day)).or_default() += s.count;
        }
        let rows: Vec<_> = sums.into_iter().collect();
        tx.execute(
            "INSERT INTO fan_sends AS s (tenant_id, fan, channel, day, count)
             SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::integer[], $5::integer[])
             ON CONFLICT (tenant_id, fan, channel, day) DO UPDATE SET count = s.count + excluded.count",
            &[
                &tenant,
                &col(&rows, |r| r.0.0),
                &col(&rows, |r| r.0.1),
                &col(&rows, |r| r.0.2),
                &col(&rows, |r| r.1),
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
    which: Unique,
    b: &RunBatch<'_>,
) -> Result<Option<String>> {
    let sql = match which {
        Unique::EntryKey => {
            "SELECT entry_key FROM journey_runs WHERE tenant_id = $1 AND entry_key = ANY($2)
             ORDER BY entry_key COLLATE \"C\" LIMIT 1"
        }
        Unique::OutboxKey => {
            "SELECT key FROM outbox WHERE tenant_id = $1 AND key = ANY($2)
             ORDER BY key COLLATE \"C\" LIMIT 1"
        }
    };
    Ok(c.query_opt(sql, &[&tenant, &which.keys(b)])?
        .map(|r| r.get(0)))
}

impl Journeys for PostgresStore {
    fn put_journey(
        &self,
        tenant: TenantId,
        name: &str,
        definition: &str,
        starts_after: i64,
        now: Millis,
    ) -> Result<i64> {
        self.writer(|c| {
            let mut tx = c.transaction()?;
            // Serializes versions of the tenant's journeys across nodes.
            tx.execute(
                "SELECT 1 FROM tenants WHERE tenant_id = $1 FOR UPDATE",
                &[&tenant],
            )?;
            let version: i64 = tx
                .query_one(
                    "SELECT COALESCE(MAX(version), 0) + 1 FROM journey_versions WHERE tenant_id = $1 AND name = $2",
                    &[&tenant, &name],
                )?
                .get(0);
            tx.execute(
                "INSERT INTO journey_versions (tenant_id, name, version, definition, applied_at)
                 VALUES ($1, $2, $3, $4, $5)",
                &[&tenant, &name, &version, &definition, &now],
            )?;
            tx.execute(
                "INSERT INTO journeys (tenant_id, name, version, paused, applied_at, updated_at, starts_after)
                 VALUES ($1, $2, $3, false, $4, $4, $5)
                 ON CONFLICT (tenant_id, name) DO UPDATE SET
                     version = excluded.version, applied_at = excluded.applied_at,
                     updated_at = excluded.updated_at",
                &[&tenant, &name, &version, &now, &starts_after],
            )?;
            tx.commit()?;
            Ok(version)
        })
    }

    fn journeys(&self, tenant: TenantId) -> Result<Vec<StoredJourney>> {
        let mut out: Vec<StoredJourney> = self.reader(|c| {
            Ok(c.query(
                "SELECT j.name, j.version, v.definition, j.paused, j.applied_at, j.updated_at,
                        j.starts_after
                 FROM journeys j JOIN journey_versions v
                   ON v.tenant_id = j.tenant_id AND v.name = j.name AND v.version = j.version
                 WHERE j.tenant_id = $1",
                &[&tenant],
            )?
            .iter()
            .map(|r| StoredJourney {
                name: r.get(0),
                version: r.get(1),
                definition: r.get(2),
                paused: r.get(3),
                applied_at: r.get(4),
                updated_at: r.get(5),
                starts_after: r.get(6),
            })
            .collect())
        })?;
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn journey_version(
        &self,
        tenant: TenantId,
        name: &str,
        version: i64,
    ) -> Result<Option<String>> {
        self.reader(|c| {
            Ok(c.query_opt(
                "SELECT definition FROM journey_versions WHERE tenant_id = $1 AND name = $2 AND version = $3",
                &[&tenant, &name, &version],
            )?
            .map(|r| r.get(0)))
        })
    }

    fn set_journey_paused(
        &self,
        tenant: TenantId,
        name: &str,
        paused: bool,
        now: Millis,
    ) -> Result<bool> {
        self.writer(|c| {
            Ok(c.execute(
                "UPDATE journeys SET paused = $3, updated_at = $4 WHERE tenant_id = $1 AND name = $2",
                &[&tenant, &name, &paused, &now],
            )? > 0)
        })
    }

    fn journey_ids(&self, tenant: TenantId) -> Result<JourneyIds> {
        self.reader(|c| {
            let r = c.query_one(
                "SELECT (SELECT COALESCE(MAX(id), 0) FROM journey_runs WHERE tenant_id = $1),
                        (SELECT COALESCE(MAX(id), 0) FROM outbox WHERE tenant_id = $1),
                        (SELECT COALESCE(MAX(id), 0) FROM tasks WHERE tenant_id = $1)",
                &[&tenant],
            )?;
            Ok(JourneyIds {
                run: r.get(0),
                outbox: r.get(1),
                task: r.get(2),
            })
        })
    }

    fn commit_runs(&self, tenant: TenantId, batch: &RunBatch<'_>) -> Result<()> {
        self.writer(|c| match write_batch(c, &self.fences, tenant, batch) {
            Ok(()) => Ok(()),
            Err(Failed::Store(e)) => Err(e),
            // Rolled back: what the store holds is what was committed before.
            Err(Failed::Duplicate(which)) => {
                Err(which.refused(batch, stored_key(c, tenant, which, batch)?))
            }
        })
    }

    fn due_runs(&self, tenant: TenantId, now: Millis, limit: usize) -> Result<Vec<StoredRun>> {
        self.reader(|c| {
            Ok(c.query(
                &format!(
                    "SELECT {RUN_COLUMNS} FROM journey_runs
                     WHERE tenant_id = $1 AND wake_at IS NOT NULL AND wake_at <= $2
                     ORDER BY wake_at, id LIMIT $3"
                ),
                &[&tenant, &now, &sql_limit(limit)],
            )?
            .iter()
            .map(run_from_row)
            .collect())
        })
    }

    fn next_wake(&self, tenant: TenantId) -> Result<Option<Millis>> {
        self.reader(|c| {
            Ok(c.query_one(
                "SELECT MIN(wake_at) FROM journey_runs WHERE tenant_id = $1 AND wake_at IS NOT NULL",
                &[&tenant],
            )?
            .get(0))
        })
    }

    fn runs_of(&self, tenant: TenantId, fans: &[i64], open_only: bool) -> Result<Vec<StoredRun>> {
        if fans.is_empty() {
            return Ok(Vec::new());
        }
        self.reader(|c| {
            Ok(c.query(
                &format!(
                    "SELECT {RUN_COLUMNS} FROM journey_runs
                     WHERE tenant_id = $1 AND fan = ANY($2) AND (NOT $3 OR state < 100)
                     ORDER BY id"
                ),
                &[&tenant, &fans, &open_only],
            )?
            .iter()
            .map(run_from_row)
            .collect())
        })
    }

    fn run(&self, tenant: TenantId, id: i64) -> Result<Option<StoredRun>> {
        self.reader(|c| {
            Ok(c.query_opt(
                &format!("SELECT {RUN_COLUMNS} FROM journey_runs WHERE tenant_id = $1 AND id = $2"),
                &[&tenant, &id],
            )?
            .map(|r| run_from_row(&r)))
        })
    }

    fn run_history(&self, tenant: TenantId, run: i64) -> Result<Vec<StoredRunEvent>> {
        self.reader(|c| {
            Ok(c.query(
                "SELECT run, n, at, step, kind, reason, detail FROM journey_history
                 WHERE tenant_id = $1 AND run = $2 ORDER BY n",
                &[&tenant, &run],
            )?
            .iter()
            .map(|r| StoredRunEvent {
                run: r.get(0),
                n: r.get(1),
                at: r.get(2),
                step: r.get(3),
                kind: r.get(4),
                reason: r.get(5),
                detail: r.get(6),
            })
            .collect())
        })
    }

    fn step_counts(&self, tenant: TenantId, journey: &str) -> Result<Vec<StepCount>> {
        let mut out: Vec<StepCount> = self.reader(|c| {
            Ok(c.query(
                "SELECT r.version, h.step, h.kind, h.reason, COUNT(*)
                 FROM journey_runs r JOIN journey_history h ON h.tenant_id = r.tenant_id AND h.run = r.id
                 WHERE r.tenant_id = $1 AND r.journey = $2
                 GROUP BY r.version, h.step, h.kind, h.reason",
                &[&tenant, &journey],
            )?
            .iter()
            .map(|r| StepCount {
                version: r.get(0),
                step: r.get(1),
                kind: r.get(2),
                reason: r.get(3),
                count: r.get(4),
            })
            .collect())
        })?;
        sort_step_counts(&mut out);
        Ok(out)
    }

    fn run_counts(&self, tenant: TenantId, journey: &str) -> Result<Vec<RunCount>> {
        self.reader(|c| {
            Ok(c.query(
                "SELECT version, state, step, COUNT(*) FROM journey_runs
                 WHERE tenant_id = $1 AND journey = $2
                 GROUP BY version, state, step ORDER BY version, state, step",
                &[&tenant, &journey],
            )?
            .iter()
            .map(|r| RunCount {
                version: r.get(0),
                state: r.get(1),
                step: r.get(2),
                count: r.get(3),
            })
            .collect())
        })
    }

    fn wake_held(&self, tenant: TenantId, journey: &str, now: Millis) -> Result<usize> {
        self.writer(|client| {
            let mut tx = client.transaction()?;
            fenced(&mut tx, &self.fences, tenant)?;
            let n = tx.execute(
                "UPDATE journey_runs SET wake_at = $3
                 WHERE tenant_id = $1 AND journey = $2 AND state = 3",
                &[&tenant, &journey, &now],
            )?;
            tx.commit()?;
            Ok(n as usize)
        })
    }

    fn outbox_counts(&self, tenant: TenantId, journey: &str) -> Result<Vec<OutboxCount>> {
        self.reader(|c| {
            Ok(c.query(
                "SELECT o.step, o.state, COUNT(*) FROM outbox o
                 JOIN journey_runs r ON r.tenant_id = o.tenant_id AND r.id = o.run
                 WHERE o.tenant_id = $1 AND r.journey = $2 AND o.channel NOT LIKE 'siyu.%'
                 GROUP BY o.step, o.state ORDER BY o.step, o.state",
                &[&tenant, &journey],
            )?
            .iter()
            .map(|r| OutboxCount {
                step: r.get(0),
                state: r.get(1),
                count: r.get(2),
            })
            .collect())
        })
    }

    fn variants(&self, tenant: TenantId, journey: &str) -> Result<Vec<StoredVariant>> {
        let mut out: Vec<StoredVariant> = self.reader(|c| {
            Ok(c.query(
                "SELECT version, step, arm, sent, converted, failed FROM journey_variants
                 WHERE tenant_id = $1 AND journey = $2",
                &[&tenant, &journey],
            )?
            .iter()
            .map(|r| StoredVariant {
                version: r.get(0),
                step: r.get(1),
                arm: r.get(2),
                sent: r.get(3),
                converted: r.get(4),
                failed: r.get(5),
            })
            .collect())
        })?;
        sort_variants(&mut out);
        Ok(out)
    }

    fn fan_states(&self, tenant: TenantId, fans: &[i64]) -> Result<Vec<StoredFanState>> {
        if fans.is_empty() {
            return Ok(Vec::new());
        }
        self.reader(|c| {
            Ok(c.query(
                "SELECT fan, opted_out_at, opt_out_reason, authorized_at, im_in_at, im_conversation,
                        im_message, im_replies, last_send_at, last_send_run, last_send_step
                 FROM journey_fans WHERE tenant_id = $1 AND fan = ANY($2) ORDER BY fan",
                &[&tenant, &fans],
            )?
            .iter()
            .map(|r| StoredFanState {
                fan: r.get(0),
                opted_out_at: r.get(1),
                opt_out_reason: r.get(2),
                authorized_at: r.get(3),
                im_in_at: r.get(4),
                im_conversation: r.get(5),
                im_message: r.get(6),
                im_replies: r.get(7),
                last_send_at: r.get(8),
                last_send_run: r.get(9),
                last_send_step: r.get(10),
            })
            .collect())
        })
    }

    fn fan_sends(&self, tenant: TenantId, fans: &[i64], day: i32) -> Result<Vec<FanSends>> {
        if fans.is_empty() {
            return Ok(Vec::new());
        }
        let mut out: Vec<FanSends> = self.reader(|c| {
            Ok(c.query(
                "SELECT fan, channel, day, count FROM fan_sends
                 WHERE tenant_id = $1 AND fan = ANY($2) AND day = $3",
                &[&tenant, &fans, &day],
            )?
            .iter()
            .map(|r| FanSends {
                fan: r.get(0),
                channel: r.get(1),
                day: r.get(2),
                count: r.get(3),
            })
            .collect())
        })?;
        sort_fan_sends(&mut out);
        Ok(out)
    }

    fn outbox_due(
        &self,
        tenant: TenantId,
        channel: &str,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<StoredOutbox>> {
        self.reader(|c| {
            Ok(c.query(
                &format!(
                    "SELECT {OUTBOX_COLUMNS} FROM outbox
                     WHERE tenant_id = $1 AND channel = $2 AND state = 0 AND next_at <= $3
                     ORDER BY next_at, id LIMIT $4"
                ),
                &[&tenant, &channel, &now, &sql_limit(limit)],
            )?
            .iter()
            .map(outbox_from_row)
            .collect())
        })
    }

    fn outbox_next_at(&self, tenant: TenantId, channel: &str) -> Result<Option<Millis>> {
        self.reader(|c| {
            Ok(c.query_one(
                "SELECT MIN(next_at) FROM outbox WHERE tenant_id = $1 AND channel = $2 AND state = 0",
                &[&tenant, &channel],
            )?
            .get(0))
        })
    }

    fn settle_outbox(
        &self,
        tenant: TenantId,
        settled: &[Settle],
        outcomes: &[StoredOutbox],
    ) -> Result<()> {
        // One row per outcome: the state it goes to, and what it sets (NULL: kept, for
        // attempts and next_at).
        let mut ids = Vec::with_capacity(settled.len());
        let mut states: Vec<i16> = Vec::with_capacity(settled.len());
        let mut attempts: Vec<Option<i32>> = Vec::with_capacity(settled.len());
        let mut next_at: Vec<Option<Millis>> = Vec::with_capacity(settled.len());
        let mut settled_at: Vec<Option<Millis>> = Vec::with_capacity(settled.len());
        let mut answers: Vec<Option<&str>> = Vec::with_capacity(settled.len());
        for s in settled {
            let (id, state, tries, next, at, answer) = match s {
                Settle::Delivered { id, at, answer } => {
                    (*id, 1, None, None, Some(*at), answer.as_deref())
                }
                Settle::Retry {
                    id,
                    attempts,
                    next_at,
                    answer,
                } => (
                    *id,
                    0,
                    Some(*attempts),
                    Some(*next_at),
                    None,
                    Some(answer.as_str()),
                ),
                Settle::Dead {
                    id,
                    attempts,
                    at,
                    answer,
                } => (
                    *id,
                    2,
                    Some(*attempts),
                    None,
                    Some(*at),
                    Some(answer.as_str()),
                ),
            };
            ids.push(id);
            states.push(state);
            attempts.push(tries);
            next_at.push(next);
            settled_at.push(at);
            answers.push(answer);
        }
        self.writer(|c| {
            let mut tx = c.transaction()?;
            fenced(&mut tx, &self.fences, tenant)?;
            if !ids.is_empty() {
                // Only pending rows change, but `o.state = 0` is tested in the assignments, not
                // in WHERE: on a table whose statistics were not yet gathered (right after a
                // burst) the planner would take that condition for the selective one and scan
                // every pending row through `outbox_due` per settling (150 ms at 300,000 rows,
                // measured), where the primary key finds each row at once.
                tx.execute(
                    "UPDATE outbox o SET
                         state = CASE WHEN o.state = 0 THEN u.state ELSE o.state END,
                         attempts = CASE WHEN o.state = 0 THEN COALESCE(u.attempts, o.attempts) ELSE o.attempts END,
                         next_at = CASE WHEN o.state = 0 THEN COALESCE(u.next_at, o.next_at) ELSE o.next_at END,
                         settled_at = CASE WHEN o.state = 0 THEN u.settled_at ELSE o.settled_at END,
                         answer = CASE WHEN o.state = 0 THEN u.answer ELSE o.answer END
                     FROM unnest($2::bigint[], $3::smallint[], $4::integer[], $5::bigint[], $6::bigint[], $7::text[])
                          AS u(id, state, attempts, next_at, settled_at, answer)
                     WHERE o.tenant_id = $1 AND o.id = u.id",
                    &[&tenant, &ids, &states, &attempts, &next_at, &settled_at, &answers],
                )?;
            }
            if !outcomes.is_empty() {
                let rows = outcomes;
                tx.execute(
                    "INSERT INTO outbox (tenant_id, id, channel, run, step, fan, key, payload, state, attempts, next_at, created_at, settled_at, answer)
                     SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::bigint[], $5::text[], $6::bigint[], $7::text[],
                                              $8::text[], $9::smallint[], $10::integer[], $11::bigint[], $12::bigint[], $13::bigint[], $14::text[])
                     ON CONFLICT DO NOTHING",
                    &[
                        &tenant,
                        &col(rows, |r| r.id),
                        &col(rows, |r| r.channel.as_str()),
                        &col(rows, |r| r.run),
                        &col(rows, |r| r.step.as_str()),
                        &col(rows, |r| r.fan),
                        &col(rows, |r| r.key.as_str()),
                        &col(rows, |r| r.payload.as_str()),
                        &col(rows, |r| r.state),
                        &col(rows, |r| r.attempts),
                        &col(rows, |r| r.next_at),
                        &col(rows, |r| r.created_at),
                        &col(rows, |r| r.settled_at),
                        &col(rows, |r| r.answer.as_deref()),
                    ],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn outbox(&self, tenant: TenantId, filter: &OutboxFilter<'_>) -> Result<Vec<StoredOutbox>> {
        self.reader(|c| {
            Ok(c.query(
                &format!(
                    "SELECT {OUTBOX_COLUMNS} FROM outbox
                     WHERE tenant_id = $1 AND ($2::smallint IS NULL OR state = $2)
                       AND ($3::text IS NULL OR channel = $3) AND ($4::bigint IS NULL OR fan = $4)
                       AND ($5::text IS NULL OR run IN
                            (SELECT id FROM journey_runs WHERE tenant_id = $1 AND journey = $5))
                     ORDER BY id DESC LIMIT $6"
                ),
                &[
                    &tenant,
                    &filter.state,
                    &filter.channel,
                    &filter.fan,
                    &filter.journey,
                    &sql_limit(filter.limit),
                ],
            )?
            .iter()
            .map(outbox_from_row)
            .collect())
        })
    }

    fn retry_dead(&self, tenant: TenantId, ids: Option<&[i64]>, now: Millis) -> Result<usize> {
        let n = self.writer(|c| {
            Ok(c.execute(
                "UPDATE outbox SET state = 0, attempts = 0, next_at = $3, settled_at = NULL
                 WHERE tenant_id = $1 AND state = 2 AND ($2::bigint[] IS NULL OR id = ANY($2))",
                &[&tenant, &ids, &now],
            )?)
        })?;
        Ok(n as usize)
    }

    fn tasks(&self, tenant: TenantId, filter: &TaskFilter<'_>) -> Result<Vec<StoredTask>> {
        self.reader(|c| {
            Ok(c.query(
                &format!(
                    "SELECT {TASK_COLUMNS} FROM tasks
                     WHERE tenant_id = $1 AND ($2::text IS NULL OR team = $2)
                       AND ($3::text IS NULL OR agent = $3) AND ($4::smallint IS NULL OR state = $4)
                     ORDER BY id LIMIT $5"
                ),
                &[
                    &tenant,
                    &filter.team,
                    &filter.agent,
                    &filter.state,
                    &sql_limit(filter.limit),
                ],
            )?
            .iter()
            .map(task_from_row)
            .collect())
        })
    }

    fn task(&self, tenant: TenantId, id: i64) -> Result<Option<StoredTask>> {
        self.reader(|c| task_on(c, tenant, id))
    }

    fn update_task(
        &self,
        tenant: TenantId,
        id: i64,
        change: &TaskChange,
        now: Millis,
    ) -> Result<Option<StoredTask>> {
        self.writer(|c| {
            let changed = match change {
                TaskChange::Claim { agent } => c.query_opt(
                    &format!(
                        "UPDATE tasks SET state = 1, agent = $3, updated_at = $4
                         WHERE tenant_id = $1 AND id = $2 AND state = 0
                         RETURNING {TASK_COLUMNS}"
                    ),
                    &[&tenant, &id, &agent, &now],
                )?,
                TaskChange::Done { agent, outcome } => c.query_opt(
                    &format!(
                        "UPDATE tasks SET state = 2, agent = COALESCE(agent, $3), outcome = $4, updated_at = $5
                         WHERE tenant_id = $1 AND id = $2 AND state IN (0, 1)
                         RETURNING {TASK_COLUMNS}"
                    ),
                    &[&tenant, &id, &agent, &outcome, &now],
                )?,
            };
            match changed {
                Some(r) => Ok(Some(task_from_row(&r))),
                None => task_on(c, tenant, id),
            }
        })
    }
}

fn task_on(c: &mut Client, tenant: TenantId, id: i64) -> Result<Option<StoredTask>> {
    Ok(c.query_opt(
        &format!("SELECT {TASK_COLUMNS} FROM tasks WHERE tenant_id = $1 AND id = $2"),
        &[&tenant, &id],
    )?
    .map(|r| task_from_row(&r)))
}
