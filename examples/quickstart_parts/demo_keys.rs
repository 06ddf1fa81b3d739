//! The four keys issued at start and the AI route's budgets for them.

use tower_api_key::key::{Environment, KeyFamily};
use tower_api_key::store::{IssuedKey, ManageError, ManageKeys};
use tower_api_key::usage::Budgets;
use tower_api_key::{ForgScope, MemoryKeyStore, NewKey};

use super::OWNER;

/// The four keys issued at start.
pub struct DemoKeys {
    pub live: IssuedKey<ForgScope>,
    pub test: IssuedKey<ForgScope>,
    pub fos: IssuedKey<ForgScope>,
    /// A live key with 20 units of one-time credits.
    pub trial: IssuedKey<ForgScope>,
}

/// The trial key's credits: two reviews, never reset.
pub const TRIAL_CREDITS: u64 = 20;

impl DemoKeys {
    /// The AI route's budgets: per key, with the demo live key capped low and the trial
    /// key on credits.
    pub fn budgets(&self) -> Budgets {
        let budgets = Budgets::new()
            .default_cap(Environment::Live, 10_000)
            .default_cap(Environment::Test, 1_000);
        budgets.set_key_cap(self.live.record().id().clone(), Some(30));
        budgets.set_key_credits(self.trial.record().id().clone(), TRIAL_CREDITS);
        budgets
    }
}

/// Issues the demo keys.
pub async fn issue_demo_keys(store: &MemoryKeyStore<ForgScope>) -> Result<DemoKeys, ManageError> {
    Ok(DemoKeys {
        live: store
            .issue(
                NewKey::new(OWNER, "production dashboard", &KeyFamily::FORG_LIVE)
                    .scopes([ForgScope::ReadSessions, ForgScope::ReadReports]),
            )
            .await?,
        test: store
            .issue(
                NewKey::new(OWNER, "sandbox admin", &KeyFamily::FORG_TEST).scopes(ForgScope::Admin),
            )
            .await?,
        fos: store
            .issue(NewKey::new(OWNER, "mcp server", &KeyFamily::FOS).scopes(ForgScope::ReadRules))
            .await?,
        trial: store
            .issue(
                NewKey::new(OWNER, "trial credits", &KeyFamily::FORG_LIVE)
                    .scopes(ForgScope::ReadRules),
            )
            .await?,
    })
}
