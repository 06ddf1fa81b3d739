//! [`AuditLog`]: where entries are appended and read back, a page at a time; and
//! [`AuditQuery`], which page.

use std::future::Future;
use std::pin::Pin;

use super::{AuditAction, AuditEntry};
use crate::key::Environment;
use crate::store::{KeyId, StoreError};

/// What an [`AuditLog`] answers: a boxed future, so the log can be shared as
/// `Arc<dyn AuditLog>`.
pub type AuditFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// An append-only log of management actions: [`MemoryAuditLog`](super::MemoryAuditLog) in
/// process, `RedisAuditLog` (feature `redis`: a stream per owner) and `SqlAuditLog`
/// (features `postgres`, `sqlite`: an append-only table) shared by instances.
///
/// There is no update and no delete: entries leave only by the log's own bounds (its
/// retention by age, and its size per owner), which are configuration.
pub trait AuditLog: Send + Sync + 'static {
    /// Appends `entry` under its owner; answers the [`seq`](AuditEntry::seq) it got,
    /// greater than any before it of that owner.
    fn append(&self, entry: AuditEntry) -> AuditFuture<'_, u64>;

    /// The owner's entries that `query` selects, newest first, at most its limit.
    fn page<'a>(&'a self, query: &'a AuditQuery) -> AuditFuture<'a, Vec<AuditEntry>>;
}

/// Which entries: one owner's, newest first, older than a cursor, filtered by key, action
/// or environment.
///
/// ```
/// use tower_api_key::audit::{AuditAction, AuditQuery};
///
/// let query = AuditQuery::new("org_1").limit(20).action(AuditAction::KeyRevoked);
/// assert_eq!(query.page_size(), 20);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditQuery {
    owner: String,
    limit: usize,
    before: Option<u64>,
    key_id: Option<KeyId>,
    action: Option<AuditAction>,
    environments: Vec<Environment>,
}

impl AuditQuery {
    /// The most entries one page holds.
    pub const MAX_LIMIT: usize = 100;

    /// `owner`'s latest 50 entries.
    pub fn new(owner: impl Into<String>) -> Self {
        Self {
            owner: owner.into(),
            limit: 50,
            before: None,
            key_id: None,
            action: None,
            environments: Vec::new(),
        }
    }

    /// At most `limit` entries (1 to [`MAX_LIMIT`](Self::MAX_LIMIT); outside, the nearest).
    #[must_use]
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit.clamp(1, Self::MAX_LIMIT);
        self
    }

    /// Entries older than `seq` (the last seq of the page before).
    #[must_use]
    pub fn before(mut self, seq: u64) -> Self {
        self.before = Some(seq);
        self
    }

    /// Entries about key `id` only.
    #[must_use]
    pub fn key(mut self, id: KeyId) -> Self {
        self.key_id = Some(id);
        self
    }

    /// Entries of `action` only.
    #[must_use]
    pub fn action(mut self, action: AuditAction) -> Self {
        self.action = Some(action);
        self
    }

    /// Entries of `environment` only (call again to allow another); entries with no
    /// environment are left out once one is named. A key caller sees its own environment's.
    #[must_use]
    pub fn environment(mut self, environment: Environment) -> Self {
        self.environments.push(environment);
        self
    }

    /// The owner.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The page size.
    pub fn page_size(&self) -> usize {
        self.limit
    }

    /// The cursor.
    pub fn before_seq(&self) -> Option<u64> {
        self.before
    }

    /// The key filter.
    pub fn key_id(&self) -> Option<&KeyId> {
        self.key_id.as_ref()
    }

    /// The action filter.
    pub fn action_filter(&self) -> Option<AuditAction> {
        self.action
    }

    /// Whether `entry` (of this owner) is selected, cursor included.
    pub fn matches(&self, entry: &AuditEntry) -> bool {
        entry.owner() == self.owner
            && self.before.is_none_or(|before| entry.seq() < before)
            && self
                .key_id
                .as_ref()
                .is_none_or(|id| entry.key_id() == Some(id))
            && self.action.is_none_or(|action| entry.action() == action)
            && (self.environments.is_empty()
                || entry
                    .environment_of()
                    .is_some_and(|environment| self.environments.contains(&environment)))
    }
}
