//! `roster playground`: three FEs and four backend agents on loopback, each its own child
//! process (`roster start`, `roster backend`), so that killing the leader shows a failover; a
//! demo table with data; configs and data under one directory; until Ctrl-C.

pub(crate) mod children;
pub(crate) mod ports;
mod ready;

use crate::backend::BackendConfig;
use crate::config::{FileConfig, MemberSection};
use crate::local_cluster::retry_within;
use anyhow::Context;
use children::Children;
use ports::Layout;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(clap::Args)]
pub struct PlaygroundArgs {
    /// Where the nodes keep their configs and data (default: a fresh temporary directory).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Use the 20 ports N..N+19: fe1 N..N+3 (edit_log, rpc, query, http), fe2 N+4.., fe3
    /// N+8.., then be1..be4 two each (heartbeat, be). Default: fe i on 9010/9020/9030/8030
    /// + 100·(i-1), be i on 9050/9060 + 100·(i-1).
    #[arg(long)]
    base_port: Option<u16>,
}

const CLUSTER_ID: &str = "roster-playground";
/// Each start-up step (registering the backends, the demo table, readiness) may take this long
/// on a loaded machine.
const STEP_TIMEOUT: Duration = Duration::from_secs(90);

/// One node to run: its name (the prefix of its log lines) and `roster` arguments.
pub(crate) struct NodeCmd {
    pub name: String,
    pub args: Vec<OsString>,
    ports: String,
}

pub async fn run(args: PlaygroundArgs) -> anyhow::Result<()> {
    let layout = match args.base_port {
        Some(b) => Layout::from_base(b).map_err(anyhow::Error::msg)?,
        None => Layout::doris(),
    };
    // Before anything is written or started, so a refusal leaves nothing behind.
    layout.check_free().map_err(anyhow::Error::msg)?;
    let signal = crate::start::wait_for_signal();
    tokio::pin!(signal);

    let (root, _tempdir) = match args.data_dir {
        Some(d) => {
            std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
            (d, None)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("roster-playground-")
                .tempdir()?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    // Absolute, so the configs do not depend on the children's working directory.
    let root = std::fs::canonicalize(&root)?;
    let nodes = write_configs(&root, &layout)?;

    let mut children = Children::new();
    let mut pids = Vec::new();
    for n in &nodes {
        let pid = children.spawn(&n.name, &n.args)?;
        println!("started {} pid {pid} ({})", n.name, n.ports);
        pids.push((n.name.clone(), pid));
    }
    let endpoints = layout
        .fes
        .iter()
        .map(|p| format!("{}:{}", ports::FE_HOST, p.rpc))
        .collect();
    let client = roster_client::Client::new(roster_client::ClientConfig::new(endpoints))?;

    enum Startup {
        Done(anyhow::Result<String>),
        Ended(children::Exit),
        Signal,
    }
    let startup = tokio::select! {
        r = set_up(&client, &layout) => Startup::Done(r),
        e = children.next_exit() => Startup::Ended(e),
        _ = &mut signal => Startup::Signal,
    };
    let ready_line = match startup {
        Startup::Done(Ok(line)) => line,
        Startup::Done(Err(e)) => {
            children.stop().await;
            return Err(e);
        }
        Startup::Ended(e) => {
            children.stop().await;
            anyhow::bail!(
                "{} (pid {}) ended during start-up ({}); its lines above, prefixed \"{} |\", say why",
                e.name,
                e.pid,
                e.how,
                e.name
            );
        }
        Startup::Signal => {
            children.stop().await;
            return Ok(());
        }
    };
    banner(&root, &layout);
    println!("{ready_line}");

    // Follow the leader, so the kill command printed is always the current one.
    let mut leader = None;
    let mut ended: Vec<String> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        enum Event {
            Signal,
            Ended(children::Exit),
            Tick,
        }
        let event = tokio::select! {
            _ = &mut signal => Event::Signal,
            e = children.next_exit() => Event::Ended(e),
            _ = tick.tick() => Event::Tick,
        };
        match event {
            Event::Signal => break,
            Event::Ended(e) => {
                println!("{} (pid {}) ended: {}", e.name, e.pid, e.how);
                ended.push(e.name);
            }
            Event::Tick => {
                let Some(id) = ready::leader(&client).await else {
                    continue;
                };
                let name = format!("fe{id}");
                let Some((_, pid)) = pids.iter().find(|(n, _)| *n == name) else {
                    continue;
                };
                if leader != Some(id) && !ended.contains(&name) {
                    if leader.is_some() {
                        println!("{name} is the leader now");
                    }
                    println!("kill -9 {pid}   # {name}, the current leader");
                    leader = Some(id);
                }
            }
        }
    }
    println!("stopping the playground");
    children.stop().await;
    Ok(())
}

/// Register the agents, create the demo table, wait until everything is up.
async fn set_up(client: &roster_client::Client, layout: &Layout) -> anyhow::Result<String> {
    let quoted: Vec<String> = layout
        .agents
        .iter()
        .enumerate()
        .map(|(i, p)| format!("\"{}:{}\"", ports::agent_host(i), p.heartbeat))
        .collect();
    let add = format!("ALTER SYSTEM ADD BACKEND {}", quoted.join(", "));
    let what = "registering the backends";
    retry_within(
        client,
        &add,
        what,
        "Same backend already exists",
        STEP_TIMEOUT,
    )
    .await?;
    // Placement needs alive backends: retry until the first heartbeats have landed.
    let what = "creating the demo table";
    retry_within(
        client,
        ready::DEMO_TABLE,
        what,
        "already exists",
        STEP_TIMEOUT,
    )
    .await?;
    ready::wait_ready(client, layout.fes.len(), layout.agents.len(), STEP_TIMEOUT).await
}

/// Write feN.toml and beN.toml under `root`; return how to run each node.
pub(crate) fn write_configs(root: &Path, layout: &Layout) -> anyhow::Result<Vec<NodeCmd>> {
    let members: Vec<MemberSection> = layout
        .fes
        .iter()
        .enumerate()
        .map(|(i, p)| MemberSection {
            node_id: i as u64 + 1,
            host: ports::FE_HOST.into(),
            edit_log_port: p.edit_log,
            rpc_port: p.rpc,
            query_port: p.query,
            http_port: p.http,
        })
        .collect();
    refuse_other_ports(root, &members)?;
    // Insecure agents obey only holders of the cluster token: a fresh one per run, in every
    // FE's and agent's config (all of them restart together).
    let token = roster_transport::cluster_token::ClusterToken::random();
    let mut nodes = Vec::new();
    for m in &members {
        let name = format!("fe{}", m.node_id);
        let cfg = FileConfig {
            node_id: m.node_id,
            name: Some(name.clone()),
            cluster_id: CLUSTER_ID.into(),
            host: m.host.clone(),
            data_dir: root.join(&name),
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
        let path = root.join(format!("{name}.toml"));
        write_toml(&path, &cfg)?;
        nodes.push(NodeCmd {
            args: vec!["start".into(), "--config".into(), path.into()],
            ports: format!(
                "edit_log {}, rpc {}, query {}, http {}",
                m.edit_log_port, m.rpc_port, m.query_port, m.http_port
            ),
            name,
        });
    }
    for (i, p) in layout.agents.iter().enumerate() {
        let name = format!("be{}", i + 1);
        let cfg = BackendConfig {
            host: ports::agent_host(i),
            data_dir: root.join(&name),
            heartbeat_port: p.heartbeat,
            be_port: p.be,
            certs_dir: None,
            // Loopback playground: no certificates, said loudly at start.
            insecure: true,
            cluster_token: Some(token.as_str().to_string()),
        };
        let path = root.join(format!("{name}.toml"));
        write_toml(&path, &cfg)?;
        nodes.push(NodeCmd {
            args: vec!["backend".into(), "--config".into(), path.into()],
            ports: format!("{}, heartbeat {}, be {}", cfg.host, p.heartbeat, p.be),
            name,
        });
    }
    Ok(nodes)
}

/// An FE's data remembers its cluster's addresses: a data dir made with other ports would
/// never form a quorum, so refuse it up front.
fn refuse_other_ports(root: &Path, members: &[MemberSection]) -> anyhow::Result<()> {
    let path = root.join("fe1.toml");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    let old: FileConfig =
        toml::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
    if old.initial_members == members {
        return Ok(());
    }
    let same = if old.edit_log_port == Layout::doris().fes[0].edit_log {
        "without --base-port".to_string()
    } else {
        format!("with --base-port {}", old.edit_log_port)
    };
    anyhow::bail!(
        "{} was made with other ports (fe1 edit_log_port {}): run {same}, or use another \
         --data-dir",
        root.display(),
        old.edit_log_port
    )
}

fn write_toml(path: &Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = toml::to_string(value).with_context(|| format!("encoding {}", path.display()))?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn banner(root: &Path, layout: &Layout) {
    let fe = &layout.fes;
    let rpc: Vec<String> = fe
        .iter()
        .map(|p| format!("{}:{}", ports::FE_HOST, p.rpc))
        .collect();
    let hb: Vec<String> = layout
        .agents
        .iter()
        .map(|p| p.heartbeat.to_string())
        .collect();
    println!();
    println!(
        "Roster playground: 3 frontends on {}, each its own process; configs and data in {}",
        ports::FE_HOST,
        root.display()
    );
    println!(
        "Connect with:  mysql -h{} -P{} -uroot      (root has an empty password here; fe2 and \
         fe3 on -P{} and -P{})",
        ports::FE_HOST,
        fe[0].query,
        fe[1].query,
        fe[2].query
    );
    println!(
        "          or:  cargo run --release -- sql --endpoints {}",
        rpc.join(",")
    );
    println!(
        "Backends:      4 agents on 127.0.0.1-4, heartbeat ports {}",
        hb.join(", ")
    );
    println!("Demo table:    demo, 8 tablets x 3 replicas of 2 MiB each (SHOW TABLETS FROM demo)");
    println!(
        "Try:           SHOW BACKENDS; SHOW FRONTENDS; ALTER SYSTEM DECOMMISSION BACKEND \"10004\";"
    );
    println!("Failover:      kill -9 the leader's pid (printed below, and again when it changes)");
    println!("Ctrl-C stops the playground and every node.");
}
