//! `siyu connector douyin|oceanengine`: a tenant's connector settings. Prints what is set as
//! JSON, never the credentials themselves. Beside a running SQLite server, a change goes
//! through it (`crate::forward`) and prints the view it answers with.

use serde_json::{Value, json};
use siyu_app::connectors::{self, OceanEngineChange};
use siyu_domain::time;

use crate::cli::{ConnectorArgs, ConnectorCommand, parse_time};
use crate::forward::Remote;

pub fn run(args: ConnectorArgs) -> anyhow::Result<()> {
    let writes = args.command.changes();
    let _lock = match writes {
        true => match args.at.store.lock_for("connector") {
            Ok(lock) => lock,
            // A server holds the data directory: it stores the settings (sealed as here) and
            // its pollers see them at once.
            Err(e) => {
                let remote =
                    Remote::beside(e, &args.at.store.location()?, args.at.tenant.as_deref())?;
                let view = through(&remote, args.command)?;
                outln!("{}", serde_json::to_string_pretty(&view)?);
                return Ok(());
            }
        },
        false => None,
    };
    let location = args.at.store.location()?;
    let store = siyu_store::open(&location, siyu_store::Durability::Full)?;
    let tenant = siyu_app::App::resolve_tenant(&*store, args.at.tenant.as_deref())?;
    let guard = crate::safeguards::load(&location)?;
    let view = match args.command {
        ConnectorCommand::Douyin { client_secret } => {
            let settings = match client_secret {
                Some(secret) => Some(connectors::set_douyin(
                    &*store,
                    &guard,
                    tenant.id,
                    &secret.0,
                    time::now_ms(),
                )??),
                None => connectors::douyin(&*store, &guard, tenant.id)?,
            };
            connectors::douyin_view(&tenant.name, settings.as_ref())
        }
        ConnectorCommand::Oceanengine {
            advertiser_id,
            access_token,
            base_url,
            start,
            page_size,
        } => {
            let change = OceanEngineChange {
                advertiser_id,
                access_token: access_token.map(|t| t.0),
                base_url,
                start: start.map(|s| parse_time("--start", &s)).transpose()?,
                page_size,
            };
            if writes {
                connectors::set_oceanengine(&*store, &guard, tenant.id, change, time::now_ms())??;
            }
            match connectors::oceanengine(&*store, &guard, tenant.id)? {
                Some((s, position)) => {
                    connectors::oceanengine_view(&tenant.name, Some(&s), position.as_ref())
                }
                None => connectors::oceanengine_view(&tenant.name, None, None),
            }
        }
    };
    outln!("{}", serde_json::to_string_pretty(&view)?);
    Ok(())
}

/// A change of settings through the server that holds the data directory
/// (`PUT /api/connectors/douyin|oceanengine`): its view of the connector, which never holds
/// the credentials. They travel only in the request body, to the server named by the lock.
fn through(remote: &Remote, command: ConnectorCommand) -> anyhow::Result<Value> {
    match command {
        ConnectorCommand::Douyin { client_secret } => {
            let mut body = json!({});
            if let Some(secret) = client_secret {
                body["client_secret"] = json!(secret.0);
            }
            remote.send("PUT", "/api/connectors/douyin", Some(&body))
        }
        ConnectorCommand::Oceanengine {
            advertiser_id,
            access_token,
            base_url,
            start,
            page_size,
        } => {
            let start = start.map(|s| parse_time("--start", &s)).transpose()?;
            let body = json!({
                "advertiser_id": advertiser_id,
                "access_token": access_token.map(|t| t.0),
                "base_url": base_url,
                "start": start.map(time::format_rfc3339),
                "page_size": page_size,
            });
            remote.send("PUT", "/api/connectors/oceanengine", Some(&body))
        }
    }
}
