//! Leader work: what the master decides (pure functions of state and time: liveness changes to
//! record, the tablet planner) and the actors that carry it out for one term of leadership,
//! through the `Cluster` and `Agents` traits the FE node implements.

pub mod cluster;
pub mod heartbeat;
pub mod leadership;
pub mod liveness;
pub mod planner;

#[cfg(all(test, feature = "paused-time"))]
mod testkit;

use cluster::{Agents, Cluster};
use leadership::StartTerm;
use roster_membership::Term;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The actors of one term of leadership, for `leadership::LeaderWork`: today the heartbeat
/// actor; the replica reconciler and the move executor still poll leadership in the FE node
/// and move here next (issue 14).
pub fn actors<C: Cluster, A: Agents>(cluster: C, agents: A) -> impl StartTerm {
    move |term: Term, cancel: CancellationToken, set: &mut JoinSet<()>| {
        set.spawn(heartbeat::run(
            cluster.clone(),
            agents.clone(),
            term,
            cancel,
        ));
    }
}
