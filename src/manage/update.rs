//! `PATCH /keys/{id}`: a key's settings changed in place, under the same rules as a new
//! key (the caller's scopes bound it) plus the update's own (scopes only narrow, limits
//! only lower), conditional on `If-Match`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::api::KeysApi;
use super::audit::ActionNote;
use super::error::{ApiError, ApiJson};
use super::fields::Fields;
use super::handlers::{noted, one_key};
use super::precondition::required_version;
use super::views::UpdateKey;
use crate::events::{KeyEventKind, KeyRef};
use crate::principal::Principal;
use crate::reject::RejectionKind;
use crate::store::{KeyRecord, KeyUpdate, ManageKeys};
use crate::support::timestamp::Rfc3339;

pub(super) async fn update<St: ManageKeys>(
    State(api): State<Arc<KeysApi<St>>>,
    caller: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<ApiJson<UpdateKey>, ApiError>,
) -> Result<Response, ApiError> {
    let caller_scopes = api.authorize(&caller)?;
    let ApiJson(body) = body?;
    let now = api.store.policy().now();
    let mut fields = Fields::default();
    let mut update = KeyUpdate::new();
    if let Some(name) = body.name.as_deref().and_then(|name| fields.name(name)) {
        update = update.name(name);
    }
    let scopes = body
        .scopes
        .as_deref()
        .map(|names| fields.scopes::<St::Scope>(names));
    if let Some(scopes) = scopes {
        update = update.scopes(scopes);
    }
    match body.expires_at {
        Some(Some(text)) => {
            if let Some(at) = fields.expires_at(&text, now) {
                update = update.expires_at(Some(at));
            }
        }
        Some(None) => update = update.expires_at(None),
        None => {}
    }
    if let Some(metadata) = body.metadata.and_then(|metadata| fields.metadata(metadata)) {
        update = update.metadata(metadata);
    }
    if let Some(networks) = body
        .allowed_networks
        .as_deref()
        .and_then(|networks| fields.networks(networks))
    {
        update = update.allowed_networks(networks);
    }
    if let Some(limits) = body
        .rate_limits
        .as_ref()
        .and_then(|limits| fields.rate_limits(limits))
    {
        update = update.lowering_rate_limits(limits, (*api.rate_classes).clone());
    }
    fields.finish()?;

    let record = api.owned(&caller, &id).await?;
    if let Some(version) = required_version(&headers, &record, api.if_match_required)? {
        update = update.if_version(version);
    }
    // As for a new key: nobody leaves a key with scopes they lack.
    if let Some(scopes) = scopes.filter(|scopes| !caller_scopes.contains_all(*scopes)) {
        return Err(ApiError::of(
            RejectionKind::InsufficientScope,
            format!(
                "A key cannot keep scopes its updater lacks: {}",
                caller_scopes.missing(scopes)
            ),
        ));
    }
    let updated = api.store.update(record.id(), update).await?;
    let mut note = changes(&record, &updated);
    if !note.changes.is_empty() {
        let fields = note
            .changes
            .iter()
            .map(|change| change.field.clone())
            .collect();
        note = note.event(KeyEventKind::Updated {
            key: KeyRef::of(&updated),
            fields,
        });
    }
    Ok(noted(one_key(&updated, api.store.policy()), note))
}

/// What the update changed, each setting before and after, for the audit trail.
fn changes<S: crate::scope::Scope>(before: &KeyRecord<S>, after: &KeyRecord<S>) -> ActionNote {
    ActionNote::key(after.id(), after.environment())
        .change(
            "name",
            Some(before.name().to_owned()),
            Some(after.name().to_owned()),
        )
        .change(
            "scopes",
            Some(before.scopes().to_string()),
            Some(after.scopes().to_string()),
        )
        .change(
            "expires_at",
            before.expires_at().map(|at| Rfc3339(at).to_string()),
            after.expires_at().map(|at| Rfc3339(at).to_string()),
        )
        .change("metadata", json(before.metadata()), json(after.metadata()))
        .change(
            "allowed_networks",
            json(before.allowed_networks()),
            json(after.allowed_networks()),
        )
        .change(
            "rate_limits",
            json(before.rate_limits()),
            json(after.rate_limits()),
        )
}

/// A setting as JSON, as the audit entry shows it.
fn json<T: serde::Serialize>(value: &T) -> Option<String> {
    serde_json::to_string(value).ok()
}
