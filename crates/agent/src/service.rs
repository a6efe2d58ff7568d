//! The agent's gRPC service (`proto/backend.proto`), served on both its heartbeat port and its
//! data port (`be_port`): heartbeats and replica calls from the master, replica streams for
//! clones. Each call touches the disk off the async threads.

use crate::fence::Fence;
use crate::store::{CHUNK_BYTES, ReplicaMeta, ReplicaStore, StoreError};
use roster_proto::pb::backend::CloneReplicaRequest;
use roster_proto::pb::backend::backend_agent_server::BackendAgent;
use roster_proto::pb::backend::{
    CreateReplicaRequest, DropReplicaRequest, DropReplicaResponse, HeartbeatRequest,
    HeartbeatResponse, ListReplicasRequest, ListReplicasResponse, ReplicaChunk, ReplicaInfo,
    SendReplicaRequest,
};
use roster_transport::cluster_token::{ClusterToken, agent_client};
use roster_transport::tls::{Caller, Transport};
use std::collections::BTreeSet;
use std::io::Read;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// Injected faults, for tests of the scheduler's timeouts.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Clones this agent receives stop after the first chunk and never finish.
    pub stall_clones: bool,
}

/// Soft state shared by both ports' services.
#[derive(Debug, Default)]
pub struct Shared {
    /// Tablets being cloned into this agent now.
    cloning: Mutex<BTreeSet<u64>>,
    /// What the newest master said clones may come from (see `fence`).
    fence: Mutex<Fence>,
}

pub struct Agent {
    store: Arc<ReplicaStore>,
    data_dir: PathBuf,
    be_port: u16,
    start_time_ms: u64,
    shared: Arc<Shared>,
    faults: Faults,
    /// Who may call (FEs of the cluster; other agents only to read a replica), and how this
    /// agent dials a clone's source.
    transport: Transport,
    /// Insecure mode: callers must send this token (see `roster_transport::cluster_token`). Without
    /// TLS it proves membership of the cluster only, so there any holder may make any call.
    token: Option<ClusterToken>,
}

/// Calls that command the agent: only an FE of the cluster.
const FE_ONLY: &[Caller] = &[Caller::Fe];
/// Reading a replica (a clone's source): an FE, or an agent pulling it.
const FE_OR_AGENT: &[Caller] = &[Caller::Fe, Caller::Backend];

impl Agent {
    pub fn new(
        store: Arc<ReplicaStore>,
        be_port: u16,
        start_time_ms: u64,
        shared: Arc<Shared>,
        faults: Faults,
        transport: Transport,
        token: Option<ClusterToken>,
    ) -> Self {
        Agent {
            data_dir: store.root().to_path_buf(),
            store,
            be_port,
            start_time_ms,
            shared,
            faults,
            transport,
            token,
        }
    }

    /// Admit a call: by certificate in secure mode (`allowed` roles), by cluster token in
    /// insecure mode (an insecure agent without a token obeys nobody; the binary refuses to
    /// start so).
    fn admit<T>(&self, req: &Request<T>, allowed: &[Caller]) -> Result<(), Status> {
        if self.transport.is_secure() {
            return self.transport.authorize(req, allowed);
        }
        match &self.token {
            Some(t) => t.check(req),
            None => Err(Status::unauthenticated(
                "this insecure agent has no cluster token and obeys nobody",
            )),
        }
    }

    async fn pull(&self, r: &CloneReplicaRequest) -> Result<ReplicaMeta, Status> {
        let endpoint = self
            .transport
            .endpoint(&r.source_addr)
            .map_err(|e| Status::invalid_argument(format!("source_addr {:?}: {e}", r.source_addr)))?
            .connect_timeout(Duration::from_secs(2));
        let channel = endpoint.connect().await.map_err(|e| {
            Status::unavailable(format!("cannot reach source {}: {e}", r.source_addr))
        })?;
        let mut stream = agent_client(channel, self.token.as_ref())
            .send_replica(SendReplicaRequest {
                tablet_id: r.tablet_id,
            })
            .await
            .map_err(|s| Status::unavailable(format!("source {}: {}", r.source_addr, s.message())))?
            .into_inner();
        let store = self.store.clone();
        let (tablet_id, table_id) = (r.tablet_id, r.table_id);
        let mut staging = blocking(move || store.stage(tablet_id, table_id)).await?;
        let started = Instant::now();
        let mut received: u64 = 0;
        while let Some(chunk) = stream.message().await.map_err(|s| {
            Status::unavailable(format!("source {}: {}", r.source_addr, s.message()))
        })? {
            if chunk.data.is_empty() {
                continue;
            }
            if self.faults.stall_clones {
                tracing::warn!(tablet = r.tablet_id, "fault injected: this clone stalls");
                std::future::pending::<()>().await;
            }
            received += chunk.data.len() as u64;
            staging =
                tokio::task::spawn_blocking(move || staging.write(&chunk.data).map(|_| staging))
                    .await
                    .map_err(|e| Status::internal(e.to_string()))?
                    .map_err(status)?;
            if r.rate_limit_bytes_per_sec > 0 {
                let due =
                    Duration::from_secs_f64(received as f64 / r.rate_limit_bytes_per_sec as f64);
                tokio::time::sleep(due.saturating_sub(started.elapsed())).await;
            }
        }
        let got = staging.meta();
        if got.bytes != r.expected_bytes
            || (r.checksum_known && got.checksum != r.expected_checksum)
        {
            return Err(Status::data_loss(format!(
                "clone of tablet {} from {} does not match: {} bytes, checksum {:08x}; expected {} bytes, checksum {:08x}",
                r.tablet_id,
                r.source_addr,
                got.bytes,
                got.checksum,
                r.expected_bytes,
                r.expected_checksum
            )));
        }
        let store = self.store.clone();
        blocking(move || store.commit(staging)).await
    }
}

/// Removes a tablet from the in-progress set when the clone ends, however it ends.
struct CloningGuard(Arc<Shared>, u64);

impl Drop for CloningGuard {
    fn drop(&mut self) {
        self.0.cloning.lock().expect("cloning lock").remove(&self.1);
    }
}

fn info(m: &ReplicaMeta) -> ReplicaInfo {
    ReplicaInfo {
        tablet_id: m.tablet_id,
        table_id: m.table_id,
        bytes: m.bytes,
        checksum: m.checksum,
    }
}

fn status(e: StoreError) -> Status {
    match e {
        StoreError::NotFound(_) => Status::not_found(e.to_string()),
        StoreError::Damaged { .. } => Status::data_loss(e.to_string()),
        StoreError::Io { .. } => Status::internal(e.to_string()),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(status)
}

fn check_tablet_id(id: u64) -> Result<(), Status> {
    if id == 0 {
        Err(Status::invalid_argument("tablet_id 0 is not a tablet"))
    } else {
        Ok(())
    }
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<ReplicaChunk, Status>> + Send>>;

#[tonic::async_trait]
impl BackendAgent for Agent {
    async fn heartbeat(
        &self,
        req: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        self.admit(&req, FE_ONLY)?;
        let hb = req.get_ref();
        if !self
            .shared
            .fence
            .lock()
            .expect("fence lock")
            .observe(hb.master_term, &hb.backends)
        {
            tracing::debug!(
                term = hb.master_term,
                master = hb.master_node_id,
                "heartbeat of an older term than heard: its backend list is ignored"
            );
        }
        let dir = self.data_dir.clone();
        let (total, avail) = blocking(move || {
            Ok((
                fs2::total_space(&dir).unwrap_or(0),
                fs2::available_space(&dir).unwrap_or(0),
            ))
        })
        .await?;
        let replicas = self.store.list();
        Ok(Response::new(HeartbeatResponse {
            be_port: u32::from(self.be_port),
            http_port: 0,
            brpc_port: 0,
            version: roster_proto::VERSION.to_string(),
            start_time_ms: self.start_time_ms,
            total_capacity_bytes: total,
            avail_capacity_bytes: avail,
            data_used_capacity_bytes: replicas.iter().map(|m| m.bytes).sum(),
            tablet_count: replicas.len() as u64,
        }))
    }

    async fn create_replica(
        &self,
        req: Request<CreateReplicaRequest>,
    ) -> Result<Response<ReplicaInfo>, Status> {
        self.admit(&req, FE_ONLY)?;
        let r = req.into_inner();
        check_tablet_id(r.tablet_id)?;
        let store = self.store.clone();
        let m = blocking(move || store.create(r.tablet_id, r.table_id, r.fill_bytes)).await?;
        tracing::info!(tablet = m.tablet_id, bytes = m.bytes, "replica created");
        Ok(Response::new(info(&m)))
    }

    async fn drop_replica(
        &self,
        req: Request<DropReplicaRequest>,
    ) -> Result<Response<DropReplicaResponse>, Status> {
        self.admit(&req, FE_ONLY)?;
        let id = req.into_inner().tablet_id;
        let store = self.store.clone();
        let existed = blocking(move || store.drop_replica(id)).await?;
        if existed {
            tracing::info!(tablet = id, "replica dropped");
        }
        Ok(Response::new(DropReplicaResponse { existed }))
    }

    async fn list_replicas(
        &self,
        req: Request<ListReplicasRequest>,
    ) -> Result<Response<ListReplicasResponse>, Status> {
        self.admit(&req, FE_ONLY)?;
        Ok(Response::new(ListReplicasResponse {
            replicas: self.store.list().iter().map(info).collect(),
        }))
    }

    async fn clone_replica(
        &self,
        req: Request<CloneReplicaRequest>,
    ) -> Result<Response<ReplicaInfo>, Status> {
        self.admit(&req, FE_ONLY)?;
        let r = req.into_inner();
        check_tablet_id(r.tablet_id)?;
        // Before anything else: this agent dials only sources the newest master named.
        self.shared
            .fence
            .lock()
            .expect("fence lock")
            .check(r.master_term, &r.source_addr)
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        if let Some(m) = self.store.get(r.tablet_id) {
            // Done before (a retried call): the master checks the checksum.
            return Ok(Response::new(info(&m)));
        }
        if !self
            .shared
            .cloning
            .lock()
            .expect("cloning lock")
            .insert(r.tablet_id)
        {
            return Err(Status::already_exists(format!(
                "a clone of tablet {} is already running here",
                r.tablet_id
            )));
        }
        let _guard = CloningGuard(self.shared.clone(), r.tablet_id);
        let m = self.pull(&r).await?;
        tracing::info!(tablet = m.tablet_id, bytes = m.bytes, source = %r.source_addr, "replica cloned");
        Ok(Response::new(info(&m)))
    }

    type SendReplicaStream = ChunkStream;

    async fn send_replica(
        &self,
        req: Request<SendReplicaRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        self.admit(&req, FE_OR_AGENT)?;
        let id = req.into_inner().tablet_id;
        let store = self.store.clone();
        let (meta, mut file) = blocking(move || store.open_data(id)).await?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<ReplicaChunk, Status>>(4);
        tokio::task::spawn_blocking(move || {
            let first = ReplicaChunk {
                info: Some(info(&meta)),
                data: Vec::new(),
            };
            if tx.blocking_send(Ok(first)).is_err() {
                return;
            }
            let mut buf = vec![0u8; CHUNK_BYTES];
            loop {
                match file.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        let chunk = ReplicaChunk {
                            info: None,
                            data: buf[..n].to_vec(),
                        };
                        if tx.blocking_send(Ok(chunk)).is_err() {
                            return; // the receiver went away
                        }
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(Status::internal(format!(
                            "reading replica of tablet {id}: {e}"
                        ))));
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
