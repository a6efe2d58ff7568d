//! Which replica of a tablet an FE would send a query to (SPEC sections 2 and 5: SHOW TABLET
//! ROUTES and the client library's routing call). A replica qualifies when it is NORMAL, its
//! backend is alive, not query-disabled and not in *this* FE's blacklist. Among those the choice
//! is a rendezvous hash of (tablet, backend): the same on every FE, spread over the backends,
//! and unchanged when some other replica comes or goes.

use crate::model::blacklist::BlacklistKind;
use crate::model::catalog::{ReplicaState, Tablet};
use crate::model::ids::{BackendId, FrontendId, TabletId};
use crate::model::state::ClusterState;
use std::fmt;

/// Why a replica was passed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The replica is still being created or cloned.
    NotReady(ReplicaState),
    /// The backend is gone from the registry.
    Dropped,
    NotAlive,
    QueryDisabled,
    Blacklisted(BlacklistKind),
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::NotReady(s) => write!(f, "replica is {}", s.as_str()),
            Skip::Dropped => write!(f, "backend dropped"),
            Skip::NotAlive => write!(f, "backend not alive"),
            Skip::QueryDisabled => write!(f, "backend has disable_query"),
            Skip::Blacklisted(k) => write!(f, "in this FE's blacklist ({})", k.as_str()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub tablet: TabletId,
    /// The replica's backend to use; `None` when no replica qualifies.
    pub chosen: Option<BackendId>,
    /// Every replica passed over, with the reason.
    pub skipped: Vec<(BackendId, Skip)>,
}

impl Route {
    /// The skipped replicas as one line, e.g. "10002: backend not alive; 10003: ...".
    pub fn reasons(&self) -> String {
        self.skipped
            .iter()
            .map(|(b, why)| format!("{b}: {why}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// A fixed 64-bit mix (splitmix64's finalizer): the hash must not change between builds or
/// FEs, or routes would move for no reason.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn score(tablet: TabletId, backend: BackendId) -> u64 {
    mix(mix(tablet.0) ^ backend.0)
}

fn skip_reason(
    state: &ClusterState,
    fe: FrontendId,
    state_of: ReplicaState,
    backend: BackendId,
) -> Option<Skip> {
    if state_of != ReplicaState::Normal {
        return Some(Skip::NotReady(state_of));
    }
    let Some(b) = state.backends.get(&backend) else {
        return Some(Skip::Dropped);
    };
    if !b.liveness.alive {
        return Some(Skip::NotAlive);
    }
    if b.disable_query {
        return Some(Skip::QueryDisabled);
    }
    if let Some(e) = state.blacklist.get(&(fe, backend)) {
        return Some(Skip::Blacklisted(e.kind));
    }
    None
}

/// The route `fe` would take to `tablet`.
pub fn route(state: &ClusterState, fe: FrontendId, tablet: &Tablet) -> Route {
    let mut skipped = Vec::new();
    let mut chosen: Option<BackendId> = None;
    for r in &tablet.replicas {
        match skip_reason(state, fe, r.state, r.backend) {
            Some(why) => skipped.push((r.backend, why)),
            None => {
                let better = chosen.is_none_or(|c| {
                    (score(tablet.id, r.backend), r.backend) > (score(tablet.id, c), c)
                });
                if better {
                    chosen = Some(r.backend);
                }
            }
        }
    }
    Route {
        tablet: tablet.id,
        chosen,
        skipped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::backend::HostPort;
    use crate::model::catalog::{CloneFailures, Replica};
    use crate::model::ids::TableId;
    use crate::transition;

    fn cluster(n: usize) -> ClusterState {
        let mut s = ClusterState::default();
        let addrs: Vec<HostPort> = (0..n).map(|i| HostPort::new(format!("h{i}"), 1)).collect();
        transition::registry::add_backends(&mut s, 0, &addrs, &[]).unwrap();
        for id in s.backends.keys().copied().collect::<Vec<_>>() {
            s.backends.get_mut(&id).unwrap().liveness.alive = true;
        }
        s
    }

    fn tablet(id: u64, backends: &[u64]) -> Tablet {
        Tablet {
            id: TabletId(id),
            table: TableId(1),
            replicas: backends
                .iter()
                .map(|b| Replica {
                    backend: BackendId(*b),
                    state: ReplicaState::Normal,
                    bytes: 0,
                    checksum: Some(0),
                })
                .collect(),
            failures: CloneFailures::default(),
        }
    }

    #[test]
    fn the_choice_is_stable_and_obeys_only_this_frontends_list() {
        let mut s = cluster(4);
        let (fe1, fe2) = (FrontendId(1), FrontendId(2));
        let tablets: Vec<Tablet> = (0..40)
            .map(|i| tablet(100_000 + i, &[10001, 10002, 10003]))
            .collect();
        let before: Vec<Route> = tablets.iter().map(|t| route(&s, fe1, t)).collect();
        assert!(
            before
                .iter()
                .all(|r| r.chosen.is_some() && r.skipped.is_empty())
        );
        // Spread: every replica backend is somebody's choice.
        for b in [10001, 10002, 10003] {
            assert!(before.iter().any(|r| r.chosen == Some(BackendId(b))));
        }
        transition::blacklist::add_manual(&mut s, 1, fe1, &[BackendId(10002)]).unwrap();
        for (t, old) in tablets.iter().zip(&before) {
            let r1 = route(&s, fe1, t);
            assert_ne!(r1.chosen, Some(BackendId(10002)));
            if old.chosen != Some(BackendId(10002)) {
                assert_eq!(r1.chosen, old.chosen, "an unrelated choice moved");
            } else {
                assert_eq!(
                    r1.skipped,
                    vec![(BackendId(10002), Skip::Blacklisted(BlacklistKind::Manual))]
                );
            }
            assert_eq!(&route(&s, fe2, t), old, "FE1's list changed FE2's route");
        }
    }

    #[test]
    fn none_names_every_reason() {
        let mut s = cluster(4);
        let fe = FrontendId(3);
        s.backends
            .get_mut(&BackendId(10001))
            .unwrap()
            .liveness
            .alive = false;
        s.backends.get_mut(&BackendId(10002)).unwrap().disable_query = true;
        transition::blacklist::record_failures(&mut s, 5, fe, BackendId(10003), 1, "refused")
            .unwrap();
        let mut t = tablet(100_001, &[10001, 10002, 10003, 10004, 10009]);
        t.replicas[3].state = ReplicaState::Cloning;
        let r = route(&s, fe, &t);
        assert_eq!(r.chosen, None);
        assert_eq!(
            r.reasons(),
            "10001: backend not alive; 10002: backend has disable_query; \
             10003: in this FE's blacklist (AUTO); 10004: replica is CLONING; 10009: backend dropped"
        );
        // Another FE routes to the one its own list does not exclude.
        assert_eq!(route(&s, FrontendId(1), &t).chosen, Some(BackendId(10003)));
    }
}
