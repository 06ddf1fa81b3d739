//! Key events: something happened to a key or a budget that its owner wants to hear of
//! (issued, updated, rotated, revoked, expiring, rotation due, a budget threshold crossed,
//! a rate limit hit repeatedly, a leak), delivered to the application's sinks, once per
//! crossing.
//!
//! ```
//! use std::sync::Arc;
//! use tower_api_key::events::{KeyEvent, KeyEvents};
//! use tower_api_key::manage::KeysApi;
//! use tower_api_key::{ForgScope, MemoryKeyStore};
//!
//! let events = KeyEvents::new().sink(|event: &KeyEvent| {
//!     // E-mail, Slack, a queue: the application's. Never a key or a digest in it.
//!     println!("{} {}", event.owner(), event.to_json());
//! });
//! let keys = Arc::new(MemoryKeyStore::<ForgScope>::new().with_policy(tower_api_key::forg::key_policy()));
//! let api: axum::Router = KeysApi::new(keys).events(events).router();
//! ```
//!
//! | emitted by | events |
//! |---|---|
//! | the management API ([`KeysApi::events`](crate::manage::KeysApi::events)) | `key.issued`, `key.updated`, `key.rotated`, `key.revoked` |
//! | the leak intake | `key.leaked` |
//! | the scheduled scan ([`KeyScan`]) | `key.expiring`, `key.rotation_due`, once per key and expiry or rotation age |
//! | the spend caps ([`SpendCaps::events`](crate::usage::SpendCaps::events)) | `budget.threshold` (80 % and 100 % by default), once per budget, threshold and period |
//! | the rate limits ([`RateLimits::events`](crate::rate_limit::RateLimits::events)) | `rate_limit.exceeded` at a key's 10th refusal by a class, once per key and class within the class's window |
//!
//! An event's id is its webhook's `webhook-id`; an event that happens outside a
//! management request (a crossing, a leak) also lands in the audit log
//! ([`KeyEvents::audit`]).

mod event;
mod gate;
#[cfg(feature = "redis")]
mod redis_gate;
mod scan;
mod sink;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod sql_gate;

pub use event::{KeyEvent, KeyEventKind, KeyRef};
pub use gate::{EventGate, GateFuture, MemoryEventGate};
#[cfg(feature = "redis")]
pub use redis_gate::RedisEventGate;
pub use scan::{KeyScan, ScanRun};
pub use sink::{EventFuture, EventSink, KeyEvents};
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub use sql_gate::SqlEventGate;
