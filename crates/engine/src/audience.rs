//! Which fans a segment expression selects, as of an instant, column at a time.
//!
//! Each predicate becomes a set of fans (a dense bitset over identity-graph nodes, holding
//! roots only), and `and`/`or`/`not` are word-wise operations on those sets. A predicate reads
//! only what it needs: layers and layer features come from the live layers when asked as of
//! the live clock (no work at all) or from one snapshot otherwise; windowed counts read only
//! the days their window covers (orders and toggles read their own short lists); identity
//! kinds, first-seen time and first domain come from per-node columns kept as events arrive.
//! A fan exists as of T if it has an event at or before T; `not` is taken within the fans that
//! exist.
//!
//! # As of a past instant (issue 11)
//!
//! The live layers answer only as of the live clock; as of any other instant the layers must
//! be computed, and one snapshot of the whole tenant is most of the cost (0.1 s at a million
//! fans). [`Ctx::eval_within`] avoids it when few fans need a layer: it evaluates an
//! expression *within* a set of candidate fans, and `and` evaluates its clauses cheapest
//! first, each within what the previous ones left, so a layer clause is reached with the
//! fans the windowed counts and sums already selected. The layers (features) of those fans
//! alone are then computed from their own events ([`Columns::features_as_of`]: what the
//! live layers' per-fan state says, in one light pass, on two threads for many fans), unless
//! that would cost more than a snapshot: the cost rule in [`Ctx::per_fan_is_cheaper`].
//! `has(KIND)` as of a past instant follows the same rule (reading the candidates' events
//! instead of every event), and so do windowed counts and sums ([`Ctx::windowed`]: the
//! candidates' own events when they are fewer than half the window's). As of the live clock
//! the live layers are at hand, and a layer clause is as cheap as any.
//!
//! "Cheapest" is judged again after every clause, against the candidates it left
//! ([`Ctx::cost`]): a clause that reads one entry per candidate (a layer from the live layers,
//! `has(KIND)` from the per-node summary) goes before a windowed sum over every order, which,
//! reached with few candidates, reads only theirs.
//!
//! Why the answers are the same sets: every predicate's set is within the fans that exist,
//! and with `W` a set of existing fans and `P(x)` what `x` selects over all fans,
//! `eval_within(x, W) = P(x) ∩ W` by induction: `and` is an intersection in any order;
//! `or` adds, within what is left of `W`, what each clause selects; `not x` is
//! `W \ eval_within(x, W)` because `W` holds existing fans only. The tests compare this path
//! with [`Ctx::eval`] over a full snapshot on generated brands, for many expressions and
//! instants.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use siyu_domain::audience::{Expr, Pred, SumProp, TypeSel};
use siyu_domain::event_type::CatalogueType;
use siyu_domain::{Layer, Millis};

use crate::identity::{FanId, IdentityGraph};
use crate::layers::{CUSTOM, Columns, Features, Tables, layer_of};
use crate::rules::Rules;
use crate::tags::Tags;

/// A set of fans, as a bitset over identity-graph node indexes (fans are root nodes).
#[derive(Clone, PartialEq, Eq)]
pub struct FanSet {
    words: Vec<u64>,
}

impl std::fmt::Debug for FanSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FanSet({} fans)", self.len())
    }
}

impl FanSet {
    pub(crate) fn empty(n: usize) -> FanSet {
        FanSet {
            words: vec![0; n.div_ceil(64)],
        }
    }

    /// Adds node `i`, growing the set if the graph grew since it was made.
    pub(crate) fn insert(&mut self, i: u32) {
        let w = i as usize / 64;
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
        }
        self.words[w] |= 1 << (i % 64);
    }

    pub(crate) fn remove(&mut self, i: u32) {
        if let Some(w) = self.words.get_mut(i as usize / 64) {
            *w &= !(1 << (i % 64));
        }
    }

    /// Nodes in exactly one of the two sets, ascending.
    pub(crate) fn symmetric_difference(&self, o: &FanSet) -> Vec<u32> {
        let n = self.words.len().max(o.words.len());
        let mut out = Vec::new();
        for wi in 0..n {
            let mut w =
                self.words.get(wi).copied().unwrap_or(0) ^ o.words.get(wi).copied().unwrap_or(0);
            while w != 0 {
                out.push(wi as u32 * 64 + w.trailing_zeros());
                w &= w - 1;
            }
        }
        out
    }

    pub fn contains(&self, i: u32) -> bool {
        self.words
            .get(i as usize / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    fn and_with(&mut self, o: &FanSet) {
        for (a, b) in self.words.iter_mut().zip(&o.words) {
            *a &= b;
        }
    }

    fn or_with(&mut self, o: &FanSet) {
        for (a, b) in self.words.iter_mut().zip(&o.words) {
            *a |= b;
        }
    }

    /// `within` minus `self`.
    fn complement_within(&self, within: &FanSet) -> FanSet {
        FanSet {
            words: within
                .words
                .iter()
                .zip(&self.words)
                .map(|(w, s)| w & !s)
                .collect(),
        }
    }

    /// Number of fans.
    pub fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }

    /// Node indexes, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(wi, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                (w != 0).then(|| {
                    let b = w.trailing_zeros();
                    w &= w - 1;
                    wi as u32 * 64 + b
                })
            })
        })
    }
}

/// Why an expression cannot be evaluated over a tenant's data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error("no fan group {0:?} appears in this tenant's events")]
    UnknownGroup(String),
}

impl EvalError {
    pub fn code(&self) -> &'static str {
        match self {
            EvalError::UnknownGroup(_) => "unknown_group",
        }
    }
}

/// The fans an expression selected.
#[derive(Debug, Clone)]
pub struct Audience {
    pub as_of: Millis,
    /// Root nodes.
    pub(crate) fans: FanSet,
    /// Fans that exist as of `as_of` (the count's denominator).
    pub(crate) of: usize,
}

impl Audience {
    pub(crate) fn new(as_of: Millis, fans: FanSet, of: usize) -> Audience {
        Audience { as_of, fans, of }
    }

    pub fn count(&self) -> usize {
        self.fans.len()
    }

    /// Fans that exist as of the audience's instant, selected or not.
    pub fn of(&self) -> usize {
        self.of
    }

    /// Fan ids, in node order (creation order), `offset..offset + limit`.
    pub fn fan_ids(&self, graph: &IdentityGraph, offset: usize, limit: usize) -> Vec<FanId> {
        self.fans
            .iter()
            .skip(offset)
            .take(limit)
            .map(|n| graph.fan(n))
            .collect()
    }

    /// Whether the fan whose root node is `root` is in.
    pub fn contains_root(&self, root: u32) -> bool {
        self.fans.contains(root)
    }
}

/// How a layer or `has(KIND)` clause chooses between its candidates' own events and a pass
/// over all fans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CostRule {
    /// Whichever [`Ctx::per_fan_is_cheaper`] says.
    Auto,
    /// Always the candidates' own events (tests).
    #[cfg(test)]
    PerFan,
    /// Always a pass over all fans (tests).
    #[cfg(test)]
    AllFans,
}

/// Every fan's layers and features as of one instant, by node (meaningful at roots).
pub(crate) struct AllLayers<'a> {
    pub layers: Cow<'a, [Option<Layer>]>,
    pub features: Cow<'a, [Option<Features>]>,
}

/// What every predicate may read, for one instant.
pub(crate) struct Ctx<'a> {
    pub cols: &'a Columns,
    pub graph: &'a IdentityGraph,
    pub tags: &'a Tags,
    pub rules: &'a Rules,
    pub as_of: Millis,
    /// Root of each node.
    pub root: Vec<u32>,
    /// Fans (roots) that exist as of `as_of`.
    pub exists: FanSet,
    /// Every fan's layers and features as of `as_of`: given (the live ones), or computed by
    /// one snapshot the first time a predicate needs them for more fans than is worth doing
    /// one by one.
    all: OnceLock<AllLayers<'a>>,
    /// Features of single fans (by root) computed from their own events, when `all` was not
    /// worth computing.
    per_fan: Mutex<HashMap<u32, Option<Features>>>,
    pub rule: CostRule,
    /// Each root's earliest event (time, index), computed on first use.
    first: OnceLock<Vec<(Millis, u32)>>,
}

impl<'a> Ctx<'a> {
    /// With `all`, layer predicates read those layers; without, they are computed when asked.
    pub(crate) fn new(
        cols: &'a Columns,
        graph: &'a IdentityGraph,
        tags: &'a Tags,
        rules: &'a Rules,
        as_of: Millis,
        all: Option<AllLayers<'a>>,
    ) -> Ctx<'a> {
        let n = graph.node_count();
        let root: Vec<u32> = (0..n as u32).map(|i| graph.root_node(i)).collect();
        let mut exists = FanSet::empty(n);
        match &all {
            Some(all) => {
                for (i, f) in all.features.iter().enumerate().take(n) {
                    if f.is_some() && root[i] == i as u32 {
                        exists.insert(i as u32);
                    }
                }
            }
            // What a snapshot says exists: a fan one of whose nodes has an event by then.
            None => {
                for (node, &first) in cols.first_ts.iter().enumerate().take(n) {
                    if first <= as_of {
                        exists.insert(root[node]);
                    }
                }
            }
        }
        let cell = OnceLock::new();
        if let Some(all) = all {
            let _ = cell.set(all);
        }
        Ctx {
            cols,
            graph,
            tags,
            rules,
            as_of,
            root,
            exists,
            all: cell,
            per_fan: Mutex::new(HashMap::new()),
            rule: CostRule::Auto,
            first: OnceLock::new(),
        }
    }

    /// Every fan's layers and features, computed by one snapshot if not given.
    fn all(&self) -> &AllLayers<'a> {
        self.all.get_or_init(|| {
            let snap = self.cols.snapshot(self.graph, self.rules, self.as_of);
            AllLayers {
                layers: Cow::Owned(snap.layers),
                features: Cow::Owned(snap.features),
            }
        })
    }

    fn n(&self) -> usize {
        self.root.len()
    }

    pub(crate) fn eval(&self, e: &Expr) -> Result<FanSet, EvalError> {
        Ok(match e {
            Expr::And(xs) => {
                let mut it = xs.iter();
                let mut acc = match it.next() {
                    Some(x) => self.eval(x)?,
                    None => self.exists.clone(),
                };
                for x in it {
                    if acc.is_empty() {
                        break;
                    }
                    acc.and_with(&self.eval(x)?);
                }
                acc
            }
            Expr::Or(xs) => {
                let mut acc = FanSet::empty(self.n());
                for x in xs {
                    acc.or_with(&self.eval(x)?);
                }
                acc
            }
            Expr::Not(x) => self.eval(x)?.complement_within(&self.exists),
            Expr::Pred(p) => self.pred(p, &self.exists)?,
        })
    }

    /// What `e` selects among the fans of `within` (existing fans): `eval(e) ∩ within`, with
    /// the clauses of `and`/`or` taken cheapest first and layers computed only for the fans
    /// that reach a layer clause when that is cheaper than a snapshot (see the module doc).
    pub(crate) fn eval_within(&self, e: &Expr, within: &FanSet) -> Result<FanSet, EvalError> {
        Ok(match e {
            Expr::And(xs) => {
                // Cheapest first, judged again against what each clause leaves.
                let mut acc = within.clone();
                let mut rest: Vec<&Expr> = xs.iter().collect();
                while !rest.is_empty() && !acc.is_empty() {
                    let m = acc.len();
                    let next = (0..rest.len())
                        .min_by_key(|&k| self.cost(rest[k], m))
                        .unwrap_or(0);
                    acc = self.eval_within(rest.remove(next), &acc)?;
                }
                acc
            }
            Expr::Or(xs) => {
                let mut rest = within.clone();
                let mut acc = FanSet::empty(self.n());
                for x in self.cheapest_first(xs, within) {
                    if rest.is_empty() {
                        break;
                    }
                    let got = self.eval_within(x, &rest)?;
                    rest = got.complement_within(&rest);
                    acc.or_with(&got);
                }
                acc
            }
            Expr::Not(x) => self.eval_within(x, within)?.complement_within(within),
            Expr::Pred(p) => self.pred_within(p, within)?,
        })
    }

    /// Clauses in order of [`Ctx::cost`] for all of `within`, ties in the written order.
    fn cheapest_first<'e>(&self, xs: &'e [Expr], within: &FanSet) -> Vec<&'e Expr> {
        let m = within.len();
        let mut v: Vec<((u8, usize), &Expr)> = xs.iter().map(|x| (self.cost(x, m), x)).collect();
        v.sort_by_key(|(c, _)| *c);
        v.into_iter().map(|(_, x)| x).collect()
    }

    /// What evaluating `e` within `m` candidates costs, as (class, reads). Class 0 reads its
    /// own columns whatever the candidates; 1 is `has(KIND)` as of a past instant, cheap for
    /// few candidates; 2 needs layers not yet at hand, cheap only for few candidates and the
    /// most expensive otherwise. Within class 0, reads estimate the work: a windowed count or
    /// sum reads the window's events or, fan by fan, about twice the candidates' (at the
    /// tenant's mean events per fan); first events read every node; a group reads the
    /// toggles; the rest one per candidate. A
    /// compound expression costs its dearest class and the sum of its reads.
    fn cost(&self, e: &Expr, m: usize) -> (u8, usize) {
        match e {
            Expr::And(xs) | Expr::Or(xs) => xs.iter().fold((0, 0), |(c, r), x| {
                let (xc, xr) = self.cost(x, m);
                (c.max(xc), r.saturating_add(xr))
            }),
            Expr::Not(x) => self.cost(x, m),
            Expr::Pred(p) if reads_layers(p) && self.all.get().is_none() => (2, 0),
            Expr::Pred(Pred::Has(_)) if self.as_of < self.cols.max_ts => (1, 0),
            Expr::Pred(p) => (0, self.reads(p, m)),
        }
    }

    fn reads(&self, p: &Pred, m: usize) -> usize {
        let window = |ty: &TypeSel, window: Millis| {
            let kind = match ty {
                TypeSel::Any => None,
                TypeSel::Catalogue(t) => Some(*t as u8),
                TypeSel::Custom(_) => Some(CUSTOM),
            };
            let from = self.as_of.saturating_sub(window);
            let pass: usize = self
                .window_lists(ty, kind, from)
                .iter()
                .map(|l| l.len())
                .sum();
            let per_fan = self.cols.len() / self.exists.len().max(1) + 1;
            pass.min(m.saturating_mul(per_fan).saturating_mul(2))
        };
        match p {
            Pred::Count { ty, window: w, .. } | Pred::Last { ty, window: w } => window(ty, *w),
            Pred::Sum {
                prop, window: w, ..
            } => window(&TypeSel::Catalogue(prop.event_type()), *w),
            Pred::FirstSeen { .. } | Pred::FirstDomain { .. } => self.n(),
            Pred::InGroup(Some(_)) => self.cols.toggles.len(),
            // At the live clock (as of a past instant it is class 1): see `has`.
            Pred::Has(_) if m.saturating_mul(8) >= self.n() => self.n(),
            _ => m,
        }
    }

    /// One predicate within `within`.
    fn pred_within(&self, p: &Pred, within: &FanSet) -> Result<FanSet, EvalError> {
        if reads_layers(p)
            && self.all.get().is_none()
            && self.per_fan_is_cheaper(
                within,
                (self.cols.snapshot_work(self.rules, self.as_of) + self.n()) / 4,
            )
        {
            return Ok(self.by_own_layers(p, within));
        }
        if let Pred::Has(kind) = p
            && self.as_of < self.cols.max_ts
            && self.per_fan_is_cheaper(within, self.cols.len())
        {
            return Ok(self.has_within(1 << (*kind as u16), within));
        }
        self.pred(p, within)
    }

    /// The cost rule: whether reading the events of the fans of `within` one fan at a time
    /// reads at most `budget` events. Callers set the budget to what the pass over all fans
    /// would read, divided by how much dearer an event read fan by fan is (a fan's events are
    /// scattered over the columns): for layers the pass is a snapshot (the toggles, the
    /// orders, the engagement window's scoring events and one entry per node) and the factor
    /// 4; for `has(KIND)` it is every event, and 1 (a fan's scan stops at its first event of
    /// that kind); for a windowed count or sum, the window's events, and 2.
    fn per_fan_is_cheaper(&self, within: &FanSet, budget: usize) -> bool {
        match self.rule {
            CostRule::Auto => {}
            #[cfg(test)]
            CostRule::PerFan => return true,
            #[cfg(test)]
            CostRule::AllFans => return false,
        }
        // Every fan has an event: more candidates than budget cannot be cheaper.
        if within.len() > budget {
            return false;
        }
        let mut work = 0usize;
        for r in within.iter() {
            work += self.cols.events_of_root_count(self.graph, r);
            if work > budget {
                return false;
            }
        }
        true
    }

    /// A layer predicate over the fans of `within`, each from its own events (on two
    /// threads when there are many).
    fn by_own_layers(&self, p: &Pred, within: &FanSet) -> FanSet {
        let mut cache = self.per_fan.lock().unwrap_or_else(|e| e.into_inner());
        let todo: Vec<u32> = within.iter().filter(|r| !cache.contains_key(r)).collect();
        let (cols, graph, rules, as_of) = (self.cols, self.graph, self.rules, self.as_of);
        let tables = Tables::new(rules);
        let features_of = |roots: &[u32]| -> Vec<Option<Features>> {
            roots
                .iter()
                .map(|&r| {
                    let own = [r];
                    if graph.members_of_root(r).is_empty() {
                        cols.features_as_of(&own, rules, &tables, as_of)
                    } else {
                        cols.features_as_of(&graph.nodes_of_root(r), rules, &tables, as_of)
                    }
                })
                .collect()
        };
        let parts = if todo.len() < 512 {
            1
        } else {
            std::thread::available_parallelism().map_or(1, |p| p.get().clamp(1, 4))
        };
        let computed: Vec<Option<Features>> = if parts == 1 {
            features_of(&todo)
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = todo
                    .chunks(todo.len().div_ceil(parts))
                    .map(|part| scope.spawn(|| features_of(part)))
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().expect("layer worker"))
                    .collect()
            })
        };
        cache.extend(todo.into_iter().zip(computed));
        let mut out = FanSet::empty(self.n());
        for r in within.iter() {
            if cache[&r].is_some_and(|f| layer_test(p, &f, layer_of(&f, self.rules))) {
                out.insert(r);
            }
        }
        out
    }

    /// `has(KIND)` over the fans of `within`, each from its own events.
    fn has_within(&self, bit: u16, within: &FanSet) -> FanSet {
        let cols = self.cols;
        let mut out = FanSet::empty(self.n());
        let node_has = |node: u32| {
            cols.node_kinds
                .get(node as usize)
                .is_some_and(|k| k & bit != 0)
                && cols.node_events(node).iter().any(|&i| {
                    cols.kinds[i as usize] & bit != 0 && cols.ts[i as usize] <= self.as_of
                })
        };
        for r in within.iter() {
            if node_has(r) || self.graph.members_of_root(r).iter().any(|&m| node_has(m)) {
                out.insert(r);
            }
        }
        out
    }

    /// The fans of `over` (existing fans) for which `f(root)` holds.
    fn fans_where(&self, over: &FanSet, f: impl Fn(usize) -> bool) -> FanSet {
        let mut out = FanSet::empty(self.n());
        for r in over.iter() {
            if f(r as usize) {
                out.insert(r);
            }
        }
        out
    }

    fn feature(&self, over: &FanSet, f: impl Fn(&Features) -> bool) -> FanSet {
        let features = &self.all().features;
        self.fans_where(over, |r| features[r].as_ref().is_some_and(&f))
    }

    /// The fans of `over` (existing fans) that `p` selects.
    fn pred(&self, p: &Pred, over: &FanSet) -> Result<FanSet, EvalError> {
        let window_from = |w: Millis| self.as_of.saturating_sub(w);
        Ok(match p {
            Pred::Layer(cmp, l) => {
                let layers = &self.all().layers;
                self.fans_where(over, |r| layers[r].is_some_and(|x| cmp.test(x, *l)))
            }
            Pred::LayerIn(ls) => {
                let layers = &self.all().layers;
                self.fans_where(over, |r| layers[r].is_some_and(|x| ls.contains(&x)))
            }
            Pred::Follows => self.feature(over, |f| f.follows),
            Pred::Subscribed => self.feature(over, |f| f.subscribed),
            Pred::InGroup(None) => self.feature(over, |f| f.in_group),
            Pred::InGroup(Some(g)) => self.in_group(g, over)?,
            Pred::Engagement(cmp, n) => {
                self.feature(over, |f| cmp.test(f64::from(f.engagement_30d), *n))
            }
            Pred::Orders(cmp, n) => self.feature(over, |f| cmp.test(f64::from(f.orders_180d), *n)),
            Pred::Tag(name) => self.tagged(name, over),
            Pred::Has(kind) => self.has(1 << (*kind as u16), over),
            Pred::Count { ty, window, cmp, n } => {
                self.windowed(ty, *window, false, over, |c| cmp.test(c as f64, *n))
            }
            Pred::Sum {
                prop,
                window,
                cmp,
                x,
            } => {
                let ty = TypeSel::Catalogue(prop.event_type());
                // Amounts are kept in fen (exact sums), durations in seconds.
                let target = match prop {
                    SumProp::OrderAmount | SumProp::RefundAmount => (x * 100.0).round(),
                    SumProp::LiveWatchSeconds => *x,
                };
                self.windowed(&ty, *window, true, over, |s| cmp.test(s as f64, target))
            }
            Pred::Last { ty, window } => self.windowed(ty, *window, false, over, |c| c > 0),
            Pred::FirstSeen { window } => {
                let from = window_from(*window);
                let first = self.first();
                self.fans_where(over, |r| first[r].0 > from && first[r].0 <= self.as_of)
            }
            Pred::FirstDomain { eq, domain } => {
                let first = self.first();
                self.fans_where(over, |r| {
                    first[r].1 != u32::MAX
                        && (self.cols.domain(first[r].1 as usize) == *domain) == *eq
                })
            }
        })
    }

    /// The fans of `over` whose count (or, with `amounts`, sum of `val`) of the events `ty`
    /// selects in `(as_of - window, as_of]` passes `test`: from the candidates' own events
    /// when they are fewer than the events a pass over the window reads (counted twice: a
    /// fan's events are scattered over the columns), else by that pass over every fan.
    fn windowed(
        &self,
        ty: &TypeSel,
        window: Millis,
        amounts: bool,
        over: &FanSet,
        test: impl Fn(u64) -> bool,
    ) -> FanSet {
        let cols = self.cols;
        let from = self.as_of.saturating_sub(window);
        let kind: Option<(u8, Option<u32>)> = match ty {
            TypeSel::Any => None,
            TypeSel::Catalogue(t) => Some((*t as u8, None)),
            TypeSel::Custom(name) => match cols.custom_type(name) {
                Some(ci) => Some((CUSTOM, Some(ci))),
                // Never seen: every fan's count is 0.
                None => return self.fans_where(over, |_| test(0)),
            },
        };
        let value = |i: usize| if amounts { u64::from(cols.val[i]) } else { 1 };
        let counted = |i: usize| -> u64 {
            let ts = cols.ts[i];
            let hit = ts > from
                && ts <= self.as_of
                && kind.is_none_or(|(k, custom)| {
                    cols.kind[i] == k && custom.is_none_or(|c| cols.val[i] == c)
                });
            if hit { value(i) } else { 0 }
        };
        let lists = self.window_lists(ty, kind.map(|(k, _)| k), from);
        let pass: usize = lists.iter().map(|l| l.len()).sum();
        if self.per_fan_is_cheaper(over, pass / 2) {
            let of_node = |node: u32| -> u64 {
                cols.node_events(node)
                    .iter()
                    .map(|&i| counted(i as usize))
                    .sum()
            };
            return self.fans_where(over, |r| {
                let r = r as u32;
                let members = self.graph.members_of_root(r);
                test(of_node(r) + members.iter().map(|&m| of_node(m)).sum::<u64>())
            });
        }
        let mut acc = vec![0u64; self.n()];
        for list in lists {
            for &i in list {
                let i = i as usize;
                acc[self.root[cols.node[i] as usize] as usize] += counted(i);
            }
        }
        self.fans_where(over, |r| test(acc[r]))
    }

    /// The index lists a pass over `(from, as_of]` for `ty` (of `kind`) reads: the orders or
    /// the toggles, which are short, else the window's days, only the type's slot.
    fn window_lists(&self, ty: &TypeSel, kind: Option<u8>, from: Millis) -> Vec<&'a [u32]> {
        let cols = self.cols;
        match ty {
            TypeSel::Catalogue(CatalogueType::Order) => vec![&cols.orders[..]],
            TypeSel::Catalogue(t) if crate::layers::is_toggle(*t) => vec![&cols.toggles[..]],
            _ => {
                let slots = match kind {
                    None => 0..crate::layers::KIND_SLOTS,
                    Some(k) => {
                        let s = crate::layers::kind_slot(k);
                        s..s + 1
                    }
                };
                cols.days_between(from, self.as_of)
                    .flat_map(|day| day[slots.clone()].iter().map(Vec::as_slice))
                    .collect()
            }
        }
    }

    fn in_group(&self, id: &str, over: &FanSet) -> Result<FanSet, EvalError> {
        let g = self
            .cols
            .group(id)
            .ok_or_else(|| EvalError::UnknownGroup(id.to_string()))?;
        // The latest join/leave of this group per fan, at or before T (ties: later arrival).
        let mut state: HashMap<u32, (Millis, bool)> = HashMap::new();
        for &i in &self.cols.toggles {
            let i = i as usize;
            let on = match self.cols.kind[i] {
                k if k == CatalogueType::GroupJoin as u8 => true,
                k if k == CatalogueType::GroupLeave as u8 => false,
                _ => continue,
            };
            let ts = self.cols.ts[i];
            if self.cols.val[i] != g || ts > self.as_of {
                continue;
            }
            let r = self.root[self.cols.node[i] as usize];
            let e = state.entry(r).or_insert((Millis::MIN, false));
            if ts >= e.0 {
                *e = (ts, on);
            }
        }
        let mut out = FanSet::empty(self.n());
        for (r, (_, on)) in state {
            if on && over.contains(r) {
                out.insert(r);
            }
        }
        Ok(out)
    }

    fn tagged(&self, name: &str, over: &FanSet) -> FanSet {
        let mut out = FanSet::empty(self.n());
        for fan in self.tags.fans_with(name, self.as_of) {
            if let Some(node) = self.graph.node_of(fan) {
                let r = self.root[node as usize];
                if over.contains(r) {
                    out.insert(r);
                }
            }
        }
        out
    }

    fn has(&self, bit: u16, over: &FanSet) -> FanSet {
        let cols = self.cols;
        if self.as_of >= cols.max_ts {
            // Every event is in view: the per-node summary answers — for the candidates' nodes
            // when they are few (a lookup of each one's members), else in one pass over it.
            let node_has = |node: u32| {
                cols.node_kinds
                    .get(node as usize)
                    .is_some_and(|k| k & bit != 0)
            };
            let few = match self.rule {
                CostRule::Auto => over.len().saturating_mul(8) < self.n(),
                #[cfg(test)]
                CostRule::PerFan => true,
                #[cfg(test)]
                CostRule::AllFans => false,
            };
            if few {
                return self.fans_where(over, |r| {
                    let r = r as u32;
                    node_has(r) || self.graph.members_of_root(r).iter().any(|&m| node_has(m))
                });
            }
            let mut out = FanSet::empty(self.n());
            for (node, k) in cols.node_kinds.iter().enumerate() {
                if k & bit != 0 {
                    out.insert(self.root[node]);
                }
            }
            out.and_with(over);
            return out;
        }
        let mut out = FanSet::empty(self.n());
        for i in 0..cols.len() {
            if cols.kinds[i] & bit != 0 && cols.ts[i] <= self.as_of {
                out.insert(self.root[cols.node[i] as usize]);
            }
        }
        out.and_with(over);
        out
    }

    /// Each root's earliest event: (time, index), `(MAX, MAX)` for none.
    fn first(&self) -> &[(Millis, u32)] {
        self.first.get_or_init(|| {
            let cols = self.cols;
            let mut first = vec![(Millis::MAX, u32::MAX); self.n()];
            for (node, &ts) in cols.first_ts.iter().enumerate() {
                let idx = cols.first_idx[node];
                let r = &mut first[self.root[node] as usize];
                if (ts, idx) < *r {
                    *r = (ts, idx);
                }
            }
            first
        })
    }
}

/// Whether a predicate reads the layers or their features.
fn reads_layers(p: &Pred) -> bool {
    matches!(
        p,
        Pred::Layer(..)
            | Pred::LayerIn(_)
            | Pred::Follows
            | Pred::Subscribed
            | Pred::InGroup(None)
            | Pred::Engagement(..)
            | Pred::Orders(..)
    )
}

/// A predicate that [`reads_layers`], for one fan's features and layer (as [`Ctx::pred`]
/// reads them).
fn layer_test(p: &Pred, f: &Features, layer: Layer) -> bool {
    match p {
        Pred::Layer(cmp, l) => cmp.test(layer, *l),
        Pred::LayerIn(ls) => ls.contains(&layer),
        Pred::Follows => f.follows,
        Pred::Subscribed => f.subscribed,
        Pred::InGroup(None) => f.in_group,
        Pred::Engagement(cmp, n) => cmp.test(f64::from(f.engagement_30d), *n),
        Pred::Orders(cmp, n) => cmp.test(f64::from(f.orders_180d), *n),
        _ => unreachable!("not a layer predicate: {p:?}"),
    }
}

/// The fan groups `e` names that no event named (the expression cannot be evaluated).
pub(crate) fn names_unknown_group(e: &Expr, cols: &Columns) -> bool {
    match e {
        Expr::And(xs) | Expr::Or(xs) => xs.iter().any(|x| names_unknown_group(x, cols)),
        Expr::Not(x) => names_unknown_group(x, cols),
        Expr::Pred(Pred::InGroup(Some(g))) => cols.group(g).is_none(),
        Expr::Pred(_) => false,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! The column-at-a-time evaluator against a per-fan reading of the definitions.

    use proptest::prelude::*;
    use siyu_domain::audience::{Cmp, Expr, Pred, SumProp, TypeSel};
    use siyu_domain::event_type::CatalogueType as T;
    use siyu_domain::time::{MS_PER_DAY, format_rfc3339, parse_rfc3339};
    use siyu_domain::{Domain, IdentityKind, Layer, parse_event};

    use crate::TenantEngine;
    use crate::identity::FanId;
    use crate::tags::TagChange;

    pub(crate) fn t0() -> i64 {
        parse_rfc3339("2026-09-01T00:00:00Z").unwrap()
    }

    /// (type, props) the generator picks from.
    pub(crate) const TYPES: [(&str, &str); 10] = [
        ("follow", ""),
        ("unfollow", ""),
        ("private_message_in", ""),
        ("order", r#","props":{"order_id":"x","amount":120.5}"#),
        ("order", r#","props":{"order_id":"y","amount":399.99}"#),
        ("group_join", r#","props":{"group_id":"g1"}"#),
        ("group_leave", r#","props":{"group_id":"g1"}"#),
        ("live_watch", r#","props":{"duration_s":1800}"#),
        ("ad_click", ""),
        ("x_quiz", r#","domain":"commercial""#),
    ];

    /// One generated event: who, type index, hour offset, and its ids: 0 the open id, 1 an
    /// anonymous id, 2 both (which merges the fans the first two made).
    pub(crate) type Gen = (u8, usize, i64, u8);

    /// The fan an event belongs to now.
    pub(crate) fn fan_of(e: &TenantEngine, g: &Gen) -> FanId {
        let ids = e.identities();
        let found = match g.3 {
            1 => ids.lookup(IdentityKind::AnonymousId, &format!("a{}", g.0)),
            _ => ids.lookup(IdentityKind::DouyinOpenId, &format!("f{}", g.0)),
        };
        ids.current(found[0]).unwrap()
    }

    /// The `n`-th generated event.
    pub(crate) fn event(n: usize, g: &Gen) -> siyu_domain::Event {
        let (who, ty, hour, ids) = *g;
        let (name, props) = TYPES[ty];
        // Anonymous-only events make nodes that merge into the fan when an event carries both.
        let ids = match ids {
            0 => format!(r#"{{"douyin_open_id":"f{who}"}}"#),
            1 => format!(r#"{{"anonymous_id":"a{who}"}}"#),
            _ => format!(r#"{{"douyin_open_id":"f{who}","anonymous_id":"a{who}"}}"#),
        };
        let text = format!(
            r#"{{"id":"{n}","type":"{name}","ts":"{}","identities":{ids}{props}}}"#,
            format_rfc3339(t0() + hour * 3_600_000)
        );
        parse_event(&text, t0() + 10_000 * MS_PER_DAY).unwrap()
    }

    pub(crate) fn build(evs: &[Gen]) -> TenantEngine {
        let mut e = TenantEngine::new();
        for (n, g) in evs.iter().enumerate() {
            e.apply(n as i64 + 1, &event(n, g));
        }
        e
    }

    /// The definitions, read literally for one fan.
    fn reference(e: &TenantEngine, evs: &[Gen], p: &Pred, fan: FanId, as_of: i64) -> Option<bool> {
        let mine: Vec<(usize, &Gen)> = evs
            .iter()
            .enumerate()
            .filter(|(_, g)| fan_of(e, g) == fan && t0() + g.2 * 3_600_000 <= as_of)
            .collect();
        if mine.is_empty() {
            return None; // does not exist as of T
        }
        let ts = |g: &Gen| t0() + g.2 * 3_600_000;
        let node = e.identities().nodes_of(fan)[0] as usize;
        let snap = e.layers_as_of(as_of);
        let feat = snap.features[node].unwrap();
        let in_window = |g: &Gen, w: i64| ts(g) > as_of - w && ts(g) <= as_of;
        Some(match p {
            Pred::Layer(c, l) => c.test(snap.layers[node].unwrap(), *l),
            Pred::Follows => feat.follows,
            Pred::InGroup(Some(_)) => {
                let mut last = None;
                for (_, g) in &mine {
                    match TYPES[g.1].0 {
                        "group_join" | "group_leave" => {
                            let better = last.is_none_or(|(t, _)| ts(g) >= t);
                            if better {
                                last = Some((ts(g), TYPES[g.1].0 == "group_join"));
                            }
                        }
                        _ => {}
                    }
                }
                last.is_some_and(|(_, on)| on)
            }
            Pred::Has(_) => mine.iter().any(|(_, g)| g.3 != 1),
            Pred::Count { ty, window, cmp, n } => {
                let c = mine
                    .iter()
                    .filter(|(_, g)| in_window(g, *window))
                    .filter(|(_, g)| match ty {
                        TypeSel::Any => true,
                        TypeSel::Catalogue(t) => TYPES[g.1].0 == t.as_str(),
                        TypeSel::Custom(name) => TYPES[g.1].0 == name,
                    })
                    .count();
                cmp.test(c as f64, *n)
            }
            Pred::Sum { window, cmp, x, .. } => {
                let fen: i64 = mine
                    .iter()
                    .filter(|(_, g)| in_window(g, *window))
                    .map(|(_, g)| match g.1 {
                        3 => 12050,
                        4 => 39999,
                        _ => 0,
                    })
                    .sum();
                cmp.test(fen as f64, (x * 100.0).round())
            }
            Pred::FirstSeen { window } => {
                let first = mine.iter().map(|(_, g)| ts(g)).min().unwrap();
                first > as_of - window
            }
            Pred::FirstDomain { eq, domain } => {
                let (_, g) = mine.iter().min_by_key(|(i, g)| (ts(g), *i)).unwrap();
                let d = match TYPES[g.1].0 {
                    "ad_click" | "x_quiz" => Domain::Commercial,
                    "follow" | "unfollow" | "live_watch" => Domain::Public,
                    _ => Domain::Private,
                };
                (d == *domain) == *eq
            }
            _ => unreachable!("not generated"),
        })
    }

    pub(crate) fn preds() -> Vec<Pred> {
        let d = MS_PER_DAY;
        vec![
            Pred::Layer(Cmp::Ge, Layer::Passerby),
            Pred::Layer(Cmp::Lt, Layer::Favorable),
            Pred::Follows,
            Pred::InGroup(Some("g1".into())),
            Pred::Has(IdentityKind::DouyinOpenId),
            Pred::Count {
                ty: TypeSel::Catalogue(T::PrivateMessageIn),
                window: 7 * d,
                cmp: Cmp::Ge,
                n: 2.0,
            },
            Pred::Count {
                ty: TypeSel::Any,
                window: 30 * d,
                cmp: Cmp::Lt,
                n: 3.0,
            },
            Pred::Count {
                ty: TypeSel::Catalogue(T::Order),
                window: 30 * d,
                cmp: Cmp::Eq,
                n: 0.0,
            },
            Pred::Count {
                ty: TypeSel::Custom("x_quiz".into()),
                window: 24 * 3_600_000,
                cmp: Cmp::Gt,
                n: 0.0,
            },
            Pred::Count {
                ty: TypeSel::Catalogue(T::Follow),
                window: 10 * d,
                cmp: Cmp::Ge,
                n: 1.0,
            },
            Pred::Sum {
                prop: SumProp::OrderAmount,
                window: 180 * d,
                cmp: Cmp::Gt,
                x: 500.0,
            },
            Pred::Sum {
                prop: SumProp::OrderAmount,
                window: 20 * d,
                cmp: Cmp::Ge,
                x: 120.5,
            },
            Pred::FirstSeen { window: 14 * d },
            Pred::FirstDomain {
                eq: true,
                domain: Domain::Commercial,
            },
            Pred::FirstDomain {
                eq: false,
                domain: Domain::Public,
            },
        ]
    }

    proptest! {
        /// Every predicate, and `and`/`or`/`not` of two, selects exactly the fans the
        /// definitions select, as of any instant.
        #[test]
        fn the_evaluator_reads_the_definitions(
            evs in proptest::collection::vec((0u8..8, 0usize..10, 0i64..60 * 24, 0u8..3), 1..120),
            at_day in 0i64..70,
            pick in (0usize..15, 0usize..15),
        ) {
            let e = build(&evs);
            let as_of = t0() + at_day * MS_PER_DAY + 3_600_000 / 2;
            let ps = preds();
            let expected = |fan: FanId, x: &Expr| -> Option<bool> {
                fn go(e: &TenantEngine, evs: &[Gen], fan: FanId, as_of: i64, x: &Expr) -> Option<bool> {
                    Some(match x {
                        Expr::Pred(p) => reference(e, evs, p, fan, as_of)?,
                        Expr::Not(y) => !go(e, evs, fan, as_of, y)?,
                        Expr::And(ys) => ys.iter().map(|y| go(e, evs, fan, as_of, y)).collect::<Option<Vec<_>>>()?.iter().all(|b| *b),
                        Expr::Or(ys) => ys.iter().map(|y| go(e, evs, fan, as_of, y)).collect::<Option<Vec<_>>>()?.iter().any(|b| *b),
                    })
                }
                go(&e, &evs, fan, as_of, x)
            };
            let mut fans: Vec<FanId> = evs.iter().map(|g| fan_of(&e, g)).collect();
            fans.sort_unstable();
            fans.dedup();
            let (a, b) = (Expr::Pred(ps[pick.0].clone()), Expr::Pred(ps[pick.1].clone()));
            for x in [
                a.clone(),
                Expr::Not(Box::new(a.clone())),
                Expr::And(vec![a.clone(), Expr::Not(Box::new(b.clone()))]),
                Expr::Or(vec![a, b]),
            ] {
                let got = match e.audience(&x, as_of) {
                    Ok(got) => got,
                    Err(err) => {
                        // Only a group no event named may be refused.
                        prop_assert!(!evs.iter().any(|g| TYPES[g.1].0.starts_with("group")), "{}", err);
                        continue;
                    }
                };
                let mut want = 0;
                for &fan in &fans {
                    let node = e.identities().nodes_of(fan)[0];
                    let w = expected(fan, &x).unwrap_or(false);
                    want += usize::from(w);
                    prop_assert_eq!(got.contains_root(node), w, "fan {:?} for {:?}", fan, x);
                }
                prop_assert_eq!(got.count(), want);
            }
        }
    }

    /// A generated brand of `fans` fans over `days` days ending 2026-12-01, and that end.
    fn generated(fans: u64, days: u32) -> (TenantEngine, i64) {
        let end = jiff::Timestamp::from_second(1_796_083_200).unwrap(); // 2026-12-01T00:00:00Z
        let cfg = siyu_gen::GenConfig {
            fans,
            days,
            seed: 11,
            end,
        };
        let mut out = Vec::new();
        siyu_gen::generate(&cfg, &mut out, None, &mut |_| {}).unwrap();
        let now = end.as_millisecond();
        let mut e = TenantEngine::new();
        let mut seq = 0;
        for line in std::str::from_utf8(&out).unwrap().lines() {
            if let Ok(ev) = parse_event(line, now) {
                seq += 1;
                e.apply(seq, &ev);
            }
        }
        (e, now)
    }

    /// Clauses of every kind the cost rule treats differently: layers (=, !=, <, <=, >=, in),
    /// layer features, `has`, windowed counts and sums, first-seen facts, groups, tags, under
    /// `and`, `or` and `not`, nested.
    const AS_OF_EXPRS: &[&str] = &[
        "layer >= favorable and count(live_watch, 7d) >= 1 and sum(order.amount, 180d) > 100 \
         and not count(private_message_in, 30d) >= 3 and has(phone)",
        "layer >= favorable",
        "layer = passerby",
        "layer < favorable and count(*, 30d) >= 3",
        "layer in (passerby, true_love) or has(phone)",
        "not layer = potential",
        "not (layer >= favorable and count(live_watch, 7d) >= 1)",
        "count(order, 180d) >= 1 and not layer = true_love",
        "follows and not subscribed",
        "in_group or engagement_30d >= 10",
        "orders_180d >= 2 and has(wecom_external_id)",
        "in_group(\"grp_1\") and layer != favorable",
        "has(phone) and not has(wecom_external_id)",
        "not has(phone) and layer <= passerby",
        "last(private_message_in) within 24h or layer = true_love",
        "first_seen within 14d and layer >= passerby",
        "first_domain = commercial and not (follows or layer > passerby)",
        "sum(order.amount, 30d) > 200 or (count(video_comment, 7d) >= 2 and layer <= favorable)",
        "not (not layer >= favorable or not count(live_watch, 30d) >= 1)",
        "layer >= passerby or not layer >= passerby",
        "layer = favorable and layer = true_love",
        "(layer = favorable or layer = true_love) and sum(live_watch.duration_s, 7d) >= 3600",
        "tag(\"高意向\") or layer = favorable",
        "engagement_30d >= 5 and orders_180d = 0 and not in_group",
        "count(x_signup, 30d) >= 1 or (layer = potential and has(douyin_open_id))",
        "not (count(order, 90d) >= 1 or has(phone)) and not layer = passerby",
        "in_group(\"nope\") and layer = favorable",
        "count(order, 1d) >= 99 and in_group(\"nope\")",
    ];

    /// As of any instant (before any event, past, the live clock, after the last event), every
    /// expression selects the same fans by the candidates-first path, whichever way the cost
    /// rule goes, as by a full snapshot evaluated clause by clause over all fans.
    #[test]
    fn as_of_any_instant_the_candidates_first_path_selects_what_a_snapshot_selects() {
        use super::{AllLayers, CostRule, Ctx};
        use std::borrow::Cow;
        let (mut e, end) = generated(2_000, 240);
        e.start_live(end);
        let first = *e.columns.ts.iter().min().unwrap();
        let d = MS_PER_DAY;
        let instants = [
            first - 1,
            first,
            first + 3 * d,
            end - 120 * d,
            end - 30 * d + d / 2,
            end - 7 * d,
            end - 1,
            end,
            end + 5 * d,
        ];
        let (mut mixed, mut per_fan_auto, mut snapshot_auto) = (0, 0, 0);
        for text in AS_OF_EXPRS {
            let x =
                siyu_domain::audience::parse(text).unwrap_or_else(|err| panic!("{text}: {err}"));
            for &at in &instants {
                let snap = e.layers_as_of(at);
                let all = AllLayers {
                    layers: Cow::Owned(snap.layers),
                    features: Cow::Owned(snap.features),
                };
                let old = Ctx::new(&e.columns, &e.identities, &e.tags, &e.rules, at, Some(all));
                let want = old.eval(&x).map(|s| s.iter().collect::<Vec<u32>>());
                let before = e
                    .audience_by_snapshot(&x, at)
                    .map(|a| a.fans.iter().collect::<Vec<u32>>());
                assert_eq!(before, want, "{text} as of {at}: the reference path");
                let got = e
                    .audience(&x, at)
                    .map(|a| a.fans.iter().collect::<Vec<u32>>());
                assert_eq!(got, want, "{text} as of {at}: TenantEngine::audience");
                let Ok(want) = want else { continue };
                if !want.is_empty() && want.len() < old.exists.len() {
                    mixed += 1;
                }
                for rule in [CostRule::Auto, CostRule::PerFan, CostRule::AllFans] {
                    let mut new = Ctx::new(&e.columns, &e.identities, &e.tags, &e.rules, at, None);
                    new.rule = rule;
                    assert_eq!(new.exists, old.exists, "as of {at}: who exists");
                    let got: Vec<u32> = new.eval_within(&x, &new.exists).unwrap().iter().collect();
                    assert_eq!(got, want, "{text} as of {at}, {rule:?}");
                    if rule == CostRule::Auto
                        && new.all.get().is_none()
                        && !new.per_fan.lock().unwrap().is_empty()
                    {
                        per_fan_auto += 1;
                    }
                    if rule == CostRule::Auto && new.all.get().is_some() {
                        snapshot_auto += 1;
                    }
                }
            }
        }
        assert!(
            mixed > 100,
            "most answers select some fans but not all ({mixed})"
        );
        assert!(
            per_fan_auto > 20,
            "the rule chose fan-by-fan layers often ({per_fan_auto})"
        );
        assert!(snapshot_auto > 20, "and a snapshot often ({snapshot_auto})");
    }

    /// The per-node indexes the as-of path reads are derived, not stored: a restored engine
    /// rebuilds them as they were, and events that arrive out of time order are noticed.
    #[test]
    fn the_derived_node_indexes_survive_a_snapshot() {
        use crate::snapshot::{Reader, Writer};
        let mut evs: Vec<Gen> = (0..300)
            .map(|n| {
                (
                    (n % 7) as u8,
                    n % 10,
                    ((n * 37) % 500) as i64,
                    (n % 3) as u8,
                )
            })
            .collect();
        evs.truncate(200);
        let e = build(&evs);
        let mut w = Writer::new();
        w.put(&e.columns);
        let data = w.finish();
        let mut r = Reader::open(&data).unwrap();
        let back: crate::layers::Columns = r.take().unwrap();
        assert_eq!(back.states_by_node, e.columns.states_by_node);
        assert_eq!(back.ordered_until, e.columns.ordered_until);
        assert!(
            (0..e.columns.ordered_until.len()).any(|n| !e.columns.time_ordered(n)),
            "some node's events came out of order"
        );
        let (e, _) = generated(300, 60);
        assert!(
            (0..e.columns.ordered_until.len())
                .filter(|&n| e.columns.time_ordered(n))
                .count()
                > 250
        );
    }

    #[test]
    fn tags_and_unknown_groups() {
        let mut e = build(&[(0, 0, 0, 0), (1, 5, 1, 0), (2, 2, 2, 0)]);
        let at = t0() + MS_PER_DAY;
        e.apply_tag(&TagChange {
            fan: FanId(1),
            tag: "高意向".into(),
            on: true,
            at: t0() + 3_600_000,
            source: "manual".into(),
        });
        let tag = Expr::Pred(Pred::Tag("高意向".into()));
        assert_eq!(e.audience(&tag, at).unwrap().count(), 1);
        assert_eq!(e.audience(&tag, t0()).unwrap().count(), 0, "not yet tagged");
        e.apply_tag(&TagChange {
            fan: FanId(1),
            tag: "高意向".into(),
            on: false,
            at: t0() + 2 * 3_600_000,
            source: "manual".into(),
        });
        assert_eq!(e.audience(&tag, at).unwrap().count(), 0);
        let g = Expr::Pred(Pred::InGroup(Some("nope".into())));
        assert_eq!(e.audience(&g, at).unwrap_err().code(), "unknown_group");
    }
}
