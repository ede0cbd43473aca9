//! A fault-injecting TCP proxy for tests (latency, resets, stalls, dead servers).
//!
//! It sits between a client and a real server on 127.0.0.1 and forwards bytes both ways.
//! Faults are switched at runtime and apply to new data at once:
//!
//! - [`Faults::latency`]: a delay before every forwarded chunk;
//! - [`Faults::reset_after_bytes`]: each connection is reset (RST) once it has carried
//!   that many bytes;
//! - [`Faults::reset_probability`]: each chunk may reset its connection, from a seeded
//!   generator, so a run can be repeated;
//! - [`Faults::stall_after_bytes`]: the connection stops forwarding (but stays open);
//! - [`FaultProxy::reset_next_connections`]: the next N accepted connections are reset
//!   at once (deterministic transient faults);
//! - [`FaultProxy::reset_active`]: reset every open connection now;
//! - [`Mode::BlackHole`]: connections are accepted and never answered;
//! - [`Mode::Refuse`]: nothing listens any more, so connecting is refused.
//!
//! HTTP-level faults (5xx) are not possible here: traffic is TLS.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;

/// What happens to connections as a whole.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Forward (subject to [`Faults`]).
    #[default]
    Pass,
    /// Accept, read and discard, never answer: a hung server or a black-holing firewall.
    BlackHole,
    /// Stop listening: new connections are refused (existing ones are reset).
    Refuse,
}

/// Faults applied to forwarded traffic.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    pub mode: Mode,
    /// Delay before each forwarded chunk, both directions.
    pub latency: Duration,
    /// Reset a connection once it has forwarded this many bytes (both directions).
    pub reset_after_bytes: Option<u64>,
    /// Chance (0..=1) that a chunk resets its connection instead of being forwarded.
    pub reset_probability: f64,
    /// Seed of the generator behind `reset_probability`.
    pub seed: u64,
    /// Stop forwarding (without closing) once a connection has carried this many bytes.
    pub stall_after_bytes: Option<u64>,
}

/// Counters since the proxy started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyStats {
    pub connections_accepted: u64,
    pub connections_active: u64,
    /// Connections reset by an injected fault (not by either peer).
    pub resets_injected: u64,
    pub black_holed: u64,
    pub stalled: u64,
    pub bytes_to_server: u64,
    pub bytes_to_client: u64,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    active: AtomicU64,
    resets: AtomicU64,
    black_holed: AtomicU64,
    stalled: AtomicU64,
    up: AtomicU64,
    down: AtomicU64,
}

struct Shared {
    upstream: SocketAddr,
    faults: watch::Sender<Faults>,
    /// Bumped by `reset_active`: every open connection resets when it changes.
    kill_epoch: watch::Sender<u64>,
    reset_next: AtomicU64,
    rng: Mutex<SplitMix64>,
    counters: Counters,
}

/// The proxy. Stops (and resets its connections) on drop.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy").field("addr", &self.addr).field("upstream", &self.shared.upstream).finish()
    }
}

impl FaultProxy {
    /// Listen on a free 127.0.0.1 port and forward to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Result<FaultProxy> {
        Self::start_on("127.0.0.1".parse()?, upstream).await
    }

    /// Listen on a free port of `ip` below 32768 (e.g. the vCenter's own loopback address, so its
    /// certificate and the credential keys named after it still match) and forward to
    /// `upstream`.
    pub async fn start_on(ip: std::net::IpAddr, upstream: &str) -> Result<FaultProxy> {
        let upstream: SocketAddr =
            tokio::net::lookup_host(upstream).await?.next().with_context(|| format!("resolve {upstream}"))?;
        // A port OpenShift's Infrastructure accepts for a vCenter (at most 32767): the proxy
        // stands for a vCenter a migration writes there.
        let listener = bind(SocketAddr::new(ip, crate::process::free_low_port(ip)?))?;
        let addr = listener.local_addr()?;
        let (faults, _) = watch::channel(Faults::default());
        let (kill_epoch, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            upstream,
            faults,
            kill_epoch,
            reset_next: AtomicU64::new(0),
            rng: Mutex::new(SplitMix64(0)),
            counters: Counters::default(),
        });
        let accept_task = tokio::spawn(accept_loop(listener, addr, shared.clone()));
        Ok(FaultProxy { addr, shared, accept_task })
    }

    /// `127.0.0.1:PORT` to point the client at.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Replace the faults; they apply to new chunks and connections at once.
    pub fn set_faults(&self, faults: Faults) {
        *self.shared.rng.lock().unwrap_or_else(|e| e.into_inner()) = SplitMix64(faults.seed);
        self.shared.faults.send_replace(faults);
    }

    pub fn faults(&self) -> Faults {
        self.shared.faults.borrow().clone()
    }

    /// Shorthand for changing only the mode.
    pub fn set_mode(&self, mode: Mode) {
        self.shared.faults.send_modify(|f| f.mode = mode);
    }

    /// Back to plain forwarding.
    pub fn heal(&self) {
        self.set_faults(Faults::default());
    }

    /// Reset the next `n` accepted connections right after accepting them.
    pub fn reset_next_connections(&self, n: u64) {
        self.shared.reset_next.store(n, Ordering::SeqCst);
    }

    /// Reset every connection open now (pooled keep-alive connections included).
    pub fn reset_active(&self) {
        self.shared.kill_epoch.send_modify(|e| *e += 1);
    }

    pub fn stats(&self) -> ProxyStats {
        let c = &self.shared.counters;
        let l = |a: &AtomicU64| a.load(Ordering::SeqCst);
        ProxyStats {
            connections_accepted: l(&c.accepted),
            connections_active: l(&c.active),
            resets_injected: l(&c.resets),
            black_holed: l(&c.black_holed),
            stalled: l(&c.stalled),
            bytes_to_server: l(&c.up),
            bytes_to_client: l(&c.down),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept_task.abort();
        self.reset_active();
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let s = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    // Rebinding the same port after a Refuse period must not hit TIME_WAIT.
    s.set_reuseaddr(true)?;
    s.bind(addr)?;
    s.listen(128)
}

async fn accept_loop(listener: TcpListener, addr: SocketAddr, shared: Arc<Shared>) {
    let mut faults = shared.faults.subscribe();
    let mut listener = Some(listener);
    loop {
        let mode = faults.borrow_and_update().mode;
        if mode == Mode::Refuse {
            // Closing the listener makes the kernel refuse connections; existing ones go too.
            listener = None;
            shared.kill_epoch.send_modify(|e| *e += 1);
            if faults.changed().await.is_err() {
                return;
            }
            continue;
        }
        let l = match &listener {
            Some(l) => l,
            None => match bind(addr) {
                Ok(l) => listener.insert(l),
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        tokio::select! {
            accepted = l.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                shared.counters.accepted.fetch_add(1, Ordering::SeqCst);
                let shared = shared.clone();
                tokio::spawn(async move {
                    shared.counters.active.fetch_add(1, Ordering::SeqCst);
                    handle(stream, &shared).await;
                    shared.counters.active.fetch_sub(1, Ordering::SeqCst);
                });
            }
            changed = faults.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

fn reset(s: &TcpStream) {
    let _ = s.set_zero_linger();
}

async fn handle(mut client: TcpStream, shared: &Shared) {
    let mut kill = shared.kill_epoch.subscribe();
    kill.borrow_and_update();
    let take = shared.reset_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
    if take {
        shared.counters.resets.fetch_add(1, Ordering::SeqCst);
        reset(&client);
        return;
    }
    let mode = shared.faults.borrow().mode;
    if mode == Mode::BlackHole {
        shared.counters.black_holed.fetch_add(1, Ordering::SeqCst);
        let mut buf = [0u8; 4096];
        loop {
            tokio::select! {
                r = client.read(&mut buf) => match r { Ok(0) | Err(_) => return, Ok(_) => {} },
                _ = kill.changed() => { reset(&client); return; }
            }
        }
    }
    let Ok(mut server) = TcpStream::connect(shared.upstream).await else {
        reset(&client);
        return;
    };
    let outcome = pipe(&mut client, &mut server, shared, &mut kill).await;
    if outcome == End::Reset {
        reset(&client);
        reset(&server);
    }
}

#[derive(PartialEq)]
enum End {
    Closed,
    Reset,
}

async fn pipe(client: &mut TcpStream, server: &mut TcpStream, shared: &Shared, kill: &mut watch::Receiver<u64>) -> End {
    let (mut cr, mut cw) = client.split();
    let (mut sr, mut sw) = server.split();
    let mut up = vec![0u8; 16 * 1024];
    let mut down = vec![0u8; 16 * 1024];
    let (mut up_open, mut down_open) = (true, true);
    let mut carried: u64 = 0;
    while up_open || down_open {
        // Which direction has data; `None` means that side reached EOF.
        let (to_server, n) = tokio::select! {
            r = cr.read(&mut up), if up_open => match r {
                Ok(0) => { up_open = false; let _ = sw.shutdown().await; continue; }
                Ok(n) => (true, n),
                Err(_) => return End::Reset,
            },
            r = sr.read(&mut down), if down_open => match r {
                Ok(0) => { down_open = false; let _ = cw.shutdown().await; continue; }
                Ok(n) => (false, n),
                Err(_) => return End::Reset,
            },
            _ = kill.changed() => {
                shared.counters.resets.fetch_add(1, Ordering::SeqCst);
                return End::Reset;
            }
        };
        let faults = shared.faults.borrow().clone();
        if faults.mode != Mode::Pass {
            shared.counters.resets.fetch_add(1, Ordering::SeqCst);
            return End::Reset;
        }
        if !faults.latency.is_zero() {
            tokio::time::sleep(faults.latency).await;
        }
        carried += n as u64;
        let roll = faults.reset_probability > 0.0
            && shared.rng.lock().unwrap_or_else(|e| e.into_inner()).next_f64() < faults.reset_probability;
        if roll || faults.reset_after_bytes.is_some_and(|limit| carried > limit) {
            shared.counters.resets.fetch_add(1, Ordering::SeqCst);
            return End::Reset;
        }
        if faults.stall_after_bytes.is_some_and(|limit| carried > limit) {
            shared.counters.stalled.fetch_add(1, Ordering::SeqCst);
            // Hold the connection open and silent until killed or the proxy goes away.
            let _ = kill.changed().await;
            return End::Reset;
        }
        let written = if to_server {
            shared.counters.up.fetch_add(n as u64, Ordering::SeqCst);
            sw.write_all(&up[..n]).await
        } else {
            shared.counters.down.fetch_add(n as u64, Ordering::SeqCst);
            cw.write_all(&down[..n]).await
        };
        if written.is_err() {
            return End::Reset;
        }
    }
    End::Closed
}

/// Small, seedable generator (SplitMix64), so fault runs can be repeated.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server for the proxy to forward to.
    async fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn roundtrip(addr: &str, msg: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(msg).await?;
        let mut got = vec![0u8; msg.len()];
        s.read_exact(&mut got).await?;
        Ok(got)
    }

    #[tokio::test]
    async fn forwards_and_counts() {
        let p = FaultProxy::start(&echo().await.to_string()).await.unwrap();
        assert_eq!(roundtrip(&p.addr(), b"hello").await.unwrap(), b"hello");
        let st = p.stats();
        assert_eq!(st.connections_accepted, 1);
        assert_eq!(st.bytes_to_server, 5);
        assert_eq!(st.bytes_to_client, 5);
    }

    #[tokio::test]
    async fn reset_next_then_recover() {
        let p = FaultProxy::start(&echo().await.to_string()).await.unwrap();
        p.reset_next_connections(2);
        assert!(roundtrip(&p.addr(), b"a").await.is_err());
        assert!(roundtrip(&p.addr(), b"a").await.is_err());
        assert_eq!(roundtrip(&p.addr(), b"ok").await.unwrap(), b"ok");
        assert_eq!(p.stats().resets_injected, 2);
    }

    #[tokio::test]
    async fn reset_after_bytes() {
        let p = FaultProxy::start(&echo().await.to_string()).await.unwrap();
        p.set_faults(Faults { reset_after_bytes: Some(3), ..Default::default() });
        assert!(roundtrip(&p.addr(), b"0123456789").await.is_err());
        assert!(p.stats().resets_injected >= 1);
        p.heal();
        assert_eq!(roundtrip(&p.addr(), b"0123456789").await.unwrap(), b"0123456789");
    }

    #[tokio::test]
    async fn refuse_and_reopen() {
        let p = FaultProxy::start(&echo().await.to_string()).await.unwrap();
        p.set_mode(Mode::Refuse);
        // The accept loop closes the listener asynchronously; wait for it.
        let mut refused = false;
        for _ in 0..100 {
            // A connect racing the close may be reset from the backlog; wait for a refusal.
            if let Err(e) = TcpStream::connect(p.addr()).await
                && e.kind() == std::io::ErrorKind::ConnectionRefused
            {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(refused);
        p.set_mode(Mode::Pass);
        let mut ok = false;
        for _ in 0..100 {
            if roundtrip(&p.addr(), b"back").await.is_ok() {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(ok);
    }

    #[tokio::test]
    async fn black_hole_never_answers() {
        let p = FaultProxy::start(&echo().await.to_string()).await.unwrap();
        p.set_mode(Mode::BlackHole);
        let r = tokio::time::timeout(Duration::from_millis(300), roundtrip(&p.addr(), b"x")).await;
        assert!(r.is_err(), "a black hole must not answer");
        assert_eq!(p.stats().black_holed, 1);
        assert_eq!(p.stats().bytes_to_server, 0);
    }

    #[tokio::test]
    async fn seeded_random_resets_repeat() {
        let target = echo().await.to_string();
        let mut runs = Vec::new();
        for _ in 0..2 {
            let p = FaultProxy::start(&target).await.unwrap();
            p.set_faults(Faults { reset_probability: 0.5, seed: 7, ..Default::default() });
            let mut outcome = Vec::new();
            for _ in 0..8 {
                outcome.push(roundtrip(&p.addr(), b"x").await.is_ok());
            }
            runs.push(outcome);
        }
        assert_eq!(runs[0], runs[1]);
        assert!(runs[0].contains(&true) && runs[0].contains(&false), "{:?}", runs[0]);
    }

    #[tokio::test]
    async fn reset_active_kills_open_connections() {
        let p = FaultProxy::start(&echo().await.to_string()).await.unwrap();
        let mut s = TcpStream::connect(p.addr()).await.unwrap();
        s.write_all(b"1").await.unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        p.reset_active();
        let mut buf = [0u8; 1];
        let r = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.unwrap();
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    }
}
