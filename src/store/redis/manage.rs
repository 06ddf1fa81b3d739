//! `ManageKeys` for [`RedisKeyStore`]: issue, rotate, revoke and the rest, each one
//! script (atomic on the server) that also tells the other instances.

use super::*;

/// Issue (with the owner limit and a rotation's revocation), update, revoke, delete and
/// last use each run as one Lua script: atomic, with no race between instances. Revocations and
/// deletions are published for [`RevocationListener`].
impl<S: Scope> ManageKeys for RedisKeyStore<S> {
    async fn insert(&self, insert: Insert<S>) -> Result<Arc<KeyRecord<S>>, ManageError> {
        let record = insert.record();
        let json =
            serde_json::to_string(record).map_err(|e| StoreError::new(StoreErrorKind::Other, e))?;
        let replaced_id = insert.replacing().map(|(id, _)| id.clone());
        let (replaced, replaced_at, immediate) = match insert.replacing() {
            Some((id, revocation)) => (
                id.as_str(),
                millis(revocation.at()).to_string(),
                flag(revocation.is_immediate()),
            ),
            None => ("", String::new(), flag(false)),
        };
        let replaced_digest = match &replaced_id {
            Some(id) => match self.digest_of(id.as_str()).await? {
                Some(digest) => digest,
                None => return Err(ManageError::NotFound(id.clone())),
            },
            None => String::new(),
        };
        let mut outcome = -3;
        for _ in 0..ISSUE_ATTEMPTS {
            let mut connection = self.connection.clone();
            let active: Vec<String> = connection
                .smembers(self.active_key(record.owner()))
                .await
                .map_err(redis_error)?;
            let mut invocation = self.scripts.issue.prepare_invoke();
            invocation
                .key(self.owner_key(record.owner()))
                .key(self.record_key(record.digest()))
                .key(self.id_key(record.id().as_str()))
                .key(self.active_key(record.owner()))
                .key(self.refused_key(record.owner()));
            let digests = self.declare_records(&mut invocation, &active).await?;
            if !replaced_digest.is_empty() {
                invocation
                    .key(self.id_key(replaced))
                    .key(self.record_key(&replaced_digest));
            }
            invocation
                .key(self.ids_key())
                .arg(&json)
                .arg(record.id().as_str())
                .arg(insert.max_active().get())
                .arg(millis(insert.now()))
                .arg(insert.frees_slot_of().map_or("", KeyId::as_str))
                .arg(replaced)
                .arg(&replaced_at)
                .arg(immediate)
                .arg(self.revocation_channel())
                .arg(self.retention_ms())
                .arg(&replaced_digest)
                .arg(record.digest().to_string())
                .arg(active.len())
                .arg(&active)
                .arg(&digests);
            outcome = invocation
                .invoke_async(&mut connection)
                .await
                .map_err(redis_error)?;
            if outcome != -3 {
                break;
            }
        }
        match outcome {
            1 => Ok(Arc::new(insert.into_record())),
            0 => Err(ManageError::KeyLimitReached {
                limit: insert.max_active().get(),
            }),
            -2 => match replaced_id {
                Some(id) => Err(ManageError::NotFound(id)),
                None => Err(ManageError::Duplicate),
            },
            -3 => Err(StoreError::new(
                StoreErrorKind::Unavailable,
                "the owner's keys kept changing while issuing; try again",
            )
            .into()),
            _ => Err(ManageError::Duplicate),
        }
    }

    async fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord<S>>>, ManageError> {
        let digest = self.digest_of(id.as_str()).await?;
        let Some(digest) = digest.and_then(|d| d.parse::<KeyDigest>().ok()) else {
            return Ok(None);
        };
        Ok(self.read(&digest).await?)
    }

    async fn records_of(&self, owner: &str) -> Result<Vec<Arc<KeyRecord<S>>>, ManageError> {
        let mut connection = self.connection.clone();
        let ids: Vec<String> = connection
            .smembers(self.owner_key(owner))
            .await
            .map_err(redis_error)?;
        let mut records = Vec::with_capacity(ids.len());
        for id in ids {
            if let Ok(id) = KeyId::new(id) {
                if let Some(record) = self.get(&id).await? {
                    records.push(record);
                }
            }
        }
        Ok(records)
    }

    /// A range of the id index (`ZRANGEBYLEX`), then each record; an id whose record has
    /// expired (past retention, by its TTL) leaves the index as the scan meets it.
    async fn records_after(
        &self,
        after: Option<&KeyId>,
        limit: std::num::NonZeroUsize,
    ) -> Result<KeyPage<S>, ManageError> {
        let mut connection = self.connection.clone();
        let from = after.map_or_else(|| "-".to_owned(), |id| format!("({id}"));
        let count = isize::try_from(limit.get()).unwrap_or(isize::MAX);
        let ids: Vec<String> = connection
            .zrangebylex_limit(self.ids_key(), from, "+", 0, count)
            .await
            .map_err(redis_error)?;
        let mut records = Vec::with_capacity(ids.len());
        let mut gone = Vec::new();
        for id in &ids {
            let Ok(id) = KeyId::new(id.clone()) else {
                continue;
            };
            match self.get(&id).await? {
                Some(record) => records.push(record),
                None => gone.push(id.as_str().to_owned()),
            }
        }
        if !gone.is_empty() {
            let _: i64 = connection
                .zrem(self.ids_key(), &gone)
                .await
                .map_err(redis_error)?;
        }
        let next = (ids.len() == limit.get())
            .then(|| ids.last().and_then(|id| KeyId::new(id.clone()).ok()))
            .flatten();
        Ok(KeyPage { records, next })
    }

    async fn revoke_at(
        &self,
        id: &KeyId,
        revocation: Revocation,
    ) -> Result<Arc<KeyRecord<S>>, ManageError> {
        if !self.revoke_script(id, revocation).await? {
            return Err(ManageError::NotFound(id.clone()));
        }
        self.get(id)
            .await?
            .ok_or_else(|| ManageError::NotFound(id.clone()))
    }

    async fn set_disabled(
        &self,
        id: &KeyId,
        disabled: bool,
    ) -> Result<Arc<KeyRecord<S>>, ManageError> {
        let Some(digest) = self.digest_of(id.as_str()).await? else {
            return Err(ManageError::NotFound(id.clone()));
        };
        let mut connection = self.connection.clone();
        let found: i64 = self
            .scripts
            .set_disabled
            .key(self.id_key(id.as_str()))
            .key(self.record_key(&digest))
            .arg(&digest)
            .arg(flag(disabled))
            .arg(self.revocation_channel())
            .arg(id.as_str())
            .invoke_async(&mut connection)
            .await
            .map_err(redis_error)?;
        if found != 1 {
            return Err(ManageError::NotFound(id.clone()));
        }
        self.get(id)
            .await?
            .ok_or_else(|| ManageError::NotFound(id.clone()))
    }

    async fn replace(
        &self,
        record: KeyRecord<S>,
        expected: u64,
    ) -> Result<Arc<KeyRecord<S>>, ManageError> {
        let id = record.id().clone();
        // The state beside the settings lives in its own hash fields, which the script
        // keeps: the JSON carries none of it, so an old read cannot bring it back.
        let mut settings = record;
        settings.set_revoked(false);
        settings.set_revoked_at(None);
        settings.set_disabled(false);
        settings.set_last_used_at(None);
        settings.set_version(0);
        let json = serde_json::to_string(&settings)
            .map_err(|e| StoreError::new(StoreErrorKind::Other, e))?;
        let digest = settings.digest().to_string();
        let mut connection = self.connection.clone();
        let outcome: i64 = self
            .scripts
            .replace
            .key(self.id_key(id.as_str()))
            .key(self.record_key(&digest))
            .key(self.refused_key(settings.owner()))
            .arg(&digest)
            .arg(expected)
            .arg(&json)
            .arg(self.revocation_channel())
            .arg(id.as_str())
            .arg(millis(self.policy.now()))
            .arg(self.retention_ms())
            .invoke_async(&mut connection)
            .await
            .map_err(redis_error)?;
        match outcome {
            1 => self
                .get(&id)
                .await?
                .ok_or_else(|| ManageError::NotFound(id.clone())),
            -1 => Err(ManageError::VersionMismatch { id, expected }),
            _ => Err(ManageError::NotFound(id)),
        }
    }

    async fn delete(&self, id: &KeyId) -> Result<Arc<KeyRecord<S>>, ManageError> {
        let record = self
            .get(id)
            .await?
            .ok_or_else(|| ManageError::NotFound(id.clone()))?;
        let mut connection = self.connection.clone();
        let found: i64 = self
            .scripts
            .delete
            .key(self.id_key(id.as_str()))
            .key(self.record_key(record.digest()))
            .key(self.owner_key(record.owner()))
            .key(self.active_key(record.owner()))
            .key(self.refused_key(record.owner()))
            .key(self.ids_key())
            .arg(record.digest().to_string())
            .arg(id.as_str())
            .arg(self.revocation_channel())
            .invoke_async(&mut connection)
            .await
            .map_err(redis_error)?;
        match found {
            1 => Ok(record),
            _ => Err(ManageError::NotFound(id.clone())),
        }
    }

    /// Batches of the owner's refused set, each read and then deleted by one script: the
    /// work is what is deleted.
    async fn purge(&self, owner: &str, before: SystemTime) -> Result<usize, ManageError> {
        const BATCH: usize = 100;
        let before = millis(before);
        let mut purged = 0;
        loop {
            let mut connection = self.connection.clone();
            let due: Vec<String> = connection
                .zrangebyscore_limit(
                    self.refused_key(owner),
                    "-inf",
                    format!("({before}"),
                    0,
                    BATCH as isize,
                )
                .await
                .map_err(redis_error)?;
            if due.is_empty() {
                return Ok(purged);
            }
            let mut invocation = self.scripts.purge.prepare_invoke();
            invocation
                .key(self.refused_key(owner))
                .key(self.owner_key(owner))
                .key(self.active_key(owner));
            let digests = self.declare_records(&mut invocation, &due).await?;
            let batch: usize = invocation
                .key(self.ids_key())
                .arg(before)
                .arg(due.len())
                .arg(&due)
                .arg(&digests)
                .invoke_async(&mut connection)
                .await
                .map_err(redis_error)?;
            purged += batch;
        }
    }

    async fn touch(&self, id: &KeyId, at: SystemTime) -> Result<(), StoreError> {
        let Some(digest) = self.digest_of(id.as_str()).await? else {
            return Ok(());
        };
        let mut connection = self.connection.clone();
        let _found: i64 = self
            .scripts
            .touch
            .key(self.id_key(id.as_str()))
            .key(self.record_key(&digest))
            .arg(&digest)
            .arg(millis(at))
            .invoke_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(())
    }
}
