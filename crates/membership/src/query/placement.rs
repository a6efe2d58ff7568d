//! Where new replicas go (SPEC section 4, "Placement rules"): on alive, ACTIVE, load-enabled
//! backends with free capacity in the replica's tag; a tablet's replicas on distinct backends
//! and distinct hosts; the least loaded backend first. Deterministic (ties go to the lower
//! backend id), so every FE applying CREATE TABLE places alike. Cost: O(backends) to rank the
//! candidates from the catalog's index, then about O(log backends) per replica placed.

use crate::model::backend::{Backend, BackendMembership};
use crate::model::catalog::ReplicaAllocation;
use crate::model::error::DomainError;
use crate::model::ids::{BackendId, TabletId};
use crate::model::state::ClusterState;
use crate::query;
use std::collections::{BTreeMap, BTreeSet};

/// Whether a backend may receive a new replica (of any tag).
pub fn is_schedulable(b: &Backend) -> bool {
    let full = b.liveness.total_capacity_bytes > 0 && b.liveness.avail_capacity_bytes == 0;
    b.liveness.alive && b.membership == BackendMembership::Active && !b.disable_load && !full
}

/// Choose backends for each tablet's replicas, following `alloc` tag by tag. Load counts every
/// replica already in the catalog plus the ones placed so far, so tables spread over backends.
pub fn place_tablets(
    state: &ClusterState,
    alloc: &ReplicaAllocation,
    tablets: &[TabletId],
) -> Result<Vec<Vec<BackendId>>, DomainError> {
    let load: BTreeMap<BackendId, usize> = query::catalog::replica_counts(state);
    let by_tag: BTreeMap<&str, Vec<&Backend>> = alloc
        .0
        .keys()
        .map(|tag| {
            let c = state
                .backends
                .values()
                .filter(|b| is_schedulable(b) && b.tags.location == *tag)
                .collect();
            (tag.as_str(), c)
        })
        .collect();
    // Each tag's candidates ordered by (load, id): the least loaded eligible one is the first
    // that is neither chosen nor on a chosen host, a few steps in (not a scan of the tag).
    let mut ranked: BTreeMap<&str, BTreeSet<(usize, BackendId)>> = by_tag
        .iter()
        .map(|(tag, bs)| {
            let r = bs
                .iter()
                .map(|b| (load.get(&b.id).copied().unwrap_or(0), b.id))
                .collect();
            (*tag, r)
        })
        .collect();
    let host_of: BTreeMap<BackendId, &str> = by_tag
        .values()
        .flatten()
        .map(|b| (b.id, b.addr.host.as_str()))
        .collect();
    let mut out = Vec::with_capacity(tablets.len());
    for tablet in tablets {
        let mut chosen: Vec<BackendId> = Vec::with_capacity(alloc.total());
        let mut hosts: BTreeSet<&str> = BTreeSet::new();
        for (tag, n) in &alloc.0 {
            let order = ranked.get_mut(tag.as_str()).expect("one per tag");
            for _ in 0..*n {
                let pick = order
                    .iter()
                    .find(|(_, id)| !chosen.contains(id) && !hosts.contains(host_of[id]))
                    .copied();
                let Some((n_load, id)) = pick else {
                    return Err(not_enough(tag, *tablet, *n, &by_tag[tag.as_str()]));
                };
                chosen.push(id);
                hosts.insert(host_of[&id]);
                order.remove(&(n_load, id));
                order.insert((n_load + 1, id));
            }
        }
        out.push(chosen);
    }
    Ok(out)
}

fn not_enough(tag: &str, tablet: TabletId, needed: usize, eligible: &[&Backend]) -> DomainError {
    let hosts: BTreeSet<&str> = eligible.iter().map(|b| b.addr.host.as_str()).collect();
    let ids: Vec<String> = eligible.iter().map(|b| b.id.to_string()).collect();
    let detail = if eligible.is_empty() {
        String::new()
    } else {
        format!(": [{}] on {} distinct host(s)", ids.join(", "), hosts.len())
    };
    DomainError::NotEnoughBackends {
        tag: tag.to_string(),
        tablet,
        needed,
        eligible: eligible.len(),
        detail,
    }
}
