//! [`KeyId`]: a key's public identifier.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::key::GenerateError;

/// A key's public identifier, e.g. `key_5f0c2a9e8b1d4c7f3a6e2b90`.
///
/// Random, never derived from the secret: safe in URLs, logs, metrics and rate-limiter
/// state. 1 to 64 characters of `A-Z a-z 0-9 _ - . :`.
///
/// Cheap to clone: one shared allocation, however many maps and records hold the id.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyId(Arc<str>);

impl KeyId {
    /// A fresh random id: `key_` + 24 lower-case hex (96 bits).
    ///
    /// # Errors
    /// When the operating system's random number generator fails.
    pub fn generate() -> Result<Self, GenerateError> {
        let mut bytes = [0u8; 12];
        getrandom::fill(&mut bytes).map_err(GenerateError::new)?;
        let mut hex = [0u8; 24];
        let hex = base16ct::lower::encode_str(&bytes, &mut hex).unwrap_or_default();
        Ok(Self(format!("key_{hex}").into()))
    }

    /// An id chosen by the store (e.g. a database primary key).
    ///
    /// # Errors
    /// [`InvalidKeyId`] when `id` is empty, longer than 64 bytes or has a character
    /// outside `A-Z a-z 0-9 _ - . :`.
    pub fn new(id: impl Into<String>) -> Result<Self, InvalidKeyId> {
        let id = id.into();
        let valid = !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
        if valid {
            Ok(Self(id.into()))
        } else {
            Err(InvalidKeyId)
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

impl std::str::FromStr for KeyId {
    type Err = InvalidKeyId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for KeyId {
    type Error = InvalidKeyId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<KeyId> for String {
    fn from(id: KeyId) -> Self {
        id.0.as_ref().to_owned()
    }
}

/// A key id is empty, too long or has a character outside `A-Z a-z 0-9 _ - . :`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a key id is 1 to 64 characters of A-Z a-z 0-9 _ - . :")]
pub struct InvalidKeyId;
