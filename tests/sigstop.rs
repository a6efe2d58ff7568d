//! Acceptance 6: SIGSTOP the leader. A follower read during the stop fails or waits (bounded)
//! and never returns data older than the last acknowledged write; a new leader is elected and
//! takes writes; after SIGCONT the old leader steps down cleanly and serves no stale data.
//!
//! To make a stale read observable (rather than merely forbidden), one follower is killed
//! before the last acknowledged writes and restarted while the leader is stopped: its own files
//! lack those writes, so only a real read barrier can make its reads complete.

mod common;

use common::*;
use roster_client::{ClientError, QueryResult};
use roster_proto::pb::v1::{self as pb, roster_client::RosterClient};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// The FEs' read_timeout in the harness config.
const READ_TIMEOUT: Duration = Duration::from_secs(4);
/// How long one read may take on a server before we call it unbounded.
const READ_BOUND: Duration = Duration::from_secs(6);

type Conn = RosterClient<tonic::transport::Channel>;

async fn connect(addr: &str) -> Result<Conn, String> {
    RosterClient::connect(format!("http://{addr}"))
        .await
        .map_err(|e| e.to_string())
}

/// One Execute RPC to one FE, no client-side retries, so its duration is the server's own.
/// `Err` is a transport failure (not served at all); `Ok(Err(..))` is an error answer.
async fn raw_read(addr: &str, sql: &str) -> Result<Result<QueryResult, String>, String> {
    raw_read_on(connect(addr).await?, sql).await
}

async fn raw_read_on(mut c: Conn, sql: &str) -> Result<Result<QueryResult, String>, String> {
    let mut req = tonic::Request::new(pb::ExecuteRequest {
        sql: sql.to_string(),
        user: "root".into(),
        password: ROOT_PASSWORD.to_string(),
        consistency: pb::ReadConsistency::Linearizable as i32,
    });
    req.set_timeout(Duration::from_secs(30));
    let mut resp = c
        .execute(req)
        .await
        .map_err(|s| s.to_string())?
        .into_inner();
    Ok(match resp.error.take() {
        Some(e) => Err(e.message),
        None => Ok(QueryResult::from(resp)),
    })
}

fn missing(got: &QueryResult, acked: &[String]) -> Vec<String> {
    let got: BTreeSet<String> = backend_addrs(got).into_iter().collect();
    acked
        .iter()
        .filter(|a| !got.contains(*a))
        .cloned()
        .collect()
}

fn col(r: &QueryResult, name: &str) -> usize {
    r.columns
        .iter()
        .position(|c| c == name)
        .unwrap_or_else(|| panic!("no {name} column in {:?}", r.columns))
}

/// Bounded reads on `fe` (raw, one RPC each) until one succeeds; every answer must come within
/// READ_BOUND and, when it is data, must hold every acknowledged write.
async fn reads_until_served(
    cluster: &Cluster,
    fe: usize,
    acked: &[String],
    within: Duration,
) -> (usize, usize) {
    let deadline = Instant::now() + within;
    let addr = cluster.nodes[fe].rpc_addr();
    let (mut errors, mut not_up) = (0, 0);
    loop {
        let t = Instant::now();
        let res = raw_read(&addr, "SHOW BACKENDS").await;
        let took = t.elapsed();
        match res {
            Err(transport) => {
                // Not listening yet (a restarting FE): nothing was served.
                not_up += 1;
                assert!(
                    took < READ_BOUND,
                    "fe{} hung for {took:?} before a transport error: {transport}",
                    fe + 1
                );
            }
            Ok(answer) => {
                assert!(
                    took <= READ_BOUND,
                    "a read on fe{} took {took:?}, more than read_timeout {READ_TIMEOUT:?} + 2 s",
                    fe + 1
                );
                match answer {
                    Ok(r) => {
                        let miss = missing(&r, acked);
                        assert!(
                            miss.is_empty(),
                            "STALE READ: fe{} served SHOW BACKENDS without acknowledged writes {miss:?} (got {:?})\n{}",
                            fe + 1,
                            backend_addrs(&r),
                            cluster.logs()
                        );
                        eprintln!(
                            "fe{} served a read {:?} after it was asked",
                            fe + 1,
                            t.elapsed()
                        );
                        return (errors, not_up);
                    }
                    Err(msg) => {
                        errors += 1;
                        eprintln!("fe{} read refused after {took:?}: {msg}", fe + 1);
                    }
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "fe{} served no read within {within:?} ({errors} errors)\n{}",
            fe + 1,
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_leader_no_stale_reads_and_clean_step_down() {
    let t_start = Instant::now();
    let mut cluster = Cluster::start(3, 0);
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let lagging = (leader + 1) % 3; // killed, and restarted during the stop
    let follower = (leader + 2) % 3; // up all along

    let mut acked: Vec<String> = Vec::new();
    let all = cluster.client_of(&[0, 1, 2]);
    for k in 1..=3 {
        let addr = format!("127.6.0.{k}:9050");
        all.execute(&format!("ALTER SYSTEM ADD BACKEND \"{addr}\""))
            .await
            .expect("add before the stop");
        acked.push(addr);
    }
    cluster
        .wait_applied(lagging, 1, Duration::from_secs(10))
        .await;

    // The lagging FE misses the last acknowledged writes in its own files.
    cluster.kill9(lagging);
    let via_follower = cluster.client(follower);
    for k in 4..=6 {
        let addr = format!("127.6.0.{k}:9050");
        via_follower
            .execute(&format!("ALTER SYSTEM ADD BACKEND \"{addr}\""))
            .await
            .expect("add with one FE down");
        acked.push(addr);
    }
    let old_term = cluster
        .client(leader)
        .status()
        .await
        .expect("leader status")
        .term;

    // A connection to the leader, made now, so that a read can be queued on it while it sleeps.
    let mut to_old = connect(&cluster.nodes[leader].rpc_addr())
        .await
        .expect("connect to the leader");
    to_old
        .status(pb::StatusRequest::default())
        .await
        .expect("leader status over the early connection");

    // Freeze the leader (the harness's Drop sends SIGCONT before killing, should we panic).
    cluster.signal(leader, "STOP");
    let stopped_at = Instant::now();
    cluster.spawn(lagging);

    // Reads on both followers during the stop: bounded, and never stale. Each must eventually be
    // served (by way of the new leader), while the old one is still stopped.
    let ((errs_f, _), (errs_l, not_up)) = tokio::join!(
        reads_until_served(&cluster, follower, &acked, Duration::from_secs(20)),
        reads_until_served(&cluster, lagging, &acked, Duration::from_secs(20)),
    );
    eprintln!(
        "reads during the stop: fe{} {errs_f} refusals, fe{} {errs_l} refusals ({not_up} before it listened); served {:?} after SIGSTOP",
        follower + 1,
        lagging + 1,
        stopped_at.elapsed()
    );

    // A new leader takes writes through the followers. A write whose outcome is unknown (e.g.
    // forwarded to the stopped leader) is not counted; we go on with a fresh address.
    let followers = cluster.client_of(&[follower, lagging]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut maybe: Vec<String> = Vec::new();
    let w = loop {
        let addr = format!("127.6.1.{}:9050", maybe.len() + 1);
        match followers
            .execute(&format!("ALTER SYSTEM ADD BACKEND \"{addr}\""))
            .await
        {
            Ok(_) => break addr,
            Err(ClientError::Unknown(e)) | Err(ClientError::Unavailable(e)) => {
                eprintln!("write {addr} during the stop: {e}");
                maybe.push(addr);
            }
            Err(e) => panic!("write {addr} refused during the stop: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "no write acknowledged while the leader was stopped\n{}",
            cluster.logs()
        );
    };
    acked.push(w.clone());
    let new_leader = cluster
        .leader_seen_by(follower, Duration::from_secs(10))
        .await;
    assert_ne!(
        new_leader,
        leader,
        "the stopped FE is still the leader seen by fe{}",
        follower + 1
    );
    let new_term = cluster
        .client(new_leader)
        .status()
        .await
        .expect("new leader status")
        .term;
    assert!(
        new_term > old_term,
        "new leader's term {new_term} is not above the old {old_term}"
    );
    for fe in [follower, lagging] {
        let r = cluster
            .client(fe)
            .execute("SHOW BACKENDS")
            .await
            .expect("read after the new write");
        let miss = missing(&r, &acked);
        assert!(
            miss.is_empty(),
            "fe{} misses acknowledged writes {miss:?} after the failover",
            fe + 1
        );
    }

    // Wake the old leader. A read it serves right away must not be stale either: it still
    // believes it leads until it hears the higher term. The read is sent before SIGCONT, over the
    // connection made before the stop, so it waits in the leader's socket next to the new
    // leader's messages. (The pause below only gives it time to be written there; the check
    // holds whatever the order.)
    let t = Instant::now();
    let first = tokio::spawn(raw_read_on(to_old, "SHOW BACKENDS"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    cluster.signal(leader, "CONT");
    let first = first.await.expect("read task").expect("old leader answers");
    let took = t.elapsed();
    assert!(
        took <= READ_BOUND,
        "the first read on the woken leader took {took:?}"
    );
    match first {
        Ok(r) => {
            let miss = missing(&r, &acked);
            assert!(
                miss.is_empty(),
                "STALE READ on the woken old leader: misses {miss:?}\n{}",
                cluster.logs()
            );
        }
        Err(msg) => eprintln!("first read on the woken old leader refused after {took:?}: {msg}"),
    }

    // It steps down: not leader, at a term at least the new leader's, agreeing on the leader.
    let deadline = Instant::now() + Duration::from_secs(15);
    let old = cluster.client(leader);
    loop {
        if let Ok(s) = old.status_within(Duration::from_millis(500)).await
            && !s.is_leader
            && s.term >= new_term
            && s.leader_id.is_some_and(|l| l != cluster.nodes[leader].id)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "fe{} did not step down within 15 s after SIGCONT\n{}",
            leader + 1,
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // No other FE believes it leads any more.
    let current = cluster.wait_leader(Duration::from_secs(10)).await;
    assert_ne!(current, leader);

    // A read served by the old leader has everything, including the write made while it slept.
    let r = old
        .execute("SHOW BACKENDS")
        .await
        .expect("read on the old leader");
    let miss = missing(&r, &acked);
    assert!(
        miss.is_empty(),
        "old leader fe{} serves stale data: misses {miss:?}",
        leader + 1
    );
    let extra: Vec<String> = backend_addrs(&r)
        .into_iter()
        .filter(|a| !acked.contains(a) && !maybe.contains(a))
        .collect();
    assert!(extra.is_empty(), "backends nobody wrote: {extra:?}");

    // SHOW FRONTENDS on the old leader: three followers, exactly one master, not itself, and the
    // one that says it leads. (No master is shown only during an election: poll, bounded.)
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = old
            .execute("SHOW FRONTENDS")
            .await
            .expect("show frontends on the old leader");
        assert_eq!(r.rows.len(), 3, "{r:?}");
        let (is_master, port) = (col(&r, "IsMaster"), col(&r, "EditLogPort"));
        let masters: Vec<String> = r
            .rows
            .iter()
            .filter(|row| row[is_master].as_deref() == Some("true"))
            .map(|row| row[port].clone().unwrap_or_default())
            .collect();
        assert!(masters.len() <= 1, "more than one master: {r:?}");
        if let Some(m) = masters.first() {
            assert_ne!(
                *m,
                cluster.nodes[leader].edit_log_port.to_string(),
                "the old leader still shows itself as master"
            );
            let idx = cluster
                .nodes
                .iter()
                .position(|n| n.edit_log_port.to_string() == *m)
                .expect("a known FE");
            if cluster
                .client(idx)
                .status()
                .await
                .is_ok_and(|s| s.is_leader)
            {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "SHOW FRONTENDS on the old leader names no current master: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    eprintln!("sigstop test took {:?}", t_start.elapsed());
}
