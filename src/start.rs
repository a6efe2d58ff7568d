//! `roster start`: wire one FE together: the node, the Raft service on edit_log_port, the client
//! service on rpc_port; run until SIGINT or SIGTERM.

use crate::config::FileConfig;
use anyhow::Context;
use roster_frontend::roster_service::RosterService;
use roster_node::FeNodeHandle;
use roster_node::network::MAX_MESSAGE_BYTES;
use roster_node::raft_service::RaftServiceImpl;
use roster_proto::pb::raft::raft_service_server::RaftServiceServer;
use roster_proto::pb::v1::roster_server::RosterServer;
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// A running FE with its servers.
pub struct RunningFe {
    pub fe: FeNodeHandle,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningFe {
    pub async fn stop(self) {
        for s in &self.servers {
            s.abort();
        }
        self.fe.shutdown().await;
    }
}

async fn bind(host: &str, port: u16, what: &str) -> anyhow::Result<TcpListener> {
    let addr = format!("{host}:{port}");
    let sa: SocketAddr = tokio::net::lookup_host(&addr)
        .await
        .with_context(|| format!("resolving {what} address {addr}"))?
        .next()
        .with_context(|| format!("{what} address {addr} does not resolve"))?;
    TcpListener::bind(sa)
        .await
        .with_context(|| format!("binding {what} {addr}"))
}

/// Bind the ports first (so a port conflict fails fast and changes nothing), then start.
pub async fn launch(cfg: &FileConfig) -> anyhow::Result<RunningFe> {
    if let Some(bug) = roster_node::bugs::from_env().map_err(|e| anyhow::anyhow!(e))? {
        tracing::warn!(
            "BUG SWITCH {} IS ON: this FE is deliberately broken (a test build)",
            bug.name()
        );
    }
    if let Some(spec) =
        roster_raft_store::failpoints::arm_from_env().map_err(|e| anyhow::anyhow!(e))?
    {
        tracing::warn!("FAILPOINTS {spec} ARMED: this FE will crash on purpose (a test build)");
    }
    let raft_l = bind(&cfg.host, cfg.edit_log_port, "edit_log_port").await?;
    let rpc_l = bind(&cfg.host, cfg.rpc_port, "rpc_port").await?;
    let query_l = bind(&cfg.host, cfg.query_port, "query_port").await?;
    let http_l = bind(&cfg.host, cfg.http_port, "http_port").await?;
    let transport = cfg.transport()?;
    // TLS for MySQL and HTTP clients: the configured files, else (secure mode) the node's own.
    let client_tls = match (&cfg.tls_cert_file, &cfg.tls_key_file, &cfg.certs_dir) {
        (Some(c), Some(k), _) => Some(roster_frontend::mysql::tls_config(c, k)?),
        (_, _, Some(dir)) => Some(roster_frontend::mysql::tls_config(
            &dir.join("node.crt"),
            &dir.join("node.key"),
        )?),
        _ => None,
    };
    if transport.is_secure() {
        tracing::info!(certs_dir = ?cfg.certs_dir, "secure mode: mutual TLS between FEs and towards agents, TLS on every client port");
    } else {
        tracing::warn!(
            "RUNNING INSECURE: no TLS and no peer authentication on any port; anyone who reaches \
             this FE's ports can act as a member of the cluster. For loopback playgrounds only."
        );
    }
    let cluster_token = cfg.cluster_token()?;
    if !transport.is_secure() && cluster_token.is_none() {
        // Not fatal: an FE without agents needs no token. But insecure agents refuse every call
        // without it, so say so now rather than only in each failed heartbeat.
        tracing::warn!(
            "NO CLUSTER TOKEN: insecure agents will refuse this FE's calls; set cluster_token in \
             the config (or ROSTER_CLUSTER_TOKEN) to the token the agents were started with"
        );
    }
    let mut fe_cfg = cfg.to_fe_config();
    fe_cfg.transport = transport.clone();
    fe_cfg.cluster_token = cluster_token;
    let fe = FeNodeHandle::start(fe_cfg)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // The Raft port admits only FEs of this cluster: the handshake wants a certificate of
    // the cluster's CA and the interceptor an FE's one (a user's or an agent's is refused).
    let peers = transport.clone();
    let raft_svc = tonic::service::interceptor::InterceptedService::new(
        RaftServiceServer::new(RaftServiceImpl { fe: fe.clone() })
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
        move |req: tonic::Request<()>| {
            peers.authorize(&req, &[roster_transport::tls::Caller::Fe])?;
            Ok(req)
        },
    );
    // A statement over max_allowed_packet is refused by the executor; a request far over it is
    // refused by tonic from its length prefix, before its body is buffered.
    let max_request = cfg.to_fe_config().limits.grpc_max_request_bytes();
    let rpc_svc =
        RosterServer::new(RosterService { fe: fe.clone() }).max_decoding_message_size(max_request);
    // require_client_cert is the Raft port's (FEs only): its keep-alive is the peers' one.
    let server = |require_client_cert: bool| -> anyhow::Result<tonic::transport::Server> {
        let b = roster_transport::http2::server(require_client_cert);
        Ok(match transport.server_tls(require_client_cert) {
            Some(t) => b.tls_config(t).context("TLS configuration")?,
            None => b,
        })
    };
    let (mut raft_server, mut rpc_server) = (server(true)?, server(false)?);
    let s1 = tokio::spawn(async move {
        if let Err(e) = raft_server
            .add_service(raft_svc)
            .serve_with_incoming(roster_transport::accept::incoming(raft_l, "edit_log"))
            .await
        {
            tracing::error!("raft server stopped: {e}");
        }
    });
    let s2 = tokio::spawn(async move {
        if let Err(e) = rpc_server
            .add_service(rpc_svc)
            .serve_with_incoming(roster_transport::accept::incoming(rpc_l, "rpc"))
            .await
        {
            tracing::error!("rpc server stopped: {e}");
        }
    });
    let mysql_tls = roster_frontend::mysql::MysqlTls {
        config: client_tls.clone(),
        required: cfg.mysql_requires_tls(),
    };
    if mysql_tls.required && mysql_tls.config.is_none() {
        anyhow::bail!(
            "require_secure_transport is on but the MySQL port has no certificate (set certs_dir or tls_cert_file)"
        );
    }
    let http_tls = if transport.is_secure() {
        client_tls
    } else {
        None
    };
    let s3 = tokio::spawn(roster_frontend::mysql::serve(
        fe.clone(),
        query_l,
        mysql_tls,
    ));
    let s4 = tokio::spawn(roster_frontend::http::serve(fe.clone(), http_l, http_tls));
    tracing::info!(
        node_id = cfg.node_id,
        edit_log = %format!("{}:{}", cfg.host, cfg.edit_log_port),
        rpc = %format!("{}:{}", cfg.host, cfg.rpc_port),
        query = %format!("{}:{}", cfg.host, cfg.query_port),
        http = %format!("{}:{}", cfg.host, cfg.http_port),
        data_dir = %cfg.data_dir.display(),
        "frontend started"
    );
    Ok(RunningFe {
        fe,
        servers: vec![s1, s2, s3, s4],
    })
}

/// How long an FE with a storage fault goes on answering `/api/health` (503) and its peers'
/// probes (the reason shows in their SHOW FRONTENDS ErrMsg) before it exits.
const FAULT_EXIT_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

pub async fn run(cfg: FileConfig) -> anyhow::Result<()> {
    let running = launch(&cfg).await?;
    let fe = running.fe.clone();
    tokio::select! {
        _ = wait_for_signal() => {
            tracing::info!("shutting down");
            running.stop().await;
            Ok(())
        }
        fault = fe.wait_storage_fault() => {
            // Fail-stop, as etcd on a WAL error: an FE that cannot store what it is sent must
            // not live on half-dead. Writes are refused from now on; then exit non-zero.
            tracing::error!(
                "storage fault: {fault}; stopping in {FAULT_EXIT_AFTER:?} (fix the disk, then restart this FE)"
            );
            tokio::time::sleep(FAULT_EXIT_AFTER).await;
            running.stop().await;
            anyhow::bail!("storage fault, this FE stopped: {fault}")
        }
    }
}

pub async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
