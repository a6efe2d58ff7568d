//! Issue 12 point 5 on real processes: `roster node drain`. A backend drain sets
//! disable_query, disable_load and is_draining, applied on every FE before the command returns
//! (a follower's local state shows it), routes avoid the backend, and undrain (or
//! recommission) gives back the flags the operator had. A frontend drain of the master moves
//! leadership, fails the VIP health check with 503 "draining", refuses new MySQL connections
//! with a clear error and new gRPC calls so that the client library goes elsewhere; undrain
//! restores it. `--drain-wait` bounds the wait and reports "drain not complete".

mod common;

use common::agents::*;
use common::*;
use roster_client::{Client, ClientError, QueryResult};
use std::process::Command;
use std::time::Duration;

/// `roster node ...` as an operator runs it, against every FE.
fn node(cluster: &Cluster, args: &[&str]) -> (Option<i32>, String) {
    let all: Vec<usize> = (0..cluster.nodes.len()).collect();
    node_via(cluster, &all, args)
}

/// `roster node ...` with these FEs (indexes) as its endpoints.
fn node_via(cluster: &Cluster, fes: &[usize], args: &[&str]) -> (Option<i32>, String) {
    let endpoints: Vec<String> = fes.iter().map(|i| cluster.nodes[*i].rpc_addr()).collect();
    let out = Command::new(BIN)
        .arg("node")
        .args(args)
        .args(["--endpoints", &endpoints.join(",")])
        .env("ROSTER_PASSWORD", ROOT_PASSWORD)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// A client that reads the FE's own applied state (no read barrier).
fn stale_client(cluster: &Cluster, fe: usize) -> Client {
    let mut cfg = client_config(vec![cluster.nodes[fe].rpc_addr()]);
    cfg.stale_reads = true;
    Client::new(cfg).unwrap()
}

/// (isDraining, isQueryDisabled, isLoadDisabled) of backend `id` in SHOW BACKENDS.
fn flags(r: &QueryResult, id: &str) -> (bool, bool, bool) {
    let i = (0..r.rows.len())
        .find(|i| column(r, *i, "BackendId") == id)
        .unwrap_or_else(|| panic!("no backend {id}"));
    let status = column(r, i, "Status");
    let f = |k: &str| status.contains(&format!("\"{k}\":true"));
    (f("isDraining"), f("isQueryDisabled"), f("isLoadDisabled"))
}

fn follower_of(leader: usize) -> usize {
    (leader + 1) % 3
}

/// The mysql client, once, with a short connect timeout: (exit code, last stderr line).
fn mysql(port: u16, sql: &str) -> (i32, String) {
    let o = Command::new("mysql")
        .args([
            "-h127.0.0.1",
            &format!("-P{port}"),
            "-uroot",
            &format!("-p{ROOT_PASSWORD}"),
            "--connect-timeout=10",
            "-e",
            sql,
        ])
        .output()
        .expect("the mysql client must be installed (Debian: mariadb-client)");
    let err = String::from_utf8_lossy(&o.stderr)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .to_string();
    (o.status.code().unwrap_or(-1), err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_drain_routes_away_and_undrain_restores_the_operators_flags() {
    let cluster = Cluster::start(3, 0);
    let (_agents, c) = agents_up(&cluster, 3, &[]).await;
    c.execute(
        "CREATE TABLE t (k INT) DISTRIBUTED BY HASH(k) BUCKETS 12 \
         PROPERTIES (\"replication_num\" = \"3\")",
    )
    .await
    .unwrap();
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let f = follower_of(leader);
    let routes = async || cluster.client(f).tablet_routes("t").await.unwrap().routes;
    // Every replica NORMAL, and some tablets routed to 10001 before the drain.
    wait_all(
        &cluster,
        &[f],
        "SHOW TABLETS FROM t",
        Duration::from_secs(30),
        "replicas NORMAL",
        |r| r.rows.len() == 36 && (0..36).all(|i| column(r, i, "State") == "NORMAL"),
    )
    .await;
    assert!(routes().await.iter().any(|r| r.backend_id == Some(10001)));

    // The operator had disabled loads on 10001 before the drain.
    c.execute(r#"ALTER SYSTEM MODIFY BACKEND "10001" SET ("disable_load" = "true")"#)
        .await
        .unwrap();
    let (code, out) = node(&cluster, &["drain", "10001", "--drain-wait", "30s"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("drained"), "{out}");
    // Applied everywhere before the command returned: each FE's own state shows it.
    for fe in 0..3 {
        let r = stale_client(&cluster, fe)
            .execute("SHOW BACKENDS")
            .await
            .unwrap();
        assert_eq!(flags(&r, "10001"), (true, true, true), "on fe{}", fe + 1);
        assert_eq!(flags(&r, "10002"), (false, false, false), "on fe{}", fe + 1);
    }
    let rs = routes().await;
    assert!(
        rs.iter()
            .all(|r| r.backend_id.is_some() && r.backend_id != Some(10001)),
        "{rs:?}"
    );
    assert!(
        rs.iter()
            .all(|r| r.reason.contains("10001: backend has disable_query")),
        "{rs:?}"
    );
    let (code, out) = node(&cluster, &["status", "--decommission"]);
    assert_eq!(code, Some(0), "{out}");
    let rows: Vec<Vec<String>> = out
        .lines()
        .filter(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect();
    let di = rows[0]
        .iter()
        .position(|c| c == "is_draining")
        .expect("is_draining column");
    let draining: Vec<&str> = rows[1..]
        .iter()
        .filter(|r| r[di] == "true")
        .map(|r| r[0].as_str())
        .collect();
    assert_eq!(draining, ["10001"], "{out}");
    let typed = cluster.client(f).list_backends().await.unwrap();
    assert!(
        typed.iter().all(|b| b.is_draining == (b.id == 10001)),
        "{typed:?}"
    );
    let (code, body) = http_get(
        cluster.nodes[f].http_port,
        "/api/backends",
        Some(&format!("root:{ROOT_PASSWORD}")),
    );
    assert_eq!(code, 200, "{body}");
    assert!(
        body.replace('\\', "").contains("\"isDraining\":true"),
        "{body}"
    );

    // Undrain: queries come back, loads stay disabled as the operator had them.
    let (code, out) = node(&cluster, &["undrain", "10001"]);
    assert_eq!(code, Some(0), "{out}");
    let r = cluster.client(f).execute("SHOW BACKENDS").await.unwrap();
    assert_eq!(flags(&r, "10001"), (false, false, true));
    assert!(routes().await.iter().any(|r| r.backend_id == Some(10001)));

    // Recommission ends a drain too.
    let (code, out) = node(&cluster, &["drain", "10001", "--drain-wait", "30s"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = node(&cluster, &["recommission", "10001"]);
    assert_eq!(code, Some(0), "{out}");
    let r = cluster.client(f).execute("SHOW BACKENDS").await.unwrap();
    assert_eq!(flags(&r, "10001"), (false, false, true), "{out}");

    // Bad input: a clear error, nothing changed.
    let before = c.execute("SHOW BACKENDS").await.unwrap();
    for (args, want) in [
        (&["drain"][..], "name at least one backend"),
        (&["drain", "424242"][..], "424242"),
        (
            &["drain", "10002", "--drain-wait", "10"][..],
            "unit must be",
        ),
        (&["undrain"][..], "name at least one backend"),
    ] {
        let (code, out) = node(&cluster, args);
        assert_ne!(code, Some(0), "{args:?}: {out}");
        assert!(out.contains(want), "{args:?}: {out}");
    }
    let after = c.execute("SHOW BACKENDS").await.unwrap();
    for id in ["10001", "10002", "10003"] {
        assert_eq!(flags(&before, id), flags(&after, id), "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_drain_completes_only_once_every_live_fe_applied_it() {
    let cluster = Cluster::start(3, 0);
    let l = cluster.wait_leader(Duration::from_secs(20)).await;
    let (f, other) = (follower_of(l), (l + 2) % 3);
    let c = cluster.client_of(&[l, other]);
    c.execute(r#"ALTER SYSTEM ADD BACKEND "127.0.9.1:9050""#)
        .await
        .unwrap();
    wait_all(
        &cluster,
        &[l, other],
        "SHOW FRONTENDS",
        Duration::from_secs(20),
        "every FE alive",
        |r| (0..3).all(|i| column(r, i, "Alive") == "true"),
    )
    .await;
    // A paused follower still counts as alive for a few seconds: it cannot apply the drain,
    // so the drain is not complete, and the command says which FE holds it up.
    cluster.signal(f, "STOP");
    let (code, out) = node_via(
        &cluster,
        &[l, other],
        &["drain", "10001", "--drain-wait", "1s"],
    );
    cluster.signal(f, "CONT");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("drain not complete"), "{out}");
    assert!(out.contains(&cluster.nodes[f].rpc_addr()), "{out}");
    // Running again (harmless) completes once the follower runs, and its own state shows it.
    let (code, out) = node(&cluster, &["drain", "10001", "--drain-wait", "30s"]);
    assert_eq!(code, Some(0), "{out}");
    let r = stale_client(&cluster, f)
        .execute("SHOW BACKENDS")
        .await
        .unwrap();
    assert_eq!(flags(&r, "10001"), (true, true, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_the_master_moves_leadership_and_turns_clients_away() {
    let cluster = Cluster::start(3, 0);
    let l = cluster.wait_leader(Duration::from_secs(20)).await;
    // Root exists (the first leader creates it) before anyone logs in to drain.
    cluster
        .client_of(&[0, 1, 2])
        .execute("SHOW FRONTENDS")
        .await
        .unwrap();
    let addr = cluster.nodes[l].rpc_addr();
    let (code, out) = node(
        &cluster,
        &["drain", "--frontend", &addr, "--drain-wait", "30s"],
    );
    assert_eq!(code, Some(0), "{out}");

    // Leadership moved, as the drained FE itself sees it.
    let s = cluster.client(l).status().await.unwrap();
    assert!(s.draining && !s.is_leader && s.leader_id.is_some(), "{s:?}");
    let new_leader = cluster
        .leader_seen_by(follower_of(l), Duration::from_secs(10))
        .await;
    assert_ne!(new_leader, l);

    // The VIP health check takes it out; the others stay in.
    let (code, body) = http_get(cluster.nodes[l].http_port, "/api/health", None);
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("draining"), "{body}");
    let (code, body) = http_get(cluster.nodes[new_leader].http_port, "/api/health", None);
    assert_eq!(code, 200, "{body}");

    // A new MySQL connection is refused with a clear error; another FE takes it.
    let (code, err) = mysql(cluster.nodes[l].query_port, "SELECT 1");
    assert_ne!(code, 0);
    assert!(
        err.starts_with("ERROR 1105 (HY000)") && err.contains("this frontend is draining"),
        "{err}"
    );
    let (code, err) = mysql(cluster.nodes[new_leader].query_port, "SELECT 1");
    assert_eq!(code, 0, "{err}");

    // The client library, given the drained FE first, runs reads and writes elsewhere.
    let c = cluster.client_of(&[l, (l + 1) % 3, (l + 2) % 3]);
    for i in 0..5 {
        c.execute(&format!("CREATE USER 'u{i}' IDENTIFIED BY 'p'"))
            .await
            .unwrap();
        c.execute("SHOW FRONTENDS").await.unwrap();
    }
    // The edit_log address is not the one to give.
    let (code, out) = node(
        &cluster,
        &["undrain", "--frontend", &cluster.nodes[l].edit_log_addr()],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("give the FE's rpc address"), "{out}");
    assert!(
        cluster.client(l).status().await.unwrap().draining,
        "still drained"
    );
    // Alone, the drained FE answers nothing but says why.
    let mut cfg = client_config(vec![addr.clone()]);
    cfg.timeout = Duration::from_secs(2);
    match Client::new(cfg).unwrap().execute("SHOW FRONTENDS").await {
        Err(ClientError::Unavailable(m)) => assert!(m.contains("draining"), "{m}"),
        other => panic!("{other:?}"),
    }

    let (code, out) = node(&cluster, &["undrain", "--frontend", &addr]);
    assert_eq!(code, Some(0), "{out}");
    let (code, body) = http_get(cluster.nodes[l].http_port, "/api/health", None);
    assert_eq!(code, 200, "{body}");
    let (code, err) = mysql(cluster.nodes[l].query_port, "SELECT 1");
    assert_eq!(code, 0, "{err}");
    cluster.client(l).execute("SHOW FRONTENDS").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_wait_bounds_a_drain_that_cannot_complete() {
    // One FE: nobody can take leadership, so the drain never completes.
    let cluster = Cluster::start(1, 0);
    cluster.wait_leader(Duration::from_secs(20)).await;
    cluster.client(0).execute("SHOW FRONTENDS").await.unwrap();
    let addr = cluster.nodes[0].rpc_addr();
    let (code, out) = node(
        &cluster,
        &["drain", "--frontend", &addr, "--drain-wait", "1500ms"],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("drain not complete"), "{out}");
    assert!(out.contains("still the master"), "{out}");
    // Drained all the same (the wait only bounds the command), until undrained.
    let (code, _) = http_get(cluster.nodes[0].http_port, "/api/health", None);
    assert_eq!(code, 503);
    let (code, out) = node(&cluster, &["undrain", "--frontend", &addr]);
    assert_eq!(code, Some(0), "{out}");
    let (code, _) = http_get(cluster.nodes[0].http_port, "/api/health", None);
    assert_eq!(code, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_fe_with_tls_refuses_before_the_handshake() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    let st = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl must be installed");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let extra = format!(
        "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let cluster = Cluster::start_configured(1, 0, &extra, "");
    cluster.wait_leader(Duration::from_secs(20)).await;
    cluster.client(0).execute("SHOW FRONTENDS").await.unwrap();
    let addr = cluster.nodes[0].rpc_addr();
    // One FE: the drain cannot complete, but it is in force.
    let (code, out) = node(
        &cluster,
        &["drain", "--frontend", &addr, "--drain-wait", "0s"],
    );
    assert_eq!(code, Some(1), "{out}");
    let (code, err) = mysql(cluster.nodes[0].query_port, "SELECT 1");
    assert_ne!(code, 0);
    assert!(err.contains("this frontend is draining"), "{err}");
    let (code, out) = node(&cluster, &["undrain", "--frontend", &addr]);
    assert_eq!(code, Some(0), "{out}");
    let (code, err) = mysql(cluster.nodes[0].query_port, "SELECT 1");
    assert_eq!(code, 0, "{err}");
}
