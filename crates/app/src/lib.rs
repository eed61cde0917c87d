//! Siyu's application services, shared by the HTTP server and the CLI: tenants and their keys,
//! the ingest writer, and the read side (stats). Nothing here knows about HTTP or terminals.
//!
//! # Layout
//! - [`keys`]: API keys — generated, shown once, stored as SHA-256 hashes.
//! - [`tenants`]: tenant names, creation, and key rotation (with an optional grace).
//! - [`identity`]: replay with operator decisions, fan views, merges and their undoing.
//! - [`ingest`]: the single writer thread with group commit, and the live engines it feeds.
//! - [`connectors`]: per-tenant connector settings (Douyin client secret, Ocean Engine token),
//!   with credentials that never print and are sealed at rest.
//! - [`channels`]: where journey messages leave: the webhook, Douyin IM and WeCom robot
//!   adapters and their per-tenant settings, with a kill switch each.
//! - [`secrets`]: the secret key and the AEAD that seals connector credentials.
//! - [`targets`]: which outbound URLs may be called (https, public hosts), checked when set
//!   and at each request.
//! - [`douyin`]: Douyin webhook deliveries: signature, mapping, append once.
//! - [`oceanengine`]: the Ocean Engine lead poller, steppable, with a durable checkpoint.
//! - [`journeys`]: SOP journeys — definitions, reports, tasks, policy — and the two
//!   workers that make them act (the run worker and the per-channel outbox).
//! - [`triggers`]: the one trigger stream (events, layer, segment and tag changes), its
//!   consumers' cursors and the wake-up for long polls.
//! - [`App`]: the handle the server and the CLI hold.

pub mod analytics;
pub mod channels;
pub mod connectors;
pub mod douyin;
pub mod identity;
pub mod ingest;
pub mod journeys;
pub mod keys;
pub mod leads;
pub mod oceanengine;
pub mod owners;
pub mod secrets;
pub mod segments;
pub mod snapshots;
pub mod spend;
pub mod targets;
pub mod tenants;
pub mod triggers;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use siyu_domain::{Domain, ErrorCode, Event, EventError, Millis, TimeBounds};
use siyu_engine::{
    Decision, DedupReport, FanId, Flow, LayerCounts, PossibleDuplicate, Rules, RulesError, Stats,
};
use siyu_store::{Appended, KeyRole, Store, StoreError, Tenant, TenantId};

pub use connectors::Safeguards;
pub use identity::{FanView, IdentityError};
pub use ingest::{EngineMode, Ingestor};
pub use tenants::{RotatedKey, TenantKeys, TenantName};

/// Everything the services can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the store could not commit: {message}")]
    Commit { code: &'static str, message: String },
    #[error("the ingest writer has stopped")]
    WriterStopped,
    #[error("invalid tenant name {0:?}: use 1–64 letters, digits, '-' or '_'")]
    InvalidTenantName(String),
    #[error("no tenant here yet: create one with `siyu tenant create NAME`")]
    NoTenant,
    #[error("there are several tenants ({0}); say which with --tenant")]
    AmbiguousTenant(String),
    #[error("writing the output failed: {source}")]
    Io { source: std::io::Error },
    /// Another node serves the tenant, or it is passing between nodes (see [`owners`]).
    #[error("tenant {0} is served by another node or moving between nodes; try again")]
    NotOwner(TenantId),
    #[error(transparent)]
    Secret(#[from] secrets::SecretError),
    #[error("key {0:?} is not a key role: use write or admin")]
    InvalidKeyRole(String),
    #[error(
        "grace_seconds {0} is out of range: 0 (the old key stops at once) to {max} (7 days)",
        max = tenants::MAX_KEY_GRACE_S
    )]
    InvalidGrace(u64),
}

impl AppError {
    /// A stable machine code for the edge.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Store(e) => e.code(),
            AppError::Commit { code, .. } => code,
            AppError::WriterStopped => "shutting_down",
            AppError::InvalidTenantName(_) => "invalid_tenant_name",
            AppError::NoTenant => "tenant_not_found",
            AppError::AmbiguousTenant(_) => "tenant_ambiguous",
            AppError::Io { .. } => "io_error",
            AppError::NotOwner(_) => "tenant_moving",
            AppError::Secret(e) => e.code(),
            AppError::InvalidKeyRole(_) => "invalid_key_role",
            AppError::InvalidGrace(_) => "invalid_grace",
        }
    }
}

/// Why a layer rules file was not put in force.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The file does not parse or check; nothing changed.
    #[error("{0}; the rules in force are unchanged")]
    Rules(RulesError),
    /// The store or the writer failed.
    #[error(transparent)]
    App(#[from] AppError),
}

impl LayerError {
    /// The stable code: `invalid_rules` for a refused file, as `PUT /api/rules` answers it.
    pub fn code(&self) -> &'static str {
        match self {
            LayerError::Rules(_) => "invalid_rules",
            LayerError::App(e) => e.code(),
        }
    }
}

/// One refused event in a batch answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// Position in the batch (or line number − 1 in a file).
    pub index: usize,
    pub id: Option<String>,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl Rejection {
    pub fn new(index: usize, e: EventError) -> Rejection {
        Rejection {
            index,
            id: e.id,
            code: e.code.as_str(),
            message: e.message,
            field: e.field,
        }
    }
}

/// The answer to a batch: how many were stored, how many were already there, which were refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BatchOutcome {
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: Vec<Rejection>,
}

impl BatchOutcome {
    /// Counts the store's verdicts into the outcome.
    pub fn add_appended(&mut self, appended: &[Appended]) {
        for a in appended {
            match a {
                Appended::Stored(_) => self.accepted += 1,
                Appended::Duplicate => self.duplicates += 1,
            }
        }
        metrics::counter!("siyu_ingest_events_total", "outcome" => "accepted")
            .increment(self.accepted);
        metrics::counter!("siyu_ingest_events_total", "outcome" => "duplicate")
            .increment(self.duplicates);
    }
}

/// Parses a batch of native events; refused ones become [`Rejection`]s with their index.
pub fn parse_batch(
    values: Vec<Value>,
    bounds: impl Into<TimeBounds>,
) -> (Vec<Event>, Vec<Rejection>) {
    let bounds = bounds.into();
    let mut events = Vec::with_capacity(values.len());
    let mut rejected = Vec::new();
    for (i, v) in values.into_iter().enumerate() {
        match Event::from_value(v, bounds) {
            Ok(e) => events.push(e),
            Err(e) => rejected.push(Rejection::new(i, e)),
        }
    }
    if !rejected.is_empty() {
        metrics::counter!("siyu_ingest_events_total", "outcome" => "rejected")
            .increment(rejected.len() as u64);
    }
    (events, rejected)
}

/// A refusal for an event that is too large to look at.
pub fn too_large(index: usize, id: Option<String>, limit: usize) -> Rejection {
    Rejection {
        index,
        id,
        code: ErrorCode::EventTooLarge.as_str(),
        message: format!("event is larger than {limit} bytes"),
        field: None,
    }
}

/// How long an authenticated key's tenant is trusted without asking the store again.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(5);

/// The handle the server and the CLI hold.
pub struct App {
    store: Arc<dyn Store>,
    pub ingestor: Ingestor,
    /// Key hash → (tenant and role, when looked up, when the key expires). Hits are kept for
    /// [`KEY_CACHE_TTL`], so a tenant setting changed by another process (the CLI beside a
    /// server) is seen within seconds; misses are not cached, so a new tenant is found at once.
    /// A rotation through this `App` clears the tenant's entries, and a key's expiry is checked
    /// against the clock on every hit, so neither a rotated key nor an expired one gets through
    /// the cache.
    keys: RwLock<HashMap<String, CachedKey>>,
    /// The sealer of connector credentials and the policy of outbound URLs.
    safeguards: Safeguards,
    /// The secret a one-shot command beside this server forwards with ([`operator_key`]).
    operator: RwLock<Option<String>>,
    /// The earliest event time accepted from any source (`siyu serve --min-timestamp`).
    min_ts: Millis,
}

/// A tenant's layer rules in force, as `GET` and `PUT /api/rules` answer them and
/// `siyu tenant rules` prints them.
#[derive(Debug, Clone, Serialize)]
pub struct RulesInForce {
    /// How many rules files were put in force for the tenant; 0: none, the defaults.
    pub version: i64,
    #[serde(flatten)]
    pub rules: Rules,
}

/// The key a one-shot command beside a server sends (`siyu import` into a data directory the
/// server holds): the server's secret, from its lock file or node row, and the tenant's name.
/// It is an admin key of that tenant for as long as the server runs.
pub fn operator_key(secret: &str, tenant: &str) -> String {
    format!("{secret}.{tenant}")
}

/// A key found in the store: who it speaks for, when it was looked up, when it expires.
type CachedKey = (Caller, Instant, Option<Millis>);

/// Who an API key speaks for, as the server needs it (never the store's rows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The tenant's id and name.
    pub id: TenantId,
    pub name: String,
    /// The domain of custom events whose domain the source cannot say.
    pub custom_domain: String,
    pub role: Role,
}

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// May only ingest.
    Write,
    /// May use the whole API.
    Admin,
    /// The server's own operator, with the secret of its lock file or node row (a one-shot
    /// command beside it): may create tenants, and nothing of any tenant (see [`operator_key`]
    /// for that). Its `Caller` names no tenant (id 0).
    Operator,
}

impl Caller {
    fn from_stored(t: Tenant, role: KeyRole) -> Caller {
        Caller {
            id: t.id,
            name: t.name,
            custom_domain: t.custom_domain,
            role: match role {
                KeyRole::Write => Role::Write,
                KeyRole::Admin => Role::Admin,
            },
        }
    }
}

/// A fan's layer change, as the API shows it (see `siyu_engine::Transition`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerChange {
    /// Its position in the tenant's trigger stream; increasing per tenant.
    pub id: i64,
    pub fan: FanId,
    /// `None`: the fan was new.
    pub from: Option<siyu_domain::Layer>,
    pub to: siyu_domain::Layer,
    pub at: Millis,
    /// `event`, `decay`, `rules` or `identity`.
    pub cause: String,
    /// The causing event's sequence number and id.
    pub seq: Option<i64>,
    pub event_id: Option<String>,
}

impl LayerChange {
    fn from_stored(t: siyu_store::StoredTransition) -> Result<LayerChange, AppError> {
        let layer = |s: &str| {
            s.parse::<siyu_domain::Layer>().map_err(|_| {
                AppError::Store(StoreError::Corrupt(format!(
                    "transition {}: layer {s:?}",
                    t.id
                )))
            })
        };
        Ok(LayerChange {
            id: t.id,
            fan: FanId(t.fan),
            from: t.from.as_deref().map(layer).transpose()?,
            to: layer(&t.to)?,
            at: t.at,
            cause: t.cause,
            seq: t.seq,
            event_id: t.event_id,
        })
    }
}

impl App {
    /// Starts the services on a store: loads every tenant's engine from the log (when `mode`
    /// is live) and starts the writer.
    pub fn start(store: Arc<dyn Store>, mode: EngineMode) -> Result<App, AppError> {
        App::start_with_clock(store, mode, Arc::new(siyu_domain::time::SystemClock))
    }

    /// [`App::start`] on a given clock (tests: a [`siyu_domain::time::ManualClock`]).
    pub fn start_with_clock(
        store: Arc<dyn Store>,
        mode: EngineMode,
        clock: Arc<dyn siyu_domain::time::Clock>,
    ) -> Result<App, AppError> {
        App::start_with(store, mode, clock, Safeguards::default())
    }

    /// [`App::start_with_clock`] with the connectors' [`Safeguards`] (what `siyu serve` and
    /// the connector commands use: without a sealer, connector credentials can be neither
    /// sealed nor opened, and the default target policy allows public https hosts only).
    pub fn start_with(
        store: Arc<dyn Store>,
        mode: EngineMode,
        clock: Arc<dyn siyu_domain::time::Clock>,
        safeguards: Safeguards,
    ) -> Result<App, AppError> {
        let ingestor = Ingestor::start_with_clock(store.clone(), mode, clock)?;
        Ok(App {
            store,
            ingestor,
            keys: RwLock::new(HashMap::new()),
            operator: RwLock::new(None),
            min_ts: siyu_domain::event::DEFAULT_MIN_TS,
            safeguards,
        })
    }

    /// Accepts events from `min_ts` on instead of [`siyu_domain::event::DEFAULT_MIN_TS`].
    pub fn with_min_ts(mut self, min_ts: Millis) -> App {
        self.min_ts = min_ts;
        self
    }

    /// The event times accepted now: every source (the HTTP ingest, webhooks, pollers) maps
    /// its input within these.
    pub fn time_bounds(&self, now: Millis) -> TimeBounds {
        TimeBounds::new(now, self.min_ts)
    }

    /// Which store backend answers, after asking it something (the health check).
    pub fn health(&self) -> Result<&'static str, AppError> {
        self.store.tenants()?;
        Ok(self.store.backend())
    }

    /// The store, for the CLI's own commands (the server reaches it only through `App`).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The tenant and role of an API key, if it is one and has not expired (a key replaced
    /// with a grace works until the instant the grace ends, on this app's clock).
    pub fn authenticate(&self, key: &str) -> Result<Option<Caller>, AppError> {
        if key.starts_with(keys::OPERATOR_PREFIX) {
            return self.operator_caller(key);
        }
        let hash = keys::hash_key(key);
        let now = self.ingestor.clock().now();
        let live = |expires: Option<Millis>| expires.is_none_or(|e| now < e);
        if let Some((c, at, expires)) = self
            .keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&hash)
            && at.elapsed() < KEY_CACHE_TTL
        {
            return Ok(live(*expires).then(|| c.clone()));
        }
        let Some(found) = self.store.key_lookup(&hash)? else {
            return Ok(None);
        };
        if !live(found.expires_at) {
            return Ok(None);
        }
        let caller = Caller::from_stored(found.tenant, found.role);
        self.keys
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(hash, (caller.clone(), Instant::now(), found.expires_at));
        Ok(Some(caller))
    }

    /// Gives a tenant a new key of `role`; the old one works for `grace_s` more seconds (0:
    /// stops at once), never again after. The tenant's cached keys are dropped, so the answer
    /// is in force here when it returns.
    pub fn rotate_key(
        &self,
        tenant: TenantId,
        tenant_name: &str,
        role: KeyRole,
        grace_s: u64,
    ) -> Result<RotatedKey, AppError> {
        let now = self.ingestor.clock().now();
        let rotated = tenants::rotate(&*self.store, tenant, tenant_name, role, grace_s, now)?;
        self.forget_keys(tenant);
        Ok(rotated)
    }

    /// Drops a tenant's cached keys: the next request with any of them asks the store.
    fn forget_keys(&self, tenant: TenantId) {
        self.keys
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, (c, ..)| c.id != tenant);
    }

    /// Accepts [`operator_key`]s made with `secret` from now on.
    pub fn set_operator_secret(&self, secret: &str) {
        *self.operator.write().unwrap_or_else(|p| p.into_inner()) = Some(secret.to_string());
    }

    /// The tenant an [`operator_key`] speaks for, as its admin; `None` for a wrong secret.
    fn operator_caller(&self, key: &str) -> Result<Option<Caller>, AppError> {
        let (secret, tenant) = key.split_once('.').unwrap_or((key, ""));
        let bare = !key.contains('.');
        let held = self.operator.read().unwrap_or_else(|p| p.into_inner());
        let Some(held) = held.as_deref() else {
            return Ok(None);
        };
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            secret.as_bytes(),
            held.as_bytes(),
        )) {
            return Ok(None);
        }
        if bare {
            return Ok(Some(Caller {
                id: 0,
                name: String::new(),
                custom_domain: String::new(),
                role: Role::Operator,
            }));
        }
        let name = (!tenant.is_empty()).then_some(tenant);
        let t = match App::resolve_tenant(&*self.store, name) {
            Ok(t) => t,
            Err(AppError::NoTenant | AppError::AmbiguousTenant(_)) => return Ok(None),
            Err(AppError::Store(StoreError::NoSuchTenant(_))) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(Caller::from_stored(t, KeyRole::Admin)))
    }

    /// Changes where a tenant's custom events without a domain go, effective at once here.
    pub fn set_custom_domain(&self, tenant: TenantId, domain: Domain) -> Result<(), AppError> {
        self.store.set_custom_domain(tenant, domain)?;
        self.forget_keys(tenant);
        Ok(())
    }

    /// Stores parsed events for a tenant and adds the verdicts to `outcome`.
    pub async fn ingest(
        &self,
        tenant: TenantId,
        events: Vec<Event>,
        outcome: &mut BatchOutcome,
    ) -> Result<(), AppError> {
        if events.is_empty() {
            return Ok(());
        }
        let appended = self.ingestor.append(tenant, events).await?;
        outcome.add_appended(&appended);
        Ok(())
    }

    /// Totals for a tenant, from the live engine.
    pub fn stats(&self, tenant: TenantId) -> Result<Stats, AppError> {
        self.ingestor.stats(tenant)
    }

    /// A fan with identities, merge history and possible duplicates (`None`: no such fan).
    pub fn fan(&self, tenant: TenantId, fan: FanId) -> Result<Option<FanView>, AppError> {
        let Some(mut view) = self.ingestor.read(tenant, |e| identity::fan_view(e, fan))? else {
            return Ok(None);
        };
        view.link_events(&*self.store, tenant)?;
        Ok(Some(view))
    }

    /// The fans holding an identity value, normalized as at ingest.
    pub fn lookup(
        &self,
        tenant: TenantId,
        kind: &str,
        value: &str,
    ) -> Result<Vec<FanView>, IdentityError> {
        let id = identity::parse_lookup(kind, value)?;
        let mut views = self.ingestor.read(tenant, |e| {
            e.identities()
                .lookup(id.kind, id.value())
                .into_iter()
                .filter_map(|f| identity::fan_view(e, f))
                .collect::<Vec<_>>()
        })?;
        for v in &mut views {
            v.link_events(&*self.store, tenant)?;
        }
        Ok(views)
    }

    /// Open possible duplicates.
    pub fn possible_duplicates(
        &self,
        tenant: TenantId,
    ) -> Result<Vec<PossibleDuplicate>, AppError> {
        self.ingestor
            .read(tenant, |e| e.identities().possible_duplicates())
    }

    /// Records and applies an operator's confirm/distinct decision (on the writer).
    pub fn decide(&self, tenant: TenantId, d: Decision) -> Result<(), IdentityError> {
        self.ingestor.mutate(tenant, move |store, e| {
            identity::decide(store, tenant, e, d)
        })?
    }

    /// Undoes the merge that absorbed `from`; everything derived is recomputed. The replay is
    /// built with the engine only read, so readers go on meanwhile.
    pub fn unmerge(&self, tenant: TenantId, from: FanId) -> Result<(), IdentityError> {
        self.ingestor
            .command_then_rebuild(tenant, move |store, cell| {
                let recorded = identity::unmerge(store, tenant, &ingest::read_engine(cell), from)?;
                let rebuild = recorded.is_ok();
                Ok((recorded, rebuild))
            })?
    }

    /// The lead dedup report for leads with `from <= ts < to`.
    pub fn dedup_report(
        &self,
        tenant: TenantId,
        from: Option<Millis>,
        to: Option<Millis>,
    ) -> Result<DedupReport, AppError> {
        self.ingestor.read(tenant, |e| e.dedup_report(from, to))
    }

    /// Fans per layer as of `as_of`.
    pub fn layers(&self, tenant: TenantId, as_of: Millis) -> Result<LayerCounts, AppError> {
        // At the live clock, or within the tick that moves it next, the live layers are the
        // answer: no recompute of every fan.
        let tick = ingest::TICK.as_millis() as Millis;
        self.ingestor.read(tenant, |e| {
            e.clock()
                .filter(|c| as_of >= *c && as_of - c < tick)
                .and_then(|_| e.live_counts())
                .unwrap_or_else(|| e.layers_as_of(as_of).counts())
        })
    }

    /// How fans moved between layers from `from` to `to`.
    pub fn flow(&self, tenant: TenantId, from: Millis, to: Millis) -> Result<Flow, AppError> {
        self.ingestor.read(tenant, |e| e.flow(from, to))
    }

    /// Checks and stores a tenant's layer rules file (on the writer, which puts it in force
    /// before it answers); on a bad file nothing changes and the error names the line.
    pub fn set_rules(&self, tenant: TenantId, text: &str) -> Result<RulesInForce, LayerError> {
        let rules = match Rules::from_toml(text) {
            Ok(r) => r,
            Err(e) => return Err(LayerError::Rules(e)),
        };
        let (text, applied) = (text.to_string(), rules.clone());
        let version = self.ingestor.mutate(tenant, move |store, e| {
            let version = store.set_rules(tenant, &text)?;
            e.set_rules(version, applied);
            Ok(version)
        })?;
        Ok(RulesInForce { version, rules })
    }

    /// The rules in force for a tenant.
    pub fn rules(&self, tenant: TenantId) -> Result<RulesInForce, AppError> {
        self.ingestor.read(tenant, |e| RulesInForce {
            version: e.rules_version(),
            rules: e.rules().clone(),
        })
    }

    /// Counts the fans a segment expression selects as of `as_of` (default now), with the
    /// first `sample` of them described.
    pub fn segment_count(
        &self,
        tenant: TenantId,
        text: &str,
        as_of: Option<Millis>,
        sample: usize,
    ) -> Result<segments::Answer, segments::SegmentError> {
        let expr = segments::parse(text)?;
        self.ingestor
            .read(tenant, |e| segments::count(e, &expr, as_of, sample))?
            .map_err(|e| e.locate(text))
    }

    /// Calls `f` with every fan a segment expression selects, in fan-id order, and returns how
    /// many there were.
    pub fn segment_export(
        &self,
        tenant: TenantId,
        text: &str,
        as_of: Option<Millis>,
        f: &mut dyn FnMut(&segments::Member) -> std::io::Result<()>,
    ) -> Result<usize, segments::SegmentError> {
        let expr = segments::parse(text)?;
        self.ingestor
            .read(tenant, |e| {
                let as_of = as_of.unwrap_or_else(|| segments::now_of(e));
                let audience = e
                    .audience(&expr, as_of)
                    .map_err(segments::SegmentError::from)?;
                const PAGE: usize = 10_000;
                let mut done = 0;
                while done < audience.count() {
                    for m in segments::members(e, &audience, done, PAGE, as_of) {
                        f(&m).map_err(|source| AppError::Io { source })?;
                    }
                    done += PAGE;
                }
                Ok(audience.count())
            })?
            .map_err(|e: segments::SegmentError| e.locate(text))
    }

    /// Saves a segment: the name must be free, the expression must parse and evaluate over
    /// the tenant's data; nothing is stored otherwise. In a live engine its members are
    /// computed at once and recorded as entries (cause `created`).
    pub fn segment_save(
        &self,
        tenant: TenantId,
        name: &str,
        text: &str,
        tag: Option<&str>,
    ) -> Result<segments::SavedView, segments::SegmentError> {
        use segments::SegmentError as E;
        let name = segments::check_name("name", name)?;
        let tag = tag.map(|t| segments::check_name("tag", t)).transpose()?;
        let expr = segments::parse(text)?;
        let text = text.to_string();
        self.ingestor.mutate(tenant, move |store, e| {
            if let Err(err) = e.audience(&expr, segments::now_of(e)) {
                return Ok(Err(E::from(err).locate(&text)));
            }
            // Stamped with the engine's clock, the instant its first members are taken at,
            // so no trigger of the segment is ever earlier than the segment.
            let saved = match store.create_segment(
                tenant,
                &name,
                &text,
                tag.as_deref(),
                segments::now_of(e),
            ) {
                Ok(s) => s,
                Err(StoreError::SegmentExists(n)) => return Ok(Err(E::Exists(n))),
                Err(err) => return Err(err.into()),
            };
            segments::sync(
                store,
                e,
                tenant,
                &|_, _| false,
                siyu_engine::SegmentCause::Created,
            )?;
            Ok(Ok(segments::view(e, &saved)))
        })?
    }

    /// The tenant's saved segments with their member counts now.
    pub fn segment_list(&self, tenant: TenantId) -> Result<Vec<segments::SavedView>, AppError> {
        let stored = self.store.segments(tenant)?;
        self.ingestor.read(tenant, |e| {
            stored.iter().map(|s| segments::view(e, s)).collect()
        })
    }

    /// One saved segment, by id or name.
    pub fn segment_get(
        &self,
        tenant: TenantId,
        which: &str,
    ) -> Result<segments::SavedView, segments::SegmentError> {
        let Some(saved) = segments::find(&self.store.segments(tenant)?, which) else {
            return Err(segments::SegmentError::NotFound(which.to_string()));
        };
        Ok(self.ingestor.read(tenant, |e| segments::view(e, &saved))?)
    }

    /// A page of a saved segment's members now, and how many there are.
    pub fn segment_members(
        &self,
        tenant: TenantId,
        which: &str,
        offset: usize,
        limit: usize,
    ) -> Result<(usize, Vec<segments::Member>), segments::SegmentError> {
        let Some(saved) = segments::find(&self.store.segments(tenant)?, which) else {
            return Err(segments::SegmentError::NotFound(which.to_string()));
        };
        self.ingestor.read(tenant, |e| {
            let Some(audience) = segments::audience_of(e, &saved) else {
                return Ok((0, Vec::new()));
            };
            let at = audience.as_of;
            Ok((
                audience.count(),
                segments::members(e, &audience, offset, limit, at),
            ))
        })?
    }

    /// Deletes a saved segment (its recorded entries and exits stay); the engine stops
    /// evaluating it before the answer.
    pub fn segment_delete(
        &self,
        tenant: TenantId,
        which: &str,
    ) -> Result<i64, segments::SegmentError> {
        let Some(saved) = segments::find(&self.store.segments(tenant)?, which) else {
            return Err(segments::SegmentError::NotFound(which.to_string()));
        };
        let id = saved.id;
        self.ingestor.mutate(tenant, move |store, e| {
            // Stamped with the engine's clock, like every trigger of the segment.
            store.delete_segment(tenant, id, segments::now_of(e))?;
            segments::sync(
                store,
                e,
                tenant,
                &|_, _| false,
                siyu_engine::SegmentCause::Created,
            )
        })?;
        Ok(id)
    }

    /// `segment_entered` / `segment_exited` triggers with `id > after`, oldest first,
    /// optionally of one segment and one fan (and the ids merged into it).
    pub fn segment_triggers(
        &self,
        tenant: TenantId,
        segment: Option<i64>,
        fan: Option<FanId>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<segments::Trigger>, AppError> {
        self.ingestor.derived_barrier();
        let ids = match self.fan_ids(tenant, fan)? {
            Some(None) => return Ok(Vec::new()),
            ids => ids.flatten(),
        };
        let rows = self
            .store
            .segment_changes(tenant, segment, ids.as_deref(), after, limit)?;
        Ok(rows.iter().map(segments::Trigger::from).collect())
    }

    /// Every id of a fan (its own and those merged into it): `None` for no fan asked,
    /// `Some(None)` for a fan the tenant does not have.
    fn fan_ids(
        &self,
        tenant: TenantId,
        fan: Option<FanId>,
    ) -> Result<Option<Option<Vec<i64>>>, AppError> {
        self.ingestor.read(tenant, |e| {
            fan.map(|f| {
                let ids = e.identities().ids_of(f);
                (!ids.is_empty()).then(|| ids.into_iter().map(|f| f.0).collect::<Vec<i64>>())
            })
        })
    }

    /// Adds (`add`) or removes a tag for one fan or every fan of an expression (on the
    /// writer); returns how many fans changed.
    pub fn tag(
        &self,
        tenant: TenantId,
        target: segments::TagTarget,
        tag: &str,
        add: bool,
    ) -> Result<usize, segments::SegmentError> {
        let tag = segments::check_name("tag", tag)?;
        let expr = match &target {
            segments::TagTarget::Expr(text) => match segments::parse(text) {
                Ok(e) => Some(e),
                Err(e) => return Err(e),
            },
            segments::TagTarget::Fan(_) => None,
        };
        self.ingestor.mutate(tenant, move |store, e| {
            // One clock: the tag is stamped at the instant the engine evaluates at, so the
            // segments that read it see it at once (a second reading of the wall clock
            // could be a millisecond later than the engine's, and the tag not yet on).
            let now = segments::now_of(e);
            let fans: Vec<FanId> = match (&target, &expr) {
                (segments::TagTarget::Fan(f), _) => match e.identities().current(*f) {
                    Some(c) => vec![c],
                    None => return Ok(Err(segments::SegmentError::NoFan(f.0))),
                },
                (_, Some(x)) => match e.audience(x, now) {
                    Ok(a) => a.fan_ids(e.identities(), 0, usize::MAX),
                    Err(err) => return Ok(Err(err.into())),
                },
                _ => Vec::new(),
            };
            let rows = segments::tag_rows(e, &fans, &tag, add, now);
            let changed = rows
                .iter()
                .map(|r| r.fan)
                .collect::<std::collections::HashSet<_>>();
            store.add_tag_changes(tenant, &rows)?;
            segments::load_tags(store, e, tenant, true)?;
            Ok(Ok(if add {
                rows.len()
            } else {
                changed.len().min(fans.len())
            }))
        })?
    }

    /// A fan's tags now and their history (across the ids merged into it).
    pub fn tag_history(
        &self,
        tenant: TenantId,
        fan: FanId,
    ) -> Result<segments::TagHistory, segments::SegmentError> {
        self.ingestor.derived_barrier();
        let now = self.ingestor.read(tenant, |e| {
            let current = e.identities().current(fan)?;
            let ids = e.identities().ids_of(current);
            let tags = e.tags().of(&ids, segments::now_of(e));
            Some((current, ids, tags))
        })?;
        let Some((current, ids, tags)) = now else {
            return Err(segments::SegmentError::NoFan(fan.0));
        };
        let raw: Vec<i64> = ids.iter().map(|f| f.0).collect();
        let history = self.store.tag_changes(tenant, Some(&raw), 0, 100_000)?;
        Ok(segments::TagHistory {
            fan: current,
            tags,
            history: history.iter().map(segments::TagEntry::from).collect(),
        })
    }

    /// Layer transitions with `id > after` (for a fan, or all), oldest first; a fan's include
    /// those recorded under the ids merged into it.
    pub fn transitions(
        &self,
        tenant: TenantId,
        fan: Option<FanId>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<LayerChange>, AppError> {
        self.ingestor.derived_barrier();
        match self.fan_ids(tenant, fan)? {
            Some(None) => Ok(Vec::new()),
            ids => self
                .store
                .transitions(tenant, ids.flatten().as_deref(), after, limit)?
                .into_iter()
                .map(LayerChange::from_stored)
                .collect(),
        }
    }

    /// Picks the tenant a CLI command works on: the named one, or the only one there is.
    pub fn resolve_tenant(store: &dyn Store, name: Option<&str>) -> Result<Tenant, AppError> {
        let all = store.tenants()?;
        match name {
            Some(n) => all
                .into_iter()
                .find(|t| t.name == n)
                .ok_or_else(|| AppError::Store(StoreError::NoSuchTenant(n.to_string()))),
            None => match all.len() {
                0 => Err(AppError::NoTenant),
                1 => Ok(all.into_iter().next().expect("one tenant")),
                _ => Err(AppError::AmbiguousTenant(
                    all.iter()
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                )),
            },
        }
    }
}
