//! The growth path 潜在粉丝 → 路人粉丝 → 好感粉丝 → 真爱粉丝, with its labels in one table.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// A fan's layer, ordered potential < passerby < favorable < true love.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Layer {
    /// 潜在粉丝: has not followed (or unfollowed).
    Potential,
    /// 路人粉丝: follows, little more.
    Passerby,
    /// 好感粉丝: follows and engages, subscribes or is in a fan group.
    Favorable,
    /// 真爱粉丝: buys, or engages deeply in a fan group.
    TrueLove,
}

/// (layer, machine name, English label, Chinese label, short Chinese name) — the one table.
const LABELS: [(Layer, &str, &str, &str, &str); 4] = [
    (
        Layer::Potential,
        "potential",
        "Potential",
        "潜在粉丝",
        "潜在",
    ),
    (Layer::Passerby, "passerby", "Passerby", "路人粉丝", "路人"),
    (
        Layer::Favorable,
        "favorable",
        "Favorable",
        "好感粉丝",
        "好感",
    ),
    (
        Layer::TrueLove,
        "true_love",
        "True love",
        "真爱粉丝",
        "真爱",
    ),
];

impl Layer {
    pub const ALL: [Layer; 4] = [
        Layer::Potential,
        Layer::Passerby,
        Layer::Favorable,
        Layer::TrueLove,
    ];

    fn row(
        self,
    ) -> &'static (
        Layer,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
    ) {
        &LABELS[self as usize]
    }

    /// `potential`, `passerby`, `favorable`, `true_love`.
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

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Accepts the machine name and both Chinese forms (好感粉丝, 好感).
impl FromStr for Layer {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        LABELS
            .iter()
            .find(|r| r.1 == s || r.3 == s || r.4 == s)
            .map(|r| r.0)
            .ok_or(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_names() {
        assert!(Layer::Potential < Layer::Passerby && Layer::Favorable < Layer::TrueLove);
        for l in Layer::ALL {
            assert_eq!(l.as_str().parse::<Layer>(), Ok(l));
            assert_eq!(l.label_zh().parse::<Layer>(), Ok(l));
        }
        assert_eq!("真爱".parse::<Layer>(), Ok(Layer::TrueLove));
        assert!("fan".parse::<Layer>().is_err());
    }
}
