//! The management API's audit trail: every request that changes something, and every
//! refused one, becomes an [`AuditEntry`]; `GET /audit` reads the caller's owner's.

use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::api::KeysApi;
use super::error::{ApiError, Rendered};
use super::views::{AuditEntryView, AuditPageView, AuditParams};
use crate::audit::{Actor, AuditAction, AuditEntry, AuditQuery, FieldChange};
use crate::client_ip::client_ip_of;
use crate::events::{KeyEvent, KeyEventKind};
use crate::key::Environment;
use crate::principal::{CredentialKind, Principal};
use crate::store::{KeyId, ManageKeys};

/// What a handler tells the audit trail and the event sinks beyond what the request
/// says: the key acted on (and its environment), what changed, and the event it makes.
/// Travels in the response's extensions.
#[derive(Clone, Debug, Default)]
pub(super) struct ActionNote {
    pub(super) key: Option<(KeyId, Environment)>,
    pub(super) changes: Vec<FieldChange>,
    pub(super) event: Option<KeyEventKind>,
}

impl ActionNote {
    pub(super) fn key(id: &KeyId, environment: Environment) -> Self {
        Self {
            key: Some((id.clone(), environment)),
            changes: Vec::new(),
            event: None,
        }
    }

    /// The event the action makes, published once it succeeded.
    pub(super) fn event(mut self, event: KeyEventKind) -> Self {
        self.event = Some(event);
        self
    }

    pub(super) fn change(mut self, field: &str, from: Option<String>, to: Option<String>) -> Self {
        if from != to {
            self.changes.push(FieldChange {
                field: field.to_owned(),
                from,
                to,
            });
        }
        self
    }
}

/// The key id a path names (`/keys/{id}` and below), if it is one.
fn key_in_path(path: &str) -> Option<KeyId> {
    let (_, rest) = path.split_once("/keys/")?;
    KeyId::new(rest.split('/').next()?).ok()
}

/// Runs the route, then appends what it did (or was refused) to the API's audit log (a
/// read only when refused) and publishes the event of a change that succeeded. A request
/// the authentication layer refused never reaches here (it names no owner to file it
/// under). Both happen before the answer leaves; a log or sink that fails loses the entry
/// or the event, not the answer (the action has happened).
pub(super) async fn record<St: ManageKeys>(
    api: Arc<KeysApi<St>>,
    action: AuditAction,
    request: Request,
    next: Next,
) -> Response {
    if api.audit.is_none() && api.events.is_empty() {
        return next.run(request).await;
    }
    let principal = request.extensions().get::<Principal>().cloned();
    let client = client_ip_of(request.headers(), request.extensions()).ok();
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|id| id.to_str().ok())
        .map(str::to_owned);
    let path_key = key_in_path(request.uri().path());
    let read = request.method() == Method::GET;
    let mut response = next.run(request).await;
    let note = response.extensions_mut().remove::<ActionNote>();
    if read && response.status().is_success() {
        return response;
    }
    let Some(principal) = principal else {
        return response;
    };
    let actor = match principal.kind() {
        CredentialKind::Session => Actor::Session(principal.key_id().clone()),
        _ => Actor::Key(principal.key_id().clone()),
    };
    let code = response
        .extensions()
        .get::<Rendered>()
        .map(|Rendered(error)| error.code());
    let mut entry = AuditEntry::new(api.store.policy().now(), principal.owner(), actor, action)
        .outcome(response.status().as_u16(), code);
    if principal.kind() != CredentialKind::Session {
        // A key acts within its environment: its own refused attempts are of it.
        entry = entry.environment(principal.environment());
    }
    let mut note = note.unwrap_or_default();
    if let Some(kind) = note.event.take().filter(|_| response.status().is_success()) {
        match KeyEvent::new(entry.at(), principal.owner(), kind) {
            Ok(event) => api.events.publish(event).await,
            Err(_) => {
                #[cfg(feature = "tracing")]
                tracing::error!(target: "tower_api_key::events", "no randomness for an event id");
            }
        }
    }
    let Some(log) = api.audit.clone() else {
        return response;
    };
    match (note.key, path_key) {
        (Some((id, environment)), _) => entry = entry.key(id, Some(environment)),
        (None, Some(id)) => entry = entry.key(id, None),
        (None, None) => {}
    }
    for change in note.changes {
        entry = entry.change(change.field, change.from, change.to);
    }
    if let Some(ip) = client {
        entry = entry.client(ip);
    }
    if let Some(id) = &request_id {
        entry = entry.request_id(id);
    }
    if let Err(_error) = log.append(entry).await {
        #[cfg(feature = "tracing")]
        tracing::error!(target: "tower_api_key::audit", error = %_error, "could not append an audit entry");
    }
    response
}

/// `GET /audit`: the caller's owner's entries, newest first; a key caller sees those of
/// its own environment (as for keys).
pub(super) async fn list<St: ManageKeys>(
    State(api): State<Arc<KeysApi<St>>>,
    caller: Principal,
    params: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    api.authorize(&caller)?;
    let Query(params) =
        params.map_err(|rejection| ApiError::invalid([("query", rejection.body_text())]))?;
    let mut query = AuditQuery::new(caller.owner()).limit(params.limit.unwrap_or(50));
    if let Some(before) = params.before {
        query = query.before(before);
    }
    if let Some(key_id) = params.key_id.as_deref() {
        // An id that cannot be one selects nothing, as an unknown one does.
        let id = KeyId::new(key_id).map_err(|_| {
            ApiError::invalid([("key_id", "a key id: up to 64 letters, digits and `_ - . :`")])
        })?;
        query = query.key(id);
    }
    if let Some(action) = params.action.as_deref() {
        let action = AuditAction::parse(action).ok_or_else(|| {
            ApiError::invalid([("action", "one of the documented actions (`key.issued`, …)")])
        })?;
        query = query.action(action);
    }
    if caller.kind() != CredentialKind::Session {
        query = query.environment(caller.environment());
    }
    let data: Vec<AuditEntryView> = match &api.audit {
        Some(log) => log
            .page(&query)
            .await?
            .iter()
            .map(AuditEntryView::of)
            .collect(),
        None => Vec::new(),
    };
    let next_before = (data.len() == query.page_size())
        .then(|| data.last().map(|entry| entry.seq))
        .flatten();
    Ok(Json(AuditPageView { data, next_before }).into_response())
}
