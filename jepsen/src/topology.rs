//! The network of a run: one namespace per host (FEs and the client host), joined by veth pairs
//! to a bridge that lives in a namespace of its own, so the root namespace is never touched.
//! Every name carries the run's prefix `jt<pid>_<n>-`; teardown kills whatever runs in the run's
//! namespaces and deletes them (their nftables rules go with them), and `sweep` removes what a
//! run killed by SIGKILL left behind.

use anyhow::{Context, bail};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;

/// The subnet of every run (each run has its own bridge, so runs do not collide).
pub const SUBNET: [u8; 3] = [10, 88, 0];
/// The client host's address.
pub const CLIENT_HOST: u8 = 100;
/// Backend-agent host k (1..) is at `SUBNET.(AGENT_HOSTS + k)`.
pub const AGENT_HOSTS: u8 = 50;

#[derive(Debug, Clone)]
pub struct Host {
    /// e.g. `n1`.
    pub name: String,
    pub netns: String,
    pub ip: Ipv4Addr,
}

#[derive(Debug)]
pub struct Topology {
    pub prefix: String,
    pub nodes: Vec<Host>,
    /// Backend-agent hosts `b1..`: never in a partition's grudges (like the client), so the
    /// FEs always reach them.
    pub agents: Vec<Host>,
    pub client: Host,
    bridge_ns: String,
    torn_down: bool,
}

/// Run a command; fail with its stderr.
pub fn sh(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    sh("ip", args).map(drop)
}

/// Every namespace whose name starts with `prefix`.
fn namespaces(prefix: &str) -> Vec<String> {
    sh("ip", &["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// Kill every process in namespace `ns`, then delete it.
fn remove_namespace(ns: &str) {
    if let Ok(pids) = sh("ip", &["netns", "pids", ns]) {
        for pid in pids.split_whitespace() {
            let _ = Command::new("kill")
                .args(["-9", pid])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
    let _ = ip(&["netns", "del", ns]);
}

impl Topology {
    /// Create `n` FE hosts, `agents` backend-agent hosts and the client host. Refuses to run
    /// without root.
    pub fn create(n: usize, agents: usize) -> anyhow::Result<Topology> {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let prefix = format!("jt{}_{seq}-", std::process::id());
        sweep(false);
        let bridge_ns = format!("{prefix}sw");
        let mut t = Topology {
            prefix: prefix.clone(),
            nodes: Vec::new(),
            agents: (1..=agents)
                .map(|k| Host {
                    name: format!("b{k}"),
                    netns: format!("{prefix}b{k}"),
                    ip: Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], AGENT_HOSTS + k as u8),
                })
                .collect(),
            client: Host {
                name: "client".into(),
                netns: format!("{prefix}c"),
                ip: Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], CLIENT_HOST),
            },
            bridge_ns: bridge_ns.clone(),
            torn_down: false,
        };
        ip(&["netns", "add", &bridge_ns])
            .context("creating a network namespace (the harness must run as root)")?;
        ip(&["-n", &bridge_ns, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &bridge_ns, "link", "set", "br0", "up"])?;
        for i in 1..=n {
            t.nodes.push(Host {
                name: format!("n{i}"),
                netns: format!("{prefix}n{i}"),
                ip: Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], i as u8),
            });
        }
        let hosts: Vec<Host> = t
            .nodes
            .iter()
            .chain(&t.agents)
            .chain([&t.client])
            .cloned()
            .collect();
        for (i, h) in hosts.iter().enumerate() {
            let port = format!("v{i}");
            ip(&["netns", "add", &h.netns])?;
            ip(&[
                "link", "add", &port, "netns", &bridge_ns, "type", "veth", "peer", "name", "eth0",
                "netns", &h.netns,
            ])?;
            ip(&["-n", &bridge_ns, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", &bridge_ns, "link", "set", &port, "up"])?;
            ip(&["-n", &h.netns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n",
                &h.netns,
                "addr",
                "add",
                &format!("{}/24", h.ip),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &h.netns, "link", "set", "eth0", "up"])?;
        }
        Ok(t)
    }

    /// Move the calling thread (before any other thread exists: the whole process) into the
    /// client host's namespace, so clients connect from there.
    pub fn enter_client(&self) -> anyhow::Result<()> {
        let f = std::fs::File::open(format!("/var/run/netns/{}", self.client.netns))?;
        // SAFETY: setns on a valid namespace fd; affects only this thread's network namespace.
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            bail!("setns: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Run `nft -f -` with `rules` inside a node's namespace.
    pub fn nft(&self, node: usize, rules: &str) -> anyhow::Result<()> {
        use std::io::Write;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.nodes[node].netns, "nft", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(rules.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "nft on {}: {}",
                self.nodes[node].name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Kill everything in the run's namespaces and delete them. Idempotent.
    pub fn teardown(&mut self) {
        if self.torn_down {
            return;
        }
        self.torn_down = true;
        for ns in namespaces(&self.prefix) {
            if ns != self.bridge_ns {
                remove_namespace(&ns);
            }
        }
        remove_namespace(&self.bridge_ns);
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Remove the namespaces of runs that are gone (`all`: of every run, this one's included).
/// Returns the namespaces removed.
pub fn sweep(all: bool) -> Vec<String> {
    let mut removed = Vec::new();
    for ns in namespaces("jt") {
        let Some(pid) = ns
            .strip_prefix("jt")
            .map(|r| {
                r.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
            })
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: kill with signal 0 only checks whether the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        if all || !alive {
            remove_namespace(&ns);
            removed.push(ns);
        }
    }
    removed
}
