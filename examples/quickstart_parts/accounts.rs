//! The demo's accounts: Argon2id password hashes by e-mail, checked at login (the crate
//! does not check passwords: this is the application's part).

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use dashmap::DashMap;
use tower_api_key::manage::PasswordCheck;
use tower_api_key::{ForgScope, ScopeSet};

use super::{DEMO_EMAIL, DEMO_PASSWORD, OWNER};

/// A user or agent account: its password's Argon2id hash (PHC string), its owner id and
/// the scopes its sessions get.
#[derive(Clone)]
pub struct Account {
    password_hash: String,
    pub owner: String,
    pub scopes: ScopeSet<ForgScope>,
}

/// Accounts by e-mail. The crate does not check passwords: this is the application's part.
#[derive(Clone)]
pub struct Accounts {
    by_email: Arc<DashMap<String, Account>>,
    /// Verified against when the e-mail is unknown, so timing does not tell which exist.
    decoy: Arc<str>,
}

fn hash_password(password: &str) -> Option<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).ok()?;
    let salt = SaltString::encode_b64(&salt).ok()?;
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .ok()?;
    Some(hash.to_string())
}

impl Accounts {
    /// With the demo account (owner `org_acme`, read and write on rules and sessions).
    pub fn with_demo() -> Self {
        let accounts = Self {
            by_email: Arc::default(),
            decoy: hash_password("decoy")
                .expect("the OS has randomness")
                .into(),
        };
        let scopes = [
            ForgScope::ReadSessions,
            ForgScope::ReadRules,
            ForgScope::WriteRules,
            ForgScope::ReadReports,
        ];
        accounts
            .create(DEMO_EMAIL, DEMO_PASSWORD, OWNER, scopes.into())
            .expect("a fresh table has no such account");
        accounts
    }

    /// Adds an account; `None` when the e-mail is taken.
    pub(super) fn create(
        &self,
        email: &str,
        password: &str,
        owner: &str,
        scopes: ScopeSet<ForgScope>,
    ) -> Option<()> {
        let password_hash = hash_password(password)?;
        match self.by_email.entry(email.to_ascii_lowercase()) {
            dashmap::Entry::Occupied(_) => None,
            dashmap::Entry::Vacant(slot) => {
                slot.insert(Account {
                    password_hash,
                    owner: owner.to_owned(),
                    scopes,
                });
                Some(())
            }
        }
    }

    pub(super) fn taken(&self, email: &str) -> bool {
        self.by_email.contains_key(&email.to_ascii_lowercase())
    }

    /// The account whose password this is. An unknown e-mail costs a verification too, so
    /// timing does not tell which e-mails exist.
    fn check(&self, email: &str, password: &str) -> Option<Account> {
        let account = self
            .by_email
            .get(&email.to_ascii_lowercase())
            .map(|a| a.clone());
        let stored = account
            .as_ref()
            .map_or(&*self.decoy, |a| a.password_hash.as_str());
        let verified = PasswordHash::new(stored).is_ok_and(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        });
        account.filter(|_| verified)
    }
}

/// Logins: the crate's routes over this password check.
impl PasswordCheck<ForgScope> for Accounts {
    fn check(
        &self,
        email: &str,
        password: &str,
    ) -> Option<tower_api_key::manage::Account<ForgScope>> {
        Accounts::check(self, email, password).map(|account| tower_api_key::manage::Account {
            owner: account.owner,
            scopes: account.scopes,
        })
    }
}
