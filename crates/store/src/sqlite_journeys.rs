//! The SQLite backend of [`crate::journeys::Journeys`] (tables of migration 13).
//!
//! A batch of the journey worker is one `IMMEDIATE` transaction on the write connection,
//! fenced like every derived write: inserts and upserts go many rows per statement
//! (`insert_many_then`), the runs' updates one cached statement per row, so a batch of
//! thousands of rows costs little more than the rows themselves. A unique key stored twice
//! fails the statement, and with it the transaction; which key it was is found afterwards,
//! from the committed state, so the common path pays nothing for it. Reads use the read pool: the worker's commits
//! never wait for a report, and a report never waits for a commit.

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use siyu_domain::Millis;

use crate::journeys::*;
use crate::sqlite::{SqliteStore, fenced, insert_many_then};
use crate::{Result, StoreError, TenantId};

const RUN_COLUMNS: &str = "id, journey, version, fan, entry_key, state, step, wake_at, entered_at, goal_by, updated_at, data";

fn run_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredRun> {
    Ok(StoredRun {
        id: r.get(0)?,
        journey: r.get(1)?,
        version: r.get(2)?,
        fan: r.get(3)?,
        entry_key: r.get(4)?,
        state: r.get(5)?,
        step: r.get(6)?,
        wake_at: r.get(7)?,
        entered_at: r.get(8)?,
        goal_by: r.get(9)?,
        updated_at: r.get(10)?,
        data: r.get(11)?,
    })
}

const OUTBOX_COLUMNS: &str = "id, channel, run, step, fan, key, payload, state, attempts, next_at, created_at, settled_at, answer";

fn outbox_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredOutbox> {
    Ok(StoredOutbox {
        id: r.get(0)?,
        channel: r.get(1)?,
        run: r.get(2)?,
        step: r.get(3)?,
        fan: r.get(4)?,
        key: r.get(5)?,
        payload: r.get(6)?,
        state: r.get(7)?,
        attempts: r.get(8)?,
        next_at: r.get(9)?,
        created_at: r.get(10)?,
        settled_at: r.get(11)?,
        answer: r.get(12)?,
    })
}

const TASK_COLUMNS: &str =
    "id, team, text, fan, run, step, state, agent, outcome, created_at, due_at, updated_at";

fn task_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredTask> {
    Ok(StoredTask {
        id: r.get(0)?,
        team: r.get(1)?,
        text: r.get(2)?,
        fan: r.get(3)?,
        run: r.get(4)?,
        step: r.get(5)?,
        state: r.get(6)?,
        agent: r.get(7)?,
        outcome: r.get(8)?,
        created_at: r.get(9)?,
        due_at: r.get(10)?,
        updated_at: r.get(11)?,
    })
}

/// Ids as a JSON array, for `IN (SELECT value FROM json_each(?))`.
fn json_ids(ids: &[i64]) -> String {
    serde_json::to_string(ids).unwrap_or_default()
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

/// Why a batch was not committed.
enum Failed {
    Store(StoreError),
    Duplicate(Unique),
}

impl<E: Into<StoreError>> From<E> for Failed {
    fn from(e: E) -> Failed {
        Failed::Store(e.into())
    }
}

/// A unique or primary key violation as `Duplicate(which)`, anything else as it is.
fn unique(which: Unique) -> impl Fn(StoreError) -> Failed {
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

/// Staff tasks, inserted (the journey worker's and the lead worker's).
pub(crate) fn insert_tasks(
    tx: &Transaction<'_>,
    tenant: TenantId,
    rows: &[StoredTask],
) -> Result<()> {
    insert_many_then(
        tx,
        "INSERT INTO tasks (tenant_id, id, team, text, fan, run, step, state, agent, outcome, created_at, due_at, updated_at) VALUES",
        "",
        13,
        rows.len(),
        |i, v| {
            let r = &rows[i];
            v.extend_from_slice(&[
                &tenant,
                &r.id,
                &r.team,
                &r.text,
                &r.fan,
                &r.run,
                &r.step,
                &r.state,
                &r.agent,
                &r.outcome,
                &r.created_at,
                &r.due_at,
                &r.updated_at,
            ]);
        },
    )
}

/// Inserts outbox rows; `suffix` is the statement's tail (a conflict clause, or nothing).
fn insert_outbox(
    tx: &Transaction<'_>,
    tenant: TenantId,
    rows: &[StoredOutbox],
    suffix: &str,
) -> crate::Result<()> {
    insert_many_then(
        tx,
        "INSERT INTO outbox (tenant_id, id, channel, run, step, fan, key, payload, state, attempts, next_at, created_at, settled_at, answer) VALUES",
        suffix,
        14,
        rows.len(),
        |i, v| {
            let r = &rows[i];
            v.extend_from_slice(&[
                &tenant,
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
            ]);
        },
    )
}

fn write_batch(tx: &Transaction<'_>, tenant: TenantId, b: &RunBatch<'_>) -> Result<(), Failed> {
    if !b.new_runs.is_empty() {
        let rows = b.new_runs;
        insert_many_then(
            tx,
            "INSERT INTO journey_runs (tenant_id, id, journey, version, fan, entry_key, state, step, wake_at, entered_at, goal_by, updated_at, data) VALUES",
            "",
            13,
            rows.len(),
            |i, v| {
                let r = &rows[i];
                v.extend_from_slice(&[
                    &tenant,
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
                ]);
            },
        )
        .map_err(unique(Unique::EntryKey))?;
    }
    if !b.updated_runs.is_empty() {
        let mut update = tx.prepare_cached(
            "UPDATE journey_runs SET fan = ?3, state = ?4, step = ?5, wake_at = ?6, goal_by = ?7,
                 updated_at = ?8, data = ?9
             WHERE tenant_id = ?1 AND id = ?2",
        )?;
        for r in b.updated_runs {
            let n = update.execute(params![
                tenant,
                r.id,
                r.fan,
                r.state,
                r.step,
                r.wake_at,
                r.goal_by,
                r.updated_at,
                r.data
            ])?;
            if n == 0 {
                return Err(Failed::Store(StoreError::Corrupt(format!(
                    "run {} is not stored; nothing of the batch was stored",
                    r.id
                ))));
            }
        }
    }
    if !b.history.is_empty() {
        let rows = b.history;
        insert_many_then(
            tx,
            "INSERT INTO journey_history (tenant_id, run, n, at, step, kind, reason, detail) VALUES",
            "",
            8,
            rows.len(),
            |i, v| {
                let r = &rows[i];
                v.extend_from_slice(&[
                    &tenant, &r.run, &r.n, &r.at, &r.step, &r.kind, &r.reason, &r.detail,
                ]);
            },
        )?;
    }
    if !b.outbox.is_empty() {
        insert_outbox(tx, tenant, b.outbox, "").map_err(unique(Unique::OutboxKey))?;
    }
    insert_tasks(tx, tenant, b.tasks)?;
    if !b.variants.is_empty() {
        let rows = b.variants;
        insert_many_then(
            tx,
            "INSERT INTO journey_variants (tenant_id, journey, version, step, arm, sent, converted, failed) VALUES",
            "ON CONFLICT (tenant_id, journey, version, step, arm) DO UPDATE SET
                 sent = sent + excluded.sent, converted = converted + excluded.converted,
                 failed = failed + excluded.failed",
            8,
            rows.len(),
            |i, v| {
                let r = &rows[i];
                v.extend_from_slice(&[
                    &tenant,
                    &r.journey,
                    &r.version,
                    &r.step,
                    &r.arm,
                    &r.sent,
                    &r.converted,
                    &r.failed,
                ]);
            },
        )?;
    }
    if !b.fan_states.is_empty() {
        let rows = b.fan_states;
        insert_many_then(
            tx,
            "INSERT INTO journey_fans (tenant_id, fan, opted_out_at, opt_out_reason, authorized_at, im_in_at, im_conversation, im_message, im_replies, last_send_at, last_send_run, last_send_step) VALUES",
            "ON CONFLICT (tenant_id, fan) DO UPDATE SET
                 opted_out_at = excluded.opted_out_at, opt_out_reason = excluded.opt_out_reason,
                 authorized_at = excluded.authorized_at, im_in_at = excluded.im_in_at,
                 im_conversation = excluded.im_conversation, im_message = excluded.im_message,
                 im_replies = excluded.im_replies, last_send_at = excluded.last_send_at,
                 last_send_run = excluded.last_send_run, last_send_step = excluded.last_send_step",
            12,
            rows.len(),
            |i, v| {
                let r = &rows[i];
                v.extend_from_slice(&[
                    &tenant,
                    &r.fan,
                    &r.opted_out_at,
                    &r.opt_out_reason,
                    &r.authorized_at,
                    &r.im_in_at,
                    &r.im_conversation,
                    &r.im_message,
                    &r.im_replies,
                    &r.last_send_at,
                    &r.last_send_run,
                    &r.last_send_step,
                ]);
            },
        )?;
    }
    if !b.fan_sends.is_empty() {
        let rows = b.fan_sends;
        insert_many_then(
            tx,
            "INSERT INTO fan_sends (tenant_id, fan, channel, day, count) VALUES",
            "ON CONFLICT (tenant_id, fan, channel, day) DO UPDATE SET count = count + excluded.count",
            5,
            rows.len(),
            |i, v| {
                let r = &rows[i];
                v.extend_from_slice(&[&tenant, &r.fan, &r.channel, &r.day, &r.count]);
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
    which: Unique,
    b: &RunBatch<'_>,
) -> Result<Option<String>> {
    let sql = match which {
        Unique::EntryKey => {
            "SELECT entry_key FROM journey_runs WHERE tenant_id = ?1
               AND entry_key IN (SELECT value FROM json_each(?2)) ORDER BY entry_key LIMIT 1"
        }
        Unique::OutboxKey => {
            "SELECT key FROM outbox WHERE tenant_id = ?1
               AND key IN (SELECT value FROM json_each(?2)) ORDER BY key LIMIT 1"
        }
    };
    let keys = serde_json::to_string(&which.keys(b)).unwrap_or_default();
    Ok(conn
        .query_row(sql, params![tenant, keys], |r| r.get(0))
        .optional()?)
}

impl Journeys for SqliteStore {
    fn put_journey(
        &self,
        tenant: TenantId,
        name: &str,
        definition: &str,
        starts_after: i64,
        now: Millis,
    ) -> Result<i64> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM journey_versions WHERE tenant_id = ?1 AND name = ?2",
            params![tenant, name],
            |r| r.get(0),
        )?;
        tx.execute(
            "INSERT INTO journey_versions (tenant_id, name, version, definition, applied_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![tenant, name, version, definition, now],
        )?;
        tx.execute(
            "INSERT INTO journeys (tenant_id, name, version, paused, applied_at, updated_at, starts_after)
             VALUES (?1, ?2, ?3, 0, ?4, ?4, ?5)
             ON CONFLICT (tenant_id, name) DO UPDATE SET
                 version = excluded.version, applied_at = excluded.applied_at,
                 updated_at = excluded.updated_at",
            params![tenant, name, version, now, starts_after],
        )?;
        tx.commit()?;
        Ok(version)
    }

    fn journeys(&self, tenant: TenantId) -> Result<Vec<StoredJourney>> {
        self.read(|c| {
            rows(
                c,
                "SELECT j.name, j.version, v.definition, j.paused, j.applied_at, j.updated_at,
                        j.starts_after
                 FROM journeys j JOIN journey_versions v
                   ON v.tenant_id = j.tenant_id AND v.name = j.name AND v.version = j.version
                 WHERE j.tenant_id = ?1 ORDER BY j.name",
                [tenant],
                |r| {
                    Ok(StoredJourney {
                        name: r.get(0)?,
                        version: r.get(1)?,
                        definition: r.get(2)?,
                        paused: r.get(3)?,
                        applied_at: r.get(4)?,
                        updated_at: r.get(5)?,
                        starts_after: r.get(6)?,
                    })
                },
            )
        })
    }

    fn journey_version(
        &self,
        tenant: TenantId,
        name: &str,
        version: i64,
    ) -> Result<Option<String>> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT definition FROM journey_versions WHERE tenant_id = ?1 AND name = ?2 AND version = ?3",
            )?
            .query_row(params![tenant, name, version], |r| r.get(0))
            .optional()?)
        })
    }

    fn set_journey_paused(
        &self,
        tenant: TenantId,
        name: &str,
        paused: bool,
        now: Millis,
    ) -> Result<bool> {
        Ok(self.conn().execute(
            "UPDATE journeys SET paused = ?3, updated_at = ?4 WHERE tenant_id = ?1 AND name = ?2",
            params![tenant, name, paused, now],
        )? > 0)
    }

    fn journey_ids(&self, tenant: TenantId) -> Result<JourneyIds> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT (SELECT COALESCE(MAX(id), 0) FROM journey_runs WHERE tenant_id = ?1),
                        (SELECT COALESCE(MAX(id), 0) FROM outbox WHERE tenant_id = ?1),
                        (SELECT COALESCE(MAX(id), 0) FROM tasks WHERE tenant_id = ?1)",
            )?
            .query_row([tenant], |r| {
                Ok(JourneyIds {
                    run: r.get(0)?,
                    outbox: r.get(1)?,
                    task: r.get(2)?,
                })
            })?)
        })
    }

    fn commit_runs(&self, tenant: TenantId, batch: &RunBatch<'_>) -> Result<()> {
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

    fn due_runs(&self, tenant: TenantId, now: Millis, limit: usize) -> Result<Vec<StoredRun>> {
        self.read(|c| {
            rows(
                c,
                &format!(
                    "SELECT {RUN_COLUMNS} FROM journey_runs
                     WHERE tenant_id = ?1 AND wake_at IS NOT NULL AND wake_at <= ?2
                     ORDER BY wake_at, id LIMIT ?3"
                ),
                params![tenant, now, limit as i64],
                run_from_row,
            )
        })
    }

    fn next_wake(&self, tenant: TenantId) -> Result<Option<Millis>> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT MIN(wake_at) FROM journey_runs WHERE tenant_id = ?1 AND wake_at IS NOT NULL",
            )?
            .query_row([tenant], |r| r.get(0))?)
        })
    }

    fn runs_of(&self, tenant: TenantId, fans: &[i64], open_only: bool) -> Result<Vec<StoredRun>> {
        if fans.is_empty() {
            return Ok(Vec::new());
        }
        self.read(|c| {
            rows(
                c,
                &format!(
                    "SELECT {RUN_COLUMNS} FROM journey_runs
                     WHERE tenant_id = ?1 AND fan IN (SELECT value FROM json_each(?2))
                       AND (NOT ?3 OR state < 100)
                     ORDER BY id"
                ),
                params![tenant, json_ids(fans), open_only],
                run_from_row,
            )
        })
    }

    fn run(&self, tenant: TenantId, id: i64) -> Result<Option<StoredRun>> {
        self.read(|c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM journey_runs WHERE tenant_id = ?1 AND id = ?2"
            ))?
            .query_row(params![tenant, id], run_from_row)
            .optional()?)
        })
    }

    fn run_history(&self, tenant: TenantId, run: i64) -> Result<Vec<StoredRunEvent>> {
        self.read(|c| {
            rows(
                c,
                "SELECT run, n, at, step, kind, reason, detail FROM journey_history
                 WHERE tenant_id = ?1 AND run = ?2 ORDER BY n",
                params![tenant, run],
                |r| {
                    Ok(StoredRunEvent {
                        run: r.get(0)?,
                        n: r.get(1)?,
                        at: r.get(2)?,
                        step: r.get(3)?,
                        kind: r.get(4)?,
                        reason: r.get(5)?,
                        detail: r.get(6)?,
                    })
                },
            )
        })
    }

    fn step_counts(&self, tenant: TenantId, journey: &str) -> Result<Vec<StepCount>> {
        let mut out = self.read(|c| {
            rows(
                c,
                "SELECT r.version, h.step, h.kind, h.reason, COUNT(*)
                 FROM journey_runs r JOIN journey_history h ON h.tenant_id = r.tenant_id AND h.run = r.id
                 WHERE r.tenant_id = ?1 AND r.journey = ?2
                 GROUP BY r.version, h.step, h.kind, h.reason",
                params![tenant, journey],
                |r| {
                    Ok(StepCount {
                        version: r.get(0)?,
                        step: r.get(1)?,
                        kind: r.get(2)?,
                        reason: r.get(3)?,
                        count: r.get(4)?,
                    })
                },
            )
        })?;
        sort_step_counts(&mut out);
        Ok(out)
    }

    fn run_counts(&self, tenant: TenantId, journey: &str) -> Result<Vec<RunCount>> {
        self.read(|c| {
            rows(
                c,
                "SELECT version, state, step, COUNT(*) FROM journey_runs
                 WHERE tenant_id = ?1 AND journey = ?2
                 GROUP BY version, state, step ORDER BY version, state, step",
                params![tenant, journey],
                |r| {
                    Ok(RunCount {
                        version: r.get(0)?,
                        state: r.get(1)?,
                        step: r.get(2)?,
                        count: r.get(3)?,
                    })
                },
            )
        })
    }

    fn variants(&self, tenant: TenantId, journey: &str) -> Result<Vec<StoredVariant>> {
        let mut out = self.read(|c| {
            rows(
                c,
                "SELECT version, step, arm, sent, converted, failed FROM journey_variants
                 WHERE tenant_id = ?1 AND journey = ?2",
                params![tenant, journey],
                |r| {
                    Ok(StoredVariant {
                        version: r.get(0)?,
                        step: r.get(1)?,
                        arm: r.get(2)?,
                        sent: r.get(3)?,
                        converted: r.get(4)?,
                        failed: r.get(5)?,
                    })
                },
            )
        })?;
        sort_variants(&mut out);
        Ok(out)
    }

    fn fan_states(&self, tenant: TenantId, fans: &[i64]) -> Result<Vec<StoredFanState>> {
        if fans.is_empty() {
            return Ok(Vec::new());
        }
        self.read(|c| {
            rows(
                c,
                "SELECT fan, opted_out_at, opt_out_reason, authorized_at, im_in_at, im_conversation,
                        im_message, im_replies, last_send_at, last_send_run, last_send_step
                 FROM journey_fans
                 WHERE tenant_id = ?1 AND fan IN (SELECT value FROM json_each(?2)) ORDER BY fan",
                params![tenant, json_ids(fans)],
                |r| {
                    Ok(StoredFanState {
                        fan: r.get(0)?,
                        opted_out_at: r.get(1)?,
                        opt_out_reason: r.get(2)?,
                        authorized_at: r.get(3)?,
                        im_in_at: r.get(4)?,
                        im_conversation: r.get(5)?,
                        im_message: r.get(6)?,
                        im_replies: r.get(7)?,
                        last_send_at: r.get(8)?,
                        last_send_run: r.get(9)?,
                        last_send_step: r.get(10)?,
                    })
                },
            )
        })
    }

    fn fan_sends(&self, tenant: TenantId, fans: &[i64], day: i32) -> Result<Vec<FanSends>> {
        if fans.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = self.read(|c| {
            rows(
                c,
                "SELECT fan, channel, day, count FROM fan_sends
                 WHERE tenant_id = ?1 AND fan IN (SELECT value FROM json_each(?2)) AND day = ?3",
                params![tenant, json_ids(fans), day],
                |r| {
                    Ok(FanSends {
                        fan: r.get(0)?,
                        channel: r.get(1)?,
                        day: r.get(2)?,
                        count: r.get(3)?,
                    })
                },
            )
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
        self.read(|c| {
            rows(
                c,
                &format!(
                    "SELECT {OUTBOX_COLUMNS} FROM outbox
                     WHERE tenant_id = ?1 AND channel = ?2 AND state = 0 AND next_at <= ?3
                     ORDER BY next_at, id LIMIT ?4"
                ),
                params![tenant, channel, now, limit as i64],
                outbox_from_row,
            )
        })
    }

    fn outbox_next_at(&self, tenant: TenantId, channel: &str) -> Result<Option<Millis>> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT MIN(next_at) FROM outbox WHERE tenant_id = ?1 AND channel = ?2 AND state = 0",
            )?
            .query_row(params![tenant, channel], |r| r.get(0))?)
        })
    }

    fn settle_outbox(
        &self,
        tenant: TenantId,
        settled: &[Settle],
        outcomes: &[StoredOutbox],
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        fenced(&tx, &self.fences, tenant)?;
        {
            let mut delivered = tx.prepare_cached(
                "UPDATE outbox SET state = 1, settled_at = ?3, answer = ?4
                 WHERE tenant_id = ?1 AND id = ?2 AND state = 0",
            )?;
            let mut retry = tx.prepare_cached(
                "UPDATE outbox SET attempts = ?3, next_at = ?4, answer = ?5
                 WHERE tenant_id = ?1 AND id = ?2 AND state = 0",
            )?;
            let mut dead = tx.prepare_cached(
                "UPDATE outbox SET state = 2, attempts = ?3, settled_at = ?4, answer = ?5
                 WHERE tenant_id = ?1 AND id = ?2 AND state = 0",
            )?;
            for s in settled {
                match s {
                    Settle::Delivered { id, at, answer } => {
                        delivered.execute(params![tenant, id, at, answer])?
                    }
                    Settle::Retry {
                        id,
                        attempts,
                        next_at,
                        answer,
                    } => retry.execute(params![tenant, id, attempts, next_at, answer])?,
                    Settle::Dead {
                        id,
                        attempts,
                        at,
                        answer,
                    } => dead.execute(params![tenant, id, attempts, at, answer])?,
                };
            }
        }
        if !outcomes.is_empty() {
            insert_outbox(&tx, tenant, outcomes, "ON CONFLICT DO NOTHING")?;
        }
        tx.commit()?;
        Ok(())
    }

    fn outbox(&self, tenant: TenantId, filter: &OutboxFilter<'_>) -> Result<Vec<StoredOutbox>> {
        self.read(|c| {
            rows(
                c,
                &format!(
                    "SELECT {OUTBOX_COLUMNS} FROM outbox
                     WHERE tenant_id = ?1 AND (?2 IS NULL OR state = ?2)
                       AND (?3 IS NULL OR channel = ?3) AND (?4 IS NULL OR fan = ?4)
                       AND (?5 IS NULL OR run IN
                            (SELECT id FROM journey_runs WHERE tenant_id = ?1 AND journey = ?5))
                     ORDER BY id DESC LIMIT ?6"
                ),
                params![
                    tenant,
                    filter.state,
                    filter.channel,
                    filter.fan,
                    filter.journey,
                    filter.limit as i64
                ],
                outbox_from_row,
            )
        })
    }

    fn wake_held(&self, tenant: TenantId, journey: &str, now: Millis) -> Result<usize> {
        let conn = self.conn();
        fenced(&conn, &self.fences, tenant)?;
        Ok(conn.execute(
            "UPDATE journey_runs SET wake_at = ?3
             WHERE tenant_id = ?1 AND journey = ?2 AND state = 3",
            params![tenant, journey, now],
        )?)
    }

    fn outbox_counts(&self, tenant: TenantId, journey: &str) -> Result<Vec<OutboxCount>> {
        self.read(|c| {
            rows(
                c,
                "SELECT o.step, o.state, COUNT(*) FROM outbox o
                 JOIN journey_runs r ON r.tenant_id = o.tenant_id AND r.id = o.run
                 WHERE o.tenant_id = ?1 AND r.journey = ?2 AND o.channel NOT LIKE 'siyu.%'
                 GROUP BY o.step, o.state ORDER BY o.step, o.state",
                params![tenant, journey],
                |r| {
                    Ok(OutboxCount {
                        step: r.get(0)?,
                        state: r.get(1)?,
                        count: r.get(2)?,
                    })
                },
            )
        })
    }

    fn retry_dead(&self, tenant: TenantId, ids: Option<&[i64]>, now: Millis) -> Result<usize> {
        Ok(self.conn().execute(
            "UPDATE outbox SET state = 0, attempts = 0, next_at = ?3, settled_at = NULL
             WHERE tenant_id = ?1 AND state = 2
               AND (?2 IS NULL OR id IN (SELECT value FROM json_each(?2)))",
            params![tenant, ids.map(json_ids), now],
        )?)
    }

    fn tasks(&self, tenant: TenantId, filter: &TaskFilter<'_>) -> Result<Vec<StoredTask>> {
        self.read(|c| {
            rows(
                c,
                &format!(
                    "SELECT {TASK_COLUMNS} FROM tasks
                     WHERE tenant_id = ?1 AND (?2 IS NULL OR team = ?2)
                       AND (?3 IS NULL OR agent = ?3) AND (?4 IS NULL OR state = ?4)
                     ORDER BY id LIMIT ?5"
                ),
                params![
                    tenant,
                    filter.team,
                    filter.agent,
                    filter.state,
                    filter.limit as i64
                ],
                task_from_row,
            )
        })
    }

    fn task(&self, tenant: TenantId, id: i64) -> Result<Option<StoredTask>> {
        self.read(|c| task_on(c, tenant, id))
    }

    fn update_task(
        &self,
        tenant: TenantId,
        id: i64,
        change: &TaskChange,
        now: Millis,
    ) -> Result<Option<StoredTask>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        match change {
            TaskChange::Claim { agent } => tx.execute(
                "UPDATE tasks SET state = 1, agent = ?3, updated_at = ?4
                 WHERE tenant_id = ?1 AND id = ?2 AND state = 0",
                params![tenant, id, agent, now],
            )?,
            TaskChange::Done { agent, outcome } => tx.execute(
                "UPDATE tasks SET state = 2, agent = COALESCE(agent, ?3), outcome = ?4, updated_at = ?5
                 WHERE tenant_id = ?1 AND id = ?2 AND state IN (0, 1)",
                params![tenant, id, agent, outcome, now],
            )?,
        };
        let task = task_on(&tx, tenant, id)?;
        tx.commit()?;
        Ok(task)
    }
}

fn task_on(c: &Connection, tenant: TenantId, id: i64) -> Result<Option<StoredTask>> {
    Ok(c.prepare_cached(&format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE tenant_id = ?1 AND id = ?2"
    ))?
    .query_row(params![tenant, id], task_from_row)
    .optional()?)
}
