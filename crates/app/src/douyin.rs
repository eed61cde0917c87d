//! Douyin webhook deliveries: verify the signature, map, append once.
//!
//! Douyin signs each delivery with `X-Douyin-Signature` = lowercase hex SHA-1 of the app's
//! client secret followed by the raw body. The comparison is constant-time. A delivery is
//! acknowledged only after its event is committed; everything downstream of the log (engine,
//! later triggers) never holds up the answer beyond the group commit, well within Douyin's
//! 5-second limit. Douyin retries up to three times, possibly out of order: the event id is
//! `douyin:<Msg-Id>`, so a retry finds its event already stored and stores nothing.

use serde_json::Value;
use sha1::{Digest, Sha1};
use siyu_domain::douyin::{self, Delivery};
use siyu_domain::{Domain, EventError, time};
use siyu_store::Tenant;
use subtle::ConstantTimeEq;

use crate::connectors::{self, Secret};
use crate::{App, AppError, BatchOutcome};

/// The signature Douyin sends for `body`: lowercase hex SHA-1 over secret ‖ body.
pub fn sign(secret: &Secret, body: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(secret.expose().as_bytes());
    h.update(body);
    hex::encode(h.finalize())
}

/// Whether `header` is the signature of `body` under `secret`, compared in constant time.
pub fn verify(secret: &Secret, body: &[u8], header: Option<&str>) -> bool {
    let Some(given) = header.map(str::trim) else {
        return false;
    };
    let expected = sign(secret, body);
    // Lengths are public (a SHA-1 hex is 40 characters); the bytes are compared without
    // an early exit.
    given.len() == expected.len()
        && bool::from(
            given
                .to_ascii_lowercase()
                .as_bytes()
                .ct_eq(expected.as_bytes()),
        )
}

/// Why a delivery was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("no tenant {0:?}")]
    NoTenant(String),
    #[error(
        "no Douyin client secret is set for tenant {0:?}; set one with `siyu connector douyin`"
    )]
    NotConfigured(String),
    #[error("missing or wrong X-Douyin-Signature")]
    BadSignature,
    #[error(transparent)]
    Invalid(EventError),
    #[error(transparent)]
    App(#[from] AppError),
    /// The lookup task panicked or was cancelled.
    #[error("internal: {0}")]
    Internal(String),
}

impl DeliveryError {
    /// A stable machine code for the edge.
    pub fn code(&self) -> &'static str {
        match self {
            DeliveryError::NoTenant(_) => "tenant_not_found",
            DeliveryError::NotConfigured(_) => "connector_not_configured",
            DeliveryError::BadSignature => "bad_signature",
            DeliveryError::Invalid(e) => e.code.as_str(),
            DeliveryError::App(e) => e.code(),
            DeliveryError::Internal(_) => "internal",
        }
    }
}

/// What a genuine delivery is answered with.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `verify_webhook`: echo `{"challenge": n}`.
    Challenge(Value),
    /// The event is committed; `duplicate` if it already was (a retried delivery).
    Stored { event_id: String, duplicate: bool },
}

impl App {
    /// The tenant named in a webhook URL and its Douyin settings.
    fn douyin_tenant(&self, name: &str) -> Result<(Tenant, Secret), DeliveryError> {
        let tenant = self
            .store
            .tenants()
            .map_err(AppError::from)?
            .into_iter()
            .find(|t| t.name == name)
            .ok_or_else(|| DeliveryError::NoTenant(name.to_string()))?;
        let settings = connectors::douyin(&*self.store, &self.safeguards, tenant.id)?
            .ok_or_else(|| DeliveryError::NotConfigured(name.to_string()))?;
        Ok((tenant, settings.client_secret))
    }

    /// Handles one delivery for the tenant `tenant_name`: verifies `signature` over the raw
    /// `body`, answers a challenge, or maps and commits the event. `msg_id` is the `Msg-Id`
    /// header; without one, the SHA-1 of the body stands in, so an identical retry still
    /// dedupes.
    pub async fn douyin_delivery(
        self: &std::sync::Arc<Self>,
        tenant_name: &str,
        signature: Option<&str>,
        msg_id: Option<&str>,
        body: &[u8],
    ) -> Result<Answer, DeliveryError> {
        let app = self.clone();
        let name = tenant_name.to_string();
        let (tenant, secret) = tokio::task::spawn_blocking(move || app.douyin_tenant(&name))
            .await
            .map_err(|e| DeliveryError::Internal(e.to_string()))??;
        if !verify(&secret, body, signature) {
            metrics::counter!("siyu_douyin_deliveries_total", "outcome" => "bad_signature")
                .increment(1);
            return Err(DeliveryError::BadSignature);
        }
        let delivery_id = match msg_id.map(str::trim).filter(|m| !m.is_empty()) {
            Some(m) => m.to_string(),
            None => hex::encode(Sha1::digest(body)),
        };
        let cx = douyin::Context {
            custom_domain: tenant.custom_domain.parse().unwrap_or(Domain::Private),
            now: time::now_ms(),
        };
        let event = match douyin::parse(body, &delivery_id, &cx).map_err(DeliveryError::Invalid)? {
            Delivery::Verify { challenge } => return Ok(Answer::Challenge(challenge)),
            Delivery::Event(e) => *e,
        };
        let event_id = event.id.as_str().to_string();
        let mut outcome = BatchOutcome::default();
        self.ingest(tenant.id, vec![event], &mut outcome).await?;
        let duplicate = outcome.duplicates > 0;
        metrics::counter!("siyu_douyin_deliveries_total",
            "outcome" => if duplicate { "duplicate" } else { "stored" })
        .increment(1);
        Ok(Answer::Stored {
            event_id,
            duplicate,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_sha1_hex_of_secret_then_body() {
        let secret = Secret::parse("client_secret", "abc").unwrap();
        // sha1("abc" ‖ "{}") = sha1("abc{}")
        let expected = hex::encode(Sha1::digest(b"abc{}"));
        assert_eq!(sign(&secret, b"{}"), expected);
        assert!(verify(&secret, b"{}", Some(&expected)));
        assert!(verify(&secret, b"{}", Some(&expected.to_uppercase())));
        assert!(!verify(&secret, b"{ }", Some(&expected)));
        assert!(!verify(&secret, b"{}", None));
        assert!(!verify(&secret, b"{}", Some("")));
        assert!(!verify(&secret, b"{}", Some(&expected[..39])));
    }
}
