//! The FORG / ForgeOS presets in one place: the [`ForgScope`] vocabulary, the
//! `X-ForgeOS-API-Key` header and the standard / AI / auth rate classes. The three key
//! families are [`KeyFamily::FORG_LIVE`](crate::key::KeyFamily::FORG_LIVE),
//! [`FORG_TEST`](crate::key::KeyFamily::FORG_TEST) and [`FOS`](crate::key::KeyFamily::FOS),
//! beside the type they are of.
//!
//! The rest of the crate is generic over all of them; these are what the two product
//! documents define, and what the defaults use (built-in families, both key headers, the
//! FORG JSON error bodies of [`DefaultRenderer`](crate::reject::DefaultRenderer)).
//!
//! ```
//! use tower_api_key::forg::{self, ForgScope};
//! use tower_api_key::key::KeyFamily;
//! use tower_api_key::scope::ScopeSet;
//!
//! let granted: ScopeSet<ForgScope> = "read:sessions read:reports".parse().unwrap();
//! assert!(granted.contains(ForgScope::ReadReports));
//! assert_eq!(KeyFamily::FORG_LIVE.prefix(), "forg_live_");
//! assert_eq!(forg::AI.quota().requests().get(), 10);
//! assert_eq!(forg::X_FORGEOS_API_KEY, "x-forgeos-api-key");
//! ```

use std::sync::Arc;

use http::HeaderName;

use crate::credential::{CredentialSource, CredentialSources};
use crate::key::KeyFamilies;
use crate::rate_limit::{ClassName, Quota, RateClass};
use crate::session::{CsrfSecret, Sessions};
use crate::store::{KeyPolicy, ManageKeys};

crate::scopes! {
    /// The FORG API scopes .
    pub enum ForgScope {
        /// Read sessions and events.
        ReadSessions = "read:sessions",
        /// Read rules and budgets.
        ReadRules = "read:rules",
        /// Create, update, delete rules and budgets.
        WriteRules = "write:rules",
        /// Access usage and cost reports.
        ReadReports = "read:reports",
        /// List and read user records.
        ReadUsers = "read:users",
        /// Update user settings, limits.
        WriteUsers = "write:users",
        /// Register and delete webhooks.
        ManageWebhooks = "manage:webhooks",
        /// Full access to all resources (org admins only).
        Admin = "admin",
    }
    admin = Admin;
}

/// The ForgeOS API-key header, `x-forgeos-api-key`.
pub const X_FORGEOS_API_KEY: HeaderName = HeaderName::from_static("x-forgeos-api-key");

/// Where FORG and ForgeOS keys are read from: `Authorization: Bearer` and
/// [`X-ForgeOS-API-Key`](X_FORGEOS_API_KEY) (two at once is an ambiguous request, 400).
/// Give it to [`AuthLayer::sources`](crate::AuthLayer::sources); the crate's default is
/// `Bearer` only.
pub fn credential_sources() -> CredentialSources {
    CredentialSources::new([
        CredentialSource::Bearer,
        CredentialSource::Header(X_FORGEOS_API_KEY),
    ])
    .expect("two distinct headers")
}

/// The key policy of the FORG and ForgeOS documents: `forg_live_`, `forg_test_` and `fos_`
/// keys ([`KeyFamilies::builtin`]), at most 10 active keys per owner ("Maximum 10 keys per
/// user"). The crate's [`KeyPolicy::default`] accepts no family until one is registered.
pub fn key_policy() -> KeyPolicy {
    KeyPolicy::default().families(KeyFamilies::builtin())
}

/// The FORG session cookies' names: `forge_session` and `forge_csrf`.
pub const SESSION_COOKIES: (&str, &str) = ("forge_session", "forge_csrf");

/// Browser sessions as ForgeOS names them: [`Sessions::new`] with the
/// [`SESSION_COOKIES`] names (the crate's defaults are `session` and `csrf_token`).
pub fn sessions<St: ManageKeys>(store: Arc<St>, secret: CsrfSecret) -> Sessions<St> {
    Sessions::new(store, secret)
        .cookie_names(SESSION_COOKIES.0, SESSION_COOKIES.1)
        .expect("valid cookie names")
}

/// Standard API routes: 100 requests per minute per key.
pub const STANDARD: RateClass = RateClass::per_key(
    ClassName::from_static("standard"),
    Quota::per_minute_const(100),
);
/// AI routes (reviews, scoring): 10 requests per minute per key.
pub const AI: RateClass =
    RateClass::per_key(ClassName::from_static("ai"), Quota::per_minute_const(10));
/// Authentication routes (login, register): 5 requests per minute per client address.
pub const AUTH: RateClass =
    RateClass::per_client_ip(ClassName::from_static("auth"), Quota::per_minute_const(5));
