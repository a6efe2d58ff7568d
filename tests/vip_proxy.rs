//! Acceptance 5: the client library behind one address, a round-robin TCP proxy standing for a
//! VIP, while the leader is killed: writes resume after failover and no acknowledged write is
//! lost.

mod common;

use common::*;
use roster_client::ClientError;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

/// Accepts connections and hands each to the next FE that accepts a connection.
async fn start_proxy(backends: Vec<String>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let next = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = l.accept().await else {
                return;
            };
            let backends = backends.clone();
            let next = next.clone();
            tokio::spawn(async move {
                for _ in 0..backends.len() {
                    let i = next.fetch_add(1, Ordering::Relaxed) % backends.len();
                    if let Ok(mut out) = TcpStream::connect(&backends[i]).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_resume_through_a_vip_after_leader_failover() {
    let mut cluster = Cluster::start(3, 0);
    cluster.wait_leader(Duration::from_secs(20)).await;
    let vip = start_proxy(cluster.nodes.iter().map(|n| n.rpc_addr()).collect()).await;
    let mut cfg = client_config(vec![vip.clone()]);
    assert!(
        !cfg.follow_leader_hints,
        "a single endpoint is treated as a VIP"
    );
    cfg.timeout = Duration::from_secs(10);
    let client = roster_client::Client::new(cfg).unwrap();

    let (mut acked, mut unknown) = (Vec::new(), Vec::new());
    let mut k = 0;
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut killed_at = None;
    let mut acked_before_kill = 0;
    while acked.len() < 40 {
        assert!(
            Instant::now() < deadline,
            "writes did not resume through the VIP\n{}",
            cluster.logs()
        );
        k += 1;
        let addr = format!("127.5.0.{k}:9050");
        match client
            .execute(&format!(r#"ALTER SYSTEM ADD BACKEND "{addr}""#))
            .await
        {
            Ok(_) => acked.push(addr),
            Err(ClientError::Unknown(_)) => unknown.push(addr),
            Err(ClientError::Unavailable(_)) => {}
            Err(e) => panic!("unexpected error for {addr}: {e}"),
        }
        if acked.len() == 15 && killed_at.is_none() {
            let leader = cluster.wait_leader(Duration::from_secs(10)).await;
            cluster.kill9(leader);
            killed_at = Some(Instant::now());
            acked_before_kill = acked.len();
        }
    }
    assert!(
        acked.len() > acked_before_kill,
        "no write acknowledged after the failover"
    );
    eprintln!(
        "acked {} ({} after the kill, resumed {:?} after it), unknown {}",
        acked.len(),
        acked.len() - acked_before_kill,
        killed_at.map(|t| t.elapsed()),
        unknown.len()
    );

    let r = exec_retry(&client, "SHOW BACKENDS", Duration::from_secs(20))
        .await
        .expect("read through the VIP");
    let present: std::collections::BTreeSet<String> = backend_addrs(&r).into_iter().collect();
    for a in &acked {
        assert!(present.contains(a), "acknowledged write {a} lost");
    }
    for a in &present {
        assert!(
            acked.contains(a) || unknown.contains(a),
            "{a} present but never acknowledged nor unknown"
        );
    }
}
