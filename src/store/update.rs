//! [`KeyUpdate`]: the settings of a key changed in place, and the rules every store's
//! update keeps (scopes only narrow, the expiry stays within the policy's lifetime).

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::{AllowedNetworks, KeyPolicy, KeyRecord, ManageError, Metadata};
use crate::quota::{ClassName, Quota};
use crate::scope::{Scope, ScopeSet};

/// What [`ManageKeys::update`](super::ManageKeys::update) changes: each setting left unset
/// keeps its value. The key's secret, owner, family and lineage never change in place.
///
/// ```
/// use std::time::Duration;
/// use tower_api_key::forg::ForgScope;
/// use tower_api_key::key::KeyFamily;
/// use tower_api_key::store::{KeyUpdate, ManageError, ManageKeys, MemoryKeyStore, NewKey};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryKeyStore::<ForgScope>::new().with_policy(tower_api_key::forg::key_policy());
/// let issued = store
///     .issue(NewKey::new("org_1", "ci", &KeyFamily::FORG_TEST)
///         .scopes([ForgScope::ReadRules, ForgScope::WriteRules]))
///     .await
///     .unwrap();
/// let id = issued.record().id();
/// let version = issued.record().version();
/// let narrowed = store
///     .update(id, KeyUpdate::new().name("ci (read only)").scopes(ForgScope::ReadRules).if_version(version))
///     .await
///     .unwrap();
/// assert_eq!(narrowed.name(), "ci (read only)");
/// assert_eq!(narrowed.version(), version + 1);
/// // The version read before is stale now; and scopes never widen in place.
/// let stale = store.update(id, KeyUpdate::new().name("x").if_version(version)).await;
/// assert!(matches!(stale, Err(ManageError::VersionMismatch { .. })));
/// let wider = store.update(id, KeyUpdate::new().scopes([ForgScope::ReadRules, ForgScope::WriteRules])).await;
/// assert!(matches!(wider, Err(ManageError::Invalid { field: "scopes", .. })));
/// # });
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyUpdate<S: Scope> {
    name: Option<String>,
    scopes: Option<ScopeSet<S>>,
    expires_at: Option<Option<SystemTime>>,
    metadata: Option<Metadata>,
    allowed_networks: Option<AllowedNetworks>,
    rate_limits: Option<BTreeMap<ClassName, Quota>>,
    // The class quotas overrides are lowered from (`lowering_rate_limits`).
    offered: Option<BTreeMap<ClassName, Quota>>,
    if_version: Option<u64>,
}

impl<S: Scope> Default for KeyUpdate<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Scope> KeyUpdate<S> {
    /// Changes nothing yet.
    pub fn new() -> Self {
        Self {
            name: None,
            scopes: None,
            expires_at: None,
            metadata: None,
            allowed_networks: None,
            rate_limits: None,
            offered: None,
            if_version: None,
        }
    }

    /// Renames the key.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Narrows the key's scopes: `scopes` must be a subset of the current ones
    /// ([`ManageError::Invalid`] naming `scopes` otherwise; widening is a new key).
    #[must_use]
    pub fn scopes(mut self, scopes: impl Into<ScopeSet<S>>) -> Self {
        self.scopes = Some(scopes.into());
        self
    }

    /// Sets the expiry (`None`: none, or the latest the policy allows). A time past the
    /// policy's [maximum lifetime](KeyPolicy::max_lifetime), counted from the key's
    /// creation, is cut to it, as when issuing.
    #[must_use]
    pub fn expires_at(mut self, at: Option<SystemTime>) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// Replaces the metadata.
    #[must_use]
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Replaces the networks the key may be used from.
    #[must_use]
    pub fn allowed_networks(mut self, networks: AllowedNetworks) -> Self {
        self.allowed_networks = Some(networks);
        self
    }

    /// Replaces the per-class rate-limit overrides, whatever they were (an operator's
    /// change).
    #[must_use]
    pub fn rate_limits(mut self, rate_limits: BTreeMap<ClassName, Quota>) -> Self {
        self.rate_limits = Some(rate_limits);
        self.offered = None;
        self
    }

    /// Replaces the overrides only if that lowers the key's limits (a customer's change,
    /// as the management API makes it): each quota [at most](Quota::at_most) the key's
    /// current one for its class (its override, or the class's quota in `offered`), and
    /// an override removed only when the class's quota is no higher. Checked against the
    /// key as the store holds it when it writes; [`ManageError::Invalid`] naming
    /// `rate_limits` otherwise.
    #[must_use]
    pub fn lowering_rate_limits(
        mut self,
        rate_limits: BTreeMap<ClassName, Quota>,
        offered: BTreeMap<ClassName, Quota>,
    ) -> Self {
        self.rate_limits = Some(rate_limits);
        self.offered = Some(offered);
        self
    }

    /// Applies the update only if the key is at `version` ([`KeyRecord::version`]; an
    /// HTTP `If-Match`); otherwise [`ManageError::VersionMismatch`]. Without it, an update
    /// that meets a concurrent change reads the key again and re-checks its rules.
    #[must_use]
    pub fn if_version(mut self, version: u64) -> Self {
        self.if_version = Some(version);
        self
    }

    /// The version the update is conditional on.
    pub fn required_version(&self) -> Option<u64> {
        self.if_version
    }

    /// `current` with the update applied, at `now` under `policy`.
    ///
    /// # Errors
    /// [`ManageError::Invalid`] for scopes that widen or an expiry not in the future.
    pub(crate) fn apply(
        &self,
        current: &KeyRecord<S>,
        policy: &KeyPolicy,
        now: SystemTime,
    ) -> Result<KeyRecord<S>, ManageError> {
        let mut changed = current.clone();
        if let Some(name) = &self.name {
            changed.set_name(name.as_str());
        }
        if let Some(scopes) = self.scopes {
            if !current.scopes().contains_all(scopes) {
                return Err(ManageError::Invalid {
                    field: "scopes",
                    reason: "scopes can only be narrowed in place; a wider key is a new key",
                });
            }
            changed.set_scopes(scopes);
        }
        if let Some(requested) = self.expires_at {
            let at = policy.expiry(current.created_at(), requested);
            if at.is_some_and(|at| at <= now) {
                return Err(ManageError::Invalid {
                    field: "expires_at",
                    reason: "the expiry must be in the future, within the key's maximum lifetime",
                });
            }
            changed.set_expires_at(at);
        }
        if let Some(metadata) = &self.metadata {
            changed.set_metadata(metadata.clone());
        }
        if let Some(networks) = &self.allowed_networks {
            changed.set_allowed_networks(networks.clone());
        }
        if let Some(rate_limits) = &self.rate_limits {
            if let Some(offered) = &self.offered {
                lowers_only(current.rate_limits(), rate_limits, offered)?;
            }
            changed.set_rate_limits(rate_limits.clone());
        }
        Ok(changed)
    }
}

/// Whether overrides `new` in place of `current` only lower the key's limits, where the
/// classes' own quotas are `offered`.
fn lowers_only(
    current: &BTreeMap<ClassName, Quota>,
    new: &BTreeMap<ClassName, Quota>,
    offered: &BTreeMap<ClassName, Quota>,
) -> Result<(), ManageError> {
    let invalid = |reason| ManageError::Invalid {
        field: "rate_limits",
        reason,
    };
    for (class, quota) in new {
        let ceiling = current
            .get(class)
            .or_else(|| offered.get(class))
            .ok_or_else(|| invalid("a class named there has no limit that can be set here"))?;
        if !quota.at_most(ceiling) {
            return Err(invalid("an override can only lower the key's limit"));
        }
    }
    for (class, old) in current {
        let lowered =
            new.contains_key(class) || offered.get(class).is_some_and(|quota| quota.at_most(old));
        if !lowered {
            return Err(invalid(
                "removing this override would raise the key's limit",
            ));
        }
    }
    Ok(())
}

/// `record` one version on: what a store writes for any change but a use.
pub(crate) fn next_version<S: Scope>(mut record: KeyRecord<S>) -> KeyRecord<S> {
    record.set_version(record.version().saturating_add(1));
    record
}

/// `current` with `from`'s settings (what [`KeyUpdate`] can change), one version on:
/// what an in-process store writes for [`replace`](super::ManageKeys::replace), keeping
/// the state it holds (revocation, last use) as it is now.
pub(crate) fn with_settings_of<S: Scope>(
    current: &KeyRecord<S>,
    from: &KeyRecord<S>,
) -> KeyRecord<S> {
    let mut changed = current.clone();
    changed.set_name(from.name());
    changed.set_scopes(from.scopes());
    changed.set_expires_at(from.expires_at());
    changed.set_metadata(from.metadata().clone());
    changed.set_allowed_networks(from.allowed_networks().clone());
    changed.set_rate_limits(from.rate_limits().clone());
    next_version(changed)
}
