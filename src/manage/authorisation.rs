//! Who may manage which keys: sessions (and keys with a configured scope), their owner's
//! keys only, and a key only those of its own environment.

use std::sync::Arc;

use super::api::KeysApi;
use super::error::ApiError;
use super::ApiCode;
use crate::principal::{CredentialKind, Principal};
use crate::scope::{Scope, ScopeSet};
use crate::store::{KeyId, KeyRecord, ManageKeys};

impl<St: ManageKeys> KeysApi<St> {
    /// The caller's scopes, if it may manage keys at all.
    pub(super) fn authorize(&self, caller: &Principal) -> Result<ScopeSet<St::Scope>, ApiError> {
        authorize(caller, self.keys_with)
    }

    /// The caller's owner's key `id`, if the caller may see it ([`sees`]); any other is
    /// 404, exactly like an unknown id.
    pub(super) async fn owned(
        &self,
        caller: &Principal,
        id: &str,
    ) -> Result<Arc<KeyRecord<St::Scope>>, ApiError> {
        let id = KeyId::new(id).map_err(|_| ApiError::key_not_found())?;
        match self.store.get(&id).await? {
            Some(record) if sees(caller, &record) => Ok(record),
            _ => Err(ApiError::key_not_found()),
        }
    }
}

/// Whether `caller` may see and act on `record`: its owner's keys only, and for a key
/// caller only keys of its own environment (a test key never touches a live key). A
/// session manages both environments of its owner.
pub(super) fn sees<S: Scope>(caller: &Principal, record: &KeyRecord<S>) -> bool {
    record.owner() == caller.owner()
        && (caller.kind() == CredentialKind::Session
            || record.environment() == caller.environment())
}

/// The caller's scopes, if it may use the management API at all: a session, or a key with
/// `keys_with`.
pub(super) fn authorize<S: Scope>(
    caller: &Principal,
    keys_with: Option<S>,
) -> Result<ScopeSet<S>, ApiError> {
    let scopes = caller
        .scopes::<S>()
        .ok_or_else(|| ApiError::from_code(ApiCode::Forbidden))?;
    let allowed = match caller.kind() {
        CredentialKind::Session => true,
        _ => keys_with.is_some_and(|scope| scopes.contains(scope)),
    };
    if allowed {
        Ok(scopes)
    } else {
        Err(ApiError::from_code(ApiCode::SessionRequired))
    }
}
