//! Server side of `raft.proto`: hands openraft's messages to the local Raft, and serves the
//! leader services (read index, forwarded operations) and node info to other FEs.

use crate::error::ApiError;
use crate::node::FeNodeHandle;
use crate::pb::raft::{Blob, raft_service_server::RaftService};
use crate::wire::{ForwardResult, LeaderOp};
use futures::StreamExt;
use roster_raft_store::codec;
use roster_raft_store::types::Snapshot;
use roster_raft_store::types::{SnapshotMeta, Vote};
use std::time::{Duration, Instant};
use tonic::{Request, Response, Status, Streaming};

pub struct RaftServiceImpl {
    pub fe: FeNodeHandle,
}

fn bad(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(e.to_string())
}

/// Encode a `Result<T, String>` answer.
fn answer<T: serde::Serialize, E: std::fmt::Display>(
    r: Result<T, E>,
) -> Result<Response<Blob>, Status> {
    let r: Result<T, String> = r.map_err(|e| e.to_string());
    Ok(Response::new(Blob {
        data: codec::encode(&r).map_err(bad)?,
    }))
}

#[tonic::async_trait]
impl RaftService for RaftServiceImpl {
    async fn append_entries(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        let rpc = codec::decode(&req.into_inner().data).map_err(bad)?;
        answer(self.fe.raft().append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        let rpc = codec::decode(&req.into_inner().data).map_err(bad)?;
        answer(self.fe.raft().vote(rpc).await)
    }

    async fn pre_vote(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        let rpc = codec::decode(&req.into_inner().data).map_err(bad)?;
        answer(self.fe.raft().pre_vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<Streaming<Blob>>,
    ) -> Result<Response<Blob>, Status> {
        let mut stream = req.into_inner();
        let first = stream
            .next()
            .await
            .ok_or_else(|| bad("empty snapshot stream"))??;
        let (vote, meta): (Vote, SnapshotMeta) = codec::decode(&first.data).map_err(bad)?;
        let mut data = Vec::new();
        while let Some(chunk) = stream.next().await {
            data.extend_from_slice(&chunk?.data);
        }
        // Damaged in transit or at the sender: refuse it (the leader sends again) rather than
        // hand it to the state machine, where a bad snapshot is a storage fault that stops us.
        if let Err(e) = roster_raft_store::state_machine::decode_snapshot(&meta, &data) {
            tracing::warn!("refused a snapshot from the leader: {e}");
            return Err(bad(format!("snapshot refused: {e}")));
        }
        answer(
            self.fe
                .raft()
                .install_full_snapshot(
                    vote,
                    Snapshot {
                        meta,
                        snapshot: data,
                    },
                )
                .await,
        )
    }

    async fn transfer_leader(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        let rpc = codec::decode(&req.into_inner().data).map_err(bad)?;
        answer(self.fe.raft().handle_transfer_leader(rpc).await)
    }

    async fn get_read_index(&self, _req: Request<Blob>) -> Result<Response<Blob>, Status> {
        let r = self.fe.read_index_as_leader().await;
        Ok(Response::new(Blob {
            data: codec::encode(&r).map_err(bad)?,
        }))
    }

    async fn forward(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        let op: LeaderOp = codec::decode(&req.into_inner().data).map_err(bad)?;
        let r: ForwardResult = if self.fe.leader().map(|(id, _)| id) == Some(self.fe.id()) {
            let deadline =
                Instant::now() + self.fe.config().write_timeout.min(Duration::from_secs(60));
            self.fe.run_as_leader(&op, deadline).await
        } else {
            Err(ApiError::NotLeader {
                leader_rpc_addr: self.fe.leader().map(|(_, n)| n.rpc_addr()),
            })
        };
        Ok(Response::new(Blob {
            data: codec::encode(&r).map_err(bad)?,
        }))
    }

    async fn node_info(&self, _req: Request<Blob>) -> Result<Response<Blob>, Status> {
        // Peers show this as the FE's ErrMsg in SHOW FRONTENDS while it stops.
        if let Some(fault) = self.fe.storage_fault() {
            return Err(Status::unavailable(format!("storage fault: {fault}")));
        }
        Ok(Response::new(Blob {
            data: codec::encode(&self.fe.node_info()).map_err(bad)?,
        }))
    }
}
