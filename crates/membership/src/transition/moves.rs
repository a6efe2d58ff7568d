//! The steps of a replica move. Starting a move adds a CLONING replica on the destination; the
//! destination agent pulls the bytes from the source; when it reports them with the source's
//! checksum the move finishes: the new replica becomes NORMAL and the replica it replaces (if
//! any) is removed. A failed or timed-out move removes its CLONING replica and counts against
//! the tablet. Every step re-checks the current state, and finishing twice is harmless.

use crate::model::backend::BackendMembership;
use crate::model::catalog::{Replica, ReplicaState};
use crate::model::ids::{BackendId, MoveId};
use crate::model::moves::{Move, MovePlan, MoveReason, clone_timeout_ms};
use crate::model::state::ClusterState;
use crate::query::moves::{Slots, check_plan};

/// Start the plans that still hold; skip the others (they were made on an older view).
pub fn start_moves(state: &mut ClusterState, now_ms: u64, plans: &[MovePlan]) -> Vec<MoveId> {
    let mut slots = Slots::in_use(state);
    let mut started = Vec::new();
    for plan in plans {
        if check_plan(state, plan, &slots).is_err() {
            continue;
        }
        slots.take(plan);
        let id = MoveId(state.meta.next_move_id);
        state.meta.next_move_id += 1;
        let (bytes, checksum) = state
            .tablets
            .update(&plan.tablet, |tablet| {
                let src = tablet
                    .replicas
                    .iter()
                    .find(|r| r.backend == plan.source)
                    .expect("checked");
                let (bytes, checksum) = (src.bytes, src.checksum);
                tablet.replicas.push(Replica {
                    backend: plan.dest,
                    state: ReplicaState::Cloning,
                    bytes: 0,
                    checksum: None,
                });
                (bytes, checksum)
            })
            .expect("checked");
        let timeout_ms = clone_timeout_ms(&state.meta.settings, bytes);
        state.moves.insert(
            id,
            Move {
                id,
                plan: plan.clone(),
                bytes,
                checksum,
                started_ms: now_ms,
                timeout_ms,
            },
        );
        started.push(id);
    }
    started
}

/// The destination reported the clone. Returns whether the move finished (false: it was
/// already gone, or the bytes did not match and the move was aborted instead).
pub fn finish_move(
    state: &mut ClusterState,
    now_ms: u64,
    id: MoveId,
    bytes: u64,
    checksum: u32,
) -> bool {
    let Some(m) = state.moves.get(&id).cloned() else {
        return false;
    };
    if m.bytes != bytes || m.checksum.is_some_and(|c| c != checksum) {
        let reason = format!(
            "clone to backend {} did not match its source: {bytes} bytes, checksum {checksum:08x}; expected {} bytes, checksum {}",
            m.plan.dest,
            m.bytes,
            m.checksum
                .map(|c| format!("{c:08x}"))
                .unwrap_or_else(|| "unknown".into())
        );
        abort_move(state, now_ms, id, &reason, true);
        return false;
    }
    state.moves.remove(&id);
    let finished = state.tablets.update(&m.plan.tablet, |tablet| {
        let Some(r) = tablet
            .replicas
            .iter_mut()
            .find(|r| r.backend == m.plan.dest && r.state == ReplicaState::Cloning)
        else {
            return false;
        };
        r.state = ReplicaState::Normal;
        r.bytes = bytes;
        r.checksum = Some(checksum);
        if let Some(old) = m.plan.replaces {
            tablet.replicas.retain(|r| r.backend != old);
        }
        tablet.failures = Default::default();
        true
    });
    if finished != Some(true) {
        return false;
    }
    // Any move off a draining backend is drain progress (a dead one's replicas are repaired).
    if let Some(old) = m.plan.replaces
        && let Some(b) = state.backends.get_mut(&old)
        && b.membership == BackendMembership::Decommissioning
    {
        b.drain.tablets_moved += 1;
        b.drain.bytes_moved += bytes;
    }
    true
}

/// Remove a move and its CLONING replica. `failed`: count it against the tablet (a timeout,
/// an error), as opposed to a cancellation. Returns whether the move existed.
pub fn abort_move(
    state: &mut ClusterState,
    now_ms: u64,
    id: MoveId,
    reason: &str,
    failed: bool,
) -> bool {
    let Some(m) = state.moves.remove(&id) else {
        return false;
    };
    state.tablets.update(&m.plan.tablet, |tablet| {
        tablet
            .replicas
            .retain(|r| !(r.backend == m.plan.dest && r.state == ReplicaState::Cloning));
        if failed {
            let f = &mut tablet.failures;
            f.count += 1;
            f.last_reason = reason.to_string();
            f.last_at_ms = now_ms;
            if !f.failed_dests.contains(&m.plan.dest) {
                f.failed_dests.push(m.plan.dest);
            }
        }
    });
    true
}

/// Abort the moves that read from or write to `backend` (it is being dropped).
pub fn forget_backend(state: &mut ClusterState, now_ms: u64, backend: BackendId) {
    let ids: Vec<MoveId> = state
        .moves
        .values()
        .filter(|m| m.plan.source == backend || m.plan.dest == backend)
        .map(|m| m.id)
        .collect();
    for id in ids {
        abort_move(
            state,
            now_ms,
            id,
            &format!("backend {backend} was dropped"),
            false,
        );
    }
}

/// Abort the decommission moves off `backend` (CANCEL DECOMMISSION); moves already finished
/// stay where they are.
pub fn cancel_drain(state: &mut ClusterState, now_ms: u64, backend: BackendId) {
    let ids: Vec<MoveId> = state
        .moves
        .values()
        .filter(|m| m.plan.reason == MoveReason::Decommission && m.plan.replaces == Some(backend))
        .map(|m| m.id)
        .collect();
    for id in ids {
        abort_move(state, now_ms, id, "decommission cancelled", false);
    }
}

#[cfg(test)]
mod tests;
