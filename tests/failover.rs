//! Acceptance 3: ADD BACKEND through a follower; every FE shows it (a linearizable read after
//! the acknowledged write); kill -9 the leader; a new leader within a few election timeouts;
//! writes go on; the killed FE restarts from its redb files and catches up; nothing
//! acknowledged is missing.

mod common;

use common::*;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_leader_and_restart_loses_nothing() {
    let mut cluster = Cluster::start(3, 0);
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let follower = (leader + 1) % 3;

    // A write through a follower, read back on every FE with a single-endpoint client, so the
    // read is served by that FE (linearizable: it must see the acknowledged write).
    cluster
        .client(follower)
        .execute(r#"ALTER SYSTEM ADD BACKEND "127.1.0.1:9050""#)
        .await
        .expect("add via follower");
    for i in 0..3 {
        let r = cluster
            .client(i)
            .execute("SHOW BACKENDS")
            .await
            .expect("show backends");
        assert_eq!(
            backend_addrs(&r),
            vec!["127.1.0.1:9050"],
            "fe{} does not show the acknowledged write",
            i + 1
        );
    }

    let mut acked = vec!["127.1.0.1:9050".to_string()];
    for k in 2..=5 {
        let addr = format!("127.1.0.{k}:9050");
        cluster
            .client(follower)
            .execute(&format!("ALTER SYSTEM ADD BACKEND \"{addr}\""))
            .await
            .expect("add");
        acked.push(addr);
    }

    // kill -9 the leader; the survivors elect a new one within a few election timeouts
    // (election timeout max is 1.5 s here).
    cluster.kill9(leader);
    let t0 = Instant::now();
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let new_leader = cluster.wait_leader(Duration::from_secs(10)).await;
    assert_ne!(new_leader, leader);
    let failover = t0.elapsed();
    assert!(
        failover < Duration::from_secs(8),
        "failover took {failover:?}"
    );

    // Writes go on, through both survivors.
    let client = cluster.client_of(&survivors);
    for k in 6..=12 {
        let addr = format!("127.1.0.{k}:9050");
        exec_retry(
            &client,
            &format!("ALTER SYSTEM ADD BACKEND \"{addr}\""),
            Duration::from_secs(20),
        )
        .await
        .expect("add after failover");
        acked.push(addr);
    }

    // Restart the killed FE from its files; it catches up and serves a linearizable read that
    // holds every acknowledged write.
    cluster.spawn(leader);
    let r = exec_retry(
        &cluster.client(leader),
        "SHOW BACKENDS",
        Duration::from_secs(30),
    )
    .await
    .expect("read on restarted FE");
    let mut got = backend_addrs(&r);
    got.sort();
    let mut want = acked.clone();
    want.sort();
    assert_eq!(
        got,
        want,
        "restarted FE misses acknowledged writes\n{}",
        cluster.logs()
    );

    // Its own applied state (a stale read needs no leader) caught up too.
    let mut cfg = client_config(vec![cluster.nodes[leader].rpc_addr()]);
    cfg.stale_reads = true;
    let stale = roster_client::Client::new(cfg).unwrap();
    let r = stale.execute("SHOW BACKENDS").await.expect("stale read");
    assert_eq!(backend_addrs(&r).len(), acked.len());
    assert!(
        r.message.starts_with("stale read"),
        "a stale read says so: {:?}",
        r.message
    );
}

/// A leader killed and started again at once never resumes its old term: it must win a new
/// election. Its log may lack entries it had committed through the followers before its own
/// fsync (appends return before their fsync), so resuming would write other entries under the
/// same log ids (openraft's `enable_leader_restore`, off in `roster_node`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_leader_does_not_resume_its_term() {
    let mut cluster = Cluster::start(3, 0);
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let term = cluster.client(leader).status().await.expect("status").term;
    cluster.kill9(leader);
    // Back well within the followers' lease, so they have not elected anyone yet.
    cluster.spawn(leader);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let l = cluster.wait_leader(Duration::from_secs(20)).await;
        if let Ok(s) = cluster
            .client(l)
            .status_within(Duration::from_millis(500))
            .await
            && s.is_leader
        {
            assert!(
                s.term > term,
                "fe{} leads term {} again (the term it led before fe{} was killed)",
                l + 1,
                s.term,
                leader + 1
            );
            break;
        }
        assert!(Instant::now() < deadline, "no leader answered within 30 s");
    }
}
