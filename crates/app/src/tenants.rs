//! Tenants: a brand (or one of its accounts) whose data is kept apart from every other's.

use serde::Serialize;
use siyu_store::{KeyRole, Store};

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
}
