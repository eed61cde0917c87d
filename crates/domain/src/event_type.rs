//! The event catalogue (docs/events.md) and custom events.
//!
//! Catalogue types imply their domain; a custom type is `x_` + a name and carries the domain it
//! was sent with. The catalogue is a `u8`-sized enum so the engine can keep one byte per event.

use std::fmt;
use std::str::FromStr;

use crate::Domain;

macro_rules! catalogue {
    ($($variant:ident => $name:literal, $domain:ident;)*) => {
        /// A type from the catalogue. `as u8` is a stable index into [`CatalogueType::ALL`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum CatalogueType { $($variant,)* }

        impl CatalogueType {
            pub const ALL: &'static [CatalogueType] = &[$(CatalogueType::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self { $(CatalogueType::$variant => $name,)* }
            }

            pub fn domain(self) -> Domain {
                match self { $(CatalogueType::$variant => Domain::$domain,)* }
            }

            fn from_name(s: &str) -> Option<Self> {
                match s { $($name => Some(CatalogueType::$variant),)* _ => None }
            }
        }
    };
}

catalogue! {
    VideoView => "video_view", Public;
    VideoLike => "video_like", Public;
    VideoComment => "video_comment", Public;
    VideoShare => "video_share", Public;
    HomepageVisit => "homepage_visit", Public;
    LiveEnter => "live_enter", Public;
    LiveWatch => "live_watch", Public;
    LiveComment => "live_comment", Public;
    Follow => "follow", Public;
    Unfollow => "unfollow", Public;
    AdImpression => "ad_impression", Commercial;
    AdClick => "ad_click", Commercial;
    LeadForm => "lead_form", Commercial;
    PrivateMessageIn => "private_message_in", Private;
    PrivateMessageOut => "private_message_out", Private;
    Subscribe => "subscribe", Private;
    Unsubscribe => "unsubscribe", Private;
    GroupJoin => "group_join", Private;
    GroupLeave => "group_leave", Private;
    GroupMessage => "group_message", Private;
    CouponClaim => "coupon_claim", Private;
    Order => "order", Private;
    Refund => "refund", Private;
    StoreVisit => "store_visit", Private;
}

/// The name of a custom event, without the `x_` prefix: 1–64 letters, digits or `_`
/// (any script, so `x_领券` is fine).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CustomName(Box<str>);

impl CustomName {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(name: &str) -> Option<CustomName> {
        let n = name.chars().count();
        let ok = (1..=Self::MAX_CHARS).contains(&n)
            && name.chars().all(|c| c.is_alphanumeric() || c == '_');
        ok.then(|| CustomName(name.into()))
    }

    /// Turns a free-form name ("Order Completed", "领取 优惠券") into a valid custom name:
    /// lowercase, every run of other characters becomes one `_`. `None` if nothing is left.
    pub fn slugify(name: &str) -> Option<CustomName> {
        let mut out = String::with_capacity(name.len());
        for c in name.chars().flat_map(char::to_lowercase) {
            if c.is_alphanumeric() {
                out.push(c);
            } else if !out.is_empty() && !out.ends_with('_') {
                out.push('_');
            }
        }
        let trimmed: String = out
            .trim_end_matches('_')
            .chars()
            .take(Self::MAX_CHARS)
            .collect();
        CustomName::parse(trimmed.trim_end_matches('_'))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The type of an event.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    Catalogue(CatalogueType),
    /// `x_<name>`, in the domain it was sent with.
    Custom {
        name: CustomName,
        domain: Domain,
    },
}

/// Why a type name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeNameError {
    /// Neither a catalogue type nor `x_` + a valid name.
    Unknown,
    /// `x_` followed by an empty, too long or ill-formed name.
    BadCustomName,
}

/// A type name as written, before the domain is known: a catalogue type or a custom name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeName {
    Catalogue(CatalogueType),
    Custom(CustomName),
}

impl FromStr for TypeName {
    type Err = TypeNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(t) = CatalogueType::from_name(s) {
            return Ok(TypeName::Catalogue(t));
        }
        match s.strip_prefix("x_") {
            Some(rest) => CustomName::parse(rest)
                .map(TypeName::Custom)
                .ok_or(TypeNameError::BadCustomName),
            None => Err(TypeNameError::Unknown),
        }
    }
}

impl EventType {
    pub fn domain(&self) -> Domain {
        match self {
            EventType::Catalogue(t) => t.domain(),
            EventType::Custom { domain, .. } => *domain,
        }
    }

    /// The type's name as stored and shown (`order`, `x_signup`), without allocating for
    /// catalogue types.
    pub fn name(&self) -> std::borrow::Cow<'static, str> {
        match self {
            EventType::Catalogue(t) => std::borrow::Cow::Borrowed(t.as_str()),
            EventType::Custom { name, .. } => {
                std::borrow::Cow::Owned(format!("x_{}", name.as_str()))
            }
        }
    }

    pub fn catalogue(&self) -> Option<CatalogueType> {
        match self {
            EventType::Catalogue(t) => Some(*t),
            EventType::Custom { .. } => None,
        }
    }

    /// Rebuilds a type from its stored name and domain. Used on data the store wrote itself,
    /// so a mismatch is reported rather than repaired.
    pub fn from_stored(name: &str, domain: Domain) -> Option<EventType> {
        match name.parse::<TypeName>().ok()? {
            TypeName::Catalogue(t) if t.domain() == domain => Some(EventType::Catalogue(t)),
            TypeName::Catalogue(_) => None,
            TypeName::Custom(name) => Some(EventType::Custom { name, domain }),
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventType::Catalogue(t) => f.write_str(t.as_str()),
            EventType::Custom { name, .. } => write!(f, "x_{}", name.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_names_round_trip_with_their_domains() {
        assert_eq!(CatalogueType::ALL.len(), 24);
        for (i, t) in CatalogueType::ALL.iter().enumerate() {
            assert_eq!(*t as usize, i);
            assert_eq!(t.as_str().parse::<TypeName>(), Ok(TypeName::Catalogue(*t)));
        }
        assert_eq!(CatalogueType::LeadForm.domain(), Domain::Commercial);
        assert_eq!(CatalogueType::Order.domain(), Domain::Private);
        assert_eq!(CatalogueType::LiveWatch.domain(), Domain::Public);
    }

    #[test]
    fn custom_names() {
        assert!(matches!(
            "x_领券".parse::<TypeName>(),
            Ok(TypeName::Custom(_))
        ));
        assert_eq!("x_".parse::<TypeName>(), Err(TypeNameError::BadCustomName));
        assert_eq!(
            "x_a b".parse::<TypeName>(),
            Err(TypeNameError::BadCustomName)
        );
        assert_eq!("purchase".parse::<TypeName>(), Err(TypeNameError::Unknown));
        let long = format!("x_{}", "a".repeat(65));
        assert_eq!(long.parse::<TypeName>(), Err(TypeNameError::BadCustomName));
    }

    #[test]
    fn slugify_makes_names_from_free_text() {
        let s = |x: &str| CustomName::slugify(x).map(|n| n.as_str().to_string());
        assert_eq!(s("Order Completed").as_deref(), Some("order_completed"));
        assert_eq!(s("  Signed-Up!! ").as_deref(), Some("signed_up"));
        assert_eq!(s("领取 优惠券").as_deref(), Some("领取_优惠券"));
        assert_eq!(s("!!!"), None);
        assert_eq!(s(&"ab".repeat(50)).map(|n| n.len()), Some(64));
    }
}
