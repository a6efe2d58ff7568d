//! The system under test: one `roster start` per node host, run with `ip netns exec` in the
//! node's namespace, on the node's own address and fixed ports, with its data directory and
//! log under the run directory. Processes die with the harness (PR_SET_PDEATHSIG), so even a
//! harness killed by SIGKILL leaves no FE running.

use crate::topology::Topology;
use anyhow::Context;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub const EDIT_LOG_PORT: u16 = 9010;
pub const RPC_PORT: u16 = 9020;
pub const QUERY_PORT: u16 = 9030;
pub const HTTP_PORT: u16 = 8030;
pub const ROOT_PASSWORD: &str = "jepsen";

pub struct Db {
    pub bin: PathBuf,
    pub dir: PathBuf,
    /// The FE node id on each host: host i starts as node i+1; a host whose FE was dropped
    /// rejoins with a new id (ids are never reused).
    ids: Vec<u64>,
    next_id: u64,
    /// Hosts whose FE was dropped from the cluster: not restarted until they rejoin.
    retired: Vec<bool>,
    /// The first `voters` hosts bootstrap the cluster: their `initial_members` block.
    voters: usize,
    initial_members: String,
    /// More `[raft]` settings for every FE (TOML lines).
    raft_extra: String,
    procs: Vec<Option<Child>>,
    netns: Vec<String>,
    ips: Vec<String>,
    extra_env: Vec<(String, String)>,
    /// FEs run under libfaketime (see `fake_clocks`).
    clocks: bool,
}

/// libfaketime's multithreaded build, from Debian's libfaketime package.
pub const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

fn member(id: usize, ip: &str) -> String {
    format!(
        "[[initial_members]]\nnode_id = {id}\nhost = \"{ip}\"\nedit_log_port = {EDIT_LOG_PORT}\n\
         rpc_port = {RPC_PORT}\nquery_port = {QUERY_PORT}\nhttp_port = {HTTP_PORT}\n"
    )
}

/// `ip netns exec <netns>`, to be completed with the program and its arguments: output appended
/// to `log`, no stdin, no core dumps, and the process killed when the harness dies
/// (PR_SET_PDEATHSIG).
fn in_netns(netns: &str, log: &Path) -> anyhow::Result<Command> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: prctl and setrlimit in the child before exec; both async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            // Failpoint crashes abort: no core files.
            let none = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &none);
            Ok(())
        });
    }
    Ok(cmd)
}

/// The certificates of a run's cluster, under the run's directory: the gate runs secure, as
/// production does (mutual TLS between FEs and towards agents, TLS for the clients).
pub fn certs_dir(dir: &Path) -> PathBuf {
    dir.join("certs")
}

/// The client TLS of the current run's cluster, for every client the harness makes.
static CLIENT_TLS: std::sync::RwLock<Option<roster_client::ClientTls>> =
    std::sync::RwLock::new(None);

pub fn client_tls() -> Option<roster_client::ClientTls> {
    CLIENT_TLS.read().expect("client tls lock").clone()
}

/// `roster cert` for the run: a CA for cluster "jepsen", one node certificate for every FE
/// host, one backend certificate for every agent host, root's client certificate.
fn make_certs(bin: &Path, dir: &Path, topo: &Topology) -> anyhow::Result<()> {
    let certs = certs_dir(dir);
    let _ = std::fs::remove_dir_all(&certs);
    let run = |args: Vec<String>| -> anyhow::Result<()> {
        let out = Command::new(bin)
            .arg("cert")
            .args(&args)
            .arg("--certs-dir")
            .arg(&certs)
            .output()
            .with_context(|| format!("running {} cert", bin.display()))?;
        anyhow::ensure!(
            out.status.success(),
            "roster cert {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    let s = |x: &str| x.to_string();
    run(vec![s("create-ca"), s("--cluster-id"), s("jepsen")])?;
    let mut fe = vec![s("create-node"), s("127.0.0.1")];
    fe.extend(topo.nodes.iter().map(|h| h.ip.to_string()));
    run(fe)?;
    if !topo.agents.is_empty() {
        let mut be = vec![s("create-node"), s("--backend")];
        be.extend(topo.agents.iter().map(|h| h.ip.to_string()));
        run(be)?;
    }
    run(vec![s("create-client"), s("root")])?;
    let tls = roster_client::ClientTls::from_dir(&certs, "root")
        .map_err(|e| anyhow::anyhow!("{}: {e}", certs.display()))?;
    *CLIENT_TLS.write().expect("client tls lock") = Some(tls);
    Ok(())
}

impl Db {
    /// Write every node's config; start nothing yet. The first `voters` hosts bootstrap the
    /// cluster together; the others wait to be added (ADD FOLLOWER).
    pub fn new(bin: &Path, dir: &Path, topo: &Topology, voters: usize) -> anyhow::Result<Db> {
        make_certs(bin, dir, topo)?;
        let ips: Vec<String> = topo.nodes.iter().map(|h| h.ip.to_string()).collect();
        let members: String = ips
            .iter()
            .take(voters)
            .enumerate()
            .map(|(i, ip)| member(i + 1, ip))
            .collect::<Vec<_>>()
            .join("\n");
        let db = Db {
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            ids: (1..=ips.len() as u64).collect(),
            next_id: ips.len() as u64 + 1,
            retired: vec![false; ips.len()],
            voters,
            initial_members: members,
            raft_extra: String::new(),
            procs: ips.iter().map(|_| None).collect(),
            netns: topo.nodes.iter().map(|h| h.netns.clone()).collect(),
            ips,
            extra_env: Vec::new(),
            clocks: false,
        };
        for host in 0..db.len() {
            db.write_config(host)?;
        }
        Ok(db)
    }

    /// More `[raft]` settings (TOML lines) for every FE, from its next start.
    pub fn raft_settings(&mut self, toml: &str) -> anyhow::Result<()> {
        self.raft_extra = toml.to_string();
        for host in 0..self.len() {
            self.write_config(host)?;
        }
        Ok(())
    }

    /// Write host `host`'s config for its current node id: an original voter bootstraps with
    /// `initial_members`, any other FE waits to be added.
    fn write_config(&self, host: usize) -> anyhow::Result<()> {
        let (id, ip) = (self.ids[host], &self.ips[host]);
        let bootstraps = host < self.voters && id == host as u64 + 1;
        let initial_members = if bootstraps {
            self.initial_members.as_str()
        } else {
            ""
        };
        let raft_extra = &self.raft_extra;
        let cfg = format!(
            "node_id = {id}\ncluster_id = \"jepsen\"\nhost = \"{ip}\"\ndata_dir = \"{}\"\n\
             edit_log_port = {EDIT_LOG_PORT}\nrpc_port = {RPC_PORT}\nquery_port = {QUERY_PORT}\n\
             http_port = {HTTP_PORT}\nroot_password = \"{ROOT_PASSWORD}\"\ncerts_dir = \"{}\"\n\
             read_timeout_ms = 3000\nwrite_timeout_ms = 5000\n\
             [raft]\nheartbeat_interval_ms = 200\nelection_timeout_min_ms = 1000\n\
             election_timeout_max_ms = 2000\n{raft_extra}\n\n{initial_members}",
            self.data_dir(host).display(),
            certs_dir(&self.dir).display()
        );
        std::fs::write(self.dir.join(format!("n{}.toml", host + 1)), cfg)?;
        Ok(())
    }

    /// Host `host`'s data directory for its current node id (`data-n2`, or `data-n2-id7`
    /// after it rejoined as node 7).
    pub fn data_dir(&self, host: usize) -> PathBuf {
        if self.ids[host] == host as u64 + 1 {
            self.dir.join(format!("data-n{}", host + 1))
        } else {
            self.dir
                .join(format!("data-n{}-id{}", host + 1, self.ids[host]))
        }
    }

    /// The FE node id running on (or last assigned to) `host`.
    pub fn node_id(&self, host: usize) -> u64 {
        self.ids[host]
    }

    /// The host whose FE has node id `id`.
    pub fn host_of(&self, id: u64) -> Option<usize> {
        self.ids.iter().position(|i| *i == id)
    }

    /// The RPC addresses of `hosts`, comma-separated: a client of them follows the leader.
    pub fn rpc_addrs(&self, hosts: impl IntoIterator<Item = usize>) -> String {
        hosts
            .into_iter()
            .map(|h| self.rpc_addr(h))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The host with address `ip`.
    pub fn host_of_ip(&self, ip: &str) -> Option<usize> {
        self.ips.iter().position(|i| i == ip)
    }

    /// How ADD/DROP FOLLOWER name host `host`'s FE.
    pub fn edit_log_addr(&self, host: usize) -> String {
        format!("{}:{EDIT_LOG_PORT}", self.ips[host])
    }

    /// Host `host`'s FE was dropped from the cluster: stop it for good (until `rejoin`).
    pub fn retire(&mut self, host: usize) {
        self.kill(host);
        self.retired[host] = true;
    }

    pub fn is_retired(&self, host: usize) -> bool {
        self.retired[host]
    }

    /// Give a retired host a new FE: a fresh node id and an empty data directory, waiting to be
    /// added. Returns the new id.
    pub fn rejoin(&mut self, host: usize) -> anyhow::Result<u64> {
        self.kill(host);
        self.ids[host] = self.next_id;
        self.next_id += 1;
        self.retired[host] = false;
        self.write_config(host)?;
        self.start(host)?;
        Ok(self.ids[host])
    }

    /// An environment variable for every FE started from now on (e.g. a bug switch).
    pub fn env(&mut self, k: &str, v: &str) {
        self.extra_env.push((k.into(), v.into()));
    }

    /// The file that holds node `node`'s wall-clock offset (libfaketime's format, e.g. `+600`).
    pub fn clock_file(&self, node: usize) -> PathBuf {
        self.dir.join(format!("n{}.clock", node + 1))
    }

    /// Run every FE under libfaketime, each with its own wall-clock offset file (starting at
    /// +0); the monotonic clock, which Raft's timers use, is left alone.
    pub fn fake_clocks(&mut self) -> anyhow::Result<()> {
        let lib = Path::new(FAKETIME_LIB);
        if !lib.exists() {
            anyhow::bail!(
                "{FAKETIME_LIB} is missing: apt-get install libfaketime (clock faults need it)"
            );
        }
        for i in 0..self.len() {
            self.set_clock(i, "+0")?;
        }
        self.clocks = true;
        Ok(())
    }

    /// Set node `node`'s wall-clock offset (`+600`, `-300`, `+0`).
    pub fn set_clock(&self, node: usize, offset: &str) -> anyhow::Result<()> {
        std::fs::write(self.clock_file(node), format!("{offset}\n"))?;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.procs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    pub fn rpc_addr(&self, node: usize) -> String {
        format!("{}:{RPC_PORT}", self.ips[node])
    }

    pub fn log_path(&self, node: usize) -> PathBuf {
        self.dir.join(format!("n{}.log", node + 1))
    }

    pub fn is_running(&self, node: usize) -> bool {
        self.procs[node].is_some()
    }

    pub fn start(&mut self, node: usize) -> anyhow::Result<()> {
        self.start_with(node, &[])
    }

    /// Start a node with more environment for this start only (e.g. armed failpoints).
    pub fn start_with(&mut self, node: usize, env: &[(&str, &str)]) -> anyhow::Result<()> {
        if self.procs[node].is_some() || self.retired[node] {
            return Ok(());
        }
        let mut cmd = in_netns(&self.netns[node], &self.log_path(node))?;
        cmd.arg(&self.bin)
            .args(["start", "--config"])
            .arg(self.dir.join(format!("n{}.toml", node + 1)))
            .env("RUST_LOG", "info,openraft=warn")
            .envs(self.extra_env.iter().map(|(k, v)| (k, v)))
            .envs(self.clock_env(node))
            .envs(env.iter().copied());
        let child = cmd
            .spawn()
            .with_context(|| format!("starting n{}", node + 1))?;
        self.procs[node] = Some(child);
        Ok(())
    }

    fn clock_env(&self, node: usize) -> Vec<(String, String)> {
        if !self.clocks {
            return Vec::new();
        }
        vec![
            ("LD_PRELOAD".into(), FAKETIME_LIB.into()),
            (
                "FAKETIME_TIMESTAMP_FILE".into(),
                self.clock_file(node).display().to_string(),
            ),
            ("FAKETIME_CACHE_DURATION".into(), "1".into()),
            ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
        ]
    }

    pub fn start_all(&mut self) -> anyhow::Result<()> {
        for i in 0..self.len() {
            self.start(i)?;
        }
        Ok(())
    }

    /// SIGKILL (and reap) a node.
    pub fn kill(&mut self, node: usize) {
        if let Some(mut c) = self.procs[node].take() {
            // A paused process must die too: SIGKILL works on stopped processes.
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn signal(&self, node: usize, sig: libc::c_int) -> bool {
        match &self.procs[node] {
            // SAFETY: kill(2) on our own child's pid.
            Some(c) => unsafe { libc::kill(c.id() as libc::pid_t, sig) == 0 },
            None => false,
        }
    }

    pub fn pause(&self, node: usize) -> bool {
        self.signal(node, libc::SIGSTOP)
    }

    pub fn resume(&self, node: usize) -> bool {
        self.signal(node, libc::SIGCONT)
    }

    /// Whether a node's process has exited on its own (a crash).
    pub fn exited(&mut self, node: usize) -> Option<std::process::ExitStatus> {
        self.procs[node].as_mut()?.try_wait().ok().flatten()
    }

    pub fn kill_all(&mut self) {
        for i in 0..self.len() {
            self.resume(i);
            self.kill(i);
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// A backend agent's heartbeat port and data port, on its own host.
pub const AGENT_HEARTBEAT_PORT: u16 = 9050;
pub const AGENT_BE_PORT: u16 = 9060;

/// The backend agents of a run: one `roster backend` per agent host, data and log under the run
/// directory (`agent-b<k>/`, `b<k>.log`); they die with the harness like the FEs.
pub struct Agents {
    bin: PathBuf,
    dir: PathBuf,
    hosts: Vec<crate::topology::Host>,
    procs: Vec<Option<Child>>,
}

impl Agents {
    pub fn new(bin: &Path, dir: &Path, topo: &Topology) -> Agents {
        Agents {
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            hosts: topo.agents.clone(),
            procs: topo.agents.iter().map(|_| None).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// The address agent `k` is registered under (`host:heartbeat_port`).
    pub fn addr(&self, k: usize) -> String {
        format!("{}:{AGENT_HEARTBEAT_PORT}", self.hosts[k].ip)
    }

    pub fn data_dir(&self, k: usize) -> PathBuf {
        self.dir.join(format!("agent-{}", self.hosts[k].name))
    }

    pub fn start_all(&mut self) -> anyhow::Result<()> {
        for k in 0..self.len() {
            let log = self.dir.join(format!("{}.log", self.hosts[k].name));
            let mut cmd = in_netns(&self.hosts[k].netns, &log)?;
            cmd.arg(&self.bin)
                .args(["backend", "--host", &self.hosts[k].ip.to_string()])
                .arg("--certs-dir")
                .arg(certs_dir(&self.dir))
                .arg("--data-dir")
                .arg(self.data_dir(k))
                .args(["--heartbeat-port", &AGENT_HEARTBEAT_PORT.to_string()])
                .args(["--be-port", &AGENT_BE_PORT.to_string()])
                .env("RUST_LOG", "info");
            let child = cmd
                .spawn()
                .with_context(|| format!("starting agent {}", self.hosts[k].name))?;
            self.procs[k] = Some(child);
        }
        Ok(())
    }

    /// Agents that exited by themselves (a crash), by name.
    pub fn exited(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        for (k, p) in self.procs.iter_mut().enumerate() {
            if let Some(Ok(Some(st))) = p.as_mut().map(|c| c.try_wait()) {
                out.push(format!("{} exited by itself: {st}", self.hosts[k].name));
            }
        }
        out
    }

    pub fn kill_all(&mut self) {
        for p in &mut self.procs {
            if let Some(mut c) = p.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

impl Drop for Agents {
    fn drop(&mut self) {
        self.kill_all();
    }
}
