//! Rejections: what went wrong ([`AuthRejection`]) and how it is shown
//! ([`RenderRejection`]: [`JsonRenderer`], [`GrpcRenderer`], and [`DefaultRenderer`], which
//! picks one per request). The kinds know nothing of rendering beyond status, code, message
//! and challenge; each renderer lives in its own file.
//!
//! The default renderer writes the FORG JSON shape, with RFC 6750 `WWW-Authenticate` on
//! 401 and 403 and `Retry-After` on 429 and 503. Requests with `content-type:
//! application/grpc*` get a trailers-only gRPC response instead (HTTP 200, `grpc-status`,
//! percent-encoded `grpc-message`).
//!
//! | status | `code` | when |
//! |---|---|---|
//! | 400 | `invalid_request` | a key header sent twice, keys in two headers at once, the session cookie sent twice, or a non-UTF-8 `Cookie` header |
//! | 401 | `invalid_api_key` | missing, malformed, unknown, revoked or expired key or session: one identical response |
//! | 402 | `spend_cap_exceeded` | the budget of the period is spent (`usage::SpendCaps`); `Retry-After` and `resets_at` say until when |
//! | 403 | `insufficient_scope` | the key lacks the route's scope (`Insufficient scope: write:rules required`) |
//! | 403 | `environment_not_allowed` | a test key where only live keys are accepted, or the reverse |
//! | 403 | `csrf_failed` | a state-changing request authenticated by the session cookie without the session's `X-CSRF-Token`, or cross-site |
//! | 403 | `ip_not_allowed` | the key's allowed networks do not include the client's address |
//! | 403 | `plan_required` | the owner's plan does not allow the key's environment, or is below the plan the route requires (`usage::PlanLayer`, for every credential) |
//! | 429 | `rate_limited` | over the route class's quota, or too many refused keys from one address; `Retry-After` set |
//! | 500 | `internal_error` | a scope check, per-key limit or extractor on a route without `AuthLayer`; a per-address limit without the client address |
//! | 503 | `auth_unavailable` | the key store, the plan policy, the spend-cap backend or (with `OnBackendError::Deny`) the rate-limit backend failed, timed out or panicked; `Retry-After` set |
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

mod grpc;
mod json;
mod kind;
mod render;
mod retry_after;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use http::header::{HeaderName, HeaderValue};
use http::StatusCode;

pub(crate) use grpc::is_grpc;
pub use grpc::{GrpcCode, GrpcRenderer};
pub use json::JsonRenderer;
#[cfg(feature = "axum")]
pub(crate) use json::{ErrorBody, FieldError};
pub use kind::RejectionKind;
pub(crate) use render::{add_common_headers, respond};
pub use render::{DefaultRenderer, RenderRejection};
pub use retry_after::RetryAfter;

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
    /// The session cookie was sent more than once (e.g. a sibling subdomain planted a
    /// second one): which one to trust cannot be told, so neither is.
    RepeatedCookie,
    /// A `Cookie` header is not UTF-8, so the session cookie cannot be read from it.
    MalformedCookie,
    /// A forward-auth request without one well-formed original method and URI from the
    /// proxy ([`forward_auth`](crate::forward_auth)).
    MalformedOriginal,
}

/// What was unavailable behind a 503.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Unavailable {
    /// The key store failed, timed out or panicked.
    KeyStore(StoreErrorKind),
    /// The rate-limit backend failed (with [`OnBackendError::Deny`](crate::OnBackendError::Deny)).
    RateLimiter,
    /// The plan policy failed, timed out or panicked.
    PlanPolicy,
    /// The spend-cap backend failed (with [`OnBackendError::Deny`](crate::OnBackendError::Deny), the spend caps' default).
    UsageBackend,
}

/// Why a [`AuthRejection::CsrfFailed`] was given (server-side; the body is the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CsrfFailure {
    /// No CSRF token header, or more than one.
    MissingToken,
    /// The token is not the session's (another session's, or forged).
    WrongToken,
    /// `Sec-Fetch-Site` or `Origin` say the request came from another site.
    CrossSite,
}

impl CsrfFailure {
    /// A stable snake_case name, for logs and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::WrongToken => "wrong_token",
            Self::CrossSite => "cross_site",
        }
    }
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
    /// The key is disabled (reversibly; not revoked).
    Disabled,
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
            Self::Disabled => "disabled",
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
    /// 402 `spend_cap_exceeded`: the budget of the period is spent.
    #[non_exhaustive]
    SpendCapExceeded {
        /// Until the period ends; `None` for a budget that never resets
        /// ([`Period::Lifetime`](crate::usage::Period::Lifetime)).
        retry_after: Option<RetryAfter>,
        /// When the period ends (in the body as `resets_at`, RFC 3339); `None` for a
        /// budget that never resets.
        resets_at: Option<SystemTime>,
    },
    /// 403 `ip_not_allowed`: the key may not be used from the client's address.
    IpNotAllowed,
    /// 403 `csrf_failed`: a state-changing request authenticated by the session cookie
    /// without the session's CSRF token, or sent cross-site.
    #[non_exhaustive]
    CsrfFailed {
        /// Why (server-side only; the body is the same).
        failure: CsrfFailure,
        /// The configured CSRF cookie's name, which the message names.
        cookie: Arc<str>,
        /// The configured CSRF token header, which the message names.
        header: HeaderName,
    },
    /// 403 `plan_required`: the owner's plan does not allow keys of this environment.
    PlanRequired(Environment),
    /// 403 `plan_required`: the route requires this plan or higher
    /// ([`PlanLayer::require`](crate::usage::PlanLayer::require)), whatever the credential.
    RoutePlanRequired(crate::store::plan_policy::Plan),
    /// 429 `rate_limited`.
    #[non_exhaustive]
    RateLimited {
        /// When a request can succeed.
        retry_after: RetryAfter,
    },
    /// 500 `internal_error`: a layer or extractor ran without the authentication layer.
    MissingLayer(&'static str),
    /// 503 `auth_unavailable`: the key store (or rate limiter) failed; the key may be fine.
    #[non_exhaustive]
    Unavailable {
        /// What failed.
        cause: Unavailable,
        /// When the client should try again.
        retry_after: RetryAfter,
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

    /// 402 `spend_cap_exceeded`, until `resets_at`.
    pub fn spend_cap_exceeded(retry_after: RetryAfter, resets_at: SystemTime) -> Self {
        Self::SpendCapExceeded {
            retry_after: Some(retry_after),
            resets_at: Some(resets_at),
        }
    }

    /// 402 `spend_cap_exceeded` for a budget that never resets (one-time credits): no
    /// `Retry-After`, no `resets_at`.
    pub fn credits_spent() -> Self {
        Self::SpendCapExceeded {
            retry_after: None,
            resets_at: None,
        }
    }

    /// 429 `rate_limited`.
    pub fn rate_limited(retry_after: RetryAfter) -> Self {
        Self::RateLimited { retry_after }
    }

    /// 503 `auth_unavailable`.
    pub fn unavailable(cause: Unavailable, retry_after: RetryAfter) -> Self {
        Self::Unavailable { cause, retry_after }
    }

    /// 403 `csrf_failed`, naming the cookie and header the client should have used.
    pub(crate) fn csrf_failed(failure: CsrfFailure, cookie: Arc<str>, header: HeaderName) -> Self {
        Self::CsrfFailed {
            failure,
            cookie,
            header,
        }
    }

    /// The kind: where the status, code and gRPC code come from.
    pub const fn kind(&self) -> RejectionKind {
        match self {
            Self::InvalidRequest(_) => RejectionKind::InvalidRequest,
            Self::InvalidApiKey { .. } => RejectionKind::InvalidApiKey,
            Self::SpendCapExceeded { .. } => RejectionKind::SpendCapExceeded,
            Self::EnvironmentNotAllowed(_) => RejectionKind::EnvironmentNotAllowed,
            Self::InsufficientScope { .. } => RejectionKind::InsufficientScope,
            Self::IpNotAllowed => RejectionKind::IpNotAllowed,
            Self::CsrfFailed { .. } => RejectionKind::CsrfFailed,
            Self::PlanRequired(_) | Self::RoutePlanRequired(_) => RejectionKind::PlanRequired,
            Self::RateLimited { .. } => RejectionKind::RateLimited,
            Self::MissingLayer(_) => RejectionKind::InternalError,
            Self::Unavailable { .. } => RejectionKind::Unavailable,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.kind().status()
    }

    /// The machine-readable code of the JSON body.
    pub fn code(&self) -> &'static str {
        self.kind().code()
    }

    /// The gRPC status of the trailers-only response.
    pub fn grpc_code(&self) -> GrpcCode {
        self.kind().grpc_code()
    }

    /// The human-readable message shown to the client. Never says which 401 it was.
    pub fn message(&self) -> Cow<'static, str> {
        match self {
            Self::InvalidRequest(InvalidRequestReason::MalformedForwarded) => {
                "Malformed forwarded header".into()
            }
            Self::InvalidRequest(InvalidRequestReason::RepeatedCookie) => {
                "Ambiguous credentials: the session cookie was sent more than once".into()
            }
            Self::InvalidRequest(InvalidRequestReason::MalformedCookie) => {
                "Malformed cookie header".into()
            }
            Self::InvalidRequest(InvalidRequestReason::MalformedOriginal) => {
                "The proxy sent no well-formed original method and URI".into()
            }
            Self::InvalidRequest(_) => {
                "Ambiguous credentials: send exactly one API key, in one header".into()
            }
            Self::CsrfFailed { cookie, header, .. } => format!(
                "CSRF check failed: send the {cookie} cookie's value in the {header} header, from the same site"
            )
            .into(),
            Self::PlanRequired(env) => format!(
                "{} keys require a higher plan: upgrade to use them",
                capitalised(*env)
            )
            .into(),
            Self::RoutePlanRequired(plan) => format!(
                "This endpoint requires the {} plan or higher: upgrade to use it",
                plan.title()
            )
            .into(),
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
            Self::SpendCapExceeded {
                resets_at: None, ..
            } => "AI spend cap exceeded: these credits do not reset; upgrade plan".into(),
            Self::MissingLayer(what) => {
                format!("Server misconfigured: {what} is missing for this route").into()
            }
            // The kinds whose message is in the table.
            _ => self.kind().constant_message().unwrap_or_default().into(),
        }
    }

    /// When to retry, on 402, 429 and 503.
    pub fn retry_after(&self) -> Option<RetryAfter> {
        match self {
            Self::RateLimited { retry_after } | Self::Unavailable { retry_after, .. } => {
                Some(*retry_after)
            }
            Self::SpendCapExceeded { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// When a spent budget is whole again, on 402 (the body's `resets_at`).
    pub(crate) fn resets_at(&self) -> Option<SystemTime> {
        match self {
            Self::SpendCapExceeded { resets_at, .. } => *resets_at,
            _ => None,
        }
    }

    /// The RFC 6750 challenge, on 401 and 403. A request with no credential at all gets
    /// the bare `Bearer` challenge, without an error code (§3.1: the client sent no
    /// authentication information, so there is nothing to hide); every credential that
    /// was sent and refused gets the same `invalid_token`.
    pub fn www_authenticate(&self) -> Option<HeaderValue> {
        let challenge = match self {
            Self::InvalidApiKey {
                reason: InvalidKeyReason::Missing,
                ..
            } => return Some(HeaderValue::from_static("Bearer")),
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
            Self::CsrfFailed { failure, .. } => {
                tracing::debug!(target: "tower_api_key", code = self.code(), reason = failure.as_str(), "request rejected");
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
