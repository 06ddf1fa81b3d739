//! Rejections: what went wrong ([`AuthRejection`]) and how it is shown
//! ([`RenderRejection`], [`DefaultRenderer`]).
//!
//! The default renderer writes the FORG JSON shape, with RFC 6750 `WWW-Authenticate` on
//! 401 and 403 and `Retry-After` on 429 and 503. Requests with `content-type:
//! application/grpc*` get a trailers-only gRPC response instead (HTTP 200, `grpc-status`,
//! percent-encoded `grpc-message`).
//!
//! | status | code | when |
//! |---|---|---|
//! | 400 | `invalid_request` | a key header sent twice, or keys in two headers |
//! | 401 | `invalid_api_key` | missing, malformed, unknown, revoked or expired key (one body for all) |
//! | 402 | `spend_cap_exceeded` | returned by services (e.g. AI spend caps) |
//! | 403 | `insufficient_scope` | the key lacks a scope the route requires |
//! | 403 | `environment_not_allowed` | a test key where only live keys are accepted (or the reverse) |
//! | 429 | `rate_limited` | rate limit exceeded |
//! | 500 | `internal_error` | a scope check or extractor without the authentication layer |
//! | 503 | `auth_unavailable` | the key store failed or timed out |
//!
//! ```
//! use http::HeaderMap;
//! use tower_api_key::reject::{AuthRejection, DefaultRenderer, RenderRejection};
//!
//! let rejection = AuthRejection::insufficient_scope("write:rules", "write:rules", false);
//! let response = DefaultRenderer.render(&rejection, &HeaderMap::new());
//! assert_eq!(response.status(), 403);
//! assert_eq!(
//!     response.body().as_ref(),
//!     br#"{"error":"Insufficient scope: write:rules required","code":"insufficient_scope","status":403}"#
//! );
//! assert_eq!(
//!     response.headers()["www-authenticate"],
//!     r#"Bearer error="insufficient_scope", scope="write:rules""#
//! );
//! ```

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::{Response, StatusCode};

use crate::key::Environment;
use crate::store::{KeyId, StoreErrorKind};

/// Why an [`AuthRejection::InvalidRequest`] was given.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidRequestReason {
    /// A key header was sent more than once.
    RepeatedHeader(HeaderName),
    /// Keys were sent in more than one header.
    AmbiguousCredentials,
    /// A trusted proxy's forwarded header does not hold an address where the client's
    /// should be.
    MalformedForwarded,
}

/// What was unavailable behind a 503.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Unavailable {
    /// The key store failed, timed out or panicked.
    KeyStore(StoreErrorKind),
    /// The rate-limit backend failed (with [`OnBackendError::Deny`](crate::rate_limit::OnBackendError::Deny)).
    RateLimiter,
}

/// Which of the indistinguishable 401s this was. Known to the server only: the response
/// is the same for all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InvalidKeyReason {
    /// No key was sent.
    Missing,
    /// The value is not a key of an accepted family.
    Malformed,
    /// No stored record has this key's digest.
    Unknown,
    /// The store returned a record whose digest differs from the key's.
    DigestMismatch,
    /// The key was revoked.
    Revoked,
    /// The key has expired.
    Expired,
    /// The record's environment differs from the key family's.
    EnvironmentMismatch,
}

impl InvalidKeyReason {
    /// A stable snake_case name, for logs and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Unknown => "unknown",
            Self::DigestMismatch => "digest_mismatch",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::EnvironmentMismatch => "environment_mismatch",
        }
    }
}

/// Why a request was refused. A response, not an error: the layers render it with a
/// [`RenderRejection`] and put a copy in the response's extensions, where server-side
/// middleware (logging, metrics) can read the details the client does not see.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthRejection {
    /// 400 `invalid_request`: an ambiguous request.
    InvalidRequest(InvalidRequestReason),
    /// 401 `invalid_api_key`: one body for every reason.
    #[non_exhaustive]
    InvalidApiKey {
        /// Why (server-side only).
        reason: InvalidKeyReason,
        /// The key's id, when a record was found.
        key_id: Option<KeyId>,
    },
    /// 403 `environment_not_allowed`: the deployment does not accept this environment.
    EnvironmentNotAllowed(Environment),
    /// 403 `insufficient_scope`.
    #[non_exhaustive]
    InsufficientScope {
        /// The whole requirement, space-separated.
        required: String,
        /// The required scopes the key lacks, space-separated.
        missing: String,
        /// Whether any one of `required` would have done.
        any_of: bool,
    },
    /// 402 `spend_cap_exceeded`.
    SpendCapExceeded,
    /// 429 `rate_limited`.
    #[non_exhaustive]
    RateLimited {
        /// Whole seconds until a request can succeed (at least 1).
        retry_after_secs: u64,
    },
    /// 500 `internal_error`: a layer or extractor ran without the authentication layer.
    MissingLayer(&'static str),
    /// 503 `auth_unavailable`: the key store (or rate limiter) failed; the key may be fine.
    #[non_exhaustive]
    Unavailable {
        /// What failed.
        cause: Unavailable,
        /// Whole seconds the client should wait.
        retry_after_secs: u64,
    },
}

impl AuthRejection {
    pub(crate) fn invalid_key(reason: InvalidKeyReason, key_id: Option<KeyId>) -> Self {
        Self::InvalidApiKey { reason, key_id }
    }

    /// 403 `insufficient_scope`; `required` and `missing` are space-separated scope names.
    pub fn insufficient_scope(
        required: impl Into<String>,
        missing: impl Into<String>,
        any_of: bool,
    ) -> Self {
        Self::InsufficientScope {
            required: required.into(),
            missing: missing.into(),
            any_of,
        }
    }

    /// 429 `rate_limited`, retry after `secs` (at least 1).
    pub fn rate_limited(secs: u64) -> Self {
        Self::RateLimited {
            retry_after_secs: secs.max(1),
        }
    }

    /// 503 `auth_unavailable`, retry after `secs` (at least 1).
    pub fn unavailable(cause: Unavailable, secs: u64) -> Self {
        Self::Unavailable {
            cause,
            retry_after_secs: secs.max(1),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::InvalidApiKey { .. } => StatusCode::UNAUTHORIZED,
            Self::SpendCapExceeded => StatusCode::PAYMENT_REQUIRED,
            Self::EnvironmentNotAllowed(_) | Self::InsufficientScope { .. } => {
                StatusCode::FORBIDDEN
            }
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::MissingLayer(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The machine-readable code of the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidApiKey { .. } => "invalid_api_key",
            Self::SpendCapExceeded => "spend_cap_exceeded",
            Self::EnvironmentNotAllowed(_) => "environment_not_allowed",
            Self::InsufficientScope { .. } => "insufficient_scope",
            Self::RateLimited { .. } => "rate_limited",
            Self::MissingLayer(_) => "internal_error",
            Self::Unavailable { .. } => "auth_unavailable",
        }
    }

    /// The human-readable message shown to the client. Never says which 401 it was.
    pub fn message(&self) -> Cow<'static, str> {
        match self {
            Self::InvalidRequest(InvalidRequestReason::MalformedForwarded) => {
                "Malformed forwarded header".into()
            }
            Self::InvalidRequest(_) => {
                "Ambiguous credentials: send exactly one API key, in one header".into()
            }
            Self::InvalidApiKey { .. } => "Invalid API key".into(),
            Self::SpendCapExceeded => "AI spend cap exceeded".into(),
            Self::EnvironmentNotAllowed(env) => format!(
                "{} keys are not accepted by this service",
                capitalised(*env)
            )
            .into(),
            Self::InsufficientScope {
                required,
                missing,
                any_of,
            } => {
                if *any_of {
                    format!("Insufficient scope: one of {required} required").into()
                } else {
                    format!("Insufficient scope: {missing} required").into()
                }
            }
            Self::RateLimited { .. } => "Rate limit exceeded".into(),
            Self::MissingLayer(what) => {
                format!("Server misconfigured: {what} is missing for this route").into()
            }
            Self::Unavailable { .. } => "Authentication is temporarily unavailable".into(),
        }
    }

    /// The gRPC status code: 3, 16, 7, 8, 13 or 14.
    pub fn grpc_status(&self) -> u8 {
        match self {
            Self::InvalidRequest(_) => 3,     // INVALID_ARGUMENT
            Self::InvalidApiKey { .. } => 16, // UNAUTHENTICATED
            Self::EnvironmentNotAllowed(_) | Self::InsufficientScope { .. } => 7, // PERMISSION_DENIED
            Self::SpendCapExceeded | Self::RateLimited { .. } => 8, // RESOURCE_EXHAUSTED
            Self::MissingLayer(_) => 13,                            // INTERNAL
            Self::Unavailable { .. } => 14,                         // UNAVAILABLE
        }
    }

    /// Seconds for `Retry-After`, on 429 and 503.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after_secs }
            | Self::Unavailable {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        }
    }

    /// The RFC 6750 challenge, on 401 and 403.
    pub fn www_authenticate(&self) -> Option<HeaderValue> {
        let challenge = match self {
            Self::InvalidApiKey { .. } => {
                return Some(HeaderValue::from_static(r#"Bearer error="invalid_token""#))
            }
            Self::InsufficientScope { required, .. } => format!(
                r#"Bearer error="insufficient_scope", scope="{}""#,
                quoted_string_content(required)
            ),
            Self::EnvironmentNotAllowed(env) => format!(
                r#"Bearer error="insufficient_scope", error_description="{env} keys are not accepted""#
            ),
            _ => return None,
        };
        HeaderValue::from_str(&challenge).ok().or_else(|| {
            Some(HeaderValue::from_static(
                r#"Bearer error="insufficient_scope""#,
            ))
        })
    }

    /// The FORG JSON body: `{"error":…,"code":…,"status":…}`.
    pub fn json_body(&self) -> Bytes {
        // The frequent, constant bodies are static: rejecting costs no serialisation.
        let constant: &'static [u8] = match self {
            Self::InvalidApiKey { .. } => br#"{"error":"Invalid API key","code":"invalid_api_key","status":401}"#,
            Self::InvalidRequest(InvalidRequestReason::RepeatedHeader(_))
            | Self::InvalidRequest(InvalidRequestReason::AmbiguousCredentials) => {
                br#"{"error":"Ambiguous credentials: send exactly one API key, in one header","code":"invalid_request","status":400}"#
            }
            Self::RateLimited { .. } => br#"{"error":"Rate limit exceeded","code":"rate_limited","status":429}"#,
            Self::Unavailable { .. } => br#"{"error":"Authentication is temporarily unavailable","code":"auth_unavailable","status":503}"#,
            _ => return self.serialized_body(),
        };
        Bytes::from_static(constant)
    }

    fn serialized_body(&self) -> Bytes {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            error: &'a str,
            code: &'a str,
            status: u16,
        }
        let message = self.message();
        let body = Body {
            error: &message,
            code: self.code(),
            status: self.status().as_u16(),
        };
        serde_json::to_vec(&body)
            .map(Bytes::from)
            .unwrap_or_default()
    }

    /// Logs the rejection (feature `tracing`): key id and reason, never the key.
    pub(crate) fn trace(&self) {
        #[cfg(feature = "tracing")]
        match self {
            Self::Unavailable { cause, .. } => {
                tracing::warn!(target: "tower_api_key", code = self.code(), cause = ?cause, "request rejected: service unavailable");
            }
            Self::InvalidApiKey { reason, key_id } => {
                tracing::debug!(target: "tower_api_key", code = self.code(), reason = reason.as_str(), key_id = key_id.as_ref().map(KeyId::as_str), "request rejected");
            }
            Self::MissingLayer(what) => {
                tracing::error!(target: "tower_api_key", code = self.code(), missing = what, "request rejected: misconfigured route");
            }
            _ => tracing::debug!(target: "tower_api_key", code = self.code(), "request rejected"),
        }
    }
}

impl fmt::Display for AuthRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status().as_u16(),
            self.code(),
            self.message()
        )
    }
}

impl std::error::Error for AuthRejection {}

fn capitalised(env: Environment) -> &'static str {
    match env {
        Environment::Live => "Live",
        Environment::Test => "Test",
    }
}

/// Escapes `"` and `\` for an RFC 9110 quoted-string.
fn quoted_string_content(s: &str) -> Cow<'_, str> {
    if s.contains(['"', '\\']) {
        s.replace('\\', "\\\\").replace('"', "\\\"").into()
    } else {
        s.into()
    }
}

/// Turns a rejection into a response. Implemented for closures
/// `Fn(&AuthRejection, &HeaderMap) -> Response<Bytes>`.
///
/// `request_headers` are the rejected request's, for content negotiation. A renderer must
/// not reveal the [`InvalidKeyReason`] of a 401: that would tell an attacker which keys
/// exist.
///
/// ```
/// use bytes::Bytes;
/// use http::{HeaderMap, Response};
/// use tower_api_key::reject::{AuthRejection, RenderRejection};
///
/// let plain = |rejection: &AuthRejection, _: &HeaderMap| {
///     Response::builder()
///         .status(rejection.status())
///         .body(Bytes::from(rejection.message().into_owned()))
///         .unwrap()
/// };
/// let response = plain.render(&AuthRejection::SpendCapExceeded, &HeaderMap::new());
/// assert_eq!(response.status(), 402);
/// ```
pub trait RenderRejection: Send + Sync + 'static {
    /// The response for `rejection`.
    fn render(&self, rejection: &AuthRejection, request_headers: &HeaderMap) -> Response<Bytes>;
}

impl<F> RenderRejection for F
where
    F: Fn(&AuthRejection, &HeaderMap) -> Response<Bytes> + Send + Sync + 'static,
{
    fn render(&self, rejection: &AuthRejection, request_headers: &HeaderMap) -> Response<Bytes> {
        self(rejection, request_headers)
    }
}

/// FORG JSON for HTTP requests, trailers-only responses for gRPC requests.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultRenderer;

impl DefaultRenderer {
    /// The JSON response, whatever the request.
    pub fn json(rejection: &AuthRejection) -> Response<Bytes> {
        let mut response = Response::new(rejection.json_body());
        *response.status_mut() = rejection.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        add_common_headers(rejection, headers);
        response
    }

    /// The trailers-only gRPC response, whatever the request.
    pub fn grpc(rejection: &AuthRejection) -> Response<Bytes> {
        let mut response = Response::new(Bytes::new());
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert(
            "grpc-status",
            HeaderValue::from(u16::from(rejection.grpc_status())),
        );
        let message =
            percent_encoding::utf8_percent_encode(&rejection.message(), GRPC_MESSAGE).to_string();
        if let Ok(message) = HeaderValue::from_str(&message) {
            headers.insert("grpc-message", message);
        }
        add_common_headers(rejection, headers);
        response
    }
}

/// gRPC's Percent-Byte-Unencoded is %x20-%x24 / %x26-%x7E: everything else is encoded.
const GRPC_MESSAGE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'%');

fn add_common_headers(rejection: &AuthRejection, headers: &mut HeaderMap) {
    if let Some(challenge) = rejection.www_authenticate() {
        headers.insert(WWW_AUTHENTICATE, challenge);
    }
    if let Some(secs) = rejection.retry_after_secs() {
        headers.insert(RETRY_AFTER, HeaderValue::from(secs));
    }
}

/// Whether the request is gRPC (`content-type: application/grpc`, `+proto`, `+json`, ...).
pub fn is_grpc(request_headers: &HeaderMap) -> bool {
    request_headers
        .get(CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"))
}

impl RenderRejection for DefaultRenderer {
    fn render(&self, rejection: &AuthRejection, request_headers: &HeaderMap) -> Response<Bytes> {
        if is_grpc(request_headers) {
            Self::grpc(rejection)
        } else {
            Self::json(rejection)
        }
    }
}

/// Renders `rejection` for the crate's services: logs it, renders it, and keeps a copy in
/// the response's extensions.
pub(crate) fn respond(
    renderer: &dyn RenderRejection,
    rejection: AuthRejection,
    request_headers: &HeaderMap,
) -> Response<Bytes> {
    rejection.trace();
    let mut response = renderer.render(&rejection, request_headers);
    response.extensions_mut().insert(rejection);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_bodies_equal_serialized_ones() {
        let rejections = [
            AuthRejection::invalid_key(InvalidKeyReason::Revoked, None),
            AuthRejection::InvalidRequest(InvalidRequestReason::AmbiguousCredentials),
            AuthRejection::InvalidRequest(InvalidRequestReason::RepeatedHeader(
                http::header::AUTHORIZATION,
            )),
            AuthRejection::rate_limited(3),
            AuthRejection::unavailable(Unavailable::RateLimiter, 1),
        ];
        for rejection in rejections {
            assert_eq!(
                rejection.json_body(),
                rejection.serialized_body(),
                "{rejection:?}"
            );
        }
    }
}
