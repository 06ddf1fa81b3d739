use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{AllowedNetworks, Metadata};
use crate::key::{Environment, GenerateError, KeyDigest, KeyFamily, KeyHasher, PlaintextKey};
use crate::quota::{ClassName, Quota};
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
/// Read through accessors, changed through `set_*` setters; build one with
/// [`NewKey::issue`] or [`KeyRecord::new`]. Serde form: timestamps as Unix milliseconds,
/// scopes as a list of names, the digest as lower-case hex.
///
/// # Layout
/// A store may hold millions of records, so the layout is compact: times are kept as
/// milliseconds since the Unix epoch, as every store's columns and serde form keep them
/// (a finer time reads back cut to the millisecond, a time before 1970 as the epoch), the [`hint`](Self::hint) is rebuilt from the
/// prefix and the key's last four characters, a known family's prefix is not copied, and
/// the parts most keys lack (metadata, allowed networks, rate-limit overrides) sit behind
/// one pointer that is absent when all are empty.
///
/// ```
/// use std::time::SystemTime;
/// use tower_api_key::forg::ForgScope;
/// use tower_api_key::key::{KeyFamily, KeyHasher};
/// use tower_api_key::store::{KeyStatus, NewKey};
///
/// let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_796_169_600_123);
/// let (key, mut record) = NewKey::<ForgScope>::new("org_42", "CI", &KeyFamily::FORG_TEST)
///     .issue(&KeyHasher::sha256(), now)
///     .unwrap();
/// assert_eq!(record.owner(), "org_42");
/// assert_eq!(record.hint(), key.redacted());
/// assert_eq!(record.created_at(), now);
/// record.set_revoked(true);
/// assert_eq!(record.status_at(now), KeyStatus::Revoked);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct KeyRecord<S: Scope> {
    id: KeyId,
    digest: KeyDigest,
    owner: Arc<str>,
    name: Box<str>,
    prefix: Cow<'static, str>,
    scopes: ScopeSet<S>,
    created_at: At,
    expires_at: At,
    revoked_at: At,
    last_used_at: At,
    rare: Option<Box<Rare>>,
    // The hint's last characters (zero bytes after them), when the hint is `prefix…tail`.
    hint_tail: [u8; 4],
    environment: Environment,
    revoked: bool,
    disabled: bool,
}

/// A time as milliseconds since the Unix epoch (the precision every store's serde form and
/// columns keep), [`At::NONE`] for no time: eight bytes where an `Option<SystemTime>`
/// takes sixteen.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct At(u64);

impl At {
    const NONE: Self = Self(u64::MAX);

    /// `t`, saturated to the range the representation holds.
    #[inline]
    fn new(t: SystemTime) -> Self {
        let millis = t
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self(millis.min(u64::MAX - 1))
    }

    fn from_option(t: Option<SystemTime>) -> Self {
        t.map_or(Self::NONE, Self::new)
    }

    fn time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0)
    }

    fn get(self) -> Option<SystemTime> {
        (self != Self::NONE).then(|| self.time())
    }

    fn is_some(self) -> bool {
        self != Self::NONE
    }
}

/// The parts most keys lack, behind one pointer.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rare {
    metadata: Metadata,
    allowed_networks: AllowedNetworks,
    rate_limits: BTreeMap<ClassName, Quota>,
    // A hint that is not `prefix…tail` (a store's own form).
    hint: Option<Box<str>>,
    // The first key of the rotation chain, when it is not this one.
    lineage: Option<KeyId>,
}

impl Rare {
    const NONE: Self = Self {
        metadata: Metadata::EMPTY,
        allowed_networks: AllowedNetworks::EMPTY,
        rate_limits: BTreeMap::new(),
        hint: None,
        lineage: None,
    };
}

/// What a record without rare parts reads.
static NO_RARE: Rare = Rare::NONE;

/// The prefixes of the built-in families, kept without a copy.
const KNOWN_PREFIXES: [&str; 3] = ["forg_live_", "forg_test_", "fos_"];

fn prefix_of(prefix: &str) -> Cow<'static, str> {
    match KNOWN_PREFIXES.iter().find(|known| **known == prefix) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(prefix.to_owned()),
    }
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
        let prefix = match family.prefix_cow() {
            Cow::Borrowed(prefix) => Cow::Borrowed(*prefix),
            Cow::Owned(prefix) => prefix_of(prefix),
        };
        let mut record = Self {
            id,
            digest,
            owner: owner.into().into(),
            name: name.into().into(),
            prefix,
            scopes,
            created_at: At::new(created_at),
            expires_at: At::NONE,
            revoked_at: At::NONE,
            last_used_at: At::NONE,
            rare: None,
            hint_tail: [0; 4],
            environment: family.environment(),
            revoked: false,
            disabled: false,
        };
        record.set_hint(hint.into());
        record
    }

    /// Public identifier.
    #[inline]
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// Digest of the whole key.
    #[inline]
    pub fn digest(&self) -> &KeyDigest {
        &self.digest
    }

    /// Whoever the key belongs to (a user, an organisation, an agent).
    #[inline]
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The owner as shared text, so a store can keep one copy per owner.
    pub(crate) fn owner_shared(&self) -> &Arc<str> {
        &self.owner
    }

    /// Makes the record hold `owner`, an equal string shared with other records.
    pub(crate) fn share_owner(&mut self, owner: Arc<str>) {
        debug_assert_eq!(*owner, *self.owner);
        self.owner = owner;
    }

    /// Human-readable name chosen at creation.
    #[inline]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Renames the key.
    pub fn set_name(&mut self, name: impl Into<String>) {
        self.name = name.into().into();
    }

    /// The family's prefix, e.g. `forg_live_`.
    #[inline]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The family's environment.
    #[inline]
    pub fn environment(&self) -> Environment {
        self.environment
    }

    /// Redacted form (`forg_live_…3c4d`) for listings.
    pub fn hint(&self) -> String {
        if let Some(hint) = self.rare().hint.as_deref() {
            return hint.to_owned();
        }
        let len = self.hint_tail.iter().position(|b| *b == 0).unwrap_or(4);
        let tail = std::str::from_utf8(&self.hint_tail[..len]).unwrap_or_default();
        format!("{}…{tail}", self.prefix)
    }

    fn set_hint(&mut self, hint: String) {
        let tail = hint
            .strip_prefix(&*self.prefix)
            .and_then(|rest| rest.strip_prefix('…'))
            .filter(|tail| tail.len() <= 4 && tail.bytes().all(|b| b.is_ascii_graphic()));
        match tail {
            Some(tail) => {
                self.hint_tail = [0; 4];
                self.hint_tail[..tail.len()].copy_from_slice(tail.as_bytes());
                self.rare_mut(true, |rare| rare.hint = None);
            }
            None => {
                self.hint_tail = [0; 4];
                self.rare_mut(false, |rare| rare.hint = Some(hint.into()));
            }
        }
    }

    /// Granted scopes.
    #[inline]
    pub fn scopes(&self) -> ScopeSet<S> {
        self.scopes
    }

    /// Grants `scopes` instead of the current ones.
    pub fn set_scopes(&mut self, scopes: ScopeSet<S>) {
        self.scopes = scopes;
    }

    /// When the key was issued.
    #[inline]
    pub fn created_at(&self) -> SystemTime {
        self.created_at.time()
    }

    /// When the key stops being accepted, if ever.
    #[inline]
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at.get()
    }

    /// Sets when the key stops being accepted (`None`: never).
    pub fn set_expires_at(&mut self, at: Option<SystemTime>) {
        self.expires_at = At::from_option(at);
    }

    /// When the key was (or will be, for a rotation grace period) revoked.
    #[inline]
    pub fn revoked_at(&self) -> Option<SystemTime> {
        self.revoked_at.get()
    }

    /// Sets when the key was (or will be) revoked.
    pub fn set_revoked_at(&mut self, at: Option<SystemTime>) {
        self.revoked_at = At::from_option(at);
    }

    /// Revoked now, whatever any clock says: set by an immediate revocation, so that an
    /// instance whose clock is behind the revoking one's (or a clock that steps back) still
    /// refuses the key. Only a scheduled revocation (rotation grace) compares times.
    #[inline]
    pub fn revoked(&self) -> bool {
        self.revoked
    }

    /// Sets [`revoked`](Self::revoked).
    pub fn set_revoked(&mut self, revoked: bool) {
        self.revoked = revoked;
    }

    /// Refused while set, without being revoked: [`ManageKeys::disable`](super::ManageKeys::disable)
    /// and [`enable`](super::ManageKeys::enable).
    #[inline]
    pub fn disabled(&self) -> bool {
        self.disabled
    }

    /// Sets [`disabled`](Self::disabled).
    pub fn set_disabled(&mut self, disabled: bool) {
        self.disabled = disabled;
    }

    /// When the key was last used, as recorded by
    /// [`LastUsedRecorder`](crate::activity::LastUsedRecorder) (at most once per interval).
    #[inline]
    pub fn last_used_at(&self) -> Option<SystemTime> {
        self.last_used_at.get()
    }

    /// Sets when the key was last used.
    pub fn set_last_used_at(&mut self, at: Option<SystemTime>) {
        self.last_used_at = At::from_option(at);
    }

    /// Bounded, validated string metadata, readable by handlers through the principal.
    #[inline]
    pub fn metadata(&self) -> &Metadata {
        &self.rare().metadata
    }

    /// Replaces the metadata.
    pub fn set_metadata(&mut self, metadata: Metadata) {
        self.rare_mut(metadata.is_empty(), |rare| rare.metadata = metadata);
    }

    /// The client networks the key may be used from (empty: any).
    #[inline]
    pub fn allowed_networks(&self) -> &AllowedNetworks {
        &self.rare().allowed_networks
    }

    /// Replaces the allowed networks.
    pub fn set_allowed_networks(&mut self, networks: AllowedNetworks) {
        self.rare_mut(networks.is_empty(), |rare| rare.allowed_networks = networks);
    }

    /// Per-class rate-limit overrides for this key, by class name.
    #[inline]
    pub fn rate_limits(&self) -> &BTreeMap<ClassName, Quota> {
        &self.rare().rate_limits
    }

    /// Replaces the rate-limit overrides.
    pub fn set_rate_limits(&mut self, rate_limits: BTreeMap<ClassName, Quota>) {
        self.rare_mut(rate_limits.is_empty(), |rare| {
            rare.rate_limits = rate_limits;
        });
    }

    /// The id of the first key of this key's rotation chain (its own id when it was issued,
    /// not rotated into): the subject its budgets, credits and rate limits are counted
    /// under, so that rotation changes the secret, not the account. A successor inherits
    /// its predecessor's lineage.
    #[inline]
    pub fn lineage(&self) -> &KeyId {
        self.rare().lineage.as_ref().unwrap_or(&self.id)
    }

    /// Makes the record continue `lineage` (a store reading its own form).
    pub fn set_lineage(&mut self, lineage: KeyId) {
        let own = lineage == self.id;
        self.rare_mut(own, |rare| rare.lineage = (!own).then_some(lineage));
    }

    #[inline]
    fn rare(&self) -> &Rare {
        self.rare.as_deref().unwrap_or(&NO_RARE)
    }

    /// Changes the rare parts, keeping them absent while all are empty (`to_empty`: the
    /// change sets an empty value, so there is nothing to do when they are absent).
    fn rare_mut(&mut self, to_empty: bool, change: impl FnOnce(&mut Rare)) {
        if to_empty && self.rare.is_none() {
            return;
        }
        let mut rare = self.rare.take().unwrap_or_else(|| Box::new(Rare::NONE));
        change(&mut rare);
        if *rare != Rare::NONE {
            self.rare = Some(rare);
        }
    }

    /// Whether the key is accepted at `now`. Revocation wins over expiry; an immediate
    /// revocation ([`revoked`](Self::revoked)) holds at any `now`.
    #[inline]
    pub fn status_at(&self, now: SystemTime) -> KeyStatus {
        let now = At::new(now);
        if self.revoked || (self.revoked_at.is_some() && self.revoked_at <= now) {
            KeyStatus::Revoked
        } else if self.expires_at.is_some() && self.expires_at <= now {
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
        // `At::NONE` is the largest value, so the minimum is set whenever either is.
        self.revoked_at.min(self.expires_at).get()
    }

    /// Whether the record can be refused at all (so checking it needs the clock).
    #[inline]
    pub(crate) fn has_deadline(&self) -> bool {
        self.revoked || self.disabled || self.revoked_at.is_some() || self.expires_at.is_some()
    }
}

impl<S: Scope> fmt::Debug for KeyRecord<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRecord")
            .field("id", &self.id)
            .field("digest", &self.digest)
            .field("owner", &self.owner())
            .field("name", &self.name())
            .field("prefix", &self.prefix())
            .field("environment", &self.environment)
            .field("hint", &self.hint())
            .field("scopes", &self.scopes)
            .field("created_at", &self.created_at())
            .field("expires_at", &self.expires_at())
            .field("revoked_at", &self.revoked_at())
            .field("revoked", &self.revoked)
            .field("disabled", &self.disabled)
            .field("metadata", self.metadata())
            .field("allowed_networks", self.allowed_networks())
            .field("last_used_at", &self.last_used_at())
            .field("rate_limits", self.rate_limits())
            .field("lineage", self.lineage())
            .finish()
    }
}

/// The serde form, written from a record's parts.
#[derive(Serialize)]
#[serde(bound = "")]
struct WireOut<'a, S: Scope> {
    id: &'a KeyId,
    digest: &'a KeyDigest,
    owner: &'a str,
    name: &'a str,
    prefix: &'a str,
    environment: Environment,
    hint: String,
    scopes: ScopeSet<S>,
    #[serde(with = "unix_millis")]
    created_at: SystemTime,
    #[serde(with = "unix_millis::option")]
    expires_at: Option<SystemTime>,
    #[serde(with = "unix_millis::option")]
    revoked_at: Option<SystemTime>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    revoked: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    disabled: bool,
    #[serde(skip_serializing_if = "Metadata::is_empty")]
    metadata: &'a Metadata,
    #[serde(skip_serializing_if = "AllowedNetworks::is_empty")]
    allowed_networks: &'a AllowedNetworks,
    #[serde(with = "unix_millis::option", skip_serializing_if = "Option::is_none")]
    last_used_at: Option<SystemTime>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    rate_limits: &'a BTreeMap<ClassName, Quota>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lineage: Option<&'a KeyId>,
}

/// The serde form, read.
#[derive(Deserialize)]
#[serde(bound = "")]
struct WireIn<S: Scope> {
    id: KeyId,
    digest: KeyDigest,
    owner: String,
    name: String,
    prefix: String,
    environment: Environment,
    hint: String,
    scopes: ScopeSet<S>,
    #[serde(with = "unix_millis")]
    created_at: SystemTime,
    #[serde(default, with = "unix_millis::option")]
    expires_at: Option<SystemTime>,
    #[serde(default, with = "unix_millis::option")]
    revoked_at: Option<SystemTime>,
    #[serde(default)]
    revoked: bool,
    #[serde(default)]
    disabled: bool,
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    allowed_networks: AllowedNetworks,
    #[serde(default, with = "unix_millis::option")]
    last_used_at: Option<SystemTime>,
    #[serde(default)]
    rate_limits: BTreeMap<ClassName, Quota>,
    #[serde(default)]
    lineage: Option<KeyId>,
}

impl<S: Scope> Serialize for KeyRecord<S> {
    fn serialize<Ser: serde::Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        WireOut {
            id: &self.id,
            digest: &self.digest,
            owner: self.owner(),
            name: self.name(),
            prefix: self.prefix(),
            environment: self.environment,
            hint: self.hint(),
            scopes: self.scopes,
            created_at: self.created_at(),
            expires_at: self.expires_at(),
            revoked_at: self.revoked_at(),
            revoked: self.revoked,
            disabled: self.disabled,
            metadata: self.metadata(),
            allowed_networks: self.allowed_networks(),
            last_used_at: self.last_used_at(),
            rate_limits: self.rate_limits(),
            lineage: self.rare().lineage.as_ref(),
        }
        .serialize(serializer)
    }
}

impl<'de, S: Scope> Deserialize<'de> for KeyRecord<S> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = WireIn::<S>::deserialize(deserializer)?;
        let mut record = Self {
            id: wire.id,
            digest: wire.digest,
            owner: wire.owner.into(),
            name: wire.name.into(),
            prefix: prefix_of(&wire.prefix),
            scopes: wire.scopes,
            created_at: At::new(wire.created_at),
            expires_at: At::from_option(wire.expires_at),
            revoked_at: At::from_option(wire.revoked_at),
            last_used_at: At::from_option(wire.last_used_at),
            rare: None,
            hint_tail: [0; 4],
            environment: wire.environment,
            revoked: wire.revoked,
            disabled: wire.disabled,
        };
        record.set_hint(wire.hint);
        record.set_metadata(wire.metadata);
        record.set_allowed_networks(wire.allowed_networks);
        record.set_rate_limits(wire.rate_limits);
        if let Some(lineage) = wire.lineage {
            record.set_lineage(lineage);
        }
        Ok(record)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forg::ForgScope;
    use crate::key::KeyHasher;

    fn issued(family: &KeyFamily) -> (PlaintextKey, KeyRecord<ForgScope>) {
        let at = UNIX_EPOCH + Duration::from_millis(1_796_169_600_123);
        NewKey::new("org_1", "ci", family)
            .issue(&KeyHasher::sha256(), at)
            .unwrap()
    }

    #[test]
    fn the_layout_is_compact() {
        // Counted, not timed: a field added to every record shows here first.
        assert_eq!(std::mem::size_of::<KeyRecord<ForgScope>>(), 160);
        let (_, record) = issued(&KeyFamily::FORG_LIVE);
        assert!(record.rare.is_none(), "nothing rare: no allocation for it");
        assert!(matches!(record.prefix, Cow::Borrowed("forg_live_")));
    }

    #[test]
    fn the_hint_is_rebuilt_from_the_prefix_and_the_tail() {
        for family in [KeyFamily::FORG_LIVE, KeyFamily::FORG_TEST, KeyFamily::FOS] {
            let (key, record) = issued(&family);
            assert_eq!(record.hint(), key.redacted());
            assert!(record.rare.is_none());
        }
    }

    #[test]
    fn a_hint_of_another_form_is_kept_as_given() {
        let (_, record) = issued(&KeyFamily::FORG_LIVE);
        for hint in [
            "forg_live_…",
            "forg_live_…ab",
            "legacy-****-9f3a",
            "forg_live_…abcde",
        ] {
            let mut json = serde_json::to_value(&record).unwrap();
            json["hint"] = hint.into();
            let read: KeyRecord<ForgScope> = serde_json::from_value(json.clone()).unwrap();
            assert_eq!(read.hint(), hint);
            assert_eq!(
                serde_json::to_value(&read).unwrap(),
                json,
                "the same serde form"
            );
        }
    }

    #[test]
    fn rare_parts_are_absent_again_once_all_are_empty() {
        let (_, mut record) = issued(&KeyFamily::FORG_LIVE);
        let metadata = Metadata::new([("team", "billing")]).unwrap();
        record.set_metadata(metadata.clone());
        record.set_allowed_networks(AllowedNetworks::new(["10.0.0.0/8"]).unwrap());
        assert_eq!(record.metadata(), &metadata);
        assert!(record.rare.is_some());
        record.set_metadata(Metadata::default());
        assert!(record.rare.is_some(), "the networks are still set");
        record.set_allowed_networks(AllowedNetworks::default());
        assert!(record.rare.is_none());
        assert!(record.metadata().is_empty() && record.rate_limits().is_empty());
    }

    #[test]
    fn times_are_kept_to_the_millisecond_over_any_range_a_client_can_send() {
        let (_, mut record) = issued(&KeyFamily::FORG_LIVE);
        let fine = UNIX_EPOCH + Duration::new(1_796_169_600, 123_456_789);
        record.set_expires_at(Some(fine));
        assert_eq!(
            record.expires_at(),
            Some(UNIX_EPOCH + Duration::from_millis(1_796_169_600_123))
        );
        // The last second RFC 3339 can write (the management API's latest expiry).
        let latest = UNIX_EPOCH + Duration::from_secs(253_402_300_799);
        record.set_revoked_at(Some(latest));
        assert_eq!(record.revoked_at(), Some(latest));
        assert_eq!(
            record.refused_since(),
            Some(fine.min(latest) - Duration::from_nanos(456_789))
        );
        record.set_last_used_at(Some(UNIX_EPOCH - Duration::from_secs(1)));
        assert_eq!(
            record.last_used_at(),
            Some(UNIX_EPOCH),
            "before 1970: the epoch"
        );
        record.set_expires_at(None);
        assert_eq!(record.expires_at(), None);
        assert_eq!(record.refused_since(), Some(latest));
    }

    #[test]
    fn status_compares_times_at_millisecond_precision() {
        let (_, mut record) = issued(&KeyFamily::FORG_LIVE);
        let at = UNIX_EPOCH + Duration::from_millis(1_796_170_000_000);
        record.set_expires_at(Some(at));
        assert_eq!(
            record.status_at(at - Duration::from_nanos(1)),
            KeyStatus::Active
        );
        assert_eq!(record.status_at(at), KeyStatus::Expired);
        record.set_revoked_at(Some(at - Duration::from_secs(1)));
        assert_eq!(record.status_at(at), KeyStatus::Revoked);
    }
}
