//! The one load generator that drives both systems alike: N client tasks over C gRPC channels
//! (client k on channel k mod C), each taking the next operation number from a shared counter
//! until a fixed count is done; per-operation latency in an HDR histogram.

use hdrhistogram::Histogram;
use roster_proto::pb::etcd::{PutRequest, RangeRequest, kv_client::KvClient};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};

/// What one operation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Write,
    ReadLinearizable,
    ReadStale,
}

/// Keys (etcd) and backends (Roster) the operations go round: 8, as in issue 15.
pub const KEYS: u64 = 8;
/// An etcd write's value: 256 bytes, as etcd's own benchmark.
const VALUE_BYTES: usize = 256;

/// etcd's key `k` (0-based): "bench/k"; all of them are [bench/0, bench/8).
pub fn etcd_key(k: u64) -> Vec<u8> {
    format!("bench/{k}").into_bytes()
}

/// Roster's fake backend `k` (0-based): 127.0.9.(k+1):9050. Loopback only: the FEs heartbeat
/// every registered backend.
pub fn backend_addr(k: u64) -> String {
    format!("127.0.9.{}:9050", k + 1)
}

/// How Roster reads the 8 backends: `SHOW BACKENDS` (issue 15's baseline) or the typed call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RosterRead {
    Show,
    ListBackends,
}

/// One channel to one server, of either system, with what its operations need. Cloned by each
/// client task bound to it (the clones share the channel).
#[derive(Clone)]
pub enum Conn {
    Etcd(KvClient<Channel>),
    Roster(Arc<roster_client::Client>, RosterRead),
}

/// The channel settings both systems get (roster_client's own: 1 s connect timeout, Nagle off).
pub fn endpoint(addr: &str) -> anyhow::Result<Endpoint> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_millis(1000))
        .tcp_nodelay(true))
}

impl Conn {
    pub fn etcd(addr: &str) -> anyhow::Result<Conn> {
        Ok(Conn::Etcd(KvClient::new(endpoint(addr)?.connect_lazy())))
    }

    /// A roster_client over one FE (so it never moves to another: no leader hints with one
    /// endpoint), with stale reads or not, waiting at most `timeout` per call.
    pub fn roster(
        addr: &str,
        stale: bool,
        read: RosterRead,
        timeout: Duration,
    ) -> anyhow::Result<Conn> {
        let mut cfg = roster_client::ClientConfig::new(vec![addr.to_string()]);
        cfg.stale_reads = stale;
        cfg.timeout = timeout;
        Ok(Conn::Roster(
            Arc::new(roster_client::Client::new(cfg)?),
            read,
        ))
    }

    /// Operation number `i` of kind `op`.
    pub async fn run(&self, op: Op, i: u64) -> anyhow::Result<()> {
        match op {
            Op::Write => self.write(i).await,
            Op::ReadLinearizable | Op::ReadStale => self.read(op == Op::ReadStale).await,
        }
    }

    /// etcd: a 256-byte put of key i mod 8. Roster: a new tag.location on backend i mod 8.
    pub async fn write(&self, i: u64) -> anyhow::Result<()> {
        let k = i % KEYS;
        match self {
            Conn::Etcd(kv) => {
                let mut value = format!("{i:016}").into_bytes();
                value.resize(VALUE_BYTES, b'v');
                kv.clone()
                    .put(PutRequest {
                        key: etcd_key(k),
                        value,
                        ..Default::default()
                    })
                    .await?;
            }
            Conn::Roster(c, _) => {
                c.execute(&format!(
                    r#"ALTER SYSTEM MODIFY BACKEND "{}" SET ("tag.location" = "g{i}")"#,
                    backend_addr(k)
                ))
                .await?;
            }
        }
        Ok(())
    }

    /// All 8: etcd's range [bench/0, bench/8) (serializable when `stale`); Roster's backends
    /// (its client's consistency was chosen when it was made).
    pub async fn read(&self, stale: bool) -> anyhow::Result<()> {
        let n = match self {
            Conn::Etcd(kv) => {
                let r = kv
                    .clone()
                    .range(RangeRequest {
                        key: etcd_key(0),
                        range_end: etcd_key(KEYS),
                        serializable: stale,
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                r.kvs.len()
            }
            Conn::Roster(c, RosterRead::Show) => c.execute("SHOW BACKENDS").await?.rows.len(),
            Conn::Roster(c, RosterRead::ListBackends) => c.list_backends().await?.len(),
        };
        anyhow::ensure!(n == KEYS as usize, "a read saw {n} of the {KEYS} items");
        Ok(())
    }
}

/// What one phase measured.
pub struct Phase {
    pub ops: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    /// Latency of each successful operation, µs.
    pub latency_us: Histogram<u64>,
}

impl Phase {
    pub fn ops_per_sec(&self) -> f64 {
        (self.ops - self.errors) as f64 / self.elapsed.as_secs_f64()
    }

    pub fn p_ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

/// Run `ops` operations of kind `op` (numbered from `first`) with `clients` tasks, client k on
/// `conns[k % conns.len()]`; returns when all are done.
pub async fn drive(conns: &[Conn], clients: usize, op: Op, first: u64, ops: u64) -> Phase {
    let next = Arc::new(AtomicU64::new(first));
    let end = first + ops;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..clients {
        let conn = conns[k % conns.len()].clone();
        let next = next.clone();
        tasks.spawn(async move {
            let mut h = histogram();
            let (mut errors, mut first_error) = (0u64, None);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    break;
                }
                let t = Instant::now();
                match conn.run(op, i).await {
                    Ok(()) => {
                        let us = t.elapsed().as_micros() as u64;
                        let _ = h.record(us.max(1));
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("{e:#}"));
                    }
                }
            }
            (h, errors, first_error)
        });
    }
    let mut phase = Phase {
        ops,
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
        latency_us: histogram(),
    };
    while let Some(r) = tasks.join_next().await {
        // A panicking client task is a bug of the bench: let it show.
        let (h, errors, first_error) = r.expect("a load client task panicked");
        let _ = phase.latency_us.add(&h);
        phase.errors += errors;
        if phase.first_error.is_none() {
            phase.first_error = first_error;
        }
    }
    phase.elapsed = started.elapsed();
    phase
}
