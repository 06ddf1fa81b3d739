//! [`RedisConnection`]: the one handle every Redis-backed type talks through, to a
//! standalone server or a Redis Cluster (feature `redis`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), redis::RedisError> {
//! use tower_api_key::rate_limit::RedisRateLimiter;
//! use tower_api_key::store::RedisKeyStore;
//! use tower_api_key::{ForgScope, RedisConnection};
//!
//! // One server, or a cluster from any of its nodes: the types above do not care.
//! let redis = if let Ok(nodes) = std::env::var("REDIS_CLUSTER_NODES") {
//!     RedisConnection::cluster(nodes.split(',')).await?
//! } else {
//!     RedisConnection::open("redis://127.0.0.1:6379").await?
//! };
//! let store = RedisKeyStore::<ForgScope>::new(redis.clone()).with_policy(tower_api_key::forg::key_policy());
//! let limiter = RedisRateLimiter::new(redis);
//! # let _ = (store, limiter);
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, IntoConnectionInfo, Pipeline, RedisFuture, RedisResult, TlsCertificates, Value};

/// A connection to Redis, standalone or cluster, chosen when it is made; cheap to clone
/// (clones share the connection) and reconnecting by itself.
///
/// - **Standalone**: redis-rs's `ConnectionManager` (one multiplexed connection that
///   reconnects after a failure).
/// - **Cluster**: redis-rs's cluster connection: it learns the slot map from any node,
///   follows `MOVED` and `ASK` redirections, and refreshes the map after a failover. A node
///   that does not answer within 500 ms fails the command, as a standalone connection's
///   default.
///
/// Every command the crate sends names its keys, and each script's keys share one hash
/// tag, so both kinds serve the same types with the same API. Revocation messages use
/// classic pub/sub, which a cluster delivers to subscribers on every node: the
/// [`RevocationListener`](crate::store::RevocationListener) subscribes through one node
/// and moves to the next of the seed nodes when it loses it.
///
/// `rediss://` URLs use TLS (rustls, with Mozilla's roots); a private CA goes in with
/// [`from_client`](Self::from_client) (standalone, `redis::Client::build_with_tls`) or
/// [`cluster_with_tls`](Self::cluster_with_tls).
#[derive(Clone)]
pub struct RedisConnection {
    kind: Kind,
    /// A client per seed node: where the revocation listener subscribes.
    seeds: Arc<[redis::Client]>,
}

#[derive(Clone)]
enum Kind {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

impl RedisConnection {
    /// Connects to one server at `url` (`redis://` or `rediss://`).
    ///
    /// # Errors
    /// When the URL is invalid or the server cannot be reached.
    pub async fn open(url: &str) -> RedisResult<Self> {
        Self::from_client(redis::Client::open(url)?).await
    }

    /// Connects to one server with `client` (e.g. one built with a private CA by
    /// `redis::Client::build_with_tls`).
    ///
    /// # Errors
    /// When the server cannot be reached.
    pub async fn from_client(client: redis::Client) -> RedisResult<Self> {
        let connection = client.get_connection_manager().await?;
        Ok(Self {
            kind: Kind::Standalone(connection),
            seeds: Arc::from([client]),
        })
    }

    /// Connects to a Redis Cluster through `nodes`, the URLs of some of its nodes (one is
    /// enough; more let the connection and the revocation listener start while one is
    /// down).
    ///
    /// # Errors
    /// When a URL is invalid or no node can be reached.
    pub async fn cluster<I>(nodes: I) -> RedisResult<Self>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Self::cluster_from(nodes, None).await
    }

    /// [`cluster`](Self::cluster) over TLS with `certificates` (a private CA root, a
    /// client certificate): for `rediss://` nodes whose certificates no public root signs.
    ///
    /// # Errors
    /// When a URL is invalid or no node can be reached.
    pub async fn cluster_with_tls<I>(nodes: I, certificates: TlsCertificates) -> RedisResult<Self>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Self::cluster_from(nodes, Some(certificates)).await
    }

    async fn cluster_from<I>(nodes: I, certificates: Option<TlsCertificates>) -> RedisResult<Self>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let nodes: Vec<redis::ConnectionInfo> = nodes
            .into_iter()
            .map(|url| url.as_ref().trim().into_connection_info())
            .collect::<RedisResult<_>>()?;
        let seeds = nodes
            .iter()
            .map(|node| match &certificates {
                Some(certificates) => {
                    redis::Client::build_with_tls(node.clone(), certificates.clone())
                }
                None => redis::Client::open(node.clone()),
            })
            .collect::<RedisResult<Vec<_>>>()?;
        // As a standalone connection's default: a node that does not answer within 500 ms
        // fails the command (the layers' own timeouts still bound every request).
        let mut builder =
            ClusterClientBuilder::new(nodes).response_timeout(Duration::from_millis(500));
        if let Some(certificates) = certificates {
            builder = builder.certs(certificates);
        }
        let connection = builder.build()?.get_async_connection().await?;
        Ok(Self {
            kind: Kind::Cluster(connection),
            seeds: Arc::from(seeds),
        })
    }

    /// Whether this is a cluster connection.
    pub fn is_cluster(&self) -> bool {
        matches!(self.kind, Kind::Cluster(_))
    }

    /// Asks the server (on a cluster, every master the slot map names) to answer a
    /// `PING`, for a readiness probe: `Ok` with the time it took, or the error.
    ///
    /// # Errors
    /// When a server does not answer (within the connection's response timeout) or
    /// answers with an error.
    pub async fn ping(&self) -> RedisResult<Duration> {
        let started = Instant::now();
        let mut connection = self.clone();
        match &self.kind {
            Kind::Standalone(_) => {
                redis::cmd("PING")
                    .query_async::<()>(&mut connection)
                    .await?
            }
            Kind::Cluster(cluster) => {
                // Each master by address: a multi-node route skips the nodes it has no
                // connection to, so a dead master would go unnoticed.
                let mut cluster = cluster.clone();
                let slots = cluster
                    .route_command(
                        redis::cmd("CLUSTER").arg("SLOTS").clone(),
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
                    )
                    .await?;
                let mut masters = masters_of(slots);
                masters.sort();
                masters.dedup();
                if masters.is_empty() {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::ClusterConnectionNotFound,
                        "CLUSTER SLOTS named no master",
                    )));
                }
                for (host, port) in masters {
                    let address =
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
                    cluster.route_command(redis::cmd("PING"), address).await?;
                }
            }
        }
        Ok(started.elapsed())
    }

    /// On a cluster, publishes on `channel` through each master by address (a message
    /// published on any master crosses the cluster bus to every subscriber, as a
    /// revocation published by a script on its slot's master does), the payload naming
    /// the master (`payload(origin)`, `origin` = `host:port`); answers the masters it
    /// reached. `None` on one server.
    pub(crate) async fn publish_on_every_master(
        &self,
        channel: &str,
        payload: impl Fn(&str) -> String,
    ) -> Option<Vec<String>> {
        let Kind::Cluster(cluster) = &self.kind else {
            return None;
        };
        let mut cluster = cluster.clone();
        let slots = cluster
            .route_command(
                redis::cmd("CLUSTER").arg("SLOTS").clone(),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
            )
            .await;
        let mut masters = slots.map(masters_of).unwrap_or_default();
        masters.sort();
        masters.dedup();
        let mut reached = Vec::with_capacity(masters.len());
        for (host, port) in masters {
            let origin = format!("{host}:{port}");
            let publish = redis::cmd("PUBLISH")
                .arg(channel)
                .arg(payload(&origin))
                .clone();
            let address = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
            if cluster.route_command(publish, address).await.is_ok() {
                reached.push(origin);
            }
        }
        Some(reached)
    }

    /// The seed nodes' clients, for connections of their own (pub/sub).
    pub(crate) fn seeds(&self) -> &[redis::Client] {
        &self.seeds
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.kind {
            Kind::Standalone(connection) => connection.req_packed_command(cmd),
            Kind::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.kind {
            Kind::Standalone(connection) => connection.req_packed_commands(pipeline, offset, count),
            Kind::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.kind {
            Kind::Standalone(connection) => connection.get_db(),
            Kind::Cluster(connection) => connection.get_db(),
        }
    }
}

impl fmt::Debug for RedisConnection {
    /// The kind and the seed nodes' addresses; never a password (URLs are not printed).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes: Vec<String> = self
            .seeds
            .iter()
            .map(|client| client.get_connection_info().addr().to_string())
            .collect();
        f.debug_struct("RedisConnection")
            .field("cluster", &self.is_cluster())
            .field("nodes", &nodes)
            .finish()
    }
}

/// The (host, port) of each slot range's master in a `CLUSTER SLOTS` reply: entries are
/// `[start, end, [host, port, id, …], replicas…]`.
fn masters_of(slots: Value) -> Vec<(String, u16)> {
    let Value::Array(ranges) = slots else {
        return Vec::new();
    };
    ranges
        .into_iter()
        .filter_map(|range| match range {
            Value::Array(parts) => match parts.into_iter().nth(2) {
                Some(Value::Array(master)) => match master.as_slice() {
                    [Value::BulkString(host), Value::Int(port), ..] => Some((
                        String::from_utf8_lossy(host).into_owned(),
                        u16::try_from(*port).ok()?,
                    )),
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Whose per-request state a Redis key holds: its hash tag.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Subject<'a> {
    /// A key, by id.
    Key(&'a str),
    /// An owner.
    Owner(&'a str),
    /// A client address.
    Client(std::net::IpAddr),
}

/// `<namespace>:{<subject>}:<what>`: one subject's state (a key's, an owner's, an
/// address's) under a hash tag of its own, so a cluster spreads subjects over its slots
/// while everything of one subject that a script touches shares a slot.
pub(crate) fn subject_key(
    namespace: &str,
    subject: Subject<'_>,
    what: fmt::Arguments<'_>,
) -> String {
    match subject {
        Subject::Key(id) => format!("{namespace}:{{k:{id}}}:{what}"),
        Subject::Owner(owner) => format!("{namespace}:{{o:{owner}}}:{what}"),
        Subject::Client(ip) => format!("{namespace}:{{ip:{ip}}}:{what}"),
    }
}

#[cfg(test)]
mod tests {
    use crate::store::redis::scripts;

    /// Every Lua script the crate runs, by name.
    const SCRIPTS: [(&str, &str); 17] = [
        ("ISSUE", scripts::ISSUE),
        ("REVOKE", scripts::REVOKE),
        ("DELETE", scripts::DELETE),
        ("PURGE", scripts::PURGE),
        ("SET_DISABLED", scripts::SET_DISABLED),
        ("TOUCH", scripts::TOUCH),
        ("REPLACE", scripts::REPLACE),
        ("ADD_ENDPOINT", crate::webhooks::redis::ADD_ENDPOINT),
        ("ENQUEUE", crate::webhooks::redis::ENQUEUE),
        ("CLAIM", crate::webhooks::redis::CLAIM),
        ("FINISH", crate::webhooks::redis::FINISH),
        ("OUTBOX_PURGE", crate::webhooks::redis::PURGE),
        ("GCRA", crate::rate_limit::redis::GCRA),
        ("GCRA_REFUND", crate::rate_limit::redis::GCRA_REFUND),
        (
            "IN_FLIGHT_ACQUIRE",
            crate::rate_limit::in_flight::redis::ACQUIRE,
        ),
        (
            "IN_FLIGHT_RENEW",
            crate::rate_limit::in_flight::redis::RENEW,
        ),
        ("CHARGE", crate::usage::redis::CHARGE),
    ];

    /// Commands whose arguments are no keys (`PUBLISH` names a channel).
    const KEYLESS: [&str; 2] = ["TIME", "PUBLISH"];

    /// The key names a script passes to `redis.call` that do not come from `KEYS`: each
    /// key argument must be `KEYS[…]`, or a variable (or function parameter) that is only
    /// ever given `KEYS[…]` or such a variable. `DEL` takes keys in every argument, the
    /// others in the first.
    fn undeclared_keys(script: &str) -> Vec<String> {
        let mut found = Vec::new();
        for call in script.split("redis.call(").skip(1) {
            let arguments = arguments(call);
            let Some(command) = arguments.first().map(|c| c.trim_matches('\'').to_owned()) else {
                continue;
            };
            if KEYLESS.contains(&command.as_str()) {
                continue;
            }
            let keys = if command == "DEL" {
                &arguments[1..]
            } else {
                &arguments[1..2.min(arguments.len())]
            };
            for key in keys {
                if !declared(script, key, 0) {
                    found.push(format!("{command} {key}"));
                }
            }
        }
        found
    }

    /// The comma-separated arguments up to the call's closing parenthesis.
    fn arguments(call: &str) -> Vec<String> {
        let (mut depth, mut current, mut all) = (0_i32, String::new(), Vec::new());
        for c in call.chars() {
            match c {
                '(' | '[' => depth += 1,
                ')' if depth == 0 => break,
                ')' | ']' => depth -= 1,
                ',' if depth == 0 => {
                    all.push(current.trim().to_owned());
                    current.clear();
                    continue;
                }
                _ => {}
            }
            current.push(c);
        }
        all.push(current.trim().to_owned());
        all
    }

    fn declared(script: &str, expression: &str, depth: usize) -> bool {
        let is_identifier = !expression.is_empty()
            && expression
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if expression.starts_with("KEYS[")
            && expression.ends_with(']')
            && !expression.contains("..")
        {
            return true;
        }
        if !is_identifier || depth > 4 {
            return false;
        }
        // Every value the variable is given: assignments `a, b = x, y` and, for a
        // function's parameter, the arguments of every call.
        let mut values = Vec::new();
        for line in script.lines().map(str::trim) {
            let line = line.strip_prefix("local ").unwrap_or(line);
            if let Some(signature) = line.strip_prefix("function ") {
                let (name, parameters) = signature.split_once('(').unwrap_or((signature, ""));
                let parameters: Vec<&str> = parameters
                    .trim_end_matches(')')
                    .split(',')
                    .map(str::trim)
                    .collect();
                if let Some(position) = parameters.iter().position(|p| *p == expression) {
                    let call = format!("{name}(");
                    let calls = script
                        .match_indices(&call)
                        .filter(|(at, _)| !script[..*at].ends_with("function "));
                    for (at, _) in calls {
                        if let Some(argument) = arguments(&script[at + call.len()..]).get(position)
                        {
                            values.push(argument.clone());
                        }
                    }
                }
                continue;
            }
            let Some((left, right)) = line.split_once(" = ") else {
                continue;
            };
            let names: Vec<&str> = left.split(',').map(str::trim).collect();
            if let Some(position) = names.iter().position(|n| *n == expression) {
                let right: Vec<String> = arguments(right);
                values.push(right.get(position).cloned().unwrap_or_default());
            }
        }
        !values.is_empty()
            && values
                .iter()
                .all(|value| declared(script, value, depth + 1))
    }

    #[test]
    fn every_script_declares_every_key_it_touches() {
        for (name, script) in SCRIPTS {
            assert_eq!(
                undeclared_keys(script),
                Vec::<String>::new(),
                "{name} builds key names"
            );
        }
    }

    /// The check finds what the scripts did before keys were declared.
    #[test]
    fn the_check_finds_keys_built_inside_a_script() {
        let built = r"
local digest = redis.call('GET', KEYS[1])
local key = ARGV[1] .. 'digest:' .. digest
redis.call('HSET', key, 'revoked', '1')
redis.call('DEL', KEYS[2], ARGV[1] .. 'id:' .. ARGV[2])
local spent = redis.call('GET', KEYS[1] .. ':' .. 7)
local function expire(record_key) redis.call('PEXPIRE', record_key, 1) end
expire(ARGV[3])
redis.call('PUBLISH', ARGV[4], 'id')
";
        assert_eq!(
            undeclared_keys(built),
            [
                "HSET key",
                "DEL ARGV[1] .. 'id:' .. ARGV[2]",
                "GET KEYS[1] .. ':' .. 7",
                "PEXPIRE record_key",
            ]
        );
    }
}
