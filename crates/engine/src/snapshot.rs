//! Engine snapshots: a tenant's replayed state as bytes, so that a start loads it and
//! replays only the events after it instead of the whole log.
//!
//! What is kept is the state that replaying the log builds — the identity graph, the lead
//! records, the per-event columns and the counters — at one position of the log (the last
//! applied event and the last applied identity decision). What is derived from it at a
//! clock (live layers, saved segments' members) or kept in tables of its own (tags, rules)
//! is not: those are rebuilt or reloaded on top, exactly as after a replay.
//!
//! The format is this module's own, little-endian and length-prefixed:
//! `MAGIC`, [`FORMAT`], the body, and a 64-bit checksum of everything before it. Reading
//! never panics and never trusts a length: a snapshot of another format, a truncated one
//! or one whose checksum does not match is refused with a [`SnapshotError`], and the caller
//! replays the log instead. The invariant a property test holds: decoding a snapshot taken
//! after event *k* and applying events *k+1…n* gives the same engine as applying *1…n*.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::Hash;

use siyu_domain::{Domain, IdentityKind};

/// The layout version. Bump it whenever any encoded structure changes: a snapshot of another
/// version is ignored (and rebuilt from the log), never misread.
pub const FORMAT: u32 = 3;

const MAGIC: &[u8; 8] = b"SIYUSNAP";

/// Why a snapshot was not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("not a Siyu engine snapshot")]
    NotASnapshot,
    #[error("snapshot format {found}, this build reads format {FORMAT}")]
    Version { found: u32 },
    #[error("snapshot checksum does not match: it is damaged")]
    Checksum,
    #[error("snapshot ends early or is malformed at byte {0}")]
    Malformed(usize),
}

/// Appends values to a buffer.
#[derive(Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// A writer whose buffer already holds the header.
    pub fn new() -> Writer {
        let mut w = Writer {
            buf: Vec::with_capacity(1 << 20),
        };
        w.buf.extend_from_slice(MAGIC);
        FORMAT.put(&mut w);
        w
    }

    pub fn put<T: Snap>(&mut self, v: &T) {
        v.put(self);
    }

    fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// The finished snapshot: header, body and checksum.
    pub fn finish(mut self) -> Vec<u8> {
        let sum = checksum(&self.buf);
        self.buf.extend_from_slice(&sum.to_le_bytes());
        self.buf
    }
}

/// Reads values back, checking every length against what is left.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Checks the header and the checksum; the reader is then at the body.
    pub fn open(data: &'a [u8]) -> Result<Reader<'a>, SnapshotError> {
        if data.len() < MAGIC.len() + 4 + 8 || &data[..MAGIC.len()] != MAGIC {
            return Err(SnapshotError::NotASnapshot);
        }
        let (body, sum) = data.split_at(data.len() - 8);
        let mut r = Reader {
            buf: body,
            pos: MAGIC.len(),
        };
        let found: u32 = r.take()?;
        if found != FORMAT {
            return Err(SnapshotError::Version { found });
        }
        let mut expected = [0u8; 8];
        expected.copy_from_slice(sum);
        if checksum(body) != u64::from_le_bytes(expected) {
            return Err(SnapshotError::Checksum);
        }
        Ok(r)
    }

    pub fn take<T: Snap>(&mut self) -> Result<T, SnapshotError> {
        T::take(self)
    }

    /// The refusal of a value that decoded but breaks its structure's invariant.
    pub(crate) fn malformed(&self) -> SnapshotError {
        SnapshotError::Malformed(self.pos)
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(SnapshotError::Malformed(self.pos))?;
        let b = &self.buf[self.pos..end];
        self.pos = end;
        Ok(b)
    }

    /// A length prefix, refused when even one byte per element would not fit.
    fn len(&mut self) -> Result<usize, SnapshotError> {
        let at = self.pos;
        let n = u64::take(self)?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.buf.len() - self.pos)
            .ok_or(SnapshotError::Malformed(at))
    }

    /// Whether every byte of the body was read (a longer body is another layout).
    pub fn finish(self) -> Result<(), SnapshotError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(SnapshotError::Malformed(self.pos))
        }
    }
}

/// FNV-1a over 8-byte words (then the tail bytes): cheap enough for hundreds of megabytes,
/// and catches truncation and damage, which is all it is for.
fn checksum(data: &[u8]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        h = (h ^ u64::from_le_bytes(b)).wrapping_mul(PRIME);
    }
    for &b in words.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(PRIME);
    }
    h ^ data.len() as u64
}

/// A value that goes into a snapshot.
pub trait Snap: Sized {
    fn put(&self, w: &mut Writer);
    fn take(r: &mut Reader<'_>) -> Result<Self, SnapshotError>;
}

macro_rules! numbers {
    ($($t:ty),*) => {$(
        impl Snap for $t {
            #[inline]
            fn put(&self, w: &mut Writer) {
                w.bytes(&self.to_le_bytes());
            }
            #[inline]
            fn take(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
                let b = r.bytes(std::mem::size_of::<$t>())?;
                Ok(<$t>::from_le_bytes(b.try_into().expect("sized read")))
            }
        }
    )*};
}
numbers!(u8, u16, u32, u64, i64, f64);

impl Snap for bool {
    fn put(&self, w: &mut Writer) {
        u8::from(*self).put(w);
    }
    fn take(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
        let at = r.pos;
        match u8::take(r)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(SnapshotError::Malformed(at)),
        }
    }
}

impl Snap for usize {
    fn put(&self, w: &mut Writer) {
        (*self as u64).put(w);
    }
    fn take(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
        let at = r.pos;
        usize::try_from(u64::take(r)?).map_err(|_| SnapshotError::Malformed(at))
    }
}

impl Snap for String {
    fn put(&self, w: &mut Writer) {
        self.len().put(w);
        w.bytes(self.as_bytes());
    }
    fn take(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
        let n = r.len()?;
        let at = r.pos;
        let b = r.bytes(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| SnapshotError::Malformed(at))
    }
}

impl Snap for Box<str> {
    fn put(&self, w: &mut Writer) {
        self.len().put(w);
        w.bytes(self.as_bytes());
    }
    fn take(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
        Ok(String::take(r)?.into_boxed_str())
    }
}

impl<T: Snap> Snap for Vec<T> {
    fn put(&self, w: &mut Writer) {
        self.len().put(w);
        for x in self {
            x.put(w);
        }
    }
    fn take(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
        let n = r.len()?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(T::take(r)?);
        }
        Ok(v)
    }
}

impl<T: Snap> Snap for Option<T> {
    fn put(&self, w: &mut Writer) {
        self.is_some().put(w);
        if let Some(x) = self {
            x.put(w);
        }
    }
    fn take(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
        Ok(if bool::take(r)? {
            Some(T::take(r)?)
        } else {
            None
        })
    }
}

impl<A: Snap, B: Snap> Snap for (A, B) {
    fn put(&self, w: &mut Writer) {
        self.0.put(w);
        self.1.put(w);
    }
    fn take(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
        Ok((A::take(r)?, B::take(r)?))
    }
}

impl<T: Snap + Copy + Default, const N: usize> Snap for [T; N] {
    fn put(&self, w: &mut Writer) {
        for x in self {
            x.put(w);
        }
    }
    fn take(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
        let mut a = [T::default(); N];
        for x in &mut a {
            *x = T::take(r)?;
        }
        Ok(a)
    }
}

/// Maps and sets are written in key order, so that the same state always gives the same
/// bytes (a property test compares snapshots byte for byte).
impl<K: Snap + Ord + Hash, V: Snap, S: std::hash::BuildHasher + Default> Snap for HashMap<K, V, S> {
    fn put(&self, w: &mut Writer) {
        self.len().put(w);
        let mut entries: Vec<(&K, &V)> = self.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (k, v) in entries {
            k.put(w);
            v.put(w);
        }
    }
    fn take(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
        let n = r.len()?;
        let mut m = HashMap::with_capacity_and_hasher(n, S::default());
        for _ in 0..n {
            let k = K::take(r)?;
            m.insert(k, V::take(r)?);
        }
        Ok(m)
    }
}

impl<K: Snap + Ord + Hash, S: std::hash::BuildHasher + Default> Snap for HashSet<K, S> {
    fn put(&self, w: &mut Writer) {
        self.len().put(w);
        let mut keys: Vec<&K> = self.iter().collect();
        keys.sort_unstable();
        for k in keys {
            k.put(w);
        }
    }
    fn take(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
        let n = r.len()?;
        let mut m = HashSet::with_capacity_and_hasher(n, S::default());
        for _ in 0..n {
            m.insert(K::take(r)?);
        }
        Ok(m)
    }
}

impl<K: Snap + Ord, V: Snap> Snap for BTreeMap<K, V> {
    fn put(&self, w: &mut Writer) {
        self.len().put(w);
        for (k, v) in self {
            k.put(w);
            v.put(w);
        }
    }
    fn take(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
        let n = r.len()?;
        let mut m = BTreeMap::new();
        for _ in 0..n {
            let k = K::take(r)?;
            m.insert(k, V::take(r)?);
        }
        Ok(m)
    }
}

/// A closed set written as its index in `ALL`.
macro_rules! closed_set {
    ($t:ty, $all:expr) => {
        impl Snap for $t {
            fn put(&self, w: &mut Writer) {
                let i = $all.iter().position(|x| x == self).expect("listed") as u8;
                i.put(w);
            }
            fn take(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
                let at = r.pos;
                $all.get(u8::take(r)? as usize)
                    .copied()
                    .ok_or(SnapshotError::Malformed(at))
            }
        }
    };
}

closed_set!(IdentityKind, IdentityKind::ALL);
closed_set!(Domain, Domain::ALL);

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Snap + PartialEq + std::fmt::Debug>(v: T) {
        let mut w = Writer::new();
        w.put(&v);
        let bytes = w.finish();
        let mut r = Reader::open(&bytes).unwrap();
        assert_eq!(r.take::<T>().unwrap(), v);
        r.finish().unwrap();
    }

    #[test]
    fn values_round_trip() {
        round_trip(vec![1u32, 2, u32::MAX]);
        round_trip(vec![-5i64, i64::MIN]);
        round_trip((String::from("门店"), Some(3u16)));
        round_trip(HashMap::from([(1u32, vec![2u32, 3]), (7, vec![])]));
        round_trip(BTreeMap::from([(String::from("order"), 9u64)]));
        round_trip([1u64, 2, 3]);
        round_trip(vec![IdentityKind::Phone, IdentityKind::UserId]);
        round_trip(vec![Domain::Private, Domain::Public]);
        round_trip(Box::<str>::from("x"));
        round_trip(vec![true, false]);
    }

    #[test]
    fn damaged_snapshots_are_refused_never_misread() {
        let mut w = Writer::new();
        w.put(&vec![1u32, 2, 3]);
        let good = w.finish();
        assert!(Reader::open(&good).is_ok());
        // Every truncation, and every single flipped byte, is caught.
        for n in 0..good.len() {
            assert!(Reader::open(&good[..n]).is_err(), "truncated to {n}");
        }
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            assert!(Reader::open(&bad).is_err(), "byte {i} flipped");
        }
        // Another format is named as such.
        let mut other = good.clone();
        other[8] = 99;
        assert!(matches!(
            Reader::open(&other),
            Err(SnapshotError::Version { found: 99 })
        ));
    }

    #[test]
    fn a_length_larger_than_the_rest_is_malformed_not_an_allocation() {
        let mut w = Writer::new();
        w.put(&u64::MAX);
        let bytes = w.finish();
        let mut r = Reader::open(&bytes).unwrap();
        assert!(matches!(
            r.take::<Vec<u64>>(),
            Err(SnapshotError::Malformed(_))
        ));
    }
}
