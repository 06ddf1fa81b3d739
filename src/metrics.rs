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
//! let service = AuthLayer::new(Arc::new(MemoryKeyStore::<ForgScope>::new())).layer(inner);
//! let response = metrics::with_local_recorder(&recorder, || {
//!     service.oneshot(Request::new(())).now_or_never().unwrap().unwrap()
//! });
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//!
//! let (key, _, _, value) = snapshotter.snapshot().into_vec().pop().unwrap();
//! assert_eq!(key.key().name(), tower_api_key::metrics::REQUESTS);
//! let labels: Vec<String> = key.key().labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
//! assert_eq!(labels, ["credential=none", "outcome=invalid_api_key"]);
//! assert_eq!(value, DebugValue::Counter(1));
//! ```
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
//! | [`RATE_LIMIT_DECISIONS`] | counter | `class`, `outcome` (`allowed`, `limited`, `error`) | rate-limit checks |
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

#[cfg(feature = "metrics")]
mod record {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    pub(crate) fn request(credential: &'static str, outcome: &'static str) {
        ::metrics::counter!(REQUESTS, "credential" => credential, "outcome" => outcome)
            .increment(1);
    }

    pub(crate) fn lookup(backend: &'static str, result: &'static str) {
        ::metrics::counter!(STORE_LOOKUPS, "backend" => backend, "result" => result).increment(1);
    }

    pub(crate) fn lookup_waited(backend: &'static str, waited: Duration) {
        ::metrics::histogram!(STORE_LOOKUP_DURATION, "backend" => backend)
            .record(waited.as_secs_f64());
    }

    // Called by optional stores and listeners (features `cache`, `redis`, `postgres`).
    #[allow(dead_code)]
    pub(crate) fn cache_eviction(cause: &'static str) {
        ::metrics::counter!(CACHE_EVICTIONS, "cause" => cause).increment(1);
    }

    pub(crate) fn rate_limit(class: &Arc<str>, outcome: &'static str) {
        ::metrics::counter!(RATE_LIMIT_DECISIONS, "class" => Arc::clone(class), "outcome" => outcome)
            .increment(1);
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
    use std::sync::Arc;
    use std::time::Duration;

    #[inline(always)]
    pub(crate) fn request(_: &'static str, _: &'static str) {}
    #[inline(always)]
    pub(crate) fn lookup(_: &'static str, _: &'static str) {}
    #[inline(always)]
    pub(crate) fn lookup_waited(_: &'static str, _: Duration) {}
    #[inline(always)]
    pub(crate) fn cache_eviction(_: &'static str) {}
    #[inline(always)]
    pub(crate) fn rate_limit(_: &Arc<str>, _: &'static str) {}
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
