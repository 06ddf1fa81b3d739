//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`, on
//! by default): the crate records, the application picks the exporter (Prometheus,
//! OpenTelemetry, StatsD, …) by installing a recorder.
//!
//! ```
//! use std::convert::Infallible;
//! use std::sync::Arc;
//! use futures_util::FutureExt;
//! use http::{Request, Response, StatusCode};
//! use metrics_util::debugging::{DebugValue, DebuggingRecorder};
//! use tower::{service_fn, Layer, ServiceExt};
//! use tower_api_key::{AuthLayer, ForgScope, MemoryKeyStore};
//!
//! // Any `metrics` recorder, installed at start; here metrics-util's debugging recorder.
//! let recorder = DebuggingRecorder::new();
//! let snapshotter = recorder.snapshotter();
//! let inner = service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) });
//! let service = AuthLayer::new(Arc::new(MemoryKeyStore::<ForgScope>::new().with_policy(tower_api_key::forg::key_policy()))).layer(inner);
//! let response = metrics::with_local_recorder(&recorder, || {
//!     service.oneshot(Request::new(())).now_or_never().unwrap().unwrap()
//! });
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//!
//! // Every (credential, outcome) pair is registered at the first request; this one counted.
//! let counted: Vec<(String, DebugValue)> = snapshotter
//!     .snapshot()
//!     .into_vec()
//!     .into_iter()
//!     .filter(|(key, ..)| key.key().name() == tower_api_key::metrics::REQUESTS)
//!     .map(|(key, _, _, value)| {
//!         let labels: Vec<String> = key.key().labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
//!         (labels.join(","), value)
//!     })
//!     .filter(|(_, value)| *value != DebugValue::Counter(0))
//!     .collect();
//! assert_eq!(counted, [("credential=none,outcome=invalid_api_key".to_owned(), DebugValue::Counter(1))]);
//! ```
//!
//! Install the recorder before the first request: each layer and cache registers its
//! handles with the recorder current at its first request, and then only adds to them
//! (an atomic add per event; measured, a Prometheus recorder adds about 300 instructions
//! per request to authentication, scope and rate limit together).
//!
//! Names follow OpenTelemetry's style (dotted, lower case, the unit in the description);
//! a Prometheus exporter writes them with `_` (`tower_api_key_requests`). Labels never
//! carry a key, a session token, a key id or an owner: their values come from fixed sets
//! (rejection codes, credential kinds, environments, backends) or from names the
//! application chose (rate classes).
//!
//! | name | kind | labels | counts |
//! |---|---|---|---|
//! | [`REQUESTS`] | counter | `credential` (`api_key`, `session`, `none`), `outcome` (`ok` or a rejection code) | requests through [`AuthLayer`](crate::AuthLayer), by how they ended (a refusal further in, a scope or a rate limit, is its code) |
//! | [`STORE_LOOKUPS`] | counter | `backend`, `result` (`found`, `unknown`, `error`) | key-store lookups the layer made (sessions included) |
//! | [`STORE_LOOKUP_DURATION`] | histogram, seconds | `backend` | lookups that had to wait (not answered at once from memory) |
//! | [`CACHE_HITS`], [`CACHE_MISSES`] | counter | | [`CachedKeyStore`](crate::store::CachedKeyStore) answers from memory, and lookups it passed to its store |
//! | [`CACHE_EVICTIONS`] | counter | `cause` (`expired`, `size`) | records the cache dropped by itself (not invalidations) |
//! | [`CACHE_STALE_ANSWERS`] | counter | | stale-if-error answers |
//! | [`RATE_LIMIT_DECISIONS`] | counter | `class`, `outcome` (`allowed`, `limited`, `error`) | rate-limit checks, and in-flight limits' (`class` = the limit's name) |
//! | [`FAILED_AUTH_BLOCKS`] | counter | | requests refused by the failed-authentication limit |
//! | [`SPEND_CHARGED`] | counter, units | `environment` | spend charged (net of refunds) |
//! | [`SPEND_REFUSALS`] | counter | `environment` | requests refused with 402 |
//! | [`PLAN_REFUSALS`] | counter | `environment` | requests refused with 403 `plan_required` |
//! | [`REVOCATION_MESSAGES`] | counter | `backend` (`redis`, `postgres`) | revocation messages received |
//! | [`REVOCATION_RECONNECTS`] | counter | `backend` | subscriptions made again after a loss |
//! | [`REVOCATION_HEARTBEATS_MISSED`] | counter | `backend` | subscriptions dropped after two silent heartbeats |
//! | [`ACTIVITY_DROPPED`] | counter | `sink` (`redis`) | activity events dropped because the writer's queue was full |

/// Requests through the authentication layer, by credential kind and outcome.
pub const REQUESTS: &str = "tower_api_key.requests";
/// Key-store lookups, by backend and result.
pub const STORE_LOOKUPS: &str = "tower_api_key.store.lookups";
/// Seconds a lookup waited for its store, by backend.
pub const STORE_LOOKUP_DURATION: &str = "tower_api_key.store.lookup.duration";
/// Lookups a cache answered from memory.
pub const CACHE_HITS: &str = "tower_api_key.cache.hits";
/// Lookups a cache passed to its store.
pub const CACHE_MISSES: &str = "tower_api_key.cache.misses";
/// Records a cache dropped by itself, by cause.
pub const CACHE_EVICTIONS: &str = "tower_api_key.cache.evictions";
/// Lookups answered from a stale record while the store failed.
pub const CACHE_STALE_ANSWERS: &str = "tower_api_key.cache.stale_answers";
/// Rate-limit checks, by class and outcome.
pub const RATE_LIMIT_DECISIONS: &str = "tower_api_key.rate_limit.decisions";
/// Requests refused by the failed-authentication limit.
pub const FAILED_AUTH_BLOCKS: &str = "tower_api_key.failed_auth.blocks";
/// Spend charged, in the application's units, by environment.
pub const SPEND_CHARGED: &str = "tower_api_key.spend.charged";
/// Requests refused because their budget was spent (402), by environment.
pub const SPEND_REFUSALS: &str = "tower_api_key.spend.refusals";
/// Requests refused by the plan check (403 `plan_required`), by environment.
pub const PLAN_REFUSALS: &str = "tower_api_key.plan.refusals";
/// Revocation messages received, by backend.
pub const REVOCATION_MESSAGES: &str = "tower_api_key.revocation.messages";
/// Revocation subscriptions made again after a loss, by backend.
pub const REVOCATION_RECONNECTS: &str = "tower_api_key.revocation.reconnects";
/// Revocation subscriptions dropped after two silent heartbeats, by backend.
pub const REVOCATION_HEARTBEATS_MISSED: &str = "tower_api_key.revocation.heartbeats_missed";
/// Activity events dropped, by sink.
pub const ACTIVITY_DROPPED: &str = "tower_api_key.activity.dropped";

/// Handles of the per-request metrics, registered on first use with the recorder current
/// then (the one the application installed at start), so that each event is an atomic add
/// instead of a registry lookup by name and labels. A layer or cache keeps its own.
#[cfg(feature = "metrics")]
mod handles {
    use std::sync::{Arc, OnceLock};
    use std::time::Duration;

    use ::metrics::{Counter, Histogram};

    use super::*;
    use crate::environment::Environment;
    use crate::principal::CredentialKind;
    use crate::reject::RejectionKind;

    const CREDENTIALS: [&str; 3] = ["none", "api_key", "session"];
    const OUTCOMES: usize = RejectionKind::ALL.len() + 1;

    /// [`REQUESTS`] by credential and outcome: every combination, registered together.
    #[derive(Clone, Default)]
    pub(crate) struct RequestCounters(OnceLock<Box<[[Counter; OUTCOMES]; 3]>>);

    impl RequestCounters {
        #[inline]
        pub(crate) fn record(
            &self,
            credential: Option<CredentialKind>,
            outcome: Option<RejectionKind>,
        ) {
            let table = self.0.get_or_init(|| {
                Box::new(CREDENTIALS.map(|credential| {
                    std::array::from_fn(|i| {
                        let outcome = match i {
                            0 => "ok",
                            i => RejectionKind::ALL[i - 1].code(),
                        };
                        ::metrics::counter!(REQUESTS, "credential" => credential, "outcome" => outcome)
                    })
                }))
            });
            let credential = match credential {
                None => 0,
                Some(CredentialKind::ApiKey) => 1,
                Some(CredentialKind::Session) => 2,
            };
            let outcome = outcome.map_or(0, |kind| kind as usize + 1);
            table[credential][outcome].increment(1);
        }
    }

    /// [`STORE_LOOKUPS`] by result and [`STORE_LOOKUP_DURATION`], for one backend.
    #[derive(Clone, Default)]
    pub(crate) struct LookupCounters(OnceLock<([Counter; 3], Histogram)>);

    impl LookupCounters {
        fn handles(&self, backend: &'static str) -> &([Counter; 3], Histogram) {
            self.0.get_or_init(|| {
                (
                    ["found", "unknown", "error"].map(|result| {
                        ::metrics::counter!(STORE_LOOKUPS, "backend" => backend, "result" => result)
                    }),
                    ::metrics::histogram!(STORE_LOOKUP_DURATION, "backend" => backend),
                )
            })
        }

        /// `result`: 0 found, 1 unknown, 2 error.
        #[inline]
        pub(crate) fn record(&self, backend: &'static str, result: usize) {
            self.handles(backend).0[result].increment(1);
        }

        #[inline]
        pub(crate) fn waited(&self, backend: &'static str, waited: Duration) {
            self.handles(backend).1.record(waited.as_secs_f64());
        }
    }

    /// [`RATE_LIMIT_DECISIONS`] of one class.
    #[derive(Clone, Default)]
    pub(crate) struct DecisionCounters(OnceLock<[Counter; 3]>);

    impl DecisionCounters {
        /// `outcome`: 0 allowed, 1 limited, 2 error.
        #[inline]
        pub(crate) fn record(&self, class: &Arc<str>, outcome: usize) {
            self.0
                .get_or_init(|| {
                    ["allowed", "limited", "error"].map(|outcome| {
                        ::metrics::counter!(RATE_LIMIT_DECISIONS, "class" => Arc::clone(class), "outcome" => outcome)
                    })
                })[outcome]
                .increment(1);
        }
    }

    /// [`CACHE_HITS`] and [`CACHE_MISSES`] of one cache.
    #[derive(Clone, Default)]
    pub(crate) struct CacheCounters(OnceLock<[Counter; 2]>);

    // Used by `CachedKeyStore` (feature `cache`).
    #[allow(dead_code)]
    impl CacheCounters {
        fn handles(&self) -> &[Counter; 2] {
            self.0.get_or_init(|| {
                [
                    ::metrics::counter!(CACHE_HITS),
                    ::metrics::counter!(CACHE_MISSES),
                ]
            })
        }

        #[inline]
        pub(crate) fn hit(&self) {
            self.handles()[0].increment(1);
        }

        #[inline]
        pub(crate) fn miss(&self) {
            self.handles()[1].increment(1);
        }
    }

    /// [`SPEND_CHARGED`] by environment, for one spend-cap layer.
    #[derive(Clone, Default)]
    pub(crate) struct SpendCounters(OnceLock<[Counter; 2]>);

    impl SpendCounters {
        #[inline]
        pub(crate) fn charged(&self, environment: Environment, amount: u64) {
            let handles = self.0.get_or_init(|| {
                Environment::ALL.map(|environment| {
                    ::metrics::counter!(SPEND_CHARGED, "environment" => environment.as_str())
                })
            });
            handles[environment.slot()].increment(amount);
        }
    }
}

/// The same handles, empty, without the feature (`(())`: not unit structs, so that
/// `default()` reads the same at every call site).
#[cfg(not(feature = "metrics"))]
#[allow(dead_code)]
mod handles {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::environment::Environment;
    use crate::principal::CredentialKind;
    use crate::reject::RejectionKind;

    #[derive(Clone, Default)]
    pub(crate) struct RequestCounters(());
    impl RequestCounters {
        #[inline(always)]
        pub(crate) fn record(&self, _: Option<CredentialKind>, _: Option<RejectionKind>) {}
    }

    #[derive(Clone, Default)]
    pub(crate) struct LookupCounters(());
    impl LookupCounters {
        #[inline(always)]
        pub(crate) fn record(&self, _: &'static str, _: usize) {}
        #[inline(always)]
        pub(crate) fn waited(&self, _: &'static str, _: Duration) {}
    }

    #[derive(Clone, Default)]
    pub(crate) struct DecisionCounters(());
    impl DecisionCounters {
        #[inline(always)]
        pub(crate) fn record(&self, _: &Arc<str>, _: usize) {}
    }

    #[derive(Clone, Default)]
    pub(crate) struct CacheCounters(());
    impl CacheCounters {
        #[inline(always)]
        pub(crate) fn hit(&self) {}
        #[inline(always)]
        pub(crate) fn miss(&self) {}
    }

    #[derive(Clone, Default)]
    pub(crate) struct SpendCounters(());
    impl SpendCounters {
        #[inline(always)]
        pub(crate) fn charged(&self, _: Environment, _: u64) {}
    }
}

pub(crate) use handles::*;

/// The rare events: recorded by name (a registry lookup each, which they can afford).
#[cfg(feature = "metrics")]
mod record {
    use super::*;

    // Called by optional stores and listeners (features `cache`, `redis`, `postgres`).
    #[allow(dead_code)]
    pub(crate) fn cache_eviction(cause: &'static str) {
        ::metrics::counter!(CACHE_EVICTIONS, "cause" => cause).increment(1);
    }

    pub(crate) fn counted(name: &'static str) {
        ::metrics::counter!(name).increment(1);
    }

    pub(crate) fn by_environment(name: &'static str, environment: &'static str, amount: u64) {
        ::metrics::counter!(name, "environment" => environment).increment(amount);
    }

    // Called by optional stores and listeners (features `cache`, `redis`, `postgres`).
    #[allow(dead_code)]
    pub(crate) fn by_backend(name: &'static str, backend: &'static str) {
        ::metrics::counter!(name, "backend" => backend).increment(1);
    }

    // Called by optional stores and listeners (features `cache`, `redis`, `postgres`).
    #[allow(dead_code)]
    pub(crate) fn activity_dropped(sink: &'static str) {
        ::metrics::counter!(ACTIVITY_DROPPED, "sink" => sink).increment(1);
    }
}

/// The same calls, doing nothing, without the feature: call sites need no `cfg`.
#[cfg(not(feature = "metrics"))]
#[allow(dead_code)]
mod record {
    #[inline(always)]
    pub(crate) fn cache_eviction(_: &'static str) {}
    #[inline(always)]
    pub(crate) fn counted(_: &'static str) {}
    #[inline(always)]
    pub(crate) fn by_environment(_: &'static str, _: &'static str, _: u64) {}
    #[inline(always)]
    pub(crate) fn by_backend(_: &'static str, _: &'static str) {}
    #[inline(always)]
    pub(crate) fn activity_dropped(_: &'static str) {}
}

pub(crate) use record::*;
