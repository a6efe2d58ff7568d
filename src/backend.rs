//! `roster backend`: runs the reference backend agent (`crates/agent`). Configuration: built-in
//! defaults < `--config FILE` (TOML, every key in `config/backend.toml`) < `ROSTER_BACKEND_*`
//! environment variables < flags. Unknown keys in the file are an error.

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use roster_agent::{Agent, Faults, ReplicaStore, Shared};
use roster_proto::pb::backend::backend_agent_server::BackendAgentServer;
use roster_transport::cluster_token::ClusterToken;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args, Debug, Default)]
pub struct BackendArgs {
    /// TOML file with the keys below (see config/backend.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address the agent binds and the FEs use to reach it.
    #[arg(long)]
    host: Option<String>,
    /// Where replica files live.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Port for the master's heartbeats and replica calls.
    #[arg(long)]
    heartbeat_port: Option<u16>,
    /// Port for replica data (clones); reported in heartbeats.
    #[arg(long)]
    be_port: Option<u16>,
    /// Secure mode: ca.crt, backend.crt, backend.key made by `roster cert`.
    #[arg(long, value_name = "DIR", conflicts_with = "insecure")]
    certs_dir: Option<PathBuf>,
    /// No TLS (loopback playgrounds only); callers must then send the cluster token.
    #[arg(long)]
    insecure: bool,
    /// Insecure mode: the secret the FEs (their cluster_token) and other agents must send on
    /// every call. Required with --insecure.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "ROSTER_CLUSTER_TOKEN",
        hide_env_values = true
    )]
    cluster_token: Option<String>,
    /// Test hook: clones into this agent stall after their first chunk and never finish.
    #[arg(long, hide = true)]
    fault_stall_clones: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    pub host: String,
    pub data_dir: PathBuf,
    pub heartbeat_port: u16,
    pub be_port: u16,
    /// Secure mode (mutual TLS with FEs and other agents); exactly one of this and
    /// `insecure` is set.
    pub certs_dir: Option<PathBuf>,
    pub insecure: bool,
    /// Insecure mode: only callers that send this token are obeyed (required there).
    pub cluster_token: Option<String>,
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            host: "127.0.0.1".into(),
            data_dir: PathBuf::from("backend-data"),
            heartbeat_port: 9050,
            be_port: 9060,
            certs_dir: None,
            insecure: false,
            cluster_token: None,
        }
    }
}

const KEYS: [&str; 7] = [
    "host",
    "data_dir",
    "heartbeat_port",
    "be_port",
    "certs_dir",
    "insecure",
    "cluster_token",
];

impl BackendArgs {
    /// An insecure agent of the cluster whose token is `cluster_token`.
    pub fn new(
        host: &str,
        data_dir: PathBuf,
        heartbeat_port: u16,
        be_port: u16,
        cluster_token: &str,
    ) -> Self {
        BackendArgs {
            config: None,
            host: Some(host.to_string()),
            data_dir: Some(data_dir),
            heartbeat_port: Some(heartbeat_port),
            be_port: Some(be_port),
            certs_dir: None,
            insecure: true,
            cluster_token: Some(cluster_token.to_string()),
            fault_stall_clones: false,
        }
    }

    pub fn load(&self) -> anyhow::Result<BackendConfig> {
        let mut fig = Figment::from(Serialized::defaults(BackendConfig::default()));
        if let Some(path) = &self.config {
            anyhow::ensure!(path.exists(), "config file {} not found", path.display());
            fig = fig.merge(Toml::file(path));
        }
        fig = fig.merge(
            Env::prefixed("ROSTER_BACKEND_")
                .filter(|k| KEYS.contains(&k.as_str().to_lowercase().as_str())),
        );
        let mut flags = serde_json::Map::new();
        if let Some(v) = &self.host {
            flags.insert("host".into(), v.clone().into());
        }
        if let Some(v) = &self.data_dir {
            flags.insert("data_dir".into(), v.display().to_string().into());
        }
        if let Some(v) = self.heartbeat_port {
            flags.insert("heartbeat_port".into(), v.into());
        }
        if let Some(v) = self.be_port {
            flags.insert("be_port".into(), v.into());
        }
        if let Some(v) = &self.certs_dir {
            flags.insert("certs_dir".into(), v.display().to_string().into());
            flags.insert("insecure".into(), false.into());
        }
        if self.insecure {
            flags.insert("insecure".into(), true.into());
        }
        if let Some(v) = &self.cluster_token {
            flags.insert("cluster_token".into(), v.clone().into());
        }
        let cfg: BackendConfig = fig
            .merge(Serialized::defaults(flags))
            .extract()
            .context("backend configuration")?;
        anyhow::ensure!(
            cfg.heartbeat_port != cfg.be_port,
            "heartbeat_port and be_port must differ (both are {})",
            cfg.be_port
        );
        match (&cfg.certs_dir, cfg.insecure) {
            (Some(_), true) => anyhow::bail!("certs_dir and insecure exclude each other"),
            (None, false) => anyhow::bail!(
                "choose how this agent is secured: certs_dir (or --certs-dir DIR) with the \
                 certificates `roster cert create-node --backend` makes, or insecure = true (or \
                 --insecure) for a throwaway loopback cluster"
            ),
            _ => {}
        }
        cfg.token()?;
        // Insecure mode without a token would obey anyone who reaches the ports: refuse to
        // start rather than run open (a secure agent needs none: certificates decide).
        if cfg.insecure && cfg.cluster_token.is_none() {
            anyhow::bail!(
                "an insecure agent needs the cluster token, the secret its FEs send (their \
                 cluster_token): pass --cluster-token TOKEN, set ROSTER_CLUSTER_TOKEN, or \
                 cluster_token in the config file; or run secure with --certs-dir DIR"
            );
        }
        Ok(cfg)
    }
}

impl BackendConfig {
    /// The cluster token, checked (at least 16 printable ASCII characters).
    pub fn token(&self) -> anyhow::Result<Option<ClusterToken>> {
        self.cluster_token
            .as_deref()
            .map(ClusterToken::new)
            .transpose()
            .context("cluster_token")
    }
}

/// Bind a port; its connections back off when descriptors run out (`roster_transport::accept`).
async fn bind(
    host: &str,
    port: u16,
    what: &'static str,
) -> anyhow::Result<
    impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> + Send + 'static,
> {
    let addr = format!("{host}:{port}");
    let l = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("binding {what} {addr}"))?;
    Ok(roster_transport::accept::incoming(l, what))
}

pub async fn run(args: BackendArgs) -> anyhow::Result<()> {
    let cfg = args.load()?;
    let store = tokio::task::spawn_blocking({
        let dir = cfg.data_dir.clone();
        move || ReplicaStore::open(&dir)
    })
    .await?
    .with_context(|| format!("opening the replica store in {}", cfg.data_dir.display()))?;
    let store = Arc::new(store);
    let start_time_ms = roster_proto::format::now_ms();
    let heartbeat = bind(&cfg.host, cfg.heartbeat_port, "heartbeat_port").await?;
    let data = bind(&cfg.host, cfg.be_port, "be_port").await?;
    tracing::info!(
        host = %cfg.host,
        heartbeat_port = cfg.heartbeat_port,
        be_port = cfg.be_port,
        data_dir = %cfg.data_dir.display(),
        replicas = store.list().len(),
        "backend agent started"
    );
    let faults = Faults {
        stall_clones: args.fault_stall_clones,
    };
    let transport = match &cfg.certs_dir {
        Some(dir) => roster_transport::tls::Transport::secure(
            roster_certs::Material::load(dir, &roster_certs::Role::Backend)
                .with_context(|| format!("certs_dir {}", dir.display()))?,
        ),
        None => {
            tracing::warn!(
                "RUNNING INSECURE: no TLS; only the cluster token guards this agent, and anyone \
                 who sees the traffic can read it. For loopback playgrounds only."
            );
            roster_transport::tls::Transport::Insecure
        }
    };
    let server = || -> anyhow::Result<tonic::transport::Server> {
        let b = tonic::transport::Server::builder();
        Ok(match transport.server_tls(true) {
            Some(t) => b.tls_config(t).context("TLS configuration")?,
            None => b,
        })
    };
    // In secure mode the certificates decide and a configured token is not used.
    let token = if transport.is_secure() {
        None
    } else {
        cfg.token()?
    };
    let (mut control_server, mut clone_server) = (server()?, server()?);
    let shared = Arc::new(Shared::default());
    let service = |store: Arc<ReplicaStore>| {
        BackendAgentServer::new(Agent::new(
            store,
            cfg.be_port,
            start_time_ms,
            shared.clone(),
            faults,
            transport.clone(),
            token.clone(),
        ))
        .max_decoding_message_size(4 << 20)
    };
    let control = control_server
        .add_service(service(store.clone()))
        .serve_with_incoming_shutdown(heartbeat, crate::start::wait_for_signal());
    let clones = clone_server
        .add_service(service(store))
        .serve_with_incoming_shutdown(data, crate::start::wait_for_signal());
    tokio::try_join!(control, clones)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_loads_and_flags_win() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/backend.toml");
        let args = BackendArgs {
            config: Some(path.clone()),
            be_port: Some(9999),
            insecure: true,
            cluster_token: Some("0123456789abcdef".into()),
            ..Default::default()
        };
        let cfg = args.load().unwrap();
        assert_eq!(cfg.heartbeat_port, 9050);
        assert_eq!(cfg.be_port, 9999);
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("b.toml");
        std::fs::write(&bad, "heartbeat_port = 1\ncolour = \"red\"\n").unwrap();
        let err = BackendArgs {
            config: Some(bad),
            ..Default::default()
        }
        .load()
        .unwrap_err();
        assert!(format!("{err:#}").contains("colour"), "{err:#}");
        let same = BackendArgs {
            config: Some(path),
            be_port: Some(9050),
            insecure: true,
            cluster_token: Some("0123456789abcdef".into()),
            ..Default::default()
        };
        assert!(same.load().is_err());
    }

    #[test]
    fn insecure_needs_a_valid_token() {
        let dir = tempfile::tempdir().unwrap();
        let args = |token: Option<&str>| BackendArgs {
            data_dir: Some(dir.path().to_path_buf()),
            insecure: true,
            cluster_token: token.map(str::to_string),
            ..Default::default()
        };
        let e = format!("{:#}", args(None).load().unwrap_err());
        assert!(e.contains("--cluster-token"), "{e}");
        let e = format!("{:#}", args(Some("short")).load().unwrap_err());
        assert!(e.contains("at least 16"), "{e}");
        assert!(args(Some("0123456789abcdef")).load().is_ok());
    }
}
