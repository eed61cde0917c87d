//! The trigger stream as stored: the event log and the three derived logs (layer transitions,
//! segment entries and exits, tag changes) read as one sequence ordered by position (see
//! `siyu_domain::trigger`), and a durable cursor per consumer.
//!
//! Events are not stored a second time: an event's trigger is its log row, at
//! `event_position(seq)`. A derived row's id *is* its position, allocated when it is stored
//! by [`positions`]: after every position already taken in the tenant's three derived logs,
//! and after the last event the engine had applied when it derived the row. Positions are
//! allocated under the tenant's write lock (SQLite's one writer; the tenant row's lock on
//! PostgreSQL), so they grow in commit order and a reader that has seen position `p` never
//! sees a later commit below `p`.

use siyu_domain::Millis;
use siyu_domain::trigger::{PER_EVENT, TriggerType, TypeSet, event_position, seq_at};

use crate::{Result, StoreError, StoredSegmentChange, StoredTagChange, StoredTransition, TenantId};

/// An event's trigger as stored: its log row's head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventHead {
    pub seq: i64,
    pub id: String,
    pub ty: String,
    pub ts: Millis,
}

/// One row of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredTrigger {
    Event(EventHead),
    Transition(StoredTransition),
    Segment(StoredSegmentChange),
    Tag(StoredTagChange),
}

impl StoredTrigger {
    /// Its position in the stream.
    pub fn position(&self) -> i64 {
        match self {
            StoredTrigger::Event(e) => event_position(e.seq),
            StoredTrigger::Transition(t) => t.id,
            StoredTrigger::Segment(s) => s.id,
            StoredTrigger::Tag(t) => t.id,
        }
    }
}

/// A consumer's cursor: it has handled every trigger up to `after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCursor {
    pub consumer: String,
    pub after: i64,
    pub updated_at: Millis,
}

/// The event-log and cursor side of the stream (the derived logs are read through
/// [`crate::Store`]'s per-log methods).
pub trait TriggerLog {
    /// Heads of a tenant's events with `after < seq <= upto`, ascending, at most `limit`;
    /// with `only`, just those sequence numbers.
    fn event_heads(
        &self,
        tenant: TenantId,
        after: i64,
        upto: i64,
        only: Option<&[i64]>,
        limit: usize,
    ) -> Result<Vec<EventHead>>;

    /// A consumer's cursor, if it has stored one.
    fn trigger_cursor(&self, tenant: TenantId, consumer: &str) -> Result<Option<StoredCursor>>;

    /// Stores a consumer's cursor (moving it back is allowed: a consumer may replay).
    fn set_trigger_cursor(
        &self,
        tenant: TenantId,
        consumer: &str,
        after: i64,
        now: Millis,
    ) -> Result<()>;

    /// Every consumer's cursor, by name.
    fn trigger_cursors(&self, tenant: TenantId) -> Result<Vec<StoredCursor>>;
}

/// What to read.
#[derive(Debug, Clone, Copy)]
pub struct TriggerQuery<'a> {
    /// Positions above this.
    pub after: i64,
    /// Positions below this (exclusive): the reader's view of the log ends here, so that a
    /// page never runs ahead of events the engine has not applied.
    pub before: i64,
    pub types: TypeSet,
    /// Only these fans' derived triggers (a fan and the fans merged into it).
    pub fans: Option<&'a [i64]>,
    /// Only these events (with `fans`: the fans' events, which the engine knows). With `fans`
    /// and no `seqs`, no event triggers.
    pub seqs: Option<&'a [i64]>,
    pub limit: usize,
}

/// A page of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerPage {
    pub triggers: Vec<StoredTrigger>,
    /// Every position up to here was looked at (filtered rows included): the `after` of the
    /// next page. At least the query's `after`.
    pub scanned_to: i64,
}

/// Reads a page of the stream: each requested log is read from `after` up to `limit` rows,
/// the rows are merged by position, and the page ends where the first full log's rows end
/// (beyond it that log may hold rows not read yet) or at `limit`.
pub fn read(
    store: &dyn crate::Store,
    tenant: TenantId,
    q: &TriggerQuery<'_>,
) -> Result<TriggerPage> {
    let limit = q.limit.max(1);
    if q.before <= q.after.saturating_add(1) {
        return Ok(TriggerPage {
            triggers: Vec::new(),
            scanned_to: q.after,
        });
    }
    let cap = q.before - 1;
    // Where each full source's rows end; the page ends at the smallest.
    let mut end = cap;
    let mut rows: Vec<StoredTrigger> = Vec::new();
    let mut take = |got: Vec<StoredTrigger>, rows: &mut Vec<StoredTrigger>| {
        if got.len() >= limit
            && let Some(last) = got.last()
        {
            end = end.min(last.position());
        }
        rows.extend(got.into_iter().filter(|r| r.position() <= cap));
    };
    let ty = |t: TriggerType| q.types.contains(t);
    if ty(TriggerType::Event) && (q.fans.is_none() || q.seqs.is_some()) {
        let got = store
            .event_heads(tenant, seq_at(q.after), seq_at(cap), q.seqs, limit)?
            .into_iter()
            .map(StoredTrigger::Event)
            .collect();
        take(got, &mut rows);
    }
    if ty(TriggerType::LayerChanged) {
        let got = store.transitions(tenant, q.fans, q.after, limit)?;
        take(
            got.into_iter().map(StoredTrigger::Transition).collect(),
            &mut rows,
        );
    }
    let (entered, exited) = (
        ty(TriggerType::SegmentEntered),
        ty(TriggerType::SegmentExited),
    );
    if entered || exited {
        let got = store.segment_changes(tenant, None, q.fans, q.after, limit)?;
        take(
            got.into_iter().map(StoredTrigger::Segment).collect(),
            &mut rows,
        );
    }
    let (added, removed) = (ty(TriggerType::TagAdded), ty(TriggerType::TagRemoved));
    if added || removed {
        let got = store.tag_changes(tenant, q.fans, q.after, limit)?;
        take(got.into_iter().map(StoredTrigger::Tag).collect(), &mut rows);
    }
    rows.retain(|r| r.position() <= end);
    rows.sort_by_key(StoredTrigger::position);
    if rows.windows(2).any(|w| w[0].position() == w[1].position()) {
        return Err(StoreError::Corrupt(format!(
            "two triggers of tenant {tenant} share a position"
        )));
    }
    let mut scanned_to = end;
    if rows.len() > limit {
        rows.truncate(limit);
        scanned_to = rows.last().map_or(q.after, StoredTrigger::position);
    }
    // Filters the logs cannot apply: which way a segment or tag changed.
    rows.retain(|r| match r {
        StoredTrigger::Segment(s) => {
            if s.entered {
                entered
            } else {
                exited
            }
        }
        StoredTrigger::Tag(t) => {
            if t.added {
                added
            } else {
                removed
            }
        }
        _ => true,
    });
    Ok(TriggerPage {
        triggers: rows,
        scanned_to: scanned_to.max(q.after),
    })
}

/// The positions of a record's rows: after `taken` (every position already held) and after the
/// event `after_seq`. Each log's rows keep the order the engine derived them in (which is the
/// order of time); the three logs are merged by time, layer changes before segment changes
/// before tags at the same instant.
pub(crate) fn positions(
    taken: i64,
    after_seq: i64,
    rec: &crate::LiveRecord<'_>,
) -> (Vec<i64>, Vec<i64>, Vec<i64>) {
    let ats: [Vec<Millis>; 3] = [
        rec.transitions.iter().map(|r| r.at).collect(),
        rec.segment_changes.iter().map(|r| r.at).collect(),
        rec.tag_changes.iter().map(|r| r.at).collect(),
    ];
    let mut out: [Vec<i64>; 3] = [
        Vec::with_capacity(ats[0].len()),
        Vec::with_capacity(ats[1].len()),
        Vec::with_capacity(ats[2].len()),
    ];
    let mut next = taken.max(event_position(after_seq));
    // A merge, not a sort: each log's own order is kept.
    while let Some(table) = (0..3)
        .filter(|&t| out[t].len() < ats[t].len())
        .min_by_key(|&t| (ats[t][out[t].len()], t))
    {
        next += 1;
        // An event's own position is never a derived row's.
        if next % PER_EVENT == 0 {
            next += 1;
        }
        out[table].push(next);
    }
    let [t, s, g] = out;
    (t, s, g)
}

/// The highest position a tenant's derived logs hold, as SQL over `?1`/`$1` (the tenant).
pub(crate) const TAKEN: &str = "SELECT COALESCE(MAX(m), 0) FROM (
    SELECT MAX(id) AS m FROM layer_transitions WHERE tenant_id = $1
    UNION ALL SELECT MAX(id) FROM segment_changes WHERE tenant_id = $1
    UNION ALL SELECT MAX(id) FROM tag_changes WHERE tenant_id = $1) AS taken";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LiveRecord;

    fn transition(seq: Option<i64>) -> StoredTransition {
        StoredTransition {
            id: 0,
            fan: 1,
            from: None,
            to: "potential".into(),
            at: 0,
            cause: if seq.is_some() { "event" } else { "decay" }.into(),
            seq,
            event_id: None,
        }
    }

    fn change(seq: Option<i64>) -> StoredSegmentChange {
        StoredSegmentChange {
            id: 0,
            segment: 1,
            fan: 1,
            entered: true,
            at: 0,
            cause: if seq.is_some() { "event" } else { "time" }.into(),
            seq,
            event_id: None,
        }
    }

    #[test]
    fn a_record_keeps_each_logs_order_merged_by_time_after_what_is_taken() {
        let at = |mut t: StoredTransition, at: i64| {
            t.at = at;
            t
        };
        let on = |mut c: StoredSegmentChange, at: i64| {
            c.at = at;
            c
        };
        // Derived in this order: a decay at 5, then an event's change at 9 and one at 7 (a
        // log's order is kept even where its times are not sorted).
        let t = [
            at(transition(None), 5),
            at(transition(Some(3)), 9),
            at(transition(Some(2)), 7),
        ];
        let s = [on(change(Some(3)), 9), on(change(None), 5)];
        let tags = [StoredTagChange {
            id: 0,
            fan: 1,
            tag: "vip".into(),
            added: true,
            at: 9,
            source: "segment:1".into(),
        }];
        let rec = LiveRecord {
            transitions: &t,
            segment_changes: &s,
            tag_changes: &tags,
        };
        let base = event_position(3);
        let (pt, ps, pg) = positions(0, 3, &rec);
        // 5: the decay, then (the segment log's head is at 9) the transitions at 9 and 7; then
        // the segment change at 9, the one at 5, and the tag.
        assert_eq!(pt, vec![base + 1, base + 2, base + 3]);
        assert_eq!(ps, vec![base + 4, base + 5]);
        assert_eq!(pg, vec![base + 6]);
        // Positions already taken beyond the event's push the record after them.
        let (pt, _, _) = positions(base + 40, 3, &rec);
        assert_eq!(pt[0], base + 41);
        // An event's position is skipped.
        let (pt, _, _) = positions(event_position(5) - 1, 3, &rec);
        assert_eq!(pt[0], event_position(5) + 1);
    }
}
