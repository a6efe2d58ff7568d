//! Issue 13, secure mode with real processes: certificates made by `roster cert`, three FEs
//! and four agents with mutual TLS, a real mysql client over TLS (and refused in plaintext),
//! and outsiders (no certificate, a client's certificate, another CA's FE certificate) who
//! get nothing from the Raft, agent and client ports, while the cluster's own FE certificate
//! does: the control that shows the refusals are about the certificate.

mod common;

use common::agents::{agents_up, column, wait_all};
use common::{BIN, Cluster, ROOT_PASSWORD};
use roster_certs::{Material, Role};
use roster_proto::pb::backend::{
    DropReplicaRequest, ListReplicasRequest, backend_agent_client::BackendAgentClient,
};
use roster_proto::pb::raft::{Blob, raft_service_client::RaftServiceClient};
use roster_transport::tls::Transport;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// `roster cert ARGS`, which must succeed.
fn cert(args: &[&str], dir: &Path) {
    let out = Command::new(BIN)
        .arg("cert")
        .args(args)
        .arg("--certs-dir")
        .arg(dir)
        .output()
        .expect("run roster cert");
    assert!(
        out.status.success(),
        "roster cert {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA for cluster "test" (the id tests/common gives its FEs), a node certificate for the
/// FEs, a backend certificate for agents on 127.0.0.1-4 and root's client certificate.
fn make_certs(dir: &Path) {
    cert(&["create-ca", "--cluster-id", "test"], dir);
    cert(&["create-node", "127.0.0.1", "localhost"], dir);
    cert(
        &[
            "create-node",
            "--backend",
            "127.0.0.1",
            "127.0.0.2",
            "127.0.0.3",
            "127.0.0.4",
        ],
        dir,
    );
    cert(&["create-client", "root"], dir);
}

fn mysql(port: u16, ssl: &[&str], sql: &str) -> (i32, String) {
    let out = Command::new("mysql")
        .args(["-h127.0.0.1", &format!("-P{port}"), "-uroot"])
        .arg(format!("-p{ROOT_PASSWORD}"))
        .args(ssl)
        .args(["--connect-timeout=10", "-e", sql])
        .output()
        .expect("mysql client (mariadb-client) must be installed");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secure_cluster_runs_end_to_end() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let cluster = Cluster::start_secure(3, certs.path());
    // Agents with backend.crt: heartbeats, replica creation and clones all over mutual TLS.
    let (_agents, c) = agents_up(&cluster, 4, &[]).await;
    let r = c
        .execute(
            r#"CREATE TABLE t (k INT) DISTRIBUTED BY HASH(k) BUCKETS 4 PROPERTIES ("replication_num" = "3", "fill_bytes_per_tablet" = "4096")"#,
        )
        .await
        .unwrap();
    assert!(r.message.contains("12 replicas"), "{}", r.message);
    // A decommission clones the leaving backend's replicas from agent to agent.
    c.execute(r#"ALTER SYSTEM DECOMMISSION BACKEND "10001""#)
        .await
        .unwrap();
    wait_all(
        &cluster,
        &[0, 1, 2],
        "SHOW BACKENDS",
        Duration::from_secs(120),
        "10001 decommissioned and dropped",
        |r| r.rows.len() == 3 && (0..3).all(|i| column(r, i, "BackendId") != "10001"),
    )
    .await;
    let tablets = c.execute("SHOW TABLETS FROM t").await.unwrap();
    assert_eq!(tablets.rows.len(), 12, "4 tablets x 3 replicas");
    for i in 0..12 {
        assert_ne!(column(&tablets, i, "BackendId"), "10001");
        assert_eq!(column(&tablets, i, "State"), "NORMAL");
    }

    // MySQL over TLS, verifying the FE's certificate against the cluster's CA...
    let ca = format!("--ssl-ca={}", certs.path().join("ca.crt").display());
    let port = cluster.nodes[1].query_port;
    let (code, out) = mysql(port, &[&ca, "--ssl-verify-server-cert"], "SHOW BACKENDS");
    assert_eq!(code, 0, "{out}\n{}", cluster.logs());
    // ... and plaintext refused, as MySQL does with require_secure_transport.
    let (code, out) = mysql(port, &["--skip-ssl"], "SELECT 1");
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("3159"), "{out}");

    // The gRPC client port speaks TLS only: a plaintext client gets nothing.
    let mut plain = common::client_config(vec![cluster.nodes[0].rpc_addr()]);
    plain.timeout = Duration::from_secs(3);
    let e = roster_client::Client::new(plain)
        .unwrap()
        .execute("SHOW BACKENDS")
        .await
        .unwrap_err();
    assert!(!e.to_string().is_empty());
}

/// An endpoint to `addr`: plaintext, or TLS trusting `ca` with an optional client identity.
fn endpoint(addr: &str, tls: Option<(&Path, Option<(&Path, &Path)>)>) -> Endpoint {
    let Some((ca, identity)) = tls else {
        return Endpoint::from_shared(format!("http://{addr}")).unwrap();
    };
    let mut cfg =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(std::fs::read(ca).unwrap()));
    if let Some((c, k)) = identity {
        cfg = cfg.identity(Identity::from_pem(
            std::fs::read(c).unwrap(),
            std::fs::read(k).unwrap(),
        ));
    }
    Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(cfg)
        .unwrap()
}

async fn channel(ep: Endpoint) -> Result<Channel, String> {
    ep.connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

/// NodeInfo on a Raft port: Ok(bytes) or the error.
async fn node_info(ep: Endpoint) -> Result<usize, String> {
    let mut c = RaftServiceClient::new(channel(ep).await?);
    c.node_info(Blob { data: vec![] })
        .await
        .map(|r| r.into_inner().data.len())
        .map_err(|s| format!("{s:?}"))
}

/// Every call of the Raft port (acceptance 1 of issue 13 names them all), each with a
/// message the FE cannot decode: (call, Ok if it was answered or the error). An FE's
/// authentication must refuse each before decoding, so no error may be InvalidArgument.
async fn every_raft_call(ep: Endpoint) -> Vec<(&'static str, Result<(), String>)> {
    let ch = match channel(ep).await {
        Ok(ch) => ch,
        Err(e) => return vec![("connect", Err(e))],
    };
    let mut c = RaftServiceClient::new(ch);
    let junk = || Blob {
        data: vec![0xFF; 16],
    }; // no blob format
    let done = |r: Result<tonic::Response<Blob>, tonic::Status>| {
        r.map(|_| ()).map_err(|s| format!("{s:?}"))
    };
    vec![
        ("NodeInfo", done(c.node_info(Blob { data: vec![] }).await)),
        (
            "GetReadIndex",
            done(c.get_read_index(Blob { data: vec![] }).await),
        ),
        ("Vote", done(c.vote(junk()).await)),
        ("PreVote", done(c.pre_vote(junk()).await)),
        ("AppendEntries", done(c.append_entries(junk()).await)),
        (
            "AppendStream",
            c.append_stream(futures::stream::iter(vec![junk()]))
                .await
                .map(|_| ())
                .map_err(|s| format!("{s:?}")),
        ),
        ("TransferLeader", done(c.transfer_leader(junk()).await)),
        ("Forward", done(c.forward(junk()).await)),
        (
            "InstallSnapshot",
            done(
                c.install_snapshot(futures::stream::iter(vec![junk()]))
                    .await,
            ),
        ),
    ]
}

/// Makes the endpoint an outsider dials for an address.
type EndpointMaker<'a> = Box<dyn Fn(&str) -> Endpoint + 'a>;

/// The ways an outsider might come: (what, endpoint maker).
fn outsiders<'a>(certs: &'a Path, other: &'a Path) -> Vec<(&'static str, EndpointMaker<'a>)> {
    let ca = certs.join("ca.crt");
    let (uc, uk) = (certs.join("client.root.crt"), certs.join("client.root.key"));
    let (oc, ok) = (other.join("node.crt"), other.join("node.key"));
    let (ca2, ca3) = (ca.clone(), ca.clone());
    vec![
        ("plaintext", Box::new(|a: &str| endpoint(a, None))),
        (
            "TLS without a certificate",
            Box::new(move |a: &str| endpoint(a, Some((&ca, None)))),
        ),
        (
            "a client certificate of the cluster",
            Box::new(move |a: &str| endpoint(a, Some((&ca2, Some((&uc, &uk)))))),
        ),
        (
            "an FE certificate of another CA with the same cluster id",
            Box::new(move |a: &str| endpoint(a, Some((&ca3, Some((&oc, &ok)))))),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn outsiders_get_nothing_from_any_port() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let other = tempfile::tempdir().unwrap();
    cert(&["create-ca", "--cluster-id", "test"], other.path());
    cert(&["create-node", "127.0.0.1", "localhost"], other.path());

    let cluster = Cluster::start_secure(3, certs.path());
    let (agents, c) = agents_up(&cluster, 3, &[]).await;
    c.execute(r#"CREATE TABLE t (k INT) BUCKETS 2 PROPERTIES ("replication_num" = "3")"#)
        .await
        .unwrap();
    let held = agents[0].tablet_dirs();
    assert_eq!(held.len(), 2, "agent 0 holds both tablets");

    let fe = Transport::secure(Material::load(certs.path(), &Role::Fe).unwrap());
    let raft_addr = cluster.nodes[0].edit_log_addr();
    let agent_addr = agents[0].addr();
    // The control: the cluster's own FE certificate is answered on both ports.
    let n = node_info(fe.endpoint(&raft_addr).unwrap()).await;
    assert!(matches!(n, Ok(len) if len > 0), "{n:?}");
    // ... and each call is let through to decoding (the junk fails there) or answered.
    for (rpc, r) in every_raft_call(fe.endpoint(&raft_addr).unwrap()).await {
        if let Err(e) = r {
            assert!(
                e.contains("InvalidArgument"),
                "{rpc} with the cluster's FE certificate was refused before decoding: {e}"
            );
        }
    }
    let mut ag = BackendAgentClient::new(channel(fe.endpoint(&agent_addr).unwrap()).await.unwrap());
    let listed = ag.list_replicas(ListReplicasRequest {}).await.unwrap();
    assert_eq!(listed.into_inner().replicas.len(), 2);

    for (what, make) in outsiders(certs.path(), other.path()) {
        // The Raft port: no call at all, not even NodeInfo (which gives the cluster id away).
        for (rpc, r) in every_raft_call(make(&raft_addr)).await {
            match r {
                Ok(()) => panic!("{what}: {rpc} answered on the Raft port"),
                // A decoding error would mean the message got past authentication.
                Err(e) => assert!(
                    !e.contains("InvalidArgument"),
                    "{what}: {rpc} was decoded, so it got past authentication: {e}"
                ),
            }
        }
        // The agent port: no listing, and no DropReplica.
        if let Ok(ch) = channel(make(&agent_addr)).await {
            let mut a = BackendAgentClient::new(ch);
            assert!(
                a.list_replicas(ListReplicasRequest {}).await.is_err(),
                "{what}: ListReplicas answered"
            );
            let d = a
                .drop_replica(DropReplicaRequest { tablet_id: held[0] })
                .await;
            assert!(d.is_err(), "{what}: DropReplica obeyed");
        }
        assert_eq!(agents[0].tablet_dirs(), held, "{what}: a replica is gone");
    }
    // The client port: without TLS nothing; with an untrusting TLS (another CA) nothing.
    let rpc = cluster.nodes[0].rpc_addr();
    let mut plain = common::client_config(vec![rpc.clone()]);
    plain.timeout = Duration::from_secs(3);
    assert!(
        roster_client::Client::new(plain)
            .unwrap()
            .execute("SHOW FRONTENDS")
            .await
            .is_err()
    );
    let mut wrong_ca = common::client_config(vec![rpc]);
    wrong_ca.timeout = Duration::from_secs(3);
    wrong_ca.tls = Some(roster_client::ClientTls::from_dir(other.path(), "root").unwrap());
    assert!(
        roster_client::Client::new(wrong_ca)
            .unwrap()
            .execute("SHOW FRONTENDS")
            .await
            .is_err(),
        "a client trusting another CA talked to the FE"
    );
    // Nothing an outsider tried changed the cluster: three members, the data in place.
    let f = c.execute("SHOW FRONTENDS").await.unwrap();
    assert_eq!(f.rows.len(), 3);
    let t = c.execute("SHOW TABLETS FROM t").await.unwrap();
    assert_eq!(t.rows.len(), 6);
}
