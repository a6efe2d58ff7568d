//! Issue 6 on real processes: per-FE blacklists. A MANUAL entry of FE1 changes FE1's routes
//! only, shows on every FE through FROM ALL FRONTENDS, survives a restart of every FE and goes
//! with DELETE; an agent whose ports FE2 alone cannot reach (an nftables rule on FE2's source
//! address) gets an AUTO entry on FE2 only, which FE2 removes by itself once the ports answer
//! and the window is calm; MANUAL entries are never removed by that refresher; bad ids and
//! lists change nothing; the BLACKLIST privilege guards it all over gRPC (the MySQL side is in
//! mysql_client.rs).

mod common;

use common::agents::*;
use common::*;
use roster_client::{Client, ClientError, QueryResult};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

/// Tablet id -> the backend this FE routes it to (`None`: NONE).
type Routes = BTreeMap<u64, Option<u64>>;

async fn routes_full(cluster: &Cluster, fe: usize) -> Vec<roster_proto::pb::v1::TabletRoute> {
    let r = cluster.client(fe).tablet_routes("t").await.unwrap();
    assert_eq!(
        r.frontend_id, cluster.nodes[fe].id,
        "answered by the FE asked"
    );
    r.routes
}

async fn routes(cluster: &Cluster, fe: usize) -> Routes {
    routes_full(cluster, fe)
        .await
        .into_iter()
        .map(|r| (r.tablet_id, r.backend_id))
        .collect()
}

/// SHOW BACKEND BLACKLIST on `fe`: backend id -> (type, failures in period, last failure).
async fn blacklist_of(cluster: &Cluster, fe: usize) -> BTreeMap<String, (String, u64, String)> {
    let r = cluster
        .client(fe)
        .execute("SHOW BACKEND BLACKLIST")
        .await
        .unwrap();
    (0..r.rows.len())
        .map(|i| {
            (
                column(&r, i, "BackendId"),
                (
                    column(&r, i, "AddBlackListType"),
                    column(&r, i, "LostConnectionNumberInPeriod")
                        .parse()
                        .unwrap(),
                    column(&r, i, "LastFailure"),
                ),
            )
        })
        .collect()
}

/// Wait until `pred` holds of `fe`'s blacklist.
async fn wait_blacklist(
    cluster: &Cluster,
    fe: usize,
    within: Duration,
    what: &str,
    pred: impl Fn(&BTreeMap<String, (String, u64, String)>) -> bool,
) -> BTreeMap<String, (String, u64, String)> {
    let deadline = Instant::now() + within;
    loop {
        let l = blacklist_of(cluster, fe).await;
        if pred(&l) {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: fe{} still lists {l:?}\n{}",
            fe + 1,
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn setup(cluster: &Cluster, settings: &[(&str, &str)]) -> (Vec<Agent>, Client) {
    let (agents, c) = agents_up(cluster, 4, settings).await;
    c.execute("CREATE TABLE t (k INT) BUCKETS 12")
        .await
        .unwrap();
    (agents, c)
}

/// Every FE routes every tablet somewhere, and all agree (nothing is blacklisted yet).
async fn baseline(cluster: &Cluster) -> Routes {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = routes(cluster, 0).await;
        let all_routed = r.len() == 12 && r.values().all(Option::is_some);
        if all_routed && routes(cluster, 1).await == r && routes(cluster, 2).await == r {
            return r;
        }
        assert!(Instant::now() < deadline, "no common baseline: {r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn user_client(cluster: &Cluster, fe: usize, user: &str, password: &str) -> Client {
    let mut cfg = client_config(vec![cluster.nodes[fe].rpc_addr()]);
    cfg.user = user.into();
    cfg.password = password.into();
    Client::new(cfg).unwrap()
}

fn err_text(r: Result<QueryResult, ClientError>, sql: &str) -> String {
    match r {
        Ok(r) => panic!("{sql} succeeded: {r:?}"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_entries_are_per_frontend_shown_everywhere_and_survive_restart() {
    let mut cluster = Cluster::start(3, 0);
    let (_agents, _c) = setup(&cluster, &[]).await;
    let before = baseline(&cluster).await;
    // SQL and the client library's routing call agree.
    let sql = cluster
        .client(1)
        .execute("SHOW TABLET ROUTES FROM t")
        .await
        .unwrap();
    assert_eq!(sql.rows.len(), 12);
    for i in 0..12 {
        let tablet: u64 = column(&sql, i, "TabletId").parse().unwrap();
        assert_eq!(
            Some(column(&sql, i, "BackendId").parse().unwrap()),
            before[&tablet]
        );
    }
    let x = before.values().next().unwrap().unwrap();
    let fe1 = cluster.client(0);

    fe1.execute(&format!("ADD BACKEND BLACKLIST {x}"))
        .await
        .unwrap();
    let avoid = |r: &Routes| r.values().all(|b| b.is_some() && *b != Some(x));
    let r1 = routes_full(&cluster, 0).await;
    assert!(
        avoid(&r1.iter().map(|r| (r.tablet_id, r.backend_id)).collect()),
        "FE1 still routes to {x}: {r1:?}"
    );
    for r in &r1 {
        if before[&r.tablet_id] == Some(x) {
            assert!(
                r.reason
                    .contains(&format!("{x}: in this FE's blacklist (MANUAL)")),
                "{r:?}"
            );
        } else {
            assert_eq!(r.backend_id, before[&r.tablet_id], "unrelated route moved");
        }
    }
    assert_eq!(routes(&cluster, 1).await, before, "FE1's entry moved FE2");
    assert_eq!(routes(&cluster, 2).await, before, "FE1's entry moved FE3");
    assert!(blacklist_of(&cluster, 1).await.is_empty());
    let all = cluster
        .client(2)
        .execute("SHOW BACKEND BLACKLIST FROM ALL FRONTENDS")
        .await
        .unwrap();
    assert_eq!(all.rows.len(), 1, "{all:?}");
    assert_eq!(
        column(&all, 0, "Frontend"),
        cluster.nodes[0].edit_log_addr()
    );
    assert_eq!(column(&all, 0, "BackendId"), x.to_string());
    assert_eq!(column(&all, 0, "AddBlackListType"), "MANUAL");
    assert_eq!(column(&all, 0, "CheckTimePeriod(s)"), "120");
    // The same over HTTP JSON, with the same login.
    let port = cluster.nodes[2].http_port;
    let (code, body) = http_get(
        port,
        "/api/blacklist",
        Some(&format!("root:{ROOT_PASSWORD}")),
    );
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["rows"][0]["BackendId"], x, "{body}");
    assert_eq!(v["rows"][0]["AddBlackListType"], "MANUAL", "{body}");

    // Point 5: unknown ids and malformed lists are refused and change nothing.
    let listed = blacklist_of(&cluster, 0).await;
    for (sql, want) in [
        ("ADD BACKEND BLACKLIST 99999".to_string(), "99999"),
        (format!("DELETE BACKEND BLACKLIST {x}, 99999"), "99999"),
        ("ADD BACKEND BLACKLIST abc".to_string(), "line 1"),
        ("ADD BACKEND BLACKLIST 10001,,10002".to_string(), "line 1"),
        ("ADD BACKEND BLACKLIST".to_string(), "line 1"),
        ("DELETE BACKEND BLACKLIST -3".to_string(), "line 1"),
    ] {
        let e = err_text(fe1.execute(&sql).await, &sql);
        assert!(e.contains(want), "{sql}: {e}");
    }
    assert_eq!(
        blacklist_of(&cluster, 0).await,
        listed,
        "a refusal changed the list"
    );

    // Point 4 over gRPC: without BLACKLIST nothing; with it, everything.
    let root = cluster.client(0);
    for sql in [
        "CREATE USER 'viewer' IDENTIFIED BY 'vpw'",
        "GRANT SELECT_PRIV TO 'viewer'",
        "CREATE USER 'bl' IDENTIFIED BY 'blpw'",
        "GRANT BLACKLIST TO 'bl'",
    ] {
        root.execute(sql).await.unwrap();
    }
    let viewer = user_client(&cluster, 2, "viewer", "vpw");
    for sql in [
        format!("ADD BACKEND BLACKLIST {x}"),
        format!("DELETE BACKEND BLACKLIST {x}"),
        "SHOW BACKEND BLACKLIST".to_string(),
        "SHOW BACKEND BLACKLIST FROM ALL FRONTENDS".to_string(),
    ] {
        let e = err_text(viewer.execute(&sql).await, &sql);
        assert!(e.contains("BLACKLIST privilege"), "{sql}: {e}");
    }
    let (code, body) = http_get(port, "/api/blacklist", Some("viewer:vpw"));
    assert_eq!(code, 403, "{body}");
    // Routes need only SELECT.
    assert_eq!(
        viewer.tablet_routes("t").await.unwrap().routes.len(),
        12,
        "viewer reads routes"
    );
    let bl = user_client(&cluster, 2, "bl", "blpw");
    bl.execute(&format!("ADD BACKEND BLACKLIST {x}"))
        .await
        .unwrap();
    let mine = bl.execute("SHOW BACKEND BLACKLIST").await.unwrap();
    assert_eq!(column(&mine, 0, "BackendId"), x.to_string());
    bl.execute(&format!("DELETE BACKEND BLACKLIST {x}"))
        .await
        .unwrap();
    assert!(blacklist_of(&cluster, 2).await.is_empty());
    assert_eq!(
        blacklist_of(&cluster, 0).await,
        listed,
        "FE3's DELETE is FE3's"
    );

    // Restart every FE: the entry is in the replicated state.
    for i in 0..3 {
        cluster.kill9(i);
    }
    for i in 0..3 {
        cluster.spawn(i);
    }
    cluster.wait_leader(Duration::from_secs(30)).await;
    let after = wait_blacklist(&cluster, 0, Duration::from_secs(20), "restart", |l| {
        l.contains_key(&x.to_string())
    })
    .await;
    assert_eq!(after[&x.to_string()].0, "MANUAL");
    assert!(avoid(&routes(&cluster, 0).await));
    assert_eq!(routes(&cluster, 1).await, before);

    cluster
        .client(0)
        .execute(&format!("DELETE BACKEND BLACKLIST {x}"))
        .await
        .unwrap();
    assert!(blacklist_of(&cluster, 0).await.is_empty());
    assert_eq!(
        routes(&cluster, 0).await,
        before,
        "DELETE restores FE1's routes"
    );
}

/// An nftables rule that rejects TCP from one source address to some ports; removed on drop,
/// so a failing test leaves no rule behind.
struct Block {
    table: String,
}

fn nft(args: &str) {
    let out = Command::new("nft")
        .args(args.split(' '))
        .output()
        .unwrap_or_else(|e| panic!("this test needs nft (apt-get install nftables) and root: {e}"));
    assert!(
        out.status.success(),
        "nft {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Block {
    fn new(from: &str, to: &[&Agent]) -> Block {
        let table = format!("roster_test_{}", std::process::id());
        nft(&format!("add table inet {table}"));
        nft(&format!(
            "add chain inet {table} out {{ type filter hook output priority 0 ; }}"
        ));
        for a in to {
            nft(&format!(
                "add rule inet {table} out ip saddr {from} ip daddr {} tcp dport {{ {}, {} }} reject with tcp reset",
                a.host, a.port, a.be_port
            ));
        }
        Block { table }
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", &self.table])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_entries_follow_one_frontends_own_failed_connections() {
    // Each FE's connection checks come from its own address, 127.0.0.1<id>.
    let cluster =
        Cluster::start_configured(3, 0, "backend_source_ip = \"127.0.0.1{node_id}\"\n", "");
    // A high threshold first: the entry goes as soon as the ports answer again.
    let (agents, c) = setup(
        &cluster,
        &[("black_host_connect_failures_within_time", "1000")],
    )
    .await;
    let before = baseline(&cluster).await;
    let v: u64 = before.values().next().unwrap().unwrap();
    let victim = &agents[(v - 10001) as usize];
    let m = (10001..10005).find(|b| *b != v).unwrap();
    let manual = &agents[(m - 10001) as usize];
    // FE2 has a MANUAL entry for another agent, which will fail too.
    cluster
        .client(1)
        .execute(&format!("ADD BACKEND BLACKLIST {m}"))
        .await
        .unwrap();

    let block = Block::new("127.0.0.12", &[victim, manual]);
    let (vs, ms) = (v.to_string(), m.to_string());
    let l = wait_blacklist(
        &cluster,
        1,
        Duration::from_secs(15),
        "FE2 AUTO entry",
        |l| l.get(&vs).is_some_and(|e| e.0 == "AUTO") && l.get(&ms).is_some_and(|e| e.1 >= 1),
    )
    .await;
    assert!(
        l[&vs].2.contains(&format!("{}:", victim.host)),
        "LastFailure names the address: {l:?}"
    );
    assert_eq!(l[&ms].0, "MANUAL", "failures did not turn MANUAL into AUTO");
    let r2 = routes_full(&cluster, 1).await;
    for r in &r2 {
        assert!(
            r.backend_id.is_some() && r.backend_id != Some(v) && r.backend_id != Some(m),
            "FE2 routes around {v} and {m}: {r:?}"
        );
        if before[&r.tablet_id] == Some(v) {
            assert!(
                r.reason
                    .contains(&format!("{v}: in this FE's blacklist (AUTO)")),
                "{r:?}"
            );
        }
    }
    // FE1 and FE3 reach everything: no entries, routes unchanged; the backend is alive.
    assert!(blacklist_of(&cluster, 0).await.is_empty());
    assert!(blacklist_of(&cluster, 2).await.is_empty());
    assert_eq!(routes(&cluster, 0).await, before);
    assert_eq!(routes(&cluster, 2).await, before);

    // The ports answer again: FE2 removes its AUTO entry by itself, within a few seconds;
    // the MANUAL one stays.
    drop(block);
    let t0 = Instant::now();
    let l = wait_blacklist(&cluster, 1, Duration::from_secs(10), "AUTO removed", |l| {
        !l.contains_key(&vs)
    })
    .await;
    eprintln!(
        "AUTO entry removed {:?} after the ports answered",
        t0.elapsed()
    );
    assert_eq!(
        l[&ms].0, "MANUAL",
        "the refresher never removes MANUAL: {l:?}"
    );
    let r2 = routes(&cluster, 1).await;
    for (t, b) in &before {
        if *b != Some(m) {
            assert_eq!(r2[t], *b, "FE2 routes back to {v}");
        }
    }

    // A window with too many failures keeps the entry although the ports answer, until the
    // failures leave the window.
    c.execute(r#"ADMIN SET FRONTEND CONFIG ("black_host_connect_failures_within_time" = "2")"#)
        .await
        .unwrap();
    let block = Block::new("127.0.0.12", &[victim]);
    wait_blacklist(&cluster, 1, Duration::from_secs(20), "3 failures", |l| {
        l.get(&vs).is_some_and(|e| e.0 == "AUTO" && e.1 >= 3)
    })
    .await;
    drop(block);
    // For several refresher rounds after the ports answer, it stays.
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        let l = blacklist_of(&cluster, 1).await;
        assert!(
            l.get(&vs).is_some_and(|e| e.0 == "AUTO"),
            "removed with >= 2 failures in the window: {l:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.execute(r#"ADMIN SET FRONTEND CONFIG ("black_host_history_sec" = "1")"#)
        .await
        .unwrap();
    let l = wait_blacklist(
        &cluster,
        1,
        Duration::from_secs(10),
        "window emptied",
        |l| !l.contains_key(&vs),
    )
    .await;
    assert_eq!(l[&ms].0, "MANUAL");
    assert!(blacklist_of(&cluster, 0).await.is_empty());
    assert!(blacklist_of(&cluster, 2).await.is_empty());
}
