//! Segment services: parse an expression, evaluate it over a tenant's resolved fans as of now
//! or a given instant, and describe the fans it selects.

use serde::Serialize;
use siyu_domain::audience::{self, Expr, ParseError};
use siyu_domain::{IdentityKind, Layer, Millis};
use siyu_engine::{EvalError, FanId, SegmentCause, SegmentDef, TagChange, TenantEngine};
use siyu_store::{Store, StoredTagChange, TenantId};

use crate::AppError;

/// Why a segment expression was refused (the edge maps these to 400 / exit 2).
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// The store or the writer failed (not the request's fault).
    #[error(transparent)]
    App(#[from] AppError),
    #[error("segment expression, {0}")]
    Parse(ParseError),
    #[error(transparent)]
    Eval(#[from] EvalError),
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("no saved segment {0:?}")]
    NotFound(String),
    #[error("a segment named {0:?} already exists")]
    Exists(String),
    #[error("no fan {0} in this tenant")]
    NoFan(i64),
    #[error(
        "segment expression, column {column}: no fan group {group:?} appears in this tenant's events"
    )]
    UnknownGroup { column: usize, group: String },
}

impl From<siyu_store::StoreError> for SegmentError {
    fn from(e: siyu_store::StoreError) -> Self {
        SegmentError::App(e.into())
    }
}

impl SegmentError {
    /// Names the column of what the evaluation refused in `text` (the parser's errors already
    /// do).
    pub fn locate(self, text: &str) -> SegmentError {
        match self {
            SegmentError::Eval(EvalError::UnknownGroup(group)) => {
                // The group is written quoted inside in_group(...): point at its quote.
                let column = text
                    .find(group.as_str())
                    .map_or(1, |b| text[..b].chars().count());
                SegmentError::UnknownGroup { column, group }
            }
            e => e,
        }
    }
}

impl SegmentError {
    pub fn code(&self) -> &'static str {
        match self {
            SegmentError::App(e) => e.code(),
            SegmentError::Parse(_) => "invalid_segment",
            SegmentError::Eval(e) => e.code(),
            SegmentError::Invalid { .. } => "invalid_field",
            SegmentError::NotFound(_) => "segment_not_found",
            SegmentError::Exists(_) => "segment_exists",
            SegmentError::NoFan(_) => "fan_not_found",
            SegmentError::UnknownGroup { .. } => "unknown_group",
        }
    }

    /// The request field the error is about.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            SegmentError::Parse(_) | SegmentError::Eval(_) | SegmentError::UnknownGroup { .. } => {
                Some("expr")
            }
            SegmentError::Invalid { field, .. } => Some(field),
            SegmentError::Exists(_) => Some("name"),
            SegmentError::NotFound(_) | SegmentError::NoFan(_) | SegmentError::App(_) => None,
        }
    }
}

/// A segment or tag name: 1–64 characters, no control characters, not only spaces.
pub fn check_name(field: &'static str, name: &str) -> Result<String, SegmentError> {
    let n = name.trim();
    let chars = n.chars().count();
    if chars == 0 || chars > 64 || n.chars().any(char::is_control) {
        return Err(SegmentError::Invalid {
            field,
            message: format!(
                "{name:?} is not a valid {field}: use 1–64 characters, no control characters"
            ),
        });
    }
    Ok(n.to_string())
}

/// A saved segment as listed and shown.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct SavedView {
    pub id: i64,
    pub name: String,
    pub expr: String,
    pub tag: Option<String>,
    pub created_at: String,
    /// Members now.
    pub count: usize,
    pub as_of: String,
}

/// One `segment_entered` / `segment_exited` trigger as the API and CLI show it.
#[derive(Debug, Clone, Serialize)]
pub struct Trigger {
    pub id: i64,
    /// `segment_entered` or `segment_exited`.
    pub r#type: &'static str,
    pub segment: i64,
    pub fan: i64,
    pub at: String,
    pub cause: String,
    pub seq: Option<i64>,
    pub event_id: Option<String>,
}

impl From<&siyu_store::StoredSegmentChange> for Trigger {
    fn from(c: &siyu_store::StoredSegmentChange) -> Self {
        Trigger {
            id: c.id,
            r#type: if c.entered {
                "segment_entered"
            } else {
                "segment_exited"
            },
            segment: c.segment,
            fan: c.fan,
            at: siyu_domain::time::format_rfc3339(c.at),
            cause: c.cause.clone(),
            seq: c.seq,
            event_id: c.event_id.clone(),
        }
    }
}

/// A fan's tags now and their history.
#[derive(Debug, Clone, Serialize)]
pub struct TagHistory {
    pub fan: FanId,
    pub tags: Vec<String>,
    pub history: Vec<TagEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TagEntry {
    pub id: i64,
    /// The fan id the tag was set on (the fan's own, or one merged into it).
    pub fan: i64,
    pub tag: String,
    /// `added` or `removed`.
    pub change: &'static str,
    pub at: String,
    pub source: String,
}

impl From<&StoredTagChange> for TagEntry {
    fn from(r: &StoredTagChange) -> Self {
        TagEntry {
            id: r.id,
            fan: r.fan,
            tag: r.tag.clone(),
            change: if r.added { "added" } else { "removed" },
            at: siyu_domain::time::format_rfc3339(r.at),
            source: r.source.clone(),
        }
    }
}

/// Which fans a tag operation is for.
#[derive(Debug, Clone)]
pub enum TagTarget {
    Fan(FanId),
    Expr(String),
}

/// One fan of an audience, as listed and exported.
#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub fan: FanId,
    pub layer: Option<Layer>,
    pub engagement_30d: u32,
    pub orders_180d: u32,
    /// `kind:value`, every identity of the fan.
    pub identities: Vec<String>,
}

/// What a count or preview answers.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub count: usize,
    /// Fans that exist as of `as_of` (the count's denominator).
    pub fans: usize,
    pub as_of: String,
    /// The first fans, by id (preview only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sample: Vec<Member>,
    /// Evaluation time in milliseconds (not including the engine's catch-up).
    pub took_ms: f64,
}

impl From<ParseError> for SegmentError {
    fn from(e: ParseError) -> Self {
        SegmentError::Parse(e)
    }
}

/// Parses `text`.
pub fn parse(text: &str) -> Result<Expr, SegmentError> {
    Ok(audience::parse(text)?)
}

/// The instant "now" means for an engine: its live clock, else the wall clock.
pub fn now_of(engine: &TenantEngine) -> Millis {
    engine.clock().unwrap_or_else(siyu_domain::time::now_ms)
}

/// Counts the fans `expr` selects as of `as_of` (default now) and lists the first `sample`.
pub fn count(
    engine: &TenantEngine,
    expr: &Expr,
    as_of: Option<Millis>,
    sample: usize,
) -> Result<Answer, SegmentError> {
    let as_of = as_of.unwrap_or_else(|| now_of(engine));
    let started = std::time::Instant::now();
    let audience = engine.audience(expr, as_of)?;
    let took_ms = started.elapsed().as_secs_f64() * 1000.0;
    let sample = members(engine, &audience, 0, sample, as_of);
    Ok(Answer {
        count: audience.count(),
        fans: audience.of(),
        as_of: siyu_domain::time::format_rfc3339(as_of),
        sample,
        took_ms,
    })
}

/// Fans `offset..offset + limit` of an audience, described.
pub fn members(
    engine: &TenantEngine,
    audience: &siyu_engine::Audience,
    offset: usize,
    limit: usize,
    as_of: Millis,
) -> Vec<Member> {
    audience
        .fan_ids(engine.identities(), offset, limit)
        .into_iter()
        .map(|fan| describe(engine, fan, as_of))
        .collect()
}

fn describe(engine: &TenantEngine, fan: FanId, as_of: Millis) -> Member {
    let features = engine.features_of(fan, as_of);
    let identities = engine
        .identities()
        .identities_of(fan)
        .into_iter()
        .map(|(k, v): (IdentityKind, String)| format!("{}:{v}", k.as_str()))
        .collect();
    Member {
        fan,
        layer: features.map(|f| siyu_engine::layers::layer_of(&f, engine.rules())),
        engagement_30d: features.map_or(0, |f| f.engagement_30d),
        orders_180d: features.map_or(0, |f| f.orders_180d),
        identities,
    }
}

/// A receiver woken when segment triggers (among others) may have been stored: see
/// [`crate::triggers::subscribe`].
pub fn subscribe_changes() -> tokio::sync::watch::Receiver<u64> {
    crate::triggers::subscribe()
}

/// Applies stored tag changes after the engine's position; `manual_only` skips the automatic
/// ones (a live engine made those itself).
pub fn load_tags(
    store: &dyn Store,
    engine: &mut TenantEngine,
    tenant: TenantId,
    manual_only: bool,
) -> Result<(), AppError> {
    const PAGE: usize = 10_000;
    loop {
        let rows = store.tag_changes(tenant, None, engine.tags_seen(), PAGE)?;
        let Some(last) = rows.last().map(|r| r.id) else {
            return Ok(());
        };
        for r in &rows {
            if !manual_only || r.source == MANUAL {
                engine.apply_tag(&to_change(r));
            }
        }
        engine.set_tags_seen(last);
        if rows.len() < PAGE {
            return Ok(());
        }
    }
}

/// The source of tags operators set by hand.
pub const MANUAL: &str = "manual";

fn to_change(r: &StoredTagChange) -> TagChange {
    TagChange {
        fan: FanId(r.fan),
        tag: r.tag.clone(),
        on: r.added,
        at: r.at,
        source: r.source.clone(),
    }
}

/// Puts the tenant's saved segments in force in a live engine (no-op without live layers):
/// new ones get their members, recorded as entered with `cause` unless `previous` says so;
/// deleted ones are dropped.
pub fn sync(
    store: &dyn Store,
    engine: &mut TenantEngine,
    tenant: TenantId,
    previous: &dyn Fn(i64, FanId) -> bool,
    cause: SegmentCause,
) -> Result<(), AppError> {
    if engine.clock().is_none() {
        return Ok(());
    }
    let stored = store.segments(tenant)?;
    let held = engine.segment_defs();
    if stored.len() == held.len() && stored.iter().zip(&held).all(|(s, h)| s.id == h.id) {
        return Ok(());
    }
    put_in_force(engine, tenant, defs(tenant, &stored), previous, cause);
    Ok(())
}

/// The saved segments' definitions (an unreadable one is logged and left out).
pub(crate) fn defs(tenant: TenantId, stored: &[siyu_store::StoredSegment]) -> Vec<SegmentDef> {
    stored
        .iter()
        .filter_map(|s| match audience::parse(&s.expr) {
            Ok(expr) => Some(SegmentDef {
                id: s.id,
                expr,
                tag: s.tag.clone(),
            }),
            Err(e) => {
                tracing::error!(tenant, segment = s.id, error = %e, "stored segment unreadable");
                None
            }
        })
        .collect()
}

/// [`TenantEngine::set_segments`], with what cannot be evaluated logged.
pub(crate) fn put_in_force(
    engine: &mut TenantEngine,
    tenant: TenantId,
    defs: Vec<SegmentDef>,
    previous: &dyn Fn(i64, FanId) -> bool,
    cause: SegmentCause,
) {
    for (id, e) in engine.set_segments(defs, previous, cause) {
        tracing::warn!(tenant, segment = id, error = %e, "saved segment cannot be evaluated");
    }
}

/// A saved segment by id or name.
pub fn find(saved: &[siyu_store::StoredSegment], which: &str) -> Option<siyu_store::StoredSegment> {
    saved
        .iter()
        .find(|s| s.name == which)
        .or_else(|| {
            which
                .parse::<i64>()
                .ok()
                .and_then(|id| saved.iter().find(|s| s.id == id))
        })
        .cloned()
}

/// A saved segment's members now: the live ones, or (no live layers, or not evaluable yet)
/// a fresh evaluation.
pub fn audience_of(
    engine: &TenantEngine,
    saved: &siyu_store::StoredSegment,
) -> Option<siyu_engine::Audience> {
    engine.segment_members(saved.id).or_else(|| {
        let expr = audience::parse(&saved.expr).ok()?;
        engine.audience(&expr, now_of(engine)).ok()
    })
}

/// A saved segment with its count now.
pub fn view(engine: &TenantEngine, saved: &siyu_store::StoredSegment) -> SavedView {
    let a = audience_of(engine, saved);
    SavedView {
        id: saved.id,
        name: saved.name.clone(),
        expr: saved.expr.clone(),
        tag: saved.tag.clone(),
        created_at: siyu_domain::time::format_rfc3339(saved.created_at),
        count: a.as_ref().map_or(0, |a| a.count()),
        as_of: siyu_domain::time::format_rfc3339(a.map_or_else(|| now_of(engine), |a| a.as_of)),
    }
}

/// The manual tag changes that add `tag` to `fans` (those without it) or remove it (from
/// every id of each fan that has it).
pub fn tag_rows(
    engine: &TenantEngine,
    fans: &[FanId],
    tag: &str,
    add: bool,
    now: Millis,
) -> Vec<StoredTagChange> {
    let mut rows = Vec::new();
    for &fan in fans {
        let ids = engine.identities().ids_of(fan);
        let has = engine.tags().has(tag, &ids, now);
        if add && !has {
            rows.push(StoredTagChange {
                id: 0,
                fan: fan.0,
                tag: tag.to_string(),
                added: true,
                at: now,
                source: MANUAL.into(),
            });
        } else if !add && has {
            for id in ids {
                if engine.tags().has(tag, &[id], now) {
                    rows.push(StoredTagChange {
                        id: 0,
                        fan: id.0,
                        tag: tag.to_string(),
                        added: false,
                        at: now,
                        source: MANUAL.into(),
                    });
                }
            }
        }
    }
    rows
}
