//! Issue 36.1, the invariant as a whole: **no credential gets more than its owner's keys.**
//! Whatever credential a request uses (a key, its rotated successor during and after its
//! grace, a browser session, a second login, an agent's key or session, a key issued after
//! another was revoked, a key updated in place), it is charged to, limited by and gated under the same subject its
//! owner's keys are.
//!
//! One table: each row is a credential path, a pair (the owner's reference credential `A`,
//! the path under test `B`); each column a policy. A cell spends `A` until refused, then
//! counts what `B` still gets. Where the row and the policy share a subject (a rotated key's
//! budget is its predecessor's; a second login's is the first's), `B` gets nothing; elsewhere
//! `B` gets at most what `A` got (a session is never worth more than a key of its owner). A
//! new path is one row, a new policy one column. Run on memory and on a real Redis.
//!
//! Failed before the fixes: rotation refilled per-key budgets, credits and rate limits;
//! a second login opened a fresh per-key budget; a session passed the route's plan after
//! the owner's trial ended.

use crate::common;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use common::{send, store_with_clock, Probe};
use http::{HeaderMap, Request, StatusCode};
use tower::Layer;
use tower_api_key::activity::{ActivityLayer, ActivityObserver, DailyUsage, UsageHistory, DAYS};
use tower_api_key::clock::Clock;
use tower_api_key::clock::ManualClock;
use tower_api_key::key::{Environment, KeyFamily};
use tower_api_key::manage::{KeysApi, SpendApi};
use tower_api_key::rate_limit::{
    ClassName, GovernorBackend, Quota, RateClass, RateLimitBackend, RateLimits,
};
use tower_api_key::session::{CsrfSecret, Sessions};
use tower_api_key::store::{KeyId, KeyPolicy, KeyUpdate, Metadata};
use tower_api_key::usage::{
    BudgetPer, Budgets, MemoryUsage, Plan, PlanLayer, PlanTable, SpendCaps, UsageBackend,
};
use tower_api_key::{AuthLayer, ForgScope, ManageKeys, MemoryKeyStore, NewKey};

mod readings;

use readings::{admitted, none, ReportAt};

type Store = MemoryKeyStore<ForgScope>;

/// What every budget and limit allows in a cell: three requests.
const ALLOWANCE: u64 = 3;
/// Requests sent per credential at most: more than any allowance.
const TRIES: usize = 6;

/// A credential: a key, or a session's cookies.
#[derive(Clone, Debug)]
enum Credential {
    Key(String),
    Session(String),
}

impl Credential {
    fn request(&self) -> Request<String> {
        let request = Request::get("/v1/thing");
        match self {
            Self::Key(key) => request.header("authorization", format!("Bearer {key}")),
            Self::Session(cookie) => request.header("cookie", cookie),
        }
        .body(String::new())
        .unwrap()
    }
}

/// The rows: credential paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    /// A live key's successor, while the key is in its grace period.
    LiveRotatedDuringGrace,
    /// A live key's successor, the key revoked at once.
    LiveRotatedAfterGrace,
    /// A test key's successor.
    TestRotated,
    /// A browser session, beside its owner's live key.
    Session,
    /// A second login of the same user, beside the first.
    SecondLogin,
    /// An agent's session, beside the agent's `fos_` key.
    AgentSession,
    /// A key issued after the owner's other key was revoked.
    KeyAfterRevocation,
    /// The same key, updated in place (renamed, new metadata and expiry) once it spent.
    UpdatedKey,
}

const PATHS: [Path; 8] = [
    Path::LiveRotatedDuringGrace,
    Path::LiveRotatedAfterGrace,
    Path::TestRotated,
    Path::Session,
    Path::SecondLogin,
    Path::AgentSession,
    Path::KeyAfterRevocation,
    Path::UpdatedKey,
];

/// The columns: policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Policy {
    /// The route requires Pro; the owner is on a Pro trial.
    PlanDuringTrial,
    /// The same, once the trial has ended.
    PlanAfterTrial,
    /// A spend cap shared by the owner's credentials of an environment.
    SpendPerOwner,
    /// A spend cap per key (sessions: their owner's).
    SpendPerKey,
    /// One-time credits set on the reference key (per key).
    Credits,
    /// A per-key rate-limit class (sessions: per owner).
    RateLimit,
    /// `GET /billing/spend` (budgets per key): what both credentials were charged, in the
    /// budgets that still apply.
    SpendReport,
    /// `GET /usage`, the owner's history: every request of both credentials, and what
    /// they were charged.
    UsageHistory,
}

const POLICIES: [Policy; 8] = [
    Policy::PlanDuringTrial,
    Policy::PlanAfterTrial,
    Policy::SpendPerOwner,
    Policy::SpendPerKey,
    Policy::Credits,
    Policy::RateLimit,
    Policy::SpendReport,
    Policy::UsageHistory,
];

/// Whether `path`'s two credentials are one subject of `policy`: then `B` gets nothing
/// once `A` spent it all.
fn one_subject(path: Path, policy: Policy) -> bool {
    // A key's lineage: its successors, and the key itself at any version.
    let rotated = matches!(
        path,
        Path::LiveRotatedDuringGrace
            | Path::LiveRotatedAfterGrace
            | Path::TestRotated
            | Path::UpdatedKey
    );
    match policy {
        // Not counted: `B` is held to at most `A`'s answer.
        Policy::PlanDuringTrial | Policy::PlanAfterTrial => false,
        // Every credential of one owner and environment.
        Policy::SpendPerOwner => true,
        // A key's lineage; every session of the owner.
        Policy::SpendPerKey | Policy::RateLimit => rotated || path == Path::SecondLogin,
        // Credits follow the key's lineage only.
        Policy::Credits => rotated,
        // Per-key budgets, as `SpendPerKey`.
        Policy::SpendReport => rotated || path == Path::SecondLogin,
        // Nothing limits: both get everything, and the report must say so.
        Policy::UsageHistory => false,
    }
}

/// One cell's world: the owner's keys, sessions and plans on a fake clock.
struct World {
    keys: Arc<Store>,
    sessions: Sessions<Store>,
    clock: ManualClock,
    plans: PlanTable,
}

const OWNER: &str = "org_1";
const AGENT: &str = "agent_1";

impl World {
    fn new() -> Self {
        let (keys, clock) = store_with_clock();
        let session_store = Store::new().with_policy(KeyPolicy::sessions().clock(clock.clone()));
        let sessions = Sessions::new(Arc::new(session_store), CsrfSecret::generate().unwrap());
        let plans = PlanTable::new(Plan::Free)
            .require(Environment::Live, Plan::Pro)
            .clock(clock.clone());
        for owner in [OWNER, AGENT] {
            plans.start_trial(owner, Plan::Pro, Duration::from_secs(60));
        }
        Self {
            keys,
            sessions,
            clock,
            plans,
        }
    }

    async fn key(&self, owner: &str, family: &KeyFamily) -> (Credential, KeyId) {
        let issued = self
            .keys
            .issue(NewKey::new(owner, "key", family).scopes(ForgScope::ReadRules))
            .await
            .unwrap();
        let id = issued.record().id().clone();
        (Credential::Key(issued.key().expose_secret().to_owned()), id)
    }

    async fn login(&self, owner: &str) -> Credential {
        let started = self
            .sessions
            .start(&HeaderMap::new(), owner, ForgScope::ReadRules)
            .await
            .unwrap();
        Credential::Session(started.cookies().cookie_header())
    }

    async fn rotated(&self, id: &KeyId, grace: Duration) -> Credential {
        let issued = self.keys.rotate(id, Some(grace)).await.unwrap();
        Credential::Key(issued.key().expose_secret().to_owned())
    }

    /// `path`'s two credentials, and the reference key's id (for credits).
    async fn pair(&self, path: Path) -> (Credential, Credential, KeyId) {
        let live = &KeyFamily::FORG_LIVE;
        match path {
            Path::LiveRotatedDuringGrace | Path::LiveRotatedAfterGrace | Path::TestRotated => {
                let family = if path == Path::TestRotated {
                    &KeyFamily::FORG_TEST
                } else {
                    live
                };
                // `B` is made once `A` has spent ([`World::successor_of`]).
                let (a, id) = self.key(OWNER, family).await;
                (a, Credential::Key(String::new()), id)
            }
            Path::Session => {
                let (a, id) = self.key(OWNER, live).await;
                (a, self.login(OWNER).await, id)
            }
            Path::SecondLogin => (self.login(OWNER).await, self.login(OWNER).await, none()),
            Path::AgentSession => {
                let (a, id) = self.key(AGENT, &KeyFamily::FOS).await;
                (a, self.login(AGENT).await, id)
            }
            Path::KeyAfterRevocation => {
                let (a, id) = self.key(OWNER, live).await;
                (a, Credential::Key(String::new()), id)
            }
            Path::UpdatedKey => {
                let (a, id) = self.key(OWNER, live).await;
                (a.clone(), a, id)
            }
        }
    }
}

impl Path {
    /// Whose credentials the row's are.
    fn owner(self) -> &'static str {
        if self == Path::AgentSession {
            AGENT
        } else {
            OWNER
        }
    }
}

impl World {
    fn report<U: UsageBackend>(
        &self,
        owner: &str,
        caps: &SpendCaps<U>,
        history: impl UsageHistory,
    ) -> ReportAt<'_> {
        let api = axum::Router::new()
            .merge(KeysApi::new(Arc::clone(&self.keys)).usage(history).router())
            .merge(SpendApi::new(Arc::clone(&self.keys), caps).router());
        let auth = AuthLayer::new(Arc::clone(&self.keys)).sessions(self.sessions.clone());
        ReportAt {
            world: self,
            owner: owner.to_owned(),
            app: axum::Router::new().fallback_service(auth.layer(api)),
        }
    }
}

/// What a cell saw: what each credential got, and for the report columns what the
/// owner's report said beside what it must say.
struct Seen {
    a: usize,
    b: usize,
    reported: Option<(u64, u64)>,
}

/// One cell: `path` × `policy`, with `usage`, `limiter` and `history` as the shared
/// backends.
async fn cell<U, R, O, H>(path: Path, policy: Policy, usage: U, limiter: R, history: (O, H)) -> Seen
where
    U: UsageBackend + Clone,
    R: RateLimitBackend + Clone,
    O: ActivityObserver,
    H: UsageHistory,
{
    let world = World::new();
    let (a, b, reference) = world.pair(path).await;
    let probe = Probe::new();
    let auth = AuthLayer::new(Arc::clone(&world.keys)).sessions(world.sessions.clone());
    let cap = |per: BudgetPer| {
        let budgets = Budgets::new()
            .default_cap(Environment::Live, ALLOWANCE)
            .default_cap(Environment::Test, ALLOWANCE);
        if policy == Policy::Credits {
            budgets.set_key_credits(reference.clone(), ALLOWANCE);
        }
        SpendCaps::backed_by(budgets, usage.clone())
            .per(per)
            .layer(1)
    };
    // `$layer` inside the authentication, `$outside` (the activity layer) outside it.
    macro_rules! run {
        ($layer:expr) => {
            run!(tower::layer::util::Identity::new(), $layer)
        };
        ($outside:expr, $layer:expr) => {{
            let service = $outside.layer(auth.layer($layer.layer(probe.service::<String>())));
            let a_got = admitted(&service, &probe, &a).await;
            let b = world.successor_of(path, &reference, b).await;
            Seen {
                a: a_got,
                b: admitted(&service, &probe, &b).await,
                reported: None,
            }
        }};
    }
    match policy {
        Policy::PlanDuringTrial | Policy::PlanAfterTrial => {
            if policy == Policy::PlanAfterTrial {
                world.clock.advance(Duration::from_secs(61));
            }
            let plan = PlanLayer::new(world.plans.clone())
                .require(Plan::Pro)
                .clock(world.clock.clone());
            run!(plan)
        }
        Policy::SpendPerOwner => run!(cap(BudgetPer::Owner)),
        Policy::SpendPerKey | Policy::Credits => run!(cap(BudgetPer::Key)),
        Policy::RateLimit => {
            let quota = Quota::per_minute(NonZeroU32::new(ALLOWANCE as u32).unwrap());
            let class = RateClass::per_key(ClassName::from_static("std"), quota);
            run!(RateLimits::backed_by(limiter.clone()).layer(class))
        }
        Policy::SpendReport | Policy::UsageHistory => {
            let caps = SpendCaps::backed_by(
                Budgets::new()
                    .default_cap(Environment::Live, ALLOWANCE)
                    .default_cap(Environment::Test, ALLOWANCE),
                usage.clone(),
            )
            .per(BudgetPer::Key);
            let (observer, history) = history;
            let activity = ActivityLayer::new(observer).clock(world.clock.clone());
            let mut seen = run!(activity, caps.layer(1));
            let charged = if path == Path::KeyAfterRevocation && policy == Policy::SpendReport {
                // The revoked key's budget applies to no credential any more.
                seen.b
            } else {
                seen.a + seen.b
            };
            let report = world.report(path.owner(), &caps, history);
            seen.reported = Some(if policy == Policy::SpendReport {
                (report.spent().await, charged as u64)
            } else {
                // Every request, refused ones included: `TRIES` each.
                let (requests, spent) = report.today().await;
                (
                    requests * 1_000 + spent,
                    (2 * TRIES * 1_000 + charged) as u64,
                )
            });
            seen
        }
    }
}

impl World {
    /// `B` for the paths whose second credential comes from what happens to `A`'s key
    /// after `A` spent: its successor, or a new key once it was revoked.
    async fn successor_of(&self, path: Path, reference: &KeyId, b: Credential) -> Credential {
        match path {
            Path::LiveRotatedDuringGrace | Path::TestRotated => {
                self.rotated(reference, Duration::from_secs(3600)).await
            }
            Path::LiveRotatedAfterGrace => self.rotated(reference, Duration::ZERO).await,
            Path::KeyAfterRevocation => {
                self.keys.revoke(reference).await.unwrap();
                self.key(OWNER, &KeyFamily::FORG_LIVE).await.0
            }
            Path::UpdatedKey => {
                let update = KeyUpdate::new()
                    .name("renamed")
                    .metadata(Metadata::new([("team", "platform")]).unwrap())
                    .expires_at(Some(self.clock.now() + Duration::from_secs(86_400)));
                let updated = self.keys.update(reference, update).await.unwrap();
                assert_eq!(updated.version(), 1);
                b
            }
            _ => b,
        }
    }
}

/// Every cell on the given backends; a failure names every cell that broke the rule.
async fn the_matrix<U, R, O, H>(
    usage: impl Fn() -> U,
    limiter: impl Fn() -> R,
    history: impl Fn() -> (O, H),
) where
    U: UsageBackend + Clone,
    R: RateLimitBackend + Clone,
    O: ActivityObserver,
    H: UsageHistory,
{
    let mut broken = Vec::new();
    for path in PATHS {
        for policy in POLICIES {
            let seen = cell(path, policy, usage(), limiter(), history()).await;
            let (a, b) = (seen.a, seen.b);
            let expected_most = if one_subject(path, policy) { 0 } else { a };
            if b > expected_most {
                broken.push(format!(
                    "{path:?} × {policy:?}: the owner's credential got {a}, this one {b} (at most {expected_most})"
                ));
            }
            if let Some((reported, expected)) = seen.reported {
                if reported != expected {
                    broken.push(format!(
                        "{path:?} × {policy:?}: the owner's report says {reported}, not {expected}"
                    ));
                }
            }
            // Each cell does limit `A`: the table tests something.
            let limited = !matches!(policy, Policy::PlanDuringTrial | Policy::UsageHistory);
            assert!(
                !limited || a <= ALLOWANCE as usize,
                "{path:?} × {policy:?}: {a}"
            );
            if policy == Policy::PlanDuringTrial {
                assert_eq!((a, b), (TRIES, TRIES), "{path:?}: a trial allows");
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[tokio::test]
async fn no_credential_gets_more_than_its_owners_keys_in_memory() {
    let clock = ManualClock::new(common::start_time());
    the_matrix(
        || MemoryUsage::new().with_clock(clock.clone()),
        || GovernorBackend::on_clock(clock.clone()),
        || {
            let daily = DailyUsage::default();
            (daily.clone(), daily)
        },
    )
    .await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn no_credential_gets_more_than_its_owners_keys_on_redis() {
    use tower_api_key::activity::RedisDailyUsage;
    use tower_api_key::rate_limit::RedisRateLimiter;
    use tower_api_key::usage::RedisUsage;
    use tower_api_key::RedisConnection;
    let Some(redis) = common::redis_server::Redis::start() else {
        return;
    };
    let connection = RedisConnection::open(&redis.url).await.unwrap();
    // A namespace per cell: cells must not share counters.
    let fresh = || format!("t{}", KeyId::generate().unwrap().as_str());
    the_matrix(
        || RedisUsage::new(connection.clone()).with_namespace(&fresh()),
        || RedisRateLimiter::new(connection.clone()).with_namespace(&fresh()),
        || {
            let daily = RedisDailyUsage::new(connection.clone(), &fresh());
            (daily.clone(), daily)
        },
    )
    .await;
}
