//! [`NewKey`], a request to issue a key, and [`IssuedKey`], what issuing it gives.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;

/// When a new key expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expiry {
    Never,
    At(SystemTime),
    After(Duration),
}

/// A request to issue a key; store-independent, so every store issues keys the same way.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tower_api_key::key::{KeyFamily, KeyHasher};
/// use tower_api_key::forg::ForgScope;
/// use tower_api_key::store::NewKey;
///
/// let (key, record) = NewKey::new("org_42", "CI pipeline", &KeyFamily::FORG_TEST)
///     .scopes([ForgScope::ReadSessions, ForgScope::ReadReports])
///     .expires_in(Duration::from_secs(90 * 24 * 3600))
///     .issue(&KeyHasher::sha256(), SystemTime::now())
///     .unwrap();
/// assert_eq!(record.digest(), &KeyHasher::sha256().digest(key.expose_secret()));
/// assert_eq!(record.scopes().to_string(), "read:sessions read:reports");
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct NewKey<S: Scope> {
    owner: String,
    name: String,
    family: KeyFamily,
    scopes: ScopeSet<S>,
    expiry: Expiry,
    rate_limits: BTreeMap<ClassName, Quota>,
    metadata: Metadata,
    allowed_networks: AllowedNetworks,
    lineage: Option<KeyId>,
}

impl<S: Scope> NewKey<S> {
    /// A key of `family` for `owner`, called `name`, with no scopes and no expiry.
    pub fn new(owner: impl Into<String>, name: impl Into<String>, family: &KeyFamily) -> Self {
        Self {
            owner: owner.into(),
            name: name.into(),
            family: family.clone(),
            scopes: ScopeSet::empty(),
            expiry: Expiry::Never,
            rate_limits: BTreeMap::new(),
            metadata: Metadata::default(),
            allowed_networks: AllowedNetworks::default(),
            lineage: None,
        }
    }

    /// The owner.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The family the key is issued in.
    pub fn family(&self) -> &KeyFamily {
        &self.family
    }

    /// Grants `scopes`.
    pub fn scopes(mut self, scopes: impl Into<ScopeSet<S>>) -> Self {
        self.scopes = scopes.into();
        self
    }

    /// Expires at `at`.
    pub fn expires_at(mut self, at: SystemTime) -> Self {
        self.expiry = Expiry::At(at);
        self
    }

    /// Expires `ttl` after issue (a `ttl` past what the clock can count: never).
    pub fn expires_in(mut self, ttl: Duration) -> Self {
        self.expiry = Expiry::After(ttl);
        self
    }

    /// Overrides the quota of rate-limit class `class` for this key. Takes the class
    /// itself (a [`RateClass`](crate::rate_limit::RateClass), the one type that names its
    /// class), so an override cannot name a class that does not exist.
    pub fn rate_limit(mut self, class: &impl AsRef<ClassName>, quota: Quota) -> Self {
        self.rate_limits.insert(class.as_ref().clone(), quota);
        self
    }

    /// Attaches `metadata` (validated when it was built).
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Allows the key from `networks` only.
    pub fn allowed_networks(mut self, networks: AllowedNetworks) -> Self {
        self.allowed_networks = networks;
        self
    }

    /// Generates the key and builds its record, issued at `now`. Nothing is stored.
    ///
    /// # Errors
    /// When the operating system's random number generator fails.
    pub fn issue(
        self,
        hasher: &KeyHasher,
        now: SystemTime,
    ) -> Result<(PlaintextKey, KeyRecord<S>), GenerateError> {
        let key = self.family.generate()?;
        let digest = hasher.digest(key.expose_secret());
        let mut record = KeyRecord::new(
            KeyId::generate()?,
            digest,
            self.owner,
            self.name,
            &self.family,
            key.redacted(),
            self.scopes,
            now,
        );
        record.set_expires_at(match self.expiry {
            Expiry::Never => None,
            Expiry::At(at) => Some(at),
            // A lifetime past what the clock can count never ends.
            Expiry::After(ttl) => now.checked_add(ttl),
        });
        record.set_rate_limits(self.rate_limits);
        record.set_metadata(self.metadata);
        record.set_allowed_networks(self.allowed_networks);
        if let Some(lineage) = self.lineage {
            record.set_lineage(lineage);
        }
        Ok((key, record))
    }

    /// A request for the successor of `old`: same owner, name, family, scopes and
    /// overrides; an expiring key gets the same lifetime again.
    pub(crate) fn successor(old: &KeyRecord<S>, family: KeyFamily) -> Self {
        let lifetime = old
            .expires_at()
            .and_then(|at| at.duration_since(old.created_at()).ok());
        Self {
            owner: old.owner().to_owned(),
            name: old.name().to_owned(),
            family,
            scopes: old.scopes,
            expiry: lifetime.map_or(Expiry::Never, Expiry::After),
            rate_limits: old.rate_limits().clone(),
            metadata: old.metadata().clone(),
            allowed_networks: old.allowed_networks().clone(),
            lineage: Some(old.lineage().clone()),
        }
    }
}

/// A key just issued: the plaintext (shown once) and its stored record.
#[derive(Debug)]
pub struct IssuedKey<S: Scope> {
    key: PlaintextKey,
    record: Arc<KeyRecord<S>>,
}

impl<S: Scope> IssuedKey<S> {
    /// Pairs a plaintext key with its stored record.
    pub fn new(key: PlaintextKey, record: Arc<KeyRecord<S>>) -> Self {
        Self { key, record }
    }

    /// The plaintext: hand it to the owner now, it cannot be recovered later.
    pub fn key(&self) -> &PlaintextKey {
        &self.key
    }

    /// The stored record.
    pub fn record(&self) -> &Arc<KeyRecord<S>> {
        &self.record
    }

    /// Both parts.
    pub fn into_parts(self) -> (PlaintextKey, Arc<KeyRecord<S>>) {
        (self.key, self.record)
    }
}
