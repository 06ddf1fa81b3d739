//! [`ScriptRunner`]: one Lua script on one connection under a key namespace, what every
//! script-backed backend holds (`RedisRateLimiter`, `RedisUsage`), written once.

use std::fmt;
use std::sync::Arc;

use redis::Script;

use crate::backend_error::BackendError;
use crate::RedisConnection;

#[derive(Clone)]
pub(crate) struct ScriptRunner {
    pub(crate) connection: RedisConnection,
    /// Every key the script touches starts with it (default `tak`).
    pub(crate) namespace: Arc<str>,
    pub(crate) script: Arc<Script>,
}

impl ScriptRunner {
    /// `source` on `connection`, namespace `tak`.
    pub(crate) fn new(connection: RedisConnection, source: &str) -> Self {
        Self {
            connection,
            namespace: Arc::from("tak"),
            script: Arc::new(Script::new(source)),
        }
    }

    /// Connects to `url`: a backend's failure if it cannot.
    pub(crate) async fn connect(url: &str, source: &str) -> Result<Self, BackendError> {
        let connection = RedisConnection::open(url)
            .await
            .map_err(BackendError::new)?;
        Ok(Self::new(connection, source))
    }

    /// The backend's `Debug`: its name and namespace, never more.
    pub(crate) fn fmt_as(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(name)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}
