//! Transitions of the backend registry (SPEC section 2, "Backends"). Each function validates the
//! whole statement first and changes nothing when it refuses.

use crate::backend::{
    Backend, BackendMembership, BackendRef, FinishedDecommission, HostPort, Liveness, Tags,
    Tombstone,
};
use crate::error::DomainError;
use crate::ids::{BackendId, FrontendId};
use crate::state::ClusterState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

const ADD_PROPERTIES: &str =
    "tag.location, tag.compute_group_name, tag.public_endpoint, tag.private_endpoint";
const MODIFY_PROPERTIES: &str = "tag.location, disable_query, disable_load, is_draining";

/// Tag values: 1-128 letters, digits, '_', '-', '.', ':' or '/'.
pub fn is_valid_tag(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 128
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:/".contains(c))
}

fn check_tag_value(key: &str, value: &str) -> Result<String, DomainError> {
    if is_valid_tag(value) {
        Ok(value.to_string())
    } else {
        Err(DomainError::InvalidProperty {
            key: key.to_string(),
            value: value.to_string(),
            reason: "expected 1-128 characters of letters, digits, '_', '-', '.', ':' or '/'"
                .to_string(),
        })
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool, DomainError> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(DomainError::InvalidProperty {
            key: key.to_string(),
            value: value.to_string(),
            reason: "expected true or false".to_string(),
        }),
    }
}

/// Tags from ADD BACKEND's PROPERTIES; unknown keys are refused.
pub fn tags_from_properties(props: &[(String, String)]) -> Result<Tags, DomainError> {
    let mut tags = Tags::default();
    for (k, v) in props {
        match k.to_ascii_lowercase().as_str() {
            "tag.location" => tags.location = check_tag_value(k, v)?,
            "tag.compute_group_name" => tags.compute_group_name = Some(check_tag_value(k, v)?),
            "tag.public_endpoint" => tags.public_endpoint = Some(check_tag_value(k, v)?),
            "tag.private_endpoint" => tags.private_endpoint = Some(check_tag_value(k, v)?),
            _ => {
                return Err(DomainError::UnknownProperty {
                    key: k.clone(),
                    valid: ADD_PROPERTIES.to_string(),
                });
            }
        }
    }
    Ok(tags)
}

/// ALTER SYSTEM ADD BACKEND: new ids in statement order.
pub fn add_backends(
    state: &mut ClusterState,
    now_ms: u64,
    addrs: &[HostPort],
    props: &[(String, String)],
) -> Result<Vec<BackendId>, DomainError> {
    let tags = tags_from_properties(props)?;
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

/// Resolve statement targets to live backends, in order, without duplicates.
pub fn resolve(state: &ClusterState, refs: &[BackendRef]) -> Result<Vec<BackendId>, DomainError> {
    let mut out: Vec<BackendId> = Vec::with_capacity(refs.len());
    for r in refs {
        let id = match r {
            BackendRef::Id(id) => {
                if state.backends.contains_key(id) {
                    *id
                } else if let Some(t) = state.tombstones.get(id) {
                    return Err(DomainError::DroppedBackend {
                        id: *id,
                        addr: t.addr.clone(),
                    });
                } else {
                    return Err(DomainError::UnknownBackend(r.to_string()));
                }
            }
            BackendRef::Addr(a) => match state.backend_by_addr(a) {
                Some(b) => b.id,
                None => return Err(DomainError::UnknownBackend(r.to_string())),
            },
        };
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(out)
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
    crate::blacklist::forget_backend(state, id);
    crate::moves::forget_backend(state, now_ms, id);
    let lost = crate::catalog::forget_backend(state, id);
    let t = Tombstone {
        id,
        addr: b.addr,
        dropped_at_ms: now_ms,
        decommission,
    };
    state.tombstones.insert(id, t.clone());
    (t, lost)
}

/// DECOMMISSIONED is final: statements that would change such a backend are refused.
fn refuse_decommissioned(state: &ClusterState, ids: &[BackendId]) -> Result<(), DomainError> {
    match ids.iter().find(|id| {
        state.backends.get(id).map(|b| b.membership) == Some(BackendMembership::Decommissioned)
    }) {
        Some(id) => Err(DomainError::AlreadyDecommissioned(*id)),
        None => Ok(()),
    }
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

/// The tombstone of a backend the master decommissioned and dropped, named by id or address
/// (the latest one of that address, if no live backend has it now).
pub fn decommissioned_tombstone<'a>(
    state: &'a ClusterState,
    r: &BackendRef,
) -> Option<&'a Tombstone> {
    let t = match r {
        BackendRef::Id(id) => state.tombstones.get(id),
        BackendRef::Addr(a) if state.backend_by_addr(a).is_none() => state
            .tombstones
            .as_map()
            .values()
            .rev()
            .find(|t| &t.addr == a),
        BackendRef::Addr(_) => None,
    };
    t.filter(|t| t.decommission.is_some())
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
    let blockers = crate::drain::precheck(state, &leaving);
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
        let (tablets, bytes) = crate::drain::live_on(state, id);
        let b = state.backends.get_mut(&id).expect("resolved above");
        b.membership = BackendMembership::Decommissioning;
        b.decommission_started_ms = Some(now_ms);
        b.drain = crate::backend::DrainProgress {
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
            crate::moves::cancel_drain(state, now_ms, id);
            out.push((id, MembershipOutcome::Changed));
        } else {
            out.push((id, MembershipOutcome::Unchanged(m)));
        }
    }
    Ok(out)
}

/// A validated MODIFY BACKEND change.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Change {
    Location(String),
    DisableQuery(bool),
    DisableLoad(bool),
    Draining(bool),
}

fn parse_modify(props: &[(String, String)]) -> Result<Vec<Change>, DomainError> {
    if props.is_empty() {
        return Err(DomainError::UnknownProperty {
            key: String::new(),
            valid: MODIFY_PROPERTIES.to_string(),
        });
    }
    props
        .iter()
        .map(|(k, v)| match k.to_ascii_lowercase().as_str() {
            "tag.location" => Ok(Change::Location(check_tag_value(k, v)?)),
            "disable_query" => Ok(Change::DisableQuery(parse_bool(k, v)?)),
            "disable_load" => Ok(Change::DisableLoad(parse_bool(k, v)?)),
            "is_draining" => Ok(Change::Draining(parse_bool(k, v)?)),
            _ => Err(DomainError::UnknownProperty {
                key: k.clone(),
                valid: MODIFY_PROPERTIES.to_string(),
            }),
        })
        .collect()
}

/// MODIFY BACKEND's properties are valid (checked before proposing, and again at apply).
pub fn check_modify_properties(props: &[(String, String)]) -> Result<(), DomainError> {
    parse_modify(props).map(|_| ())
}

/// ALTER SYSTEM MODIFY BACKEND ... SET (...), changes applied in the order given. Returns the
/// modified backends.
pub fn modify_backends(
    state: &mut ClusterState,
    refs: &[BackendRef],
    props: &[(String, String)],
) -> Result<Vec<BackendId>, DomainError> {
    let changes = parse_modify(props)?;
    let ids = resolve(state, refs)?;
    refuse_decommissioned(state, &ids)?;
    for id in &ids {
        let b = state.backends.get_mut(id).expect("resolved above");
        for c in &changes {
            match c {
                Change::Location(l) => b.tags.location = l.clone(),
                Change::DisableQuery(v) => crate::node_drain::set_disable_query(b, *v),
                Change::DisableLoad(v) => crate::node_drain::set_disable_load(b, *v),
                Change::Draining(true) => crate::node_drain::drain(b),
                Change::Draining(false) => crate::node_drain::undrain(b),
            }
        }
    }
    Ok(ids)
}

/// Whether a frontend id may join: ids that were members once and are not now are never reused.
pub fn check_frontend_join(
    state: &ClusterState,
    id: FrontendId,
    current_members: &BTreeSet<FrontendId>,
) -> Result<(), DomainError> {
    if state.meta.frontends_ever.contains(&id) && !current_members.contains(&id) {
        return Err(DomainError::ReusedFrontendId(id));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
