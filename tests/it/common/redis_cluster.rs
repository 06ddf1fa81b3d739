//! A private Redis Cluster of three masters (or `REDIS_CLUSTER_NODES`): three
//! `redis-server --cluster-enabled yes` on free loopback ports, joined by
//! `redis-cli --cluster create`. [`RedisCluster::shared`] is one cluster for the whole test
//! binary, stopped by a watchdog when the test process exits; [`RedisCluster::start`] is a
//! private one for a test that restarts a node, stopped on drop.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use tower_api_key::RedisConnection;

pub struct RedisCluster {
    /// The masters' ports (empty for `REDIS_CLUSTER_NODES`).
    pub ports: Vec<u16>,
    /// Their cluster bus ports: chosen free too, as the default (port + 10,000) may be
    /// taken or past 65,535 for a port from the ephemeral range.
    bus_ports: Vec<u16>,
    /// The masters' URLs.
    pub urls: Vec<String>,
    dir: PathBuf,
    owned: bool,
    /// Whether every write is fsynced (`appendfsync always`), for a test that kills a
    /// node and expects its data back; else once a second.
    durable: bool,
    /// For a cluster that speaks only TLS (clients and bus): the PEM of the CA that issued
    /// its certificate.
    pub ca_pem: Option<String>,
    /// A master that announces another cluster bus port than its own (a proxy's, so a
    /// test can cut the bus to it): the node and the announced port.
    announced_bus: Option<(usize, u16)>,
}

/// How a `redis-server` listens on `port`: plain, or (`tls`) only TLS with `server.crt`,
/// `server.key` and `ca.crt` from `dir`, clients not asked for certificates. Shared with
/// the single-server harness (this file stands alone in the example and the bench).
pub fn listen_args(dir: &std::path::Path, port: u16, tls: bool) -> Vec<std::ffi::OsString> {
    if !tls {
        return vec!["--port".into(), port.to_string().into()];
    }
    let file = |name: &str| dir.join(name).into_os_string();
    vec![
        "--port".into(),
        "0".into(),
        "--tls-port".into(),
        port.to_string().into(),
        "--tls-cert-file".into(),
        file("server.crt"),
        "--tls-key-file".into(),
        file("server.key"),
        "--tls-ca-cert-file".into(),
        file("ca.crt"),
        "--tls-auth-clients".into(),
        "no".into(),
    ]
}

/// `n` distinct free loopback ports (held together while chosen, so none repeats).
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|listener| listener.local_addr().unwrap().port())
        .collect()
}

impl RedisCluster {
    /// The cluster every test of this binary shares (each uses namespaces of its own), or
    /// `None` when told to skip (`TOWER_API_KEY_SKIP_REDIS=1`).
    pub fn shared() -> Option<&'static RedisCluster> {
        static CLUSTER: OnceLock<Option<RedisCluster>> = OnceLock::new();
        CLUSTER
            .get_or_init(|| {
                if let Ok(nodes) = std::env::var("REDIS_CLUSTER_NODES") {
                    return Some(RedisCluster {
                        ports: Vec::new(),
                        bus_ports: Vec::new(),
                        urls: nodes.split(',').map(str::to_owned).collect(),
                        dir: PathBuf::new(),
                        owned: false,
                        durable: false,
                        ca_pem: None,
                        announced_bus: None,
                    });
                }
                match Self::launch(false, false, None) {
                    Ok(cluster) => Some(cluster),
                    Err(error)
                        if std::env::var("TOWER_API_KEY_SKIP_REDIS").as_deref() == Ok("1") =>
                    {
                        eprintln!("skipping Redis Cluster tests: {error}");
                        None
                    }
                    Err(error) => panic!(
                        "cannot start a Redis Cluster ({error}). Install Redis (Debian: apt-get \
                         install redis-server redis-tools), or set REDIS_CLUSTER_NODES to a \
                         cluster's nodes, or TOWER_API_KEY_SKIP_REDIS=1 to skip these tests"
                    ),
                }
            })
            .as_ref()
    }

    /// A private cluster, stopped when dropped; `None` with `REDIS_CLUSTER_NODES` or when
    /// told to skip. `durable`: every write is fsynced before it is answered (for a test
    /// that kills a node), else once a second (faster).
    pub fn start(durable: bool) -> Option<Self> {
        if std::env::var("REDIS_CLUSTER_NODES").is_ok() {
            return None;
        }
        match Self::launch(true, durable, None) {
            Ok(cluster) => Some(cluster),
            Err(_) if std::env::var("TOWER_API_KEY_SKIP_REDIS").as_deref() == Ok("1") => None,
            Err(error) => panic!("cannot start a Redis Cluster: {error}"),
        }
    }

    /// A private cluster whose master `node` listens for the cluster bus on `bus_port` but
    /// announces `announced` (a proxy to `bus_port`): the other masters reach it through
    /// the proxy, which a test can cut. Slots stay served while a master is unreachable
    /// (`cluster-require-full-coverage no`). Blocks while the cluster starts.
    pub fn start_with_announced_bus(node: usize, bus_port: u16, announced: u16) -> Option<Self> {
        if std::env::var("REDIS_CLUSTER_NODES").is_ok() {
            return None;
        }
        match Self::launch_with(true, false, None, Some((node, bus_port, announced))) {
            Ok(cluster) => Some(cluster),
            Err(_) if std::env::var("TOWER_API_KEY_SKIP_REDIS").as_deref() == Ok("1") => None,
            Err(error) => panic!("cannot start a Redis Cluster: {error}"),
        }
    }

    /// A private cluster that speaks only TLS, to clients and on its bus
    /// (`--tls-cluster yes`), with `certificates` (CA, server certificate and key, PEM: see
    /// `certificates::test_certificates`); `None` with `REDIS_CLUSTER_NODES` or when told
    /// to skip.
    pub fn start_tls(certificates: (String, String, String)) -> Option<Self> {
        if std::env::var("REDIS_CLUSTER_NODES").is_ok() {
            return None;
        }
        match Self::launch(true, false, Some(certificates)) {
            Ok(cluster) => Some(cluster),
            Err(_) if std::env::var("TOWER_API_KEY_SKIP_REDIS").as_deref() == Ok("1") => None,
            Err(error) => panic!("cannot start a TLS Redis Cluster: {error}"),
        }
    }

    /// `redis-cli`, speaking TLS with the cluster's CA when the cluster does.
    fn cli(&self) -> Command {
        let mut cli = Command::new("redis-cli");
        if self.ca_pem.is_some() {
            cli.arg("--tls")
                .arg("--cacert")
                .arg(self.dir.join("ca.crt"));
        }
        cli
    }

    /// `tls`: the CA, server certificate and key (PEM) for a TLS-only cluster.
    fn launch(
        owned: bool,
        durable: bool,
        tls: Option<(String, String, String)>,
    ) -> Result<Self, String> {
        Self::launch_with(owned, durable, tls, None)
    }

    /// `bus`: a master's own bus port and the port it announces instead.
    fn launch_with(
        owned: bool,
        durable: bool,
        tls: Option<(String, String, String)>,
        bus: Option<(usize, u16, u16)>,
    ) -> Result<Self, String> {
        let mut ports = free_ports(6);
        let mut bus_ports = ports.split_off(3);
        if let Some((node, own, _)) = bus {
            bus_ports[node] = own;
        }
        let dir =
            std::env::temp_dir().join(format!("tak-cluster-{}-{}", std::process::id(), ports[0]));
        let _ = std::fs::remove_dir_all(&dir);
        let scheme = if tls.is_some() { "rediss" } else { "redis" };
        let cluster = RedisCluster {
            urls: ports
                .iter()
                .map(|port| format!("{scheme}://127.0.0.1:{port}"))
                .collect(),
            ports,
            bus_ports,
            dir,
            owned,
            durable,
            ca_pem: tls.as_ref().map(|(ca, _, _)| ca.clone()),
            announced_bus: bus.map(|(node, _, announced)| (node, announced)),
        };
        // A watchdog stops the nodes (by their pid files, so restarted nodes too) and
        // removes the directory once this test process is gone.
        std::fs::create_dir_all(&cluster.dir).map_err(|e| e.to_string())?;
        if let Some((ca, cert, key)) = &tls {
            for (name, pem) in [("ca.crt", ca), ("server.crt", cert), ("server.key", key)] {
                std::fs::write(cluster.dir.join(name), pem).map_err(|e| e.to_string())?;
            }
        }
        let script = format!(
            "while kill -0 {parent} 2>/dev/null; do sleep 0.2; done
             for pid in '{dir}'/*.pid; do kill -9 $(cat \"$pid\") 2>/dev/null; done
             rm -rf '{dir}'",
            parent = std::process::id(),
            dir = cluster.dir.display(),
        );
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("watchdog: {e}"))?;
        for node in 0..3 {
            cluster.spawn(node)?;
        }
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        let created = cluster
            .cli()
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("redis-cli: {e}"))?;
        if !created.status.success() {
            return Err(format!(
                "redis-cli --cluster create: {}{}",
                String::from_utf8_lossy(&created.stdout),
                String::from_utf8_lossy(&created.stderr)
            ));
        }
        cluster.wait_until_ok()?;
        Ok(cluster)
    }

    fn node_dir(&self, node: usize) -> PathBuf {
        self.dir.join(self.ports[node].to_string())
    }

    /// Starts master `node` (again, after [`kill`](Self::kill): its `nodes.conf` and
    /// append-only file bring back its slots and data).
    pub fn spawn(&self, node: usize) -> Result<(), String> {
        let port = self.ports[node];
        let dir = self.node_dir(node);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let mut listen = listen_args(&self.dir, port, self.ca_pem.is_some());
        if self.ca_pem.is_some() {
            listen.extend(["--tls-cluster".into(), "yes".into()]);
        }
        if let Some((announcing, announced)) = self.announced_bus {
            listen.extend(["--cluster-require-full-coverage".into(), "no".into()]);
            if announcing == node {
                listen.extend([
                    "--cluster-announce-bus-port".into(),
                    announced.to_string().into(),
                ]);
            }
        }
        Command::new("redis-server")
            .args(listen)
            .args(["--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
            .args(["--cluster-port", &self.bus_ports[node].to_string()])
            .args(["--save", "", "--appendonly", "yes", "--appendfsync"])
            .arg(if self.durable { "always" } else { "everysec" })
            .arg("--dir")
            .arg(&dir)
            .arg("--pidfile")
            .arg(self.dir.join(format!("{port}.pid")))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("redis-server: {e}"))?;
        for _ in 0..500 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(format!("redis-server on {port} did not start listening"))
    }

    /// Kills master `node` at once (`SIGKILL`).
    pub fn kill(&self, node: usize) {
        let pid_file = self.dir.join(format!("{}.pid", self.ports[node]));
        if let Ok(pid) = std::fs::read_to_string(&pid_file) {
            let _ = Command::new("kill").args(["-9", pid.trim()]).status();
            let _ = std::fs::remove_file(pid_file);
        }
        // Gone when the port refuses connections.
        for _ in 0..500 {
            if std::net::TcpStream::connect(("127.0.0.1", self.ports[node])).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Until every node says `cluster_state:ok` (bounded: 20 s).
    pub fn wait_until_ok(&self) -> Result<(), String> {
        for _ in 0..200 {
            let ok = self.ports.iter().all(|port| {
                self.cli()
                    .args(["-p", &port.to_string(), "cluster", "info"])
                    .output()
                    .is_ok_and(|out| {
                        String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok")
                    })
            });
            if ok {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err("the cluster did not reach cluster_state:ok".to_owned())
    }

    /// A cluster connection seeded with every master.
    pub async fn connection(&self) -> RedisConnection {
        RedisConnection::cluster(&self.urls).await.unwrap()
    }

    /// A cluster connection seeded with master `node` only (it learns the others).
    pub async fn connection_through(&self, node: usize) -> RedisConnection {
        RedisConnection::cluster([&self.urls[node]]).await.unwrap()
    }

    /// A plain connection to master `node`, for what a test reads behind the stores' backs.
    pub async fn node(&self, node: usize) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.urls[node].as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// How many keys matching `pattern` each master holds.
    pub async fn keys_per_master(&self, pattern: &str) -> Vec<usize> {
        let mut counts = Vec::new();
        for node in 0..self.urls.len() {
            let mut connection = self.node(node).await;
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(pattern)
                .query_async(&mut connection)
                .await
                .unwrap();
            counts.push(keys.len());
        }
        counts
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        if self.owned {
            for node in 0..self.ports.len() {
                self.kill(node);
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
