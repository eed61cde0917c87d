//! Segment's (and RudderStack's) tracking API, mapped onto the native model, so that their own
//! client libraries send to Siyu unchanged.
//!
//! A Segment message becomes a native event JSON value, which then goes through the one native
//! parser, so every rule (ids, timestamps, phones) is checked in one place. Field names in
//! errors are translated back to Segment's (`traits.phone`, `messageId`), because that is what
//! the sender wrote.
//!
//! | Segment | native |
//! |---|---|
//! | `messageId` | `id` |
//! | `timestamp`, else `originalTimestamp`, else `sentAt` (message, then batch), else now | `ts` |
//! | `userId`, `anonymousId` | `identities.user_id`, `identities.anonymous_id` |
//! | traits (`traits` or `context.traits`) `phone`, `email`, or any identity kind | `identities.*` |
//! | track with a catalogue `event` (`order`, `follow`, ...) | that type, `properties` as props |
//! | track `Order Completed` / `Order Refunded` (Segment's e-commerce spec) | `order` / `refund`, amount from `total`, `revenue` or `value` |
//! | any other track | `x_<slug of event>` in the tenant's custom domain; the name kept in `props.event` |
//! | identify, page, screen, group | `x_identify`, `x_page`, `x_screen`, `x_group` |
//! | alias `previousId` → `userId` | `x_alias` carrying `user_id` = userId and `props.previous_id` = previousId; the identity graph links the fans holding previousId as a user id or an anonymous id (or attaches it as an anonymous id when no fan holds it) |

use serde_json::{Map, Value, json};

use crate::event::{ALIAS, ErrorCode, EventError, TimeBounds};
use crate::event_type::{CustomName, TypeName};
use crate::identity::{Identity, IdentityKind};
use crate::suggest::did_you_mean;
use crate::time;
use crate::{Domain, Event};

/// The message types Segment's libraries send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Track,
    Identify,
    Page,
    Screen,
    Group,
    Alias,
}

impl Kind {
    /// The message types' names, as `type` says them.
    pub const NAMES: [&'static str; 6] = ["track", "identify", "page", "screen", "group", "alias"];

    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "track" => Kind::Track,
            "identify" => Kind::Identify,
            "page" => Kind::Page,
            "screen" => Kind::Screen,
            "group" => Kind::Group,
            "alias" => Kind::Alias,
            _ => return None,
        })
    }
}

/// Context shared by the messages of one request.
pub struct Context<'a> {
    /// The batch's `sentAt`, if any.
    pub sent_at: Option<&'a str>,
    /// Where custom events go (the tenant's setting).
    pub custom_domain: Domain,
    /// The receiving clock (the time of a message that gives none) and the earliest time.
    pub bounds: TimeBounds,
}

fn err(code: ErrorCode, field: &str, message: impl Into<String>) -> EventError {
    EventError::new(code, Some(field), message)
}

/// Maps one Segment message to a native event. `kind` is the endpoint's type (`/v1/track`), or
/// `None` for `/v1/batch`, where each message says its `type`.
pub fn to_event(msg: Value, kind: Option<Kind>, cx: &Context<'_>) -> Result<Event, EventError> {
    let Value::Object(mut m) = msg else {
        return Err(EventError::new(
            ErrorCode::NotAnObject,
            None,
            "a message must be a JSON object",
        ));
    };
    let id = m
        .get("messageId")
        .and_then(Value::as_str)
        .map(str::to_string);
    let native = to_native(&mut m, kind, cx).map_err(|mut e| {
        e.id = id.clone();
        e
    })?;
    Event::from_value(native, cx.bounds).map_err(|mut e| {
        e.field = e.field.map(|f| native_to_segment_field(&f));
        e.id = id;
        e
    })
}

fn native_to_segment_field(f: &str) -> String {
    match f {
        "id" => "messageId".into(),
        "ts" => "timestamp".into(),
        "identities" => "userId".into(),
        "identities.user_id" => "userId".into(),
        "identities.anonymous_id" => "anonymousId".into(),
        _ => match f.strip_prefix("identities.") {
            Some(k) => format!("traits.{k}"),
            None => match f.strip_prefix("props.") {
                Some(p) => format!("properties.{p}"),
                None => f.to_string(),
            },
        },
    }
}

fn str_field<'a>(m: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, EventError> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(err(
            ErrorCode::InvalidIdentity,
            field,
            format!("{field} must be a string"),
        )),
    }
}

/// An alias's `previousId`: a string, or an integer (RudderStack's Python SDK sends an
/// integer id as it was given), normalized like a user id.
fn previous_id(m: &Map<String, Value>) -> Result<String, EventError> {
    let text = match m.get("previousId") {
        None | Some(Value::Null) => {
            return Err(err(
                ErrorCode::MissingField,
                "previousId",
                "an alias needs previousId",
            ));
        }
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => n.to_string(),
        Some(_) => {
            return Err(err(
                ErrorCode::InvalidIdentity,
                "previousId",
                "previousId must be a string",
            ));
        }
    };
    Identity::parse(IdentityKind::UserId, &text)
        .map(|id| id.value().to_string())
        .map_err(|_| {
            err(
                ErrorCode::InvalidIdentity,
                "previousId",
                format!(
                    "previousId must be 1–{} characters without control characters",
                    Identity::MAX_CHARS
                ),
            )
        })
}

fn object_field(m: &mut Map<String, Value>, field: &str) -> Result<Map<String, Value>, EventError> {
    match m.remove(field) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(o)) => Ok(o),
        Some(_) => Err(err(
            ErrorCode::InvalidProps,
            field,
            format!("{field} must be an object"),
        )),
    }
}

fn to_native(
    m: &mut Map<String, Value>,
    endpoint: Option<Kind>,
    cx: &Context<'_>,
) -> Result<Value, EventError> {
    let kind = match (endpoint, m.get("type").and_then(Value::as_str)) {
        (Some(k), _) => k,
        (None, Some(t)) => Kind::parse(t).ok_or_else(|| {
            let hint = did_you_mean(&t.to_lowercase(), Kind::NAMES);
            let message = if hint.is_empty() {
                format!(
                    "unknown message type {t:?}; expected {}",
                    Kind::NAMES.join(", ")
                )
            } else {
                format!("unknown message type {t:?}{hint}")
            };
            err(ErrorCode::UnknownEventType, "type", message)
        })?,
        (None, None) => {
            return Err(err(
                ErrorCode::MissingField,
                "type",
                "type is required in a batch",
            ));
        }
    };
    let id = str_field(m, "messageId")?
        .ok_or_else(|| {
            err(
                ErrorCode::MissingField,
                "messageId",
                "messageId is required",
            )
        })?
        .to_string();

    let ts_text = ["timestamp", "originalTimestamp", "sentAt"]
        .iter()
        .find_map(|f| m.get(*f).and_then(Value::as_str))
        .or(cx.sent_at)
        .map(str::to_string)
        .unwrap_or_else(|| time::format_rfc3339(cx.bounds.now));

    let mut identities = Map::new();
    let context_traits = match m.get_mut("context") {
        Some(Value::Object(c)) => match c.remove("traits") {
            Some(Value::Object(t)) => t,
            _ => Map::new(),
        },
        _ => Map::new(),
    };
    let traits = object_field(m, "traits")?;
    for t in [&context_traits, &traits] {
        for (k, v) in t {
            if let Ok(kind) = k.parse::<IdentityKind>()
                && !v.is_null()
            {
                identities.insert(kind.as_str().to_string(), v.clone());
            }
        }
    }
    if let Some(u) = str_field(m, "userId")? {
        identities.insert("user_id".into(), u.into());
    }
    if let Some(a) = str_field(m, "anonymousId")? {
        identities.insert("anonymous_id".into(), a.into());
    }

    let custom = |name: &str| -> Result<(String, Option<&'static str>), EventError> {
        let n = CustomName::slugify(name).ok_or_else(|| {
            err(
                ErrorCode::InvalidEventType,
                "event",
                format!("event name {name:?} has no letters or digits"),
            )
        })?;
        Ok((format!("x_{}", n.as_str()), Some(cx.custom_domain.as_str())))
    };

    let (ty, domain, props) = match kind {
        Kind::Track => {
            let name = str_field(m, "event")?
                .ok_or_else(|| {
                    err(
                        ErrorCode::MissingField,
                        "event",
                        "a track needs an event name",
                    )
                })?
                .to_string();
            let mut props = object_field(m, "properties")?;
            match name.parse::<TypeName>() {
                Ok(TypeName::Catalogue(t)) => (t.as_str().to_string(), None, props),
                _ => match name.as_str() {
                    "Order Completed" | "Order Refunded" => {
                        let amount = ["total", "revenue", "value", "amount"]
                            .iter()
                            .find_map(|k| props.get(*k).filter(|v| v.is_number()).cloned());
                        if let Some(a) = amount {
                            props.insert("amount".into(), a);
                        }
                        let ty = if name == "Order Completed" {
                            "order"
                        } else {
                            "refund"
                        };
                        (ty.to_string(), None, props)
                    }
                    _ => {
                        let (ty, d) = custom(&name)?;
                        props.insert("event".into(), name.into());
                        (ty, d, props)
                    }
                },
            }
        }
        Kind::Identify => {
            let (ty, d) = custom("identify")?;
            (ty, d, traits)
        }
        Kind::Page | Kind::Screen => {
            let mut props = object_field(m, "properties")?;
            for k in ["name", "category"] {
                if let Some(v) = m.get(k).filter(|v| v.is_string()) {
                    props.insert(k.into(), v.clone());
                }
            }
            let (ty, d) = custom(if kind == Kind::Page { "page" } else { "screen" })?;
            (ty, d, props)
        }
        Kind::Group => {
            let mut props = Map::new();
            if let Some(g) = m.get("groupId").filter(|v| !v.is_null()) {
                props.insert("group_id".into(), g.clone());
            }
            props.insert("traits".into(), Value::Object(traits));
            let (ty, d) = custom("group")?;
            (ty, d, props)
        }
        Kind::Alias => {
            let prev = previous_id(m)?;
            if str_field(m, "userId")?.is_none() {
                return Err(err(
                    ErrorCode::MissingField,
                    "userId",
                    "an alias needs userId",
                ));
            }
            // The previous id may be a user id or an anonymous id; which one, only the
            // identity graph knows, so it travels as a property and the graph links it.
            let mut props = Map::new();
            props.insert("previous_id".into(), prev.into());
            let (ty, d) = custom(ALIAS)?;
            (ty, d, props)
        }
    };

    let mut native = json!({
        "id": id,
        "type": ty,
        "ts": ts_text,
        "identities": Value::Object(identities),
        "props": Value::Object(props),
        "source": "segment",
    });
    if let Some(d) = domain {
        native["domain"] = d.into();
    }
    Ok(native)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IdentityKind as K;
    use crate::Millis;

    const NOW: Millis = 1_793_000_000_000;

    fn cx() -> Context<'static> {
        Context {
            sent_at: None,
            custom_domain: Domain::Private,
            bounds: NOW.into(),
        }
    }

    #[test]
    fn a_python_client_track_becomes_a_custom_event() {
        let msg = json!({
            "type": "track", "event": "Signed Up", "userId": "u1", "anonymousId": "a1",
            "properties": {"plan": "pro"}, "messageId": "m1",
            "timestamp": "2026-10-01T12:00:00.123456+00:00",
            "context": {"library": {"name": "analytics-python"}, "traits": {"phone": "138 0013 8000"}}
        });
        let e = to_event(msg, None, &cx()).unwrap();
        assert_eq!(e.id.as_str(), "m1");
        assert_eq!(e.ty.to_string(), "x_signed_up");
        assert_eq!(e.domain(), Domain::Private);
        assert_eq!(e.props["event"], "Signed Up");
        assert_eq!(e.identities.get(K::UserId), Some("u1"));
        assert_eq!(e.identities.get(K::AnonymousId), Some("a1"));
        assert_eq!(e.identities.get(K::Phone), Some("+8613800138000"));
        assert_eq!(e.source.as_deref(), Some("segment"));
    }

    #[test]
    fn catalogue_tracks_and_ecommerce_orders_map_to_the_catalogue() {
        let msg = json!({"type": "track", "event": "follow", "userId": "u", "messageId": "m"});
        assert_eq!(to_event(msg, None, &cx()).unwrap().ty.to_string(), "follow");
        let msg = json!({"event": "Order Completed", "userId": "u", "messageId": "m",
                         "properties": {"order_id": "o9", "total": 129.0}});
        let e = to_event(msg, Some(Kind::Track), &cx()).unwrap();
        assert_eq!(e.ty.to_string(), "order");
        assert_eq!(e.amount(), Some(129.0));
    }

    #[test]
    fn identify_alias_page_and_timestamps() {
        let cx = Context {
            sent_at: Some("2026-10-02T00:00:00Z"),
            ..cx()
        };
        let e = to_event(
            json!({"type": "identify", "userId": "u", "traits": {"email": "A@B.CN", "name": "李"}, "messageId": "1"}),
            None,
            &cx,
        )
        .unwrap();
        assert_eq!(e.identities.get(K::Email), Some("a@b.cn"));
        assert_eq!(e.ty.to_string(), "x_identify");
        assert_eq!(e.ts, time::parse_rfc3339("2026-10-02T00:00:00Z").unwrap());
        let e = to_event(
            json!({"type": "alias", "previousId": "anon", "userId": "u", "messageId": "2"}),
            None,
            &cx,
        )
        .unwrap();
        assert_eq!(e.ty.to_string(), "x_alias");
        assert_eq!(e.previous_id(), Some("anon"));
        assert_eq!(e.identities.get(K::UserId), Some("u"));
        assert_eq!(
            e.identities.get(K::AnonymousId),
            None,
            "which kind previousId is, only the identity graph knows"
        );
        let e = to_event(
            json!({"type": "page", "name": "Home", "anonymousId": "a", "messageId": "3"}),
            None,
            &cx,
        )
        .unwrap();
        assert_eq!(e.props["name"], "Home");
    }

    #[test]
    fn errors_use_segment_field_names() {
        let f = |v: Value| to_event(v, None, &cx()).unwrap_err();
        let e = f(json!({"type": "track", "event": "x", "userId": "u"}));
        assert_eq!(
            (e.code, e.field.as_deref()),
            (ErrorCode::MissingField, Some("messageId"))
        );
        let e = f(json!({"type": "track", "event": "x", "messageId": "m"}));
        assert_eq!(
            (e.code, e.field.as_deref()),
            (ErrorCode::MissingIdentity, Some("userId"))
        );
        let e = f(
            json!({"type": "identify", "userId": "u", "traits": {"phone": "abc"}, "messageId": "m"}),
        );
        assert_eq!(
            (e.code, e.field.as_deref(), e.id.as_deref()),
            (ErrorCode::InvalidPhone, Some("traits.phone"), Some("m"))
        );
        let e = f(
            json!({"type": "track", "event": "x", "userId": "u", "messageId": "m", "timestamp": "soon"}),
        );
        assert_eq!(e.field.as_deref(), Some("timestamp"));
        let e = f(
            json!({"type": "track", "event": "x", "userId": "u", "messageId": "m", "timestamp": "0000-01-01T00:00:00Z"}),
        );
        assert_eq!(
            (e.code, e.field.as_deref()),
            (ErrorCode::TimestampTooOld, Some("timestamp"))
        );
        let e = f(json!({"type": "bogus", "messageId": "m"}));
        assert_eq!(e.code, ErrorCode::UnknownEventType);
        let e = f(json!({"type": "alias", "userId": "u", "messageId": "m"}));
        assert_eq!(e.field.as_deref(), Some("previousId"));
        let e = f(json!({"type": "alias", "previousId": " ", "userId": "u", "messageId": "m"}));
        assert_eq!(
            (e.code, e.field.as_deref()),
            (ErrorCode::InvalidIdentity, Some("previousId"))
        );
        let e = f(json!({"type": "alias", "previousId": "u-old", "messageId": "m"}));
        assert_eq!(e.field.as_deref(), Some("userId"));
    }

    #[test]
    fn an_alias_previous_id_may_be_a_user_id_given_as_a_number() {
        let e = to_event(
            json!({"type": "alias", "previousId": 1001, "userId": "u-new", "messageId": "m"}),
            None,
            &cx(),
        )
        .unwrap();
        assert_eq!(e.previous_id(), Some("1001"));
        assert_eq!(e.identities.get(K::UserId), Some("u-new"));
    }

    #[test]
    fn a_mistyped_message_type_gets_a_hint() {
        let e = to_event(json!({"type": "trak", "messageId": "m"}), None, &cx()).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownEventType);
        assert_eq!(
            e.message,
            "unknown message type \"trak\"; did you mean \"track\"?"
        );
        let e = to_event(json!({"type": "bogus", "messageId": "m"}), None, &cx()).unwrap_err();
        assert_eq!(
            e.message,
            "unknown message type \"bogus\"; expected track, identify, page, screen, group, alias"
        );
    }
}
