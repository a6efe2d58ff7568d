use super::*;
use crate::model::backend::{BackendMembership, HostPort};
use crate::model::catalog::*;
use crate::query::catalog::*;
use crate::{query, transition};
use proptest::prelude::*;

/// A state with one alive backend per `(host, tag)`, ids from 10001 in order.
fn cluster(backends: &[(&str, &str)]) -> ClusterState {
    let mut s = ClusterState::default();
    for (host, tag) in backends {
        let props = vec![("tag.location".to_string(), tag.to_string())];
        let ids =
            transition::registry::add_backends(&mut s, 0, &[HostPort::new(*host, 9050)], &props)
                .unwrap();
        s.backends.get_mut(&ids[0]).unwrap().liveness.alive = true;
    }
    s
}

fn def(name: &str, buckets: u32, props: &[(&str, &str)]) -> TableDef {
    TableDef {
        name: name.to_string(),
        if_not_exists: false,
        columns: vec![("k".into(), "INT".into())],
        hash_columns: vec!["k".into()],
        buckets,
        properties: props
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn four() -> ClusterState {
    cluster(&[
        ("h1", "default"),
        ("h2", "default"),
        ("h3", "default"),
        ("h4", "default"),
    ])
}

fn hosts_of(s: &ClusterState, t: &Tablet) -> Vec<String> {
    t.replicas
        .iter()
        .map(|r| s.backends.get(&r.backend).unwrap().addr.host.clone())
        .collect()
}

#[test]
fn twelve_buckets_three_replicas_spread_evenly_on_distinct_backends() {
    let mut s = four();
    let (id, created) =
        create_table(&mut s, 5, &def("t", 12, &[("replication_num", "3")])).unwrap();
    assert!(created);
    let table = s.tables.get(&id).unwrap();
    assert_eq!(table.tablets.len(), 12);
    for tid in &table.tablets {
        let t = s.tablets.get(tid).unwrap();
        let mut hosts = hosts_of(&s, t);
        hosts.sort();
        hosts.dedup();
        assert_eq!(hosts.len(), 3, "tablet {tid} replicas {:?}", t.replicas);
        assert!(t.replicas.iter().all(|r| r.state == ReplicaState::Creating));
    }
    let counts = replica_counts(&s);
    assert_eq!(counts.len(), 4);
    let (min, max) = (
        counts.values().min().unwrap(),
        counts.values().max().unwrap(),
    );
    assert!(max - min <= 1, "{counts:?}");
    assert_eq!(counts.values().sum::<usize>(), 36);
}

#[test]
fn too_few_backends_is_refused_naming_the_tag_and_changes_nothing() {
    let mut s = four();
    let before = s.clone();
    let err = create_table(&mut s, 5, &def("t", 12, &[("replication_num", "5")])).unwrap_err();
    assert!(
        matches!(&err, DomainError::NotEnoughBackends { tag, needed: 5, eligible: 4, .. } if tag == "default"),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("\"location\" : \"default\""),
        "{err}"
    );
    assert_eq!(s, before);
}

#[test]
fn replicas_never_share_a_host() {
    let mut s = cluster(&[("a", "default"), ("b", "default")]);
    let ids =
        transition::registry::add_backends(&mut s, 0, &[HostPort::new("a", 9051)], &[]).unwrap();
    s.backends.get_mut(&ids[0]).unwrap().liveness.alive = true;
    let err = create_table(&mut s, 5, &def("t", 1, &[("replication_num", "3")])).unwrap_err();
    assert!(err.to_string().contains("on 2 distinct host(s)"), "{err}");
    create_table(&mut s, 5, &def("t", 4, &[("replication_num", "2")])).unwrap();
    for t in s.tablets.values() {
        let h = hosts_of(&s, t);
        assert_ne!(h[0], h[1]);
    }
}

#[test]
fn allocation_follows_tags() {
    let mut s = cluster(&[
        ("h1", "g1"),
        ("h2", "g1"),
        ("h3", "g1"),
        ("h4", "g2"),
        ("h5", "g2"),
    ]);
    let alloc = "tag.location.g1: 2, tag.location.g2: 1";
    let (id, _) = create_table(
        &mut s,
        5,
        &def("t", 6, &[("replication_allocation", alloc)]),
    )
    .unwrap();
    assert_eq!(s.tables.get(&id).unwrap().allocation.to_string(), alloc);
    for t in s.tablets.values() {
        let tags: Vec<&str> = t
            .replicas
            .iter()
            .map(|r| s.backends.get(&r.backend).unwrap().tags.location.as_str())
            .collect();
        assert_eq!(tags.iter().filter(|t| **t == "g1").count(), 2, "{tags:?}");
        assert_eq!(tags.iter().filter(|t| **t == "g2").count(), 1, "{tags:?}");
    }
    let err = create_table(
        &mut s,
        5,
        &def("u", 1, &[("replication_allocation", "tag.location.g2: 3")]),
    )
    .unwrap_err();
    assert!(err.to_string().contains("\"location\" : \"g2\""), "{err}");
}

#[test]
fn only_schedulable_backends_receive_replicas() {
    let mut s = cluster(&[
        ("h1", "default"),
        ("h2", "default"),
        ("h3", "default"),
        ("h4", "default"),
        ("h5", "default"),
        ("h6", "default"),
    ]);
    s.backends
        .get_mut(&crate::BackendId(10001))
        .unwrap()
        .liveness
        .alive = false;
    s.backends
        .get_mut(&crate::BackendId(10002))
        .unwrap()
        .membership = BackendMembership::Decommissioning;
    s.backends
        .get_mut(&crate::BackendId(10003))
        .unwrap()
        .disable_load = true;
    {
        let full = &mut s
            .backends
            .get_mut(&crate::BackendId(10004))
            .unwrap()
            .liveness;
        full.total_capacity_bytes = 100;
        full.avail_capacity_bytes = 0;
    }
    create_table(&mut s, 5, &def("t", 3, &[("replication_num", "2")])).unwrap();
    let used: std::collections::BTreeSet<u64> = replica_counts(&s).keys().map(|b| b.0).collect();
    assert_eq!(used, [10005, 10006].into());
    let err = create_table(&mut s, 5, &def("u", 1, &[("replication_num", "3")])).unwrap_err();
    assert!(
        matches!(err, DomainError::NotEnoughBackends { eligible: 2, .. }),
        "{err}"
    );
}

#[test]
fn bad_definitions_are_refused_and_change_nothing() {
    let mut s = four();
    let before = s.clone();
    let cases: Vec<(TableDef, &str)> = vec![
        (def("t", 0, &[]), "BUCKETS must be from 1"),
        (def("t", 769, &[]), "BUCKETS must be from 1"),
        (
            def("t", 1, &[("colour", "red")]),
            "unknown property \"colour\"",
        ),
        (def("t", 1, &[("replication_num", "0")]), "replication_num"),
        (def("t", 1, &[("replication_num", "x")]), "replication_num"),
        (
            def("t", 1, &[("replication_allocation", "g1: 2")]),
            "is not tag.location.<tag>",
        ),
        (
            def("t", 1, &[("replication_allocation", "tag.location.g1 2")]),
            "is not of the form",
        ),
        (
            def("t", 1, &[("replication_allocation", "tag.location.g1: 0")]),
            "not a count of at least 1",
        ),
        (
            def(
                "t",
                1,
                &[(
                    "replication_allocation",
                    "tag.location.a: 1, tag.location.a: 1",
                )],
            ),
            "named twice",
        ),
        (
            def(
                "t",
                1,
                &[
                    ("replication_num", "1"),
                    ("replication_allocation", "tag.location.a: 1"),
                ],
            ),
            "not both",
        ),
        (def("1t", 1, &[]), "must start with a letter"),
        (
            def("t", 1, &[("fill_bytes_per_tablet", "-1")]),
            "fill_bytes_per_tablet",
        ),
    ];
    for (d, want) in cases {
        let err = create_table(&mut s, 5, &d).unwrap_err();
        assert!(err.to_string().contains(want), "{d:?}: {err}");
        assert_eq!(s, before, "{d:?} changed the state");
    }
    let mut d = def("t", 1, &[]);
    d.hash_columns = vec!["nope".into()];
    assert!(create_table(&mut s, 5, &d).is_err());
    assert_eq!(s, before);
}

#[test]
fn drop_recover_force_and_expiry() {
    let mut s = four();
    let (id, _) = create_table(&mut s, 5, &def("t", 4, &[])).unwrap();
    assert_eq!(
        create_table(&mut s, 6, &def("t", 4, &[])).unwrap_err(),
        DomainError::TableExists("t".into())
    );
    let mut again = def("T", 4, &[]);
    again.if_not_exists = true;
    assert_eq!(create_table(&mut s, 6, &again).unwrap(), (id, false));

    assert_eq!(drop_table(&mut s, 10, "t", false, false).unwrap(), Some(id));
    assert!(table_by_name(&s, "t").is_none());
    assert_eq!(
        replica_counts(&s).values().sum::<usize>(),
        12,
        "recycled replicas still count"
    );
    assert_eq!(recover_table(&mut s, "t").unwrap(), id);
    assert_eq!(table_by_name(&s, "t").unwrap().id, id);

    // Dropped again; a new table takes the name; RECOVER is refused while it exists.
    drop_table(&mut s, 20, "t", false, false).unwrap();
    let (id2, _) = create_table(&mut s, 21, &def("t", 1, &[])).unwrap();
    assert_eq!(
        recover_table(&mut s, "t").unwrap_err(),
        DomainError::TableExists("t".into())
    );
    drop_table(&mut s, 22, "t", false, true).unwrap();
    assert!(s.tables.get(&id2).is_none(), "FORCE removes at once");
    assert_eq!(s.tablets.len(), 4);

    // Expiry after catalog_trash_expire_second (86400 s by default).
    assert!(expire_recycle_bin(&mut s, 20 + 86_400_000 - 1).is_empty());
    assert_eq!(expire_recycle_bin(&mut s, 20 + 86_400_000), vec![id]);
    assert!(s.tables.is_empty() && s.tablets.is_empty());
    assert_eq!(
        recover_table(&mut s, "t").unwrap_err(),
        DomainError::NotInRecycleBin("t".into())
    );
}

#[test]
fn unknown_tables_are_refused_and_change_nothing() {
    let mut s = four();
    create_table(&mut s, 5, &def("t", 2, &[])).unwrap();
    let before = s.clone();
    assert_eq!(
        drop_table(&mut s, 6, "nope", false, false).unwrap_err(),
        DomainError::UnknownTable("nope".into())
    );
    assert_eq!(drop_table(&mut s, 6, "nope", true, false).unwrap(), None);
    assert_eq!(
        recover_table(&mut s, "nope").unwrap_err(),
        DomainError::NotInRecycleBin("nope".into())
    );
    assert_eq!(s, before);
}

#[test]
fn reports_turn_replicas_normal_and_dropp_counts_lost_tablets() {
    let mut s = cluster(&[("h1", "default"), ("h2", "default")]);
    create_table(&mut s, 5, &def("t", 2, &[("replication_num", "1")])).unwrap();
    let t = s.tablets.values().next().unwrap().clone();
    let b = t.replicas[0].backend;
    let changed = record_replicas(
        &mut s,
        &[
            ReplicaReport {
                tablet: t.id,
                backend: b,
                bytes: 42,
                checksum: 7,
            },
            // Not placed there: ignored.
            ReplicaReport {
                tablet: t.id,
                backend: crate::BackendId(99999),
                bytes: 1,
                checksum: 1,
            },
        ],
    );
    assert_eq!(changed, vec![t.id]);
    let r = &s.tablets.get(&t.id).unwrap().replicas[0];
    assert_eq!(
        (r.state, r.bytes, r.checksum),
        (ReplicaState::Normal, 42, Some(7))
    );
    let (_, lost) =
        transition::registry::dropp_backends(&mut s, 9, &[crate::BackendRef::Id(b)]).unwrap();
    assert_eq!(lost, 1);
    assert!(!replica_counts(&s).contains_key(&b));
}

proptest! {
    /// Whatever the backends, a placement that succeeds respects every rule.
    #[test]
    fn placement_respects_the_rules(
        backends in prop::collection::vec((0u8..4, 0u8..2, any::<bool>(), any::<bool>()), 1..10),
        g0 in 0usize..4, g1 in 0usize..3, buckets in 1u32..20,
    ) {
        let mut s = ClusterState::default();
        for (i, (host, tag, alive, load_disabled)) in backends.iter().enumerate() {
            let props = vec![("tag.location".to_string(), format!("g{tag}"))];
            let ids = transition::registry::add_backends(&mut s, 0, &[HostPort::new(format!("h{host}"), 9000 + i as u16)], &props).unwrap();
            let b = s.backends.get_mut(&ids[0]).unwrap();
            b.liveness.alive = *alive;
            b.disable_load = *load_disabled;
        }
        let mut parts = vec![];
        if g0 > 0 { parts.push(format!("tag.location.g0: {g0}")); }
        if g1 > 0 { parts.push(format!("tag.location.g1: {g1}")); }
        prop_assume!(!parts.is_empty());
        let d = def("t", buckets, &[("replication_allocation", &parts.join(", "))]);
        let before = s.clone();
        match create_table(&mut s, 1, &d) {
            Ok(_) => {
                prop_assert_eq!(s.tablets.check_index(), Ok(()));
                for t in s.tablets.values() {
                    let mut hosts = hosts_of(&s, t);
                    prop_assert_eq!(t.replicas.len(), g0 + g1);
                    hosts.sort();
                    hosts.dedup();
                    prop_assert_eq!(hosts.len(), g0 + g1, "hosts shared");
                    for r in &t.replicas {
                        let b = s.backends.get(&r.backend).unwrap();
                        prop_assert!(query::placement::is_schedulable(b));
                    }
                    let n0 = t.replicas.iter().filter(|r| s.backends.get(&r.backend).unwrap().tags.location == "g0").count();
                    prop_assert_eq!(n0, g0);
                }
            }
            Err(e) => {
                prop_assert!(matches!(e, DomainError::NotEnoughBackends { .. }), "{}", e);
                prop_assert_eq!(s, before);
            }
        }
    }
}

/// Placement as it was before the catalog had its index (a scan of the tag per replica, the
/// loads counted from every tablet): every FE must place alike, old builds and new ones
/// applying the same CREATE TABLE during a rolling upgrade included.
fn reference_place(
    s: &ClusterState,
    alloc: &ReplicaAllocation,
    tablets: &[TabletId],
) -> Option<Vec<Vec<BackendId>>> {
    let mut load: std::collections::BTreeMap<BackendId, usize> = Default::default();
    for t in s.tablets.values() {
        for r in &t.replicas {
            *load.entry(r.backend).or_insert(0) += 1;
        }
    }
    let mut out = Vec::new();
    for _ in tablets {
        let mut chosen: Vec<BackendId> = Vec::new();
        let mut hosts: std::collections::BTreeSet<&str> = Default::default();
        for (tag, n) in &alloc.0 {
            for _ in 0..*n {
                let b = s
                    .backends
                    .values()
                    .filter(|b| query::placement::is_schedulable(b) && b.tags.location == *tag)
                    .filter(|b| !chosen.contains(&b.id) && !hosts.contains(b.addr.host.as_str()))
                    .min_by_key(|b| (load.get(&b.id).copied().unwrap_or(0), b.id))?;
                chosen.push(b.id);
                hosts.insert(b.addr.host.as_str());
                *load.entry(b.id).or_insert(0) += 1;
            }
        }
        out.push(chosen);
    }
    Some(out)
}

proptest! {
    /// The indexed placement chooses exactly what the scan chose, on a catalog that already
    /// holds replicas (uneven loads) and whatever the backends.
    #[test]
    fn placement_chooses_as_the_scan_did(
        backends in prop::collection::vec((0u8..6, 0u8..2, any::<bool>()), 1..12),
        first in 1u32..30, g0 in 1usize..4, g1 in 0usize..3, buckets in 1u32..40,
    ) {
        let mut s = ClusterState::default();
        for (i, (host, tag, alive)) in backends.iter().enumerate() {
            let props = vec![("tag.location".to_string(), format!("g{tag}"))];
            let ids = transition::registry::add_backends(&mut s, 0, &[HostPort::new(format!("h{host}"), 9000 + i as u16)], &props).unwrap();
            s.backends.get_mut(&ids[0]).unwrap().liveness.alive = *alive;
        }
        let _ = create_table(&mut s, 1, &def("first", first, &[("replication_allocation", "tag.location.g0: 1")]));
        let mut parts = vec![format!("tag.location.g0: {g0}")];
        if g1 > 0 { parts.push(format!("tag.location.g1: {g1}")); }
        let alloc = ReplicaAllocation::parse("replication_allocation", &parts.join(", ")).unwrap();
        let ids: Vec<TabletId> = (0..buckets as u64).map(|i| TabletId(900_000 + i)).collect();
        let now = query::placement::place_tablets(&s, &alloc, &ids).ok();
        prop_assert_eq!(now, reference_place(&s, &alloc, &ids));
    }
}

#[test]
fn lost_replicas_are_forgotten_only_when_normal() {
    let mut s = cluster(&[("h1", "default"), ("h2", "default")]);
    create_table(&mut s, 5, &def("t", 1, &[("replication_num", "2")])).unwrap();
    let t = s.tablets.values().next().unwrap().clone();
    let (a, b) = (t.replicas[0].backend, t.replicas[1].backend);
    // Still CREATING: not lost, just not made yet.
    assert_eq!(forget_lost(&mut s, &[(t.id, a)]), 0);
    record_replicas(
        &mut s,
        &[ReplicaReport {
            tablet: t.id,
            backend: a,
            bytes: 1,
            checksum: 1,
        }],
    );
    assert_eq!(forget_lost(&mut s, &[(t.id, a), (t.id, b)]), 1);
    let left: Vec<_> = s
        .tablets
        .get(&t.id)
        .unwrap()
        .replicas
        .iter()
        .map(|r| r.backend)
        .collect();
    assert_eq!(left, vec![b]);
}

/// Figures for issue 16 (not a check: `cargo test --release -p roster-membership -- --ignored
/// --nocapture scale_figures`): CREATE TABLE of 768 buckets applied to a catalog of 1M
/// tablets on 1,000 backends, and a DECOMMISSION pre-check of one of those backends, each
/// against what the full scan it replaced costs on the same state.
#[test]
#[ignore]
fn scale_figures() {
    use std::time::Instant;
    let hosts: Vec<String> = (0..1000).map(|i| format!("h{i}")).collect();
    let backends: Vec<(&str, &str)> = hosts.iter().map(|h| (h.as_str(), "default")).collect();
    let mut s = cluster(&backends);
    let tables = 1_000_000 / 768 + 1;
    let started = Instant::now();
    for i in 0..tables {
        create_table(&mut s, 1, &def(&format!("t{i}"), 768, &[])).unwrap();
    }
    // As the agents would report them: NORMAL, so the pre-check looks for destinations.
    let ids: Vec<TabletId> = s.tablets.keys().copied().collect();
    for id in ids {
        s.tablets.update(&id, |t| {
            for r in &mut t.replicas {
                r.state = ReplicaState::Normal;
            }
        });
    }
    println!(
        "built {} tablets on {} backends in {:?}",
        s.tablets.len(),
        s.backends.len(),
        started.elapsed()
    );
    let t = Instant::now();
    create_table(&mut s, 1, &def("one_more", 768, &[])).unwrap();
    println!("CREATE TABLE of 768 buckets at apply: {:?}", t.elapsed());
    let t = Instant::now();
    let mut scanned: std::collections::BTreeMap<BackendId, usize> = Default::default();
    for tablet in s.tablets.values() {
        for r in &tablet.replicas {
            *scanned.entry(r.backend).or_default() += 1;
        }
    }
    println!(
        "  (the full replica count it no longer does: {:?})",
        t.elapsed()
    );
    assert_eq!(scanned, replica_counts(&s));
    let b = *s.backends.keys().next().unwrap();
    let leaving = std::collections::BTreeSet::from([b]);
    let t = Instant::now();
    let blockers = query::drain::precheck(&s, &leaving);
    println!(
        "DECOMMISSION pre-check of backend {b} ({} replicas): {:?}, {} blockers",
        s.tablets.count_on(b),
        t.elapsed(),
        blockers.len()
    );
    for b in blockers.iter().take(3) {
        println!(
            "  blocker: tablet {} on {}: {}",
            b.tablet, b.backend, b.reason
        );
    }
    let t = Instant::now();
    s.tablets.check_index().unwrap();
    println!("  (a full recount of the index: {:?})", t.elapsed());
}
