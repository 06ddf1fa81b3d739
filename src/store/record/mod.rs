//! [`KeyRecord`]: what a store keeps about one key, in a compact layout; its id
//! ([`KeyId`]), its serde form, and the request that issues one ([`NewKey`]).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::{AllowedNetworks, Metadata};
use crate::key::{Environment, GenerateError, KeyDigest, KeyFamily, KeyHasher, PlaintextKey};
use crate::quota::{ClassName, Quota};
use crate::scope::{Scope, ScopeSet};

mod id;
mod new_key;
mod wire;

pub use id::{InvalidKeyId, KeyId};
pub use new_key::{IssuedKey, NewKey};

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
    // Bumped by every change but a use: what an `ETag` names.
    version: u64,
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
            version: 0,
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

    /// The record's version: 0 when issued, one more after each change a store makes to
    /// it (an update, a revocation, disabling or enabling; never a use). The management
    /// API's `ETag`.
    #[inline]
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Sets the version (a store reading its own form).
    pub fn set_version(&mut self, version: u64) {
        self.version = version;
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
            .field("version", &self.version)
            .finish()
    }
}

#[cfg(test)]
mod tests;
