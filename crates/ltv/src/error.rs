//! The crate's one error enum. Every variant has a stable machine code ([`LtvError::code`])
//! that the CLI prints as `error[code]` and scripts can match on; messages say what to do.

/// Why a fit or a prediction was refused. None of these is a bug in the caller's program:
/// each is about the data or the fitted model.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LtvError {
    /// There is nothing to fit.
    #[error("no customers: the summary has no rows")]
    NoCustomers,
    /// Without a single repeat purchase the models cannot be identified: every rate and
    /// dropout explains "nobody came back" equally well.
    #[error(
        "no repeat buyers: every one of the {customers} customers has frequency 0, and the {model} model cannot be fitted without repeat purchases"
    )]
    NoRepeatBuyers { model: &'static str, customers: u64 },
    /// A row that is not a customer summary.
    #[error("line {line}, column {column}: {reason}")]
    InvalidSummary {
        /// The line of the input the row came from, as the caller counts (the CLI: the
        /// file's line, the header being line 1).
        line: u64,
        column: &'static str,
        reason: String,
    },
    /// No start of the optimiser met its tolerance.
    #[error(
        "the {model} fit did not converge after {iterations} iterations from {starts} starting points (best log-likelihood {log_likelihood})"
    )]
    DidNotConverge {
        model: &'static str,
        iterations: u32,
        starts: usize,
        log_likelihood: f64,
    },
    /// The data cannot pin the parameters down: the likelihood keeps rising as a parameter
    /// goes to 0 or infinity (every customer alike, for one).
    #[error("the {model} model is not identified by this data: {reason}")]
    NotIdentified { model: &'static str, reason: String },
    /// A prediction the fitted parameters do not define.
    #[error("{what} is not defined: {reason}")]
    PredictionUndefined { what: &'static str, reason: String },
}

impl LtvError {
    /// The stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            LtvError::NoCustomers => "no_customers",
            LtvError::NoRepeatBuyers { .. } => "no_repeat_buyers",
            LtvError::InvalidSummary { .. } => "invalid_summary",
            LtvError::DidNotConverge { .. } => "did_not_converge",
            LtvError::NotIdentified { .. } => "not_identified",
            LtvError::PredictionUndefined { .. } => "prediction_undefined",
        }
    }

    /// The column a refused row is refused for.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            LtvError::InvalidSummary { column, .. } => Some(column),
            _ => None,
        }
    }
}
