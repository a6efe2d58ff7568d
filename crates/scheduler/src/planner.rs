//! The tablet planner: a pure, deterministic function of the replicated state and the time
//! that decides which replicas to move, by priority: repair (a tablet counts fewer replicas
//! than its allocation; a replica on a backend dead for `tablet_repair_delay_second` no longer
//! counts) > decommission (replicas on DECOMMISSIONING backends) > balance (replica counts per
//! backend within a tag, to `balance_load_score_threshold`). Every plan respects the placement
//! rules (distinct backends and hosts, the replica's tag, schedulable ACTIVE destinations) and
//! the per-backend clone slots, counting moves in flight. Sources are any alive holder of a
//! NORMAL replica, the least busy first, so drains read from every peer, not only from the
//! leaving backend. A tablet whose clone failed waits `model::moves::retry_backoff_ms` and then
//! prefers destinations that have not failed it.
//!
//! Cost: O(tablets × (replicas + backends)) per call.

use roster_membership::model::catalog::{ReplicaState, Tablet};
use roster_membership::model::moves::{MovePlan, MoveReason};
use roster_membership::query::moves::Slots;
use roster_membership::{
    Backend, BackendId, BackendMembership, ClusterState, TabletId, model, query,
};
use std::collections::{BTreeMap, BTreeSet};

struct Ctx<'a> {
    state: &'a ClusterState,
    now_ms: u64,
    repair_delay_ms: u64,
    slots: Slots,
    /// Replicas per backend, including the ones planned in this call.
    load: BTreeMap<BackendId, usize>,
    moving: BTreeSet<TabletId>,
}

impl<'a> Ctx<'a> {
    fn backend(&self, id: BackendId) -> Option<&'a Backend> {
        self.state.backends.get(&id)
    }

    /// A replica on a backend gone, or dead for longer than the repair delay, no longer counts.
    fn dead_past_delay(&self, id: BackendId) -> bool {
        match self.backend(id) {
            None => true,
            Some(b) if b.liveness.alive => false,
            Some(b) => b
                .liveness
                .dead_since_ms
                .is_none_or(|t| t.saturating_add(self.repair_delay_ms) <= self.now_ms),
        }
    }

    fn tag_of(&self, id: BackendId) -> Option<&'a str> {
        self.backend(id).map(|b| b.tags.location.as_str())
    }

    fn pick_source(&self, tablet: &Tablet) -> Option<BackendId> {
        let settings = &self.state.meta.settings;
        tablet
            .replicas
            .iter()
            .filter(|r| query::moves::is_source(self.state, tablet, r.backend))
            .filter(|r| self.slots.can_send(settings, r.backend))
            .min_by_key(|r| {
                (
                    self.slots.sending.get(&r.backend).copied().unwrap_or(0),
                    r.backend,
                )
            })
            .map(|r| r.backend)
    }

    fn pick_dest(
        &self,
        tablet: &Tablet,
        tag: &str,
        replaces: Option<BackendId>,
    ) -> Option<BackendId> {
        let settings = &self.state.meta.settings;
        self.state
            .backends
            .values()
            .filter(|b| b.tags.location == tag && b.membership == BackendMembership::Active)
            .filter(|b| query::moves::may_receive(self.state, tablet, b, replaces))
            .filter(|b| self.slots.can_receive(settings, b.id))
            .min_by_key(|b| {
                (
                    tablet.failures.failed_dests.contains(&b.id),
                    self.load.get(&b.id).copied().unwrap_or(0),
                    b.id,
                )
            })
            .map(|b| b.id)
    }

    fn take(&mut self, plan: &MovePlan) {
        self.slots.take(plan);
        *self.load.entry(plan.dest).or_insert(0) += 1;
        if let Some(r) = plan.replaces
            && let Some(n) = self.load.get_mut(&r)
        {
            *n = n.saturating_sub(1);
        }
        self.moving.insert(plan.tablet);
    }

    fn in_backoff(&self, tablet: &Tablet) -> bool {
        let f = &tablet.failures;
        f.count > 0
            && self.now_ms
                < f.last_at_ms
                    .saturating_add(model::moves::retry_backoff_ms(f.count))
    }

    /// The tag short of replicas most, if the tablet counts fewer than its allocation.
    fn repair_tag(&self, tablet: &Tablet) -> Option<&'a str> {
        let table = self.state.tables.get(&tablet.table)?;
        let counted = |b: BackendId| !self.dead_past_delay(b);
        let mut deficit: Vec<(usize, &'a str)> = table
            .allocation
            .0
            .iter()
            .map(|(tag, want)| {
                let have = tablet
                    .replicas
                    .iter()
                    .filter(|r| r.state != ReplicaState::Cloning && counted(r.backend))
                    .filter(|r| self.tag_of(r.backend) == Some(tag.as_str()))
                    .count();
                (want.saturating_sub(have), tag.as_str())
            })
            .filter(|(d, _)| *d > 0)
            .collect();
        // Largest deficit first; ties by tag name.
        deficit.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
        deficit.first().map(|(_, tag)| *tag)
    }

    /// A replica whose tag has more replicas than the allocation wants (its backend's tag was
    /// changed): the one a repair in another tag replaces, so that the tablet is relocated
    /// rather than over-replicated.
    fn surplus(&self, tablet: &Tablet) -> Option<BackendId> {
        let table = self.state.tables.get(&tablet.table)?;
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        tablet
            .replicas
            .iter()
            .filter(|r| r.state != ReplicaState::Cloning && !self.dead_past_delay(r.backend))
            .map(|r| r.backend)
            .find(|b| {
                let tag = self.tag_of(*b).unwrap_or("");
                let n = seen.entry(tag).or_insert(0);
                *n += 1;
                *n > table.allocation.0.get(tag).copied().unwrap_or(0)
            })
    }

    /// The repair this tablet needs, if it can be planned now.
    fn repair(&self, tablet: &Tablet) -> Option<MovePlan> {
        let tag = self.repair_tag(tablet)?;
        let replaces = tablet
            .replicas
            .iter()
            .map(|r| r.backend)
            .find(|b| self.dead_past_delay(*b))
            .or_else(|| self.surplus(tablet));
        Some(MovePlan {
            tablet: tablet.id,
            source: self.pick_source(tablet)?,
            dest: self.pick_dest(tablet, tag, replaces)?,
            replaces,
            reason: MoveReason::Repair,
        })
    }

    /// The move off a DECOMMISSIONING backend this tablet needs, if any.
    fn drain(&self, tablet: &Tablet) -> Option<MovePlan> {
        let leaving = tablet.replicas.iter().map(|r| r.backend).find(|b| {
            self.backend(*b)
                .is_some_and(|x| x.membership == BackendMembership::Decommissioning)
        })?;
        let tag = self.tag_of(leaving)?;
        Some(MovePlan {
            tablet: tablet.id,
            source: self.pick_source(tablet)?,
            dest: self.pick_dest(tablet, tag, Some(leaving))?,
            replaces: Some(leaving),
            reason: MoveReason::Decommission,
        })
    }

    fn candidates(&self) -> Vec<&'a Tablet> {
        self.state
            .tablets
            .values()
            .filter(|t| query::catalog::is_live(self.state, t))
            .filter(|t| !self.moving.contains(&t.id) && !self.in_backoff(t))
            .collect()
    }

    /// One balance move per tag: from the most loaded schedulable backend above
    /// avg × (1 + threshold) to the least loaded below avg × (1 − threshold).
    fn balance(&mut self) -> Vec<MovePlan> {
        let threshold = self
            .state
            .meta
            .settings
            .get("balance_load_score_threshold")
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.1);
        let tags: BTreeSet<&str> = self
            .state
            .backends
            .values()
            .map(|b| b.tags.location.as_str())
            .collect();
        let mut out = Vec::new();
        for tag in tags {
            let members: Vec<&Backend> = self
                .state
                .backends
                .values()
                .filter(|b| b.tags.location == tag && query::placement::is_schedulable(b))
                .collect();
            if members.len() < 2 {
                continue;
            }
            let count = |b: &Backend| self.load.get(&b.id).copied().unwrap_or(0);
            let total: usize = members.iter().map(|b| count(b)).sum();
            let avg = total as f64 / members.len() as f64;
            let high = members
                .iter()
                .max_by_key(|b| (count(b), std::cmp::Reverse(b.id)));
            let low = members.iter().min_by_key(|b| (count(b), b.id));
            let (Some(high), Some(low)) = (high, low) else {
                continue;
            };
            // A move must strictly even things out, or integer counts would swap forever.
            if (count(high) as f64) <= avg * (1.0 + threshold)
                || (count(low) as f64) >= avg * (1.0 - threshold)
                || count(high) < count(low) + 2
            {
                continue;
            }
            let plan = self.candidates().into_iter().find_map(|t| {
                let on_high = t
                    .replicas
                    .iter()
                    .any(|r| r.backend == high.id && r.state == ReplicaState::Normal);
                if !on_high
                    || !query::moves::may_receive(self.state, t, low, Some(high.id))
                    || !self.slots.can_receive(&self.state.meta.settings, low.id)
                {
                    return None;
                }
                Some(MovePlan {
                    tablet: t.id,
                    source: self.pick_source(t)?,
                    dest: low.id,
                    replaces: Some(high.id),
                    reason: MoveReason::Balance,
                })
            });
            if let Some(p) = plan {
                self.take(&p);
                out.push(p);
            }
        }
        out
    }
}

/// The moves to start now, in priority order.
pub fn plan(state: &ClusterState, now_ms: u64) -> Vec<MovePlan> {
    let settings = &state.meta.settings;
    if settings.values().disable_tablet_scheduler {
        return Vec::new();
    }
    let mut ctx = Ctx {
        state,
        now_ms,
        repair_delay_ms: settings
            .values()
            .tablet_repair_delay_second
            .saturating_mul(1000),
        slots: Slots::in_use(state),
        load: query::catalog::replica_counts(state),
        moving: state.moves.values().map(|m| m.plan.tablet).collect(),
    };
    let mut out = Vec::new();
    let mut unhealthy = false;
    for t in ctx.candidates() {
        if ctx.repair_tag(t).is_none() {
            continue;
        }
        unhealthy = true;
        if let Some(p) = ctx.repair(t) {
            ctx.take(&p);
            out.push(p);
        }
    }
    for t in ctx.candidates() {
        if let Some(p) = ctx.drain(t) {
            ctx.take(&p);
            out.push(p);
        }
    }
    // Balance only a calm cluster: nothing moving, nothing to repair or drain.
    let draining = state
        .backends
        .values()
        .any(|b| b.membership == BackendMembership::Decommissioning);
    if out.is_empty()
        && state.moves.is_empty()
        && !unhealthy
        && !draining
        && !settings.values().disable_balance
    {
        out = ctx.balance();
    }
    out
}

#[cfg(test)]
mod tests;
