//! `roster bench decommission`: drains one backend holding real replica data across N agents
//! (all in this process, on loopback) and prints the efficiency E = T_LB / T_actual against the
//! lower bound of `reference/perf.md` section 3.2:
//!
//! ```text
//! T_LB = max( max_r s_r / B ,  S / (min(k_s, k_t) · B) )
//! ```
//!
//! S is the bytes on the leaving backend, B the per-stream bandwidth measured in this run (one
//! clone alone, at the configured rate limit), k_s the backends allowed to send (every healthy
//! holder: all N) and k_t the eligible receivers (N − 1), each with one send and one receive
//! slot (the defaults). A per-stream rate limit makes B a property of the run rather than of
//! how two cores share CPU among parallel streams, so E measures the scheduler: planning,
//! Raft commits and RPC setup between copies.

use crate::local_cluster::{retry, start_local};
use roster_proto::format::bytes;
use roster_proto::pb::backend::{CloneReplicaRequest, DropReplicaRequest};
use roster_transport::cluster_token::agent_client;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct DecommissionBench {
    /// Backend agents (the drain has N − 1 receivers).
    #[arg(long, default_value_t = 5)]
    agents: usize,
    /// Tablets of the table (3 replicas each).
    #[arg(long, default_value_t = 60)]
    tablets: u32,
    #[arg(long, default_value_t = 4 << 20)]
    bytes_per_tablet: u64,
    /// Per-clone rate limit (clone_rate_limit_bytes_per_sec); 0 = unlimited.
    #[arg(long, default_value_t = 8 << 20)]
    rate_limit: u64,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn col(r: &roster_client::QueryResult, row: usize, name: &str) -> String {
    r.columns
        .iter()
        .position(|c| c == name)
        .and_then(|i| r.rows[row][i].clone())
        .unwrap_or_default()
}

pub async fn run(b: DecommissionBench) -> anyhow::Result<()> {
    anyhow::ensure!(
        b.agents >= 4,
        "--agents must be at least 4 (3 replicas + a receiver)"
    );
    let dir = tempfile::Builder::new().prefix("roster-bench-").tempdir()?;
    let mut fe_ports = Vec::new();
    for _ in 0..3 {
        fe_ports.push([free_port()?, free_port()?, free_port()?, free_port()?]);
    }
    let mut agent_ports = Vec::new();
    for _ in 0..b.agents {
        agent_ports.push((free_port()?, free_port()?));
    }
    let local = start_local(dir.path(), "roster-bench", fe_ports, agent_ports).await?;
    let c = &local.client;
    for (k, v) in [
        ("heartbeat_interval_second", "1".to_string()),
        ("clone_rate_limit_bytes_per_sec", b.rate_limit.to_string()),
        ("disable_balance", "true".to_string()),
    ] {
        c.execute(&format!(r#"ADMIN SET FRONTEND CONFIG ("{k}" = "{v}")"#))
            .await?;
    }
    let create = format!(
        "CREATE TABLE bench (k INT) DISTRIBUTED BY HASH(k) BUCKETS {} \
         PROPERTIES (\"replication_num\" = \"3\", \"fill_bytes_per_tablet\" = \"{}\")",
        b.tablets, b.bytes_per_tablet
    );
    retry(c, &create, "creating the table", "already exists").await?;
    let tablets = c.execute("SHOW TABLETS FROM bench").await?;
    anyhow::ensure!(
        (0..tablets.rows.len()).all(|i| col(&tablets, i, "State") == "NORMAL"),
        "replicas were not all created"
    );

    // B: one clone alone, agent to agent, at the rate limit.
    let (probe_tablet, holders) = {
        let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for i in 0..tablets.rows.len() {
            by.entry(col(&tablets, i, "TabletId"))
                .or_default()
                .push(col(&tablets, i, "BackendId"));
        }
        by.into_iter().next().expect("a tablet")
    };
    let idx = |id: &str| id.parse::<usize>().unwrap_or(10001) - 10001;
    let source = &local.agent_addrs[idx(&holders[0])].1;
    let target = (0..b.agents)
        .find(|i| !holders.iter().any(|h| idx(h) == *i))
        .expect("a non-holder");
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", local.agent_addrs[target].0))?
            .connect()
            .await?;
    let mut agent = agent_client(channel, Some(&local.token));
    // The agent's clone fence wants the master's term (sources are the registered backends).
    let master_term = c.status().await?.term;
    // The best of three: a lower bound must use the fastest a stream was seen to go.
    let mut stream_secs = f64::MAX;
    let mut probe_bytes = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let probe = agent
            .clone_replica(CloneReplicaRequest {
                tablet_id: probe_tablet.parse()?,
                table_id: 0,
                source_addr: source.clone(),
                expected_bytes: b.bytes_per_tablet,
                expected_checksum: 0,
                checksum_known: false,
                rate_limit_bytes_per_sec: b.rate_limit,
                master_term,
            })
            .await?
            .into_inner();
        stream_secs = stream_secs.min(t.elapsed().as_secs_f64());
        probe_bytes = probe.bytes;
        agent
            .drop_replica(DropReplicaRequest {
                tablet_id: probe.tablet_id,
            })
            .await?;
    }
    let bw = probe_bytes as f64 / stream_secs;

    // The drain.
    let leaving = "10001";
    let (mut s_total, mut s_max, mut n) = (0u64, 0u64, 0u64);
    for i in 0..tablets.rows.len() {
        if col(&tablets, i, "BackendId") == leaving {
            let s: u64 = col(&tablets, i, "LocalDataSize").parse()?;
            s_total += s;
            s_max = s_max.max(s);
            n += 1;
        }
    }
    let started = Instant::now();
    c.execute(&format!(r#"ALTER SYSTEM DECOMMISSION BACKEND "{leaving}""#))
        .await?;
    loop {
        let r = c.execute("SHOW BACKENDS").await?;
        if !(0..r.rows.len()).any(|i| col(&r, i, "BackendId") == leaving) {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "the drain did not finish in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let actual = started.elapsed().as_secs_f64();
    let k_s = b.agents as f64;
    let k_t = (b.agents - 1) as f64;
    let t_lb = (s_max as f64 / bw).max(s_total as f64 / (k_s.min(k_t) * bw));
    println!(
        "decommission benchmark: {} agents, {} tablets x 3 replicas of {}, rate limit {}/s per clone, clone slots 1 send / 1 receive",
        b.agents,
        b.tablets,
        bytes(b.bytes_per_tablet),
        bytes(b.rate_limit)
    );
    println!(
        "  leaving backend {leaving}: {n} replicas, S = {}",
        bytes(s_total)
    );
    println!(
        "  per-stream bandwidth B = {}/s (the fastest of 3 clones alone, {:.3} s)",
        bytes(bw as u64),
        stream_secs
    );
    println!(
        "  lower bound T_LB = max(max_r s_r / B, S / (min(k_s={k_s}, k_t={k_t}) * B)) = {t_lb:.2} s"
    );
    println!("  actual T = {actual:.2} s (DECOMMISSION until the backend is dropped)");
    println!("  efficiency E = T_LB / T = {:.2}", t_lb / actual);
    local.stop().await;
    Ok(())
}
