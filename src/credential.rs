//! Where a key is read from: `Authorization: Bearer <key>` by default, and any header whose
//! whole value is the key that the application adds (the FORG preset adds
//! `X-ForgeOS-API-Key`: [`forg::credential_sources`](crate::forg::credential_sources)).
//!
//! Rules, in order:
//! - a source header sent more than once, or keys in two sources at once, is an ambiguous
//!   request (400 `invalid_request`), even when the values are equal;
//! - the `Bearer` scheme is case-insensitive, the key is case-sensitive, surrounding spaces
//!   and tabs are trimmed; an `Authorization` header with another scheme (`Basic`, ...) is
//!   not an API key and is ignored;
//! - a value that is not visible ASCII, or `Bearer` with no token, is a malformed key (401).
//!
//! Keys are never read from the query string.
//!
//! ```
//! use http::HeaderMap;
//! use tower_api_key::credential::{Credential, CredentialSource, CredentialSources};
//!
//! let mut headers = HeaderMap::new();
//! headers.insert("authorization", "bearer  forg_live_a3f9e2c1b84d7f6e0a2c1d8e9f0b3c4d ".parse().unwrap());
//! let sources = CredentialSources::default();
//! let credential = sources.extract(&headers).unwrap().unwrap();
//! assert_eq!(credential.expose_secret(), "forg_live_a3f9e2c1b84d7f6e0a2c1d8e9f0b3c4d");
//!
//! let sources = CredentialSources::new([
//!     CredentialSource::Bearer,
//!     CredentialSource::Header("x-api-key".parse().unwrap()),
//! ])
//! .unwrap();
//! headers.insert("x-api-key", "fos_0123".parse().unwrap());
//! assert!(sources.extract(&headers).is_err()); // two sources: ambiguous
//! ```

use std::fmt;

use http::header::{HeaderMap, HeaderName, AUTHORIZATION};

/// One place a key may be sent.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CredentialSource {
    /// `Authorization: Bearer <key>` (RFC 6750).
    Bearer,
    /// A header whose whole value is the key, e.g. `X-API-Key`.
    Header(HeaderName),
}

impl CredentialSource {
    /// The header this source reads.
    pub fn header_name(&self) -> &HeaderName {
        match self {
            Self::Bearer => &AUTHORIZATION,
            Self::Header(name) => name,
        }
    }
}

/// The sources a layer accepts (at least one, each once). Default: `Bearer` only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialSources {
    sources: Vec<CredentialSource>,
}

impl Default for CredentialSources {
    fn default() -> Self {
        Self {
            sources: vec![CredentialSource::Bearer],
        }
    }
}

/// A source list was empty or named a header twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("credential sources must be at least one, each header at most once")]
pub struct InvalidSources;

impl CredentialSources {
    /// Exactly these sources.
    ///
    /// # Errors
    /// [`InvalidSources`] when `sources` is empty or reads a header twice.
    pub fn new(
        sources: impl IntoIterator<Item = CredentialSource>,
    ) -> Result<Self, InvalidSources> {
        let mut list: Vec<CredentialSource> = Vec::new();
        for source in sources {
            if list.iter().any(|s| s.header_name() == source.header_name()) {
                return Err(InvalidSources);
            }
            list.push(source);
        }
        if list.is_empty() {
            return Err(InvalidSources);
        }
        Ok(Self { sources: list })
    }

    /// Only `Authorization: Bearer`.
    pub fn bearer() -> Self {
        Self {
            sources: vec![CredentialSource::Bearer],
        }
    }

    /// Only the given header.
    pub fn header(name: HeaderName) -> Self {
        Self {
            sources: vec![CredentialSource::Header(name)],
        }
    }

    /// The sources, in order.
    pub fn iter(&self) -> impl Iterator<Item = &CredentialSource> {
        self.sources.iter()
    }

    /// Finds the one key in `headers`, if any.
    ///
    /// # Errors
    /// [`CredentialError`] for a repeated header, two sources at once, or a malformed
    /// value.
    pub fn extract<'h>(
        &'h self,
        headers: &'h HeaderMap,
    ) -> Result<Option<Credential<'h>>, CredentialError> {
        // A malformed value still counts as a credential sent: two sources are ambiguous
        // whatever their values, so every source is looked at before anything is refused.
        let mut found: Option<Option<Credential<'h>>> = None;
        for (index, source) in self.sources.iter().enumerate() {
            let name = source.header_name();
            let mut values = headers.get_all(name).iter();
            let Some(value) = values.next() else { continue };
            if values.next().is_some() {
                return Err(CredentialError::RepeatedHeader(name.clone()));
            }
            let token = match source {
                CredentialSource::Bearer => match bearer_token(value.as_bytes()) {
                    Some(token) => token,
                    None => continue, // another scheme: not an API key
                },
                CredentialSource::Header(_) => trim(value.as_bytes()),
            };
            if found.is_some() {
                return Err(CredentialError::Ambiguous);
            }
            found = Some(visible_ascii(token).map(|key| Credential { source, index, key }));
        }
        match found {
            None => Ok(None),
            Some(Some(credential)) => Ok(Some(credential)),
            Some(None) => Err(CredentialError::Malformed),
        }
    }

    /// Marks the header the key came from sensitive (so `Debug` of the request and HTTP/2
    /// header compression leave it alone), or removes it. `index` is
    /// [`Credential::index`]; the header was sent once.
    pub(crate) fn protect(&self, headers: &mut HeaderMap, index: usize, strip: bool) {
        let Some(source) = self.sources.get(index) else {
            return;
        };
        let name = source.header_name();
        if strip {
            headers.remove(name);
        } else if let Some(value) = headers.get_mut(name) {
            value.set_sensitive(true);
        }
    }
}

/// A key as sent, before parsing. `Debug` does not show it.
#[derive(Clone, Copy)]
pub struct Credential<'h> {
    source: &'h CredentialSource,
    index: usize,
    key: &'h str,
}

impl<'h> Credential<'h> {
    /// Where it was found.
    pub fn source(&self) -> &'h CredentialSource {
        self.source
    }

    /// The position of its source in the [`CredentialSources`].
    pub fn index(&self) -> usize {
        self.index
    }

    /// The key as sent (trimmed). Handle with care: this is the secret.
    pub fn expose_secret(&self) -> &'h str {
        self.key
    }
}

impl fmt::Debug for Credential<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("source", self.source)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// Why no key could be taken from the headers.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// A source header was sent more than once (400).
    #[error("the {0} header was sent more than once")]
    RepeatedHeader(HeaderName),
    /// Keys were sent in more than one source (400).
    #[error("API keys were sent in more than one header")]
    Ambiguous,
    /// The value is empty after the scheme, or not visible ASCII (401).
    #[error("the API key is malformed")]
    Malformed,
}

fn trim(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// The token after a case-insensitive `Bearer` scheme and at least one space or tab, or
/// `None` for another scheme. `Bearer` with nothing after it gives an empty token.
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let value = trim(value);
    let scheme = value.get(..6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    match value.get(6) {
        None => Some(&[]),
        Some(b' ' | b'\t') => Some(trim(&value[6..])),
        Some(_) => None, // e.g. "Bearerx": a different scheme
    }
}

fn visible_ascii(bytes: &[u8]) -> Option<&str> {
    // A fold without early exit: the compiler vectorises it (a key is ~40 bytes, and the
    // byte-by-byte `all` was the largest part of reading one).
    let visible = bytes
        .iter()
        .fold(true, |visible, &b| visible & b.is_ascii_graphic());
    if bytes.is_empty() || !visible {
        return None;
    }
    std::str::from_utf8(bytes).ok()
}
