use std::borrow::Borrow;
use std::collections::BTreeSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::num::NonZeroUsize;
use std::ops::Bound;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use dashmap::mapref::entry::Entry;
use dashmap::mapref::one::RefMut;
use dashmap::DashMap;

use super::update::{next_version, with_settings_of};
use super::{
    Insert, KeyId, KeyPage, KeyPolicy, KeyRecord, KeyStatus, KeyStore, LookupResult, ManageError,
    ManageKeys, Revocation, StoreError,
};
use crate::key::{BuildDigestHasher, KeyDigest, KeyHasher};
use crate::scope::Scope;
use crate::support::sweep::SweepAt;

/// The embedded key store: records in [`DashMap`]s, lookups without allocation or locks
/// held across `await`.
///
/// Manage keys through [`ManageKeys`]: every primitive completes without waiting.
/// - The owner limit of its [`KeyPolicy`] (10 active keys by default) is checked and the
///   key inserted under the owner's entry lock, so concurrent issues never exceed it.
/// - A revocation is immediate: once [`revoke`](ManageKeys::revoke) returns, the next
///   lookup sees it.
/// - Records that can no longer authenticate are deleted once past the policy's
///   [retention](KeyPolicy::retention): the owner's before each issue, and every owner's
///   each time the store has doubled in size since the last sweep ([`sweep`](Self::sweep)),
///   so memory follows live records plus retention, with no task to spawn.
///
/// Share it between the layer and your handlers as `Arc<MemoryKeyStore<YourScope>>`.
pub struct MemoryKeyStore<S: Scope> {
    // Both indexes hold the record itself as their key (one pointer per entry, found by
    // digest or by id through `Borrow`), not a copy of the digest or id beside it: about
    // 150 bytes less per stored key at a million keys.
    by_digest: DashMap<ByDigest<S>, (), BuildDigestHasher>,
    by_id: DashMap<ById<S>, ()>,
    // One copy of each owner's name, shared by the owner's records.
    by_owner: DashMap<Arc<str>, Vec<KeyId>>,
    // Every id in order, for a scan's cursor ([`ManageKeys::records_after`]): about 30
    // bytes a key (the id's pointer is shared with the record).
    in_order: Mutex<BTreeSet<KeyId>>,
    /// Held while a record is replaced in (or removed from) both indexes, so that two
    /// changes to one record (a revocation and a last-use stamp, say) never lose each other.
    changing: Mutex<()>,
    hasher: KeyHasher,
    policy: KeyPolicy,
    sweep_at: SweepAt,
}

/// A record as the digest index's key: hashed and compared by its digest.
struct ByDigest<S: Scope>(Arc<KeyRecord<S>>);

/// A record as the id index's key: hashed and compared by its id.
struct ById<S: Scope>(Arc<KeyRecord<S>>);

macro_rules! index_key {
    ($index:ident, $field:ident: $key:ty) => {
        impl<S: Scope> Hash for $index<S> {
            // The same as the field's own, which `Borrow` requires.
            #[inline]
            fn hash<H: Hasher>(&self, state: &mut H) {
                self.0.$field().hash(state)
            }
        }

        impl<S: Scope> PartialEq for $index<S> {
            fn eq(&self, other: &Self) -> bool {
                self.0.$field() == other.0.$field()
            }
        }

        impl<S: Scope> Eq for $index<S> {}

        impl<S: Scope> Borrow<$key> for $index<S> {
            #[inline]
            fn borrow(&self) -> &$key {
                self.0.$field()
            }
        }
    };
}

index_key!(ByDigest, digest: KeyDigest);
index_key!(ById, id: KeyId);

impl<S: Scope> MemoryKeyStore<S> {
    /// An empty store of records in scope vocabulary `S` (usually inferred from the keys
    /// issued: `MemoryKeyStore::<ForgScope>::new().with_policy(tower_api_key::forg::key_policy())` names it).
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
            in_order: Mutex::default(),
            changing: Mutex::new(()),
            hasher: KeyHasher::sha256(),
            policy: KeyPolicy::default(),
            sweep_at: SweepAt::new(),
        }
    }
}

impl<S: Scope> MemoryKeyStore<S> {
    /// Issues, verifies and counts keys under `policy` (default [`KeyPolicy::default`]).
    #[must_use]
    pub fn with_policy(mut self, policy: KeyPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Hash keys with `hasher` (e.g. peppered). Set it before issuing the first key.
    #[must_use]
    pub fn with_hasher(mut self, hasher: KeyHasher) -> Self {
        self.hasher = hasher;
        self
    }

    /// Stores an existing record (e.g. restored from a backup), under the owner limit
    /// when it is active.
    ///
    /// # Errors
    /// [`ManageError::Duplicate`] when its id or digest is already stored;
    /// [`ManageError::KeyLimitReached`] when it is active and its owner is at the limit.
    pub fn restore(&self, record: KeyRecord<S>) -> Result<Arc<KeyRecord<S>>, ManageError> {
        let now = self.policy.now();
        let mut owned = self
            .by_owner
            .entry(Arc::clone(record.owner_shared()))
            .or_default();
        if record.status_at(now) == KeyStatus::Active {
            let active = owned
                .iter()
                .filter_map(|id| self.record(id))
                .filter(|r| r.status_at(now) == KeyStatus::Active)
                .count();
            if active >= self.policy.max_active().get() {
                return Err(ManageError::KeyLimitReached {
                    limit: self.policy.max_active().get(),
                });
            }
        }
        self.insert_unlocked(&mut owned, record)
    }

    /// How many records are stored, revoked and expired ones included.
    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    /// Whether no record is stored.
    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    fn record(&self, id: &KeyId) -> Option<Arc<KeyRecord<S>>> {
        self.by_id.get(id).map(|r| Arc::clone(&r.key().0))
    }

    /// Inserts into the id and digest maps; the caller holds the owner's entry.
    fn insert_unlocked(
        &self,
        owned: &mut RefMut<'_, Arc<str>, Vec<KeyId>>,
        mut record: KeyRecord<S>,
    ) -> Result<Arc<KeyRecord<S>>, ManageError> {
        record.share_owner(Arc::clone(owned.key()));
        let record = Arc::new(record);
        match self.by_id.entry(ById(Arc::clone(&record))) {
            Entry::Occupied(_) => return Err(ManageError::Duplicate),
            Entry::Vacant(slot) => match self.by_digest.entry(ByDigest(Arc::clone(&record))) {
                Entry::Occupied(_) => return Err(ManageError::Duplicate),
                Entry::Vacant(digest_slot) => {
                    digest_slot.insert(());
                    slot.insert(());
                }
            },
        }
        // Exact growth: an owner holds a handful of keys, and doubling left a third of
        // each list empty (10 ids took room for 16).
        owned.reserve_exact(1);
        owned.push(record.id().clone());
        self.lock_order().insert(record.id().clone());
        Ok(record)
    }

    /// Replaces the record of `id` with `change(record)`, if `change` answers one.
    fn update(
        &self,
        id: &KeyId,
        change: impl FnOnce(&KeyRecord<S>) -> Option<KeyRecord<S>>,
    ) -> Option<Arc<KeyRecord<S>>> {
        let _changing = self.lock_changes();
        let current = self.record(id)?;
        let Some(changed) = change(&current) else {
            return Some(current);
        };
        let changed = Arc::new(changed);
        // The digest index first: authentication sees a revocation before anything else.
        if let Entry::Occupied(slot) = self.by_digest.entry(ByDigest(Arc::clone(&changed))) {
            slot.replace_entry(());
        }
        if let Entry::Occupied(slot) = self.by_id.entry(ById(Arc::clone(&changed))) {
            slot.replace_entry(());
        }
        Some(changed)
    }

    /// Changes to stored records (not inserts of new ones) take this lock, after the
    /// owner's entry when they take both.
    fn lock_changes(&self) -> std::sync::MutexGuard<'_, ()> {
        // The lock guards no data of its own: poisoned, it still serialises.
        self.changing.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_order(&self) -> std::sync::MutexGuard<'_, BTreeSet<KeyId>> {
        // A set of ids: poisoned mid-change, it still holds every id once.
        self.in_order.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn revoke_now(&self, id: &KeyId, revocation: Revocation) -> Option<Arc<KeyRecord<S>>> {
        self.update(id, |record| revocation.apply(record).map(next_version))
    }

    fn remove(&self, id: &KeyId) -> Result<Arc<KeyRecord<S>>, ManageError> {
        let not_found = || ManageError::NotFound(id.clone());
        let owner = Arc::clone(self.record(id).ok_or_else(not_found)?.owner_shared());
        // Under the owner's lock, as inserts are.
        let mut owned = self.by_owner.entry(owner).or_default();
        let record = {
            let _changing = self.lock_changes();
            let (ById(record), ()) = self.by_id.remove(id).ok_or_else(not_found)?;
            self.by_digest.remove(record.digest());
            record
        };
        owned.retain(|owned_id| owned_id != id);
        self.lock_order().remove(id);
        let emptied = owned.is_empty();
        let owner = owned.key().clone();
        drop(owned);
        if emptied {
            self.by_owner.remove_if(&owner, |_, ids| ids.is_empty());
        }
        Ok(record)
    }

    /// Deletes every record past the policy's retention now (see
    /// [`KeyRecord::refused_since`]); answers how many. Runs by itself as the store grows.
    pub fn sweep(&self) -> usize {
        let Some(before) = self.policy.purge_before(self.policy.now()) else {
            return 0;
        };
        let expired: Vec<KeyId> = self
            .by_digest
            .iter()
            .filter(|entry| entry.key().0.refused_since().is_some_and(|at| at < before))
            .map(|entry| entry.key().0.id().clone())
            .collect();
        let swept = expired.iter().filter(|id| self.remove(id).is_ok()).count();
        self.sweep_at.swept(self.len());
        swept
    }
}

impl<S: Scope> ManageKeys for MemoryKeyStore<S> {
    async fn insert(&self, insert: Insert<S>) -> Result<Arc<KeyRecord<S>>, ManageError> {
        // The owner's entry is locked until the key is in: count and insert are one step.
        let mut owned = self
            .by_owner
            .entry(Arc::clone(insert.record().owner_shared()))
            .or_default();
        let active = owned
            .iter()
            .filter_map(|id| self.record(id))
            .filter(|record| insert.counts(record))
            .count();
        if active >= insert.max_active().get() {
            return Err(ManageError::KeyLimitReached {
                limit: insert.max_active().get(),
            });
        }
        if let Some((id, _)) = insert.replacing() {
            if !owned.contains(id) {
                return Err(ManageError::NotFound(id.clone()));
            }
        }
        let replacing = insert.replacing().map(|(id, at)| (id.clone(), at));
        let record = self.insert_unlocked(&mut owned, insert.into_record())?;
        if let Some((id, at)) = replacing {
            // Still under the owner's lock: nobody sees both keys counted as active.
            self.revoke_now(&id, at);
        }
        drop(owned);
        // Amortised: a sweep each time the store has doubled since the last one.
        if self.sweep_at.due(self.len()) {
            self.sweep();
        }
        Ok(record)
    }

    async fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord<S>>>, ManageError> {
        Ok(self.record(id))
    }

    async fn records_of(&self, owner: &str) -> Result<Vec<Arc<KeyRecord<S>>>, ManageError> {
        let ids = self
            .by_owner
            .get(owner)
            .map(|ids| ids.value().clone())
            .unwrap_or_default();
        Ok(ids.iter().filter_map(|id| self.record(id)).collect())
    }

    async fn records_after(
        &self,
        after: Option<&KeyId>,
        limit: NonZeroUsize,
    ) -> Result<KeyPage<S>, ManageError> {
        let ids: Vec<KeyId> = {
            let order = self.lock_order();
            let from = after.map_or(Bound::Unbounded, Bound::Excluded);
            order
                .range::<KeyId, _>((from, Bound::Unbounded))
                .take(limit.get())
                .cloned()
                .collect()
        };
        let next = (ids.len() == limit.get())
            .then(|| ids.last().cloned())
            .flatten();
        let records = ids.iter().filter_map(|id| self.record(id)).collect();
        Ok(KeyPage { records, next })
    }

    async fn revoke_at(
        &self,
        id: &KeyId,
        revocation: Revocation,
    ) -> Result<Arc<KeyRecord<S>>, ManageError> {
        self.revoke_now(id, revocation)
            .ok_or_else(|| ManageError::NotFound(id.clone()))
    }

    async fn set_disabled(
        &self,
        id: &KeyId,
        disabled: bool,
    ) -> Result<Arc<KeyRecord<S>>, ManageError> {
        self.update(id, |record| {
            (record.disabled() != disabled).then(|| {
                let mut changed = record.clone();
                changed.set_disabled(disabled);
                next_version(changed)
            })
        })
        .ok_or_else(|| ManageError::NotFound(id.clone()))
    }

    async fn replace(
        &self,
        record: KeyRecord<S>,
        expected: u64,
    ) -> Result<Arc<KeyRecord<S>>, ManageError> {
        let id = record.id().clone();
        let mut stale = false;
        let changed = self.update(&id, |current| {
            stale = current.version() != expected;
            (!stale).then(|| with_settings_of(current, &record))
        });
        match changed {
            Some(_) if stale => Err(ManageError::VersionMismatch { id, expected }),
            Some(changed) => Ok(changed),
            None => Err(ManageError::NotFound(id)),
        }
    }

    async fn delete(&self, id: &KeyId) -> Result<Arc<KeyRecord<S>>, ManageError> {
        self.remove(id)
    }

    async fn touch(&self, id: &KeyId, at: SystemTime) -> Result<(), StoreError> {
        self.update(id, |record| {
            record.last_used_at().is_none_or(|last| last < at).then(|| {
                let mut used = record.clone();
                used.set_last_used_at(Some(at));
                used
            })
        });
        Ok(())
    }
}

impl<S: Scope> KeyStore for MemoryKeyStore<S> {
    fn backend(&self) -> &'static str {
        "memory"
    }

    type Scope = S;

    async fn lookup(&self, digest: &KeyDigest) -> LookupResult<S> {
        Ok(self.by_digest.get(digest).map(|r| Arc::clone(&r.key().0)))
    }

    #[inline]
    fn lookup_now(&self, digest: &KeyDigest) -> Option<LookupResult<S>> {
        Some(Ok(self
            .by_digest
            .get(digest)
            .map(|r| Arc::clone(&r.key().0))))
    }

    fn hasher(&self) -> &KeyHasher {
        &self.hasher
    }

    fn policy(&self) -> &KeyPolicy {
        &self.policy
    }
}

impl<S: Scope> fmt::Debug for MemoryKeyStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryKeyStore")
            .field("keys", &self.by_digest.len())
            .field("owners", &self.by_owner.len())
            .field("hasher", &self.hasher)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}
