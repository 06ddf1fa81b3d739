//! A real nginx or Caddy for one test, started from a committed configuration with the
//! test's ports, killed on drop. Missing binaries skip the test (saying so), unless
//! `TOWER_API_KEY_REQUIRE_PROXIES=1` (set by `scripts/test`), under which they fail it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The addresses the committed configurations name, replaced by the test's.
pub const LISTEN: &str = "127.0.0.1:8080";
pub const AUTH: &str = "127.0.0.1:9090";
pub const UPSTREAM: &str = "127.0.0.1:3000";

/// Which proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Nginx,
    Caddy,
}

/// A running proxy on `port`.
pub struct ReverseProxy {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn binary(kind: Kind) -> Option<PathBuf> {
    let (name, fallback) = match kind {
        Kind::Nginx => ("nginx", "/usr/sbin/nginx"),
        Kind::Caddy => ("caddy", "/usr/bin/caddy"),
    };
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    });
    found.or_else(|| {
        Path::new(fallback)
            .is_file()
            .then(|| PathBuf::from(fallback))
    })
}

impl ReverseProxy {
    /// `kind` with its committed configuration, in front of `upstream`, asking `auth`.
    pub fn start(kind: Kind, auth: u16, upstream: u16) -> Option<Self> {
        let required = std::env::var("TOWER_API_KEY_REQUIRE_PROXIES").as_deref() == Ok("1");
        let Some(binary) = binary(kind) else {
            assert!(
                !required,
                "{kind:?} is not installed (Debian: apt-get install nginx caddy)"
            );
            eprintln!(
                "skipping the {kind:?} test: not installed (Debian: apt-get install nginx caddy)"
            );
            return None;
        };
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("tak-{kind:?}-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let committed = match kind {
            Kind::Nginx => include_str!("../../../examples/forward_auth/nginx.conf"),
            Kind::Caddy => include_str!("../../../examples/forward_auth/Caddyfile"),
        };
        let config = committed
            .replace(LISTEN, &format!("127.0.0.1:{port}"))
            .replace(AUTH, &format!("127.0.0.1:{auth}"))
            .replace(UPSTREAM, &format!("127.0.0.1:{upstream}"));
        let mut command = Command::new(&binary);
        match kind {
            Kind::Nginx => {
                // Where an unprivileged nginx may write: the test's directory.
                let d = dir.display();
                let config = config.replacen(
                    "http {",
                    &format!(
                        "http {{\n    access_log off;\n    client_body_temp_path {d}/body;\n    proxy_temp_path {d}/proxy;\n    fastcgi_temp_path {d}/fastcgi;\n    uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;"
                    ),
                    1,
                );
                std::fs::write(dir.join("nginx.conf"), config).unwrap();
                command
                    .arg("-p")
                    .arg(&dir)
                    .arg("-c")
                    .arg(dir.join("nginx.conf"))
                    .arg("-e")
                    .arg(dir.join("error.log"))
                    .arg("-g")
                    .arg(format!("daemon off; pid {d}/nginx.pid;"));
            }
            Kind::Caddy => {
                std::fs::write(dir.join("Caddyfile"), config).unwrap();
                command
                    .arg("run")
                    .arg("--config")
                    .arg(dir.join("Caddyfile"))
                    .arg("--adapter")
                    .arg("caddyfile")
                    .env("HOME", &dir)
                    .env("XDG_DATA_HOME", &dir)
                    .env("XDG_CONFIG_HOME", &dir);
            }
        }
        let log = std::fs::File::create(dir.join("stderr.log")).unwrap();
        let child = command
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
        let proxy = Self { child, port, dir };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(proxy);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let log = std::fs::read_to_string(proxy.dir.join("stderr.log")).unwrap_or_default();
        let error = std::fs::read_to_string(proxy.dir.join("error.log")).unwrap_or_default();
        panic!("{kind:?} did not listen on {port}: {log}{error}");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for ReverseProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
