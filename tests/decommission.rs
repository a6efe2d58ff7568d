//! Issue 5 on real processes: DECOMMISSION drains a backend by cloning real bytes (make before
//! break, never below 3 healthy replicas, checksums kept), the master finishes and drops it; a
//! master killed twice mid-drain changes nothing of that; an impossible drain is refused up
//! front and EXPLAIN says why; CANCEL mid-drain; a stalled clone times out, shows as a blocker
//! and is retried elsewhere; a dead backend is repaired and an empty one balanced.

mod common;

use common::agents::*;
use common::*;
use roster_client::{Client, QueryResult};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Per tablet: (backend, state, alive, bytes, checksum) of each replica.
type Replicas = BTreeMap<String, Vec<(String, String, bool, u64, String)>>;

fn replicas(r: &QueryResult) -> Replicas {
    let mut out: Replicas = BTreeMap::new();
    for i in 0..r.rows.len() {
        out.entry(column(r, i, "TabletId")).or_default().push((
            column(r, i, "BackendId"),
            column(r, i, "State"),
            column(r, i, "BackendAlive") == "true",
            column(r, i, "LocalDataSize").parse().unwrap(),
            column(r, i, "Checksum"),
        ));
    }
    out
}

fn healthy(rs: &[(String, String, bool, u64, String)]) -> usize {
    rs.iter().filter(|r| r.1 == "NORMAL" && r.2).count()
}

/// Fails if any tablet has fewer than `min` healthy replicas.
fn assert_healthy(t: &Replicas, min: usize, when: &str) {
    for (tablet, rs) in t {
        assert!(
            healthy(rs) >= min,
            "{when}: tablet {tablet} has {} healthy replicas: {rs:?}",
            healthy(rs)
        );
    }
}

async fn setup(n_agents: usize, settings: &[(&str, &str)]) -> (Cluster, Vec<Agent>, Client) {
    let cluster = Cluster::start(3, 0);
    let (agents, c) = agents_up(&cluster, n_agents, settings).await;
    (cluster, agents, c)
}

async fn tablets(c: &Client, table: &str) -> Replicas {
    replicas(
        &c.execute(&format!("SHOW TABLETS FROM {table}"))
            .await
            .unwrap(),
    )
}

/// Backend ids in SHOW BACKENDS with their membership and TabletNum.
async fn backends(c: &Client) -> BTreeMap<String, (String, u64)> {
    let r = c.execute("SHOW BACKENDS").await.unwrap();
    (0..r.rows.len())
        .map(|i| {
            let status = column(&r, i, "Status");
            let m = status
                .split("\"membership\":\"")
                .nth(1)
                .and_then(|x| x.split('"').next())
                .unwrap_or_default()
                .to_string();
            (
                column(&r, i, "BackendId"),
                (m, column(&r, i, "TabletNum").parse().unwrap()),
            )
        })
        .collect()
}

/// Watch a drain until `done`, checking at every observation that no tablet is below `min`
/// healthy replicas. Reads go to `reader`.
async fn watch_until(
    c: &Client,
    table: &str,
    min: usize,
    within: Duration,
    what: &str,
    done: impl AsyncFnMut() -> bool,
) -> usize {
    let mut done = done;
    let deadline = Instant::now() + within;
    let mut observations = 0;
    loop {
        if let Ok(r) = c.execute(&format!("SHOW TABLETS FROM {table}")).await {
            assert_healthy(&replicas(&r), min, what);
            observations += 1;
        }
        if done().await {
            return observations;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not done within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Once no replica is being created or cloned, the replica files on the agents equal the
/// catalog's placement (nothing leaked or missing) and every file hashes to the catalog's
/// checksum.
async fn assert_files_match(c: &Client, agents: &[Agent], tables: &[&str], skip: &[usize]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match files_mismatch(c, agents, tables, skip).await {
            None => return,
            Some(why) if Instant::now() >= deadline => panic!("{why}"),
            Some(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

async fn files_mismatch(
    c: &Client,
    agents: &[Agent],
    tables: &[&str],
    skip: &[usize],
) -> Option<String> {
    let mut want: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    let mut sums: BTreeMap<(u64, u64), String> = BTreeMap::new();
    for t in tables {
        for (tablet, rs) in tablets(c, t).await {
            for r in rs {
                if r.1 != "NORMAL" {
                    return Some(format!("tablet {tablet} is still changing: {r:?}"));
                }
                let b: u64 = r.0.parse().unwrap();
                let tid: u64 = tablet.parse().unwrap();
                want.entry(b).or_default().insert(tid);
                sums.insert((b, tid), r.4.clone());
            }
        }
    }
    for (i, a) in agents.iter().enumerate() {
        if skip.contains(&i) {
            continue;
        }
        let id = 10001 + i as u64;
        let expected = want.get(&id).cloned().unwrap_or_default();
        let held: BTreeSet<u64> = a.tablet_dirs().into_iter().collect();
        if held != expected {
            return Some(format!(
                "agent {id} holds {held:?}, the catalog places {expected:?} there"
            ));
        }
        for tid in &expected {
            let path = a.dir.join("tablets").join(tid.to_string()).join("data");
            let data = std::fs::read(&path).unwrap_or_default();
            let crc = format!("{:08x}", crc32fast::hash(&data));
            if crc != sums[&(id, *tid)] {
                return Some(format!(
                    "replica of {tid} on {id}: file crc {crc}, catalog {}",
                    sums[&(id, *tid)]
                ));
            }
        }
    }
    None
}

async fn create(c: &Client, name: &str, buckets: u32, fill: u64) {
    c.execute(&format!(
        "CREATE TABLE {name} (k INT) DISTRIBUTED BY HASH(k) BUCKETS {buckets} \
         PROPERTIES (\"replication_num\" = \"3\", \"fill_bytes_per_tablet\" = \"{fill}\")"
    ))
    .await
    .unwrap();
}

/// Checksums per tablet (one per tablet: every replica holds the same bytes).
fn sums(t: &Replicas) -> BTreeMap<String, String> {
    t.iter()
        .map(|(k, rs)| {
            let s: BTreeSet<&String> = rs.iter().map(|r| &r.4).collect();
            assert_eq!(s.len(), 1, "replicas of {k} differ: {rs:?}");
            (k.clone(), rs[0].4.clone())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decommission_drains_real_replicas_and_drops_the_backend() {
    // A clone rate limit keeps the drain long enough to be observed mid-way several times,
    // also in a release build (where it otherwise ends within three observations).
    let (cluster, agents, c) = setup(5, &[("clone_rate_limit_bytes_per_sec", "500000")]).await;
    create(&c, "t", 30, 200_000).await;
    let before = tablets(&c, "t").await;
    let original = sums(&before);
    let leaving = "10003";
    let on_leaving = before
        .values()
        .filter(|rs| rs.iter().any(|r| r.0 == leaving))
        .count();
    assert!(on_leaving > 0);

    let r = c
        .execute(r#"ALTER SYSTEM DECOMMISSION BACKEND "10003""#)
        .await
        .unwrap();
    assert!(r.message.contains("DECOMMISSIONING"), "{}", r.message);
    // Progress is visible while it runs (or the row is gone because it already finished).
    let d = c.execute("SHOW DECOMMISSION").await.unwrap();
    if !d.rows.is_empty() {
        assert_eq!(column(&d, 0, "BackendId"), leaving);
        assert_eq!(column(&d, 0, "TabletsTotal"), on_leaving.to_string());
    }
    let follower = cluster.client(1);
    let n = watch_until(
        &follower,
        "t",
        3,
        Duration::from_secs(120),
        "drain",
        async || !backends(&c).await.contains_key(leaving),
    )
    .await;
    assert!(n > 3, "observed the drain {n} times");
    let after = tablets(&c, "t").await;
    assert_eq!(sums(&after), original, "moved replicas keep their bytes");
    for (tablet, rs) in &after {
        assert_eq!(rs.len(), 3, "{tablet}: {rs:?}");
        assert!(rs.iter().all(|r| r.0 != leaving && r.1 == "NORMAL"));
    }
    // The runbook's re-run, after the master dropped it: success, saying so, by SQL and CLI.
    let r = c
        .execute(r#"ALTER SYSTEM DECOMMISSION BACKEND "10003""#)
        .await
        .unwrap();
    assert!(
        r.message
            .contains("10003 are already decommissioned and dropped"),
        "{}",
        r.message
    );
    let (code, out) = node(&cluster, &["decommission", "10003"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("already decommissioned and dropped"), "{out}");
    // Still listed, from its tombstone; `status ID` shows only that one.
    let (code, out) = node(&cluster, &["status", "--decommission"]);
    assert_eq!(code, Some(0), "{out}");
    let line = out.lines().find(|l| l.contains("| 10003 ")).expect(&out);
    assert!(line.contains("| decommissioned "), "{out}");
    let (code, out) = node(&cluster, &["status", "10003", "--all"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("decommissioned") && out.contains("127.0.0.3:"),
        "{out}"
    );
    assert_eq!(out.matches("127.0.0.").count(), 1, "only 10003: {out}");
    // An id that never existed stays an error.
    let e = c
        .execute(r#"ALTER SYSTEM DECOMMISSION BACKEND "424242""#)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("backend does not exist"), "{e}");
    let (code, out) = node(&cluster, &["status", "424242"]);
    assert_eq!(code, Some(1), "{out}");
    assert_files_match(&c, &agents, &["t"], &[2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_killed_twice_mid_drain_changes_nothing() {
    let (mut cluster, agents, c) = setup(5, &[("clone_rate_limit_bytes_per_sec", "2000000")]).await;
    create(&c, "t", 30, 400_000).await;
    let original = sums(&tablets(&c, "t").await);
    c.execute(r#"ALTER SYSTEM DECOMMISSION BACKEND "10002""#)
        .await
        .unwrap();
    for round in 0..2 {
        // Let some moves happen, then kill the master.
        let start = backends(&c).await["10002"].1;
        watch_until(
            &c,
            "t",
            3,
            Duration::from_secs(60),
            "drain before a kill",
            async || {
                backends(&c)
                    .await
                    .get("10002")
                    .is_none_or(|b| b.1 + 2 <= start)
            },
        )
        .await;
        let leader = cluster.wait_leader(Duration::from_secs(10)).await;
        cluster.kill9(leader);
        if round == 0 {
            // Bring the first one back so a quorum survives the second kill.
            cluster.wait_leader(Duration::from_secs(20)).await;
            cluster.spawn(leader);
        }
    }
    cluster.wait_leader(Duration::from_secs(20)).await;
    watch_until(
        &c,
        "t",
        3,
        Duration::from_secs(180),
        "drain after kills",
        async || !backends(&c).await.contains_key("10002"),
    )
    .await;
    let after = tablets(&c, "t").await;
    assert_eq!(sums(&after), original);
    for (tablet, rs) in &after {
        let ids: BTreeSet<&String> = rs.iter().map(|r| &r.0).collect();
        assert_eq!(
            (rs.len(), ids.len()),
            (3, 3),
            "{tablet}: duplicated or missing: {rs:?}"
        );
    }
    assert_files_match(&c, &agents, &["t"], &[1]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impossible_drain_is_refused_up_front_and_explained() {
    let (_cluster, _agents, c) = setup(3, &[]).await;
    create(&c, "t", 4, 0).await;
    let e = c
        .execute(r#"ALTER SYSTEM DECOMMISSION BACKEND "10001""#)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("of table t") && e.contains("no destination"),
        "{e}"
    );
    assert_eq!(backends(&c).await["10001"].0, "ACTIVE");
    let x = c
        .execute(r#"EXPLAIN ALTER SYSTEM DECOMMISSION BACKEND "10001""#)
        .await
        .unwrap();
    assert_eq!(x.rows.len(), 4, "one row per blocked tablet: {x:?}");
    assert!(column(&x, 0, "Readiness").starts_with("REFUSED"));
    assert_eq!(column(&x, 0, "Table"), "t");
    assert!(column(&x, 0, "Reason").contains("no destination"));
    assert_eq!(
        backends(&c).await["10001"].0,
        "ACTIVE",
        "EXPLAIN changed nothing"
    );
    assert!(
        c.execute("SHOW DECOMMISSION")
            .await
            .unwrap()
            .rows
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_mid_drain_keeps_moved_replicas_and_nothing_is_under_replicated() {
    let (_cluster, agents, c) = setup(
        5,
        &[
            ("clone_rate_limit_bytes_per_sec", "1000000"),
            ("disable_balance", "true"),
        ],
    )
    .await;
    create(&c, "t", 20, 300_000).await;
    let start = backends(&c).await["10004"].1;
    c.execute(r#"ALTER SYSTEM DECOMMISSION BACKEND "10004""#)
        .await
        .unwrap();
    watch_until(
        &c,
        "t",
        3,
        Duration::from_secs(60),
        "some moves",
        async || backends(&c).await["10004"].1 + 2 <= start,
    )
    .await;
    c.execute(r#"CANCEL DECOMMISSION BACKEND "10004""#)
        .await
        .unwrap();
    let b = backends(&c).await;
    assert_eq!(b["10004"].0, "ACTIVE");
    let left = b["10004"].1;
    assert!(left < start);
    // Nothing moves back, nothing is lost, no clone is left behind.
    watch_until(
        &c,
        "t",
        3,
        Duration::from_secs(30),
        "quiet after cancel",
        async || {
            let t = tablets(&c, "t").await;
            t.values()
                .all(|rs| rs.len() == 3 && rs.iter().all(|r| r.1 == "NORMAL"))
        },
    )
    .await;
    assert!(
        c.execute("SHOW DECOMMISSION")
            .await
            .unwrap()
            .rows
            .is_empty()
    );
    assert_files_match(&c, &agents, &["t"], &[]).await;
    // Clones in flight at CANCEL were abandoned: 10004 kept every replica it still had.
    assert_eq!(backends(&c).await["10004"].1, left);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_clone_times_out_shows_as_a_blocker_and_is_retried_elsewhere() {
    let (cluster, mut agents, c) = setup(
        4,
        &[
            ("disable_balance", "true"),
            ("min_clone_task_timeout_sec", "4"),
            ("max_clone_task_timeout_sec", "4"),
        ],
    )
    .await;
    create(&c, "t", 3, 100_000).await;
    // A fifth agent whose clones stall: empty, so the planner picks it first.
    let stall = start_agent(&cluster, 4, &["--fault-stall-clones"]);
    c.execute(&format!(r#"ALTER SYSTEM ADD BACKEND "{}""#, stall.addr()))
        .await
        .unwrap();
    wait_all(
        &cluster,
        &[0],
        "SHOW BACKENDS",
        Duration::from_secs(15),
        "stall agent alive",
        |r| r.rows.len() == 5 && column(r, 4, "Alive") == "true",
    )
    .await;
    let victim = tablets(&c, "t")
        .await
        .values()
        .flat_map(|rs| rs.iter().map(|r| r.0.clone()))
        .next()
        .unwrap();
    // The operator's command starts the drain and follows it (in the background).
    let follow = node_spawn(&cluster, &["decommission", &victim, "--wait=all"]);
    // While stuck, the blocker says so.
    let deadline = Instant::now() + Duration::from_secs(20);
    let reason = loop {
        let r = c.execute("SHOW DECOMMISSION BLOCKERS").await.unwrap();
        if let Some(i) =
            (0..r.rows.len()).find(|i| column(&r, *i, "Reason").contains("without finishing"))
        {
            break column(&r, i, "Reason");
        }
        assert!(
            Instant::now() < deadline,
            "no blocker for the stalled clone: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(reason.contains("backend 10005"), "{reason}");
    // It times out, is retried elsewhere, and the drain completes.
    watch_until(
        &c,
        "t",
        3,
        Duration::from_secs(90),
        "drain despite the stall",
        async || !backends(&c).await.contains_key(&victim),
    )
    .await;
    let t = tablets(&c, "t").await;
    assert!(
        t.values().all(|rs| rs.iter().all(|r| r.0 != "10005")),
        "{t:?}"
    );
    // The CLI printed the stalled tablet's blocker once when it appeared and once when it
    // cleared, not every second, and ended with the totals.
    let out = node_finish(follow, Duration::from_secs(30));
    let stalled = out
        .lines()
        .find(|l| l.starts_with("blocker: tablet ") && l.contains("without finishing"))
        .and_then(|l| l.split_whitespace().nth(2))
        .expect(&out)
        .to_string();
    let mentions = out
        .lines()
        .filter(|l| l.split_whitespace().any(|w| w == stalled))
        .count();
    assert!(
        mentions <= 2,
        "tablet {stalled} printed {mentions} times:\n{out}"
    );
    assert_totals_line(&out, &victim);
    agents.push(stall);
    let _ = agents;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_backend_is_repaired_and_an_empty_one_gets_balanced() {
    let (cluster, mut agents, c) = setup(4, &[("tablet_repair_delay_second", "3")]).await;
    create(&c, "t", 8, 50_000).await;
    let original = sums(&tablets(&c, "t").await);
    agents[0].kill9();
    watch_until(&c, "t", 2, Duration::from_secs(60), "repair", async || {
        let t = tablets(&c, "t").await;
        t.values()
            .all(|rs| healthy(rs) == 3 && rs.iter().all(|r| r.0 != "10001"))
    })
    .await;
    assert_eq!(sums(&tablets(&c, "t").await), original);
    // An empty backend: balance moves replicas onto it until within the threshold.
    let new = start_agent(&cluster, 4, &[]);
    c.execute(&format!(r#"ALTER SYSTEM ADD BACKEND "{}""#, new.addr()))
        .await
        .unwrap();
    watch_until(&c, "t", 3, Duration::from_secs(90), "balance", async || {
        let b = backends(&c).await;
        let live: Vec<u64> = ["10002", "10003", "10004", "10005"]
            .iter()
            .map(|id| b[*id].1)
            .collect();
        let avg = 24.0 / 4.0;
        live.iter()
            .all(|n| (*n as f64) <= avg * 1.1 + 0.5 && (*n as f64) >= avg * 0.9 - 0.5)
    })
    .await;
    agents.push(new);
    assert_files_match(&c, &agents, &["t"], &[0]).await;
}

/// `roster node ...` as an operator runs it.
fn node(cluster: &Cluster, args: &[&str]) -> (Option<i32>, String) {
    let endpoints: Vec<String> = cluster.nodes.iter().map(|n| n.rpc_addr()).collect();
    let out = std::process::Command::new(BIN)
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

/// `roster node ...` in the background, its output collected by `node_finish`.
fn node_spawn(cluster: &Cluster, args: &[&str]) -> std::process::Child {
    let endpoints: Vec<String> = cluster.nodes.iter().map(|n| n.rpc_addr()).collect();
    std::process::Command::new(BIN)
        .arg("node")
        .args(args)
        .args(["--endpoints", &endpoints.join(",")])
        .env("ROSTER_PASSWORD", ROOT_PASSWORD)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait (with a deadline) for a `node_spawn`ed command to exit 0; its stdout and stderr.
fn node_finish(mut child: std::process::Child, within: Duration) -> String {
    let deadline = Instant::now() + within;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            child.kill().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{:?}: {text}", out.status);
    text
}

/// The last line is the drain's totals, with the bytes really moved.
fn assert_totals_line(out: &str, id: &str) {
    let last = out
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    assert!(
        last.starts_with(&format!("decommissioned {id}: ")) && last.contains(" tablets, "),
        "last line: {last:?} of\n{out}"
    );
    let moved = last.split(" tablets, ").nth(1).unwrap_or("");
    assert!(
        !moved.starts_with("0 tablets") && !moved.starts_with("0.000 B"),
        "no bytes moved? {last:?}"
    );
    let tablets: u64 = last
        .split(": ")
        .nth(1)
        .and_then(|x| x.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(tablets > 0, "{last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_commands_dry_run_drain_and_report() {
    // 3 MiB replicas at 1 MiB/s: each clone takes 3 s, longer than the old, limit-blind
    // estimate, but healthy.
    let (cluster, _agents, c) = setup(
        4,
        &[("clone_rate_limit_bytes_per_sec", &(1u64 << 20).to_string())],
    )
    .await;
    create(&c, "t", 6, 3 << 20).await;
    let (code, out) = node(&cluster, &["decommission", "10004", "--dry-run"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("READY"), "{out}");
    assert_eq!(
        backends(&c).await["10004"].0,
        "ACTIVE",
        "a dry run changes nothing"
    );

    let (code, out) = node(&cluster, &["decommission", "10004", "--wait=all"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("decommissioned (dropped)"), "{out}");
    assert!(
        !out.contains("blocker") && !out.contains("without finishing"),
        "healthy rate-limited clones are no blockers: {out}"
    );
    assert_totals_line(&out, "10004");
    assert!(!backends(&c).await.contains_key("10004"));
    assert_healthy(&tablets(&c, "t").await, 3, "after node decommission");

    // Three backends left with three replicas: the dry run says no, and exits 1.
    let (code, out) = node(&cluster, &["decommission", "10001", "--dry-run"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("no destination"), "{out}");

    let (code, out) = node(&cluster, &["status", "--decommission"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("gossiped_replicas") && out.contains("active"),
        "{out}"
    );
    // Three live backends and the dropped one, from its tombstone.
    assert_eq!(out.matches("127.0.0.").count(), 4, "{out}");
    assert!(out.contains("| decommissioned "), "{out}");

    let (code, out) = node(&cluster, &["recommission", "10001"]);
    assert_eq!(code, Some(0), "an ACTIVE backend: harmless: {out}");
    assert!(
        out.contains("10001 are ACTIVE") && out.contains("nothing to cancel"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decommission_progress_over_http_json() {
    let (cluster, _agents, c) = setup(
        4,
        &[
            ("clone_rate_limit_bytes_per_sec", "500000"),
            ("drop_backend_after_decommission", "false"),
        ],
    )
    .await;
    create(&c, "t", 8, 200_000).await;
    c.execute(r#"ALTER SYSTEM DECOMMISSION BACKEND "10002""#)
        .await
        .unwrap();
    let port = cluster.nodes[1].http_port;
    let (code, body) = http_get(port, "/api/health", None);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"status\":\"ok\""), "{body}");
    let (code, _) = http_get(port, "/api/decommission", None);
    assert_eq!(code, 401);
    let (code, _) = http_get(port, "/api/decommission", Some("root:wrong"));
    assert_eq!(code, 401);
    let (code, body) = http_get(
        port,
        "/api/decommission",
        Some(&format!("root:{ROOT_PASSWORD}")),
    );
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let row = &v["rows"][0];
    assert_eq!(row["BackendId"], 10002, "{body}");
    assert_eq!(row["State"], "DECOMMISSIONING", "{body}");
    assert!(row["TabletsTotal"].as_u64().unwrap() > 0, "{body}");
    let (code, body) = http_get(port, "/api/nope", Some(&format!("root:{ROOT_PASSWORD}")));
    assert_eq!(code, 404, "{body}");
    // A user without ADMIN_PRIV cannot read backends.
    c.execute("CREATE USER 'viewer' IDENTIFIED BY 'pw'")
        .await
        .unwrap();
    let (code, body) = http_get(port, "/api/backends", Some("viewer:pw"));
    assert_eq!(code, 403, "{body}");
    // Kept after the drain (drop_backend_after_decommission = false): TabletNum has fallen to
    // 0 and the backend is DECOMMISSIONED.
    watch_until(
        &c,
        "t",
        3,
        Duration::from_secs(60),
        "drained and kept",
        async || backends(&c).await["10002"] == ("DECOMMISSIONED".to_string(), 0),
    )
    .await;
    let d = c.execute("SHOW DECOMMISSION").await.unwrap();
    assert_eq!(column(&d, 0, "State"), "DECOMMISSIONED");
    assert_eq!(column(&d, 0, "TabletsLeft"), "0");
    // Re-running it succeeds and says so (it was "DECOMMISSIONED and cannot be changed").
    let r = c
        .execute(r#"ALTER SYSTEM DECOMMISSION BACKEND "10002""#)
        .await
        .unwrap();
    assert!(
        r.message.contains("10002 are already decommissioned") && !r.message.contains("dropped"),
        "{}",
        r.message
    );
    let (code, out) = node(&cluster, &["decommission", "10002"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("already decommissioned"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_wiped_from_a_live_agent_are_repaired() {
    let (_cluster, mut agents, c) = setup(4, &[("disable_balance", "true")]).await;
    create(&c, "t", 6, 30_000).await;
    let original = sums(&tablets(&c, "t").await);
    let had = agents[0].tablet_dirs();
    assert!(!had.is_empty());
    // The agent comes back with an empty data directory: alive, but its replicas are gone.
    agents[0].kill9();
    std::fs::remove_dir_all(agents[0].dir.join("tablets")).unwrap();
    agents[0].spawn();
    watch_until(
        &c,
        "t",
        2,
        Duration::from_secs(60),
        "lost replicas repaired",
        async || {
            let t = tablets(&c, "t").await;
            t.values().all(|rs| rs.len() == 3 && healthy(rs) == 3)
                && t.values()
                    .flat_map(|rs| rs.iter())
                    .all(|r| r.0 != "10001" || r.1 == "NORMAL")
        },
    )
    .await;
    assert_eq!(sums(&tablets(&c, "t").await), original);
    assert_files_match(&c, &agents, &["t"], &[]).await;
}
