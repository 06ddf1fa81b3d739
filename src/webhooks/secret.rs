//! [`WebhookSecret`]: an endpoint's signing secret, and the Standard Webhooks signature
//! (`webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`).

use std::fmt;

use base64ct::{Base64, Encoding};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// The secret's prefix, as the specification writes it.
const PREFIX: &str = "whsec_";

/// A secret is not `whsec_` and base64 of 24 to 64 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a webhook secret is `whsec_` and the base64 of 24 to 64 bytes")]
pub struct InvalidWebhookSecret;

/// An endpoint's signing secret (`whsec_` and base64 of 24 random bytes), shown once when
/// the endpoint is registered, like a key. Its `Debug` shows nothing of it; its bytes are
/// wiped when it is dropped.
///
/// ```
/// use tower_api_key::webhooks::WebhookSecret;
///
/// // The specification's published test vector.
/// let secret: WebhookSecret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD".parse().unwrap();
/// let body = br#"{"email":"test@example.com","username":"test_user"}"#;
/// let signature = secret.sign("msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", 1649367553, body);
/// assert_eq!(signature, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
/// assert!(secret.verifies("msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", 1649367553, body, &signature));
/// assert!(!format!("{secret:?}").contains("C2FV"));
/// ```
#[derive(Clone)]
pub struct WebhookSecret(Zeroizing<Vec<u8>>);

impl WebhookSecret {
    /// 24 random bytes from the OS.
    ///
    /// # Errors
    /// When the OS has no randomness.
    pub fn generate() -> Result<Self, crate::key::GenerateError> {
        let mut bytes = Zeroizing::new(vec![0_u8; 24]);
        getrandom::fill(&mut bytes).map_err(crate::key::GenerateError::new)?;
        Ok(Self(bytes))
    }

    /// `whsec_…`: to show once, and to store.
    pub fn expose_secret(&self) -> String {
        format!("{PREFIX}{}", Base64::encode_string(&self.0))
    }

    /// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        format!(
            "v1,{}",
            Base64::encode_string(&self.mac(id, timestamp, body))
        )
    }

    /// Whether `header` (space-separated `v1,<sig>` entries, as the specification allows
    /// during a secret rotation) holds this secret's signature, compared in constant time.
    pub fn verifies(&self, id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
        let expected = self.mac(id, timestamp, body);
        header
            .split(' ')
            .filter_map(|entry| entry.strip_prefix("v1,"))
            .filter_map(|signature| Base64::decode_vec(signature).ok())
            .any(|signature| bool::from(signature.as_slice().ct_eq(expected.as_slice())))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
        // HMAC takes a key of any length: the error case never happens, and would sign
        // nothing rather than panic.
        let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0) else {
            return Vec::new();
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }
}

impl std::str::FromStr for WebhookSecret {
    type Err = InvalidWebhookSecret;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let encoded = text.strip_prefix(PREFIX).ok_or(InvalidWebhookSecret)?;
        let bytes = Zeroizing::new(Base64::decode_vec(encoded).map_err(|_| InvalidWebhookSecret)?);
        if !(24..=64).contains(&bytes.len()) {
            return Err(InvalidWebhookSecret);
        }
        Ok(Self(bytes))
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(…)")
    }
}
