//! One-shot commands beside a running server on SQLite: the server holds the data directory
//! (`siyu_store::lock`), so a command that writes must not open it — it talks to the server
//! instead, which the lock file names (its address, and a secret valid for as long as that
//! server runs; the file is 0600, readable only by whoever can already read the database).
//!
//! Every command that writes goes through it, calling the API route that does the same:
//! `siyu import` sends its parsed events to `POST /api/events` in the same batches it would
//! commit itself, so a file imported beside a server is stored, acknowledged and derived
//! exactly as if a client had sent it; `tenant create` asks for `POST /api/tenants` (the
//! server's operator only, [`Remote::operator`]); with the tenant's admin key
//! ([`Remote::beside`]), `tenant rotate` for `POST /api/tenant/keys/rotate`, `tenant set` for
//! `PATCH /api/tenant`, `tenant rules` for `PUT /api/rules`, `segment save|delete` for
//! `POST /api/segments` and `DELETE /api/segments/{id}`, `tag add|remove|auto` for
//! `POST /api/tags` and `POST /api/tags/auto`, `identity confirm|distinct|undo` for
//! `POST /api/identity/confirm|distinct` and `POST /api/fans/{id}/unmerge`, and `connector`
//! settings for `PUT /api/connectors/douyin|oceanengine`. Each command prints what it prints
//! when it writes itself, from the server's answer; an error answer is a [`RemoteError`] with
//! the server's code, which `output::fail` shows as `error[CODE]`.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use siyu_app::BatchOutcome;
use siyu_domain::Event;
use siyu_store::{Holder, Location, LockError};

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
        self.send("POST", "/api/tenants", Some(&json!({ "name": name })))
    }

    /// Rotates one of the tenant's keys through the server (`POST /api/tenant/keys/rotate`).
    pub fn rotate_key(&self, key: &str, grace_seconds: u64) -> anyhow::Result<Value> {
        let body = json!({ "key": key, "grace_seconds": grace_seconds });
        self.send("POST", "/api/tenant/keys/rotate", Some(&body))
    }

    /// The server a refused lock names, as the admin of `tenant` (default: the only one), for
    /// a command that writes to go through; the refusal itself when no server said how to
    /// reach it. The tenant is looked up in the store first (read beside the server, as
    /// reading commands do), so a missing or ambiguous one is the same error as without a
    /// server rather than the server's `unauthorized`.
    pub fn beside(
        refusal: anyhow::Error,
        location: &Location,
        tenant: Option<&str>,
    ) -> anyhow::Result<Remote> {
        let serving = refusal
            .downcast_ref::<LockError>()
            .is_some_and(|l| Remote::from_refusal(l, None).is_some());
        if !serving {
            return Err(refusal);
        }
        let store = siyu_store::open(location, siyu_store::Durability::Full)?;
        let tenant = siyu_app::App::resolve_tenant(&*store, tenant)?;
        let remote = refusal
            .downcast_ref::<LockError>()
            .and_then(|l| Remote::from_refusal(l, Some(&tenant.name)));
        remote.ok_or(refusal)
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
        let v = self.send("GET", "/api/tenant", None)?;
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
        let v = self.send("POST", "/api/events", Some(&body))?;
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

    /// Sends one request to the server's API as this client and hands back its JSON answer;
    /// an error answer becomes a [`RemoteError`] with the server's code and message. `body`
    /// is sent as JSON.
    pub fn send(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let body = body.map(serde_json::to_vec).transpose()?;
        self.request(
            method,
            path,
            body.as_deref().map(|b| ("application/json", b)),
        )
    }

    /// [`Remote::send`] with a body of another type, such as a rules file (`text/plain`).
    pub fn send_raw(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> anyhow::Result<Value> {
        self.request(method, path, Some((content_type, body)))
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, &[u8])>,
    ) -> anyhow::Result<Value> {
        let method: ureq::http::Method = method
            .parse()
            .with_context(|| format!("{method:?} is not an HTTP method"))?;
        let url = format!("{}{path}", self.base);
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("Authorization", format!("Bearer {}", self.key));
        if let Some((content_type, _)) = body {
            request = request.header("Content-Type", content_type);
        }
        let request = request.body(body.map_or(&[][..], |(_, b)| b).to_vec())?;
        let mut resp = self
            .agent
            .run(request)
            .with_context(|| format!("cannot reach the server at {}", self.base))?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !(200..300).contains(&status) {
            return Err(RemoteError::from_answer(&self.base, status, &v, &text).into());
        }
        Ok(v)
    }
}

/// An error answer from the server a command went through: its stable code (shown as
/// `error[CODE]`, as if the command had failed here), the field it names, and its message.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct RemoteError {
    code: String,
    field: Option<String>,
    message: String,
}

impl RemoteError {
    fn from_answer(base: &str, status: u16, v: &Value, text: &str) -> RemoteError {
        let error = &v["error"];
        let message = match error["message"].as_str() {
            Some(m) => m.to_string(),
            None => format!("the server at {base} answered {status}: {}", text.trim()),
        };
        RemoteError {
            code: error["code"].as_str().unwrap_or("internal").to_string(),
            field: error["field"].as_str().map(str::to_string),
            message,
        }
    }

    /// The server's code, such as `segment_exists` or `invalid_rules`.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The field or place the server names, such as `line 3` for a rules file.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }
}

/// `s` as one segment of a URL path: every byte but letters, digits and `-._~`
/// percent-encoded (a segment's name may hold spaces, `/` or Chinese).
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_name_is_one_path_segment() {
        assert_eq!(path_segment("vip-2026_a.b~"), "vip-2026_a.b~");
        assert_eq!(path_segment("a b/c?"), "a%20b%2Fc%3F");
        assert_eq!(path_segment("真爱"), "%E7%9C%9F%E7%88%B1");
    }

    #[test]
    fn an_error_answer_keeps_the_servers_code_field_and_message() {
        let v = json!({"error": {"code": "invalid_rules", "field": "line 3", "message": "rules line 3: x"}});
        let e = RemoteError::from_answer("http://127.0.0.1:1", 400, &v, "");
        assert_eq!((e.code(), e.field()), ("invalid_rules", Some("line 3")));
        assert_eq!(e.to_string(), "rules line 3: x");
        // An answer that is not the API's error shape still says who answered what.
        let e = RemoteError::from_answer("http://127.0.0.1:1", 502, &Value::Null, "bad gateway\n");
        assert_eq!(e.code(), "internal");
        assert_eq!(
            e.to_string(),
            "the server at http://127.0.0.1:1 answered 502: bad gateway"
        );
    }
}
