//! The management API's webhook routes: an owner registers endpoints (the secret shown
//! once), lists them with their deliveries' state, and removes them.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::api::KeysApi;
use super::error::{ApiError, ApiJson};
use super::ApiCode;
use crate::events::KeyEventKind;
use crate::principal::{CredentialKind, Principal};
use crate::store::ManageKeys;
use crate::support::timestamp::Rfc3339;
use crate::webhooks::{check_endpoint_url, Delivery, DeliveryState, WebhookEndpoint, WebhookStore};

/// The most endpoints one owner may register.
const MAX_ENDPOINTS: usize = 10;

/// `POST /webhooks`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewWebhook)]
pub(crate) struct CreateWebhook {
    /// `https://` (`http://` only to localhost, 127.0.0.1 or [::1]); no user or password.
    #[schema(max_length = 2048, example = "https://hooks.example.com/forge")]
    url: String,
    /// The event types to send (`key.issued`, `key.updated`, `key.rotated`,
    /// `key.revoked`, `key.expiring`, `key.rotation_due`, `budget.threshold`,
    /// `rate_limit.exceeded`, `key.leaked`); absent or empty: all.
    #[serde(default)]
    events: Vec<String>,
}

/// An endpoint, never its secret, with its latest deliveries' state.
#[derive(Serialize, ToSchema)]
#[schema(as = Webhook)]
pub(crate) struct WebhookView {
    id: String,
    url: String,
    events: Vec<String>,
    #[schema(value_type = String, format = DateTime)]
    created_at: Rfc3339,
    /// Its latest 50 deliveries by state.
    pending: usize,
    delivered: usize,
    dead: usize,
    /// The latest delivery, if any.
    latest: Option<DeliveryView>,
}

/// A webhook just registered: its signing secret, shown once.
#[derive(Serialize, ToSchema)]
#[schema(as = RegisteredWebhook)]
pub(crate) struct Registered {
    /// `whsec_…`: verify each request's `webhook-signature` with it (Standard Webhooks).
    /// Shown once, never again.
    secret: String,
    data: WebhookView,
}

/// One event's delivery to an endpoint.
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookDelivery)]
pub(crate) struct DeliveryView {
    /// The event's id: the request's `webhook-id`, the same on every attempt.
    event_id: String,
    event_type: String,
    /// `pending`, `delivered` or `dead`.
    #[schema(value_type = String, example = "delivered")]
    state: &'static str,
    attempts: u32,
    #[schema(value_type = String, format = DateTime)]
    created_at: Rfc3339,
    /// When it is next tried (pending), or when it ended.
    #[schema(value_type = String, format = DateTime)]
    next_at: Rfc3339,
    last_status: Option<u16>,
    last_error: Option<String>,
}

impl DeliveryView {
    fn of(delivery: &Delivery) -> Self {
        Self {
            event_id: delivery.event_id.clone(),
            event_type: delivery.event_type.clone(),
            state: delivery.state.as_str(),
            attempts: delivery.attempts,
            created_at: Rfc3339(delivery.created_at),
            next_at: Rfc3339(delivery.next_at),
            last_status: delivery.last_status,
            last_error: delivery.last_error.clone(),
        }
    }
}

/// The endpoints of one owner, and their deliveries.
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookList)]
pub(crate) struct WebhookList {
    data: Vec<WebhookView>,
}

/// An endpoint's latest deliveries, newest first.
#[derive(Serialize, ToSchema)]
#[schema(as = DeliveryList)]
pub(crate) struct DeliveryList {
    data: Vec<DeliveryView>,
}

impl<St: ManageKeys> KeysApi<St> {
    /// The webhook store, once the caller may manage webhooks: sessions, and keys with
    /// the scope [`KeysApi::allow_webhooks_with`] names.
    fn webhooks_for(&self, caller: &Principal) -> Result<&Arc<dyn WebhookStore>, ApiError> {
        let scopes = caller
            .scopes::<St::Scope>()
            .ok_or_else(|| ApiError::from_code(ApiCode::Forbidden))?;
        let allowed = caller.kind() == CredentialKind::Session
            || self
                .webhooks_with
                .is_some_and(|scope| scopes.contains(scope));
        if !allowed {
            return Err(ApiError::from_code(ApiCode::SessionRequired));
        }
        self.webhooks
            .as_ref()
            .ok_or_else(|| ApiError::from_code(ApiCode::NotImplemented))
    }
}

async fn view(
    store: &dyn WebhookStore,
    endpoint: &WebhookEndpoint,
) -> Result<WebhookView, ApiError> {
    let latest = store.deliveries(endpoint.id(), 50).await?;
    let count = |state| latest.iter().filter(|d| d.state == state).count();
    Ok(WebhookView {
        id: endpoint.id().to_owned(),
        url: endpoint.url().to_owned(),
        events: endpoint.events().to_vec(),
        created_at: Rfc3339(endpoint.created_at()),
        pending: count(DeliveryState::Pending),
        delivered: count(DeliveryState::Delivered),
        dead: count(DeliveryState::Dead),
        latest: latest.first().map(DeliveryView::of),
    })
}

pub(super) async fn create<St: ManageKeys>(
    State(api): State<Arc<KeysApi<St>>>,
    caller: Principal,
    body: Result<ApiJson<CreateWebhook>, ApiError>,
) -> Result<Response, ApiError> {
    let store = api.webhooks_for(&caller)?;
    let ApiJson(body) = body?;
    let mut fields = Vec::new();
    if check_endpoint_url(&body.url).is_err() {
        fields.push(("url", "an https:// URL (http:// only to localhost, 127.0.0.1 or [::1]), at most 2048 characters, with no user or password".to_owned()));
    }
    if let Some(index) = body
        .events
        .iter()
        .position(|name| !KeyEventKind::NAMES.contains(&name.as_str()))
    {
        fields.push((
            "events",
            format!("item {index} is not a documented event type"),
        ));
    }
    if !fields.is_empty() {
        return Err(ApiError::invalid(fields));
    }
    let now = api.store.policy().now();
    let endpoint = WebhookEndpoint::new(caller.owner(), body.url, body.events, now)
        .map_err(|_| ApiError::unavailable("Webhooks are temporarily unavailable"))?;
    if !store.add_endpoint(&endpoint, MAX_ENDPOINTS).await? {
        return Err(ApiError::from_code(ApiCode::WebhookLimitReached));
    }
    let data = view(store.as_ref(), &endpoint).await?;
    let secret = endpoint.secret().expose_secret();
    Ok((StatusCode::CREATED, Json(Registered { secret, data })).into_response())
}

pub(super) async fn list<St: ManageKeys>(
    State(api): State<Arc<KeysApi<St>>>,
    caller: Principal,
) -> Result<Response, ApiError> {
    let store = match api.webhooks_for(&caller) {
        Ok(store) => store,
        // Without a webhook store: none (a refusal of the caller is still one).
        Err(error) if error.code() == ApiCode::NotImplemented.code() => {
            return Ok(Json(WebhookList { data: Vec::new() }).into_response());
        }
        Err(error) => return Err(error),
    };
    let mut data = Vec::new();
    for endpoint in store.endpoints(caller.owner()).await? {
        data.push(view(store.as_ref(), &endpoint).await?);
    }
    Ok(Json(WebhookList { data }).into_response())
}

/// The caller's owner's endpoint `id`, or 404 `webhook_not_found` (another owner's too).
async fn owned(
    store: &dyn WebhookStore,
    caller: &Principal,
    id: &str,
) -> Result<WebhookEndpoint, ApiError> {
    match store.endpoint(id).await? {
        Some(endpoint) if endpoint.owner() == caller.owner() => Ok(endpoint),
        _ => Err(ApiError::from_code(ApiCode::WebhookNotFound)),
    }
}

pub(super) async fn deliveries<St: ManageKeys>(
    State(api): State<Arc<KeysApi<St>>>,
    caller: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let store = api.webhooks_for(&caller)?;
    let endpoint = owned(store.as_ref(), &caller, &id).await?;
    let data = store
        .deliveries(endpoint.id(), 50)
        .await?
        .iter()
        .map(DeliveryView::of)
        .collect();
    Ok(Json(DeliveryList { data }).into_response())
}

pub(super) async fn remove<St: ManageKeys>(
    State(api): State<Arc<KeysApi<St>>>,
    caller: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let store = api.webhooks_for(&caller)?;
    let endpoint = owned(store.as_ref(), &caller, &id).await?;
    store.remove_endpoint(caller.owner(), endpoint.id()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
