//! One customer's summary in the BTYD ("buy till you die") layout, checked once when it is
//! made: `frequency` (repeat purchases, a whole number), `recency` (time of the last repeat
//! purchase, counted from the first purchase; 0 without one), `T` (time from the first
//! purchase to the end of observation) and, optionally, `monetary_value` (the mean value of
//! the repeat purchases). Any time unit works as long as one is used throughout; the fitted
//! `alpha` (BG/NBD) is in that unit.

use crate::LtvError;

/// A customer whose summary is known to be consistent: finite, `0 ≤ recency ≤ T`, `T > 0`,
/// a whole `frequency`, `recency = 0` when `frequency = 0`, and a positive monetary value
/// when one is given with `frequency > 0`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Customer {
    line: u64,
    frequency: f64,
    recency: f64,
    t: f64,
    monetary: Option<f64>,
}

impl Customer {
    /// Checks one summary row. `line` is what errors name (the CLI: the file's line).
    /// A monetary value given for a customer without repeat purchases is ignored (the BTYD
    /// layout puts 0 there): the Gamma-Gamma model uses repeat purchases only.
    pub fn parse(
        line: u64,
        frequency: f64,
        recency: f64,
        t: f64,
        monetary: Option<f64>,
    ) -> Result<Customer, LtvError> {
        let bad = |column: &'static str, reason: String| LtvError::InvalidSummary {
            line,
            column,
            reason,
        };
        for (column, v) in [("frequency", frequency), ("recency", recency), ("T", t)] {
            if !v.is_finite() {
                return Err(bad(column, format!("{v} is not a finite number")));
            }
            if v < 0.0 {
                return Err(bad(column, format!("{v} is negative")));
            }
        }
        if frequency.fract() != 0.0 || frequency > 1e9 {
            return Err(bad(
                "frequency",
                format!("{frequency} is not a whole number of repeat purchases"),
            ));
        }
        if t <= 0.0 {
            return Err(bad(
                "T",
                "is 0: a customer observed for no time says nothing".to_string(),
            ));
        }
        if recency > t {
            return Err(bad(
                "recency",
                format!("{recency} is after the end of observation T = {t}"),
            ));
        }
        if frequency == 0.0 && recency != 0.0 {
            return Err(bad(
                "recency",
                format!(
                    "{recency} with frequency 0: recency is the time of the last repeat purchase, 0 without one"
                ),
            ));
        }
        let monetary = match monetary {
            Some(m) if frequency > 0.0 => {
                if !(m.is_finite() && m > 0.0) {
                    return Err(bad(
                        "monetary_value",
                        format!(
                            "{m} with frequency {frequency}: the mean value of repeat purchases must be a positive number"
                        ),
                    ));
                }
                Some(m)
            }
            _ => None,
        };
        Ok(Customer {
            line,
            frequency,
            recency,
            t,
            monetary,
        })
    }

    /// A customer the simulator made consistent by construction.
    pub(crate) fn simulated(
        line: u64,
        frequency: f64,
        recency: f64,
        t: f64,
        monetary: Option<f64>,
    ) -> Customer {
        Customer {
            line,
            frequency,
            recency,
            t,
            monetary,
        }
    }

    /// The line errors about this customer name.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// Repeat purchases `x` (a whole number, as `f64`).
    pub fn frequency(&self) -> f64 {
        self.frequency
    }

    /// `t_x`: the time of the last repeat purchase.
    pub fn recency(&self) -> f64 {
        self.recency
    }

    /// `T`: the time observed.
    #[allow(non_snake_case)]
    pub fn T(&self) -> f64 {
        self.t
    }

    /// The mean value of the repeat purchases (`None` without repeat purchases or when the
    /// summary has no monetary column).
    pub fn monetary(&self) -> Option<f64> {
        self.monetary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(r: Result<Customer, LtvError>) -> (&'static str, Option<&'static str>) {
        let e = r.unwrap_err();
        (e.code(), e.field())
    }

    #[test]
    fn each_inconsistent_row_is_refused_naming_its_column() {
        let inv = "invalid_summary";
        assert_eq!(
            code(Customer::parse(2, -1.0, 0.0, 1.0, None)),
            (inv, Some("frequency"))
        );
        assert_eq!(
            code(Customer::parse(2, 1.5, 0.0, 1.0, None)),
            (inv, Some("frequency"))
        );
        assert_eq!(
            code(Customer::parse(2, 1.0, f64::NAN, 1.0, None)),
            (inv, Some("recency"))
        );
        assert_eq!(
            code(Customer::parse(2, 1.0, 2.0, 1.0, None)),
            (inv, Some("recency"))
        );
        assert_eq!(
            code(Customer::parse(2, 0.0, 0.5, 1.0, None)),
            (inv, Some("recency"))
        );
        assert_eq!(
            code(Customer::parse(2, 0.0, 0.0, f64::INFINITY, None)),
            (inv, Some("T"))
        );
        assert_eq!(
            code(Customer::parse(2, 0.0, 0.0, 0.0, None)),
            (inv, Some("T"))
        );
        assert_eq!(
            code(Customer::parse(2, 1.0, 0.5, 1.0, Some(0.0))),
            (inv, Some("monetary_value"))
        );
        let e = Customer::parse(7, 1.0, 2.0, 1.0, None).unwrap_err();
        assert!(e.to_string().starts_with("line 7, column recency"), "{e}");
        // A zero value beside frequency 0 is the BTYD layout, not an error.
        let c = Customer::parse(2, 0.0, 0.0, 3.0, Some(0.0)).unwrap();
        assert_eq!(c.monetary(), None);
    }
}
