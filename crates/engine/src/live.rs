//! Live layers: every fan's layer now, kept up to date as events arrive and as time passes,
//! with each change recorded as a [`Transition`].
//!
//! An event recomputes its fan's layer at once (from the fan's own events, a few dozen on
//! average). Time passing is handled without rescanning fans: each fan has the next instant
//! its features can change on their own (an event of its in the future, or a contribution
//! leaving the 30-day or 180-day window), and sits in a queue bucketed by minute; `tick(t)`
//! takes only the fans due by `t` and recomputes each *at its own instant*, so a decay is
//! recorded at the moment the window slid past, whatever the tick rate. The live layers at
//! clock T are therefore exactly the layers as of T over the events received (a property test
//! holds them to [`crate::TenantEngine::layers_as_of`]).

use std::collections::BTreeMap;

use serde::Serialize;
use siyu_domain::{Layer, Millis};

use crate::identity::{FanId, IdentityGraph};
use crate::layers::{Columns, FanState, Features, LayerCounts, Tables, layer_of};
use crate::rules::Rules;

const BUCKET_MS: Millis = 60_000;

/// Why a fan's layer changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "cause", rename_all = "snake_case")]
pub enum Cause {
    /// The event with this arrival sequence number.
    Event { seq: i64 },
    /// A window slid: no event, time passed.
    Decay,
    /// New layer rules were put in force.
    Rules,
    /// An operator's identity decision (a confirmed merge, an undone one) moved events
    /// between fans.
    Identity,
}

impl Cause {
    /// The name stored and shown (`event`, `decay`, `rules`, `identity`).
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Event { .. } => "event",
            Cause::Decay => "decay",
            Cause::Rules => "rules",
            Cause::Identity => "identity",
        }
    }

    /// The causing event's sequence number, for `Event`.
    pub fn seq(self) -> Option<i64> {
        match self {
            Cause::Event { seq } => Some(seq),
            _ => None,
        }
    }
}

/// One layer change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transition {
    pub fan: FanId,
    /// The causing event's id (for `Cause::Event`).
    pub event_id: Option<String>,
    /// `None`: the fan is new.
    pub from: Option<Layer>,
    pub to: Layer,
    #[serde(serialize_with = "siyu_domain::time::rfc3339")]
    pub at: Millis,
    #[serde(flatten)]
    pub cause: Cause,
}

/// What live layers read: the events, who they belong to, and the rules.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    pub cols: &'a Columns,
    pub graph: &'a IdentityGraph,
    pub rules: &'a Rules,
}

pub(crate) struct Live {
    clock: Millis,
    tables: Tables,
    /// Each root's state as of the clock (`None` until first computed), so an event that
    /// arrives in order is added in O(1) instead of recomputing the fan.
    state: Vec<Option<FanState>>,
    /// Current layer by node (`None` off the roots: a fan merged away is cleared).
    layer: Vec<Option<Layer>>,
    /// How many nodes hold each layer: the live layer counts, kept as `layer` changes (only
    /// through [`Live::set_layer`]), so the layers report at the live clock is O(1).
    counts: LayerCounts,
    /// Current features by node (meaningful at roots; `None`: no event yet).
    features: Vec<Option<Features>>,
    /// Next instant each root's features can change by time alone.
    next: Vec<Millis>,
    queue: BTreeMap<Millis, Vec<u32>>,
    pending: Vec<Transition>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("clock", &self.clock)
            .field("fans", &self.layer.len())
            .field("queued_buckets", &self.queue.len())
            .finish()
    }
}

impl Live {
    /// Starts live layers as of `now` from the full state (no transitions for the past).
    pub(crate) fn start(cols: &Columns, graph: &IdentityGraph, rules: &Rules, now: Millis) -> Live {
        let n = graph.node_count();
        let snap = cols.snapshot(graph, rules, now);
        let by_node = cols.next_changes(rules, now, n);
        let mut next = vec![Millis::MAX; n];
        for (node, at) in by_node.into_iter().enumerate() {
            let r = graph.root_node(node as u32) as usize;
            next[r] = next[r].min(at);
        }
        // Only roots hold a layer (what `counts` counts); a node merged away holds none.
        let mut counts = LayerCounts::default();
        let mut layers = snap.layers;
        for (node, l) in layers.iter_mut().enumerate() {
            if graph.root_node(node as u32) != node as u32 {
                *l = None;
            } else if let Some(l) = l {
                counts.add(*l);
            }
        }
        let mut live = Live {
            clock: now,
            tables: Tables::new(rules),
            state: vec![None; n],
            counts,
            layer: layers,
            features: snap.features,

            next: Vec::new(),
            queue: BTreeMap::new(),
            pending: Vec::new(),
        };
        for (r, at) in next.iter().enumerate() {
            if *at != Millis::MAX {
                live.schedule(r as u32, *at);
            }
        }
        live.next = next;
        live
    }

    /// Starts live layers as of `now` and records, at `now` with `cause`, every fan whose layer
    /// differs from what `previous` says it was (a rebuild: new rules, an undone merge, or a
    /// restart that finds the stored layers out of date).
    pub(crate) fn start_against(
        v: View<'_>,
        now: Millis,
        previous: &dyn Fn(FanId) -> Option<Layer>,
        cause: Cause,
    ) -> Live {
        let mut live = Live::start(v.cols, v.graph, v.rules, now);
        for (node, layer) in live.layer.iter().enumerate() {
            let Some(to) = *layer else { continue };
            if v.graph.root_node(node as u32) != node as u32 {
                continue;
            }
            let fan = v.graph.fan(node as u32);
            let from = previous(fan);
            if from != Some(to) {
                live.pending.push(Transition {
                    fan,
                    event_id: None,
                    from,
                    to,
                    at: now,
                    cause,
                });
            }
        }
        live
    }

    pub(crate) fn clock(&self) -> Millis {
        self.clock
    }

    fn schedule(&mut self, root: u32, at: Millis) {
        self.queue
            .entry(at.div_euclid(BUCKET_MS) * BUCKET_MS)
            .or_default()
            .push(root);
    }

    fn grow(&mut self, n: usize) {
        if self.layer.len() < n {
            self.layer.resize(n, None);
            self.features.resize(n, None);
            self.next.resize(n, Millis::MAX);
        }
        if self.state.len() < n {
            self.state.resize(n, None);
        }
    }

    /// Records a layer change of `root`, if any.
    fn settle(
        &mut self,
        v: View<'_>,
        root: u32,
        features: Option<Features>,
        at: Millis,
        cause: Cause,
        event_id: Option<&str>,
    ) {
        self.features[root as usize] = features;
        let new = features.map(|f| layer_of(&f, v.rules));
        let old = self.layer[root as usize];
        if new != old
            && let Some(to) = new
        {
            self.pending.push(Transition {
                fan: v.graph.fan(root),
                event_id: event_id.map(str::to_string),
                from: old,
                to,
                at,
                cause,
            });
        }
        self.set_layer(root, new);
    }

    /// The one place `layer` changes, so `counts` follows it.
    fn set_layer(&mut self, node: u32, new: Option<Layer>) {
        let old = std::mem::replace(&mut self.layer[node as usize], new);
        if let Some(l) = old {
            self.counts.remove(l);
        }
        if let Some(l) = new {
            self.counts.add(l);
        }
    }

    /// Fans per live layer (see `counts`).
    pub(crate) fn counts(&self) -> LayerCounts {
        self.counts
    }

    /// Recomputes one fan as of `at` and records a change.
    fn recompute(
        &mut self,
        v: View<'_>,
        root: u32,
        at: Millis,
        cause: Cause,
        event_id: Option<&str>,
    ) {
        self.grow(v.graph.node_count());
        let (state, next) =
            v.cols
                .fan_state(&v.graph.nodes_of_root(root), v.rules, &self.tables, at);
        let new = state.features();
        self.state[root as usize] = Some(state);
        self.settle(v, root, new, at, cause, event_id);
        self.next[root as usize] = next;
        if next != Millis::MAX {
            self.schedule(root, next);
        }
    }

    /// After an event was applied: drop absorbed fans, recompute its fan at the clock.
    pub(crate) fn on_event(
        &mut self,
        v: View<'_>,
        node: u32,
        absorbed: &[u32],
        cause: Cause,
        event_id: Option<&str>,
    ) {
        self.grow(v.graph.node_count());
        for &a in absorbed {
            self.set_layer(a, None);
            self.features[a as usize] = None;
            self.next[a as usize] = Millis::MAX;
            self.state[a as usize] = None;
        }
        let root = v.graph.root_node(node);
        let clock = self.clock;
        // In the common case (no merge, the fan's state is current) the event is added to it.
        if absorbed.is_empty()
            && let Some(state) = self.state[root as usize].as_mut()
        {
            let i = v.cols.len() - 1;
            let next = state.add(v.cols, i, v.rules, &self.tables, clock);
            let new = state.features();
            if next < self.next[root as usize] {
                self.next[root as usize] = next;
                self.schedule(root, next);
            }
            self.settle(v, root, new, clock, cause, event_id);
            return;
        }
        self.recompute(v, root, clock, cause, event_id);
    }

    /// Advances the clock to `t`, applying every change due by then at its own instant.
    pub(crate) fn tick(&mut self, v: View<'_>, t: Millis) {
        if t <= self.clock {
            return;
        }
        let last_bucket = t.div_euclid(BUCKET_MS) * BUCKET_MS;
        let mut carry: Vec<u32> = Vec::new();
        while let Some((&k, _)) = self.queue.first_key_value() {
            if k > last_bucket {
                break;
            }
            let nodes = self.queue.remove(&k).unwrap_or_default();
            for node in nodes {
                let root = v.graph.root_node(node);
                if root != node {
                    continue; // merged away; its root is scheduled on its own
                }
                let mut guard = 0;
                while self.next[root as usize] <= t && guard < 10_000 {
                    let at = self.next[root as usize];
                    self.next[root as usize] = Millis::MAX;
                    match self.state[root as usize].as_mut() {
                        // The state knows what leaves and what comes due: no recompute.
                        Some(state) => {
                            let next = state.advance(v.cols, v.rules, &self.tables, at);
                            let new = state.features();
                            self.next[root as usize] = next;
                            if next != Millis::MAX {
                                self.schedule(root, next);
                            }
                            self.settle(v, root, new, at, Cause::Decay, None);
                        }
                        None => self.recompute(v, root, at, Cause::Decay, None),
                    }
                    guard += 1;
                }
                if self.next[root as usize] != Millis::MAX
                    && self.next[root as usize].div_euclid(BUCKET_MS) * BUCKET_MS == last_bucket
                {
                    // Due later within the current minute: keep it for the next tick.
                    carry.push(root);
                }
            }
        }
        for root in carry {
            let at = self.next[root as usize];
            self.schedule(root, at);
        }
        self.clock = t;
    }

    pub(crate) fn layer_of_root(&self, root: u32) -> Option<Layer> {
        self.layer.get(root as usize).copied().flatten()
    }

    pub(crate) fn take_transitions(&mut self) -> Vec<Transition> {
        std::mem::take(&mut self.pending)
    }

    /// Current layers by node (for comparing with a snapshot).
    pub(crate) fn layers(&self) -> &[Option<Layer>] {
        &self.layer
    }

    /// Current features by node (meaningful at roots).
    pub(crate) fn features(&self) -> &[Option<Features>] {
        &self.features
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;
    use siyu_domain::time::{MS_PER_DAY, format_rfc3339, parse_rfc3339};
    use siyu_domain::{Layer, parse_event};

    use crate::TenantEngine;
    use crate::identity::FanId;

    fn t0() -> i64 {
        parse_rfc3339("2026-09-01T00:00:00Z").unwrap()
    }

    const TYPES: [(&str, &str); 9] = [
        ("follow", ""),
        ("unfollow", ""),
        ("subscribe", ""),
        ("private_message_in", ""),
        ("order", r#","props":{"order_id":"x","amount":1}"#),
        ("group_join", r#","props":{"group_id":"g"}"#),
        ("group_leave", r#","props":{"group_id":"g"}"#),
        ("live_watch", r#","props":{"duration_s":1800}"#),
        ("video_comment", ""),
    ];

    fn apply(e: &mut TenantEngine, seq: i64, who: u8, ty: usize, ts: i64) {
        let (name, props) = TYPES[ty];
        let text = format!(
            r#"{{"id":"{seq}","type":"{name}","ts":"{}","identities":{{"douyin_open_id":"f{who}"}}{props}}}"#,
            format_rfc3339(ts)
        );
        e.apply(seq, &parse_event(&text, t0() + 1000 * MS_PER_DAY).unwrap());
    }

    #[test]
    fn a_quiet_fan_decays_at_the_instant_the_window_slides() {
        let mut e = TenantEngine::new();
        e.start_live(t0());
        apply(&mut e, 1, 0, 0, t0()); // follow
        for s in 2..5 {
            apply(&mut e, s, 0, 3, t0()); // 3 × private_message_in = 12
        }
        let fan = FanId(1);
        assert_eq!(e.live_layer(fan), Some(Layer::Favorable));
        let ts: Vec<_> = e.take_transitions();
        assert_eq!(
            ts.first().map(|t| (t.from, t.to)),
            Some((None, Layer::Passerby))
        );
        assert_eq!(ts.last().map(|t| t.to), Some(Layer::Favorable));
        // Ticking in big steps still records the decay at its own instant.
        e.tick(t0() + 10 * MS_PER_DAY);
        e.tick(t0() + 45 * MS_PER_DAY);
        assert_eq!(e.live_layer(fan), Some(Layer::Passerby));
        let decay = e.take_transitions();
        assert_eq!(decay.len(), 1);
        assert_eq!(decay[0].cause, super::Cause::Decay);
        assert_eq!(
            decay[0].at,
            t0() + 30 * MS_PER_DAY,
            "exactly 30 days after the messages"
        );
        assert_eq!(
            (decay[0].from, decay[0].to),
            (Some(Layer::Favorable), Layer::Passerby)
        );
    }

    #[test]
    fn a_future_event_counts_when_the_clock_reaches_it() {
        let mut e = TenantEngine::new();
        e.start_live(t0());
        apply(&mut e, 1, 0, 0, t0() + 2 * 3_600_000); // a follow two hours ahead
        assert_eq!(e.live_layer(FanId(1)), None, "not a fan yet");
        e.tick(t0() + 3 * 3_600_000);
        assert_eq!(e.live_layer(FanId(1)), Some(Layer::Passerby));
        assert_eq!(e.take_transitions()[0].at, t0() + 2 * 3_600_000);
    }

    #[test]
    fn new_rules_and_identity_decisions_record_the_fans_they_move() {
        let mut e = TenantEngine::new();
        e.start_live(t0());
        apply(&mut e, 1, 0, 0, t0()); // follow
        for s in 2..5 {
            apply(&mut e, s, 0, 3, t0()); // engagement 12
        }
        apply(&mut e, 5, 1, 8, t0()); // another fan comments
        let _ = e.take_transitions();
        let stricter = crate::Rules::from_toml("[favorable]\nengagement = 15\n").unwrap();
        e.set_rules(1, stricter);
        let moved = e.take_transitions();
        assert_eq!(moved.len(), 1, "only the fan the rules move: {moved:?}");
        assert_eq!(
            (moved[0].fan, moved[0].from, moved[0].to, moved[0].cause),
            (
                FanId(1),
                Some(Layer::Favorable),
                Layer::Passerby,
                super::Cause::Rules
            )
        );
        assert_eq!(moved[0].at, t0(), "at the live clock");
        // An operator merges the commenter into the follower: the merged fan is recomputed.
        e.decide(
            1,
            crate::Decision::Confirm {
                a: FanId(1),
                b: FanId(5),
            },
        )
        .unwrap();
        let merged = e.take_transitions();
        assert_eq!(
            merged
                .iter()
                .map(|t| (t.fan, t.to, t.cause))
                .collect::<Vec<_>>(),
            [(FanId(1), Layer::Favorable, super::Cause::Identity)],
            "12 + a comment's 3 reach 15"
        );
        // The kept counts lost the merged-away fan (checked against a walk in debug builds).
        assert_eq!(
            e.live_counts().unwrap().total(),
            e.identities().fan_count(),
            "one count per fan after the merge"
        );
        // Restarting against what was recorded records only the differences.
        let recorded = e.live_layers().unwrap();
        e.start_live_against(t0(), &|f| recorded.get(&f).copied(), super::Cause::Identity);
        assert!(e.take_transitions().is_empty());
        e.start_live_against(t0(), &|_| None, super::Cause::Identity);
        assert_eq!(
            e.take_transitions().len(),
            1,
            "one fan, now unknown to the record"
        );
    }

    proptest! {
        /// Whatever the arrival order and tick pattern, the live layers at clock T are the
        /// layers a replay computes as of T over the same events, and each fan's last
        /// transition lands on its live layer.
        #[test]
        fn live_equals_replay_as_of_the_clock(
            evs in proptest::collection::vec((0u8..5, 0usize..9, 0i64..80 * 24, 0i64..72), 1..150),
            end in 0i64..120,
        ) {
            let mut e = TenantEngine::new();
            e.start_live(t0());
            let mut clock = t0();
            for (n, (who, ty, hour, step)) in evs.iter().enumerate() {
                clock += step * 3_600_000;
                e.tick(clock);
                apply(&mut e, n as i64 + 1, *who, *ty, t0() + hour * 3_600_000);
            }
            let last = (clock).max(t0() + end * MS_PER_DAY);
            e.tick(last);
            let snap = e.layers_as_of(last);
            prop_assert_eq!(e.live_counts(), Some(snap.counts()), "kept counts = a replay's");
            let mut final_by_fan: HashMap<FanId, Layer> = HashMap::new();
            for t in e.take_transitions() {
                final_by_fan.insert(t.fan, t.to);
            }
            for who in 0..5u8 {
                let found = e.identities().lookup(siyu_domain::IdentityKind::DouyinOpenId, &format!("f{who}"));
                let Some(fan) = found.first() else { continue };
                let node = e.identities().nodes_of(*fan)[0] as usize;
                prop_assert_eq!(e.live_layer(*fan), snap.layers[node], "fan {:?}", fan);
                if let Some(l) = e.live_layer(*fan) {
                    prop_assert_eq!(final_by_fan.get(fan).copied(), Some(l));
                }
            }
        }
    }
}
