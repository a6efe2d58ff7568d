//! Server side of `raft.proto`: hands openraft's messages to the local Raft, and serves the
//! leader services (read index, forwarded operations) and node info to other FEs.
//!
//! Every Raft message passes `raft_guard`'s checks first; a refused one never reaches openraft.
//! Snapshots are streamed to a file under `data_dir/raft/incoming` (bounded by
//! `raft.max_snapshot_bytes`) and installed only once complete.

use crate::error::ApiError;
use crate::node::FeNodeHandle;
use crate::raft_guard::{LocalView, Refusal, refuse};
use crate::wire::{ForwardResult, LeaderOp};
use futures::StreamExt;
use openraft::raft::{AppendEntriesRequest, TransferLeaderRequest, VoteRequest};
use roster_proto::pb::raft::{Blob, raft_service_server::RaftService};
use roster_raft_store::types::{Snapshot, SnapshotMeta, Vote};
use roster_raft_store::{NodeId, TypeConfig, codec};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
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

impl RaftServiceImpl {
    /// This FE's view, for judging a message from `from`. The FEs known as removed come from
    /// the state (under its lock, which a snapshot install holds across an fsync), so they are
    /// read only for a secure peer the view does not name: the only case that asks for them.
    fn view(&self, from: NodeId) -> LocalView {
        let view = LocalView::of(self.fe.raft());
        // The Raft port's interceptor admitted only FE certificates of the cluster's CA.
        let peer_is_fe = self.fe.config().transport.is_secure();
        let removed = if peer_is_fe && !view.members.contains(&from) {
            // The guard speaks openraft's node ids.
            self.fe
                .removed_frontends()
                .into_iter()
                .map(|f| f.0)
                .collect()
        } else {
            BTreeSet::new()
        };
        view.for_fe_peer(peer_is_fe, removed)
    }

    fn limits(&self) -> crate::raft_guard::RaftLimits {
        self.fe.config().raft_limits
    }

    /// A vote request that survived the checks; a leadership-transfer claim the current leader
    /// did not announce is stripped, so the leader lease applies to it as to any other vote.
    fn checked_vote(
        &self,
        what: &'static str,
        data: &[u8],
    ) -> Result<VoteRequest<TypeConfig>, Status> {
        let mut rpc: VoteRequest<TypeConfig> = codec::decode(data).map_err(bad)?;
        self.view(rpc.vote.leader_id.node_id)
            .check_vote_request(what, &rpc, &self.limits())
            .map_err(refuse)?;
        let candidate = rpc.vote.leader_id.node_id;
        if rpc.leadership_transfer && !self.fe.raft_guard().transfers.allows(candidate) {
            tracing::debug!(
                candidate,
                "{what} claims a leadership transfer the leader did not announce; treated as a plain vote"
            );
            rpc.leadership_transfer = false;
        }
        Ok(rpc)
    }

    /// Stream the snapshot body into a temporary file, refusing it past the size limit.
    async fn receive_snapshot(
        &self,
        vote: &Vote,
        stream: &mut Streaming<Blob>,
    ) -> Result<tempfile::NamedTempFile, Status> {
        let io = |e: std::io::Error| Status::internal(format!("receiving a snapshot: {e}"));
        let dir = incoming_dir(&self.fe);
        tokio::fs::create_dir_all(&dir).await.map_err(io)?;
        let tmp = tempfile::Builder::new()
            .prefix("snapshot-")
            .tempfile_in(&dir)
            .map_err(io)?;
        let mut file = tokio::fs::File::from_std(tmp.reopen().map_err(io)?);
        let limit = self.limits().max_snapshot_bytes;
        let mut size: u64 = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            size += chunk.data.len() as u64;
            if size > limit {
                return Err(refuse(Refusal::SnapshotTooLarge {
                    from: vote.leader_id.node_id,
                    limit,
                }));
            }
            file.write_all(&chunk.data).await.map_err(io)?;
        }
        file.flush().await.map_err(io)?;
        Ok(tmp)
    }
}

/// Where incoming snapshots are written while they arrive (emptied at each FE start).
pub fn incoming_dir(fe: &FeNodeHandle) -> PathBuf {
    fe.config().data_dir.join("raft").join("incoming")
}

impl RaftServiceImpl {
    /// An AppendEntries request that survived the checks.
    fn checked_append(&self, data: &[u8]) -> Result<AppendEntriesRequest<TypeConfig>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = codec::decode(data).map_err(bad)?;
        self.view(rpc.vote.leader_id.node_id)
            .check_append(&rpc, &self.limits())
            .map_err(refuse)?;
        Ok(rpc)
    }
}

/// The answers of an AppendStream: one encoded `StreamAppendResult` per request.
type AnswerStream = futures::stream::BoxStream<'static, Result<Blob, Status>>;

#[tonic::async_trait]
impl RaftService for RaftServiceImpl {
    async fn append_entries(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        let rpc = self.checked_append(&req.into_inner().data)?;
        answer(self.fe.raft().append_entries(rpc).await)
    }

    type AppendStreamStream = AnswerStream;

    /// Each request passes the same checks as a unary AppendEntries. The first refused one
    /// ends the input: the requests before it are still answered, then the refusal ends the
    /// stream, so nothing after a bad message reaches openraft.
    async fn append_stream(
        &self,
        req: Request<Streaming<Blob>>,
    ) -> Result<Response<AnswerStream>, Status> {
        let checker = RaftServiceImpl {
            fe: self.fe.clone(),
        };
        let refused = std::sync::Arc::new(std::sync::Mutex::new(None::<Status>));
        let slot = refused.clone();
        let input = req.into_inner().scan((), move |_, msg| {
            let rpc = msg.and_then(|b| checker.checked_append(&b.data));
            std::future::ready(match rpc {
                Ok(rpc) => Some(rpc),
                Err(status) => {
                    *slot.lock().expect("refusal slot") = Some(status);
                    None
                }
            })
        });
        let answers = self.fe.raft().stream_append(input).map(|r| match r {
            Ok(result) => Ok(Blob {
                data: codec::encode(&result).map_err(bad)?,
            }),
            Err(fatal) => Err(Status::unavailable(format!("raft stopped: {fatal}"))),
        });
        let refusal =
            futures::stream::once(
                async move { refused.lock().expect("refusal slot").take().map(Err) },
            )
            .filter_map(std::future::ready);
        Ok(Response::new(answers.chain(refusal).boxed()))
    }

    async fn vote(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        let rpc = self.checked_vote("Vote", &req.into_inner().data)?;
        answer(self.fe.raft().vote(rpc).await)
    }

    async fn pre_vote(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        let rpc = self.checked_vote("PreVote", &req.into_inner().data)?;
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
        // Judged on the first message alone: a refused snapshot's body is never read.
        self.view(vote.leader_id.node_id)
            .check_snapshot(
                &vote,
                meta.last_log_id.as_ref(),
                meta.last_membership.membership(),
                &self.limits(),
            )
            .map_err(refuse)?;
        let _slot = self.fe.raft_guard().snapshot_slot.try_lock().map_err(|_| {
            Status::resource_exhausted(
                "another snapshot is being received by this FE; try again later",
            )
        })?;
        let tmp = self.receive_snapshot(&vote, &mut stream).await?;
        // The body took a while: the vote may have gone stale meanwhile.
        self.view(vote.leader_id.node_id)
            .check_snapshot(
                &vote,
                meta.last_log_id.as_ref(),
                meta.last_membership.membership(),
                &self.limits(),
            )
            .map_err(refuse)?;
        let data = tokio::fs::read(tmp.path())
            .await
            .map_err(|e| Status::internal(format!("reading the received snapshot: {e}")))?;
        drop(tmp);
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
        let rpc: TransferLeaderRequest<TypeConfig> =
            codec::decode(&req.into_inner().data).map_err(bad)?;
        let from = rpc.from_leader().leader_id.node_id;
        let view = self.view(from);
        view.check_term(from, rpc.from_leader().leader_id.term, &self.limits())
            .map_err(refuse)?;
        // Only the current leader hands leadership away (openraft also ignores a request whose
        // vote is not this FE's); only then does the target's transfer vote skip the lease.
        if view.leader == Some(from) && *rpc.from_leader() == view.vote {
            self.fe.raft_guard().transfers.announce(*rpc.to_node_id());
        }
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
