//! [`RenderRejection`]: how a rejection becomes a response, and [`DefaultRenderer`].

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::Response;

use super::{is_grpc, AuthRejection, GrpcRenderer, JsonRenderer};

/// Turns a rejection into a response. Implemented for closures
/// `Fn(&AuthRejection, &HeaderMap) -> Response<Bytes>`.
///
/// `request_headers` are the rejected request's, for content negotiation. A renderer must
/// not reveal the [`InvalidKeyReason`](super::InvalidKeyReason) of a 401: that would tell an attacker which keys
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
/// let response = plain.render(&AuthRejection::IpNotAllowed, &HeaderMap::new());
/// assert_eq!(response.status(), 403);
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

/// The FORG JSON body ([`JsonRenderer`]) for HTTP requests, a trailers-only response
/// ([`GrpcRenderer`]) for gRPC requests.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultRenderer;

impl RenderRejection for DefaultRenderer {
    fn render(&self, rejection: &AuthRejection, request_headers: &HeaderMap) -> Response<Bytes> {
        if is_grpc(request_headers) {
            GrpcRenderer.render(rejection, request_headers)
        } else {
            JsonRenderer.render(rejection, request_headers)
        }
    }
}

/// `WWW-Authenticate` and `Retry-After`, for every renderer of the crate.
pub(crate) fn add_common_headers(rejection: &AuthRejection, headers: &mut HeaderMap) {
    if let Some(challenge) = rejection.www_authenticate() {
        headers.insert(WWW_AUTHENTICATE, challenge);
    }
    if let Some(retry_after) = rejection.retry_after() {
        headers.insert(RETRY_AFTER, HeaderValue::from(retry_after.as_secs()));
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
