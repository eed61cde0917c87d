//! Saved segments with live membership: who is in each saved segment *now*, and every entry
//! and exit as a trigger a journey engine can follow.
//!
//! Two paths keep membership exact without a nightly rebuild:
//! - **Events** move one fan: after an event is applied (and the fan's live layer updated), the
//!   fan is evaluated on its own events against the saved segments the event can matter to
//!   (those reading its type, an identity kind it carries, the layer features when they
//!   changed, first-seen facts when they changed, or all of them for a new or merged fan).
//!   Entries and exits are recorded at once, at the live clock.
//! - **Time** moves many fans: windows slide and layers decay. Every sweep interval (a
//!   minute) each saved segment is evaluated over all fans, column at a time, and compared
//!   with its members; the differences are recorded at the sweep's time. A sweep also follows
//!   anything that rebuilds the picture (new rules, an undone merge, a restart).
//!
//! After a sweep at T, the members are exactly what [`crate::TenantEngine::audience`] selects
//! as of T; between sweeps, each fan an event touched is exactly what the per-fan evaluation
//! says as of the clock (a property test holds the per-fan and the column evaluations to the
//! same answers).

use serde::Serialize;
use siyu_domain::audience::{Expr, Pred, SumProp, TypeSel};
use siyu_domain::event_type::CatalogueType;
use siyu_domain::{Layer, Millis};

use crate::audience::{Audience, FanSet};
use crate::identity::{FanId, IdentityGraph};
use crate::layers::{CUSTOM, Columns, Features, KIND_SLOTS, kind_slot};
use crate::tags::Tags;

/// How often time-driven changes are looked for.
pub const SWEEP_MS: Millis = 60_000;

/// A saved segment as the engine keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentDef {
    pub id: i64,
    pub expr: Expr,
    /// An automatic tag: members carry it, kept live.
    pub tag: Option<String>,
}

/// Why a fan entered or left a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "cause", rename_all = "snake_case")]
pub enum SegmentCause {
    /// The event with this arrival sequence number.
    Event { seq: i64 },
    /// Time passed: a window slid, a layer decayed.
    Time,
    /// Identity changed (merge, undone merge).
    Identity,
    /// New layer rules.
    Rules,
    /// A tag was added or removed.
    Tag,
    /// The segment was saved (its first members).
    Created,
}

impl SegmentCause {
    pub fn as_str(self) -> &'static str {
        match self {
            SegmentCause::Event { .. } => "event",
            SegmentCause::Time => "time",
            SegmentCause::Identity => "identity",
            SegmentCause::Rules => "rules",
            SegmentCause::Tag => "tag",
            SegmentCause::Created => "created",
        }
    }

    pub fn seq(self) -> Option<i64> {
        match self {
            SegmentCause::Event { seq } => Some(seq),
            _ => None,
        }
    }
}

/// One entry or exit: a `segment_entered` / `segment_exited` trigger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegmentChange {
    pub segment: i64,
    pub fan: FanId,
    pub entered: bool,
    #[serde(serialize_with = "siyu_domain::time::rfc3339")]
    pub at: Millis,
    #[serde(flatten)]
    pub cause: SegmentCause,
    /// The causing event's id (cause `event`).
    pub event_id: Option<String>,
}

/// What an event can matter to.
#[derive(Debug, Default, Clone)]
struct Deps {
    /// Catalogue kinds (and `CUSTOM`) whose events a leaf counts.
    kinds: Vec<u8>,
    /// A leaf counts every event.
    any: bool,
    /// Identity kinds a `has` reads.
    identity: u16,
    /// Which of the fan's layer facts a leaf reads (see [`facts`]).
    facts: u8,
    /// first_seen, first_domain.
    first: bool,
    /// Tags read.
    tags: Vec<String>,
}

impl Deps {
    fn of(e: &Expr) -> Deps {
        let mut d = Deps::default();
        d.walk(e);
        d
    }

    fn walk(&mut self, e: &Expr) {
        match e {
            Expr::And(xs) | Expr::Or(xs) => xs.iter().for_each(|x| self.walk(x)),
            Expr::Not(x) => self.walk(x),
            Expr::Pred(p) => self.pred(p),
        }
    }

    fn ty(&mut self, t: &TypeSel) {
        match t {
            TypeSel::Any => self.any = true,
            TypeSel::Catalogue(c) => self.kinds.push(*c as u8),
            TypeSel::Custom(_) => self.kinds.push(CUSTOM),
        }
    }

    fn pred(&mut self, p: &Pred) {
        use CatalogueType as T;
        match p {
            Pred::Layer(..) | Pred::LayerIn(_) => self.facts |= facts::LAYER,
            Pred::Follows => self.facts |= facts::FOLLOWS,
            Pred::Subscribed => self.facts |= facts::SUBSCRIBED,
            Pred::InGroup(None) => self.facts |= facts::IN_GROUP,
            Pred::Engagement(..) => self.facts |= facts::ENGAGEMENT,
            Pred::Orders(..) => self.facts |= facts::ORDERS,
            Pred::InGroup(Some(_)) => {
                self.kinds.extend([T::GroupJoin as u8, T::GroupLeave as u8]);
            }
            Pred::Tag(t) => self.tags.push(t.clone()),
            Pred::Has(k) => self.identity |= 1 << (*k as u16),
            Pred::Count { ty, .. } | Pred::Last { ty, .. } => self.ty(ty),
            Pred::Sum { prop, .. } => self.kinds.push(prop.event_type() as u8),
            Pred::FirstSeen { .. } | Pred::FirstDomain { .. } => self.first = true,
        }
    }

    /// The definition [`Index::candidates`] answers for all segments at once (tests hold
    /// them together).
    #[cfg(test)]
    fn matters(&self, t: &Touch) -> bool {
        t.all
            || self.any
            || self.kinds.contains(&t.kind)
            || self.identity & t.identity != 0
            || self.facts & t.facts_changed != 0
            || (self.first && t.first_changed)
    }
}

/// A fan's layer facts, one bit each, so an event re-evaluates only the segments reading a
/// fact it changed (most events change the engagement score, few change the layer).
pub(crate) mod facts {
    use siyu_domain::Layer;

    use crate::layers::Features;

    pub const LAYER: u8 = 1;
    pub const FOLLOWS: u8 = 2;
    pub const SUBSCRIBED: u8 = 4;
    pub const IN_GROUP: u8 = 8;
    pub const ENGAGEMENT: u8 = 16;
    pub const ORDERS: u8 = 32;

    /// The facts that differ between two readings of a fan.
    pub fn changed(
        a: (Option<Layer>, Option<Features>),
        b: (Option<Layer>, Option<Features>),
    ) -> u8 {
        if a.1.is_some() != b.1.is_some() {
            return u8::MAX;
        }
        let (fa, fb) = (a.1.unwrap_or_default(), b.1.unwrap_or_default());
        let mut m = 0;
        if a.0 != b.0 {
            m |= LAYER;
        }
        if fa.follows != fb.follows {
            m |= FOLLOWS;
        }
        if fa.subscribed != fb.subscribed {
            m |= SUBSCRIBED;
        }
        if fa.in_group != fb.in_group {
            m |= IN_GROUP;
        }
        if fa.engagement_30d != fb.engagement_30d {
            m |= ENGAGEMENT;
        }
        if fa.orders_180d != fb.orders_180d {
            m |= ORDERS;
        }
        m
    }
}

/// One fan as of an instant, for evaluating it alone. What several segments read — counts and
/// sums per type over a window, the first event, identity kinds — is computed once per view.
pub(crate) struct FanView<'a> {
    pub cols: &'a Columns,
    pub tags: &'a Tags,
    /// The fan's event indexes, in arrival order (borrowed for a fan of one node).
    pub events: std::borrow::Cow<'a, [u32]>,
    pub graph: &'a IdentityGraph,
    pub fan: FanId,
    pub as_of: Millis,
    pub layer: Option<Layer>,
    pub features: Option<Features>,
    /// Tag changes (tag, added) not stored yet, on top of `tags`: a journey step's own tags,
    /// which the step's next branch must see.
    pub overlay: &'a [(String, bool)],
    pub memo: Memo,
}

/// Per-view results shared by the segments evaluated on it.
#[derive(Default)]
pub(crate) struct Memo {
    /// (window, counts per kind slot, value sums per kind slot).
    windows: std::cell::RefCell<Vec<(Millis, WindowAgg)>>,
    /// The fan's ids (its own and those merged into it), for tags.
    ids: std::cell::OnceCell<Vec<FanId>>,
    first: std::cell::OnceCell<Option<(Millis, usize)>>,
    kinds: std::cell::OnceCell<u16>,
}

struct WindowAgg {
    count: [u32; KIND_SLOTS],
    sum: [u64; KIND_SLOTS],
}

impl FanView<'_> {
    /// Counts and value sums per kind slot over the fan's events in `(as_of - window, as_of]`.
    fn window(&self, window: Millis, f: impl FnOnce(&WindowAgg) -> f64) -> f64 {
        let mut w = self.memo.windows.borrow_mut();
        if let Some((_, agg)) = w.iter().find(|(win, _)| *win == window) {
            return f(agg);
        }
        let from = self.as_of.saturating_sub(window);
        let mut agg = WindowAgg {
            count: [0; KIND_SLOTS],
            sum: [0; KIND_SLOTS],
        };
        for &i in self.events.iter() {
            let i = i as usize;
            let ts = self.cols.ts[i];
            if ts > from && ts <= self.as_of {
                let slot = kind_slot(self.cols.kind[i]);
                agg.count[slot] += 1;
                agg.sum[slot] += u64::from(self.cols.val[i]);
            }
        }
        let out = f(&agg);
        w.push((window, agg));
        out
    }

    /// Events `ty` selects in the window.
    fn count(&self, ty: &TypeSel, window: Millis) -> f64 {
        match ty {
            TypeSel::Any => self.window(window, |a| a.count.iter().map(|c| f64::from(*c)).sum()),
            TypeSel::Catalogue(t) => {
                self.window(window, |a| f64::from(a.count[kind_slot(*t as u8)]))
            }
            TypeSel::Custom(_) => {
                self.selected(ty, self.as_of.saturating_sub(window)).count() as f64
            }
        }
    }
    /// Whether the fan matches `e` as of `as_of` (a fan with no event by then matches nothing).
    pub(crate) fn matches(&self, e: &Expr) -> bool {
        self.features.is_some() && self.eval(e)
    }

    fn eval(&self, e: &Expr) -> bool {
        match e {
            Expr::And(xs) => xs.iter().all(|x| self.eval(x)),
            Expr::Or(xs) => xs.iter().any(|x| self.eval(x)),
            Expr::Not(x) => !self.eval(x),
            Expr::Pred(p) => self.pred(p),
        }
    }

    /// The fan's events in `(from, as_of]` that `ty` selects.
    fn selected<'s>(&'s self, ty: &'s TypeSel, from: Millis) -> impl Iterator<Item = usize> + 's {
        let cols = self.cols;
        let custom = match ty {
            TypeSel::Custom(name) => Some(cols.custom_type(name)),
            _ => None,
        };
        self.events.iter().map(|&i| i as usize).filter(move |&i| {
            let ts = cols.ts[i];
            ts > from
                && ts <= self.as_of
                && match ty {
                    TypeSel::Any => true,
                    TypeSel::Catalogue(t) => cols.kind[i] == *t as u8,
                    TypeSel::Custom(_) => {
                        cols.kind[i] == CUSTOM && custom.flatten() == Some(cols.val[i])
                    }
                }
        })
    }

    fn pred(&self, p: &Pred) -> bool {
        let cols = self.cols;
        let from = |w: Millis| self.as_of.saturating_sub(w);
        let f = self.features.unwrap_or_default();
        match p {
            Pred::Layer(cmp, l) => self.layer.is_some_and(|x| cmp.test(x, *l)),
            Pred::LayerIn(ls) => self.layer.is_some_and(|x| ls.contains(&x)),
            Pred::Follows => f.follows,
            Pred::Subscribed => f.subscribed,
            Pred::InGroup(None) => f.in_group,
            Pred::Engagement(cmp, n) => cmp.test(f64::from(f.engagement_30d), *n),
            Pred::Orders(cmp, n) => cmp.test(f64::from(f.orders_180d), *n),
            Pred::InGroup(Some(g)) => {
                let Some(g) = cols.group(g) else { return false };
                let mut last: Option<(Millis, bool)> = None;
                for &i in self.events.iter() {
                    let i = i as usize;
                    let on = match cols.kind[i] {
                        k if k == CatalogueType::GroupJoin as u8 => true,
                        k if k == CatalogueType::GroupLeave as u8 => false,
                        _ => continue,
                    };
                    let ts = cols.ts[i];
                    if cols.val[i] == g && ts <= self.as_of && last.is_none_or(|(t, _)| ts >= t) {
                        last = Some((ts, on));
                    }
                }
                last.is_some_and(|(_, on)| on)
            }
            Pred::Tag(name) => {
                if let Some((_, on)) = self.overlay.iter().rev().find(|(t, _)| t == name) {
                    return *on;
                }
                let ids = self.memo.ids.get_or_init(|| self.graph.ids_of(self.fan));
                self.tags.has(name, ids, self.as_of)
            }
            Pred::Has(kind) => {
                let kinds = *self.memo.kinds.get_or_init(|| {
                    self.events
                        .iter()
                        .filter(|&&i| cols.ts[i as usize] <= self.as_of)
                        .fold(0, |m, &i| m | cols.kinds[i as usize])
                });
                kinds & (1 << (*kind as u16)) != 0
            }
            Pred::Count { ty, window, cmp, n } => cmp.test(self.count(ty, *window), *n),
            Pred::Sum {
                prop,
                window,
                cmp,
                x,
            } => {
                let slot = kind_slot(prop.event_type() as u8);
                let sum = self.window(*window, |a| a.sum[slot] as f64);
                let target = match prop {
                    SumProp::OrderAmount | SumProp::RefundAmount => (x * 100.0).round(),
                    SumProp::LiveWatchSeconds => *x,
                };
                cmp.test(sum, target)
            }
            Pred::Last { ty, window } => self.count(ty, *window) > 0.0,
            Pred::FirstSeen { window } => self.first().is_some_and(|(ts, _)| ts > from(*window)),
            Pred::FirstDomain { eq, domain } => self
                .first()
                .is_some_and(|(_, i)| (cols.domain(i) == *domain) == *eq),
        }
    }

    /// The fan's earliest event by time, then arrival: (time, index).
    fn first(&self) -> Option<(Millis, usize)> {
        *self.memo.first.get_or_init(|| {
            self.events
                .iter()
                .map(|&i| (self.cols.ts[i as usize], i as usize))
                .min()
        })
    }
}

struct Saved {
    def: SegmentDef,
    deps: Deps,
    /// Root nodes in the segment.
    members: FanSet,
}

/// Which saved segments (by position) read what, so an event finds the segments it can
/// matter to without asking each of them.
#[derive(Default)]
struct Index {
    by_kind: Vec<Vec<u32>>,
    any: Vec<u32>,
    by_identity: Vec<Vec<u32>>,
    by_fact: Vec<Vec<u32>>,
    first: Vec<u32>,
}

impl Index {
    fn build(saved: &[Saved]) -> Index {
        let mut ix = Index {
            by_kind: vec![Vec::new(); 256],
            any: Vec::new(),
            by_identity: vec![Vec::new(); 16],
            by_fact: vec![Vec::new(); 8],
            first: Vec::new(),
        };
        for (i, s) in saved.iter().enumerate() {
            let i = i as u32;
            let d = &s.deps;
            for &k in &d.kinds {
                if ix.by_kind[k as usize].last() != Some(&i) {
                    ix.by_kind[k as usize].push(i);
                }
            }
            if d.any {
                ix.any.push(i);
            }
            for b in 0..16 {
                if d.identity & (1 << b) != 0 {
                    ix.by_identity[b].push(i);
                }
            }
            for b in 0..8 {
                if d.facts & (1 << b) != 0 {
                    ix.by_fact[b].push(i);
                }
            }
            if d.first {
                ix.first.push(i);
            }
        }
        ix
    }

    /// Positions of the segments `t` can matter to, ascending, each once.
    fn candidates(&self, t: &Touch, n: usize) -> Vec<u32> {
        if t.all {
            return (0..n as u32).collect();
        }
        let mut out: Vec<u32> = Vec::new();
        out.extend_from_slice(&self.by_kind[t.kind as usize]);
        out.extend_from_slice(&self.any);
        for b in 0..16 {
            if t.identity & (1 << b) != 0 {
                out.extend_from_slice(&self.by_identity[b]);
            }
        }
        for b in 0..8 {
            if t.facts_changed & (1 << b) != 0 {
                out.extend_from_slice(&self.by_fact[b]);
            }
        }
        if t.first_changed {
            out.extend_from_slice(&self.first);
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// Every saved segment's members, kept live.
pub(crate) struct Membership {
    saved: Vec<Saved>,
    index: Index,
    last_sweep: Millis,
    pending: Vec<SegmentChange>,
    /// How much of `pending` automatic tags have seen.
    tagged_upto: usize,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("segments", &self.saved.len())
            .field("last_sweep", &self.last_sweep)
            .finish()
    }
}

/// What the membership reads about one event's fan.
pub(crate) struct Touch {
    pub kind: u8,
    pub identity: u16,
    /// [`facts`] bits that changed.
    pub facts_changed: u8,
    pub first_changed: bool,
    /// A new fan, or a merge: every segment is evaluated.
    pub all: bool,
}

impl Membership {
    pub(crate) fn new(now: Millis) -> Membership {
        Membership {
            saved: Vec::new(),
            last_sweep: now,
            pending: Vec::new(),
            tagged_upto: 0,
            index: Index::default(),
        }
    }

    pub(crate) fn ids(&self) -> Vec<i64> {
        self.saved.iter().map(|s| s.def.id).collect()
    }

    pub(crate) fn defs(&self) -> impl Iterator<Item = &SegmentDef> {
        self.saved.iter().map(|s| &s.def)
    }

    pub(crate) fn members(&self, id: i64) -> Option<&FanSet> {
        self.saved
            .iter()
            .find(|s| s.def.id == id)
            .map(|s| &s.members)
    }

    /// Adds a saved segment with the members `audience` found; each is recorded as entered
    /// with `cause` (`Created` for a new segment), unless `previous` says it was already in.
    pub(crate) fn add(
        &mut self,
        graph: &IdentityGraph,
        def: SegmentDef,
        audience: Audience,
        previous: &dyn Fn(FanId) -> bool,
        cause: SegmentCause,
    ) {
        for root in audience.fans.iter() {
            let fan = graph.fan(root);
            if !previous(fan) {
                self.pending.push(SegmentChange {
                    segment: def.id,
                    fan,
                    entered: true,
                    at: audience.as_of,
                    cause,
                    event_id: None,
                });
            }
        }
        self.saved.push(Saved {
            deps: Deps::of(&def.expr),
            def,
            members: audience.fans,
        });
        self.index = Index::build(&self.saved);
    }

    /// Forgets a segment (no exits are recorded: the segment is gone).
    pub(crate) fn remove(&mut self, id: i64) {
        self.saved.retain(|s| s.def.id != id);
        self.index = Index::build(&self.saved);
    }

    /// Records `c` (for root `root`; `c.entered` is whether it is in now) if the segment's
    /// membership of the root differs.
    fn settle(s: &mut Saved, pending: &mut Vec<SegmentChange>, root: u32, c: SegmentChange) {
        if s.members.contains(root) == c.entered {
            return;
        }
        if c.entered {
            s.members.insert(root);
        } else {
            s.members.remove(root);
        }
        pending.push(SegmentChange {
            segment: s.def.id,
            ..c
        });
    }

    fn change(
        fan: FanId,
        entered: bool,
        at: Millis,
        cause: SegmentCause,
        event_id: Option<&str>,
    ) -> SegmentChange {
        SegmentChange {
            segment: 0,
            fan,
            entered,
            at,
            cause,
            event_id: event_id.map(str::to_string),
        }
    }

    /// Roots merged away leave every segment they were in.
    pub(crate) fn absorb(&mut self, graph: &IdentityGraph, absorbed: &[u32], at: Millis) {
        for s in &mut self.saved {
            for &a in absorbed {
                let fan = graph.fan_id(a);
                let c = Self::change(fan, false, at, SegmentCause::Identity, None);
                Self::settle(s, &mut self.pending, a, c);
            }
        }
    }

    /// Whether `touch` can matter to any saved segment.
    pub(crate) fn any_matters(&self, touch: &Touch) -> bool {
        !self.saved.is_empty() && !self.index.candidates(touch, self.saved.len()).is_empty()
    }

    /// Re-evaluates one fan (root `root`) against the segments `touch` can matter to.
    pub(crate) fn on_fan(
        &mut self,
        fan: FanId,
        root: u32,
        view: &FanView<'_>,
        touch: &Touch,
        cause: SegmentCause,
        event_id: Option<&str>,
    ) {
        for i in self.index.candidates(touch, self.saved.len()) {
            let s = &mut self.saved[i as usize];
            let c = Self::change(fan, view.matches(&s.def.expr), view.as_of, cause, event_id);
            Self::settle(s, &mut self.pending, root, c);
        }
    }

    /// Re-evaluates one fan against the segments that read `tag`.
    pub(crate) fn on_tag(&mut self, fan: FanId, root: u32, view: &FanView<'_>, tag: &str) {
        for s in &mut self.saved {
            if s.deps.tags.iter().any(|t| t == tag) {
                let now_in = view.matches(&s.def.expr);
                let c = Self::change(fan, now_in, view.as_of, SegmentCause::Tag, None);
                Self::settle(s, &mut self.pending, root, c);
            }
        }
    }

    /// Whether a time sweep is due at `t`.
    pub(crate) fn sweep_due(&self, t: Millis) -> bool {
        !self.saved.is_empty() && t - self.last_sweep >= SWEEP_MS
    }

    /// Replaces every segment's members with what `eval` selects as of `t`, recording the
    /// differences with `cause`.
    pub(crate) fn sweep(
        &mut self,
        graph: &IdentityGraph,
        t: Millis,
        cause: SegmentCause,
        eval: &dyn Fn(&Expr) -> Option<Audience>,
    ) {
        self.last_sweep = t;
        for s in &mut self.saved {
            let Some(now) = eval(&s.def.expr) else {
                continue;
            };
            for root in s.members.symmetric_difference(&now.fans) {
                let entered = now.fans.contains(root);
                self.pending.push(SegmentChange {
                    segment: s.def.id,
                    fan: graph.fan(root),
                    entered,
                    at: t,
                    cause,
                    event_id: None,
                });
            }
            s.members = now.fans;
        }
    }

    pub(crate) fn take_changes(&mut self) -> Vec<SegmentChange> {
        self.tagged_upto = 0;
        std::mem::take(&mut self.pending)
    }

    /// Changes recorded since the last call (for automatic tags).
    pub(crate) fn pending_tail(&mut self) -> Vec<SegmentChange> {
        let tail = self.pending[self.tagged_upto.min(self.pending.len())..].to_vec();
        self.tagged_upto = self.pending.len();
        tail
    }

    /// Whether any saved segment has an automatic tag.
    pub(crate) fn has_tags(&self) -> bool {
        self.saved.iter().any(|s| s.def.tag.is_some())
    }

    /// Segments with an automatic tag.
    pub(crate) fn tag_of(&self, id: i64) -> Option<&str> {
        self.saved
            .iter()
            .find(|s| s.def.id == id)
            .and_then(|s| s.def.tag.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use siyu_domain::audience::{Cmp, Expr, Pred, TypeSel};
    use siyu_domain::event_type::CatalogueType as T;
    use siyu_domain::time::MS_PER_DAY;

    use super::{SegmentCause, SegmentDef};
    use crate::TenantEngine;
    use crate::audience::tests::{Gen, build, event, fan_of, preds, t0};

    proptest! {
        /// Evaluating one fan on its own events says what the column evaluation says, for
        /// every predicate and their combinations, as of any instant.
        #[test]
        fn one_fan_alone_agrees_with_all_fans_at_once(
            evs in proptest::collection::vec((0u8..8, 0usize..10, 0i64..60 * 24, 0u8..3), 1..100),
            at_day in 0i64..70,
            pick in (0usize..15, 0usize..15),
        ) {
            let mut e = build(&evs);
            let as_of = t0() + at_day * MS_PER_DAY + 1_800_000;
            e.start_live(as_of);
            let ps = preds();
            let (a, b) = (Expr::Pred(ps[pick.0].clone()), Expr::Pred(ps[pick.1].clone()));
            for x in [a.clone(), Expr::Not(Box::new(a.clone())), Expr::And(vec![a.clone(), Expr::Not(Box::new(b.clone()))]), Expr::Or(vec![a, b])] {
                let Ok(all) = e.audience(&x, as_of) else { continue };
                for g in &evs {
                    let fan = fan_of(&e, g);
                    let root = e.identities().root_node(e.identities().node_of(fan).unwrap());
                    let view = super::super::fan_view(&e.columns, &e.tags, &e.identities, e.live.as_ref(), root, as_of);
                    prop_assert_eq!(view.matches(&x), all.contains_root(root), "{:?} for {:?}", fan, x);
                }
            }
        }

        /// Saved segments follow events at once and time at each sweep: after a sweep their
        /// members are what a fresh evaluation selects, and replaying the recorded entries and
        /// exits gives the same members.
        #[test]
        fn saved_segments_stay_what_a_fresh_evaluation_says(
            mut evs in proptest::collection::vec((0u8..6, 0usize..10, 0i64..40 * 24, 0u8..3), 1..80),
            picks in proptest::collection::vec(0usize..15, 1..4),
        ) {
            evs.sort_by_key(|g| g.2);
            let mut e = TenantEngine::new();
            e.start_live(t0());
            let ps = preds();
            let defs: Vec<SegmentDef> = picks.iter().enumerate().map(|(i, p)| SegmentDef {
                id: i as i64 + 1,
                expr: Expr::Not(Box::new(Expr::Pred(ps[*p].clone()))),
                tag: None,
            }).collect();
            // Group predicates need the group to exist: save after the first events.
            let mut saved = false;
            let mut log: Vec<super::SegmentChange> = Vec::new();
            for (n, g) in evs.iter().enumerate() {
                e.tick(t0() + g.2 * 3_600_000);
                e.apply(n as i64 + 1, &event(n, g));
                if !saved && n == evs.len() / 2 {
                    let refused = e.set_segments(defs.clone(), &|_, _| false, SegmentCause::Created);
                    prop_assume!(refused.is_empty());
                    saved = true;
                }
                log.extend(e.take_segment_changes());
            }
            if !saved {
                let refused = e.set_segments(defs.clone(), &|_, _| false, SegmentCause::Created);
                prop_assume!(refused.is_empty());
            }
            let end = e.clock().unwrap() + super::SWEEP_MS + 1;
            e.tick(end);
            log.extend(e.take_segment_changes());
            for d in &defs {
                let fresh = e.audience(&d.expr, end).unwrap();
                let held = e.segment_members(d.id).unwrap();
                prop_assert_eq!(held.count(), fresh.count());
                // Changes name the fan id of their time; a merged-away id leaves first.
                let mut replayed = std::collections::BTreeSet::new();
                for c in log.iter().filter(|c| c.segment == d.id) {
                    if c.entered { replayed.insert(c.fan); } else { replayed.remove(&c.fan); }
                }
                let replayed: std::collections::BTreeSet<_> =
                    replayed.into_iter().map(|f| e.identities().current(f).unwrap()).collect();
                let mut want: Vec<_> = fresh.fan_ids(e.identities(), 0, usize::MAX);
                want.sort();
                prop_assert_eq!(replayed.into_iter().collect::<Vec<_>>(), want);
            }
        }
    }

    #[test]
    fn the_index_finds_exactly_the_segments_a_touch_can_matter_to() {
        let ps = preds();
        let saved: Vec<super::Saved> = (0..ps.len())
            .flat_map(|i| (0..ps.len()).map(move |j| (i, j)))
            .map(|(i, j)| {
                let expr = Expr::Or(vec![Expr::Pred(ps[i].clone()), Expr::Pred(ps[j].clone())]);
                super::Saved {
                    deps: super::Deps::of(&expr),
                    def: SegmentDef {
                        id: 0,
                        expr,
                        tag: None,
                    },
                    members: crate::audience::FanSet::empty(0),
                }
            })
            .collect();
        let index = super::Index::build(&saved);
        for kind in [0u8, 3, 8, 9, 12, 13, 18, 23, 255] {
            for identity in [0u16, 1, 16, 17] {
                for facts in [0u8, 1, 2, 16, 255] {
                    for first_changed in [false, true] {
                        let t = super::Touch {
                            kind,
                            identity,
                            facts_changed: facts,
                            first_changed,
                            all: false,
                        };
                        let want: Vec<u32> = (0..saved.len() as u32)
                            .filter(|&i| saved[i as usize].deps.matters(&t))
                            .collect();
                        assert_eq!(index.candidates(&t, saved.len()), want);
                    }
                }
            }
        }
    }

    #[test]
    fn an_event_moves_a_fan_into_a_segment_at_once() {
        let mut e = TenantEngine::new();
        e.start_live(t0());
        let g: Gen = (1, 0, 0, 0); // f1 follows
        e.apply(1, &event(0, &g));
        let buyers = Expr::Pred(Pred::Count {
            ty: TypeSel::Catalogue(T::Order),
            window: 30 * MS_PER_DAY,
            cmp: Cmp::Ge,
            n: 1.0,
        });
        let refused = e.set_segments(
            vec![SegmentDef {
                id: 7,
                expr: buyers,
                tag: Some("买过".into()),
            }],
            &|_, _| false,
            SegmentCause::Created,
        );
        assert!(refused.is_empty());
        assert!(e.take_segment_changes().is_empty(), "nobody has bought yet");
        e.tick(t0() + 3_600_000);
        e.apply(2, &event(1, &(1, 3, 1, 0))); // f1 orders
        let changes = e.take_segment_changes();
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert!(changes[0].entered);
        assert_eq!(changes[0].cause, SegmentCause::Event { seq: 2 });
        assert_eq!(changes[0].at, t0() + 3_600_000);
        let tags = e.take_auto_tags();
        assert_eq!(
            (tags.len(), tags[0].on, tags[0].tag.as_str()),
            (1, true, "买过")
        );
        // Thirty days later the order leaves the window: the next sweep takes the fan out.
        e.tick(t0() + 31 * MS_PER_DAY);
        let changes = e.take_segment_changes();
        assert_eq!(
            changes
                .iter()
                .map(|c| (c.entered, c.cause))
                .collect::<Vec<_>>(),
            [(false, SegmentCause::Time)]
        );
        assert!(!e.take_auto_tags()[0].on, "the automatic tag follows");
    }
}
