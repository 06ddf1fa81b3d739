use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dashmap::DashMap;

use super::{IssuedKey, KeyId, KeyRecord, KeyStatus, KeyStore, LookupResult, ManageError, NewKey};
use crate::clock::{Clock, SystemClock};
use crate::key::{BuildDigestHasher, KeyDigest, KeyFamilies, KeyHasher};
use crate::scope::Scope;

const DEFAULT_MAX_KEYS_PER_OWNER: NonZeroUsize = match NonZeroUsize::new(10) {
    Some(n) => n,
    None => unreachable!(),
};

/// The embedded key store: records in [`DashMap`]s, lookups without allocation or locks
/// held across `await`.
///
/// - At most 10 active keys per owner by default
///   ([`with_max_keys_per_owner`](Self::with_max_keys_per_owner)); revoked and expired
///   keys do not count. The check and the insert happen under the owner's lock, so
///   concurrent issues can never exceed the limit.
/// - [`revoke`](Self::revoke) is immediate: once it returns, the next lookup sees it.
/// - [`rotate`](Self::rotate) issues a successor with the same owner, name, family,
///   scopes and overrides; the old key stays valid until revoked or until the grace
///   period ends.
///
/// Share it between the layer and your handlers as `Arc<MemoryKeyStore>`.
pub struct MemoryKeyStore<S: Scope> {
    by_digest: DashMap<KeyDigest, Arc<KeyRecord<S>>, BuildDigestHasher>,
    by_id: DashMap<KeyId, KeyDigest>,
    by_owner: DashMap<String, Vec<KeyId>>,
    max_keys_per_owner: NonZeroUsize,
    families: KeyFamilies,
    hasher: KeyHasher,
    clock: Arc<dyn Clock>,
}

impl<S: Scope> MemoryKeyStore<S> {
    /// An empty store of records in scope vocabulary `S` (usually inferred from the keys
    /// issued: `MemoryKeyStore::<ForgScope>::new()` names it).
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S: Scope> Default for MemoryKeyStore<S> {
    fn default() -> Self {
        Self {
            by_digest: DashMap::default(),
            by_id: DashMap::new(),
            by_owner: DashMap::new(),
            max_keys_per_owner: DEFAULT_MAX_KEYS_PER_OWNER,
            families: KeyFamilies::default(),
            hasher: KeyHasher::sha256(),
            clock: Arc::new(SystemClock),
        }
    }
}

impl<S: Scope> MemoryKeyStore<S> {
    /// At most `limit` active keys per owner (default 10).
    #[must_use]
    pub fn with_max_keys_per_owner(mut self, limit: NonZeroUsize) -> Self {
        self.max_keys_per_owner = limit;
        self
    }

    /// Hash keys with `hasher` (e.g. peppered). Set it before issuing the first key.
    #[must_use]
    pub fn with_hasher(mut self, hasher: KeyHasher) -> Self {
        self.hasher = hasher;
        self
    }

    /// The families [`rotate`](Self::rotate) can issue successors in (default: built-in).
    #[must_use]
    pub fn with_families(mut self, families: KeyFamilies) -> Self {
        self.families = families;
        self
    }

    /// Timestamps from `clock` (default: the system clock).
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Issues a key. The plaintext is in the returned [`IssuedKey`] and nowhere else.
    ///
    /// # Errors
    /// [`ManageError::KeyLimitReached`] when the owner has the maximum number of active
    /// keys; [`ManageError::Generate`] when the OS has no randomness.
    pub fn issue(&self, new: NewKey<S>) -> Result<IssuedKey<S>, ManageError> {
        let now = self.clock.now();
        // The owner's entry is locked until the key is in: check and insert are one step.
        let mut owned = self.by_owner.entry(new.owner().to_owned()).or_default();
        self.check_limit(&owned, now, None)?;
        let (key, record) = new.issue(&self.hasher, now)?;
        let record = self.insert_unlocked(&mut owned, record)?;
        Ok(IssuedKey::new(key, record))
    }

    /// Stores an existing record (e.g. restored from a backup), under the same limits.
    ///
    /// # Errors
    /// [`ManageError::Duplicate`] when its id or digest is already stored;
    /// [`ManageError::KeyLimitReached`] when it is active and its owner is at the limit.
    pub fn insert(&self, record: KeyRecord<S>) -> Result<Arc<KeyRecord<S>>, ManageError> {
        let now = self.clock.now();
        let mut owned = self.by_owner.entry(record.owner.clone()).or_default();
        if record.status_at(now) == KeyStatus::Active {
            self.check_limit(&owned, now, None)?;
        }
        self.insert_unlocked(&mut owned, record)
    }

    /// The record with id `id`.
    pub fn get(&self, id: &KeyId) -> Option<Arc<KeyRecord<S>>> {
        let digest = self.by_id.get(id).map(|d| *d.value())?;
        self.by_digest.get(&digest).map(|r| Arc::clone(r.value()))
    }

    /// Every record of `owner`, revoked and expired ones included, oldest first.
    pub fn list(&self, owner: &str) -> Vec<Arc<KeyRecord<S>>> {
        let ids = self
            .by_owner
            .get(owner)
            .map(|ids| ids.value().clone())
            .unwrap_or_default();
        let mut records: Vec<_> = ids.iter().filter_map(|id| self.get(id)).collect();
        records.sort_by_key(|r| r.created_at);
        records
    }

    /// Revokes the key now. Idempotent; a revocation scheduled for later (rotation grace)
    /// is brought forward to now.
    ///
    /// # Errors
    /// [`ManageError::NotFound`] when no key has that id.
    pub fn revoke(&self, id: &KeyId) -> Result<Arc<KeyRecord<S>>, ManageError> {
        self.revoke_at(id, self.clock.now())
    }

    /// Issues a successor of key `id` (same owner, name, family, scopes, overrides; an
    /// expiring key gets the same lifetime again).
    ///
    /// `grace`: `None` leaves the old key valid until it is revoked; `Some(d)` revokes it
    /// `d` from now (`Duration::ZERO`: at once, and the new key takes its slot in the
    /// owner's limit).
    ///
    /// # Errors
    /// [`ManageError::NotFound`] when no active key has that id;
    /// [`ManageError::KeyLimitReached`] when the successor would exceed the owner's limit.
    pub fn rotate(&self, id: &KeyId, grace: Option<Duration>) -> Result<IssuedKey<S>, ManageError> {
        let now = self.clock.now();
        let old = self
            .get(id)
            .filter(|r| r.status_at(now) == KeyStatus::Active)
            .ok_or_else(|| ManageError::NotFound(id.clone()))?;
        let family = self
            .families
            .find(&old.prefix)
            .cloned()
            .ok_or_else(|| ManageError::NotFound(id.clone()))?;

        let mut owned = self.by_owner.entry(old.owner.clone()).or_default();
        let replaced = (grace == Some(Duration::ZERO)).then_some(id);
        self.check_limit(&owned, now, replaced)?;
        let (key, record) = NewKey::successor(&old, family).issue(&self.hasher, now)?;
        let record = self.insert_unlocked(&mut owned, record)?;
        if let Some(grace) = grace {
            // Still under the owner's lock, so nobody sees both keys counted as active.
            self.revoke_at(id, now + grace)?;
        }
        drop(owned);
        Ok(IssuedKey::new(key, record))
    }

    /// Removes the record entirely (a revoked key is kept for listings; a deleted one is
    /// gone).
    ///
    /// # Errors
    /// [`ManageError::NotFound`] when no key has that id.
    pub fn delete(&self, id: &KeyId) -> Result<Arc<KeyRecord<S>>, ManageError> {
        let (_, digest) = self
            .by_id
            .remove(id)
            .ok_or_else(|| ManageError::NotFound(id.clone()))?;
        let (_, record) = self
            .by_digest
            .remove(&digest)
            .ok_or_else(|| ManageError::NotFound(id.clone()))?;
        if let Some(mut owned) = self.by_owner.get_mut(&record.owner) {
            owned.retain(|owned_id| owned_id != id);
        }
        Ok(record)
    }

    /// How many records are stored, revoked and expired ones included.
    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    /// Whether no record is stored.
    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    fn check_limit(
        &self,
        owned: &[KeyId],
        now: SystemTime,
        replaced: Option<&KeyId>,
    ) -> Result<(), ManageError> {
        let active = owned
            .iter()
            .filter(|id| Some(*id) != replaced)
            .filter_map(|id| self.get(id))
            .filter(|r| r.status_at(now) == KeyStatus::Active)
            .count();
        if active >= self.max_keys_per_owner.get() {
            return Err(ManageError::KeyLimitReached {
                limit: self.max_keys_per_owner.get(),
            });
        }
        Ok(())
    }

    /// Inserts into the id and digest maps; the caller holds the owner's entry.
    fn insert_unlocked(
        &self,
        owned: &mut Vec<KeyId>,
        record: KeyRecord<S>,
    ) -> Result<Arc<KeyRecord<S>>, ManageError> {
        use dashmap::mapref::entry::Entry;

        let record = Arc::new(record);
        match self.by_id.entry(record.id.clone()) {
            Entry::Occupied(_) => return Err(ManageError::Duplicate),
            Entry::Vacant(slot) => match self.by_digest.entry(record.digest) {
                Entry::Occupied(_) => return Err(ManageError::Duplicate),
                Entry::Vacant(digest_slot) => {
                    digest_slot.insert(Arc::clone(&record));
                    slot.insert(record.digest);
                }
            },
        }
        owned.push(record.id.clone());
        Ok(record)
    }

    /// Records a use of key `id` at `at` (ignored when not later than the stored one).
    pub(crate) fn set_last_used(&self, id: &KeyId, at: SystemTime) {
        let Some(digest) = self.by_id.get(id).map(|d| *d.value()) else {
            return;
        };
        if let Some(mut slot) = self.by_digest.get_mut(&digest) {
            if slot.last_used_at.is_none_or(|last| last < at) {
                let mut used = KeyRecord::clone(&slot);
                used.last_used_at = Some(at);
                *slot = Arc::new(used);
            }
        }
    }

    fn revoke_at(&self, id: &KeyId, at: SystemTime) -> Result<Arc<KeyRecord<S>>, ManageError> {
        let digest = self
            .by_id
            .get(id)
            .map(|d| *d.value())
            .ok_or_else(|| ManageError::NotFound(id.clone()))?;
        let mut slot = self
            .by_digest
            .get_mut(&digest)
            .ok_or_else(|| ManageError::NotFound(id.clone()))?;
        if slot.revoked_at.is_none_or(|existing| existing > at) {
            let mut revoked = KeyRecord::clone(&slot);
            revoked.revoked_at = Some(at);
            *slot = Arc::new(revoked);
        }
        Ok(Arc::clone(&slot))
    }
}

impl<S: Scope> KeyStore for MemoryKeyStore<S> {
    type Scope = S;

    async fn lookup(&self, digest: &KeyDigest) -> LookupResult<S> {
        Ok(self.by_digest.get(digest).map(|r| Arc::clone(r.value())))
    }

    #[inline]
    fn lookup_now(&self, digest: &KeyDigest) -> Option<LookupResult<S>> {
        Some(Ok(self
            .by_digest
            .get(digest)
            .map(|r| Arc::clone(r.value()))))
    }

    fn hasher(&self) -> &KeyHasher {
        &self.hasher
    }
}

impl<S: Scope> fmt::Debug for MemoryKeyStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryKeyStore")
            .field("keys", &self.by_digest.len())
            .field("owners", &self.by_owner.len())
            .field("max_keys_per_owner", &self.max_keys_per_owner)
            .field("hasher", &self.hasher)
            .finish_non_exhaustive()
    }
}
