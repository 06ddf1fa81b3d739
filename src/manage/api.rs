//! [`KeysApi`]: the routes, the authorization rules and the FORG error bodies.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{ApiError, ApiJson};
use crate::activity::ActivityStore;
use crate::key::Environment;
use crate::principal::{CredentialKind, Principal};
use crate::scope::ScopeSet;
use crate::store::{
    is_plain_text, IssuedKey, KeyId, KeyRecord, KeyStatus, ManageError, ManageKeys, Metadata,
    NewKey,
};
use crate::timestamp::Rfc3339;

/// The management API over `St`; see the [module docs](super).
pub struct KeysApi<St: ManageKeys> {
    store: Arc<St>,
    keys_with: Option<St::Scope>,
    log: Option<Arc<dyn ActivityStore>>,
    body_limit: usize,
}

impl<St: ManageKeys> Clone for KeysApi<St> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            keys_with: self.keys_with,
            log: self.log.clone(),
            body_limit: self.body_limit,
        }
    }
}

impl<St: ManageKeys> fmt::Debug for KeysApi<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeysApi")
            .field("keys_with", &self.keys_with)
            .field("body_limit", &self.body_limit)
            .finish_non_exhaustive()
    }
}

impl<St: ManageKeys> KeysApi<St> {
    /// Keys of `store`, managed by sessions only, bodies up to 16 KiB, no activity log.
    pub fn new(store: Arc<St>) -> Self {
        Self {
            store,
            keys_with: None,
            log: None,
            body_limit: 16 * 1024,
        }
    }

    /// Lets API keys that carry `scope` manage their owner's keys too.
    #[must_use]
    pub fn allow_keys_with(mut self, scope: St::Scope) -> Self {
        self.keys_with = Some(scope);
        self
    }

    /// Serves `log` at `GET /keys/{id}/activity` (without one: an empty list): an
    /// [`ActivityLog`](crate::activity::ActivityLog), or a `RedisActivityLog` shared by instances.
    #[must_use]
    pub fn activity(mut self, log: impl ActivityStore) -> Self {
        self.log = Some(Arc::new(log));
        self
    }

    /// The largest request body accepted (default 16 KiB); larger is 413.
    #[must_use]
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// The routes, to mount under any prefix (`Router::nest`), behind the
    /// [`AuthLayer`](crate::AuthLayer).
    pub fn router<S: Clone + Send + Sync + 'static>(self) -> Router<S> {
        let limit = self.body_limit;
        Router::new()
            .route("/keys", post(create::<St>).get(list::<St>))
            .route("/keys/{id}", get(show::<St>).delete(revoke::<St>))
            .route("/keys/{id}/revoke", post(revoke::<St>))
            .route("/keys/{id}/rotate", post(rotate::<St>))
            .route("/keys/{id}/disable", post(disable::<St>))
            .route("/keys/{id}/enable", post(enable::<St>))
            .route("/keys/{id}/activity", get(activity::<St>))
            .layer(DefaultBodyLimit::max(limit))
            .with_state(Arc::new(self))
    }

    /// The caller's scopes, if it may manage keys at all.
    fn authorize(&self, caller: &Principal) -> Result<ScopeSet<St::Scope>, ApiError> {
        let scopes = caller.scopes::<St::Scope>().ok_or_else(|| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "This credential cannot manage these keys",
            )
        })?;
        let allowed = match caller.kind() {
            CredentialKind::Session => true,
            _ => self.keys_with.is_some_and(|scope| scopes.contains(scope)),
        };
        if allowed {
            Ok(scopes)
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "session_required",
                "Keys are managed from a logged-in session (Dashboard or API after session auth)",
            ))
        }
    }

    /// The caller's owner's key `id`, if the caller may see it ([`sees`]); any other is
    /// 404, exactly like an unknown id.
    async fn owned(
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
fn sees<S: crate::scope::Scope>(caller: &Principal, record: &KeyRecord<S>) -> bool {
    record.owner == caller.owner()
        && (caller.kind() == CredentialKind::Session || record.environment == caller.environment())
}

/// What a client sees of a record: never the key, never its digest.
fn view<S: crate::scope::Scope>(record: &KeyRecord<S>, now: SystemTime) -> Value {
    let status = match record.status_at(now) {
        KeyStatus::Active => "active",
        KeyStatus::Revoked => "revoked",
        KeyStatus::Expired => "expired",
        KeyStatus::Disabled => "disabled",
    };
    let metadata: BTreeMap<&str, &str> = record.metadata.iter().collect();
    json!({
        "id": record.id.as_str(),
        "name": record.name,
        "prefix": record.prefix,
        "hint": record.hint,
        "environment": record.environment,
        "scopes": record.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "status": status,
        "created_at": Rfc3339(record.created_at),
        "expires_at": record.expires_at.map(Rfc3339),
        "revoked_at": record.revoked_at.map(Rfc3339),
        "last_used_at": record.last_used_at.map(Rfc3339),
        "metadata": metadata,
    })
}

fn issued<S: crate::scope::Scope>(issued: &IssuedKey<S>, now: SystemTime) -> Response {
    let body = json!({ "key": issued.key().expose_secret(), "record": view(issued.record(), now) });
    (StatusCode::CREATED, Json(body)).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    name: String,
    environment: String,
    #[serde(default)]
    scopes: Vec<String>,
    /// RFC 3339; parsed here so that the 422 says what is expected.
    expires_at: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

async fn create<St: ManageKeys>(
    State(api): State<Arc<KeysApi<St>>>,
    caller: Principal,
    body: Result<ApiJson<CreateKey>, ApiError>,
) -> Result<Response, ApiError> {
    let caller_scopes = api.authorize(&caller)?;
    let ApiJson(body) = body?;
    let policy = api.store.policy();
    let now = policy.now();
    let mut fields: Vec<(String, String)> = Vec::new();
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 || !is_plain_text(name) {
        fields.push((
            "name".into(),
            "1 to 100 characters, no control, bidi or invisible characters".into(),
        ));
    }
    let environment = match body.environment.as_str() {
        "live" => Some(Environment::Live),
        "test" => Some(Environment::Test),
        _ => {
            fields.push(("environment".into(), "`live` or `test`".into()));
            None
        }
    };
    let mut scopes = ScopeSet::<St::Scope>::empty();
    for name in &body.scopes {
        match name.parse::<ScopeSet<St::Scope>>() {
            Ok(parsed) if !name.trim().is_empty() && !name.contains(char::is_whitespace) => {
                scopes = scopes.union(parsed)
            }
            _ => fields.push((
                "scopes".into(),
                format!(
                    "unknown scope `{}`",
                    name.chars().take(64).collect::<String>()
                ),
            )),
        }
    }
    // The latest accepted is 9999-12-31T23:59:59Z, the last second RFC 3339 writes:
    // later is 422, never an overflow.
    let expires_at = body.expires_at.as_deref().and_then(Rfc3339::parse);
    if body.expires_at.is_some() && expires_at.is_none_or(|at| at <= now) {
        fields.push((
            "expires_at".into(),
            "an RFC 3339 time in the future, at most 9999-12-31T23:59:59Z".into(),
        ));
    }
    let metadata = match Metadata::try_from(body.metadata) {
        Ok(metadata) => Some(metadata),
        Err(error) => {
            fields.push(("metadata".into(), error.to_string()));
            None
        }
    };
    let (Some(environment), Some(metadata), true) = (environment, metadata, fields.is_empty())
    else {
        return Err(ApiError::invalid(fields));
    };
    if !caller_scopes.contains_all(scopes) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!(
                "A key cannot have scopes its creator lacks: {}",
                caller_scopes.missing(scopes)
            ),
        ));
    }
    if caller.kind() != CredentialKind::Session && environment != caller.environment() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "environment_not_allowed",
            format!(
                "A {} key cannot create {environment} keys",
                caller.environment()
            ),
        ));
    }
    let family = policy
        .accepted_families()
        .iter()
        .find(|family| family.environment() == environment)
        .cloned()
        .ok_or_else(|| ManageError::FamilyNotAccepted(environment.to_string()))?;
    let mut new = NewKey::new(caller.owner(), name, &family)
        .scopes(scopes)
        .metadata(metadata);
    if let Some(at) = expires_at {
        new = new.expires_at(at);
    }
    let key = api.store.issue(new).await?;
    Ok(issued(&key, now))
}

async fn list<St: ManageKeys>(
    State(api): State<Arc<KeysApi<St>>>,
    caller: Principal,
) -> Result<Response, ApiError> {
    api.authorize(&caller)?;
    let now = api.store.policy().now();
    let mut records = api.store.list(caller.owner()).await?;
    records.reverse(); // newest first
    let data: Vec<Value> = records
        .iter()
        .filter(|record| sees(&caller, record))
        .map(|record| view(record, now))
        .collect();
    Ok(Json(json!({ "data": data })).into_response())
}

async fn show<St: ManageKeys>(
    State(api): State<Arc<KeysApi<St>>>,
    caller: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.authorize(&caller)?;
    let record = api.owned(&caller, &id).await?;
    Ok(Json(json!({ "data": view(&record, api.store.policy().now()) })).into_response())
}

/// `action` on the caller's own key `id`, answering the record after it.
async fn change<St, F, Fut>(
    api: &KeysApi<St>,
    caller: &Principal,
    id: &str,
    action: F,
) -> Result<Response, ApiError>
where
    St: ManageKeys,
    F: FnOnce(Arc<St>, KeyId) -> Fut,
    Fut: std::future::Future<Output = Result<Arc<KeyRecord<St::Scope>>, ManageError>>,
{
    api.authorize(caller)?;
    let record = api.owned(caller, id).await?;
    let changed = action(Arc::clone(&api.store), record.id.clone()).await?;
    Ok(Json(json!({ "data": view(&changed, api.store.policy().now()) })).into_response())
}

async fn revoke<St: ManageKeys>(
    State(api): State<Arc<KeysApi<St>>>,
    caller: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    change(&api, &caller, &id, |store, id| async move {
        store.revoke(&id).await
    })
    .await
}

async fn disable<St: ManageKeys>(
    State(api): State<Arc<KeysApi<St>>>,
    caller: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    change(&api, &caller, &id, |store, id| async move {
        store.disable(&id).await
    })
    .await
}

async fn enable<St: ManageKeys>(
    State(api): State<Arc<KeysApi<St>>>,
    caller: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    change(&api, &caller, &id, |store, id| async move {
        store.enable(&id).await
    })
    .await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RotateKey {
    grace_seconds: Option<u64>,
}

async fn rotate<St: ManageKeys>(
    State(api): State<Arc<KeysApi<St>>>,
    caller: Principal,
    Path(id): Path<String>,
    body: Result<Option<ApiJson<RotateKey>>, ApiError>,
) -> Result<Response, ApiError> {
    let caller_scopes = api.authorize(&caller)?;
    let grace = body?
        .map(|ApiJson(body)| body)
        .unwrap_or_default()
        .grace_seconds;
    if grace.is_some_and(|secs| secs > 30 * 86_400) {
        return Err(ApiError::invalid([("grace_seconds", "at most 30 days")]));
    }
    let record = api.owned(&caller, &id).await?;
    // Rotation keeps the scopes: nobody gets a fresh key with scopes they lack.
    if !caller_scopes.contains_all(record.scopes) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!(
                "Rotating this key needs {}",
                caller_scopes.missing(record.scopes)
            ),
        ));
    }
    let now = api.store.policy().now();
    // The old key is revoked now, or after the grace period; never left alive.
    let grace = Duration::from_secs(grace.unwrap_or(0));
    let key = api.store.rotate(&record.id, Some(grace)).await?;
    Ok(issued(&key, now))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    limit: Option<usize>,
    before: Option<u64>,
}

async fn activity<St: ManageKeys>(
    State(api): State<Arc<KeysApi<St>>>,
    caller: Principal,
    Path(id): Path<String>,
    page: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    api.authorize(&caller)?;
    let Query(page) =
        page.map_err(|rejection| ApiError::invalid([("query", rejection.body_text())]))?;
    let record = api.owned(&caller, &id).await?;
    let limit = page.limit.unwrap_or(50).clamp(1, 100);
    let data = match &api.log {
        Some(log) => log.recent(&record.id, limit, page.before).await?,
        None => Vec::new(),
    };
    let next = (data.len() == limit)
        .then(|| data.last().map(|entry| entry.seq))
        .flatten();
    Ok(Json(json!({ "data": data, "next_before": next })).into_response())
}

#[cfg(test)]
mod tests {
    /// Every route of the router, as `(method, path)`: `docs/openapi.json` describes exactly
    /// these (a test checks it).
    const ROUTES: [(&str, &str); 9] = [
        ("POST", "/keys"),
        ("GET", "/keys"),
        ("GET", "/keys/{id}"),
        ("DELETE", "/keys/{id}"),
        ("POST", "/keys/{id}/revoke"),
        ("POST", "/keys/{id}/rotate"),
        ("POST", "/keys/{id}/disable"),
        ("POST", "/keys/{id}/enable"),
        ("GET", "/keys/{id}/activity"),
    ];

    #[test]
    fn the_openapi_description_matches_the_router() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json"))
                .unwrap();
        let spec: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(spec["openapi"].as_str().map(|v| &v[..2]), Some("3."));
        let mut described: Vec<(String, String)> = Vec::new();
        for (path, operations) in spec["paths"].as_object().unwrap() {
            for method in operations.as_object().unwrap().keys() {
                if method != "parameters" {
                    described.push((method.to_uppercase(), path.clone()));
                }
            }
        }
        let mut routes: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        described.sort();
        routes.sort();
        assert_eq!(described, routes);
    }
}
