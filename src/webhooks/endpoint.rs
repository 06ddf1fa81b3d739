//! [`WebhookEndpoint`]: where an owner wants its events, and the secret they are signed
//! with.

use std::fmt;
use std::net::IpAddr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::WebhookSecret;
use crate::events::KeyEventKind;

/// A URL an endpoint may have: `https://`, or `http://` to a loopback address only (a
/// receiver on the same machine, in development).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("an https:// URL (http:// only to localhost, 127.0.0.1 or [::1]), at most 2048 characters, with no user or password")]
pub struct InvalidEndpointUrl;

/// Checks `url` (see [`InvalidEndpointUrl`]).
///
/// ```
/// use tower_api_key::webhooks::check_endpoint_url;
///
/// assert!(check_endpoint_url("https://hooks.example.com/forge").is_ok());
/// assert!(check_endpoint_url("http://127.0.0.1:9000/hook").is_ok());
/// assert!(check_endpoint_url("http://hooks.example.com/forge").is_err());
/// assert!(check_endpoint_url("https://user:pw@hooks.example.com/").is_err());
/// ```
///
/// # Errors
/// [`InvalidEndpointUrl`].
pub fn check_endpoint_url(url: &str) -> Result<(), InvalidEndpointUrl> {
    let uri: http::Uri = url.parse().map_err(|_| InvalidEndpointUrl)?;
    let authority = uri.authority().ok_or(InvalidEndpointUrl)?;
    if url.len() > 2048 || authority.as_str().contains('@') || url.chars().any(char::is_whitespace)
    {
        return Err(InvalidEndpointUrl);
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if loopback => Ok(()),
        _ => Err(InvalidEndpointUrl),
    }
}

/// An owner's webhook endpoint: its id (`whk_…`), URL, secret and the event types it
/// wants (empty: every type).
#[derive(Clone, Serialize, Deserialize)]
pub struct WebhookEndpoint {
    id: String,
    owner: String,
    url: String,
    #[serde(with = "secret_text")]
    secret: WebhookSecret,
    #[serde(default)]
    events: Vec<String>,
    #[serde(with = "crate::support::unix_millis")]
    created_at: SystemTime,
}

mod secret_text {
    use super::WebhookSecret;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        secret: &WebhookSecret,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&secret.expose_secret())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<WebhookSecret, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl WebhookEndpoint {
    /// An endpoint of `owner` at `url` for `events` (their wire names; empty: all), with
    /// a fresh id and secret.
    ///
    /// # Errors
    /// When the OS has no randomness.
    pub fn new(
        owner: impl Into<String>,
        url: impl Into<String>,
        events: Vec<String>,
        created_at: SystemTime,
    ) -> Result<Self, crate::key::GenerateError> {
        let id = crate::store::KeyId::generate()?;
        Ok(Self {
            id: format!("whk_{}", id.as_str().trim_start_matches("key_")),
            owner: owner.into(),
            url: url.into(),
            secret: WebhookSecret::generate()?,
            events,
            created_at,
        })
    }

    /// The id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whose.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Where.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The signing secret (shown to the owner once, when registered).
    pub fn secret(&self) -> &WebhookSecret {
        &self.secret
    }

    /// The event types it wants (empty: all).
    pub fn events(&self) -> &[String] {
        &self.events
    }

    /// When it was registered.
    pub fn created_at(&self) -> SystemTime {
        self.created_at
    }

    /// Whether it wants events of `kind`.
    pub fn wants(&self, kind: &KeyEventKind) -> bool {
        self.events.is_empty() || self.events.iter().any(|name| name == kind.name())
    }
}

impl fmt::Debug for WebhookEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookEndpoint")
            .field("id", &self.id)
            .field("owner", &self.owner)
            .field("url", &self.url)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}
