//! The FE node as leader work sees it: `roster_scheduler`'s `Cluster` (this FE's state, fenced
//! proposals on this FE only, leadership by term) and `Agents` (heartbeats over this FE's
//! channels with its cluster token). Both hold a weak reference, so the work the node owns
//! never keeps it alive.

use super::{FeNodeHandle, Inner};
use roster_membership::model::liveness::HeartbeatInfo;
use roster_membership::{ClusterState, HostPort, Term};
use roster_proto::format::now_ms;
use roster_proto::pb::backend::HeartbeatRequest;
use roster_raft_store::{Cmd, Response, StateMachineStore};
use roster_scheduler::cluster::{Agents, Cluster, Fence};
use std::sync::Weak;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long one proposal of leader work may wait to commit.
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub(super) struct NodeCluster {
    pub(super) node: Weak<Inner>,
    pub(super) sm: StateMachineStore,
    pub(super) leadership: watch::Receiver<Option<Term>>,
}

fn gone() -> String {
    "this FE is shutting down".to_string()
}

impl Cluster for NodeCluster {
    fn read<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> R {
        self.sm.read(|s, _| f(s))
    }

    async fn propose(&self, term: Term, cmd: Cmd) -> Result<Response, String> {
        let fe = FeNodeHandle {
            inner: self.node.upgrade().ok_or_else(gone)?,
        };
        fe.propose_here(
            None,
            Cmd::fenced(term, cmd),
            Instant::now() + PROPOSE_TIMEOUT,
        )
        .await
        .map_err(|e| e.to_string())
    }

    fn leadership(&self) -> watch::Receiver<Option<Term>> {
        self.leadership.clone()
    }

    fn now_ms(&self) -> u64 {
        now_ms()
    }
}

#[derive(Clone)]
pub(super) struct NodeAgents {
    pub(super) node: Weak<Inner>,
}

impl Agents for NodeAgents {
    async fn heartbeat(
        &self,
        addr: &HostPort,
        fence: &Fence,
        timeout: Duration,
    ) -> Result<HeartbeatInfo, String> {
        let fe = FeNodeHandle {
            inner: self.node.upgrade().ok_or_else(gone)?,
        };
        let mut client = fe
            .agent_client(&addr.to_string())
            .map_err(|e| e.to_string())?;
        let mut req = tonic::Request::new(HeartbeatRequest {
            cluster_id: fe.config().cluster_id.clone(),
            master_node_id: fe.id(),
            master_term: fence.term.0,
            backends: fence.backends.clone(),
        });
        drop(fe);
        req.set_timeout(timeout);
        match tokio::time::timeout(timeout, client.heartbeat(req)).await {
            Ok(Ok(r)) => {
                let r = r.into_inner();
                Ok(HeartbeatInfo {
                    be_port: r.be_port as u16,
                    http_port: r.http_port as u16,
                    brpc_port: r.brpc_port as u16,
                    version: r.version,
                    start_time_ms: r.start_time_ms,
                    total_capacity_bytes: r.total_capacity_bytes,
                    avail_capacity_bytes: r.avail_capacity_bytes,
                    data_used_capacity_bytes: r.data_used_capacity_bytes,
                })
            }
            Ok(Err(s)) => Err(format!("heartbeat to {addr} failed: {}", s.message())),
            Err(_) => Err(format!("heartbeat to {addr} timed out after {timeout:?}")),
        }
    }
}
