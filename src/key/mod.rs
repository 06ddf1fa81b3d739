//! Keys: families, parsing, generation, the plaintext secret and its digest.
//!
//! A key is `prefix + secret`, e.g. `forg_live_` + 32 lower-case hex. Parsing checks the
//! shape without hashing; only a parsed key is worth a SHA-256. Stores keep the
//! [`KeyDigest`], never the key.
//!
//! ```
//! use tower_api_key::key::{KeyFamilies, KeyFamily, KeyHasher};
//!
//! // Issue: the plaintext is shown once, the digest is stored.
//! let key = KeyFamily::FORG_LIVE.generate().unwrap();
//! let hasher = KeyHasher::sha256();
//! let stored = hasher.digest(key.expose_secret());
//!
//! // Verify: parse, hash, compare in constant time.
//! let families = KeyFamilies::builtin();
//! let parsed = families.parse(key.expose_secret()).unwrap();
//! assert_eq!(hasher.digest(parsed.expose_secret()), stored);
//!
//! // Secrets never print.
//! assert!(!format!("{key:?} {key}").contains(key.expose_secret()));
//! ```
//!
//! # Security properties
//! - Generated keys come from the operating system's CSPRNG (`getrandom`): 128 bits for
//!   `forg_` keys, 256 bits for `fos_` keys, at least 128 bits for any custom family.
//! - [`PlaintextKey`] is not `Clone`, prints redacted and is zeroized on drop.
//! - [`KeyDigest`] equality is constant-time ([`subtle`]).
//! - The digest is SHA-256 of the whole key; with a pepper ([`KeyHasher::peppered`]) it
//!   is HMAC-SHA-256, so a stolen table of digests cannot even be checked against guessed
//!   keys without the server's secret.

mod alphabet;
mod digest;
mod family;

use std::fmt;

use zeroize::Zeroizing;

pub use crate::environment::Environment;
pub use alphabet::{Alphabet, Checksum};
pub(crate) use digest::BuildDigestHasher;
pub use digest::{KeyDigest, KeyHasher, ParseDigestError, PepperError};
pub use family::{FamilyError, KeyFamilies, KeyFamily, KeyFamilyBuilder, ParsedKey};

/// Why a string is not a key. The input itself is never repeated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum MalformedKey {
    /// Nothing was sent.
    #[error("key is empty")]
    Empty,
    /// The key does not start with the prefix of an accepted family.
    #[error("key does not start with a known prefix")]
    UnknownPrefix,
    /// The key is longer or shorter than its family allows.
    #[error("key has the wrong length for its family")]
    Length,
    /// A character is outside the family's alphabet (upper-case hex, whitespace, non-ASCII).
    #[error("key has a character outside its family's alphabet")]
    Character,
    /// The key's checksum does not match the rest of it: mistyped or truncated
    /// ([`Checksum`]).
    #[error("key checksum does not match")]
    Checksum,
}

/// The operating system's random number generator failed.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct GenerateError(getrandom::Error);

impl GenerateError {
    pub(crate) fn new(error: getrandom::Error) -> Self {
        Self(error)
    }
}

/// A key in plaintext, as returned once at issue time.
///
/// Show it to its owner once and drop it. It is not `Clone`; `Debug` and `Display` print
/// only the prefix and the last four characters (`forg_live_…3c4d`); its memory is
/// zeroized on drop.
pub struct PlaintextKey {
    key: Zeroizing<String>,
    prefix_len: usize,
}

impl PlaintextKey {
    pub(crate) fn new(key: Zeroizing<String>, prefix_len: usize) -> Self {
        Self { key, prefix_len }
    }

    /// The whole key, prefix included: the one thing to hand to the key's owner.
    pub fn expose_secret(&self) -> &str {
        &self.key
    }

    /// `prefix…last4`, safe to log and show in listings.
    pub fn redacted(&self) -> String {
        redact(&self.key, self.prefix_len)
    }
}

impl fmt::Debug for PlaintextKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PlaintextKey")
            .field(&self.redacted())
            .finish()
    }
}

impl fmt::Display for PlaintextKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// `prefix…last4`; only the prefix when the secret is too short to spare four characters.
fn redact(key: &str, prefix_len: usize) -> String {
    let prefix = key.get(..prefix_len).unwrap_or("");
    let secret_len = key.len().saturating_sub(prefix_len);
    match key.get(key.len().saturating_sub(4)..) {
        Some(tail) if secret_len >= 16 => format!("{prefix}…{tail}"),
        _ => format!("{prefix}…"),
    }
}
