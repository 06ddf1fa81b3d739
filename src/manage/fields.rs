//! [`Fields`]: a body's fields checked one by one, each wrong one named in the 422 with
//! what is expected, never with the value sent. Creating and updating a key share them.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::SystemTime;

use super::error::ApiError;
use super::views::QuotaView;
use crate::quota::{ClassName, Quota};
use crate::scope::{Scope, ScopeSet};
use crate::store::{is_plain_text, AllowedNetworks, Metadata};
use crate::support::timestamp::Rfc3339;

/// What a key's name must be.
pub(super) const NAME_RULE: &str = "1 to 100 characters, no control, bidi or invisible characters";

/// The fields found wrong so far.
#[derive(Default)]
pub(super) struct Fields(Vec<(String, String)>);

impl Fields {
    pub(super) fn wrong(&mut self, field: &str, expected: impl Into<String>) {
        self.0.push((field.to_owned(), expected.into()));
    }

    /// A name, trimmed.
    pub(super) fn name(&mut self, name: &str) -> Option<String> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 || !is_plain_text(name) {
            self.wrong("name", NAME_RULE);
            return None;
        }
        Some(name.to_owned())
    }

    /// Scope names, each known and without blanks.
    pub(super) fn scopes<S: Scope>(&mut self, names: &[String]) -> ScopeSet<S> {
        let mut scopes = ScopeSet::<S>::empty();
        for (index, name) in names.iter().enumerate() {
            match name.parse::<ScopeSet<S>>() {
                Ok(parsed) if !name.trim().is_empty() && !name.contains(char::is_whitespace) => {
                    scopes = scopes.union(parsed);
                }
                // Never the value sent: which item, and what is expected.
                _ => self.wrong(
                    "scopes",
                    format!("item {index} is not a known scope name (see the documented scopes)"),
                ),
            }
        }
        scopes
    }

    /// An RFC 3339 time after `now`. The latest accepted is 9999-12-31T23:59:59Z, the last
    /// second RFC 3339 writes: later is 422, never an overflow.
    pub(super) fn expires_at(&mut self, text: &str, now: SystemTime) -> Option<SystemTime> {
        match Rfc3339::parse(text) {
            Some(at) if at > now => Some(at),
            _ => {
                self.wrong(
                    "expires_at",
                    "an RFC 3339 time in the future, at most 9999-12-31T23:59:59Z",
                );
                None
            }
        }
    }

    pub(super) fn metadata(&mut self, metadata: BTreeMap<String, String>) -> Option<Metadata> {
        Metadata::try_from(metadata)
            .map_err(|error| self.wrong("metadata", error.to_string()))
            .ok()
    }

    /// At most 32 CIDR networks or addresses.
    pub(super) fn networks(&mut self, networks: &[String]) -> Option<AllowedNetworks> {
        if networks.len() > 32 {
            self.wrong("allowed_networks", "at most 32 networks");
            return None;
        }
        let bad = networks
            .iter()
            .position(|network| AllowedNetworks::new([network]).is_err());
        match bad {
            Some(index) => {
                self.wrong(
                    "allowed_networks",
                    format!("item {index} is not a CIDR network (10.0.0.0/8) or an address"),
                );
                None
            }
            None => AllowedNetworks::new(networks).ok(),
        }
    }

    /// Quotas by class name, each name valid and each number from 1.
    pub(super) fn rate_limits(
        &mut self,
        limits: &BTreeMap<String, QuotaView>,
    ) -> Option<BTreeMap<ClassName, Quota>> {
        let mut parsed = BTreeMap::new();
        for (name, quota) in limits {
            let Ok(class) = ClassName::new(name.clone()) else {
                self.wrong(
                    "rate_limits",
                    "a class name is 1 to 32 characters of a-z 0-9 _ -",
                );
                return None;
            };
            let (Some(requests), Some(window)) = (
                NonZeroU32::new(quota.requests),
                NonZeroU32::new(quota.window_secs),
            ) else {
                self.wrong(
                    "rate_limits",
                    "requests and window_secs are whole numbers from 1",
                );
                return None;
            };
            parsed.insert(class, Quota::new(requests, window));
        }
        Some(parsed)
    }

    /// `Ok` when every field was right; otherwise the 422 naming each wrong one.
    pub(super) fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(self.0))
        }
    }
}
