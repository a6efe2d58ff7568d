//! Test harness: real `roster start` processes on loopback, each with its own config file,
//! data directory and log file under one temporary directory. Dropping a `Cluster` kills every
//! process. Waits are for conditions with deadlines, never bare sleeps.
#![allow(dead_code)]

pub mod agents;

use roster_client::{Client, ClientConfig, ClientError, QueryResult};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_roster");
/// root's password in every test cluster.
pub const ROOT_PASSWORD: &str = "test-root";

#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub id: u64,
    pub edit_log_port: u16,
    pub rpc_port: u16,
    pub query_port: u16,
    pub http_port: u16,
    pub config: PathBuf,
    pub log: PathBuf,
}

impl NodeSpec {
    pub fn rpc_addr(&self) -> String {
        format!("127.0.0.1:{}", self.rpc_port)
    }
    pub fn edit_log_addr(&self) -> String {
        format!("127.0.0.1:{}", self.edit_log_port)
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<NodeSpec>,
    procs: Vec<Option<Child>>,
    /// Secure mode (`start_secure`): the certs directory of the FEs, the agents and root.
    pub certs_dir: Option<PathBuf>,
    /// Insecure mode: the cluster token in every FE's config, given to the agents too.
    pub token: Option<String>,
}

/// `n` distinct free ports: the listeners stay open until all are chosen, so the kernel
/// cannot hand out the same port twice.
/// Ports for the processes of a test. Not from the kernel's ephemeral range (32768-60999 on
/// Linux): a port picked there and released can be taken as the source port of some outgoing
/// connection before the child process binds it. Ports handed out in this process are never
/// handed out twice, and each one was free when checked on every loopback host the tests use.
pub fn free_ports(n: usize) -> Vec<u16> {
    use std::sync::Mutex;
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().expect("ports lock");
    let mut out = Vec::with_capacity(n);
    let mut candidate = 15_000 + (std::process::id() as u16 % 1000) * 17;
    while out.len() < n {
        candidate = if candidate >= 32_000 {
            15_000
        } else {
            candidate + 1
        };
        if given.contains(&candidate) {
            continue;
        }
        let free = (1..=8).all(|h| TcpListener::bind(format!("127.0.0.{h}:{candidate}")).is_ok());
        if free {
            given.push(candidate);
            out.push(candidate);
        }
    }
    out
}

fn member_toml(n: &NodeSpec) -> String {
    format!(
        "[[initial_members]]\nnode_id = {}\nhost = \"127.0.0.1\"\nedit_log_port = {}\nrpc_port = {}\nquery_port = {}\nhttp_port = {}\n",
        n.id, n.edit_log_port, n.rpc_port, n.query_port, n.http_port
    )
}

impl Cluster {
    /// `voters` FEs that bootstrap together, plus `spares` FEs configured to join later.
    pub fn start(voters: usize, spares: usize) -> Cluster {
        Self::start_with(voters, spares, "")
    }

    /// Like `start`, with extra keys appended to each FE's `[raft]` section.
    pub fn start_with(voters: usize, spares: usize, extra_raft: &str) -> Cluster {
        Self::start_configured(voters, spares, "", extra_raft)
    }

    /// Like `start`, with extra top-level keys and extra `[raft]` keys in each FE's config;
    /// `{node_id}` in `extra_top` becomes the FE's id.
    pub fn start_configured(
        voters: usize,
        spares: usize,
        extra_top: &str,
        extra_raft: &str,
    ) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("roster-test-")
            .tempdir()
            .expect("tempdir");
        let mut ports = free_ports(4 * (voters + spares)).into_iter();
        let mut port = move || ports.next().expect("enough ports");
        let nodes: Vec<NodeSpec> = (1..=(voters + spares) as u64)
            .map(|id| NodeSpec {
                id,
                edit_log_port: port(),
                rpc_port: port(),
                query_port: port(),
                http_port: port(),
                config: dir.path().join(format!("fe{id}.toml")),
                log: dir.path().join(format!("fe{id}.log")),
            })
            .collect();
        let members: String = nodes[..voters]
            .iter()
            .map(member_toml)
            .collect::<Vec<_>>()
            .join("\n");
        // Insecure agents obey only holders of the cluster token: one per cluster.
        let token = (!extra_top.contains("certs_dir")).then(|| {
            roster_transport::cluster_token::ClusterToken::random()
                .as_str()
                .to_string()
        });
        for (i, n) in nodes.iter().enumerate() {
            let extra_top = extra_top.replace("{node_id}", &n.id.to_string());
            let security = match &token {
                None => String::new(),
                Some(t) => format!("insecure = true\ncluster_token = \"{t}\"\n"),
            };
            let mut toml = format!(
                "node_id = {}\ncluster_id = \"test\"\nhost = \"127.0.0.1\"\ndata_dir = \"{}\"\n\
                 edit_log_port = {}\nrpc_port = {}\nquery_port = {}\nhttp_port = {}\n\
                 read_timeout_ms = 4000\nwrite_timeout_ms = 8000\nroot_password = \"{ROOT_PASSWORD}\"\n{security}{extra_top}\
                 [raft]\nheartbeat_interval_ms = 150\nelection_timeout_min_ms = 750\nelection_timeout_max_ms = 1500\n",
                n.id,
                dir.path().join(format!("data-fe{}", n.id)).display(),
                n.edit_log_port,
                n.rpc_port,
                n.query_port,
                n.http_port
            );
            toml.push_str(extra_raft);
            if i < voters {
                toml.push('\n');
                toml.push_str(&members);
            }
            std::fs::write(&n.config, toml).expect("write config");
        }
        let mut c = Cluster {
            dir,
            procs: nodes.iter().map(|_| None).collect(),
            nodes,
            certs_dir: None,
            token,
        };
        for i in 0..voters + spares {
            c.spawn(i);
        }
        c
    }

    /// `voters` FEs in secure mode with the certificates in `certs` (made by `roster cert` for
    /// cluster "test": node, backend and client.root certificates).
    pub fn start_secure(voters: usize, certs: &std::path::Path) -> Cluster {
        let extra = format!("certs_dir = \"{}\"\n", certs.display());
        let mut c = Self::start_configured(voters, 0, &extra, "");
        c.certs_dir = Some(certs.to_path_buf());
        c
    }

    pub fn spawn(&mut self, i: usize) {
        assert!(self.procs[i].is_none(), "fe{} is already running", i + 1);
        let n = &self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&n.log)
            .expect("log file");
        let child = Command::new(BIN)
            .args(["start", "--config"])
            .arg(&n.config)
            .env("RUST_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("spawn roster start");
        self.procs[i] = Some(child);
    }

    pub fn pid(&self, i: usize) -> u32 {
        self.procs[i].as_ref().expect("running").id()
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.procs[i].is_some()
    }

    /// The exit status of FE `i` if it has exited by itself (it is then no longer running).
    pub fn try_wait(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        let st = self.procs[i].as_mut()?.try_wait().expect("try_wait")?;
        self.procs[i] = None;
        Some(st)
    }

    /// Wait up to `within` for FE `i` to exit by itself (after a SIGTERM, say); its status if
    /// it did. It is no longer running then.
    pub async fn wait_exit(
        &mut self,
        i: usize,
        within: Duration,
    ) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(st) = self.try_wait(i) {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.procs[i].take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }

    pub fn signal(&self, i: usize, sig: &str) {
        let st = Command::new("kill")
            .args([format!("-{sig}"), self.pid(i).to_string()])
            .status()
            .expect("kill");
        assert!(st.success(), "kill -{sig} failed");
    }

    pub fn client(&self, i: usize) -> Client {
        self.client_of(&[i])
    }

    /// A client over the given FEs (indexes); over TLS, as root, in secure mode.
    pub fn client_of(&self, idx: &[usize]) -> Client {
        let mut cfg = client_config(idx.iter().map(|i| self.nodes[*i].rpc_addr()).collect());
        if let Some(dir) = &self.certs_dir {
            cfg.tls = Some(roster_client::ClientTls::from_dir(dir, "root").expect("client certs"));
        }
        Client::new(cfg).expect("client")
    }

    /// Index of the FE that is leader as seen by `observer`'s status, waiting until one is known
    /// and agreed by it.
    pub async fn leader_seen_by(&self, observer: usize, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        let c = self.client(observer);
        loop {
            if let Ok(s) = c.status().await
                && let Some(l) = s.leader_id
                && let Some(idx) = self.nodes.iter().position(|n| n.id == l)
            {
                return idx;
            }
            if Instant::now() >= deadline {
                panic!(
                    "fe{} saw no leader within {within:?}\n{}{}",
                    observer + 1,
                    self.logs(),
                    self.stacks()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait until some running FE reports itself leader; returns its index.
    pub async fn wait_leader(&self, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            for i in 0..self.nodes.len() {
                if !self.is_running(i) {
                    continue;
                }
                if let Ok(s) = self
                    .client(i)
                    .status_within(Duration::from_millis(500))
                    .await
                    && s.is_leader
                {
                    return i;
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "no leader within {within:?}\n{}{}",
                    self.logs(),
                    self.stacks()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait until `i` has applied at least `index`.
    pub async fn wait_applied(&self, i: usize, index: u64, within: Duration) {
        let deadline = Instant::now() + within;
        let c = self.client(i);
        loop {
            if let Ok(s) = c.status_within(Duration::from_millis(500)).await
                && s.last_applied >= index
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "fe{} did not apply index {index} within {within:?}",
                i + 1
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every running FE's threads as gdb sees them, for a failure where an FE stops answering
    /// (a thread stuck on a lock or a disk shows there, and nowhere in the logs). Empty when
    /// gdb is not installed; each dump is bounded by `timeout`.
    pub fn stacks(&self) -> String {
        let mut out = String::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if !self.is_running(i) {
                continue;
            }
            let dump = Command::new("timeout")
                .args(["20", "gdb", "-p", &self.pid(i).to_string(), "-batch"])
                .args(["-ex", "thread apply all bt 30"])
                .stdin(Stdio::null())
                .output();
            if let Ok(o) = dump
                && o.status.success()
            {
                out.push_str(&format!("--- fe{} threads (gdb) ---\n", n.id));
                out.push_str(&String::from_utf8_lossy(&o.stdout));
            }
        }
        out
    }

    pub fn logs(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            let text = std::fs::read_to_string(&n.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            out.push_str(&format!("--- fe{} log (last lines) ---\n", n.id));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in self.procs.iter_mut() {
            if let Some(mut c) = p.take() {
                let _ = Command::new("kill")
                    .args(["-CONT", &c.id().to_string()])
                    .status();
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if std::thread::panicking() && std::env::var_os("KEEP_ROSTER_TEST").is_some() {
            let kept = self.dir.path().to_path_buf();
            eprintln!("keeping {}", kept.display());
            std::mem::forget(std::mem::replace(
                &mut self.dir,
                tempfile::tempdir().expect("tempdir"),
            ));
        }
    }
}

/// Client settings for root of a test cluster.
pub fn client_config(endpoints: Vec<String>) -> ClientConfig {
    let mut cfg = ClientConfig::new(endpoints);
    cfg.timeout = Duration::from_secs(20);
    cfg.password = ROOT_PASSWORD.to_string();
    cfg
}

pub fn client_for(endpoints: Vec<String>) -> Client {
    Client::new(client_config(endpoints)).expect("client")
}

/// Backend addresses (host:port) in a SHOW BACKENDS result.
pub fn backend_addrs(r: &QueryResult) -> Vec<String> {
    let host = r
        .columns
        .iter()
        .position(|c| c == "Host")
        .expect("Host column");
    let port = r
        .columns
        .iter()
        .position(|c| c == "HeartbeatPort")
        .expect("HeartbeatPort column");
    r.rows
        .iter()
        .map(|row| {
            format!(
                "{}:{}",
                row[host].clone().unwrap_or_default(),
                row[port].clone().unwrap_or_default()
            )
        })
        .collect()
}

/// Run a statement, retrying while the cluster is unavailable (not after unknown outcomes).
pub async fn exec_retry(
    c: &Client,
    sql: &str,
    within: Duration,
) -> Result<QueryResult, ClientError> {
    let deadline = Instant::now() + within;
    loop {
        match c.execute(sql).await {
            Err(ClientError::Unavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// What happened to each write of a history.
#[derive(Debug, Default)]
pub struct WriteLog {
    pub acked: Vec<String>,
    pub refused: Vec<String>,
    pub unknown: Vec<String>,
}

/// A raw HTTP/1.1 GET; returns the status code and the body.
pub fn http_get(port: u16, path: &str, auth: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let auth = auth
        .map(|a| {
            use base64::Engine;
            format!(
                "Authorization: Basic {}\r\n",
                base64::engine::general_purpose::STANDARD.encode(a)
            )
        })
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out[9..12].parse().unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (code, body)
}
