//! Connector settings per tenant: the Douyin client secret that signs webhook deliveries, and
//! the Ocean Engine advertiser, access token and start time of the lead poller.
//!
//! Settings are checked here ("parse, don't validate") and stored as JSON in the store's
//! `connectors` table. Credentials are [`Secret`]s: their `Debug` is redacted and they have no
//! `Display`, so they reach neither logs nor answers. An answer says only whether one is set.

use crate::AppError;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use siyu_domain::Millis;
use siyu_store::{Store, StoreError, TenantId};

/// The `kind` of the Douyin webhook connector in the store.
pub const DOUYIN: &str = "douyin";
/// The `kind` of the Ocean Engine lead poller in the store.
pub const OCEANENGINE: &str = "oceanengine";

/// Where the lead API lives unless a tenant says otherwise.
pub const DEFAULT_OCEANENGINE_BASE: &str = "https://api.oceanengine.com";
/// Leads per page asked of the lead API (its maximum).
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// A poller set up without a start time begins this far back.
pub const DEFAULT_LOOKBACK_MS: Millis = 30 * siyu_domain::time::MS_PER_DAY;

/// A credential. Printed as `<redacted>`; read it with [`Secret::expose`] where it is used.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Checks a credential: 1–512 characters, no control characters or spaces around it.
    pub fn parse(field: &'static str, s: &str) -> Result<Secret, SettingError> {
        let n = s.chars().count();
        if n == 0 || n > 512 || s.chars().any(char::is_control) || s.trim() != s {
            return Err(SettingError::new(
                field,
                format!(
                    "{field} must be 1–512 characters without control characters or surrounding spaces"
                ),
            ));
        }
        Ok(Secret(s.to_string()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A setting that was refused; `field` names it as the caller wrote it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SettingError {
    pub field: &'static str,
    pub message: String,
}

impl SettingError {
    pub fn new(field: &'static str, message: impl Into<String>) -> SettingError {
        SettingError {
            field,
            message: message.into(),
        }
    }

    /// The stable code at the edge.
    pub fn code(&self) -> &'static str {
        "invalid_connector_setting"
    }
}

/// The Douyin webhook connector of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DouyinSettings {
    /// The app's client secret: deliveries are signed with it.
    pub client_secret: Secret,
}

/// The Ocean Engine lead poller of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OceanEngineSettings {
    /// The advertiser whose leads are pulled (digits).
    pub advertiser_id: String,
    pub access_token: Secret,
    /// The lead API's origin, e.g. `https://api.oceanengine.com` (a local server in tests).
    pub base_url: String,
    /// Leads created before this are not pulled.
    pub start: Millis,
    pub page_size: u32,
}

/// A change to the Ocean Engine settings; `None` keeps what is set. `Debug` hides the token.
#[derive(Default, Clone)]
pub struct OceanEngineChange {
    pub advertiser_id: Option<String>,
    pub access_token: Option<String>,
    pub base_url: Option<String>,
    pub start: Option<Millis>,
    pub page_size: Option<u32>,
}

/// Unreadable stored settings. Only the position is reported: serde's message may quote the
/// value, which could be a credential.
impl std::fmt::Debug for OceanEngineChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OceanEngineChange")
            .field("advertiser_id", &self.advertiser_id)
            .field(
                "access_token",
                &self.access_token.as_ref().map(|_| "<redacted>"),
            )
            .field("base_url", &self.base_url)
            .field("start", &self.start)
            .field("page_size", &self.page_size)
            .finish()
    }
}

fn corrupt(kind: &str, e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(format!(
        "{kind} connector settings unreadable at line {} column {}",
        e.line(),
        e.column()
    ))
}

/// Sets a tenant's Douyin client secret.
pub fn set_douyin(
    store: &dyn Store,
    tenant: TenantId,
    client_secret: &str,
    now: Millis,
) -> Result<Result<DouyinSettings, SettingError>, StoreError> {
    let settings = match Secret::parse("client_secret", client_secret) {
        Ok(s) => DouyinSettings { client_secret: s },
        Err(e) => return Ok(Err(e)),
    };
    let text = serde_json::to_string(&settings).map_err(|e| corrupt(DOUYIN, e))?;
    store.set_connector(tenant, DOUYIN, &text, now)?;
    Ok(Ok(settings))
}

/// A tenant's Douyin settings, if set.
pub fn douyin(store: &dyn Store, tenant: TenantId) -> Result<Option<DouyinSettings>, StoreError> {
    store
        .connector(tenant, DOUYIN)?
        .map(|c| serde_json::from_str(&c.config).map_err(|e| corrupt(DOUYIN, e)))
        .transpose()
}

/// What the API and the CLI show of the Douyin settings: never the secret.
pub fn douyin_view(tenant_name: &str, s: Option<&DouyinSettings>) -> Value {
    json!({
        "connector": DOUYIN,
        "tenant": tenant_name,
        "client_secret_set": s.is_some(),
        "webhook_path": format!("/webhooks/douyin/{tenant_name}"),
    })
}

/// A tenant's Ocean Engine settings and its poller's position, if set.
pub fn oceanengine(
    store: &dyn Store,
    tenant: TenantId,
) -> Result<Option<(OceanEngineSettings, Option<Value>)>, StoreError> {
    let Some(c) = store.connector(tenant, OCEANENGINE)? else {
        return Ok(None);
    };
    let settings = serde_json::from_str(&c.config).map_err(|e| corrupt(OCEANENGINE, e))?;
    let state = c
        .state
        .map(|s| serde_json::from_str(&s).map_err(|e| corrupt(OCEANENGINE, e)))
        .transpose()?;
    Ok(Some((settings, state)))
}

/// Applies a change to a tenant's Ocean Engine settings. A new advertiser or start time puts
/// the poller back at the start.
pub fn set_oceanengine(
    store: &dyn Store,
    tenant: TenantId,
    change: OceanEngineChange,
    now: Millis,
) -> Result<Result<OceanEngineSettings, SettingError>, StoreError> {
    let old = oceanengine(store, tenant)?.map(|(s, _)| s);
    let settings = match merge(old.as_ref(), change, now) {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    let text = serde_json::to_string(&settings).map_err(|e| corrupt(OCEANENGINE, e))?;
    store.set_connector(tenant, OCEANENGINE, &text, now)?;
    let moved =
        old.is_none_or(|o| o.advertiser_id != settings.advertiser_id || o.start != settings.start);
    if moved {
        let fresh = crate::oceanengine::Checkpoint::starting_at(settings.start);
        let text = serde_json::to_string(&fresh).map_err(|e| corrupt(OCEANENGINE, e))?;
        store.set_connector_state(tenant, OCEANENGINE, &text)?;
    }
    Ok(Ok(settings))
}

fn merge(
    old: Option<&OceanEngineSettings>,
    change: OceanEngineChange,
    now: Millis,
) -> Result<OceanEngineSettings, SettingError> {
    let advertiser_id = match (change.advertiser_id, old) {
        (Some(a), _) => {
            let a = a.trim().to_string();
            if a.is_empty() || a.len() > 20 || !a.bytes().all(|b| b.is_ascii_digit()) {
                return Err(SettingError::new(
                    "advertiser_id",
                    "advertiser_id must be the advertiser's numeric id (1–20 digits)",
                ));
            }
            a
        }
        (None, Some(o)) => o.advertiser_id.clone(),
        (None, None) => {
            return Err(SettingError::new(
                "advertiser_id",
                "advertiser_id is required to set up the lead poller",
            ));
        }
    };
    let access_token = match (change.access_token, old) {
        (Some(t), _) => Secret::parse("access_token", &t)?,
        (None, Some(o)) => o.access_token.clone(),
        (None, None) => {
            return Err(SettingError::new(
                "access_token",
                "access_token is required to set up the lead poller",
            ));
        }
    };
    let base_url = match (change.base_url, old) {
        (Some(b), _) => {
            let b = b.trim().trim_end_matches('/').to_string();
            if !(b.starts_with("https://") || b.starts_with("http://"))
                || b.contains(char::is_whitespace)
            {
                return Err(SettingError::new(
                    "base_url",
                    "base_url must be an http:// or https:// origin, e.g. https://api.oceanengine.com",
                ));
            }
            b
        }
        (None, Some(o)) => o.base_url.clone(),
        (None, None) => DEFAULT_OCEANENGINE_BASE.to_string(),
    };
    let start = change
        .start
        .or(old.map(|o| o.start))
        .unwrap_or(now - DEFAULT_LOOKBACK_MS);
    // The lead API works in whole seconds.
    let start = start - start.rem_euclid(1000);
    let page_size = match change.page_size.or(old.map(|o| o.page_size)) {
        Some(n) if (1..=DEFAULT_PAGE_SIZE).contains(&n) => n,
        Some(_) => {
            return Err(SettingError::new(
                "page_size",
                format!("page_size must be 1–{DEFAULT_PAGE_SIZE}"),
            ));
        }
        None => DEFAULT_PAGE_SIZE,
    };
    Ok(OceanEngineSettings {
        advertiser_id,
        access_token,
        base_url,
        start,
        page_size,
    })
}

/// What the API and the CLI show of the Ocean Engine settings: never the token.
pub fn oceanengine_view(
    tenant_name: &str,
    s: Option<&OceanEngineSettings>,
    state: Option<&Value>,
) -> Value {
    match s {
        None => json!({"connector": OCEANENGINE, "tenant": tenant_name, "access_token_set": false}),
        Some(s) => json!({
            "connector": OCEANENGINE,
            "tenant": tenant_name,
            "advertiser_id": s.advertiser_id,
            "access_token_set": true,
            "base_url": s.base_url,
            "start": siyu_domain::time::format_rfc3339(s.start),
            "page_size": s.page_size,
            "position": state.map(position_view),
        }),
    }
}

/// A stored poller checkpoint as answers show it: its times in RFC 3339, like every time in
/// an answer (the stored form keeps milliseconds).
fn position_view(state: &Value) -> Value {
    match serde_json::from_value::<crate::oceanengine::Checkpoint>(state.clone()) {
        Ok(c) => json!({
            "done_until": siyu_domain::time::format_rfc3339(c.done_until),
            "window_end": c.window_end.map(siyu_domain::time::format_rfc3339),
            "next_page": c.next_page,
        }),
        Err(_) => state.clone(),
    }
}

/// The connector settings as the server reaches them: through the app, never the store.
impl crate::App {
    /// A tenant's Douyin settings, if set.
    pub fn douyin_settings(&self, tenant: TenantId) -> Result<Option<DouyinSettings>, AppError> {
        Ok(douyin(&*self.store, tenant)?)
    }

    /// Sets a tenant's Douyin client secret (checked first; nothing is stored when refused).
    pub fn set_douyin(
        &self,
        tenant: TenantId,
        client_secret: &str,
    ) -> Result<Result<DouyinSettings, SettingError>, AppError> {
        let now = self.ingestor.clock().now();
        Ok(set_douyin(&*self.store, tenant, client_secret, now)?)
    }

    /// A tenant's Ocean Engine settings and the poller's position, if set.
    pub fn oceanengine_settings(
        &self,
        tenant: TenantId,
    ) -> Result<Option<(OceanEngineSettings, Option<Value>)>, AppError> {
        Ok(oceanengine(&*self.store, tenant)?)
    }

    /// Changes a tenant's Ocean Engine settings; answers them with the poller's position.
    pub fn set_oceanengine(
        &self,
        tenant: TenantId,
        change: OceanEngineChange,
    ) -> Result<Result<(OceanEngineSettings, Option<Value>), SettingError>, AppError> {
        let now = self.ingestor.clock().now();
        Ok(match set_oceanengine(&*self.store, tenant, change, now)? {
            Ok(s) => Ok((s, oceanengine(&*self.store, tenant)?.and_then(|(_, p)| p))),
            Err(e) => Err(e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug() {
        let s = DouyinSettings {
            client_secret: Secret::parse("client_secret", "very-secret").unwrap(),
        };
        assert!(!format!("{s:?}").contains("very-secret"));
        assert!(Secret::parse("client_secret", "").is_err());
        assert!(Secret::parse("client_secret", " padded").is_err());
    }

    #[test]
    fn oceanengine_settings_merge_and_check() {
        let now = 1_793_000_000_123;
        let e = merge(None, OceanEngineChange::default(), now).unwrap_err();
        assert_eq!(e.field, "advertiser_id");
        let first = merge(
            None,
            OceanEngineChange {
                advertiser_id: Some("1769665409798152".into()),
                access_token: Some("tok".into()),
                ..Default::default()
            },
            now,
        )
        .unwrap();
        assert_eq!(first.base_url, DEFAULT_OCEANENGINE_BASE);
        assert_eq!(first.start, 1_793_000_000_000 - DEFAULT_LOOKBACK_MS);
        assert_eq!(first.page_size, 100);
        // Rotating the token keeps the rest.
        let second = merge(
            Some(&first),
            OceanEngineChange {
                access_token: Some("tok2".into()),
                ..Default::default()
            },
            now + 5,
        )
        .unwrap();
        assert_eq!(second.advertiser_id, first.advertiser_id);
        assert_eq!(second.access_token.expose(), "tok2");
        assert_eq!(second.start, first.start);
        let bad = |c: OceanEngineChange| merge(Some(&first), c, now).unwrap_err().field;
        assert_eq!(
            bad(OceanEngineChange {
                advertiser_id: Some("12a".into()),
                ..Default::default()
            }),
            "advertiser_id"
        );
        assert_eq!(
            bad(OceanEngineChange {
                base_url: Some("ftp://x".into()),
                ..Default::default()
            }),
            "base_url"
        );
        assert_eq!(
            bad(OceanEngineChange {
                page_size: Some(0),
                ..Default::default()
            }),
            "page_size"
        );
        assert!(!format!("{second:?}").contains("tok2"));
        let change = OceanEngineChange {
            access_token: Some("tok3".into()),
            ..Default::default()
        };
        assert!(!format!("{change:?}").contains("tok3"));
    }
}
