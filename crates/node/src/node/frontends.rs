//! ADD/DROP FOLLOWER and OBSERVER, run on the leader. A new FE joins as a learner, catches up,
//! then (FOLLOWER) becomes a voter. Dropping checks that the remaining voters still form a
//! reachable quorum, and the leader hands leadership away before dropping itself.

use super::{FeNodeHandle, probe};
use crate::error::ApiError;
use crate::wire::{ForwardResult, LeaderReply};
use openraft::ChangeMembers;
use openraft::async_runtime::watch::WatchReceiver;
use roster_membership::{FrontendId, query};
use roster_proto::format::now_ms;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// A peer counts as reachable if it answered a probe this recently.
const ALIVE_WITHIN_MS: u64 = 3_000;

fn role_name(voter: bool) -> &'static str {
    if voter { "FOLLOWER" } else { "OBSERVER" }
}

fn find_member(fe: &FeNodeHandle, addr: &str) -> Option<(FrontendId, bool)> {
    let (nodes, voters) = fe.members();
    nodes
        .iter()
        .find(|(_, n)| n.edit_log_addr() == addr)
        .map(|(id, _)| (*id, voters.contains(id)))
}

pub(super) async fn add(
    fe: &FeNodeHandle,
    voter: bool,
    addr: &str,
    deadline: Instant,
) -> ForwardResult {
    // A new leader has not yet committed the membership it inherited (openraft refuses a change
    // then, "already undergoing a configuration change"); a read barrier commits it and brings
    // the applied membership we check against up to date.
    fe.linearize().await?;
    if let Some((id, is_voter)) = find_member(fe, addr) {
        return Err(ApiError::Invalid(format!(
            "frontend {addr} already exists as {} (node id {id})",
            role_name(is_voter)
        )));
    }
    let info = probe(fe.channels(), addr, Duration::from_secs(3))
        .await
        .map_err(|e| {
            ApiError::Invalid(format!(
                "frontend {addr} is not reachable ({e}); start it first, with no initial_members"
            ))
        })?;
    if info.cluster_id != fe.config().cluster_id {
        return Err(ApiError::Invalid(format!(
            "frontend {addr} belongs to cluster \"{}\", not \"{}\"",
            info.cluster_id,
            fe.config().cluster_id
        )));
    }
    if info.node.edit_log_addr() != addr {
        return Err(ApiError::Invalid(format!(
            "frontend at {addr} says its edit_log address is {}; use that address",
            info.node.edit_log_addr()
        )));
    }
    let (nodes, _) = fe.members();
    if let Some(other) = nodes.get(&info.id) {
        return Err(ApiError::Invalid(format!(
            "node id {} is already used by frontend {}",
            info.id,
            other.edit_log_addr()
        )));
    }
    let current: BTreeSet<FrontendId> = nodes.keys().copied().collect();
    fe.store()
        .read(|s, _| query::backends::check_frontend_join(s, info.id, &current))?;

    // Blocks until the learner has caught up; bounded by the statement's deadline.
    let left = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(
        left,
        fe.raft().add_learner(info.id.0, info.node.clone(), true),
    )
    .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(fe.map_write_error(e)),
        Err(_) => {
            return Err(ApiError::Unknown(format!(
                "frontend {addr} was added as a learner but did not catch up in time; it stays an OBSERVER until promoted"
            )));
        }
    }
    if voter {
        let left = deadline.saturating_duration_since(Instant::now());
        let change = ChangeMembers::AddVoterIds(BTreeSet::from([info.id.0]));
        match tokio::time::timeout(left, fe.raft().change_membership(change, false)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(fe.map_write_error(e)),
            Err(_) => {
                return Err(ApiError::Unknown(format!(
                    "promoting {addr} to FOLLOWER did not commit in time"
                )));
            }
        }
    }
    Ok(LeaderReply::Done(format!(
        "frontend {addr} (node id {}) joined as {}",
        info.id,
        role_name(voter)
    )))
}

pub(super) async fn drop(
    fe: &FeNodeHandle,
    voter: bool,
    addr: &str,
    deadline: Instant,
) -> ForwardResult {
    fe.linearize().await?; // as in `add`
    let Some((id, is_voter)) = find_member(fe, addr) else {
        return Err(ApiError::Invalid(format!("frontend {addr} does not exist")));
    };
    if is_voter != voter {
        return Err(ApiError::Invalid(format!(
            "frontend {addr} is a {}, not a {}",
            role_name(is_voter),
            role_name(voter)
        )));
    }
    if voter {
        let (_, voters) = fe.members();
        let remaining: Vec<FrontendId> = voters.iter().copied().filter(|v| *v != id).collect();
        if remaining.is_empty() {
            return Err(ApiError::Invalid(format!(
                "frontend {addr} is the last FOLLOWER and cannot be dropped"
            )));
        }
        let peers = fe.peer_status();
        let now = now_ms();
        let reachable: Vec<FrontendId> = remaining
            .iter()
            .copied()
            .filter(|v| {
                *v == fe.id()
                    || peers
                        .get(v)
                        .and_then(|p| p.last_ok_ms)
                        .is_some_and(|t| now.saturating_sub(t) <= ALIVE_WITHIN_MS)
            })
            .collect();
        let quorum = remaining.len() / 2 + 1;
        if reachable.len() < quorum {
            return Err(ApiError::Invalid(format!(
                "dropping {addr} would leave {} of {} remaining followers reachable, fewer than a quorum of {quorum}",
                reachable.len(),
                remaining.len()
            )));
        }
        if id == fe.id() {
            // Let the new leader carry out the drop (the caller retries on NotLeader).
            hand_over(fe, "before dropping this frontend", deadline).await?;
            // Writes this FE appended as leader are committed by the new leader, but their
            // callers are answered only when this FE applies them, which it never would once
            // dropped (it gets no more log). Catch up first (best effort, bounded).
            if let Err(e) = fe.linearize().await {
                tracing::warn!("catching up before being dropped: {e}");
            }
            return Err(ApiError::NotLeader {
                leader_rpc_addr: fe.leader().map(|(_, n)| n.rpc_addr()),
            });
        }
    }
    let change = if voter {
        ChangeMembers::RemoveVoters(BTreeSet::from([id.0]))
    } else {
        ChangeMembers::RemoveNodes(BTreeSet::from([id.0]))
    };
    let left = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(left, fe.raft().change_membership(change, false)).await {
        Ok(Ok(_)) => Ok(LeaderReply::Done(format!(
            "frontend {addr} (node id {id}) dropped; stop its process now"
        ))),
        Ok(Err(e)) => Err(fe.map_write_error(e)),
        Err(_) => Err(ApiError::Unknown(format!(
            "dropping {addr} did not commit in time"
        ))),
    }
}

/// The voters other than this FE that answered a probe recently.
fn reachable_peers(fe: &FeNodeHandle) -> Vec<FrontendId> {
    let (_, voters) = fe.members();
    let peers = fe.peer_status();
    let now = now_ms();
    voters
        .into_iter()
        .filter(|v| {
            *v != fe.id()
                && peers
                    .get(v)
                    .and_then(|p| p.last_ok_ms)
                    .is_some_and(|t| now.saturating_sub(t) <= ALIVE_WITHIN_MS)
        })
        .collect()
}

/// Hand leadership to the most caught-up reachable follower and wait, until `deadline`, for
/// this FE to stop leading (DROP FOLLOWER of the master, a drained master). Returns the
/// follower chosen.
pub(super) async fn hand_over(
    fe: &FeNodeHandle,
    why: &str,
    deadline: Instant,
) -> Result<FrontendId, ApiError> {
    let peers = fe.peer_status();
    let target = reachable_peers(fe)
        .into_iter()
        .max_by_key(|v| {
            peers
                .get(v)
                .and_then(|p| p.info.as_ref())
                .map(|i| i.last_applied_index)
                .unwrap_or(0)
        })
        .ok_or_else(|| {
            ApiError::Invalid("no other reachable follower to hand leadership to".into())
        })?;
    tracing::info!(to = target.0, "handing leadership away {why}");
    // The target's vote then skips this leader's lease here too (see `raft_guard`).
    fe.raft_guard().transfers.announce(target.0);
    fe.raft()
        .trigger()
        .transfer_leader(target.0)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut rx = fe.raft().metrics();
    while fe.leader().map(|(l, _)| l) == Some(fe.id()) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ApiError::Unavailable(
                "leadership was not handed over in time".into(),
            ));
        }
        if let Ok(Err(_)) = tokio::time::timeout(left, rx.changed()).await {
            return Err(ApiError::Unavailable(
                "this frontend is shutting down".into(),
            ));
        }
    }
    Ok(target)
}
