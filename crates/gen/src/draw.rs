//! The few distributions the model needs, drawn from any `RngCore`.
//!
//! Written out here rather than taken from `rand_distr` because the model needs only these and
//! because their exact draw sequence is part of the output's identity: a dependency upgrade that
//! changed how a normal is sampled would silently change every generated file for a given seed.

use rand::RngCore;

pub(crate) trait Draw {
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64;
    fn chance(&mut self, p: f64) -> bool;
    /// Uniform integer in [lo, hi] (both inclusive; `hi < lo` yields `lo`).
    fn between(&mut self, lo: i64, hi: i64) -> i64;
    /// Uniform index in [0, n).
    fn below(&mut self, n: u32) -> u32;
    /// Exponential with the given mean.
    fn exp(&mut self, mean: f64) -> f64;
    /// Standard normal.
    fn normal(&mut self) -> f64;
    /// Number of successes before the first failure, with the given mean; at most `cap`.
    fn geometric(&mut self, mean: f64, cap: u32) -> u32;
    /// Index into a cumulative weight table (last entry is the total).
    fn pick(&mut self, cumulative: &[u32]) -> usize;
}

impl<R: RngCore> Draw for R {
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    fn between(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        let span = (hi - lo) as u64 + 1;
        lo + (self.next_u64() % span) as i64
    }

    fn below(&mut self, n: u32) -> u32 {
        ((self.next_u32() as u64 * n as u64) >> 32) as u32
    }

    fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }

    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit();
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    fn geometric(&mut self, mean: f64, cap: u32) -> u32 {
        let p = mean / (1.0 + mean);
        let mut n = 0;
        while n < cap && self.unit() < p {
            n += 1;
        }
        n
    }

    fn pick(&mut self, cumulative: &[u32]) -> usize {
        let total = *cumulative.last().expect("non-empty weight table");
        let x = self.below(total);
        cumulative.partition_point(|&c| c <= x)
    }
}

/// Turns weights into the cumulative table `Draw::pick` wants, at compile time.
pub(crate) const fn cumulative<const N: usize>(weights: [u32; N]) -> [u32; N] {
    let mut out = [0; N];
    let mut acc = 0;
    let mut i = 0;
    while i < N {
        acc += weights[i];
        out[i] = acc;
        i += 1;
    }
    out
}
