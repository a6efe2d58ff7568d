//! Finishing decommissions: a backend with no live replica left becomes DECOMMISSIONED.

use crate::model::backend::{BackendMembership, FinishedDecommission};
use crate::model::ids::BackendId;
use crate::model::state::ClusterState;
use crate::query::drain::ready_to_finish;
use crate::transition;

/// Mark drained backends DECOMMISSIONED, and drop them if `drop_backend_after_decommission`;
/// the tombstone keeps what the decommission moved. Returns the backends finished.
pub fn finish(state: &mut ClusterState, now_ms: u64) -> Vec<BackendId> {
    let ids = ready_to_finish(state);
    let drop = state.meta.settings.values().drop_backend_after_decommission;
    for id in &ids {
        let Some(b) = state.backends.get_mut(id) else {
            continue;
        };
        b.membership = BackendMembership::Decommissioned;
        if drop {
            let record = FinishedDecommission {
                started_ms: b.decommission_started_ms,
                drain: b.drain.clone(),
            };
            transition::registry::drop_backend(state, now_ms, *id, Some(record));
        }
    }
    ids
}
