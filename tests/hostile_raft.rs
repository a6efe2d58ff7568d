//! Issue 13: forged Raft messages on the edit_log port change nothing. Raw gRPC with the
//! project's own client and openraft's request types (versioned bincode), as a probe would
//! send them: terms that overflow or jump, entries from a non-member, leadership-transfer
//! votes from a non-leader, and snapshots that are huge or carry a stale vote.

mod common;

use common::*;
use futures::StreamExt;
use openraft::entry::RaftEntry;
use openraft::impls::leader_id_adv::LeaderId;
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use roster_proto::pb::raft::{Blob, raft_service_client::RaftServiceClient};
use roster_raft_store::TypeConfig;
use roster_raft_store::codec;
use roster_raft_store::types::{Entry, LogId, SnapshotMeta, Vote};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

async fn raft_client(c: &Cluster, i: usize) -> RaftServiceClient<Channel> {
    RaftServiceClient::connect(format!("http://{}", c.nodes[i].edit_log_addr()))
        .await
        .expect("connect to edit_log_port")
        .max_encoding_message_size(64 << 20)
        .max_decoding_message_size(64 << 20)
}

fn log_id(term: u64, node_id: u64, index: u64) -> LogId {
    LogId::new(LeaderId { term, node_id }, index)
}

fn blob<T: serde::Serialize>(v: &T) -> Blob {
    Blob {
        data: codec::encode(v).unwrap(),
    }
}

/// The same message over AppendStream (the replication stream): its first answer, which must be
/// the refusal, with the same code and words as the unary call's.
async fn stream_refusal(rc: &mut RaftServiceClient<Channel>, b: Blob) -> tonic::Status {
    let mut answers = rc
        .append_stream(futures::stream::iter(vec![b]))
        .await
        .expect("AppendStream opens; its messages are judged one by one")
        .into_inner();
    match answers.message().await {
        Err(s) => s,
        Ok(m) => panic!("AppendStream accepted the message: {m:?}"),
    }
}

async fn term_of(c: &Cluster, i: usize) -> u64 {
    c.client(i).status().await.expect("status").term
}

/// A write through every FE succeeds (the cluster has a leader that can commit). It creates a
/// user, not a backend: a registered backend makes the FEs propose liveness and blacklist
/// entries of their own, and some tests here compare applied indexes across a forged message.
async fn write_succeeds(c: &Cluster, user: &str) {
    exec_retry(
        &c.client_of(&[0, 1, 2]),
        &format!("CREATE USER '{user}' IDENTIFIED BY 'pw'"),
        Duration::from_secs(20),
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "write of user {user} failed after the forged messages: {e}\n{}",
            c.logs()
        )
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terms_that_overflow_or_jump_change_nothing() {
    let cluster = Cluster::start(3, 0);
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    write_succeeds(&cluster, "writer1").await;
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let claimed = cluster.nodes[other].id; // a member-looking sender
    let before: Vec<u64> = futures::future::join_all((0..3).map(|i| term_of(&cluster, i))).await;
    let cur = *before.iter().max().unwrap();

    for (k, term) in [u64::MAX, cur + 1_000_000_000].into_iter().enumerate() {
        for target in [leader, follower] {
            let mut rc = raft_client(&cluster, target).await;
            let vote = VoteRequest::<TypeConfig> {
                vote: Vote::new(term, claimed),
                last_log_id: Some(log_id(term, claimed, 1 << 40)),
                leadership_transfer: true,
            };
            let r = rc.vote(blob(&vote)).await;
            assert!(
                r.is_err(),
                "Vote with term {term} to fe{} was accepted",
                target + 1
            );
            let r = rc.pre_vote(blob(&vote)).await;
            assert!(
                r.is_err(),
                "PreVote with term {term} to fe{} was accepted",
                target + 1
            );
            let ae = AppendEntriesRequest::<TypeConfig> {
                vote: Vote::new_committed(term, claimed),
                prev_log_id: None,
                entries: vec![],
                leader_commit: None,
            };
            let r = rc.append_entries(blob(&ae)).await;
            let s = r.expect_err("AppendEntries with a huge term was accepted");
            assert!(
                s.message().contains("term"),
                "the refusal says what: {}",
                s.message()
            );
            let s = stream_refusal(&mut rc, blob(&ae)).await;
            assert!(
                s.message().contains("term"),
                "the stream's refusal says what: {}",
                s.message()
            );
        }
        // Nothing changed: the terms are where they were (give or take a real election), a
        // leader is kept or elected, and writes go on.
        for (i, b) in before.iter().enumerate() {
            let t = term_of(&cluster, i).await;
            assert!(t < b + 100, "fe{} term went from {b} to {t}", i + 1);
        }
        cluster.wait_leader(Duration::from_secs(20)).await;
        write_succeeds(&cluster, &format!("writer{}", k + 2)).await;
    }
    assert!(
        cluster.logs().contains("above the largest term"),
        "the refusal is logged\n{}",
        cluster.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_from_a_non_member_are_refused() {
    let cluster = Cluster::start(3, 0);
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    write_succeeds(&cluster, "writer1").await;
    let follower = (leader + 1) % 3;
    // The follower applies the write a moment after the leader acknowledged it: wait, so its
    // log ends where the leader's does and nothing else is in flight.
    let leader_applied = cluster.client(leader).status().await.unwrap().last_applied;
    cluster
        .wait_applied(follower, leader_applied, Duration::from_secs(10))
        .await;
    let st = cluster.client(follower).status().await.unwrap();
    let (term, applied) = (st.term, st.last_applied);
    // Follows the follower's log exactly (its last entry is the leader's, of this term) and
    // commits a new entry at once: what the probe got applied on every FE.
    let prev = log_id(term, cluster.nodes[leader].id, applied);
    let next = log_id(term + 1, 99, applied + 1);
    let ae = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(term + 1, 99),
        prev_log_id: Some(prev),
        entries: vec![Entry::new_blank(next)],
        leader_commit: Some(next),
    };
    let r = raft_client(&cluster, follower)
        .await
        .append_entries(blob(&ae))
        .await;
    let s = r.expect_err("AppendEntries from node 99 was accepted");
    assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s:?}");
    assert!(s.message().contains("FE 99"), "{}", s.message());
    let mut rc = raft_client(&cluster, follower).await;
    let s = stream_refusal(&mut rc, blob(&ae)).await;
    assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s:?}");
    assert!(s.message().contains("FE 99"), "{}", s.message());
    let after = cluster.client(follower).status().await.unwrap();
    assert_eq!(after.term, term, "the follower's term changed");
    assert_eq!(after.last_applied, applied, "the follower's log changed");
    assert_ne!(after.leader_id, Some(99));
    write_succeeds(&cluster, "writer2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_transfer_votes_from_a_non_leader_do_not_depose_it() {
    let cluster = Cluster::start(3, 0);
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    write_succeeds(&cluster, "writer1").await;
    let candidate = cluster.nodes[(leader + 1) % 3].id;
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for i in 0..3 {
        clients.push(raft_client(&cluster, i).await);
    }
    let start_term = term_of(&cluster, leader).await;
    let forger = {
        let (stop, sent) = (stop.clone(), sent.clone());
        tokio::spawn(async move {
            let mut term = start_term;
            while !stop.load(Ordering::Relaxed) {
                term += 1;
                let vote = VoteRequest::<TypeConfig> {
                    vote: Vote::new(term, candidate),
                    last_log_id: Some(log_id(term - 1, candidate, 1 << 30)),
                    leadership_transfer: true,
                };
                for c in clients.iter_mut() {
                    let _ = c.vote(blob(&vote)).await;
                }
                sent.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(500)).await; // 2 votes/s: the attack's rate
            }
        })
    };
    // Eight writes, one after another, each within a few election timeouts.
    let c = cluster.client_of(&[0, 1, 2]);
    let t0 = Instant::now();
    for k in 2..10 {
        let sql = format!("ALTER SYSTEM ADD BACKEND \"127.1.0.{k}:9050\"");
        let r = tokio::time::timeout(Duration::from_secs(5), c.execute(&sql)).await;
        assert!(
            matches!(r, Ok(Ok(_))),
            "write {k} failed under forged transfer votes ({} sent in {:?}): {r:?}\n{}",
            sent.load(Ordering::Relaxed),
            t0.elapsed(),
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(400)).await; // spread the writes over the attack
    }
    stop.store(true, Ordering::Relaxed);
    forger.await.unwrap();
    assert!(
        sent.load(Ordering::Relaxed) >= 6,
        "the attack ran for several seconds"
    );
    assert_eq!(
        cluster.wait_leader(Duration::from_secs(5)).await,
        leader,
        "the leader was deposed"
    );
}

/// VmRSS of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_and_stale_snapshots_are_refused_without_buffering() {
    const LIMIT: u64 = 256 << 20;
    const CHUNK: usize = 1 << 20;
    const TOTAL_CHUNKS: u64 = 2048; // 2 GiB
    let cluster = Cluster::start_with(3, 0, &format!("max_snapshot_bytes = {LIMIT}\n"));
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    write_succeeds(&cluster, "writer1").await;
    let follower = (leader + 1) % 3;
    let st = cluster.client(follower).status().await.unwrap();
    let leader_id = cluster.nodes[leader].id;
    let meta = SnapshotMeta {
        last_log_id: Some(log_id(st.term, leader_id, st.last_applied + 1_000)),
        last_membership: Default::default(),
    };

    // Stale vote: refused on the first message, while the body never comes.
    let stale = Vote::new_committed(st.term - 1, leader_id);
    let stale_meta = SnapshotMeta {
        last_log_id: None,
        last_membership: Default::default(),
    };
    let body =
        futures::stream::iter([blob(&(&stale, &stale_meta))]).chain(futures::stream::pending());
    let mut rc = raft_client(&cluster, follower).await;
    let r = tokio::time::timeout(Duration::from_secs(5), rc.install_snapshot(body)).await;
    let s = r
        .expect("a stale-vote snapshot was not refused before its body was read")
        .expect_err("a stale-vote snapshot was accepted");
    assert_eq!(s.code(), tonic::Code::FailedPrecondition, "{s:?}");

    // The current leader's vote (as a member that knows it would send), with 2 GiB of body
    // made on the fly; the FE's RSS is sampled meanwhile. The sender stops early if the RSS
    // runs away, so a broken build fails the test instead of exhausting the machine.
    let pid = cluster.pid(follower);
    let base = rss(pid);
    let bound = base + 48 * CHUNK as u64;
    let peak = Arc::new(AtomicU64::new(base));
    let runaway = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, runaway, done) = (peak.clone(), runaway.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let r = rss(pid);
                peak.fetch_max(r, Ordering::Relaxed);
                if r > bound {
                    runaway.store(true, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let vote = Vote::new_committed(st.term, leader_id);
    let sent = Arc::new(AtomicU64::new(0));
    let head = futures::stream::iter([blob(&(&vote, &meta))]);
    let chunks = {
        let (sent, runaway) = (sent.clone(), runaway.clone());
        futures::stream::iter(0..TOTAL_CHUNKS)
            .take_while(move |_| std::future::ready(!runaway.load(Ordering::Relaxed)))
            .map(move |_| {
                sent.fetch_add(1, Ordering::Relaxed);
                Blob {
                    data: vec![0xA5; CHUNK],
                }
            })
    };
    let t0 = Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(300),
        raft_client(&cluster, follower)
            .await
            .install_snapshot(head.chain(chunks)),
    )
    .await
    .expect("the snapshot stream neither finished nor was refused");
    done.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    let peak = peak.load(Ordering::Relaxed);
    let sent_bytes = sent.load(Ordering::Relaxed) * CHUNK as u64;
    eprintln!(
        "snapshot stream: {} MiB sent in {:?}, FE RSS {} MiB -> peak {} MiB",
        sent_bytes >> 20,
        t0.elapsed(),
        base >> 20,
        peak >> 20
    );
    assert!(
        peak <= bound,
        "the FE's RSS rose by {} MiB while receiving the snapshot",
        (peak - base) >> 20
    );
    let s = r.expect_err("a 2 GiB snapshot was accepted");
    assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}");
    assert!(
        s.message().contains("max_snapshot_bytes"),
        "{}",
        s.message()
    );
    assert!(
        sent_bytes < LIMIT + (64 << 20),
        "refused only after {} MiB",
        sent_bytes >> 20
    );
    // Nothing left behind, nothing changed; the cluster goes on.
    let incoming = cluster
        .dir
        .path()
        .join(format!("data-fe{}/raft/incoming", follower + 1));
    let left: Vec<_> = std::fs::read_dir(&incoming)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "temporary snapshot files left: {left:?}");
    let after = cluster.client(follower).status().await.unwrap();
    assert!(
        after.last_applied < st.last_applied + 1_000,
        "the snapshot was installed"
    );
    write_succeeds(&cluster, "writer2").await;
}
