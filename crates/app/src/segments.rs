//! Segment services: parse an expression, evaluate it over a tenant's resolved fans as of now
//! or a given instant, and describe the fans it selects.

use serde::Serialize;
use siyu_domain::audience::{self, Expr, ParseError};
use siyu_domain::{IdentityKind, Layer, Millis};
use siyu_engine::{EvalError, FanId, TenantEngine};

/// Why a segment expression was refused (the edge maps these to 400 / exit 2).
#[derive(Debug, Clone, thiserror::Error)]
pub enum SegmentError {
    #[error("segment expression, {0}")]
    Parse(ParseError),
    #[error(transparent)]
    Eval(#[from] EvalError),
}

impl SegmentError {
    pub fn code(&self) -> &'static str {
        match self {
            SegmentError::Parse(_) => "invalid_segment",
            SegmentError::Eval(e) => e.code(),
        }
    }
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
    let everyone = engine.audience(&Expr::And(Vec::new()), as_of)?;
    let sample = members(engine, &audience, 0, sample, as_of);
    Ok(Answer {
        count: audience.count(),
        fans: everyone.count(),
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
