//! A follower that falls behind the leader's purged log catches up through a snapshot streamed
//! over the Raft service, installed atomically, and survives a restart after that.

mod common;

use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_follower_catches_up_by_snapshot() {
    let mut cluster = Cluster::start_with(
        3,
        0,
        "snapshot_logs_since_last = 20\nmax_in_snapshot_log_to_keep = 5\n",
    );
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let lagger = (leader + 1) % 3;
    let others: Vec<usize> = (0..3).filter(|i| *i != lagger).collect();
    let client = cluster.client_of(&others);
    client
        .execute(r#"ALTER SYSTEM ADD BACKEND "127.3.0.0:1""#)
        .await
        .unwrap();
    let lagger_applied = cluster.client(lagger).status().await.unwrap().last_applied;
    cluster.kill9(lagger);

    let mut want = vec!["127.3.0.0:1".to_string()];
    for k in 1..=80 {
        let a = format!("127.3.0.{k}:1");
        exec_retry(
            &client,
            &format!(r#"ALTER SYSTEM ADD BACKEND "{a}""#),
            Duration::from_secs(20),
        )
        .await
        .unwrap();
        want.push(a);
    }
    // The leader purged entries the lagging FE never received: only a snapshot can help it.
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let s = cluster.client(leader).status().await.unwrap();
        if s.purged_index > lagger_applied + 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the leader never purged its log: {s:?}"
        );
        client
            .execute(
                "ALTER SYSTEM MODIFY BACKEND \"127.3.0.0:1\" SET (\"disable_load\" = \"true\")",
            )
            .await
            .unwrap();
    }

    cluster.spawn(lagger);
    let r = exec_retry(
        &cluster.client(lagger),
        "SHOW BACKENDS",
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let mut got = backend_addrs(&r);
    got.sort();
    want.sort();
    assert_eq!(got, want, "lagging FE did not catch up\n{}", cluster.logs());
    let s = cluster.client(lagger).status().await.unwrap();
    assert!(
        s.snapshot_index > lagger_applied,
        "the lagging FE has no snapshot past its old position: {s:?}"
    );

    // The installed state is durable: restart it again and read its local state (stale mode,
    // so the answer comes from its own files even before it hears from the leader). Entries
    // applied after the install may be re-applied only once the leader is heard from (the
    // state machine persists at most once a second; the log holds them meanwhile).
    cluster.kill9(lagger);
    cluster.spawn(lagger);
    let mut cfg = client_config(vec![cluster.nodes[lagger].rpc_addr()]);
    cfg.stale_reads = true;
    let stale = roster_client::Client::new(cfg).unwrap();
    let r = exec_retry(&stale, "SHOW BACKENDS", Duration::from_secs(20))
        .await
        .unwrap();
    let st = cluster.client(lagger).status().await.unwrap();
    assert!(
        st.last_applied >= s.snapshot_index,
        "after a restart fe{} is at {}, before its snapshot at {}",
        lagger + 1,
        st.last_applied,
        s.snapshot_index
    );
    assert!(
        backend_addrs(&r).len() > 1,
        "the restarted FE lost the installed state: {:?}",
        backend_addrs(&r)
    );
    let r = exec_retry(
        &cluster.client(lagger),
        "SHOW BACKENDS",
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert_eq!(backend_addrs(&r).len(), want.len());
}
