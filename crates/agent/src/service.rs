//! The agent's gRPC service (`proto/backend.proto`), served on both its heartbeat port and its
//! data port (`be_port`): heartbeats and replica calls from the master, replica streams for
//! clones. Each call touches the disk off the async threads.

use crate::store::{CHUNK_BYTES, ReplicaMeta, ReplicaStore, StoreError};
use roster_api::pb::backend::backend_agent_server::BackendAgent;
use roster_api::pb::backend::{
    CreateReplicaRequest, DropReplicaRequest, DropReplicaResponse, HeartbeatRequest,
    HeartbeatResponse, ListReplicasRequest, ListReplicasResponse, ReplicaChunk, ReplicaInfo,
    SendReplicaRequest,
};
use std::io::Read;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

pub struct Agent {
    store: Arc<ReplicaStore>,
    data_dir: PathBuf,
    be_port: u16,
    start_time_ms: u64,
}

impl Agent {
    pub fn new(store: Arc<ReplicaStore>, be_port: u16, start_time_ms: u64) -> Self {
        Agent {
            data_dir: store.root().to_path_buf(),
            store,
            be_port,
            start_time_ms,
        }
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
        _req: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
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
            version: roster_api::node::VERSION.to_string(),
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
        _req: Request<ListReplicasRequest>,
    ) -> Result<Response<ListReplicasResponse>, Status> {
        Ok(Response::new(ListReplicasResponse {
            replicas: self.store.list().iter().map(info).collect(),
        }))
    }

    type SendReplicaStream = ChunkStream;

    async fn send_replica(
        &self,
        req: Request<SendReplicaRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
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
