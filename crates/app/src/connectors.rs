//! Connector settings per tenant: the Douyin client secret that signs webhook deliveries, and
//! the Ocean Engine advertiser, access token and start time of the lead poller.
//!
//! Settings are checked here ("parse, don't validate") and stored as JSON in the store's
//! `connectors` table. Credentials are [`Secret`]s: their `Debug` is redacted and they have no
//! `Display`, so they reach neither logs nor answers. An answer says only whether one is set.
//! In the store, every credential field ([`CREDENTIALS`]) is sealed (see [`crate::secrets`]);
//! the other settings stay readable. Outbound URLs are held to the [`TargetPolicy`] of the
//! [`Safeguards`] they are set with (see [`crate::targets`]).

use std::sync::Arc;

use crate::AppError;
use crate::secrets::{Sealer, SecretError, Slot};
use crate::targets::{TargetError, TargetPolicy};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use siyu_domain::Millis;
use siyu_store::{Store, StoreError, TenantId};

/// The fields of a connector's settings that are credentials, sealed at rest (the channels'
/// too: see [`crate::channels`]).
pub const CREDENTIALS: &[&str] = &["client_secret", "access_token", "secret", "webhook_key"];

/// What connector settings are kept and checked with: the sealer of their credentials and the
/// policy their URLs are held to. Built once by the binary from the environment.
#[derive(Debug, Clone, Default)]
pub struct Safeguards {
    /// `None`: no secret key is set up. Credentials can then be neither sealed nor opened
    /// (plain ones stored by earlier versions are still read).
    pub sealer: Option<Arc<Sealer>>,
    pub targets: TargetPolicy,
}

impl Safeguards {
    pub fn new(sealer: Sealer, targets: TargetPolicy) -> Safeguards {
        Safeguards {
            sealer: Some(Arc::new(sealer)),
            targets,
        }
    }
}

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
    /// `invalid_connector_setting`, or `target_not_allowed` for a URL the policy refuses.
    code: &'static str,
}

impl SettingError {
    pub fn new(field: &'static str, message: impl Into<String>) -> SettingError {
        SettingError {
            field,
            message: message.into(),
            code: "invalid_connector_setting",
        }
    }

    /// The stable code at the edge.
    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl From<TargetError> for SettingError {
    fn from(e: TargetError) -> Self {
        SettingError {
            field: e.field(),
            code: e.code(),
            message: e.to_string(),
        }
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

/// The stored form of a connector's settings: JSON with every credential field sealed.
fn seal_config(
    guard: &Safeguards,
    tenant: TenantId,
    kind: &str,
    settings: &impl Serialize,
) -> Result<String, AppError> {
    let mut v = serde_json::to_value(settings).map_err(|e| corrupt(kind, e))?;
    seal_fields(guard, tenant, kind, &mut v)?;
    Ok(serde_json::to_string(&v).map_err(|e| corrupt(kind, e))?)
}

fn seal_fields(
    guard: &Safeguards,
    tenant: TenantId,
    kind: &str,
    v: &mut Value,
) -> Result<(), AppError> {
    for field in CREDENTIALS {
        if let Some(Value::String(s)) = v.get_mut(*field) {
            let sealer = guard.sealer.as_ref().ok_or(SecretError::NoKey)?;
            let slot = Slot {
                tenant,
                connector: kind,
                field,
            };
            *s = sealer.seal(slot, s);
        }
    }
    Ok(())
}

/// Reads stored settings: opens every credential field. `true` with them when any was plain
/// text or sealed with the old key (then they should be sealed again).
fn open_config<T: DeserializeOwned>(
    guard: &Safeguards,
    tenant: TenantId,
    kind: &str,
    config: &str,
) -> Result<(T, bool), AppError> {
    let (v, stale) = open_fields(guard, tenant, kind, config)?;
    // serde's message may quote a value, which could be a credential: only the kind is told.
    let settings = serde_json::from_value(v).map_err(|_| {
        StoreError::Corrupt(format!(
            "{kind} connector settings of tenant {tenant} are not what this version reads"
        ))
    })?;
    Ok((settings, stale))
}

fn open_fields(
    guard: &Safeguards,
    tenant: TenantId,
    kind: &str,
    config: &str,
) -> Result<(Value, bool), AppError> {
    let mut v: Value = serde_json::from_str(config).map_err(|e| corrupt(kind, e))?;
    let mut stale = false;
    for field in CREDENTIALS {
        if let Some(Value::String(s)) = v.get_mut(*field) {
            let slot = Slot {
                tenant,
                connector: kind,
                field,
            };
            let opened = match guard.sealer.as_ref() {
                Some(sealer) => sealer.open(slot, s)?,
                // Without a key only plain values (an earlier version's) can be read.
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

/// Seals again every connector credential stored in plain text (by an earlier version) or with
/// the old key, so that the old key can be retired; `siyu serve` calls it at start. Returns how
/// many connectors were rewritten. One that cannot be opened is logged (naming it, never the
/// value) and left as it is: it fails with the same error where it is used.
pub fn reseal(store: &dyn Store, guard: &Safeguards) -> Result<usize, AppError> {
    if guard.sealer.is_none() {
        return Ok(0);
    }
    let mut done = 0;
    for kind in [DOUYIN, OCEANENGINE] {
        for (tenant, c) in store.connectors(kind)? {
            match open_fields(guard, tenant, kind, &c.config) {
                Ok((mut v, true)) => {
                    seal_fields(guard, tenant, kind, &mut v)?;
                    let text = serde_json::to_string(&v).map_err(|e| corrupt(kind, e))?;
                    store.set_connector(tenant, kind, &text, c.updated_at)?;
                    done += 1;
                }
                Ok((_, false)) => {}
                Err(e) => {
                    tracing::error!(tenant, connector = kind, error = %e, "cannot open connector credentials")
                }
            }
        }
    }
    if done > 0 {
        tracing::info!(
            connectors = done,
            "sealed connector credentials again with the current secret key"
        );
    }
    Ok(done)
}

/// Sets a tenant's Douyin client secret.
pub fn set_douyin(
    store: &dyn Store,
    guard: &Safeguards,
    tenant: TenantId,
    client_secret: &str,
    now: Millis,
) -> Result<Result<DouyinSettings, SettingError>, AppError> {
    let settings = match Secret::parse("client_secret", client_secret) {
        Ok(s) => DouyinSettings { client_secret: s },
        Err(e) => return Ok(Err(e)),
    };
    let text = seal_config(guard, tenant, DOUYIN, &settings)?;
    store.set_connector(tenant, DOUYIN, &text, now)?;
    Ok(Ok(settings))
}

/// A tenant's Douyin settings, if set.
pub fn douyin(
    store: &dyn Store,
    guard: &Safeguards,
    tenant: TenantId,
) -> Result<Option<DouyinSettings>, AppError> {
    store
        .connector(tenant, DOUYIN)?
        .map(|c| open_config(guard, tenant, DOUYIN, &c.config).map(|(s, _)| s))
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
    guard: &Safeguards,
    tenant: TenantId,
) -> Result<Option<(OceanEngineSettings, Option<Value>)>, AppError> {
    let Some(c) = store.connector(tenant, OCEANENGINE)? else {
        return Ok(None);
    };
    let (settings, _) = open_config(guard, tenant, OCEANENGINE, &c.config)?;
    let state = c
        .state
        .map(|s| serde_json::from_str(&s).map_err(|e| corrupt(OCEANENGINE, e)))
        .transpose()?;
    Ok(Some((settings, state)))
}

/// Applies a change to a tenant's Ocean Engine settings (a new `base_url` is held to the
/// guard's target policy). A new advertiser or start time puts the poller back at the start.
pub fn set_oceanengine(
    store: &dyn Store,
    guard: &Safeguards,
    tenant: TenantId,
    change: OceanEngineChange,
    now: Millis,
) -> Result<Result<OceanEngineSettings, SettingError>, AppError> {
    let old = oceanengine(store, guard, tenant)?.map(|(s, _)| s);
    let settings = match merge(old.as_ref(), change, now, guard.targets) {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    let text = seal_config(guard, tenant, OCEANENGINE, &settings)?;
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
    targets: TargetPolicy,
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
            targets.check("base_url", &b)?;
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
        douyin(&*self.store, &self.safeguards, tenant)
    }

    /// Sets a tenant's Douyin client secret (checked first; nothing is stored when refused).
    pub fn set_douyin(
        &self,
        tenant: TenantId,
        client_secret: &str,
    ) -> Result<Result<DouyinSettings, SettingError>, AppError> {
        let now = self.ingestor.clock().now();
        set_douyin(&*self.store, &self.safeguards, tenant, client_secret, now)
    }

    /// A tenant's Ocean Engine settings and the poller's position, if set.
    pub fn oceanengine_settings(
        &self,
        tenant: TenantId,
    ) -> Result<Option<(OceanEngineSettings, Option<Value>)>, AppError> {
        oceanengine(&*self.store, &self.safeguards, tenant)
    }

    /// Changes a tenant's Ocean Engine settings; answers them with the poller's position.
    pub fn set_oceanengine(
        &self,
        tenant: TenantId,
        change: OceanEngineChange,
    ) -> Result<Result<(OceanEngineSettings, Option<Value>), SettingError>, AppError> {
        let now = self.ingestor.clock().now();
        let guard = &self.safeguards;
        Ok(
            match set_oceanengine(&*self.store, guard, tenant, change, now)? {
                Ok(s) => Ok((
                    s,
                    oceanengine(&*self.store, guard, tenant)?.and_then(|(_, p)| p),
                )),
                Err(e) => Err(e),
            },
        )
    }

    /// Seals again the connector credentials stored in plain text or with the old key (see
    /// [`reseal`]).
    pub fn reseal_connectors(&self) -> Result<usize, AppError> {
        reseal(&*self.store, &self.safeguards)
    }

    /// What connector settings are kept and checked with.
    pub fn safeguards(&self) -> &Safeguards {
        &self.safeguards
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIVATE: TargetPolicy = TargetPolicy::ALLOW_PRIVATE;

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
        let e = merge(None, OceanEngineChange::default(), now, PRIVATE).unwrap_err();
        assert_eq!(e.field, "advertiser_id");
        let first = merge(
            None,
            OceanEngineChange {
                advertiser_id: Some("1769665409798152".into()),
                access_token: Some("tok".into()),
                ..Default::default()
            },
            now,
            PRIVATE,
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
            PRIVATE,
        )
        .unwrap();
        assert_eq!(second.advertiser_id, first.advertiser_id);
        assert_eq!(second.access_token.expose(), "tok2");
        assert_eq!(second.start, first.start);
        let bad = |c: OceanEngineChange| merge(Some(&first), c, now, PRIVATE).unwrap_err().field;
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

    fn store_with_tenant() -> (tempfile::TempDir, Arc<dyn Store>, TenantId) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            siyu_store::SqliteStore::open(dir.path(), siyu_store::Durability::Normal).unwrap(),
        );
        let t = store.create_tenant("acme", "w", "a", 0).unwrap().id;
        (dir, store, t)
    }

    fn change(token: &str, base: &str) -> OceanEngineChange {
        OceanEngineChange {
            advertiser_id: Some("1".into()),
            access_token: Some(token.into()),
            base_url: Some(base.into()),
            ..Default::default()
        }
    }

    #[test]
    fn credentials_are_sealed_at_rest_and_read_back() {
        let (_dir, store, t) = store_with_tenant();
        let guard = Safeguards::new(Sealer::from_keys(&[3; 32], None), PRIVATE);
        set_douyin(&*store, &guard, t, "dy-secret-1", 5)
            .unwrap()
            .unwrap();
        set_oceanengine(
            &*store,
            &guard,
            t,
            change("oe-token-1", "http://127.0.0.1:9"),
            5,
        )
        .unwrap()
        .unwrap();
        for kind in [DOUYIN, OCEANENGINE] {
            let raw = store.connector(t, kind).unwrap().unwrap().config;
            assert!(
                !raw.contains("dy-secret-1") && !raw.contains("oe-token-1"),
                "{raw}"
            );
            assert!(raw.contains("sealed:v1:"), "{raw}");
        }
        let raw = store.connector(t, OCEANENGINE).unwrap().unwrap().config;
        assert!(
            raw.contains("http://127.0.0.1:9"),
            "other settings stay readable: {raw}"
        );
        let d = douyin(&*store, &guard, t).unwrap().unwrap();
        assert_eq!(d.client_secret.expose(), "dy-secret-1");
        let (o, _) = oceanengine(&*store, &guard, t).unwrap().unwrap();
        assert_eq!(o.access_token.expose(), "oe-token-1");

        // A wrong key is a clear error naming the connector, never the secret.
        let wrong = Safeguards::new(Sealer::from_keys(&[4; 32], None), PRIVATE);
        let e = douyin(&*store, &wrong, t).unwrap_err();
        assert_eq!(e.code(), "secret_key_mismatch");
        let text = e.to_string();
        assert!(
            text.contains("douyin") && text.contains("client_secret"),
            "{text}"
        );
        assert!(!text.contains("dy-secret-1"));
        // Without a key, sealed credentials cannot be read or written.
        let none = Safeguards::default();
        assert_eq!(
            douyin(&*store, &none, t).unwrap_err().code(),
            "secret_key_unavailable"
        );
        assert!(set_douyin(&*store, &none, t, "x", 6).is_err());
    }

    #[test]
    fn plain_and_old_key_credentials_are_sealed_again_with_the_new_key() {
        let (_dir, store, t) = store_with_tenant();
        // An earlier version stored the secret in plain text.
        store
            .set_connector(t, DOUYIN, r#"{"client_secret":"legacy-secret"}"#, 1)
            .unwrap();
        let old = Safeguards::new(Sealer::from_keys(&[1; 32], None), PRIVATE);
        assert_eq!(
            douyin(&*store, &old, t)
                .unwrap()
                .unwrap()
                .client_secret
                .expose(),
            "legacy-secret"
        );
        set_oceanengine(
            &*store,
            &old,
            t,
            change("oe-token", "http://127.0.0.1:9"),
            1,
        )
        .unwrap()
        .unwrap();
        assert_eq!(reseal(&*store, &old).unwrap(), 1, "the plain one only");
        assert!(
            !store
                .connector(t, DOUYIN)
                .unwrap()
                .unwrap()
                .config
                .contains("legacy")
        );

        // Rotation: the new key with the old beside it opens both and re-seals with the new.
        let rotating = Safeguards::new(Sealer::from_keys(&[2; 32], Some(&[1; 32])), PRIVATE);
        assert_eq!(reseal(&*store, &rotating).unwrap(), 2);
        assert_eq!(reseal(&*store, &rotating).unwrap(), 0, "done once");
        let new_only = Safeguards::new(Sealer::from_keys(&[2; 32], None), PRIVATE);
        assert_eq!(
            douyin(&*store, &new_only, t)
                .unwrap()
                .unwrap()
                .client_secret
                .expose(),
            "legacy-secret"
        );
        let (o, position) = oceanengine(&*store, &new_only, t).unwrap().unwrap();
        assert_eq!(o.access_token.expose(), "oe-token");
        assert!(position.is_some(), "the poller's position is kept");
    }

    #[test]
    fn a_private_base_url_is_refused_by_the_default_policy() {
        let (_dir, store, t) = store_with_tenant();
        let guard = Safeguards::new(Sealer::from_keys(&[3; 32], None), TargetPolicy::default());
        for base in [
            "http://127.0.0.1:9",
            "https://10.0.0.1",
            "https://localhost",
        ] {
            let e = set_oceanengine(&*store, &guard, t, change("t", base), 1)
                .unwrap()
                .unwrap_err();
            assert_eq!(
                (e.field, e.code()),
                ("base_url", "target_not_allowed"),
                "{base}"
            );
        }
        assert!(
            store.connector(t, OCEANENGINE).unwrap().is_none(),
            "nothing stored"
        );
        let ok = set_oceanengine(
            &*store,
            &guard,
            t,
            change("t", "https://api.oceanengine.com/"),
            1,
        )
        .unwrap()
        .unwrap();
        assert_eq!(ok.base_url, DEFAULT_OCEANENGINE_BASE);
    }
}
