//! The OpenAPI pieces the route table's descriptions are built from: an operation under
//! construction ([`Described`]) with the errors every route answers, and the document
//! around the paths (schemas, security schemes).

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

use super::views::{KeyData, SpendPage};
use crate::reject::ErrorBody;

/// `T`'s schema and every schema it refers to.
pub(super) fn with_dependencies<T: ToSchema>(schemas: &mut Vec<(String, RefOr<Schema>)>) {
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
pub(super) fn document(paths: Paths, mut schemas: Vec<(String, RefOr<Schema>)>) -> OpenApi {
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

/// An operation's description under construction; `build` adds the errors every route
/// can answer.
pub(super) struct Described(OperationBuilder);

pub(super) fn operation(id: &str, summary: &str) -> Described {
    Described(
        OperationBuilder::new()
            .operation_id(Some(id))
            .summary(Some(summary)),
    )
}

impl Described {
    pub(super) fn id(self) -> Self {
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
    pub(super) fn if_match(self) -> Self {
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

    pub(super) fn query<P: IntoParams>(self) -> Self {
        let mut builder = self.0;
        for parameter in P::into_params(|| Some(ParameterIn::Query)) {
            builder = builder.parameter(parameter);
        }
        Self(builder)
    }

    /// A JSON body of `T`, and the errors of reading one.
    pub(super) fn body<T: ToSchema>(self, required: bool) -> Self {
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

    pub(super) fn answers<T: ToSchema>(self, status: &str, description: &str) -> Self {
        Self(
            self.0
                .response(status, json_response(description, &T::name())),
        )
    }

    /// A single key, with its version in the `ETag` header.
    pub(super) fn tagged(self, status: &str, description: &str) -> Self {
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

    pub(super) fn error(self, status: &str, description: &str) -> Self {
        self.answers::<ErrorBody<'static>>(status, description)
    }

    /// The errors of a route about one key, and of every route.
    pub(super) fn build(self) -> Operation {
        self.error("404", "key_not_found: unknown, or another owner's key")
            .error("503", "auth_unavailable: the store failed")
            .authorized()
    }

    /// The errors of a route about one webhook endpoint, and of every route.
    pub(super) fn webhook(self) -> Operation {
        self.error(
            "404",
            "webhook_not_found: unknown, or another owner's endpoint",
        )
        .error("501", "not_implemented: no webhook store is configured")
        .error("503", "auth_unavailable: the store failed")
        .authorized()
    }

    /// `change` applied to the operation under construction (parameters, bodies and
    /// answers of a shape no other route has).
    #[cfg(feature = "leak-intake")]
    pub(super) fn with(self, change: impl FnOnce(OperationBuilder) -> OperationBuilder) -> Self {
        Self(change(self.0))
    }

    /// The operation as described, without the errors of the authenticated routes.
    #[cfg(feature = "leak-intake")]
    pub(super) fn finish(self) -> Operation {
        self.0.build()
    }

    /// An answer without a body.
    pub(super) fn no_content(self, status: &str, description: &str) -> Self {
        Self(self.0.response(
            status,
            ResponseBuilder::new().description(description).build(),
        ))
    }

    /// The errors of every route: no credential, or one not allowed.
    pub(super) fn authorized(self) -> Operation {
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
