//! [`LeakIntake`]: leaked keys reported by a secret scanner, in the shape of GitHub's
//! secret scanning partner program: a signed batch of `{token, type, url, source}`, each
//! looked up by digest, the live ones revoked (or disabled), each answered with a label.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64ct::{Base64, Encoding};
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::openapi::path::{HttpMethod, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{Content, OpenApi, Paths, Ref, Required, ResponseBuilder};
use utoipa::ToSchema;

use super::error::ApiError;
use super::openapi::{document, operation, with_dependencies};
use super::ApiCode;
use crate::events::{EventGate, KeyEvent, KeyEventKind, KeyEvents, KeyRef, MemoryEventGate};
use crate::quota::{ClassName, Quota};
use crate::rate_limit::{RateClass, RateLimits};
use crate::store::{KeyStatus, ManageKeys};

/// The header naming which of the scanner's public keys signed the report.
pub const KEY_IDENTIFIER: &str = "github-public-key-identifier";
/// The header with the report's signature: base64 of an ASN.1 DER ECDSA P-256 signature
/// over the raw body (SHA-256).
pub const KEY_SIGNATURE: &str = "github-public-key-signature";

/// A public key that is not an SPKI PEM of a P-256 key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a P-256 public key in SPKI PEM (`-----BEGIN PUBLIC KEY-----`)")]
pub struct InvalidPublicKey;

/// One reported token, as the scanner sends it.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct LeakedToken {
    /// The token found.
    token: String,
    /// The token type the scanner matched (e.g. `forg_api_key`).
    #[serde(rename = "type")]
    token_type: String,
    /// Where it was found.
    url: Option<String>,
    /// What kind of place (`content`, `commit`, …).
    source: Option<String>,
}

/// The answer for one token: its SHA-256 (never the token), its type, and whether it was
/// one of ours.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct LeakLabel {
    /// Lower-case hex SHA-256 of the token.
    token_hash: String,
    /// The type as reported.
    token_type: String,
    /// `true_positive` (one of this store's keys: now revoked or disabled, or refused
    /// already) or `false_positive`.
    #[schema(pattern = "^(true_positive|false_positive)$")]
    label: &'static str,
}

/// Receives leak reports from a secret scanner: mount [`router`](Self::router) outside
/// the authentication layer (the scanner has no key; its signature is its credential),
/// e.g. under `/leaks`.
///
/// ```
/// use std::sync::Arc;
/// use axum::Router;
/// use tower_api_key::manage::LeakIntake;
/// use tower_api_key::{ForgScope, MemoryKeyStore};
///
/// # let github_pem = p256::pkcs8::EncodePublicKey::to_public_key_pem(
/// #     p256::ecdsa::SigningKey::from_slice(&[7; 32]).unwrap().verifying_key(),
/// #     p256::pkcs8::LineEnding::LF,
/// # ).unwrap();
/// let keys = Arc::new(MemoryKeyStore::<ForgScope>::new().with_policy(tower_api_key::forg::key_policy()));
/// // The key identifier and PEM from https://api.github.com/meta/public_keys/secret_scanning.
/// let intake = LeakIntake::new(keys).public_key_pem("90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a", &github_pem).unwrap();
/// let app: Router = Router::new().nest("/leaks", intake.router());
/// ```
///
/// - Each request must carry [`KEY_IDENTIFIER`] and [`KEY_SIGNATURE`], and the signature
///   must verify over the raw body with the public key of that identifier
///   ([`public_key_pem`](Self::public_key_pem), as GitHub publishes them); otherwise 401
///   `invalid_signature`, and nothing is looked up. A retired key is simply no longer
///   configured.
/// - A report received before (the same signature, within a day: shared by every
///   instance when the gate is a shared store's) is 409 `replayed`.
/// - At most 1,000 tokens per report (422 otherwise); 60 reports per minute per client
///   address (429).
/// - Each token is digested and looked up: a key of the store is `true_positive` (an
///   active or disabled one is revoked, or disabled with
///   [`disable_instead`](Self::disable_instead), and `key.leaked` is published); anything
///   else is `false_positive`. The answer names tokens by their SHA-256, never in clear.
///   No token is logged.
pub struct LeakIntake<St: ManageKeys> {
    store: Arc<St>,
    keys: Arc<Vec<(String, VerifyingKey)>>,
    events: KeyEvents,
    disable: bool,
    replays: Arc<dyn EventGate>,
    limit: RateClass,
}

impl<St: ManageKeys> Clone for LeakIntake<St> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            keys: Arc::clone(&self.keys),
            events: self.events.clone(),
            disable: self.disable,
            replays: Arc::clone(&self.replays),
            limit: self.limit.clone(),
        }
    }
}

impl<St: ManageKeys> fmt::Debug for LeakIntake<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeakIntake")
            .field(
                "public_keys",
                &self.keys.iter().map(|(id, _)| id).collect::<Vec<_>>(),
            )
            .field("disable", &self.disable)
            .finish_non_exhaustive()
    }
}

/// The most tokens one report may hold.
const MAX_TOKENS: usize = 1_000;
/// How long a report's signature is remembered against replays.
const REPLAY_WINDOW: Duration = Duration::from_secs(86_400);

impl<St: ManageKeys> LeakIntake<St> {
    /// Reports about `store`'s keys; no public key yet (every report is refused until one
    /// is configured), replays remembered in this process.
    pub fn new(store: Arc<St>) -> Self {
        Self {
            store,
            keys: Arc::default(),
            events: KeyEvents::new(),
            disable: false,
            replays: Arc::new(MemoryEventGate::new()),
            limit: RateClass::per_client_ip(
                ClassName::from_static("leaks"),
                Quota::per_minute_const(60),
            ),
        }
    }

    /// Accepts reports signed by `key`, named `identifier` in [`KEY_IDENTIFIER`].
    #[must_use]
    pub fn public_key(mut self, identifier: impl Into<String>, key: VerifyingKey) -> Self {
        let mut keys = (*self.keys).clone();
        keys.push((identifier.into(), key));
        self.keys = Arc::new(keys);
        self
    }

    /// The same from an SPKI PEM (`-----BEGIN PUBLIC KEY-----`), as GitHub publishes them
    /// at `https://api.github.com/meta/public_keys/secret_scanning`.
    ///
    /// # Errors
    /// [`InvalidPublicKey`].
    pub fn public_key_pem(
        self,
        identifier: impl Into<String>,
        pem: &str,
    ) -> Result<Self, InvalidPublicKey> {
        let key = VerifyingKey::from_public_key_pem(pem).map_err(|_| InvalidPublicKey)?;
        Ok(self.public_key(identifier, key))
    }

    /// Publishes `key.leaked` to `events` (the owner's webhook, the audit log).
    #[must_use]
    pub fn events(mut self, events: KeyEvents) -> Self {
        self.events = events;
        self
    }

    /// Disables a leaked key instead of revoking it (the owner re-enables it after
    /// checking; a revocation cannot be undone).
    #[must_use]
    pub fn disable_instead(mut self) -> Self {
        self.disable = true;
        self
    }

    /// Remembers report signatures in `gate` (a shared store's, so that every instance
    /// refuses a replay).
    #[must_use]
    pub fn replay_gate(mut self, gate: impl EventGate) -> Self {
        self.replays = Arc::new(gate);
        self
    }

    /// Limits reports per client address to `class` (default 60 per minute).
    #[must_use]
    pub fn rate_limit(mut self, class: RateClass) -> Self {
        self.limit = class;
        self
    }

    /// `POST /`: the intake, to mount under any path, outside the authentication layer.
    pub fn router<S: Clone + Send + Sync + 'static>(self) -> Router<S> {
        let limit = RateLimits::new().layer(self.limit.clone());
        Router::new()
            .route("/", post(receive::<St>))
            .layer(DefaultBodyLimit::max(1 << 20))
            .route_layer(limit)
            .with_state(Arc::new(self))
    }

    /// The OpenAPI 3 document of [`router`](Self::router) mounted at `path` (e.g. `/leaks`):
    /// the signature headers, the report and the labels, every refusal.
    pub fn openapi(&self, path: &str) -> OpenApi {
        leaks_document(path, MAX_TOKENS)
    }

    /// The public key `identifier` names, if configured.
    fn key(&self, identifier: &str) -> Option<&VerifyingKey> {
        self.keys
            .iter()
            .find(|(id, _)| id == identifier)
            .map(|(_, key)| key)
    }
}

/// The signature of `body` under the key `headers` name, checked: the signature's bytes.
fn verified<St: ManageKeys>(
    intake: &LeakIntake<St>,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<Vec<u8>> {
    let identifier = headers.get(KEY_IDENTIFIER)?.to_str().ok()?;
    let signature = Base64::decode_vec(headers.get(KEY_SIGNATURE)?.to_str().ok()?.trim()).ok()?;
    let key = intake.key(identifier)?;
    let parsed = Signature::from_der(&signature).ok()?;
    key.verify(body, &parsed).ok()?;
    Some(signature)
}

async fn receive<St: ManageKeys>(
    State(intake): State<Arc<LeakIntake<St>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let signature = verified(&intake, &headers, &body)
        .ok_or_else(|| ApiError::from_code(ApiCode::InvalidSignature))?;
    let reports: Vec<LeakedToken> = serde_json::from_slice(&body).map_err(|_| {
        ApiError::invalid([(
            "body",
            "a JSON array of {token, type, url, source} (token and type required)",
        )])
    })?;
    if reports.len() > MAX_TOKENS {
        return Err(ApiError::invalid([(
            "body",
            "at most 1000 tokens in one report",
        )]));
    }
    let replay = format!(
        "leaks:{}",
        base16ct::lower::encode_string(&Sha256::digest(&signature))
    );
    if !intake.replays.first(&replay, REPLAY_WINDOW).await? {
        return Err(ApiError::from_code(ApiCode::Replayed));
    }
    match labelled(&intake, reports).await {
        Ok(labels) => Ok(Json(labels).into_response()),
        Err(error) => {
            // Failed half-way (a store): the scanner's retry must not be a "replay".
            let _ = intake.replays.forget(&replay).await;
            Err(error)
        }
    }
}

/// Each report's label, acting on the keys found.
async fn labelled<St: ManageKeys>(
    intake: &LeakIntake<St>,
    reports: Vec<LeakedToken>,
) -> Result<Vec<LeakLabel>, ApiError> {
    let mut labels = Vec::with_capacity(reports.len());
    for report in reports {
        let found = intake
            .store
            .lookup(&intake.store.hasher().digest(&report.token))
            .await?;
        let label = if found.is_some() {
            "true_positive"
        } else {
            "false_positive"
        };
        if let Some(record) = found {
            act_on(intake, &record, report.url, report.source).await?;
        }
        labels.push(LeakLabel {
            token_hash: base16ct::lower::encode_string(&Sha256::digest(report.token.as_bytes())),
            token_type: report.token_type,
            label,
        });
    }
    Ok(labels)
}

/// Revokes (or disables) a live leaked key and publishes `key.leaked`; a key refused
/// already is left as it is.
async fn act_on<St: ManageKeys>(
    intake: &LeakIntake<St>,
    record: &crate::store::KeyRecord<St::Scope>,
    url: Option<String>,
    source: Option<String>,
) -> Result<(), ApiError> {
    let now = intake.store.policy().now();
    let action = match record.status_at(now) {
        KeyStatus::Active if intake.disable => {
            intake.store.disable(record.id()).await?;
            "disabled"
        }
        KeyStatus::Active | KeyStatus::Disabled if !intake.disable => {
            intake.store.revoke(record.id()).await?;
            "revoked"
        }
        _ => return Ok(()),
    };
    let cut = |text: Option<String>| text.map(|text| text.chars().take(512).collect());
    let kind = KeyEventKind::Leaked {
        key: KeyRef::of(record),
        url: cut(url),
        source: cut(source),
        action,
    };
    if let Ok(event) = KeyEvent::new(now, record.owner(), kind) {
        intake.events.publish(event).await;
    }
    Ok(())
}

/// The document of [`LeakIntake`] mounted at `path`: no credential
/// but the scanner's signature.
fn leaks_document(path: &str, max_tokens: usize) -> OpenApi {
    let header = |name: &str, description: &str| {
        ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Header)
            .required(Required::True)
            .description(Some(description))
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
    };
    let array = |item: &str, max: Option<usize>| {
        ArrayBuilder::new()
            .items(Ref::from_schema_name(item))
            .max_items(max)
            .build()
    };
    let body = RequestBodyBuilder::new()
        .required(Some(Required::True))
        .content(
            "application/json",
            Content::new(Some(array(&LeakedToken::name(), Some(max_tokens)))),
        )
        .build();
    let labels = ResponseBuilder::new()
        .description("Each token's label, in the report's order")
        .content(
            "application/json",
            Content::new(Some(array(&LeakLabel::name(), None))),
        )
        .build();
    let operation = operation("reportLeaks", "Report leaked keys (a secret scanner)").with(|operation| operation
        .description(Some(
            "GitHub's secret scanning partner program shape: the live keys named are revoked (or disabled) and their owners notified; no token is logged or echoed.",
        ))
        .parameter(header(
            KEY_IDENTIFIER,
            "Which configured public key signed the report",
        ))
        .parameter(header(
            KEY_SIGNATURE,
            "Base64 of the ASN.1 DER ECDSA P-256 (SHA-256) signature of the raw body",
        ))
        .request_body(Some(body))
        .response("200", labels)
        .securities(Some(Vec::<SecurityRequirement>::new())));
    let operation = operation
        .error(
            "401",
            "invalid_signature: unsigned, unknown key identifier, or forged",
        )
        .error("409", "replayed: this report was received before")
        .no_content("413", "The body is over 1 MiB")
        .error(
            "422",
            "validation_failed: not an array of reports, or too many tokens",
        )
        .error("429", "rate_limited: too many reports from this address")
        .error("503", "auth_unavailable: the store failed")
        .finish();
    let mut paths = Paths::new();
    paths.add_path_operation(path, vec![HttpMethod::Post], operation);
    let mut schemas = Vec::new();
    with_dependencies::<LeakedToken>(&mut schemas);
    with_dependencies::<LeakLabel>(&mut schemas);
    let mut document = document(paths, schemas);
    document.info.description = Some(
        "Leak intake (LeakIntake): reports signed by a secret scanner, no key or session."
            .to_owned(),
    );
    document
}
