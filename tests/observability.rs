//! Issue 12 points 7 and 8 on real processes: the HTTP JSON is typed for programs (numbers,
//! booleans, integer bytes, Tag/Status objects, RFC 3339 times); each lifecycle event appears
//! once per FE log with its ids, a move's completion is logged as such; a down peer and an
//! exhausted fd table produce a bounded number of log lines.

mod common;

use common::agents::*;
use common::*;
use roster_client::Client;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Wait until `pred` holds, polling every 100 ms, or fail with `what`.
async fn wait_for(within: Duration, what: &str, mut pred: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !pred().await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn log_of(cluster: &Cluster, i: usize) -> String {
    std::fs::read_to_string(&cluster.nodes[i].log).unwrap_or_default()
}

/// Lines of `log` containing every one of `parts`.
fn lines_with<'a>(log: &'a str, parts: &[&str]) -> Vec<&'a str> {
    log.lines()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .collect()
}

async fn create(c: &Client, name: &str, buckets: u32) {
    c.execute(&format!(
        "CREATE TABLE {name} (k INT) DISTRIBUTED BY HASH(k) BUCKETS {buckets} \
         PROPERTIES (\"replication_num\" = \"3\", \"fill_bytes_per_tablet\" = \"20000\")"
    ))
    .await
    .unwrap();
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix milliseconds of an RFC 3339 timestamp (`YYYY-MM-DDTHH:MM:SS[.frac](Z|+hh:mm|-hh:mm)`),
/// or `None` if it is not one.
fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut ms = 0;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let frac = &s[start..i.min(start + 3)];
        ms = frac.parse::<i64>().ok()? * 10_i64.pow(3 - frac.len() as u32);
    }
    let offset_min = match s.get(i..)? {
        "Z" | "z" => 0,
        tz if tz.len() == 6 && (tz.starts_with('+') || tz.starts_with('-')) => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            let v = oh * 60 + om;
            if tz.starts_with('-') { -v } else { v }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    Some(secs * 1000 + ms)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The view's rows, after checking the envelope.
fn rows(port: u16, path: &str) -> Vec<Value> {
    let (code, body) = http_get(port, path, Some(&format!("root:{ROOT_PASSWORD}")));
    assert_eq!(code, 200, "{path}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    assert!(v["columns"].is_array(), "{path}: {body}");
    let rows = v["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("{path}: {body}"));
    rows.clone()
}

fn int(row: &Value, key: &str) -> u64 {
    row[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a non-negative integer in {row}"))
}

fn boolean(row: &Value, key: &str) -> bool {
    row[key]
        .as_bool()
        .unwrap_or_else(|| panic!("{key} is not a boolean in {row}"))
}

fn text<'a>(row: &'a Value, key: &str) -> &'a str {
    row[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string in {row}"))
}

/// A recent RFC 3339 time (within the last hour, not in the future beyond clock skew).
fn time(row: &Value, key: &str) {
    let s = text(row, key);
    let t = parse_rfc3339(s).unwrap_or_else(|| panic!("{key} = {s:?} is not RFC 3339 in {row}"));
    let now = now_ms();
    assert!(
        t <= now + 5_000 && t >= now - 3_600_000,
        "{key} = {s} is not recent"
    );
}

#[test]
fn the_rfc3339_checker_itself() {
    assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(
        parse_rfc3339("2023-11-14T22:13:20.123Z"),
        Some(1_700_000_000_123)
    );
    assert_eq!(
        parse_rfc3339("2023-11-14T23:13:20+01:00"),
        Some(1_700_000_000_000)
    );
    for bad in [
        "2023-11-14 22:13:20",
        "1700000000",
        "2023-11-14T22:13:20",
        "N/A",
    ] {
        assert_eq!(parse_rfc3339(bad), None, "{bad}");
    }
}

/// Every /api/ view, typed: what a program can rely on (README "HTTP API").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_json_is_typed() {
    let cluster = Cluster::start(3, 0);
    let (agents, c) = agents_up(
        &cluster,
        4,
        &[
            ("drop_backend_after_decommission", "false"),
            ("clone_rate_limit_bytes_per_sec", "20000"),
        ],
    )
    .await;
    create(&c, "t", 6).await;
    c.execute(r#"ALTER SYSTEM DECOMMISSION BACKEND "10004""#)
        .await
        .unwrap();
    c.execute("ADD BACKEND BLACKLIST 10001").await.unwrap();
    let port = cluster.nodes[1].http_port;

    // Capacities come with the second heartbeat; wait until every backend reported some.
    wait_for(Duration::from_secs(20), "capacities reported", async || {
        let r = rows(port, "/api/backends");
        r.len() == 4 && r.iter().all(|b| b["TotalCapacity"].as_u64() > Some(0))
    })
    .await;
    let backends = rows(port, "/api/backends");
    for b in &backends {
        assert!((10001..=10004).contains(&int(b, "BackendId")), "{b}");
        assert_eq!(int(b, "HeartbeatPort") as u16, {
            let a = &agents[int(b, "BackendId") as usize - 10001];
            a.port
        });
        // Reported by the agent's heartbeat, so known (not null) here.
        assert!(int(b, "BePort") > 0, "{b}");
        assert!(b["HttpPort"].is_null() || b["HttpPort"].is_u64(), "{b}");
        time(b, "LastStartTime");
        time(b, "LastHeartbeat");
        assert!(boolean(b, "Alive"), "{b}");
        let id = int(b, "BackendId");
        assert_eq!(boolean(b, "SystemDecommissioned"), id == 10004, "{b}");
        int(b, "TabletNum");
        let (used, avail, total) = (
            int(b, "DataUsedCapacity"),
            int(b, "AvailCapacity"),
            int(b, "TotalCapacity"),
        );
        assert!(avail <= total && used <= total, "{b}");
        let pct = b["UsedPct"]
            .as_f64()
            .unwrap_or_else(|| panic!("UsedPct in {b}"));
        assert!((0.0..=100.0).contains(&pct), "{b}");
        let tag = &b["Tag"];
        assert!(tag.is_object(), "Tag is not an object: {b}");
        assert_eq!(tag["location"], "default", "{b}");
        let status = &b["Status"];
        assert!(status.is_object(), "Status is not an object: {b}");
        assert!(status["isQueryDisabled"].is_boolean(), "{b}");
        assert!(status["isLoadDisabled"].is_boolean(), "{b}");
        assert!(status["lastSuccessReportTabletsTime"].is_null(), "{b}");
        let want = if id == 10004 {
            "DECOMMISSIONING"
        } else {
            "ACTIVE"
        };
        let membership = status["membership"].as_str().unwrap();
        assert!(
            membership == want || id == 10004 && membership == "DECOMMISSIONED",
            "{b}"
        );
        int(b, "HeartbeatFailureCounter");
        text(b, "Version");
        text(b, "ErrMsg");
    }

    let frontends = rows(port, "/api/frontends");
    assert_eq!(frontends.len(), 3);
    let mut masters = 0;
    for f in &frontends {
        for k in [
            "EditLogPort",
            "HttpPort",
            "QueryPort",
            "RpcPort",
            "ReplayedJournalId",
        ] {
            int(f, k);
        }
        masters += boolean(f, "IsMaster") as u32;
        assert!(boolean(f, "Alive"), "{f}");
        boolean(f, "Join");
        boolean(f, "CurrentConnected");
        time(f, "LastHeartbeat");
        assert!(matches!(text(f, "Role"), "FOLLOWER" | "OBSERVER"), "{f}");
    }
    assert_eq!(masters, 1, "{frontends:?}");

    let d = rows(port, "/api/decommission");
    assert_eq!(d.len(), 1, "{d:?}");
    let d = &d[0];
    assert_eq!(int(d, "BackendId"), 10004);
    for k in [
        "TabletsTotal",
        "TabletsLeft",
        "BytesMoved",
        "BytesLeft",
        "RateBytesPerSec",
        "Blockers",
    ] {
        int(d, k);
    }
    assert!(int(d, "TabletsTotal") > 0, "{d}");
    assert!(d["EtaSec"].is_null() || d["EtaSec"].is_u64(), "{d}");

    // Blockers: none here; the shape is still an object with typed rows when there are some.
    for b in rows(port, "/api/decommission/blockers") {
        int(&b, "TabletId");
        int(&b, "BackendId");
        text(&b, "Reason");
    }

    let bl = rows(port, "/api/blacklist");
    assert_eq!(bl.len(), 1, "{bl:?}");
    let e = &bl[0];
    assert_eq!(int(e, "BackendId"), 10001);
    assert_eq!(text(e, "AddBlackListType"), "MANUAL");
    time(e, "LostConnectionTime");
    int(e, "LostConnectionNumberInPeriod");
    assert_eq!(int(e, "CheckTimePeriod(s)"), 120);
    text(e, "Frontend");

    let tables = rows(port, "/api/tables");
    assert_eq!(tables, vec![serde_json::json!({ "Tables_in_roster": "t" })]);

    // SQL keeps Doris's human units and times.
    let sql = c.execute("SHOW BACKENDS").await.unwrap();
    let total = column(&sql, 0, "TotalCapacity");
    assert!(
        total.parse::<u64>().is_err() && total.contains('B'),
        "{total}"
    );
    assert!(!column(&sql, 0, "LastHeartbeat").contains('T'));
    assert!(column(&sql, 0, "Status").contains("\"lastSuccessReportTabletsTime\":\"N/A\""));
}

/// Each lifecycle event once in every FE's log, with its ids; moves logged as moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_events_are_logged_once_with_their_ids() {
    let cluster = Cluster::start(3, 0);
    let (mut agents, c) = agents_up(
        &cluster,
        4,
        &[
            ("drop_backend_after_decommission", "false"),
            // Only the decommission moves replicas, so each leaving replica is one move.
            ("disable_balance", "true"),
        ],
    )
    .await;
    create(&c, "t", 6).await;
    wait_all(
        &cluster,
        &[0, 1, 2],
        "SHOW BACKENDS",
        Duration::from_secs(30),
        "replicas created",
        |r| {
            (0..4)
                .map(|i| column(r, i, "TabletNum").parse::<u64>().unwrap())
                .sum::<u64>()
                == 18
        },
    )
    .await;
    let leaving_had = agents[3].tablet_dirs();
    assert!(!leaving_had.is_empty(), "10004 holds replicas");
    c.execute(r#"ALTER SYSTEM DECOMMISSION BACKEND "10004""#)
        .await
        .unwrap();
    // Repeating it is harmless and logs nothing more.
    c.execute(r#"ALTER SYSTEM DECOMMISSION BACKEND "10004""#)
        .await
        .unwrap();
    // DECOMMISSIONED everywhere, and the agent no longer holds the moved replicas' old copies
    // (deleted by the reconciler: the line that used to read "the catalog no longer has").
    wait_all(
        &cluster,
        &[0, 1, 2],
        "SHOW DECOMMISSION",
        Duration::from_secs(60),
        "10004 decommissioned",
        |r| r.rows.len() == 1 && column(r, 0, "State") == "DECOMMISSIONED",
    )
    .await;
    wait_for(Duration::from_secs(20), "old copies deleted", async || {
        agents[3].tablet_dirs().is_empty()
    })
    .await;
    c.execute(r#"ALTER SYSTEM DROPP BACKEND "10004""#)
        .await
        .unwrap();
    c.execute("ADD BACKEND BLACKLIST 10002").await.unwrap();
    c.execute("DELETE BACKEND BLACKLIST 10002").await.unwrap();
    // 10003 dies and comes back.
    agents[2].kill9();
    wait_all(
        &cluster,
        &[0, 1, 2],
        "SHOW BACKENDS",
        Duration::from_secs(30),
        "10003 dead",
        |r| {
            (0..r.rows.len())
                .any(|i| column(r, i, "BackendId") == "10003" && column(r, i, "Alive") == "false")
        },
    )
    .await;
    agents[2].spawn();
    wait_all(
        &cluster,
        &[0, 1, 2],
        "SHOW BACKENDS",
        Duration::from_secs(30),
        "10003 alive again",
        |r| {
            (0..r.rows.len())
                .any(|i| column(r, i, "BackendId") == "10003" && column(r, i, "Alive") == "true")
        },
    )
    .await;
    // Every FE has applied (and logged) all of it: wait_all read the last change through a
    // linearizable read on each FE.
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;

    let once = |log: &str, parts: &[&str], fe: usize| {
        let found = lines_with(log, parts);
        assert_eq!(
            found.len(),
            1,
            "fe{}: want exactly one line with {parts:?}, got {found:#?}",
            fe + 1
        );
    };
    for fe in 0..3 {
        let log = log_of(&cluster, fe);
        once(&log, &["DECOMMISSION accepted", "backend=10004"], fe);
        once(&log, &["backend DECOMMISSIONED", "backend=10004"], fe);
        once(&log, &["backend dropped", "backend=10004"], fe);
        once(&log, &["backend dead", "backend=10003"], fe);
        // Alive when first registered, and again after the restart.
        assert_eq!(
            lines_with(&log, &["backend alive", "backend=10003"]).len(),
            2,
            "fe{}",
            fe + 1
        );
        once(
            &log,
            &["blacklist entry added", "backend=10002", "kind=MANUAL"],
            fe,
        );
        once(
            &log,
            &["blacklist entry removed", "backend=10002", "kind=MANUAL"],
            fe,
        );
        for id in 1..=3 {
            once(&log, &["frontend joined", &format!("frontend={id} ")], fe);
        }
        // Every replica that left 10004 is one "move finished" line naming its tablet.
        let moves = lines_with(&log, &["replica move finished", "from=10004"]);
        assert_eq!(moves.len(), leaving_had.len(), "fe{}: {moves:#?}", fe + 1);
        for t in &leaving_had {
            assert!(
                moves.iter().any(|l| l.contains(&format!("tablet={t} "))),
                "fe{}: no move line for tablet {t}: {moves:#?}",
                fe + 1
            );
        }
        assert!(
            lines_with(&log, &["catalog no longer has"]).is_empty(),
            "fe{}: a move's old copy logged as a stray replica:\n{log}",
            fe + 1
        );
    }
    // Leadership, with its term: only the leader holds it (gained once more than lost).
    for fe in 0..3 {
        let log = log_of(&cluster, fe);
        let gained = lines_with(&log, &["leadership gained", "term="]).len();
        let lost = lines_with(&log, &["leadership lost", "term="]).len();
        assert_eq!(gained, lost + usize::from(fe == leader), "fe{}", fe + 1);
    }
}

/// A killed peer costs a bounded number of "Unreachable" lines (one per peer per 10 s, with a
/// count); a stopped-then-resumed master logs losing leadership with its term; dropping the
/// dead FE logs that it left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_peer_is_logged_rate_limited_and_leadership_changes_are_logged() {
    let mut cluster = Cluster::start(3, 0);
    let first = cluster.wait_leader(Duration::from_secs(20)).await;
    let count =
        |c: &Cluster, i: usize, what: &str| lines_with(&log_of(c, i), &[what, "term="]).len();

    // Stop the master until another FE is elected, then resume it: it logs the loss.
    let gained_before: Vec<usize> = (0..3)
        .map(|i| count(&cluster, i, "leadership gained"))
        .collect();
    cluster.signal(first, "STOP");
    wait_for(Duration::from_secs(20), "a new master", async || {
        (0..3).any(|i| i != first && count(&cluster, i, "leadership gained") > gained_before[i])
    })
    .await;
    cluster.signal(first, "CONT");
    wait_for(
        Duration::from_secs(20),
        "the old master logs the loss",
        async || count(&cluster, first, "leadership lost") == 1,
    )
    .await;
    let first_log = log_of(&cluster, first);
    let lost = lines_with(&first_log, &["leadership lost"]);
    let term: u64 = lost[0]
        .split("term=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no term in {lost:?}"));
    assert!(term >= 1, "{lost:?}");

    // Kill a follower of the current master.
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let victim = (leader + 1) % 3;
    let other = 3 - leader - victim;
    let victim_id = cluster.nodes[victim].id;
    cluster.kill9(victim);
    let unreachable = |c: &Cluster| -> usize {
        [leader, other]
            .iter()
            .map(|i| lines_with(&log_of(c, *i), &["Unreachable"]).len())
            .sum()
    };
    // Seen down: the first line about it comes at once.
    let peer = format!("peer={victim_id}");
    wait_for(
        Duration::from_secs(10),
        "the victim seen unreachable",
        async || !lines_with(&log_of(&cluster, leader), &["Unreachable", &peer]).is_empty(),
    )
    .await;
    // Over a 5 s window the master heartbeats the victim about 33 times (150 ms); without the
    // rate limit each failure is one or two lines.
    let before = unreachable(&cluster);
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let during = unreachable(&cluster) - before;
    assert!(
        during <= 2,
        "{during} Unreachable lines in 5 s\n{}",
        cluster.logs()
    );
    // The next line, 10 s after the first, carries the count of those suppressed.
    wait_for(
        Duration::from_secs(15),
        "a line with a suppressed count",
        async || {
            lines_with(&log_of(&cluster, leader), &["Unreachable", &peer])
                .iter()
                .any(|l| {
                    l.split("suppressed=")
                        .nth(1)
                        .and_then(|r| r.split_whitespace().next())
                        .and_then(|n| n.parse::<u64>().ok())
                        .is_some_and(|n| n > 0)
                })
        },
    )
    .await;

    // Drop the dead FE: every live FE logs once that it left.
    let addr = cluster.nodes[victim].edit_log_addr();
    cluster
        .client_of(&[leader, other])
        .execute(&format!("ALTER SYSTEM DROP FOLLOWER \"{addr}\""))
        .await
        .unwrap();
    let left = format!("frontend={victim_id} ");
    for fe in [leader, other] {
        wait_for(
            Duration::from_secs(10),
            "frontend left logged",
            async || lines_with(&log_of(&cluster, fe), &["frontend left", &left]).len() == 1,
        )
        .await;
    }
}

/// Open fds of `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Set the soft limit on open files of `pid` (the hard limit stays: raising it back needs no
/// privilege).
fn prlimit_nofile(pid: u32, n: u64) {
    let st = std::process::Command::new("prlimit")
        .args([format!("--pid={pid}"), format!("--nofile={n}:")])
        .status()
        .expect("prlimit");
    assert!(st.success(), "prlimit failed");
}

/// The soft limit on open files of `pid`.
fn nofile_soft(pid: u32) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

/// Out of descriptors, the MySQL accept loop backs off and logs a line per interval, not one
/// per attempt (it once wrote 2.5 million lines in 20 s); with descriptors back it serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fd_exhaustion_does_not_flood_the_log() {
    let cluster = Cluster::start(1, 0);
    cluster.wait_leader(Duration::from_secs(20)).await;
    let c = cluster.client(0);
    c.execute("SHOW FRONTENDS").await.unwrap();
    let pid = cluster.pid(0);
    let soft = nofile_soft(pid);
    prlimit_nofile(pid, open_fds(pid) as u64 + 3);
    // Connections the FE cannot accept stay in the backlog: accept keeps failing with EMFILE.
    let port = cluster.nodes[0].query_port;
    let conns: Vec<std::net::TcpStream> = (0..20)
        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    assert!(!conns.is_empty());
    wait_for(Duration::from_secs(10), "EMFILE seen", async || {
        !lines_with(&log_of(&cluster, 0), &["accept failed"]).is_empty()
    })
    .await;
    let before = lines_with(&log_of(&cluster, 0), &["accept failed"]).len();
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let log = log_of(&cluster, 0);
    let during = lines_with(&log, &["accept failed"]).len() - before;
    assert!(during <= 1, "{during} accept lines in 3 s");
    assert!(log.len() < 1 << 20, "log grew to {} bytes", log.len());
    drop(conns);
    prlimit_nofile(pid, soft);
    wait_for(Duration::from_secs(20), "serving again", async || {
        c.execute("SHOW FRONTENDS").await.is_ok()
    })
    .await;
}
