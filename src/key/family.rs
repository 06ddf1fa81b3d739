//! Key families: [`KeyFamily`] (prefix, alphabet, length, environment, optional
//! [`Checksum`]), its builder, and [`KeyFamilies`], which parses a key against all of them
//! in one pass. What a secret is made of and checked by is in `alphabet.rs`.

use std::borrow::Cow;
use std::fmt;
use std::ops::RangeInclusive;

use super::alphabet::{Alphabet, Checksum};
use super::{GenerateError, MalformedKey, PlaintextKey};
use crate::environment::Environment;

/// A kind of key: its prefix, secret alphabet and length, and its [`Environment`].
///
/// The three families of the FORG and ForgeOS documents are built in
/// ([`FORG_LIVE`](Self::FORG_LIVE), [`FORG_TEST`](Self::FORG_TEST), [`FOS`](Self::FOS)); a
/// service registers its own with [`KeyFamily::builder`] and
/// [`KeyFamilies::with`].
///
/// ```
/// use tower_api_key::key::{Alphabet, Environment, KeyFamily};
///
/// let acme = KeyFamily::builder("acme_sk_", Environment::Live)
///     .alphabet(Alphabet::Base62)
///     .secret_len(32..=32)
///     .build()
///     .unwrap();
/// let key = acme.generate().unwrap();
/// assert!(key.expose_secret().starts_with("acme_sk_"));
/// assert_eq!(key.expose_secret().len(), "acme_sk_".len() + 32);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyFamily {
    prefix: Cow<'static, str>,
    environment: Environment,
    alphabet: Alphabet,
    min_len: usize,
    max_len: usize,
    generated_len: usize,
    checksum: Option<Checksum>,
}

impl KeyFamily {
    pub(crate) const fn hex(
        prefix: &'static str,
        environment: Environment,
        min_len: usize,
        max_len: usize,
        generated_len: usize,
    ) -> Self {
        KeyFamily {
            prefix: Cow::Borrowed(prefix),
            environment,
            alphabet: Alphabet::LowerHex,
            min_len,
            max_len,
            generated_len,
            checksum: None,
        }
    }

    /// Starts a custom family with `prefix` and `environment`; the secret defaults to 32
    /// lower-case hex characters.
    pub fn builder(
        prefix: impl Into<Cow<'static, str>>,
        environment: Environment,
    ) -> KeyFamilyBuilder {
        KeyFamilyBuilder {
            prefix: prefix.into(),
            environment,
            alphabet: Alphabet::LowerHex,
            secret_len: 32..=32,
            generated_len: None,
            checksum: None,
        }
    }

    /// The literal prefix, e.g. `forg_live_`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The prefix as held: borrowed for a family made from a `'static` prefix.
    pub(crate) fn prefix_cow(&self) -> &Cow<'static, str> {
        &self.prefix
    }

    /// The environment every key of this family belongs to.
    pub fn environment(&self) -> Environment {
        self.environment
    }

    /// The alphabet of the secret part.
    pub fn alphabet(&self) -> Alphabet {
        self.alphabet
    }

    /// Accepted lengths of the secret part (after the prefix), in characters.
    pub fn secret_len(&self) -> RangeInclusive<usize> {
        self.min_len..=self.max_len
    }

    /// Length of the secret part of generated keys.
    pub fn generated_len(&self) -> usize {
        self.generated_len
    }

    /// The checksum after the secret, if the family has one.
    pub fn checksum(&self) -> Option<Checksum> {
        self.checksum
    }

    /// The regular expression a secret scanner matches this family's keys with, e.g.
    /// `forg_live_[0-9a-f]{32}` (no anchors; the prefix's `.` escaped). A scanner then
    /// verifies the [`Checksum`] when there is one.
    pub fn pattern(&self) -> String {
        let class = match self.alphabet {
            Alphabet::LowerHex => "[0-9a-f]",
            Alphabet::Base62 => "[0-9A-Za-z]",
        };
        let prefix = self.prefix.replace('.', "\\.");
        let secret = if self.min_len == self.max_len {
            format!("{class}{{{}}}", self.min_len)
        } else {
            format!("{class}{{{},{}}}", self.min_len, self.max_len)
        };
        match self.checksum {
            Some(checksum) => format!("{prefix}{secret}[0-9A-Za-z]{{{}}}", checksum.len()),
            None => format!("{prefix}{secret}"),
        }
    }

    /// Generates a new key of this family from the operating system's CSPRNG.
    ///
    /// # Errors
    /// When the operating system has no randomness to give (practically never after boot).
    pub fn generate(&self) -> Result<PlaintextKey, GenerateError> {
        // Exact capacity: the string never reallocates, so no unzeroized copy is left behind.
        let checksum_len = self.checksum.map_or(0, Checksum::len);
        let mut key = String::with_capacity(self.prefix.len() + self.generated_len + checksum_len);
        key.push_str(&self.prefix);
        let mut key = zeroize::Zeroizing::new(key);
        self.alphabet.generate(self.generated_len, &mut key)?;
        if let Some(checksum) = self.checksum {
            let sum = checksum.of(key.as_bytes());
            key.extend(sum.iter().map(|&b| char::from(b)));
        }
        Ok(PlaintextKey::new(key, self.prefix.len()))
    }

    /// Checks the part after the prefix. Every byte is looked at, in order; the first
    /// failure ends the check (the input is the caller's own, so there is nothing to hide).
    /// With a checksum, `key` (prefix included) is what it covers.
    #[inline]
    pub(crate) fn check_secret(&self, key: &[u8], secret: &[u8]) -> Result<(), MalformedKey> {
        let checksum_len = self.checksum.map_or(0, Checksum::len);
        let Some(random_len) = secret.len().checked_sub(checksum_len) else {
            return Err(MalformedKey::Length);
        };
        if random_len < self.min_len || random_len > self.max_len {
            return Err(MalformedKey::Length);
        }
        let (random, sum) = secret.split_at(random_len);
        if !self.alphabet.contains_all(random) || !Alphabet::Base62.contains_all(sum) {
            return Err(MalformedKey::Character);
        }
        match self.checksum {
            Some(checksum) if checksum.of(&key[..key.len() - sum.len()]) != sum => {
                Err(MalformedKey::Checksum)
            }
            _ => Ok(()),
        }
    }

    fn max_total_len(&self) -> usize {
        self.prefix.len() + self.max_len + self.checksum.map_or(0, Checksum::len)
    }
}

/// The families of the FORG and ForgeOS documents, and the browser sessions'.
impl KeyFamily {
    /// FORG production keys: `forg_live_` + 32 lower-case hex (128 bits).
    pub const FORG_LIVE: KeyFamily = KeyFamily::hex("forg_live_", Environment::Live, 32, 32, 32);
    /// FORG sandbox keys: `forg_test_` + 32 lower-case hex (128 bits).
    pub const FORG_TEST: KeyFamily = KeyFamily::hex("forg_test_", Environment::Test, 32, 32, 32);
    /// ForgeOS keys: `fos_` + 32 to 128 lower-case hex; generated with 64 (256 bits).
    pub const FOS: KeyFamily = KeyFamily::hex("fos_", Environment::Live, 32, 128, 64);
    /// Browser sessions: `fses_` + 32 lower-case hex (128 bits), the session
    /// cookie's value. Only a session store accepts it
    /// ([`KeyPolicy::sessions`](crate::store::KeyPolicy::sessions)), never a key header.
    pub const SESSION: KeyFamily = KeyFamily::hex("fses_", Environment::Live, 32, 32, 32);
}

/// Builds a custom [`KeyFamily`]; see [`KeyFamily::builder`].
#[derive(Clone, Debug)]
#[must_use]
pub struct KeyFamilyBuilder {
    prefix: Cow<'static, str>,
    environment: Environment,
    alphabet: Alphabet,
    secret_len: RangeInclusive<usize>,
    generated_len: Option<usize>,
    checksum: Option<Checksum>,
}

impl KeyFamilyBuilder {
    /// A checksum after the secret (default none); it does not count in
    /// [`secret_len`](Self::secret_len) or in the key's entropy.
    pub fn checksum(mut self, checksum: Checksum) -> Self {
        self.checksum = Some(checksum);
        self
    }

    /// The alphabet of the secret part (default [`Alphabet::LowerHex`]).
    pub fn alphabet(mut self, alphabet: Alphabet) -> Self {
        self.alphabet = alphabet;
        self
    }

    /// Accepted lengths of the secret part (default `32..=32`).
    pub fn secret_len(mut self, len: RangeInclusive<usize>) -> Self {
        self.secret_len = len;
        self
    }

    /// Length of generated secrets (default: the upper end of [`secret_len`](Self::secret_len)).
    pub fn generated_len(mut self, len: usize) -> Self {
        self.generated_len = Some(len);
        self
    }

    /// Checks the configuration.
    ///
    /// # Errors
    /// [`FamilyError`] when the prefix is empty, longer than 32 bytes or not made of
    /// `A-Z a-z 0-9 _ - .`; when the length range is empty or above 512; when the
    /// generated length is outside the accepted range; or when generated keys would carry
    /// less than 128 bits of entropy.
    pub fn build(self) -> Result<KeyFamily, FamilyError> {
        let prefix_ok = !self.prefix.is_empty()
            && self.prefix.len() <= 32
            && self
                .prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !prefix_ok {
            return Err(FamilyError::Prefix);
        }
        let (min_len, max_len) = (*self.secret_len.start(), *self.secret_len.end());
        if min_len == 0 || min_len > max_len || max_len > 512 {
            return Err(FamilyError::Length);
        }
        let generated_len = self.generated_len.unwrap_or(max_len);
        if !(min_len..=max_len).contains(&generated_len) {
            return Err(FamilyError::GeneratedLength);
        }
        if generated_len * self.alphabet.millibits_per_char() < 128_000 {
            return Err(FamilyError::WeakKeys);
        }
        Ok(KeyFamily {
            prefix: self.prefix,
            environment: self.environment,
            alphabet: self.alphabet,
            min_len,
            max_len,
            generated_len,
            checksum: self.checksum,
        })
    }
}

/// Why a [`KeyFamily`] or [`KeyFamilies`] configuration was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FamilyError {
    /// The prefix is empty, longer than 32 bytes, or has a character outside `A-Z a-z 0-9 _ - .`.
    #[error("key prefix must be 1 to 32 characters of A-Z a-z 0-9 _ - .")]
    Prefix,
    /// The length range is empty, starts at 0 or ends above 512.
    #[error("secret length range must be non-empty, start at 1 or more and end at 512 or less")]
    Length,
    /// The generated length is outside the accepted range.
    #[error("generated secret length must be inside the accepted length range")]
    GeneratedLength,
    /// Generated keys would have less than 128 bits of entropy.
    #[error("generated keys must carry at least 128 bits of entropy")]
    WeakKeys,
    /// One family's prefix starts with another's, so a key could belong to both.
    #[error("key prefix `{0}` overlaps the prefix of another family")]
    OverlappingPrefix(String),
}

/// The set of families a service accepts. Parsing picks the family by prefix.
///
/// The default is the three built-in families.
///
/// ```
/// use tower_api_key::key::{Environment, KeyFamilies, KeyFamily};
///
/// let families = KeyFamilies::builtin();
/// let key = families.parse("forg_test_a3f9e2c1b84d7f6e0a2c1d8e9f0b3c4d").unwrap();
/// assert_eq!(key.family(), &KeyFamily::FORG_TEST);
/// assert_eq!(key.environment(), Environment::Test);
///
/// assert!(families.parse("forg_test_A3F9E2C1B84D7F6E0A2C1D8E9F0B3C4D").is_err());
/// assert!(families.parse("sk_live_a3f9e2c1b84d7f6e0a2c1d8e9f0b3c4d").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFamilies {
    families: Vec<KeyFamily>,
    max_total_len: usize,
}

/// No family: every key is malformed, nothing can be issued, until the application
/// registers its own ([`with`](KeyFamilies::with), [`only`](KeyFamilies::only); FORG's:
/// [`builtin`](KeyFamilies::builtin)). What [`KeyPolicy::default`](crate::store::KeyPolicy)
/// holds.
impl Default for KeyFamilies {
    fn default() -> Self {
        Self {
            families: Vec::new(),
            max_total_len: 0,
        }
    }
}

impl KeyFamilies {
    /// `forg_live_`, `forg_test_` and `fos_`.
    pub fn builtin() -> Self {
        let families = vec![KeyFamily::FORG_LIVE, KeyFamily::FORG_TEST, KeyFamily::FOS];
        let max_total_len = families
            .iter()
            .map(KeyFamily::max_total_len)
            .max()
            .unwrap_or(0);
        Self {
            families,
            max_total_len,
        }
    }

    /// Exactly the given families (at least one).
    ///
    /// # Errors
    /// [`FamilyError::OverlappingPrefix`] when one prefix starts with another, and
    /// [`FamilyError::Prefix`] when `families` is empty.
    pub fn only(families: impl IntoIterator<Item = KeyFamily>) -> Result<Self, FamilyError> {
        let mut iter = families.into_iter();
        let first = iter.next().ok_or(FamilyError::Prefix)?;
        let mut set = Self {
            max_total_len: first.max_total_len(),
            families: vec![first],
        };
        for family in iter {
            set = set.with(family)?;
        }
        Ok(set)
    }

    /// Adds a family.
    ///
    /// # Errors
    /// [`FamilyError::OverlappingPrefix`] when its prefix starts with, or is the start of,
    /// a prefix already in the set: a key could then belong to two families.
    pub fn with(mut self, family: KeyFamily) -> Result<Self, FamilyError> {
        let overlaps = self.families.iter().any(|f| {
            f.prefix.starts_with(&*family.prefix) || family.prefix.starts_with(&*f.prefix)
        });
        if overlaps {
            return Err(FamilyError::OverlappingPrefix(family.prefix.into_owned()));
        }
        self.max_total_len = self.max_total_len.max(family.max_total_len());
        self.families.push(family);
        Ok(self)
    }

    /// The families, in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = &KeyFamily> {
        self.families.iter()
    }

    /// The family whose prefix is exactly `prefix` (as stored in
    /// [`KeyRecord::prefix`](crate::store::KeyRecord::prefix)).
    pub fn find(&self, prefix: &str) -> Option<&KeyFamily> {
        self.families.iter().find(|f| f.prefix() == prefix)
    }

    /// Parses a key: known prefix, accepted length, every character in the family's alphabet.
    ///
    /// Costs one pass over the key at most and allocates nothing; nothing is hashed.
    ///
    /// # Errors
    /// [`MalformedKey`] says what is wrong without repeating the input.
    #[inline]
    pub fn parse<'k>(&'k self, key: &'k str) -> Result<ParsedKey<'k>, MalformedKey> {
        if key.is_empty() {
            return Err(MalformedKey::Empty);
        }
        if key.len() > self.max_total_len {
            // Huge inputs are refused before anything looks at their content.
            return Err(MalformedKey::Length);
        }
        let bytes = key.as_bytes();
        let family = self
            .families
            .iter()
            .find(|f| bytes.starts_with(f.prefix.as_bytes()))
            .ok_or(MalformedKey::UnknownPrefix)?;
        family.check_secret(bytes, &bytes[family.prefix.len()..])?;
        Ok(ParsedKey { family, key })
    }
}

/// A key that passed [`KeyFamilies::parse`]: borrowed, with its family.
///
/// `Debug` shows only the redacted form (prefix and last four characters).
#[derive(Clone, Copy)]
pub struct ParsedKey<'k> {
    family: &'k KeyFamily,
    key: &'k str,
}

impl<'k> ParsedKey<'k> {
    /// The family the key belongs to.
    pub fn family(&self) -> &'k KeyFamily {
        self.family
    }

    /// The family's environment.
    pub fn environment(&self) -> Environment {
        self.family.environment
    }

    /// The whole key, prefix included. Handle with care: this is the secret.
    pub fn expose_secret(&self) -> &'k str {
        self.key
    }

    /// `prefix…last4`, safe to show.
    pub fn redacted(&self) -> String {
        super::redact(self.key, self.family.prefix.len())
    }
}

impl fmt::Debug for ParsedKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedKey")
            .field("family", &self.family.prefix())
            .field("key", &self.redacted())
            .finish()
    }
}
