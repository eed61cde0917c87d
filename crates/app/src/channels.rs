//! Channels: where a journey's messages leave Siyu. A tenant sets up to three channels, each
//! stored as a connector (`channel.webhook`, `channel.douyin_im`, `channel.wecom_robot`), and
//! the outbox worker hands each due row's JSON payload to the channel's [`Deliver`] adapter,
//! which answers one [`Attempt`]: delivered, retry (maybe not before some time), or permanent.
//!
//! - **Webhook** (the tenant's own endpoint): `POST url` with the payload as the body, exactly
//!   `serde_json::to_vec(payload)`, and `Idempotency-Key: <outbox key>` (the receiver drops a
//!   repeat) and `X-Siyu-Signature: sha256=<lowercase hex HMAC-SHA256(secret, raw body)>`
//!   (RFC 2104 over SHA-256; the receiver recomputes it over the bytes it received).
//! - **Douyin IM** (抖音开放平台「发送私信消息」,
//!   <https://developer.open-douyin.com/docs/resource/zh-CN/mini-app/develop/server/reach-marketing/instant-message/private-message/send-message>):
//!   `POST {base}/im/send/msg/?open_id=<the business account>` with header `access-token`,
//!   body `{"to_user_id", "scene", "msg_id", "conversation_id", "content": {"msg_type": 1,
//!   "text": {"text"}}}`. A reply (`scene: im_reply_msg`) cites the fan's message
//!   (`msg_id` = its `server_message_id`) and conversation; a proactive message uses the scene
//!   of the fan entering the conversation page (`im_enter_direct_msg`), citing that event's ids
//!   when the payload has them. Douyin answers HTTP 200 with the verdict in the body, either
//!   `{"data": {"error_code", "description"}, "extra": {...}}` or `{"err_no", "err_msg"}`.
//! - **WeCom group robot** (企业微信群机器人, <https://developer.work.weixin.qq.com/document/path/91770>):
//!   `POST https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=KEY` with
//!   `{"msgtype": "text", "text": {"content"}}` or `{"msgtype": "markdown", "markdown":
//!   {"content"}}`; content at most 2,048 (text) or 4,096 (markdown) bytes of UTF-8, and at
//!   most 20 messages a minute per robot. The answer is `{"errcode": 0, "errmsg": "ok"}`.
//!   The key is the robot's only credential: it is stored sealed as `webhook_key`, apart from
//!   the URL, and views show the URL's host only.
//!
//! **Retry or permanent.** Connection errors and timeouts, HTTP 408, 429 and 5xx are retried
//! (after `Retry-After` seconds when given); so are Douyin's "system error/busy" and rate-limit
//! codes, WeCom's 45009 (API frequency out of limit: after 60 s) and −1 (system busy), and a
//! WeCom robot's own window when full (after the wait until a slot frees, without a request).
//! Everything else is permanent: other 4xx, other error codes, an answer that is not the
//! protocol's JSON, a payload the channel cannot send (too long, missing fields), and a URL the
//! [`TargetPolicy`] refuses. [`Attempt::answer`] keeps the status line and the body (cut to
//! 2 KiB) for operators; it never holds a credential.
//!
//! Settings are parsed strictly from the `PUT /api/channels/{kind}` body (an unknown field is
//! refused by name; a PUT that leaves a credential out keeps the stored one). Credentials are
//! [`Secret`]s, sealed at rest like every connector credential ([`CREDENTIALS`]); the kill
//! switch (`killed`) is set on its own with [`set_killed`], and the worker checks
//! [`ChannelSettings::killed`] before it delivers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use siyu_domain::Millis;
use siyu_domain::time::Clock;
use siyu_store::{Store, StoreError, TenantId};

use crate::AppError;
use crate::connectors::{CREDENTIALS, Safeguards, Secret};
use crate::secrets::{SecretError, Slot};
use crate::targets::{CheckedResolver, TargetError, TargetPolicy};

/// Where the Douyin Open Platform lives unless a tenant says otherwise.
pub const DEFAULT_DOUYIN_BASE: &str = "https://open.douyin.com";
/// A request's whole time (connect, send, answer) unless a channel says otherwise.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// The longest `timeout_ms` a channel may set.
pub const MAX_TIMEOUT_MS: u64 = 120_000;
/// The most deliveries in flight a channel may ask for.
pub const MAX_CONCURRENCY: u32 = 256;
/// How much of an answer an [`Attempt`] keeps.
pub const ANSWER_BYTES: usize = 2048;

// The WeCom robot's limits and what an HTTP answer means are the journeys' policy, one table
// for the state machine (which skips what is too long) and the adapters.
use siyu_journey::policy::{WECOM_MARKDOWN_BYTES, WECOM_PER_MINUTE, WECOM_TEXT_BYTES};
const MINUTE_MS: Millis = 60_000;

/// The channels a tenant can send through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    /// The tenant's own HTTPS endpoint, signed.
    Webhook,
    /// Douyin private messages from the tenant's business account.
    DouyinIm,
    /// A WeCom group robot.
    WecomRobot,
}

impl ChannelKind {
    pub const ALL: [ChannelKind; 3] = [
        ChannelKind::Webhook,
        ChannelKind::DouyinIm,
        ChannelKind::WecomRobot,
    ];

    /// The name in paths and answers: `webhook`, `douyin_im`, `wecom_robot`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Webhook => "webhook",
            ChannelKind::DouyinIm => "douyin_im",
            ChannelKind::WecomRobot => "wecom_robot",
        }
    }

    /// Reads a name as [`ChannelKind::as_str`] writes it.
    pub fn parse(s: &str) -> Result<ChannelKind, ChannelError> {
        ChannelKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ChannelError::UnknownChannel(s.to_string()))
    }

    /// The connector kind the settings are stored under.
    pub fn connector(self) -> &'static str {
        match self {
            ChannelKind::Webhook => "channel.webhook",
            ChannelKind::DouyinIm => "channel.douyin_im",
            ChannelKind::WecomRobot => "channel.wecom_robot",
        }
    }

    /// The fields a `PUT` body may hold.
    fn fields(self) -> &'static [&'static str] {
        match self {
            ChannelKind::Webhook => &["url", "secret", "timeout_ms", "concurrency", "killed"],
            ChannelKind::DouyinIm => &[
                "base",
                "access_token",
                "open_id",
                "timeout_ms",
                "concurrency",
                "killed",
            ],
            ChannelKind::WecomRobot => &["url", "timeout_ms", "concurrency", "killed"],
        }
    }

    /// The credential field, as the `PUT` body names it.
    fn credential(self) -> &'static str {
        match self {
            ChannelKind::Webhook => "secret",
            ChannelKind::DouyinIm => "access_token",
            ChannelKind::WecomRobot => "url",
        }
    }

    fn default_concurrency(self) -> u32 {
        match self {
            ChannelKind::Webhook => 16,
            ChannelKind::DouyinIm => 8,
            // A robot takes 20 a minute: one at a time is plenty.
            ChannelKind::WecomRobot => 1,
        }
    }
}

impl std::fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why channel settings were refused or could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// A field of the body is missing, unknown or bad; `field` names it.
    #[error("{message}")]
    Invalid { field: String, message: String },
    /// A URL the target policy does not allow (http, or a private host).
    #[error("{message}")]
    TargetNotAllowed { field: String, message: String },
    #[error("unknown channel {0:?}: use webhook, douyin_im or wecom_robot")]
    UnknownChannel(String),
    /// The kill switch of a channel that was never set up.
    #[error("the {0} channel is not set up: PUT its settings first")]
    NotConfigured(ChannelKind),
    /// The store, or the sealer, failed (not the request's fault).
    #[error(transparent)]
    App(#[from] AppError),
}

impl From<StoreError> for ChannelError {
    fn from(e: StoreError) -> Self {
        ChannelError::App(e.into())
    }
}

impl From<SecretError> for ChannelError {
    fn from(e: SecretError) -> Self {
        ChannelError::App(e.into())
    }
}

impl From<TargetError> for ChannelError {
    fn from(e: TargetError) -> Self {
        let field = e.field().to_string();
        match e {
            TargetError::Invalid { message, .. } => ChannelError::Invalid { field, message },
            TargetError::NotAllowed { message, .. } => {
                ChannelError::TargetNotAllowed { field, message }
            }
        }
    }
}

impl ChannelError {
    fn invalid(field: &str, message: impl Into<String>) -> ChannelError {
        ChannelError::Invalid {
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// The stable code at the edge.
    pub fn code(&self) -> &'static str {
        match self {
            ChannelError::Invalid { .. } => "invalid_channel_setting",
            ChannelError::TargetNotAllowed { .. } => "target_not_allowed",
            ChannelError::UnknownChannel(_) => "unknown_channel",
            ChannelError::NotConfigured(_) => "channel_not_configured",
            ChannelError::App(e) => e.code(),
        }
    }

    /// The body field the error is about.
    pub fn field(&self) -> Option<&str> {
        match self {
            ChannelError::Invalid { field, .. } | ChannelError::TargetNotAllowed { field, .. } => {
                Some(field)
            }
            _ => None,
        }
    }
}

/// The webhook channel of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookSettings {
    /// Where deliveries are posted (held to the target policy).
    pub url: String,
    /// The HMAC key of `X-Siyu-Signature`.
    pub secret: Secret,
    pub timeout_ms: u64,
    /// Deliveries in flight at once.
    pub concurrency: u32,
    /// The kill switch: nothing is sent while set.
    #[serde(default)]
    pub killed: bool,
}

/// The Douyin IM channel of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DouyinImSettings {
    /// The Open Platform's origin (a local server in tests).
    pub base: String,
    /// The business account's authorised token (scope `im.direct_message`).
    pub access_token: Secret,
    /// The business account's open_id: messages are sent as it.
    pub open_id: String,
    pub timeout_ms: u64,
    pub concurrency: u32,
    #[serde(default)]
    pub killed: bool,
}

/// The WeCom robot channel of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WecomRobotSettings {
    /// The robot's webhook URL without its `key`.
    pub url: String,
    /// The URL's `key` query value: whoever has it can post to the group.
    pub webhook_key: Secret,
    pub timeout_ms: u64,
    pub concurrency: u32,
    #[serde(default)]
    pub killed: bool,
}

/// One channel's settings, checked. `Debug` shows no credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelSettings {
    Webhook(WebhookSettings),
    DouyinIm(DouyinImSettings),
    WecomRobot(WecomRobotSettings),
}

impl ChannelSettings {
    pub fn kind(&self) -> ChannelKind {
        match self {
            ChannelSettings::Webhook(_) => ChannelKind::Webhook,
            ChannelSettings::DouyinIm(_) => ChannelKind::DouyinIm,
            ChannelSettings::WecomRobot(_) => ChannelKind::WecomRobot,
        }
    }

    /// Whether the kill switch is on: the worker sends nothing through the channel then.
    pub fn killed(&self) -> bool {
        match self {
            ChannelSettings::Webhook(s) => s.killed,
            ChannelSettings::DouyinIm(s) => s.killed,
            ChannelSettings::WecomRobot(s) => s.killed,
        }
    }

    /// How many deliveries the worker may have in flight through the channel.
    pub fn concurrency(&self) -> u32 {
        match self {
            ChannelSettings::Webhook(s) => s.concurrency,
            ChannelSettings::DouyinIm(s) => s.concurrency,
            ChannelSettings::WecomRobot(s) => s.concurrency,
        }
    }

    pub fn timeout_ms(&self) -> u64 {
        match self {
            ChannelSettings::Webhook(s) => s.timeout_ms,
            ChannelSettings::DouyinIm(s) => s.timeout_ms,
            ChannelSettings::WecomRobot(s) => s.timeout_ms,
        }
    }

    fn set_killed(&mut self, killed: bool) {
        match self {
            ChannelSettings::Webhook(s) => s.killed = killed,
            ChannelSettings::DouyinIm(s) => s.killed = killed,
            ChannelSettings::WecomRobot(s) => s.killed = killed,
        }
    }

    fn to_value(&self) -> Result<Value, serde_json::Error> {
        match self {
            ChannelSettings::Webhook(s) => serde_json::to_value(s),
            ChannelSettings::DouyinIm(s) => serde_json::to_value(s),
            ChannelSettings::WecomRobot(s) => serde_json::to_value(s),
        }
    }

    fn from_value(kind: ChannelKind, v: Value) -> Result<ChannelSettings, serde_json::Error> {
        Ok(match kind {
            ChannelKind::Webhook => ChannelSettings::Webhook(serde_json::from_value(v)?),
            ChannelKind::DouyinIm => ChannelSettings::DouyinIm(serde_json::from_value(v)?),
            ChannelKind::WecomRobot => ChannelSettings::WecomRobot(serde_json::from_value(v)?),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Settings: parsing, storing, views.

/// A `PUT` body's fields, every one known to the kind.
struct Body<'a> {
    obj: &'a Map<String, Value>,
}

impl<'a> Body<'a> {
    fn new(kind: ChannelKind, args: &'a Value) -> Result<Body<'a>, ChannelError> {
        let Some(obj) = args.as_object() else {
            return Err(ChannelError::invalid(
                "body",
                format!(
                    "the {kind} channel settings must be a JSON object with {}",
                    kind.fields().join(", ")
                ),
            ));
        };
        if let Some(unknown) = obj.keys().find(|k| !kind.fields().contains(&k.as_str())) {
            return Err(ChannelError::invalid(
                unknown,
                format!(
                    "unknown field {unknown:?}: the {kind} channel takes {}",
                    kind.fields().join(", ")
                ),
            ));
        }
        Ok(Body { obj })
    }

    /// A string field; `null` is the same as leaving it out.
    fn str(&self, field: &str) -> Result<Option<&'a str>, ChannelError> {
        match self.obj.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(ChannelError::invalid(
                field,
                format!("{field} must be a string"),
            )),
        }
    }

    fn number(
        &self,
        field: &str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Option<u64>, ChannelError> {
        let bad = || {
            ChannelError::invalid(
                field,
                format!(
                    "{field} must be a whole number from {} to {}",
                    range.start(),
                    range.end()
                ),
            )
        };
        match self.obj.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(n) if range.contains(&n) => Ok(Some(n)),
                _ => Err(bad()),
            },
            Some(_) => Err(bad()),
        }
    }

    fn bool(&self, field: &str) -> Result<Option<bool>, ChannelError> {
        match self.obj.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(ChannelError::invalid(
                field,
                format!("{field} must be true or false"),
            )),
        }
    }

    fn timeout_ms(&self, old: Option<u64>) -> Result<u64, ChannelError> {
        Ok(self
            .number("timeout_ms", 100..=MAX_TIMEOUT_MS)?
            .or(old)
            .unwrap_or(DEFAULT_TIMEOUT_MS))
    }

    fn concurrency(&self, kind: ChannelKind, old: Option<u32>) -> Result<u32, ChannelError> {
        Ok(self
            .number("concurrency", 1..=MAX_CONCURRENCY as u64)?
            .map(|n| n as u32)
            .or(old)
            .unwrap_or(kind.default_concurrency()))
    }

    fn killed(&self, old: Option<bool>) -> Result<bool, ChannelError> {
        Ok(self.bool("killed")?.or(old).unwrap_or(false))
    }
}

fn secret(field: &'static str, s: &str) -> Result<Secret, ChannelError> {
    Secret::parse(field, s).map_err(|e| ChannelError::invalid(field, e.message))
}

fn missing(kind: ChannelKind, field: &str) -> ChannelError {
    ChannelError::invalid(
        field,
        format!("{field} is required to set up the {kind} channel"),
    )
}

/// Checks a `PUT` body against what is stored (`old`): every field left out keeps its stored
/// value, or takes its default; a credential left out with none stored is refused.
fn merge(
    kind: ChannelKind,
    old: Option<&ChannelSettings>,
    args: &Value,
    targets: TargetPolicy,
) -> Result<ChannelSettings, ChannelError> {
    let body = Body::new(kind, args)?;
    Ok(match kind {
        ChannelKind::Webhook => {
            let old = match old {
                Some(ChannelSettings::Webhook(o)) => Some(o),
                _ => None,
            };
            let url = match (body.str("url")?, old) {
                (Some(u), _) => {
                    let u = u.trim();
                    targets.check("url", u)?;
                    u.to_string()
                }
                (None, Some(o)) => o.url.clone(),
                (None, None) => return Err(missing(kind, "url")),
            };
            let secret = match (body.str("secret")?, old) {
                (Some(s), _) => secret("secret", s)?,
                (None, Some(o)) => o.secret.clone(),
                (None, None) => return Err(missing(kind, "secret")),
            };
            ChannelSettings::Webhook(WebhookSettings {
                url,
                secret,
                timeout_ms: body.timeout_ms(old.map(|o| o.timeout_ms))?,
                concurrency: body.concurrency(kind, old.map(|o| o.concurrency))?,
                killed: body.killed(old.map(|o| o.killed))?,
            })
        }
        ChannelKind::DouyinIm => {
            let old = match old {
                Some(ChannelSettings::DouyinIm(o)) => Some(o),
                _ => None,
            };
            let base = match (body.str("base")?, old) {
                (Some(b), _) => {
                    let b = b.trim().trim_end_matches('/');
                    targets.check("base", b)?;
                    b.to_string()
                }
                (None, Some(o)) => o.base.clone(),
                (None, None) => DEFAULT_DOUYIN_BASE.to_string(),
            };
            let access_token = match (body.str("access_token")?, old) {
                (Some(t), _) => secret("access_token", t)?,
                (None, Some(o)) => o.access_token.clone(),
                (None, None) => return Err(missing(kind, "access_token")),
            };
            let open_id = match (body.str("open_id")?, old) {
                (Some(id), _) => {
                    let id = id.trim();
                    let n = id.chars().count();
                    if n == 0 || n > 128 || id.chars().any(|c| c.is_control() || c.is_whitespace())
                    {
                        return Err(ChannelError::invalid(
                            "open_id",
                            "open_id must be the business account's open_id (1–128 characters, no spaces)",
                        ));
                    }
                    id.to_string()
                }
                (None, Some(o)) => o.open_id.clone(),
                (None, None) => return Err(missing(kind, "open_id")),
            };
            ChannelSettings::DouyinIm(DouyinImSettings {
                base,
                access_token,
                open_id,
                timeout_ms: body.timeout_ms(old.map(|o| o.timeout_ms))?,
                concurrency: body.concurrency(kind, old.map(|o| o.concurrency))?,
                killed: body.killed(old.map(|o| o.killed))?,
            })
        }
        ChannelKind::WecomRobot => {
            let old = match old {
                Some(ChannelSettings::WecomRobot(o)) => Some(o),
                _ => None,
            };
            let (url, webhook_key) = match (body.str("url")?, old) {
                (Some(u), _) => split_robot_url(targets, u.trim())?,
                (None, Some(o)) => (o.url.clone(), o.webhook_key.clone()),
                (None, None) => return Err(missing(kind, "url")),
            };
            ChannelSettings::WecomRobot(WecomRobotSettings {
                url,
                webhook_key,
                timeout_ms: body.timeout_ms(old.map(|o| o.timeout_ms))?,
                concurrency: body.concurrency(kind, old.map(|o| o.concurrency))?,
                killed: body.killed(old.map(|o| o.killed))?,
            })
        }
    })
}

/// A robot URL as the URL without its `key` and the key. Errors never quote the URL: it
/// holds the key.
fn split_robot_url(targets: TargetPolicy, raw: &str) -> Result<(String, Secret), ChannelError> {
    let mut url = targets.check("url", raw)?;
    let mut key = None;
    let mut rest = Vec::new();
    for (k, v) in url.query_pairs() {
        if k == "key" {
            key = Some(v.into_owned());
        } else {
            rest.push((k.into_owned(), v.into_owned()));
        }
    }
    let Some(key) = key.filter(|k| !k.is_empty()) else {
        return Err(ChannelError::invalid(
            "url",
            "url must be the robot's webhook URL with its key, e.g. \
             https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=KEY",
        ));
    };
    let key = Secret::parse("url", &key).map_err(|_| {
        ChannelError::invalid(
            "url",
            "the key in url must be 1–512 characters without control characters",
        )
    })?;
    if rest.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(rest);
    }
    url.set_fragment(None);
    Ok((url.to_string(), key))
}

fn corrupt(kind: ChannelKind, e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(format!(
        "{} channel settings unreadable at line {} column {}",
        kind,
        e.line(),
        e.column()
    ))
}

/// Seals every credential field of `v` in place (as the connectors do, see
/// [`crate::connectors`]).
fn seal_fields(
    guard: &Safeguards,
    tenant: TenantId,
    kind: ChannelKind,
    v: &mut Value,
) -> Result<(), ChannelError> {
    for field in CREDENTIALS {
        if let Some(Value::String(s)) = v.get_mut(*field) {
            let sealer = guard.sealer.as_ref().ok_or(SecretError::NoKey)?;
            let slot = Slot {
                tenant,
                connector: kind.connector(),
                field,
            };
            *s = sealer.seal(slot, s);
        }
    }
    Ok(())
}

/// Opens every credential field; `true` when one was plain or sealed with the old key.
fn open_fields(
    guard: &Safeguards,
    tenant: TenantId,
    kind: ChannelKind,
    config: &str,
) -> Result<(Value, bool), ChannelError> {
    let mut v: Value = serde_json::from_str(config).map_err(|e| corrupt(kind, e))?;
    let mut stale = false;
    for field in CREDENTIALS {
        if let Some(Value::String(s)) = v.get_mut(*field) {
            let slot = Slot {
                tenant,
                connector: kind.connector(),
                field,
            };
            let opened = match guard.sealer.as_ref() {
                Some(sealer) => sealer.open(slot, s)?,
                None if !s.starts_with("sealed:") => crate::secrets::Opened {
                    value: s.clone(),
                    stale: true,
                },
                None => return Err(SecretError::NoKey.into()),
            };
            stale |= opened.stale;
            *s = opened.value;
        }
    }
    Ok((v, stale))
}

fn store_settings(
    store: &dyn Store,
    guard: &Safeguards,
    tenant: TenantId,
    settings: &ChannelSettings,
    now: Millis,
) -> Result<(), ChannelError> {
    let kind = settings.kind();
    let mut v = settings.to_value().map_err(|e| corrupt(kind, e))?;
    seal_fields(guard, tenant, kind, &mut v)?;
    let text = serde_json::to_string(&v).map_err(|e| corrupt(kind, e))?;
    store.set_connector(tenant, kind.connector(), &text, now)?;
    Ok(())
}

/// Checks and stores a tenant's channel settings from a `PUT /api/channels/{kind}` body;
/// answers the view. Nothing is stored when refused.
pub fn set_channel(
    store: &dyn Store,
    guard: &Safeguards,
    tenant: TenantId,
    kind: ChannelKind,
    args: &Value,
    now: Millis,
) -> Result<Value, ChannelError> {
    let old = channel(store, guard, tenant, kind)?;
    let settings = merge(kind, old.as_ref(), args, guard.targets)?;
    store_settings(store, guard, tenant, &settings, now)?;
    Ok(channel_view(kind, Some(&settings)))
}

/// A tenant's settings of one channel, if set up.
pub fn channel(
    store: &dyn Store,
    guard: &Safeguards,
    tenant: TenantId,
    kind: ChannelKind,
) -> Result<Option<ChannelSettings>, ChannelError> {
    let Some(c) = store.connector(tenant, kind.connector())? else {
        return Ok(None);
    };
    let (v, _) = open_fields(guard, tenant, kind, &c.config)?;
    // serde's message may quote a value, which could be a credential: only the kind is told.
    let settings = ChannelSettings::from_value(kind, v).map_err(|_| {
        StoreError::Corrupt(format!(
            "{kind} channel settings of tenant {tenant} are not what this version reads"
        ))
    })?;
    Ok(Some(settings))
}

/// Turns a channel's kill switch on or off, keeping every other setting; answers the view.
pub fn set_killed(
    store: &dyn Store,
    guard: &Safeguards,
    tenant: TenantId,
    kind: ChannelKind,
    killed: bool,
    now: Millis,
) -> Result<Value, ChannelError> {
    let Some(mut settings) = channel(store, guard, tenant, kind)? else {
        return Err(ChannelError::NotConfigured(kind));
    };
    settings.set_killed(killed);
    store_settings(store, guard, tenant, &settings, now)?;
    Ok(channel_view(kind, Some(&settings)))
}

/// `scheme://host[:port]/path` of a URL: no query (it may hold a token), no user info.
fn shown_url(raw: &str, with_path: bool) -> String {
    match url::Url::parse(raw) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("");
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            let path = if with_path { u.path() } else { "" };
            format!("{}://{host}{port}{path}", u.scheme())
        }
        Err(_) => String::new(),
    }
}

/// What the API and the CLI show of a channel: never a credential, only whether it is set.
pub fn channel_view(kind: ChannelKind, s: Option<&ChannelSettings>) -> Value {
    let Some(s) = s else {
        return json!({
            "channel": kind.as_str(),
            "configured": false,
            "killed": false,
            "secret_set": false,
            "credential": kind.credential(),
        });
    };
    let mut v = json!({
        "channel": kind.as_str(),
        "configured": true,
        "killed": s.killed(),
        "secret_set": true,
        "credential": kind.credential(),
        "timeout_ms": s.timeout_ms(),
        "concurrency": s.concurrency(),
    });
    let extra = match s {
        ChannelSettings::Webhook(w) => json!({"url": shown_url(&w.url, true)}),
        ChannelSettings::DouyinIm(d) => json!({"base": d.base, "open_id": d.open_id}),
        ChannelSettings::WecomRobot(r) => json!({
            "host": url::Url::parse(&r.url).ok().and_then(|u| u.host_str().map(str::to_string)),
        }),
    };
    if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
    v
}

/// Every channel of a tenant, set up or not, as `GET /api/channels` answers.
pub fn channel_views(
    store: &dyn Store,
    guard: &Safeguards,
    tenant: TenantId,
) -> Result<Value, ChannelError> {
    let mut list = Vec::with_capacity(ChannelKind::ALL.len());
    for kind in ChannelKind::ALL {
        list.push(channel_view(
            kind,
            channel(store, guard, tenant, kind)?.as_ref(),
        ));
    }
    Ok(json!({ "channels": list }))
}

/// Seals again the channel credentials stored in plain text or with the old key (like
/// [`crate::connectors::reseal`], which knows only the connectors); returns how many channels
/// were rewritten. One that cannot be opened is logged, never its value, and left as it is.
pub fn reseal(store: &dyn Store, guard: &Safeguards) -> Result<usize, ChannelError> {
    if guard.sealer.is_none() {
        return Ok(0);
    }
    let mut done = 0;
    for kind in ChannelKind::ALL {
        for (tenant, c) in store.connectors(kind.connector())? {
            match open_fields(guard, tenant, kind, &c.config) {
                Ok((mut v, true)) => {
                    seal_fields(guard, tenant, kind, &mut v)?;
                    let text = serde_json::to_string(&v).map_err(|e| corrupt(kind, e))?;
                    store.set_connector(tenant, kind.connector(), &text, c.updated_at)?;
                    done += 1;
                }
                Ok((_, false)) => {}
                Err(e) => {
                    tracing::error!(tenant, channel = kind.as_str(), error = %e, "cannot open channel credentials")
                }
            }
        }
    }
    Ok(done)
}

// ---------------------------------------------------------------------------------------------
// Adapters.

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Try again later; not before `after_ms` from now when the channel said so.
    Retry {
        after_ms: Option<i64>,
    },
    /// Trying again would fail the same way.
    Permanent,
}

/// One delivery attempt: what the channel answered and what it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The HTTP status; `None` when no answer came (connection, timeout) or no request was
    /// made (a payload refused, a full rate window).
    pub status: Option<u16>,
    /// The `Retry-After` header as sent.
    pub retry_after: Option<String>,
    /// The status line and the body, cut to [`ANSWER_BYTES`]; or why no answer came. Never a
    /// credential.
    pub answer: String,
    pub outcome: Outcome,
}

impl Attempt {
    /// No request was made: `answer` says why.
    fn refused(answer: impl Into<String>, outcome: Outcome) -> Attempt {
        Attempt {
            status: None,
            retry_after: None,
            answer: answer.into(),
            outcome,
        }
    }
}

/// A channel adapter: sends one outbox row's payload. `key` is the row's idempotency key.
pub trait Deliver: Send + Sync {
    fn deliver(&self, key: &str, payload: &Value) -> Attempt;
}

/// The adapter for a channel's settings. The kill switch is the worker's to check.
pub fn adapter(
    settings: &ChannelSettings,
    targets: TargetPolicy,
    clock: Arc<dyn Clock>,
) -> Box<dyn Deliver> {
    match settings {
        ChannelSettings::Webhook(s) => Box::new(WebhookChannel::new(s.clone(), targets)),
        ChannelSettings::DouyinIm(s) => Box::new(DouyinImChannel::new(s.clone(), targets)),
        ChannelSettings::WecomRobot(s) => {
            Box::new(WecomRobotChannel::new(s.clone(), targets, clock))
        }
    }
}

/// An agent like the lead poller's: a whole-request timeout, statuses as answers, no redirect
/// (it would take the credential to a host never checked), no proxy (it would resolve the host
/// past the resolver's check), every address checked against the policy.
///
/// It keeps as many idle connections to the channel's host as the lane sends at once, so a
/// busy lane reuses its connections instead of opening one per request (ureq keeps 3).
fn agent(
    targets: TargetPolicy,
    field: &'static str,
    timeout_ms: u64,
    concurrency: u32,
) -> ureq::Agent {
    let keep = (concurrency as usize).max(1);
    let config = ureq::Agent::config_builder()
        .max_idle_connections(keep.max(10))
        .max_idle_connections_per_host(keep)
        .timeout_global(Some(Duration::from_millis(timeout_ms)))
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .build();
    CheckedResolver::new(targets, field).agent(config)
}

/// `text` with every credential in `secrets` replaced, cut to [`ANSWER_BYTES`] on a character
/// boundary.
fn answer_text(text: &str, secrets: &[&str]) -> String {
    let mut text = text.to_string();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        text = text.replace(s, "<redacted>");
    }
    if text.len() > ANSWER_BYTES {
        let mut end = ANSWER_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// An HTTP answer as an [`Attempt`] would keep it.
struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: String,
    /// `HTTP 503 Service Unavailable` and the body, redacted and cut.
    text: String,
}

impl Answer {
    fn attempt(self, outcome: Outcome) -> Attempt {
        Attempt {
            status: Some(self.status),
            retry_after: self.retry_after,
            answer: self.text,
            outcome,
        }
    }
}

/// Sends a request and reads its answer; an error is the [`Attempt`] it makes: a target the
/// policy refuses is permanent, any other failure to get an answer a retry.
fn send(
    req: ureq::RequestBuilder<ureq::typestate::WithBody>,
    body: &[u8],
    secrets: &[&str],
) -> Result<Answer, Attempt> {
    let mut resp = match req.send(body) {
        Ok(r) => r,
        Err(e) => {
            let text = answer_text(&e.to_string(), secrets);
            return Err(match crate::targets::refused_by_resolver(&e) {
                Some(_) => Attempt::refused(text, Outcome::Permanent),
                None => Attempt::refused(text, Outcome::Retry { after_ms: None }),
            });
        }
    };
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match resp
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .lossy_utf8(true)
        .read_to_string()
    {
        Ok(b) => b,
        Err(e) => {
            // The status came but the body did not: the request may have been taken, so it is
            // retried (the idempotency key makes a repeat harmless where the channel keeps it).
            return Err(Attempt {
                status: Some(status.as_u16()),
                retry_after,
                answer: answer_text(
                    &format!("HTTP {}: body unreadable: {e}", status.as_u16()),
                    secrets,
                ),
                outcome: Outcome::Retry { after_ms: None },
            });
        }
    };
    let line = format!(
        "HTTP {} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let text = answer_text(&format!("{}\n{body}", line.trim_end()), secrets);
    Ok(Answer {
        status: status.as_u16(),
        retry_after,
        body,
        text,
    })
}

/// What an HTTP status means (`Retry-After` in seconds or as an HTTP date).
fn classify_status(status: u16, retry_after: Option<&str>) -> Outcome {
    use siyu_journey::policy::{Verdict, classify};
    let now = siyu_domain::time::now_ms();
    match classify(Some(status), retry_after, now) {
        Verdict::Delivered => Outcome::Delivered,
        Verdict::Retry { after } => Outcome::Retry {
            after_ms: after.map(|t| (t - now).max(0)),
        },
        Verdict::Permanent => Outcome::Permanent,
    }
}

fn header(value: &str, sensitive: bool) -> Option<ureq::http::HeaderValue> {
    let mut v = ureq::http::HeaderValue::from_str(value).ok()?;
    v.set_sensitive(sensitive);
    Some(v)
}

/// A payload field that must be a non-empty string.
fn text_field<'a>(payload: &'a Value, field: &str) -> Result<&'a str, Attempt> {
    match payload.get(field).and_then(Value::as_str) {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(Attempt::refused(
            format!("bad_payload: {field} must be a non-empty string"),
            Outcome::Permanent,
        )),
    }
}

/// `sha256=<lowercase hex HMAC-SHA256(secret, body)>`: the `X-Siyu-Signature` of a webhook
/// delivery.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac_sha256(secret, body)))
}

/// HMAC (RFC 2104) over SHA-256, whose block is 64 bytes.
fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > block.len() {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(data)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// The tenant's webhook, signed.
pub struct WebhookChannel {
    settings: WebhookSettings,
    targets: TargetPolicy,
    agent: ureq::Agent,
}

impl WebhookChannel {
    pub fn new(settings: WebhookSettings, targets: TargetPolicy) -> WebhookChannel {
        WebhookChannel {
            agent: agent(targets, "url", settings.timeout_ms, settings.concurrency),
            settings,
            targets,
        }
    }
}

impl Deliver for WebhookChannel {
    fn deliver(&self, key: &str, payload: &Value) -> Attempt {
        let s = &self.settings;
        let secret = s.secret.expose();
        if let Err(e) = self.targets.check("url", &s.url) {
            return Attempt::refused(e.to_string(), Outcome::Permanent);
        }
        let Some(idempotency) = header(key, false) else {
            return Attempt::refused(
                "bad_payload: the idempotency key is not a valid header value",
                Outcome::Permanent,
            );
        };
        let body = match serde_json::to_vec(payload) {
            Ok(b) => b,
            Err(e) => return Attempt::refused(format!("bad_payload: {e}"), Outcome::Permanent),
        };
        let signature = sign(secret.as_bytes(), &body);
        let req = self
            .agent
            .post(&s.url)
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", idempotency)
            .header("X-Siyu-Signature", signature);
        match send(req, &body, &[secret]) {
            Ok(a) => {
                let outcome = classify_status(a.status, a.retry_after.as_deref());
                a.attempt(outcome)
            }
            Err(attempt) => attempt,
        }
    }
}

/// Douyin private messages, sent as the business account.
pub struct DouyinImChannel {
    settings: DouyinImSettings,
    targets: TargetPolicy,
    agent: ureq::Agent,
}

impl DouyinImChannel {
    pub fn new(settings: DouyinImSettings, targets: TargetPolicy) -> DouyinImChannel {
        DouyinImChannel {
            agent: agent(targets, "base", settings.timeout_ms, settings.concurrency),
            settings,
            targets,
        }
    }
}

/// The body of `POST /im/send/msg/` for a payload, or why it cannot be sent.
fn douyin_body(payload: &Value) -> Result<Value, Attempt> {
    let to_user_id = text_field(payload, "to_user_id")?;
    let text = text_field(payload, "text")?;
    let ids = || {
        Ok::<_, Attempt>((
            text_field(payload, "server_message_id")?,
            text_field(payload, "conversation_id")?,
        ))
    };
    let mut body = json!({
        "to_user_id": to_user_id,
        "content": {"msg_type": 1, "text": {"text": text}},
    });
    match payload.get("scene").and_then(Value::as_str) {
        Some("reply") => {
            let (msg_id, conversation_id) = ids()?;
            body["scene"] = json!("im_reply_msg");
            body["msg_id"] = json!(msg_id);
            body["conversation_id"] = json!(conversation_id);
        }
        Some("proactive") => {
            body["scene"] = json!("im_enter_direct_msg");
            if let Ok((msg_id, conversation_id)) = ids() {
                body["msg_id"] = json!(msg_id);
                body["conversation_id"] = json!(conversation_id);
            }
        }
        _ => {
            return Err(Attempt::refused(
                "bad_payload: scene must be \"reply\" or \"proactive\"",
                Outcome::Permanent,
            ));
        }
    }
    Ok(body)
}

/// Douyin's verdict in a 200 answer: `data.error_code`, else `err_no`, else `extra.error_code`,
/// with its description. `None`: not one of the two shapes.
fn douyin_code(v: &Value) -> Option<(i64, String)> {
    let describe = |o: &Value, field: &str| {
        o.get(field)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    if let Some(data) = v.get("data")
        && let Some(code) = data.get("error_code").and_then(Value::as_i64)
    {
        return Some((code, describe(data, "description")));
    }
    if let Some(code) = v.get("err_no").and_then(Value::as_i64) {
        return Some((code, describe(v, "err_msg")));
    }
    let extra = v.get("extra")?;
    let code = extra.get("error_code").and_then(Value::as_i64)?;
    Some((code, describe(extra, "description")))
}

/// Whether a Douyin error code (with its description) is worth trying again: −1 (system
/// error, "建议重试"), 2100004 (system busy), and any description of busy or rate limits.
/// TODO(journeys): use siyu_journey::policy once it names Douyin's codes.
fn douyin_retryable(code: i64, description: &str) -> bool {
    matches!(code, -1 | 2_100_004)
        || [
            "繁忙",
            "频率",
            "频控",
            "限流",
            "busy",
            "rate limit",
            "too many",
        ]
        .iter()
        .any(|w| description.to_lowercase().contains(w))
}

impl Deliver for DouyinImChannel {
    fn deliver(&self, _key: &str, payload: &Value) -> Attempt {
        let s = &self.settings;
        let token = s.access_token.expose();
        if let Err(e) = self.targets.check("base", &s.base) {
            return Attempt::refused(e.to_string(), Outcome::Permanent);
        }
        let body = match douyin_body(payload) {
            Ok(b) => b,
            Err(attempt) => return attempt,
        };
        let Some(token_header) = header(token, true) else {
            return Attempt::refused(
                "the access token is not a valid header value",
                Outcome::Permanent,
            );
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let req = self
            .agent
            .post(format!("{}/im/send/msg/", s.base))
            .query("open_id", &s.open_id)
            .header("access-token", token_header)
            .header("Content-Type", "application/json");
        let a = match send(req, &bytes, &[token]) {
            Ok(a) => a,
            Err(attempt) => return attempt,
        };
        if !(200..300).contains(&a.status) {
            let outcome = classify_status(a.status, a.retry_after.as_deref());
            return a.attempt(outcome);
        }
        let outcome = match serde_json::from_str::<Value>(&a.body)
            .ok()
            .as_ref()
            .and_then(douyin_code)
        {
            Some((0, _)) => Outcome::Delivered,
            Some((code, d)) if douyin_retryable(code, &d) => Outcome::Retry { after_ms: None },
            // Another code, an answer without one, or not JSON at all: kept in the answer.
            _ => Outcome::Permanent,
        };
        a.attempt(outcome)
    }
}

/// A WeCom group robot, at most 20 messages a minute.
pub struct WecomRobotChannel {
    settings: WecomRobotSettings,
    targets: TargetPolicy,
    agent: ureq::Agent,
    clock: Arc<dyn Clock>,
    /// The instants of the sends in the last minute, oldest first. A std `Mutex`: held for a
    /// few comparisons, never across the request.
    sent: Mutex<siyu_journey::policy::RateWindow>,
}

impl WecomRobotChannel {
    pub fn new(
        settings: WecomRobotSettings,
        targets: TargetPolicy,
        clock: Arc<dyn Clock>,
    ) -> WecomRobotChannel {
        WecomRobotChannel {
            agent: agent(targets, "url", settings.timeout_ms, settings.concurrency),
            settings,
            targets,
            clock,
            sent: Mutex::new(siyu_journey::policy::RateWindow::default()),
        }
    }

    /// Takes a slot of the minute window, or says how long until one frees.
    fn admit(&self) -> Result<(), Millis> {
        let now = self.clock.now();
        let mut w = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        w.admit(now, WECOM_PER_MINUTE)
            .map_err(|at| (at - now).max(1))
    }
}

/// The robot's body for a payload, or why it cannot be sent (checked before any request).
fn wecom_body(payload: &Value) -> Result<Value, Attempt> {
    let content = text_field(payload, "content")?;
    let (msgtype, limit) = match payload.get("msgtype").and_then(Value::as_str) {
        Some("text") => ("text", WECOM_TEXT_BYTES),
        Some("markdown") => ("markdown", WECOM_MARKDOWN_BYTES),
        _ => {
            return Err(Attempt::refused(
                "bad_payload: msgtype must be \"text\" or \"markdown\"",
                Outcome::Permanent,
            ));
        }
    };
    if content.len() > limit {
        return Err(Attempt::refused("too_long", Outcome::Permanent));
    }
    Ok(json!({"msgtype": msgtype, msgtype: {"content": content}}))
}

impl Deliver for WecomRobotChannel {
    fn deliver(&self, _key: &str, payload: &Value) -> Attempt {
        let s = &self.settings;
        let key = s.webhook_key.expose();
        if let Err(e) = self.targets.check("url", &s.url) {
            return Attempt::refused(e.to_string(), Outcome::Permanent);
        }
        let body = match wecom_body(payload) {
            Ok(b) => b,
            Err(attempt) => return attempt,
        };
        if let Err(wait) = self.admit() {
            return Attempt::refused(
                format!("rate_limited: {WECOM_PER_MINUTE} messages a minute per robot"),
                Outcome::Retry {
                    after_ms: Some(wait),
                },
            );
        }
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let req = self
            .agent
            .post(&s.url)
            .query("key", key)
            .header("Content-Type", "application/json");
        let a = match send(req, &bytes, &[key]) {
            Ok(a) => a,
            Err(attempt) => return attempt,
        };
        if !(200..300).contains(&a.status) {
            let outcome = classify_status(a.status, a.retry_after.as_deref());
            return a.attempt(outcome);
        }
        let code = serde_json::from_str::<Value>(&a.body)
            .ok()
            .and_then(|v| v.get("errcode").and_then(Value::as_i64));
        let outcome = match code {
            Some(0) => Outcome::Delivered,
            // API freq out of limit: the robot's own minute.
            Some(45009) => Outcome::Retry {
                after_ms: Some(MINUTE_MS),
            },
            // System busy.
            Some(-1) => Outcome::Retry { after_ms: None },
            _ => Outcome::Permanent,
        };
        a.attempt(outcome)
    }
}

// ---------------------------------------------------------------------------------------------
// The service: what `PUT|GET /api/channels` and `siyu channel` call.

impl crate::App {
    /// Checks and stores a tenant's settings of the channel named `kind` (a `PUT` body);
    /// answers the view (never a credential). The workers are told at once.
    pub fn set_channel(
        &self,
        tenant: TenantId,
        kind: &str,
        body: &Value,
    ) -> Result<Value, ChannelError> {
        let kind = ChannelKind::parse(kind)?;
        self.store().check_writable()?;
        let now = self.ingestor.clock().now();
        let view = set_channel(&**self.store(), self.safeguards(), tenant, kind, body, now)?;
        self.channels_changed();
        Ok(view)
    }

    /// Every channel of a tenant, set up or not: `{"channels": [view, ...]}`.
    pub fn channels(&self, tenant: TenantId) -> Result<Value, ChannelError> {
        channel_views(&**self.store(), self.safeguards(), tenant)
    }

    /// Turns the kill switch of the channel named `kind` on or off; answers the view.
    pub fn set_channel_killed(
        &self,
        tenant: TenantId,
        kind: &str,
        killed: bool,
    ) -> Result<Value, ChannelError> {
        let kind = ChannelKind::parse(kind)?;
        self.store().check_writable()?;
        let now = self.ingestor.clock().now();
        let view = set_killed(
            &**self.store(),
            self.safeguards(),
            tenant,
            kind,
            killed,
            now,
        )?;
        self.channels_changed();
        Ok(view)
    }

    /// The journey worker and the outbox worker read channel settings: wake both.
    fn channels_changed(&self) {
        self.journeys_changed();
        crate::journeys::outbox::bell().ring();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::Sealer;
    use siyu_domain::time::ManualClock;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    const PRIVATE: TargetPolicy = TargetPolicy::ALLOW_PRIVATE;

    /// One request the test server received.
    #[derive(Debug, Clone)]
    struct Seen {
        method: String,
        /// Path and query.
        target: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Seen {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }

        fn json(&self) -> Value {
            serde_json::from_slice(&self.body).unwrap()
        }
    }

    /// What the server answers to one request.
    enum Reply {
        Http {
            status: u16,
            headers: Vec<(&'static str, &'static str)>,
            body: String,
        },
        /// Bytes that are not HTTP, then the connection closes.
        Garbage,
    }

    fn reply(status: u16, body: impl Into<String>) -> Reply {
        Reply::Http {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A local HTTP server answering the scripted replies in order, one connection each,
    /// recording every request.
    struct Server {
        base: String,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    impl Server {
        fn start(replies: Vec<Reply>) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let seen = Arc::new(Mutex::new(Vec::new()));
            let record = seen.clone();
            std::thread::spawn(move || {
                for r in replies {
                    let Ok((conn, _)) = listener.accept() else {
                        return;
                    };
                    serve_one(conn, r, &record);
                }
            });
            Server { base, seen }
        }

        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }
    }

    fn serve_one(mut conn: std::net::TcpStream, r: Reply, seen: &Mutex<Vec<Seen>>) {
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let len = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        seen.lock().unwrap().push(Seen {
            method,
            target,
            headers,
            body,
        });
        let out = match r {
            Reply::Http {
                status,
                headers,
                body,
            } => {
                let mut out = format!("HTTP/1.1 {status} X\r\n");
                for (k, v) in headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str(&format!(
                    "Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                ));
                out
            }
            Reply::Garbage => "garbage, not HTTP\r\n\r\n".to_string(),
        };
        let _ = conn.write_all(out.as_bytes());
        let _ = conn.flush();
    }

    fn webhook(url: &str) -> WebhookChannel {
        WebhookChannel::new(
            WebhookSettings {
                url: url.to_string(),
                secret: Secret::parse("secret", "hook-secret").unwrap(),
                timeout_ms: 5_000,
                concurrency: 16,
                killed: false,
            },
            PRIVATE,
        )
    }

    #[test]
    fn the_signature_is_hmac_sha256_as_rfc_4231_says() {
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block is hashed first.
        assert_eq!(
            sign(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            ),
            "sha256=60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn the_webhook_posts_the_payload_signed_and_reads_the_answers() {
        let server = Server::start(vec![
            reply(200, "{}"),
            Reply::Http {
                status: 503,
                headers: vec![("Retry-After", "2")],
                body: "busy".into(),
            },
            reply(400, "bad fan_id"),
            Reply::Garbage,
        ]);
        let ch = webhook(&format!("{}/hooks/siyu?x=1", server.base));
        let payload = json!({"journey": "welcome", "version": 3, "step": "hello", "fan_id": 7,
                             "text": "你好", "idempotency_key": "k-1"});

        let a = ch.deliver("k-1", &payload);
        assert_eq!(
            (a.status, &a.outcome),
            (Some(200), &Outcome::Delivered),
            "{a:?}"
        );
        let seen = &server.seen()[0];
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.target, "/hooks/siyu?x=1");
        assert_eq!(seen.body, serde_json::to_vec(&payload).unwrap());
        assert_eq!(seen.header("idempotency-key"), Some("k-1"));
        assert_eq!(seen.header("content-type"), Some("application/json"));
        assert_eq!(
            seen.header("x-siyu-signature").unwrap(),
            sign(b"hook-secret", &seen.body)
        );

        let a = ch.deliver("k-1", &payload);
        assert_eq!(a.status, Some(503));
        assert_eq!(a.retry_after.as_deref(), Some("2"));
        assert_eq!(
            a.outcome,
            Outcome::Retry {
                after_ms: Some(2000)
            }
        );

        let a = ch.deliver("k-1", &payload);
        assert_eq!((a.status, &a.outcome), (Some(400), &Outcome::Permanent));
        assert!(a.answer.starts_with("HTTP 400"), "{}", a.answer);
        assert!(a.answer.contains("bad fan_id"), "{}", a.answer);

        let a = ch.deliver("k-1", &payload);
        assert_eq!(a.outcome, Outcome::Retry { after_ms: None }, "{a:?}");
        for a in server.seen() {
            assert!(!String::from_utf8_lossy(&a.body).contains("hook-secret"));
        }
    }

    #[test]
    fn a_closed_port_is_a_retry_with_the_error_as_answer() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let a = webhook(&format!("http://127.0.0.1:{port}/")).deliver("k", &json!({}));
        assert_eq!(a.status, None);
        assert_eq!(a.outcome, Outcome::Retry { after_ms: None });
        assert!(!a.answer.is_empty());
    }

    #[test]
    fn a_private_target_is_refused_permanently_by_the_default_policy() {
        let mut ch = webhook("http://127.0.0.1:9/");
        ch.targets = TargetPolicy::PUBLIC_ONLY;
        let a = ch.deliver("k", &json!({}));
        assert_eq!((a.status, a.outcome), (None, Outcome::Permanent));
        assert!(a.answer.contains("not allowed"), "{}", a.answer);
    }

    #[test]
    fn answers_are_cut_and_never_hold_credentials() {
        let long = "é".repeat(3000);
        let cut = answer_text(&format!("tok-123 {long}"), &["tok-123"]);
        assert!(cut.len() <= ANSWER_BYTES && cut.starts_with("<redacted> é"));
        assert_eq!(classify_status(204, None), Outcome::Delivered);
        assert_eq!(
            classify_status(429, Some("x")),
            Outcome::Retry { after_ms: None }
        );
        assert_eq!(
            classify_status(408, None),
            Outcome::Retry { after_ms: None }
        );
        assert_eq!(classify_status(404, None), Outcome::Permanent);
    }

    fn douyin(base: &str) -> DouyinImChannel {
        DouyinImChannel::new(
            DouyinImSettings {
                base: base.to_string(),
                access_token: Secret::parse("access_token", "act.dy-token").unwrap(),
                open_id: "biz-open-id".into(),
                timeout_ms: 5_000,
                concurrency: 8,
                killed: false,
            },
            PRIVATE,
        )
    }

    #[test]
    fn douyin_sends_the_documented_body_and_reads_both_answer_shapes() {
        let server = Server::start(vec![
            reply(
                200,
                r#"{"data":{"error_code":0,"description":"","msg_id":"m9"},"extra":{"error_code":0,"description":"","logid":"l"}}"#,
            ),
            reply(200, r#"{"err_no":0,"err_msg":""}"#),
            reply(
                200,
                r#"{"data":{"error_code":2100004,"description":"系统繁忙，此时请开发者稍候再试"},"extra":{}}"#,
            ),
            reply(200, r#"{"err_no":40001,"err_msg":"conversation expired"}"#),
            reply(200, "<html>oops</html>"),
            reply(502, "bad gateway"),
        ]);
        let ch = douyin(&server.base);
        let reply_payload = json!({"to_user_id": "fan-open-id", "text": "您好", "scene": "reply",
            "conversation_id": "conv-1", "server_message_id": "srv-1", "idempotency_key": "k"});

        let a = ch.deliver("k", &reply_payload);
        assert_eq!(a.outcome, Outcome::Delivered, "{a:?}");
        let seen = &server.seen()[0];
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.target, "/im/send/msg/?open_id=biz-open-id");
        assert_eq!(seen.header("access-token"), Some("act.dy-token"));
        assert_eq!(seen.header("content-type"), Some("application/json"));
        assert_eq!(
            seen.json(),
            json!({"to_user_id": "fan-open-id", "scene": "im_reply_msg", "msg_id": "srv-1",
                   "conversation_id": "conv-1",
                   "content": {"msg_type": 1, "text": {"text": "您好"}}})
        );

        let proactive = json!({"to_user_id": "fan-open-id", "text": "hi", "scene": "proactive"});
        assert_eq!(ch.deliver("k", &proactive).outcome, Outcome::Delivered);
        assert_eq!(
            server.seen()[1].json(),
            json!({"to_user_id": "fan-open-id", "scene": "im_enter_direct_msg",
                   "content": {"msg_type": 1, "text": {"text": "hi"}}})
        );

        assert_eq!(
            ch.deliver("k", &reply_payload).outcome,
            Outcome::Retry { after_ms: None }
        );
        let a = ch.deliver("k", &reply_payload);
        assert_eq!(a.outcome, Outcome::Permanent);
        assert!(a.answer.contains("conversation expired"), "{}", a.answer);
        let a = ch.deliver("k", &reply_payload);
        assert_eq!((a.status, &a.outcome), (Some(200), &Outcome::Permanent));
        assert!(a.answer.contains("<html>oops"), "{}", a.answer);
        let a = ch.deliver("k", &reply_payload);
        assert_eq!(a.outcome, Outcome::Retry { after_ms: None });
        assert!(
            server
                .seen()
                .iter()
                .all(|s| !String::from_utf8_lossy(&s.body).contains("dy-token"))
        );

        // A reply that cites no message is refused without a request.
        let before = server.seen().len();
        let a = ch.deliver(
            "k",
            &json!({"to_user_id": "f", "text": "x", "scene": "reply"}),
        );
        assert_eq!((a.status, a.outcome), (None, Outcome::Permanent));
        assert!(a.answer.contains("server_message_id"), "{}", a.answer);
        assert_eq!(server.seen().len(), before);
    }

    fn robot(url: &str, clock: Arc<dyn Clock>) -> WecomRobotChannel {
        WecomRobotChannel::new(
            WecomRobotSettings {
                url: url.to_string(),
                webhook_key: Secret::parse("url", "robot-key-1").unwrap(),
                timeout_ms: 5_000,
                concurrency: 1,
                killed: false,
            },
            PRIVATE,
            clock,
        )
    }

    const OK: &str = r#"{"errcode":0,"errmsg":"ok"}"#;

    #[test]
    fn wecom_sends_text_and_markdown_checks_length_and_reads_errcodes() {
        let server = Server::start(vec![
            reply(200, OK),
            reply(200, OK),
            reply(200, r#"{"errcode":45009,"errmsg":"api freq out of limit"}"#),
            reply(200, r#"{"errcode":93000,"errmsg":"invalid webhook url"}"#),
        ]);
        let clock = Arc::new(ManualClock::new(1_000_000));
        let ch = robot(&format!("{}/cgi-bin/webhook/send", server.base), clock);

        let text = json!({"msgtype": "text", "content": "新粉丝 3 位"});
        assert_eq!(ch.deliver("k", &text).outcome, Outcome::Delivered);
        let md = json!({"msgtype": "markdown", "content": "**3** 位"});
        assert_eq!(ch.deliver("k", &md).outcome, Outcome::Delivered);
        let seen = server.seen();
        assert_eq!(seen[0].target, "/cgi-bin/webhook/send?key=robot-key-1");
        assert_eq!(
            seen[0].json(),
            json!({"msgtype": "text", "text": {"content": "新粉丝 3 位"}})
        );
        assert_eq!(
            seen[1].json(),
            json!({"msgtype": "markdown", "markdown": {"content": "**3** 位"}})
        );

        // Over the byte limit (2,048 for text: 683 three-byte characters are 2,049 bytes).
        let a = ch.deliver(
            "k",
            &json!({"msgtype": "text", "content": "粉".repeat(683)}),
        );
        assert_eq!(
            (a.status, a.answer.as_str(), a.outcome),
            (None, "too_long", Outcome::Permanent)
        );
        let fits = json!({"msgtype": "markdown", "content": "粉".repeat(683)});
        assert_eq!(
            wecom_body(&fits).unwrap()["markdown"]["content"]
                .as_str()
                .unwrap()
                .len(),
            2049
        );
        assert_eq!(server.seen().len(), 2, "no request for a refused payload");

        let a = ch.deliver("k", &text);
        assert_eq!(
            a.outcome,
            Outcome::Retry {
                after_ms: Some(60_000)
            }
        );
        let a = ch.deliver("k", &text);
        assert_eq!(a.outcome, Outcome::Permanent);
        assert!(a.answer.contains("93000"), "{}", a.answer);
        assert!(!a.answer.contains("robot-key-1"));
    }

    #[test]
    fn wecom_keeps_to_twenty_a_minute() {
        let server = Server::start((0..21).map(|_| reply(200, OK)).collect());
        let t0 = 1_000_000;
        let clock = Arc::new(ManualClock::new(t0));
        let ch = robot(&server.base, clock.clone());
        let text = json!({"msgtype": "text", "content": "hi"});
        for i in 0..20 {
            clock.set(t0 + i * 1000);
            assert_eq!(ch.deliver("k", &text).outcome, Outcome::Delivered, "{i}");
        }
        clock.set(t0 + 30_000);
        let a = ch.deliver("k", &text);
        assert_eq!(
            a.outcome,
            Outcome::Retry {
                after_ms: Some(30_000)
            }
        );
        assert_eq!(a.status, None);
        assert_eq!(server.seen().len(), 20, "the 21st is not sent");
        // The first send leaves the window a minute after it went.
        clock.set(t0 + 60_000);
        assert_eq!(ch.deliver("k", &text).outcome, Outcome::Delivered);
        clock.set(t0 + 60_001);
        assert_eq!(
            ch.deliver("k", &text).outcome,
            Outcome::Retry {
                after_ms: Some(999)
            }
        );
    }

    fn store_with_tenant() -> (tempfile::TempDir, Arc<dyn Store>, TenantId) {
        let dir = tempfile::tempdir().unwrap();
        let store = siyu_store::open(
            &siyu_store::Location::Sqlite(dir.path().to_path_buf()),
            siyu_store::Durability::Normal,
        )
        .unwrap();
        let t = store.create_tenant("acme", "w", "a", 0).unwrap().id;
        (dir, store, t)
    }

    fn guard() -> Safeguards {
        Safeguards::new(Sealer::from_keys(&[5; 32], None), PRIVATE)
    }

    #[test]
    fn settings_are_parsed_strictly_naming_the_field() {
        let (_dir, store, t) = store_with_tenant();
        let g = guard();
        let bad = |kind, body: Value| {
            let e = set_channel(&*store, &g, t, kind, &body, 1).unwrap_err();
            (e.field().map(str::to_string), e.code())
        };
        use ChannelKind::*;
        let field = |s: &str| Some(s.to_string());
        assert_eq!(
            bad(
                Webhook,
                json!({"url": "http://127.0.0.1:1", "secret": "s", "colour": 1})
            ),
            (field("colour"), "invalid_channel_setting")
        );
        assert_eq!(
            bad(Webhook, json!({"secret": "s"})),
            (field("url"), "invalid_channel_setting")
        );
        assert_eq!(
            bad(Webhook, json!({"url": "http://127.0.0.1:1"})),
            (field("secret"), "invalid_channel_setting")
        );
        assert_eq!(
            bad(Webhook, json!({"url": "ftp://x", "secret": "s"})),
            (field("url"), "invalid_channel_setting")
        );
        assert_eq!(
            bad(
                Webhook,
                json!({"url": "http://127.0.0.1:1", "secret": "s", "concurrency": 0})
            ),
            (field("concurrency"), "invalid_channel_setting")
        );
        assert_eq!(
            bad(
                Webhook,
                json!({"url": "http://127.0.0.1:1", "secret": "s", "timeout_ms": "5"})
            ),
            (field("timeout_ms"), "invalid_channel_setting")
        );
        assert_eq!(
            bad(Webhook, json!([1])),
            (field("body"), "invalid_channel_setting")
        );
        assert_eq!(
            bad(
                DouyinIm,
                json!({"access_token": "t", "open_id": "has space"})
            ),
            (field("open_id"), "invalid_channel_setting")
        );
        assert_eq!(
            bad(DouyinIm, json!({"access_token": "t"})),
            (field("open_id"), "invalid_channel_setting")
        );
        assert_eq!(
            bad(
                WecomRobot,
                json!({"url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"})
            ),
            (field("url"), "invalid_channel_setting")
        );
        assert_eq!(
            bad(WecomRobot, json!({"url": "x", "secret": "s"})),
            (field("secret"), "invalid_channel_setting")
        );
        for kind in ChannelKind::ALL {
            assert!(
                store.connector(t, kind.connector()).unwrap().is_none(),
                "nothing stored"
            );
        }
        assert_eq!(
            ChannelKind::parse("sms").unwrap_err().code(),
            "unknown_channel"
        );
        for kind in ChannelKind::ALL {
            assert_eq!(ChannelKind::parse(kind.as_str()).unwrap(), kind);
        }

        // The default policy refuses private and http targets.
        let public = Safeguards::new(Sealer::from_keys(&[5; 32], None), TargetPolicy::default());
        let e = set_channel(
            &*store,
            &public,
            t,
            Webhook,
            &json!({"url": "http://127.0.0.1:1", "secret": "s"}),
            1,
        )
        .unwrap_err();
        assert_eq!((e.field(), e.code()), (Some("url"), "target_not_allowed"));
        let e = set_channel(
            &*store,
            &public,
            t,
            DouyinIm,
            &json!({"base": "https://10.0.0.1", "access_token": "t", "open_id": "o"}),
            1,
        )
        .unwrap_err();
        assert_eq!((e.field(), e.code()), (Some("base"), "target_not_allowed"));
    }

    #[test]
    fn credentials_are_sealed_kept_across_puts_and_never_shown() {
        let (_dir, store, t) = store_with_tenant();
        let g = guard();
        let view = set_channel(
            &*store,
            &g,
            t,
            ChannelKind::Webhook,
            &json!({"url": "http://127.0.0.1:1/in?token=q", "secret": "hook-secret-1"}),
            1,
        )
        .unwrap();
        assert_eq!(view["secret_set"], json!(true));
        assert_eq!(view["url"], json!("http://127.0.0.1:1/in"));
        assert_eq!(
            (view["concurrency"].as_u64(), view["timeout_ms"].as_u64()),
            (Some(16), Some(10_000))
        );
        set_channel(
            &*store,
            &g,
            t,
            ChannelKind::DouyinIm,
            &json!({"access_token": "dy-token-1", "open_id": "biz", "base": "http://127.0.0.1:2/"}),
            1,
        )
        .unwrap();
        let view = set_channel(
            &*store,
            &g,
            t,
            ChannelKind::WecomRobot,
            &json!({"url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=robot-key-1"}),
            1,
        )
        .unwrap();
        assert_eq!(view["host"], json!("qyapi.weixin.qq.com"));
        assert_eq!(view["concurrency"], json!(1));

        for kind in ChannelKind::ALL {
            let raw = store
                .connector(t, kind.connector())
                .unwrap()
                .unwrap()
                .config;
            for secret in ["hook-secret-1", "dy-token-1", "robot-key-1"] {
                assert!(!raw.contains(secret), "{raw}");
            }
            assert!(raw.contains("sealed:v1:"), "{raw}");
        }
        let all = channel_views(&*store, &g, t).unwrap().to_string();
        for secret in ["hook-secret-1", "dy-token-1", "robot-key-1"] {
            assert!(!all.contains(secret), "{all}");
        }
        let robot = channel(&*store, &g, t, ChannelKind::WecomRobot)
            .unwrap()
            .unwrap();
        let ChannelSettings::WecomRobot(r) = &robot else {
            panic!()
        };
        assert_eq!(r.url, "https://qyapi.weixin.qq.com/cgi-bin/webhook/send");
        assert_eq!(r.webhook_key.expose(), "robot-key-1");
        assert!(!format!("{robot:?}").contains("robot-key-1"));

        // A PUT without the credential keeps it; other fields change.
        let view = set_channel(
            &*store,
            &g,
            t,
            ChannelKind::Webhook,
            &json!({"url": "http://127.0.0.1:3/in", "concurrency": 4}),
            2,
        )
        .unwrap();
        assert_eq!(view["concurrency"], json!(4));
        let hook = channel(&*store, &g, t, ChannelKind::Webhook)
            .unwrap()
            .unwrap();
        let ChannelSettings::Webhook(w) = &hook else {
            panic!()
        };
        assert_eq!(
            (w.secret.expose(), w.url.as_str()),
            ("hook-secret-1", "http://127.0.0.1:3/in")
        );
        assert!(!format!("{hook:?}").contains("hook-secret-1"));
        let dy = channel(&*store, &g, t, ChannelKind::DouyinIm)
            .unwrap()
            .unwrap();
        let ChannelSettings::DouyinIm(d) = &dy else {
            panic!()
        };
        assert_eq!((d.base.as_str(), d.concurrency), ("http://127.0.0.1:2", 8));
        assert!(!format!("{dy:?}").contains("dy-token-1"));
        set_channel(
            &*store,
            &g,
            t,
            ChannelKind::WecomRobot,
            &json!({"concurrency": 2}),
            2,
        )
        .unwrap();
        let ChannelSettings::WecomRobot(r) = channel(&*store, &g, t, ChannelKind::WecomRobot)
            .unwrap()
            .unwrap()
        else {
            panic!()
        };
        assert_eq!((r.webhook_key.expose(), r.concurrency), ("robot-key-1", 2));

        // The kill switch, without the credentials.
        let view = set_killed(&*store, &g, t, ChannelKind::Webhook, true, 3).unwrap();
        assert_eq!(view["killed"], json!(true));
        let hook = channel(&*store, &g, t, ChannelKind::Webhook)
            .unwrap()
            .unwrap();
        assert!(hook.killed());
        let ChannelSettings::Webhook(w) = &hook else {
            panic!()
        };
        assert_eq!((w.secret.expose(), w.concurrency), ("hook-secret-1", 4));
        set_killed(&*store, &g, t, ChannelKind::Webhook, false, 4).unwrap();
        assert!(
            !channel(&*store, &g, t, ChannelKind::Webhook)
                .unwrap()
                .unwrap()
                .killed()
        );

        // A fresh tenant: nothing set up, and no kill switch to turn.
        let t2 = store.create_tenant("other", "w2", "a2", 0).unwrap().id;
        let views = channel_views(&*store, &g, t2).unwrap();
        assert_eq!(views["channels"].as_array().unwrap().len(), 3);
        assert!(
            views["channels"]
                .as_array()
                .unwrap()
                .iter()
                .all(|v| v["configured"] == json!(false))
        );
        assert_eq!(
            set_killed(&*store, &g, t2, ChannelKind::DouyinIm, true, 1)
                .unwrap_err()
                .code(),
            "channel_not_configured"
        );
        // Reading with the wrong key names no secret.
        let wrong = Safeguards::new(Sealer::from_keys(&[6; 32], None), PRIVATE);
        let e = channel(&*store, &wrong, t, ChannelKind::Webhook).unwrap_err();
        assert_eq!(e.code(), "secret_key_mismatch");
        assert!(!e.to_string().contains("hook-secret-1"));
    }

    #[test]
    fn plain_credentials_are_sealed_again() {
        let (_dir, store, t) = store_with_tenant();
        let g = guard();
        store
            .set_connector(t, "channel.webhook",
                r#"{"url":"http://127.0.0.1:1","secret":"plain","timeout_ms":10000,"concurrency":16}"#, 1)
            .unwrap();
        assert_eq!(reseal(&*store, &g).unwrap(), 1);
        assert_eq!(reseal(&*store, &g).unwrap(), 0);
        let raw = store
            .connector(t, "channel.webhook")
            .unwrap()
            .unwrap()
            .config;
        assert!(!raw.contains("plain"), "{raw}");
        let hook = channel(&*store, &g, t, ChannelKind::Webhook)
            .unwrap()
            .unwrap();
        assert!(!hook.killed(), "killed defaults to false");
    }

    #[test]
    fn adapters_are_built_from_settings() {
        let server = Server::start(vec![reply(200, OK)]);
        let settings = ChannelSettings::WecomRobot(WecomRobotSettings {
            url: server.base.clone(),
            webhook_key: Secret::parse("url", "k").unwrap(),
            timeout_ms: 5_000,
            concurrency: 1,
            killed: false,
        });
        let d = adapter(&settings, PRIVATE, Arc::new(ManualClock::new(0)));
        let a = d.deliver("k", &json!({"msgtype": "text", "content": "x"}));
        assert_eq!(a.outcome, Outcome::Delivered);
    }
}
