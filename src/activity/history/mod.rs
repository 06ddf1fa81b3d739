//! The usage history: each key's requests, refusals by kind and spend per UTC day, for the
//! last [`DAYS`] days ([`UsageDay`]); [`UsageHistory`], where the management API reads it
//! from; kept in process ([`DailyUsage`]) or in Redis (`RedisDailyUsage`).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use serde::Serialize;

pub(super) use super::{ActivityEvent, ActivityObserver, Outcome};
use crate::key::Environment;
use crate::reject::RejectionKind;
use crate::store::{KeyId, StoreError};
use crate::support::sweep::SweepAt;

mod memory;
#[cfg(feature = "redis")]
mod redis;

pub use memory::DailyUsage;
#[cfg(feature = "redis")]
pub use redis::RedisDailyUsage;

/// How many days of use are kept, today included.
pub const DAYS: usize = 30;

/// One key's (or owner's) use on one UTC day.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "axum", derive(utoipa::ToSchema))]
pub struct UsageDay {
    /// The day, `YYYY-MM-DD` (UTC).
    pub date: String,
    /// Requests made with the key, refused ones included.
    pub requests: u64,
    /// The refused ones, by rejection code (`rate_limited`, `spend_cap_exceeded`, ...);
    /// kinds that did not happen are left out.
    #[cfg_attr(feature = "axum", schema(value_type = BTreeMap<String, u64>))]
    pub refused: BTreeMap<&'static str, u64>,
    /// What the day's requests were charged, in the spend caps' units.
    pub spent: u64,
}

impl UsageDay {
    /// Adds `other`'s counts to this day's (an owner's day is its keys' summed).
    pub fn add(&mut self, other: &UsageDay) {
        self.requests = self.requests.saturating_add(other.requests);
        self.spent = self.spent.saturating_add(other.spent);
        for (kind, n) in &other.refused {
            let sum = self.refused.entry(kind).or_default();
            *sum = sum.saturating_add(*n);
        }
    }
}

/// What [`UsageHistory::days`] answers.
pub type History<'a> = Pin<Box<dyn Future<Output = Result<Vec<UsageDay>, StoreError>> + Send + 'a>>;

/// Where the management API reads a key's daily use from: [`DailyUsage`] (in process) or
/// `RedisDailyUsage` (feature `redis`, shared by instances).
pub trait UsageHistory: Send + Sync + 'static {
    /// `key`'s last [`DAYS`] days up to the day of `today`, oldest first; days without
    /// use are zeros.
    fn days<'a>(&'a self, key: &'a KeyId, today: SystemTime) -> History<'a>;
}

/// The id under which the usage history keeps the use of `owner`'s browser sessions in
/// `environment`: `sessions:<environment>:` and 32 hex digits of the owner's SHA-256. A
/// session is no key and each login has a new id, so their use is kept once per owner
/// and environment, where the owner's total (`GET /usage`) reads it, beside its keys'.
pub fn sessions_usage_id(owner: &str, environment: Environment) -> KeyId {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(owner.as_bytes());
    let environment = environment.as_str();
    // Not `write!("{byte:02x}")`: one per session request, and sixteen of them cost more
    // than the digest.
    let mut hex = [0u8; 32];
    let hex = base16ct::lower::encode_str(&digest[..16], &mut hex).unwrap_or_default();
    let mut id = String::with_capacity("sessions:".len() + environment.len() + 1 + hex.len());
    id.push_str("sessions:");
    id.push_str(environment);
    id.push(':');
    id.push_str(hex);
    KeyId::new(id).expect("hex digits and a known environment make a valid id")
}

/// The day number (days since 1970-01-01, UTC) of `at`.
pub(crate) fn day_of(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) / 86_400
}

/// The [`DAYS`] day numbers up to `today`'s, oldest first.
pub(crate) fn window(today: SystemTime) -> impl Iterator<Item = u64> {
    let today = day_of(today);
    (0..DAYS as u64)
        .rev()
        .map(move |back| today.saturating_sub(back))
}

/// The [`DAYS`] days up to `today`'s, oldest first, with nothing used.
pub(crate) fn zero_days(today: SystemTime) -> Vec<UsageDay> {
    window(today)
        .map(|day| UsageDay {
            date: date(day),
            ..UsageDay::default()
        })
        .collect()
}

/// `YYYY-MM-DD` of day number `day`.
pub(crate) fn date(day: u64) -> String {
    let at = UNIX_EPOCH + Duration::from_secs(day.saturating_mul(86_400));
    crate::support::timestamp::Rfc3339(at).to_string()[..10].to_owned()
}

impl<T: UsageHistory> UsageHistory for Arc<T> {
    fn days<'a>(&'a self, key: &'a KeyId, today: SystemTime) -> History<'a> {
        (**self).days(key, today)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_days() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(20_454), "2026-01-01");
        let noon = UNIX_EPOCH + Duration::from_secs(20_454 * 86_400 + 43_200);
        assert_eq!(day_of(noon), 20_454);
        let days: Vec<u64> = window(noon).collect();
        assert_eq!(days.len(), DAYS);
        assert_eq!((days[0], days[DAYS - 1]), (20_425, 20_454));
    }

    /// The id written by hand is the one `format!` wrote (ids already stored in Redis
    /// histories must keep matching).
    #[test]
    fn a_sessions_usage_id_is_sixteen_bytes_of_the_owners_digest_in_lower_hex() {
        use sha2::{Digest, Sha256};
        for owner in ["org_acme", "", "ünïcode owner", &"x".repeat(1_000)] {
            for environment in [Environment::Live, Environment::Test] {
                let digest = Sha256::digest(owner.as_bytes());
                let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
                let expected = format!("sessions:{}:{hex}", environment.as_str());
                assert_eq!(sessions_usage_id(owner, environment).as_str(), expected);
            }
        }
        assert_eq!(
            sessions_usage_id("org_acme", Environment::Live).as_str(),
            "sessions:live:b1bdca925bb8169fe109e174f791c08c"
        );
    }
}
