//! The BG/NBD model (Fader, Hardie & Lee, "Counting your customers the easy way", 2005).
//!
//! While alive, a customer buys at a Poisson rate λ; λ varies across customers as a gamma
//! with shape `r` and rate `alpha`. After each repeat purchase the customer drops out for good
//! with probability p; p varies across customers as a beta with `a` and `b`. A customer with
//! `x` repeat purchases, the last at `t_x`, observed for `T`, contributes
//!
//! ```text
//! LL = lnΓ(r+x) − lnΓ(r) + r ln α + lnΓ(a+b) + lnΓ(b+x) − lnΓ(b) − lnΓ(a+b+x)
//!      + ln( (α+T)^−(r+x) + [x>0]·a/(b+x−1)·(α+t_x)^−(r+x) )
//! ```
//!
//! (the last term by log-sum-exp, as the two powers underflow for large `x`). This is the
//! full log-likelihood of the summaries; nothing is dropped.
//!
//! [`fit_bgnbd`] maximises its sum over [`Rows`] — customers with identical `(x, t_x, T)`
//! collapsed into one weighted row — with [`crate::optim`]'s BFGS over
//! `(ln r, ln(α/s), ln a, ln b)`, `s` being the mean `T`, so the start and the tolerances do
//! not depend on the time unit. The x-only terms are computed once per distinct `x`.

use serde::Serialize;

use crate::collapse::{ByFrequency, collapse};
use crate::optim::{self, Stop};
use crate::special::{digamma, hyp2f1, ln_gamma};
use crate::{Customer, Fit, LtvError};

const MODEL: &str = "BG/NBD";

/// The four BG/NBD parameters; `alpha` is in the summary's time unit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BgNbd {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
}

/// Customers collapsed into weighted rows, grouped by their distinct `x`.
#[derive(Debug, Clone)]
pub struct Rows {
    /// The rows of each distinct frequency.
    by_x: ByFrequency,
    t_x: Vec<f64>,
    t: Vec<f64>,
    /// How many customers each row stands for.
    w: Vec<f64>,
    customers: u64,
    /// The mean `T`: the time scale `alpha` is searched on.
    scale: f64,
}

impl Rows {
    /// Collapses `customers` into weighted rows. Refuses an empty summary, one without
    /// repeat purchases, and one where every customer is alike (nothing varies for the
    /// model to explain).
    pub fn new(customers: &[Customer]) -> Result<Rows, LtvError> {
        if customers.is_empty() {
            return Err(LtvError::NoCustomers);
        }
        let n = customers.len() as u64;
        if customers.iter().all(|c| c.frequency() == 0.0) {
            return Err(LtvError::NoRepeatBuyers {
                model: MODEL,
                customers: n,
            });
        }
        // Non-negative finite floats sort by their bits as by their values.
        let keys: Vec<(u64, u64, u64)> = customers
            .iter()
            .map(|c| (c.frequency() as u64, c.recency().to_bits(), c.T().to_bits()))
            .collect();
        let (mut t_x, mut t, mut w) = (Vec::new(), Vec::new(), Vec::new());
        let by_x = collapse(
            keys,
            |k| k.0,
            |k, weight| {
                t_x.push(f64::from_bits(k.1));
                t.push(f64::from_bits(k.2));
                w.push(weight);
            },
        );
        let rows = Rows {
            by_x,
            t_x,
            t,
            w,
            customers: n,
            scale: customers.iter().map(|c| c.T()).sum::<f64>() / n as f64,
        };
        if rows.w.len() == 1 {
            return Err(LtvError::NotIdentified {
                model: MODEL,
                reason: format!(
                    "all {n} customers have the same frequency, recency and T, so nothing varies for the model to explain"
                ),
            });
        }
        Ok(rows)
    }

    /// The customers the rows stand for.
    pub fn customers(&self) -> u64 {
        self.customers
    }

    /// Distinct rows.
    pub fn len(&self) -> usize {
        self.w.len()
    }

    /// Whether there are no rows (never, for rows [`Rows::new`] made).
    pub fn is_empty(&self) -> bool {
        self.w.is_empty()
    }

    /// Customers with at least one repeat purchase.
    pub fn repeat_customers(&self) -> u64 {
        self.by_x
            .xs
            .iter()
            .zip(&self.by_x.weight)
            .filter(|(x, _)| **x > 0.0)
            .map(|(_, w)| *w as u64)
            .sum()
    }
}

impl BgNbd {
    fn from_theta(theta: &[f64; 4], scale: f64) -> BgNbd {
        BgNbd {
            r: theta[0].exp(),
            alpha: scale * theta[1].exp(),
            a: theta[2].exp(),
            b: theta[3].exp(),
        }
    }

    /// The total log-likelihood of `rows` and its gradient with respect to
    /// `(r, alpha, a, b)`.
    pub fn log_likelihood(&self, rows: &Rows) -> (f64, [f64; 4]) {
        let BgNbd { r, alpha, a, b } = *self;
        let (ln_alpha, ln_a) = (alpha.ln(), a.ln());
        let common = -ln_gamma(r) + r * ln_alpha + ln_gamma(a + b) - ln_gamma(b);
        let (psi_r, psi_ab, psi_b) = (digamma(r), digamma(a + b), digamma(b));
        let mut ll = 0.0;
        let mut g = [0.0; 4];
        for (i, (&x, &wx)) in rows.by_x.xs.iter().zip(&rows.by_x.weight).enumerate() {
            // Terms of x alone: once per distinct x.
            ll += wx * (common + ln_gamma(r + x) + ln_gamma(b + x) - ln_gamma(a + b + x));
            let psi_abx = digamma(a + b + x);
            g[0] += wx * (digamma(r + x) - psi_r + ln_alpha);
            g[1] += wx * r / alpha;
            g[2] += wx * (psi_ab - psi_abx);
            g[3] += wx * (psi_ab + digamma(b + x) - psi_b - psi_abx);
            let rx = r + x;
            let range = rows.by_x.rows(i);
            let (ts, w) = (&rows.t[range.clone()], &rows.w[range.clone()]);
            if x == 0.0 {
                for (&t, &w) in ts.iter().zip(w) {
                    let at = alpha + t;
                    ll -= w * rx * at.ln();
                    g[0] -= w * at.ln();
                    g[1] -= w * rx / at;
                }
                continue;
            }
            let ln_bx = (b + x - 1.0).ln();
            let c = ln_a - ln_bx;
            let t_xs = &rows.t_x[range];
            let (mut l, mut gr, mut galpha, mut wb_sum) = (0.0, 0.0, 0.0, 0.0);
            for ((&t, &t_x), &w) in ts.iter().zip(t_xs).zip(w) {
                let (at, atx) = (alpha + t, alpha + t_x);
                let (lt, ltx) = (at.ln(), atx.ln());
                // ln(e^A + e^B), A for "alive at T", B for "dropped out after t_x".
                let big_a = -rx * lt;
                let big_b = c - rx * ltx;
                let d = (-(big_a - big_b).abs()).exp();
                let wb = if big_b > big_a {
                    1.0 / (1.0 + d)
                } else {
                    d / (1.0 + d)
                };
                l += w * (big_a.max(big_b) + d.ln_1p());
                gr -= w * ((1.0 - wb) * lt + wb * ltx);
                galpha -= w * rx * ((1.0 - wb) / at + wb / atx);
                wb_sum += w * wb;
            }
            ll += l;
            g[0] += gr;
            g[1] += galpha;
            g[2] += wb_sum / a;
            g[3] -= wb_sum / (b + x - 1.0);
        }
        (ll, g)
    }

    /// The probability that `customer` is still alive at the end of observation:
    /// 1 / (1 + [x>0]·a/(b+x−1)·((α+T)/(α+t_x))^(r+x)).
    pub fn p_alive(&self, customer: &Customer) -> f64 {
        let x = customer.frequency();
        if x == 0.0 {
            return 1.0;
        }
        1.0 / (1.0 + self.dropout_odds(customer).exp())
    }

    /// ln( a/(b+x−1) · ((α+T)/(α+t_x))^(r+x) ) for x > 0.
    fn dropout_odds(&self, c: &Customer) -> f64 {
        let x = c.frequency();
        self.a.ln() - (self.b + x - 1.0).ln()
            + (self.r + x) * ((self.alpha + c.T()).ln() - (self.alpha + c.recency()).ln())
    }

    /// The expected number of purchases by `customer` in the next `t` time units (Fader,
    /// Hardie & Lee 2005, eq. 10):
    ///
    /// ```text
    /// (a+b+x−1)/(a−1) · [1 − ((α+T)/(α+T+t))^(r+x) · ₂F₁(r+x, b+x; a+b+x−1; t/(α+T+t))]
    ///   / (1 + [x>0]·a/(b+x−1)·((α+T)/(α+t_x))^(r+x))
    /// ```
    ///
    /// The formula holds for any a ≠ 1 (CDNOW's own a is 0.793): below 1 the factor in
    /// front and the bracket are both negative. At a = 1 it is 0/0; the prediction is smooth
    /// in `a`, so within 1e-4 of 1 the mean of its values at a = 1 ± 1e-4 is used (an error
    /// of order 1e-8). The series for ₂F₁ needs a+b+x−1 > 0; a customer without repeat
    /// purchases under a fit with a+b ≤ 1 gets [`LtvError::PredictionUndefined`].
    pub fn expected_purchases(&self, customer: &Customer, t: f64) -> Result<f64, LtvError> {
        if !(t.is_finite() && t >= 0.0) {
            return Err(LtvError::PredictionUndefined {
                what: "expected purchases",
                reason: format!("the horizon {t} is not a non-negative number"),
            });
        }
        if t == 0.0 {
            return Ok(0.0);
        }
        const NEAR_ONE: f64 = 1e-4;
        if (self.a - 1.0).abs() < NEAR_ONE {
            let at = |a| BgNbd { a, ..*self }.expected_purchases_at(customer, t);
            return Ok((at(1.0 - NEAR_ONE)? + at(1.0 + NEAR_ONE)?) / 2.0);
        }
        self.expected_purchases_at(customer, t)
    }

    fn expected_purchases_at(&self, customer: &Customer, t: f64) -> Result<f64, LtvError> {
        let BgNbd { r, alpha, a, b } = *self;
        let x = customer.frequency();
        let c = a + b + x - 1.0;
        let undefined = |reason: String| LtvError::PredictionUndefined {
            what: "expected purchases",
            reason,
        };
        if c <= 0.0 {
            return Err(undefined(format!(
                "a + b + x − 1 = {c} is not positive (a = {a}, b = {b}, x = {x}), and the closed form needs it"
            )));
        }
        let at = alpha + customer.T();
        let z = t / (at + t);
        let f = hyp2f1(r + x, b + x, c, z).ok_or_else(|| {
            undefined(format!(
                "the hypergeometric series did not converge for a horizon of {t} (z = {z})"
            ))
        })?;
        let bracket = 1.0 - ((r + x) * (at / (at + t)).ln()).exp() * f;
        let odds = if x > 0.0 {
            self.dropout_odds(customer).exp()
        } else {
            0.0
        };
        let e = c / (a - 1.0) * bracket / (1.0 + odds);
        if !e.is_finite() || e < 0.0 {
            return Err(undefined(format!(
                "the closed form gave {e} for a horizon of {t}"
            )));
        }
        Ok(e)
    }
}

/// Where the fits start, in `(ln r, ln(α/s), ln a, ln b)`: near the middle of what real
/// customer bases give, then to either side. Tried in order until one converges.
const STARTS: [[f64; 4]; 3] = [
    [0.0, 0.0, 0.0, 0.0],
    [-1.0, -1.5, -0.5, 1.0],
    [1.0, 1.0, 1.0, -0.5],
];

/// Beyond e^±15 (a parameter below 3e-7 or above 3e6, `alpha` relative to the mean `T`) the
/// data did not pin the parameter down.
pub(crate) const IDENTIFIED: f64 = 15.0;

/// Fits BG/NBD to `customers` by maximum likelihood.
pub fn fit_bgnbd(customers: &[Customer]) -> Result<Fit<BgNbd>, LtvError> {
    let rows = Rows::new(customers)?;
    fit_rows(&rows)
}

const NAMES: [&str; 4] = ["r", "alpha", "a", "b"];

/// Fits BG/NBD to rows already collapsed.
pub fn fit_rows(rows: &Rows) -> Result<Fit<BgNbd>, LtvError> {
    let n = rows.customers as f64;
    let objective = |theta: &[f64; 4]| {
        let p = BgNbd::from_theta(theta, rows.scale);
        let (ll, g) = p.log_likelihood(rows);
        let chain = [p.r, p.alpha, p.a, p.b];
        (-ll / n, std::array::from_fn(|i| -g[i] * chain[i] / n))
    };
    let (mut iterations, mut best, mut ran_off) = (0, f64::NEG_INFINITY, None);
    for start in STARTS {
        let o = optim::minimize(objective, start, &optim::Options::default());
        iterations += o.iterations;
        best = best.max(-o.f * n);
        let extreme = o.x.iter().any(|v| v.abs() > IDENTIFIED);
        match o.stop {
            Stop::Converged if !extreme => {
                let params = BgNbd::from_theta(&o.x, rows.scale);
                return Ok(Fit {
                    params,
                    log_likelihood: params.log_likelihood(rows).0,
                    iterations: o.iterations,
                    converged: true,
                    customers: rows.customers,
                    rows: rows.len(),
                });
            }
            // However it stopped, a parameter out there is not an estimate.
            _ if extreme || o.stop == Stop::OutOfBounds => {
                let i = (0..o.x.len())
                    .max_by(|&i, &j| o.x[i].abs().total_cmp(&o.x[j].abs()))
                    .unwrap_or(0);
                ran_off = Some((NAMES[i], o.x[i] < 0.0, {
                    let p = BgNbd::from_theta(&o.x, rows.scale);
                    [p.r, p.alpha, p.a, p.b][i]
                }));
            }
            _ => {}
        }
    }
    if let Some((name, to_zero, value)) = ran_off {
        return Err(LtvError::NotIdentified {
            model: MODEL,
            reason: format!(
                "the likelihood keeps rising as {name} goes to {} (the search stopped at {name} = {value:.3e})",
                if to_zero { "0" } else { "infinity" }
            ),
        });
    }
    Err(LtvError::DidNotConverge {
        model: MODEL,
        iterations,
        starts: STARTS.len(),
        log_likelihood: best,
    })
}
