//! Replica moves: persisted, resumable procedures, make before break. Starting a move adds a
//! CLONING replica on the destination; the destination agent pulls the bytes from the source;
//! when it reports them with the source's checksum the move finishes: the new replica becomes
//! NORMAL and the replica it replaces (if any) is removed. A failed or timed-out move removes
//! its CLONING replica and counts against the tablet. Every step re-checks the current state,
//! so a plan made on a stale view is skipped, and finishing twice is harmless.

use crate::backend::{Backend, BackendMembership};
use crate::catalog::{Replica, ReplicaState, Tablet};
use crate::ids::{BackendId, MoveId, TabletId};
use crate::placement;
use crate::settings::Settings;
use crate::state::ClusterState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Doris estimates a clone's duration at 5 MB/s; the timeout is clamped to the settings.
pub const ESTIMATED_CLONE_BYTES_PER_SEC: u64 = 5 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum MoveReason {
    /// A tablet has fewer counted replicas than its allocation.
    Repair,
    /// A replica on a DECOMMISSIONING backend is re-created elsewhere.
    Decommission,
    /// A replica moves from a loaded backend to an emptier one of its tag.
    Balance,
}

impl MoveReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            MoveReason::Repair => "REPAIR",
            MoveReason::Decommission => "DECOMMISSION",
            MoveReason::Balance => "BALANCE",
        }
    }
}

/// What the planner proposes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovePlan {
    pub tablet: TabletId,
    /// A backend holding a NORMAL replica to copy from.
    pub source: BackendId,
    pub dest: BackendId,
    /// The replica removed once the new one is NORMAL (None: a missing replica is added).
    pub replaces: Option<BackendId>,
    pub reason: MoveReason,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    pub id: MoveId,
    pub plan: MovePlan,
    /// Size and checksum of the source replica when the move started.
    pub bytes: u64,
    pub checksum: Option<u32>,
    pub started_ms: u64,
    pub timeout_ms: u64,
}

impl Move {
    pub fn deadline_ms(&self) -> u64 {
        self.started_ms.saturating_add(self.timeout_ms)
    }
}

/// The rate a clone is expected to reach: Doris's 5 MB/s estimate, or the per-stream limit
/// `clone_rate_limit_bytes_per_sec` when that is lower (a limited clone cannot go faster).
pub fn expected_clone_rate_bytes_per_sec(settings: &Settings) -> u64 {
    match settings.u64("clone_rate_limit_bytes_per_sec") {
        0 => ESTIMATED_CLONE_BYTES_PER_SEC,
        limit => limit.min(ESTIMATED_CLONE_BYTES_PER_SEC),
    }
}

/// How long a healthy clone of `bytes` may run before it shows as a blocker: its duration at
/// the expected rate, plus half again and 2 s for connecting and verifying the checksum.
pub fn expected_clone_ms(settings: &Settings, bytes: u64) -> u64 {
    let rate = expected_clone_rate_bytes_per_sec(settings);
    let ms = bytes.saturating_mul(1000) / rate;
    ms.saturating_add(ms / 2).saturating_add(2000)
}

/// The timeout of a clone of `bytes`: its duration at the expected rate, clamped to
/// [`min_clone_task_timeout_sec`, `max_clone_task_timeout_sec`].
pub fn clone_timeout_ms(settings: &Settings, bytes: u64) -> u64 {
    let min = settings.u64("min_clone_task_timeout_sec");
    let max = settings.u64("max_clone_task_timeout_sec").max(min);
    let estimate = bytes.div_ceil(expected_clone_rate_bytes_per_sec(settings));
    estimate.clamp(min, max).saturating_mul(1000)
}

/// Clones each backend is sending and receiving now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Slots {
    pub sending: BTreeMap<BackendId, u64>,
    pub receiving: BTreeMap<BackendId, u64>,
}

impl Slots {
    pub fn in_use(state: &ClusterState) -> Slots {
        let mut s = Slots::default();
        for m in state.moves.values() {
            s.take(&m.plan);
        }
        s
    }

    pub fn take(&mut self, p: &MovePlan) {
        *self.sending.entry(p.source).or_insert(0) += 1;
        *self.receiving.entry(p.dest).or_insert(0) += 1;
    }

    pub fn can_send(&self, settings: &Settings, b: BackendId) -> bool {
        self.sending.get(&b).copied().unwrap_or(0) < settings.u64("clone_send_slots_per_backend")
    }

    pub fn can_receive(&self, settings: &Settings, b: BackendId) -> bool {
        self.receiving.get(&b).copied().unwrap_or(0) < settings.u64("clone_recv_slots_per_backend")
    }
}

/// Whether a backend can serve as a clone source for the tablet: alive, holding it NORMAL.
pub fn is_source(state: &ClusterState, tablet: &Tablet, b: BackendId) -> bool {
    state.backends.get(&b).is_some_and(|x| x.liveness.alive)
        && tablet
            .replicas
            .iter()
            .any(|r| r.backend == b && r.state == ReplicaState::Normal)
}

/// Whether `dest` may receive a new replica of `tablet`, whose replica on `replaces` (if any)
/// will go: schedulable, not holding the tablet, on a host no staying replica uses.
pub fn may_receive(
    state: &ClusterState,
    tablet: &Tablet,
    dest: &Backend,
    replaces: Option<BackendId>,
) -> bool {
    placement::is_schedulable(dest)
        && !tablet.replicas.iter().any(|r| r.backend == dest.id)
        && !tablet
            .replicas
            .iter()
            .filter(|r| Some(r.backend) != replaces)
            .filter_map(|r| state.backends.get(&r.backend))
            .any(|b| b.addr.host == dest.addr.host)
}

/// Why `plan` cannot start in `state` with `slots` taken, if it cannot.
pub fn check_plan(state: &ClusterState, plan: &MovePlan, slots: &Slots) -> Result<(), String> {
    let settings = &state.meta.settings;
    let tablet = state
        .tablets
        .get(&plan.tablet)
        .ok_or_else(|| format!("tablet {} no longer exists", plan.tablet))?;
    if state.moves.values().any(|m| m.plan.tablet == plan.tablet) {
        return Err(format!("tablet {} is already moving", plan.tablet));
    }
    let dest = state
        .backends
        .get(&plan.dest)
        .ok_or_else(|| format!("backend {} no longer exists", plan.dest))?;
    if dest.membership != BackendMembership::Active
        || !may_receive(state, tablet, dest, plan.replaces)
    {
        return Err(format!(
            "backend {} cannot receive tablet {}",
            plan.dest, plan.tablet
        ));
    }
    if !is_source(state, tablet, plan.source) {
        return Err(format!(
            "backend {} is not a live source of tablet {}",
            plan.source, plan.tablet
        ));
    }
    if let Some(r) = plan.replaces
        && !tablet.replicas.iter().any(|x| x.backend == r)
    {
        return Err(format!(
            "backend {r} holds no replica of tablet {}",
            plan.tablet
        ));
    }
    if !slots.can_send(settings, plan.source) || !slots.can_receive(settings, plan.dest) {
        return Err("no free clone slot".to_string());
    }
    Ok(())
}

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
        let tablet = state.tablets.get_mut(&plan.tablet).expect("checked");
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
    let Some(tablet) = state.tablets.get_mut(&m.plan.tablet) else {
        return false;
    };
    if let Some(r) = tablet
        .replicas
        .iter_mut()
        .find(|r| r.backend == m.plan.dest && r.state == ReplicaState::Cloning)
    {
        r.state = ReplicaState::Normal;
        r.bytes = bytes;
        r.checksum = Some(checksum);
    } else {
        return false;
    }
    if let Some(old) = m.plan.replaces {
        tablet.replicas.retain(|r| r.backend != old);
    }
    tablet.failures = Default::default();
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
    if let Some(tablet) = state.tablets.get_mut(&m.plan.tablet) {
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
    }
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

/// How long a tablet waits after its `count`-th failed clone before the next try.
pub fn retry_backoff_ms(count: u32) -> u64 {
    1000u64 << count.min(6)
}
