//! A private `redis-server` for one test (or `REDIS_URL`), killed and cleaned up on drop.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A Redis server the test owns (or `REDIS_URL`).
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    pub url: String,
    durable: bool,
    /// For a TLS server: the PEM of the CA that issued its certificate.
    pub ca_pem: Option<String>,
}

impl Redis {
    /// A private server, or `REDIS_URL`; `None` only when told to skip.
    pub fn start() -> Option<Self> {
        Self::start_with(false)
    }

    /// A private server that fsyncs every write (`appendfsync always`), for a test that
    /// kills it and expects its data back; the others fsync once a second, so a busy disk
    /// does not stall their commands past the client's response timeout.
    pub fn start_durable() -> Option<Self> {
        Self::start_with(true)
    }

    fn start_with(durable: bool) -> Option<Self> {
        if let Ok(url) = std::env::var("REDIS_URL") {
            return Some(Self {
                child: None,
                port: 0,
                dir: PathBuf::new(),
                url,
                durable,
                ca_pem: None,
            });
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("tak-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = Self {
            child: None,
            port,
            dir,
            url: format!("redis://127.0.0.1:{port}"),
            durable,
            ca_pem: None,
        };
        match redis.spawn() {
            Ok(()) => Some(redis),
            Err(error) if std::env::var("TOWER_API_KEY_SKIP_REDIS").as_deref() == Ok("1") => {
                eprintln!("skipping Redis tests: {error}");
                None
            }
            Err(error) => panic!(
                "cannot start redis-server ({error}). Install it (Debian: apt-get install redis-server), \
                 or set REDIS_URL to a server to use, or set TOWER_API_KEY_SKIP_REDIS=1 to skip these tests"
            ),
        }
    }

    /// A private server that speaks only TLS (`rediss://`), with a certificate for
    /// `localhost` and `127.0.0.1` from a CA made now; `None` with `REDIS_URL` (its TLS
    /// setup is unknown).
    pub fn start_tls() -> Option<Self> {
        if std::env::var("REDIS_URL").is_ok() {
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("tak-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (ca, cert, key) = super::certificates::test_certificates();
        for (name, pem) in [("ca.crt", &ca), ("server.crt", &cert), ("server.key", &key)] {
            std::fs::write(dir.join(name), pem).unwrap();
        }
        let mut redis = Self {
            child: None,
            port,
            dir,
            url: format!("rediss://127.0.0.1:{port}"),
            durable: false,
            ca_pem: Some(ca),
        };
        redis.spawn().expect("redis-server with TLS");
        Some(redis)
    }

    pub fn spawn(&mut self) -> std::io::Result<()> {
        let listen = super::redis_cluster::listen_args(&self.dir, self.port, self.ca_pem.is_some());
        let child = Command::new("redis-server")
            .args(listen)
            .args(["--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync"])
            .arg(if self.durable { "always" } else { "everysec" })
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        // Ready when it accepts connections (bounded: 5 s).
        for _ in 0..500 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(std::io::Error::other(
            "redis-server did not start listening",
        ))
    }

    /// A raw connection, for what a test does to the server behind the stores' backs.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn owned(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
