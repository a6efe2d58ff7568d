//! The AUTO blacklist rules: an AUTO entry goes when its FE's refresher finds every port
//! answering and fewer than `black_host_connect_failures_within_time` failures in the last
//! `black_host_history_sec`. Failure times are stamped at apply (the leader's clock), so every
//! FE counts a window the same way.

use crate::model::blacklist::BlacklistKind;
use crate::model::error::DomainError;
use crate::model::ids::{BackendId, FrontendId};
use crate::model::state::ClusterState;

/// The window and threshold of the AUTO rules, from the settings.
pub(crate) fn window_ms(state: &ClusterState) -> u64 {
    state
        .meta
        .settings
        .values()
        .black_host_history_sec
        .saturating_mul(1000)
}

pub(crate) fn threshold(state: &ClusterState) -> usize {
    state
        .meta
        .settings
        .values()
        .black_host_connect_failures_within_time as usize
}

pub(crate) fn check_known(state: &ClusterState, ids: &[BackendId]) -> Result<(), DomainError> {
    for id in ids {
        if !state.backends.contains_key(id) {
            return Err(match state.tombstones.get(id) {
                Some(t) => DomainError::DroppedBackend {
                    id: *id,
                    addr: t.addr.clone(),
                },
                None => DomainError::UnknownBackend(id.to_string()),
            });
        }
    }
    Ok(())
}

/// Whether `fe`'s AUTO entry for `backend` would be cleared at `now_ms` (the refresher asks
/// before proposing, so a backend that keeps failing costs no writes; the state's own clock
/// only moves with applied entries, so the caller passes its wall clock).
pub fn auto_clearable(
    state: &ClusterState,
    now_ms: u64,
    fe: FrontendId,
    backend: BackendId,
) -> bool {
    let (window, limit) = (window_ms(state), threshold(state));
    state
        .blacklist
        .get(&(fe, backend))
        .is_some_and(|e| e.kind == BlacklistKind::Auto && e.failures_within(now_ms, window) < limit)
}
