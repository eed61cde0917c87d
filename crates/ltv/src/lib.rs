//! Predictive customer lifetime value (客户终身价值预测), as plain Rust without I/O.
//!
//! An operator wants to know, for each customer, three things the purchase history alone
//! does not say: whether the customer is still "alive" (will buy again at all), how many
//! purchases to expect in the next weeks, and what they will be worth. The "buy till you die"
//! models answer from a three-number summary per customer — repeat purchases `x`, the time of
//! the last one `t_x`, the time observed `T` — and, for value, the mean repeat-purchase amount:
//!
//! - [`bgnbd`]: the BG/NBD model (Fader, Hardie & Lee 2005): purchases at a Poisson rate that
//!   varies across customers (gamma), and after each purchase a chance to drop out for good
//!   (beta). Fitted by maximum likelihood over the whole customer base.
//! - [`gamma_gamma`]: the Gamma-Gamma model of monetary value (Fader & Hardie 2013): each
//!   customer's purchase amounts scatter around their own mean, and the means vary across
//!   customers. It gives a customer's expected value per purchase, shrunk towards the
//!   population's when they bought only once or twice.
//!
//! Expected revenue over a horizon is the product of the two ([`expected_revenue`]).
//!
//! # Why it is fast
//! A real summary repeats itself: many customers share `(x, t_x, T)` (times are whole days or
//! weeks). [`bgnbd::Rows`] collapses them into weighted rows before fitting, and every term
//! that depends on `x` alone (ln Γ and digamma of `r+x`, `b+x`, `a+b+x`) is computed once per
//! distinct `x` per evaluation. The optimiser ([`optim`]) is BFGS over log-parameters with
//! analytic gradients, so a fit takes a few dozen passes over the distinct rows: 1,000,000
//! customers fit in well under the 5 s the benchmark asks (docs/BENCHMARKS.md).
//!
//! # Layout
//! - [`error`]: the one error enum, with stable codes.
//! - [`summary`]: a customer's summary, checked when it is made ("parse, don't validate").
//! - [`bgnbd`], [`gamma_gamma`]: the likelihoods, their gradients, the fits and predictions.
//! - [`optim`]: BFGS with a backtracking (Armijo) line search.
//! - [`special`]: ln Γ, digamma and the Gauss hypergeometric series ₂F₁.
//! - [`simulate`]: a seeded simulator of both generative processes, for tests and the
//!   benchmark.

pub mod bgnbd;
mod collapse;
pub mod error;
pub mod gamma_gamma;
pub mod optim;
pub mod simulate;
pub mod special;
pub mod summary;

#[cfg(test)]
mod tests;

pub use bgnbd::{BgNbd, fit_bgnbd};
pub use error::LtvError;
pub use gamma_gamma::{GammaGamma, fit_gamma_gamma};
pub use summary::Customer;

/// A fitted model: its parameters and how the fit went.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Fit<P> {
    pub params: P,
    /// The full log-likelihood at `params`, summed over customers (no constant dropped).
    pub log_likelihood: f64,
    /// BFGS iterations of the start that converged.
    pub iterations: u32,
    /// Whether the optimiser met its tolerance. A fit that did not is an error
    /// ([`LtvError::DidNotConverge`]), so this is `true` in every `Fit` handed back; it is
    /// here so that a printed or serialised fit says so.
    pub converged: bool,
    /// The customers the model was fitted to (for Gamma-Gamma: those with `x > 0`).
    pub customers: u64,
    /// Distinct rows after collapsing identical customers: what one evaluation loops over.
    pub rows: usize,
}

/// Expected revenue from `customer` over the next `t` time units: expected purchases
/// (BG/NBD) times expected value per purchase (Gamma-Gamma). A customer without repeat
/// purchases gets the population's mean value per purchase.
pub fn expected_revenue(
    bgnbd: &BgNbd,
    gamma_gamma: &GammaGamma,
    customer: &Customer,
    t: f64,
) -> Result<f64, LtvError> {
    let purchases = bgnbd.expected_purchases(customer, t)?;
    let value =
        gamma_gamma.expected_value(customer.frequency(), customer.monetary().unwrap_or(0.0))?;
    Ok(purchases * value)
}
