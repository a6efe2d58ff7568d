//! Issue 4, tables and tablets on real agents: CREATE TABLE places replicas on distinct
//! backends and hosts, evenly, and the agents hold real files whose CRC matches the catalog;
//! too few backends is refused naming the tag; allocation follows tags; DROP / RECOVER / FORCE
//! and the recycle-bin expiry; bad statements change nothing; garbage on an agent's ports
//! leaves it up.

mod common;

use common::agents::*;
use common::*;
use roster_client::QueryResult;
use roster_proto::pb::backend::SendReplicaRequest;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::Duration;

const FILL: u64 = 100_000;

/// Replicas per tablet: tablet -> [(backend, host, state, bytes, checksum)].
type Placement = BTreeMap<String, Vec<(String, String, String, u64, String)>>;

fn placement(r: &QueryResult) -> Placement {
    let mut out: Placement = BTreeMap::new();
    for i in 0..r.rows.len() {
        let host = column(r, i, "Host");
        let host = host.split(':').next().unwrap().to_string();
        out.entry(column(r, i, "TabletId")).or_default().push((
            column(r, i, "BackendId"),
            host,
            column(r, i, "State"),
            column(r, i, "LocalDataSize").parse().unwrap(),
            column(r, i, "Checksum"),
        ));
    }
    out
}

fn tablet_nums(r: &QueryResult) -> Vec<u64> {
    (0..r.rows.len())
        .map(|i| column(r, i, "TabletNum").parse().unwrap())
        .collect()
}

fn crc_of(path: &std::path::Path) -> (u64, String) {
    let data = std::fs::read(path).unwrap();
    (data.len() as u64, format!("{:08x}", crc32fast::hash(&data)))
}

async fn err_of(c: &roster_client::Client, sql: &str) -> String {
    match c.execute(sql).await {
        Ok(r) => panic!("{sql} succeeded: {r:?}"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_are_placed_created_dropped_and_recovered_on_real_agents() {
    let cluster = Cluster::start(3, 0);
    cluster.wait_leader(Duration::from_secs(20)).await;
    let all = [0, 1, 2];
    let c = cluster.client_of(&all);
    c.execute(r#"ADMIN SET FRONTEND CONFIG ("heartbeat_interval_second" = "1")"#)
        .await
        .unwrap();
    // Placement is what is tested here: keep the balancer from moving replicas afterwards.
    c.execute(r#"ADMIN SET FRONTEND CONFIG ("disable_balance" = "true")"#)
        .await
        .unwrap();
    let mut agents = start_agents(&cluster, 4);
    register(&cluster, &all, &agents).await;

    // 12 buckets x 3 replicas on 4 backends.
    let r = c
        .execute(&format!(
            "CREATE TABLE t (k INT, v VARCHAR(10)) DISTRIBUTED BY HASH(k) BUCKETS 12 \
             PROPERTIES (\"replication_num\" = \"3\", \"fill_bytes_per_tablet\" = \"{FILL}\")"
        ))
        .await
        .unwrap();
    assert!(r.message.contains("36 replicas"), "{}", r.message);
    // Every FE shows the same placement (a follower too).
    let follower = cluster.client(1);
    let tablets = placement(&follower.execute("SHOW TABLETS FROM t").await.unwrap());
    assert_eq!(tablets.len(), 12);
    let mut per_backend: BTreeMap<String, usize> = BTreeMap::new();
    for (tablet, replicas) in &tablets {
        assert_eq!(replicas.len(), 3, "tablet {tablet}: {replicas:?}");
        let backends: BTreeSet<_> = replicas.iter().map(|r| &r.0).collect();
        let hosts: BTreeSet<_> = replicas.iter().map(|r| &r.1).collect();
        assert_eq!(backends.len(), 3, "distinct backends for {tablet}");
        assert_eq!(hosts.len(), 3, "distinct hosts for {tablet}");
        let sums: BTreeSet<_> = replicas.iter().map(|r| &r.4).collect();
        assert_eq!(sums.len(), 1, "replicas of {tablet} hold the same bytes");
        for r in replicas {
            assert_eq!((r.2.as_str(), r.3), ("NORMAL", FILL), "{tablet}: {r:?}");
            *per_backend.entry(r.0.clone()).or_default() += 1;
        }
    }
    let counts: Vec<usize> = per_backend.values().copied().collect();
    assert_eq!(counts.len(), 4);
    assert!(
        counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1,
        "{per_backend:?}"
    );
    // The agents hold the files, and their bytes hash to what the catalog recorded.
    let ids: BTreeMap<String, usize> = (0..4).map(|i| ((10001 + i).to_string(), i)).collect();
    for (tablet, replicas) in &tablets {
        for r in replicas {
            let a = &agents[ids[&r.0]];
            let data = a.dir.join("tablets").join(tablet).join("data");
            assert_eq!(crc_of(&data), (r.3, r.4.clone()), "{}", data.display());
        }
    }
    let dist = c
        .execute("ADMIN SHOW REPLICA DISTRIBUTION FROM t")
        .await
        .unwrap();
    assert_eq!(dist.rows.len(), 4);
    for (i, want) in per_backend.values().enumerate() {
        assert_eq!(column(&dist, i, "ReplicaNum"), want.to_string());
    }
    wait_all(
        &cluster,
        &all,
        "SHOW BACKENDS",
        Duration::from_secs(5),
        "TabletNum on every FE",
        |r| tablet_nums(r).iter().sum::<u64>() == 36,
    )
    .await;
    let one = tablets.keys().next().unwrap();
    let r = c.execute(&format!("SHOW TABLET {one}")).await.unwrap();
    assert_eq!(r.rows.len(), 3);
    assert_eq!(column(&r, 0, "TableName"), "t");

    // replication_num 5 on 4 backends: refused, naming the tag, nothing created.
    let e = err_of(
        &c,
        r#"CREATE TABLE five (k INT) BUCKETS 2 PROPERTIES ("replication_num" = "5")"#,
    )
    .await;
    assert!(e.contains(r#""location" : "default""#), "{e}");
    let tables = c.execute("SHOW TABLES").await.unwrap();
    assert_eq!(tables.rows, vec![vec![Some("t".to_string())]]);

    // DROP TABLE: recycle bin, still counted, files kept; RECOVER brings it back.
    c.execute("DROP TABLE t").await.unwrap();
    let tables = c.execute("SHOW TABLES").await.unwrap();
    assert!(!tables.rows.contains(&vec![Some("t".to_string())]));
    let bin = c.execute("SHOW CATALOG RECYCLE BIN").await.unwrap();
    assert_eq!(column(&bin, 0, "Name"), "t");
    let r = c.execute("SHOW BACKENDS").await.unwrap();
    assert_eq!(tablet_nums(&r).iter().sum::<u64>(), 36);
    c.execute("RECOVER TABLE t").await.unwrap();
    assert_eq!(
        placement(&c.execute("SHOW TABLETS FROM t").await.unwrap()),
        tablets
    );
    assert!(
        c.execute("SHOW CATALOG RECYCLE BIN")
            .await
            .unwrap()
            .rows
            .is_empty()
    );

    // DROP TABLE FORCE: gone, and the agents delete the files.
    c.execute("DROP TABLE t FORCE").await.unwrap();
    let dropped: BTreeSet<u64> = tablets.keys().map(|k| k.parse().unwrap()).collect();
    wait_files(&agents, "t's files deleted", |held| {
        held.is_disjoint(&dropped)
    })
    .await;
    let r = c.execute("SHOW BACKENDS").await.unwrap();
    assert_eq!(tablet_nums(&r).iter().sum::<u64>(), 0);
    assert!(
        c.execute("SHOW CATALOG RECYCLE BIN")
            .await
            .unwrap()
            .rows
            .is_empty()
    );

    // Two tags: backends 10003 and 10004 move to g2; allocation default: 2, g2: 1.
    c.execute(r#"ALTER SYSTEM MODIFY BACKEND "10003", "10004" SET ("tag.location" = "g2")"#)
        .await
        .unwrap();
    c.execute(
        r#"CREATE TABLE tagged (k INT) BUCKETS 4 PROPERTIES ("replication_allocation" = "tag.location.default: 2, tag.location.g2: 1")"#,
    )
    .await
    .unwrap();
    let tagged = placement(&c.execute("SHOW TABLETS FROM tagged").await.unwrap());
    for (tablet, replicas) in &tagged {
        let mut b: Vec<&str> = replicas.iter().map(|r| r.0.as_str()).collect();
        b.sort();
        assert_eq!(b.len(), 3, "{tablet}");
        assert_eq!(&b[..2], ["10001", "10002"], "{tablet}: default tag");
        assert!(["10003", "10004"].contains(&b[2]), "{tablet}: g2 tag");
    }

    // Expiry: with catalog_trash_expire_second = 1 a dropped table is purged by the master.
    let tagged_ids: BTreeSet<u64> = tagged.keys().map(|k| k.parse().unwrap()).collect();
    c.execute(r#"ADMIN SET FRONTEND CONFIG ("catalog_trash_expire_second" = "1")"#)
        .await
        .unwrap();
    c.execute("DROP TABLE tagged").await.unwrap();
    wait_files(&agents, "expired table's files deleted", |held| {
        held.is_disjoint(&tagged_ids)
    })
    .await;
    wait_all(
        &cluster,
        &all,
        "SHOW CATALOG RECYCLE BIN",
        Duration::from_secs(10),
        "recycle bin empty after expiry",
        |r| r.rows.is_empty(),
    )
    .await;
    let e = err_of(&c, "RECOVER TABLE tagged").await;
    assert!(e.contains("not in the catalog recycle bin"), "{e}");

    // An agent restarted keeps its replicas.
    c.execute(r#"CREATE TABLE kept (k INT) BUCKETS 4 PROPERTIES ("replication_num" = "2", "fill_bytes_per_tablet" = "1000")"#)
        .await
        .unwrap();
    let before = agents[0].tablet_dirs();
    assert!(!before.is_empty());
    agents[0].kill9();
    agents[0].spawn();
    wait_all(
        &cluster,
        &[0],
        "SHOW TABLETS FROM kept",
        Duration::from_secs(15),
        "replicas stay NORMAL across an agent restart",
        |r| (0..r.rows.len()).all(|i| column(r, i, "State") == "NORMAL"),
    )
    .await;
    assert_eq!(agents[0].tablet_dirs(), before);

    // The clone source call: stream a replica from the agent's data port; the bytes hash to
    // the checksum the catalog holds.
    let kept = placement(&c.execute("SHOW TABLETS FROM kept").await.unwrap());
    let (tablet, replica) = kept
        .iter()
        .find_map(|(t, rs)| rs.iter().find(|r| r.0 == "10001").map(|r| (t, r)))
        .expect("agent 0 holds a replica of kept");
    let mut agent = agent_client(
        &format!("{}:{}", agents[0].host, agents[0].be_port),
        cluster.token.as_deref(),
    )
    .await;
    let mut stream = agent
        .send_replica(SendReplicaRequest {
            tablet_id: tablet.parse().unwrap(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.info.unwrap().bytes, replica.3);
    let mut data = Vec::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        data.extend_from_slice(&chunk.data);
    }
    assert_eq!(data.len() as u64, replica.3);
    assert_eq!(format!("{:08x}", crc32fast::hash(&data)), replica.4);
    let missing = agent
        .send_replica(SendReplicaRequest { tablet_id: 999_999 })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    // DROPP says how many tablets lost their last replica.
    c.execute(r#"CREATE TABLE single (k INT) BUCKETS 4 PROPERTIES ("replication_num" = "1")"#)
        .await
        .unwrap();
    let single = placement(&c.execute("SHOW TABLETS FROM single").await.unwrap());
    let on_10002 = single.values().filter(|rs| rs[0].0 == "10002").count();
    assert!(on_10002 > 0, "{single:?}");
    let r = c
        .execute(r#"ALTER SYSTEM DROPP BACKEND "10002""#)
        .await
        .unwrap();
    assert!(
        r.message
            .contains(&format!("{on_10002} tablets lost their last replica")),
        "{}",
        r.message
    );
}

/// Wait until `pred` holds for the set of replica directories across all agents.
async fn wait_files(agents: &[Agent], what: &str, pred: impl Fn(&BTreeSet<u64>) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let held: BTreeSet<u64> = agents.iter().flat_map(|a| a.tablet_dirs()).collect();
        if pred(&held) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: still held {held:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_table_statements_change_nothing_and_agents_survive_garbage() {
    let cluster = Cluster::start(3, 0);
    cluster.wait_leader(Duration::from_secs(20)).await;
    let all = [0, 1, 2];
    let c = cluster.client_of(&all);
    let mut agents = start_agents(&cluster, 3);
    register(&cluster, &all, &agents).await;
    c.execute("CREATE TABLE t (k INT) BUCKETS 3").await.unwrap();
    let snapshot = || async {
        (
            c.execute("SHOW TABLES").await.unwrap().rows,
            c.execute("SHOW TABLETS FROM t").await.unwrap().rows,
            c.execute("SHOW CATALOG RECYCLE BIN").await.unwrap().rows,
        )
    };
    let before = snapshot().await;
    let cases = [
        ("CREATE TABLE z (k INT) BUCKETS 0", "invalid BUCKETS 0"),
        (
            "CREATE TABLE z (k INT) BUCKETS 769",
            "BUCKETS must be from 1 to 768",
        ),
        (
            r#"CREATE TABLE z (k INT) BUCKETS 2 PROPERTIES ("colour" = "red")"#,
            r#"unknown property "colour""#,
        ),
        (
            r#"CREATE TABLE z (k INT) BUCKETS 2 PROPERTIES ("replication_allocation" = "tag.location.default 3")"#,
            "is not of the form tag.location.<tag>: <count>",
        ),
        (
            r#"CREATE TABLE z (k INT) BUCKETS 2 PROPERTIES ("replication_allocation" = "location.default: 3")"#,
            "is not tag.location.<tag>",
        ),
        (
            r#"CREATE TABLE z (k INT) BUCKETS 2 PROPERTIES ("replication_num" = "-1")"#,
            "replication_num",
        ),
        (
            "CREATE TABLE z (k INT) DISTRIBUTED BY HASH(nope) BUCKETS 2",
            "distribution column 'nope'",
        ),
        (
            "CREATE TABLE t (k INT) BUCKETS 2",
            "Table 't' already exists",
        ),
        ("DROP TABLE nope", "Unknown table 'nope'"),
        ("DROP TABLE nope FORCE", "Unknown table 'nope'"),
        (
            "RECOVER TABLE nope",
            "'nope' is not in the catalog recycle bin",
        ),
        ("RECOVER TABLE t", "Table 't' already exists"),
        ("SHOW TABLETS FROM nope", "Unknown table 'nope'"),
        (
            "ADMIN SHOW REPLICA DISTRIBUTION FROM nope",
            "Unknown table 'nope'",
        ),
        ("SHOW TABLET 424242", "tablet 424242 does not exist"),
        ("CREATE TABLE z (k INT) BUCKETS", "line 1"),
    ];
    for (sql, want) in cases {
        let e = err_of(&c, sql).await;
        assert!(e.contains(want), "{sql}: {e}");
    }
    assert_eq!(
        snapshot().await,
        before,
        "a refused statement changed something"
    );
    // IF EXISTS / IF NOT EXISTS are not errors and change nothing either.
    c.execute("DROP TABLE IF EXISTS nope").await.unwrap();
    c.execute("CREATE TABLE IF NOT EXISTS t (k INT) BUCKETS 9")
        .await
        .unwrap();
    assert_eq!(snapshot().await, before);

    // Garbage on both of an agent's ports: it stays up and keeps answering heartbeats.
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
    for port in [agents[0].port, agents[0].be_port] {
        let addr = format!("{}:{port}", agents[0].host);
        for payload in [
            garbage.as_slice(),
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".as_slice(),
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\xff\xff\xff\xff\xff".as_slice(),
        ] {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            let _ = s.write_all(payload);
            drop(s);
        }
        // Half-open connection left dangling.
        let _dangling = std::net::TcpStream::connect(&addr).unwrap();
    }
    assert!(agents[0].is_running(), "the agent exited on garbage");
    c.execute(r#"ADMIN SET FRONTEND CONFIG ("heartbeat_interval_second" = "1")"#)
        .await
        .unwrap();
    // Still serving: a new table lands replicas on every agent, agent 0 included.
    c.execute("CREATE TABLE after_garbage (k INT) BUCKETS 3")
        .await
        .unwrap();
    let r = c.execute("SHOW TABLETS FROM after_garbage").await.unwrap();
    assert!((0..r.rows.len()).all(|i| column(&r, i, "State") == "NORMAL"));
    assert!(
        (0..r.rows.len()).any(|i| column(&r, i, "BackendId") == "10001"),
        "agent 0 got replicas"
    );
    assert!(agents[0].is_running());
}
