//! API keys. A key is shown once, at creation; only its SHA-256 is stored. Keys are 190 bits of
//! randomness, so a fast hash is enough (argon2 is for guessable passwords, and would cost a
//! few milliseconds on every ingest request).

use rand::Rng;
use sha2::{Digest, Sha256};
use siyu_store::KeyRole;

/// What the secrets of nodes start with (see `crate::operator_key`); no API key does.
pub const OPERATOR_PREFIX: &str = "sy_n_";

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A new random key; the prefix says its role (`sy_w_` write, `sy_a_` admin) so a leaked key
/// is recognizable in a log or a repository scan.
pub fn generate(role: KeyRole) -> String {
    let prefix = match role {
        KeyRole::Write => "sy_w_",
        KeyRole::Admin => "sy_a_",
    };
    let mut rng = rand::rng();
    let body: String = (0..32)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{prefix}{body}")
}

/// The stored form of a key.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_prefixed_and_hash_stably() {
        let a = generate(KeyRole::Write);
        let b = generate(KeyRole::Write);
        assert_ne!(a, b);
        assert!(a.starts_with("sy_w_") && a.len() == 37);
        assert!(generate(KeyRole::Admin).starts_with("sy_a_"));
        assert_eq!(hash_key("k"), hash_key("k"));
        assert_eq!(hash_key("k").len(), 64);
    }
}
