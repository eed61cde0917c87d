//! The three domains a brand meets people in. Labels (English and Chinese) live here, in one
//! table, so reports and the console never scatter literals.

use std::fmt;
use std::str::FromStr;

/// Where an interaction happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Domain {
    /// 公域: short videos, live streams, the homepage.
    Public,
    /// 商域: ads and lead forms.
    Commercial,
    /// 私域: private messages, fan groups, subscriptions, orders.
    Private,
}

/// (domain, machine name, English label, Chinese label) — the one table.
const LABELS: [(Domain, &str, &str, &str); 3] = [
    (Domain::Public, "public", "Public", "公域"),
    (Domain::Commercial, "commercial", "Commercial", "商域"),
    (Domain::Private, "private", "Private", "私域"),
];

impl Domain {
    pub const ALL: [Domain; 3] = [Domain::Public, Domain::Commercial, Domain::Private];

    fn row(self) -> &'static (Domain, &'static str, &'static str, &'static str) {
        &LABELS[self as usize]
    }

    /// The machine name used in JSON and SQL: `public`, `commercial`, `private`.
    pub fn as_str(self) -> &'static str {
        self.row().1
    }

    pub fn label_en(self) -> &'static str {
        self.row().2
    }

    pub fn label_zh(self) -> &'static str {
        self.row().3
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Accepts the machine name or the Chinese label (公域, 商域, 私域).
impl FromStr for Domain {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LABELS
            .iter()
            .find(|(_, name, _, zh)| *name == s || *zh == s)
            .map(|row| row.0)
            .ok_or(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_chinese_is_accepted() {
        for d in Domain::ALL {
            assert_eq!(d.as_str().parse::<Domain>(), Ok(d));
            assert_eq!(d.label_zh().parse::<Domain>(), Ok(d));
        }
        assert_eq!("商域".parse::<Domain>(), Ok(Domain::Commercial));
        assert!("Public".parse::<Domain>().is_err());
    }
}
