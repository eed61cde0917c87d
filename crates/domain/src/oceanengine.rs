//! Ocean Engine (巨量引擎) leads (线索, "clues"), mapped onto `lead_form` events.
//!
//! A lead is one object of the lead API `GET /open_api/2/tools/clue/get/` (`data.list[]`), or
//! one row of an export with the same field names. It becomes a `lead_form` in the commercial
//! domain, through the one native parser:
//!
//! | lead field | native |
//! |---|---|
//! | `clue_id` | event id `oceanengine:<clue_id>`, and identity `lead_id` |
//! | `telephone` | identity `phone` (normalized, so `138 0013 8000` and `+86 13800138000` are one phone); a masked number (`138****8000`) is not an identity and is kept as `props.telephone_masked` |
//! | `email` | identity `email` |
//! | `create_time` (`2026-10-01 12:00:00`, Beijing time; RFC 3339 and Unix seconds also read) | `ts` |
//! | `name` | `props.name` |
//! | — | `props.channel` = `ad` |
//! | every other field (`advertiser_id`, `ad_id`, `ad_name`, `promotion_id`, `creative_id`, `clue_source`, `clue_type`, `province_name`, `city_name`, `remark`, `weixin`, ...) | `props.*`, ids as strings, kept for attribution |
//!
//! A lead without `clue_id`, `telephone` or `email` has no usable identity and is refused, as is
//! a lead without `clue_id` (it is the idempotency key). Errors name the lead's own fields.

use jiff::civil::DateTime;
use jiff::tz::Offset;
use serde_json::{Map, Value};

use crate::event::{ErrorCode, EventError, TimeBounds};
use crate::time::Millis;
use crate::{Event, time};

/// Prefix of the ids of events made from Ocean Engine leads.
pub const ID_PREFIX: &str = "oceanengine:";

/// Ocean Engine reads and writes times as Beijing civil time.
const BEIJING: Offset = Offset::constant(8);

/// The format of the API's times: `2026-10-01 12:00:00`.
const FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// Fields holding ids: kept as strings whether they arrive as numbers or text.
const ID_FIELDS: &[&str] = &[
    "clue_id",
    "advertiser_id",
    "ad_id",
    "promotion_id",
    "project_id",
    "creative_id",
    "campaign_id",
    "site_id",
    "module_id",
    "req_id",
];

/// Fields that are codes: numbers whether they arrive as numbers or text (CSV).
const CODE_FIELDS: &[&str] = &[
    "clue_source",
    "clue_type",
    "clue_state",
    "allocation_status",
    "age",
    "gender",
];

/// Formats a time the way the lead API's `start_time` and `end_time` want it (Beijing time,
/// whole seconds).
pub fn format_time(ms: Millis) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => BEIJING.to_datetime(t).strftime(FORMAT).to_string(),
        Err(_) => ms.to_string(),
    }
}

/// Reads a lead's time: `2026-10-01 12:00:00` (Beijing), RFC 3339, or Unix seconds or
/// milliseconds.
pub fn parse_time(v: &Value) -> Option<Millis> {
    match v {
        Value::Number(n) => n.as_i64().map(unix_ms),
        Value::String(s) => {
            let s = s.trim();
            if let Ok(n) = s.parse::<i64>() {
                return Some(unix_ms(n));
            }
            if let Ok(dt) = DateTime::strptime(FORMAT, s) {
                return BEIJING.to_timestamp(dt).ok().map(|t| t.as_millisecond());
            }
            time::parse_rfc3339(s)
        }
        _ => None,
    }
}

fn unix_ms(n: i64) -> Millis {
    if n.abs() < 100_000_000_000 {
        n.saturating_mul(1000)
    } else {
        n
    }
}

fn err(code: ErrorCode, field: &str, message: impl Into<String>) -> EventError {
    EventError::new(code, Some(field), message)
}

/// A cell as text: strings trimmed, numbers as their digits, empty and null as absent.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Maps one lead to a `lead_form` event.
pub fn lead_to_event(
    lead: Map<String, Value>,
    bounds: impl Into<TimeBounds>,
) -> Result<Event, EventError> {
    let clue_id = lead.get("clue_id").and_then(text);
    let mut identities = Map::new();
    let mut props = Map::new();
    if let Some(c) = &clue_id {
        identities.insert("lead_id".into(), c.clone().into());
    }
    let phone = lead.get("telephone").and_then(text);
    match &phone {
        Some(p) if p.contains('*') => {
            props.insert("telephone_masked".into(), p.clone().into());
        }
        Some(p) => {
            identities.insert("phone".into(), p.clone().into());
        }
        None => {}
    }
    if let Some(e) = lead
        .get("email")
        .and_then(text)
        .filter(|e| !e.contains('*'))
    {
        identities.insert("email".into(), e.into());
    }
    if identities.is_empty() {
        return Err(err(
            ErrorCode::MissingIdentity,
            "telephone",
            "the lead has no usable identity: no clue_id, no unmasked telephone and no email",
        ));
    }
    let Some(clue_id) = clue_id else {
        return Err(err(
            ErrorCode::MissingField,
            "clue_id",
            "clue_id is required: it tells a new lead from one already stored",
        ));
    };
    let ts = match lead.get("create_time") {
        None | Some(Value::Null) => {
            return Err(err(
                ErrorCode::MissingField,
                "create_time",
                "create_time is required",
            ));
        }
        Some(v) => parse_time(v).ok_or_else(|| {
            err(
                ErrorCode::InvalidTimestamp,
                "create_time",
                format!("create_time {v} is not a time such as 2026-10-01 12:00:00 (Beijing)"),
            )
        })?,
    };

    for (k, v) in lead {
        if matches!(k.as_str(), "telephone" | "email" | "create_time") || v.is_null() {
            continue;
        }
        let v = if ID_FIELDS.contains(&k.as_str()) || k == "name" {
            match text(&v) {
                Some(t) => Value::String(t),
                None => continue,
            }
        } else if CODE_FIELDS.contains(&k.as_str()) {
            match &v {
                Value::String(s) if s.trim().is_empty() => continue,
                Value::String(s) => s.trim().parse::<i64>().map(Value::from).unwrap_or(v),
                _ => v,
            }
        } else {
            match &v {
                Value::String(s) if s.trim().is_empty() => continue,
                _ => v,
            }
        };
        props.insert(k, v);
    }
    props.insert("channel".into(), "ad".into());
    props.insert("create_time".into(), time::format_rfc3339(ts).into());

    let native = serde_json::json!({
        "id": format!("{ID_PREFIX}{clue_id}"),
        "type": "lead_form",
        "ts": time::format_rfc3339(ts),
        "identities": Value::Object(identities),
        "props": Value::Object(props),
        "source": "oceanengine",
    });
    Event::from_value(native, bounds).map_err(|mut e| {
        e.field = e.field.map(|f| native_to_lead_field(&f));
        e.id = Some(clue_id);
        e
    })
}

fn native_to_lead_field(f: &str) -> String {
    match f {
        "id" | "identities.lead_id" => "clue_id".into(),
        "ts" => "create_time".into(),
        "identities" | "identities.phone" => "telephone".into(),
        "identities.email" => "email".into(),
        _ => f.strip_prefix("props.").unwrap_or(f).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IdentityKind as K;
    use serde_json::json;

    const NOW: Millis = 1_793_000_000_000;

    fn lead(v: Value) -> Result<Event, EventError> {
        match v {
            Value::Object(m) => lead_to_event(m, NOW),
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_lead_becomes_a_lead_form_with_its_ad_fields() {
        let e = lead(json!({
            "clue_id": "7300000000000000001", "telephone": "138 0013 8000", "name": "王女士",
            "weixin": "wx_wang", "advertiser_id": 1_769_665_409_798_152u64, "ad_id": 1001,
            "ad_name": "秋季新品", "promotion_id": 7_290_000_000_000_000_001u64,
            "creative_id": "c-9", "clue_source": 1, "clue_type": "0", "province_name": "浙江",
            "city_name": "杭州", "create_time": "2026-10-01 12:00:00", "remark": "",
        }))
        .unwrap();
        assert_eq!(e.id.as_str(), "oceanengine:7300000000000000001");
        assert_eq!(e.ty.to_string(), "lead_form");
        assert_eq!(e.domain(), crate::Domain::Commercial);
        assert_eq!(e.identities.get(K::LeadId), Some("7300000000000000001"));
        assert_eq!(e.identities.get(K::Phone), Some("+8613800138000"));
        assert_eq!(
            e.ts,
            time::parse_rfc3339("2026-10-01T12:00:00+08:00").unwrap()
        );
        assert_eq!(e.props["name"], "王女士");
        assert_eq!(e.props["channel"], "ad");
        assert_eq!(e.props["advertiser_id"], "1769665409798152");
        assert_eq!(e.props["ad_id"], "1001");
        assert_eq!(e.props["promotion_id"], "7290000000000000001");
        assert_eq!(e.props["clue_type"], 0);
        assert_eq!(e.props["city_name"], "杭州");
        assert!(!e.props.contains_key("remark"), "empty cells are absent");
        assert!(
            !e.props.contains_key("telephone"),
            "the phone is an identity"
        );
        assert_eq!(e.source.as_deref(), Some("oceanengine"));
    }

    #[test]
    fn differently_written_phones_are_one_phone() {
        let a = lead(json!({"clue_id": "1", "telephone": "138 0013 8000", "create_time": "2026-10-01 12:00:00"})).unwrap();
        let b = lead(
            json!({"clue_id": "2", "telephone": "+86 13800138000", "create_time": 1_790_000_000}),
        )
        .unwrap();
        assert_eq!(a.identities.get(K::Phone), b.identities.get(K::Phone));
        assert_eq!(b.ts, 1_790_000_000_000);
    }

    #[test]
    fn leads_without_a_usable_identity_or_key_are_refused() {
        let e = lead(json!({"name": "x", "create_time": "2026-10-01 12:00:00"})).unwrap_err();
        assert_eq!(
            (e.code, e.field.as_deref()),
            (ErrorCode::MissingIdentity, Some("telephone"))
        );
        let e = lead(json!({"telephone": "13800138000", "create_time": "2026-10-01 12:00:00"}))
            .unwrap_err();
        assert_eq!(
            (e.code, e.field.as_deref()),
            (ErrorCode::MissingField, Some("clue_id"))
        );
        let e = lead(
            json!({"clue_id": "1", "telephone": "12345", "create_time": "2026-10-01 12:00:00"}),
        )
        .unwrap_err();
        assert_eq!(
            (e.code, e.field.as_deref(), e.id.as_deref()),
            (ErrorCode::InvalidPhone, Some("telephone"), Some("1"))
        );
        let e = lead(json!({"clue_id": "1", "create_time": "yesterday"})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("create_time"));
        let e = lead(json!({"clue_id": "1", "create_time": "1999-12-31 23:59:59"})).unwrap_err();
        assert_eq!(
            (e.code, e.field.as_deref()),
            (ErrorCode::TimestampTooOld, Some("create_time"))
        );
    }

    #[test]
    fn a_masked_phone_is_not_an_identity() {
        let e = lead(json!({"clue_id": "1", "telephone": "138****8000", "create_time": "2026-10-01 12:00:00"}))
            .unwrap();
        assert_eq!(e.identities.get(K::Phone), None);
        assert_eq!(e.props["telephone_masked"], "138****8000");
    }

    #[test]
    fn times_round_trip_in_beijing_time() {
        let ms = time::parse_rfc3339("2026-10-01T04:00:00Z").unwrap();
        assert_eq!(format_time(ms), "2026-10-01 12:00:00");
        assert_eq!(parse_time(&json!("2026-10-01 12:00:00")), Some(ms));
        assert_eq!(parse_time(&json!("2026-10-01T12:00:00+08:00")), Some(ms));
        assert_eq!(parse_time(&json!("tomorrow")), None);
    }
}
