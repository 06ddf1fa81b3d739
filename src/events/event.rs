//! [`KeyEvent`]: something happened to a key or a budget that its owner wants to hear of.

use std::time::SystemTime;

use serde::Serialize;

use crate::audit::{Actor, AuditAction, AuditEntry};
use crate::key::Environment;
use crate::store::{KeyId, KeyRecord};
use crate::support::timestamp::Rfc3339;

/// The key an event is about, as its owner may see it (never the key or its digest).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyRef {
    /// The key's id.
    pub id: KeyId,
    /// Its name.
    pub name: String,
    /// Its environment.
    pub environment: Environment,
    /// Its prefix and last four characters.
    pub hint: String,
}

impl KeyRef {
    /// The public parts of `record`.
    pub fn of<S: crate::scope::Scope>(record: &KeyRecord<S>) -> Self {
        Self {
            id: record.id().clone(),
            name: record.name().to_owned(),
            environment: record.environment(),
            hint: record.hint(),
        }
    }
}

/// What happened (the event's `type` on the wire, and its `data`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "data")]
#[non_exhaustive]
pub enum KeyEventKind {
    /// `key.issued`.
    #[serde(rename = "key.issued")]
    Issued {
        /// The new key.
        key: KeyRef,
    },
    /// `key.updated`: settings changed in place (their names).
    #[serde(rename = "key.updated")]
    Updated {
        /// The key.
        key: KeyRef,
        /// The settings that changed.
        fields: Vec<String>,
    },
    /// `key.rotated`: a successor was issued.
    #[serde(rename = "key.rotated")]
    Rotated {
        /// The old key.
        key: KeyRef,
        /// The successor's id.
        successor: KeyId,
    },
    /// `key.revoked`.
    #[serde(rename = "key.revoked")]
    Revoked {
        /// The key.
        key: KeyRef,
    },
    /// `key.expiring`: the key expires within the scan's notice.
    #[serde(rename = "key.expiring")]
    Expiring {
        /// The key.
        key: KeyRef,
        /// When it expires.
        #[serde(serialize_with = "crate::support::timestamp::rfc3339")]
        expires_at: SystemTime,
    },
    /// `key.rotation_due`: the key is older than the policy's rotation age.
    #[serde(rename = "key.rotation_due")]
    RotationDue {
        /// The key.
        key: KeyRef,
        /// When it was issued.
        #[serde(serialize_with = "crate::support::timestamp::rfc3339")]
        created_at: SystemTime,
    },
    /// `budget.threshold`: spend crossed `percent` of a cap in its current period.
    #[serde(rename = "budget.threshold")]
    BudgetCrossed {
        /// The budget's environment.
        environment: Environment,
        /// The key, when budgets are per key (its lineage).
        key_id: Option<KeyId>,
        /// The threshold crossed (e.g. 80, 100).
        percent: u8,
        /// Spent so far in the period.
        spent: u64,
        /// The cap.
        cap: u64,
    },
    /// `rate_limit.exceeded`: a key was refused by a rate limit repeatedly.
    #[serde(rename = "rate_limit.exceeded")]
    RateLimited {
        /// The key.
        key_id: KeyId,
        /// The rate class.
        class: String,
        /// Refusals counted in the window.
        refusals: u32,
    },
    /// `key.leaked`: reported by a secret scanner; the key was revoked or disabled.
    #[serde(rename = "key.leaked")]
    Leaked {
        /// The key.
        key: KeyRef,
        /// Where it was found, as the report says.
        url: Option<String>,
        /// Which scanner found it.
        source: Option<String>,
        /// `revoked` or `disabled`.
        action: &'static str,
    },
}

impl KeyEventKind {
    /// The wire type, `key.issued` and so on.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Issued { .. } => "key.issued",
            Self::Updated { .. } => "key.updated",
            Self::Rotated { .. } => "key.rotated",
            Self::Revoked { .. } => "key.revoked",
            Self::Expiring { .. } => "key.expiring",
            Self::RotationDue { .. } => "key.rotation_due",
            Self::BudgetCrossed { .. } => "budget.threshold",
            Self::RateLimited { .. } => "rate_limit.exceeded",
            Self::Leaked { .. } => "key.leaked",
        }
    }

    /// Every wire type, for subscriptions.
    pub const NAMES: [&'static str; 9] = [
        "key.issued",
        "key.updated",
        "key.rotated",
        "key.revoked",
        "key.expiring",
        "key.rotation_due",
        "budget.threshold",
        "rate_limit.exceeded",
        "key.leaked",
    ];

    fn key_id(&self) -> Option<&KeyId> {
        match self {
            Self::Issued { key }
            | Self::Updated { key, .. }
            | Self::Rotated { key, .. }
            | Self::Revoked { key }
            | Self::Expiring { key, .. }
            | Self::RotationDue { key, .. }
            | Self::Leaked { key, .. } => Some(&key.id),
            Self::BudgetCrossed { key_id, .. } => key_id.as_ref(),
            Self::RateLimited { key_id, .. } => Some(key_id),
        }
    }

    fn environment(&self) -> Option<Environment> {
        match self {
            Self::Issued { key }
            | Self::Updated { key, .. }
            | Self::Rotated { key, .. }
            | Self::Revoked { key }
            | Self::Expiring { key, .. }
            | Self::RotationDue { key, .. }
            | Self::Leaked { key, .. } => Some(key.environment),
            Self::BudgetCrossed { environment, .. } => Some(*environment),
            Self::RateLimited { .. } => None,
        }
    }
}

/// One event: an id (the webhook's `webhook-id`: the same on every retry), when, whose,
/// what. Its JSON (`to_json`) is the webhook's body: `{"type", "timestamp", "data"}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyEvent {
    id: String,
    at: SystemTime,
    owner: String,
    kind: KeyEventKind,
}

impl KeyEvent {
    /// `kind` for `owner` at `at`, with a fresh id (`evt_` and 24 hex digits).
    ///
    /// # Errors
    /// When the OS has no randomness.
    pub fn new(
        at: SystemTime,
        owner: impl Into<String>,
        kind: KeyEventKind,
    ) -> Result<Self, crate::key::GenerateError> {
        let id = KeyId::generate()?;
        let id = format!("evt_{}", id.as_str().trim_start_matches("key_"));
        Ok(Self::with_id(id, at, owner, kind))
    }

    /// The same with a given id (an event read back from an outbox).
    pub fn with_id(
        id: impl Into<String>,
        at: SystemTime,
        owner: impl Into<String>,
        kind: KeyEventKind,
    ) -> Self {
        Self {
            id: id.into(),
            at,
            owner: owner.into(),
            kind,
        }
    }

    /// The id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// When.
    pub fn at(&self) -> SystemTime {
        self.at
    }

    /// Whose.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// What.
    pub fn kind(&self) -> &KeyEventKind {
        &self.kind
    }

    /// The webhook body: `{"type": …, "timestamp": RFC 3339, "data": {…}}`.
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Body<'a> {
            timestamp: Rfc3339,
            #[serde(flatten)]
            kind: &'a KeyEventKind,
        }
        serde_json::to_string(&Body {
            timestamp: Rfc3339(self.at),
            kind: &self.kind,
        })
        .unwrap_or_default()
    }

    /// The audit entry of an event the management API did not record itself (an event
    /// that happened outside a management request: a crossing, a scan, a leak).
    pub fn audit_entry(&self) -> Option<AuditEntry> {
        let action = match &self.kind {
            KeyEventKind::Expiring { .. }
            | KeyEventKind::RotationDue { .. }
            | KeyEventKind::BudgetCrossed { .. }
            | KeyEventKind::RateLimited { .. } => AuditAction::Notified,
            KeyEventKind::Leaked { .. } => AuditAction::KeyLeaked,
            _ => return None,
        };
        let mut entry = AuditEntry::new(self.at, &self.owner, Actor::System, action).change(
            "event",
            None,
            Some(self.kind.name().to_owned()),
        );
        if let KeyEventKind::Leaked { action, .. } = &self.kind {
            entry = entry.change("status", None, Some((*action).to_owned()));
        }
        if let Some(id) = self.kind.key_id() {
            entry = entry.key(id.clone(), self.kind.environment());
        } else if let Some(environment) = self.kind.environment() {
            entry = entry.environment(environment);
        }
        Some(entry)
    }
}
