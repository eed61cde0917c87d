//! Strict JSON: a request body parsed into a [`serde_json::Value`] that refuses a key repeated
//! within one object, at any depth.
//!
//! `serde_json::from_slice` keeps the last of two equal keys, so `{"phone": "A", "phone": "B"}`
//! is read as B here and possibly as A by whatever sits in front of Siyu (a proxy, a WAF, a log
//! pipeline) — two readers, two meanings. Refusing the body is the one answer every reader
//! agrees on. The error names the path of the repeated key (`events[0].identities.phone`), so
//! the sender can find it.
//!
//! Everything else is serde_json's own parser, with its recursion limit: the visitor only
//! builds the same `Value` that `serde_json::from_slice` would, checking each object's keys
//! as they arrive.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a body is not strict JSON.
#[derive(Debug)]
pub enum StrictError {
    /// Not JSON at all (serde_json's message: line and column).
    Syntax(serde_json::Error),
    /// A key appears twice in one object; the path of the second one.
    DuplicateKey(String),
}

/// Parses `bytes` as one JSON value, refusing repeated keys.
pub fn from_slice(bytes: &[u8]) -> Result<Value, StrictError> {
    let duplicate = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = Node {
        path: &Path::Root,
        duplicate: &duplicate,
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v));
    // The visitor's own error carries no structure through serde; the path waits here.
    if let Some(path) = duplicate.into_inner() {
        return Err(StrictError::DuplicateKey(path));
    }
    parsed.map_err(StrictError::Syntax)
}

/// Where a value sits in the body, built only when a key repeats.
enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => Ok(()),
            Path::Key(Path::Root, k) => f.write_str(k),
            Path::Key(p, k) => write!(f, "{p}.{k}"),
            Path::Index(p, i) => write!(f, "{p}[{i}]"),
        }
    }
}

/// One value to read at `path`.
struct Node<'a> {
    path: &'a Path<'a>,
    duplicate: &'a RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // serde_json never hands a non-finite float over; `Null` is what its own Value does.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        loop {
            let path = Path::Index(self.path, out.len());
            let next = Node {
                path: &path,
                duplicate: self.duplicate,
            };
            match seq.next_element_seed(next)? {
                Some(v) => out.push(v),
                None => return Ok(Value::Array(out)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = Path::Key(self.path, &key);
            if out.contains_key(&key) {
                let at = path.to_string();
                let message = format!("duplicate key {at}");
                *self.duplicate.borrow_mut() = Some(at);
                return Err(de::Error::custom(message));
            }
            let value = map.next_value_seed(Node {
                path: &path,
                duplicate: self.duplicate,
            })?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dup(text: &str) -> Option<String> {
        match from_slice(text.as_bytes()) {
            Err(StrictError::DuplicateKey(p)) => Some(p),
            _ => None,
        }
    }

    #[test]
    fn a_repeated_key_is_named_by_its_path_at_any_depth() {
        assert_eq!(dup(r#"{"a": 1, "a": 2}"#).as_deref(), Some("a"));
        assert_eq!(
            dup(r#"{"events": [{"id": "1"}, {"id": "2", "identities": {"phone": "1", "phone": "2"}}]}"#)
                .as_deref(),
            Some("events[1].identities.phone")
        );
        assert_eq!(
            dup(r#"[{"id": "1", "id": "2"}]"#).as_deref(),
            Some("[0].id")
        );
        assert_eq!(
            dup(r#"{"a": {"b": 1}, "c": {"b": 2}}"#),
            None,
            "one per object"
        );
        // Escapes are undone before keys are compared.
        assert_eq!(dup(r#"{"id": 1, "\u0069d": 2}"#).as_deref(), Some("id"));
    }

    #[test]
    fn otherwise_the_value_is_what_serde_json_reads() {
        let text = r#"{"s": "x\n", "n": -3, "u": 18446744073709551615, "f": 1.5e3,
                       "b": true, "z": null, "a": [1, [2, {}]], "o": {"k": []}}"#;
        let strict = from_slice(text.as_bytes()).unwrap();
        let loose: Value = serde_json::from_str(text).unwrap();
        assert_eq!(strict, loose);
        assert_eq!(strict["u"], json!(u64::MAX));
    }

    #[test]
    fn syntax_errors_and_trailing_text_are_serde_jsons() {
        for text in ["{", "[1,]", "{} {}", "", "{\"a\": 1} x"] {
            assert!(
                matches!(from_slice(text.as_bytes()), Err(StrictError::Syntax(_))),
                "{text:?}"
            );
        }
        let deep = "[".repeat(10_000);
        assert!(matches!(
            from_slice(deep.as_bytes()),
            Err(StrictError::Syntax(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_agrees_with_serde_json_without_repeats(s in "\\PC{0,200}") {
            match (from_slice(s.as_bytes()), serde_json::from_str::<Value>(&s)) {
                (Ok(a), Ok(b)) => proptest::prop_assert_eq!(a, b),
                (Err(StrictError::Syntax(_)), Err(_)) | (Err(StrictError::DuplicateKey(_)), Ok(_)) => {}
                (a, b) => proptest::prop_assert!(false, "{a:?} vs {b:?}"),
            }
        }
    }
}
