//! Agents obey only their cluster (issue 13, "Agents"): in insecure mode only holders of the
//! cluster token; clones only from backends the master named, in its current term; replicas
//! of tablets the catalog does not hold do not stay. Real `roster start` and `roster backend`
//! processes on loopback.

mod common;

use common::agents::*;
use common::*;
use roster_api::pb::backend::{
    CreateReplicaRequest, DropReplicaRequest, HeartbeatRequest, ListReplicasRequest,
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
async fn an_insecure_agent_obeys_only_holders_of_the_cluster_token() {
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
            .send_replica(roster_api::pb::backend::SendReplicaRequest { tablet_id: held[0] })
            .await
            .err()
            .expect(who);
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
}
