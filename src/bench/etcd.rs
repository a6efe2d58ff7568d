//! The peer: an etcd 3.4 cluster of 3 or 5 members as child processes on 127.0.0.1, at etcd's
//! default timing (heartbeat 100 ms, election 1000 ms), with the command lines of
//! `reference/perf.md` section 1.3; who leads (Maintenance.Status) and the leader's WAL fsyncs
//! (its /metrics).

use super::load::{self, Conn};
use super::sys::{self, HOST};
use crate::playground::children::Children;
use anyhow::Context;
use roster_proto::pb::etcd::StatusRequest;
use roster_proto::pb::etcd::maintenance_client::MaintenanceClient;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Debian's etcd-server on PATH, or the error that says how to get it.
pub fn find() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file())
        .context("etcd not found: apt-get install etcd-server (Debian's etcd 3.4)")
}

struct Member {
    name: String,
    client_port: u16,
    args: Vec<OsString>,
    pid: u32,
}

pub struct EtcdCluster {
    exe: PathBuf,
    children: Children,
    members: Vec<Member>,
}

/// How long a member may take to start, or the cluster to elect a leader.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

impl EtcdCluster {
    /// `n` members with data under `dir` (fresh). Returns once every member knows the leader.
    pub async fn start(exe: &Path, dir: &Path, n: usize) -> anyhow::Result<EtcdCluster> {
        let ports = sys::free_ports(2 * n)?;
        let peer = |i: usize| format!("http://{HOST}:{}", ports[2 * i + 1]);
        let initial: Vec<String> = (0..n).map(|i| format!("m{}={}", i + 1, peer(i))).collect();
        let mut members = Vec::new();
        for i in 0..n {
            let name = format!("m{}", i + 1);
            let client = format!("http://{HOST}:{}", ports[2 * i]);
            let data = dir.join(&name).to_string_lossy().into_owned();
            let flags: [(&str, String); 13] = [
                ("--name", name.clone()),
                ("--data-dir", data),
                ("--listen-client-urls", client.clone()),
                ("--advertise-client-urls", client),
                ("--listen-peer-urls", peer(i)),
                ("--initial-advertise-peer-urls", peer(i)),
                ("--initial-cluster", initial.join(",")),
                ("--initial-cluster-state", "new".into()),
                ("--initial-cluster-token", "roster-bench".into()),
                ("--heartbeat-interval", "100".into()),
                ("--election-timeout", "1000".into()),
                ("--logger", "zap".into()),
                ("--log-level", "error".into()),
            ];
            let args: Vec<OsString> = flags
                .iter()
                .flat_map(|(f, v)| [OsString::from(f), OsString::from(v)])
                .collect();
            members.push(Member {
                name: format!("etcd-{name}"),
                client_port: ports[2 * i],
                args,
                pid: 0,
            });
        }
        let mut c = EtcdCluster {
            exe: exe.to_path_buf(),
            children: Children::new(),
            members,
        };
        for i in 0..n {
            c.spawn(i)?;
        }
        for i in 0..n {
            c.wait_member(i).await?;
        }
        Ok(c)
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let m = &self.members[i];
        let pid = self
            .children
            .spawn_program(&m.name, &self.exe, &m.args, &[])?;
        sys::started(pid);
        self.members[i].pid = pid;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn addr(&self, i: usize) -> String {
        format!("{HOST}:{}", self.members[i].client_port)
    }

    pub fn pids(&self) -> Vec<u32> {
        self.members.iter().map(|m| m.pid).collect()
    }

    /// Member `i`'s (own id, the leader it knows; 0 if none).
    async fn status(&self, i: usize) -> anyhow::Result<(u64, u64)> {
        let ch = load::endpoint(&self.addr(i))?
            .timeout(Duration::from_millis(500))
            .connect_lazy();
        let s = tokio::time::timeout(
            Duration::from_millis(600),
            MaintenanceClient::new(ch).status(StatusRequest {}),
        )
        .await
        .context("status: no answer")??
        .into_inner();
        Ok((s.header.map(|h| h.member_id).unwrap_or(0), s.leader))
    }

    /// Wait until member `i` answers and knows a leader.
    async fn wait_member(&self, i: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let last = match self.status(i).await {
                Ok((_, l)) if l != 0 => return Ok(()),
                Ok(_) => "no leader yet".to_string(),
                Err(e) => format!("{e:#}"),
            };
            anyhow::ensure!(
                Instant::now() < deadline,
                "etcd member m{} not ready within {READY_TIMEOUT:?}: {last}",
                i + 1
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The index of the member that says it leads (among those running, not `except`).
    pub async fn leader(&self, except: Option<usize>) -> anyhow::Result<usize> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            for i in (0..self.len()).filter(|i| Some(*i) != except) {
                if let Ok((me, l)) = self.status(i).await
                    && me != 0
                    && me == l
                {
                    return Ok(i);
                }
            }
            anyhow::ensure!(Instant::now() < deadline, "no etcd leader");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// WAL fsyncs of member `i` since it started (its `etcd_disk_wal_fsync_duration_seconds`
    /// count).
    pub async fn fsyncs(&self, i: usize) -> anyhow::Result<f64> {
        let page = sys::http_get(self.members[i].client_port, "/metrics").await?;
        sys::prom_sample(&page, "etcd_disk_wal_fsync_duration_seconds_count")
            .context("etcd's /metrics has no etcd_disk_wal_fsync_duration_seconds_count")
    }

    /// The 8 keys, so that every read sees 8.
    pub async fn set_up(&self) -> anyhow::Result<()> {
        let c = Conn::etcd(&self.addr(self.leader(None).await?))?;
        for k in 0..load::KEYS {
            c.write(k).await?;
        }
        Ok(())
    }

    /// kill -9 member `i`; returns once it has ended.
    pub async fn kill9(&mut self, i: usize) -> anyhow::Result<()> {
        // SAFETY: a plain kill(2) of our own child, not reaped before we read its exit below.
        unsafe { libc::kill(self.members[i].pid as libc::pid_t, libc::SIGKILL) };
        tokio::time::timeout(Duration::from_secs(10), self.children.next_exit())
            .await
            .context("a killed etcd member did not end")?;
        Ok(())
    }

    /// Start member `i` again on its data; returns once it knows a leader.
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.spawn(i)?;
        self.wait_member(i).await
    }

    pub async fn stop(self) {
        self.children.stop().await;
    }
}
