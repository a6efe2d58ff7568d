//! Agents obey only their cluster (issue 13, "Agents"): in insecure mode only holders of the
//! cluster token; clones only from backends the master named, in its current term; replicas
//! of tablets the catalog does not hold do not stay. Real `roster start` and `roster backend`
//! processes on loopback.

mod common;

use common::agents::*;
use common::*;
use roster_proto::pb::backend::{
    CloneReplicaRequest, CreateReplicaRequest, DropReplicaRequest, HeartbeatRequest,
    ListReplicasRequest,
};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Wait for a child to exit by itself; panics after `within`.
fn wait_exit(child: &mut std::process::Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the agent did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_insecure_agent_without_a_token_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(2);
    let run = |token: Option<&str>| {
        let mut cmd = Command::new(BIN);
        cmd.args(["backend", "--insecure", "--host", "127.0.0.1", "--data-dir"])
            .arg(dir.path().join("be"))
            .args(["--heartbeat-port", &ports[0].to_string()])
            .args(["--be-port", &ports[1].to_string()])
            .env_remove("ROSTER_CLUSTER_TOKEN")
            .env_remove("ROSTER_BACKEND_CLUSTER_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(t) = token {
            cmd.args(["--cluster-token", t]);
        }
        let mut child = cmd.spawn().unwrap();
        let st = wait_exit(&mut child, Duration::from_secs(20));
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        (st, err)
    };
    let (st, err) = run(None);
    assert!(!st.success(), "{err}");
    assert!(
        err.contains("needs the cluster token") && err.contains("--cluster-token"),
        "{err}"
    );
    let (st, err) = run(Some("too-short"));
    assert!(!st.success(), "{err}");
    assert!(err.contains("at least 16"), "{err}");
    // Nothing was bound or written: the refusal comes before the store is opened.
    assert!(!dir.path().join("be").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insecure_agent_obeys_only_holders_of_the_cluster_token_and_orphans_are_deleted() {
    let cluster = Cluster::start(3, 0);
    let token = cluster
        .token
        .clone()
        .expect("an insecure cluster has a token");
    let (agents, c) = agents_up(&cluster, 3, &[]).await;
    // The FEs hold the token: heartbeats passed (all alive), and a table's replicas are
    // created on the agents.
    let r = c
        .execute(
            "CREATE TABLE t (k INT) DISTRIBUTED BY HASH(k) BUCKETS 2 \
             PROPERTIES (\"replication_num\" = \"3\", \"fill_bytes_per_tablet\" = \"1000\")",
        )
        .await
        .unwrap();
    assert!(r.message.contains("6 replicas"), "{}", r.message);
    let tablets = c.execute("SHOW TABLETS FROM t").await.unwrap();
    assert!((0..6).all(|i| column(&tablets, i, "State") == "NORMAL"));
    let held = agents[0].tablet_dirs();
    assert_eq!(held.len(), 2, "{held:?}");

    let addr = agents[0].addr();
    let wrong = "0000000000000000-not-the-token";
    for (who, tok) in [("no token", None), ("a wrong token", Some(wrong))] {
        let mut a = agent_client(&addr, tok).await;
        let refused = [
            a.list_replicas(ListReplicasRequest {}).await.map(|_| ()),
            a.drop_replica(DropReplicaRequest { tablet_id: held[0] })
                .await
                .map(|_| ()),
            a.create_replica(CreateReplicaRequest {
                tablet_id: 777_777,
                table_id: 1,
                fill_bytes: 1 << 20,
            })
            .await
            .map(|_| ()),
            a.heartbeat(HeartbeatRequest::default()).await.map(|_| ()),
        ];
        for r in refused {
            let e = r.expect_err(who);
            assert_eq!(e.code(), tonic::Code::Unauthenticated, "{who}: {e:?}");
            let want = if tok.is_none() {
                "x-roster-cluster-token"
            } else {
                "wrong cluster token"
            };
            assert!(e.message().contains(want), "{who}: {}", e.message());
        }
        // The data port too: nobody outside reads a replica.
        let mut data =
            agent_client(&format!("{}:{}", agents[0].host, agents[0].be_port), tok).await;
        let e = data
            .send_replica(roster_proto::pb::backend::SendReplicaRequest { tablet_id: held[0] })
            .await
            .map(|_| ())
            .expect_err(who);
        assert_eq!(e.code(), tonic::Code::Unauthenticated, "{who}: {e:?}");
    }
    // Nothing changed.
    assert_eq!(agents[0].tablet_dirs(), held);
    // With the token, the agent answers.
    let mut a = agent_client(&addr, Some(&token)).await;
    let list = a.list_replicas(ListReplicasRequest {}).await.unwrap();
    let ids: Vec<u64> = list
        .into_inner()
        .replicas
        .iter()
        .map(|r| r.tablet_id)
        .collect();
    assert_eq!(ids, held);

    // An orphan: a replica of an id the catalog never gave out, made by a direct call with the
    // token (the disk-filling attack). The master's reconciler deletes it; the table's own
    // replicas stay.
    let orphan = 900_000;
    let made = a
        .create_replica(CreateReplicaRequest {
            tablet_id: orphan,
            table_id: 424_242,
            fill_bytes: 1 << 20,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(made.bytes, 1 << 20);
    assert!(agents[0].tablet_dirs().contains(&orphan));
    let deadline = Instant::now() + Duration::from_secs(30);
    while agents[0].tablet_dirs().contains(&orphan) {
        assert!(
            Instant::now() < deadline,
            "the orphan replica {orphan} is still on the agent\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(agents[0].tablet_dirs(), held);
    let tablets = c.execute("SHOW TABLETS FROM t").await.unwrap();
    assert!((0..6).all(|i| column(&tablets, i, "State") == "NORMAL"));
}

/// Tablet id -> backend ids holding it, from SHOW TABLETS.
fn holders(r: &roster_client::QueryResult) -> std::collections::BTreeMap<u64, Vec<u64>> {
    let mut out: std::collections::BTreeMap<u64, Vec<u64>> = Default::default();
    for i in 0..r.rows.len() {
        out.entry(column(r, i, "TabletId").parse().unwrap())
            .or_default()
            .push(column(r, i, "BackendId").parse().unwrap());
    }
    out
}

fn clone_req(tablet_id: u64, source: &str, term: u64) -> CloneReplicaRequest {
    CloneReplicaRequest {
        tablet_id,
        table_id: 0,
        source_addr: source.to_string(),
        expected_bytes: FILL,
        expected_checksum: 0,
        checksum_known: false,
        rate_limit_bytes_per_sec: 0,
        master_term: term,
    }
}

const FILL: u64 = 1000;

/// One CloneReplica call, bounded: an agent that dials a silent address would hang it.
async fn clone_call(
    d: &mut roster_transport::cluster_token::AgentClient,
    req: CloneReplicaRequest,
) -> Result<roster_proto::pb::backend::ReplicaInfo, tonic::Status> {
    match tokio::time::timeout(Duration::from_secs(10), d.clone_replica(req)).await {
        Ok(r) => r.map(|r| r.into_inner()),
        Err(_) => panic!("no answer within 10 s: the agent is dialling the source it was given"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_come_only_from_backends_the_newest_master_named() {
    let mut cluster = Cluster::start(3, 0);
    let token = cluster.token.clone().unwrap();
    let (agents, c) = agents_up(&cluster, 4, &[("disable_balance", "true")]).await;
    c.execute(&format!(
        "CREATE TABLE t (k INT) DISTRIBUTED BY HASH(k) BUCKETS 4 \
         PROPERTIES (\"replication_num\" = \"2\", \"fill_bytes_per_tablet\" = \"{FILL}\")"
    ))
    .await
    .unwrap();
    // End to end first: a decommission's clones (agent to agent, with the token, fenced by
    // the master's term) carry every replica off backend 10001.
    c.execute(r#"ALTER SYSTEM DECOMMISSION BACKEND "10001""#)
        .await
        .unwrap();
    wait_all(
        &cluster,
        &[0, 1, 2],
        "SHOW BACKENDS",
        Duration::from_secs(90),
        "backend 10001 drained and dropped",
        |r| r.rows.len() == 3,
    )
    .await;
    let placed = holders(&c.execute("SHOW TABLETS FROM t").await.unwrap());
    assert!(
        placed.values().all(|b| b.len() == 2 && !b.contains(&10001)),
        "{placed:?}"
    );

    // A tablet, one agent holding it (the source) and one not (the destination).
    let agent_of = |backend: u64| &agents[(backend - 10001) as usize];
    let (tablet, on) = placed.iter().next().unwrap();
    let source = agent_of(on[0]);
    let source_addr = format!("{}:{}", source.host, source.be_port);
    let dest = (10002..=10004)
        .find(|b| !on.contains(b))
        .map(agent_of)
        .unwrap();
    let mut d = agent_client(&dest.addr(), Some(&token)).await;

    // An address the master never named: refused, and never dialled.
    let decoy = std::net::TcpListener::bind("127.0.0.77:0").unwrap();
    decoy.set_nonblocking(true).unwrap();
    let decoy_addr = decoy.local_addr().unwrap().to_string();
    let term1 = c.status().await.unwrap().term;
    let e = clone_call(&mut d, clone_req(*tablet, &decoy_addr, term1))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message().contains("is not a backend of this cluster"),
        "{}",
        e.message()
    );
    assert_eq!(
        decoy.accept().map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "the agent dialled the address it was given"
    );
    // The dropped backend (its agent still runs) is no longer a source either, once the next
    // heartbeat names the backends without it. Asked for an id it does not hold, so that a
    // call before that heartbeat clones nothing (the source answers NOT_FOUND).
    let gone = agent_of(10001);
    let gone_addr = format!("{}:{}", gone.host, gone.be_port);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let e = clone_call(&mut d, clone_req(999_999, &gone_addr, term1))
            .await
            .unwrap_err();
        if e.code() == tonic::Code::FailedPrecondition {
            assert!(e.message().contains("is not a backend"), "{}", e.message());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still cloning from {gone_addr}: {e:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A new master (a higher term) heartbeats the agent: the old term's tasks are stale.
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    cluster.kill9(leader);
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let c2 = cluster.client_of(&survivors);
    let deadline = Instant::now() + Duration::from_secs(30);
    let stale = loop {
        let e = clone_call(&mut d, clone_req(*tablet, &decoy_addr, term1))
            .await
            .unwrap_err();
        if e.message().contains("is stale") {
            break e;
        }
        assert!(
            Instant::now() < deadline,
            "no newer master reached the agent: {}\n{}",
            e.message(),
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(stale.code(), tonic::Code::FailedPrecondition);
    // The deposed master's task from a real source: refused, nothing cloned.
    let e = clone_call(&mut d, clone_req(*tablet, &source_addr, term1))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("is stale"), "{}", e.message());
    assert!(!dest.tablet_dirs().contains(tablet));
    // The current term and a source it named: the clone is made.
    let term2 = c2.status().await.unwrap().term;
    assert!(term2 > term1);
    let got = clone_call(&mut d, clone_req(*tablet, &source_addr, term2))
        .await
        .unwrap();
    assert_eq!((got.tablet_id, got.bytes), (*tablet, FILL));
}
