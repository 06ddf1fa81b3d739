//! The handlers: parse (through [`ApiJson`] and the views), authorise, act on the store,
//! answer a view.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::api::KeysApi;
use super::audit::ActionNote;
use super::authorisation::sees;
use super::error::{ApiError, ApiJson};
use super::fields::Fields;
use super::views::{
    ActivityPage, CreateKey, IssuedKey, Key, KeyData, KeyList, Page, RotateKey, UsagePage,
    MAX_GRACE_SECONDS,
};
use crate::activity::UsageDay;
use crate::events::{KeyEventKind, KeyRef};
use crate::key::Environment;
use crate::principal::{CredentialKind, Principal};
use crate::reject::RejectionKind;
use crate::store::{KeyId, KeyRecord, ManageError, ManageKeys, NewKey};

pub(super) async fn create<St: ManageKeys>(
    State(api): State<Arc<KeysApi<St>>>,
    caller: Principal,
    body: Result<ApiJson<CreateKey>, ApiError>,
) -> Result<Response, ApiError> {
    let caller_scopes = api.authorize(&caller)?;
    let ApiJson(body) = body?;
    let policy = api.store.policy();
    let now = policy.now();
    let mut fields = Fields::default();
    let name = fields.name(&body.name);
    let environment = match body.environment.as_str() {
        "live" => Some(Environment::Live),
        "test" => Some(Environment::Test),
        _ => {
            fields.wrong("environment", "`live` or `test`");
            None
        }
    };
    let scopes = fields.scopes::<St::Scope>(&body.scopes);
    let expires_at = body
        .expires_at
        .as_deref()
        .map(|text| fields.expires_at(text, now));
    let metadata = fields.metadata(body.metadata);
    fields.finish()?;
    // Each `None` was named by `finish` already.
    let (Some(name), Some(environment), Some(metadata)) = (name, environment, metadata) else {
        return Err(ApiError::from_code(super::ApiCode::ValidationFailed));
    };
    if !caller_scopes.contains_all(scopes) {
        return Err(ApiError::of(
            RejectionKind::InsufficientScope,
            format!(
                "A key cannot have scopes its creator lacks: {}",
                caller_scopes.missing(scopes)
            ),
        ));
    }
    if caller.kind() != CredentialKind::Session && environment != caller.environment() {
        return Err(ApiError::of(
            RejectionKind::EnvironmentNotAllowed,
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
    if let Some(Some(at)) = expires_at {
        new = new.expires_at(at);
    }
    let key = api.store.issue(new).await?;
    let record = key.record();
    let note = ActionNote::key(record.id(), record.environment())
        .change("name", None, Some(record.name().to_owned()))
        .change("scopes", None, Some(record.scopes().to_string()))
        .event(KeyEventKind::Issued {
            key: KeyRef::of(record),
        });
    Ok(noted(
        (StatusCode::CREATED, Json(IssuedKey::of(&key, policy))).into_response(),
        note,
    ))
}

/// `response`, carrying `note` to the audit trail.
pub(super) fn noted(mut response: Response, note: ActionNote) -> Response {
    response.extensions_mut().insert(note);
    response
}

pub(super) async fn list<St: ManageKeys>(
    State(api): State<Arc<KeysApi<St>>>,
    caller: Principal,
) -> Result<Response, ApiError> {
    api.authorize(&caller)?;
    let mut records = api.store.list(caller.owner()).await?;
    records.reverse(); // newest first
    let policy = api.store.policy();
    let data = records
        .iter()
        .filter(|record| sees(&caller, record))
        .map(|record| Key::of(record, policy))
        .collect();
    Ok(Json(KeyList { data }).into_response())
}

/// One key's view, with its version as the `ETag`.
pub(super) fn one_key<S: crate::scope::Scope>(
    record: &KeyRecord<S>,
    policy: &crate::store::KeyPolicy,
) -> Response {
    let data = Key::of(record, policy);
    let tag = super::views::etag(record);
    ([(axum::http::header::ETAG, tag)], Json(KeyData { data })).into_response()
}

pub(super) async fn show<St: ManageKeys>(
    State(api): State<Arc<KeysApi<St>>>,
    caller: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.authorize(&caller)?;
    let record = api.owned(&caller, &id).await?;
    Ok(one_key(&record, api.store.policy()))
}

/// `action` on the caller's own key `id`, answering the record after it; `event` makes
/// the action's event of it, if it has one.
async fn change<St, F, Fut>(
    api: &KeysApi<St>,
    caller: &Principal,
    id: &str,
    action: F,
    event: fn(KeyRef) -> Option<KeyEventKind>,
) -> Result<Response, ApiError>
where
    St: ManageKeys,
    F: FnOnce(Arc<St>, KeyId) -> Fut,
    Fut: std::future::Future<Output = Result<Arc<KeyRecord<St::Scope>>, ManageError>>,
{
    api.authorize(caller)?;
    let record = api.owned(caller, id).await?;
    let changed = action(Arc::clone(&api.store), record.id().clone()).await?;
    let mut note = ActionNote::key(changed.id(), changed.environment());
    if let Some(event) = event(KeyRef::of(&changed)) {
        note = note.event(event);
    }
    Ok(noted(one_key(&changed, api.store.policy()), note))
}

pub(super) async fn revoke<St: ManageKeys>(
    State(api): State<Arc<KeysApi<St>>>,
    caller: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    change(
        &api,
        &caller,
        &id,
        |store, id| async move { store.revoke(&id).await },
        |key| Some(KeyEventKind::Revoked { key }),
    )
    .await
}

pub(super) async fn disable<St: ManageKeys>(
    State(api): State<Arc<KeysApi<St>>>,
    caller: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    change(
        &api,
        &caller,
        &id,
        |store, id| async move { store.disable(&id).await },
        |_| None,
    )
    .await
}

pub(super) async fn enable<St: ManageKeys>(
    State(api): State<Arc<KeysApi<St>>>,
    caller: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    change(
        &api,
        &caller,
        &id,
        |store, id| async move { store.enable(&id).await },
        |_| None,
    )
    .await
}

pub(super) async fn rotate<St: ManageKeys>(
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
    if grace.is_some_and(|secs| secs > MAX_GRACE_SECONDS) {
        return Err(ApiError::invalid([("grace_seconds", "at most 30 days")]));
    }
    let record = api.owned(&caller, &id).await?;
    // Rotation keeps the scopes: nobody gets a fresh key with scopes they lack.
    if !caller_scopes.contains_all(record.scopes()) {
        return Err(ApiError::of(
            RejectionKind::InsufficientScope,
            format!(
                "Rotating this key needs {}",
                caller_scopes.missing(record.scopes())
            ),
        ));
    }
    // The old key is revoked now, or after the grace period; never left alive.
    let grace = Duration::from_secs(grace.unwrap_or(0));
    let key = api.store.rotate(record.id(), Some(grace)).await?;
    let policy = api.store.policy();
    let note = ActionNote::key(record.id(), record.environment())
        .change(
            "successor",
            None,
            Some(key.record().id().as_str().to_owned()),
        )
        .event(KeyEventKind::Rotated {
            key: KeyRef::of(&record),
            successor: key.record().id().clone(),
        });
    Ok(noted(
        (StatusCode::CREATED, Json(IssuedKey::of(&key, policy))).into_response(),
        note,
    ))
}

pub(super) async fn activity<St: ManageKeys>(
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
        Some(log) => log.recent(record.id(), limit, page.before).await?,
        None => Vec::new(),
    };
    let next = (data.len() == limit)
        .then(|| data.last().map(|entry| entry.seq))
        .flatten();
    Ok(Json(ActivityPage {
        data,
        next_before: next,
    })
    .into_response())
}

/// The last 30 days of `keys`, summed (zeros without a history).
async fn days<St: ManageKeys>(
    api: &KeysApi<St>,
    keys: &[KeyId],
) -> Result<Vec<UsageDay>, ApiError> {
    let today = api.store.policy().now();
    let Some(history) = &api.history else {
        return Ok(crate::activity::zero_days(today));
    };
    let mut total = crate::activity::zero_days(today);
    for key in keys {
        for (sum, day) in total.iter_mut().zip(history.days(key, today).await?) {
            sum.add(&day);
        }
    }
    Ok(total)
}

pub(super) async fn key_usage<St: ManageKeys>(
    State(api): State<Arc<KeysApi<St>>>,
    caller: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.authorize(&caller)?;
    let record = api.owned(&caller, &id).await?;
    let data = days(&api, std::slice::from_ref(record.id())).await?;
    Ok(Json(UsagePage { data }).into_response())
}

pub(super) async fn owner_usage<St: ManageKeys>(
    State(api): State<Arc<KeysApi<St>>>,
    caller: Principal,
) -> Result<Response, ApiError> {
    api.authorize(&caller)?;
    let records = api.store.list(caller.owner()).await?;
    // The owner's browser sessions too, in the environments the caller sees: a session
    // spends as its owner (see `sessions_usage_id`).
    let sessions = Environment::ALL
        .into_iter()
        .filter(|environment| {
            caller.kind() == CredentialKind::Session || caller.environment() == *environment
        })
        .map(|environment| crate::activity::sessions_usage_id(caller.owner(), environment));
    let keys: Vec<KeyId> = records
        .iter()
        .filter(|record| sees(&caller, record))
        .map(|record| record.id().clone())
        .chain(sessions)
        .collect();
    let data = days(&api, &keys).await?;
    Ok(Json(UsagePage { data }).into_response())
}
