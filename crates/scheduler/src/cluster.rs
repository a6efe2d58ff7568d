//! What leader work needs of the FE it runs on, as two small traits: `Cluster` (the local
//! state, read barriers, proposals, leadership, the clock) and `Agents` (calls to backend
//! agents: heartbeats, replica reports, creating, dropping and cloning replicas). The FE node
//! implements them; tests implement them with a state in memory and fake agents, so the actors
//! run under paused tokio time.

use roster_membership::model::liveness::HeartbeatInfo;
use roster_membership::{ClusterState, FrontendId, HostPort, TableId, TabletId, Term};
use roster_raft_store::{Cmd, Reply, Response};
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;

/// The FE as leader work sees it.
pub trait Cluster: Clone + Send + Sync + 'static {
    /// Read this FE's applied state.
    fn read<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> R;

    /// A read barrier: returns once this FE has applied everything committed before the call;
    /// `Err` on a deposed leader or when the quorum cannot be reached in time.
    fn linearize(&self) -> impl Future<Output = Result<(), String>> + Send;

    /// The index of the last entry this FE applied: a change wakes the move executor (a new
    /// DECOMMISSION, a finished move) without waiting for its tick.
    fn applied(&self) -> watch::Receiver<u64>;

    /// Propose `cmd` on this FE (never forwarded) as leader work decided in `term`: it is
    /// fenced (`Cmd::Fenced`), so apply refuses it if the entry lands in another term. `Err`
    /// when it was not committed (no longer leader, timeout); a refusal is an `Ok` answer.
    fn propose(
        &self,
        term: Term,
        cmd: Cmd,
    ) -> impl Future<Output = Result<Response, String>> + Send;

    /// `Some(term)` while this FE is the leader of `term`, `None` otherwise.
    fn leadership(&self) -> watch::Receiver<Option<Term>>;

    /// Wall-clock milliseconds, for soft state such as the last successful heartbeat.
    fn now_ms(&self) -> u64;

    /// This FE.
    fn me(&self) -> FrontendId;

    /// Propose `cmd` as this FE's own housekeeping, not leader work: unfenced, forwarded to
    /// the leader. Used by the per-FE blacklist refresher, which runs on every FE.
    fn submit(&self, cmd: Cmd) -> impl Future<Output = Result<Response, String>> + Send;
}

/// What every heartbeat of a round tells the agents: the master's term and the backends the
/// agents may clone from (`host:be_port` of each registered one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub term: Term,
    pub backends: Vec<String>,
}

/// A replica as an agent holds it: its size and checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub tablet: TabletId,
    pub bytes: u64,
    pub checksum: u32,
}

/// Make an empty replica (filled with `fill_bytes` of test data) that the catalog placed there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateOrder {
    pub tablet: TabletId,
    pub table: TableId,
    pub fill_bytes: u64,
}

/// Pull a replica's bytes from `source` (its data address) and check them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloneOrder {
    pub tablet: TabletId,
    pub table: TableId,
    pub source: HostPort,
    pub expected_bytes: u64,
    /// `None` when the catalog has no checksum yet: the agent then reports the one it found.
    pub expected_checksum: Option<u32>,
    pub rate_limit_bytes_per_sec: u64,
    /// The master's term: the agent's clone fence refuses a term older than one it has heard.
    pub term: Term,
}

/// Why a clone did not finish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloneError {
    /// Another master's clone of this tablet is still running on the destination.
    Busy(String),
    /// The destination's fence refused it: it has not yet heard this term's heartbeat naming
    /// the source, or this master is deposed.
    Fenced(String),
    /// The copy failed (source gone, checksum mismatch, timeout, ...).
    Failed(String),
}

/// Calls to the backend agents.
pub trait Agents: Clone + Send + Sync + 'static {
    /// Heartbeat the agent at `addr` (its heartbeat port) within `timeout`.
    fn heartbeat(
        &self,
        addr: &HostPort,
        fence: &Fence,
        timeout: Duration,
    ) -> impl Future<Output = Result<HeartbeatInfo, String>> + Send;

    /// Open a TCP connection to `addr` (from this FE's backend source address, if it has
    /// one) and close it: whether the backend is reachable from this FE.
    fn connect(
        &self,
        addr: &HostPort,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), String>> + Send;

    /// The replicas the agent at `addr` holds.
    fn list_replicas(
        &self,
        addr: &HostPort,
        timeout: Duration,
    ) -> impl Future<Output = Result<Vec<Held>, String>> + Send;

    /// Create a replica the catalog placed on the agent at `addr`.
    fn create_replica(
        &self,
        addr: &HostPort,
        order: &CreateOrder,
        timeout: Duration,
    ) -> impl Future<Output = Result<Held, String>> + Send;

    /// Delete the agent's files of `tablet`.
    fn drop_replica(
        &self,
        addr: &HostPort,
        tablet: TabletId,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), String>> + Send;

    /// Have the agent at `dest` pull a replica; returns what it now holds.
    fn clone_replica(
        &self,
        dest: &HostPort,
        order: &CloneOrder,
        timeout: Duration,
    ) -> impl Future<Output = Result<Held, CloneError>> + Send;
}

/// The one way actors propose: leader work of `term`, fenced by it. Returns the applier's
/// reply when it took; a refusal or a failure is logged and `None`, since every actor's next
/// round starts again from the state and nothing else is to be done with it.
pub async fn propose<C: Cluster>(cluster: &C, term: Term, cmd: Cmd) -> Option<Reply> {
    let what = format!("{cmd:?}");
    match cluster.propose(term, cmd).await {
        Ok(Response::Ok(r)) => Some(r),
        Ok(Response::Refused(e)) => {
            tracing::warn!(term = term.0, "{what} refused at apply: {e}");
            None
        }
        Err(e) => {
            tracing::warn!(term = term.0, "proposing {what} failed: {e}");
            None
        }
    }
}
