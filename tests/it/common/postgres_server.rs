//! A private PostgreSQL server for one test binary (or `DATABASE_URL`): `initdb` and
//! `postgres` in a temporary directory on a free loopback port, run as the `postgres` user
//! when the tests run as root (PostgreSQL refuses root). A watchdog stops it and removes the
//! directory when the test process exits. It also accepts TLS, with a certificate for
//! `localhost` and `127.0.0.1` issued by a CA made at start ([`Postgres::ca_pem`]).

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// The server every test of this binary shares (each uses tables of its own).
pub struct Postgres {
    pub url: String,
    /// The private server's port (`None` for `DATABASE_URL`).
    port: Option<u16>,
    /// The PEM of the CA that issued the private server's certificate.
    ca_pem: Option<String>,
}

/// The directory with `initdb` and `postgres`: `PG_BIN`, else Debian's newest.
fn bin_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop()
}

fn as_server_user(program: PathBuf) -> Command {
    // The effective user, through `id` (no libc dependency for one question).
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.starts_with(b"0\n"));
    if root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

impl Postgres {
    /// The private server's port, for a test that puts a proxy in front of it.
    pub fn own_port(&self) -> Option<u16> {
        self.port
    }

    /// The CA of the private server's TLS certificate (`None` for `DATABASE_URL`).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// The shared server, or `None` when told to skip (`TOWER_API_KEY_SKIP_POSTGRES=1`).
    pub fn shared() -> Option<&'static Postgres> {
        static SERVER: OnceLock<Option<Postgres>> = OnceLock::new();
        SERVER
            .get_or_init(|| {
                if let Ok(url) = std::env::var("DATABASE_URL") {
                    return Some(Postgres {
                        url,
                        port: None,
                        ca_pem: None,
                    });
                }
                match Self::start() {
                    Ok(server) => Some(server),
                    Err(error) if std::env::var("TOWER_API_KEY_SKIP_POSTGRES").as_deref() == Ok("1") => {
                        eprintln!("skipping PostgreSQL tests: {error}");
                        None
                    }
                    Err(error) => panic!(
                        "cannot start PostgreSQL ({error}). Install it (Debian: apt-get install postgresql), \
                         or set DATABASE_URL to a server to use, or set TOWER_API_KEY_SKIP_POSTGRES=1 to skip these tests"
                    ),
                }
            })
            .as_ref()
    }

    fn start() -> Result<Self, String> {
        let bin = bin_dir().ok_or("no initdb found (PG_BIN, /usr/lib/postgresql/*/bin)")?;
        let port = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| e.to_string())?
            .local_addr()
            .map_err(|e| e.to_string())?
            .port();
        let dir = std::env::temp_dir().join(format!("tak-pg-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        // The server user must own its directory.
        let _ = Command::new("chown").arg("postgres").arg(&dir).status();
        let data = dir.join("data");
        let initdb = as_server_user(bin.join("initdb"))
            .args(["-U", "tak", "-A", "trust", "--no-sync", "-D"])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !initdb.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&initdb.stderr)
            ));
        }
        // TLS: the key must belong to the server user and be private to it.
        let (ca_pem, cert_pem, key_pem) = super::certificates::test_certificates();
        for (name, pem) in [("server.crt", &cert_pem), ("server.key", &key_pem)] {
            let path = dir.join(name);
            std::fs::write(&path, pem).map_err(|e| e.to_string())?;
            let _ = Command::new("chown").arg("postgres").arg(&path).status();
            let _ = Command::new("chmod").arg("600").arg(&path).status();
        }
        // `postgres` under a watchdog shell that stops it (`pg_ctl stop`, as the server
        // user) and removes the directory once this test process is gone.
        let shell = |command: Command| -> String {
            std::iter::once(command.get_program())
                .chain(command.get_args())
                .map(|part| format!("'{}'", part.to_string_lossy()))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let postgres = shell(as_server_user(bin.join("postgres")));
        let pg_ctl = shell(as_server_user(bin.join("pg_ctl")));
        let (data, dir) = (data.display(), dir.display());
        let script = format!(
            "{postgres} -D '{data}' -p {port} -k '{dir}' -c listen_addresses=127.0.0.1 -c fsync=off \
               -c ssl=on -c ssl_cert_file='{dir}/server.crt' -c ssl_key_file='{dir}/server.key' \
               -c synchronous_commit=off -c full_page_writes=off >'{dir}/log' 2>&1 &
             while kill -0 {parent} 2>/dev/null; do sleep 0.2; done
             {pg_ctl} -D '{data}' -m immediate stop >/dev/null 2>&1
             rm -rf '{dir}'",
            parent = std::process::id(),
        );
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("postgres: {e}"))?;
        for _ in 0..1000 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(Postgres {
                    url: format!("postgres://tak@127.0.0.1:{port}/postgres"),
                    port: Some(port),
                    ca_pem: Some(ca_pem),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(format!("postgres did not start; see {dir}/log"))
    }
}
