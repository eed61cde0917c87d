//! `siyu tenant create|rotate|rules|set|list`.

use anyhow::Context;
use serde_json::{Value, json};

use crate::cli::{TenantArgs, TenantCommand};
use crate::forward::Remote;
use crate::output;

/// Rotates a tenant's `write` or `admin` key in the store at `location` (the old one works
/// `grace_seconds` more). A server on the same store sees the change when its key cache
/// entry lapses (`siyu_app::KEY_CACHE_TTL`); through the server's own
/// `POST /api/tenant/keys/rotate`, at once.
pub fn rotate(
    location: &siyu_store::Location,
    name: &str,
    key: &str,
    grace_seconds: u64,
) -> anyhow::Result<siyu_app::RotatedKey> {
    let role = siyu_app::tenants::parse_role(key)?;
    let store = siyu_store::open(location, siyu_store::Durability::Full)?;
    let tenant = siyu_app::App::resolve_tenant(&*store, Some(name))?;
    Ok(siyu_app::tenants::rotate(
        &*store,
        tenant.id,
        &tenant.name,
        role,
        grace_seconds,
        siyu_domain::time::now_ms(),
    )?)
}

pub fn run(args: TenantArgs) -> anyhow::Result<()> {
    match args.command {
        TenantCommand::Create { name, store, .. } => {
            let name = siyu_app::TenantName::parse(&name)?;
            let keys = match store.lock_for("tenant create") {
                Ok(_lock) => {
                    let store = siyu_store::open(&store.location()?, siyu_store::Durability::Full)?;
                    serde_json::to_value(siyu_app::tenants::create(&*store, &name)?)?
                }
                // A server holds the data directory: it creates the tenant and serves it at once.
                Err(e) => match crate::forward::Remote::operator(&e) {
                    Some(remote) => remote.create_tenant(name.as_str())?,
                    None => return Err(e),
                },
            };
            // The keys are shown this once: failing to show them is an error, not a quiet exit.
            output::try_stdout(&format!("{}\n", serde_json::to_string(&keys)?)).with_context(
                || {
                    format!(
                        "tenant {} was created, but its keys could not be printed",
                        name.as_str()
                    )
                },
            )?;
        }
        TenantCommand::Rotate {
            name,
            key,
            grace_seconds,
            store,
        } => {
            let rotated = match store.lock_for("tenant rotate") {
                Ok(_lock) => rotate(&store.location()?, &name, &key, grace_seconds)?.to_json(),
                // A server holds the data directory: it rotates, and its key cache forgets the
                // old key at once.
                Err(e) => {
                    let remote = e
                        .downcast_ref::<siyu_store::LockError>()
                        .and_then(|l| crate::forward::Remote::from_refusal(l, Some(&name)));
                    match remote {
                        Some(r) => r.rotate_key(&key, grace_seconds)?,
                        None => return Err(e),
                    }
                }
            };
            // Shown this once, like a new tenant's keys.
            output::try_stdout(&format!("{rotated}\n")).with_context(|| {
                format!("the {key} key of tenant {name} was rotated, but the new key could not be printed")
            })?;
        }
        TenantCommand::Set {
            name,
            custom_domain,
            store,
        } => {
            let domain: siyu_domain::Domain = custom_domain.parse().map_err(|_| {
                anyhow::anyhow!(
                    "--custom-domain {custom_domain:?} is not one of public, commercial, private"
                )
            })?;
            let set = match store.lock_for("tenant set") {
                Ok(_lock) => {
                    let store = siyu_store::open(&store.location()?, siyu_store::Durability::Full)?;
                    let tenant = siyu_app::App::resolve_tenant(&*store, Some(&name))?;
                    store.set_custom_domain(tenant.id, domain)?;
                    json!({"tenant": tenant.name, "custom_domain": domain.as_str()})
                }
                // A server holds the data directory: it changes the setting, effective at once.
                Err(e) => Remote::beside(e, &store.location()?, Some(&name))?.send(
                    "PATCH",
                    "/api/tenant",
                    Some(&json!({ "custom_domain": domain.as_str() })),
                )?,
            };
            outln!(
                "tenant {}: custom events without a domain go to {}",
                text(&set["tenant"]),
                text(&set["custom_domain"])
            );
        }
        TenantCommand::Rules { name, file, store } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
            let rules = match store.lock_for("tenant rules") {
                Ok(_lock) => {
                    let store = siyu_store::open(&store.location()?, siyu_store::Durability::Full)?;
                    let tenant = siyu_app::App::resolve_tenant(&*store, Some(&name))?;
                    let rules = siyu_engine::Rules::from_toml(&text)
                        .map_err(siyu_app::LayerError::Rules)
                        .with_context(|| file.display().to_string())?;
                    let version = store.set_rules(tenant.id, &text)?;
                    serde_json::to_value(siyu_app::RulesInForce { version, rules })?
                }
                // A server holds the data directory: it checks the file the same way (a bad
                // one is `invalid_rules`, naming the line) and applies it at once.
                Err(e) => Remote::beside(e, &store.location()?, Some(&name))?
                    .send_raw("PUT", "/api/rules", "text/plain", text.as_bytes())
                    .with_context(|| file.display().to_string())?,
            };
            outln!(
                "tenant {name}: layer rules version {} in force (engagement window {} d, orders window {} d)",
                rules["version"],
                rules["engagement_window_days"],
                rules["orders_window_days"]
            );
        }
        TenantCommand::List { store, json } => {
            let store = siyu_store::open(&store.location()?, siyu_store::Durability::Full)?;
            let tenants = store.tenants()?;
            if json {
                let list: Vec<_> = tenants
                    .iter()
                    .map(|t| {
                        serde_json::json!({
                            "tenant": t.name,
                            "created_at": siyu_domain::time::format_rfc3339(t.created_at),
                            "custom_domain": t.custom_domain,
                            "events": store.event_count(t.id).unwrap_or(0),
                        })
                    })
                    .collect();
                outln!("{}", serde_json::json!({ "tenants": list }));
            } else {
                for t in tenants {
                    outln!(
                        "{}\tcreated {}\t{} events",
                        t.name,
                        siyu_domain::time::format_rfc3339(t.created_at),
                        crate::output::n(store.event_count(t.id)?)
                    );
                }
            }
        }
    }
    Ok(())
}

/// A string of a JSON answer, as printed.
fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("?")
}
