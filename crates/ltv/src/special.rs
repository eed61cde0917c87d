//! Special functions: ln Γ and digamma (from `statrs`), and the Gauss hypergeometric function
//! ₂F₁ by its power series, which is all BG/NBD's expected-purchases formula needs.

/// ln Γ(x) for x > 0.
pub fn ln_gamma(x: f64) -> f64 {
    statrs::function::gamma::ln_gamma(x)
}

/// ψ(x) = d/dx ln Γ(x), for x > 0.
pub fn digamma(x: f64) -> f64 {
    statrs::function::gamma::digamma(x)
}

/// The most terms [`hyp2f1`] sums before giving up (z within about 1e-5 of 1).
pub const HYP2F1_MAX_TERMS: usize = 2_000_000;

/// ₂F₁(a, b; c; z) = Σₙ (a)ₙ(b)ₙ / ((c)ₙ n!) zⁿ for a, b, c > 0 and 0 ≤ z < 1, where every
/// term is positive.
///
/// The sum stops when what is left is provably below 1e-15 of what was summed: for k ≥ n the
/// ratio of consecutive terms, z·(a+k)(b+k)/((c+k)(k+1)), is at most
/// ρₙ = z·max(1, (a+n)/(n+1))·max(1, (b+n)/(c+n)) (each factor moves monotonically towards
/// 1), so once ρₙ < 1 the tail after term tₙ is at most tₙ·ρₙ/(1−ρₙ). `None` when the
/// arguments are outside that domain or the series needs more than [`HYP2F1_MAX_TERMS`].
pub fn hyp2f1(a: f64, b: f64, c: f64, z: f64) -> Option<f64> {
    if !(a > 0.0 && b > 0.0 && c > 0.0 && (0.0..1.0).contains(&z)) {
        return None;
    }
    let mut term = 1.0f64;
    let mut sum = 1.0f64;
    for n in 0..HYP2F1_MAX_TERMS {
        let k = n as f64;
        term *= z * (a + k) * (b + k) / ((c + k) * (k + 1.0));
        sum += term;
        if !sum.is_finite() {
            return None;
        }
        let k1 = k + 1.0;
        let rho = z * ((a + k1) / (k1 + 1.0)).max(1.0) * ((b + k1) / (c + k1)).max(1.0);
        if rho < 1.0 && term * rho / (1.0 - rho) <= 1e-15 * sum {
            return Some(sum);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyp2f1_matches_closed_forms() {
        // ₂F₁(1, 1; 2; z) = −ln(1−z)/z.
        for z in [0.1, 0.5, 0.9, 0.99] {
            let want = -(1.0f64 - z).ln() / z;
            let got = hyp2f1(1.0, 1.0, 2.0, z).unwrap();
            assert!((got - want).abs() < 1e-13 * want, "z={z}: {got} vs {want}");
        }
        // ₂F₁(a, b; b; z) = (1−z)^−a.
        let got = hyp2f1(2.5, 1.3, 1.3, 0.7).unwrap();
        let want = 0.3f64.powf(-2.5);
        assert!((got - want).abs() < 1e-12 * want, "{got} vs {want}");
        assert_eq!(hyp2f1(1.0, 1.0, 2.0, 0.0), Some(1.0));
        assert_eq!(hyp2f1(1.0, 1.0, 2.0, 1.0), None);
        assert_eq!(hyp2f1(1.0, 1.0, -0.5, 0.5), None);
    }

    #[test]
    fn digamma_is_the_derivative_of_ln_gamma() {
        for x in [0.05, 0.3, 1.0, 2.5, 17.0, 300.0] {
            let h = 1e-5 * x;
            let fd = (ln_gamma(x + h) - ln_gamma(x - h)) / (2.0 * h);
            assert!((digamma(x) - fd).abs() < 1e-6 * (1.0 + fd.abs()), "x={x}");
        }
    }
}
