//! `roster backend`: the reference backend agent. This first version answers the master's
//! heartbeats with its ports, version, start time and disk capacity; tablet replicas as files
//! and clones come with the scheduler issues.

use anyhow::Context;
use roster_api::pb::backend::backend_agent_server::{BackendAgent, BackendAgentServer};
use roster_api::pb::backend::{HeartbeatRequest, HeartbeatResponse};
use std::path::{Path, PathBuf};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

#[derive(clap::Args, Debug)]
pub struct BackendArgs {
    /// Address the FEs use to reach this agent.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Where replica files live; also what the capacity report measures.
    #[arg(long)]
    data_dir: PathBuf,
    #[arg(long, default_value_t = 9050)]
    heartbeat_port: u16,
    /// Port for replica data (reported in heartbeats).
    #[arg(long, default_value_t = 9060)]
    be_port: u16,
}

struct Agent {
    data_dir: PathBuf,
    be_port: u16,
    start_time_ms: u64,
}

/// Total and available bytes of the file system holding `dir`, and bytes under `dir`.
fn capacity(dir: &Path) -> (u64, u64, u64) {
    let total = fs2::total_space(dir).unwrap_or(0);
    let avail = fs2::available_space(dir).unwrap_or(0);
    (total, avail, walk_size(dir))
}

fn walk_size(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => walk_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[tonic::async_trait]
impl BackendAgent for Agent {
    async fn heartbeat(
        &self,
        _req: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let dir = self.data_dir.clone();
        let (total, avail, used) = tokio::task::spawn_blocking(move || capacity(&dir))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(HeartbeatResponse {
            be_port: self.be_port as u32,
            http_port: 0,
            brpc_port: 0,
            version: roster_api::node::VERSION.to_string(),
            start_time_ms: self.start_time_ms,
            total_capacity_bytes: total,
            avail_capacity_bytes: avail,
            data_used_capacity_bytes: used,
        }))
    }
}

impl BackendArgs {
    pub fn new(host: &str, data_dir: PathBuf, heartbeat_port: u16, be_port: u16) -> Self {
        BackendArgs {
            host: host.to_string(),
            data_dir,
            heartbeat_port,
            be_port,
        }
    }
}

pub async fn run(args: BackendArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let addr = format!("{}:{}", args.host, args.heartbeat_port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("binding heartbeat_port {addr}"))?;
    let agent = Agent {
        data_dir: args.data_dir.clone(),
        be_port: args.be_port,
        start_time_ms: roster_api::format::now_ms(),
    };
    tracing::info!(%addr, data_dir = %args.data_dir.display(), "backend agent started");
    let server = tonic::transport::Server::builder()
        .add_service(BackendAgentServer::new(agent))
        .serve_with_incoming_shutdown(
            TcpListenerStream::new(listener),
            crate::start::wait_for_signal(),
        );
    server.await?;
    Ok(())
}
