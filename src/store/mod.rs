//! Where key records live: [`KeyStore`] (lookups by digest), [`ManageKeys`] (the
//! lifecycle), the store's [`KeyPolicy`], [`KeyRecord`], and the embedded
//! [`MemoryKeyStore`].
//!
//! ```
//! use tower_api_key::forg::ForgScope;
//! use tower_api_key::store::{KeyStore, ManageKeys, MemoryKeyStore, NewKey};
//! use tower_api_key::key::KeyFamily;
//!
//! # tokio_test_block_on(async {
//! let store = MemoryKeyStore::new().with_policy(tower_api_key::forg::key_policy());
//! let issued = store
//!     .issue(NewKey::new("org_42", "reporting", &KeyFamily::FORG_LIVE).scopes(ForgScope::ReadReports))
//!     .await
//!     .unwrap();
//! let digest = store.hasher().digest(issued.key().expose_secret());
//! let record = store.lookup(&digest).await.unwrap().unwrap();
//! assert_eq!(record.id(), issued.record().id());
//!
//! store.revoke(record.id()).await.unwrap();
//! assert!(store.get(record.id()).await.unwrap().unwrap().revoked_at().is_some());
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```
//!
//! # Writing a store
//! Implement [`KeyStore::lookup`] with `async fn`; return `Ok(None)` for an unknown digest
//! and `Err` only when the store itself failed (the layer then answers 503 and never
//! calls the inner service). Override [`KeyStore::hasher`] when keys are peppered,
//! [`KeyStore::policy`] to carry a [`KeyPolicy`], and [`KeyStore::lookup_now`] when some
//! answers are in memory already (a cache). Then implement the seven primitives of
//! [`ManageKeys`]; `src/store/sql/` (`SqlKeyStore`) is a worked example, and the crate's test
//! suite runs one lifecycle suite against every store.

mod allowlist;
#[cfg(feature = "cache")]
mod cached;
mod manage;
mod memory;
mod metadata;
mod page;
pub(crate) mod plan_policy;
mod policy;
#[cfg(any(feature = "redis", feature = "postgres"))]
mod reconnect;
mod record;
#[cfg(feature = "redis")]
pub(crate) mod redis;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod sql;
mod update;

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

#[cfg(feature = "redis")]
pub use self::redis::{RedisKeyStore, RevocationListener};
pub use allowlist::{AllowedNetworks, InvalidNetworks};
#[cfg(feature = "cache")]
pub use cached::{CachedKeyStore, CachedKeyStoreBuilder, StaleIfError};
pub use manage::{Insert, ManageKeys, Revocation};
pub use memory::MemoryKeyStore;
pub use metadata::{is_plain_text, InvalidMetadata, Metadata};
pub use page::KeyPage;
pub use policy::KeyPolicy;
pub use record::{InvalidKeyId, IssuedKey, KeyId, KeyRecord, KeyStatus, NewKey};
#[cfg(feature = "postgres")]
pub use sql::PgRevocationListener;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) use sql::{migration_for, statements, store_error, table_name};
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub use sql::{InvalidTableName, SqlDatabase, SqlKeyStore};
pub use update::KeyUpdate;

use crate::key::{Environment, GenerateError, KeyDigest, KeyHasher};
use crate::scope::Scope;

/// What a lookup answers: the record, `None` for an unknown digest, or the store's failure.
pub type LookupResult<S> = Result<Option<Arc<KeyRecord<S>>>, StoreError>;

/// Looks up key records by digest. Shared between requests as `Arc<Self>`.
pub trait KeyStore: Send + Sync + 'static {
    /// The scope vocabulary of the stored records.
    type Scope: Scope;

    /// The record whose digest is `digest`, `Ok(None)` when there is none, `Err` when the
    /// store could not answer. Write it as `async fn`.
    ///
    /// The layer still compares the returned record's digest with `digest` in constant
    /// time, so a store whose index is fuzzy (case-insensitive collation, prefix match)
    /// cannot let a wrong key in.
    fn lookup(&self, digest: &KeyDigest) -> impl Future<Output = LookupResult<Self::Scope>> + Send;

    /// The answer, if it is at hand without waiting (in memory). `None` means "ask
    /// [`lookup`](Self::lookup)". The layer tries this first, so a store that answers here
    /// costs no allocation and no timer per request. The default never answers.
    #[inline]
    fn lookup_now(&self, digest: &KeyDigest) -> Option<LookupResult<Self::Scope>> {
        let _ = digest;
        None
    }

    /// How this store's keys are hashed; the layer uses the same. Default: plain SHA-256.
    fn hasher(&self) -> &KeyHasher {
        KeyHasher::sha256_ref()
    }

    /// The store's rules: accepted families (the layer parses keys against them), owner
    /// limit and clock. Default: [`KeyPolicy::default`].
    fn policy(&self) -> &KeyPolicy {
        KeyPolicy::default_ref()
    }

    /// Whether the store can answer now, for a readiness probe: `Ok` when its backend is
    /// reachable, the error otherwise. Networked stores ask their server (Redis `PING` on
    /// every master, SQL `SELECT 1`); the default, for stores in process, is always ready.
    fn ready(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        std::future::ready(Ok(()))
    }

    /// A short name for the kind of store, the `backend` label of its
    /// [metrics](crate::metrics) (`memory`, `redis`, `postgres`, `sqlite`; a cache says its
    /// store's). Default: `custom`.
    fn backend(&self) -> &'static str {
        "custom"
    }
}

impl<T: KeyStore> KeyStore for Arc<T> {
    type Scope = T::Scope;

    fn lookup(&self, digest: &KeyDigest) -> impl Future<Output = LookupResult<Self::Scope>> + Send {
        (**self).lookup(digest)
    }

    fn lookup_now(&self, digest: &KeyDigest) -> Option<LookupResult<Self::Scope>> {
        (**self).lookup_now(digest)
    }

    fn hasher(&self) -> &KeyHasher {
        (**self).hasher()
    }

    fn policy(&self) -> &KeyPolicy {
        (**self).policy()
    }

    fn ready(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).ready()
    }

    fn backend(&self) -> &'static str {
        (**self).backend()
    }
}

/// What kind of failure a [`StoreError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The backend could not be reached or refused to answer.
    Unavailable,
    /// The lookup took longer than the layer's timeout.
    Timeout,
    /// The store panicked while answering.
    Panicked,
    /// Anything else (corrupt data, a bug).
    Other,
}

/// A key store could not answer. The layer fails closed: 503 with `Retry-After`.
///
/// Stores only ever see digests, so their errors cannot contain a key.
pub struct StoreError {
    kind: StoreErrorKind,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl StoreError {
    /// An error of `kind` caused by `source`.
    pub fn new(kind: StoreErrorKind, source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self {
            kind,
            source: Some(source.into()),
        }
    }

    /// The backend could not be reached.
    pub fn unavailable(source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self::new(StoreErrorKind::Unavailable, source)
    }

    pub(crate) fn bare(kind: StoreErrorKind) -> Self {
        Self { kind, source: None }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }
}

impl fmt::Debug for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreError")
            .field("kind", &self.kind)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            StoreErrorKind::Unavailable => "key store unavailable",
            StoreErrorKind::Timeout => "key store lookup timed out",
            StoreErrorKind::Panicked => "key store panicked",
            StoreErrorKind::Other => "key store failed",
        };
        match &self.source {
            Some(source) => write!(f, "{what}: {source}"),
            None => f.write_str(what),
        }
    }
}

impl StdError for StoreError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// Why issuing, rotating, revoking or deleting a key failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManageError {
    /// No key has that id.
    #[error("no key with id `{0}`")]
    NotFound(KeyId),
    /// The owner already has the maximum number of active keys.
    #[error("key limit reached: an owner may have at most {limit} active keys")]
    KeyLimitReached {
        /// The configured maximum.
        limit: usize,
    },
    /// A record with the same id or digest is already stored.
    #[error("a key with the same id or digest already exists")]
    Duplicate,
    /// The owner's plan does not allow keys of this environment (403 `plan_required`).
    #[error("the owner's plan does not allow {0} keys")]
    PlanRequired(Environment),
    /// The store's policy does not accept keys of this family (by prefix).
    #[error("keys of family `{0}` are not accepted by this store")]
    FamilyNotAccepted(String),
    /// No randomness for a new key.
    #[error(transparent)]
    Generate(#[from] GenerateError),
    /// The backend failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The key is no longer at the version an update required (HTTP 412): read it again.
    #[error("key `{id}` changed since version {expected}")]
    VersionMismatch {
        /// The key.
        id: KeyId,
        /// The version the update required.
        expected: u64,
    },
    /// A revoked or expired key cannot be changed in place (a disabled one can).
    #[error("key `{0}` is revoked or expired")]
    NotChangeable(KeyId),
    /// A setting breaks a rule of the lifecycle (a widened scope, an expiry in the past).
    #[error("{field}: {reason}")]
    Invalid {
        /// The setting, as the management API names it.
        field: &'static str,
        /// Why, in words for a client.
        reason: &'static str,
    },
    /// The store does not implement this operation.
    #[error("this store cannot {0}")]
    Unsupported(&'static str),
}
