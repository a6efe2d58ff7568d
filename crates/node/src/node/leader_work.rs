//! The FE node as `roster_scheduler`'s actors see it: `Cluster` (this FE's state, read
//! barriers, fenced proposals on this FE only, leadership by term, the applied index, and
//! unfenced housekeeping forwarded to the leader) and `Agents` (connection checks from the
//! backend source address, heartbeats and replica calls over this FE's channels with its
//! cluster token; tonic codes become typed clone errors here). Both hold a weak reference, so
//! the work the node owns never keeps it alive.

use super::{FeNodeHandle, Inner};
use roster_membership::model::liveness::HeartbeatInfo;
use roster_membership::{ClusterState, FrontendId, HostPort, TabletId, Term};
use roster_proto::format::now_ms;
use roster_proto::pb::backend::{
    CloneReplicaRequest, CreateReplicaRequest, DropReplicaRequest, HeartbeatRequest,
    ListReplicasRequest, ReplicaInfo,
};
use roster_raft_store::{Cmd, Response, StateMachineStore};
use roster_scheduler::cluster::{
    Agents, CloneError, CloneOrder, Cluster, CreateOrder, Fence, Held,
};
use roster_transport::cluster_token::AgentClient;
use std::net::{IpAddr, SocketAddr};
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
    pub(super) applied: watch::Receiver<u64>,
    pub(super) me: FrontendId,
}

fn gone() -> String {
    "this FE is shutting down".to_string()
}

impl NodeCluster {
    fn node(&self) -> Result<FeNodeHandle, String> {
        Ok(FeNodeHandle {
            inner: self.node.upgrade().ok_or_else(gone)?,
        })
    }
}

impl Cluster for NodeCluster {
    fn read<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> R {
        self.sm.read(|s, _| f(s))
    }

    async fn linearize(&self) -> Result<(), String> {
        self.node()?.linearize().await.map_err(|e| e.to_string())
    }

    fn applied(&self) -> watch::Receiver<u64> {
        self.applied.clone()
    }

    async fn propose(&self, term: Term, cmd: Cmd) -> Result<Response, String> {
        self.node()?
            .propose_here(
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

    fn me(&self) -> FrontendId {
        self.me
    }

    async fn submit(&self, cmd: Cmd) -> Result<Response, String> {
        self.node()?
            .propose(None, cmd)
            .await
            .map_err(|e| e.to_string())
    }
}

#[derive(Clone)]
pub(super) struct NodeAgents {
    pub(super) node: Weak<Inner>,
    /// The address this FE's connection checks leave from (`backend_source_ip`).
    pub(super) source: Option<IpAddr>,
}

impl NodeAgents {
    fn client(&self, addr: &HostPort) -> Result<AgentClient, String> {
        let fe = FeNodeHandle {
            inner: self.node.upgrade().ok_or_else(gone)?,
        };
        fe.agent_client(&addr.to_string())
            .map_err(|e| e.to_string())
    }
}

fn timed<T>(msg: T, timeout: Duration) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(timeout);
    r
}

fn held(r: ReplicaInfo) -> Held {
    Held {
        tablet: TabletId(r.tablet_id),
        bytes: r.bytes,
        checksum: r.checksum,
    }
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
            master_node_id: fe.id().0,
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

    async fn connect(&self, addr: &HostPort, timeout: Duration) -> Result<(), String> {
        match tokio::time::timeout(timeout, connect(self.source, addr)).await {
            Ok(r) => r,
            Err(_) => Err(format!("no connection within {timeout:?}")),
        }
    }

    async fn list_replicas(&self, addr: &HostPort, timeout: Duration) -> Result<Vec<Held>, String> {
        let mut c = self.client(addr)?;
        match c
            .list_replicas(timed(ListReplicasRequest {}, timeout))
            .await
        {
            Ok(r) => Ok(r.into_inner().replicas.into_iter().map(held).collect()),
            Err(s) => Err(s.message().to_string()),
        }
    }

    async fn create_replica(
        &self,
        addr: &HostPort,
        order: &CreateOrder,
        timeout: Duration,
    ) -> Result<Held, String> {
        let mut c = self.client(addr)?;
        let req = CreateReplicaRequest {
            tablet_id: order.tablet.0,
            table_id: order.table.0,
            fill_bytes: order.fill_bytes,
        };
        match c.create_replica(timed(req, timeout)).await {
            Ok(r) => {
                let r = r.into_inner();
                Ok(Held {
                    tablet: order.tablet,
                    bytes: r.bytes,
                    checksum: r.checksum,
                })
            }
            Err(s) => Err(s.message().to_string()),
        }
    }

    async fn drop_replica(
        &self,
        addr: &HostPort,
        tablet: TabletId,
        timeout: Duration,
    ) -> Result<(), String> {
        let mut c = self.client(addr)?;
        let req = DropReplicaRequest {
            tablet_id: tablet.0,
        };
        match c.drop_replica(timed(req, timeout)).await {
            Ok(_) => Ok(()),
            Err(s) => Err(s.message().to_string()),
        }
    }

    async fn clone_replica(
        &self,
        dest: &HostPort,
        order: &CloneOrder,
        timeout: Duration,
    ) -> Result<Held, CloneError> {
        let mut c = self.client(dest).map_err(CloneError::Failed)?;
        let req = CloneReplicaRequest {
            tablet_id: order.tablet.0,
            table_id: order.table.0,
            source_addr: order.source.to_string(),
            expected_bytes: order.expected_bytes,
            expected_checksum: order.expected_checksum.unwrap_or(0),
            checksum_known: order.expected_checksum.is_some(),
            rate_limit_bytes_per_sec: order.rate_limit_bytes_per_sec,
            master_term: order.term.0,
        };
        match c.clone_replica(timed(req, timeout)).await {
            Ok(r) => Ok(held(r.into_inner())),
            // Another master's clone of it is still running there.
            Err(s) if s.code() == tonic::Code::AlreadyExists => {
                Err(CloneError::Busy(s.message().to_string()))
            }
            // The agent's clone fence (see the agent's service).
            Err(s) if s.code() == tonic::Code::FailedPrecondition => {
                Err(CloneError::Fenced(s.message().to_string()))
            }
            Err(s) => Err(CloneError::Failed(s.message().to_string())),
        }
    }
}

/// Open a TCP connection from `source` (when set) to `addr`, and close it.
async fn connect(source: Option<IpAddr>, addr: &HostPort) -> Result<(), String> {
    let to: SocketAddr = tokio::net::lookup_host((addr.host.as_str(), addr.port))
        .await
        .map_err(|e| format!("cannot resolve: {e}"))?
        .next()
        .ok_or_else(|| "cannot resolve: no address".to_string())?;
    let socket = match to {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .map_err(|e| e.to_string())?;
    if let Some(ip) = source {
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(|e| format!("cannot bind source address {ip}: {e}"))?;
    }
    socket
        .connect(to)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}
