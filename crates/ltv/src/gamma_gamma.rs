//! The Gamma-Gamma model of monetary value (Fader & Hardie, "The Gamma-Gamma Model of
//! Monetary Value", 2013).
//!
//! A customer's purchase amounts are gamma with shape `p` and a rate ν of their own; ν varies
//! across customers as a gamma with shape `q` and rate `v`. What is observed is a customer's
//! `x` repeat purchases and their mean `m`, whose density gives
//!
//! ```text
//! LL = lnΓ(px+q) − lnΓ(px) − lnΓ(q) + q ln v + (px−1) ln m + px ln x − (px+q) ln(xm+v)
//! ```
//!
//! This is the full log-density of the observed means; nothing is dropped. Only customers
//! with x > 0 carry information, and the model assumes amounts do not depend on how often a
//! customer buys. [`fit_gamma_gamma`] maximises the sum with [`crate::optim`]'s BFGS over
//! `(ln p, ln q, ln(v/s))`, `s` being the mean `m`, so nothing depends on the currency.
//! Customers with identical `(x, m)` are collapsed, and the terms of `x` alone (ln Γ and
//! digamma of `px` and `px+q`, and the sums of ln m) are computed once per distinct `x`.

use serde::Serialize;

use crate::bgnbd::IDENTIFIED;
use crate::collapse::{ByFrequency, collapse};
use crate::optim::{self, Stop};
use crate::special::{digamma, ln_gamma};
use crate::{Customer, Fit, LtvError};

const MODEL: &str = "Gamma-Gamma";

/// The three Gamma-Gamma parameters; `v` is in the summary's money unit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GammaGamma {
    pub p: f64,
    pub q: f64,
    pub v: f64,
}

/// Repeat customers collapsed into weighted `(x, m)` rows, grouped by `x`.
#[derive(Debug, Clone)]
pub struct Rows {
    /// The rows of each distinct frequency.
    by_x: ByFrequency,
    /// Σ w·ln m per distinct x: constant in the parameters, summed once.
    x_ln_m: Vec<f64>,
    m: Vec<f64>,
    w: Vec<f64>,
    customers: u64,
    /// The mean `m`: the money scale `v` is searched on.
    scale: f64,
}

impl Rows {
    /// The customers with repeat purchases and their mean values. Every one of them must
    /// have a monetary value.
    pub fn new(customers: &[Customer]) -> Result<Rows, LtvError> {
        if customers.is_empty() {
            return Err(LtvError::NoCustomers);
        }
        let mut keys = Vec::new();
        for c in customers.iter().filter(|c| c.frequency() > 0.0) {
            let m = c.monetary().ok_or(LtvError::InvalidSummary {
                line: c.line(),
                column: "monetary_value",
                reason: "missing for a customer with repeat purchases".into(),
            })?;
            keys.push((c.frequency() as u64, m.to_bits()));
        }
        if keys.is_empty() {
            return Err(LtvError::NoRepeatBuyers {
                model: MODEL,
                customers: customers.len() as u64,
            });
        }
        let n = keys.len() as u64;
        let scale = keys.iter().map(|k| f64::from_bits(k.1)).sum::<f64>() / n as f64;
        let (mut m, mut w) = (Vec::new(), Vec::new());
        let by_x = collapse(
            keys,
            |k| k.0,
            |k, weight| {
                m.push(f64::from_bits(k.1));
                w.push(weight);
            },
        );
        let x_ln_m = (0..by_x.xs.len())
            .map(|i| by_x.rows(i).map(|j| w[j] * m[j].ln()).sum())
            .collect();
        let rows = Rows {
            by_x,
            x_ln_m,
            m,
            w,
            customers: n,
            scale,
        };
        if rows.w.len() == 1 {
            return Err(LtvError::NotIdentified {
                model: MODEL,
                reason: format!(
                    "all {n} repeat customers have the same frequency and monetary value, so nothing varies for the model to explain"
                ),
            });
        }
        Ok(rows)
    }

    /// The repeat customers the rows stand for.
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
}

impl GammaGamma {
    fn from_theta(theta: &[f64; 3], scale: f64) -> GammaGamma {
        GammaGamma {
            p: theta[0].exp(),
            q: theta[1].exp(),
            v: scale * theta[2].exp(),
        }
    }

    /// The total log-likelihood of `rows` and its gradient with respect to `(p, q, v)`.
    pub fn log_likelihood(&self, rows: &Rows) -> (f64, [f64; 3]) {
        let GammaGamma { p, q, v } = *self;
        let ln_v = v.ln();
        let (lg_q, psi_q) = (ln_gamma(q), digamma(q));
        let mut ll = 0.0;
        let mut g = [0.0; 3];
        for (i, &x) in rows.by_x.xs.iter().enumerate() {
            let (wx, s_ln_m) = (rows.by_x.weight[i], rows.x_ln_m[i]);
            let (px, ln_x) = (p * x, x.ln());
            let (psi_pxq, psi_px) = (digamma(px + q), digamma(px));
            ll += wx * (ln_gamma(px + q) - ln_gamma(px) - lg_q + q * ln_v + px * ln_x)
                + (px - 1.0) * s_ln_m;
            g[0] += wx * x * (psi_pxq - psi_px + ln_x) + x * s_ln_m;
            g[1] += wx * (psi_pxq - psi_q + ln_v);
            g[2] += wx * q / v;
            let range = rows.by_x.rows(i);
            let (mut s_ln, mut s_inv) = (0.0, 0.0);
            for (&m, &w) in rows.m[range.clone()].iter().zip(&rows.w[range]) {
                let xmv = x * m + v;
                s_ln += w * xmv.ln();
                s_inv += w / xmv;
            }
            ll -= (px + q) * s_ln;
            g[0] -= x * s_ln;
            g[1] -= s_ln;
            g[2] -= (px + q) * s_inv;
        }
        (ll, g)
    }

    /// The expected value of one purchase by a customer with `x` repeat purchases of mean
    /// value `m`: p(v + x m) / (px + q − 1) — a weighted mean of the population's mean
    /// p v/(q−1) and the customer's own `m`. With x = 0 (`m` is then ignored) it is the
    /// population's mean. Needs q > 1 (the population mean is infinite otherwise).
    pub fn expected_value(&self, x: f64, m: f64) -> Result<f64, LtvError> {
        let GammaGamma { p, q, v } = *self;
        if q <= 1.0 {
            return Err(LtvError::PredictionUndefined {
                what: "expected value per purchase",
                reason: format!(
                    "q = {q} is not above 1, so the mean value per purchase is infinite"
                ),
            });
        }
        if !(x.is_finite() && x >= 0.0 && (x == 0.0 || (m.is_finite() && m > 0.0))) {
            return Err(LtvError::PredictionUndefined {
                what: "expected value per purchase",
                reason: format!(
                    "x = {x}, m = {m}: x must be a count and m the positive mean of x purchases"
                ),
            });
        }
        let m = if x == 0.0 { 0.0 } else { m };
        Ok(p * (v + x * m) / (p * x + q - 1.0))
    }
}

/// Where the fits start, in `(ln p, ln q, ln(v/s))`, tried in order until one converges.
const STARTS: [[f64; 3]; 3] = [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [-1.0, 0.5, -1.0]];

/// Fits Gamma-Gamma by maximum likelihood to the customers of `customers` with x > 0.
pub fn fit_gamma_gamma(customers: &[Customer]) -> Result<Fit<GammaGamma>, LtvError> {
    let rows = Rows::new(customers)?;
    fit_rows(&rows)
}

const NAMES: [&str; 3] = ["p", "q", "v"];

/// Fits Gamma-Gamma to rows already collapsed.
pub fn fit_rows(rows: &Rows) -> Result<Fit<GammaGamma>, LtvError> {
    let n = rows.customers as f64;
    let objective = |theta: &[f64; 3]| {
        let p = GammaGamma::from_theta(theta, rows.scale);
        let (ll, g) = p.log_likelihood(rows);
        let chain = [p.p, p.q, p.v];
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
                let params = GammaGamma::from_theta(&o.x, rows.scale);
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
                    let p = GammaGamma::from_theta(&o.x, rows.scale);
                    [p.p, p.q, p.v][i]
                }));
            }
            _ => {}
        }
    }
    if let Some((name, to_zero, value)) = ran_off {
        return Err(LtvError::NotIdentified {
            model: MODEL,
            reason: format!(
                "the likelihood keeps rising as {name} goes to {} (the search stopped at {name} = {value:.3e}; do all repeat customers spend alike?)",
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
