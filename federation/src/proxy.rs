//! A loopback fault proxy: a TCP listener in front of one upstream address whose switches
//! pass traffic, delay it, reset connections or swallow them (a blackhole). It is what breaks an
//! agent's path to its service without touching the service. Switches act on new connections
//! and on those already open (a pooled keep-alive connection included) at their next read.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does with traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Forwards it (after the delay, when one is set).
    Pass = 0,
    /// Resets new connections and closes open ones.
    Reset = 1,
    /// Accepts and reads, never forwards nor answers.
    Blackhole = 2,
}

struct Switches {
    mode: AtomicU8,
    delay_ms: AtomicU32,
}

/// A running proxy.
#[derive(Clone)]
pub struct Proxy {
    addr: SocketAddr,
    switches: Arc<Switches>,
}

impl Proxy {
    /// Starts a proxy on a free loopback port in front of `upstream`, on the current runtime.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let switches = Arc::new(Switches { mode: AtomicU8::new(Mode::Pass as u8), delay_ms: AtomicU32::new(0) });
        let s = switches.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let _ = client.set_nodelay(true);
                    match mode(&s) {
                        Mode::Reset => {
                            let _ = client.set_zero_linger();
                        }
                        Mode::Blackhole => swallow(client, &s).await,
                        Mode::Pass => forward(client, upstream, s).await,
                    }
                });
            }
        });
        Ok(Self { addr, switches })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets the mode.
    pub fn set_mode(&self, m: Mode) {
        self.switches.mode.store(m as u8, Ordering::Release);
    }

    /// Sets the delay added to each chunk forwarded towards the client.
    pub fn set_delay(&self, d: Duration) {
        self.switches.delay_ms.store(u32::try_from(d.as_millis()).unwrap_or(u32::MAX), Ordering::Release);
    }
}

fn mode(s: &Switches) -> Mode {
    match s.mode.load(Ordering::Acquire) {
        1 => Mode::Reset,
        2 => Mode::Blackhole,
        _ => Mode::Pass,
    }
}

/// Reads and drops what the client sends until it goes away or the mode changes.
async fn swallow(mut client: TcpStream, s: &Switches) {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_millis(100), client.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return,
            _ if mode(s) != Mode::Blackhole => return,
            _ => {}
        }
    }
}

async fn forward(client: TcpStream, upstream: SocketAddr, s: Arc<Switches>) {
    let Ok(server) = TcpStream::connect(upstream).await else { return };
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = tokio::spawn(pump(cr, sw, s.clone(), false));
    pump(sr, cw, s, true).await;
    up.abort();
}

/// Copies `from` to `to`, checking the switches at every chunk; `down`: towards the client,
/// where the delay applies.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    s: Arc<Switches>,
    down: bool,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        match mode(&s) {
            Mode::Pass => {}
            Mode::Reset => break,
            Mode::Blackhole => continue,
        }
        let delay = s.delay_ms.load(Ordering::Acquire);
        if down && delay > 0 {
            tokio::time::sleep(Duration::from_millis(u64::from(delay))).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
