//! Siyu's in-memory engine: per-tenant state derived from the event log.
//!
//! Everything here can be rebuilt by replaying the log in arrival order (with the operators'
//! identity decisions at their positions), so the engine never writes anything itself; the
//! store is the source of truth. Plain Rust, no I/O.
//!
//! # Layout
//! - [`identity`]: the identity graph — every identity value resolves to one fan, with the
//!   guard against wrong merges, merge audit and possible duplicates.
//! - [`dedup`]: the lead dedup report (线索重复率) and the cross-channel overlap.
//! - [`layers`]: fan layers as of any instant, flows between instants, explanations.
//! - [`explain`]: why a fan is in its layer, as the rules' comparisons with its features.
//! - [`live`]: live layers with transitions, moved by events and by time (decay).
//! - [`rules`]: the layer rules (defaults and the per-tenant TOML file).
//! - [`TenantEngine`]: one tenant's state; `apply` takes each stored event once, in order.

pub mod analytics;
pub mod audience;
pub mod dedup;
pub mod explain;
pub mod identity;
pub mod layers;
pub mod live;
pub mod rules;
pub mod segments;
pub mod snapshot;
pub mod tags;

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use siyu_domain::event_type::CatalogueType;
use siyu_domain::{Domain, Event, Layer, Millis};

pub use audience::{Audience, EvalError, FanSet};
pub use dedup::{DedupReport, DedupRow};
pub use explain::{Check, Clause};
pub use identity::{
    Decision, DecisionError, FanId, IdentityGraph, Merge, MergeCause, PossibleDuplicate,
};
pub use layers::{Explanation, Features, Flow, LayerCounts, Snapshot};
pub use live::{Cause, Transition};
pub use rules::{Rules, RulesError};
pub use segments::{SegmentCause, SegmentChange, SegmentDef};
pub use snapshot::SnapshotError;
pub use tags::{TagChange, Tags};

/// What the engine derived from events and time for the caller to store, in the order it was
/// recorded: layer transitions, saved segments' entries and exits, automatic-tag changes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Derived {
    pub transitions: Vec<Transition>,
    pub segment_changes: Vec<SegmentChange>,
    pub auto_tags: Vec<TagChange>,
}

impl Derived {
    pub fn is_empty(&self) -> bool {
        self.transitions.is_empty() && self.segment_changes.is_empty() && self.auto_tags.is_empty()
    }

    /// `later` after these.
    fn append(&mut self, mut later: Derived) {
        self.transitions.append(&mut later.transitions);
        self.segment_changes.append(&mut later.segment_changes);
        self.auto_tags.append(&mut later.auto_tags);
    }
}

/// Totals for `GET /api/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub events: u64,
    pub fans: u64,
    pub identities: u64,
    pub by_type: BTreeMap<String, u64>,
    pub by_domain: BTreeMap<&'static str, u64>,
}

/// One tenant's live state.
#[derive(Debug)]
pub struct TenantEngine {
    identities: IdentityGraph,
    leads: dedup::Leads,
    events: u64,
    by_type: BTreeMap<String, u64>,
    by_domain: [u64; 3],
    /// The highest applied sequence number: replay resumes after it.
    last_seq: i64,
    /// Time of the last applied event (decisions are stamped with it on replay).
    last_ts: Millis,
    /// The id of the last stored identity decision applied.
    decisions_seen: i64,
    /// Events resolved to each identity-graph node (a fan's events are its nodes' sum).
    node_events: Vec<u32>,
    /// Every event, compactly, for layers as of any instant.
    pub(crate) columns: layers::Columns,
    rules: Rules,
    /// The stored version of `rules` (0: the defaults).
    rules_version: i64,
    /// Live layers, once started (`start_live`); replays run without them.
    live: Option<live::Live>,
    /// The live clock when the layers were last stored (the caller's bookkeeping, kept here
    /// so it travels with the engine through rebuilds).
    stored_clock: Millis,
    /// The last event whose derived changes (and every earlier one's) the caller has stored:
    /// how far the trigger stream may be read (the caller's bookkeeping, like `stored_clock`).
    flushed_seq: i64,
    /// The log position of the tenant's stored snapshot this engine knows of (the caller's
    /// bookkeeping, like `stored_clock`): how far a new snapshot would move it.
    snapshot_seq: i64,
    tags: Tags,
    /// Saved segments' live members (with live layers only).
    segments: Option<segments::Membership>,
    /// Automatic tags changed by segment membership, for the caller to store.
    auto_tags: Vec<TagChange>,
    /// Derived changes handed out by [`TenantEngine::take_derived`] that the caller could not
    /// store: handed out again, first, by the next call, so nothing derived is ever dropped.
    unstored: Derived,
    /// The id of the last stored tag change applied.
    tags_seen: i64,
    /// Runs of consecutive sequence numbers among the applied events, as `(index of the run's
    /// first event, its seq)`: one run per gap in the log (PostgreSQL leaves one where a batch
    /// held a duplicate), so an event's index is found from its seq without a per-event array.
    seq_runs: Vec<(u32, i64)>,
}

impl Default for TenantEngine {
    fn default() -> Self {
        TenantEngine {
            identities: IdentityGraph::new(),
            leads: dedup::Leads::default(),
            events: 0,
            by_type: BTreeMap::new(),
            by_domain: [0; 3],
            last_seq: 0,
            last_ts: 0,
            decisions_seen: 0,
            node_events: Vec::new(),
            columns: layers::Columns::default(),
            rules: Rules::default(),
            rules_version: 0,
            live: None,
            stored_clock: 0,
            flushed_seq: 0,
            snapshot_seq: 0,
            tags: Tags::default(),
            segments: None,
            auto_tags: Vec::new(),
            unstored: Derived::default(),
            tags_seen: 0,
            seq_runs: Vec::new(),
        }
    }
}

impl TenantEngine {
    pub fn new() -> TenantEngine {
        TenantEngine::default()
    }

    /// Applies one stored event. Events must come in `seq` order, each once; an event at or
    /// below [`TenantEngine::last_seq`] is ignored, which makes replay after a partial load safe.
    /// Returns the fan it resolved to.
    pub fn apply(&mut self, seq: i64, event: &Event) -> Option<FanId> {
        if seq <= self.last_seq {
            return None;
        }
        if seq != self.last_seq + 1 || self.seq_runs.is_empty() {
            self.seq_runs.push((self.events as u32, seq));
        }
        self.last_seq = seq;
        self.last_ts = event.ts;
        // An alias links on its stored event alone, so a replay links the same fans.
        let node = match event.previous_id() {
            Some(previous) => {
                self.identities
                    .resolve_alias(seq, event.ts, &event.identities, previous)
            }
            None => self.identities.resolve(seq, event.ts, &event.identities),
        };
        if self.node_events.len() <= node as usize {
            self.node_events.resize(node as usize + 1, 0);
        }
        self.node_events[node as usize] += 1;
        let before = self.segments.is_some().then(|| self.fan_facts(node));
        self.columns.push(event, node);
        let absorbed = self.identities.take_absorbed();
        if let Some(live) = &mut self.live {
            live.on_event(
                live::View {
                    cols: &self.columns,
                    graph: &self.identities,
                    rules: &self.rules,
                },
                node,
                &absorbed,
                live::Cause::Event { seq },
                Some(event.id.as_str()),
            );
        }
        if let Some(before) = before {
            self.segments_on_event(
                node,
                &absorbed,
                before,
                layers::kind_of(event),
                layers::identity_kinds(event),
                SegmentCause::Event { seq },
                Some(event.id.as_str()),
            );
        }
        self.events += 1;
        let name = event.ty.name();
        match self.by_type.get_mut(name.as_ref()) {
            Some(n) => *n += 1,
            None => {
                self.by_type.insert(name.into_owned(), 1);
            }
        }
        self.by_domain[event.domain() as usize] += 1;
        if event.ty.catalogue() == Some(CatalogueType::LeadForm) {
            self.leads.push(event, node);
        }
        Some(self.identities.fan(node))
    }

    /// Applies an operator's identity decision at the current log position; `id` is its
    /// stored id.
    pub fn decide(&mut self, id: i64, d: Decision) -> Result<(), DecisionError> {
        self.decisions_seen = self.decisions_seen.max(id);
        self.identities.decide(d, self.last_seq, self.last_ts)?;
        let absorbed = self.identities.take_absorbed();
        if let (Some(live), Decision::Confirm { a, .. }) = (&mut self.live, d)
            && let Some(node) = self.identities.nodes_of(a).first().copied()
        {
            live.on_event(
                live::View {
                    cols: &self.columns,
                    graph: &self.identities,
                    rules: &self.rules,
                },
                node,
                &absorbed,
                live::Cause::Identity,
                None,
            );
            if self.segments.is_some() {
                let before = self.fan_facts(node);
                self.segments_on_event(
                    node,
                    &absorbed,
                    before,
                    layers::CUSTOM,
                    0,
                    SegmentCause::Identity,
                    None,
                );
            }
        }
        Ok(())
    }

    /// What segments compare across an event: the fan's layer and features, its first event
    /// time, and whether it has no event yet.
    fn fan_facts(&self, node: u32) -> FanFacts {
        let root = self.identities.root_node(node);
        let live = self.live.as_ref();
        let features = live.and_then(|l| l.features().get(root as usize).copied().flatten());
        let layer = live.and_then(|l| l.layer_of_root(root));
        let first = match self.identities.members_of_root(root) {
            [] => self.columns.first_ts.get(root as usize).copied(),
            more => std::iter::once(root)
                .chain(more.iter().copied())
                .filter_map(|n| self.columns.first_ts.get(n as usize))
                .copied()
                .min(),
        };
        FanFacts {
            layer,
            features,
            first: first.unwrap_or(Millis::MAX),
            new: first.is_none(),
        }
    }

    /// After an event (or a merge) changed the fan of `node`: merged-away fans leave their
    /// segments, and the fan is re-evaluated against the segments the change can matter to.
    #[allow(clippy::too_many_arguments)]
    fn segments_on_event(
        &mut self,
        node: u32,
        absorbed: &[u32],
        before: FanFacts,
        kind: u8,
        identity: u16,
        cause: SegmentCause,
        event_id: Option<&str>,
    ) {
        let Some(clock) = self.clock() else { return };
        let after = self.fan_facts(node);
        let root = self.identities.root_node(node);
        let touch = segments::Touch {
            kind,
            identity,
            facts_changed: segments::facts::changed(
                (before.layer, before.features),
                (after.layer, after.features),
            ),
            first_changed: before.first != after.first,
            all: before.new || !absorbed.is_empty(),
        };
        if absorbed.is_empty()
            && !self
                .segments
                .as_ref()
                .is_some_and(|m| m.any_matters(&touch))
        {
            return;
        }
        self.with_view(root, clock, |m, graph, fan, view| {
            if !absorbed.is_empty() {
                m.absorb(graph, absorbed, clock);
            }
            m.on_fan(fan, root, view, &touch, cause, event_id);
        });
        self.settle_auto_tags();
    }

    /// Calls `f` with the saved segments, the graph, and the fan of `root` viewed as of `at`
    /// (nothing without saved segments).
    fn with_view(
        &mut self,
        root: u32,
        at: Millis,
        f: impl FnOnce(&mut segments::Membership, &IdentityGraph, FanId, &segments::FanView<'_>),
    ) {
        let TenantEngine {
            columns,
            tags,
            identities,
            live,
            segments,
            ..
        } = self;
        let Some(m) = segments.as_mut() else { return };
        let view = fan_view(columns, tags, identities, live.as_ref(), root, at);
        f(m, identities, identities.fan(root), &view);
    }

    /// Automatic tags follow their segments' entries and exits.
    fn settle_auto_tags(&mut self) {
        for _round in 0..4 {
            let Some(m) = self.segments.as_mut() else {
                return;
            };
            if !m.has_tags() {
                return;
            }
            let changes: Vec<SegmentChange> = m.pending_tail();
            let mut tagged = Vec::new();
            for c in changes {
                if let Some(tag) = m.tag_of(c.segment) {
                    tagged.push(TagChange {
                        fan: c.fan,
                        tag: tag.to_string(),
                        on: c.entered,
                        at: c.at,
                        source: format!("segment:{}", c.segment),
                    });
                }
            }
            if tagged.is_empty() {
                return;
            }
            for t in tagged {
                self.tags.apply(&t);
                self.refresh_tag(t.fan, &t.tag);
                self.auto_tags.push(t);
            }
        }
    }

    /// Re-evaluates a fan against the segments reading `tag`.
    fn refresh_tag(&mut self, fan: FanId, tag: &str) {
        let Some(clock) = self.clock() else { return };
        let Some(node) = self.identities.node_of(fan) else {
            return;
        };
        let root = self.identities.root_node(node);
        self.with_view(root, clock, |m, _, current, view| {
            m.on_tag(current, root, view, tag)
        });
    }

    /// Applies a stored `shared` fact (see [`IdentityGraph::mark_shared`]); `id` is its stored id.
    pub fn mark_shared(&mut self, id: i64, kind: siyu_domain::IdentityKind, value: &str) {
        self.decisions_seen = self.decisions_seen.max(id);
        self.identities.mark_shared(kind, value);
    }

    pub fn decisions_seen(&self) -> i64 {
        self.decisions_seen
    }

    /// The layer rules in force.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Puts new rules (stored as `version`) in force; layers are computed from the events, so
    /// nothing else changes.
    /// Live layers restart at their clock, and every fan the new rules move gets a transition
    /// with cause `rules`.
    pub fn set_rules(&mut self, version: i64, rules: Rules) {
        let before = self.live_layers();
        self.rules = rules;
        self.rules_version = version;
        if let (Some(clock), Some(before)) = (self.clock(), before) {
            self.start_live_against(clock, &|f| before.get(&f).copied(), Cause::Rules);
            self.sweep_segments(SegmentCause::Rules);
        }
    }

    /// Every fan's live layer (`None`: live layers not started).
    pub fn live_layers(&self) -> Option<HashMap<FanId, Layer>> {
        let live = self.live.as_ref()?;
        Some(
            live.layers()
                .iter()
                .enumerate()
                .filter(|(i, _)| self.identities.root_node(*i as u32) == *i as u32)
                .filter_map(|(i, l)| Some((self.identities.fan(i as u32), (*l)?)))
                .collect(),
        )
    }

    /// Starts live layers as of `now` after a rebuild, recording (at `now`, with `cause`) a
    /// transition for every fan whose layer is not what `previous` says it was.
    pub fn start_live_against(
        &mut self,
        now: Millis,
        previous: &dyn Fn(FanId) -> Option<Layer>,
        cause: Cause,
    ) {
        let _ = self.identities.take_absorbed();
        self.live = Some(live::Live::start_against(
            live::View {
                cols: &self.columns,
                graph: &self.identities,
                rules: &self.rules,
            },
            now,
            previous,
            cause,
        ));
    }

    /// Starts keeping live layers as of `now` (from then on, events and [`TenantEngine::tick`]
    /// record [`Transition`]s). The past produces none.
    pub fn start_live(&mut self, now: Millis) {
        let _ = self.identities.take_absorbed();
        self.live = Some(live::Live::start(
            &self.columns,
            &self.identities,
            &self.rules,
            now,
        ));
    }

    /// Advances the live clock to `t`: every fan whose window slid by then moves, at its own
    /// instant, with a `decay` transition.
    pub fn tick(&mut self, t: Millis) {
        if let Some(live) = &mut self.live {
            live.tick(
                live::View {
                    cols: &self.columns,
                    graph: &self.identities,
                    rules: &self.rules,
                },
                t,
            );
        }
        if self.segments.as_ref().is_some_and(|m| m.sweep_due(t)) {
            self.sweep_segments(SegmentCause::Time);
        }
    }

    /// Re-evaluates every saved segment over all fans at the live clock and records the
    /// differences with `cause`.
    fn sweep_segments(&mut self, cause: SegmentCause) {
        let (Some(clock), Some(mut m)) = (self.clock(), self.segments.take()) else {
            return;
        };
        m.sweep(&self.identities, clock, cause, &|e| {
            self.audience(e, clock).ok()
        });
        self.segments = Some(m);
        self.settle_auto_tags();
    }

    /// Puts the saved segments `defs` in force (live layers must run): segments not held yet
    /// get their members as of the clock, each recorded as entered with `cause` unless
    /// `previous(segment, fan)` says it already was; segments not in `defs` are dropped. An
    /// expression that cannot be evaluated (a group no event named) is skipped and returned.
    pub fn set_segments(
        &mut self,
        defs: Vec<SegmentDef>,
        previous: &dyn Fn(i64, FanId) -> bool,
        cause: SegmentCause,
    ) -> Vec<(i64, EvalError)> {
        let Some(clock) = self.clock() else {
            return Vec::new();
        };
        let mut m = self
            .segments
            .take()
            .unwrap_or_else(|| segments::Membership::new(clock));
        let held = m.ids();
        for id in &held {
            if !defs.iter().any(|d| d.id == *id) {
                m.remove(*id);
            }
        }
        let mut refused = Vec::new();
        for def in defs {
            if held.contains(&def.id) {
                continue;
            }
            match self.audience(&def.expr, clock) {
                Ok(a) => {
                    let id = def.id;
                    m.add(&self.identities, def, a, &|f| previous(id, f), cause);
                }
                Err(e) => refused.push((def.id, e)),
            }
        }
        self.segments = Some(m);
        self.settle_auto_tags();
        refused
    }

    /// The saved segments in force.
    pub fn segment_defs(&self) -> Vec<SegmentDef> {
        self.segments
            .as_ref()
            .map(|m| m.defs().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether `fan` matches `expr` now (at the live clock), with `overlay`'s tag changes
    /// (tag, added; later ones win) on top of the stored tags. Evaluates the one fan on its own
    /// events, as live segments do; `false` for a fan the engine does not know, and without
    /// live layers.
    pub fn matches(
        &self,
        fan: FanId,
        expr: &siyu_domain::audience::Expr,
        overlay: &[(String, bool)],
    ) -> bool {
        let (Some(live), Some(node)) = (&self.live, self.identities.node_of(fan)) else {
            return false;
        };
        let root = self.identities.root_node(node);
        let mut view = fan_view(
            &self.columns,
            &self.tags,
            &self.identities,
            Some(live),
            root,
            live.clock(),
        );
        view.overlay = overlay;
        view.matches(expr)
    }

    /// Whether `fan` is in saved segment `id` now (`None`: no such segment held).
    pub fn is_member(&self, id: i64, fan: FanId) -> Option<bool> {
        let set = self.segments.as_ref()?.members(id)?;
        Some(
            self.identities
                .node_of(fan)
                .is_some_and(|n| set.contains(self.identities.root_node(n))),
        )
    }

    /// A saved segment's members now, as an audience.
    pub fn segment_members(&self, id: i64) -> Option<Audience> {
        let set = self.segments.as_ref()?.members(id)?;
        let of = self.live_counts()?.total() as usize;
        Some(Audience::new(self.clock()?, set.clone(), of))
    }

    /// Entries and exits recorded since the last call.
    pub fn take_segment_changes(&mut self) -> Vec<SegmentChange> {
        self.segments
            .as_mut()
            .map(|m| m.take_changes())
            .unwrap_or_default()
    }

    /// Everything derived since the last call, after whatever an earlier call handed out and
    /// [`TenantEngine::keep_unstored`] gave back. The caller stores it and, if storing fails,
    /// gives it back: exactly once either way.
    pub fn take_derived(&mut self) -> Derived {
        let mut d = std::mem::take(&mut self.unstored);
        d.append(Derived {
            transitions: self.take_transitions(),
            segment_changes: self.take_segment_changes(),
            auto_tags: self.take_auto_tags(),
        });
        d
    }

    /// Gives back what [`TenantEngine::take_derived`] handed out and could not be stored; the
    /// next `take_derived` hands it out again, before anything newer.
    pub fn keep_unstored(&mut self, d: Derived) {
        let newer = std::mem::replace(&mut self.unstored, d);
        self.unstored.append(newer);
    }

    /// Moves what `old` could not store into this engine (a rebuild replacing `old`).
    pub fn carry_unstored(&mut self, old: &mut TenantEngine) {
        let d = std::mem::take(&mut old.unstored);
        self.keep_unstored(d);
    }

    /// Automatic-tag changes made since the last call.
    pub fn take_auto_tags(&mut self) -> Vec<TagChange> {
        std::mem::take(&mut self.auto_tags)
    }

    /// The fans `expr` selects as of `as_of`. As of the live clock, layers and features are
    /// the live ones (nothing is recomputed); as of any other instant, the clauses that need
    /// no layer go first and the layers are computed for the fans they leave, or by one
    /// snapshot when that is cheaper (see [`audience`]). Selects exactly what
    /// [`TenantEngine::audience_by_snapshot`] selects.
    pub fn audience(
        &self,
        expr: &siyu_domain::audience::Expr,
        as_of: Millis,
    ) -> Result<Audience, EvalError> {
        if audience::names_unknown_group(expr, &self.columns) {
            // Refused or not depending on the other clauses, as it always was.
            return self.audience_by_snapshot(expr, as_of);
        }
        let all = match &self.live {
            Some(live) if live.clock() == as_of => Some(audience::AllLayers {
                layers: std::borrow::Cow::Borrowed(live.layers()),
                features: std::borrow::Cow::Borrowed(live.features()),
            }),
            _ => None,
        };
        let ctx = audience::Ctx::new(
            &self.columns,
            &self.identities,
            &self.tags,
            &self.rules,
            as_of,
            all,
        );
        Ok(Audience::new(
            as_of,
            ctx.eval_within(expr, &ctx.exists)?,
            ctx.exists.len(),
        ))
    }

    /// [`TenantEngine::audience`] as it was before issue 11: as of any instant but the live
    /// clock, every fan's layers by one snapshot, then every clause over all fans in the
    /// written order. Kept as the reference the tests and `siyu bench segments` compare with.
    pub fn audience_by_snapshot(
        &self,
        expr: &siyu_domain::audience::Expr,
        as_of: Millis,
    ) -> Result<Audience, EvalError> {
        let all = match &self.live {
            Some(live) if live.clock() == as_of => audience::AllLayers {
                layers: std::borrow::Cow::Borrowed(live.layers()),
                features: std::borrow::Cow::Borrowed(live.features()),
            },
            _ => {
                let snap = self.layers_as_of(as_of);
                audience::AllLayers {
                    layers: std::borrow::Cow::Owned(snap.layers),
                    features: std::borrow::Cow::Owned(snap.features),
                }
            }
        };
        let ctx = audience::Ctx::new(
            &self.columns,
            &self.identities,
            &self.tags,
            &self.rules,
            as_of,
            Some(all),
        );
        Ok(Audience::new(as_of, ctx.eval(expr)?, ctx.exists.len()))
    }

    /// A fan's layer features as of `as_of` (from its own events only), `None` if it has no
    /// event by then.
    pub fn features_of(&self, fan: FanId, as_of: Millis) -> Option<layers::Features> {
        let nodes = self.identities.nodes_of(fan);
        if nodes.is_empty() {
            return None;
        }
        let tables = layers::Tables::new(&self.rules);
        let (state, _) = self.columns.fan_state(&nodes, &self.rules, &tables, as_of);
        state.features()
    }

    /// Applies a stored tag change; with live segments, the fan is re-evaluated against the
    /// segments reading the tag.
    pub fn apply_tag(&mut self, c: &TagChange) {
        self.tags.apply(c);
        if self.segments.is_some() {
            self.refresh_tag(c.fan, &c.tag);
            self.settle_auto_tags();
        }
    }

    pub fn tags(&self) -> &Tags {
        &self.tags
    }

    /// The id of the last stored tag change applied (the caller's bookkeeping).
    pub fn tags_seen(&self) -> i64 {
        self.tags_seen
    }

    pub fn set_tags_seen(&mut self, id: i64) {
        self.tags_seen = self.tags_seen.max(id);
    }

    /// The live clock when the caller last stored the layers (0: never).
    pub fn stored_clock(&self) -> Millis {
        self.stored_clock
    }

    /// The log position of the stored snapshot this engine knows of (0: none).
    pub fn snapshot_seq(&self) -> i64 {
        self.snapshot_seq
    }

    pub fn set_snapshot_seq(&mut self, seq: i64) {
        self.snapshot_seq = seq;
    }

    pub fn set_stored_clock(&mut self, t: Millis) {
        self.stored_clock = t;
    }

    /// The last event whose derived changes, and every earlier event's, are stored (0: none
    /// known to be).
    pub fn flushed_seq(&self) -> i64 {
        self.flushed_seq
    }

    pub fn set_flushed_seq(&mut self, seq: i64) {
        self.flushed_seq = seq;
    }

    /// The live clock, if live layers run.
    pub fn clock(&self) -> Option<Millis> {
        self.live.as_ref().map(|l| l.clock())
    }

    /// Layer changes recorded since the last call.
    pub fn take_transitions(&mut self) -> Vec<Transition> {
        self.live
            .as_mut()
            .map(|l| l.take_transitions())
            .unwrap_or_default()
    }

    /// A fan's live layer (`None`: live layers not started, or no such fan yet).
    pub fn live_layer(&self, fan: FanId) -> Option<Layer> {
        let node = *self.identities.nodes_of(fan).first()?;
        self.live.as_ref()?.layer_of_root(node)
    }

    /// Fans per live layer.
    pub fn live_counts(&self) -> Option<LayerCounts> {
        let live = self.live.as_ref()?;
        let counts = live.counts();
        debug_assert_eq!(
            counts,
            self.walked_live_counts(),
            "kept live counts drifted"
        );
        Some(counts)
    }

    /// The live counts by a walk of every fan (what [`TenantEngine::live_counts`] keeps; checked
    /// against it in debug builds).
    fn walked_live_counts(&self) -> LayerCounts {
        let mut c = LayerCounts::default();
        if let Some(live) = &self.live {
            for (i, l) in live.layers().iter().enumerate() {
                if let Some(l) = l
                    && self.identities.root_node(i as u32) == i as u32
                {
                    c.add(*l);
                }
            }
        }
        c
    }

    pub fn rules_version(&self) -> i64 {
        self.rules_version
    }

    /// Every fan's layer as of `as_of` (events with `ts <= as_of` only).
    pub fn layers_as_of(&self, as_of: Millis) -> Snapshot {
        self.columns.snapshot(&self.identities, &self.rules, as_of)
    }

    /// How fans moved between layers from `from` to `to`, including fans new in between.
    pub fn flow(&self, from: Millis, to: Millis) -> Flow {
        layers::flow(&self.layers_as_of(from), &self.layers_as_of(to))
    }

    /// Fans per layer as of each of `instants` (ascending) and the moves between neighbours,
    /// in one sweep (see [`layers::SeriesPoint`]).
    pub fn layer_series(&self, instants: &[Millis]) -> Vec<layers::SeriesPoint> {
        self.columns.series(&self.identities, &self.rules, instants)
    }

    /// The layer funnel from `from` to `to` (see [`analytics::Funnel`]).
    pub fn funnel(&self, from: Millis, to: Millis) -> analytics::Funnel {
        analytics::Funnel::of(&self.flow(from, to))
    }

    /// Three-domain attribution of the orders with `from <= ts < to`.
    pub fn attribution(&self, from: Millis, to: Millis) -> analytics::Attribution {
        self.columns.attribution(&self.identities, from, to)
    }

    /// What the period `[from, to)` acquired (new followers, unique and repeat leads), by
    /// channel and by first-touch domain.
    pub fn acquired(&self, from: Millis, to: Millis) -> analytics::Acquired {
        self.columns
            .acquired(&self.identities, &self.leads, from, to)
    }

    /// Every fan with an order at or before `as_of`, summarised for the BTYD models (days
    /// are UTC days shifted by `day_offset_ms`, the tenant's offset).
    pub fn buyers(&self, as_of: Millis, day_offset_ms: Millis) -> Vec<analytics::Buyer> {
        self.columns.buyers(&self.identities, as_of, day_offset_ms)
    }

    /// Historical lifetime value as of `as_of`; `month_of` names an instant's local month.
    pub fn ltv(&self, as_of: Millis, month_of: &dyn Fn(Millis) -> String) -> analytics::LtvReport {
        let snapshot = self.layers_as_of(as_of);
        self.columns
            .ltv(&self.identities, &snapshot, as_of, month_of)
    }

    /// Weekly retention of the cohorts first seen in `[from, to)`, activity up to `as_of`,
    /// over `weeks` weeks (at most 64).
    pub fn retention(
        &self,
        from: Millis,
        to: Millis,
        as_of: Millis,
        weeks: usize,
        cal: &dyn analytics::Weeks,
    ) -> analytics::Retention {
        self.columns
            .retention(&self.identities, from, to, as_of, weeks.min(64), cal)
    }

    /// A fan's layer as of `as_of`, why (the rules' comparisons, see [`explain`]), and its
    /// latest `timeline` events by event time, newest first.
    pub fn explain(&self, fan: FanId, as_of: Millis, timeline: usize) -> Option<Explanation> {
        self.columns
            .explain(&self.identities, &self.rules, fan, as_of, timeline)
    }

    /// Every event as the layer rules see it, in arrival order.
    pub fn for_each_event(&self, f: impl FnMut(layers::EventRow<'_>)) {
        self.columns.for_each(&self.identities, f)
    }

    /// Number of events of a fan (including those of fans merged into it).
    pub fn events_of(&self, fan: FanId) -> u64 {
        self.identities
            .nodes_of(fan)
            .iter()
            .map(|&n| u64::from(self.node_events.get(n as usize).copied().unwrap_or(0)))
            .sum()
    }

    pub fn last_seq(&self) -> i64 {
        self.last_seq
    }

    pub fn identities(&self) -> &IdentityGraph {
        &self.identities
    }

    pub fn identities_mut(&mut self) -> &mut IdentityGraph {
        &mut self.identities
    }

    /// The lead dedup report over leads with `from <= ts < to`.
    pub fn dedup_report(&self, from: Option<Millis>, to: Option<Millis>) -> DedupReport {
        self.leads.report(&self.identities, from, to)
    }

    pub fn stats(&self) -> Stats {
        Stats {
            events: self.events,
            fans: self.identities.fan_count(),
            identities: self.identities.value_count(),
            by_type: self.by_type.clone(),
            by_domain: Domain::ALL
                .iter()
                .map(|d| (d.as_str(), self.by_domain[*d as usize]))
                .collect(),
        }
    }
}

/// Where in the log a snapshot was taken: replaying resumes after these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotPosition {
    /// The last event applied.
    pub last_seq: i64,
    /// The id of the last identity decision applied.
    pub decisions_seen: i64,
}

impl TenantEngine {
    /// The replayed state as a snapshot (see [`snapshot`]): identities, leads, columns and
    /// counters. Live layers, saved segments, tags and rules are not in it; they are put on
    /// top after [`TenantEngine::from_snapshot`], as after a replay.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut w = snapshot::Writer::new();
        w.put(&self.last_seq);
        w.put(&self.decisions_seen);
        w.put(&self.last_ts);
        w.put(&self.events);
        w.put(&self.by_type);
        w.put(&self.by_domain);
        w.put(&self.node_events);
        w.put(&self.identities);
        w.put(&self.leads);
        w.put(&self.columns);
        w.put(&self.seq_runs);
        w.finish()
    }

    /// An engine from a snapshot, with the default rules and no live layers. A snapshot that
    /// is damaged, of another format or inconsistent is refused, never half-read.
    pub fn from_snapshot(data: &[u8]) -> Result<TenantEngine, SnapshotError> {
        let mut r = snapshot::Reader::open(data)?;
        let e = TenantEngine {
            last_seq: r.take()?,
            decisions_seen: r.take()?,
            last_ts: r.take()?,
            events: r.take()?,
            by_type: r.take()?,
            by_domain: r.take()?,
            node_events: r.take()?,
            identities: r.take()?,
            leads: r.take()?,
            columns: r.take()?,
            seq_runs: r.take()?,
            ..TenantEngine::default()
        };
        r.finish()?;
        let nodes = e.identities.node_count();
        let runs_ordered = e
            .seq_runs
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1);
        if e.columns.node.iter().any(|&n| n as usize >= nodes)
            || e.node_events.len() > nodes
            || !runs_ordered
            || e.seq_runs.last().is_some_and(|r| r.0 as u64 >= e.events)
        {
            return Err(SnapshotError::Malformed(0));
        }
        Ok(e)
    }

    /// The index (arrival order) of the applied event with sequence number `seq`.
    fn index_of_seq(&self, seq: i64) -> Option<usize> {
        let run = self
            .seq_runs
            .partition_point(|r| r.1 <= seq)
            .checked_sub(1)?;
        let (first, first_seq) = self.seq_runs[run];
        let index = first as u64 + (seq - first_seq) as u64;
        let end = self
            .seq_runs
            .get(run + 1)
            .map_or(self.events, |r| u64::from(r.0));
        (index < end).then_some(index as usize)
    }

    /// The sequence number of the applied event at `index` (arrival order).
    fn seq_of_index(&self, index: u32) -> Option<i64> {
        let run = self
            .seq_runs
            .partition_point(|r| r.0 <= index)
            .checked_sub(1)?;
        let (first, first_seq) = self.seq_runs[run];
        ((index as u64) < self.events).then(|| first_seq + i64::from(index - first))
    }

    /// The fan an applied event belongs to now (merges followed), by its sequence number;
    /// `None` for a sequence number no applied event has.
    pub fn fan_of_seq(&self, seq: i64) -> Option<FanId> {
        let index = self.index_of_seq(seq)?;
        Some(self.identities.fan(*self.columns.node.get(index)?))
    }

    /// The sequence numbers of a fan's events (its own and those of the fans merged into it)
    /// in `(after, upto]`, ascending, at most `limit`.
    pub fn seqs_of(&self, fan: FanId, after: i64, upto: i64, limit: usize) -> Vec<i64> {
        let mut indexes = self
            .columns
            .indexes_of_nodes(&self.identities.nodes_of(fan));
        indexes.sort_unstable();
        indexes
            .into_iter()
            .filter_map(|i| self.seq_of_index(i))
            .filter(|s| *s > after && *s <= upto)
            .take(limit)
            .collect()
    }

    /// The sequence numbers of a fan's latest events (its own and those of the fans merged
    /// into it), newest first, at most `limit`.
    pub fn recent_seqs(&self, fan: FanId, limit: usize) -> Vec<i64> {
        let mut indexes = self
            .columns
            .indexes_of_nodes(&self.identities.nodes_of(fan));
        indexes.sort_unstable();
        indexes
            .into_iter()
            .rev()
            .filter_map(|i| self.seq_of_index(i))
            .take(limit)
            .collect()
    }

    /// Where this engine is in the log.
    pub fn position(&self) -> SnapshotPosition {
        SnapshotPosition {
            last_seq: self.last_seq,
            decisions_seen: self.decisions_seen,
        }
    }
}

/// A fan's facts before and after an event, for deciding which segments it can matter to.
#[derive(Debug, Clone, Copy)]
struct FanFacts {
    layer: Option<Layer>,
    features: Option<Features>,
    first: Millis,
    /// No event yet: the event makes a new fan.
    new: bool,
}

/// One fan (root node) as of `as_of`, for evaluating it alone.
fn fan_view<'a>(
    cols: &'a layers::Columns,
    tags: &'a Tags,
    graph: &'a IdentityGraph,
    live: Option<&live::Live>,
    root: u32,
    as_of: Millis,
) -> segments::FanView<'a> {
    let fan = graph.fan(root);
    segments::FanView {
        cols,
        tags,
        events: cols.events_of_root(graph, root),
        graph,
        fan,
        as_of,
        layer: live.and_then(|l| l.layer_of_root(root)),
        features: live.and_then(|l| l.features().get(root as usize).copied().flatten()),
        overlay: &[],
        memo: segments::Memo::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use siyu_domain::parse_event;

    fn ev(id: &str, ty: &str, ids: &str) -> Event {
        let extra = if ty == "order" {
            r#","props":{"order_id":"o","amount":1}"#
        } else {
            ""
        };
        parse_event(
            &format!(
                r#"{{"id":"{id}","type":"{ty}","ts":"2026-10-01T00:00:00Z","identities":{ids}{extra}}}"#
            ),
            1_800_000_000_000,
        )
        .unwrap()
    }

    fn alias(id: &str, user: &str, previous: &str) -> Event {
        parse_event(
            &format!(
                r#"{{"id":"{id}","type":"x_alias","domain":"private","ts":"2026-10-01T00:00:00Z","identities":{{"user_id":"{user}"}},"props":{{"previous_id":"{previous}"}}}}"#
            ),
            1_800_000_000_000,
        )
        .unwrap()
    }

    #[test]
    fn an_alias_event_merges_on_apply_and_a_replay_merges_the_same() {
        let log = [
            ev("1", "follow", r#"{"user_id":"u-old"}"#),
            ev("2", "follow", r#"{"user_id":"u-new"}"#),
            alias("3", "u-new", "u-old"),
            ev("4", "order", r#"{"user_id":"u-old"}"#),
        ];
        let run = || {
            let mut e = TenantEngine::new();
            for (i, event) in log.iter().enumerate() {
                e.apply(i as i64 + 1, event);
            }
            e
        };
        let (a, b) = (run(), run());
        assert_eq!(a.stats().fans, 1);
        assert_eq!(a.events_of(FanId(1)), 4);
        let merges: Vec<Merge> = a.identities().merges().collect();
        assert_eq!(merges, b.identities().merges().collect::<Vec<_>>());
        assert_eq!(
            (merges[0].cause, merges[0].seq),
            (MergeCause::Alias, 3),
            "the alias event is the linking event"
        );
    }

    #[test]
    fn an_event_is_found_by_its_seq_across_gaps_and_merges() {
        let mut e = TenantEngine::new();
        // Gaps as PostgreSQL leaves them (a duplicate's reserved seq is never stored); the
        // phone of seq 8 and 9 links u2 and u3 into one fan.
        let log = [
            (2, ev("a", "follow", r#"{"user_id":"u1"}"#)),
            (3, ev("b", "follow", r#"{"user_id":"u2"}"#)),
            (7, ev("c", "video_like", r#"{"douyin_open_id":"u3"}"#)),
            (
                8,
                ev(
                    "d",
                    "video_like",
                    r#"{"user_id":"u2","phone":"13800138000"}"#,
                ),
            ),
            (
                9,
                ev(
                    "f",
                    "order",
                    r#"{"douyin_open_id":"u3","phone":"13800138000"}"#,
                ),
            ),
        ];
        let fans: Vec<(i64, FanId)> = log
            .iter()
            .map(|(seq, event)| (*seq, e.apply(*seq, event).unwrap()))
            .collect();
        assert_eq!(e.fan_of_seq(1), None, "before the first event");
        assert_eq!(e.fan_of_seq(4), None, "in a gap");
        assert_eq!(e.fan_of_seq(10), None, "not applied yet");
        let now = |f: FanId| e.identities().current(f).unwrap();
        assert_eq!(now(fans[1].1), now(fans[2].1), "u2 and u3 are one fan now");
        for (seq, fan) in &fans {
            assert_eq!(e.fan_of_seq(*seq), Some(now(*fan)), "seq {seq}");
        }
        let merged = now(fans[1].1);
        assert_eq!(e.seqs_of(merged, 0, i64::MAX, 100), vec![3, 7, 8, 9]);
        assert_eq!(e.seqs_of(merged, 3, 8, 100), vec![7, 8]);
        assert_eq!(e.seqs_of(merged, 0, i64::MAX, 2), vec![3, 7]);
        assert_eq!(e.seqs_of(now(fans[0].1), 0, i64::MAX, 100), vec![2]);
        assert_eq!(e.seqs_of(FanId(99), 0, i64::MAX, 100), Vec::<i64>::new());
        let resumed = TenantEngine::from_snapshot(&e.snapshot()).unwrap();
        assert_eq!(
            resumed.fan_of_seq(7),
            Some(merged),
            "the runs travel in the snapshot"
        );
        assert_eq!(resumed.fan_of_seq(5), None);
    }

    #[test]
    fn counts_events_fans_types_and_domains() {
        let mut e = TenantEngine::new();
        e.apply(1, &ev("1", "follow", r#"{"douyin_open_id":"a"}"#));
        e.apply(2, &ev("2", "lead_form", r#"{"phone":"13800138000"}"#));
        e.apply(
            3,
            &ev(
                "3",
                "order",
                r#"{"douyin_open_id":"a","phone":"+8613800138000"}"#,
            ),
        );
        // A replayed event is ignored.
        e.apply(3, &ev("3", "order", r#"{"douyin_open_id":"a"}"#));
        let s = e.stats();
        assert_eq!(s.events, 3);
        assert_eq!(s.fans, 1, "the order links the open id and the phone");
        assert_eq!(s.identities, 2);
        assert_eq!(s.by_type["order"], 1);
        assert_eq!(s.by_domain["commercial"], 1);
        assert_eq!(s.by_domain["private"], 1);
        assert_eq!(s.by_domain["public"], 1);
    }

    #[test]
    fn derived_changes_given_back_come_out_again_first_and_once() {
        let mut e = TenantEngine::new();
        e.start_live(1_800_000_000_000);
        e.apply(1, &ev("1", "follow", r#"{"douyin_open_id":"a"}"#));
        let first = e.take_derived();
        assert_eq!(first.transitions.len(), 1, "{first:?}");
        // Storing failed: given back; the next call hands it out before what is new.
        e.keep_unstored(first.clone());
        e.apply(2, &ev("2", "follow", r#"{"douyin_open_id":"b"}"#));
        let again = e.take_derived();
        assert_eq!(again.transitions.len(), 2);
        assert_eq!(again.transitions[0], first.transitions[0]);
        assert!(e.take_derived().is_empty(), "handed out once");
        // A rebuild carries it over.
        e.keep_unstored(again.clone());
        let mut rebuilt = TenantEngine::new();
        rebuilt.carry_unstored(&mut e);
        assert!(e.take_derived().is_empty());
        assert_eq!(rebuilt.take_derived(), again);
    }

    mod snapshots {
        //! A snapshot taken after event k, decoded and fed events k+1..n, is the engine that
        //! events 1..n build: byte for byte, and in every answer it gives.
        use proptest::prelude::*;

        use super::*;
        use crate::audience::tests::{Gen, event};

        /// Steps of a generated log: an event, an event that leaves a phone (shared by fans
        /// `who` and `who + 1` when `family`), or an operator decision between two fans.
        #[derive(Debug, Clone)]
        enum Step {
            Event(Gen),
            Lead {
                who: u8,
                family: bool,
            },
            Confirm(u8, u8),
            Distinct(u8, u8),
            Shared(u8),
            /// An alias of fan `who`'s anonymous id (or of user `u{who}`) to user `u{user}`.
            Alias {
                who: u8,
                user: u8,
                of_user: bool,
            },
        }

        fn step() -> impl Strategy<Value = Step> {
            prop_oneof![
                6 => (0u8..8, 0usize..10, 0i64..60 * 24, 0u8..3).prop_map(Step::Event),
                2 => (0u8..8, any::<bool>()).prop_map(|(who, family)| Step::Lead { who, family }),
                1 => (0u8..8, 0u8..8).prop_map(|(a, b)| Step::Confirm(a, b)),
                1 => (0u8..8, 0u8..8).prop_map(|(a, b)| Step::Distinct(a, b)),
                1 => (0u8..8).prop_map(Step::Shared),
                1 => (0u8..8, 0u8..8, any::<bool>()).prop_map(|(who, user, of_user)| Step::Alias { who, user, of_user }),
            ]
        }

        fn fan(e: &TenantEngine, who: u8) -> Option<FanId> {
            let found = e
                .identities()
                .lookup(siyu_domain::IdentityKind::DouyinOpenId, &format!("f{who}"));
            e.identities().current(*found.first()?)
        }

        fn run(e: &mut TenantEngine, n: usize, s: &Step) {
            let seq = n as i64 + 1;
            match s {
                Step::Event(g) => {
                    e.apply(seq, &event(n, g));
                }
                Step::Lead { who, family } => {
                    let phone = if *family { who / 2 } else { 100 + who };
                    let text = format!(
                        r#"{{"id":"{n}","type":"lead_form","ts":"2026-09-0{}T00:00:00Z","identities":{{"douyin_open_id":"f{who}","phone":"1380013{:04}"}},"props":{{"channel":"{}"}}}}"#,
                        1 + who % 9,
                        phone,
                        if who % 2 == 0 { "live" } else { "ad" }
                    );
                    e.apply(
                        seq,
                        &siyu_domain::parse_event(&text, 1_900_000_000_000).unwrap(),
                    );
                }
                Step::Confirm(a, b) | Step::Distinct(a, b) => {
                    let (Some(a), Some(b)) = (fan(e, *a), fan(e, *b)) else {
                        return;
                    };
                    let d = if matches!(s, Step::Confirm(..)) {
                        Decision::Confirm { a, b }
                    } else {
                        Decision::Distinct { a, b }
                    };
                    let _ = e.decide(seq, d);
                }
                Step::Alias { who, user, of_user } => {
                    let previous = if *of_user {
                        format!("u{who}")
                    } else {
                        format!("a{who}")
                    };
                    let text = format!(
                        r#"{{"id":"{n}","type":"x_alias","domain":"private","ts":"2026-09-02T00:00:00Z","identities":{{"user_id":"u{user}"}},"props":{{"previous_id":"{previous}"}}}}"#
                    );
                    e.apply(
                        seq,
                        &siyu_domain::parse_event(&text, 1_900_000_000_000).unwrap(),
                    );
                }
                Step::Shared(who) => {
                    e.mark_shared(
                        seq,
                        siyu_domain::IdentityKind::Phone,
                        &format!("+861380013{:04}", who / 2),
                    );
                }
            }
        }

        /// What the engine answers, in one comparable text.
        fn answers(e: &mut TenantEngine) -> String {
            let end = crate::audience::tests::t0() + 80 * siyu_domain::time::MS_PER_DAY;
            let mut out = format!("{:?}\n{:?}\n", e.stats(), e.dedup_report(None, None));
            for day in [0, 20, 45, 80] {
                let t = crate::audience::tests::t0() + day * siyu_domain::time::MS_PER_DAY;
                out += &format!("{:?}\n", e.layers_as_of(t).counts());
            }
            for who in 0..8 {
                if let Some(f) = fan(e, who) {
                    out += &format!(
                        "{f:?} {:?} {:?} {:?}\n",
                        e.identities().merges_of(f),
                        e.identities().identities_of(f),
                        e.explain(f, end, 10).map(|x| (x.layer, x.features)),
                    );
                }
            }
            out += &format!("{:?}", e.identities_mut().possible_duplicates());
            out
        }

        proptest! {
            #[test]
            fn a_snapshot_and_its_tail_are_the_whole_log(
                steps in proptest::collection::vec(step(), 1..80),
                cut in any::<prop::sample::Index>(),
            ) {
                let k = cut.index(steps.len() + 1);
                let mut whole = TenantEngine::new();
                for (n, s) in steps.iter().enumerate() {
                    run(&mut whole, n, s);
                }
                let mut head = TenantEngine::new();
                for (n, s) in steps[..k].iter().enumerate() {
                    run(&mut head, n, s);
                }
                let bytes = head.snapshot();
                let mut resumed = TenantEngine::from_snapshot(&bytes).unwrap();
                prop_assert_eq!(resumed.position(), head.position());
                prop_assert_eq!(resumed.snapshot(), bytes, "decoding and encoding again changes nothing");
                for (n, s) in steps.iter().enumerate().skip(k) {
                    run(&mut resumed, n, s);
                }
                prop_assert_eq!(resumed.snapshot(), whole.snapshot());
                prop_assert_eq!(answers(&mut resumed), answers(&mut whole));
            }
        }

        #[test]
        fn a_damaged_snapshot_is_refused() {
            let mut e = TenantEngine::new();
            for n in 0..20 {
                run(
                    &mut e,
                    n,
                    &Step::Event((n as u8 % 5, n % 10, n as i64 * 7, (n % 3) as u8)),
                );
            }
            let mut bytes = e.snapshot();
            let mid = bytes.len() / 2;
            bytes[mid] ^= 1;
            assert_eq!(
                TenantEngine::from_snapshot(&bytes).err(),
                Some(SnapshotError::Checksum)
            );
            assert!(TenantEngine::from_snapshot(&bytes[..mid]).is_err());
            assert!(TenantEngine::from_snapshot(b"not a snapshot").is_err());
        }
    }

    #[test]
    fn times_in_answers_are_rfc3339_with_milliseconds() {
        let at = "2026-10-01T00:00:00.000Z";
        let t = siyu_domain::time::parse_rfc3339(at).unwrap();
        let mut e = TenantEngine::new();
        e.apply(1, &ev("1", "lead_form", r#"{"douyin_open_id":"a"}"#));
        e.apply(2, &ev("2", "lead_form", r#"{"phone":"13800138000"}"#));
        e.apply(
            3,
            &ev(
                "3",
                "follow",
                r#"{"douyin_open_id":"a","phone":"13800138000"}"#,
            ),
        );
        e.apply(
            4,
            &ev(
                "4",
                "follow",
                r#"{"douyin_open_id":"b","phone":"13800138000"}"#,
            ),
        );
        fn json(v: &impl Serialize) -> serde_json::Value {
            serde_json::to_value(v).unwrap()
        }
        let merge = e.identities().merges().next().unwrap();
        assert_eq!(json(&merge)["ts"], at);
        let dup = e.identities_mut().possible_duplicates().remove(0);
        assert_eq!(json(&dup)["ts"], at);
        let report = e.dedup_report(Some(t), None);
        assert_eq!(
            (json(&report)["from"].clone(), json(&report)["to"].clone()),
            (at.into(), serde_json::Value::Null)
        );
        let fan = FanId(1);
        let transition = Transition {
            fan,
            event_id: None,
            from: None,
            to: Layer::Passerby,
            at: t,
            cause: Cause::Decay,
        };
        assert_eq!(json(&transition)["at"], at);
        let tag = TagChange {
            fan,
            tag: "vip".into(),
            on: true,
            at: t,
            source: "manual".into(),
        };
        assert_eq!(json(&tag)["at"], at);
        let change = SegmentChange {
            segment: 1,
            fan,
            entered: true,
            at: t,
            cause: SegmentCause::Time,
            event_id: None,
        };
        assert_eq!(json(&change)["at"], at);
        let x = e.explain(fan, t, 10).unwrap();
        assert_eq!(
            (
                json(&x)["as_of"].clone(),
                json(&x)["timeline"][0]["ts"].clone()
            ),
            (at.into(), at.into())
        );
    }
}
