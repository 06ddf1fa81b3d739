use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

/// SHA-256 (or HMAC-SHA-256 with a pepper) of a whole key string: what stores keep.
///
/// - `==` is constant-time ([`ConstantTimeEq`]): it folds the 32 bytes into one word and
///   compares that, with no branch on the data.
/// - `Display` / `FromStr` / serde use 64 lower-case hex characters; upper case is refused.
/// - `Debug` shows the first 8 hex characters only.
#[derive(Clone, Copy)]
pub struct KeyDigest([u8; 32]);

impl KeyDigest {
    /// Wraps raw digest bytes (as read from a database column).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl ConstantTimeEq for KeyDigest {
    #[inline]
    fn ct_eq(&self, other: &Self) -> Choice {
        let mut diff = 0u64;
        for (a, b) in self.0.chunks_exact(8).zip(other.0.chunks_exact(8)) {
            // chunks_exact(8) always yields 8 bytes, so the conversions cannot fail.
            let a = u64::from_ne_bytes(a.try_into().unwrap_or([0; 8]));
            let b = u64::from_ne_bytes(b.try_into().unwrap_or([0; 8]));
            diff |= a ^ b;
        }
        diff.ct_eq(&0)
    }
}

impl PartialEq for KeyDigest {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for KeyDigest {}

impl Hash for KeyDigest {
    /// Feeds the first 8 bytes: a digest is already uniformly distributed.
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut head = [0u8; 8];
        head.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_ne_bytes(head));
    }
}

/// A hasher for maps keyed by [`KeyDigest`]: it passes the digest's first 8 bytes through.
///
/// SHA-256 output is uniform, and the digests stored in a map are those of server-generated
/// keys, so nobody can aim many stored entries at one bucket; lookups of other digests
/// insert nothing.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct DigestHasher(u64);

impl Hasher for DigestHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not reached through `KeyDigest`; fold anything else in, byte by byte.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
}

/// `BuildHasher` for [`DigestHasher`].
pub(crate) type BuildDigestHasher = std::hash::BuildHasherDefault<DigestHasher>;

impl fmt::Display for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 64];
        let hex = base16ct::lower::encode_str(&self.0, &mut buf).map_err(|_| fmt::Error)?;
        f.write_str(hex)
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 8];
        let hex = base16ct::lower::encode_str(&self.0[..4], &mut buf).map_err(|_| fmt::Error)?;
        write!(f, "KeyDigest({hex}…)")
    }
}

/// A string is not 64 lower-case hex characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a key digest is 64 lower-case hex characters")]
pub struct ParseDigestError;

impl FromStr for KeyDigest {
    type Err = ParseDigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 32];
        if s.len() != 64 {
            return Err(ParseDigestError);
        }
        base16ct::lower::decode(s, &mut bytes).map_err(|_| ParseDigestError)?;
        Ok(Self(bytes))
    }
}

impl Serialize for KeyDigest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for KeyDigest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The pepper is shorter than 32 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a pepper must be at least 32 bytes of secret randomness")]
pub struct PepperError;

/// Turns keys into [`KeyDigest`]s: SHA-256, or HMAC-SHA-256 keyed with a server-side pepper.
///
/// The pepper protects against one thing: a leak of the key table alone (a backup, a
/// read-only SQL injection). Without the pepper nobody can even test a guessed key against
/// the leaked digests. It does not protect a server whose memory or configuration leaks
/// with the table, and it cannot be rotated without re-issuing every key. Generated keys
/// already carry 128 to 256 bits of entropy, so plain SHA-256 is not brute-forceable; the
/// pepper is defence in depth.
///
/// Issuing and verifying must use the same hasher: stores hand theirs to the layer through
/// [`KeyStore::hasher`](crate::store::KeyStore::hasher).
#[derive(Clone)]
pub struct KeyHasher {
    // The keyed HMAC state is prepared once; each digest clones it.
    pepper: Option<Hmac<Sha256>>,
}

static SHA256: KeyHasher = KeyHasher::sha256();

impl KeyHasher {
    /// Plain SHA-256 of the key string.
    pub const fn sha256() -> Self {
        Self { pepper: None }
    }

    /// A shared plain SHA-256 hasher.
    pub fn sha256_ref() -> &'static KeyHasher {
        &SHA256
    }

    /// HMAC-SHA-256 keyed with `pepper` (at least 32 bytes, kept outside the key store).
    ///
    /// # Errors
    /// [`PepperError`] when `pepper` is shorter than 32 bytes.
    pub fn peppered(pepper: &[u8]) -> Result<Self, PepperError> {
        if pepper.len() < 32 {
            return Err(PepperError);
        }
        let mac = Hmac::<Sha256>::new_from_slice(pepper).map_err(|_| PepperError)?;
        Ok(Self { pepper: Some(mac) })
    }

    /// Whether a pepper is configured.
    pub fn is_peppered(&self) -> bool {
        self.pepper.is_some()
    }

    /// The digest of `key` (the whole key, prefix included).
    #[inline]
    pub fn digest(&self, key: &str) -> KeyDigest {
        match &self.pepper {
            None => KeyDigest(Sha256::digest(key.as_bytes()).into()),
            Some(mac) => {
                let mut mac = mac.clone();
                mac.update(key.as_bytes());
                KeyDigest(mac.finalize().into_bytes().into())
            }
        }
    }
}

impl Default for KeyHasher {
    fn default() -> Self {
        Self::sha256()
    }
}

impl fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let algorithm = if self.is_peppered() {
            "HMAC-SHA-256 (pepper redacted)"
        } else {
            "SHA-256"
        };
        f.debug_struct("KeyHasher")
            .field("algorithm", &algorithm)
            .finish()
    }
}
