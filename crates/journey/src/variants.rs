//! 千人千面 variants: which arm of a `send` a fan gets. Thompson sampling draws a conversion
//! rate for each arm from its Beta posterior (uniform prior: Beta(1 + converted, 1 + failed))
//! and takes the highest, so arms that convert better get more fans as evidence comes in;
//! `allocation = "fixed"` draws by weight. The report's interval and share come from here too.
//!
//! Draws take a caller's random source seeded per (run, step), so a step taken again after a
//! crash picks the same arm.
//!
//! The draws are implemented here rather than taken from a distributions crate: a gamma
//! draw by Marsaglia and Tsang's method ("A Simple Method for Generating Gamma Variables",
//! 2000) with normal draws by Marsaglia's polar method, and a beta draw as the ratio of two
//! gamma draws. [`simulate`] replays the allocation on arms with known rates: the
//! benchmark of how quickly it finds the better arm, with outcomes learned immediately or
//! many entries later (as goal windows close).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// An arm's evidence: runs that converted, runs whose goal window ended without it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Arm {
    pub converted: u64,
    pub failed: u64,
}

/// A draw from Beta(a, b), a, b > 0 (Marsaglia–Tsang gamma draws): `x / (x + y)` with
/// `x ~ Gamma(a)` and `y ~ Gamma(b)`. In [0, 1].
pub fn sample_beta(a: f64, b: f64, rng: &mut impl Rng) -> f64 {
    let x = sample_gamma(a, rng);
    let y = sample_gamma(b, rng);
    if x + y > 0.0 {
        x / (x + y)
    } else {
        // Both underflowed (shapes far below 1): which side is as likely as the shapes say.
        if rng.random::<f64>() * (a + b) < a {
            1.0
        } else {
            0.0
        }
    }
}

/// A draw from Gamma(shape, 1), shape > 0. For shape < 1, a draw for shape + 1 scaled by
/// `u^(1/shape)` (Marsaglia–Tsang's boost).
fn sample_gamma(shape: f64, rng: &mut impl Rng) -> f64 {
    if shape < 1.0 {
        let u = open_unit(rng);
        return sample_gamma(shape + 1.0, rng) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = sample_normal(rng);
        let v = 1.0 + c * x;
        if v <= 0.0 {
            continue;
        }
        let v = v * v * v;
        let u = open_unit(rng);
        let x2 = x * x;
        // The squeeze accepts most draws without a logarithm.
        if u < 1.0 - 0.0331 * x2 * x2 || u.ln() < 0.5 * x2 + d * (1.0 - v + v.ln()) {
            return d * v;
        }
    }
}

/// A standard normal draw (Marsaglia's polar method; the second draw of the pair is
/// dropped, which keeps the function stateless).
fn sample_normal(rng: &mut impl Rng) -> f64 {
    loop {
        let u = 2.0 * rng.random::<f64>() - 1.0;
        let v = 2.0 * rng.random::<f64>() - 1.0;
        let s = u * u + v * v;
        if s > 0.0 && s < 1.0 {
            return u * (-2.0 * s.ln() / s).sqrt();
        }
    }
}

/// A uniform draw in (0, 1], safe to take the logarithm of.
fn open_unit(rng: &mut impl Rng) -> f64 {
    1.0 - rng.random::<f64>()
}

/// Thompson sampling: the index of the arm whose posterior draw is highest. `arms` is
/// non-empty (a `send` with variants has at least two); for an empty slice the answer is 0.
pub fn thompson(arms: &[Arm], rng: &mut impl Rng) -> usize {
    let mut best = (0, f64::NEG_INFINITY);
    for (i, arm) in arms.iter().enumerate() {
        let draw = sample_beta(1.0 + arm.converted as f64, 1.0 + arm.failed as f64, rng);
        if draw > best.1 {
            best = (i, draw);
        }
    }
    best.0
}

/// An index drawn with probability proportional to `weights` (all ≥ 0, not all 0). Weights
/// that are not positive numbers count as 0; if none is positive, the draw is uniform. An
/// empty slice gives 0.
pub fn fixed(weights: &[f64], rng: &mut impl Rng) -> usize {
    let weight = |w: f64| if w.is_finite() && w > 0.0 { w } else { 0.0 };
    let total: f64 = weights.iter().map(|&w| weight(w)).sum();
    if weights.is_empty() {
        return 0;
    }
    if total <= 0.0 || !total.is_finite() {
        return rng.random_range(0..weights.len());
    }
    let mut r = rng.random::<f64>() * total;
    let mut last_positive = 0;
    for (i, &w) in weights.iter().enumerate() {
        let w = weight(w);
        if w > 0.0 {
            if r < w {
                return i;
            }
            r -= w;
            last_positive = i;
        }
    }
    // Rounding left a sliver past the end.
    last_positive
}

/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_964;

/// The Wilson score 95% interval of a rate, `(low, high)`; `(0, 1)` with no trials.
/// `successes` above `trials` counts as `trials`.
pub fn interval95(successes: u64, trials: u64) -> (f64, f64) {
    if trials == 0 {
        return (0.0, 1.0);
    }
    let n = trials as f64;
    let p = successes.min(trials) as f64 / n;
    let z2 = Z95 * Z95;
    let denominator = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denominator;
    let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denominator;
    ((center - half).max(0.0), (center + half).min(1.0))
}

/// The seed of [`shares`]' draws.
const SHARES_SEED: u64 = 0x5159;

/// Each arm's current share under Thompson sampling: the probability it is drawn, estimated
/// by `draws` draws from a fixed seed (so the report is stable for the same counts and the
/// same build: `StdRng`'s algorithm may change with a `rand` upgrade). The shares sum to 1;
/// with no draws they are equal; no arms give an empty vector.
pub fn shares(arms: &[Arm], draws: usize) -> Vec<f64> {
    if arms.is_empty() {
        return Vec::new();
    }
    if draws == 0 {
        return vec![1.0 / arms.len() as f64; arms.len()];
    }
    let mut rng = StdRng::seed_from_u64(SHARES_SEED);
    let mut wins = vec![0usize; arms.len()];
    for _ in 0..draws {
        wins[thompson(arms, &mut rng)] += 1;
    }
    wins.into_iter().map(|w| w as f64 / draws as f64).collect()
}

/// What [`simulate`] found: how Thompson sampling allocated entries between arms with
/// known conversion rates.
#[derive(Debug, Clone, PartialEq)]
pub struct Simulation {
    /// Entries allocated to each arm.
    pub allocations: Vec<u64>,
    /// The share of the last 10% of entries (at least one) that went to each arm: where the
    /// allocation settled.
    pub late_shares: Vec<f64>,
    /// Conversions observed, over all arms.
    pub conversions: u64,
    /// Expected conversions lost against always choosing the best arm: the sum over entries
    /// of (best rate − chosen arm's rate).
    pub regret: f64,
}

/// Replays Thompson sampling over `entries` fans entering one after another, on arms whose
/// true conversion rates are `rates`: each entry takes the arm [`thompson`] draws, converts
/// with that arm's rate, and its outcome is counted `delay` entries later (0: before the
/// next entry picks; the real system learns when goal windows close). Deterministic for a
/// `seed`.
pub fn simulate(rates: &[f64], entries: usize, delay: usize, seed: u64) -> Simulation {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut arms = vec![Arm::default(); rates.len()];
    let mut allocations = vec![0u64; rates.len()];
    let mut late = vec![0u64; rates.len()];
    let late_from = entries - (entries / 10).max(entries.min(1));
    let best = rates.iter().copied().fold(0.0f64, f64::max);
    // Outcomes not yet known: (entry at which it is learned, arm, converted).
    let mut pending = std::collections::VecDeque::new();
    let mut conversions = 0;
    let mut regret = 0.0;
    for entry in 0..entries {
        if rates.is_empty() {
            break;
        }
        while pending.front().is_some_and(|&(known, _, _)| known <= entry) {
            let (_, arm, converted): (usize, usize, bool) = pending.pop_front().unwrap_or_default();
            count(&mut arms[arm], converted);
        }
        let arm = thompson(&arms, &mut rng);
        let converted = rng.random::<f64>() < rates[arm];
        allocations[arm] += 1;
        if entry >= late_from {
            late[arm] += 1;
        }
        conversions += u64::from(converted);
        regret += best - rates[arm];
        if delay == 0 {
            count(&mut arms[arm], converted);
        } else {
            pending.push_back((entry + delay, arm, converted));
        }
    }
    let late_entries = (entries - late_from).max(1) as f64;
    Simulation {
        allocations,
        late_shares: late.into_iter().map(|n| n as f64 / late_entries).collect(),
        conversions,
        regret,
    }
}

fn count(arm: &mut Arm, converted: bool) {
    if converted {
        arm.converted += 1;
    } else {
        arm.failed += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha8Rng;

    fn moments(draws: &[f64]) -> (f64, f64) {
        let n = draws.len() as f64;
        let mean = draws.iter().sum::<f64>() / n;
        let var = draws.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
        (mean, var)
    }

    #[test]
    fn beta_draws_have_the_right_mean_and_variance() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for (a, b) in [
            (1.0, 1.0),
            (2.0, 5.0),
            (0.5, 0.5),
            (0.2, 3.0),
            (31.0, 971.0),
            (1201.0, 18801.0),
        ] {
            let draws: Vec<f64> = (0..100_000).map(|_| sample_beta(a, b, &mut rng)).collect();
            assert!(
                draws.iter().all(|x| (0.0..=1.0).contains(x)),
                "Beta({a}, {b})"
            );
            let (mean, var) = moments(&draws);
            let want_mean = a / (a + b);
            let want_var = a * b / ((a + b) * (a + b) * (a + b + 1.0));
            // Five standard errors of the mean; 5% on the variance.
            let se = (want_var / draws.len() as f64).sqrt();
            assert!(
                (mean - want_mean).abs() < 5.0 * se,
                "Beta({a}, {b}) mean {mean} vs {want_mean}"
            );
            assert!(
                (var - want_var).abs() < 0.05 * want_var,
                "Beta({a}, {b}) variance {var} vs {want_var}"
            );
        }
    }

    #[test]
    fn beta_draws_follow_the_distribution() {
        // Beta(a, 1) has CDF x^a: the boost for a < 1 is where a mistake would show.
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for a in [0.3, 0.7, 1.0, 2.5] {
            let n = 100_000;
            for x in [0.1, 0.5, 0.9] {
                let below = (0..n).filter(|_| sample_beta(a, 1.0, &mut rng) < x).count();
                let p = f64::powf(x, a);
                let se = (p * (1.0 - p) / n as f64).sqrt();
                let got = below as f64 / n as f64;
                assert!(
                    (got - p).abs() < 5.0 * se,
                    "Beta({a}, 1) P(X < {x}) = {got} vs {p}"
                );
            }
        }
    }

    #[test]
    fn gamma_draws_have_the_right_mean_and_variance() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for k in [0.1, 0.9, 1.0, 4.0, 250.0] {
            let draws: Vec<f64> = (0..100_000).map(|_| sample_gamma(k, &mut rng)).collect();
            let (mean, var) = moments(&draws);
            let se = (k / draws.len() as f64).sqrt();
            assert!((mean - k).abs() < 5.0 * se, "Gamma({k}) mean {mean}");
            assert!((var - k).abs() < 0.06 * k, "Gamma({k}) variance {var}");
        }
    }

    #[test]
    fn normal_draws_are_standard() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let draws: Vec<f64> = (0..200_000).map(|_| sample_normal(&mut rng)).collect();
        let (mean, var) = moments(&draws);
        assert!(mean.abs() < 0.012, "{mean}");
        assert!((var - 1.0).abs() < 0.02, "{var}");
    }

    #[test]
    fn thompson_prefers_the_arm_with_more_evidence_of_converting() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let arms = [
            Arm {
                converted: 30,
                failed: 970,
            },
            Arm {
                converted: 60,
                failed: 940,
            },
        ];
        let b = (0..10_000)
            .filter(|_| thompson(&arms, &mut rng) == 1)
            .count();
        assert!(b > 9_900, "{b}");
        // No evidence: even.
        let fresh = [Arm::default(); 2];
        let b = (0..10_000)
            .filter(|_| thompson(&fresh, &mut rng) == 1)
            .count();
        assert!((4_800..5_200).contains(&b), "{b}");
        assert_eq!(thompson(&[], &mut rng), 0);
        assert_eq!(thompson(&[Arm::default()], &mut rng), 0);
    }

    #[test]
    fn fixed_draws_by_weight() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut seen = [0usize; 4];
        let n = 100_000;
        for _ in 0..n {
            seen[fixed(&[1.0, 0.0, 3.0, 6.0], &mut rng)] += 1;
        }
        assert_eq!(seen[1], 0);
        for (i, want) in [(0, 0.1), (2, 0.3), (3, 0.6)] {
            let got = seen[i] as f64 / n as f64;
            assert!((got - want).abs() < 0.01, "{i}: {got}");
        }
        let mut seen = [0usize; 3];
        for _ in 0..30_000 {
            seen[fixed(&[0.0, 0.0, 0.0], &mut rng)] += 1;
        }
        assert!(
            seen.iter().all(|&s| (9_500..10_500).contains(&s)),
            "{seen:?}"
        );
        assert_eq!(fixed(&[], &mut rng), 0);
        for _ in 0..1000 {
            assert_eq!(fixed(&[f64::NAN, 2.0, -1.0, f64::INFINITY], &mut rng), 1);
        }
    }

    #[test]
    fn wilson_intervals() {
        let close = |(l, h): (f64, f64), (wl, wh): (f64, f64)| {
            assert!(
                (l - wl).abs() < 1e-3 && (h - wh).abs() < 1e-3,
                "({l}, {h}) vs ({wl}, {wh})"
            );
        };
        close(interval95(6, 100), (0.0278, 0.1247));
        close(interval95(0, 10), (0.0, 0.2775));
        close(interval95(10, 10), (0.7225, 1.0));
        close(interval95(50, 100), (0.4038, 0.5962));
        close(interval95(1, 1000), (0.000177, 0.005634));
        assert_eq!(interval95(0, 0), (0.0, 1.0));
        assert_eq!(interval95(3, 0), (0.0, 1.0));
        assert_eq!(interval95(20, 10), interval95(10, 10));
        let (l, h) = interval95(0, 10);
        assert!(l >= 0.0 && h <= 1.0);
    }

    #[test]
    fn shares_sum_to_one_and_are_stable() {
        let arms = [
            Arm {
                converted: 3,
                failed: 97,
            },
            Arm {
                converted: 6,
                failed: 94,
            },
            Arm {
                converted: 5,
                failed: 95,
            },
        ];
        let s = shares(&arms, 10_000);
        assert_eq!(s.len(), 3);
        assert!((s.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!(s[1] > s[2] && s[2] > s[0], "{s:?}");
        assert_eq!(s, shares(&arms, 10_000));
        assert_eq!(shares(&arms, 0), vec![1.0 / 3.0; 3]);
        assert!(shares(&[], 100).is_empty());
        let even = shares(&[Arm::default(); 2], 20_000);
        assert!((even[0] - 0.5).abs() < 0.02, "{even:?}");
    }

    #[test]
    fn thompson_finds_the_better_arm_one_entry_at_a_time() {
        // By hand, with a caller's random source, the way the run state machine will use it.
        let rates = [0.03, 0.06];
        let mut rng = ChaCha8Rng::seed_from_u64(2024);
        let mut arms = [Arm::default(); 2];
        let (mut late_b, mut regret) = (0, 0.0);
        for entry in 0..20_000 {
            let arm = thompson(&arms, &mut rng);
            count(&mut arms[arm], rng.random::<f64>() < rates[arm]);
            regret += 0.06 - rates[arm];
            if entry >= 18_000 && arm == 1 {
                late_b += 1;
            }
        }
        assert!(late_b >= 1_600, "{late_b} of the last 2,000 went to b");
        assert!(regret < 60.0, "regret {regret}");
    }

    #[test]
    fn simulation_with_immediate_outcomes() {
        let sim = simulate(&[0.03, 0.06], 20_000, 0, 0x5159);
        assert_eq!(sim.allocations.iter().sum::<u64>(), 20_000);
        assert!(sim.late_shares[1] >= 0.8, "{sim:?}");
        assert!(sim.regret < 60.0, "{sim:?}");
        assert!((sim.regret - 0.03 * sim.allocations[0] as f64).abs() < 1e-6);
        assert_eq!(sim, simulate(&[0.03, 0.06], 20_000, 0, 0x5159));
    }

    #[test]
    fn simulation_with_outcomes_learned_a_thousand_entries_later() {
        let sim = simulate(&[0.03, 0.06], 20_000, 1_000, 0x5159);
        assert!(sim.late_shares[1] >= 0.8, "{sim:?}");
        // The first thousand entries are blind and each lesson comes late, yet the loss stays
        // within the same bound.
        assert!(sim.regret < 60.0, "{sim:?}");
    }

    #[test]
    fn simulation_edges() {
        let empty = simulate(&[], 100, 0, 1);
        assert!(empty.allocations.is_empty() && empty.regret == 0.0);
        let none = simulate(&[0.1, 0.2], 0, 0, 1);
        assert_eq!(none.allocations, vec![0, 0]);
        assert_eq!(none.late_shares, vec![0.0, 0.0]);
        let one = simulate(&[0.5], 5, 10, 1);
        assert_eq!(one.allocations, vec![5]);
        assert_eq!(one.late_shares, vec![1.0]);
    }
}
