//! The examples the tests drive, compiled once for the whole binary.
#![allow(dead_code)]

#[cfg(feature = "axum")]
#[path = "../../examples/quickstart.rs"]
pub mod quickstart;

#[cfg(feature = "axum")]
#[path = "../../examples/forward_auth.rs"]
pub mod forward_auth;

#[cfg(feature = "axum")]
#[path = "../../examples/minimal.rs"]
pub mod minimal;

#[path = "../../examples/hyper_server.rs"]
pub mod hyper_server;

#[path = "../../examples/tonic_server.rs"]
pub mod tonic_server;

// The example brings its own copy of the test cluster harness (it runs alone too).
#[cfg(feature = "redis")]
#[allow(clippy::duplicate_mod)]
#[path = "../../examples/redis_cluster.rs"]
pub mod redis_cluster;
