use super::*;
use proptest::prelude::*;
use roster_membership::model::catalog::{ReplicaReport, TableDef};
use roster_membership::transition::{catalog, moves};
use roster_membership::{BackendRef, HostPort, model, query, transition};

/// Alive backends on hosts h1.., tag `default`, and one table of `buckets` x `rf` replicas,
/// every replica NORMAL with 1000 bytes.
fn cluster(backends: usize, buckets: u32, rf: usize) -> ClusterState {
    let mut s = ClusterState::default();
    for i in 0..backends {
        let ids = transition::registry::add_backends(
            &mut s,
            0,
            &[HostPort::new(format!("h{i}"), 9050)],
            &[],
        )
        .unwrap();
        s.backends.get_mut(&ids[0]).unwrap().liveness.alive = true;
    }
    add_table(&mut s, "t", buckets, rf);
    s
}

fn add_table(s: &mut ClusterState, name: &str, buckets: u32, rf: usize) {
    let def = TableDef {
        name: name.into(),
        if_not_exists: false,
        columns: vec![],
        hash_columns: vec![],
        buckets,
        properties: vec![("replication_num".into(), rf.to_string())],
    };
    catalog::create_table(s, 0, &def).unwrap();
    let reports: Vec<ReplicaReport> = s
        .tablets
        .values()
        .flat_map(|t| {
            t.replicas.iter().map(|r| ReplicaReport {
                tablet: t.id,
                backend: r.backend,
                bytes: 1000,
                checksum: t.id.0 as u32,
            })
        })
        .collect();
    catalog::record_replicas(s, &reports);
}

fn healthy(s: &ClusterState, t: &Tablet) -> usize {
    t.replicas
        .iter()
        .filter(|r| r.state == ReplicaState::Normal)
        .filter(|r| s.backends.get(&r.backend).is_some_and(|b| b.liveness.alive))
        .count()
}

/// Finish every move in flight as the destination agent would report it.
fn finish_all(s: &mut ClusterState, now: u64) {
    let done: Vec<_> = s
        .moves
        .values()
        .map(|m| (m.id, m.bytes, m.checksum.unwrap()))
        .collect();
    for (id, bytes, sum) in done {
        assert!(moves::finish_move(s, now, id, bytes, sum));
    }
}

/// Plan, start, finish, until nothing is planned; checks the invariants at every step.
fn run_to_quiet(s: &mut ClusterState, min_healthy: usize) -> usize {
    let mut rounds = 0;
    loop {
        let plans = plan(s, 1_000_000);
        if plans.is_empty() && s.moves.is_empty() {
            return rounds;
        }
        let started = moves::start_moves(s, 1_000_000, &plans);
        assert_eq!(started.len(), plans.len(), "every plan starts: {plans:?}");
        assert_eq!(s.tablets.check_index(), Ok(()), "after starting moves");
        for t in s.tablets.values() {
            assert!(
                healthy(s, t) >= min_healthy,
                "tablet {} under-replicated",
                t.id
            );
        }
        finish_all(s, 1_000_000);
        transition::drain::finish(s, 1_000_000);
        assert_eq!(s.tablets.check_index(), Ok(()), "after finishing moves");
        for t in s.tablets.values() {
            assert!(
                healthy(s, t) >= min_healthy,
                "tablet {} under-replicated",
                t.id
            );
            let mut b: Vec<_> = t.replicas.iter().map(|r| r.backend).collect();
            b.sort();
            b.dedup();
            assert_eq!(b.len(), t.replicas.len(), "two replicas on one backend");
        }
        rounds += 1;
        assert!(rounds < 1000, "no progress");
    }
}

#[test]
fn decommission_drains_with_make_before_break_and_the_backend_is_dropped() {
    let mut s = cluster(5, 30, 3);
    let leaving = BackendId(10003);
    let before = query::drain::live_on(&s, leaving).0;
    assert!(before > 0);
    transition::registry::decommission(&mut s, 5, &[BackendRef::Id(leaving)]).unwrap();
    assert_eq!(
        s.backends.get(&leaving).unwrap().drain.tablets_total,
        before
    );
    let first = plan(&s, 1_000_000);
    // One send and one receive slot per backend: at most 4 receivers.
    assert!(!first.is_empty() && first.len() <= 4, "{first:?}");
    assert!(first.iter().all(|p| p.reason == MoveReason::Decommission
        && p.replaces == Some(leaving)
        && p.dest != leaving));
    run_to_quiet(&mut s, 3);
    assert!(
        s.backends.get(&leaving).is_none(),
        "dropped after decommission"
    );
    assert!(s.tombstones.get(&leaving).is_some());
    assert!(s.tablets.values().all(|t| t.replicas.len() == 3));
}

#[test]
fn three_backends_with_three_replicas_cannot_drain() {
    let mut s = cluster(3, 4, 3);
    let before = s.clone();
    let err = transition::registry::decommission(&mut s, 5, &[BackendRef::Id(BackendId(10001))])
        .unwrap_err();
    assert!(err.to_string().contains("of table t"), "{err}");
    assert_eq!(s, before);
}

#[test]
fn dead_backends_are_repaired_after_the_delay() {
    let mut s = cluster(4, 8, 3);
    let dead = BackendId(10001);
    {
        let l = &mut s.backends.get_mut(&dead).unwrap().liveness;
        l.alive = false;
        l.dead_since_ms = Some(1_000);
    }
    let delay = s.meta.settings.values().tablet_repair_delay_second * 1000;
    assert!(
        plan(&s, 1_000 + delay - 1).is_empty(),
        "too early to repair"
    );
    let plans = plan(&s, 1_000 + delay);
    assert!(!plans.is_empty());
    assert!(
        plans
            .iter()
            .all(|p| p.reason == MoveReason::Repair && p.replaces == Some(dead))
    );
    run_to_quiet(&mut s, 2);
    assert!(
        s.tablets
            .values()
            .all(|t| t.replicas.iter().all(|r| r.backend != dead) && healthy(&s, t) == 3)
    );
}

#[test]
fn an_empty_backend_gets_replicas_until_balanced_unless_disabled() {
    let mut s = cluster(4, 12, 3);
    let ids =
        transition::registry::add_backends(&mut s, 0, &[HostPort::new("h9", 9050)], &[]).unwrap();
    s.backends.get_mut(&ids[0]).unwrap().liveness.alive = true;
    let mut off = s.clone();
    off.meta
        .settings
        .set_all(&[("disable_balance".into(), "true".into())])
        .unwrap();
    assert!(plan(&off, 0).is_empty());
    run_to_quiet(&mut s, 3);
    let counts = query::catalog::replica_counts(&s);
    let avg = 36.0 / 5.0;
    for (b, n) in &counts {
        assert!(
            (*n as f64) <= avg * 1.1 + 1.0 && (*n as f64) >= avg * 0.9 - 1.0,
            "{b}: {counts:?}"
        );
    }
    assert!(counts[&ids[0]] >= 6, "{counts:?}");
}

#[test]
fn failed_clones_back_off_and_prefer_other_destinations() {
    let mut s = cluster(5, 1, 3);
    let t = *s.tablets.keys().next().unwrap();
    let on: Vec<BackendId> = s
        .tablets
        .get(&t)
        .unwrap()
        .replicas
        .iter()
        .map(|r| r.backend)
        .collect();
    transition::registry::decommission(&mut s, 0, &[BackendRef::Id(on[0])]).unwrap();
    let p = plan(&s, 10_000);
    let first_dest = p[0].dest;
    let ids = moves::start_moves(&mut s, 10_000, &p);
    assert!(moves::abort_move(
        &mut s,
        20_000,
        ids[0],
        "clone timed out",
        true
    ));
    assert!(plan(&s, 20_500).is_empty(), "backing off");
    let again = plan(&s, 20_000 + model::moves::retry_backoff_ms(1));
    assert_eq!(again.len(), 1);
    assert_ne!(again[0].dest, first_dest, "another destination first");
    let blockers = query::drain::blockers(&s, 20_500);
    assert!(
        blockers[0].reason.contains("clone failed 1 time(s)"),
        "{blockers:?}"
    );
}

#[test]
fn cancel_aborts_drain_moves_and_keeps_finished_ones() {
    let mut s = cluster(5, 10, 3);
    let leaving = BackendId(10002);
    transition::registry::decommission(&mut s, 0, &[BackendRef::Id(leaving)]).unwrap();
    let p = plan(&s, 0);
    moves::start_moves(&mut s, 0, &p);
    finish_all(&mut s, 0);
    let p = plan(&s, 0);
    moves::start_moves(&mut s, 0, &p);
    assert!(!s.moves.is_empty());
    let moved = s.backends.get(&leaving).unwrap().drain.tablets_moved;
    assert!(moved > 0);
    transition::registry::cancel_decommission(&mut s, 0, &[BackendRef::Id(leaving)]).unwrap();
    assert!(s.moves.is_empty());
    for t in s.tablets.values() {
        assert_eq!(t.replicas.len(), 3);
        assert!(t.replicas.iter().all(|r| r.state == ReplicaState::Normal));
    }
}

#[test]
fn a_clone_that_does_not_match_is_aborted() {
    let mut s = cluster(5, 1, 3);
    let t = *s.tablets.keys().next().unwrap();
    let on = s.tablets.get(&t).unwrap().replicas[0].backend;
    transition::registry::decommission(&mut s, 0, &[BackendRef::Id(on)]).unwrap();
    let p = plan(&s, 0);
    let ids = moves::start_moves(&mut s, 0, &p);
    assert!(!moves::finish_move(&mut s, 1, ids[0], 1000, 0xdead));
    assert!(s.moves.is_empty());
    let tablet = s.tablets.get(&t).unwrap();
    assert_eq!(tablet.replicas.len(), 3);
    assert_eq!(tablet.failures.count, 1);
}

/// A random cluster: backends on a few hosts and two tags, some dead or decommissioning or
/// load-disabled, a table per tag, and some moves already in flight.
fn arb_state() -> impl Strategy<Value = (ClusterState, u64)> {
    (
        prop::collection::vec((0u8..5, 0u8..2, 0u8..10), 4..9),
        1u32..12,
        1usize..4,
        0u64..3,
        any::<u64>(),
    )
        .prop_map(|(backends, buckets, rf, slots, seed)| {
            let mut s = ClusterState::default();
            s.meta
                .settings
                .set_all(&[
                    (
                        "clone_send_slots_per_backend".into(),
                        (slots + 1).to_string(),
                    ),
                    (
                        "clone_recv_slots_per_backend".into(),
                        (slots % 2 + 1).to_string(),
                    ),
                ])
                .unwrap();
            for (i, (host, tag, _)) in backends.iter().enumerate() {
                let props = vec![("tag.location".to_string(), format!("g{tag}"))];
                let ids = transition::registry::add_backends(
                    &mut s,
                    0,
                    &[HostPort::new(format!("h{host}"), 9000 + i as u16)],
                    &props,
                )
                .unwrap();
                s.backends.get_mut(&ids[0]).unwrap().liveness.alive = true;
            }
            for tag in 0..2 {
                let def = TableDef {
                    name: format!("t{tag}"),
                    if_not_exists: false,
                    columns: vec![],
                    hash_columns: vec![],
                    buckets,
                    properties: vec![(
                        "replication_allocation".into(),
                        format!("tag.location.g{tag}: {rf}"),
                    )],
                };
                let _ = catalog::create_table(&mut s, 0, &def);
            }
            let reports: Vec<ReplicaReport> = s
                .tablets
                .values()
                .flat_map(|t| {
                    t.replicas.iter().map(|r| ReplicaReport {
                        tablet: t.id,
                        backend: r.backend,
                        bytes: 10,
                        checksum: 1,
                    })
                })
                .collect();
            catalog::record_replicas(&mut s, &reports);
            // Faults and intents after placement.
            for (i, (_, _, fate)) in backends.iter().enumerate() {
                let id = BackendId(10001 + i as u64);
                let b = s.backends.get_mut(&id).unwrap();
                match fate {
                    0 => {
                        b.liveness.alive = false;
                        b.liveness.dead_since_ms = Some(0);
                    }
                    1 => b.membership = BackendMembership::Decommissioning,
                    2 => b.disable_load = true,
                    _ => {}
                }
            }
            // Some moves in flight, then a few finished.
            let now = 10_000_000;
            let p = plan(&s, now);
            moves::start_moves(&mut s, now, &p);
            let ids: Vec<_> = s.moves.keys().copied().collect();
            for (k, id) in ids.iter().enumerate() {
                if seed >> (k % 64) & 1 == 1 {
                    let m = s.moves.get(id).unwrap().clone();
                    moves::finish_move(&mut s, now, *id, m.bytes, m.checksum.unwrap());
                }
            }
            (s, now)
        })
}

proptest! {
    /// No plan ever puts two replicas of a tablet on one backend or host, exceeds the slots,
    /// picks a decommissioning, dead or load-disabled destination, or reads from a dead source.
    #[test]
    fn plans_respect_placement_and_slots((s, now) in arb_state()) {
        let plans = plan(&s, now);
        let settings = &s.meta.settings;
        let mut sending: BTreeMap<BackendId, u64> = BTreeMap::new();
        let mut receiving: BTreeMap<BackendId, u64> = BTreeMap::new();
        let mut seen = BTreeSet::new();
        for p in &plans {
            prop_assert!(seen.insert(p.tablet), "two plans for tablet {}", p.tablet);
            prop_assert!(!s.moves.values().any(|m| m.plan.tablet == p.tablet));
            let t = s.tablets.get(&p.tablet).unwrap();
            let dest = s.backends.get(&p.dest).unwrap();
            prop_assert!(dest.liveness.alive && !dest.disable_load);
            prop_assert_eq!(dest.membership, BackendMembership::Active);
            prop_assert!(!t.replicas.iter().any(|r| r.backend == p.dest), "dest holds the tablet");
            for r in t.replicas.iter().filter(|r| Some(r.backend) != p.replaces) {
                let host = &s.backends.get(&r.backend).map(|b| b.addr.host.clone());
                prop_assert!(host.as_deref() != Some(dest.addr.host.as_str()), "host shared");
            }
            let src = s.backends.get(&p.source).unwrap();
            prop_assert!(src.liveness.alive);
            prop_assert!(t.replicas.iter().any(|r| r.backend == p.source && r.state == ReplicaState::Normal));
            *sending.entry(p.source).or_insert(0u64) += 1;
            *receiving.entry(p.dest).or_insert(0u64) += 1;
        }
        // Counted here, not with the planner's own helper.
        for m in s.moves.values() {
            *sending.entry(m.plan.source).or_insert(0) += 1;
            *receiving.entry(m.plan.dest).or_insert(0) += 1;
        }
        let (send_max, recv_max) = (
            settings.values().clone_send_slots_per_backend,
            settings.values().clone_recv_slots_per_backend,
        );
        prop_assert!(sending.values().all(|n| *n <= send_max), "send slots exceeded: {:?}", sending);
        prop_assert!(receiving.values().all(|n| *n <= recv_max), "receive slots exceeded: {:?}", receiving);
        // What the planner proposes, the applier accepts.
        let mut s2 = s.clone();
        let started = moves::start_moves(&mut s2, now, &plans);
        prop_assert_eq!(started.len(), plans.len());
        prop_assert_eq!(s2.tablets.check_index(), Ok(()));
        // Half the moves fail, half finish: the index follows either way.
        for (i, id) in started.into_iter().enumerate() {
            if i % 2 == 0 {
                moves::abort_move(&mut s2, now, id, "failed in the test", true);
            } else {
                let m = s2.moves.get(&id).unwrap().clone();
                moves::finish_move(&mut s2, now, id, m.bytes, m.checksum.unwrap_or(0));
            }
            prop_assert_eq!(s2.tablets.check_index(), Ok(()));
        }
    }
}

#[test]
fn counts_that_cannot_be_even_do_not_swap_forever() {
    // 18 replicas on 4 backends: 5, 5, 4, 4 is as even as it gets.
    let mut s = cluster(4, 6, 3);
    let rounds = run_to_quiet(&mut s, 3);
    assert!(rounds <= 2, "balance kept moving: {rounds} rounds");
}

#[test]
fn a_tag_change_relocates_replicas_instead_of_adding_more() {
    let mut s = cluster(5, 4, 2);
    // Move one backend holding replicas into another tag.
    let holder = s.tablets.values().next().unwrap().replicas[0].backend;
    transition::registry::modify_backends(
        &mut s,
        &[BackendRef::Id(holder)],
        &[("tag.location".into(), "other".into())],
    )
    .unwrap();
    run_to_quiet(&mut s, 1);
    for t in s.tablets.values() {
        assert_eq!(
            t.replicas.len(),
            2,
            "tablet {} over-replicated: {:?}",
            t.id,
            t.replicas
        );
        assert!(t.replicas.iter().all(|r| r.backend != holder));
    }
}
