//! The identity graph: every identity value resolves to a fan, and one person is one fan.
//!
//! # How an event is resolved
//! The fans already holding any of the event's values are the *candidates*. They are taken in
//! order — fans reached through one-per-person ids (open id, union id, WeCom id, WeChat union id,
//! user id) first, then through lead ids, phones, emails and anonymous ids, older fans first —
//! and merged into one cluster, **unless** a merge would give the cluster two different values
//! of a one-per-person kind. A shared family phone would do exactly that: two open ids, two
//! people. Such a candidate is kept apart and the pair is recorded as a *possible duplicate* for
//! an operator to confirm or mark distinct. New values are attached to the cluster; a shared
//! weak value (phone, email, ...) is then held by both fans, so a lookup finds both.
//!
//! Because no value of a one-per-person kind is ever held by two fans, "would this merge
//! give a fan two values of one kind?" is just `mask(a) & mask(b) != 0`, where the mask says
//! which one-per-person kinds a fan holds. The guard goes one step further: once a value is
//! known to be shared (a family phone held by two fans), it no longer joins two fans that both
//! hold accounts — a mother's open id and her son's WeCom contact share that phone exactly as
//! one person's two accounts would. Operators can merge anything by hand (a person with two
//! Douyin accounts); the guard only governs automatic merges.
//!
//! # Aliases
//! An alias event (Segment's `alias(previousId, userId)`) is the sender saying two ids are one
//! person, so after its identities resolve, the fans holding the previous id as a user id or
//! as an anonymous id are merged into that fan like an operator's confirm: past the guard,
//! but never across an operator's *distinct* (see [`IdentityGraph::resolve_alias`]).
//!
//! # Ids and replay
//! A fan's id is the arrival sequence number of the event that created it, so ids do not
//! depend on anything but the log: replaying the log (and the operators' decisions, each at
//! its position in the log) rebuilds exactly the same fans. Merged-away ids keep resolving to
//! the fan that absorbed them (union-find, the older fan survives). Undoing a merge is a
//! *distinct* decision placed just before the merging event, followed by a replay.
//!
//! # Memory
//! Values are interned per kind in one byte arena with `u32` end offsets and a `HashTable` of
//! indices (no per-value allocation); fans are three parallel vectors. See
//! [`IdentityGraph::heap_bytes`].

use std::collections::HashMap;
use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};
use serde::Serialize;
use siyu_domain::{Identities, IdentityKind, Millis};

/// A fan's stable id: the arrival sequence number of the event that created it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct FanId(pub i64);

/// Candidates are considered in this order of the kind that reached them.
const PRIORITY: [IdentityKind; 9] = [
    IdentityKind::DouyinOpenId,
    IdentityKind::DouyinUnionId,
    IdentityKind::WecomExternalId,
    IdentityKind::WechatUnionId,
    IdentityKind::UserId,
    IdentityKind::LeadId,
    IdentityKind::Phone,
    IdentityKind::Email,
    IdentityKind::AnonymousId,
];

fn priority(kind: IdentityKind) -> u8 {
    PRIORITY.iter().position(|k| *k == kind).unwrap_or(0) as u8
}

fn bit(kind: IdentityKind) -> u8 {
    if kind.one_per_person() {
        1 << priority(kind)
    } else {
        0
    }
}

/// Owner word: a node index, or `MULTI | i` for a value held by several fans (`multi[i]`).
const MULTI: u32 = 1 << 31;
const NO_VALUE: u32 = u32::MAX;

/// The interned values of one kind.
#[derive(Debug, Default)]
struct Values {
    /// All values, back to back.
    bytes: Vec<u8>,
    /// `ends[i]` is where value `i` ends in `bytes` (it starts where value `i-1` ends).
    ends: Vec<u32>,
    /// Value indices, hashed by their bytes.
    table: HashTable<u32>,
    /// Who holds each value (see [`MULTI`]).
    owner: Vec<u32>,
}

impl Values {
    fn get(&self, i: u32) -> &[u8] {
        let end = self.ends[i as usize] as usize;
        let start = if i == 0 {
            0
        } else {
            self.ends[i as usize - 1] as usize
        };
        &self.bytes[start..end]
    }

    fn find(&self, hasher: &DefaultHashBuilder, v: &[u8]) -> Option<u32> {
        let h = hasher.hash_one(v);
        self.table.find(h, |&i| self.get(i) == v).copied()
    }

    fn insert(&mut self, hasher: &DefaultHashBuilder, v: &[u8], owner: u32) -> u32 {
        let i = self.ends.len() as u32;
        self.bytes.extend_from_slice(v);
        self.ends.push(self.bytes.len() as u32);
        self.owner.push(owner);
        let h = hasher.hash_one(v);
        let Values {
            table, bytes, ends, ..
        } = self;
        table.insert_unique(h, i, |&j| {
            let end = ends[j as usize] as usize;
            let start = if j == 0 {
                0
            } else {
                ends[j as usize - 1] as usize
            };
            hasher.hash_one(&bytes[start..end])
        });
        i
    }
}

/// Why two fans were merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeCause {
    /// An event carried identities of both.
    Event,
    /// An operator confirmed a possible duplicate.
    Operator,
    /// An alias event said the fan holding its previous id (a user id or an anonymous id) is
    /// the fan of its identities.
    Alias,
}

#[derive(Debug, Clone)]
struct MergeRec {
    into: u32,
    from: u32,
    seq: i64,
    ts: Millis,
    kind: IdentityKind,
    value: u32,
    cause: MergeCause,
}

#[derive(Debug, Clone)]
struct DupRec {
    a: u32,
    b: u32,
    seq: i64,
    ts: Millis,
    kind: IdentityKind,
    value: u32,
}

/// One merge, as shown to operators.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Merge {
    /// The fan that survived (the older one).
    pub into: FanId,
    /// The fan that was absorbed; its id keeps resolving to `into`.
    pub from: FanId,
    /// The linking event's sequence number (for an operator merge: the log position).
    pub seq: i64,
    #[serde(serialize_with = "siyu_domain::time::rfc3339")]
    pub ts: Millis,
    pub cause: MergeCause,
    /// The identity value that linked them (none for an operator merge).
    pub via: Option<(IdentityKind, String)>,
}

/// Two fans that share a phone, email or other value but were kept apart because they hold
/// different one-per-person ids.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PossibleDuplicate {
    pub a: FanId,
    pub b: FanId,
    /// The event that found it.
    pub seq: i64,
    #[serde(serialize_with = "siyu_domain::time::rfc3339")]
    pub ts: Millis,
    pub via: (IdentityKind, String),
}

/// An operator's decision about two fans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// They are one person: merge them, even against the guard.
    Confirm { a: FanId, b: FanId },
    /// They are different people: never merge them automatically, never suggest them again.
    Distinct { a: FanId, b: FanId },
}

/// Why a decision cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecisionError {
    #[error("no fan {0}")]
    UnknownFan(i64),
    #[error("fans {0} and {1} are already one fan")]
    AlreadyOne(i64, i64),
    #[error("fans {0} and {1} were marked distinct; they cannot be merged")]
    MarkedDistinct(i64, i64),
}

#[derive(Debug, Default)]
pub struct IdentityGraph {
    hasher: DefaultHashBuilder,
    /// One interner per identity kind, indexed by `IdentityKind as usize`.
    values: Vec<Values>,
    /// Owner lists of values held by several fans.
    multi: Vec<Vec<u32>>,
    /// Union-find parent of each node; a root is its own parent.
    parent: Vec<u32>,
    /// Which one-per-person kinds the fan holds (valid at roots).
    mask: Vec<u8>,
    /// The creating event's sequence number: the fan's id. Increasing with the node index.
    created: Vec<i64>,
    roots: u64,
    merges: Vec<MergeRec>,
    /// Possible duplicates by (older node, newer node) at the time they were found.
    dups: HashMap<(u32, u32), DupRec>,
    /// Operator "distinct" partners, by root; moved along on union.
    distinct: HashMap<u32, Vec<u32>>,
    /// Values recorded as shared by several people, by text (for values not interned yet)...
    shared_text: std::collections::HashSet<(IdentityKind, Box<str>)>,
    /// ...and by index, once interned.
    shared: std::collections::HashSet<(IdentityKind, u32)>,
    /// Merges made through a shareable value between two fans that both held accounts, by
    /// that value: if the value turns out to be shared, they were wrong.
    soft: HashMap<(IdentityKind, u32), u32>,
    /// Values found shared after a soft merge through them; see [`IdentityGraph::take_corrections`].
    corrections: Vec<(IdentityKind, String)>,
    /// Every value ever put in `corrections`: until the graph is rebuilt without the merge,
    /// later events find the same value again, and it is reported once.
    reported: std::collections::HashSet<(IdentityKind, String)>,
    /// The nodes absorbed into each root (only roots that absorbed any), moved along on union:
    /// a fan's nodes are its root plus these.
    members: HashMap<u32, Vec<u32>>,
    /// Roots absorbed by the last `resolve` or `decide` (for the layer engine to drop).
    absorbed: Vec<u32>,
    /// Scratch for `resolve`, kept to avoid an allocation per event.
    scratch: Vec<(u8, i64, u32, IdentityKind, u32)>,
}

impl IdentityGraph {
    pub fn new() -> IdentityGraph {
        IdentityGraph {
            values: IdentityKind::ALL
                .iter()
                .map(|_| Values::default())
                .collect(),
            ..Default::default()
        }
    }

    fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let grand = self.parent[self.parent[x as usize] as usize];
            self.parent[x as usize] = grand;
            x = grand;
        }
        x
    }

    /// `find` without path compression, for readers.
    fn root(&self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            x = self.parent[x as usize];
        }
        x
    }

    pub(crate) fn node_of(&self, fan: FanId) -> Option<u32> {
        self.created.binary_search(&fan.0).ok().map(|i| i as u32)
    }

    /// The id a node was created with (for a root, the fan's id).
    pub(crate) fn fan_id(&self, node: u32) -> FanId {
        FanId(self.created[node as usize])
    }

    /// The owner list of a `MULTI` owner word.
    fn owners(&self, word: u32) -> &[u32] {
        &self.multi[(word & !MULTI) as usize]
    }

    /// The nodes holding a value.
    fn holders(&self, kind: IdentityKind, i: u32) -> &[u32] {
        let word = &self.values[kind as usize].owner[i as usize];
        if word & MULTI != 0 {
            self.owners(*word)
        } else {
            // A single owner word is the owning node itself.
            std::slice::from_ref(word)
        }
    }

    fn add_holder(&mut self, kind: IdentityKind, i: u32, node: u32) {
        let word = self.values[kind as usize].owner[i as usize];
        if word & MULTI != 0 {
            let list = &mut self.multi[(word & !MULTI) as usize];
            if !list.contains(&node) {
                list.push(node);
            }
        } else if word != node {
            let idx = self.multi.len() as u32;
            self.multi.push(vec![word, node]);
            self.values[kind as usize].owner[i as usize] = MULTI | idx;
        }
    }

    /// Whether a shareable value is known to be shared: held by several fans, or recorded as
    /// shared (a correction replayed from the store).
    fn is_shared(&self, kind: IdentityKind, i: u32) -> bool {
        self.values[kind as usize].owner[i as usize] & MULTI != 0
            || (!self.shared.is_empty() && self.shared.contains(&(kind, i)))
    }

    /// Records, before replay, that a value is shared by several people: it will never join
    /// two fans that both hold accounts.
    pub fn mark_shared(&mut self, kind: IdentityKind, value: &str) {
        match self.values[kind as usize].find(&self.hasher, value.as_bytes()) {
            Some(i) => {
                self.shared.insert((kind, i));
            }
            None => {
                self.shared_text.insert((kind, value.into()));
            }
        }
    }

    /// Values that turned out to be shared after a merge was made through them. The caller
    /// records each (as a `shared` fact) and replays, so the merge is undone from the start.
    pub fn take_corrections(&mut self) -> Vec<(IdentityKind, String)> {
        std::mem::take(&mut self.corrections)
    }

    fn is_distinct(&self, r1: u32, r2: u32) -> bool {
        if self.distinct.is_empty() {
            return false;
        }
        let Some(partners) = self.distinct.get(&r1) else {
            return false;
        };
        partners.iter().any(|&p| self.root(p) == r2)
    }

    /// Joins two roots; the older survives. Returns the survivor.
    #[allow(clippy::too_many_arguments)]
    fn union(
        &mut self,
        a: u32,
        b: u32,
        seq: i64,
        ts: Millis,
        kind: IdentityKind,
        value: u32,
        cause: MergeCause,
    ) -> u32 {
        let (keep, gone) = if a < b { (a, b) } else { (b, a) };
        self.parent[gone as usize] = keep;
        self.mask[keep as usize] |= self.mask[gone as usize];
        self.roots -= 1;
        if let Some(moved) = self.distinct.remove(&gone) {
            self.distinct.entry(keep).or_default().extend(moved);
        }
        let mut moved = self.members.remove(&gone).unwrap_or_default();
        moved.push(gone);
        self.members.entry(keep).or_default().extend(moved);
        self.absorbed.push(gone);
        self.merges.push(MergeRec {
            into: keep,
            from: gone,
            seq,
            ts,
            kind,
            value,
            cause,
        });
        keep
    }

    fn new_node(&mut self, seq: i64, mask: u8) -> u32 {
        let n = self.parent.len() as u32;
        debug_assert!(self.created.last().is_none_or(|&c| c < seq));
        self.parent.push(n);
        self.mask.push(mask);
        self.created.push(seq);
        self.roots += 1;
        n
    }

    /// Resolves an event's identities to one fan, creating or merging fans as the rules allow,
    /// and returns the fan (as an internal node index; see [`IdentityGraph::fan`]). `seq` must
    /// grow from call to call.
    pub fn resolve(&mut self, seq: i64, ts: Millis, ids: &Identities) -> u32 {
        self.resolve_linking(seq, ts, ids, None)
    }

    /// Resolves an alias event: its identities as [`IdentityGraph::resolve`] does, and then
    /// the fans holding `previous` as a user id or as an anonymous id (both, if both) are
    /// merged into that fan. The sender said they are one person, so — like an operator's
    /// confirm — the one-per-person guard does not hold the merge back (a fan may end with
    /// two user ids); fans an operator marked distinct are never merged (that is how an
    /// alias is undone). An anonymous id several fans hold does not say which of them is
    /// meant: the pairs become possible duplicates instead. A `previous` no fan holds is
    /// attached to the fan as an anonymous id, so the visitor's later events find it.
    ///
    /// Everything here depends on the graph and the event only, so a replay of the log
    /// links exactly the same fans; each merge is recorded with cause [`MergeCause::Alias`],
    /// the alias's `seq` and the previous id that linked.
    pub fn resolve_alias(&mut self, seq: i64, ts: Millis, ids: &Identities, previous: &str) -> u32 {
        self.resolve_linking(seq, ts, ids, Some(previous))
    }

    fn resolve_linking(
        &mut self,
        seq: i64,
        ts: Millis,
        ids: &Identities,
        previous: Option<&str>,
    ) -> u32 {
        let mut cands = std::mem::take(&mut self.scratch);
        cands.clear();
        let mut new_mask = 0u8;
        // Each identity's value index, looked up once (`None`: not seen before).
        let mut found = [None::<u32>; 16];
        for (n, id) in ids.iter().enumerate() {
            let vals = &self.values[id.kind as usize];
            match vals.find(&self.hasher, id.value().as_bytes()) {
                Some(i) => {
                    found[n] = Some(i);
                    for h in 0..self.holders(id.kind, i).len() {
                        let node = self.holders(id.kind, i)[h];
                        let r = self.find(node);
                        cands.push((priority(id.kind), self.created[r as usize], r, id.kind, i));
                    }
                }
                None => new_mask |= bit(id.kind),
            }
        }
        if cands.len() > 1 {
            cands.sort_unstable_by_key(|c| (c.0, c.1));
        }

        let mut cluster: Option<u32> = None;
        let mut mask = new_mask;
        let mut kept_apart: Vec<(u32, IdentityKind, u32)> = Vec::new();
        for &(_, _, cand, kind, value) in &cands {
            let cand = self.find(cand);
            if cluster == Some(cand) {
                continue;
            }
            let cand_mask = self.mask[cand as usize];
            // Same one-per-person kind on both sides: two people. And a value already known
            // to be shared (held by two fans: a family phone) is no evidence that two fans
            // holding accounts are one person.
            let weak = !kind.one_per_person();
            let shared = weak && self.is_shared(kind, value);
            let conflict = mask & cand_mask != 0
                || (shared && mask != 0 && cand_mask != 0)
                || cluster.is_some_and(|c| self.is_distinct(c, cand));
            if conflict {
                kept_apart.push((cand, kind, value));
                continue;
            }
            if weak && mask != 0 && cand_mask != 0 {
                *self.soft.entry((kind, value)).or_default() += 1;
            }
            mask |= cand_mask;
            cluster = Some(match cluster {
                None => cand,
                Some(c) => self.union(c, cand, seq, ts, kind, value, MergeCause::Event),
            });
        }
        // An alias: the holders of the previous id are this person too. Linked before any
        // fan is created, so a fan the alias joins is never one made by the alias itself
        // (undoing the merge names two fans that exist just before it).
        let mut unsure = Vec::new();
        let mut previous_known = false;
        if let Some(prev) = previous {
            (cluster, previous_known) =
                self.link_previous(cluster, &mut mask, prev, seq, ts, &mut unsure);
        }
        let fan = match cluster {
            Some(c) => {
                self.mask[c as usize] |= mask;
                c
            }
            None => self.new_node(seq, mask),
        };

        // Attach the event's values to the fan: new values belong to it; a known weak value
        // held only by fans kept apart is now held by this fan too.
        for (n, id) in ids.iter().enumerate() {
            let hasher = &self.hasher;
            let vals = &mut self.values[id.kind as usize];
            match found[n] {
                None => {
                    let i = vals.insert(hasher, id.value().as_bytes(), fan);
                    self.note_if_shared(id.kind, id.value(), i);
                }
                Some(i) if !id.kind.one_per_person() => {
                    let held = self
                        .holders(id.kind, i)
                        .iter()
                        .any(|&n| self.root(n) == fan);
                    if !held {
                        self.add_holder(id.kind, i, fan);
                    }
                }
                Some(_) => {}
            }
        }
        // An alias's previous id no fan held (not even through this event's identities):
        // the visitor's anonymous id, from now on this fan's.
        if let Some(prev) = previous.filter(|_| !previous_known) {
            let kind = IdentityKind::AnonymousId;
            if self.values[kind as usize]
                .find(&self.hasher, prev.as_bytes())
                .is_none()
            {
                let i = self.values[kind as usize].insert(&self.hasher, prev.as_bytes(), fan);
                self.note_if_shared(kind, prev, i);
            }
        }
        for (other, kind, value) in unsure {
            self.note_duplicate(fan, other, seq, ts, kind, value);
        }
        for &(_, kind, value) in &kept_apart {
            if !kind.one_per_person() && self.soft.contains_key(&(kind, value)) {
                let text = self.value_text(kind, value);
                if self.reported.insert((kind, text.clone())) {
                    self.corrections.push((kind, text));
                }
            }
        }
        for (other, kind, value) in kept_apart {
            self.note_duplicate(fan, other, seq, ts, kind, value);
        }
        self.scratch = cands;
        fan
    }

    /// The alias step of [`IdentityGraph::resolve_alias`]: merges the fan holding `previous`
    /// as a user id, then the fan holding it as an anonymous id, into `cluster` (the first
    /// becomes the cluster if there is none yet), adding their kinds to `mask`. An anonymous
    /// id held by several fans goes to `unsure` instead. Returns the cluster and whether any
    /// fan held `previous`.
    fn link_previous(
        &mut self,
        mut cluster: Option<u32>,
        mask: &mut u8,
        previous: &str,
        seq: i64,
        ts: Millis,
        unsure: &mut Vec<(u32, IdentityKind, u32)>,
    ) -> (Option<u32>, bool) {
        let mut known = false;
        for kind in [IdentityKind::UserId, IdentityKind::AnonymousId] {
            let Some(value) = self.values[kind as usize].find(&self.hasher, previous.as_bytes())
            else {
                continue;
            };
            known = true;
            let mut roots: Vec<u32> = self.holders(kind, value).to_vec();
            for r in &mut roots {
                *r = self.find(*r);
            }
            roots.sort_unstable();
            roots.dedup();
            let [target] = roots[..] else {
                unsure.extend(roots.into_iter().map(|r| (r, kind, value)));
                continue;
            };
            if cluster == Some(target) || cluster.is_some_and(|c| self.is_distinct(c, target)) {
                continue;
            }
            *mask |= self.mask[target as usize];
            cluster = Some(match cluster {
                None => target,
                Some(c) => self.union(c, target, seq, ts, kind, value, MergeCause::Alias),
            });
        }
        (cluster, known)
    }

    /// A newly interned value recorded as shared before it was seen (a replayed `shared`
    /// fact) is shared from its first sight.
    fn note_if_shared(&mut self, kind: IdentityKind, value: &str, i: u32) {
        if !self.shared_text.is_empty()
            && self.shared_text.contains(&(kind, Box::<str>::from(value)))
        {
            self.shared.insert((kind, i));
        }
    }

    /// Records `fan` and `other` as a possible duplicate found through `value`, unless they
    /// are one fan or marked distinct. The first finding of a pair is kept.
    fn note_duplicate(
        &mut self,
        fan: u32,
        other: u32,
        seq: i64,
        ts: Millis,
        kind: IdentityKind,
        value: u32,
    ) {
        let other = self.find(other);
        if other != fan && !self.is_distinct(fan, other) {
            let key = (fan.min(other), fan.max(other));
            self.dups.entry(key).or_insert(DupRec {
                a: key.0,
                b: key.1,
                seq,
                ts,
                kind,
                value,
            });
        }
    }

    /// Whether a decision can be applied now, without applying it.
    pub fn check(&mut self, d: Decision) -> Result<(u32, u32), DecisionError> {
        let (a, b) = match d {
            Decision::Confirm { a, b } | Decision::Distinct { a, b } => (a, b),
        };
        let na = self.node_of(a).ok_or(DecisionError::UnknownFan(a.0))?;
        let nb = self.node_of(b).ok_or(DecisionError::UnknownFan(b.0))?;
        let (ra, rb) = (self.find(na), self.find(nb));
        if ra == rb {
            return Err(DecisionError::AlreadyOne(a.0, b.0));
        }
        if matches!(d, Decision::Confirm { .. }) && self.is_distinct(ra, rb) {
            return Err(DecisionError::MarkedDistinct(a.0, b.0));
        }
        Ok((ra, rb))
    }

    /// Applies an operator's decision at the current position of the log.
    pub fn decide(&mut self, d: Decision, seq: i64, ts: Millis) -> Result<(), DecisionError> {
        let (ra, rb) = self.check(d)?;
        match d {
            Decision::Confirm { .. } => {
                self.union(
                    ra,
                    rb,
                    seq,
                    ts,
                    IdentityKind::UserId,
                    NO_VALUE,
                    MergeCause::Operator,
                );
            }
            Decision::Distinct { .. } => {
                self.distinct.entry(ra).or_default().push(rb);
                self.distinct.entry(rb).or_default().push(ra);
            }
        }
        Ok(())
    }

    /// The current fan of a node index returned by [`IdentityGraph::resolve`].
    pub fn fan(&self, node: u32) -> FanId {
        self.fan_id(self.root(node))
    }

    /// Number of internal nodes (fans ever created, merged or not).
    pub fn node_count(&self) -> usize {
        self.parent.len()
    }

    /// The root node of a node.
    pub fn root_node(&self, node: u32) -> u32 {
        self.root(node)
    }

    /// The internal nodes that make up a fan now (itself and every fan merged into it).
    pub fn nodes_of(&self, fan: FanId) -> Vec<u32> {
        match self.node_of(fan) {
            Some(n) => self.nodes_of_root(self.root(n)),
            None => Vec::new(),
        }
    }

    /// Every fan id that resolves to `fan`: its own and those of the fans merged into it,
    /// ascending (empty for an unknown fan).
    pub fn ids_of(&self, fan: FanId) -> Vec<FanId> {
        let mut ids: Vec<FanId> = self
            .nodes_of(fan)
            .into_iter()
            .map(|n| self.fan_id(n))
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The nodes merged into root `root` (not the root itself), without allocating.
    pub(crate) fn members_of_root(&self, root: u32) -> &[u32] {
        self.members.get(&root).map_or(&[], Vec::as_slice)
    }

    /// The nodes of the fan whose root is `root`.
    pub fn nodes_of_root(&self, root: u32) -> Vec<u32> {
        let mut nodes = vec![root];
        if let Some(m) = self.members.get(&root) {
            nodes.extend_from_slice(m);
        }
        nodes
    }

    /// Roots absorbed since the last call (by events or operator merges).
    pub fn take_absorbed(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.absorbed)
    }

    /// The current id of a fan id (itself, or the fan that absorbed it).
    pub fn current(&self, fan: FanId) -> Option<FanId> {
        self.node_of(fan).map(|n| self.fan(n))
    }

    /// The fans holding an identity value (already normalized). Usually one; a shared family
    /// phone gives two.
    pub fn lookup(&self, kind: IdentityKind, value: &str) -> Vec<FanId> {
        let Some(i) = self.values[kind as usize].find(&self.hasher, value.as_bytes()) else {
            return Vec::new();
        };
        let mut fans: Vec<FanId> = self.holders(kind, i).iter().map(|&n| self.fan(n)).collect();
        fans.sort_unstable();
        fans.dedup();
        fans
    }

    /// A fan's identity values, by kind then value order of arrival.
    pub fn identities_of(&self, fan: FanId) -> Vec<(IdentityKind, String)> {
        let Some(root) = self.node_of(fan).map(|n| self.root(n)) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for kind in IdentityKind::ALL {
            let vals = &self.values[*kind as usize];
            for (i, &word) in vals.owner.iter().enumerate() {
                let held = if word & MULTI != 0 {
                    self.owners(word).iter().any(|&n| self.root(n) == root)
                } else {
                    self.root(word) == root
                };
                if held {
                    out.push((
                        *kind,
                        String::from_utf8_lossy(vals.get(i as u32)).into_owned(),
                    ));
                }
            }
        }
        out
    }

    fn value_text(&self, kind: IdentityKind, i: u32) -> String {
        String::from_utf8_lossy(self.values[kind as usize].get(i)).into_owned()
    }

    fn merge_view(&self, m: &MergeRec) -> Merge {
        Merge {
            into: self.fan_id(m.into),
            from: self.fan_id(m.from),
            seq: m.seq,
            ts: m.ts,
            cause: m.cause,
            via: (m.value != NO_VALUE).then(|| (m.kind, self.value_text(m.kind, m.value))),
        }
    }

    /// Every merge that went into a fan, oldest first.
    pub fn merges_of(&self, fan: FanId) -> Vec<Merge> {
        let Some(root) = self.node_of(fan).map(|n| self.root(n)) else {
            return Vec::new();
        };
        self.merges
            .iter()
            .filter(|m| self.root(m.into) == root)
            .map(|m| self.merge_view(m))
            .collect()
    }

    /// The merge that absorbed `from`, if it was absorbed.
    pub fn merge_absorbing(&self, from: FanId) -> Option<Merge> {
        let node = self.node_of(from)?;
        self.merges
            .iter()
            .find(|m| m.from == node)
            .map(|m| self.merge_view(m))
    }

    /// All merges, oldest first.
    pub fn merges(&self) -> impl Iterator<Item = Merge> + '_ {
        self.merges.iter().map(|m| self.merge_view(m))
    }

    /// Open possible duplicates: pairs still apart and not marked distinct, between current
    /// fans, oldest finding first.
    pub fn possible_duplicates(&self) -> Vec<PossibleDuplicate> {
        let mut recs: Vec<DupRec> = self.dups.values().cloned().collect();
        recs.sort_unstable_by_key(|r| (r.seq, r.a, r.b));
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for r in recs {
            let (ra, rb) = (self.root(r.a), self.root(r.b));
            let key = (ra.min(rb), ra.max(rb));
            if ra == rb || self.is_distinct(ra, rb) || !seen.insert(key) {
                continue;
            }
            out.push(PossibleDuplicate {
                a: self.fan_id(key.0),
                b: self.fan_id(key.1),
                seq: r.seq,
                ts: r.ts,
                via: (r.kind, self.value_text(r.kind, r.value)),
            });
        }
        out
    }

    /// Calls `f(kind, value, fan)` for every identity value and each fan holding it.
    pub fn for_each_value(&self, mut f: impl FnMut(IdentityKind, &str, FanId)) {
        for kind in IdentityKind::ALL {
            let vals = &self.values[*kind as usize];
            for (i, &word) in vals.owner.iter().enumerate() {
                let text = String::from_utf8_lossy(vals.get(i as u32));
                if word & MULTI != 0 {
                    let mut fans: Vec<FanId> =
                        self.owners(word).iter().map(|&n| self.fan(n)).collect();
                    fans.sort_unstable();
                    fans.dedup();
                    for fan in fans {
                        f(*kind, &text, fan);
                    }
                } else {
                    f(*kind, &text, self.fan(word));
                }
            }
        }
    }

    /// Number of distinct fans.
    pub fn fan_count(&self) -> u64 {
        self.roots
    }

    /// Number of distinct identity values.
    pub fn value_count(&self) -> u64 {
        self.values.iter().map(|v| v.owner.len() as u64).sum()
    }

    /// Heap memory held by the graph (capacity, not length), for the per-value budget.
    pub fn heap_bytes(&self) -> usize {
        let values: usize = self
            .values
            .iter()
            .map(|v| {
                v.bytes.capacity()
                    + v.ends.capacity() * 4
                    + v.owner.capacity() * 4
                    + v.table.capacity() * 4
                    + v.table.capacity() // control bytes
            })
            .sum();
        let multi: usize = self.multi.iter().map(|m| m.capacity() * 4 + 24).sum();
        let fans = self.parent.capacity() * 4 + self.mask.capacity() + self.created.capacity() * 8;
        let merges = self.merges.capacity() * std::mem::size_of::<MergeRec>();
        let dups = self.dups.capacity() * (8 + std::mem::size_of::<DupRec>() + 1);
        let soft = self.soft.capacity() * (8 + 4 + 1);
        let shared = self.shared.capacity() * (8 + 1)
            + self
                .shared_text
                .iter()
                .map(|(_, v)| v.len() + 24)
                .sum::<usize>();
        let distinct: usize = self.distinct.values().map(|v| v.capacity() * 4 + 32).sum();
        let members: usize = self.members.values().map(|v| v.capacity() * 4 + 32).sum();
        values + multi + fans + merges + dups + soft + shared + distinct + members
    }
}

mod snap {
    //! The identity graph in a snapshot: everything but the hash tables, which are rebuilt
    //! from the interned values (their seed is this process's own).
    use super::*;
    use crate::snapshot::{Reader, Snap, SnapshotError, Writer};

    impl Snap for MergeCause {
        fn put(&self, w: &mut Writer) {
            w.put(&match self {
                MergeCause::Event => 0u8,
                MergeCause::Operator => 1,
                MergeCause::Alias => 2,
            });
        }
        fn take(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
            match r.take::<u8>()? {
                0 => Ok(MergeCause::Event),
                1 => Ok(MergeCause::Operator),
                2 => Ok(MergeCause::Alias),
                _ => Err(SnapshotError::Malformed(0)),
            }
        }
    }

    impl Snap for MergeRec {
        fn put(&self, w: &mut Writer) {
            w.put(&self.into);
            w.put(&self.from);
            w.put(&self.seq);
            w.put(&self.ts);
            w.put(&self.kind);
            w.put(&self.value);
            w.put(&self.cause);
        }
        fn take(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
            Ok(MergeRec {
                into: r.take()?,
                from: r.take()?,
                seq: r.take()?,
                ts: r.take()?,
                kind: r.take()?,
                value: r.take()?,
                cause: r.take()?,
            })
        }
    }

    impl Snap for DupRec {
        fn put(&self, w: &mut Writer) {
            w.put(&self.a);
            w.put(&self.b);
            w.put(&self.seq);
            w.put(&self.ts);
            w.put(&self.kind);
            w.put(&self.value);
        }
        fn take(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
            Ok(DupRec {
                a: r.take()?,
                b: r.take()?,
                seq: r.take()?,
                ts: r.take()?,
                kind: r.take()?,
                value: r.take()?,
            })
        }
    }

    impl Snap for Values {
        fn put(&self, w: &mut Writer) {
            w.put(&self.bytes);
            w.put(&self.ends);
            w.put(&self.owner);
        }
        fn take(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
            let v = Values {
                bytes: r.take()?,
                ends: r.take()?,
                table: HashTable::new(),
                owner: r.take()?,
            };
            let ordered = v.ends.windows(2).all(|p| p[0] <= p[1]);
            if !ordered
                || v.ends.last().is_some_and(|&e| e as usize > v.bytes.len())
                || v.owner.len() != v.ends.len()
            {
                return Err(SnapshotError::Malformed(0));
            }
            Ok(v)
        }
    }

    impl Snap for IdentityGraph {
        fn put(&self, w: &mut Writer) {
            w.put(&self.values);
            w.put(&self.multi);
            w.put(&self.parent);
            w.put(&self.mask);
            w.put(&self.created);
            w.put(&self.roots);
            w.put(&self.merges);
            w.put(&self.dups);
            w.put(&self.distinct);
            w.put(&self.shared_text);
            w.put(&self.shared);
            w.put(&self.soft);
            w.put(&self.corrections);
            w.put(&self.reported);
            w.put(&self.members);
        }
        fn take(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
            let mut g = IdentityGraph {
                hasher: DefaultHashBuilder::default(),
                values: r.take()?,
                multi: r.take()?,
                parent: r.take()?,
                mask: r.take()?,
                created: r.take()?,
                roots: r.take()?,
                merges: r.take()?,
                dups: r.take()?,
                distinct: r.take()?,
                shared_text: r.take()?,
                shared: r.take()?,
                soft: r.take()?,
                corrections: r.take()?,
                reported: r.take()?,
                members: r.take()?,
                absorbed: Vec::new(),
                scratch: Vec::new(),
            };
            let nodes = g.parent.len();
            if g.values.len() != IdentityKind::ALL.len()
                || g.parent.iter().any(|&p| p as usize >= nodes)
                || g.mask.len() != nodes
                || g.created.len() != nodes
            {
                return Err(SnapshotError::Malformed(0));
            }
            let IdentityGraph { hasher, values, .. } = &mut g;
            for v in values.iter_mut() {
                let Values {
                    bytes, ends, table, ..
                } = v;
                let value = |j: u32| {
                    let end = ends[j as usize] as usize;
                    let start = if j == 0 {
                        0
                    } else {
                        ends[j as usize - 1] as usize
                    };
                    &bytes[start..end]
                };
                *table = HashTable::with_capacity(ends.len());
                for i in 0..ends.len() as u32 {
                    table.insert_unique(hasher.hash_one(value(i)), i, |&j| {
                        hasher.hash_one(value(j))
                    });
                }
            }
            Ok(g)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use siyu_domain::Identity;

    fn ids(pairs: &[(IdentityKind, &str)]) -> Identities {
        Identities::new(
            pairs
                .iter()
                .map(|(k, v)| Identity::parse(*k, v).unwrap())
                .collect(),
        )
        .unwrap()
    }

    use IdentityKind::*;

    #[test]
    fn shared_values_link_and_the_older_fan_survives() {
        let mut g = IdentityGraph::new();
        let a = g.resolve(1, 0, &ids(&[(DouyinOpenId, "a")]));
        let b = g.resolve(2, 0, &ids(&[(Phone, "13800138000"), (LeadId, "c1")]));
        assert_ne!(g.fan(a), g.fan(b));
        assert_eq!(g.fan_count(), 2);
        let m = g.resolve(
            3,
            0,
            &ids(&[(Phone, "+86 138 0013 8000"), (DouyinOpenId, "a")]),
        );
        assert_eq!(g.fan(m), FanId(1));
        assert_eq!(g.fan_count(), 1);
        assert_eq!(g.lookup(Phone, "+8613800138000"), vec![FanId(1)]);
        assert_eq!(
            g.current(FanId(2)),
            Some(FanId(1)),
            "the merged-away id keeps resolving"
        );
        let merges = g.merges_of(FanId(2));
        assert_eq!(merges.len(), 1);
        assert_eq!(merges[0].from, FanId(2));
        assert_eq!(merges[0].seq, 3);
        assert_eq!(merges[0].via, Some((Phone, "+8613800138000".to_string())));
        assert_eq!(g.identities_of(FanId(1)).len(), 3);
    }

    #[test]
    fn a_family_phone_never_merges_two_open_ids() {
        let mut g = IdentityGraph::new();
        g.resolve(1, 0, &ids(&[(DouyinOpenId, "mum"), (Phone, "13800138000")]));
        let kid = g.resolve(2, 0, &ids(&[(DouyinOpenId, "kid"), (Phone, "13800138000")]));
        assert_eq!(g.fan(kid), FanId(2));
        assert_eq!(g.fan_count(), 2);
        assert_eq!(g.lookup(Phone, "+8613800138000"), vec![FanId(1), FanId(2)]);
        let dups = g.possible_duplicates();
        assert_eq!(dups.len(), 1);
        assert_eq!((dups[0].a, dups[0].b), (FanId(1), FanId(2)));
        // A later event with the phone and one of the open ids stays with that open id.
        let e = g.resolve(3, 0, &ids(&[(DouyinOpenId, "kid"), (Phone, "13800138000")]));
        assert_eq!(g.fan(e), FanId(2));
        // An ad lead with only the phone attaches to one of them, merging nothing.
        g.resolve(4, 0, &ids(&[(LeadId, "c9"), (Phone, "138 0013 8000")]));
        assert_eq!(g.fan_count(), 2);
        assert!(g.merges().next().is_none());
    }

    #[test]
    fn an_event_with_conflicting_strong_ids_stays_with_its_first() {
        let mut g = IdentityGraph::new();
        g.resolve(1, 0, &ids(&[(DouyinOpenId, "x"), (UserId, "u1")]));
        g.resolve(2, 0, &ids(&[(DouyinOpenId, "y"), (UserId, "u2")]));
        let e = g.resolve(3, 0, &ids(&[(DouyinOpenId, "x"), (UserId, "u2")]));
        assert_eq!(g.fan(e), FanId(1));
        assert_eq!(g.fan_count(), 2);
        assert_eq!(
            g.lookup(UserId, "u2"),
            vec![FanId(2)],
            "strong values are never shared"
        );
        assert_eq!(g.possible_duplicates().len(), 1);
    }

    #[test]
    fn operators_confirm_and_distinguish() {
        let mut g = IdentityGraph::new();
        g.resolve(1, 0, &ids(&[(DouyinOpenId, "a"), (Phone, "13800138000")]));
        g.resolve(2, 0, &ids(&[(DouyinOpenId, "b"), (Phone, "13800138000")]));
        g.resolve(3, 0, &ids(&[(DouyinOpenId, "c"), (Email, "x@y.cn")]));
        g.resolve(4, 0, &ids(&[(DouyinOpenId, "d"), (Email, "x@y.cn")]));
        assert_eq!(g.possible_duplicates().len(), 2);
        g.decide(
            Decision::Confirm {
                a: FanId(2),
                b: FanId(1),
            },
            4,
            0,
        )
        .unwrap();
        g.decide(
            Decision::Distinct {
                a: FanId(3),
                b: FanId(4),
            },
            4,
            0,
        )
        .unwrap();
        assert!(g.possible_duplicates().is_empty());
        assert_eq!(g.fan_count(), 3);
        assert_eq!(g.merges_of(FanId(1))[0].cause, MergeCause::Operator);
        assert_eq!(
            g.decide(
                Decision::Confirm {
                    a: FanId(1),
                    b: FanId(2)
                },
                4,
                0
            ),
            Err(DecisionError::AlreadyOne(1, 2))
        );
        assert_eq!(
            g.decide(
                Decision::Distinct {
                    a: FanId(1),
                    b: FanId(99)
                },
                4,
                0
            ),
            Err(DecisionError::UnknownFan(99))
        );
        // A distinct pair is not merged automatically even through a weak value.
        g.resolve(5, 0, &ids(&[(AnonymousId, "dev1"), (Email, "x@y.cn")]));
        assert_eq!(g.fan_count(), 3);
        assert!(g.possible_duplicates().is_empty());
    }

    #[test]
    fn an_alias_of_a_user_id_merges_two_user_ids() {
        let mut g = IdentityGraph::new();
        g.resolve(1, 0, &ids(&[(UserId, "u-old"), (Phone, "13800138000")]));
        g.resolve(2, 0, &ids(&[(UserId, "u-new")]));
        // Automatically, two user ids are two people.
        g.resolve(3, 0, &ids(&[(UserId, "u-new"), (Phone, "13800138000")]));
        assert_eq!(g.fan_count(), 2);
        let a = g.resolve_alias(4, 9, &ids(&[(UserId, "u-new")]), "u-old");
        assert_eq!(g.fan(a), FanId(1), "the older fan survives");
        assert_eq!(g.fan_count(), 1);
        assert_eq!(g.lookup(UserId, "u-old"), g.lookup(UserId, "u-new"));
        let m = g.merge_absorbing(FanId(2)).unwrap();
        assert_eq!(
            (m.into, m.cause, m.seq, m.ts, m.via),
            (
                FanId(1),
                MergeCause::Alias,
                4,
                9,
                Some((UserId, "u-old".to_string()))
            )
        );
        assert!(g.possible_duplicates().is_empty(), "one fan now");
        assert!(
            g.lookup(AnonymousId, "u-old").is_empty(),
            "a user id is not taken for an anonymous id"
        );
    }

    #[test]
    fn an_alias_links_the_holders_of_the_previous_id_as_either_kind() {
        let mut g = IdentityGraph::new();
        g.resolve(1, 0, &ids(&[(UserId, "x")]));
        g.resolve(2, 0, &ids(&[(AnonymousId, "x"), (UserId, "other")]));
        g.resolve(3, 0, &ids(&[(UserId, "u")]));
        let a = g.resolve_alias(4, 0, &ids(&[(UserId, "u")]), "x");
        assert_eq!(g.fan(a), FanId(1));
        assert_eq!(
            g.fan_count(),
            1,
            "the user id's fan and the anonymous id's fan"
        );
        let vias: Vec<_> = g.merges().map(|m| (m.cause, m.via.unwrap().0)).collect();
        assert_eq!(
            vias,
            vec![
                (MergeCause::Alias, UserId),
                (MergeCause::Alias, AnonymousId)
            ]
        );
    }

    #[test]
    fn an_alias_of_an_unknown_id_attaches_it_as_an_anonymous_id() {
        let mut g = IdentityGraph::new();
        let a = g.resolve_alias(1, 0, &ids(&[(UserId, "u")]), "anon-9");
        assert_eq!(g.lookup(AnonymousId, "anon-9"), vec![g.fan(a)]);
        let later = g.resolve(2, 0, &ids(&[(AnonymousId, "anon-9")]));
        assert_eq!(g.fan(later), g.fan(a));
        assert_eq!(g.fan_count(), 1);
        // Sent with the anonymous id among the identities too, the value is interned once.
        let mut g = IdentityGraph::new();
        g.resolve_alias(1, 0, &ids(&[(UserId, "u"), (AnonymousId, "a")]), "a");
        assert_eq!(g.value_count(), 2);
    }

    #[test]
    fn an_alias_with_a_new_user_id_joins_the_existing_fan_without_a_merge() {
        let mut g = IdentityGraph::new();
        g.resolve(1, 0, &ids(&[(AnonymousId, "anon"), (Phone, "13800138000")]));
        let a = g.resolve_alias(2, 0, &ids(&[(UserId, "u")]), "anon");
        assert_eq!(g.fan(a), FanId(1), "no fan is made by the alias itself");
        assert_eq!(g.node_count(), 1);
        assert!(g.merges().next().is_none());
        assert_eq!(g.lookup(UserId, "u"), vec![FanId(1)]);
    }

    #[test]
    fn fans_marked_distinct_are_not_aliased_and_a_shared_anonymous_id_is_only_suggested() {
        let mut g = IdentityGraph::new();
        g.resolve(1, 0, &ids(&[(UserId, "a")]));
        g.resolve(2, 0, &ids(&[(UserId, "b")]));
        // An undo places a distinct decision just before the alias, then replays.
        g.decide(
            Decision::Distinct {
                a: FanId(1),
                b: FanId(2),
            },
            2,
            0,
        )
        .unwrap();
        g.resolve_alias(3, 0, &ids(&[(UserId, "b")]), "a");
        assert_eq!(g.fan_count(), 2);

        let mut g = IdentityGraph::new();
        g.resolve(1, 0, &ids(&[(UserId, "mum"), (AnonymousId, "tablet")]));
        g.resolve(2, 0, &ids(&[(UserId, "kid"), (AnonymousId, "tablet")]));
        g.resolve(3, 0, &ids(&[(UserId, "dad")]));
        g.resolve_alias(4, 0, &ids(&[(UserId, "dad")]), "tablet");
        assert_eq!(
            g.fan_count(),
            3,
            "which of the two is meant, the alias does not say"
        );
        let dups: Vec<_> = g
            .possible_duplicates()
            .into_iter()
            .map(|d| (d.a, d.b))
            .collect();
        assert!(dups.contains(&(FanId(1), FanId(3))), "{dups:?}");
        assert!(dups.contains(&(FanId(2), FanId(3))), "{dups:?}");
    }

    #[test]
    fn memory_per_value_stays_within_64_bytes() {
        let mut g = IdentityGraph::new();
        for p in 0..100_000u64 {
            let open = format!("_000{:032x}", p.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let phone = format!("+86138{:08}", p);
            g.resolve(p as i64 * 2 + 1, 0, &ids(&[(DouyinOpenId, &open)]));
            g.resolve(
                p as i64 * 2 + 2,
                0,
                &ids(&[(DouyinOpenId, &open), (Phone, &phone)]),
            );
        }
        assert_eq!(g.value_count(), 200_000);
        let per_value = g.heap_bytes() as f64 / g.value_count() as f64;
        assert!(per_value <= 64.0, "{per_value} bytes per value");
    }

    #[test]
    fn export_lists_every_value_with_each_holder() {
        let mut g = IdentityGraph::new();
        g.resolve(1, 0, &ids(&[(DouyinOpenId, "a"), (Phone, "13800138000")]));
        g.resolve(2, 0, &ids(&[(DouyinOpenId, "b"), (Phone, "13800138000")]));
        let mut rows = Vec::new();
        g.for_each_value(|k, v, f| rows.push((k, v.to_string(), f.0)));
        assert_eq!(rows.len(), 4);
        assert_eq!(g.value_count(), 3);
        assert!(g.heap_bytes() > 0);
    }
}

/// How well fans match the true people behind the identities (for generated data, whose truth
/// file says who every value belongs to).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    /// Identity values in the truth that belong to exactly one person (the basis of the
    /// pairwise scores); values shared by a family are scored by `wrong_merges` instead.
    pub values: u64,
    /// Truth values the graph has never seen.
    pub missing: u64,
    pub people: u64,
    pub fans: u64,
    /// Of all pairs of values put in one fan, the share that are one true person.
    pub precision: f64,
    /// Of all pairs of values of one true person, the share put in one fan.
    pub recall: f64,
    /// Fans holding one-per-person ids of two or more true people (must be 0).
    pub wrong_merges: u64,
    /// True people whose values are in two or more fans: no event ever carried two of their
    /// ids together, so nothing tells Siyu they are one person. Why `fans` exceeds `people`.
    pub split_people: u64,
}

impl IdentityGraph {
    /// Scores the graph against `(kind, normalized value, true person)` rows.
    pub fn evaluate<'a>(
        &self,
        truth: impl IntoIterator<Item = (IdentityKind, &'a str, &'a str)>,
    ) -> Evaluation {
        let mut persons_of: HashMap<(IdentityKind, &str), Vec<&str>> = HashMap::new();
        for (k, v, p) in truth {
            persons_of.entry((k, v)).or_default().push(p);
        }
        let mut cell: HashMap<(FanId, &str), u64> = HashMap::new();
        let mut by_fan: HashMap<FanId, u64> = HashMap::new();
        let mut by_person: HashMap<&str, u64> = HashMap::new();
        let mut strong_people: HashMap<FanId, Vec<&str>> = HashMap::new();
        let (mut values, mut missing) = (0u64, 0u64);
        for ((kind, value), persons) in &persons_of {
            let fans = self.lookup(*kind, value);
            if fans.is_empty() {
                missing += 1;
                continue;
            }
            if kind.one_per_person() {
                for f in &fans {
                    let list = strong_people.entry(*f).or_default();
                    for p in persons {
                        if !list.contains(p) {
                            list.push(p);
                        }
                    }
                }
            }
            if persons.len() != 1 {
                continue;
            }
            values += 1;
            let (fan, person) = (fans[0], persons[0]);
            *cell.entry((fan, person)).or_default() += 1;
            *by_fan.entry(fan).or_default() += 1;
            *by_person.entry(person).or_default() += 1;
        }
        let pairs = |n: u64| n * n.saturating_sub(1) / 2;
        let tp: u64 = cell.values().map(|&n| pairs(n)).sum();
        let predicted: u64 = by_fan.values().map(|&n| pairs(n)).sum();
        let actual: u64 = by_person.values().map(|&n| pairs(n)).sum();
        let ratio = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
        Evaluation {
            values,
            missing,
            people: by_person.len() as u64,
            fans: by_fan.len() as u64,
            precision: ratio(tp, predicted),
            recall: ratio(tp, actual),
            wrong_merges: strong_people.values().filter(|p| p.len() > 1).count() as u64,
            split_people: {
                let mut fans_of: HashMap<&str, u32> = HashMap::new();
                for (_, person) in cell.keys() {
                    *fans_of.entry(person).or_default() += 1;
                }
                fans_of.values().filter(|&&n| n > 1).count() as u64
            },
        }
    }
}
