//! `siyu channel set|list|kill|resume`: the channels journeys send through, over
//! `siyu_app::channels`. The flags become the JSON body `PUT /api/channels/{kind}` takes, so
//! the settings are checked by the one parser whether they are stored here or by a server;
//! credentials are sealed at rest (`crate::safeguards`) and no view holds them, so nothing
//! this prints can show one.
//!
//! Beside a running SQLite server, the commands that write go through it (`crate::forward`):
//! `PUT /api/channels/{kind}`, `POST /api/channels/{kind}/kill|resume`; its outbox worker sees
//! the change at once. `channel list` reads the store directly.

use serde_json::{Map, Value, json};
use siyu_app::channels::{self, ChannelKind};

use crate::cli::{ChannelArgs, ChannelCommand, ChannelLimits, ChannelSet};
use crate::forward::{self, Remote};
use crate::output::{self, headers, table};

pub fn run(args: ChannelArgs) -> anyhow::Result<()> {
    let _lock = match args.command {
        ChannelCommand::List => None,
        _ => match args.at.store.lock_for("channel") {
            Ok(lock) => lock,
            // A server holds the data directory: it stores the settings (sealed as here) and
            // its outbox worker sees them at once.
            Err(e) => {
                let remote =
                    Remote::beside(e, &args.at.store.location()?, args.at.tenant.as_deref())?;
                return through(&remote, args.command, args.json);
            }
        },
    };
    let (app, tenant) = args.at.open_guarded()?;
    let store = &**app.store();
    let guard = app.safeguards();
    let now = app.ingestor.clock().now();
    match args.command {
        ChannelCommand::Set { channel } => {
            let (kind, body) = body_of(channel);
            let view = channels::set_channel(store, guard, tenant.id, kind, &body, now)
                .map_err(|e| with_flag(e.field().map(str::to_string), e.into()))?;
            app.journeys_changed();
            print_view(args.json, &view, "set up")?;
        }
        ChannelCommand::List => {
            let views = channels::channel_views(store, guard, tenant.id)?;
            if args.json {
                output::json(&views)?;
            } else {
                print_list(&views);
            }
        }
        ChannelCommand::Kill { kind } => {
            let view = channels::set_killed(
                store,
                guard,
                tenant.id,
                ChannelKind::parse(&kind)?,
                true,
                now,
            )?;
            app.journeys_changed();
            print_view(args.json, &view, "killed")?;
        }
        ChannelCommand::Resume { kind } => {
            let view = channels::set_killed(
                store,
                guard,
                tenant.id,
                ChannelKind::parse(&kind)?,
                false,
                now,
            )?;
            app.journeys_changed();
            print_view(args.json, &view, "resumed")?;
        }
    }
    Ok(())
}

/// The channel and the `PUT` body its flags make: only the flags given, so the others keep
/// their stored value.
fn body_of(set: ChannelSet) -> (ChannelKind, Value) {
    let mut body = Map::new();
    let mut put = |field: &str, v: Option<Value>| {
        if let Some(v) = v {
            body.insert(field.to_string(), v);
        }
    };
    let (kind, limits) = match set {
        ChannelSet::Webhook {
            url,
            secret,
            limits,
        } => {
            put("url", url.map(Value::String));
            put("secret", secret.map(|s| Value::String(s.0)));
            (ChannelKind::Webhook, limits)
        }
        ChannelSet::DouyinIm {
            access_token,
            open_id,
            base,
            limits,
        } => {
            put("access_token", access_token.map(|s| Value::String(s.0)));
            put("open_id", open_id.map(Value::String));
            put("base", base.map(Value::String));
            (ChannelKind::DouyinIm, limits)
        }
        ChannelSet::WecomRobot { url, limits } => {
            put("url", url.map(|s| Value::String(s.0)));
            (ChannelKind::WecomRobot, limits)
        }
    };
    let ChannelLimits {
        concurrency,
        timeout_ms,
    } = limits;
    put("concurrency", concurrency.map(|n| json!(n)));
    put("timeout_ms", timeout_ms.map(|n| json!(n)));
    (kind, Value::Object(body))
}

/// A refused setting, with the flag that sets the field it names in front.
fn with_flag(field: Option<String>, e: anyhow::Error) -> anyhow::Error {
    match field.as_deref() {
        Some(
            f @ ("url" | "secret" | "access_token" | "open_id" | "base" | "concurrency"
            | "timeout_ms"),
        ) => e.context(format!("--{}", f.replace('_', "-"))),
        _ => e,
    }
}

/// The `channel` commands that write, through the server that holds the data directory.
fn through(remote: &Remote, command: ChannelCommand, json: bool) -> anyhow::Result<()> {
    match command {
        ChannelCommand::Set { channel } => {
            let (kind, body) = body_of(channel);
            let path = format!("/api/channels/{}", forward::path_segment(kind.as_str()));
            let view = remote.send("PUT", &path, Some(&body)).map_err(|e| {
                let field = e
                    .downcast_ref::<forward::RemoteError>()
                    .and_then(|r| r.field().map(str::to_string));
                with_flag(field, e)
            })?;
            print_view(json, &view, "set up")
        }
        ChannelCommand::Kill { kind } => {
            let path = format!("/api/channels/{}/kill", forward::path_segment(&kind));
            print_view(json, &remote.send("POST", &path, None)?, "killed")
        }
        ChannelCommand::Resume { kind } => {
            let path = format!("/api/channels/{}/resume", forward::path_segment(&kind));
            print_view(json, &remote.send("POST", &path, None)?, "resumed")
        }
        ChannelCommand::List => {
            anyhow::bail!("channel list does not write: it is not sent to the server")
        }
    }
}

/// Where a channel sends, from its view (never a credential: views hold none).
fn target(v: &Value) -> String {
    let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
    match v["channel"].as_str() {
        Some("webhook") => s("url"),
        Some("douyin_im") => format!("{} as {}", s("base"), s("open_id")),
        Some("wecom_robot") => s("host"),
        _ => String::new(),
    }
}

fn print_view(json: bool, view: &Value, what: &str) -> anyhow::Result<()> {
    if json {
        return output::json(view);
    }
    let channel = view["channel"].as_str().unwrap_or("?");
    let state = if view["killed"].as_bool().unwrap_or(false) {
        format!("nothing is sent through it until `siyu channel resume {channel}`")
    } else {
        "sending".to_string()
    };
    outln!(
        "channel {channel} {what}: {state}; concurrency {}, timeout {} ms, to {}",
        view["concurrency"],
        view["timeout_ms"],
        target(view)
    );
    Ok(())
}

fn print_list(views: &Value) {
    let mut rows: Vec<Vec<String>> = headers(&[
        "channel",
        "configured",
        "killed",
        "concurrency",
        "timeout_ms",
        "target",
    ])
    .into();
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
    for v in views["channels"].as_array().into_iter().flatten() {
        let configured = v["configured"].as_bool().unwrap_or(false);
        let number = |k: &str| v[k].as_u64().map_or("-".into(), |n| n.to_string());
        rows.push(vec![
            v["channel"].as_str().unwrap_or("?").to_string(),
            yes_no(configured),
            yes_no(v["killed"].as_bool().unwrap_or(false)),
            number("concurrency"),
            number("timeout_ms"),
            if configured { target(v) } else { "-".into() },
        ]);
    }
    table(&rows, "lllrrl");
}
