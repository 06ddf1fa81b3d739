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
    /// `session` and `csrf` are validated cookie names.
    pub(crate) fn new(session: &str, csrf: &str, secure: bool) -> Self {
        Self {
            session: session.to_owned(),
            csrf: csrf.into(),
            secure,
        }
    }

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
            let bytes = value.as_bytes();
            if is_ascii(bytes) {
                self.ascii_pairs(bytes, &mut found)?;
            } else {
                let text = std::str::from_utf8(bytes).map_err(|_| malformed())?;
                self.text_pairs(text, &mut found)?;
            }
        }
        Ok(found)
    }

    /// The pairs of an ASCII header, as bytes: `;` found with SIMD, and only the
    /// session's value made a `str`. Reading the whole header as text was the largest part
    /// of a session's cost over a key's (`benches/README.md`).
    fn ascii_pairs<'h>(
        &self,
        bytes: &'h [u8],
        found: &mut Option<&'h str>,
    ) -> Result<(), AuthRejection> {
        let name = self.session.as_bytes();
        let mut start = 0;
        loop {
            let end = memchr::memchr(b';', &bytes[start..]).map_or(bytes.len(), |at| start + at);
            if let Some(value) = trim_start(&bytes[start..end])
                .strip_prefix(name)
                .and_then(|rest| trim_start(rest).strip_prefix(b"="))
            {
                if found.is_some() {
                    return Err(repeated());
                }
                let value = trim_end(trim_start(value));
                *found = Some(std::str::from_utf8(value).map_err(|_| malformed())?);
            }
            if end == bytes.len() {
                return Ok(());
            }
            start = end + 1;
        }
    }

    /// The pairs of a header with other UTF-8 (trimmed as `str::trim` does).
    fn text_pairs<'h>(
        &self,
        text: &'h str,
        found: &mut Option<&'h str>,
    ) -> Result<(), AuthRejection> {
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
                return Err(repeated());
            }
            // Borrowed from the header: nothing is copied.
            *found = Some(value.trim());
        }
        Ok(())
    }
}

fn malformed() -> AuthRejection {
    AuthRejection::InvalidRequest(InvalidRequestReason::MalformedCookie)
}

fn repeated() -> AuthRejection {
    AuthRejection::InvalidRequest(InvalidRequestReason::RepeatedCookie)
}

/// `<[u8]>::is_ascii` a word at a time (the standard one went byte by byte here: ~2
/// instructions a byte of a 100-byte header).
fn is_ascii(bytes: &[u8]) -> bool {
    let chunks = bytes.chunks_exact(8);
    let tail = chunks.remainder().iter().fold(0, |seen, b| seen | b);
    let words = chunks.fold(0, |seen, chunk| {
        seen | u64::from_ne_bytes(chunk.try_into().unwrap_or([0x80; 8]))
    });
    (words & 0x8080_8080_8080_8080 == 0) && tail < 0x80
}

/// The ASCII bytes `str::trim` removes (White_Space: tab to carriage return, and space).
fn is_space(byte: u8) -> bool {
    matches!(byte, b'\t'..=b'\r' | b' ')
}

fn trim_start(bytes: &[u8]) -> &[u8] {
    let spaces = bytes.iter().take_while(|b| is_space(**b)).count();
    &bytes[spaces..]
}

fn trim_end(bytes: &[u8]) -> &[u8] {
    let spaces = bytes.iter().rev().take_while(|b| is_space(**b)).count();
    &bytes[..bytes.len() - spaces]
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

    #[test]
    fn is_ascii_agrees_with_the_standard_one() {
        for len in 0..=24 {
            for at in 0..len {
                for byte in [0x00, 0x41, 0x7F, 0x80, 0xC3, 0xFF] {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = byte;
                    assert_eq!(
                        is_ascii(&bytes),
                        bytes.is_ascii(),
                        "{byte:#x} at {at} of {len}"
                    );
                }
            }
        }
    }

    /// The byte reader of ASCII headers against the text reader (`str::split`,
    /// `str::trim`) on 200,000 headers drawn from the pieces that matter: the name, `=`,
    /// `;`, every ASCII space `str::trim` removes, longer names and whole pairs.
    #[test]
    fn ascii_pairs_read_as_text_pairs() {
        let settings = CookieSettings::new("sid", "csrf", true);
        let pieces: [&[u8]; 14] = [
            b"sid",
            b"=",
            b";",
            b" ",
            b"\t",
            b"\x0b",
            b"\x0c",
            b"\r",
            b"x",
            b"sidx",
            b"A",
            b"xsid",
            b"sid=v;",
            b" sid =w ;",
        ];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let (mut some, mut repeated) = (0, 0);
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 10) as usize;
            let header: Vec<u8> = (0..len)
                .flat_map(|i| pieces[((state >> (i * 5 % 59)) as usize + i) % pieces.len()])
                .copied()
                .collect();
            let (mut bytes, mut text) = (None, None);
            let by_bytes = settings.ascii_pairs(&header, &mut bytes).map(|()| bytes);
            let as_text = std::str::from_utf8(&header).unwrap();
            let by_text = settings.text_pairs(as_text, &mut text).map(|()| text);
            some += usize::from(matches!(by_text, Ok(Some(_))));
            repeated += usize::from(by_text.is_err());
            assert_eq!(
                by_bytes.map_err(|e| e.code()),
                by_text.map_err(|e| e.code()),
                "{as_text:?}"
            );
        }
        assert!(
            some > 1_000 && repeated > 500,
            "{some} found, {repeated} repeated"
        );
    }
}
