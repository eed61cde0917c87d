//! Fan layers 潜在 → 路人 → 好感 → 真爱, computed from compact per-event columns.
//!
//! Every stored event keeps 17 bytes here (time, identity node, type, one number), in arrival
//! order. A snapshot "as of T" is one pass over them: events after T are skipped, each fan's
//! features accumulate in flat arrays indexed by the fan's node, and the rules turn features
//! into layers. A fan is whoever its identities resolve to now; a fan with no event at or
//! before T does not exist as of T.

use std::collections::HashMap;

use serde::Serialize;
use siyu_domain::event_type::CatalogueType;
use siyu_domain::time::MS_PER_DAY;
use siyu_domain::{Domain, Event, Layer, Millis};

use crate::identity::{FanId, IdentityGraph};
use crate::rules::Rules;

pub(crate) const CUSTOM: u8 = u8::MAX;

/// [`Columns::ordered_until`] of a node whose events did not arrive in time order (a node's
/// event at this very instant only sends it down the slower, equally correct path).
const NOT_ORDERED: Millis = Millis::MAX;

/// Per-day index slots: one per catalogue type, then one for all custom types.
pub(crate) const KIND_SLOTS: usize = CatalogueType::ALL.len() + 1;

/// The day-index slot of an event kind.
pub(crate) fn kind_slot(kind: u8) -> usize {
    if kind == CUSTOM {
        KIND_SLOTS - 1
    } else {
        kind as usize
    }
}

/// An event's kind: its catalogue index, or [`CUSTOM`].
pub(crate) fn kind_of(e: &Event) -> u8 {
    e.ty.catalogue().map_or(CUSTOM, |t| t as u8)
}

/// The identity kinds an event carries, one bit per `IdentityKind`.
pub(crate) fn identity_kinds(e: &Event) -> u16 {
    e.identities
        .iter()
        .fold(0, |m, id| m | 1 << (id.kind as u16))
}

/// Types whose whole history matters (their latest state), kept in [`Columns::toggles`].
pub(crate) fn is_toggle(t: CatalogueType) -> bool {
    use CatalogueType as T;
    matches!(
        t,
        T::Follow | T::Unfollow | T::Subscribe | T::Unsubscribe | T::GroupJoin | T::GroupLeave
    )
}

fn new_day() -> Vec<Vec<u32>> {
    vec![Vec::new(); KIND_SLOTS]
}

/// The per-event columns.
#[derive(Debug, Default)]
pub(crate) struct Columns {
    pub(crate) ts: Vec<Millis>,
    pub(crate) node: Vec<u32>,
    /// Catalogue index, or [`CUSTOM`].
    pub(crate) kind: Vec<u8>,
    /// `duration_s` of a live watch, the group index of a group event, the amount of an order
    /// or refund in fen (0.01 CNY, saturating), the name index of a custom event, else 0.
    pub(crate) val: Vec<u32>,
    /// Identity kinds the event carried, one bit per `IdentityKind` (for `has(kind)` as of T).
    pub(crate) kinds: Vec<u16>,
    groups: Vec<String>,
    group_index: HashMap<String, u32>,
    custom_names: Vec<String>,
    custom_index: HashMap<String, u32>,
    /// Domain of custom events by event index (catalogue types imply theirs).
    custom_domain: HashMap<u32, Domain>,
    /// Indexes of follow/unfollow, subscribe/unsubscribe and group join/leave events, in
    /// arrival order: the only events whose whole history matters.
    pub(crate) toggles: Vec<u32>,
    /// Indexes of orders.
    pub(crate) orders: Vec<u32>,
    /// Indexes of every event by UTC day of its time and by type (`days[i][slot]` holds the
    /// events of day `day_keys[i]`, see [`kind_slot`]), in arrival order: a window's sums read
    /// only the days it covers, and only the types they count. Sparse: only days that have
    /// events are held, so one event dated years before the others adds one day, not the
    /// years between (issue 12: a dense range from 0001-01-01 was 460 MB).
    days: Vec<Vec<Vec<u32>>>,
    /// The UTC day (days since 1970-01-01) of each entry of `days`, strictly increasing.
    day_keys: Vec<i64>,
    /// The earliest event time of each identity node: a fan exists as of T if one of its
    /// nodes has an event at or before T.
    pub(crate) first_ts: Vec<Millis>,
    /// Event indexes of each identity node, in arrival order (a fan's events are its nodes').
    by_node: Vec<Vec<u32>>,
    /// The toggles and orders among each node's events, in arrival order: the events a layer
    /// feature reads beyond the engagement window (derived: rebuilt, not stored).
    pub(crate) states_by_node: Vec<Vec<u32>>,
    /// Per node, the time of its latest event while its events arrived in time order, or
    /// [`NOT_ORDERED`] once one arrived earlier than the one before: a window of an ordered
    /// node's events is found by binary search (derived: rebuilt, not stored). Kept per node
    /// rather than read from `ts` at the node's last event, which is a cache miss in a column
    /// of every event on each arrival.
    pub(crate) ordered_until: Vec<Millis>,
    /// The earliest event of each node (by time, then arrival): a fan's first domain.
    pub(crate) first_idx: Vec<u32>,
    /// Identity kinds each node's events carried, all time (`has(kind)` as of now).
    pub(crate) node_kinds: Vec<u16>,
    /// The latest event time held: "as of T ≥ this" sees every event.
    pub(crate) max_ts: Millis,
}

impl Columns {
    /// The indexes of the events of these identity nodes (each node's in arrival order).
    pub(crate) fn indexes_of_nodes(&self, nodes: &[u32]) -> Vec<u32> {
        nodes
            .iter()
            .filter_map(|n| self.by_node.get(*n as usize))
            .flatten()
            .copied()
            .collect()
    }

    /// The entry of `days` for UTC day `day`, made if the day has no events yet. Events mostly
    /// arrive in time order, so the latest day is tried first; an earlier day is found, or
    /// inserted, by binary search.
    fn day_slot(&mut self, day: i64) -> usize {
        match self.day_keys.last() {
            Some(&last) if last == day => return self.day_keys.len() - 1,
            Some(&last) if last > day => {}
            _ => {
                self.day_keys.push(day);
                self.days.push(new_day());
                return self.days.len() - 1;
            }
        }
        match self.day_keys.binary_search(&day) {
            Ok(i) => i,
            Err(i) => {
                self.day_keys.insert(i, day);
                self.days.insert(i, new_day());
                i
            }
        }
    }

    pub(crate) fn push(&mut self, e: &Event, node: u32) {
        let kind = kind_of(e);
        let val = match e.ty.catalogue() {
            Some(CatalogueType::LiveWatch) => e.duration_s().min(u32::MAX as f64) as u32,
            Some(
                CatalogueType::GroupJoin | CatalogueType::GroupLeave | CatalogueType::GroupMessage,
            ) => match e.group_id() {
                Some(g) => match self.group_index.get(g) {
                    Some(i) => *i,
                    None => {
                        let i = self.groups.len() as u32;
                        self.groups.push(g.to_string());
                        self.group_index.insert(g.to_string(), i);
                        i
                    }
                },
                None => u32::MAX,
            },
            Some(CatalogueType::Order | CatalogueType::Refund) => {
                (e.amount().unwrap_or(0.0) * 100.0)
                    .round()
                    .clamp(0.0, u32::MAX as f64) as u32
            }
            Some(_) => 0,
            None => {
                let name = e.ty.name();
                match self.custom_index.get(name.as_ref()) {
                    Some(i) => *i,
                    None => {
                        let i = self.custom_names.len() as u32;
                        self.custom_names.push(name.to_string());
                        self.custom_index.insert(name.into_owned(), i);
                        i
                    }
                }
            }
        };
        if kind == CUSTOM {
            self.custom_domain.insert(self.ts.len() as u32, e.domain());
        }
        let kinds = identity_kinds(e);
        let index = self.ts.len() as u32;
        use CatalogueType as T;
        match e.ty.catalogue() {
            Some(t) if is_toggle(t) => self.toggles.push(index),
            Some(T::Order) => self.orders.push(index),
            _ => {}
        }
        let slot = self.day_slot(e.ts.div_euclid(MS_PER_DAY));
        self.days[slot][kind_slot(kind)].push(index);
        if self.first_ts.len() <= node as usize {
            self.first_ts.resize(node as usize + 1, Millis::MAX);
        }
        if self.first_idx.len() <= node as usize {
            self.first_idx.resize(node as usize + 1, u32::MAX);
            self.node_kinds.resize(node as usize + 1, 0);
        }
        let first = &mut self.first_ts[node as usize];
        if e.ts < *first {
            *first = e.ts;
            self.first_idx[node as usize] = index;
        }
        self.node_kinds[node as usize] |= kinds;
        self.index_node(node, index, e.ts, kind);
        self.max_ts = self.max_ts.max(e.ts);
        self.ts.push(e.ts);
        self.node.push(node);
        self.kind.push(kind);
        self.val.push(val);
        self.kinds.push(kinds);
    }

    /// Files event `index` (at `ts`, of `kind`) under its node.
    fn index_node(&mut self, node: u32, index: u32, ts: Millis, kind: u8) {
        let n = node as usize;
        if self.by_node.len() <= n {
            self.by_node.resize_with(n + 1, Vec::new);
        }
        if self.states_by_node.len() <= n {
            self.states_by_node.resize_with(n + 1, Vec::new);
            self.ordered_until.resize(n + 1, Millis::MIN);
        }
        let until = &mut self.ordered_until[n];
        if *until != NOT_ORDERED {
            *until = if ts < *until { NOT_ORDERED } else { ts };
        }
        self.by_node[n].push(index);
        if kind != CUSTOM {
            let t = CatalogueType::ALL[kind as usize];
            if is_toggle(t) || t == CatalogueType::Order {
                self.states_by_node[n].push(index);
            }
        }
    }

    /// The domain of event `i`.
    pub(crate) fn domain(&self, i: usize) -> Domain {
        match self.kind[i] {
            CUSTOM => self
                .custom_domain
                .get(&(i as u32))
                .copied()
                .unwrap_or(Domain::Private),
            k => CatalogueType::ALL[k as usize].domain(),
        }
    }

    /// The event indexes of identity node `n`, in arrival order.
    pub(crate) fn events_of_node(&self, n: u32) -> &[u32] {
        self.by_node.get(n as usize).map_or(&[], Vec::as_slice)
    }

    /// The type name of event `i`: its catalogue name, or its custom `x_...` name.
    pub(crate) fn type_name(&self, i: usize) -> &str {
        match self.kind[i] {
            CUSTOM => self
                .custom_names
                .get(self.val[i] as usize)
                .map_or("custom", String::as_str),
            k => CatalogueType::ALL[k as usize].as_str(),
        }
    }

    /// The index of a custom event type's name, if any event had it.
    pub(crate) fn custom_type(&self, name: &str) -> Option<u32> {
        self.custom_index.get(name).copied()
    }

    /// The index of a fan group, if any event named it.
    pub(crate) fn group(&self, id: &str) -> Option<u32> {
        self.group_index.get(id).copied()
    }

    /// A fan's state as of `as_of` (see [`FanState`]) and the next instant after `as_of` at
    /// which its features can change with no new event: an event of its that is still in the
    /// future, or a contribution leaving a window.
    pub(crate) fn fan_state(
        &self,
        nodes: &[u32],
        rules: &Rules,
        t: &Tables,
        as_of: Millis,
    ) -> (FanState, Millis) {
        let mut st = FanState::default();
        let mut next = Millis::MAX;
        if let [node] = nodes {
            // One node (no merge): its list is already in arrival order; no copy.
            for &i in self
                .by_node
                .get(*node as usize)
                .map_or(&[][..], Vec::as_slice)
            {
                next = next.min(st.add(self, i as usize, rules, t, as_of));
            }
            return (st, next);
        }
        let mut events: Vec<u32> = nodes
            .iter()
            .filter_map(|n| self.by_node.get(*n as usize))
            .flatten()
            .copied()
            .collect();
        events.sort_unstable();
        for i in events {
            next = next.min(st.add(self, i as usize, rules, t, as_of));
        }
        (st, next)
    }

    /// A fan's features as of `as_of` from its own events (those of `nodes`): what
    /// [`Columns::fan_state`] says, without the state that lets later events and time land,
    /// so in one light pass (segments as of a past instant read it for their candidates).
    pub(crate) fn features_as_of(
        &self,
        nodes: &[u32],
        rules: &Rules,
        t: &Tables,
        as_of: Millis,
    ) -> Option<Features> {
        if let [node] = nodes {
            return self.node_features_as_of(*node, rules, t, as_of);
        }
        let events = self.events_of(nodes);
        let engagement_from = as_of - i64::from(rules.engagement_window_days) * MS_PER_DAY;
        let orders_from = as_of - i64::from(rules.orders_window_days) * MS_PER_DAY;
        let live_watch = CatalogueType::LiveWatch as usize;
        let (mut follow, mut subscribe) = (Toggle::NONE, Toggle::NONE);
        let mut groups: Vec<(u32, Toggle)> = Vec::new();
        let (mut engagement, mut orders, mut exists) = (0u32, 0u32, false);
        for &i in events.iter() {
            let i = i as usize;
            let ts = self.ts[i];
            if ts > as_of {
                continue;
            }
            exists = true;
            let kind = self.kind[i] as usize;
            if ts > engagement_from {
                engagement = engagement.saturating_add(if kind == live_watch {
                    self.val[i] / t.live_watch_seconds
                } else {
                    t.weight[kind]
                });
            }
            match t.class[kind] {
                Class::None => {}
                Class::Follow(on) => follow.set(ts, on),
                Class::Subscribe(on) => subscribe.set(ts, on),
                Class::Group(on) => {
                    let g = self.val[i];
                    match groups.iter_mut().find(|(id, _)| *id == g) {
                        Some((_, tg)) => tg.set(ts, on),
                        None => {
                            let mut tg = Toggle::NONE;
                            tg.set(ts, on);
                            groups.push((g, tg));
                        }
                    }
                }
                Class::Order => orders += u32::from(ts > orders_from),
            }
        }
        exists.then(|| Features {
            follows: follow.on,
            subscribed: subscribe.on,
            in_group: groups.iter().any(|(_, t)| t.on),
            engagement_30d: engagement,
            orders_180d: orders,
        })
    }

    /// [`Columns::features_as_of`] for a fan of one node: its toggles and orders from
    /// [`Columns::states_by_node`], its engagement from the window's events alone when its
    /// events arrived in time order (most do), else from all of them.
    fn node_features_as_of(
        &self,
        node: u32,
        rules: &Rules,
        t: &Tables,
        as_of: Millis,
    ) -> Option<Features> {
        let n = node as usize;
        if self.first_ts.get(n).is_none_or(|&first| first > as_of) {
            return None;
        }
        let engagement_from = as_of - i64::from(rules.engagement_window_days) * MS_PER_DAY;
        let orders_from = as_of - i64::from(rules.orders_window_days) * MS_PER_DAY;
        let (mut follow, mut subscribe) = (Toggle::NONE, Toggle::NONE);
        let mut groups: Vec<(u32, Toggle)> = Vec::new();
        let mut orders = 0u32;
        for &i in self.states_by_node.get(n).map_or(&[][..], Vec::as_slice) {
            let i = i as usize;
            let ts = self.ts[i];
            if ts > as_of {
                continue;
            }
            match t.class[self.kind[i] as usize] {
                Class::None => {}
                Class::Follow(on) => follow.set(ts, on),
                Class::Subscribe(on) => subscribe.set(ts, on),
                Class::Group(on) => {
                    let g = self.val[i];
                    match groups.iter_mut().find(|(id, _)| *id == g) {
                        Some((_, tg)) => tg.set(ts, on),
                        None => {
                            let mut tg = Toggle::NONE;
                            tg.set(ts, on);
                            groups.push((g, tg));
                        }
                    }
                }
                Class::Order => orders += u32::from(ts > orders_from),
            }
        }
        let live_watch = CatalogueType::LiveWatch as usize;
        let weight = |i: usize| {
            let kind = self.kind[i] as usize;
            if kind == live_watch {
                self.val[i] / t.live_watch_seconds
            } else {
                t.weight[kind]
            }
        };
        let events = self.node_events(node);
        let mut engagement = 0u32;
        if self.time_ordered(n) {
            let start = events.partition_point(|&i| self.ts[i as usize] <= engagement_from);
            for &i in &events[start..] {
                if self.ts[i as usize] > as_of {
                    break;
                }
                engagement = engagement.saturating_add(weight(i as usize));
            }
        } else {
            for &i in events {
                let ts = self.ts[i as usize];
                if ts > engagement_from && ts <= as_of {
                    engagement = engagement.saturating_add(weight(i as usize));
                }
            }
        }
        Some(Features {
            follows: follow.on,
            subscribed: subscribe.on,
            in_group: groups.iter().any(|(_, t)| t.on),
            engagement_30d: engagement,
            orders_180d: orders,
        })
    }

    /// Whether node `n`'s events arrived in time order.
    pub(crate) fn time_ordered(&self, n: usize) -> bool {
        self.ordered_until.get(n).is_some_and(|&t| t != NOT_ORDERED)
    }

    /// Rebuilds [`Columns::states_by_node`] and [`Columns::ordered_until`] from the events (a
    /// restored snapshot stores neither), in one pass in arrival order.
    fn derive_node_indexes(&mut self) {
        let n = self.by_node.len();
        self.states_by_node = vec![Vec::new(); n];
        self.ordered_until = vec![Millis::MIN; n];
        for i in 0..self.ts.len() {
            let (node, ts, kind) = (self.node[i] as usize, self.ts[i], self.kind[i]);
            if node >= n {
                continue;
            }
            let until = &mut self.ordered_until[node];
            if *until != NOT_ORDERED {
                *until = if ts < *until { NOT_ORDERED } else { ts };
            }
            if kind != CUSTOM {
                let t = CatalogueType::ALL[kind as usize];
                if is_toggle(t) || t == CatalogueType::Order {
                    self.states_by_node[node].push(i as u32);
                }
            }
        }
    }

    /// The events of some nodes (a fan's), in arrival order.
    pub(crate) fn events_of(&self, nodes: &[u32]) -> Vec<u32> {
        let mut events: Vec<u32> = nodes
            .iter()
            .filter_map(|n| self.by_node.get(*n as usize))
            .flatten()
            .copied()
            .collect();
        if nodes.len() > 1 {
            events.sort_unstable();
        }
        events
    }

    /// The events of the fan whose root is `root`, in arrival order; borrowed when the fan is
    /// one node (most are).
    pub(crate) fn events_of_root<'a>(
        &'a self,
        graph: &IdentityGraph,
        root: u32,
    ) -> std::borrow::Cow<'a, [u32]> {
        if graph.members_of_root(root).is_empty() {
            std::borrow::Cow::Borrowed(
                self.by_node
                    .get(root as usize)
                    .map_or(&[][..], Vec::as_slice),
            )
        } else {
            std::borrow::Cow::Owned(self.events_of(&graph.nodes_of_root(root)))
        }
    }

    /// The event indexes of one node, in arrival order.
    pub(crate) fn node_events(&self, node: u32) -> &[u32] {
        self.by_node
            .get(node as usize)
            .map_or(&[][..], Vec::as_slice)
    }

    /// The number of events of the fan whose root is `root`, without allocating.
    pub(crate) fn events_of_root_count(&self, graph: &IdentityGraph, root: u32) -> usize {
        self.node_events(root).len()
            + graph
                .members_of_root(root)
                .iter()
                .map(|&m| self.node_events(m).len())
                .sum::<usize>()
    }

    /// The events a snapshot as of `as_of` reads (toggles, orders, the engagement window's
    /// days), for the cost rule of [`crate::audience`].
    pub(crate) fn snapshot_work(&self, rules: &Rules, as_of: Millis) -> usize {
        let from = as_of - i64::from(rules.engagement_window_days) * MS_PER_DAY;
        let live_watch = CatalogueType::LiveWatch as usize;
        let window: usize = self
            .days_between(from, as_of)
            .flat_map(|d| d.iter().enumerate().take(CatalogueType::ALL.len()))
            .filter(|(kind, _)| rules.weights[*kind] > 0 || *kind == live_watch)
            .map(|(_, events)| events.len())
            .sum();
        self.toggles.len() + self.orders.len() + window
    }

    /// The number of events held.
    pub(crate) fn len(&self) -> usize {
        self.ts.len()
    }

    /// For every node, the next instant after `as_of` its features can change (see
    /// [`Columns::fan_state`]), in one pass.
    pub(crate) fn next_changes(&self, rules: &Rules, as_of: Millis, n: usize) -> Vec<Millis> {
        let t = Tables::new(rules);
        let ew = i64::from(rules.engagement_window_days) * MS_PER_DAY;
        let ow = i64::from(rules.orders_window_days) * MS_PER_DAY;
        let mut next = vec![Millis::MAX; n];
        for i in 0..self.ts.len() {
            let (ts, kind) = (self.ts[i], self.kind[i] as usize);
            let node = self.node[i] as usize;
            let w = if kind == CatalogueType::LiveWatch as usize {
                self.val[i] / t.live_watch_seconds
            } else {
                t.weight[kind]
            };
            let at = if ts > as_of {
                ts
            } else if matches!(t.class[kind], Class::Order) && ts + ow > as_of {
                (ts + ow).min(if w > 0 && ts + ew > as_of {
                    ts + ew
                } else {
                    Millis::MAX
                })
            } else if w > 0 && ts + ew > as_of {
                ts + ew
            } else {
                continue;
            };
            next[node] = next[node].min(at);
        }
        next
    }

    /// Event indexes whose day may fall in (from, to], day by day (only days that have
    /// events), by kind slot.
    pub(crate) fn days_between(
        &self,
        from: Millis,
        to: Millis,
    ) -> impl Iterator<Item = &[Vec<u32>]> {
        let (first, last) = (from.div_euclid(MS_PER_DAY), to.div_euclid(MS_PER_DAY));
        let lo = self.day_keys.partition_point(|d| *d < first);
        let hi = self.day_keys.partition_point(|d| *d <= last).max(lo);
        self.days[lo..hi].iter().map(Vec::as_slice)
    }
}

/// One event as the layer rules see it (for exports to other tools).
#[derive(Debug, Clone, Copy)]
pub struct EventRow<'a> {
    /// Arrival order, from 0.
    pub index: usize,
    pub fan: FanId,
    pub ts: Millis,
    /// The catalogue name, or `custom`.
    pub r#type: &'static str,
    /// `duration_s` of a live watch, else 0.
    pub duration_s: u32,
    /// The group of a group event.
    pub group: Option<&'a str>,
    /// The amount of an order or refund in fen (0.01 CNY), else 0.
    pub amount_fen: u32,
    /// Identity kinds the event carried, bit `IdentityKind as u16`.
    pub kinds: u16,
    pub domain: Domain,
}

impl Columns {
    pub(crate) fn for_each(&self, graph: &IdentityGraph, mut f: impl FnMut(EventRow<'_>)) {
        let fans: Vec<FanId> = (0..graph.node_count() as u32)
            .map(|n| graph.fan(n))
            .collect();
        for i in 0..self.ts.len() {
            let kind = self.kind[i];
            let (name, duration_s, group) = if kind == CUSTOM {
                ("custom", 0, None)
            } else {
                let t = CatalogueType::ALL[kind as usize];
                let group = match t {
                    CatalogueType::GroupJoin
                    | CatalogueType::GroupLeave
                    | CatalogueType::GroupMessage => {
                        self.groups.get(self.val[i] as usize).map(String::as_str)
                    }
                    _ => None,
                };
                let d = if t == CatalogueType::LiveWatch {
                    self.val[i]
                } else {
                    0
                };
                (t.as_str(), d, group)
            };
            let amount_fen = match CatalogueType::ALL.get(kind as usize) {
                Some(CatalogueType::Order | CatalogueType::Refund) => self.val[i],
                _ => 0,
            };
            f(EventRow {
                index: i,
                fan: fans[self.node[i] as usize],
                ts: self.ts[i],
                r#type: name,
                duration_s,
                group,
                amount_fen,
                kinds: self.kinds[i],
                domain: self.domain(i),
            });
        }
    }
}

/// What the rules look at, for one fan as of T.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Features {
    pub follows: bool,
    pub subscribed: bool,
    pub in_group: bool,
    pub engagement_30d: u32,
    pub orders_180d: u32,
}

/// The first rule that holds (docs/layers.md, with the tenant's thresholds).
pub fn layer_of(f: &Features, r: &Rules) -> Layer {
    let t = &r.true_love;
    if !f.follows {
        Layer::Potential
    } else if f.orders_180d >= t.orders
        || (f.orders_180d >= t.orders_with_engagement
            && f.engagement_30d >= t.engagement_with_order)
        || (f.in_group && f.engagement_30d >= t.group_engagement)
    {
        Layer::TrueLove
    } else if f.engagement_30d >= r.favorable.engagement || f.subscribed || f.in_group {
        Layer::Favorable
    } else {
        Layer::Passerby
    }
}

fn weight(r: &Rules, kind: u8, val: u32) -> u32 {
    if kind == CatalogueType::LiveWatch as u8 {
        val / r.live_watch_seconds_per_point
    } else if kind == CUSTOM {
        0
    } else {
        r.weights[kind as usize]
    }
}

/// What an event type does to the toggles and counters, looked up by type index.
#[derive(Clone, Copy)]
enum Class {
    None,
    Follow(bool),
    Subscribe(bool),
    Group(bool),
    Order,
}

/// One fan's features in a form that can take one more event: the toggles themselves (not
/// just whether they are on), so a later event lands correctly.
#[derive(Debug, Clone, Default)]
pub(crate) struct FanState {
    follow: Toggle,
    subscribe: Toggle,
    groups: Vec<(u32, Toggle)>,
    engagement: u32,
    orders: u32,
    exists: bool,
    /// Contributions still in a window: (when it leaves, engagement points, orders), soonest
    /// first, so time passing subtracts them instead of recomputing the fan.
    expiring: std::collections::BinaryHeap<std::cmp::Reverse<(Millis, u32, u32)>>,
    /// Events of the fan whose time is still ahead, (time, index), added when it comes.
    future: Vec<(Millis, u32)>,
}

impl FanState {
    /// Adds event `i` as seen at `as_of`. Returns when it next matters on its own: its time if
    /// it is still in the future (then it is not added), else when it leaves a window, else
    /// never.
    pub(crate) fn add(
        &mut self,
        cols: &Columns,
        i: usize,
        r: &Rules,
        t: &Tables,
        as_of: Millis,
    ) -> Millis {
        let ts = cols.ts[i];
        if ts > as_of {
            self.future.push((ts, i as u32));
            return ts;
        }
        self.exists = true;
        let kind = cols.kind[i] as usize;
        let mut next = Millis::MAX;
        let w = if kind == CatalogueType::LiveWatch as usize {
            cols.val[i] / t.live_watch_seconds
        } else {
            t.weight[kind]
        };
        let ew = i64::from(r.engagement_window_days) * MS_PER_DAY;
        if w > 0 && ts > as_of - ew {
            self.engagement = self.engagement.saturating_add(w);
            next = next.min(ts + ew);
            self.expiring.push(std::cmp::Reverse((ts + ew, w, 0)));
        }
        match t.class[kind] {
            Class::Follow(on) => self.follow.set(ts, on),
            Class::Subscribe(on) => self.subscribe.set(ts, on),
            Class::Group(on) => {
                let g = cols.val[i];
                match self.groups.iter_mut().find(|(id, _)| *id == g) {
                    Some((_, tg)) => tg.set(ts, on),
                    None => {
                        let mut tg = Toggle::NONE;
                        tg.set(ts, on);
                        self.groups.push((g, tg));
                    }
                }
            }
            Class::Order => {
                let ow = i64::from(r.orders_window_days) * MS_PER_DAY;
                if ts > as_of - ow {
                    self.orders += 1;
                    next = next.min(ts + ow);
                    self.expiring.push(std::cmp::Reverse((ts + ow, 0, 1)));
                }
            }
            Class::None => {}
        }
        next
    }

    /// Moves the state to instant `x`: contributions that left their window by then are
    /// subtracted, future events that came due are added (in arrival order). Returns the next
    /// instant the state changes on its own.
    pub(crate) fn advance(&mut self, cols: &Columns, r: &Rules, t: &Tables, x: Millis) -> Millis {
        while let Some(std::cmp::Reverse((at, w, o))) = self.expiring.peek().copied() {
            if at > x {
                break;
            }
            self.expiring.pop();
            self.engagement = self.engagement.saturating_sub(w);
            self.orders -= o;
        }
        if !self.future.is_empty() {
            let mut due: Vec<u32> = Vec::new();
            self.future.retain(|&(ts, i)| {
                let ready = ts <= x;
                if ready {
                    due.push(i);
                }
                !ready
            });
            due.sort_unstable();
            for i in due {
                self.add(cols, i as usize, r, t, x);
            }
        }
        self.next()
    }

    /// The next instant the state changes on its own.
    pub(crate) fn next(&self) -> Millis {
        let expiry = self.expiring.peek().map_or(Millis::MAX, |e| e.0.0);
        let future = self.future.iter().map(|f| f.0).min().unwrap_or(Millis::MAX);
        expiry.min(future)
    }

    /// The features, or `None` if the fan has no event yet.
    pub(crate) fn features(&self) -> Option<Features> {
        self.exists.then(|| Features {
            follows: self.follow.on,
            subscribed: self.subscribe.on,
            in_group: self.groups.iter().any(|(_, t)| t.on),
            engagement_30d: self.engagement,
            orders_180d: self.orders,
        })
    }
}

/// Per-type lookups for the snapshot loop.
pub(crate) struct Tables {
    class: [Class; 256],
    weight: [u32; 256],
    live_watch_seconds: u32,
}

impl Tables {
    pub(crate) fn new(r: &Rules) -> Tables {
        use CatalogueType as T;
        let mut class = [Class::None; 256];
        let mut weight = [0u32; 256];
        for t in T::ALL {
            weight[*t as usize] = r.weights[*t as usize];
            class[*t as usize] = match t {
                T::Follow => Class::Follow(true),
                T::Unfollow => Class::Follow(false),
                T::Subscribe => Class::Subscribe(true),
                T::Unsubscribe => Class::Subscribe(false),
                T::GroupJoin => Class::Group(true),
                T::GroupLeave => Class::Group(false),
                T::Order => Class::Order,
                _ => Class::None,
            };
        }
        Tables {
            class,
            weight,
            live_watch_seconds: r.live_watch_seconds_per_point.max(1),
        }
    }
}

/// One fan's accumulators, together so one event touches one cache line.
#[derive(Clone, Copy)]
struct FanAcc {
    follow: Toggle,
    subscribe: Toggle,
    engagement: u32,
    orders: u32,
    exists: bool,
}

/// Accumulates features for the fans (nodes) it is asked about.
struct Acc {
    engagement_from: Millis,
    orders_from: Millis,
    as_of: Millis,
}

/// Latest-wins state of a toggle (follow/unfollow, subscribe/unsubscribe, join/leave):
/// later event time wins; equal times, later arrival.
#[derive(Debug, Clone, Copy)]
struct Toggle {
    ts: Millis,
    on: bool,
}

impl Default for Toggle {
    fn default() -> Self {
        Toggle::NONE
    }
}

impl Toggle {
    const NONE: Toggle = Toggle {
        ts: Millis::MIN,
        on: false,
    };

    fn set(&mut self, ts: Millis, on: bool) {
        if ts >= self.ts {
            *self = Toggle { ts, on };
        }
    }
}

/// Layers of every fan as of one instant.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub as_of: Millis,
    /// Layer by node index; `None` for merged-away nodes and fans that did not exist yet.
    pub layers: Vec<Option<Layer>>,
    /// The features behind each layer (same indexing, same `None`s).
    pub features: Vec<Option<Features>>,
}

/// Fans per layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LayerCounts {
    pub potential: u64,
    pub passerby: u64,
    pub favorable: u64,
    pub true_love: u64,
}

impl LayerCounts {
    pub fn get(&self, l: Layer) -> u64 {
        match l {
            Layer::Potential => self.potential,
            Layer::Passerby => self.passerby,
            Layer::Favorable => self.favorable,
            Layer::TrueLove => self.true_love,
        }
    }

    pub(crate) fn add(&mut self, l: Layer) {
        *self.slot(l) += 1;
    }

    /// Takes one fan out of `l` (kept counts: a fan's layer changed or it was merged away).
    pub(crate) fn remove(&mut self, l: Layer) {
        let n = self.slot(l);
        *n = n.saturating_sub(1);
    }

    fn slot(&mut self, l: Layer) -> &mut u64 {
        match l {
            Layer::Potential => &mut self.potential,
            Layer::Passerby => &mut self.passerby,
            Layer::Favorable => &mut self.favorable,
            Layer::TrueLove => &mut self.true_love,
        }
    }

    pub fn total(&self) -> u64 {
        self.potential + self.passerby + self.favorable + self.true_love
    }
}

impl Snapshot {
    pub fn counts(&self) -> LayerCounts {
        let mut c = LayerCounts::default();
        for l in self.layers.iter().flatten() {
            c.add(*l);
        }
        c
    }
}

impl Columns {
    fn acc(&self, rules: &Rules, as_of: Millis) -> Acc {
        Acc {
            engagement_from: as_of - i64::from(rules.engagement_window_days) * MS_PER_DAY,
            orders_from: as_of - i64::from(rules.orders_window_days) * MS_PER_DAY,
            as_of,
        }
    }

    /// Every fan's layer as of `as_of`: toggles over their whole history, orders over theirs,
    /// engagement over the window's days only (split over the cores).
    pub(crate) fn snapshot(&self, graph: &IdentityGraph, rules: &Rules, as_of: Millis) -> Snapshot {
        self.snapshot_in_parts(graph, rules, as_of, 0)
    }

    fn snapshot_in_parts(
        &self,
        graph: &IdentityGraph,
        rules: &Rules,
        as_of: Millis,
        parts: usize,
    ) -> Snapshot {
        let n = graph.node_count();
        let root: Vec<u32> = (0..n as u32).map(|i| graph.root_node(i)).collect();
        let a = self.acc(rules, as_of);
        let tables = Tables::new(rules);
        let mut fans = vec![
            FanAcc {
                follow: Toggle::NONE,
                subscribe: Toggle::NONE,
                engagement: 0,
                orders: 0,
                exists: false,
            };
            n
        ];
        for (node, first) in self.first_ts.iter().enumerate() {
            if *first <= as_of {
                fans[root[node] as usize].exists = true;
            }
        }
        // Toggles: their whole history, in arrival order (ties in time go to the later arrival).
        let mut groups: HashMap<(u32, u32), Toggle> = HashMap::new();
        for &i in &self.toggles {
            let i = i as usize;
            let ts = self.ts[i];
            if ts > as_of {
                continue;
            }
            let r = root[self.node[i] as usize];
            let f = &mut fans[r as usize];
            match tables.class[self.kind[i] as usize] {
                Class::Follow(on) => f.follow.set(ts, on),
                Class::Subscribe(on) => f.subscribe.set(ts, on),
                Class::Group(on) => groups
                    .entry((r, self.val[i]))
                    .or_insert(Toggle::NONE)
                    .set(ts, on),
                Class::Order | Class::None => {}
            }
        }
        for &i in &self.orders {
            let ts = self.ts[i as usize];
            if ts > a.orders_from && ts <= as_of {
                fans[root[self.node[i as usize] as usize] as usize].orders += 1;
            }
        }
        // Engagement: only the days the window covers, split over the cores.
        let days: Vec<&[Vec<u32>]> = self.days_between(a.engagement_from, as_of).collect();
        let total: usize = days.iter().flat_map(|d| d.iter()).map(Vec::len).sum();
        // 0: as many parts as cores, but no more than one per 100,000 events.
        let parts = match parts {
            0 => std::thread::available_parallelism()
                .map_or(1, |p| p.get())
                .clamp(1, 8)
                .min(total / 100_000 + 1),
            p => p,
        };
        let chunk = days.len().div_ceil(parts).max(1);
        let sums: Vec<Vec<u32>> = std::thread::scope(|scope| {
            let handles: Vec<_> = days
                .chunks(chunk)
                .map(|part| {
                    let (root, a, tables) = (&root, &a, &tables);
                    scope.spawn(move || self.engagement(part, root, a, tables, n))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("snapshot worker"))
                .collect()
        });
        for part in sums {
            for (f, e) in fans.iter_mut().zip(part) {
                f.engagement = f.engagement.saturating_add(e);
            }
        }
        let mut in_group = vec![false; n];
        for ((r, _), t) in &groups {
            if t.on {
                in_group[*r as usize] = true;
            }
        }
        let features: Vec<Option<Features>> = (0..n)
            .map(|i| {
                let f = &fans[i];
                (f.exists && root[i] == i as u32).then_some(Features {
                    follows: f.follow.on,
                    subscribed: f.subscribe.on,
                    in_group: in_group[i],
                    engagement_30d: f.engagement,
                    orders_180d: f.orders,
                })
            })
            .collect();
        let layers = features
            .iter()
            .map(|f| f.as_ref().map(|f| layer_of(f, rules)))
            .collect();
        Snapshot {
            as_of,
            layers,
            features,
        }
    }

    /// Engagement per root over some days' events (only the types that score).
    fn engagement(
        &self,
        days: &[&[Vec<u32>]],
        root: &[u32],
        a: &Acc,
        t: &Tables,
        n: usize,
    ) -> Vec<u32> {
        let mut sum = vec![0u32; n];
        let live_watch = CatalogueType::LiveWatch as usize;
        for day in days {
            for (kind, events) in day.iter().enumerate().take(CatalogueType::ALL.len()) {
                let w = t.weight[kind];
                if w == 0 && kind != live_watch {
                    continue;
                }
                for &i in events {
                    let i = i as usize;
                    let ts = self.ts[i];
                    if ts <= a.engagement_from || ts > a.as_of {
                        continue;
                    }
                    let w = if kind == live_watch {
                        self.val[i] / t.live_watch_seconds
                    } else {
                        w
                    };
                    if w > 0 {
                        let x = &mut sum[root[self.node[i] as usize] as usize];
                        *x = x.saturating_add(w);
                    }
                }
            }
        }
        sum
    }

    /// Fans per layer as of each of `instants` (ascending), and how fans moved from each
    /// instant to the next — what a snapshot per instant and a flow between neighbours would
    /// say, in one sweep: toggles applied in time order as the sweep passes them, each
    /// scoring event added when the window reaches it and taken out when it leaves (each read
    /// twice, not once per instant), orders likewise over their window, then every fan's
    /// layer per instant.
    pub(crate) fn series(
        &self,
        graph: &IdentityGraph,
        rules: &Rules,
        instants: &[Millis],
    ) -> Vec<SeriesPoint> {
        let n = graph.node_count();
        let root: Vec<u32> = (0..n as u32).map(|i| graph.root_node(i)).collect();
        let tables = Tables::new(rules);
        let engagement_ms = i64::from(rules.engagement_window_days) * MS_PER_DAY;
        let orders_ms = i64::from(rules.orders_window_days) * MS_PER_DAY;
        let Some(&last) = instants.last() else {
            return Vec::new();
        };
        let mut first = vec![Millis::MAX; n];
        for (node, t) in self.first_ts.iter().enumerate() {
            let r = root[node] as usize;
            first[r] = first[r].min(*t);
        }
        // Toggles in time order (ties: the later arrival last, as `Toggle::set` decides).
        let mut toggles: Vec<u32> = self
            .toggles
            .iter()
            .copied()
            .filter(|&i| self.ts[i as usize] <= last)
            .collect();
        toggles.sort_by_key(|&i| self.ts[i as usize]);
        let mut orders: Vec<u32> = self
            .orders
            .iter()
            .copied()
            .filter(|&i| self.ts[i as usize] <= last)
            .collect();
        orders.sort_by_key(|&i| self.ts[i as usize]);
        let mut follow = vec![false; n];
        let mut subscribe = vec![false; n];
        let mut groups: HashMap<(u32, u32), bool> = HashMap::new();
        let mut in_groups = vec![0u32; n];
        let mut engagement = vec![0u64; n];
        let mut order_count = vec![0u32; n];
        let (mut next_toggle, mut order_in, mut order_out) = (0, 0, 0);
        let mut prev_t: Option<Millis> = None;
        let mut prev_layer: Vec<u8> = vec![u8::MAX; n];
        let live_watch = CatalogueType::LiveWatch as usize;
        let weight = |kind: usize, i: usize| -> u64 {
            if kind == live_watch {
                u64::from(self.val[i] / tables.live_watch_seconds)
            } else {
                u64::from(tables.weight[kind])
            }
        };
        // Adds (or takes out) the scoring events with from < ts <= to.
        let window = |engagement: &mut Vec<u64>, from: Millis, to: Millis, add: bool| {
            if from >= to {
                return;
            }
            for day in self.days_between(from, to) {
                for (kind, events) in day.iter().enumerate().take(CatalogueType::ALL.len()) {
                    if tables.weight[kind] == 0 && kind != live_watch {
                        continue;
                    }
                    for &i in events {
                        let i = i as usize;
                        let ts = self.ts[i];
                        if ts <= from || ts > to {
                            continue;
                        }
                        let w = weight(kind, i);
                        let x = &mut engagement[root[self.node[i] as usize] as usize];
                        *x = if add { *x + w } else { x.saturating_sub(w) };
                    }
                }
            }
        };
        let mut out = Vec::with_capacity(instants.len());
        for &t in instants {
            while next_toggle < toggles.len() && self.ts[toggles[next_toggle] as usize] <= t {
                let i = toggles[next_toggle] as usize;
                next_toggle += 1;
                let r = root[self.node[i] as usize];
                match tables.class[self.kind[i] as usize] {
                    Class::Follow(on) => follow[r as usize] = on,
                    Class::Subscribe(on) => subscribe[r as usize] = on,
                    Class::Group(on) => {
                        let g = groups.entry((r, self.val[i])).or_insert(false);
                        if *g != on {
                            *g = on;
                            let c = &mut in_groups[r as usize];
                            *c = if on { *c + 1 } else { c.saturating_sub(1) };
                        }
                    }
                    Class::Order | Class::None => {}
                }
            }
            // The engagement window (t − 30 d, t]: what entered since the last instant, less
            // what left.
            match prev_t {
                None => window(&mut engagement, t - engagement_ms, t, true),
                Some(p) => {
                    window(&mut engagement, p, t, true);
                    window(
                        &mut engagement,
                        p - engagement_ms,
                        (t - engagement_ms).max(p - engagement_ms),
                        false,
                    );
                }
            }
            while order_in < orders.len() && self.ts[orders[order_in] as usize] <= t {
                let i = orders[order_in] as usize;
                order_in += 1;
                order_count[root[self.node[i] as usize] as usize] += 1;
            }
            while order_out < order_in && self.ts[orders[order_out] as usize] <= t - orders_ms {
                let i = orders[order_out] as usize;
                order_out += 1;
                let c = &mut order_count[root[self.node[i] as usize] as usize];
                *c = c.saturating_sub(1);
            }
            prev_t = Some(t);
            let mut p = SeriesPoint {
                at: t,
                ..SeriesPoint::default()
            };
            for r in 0..n {
                if root[r] as usize != r || first[r] > t {
                    continue;
                }
                let f = Features {
                    follows: follow[r],
                    subscribed: subscribe[r],
                    in_group: in_groups[r] > 0,
                    engagement_30d: u32::try_from(engagement[r]).unwrap_or(u32::MAX),
                    orders_180d: order_count[r],
                };
                let l = layer_of(&f, rules);
                p.counts.add(l);
                match prev_layer[r] {
                    u8::MAX => p.new += 1,
                    was if (l as u8) > was => p.up += 1,
                    was if (l as u8) < was => p.down += 1,
                    _ => p.stayed += 1,
                }
                prev_layer[r] = l as u8;
            }
            out.push(p);
        }
        out
    }

    /// One fan's layer as of `as_of`, with the numbers behind it (see [`crate::explain`]) and
    /// its latest `timeline_len` events, newest first.
    pub(crate) fn explain(
        &self,
        graph: &IdentityGraph,
        rules: &Rules,
        fan: FanId,
        as_of: Millis,
        timeline_len: usize,
    ) -> Option<Explanation> {
        let nodes = graph.nodes_of(fan);
        if nodes.is_empty() {
            return None;
        }
        let a = self.acc(rules, as_of);
        let (mut follow, mut subscribe) = (Toggle::NONE, Toggle::NONE);
        let mut groups: HashMap<u32, Toggle> = HashMap::new();
        let mut f = Features::default();
        let mut breakdown: HashMap<&'static str, (u32, u32)> = HashMap::new();
        // The fan's events at or before `as_of`, in arrival order (ties in time go to the
        // later arrival, as everywhere).
        let mut seen: Vec<u32> = Vec::new();
        use CatalogueType as T;
        for i in self.events_of(&nodes) {
            let i = i as usize;
            if self.ts[i] > as_of {
                continue;
            }
            seen.push(i as u32);
            let (ts, kind, val) = (self.ts[i], self.kind[i], self.val[i]);
            if ts > a.engagement_from {
                let w = weight(rules, kind, val);
                if let (true, Some(t)) = (w > 0, T::ALL.get(kind as usize)) {
                    let e = breakdown.entry(t.as_str()).or_default();
                    e.0 += 1;
                    e.1 = e.1.saturating_add(w);
                    f.engagement_30d = f.engagement_30d.saturating_add(w);
                }
            }
            match kind {
                k if k == T::Follow as u8 => follow.set(ts, true),
                k if k == T::Unfollow as u8 => follow.set(ts, false),
                k if k == T::Subscribe as u8 => subscribe.set(ts, true),
                k if k == T::Unsubscribe as u8 => subscribe.set(ts, false),
                k if k == T::GroupJoin as u8 || k == T::GroupLeave as u8 => groups
                    .entry(val)
                    .or_insert(Toggle::NONE)
                    .set(ts, k == T::GroupJoin as u8),
                k if k == T::Order as u8 && ts > a.orders_from => f.orders_180d += 1,
                _ => {}
            }
        }
        if seen.is_empty() {
            return None;
        }
        f.follows = follow.on;
        f.subscribed = subscribe.on;
        f.in_group = groups.values().any(|t| t.on);
        let layer = layer_of(&f, rules);
        let mut engagement: Vec<EngagementPart> = breakdown
            .into_iter()
            .map(|(t, (count, points))| EngagementPart {
                r#type: t,
                count,
                points,
            })
            .collect();
        engagement.sort_by(|a, b| b.points.cmp(&a.points).then(a.r#type.cmp(b.r#type)));
        let checks = crate::explain::checks(&f, rules);
        let why = crate::explain::render(&checks, rules, &engagement);
        // Newest first by event time; equal times, the later arrival first.
        seen.sort_unstable_by_key(|&i| std::cmp::Reverse((self.ts[i as usize], i)));
        seen.truncate(timeline_len);
        let timeline = seen
            .into_iter()
            .map(|i| TimelineEntry {
                ts: self.ts[i as usize],
                r#type: self.type_name(i as usize).to_string(),
                domain: self.domain(i as usize),
            })
            .collect();
        Some(Explanation {
            layer,
            label: layer.label_zh(),
            as_of,
            why,
            checks,
            features: f,
            engagement,
            timeline,
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct EngagementPart {
    pub r#type: &'static str,
    pub count: u32,
    pub points: u32,
}

/// One event of a fan's timeline.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineEntry {
    #[serde(serialize_with = "siyu_domain::time::rfc3339")]
    pub ts: Millis,
    /// The event's type: a catalogue name, or a custom event's own `x_...` name.
    pub r#type: String,
    pub domain: Domain,
}

/// A fan's layer and why.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub layer: Layer,
    /// 潜在粉丝 / 路人粉丝 / 好感粉丝 / 真爱粉丝.
    pub label: &'static str,
    #[serde(serialize_with = "siyu_domain::time::rfc3339")]
    pub as_of: Millis,
    /// `checks` in words (see [`crate::explain::render`]).
    pub why: String,
    /// The layer rules in order as `features` met them, down to the one that held.
    pub checks: Vec<crate::explain::Check>,
    pub features: Features,
    /// What the engagement score is made of, biggest first.
    pub engagement: Vec<EngagementPart>,
    /// The fan's latest events across the three domains by event time, newest first (equal
    /// times: the later arrival first).
    pub timeline: Vec<TimelineEntry>,
}

/// Fans moving between layers from one instant to another. `from` has a fifth row, `new`, for
/// fans that did not exist at the first instant. Serialized with labeled rows:
/// `{"from", "to", "rows": [{"from": "potential", "to": {"potential": n, ...}}, ..., {"from":
/// "new", ...}], "at_from", "at_to"}`.
#[derive(Debug, Clone)]
pub struct Flow {
    pub from: Millis,
    pub to: Millis,
    /// `matrix[i][j]`: fans in layer i at `from` (i = 4: new) and layer j at `to`.
    pub matrix: [[u64; 4]; 5],
    pub at_from: LayerCounts,
    pub at_to: LayerCounts,
}

/// Fans per layer at one instant of a series, and how they moved since the one before (for
/// the first instant, every fan is `new`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SeriesPoint {
    #[serde(serialize_with = "siyu_domain::time::rfc3339")]
    pub at: Millis,
    pub counts: LayerCounts,
    pub up: u64,
    pub down: u64,
    pub stayed: u64,
    pub new: u64,
}

/// One row of a flow: where fans that were in `from` are now.
#[derive(Debug, Clone, Serialize)]
pub struct FlowRow {
    pub from: &'static str,
    pub to: LayerCounts,
}

impl Flow {
    /// The row labels: the four layers, then `new`.
    pub const ROWS: [&'static str; 5] = ["potential", "passerby", "favorable", "true_love", "new"];

    pub fn rows(&self) -> Vec<FlowRow> {
        self.matrix
            .iter()
            .zip(Self::ROWS)
            .map(|(row, from)| FlowRow {
                from,
                to: LayerCounts {
                    potential: row[0],
                    passerby: row[1],
                    favorable: row[2],
                    true_love: row[3],
                },
            })
            .collect()
    }

    /// Fans that moved up (new fans not counted), down, or stayed.
    pub fn moves(&self) -> (u64, u64, u64) {
        let (mut up, mut down, mut same) = (0, 0, 0);
        for (i, row) in self.matrix.iter().take(4).enumerate() {
            for (j, n) in row.iter().enumerate() {
                match j.cmp(&i) {
                    std::cmp::Ordering::Greater => up += n,
                    std::cmp::Ordering::Less => down += n,
                    std::cmp::Ordering::Equal => same += n,
                }
            }
        }
        (up, down, same)
    }
}

impl Serialize for Flow {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let (up, down, same) = self.moves();
        let mut st = s.serialize_struct("Flow", 8)?;
        st.serialize_field("from", &siyu_domain::time::format_rfc3339(self.from))?;
        st.serialize_field("to", &siyu_domain::time::format_rfc3339(self.to))?;
        st.serialize_field("rows", &self.rows())?;
        st.serialize_field("at_from", &self.at_from)?;
        st.serialize_field("at_to", &self.at_to)?;
        st.serialize_field("moved_up", &up)?;
        st.serialize_field("moved_down", &down)?;
        st.serialize_field("stayed", &same)?;
        st.end()
    }
}

pub(crate) fn flow(a: &Snapshot, b: &Snapshot) -> Flow {
    let mut matrix = [[0u64; 4]; 5];
    for (i, to) in b.layers.iter().enumerate() {
        if let Some(to) = to {
            let from = a.layers.get(i).copied().flatten().map_or(4, |l| l as usize);
            matrix[from][*to as usize] += 1;
        }
    }
    Flow {
        from: a.as_of,
        to: b.as_of,
        matrix,
        at_from: a.counts(),
        at_to: b.counts(),
    }
}

impl crate::snapshot::Snap for Columns {
    fn put(&self, w: &mut crate::snapshot::Writer) {
        w.put(&self.ts);
        w.put(&self.node);
        w.put(&self.kind);
        w.put(&self.val);
        w.put(&self.kinds);
        w.put(&self.groups);
        w.put(&self.custom_names);
        w.put(&self.custom_domain);
        w.put(&self.toggles);
        w.put(&self.orders);
        w.put(&self.days);
        w.put(&self.day_keys);
        w.put(&self.first_ts);
        w.put(&self.by_node);
        w.put(&self.first_idx);
        w.put(&self.node_kinds);
        w.put(&self.max_ts);
    }
    /// The name indexes are rebuilt from the names.
    fn take(r: &mut crate::snapshot::Reader<'_>) -> Result<Self, crate::snapshot::SnapshotError> {
        fn index(names: &[String]) -> HashMap<String, u32> {
            names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.clone(), i as u32))
                .collect()
        }
        let (ts, node, kind, val, kinds) = (r.take()?, r.take()?, r.take()?, r.take()?, r.take()?);
        let groups: Vec<String> = r.take()?;
        let custom_names: Vec<String> = r.take()?;
        let (custom_domain, toggles, orders) = (r.take()?, r.take()?, r.take()?);
        let days: Vec<Vec<Vec<u32>>> = r.take()?;
        let day_keys: Vec<i64> = r.take()?;
        // What `days_between` and `push` rely on: one key per day, in order, every slot there.
        if days.len() != day_keys.len()
            || day_keys.windows(2).any(|w| w[0] >= w[1])
            || days.iter().any(|d| d.len() != KIND_SLOTS)
        {
            return Err(r.malformed());
        }
        let mut cols = Columns {
            ts,
            node,
            kind,
            val,
            kinds,
            group_index: index(&groups),
            groups,
            custom_index: index(&custom_names),
            custom_names,
            custom_domain,
            toggles,
            orders,
            days,
            day_keys,
            first_ts: r.take()?,
            by_node: r.take()?,
            states_by_node: Vec::new(),
            ordered_until: Vec::new(),
            first_idx: r.take()?,
            node_kinds: r.take()?,
            max_ts: r.take()?,
        };
        cols.derive_node_indexes();
        Ok(cols)
    }
}

#[cfg(test)]
mod tests {
    use crate::TenantEngine;
    use crate::identity::FanId;
    use proptest::prelude::*;
    use siyu_domain::time::{MS_PER_DAY, parse_rfc3339};
    use siyu_domain::{Layer, parse_event};

    /// Day 0 is 2026-09-01; events at noon.
    fn day(d: i64) -> i64 {
        parse_rfc3339("2026-09-01T12:00:00Z").unwrap() + d * MS_PER_DAY
    }

    struct T {
        e: TenantEngine,
        seq: i64,
    }

    impl T {
        fn new() -> T {
            T {
                e: TenantEngine::new(),
                seq: 0,
            }
        }

        fn ev(&mut self, who: &str, ty: &str, d: i64, props: &str) -> &mut T {
            self.seq += 1;
            let ts = siyu_domain::time::format_rfc3339(day(d));
            let props = if props.is_empty() {
                "{}".to_string()
            } else {
                props.to_string()
            };
            let domain = if ty.starts_with("x_") {
                r#","domain":"private""#
            } else {
                ""
            };
            let text = format!(
                r#"{{"id":"{}","type":"{ty}","ts":"{ts}","identities":{{"douyin_open_id":"{who}"}},"props":{props}{domain}}}"#,
                self.seq
            );
            let e = parse_event(&text, day(10_000)).unwrap();
            self.e.apply(self.seq, &e);
            self
        }

        fn layer(&self, who: &str, d: i64) -> Option<Layer> {
            let fan = self
                .e
                .identities()
                .lookup(siyu_domain::IdentityKind::DouyinOpenId, who)[0];
            self.e.explain(fan, day(d), 0).map(|x| x.layer)
        }
    }

    #[test]
    fn an_event_years_before_the_others_adds_one_day_to_the_index() {
        let mut t = T::new();
        for d in 0..30 {
            t.ev("p", "video_like", d, "");
        }
        assert_eq!(t.e.columns.days.len(), 30);
        // Early 2000, 26 years before the rest: one day more, not 9,700 empty ones.
        t.ev("q", "video_like", -9_700, "");
        t.ev("q", "video_like", 15, "");
        let cols = &t.e.columns;
        assert_eq!((cols.days.len(), cols.day_keys.len()), (31, 31));
        assert!(cols.days.capacity() < 64, "{}", cols.days.capacity());
        assert_eq!(cols.day_keys[0], day(-9_700).div_euclid(MS_PER_DAY));
        assert!(cols.day_keys.windows(2).all(|w| w[0] < w[1]));
        // Windows still read exactly their days.
        assert_eq!(cols.days_between(day(-9_701), day(-9_699)).count(), 1);
        assert_eq!(cols.days_between(day(-9_000), day(-1)).count(), 0);
        assert_eq!(cols.days_between(day(10), day(19)).count(), 10);
        assert_eq!(cols.days_between(day(40), day(50)).count(), 0);
        assert_eq!(t.layer("q", -9_700), Some(Layer::Potential));
    }

    #[test]
    fn the_default_rules_in_order() {
        let mut t = T::new();
        t.ev("p", "video_like", 0, "");
        assert_eq!(t.layer("p", 0), Some(Layer::Potential));
        t.ev("p", "follow", 1, "");
        assert_eq!(t.layer("p", 1), Some(Layer::Passerby));
        for _ in 0..2 {
            t.ev("p", "private_message_in", 2, "");
        }
        t.ev("p", "live_watch", 2, r#"{"duration_s": 650}"#); // ⌊650/300⌋ = 2
        assert_eq!(t.layer("p", 2), Some(Layer::Favorable), "4+4+2 = 10");
        t.ev("p", "order", 3, r#"{"order_id":"1","amount":10}"#);
        assert_eq!(
            t.layer("p", 3),
            Some(Layer::TrueLove),
            "1 order and engagement 10"
        );
        // Windows slide: 30 days later the engagement is gone; one order is not enough.
        assert_eq!(t.layer("p", 33), Some(Layer::Passerby));
        t.ev("p", "order", 40, r#"{"order_id":"2","amount":10}"#);
        assert_eq!(
            t.layer("p", 40),
            Some(Layer::TrueLove),
            "two orders in 180 days"
        );
        assert_eq!(
            t.layer("p", 184),
            Some(Layer::Passerby),
            "the first order left the window"
        );
        t.ev("p", "unfollow", 190, "");
        assert_eq!(t.layer("p", 190), Some(Layer::Potential));
        assert_eq!(t.layer("p", -1), None, "not a fan before the first event");
    }

    #[test]
    fn groups_subscriptions_and_equal_times() {
        let mut t = T::new();
        t.ev("g", "follow", 0, "")
            .ev("g", "group_join", 0, r#"{"group_id":"a"}"#);
        assert_eq!(t.layer("g", 0), Some(Layer::Favorable), "in a group");
        for _ in 0..10 {
            t.ev("g", "group_message", 1, r#"{"group_id":"a"}"#);
        }
        assert_eq!(
            t.layer("g", 1),
            Some(Layer::TrueLove),
            "in a group and engagement 20"
        );
        t.ev("g", "group_join", 2, r#"{"group_id":"b"}"#);
        t.ev("g", "group_leave", 2, r#"{"group_id":"a"}"#);
        assert_eq!(t.layer("g", 2), Some(Layer::TrueLove), "still in b");
        t.ev("g", "group_leave", 3, r#"{"group_id":"b"}"#);
        assert_eq!(
            t.layer("g", 3),
            Some(Layer::Favorable),
            "engagement 20 ≥ 10, not in a group"
        );
        // Equal timestamps: the later arrival wins.
        t.ev("s", "subscribe", 5, "")
            .ev("s", "follow", 5, "")
            .ev("s", "unfollow", 5, "");
        assert_eq!(t.layer("s", 5), Some(Layer::Potential));
        t.ev("s", "follow", 5, "");
        assert_eq!(
            t.layer("s", 5),
            Some(Layer::Favorable),
            "follows and subscribed"
        );
        // A late-arriving older event does not override a newer state.
        t.ev("s", "unfollow", 4, "");
        assert_eq!(t.layer("s", 6), Some(Layer::Favorable));
    }

    #[test]
    fn snapshot_counts_flow_and_explanation() {
        let mut t = T::new();
        t.ev("a", "follow", 0, "");
        t.ev("b", "video_view", 0, "");
        t.ev("c", "follow", 5, "").ev("c", "subscribe", 5, "");
        let s = t.e.layers_as_of(day(1));
        let c = s.counts();
        assert_eq!(
            (c.potential, c.passerby, c.favorable, c.true_love),
            (1, 1, 0, 0)
        );
        let f = t.e.flow(day(1), day(6));
        assert_eq!(
            f.matrix[Layer::Passerby as usize][Layer::Passerby as usize],
            1
        );
        assert_eq!(
            f.matrix[Layer::Potential as usize][Layer::Potential as usize],
            1
        );
        assert_eq!(f.matrix[4][Layer::Favorable as usize], 1, "c is new");
        assert_eq!(f.at_to.total(), 3);

        for _ in 0..3 {
            t.ev("c", "video_comment", 6, "");
        }
        t.ev("c", "live_comment", 6, "");
        let fan =
            t.e.identities()
                .lookup(siyu_domain::IdentityKind::DouyinOpenId, "c")[0];
        let x = t.e.explain(fan, day(6), 3).unwrap();
        assert_eq!(x.features.engagement_30d, 3 * 3 + 2 + 4);
        assert_eq!(
            x.why,
            "好感粉丝 Favorable: follows; \
             not 真爱粉丝 (orders_180d = 0 < 2, orders_180d = 0 < 1, not in a fan group); \
             engagement_30d = 15 ≥ 10; \
             engagement_30d: 3 × video_comment = 9, 1 × subscribe = 4, 1 × live_comment = 2"
        );
        assert_eq!(x.timeline.len(), 3);
        assert!(t.e.explain(FanId(999), day(6), 3).is_none());
    }

    #[test]
    fn a_passerby_with_one_order_is_told_so() {
        let mut t = T::new();
        t.ev("p", "follow", 0, "")
            .ev("p", "order", 1, r#"{"order_id":"1","amount":10}"#)
            .ev("p", "private_message_in", 2, "");
        let fan =
            t.e.identities()
                .lookup(siyu_domain::IdentityKind::DouyinOpenId, "p")[0];
        let x = t.e.explain(fan, day(3), 0).unwrap();
        assert_eq!(x.layer, Layer::Passerby);
        assert_eq!(
            x.why,
            "路人粉丝 Passerby: follows; \
             not 真爱粉丝 (orders_180d = 1 < 2, orders_180d = 1 ≥ 1 but engagement_30d = 4 < 10, not in a fan group); \
             not 好感粉丝 (engagement_30d = 4 < 10, not subscribed, not in a fan group); \
             engagement_30d: 1 × private_message_in = 4"
        );
        let v = serde_json::to_value(&x).unwrap();
        assert_eq!(v["features"]["orders_180d"], 1);
        assert_eq!(
            v["checks"][1]["any_of"][0][0]["value"], 1,
            "the same order, in JSON"
        );
        assert_eq!(v["as_of"], "2026-09-04T12:00:00.000Z");
    }

    #[test]
    fn the_timeline_is_the_latest_events_by_event_time_newest_first() {
        let mut t = T::new();
        // Arrival order is not time order: a late import of older events, two events at
        // one instant, custom events with their own names.
        t.ev("c", "follow", 5, "")
            .ev("c", "x_page", 7, "")
            .ev("c", "video_like", 1, "")
            .ev("c", "x_identify", 6, "")
            .ev("c", "video_comment", 6, "")
            .ev("c", "order", 9, r#"{"order_id":"1","amount":1}"#)
            .ev("c", "video_share", 2, "");
        let fan =
            t.e.identities()
                .lookup(siyu_domain::IdentityKind::DouyinOpenId, "c")[0];
        let x = t.e.explain(fan, day(8), 4).unwrap();
        let got: Vec<(i64, &str)> = x
            .timeline
            .iter()
            .map(|e| (e.ts, e.r#type.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (day(7), "x_page"),
                (day(6), "video_comment"),
                (day(6), "x_identify"),
                (day(5), "follow"),
            ],
            "newest first, equal times the later arrival first, nothing after as_of"
        );
        assert_eq!(x.timeline[0].domain, siyu_domain::Domain::Private);
        let all = t.e.explain(fan, day(8), 100).unwrap();
        assert_eq!(all.timeline.len(), 6);
        assert_eq!(
            all.timeline[5].r#type, "video_like",
            "the oldest comes last"
        );
        let v = serde_json::to_value(&x).unwrap();
        assert_eq!(
            v["timeline"][0],
            serde_json::json!({"ts": "2026-09-08T12:00:00.000Z", "type": "x_page", "domain": "private"})
        );
    }

    proptest! {
        /// The one-pass snapshot and the per-fan explanation agree for any stream.
        #[test]
        fn snapshot_agrees_with_explanations(
            evs in proptest::collection::vec((0u8..4, 0usize..9, 0i64..60), 1..120),
            at in 0i64..70,
        ) {
            const TYPES: [(&str, &str); 9] = [
                ("follow", ""), ("unfollow", ""), ("subscribe", ""), ("private_message_in", ""),
                ("order", r#"{"order_id":"x","amount":1}"#), ("group_join", r#"{"group_id":"g"}"#),
                ("group_leave", r#"{"group_id":"g"}"#), ("live_watch", r#"{"duration_s":900}"#),
                ("group_message", r#"{"group_id":"g"}"#),
            ];
            let mut t = T::new();
            for (who, ty, d) in &evs {
                let (name, props) = TYPES[*ty];
                t.ev(&format!("f{who}"), name, *d, props);
            }
            let snap = t.e.layers_as_of(day(at));
            for who in 0..4u8 {
                let found = t.e.identities().lookup(siyu_domain::IdentityKind::DouyinOpenId, &format!("f{who}"));
                let Some(fan) = found.first() else { continue };
                let node = t.e.identities().nodes_of(*fan)[0] as usize;
                let explained = t.e.explain(*fan, day(at), 0).map(|x| x.layer);
                prop_assert_eq!(snap.layers[node], explained);
            }
            // Split over several parts, the answer is the same.
            let split = t.e.columns.snapshot_in_parts(t.e.identities(), t.e.rules(), day(at), 3);
            prop_assert_eq!(split.layers, snap.layers);
        }
    }

    #[test]
    fn a_series_says_what_a_snapshot_per_instant_and_a_flow_per_step_say() {
        let mut t = T::new();
        // A seeded mix of every kind of event the rules read, over 200 days, 30 people; one
        // event links two of them (a merge).
        let mut seed: u64 = 0x5eed;
        let mut next = |m: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % m
        };
        let kinds = [
            ("follow", ""),
            ("unfollow", ""),
            ("subscribe", ""),
            ("unsubscribe", ""),
            ("group_join", r#"{"group_id":"g1"}"#),
            ("group_leave", r#"{"group_id":"g1"}"#),
            ("group_join", r#"{"group_id":"g2"}"#),
            ("video_like", ""),
            ("video_comment", ""),
            ("private_message_in", r#"{"text":"hi"}"#),
            ("live_watch", r#"{"duration_s":1900}"#),
            ("order", r#"{"order_id":"o","amount":10}"#),
            ("video_view", ""),
        ];
        for _ in 0..1200 {
            let who = format!("p{}", next(30));
            let (ty, props) = kinds[next(kinds.len() as u64) as usize];
            let d = next(200) as i64;
            t.ev(&who, ty, d, props);
        }
        // A person known by phone only (they follow and order) turns out to be p1.
        let mut by_phone = |ty: &str, d: i64, ids: &str| {
            t.seq += 1;
            let text = format!(
                r#"{{"id":"{}","type":"{ty}","ts":"{}","identities":{ids},"props":{{"order_id":"x","amount":5}}}}"#,
                t.seq,
                siyu_domain::time::format_rfc3339(day(d))
            );
            t.e.apply(t.seq, &parse_event(&text, day(10_000)).unwrap());
        };
        by_phone("follow", 10, r#"{"phone":"13800138000"}"#);
        by_phone("order", 130, r#"{"phone":"13800138000"}"#);
        by_phone(
            "video_view",
            50,
            r#"{"douyin_open_id":"p1","phone":"13800138000"}"#,
        );
        let g = t.e.identities();
        let phone = g.current(g.lookup(siyu_domain::IdentityKind::Phone, "+8613800138000")[0]);
        let p1 = g.current(g.lookup(siyu_domain::IdentityKind::DouyinOpenId, "p1")[0]);
        assert_eq!(phone, p1, "merged");
        let instants: Vec<i64> = (120..200).map(|d| day(d) + (d % 3) * 3_600_000).collect();
        let series = t.e.layer_series(&instants);
        assert_eq!(series.len(), instants.len());
        for (k, p) in series.iter().enumerate() {
            let at = instants[k];
            assert_eq!(
                p.counts,
                t.e.layers_as_of(at).counts(),
                "counts as of day {}",
                k + 120
            );
            if k > 0 {
                let f = t.e.flow(instants[k - 1], at);
                let (up, down, stayed) = f.moves();
                let new: u64 = f.matrix[4].iter().sum();
                assert_eq!(
                    (p.up, p.down, p.stayed, p.new),
                    (up, down, stayed, new),
                    "moves to day {}",
                    k + 120
                );
            } else {
                assert_eq!(p.new, p.counts.total());
            }
        }
        assert!(series.iter().any(|p| p.up > 0) && series.iter().any(|p| p.down > 0));
        assert!(t.e.layer_series(&[]).is_empty());
    }
}
