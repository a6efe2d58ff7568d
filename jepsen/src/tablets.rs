//! The decommission workload (reference scenario 5): real backend agents on their own hosts
//! hold a table of `BUCKETS` tablets × `RF` replicas of real bytes; an operator decommissions,
//! cancels and re-adds backends while the nemesis partitions and kills FEs, so the master's
//! scheduler drains, cancels, balances and finishes under faults; observers read the table's
//! replicas from every FE all along. The checker (`checker::replication`) then demands that
//! every observation kept every tablet at `RF` healthy replicas.
//!
//! Agents are never partitioned from the FEs: the faults are the FEs', as in the issue.

use crate::db::Agents;
use crate::history::Recorder;
use crate::workload::{Proc, Worker, client_of};
use anyhow::bail;
use rand::Rng;
use roster_client::{Client, QueryResult};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

pub const TABLE: &str = "jt";
pub const BUCKETS: usize = 12;
pub const RF: u64 = 3;
/// Bytes of data per replica: with the clone rate limit below, one clone takes about 0.5 s,
/// so a drain spans several seconds of faults.
const FILL: u64 = 1 << 20;
const CLONE_RATE: u64 = 2 << 20;

fn column(r: &QueryResult, row: usize, name: &str) -> Option<String> {
    let i = r.columns.iter().position(|c| c == name)?;
    r.rows.get(row)?.get(i)?.clone()
}

/// Per tablet: `(backend id, state, backend alive)` of each replica, from SHOW TABLETS.
pub type Replicas = BTreeMap<u64, Vec<(u64, String, bool)>>;

pub async fn replicas(c: &Client) -> Result<Replicas, roster_client::ClientError> {
    let r = c.execute(&format!("SHOW TABLETS FROM {TABLE}")).await?;
    let mut out: Replicas = BTreeMap::new();
    for i in 0..r.rows.len() {
        let num = |n: &str| column(&r, i, n).and_then(|v| v.parse::<u64>().ok());
        let (Some(tablet), Some(backend)) = (num("TabletId"), num("BackendId")) else {
            continue;
        };
        out.entry(tablet).or_default().push((
            backend,
            column(&r, i, "State").unwrap_or_default(),
            column(&r, i, "BackendAlive").as_deref() == Some("true"),
        ));
    }
    Ok(out)
}

/// A replica is healthy when it is NORMAL on a backend the FE sees alive.
fn healthy(rs: &[(u64, String, bool)]) -> u64 {
    rs.iter().filter(|r| r.1 == "NORMAL" && r.2).count() as u64
}

/// Settings, the agents registered and alive, and the table created with all its replicas.
pub async fn setup(c: &Client, agents: &Agents) -> anyhow::Result<()> {
    for (k, v) in [
        ("heartbeat_interval_second", "1".to_string()),
        // A busy 2-core machine may miss one heartbeat; a live agent is not dead.
        ("max_backend_heartbeat_failure_tolerance_count", "3".into()),
        ("clone_rate_limit_bytes_per_sec", CLONE_RATE.to_string()),
        ("disable_backend_black_list", "true".into()),
    ] {
        c.execute(&format!(r#"ADMIN SET FRONTEND CONFIG ("{k}" = "{v}")"#))
            .await?;
    }
    let addrs: Vec<String> = (0..agents.len())
        .map(|k| format!("\"{}\"", agents.addr(k)))
        .collect();
    c.execute(&format!("ALTER SYSTEM ADD BACKEND {}", addrs.join(", ")))
        .await?;
    wait(Duration::from_secs(30), "every agent alive", async || {
        let bs = c.list_backends().await.ok()?;
        (bs.len() == agents.len() && bs.iter().all(|b| b.alive)).then_some(())
    })
    .await?;
    c.execute(&format!(
        "CREATE TABLE {TABLE} (k INT) DISTRIBUTED BY HASH(k) BUCKETS {BUCKETS} PROPERTIES \
         (\"replication_num\" = \"{RF}\", \"fill_bytes_per_tablet\" = \"{FILL}\")"
    ))
    .await?;
    wait(
        Duration::from_secs(60),
        "every replica created",
        async || {
            let t = replicas(c).await.ok()?;
            (t.len() == BUCKETS && t.values().all(|rs| healthy(rs) == RF)).then_some(())
        },
    )
    .await
}

async fn wait<T>(
    within: Duration,
    what: &str,
    mut f: impl AsyncFnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() > deadline || crate::stopped() {
            bail!("{what}: not within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads the table's replicas from one FE, over and over.
pub struct ObserverWorker {
    pub w: Worker,
}

/// One observation: a `tablets` op whose value maps tablet id to healthy replicas.
pub async fn observe(p: &Proc<'_>, c: &Client) -> bool {
    p.read("tablets", Some("tablets".into()), replicas(c), |t| {
        let counts: BTreeMap<String, u64> = t
            .iter()
            .map(|(k, rs)| (k.to_string(), healthy(rs)))
            .collect();
        json!(counts)
    })
    .await
}

impl ObserverWorker {
    pub async fn run(self, h: Recorder) {
        let c = client_of(&self.w.addr, Duration::from_secs(3));
        // Reads never end `info`: the process never retires.
        let p = self.w.process(&h);
        while self.w.running() {
            observe(&p, &c).await;
            tokio::time::sleep(self.w.gap).await;
        }
    }
}

/// Decommissions, cancels and re-adds backends every 1-3 s, through whichever FE leads (its
/// `w.addr` names every FE).
pub struct OperatorWorker {
    pub w: Worker,
    /// Every agent's address, to add back the ones drained and dropped.
    pub agents: Vec<String>,
}

impl OperatorWorker {
    pub async fn run(self, h: Recorder) {
        let mut rng = self.w.rng(0x6c8e_9cf5_7093_2bd5);
        let c = client_of(&self.w.addr, Duration::from_secs(5));
        let mut p = self.w.process(&h);
        while self.w.running() {
            tokio::time::sleep(Duration::from_millis(rng.random_range(1000..3000))).await;
            let Ok(bs) = c.list_backends().await else {
                continue;
            };
            let listed: BTreeSet<String> = bs
                .iter()
                .map(|b| format!("{}:{}", b.host, b.heartbeat_port))
                .collect();
            let gone: Vec<&String> = self
                .agents
                .iter()
                .filter(|a| !listed.contains(*a))
                .collect();
            let (f, key, sql) = if let Some(a) = gone.first().filter(|_| rng.random_bool(0.5)) {
                (
                    "add",
                    format!("be/{a}"),
                    format!("ALTER SYSTEM ADD BACKEND \"{a}\""),
                )
            } else {
                let live: Vec<_> = bs
                    .iter()
                    .filter(|b| b.membership != "DECOMMISSIONED")
                    .collect();
                if live.is_empty() {
                    continue;
                }
                // Drains are short: give cancels a fair share of the draining backends.
                let draining: Vec<_> = live
                    .iter()
                    .filter(|b| b.membership == "DECOMMISSIONING")
                    .collect();
                let b = if !draining.is_empty() && rng.random_bool(0.5) {
                    draining[rng.random_range(0..draining.len())]
                } else {
                    live[rng.random_range(0..live.len())]
                };
                if b.membership == "DECOMMISSIONING" {
                    (
                        "cancel",
                        format!("be/{}", b.id),
                        format!("CANCEL DECOMMISSION BACKEND \"{}\"", b.id),
                    )
                } else {
                    (
                        "decommission",
                        format!("be/{}", b.id),
                        format!("ALTER SYSTEM DECOMMISSION BACKEND \"{}\"", b.id),
                    )
                }
            };
            p.write(f, Some(key), json!(sql), c.execute(&sql), |_| Ok(()))
                .await;
        }
    }
}

/// After the run: cancel what is still draining, then wait until the table is settled (every
/// tablet exactly `RF` NORMAL replicas on alive backends, no move in flight) as seen by `c`.
pub async fn settle(c: &Client, within: Duration) -> anyhow::Result<()> {
    wait(within, "the table settles", async || {
        let bs = c.list_backends().await.ok()?;
        let draining: Vec<String> = bs
            .iter()
            .filter(|b| b.membership == "DECOMMISSIONING")
            .map(|b| format!("\"{}\"", b.id))
            .collect();
        if !draining.is_empty() {
            let _ = c
                .execute(&format!(
                    "CANCEL DECOMMISSION BACKEND {}",
                    draining.join(", ")
                ))
                .await;
            return None;
        }
        let t = replicas(c).await.ok()?;
        (t.len() == BUCKETS
            && t.values()
                .all(|rs| rs.len() as u64 == RF && healthy(rs) == RF))
        .then_some(())
    })
    .await
}

/// The replica files on every registered agent equal the catalog's placement: nothing leaked
/// (a file the catalog does not place there) and nothing missing. Waits up to `within` for the
/// agents' deletions to catch up.
pub async fn files_match(c: &Client, agents: &Agents, within: Duration) -> anyhow::Result<String> {
    let mut last = String::new();
    let found = wait(
        within,
        "agent files to match the catalog",
        async || match files_mismatch(c, agents).await {
            Ok(summary) => Some(summary),
            Err(why) => {
                last = why;
                None
            }
        },
    )
    .await;
    found.map_err(|e| anyhow::anyhow!("{e}: {last}"))
}

async fn files_mismatch(c: &Client, agents: &Agents) -> Result<String, String> {
    let bs = c.list_backends().await.map_err(|e| e.to_string())?;
    let t = replicas(c).await.map_err(|e| e.to_string())?;
    let mut want: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    for (tablet, rs) in &t {
        for r in rs {
            want.entry(r.0).or_default().insert(*tablet);
        }
    }
    let mut files = 0;
    for k in 0..agents.len() {
        let Some(b) = bs
            .iter()
            .find(|b| format!("{}:{}", b.host, b.heartbeat_port) == agents.addr(k))
        else {
            continue;
        };
        let held = tablet_dirs(&agents.data_dir(k));
        let expected = want.remove(&b.id).unwrap_or_default();
        if held != expected {
            return Err(format!(
                "agent {} (backend {}) holds {held:?}, the catalog places {expected:?} there",
                agents.addr(k),
                b.id
            ));
        }
        files += held.len();
    }
    if !want.is_empty() {
        return Err(format!("replicas on backends of no agent: {want:?}"));
    }
    Ok(format!("{files} replica directories match the catalog"))
}

/// Tablet ids of the replica directories in an agent's data directory.
fn tablet_dirs(dir: &Path) -> BTreeSet<u64> {
    std::fs::read_dir(dir.join("tablets"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}
