//! Identity kinds and the normalization that makes one person's values compare equal.
//!
//! A phone written `138 0013 8000`, `+86-13800138000` or `8613800138000` is the same phone; an
//! email differs from another only in case. Normalizing once, at ingest, is what lets identity
//! resolution use plain equality everywhere after.
//!
//! Before any kind's own rules, every value is put in Unicode NFC and stripped of format
//! characters (general category Cf: zero-width spaces and joiners, bidi controls, the BOM, the
//! soft hyphen, …). They are invisible, so `o1`, `o1` + U+200B and `o1` behind U+202E look the
//! same to an operator, and a decomposed `é` is the same text as a composed one; left in, each
//! would be a fan of its own. A value that is empty once they are gone is refused as empty.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

macro_rules! kinds {
    ($($variant:ident => $name:literal, $one_per_person:literal;)*) => {
        /// The kinds of identity an event can carry.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(rename_all = "snake_case")]
        #[repr(u8)]
        pub enum IdentityKind { $($variant,)* }

        impl IdentityKind {
            pub const ALL: &'static [IdentityKind] = &[$(IdentityKind::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self { $(IdentityKind::$variant => $name,)* }
            }

            /// A person has at most one value of this kind (an account id), so two different
            /// values of it are two different people. Phones and emails can be shared.
            pub fn one_per_person(self) -> bool {
                match self { $(IdentityKind::$variant => $one_per_person,)* }
            }
        }

        impl FromStr for IdentityKind {
            type Err = ();
            fn from_str(s: &str) -> Result<Self, ()> {
                match s { $($name => Ok(IdentityKind::$variant),)* _ => Err(()) }
            }
        }
    };
}

kinds! {
    DouyinOpenId => "douyin_open_id", true;
    DouyinUnionId => "douyin_union_id", true;
    WecomExternalId => "wecom_external_id", true;
    WechatUnionId => "wechat_union_id", true;
    Phone => "phone", false;
    Email => "email", false;
    LeadId => "lead_id", false;
    UserId => "user_id", true;
    AnonymousId => "anonymous_id", false;
}

impl fmt::Display for IdentityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an identity value was refused. The message is meant for the person who sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("phone {0:?} is neither a Chinese mobile number nor E.164 (+ and 7–15 digits)")]
    Phone(String),
    #[error("email {0:?} is not an address of the form local@domain.tld")]
    Email(String),
    #[error(
        "{kind} must be a non-empty string of at most {max} characters without control characters"
    )]
    Value { kind: IdentityKind, max: usize },
}

impl IdentityError {
    /// The stable code of this refusal, the same wherever the value came from (an event's
    /// `identities`, a lookup's `value`).
    pub fn code(&self) -> crate::ErrorCode {
        match self {
            IdentityError::Phone(_) => crate::ErrorCode::InvalidPhone,
            IdentityError::Email(_) => crate::ErrorCode::InvalidEmail,
            IdentityError::Value { .. } => crate::ErrorCode::InvalidIdentity,
        }
    }
}

/// One normalized identity value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    pub kind: IdentityKind,
    value: Box<str>,
}

impl Identity {
    /// The longest value accepted for an opaque id.
    pub const MAX_CHARS: usize = 256;

    /// Normalizes `raw` as a value of `kind`.
    pub fn parse(kind: IdentityKind, raw: &str) -> Result<Identity, IdentityError> {
        let cleaned = visible_nfc(raw);
        let raw = cleaned.as_ref();
        let value = match kind {
            IdentityKind::Phone => normalize_phone(raw)?,
            IdentityKind::Email => normalize_email(raw)?,
            _ => {
                let v = raw.trim();
                let n = v.chars().count();
                if n == 0 || n > Self::MAX_CHARS || v.chars().any(char::is_control) {
                    return Err(IdentityError::Value {
                        kind,
                        max: Self::MAX_CHARS,
                    });
                }
                v.to_string()
            }
        };
        Ok(Identity {
            kind,
            value: value.into(),
        })
    }

    /// Rebuilds a value the store wrote itself (already normalized).
    pub fn from_stored(kind: IdentityKind, value: &str) -> Identity {
        Identity {
            kind,
            value: value.into(),
        }
    }

    pub fn value(&self) -> &str {
        &self.value
    }
}

/// `s` in NFC without format characters; borrowed when it already is (all ASCII text is).
pub fn visible_nfc(s: &str) -> std::borrow::Cow<'_, str> {
    use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};
    if s.is_ascii()
        || (!s.chars().any(is_format_char) && is_nfc_quick(s.chars()) == IsNormalized::Yes)
    {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(s.chars().filter(|c| !is_format_char(*c)).nfc().collect())
}

/// Unicode general category Cf (format characters), as of Unicode 15.1.
fn is_format_char(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
}

/// Phones: separators removed; a Chinese mobile (`1[3-9]` + 9 digits, optionally behind `+86`,
/// `0086` or `86`) becomes `+86XXXXXXXXXXX`; any other number must already be E.164.
pub fn normalize_phone(raw: &str) -> Result<String, IdentityError> {
    let bad = || IdentityError::Phone(raw.to_string());
    let s: String = raw
        .chars()
        .filter(|c| !(c.is_whitespace() || matches!(c, '-' | '.' | '(' | ')')))
        .collect();
    let (plus, digits) = match s.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, s.as_str()),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let national = if plus {
        digits.strip_prefix("86")
    } else {
        digits
            .strip_prefix("0086")
            .or_else(|| digits.strip_prefix("86"))
            .or(Some(digits))
    };
    if let Some(n) = national
        && is_cn_mobile(n)
    {
        return Ok(format!("+86{n}"));
    }
    // Not a Chinese mobile: "86" + 11 digits without a plus was tried above; without a plus
    // nothing else is unambiguous.
    if plus && (7..=15).contains(&digits.len()) && !digits.starts_with('0') {
        return Ok(s);
    }
    Err(bad())
}

fn is_cn_mobile(n: &str) -> bool {
    let b = n.as_bytes();
    b.len() == 11 && b[0] == b'1' && (b'3'..=b'9').contains(&b[1])
}

fn normalize_email(raw: &str) -> Result<String, IdentityError> {
    let v = raw.trim().to_lowercase();
    let ok = v.len() <= 254
        && !v.chars().any(|c| c.is_whitespace() || c.is_control())
        && match v.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            }
            None => false,
        };
    if ok {
        Ok(v)
    } else {
        Err(IdentityError::Email(raw.to_string()))
    }
}

/// The identities one event carries: at least one, at most one value per kind, sorted by kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identities(Vec<Identity>);

impl Identities {
    /// Builds from values already normalized. `None` when empty or when a kind repeats.
    pub fn new(mut ids: Vec<Identity>) -> Option<Identities> {
        ids.sort_by_key(|i| i.kind);
        let repeated = ids.windows(2).any(|w| w[0].kind == w[1].kind);
        (!ids.is_empty() && !repeated).then_some(Identities(ids))
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Identity> {
        self.0.iter()
    }

    pub fn get(&self, kind: IdentityKind) -> Option<&str> {
        self.0.iter().find(|i| i.kind == kind).map(|i| i.value())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The canonical JSON object, `{"kind": "value", ...}` in kind order. Written directly
    /// (kinds need no escaping; values go through serde_json's string escaper): this runs
    /// once per stored event.
    pub fn to_json(&self) -> String {
        let mut out =
            String::with_capacity(16 + self.0.iter().map(|i| i.value.len() + 24).sum::<usize>());
        out.push('{');
        for (n, i) in self.0.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            out.push('"');
            out.push_str(i.kind.as_str());
            out.push_str("\":");
            // Serializing a &str cannot fail.
            out.push_str(&serde_json::to_string(i.value()).unwrap_or_default());
        }
        out.push('}');
        out
    }

    /// Reads back [`Identities::to_json`] output written by the store itself.
    pub fn from_stored_json(s: &str) -> Option<Identities> {
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(s).ok()?;
        let ids = map
            .iter()
            .map(|(k, v)| Some(Identity::from_stored(k.parse().ok()?, v.as_str()?)))
            .collect::<Option<Vec<_>>>()?;
        Identities::new(ids)
    }
}

impl<'a> IntoIterator for &'a Identities {
    type Item = &'a Identity;
    type IntoIter = std::slice::Iter<'a, Identity>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_characters_and_decomposed_text_do_not_make_another_value() {
        let value = |kind, raw: &str| Identity::parse(kind, raw).map(|i| i.value().to_string());
        let open = |raw: &str| value(IdentityKind::DouyinOpenId, raw);
        assert_eq!(open("o\u{200B}1").as_deref(), Ok("o1"), "zero-width space");
        assert_eq!(
            open("\u{202E}o1\u{202C}").as_deref(),
            Ok("o1"),
            "RLO ... PDF"
        );
        assert_eq!(
            open("\u{FEFF}o\u{00AD}1\u{2066}\u{2069}").as_deref(),
            Ok("o1")
        );
        assert_eq!(open("o\u{200D}1\u{2060}").as_deref(), Ok("o1"), "joiners");
        // "é" as e + combining acute (NFD) and as one character (NFC).
        assert_eq!(open("caf\u{0065}\u{0301}"), open("caf\u{00E9}"));
        assert_eq!(open("caf\u{0065}\u{0301}").unwrap(), "caf\u{00E9}");
        assert_eq!(
            value(IdentityKind::Phone, "138\u{200B}0013\u{202E}8000").as_deref(),
            Ok("+8613800138000")
        );
        assert_eq!(
            value(IdentityKind::Email, "\u{200B}Li@Example.com\u{200F}").as_deref(),
            Ok("li@example.com")
        );
        // Only invisible characters: empty, refused as empty.
        assert!(matches!(
            open("\u{200B}\u{202E}"),
            Err(IdentityError::Value { .. })
        ));
        assert!(matches!(
            value(IdentityKind::Phone, "\u{200B}"),
            Err(IdentityError::Phone(_))
        ));
        // Visible text is kept as it is.
        assert_eq!(open("粉丝-1").as_deref(), Ok("粉丝-1"));
        assert!(matches!(visible_nfc("o1"), std::borrow::Cow::Borrowed(_)));
    }

    fn phone(s: &str) -> Result<String, IdentityError> {
        normalize_phone(s)
    }

    #[test]
    fn chinese_mobiles_in_every_usual_spelling_normalize_to_one_value() {
        for s in [
            "13800138000",
            "138 0013 8000",
            "+86-13800138000",
            "8613800138000",
            "+86 138-0013-8000",
            "0086 13800138000",
            "(+86) 138.0013.8000",
            "+86 (138) 0013 8000",
        ] {
            assert_eq!(phone(s).as_deref(), Ok("+8613800138000"), "{s}");
        }
    }

    #[test]
    fn other_numbers_must_be_e164() {
        assert_eq!(phone("+1 415 555 2671").as_deref(), Ok("+14155552671"));
        assert_eq!(phone("+44 20 7946 0958").as_deref(), Ok("+442079460958"));
        assert!(phone("4155552671").is_err(), "no plus, not Chinese");
        assert!(phone("12800138000").is_err(), "12x is not a mobile prefix");
        assert!(phone("1380013800").is_err(), "10 digits");
        assert!(phone("138OO138000").is_err(), "letters");
        assert!(phone("").is_err());
        assert!(phone("+").is_err());
        assert!(phone("+0123456789").is_err());
        assert!(phone("+1234567890123456").is_err(), "16 digits");
        assert!(phone("++8613800138000").is_err());
    }

    #[test]
    fn emails_are_lowercased_and_checked() {
        let e = |s| Identity::parse(IdentityKind::Email, s).map(|i| i.value().to_string());
        assert_eq!(
            e(" Li.Hua@Example.COM ").as_deref(),
            Ok("li.hua@example.com")
        );
        assert!(e("no-at.example.com").is_err());
        assert!(e("a@b").is_err());
        assert!(e("a@@b.com").is_err());
        assert!(e("a b@c.com").is_err());
    }

    #[test]
    fn opaque_ids_are_trimmed_and_must_not_be_empty() {
        let k = IdentityKind::DouyinOpenId;
        assert_eq!(Identity::parse(k, " _000abc ").unwrap().value(), "_000abc");
        assert!(Identity::parse(k, "   ").is_err());
        assert!(Identity::parse(k, "a\nb").is_err());
        assert!(Identity::parse(k, &"x".repeat(257)).is_err());
    }

    #[test]
    fn identities_are_sorted_unique_and_round_trip_through_json() {
        let p = Identity::parse(IdentityKind::Phone, "13800138000").unwrap();
        let o = Identity::parse(IdentityKind::DouyinOpenId, "o1").unwrap();
        let ids = Identities::new(vec![p.clone(), o.clone()]).unwrap();
        assert_eq!(ids.iter().next().unwrap().kind, IdentityKind::DouyinOpenId);
        assert_eq!(Identities::from_stored_json(&ids.to_json()), Some(ids));
        assert!(Identities::new(vec![]).is_none());
        assert!(Identities::new(vec![o.clone(), o]).is_none());
    }

    #[test]
    fn one_per_person_kinds() {
        use IdentityKind::*;
        let one: Vec<_> = IdentityKind::ALL
            .iter()
            .filter(|k| k.one_per_person())
            .copied()
            .collect();
        assert_eq!(
            one,
            vec![
                DouyinOpenId,
                DouyinUnionId,
                WecomExternalId,
                WechatUnionId,
                UserId
            ]
        );
    }
}
