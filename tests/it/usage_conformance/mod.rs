//! One suite for every spend backend (issue 21.5): the same charges give the same answers
//! in process and on Redis (zero, huge, saturating, period rollover, concurrency).
//!
//! A test binary instantiates it with `usage_suite!(fixture)`, where the fixture makes a
//! backend on a given fake clock; counters are named per test, so one server serves all.
#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tower_api_key::clock::ManualClock;
use tower_api_key::key::Environment;
use tower_api_key::store::KeyId;
use tower_api_key::usage::{BudgetPer, Charge, Counter, Period, Spent, UsageBackend, MAX_AMOUNT};

/// Makes backends for the suite.
pub trait Fixture {
    /// The backend under test.
    type Backend: UsageBackend;

    /// A backend whose periods follow `clock`.
    fn backend(&self, clock: ManualClock) -> impl Future<Output = Self::Backend>;
}

/// Instantiates every test of the suite for `$fixture` (`Option<impl Fixture>`: `None`
/// skips).
#[macro_export]
macro_rules! usage_suite {
    ($fixture:expr) => {
        $crate::usage_suite!(@tests $fixture;
            zero_costs_pass_while_something_is_left,
            huge_costs_and_caps_saturate_alike,
            refunds_never_go_below_zero,
            a_new_period_starts_whole_and_old_refunds_are_ignored,
            concurrent_reservations_never_exceed_the_cap,
            days_end_at_utc_midnight,
            lifetime_credits_never_reset,
        );
    };
    (@tests $fixture:expr; $($test:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                let Some(fixture) = $fixture else { return };
                $crate::usage_conformance::$test(&fixture).await;
            }
        )*
    };
}

/// 2026-03-31T23:30:00Z: half an hour before both an hour and a month end.
const START: u64 = 1_774_999_800;

fn subject() -> String {
    KeyId::generate().unwrap().as_str().to_owned()
}

fn counter(subject: &str, period: Period) -> Counter<'_> {
    Counter {
        environment: Environment::Live,
        per: BudgetPer::Owner,
        subject,
        period,
    }
}

async fn charge<B: UsageBackend>(
    backend: &B,
    subject: &str,
    cost: u64,
    cap: u64,
    charge: Charge,
) -> Spent {
    backend
        .charge(counter(subject, Period::Monthly), cost, cap, charge)
        .await
        .unwrap()
}

async fn setup<F: Fixture>(fixture: &F) -> (F::Backend, ManualClock, String) {
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(START));
    (fixture.backend(clock.clone()).await, clock, subject())
}

fn refund(spent: &Spent) -> Charge {
    Charge::Refund {
        period_ends: spent.resets_at,
    }
}

pub async fn zero_costs_pass_while_something_is_left<F: Fixture>(fixture: &F) {
    let (backend, _, who) = setup(fixture).await;
    let spent = charge(&backend, &who, 0, 0, Charge::Reserve).await;
    assert!(!spent.allowed, "a cap of 0 leaves nothing");
    let spent = charge(&backend, &who, 0, 10, Charge::Reserve).await;
    assert_eq!((spent.allowed, spent.spent), (true, 0));
    let spent = charge(&backend, &who, 10, 10, Charge::Reserve).await;
    assert_eq!((spent.allowed, spent.spent), (true, 10));
    let spent = charge(&backend, &who, 0, 10, Charge::Reserve).await;
    assert_eq!((spent.allowed, spent.spent), (false, 10), "nothing left");
    assert_eq!(
        spent.resets_at,
        Some(UNIX_EPOCH + Duration::from_secs(START + 1800)),
        "April 1st"
    );
    assert_eq!(spent.reset_after, Some(Duration::from_secs(1800)));
}

pub async fn huge_costs_and_caps_saturate_alike<F: Fixture>(fixture: &F) {
    let (backend, _, who) = setup(fixture).await;
    for cost in [u64::MAX, 1 << 63, MAX_AMOUNT + 1] {
        let spent = charge(&backend, &who, cost, 100, Charge::Reserve).await;
        assert_eq!(
            (spent.allowed, spent.spent),
            (false, 0),
            "{cost} never fits 100"
        );
    }
    let spent = charge(&backend, &who, 99, 100, Charge::Reserve).await;
    assert_eq!((spent.allowed, spent.spent), (true, 99));
    let spent = charge(&backend, &who, u64::MAX, u64::MAX, Charge::Reserve).await;
    assert_eq!(
        (spent.allowed, spent.spent),
        (false, 99),
        "u64::MAX is taken as 2^53 - 1, which no longer fits"
    );
    let other = subject();
    let spent = charge(&backend, &other, u64::MAX, u64::MAX, Charge::Reserve).await;
    assert_eq!((spent.allowed, spent.spent), (true, MAX_AMOUNT));
    let spent = charge(&backend, &other, 0, u64::MAX, Charge::Reserve).await;
    assert_eq!(
        (spent.allowed, spent.spent),
        (false, MAX_AMOUNT),
        "spent: 402"
    );
    let spent = charge(&backend, &other, 1, u64::MAX, Charge::Reserve).await;
    assert_eq!((spent.allowed, spent.spent), (false, MAX_AMOUNT));
    let back = charge(&backend, &other, MAX_AMOUNT - 7, u64::MAX, refund(&spent)).await;
    assert_eq!(back.spent, 7, "exact at the top of the range");
}

pub async fn refunds_never_go_below_zero<F: Fixture>(fixture: &F) {
    let (backend, _, who) = setup(fixture).await;
    let spent = charge(&backend, &who, 30, 100, Charge::Reserve).await;
    let back = charge(&backend, &who, 20, 100, refund(&spent)).await;
    assert_eq!((back.allowed, back.spent), (true, 10));
    let back = charge(&backend, &who, u64::MAX, 100, refund(&spent)).await;
    assert_eq!((back.allowed, back.spent), (true, 0));
    let fresh = subject();
    let back = charge(&backend, &fresh, 5, 100, refund(&spent)).await;
    assert_eq!(back.spent, 0, "a refund on nothing spent is nothing");
}

pub async fn a_new_period_starts_whole_and_old_refunds_are_ignored<F: Fixture>(fixture: &F) {
    let (backend, clock, who) = setup(fixture).await;
    let hourly = |cost, charge| {
        let backend = backend.clone();
        let who = who.clone();
        async move {
            backend
                .charge(counter(&who, Period::Hourly), cost, 100, charge)
                .await
                .unwrap()
        }
    };
    let march = hourly(100, Charge::Reserve).await;
    assert_eq!((march.allowed, march.spent), (true, 100));
    assert!(!hourly(1, Charge::Reserve).await.allowed);
    clock.advance(Duration::from_secs(1800));
    let april = hourly(40, Charge::Reserve).await;
    assert_eq!(
        (april.allowed, april.spent),
        (true, 40),
        "a new hour, whole again"
    );
    assert_eq!(
        april.resets_at,
        march.resets_at.map(|at| at + Duration::from_secs(3600))
    );
    let late = hourly(100, refund(&march)).await;
    assert_eq!(
        late.spent, 40,
        "a refund of the last hour never credits this one"
    );
    let back = hourly(15, refund(&april)).await;
    assert_eq!(back.spent, 25);
}

pub async fn concurrent_reservations_never_exceed_the_cap<F: Fixture>(fixture: &F) {
    let (backend, _, who) = setup(fixture).await;
    let who: Arc<str> = who.into();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (backend, who) = (backend.clone(), Arc::clone(&who));
            tokio::spawn(async move {
                let spent = charge(&backend, &who, 10, 100, Charge::Reserve).await;
                assert!(spent.spent <= 100, "spent {} of 100", spent.spent);
                if spent.allowed {
                    // Each admitted request cost 7 of its 10.
                    charge(&backend, &who, 3, 100, refund(&spent)).await;
                }
                spent.allowed
            })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        admitted += usize::from(task.await.unwrap());
    }
    let spent = charge(&backend, &who, 0, 100, Charge::Reserve).await;
    // 10 fit at once; refunds made room for more while others were still arriving.
    assert!(admitted >= 10, "{admitted}");
    assert!(spent.spent <= 100, "spent {}", spent.spent);
    assert_eq!(spent.spent, admitted as u64 * 7);
    let _: Option<SystemTime> = spent.resets_at;
}

pub async fn days_end_at_utc_midnight<F: Fixture>(fixture: &F) {
    let (backend, clock, who) = setup(fixture).await;
    let daily = |cost, charge| {
        let (backend, who) = (backend.clone(), who.clone());
        async move {
            backend
                .charge(counter(&who, Period::Daily), cost, 50, charge)
                .await
                .unwrap()
        }
    };
    let march = daily(50, Charge::Reserve).await;
    assert_eq!((march.allowed, march.spent), (true, 50));
    // START is 23:30 UTC: the day ends in half an hour, at April 1st's midnight.
    assert_eq!(
        march.resets_at,
        Some(UNIX_EPOCH + Duration::from_secs(START + 1800))
    );
    assert_eq!(march.reset_after, Some(Duration::from_secs(1800)));
    assert!(!daily(1, Charge::Reserve).await.allowed, "the day is spent");
    clock.advance(Duration::from_secs(1800));
    let april = daily(1, Charge::Reserve).await;
    assert_eq!(
        (april.allowed, april.spent),
        (true, 1),
        "a new day, whole again"
    );
    assert_eq!(
        april.resets_at,
        Some(UNIX_EPOCH + Duration::from_secs(START + 1800 + 86_400))
    );
}

pub async fn lifetime_credits_never_reset<F: Fixture>(fixture: &F) {
    let (backend, clock, who) = setup(fixture).await;
    let credits = |cost, charge| {
        let (backend, who) = (backend.clone(), who.clone());
        async move {
            backend
                .charge(counter(&who, Period::Lifetime), cost, 1000, charge)
                .await
                .unwrap()
        }
    };
    let first = credits(600, Charge::Reserve).await;
    assert_eq!((first.allowed, first.spent), (true, 600));
    assert_eq!((first.resets_at, first.reset_after), (None, None));
    // Months and years pass: nothing comes back.
    clock.advance(Duration::from_secs(400 * 86_400));
    let later = credits(500, Charge::Reserve).await;
    assert_eq!((later.allowed, later.spent), (false, 600));
    assert_eq!((later.resets_at, later.reset_after), (None, None));
    // A refund of a lifetime reservation is given back, whenever it comes.
    let back = credits(100, refund(&first)).await;
    assert_eq!(back.spent, 500);
    let last = credits(500, Charge::Reserve).await;
    assert_eq!((last.allowed, last.spent), (true, 1000));
    assert!(
        !credits(0, Charge::Reserve).await.allowed,
        "nothing left, ever"
    );
    assert_eq!(
        backend
            .read(counter(&who, Period::Lifetime))
            .await
            .unwrap()
            .spent,
        1000
    );
}
