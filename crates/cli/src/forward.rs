//! One-shot commands beside a running server on SQLite: the server holds the data directory
//! (`siyu_store::lock`), so a command that writes must not open it — it talks to the server
//! instead, which the lock file names (its address, and a secret valid for as long as that
//! server runs; the file is 0600, readable only by whoever can already read the database).
//! `siyu import` sends its parsed events to `POST /api/events` in the same batches it would
//! commit itself, so a file imported beside a server is stored, acknowledged and derived
//! exactly as if a client had sent it; `siyu tenant create` asks it to create the tenant
//! (`POST /api/tenants`, the server's operator only) and `siyu tenant rotate` to rotate a key.
//! Other commands that write are refused with the holder's pid and address (see
//! `StoreArgs::lock_for`).

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use siyu_app::BatchOutcome;
use siyu_domain::Event;
use siyu_store::{Holder, LockError};

/// The server that holds the data directory, as a client of its API for one tenant.
pub struct Remote {
    base: String,
    key: String,
    agent: ureq::Agent,
}

impl Remote {
    /// The server named by a refused lock, as its operator (for `siyu tenant create`).
    pub fn operator(e: &anyhow::Error) -> Option<Remote> {
        let refusal = e.downcast_ref::<LockError>()?;
        let mut remote = Remote::from_refusal(refusal, None)?;
        remote.key = remote
            .key
            .split_once('.')
            .map_or(remote.key.clone(), |(secret, _)| secret.to_string());
        Some(remote)
    }

    /// Creates a tenant through the server; its keys, as `siyu tenant create` prints them.
    pub fn create_tenant(&self, name: &str) -> anyhow::Result<Value> {
        self.call("POST", "/api/tenants", Some(&json!({ "name": name })))
    }

    /// Rotates one of the tenant's keys through the server (`POST /api/tenant/keys/rotate`).
    pub fn rotate_key(&self, key: &str, grace_seconds: u64) -> anyhow::Result<Value> {
        let body = json!({ "key": key, "grace_seconds": grace_seconds });
        self.call("POST", "/api/tenant/keys/rotate", Some(&body))
    }

    /// The server named by a refused lock, if it is serving and said how to reach it.
    pub fn from_refusal(e: &LockError, tenant: Option<&str>) -> Option<Remote> {
        let LockError::Held {
            holder:
                Some(Holder {
                    addr: Some(addr),
                    secret: Some(secret),
                    ..
                }),
            ..
        } = e
        else {
            return None;
        };
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(300)))
            .http_status_as_error(false)
            .build();
        Some(Remote {
            base: format!("http://{addr}"),
            key: siyu_app::operator_key(secret, tenant.unwrap_or("")),
            agent: ureq::Agent::new_with_config(config),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The tenant the server picks for the key (the only one, when none was named).
    pub fn tenant(&self) -> anyhow::Result<String> {
        let v = self.call("GET", "/api/tenant", None)?;
        v["tenant"]
            .as_str()
            .map(str::to_string)
            .context("the server's answer names no tenant")
    }

    /// Sends one batch and adds the server's verdicts to `outcome`. The events were parsed
    /// here by the same code the server runs, so a refusal there is a bug to report, not a
    /// line to skip.
    pub fn append(&self, events: &[Event], outcome: &mut BatchOutcome) -> anyhow::Result<()> {
        let body = Value::Array(events.iter().map(native).collect());
        let v = self.call("POST", "/api/events", Some(&body))?;
        if let Some(r) = v["rejected"].as_array().filter(|r| !r.is_empty()) {
            bail!(
                "the server refused events this import accepted: {}",
                Value::Array(r.clone())
            );
        }
        outcome.accepted += v["accepted"].as_u64().unwrap_or(0);
        outcome.duplicates += v["duplicates"].as_u64().unwrap_or(0);
        Ok(())
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {}", self.key);
        let sent = match (method, body) {
            ("POST", Some(b)) => self
                .agent
                .post(&url)
                .header("Authorization", &auth)
                .header("Content-Type", "application/json")
                .send(&serde_json::to_vec(b)?[..]),
            _ => self.agent.get(&url).header("Authorization", &auth).call(),
        };
        let mut resp = sent.with_context(|| format!("cannot reach the server at {}", self.base))?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !(200..300).contains(&status) {
            bail!(
                "the server at {} answered {status}: {}",
                self.base,
                v["error"]["message"].as_str().unwrap_or(&text)
            );
        }
        Ok(v)
    }
}

/// An event in the native format it was parsed from (docs/events.md).
fn native(e: &Event) -> Value {
    let mut v = json!({
        "id": e.id.as_str(),
        "type": e.ty.name(),
        "domain": e.domain().as_str(),
        "ts": siyu_domain::time::format_rfc3339(e.ts),
        "identities": serde_json::from_str::<Value>(&e.identities.to_json()).unwrap_or(Value::Null),
    });
    if !e.props.is_empty() {
        v["props"] = serde_json::to_value(&e.props).unwrap_or(Value::Null);
    }
    if let Some(s) = &e.source {
        v["source"] = Value::String(s.clone());
    }
    v
}
