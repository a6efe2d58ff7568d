//! Roster under test: 3 or 5 FEs as child processes (`roster start`, configs written by the
//! playground's `write_configs`, so at the shipped Raft timing 100/400/700 ms) on 127.0.0.1,
//! with 8 fake loopback backends registered; who leads (each FE's Status) and the leader's
//! durable redb commits (its /metrics).

use super::load::{self, Conn, RosterRead};
use super::sys::{self, HOST};
use crate::local_cluster::retry_within;
use crate::playground::children::Children;
use crate::playground::ports::{FePorts, Layout};
use crate::playground::{NodeCmd, write_configs};
use anyhow::Context;
use roster_client::{Client, ClientConfig};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct RosterCluster {
    exe: PathBuf,
    children: Children,
    nodes: Vec<NodeCmd>,
    fes: Vec<FePorts>,
    pids: Vec<u32>,
    /// The FEs' environment.
    env: Vec<(String, String)>,
}

const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The FEs log errors only (their lines are relayed with the FE's name).
const FE_LOG: (&str, &str) = ("RUST_LOG", "error");

impl RosterCluster {
    /// `n` FEs with data under `dir` (fresh). Returns once every FE knows the leader.
    /// `timing`: the Raft timing (heartbeat, election min and max in ms) instead of the
    /// shipped one, through the FEs' `ROSTER_RAFT__*` environment.
    pub async fn start(
        dir: &Path,
        n: usize,
        timing: Option<[u64; 3]>,
    ) -> anyhow::Result<RosterCluster> {
        let ports = sys::free_ports(4 * n)?;
        let fes: Vec<FePorts> = (0..n)
            .map(|i| FePorts {
                edit_log: ports[4 * i],
                rpc: ports[4 * i + 1],
                query: ports[4 * i + 2],
                http: ports[4 * i + 3],
            })
            .collect();
        let layout = Layout {
            fes: fes.clone(),
            agents: Vec::new(),
        };
        let nodes = write_configs(dir, &layout)?;
        let mut c = RosterCluster {
            exe: std::env::current_exe().context("finding the roster executable")?,
            children: Children::new(),
            nodes,
            fes,
            pids: vec![0; n],
            env: vec![(FE_LOG.0.to_string(), FE_LOG.1.to_string())],
        };
        if let Some([hb, min, max]) = timing {
            for (k, v) in [
                ("ROSTER_RAFT__HEARTBEAT_INTERVAL_MS", hb),
                ("ROSTER_RAFT__ELECTION_TIMEOUT_MIN_MS", min),
                ("ROSTER_RAFT__ELECTION_TIMEOUT_MAX_MS", max),
            ] {
                c.env.push((k.to_string(), v.to_string()));
            }
        }
        for i in 0..n {
            c.spawn(i)?;
        }
        for i in 0..n {
            c.wait_member(i).await?;
        }
        Ok(c)
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let node = &self.nodes[i];
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let pid = self
            .children
            .spawn_program(&node.name, &self.exe, &node.args, &env)?;
        sys::started(pid);
        self.pids[i] = pid;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.fes.len()
    }

    pub fn addr(&self, i: usize) -> String {
        format!("{HOST}:{}", self.fes[i].rpc)
    }

    pub fn pids(&self) -> Vec<u32> {
        self.pids.clone()
    }

    /// A client of FE `i` alone, as root (empty password: the cluster is insecure).
    fn client(&self, i: usize, timeout: Duration) -> anyhow::Result<Client> {
        let mut cfg = ClientConfig::new(vec![self.addr(i)]);
        cfg.timeout = timeout;
        Ok(Client::new(cfg)?)
    }

    async fn wait_member(&self, i: usize) -> anyhow::Result<()> {
        let c = self.client(i, Duration::from_secs(2))?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let last = match c.status_within(Duration::from_millis(500)).await {
                Ok(s) if s.leader_id.is_some() => return Ok(()),
                Ok(_) => "no leader yet".to_string(),
                Err(e) => e.to_string(),
            };
            anyhow::ensure!(
                Instant::now() < deadline,
                "fe{} not ready within {READY_TIMEOUT:?}: {last}",
                i + 1
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The index of the FE that says it leads (not `except`).
    pub async fn leader(&self, except: Option<usize>) -> anyhow::Result<usize> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            for i in (0..self.len()).filter(|i| Some(*i) != except) {
                if let Ok(s) = self
                    .client(i, Duration::from_secs(1))?
                    .status_within(Duration::from_millis(500))
                    .await
                    && s.is_leader
                {
                    return Ok(i);
                }
            }
            anyhow::ensure!(Instant::now() < deadline, "no Roster leader");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The highest Raft term any FE reports (an election raises it; a pre-vote does not).
    pub async fn term(&self) -> anyhow::Result<u64> {
        let mut term = None;
        for i in 0..self.len() {
            if let Ok(s) = self
                .client(i, Duration::from_secs(1))?
                .status_within(Duration::from_millis(500))
                .await
            {
                term = term.max(Some(s.term));
            }
        }
        term.context("no FE answered Status")
    }

    /// Durable commits of FE `i`'s log.redb plus sm.redb since it started (its /metrics).
    pub async fn fsyncs(&self, i: usize) -> anyhow::Result<f64> {
        let page = sys::http_get(self.fes[i].http, "/metrics").await?;
        let mut sum = 0.0;
        for file in ["log.redb", "sm.redb"] {
            let series = format!("roster_disk_durable_commits_total{{file=\"{file}\"}}");
            sum += sys::prom_sample(&page, &series)
                .with_context(|| format!("fe{}'s /metrics has no {series}", i + 1))?;
        }
        Ok(sum)
    }

    /// Register the 8 fake backends, and wait until every FE serves them to a stale read.
    pub async fn set_up(&self) -> anyhow::Result<()> {
        let leader = self.client(self.leader(None).await?, Duration::from_secs(10))?;
        let quoted: Vec<String> = (0..load::KEYS)
            .map(|k| format!("\"{}\"", load::backend_addr(k)))
            .collect();
        let add = format!("ALTER SYSTEM ADD BACKEND {}", quoted.join(", "));
        retry_within(
            &leader,
            &add,
            "registering the backends",
            "Same backend already exists",
            READY_TIMEOUT,
        )
        .await?;
        for i in 0..self.len() {
            let c = Conn::roster(&self.addr(i), true, RosterRead::Show, READY_TIMEOUT)?;
            let deadline = Instant::now() + READY_TIMEOUT;
            while let Err(e) = c.read(true).await {
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "fe{} did not see the backends: {e:#}",
                    i + 1
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// kill -9 FE `i`; returns once it has ended.
    pub async fn kill9(&mut self, i: usize) -> anyhow::Result<()> {
        // SAFETY: a plain kill(2) of our own child, not reaped before we read its exit below.
        unsafe { libc::kill(self.pids[i] as libc::pid_t, libc::SIGKILL) };
        tokio::time::timeout(Duration::from_secs(10), self.children.next_exit())
            .await
            .context("a killed FE did not end")?;
        Ok(())
    }

    /// Start FE `i` again on its data; returns once it knows a leader.
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.spawn(i)?;
        self.wait_member(i).await
    }

    pub async fn stop(self) {
        self.children.stop().await;
    }
}
