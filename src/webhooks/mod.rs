//! Webhooks as the Standard Webhooks specification says them: each request carries
//! `webhook-id` (the event's id: the same on every retry), `webhook-timestamp` (Unix
//! seconds) and `webhook-signature` (`v1,` and the base64 HMAC-SHA256 of
//! `{id}.{timestamp}.{body}` under the endpoint's [`WebhookSecret`]).
//!
//! ```
//! use tower_api_key::webhooks::WebhookSecret;
//!
//! let secret = WebhookSecret::generate().unwrap();
//! let shown_once = secret.expose_secret();
//! assert!(shown_once.starts_with("whsec_"));
//! let signature = secret.sign("evt_1", 1_700_000_000, b"{}");
//! assert!(secret.verifies("evt_1", 1_700_000_000, b"{}", &signature));
//! assert!(!secret.verifies("evt_1", 1_700_000_001, b"{}", &signature));
//! ```
//!
//! | concern | types |
//! |---|---|
//! | an owner's endpoint and its secret | [`WebhookEndpoint`], [`WebhookSecret`], [`check_endpoint_url`] |
//! | the outbox: endpoints and deliveries in a shared store | [`WebhookStore`], [`MemoryWebhookStore`], `RedisWebhookStore` (feature `redis`), `SqlWebhookStore` (features `postgres`, `sqlite`), [`Delivery`], [`DeliveryState`], [`Attempt`] |
//! | events into the outbox | [`WebhookOutbox`] (an [`EventSink`](crate::events::EventSink)) |
//! | sending, retrying, dead letters | `WebhookSender` (feature `webhooks`), [`Retries`] |

mod delivery;
mod endpoint;
mod outbox;
#[cfg(feature = "redis")]
pub(crate) mod redis;
mod secret;
#[cfg(feature = "webhooks")]
mod sender;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod sql;
mod store;

pub use delivery::{Attempt, Delivery, DeliveryState, Retries};
pub use endpoint::{check_endpoint_url, InvalidEndpointUrl, WebhookEndpoint};
pub use outbox::WebhookOutbox;
#[cfg(feature = "redis")]
pub use redis::RedisWebhookStore;
pub use secret::{InvalidWebhookSecret, WebhookSecret};
#[cfg(feature = "webhooks")]
pub use sender::{SenderHandle, WebhookSender};
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub use sql::SqlWebhookStore;
pub use store::{MemoryWebhookStore, WebhookFuture, WebhookStore};
