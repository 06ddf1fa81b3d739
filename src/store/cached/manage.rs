//! [`ManageKeys`] through the cache: every change reaches the inner store, and what it
//! changes is forgotten here before the call returns.

use std::sync::Arc;
use std::time::SystemTime;

use super::CachedKeyStore;
use crate::store::{Insert, KeyId, KeyRecord, ManageError, ManageKeys, Revocation, StoreError};

/// Every call goes to the inner store; a call that changes what a key is accepted for
/// (revoking, disabling, updating, rotating with a revocation, deleting) forgets the key
/// here before it returns, so the next request on this instance sees the change.
impl<St: ManageKeys> ManageKeys for CachedKeyStore<St> {
    async fn insert(
        &self,
        insert: Insert<St::Scope>,
    ) -> Result<Arc<KeyRecord<St::Scope>>, ManageError> {
        let replaced = insert.replacing().map(|(id, _)| id.clone());
        let record = self.inner.insert(insert).await?;
        if let Some(id) = replaced {
            self.invalidate(&id).await;
        }
        Ok(record)
    }

    async fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord<St::Scope>>>, ManageError> {
        self.inner.get(id).await
    }

    async fn records_of(&self, owner: &str) -> Result<Vec<Arc<KeyRecord<St::Scope>>>, ManageError> {
        self.inner.records_of(owner).await
    }

    async fn records_after(
        &self,
        after: Option<&KeyId>,
        limit: std::num::NonZeroUsize,
    ) -> Result<crate::store::KeyPage<St::Scope>, ManageError> {
        self.inner.records_after(after, limit).await
    }

    async fn revoke_at(
        &self,
        id: &KeyId,
        revocation: Revocation,
    ) -> Result<Arc<KeyRecord<St::Scope>>, ManageError> {
        let revoked = self.inner.revoke_at(id, revocation).await;
        // Forgotten even when the store failed: the revocation may have landed.
        self.invalidate(id).await;
        revoked
    }

    async fn set_disabled(
        &self,
        id: &KeyId,
        disabled: bool,
    ) -> Result<Arc<KeyRecord<St::Scope>>, ManageError> {
        let changed = self.inner.set_disabled(id, disabled).await;
        self.invalidate(id).await;
        changed
    }

    async fn replace(
        &self,
        record: KeyRecord<St::Scope>,
        expected: u64,
    ) -> Result<Arc<KeyRecord<St::Scope>>, ManageError> {
        let id = record.id().clone();
        let replaced = self.inner.replace(record, expected).await;
        // A narrowed scope or a new network list takes effect on the next request here.
        self.invalidate(&id).await;
        replaced
    }

    async fn delete(&self, id: &KeyId) -> Result<Arc<KeyRecord<St::Scope>>, ManageError> {
        let deleted = self.inner.delete(id).await;
        self.invalidate(id).await;
        deleted
    }

    async fn touch(&self, id: &KeyId, at: SystemTime) -> Result<(), StoreError> {
        self.inner.touch(id, at).await
    }

    /// The inner store's purge: what it deletes was refused already, cached or not.
    async fn purge(&self, owner: &str, before: SystemTime) -> Result<usize, ManageError> {
        self.inner.purge(owner, before).await
    }
}
