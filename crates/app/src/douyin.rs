//! Douyin webhook deliveries: verify the signature, map, append once.
//!
//! Douyin signs each delivery with `X-Douyin-Signature` = lowercase hex SHA-1 of the app's
//! client secret followed by the raw body. The comparison is constant-time. A delivery is
//! acknowledged only after its event is committed; everything downstream of the log (engine,
//! later triggers) never holds up the answer beyond the group commit, well within Douyin's
//! 5-second limit. Douyin retries up to three times, possibly out of order: the event id is
//! derived from the signed body (its `log_id`, else its SHA-256; see `siyu_domain::douyin`),
//! so a retry, or a captured delivery replayed under a new `Msg-Id`, finds its event already
//! stored and stores nothing.
//!
//! Every failure before the signature is checked — no such tenant, no client secret set, a
//! missing or wrong signature — is one [`DeliveryError::Unauthorized`], answered alike, so the
//! webhook does not tell a stranger which tenant names exist. The reason is logged.

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
    sign_with(secret.expose(), body)
}

fn sign_with(secret: &str, body: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(secret.as_bytes());
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

/// Why a delivery could not be authenticated (for the log only: the answer is the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unauthorized {
    NoTenant,
    NotConfigured,
    BadSignature,
}

impl Unauthorized {
    /// The reason, for the log and the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Unauthorized::NoTenant => "tenant_not_found",
            Unauthorized::NotConfigured => "connector_not_configured",
            Unauthorized::BadSignature => "bad_signature",
        }
    }
}

/// Why a delivery was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// Not a delivery signed for a tenant of this server; which part failed is not said.
    #[error("the delivery is not signed by a Douyin app of this server")]
    Unauthorized(Unauthorized),
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
            DeliveryError::Unauthorized(_) => "unauthorized",
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
            .ok_or(DeliveryError::Unauthorized(Unauthorized::NoTenant))?;
        let settings = connectors::douyin(&*self.store, &self.safeguards, tenant.id)?
            .ok_or(DeliveryError::Unauthorized(Unauthorized::NotConfigured))?;
        Ok((tenant, settings.client_secret))
    }

    /// Handles one delivery for the tenant `tenant_name`: verifies `signature` over the raw
    /// `body`, answers a challenge, or maps and commits the event. `msg_id` is the `Msg-Id`
    /// header, kept on the event for reference; the event id comes from the body.
    pub async fn douyin_delivery(
        self: &std::sync::Arc<Self>,
        tenant_name: &str,
        signature: Option<&str>,
        msg_id: Option<&str>,
        body: &[u8],
    ) -> Result<Answer, DeliveryError> {
        let app = self.clone();
        let name = tenant_name.to_string();
        let found = tokio::task::spawn_blocking(move || app.douyin_tenant(&name))
            .await
            .map_err(|e| DeliveryError::Internal(e.to_string()))?;
        let authenticated = match found {
            Ok((tenant, secret)) if verify(&secret, body, signature) => Ok(tenant),
            Ok(_) => Err(Unauthorized::BadSignature),
            Err(DeliveryError::Unauthorized(why)) => {
                // The same work as a wrong signature, so the time taken does not tell either.
                std::hint::black_box(sign_with("", body));
                Err(why)
            }
            Err(e) => return Err(e),
        };
        let tenant = match authenticated {
            Ok(t) => t,
            Err(why) => {
                tracing::info!(
                    tenant = tenant_name,
                    reason = why.as_str(),
                    "Douyin delivery refused"
                );
                metrics::counter!("siyu_douyin_deliveries_total", "outcome" => "unauthorized")
                    .increment(1);
                return Err(DeliveryError::Unauthorized(why));
            }
        };
        let cx = douyin::Context {
            custom_domain: tenant.custom_domain.parse().unwrap_or(Domain::Private),
            bounds: self.time_bounds(time::now_ms()),
        };
        let event = match douyin::parse(body, msg_id, &cx).map_err(DeliveryError::Invalid)? {
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

    #[test]
    fn every_unauthenticated_refusal_reads_the_same() {
        let answers: Vec<(&str, String)> = [
            Unauthorized::NoTenant,
            Unauthorized::NotConfigured,
            Unauthorized::BadSignature,
        ]
        .into_iter()
        .map(|why| {
            let e = DeliveryError::Unauthorized(why);
            (e.code(), e.to_string())
        })
        .collect();
        assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
        assert_eq!(answers[0].0, "unauthorized");
    }
}
