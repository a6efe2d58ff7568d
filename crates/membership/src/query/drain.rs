//! Draining backends: the pre-check that proves a decommission can finish (run when
//! DECOMMISSION is applied, and by EXPLAIN), the blockers of a running one, and which are ready
//! to finish once no live replica is left. Replicas of recycle-bin tables do not count: they
//! are abandoned with the backend, as in Doris.

use crate::model::backend::BackendMembership;
use crate::model::catalog::{ReplicaState, Tablet};
use crate::model::ids::{BackendId, TabletId};
use crate::model::moves::expected_clone_ms;
use crate::model::state::ClusterState;
use crate::query;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Why one tablet keeps a backend from draining.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocker {
    pub tablet: TabletId,
    pub table: String,
    pub backend: BackendId,
    pub reason: String,
}

pub(crate) fn table_name(state: &ClusterState, t: &Tablet) -> String {
    state
        .tables
        .get(&t.table)
        .map(|x| x.name.clone())
        .unwrap_or_default()
}

/// Live replicas on a backend and their bytes (TabletsLeft, BytesLeft).
pub fn live_on(state: &ClusterState, backend: BackendId) -> (u64, u64) {
    state
        .tablets
        .on(backend)
        .filter_map(|id| state.tablets.get(&id))
        .filter(|t| query::catalog::is_live(state, t))
        .flat_map(|t| &t.replicas)
        .filter(|r| r.backend == backend)
        .fold((0, 0), |(n, b), r| (n + 1, b + r.bytes))
}

/// The live tablets with a replica on any of `backends`, in id order (from the index: the
/// cost is the replicas on them, not the catalog).
fn live_tablets_on<'a>(
    state: &'a ClusterState,
    backends: &BTreeSet<BackendId>,
) -> impl Iterator<Item = &'a Tablet> {
    let ids: BTreeSet<TabletId> = backends.iter().flat_map(|b| state.tablets.on(*b)).collect();
    ids.into_iter()
        .filter_map(|id| state.tablets.get(&id))
        .filter(|t| query::catalog::is_live(state, t))
}

/// Why the replicas of `tablet` on `leaving` backends cannot all be re-created elsewhere, if
/// they cannot: a destination per replica (same tag, schedulable, not leaving, distinct
/// backends and hosts from the replicas that stay) and a live source.
pub(crate) fn tablet_blocker(
    state: &ClusterState,
    tablet: &Tablet,
    leaving: &BTreeSet<BackendId>,
) -> Option<(BackendId, String)> {
    // A move in flight will remove the replica it replaces: judge the tablet after it.
    let replaced: BTreeSet<BackendId> = state
        .moves
        .values()
        .filter(|m| m.plan.tablet == tablet.id)
        .filter_map(|m| m.plan.replaces)
        .collect();
    let going: Vec<BackendId> = tablet
        .replicas
        .iter()
        .map(|r| r.backend)
        .filter(|b| leaving.contains(b) && !replaced.contains(b))
        .collect();
    let first = *going.first()?;
    if !tablet.replicas.iter().any(|r| {
        r.state == ReplicaState::Normal
            && state
                .backends
                .get(&r.backend)
                .is_some_and(|b| b.liveness.alive)
    }) {
        return Some((
            first,
            "no live source: no NORMAL replica is on an alive backend".to_string(),
        ));
    }
    let mut hosts: BTreeSet<&str> = tablet
        .replicas
        .iter()
        .filter(|r| !leaving.contains(&r.backend) && !replaced.contains(&r.backend))
        .filter_map(|r| state.backends.get(&r.backend))
        .map(|b| b.addr.host.as_str())
        .collect();
    let holders: BTreeSet<BackendId> = tablet
        .replicas
        .iter()
        .map(|r| r.backend)
        .filter(|b| !replaced.contains(b))
        .collect();
    for b in going {
        let tag = state
            .backends
            .get(&b)
            .map(|x| x.tags.location.as_str())
            .unwrap_or("default");
        // Lazily: the first fit usually comes early, and this runs for every tablet leaving.
        let in_tag = || {
            state
                .backends
                .values()
                .filter(move |x| x.tags.location == tag && !leaving.contains(&x.id))
        };
        let pick = in_tag().find(|x| {
            query::placement::is_schedulable(x)
                && !holders.contains(&x.id)
                && !hosts.contains(x.addr.host.as_str())
        });
        match pick {
            Some(x) => {
                hosts.insert(x.addr.host.as_str());
            }
            None => {
                let usable = in_tag()
                    .filter(|x| query::placement::is_schedulable(x))
                    .count();
                return Some((
                    b,
                    format!(
                        "no destination with tag {{\"location\" : \"{tag}\"}}: {usable} other schedulable backend(s) in the tag, and each already holds a replica of the tablet or shares a host with one"
                    ),
                ));
            }
        }
    }
    None
}

/// Everything that would keep `leaving` (together with the backends already decommissioning)
/// from draining: per-tablet placement and sources, and free capacity per tag.
pub fn precheck(state: &ClusterState, leaving: &BTreeSet<BackendId>) -> Vec<Blocker> {
    let mut all: BTreeSet<BackendId> = leaving.clone();
    all.extend(
        state
            .backends
            .values()
            .filter(|b| b.membership == BackendMembership::Decommissioning)
            .map(|b| b.id),
    );
    let mut out = Vec::new();
    let mut bytes_per_tag: BTreeMap<String, (u64, TabletId, BackendId, String)> = BTreeMap::new();
    for t in live_tablets_on(state, &all) {
        if let Some((backend, reason)) = tablet_blocker(state, t, &all) {
            out.push(Blocker {
                tablet: t.id,
                table: table_name(state, t),
                backend,
                reason,
            });
            continue;
        }
        for r in t.replicas.iter().filter(|r| all.contains(&r.backend)) {
            if let Some(b) = state.backends.get(&r.backend) {
                let e = bytes_per_tag.entry(b.tags.location.clone()).or_insert((
                    0,
                    t.id,
                    b.id,
                    table_name(state, t),
                ));
                e.0 += r.bytes;
            }
        }
    }
    for (tag, (bytes, tablet, backend, table)) in bytes_per_tag {
        let dests: Vec<_> = state
            .backends
            .values()
            .filter(|b| {
                b.tags.location == tag
                    && !all.contains(&b.id)
                    && query::placement::is_schedulable(b)
            })
            .collect();
        // Only judge capacity when the destinations have reported it.
        if dests.iter().all(|b| b.liveness.total_capacity_bytes > 0) {
            let free: u64 = dests.iter().map(|b| b.liveness.avail_capacity_bytes).sum();
            if bytes > free {
                out.push(Blocker {
                    tablet,
                    table,
                    backend,
                    reason: format!(
                        "not enough free capacity in tag {{\"location\" : \"{tag}\"}}: {bytes} bytes to move, {free} bytes free on the destinations"
                    ),
                });
            }
        }
    }
    out
}

/// Blockers of the running decommissions, for SHOW DECOMMISSION BLOCKERS: tablets that cannot
/// be placed or have no source, clones that failed, and clones running longer than expected.
pub fn blockers(state: &ClusterState, now_ms: u64) -> Vec<Blocker> {
    let leaving: BTreeSet<BackendId> = state
        .backends
        .values()
        .filter(|b| b.membership == BackendMembership::Decommissioning)
        .map(|b| b.id)
        .collect();
    let mut out = Vec::new();
    for t in live_tablets_on(state, &leaving) {
        let Some(on) = t
            .replicas
            .iter()
            .map(|r| r.backend)
            .find(|b| leaving.contains(b))
        else {
            continue;
        };
        let moving = state.moves.values().find(|m| m.plan.tablet == t.id);
        let reason = if let Some(m) = moving {
            let elapsed_ms = now_ms.saturating_sub(m.started_ms);
            let expected_ms = expected_clone_ms(&state.meta.settings, m.bytes);
            (elapsed_ms > expected_ms).then(|| {
                format!(
                    "clone to backend {} from backend {} has run {} s without finishing (times out after {} s){}",
                    m.plan.dest,
                    m.plan.source,
                    elapsed_ms / 1000,
                    m.timeout_ms / 1000,
                    failures_note(t)
                )
            })
        } else if let Some((_, reason)) = tablet_blocker(state, t, &leaving) {
            Some(reason)
        } else if t.failures.count > 0 {
            Some(format!(
                "clone failed {} time(s), waiting to retry; last: {}",
                t.failures.count, t.failures.last_reason
            ))
        } else {
            None
        };
        if let Some(reason) = reason {
            out.push(Blocker {
                tablet: t.id,
                table: table_name(state, t),
                backend: on,
                reason,
            });
        }
    }
    out
}

pub(crate) fn failures_note(t: &Tablet) -> String {
    if t.failures.count == 0 {
        String::new()
    } else {
        format!(
            "; failed {} time(s) before, last: {}",
            t.failures.count, t.failures.last_reason
        )
    }
}

/// DECOMMISSIONING backends with no live replica and no move reading from them.
pub fn ready_to_finish(state: &ClusterState) -> Vec<BackendId> {
    state
        .backends
        .values()
        .filter(|b| b.membership == BackendMembership::Decommissioning)
        .filter(|b| live_on(state, b.id).0 == 0)
        .filter(|b| {
            !state
                .moves
                .values()
                .any(|m| m.plan.source == b.id || m.plan.replaces == Some(b.id))
        })
        .map(|b| b.id)
        .collect()
}
