//! Acceptance 4: kill -9 all three FEs in the middle of a stream of writes, restart them, and
//! find every acknowledged write and no write that was refused or reported as not applied.

mod common;

use common::*;
use roster_client::ClientError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct History {
    acked: Vec<String>,
    /// Refused by the cluster (a bad property): must never appear.
    refused: Vec<String>,
    /// Reported as certainly not applied: must never appear.
    not_applied: Vec<String>,
    unknown: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_all_mid_stream_then_restart() {
    let mut cluster = Cluster::start(3, 0);
    cluster.wait_leader(Duration::from_secs(20)).await;
    let mut cfg = client_config(cluster.nodes.iter().map(|n| n.rpc_addr()).collect());
    cfg.timeout = Duration::from_secs(3);
    let client = Arc::new(roster_client::Client::new(cfg).unwrap());
    let history = Arc::new(Mutex::new(History::default()));
    let stop = Arc::new(AtomicBool::new(false));

    let writer = {
        let (client, history, stop) = (client.clone(), history.clone(), stop.clone());
        tokio::spawn(async move {
            let mut k = 0u32;
            while !stop.load(Ordering::SeqCst) {
                k += 1;
                // Every fourth write is one the cluster must refuse.
                let (addr, sql) = if k.is_multiple_of(4) {
                    let a = format!("127.9.{}.{}:1", k / 250, k % 250);
                    (
                        a.clone(),
                        format!(r#"ALTER SYSTEM ADD BACKEND "{a}" PROPERTIES ("tag.bogus" = "x")"#),
                    )
                } else {
                    let a = format!("127.8.{}.{}:1", k / 250, k % 250);
                    (a.clone(), format!(r#"ALTER SYSTEM ADD BACKEND "{a}""#))
                };
                let r = client.execute(&sql).await;
                let mut h = history.lock().unwrap();
                match r {
                    Ok(_) => h.acked.push(addr),
                    Err(ClientError::Server { message, .. }) => {
                        assert!(
                            k.is_multiple_of(4) || message.contains("unavailable"),
                            "unexpected refusal of {addr}: {message}"
                        );
                        if k.is_multiple_of(4) {
                            h.refused.push(addr)
                        } else {
                            h.not_applied.push(addr)
                        }
                    }
                    Err(ClientError::Unavailable(_)) => h.not_applied.push(addr),
                    Err(ClientError::Unknown(_)) => h.unknown.push(addr),
                    Err(e) => panic!("unexpected client error: {e}"),
                }
            }
        })
    };

    // Let a stream of writes get acknowledged, then kill every FE at once.
    let deadline = Instant::now() + Duration::from_secs(60);
    while history.lock().unwrap().acked.len() < 30 {
        assert!(
            Instant::now() < deadline,
            "writes are not being acknowledged\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 0..3 {
        cluster.kill9(i);
    }
    // Keep writing into the dead cluster for a moment: those writes must not be acknowledged.
    let dead_from = history.lock().unwrap().acked.len();
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(500) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::SeqCst);
    writer.await.expect("writer task");
    assert_eq!(
        history.lock().unwrap().acked.len(),
        dead_from,
        "a write was acknowledged by a dead cluster"
    );

    for i in 0..3 {
        cluster.spawn(i);
    }
    let reader = cluster.client_of(&[0, 1, 2]);
    let r = exec_retry(&reader, "SHOW BACKENDS", Duration::from_secs(30))
        .await
        .expect("read after restart");
    let present: std::collections::BTreeSet<String> = backend_addrs(&r).into_iter().collect();
    let h = history.lock().unwrap();
    for a in &h.acked {
        assert!(
            present.contains(a),
            "acknowledged write {a} was lost\n{}",
            cluster.logs()
        );
    }
    for a in h.refused.iter().chain(&h.not_applied) {
        assert!(
            !present.contains(a),
            "write {a} was refused or reported not applied, yet it is present"
        );
    }
    let attempted: std::collections::BTreeSet<&String> = h.acked.iter().chain(&h.unknown).collect();
    for a in &present {
        assert!(
            attempted.contains(a),
            "{a} is present but was never acknowledged nor left unknown"
        );
    }
    assert!(
        !h.refused.is_empty(),
        "the history should include refused writes"
    );
    eprintln!(
        "acked {} refused {} not-applied {} unknown {}",
        h.acked.len(),
        h.refused.len(),
        h.not_applied.len(),
        h.unknown.len()
    );
}
