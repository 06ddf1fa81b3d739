//! [`ApiError`]: the FORG error body of the management API, and [`ApiJson`], the JSON body
//! extractor whose rejections are such errors (400 not JSON, 422 JSON with a wrong field).

use axum::extract::{FromRequest, OptionalFromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::ApiCode;
use crate::reject::{AuthRejection, ErrorBody, FieldError, RejectionKind};
use crate::store::{ManageError, StoreError};

/// An error in the FORG body shape, `{"error", "code", "status"}`, with `fields` (each a
/// `{"field", "message"}`) for 422 `validation_failed`.
///
/// ```
/// use axum::http::StatusCode;
/// use axum::response::IntoResponse;
/// use tower_api_key::manage::ApiError;
///
/// let error = ApiError::invalid([("email", "must contain @")]);
/// assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY);
/// assert_eq!(error.into_response().status(), StatusCode::UNPROCESSABLE_ENTITY);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    fields: Vec<(String, String)>,
}

impl ApiError {
    /// An error with `status`, a stable snake_case `code` and a message for people.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            fields: Vec::new(),
        }
    }

    /// 422 `validation_failed`, naming each offending field and what is wrong with it.
    pub fn invalid<F: Into<String>, M: Into<String>>(
        fields: impl IntoIterator<Item = (F, M)>,
    ) -> Self {
        Self {
            fields: fields
                .into_iter()
                .map(|(field, message)| (field.into(), message.into()))
                .collect(),
            ..Self::from_code(ApiCode::ValidationFailed)
        }
    }

    /// 503 `auth_unavailable`: a store failed.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::of(RejectionKind::Unavailable, message)
    }

    /// A refusal only the management API gives, with its status, code and message from
    /// its table ([`ApiCode`]).
    pub fn from_code(code: ApiCode) -> Self {
        Self::new(code.status(), code.code(), code.message())
    }

    /// A refusal of a kind the request path answers too: its status and code come from
    /// the one table ([`RejectionKind`]).
    pub(crate) fn of(kind: RejectionKind, message: impl Into<String>) -> Self {
        Self::new(kind.status(), kind.code(), message)
    }

    pub(crate) fn key_not_found() -> Self {
        Self::from_code(ApiCode::KeyNotFound)
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The code, e.g. `validation_failed`.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The offending fields and what is wrong with each (422 only).
    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(f, m)| (f.as_str(), m.as_str()))
    }
}

impl From<ManageError> for ApiError {
    fn from(error: ManageError) -> Self {
        match error {
            ManageError::NotFound(_) => Self::key_not_found(),
            ManageError::KeyLimitReached { limit } => {
                let code = ApiCode::KeyLimitReached;
                Self::new(
                    code.status(),
                    code.code(),
                    format!(
                        "Maximum {limit} keys per user. Delete unused keys before creating new ones."
                    ),
                )
            }
            ManageError::PlanRequired(environment) => Self::of(
                RejectionKind::PlanRequired,
                AuthRejection::PlanRequired(environment).message(),
            ),
            ManageError::FamilyNotAccepted(_) => Self::invalid([(
                "environment",
                "no key family of this environment is accepted here",
            )]),
            ManageError::Duplicate => Self::from_code(ApiCode::Conflict),
            ManageError::VersionMismatch { .. } => Self::from_code(ApiCode::PreconditionFailed),
            ManageError::NotChangeable(_) => Self::from_code(ApiCode::KeyNotChangeable),
            ManageError::Invalid { field, reason } => Self::invalid([(field, reason)]),
            ManageError::Unsupported(_) => Self::from_code(ApiCode::NotImplemented),
            ManageError::Generate(_) | ManageError::Store(_) => {
                Self::unavailable("Key management is temporarily unavailable")
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        ManageError::Store(error).into()
    }
}

impl From<AuthRejection> for ApiError {
    /// The rejection's status, code and message (its headers are the layers' to send).
    fn from(rejection: AuthRejection) -> Self {
        Self::new(rejection.status(), rejection.code(), rejection.message())
    }
}

/// The error a response was rendered from, in its extensions: so that the router can
/// word it as the application chose ([`KeysApi::message`](super::KeysApi::message)).
#[derive(Clone)]
pub(super) struct Rendered(pub(super) ApiError);

impl ApiError {
    /// The same error with another message for people.
    pub(super) fn worded(mut self, message: &str) -> Self {
        message.clone_into(&mut self.message);
        self
    }
}

impl ApiError {
    /// The JSON body.
    fn body(&self) -> Bytes {
        let fields: Vec<FieldError<'_>> = self
            .fields
            .iter()
            .map(|(field, message)| FieldError { field, message })
            .collect();
        ErrorBody {
            fields: &fields,
            ..ErrorBody::new(self.status, self.code, &self.message)
        }
        .to_bytes()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body();
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        response.extensions_mut().insert(Rendered(self));
        response
    }
}

/// A JSON request body of type `T`, as an axum extractor whose rejection is an
/// [`ApiError`]: 415 without a JSON `Content-Type`, 413 over the body limit, 400
/// `invalid_request` when the body is not JSON, and 422 `validation_failed` naming the field
/// when it is JSON but a field is missing, unknown or of the wrong type. Messages never
/// repeat the values sent. As an `Option<ApiJson<T>>`, a request without a body is `None`.
///
/// ```
/// use axum::{routing::post, Router};
/// use serde::Deserialize;
/// use tower_api_key::manage::ApiJson;
///
/// #[derive(Deserialize)]
/// struct Login { email: String, password: String }
///
/// let app: Router = Router::new().route("/login", post(|ApiJson(login): ApiJson<Login>| async move {
///     login.email
/// }));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> ApiJson<T> {
    /// Parses `bytes` as the extractor does.
    ///
    /// # Errors
    /// 400 when `bytes` is not JSON, 422 naming the field when it is not a `T`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ApiError> {
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let value = serde_path_to_error::deserialize(&mut deserializer)
            .map_err(|error| refused(error.path().to_string(), error.into_inner()))?;
        deserializer
            .end()
            .map_err(|error| refused(".".into(), error))?;
        Ok(Self(value))
    }
}

/// Why a body is not a `T`: its syntax (400) or a field (422).
fn refused(path: String, error: serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    if !matches!(error.classify(), Category::Data) {
        return ApiError::of(RejectionKind::InvalidRequest, "The body is not valid JSON");
    }
    // The field from serde's message (its own words around the name), never any value:
    // what the client is told comes from a closed set of phrases.
    let text = error.to_string();
    let named = |marker: &str| {
        let rest = text.strip_prefix(marker)?;
        rest.split('`').next().map(str::to_owned)
    };
    let (field, message) = if let Some(field) = named("missing field `") {
        (field, "missing field".to_owned())
    } else if let Some(field) = named("unknown field `") {
        (field, "unknown field".to_owned())
    } else {
        let field = if path == "." { "body".to_owned() } else { path };
        let words = expected(&field, &text);
        (field, format!("expected {words}"))
    };
    // A field's name is the client's own input: shown, but never at any length.
    let field: String = field.chars().take(64).collect();
    let mut refused = ApiError::invalid([(field.clone(), message.clone())]);
    refused.message = format!("Validation failed: {message} `{field}`");
    refused
}

/// What `field` takes, in words a client understands: the API's own fields by name, any
/// other by the kind of value serde expected (read from the end of its message, after the
/// value it may quote, and mapped to a fixed phrase, so the value is never repeated).
fn expected(field: &str, serde_text: &str) -> &'static str {
    let last = field.rsplit(['.', '[']).next().unwrap_or(field);
    let known = match last {
        "grace_seconds" => Some("a whole number of seconds, from 0 to 2592000 (30 days)"),
        "before" => Some("a whole number (a `seq` from `next_before`)"),
        "limit" => Some("a whole number from 1 to 100"),
        "expires_at" => Some("an RFC 3339 date-time such as 2030-01-01T00:00:00Z"),
        "scopes" => Some("a list of scope names"),
        "metadata" => Some("an object of text values"),
        "name" | "environment" | "email" | "password" => Some("text"),
        _ => None,
    };
    if let Some(words) = known {
        return words;
    }
    let kind = serde_text
        .rfind(", expected ")
        .map_or("", |at| &serde_text[at + ", expected ".len()..]);
    let kind = kind.split(" at line ").next().unwrap_or(kind);
    match kind {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" | "i8" | "i16" | "i32" | "i64" | "i128"
        | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "a string" | "a borrowed string" | "a character" => "text",
        "a boolean" => "true or false",
        "a sequence" => "a list",
        _ if kind.starts_with("a map") || kind.starts_with("struct ") => "an object",
        _ => "a valid value",
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

async fn body_of<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::from_code(ApiCode::PayloadTooLarge)
            } else {
                ApiError::of(RejectionKind::InvalidRequest, "The body could not be read")
            }
        })
}

fn unsupported_media_type() -> ApiError {
    ApiError::from_code(ApiCode::UnsupportedMediaType)
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(request.headers()) {
            return Err(unsupported_media_type());
        }
        Self::from_bytes(&body_of(request, state).await?)
    }
}

impl<T: DeserializeOwned, S: Send + Sync> OptionalFromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Option<Self>, Self::Rejection> {
        let json = is_json(request.headers());
        let declared = request.headers().contains_key(header::CONTENT_TYPE);
        let bytes = body_of(request, state).await?;
        match (json, declared) {
            (true, _) => Self::from_bytes(&bytes).map(Some),
            (false, false) if bytes.is_empty() => Ok(None),
            _ => Err(unsupported_media_type()),
        }
    }
}
