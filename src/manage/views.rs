//! The management API's bodies as types: what the handlers parse and write, and what the
//! OpenAPI document's schemas are derived from (so the two cannot drift).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::activity::LoggedRequest;
use crate::key::Environment;
use crate::store::{IssuedKey as Issued, KeyPolicy, KeyRecord, KeyStatus};
use crate::support::timestamp::Rfc3339;

/// The longest rotation grace period, 30 days.
pub(crate) const MAX_GRACE_SECONDS: u64 = 30 * 86_400;

/// What a client sees of a record: never the key, never its digest.
#[derive(Serialize, ToSchema)]
pub(crate) struct Key {
    id: String,
    name: String,
    prefix: String,
    /// The prefix and the last 4 characters.
    hint: String,
    environment: Environment,
    scopes: Vec<String>,
    status: KeyStatus,
    #[schema(value_type = String, format = DateTime)]
    created_at: Rfc3339,
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<Rfc3339>,
    #[schema(value_type = Option<String>, format = DateTime)]
    revoked_at: Option<Rfc3339>,
    #[schema(value_type = Option<String>, format = DateTime)]
    last_used_at: Option<Rfc3339>,
    /// Active and older than the store's rotation age (e.g. 90 days): rotate it.
    rotation_due: bool,
    metadata: BTreeMap<String, String>,
    /// The networks (CIDR) the key may be used from; empty: everywhere.
    allowed_networks: Vec<String>,
    /// The key's own quotas per rate-limit class, where they override the class's.
    rate_limits: BTreeMap<String, QuotaView>,
    /// The key's version as an entity tag (also the `ETag` header of a single key): send
    /// it back in `If-Match` to update only what you read. It changes with every update,
    /// revocation, disable or enable, not with a use or the passing of time.
    #[schema(example = "\"3\"")]
    etag: String,
}

/// A quota: `requests` per `window_secs` seconds.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Quota)]
pub(crate) struct QuotaView {
    #[schema(minimum = 1, maximum = 4_294_967_295_u64)]
    pub(crate) requests: u32,
    #[schema(minimum = 1, maximum = 4_294_967_295_u64)]
    pub(crate) window_secs: u32,
}

/// The entity tag of `record`'s version: strong, quoted.
pub(crate) fn etag<S: crate::scope::Scope>(record: &KeyRecord<S>) -> String {
    format!("\"{}\"", record.version())
}

impl Key {
    pub(crate) fn of<S: crate::scope::Scope>(record: &KeyRecord<S>, policy: &KeyPolicy) -> Self {
        let now = policy.now();
        Self {
            id: record.id().as_str().to_owned(),
            name: record.name().to_owned(),
            prefix: record.prefix().to_owned(),
            hint: record.hint(),
            environment: record.environment(),
            scopes: record
                .scopes()
                .iter()
                .map(|s| s.as_str().to_owned())
                .collect(),
            status: record.status_at(now),
            created_at: Rfc3339(record.created_at()),
            expires_at: record.expires_at().map(Rfc3339),
            revoked_at: record.revoked_at().map(Rfc3339),
            last_used_at: record.last_used_at().map(Rfc3339),
            rotation_due: policy.rotation_due(record, now),
            metadata: record
                .metadata()
                .iter()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect(),
            allowed_networks: record.allowed_networks().clone().into(),
            rate_limits: record
                .rate_limits()
                .iter()
                .map(|(class, quota)| {
                    let view = QuotaView {
                        requests: quota.requests().get(),
                        window_secs: u32::try_from(quota.window().as_secs()).unwrap_or(u32::MAX),
                    };
                    (class.as_str().to_owned(), view)
                })
                .collect(),
            etag: etag(record),
        }
    }
}

/// A key just issued or rotated.
#[derive(Serialize, ToSchema)]
pub(crate) struct IssuedKey {
    /// The plaintext key: shown once, never again.
    key: String,
    record: Key,
}

impl IssuedKey {
    pub(crate) fn of<S: crate::scope::Scope>(issued: &Issued<S>, policy: &KeyPolicy) -> Self {
        Self {
            key: issued.key().expose_secret().to_owned(),
            record: Key::of(issued.record(), policy),
        }
    }
}

/// One key.
#[derive(Serialize, ToSchema)]
pub(crate) struct KeyData {
    pub(crate) data: Key,
}

/// The caller's keys, newest first.
#[derive(Serialize, ToSchema)]
pub(crate) struct KeyList {
    pub(crate) data: Vec<Key>,
}

/// A page of a key's recent outcomes, newest first.
#[derive(Serialize, ToSchema)]
pub(crate) struct ActivityPage {
    pub(crate) data: Vec<LoggedRequest>,
    /// The `before` of the next page; absent on the last.
    pub(crate) next_before: Option<u64>,
}

/// A key's (or an owner's) use per UTC day, the last 30 days, oldest first.
#[derive(Serialize, ToSchema)]
pub(crate) struct UsagePage {
    pub(crate) data: Vec<crate::activity::UsageDay>,
}

/// `POST /keys`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewKey)]
pub(crate) struct CreateKey {
    #[schema(min_length = 1, max_length = 100)]
    pub(crate) name: String,
    /// `live` or `test` (checked by the handler, so that the 422 names it).
    #[schema(value_type = Environment)]
    pub(crate) environment: String,
    #[serde(default)]
    pub(crate) scopes: Vec<String>,
    /// RFC 3339, **in the future** (a time in the past is 422), at most
    /// 9999-12-31T23:59:59Z; a later time than the store's maximum key lifetime allows is cut to it
    /// (parsed by the handler, so that the 422 says what is expected).
    #[schema(value_type = Option<String>, format = DateTime, example = "2030-01-01T00:00:00Z")]
    pub(crate) expires_at: Option<String>,
    #[serde(default)]
    pub(crate) metadata: BTreeMap<String, String>,
}

/// `PATCH /keys/{id}`: each field present is changed, each absent one kept.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = KeyUpdate)]
pub(crate) struct UpdateKey {
    #[schema(min_length = 1, max_length = 100)]
    pub(crate) name: Option<String>,
    /// A subset of the key's current scopes (and of the caller's): scopes only narrow in
    /// place; a wider key is a new key.
    pub(crate) scopes: Option<Vec<String>>,
    /// RFC 3339, in the future, at most 9999-12-31T23:59:59Z; `null` removes the expiry.
    /// A time past the store's maximum key lifetime, counted from the key's creation, is
    /// cut to it (and `null` means that time then).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, format = DateTime, nullable, example = "2030-01-01T00:00:00Z")]
    pub(crate) expires_at: Option<Option<String>>,
    pub(crate) metadata: Option<BTreeMap<String, String>>,
    /// At most 32 CIDR networks or addresses; empty: everywhere.
    #[schema(max_items = 32)]
    pub(crate) allowed_networks: Option<Vec<String>>,
    /// The key's own quota per rate-limit class; replaces every override. Only lowers the
    /// key's limits: each quota at most the key's current one for that class (its
    /// override, or the class's quota this API offers), and an override is removed only
    /// when the class's quota is no higher.
    pub(crate) rate_limits: Option<BTreeMap<String, QuotaView>>,
}

/// A field that may be `null`: `Some(None)` when it is, `None` when it is absent.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// `POST /keys/{id}/rotate` (the body is optional).
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Rotation)]
pub(crate) struct RotateKey {
    /// How long the old key keeps working, at most 30 days. A JSON Schema integer: `501`
    /// and `501.0` are the same.
    #[schema(minimum = 0, maximum = 2_592_000)]
    #[serde(default, deserialize_with = "whole_number")]
    pub(crate) grace_seconds: Option<u64>,
}

/// A JSON Schema `integer`: a number with no fractional part, however it is written (`5`,
/// `5.0`, `5e0`), as client generators send it.
fn whole_number<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u64>, D::Error> {
    use serde::de::{Error, Unexpected};
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    if let Some(whole) = number.as_u64() {
        return Ok(Some(whole));
    }
    match number.as_f64() {
        // 2^53: where every whole f64 is still exact.
        Some(f) if f.fract() == 0.0 && (0.0..=9_007_199_254_740_992.0).contains(&f) =>
        {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Ok(Some(f as u64))
        }
        _ => Err(D::Error::invalid_value(
            Unexpected::Other("number"),
            &"a whole number",
        )),
    }
}

/// `GET /keys/{id}/activity`'s query.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct Page {
    /// At most this many entries (1 to 100, default 50).
    #[param(minimum = 1, maximum = 100)]
    pub(crate) limit: Option<usize>,
    /// A `seq` from `next_before`: entries older than it.
    pub(crate) before: Option<u64>,
}

/// `GET /billing/spend`: the caller's owner's budgets in their current periods.
#[derive(Serialize, ToSchema)]
pub(crate) struct SpendPage {
    pub(crate) data: Spend,
}

/// An owner's budgets.
#[derive(Serialize, ToSchema)]
pub(crate) struct Spend {
    pub(crate) owner: String,
    /// One per environment (budgets per owner) or per active key (budgets per key);
    /// uncapped principals are not listed.
    pub(crate) budgets: Vec<BudgetView>,
}

/// One budget in its current period, in the application's cost units.
#[derive(Serialize, ToSchema)]
#[schema(as = Budget)]
pub(crate) struct BudgetView {
    environment: Environment,
    /// `owner`: the owner's budget of the environment, which every credential spends from
    /// when budgets are per owner, and browser sessions spend from when they are per key;
    /// `key`: one key's (and the keys rotated from it).
    #[schema(value_type = String, example = "owner")]
    per: &'static str,
    /// The key, when budgets are per key.
    key_id: Option<String>,
    /// The key's name, when budgets are per key.
    key_name: Option<String>,
    /// `hour`, `day`, `month`, or `lifetime` (credits that never reset).
    #[schema(value_type = String, example = "month")]
    period: &'static str,
    spent: u64,
    cap: u64,
    remaining: u64,
    /// The period's first second (absent for credits).
    #[schema(value_type = Option<String>, format = DateTime)]
    period_start: Option<Rfc3339>,
    /// When the budget is whole again (absent for credits, which never are).
    #[schema(value_type = Option<String>, format = DateTime)]
    period_end: Option<Rfc3339>,
}

impl BudgetView {
    pub(crate) fn of(status: &crate::usage::spend::report::BudgetStatus) -> Self {
        let key = status.key.as_ref();
        Self {
            environment: status.environment,
            per: match status.per {
                crate::usage::BudgetPer::Owner => "owner",
                crate::usage::BudgetPer::Key => "key",
            },
            key_id: key.map(|principal| principal.key_id().as_str().to_owned()),
            key_name: key.map(|principal| principal.name().to_owned()),
            period: status.period.as_str(),
            spent: status.spent,
            cap: status.cap,
            remaining: status.cap.saturating_sub(status.spent),
            period_start: status.window.map(|(start, _)| Rfc3339(start)),
            period_end: status.window.map(|(_, end)| Rfc3339(end)),
        }
    }
}

/// `GET /audit`'s query.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditParams {
    /// At most this many entries (1 to 100, default 50).
    #[param(minimum = 1, maximum = 100)]
    pub(crate) limit: Option<usize>,
    /// A `seq` from `next_before`: entries older than it.
    pub(crate) before: Option<u64>,
    /// Entries about this key only.
    pub(crate) key_id: Option<String>,
    /// Entries of this action only (`key.issued`, `key.updated`, …).
    pub(crate) action: Option<String>,
}

/// A page of the owner's audit entries, newest first.
#[derive(Serialize, ToSchema)]
#[schema(as = AuditPage)]
pub(crate) struct AuditPageView {
    pub(crate) data: Vec<AuditEntryView>,
    /// The `before` of the next page; absent on the last.
    pub(crate) next_before: Option<u64>,
}

/// Who did what to which key, when, from where, and how it ended. Never a secret.
#[derive(Serialize, ToSchema)]
#[schema(as = AuditEntry)]
pub(crate) struct AuditEntryView {
    /// Increasing per owner: the cursor (`before`).
    pub(crate) seq: u64,
    #[schema(value_type = String, format = DateTime)]
    at: Rfc3339,
    /// `key.issued`, `key.updated`, `key.rotated`, `key.revoked`, `key.disabled`,
    /// `key.enabled`, `key.deleted`, `key.read` and `audit.read` (refused only),
    /// `credits.changed`, `caps.changed`, `trial.started`, `session.started`,
    /// `session.ended`, `key.leaked`, `owner.notified`, `webhook.added`,
    /// `webhook.removed`, `webhook.read` (refused only).
    #[schema(value_type = String, example = "key.updated")]
    action: &'static str,
    /// `key`, `session` or `system`.
    #[schema(value_type = String, example = "session")]
    actor: &'static str,
    /// The key's or session's id (absent for `system`).
    actor_id: Option<String>,
    key_id: Option<String>,
    environment: Option<Environment>,
    /// The client address.
    client: Option<String>,
    request_id: Option<String>,
    /// The answer's HTTP status: 2xx done, otherwise refused.
    status: u16,
    /// The refusal's code.
    code: Option<String>,
    /// Settings changed, each with its value before and after.
    changes: Vec<ChangeView>,
}

/// One setting changed.
#[derive(Serialize, ToSchema)]
#[schema(as = AuditChange)]
pub(crate) struct ChangeView {
    field: String,
    from: Option<String>,
    to: Option<String>,
}

impl AuditEntryView {
    pub(crate) fn of(entry: &crate::audit::AuditEntry) -> Self {
        use crate::audit::Actor;
        let (actor, actor_id) = match entry.actor() {
            Actor::Key(id) => ("key", Some(id.as_str().to_owned())),
            Actor::Session(id) => ("session", Some(id.as_str().to_owned())),
            Actor::System => ("system", None),
        };
        Self {
            seq: entry.seq(),
            at: Rfc3339(entry.at()),
            action: entry.action().as_str(),
            actor,
            actor_id,
            key_id: entry.key_id().map(|id| id.as_str().to_owned()),
            environment: entry.environment_of(),
            client: entry.client_address().map(str::to_owned),
            request_id: entry.request().map(str::to_owned),
            status: entry.status(),
            code: entry.code().map(str::to_owned),
            changes: entry
                .changes()
                .iter()
                .map(|change| ChangeView {
                    field: change.field.clone(),
                    from: change.from.clone(),
                    to: change.to.clone(),
                })
                .collect(),
        }
    }
}
