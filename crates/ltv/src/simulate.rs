//! A seeded simulator of the two generative processes, so that tests can check a fit
//! recovers parameters it knows and the benchmark has a customer base of any size.
//!
//! Each customer draws a purchase rate λ ~ Gamma(r, rate α) and a dropout probability
//! p ~ Beta(a, b); from the first purchase at time 0, repeat purchases come at rate λ until
//! the end of observation `T` (uniform over [`Simulation::observed`]), and after each one the
//! customer drops out with probability p. With Gamma-Gamma parameters, the customer also
//! draws ν ~ Gamma(q, rate v), and the mean of their `x` purchase amounts (each
//! Gamma(p, rate ν)) is drawn directly as Gamma(px, rate xν).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{BgNbd, Customer, GammaGamma};

/// What to simulate.
#[derive(Debug, Clone, Copy)]
pub struct Simulation {
    pub customers: usize,
    pub bgnbd: BgNbd,
    pub gamma_gamma: Option<GammaGamma>,
    /// `T` is drawn uniformly from this range.
    pub observed: (f64, f64),
    /// Times in whole units, as real summaries count days: `T` rounded, `t_x` rounded down.
    /// Many customers then share a row, as in real data.
    pub whole_units: bool,
    pub seed: u64,
}

/// The simulated customers; customer `i` has line `i + 2`, as if read from a file with a
/// header.
pub fn simulate(s: &Simulation) -> Vec<Customer> {
    let mut rng = StdRng::seed_from_u64(s.seed);
    let (lo, hi) = s.observed;
    (0..s.customers)
        .map(|i| {
            let mut t = lo + (hi - lo) * rng.random::<f64>();
            if s.whole_units {
                t = t.round().max(1.0);
            }
            let lambda = gamma(&mut rng, s.bgnbd.r, s.bgnbd.alpha);
            let ga = gamma(&mut rng, s.bgnbd.a, 1.0);
            let p = ga / (ga + gamma(&mut rng, s.bgnbd.b, 1.0));
            let (mut x, mut t_x, mut now) = (0u64, 0.0, 0.0);
            loop {
                now += exponential(&mut rng) / lambda;
                if now > t {
                    break;
                }
                x += 1;
                t_x = now;
                if rng.random::<f64>() < p {
                    break;
                }
            }
            if s.whole_units {
                t_x = f64::floor(t_x);
            }
            let monetary = match s.gamma_gamma {
                Some(gg) if x > 0 => {
                    let nu = gamma(&mut rng, gg.q, gg.v);
                    let xf = x as f64;
                    Some(gamma(&mut rng, gg.p * xf, xf * nu))
                }
                _ => None,
            };
            Customer::simulated(i as u64 + 2, x as f64, t_x, t, monetary)
        })
        .collect()
}

/// (0, 1]: never 0, so logarithms stay finite.
fn unit(rng: &mut StdRng) -> f64 {
    1.0 - rng.random::<f64>()
}

fn exponential(rng: &mut StdRng) -> f64 {
    -unit(rng).ln()
}

fn normal(rng: &mut StdRng) -> f64 {
    (-2.0 * unit(rng).ln()).sqrt() * (std::f64::consts::TAU * rng.random::<f64>()).cos()
}

/// Gamma(shape, rate) by Marsaglia & Tsang (2000); a shape below 1 is boosted by 1 and
/// scaled back by U^(1/shape).
fn gamma(rng: &mut StdRng, shape: f64, rate: f64) -> f64 {
    if shape < 1.0 {
        return gamma(rng, shape + 1.0, rate) * unit(rng).powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let z = normal(rng);
        let v = (1.0 + c * z).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u = unit(rng);
        if u.ln() < 0.5 * z * z + d - d * v + d * v.ln() {
            return d * v / rate;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gamma_draws_have_the_right_mean_and_variance() {
        let mut rng = StdRng::seed_from_u64(1);
        for (shape, rate) in [(0.3, 2.0), (2.5, 0.5)] {
            let n = 200_000;
            let xs: Vec<f64> = (0..n).map(|_| gamma(&mut rng, shape, rate)).collect();
            let mean = xs.iter().sum::<f64>() / n as f64;
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
            assert!(
                (mean - shape / rate).abs() < 0.02 * shape / rate,
                "{shape}: {mean}"
            );
            assert!(
                (var - shape / rate / rate).abs() < 0.05 * shape / rate / rate,
                "{shape}: {var}"
            );
        }
    }
}
