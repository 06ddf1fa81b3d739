//! [`ManageKeys`]: the key lifecycle, written once over a few atomic primitives per backend.

use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{
    IssuedKey, KeyId, KeyPage, KeyRecord, KeyStatus, KeyStore, KeyUpdate, ManageError, NewKey,
    StoreError, StoreErrorKind,
};

/// How often an unconditional update reads the key again after a concurrent change.
const UPDATE_ATTEMPTS: usize = 8;

/// Fails with [`ManageError::PlanRequired`] when the policy's plans refuse.
async fn plan_allows(
    policy: &super::KeyPolicy,
    owner: &str,
    environment: crate::key::Environment,
) -> Result<(), ManageError> {
    match policy.plan_policy() {
        Some(plans) if !plans.allows(owner, environment).await? => {
            Err(ManageError::PlanRequired(environment))
        }
        _ => Ok(()),
    }
}

/// A revocation: immediate (the key is refused from now on, whatever any clock says) or
/// scheduled (refused from `at`, on the clock of whoever checks: a rotation's grace
/// period, whose precision is that of the instances' clocks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Revocation {
    at: SystemTime,
    immediate: bool,
}

impl Revocation {
    /// Revoked now; `at` is recorded as the revocation time.
    pub const fn immediate(at: SystemTime) -> Self {
        Self {
            at,
            immediate: true,
        }
    }

    /// Revoked from `at` on.
    pub const fn scheduled(at: SystemTime) -> Self {
        Self {
            at,
            immediate: false,
        }
    }

    /// The revocation time (an earlier one already recorded is kept).
    pub const fn at(&self) -> SystemTime {
        self.at
    }

    /// Whether the key is refused from now on, whatever the clocks say.
    pub const fn is_immediate(&self) -> bool {
        self.immediate
    }

    /// `record` with this revocation applied: the earlier time wins, and an immediate
    /// revocation sets [`KeyRecord::revoked`]. `None` when nothing changes.
    pub fn apply<S: crate::scope::Scope>(&self, record: &KeyRecord<S>) -> Option<KeyRecord<S>> {
        let earlier = record
            .revoked_at()
            .is_none_or(|existing| existing > self.at);
        let newly = self.immediate && !record.revoked();
        (earlier || newly).then(|| {
            let mut revoked = record.clone();
            if earlier {
                revoked.set_revoked_at(Some(self.at));
            }
            revoked.set_revoked(revoked.revoked() || self.immediate);
            revoked
        })
    }
}

/// A record to store, with the owner limit it must respect; built by [`ManageKeys`]'
/// provided methods and handed to [`ManageKeys::insert`].
///
/// A backend stores [`record`](Self::record) only if, at [`now`](Self::now), its owner has
/// fewer than [`max_active`](Self::max_active) active keys, not counting the replaced key
/// when [`replacing`](Self::replacing) revokes it by `now`. When a replacement is given,
/// the replaced key's revocation is scheduled in the same atomic step: nobody ever sees
/// both the old and the new key counted, or the new key stored and the old one not
/// scheduled.
#[derive(Debug)]
pub struct Insert<S: crate::scope::Scope> {
    record: KeyRecord<S>,
    now: SystemTime,
    max_active: NonZeroUsize,
    replacing: Option<(KeyId, Revocation)>,
}

impl<S: crate::scope::Scope> Insert<S> {
    /// The record to store.
    pub fn record(&self) -> &KeyRecord<S> {
        &self.record
    }

    /// The record, to store it.
    pub fn into_record(self) -> KeyRecord<S> {
        self.record
    }

    /// The time the owner's active keys are counted at.
    pub fn now(&self) -> SystemTime {
        self.now
    }

    /// The most active keys the owner may hold once the record is in.
    pub fn max_active(&self) -> NonZeroUsize {
        self.max_active
    }

    /// The key this one replaces and its revocation.
    pub fn replacing(&self) -> Option<(&KeyId, Revocation)> {
        self.replacing
            .as_ref()
            .map(|(id, revocation)| (id, *revocation))
    }

    /// The id not to count against the limit: the replaced key, if revoked by `now`.
    pub fn frees_slot_of(&self) -> Option<&KeyId> {
        self.replacing
            .as_ref()
            .filter(|(_, revocation)| revocation.immediate || revocation.at <= self.now)
            .map(|(id, _)| id)
    }

    /// Whether `record` counts against the owner limit at `now`: neither revoked nor
    /// expired (a disabled key keeps its slot).
    pub fn counts(&self, record: &KeyRecord<S>) -> bool {
        Some(record.id()) != self.frees_slot_of()
            && matches!(
                record.status_at(self.now),
                KeyStatus::Active | KeyStatus::Disabled
            )
    }
}

/// The key lifecycle: issue (plaintext shown once), get, list, update in place, revoke,
/// rotate, delete and last use, for any backend.
///
/// A backend implements the primitives ([`insert`](Self::insert), [`get`](Self::get),
/// [`records_of`](Self::records_of), [`revoke_at`](Self::revoke_at),
/// [`set_disabled`](Self::set_disabled), [`replace`](Self::replace),
/// [`delete`](Self::delete), [`touch`](Self::touch)),
/// each atomic on its own; issuing, rotation, the owner limit, the family and plan checks
/// are the provided methods, the same for every store. The policy (families, owner limit,
/// clock, plans) is the store's
/// [`KeyStore::policy`].
///
/// ```
/// use tower_api_key::forg::ForgScope;
/// use tower_api_key::key::KeyFamily;
/// use tower_api_key::store::{KeyStatus, ManageKeys, MemoryKeyStore, NewKey};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryKeyStore::<ForgScope>::new().with_policy(tower_api_key::forg::key_policy());
/// let issued = store
///     .issue(NewKey::new("org_1", "ci", &KeyFamily::FORG_TEST).scopes(ForgScope::ReadRules))
///     .await
///     .unwrap();
/// let successor = store.rotate(issued.record().id(), Some(std::time::Duration::ZERO)).await.unwrap();
/// assert_eq!(successor.record().scopes(), issued.record().scopes());
/// let old = store.get(issued.record().id()).await.unwrap().unwrap();
/// assert_eq!(old.status_at(std::time::SystemTime::now()), KeyStatus::Revoked);
/// # });
/// ```
pub trait ManageKeys: KeyStore {
    /// Stores `insert`'s record under its owner limit (see [`Insert`]), atomically.
    ///
    /// # Errors
    /// [`ManageError::KeyLimitReached`] when the owner is at the limit (carrying
    /// `insert.max_active()`), [`ManageError::Duplicate`] when the id or digest is taken,
    /// [`ManageError::NotFound`] when the replaced key is gone, [`ManageError::Store`].
    fn insert(
        &self,
        insert: Insert<Self::Scope>,
    ) -> impl Future<Output = Result<Arc<KeyRecord<Self::Scope>>, ManageError>> + Send;

    /// The record with id `id`, revoked and expired ones included.
    fn get(
        &self,
        id: &KeyId,
    ) -> impl Future<Output = Result<Option<Arc<KeyRecord<Self::Scope>>>, ManageError>> + Send;

    /// Every record of `owner`, revoked and expired ones included, in any order.
    fn records_of(
        &self,
        owner: &str,
    ) -> impl Future<Output = Result<Vec<Arc<KeyRecord<Self::Scope>>>, ManageError>> + Send;

    /// Applies `revocation` to key `id` ([`Revocation::apply`]: the earlier time wins, an
    /// immediate revocation sets [`KeyRecord::revoked`]). Once this returns, every lookup
    /// through this store sees it.
    fn revoke_at(
        &self,
        id: &KeyId,
        revocation: Revocation,
    ) -> impl Future<Output = Result<Arc<KeyRecord<Self::Scope>>, ManageError>> + Send;

    /// Sets or clears [`KeyRecord::disabled`]. Once this returns, every lookup through this
    /// store sees it.
    fn set_disabled(
        &self,
        id: &KeyId,
        disabled: bool,
    ) -> impl Future<Output = Result<Arc<KeyRecord<Self::Scope>>, ManageError>> + Send;

    /// Removes the record entirely (a revoked key stays listed; a deleted one is gone).
    fn delete(
        &self,
        id: &KeyId,
    ) -> impl Future<Output = Result<Arc<KeyRecord<Self::Scope>>, ManageError>> + Send;

    /// Records a use of key `id` at `at` (kept only if later than the stored one). An
    /// unknown id is not an error: the key may have been deleted since.
    fn touch(
        &self,
        id: &KeyId,
        at: SystemTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Up to `limit` records of every owner whose ids sort after `after` (from the first
    /// when `None`), in id order: the bounded cursor of a scan over all keys
    /// ([`KeyScan`](crate::events::KeyScan)). See [`KeyPage`] for what a scan that follows
    /// it meets. The default answers [`ManageError::Unsupported`].
    ///
    /// # Errors
    /// [`ManageError::Unsupported`], [`ManageError::Store`].
    fn records_after(
        &self,
        after: Option<&KeyId>,
        limit: NonZeroUsize,
    ) -> impl Future<Output = Result<KeyPage<Self::Scope>, ManageError>> + Send {
        let _ = (after, limit);
        std::future::ready(Err(ManageError::Unsupported("scan every key")))
    }

    /// Stores `record`'s settings (name, scopes, expiry, metadata, allowed networks,
    /// rate-limit overrides) over key `record.id()` if the stored version is `expected`,
    /// and makes the version `expected + 1`, atomically; every lookup through this store
    /// sees the change once this returns (as for a revocation). Called by
    /// [`update`](Self::update), which checks the rules first.
    ///
    /// The default answers [`ManageError::Unsupported`]: a store written before updates
    /// existed keeps compiling, and its keys cannot be updated in place.
    ///
    /// # Errors
    /// [`ManageError::NotFound`], [`ManageError::VersionMismatch`] when the stored version
    /// is another, [`ManageError::Store`].
    fn replace(
        &self,
        record: KeyRecord<Self::Scope>,
        expected: u64,
    ) -> impl Future<Output = Result<Arc<KeyRecord<Self::Scope>>, ManageError>> + Send {
        let _ = (record, expected);
        std::future::ready(Err(ManageError::Unsupported("update keys in place")))
    }

    /// Changes key `id`'s settings in place (see [`KeyUpdate`]): scopes only narrow, the
    /// expiry stays within the policy's lifetime; a revoked or expired key is not changed.
    /// Conditional on [`KeyUpdate::if_version`] when set; otherwise a concurrent change
    /// makes it read the key again and re-check. An update that changes nothing writes
    /// nothing (the version stays).
    ///
    /// # Errors
    /// [`ManageError::NotFound`], [`ManageError::VersionMismatch`],
    /// [`ManageError::NotChangeable`], [`ManageError::Invalid`],
    /// [`ManageError::Unsupported`], [`ManageError::Store`].
    fn update<'a>(
        &'a self,
        id: &'a KeyId,
        update: KeyUpdate<Self::Scope>,
    ) -> impl Future<Output = Result<Arc<KeyRecord<Self::Scope>>, ManageError>> + Send + 'a {
        async move {
            let policy = self.policy();
            for _ in 0..UPDATE_ATTEMPTS {
                let now = policy.now();
                let current = self
                    .get(id)
                    .await?
                    .ok_or_else(|| ManageError::NotFound(id.clone()))?;
                if let Some(expected) = update.required_version() {
                    if current.version() != expected {
                        return Err(ManageError::VersionMismatch {
                            id: id.clone(),
                            expected,
                        });
                    }
                }
                if !matches!(
                    current.status_at(now),
                    KeyStatus::Active | KeyStatus::Disabled
                ) {
                    return Err(ManageError::NotChangeable(id.clone()));
                }
                let changed = update.apply(&current, policy, now)?;
                if changed == *current {
                    return Ok(current);
                }
                match self.replace(changed, current.version()).await {
                    Err(ManageError::VersionMismatch { .. })
                        if update.required_version().is_none() => {}
                    written => return written,
                }
            }
            Err(StoreError::new(
                StoreErrorKind::Unavailable,
                "the key kept changing while updating; try again",
            )
            .into())
        }
    }

    /// Deletes `owner`'s records that stopped authenticating (see
    /// [`KeyRecord::refused_since`]) before `before`; answers how many. Called by
    /// [`issue`](Self::issue) and [`rotate`](Self::rotate) with the policy's
    /// [retention](super::KeyPolicy::retention), so an owner's records stay bounded by its
    /// live keys plus those within retention. The default lists the owner's records and
    /// deletes each; a store that can do it in one statement overrides it.
    ///
    /// # Errors
    /// [`ManageError::Store`].
    fn purge(
        &self,
        owner: &str,
        before: SystemTime,
    ) -> impl Future<Output = Result<usize, ManageError>> + Send {
        async move {
            let mut purged = 0;
            for record in self.records_of(owner).await? {
                if record.refused_since().is_some_and(|at| at < before) {
                    match self.delete(record.id()).await {
                        Ok(_) => purged += 1,
                        Err(ManageError::NotFound(_)) => {} // deleted meanwhile
                        Err(error) => return Err(error),
                    }
                }
            }
            Ok(purged)
        }
    }

    /// Issues a key in one of the policy's families, within the owner limit. The plaintext
    /// is in the returned [`IssuedKey`] and nowhere else. Deletes the owner's records past
    /// retention first ([`purge`](Self::purge)).
    ///
    /// # Errors
    /// [`ManageError::FamilyNotAccepted`], [`ManageError::KeyLimitReached`],
    /// [`ManageError::Generate`] when the OS has no randomness, [`ManageError::Store`].
    fn issue(
        &self,
        new: NewKey<Self::Scope>,
    ) -> impl Future<Output = Result<IssuedKey<Self::Scope>, ManageError>> + Send {
        async move {
            let policy = self.policy();
            if policy.accepted_families().find(new.family().prefix()) != Some(new.family()) {
                return Err(ManageError::FamilyNotAccepted(
                    new.family().prefix().to_owned(),
                ));
            }
            plan_allows(policy, new.owner(), new.family().environment()).await?;
            let now = policy.now();
            if let Some(before) = policy.purge_before(now) {
                self.purge(new.owner(), before).await?;
            }
            let (key, mut record) = new.issue(self.hasher(), now)?;
            record.set_expires_at(policy.expiry(now, record.expires_at()));
            let insert = Insert {
                record,
                now,
                max_active: policy.max_active(),
                replacing: None,
            };
            let record = self.insert(insert).await?;
            Ok(IssuedKey::new(key, record))
        }
    }

    /// Every record of `owner`, oldest first.
    fn list(
        &self,
        owner: &str,
    ) -> impl Future<Output = Result<Vec<Arc<KeyRecord<Self::Scope>>>, ManageError>> + Send {
        async move {
            let mut records = self.records_of(owner).await?;
            records.sort_by_key(|record| (record.created_at(), record.id().clone()));
            Ok(records)
        }
    }

    /// Revokes the key now. Idempotent; a revocation scheduled for later (rotation grace)
    /// is brought forward to now.
    ///
    /// # Errors
    /// [`ManageError::NotFound`], [`ManageError::Store`].
    fn revoke(
        &self,
        id: &KeyId,
    ) -> impl Future<Output = Result<Arc<KeyRecord<Self::Scope>>, ManageError>> + Send {
        self.revoke_at(id, Revocation::immediate(self.policy().now()))
    }

    /// Refuses the key (401, server-side reason `disabled`) until [`enable`](Self::enable):
    /// reversible, unlike a revocation, and the key keeps its slot in the owner limit.
    ///
    /// # Errors
    /// [`ManageError::NotFound`], [`ManageError::Store`].
    fn disable(
        &self,
        id: &KeyId,
    ) -> impl Future<Output = Result<Arc<KeyRecord<Self::Scope>>, ManageError>> + Send {
        self.set_disabled(id, true)
    }

    /// Accepts a disabled key again (a revoked or expired one stays refused).
    ///
    /// # Errors
    /// [`ManageError::NotFound`], [`ManageError::Store`].
    fn enable(
        &self,
        id: &KeyId,
    ) -> impl Future<Output = Result<Arc<KeyRecord<Self::Scope>>, ManageError>> + Send {
        self.set_disabled(id, false)
    }

    /// Issues a successor of key `id`: same owner, name, family, scopes and overrides; an
    /// expiring key gets the same lifetime again.
    ///
    /// `grace`: `None` leaves the old key valid until it is revoked; `Some(d)` revokes it
    /// `d` from now, in the same atomic step as the insert (`Duration::ZERO`: at once, and
    /// the successor takes its slot in the owner limit).
    ///
    /// # Errors
    /// [`ManageError::NotFound`] when no active key has that id,
    /// [`ManageError::FamilyNotAccepted`] when the policy no longer accepts its family,
    /// [`ManageError::KeyLimitReached`], [`ManageError::Store`].
    fn rotate<'a>(
        &'a self,
        id: &'a KeyId,
        grace: Option<Duration>,
    ) -> impl Future<Output = Result<IssuedKey<Self::Scope>, ManageError>> + Send + 'a {
        async move {
            let policy = self.policy();
            let now = policy.now();
            let old = self
                .get(id)
                .await?
                .filter(|record| record.status_at(now) == KeyStatus::Active)
                .ok_or_else(|| ManageError::NotFound(id.clone()))?;
            let family = policy
                .accepted_families()
                .find(old.prefix())
                .cloned()
                .ok_or_else(|| ManageError::FamilyNotAccepted(old.prefix().to_owned()))?;
            plan_allows(policy, old.owner(), old.environment()).await?;
            if let Some(before) = policy.purge_before(now) {
                self.purge(old.owner(), before).await?;
            }
            let (key, mut record) = NewKey::successor(&old, family).issue(self.hasher(), now)?;
            record.set_expires_at(policy.expiry(now, record.expires_at()));
            let insert = Insert {
                record,
                now,
                max_active: policy.max_active(),
                // A grace past what the clock can count leaves the old key valid.
                replacing: grace.and_then(|grace| {
                    let revocation = if grace.is_zero() {
                        Revocation::immediate(now)
                    } else {
                        Revocation::scheduled(now.checked_add(grace)?)
                    };
                    Some((id.clone(), revocation))
                }),
            };
            let record = self.insert(insert).await?;
            Ok(IssuedKey::new(key, record))
        }
    }
}
