//! [`RedisWebhookStore`]: endpoints and the outbox in Redis, shared by every instance
//! (feature `redis`; standalone or Redis Cluster).

use std::fmt;
use std::time::{Duration, SystemTime};

use redis::{AsyncCommands, Script};

use super::{Attempt, Delivery, WebhookEndpoint, WebhookFuture, WebhookStore};
use crate::redis_connection::{subject_key, Subject};
use crate::store::{StoreError, StoreErrorKind};
use crate::support::unix_millis::millis;
use crate::RedisConnection;

/// Adds an endpoint below the owner's limit. KEYS: the owner's endpoint hash. ARGV: id,
/// JSON, limit. Returns 1 (added) or 0.
pub(crate) const ADD_ENDPOINT: &str = r"
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
return redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
";

/// Enqueues deliveries not enqueued before. KEYS: due set, deliveries hash, then one
/// history set per delivery. ARGV: n, then per delivery: member, JSON, due (ms),
/// created (ms). Returns how many were new.
pub(crate) const ENQUEUE: &str = r"
local n = tonumber(ARGV[1])
local added = 0
for i = 0, n - 1 do
  local member, json, due, created = ARGV[2 + 4 * i], ARGV[3 + 4 * i], ARGV[4 + 4 * i], ARGV[5 + 4 * i]
  if redis.call('HSETNX', KEYS[2], member, json) == 1 then
    redis.call('ZADD', KEYS[1], due, member)
    redis.call('ZADD', KEYS[3 + i], created, member)
    added = added + 1
  end
end
return added
";

/// Leases due deliveries. KEYS: due set, deliveries hash. ARGV: now (ms), lease end (ms),
/// limit. Returns the JSONs of the leased deliveries.
pub(crate) const CLAIM: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local claimed = {}
for _, member in ipairs(due) do
  local json = redis.call('HGET', KEYS[2], member)
  if json then
    redis.call('ZADD', KEYS[1], ARGV[2], member)
    table.insert(claimed, json)
  else
    redis.call('ZREM', KEYS[1], member)
  end
end
return claimed
";

/// Records an attempt. KEYS: due set, deliveries hash, ended set. ARGV: member, the new
/// JSON, 'pending' or the ended state, next due or ended (ms). Returns 1, or 0 when the
/// delivery is gone (its endpoint was removed).
pub(crate) const FINISH: &str = r"
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
if ARGV[3] == 'pending' then
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
end
return 1
";

/// Deletes deliveries that ended before a time. KEYS: ended set, deliveries hash. ARGV:
/// the time (ms), at most how many. Returns the members deleted (the client drops them
/// from their endpoints' history sets).
pub(crate) const PURGE: &str = r"
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(old) do
  redis.call('HDEL', KEYS[2], member)
  redis.call('ZREM', KEYS[1], member)
end
return old
";

/// Endpoints in a hash per owner (`{o:<owner>}:webhooks`, where the owner limit is one
/// script) and one key per endpoint id (`{w:<id>}:webhook`, for the sender's lookup);
/// the outbox under one hash tag (`{outbox}`: the due set scored by the next attempt,
/// the deliveries hash, the set of ended deliveries scored by when, and each endpoint's
/// history), so that claiming, which spans every owner, is one script on one node.
/// A claim leases each delivery by moving its score to the lease's end: a sender that
/// dies mid-attempt leaves it due again then. Ended deliveries are deleted by `purge`.
/// Secrets are stored as the endpoint's JSON (the sender signs with them).
#[derive(Clone)]
pub struct RedisWebhookStore {
    connection: RedisConnection,
    namespace: String,
    scripts: std::sync::Arc<[Script; 5]>,
}

fn unavailable(error: redis::RedisError) -> StoreError {
    StoreError::new(StoreErrorKind::Unavailable, error)
}

fn corrupt(_: serde_json::Error) -> StoreError {
    StoreError::new(StoreErrorKind::Other, "corrupt webhook record")
}

/// A delivery's member in the outbox: event and endpoint ids have no `|`.
fn member(delivery: &Delivery) -> String {
    format!("{}|{}", delivery.event_id, delivery.endpoint_id)
}

impl RedisWebhookStore {
    /// Endpoints and deliveries through `connection`, under `namespace:`.
    pub fn new(connection: RedisConnection, namespace: &str) -> Self {
        Self {
            connection,
            namespace: namespace.to_owned(),
            scripts: std::sync::Arc::new([
                Script::new(ADD_ENDPOINT),
                Script::new(ENQUEUE),
                Script::new(CLAIM),
                Script::new(FINISH),
                Script::new(PURGE),
            ]),
        }
    }

    /// The namespace (another instance on the same data uses the same).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn owner_key(&self, owner: &str) -> String {
        subject_key(
            &self.namespace,
            Subject::Owner(owner),
            format_args!("webhooks"),
        )
    }

    fn endpoint_key(&self, id: &str) -> String {
        format!("{}:{{w:{id}}}:webhook", self.namespace)
    }

    fn outbox(&self, what: &str) -> String {
        format!("{}:{{outbox}}:{what}", self.namespace)
    }

    fn history_key(&self, endpoint: &str) -> String {
        self.outbox(&format!("history:{endpoint}"))
    }
}

impl WebhookStore for RedisWebhookStore {
    fn add_endpoint<'a>(
        &'a self,
        endpoint: &'a WebhookEndpoint,
        max: usize,
    ) -> WebhookFuture<'a, bool> {
        Box::pin(async move {
            let json = serde_json::to_string(endpoint).map_err(corrupt)?;
            let mut connection = self.connection.clone();
            let added: i64 = self.scripts[0]
                .key(self.owner_key(endpoint.owner()))
                .arg(endpoint.id())
                .arg(&json)
                .arg(max)
                .invoke_async(&mut connection)
                .await
                .map_err(unavailable)?;
            if added == 1 {
                let () = connection
                    .set(self.endpoint_key(endpoint.id()), &json)
                    .await
                    .map_err(unavailable)?;
            }
            Ok(added == 1)
        })
    }

    fn endpoints<'a>(&'a self, owner: &'a str) -> WebhookFuture<'a, Vec<WebhookEndpoint>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let all: Vec<String> = connection
                .hvals(self.owner_key(owner))
                .await
                .map_err(unavailable)?;
            let mut endpoints = all
                .iter()
                .map(|json| serde_json::from_str::<WebhookEndpoint>(json).map_err(corrupt))
                .collect::<Result<Vec<_>, _>>()?;
            endpoints.sort_by_key(|endpoint| (endpoint.created_at(), endpoint.id().to_owned()));
            Ok(endpoints)
        })
    }

    fn endpoint<'a>(&'a self, id: &'a str) -> WebhookFuture<'a, Option<WebhookEndpoint>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let json: Option<String> = connection
                .get(self.endpoint_key(id))
                .await
                .map_err(unavailable)?;
            json.map(|json| serde_json::from_str(&json).map_err(corrupt))
                .transpose()
        })
    }

    fn remove_endpoint<'a>(&'a self, owner: &'a str, id: &'a str) -> WebhookFuture<'a, bool> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let removed: i64 = connection
                .hdel(self.owner_key(owner), id)
                .await
                .map_err(unavailable)?;
            if removed == 0 {
                return Ok(false);
            }
            let () = connection
                .del(self.endpoint_key(id))
                .await
                .map_err(unavailable)?;
            // Its deliveries: out of the outbox, in one transaction on the outbox's node.
            let history = self.history_key(id);
            let members: Vec<String> = connection
                .zrange(&history, 0, -1)
                .await
                .map_err(unavailable)?;
            if !members.is_empty() {
                let mut pipe = redis::pipe();
                pipe.atomic()
                    .hdel(self.outbox("deliveries"), &members)
                    .zrem(self.outbox("due"), &members)
                    .zrem(self.outbox("ended"), &members);
                let () = pipe
                    .query_async(&mut connection)
                    .await
                    .map_err(unavailable)?;
            }
            let () = connection.del(&history).await.map_err(unavailable)?;
            Ok(true)
        })
    }

    fn enqueue(&self, deliveries: Vec<Delivery>) -> WebhookFuture<'_, ()> {
        Box::pin(async move {
            if deliveries.is_empty() {
                return Ok(());
            }
            let mut invocation = self.scripts[1].prepare_invoke();
            invocation
                .key(self.outbox("due"))
                .key(self.outbox("deliveries"));
            for delivery in &deliveries {
                invocation.key(self.history_key(&delivery.endpoint_id));
            }
            invocation.arg(deliveries.len());
            for delivery in &deliveries {
                invocation
                    .arg(member(delivery))
                    .arg(serde_json::to_string(delivery).map_err(corrupt)?)
                    .arg(millis(delivery.next_at))
                    .arg(millis(delivery.created_at));
            }
            let mut connection = self.connection.clone();
            let _added: i64 = invocation
                .invoke_async(&mut connection)
                .await
                .map_err(unavailable)?;
            Ok(())
        })
    }

    fn claim(
        &self,
        now: SystemTime,
        lease: Duration,
        limit: usize,
    ) -> WebhookFuture<'_, Vec<Delivery>> {
        Box::pin(async move {
            let until = now.checked_add(lease).unwrap_or(now);
            let mut connection = self.connection.clone();
            let claimed: Vec<String> = self.scripts[2]
                .key(self.outbox("due"))
                .key(self.outbox("deliveries"))
                .arg(millis(now))
                .arg(millis(until))
                .arg(limit)
                .invoke_async(&mut connection)
                .await
                .map_err(unavailable)?;
            claimed
                .iter()
                .map(|json| {
                    serde_json::from_str::<Delivery>(json)
                        .map_err(corrupt)
                        .map(|mut delivery| {
                            delivery.next_at = until;
                            delivery
                        })
                })
                .collect()
        })
    }

    fn finish<'a>(&'a self, delivery: &'a Delivery, attempt: Attempt) -> WebhookFuture<'a, ()> {
        Box::pin(async move {
            let updated = delivery.after(attempt);
            let mut connection = self.connection.clone();
            let _found: i64 = self.scripts[3]
                .key(self.outbox("due"))
                .key(self.outbox("deliveries"))
                .key(self.outbox("ended"))
                .arg(member(delivery))
                .arg(serde_json::to_string(&updated).map_err(corrupt)?)
                .arg(updated.state.as_str())
                .arg(millis(updated.next_at))
                .invoke_async(&mut connection)
                .await
                .map_err(unavailable)?;
            Ok(())
        })
    }

    fn deliveries<'a>(
        &'a self,
        endpoint_id: &'a str,
        limit: usize,
    ) -> WebhookFuture<'a, Vec<Delivery>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let stop = isize::try_from(limit)
                .unwrap_or(isize::MAX)
                .saturating_sub(1);
            let members: Vec<String> = connection
                .zrevrange(self.history_key(endpoint_id), 0, stop)
                .await
                .map_err(unavailable)?;
            if members.is_empty() {
                return Ok(Vec::new());
            }
            let found: Vec<Option<String>> = redis::cmd("HMGET")
                .arg(self.outbox("deliveries"))
                .arg(&members)
                .query_async(&mut connection)
                .await
                .map_err(unavailable)?;
            found
                .into_iter()
                .flatten()
                .map(|json| serde_json::from_str(&json).map_err(corrupt))
                .collect()
        })
    }

    fn purge(&self, before: SystemTime) -> WebhookFuture<'_, usize> {
        Box::pin(async move {
            let mut purged = 0;
            loop {
                let mut connection = self.connection.clone();
                let gone: Vec<String> = self.scripts[4]
                    .key(self.outbox("ended"))
                    .key(self.outbox("deliveries"))
                    .arg(millis(before))
                    .arg(500)
                    .invoke_async(&mut connection)
                    .await
                    .map_err(unavailable)?;
                for member in &gone {
                    if let Some((_, endpoint)) = member.split_once('|') {
                        let _: i64 = connection
                            .zrem(self.history_key(endpoint), member)
                            .await
                            .map_err(unavailable)?;
                    }
                }
                purged += gone.len();
                if gone.len() < 500 {
                    return Ok(purged);
                }
            }
        })
    }
}

impl fmt::Debug for RedisWebhookStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisWebhookStore")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}
