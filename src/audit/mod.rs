//! The audit log of management actions: who did what to which key, when, from where, and
//! how it ended (refused attempts too).
//!
//! ```
//! use std::sync::Arc;
//! use axum::Router;
//! use tower_api_key::audit::{AuditLog, AuditQuery, MemoryAuditLog};
//! use tower_api_key::manage::KeysApi;
//! use tower_api_key::{ForgScope, MemoryKeyStore};
//!
//! let keys = Arc::new(MemoryKeyStore::<ForgScope>::new().with_policy(tower_api_key::forg::key_policy()));
//! let audit = Arc::new(MemoryAuditLog::new());
//! // Every management request that changes something, and every refused one, is an
//! // entry; `GET /audit` reads the caller's owner's entries.
//! let api: Router = KeysApi::new(keys).audit(audit.clone()).router();
//! ```
//!
//! The [`KeysApi`](crate::manage::KeysApi) and [`LoginApi`](crate::manage::LoginApi) record
//! their actions; an application records its own (credits granted, a trial started, a
//! record deleted) with [`AuditEntry::new`] and [`Actor::System`].
//!
//! | store | where | bounds |
//! |---|---|---|
//! | [`MemoryAuditLog`] | this process | retention by age, entries per owner, entries in all; O(1) eviction |
//! | `RedisAuditLog` (feature `redis`) | a stream per owner (`XADD … MAXLEN ~`), one slot per owner on a cluster | retention (`XTRIM MINID ~`, and the stream expires when idle), entries per owner |
//! | `SqlAuditLog` (features `postgres`, `sqlite`) | an append-only table | retention by age, deleted as entries are appended |
//!
//! An entry never holds a secret: keys by id, sessions by id (never a cookie), and only
//! settings that are no secret in its [changes](AuditEntry::changes).

mod entry;
mod log;
mod memory;
#[cfg(feature = "redis")]
mod redis;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod sql;

pub use entry::{Actor, AuditAction, AuditEntry, FieldChange};
pub use log::{AuditFuture, AuditLog, AuditQuery};
pub use memory::MemoryAuditLog;
#[cfg(feature = "redis")]
pub use redis::RedisAuditLog;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub use sql::SqlAuditLog;

impl<L: AuditLog + ?Sized> AuditLog for std::sync::Arc<L> {
    fn append(&self, entry: AuditEntry) -> AuditFuture<'_, u64> {
        (**self).append(entry)
    }

    fn page<'a>(&'a self, query: &'a AuditQuery) -> AuditFuture<'a, Vec<AuditEntry>> {
        (**self).page(query)
    }
}
