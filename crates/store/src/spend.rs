//! Acquisition spend (投放花费): what a brand paid per local day, channel and domain, imported
//! from a file (`siyu import-spend`), the numerator of CAC. A row is keyed by its day, channel
//! and domain: importing a file again replaces its rows rather than adding them, so a corrected
//! file is imported, not reconciled. A file is stored whole or not at all.

use siyu_domain::Millis;

use crate::{Result, TenantId};

/// One day's spend on a channel in a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSpend {
    /// The local day, days since 1970-01-01.
    pub day: i32,
    pub channel: String,
    /// `public`, `commercial` or `private`.
    pub domain: String,
    /// Fen (0.01 CNY).
    pub amount_fen: i64,
}

/// The spend capability.
pub trait Spend {
    /// Upserts every row in one transaction (by day, channel and domain); returns the rows
    /// that replaced a stored one.
    fn put_spend(&self, tenant: TenantId, rows: &[StoredSpend], now: Millis) -> Result<usize>;

    /// The rows of days `from_day..to_day` (end excluded), by day, channel, domain.
    fn spend(&self, tenant: TenantId, from_day: i32, to_day: i32) -> Result<Vec<StoredSpend>>;
}
