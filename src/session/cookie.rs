//! The two cookies: reading the session cookie from `Cookie` headers, and writing both
//! with the `cookie` crate.

use std::time::Duration;

use cookie::{Cookie, SameSite};
use http::header::{HeaderMap, HeaderValue, COOKIE};

use crate::reject::{AuthRejection, InvalidRequestReason};

/// The cookies' names and whether they are `Secure`.
#[derive(Clone, Debug)]
pub(crate) struct CookieSettings {
    pub(crate) session: String,
    /// Shared with every [`AuthRejection::CsrfFailed`], whose message names it.
    pub(crate) csrf: std::sync::Arc<str>,
    pub(crate) secure: bool,
}

impl CookieSettings {
    /// The session cookie (HttpOnly, SameSite=Lax) and the CSRF cookie (readable by scripts,
    /// SameSite=Strict), both `Secure` for `max_age`.
    pub(crate) fn set_cookies(
        &self,
        session: &str,
        csrf: &str,
        max_age: Duration,
    ) -> [HeaderValue; 2] {
        let max_age =
            cookie::time::Duration::seconds(i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX));
        let session = Cookie::build((self.session.as_str(), session))
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Lax)
            .path("/")
            .max_age(max_age);
        let csrf = Cookie::build((&*self.csrf, csrf))
            .http_only(false)
            .secure(self.secure)
            .same_site(SameSite::Strict)
            .path("/")
            .max_age(max_age);
        [header_value(&session.build()), header_value(&csrf.build())]
    }

    /// Both cookies emptied and expired now (logout).
    pub(crate) fn clear_cookies(&self) -> [HeaderValue; 2] {
        self.set_cookies("", "", Duration::ZERO)
    }

    /// The session cookie's value, if the request has one. Every `Cookie` header is read
    /// (HTTP/2 sends one per cookie); pairs that do not parse are someone else's and are
    /// skipped, as browsers do.
    ///
    /// The pairs are read here rather than by `cookie::Cookie::split_parse`, with the same
    /// rules (split on `;`, name before the first `=`, both trimmed; `tests/it/properties.rs`
    /// checks that the two agree): the crate builds a full `Cookie` per pair, which
    /// measured 4.6 × SHA-256 per request on the hot path.
    ///
    /// # Errors
    /// 400 `invalid_request` when the session cookie is there twice (which to trust cannot
    /// be told) or a `Cookie` header is not UTF-8.
    pub(crate) fn session_in<'h>(
        &self,
        headers: &'h HeaderMap,
    ) -> Result<Option<&'h str>, AuthRejection> {
        let mut found = None;
        for value in headers.get_all(COOKIE) {
            let text = std::str::from_utf8(value.as_bytes()).map_err(|_| {
                AuthRejection::InvalidRequest(InvalidRequestReason::MalformedCookie)
            })?;
            for pair in text.split(';') {
                // `name = value`, both trimmed: the name first, without splitting pairs
                // that are someone else's.
                let Some(rest) = pair.trim_start().strip_prefix(self.session.as_str()) else {
                    continue;
                };
                let Some(value) = rest.trim_start().strip_prefix('=') else {
                    continue; // a longer name, or no value
                };
                if found.is_some() {
                    return Err(AuthRejection::InvalidRequest(
                        InvalidRequestReason::RepeatedCookie,
                    ));
                }
                // Borrowed from the header: nothing is copied.
                found = Some(value.trim());
            }
        }
        Ok(found)
    }
}

/// Marks every `Cookie` header sensitive, so `Debug` of the request and HTTP/2 header
/// compression leave the session token alone.
pub(crate) fn protect(headers: &mut HeaderMap) {
    if let http::header::Entry::Occupied(mut cookies) = headers.entry(COOKIE) {
        for value in cookies.iter_mut() {
            value.set_sensitive(true);
        }
    }
}

fn header_value(cookie: &Cookie<'_>) -> HeaderValue {
    let mut value = HeaderValue::try_from(cookie.to_string())
        .expect("validated names and generated values make a valid header");
    value.set_sensitive(true);
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protect_marks_one_cookie_header_or_several() {
        let mut one = HeaderMap::new();
        one.insert(COOKIE, HeaderValue::from_static("a=1; forge_session=x"));
        protect(&mut one);
        assert!(one[COOKIE].is_sensitive());

        let mut two = HeaderMap::new();
        two.append(COOKIE, HeaderValue::from_static("a=1"));
        two.append(COOKIE, HeaderValue::from_static("forge_session=x"));
        protect(&mut two);
        assert!(two.get_all(COOKIE).iter().all(HeaderValue::is_sensitive));
        assert_eq!(two.get_all(COOKIE).iter().count(), 2);

        let mut none = HeaderMap::new();
        protect(&mut none);
        assert!(none.is_empty());
    }
}
