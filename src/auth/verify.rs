//! The steps of authentication, from headers to a verdict, and how the verdict changes the
//! request.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use subtle::{Choice, ConstantTimeEq};

use crate::activity::{ActivityTicket, Verified};
use crate::client_ip::client_ip_of;
use crate::credential::{CredentialError, CredentialSources};
use crate::key::{Environment, KeyDigest};
use crate::metrics::{LookupCounters, RequestCounters};
use crate::principal::{CredentialKind, Principal};
use crate::reject::is_grpc;
use crate::reject::{
    respond, AuthRejection, InvalidKeyReason, InvalidRequestReason, RejectionKind, RenderRejection,
    RetryAfter, Unavailable,
};
use crate::scope::ScopeSet;
use crate::session::{SessionAuth, SessionStore};
use crate::store::{KeyRecord, KeyStatus, KeyStore, LookupResult, StoreError, StoreErrorKind};
use crate::support::gate::{guarded, Deferred, Gate, Unanswered};

/// A verified record and the credential source it came from, or the rejection.
pub(crate) type Verdict<Sc> = Result<(Arc<KeyRecord<Sc>>, Source), AuthRejection>;

/// Where the credential came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// A key header: its index in the [`CredentialSources`].
    Header(usize),
    /// The session cookie.
    Cookie,
}

/// What the layer needs after a lookup: the digest, the key's environment, its source.
pub(crate) struct Prepared {
    pub(crate) digest: KeyDigest,
    environment: Environment,
    source: Source,
}

/// Compared against when the store knows no record, so an unknown key costs the same
/// constant-time comparison as a known one.
const NO_RECORD: KeyDigest = KeyDigest::from_bytes([0; 32]);

pub(crate) struct Config<St: KeyStore> {
    pub(crate) store: Arc<St>,
    pub(crate) sources: CredentialSources,
    pub(crate) only_environment: Option<Environment>,
    pub(crate) lookup_timeout: Duration,
    pub(crate) retry_after: RetryAfter,
    pub(crate) strip_credentials: bool,
    pub(crate) renderer: Arc<dyn RenderRejection>,
    pub(crate) sessions: Option<SessionAuth<St::Scope>>,
    pub(crate) optional: bool,
    /// Announce a key's expiry this long before it.
    pub(crate) expiry_notice: Option<Duration>,
    pub(crate) metrics: AuthMetrics,
}

/// The layer's metric handles (see [`crate::metrics`]).
#[derive(Clone, Default)]
pub(crate) struct AuthMetrics {
    requests: RequestCounters,
    key_lookups: LookupCounters,
    session_lookups: LookupCounters,
}

impl<St: KeyStore> Clone for Config<St> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            sources: self.sources.clone(),
            only_environment: self.only_environment,
            lookup_timeout: self.lookup_timeout,
            retry_after: self.retry_after,
            strip_credentials: self.strip_credentials,
            renderer: Arc::clone(&self.renderer),
            sessions: self.sessions.clone(),
            optional: self.optional,
            expiry_notice: self.expiry_notice,
            metrics: self.metrics.clone(),
        }
    }
}

impl<St: KeyStore> fmt::Debug for Config<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("sources", &self.sources)
            .field("only_environment", &self.only_environment)
            .field("lookup_timeout", &self.lookup_timeout)
            .field("retry_after", &self.retry_after)
            .field("strip_credentials", &self.strip_credentials)
            .field("sessions", &self.sessions)
            .field("optional", &self.optional)
            .field("expiry_notice", &self.expiry_notice)
            .finish_non_exhaustive()
    }
}

impl<St: KeyStore> Config<St> {
    /// Steps 1 to 4 up to the digest: everything that needs no store.
    #[inline]
    pub(crate) fn prepare(&self, headers: &HeaderMap) -> Result<Prepared, AuthRejection> {
        let credential = match self.sources.extract(headers) {
            Ok(Some(credential)) => credential,
            Ok(None) => return self.prepare_session(headers),
            Err(CredentialError::RepeatedHeader(name)) => {
                return Err(AuthRejection::InvalidRequest(
                    InvalidRequestReason::RepeatedHeader(name),
                ))
            }
            Err(CredentialError::Ambiguous) => {
                return Err(AuthRejection::InvalidRequest(
                    InvalidRequestReason::AmbiguousCredentials,
                ))
            }
            Err(CredentialError::Malformed) => {
                return Err(AuthRejection::invalid_key(
                    InvalidKeyReason::Malformed,
                    None,
                ))
            }
        };
        let key = self
            .store
            .policy()
            .accepted_families()
            .parse(credential.expose_secret())
            .map_err(|_| AuthRejection::invalid_key(InvalidKeyReason::Malformed, None))?;
        if self
            .only_environment
            .is_some_and(|only| only != key.environment())
        {
            return Err(AuthRejection::EnvironmentNotAllowed(key.environment()));
        }
        Ok(Prepared {
            digest: self.store.hasher().digest(key.expose_secret()),
            environment: key.environment(),
            source: Source::Header(credential.index()),
        })
    }

    /// Steps 1 to 4 for the session cookie, read only when no key header was sent (a key
    /// header takes precedence) and never for gRPC.
    fn prepare_session(&self, headers: &HeaderMap) -> Result<Prepared, AuthRejection> {
        let missing = || AuthRejection::invalid_key(InvalidKeyReason::Missing, None);
        let Some(sessions) = &self.sessions else {
            return Err(missing());
        };
        if is_grpc(headers) {
            return Err(missing());
        }
        let token = sessions.session_cookie(headers)?.ok_or_else(missing)?;
        let (digest, environment) = sessions
            .store()
            .digest_of(token)
            .ok_or_else(|| AuthRejection::invalid_key(InvalidKeyReason::Malformed, None))?;
        Ok(Prepared {
            digest,
            environment,
            source: Source::Cookie,
        })
    }

    /// The session store when `prepared` came from the cookie (sessions may live in a
    /// store of another type than the keys).
    #[inline]
    fn session_store(&self, prepared: &Prepared) -> Option<&dyn SessionStore<St::Scope>> {
        match (&self.sessions, prepared.source) {
            (Some(sessions), Source::Cookie) => Some(sessions.store()),
            _ => None,
        }
    }

    /// The name of the store `prepared` is looked up in, for metrics.
    #[inline]
    fn backend(&self, prepared: &Prepared) -> &'static str {
        match self.session_store(prepared) {
            Some(sessions) => sessions.backend(),
            None => self.store.backend(),
        }
    }

    /// The lookup metrics of the store `prepared` is looked up in.
    #[inline]
    fn lookups(&self, prepared: &Prepared) -> &LookupCounters {
        match prepared.source {
            Source::Cookie => &self.metrics.session_lookups,
            Source::Header(_) => &self.metrics.key_lookups,
        }
    }

    /// The lookup, when the store can answer without waiting.
    #[inline]
    pub(crate) fn lookup_now(&self, prepared: &Prepared) -> Option<LookupResult<St::Scope>> {
        match self.session_store(prepared) {
            Some(sessions) => sessions.lookup_now(&prepared.digest),
            None => self.store.lookup_now(&prepared.digest),
        }
    }

    /// The asynchronous lookup, boxed, under the timeout, with panics caught.
    pub(crate) fn lookup(self: Arc<Self>, prepared: Prepared) -> Deferred<Verdict<St::Scope>> {
        Box::pin(async move {
            let lookup = async {
                match self.session_store(&prepared) {
                    Some(sessions) => sessions.lookup(&prepared.digest).await,
                    None => self.store.lookup(&prepared.digest).await,
                }
            };
            #[cfg(feature = "metrics")]
            let started = std::time::Instant::now();
            let found = guarded(self.lookup_timeout, lookup)
                .await
                .unwrap_or_else(|unanswered| {
                    Err(StoreError::bare(match unanswered {
                        Unanswered::TimedOut => StoreErrorKind::Timeout,
                        Unanswered::Panicked => StoreErrorKind::Panicked,
                    }))
                });
            #[cfg(feature = "metrics")]
            self.lookups(&prepared)
                .waited(self.backend(&prepared), started.elapsed());
            self.verify(found, &prepared)
        })
    }

    /// Step 5: the store's answer to a verified record or a rejection.
    #[inline]
    pub(crate) fn verify(
        &self,
        found: LookupResult<St::Scope>,
        prepared: &Prepared,
    ) -> Verdict<St::Scope> {
        let result = match &found {
            Ok(Some(_)) => 0,
            Ok(None) => 1,
            Err(_) => 2,
        };
        self.lookups(prepared)
            .record(self.backend(prepared), result);
        let found = match found {
            Ok(found) => found,
            Err(error) => {
                #[cfg(feature = "tracing")]
                tracing::warn!(target: "tower_api_key", error = %error, "key store lookup failed");
                return Err(AuthRejection::unavailable(
                    Unavailable::KeyStore(error.kind()),
                    self.retry_after,
                ));
            }
        };
        // One constant-time comparison whether or not a record came back: no early return.
        let stored = found
            .as_deref()
            .map_or(&NO_RECORD, |record| record.digest());
        let matches: bool =
            (stored.ct_eq(&prepared.digest) & Choice::from(u8::from(found.is_some()))).into();
        #[cfg(test)]
        tests::COMPARISONS.with(|n| n.set(n.get() + 1));
        let record = match found {
            Some(record) if matches => record,
            Some(record) => {
                return Err(AuthRejection::invalid_key(
                    InvalidKeyReason::DigestMismatch,
                    Some(record.id().clone()),
                ))
            }
            None => return Err(AuthRejection::invalid_key(InvalidKeyReason::Unknown, None)),
        };
        // Only records with a deadline need the clock.
        if record.has_deadline() {
            let now = match self.session_store(prepared) {
                Some(sessions) => sessions.now(),
                None => self.store.policy().now(),
            };
            let reason = match record.status_at(now) {
                KeyStatus::Active => None,
                KeyStatus::Revoked => Some(InvalidKeyReason::Revoked),
                KeyStatus::Expired => Some(InvalidKeyReason::Expired),
                KeyStatus::Disabled => Some(InvalidKeyReason::Disabled),
            };
            if let Some(reason) = reason {
                return Err(AuthRejection::invalid_key(
                    reason,
                    Some(record.id().clone()),
                ));
            }
            if let (Some(sessions), Source::Cookie) = (&self.sessions, prepared.source) {
                if sessions.idle_expired(&record, now) {
                    let reason = InvalidKeyReason::Expired;
                    return Err(AuthRejection::invalid_key(
                        reason,
                        Some(record.id().clone()),
                    ));
                }
                sessions.seen(&record, now);
            }
        }
        if record.environment() != prepared.environment {
            return Err(AuthRejection::invalid_key(
                InvalidKeyReason::EnvironmentMismatch,
                Some(record.id().clone()),
            ));
        }
        Ok((record, prepared.source))
    }
}

/// Step 6: protect the key headers and attach the principal, or render the rejection.
impl<St: KeyStore, B> Gate<Request<B>> for Config<St> {
    type Verdict = Verdict<St::Scope>;
    /// The layer (for its metrics), the accepted credential's kind (`None`: anonymous)
    /// and the key's expiry when it is to be announced.
    type After = (Arc<Self>, Option<CredentialKind>, Option<SystemTime>);

    #[inline]
    fn decide(
        self: &Arc<Self>,
        verdict: Self::Verdict,
        request: &mut Request<B>,
    ) -> Result<Self::After, Response<Bytes>> {
        let verified = verdict
            .and_then(|verified| allowed_here(verified, request))
            .and_then(|verified| self.csrf_checked(verified, request));
        let (record, source) = match verified {
            Ok(verified) => verified,
            // Optional authentication: no credential at all passes without a principal.
            Err(AuthRejection::InvalidApiKey {
                reason: InvalidKeyReason::Missing,
                ..
            }) if self.optional => {
                request.extensions_mut().insert(crate::principal::Anonymous);
                return Ok((Arc::clone(self), None, None));
            }
            Err(rejection) => {
                self.metrics.requests.record(None, Some(rejection.kind()));
                super::span::record_outcome(rejection.code());
                return Err(respond(&*self.renderer, rejection, request.headers()));
            }
        };
        let kind = match source {
            Source::Header(index) => {
                self.sources
                    .protect(request.headers_mut(), index, self.strip_credentials);
                CredentialKind::ApiKey
            }
            Source::Cookie => {
                crate::session::protect(request.headers_mut());
                CredentialKind::Session
            }
        };
        let extensions = request.extensions_mut();
        if let Some(ticket) = extensions.get::<ActivityTicket>() {
            ticket.authenticated(Verified {
                id: record.id().clone(),
                owner: Arc::clone(record.owner_shared()),
                kind,
                environment: record.environment(),
            });
        }
        super::span::record_principal(kind.as_str(), record.id().as_str(), record.owner());
        let expiring = match (self.expiry_notice, record.expires_at(), kind) {
            (Some(window), Some(expires), CredentialKind::ApiKey) => {
                let soon = self.store.policy().now().checked_add(window);
                soon.is_none_or(|soon| expires <= soon).then_some(expires)
            }
            _ => None,
        };
        extensions.insert::<ScopeSet<St::Scope>>(record.scopes());
        extensions.insert(Principal::new(record, kind));
        Ok((Arc::clone(self), Some(kind), expiring))
    }

    /// Counts the request by how it ended: a refusal further in (a scope, a rate limit)
    /// left its rejection in the response.
    #[inline]
    fn finish<R>((layer, kind, expiring): Self::After, response: &mut Response<R>) {
        if let Some(expires) = expiring {
            // httpdate panics outside 1970..=9999; an active key's expiry is after now.
            let latest = crate::support::timestamp::latest();
            let date = httpdate::fmt_http_date(expires.clamp(std::time::UNIX_EPOCH, latest));
            if let Ok(value) = http::HeaderValue::try_from(date) {
                response.headers_mut().insert(super::API_KEY_EXPIRES, value);
            }
        }
        let outcome = response
            .extensions()
            .get::<AuthRejection>()
            .map(AuthRejection::kind);
        layer.metrics.requests.record(kind, outcome);
        super::span::record_outcome(outcome.map_or("ok", RejectionKind::code));
    }
}

impl<St: KeyStore> Config<St> {
    /// The CSRF check of a cookie-authenticated request.
    fn csrf_checked<B>(
        &self,
        (record, source): (Arc<KeyRecord<St::Scope>>, Source),
        request: &Request<B>,
    ) -> Verdict<St::Scope> {
        if let (Some(sessions), Source::Cookie) = (&self.sessions, source) {
            sessions.check_csrf(request, record.digest())?;
        }
        Ok((record, source))
    }
}

/// The key's allowed networks against the client address the stack resolved.
fn allowed_here<Sc: crate::scope::Scope, B>(
    (record, source): (Arc<KeyRecord<Sc>>, Source),
    request: &Request<B>,
) -> Verdict<Sc> {
    if !record.allowed_networks().is_empty() {
        let client = client_ip_of(request.headers(), request.extensions())?;
        if !record.allowed_networks().allows(client) {
            return Err(AuthRejection::IpNotAllowed);
        }
    }
    Ok((record, source))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::forg::ForgScope;
    use crate::key::{KeyFamily, KeyHasher};
    use crate::store::{MemoryKeyStore, NewKey};
    use crate::AuthLayer;

    thread_local! {
        /// Digest comparisons made by `verify` on this thread.
        pub(super) static COMPARISONS: Cell<usize> = const { Cell::new(0) };
    }

    fn comparisons_during(f: impl FnOnce()) -> usize {
        let before = COMPARISONS.with(Cell::get);
        f();
        COMPARISONS.with(Cell::get) - before
    }

    #[test]
    fn unknown_key_and_wrong_stored_digest_take_the_same_path() {
        let store =
            Arc::new(MemoryKeyStore::<ForgScope>::new().with_policy(crate::forg::key_policy()));
        let layer = AuthLayer::new(Arc::clone(&store));
        let config = layer.config_for_tests();
        let (_, other) = NewKey::<ForgScope>::new("o", "n", &KeyFamily::FORG_LIVE)
            .issue(&KeyHasher::sha256(), std::time::SystemTime::now())
            .unwrap();
        let prepared = Prepared {
            digest: KeyHasher::sha256().digest("forg_live_0123456789abcdef0123456789abcdef"),
            environment: Environment::Live,
            source: Source::Header(0),
        };

        let mut unknown = None;
        let mut mismatch = None;
        let n_unknown = comparisons_during(|| unknown = Some(config.verify(Ok(None), &prepared)));
        let n_mismatch = comparisons_during(|| {
            mismatch = Some(config.verify(Ok(Some(Arc::new(other))), &prepared))
        });

        assert_eq!(
            (n_unknown, n_mismatch),
            (1, 1),
            "one comparison on both paths"
        );
        for verdict in [unknown, mismatch] {
            match verdict {
                Some(Err(AuthRejection::InvalidApiKey { .. })) => {}
                other => panic!("expected a 401, got {other:?}"),
            }
        }
    }
}
