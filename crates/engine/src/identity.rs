//! The identity graph: every identity value belongs to exactly one fan.
//!
//! Values are interned per kind; each value points at the fan it first appeared with, and fans
//! are kept in a union-find (path halving, union by age) so that merging two fans is O(α) and a
//! merged-away fan id keeps resolving to the fan that absorbed it. The older fan survives a
//! merge, so a fan's id never changes under an operator's feet.

use std::collections::HashMap;

use siyu_domain::{Identity, IdentityKind};

/// A fan: a resolved person. Ids are dense, in order of first appearance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct FanId(pub u32);

#[derive(Debug, Default)]
pub struct IdentityGraph {
    /// One map per identity kind: value → the fan it was first seen with (not necessarily the
    /// fan's current root).
    values: Vec<HashMap<Box<str>, u32>>,
    /// Union-find parent of each fan id; a root is its own parent.
    parent: Vec<u32>,
    /// Number of fans that are roots.
    roots: u64,
}

impl IdentityGraph {
    pub fn new() -> IdentityGraph {
        IdentityGraph::default()
    }

    fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let grand = self.parent[self.parent[x as usize] as usize];
            self.parent[x as usize] = grand;
            x = grand;
        }
        x
    }

    /// The fan an identity value belongs to, if seen.
    pub fn lookup(&self, kind: IdentityKind, value: &str) -> Option<FanId> {
        let mut x = *self.values.get(kind as usize)?.get(value)?;
        while self.parent[x as usize] != x {
            x = self.parent[x as usize];
        }
        Some(FanId(x))
    }

    /// Resolves an event's identities to one fan, creating or merging fans as needed.
    pub fn resolve<'a>(&mut self, ids: impl Iterator<Item = &'a Identity>) -> FanId {
        if self.values.is_empty() {
            self.values = IdentityKind::ALL.iter().map(|_| HashMap::new()).collect();
        }
        let mut fan: Option<u32> = None;
        let mut unseen: Vec<&Identity> = Vec::new();
        for id in ids {
            match self.values[id.kind as usize].get(id.value()).copied() {
                Some(f) => {
                    let root = self.find(f);
                    fan = Some(match fan {
                        None => root,
                        Some(current) => self.union(current, root),
                    });
                }
                None => unseen.push(id),
            }
        }
        let fan = fan.unwrap_or_else(|| {
            let id = self.parent.len() as u32;
            self.parent.push(id);
            self.roots += 1;
            id
        });
        for id in unseen {
            self.values[id.kind as usize].insert(id.value().into(), fan);
        }
        FanId(fan)
    }

    /// Merges two roots; the older (smaller id) survives.
    fn union(&mut self, a: u32, b: u32) -> u32 {
        if a == b {
            return a;
        }
        let (keep, gone) = if a < b { (a, b) } else { (b, a) };
        self.parent[gone as usize] = keep;
        self.roots -= 1;
        keep
    }

    /// Number of distinct fans.
    pub fn fan_count(&self) -> u64 {
        self.roots
    }

    /// Number of distinct identity values.
    pub fn value_count(&self) -> u64 {
        self.values.iter().map(|m| m.len() as u64).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(kind: IdentityKind, v: &str) -> Identity {
        Identity::parse(kind, v).unwrap()
    }

    #[test]
    fn shared_values_link_and_the_older_fan_survives() {
        use IdentityKind::*;
        let mut g = IdentityGraph::new();
        let a = g.resolve([id(DouyinOpenId, "a")].iter());
        let b = g.resolve([id(Phone, "13800138000")].iter());
        assert_ne!(a, b);
        assert_eq!(g.fan_count(), 2);
        let m = g.resolve([id(Phone, "+86 138 0013 8000"), id(DouyinOpenId, "a")].iter());
        assert_eq!(m, a);
        assert_eq!(g.fan_count(), 1);
        assert_eq!(g.lookup(Phone, "+8613800138000"), Some(a));
        assert_eq!(g.lookup(Email, "x@y.z"), None);
        assert_eq!(g.value_count(), 2);
    }
}
