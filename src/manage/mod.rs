//! The key management API: an axum router over any [`ManageKeys`](crate::ManageKeys) store, for a dashboard
//! or a CLI (feature `axum`).
//!
//! ```
//! use std::sync::Arc;
//! use axum::Router;
//! use tower_api_key::manage::KeysApi;
//! use tower_api_key::session::{CsrfSecret, Sessions};
//! use tower_api_key::store::KeyPolicy;
//! use tower_api_key::{AuthLayer, ForgScope, MemoryKeyStore};
//!
//! let keys = Arc::new(MemoryKeyStore::<ForgScope>::new());
//! let sessions = Sessions::new(
//!     Arc::new(MemoryKeyStore::new().with_policy(KeyPolicy::sessions())),
//!     CsrfSecret::generate().unwrap(),
//! );
//! // Mounted under any prefix, behind the authentication layer (sessions: with CSRF).
//! let app: Router = Router::new()
//!     .nest("/api", KeysApi::new(Arc::clone(&keys)).router())
//!     .layer(AuthLayer::new(keys).sessions(sessions));
//! ```
//!
//! | method and path | does | answers |
//! |---|---|---|
//! | `POST /keys` | issues a key: `name`, `environment` (`live`/`test`), `scopes`, optional `expires_at` (Unix seconds), `metadata` | 201 `{key, record}`: the plaintext, once |
//! | `GET /keys` | the caller's owner's keys, newest first (never a secret or digest) | 200 `{data: [record]}` |
//! | `GET /keys/{id}` | one key | 200 `{data: record}` |
//! | `POST /keys/{id}/revoke`, `DELETE /keys/{id}` | revokes now | 200 `{data: record}` |
//! | `POST /keys/{id}/rotate` | a new key with the same settings; the old one revoked now, or after `grace_seconds` | 201 `{key, record}` |
//! | `POST /keys/{id}/disable`, `/enable` | refuses the key until enabled again | 200 `{data: record}` |
//! | `GET /keys/{id}/activity?limit=&before=` | its recent authentication outcomes, newest first | 200 `{data: [entry]}` |
//!
//! Authorization, whatever the request says:
//! - by default only **session**-authenticated callers manage keys ("after session auth"),
//!   so a leaked key cannot mint more; [`KeysApi::allow_keys_with`] lets keys that carry a
//!   chosen scope in too;
//! - a caller sees and changes only its own owner's keys, and a key caller only keys of
//!   its own environment (a test key never lists, sees, rotates, revokes, disables or
//!   deletes a live key; sessions manage both): any other key is 404 `key_not_found`,
//!   exactly like an unknown id;
//! - a new or rotated key's scopes must be a subset of the caller's (403
//!   `insufficient_scope`), and a key caller may only issue keys of its own environment;
//! - unsafe methods go through the session's CSRF check in the [`AuthLayer`](crate::AuthLayer).
//!
//! Errors have the FORG shape: 404 `key_not_found`; 409 `key_limit_reached` ("Maximum 10
//! keys per user. Delete unused keys before creating new ones."); 422 `validation_failed`
//! with `fields` (JSON with a missing, unknown or mistyped field too, through
//! [`ApiJson`]; names and metadata must be [plain text](crate::store::is_plain_text),
//! `expires_at` at most 9999-12-31); 403 `plan_required`; 400 `invalid_request` for a
//! body that is not JSON, 413 for a body over the limit (16 KiB), 415 without a JSON
//! content type. The OpenAPI description is `docs/openapi.json`.

mod api;
mod error;

pub use api::KeysApi;
pub use error::{ApiError, ApiJson};

use crate::key::KeyFamily;
use crate::scope::Scope;
use crate::store::{Metadata, NewKey};

/// A key for an agent identity a user created (the quickstart's `register-agent`): the
/// agent owns it, and who created it is kept on the record (metadata `created_by`). The
/// name follows the management API's rule (1 to 100 characters of
/// [plain text](crate::store::is_plain_text)).
///
/// # Errors
/// 422 naming `name` or `email` (`created_by`: over 256 bytes, or not plain text).
pub fn agent_key<S: Scope>(
    agent: impl Into<String>,
    name: &str,
    family: &KeyFamily,
    created_by: &str,
) -> Result<NewKey<S>, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || !crate::store::is_plain_text(name) {
        return Err(ApiError::invalid([(
            "name",
            "1 to 100 characters, no control, bidi or invisible characters",
        )]));
    }
    let metadata = Metadata::new([("created_by", created_by)]).map_err(|_| {
        ApiError::invalid([(
            "email",
            "at most 256 bytes, no control, bidi or invisible characters",
        )])
    })?;
    Ok(NewKey::new(agent, name, family).metadata(metadata))
}
