//! What leader work needs of the FE it runs on, as two small traits: `Cluster` (the local
//! state, proposals, leadership, the clock) and `Agents` (calls to backend agents). The FE node
//! implements them; tests implement them with a state in memory and fake agents, so the actors
//! run under paused tokio time.

use roster_membership::model::liveness::HeartbeatInfo;
use roster_membership::{ClusterState, HostPort, Term};
use roster_raft_store::{Cmd, Response};
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;

/// The FE as leader work sees it.
pub trait Cluster: Clone + Send + Sync + 'static {
    /// Read this FE's applied state.
    fn read<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> R;

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
}

/// What every heartbeat of a round tells the agents: the master's term and the backends the
/// agents may clone from (`host:be_port` of each registered one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub term: Term,
    pub backends: Vec<String>,
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
}
