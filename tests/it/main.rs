//! The integration tests, one binary (one link of tonic, reqwest, fantoccini and the
//! crate): a module per file, as the separate binaries were. The two tests that install a
//! global `tracing` subscriber keep binaries of their own (`tests/activity_tracing.rs`,
//! `tests/hygiene.rs`).

mod common;
mod examples;
#[macro_use]
mod conformance;
#[macro_use]
mod usage_conformance;
#[macro_use]
mod audit_conformance;
#[macro_use]
mod webhook_conformance;

mod activity;
mod architecture;
mod audit_logs;
mod auth;
mod budget_events;
mod cached_store;
mod concurrency;
mod configuration;
mod dashboard;
mod event_gates;
mod events;
mod faults;
mod forward_auth;
mod forward_auth_layer;
mod fuzz_corpus;
mod hostile_input;
mod hyper_server;
mod in_flight;
mod key_scan;
mod keys;
mod last_used;
mod leaks;
mod login;
mod manage;
mod manage_audit;
mod manage_redis;
mod manage_update;
mod metrics;
mod neutral_defaults;
mod openapi_conformance;
mod policy_subject;
mod postgres_store;
mod properties;
mod quickstart;
mod quickstart_limits;
mod rate_limit;
mod rate_limit_events;
mod redis_cluster;
mod redis_shared;
mod require;
mod rotation;
mod scopes;
mod sessions;
mod sessions_redis;
mod spend_caps;
mod spend_caps_redis;
mod spend_report;
mod sqlite_store;
mod status_tables;
mod store;
mod tonic_server;
mod usage;
mod usage_history;
mod vocabulary;
mod webhook_stores;
mod webhooks;
mod weighted_limits;
mod wiring;
