//! Transitions of the backend registry (SPEC section 2, "Backends"): add, drop, decommission,
//! cancel, modify. Each function validates the whole statement first and changes nothing when
//! it refuses.

use crate::model::backend::{
    Backend, BackendChange, BackendMembership, BackendRef, FinishedDecommission, HostPort,
    Liveness, Tags, Tombstone,
};
use crate::model::error::DomainError;
use crate::model::ids::BackendId;
use crate::model::state::ClusterState;
use crate::query::backends::{
    decommissioned_tombstone, parse_modify, refuse_decommissioned, resolve, tags_from_properties,
};
use crate::{model, query, transition};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// ALTER SYSTEM ADD BACKEND as proposed before its properties were parsed when planned.
pub fn add_backends(
    state: &mut ClusterState,
    now_ms: u64,
    addrs: &[HostPort],
    props: &[(String, String)],
) -> Result<Vec<BackendId>, DomainError> {
    add_tagged_backends(state, now_ms, addrs, &tags_from_properties(props)?)
}

/// ALTER SYSTEM ADD BACKEND: new ids in statement order, each with `tags`.
pub fn add_tagged_backends(
    state: &mut ClusterState,
    now_ms: u64,
    addrs: &[HostPort],
    tags: &Tags,
) -> Result<Vec<BackendId>, DomainError> {
    query::backends::check_tags(tags)?;
    let mut seen = BTreeSet::new();
    for a in addrs {
        if state.backend_by_addr(a).is_some() || !seen.insert(a) {
            return Err(DomainError::DuplicateBackend(a.clone()));
        }
    }
    let mut ids = Vec::with_capacity(addrs.len());
    for a in addrs {
        let id = BackendId(state.meta.next_backend_id);
        state.meta.next_backend_id += 1;
        state.backends.insert(
            id,
            Backend {
                id,
                addr: a.clone(),
                tags: tags.clone(),
                membership: BackendMembership::Active,
                disable_query: false,
                disable_load: false,
                added_at_ms: now_ms,
                decommission_started_ms: None,
                drain: Default::default(),
                liveness: Liveness::default(),
                draining: None,
            },
        );
        ids.push(id);
    }
    Ok(ids)
}

/// ALTER SYSTEM DROPP BACKEND: removes at once and leaves tombstones; the replicas on it are
/// forgotten. Returns the tombstones and how many tablets lost their last replica.
pub fn dropp_backends(
    state: &mut ClusterState,
    now_ms: u64,
    refs: &[BackendRef],
) -> Result<(Vec<Tombstone>, usize), DomainError> {
    let ids = resolve(state, refs)?;
    let mut out = Vec::with_capacity(ids.len());
    let mut lost = 0;
    for id in ids {
        let (t, l) = drop_backend(state, now_ms, id, None);
        lost += l;
        out.push(t);
    }
    Ok((out, lost))
}

/// Remove a live backend, leaving its tombstone (with the decommission that drained it, if
/// any). Returns the tombstone and how many tablets lost their last replica.
pub(crate) fn drop_backend(
    state: &mut ClusterState,
    now_ms: u64,
    id: BackendId,
    decommission: Option<FinishedDecommission>,
) -> (Tombstone, usize) {
    let b = state.backends.remove(&id).expect("a live backend");
    transition::blacklist::forget_backend(state, id);
    transition::moves::forget_backend(state, now_ms, id);
    let lost = transition::catalog::forget_backend(state, id);
    let t = Tombstone {
        id,
        addr: b.addr,
        dropped_at_ms: now_ms,
        decommission,
    };
    state.tombstones.insert(id, t.clone());
    (t, lost)
}

/// What DECOMMISSION or CANCEL DECOMMISSION did to one backend it named. The SQL answer and
/// `roster node` both render these, so the decision is made once, here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipOutcome {
    /// DECOMMISSION: ACTIVE -> DECOMMISSIONING; CANCEL: DECOMMISSIONING -> ACTIVE.
    Changed,
    /// Already where the statement leads: DECOMMISSIONING for DECOMMISSION, ACTIVE for CANCEL.
    Unchanged(BackendMembership),
    /// DECOMMISSION of a backend whose decommission already finished (the runbook's re-run):
    /// kept DECOMMISSIONED, or dropped by the master (`dropped`).
    AlreadyDecommissioned { dropped: bool },
}

/// ALTER SYSTEM DECOMMISSION BACKEND: ACTIVE -> DECOMMISSIONING, refused up front when the
/// pre-check proves the drain could not finish. The backends named together are planned
/// together (none is a destination for another). Repeating it is harmless and succeeds, also
/// once the decommission finished (DECOMMISSIONED, or dropped by the master); a backend removed
/// by DROPP was not decommissioned and stays an error, as do ids that never existed. The
/// pre-check runs only when some backend would change: a repeat commits to nothing new.
pub fn decommission(
    state: &mut ClusterState,
    now_ms: u64,
    refs: &[BackendRef],
) -> Result<Vec<(BackendId, MembershipOutcome)>, DomainError> {
    let mut named: Vec<(BackendId, MembershipOutcome)> = Vec::with_capacity(refs.len());
    for r in refs {
        let (id, outcome) = match decommissioned_tombstone(state, r) {
            Some(t) => (
                t.id,
                MembershipOutcome::AlreadyDecommissioned { dropped: true },
            ),
            None => {
                let id = resolve(state, std::slice::from_ref(r))?[0];
                let outcome = match state.backends.get(&id).expect("resolved").membership {
                    BackendMembership::Active => MembershipOutcome::Changed,
                    m @ BackendMembership::Decommissioning => MembershipOutcome::Unchanged(m),
                    BackendMembership::Decommissioned => {
                        MembershipOutcome::AlreadyDecommissioned { dropped: false }
                    }
                };
                (id, outcome)
            }
        };
        if !named.iter().any(|(n, _)| *n == id) {
            named.push((id, outcome));
        }
    }
    let leaving: BTreeSet<BackendId> = named
        .iter()
        .filter(|(_, o)| *o == MembershipOutcome::Changed)
        .map(|(id, _)| *id)
        .collect();
    if leaving.is_empty() {
        return Ok(named);
    }
    let blockers = query::drain::precheck(state, &leaving);
    if let Some(b) = blockers.first() {
        return Err(DomainError::DecommissionBlocked {
            backends: leaving
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            count: blockers.len(),
            first: format!(
                "tablet {} of table {} on backend {}: {}",
                b.tablet, b.table, b.backend, b.reason
            ),
        });
    }
    for id in leaving {
        let (tablets, bytes) = query::drain::live_on(state, id);
        let b = state.backends.get_mut(&id).expect("resolved above");
        b.membership = BackendMembership::Decommissioning;
        b.decommission_started_ms = Some(now_ms);
        b.drain = model::backend::DrainProgress {
            tablets_total: tablets,
            bytes_total: bytes,
            ..Default::default()
        };
    }
    Ok(named)
}

/// CANCEL DECOMMISSION BACKEND: DECOMMISSIONING -> ACTIVE. Already ACTIVE is harmless (and
/// said so); DECOMMISSIONED is final, as in CockroachDB, whose recommission refuses a
/// decommissioned node.
pub fn cancel_decommission(
    state: &mut ClusterState,
    now_ms: u64,
    refs: &[BackendRef],
) -> Result<Vec<(BackendId, MembershipOutcome)>, DomainError> {
    let ids = resolve(state, refs)?;
    refuse_decommissioned(state, &ids)?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let m = state.backends.get(&id).expect("resolved above").membership;
        if m == BackendMembership::Decommissioning {
            let b = state.backends.get_mut(&id).expect("resolved above");
            b.membership = BackendMembership::Active;
            b.decommission_started_ms = None;
            transition::moves::cancel_drain(state, now_ms, id);
            out.push((id, MembershipOutcome::Changed));
        } else {
            out.push((id, MembershipOutcome::Unchanged(m)));
        }
    }
    Ok(out)
}

/// ALTER SYSTEM MODIFY BACKEND as proposed before its properties were parsed when planned.
pub fn modify_backends(
    state: &mut ClusterState,
    refs: &[BackendRef],
    props: &[(String, String)],
) -> Result<Vec<BackendId>, DomainError> {
    change_backends(state, refs, &parse_modify(props)?)
}

/// ALTER SYSTEM MODIFY BACKEND ... SET (...), changes applied in the order given. Returns the
/// modified backends.
pub fn change_backends(
    state: &mut ClusterState,
    refs: &[BackendRef],
    changes: &[BackendChange],
) -> Result<Vec<BackendId>, DomainError> {
    query::backends::check_changes(changes)?;
    let ids = resolve(state, refs)?;
    refuse_decommissioned(state, &ids)?;
    for id in &ids {
        let b = state.backends.get_mut(id).expect("resolved above");
        for c in changes {
            match c {
                BackendChange::Location(l) => b.tags.location = l.clone(),
                BackendChange::DisableQuery(v) => transition::node_drain::set_disable_query(b, *v),
                BackendChange::DisableLoad(v) => transition::node_drain::set_disable_load(b, *v),
                BackendChange::Draining(true) => transition::node_drain::drain(b),
                BackendChange::Draining(false) => transition::node_drain::undrain(b),
            }
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests;
