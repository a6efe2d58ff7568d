use super::*;
use crate::model::catalog::{ReplicaReport, TableDef};
use crate::model::ids::*;
use crate::model::moves::*;
use crate::query::moves::*;
use crate::transition;
use crate::{HostPort, Settings};

/// Four alive backends on distinct hosts and one tablet with NORMAL replicas on the first three.
fn state() -> (ClusterState, TabletId) {
    let mut s = ClusterState::default();
    for i in 0..4 {
        let ids = transition::registry::add_backends(
            &mut s,
            0,
            &[HostPort::new(format!("h{i}"), 1)],
            &[],
        )
        .unwrap();
        s.backends.get_mut(&ids[0]).unwrap().liveness.alive = true;
    }
    let def = TableDef {
        name: "t".into(),
        if_not_exists: false,
        columns: vec![],
        hash_columns: vec![],
        buckets: 1,
        properties: vec![],
    };
    transition::catalog::create_table(&mut s, 0, &def).unwrap();
    let t = s.tablets.values().next().unwrap().clone();
    let reports: Vec<ReplicaReport> = t
        .replicas
        .iter()
        .map(|r| ReplicaReport {
            tablet: t.id,
            backend: r.backend,
            bytes: 10,
            checksum: 7,
        })
        .collect();
    transition::catalog::record_replicas(&mut s, &reports);
    (s, t.id)
}

fn plan(t: TabletId, source: u64, dest: u64, replaces: Option<u64>) -> MovePlan {
    MovePlan {
        tablet: t,
        source: BackendId(source),
        dest: BackendId(dest),
        replaces: replaces.map(BackendId),
        reason: MoveReason::Decommission,
    }
}

#[test]
fn stale_or_unsafe_plans_are_skipped_at_apply() {
    let (mut s, t) = state();
    let before = s.clone();
    let bad = [
        plan(t, 10001, 10002, None),        // dest already holds the tablet
        plan(t, 10004, 10004, None),        // source holds nothing
        plan(t, 10001, 10004, Some(10004)), // replaces a replica that is not there
        plan(TabletId(9), 10001, 10004, None),
    ];
    assert!(start_moves(&mut s, 1, &bad).is_empty());
    assert_eq!(s, before);
    // Two moves for one tablet in one batch: only the first.
    let ids = start_moves(
        &mut s,
        1,
        &[
            plan(t, 10001, 10004, Some(10003)),
            plan(t, 10002, 10004, None),
        ],
    );
    assert_eq!(ids.len(), 1);
    let tablet = s.tablets.get(&t).unwrap();
    assert_eq!(tablet.replicas.len(), 4, "make before break");
    assert_eq!(tablet.replicas[3].state, ReplicaState::Cloning);
}

#[test]
fn finishing_replaces_the_old_replica_once() {
    let (mut s, t) = state();
    let id = start_moves(&mut s, 1, &[plan(t, 10001, 10004, Some(10003))])[0];
    assert!(finish_move(&mut s, 2, id, 10, 7));
    assert!(
        !finish_move(&mut s, 3, id, 10, 7),
        "a second finish changes nothing"
    );
    let backends: Vec<u64> = s
        .tablets
        .get(&t)
        .unwrap()
        .replicas
        .iter()
        .map(|r| r.backend.0)
        .collect();
    assert_eq!(backends, vec![10001, 10002, 10004]);
    assert!(s.moves.is_empty());
}

#[test]
fn aborting_removes_the_clone_and_counts_a_failure() {
    let (mut s, t) = state();
    let id = start_moves(&mut s, 1, &[plan(t, 10001, 10004, Some(10003))])[0];
    assert!(abort_move(&mut s, 5, id, "timed out", true));
    let tablet = s.tablets.get(&t).unwrap();
    assert_eq!(tablet.replicas.len(), 3);
    assert_eq!(tablet.failures.count, 1);
    assert_eq!(tablet.failures.failed_dests, vec![BackendId(10004)]);
    assert_eq!(tablet.failures.last_at_ms, 5);
    assert!(!abort_move(&mut s, 6, id, "again", true));
}

#[test]
fn slots_are_counted_at_apply() {
    let (s, t) = state();
    let p = plan(t, 10001, 10004, Some(10003));
    assert_eq!(check_plan(&s, &p, &Slots::in_use(&s)), Ok(()));
    let mut busy = Slots::default();
    busy.receiving.insert(BackendId(10004), 1);
    assert_eq!(
        check_plan(&s, &p, &busy),
        Err("no free clone slot".to_string())
    );
    let mut busy = Slots::default();
    busy.sending.insert(BackendId(10001), 1);
    assert_eq!(
        check_plan(&s, &p, &busy),
        Err("no free clone slot".to_string())
    );
}

#[test]
fn timeouts_are_estimated_from_size_and_clamped() {
    let s = Settings::default();
    assert_eq!(clone_timeout_ms(&s, 0), 180_000);
    assert_eq!(clone_timeout_ms(&s, 5 << 20 << 10), 1000 * 1024);
    assert_eq!(clone_timeout_ms(&s, u64::MAX), 7_200_000);
}

#[test]
fn a_rate_limit_slows_the_expected_clone_and_its_timeout() {
    let mut s = Settings::default();
    let two_mib = 2 << 20;
    assert_eq!(expected_clone_ms(&s, two_mib), 400 + 200 + 2000);
    s.set_all(&[(
        "clone_rate_limit_bytes_per_sec".into(),
        (1u64 << 20).to_string(),
    )])
    .unwrap();
    // 2 s at 1 MiB/s, plus the margin: a healthy clone is not a blocker at 3 s.
    assert_eq!(expected_clone_ms(&s, two_mib), 2000 + 1000 + 2000);
    assert_eq!(clone_timeout_ms(&s, 1 << 30), 1024 * 1000);
    // A limit above the estimate does not make the estimate optimistic.
    s.set_all(&[(
        "clone_rate_limit_bytes_per_sec".into(),
        (1u64 << 30).to_string(),
    )])
    .unwrap();
    assert_eq!(expected_clone_ms(&s, two_mib), 2600);
}
