//! [`KeysApi`]'s one route table, which its router and its OpenAPI document are built
//! from.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, MethodRouter};
use axum::Router;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{
    HttpMethod, Operation, OperationBuilder, ParameterBuilder, ParameterIn,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    ComponentsBuilder, Content, InfoBuilder, OpenApi, OpenApiBuilder, Paths, Ref, RefOr, Required,
    ResponseBuilder,
};
use utoipa::{IntoParams, ToSchema};

use super::api::KeysApi;
use super::error::Rendered;
use super::handlers;
use super::views::{
    ActivityPage, AuditPageView, AuditParams, CreateKey, IssuedKey, KeyData, KeyList, Page,
    RotateKey, SpendPage, UpdateKey, UsagePage,
};
use super::ApiCode;
use crate::audit::AuditAction;
use crate::reject::ErrorBody;
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

/// `T`'s schema and every schema it refers to.
fn with_dependencies<T: ToSchema>(schemas: &mut Vec<(String, RefOr<Schema>)>) {
    schemas.push((T::name().into_owned(), T::schema()));
    T::schemas(schemas);
}

/// The document of [`SpendApi`](super::SpendApi): its one route at `path`.
pub(super) fn spend_document(path: &str) -> OpenApi {
    let mut paths = Paths::new();
    let operation = operation(
        "getSpend",
        "The caller's owner's budgets in their current periods",
    )
    .answers::<SpendPage>("200", "Budgets")
    .error(
        "503",
        "auth_unavailable: the store or the usage backend failed",
    )
    .authorized();
    paths.add_path_operation(path, vec![HttpMethod::Get], operation);
    let mut schemas = Vec::new();
    with_dependencies::<SpendPage>(&mut schemas);
    document(paths, schemas)
}

/// A document of `paths`, with `schemas`, the error body and the security schemes.
fn document(paths: Paths, mut schemas: Vec<(String, RefOr<Schema>)>) -> OpenApi {
    with_dependencies::<ErrorBody<'static>>(&mut schemas);
    let components = ComponentsBuilder::new()
        .schemas_from_iter(schemas)
        .security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("session"))),
        )
        .security_scheme(
            "csrf",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-CSRF-Token"))),
        )
        .security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        )
        .build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("tower-api-key management API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Key lifecycle (KeysApi) and spend (SpendApi) for the caller's own owner. \
                     Mount each under any prefix (the quickstart: keys under /v1, spend under \
                     /api); authenticate with the session cookie (unsafe methods need \
                     X-CSRF-Token) or, where configured, an API key with the chosen scope.",
                )),
        )
        .paths(paths)
        .components(Some(components))
        .security(Some([
            SecurityRequirement::new("session", Vec::<String>::new())
                .add("csrf", Vec::<String>::new()),
            SecurityRequirement::new("bearer", Vec::<String>::new()),
        ]))
        .build()
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
    ]
}

/// An operation's description under construction; `build` adds the errors every route
/// can answer.
struct Described(OperationBuilder);

fn operation(id: &str, summary: &str) -> Described {
    Described(
        OperationBuilder::new()
            .operation_id(Some(id))
            .summary(Some(summary)),
    )
}

impl Described {
    fn id(self) -> Self {
        Self(
            self.0.parameter(
                ParameterBuilder::new()
                    .name("id")
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
            ),
        )
    }

    /// The optional `If-Match` header of an update.
    fn if_match(self) -> Self {
        Self(
            self.0.parameter(
                ParameterBuilder::new()
                    .name("If-Match")
                    .parameter_in(ParameterIn::Header)
                    .required(Required::False)
                    .description(Some(
                        "The key's ETag as read (or `*`): the update applies only while the key \
                         is at that version. Required when the API is configured so (428 \
                         without).",
                    ))
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
            ),
        )
    }

    fn query<P: IntoParams>(self) -> Self {
        let mut builder = self.0;
        for parameter in P::into_params(|| Some(ParameterIn::Query)) {
            builder = builder.parameter(parameter);
        }
        Self(builder)
    }

    /// A JSON body of `T`, and the errors of reading one.
    fn body<T: ToSchema>(self, required: bool) -> Self {
        let body = RequestBodyBuilder::new()
            .required(Some(if required {
                Required::True
            } else {
                Required::False
            }))
            .content(
                "application/json",
                Content::new(Some(Ref::from_schema_name(T::name()))),
            )
            .build();
        Self(self.0.request_body(Some(body)))
            .error("400", "invalid_request: malformed JSON")
            .error(
                "413",
                "payload_too_large: over the body limit (16 KiB by default)",
            )
            .error("415", "unsupported_media_type: not application/json")
            .error("422", "validation_failed, with the offending fields")
    }

    fn answers<T: ToSchema>(self, status: &str, description: &str) -> Self {
        Self(
            self.0
                .response(status, json_response(description, &T::name())),
        )
    }

    /// A single key, with its version in the `ETag` header.
    fn tagged(self, status: &str, description: &str) -> Self {
        let mut response = json_response(description, &KeyData::name());
        response.headers.insert(
            "ETag".to_owned(),
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::String))
                .description(Some("The key's version, quoted: send it back in If-Match"))
                .build(),
        );
        Self(self.0.response(status, response))
    }

    fn error(self, status: &str, description: &str) -> Self {
        self.answers::<ErrorBody<'static>>(status, description)
    }

    /// The errors of a route about one key, and of every route.
    fn build(self) -> Operation {
        self.error("404", "key_not_found: unknown, or another owner's key")
            .error("503", "auth_unavailable: the store failed")
            .authorized()
    }

    /// The errors of every route: no credential, or one not allowed.
    fn authorized(self) -> Operation {
        self.error("401", "No valid credential (key or session)")
            .error(
                "403",
                "Not allowed: session_required, insufficient_scope, environment_not_allowed, \
                 plan_required or csrf_failed",
            )
            .0
            .build()
    }
}

fn json_response(description: &str, schema: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            Content::new(Some(Ref::from_schema_name(schema))),
        )
        .build()
}
