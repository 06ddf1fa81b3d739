//! [`OriginalRequest`]: where a proxy puts the method and URI of the request it asks about.

use http::header::HOST;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, Method, Request, Uri};

use crate::reject::{AuthRejection, InvalidRequestReason};

/// Where the original method and URI are: in headers the proxy sets (nginx, Caddy,
/// Traefik), or the auth request itself under a path prefix (Envoy's `ext_authz` HTTP
/// service).
#[derive(Clone, Debug)]
pub enum OriginalRequest {
    /// In headers: the method's, the URI's (path and query), and optionally the host's.
    Headers {
        /// e.g. `X-Original-Method`.
        method: HeaderName,
        /// e.g. `X-Original-URI`.
        uri: HeaderName,
        /// e.g. `X-Forwarded-Host`: becomes the request's `Host` when present.
        host: Option<HeaderName>,
    },
    /// The auth request is the original one, its path under `prefix` (e.g. `/auth`).
    Prefixed(String),
}

impl OriginalRequest {
    /// nginx's convention (`proxy_set_header X-Original-Method $request_method;`,
    /// `X-Original-URI $request_uri`).
    pub fn nginx() -> Self {
        Self::Headers {
            method: HeaderName::from_static("x-original-method"),
            uri: HeaderName::from_static("x-original-uri"),
            host: None,
        }
    }

    /// Traefik's and Caddy's (`X-Forwarded-Method`, `X-Forwarded-Uri`,
    /// `X-Forwarded-Host`).
    pub fn forwarded() -> Self {
        Self::Headers {
            method: HeaderName::from_static("x-forwarded-method"),
            uri: HeaderName::from_static("x-forwarded-uri"),
            host: Some(HeaderName::from_static("x-forwarded-host")),
        }
    }

    /// Makes `request` the original one; a request without a well-formed original is
    /// refused (400): a proxy that says nothing is never taken to mean `GET /`.
    pub(crate) fn restore<B>(&self, request: &mut Request<B>) -> Result<(), AuthRejection> {
        let malformed = || AuthRejection::InvalidRequest(InvalidRequestReason::MalformedOriginal);
        let (method, path) = match self {
            Self::Headers { method, uri, host } => {
                let method = one(request.headers(), method)
                    .and_then(|value| Method::from_bytes(value).ok())
                    .ok_or_else(malformed)?;
                let path = one(request.headers(), uri)
                    .and_then(|value| PathAndQuery::try_from(value).ok())
                    .filter(|path| path.as_str().starts_with('/'))
                    .ok_or_else(malformed)?;
                if let Some(host) = host.as_ref().and_then(|h| request.headers().get(h)) {
                    let host = host.clone();
                    request.headers_mut().insert(HOST, host);
                }
                (method, path)
            }
            Self::Prefixed(prefix) => {
                let rest = request
                    .uri()
                    .path()
                    .strip_prefix(prefix.trim_end_matches('/'))
                    .filter(|rest| rest.is_empty() || rest.starts_with('/'))
                    .ok_or_else(malformed)?;
                let rest = if rest.is_empty() { "/" } else { rest };
                let path = match request.uri().query() {
                    Some(query) => format!("{rest}?{query}"),
                    None => rest.to_owned(),
                };
                let path = PathAndQuery::try_from(path).map_err(|_| malformed())?;
                (request.method().clone(), path)
            }
        };
        *request.method_mut() = method;
        *request.uri_mut() = Uri::from(path);
        Ok(())
    }
}

/// The header's only value (a repeated one is ambiguous: none).
fn one<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a [u8]> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?;
    values.next().is_none().then_some(value.as_bytes())
}
