use super::*;
use crate::model::ids::*;
use crate::query::backends::*;
use crate::transition;

fn hp(h: &str, p: u16) -> HostPort {
    HostPort::new(h, p)
}

fn id(n: u64) -> BackendRef {
    BackendRef::Id(BackendId(n))
}

#[test]
fn add_assigns_ids_from_10001_in_order() {
    let mut s = ClusterState::default();
    let ids = add_backends(&mut s, 5, &[hp("a", 9050), hp("b", 9050)], &[]).unwrap();
    assert_eq!(ids, vec![BackendId(10001), BackendId(10002)]);
    let b = s.backends.get(&BackendId(10002)).unwrap();
    assert_eq!(b.addr, hp("b", 9050));
    assert_eq!(b.tags.location, "default");
    assert_eq!(b.membership, BackendMembership::Active);
    assert!(
        !b.liveness.alive,
        "a new backend is not alive until heartbeated"
    );
    assert_eq!(b.added_at_ms, 5);
}

#[test]
fn duplicate_add_is_refused_with_doris_text_and_changes_nothing() {
    let mut s = ClusterState::default();
    add_backends(&mut s, 0, &[hp("a", 9050)], &[]).unwrap();
    let before = s.clone();
    let err = add_backends(&mut s, 0, &[hp("c", 1), hp("a", 9050)], &[]).unwrap_err();
    assert_eq!(err.to_string(), "Same backend already exists[a:9050]");
    assert_eq!(s.backends, before.backends);
    assert_eq!(s.meta, before.meta);
    // A duplicate inside one statement is refused too.
    let err = add_backends(&mut s, 0, &[hp("x", 1), hp("x", 1)], &[]).unwrap_err();
    assert_eq!(err, DomainError::DuplicateBackend(hp("x", 1)));
}

#[test]
fn properties_become_tags_and_unknown_ones_are_refused() {
    let mut s = ClusterState::default();
    let props = vec![
        ("tag.location".to_string(), "g1".to_string()),
        ("tag.compute_group_name".into(), "cg".into()),
    ];
    let ids = add_backends(&mut s, 0, &[hp("a", 1)], &props).unwrap();
    let b = s.backends.get(&ids[0]).unwrap();
    assert_eq!(b.tags.location, "g1");
    assert_eq!(b.tags.compute_group_name.as_deref(), Some("cg"));
    let err = add_backends(
        &mut s,
        0,
        &[hp("b", 1)],
        &[("tag.colour".into(), "red".into())],
    )
    .unwrap_err();
    assert!(matches!(err, DomainError::UnknownProperty { .. }), "{err}");
    let err = add_backends(
        &mut s,
        0,
        &[hp("b", 1)],
        &[("tag.location".into(), "a b".into())],
    )
    .unwrap_err();
    assert!(matches!(err, DomainError::InvalidProperty { .. }), "{err}");
    assert_eq!(s.backends.len(), 1);
}

#[test]
fn dropp_leaves_a_tombstone_and_ids_are_never_reused() {
    let mut s = ClusterState::default();
    add_backends(&mut s, 0, &[hp("a", 1), hp("b", 1)], &[]).unwrap();
    let (t, lost) = dropp_backends(&mut s, 7, &[BackendRef::Addr(hp("b", 1))]).unwrap();
    assert_eq!(lost, 0);
    assert_eq!(t[0].id, BackendId(10002));
    assert!(s.backends.get(&BackendId(10002)).is_none());
    let err = decommission(&mut s, 8, &[id(10002)]).unwrap_err();
    assert!(matches!(err, DomainError::DroppedBackend { .. }), "{err}");
    // Re-adding the same address gets a fresh id.
    let ids = add_backends(&mut s, 9, &[hp("b", 1)], &[]).unwrap();
    assert_eq!(ids, vec![BackendId(10003)]);
}

#[test]
fn unknown_targets_change_nothing() {
    let mut s = ClusterState::default();
    add_backends(&mut s, 0, &[hp("a", 1)], &[]).unwrap();
    let before = s.clone();
    assert_eq!(
        dropp_backends(&mut s, 0, &[id(10001), id(424242)]).unwrap_err(),
        DomainError::UnknownBackend("424242".into())
    );
    assert_eq!(
        decommission(&mut s, 0, &[BackendRef::Addr(hp("zz", 9))]).unwrap_err(),
        DomainError::UnknownBackend("zz:9".into())
    );
    assert_eq!(s, before);
}

#[test]
fn decommission_lifecycle() {
    use MembershipOutcome::*;
    let mut s = ClusterState::default();
    add_backends(&mut s, 0, &[hp("a", 1)], &[]).unwrap();
    assert_eq!(
        decommission(&mut s, 3, &[id(10001)]).unwrap(),
        vec![(BackendId(10001), Changed)]
    );
    // Repeating it is harmless and keeps the original start time.
    assert_eq!(
        decommission(&mut s, 4, &[id(10001), id(10001)]).unwrap(),
        vec![(
            BackendId(10001),
            Unchanged(BackendMembership::Decommissioning)
        )]
    );
    let b = s.backends.get(&BackendId(10001)).unwrap();
    assert_eq!(b.membership, BackendMembership::Decommissioning);
    assert_eq!(b.decommission_started_ms, Some(3));
    assert_eq!(
        cancel_decommission(&mut s, 0, &[id(10001)]).unwrap(),
        vec![(BackendId(10001), Changed)]
    );
    assert_eq!(
        cancel_decommission(&mut s, 0, &[id(10001)]).unwrap(),
        vec![(BackendId(10001), Unchanged(BackendMembership::Active))]
    );
    assert_eq!(
        s.backends.get(&BackendId(10001)).unwrap().membership,
        BackendMembership::Active
    );
    // DECOMMISSIONED is final: CANCEL and MODIFY are refused, DECOMMISSION succeeds.
    s.backends.get_mut(&BackendId(10001)).unwrap().membership = BackendMembership::Decommissioned;
    let before = s.clone();
    assert_eq!(
        cancel_decommission(&mut s, 0, &[id(10001)]).unwrap_err(),
        DomainError::AlreadyDecommissioned(BackendId(10001))
    );
    assert_eq!(
        modify_backends(
            &mut s,
            &[id(10001)],
            &[("disable_query".into(), "true".into())]
        )
        .unwrap_err(),
        DomainError::AlreadyDecommissioned(BackendId(10001))
    );
    assert_eq!(
        decommission(&mut s, 5, &[id(10001)]).unwrap(),
        vec![(BackendId(10001), AlreadyDecommissioned { dropped: false })]
    );
    assert_eq!(s, before);
}

#[test]
fn rerunning_a_finished_decommission_succeeds_and_dropp_stays_an_error() {
    use MembershipOutcome::*;
    let mut s = ClusterState::default();
    add_backends(&mut s, 0, &[hp("a", 1), hp("b", 1), hp("c", 1)], &[]).unwrap();
    s.meta
        .settings
        .set_all(&[("drop_backend_after_decommission".into(), "true".into())])
        .unwrap();
    decommission(&mut s, 3, &[id(10001)]).unwrap();
    // Nothing on it: the master finishes and drops it, and the tombstone keeps the record.
    assert_eq!(transition::drain::finish(&mut s, 9), vec![BackendId(10001)]);
    let t = s.tombstones.get(&BackendId(10001)).unwrap();
    assert_eq!(t.dropped_at_ms, 9);
    assert_eq!(t.decommission.as_ref().unwrap().started_ms, Some(3));
    dropp_backends(&mut s, 10, &[id(10002)]).unwrap();
    let before = s.clone();
    for r in [id(10001), BackendRef::Addr(hp("a", 1))] {
        assert_eq!(
            decommission(&mut s, 11, &[r]).unwrap(),
            vec![(BackendId(10001), AlreadyDecommissioned { dropped: true })]
        );
    }
    // Mixed with a live one: that one starts.
    assert_eq!(
        decommission(&mut s, 12, &[id(10001), id(10003)]).unwrap(),
        vec![
            (BackendId(10001), AlreadyDecommissioned { dropped: true }),
            (BackendId(10003), Changed)
        ]
    );
    let mut s = before;
    let before = s.clone();
    // Removed by DROPP: its data was abandoned, not decommissioned.
    assert!(matches!(
        decommission(&mut s, 11, &[id(10002)]).unwrap_err(),
        DomainError::DroppedBackend { .. }
    ));
    assert_eq!(
        decommission(&mut s, 11, &[id(10001), id(777)]).unwrap_err(),
        DomainError::UnknownBackend("777".into())
    );
    // CANCEL of a dropped backend stays an error.
    assert!(matches!(
        cancel_decommission(&mut s, 11, &[id(10001)]).unwrap_err(),
        DomainError::DroppedBackend { .. }
    ));
    assert_eq!(s, before);
}

#[test]
fn modify_sets_flags_and_validates_all_first() {
    let mut s = ClusterState::default();
    add_backends(&mut s, 0, &[hp("a", 1)], &[]).unwrap();
    let p = |k: &str, v: &str| (k.to_string(), v.to_string());
    modify_backends(
        &mut s,
        &[id(10001)],
        &[p("disable_query", "true"), p("tag.location", "g2")],
    )
    .unwrap();
    let b = s.backends.get(&BackendId(10001)).unwrap();
    assert!(b.disable_query && !b.disable_load);
    assert_eq!(b.tags.location, "g2");
    let before = s.clone();
    assert!(
        modify_backends(
            &mut s,
            &[id(10001)],
            &[p("disable_load", "true"), p("disable_query", "maybe")]
        )
        .is_err()
    );
    assert!(modify_backends(&mut s, &[id(10001)], &[p("tag.public_endpoint", "x")]).is_err());
    assert_eq!(s, before);
}

#[test]
fn removed_frontend_ids_are_not_reused() {
    let mut s = ClusterState::default();
    s.note_frontends([FrontendId(1), FrontendId(2), FrontendId(3)]);
    let now: BTreeSet<_> = [FrontendId(1), FrontendId(2)].into();
    assert_eq!(
        check_frontend_join(&s, FrontendId(3), &now),
        Err(DomainError::ReusedFrontendId(FrontendId(3)))
    );
    assert!(check_frontend_join(&s, FrontendId(4), &now).is_ok());
    assert!(
        check_frontend_join(&s, FrontendId(2), &now).is_ok(),
        "a current member may be re-added (idempotent)"
    );
}

#[test]
fn clock_never_goes_back() {
    let mut s = ClusterState::default();
    assert_eq!(s.tick(100), 100);
    assert_eq!(s.tick(50), 100);
    assert_eq!(s.tick(150), 150);
}
