//! [`KeysApi`]'s one route table, which its router and its OpenAPI document are built
//! from.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, MethodRouter};
use axum::Router;
use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::{OpenApi, Paths};

use super::api::KeysApi;
use super::error::Rendered;
use super::handlers;
use super::openapi::{document, operation, with_dependencies};
use super::views::{
    ActivityPage, AuditPageView, AuditParams, CreateKey, IssuedKey, KeyData, KeyList, Page,
    RotateKey, UpdateKey, UsagePage,
};
use super::webhooks::{CreateWebhook, DeliveryList, Registered, WebhookList};
use super::ApiCode;
use crate::audit::AuditAction;
use crate::store::ManageKeys;

impl<St: ManageKeys> KeysApi<St> {
    /// The routes, to mount under any prefix (`Router::nest`), behind the
    /// [`AuthLayer`](crate::AuthLayer).
    pub fn router<S: Clone + Send + Sync + 'static>(self) -> Router<S> {
        let limit = self.body_limit;
        let messages = Arc::clone(&self.messages);
        let api = Arc::new(self);
        let router = routes::<St>()
            .into_iter()
            .fold(Router::new(), |router, route| {
                let (api, action) = (Arc::clone(&api), route.action);
                let recorded =
                    route
                        .handler
                        .layer(axum::middleware::from_fn(move |request, next| {
                            super::audit::record(Arc::clone(&api), action, request, next)
                        }));
                router.route(route.path, recorded)
            })
            .layer(DefaultBodyLimit::max(limit));
        let router = if messages.is_empty() {
            router
        } else {
            // Re-rendered with the application's words, from the error the body was made of.
            router.layer(axum::middleware::map_response(move |response: Response| {
                let messages = Arc::clone(&messages);
                async move { worded(response, &messages) }
            }))
        };
        router.with_state(api)
    }

    /// The OpenAPI 3 document of [`router`](Self::router), generated from the same route
    /// table and from the types the handlers parse and write (`docs/openapi.json` is this
    /// document; a test fails when they differ).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tower_api_key::manage::KeysApi;
    /// use tower_api_key::{ForgScope, MemoryKeyStore};
    ///
    /// let api = KeysApi::new(Arc::new(MemoryKeyStore::<ForgScope>::new().with_policy(tower_api_key::forg::key_policy())));
    /// let document = api.openapi();
    /// assert!(document.paths.paths.contains_key("/keys/{id}/rotate"));
    /// ```
    pub fn openapi(&self) -> OpenApi {
        let mut paths = Paths::new();
        for route in routes::<St>() {
            paths.add_path_operation(route.path, vec![route.method], route.operation);
        }
        let mut schemas = Vec::new();
        with_dependencies::<IssuedKey>(&mut schemas);
        with_dependencies::<KeyData>(&mut schemas);
        with_dependencies::<KeyList>(&mut schemas);
        with_dependencies::<ActivityPage>(&mut schemas);
        with_dependencies::<CreateKey>(&mut schemas);
        with_dependencies::<RotateKey>(&mut schemas);
        with_dependencies::<UpdateKey>(&mut schemas);
        with_dependencies::<AuditPageView>(&mut schemas);
        with_dependencies::<CreateWebhook>(&mut schemas);
        with_dependencies::<Registered>(&mut schemas);
        with_dependencies::<WebhookList>(&mut schemas);
        with_dependencies::<DeliveryList>(&mut schemas);
        with_dependencies::<UsagePage>(&mut schemas);
        document(paths, schemas)
    }
}

/// `response` with the application's message for its code, if it chose one.
fn worded(mut response: Response, messages: &[(ApiCode, String)]) -> Response {
    let Some(Rendered(error)) = response.extensions_mut().remove::<Rendered>() else {
        return response;
    };
    match messages
        .iter()
        .find(|(code, _)| code.code() == error.code())
    {
        Some((_, message)) => error.worded(message).into_response(),
        None => response,
    }
}

/// One route: where, its handler, what the audit log calls it, and its description.
struct Route<St: ManageKeys> {
    method: HttpMethod,
    path: &'static str,
    handler: MethodRouter<Arc<KeysApi<St>>>,
    action: AuditAction,
    operation: Operation,
}

/// Every route of the API, once: the router and the OpenAPI document are built from it.
fn routes<St: ManageKeys>() -> Vec<Route<St>> {
    use HttpMethod::{Delete, Get, Patch, Post};
    vec![
        Route {
            method: Post,
            path: "/keys",
            handler: post(handlers::create::<St>),
            action: AuditAction::KeyIssued,
            operation: operation("createKey", "Issue a key")
                .body::<CreateKey>(true)
                .answers::<IssuedKey>("201", "Issued: the plaintext, once")
                .error("409", "key_limit_reached: Maximum 10 keys per user. Delete unused keys before creating new ones.")
                .build(),
        },
        Route {
            method: Get,
            path: "/keys",
            handler: get(handlers::list::<St>),
            action: AuditAction::KeyRead,
            operation: operation("listKeys", "The caller's keys, newest first")
                .answers::<KeyList>("200", "Keys")
                .build(),
        },
        Route {
            method: Get,
            path: "/keys/{id}",
            handler: get(handlers::show::<St>),
            action: AuditAction::KeyRead,
            operation: operation("getKey", "One key")
                .id()
                .tagged("200", "The key, its version in ETag")
                .build(),
        },
        Route {
            method: Patch,
            path: "/keys/{id}",
            handler: patch(super::update::update::<St>),
            action: AuditAction::KeyUpdated,
            operation: operation(
                "updateKey",
                "Change a key's settings in place: name, metadata, expiry, allowed networks, rate-limit overrides (lowered only) and scopes (narrowed only: a wider key is a new key). Fields left out are kept.",
            )
            .id()
            .if_match()
            .body::<UpdateKey>(true)
            .tagged("200", "Updated, its new version in ETag")
            .error("409", "key_not_changeable: the key is revoked or expired")
            .error("412", "precondition_failed: If-Match names a version the key is no longer at")
            .error("428", "precondition_required: this API updates keys only with If-Match")
            .error("501", "not_implemented: the key store cannot update keys in place")
            .build(),
        },
        Route {
            method: Delete,
            path: "/keys/{id}",
            handler: delete(handlers::revoke::<St>),
            action: AuditAction::KeyRevoked,
            operation: operation(
                "deleteKey",
                "Revoke a key now (the product's \"delete\"): like POST /keys/{id}/revoke, the key stays listed as revoked, with its activity and usage, until the store's retention period ends (30 days by default); then it is 404 on every route",
            )
                .id()
                .tagged("200", "Revoked")
                .build(),
        },
        Route {
            method: Post,
            path: "/keys/{id}/revoke",
            handler: post(handlers::revoke::<St>),
            action: AuditAction::KeyRevoked,
            operation: operation("revokeKey", "Revoke a key now")
                .id()
                .tagged("200", "Revoked")
                .build(),
        },
        Route {
            method: Post,
            path: "/keys/{id}/rotate",
            handler: post(handlers::rotate::<St>),
            action: AuditAction::KeyRotated,
            operation: operation(
                "rotateKey",
                "A new key with the same settings; the old one revoked now or after grace_seconds",
            )
            .id()
            .body::<RotateKey>(false)
            .answers::<IssuedKey>("201", "The successor: the plaintext, once")
            .build(),
        },
        Route {
            method: Post,
            path: "/keys/{id}/disable",
            handler: post(handlers::disable::<St>),
            action: AuditAction::KeyDisabled,
            operation: operation("disableKey", "Refuse the key until enabled")
                .id()
                .tagged("200", "Disabled")
                .build(),
        },
        Route {
            method: Post,
            path: "/keys/{id}/enable",
            handler: post(handlers::enable::<St>),
            action: AuditAction::KeyEnabled,
            operation: operation("enableKey", "Accept a disabled key again")
                .id()
                .tagged("200", "Enabled")
                .build(),
        },
        Route {
            method: Get,
            path: "/keys/{id}/activity",
            handler: get(handlers::activity::<St>),
            action: AuditAction::KeyRead,
            operation: operation("keyActivity", "Recent authentication outcomes, newest first")
                .id()
                .query::<Page>()
                .answers::<ActivityPage>("200", "Entries")
                .error("422", "validation_failed: a bad query")
                .build(),
        },
        Route {
            method: Get,
            path: "/keys/{id}/usage",
            handler: get(handlers::key_usage::<St>),
            action: AuditAction::KeyRead,
            operation: operation(
                "keyUsage",
                "Requests, refusals by kind and spend per UTC day, the last 30 days",
            )
            .id()
            .answers::<UsagePage>("200", "Days, oldest first")
            .build(),
        },
        Route {
            method: Get,
            path: "/usage",
            handler: get(handlers::owner_usage::<St>),
            action: AuditAction::KeyRead,
            operation: operation(
                "ownerUsage",
                "The caller's keys' use per UTC day, summed, the last 30 days",
            )
            .answers::<UsagePage>("200", "Days, oldest first")
            .build(),
        },
        Route {
            method: Get,
            path: "/audit",
            handler: get(super::audit::list::<St>),
            action: AuditAction::AuditRead,
            operation: operation(
                "listAudit",
                "The caller's owner's audit entries, newest first: every change to a key and every refused management request (a key caller sees its own environment's)",
            )
            .query::<AuditParams>()
            .answers::<AuditPageView>("200", "Entries")
            .error("422", "validation_failed: a bad query (an unknown action, a malformed key id)")
            .build(),
        },
        Route {
            method: Post,
            path: "/webhooks",
            handler: post(super::webhooks::create::<St>),
            action: AuditAction::WebhookAdded,
            operation: operation(
                "createWebhook",
                "Register an endpoint for the owner's events (Standard Webhooks); the signing secret is shown once",
            )
            .body::<CreateWebhook>(true)
            .answers::<Registered>("201", "Registered: the secret, once")
            .error("409", "webhook_limit_reached: Maximum 10 webhook endpoints per owner")
            .error("501", "not_implemented: no webhook store is configured")
            .authorized(),
        },
        Route {
            method: Get,
            path: "/webhooks",
            handler: get(super::webhooks::list::<St>),
            action: AuditAction::WebhookRead,
            operation: operation(
                "listWebhooks",
                "The owner's endpoints (never their secrets) with their latest deliveries' state",
            )
            .answers::<WebhookList>("200", "Endpoints")
            .error("503", "auth_unavailable: the store failed")
            .authorized(),
        },
        Route {
            method: Delete,
            path: "/webhooks/{id}",
            handler: delete(super::webhooks::remove::<St>),
            action: AuditAction::WebhookRemoved,
            operation: operation("deleteWebhook", "Remove an endpoint and its deliveries")
                .id()
                .no_content("204", "Removed")
                .webhook(),
        },
        Route {
            method: Get,
            path: "/webhooks/{id}/deliveries",
            handler: get(super::webhooks::deliveries::<St>),
            action: AuditAction::WebhookRead,
            operation: operation(
                "webhookDeliveries",
                "An endpoint's latest 50 deliveries, newest first: state, attempts, next attempt, last answer",
            )
            .id()
            .answers::<DeliveryList>("200", "Deliveries")
            .webhook(),
        },
    ]
}
