//! [`RedisEventGate`]: "once per crossing" decided by Redis, for every instance together
//! (feature `redis`).

use std::fmt;
use std::time::Duration;

use super::{EventGate, GateFuture};
use crate::store::{StoreError, StoreErrorKind};
use crate::RedisConnection;

/// One key per crossing, `SET <namespace>:{e:<crossing>}:once 1 NX PX <remember>`: the
/// instance whose `SET` lands first announces it; the key expires when the crossing need
/// no longer be remembered. Tagged per crossing, so a cluster spreads them.
#[derive(Clone)]
pub struct RedisEventGate {
    connection: RedisConnection,
    namespace: String,
}

impl RedisEventGate {
    /// Crossings through `connection`, under `namespace:`.
    pub fn new(connection: RedisConnection, namespace: &str) -> Self {
        Self {
            connection,
            namespace: namespace.to_owned(),
        }
    }

    fn key(&self, crossing: &str) -> String {
        format!("{}:{{e:{crossing}}}:once", self.namespace)
    }
}

fn unavailable(error: redis::RedisError) -> StoreError {
    StoreError::new(StoreErrorKind::Unavailable, error)
}

impl EventGate for RedisEventGate {
    fn first<'a>(&'a self, crossing: &'a str, remember: Duration) -> GateFuture<'a> {
        Box::pin(async move {
            let millis = u64::try_from(remember.as_millis())
                .unwrap_or(u64::MAX)
                .clamp(1, 1 << 53);
            let mut connection = self.connection.clone();
            let set: Option<String> = redis::cmd("SET")
                .arg(self.key(crossing))
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(millis)
                .query_async(&mut connection)
                .await
                .map_err(unavailable)?;
            Ok(set.is_some())
        })
    }

    fn forget<'a>(&'a self, crossing: &'a str) -> GateFuture<'a> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let removed: i64 = redis::cmd("DEL")
                .arg(self.key(crossing))
                .query_async(&mut connection)
                .await
                .map_err(unavailable)?;
            Ok(removed > 0)
        })
    }
}

impl fmt::Debug for RedisEventGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisEventGate")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}
