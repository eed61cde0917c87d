//! Connector credentials at rest: the Douyin client secret and the Ocean Engine access token are
//! sealed before they reach the store, so a copy of the database (a backup, a stolen disk, a
//! replica) does not hand them out.
//!
//! Sealing is XChaCha20-Poly1305 with a random 24-byte nonce per value, and the tenant, the
//! connector and the field as associated data: a sealed value copied into another tenant's or
//! another field's place does not open. A sealed value is stored as
//! `sealed:v1:<key id>:<hex of nonce ‖ ciphertext ‖ tag>`, where the key id (8 hex characters
//! of a SHA-256 of the key) says which key sealed it, so a wrong key is named, not guessed at.
//!
//! The key is 32 bytes, written as 64 hex characters: in `SIYU_SECRET_KEY`, or in a key file
//! (`SIYU_SECRET_KEY_FILE`; by default `<data dir>/secret.key` for SQLite and
//! `$HOME/.config/siyu/secret.key` for PostgreSQL), which is created with a new random key and
//! mode 0600 on first use. For a rotation, the old key is given beside the new one
//! (`SIYU_SECRET_KEY_OLD` or `SIYU_SECRET_KEY_OLD_FILE`): values sealed with it are still
//! opened, and re-sealed with the new key when `siyu serve` starts and on every write. Values
//! that earlier versions stored in plain text are read as they are and sealed the same way.
//!
//! The binary reads the environment once into a [`KeySource`]; nothing here reads it. No
//! error, and no `Debug`, ever shows a key or an opened value.

use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use siyu_store::{Location, TenantId};

/// The environment variables the binary reads into a [`KeySource`].
pub const KEY_ENV: &str = "SIYU_SECRET_KEY";
pub const KEY_FILE_ENV: &str = "SIYU_SECRET_KEY_FILE";
pub const OLD_KEY_ENV: &str = "SIYU_SECRET_KEY_OLD";
pub const OLD_KEY_FILE_ENV: &str = "SIYU_SECRET_KEY_OLD_FILE";

const PREFIX: &str = "sealed:v1:";
const NONCE_LEN: usize = 24;

/// A key as given in the environment: 64 hex characters. `Debug` never shows it.
#[derive(Clone)]
pub struct KeyText(pub String);

impl std::fmt::Debug for KeyText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyText(<redacted>)")
    }
}

/// Where the keys come from, as the binary read the environment.
#[derive(Debug, Clone)]
pub struct KeySource {
    /// `SIYU_SECRET_KEY`; when set, the key file is not used.
    pub key: Option<KeyText>,
    /// The key file: read, or created with a new key (mode 0600) when missing.
    pub file: PathBuf,
    /// `SIYU_SECRET_KEY_OLD`: a key being rotated out.
    pub old_key: Option<KeyText>,
    /// `SIYU_SECRET_KEY_OLD_FILE`: the same, in a file (which must exist).
    pub old_file: Option<PathBuf>,
}

/// The key file used when `SIYU_SECRET_KEY_FILE` is not set: beside the database for SQLite,
/// in the user's configuration directory for PostgreSQL (whose database lives elsewhere).
/// `None` for PostgreSQL without a home directory.
pub fn default_key_file(location: &Location, home: Option<&Path>) -> Option<PathBuf> {
    match location {
        Location::Sqlite(dir) => Some(dir.join("secret.key")),
        Location::Postgres(_) => home.map(|h| h.join(".config").join("siyu").join("secret.key")),
    }
}

/// Why credentials could not be sealed or opened. Names the connector and the field, never the
/// value or a key.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot use the secret key file {path}: {source}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
    #[error("{what} must be 64 hex characters (a 32-byte key), e.g. from `openssl rand -hex 32`")]
    BadKey { what: String },
    #[error(
        "no secret key is set up to seal or open connector credentials (set SIYU_SECRET_KEY or SIYU_SECRET_KEY_FILE)"
    )]
    NoKey,
    #[error(
        "the {field} of tenant {tenant}'s {connector} connector was sealed with secret key {sealed_with}, \
         but the key in use is {current}: give that key as SIYU_SECRET_KEY (or SIYU_SECRET_KEY_OLD \
         while rotating), or set the credential again (docs/connectors.md)"
    )]
    WrongKey {
        connector: String,
        tenant: TenantId,
        field: String,
        sealed_with: String,
        current: String,
    },
    #[error(
        "the {field} of tenant {tenant}'s {connector} connector does not open with secret key {key}: \
         the stored value is damaged or was copied from elsewhere; set the credential again"
    )]
    Damaged {
        connector: String,
        tenant: TenantId,
        field: String,
        key: String,
    },
}

impl SecretError {
    /// The stable code at the edge.
    pub fn code(&self) -> &'static str {
        match self {
            SecretError::KeyFile { .. } | SecretError::BadKey { .. } | SecretError::NoKey => {
                "secret_key_unavailable"
            }
            SecretError::WrongKey { .. } | SecretError::Damaged { .. } => "secret_key_mismatch",
        }
    }
}

/// One key and its id.
struct Key {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl Key {
    fn new(bytes: &[u8; 32]) -> Key {
        let mut h = Sha256::new();
        h.update(b"siyu secret key id\0");
        h.update(bytes);
        Key {
            id: hex::encode(&h.finalize()[..4]),
            cipher: XChaCha20Poly1305::new(bytes.into()),
        }
    }
}

/// Which credential a value is: the associated data it is sealed with.
#[derive(Debug, Clone, Copy)]
pub struct Slot<'a> {
    pub tenant: TenantId,
    pub connector: &'a str,
    pub field: &'a str,
}

impl Slot<'_> {
    fn aad(&self) -> String {
        format!("siyu:{}:{}:{}", self.tenant, self.connector, self.field)
    }
}

/// An opened value, and whether it should be sealed again (it was plain text, or sealed with
/// the old key).
#[derive(Clone, PartialEq, Eq)]
pub struct Opened {
    pub value: String,
    pub stale: bool,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("value", &"<redacted>")
            .field("stale", &self.stale)
            .finish()
    }
}

/// Seals and opens credentials with the current key; opens with the old one during a rotation.
pub struct Sealer {
    current: Key,
    old: Option<Key>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("key_id", &self.current.id)
            .field("old_key_id", &self.old.as_ref().map(|k| &k.id))
            .finish()
    }
}

impl Sealer {
    /// A sealer with the given keys (tests, and [`Sealer::load`]).
    pub fn from_keys(current: &[u8; 32], old: Option<&[u8; 32]>) -> Sealer {
        Sealer {
            current: Key::new(current),
            old: old.map(Key::new),
        }
    }

    /// Loads the keys: the current one from `SIYU_SECRET_KEY`, or from the key file (created
    /// with a new random key, mode 0600, when missing); the old one if given.
    pub fn load(source: &KeySource) -> Result<Sealer, SecretError> {
        let current = match &source.key {
            Some(k) => parse_key(KEY_ENV, &k.0)?,
            None => read_or_create(&source.file)?,
        };
        let old = match (&source.old_key, &source.old_file) {
            (Some(k), _) => Some(parse_key(OLD_KEY_ENV, &k.0)?),
            (None, Some(path)) => Some(read_key_file(path)?),
            (None, None) => None,
        };
        Ok(Sealer::from_keys(&current, old.as_ref()))
    }

    /// The id of the key values are sealed with.
    pub fn key_id(&self) -> &str {
        &self.current.id
    }

    /// Seals `value` for `slot` with the current key.
    pub fn seal(&self, slot: Slot<'_>, value: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let aad = slot.aad();
        let sealed = self
            .current
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: value.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            // Encryption fails only for messages of gigabytes; a credential is 512 characters.
            .unwrap_or_default();
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        format!("{PREFIX}{}:{}", self.current.id, hex::encode(out))
    }

    /// Opens a stored value: a sealed one with the key that sealed it, a plain one (an earlier
    /// version's) as it is. Either of the last two is `stale`: it should be sealed again.
    pub fn open(&self, slot: Slot<'_>, stored: &str) -> Result<Opened, SecretError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(Opened {
                value: stored.to_string(),
                stale: true,
            });
        };
        let damaged = |key: &str| SecretError::Damaged {
            connector: slot.connector.to_string(),
            tenant: slot.tenant,
            field: slot.field.to_string(),
            key: key.to_string(),
        };
        let (id, body) = rest.split_once(':').ok_or_else(|| damaged("?"))?;
        let (key, stale) = if id == self.current.id {
            (&self.current, false)
        } else if let Some(old) = self.old.as_ref().filter(|k| k.id == id) {
            (old, true)
        } else {
            return Err(SecretError::WrongKey {
                connector: slot.connector.to_string(),
                tenant: slot.tenant,
                field: slot.field.to_string(),
                sealed_with: id.chars().take(16).collect(),
                current: match &self.old {
                    Some(o) => format!("{} (and the old key {})", self.current.id, o.id),
                    None => self.current.id.clone(),
                },
            });
        };
        let bytes = hex::decode(body).map_err(|_| damaged(&key.id))?;
        if bytes.len() < NONCE_LEN {
            return Err(damaged(&key.id));
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let aad = slot.aad();
        let plain = key
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| damaged(&key.id))?;
        let value = String::from_utf8(plain).map_err(|_| damaged(&key.id))?;
        Ok(Opened { value, stale })
    }
}

fn parse_key(what: &str, text: &str) -> Result<[u8; 32], SecretError> {
    let bad = || SecretError::BadKey {
        what: what.to_string(),
    };
    let bytes = hex::decode(text.trim()).map_err(|_| bad())?;
    bytes.try_into().map_err(|_| bad())
}

fn read_key_file(path: &Path) -> Result<[u8; 32], SecretError> {
    let text = std::fs::read_to_string(path).map_err(|source| SecretError::KeyFile {
        path: path.display().to_string(),
        source,
    })?;
    warn_if_shared(path);
    parse_key(&format!("the secret key file {}", path.display()), &text)
}

/// Reads the key file, or creates it with a new random key (0600, its directory 0700). Two
/// processes starting at once agree: the second finds the first one's file.
fn read_or_create(path: &Path) -> Result<[u8; 32], SecretError> {
    let io = |source| SecretError::KeyFile {
        path: path.display().to_string(),
        source,
    };
    if path.exists() {
        return read_key_file(path);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(dir).map_err(io)?;
    }
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut f) => {
            use std::io::Write;
            f.write_all(format!("{}\n", hex::encode(key)).as_bytes())
                .and_then(|_| f.sync_all())
                .map_err(io)?;
            tracing::info!(path = %path.display(), "created a new secret key file for connector credentials");
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_key_file(path),
        Err(e) => Err(io(e)),
    }
}

/// A key file others can read is used, with a warning (it is the operator's to fix).
fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(path)
            && m.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(path = %path.display(), mode = format!("{:o}", m.permissions().mode() & 0o777),
                "the secret key file is readable by others; chmod 600 it");
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLOT: Slot<'static> = Slot {
        tenant: 1,
        connector: "douyin",
        field: "client_secret",
    };

    #[test]
    fn sealed_values_open_only_with_their_key_and_slot() {
        let s = Sealer::from_keys(&[7; 32], None);
        let sealed = s.seal(SLOT, "very-secret");
        assert!(sealed.starts_with("sealed:v1:"), "{sealed}");
        assert!(!sealed.contains("very-secret"));
        assert_ne!(
            sealed,
            s.seal(SLOT, "very-secret"),
            "a fresh nonce each time"
        );
        let opened = s.open(SLOT, &sealed).unwrap();
        assert_eq!(
            (opened.value.as_str(), opened.stale),
            ("very-secret", false)
        );

        // Another tenant's slot does not open it, nor does a damaged value.
        let other = Slot { tenant: 2, ..SLOT };
        assert_eq!(
            s.open(other, &sealed).unwrap_err().code(),
            "secret_key_mismatch"
        );
        let mut damaged = sealed.clone();
        let last = damaged.pop().unwrap();
        damaged.push(if last == '0' { '1' } else { '0' });
        assert!(matches!(
            s.open(SLOT, &damaged),
            Err(SecretError::Damaged { .. })
        ));

        // A wrong key is named, with the connector, and never shows the value.
        let wrong = Sealer::from_keys(&[8; 32], None);
        let e = wrong.open(SLOT, &sealed).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, SecretError::WrongKey { .. }));
        assert!(
            text.contains("douyin") && text.contains(s.key_id()),
            "{text}"
        );
        assert!(!text.contains("very-secret"));
    }

    #[test]
    fn the_old_key_opens_during_a_rotation_and_plain_values_are_read() {
        let old = Sealer::from_keys(&[1; 32], None);
        let sealed = old.seal(SLOT, "tok");
        let rotating = Sealer::from_keys(&[2; 32], Some(&[1; 32]));
        let opened = rotating.open(SLOT, &sealed).unwrap();
        assert_eq!((opened.value.as_str(), opened.stale), ("tok", true));
        let plain = rotating.open(SLOT, "legacy-plain").unwrap();
        assert_eq!((plain.value.as_str(), plain.stale), ("legacy-plain", true));
        assert!(!format!("{rotating:?}").contains("tok"));
    }

    #[test]
    fn the_key_file_is_created_owner_only_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("conf").join("secret.key");
        let source = KeySource {
            key: None,
            file: file.clone(),
            old_key: None,
            old_file: None,
        };
        let first = Sealer::load(&source).unwrap();
        let again = Sealer::load(&source).unwrap();
        assert_eq!(first.key_id(), again.key_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert_eq!(std::fs::read_to_string(&file).unwrap().trim().len(), 64);

        // The variable wins over the file; a bad one is refused without showing it.
        let given = KeySource {
            key: Some(KeyText("ab".repeat(32))),
            ..source.clone()
        };
        assert_ne!(Sealer::load(&given).unwrap().key_id(), first.key_id());
        let bad = KeySource {
            key: Some(KeyText("not-a-key-zz".into())),
            ..source
        };
        let e = Sealer::load(&bad).unwrap_err().to_string();
        assert!(
            e.contains("SIYU_SECRET_KEY") && !e.contains("not-a-key-zz"),
            "{e}"
        );
    }

    #[test]
    fn default_key_files() {
        let sqlite = Location::Sqlite("/d".into());
        assert_eq!(
            default_key_file(&sqlite, None),
            Some(PathBuf::from("/d/secret.key"))
        );
        let pg = Location::Postgres("postgres://x".into());
        assert_eq!(
            default_key_file(&pg, Some(Path::new("/home/u"))),
            Some(PathBuf::from("/home/u/.config/siyu/secret.key"))
        );
        assert_eq!(default_key_file(&pg, None), None);
    }
}
