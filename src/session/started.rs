//! [`StartedSession`] and [`SessionCookies`]: what a login gives, to set on the response.

use super::*;

/// A session just started: its record and the cookies to set.
#[derive(Debug)]
pub struct StartedSession<S: crate::scope::Scope> {
    pub(super) record: Arc<KeyRecord<S>>,
    pub(super) cookies: SessionCookies,
}

impl<S: crate::scope::Scope> StartedSession<S> {
    /// The stored record (digest only; the token is in the cookie).
    pub fn record(&self) -> &Arc<KeyRecord<S>> {
        &self.record
    }

    /// The `Set-Cookie` values.
    pub fn cookies(&self) -> &SessionCookies {
        &self.cookies
    }

    /// The `Set-Cookie` values, taken.
    pub fn into_cookies(self) -> SessionCookies {
        self.cookies
    }
}

/// The two `Set-Cookie` values of a login or logout (marked sensitive), and the CSRF token
/// of a login, which a page may also want in its JSON body. With the `axum` feature it is
/// `IntoResponseParts`.
#[derive(Clone)]
pub struct SessionCookies {
    pub(super) values: [HeaderValue; 2],
    pub(super) csrf_token: Option<String>,
}

impl SessionCookies {
    /// The `Set-Cookie` values: the session cookie, then the CSRF cookie.
    pub fn set_cookie_values(&self) -> &[HeaderValue; 2] {
        &self.values
    }

    /// Appends both as `Set-Cookie` to `headers`.
    pub fn append_to(&self, headers: &mut HeaderMap) {
        for value in &self.values {
            headers.append(SET_COOKIE, value.clone());
        }
    }

    /// The CSRF token (the `forge_csrf` cookie's value) of a login; `None` for a logout.
    pub fn csrf_token(&self) -> Option<&str> {
        self.csrf_token.as_deref()
    }

    /// The `Cookie` request header a browser would send back (`name=value; name=value`),
    /// for tests and non-browser clients. Handle with care: it holds the session token.
    pub fn cookie_header(&self) -> String {
        self.values
            .iter()
            .filter_map(|value| value.to_str().ok())
            .filter_map(|set_cookie| set_cookie.split(';').next())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl fmt::Debug for SessionCookies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionCookies")
            .field("values", &"[redacted]")
            .finish()
    }
}

#[cfg(feature = "axum")]
impl axum_core::response::IntoResponseParts for SessionCookies {
    type Error = std::convert::Infallible;

    fn into_response_parts(
        self,
        mut parts: axum_core::response::ResponseParts,
    ) -> Result<axum_core::response::ResponseParts, Self::Error> {
        self.append_to(parts.headers_mut());
        Ok(parts)
    }
}
