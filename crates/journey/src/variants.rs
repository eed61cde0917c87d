//! 千人千面 variants: which arm of a `send` a fan gets. Thompson sampling draws a conversion
//! rate for each arm from its Beta posterior (uniform prior: Beta(1 + converted, 1 + failed))
//! and takes the highest, so arms that convert better get more fans as evidence comes in;
//! `allocation = "fixed"` draws by weight. The report's interval and share come from here too.
//!
//! Draws take a caller's random source seeded per (run, step), so a step taken again after a
//! crash picks the same arm.

use rand::Rng;

/// An arm's evidence: runs that converted, runs whose goal window ended without it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Arm {
    pub converted: u64,
    pub failed: u64,
}

/// A draw from Beta(a, b), a, b > 0 (Marsaglia–Tsang gamma draws).
pub fn sample_beta(a: f64, b: f64, rng: &mut impl Rng) -> f64 {
    let _ = (a, b, rng);
    todo!("issue 13: variants")
}

/// Thompson sampling: the index of the arm whose posterior draw is highest.
pub fn thompson(arms: &[Arm], rng: &mut impl Rng) -> usize {
    let _ = (arms, rng);
    todo!("issue 13: variants")
}

/// An index drawn with probability proportional to `weights` (all ≥ 0, not all 0).
pub fn fixed(weights: &[f64], rng: &mut impl Rng) -> usize {
    let _ = (weights, rng);
    todo!("issue 13: variants")
}

/// The Wilson score 95% interval of a rate, `(low, high)`; `(0, 1)` with no trials.
pub fn interval95(successes: u64, trials: u64) -> (f64, f64) {
    let _ = (successes, trials);
    todo!("issue 13: variants")
}

/// Each arm's current share under Thompson sampling: the probability it is drawn, estimated
/// by `draws` draws from a fixed seed (so the report is stable for the same counts).
pub fn shares(arms: &[Arm], draws: usize) -> Vec<f64> {
    let _ = (arms, draws);
    todo!("issue 13: variants")
}
