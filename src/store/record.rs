use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::{AllowedNetworks, Metadata};
use crate::key::{Environment, GenerateError, KeyDigest, KeyFamily, KeyHasher, PlaintextKey};
use crate::rate_limit::{ClassName, Quota, RateClass};
use crate::scope::{Scope, ScopeSet};

/// A key's public identifier, e.g. `key_5f0c2a9e8b1d4c7f3a6e2b90`.
///
/// Random, never derived from the secret: safe in URLs, logs, metrics and rate-limiter
/// state. 1 to 64 characters of `A-Z a-z 0-9 _ - . :`.
///
/// Cheap to clone: one shared allocation, however many maps and records hold the id.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyId(Arc<str>);

impl KeyId {
    /// A fresh random id: `key_` + 24 lower-case hex (96 bits).
    ///
    /// # Errors
    /// When the operating system's random number generator fails.
    pub fn generate() -> Result<Self, GenerateError> {
        let mut bytes = [0u8; 12];
        getrandom::fill(&mut bytes).map_err(GenerateError::new)?;
        let mut hex = [0u8; 24];
        let hex = base16ct::lower::encode_str(&bytes, &mut hex).unwrap_or_default();
        Ok(Self(format!("key_{hex}").into()))
    }

    /// An id chosen by the store (e.g. a database primary key).
    ///
    /// # Errors
    /// [`InvalidKeyId`] when `id` is empty, longer than 64 bytes or has a character
    /// outside `A-Z a-z 0-9 _ - . :`.
    pub fn new(id: impl Into<String>) -> Result<Self, InvalidKeyId> {
        let id = id.into();
        let valid = !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
        if valid {
            Ok(Self(id.into()))
        } else {
            Err(InvalidKeyId)
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

impl std::str::FromStr for KeyId {
    type Err = InvalidKeyId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for KeyId {
    type Error = InvalidKeyId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<KeyId> for String {
    fn from(id: KeyId) -> Self {
        id.0.as_ref().to_owned()
    }
}

/// A key id is empty, too long or has a character outside `A-Z a-z 0-9 _ - . :`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a key id is 1 to 64 characters of A-Z a-z 0-9 _ - . :")]
pub struct InvalidKeyId;

/// Whether a key is usable at a given time (`"active"`, `"revoked"`, ... on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[cfg_attr(feature = "axum", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum KeyStatus {
    /// Accepted.
    Active,
    /// Revoked at or before that time.
    Revoked,
    /// Past its expiry.
    Expired,
    /// Disabled: refused until enabled again (it still holds its slot in the owner limit).
    Disabled,
}

/// What a store keeps about one key: never the key itself, only its [`KeyDigest`].
///
/// Fields are public so a store can map them to columns; the struct is `#[non_exhaustive]`,
/// so build one with [`NewKey::issue`] or [`KeyRecord::new`]. Serde form: timestamps as
/// Unix milliseconds, scopes as a list of names, the digest as lower-case hex.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
#[non_exhaustive]
pub struct KeyRecord<S: Scope> {
    /// Public identifier.
    pub id: KeyId,
    /// Digest of the whole key.
    pub digest: KeyDigest,
    /// Whoever the key belongs to (a user, an organisation, an agent).
    pub owner: String,
    /// Human-readable name chosen at creation.
    pub name: String,
    /// The family's prefix, e.g. `forg_live_`.
    pub prefix: String,
    /// The family's environment.
    pub environment: Environment,
    /// Redacted form (`forg_live_…3c4d`) for listings.
    pub hint: String,
    /// Granted scopes.
    pub scopes: ScopeSet<S>,
    /// When the key was issued.
    #[serde(with = "unix_millis")]
    pub created_at: SystemTime,
    /// When the key stops being accepted, if ever.
    #[serde(default, with = "unix_millis::option")]
    pub expires_at: Option<SystemTime>,
    /// When the key was (or will be, for a rotation grace period) revoked.
    #[serde(default, with = "unix_millis::option")]
    pub revoked_at: Option<SystemTime>,
    /// Revoked now, whatever any clock says: set by an immediate revocation, so that an
    /// instance whose clock is behind the revoking one's (or a clock that steps back) still
    /// refuses the key. Only a scheduled revocation (rotation grace) compares times.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub revoked: bool,
    /// Refused while set, without being revoked: [`ManageKeys::disable`](super::ManageKeys::disable)
    /// and [`enable`](super::ManageKeys::enable).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// Bounded, validated string metadata, readable by handlers through the principal.
    #[serde(default, skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
    /// The client networks the key may be used from (empty: any).
    #[serde(default, skip_serializing_if = "AllowedNetworks::is_empty")]
    pub allowed_networks: AllowedNetworks,
    /// When the key was last used, as recorded by
    /// [`LastUsedRecorder`](crate::activity::LastUsedRecorder) (at most once per interval).
    #[serde(
        default,
        with = "unix_millis::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_used_at: Option<SystemTime>,
    /// Per-class rate-limit overrides for this key, by class name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rate_limits: BTreeMap<ClassName, Quota>,
}

impl<S: Scope> KeyRecord<S> {
    /// A record with no expiry, no revocation and no rate-limit overrides.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: KeyId,
        digest: KeyDigest,
        owner: impl Into<String>,
        name: impl Into<String>,
        family: &KeyFamily,
        hint: impl Into<String>,
        scopes: ScopeSet<S>,
        created_at: SystemTime,
    ) -> Self {
        Self {
            id,
            digest,
            owner: owner.into(),
            name: name.into(),
            prefix: family.prefix().to_owned(),
            environment: family.environment(),
            hint: hint.into(),
            scopes,
            created_at,
            expires_at: None,
            revoked_at: None,
            revoked: false,
            disabled: false,
            metadata: Metadata::default(),
            allowed_networks: AllowedNetworks::default(),
            last_used_at: None,
            rate_limits: BTreeMap::new(),
        }
    }

    /// Whether the key is accepted at `now`. Revocation wins over expiry; an immediate
    /// revocation ([`revoked`](Self::revoked)) holds at any `now`.
    #[inline]
    pub fn status_at(&self, now: SystemTime) -> KeyStatus {
        if self.revoked || self.revoked_at.is_some_and(|at| at <= now) {
            KeyStatus::Revoked
        } else if self.expires_at.is_some_and(|at| at <= now) {
            KeyStatus::Expired
        } else if self.disabled {
            KeyStatus::Disabled
        } else {
            KeyStatus::Active
        }
    }

    /// From when the record can no longer authenticate, whatever happens next: the earlier
    /// of its revocation and its expiry; `None` while neither is set (a disabled key can be
    /// enabled again, so disabling sets nothing). Stores delete a record once this is
    /// older than their policy's [retention](super::KeyPolicy::retention).
    pub fn refused_since(&self) -> Option<SystemTime> {
        match (self.revoked_at, self.expires_at) {
            (Some(revoked), Some(expires)) => Some(revoked.min(expires)),
            (revoked, expires) => revoked.or(expires),
        }
    }

    /// Whether the record can be refused at all (so checking it needs the clock).
    #[inline]
    pub(crate) fn has_deadline(&self) -> bool {
        self.revoked || self.disabled || self.revoked_at.is_some() || self.expires_at.is_some()
    }
}

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
/// assert_eq!(record.digest, KeyHasher::sha256().digest(key.expose_secret()));
/// assert_eq!(record.scopes.to_string(), "read:sessions read:reports");
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
    /// itself, so an override cannot name a class that does not exist.
    pub fn rate_limit(mut self, class: &RateClass, quota: Quota) -> Self {
        self.rate_limits.insert(class.name().clone(), quota);
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
        record.expires_at = match self.expiry {
            Expiry::Never => None,
            Expiry::At(at) => Some(at),
            // A lifetime past what the clock can count never ends.
            Expiry::After(ttl) => now.checked_add(ttl),
        };
        record.rate_limits = self.rate_limits;
        record.metadata = self.metadata;
        record.allowed_networks = self.allowed_networks;
        Ok((key, record))
    }

    /// A request for the successor of `old`: same owner, name, family, scopes and
    /// overrides; an expiring key gets the same lifetime again.
    pub(crate) fn successor(old: &KeyRecord<S>, family: KeyFamily) -> Self {
        let lifetime = old
            .expires_at
            .and_then(|at| at.duration_since(old.created_at).ok());
        Self {
            owner: old.owner.clone(),
            name: old.name.clone(),
            family,
            scopes: old.scopes,
            expiry: lifetime.map_or(Expiry::Never, Expiry::After),
            rate_limits: old.rate_limits.clone(),
            metadata: old.metadata.clone(),
            allowed_networks: old.allowed_networks.clone(),
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

/// Timestamps as integer Unix milliseconds: portable across databases and JSON.
mod unix_millis {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use serde::{Deserialize, Deserializer, Serializer};

    fn to_millis(t: &SystemTime) -> i64 {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
        }
    }

    fn from_millis<E: serde::de::Error>(ms: i64) -> Result<SystemTime, E> {
        let offset = Duration::from_millis(ms.unsigned_abs());
        let at = if ms >= 0 {
            UNIX_EPOCH.checked_add(offset)
        } else {
            UNIX_EPOCH.checked_sub(offset)
        };
        at.ok_or_else(|| E::custom("timestamp out of range"))
    }

    pub(super) fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(to_millis(t))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        from_millis(i64::deserialize(d)?)
    }

    pub(super) mod option {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(
            t: &Option<SystemTime>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_some(&to_millis(t)),
                None => s.serialize_none(),
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<SystemTime>, D::Error> {
            Option::<i64>::deserialize(d)?.map(from_millis).transpose()
        }
    }
}
