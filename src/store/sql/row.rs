//! One row of the key table, and its conversion to and from a [`KeyRecord`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::key::{KeyDigest, KeyFamilies};
use crate::scope::{Scope, ScopeSet};
use crate::store::{KeyId, KeyRecord, StoreError, StoreErrorKind};

/// The columns, in `COLUMNS` order.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct Row {
    pub(crate) id: String,
    pub(crate) digest: Vec<u8>,
    pub(crate) owner: String,
    pub(crate) name: String,
    pub(crate) prefix: String,
    pub(crate) environment: String,
    pub(crate) hint: String,
    pub(crate) scopes: String,
    pub(crate) rate_limits: String,
    pub(crate) created_at: i64,
    pub(crate) expires_at: Option<i64>,
    pub(crate) revoked_at: Option<i64>,
    pub(crate) revoked: bool,
    pub(crate) disabled: bool,
    pub(crate) metadata: String,
    pub(crate) allowed_networks: String,
    pub(crate) last_used_at: Option<i64>,
    /// `None`: the key is the first of its rotation chain.
    pub(crate) lineage: Option<String>,
    pub(crate) version: i64,
}

pub(crate) fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

fn corrupt(what: &str) -> StoreError {
    StoreError::new(StoreErrorKind::Other, format!("corrupt key row: {what}"))
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|_| corrupt("unserialisable field"))
}

impl Row {
    /// A row for `record`.
    pub(crate) fn of<S: Scope>(record: &KeyRecord<S>) -> Result<Self, StoreError> {
        Ok(Self {
            id: record.id().as_str().to_owned(),
            digest: record.digest().as_bytes().to_vec(),
            owner: record.owner().to_owned(),
            name: record.name().to_owned(),
            prefix: record.prefix().to_owned(),
            environment: record.environment().as_str().to_owned(),
            hint: record.hint(),
            scopes: record.scopes().to_string(),
            rate_limits: json(&record.rate_limits())?,
            created_at: millis(record.created_at()),
            expires_at: record.expires_at().map(millis),
            revoked_at: record.revoked_at().map(millis),
            revoked: record.revoked(),
            disabled: record.disabled(),
            metadata: json(&record.metadata())?,
            allowed_networks: json(&record.allowed_networks())?,
            last_used_at: record.last_used_at().map(millis),
            lineage: (record.lineage() != record.id())
                .then(|| record.lineage().as_str().to_owned()),
            version: i64::try_from(record.version()).unwrap_or(i64::MAX),
        })
    }

    /// The record. A row that does not make a valid record is an error of the store
    /// (corrupt data), never a silent `None`.
    pub(crate) fn record<S: Scope>(
        self,
        families: &KeyFamilies,
    ) -> Result<KeyRecord<S>, StoreError> {
        let digest: [u8; 32] = self
            .digest
            .try_into()
            .map_err(|_| corrupt("digest length"))?;
        let family = families
            .find(&self.prefix)
            .ok_or_else(|| corrupt("unknown prefix"))?;
        if family.environment().as_str() != self.environment {
            return Err(corrupt("environment"));
        }
        let mut record = KeyRecord::new(
            KeyId::new(self.id).map_err(|_| corrupt("id"))?,
            KeyDigest::from_bytes(digest),
            self.owner,
            self.name,
            family,
            self.hint,
            self.scopes
                .parse::<ScopeSet<S>>()
                .map_err(|_| corrupt("scopes"))?,
            time(self.created_at),
        );
        record.set_expires_at(self.expires_at.map(time));
        record.set_revoked_at(self.revoked_at.map(time));
        record.set_last_used_at(self.last_used_at.map(time));
        record.set_revoked(self.revoked);
        record.set_disabled(self.disabled);
        record.set_metadata(serde_json::from_str(&self.metadata).map_err(|_| corrupt("metadata"))?);
        record.set_allowed_networks(
            serde_json::from_str(&self.allowed_networks)
                .map_err(|_| corrupt("allowed networks"))?,
        );
        record.set_rate_limits(
            serde_json::from_str(&self.rate_limits).map_err(|_| corrupt("rate limits"))?,
        );
        if let Some(lineage) = self.lineage {
            record.set_lineage(KeyId::new(lineage).map_err(|_| corrupt("lineage"))?);
        }
        record.set_version(u64::try_from(self.version).map_err(|_| corrupt("version"))?);
        Ok(record)
    }
}
