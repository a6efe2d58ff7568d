//! Leader work: what the master decides (pure functions of state and time: liveness changes to
//! record, the tablet planner) and the actors that carry it out for one term of leadership;
//! plus the one actor every FE runs for its lifetime, the blacklist refresher. All of them work
//! through the `Cluster` and `Agents` traits the FE node implements.

pub mod cluster;
pub mod heartbeat;
pub mod leadership;
pub mod liveness;
pub mod mover;
pub mod planner;
pub mod reconciler;
pub mod refresher;
pub mod task;

#[cfg(all(test, feature = "paused-time"))]
mod testkit;

use cluster::{Agents, Cluster};
use leadership::StartTerm;
use roster_membership::Term;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The actors of one term of leadership, for `leadership::LeaderWork`: the heartbeat actor,
/// the replica reconciler and the move executor.
pub fn actors<C: Cluster, A: Agents>(
    cluster: C,
    agents: A,
    quirks: mover::Quirks,
) -> impl StartTerm {
    move |term: Term, cancel: CancellationToken, set: &mut JoinSet<()>| {
        let (c, a) = (cluster.clone(), agents.clone());
        set.spawn(heartbeat::run(c, a, term, cancel.clone()));
        let (c, a) = (cluster.clone(), agents.clone());
        set.spawn(reconciler::run(c, a, term, cancel.clone()));
        let (c, a) = (cluster.clone(), agents.clone());
        set.spawn(mover::run(c, a, term, quirks, cancel));
    }
}
