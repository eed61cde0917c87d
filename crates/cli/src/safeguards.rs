//! The connectors' safeguards, read from the environment once per command: the secret key that
//! seals connector credentials (`SIYU_SECRET_KEY`, `SIYU_SECRET_KEY_FILE`, and for a rotation
//! `SIYU_SECRET_KEY_OLD` / `SIYU_SECRET_KEY_OLD_FILE`) and whether outbound URLs may be private
//! (`SIYU_ALLOW_PRIVATE_TARGETS=1`). The libraries below never read the environment; they get
//! the values built here. See docs/connectors.md.

use std::path::PathBuf;

use anyhow::Context;
use siyu_app::Safeguards;
use siyu_app::secrets::{self, KeySource, KeyText, Sealer};
use siyu_app::targets::{ALLOW_PRIVATE_ENV, TargetPolicy};
use siyu_store::Location;

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The target policy `SIYU_ALLOW_PRIVATE_TARGETS` asks for.
pub fn target_policy() -> TargetPolicy {
    TargetPolicy::from_env_value(var(ALLOW_PRIVATE_ENV).as_deref())
}

/// The key source for a store: the variables, or the default key file of its location.
pub fn key_source(location: &Location) -> anyhow::Result<KeySource> {
    let home = var("HOME").map(PathBuf::from);
    let file = match var(secrets::KEY_FILE_ENV) {
        Some(f) => PathBuf::from(f),
        None => secrets::default_key_file(location, home.as_deref()).context(
            "no secret key for connector credentials: set SIYU_SECRET_KEY or SIYU_SECRET_KEY_FILE \
             (the default, $HOME/.config/siyu/secret.key, needs HOME)",
        )?,
    };
    Ok(KeySource {
        key: var(secrets::KEY_ENV).map(KeyText),
        file,
        old_key: var(secrets::OLD_KEY_ENV).map(KeyText),
        old_file: var(secrets::OLD_KEY_FILE_ENV).map(PathBuf::from),
    })
}

/// The sealer and the target policy of a command that reads or writes connector settings
/// (`siyu serve`, `siyu connector`). Creates the key file on first use.
pub fn load(location: &Location) -> anyhow::Result<Safeguards> {
    let sealer = Sealer::load(&key_source(location)?)?;
    Ok(Safeguards::new(sealer, target_policy()))
}
