//! [`JsonRenderer`] and [`ErrorBody`]: the FORG JSON body, `{"error":…,"code":…,"status":…}`,
//! written here for the layers and the management API alike.

use std::sync::OnceLock;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};

use super::{add_common_headers, AuthRejection, RejectionKind, RenderRejection};

/// The FORG JSON error body with `WWW-Authenticate` (401, 403) and `Retry-After` (429,
/// 503), whatever the request.
///
/// ```
/// use http::HeaderMap;
/// use tower_api_key::reject::{AuthRejection, JsonRenderer, RenderRejection};
///
/// let rejection = AuthRejection::insufficient_scope("write:rules", "write:rules", false);
/// let response = JsonRenderer.render(&rejection, &HeaderMap::new());
/// assert_eq!(response.status(), 403);
/// assert_eq!(
///     response.body().as_ref(),
///     br#"{"error":"Insufficient scope: write:rules required","code":"insufficient_scope","status":403}"#
/// );
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonRenderer;

impl RenderRejection for JsonRenderer {
    fn render(&self, rejection: &AuthRejection, _: &HeaderMap) -> Response<Bytes> {
        let mut response = Response::new(body(rejection));
        *response.status_mut() = rejection.status();
        *response.headers_mut() = headers(rejection);
        response
    }
}

/// `Content-Type` and the common headers. The 401s' maps are the same every time (no
/// `Retry-After`, a constant challenge): cloned from one made once, which is a third of
/// the work of inserting into a new map (hashing, probing, growing).
fn headers(rejection: &AuthRejection) -> HeaderMap {
    static UNAUTHORIZED: [OnceLock<HeaderMap>; 2] = [const { OnceLock::new() }; 2];
    let constant = match rejection {
        AuthRejection::InvalidApiKey {
            reason: super::InvalidKeyReason::Missing,
            ..
        } => Some(&UNAUTHORIZED[0]),
        AuthRejection::InvalidApiKey { .. } => Some(&UNAUTHORIZED[1]),
        _ => None,
    };
    let made = || {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        add_common_headers(rejection, &mut headers);
        headers
    };
    match constant {
        Some(once) => once.get_or_init(made).clone(),
        None => made(),
    }
}

/// The FORG error body: `error` (for people), `code`, `status`, and where they apply
/// `resets_at` (402) and `fields` (422).
#[derive(serde::Serialize)]
#[cfg_attr(feature = "axum", derive(utoipa::ToSchema), schema(as = Error))]
pub(crate) struct ErrorBody<'a> {
    pub(crate) error: &'a str,
    pub(crate) code: &'a str,
    pub(crate) status: u16,
    /// When a spent budget is whole again (402; absent for credits, which never are).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "axum", schema(value_type = Option<String>, format = DateTime))]
    pub(crate) resets_at: Option<crate::support::timestamp::Rfc3339>,
    /// The offending fields (422).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    #[cfg_attr(feature = "axum", schema(value_type = Option<Vec<FieldError<'static>>>))]
    pub(crate) fields: &'a [FieldError<'a>],
}

/// One offending field of a 422.
#[derive(serde::Serialize)]
#[cfg_attr(feature = "axum", derive(utoipa::ToSchema))]
pub(crate) struct FieldError<'a> {
    pub(crate) field: &'a str,
    pub(crate) message: &'a str,
}

impl<'a> ErrorBody<'a> {
    pub(crate) fn new(status: StatusCode, code: &'a str, error: &'a str) -> Self {
        Self {
            error,
            code,
            status: status.as_u16(),
            resets_at: None,
            fields: &[],
        }
    }

    pub(crate) fn to_bytes(&self) -> Bytes {
        serde_json::to_vec(self)
            .map(Bytes::from)
            .unwrap_or_default()
    }
}

/// The body. A kind with one message and no per-request field has one body, serialised
/// once and then shared: rejecting the frequent kinds (401, 429, 503) costs no
/// serialisation.
pub(crate) fn body(rejection: &AuthRejection) -> Bytes {
    static CONSTANT: [OnceLock<Bytes>; RejectionKind::ALL.len()] =
        [const { OnceLock::new() }; RejectionKind::ALL.len()];
    let kind = rejection.kind();
    // A 402 without `resets_at` (spent credits) has one body too.
    if kind.constant_message().is_some() && rejection.resets_at().is_none() {
        return CONSTANT[kind.index()]
            .get_or_init(|| serialized(rejection))
            .clone();
    }
    serialized(rejection)
}

fn serialized(rejection: &AuthRejection) -> Bytes {
    let message = rejection.message();
    let mut body = ErrorBody::new(rejection.status(), rejection.code(), &message);
    body.resets_at = rejection
        .resets_at()
        .map(crate::support::timestamp::Rfc3339);
    body.to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reject::{InvalidKeyReason, RetryAfter, Unavailable};

    #[test]
    fn shared_bodies_equal_serialized_ones() {
        let rejections = [
            AuthRejection::invalid_key(InvalidKeyReason::Revoked, None),
            AuthRejection::invalid_key(InvalidKeyReason::Missing, None),
            AuthRejection::rate_limited(RetryAfter::from_duration(std::time::Duration::from_secs(
                3,
            ))),
            AuthRejection::unavailable(Unavailable::RateLimiter, RetryAfter::ONE_SECOND),
            AuthRejection::IpNotAllowed,
        ];
        for rejection in rejections {
            assert_eq!(body(&rejection), serialized(&rejection), "{rejection:?}");
            assert_eq!(body(&rejection), body(&rejection), "{rejection:?}");
        }
    }

    /// The 401s' shared header maps are the ones inserting would make, for every reason
    /// (twice: the first makes the shared map, the second clones it).
    #[test]
    fn shared_header_maps_equal_made_ones() {
        use InvalidKeyReason::*;
        let reasons = [
            Missing,
            Malformed,
            Unknown,
            DigestMismatch,
            Revoked,
            Expired,
            EnvironmentMismatch,
            Disabled,
        ];
        for reason in reasons {
            let rejection = AuthRejection::invalid_key(reason, None);
            let mut made = HeaderMap::new();
            made.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            add_common_headers(&rejection, &mut made);
            assert_eq!(made.len(), 2, "{reason:?}: content type and challenge");
            for _ in 0..2 {
                let response = JsonRenderer.render(&rejection, &HeaderMap::new());
                assert_eq!(response.headers(), &made, "{reason:?}");
                assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            }
        }
    }
}
