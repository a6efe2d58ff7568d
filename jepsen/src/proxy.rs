//! Delay on the FEs' Raft links, in userspace (tc netem does not exist on this kernel). In every
//! FE host's namespace an nftables rule redirects Raft connections from other hosts (to the edit
//! log port) to a proxy port; the proxy, a thread of the harness that lives in that namespace,
//! forwards each connection to the FE and holds every chunk for `delay ± jitter` in both
//! directions, keeping the order. With no delay set, chunks pass at once.

use crate::db::EDIT_LOG_PORT;
use crate::topology::Topology;
use anyhow::{Context, bail};
use rand::Rng;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The port the proxy listens on in each FE host.
pub const PROXY_PORT: u16 = 19010;

/// The delay every proxy applies now, in milliseconds: `ms ± jitter_ms`.
#[derive(Default)]
pub struct Delay {
    ms: AtomicU64,
    jitter_ms: AtomicU64,
}

impl Delay {
    pub fn set(&self, ms: u64, jitter_ms: u64) {
        self.jitter_ms.store(jitter_ms.min(ms), Ordering::Relaxed);
        self.ms.store(ms, Ordering::Relaxed);
    }

    fn sample(&self) -> Duration {
        let (ms, j) = (
            self.ms.load(Ordering::Relaxed),
            self.jitter_ms.load(Ordering::Relaxed),
        );
        if ms == 0 {
            return Duration::ZERO;
        }
        let d = rand::rng().random_range(ms - j..=ms + j);
        Duration::from_millis(d)
    }
}

/// The proxies of a run: one per FE host, all sharing one `Delay`. Dropping it stops them.
pub struct Proxies {
    pub delay: Arc<Delay>,
    stop: tokio::sync::watch::Sender<bool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for Proxies {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The nftables table that sends other hosts' Raft connections to the proxy (kept apart from
/// the partition rules, which `nemesis::heal` removes).
fn redirect_rules(own: Ipv4Addr) -> String {
    format!(
        "table ip jepsen_proxy {{\n  chain pre {{\n    type nat hook prerouting priority -100; policy accept;\n    ip saddr != {own} tcp dport {EDIT_LOG_PORT} redirect to :{PROXY_PORT}\n  }}\n}}\n"
    )
}

/// Start a proxy in every FE host and redirect Raft traffic through it.
pub fn start(topo: &Topology) -> anyhow::Result<Proxies> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut p = Proxies {
        delay: Arc::new(Delay::default()),
        stop,
        threads: Vec::new(),
    };
    for (i, h) in topo.nodes.iter().enumerate() {
        let (tx, rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
        let (netns, ip, d) = (h.netns.clone(), h.ip, p.delay.clone());
        let mut stopped = stopped.clone();
        let t = std::thread::Builder::new()
            .name(format!("proxy-{}", h.name))
            .spawn(move || {
                let ready = tx.clone();
                let r = (|| -> anyhow::Result<()> {
                    enter_netns(&netns)?;
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    rt.block_on(async move {
                        let l = TcpListener::bind(SocketAddr::from((ip, PROXY_PORT))).await?;
                        let _ = ready.send(Ok(()));
                        // Connections are tasks of this runtime: they end with it.
                        tokio::select! {
                            _ = serve(l, SocketAddr::from((ip, EDIT_LOG_PORT)), d) => {}
                            _ = stopped.wait_for(|s| *s) => {}
                        }
                        Ok(())
                    })
                })();
                if let Err(e) = r {
                    let _ = tx.send(Err(e));
                }
            })?;
        p.threads.push(t);
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e.context(format!("proxy in {}", h.name))),
            Err(_) => bail!("proxy in {} did not start", h.name),
        }
        topo.nft(i, &redirect_rules(ip))?;
    }
    Ok(p)
}

/// Move this thread into namespace `netns` (other threads stay where they are).
fn enter_netns(netns: &str) -> anyhow::Result<()> {
    let f = std::fs::File::open(format!("/var/run/netns/{netns}"))
        .with_context(|| format!("opening namespace {netns}"))?;
    // SAFETY: setns on a valid namespace fd; affects only the calling thread.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns {netns}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

async fn serve(l: TcpListener, fe: SocketAddr, delay: Arc<Delay>) {
    while let Ok((inbound, _)) = l.accept().await {
        let delay = delay.clone();
        tokio::spawn(async move {
            let Ok(outbound) = TcpStream::connect(fe).await else {
                return; // the FE is down: the peer sees the connection close
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (ir, iw) = inbound.into_split();
            let (or, ow) = outbound.into_split();
            tokio::join!(pump(ir, ow, delay.clone()), pump(or, iw, delay));
        });
    }
}

/// Chunks (of up to 64 KiB) a delayed direction holds before it stops reading.
const IN_FLIGHT_CHUNKS: usize = 1024;

/// Copy `from` to `to`, each chunk no earlier than its delay after it was read, in order.
async fn pump(
    mut from: impl AsyncReadExt + Unpin,
    mut to: impl AsyncWriteExt + Unpin + Send + 'static,
    delay: Arc<Delay>,
) {
    // Chunks in flight, bounded like a socket buffer: a full line stops reading until the
    // oldest chunk is delivered (TCP's own backpressure, one hop later).
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT_CHUNKS);
    let writer = tokio::spawn(async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut last = Instant::now();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                // Never before the previous chunk: jitter must not reorder a byte stream.
                last = last.max(Instant::now() + delay.sample());
                if tx.send((last, buf[..n].to_vec())).await.is_err() {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}
