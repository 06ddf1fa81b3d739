//! [`Environment`]: live or test, the deployment a key (and so every principal, counter
//! and record made from it) belongs to. Carried by the key's family, read by the
//! authentication, the management API, rate limits, spend caps and plans.
//!
//! ```
//! use tower_api_key::key::KeyFamily;
//! use tower_api_key::Environment;
//!
//! assert_eq!(KeyFamily::FORG_TEST.environment(), Environment::Test);
//! assert_eq!(Environment::Live.to_string(), "live");
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

/// Which deployment a key belongs to. Carried by the key's family, so a test key can never
/// be taken for a live one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "axum", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// Production data (`forg_live_`, `fos_`).
    Live,
    /// Sandbox data (`forg_test_`).
    Test,
}

impl Environment {
    /// Both, live first (the order of per-environment tables).
    pub const ALL: [Environment; 2] = [Environment::Live, Environment::Test];

    /// `"live"` or `"test"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Environment::Live => "live",
            Environment::Test => "test",
        }
    }

    /// 0 or 1: an index into per-environment tables (`[T; 2]`), so they need no hashing.
    pub(crate) const fn slot(self) -> usize {
        match self {
            Environment::Live => 0,
            Environment::Test => 1,
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Environment;

    #[test]
    fn all_is_in_slot_order() {
        for (index, environment) in Environment::ALL.into_iter().enumerate() {
            assert_eq!(environment.slot(), index);
        }
    }
}
