//! The trigger stream's read side: pages of a tenant's triggers (events taken in, layer
//! changes, segment entries and exits, tag changes) in one order, durable cursors for their
//! consumers, and a wake-up for whoever waits for the next one (long polls, in-process
//! consumers such as journeys).
//!
//! A page never runs ahead of the tenant's engine: it ends at the last event the engine has
//! applied (and what was derived after it), so every trigger a page shows is final — a later
//! page never brings one at a position already passed. Fans are shown as they are now: an
//! event's fan is the one its identities resolve to after every merge since, and so is a
//! derived trigger's.

use std::sync::OnceLock;

use serde::Serialize;
use siyu_domain::Millis;
use siyu_domain::trigger::{Cause, Trigger, TypeSet, What, event_position, seq_at};
use siyu_engine::{FanId, TenantEngine};
use siyu_store::{StoredTrigger, TenantId, TriggerQuery};

use crate::{App, AppError};

/// Why a trigger read or a cursor move was refused.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    /// The store or the writer failed (not the request's fault).
    #[error(transparent)]
    App(#[from] AppError),
    #[error("types: unknown trigger type {0:?}; use {list}", list = TYPES)]
    UnknownType(String),
    #[error(
        "consumer: {0:?} is not a consumer name; use 1–64 lowercase letters, digits, '_', '-' or '.'"
    )]
    InvalidConsumer(String),
    #[error("no fan {0} in this tenant")]
    NoFan(i64),
    #[error("after: {after} is ahead of the stream, which ends at {head} now")]
    CursorAhead { after: i64, head: i64 },
    #[error("no cursor stored for consumer {0:?}")]
    NoCursor(String),
}

impl From<siyu_store::StoreError> for TriggerError {
    fn from(e: siyu_store::StoreError) -> Self {
        TriggerError::App(e.into())
    }
}

impl TriggerError {
    /// A stable machine code for the edge.
    pub fn code(&self) -> &'static str {
        match self {
            TriggerError::App(e) => e.code(),
            TriggerError::UnknownType(_) => "unknown_trigger_type",
            TriggerError::InvalidConsumer(_) => "invalid_consumer",
            TriggerError::NoFan(_) => "fan_not_found",
            TriggerError::CursorAhead { .. } => "cursor_ahead",
            TriggerError::NoCursor(_) => "cursor_not_found",
        }
    }

    /// The request field the error is about.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            TriggerError::UnknownType(_) => Some("types"),
            TriggerError::InvalidConsumer(_) => Some("consumer"),
            TriggerError::CursorAhead { .. } => Some("after"),
            TriggerError::NoFan(_) => Some("fan"),
            TriggerError::App(_) | TriggerError::NoCursor(_) => None,
        }
    }
}

/// The trigger types, for messages.
const TYPES: &str =
    "event, layer_changed, segment_entered, segment_exited, tag_added or tag_removed";

/// A consumer's name: what its cursor is stored under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer(String);

impl Consumer {
    pub fn parse(name: &str) -> Result<Consumer, TriggerError> {
        let ok = (1..=64).contains(&name.len())
            && name.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
            });
        if ok {
            Ok(Consumer(name.to_string()))
        } else {
            Err(TriggerError::InvalidConsumer(name.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Parses a `types` filter (comma-separated trigger types).
pub fn parse_types(list: &str) -> Result<TypeSet, TriggerError> {
    TypeSet::parse(list).map_err(TriggerError::UnknownType)
}

/// Where a page starts.
#[derive(Debug, Clone)]
pub enum Start {
    /// After this position.
    After(i64),
    /// After the consumer's stored cursor (the start of the stream if it has none).
    Cursor(Consumer),
}

/// What to read.
#[derive(Debug, Clone)]
pub struct Read {
    pub from: Start,
    pub types: TypeSet,
    /// Only this fan's triggers (and those of the fans merged into it).
    pub fan: Option<FanId>,
    pub limit: usize,
}

/// A page of triggers, oldest first.
#[derive(Debug, Clone, Serialize)]
pub struct Page {
    pub triggers: Vec<Trigger>,
    /// The `after` of the next page: past every trigger looked at, shown or filtered out.
    pub next_after: i64,
}

/// A consumer's cursor.
#[derive(Debug, Clone, Serialize)]
pub struct Cursor {
    pub consumer: String,
    pub after: i64,
    pub updated_at: Option<String>,
}

impl Cursor {
    fn from_stored(c: siyu_store::StoredCursor) -> Cursor {
        Cursor {
            consumer: c.consumer,
            after: c.after,
            updated_at: Some(siyu_domain::time::format_rfc3339(c.updated_at)),
        }
    }
}

/// The last position a reader can see now: past the last event whose derived changes are
/// stored (a live engine's writer stores them right after it answers the event's request; what
/// a failing store could not keep is stored later, at positions past a later mark), and
/// everything derived after it. A replayed engine (the CLI's) has nothing waiting: its last
/// event.
fn head(engine: &TenantEngine) -> i64 {
    event_position(readable_seq(engine) + 1) - 1
}

fn readable_seq(engine: &TenantEngine) -> i64 {
    match engine.clock() {
        Some(_) => engine.flushed_seq(),
        None => engine.last_seq(),
    }
}

impl App {
    /// A page of the tenant's trigger stream (see the module docs).
    pub fn triggers(&self, tenant: TenantId, q: &Read) -> Result<Page, TriggerError> {
        self.ingestor.derived_barrier();
        let after = match &q.from {
            Start::After(a) => *a,
            Start::Cursor(c) => self
                .store()
                .trigger_cursor(tenant, c.as_str())?
                .map_or(0, |c| c.after),
        };
        let limit = q.limit.clamp(1, 10_000);
        // What the engine has applied bounds the page; a fan's ids and events come from it.
        let (head, fans) = self.ingestor.read(tenant, |e| {
            let fans = q.fan.map(|f| {
                let ids: Vec<i64> = e.identities().ids_of(f).into_iter().map(|f| f.0).collect();
                let seqs = e.seqs_of(f, seq_at(after), readable_seq(e), limit);
                (ids, seqs)
            });
            (head(e), fans)
        })?;
        if let (Some(f), Some((ids, _))) = (q.fan, &fans)
            && ids.is_empty()
        {
            return Err(TriggerError::NoFan(f.0));
        }
        let page = siyu_store::triggers::read(
            &**self.store(),
            tenant,
            &TriggerQuery {
                after,
                before: head.saturating_add(1),
                types: q.types,
                fans: fans.as_ref().map(|f| f.0.as_slice()),
                seqs: fans.as_ref().map(|f| f.1.as_slice()),
                limit,
            },
        )?;
        let triggers = self.ingestor.read(tenant, |e| {
            page.triggers
                .iter()
                .map(|r| to_trigger(e, r))
                .collect::<Result<Vec<_>, String>>()
        })?;
        let triggers = triggers.map_err(|m| AppError::Store(siyu_store::StoreError::Corrupt(m)))?;
        Ok(Page {
            triggers,
            next_after: page.scanned_to,
        })
    }

    /// A consumer's stored cursor.
    pub fn trigger_cursor(
        &self,
        tenant: TenantId,
        consumer: &Consumer,
    ) -> Result<Cursor, TriggerError> {
        self.store()
            .trigger_cursor(tenant, consumer.as_str())?
            .map(Cursor::from_stored)
            .ok_or_else(|| TriggerError::NoCursor(consumer.as_str().to_string()))
    }

    /// Every consumer's cursor, by name.
    pub fn trigger_cursors(&self, tenant: TenantId) -> Result<Vec<Cursor>, TriggerError> {
        Ok(self
            .store()
            .trigger_cursors(tenant)?
            .into_iter()
            .map(Cursor::from_stored)
            .collect())
    }

    /// Stores a consumer's cursor: it has handled every trigger up to `after`. Moving back
    /// (to replay) is allowed; moving past the stream's head is refused, so a typo cannot
    /// skip triggers that have not happened yet.
    pub fn set_trigger_cursor(
        &self,
        tenant: TenantId,
        consumer: &Consumer,
        after: i64,
    ) -> Result<Cursor, TriggerError> {
        let head = self.ingestor.read(tenant, head)?;
        if after > head || after < 0 {
            return Err(TriggerError::CursorAhead { after, head });
        }
        let now: Millis = self.ingestor.clock().now();
        self.store()
            .set_trigger_cursor(tenant, consumer.as_str(), after, now)?;
        Ok(Cursor {
            consumer: consumer.as_str().to_string(),
            after,
            updated_at: Some(siyu_domain::time::format_rfc3339(now)),
        })
    }
}

/// A stored row as a trigger, its fan as the fan is now.
fn to_trigger(e: &TenantEngine, r: &StoredTrigger) -> Result<Trigger, String> {
    let now = |fan: i64| Some(e.identities().current(FanId(fan)).unwrap_or(FanId(fan)).0);
    let cause = |c: &str| Cause::parse(c).ok_or_else(|| format!("unknown trigger cause {c:?}"));
    let layer = |l: &str| {
        l.parse::<siyu_domain::Layer>()
            .map_err(|_| format!("unknown layer {l:?}"))
    };
    Ok(match r {
        StoredTrigger::Event(h) => Trigger {
            id: r.position(),
            fan: e.fan_of_seq(h.seq).map(|f| f.0),
            at: h.ts,
            what: What::Event {
                seq: h.seq,
                event_id: h.id.clone(),
                event_type: h.ty.clone(),
            },
        },
        StoredTrigger::Transition(t) => Trigger {
            id: t.id,
            fan: now(t.fan),
            at: t.at,
            what: What::LayerChanged {
                from: t.from.as_deref().map(layer).transpose()?,
                to: layer(&t.to)?,
                cause: cause(&t.cause)?,
                seq: t.seq,
                event_id: t.event_id.clone(),
            },
        },
        StoredTrigger::Segment(s) => {
            let (segment, cause, seq, event_id) =
                (s.segment, cause(&s.cause)?, s.seq, s.event_id.clone());
            Trigger {
                id: s.id,
                fan: now(s.fan),
                at: s.at,
                what: if s.entered {
                    What::SegmentEntered {
                        segment,
                        cause,
                        seq,
                        event_id,
                    }
                } else {
                    What::SegmentExited {
                        segment,
                        cause,
                        seq,
                        event_id,
                    }
                },
            }
        }
        StoredTrigger::Tag(t) => {
            let (tag, source) = (t.tag.clone(), t.source.clone());
            Trigger {
                id: t.id,
                fan: now(t.fan),
                at: t.at,
                what: if t.added {
                    What::TagAdded { tag, source }
                } else {
                    What::TagRemoved { tag, source }
                },
            }
        }
    })
}

/// Wakes whoever waits for new triggers; spurious wake-ups are fine, waiters read again.
static CHANGED: OnceLock<tokio::sync::watch::Sender<u64>> = OnceLock::new();

fn changed() -> &'static tokio::sync::watch::Sender<u64> {
    CHANGED.get_or_init(|| tokio::sync::watch::channel(0).0)
}

/// Says that triggers may have become visible (events applied, derived rows stored).
pub fn notify() {
    changed().send_modify(|n| *n = n.wrapping_add(1));
    crate::journeys::worker::bell().ring();
}

/// A receiver that sees the next [`notify`].
pub fn subscribe() -> tokio::sync::watch::Receiver<u64> {
    changed().subscribe()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_names_are_checked() {
        assert!(Consumer::parse("journeys").is_ok());
        assert!(Consumer::parse("crm.sync-2_a").is_ok());
        for bad in ["", "Journeys", "a b", "名字", &"x".repeat(65)] {
            assert!(
                matches!(Consumer::parse(bad), Err(TriggerError::InvalidConsumer(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse_types("event,nope"),
            Err(TriggerError::UnknownType(t)) if t == "nope"
        ));
    }
}
