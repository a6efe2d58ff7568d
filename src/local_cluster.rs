//! Three FEs and backend agents inside this one process, on loopback: what `roster bench` runs
//! (the playground runs each node as its own process instead, see `playground/`).

use crate::config::{FileConfig, MemberSection};
use crate::start;
use std::time::{Duration, Instant};

/// Run `sql` until it succeeds (or fails with `done_if`), for up to 30 s.
pub async fn retry(
    client: &roster_client::Client,
    sql: &str,
    what: &str,
    done_if: &str,
) -> anyhow::Result<()> {
    retry_within(client, sql, what, done_if, Duration::from_secs(30)).await
}

/// `retry` for up to `within`.
pub async fn retry_within(
    client: &roster_client::Client,
    sql: &str,
    what: &str,
    done_if: &str,
    within: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        match client.execute(sql).await {
            Ok(_) => return Ok(()),
            Err(e) if e.to_string().contains(done_if) => return Ok(()),
            Err(e) if Instant::now() < deadline => {
                tracing::debug!("{what}: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(anyhow::anyhow!("{what} failed: {e}")),
        }
    }
}

/// Three FEs and some backend agents in this process, on loopback: what the benchmarks run.
pub struct LocalCluster {
    fes: Vec<start::RunningFe>,
    agents: Vec<tokio::task::JoinHandle<()>>,
    /// Logged in as root (empty password: these clusters are `insecure`).
    pub client: roster_client::Client,
    /// Each agent's `host:heartbeat_port` and `host:be_port`.
    pub agent_addrs: Vec<(String, String)>,
    /// The cluster token the agents obey (for calling them directly).
    pub token: roster_transport::cluster_token::ClusterToken,
}

impl LocalCluster {
    pub async fn stop(self) {
        for a in self.agents {
            a.abort();
        }
        for fe in self.fes {
            fe.stop().await;
        }
    }
}

/// Start FEs on `fe_ports` ([edit_log, rpc, query, http] each) and agents on `agent_ports`
/// ((heartbeat, be) each; agent i on 127.0.0.{i+1}, so replicas can be on distinct hosts),
/// with data under `root`, and register the agents.
pub async fn start_local(
    root: &std::path::Path,
    cluster_id: &str,
    fe_ports: Vec<[u16; 4]>,
    agent_ports: Vec<(u16, u16)>,
) -> anyhow::Result<LocalCluster> {
    let members: Vec<MemberSection> = fe_ports
        .iter()
        .enumerate()
        .map(|(n, p)| MemberSection {
            node_id: n as u64 + 1,
            host: "127.0.0.1".into(),
            edit_log_port: p[0],
            rpc_port: p[1],
            query_port: p[2],
            http_port: p[3],
        })
        .collect();
    // Insecure agents obey only holders of the cluster token: one per cluster.
    let token = roster_transport::cluster_token::ClusterToken::random();
    let mut fes = Vec::new();
    for m in &members {
        let cfg = FileConfig {
            node_id: m.node_id,
            name: Some(format!("fe{}", m.node_id)),
            cluster_id: cluster_id.into(),
            host: m.host.clone(),
            data_dir: root.join(format!("fe{}", m.node_id)),
            edit_log_port: m.edit_log_port,
            rpc_port: m.rpc_port,
            query_port: m.query_port,
            http_port: m.http_port,
            initial_members: members.clone(),
            // A throwaway loopback cluster: root has an empty password.
            insecure: true,
            cluster_token: Some(token.as_str().to_string()),
            ..FileConfig::default()
        };
        fes.push(start::launch(&cfg).await?);
    }
    let mut agents = Vec::new();
    let mut agent_addrs = Vec::new();
    for (i, (hb, be)) in agent_ports.iter().enumerate() {
        let dir = root.join(format!("be{}", i + 1));
        let host = format!("127.0.0.{}", i + 1);
        let args = crate::backend::BackendArgs::new(&host, dir, *hb, *be, token.as_str());
        agent_addrs.push((format!("{host}:{hb}"), format!("{host}:{be}")));
        agents.push(tokio::spawn(async move {
            if let Err(e) = crate::backend::run(args).await {
                tracing::error!("backend agent stopped: {e:#}");
            }
        }));
    }
    let endpoints = members
        .iter()
        .map(|m| format!("{}:{}", m.host, m.rpc_port))
        .collect();
    let client = roster_client::Client::new(roster_client::ClientConfig::new(endpoints))?;
    let quoted: Vec<String> = agent_addrs
        .iter()
        .map(|(a, _)| format!("\"{a}\""))
        .collect();
    let add = format!("ALTER SYSTEM ADD BACKEND {}", quoted.join(", "));
    retry(
        &client,
        &add,
        "registering the backends",
        "Same backend already exists",
    )
    .await?;
    Ok(LocalCluster {
        fes,
        agents,
        client,
        agent_addrs,
        token,
    })
}
