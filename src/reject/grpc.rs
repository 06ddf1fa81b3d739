//! [`GrpcRenderer`]: trailers-only gRPC responses.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use http::Response;

use super::{add_common_headers, AuthRejection, RenderRejection};

/// A trailers-only gRPC response (HTTP 200, `grpc-status`, percent-encoded
/// `grpc-message`), whatever the request.
///
/// ```
/// use http::HeaderMap;
/// use tower_api_key::reject::{AuthRejection, GrpcRenderer, RenderRejection, RetryAfter};
///
/// let rejection = AuthRejection::rate_limited(RetryAfter::ONE_SECOND);
/// let response = GrpcRenderer.render(&rejection, &HeaderMap::new());
/// assert_eq!(response.status(), 200);
/// assert_eq!(response.headers()["grpc-status"], "8");
/// assert_eq!(response.headers()["grpc-message"], "Rate limit exceeded");
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcRenderer;

/// gRPC's Percent-Byte-Unencoded is %x20-%x24 / %x26-%x7E: everything else is encoded.
const GRPC_MESSAGE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'%');

impl RenderRejection for GrpcRenderer {
    fn render(&self, rejection: &AuthRejection, _: &HeaderMap) -> Response<Bytes> {
        let mut response = Response::new(Bytes::new());
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert(
            "grpc-status",
            HeaderValue::from(u16::from(rejection.grpc_code().as_u8())),
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

/// The gRPC status codes a rejection can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u8)]
pub enum GrpcCode {
    /// 3: an ambiguous request.
    InvalidArgument = 3,
    /// 7: a missing scope or a refused environment.
    PermissionDenied = 7,
    /// 8: rate limited or over a spend cap.
    ResourceExhausted = 8,
    /// 13: a misconfigured route.
    Internal = 13,
    /// 14: the store or limiter is down.
    Unavailable = 14,
    /// 16: a missing or bad credential.
    Unauthenticated = 16,
}

impl GrpcCode {
    /// The numeric code, as sent in `grpc-status`.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }
}

/// Whether the request is gRPC (`content-type: application/grpc`, `+proto`, `+json`, ...).
pub(crate) fn is_grpc(request_headers: &HeaderMap) -> bool {
    request_headers
        .get(CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_are_the_protocol_numbers() {
        let codes = [
            (GrpcCode::InvalidArgument, 3),
            (GrpcCode::PermissionDenied, 7),
            (GrpcCode::ResourceExhausted, 8),
            (GrpcCode::Internal, 13),
            (GrpcCode::Unavailable, 14),
            (GrpcCode::Unauthenticated, 16),
        ];
        for (code, number) in codes {
            assert_eq!(code.as_u8(), number, "{code:?}");
        }
    }
}
