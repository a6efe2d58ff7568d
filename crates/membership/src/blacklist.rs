//! Per-FE backend blacklists (SPEC section 5), keyed by (frontend, backend) in the replicated
//! state: every FE can show every list, but an entry of FE A never changes FE B's routing.
//! MANUAL entries stay until deleted or until the backend is dropped; AUTO never overwrites
//! MANUAL.

use crate::error::DomainError;
use crate::ids::{BackendId, FrontendId};
use crate::state::ClusterState;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlacklistKind {
    Manual,
    Auto,
}

impl BlacklistKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            BlacklistKind::Manual => "MANUAL",
            BlacklistKind::Auto => "AUTO",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlacklistEntry {
    pub frontend: FrontendId,
    pub backend: BackendId,
    pub kind: BlacklistKind,
    /// Leader-stamped time the entry was added (for AUTO: the connection loss).
    pub added_ms: u64,
    /// Connection failures seen in the current window (AUTO only).
    pub failures_in_period: u64,
}

pub type BlacklistKey = (FrontendId, BackendId);

fn check_known(state: &ClusterState, ids: &[BackendId]) -> Result<(), DomainError> {
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

/// ADD BACKEND BLACKLIST on `fe`: returns the backends newly blacklisted (or turned MANUAL).
pub fn add_manual(
    state: &mut ClusterState,
    now_ms: u64,
    fe: FrontendId,
    ids: &[BackendId],
) -> Result<Vec<BackendId>, DomainError> {
    check_known(state, ids)?;
    let mut changed = Vec::new();
    for id in ids {
        let key = (fe, *id);
        if state.blacklist.get(&key).map(|e| e.kind) == Some(BlacklistKind::Manual) {
            continue;
        }
        state.blacklist.insert(
            key,
            BlacklistEntry {
                frontend: fe,
                backend: *id,
                kind: BlacklistKind::Manual,
                added_ms: now_ms,
                failures_in_period: 0,
            },
        );
        if !changed.contains(id) {
            changed.push(*id);
        }
    }
    Ok(changed)
}

/// DELETE BACKEND BLACKLIST on `fe`: returns the entries removed (absent ones are no-ops, so a
/// retried statement is harmless).
pub fn delete(
    state: &mut ClusterState,
    fe: FrontendId,
    ids: &[BackendId],
) -> Result<Vec<BackendId>, DomainError> {
    check_known(state, ids)?;
    Ok(ids
        .iter()
        .filter(|id| state.blacklist.remove(&(fe, **id)).is_some())
        .copied()
        .collect())
}

/// Entries of one backend go away with it.
pub fn forget_backend(state: &mut ClusterState, id: BackendId) {
    let keys: Vec<BlacklistKey> = state
        .blacklist
        .iter()
        .filter(|(k, _)| k.1 == id)
        .map(|(k, _)| *k)
        .collect();
    for k in keys {
        state.blacklist.remove(&k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::HostPort;
    use crate::registry;

    #[test]
    fn per_frontend_manual_entries() {
        let mut s = ClusterState::default();
        registry::add_backends(
            &mut s,
            0,
            &[HostPort::new("a", 1), HostPort::new("b", 1)],
            &[],
        )
        .unwrap();
        let (fe1, fe2) = (FrontendId(1), FrontendId(2));
        assert_eq!(
            add_manual(&mut s, 5, fe1, &[BackendId(10001)]).unwrap(),
            vec![BackendId(10001)]
        );
        assert!(
            add_manual(&mut s, 6, fe1, &[BackendId(10001)])
                .unwrap()
                .is_empty(),
            "repeating is harmless"
        );
        assert!(
            s.blacklist.get(&(fe2, BackendId(10001))).is_none(),
            "FE2's list is its own"
        );
        assert_eq!(
            add_manual(&mut s, 7, fe1, &[BackendId(999)]),
            Err(DomainError::UnknownBackend("999".into()))
        );
        // AUTO never overwrites MANUAL, but MANUAL replaces AUTO.
        s.blacklist.insert(
            (fe2, BackendId(10002)),
            BlacklistEntry {
                frontend: fe2,
                backend: BackendId(10002),
                kind: BlacklistKind::Auto,
                added_ms: 1,
                failures_in_period: 3,
            },
        );
        add_manual(&mut s, 8, fe2, &[BackendId(10002)]).unwrap();
        assert_eq!(
            s.blacklist.get(&(fe2, BackendId(10002))).unwrap().kind,
            BlacklistKind::Manual
        );
        assert_eq!(
            delete(&mut s, fe1, &[BackendId(10001), BackendId(10002)]).unwrap(),
            vec![BackendId(10001)]
        );
        // Dropping a backend removes its entries everywhere.
        registry::dropp_backends(&mut s, 9, &[crate::BackendRef::Id(BackendId(10002))]).unwrap();
        assert!(s.blacklist.is_empty());
    }
}
