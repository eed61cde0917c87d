//! Collapsing a summary into weighted rows grouped by frequency, which both likelihoods
//! share: customers with the same key stand as one row with a weight, and the rows of one
//! frequency `x` are contiguous, so the terms of `x` alone are computed once per group.

use std::ops::Range;

/// Rows grouped by their frequency `x`.
#[derive(Debug, Clone, Default)]
pub(crate) struct ByFrequency {
    /// The distinct frequencies, ascending.
    pub(crate) xs: Vec<f64>,
    /// How many customers have each of `xs`.
    pub(crate) weight: Vec<f64>,
    /// Rows `start[i]..start[i + 1]` have frequency `xs[i]`.
    start: Vec<usize>,
}

impl ByFrequency {
    /// The rows of the `i`-th frequency.
    pub(crate) fn rows(&self, i: usize) -> Range<usize> {
        self.start[i]..self.start[i + 1]
    }
}

/// Sorts `keys` and calls `row(key, weight)` once per distinct key, ascending, `weight` being
/// how many times it occurs; `frequency` reads `x` off a key, and must be its first order
/// (keys sort by frequency first), so that each frequency's rows are contiguous.
pub(crate) fn collapse<K: Ord + Copy>(
    mut keys: Vec<K>,
    frequency: impl Fn(&K) -> u64,
    mut row: impl FnMut(K, f64),
) -> ByFrequency {
    keys.sort_unstable();
    let mut groups = ByFrequency::default();
    let (mut i, mut rows) = (0, 0);
    while i < keys.len() {
        let k = keys[i];
        let mut j = i + 1;
        while j < keys.len() && keys[j] == k {
            j += 1;
        }
        let (x, w) = (frequency(&k) as f64, (j - i) as f64);
        if groups.xs.last() != Some(&x) {
            groups.xs.push(x);
            groups.weight.push(0.0);
            groups.start.push(rows);
        }
        *groups.weight.last_mut().expect("pushed above") += w;
        row(k, w);
        rows += 1;
        i = j;
    }
    groups.start.push(rows);
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_keys_become_one_weighted_row_and_frequencies_group_their_rows() {
        let mut rows = Vec::new();
        let g = collapse(
            vec![(2, 5), (0, 1), (2, 5), (2, 7), (0, 1), (0, 3)],
            |k| k.0,
            |k, w| rows.push((k, w)),
        );
        assert_eq!(
            rows,
            [((0, 1), 2.0), ((0, 3), 1.0), ((2, 5), 2.0), ((2, 7), 1.0)]
        );
        assert_eq!(g.xs, [0.0, 2.0]);
        assert_eq!(g.weight, [3.0, 3.0]);
        assert_eq!((g.rows(0), g.rows(1)), (0..2, 2..4));
    }

    #[test]
    fn no_keys_no_groups() {
        let g = collapse(Vec::<(u64, u64)>::new(), |k| k.0, |_, _| unreachable!());
        assert!(g.xs.is_empty());
        assert_eq!(g.start, [0]);
    }
}
