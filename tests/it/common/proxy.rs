//! A loopback TCP proxy that a test can make fail the ways networks fail: go silent (keep
//! every connection open, forward nothing: a half-open connection behind a NAT), or go
//! down (close every connection and refuse new ones: a failover or a partition).

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// What the proxy does now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Forward,
    Silent,
    Down,
}

/// A proxy to `127.0.0.1:<port>`, stopped when dropped.
pub struct Proxy {
    pub port: u16,
    mode: Arc<watch::Sender<Mode>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn to(port: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy_port = listener.local_addr().unwrap().port();
        let mode = Arc::new(watch::Sender::new(Mode::Forward));
        let modes = Arc::clone(&mode);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *modes.borrow() == Mode::Down {
                    continue; // refused: closed at once
                }
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                for (from, to) in [
                    (
                        Box::new(client_read) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
                        Box::new(server_write) as Box<dyn tokio::io::AsyncWrite + Unpin + Send>,
                    ),
                    (Box::new(server_read) as _, Box::new(client_write) as _),
                ] {
                    tokio::spawn(forward(from, to, modes.subscribe()));
                }
            }
        });
        Self {
            port: proxy_port,
            mode,
            task,
        }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

/// Copies `from` to `to` while forwarding; drops what it reads while silent; closes both
/// when the proxy goes down.
async fn forward(
    mut from: Box<dyn tokio::io::AsyncRead + Unpin + Send>,
    mut to: Box<dyn tokio::io::AsyncWrite + Unpin + Send>,
    mut mode: watch::Receiver<Mode>,
) {
    let mut buffer = [0u8; 4096];
    loop {
        let now = *mode.borrow_and_update();
        if now == Mode::Down {
            return;
        }
        tokio::select! {
            read = from.read(&mut buffer) => {
                let Ok(n) = read else { return };
                if n == 0 {
                    return;
                }
                let now = *mode.borrow();
                match now {
                    Mode::Forward => {
                        if to.write_all(&buffer[..n]).await.is_err() {
                            return;
                        }
                    }
                    Mode::Silent => {}
                    Mode::Down => return,
                }
            }
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.mode.send_replace(Mode::Down);
        self.task.abort();
    }
}
