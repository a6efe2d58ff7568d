//! Real `roster backend` agent processes for tests, each on its own loopback address
//! (127.0.0.N) so that replicas can be placed on distinct hosts on one machine.

use super::{BIN, Cluster};
use roster_client::{Client, QueryResult};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Agent {
    pub host: String,
    pub port: u16,
    pub be_port: u16,
    pub dir: PathBuf,
    pub log: PathBuf,
    /// More flags for `roster backend` (fault hooks).
    pub extra_args: Vec<String>,
    child: Option<Child>,
}

impl Agent {
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(BIN)
            .args(["backend", "--host", &self.host, "--data-dir"])
            .arg(&self.dir)
            .args([
                "--heartbeat-port",
                &self.port.to_string(),
                "--be-port",
                &self.be_port.to_string(),
            ])
            .args(&self.extra_args)
            .args((!self.extra_args.iter().any(|a| a == "--certs-dir")).then_some("--insecure"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Still running (not exited).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Tablet ids of the replica directories on disk.
    pub fn tablet_dirs(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = std::fs::read_dir(self.dir.join("tablets"))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Start `n` agents (not yet registered), numbered 0.., with data and logs in the cluster's
/// directory.
pub fn start_agents(cluster: &Cluster, n: usize) -> Vec<Agent> {
    (0..n).map(|i| start_agent(cluster, i, &[])).collect()
}

/// Start agent number `i` (host 127.0.0.{i+1}, data in `be{i}`), with extra flags.
pub fn start_agent(cluster: &Cluster, i: usize, extra_args: &[&str]) -> Agent {
    let ports = super::free_ports(2);
    let mut a = Agent {
        host: format!("127.0.0.{}", i + 1),
        port: ports[0],
        be_port: ports[1],
        dir: cluster.dir.path().join(format!("be{i}")),
        log: cluster.dir.path().join(format!("be{i}.log")),
        // In a secure cluster the agents use its certs directory (backend.crt), in an insecure
        // one its cluster token.
        extra_args: cluster
            .certs_dir
            .iter()
            .flat_map(|d| ["--certs-dir".to_string(), d.display().to_string()])
            .chain(
                cluster
                    .token
                    .iter()
                    .flat_map(|t| ["--cluster-token".to_string(), t.clone()]),
            )
            .chain(extra_args.iter().map(|s| s.to_string()))
            .collect(),
        child: None,
    };
    a.spawn();
    a
}

/// A client of an insecure agent at `addr` (`host:port`) that sends `token` (none: no token).
/// An agent just (re)started may not listen yet: connecting is retried for up to 10 s.
pub async fn agent_client(
    addr: &str,
    token: Option<&str>,
) -> roster_transport::cluster_token::AgentClient {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(10);
    let channel = loop {
        match endpoint.connect().await {
            Ok(c) => break c,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("agent at {addr} not listening after 10 s: {e}"),
        }
    };
    let token = token.map(|t| roster_transport::cluster_token::ClusterToken::new(t).unwrap());
    roster_transport::cluster_token::agent_client(channel, token.as_ref())
}

/// The value of `name` in row `row`.
pub fn column(r: &QueryResult, row: usize, name: &str) -> String {
    let i = r
        .columns
        .iter()
        .position(|c| c == name)
        .unwrap_or_else(|| panic!("no column {name} in {:?}", r.columns));
    r.rows[row][i].clone().unwrap_or_default()
}

/// Wait until `pred` holds for `sql` on every FE in `fes`.
pub async fn wait_all(
    cluster: &Cluster,
    fes: &[usize],
    sql: &str,
    within: Duration,
    what: &str,
    pred: impl Fn(&QueryResult) -> bool,
) {
    let deadline = Instant::now() + within;
    'outer: loop {
        for &i in fes {
            let ok = match cluster.client(i).execute(sql).await {
                Ok(r) => pred(&r),
                Err(_) => false,
            };
            if !ok {
                assert!(
                    Instant::now() < deadline,
                    "{what}: not reached within {within:?}\n{}",
                    cluster.logs()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue 'outer;
            }
        }
        return;
    }
}

/// Register the agents and wait until every FE in `fes` shows them all alive.
pub async fn register(cluster: &Cluster, fes: &[usize], agents: &[Agent]) {
    let addrs: Vec<String> = agents.iter().map(|a| format!("\"{}\"", a.addr())).collect();
    cluster
        .client_of(fes)
        .execute(&format!("ALTER SYSTEM ADD BACKEND {}", addrs.join(", ")))
        .await
        .unwrap();
    let n = agents.len();
    wait_all(
        cluster,
        fes,
        "SHOW BACKENDS",
        Duration::from_secs(20),
        "every backend alive",
        |r| r.rows.len() == n && (0..n).all(|i| column(r, i, "Alive") == "true"),
    )
    .await;
}

/// The usual start of a test with agents: wait for a leader, set `heartbeat_interval_second` to
/// 1 and then `settings` through FEs 0-2, start `n` agents and register them (all alive on
/// every FE). Returns the agents and a client of FEs 0-2.
pub async fn agents_up(
    cluster: &Cluster,
    n: usize,
    settings: &[(&str, &str)],
) -> (Vec<Agent>, Client) {
    cluster.wait_leader(Duration::from_secs(20)).await;
    let c = cluster.client_of(&[0, 1, 2]);
    let mut pairs = vec![("heartbeat_interval_second", "1")];
    pairs.extend_from_slice(settings);
    for (k, v) in pairs {
        c.execute(&format!(r#"ADMIN SET FRONTEND CONFIG ("{k}" = "{v}")"#))
            .await
            .unwrap();
    }
    let agents = start_agents(cluster, n);
    register(cluster, &[0, 1, 2], &agents).await;
    (agents, c)
}
