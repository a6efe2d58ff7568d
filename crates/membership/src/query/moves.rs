//! Whether a planned move still holds: sources, destinations and clone slots, checked against
//! the current state when the move starts, so a plan made on a stale view is skipped.

use crate::model::backend::{Backend, BackendMembership};
use crate::model::catalog::{ReplicaState, Tablet};
use crate::model::ids::BackendId;
use crate::model::moves::MovePlan;
use crate::model::settings::Settings;
use crate::model::state::ClusterState;
use crate::query;
use std::collections::BTreeMap;

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
        self.sending.get(&b).copied().unwrap_or(0) < settings.values().clone_send_slots_per_backend
    }

    pub fn can_receive(&self, settings: &Settings, b: BackendId) -> bool {
        self.receiving.get(&b).copied().unwrap_or(0)
            < settings.values().clone_recv_slots_per_backend
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
    query::placement::is_schedulable(dest)
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
