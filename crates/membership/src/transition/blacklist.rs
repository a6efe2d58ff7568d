//! Changes of the per-FE blacklists: ADD/DELETE BACKEND BLACKLIST, recorded connection failures
//! and cleared AUTO entries. AUTO never overwrites MANUAL.

use crate::model::blacklist::{BlacklistEntry, BlacklistKey, BlacklistKind, MAX_HISTORY};
use crate::model::error::DomainError;
use crate::model::ids::{BackendId, FrontendId};
use crate::model::state::ClusterState;
use crate::query::blacklist::{check_known, threshold, window_ms};

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
        match state.blacklist.get_mut(&key) {
            Some(e) if e.kind == BlacklistKind::Manual => continue,
            // MANUAL replaces AUTO; the failure history stays.
            Some(e) => {
                e.kind = BlacklistKind::Manual;
                e.added_ms = now_ms;
            }
            None => {
                state.blacklist.insert(
                    key,
                    BlacklistEntry {
                        frontend: fe,
                        backend: *id,
                        kind: BlacklistKind::Manual,
                        added_ms: now_ms,
                        failures: Vec::new(),
                        last_failure: String::new(),
                    },
                );
            }
        }
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

/// `fe` failed `count` times to connect to `backend` since it last said so: an AUTO entry is
/// added if there is none, and the failures join the entry's history (a MANUAL entry stays
/// MANUAL). Returns whether a new entry was added. A backend dropped meanwhile is an error the
/// caller may ignore.
pub fn record_failures(
    state: &mut ClusterState,
    now_ms: u64,
    fe: FrontendId,
    backend: BackendId,
    count: u32,
    reason: &str,
) -> Result<bool, DomainError> {
    check_known(state, &[backend])?;
    let window = window_ms(state);
    let key = (fe, backend);
    let added = !state.blacklist.contains_key(&key);
    if added {
        state.blacklist.insert(
            key,
            BlacklistEntry {
                frontend: fe,
                backend,
                kind: BlacklistKind::Auto,
                added_ms: now_ms,
                failures: Vec::new(),
                last_failure: String::new(),
            },
        );
    }
    let e = state.blacklist.get_mut(&key).expect("present");
    let since = now_ms.saturating_sub(window);
    e.failures.retain(|t| *t > since);
    e.failures.extend(std::iter::repeat_n(
        now_ms,
        count.min(MAX_HISTORY as u32) as usize,
    ));
    let excess = e.failures.len().saturating_sub(MAX_HISTORY);
    e.failures.drain(..excess);
    if !reason.is_empty() {
        e.last_failure = reason.to_string();
    }
    Ok(added)
}

/// `fe`'s refresher found every port of `backend` answering: its AUTO entry goes if the
/// failures in the window are fewer than the threshold (checked here, at apply, against the
/// replicated history). MANUAL entries are never touched. Returns whether it was removed.
pub fn clear_auto(
    state: &mut ClusterState,
    now_ms: u64,
    fe: FrontendId,
    backend: BackendId,
) -> bool {
    let (window, limit) = (window_ms(state), threshold(state));
    let key = (fe, backend);
    let removable = state.blacklist.get(&key).is_some_and(|e| {
        e.kind == BlacklistKind::Auto && e.failures_within(now_ms, window) < limit
    });
    if removable {
        state.blacklist.remove(&key);
    }
    removable
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
    use crate::model::backend::HostPort;
    use crate::query::blacklist::auto_clearable;
    use crate::transition;

    #[test]
    fn per_frontend_manual_entries() {
        let mut s = ClusterState::default();
        transition::registry::add_backends(
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
                failures: vec![1, 1, 1],
                last_failure: String::new(),
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
        // AUTO failures join a MANUAL entry's history without making it AUTO.
        assert!(!record_failures(&mut s, 9, fe2, BackendId(10002), 2, "refused").unwrap());
        let e = s.blacklist.get(&(fe2, BackendId(10002))).unwrap();
        assert_eq!(e.kind, BlacklistKind::Manual);
        assert_eq!(e.failures.len(), 5);
        assert!(
            !clear_auto(&mut s, 10, fe2, BackendId(10002)),
            "MANUAL never clears"
        );
        assert_eq!(
            record_failures(&mut s, 9, fe2, BackendId(999), 1, "x"),
            Err(DomainError::UnknownBackend("999".into()))
        );
        // Dropping a backend removes its entries everywhere.
        transition::registry::dropp_backends(&mut s, 9, &[crate::BackendRef::Id(BackendId(10002))])
            .unwrap();
        assert!(s.blacklist.is_empty());
    }

    #[test]
    fn auto_entries_follow_the_failure_window() {
        let mut s = ClusterState::default();
        transition::registry::add_backends(&mut s, 0, &[HostPort::new("a", 1)], &[]).unwrap();
        let (fe, be) = (FrontendId(2), BackendId(10001));
        let sec = 1000;
        // Defaults: a 120 s window, 5 failures keep the entry.
        assert!(record_failures(&mut s, 10 * sec, fe, be, 1, "127.0.0.1:1: refused").unwrap());
        let e = s.blacklist.get(&(fe, be)).unwrap().clone();
        assert_eq!((e.kind, e.added_ms), (BlacklistKind::Auto, 10 * sec));
        assert_eq!(e.last_failure, "127.0.0.1:1: refused");
        assert!(!record_failures(&mut s, 11 * sec, fe, be, 3, "").unwrap());
        assert_eq!(
            s.blacklist.get(&(fe, be)).unwrap().last_failure,
            "127.0.0.1:1: refused"
        );
        // 4 failures in the window: fewer than 5, so it clears.
        assert!(auto_clearable(&s, 12 * sec, fe, be));
        record_failures(&mut s, 12 * sec, fe, be, 1, "again").unwrap();
        // 5 now: it stays, until the window has moved past enough of them.
        assert!(!auto_clearable(&s, 13 * sec, fe, be));
        assert!(
            !clear_auto(&mut s, 129 * sec, fe, be),
            "all 5 are still within 120 s"
        );
        assert!(
            auto_clearable(&s, 130 * sec, fe, be),
            "the one at 10 s has left"
        );
        assert!(clear_auto(&mut s, 130 * sec, fe, be));
        assert!(s.blacklist.is_empty());
        // Recording prunes to the window and caps the history.
        record_failures(&mut s, 200 * sec, fe, be, 5000, "flood").unwrap();
        assert_eq!(
            s.blacklist.get(&(fe, be)).unwrap().failures.len(),
            MAX_HISTORY
        );
        record_failures(&mut s, 400 * sec, fe, be, 1, "later").unwrap();
        assert_eq!(
            s.blacklist.get(&(fe, be)).unwrap().failures,
            vec![400 * sec]
        );
    }
}
