//! Douyin Open Platform webhook deliveries (抖音开放平台 事件订阅), mapped onto native events.
//!
//! A delivery is `{"event", "client_key", "from_user_id", "to_user_id", "content", "log_id"}`;
//! `content` arrives as a JSON object or as a JSON string holding the object, and both are
//! accepted. Like Segment's messages, a delivery becomes a native event JSON value that goes
//! through the one native parser, and errors are renamed back to the delivery's own fields
//! (`from_user_id`, `content.group_id`, `Msg-Id`). Verifying the signature is the caller's job:
//! this module only reads bytes it has been told are genuine.
//!
//! | Douyin `event` | native type | the fan (`douyin_open_id`) | props kept |
//! |---|---|---|---|
//! | `verify_webhook` | — (answered with `{"challenge": n}`) | | |
//! | `im_receive_msg` | `private_message_in` | `from_user_id` | `conversation_short_id`, `server_message_id`, `conversation_type`, `message_type`, `text`, resource fields, `create_time` (ms) |
//! | `im_send_msg` | `private_message_out` | `to_user_id` | as above |
//! | `im_enter_direct_msg` | `x_im_enter` (private) | `from_user_id` | `scene_type`, `ad_info` (the ad that brought the fan), `conversation_short_id`, `create_time` |
//! | `group_fans_event` | `group_join` | `from_user_id` | `group_id` (from `im_group_id` or `group_id`), `group_type`, `create_group_type`, `create_time` |
//! | `enter_group_audit_change` | `x_group_apply` (private) | `from_user_id` | `group_id`, `apply_id`, `apply_status`, `create_time` |
//! | `im_group_receive_msg` | `group_message` | `from_user_id` | message props and `group_id` when sent |
//! | `authorize`, `unauthorize` | `x_authorize`, `x_unauthorize` (private) | `from_user_id` | `content` |
//! | anything else | `x_douyin_<event>` in the tenant's custom-event domain | `from_user_id`, else `to_user_id` | `event` and the whole delivery as `payload` |
//!
//! Every event also keeps `account_open_id` (the brand's account on the other side of the
//! conversation), `log_id` and the `Msg-Id` header as `msg_id`. The event time is
//! `content.create_time` (milliseconds, or seconds when it is that small), else the time of
//! arrival.
//!
//! The event id is derived from what the signature covers, never from a header: `douyin:` +
//! the body's `log_id`, or, for a body without one, `douyin:sha256:` + the SHA-256 hex of the
//! exact body. A retry (the same signed body, whatever its `Msg-Id`) is the same event and is
//! stored once; so is a captured delivery replayed under a new `Msg-Id`, which an id taken from
//! the unsigned header used to store again. The event log keeps ids forever, so this holds
//! past any retry horizon.

use serde_json::{Map, Value, json};

use crate::event::{ErrorCode, EventError, TimeBounds};
use crate::event_type::CustomName;
use crate::time::{self, Millis};
use crate::{Domain, Event};

/// Prefix of the ids of events made from Douyin deliveries.
pub const ID_PREFIX: &str = "douyin:";

/// The longest `log_id` taken as the delivery's key; a longer one (never seen from Douyin)
/// gives way to the body's hash, so the event id stays within its 128 characters.
const MAX_LOG_ID_CHARS: usize = 96;

/// What identifies one delivery: the body's `log_id` when it has a usable one, else the
/// SHA-256 of the exact (signed) body.
fn delivery_key(m: &Map<String, Value>, body: &[u8]) -> String {
    let log_id = match m.get("log_id") {
        Some(Value::String(s)) => Some(s.trim().to_string()),
        Some(Value::Number(n)) if n.is_u64() => Some(n.to_string()),
        _ => None,
    };
    match log_id {
        Some(l)
            if (1..=MAX_LOG_ID_CHARS).contains(&l.chars().count())
                && !l.chars().any(char::is_control) =>
        {
            l
        }
        _ => {
            use sha2::Digest;
            format!("sha256:{}", hex::encode(sha2::Sha256::digest(body)))
        }
    }
}

/// What one genuine delivery asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// `verify_webhook`: answer `{"challenge": challenge}` and store nothing.
    Verify { challenge: Value },
    /// Any other event, mapped.
    Event(Box<Event>),
}

/// What the mapping needs beyond the delivery.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    /// Where unknown events go (the tenant's setting).
    pub custom_domain: Domain,
    /// The receiving clock (the time of a delivery that gives none) and the earliest time.
    pub bounds: TimeBounds,
}

fn err(code: ErrorCode, field: &str, message: impl Into<String>) -> EventError {
    EventError::new(code, Some(field), message)
}

/// Which side of a delivery is the fan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fan {
    From,
    To,
}

impl Fan {
    fn field(self) -> &'static str {
        match self {
            Fan::From => "from_user_id",
            Fan::To => "to_user_id",
        }
    }

    fn other(self) -> Fan {
        match self {
            Fan::From => Fan::To,
            Fan::To => Fan::From,
        }
    }
}

/// The content fields a message event keeps.
const MESSAGE_FIELDS: &[&str] = &[
    "conversation_short_id",
    "server_message_id",
    "conversation_type",
    "message_type",
    "text",
    "scene_type",
    "resource_type",
    "resource_url",
    "item_id",
    "card_id",
];

/// Parses one delivery. `msg_id` is the `Msg-Id` header, kept for reference only: the event
/// id comes from the body (see the module docs).
pub fn parse(body: &[u8], msg_id: Option<&str>, cx: &Context) -> Result<Delivery, EventError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        EventError::new(
            ErrorCode::InvalidJson,
            None,
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    let Value::Object(mut m) = value else {
        return Err(EventError::new(
            ErrorCode::NotAnObject,
            None,
            "a delivery must be a JSON object",
        ));
    };
    let event = match m.get("event") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => {
            return Err(err(
                ErrorCode::MissingField,
                "event",
                "event is required: the name of the Douyin event",
            ));
        }
    };
    let content = content_object(m.remove("content"))?;
    if event == "verify_webhook" {
        return match content.get("challenge") {
            Some(c @ Value::Number(_)) => Ok(Delivery::Verify {
                challenge: c.clone(),
            }),
            _ => Err(err(
                ErrorCode::MissingField,
                "content.challenge",
                "verify_webhook needs content.challenge, a number",
            )),
        };
    }
    let raw = {
        // The payload as delivered (content as an object), for unknown events.
        let mut r = m.clone();
        r.insert("content".into(), Value::Object(content.clone()));
        Value::Object(r)
    };
    let delivery_id = delivery_key(&m, body);
    let (mut native, fan) = to_native(&event, &m, content, raw, &delivery_id, cx)?;
    if let Some(msg_id) = msg_id.map(str::trim).filter(|s| !s.is_empty()) {
        native["props"]["msg_id"] = msg_id.into();
    }
    Event::from_value(native, cx.bounds)
        .map(|e| Delivery::Event(Box::new(e)))
        .map_err(|mut e| {
            e.field = e.field.map(|f| native_to_delivery_field(&f, fan));
            e.id = Some(format!("{ID_PREFIX}{delivery_id}"));
            e
        })
}

/// `content` as an object: absent is empty; a string must hold a JSON object.
fn content_object(v: Option<Value>) -> Result<Map<String, Value>, EventError> {
    match v {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(o)) => Ok(o),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(&s) {
            Ok(Value::Object(o)) => Ok(o),
            _ => Err(err(
                ErrorCode::InvalidProps,
                "content",
                "content is a string but does not hold a JSON object",
            )),
        },
        Some(_) => Err(err(
            ErrorCode::InvalidProps,
            "content",
            "content must be a JSON object or a string holding one",
        )),
    }
}

fn native_to_delivery_field(f: &str, fan: Fan) -> String {
    match f {
        "id" => "log_id".into(),
        "ts" => "content.create_time".into(),
        "identities" | "identities.douyin_open_id" => fan.field().into(),
        _ => match f.strip_prefix("props.") {
            Some(p) => format!("content.{p}"),
            None => f.to_string(),
        },
    }
}

/// A user id field: a non-empty string (numbers are taken as their digits).
fn user_id(m: &Map<String, Value>, fan: Fan) -> Option<String> {
    match m.get(fan.field()) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// `create_time` in milliseconds: Douyin sends milliseconds, older events seconds.
fn create_time_ms(content: &Map<String, Value>) -> Result<Option<Millis>, EventError> {
    let n = match content.get("create_time") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        Some(_) => None,
    };
    match n {
        Some(n) if n > 0 => Ok(Some(if n < 100_000_000_000 { n * 1000 } else { n })),
        _ => Err(err(
            ErrorCode::InvalidTimestamp,
            "content.create_time",
            "create_time must be a positive number of milliseconds (or seconds) since 1970",
        )),
    }
}

fn keep(props: &mut Map<String, Value>, content: &Map<String, Value>, fields: &[&str]) {
    for f in fields {
        if let Some(v) = content.get(*f).filter(|v| !v.is_null()) {
            props.insert((*f).to_string(), v.clone());
        }
    }
}

/// `ad_info` may itself arrive as a string holding an object.
fn ad_info(content: &Map<String, Value>) -> Option<Value> {
    match content.get("ad_info")? {
        Value::String(s) => serde_json::from_str::<Value>(s)
            .ok()
            .filter(Value::is_object)
            .or_else(|| Some(Value::String(s.clone()))),
        Value::Null => None,
        v => Some(v.clone()),
    }
}

fn group_id(content: &Map<String, Value>) -> Option<Value> {
    ["im_group_id", "group_id"]
        .iter()
        .find_map(|k| content.get(*k).filter(|v| !v.is_null()).cloned())
}

fn to_native(
    event: &str,
    m: &Map<String, Value>,
    content: Map<String, Value>,
    raw: Value,
    delivery_id: &str,
    cx: &Context,
) -> Result<(Value, Fan), EventError> {
    let private = Some(Domain::Private);
    let (ty, domain, fan): (String, Option<Domain>, Fan) = match event {
        "im_receive_msg" => ("private_message_in".into(), None, Fan::From),
        "im_send_msg" => ("private_message_out".into(), None, Fan::To),
        "im_enter_direct_msg" => ("x_im_enter".into(), private, Fan::From),
        "group_fans_event" => ("group_join".into(), None, Fan::From),
        "enter_group_audit_change" => ("x_group_apply".into(), private, Fan::From),
        "im_group_receive_msg" => ("group_message".into(), None, Fan::From),
        "authorize" => ("x_authorize".into(), private, Fan::From),
        "unauthorize" => ("x_unauthorize".into(), private, Fan::From),
        other => {
            let name = CustomName::slugify(&format!("douyin_{other}")).ok_or_else(|| {
                err(
                    ErrorCode::InvalidEventType,
                    "event",
                    format!("event name {other:?} cannot be stored as a custom event"),
                )
            })?;
            let fan = if user_id(m, Fan::From).is_some() {
                Fan::From
            } else {
                Fan::To
            };
            (format!("x_{}", name.as_str()), Some(cx.custom_domain), fan)
        }
    };
    let open_id = user_id(m, fan).ok_or_else(|| {
        err(
            ErrorCode::MissingIdentity,
            fan.field(),
            format!(
                "{} is required: the fan's open id in a {event} event",
                fan.field()
            ),
        )
    })?;
    let created = create_time_ms(&content)?;

    let mut props = Map::new();
    match event {
        "im_receive_msg" | "im_send_msg" | "im_group_receive_msg" => {
            keep(&mut props, &content, MESSAGE_FIELDS);
            if let Some(g) = group_id(&content) {
                props.insert("group_id".into(), g);
            }
        }
        "im_enter_direct_msg" => {
            keep(
                &mut props,
                &content,
                &["scene_type", "conversation_short_id", "server_message_id"],
            );
            if let Some(ad) = ad_info(&content) {
                props.insert("ad_info".into(), ad);
            }
        }
        "group_fans_event" => {
            keep(&mut props, &content, &["group_type", "create_group_type"]);
            if let Some(g) = group_id(&content) {
                props.insert("group_id".into(), g);
            }
        }
        "enter_group_audit_change" => {
            keep(&mut props, &content, &["apply_id", "apply_status"]);
            if let Some(g) = group_id(&content) {
                props.insert("group_id".into(), g);
            }
        }
        "authorize" | "unauthorize" => {
            props.insert("content".into(), Value::Object(content));
        }
        other => {
            props.insert("event".into(), other.into());
            props.insert("payload".into(), raw);
        }
    }
    if let Some(ms) = created {
        props.insert("create_time".into(), ms.into());
    }
    if let Some(account) = user_id(m, fan.other()) {
        props.insert("account_open_id".into(), account.into());
    }
    if let Some(log_id) = m.get("log_id").filter(|v| !v.is_null()) {
        props.insert("log_id".into(), log_id.clone());
    }

    let mut native = json!({
        "id": format!("{ID_PREFIX}{delivery_id}"),
        "type": ty,
        "ts": time::format_rfc3339(created.unwrap_or(cx.bounds.now)),
        "identities": {"douyin_open_id": open_id},
        "props": Value::Object(props),
        "source": "douyin",
    });
    if let Some(d) = domain {
        native["domain"] = d.as_str().into();
    }
    Ok((native, fan))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IdentityKind as K;

    const NOW: Millis = 1_793_000_000_000;

    fn cx() -> Context {
        Context {
            custom_domain: Domain::Public,
            bounds: NOW.into(),
        }
    }

    fn event(v: Value) -> Event {
        match parse(v.to_string().as_bytes(), Some("m-1"), &cx()).unwrap() {
            Delivery::Event(e) => *e,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    fn error(v: Value) -> (ErrorCode, Option<String>) {
        let e = parse(v.to_string().as_bytes(), Some("m-1"), &cx()).unwrap_err();
        (e.code, e.field)
    }

    #[test]
    fn verify_webhook_answers_the_challenge() {
        let v =
            json!({"event": "verify_webhook", "client_key": "ck", "content": {"challenge": 12345}});
        assert_eq!(
            parse(v.to_string().as_bytes(), Some("m"), &cx()).unwrap(),
            Delivery::Verify {
                challenge: json!(12345)
            }
        );
        let v = json!({"event": "verify_webhook", "content": "{\"challenge\": 7}"});
        assert!(matches!(
            parse(v.to_string().as_bytes(), Some("m"), &cx()).unwrap(),
            Delivery::Verify { challenge } if challenge == json!(7)
        ));
        assert_eq!(
            error(json!({"event": "verify_webhook", "content": {}})),
            (ErrorCode::MissingField, Some("content.challenge".into()))
        );
    }

    #[test]
    fn a_received_message_is_the_senders_private_message_in() {
        let e = event(json!({
            "event": "im_receive_msg", "client_key": "ck", "log_id": "L1",
            "from_user_id": "fan-open-id", "to_user_id": "brand-open-id",
            "content": {"conversation_short_id": "c1", "server_message_id": "s1",
                        "conversation_type": 1, "message_type": "text", "text": "在吗",
                        "create_time": 1_790_000_000_123i64, "user_infos": [{"nick_name": "x"}]}
        }));
        assert_eq!(e.id.as_str(), "douyin:L1", "the body's log_id");
        assert_eq!(e.props["msg_id"], "m-1");
        assert_eq!(e.ty.to_string(), "private_message_in");
        assert_eq!(e.identities.get(K::DouyinOpenId), Some("fan-open-id"));
        assert_eq!(e.ts, 1_790_000_000_123);
        assert_eq!(e.props["text"], "在吗");
        assert_eq!(e.props["conversation_short_id"], "c1");
        assert_eq!(e.props["server_message_id"], "s1");
        assert_eq!(e.props["message_type"], "text");
        assert_eq!(e.props["create_time"], 1_790_000_000_123i64);
        assert_eq!(e.props["account_open_id"], "brand-open-id");
        assert_eq!(e.props["log_id"], "L1");
        assert!(!e.props.contains_key("user_infos"));
        assert_eq!(e.source.as_deref(), Some("douyin"));
    }

    #[test]
    fn content_may_be_a_string_holding_the_object() {
        let inner = json!({"text": "hi", "create_time": 1_790_000_000i64}).to_string();
        let e = event(
            json!({"event": "im_receive_msg", "from_user_id": "f", "to_user_id": "b",
                             "content": inner}),
        );
        assert_eq!(e.props["text"], "hi");
        assert_eq!(e.ts, 1_790_000_000_000, "seconds become milliseconds");
        assert_eq!(
            error(json!({"event": "im_receive_msg", "from_user_id": "f", "content": "not json"})),
            (ErrorCode::InvalidProps, Some("content".into()))
        );
    }

    #[test]
    fn a_sent_message_belongs_to_the_recipient() {
        let e = event(
            json!({"event": "im_send_msg", "from_user_id": "brand", "to_user_id": "fan",
                             "content": {"text": "您好"}}),
        );
        assert_eq!(e.ty.to_string(), "private_message_out");
        assert_eq!(e.identities.get(K::DouyinOpenId), Some("fan"));
        assert_eq!(e.props["account_open_id"], "brand");
        assert_eq!(e.ts, NOW, "no create_time: the time of arrival");
    }

    #[test]
    fn entering_a_conversation_keeps_the_ad_that_brought_the_fan() {
        let ad = json!({"ad_id": 7001, "adv_id": 42, "creative_id": 9}).to_string();
        let e = event(
            json!({"event": "im_enter_direct_msg", "from_user_id": "fan", "to_user_id": "b",
                             "content": {"scene_type": 5, "ad_info": ad, "conversation_short_id": "c"}}),
        );
        assert_eq!(e.ty.to_string(), "x_im_enter");
        assert_eq!(e.domain(), Domain::Private);
        assert_eq!(e.props["scene_type"], 5);
        assert_eq!(e.props["ad_info"]["ad_id"], 7001);
    }

    #[test]
    fn group_events_map_with_their_group() {
        let e = event(json!({"event": "group_fans_event", "from_user_id": "fan",
                             "content": {"im_group_id": 8801, "group_type": 1}}));
        assert_eq!(e.ty.to_string(), "group_join");
        assert_eq!(e.group_id(), Some("8801"));
        assert_eq!(
            error(json!({"event": "group_fans_event", "from_user_id": "fan", "content": {}})),
            (ErrorCode::InvalidProp, Some("content.group_id".into()))
        );
        let e = event(
            json!({"event": "enter_group_audit_change", "from_user_id": "fan",
                             "content": {"group_id": "g1", "apply_id": "a1", "apply_status": 1}}),
        );
        assert_eq!(
            (e.ty.to_string(), e.domain()),
            ("x_group_apply".into(), Domain::Private)
        );
        assert_eq!(e.props["apply_id"], "a1");
        let e = event(
            json!({"event": "im_group_receive_msg", "from_user_id": "fan",
                             "content": {"text": "大家好", "conversation_short_id": "gc"}}),
        );
        assert_eq!(e.ty.to_string(), "group_message");
        assert_eq!(e.props["text"], "大家好");
    }

    #[test]
    fn authorization_and_unknown_events_are_kept() {
        let e = event(json!({"event": "authorize", "from_user_id": "fan",
                             "content": {"scopes": ["im.direct_message"]}}));
        assert_eq!(e.ty.to_string(), "x_authorize");
        assert_eq!(e.props["content"]["scopes"][0], "im.direct_message");
        let e = event(json!({"event": "unauthorize", "from_user_id": "fan"}));
        assert_eq!(e.ty.to_string(), "x_unauthorize");
        let e = event(json!({"event": "new_follow_action", "to_user_id": "fan",
                             "content": "{\"x\": 1}"}));
        assert_eq!(e.ty.to_string(), "x_douyin_new_follow_action");
        assert_eq!(e.domain(), Domain::Public, "the tenant's custom domain");
        assert_eq!(e.identities.get(K::DouyinOpenId), Some("fan"));
        assert_eq!(e.props["event"], "new_follow_action");
        assert_eq!(e.props["payload"]["content"]["x"], 1);
    }

    #[test]
    fn bad_deliveries_name_the_delivery_field() {
        let bad = parse(b"{", Some("m"), &cx()).unwrap_err();
        assert_eq!(bad.code, ErrorCode::InvalidJson);
        assert_eq!(error(json!([1])), (ErrorCode::NotAnObject, None::<String>));
        assert_eq!(
            error(json!({"from_user_id": "f"})),
            (ErrorCode::MissingField, Some("event".into()))
        );
        assert_eq!(
            error(json!({"event": "im_receive_msg", "to_user_id": "b"})),
            (ErrorCode::MissingIdentity, Some("from_user_id".into()))
        );
        assert_eq!(
            error(json!({"event": "im_receive_msg", "from_user_id": "f",
                         "content": {"create_time": "soon"}})),
            (
                ErrorCode::InvalidTimestamp,
                Some("content.create_time".into())
            )
        );
        // One second after 1970: a real number, but before the earliest time accepted.
        assert_eq!(
            error(json!({"event": "im_receive_msg", "from_user_id": "f",
                         "content": {"create_time": 1}})),
            (
                ErrorCode::TimestampTooOld,
                Some("content.create_time".into())
            )
        );
    }

    #[test]
    fn the_event_id_comes_from_the_signed_body_not_the_msg_id_header() {
        let id = |body: &[u8], msg_id: Option<&str>| match parse(body, msg_id, &cx()).unwrap() {
            Delivery::Event(e) => e.id.as_str().to_string(),
            other => panic!("expected an event, got {other:?}"),
        };
        let with_log =
            json!({"event": "im_receive_msg", "from_user_id": "f", "log_id": "L9"}).to_string();
        // A replay under a new Msg-Id, or with none, is the same event.
        assert_eq!(id(with_log.as_bytes(), Some("a")), "douyin:L9");
        assert_eq!(id(with_log.as_bytes(), Some("b")), "douyin:L9");
        assert_eq!(id(with_log.as_bytes(), None), "douyin:L9");
        // Without a log_id: the SHA-256 of the exact bytes.
        let bare = br#"{"event":"im_receive_msg","from_user_id":"f"}"#;
        let digest = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(bare))
        };
        assert_eq!(id(bare, Some("a")), format!("douyin:sha256:{digest}"));
        assert_eq!(id(bare, Some("b")), id(bare, None));
        let spaced = br#"{"event": "im_receive_msg", "from_user_id": "f"}"#;
        assert_ne!(
            id(spaced, None),
            id(bare, None),
            "other bytes, another delivery"
        );
        // A log_id too long for an event id gives way to the hash.
        let long =
            json!({"event": "im_receive_msg", "from_user_id": "f", "log_id": "L".repeat(200)})
                .to_string();
        assert!(id(long.as_bytes(), None).starts_with("douyin:sha256:"));
    }
}
