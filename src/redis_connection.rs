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

/// `TCP_NODELAY` on (redis-rs leaves Nagle's algorithm on): commands multiplexed on one
/// connection go out at once instead of waiting for the previous one's acknowledgement.
fn no_delay() -> redis::io::tcp::TcpSettings {
    redis::io::tcp::TcpSettings::default().set_nodelay(true)
}

impl RedisConnection {
    /// Connects to one server at `url` (`redis://` or `rediss://`).
    ///
    /// # Errors
    /// When the URL is invalid or the server cannot be reached.
    pub async fn open(url: &str) -> RedisResult<Self> {
        let info = url
            .trim()
            .into_connection_info()?
            .set_tcp_settings(no_delay());
        Self::from_client(redis::Client::open(info)?).await
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
        let mut builder = ClusterClientBuilder::new(nodes)
            .response_timeout(Duration::from_millis(500))
            .tcp_settings(no_delay());
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
mod script_keys;
