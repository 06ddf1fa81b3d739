//! [`AuditEntry`]: who did what to which key, when, from where, and how it ended.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::key::Environment;
use crate::store::KeyId;

crate::support::table_enum! {
    /// What was done (or attempted: a refused attempt is an entry too, with its status).
    /// Serde form and [`as_str`](Self::as_str): `key.issued`, `key.updated`, ….
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[non_exhaustive]
    pub enum AuditAction {
        /// A key was issued (`POST /keys`).
        #[serde(rename = "key.issued")]
        KeyIssued,
        /// A key's settings changed in place (`PATCH /keys/{id}`), with the changes.
        #[serde(rename = "key.updated")]
        KeyUpdated,
        /// A key was rotated: the entry names the old key, the successor in its changes.
        #[serde(rename = "key.rotated")]
        KeyRotated,
        /// A key was revoked (`POST /keys/{id}/revoke`, `DELETE /keys/{id}`).
        #[serde(rename = "key.revoked")]
        KeyRevoked,
        /// A key was disabled.
        #[serde(rename = "key.disabled")]
        KeyDisabled,
        /// A disabled key was enabled.
        #[serde(rename = "key.enabled")]
        KeyEnabled,
        /// A record was deleted (`ManageKeys::delete`, by the application).
        #[serde(rename = "key.deleted")]
        KeyDeleted,
        /// Keys, a key or its activity or usage were read: recorded only when refused.
        #[serde(rename = "key.read")]
        KeyRead,
        /// The audit log was read: recorded only when refused.
        #[serde(rename = "audit.read")]
        AuditRead,
        /// Credits were granted or taken back.
        #[serde(rename = "credits.changed")]
        CreditsChanged,
        /// A spend cap changed.
        #[serde(rename = "caps.changed")]
        CapsChanged,
        /// A trial started.
        #[serde(rename = "trial.started")]
        TrialStarted,
        /// A browser session started (a login; a refused login is this with 401).
        #[serde(rename = "session.started")]
        SessionStarted,
        /// A browser session ended (a logout).
        #[serde(rename = "session.ended")]
        SessionEnded,
        /// A key was reported leaked; it was revoked or disabled (the entry's changes say).
        #[serde(rename = "key.leaked")]
        KeyLeaked,
        /// A webhook endpoint was registered.
        #[serde(rename = "webhook.added")]
        WebhookAdded,
        /// A webhook endpoint was removed.
        #[serde(rename = "webhook.removed")]
        WebhookRemoved,
        /// Webhooks or their deliveries were read: recorded only when refused.
        #[serde(rename = "webhook.read")]
        WebhookRead,
        /// The owner was told of an event (a key expiring, a budget threshold, a rate
        /// limit hit repeatedly): the event's type is in the changes.
        #[serde(rename = "owner.notified")]
        Notified,
    }
}

impl AuditAction {
    /// The serde name, `key.issued` and so on.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::KeyIssued => "key.issued",
            Self::KeyUpdated => "key.updated",
            Self::KeyRotated => "key.rotated",
            Self::KeyRevoked => "key.revoked",
            Self::KeyDisabled => "key.disabled",
            Self::KeyEnabled => "key.enabled",
            Self::KeyDeleted => "key.deleted",
            Self::KeyRead => "key.read",
            Self::AuditRead => "audit.read",
            Self::CreditsChanged => "credits.changed",
            Self::CapsChanged => "caps.changed",
            Self::TrialStarted => "trial.started",
            Self::SessionStarted => "session.started",
            Self::SessionEnded => "session.ended",
            Self::KeyLeaked => "key.leaked",
            Self::WebhookAdded => "webhook.added",
            Self::WebhookRemoved => "webhook.removed",
            Self::WebhookRead => "webhook.read",
            Self::Notified => "owner.notified",
        }
    }

    /// The action named `name` (its serde name).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|action| action.as_str() == name)
    }
}

/// Who acted: a key, a browser session (each by its public id), or the application itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "lowercase")]
pub enum Actor {
    /// An API key, by id.
    Key(KeyId),
    /// A browser session, by id (never its cookie).
    Session(KeyId),
    /// The application, through the crate's API (a trial, credits, a deletion).
    System,
}

/// One setting changed: its name and the values before and after (`None`: absent). Only
/// settings that are no secret are ever recorded (never a key, a digest or a password).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    /// The setting, as the management API names it (`name`, `scopes`, …).
    pub field: String,
    /// Before.
    pub from: Option<String>,
    /// After.
    pub to: Option<String>,
}

/// One audit entry. Built with [`new`](Self::new) and setters; the log assigns
/// [`seq`](Self::seq) when it appends it.
///
/// Serde form (what the Redis and SQL logs keep): `at` in Unix milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    #[serde(default)]
    seq: u64,
    #[serde(with = "crate::support::unix_millis")]
    at: SystemTime,
    owner: String,
    actor: Actor,
    action: AuditAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_id: Option<KeyId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    environment: Option<Environment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
    status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    code: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    changes: Vec<FieldChange>,
}

/// The longest request id kept (the rest is cut): an entry stays small whatever a client
/// sends.
const MAX_REQUEST_ID: usize = 128;

impl AuditEntry {
    /// `actor` did `action` for `owner` at `at`, successfully (status 200) until
    /// [`outcome`](Self::outcome) says otherwise.
    pub fn new(
        at: SystemTime,
        owner: impl Into<String>,
        actor: Actor,
        action: AuditAction,
    ) -> Self {
        Self {
            seq: 0,
            at,
            owner: owner.into(),
            actor,
            action,
            key_id: None,
            environment: None,
            client: None,
            request_id: None,
            status: 200,
            code: None,
            changes: Vec::new(),
        }
    }

    /// The key acted on, and its environment when known (a refused attempt on an
    /// unknown id names the id only).
    #[must_use]
    pub fn key(mut self, id: KeyId, environment: Option<Environment>) -> Self {
        self.key_id = Some(id);
        self.environment = environment.or(self.environment);
        self
    }

    /// The environment, when no key is named (a session's, an owner's budget's).
    #[must_use]
    pub fn environment(mut self, environment: Environment) -> Self {
        self.environment = Some(environment);
        self
    }

    /// The client address the request came from.
    #[must_use]
    pub fn client(mut self, client: std::net::IpAddr) -> Self {
        self.client = Some(client.to_string());
        self
    }

    /// The request's id (e.g. `X-Request-Id`), cut to 128 characters of printable ASCII.
    #[must_use]
    pub fn request_id(mut self, id: &str) -> Self {
        let id: String = id
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(MAX_REQUEST_ID)
            .collect();
        self.request_id = (!id.is_empty()).then_some(id);
        self
    }

    /// How it ended: the HTTP status and, for a refusal, its code.
    #[must_use]
    pub fn outcome(mut self, status: u16, code: Option<&str>) -> Self {
        self.status = status;
        self.code = code.map(str::to_owned);
        self
    }

    /// One setting changed from `from` to `to`.
    #[must_use]
    pub fn change(
        mut self,
        field: impl Into<String>,
        from: Option<String>,
        to: Option<String>,
    ) -> Self {
        self.changes.push(FieldChange {
            field: field.into(),
            from,
            to,
        });
        self
    }

    /// Assigned by the log: increasing per owner, the cursor of `before`.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub(crate) fn set_seq(&mut self, seq: u64) {
        self.seq = seq;
    }

    /// When.
    pub fn at(&self) -> SystemTime {
        self.at
    }

    /// Whose keys (the owner the entry is filed under).
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Who.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// What.
    pub fn action(&self) -> AuditAction {
        self.action
    }

    /// Which key, if one.
    pub fn key_id(&self) -> Option<&KeyId> {
        self.key_id.as_ref()
    }

    /// Which environment, if known.
    pub fn environment_of(&self) -> Option<Environment> {
        self.environment
    }

    /// From where.
    pub fn client_address(&self) -> Option<&str> {
        self.client.as_deref()
    }

    /// The request's id.
    pub fn request(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// The HTTP status of the answer (2xx: done; otherwise refused).
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The refusal's code.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// The settings changed.
    pub fn changes(&self) -> &[FieldChange] {
        &self.changes
    }
}
