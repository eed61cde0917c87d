//! The native event model of docs/events.md and its parser.
//!
//! [`Event::from_value`] is the only way to make an [`Event`] from outside input. It either
//! returns an event that every later stage may trust, or an [`EventError`] with a stable
//! [`ErrorCode`], the field at fault (`identities.phone`, `props.amount`) and a message written
//! for the person who sent it.

use serde_json::{Map, Value};

use crate::event_type::{CatalogueType, TypeName, TypeNameError};
use crate::identity::{Identities, Identity, IdentityKind};
use crate::suggest::did_you_mean;
use crate::time::{self, MS_PER_DAY, Millis};
use crate::{Domain, EventType};

/// An event's properties (free-form, with the per-type rules of docs/events.md already checked).
pub type Props = Map<String, Value>;

/// The event id: 1–128 characters, the idempotency key within a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(Box<str>);

impl EventId {
    pub const MAX_CHARS: usize = 128;

    pub fn parse(s: &str) -> Option<EventId> {
        let n = s.chars().count();
        ((1..=Self::MAX_CHARS).contains(&n) && !s.chars().any(char::is_control))
            .then(|| EventId(s.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One interaction of one person with the brand.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: EventId,
    pub ty: EventType,
    /// Event time (not arrival time): it decides windows.
    pub ts: Millis,
    pub identities: Identities,
    pub props: Props,
    /// Where it came from (`douyin`, `oceanengine`, `wecom`, `shop`, ...), if said.
    pub source: Option<String>,
}

/// Stable machine codes for everything that can be wrong with an event. Clients match on these;
/// never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidJson,
    NotAnObject,
    UnknownField,
    MissingField,
    InvalidEventId,
    UnknownEventType,
    InvalidEventType,
    InvalidTimestamp,
    TimestampInFuture,
    TimestampTooOld,
    InvalidDomain,
    DomainMismatch,
    MissingIdentity,
    UnknownIdentityKind,
    InvalidPhone,
    InvalidEmail,
    InvalidIdentity,
    InvalidProps,
    InvalidProp,
    InvalidSource,
    EventTooLarge,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::NotAnObject => "not_an_object",
            ErrorCode::UnknownField => "unknown_field",
            ErrorCode::MissingField => "missing_field",
            ErrorCode::InvalidEventId => "invalid_event_id",
            ErrorCode::UnknownEventType => "unknown_event_type",
            ErrorCode::InvalidEventType => "invalid_event_type",
            ErrorCode::InvalidTimestamp => "invalid_timestamp",
            ErrorCode::TimestampInFuture => "timestamp_in_future",
            ErrorCode::TimestampTooOld => "timestamp_too_old",
            ErrorCode::InvalidDomain => "invalid_domain",
            ErrorCode::DomainMismatch => "domain_mismatch",
            ErrorCode::MissingIdentity => "missing_identity",
            ErrorCode::UnknownIdentityKind => "unknown_identity_kind",
            ErrorCode::InvalidPhone => "invalid_phone",
            ErrorCode::InvalidEmail => "invalid_email",
            ErrorCode::InvalidIdentity => "invalid_identity",
            ErrorCode::InvalidProps => "invalid_props",
            ErrorCode::InvalidProp => "invalid_prop",
            ErrorCode::InvalidSource => "invalid_source",
            ErrorCode::EventTooLarge => "event_too_large",
        }
    }
}

/// Why one event was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EventError {
    pub code: ErrorCode,
    /// The field at fault, as a dotted path (`identities.phone`); `None` for the whole event.
    pub field: Option<String>,
    pub message: String,
    /// The event's id, when it could be read, so a batch answer can name the event.
    pub id: Option<String>,
}

impl EventError {
    pub fn new(code: ErrorCode, field: Option<&str>, message: impl Into<String>) -> EventError {
        EventError {
            code,
            field: field.map(str::to_string),
            message: message.into(),
            id: None,
        }
    }

    fn with_id(mut self, id: Option<&str>) -> EventError {
        self.id = id.map(str::to_string);
        self
    }
}

/// Parses one native event from JSON text. `bounds` (or just the receiving clock, with the
/// default earliest time) says which event times are accepted.
pub fn parse_event(text: &str, bounds: impl Into<TimeBounds>) -> Result<Event, EventError> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        EventError::new(ErrorCode::InvalidJson, None, format!("malformed JSON: {e}"))
    })?;
    Event::from_value(value, bounds)
}

const FIELDS: [&str; 7] = [
    "id",
    "type",
    "ts",
    "identities",
    "domain",
    "props",
    "source",
];

/// Events may be at most this far ahead of the receiving clock (docs/events.md: 24 h).
pub const MAX_FUTURE_MS: Millis = MS_PER_DAY;

/// The earliest event time accepted unless a server or an import says otherwise:
/// 2000-01-01T00:00:00Z, before any platform Siyu reads from existed. Without a floor, one
/// event dated 0001-01-01 made every later stage cover two thousand years.
pub const DEFAULT_MIN_TS: Millis = 946_684_800_000;

/// The event times a receiver accepts: from `min` (inclusive) to [`MAX_FUTURE_MS`] past `now`.
/// A bare clock reading converts into one with [`DEFAULT_MIN_TS`], so tests and tools that
/// only know the time keep the one default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeBounds {
    /// The receiving clock.
    pub now: Millis,
    /// The earliest event time accepted.
    pub min: Millis,
}

impl TimeBounds {
    pub fn new(now: Millis, min: Millis) -> TimeBounds {
        TimeBounds { now, min }
    }
}

impl From<Millis> for TimeBounds {
    fn from(now: Millis) -> TimeBounds {
        TimeBounds::new(now, DEFAULT_MIN_TS)
    }
}

impl Event {
    /// Parses one native event. Takes the value by ownership so `props` moves without a copy.
    pub fn from_value(value: Value, bounds: impl Into<TimeBounds>) -> Result<Event, EventError> {
        Self::from_value_within(value, bounds.into())
    }

    fn from_value_within(value: Value, bounds: TimeBounds) -> Result<Event, EventError> {
        let Value::Object(mut obj) = value else {
            return Err(EventError::new(
                ErrorCode::NotAnObject,
                None,
                "an event must be a JSON object",
            ));
        };
        let raw_id = obj.get("id").and_then(Value::as_str).map(str::to_string);
        Self::from_object(&mut obj, bounds).map_err(|e| e.with_id(raw_id.as_deref()))
    }

    fn from_object(obj: &mut Map<String, Value>, bounds: TimeBounds) -> Result<Event, EventError> {
        if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(EventError::new(
                ErrorCode::UnknownField,
                Some(k),
                format!(
                    "unknown field {k:?}; an event has only {}",
                    FIELDS.join(", ")
                ),
            ));
        }
        let id_text = required_str(obj, "id")?;
        let id = EventId::parse(id_text).ok_or_else(|| {
            EventError::new(
                ErrorCode::InvalidEventId,
                Some("id"),
                "id must be 1–128 characters without control characters",
            )
        })?;

        let type_text = required_str(obj, "type")?;
        let type_name = type_text.parse::<TypeName>().map_err(|e| match e {
            TypeNameError::Unknown => EventError::new(
                ErrorCode::UnknownEventType,
                Some("type"),
                unknown_type_message(type_text),
            ),
            TypeNameError::BadCustomName => EventError::new(
                ErrorCode::InvalidEventType,
                Some("type"),
                format!(
                    "custom type {type_text:?}: after x_ come 1–64 letters, digits or underscores"
                ),
            ),
        })?;

        let ts_text = required_str(obj, "ts")?;
        let ts = time::parse_rfc3339(ts_text).ok_or_else(|| {
            EventError::new(
                ErrorCode::InvalidTimestamp,
                Some("ts"),
                format!("ts {ts_text:?} is not an RFC 3339 timestamp with an offset, e.g. 2026-10-31T20:15:00+08:00"),
            )
        })?;
        if ts > bounds.now.saturating_add(MAX_FUTURE_MS) {
            return Err(EventError::new(
                ErrorCode::TimestampInFuture,
                Some("ts"),
                format!("ts {ts_text} is more than 24 h in the future"),
            ));
        }
        if ts < bounds.min {
            return Err(EventError::new(
                ErrorCode::TimestampTooOld,
                Some("ts"),
                format!(
                    "ts {ts_text} is before {}, the earliest event time accepted",
                    time::format_rfc3339(bounds.min)
                ),
            ));
        }

        let domain = match obj.get("domain") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.parse::<Domain>().map_err(|_| {
                EventError::new(
                    ErrorCode::InvalidDomain,
                    Some("domain"),
                    format!("domain {s:?} is not one of public, commercial, private"),
                )
            })?),
            Some(_) => return Err(wrong_type("domain", "a string")),
        };
        let ty = match type_name {
            TypeName::Catalogue(t) => {
                if let Some(d) = domain
                    && d != t.domain()
                {
                    return Err(EventError::new(
                        ErrorCode::DomainMismatch,
                        Some("domain"),
                        format!(
                            "{} belongs to the {} domain, not {d}",
                            t.as_str(),
                            t.domain()
                        ),
                    ));
                }
                EventType::Catalogue(t)
            }
            TypeName::Custom(name) => {
                let domain = domain.ok_or_else(|| {
                    EventError::new(
                        ErrorCode::MissingField,
                        Some("domain"),
                        "a custom x_ event needs a domain: public, commercial or private",
                    )
                })?;
                EventType::Custom { name, domain }
            }
        };

        let identities = parse_identities(obj.get("identities"))?;

        let source = match obj.get("source") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if (1..=64).contains(&s.chars().count()) => Some(s.clone()),
            Some(_) => {
                return Err(EventError::new(
                    ErrorCode::InvalidSource,
                    Some("source"),
                    "source must be a string of 1–64 characters",
                ));
            }
        };

        let mut props = match obj.remove("props") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m,
            Some(_) => {
                return Err(EventError::new(
                    ErrorCode::InvalidProps,
                    Some("props"),
                    "props must be a JSON object",
                ));
            }
        };
        if let Some(t) = ty.catalogue() {
            check_props(t, &mut props)?;
        } else if is_alias(&ty) {
            check_previous_id(&mut props)?;
        }

        Ok(Event {
            id,
            ty,
            ts,
            identities,
            props,
            source,
        })
    }

    pub fn domain(&self) -> Domain {
        self.ty.domain()
    }

    /// `amount` of an order or refund, in CNY.
    pub fn amount(&self) -> Option<f64> {
        self.props.get("amount").and_then(Value::as_f64)
    }

    /// `duration_s` of a live watch (0 when absent).
    pub fn duration_s(&self) -> f64 {
        self.props
            .get("duration_s")
            .and_then(Value::as_f64)
            .unwrap_or(0.0)
    }

    /// For an alias (`x_alias` with `props.previous_id`): the id the sender says belongs to
    /// this event's person too, a user id or an anonymous id, normalized like them. The
    /// identity graph links the fans holding it with this event's fan.
    pub fn previous_id(&self) -> Option<&str> {
        if !is_alias(&self.ty) {
            return None;
        }
        self.props.get(PREVIOUS_ID).and_then(Value::as_str)
    }

    /// `group_id` of a group event.
    pub fn group_id(&self) -> Option<&str> {
        self.props.get("group_id").and_then(Value::as_str)
    }
}

/// The custom type of an alias: `x_alias`.
pub const ALIAS: &str = "alias";

/// The property of an alias that names the previous id.
const PREVIOUS_ID: &str = "previous_id";

fn is_alias(ty: &EventType) -> bool {
    matches!(ty, EventType::Custom { name, .. } if name.as_str() == ALIAS)
}

/// An alias's `previous_id`, when given, is an identity value (1–256 characters, trimmed);
/// integers are accepted as strings, as in `identities`. An `x_alias` without one is an
/// ordinary custom event (what aliases were before they named the previous id).
fn check_previous_id(props: &mut Props) -> Result<(), EventError> {
    let text = match props.get(PREVIOUS_ID) {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) if n.is_u64() => n.to_string(),
        Some(_) => {
            return Err(prop_error(
                PREVIOUS_ID,
                "previous_id must be a string".into(),
            ));
        }
    };
    let id = Identity::parse(IdentityKind::UserId, &text).map_err(|_| {
        prop_error(
            PREVIOUS_ID,
            format!(
                "previous_id must be 1–{} characters without control characters",
                Identity::MAX_CHARS
            ),
        )
    })?;
    props.insert(PREVIOUS_ID.into(), Value::String(id.value().into()));
    Ok(())
}

/// `unknown event type "ordr"; did you mean "order"?`, or the general rule when no catalogue
/// type is near.
fn unknown_type_message(text: &str) -> String {
    let names = CatalogueType::ALL.iter().map(|t| t.as_str());
    let hint = did_you_mean(&text.to_lowercase(), names);
    if hint.is_empty() {
        format!("unknown event type {text:?}; use a catalogue type or x_<name> for a custom event")
    } else {
        format!("unknown event type {text:?}{hint}")
    }
}

fn wrong_type(field: &str, expected: &str) -> EventError {
    EventError::new(
        ErrorCode::MissingField,
        Some(field),
        format!("{field} must be {expected}"),
    )
}

fn required_str<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a str, EventError> {
    match obj.get(field) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(EventError::new(
            ErrorCode::MissingField,
            Some(field),
            format!("{field} is required"),
        )),
        Some(_) => Err(wrong_type(field, "a string")),
    }
}

fn parse_identities(value: Option<&Value>) -> Result<Identities, EventError> {
    let obj = match value {
        Some(Value::Object(m)) => m,
        None | Some(Value::Null) => {
            return Err(EventError::new(
                ErrorCode::MissingIdentity,
                Some("identities"),
                "identities is required: an object with at least one identity",
            ));
        }
        Some(_) => return Err(wrong_type("identities", "an object")),
    };
    let mut ids = Vec::with_capacity(obj.len());
    for (key, v) in obj {
        let field = format!("identities.{key}");
        let kind: IdentityKind = key.parse().map_err(|_| {
            let kinds: Vec<&str> = IdentityKind::ALL.iter().map(|k| k.as_str()).collect();
            EventError::new(
                ErrorCode::UnknownIdentityKind,
                Some(&field),
                format!(
                    "unknown identity kind {key:?}; known kinds: {}",
                    kinds.join(", ")
                ),
            )
        })?;
        let text = match v {
            // An export's empty column: the identity is simply not there.
            Value::Null => continue,
            Value::String(s) => s.clone(),
            // Phones and numeric ids often arrive as JSON numbers.
            Value::Number(n) if n.is_u64() => n.to_string(),
            _ => {
                return Err(EventError::new(
                    ErrorCode::InvalidIdentity,
                    Some(&field),
                    format!("{key} must be a string"),
                ));
            }
        };
        let id = Identity::parse(kind, &text)
            .map_err(|e| EventError::new(e.code(), Some(&field), e.to_string()))?;
        ids.push(id);
    }
    Identities::new(ids).ok_or_else(|| {
        EventError::new(
            ErrorCode::MissingIdentity,
            Some("identities"),
            format!(
                "identities needs at least one of: {}",
                IdentityKind::ALL
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })
}

/// The per-type property rules: what later stages read (amounts, durations, group ids) must be
/// there and well-typed. Ids given as numbers are turned into strings, so `group_id` 7 and
/// `"7"` are the same group.
fn check_props(t: CatalogueType, props: &mut Props) -> Result<(), EventError> {
    use CatalogueType as T;
    match t {
        T::LiveWatch => optional_number(props, "duration_s")?,
        T::GroupJoin | T::GroupLeave => required_id(props, "group_id")?,
        T::GroupMessage => optional_id(props, "group_id")?,
        T::Order | T::Refund => {
            required_id(props, "order_id")?;
            required_number(props, "amount")?;
        }
        T::LeadForm => {
            optional_string(props, "name")?;
            optional_string(props, "channel")?;
        }
        T::PrivateMessageIn => optional_string(props, "text")?,
        _ => {}
    }
    Ok(())
}

fn prop_error(name: &str, message: String) -> EventError {
    EventError::new(
        ErrorCode::InvalidProp,
        Some(&format!("props.{name}")),
        message,
    )
}

fn optional_number(props: &Props, name: &str) -> Result<(), EventError> {
    match props.get(name) {
        None | Some(Value::Null) => Ok(()),
        Some(v) if v.as_f64().is_some_and(|x| x >= 0.0) => Ok(()),
        Some(_) => Err(prop_error(name, format!("{name} must be a number ≥ 0"))),
    }
}

fn required_number(props: &Props, name: &str) -> Result<(), EventError> {
    match props.get(name) {
        None | Some(Value::Null) => Err(prop_error(name, format!("{name} is required"))),
        _ => optional_number(props, name),
    }
}

fn optional_string(props: &Props, name: &str) -> Result<(), EventError> {
    match props.get(name) {
        None | Some(Value::Null) | Some(Value::String(_)) => Ok(()),
        Some(_) => Err(prop_error(name, format!("{name} must be a string"))),
    }
}

fn optional_id(props: &mut Props, name: &str) -> Result<(), EventError> {
    match props.get(name) {
        None | Some(Value::Null) => Ok(()),
        _ => required_id(props, name),
    }
}

fn required_id(props: &mut Props, name: &str) -> Result<(), EventError> {
    let text = match props.get(name) {
        Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= 128 => return Ok(()),
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => n.to_string(),
        None | Some(Value::Null) => {
            return Err(prop_error(name, format!("{name} is required")));
        }
        Some(_) => {
            return Err(prop_error(
                name,
                format!("{name} must be a non-empty string of at most 128 characters"),
            ));
        }
    };
    props.insert(name.to_string(), Value::String(text));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: Millis = 1_793_000_000_000; // 2026-10-27

    fn parse(v: Value) -> Result<Event, EventError> {
        Event::from_value(v, NOW)
    }

    fn base() -> Value {
        json!({"id": "e1", "type": "follow", "ts": "2026-10-01T12:00:00+08:00",
               "identities": {"douyin_open_id": "o1"}})
    }

    fn with(mut v: Value, key: &str, val: Value) -> Value {
        v[key] = val;
        v
    }

    fn err(v: Value) -> (ErrorCode, Option<String>) {
        let e = parse(v).unwrap_err();
        (e.code, e.field)
    }

    #[test]
    fn a_valid_event_parses_with_its_domain() {
        let e = parse(base()).unwrap();
        assert_eq!(e.id.as_str(), "e1");
        assert_eq!(e.domain(), Domain::Public);
        assert_eq!(e.ts, 1_790_827_200_000);
        assert_eq!(e.identities.get(IdentityKind::DouyinOpenId), Some("o1"));
    }

    #[test]
    fn every_field_error_names_the_field() {
        use ErrorCode::*;
        let f = |s: &str| Some(s.to_string());
        assert_eq!(err(json!([1])), (NotAnObject, None));
        assert_eq!(
            err(with(base(), "extra", json!(1))),
            (UnknownField, f("extra"))
        );
        let mut v = base();
        v.as_object_mut().unwrap().remove("id");
        assert_eq!(err(v), (MissingField, f("id")));
        assert_eq!(
            err(with(base(), "id", json!(""))),
            (InvalidEventId, f("id"))
        );
        assert_eq!(
            err(with(base(), "id", json!("a".repeat(129)))),
            (InvalidEventId, f("id"))
        );
        assert_eq!(err(with(base(), "id", json!(5))), (MissingField, f("id")));
        assert_eq!(
            err(with(base(), "type", json!("buy"))),
            (UnknownEventType, f("type"))
        );
        assert_eq!(
            err(with(base(), "type", json!("x_"))),
            (InvalidEventType, f("type"))
        );
        assert_eq!(
            err(with(base(), "ts", json!("2026-10-01 12:00"))),
            (InvalidTimestamp, f("ts"))
        );
        assert_eq!(
            err(with(base(), "ts", json!("2026-10-29T12:00:00Z"))),
            (TimestampInFuture, f("ts"))
        );
        assert_eq!(
            err(with(base(), "ts", json!("1999-12-31T23:59:59.999Z"))),
            (TimestampTooOld, f("ts"))
        );
        assert_eq!(
            err(with(base(), "ts", json!("0001-01-01T00:00:00Z"))),
            (TimestampTooOld, f("ts"))
        );
        assert_eq!(
            err(with(base(), "domain", json!("private"))),
            (DomainMismatch, f("domain"))
        );
        assert_eq!(
            err(with(base(), "domain", json!("web"))),
            (InvalidDomain, f("domain"))
        );
        assert_eq!(
            err(with(base(), "type", json!("x_signup"))),
            (MissingField, f("domain"))
        );
        assert_eq!(
            err(with(base(), "identities", json!({}))),
            (MissingIdentity, f("identities"))
        );
        assert_eq!(
            err(with(base(), "identities", json!({"qq": "1"}))),
            (UnknownIdentityKind, f("identities.qq"))
        );
        assert_eq!(
            err(with(base(), "identities", json!({"phone": "138-abc"}))),
            (InvalidPhone, f("identities.phone"))
        );
        assert_eq!(
            err(with(base(), "identities", json!({"douyin_open_id": ""}))),
            (InvalidIdentity, f("identities.douyin_open_id"))
        );
        assert_eq!(
            err(with(base(), "props", json!([]))),
            (InvalidProps, f("props"))
        );
        assert_eq!(
            err(with(base(), "source", json!(""))),
            (InvalidSource, f("source"))
        );
    }

    #[test]
    fn the_earliest_time_is_the_default_or_the_one_given() {
        let at = |ts: &str, bounds: TimeBounds| {
            Event::from_value(with(base(), "ts", json!(ts)), bounds).map(|e| e.ts)
        };
        assert_eq!(
            at("2000-01-01T00:00:00Z", NOW.into()),
            Ok(DEFAULT_MIN_TS),
            "the floor itself is accepted"
        );
        let later = time::parse_rfc3339("2020-01-01T00:00:00Z").unwrap();
        let e = at("2019-06-01T00:00:00+08:00", TimeBounds::new(NOW, later)).unwrap_err();
        assert_eq!(e.code, ErrorCode::TimestampTooOld);
        assert_eq!(
            e.message,
            "ts 2019-06-01T00:00:00+08:00 is before 2020-01-01T00:00:00.000Z, the earliest event time accepted"
        );
        let earlier = time::parse_rfc3339("1990-01-01T00:00:00Z").unwrap();
        assert!(at("1995-01-01T00:00:00Z", TimeBounds::new(NOW, earlier)).is_ok());
    }

    #[test]
    fn a_mistyped_type_gets_a_hint_and_keeps_its_code() {
        let e = parse(with(base(), "type", json!("ordr"))).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownEventType);
        assert_eq!(
            e.message,
            "unknown event type \"ordr\"; did you mean \"order\"?"
        );
        let e = parse(with(base(), "type", json!("Live_Wach"))).unwrap_err();
        assert_eq!(
            e.message,
            "unknown event type \"Live_Wach\"; did you mean \"live_watch\"?"
        );
        let e = parse(with(base(), "type", json!("purchase"))).unwrap_err();
        assert_eq!(
            e.message,
            "unknown event type \"purchase\"; use a catalogue type or x_<name> for a custom event"
        );
    }

    #[test]
    fn an_error_carries_the_id_when_it_could_be_read() {
        let e = parse(with(base(), "type", json!("buy"))).unwrap_err();
        assert_eq!(e.id.as_deref(), Some("e1"));
    }

    #[test]
    fn custom_events_take_their_domain() {
        let v = with(
            with(base(), "type", json!("x_signup")),
            "domain",
            json!("商域"),
        );
        let e = parse(v).unwrap();
        assert_eq!(e.domain(), Domain::Commercial);
        assert_eq!(e.ty.to_string(), "x_signup");
    }

    #[test]
    fn per_type_props_are_checked_and_ids_become_strings() {
        let order =
            |props: Value| parse(with(with(base(), "type", json!("order")), "props", props));
        let e = order(json!({"order_id": 42, "amount": 99.5})).unwrap();
        assert_eq!(e.props["order_id"], json!("42"));
        assert_eq!(e.amount(), Some(99.5));
        let e = order(json!({"order_id": "o1"})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("props.amount"));
        let e = order(json!({"order_id": "o1", "amount": -1})).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidProp);
        let e = order(json!({"amount": 1})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("props.order_id"));

        let join = parse(with(
            with(base(), "type", json!("group_join")),
            "props",
            json!({}),
        ));
        assert_eq!(join.unwrap_err().field.as_deref(), Some("props.group_id"));
        let watch = parse(with(
            with(base(), "type", json!("live_watch")),
            "props",
            json!({"duration_s": "long"}),
        ));
        assert_eq!(
            watch.unwrap_err().field.as_deref(),
            Some("props.duration_s")
        );
    }

    #[test]
    fn an_alias_names_its_previous_id() {
        let alias = |props: Value| {
            let v = with(
                with(base(), "type", json!("x_alias")),
                "domain",
                json!("private"),
            );
            parse(with(v, "props", props))
        };
        let e = alias(json!({"previous_id": "  u-old "})).unwrap();
        assert_eq!(e.previous_id(), Some("u-old"));
        assert_eq!(
            alias(json!({"previous_id": 42})).unwrap().previous_id(),
            Some("42")
        );
        assert_eq!(alias(json!({})).unwrap().previous_id(), None);
        let e = alias(json!({"previous_id": ""})).unwrap_err();
        assert_eq!(
            (e.code, e.field.as_deref()),
            (ErrorCode::InvalidProp, Some("props.previous_id"))
        );
        let e = alias(json!({"previous_id": ["u"]})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("props.previous_id"));
        // Only an alias has one.
        let v = with(
            with(base(), "type", json!("x_signup")),
            "domain",
            json!("private"),
        );
        let e = parse(with(v, "props", json!({"previous_id": "u"}))).unwrap();
        assert_eq!(e.previous_id(), None);
    }

    #[test]
    fn identities_accept_numbers_and_skip_nulls() {
        let e = parse(with(
            base(),
            "identities",
            json!({"phone": 13800138000u64, "email": null}),
        ))
        .unwrap();
        assert_eq!(
            e.identities.get(IdentityKind::Phone),
            Some("+8613800138000")
        );
        assert_eq!(e.identities.len(), 1);
    }

    #[test]
    fn malformed_json_is_reported() {
        let e = parse_event("{\"id\": ", NOW).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidJson);
        assert!(e.message.contains("line 1"));
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(s in "\\PC{0,200}") {
            let _ = parse_event(&s, NOW);
        }

        #[test]
        fn phone_normalization_is_idempotent(d in "1[3-9][0-9]{9}", sep in "[ .()-]{0,2}") {
            let raw = format!("+86{sep}{}", d);
            let once = crate::identity::normalize_phone(&raw).unwrap();
            proptest::prop_assert_eq!(crate::identity::normalize_phone(&once).unwrap(), once);
        }
    }
}
