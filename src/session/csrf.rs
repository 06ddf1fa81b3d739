//! The CSRF check of cookie-authenticated requests: same-site by `Sec-Fetch-Site` /
//! `Origin` (tower-http's `CsrfLayer`), then the double-submit token, bound to the session.

use std::convert::Infallible;
use std::fmt;
use std::future::{ready, Ready};
use std::task::{Context, Poll};

use futures_util::FutureExt;
use hmac::{Hmac, KeyInit, Mac};
use http::header::{HeaderName, HOST, ORIGIN};
use http::{Method, Request, Response};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tower_http::csrf::{Csrf, CsrfLayer, ProtectionError};
use tower_layer::Layer;
use tower_service::Service;

use crate::key::KeyDigest;
use crate::reject::CsrfFailure;

/// The server secret CSRF tokens are derived from: `token = HMAC-SHA-256(secret, session
/// digest)`, hex. A token is worth one session only, and cannot be made without the secret,
/// so a token planted by a sibling subdomain, or taken from another session, is refused.
/// Every instance serving the same sessions needs the same secret; rotating it invalidates
/// the CSRF tokens (not the sessions: users log in again to get a new one).
///
/// `Debug` does not show it; it is zeroized on drop (inside `hmac`'s state).
#[derive(Clone)]
pub struct CsrfSecret {
    mac: Hmac<Sha256>,
}

/// A CSRF secret was shorter than 32 bytes, or randomness was unavailable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a CSRF secret needs at least 32 bytes")]
pub struct InvalidCsrfSecret;

impl CsrfSecret {
    /// At least 32 bytes kept outside the stores (an environment variable, a secret
    /// manager), shared by every instance.
    ///
    /// # Errors
    /// [`InvalidCsrfSecret`] when `secret` is shorter than 32 bytes.
    pub fn from_bytes(secret: &[u8]) -> Result<Self, InvalidCsrfSecret> {
        if secret.len() < 32 {
            return Err(InvalidCsrfSecret);
        }
        let mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| InvalidCsrfSecret)?;
        Ok(Self { mac })
    }

    /// 32 random bytes from the OS CSPRNG: for a single instance, or tests (sessions'
    /// CSRF tokens then die with the process).
    ///
    /// # Errors
    /// [`InvalidCsrfSecret`] when the operating system has no randomness to give.
    pub fn generate() -> Result<Self, InvalidCsrfSecret> {
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut *bytes).map_err(|_| InvalidCsrfSecret)?;
        Self::from_bytes(&*bytes)
    }

    /// The token of the session whose digest is `session`: 64 lower-case hex characters.
    pub(crate) fn token(&self, session: &KeyDigest) -> String {
        base16ct::lower::encode_string(self.mac_of(session).as_bytes())
    }

    /// The token's bytes (held as a digest, for its constant-time comparison).
    fn mac_of(&self, session: &KeyDigest) -> KeyDigest {
        let mut mac = self.mac.clone();
        mac.update(b"forge-csrf-v1:");
        mac.update(session.as_bytes());
        KeyDigest::from_bytes(mac.finalize().into_bytes().into())
    }
}

impl fmt::Debug for CsrfSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CsrfSecret([redacted])")
    }
}

/// The inner service of the tower-http check: it only says "passed".
#[derive(Clone, Copy, Debug)]
pub(crate) struct Passed;

impl Service<Request<()>> for Passed {
    type Response = Response<()>;
    type Error = Infallible;
    type Future = Ready<Result<Response<()>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        ready(Ok(Response::new(())))
    }
}

/// The CSRF rules for cookie-authenticated requests.
#[derive(Clone)]
pub(crate) struct CsrfCheck {
    pub(crate) secret: CsrfSecret,
    pub(crate) header: HeaderName,
    /// tower-http's cross-origin check (Go 1.25's `CrossOriginProtection`), run on a copy
    /// of the headers it reads: it is a layer, and only cookie-authenticated requests may
    /// be subject to it (API-key clients may be cross-origin by design).
    pub(crate) cross_origin: Csrf<Passed>,
}

impl CsrfCheck {
    pub(crate) fn new(secret: CsrfSecret, header: HeaderName, layer: &CsrfLayer) -> Self {
        Self {
            secret,
            header,
            cross_origin: layer.layer(Passed),
        }
    }

    /// Checks a request authenticated by the session whose digest is `session`.
    pub(crate) fn check<B>(
        &self,
        request: &Request<B>,
        session: &KeyDigest,
    ) -> Result<(), CsrfFailure> {
        // Safe methods change nothing (RFC 9110 §9.2.1): no token needed.
        if matches!(
            *request.method(),
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
        ) {
            return Ok(());
        }
        self.same_site(request)?;
        let mut tokens = request.headers().get_all(&self.header).iter();
        let (Some(sent), None) = (tokens.next(), tokens.next()) else {
            return Err(CsrfFailure::MissingToken);
        };
        // Decoded first (lower-case hex only; its length is public), then compared in
        // constant time as 32 bytes.
        let mut bytes = [0u8; 32];
        match base16ct::lower::decode(sent.as_bytes(), &mut bytes) {
            Ok(decoded) if decoded.len() == 32 => {}
            _ => return Err(CsrfFailure::WrongToken),
        }
        let sent = KeyDigest::from_bytes(bytes);
        if bool::from(sent.ct_eq(&self.secret.mac_of(session))) {
            Ok(())
        } else {
            Err(CsrfFailure::WrongToken)
        }
    }

    fn same_site<B>(&self, request: &Request<B>) -> Result<(), CsrfFailure> {
        // tower-http's rule 3, answered here for the common case without copying the
        // request: a browser saying `same-origin` (or `none`, user-initiated) passes.
        let mut fetch_site = request.headers().get_all(&SEC_FETCH_SITE).iter();
        if let (Some(site), None) = (fetch_site.next(), fetch_site.next()) {
            if matches!(site.as_bytes(), b"same-origin" | b"none") {
                return Ok(());
            }
        }
        let mut probe = Request::new(());
        *probe.method_mut() = request.method().clone();
        *probe.uri_mut() = request.uri().clone();
        let headers = request.headers();
        for name in [&HOST, &ORIGIN, &SEC_FETCH_SITE] {
            for value in headers.get_all(name) {
                probe.headers_mut().append(name.clone(), value.clone());
            }
        }
        let answer = self
            .cross_origin
            .clone()
            .call(probe)
            .now_or_never()
            .and_then(Result::ok);
        match answer {
            Some(response) if response.extensions().get::<ProtectionError>().is_none() => Ok(()),
            _ => Err(CsrfFailure::CrossSite),
        }
    }
}

const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

impl fmt::Debug for CsrfCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CsrfCheck")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}
