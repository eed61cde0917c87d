//! Tenants: a brand (or one of its accounts) whose data is kept apart from every other's, and
//! its two API keys, which can be rotated: a leaked key is replaced and stops working at once,
//! or after a short grace (at most [`MAX_KEY_GRACE_S`]) while senders move to the new one.

use serde::Serialize;
use serde_json::{Value, json};
use siyu_domain::Millis;
use siyu_store::{KeyRole, Store, TenantId};

use crate::{AppError, keys};

/// A tenant name: 1–64 ASCII letters, digits, `-` or `_` (it appears in URLs, e.g. the
/// Douyin webhook path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantName(String);

impl TenantName {
    pub fn parse(s: &str) -> Result<TenantName, AppError> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(TenantName(s.to_string()))
        } else {
            Err(AppError::InvalidTenantName(s.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What `siyu tenant create` prints: the only time the keys are ever shown.
#[derive(Debug, Clone, Serialize)]
pub struct TenantKeys {
    pub tenant: String,
    pub write_key: String,
    pub admin_key: String,
}

/// Creates a tenant with a fresh write key and admin key.
pub fn create(store: &dyn Store, name: &TenantName) -> Result<TenantKeys, AppError> {
    let write_key = keys::generate(KeyRole::Write);
    let admin_key = keys::generate(KeyRole::Admin);
    store.create_tenant(
        name.as_str(),
        &keys::hash_key(&write_key),
        &keys::hash_key(&admin_key),
        siyu_domain::time::now_ms(),
    )?;
    Ok(TenantKeys {
        tenant: name.as_str().to_string(),
        write_key,
        admin_key,
    })
}

/// The longest an old key keeps working after a rotation: 7 days.
pub const MAX_KEY_GRACE_S: u64 = 7 * 24 * 3600;

/// Reads a key role as the CLI and the API name it: `write` or `admin`.
pub fn parse_role(s: &str) -> Result<KeyRole, AppError> {
    match s {
        "write" => Ok(KeyRole::Write),
        "admin" => Ok(KeyRole::Admin),
        _ => Err(AppError::InvalidKeyRole(s.to_string())),
    }
}

/// A new key, shown this once: `siyu tenant rotate` prints it, the API answers it.
#[derive(Clone)]
pub struct RotatedKey {
    pub tenant: String,
    pub role: KeyRole,
    pub key: String,
    /// Until when the replaced key still works; `None`: it stopped at once.
    pub previous_expires_at: Option<Millis>,
}

impl RotatedKey {
    /// `{"tenant": NAME, "write_key" | "admin_key": KEY}`, with `previous_key_expires_at` when
    /// the old key was given a grace.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "tenant": self.tenant,
            format!("{}_key", self.role.as_str()): self.key,
        });
        if let Some(at) = self.previous_expires_at {
            v["previous_key_expires_at"] = json!(siyu_domain::time::format_rfc3339(at));
        }
        v
    }
}

/// The key is shown once, on purpose, never in a log.
impl std::fmt::Debug for RotatedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotatedKey")
            .field("tenant", &self.tenant)
            .field("role", &self.role)
            .field("key", &"<redacted>")
            .field("previous_expires_at", &self.previous_expires_at)
            .finish()
    }
}

/// Gives a tenant a new key of `role` at `now`; the keys of that role it had work for
/// `grace_s` more seconds (0: they stop at once). What both the CLI and the API call.
pub fn rotate(
    store: &dyn Store,
    tenant: TenantId,
    tenant_name: &str,
    role: KeyRole,
    grace_s: u64,
    now: Millis,
) -> Result<RotatedKey, AppError> {
    if grace_s > MAX_KEY_GRACE_S {
        return Err(AppError::InvalidGrace(grace_s));
    }
    let key = keys::generate(role);
    let retire_at = now + grace_s as Millis * 1000;
    store.rotate_key(tenant, role, &keys::hash_key(&key), now, retire_at)?;
    Ok(RotatedKey {
        tenant: tenant_name.to_string(),
        role,
        key,
        previous_expires_at: (grace_s > 0).then_some(retire_at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(TenantName::parse("acme-cn_1").is_ok());
        assert!(TenantName::parse("").is_err());
        assert!(TenantName::parse("a b").is_err());
        assert!(TenantName::parse("品牌").is_err());
        assert!(TenantName::parse(&"a".repeat(65)).is_err());
    }

    #[test]
    fn a_rotated_key_stops_at_once_or_exactly_when_its_grace_ends() {
        use siyu_domain::time::ManualClock;
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            siyu_store::SqliteStore::open(dir.path(), siyu_store::Durability::Normal).unwrap(),
        );
        let old = create(&*store, &TenantName::parse("acme").unwrap()).unwrap();
        let t0 = 1_793_000_000_000;
        let clock = Arc::new(ManualClock::new(t0));
        let app = crate::App::start_with_clock(store, crate::EngineMode::WriteOnly, clock.clone())
            .unwrap();
        let id = app.authenticate(&old.write_key).unwrap().unwrap().id;

        // At once: the old write key is refused although the cache held it.
        let w = app.rotate_key(id, "acme", KeyRole::Write, 0).unwrap();
        assert_eq!(w.to_json(), json!({"tenant": "acme", "write_key": w.key}));
        assert!(!format!("{w:?}").contains(&w.key));
        assert!(app.authenticate(&old.write_key).unwrap().is_none());
        assert_eq!(
            app.authenticate(&w.key).unwrap().unwrap().role,
            crate::Role::Write
        );

        // With a grace of a minute: the old admin key works until the last millisecond.
        assert!(app.authenticate(&old.admin_key).unwrap().is_some());
        let a = app.rotate_key(id, "acme", KeyRole::Admin, 60).unwrap();
        assert_eq!(
            a.to_json()["previous_key_expires_at"],
            siyu_domain::time::format_rfc3339(t0 + 60_000)
        );
        assert!(app.authenticate(&old.admin_key).unwrap().is_some());
        clock.set(t0 + 59_999);
        assert!(app.authenticate(&old.admin_key).unwrap().is_some());
        clock.set(t0 + 60_000);
        assert!(
            app.authenticate(&old.admin_key).unwrap().is_none(),
            "cached, but expired"
        );
        assert!(app.authenticate(&a.key).unwrap().is_some());
        assert!(
            app.authenticate(&w.key).unwrap().is_some(),
            "the write key is untouched"
        );

        assert!(matches!(
            app.rotate_key(id, "acme", KeyRole::Write, MAX_KEY_GRACE_S + 1),
            Err(AppError::InvalidGrace(_))
        ));
        assert!(
            app.authenticate(&w.key).unwrap().is_some(),
            "a refused rotation changes nothing"
        );
        assert!(matches!(
            parse_role("root"),
            Err(AppError::InvalidKeyRole(_))
        ));
        assert_eq!(parse_role("admin").unwrap(), KeyRole::Admin);
    }
}
