//! [`JsonRenderer`]: the FORG JSON body, `{"error":…,"code":…,"status":…}`.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use http::Response;

use super::{add_common_headers, AuthRejection, InvalidRequestReason, RenderRejection};

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
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        add_common_headers(rejection, headers);
        response
    }
}

/// The body. The frequent, constant bodies are static: rejecting costs no serialisation.
pub(crate) fn body(rejection: &AuthRejection) -> Bytes {
    let constant: &'static [u8] = match rejection {
        AuthRejection::InvalidApiKey { .. } => br#"{"error":"Invalid API key","code":"invalid_api_key","status":401}"#,
        AuthRejection::InvalidRequest(InvalidRequestReason::RepeatedHeader(_))
        | AuthRejection::InvalidRequest(InvalidRequestReason::AmbiguousCredentials) => {
            br#"{"error":"Ambiguous credentials: send exactly one API key, in one header","code":"invalid_request","status":400}"#
        }
        AuthRejection::RateLimited { .. } => br#"{"error":"Rate limit exceeded","code":"rate_limited","status":429}"#,
        AuthRejection::Unavailable { .. } => br#"{"error":"Authentication is temporarily unavailable","code":"auth_unavailable","status":503}"#,
        _ => return serialized(rejection),
    };
    Bytes::from_static(constant)
}

fn serialized(rejection: &AuthRejection) -> Bytes {
    #[derive(serde::Serialize)]
    struct Body<'a> {
        error: &'a str,
        code: &'a str,
        status: u16,
        #[serde(skip_serializing_if = "Option::is_none")]
        resets_at: Option<String>,
    }
    let message = rejection.message();
    let resets_at = match rejection {
        AuthRejection::SpendCapExceeded { resets_at, .. } => {
            Some(crate::usage::Rfc3339(*resets_at).to_string())
        }
        _ => None,
    };
    let body = Body {
        error: &message,
        code: rejection.code(),
        status: rejection.status().as_u16(),
        resets_at,
    };
    serde_json::to_vec(&body)
        .map(Bytes::from)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reject::{InvalidKeyReason, RetryAfter, Unavailable};

    #[test]
    fn static_bodies_equal_serialized_ones() {
        let rejections = [
            AuthRejection::invalid_key(InvalidKeyReason::Revoked, None),
            AuthRejection::InvalidRequest(InvalidRequestReason::AmbiguousCredentials),
            AuthRejection::InvalidRequest(InvalidRequestReason::RepeatedHeader(
                http::header::AUTHORIZATION,
            )),
            AuthRejection::rate_limited(RetryAfter::from_duration(std::time::Duration::from_secs(
                3,
            ))),
            AuthRejection::unavailable(Unavailable::RateLimiter, RetryAfter::ONE_SECOND),
        ];
        for rejection in rejections {
            assert_eq!(body(&rejection), serialized(&rejection), "{rejection:?}");
        }
    }
}
