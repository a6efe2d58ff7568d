//! Issue 4, first slice: real backend agents heartbeated by the master. Backends turn Alive on
//! every FE; kill -9 of an agent turns it dead everywhere; a restart shows a new
//! LastStartTime; a leader change does not mark live backends dead.

mod common;

use common::agents::*;
use common::*;
use roster_client::QueryResult;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_turn_alive_dead_and_alive_again_on_every_fe() {
    let mut cluster = Cluster::start(3, 0);
    cluster.wait_leader(Duration::from_secs(20)).await;
    let c = cluster.client_of(&[0, 1, 2]);
    c.execute(r#"ADMIN SET FRONTEND CONFIG ("heartbeat_interval_second" = "1")"#)
        .await
        .unwrap();

    let mut agents = start_agents(&cluster, 4);
    let addrs: Vec<String> = agents.iter().map(|a| format!("\"{}\"", a.addr())).collect();
    c.execute(&format!("ALTER SYSTEM ADD BACKEND {}", addrs.join(", ")))
        .await
        .unwrap();

    let all = [0, 1, 2];
    let alive = |r: &QueryResult, i: usize| column(r, i, "Alive") == "true";
    wait_all(
        &cluster,
        &all,
        "SHOW BACKENDS",
        Duration::from_secs(15),
        "all four alive",
        |r| r.rows.len() == 4 && (0..4).all(|i| alive(r, i)),
    )
    .await;
    let r = c.execute("SHOW BACKENDS").await.unwrap();
    for (i, a) in agents.iter().enumerate() {
        assert_eq!(column(&r, i, "BePort"), a.be_port.to_string());
        assert!(
            !column(&r, i, "LastStartTime").is_empty() && column(&r, i, "LastStartTime") != "NULL"
        );
        assert!(
            column(&r, i, "TotalCapacity") != "0.000 B",
            "capacity reported"
        );
    }
    let first_start = column(&r, 0, "LastStartTime");

    // kill -9 one agent: dead on every FE, with a reason.
    agents[0].kill9();
    wait_all(
        &cluster,
        &all,
        "SHOW BACKENDS",
        Duration::from_secs(10),
        "agent 0 dead",
        |r| !alive(r, 0) && (1..4).all(|i| alive(r, i)),
    )
    .await;
    let r = cluster.client(1).execute("SHOW BACKENDS").await.unwrap();
    assert!(
        !column(&r, 0, "ErrMsg").is_empty(),
        "a dead backend says why"
    );

    // Restart it (start times have 1 ms resolution: make sure the clock moved).
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(1100) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    agents[0].spawn();
    wait_all(
        &cluster,
        &all,
        "SHOW BACKENDS",
        Duration::from_secs(15),
        "agent 0 alive again with a new start time",
        |r| alive(r, 0) && column(r, 0, "LastStartTime") != first_start,
    )
    .await;

    // A leader change: the new master takes over heartbeats without marking live backends dead.
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    cluster.kill9(leader);
    let survivors: Vec<usize> = all.iter().copied().filter(|i| *i != leader).collect();
    cluster.wait_leader(Duration::from_secs(15)).await;
    let watch_until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < watch_until {
        for &i in &survivors {
            if let Ok(r) = cluster.client(i).execute("SHOW BACKENDS").await {
                assert!(
                    (0..4).all(|b| alive(&r, b)),
                    "fe{} shows a live backend dead after the leader change: {:?}",
                    i + 1,
                    r.rows
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The new master heartbeats: killing an agent now is noticed.
    agents[3].kill9();
    wait_all(
        &cluster,
        &survivors,
        "SHOW BACKENDS",
        Duration::from_secs(10),
        "agent 3 dead under the new master",
        |r| !alive(r, 3),
    )
    .await;
}
