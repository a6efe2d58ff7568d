//! What one client may cost an FE (issue 13, acceptance 3 and 4), with real processes and a
//! real mysql client: a brute-force attack on root's password is throttled while another user
//! logs in normally; idle connections are closed after `connect_timeout_sec` and the one past
//! `max_connections` gets MySQL's 1040; a 100 MB statement is refused at once, costs no log
//! entry and no memory, and other clients' writes go on meanwhile.

mod common;

use common::{Cluster, ROOT_PASSWORD};
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// A relay that makes its clients reach `target` from the address `source` (the mysql client
/// cannot choose its source address): another host, as far as the FE can tell. Returns the
/// relay's port.
fn relay_from(rt: &tokio::runtime::Runtime, source: &str, target: u16) -> u16 {
    let source: std::net::IpAddr = source.parse().unwrap();
    let l = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = l.local_addr().unwrap().port();
    rt.spawn(async move {
        loop {
            let (mut client, _) = l.accept().await.expect("relay accept");
            tokio::spawn(async move {
                let s = tokio::net::TcpSocket::new_v4().unwrap();
                s.bind(std::net::SocketAddr::new(source, 0)).unwrap();
                let Ok(mut fe) = s.connect(([127, 0, 0, 1], target).into()).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut client, &mut fe).await;
            });
        }
    });
    port
}

/// One run of the real mysql client against `port`. Returns the MySQL error code of the failure
/// (0: success) and what the client printed.
fn mysql_at(port: u16, user: &str, password: &str, sql: &str) -> (u32, String) {
    let o = Command::new("mysql")
        .args([
            "-h127.0.0.1",
            &format!("-P{port}"),
            &format!("-u{user}"),
            &format!("-p{password}"),
            "--connect-timeout=20",
            "-e",
            sql,
        ])
        .output()
        .expect("the mysql client must be installed (Debian: mariadb-client)");
    let err = last_line(&o.stderr);
    (
        if o.status.success() {
            0
        } else {
            error_code(&err)
        },
        err,
    )
}

/// The client's last line of output (its ERROR line), at most 300 characters of it.
fn last_line(stderr: &[u8]) -> String {
    let s = String::from_utf8_lossy(stderr);
    let line = s.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    line.chars().take(300).collect()
}

/// The number in the client's "ERROR 1045 (28000): ..." line (u32::MAX when there is none).
fn error_code(stderr: &str) -> u32 {
    stderr
        .lines()
        .filter_map(|l| l.trim().strip_prefix("ERROR "))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .next_back()
        .unwrap_or(u32::MAX)
}

/// `VmRSS` or `VmHWM` (peak) of a process, in bytes.
fn mem_of(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = s
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"));
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("a number of kB");
    kb * 1024
}

const MIB: u64 = 1024 * 1024;

#[test]
fn brute_force_is_throttled_while_another_user_logs_in() {
    let cluster = Cluster::start(1, 0);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        cluster.wait_leader(Duration::from_secs(20)).await;
        common::exec_retry(
            &cluster.client(0),
            "CREATE USER 'alice' IDENTIFIED BY 'alice-pw'",
            Duration::from_secs(20),
        )
        .await
        .expect("create alice");
    });
    let port = cluster.nodes[0].query_port;
    let alice_port = relay_from(&rt, "127.0.0.9", port);
    let root_port = relay_from(&rt, "127.0.0.10", port);

    // Alice logs in from her own address all through the attack; every login must succeed and
    // none may be slowed much (she is neither the attacked user nor the attacking source).
    let stop = Arc::new(AtomicBool::new(false));
    let alice = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut logins = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let (code, err) = mysql_at(alice_port, "alice", "alice-pw", "SELECT 1");
                assert_eq!(code, 0, "alice's login failed during the attack: {err}");
                logins.push(t.elapsed());
                std::thread::sleep(Duration::from_millis(50)); // pacing, not synchronisation
            }
            logins
        })
    };

    // The attacker: 1,000 wrong root passwords in a row from one source. A 1045 is a password
    // that was checked (a guess); a 1129 is a refusal without a check.
    let start = Instant::now();
    let mut checked_at = Vec::new();
    let mut refused = 0;
    for i in 0..1000 {
        let (code, err) = mysql_at(port, "root", &format!("guess{i}"), "SELECT 1");
        match code {
            1045 => checked_at.push((i, start.elapsed())),
            1129 => refused += 1,
            _ => panic!("attempt {i}: expected 1045 or 1129, got {code}: {err}"),
        }
    }
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let logins = alice.join().expect("alice's thread");

    // The rate of guesses falls below 10/s within the first 20 attempts: from the 20th attempt
    // on, no second holds 10 checked passwords, and the whole run checks few.
    let after_20: Vec<Duration> = checked_at
        .iter()
        .filter(|(i, _)| *i >= 20)
        .map(|(_, t)| *t)
        .collect();
    for (k, t) in after_20.iter().enumerate() {
        let in_window = after_20[k..]
            .iter()
            .take_while(|u| **u < *t + Duration::from_secs(1))
            .count();
        assert!(
            in_window < 10,
            "{in_window} passwords checked within 1 s from {t:?} (attempts 20..1000 must be throttled below 10/s); {} checked in all",
            checked_at.len()
        );
    }
    let rate = checked_at.len() as f64 / elapsed.as_secs_f64();
    assert!(
        rate < 10.0,
        "{} of 1000 guesses checked in {elapsed:?} ({rate:.1}/s)",
        checked_at.len()
    );
    assert!(refused > 900, "only {refused} of 1000 attempts refused");
    eprintln!(
        "1000 wrong passwords in {elapsed:?}: {} checked ({rate:.2}/s), {refused} refused (1129); alice logged in {} times, slowest {:?}",
        checked_at.len(),
        logins.len(),
        logins.iter().max()
    );
    assert!(
        logins.len() >= 5,
        "alice logged in only {} times",
        logins.len()
    );
    let slowest = logins.iter().max().copied().unwrap_or_default();
    assert!(
        slowest < Duration::from_secs(2),
        "alice's slowest login took {slowest:?}"
    );

    // Root itself is slowed (the user under attack), never locked out: the right password from
    // another address gets in, within the per-user delay bound.
    let t = Instant::now();
    let (code, err) = mysql_at(root_port, "root", ROOT_PASSWORD, "SELECT 1");
    assert_eq!(code, 0, "root from another address was refused: {err}");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "root's login took {:?}",
        t.elapsed()
    );

    // The attack is in the log, rate-limited to a line a second.
    let logs = cluster.logs();
    let lines = logs
        .lines()
        .filter(|l| l.contains("login failed") || l.contains("login refused unchecked"))
        .count();
    assert!(
        logs.contains("login refused unchecked") && logs.contains("127.0.0.1"),
        "refused logins are logged with their source"
    );
    assert!(
        lines as f64 <= elapsed.as_secs_f64() + 3.0,
        "{lines} log lines in {elapsed:?}: not rate-limited"
    );
}

/// Reads a MySQL packet: (sequence, payload).
async fn read_packet(s: &mut tokio::net::TcpStream) -> std::io::Result<Vec<u8>> {
    let mut h = [0u8; 4];
    s.read_exact(&mut h).await?;
    let len = u32::from_le_bytes([h[0], h[1], h[2], 0]) as usize;
    let mut p = vec![0u8; len];
    s.read_exact(&mut p).await?;
    Ok(p)
}

#[test]
fn idle_connections_are_closed_and_the_one_too_many_gets_1040() {
    const IDLE: usize = 5000;
    const TIMEOUT_SEC: u64 = 4;
    let extra = format!("connect_timeout_sec = {TIMEOUT_SEC}\nmax_connections = {IDLE}\n");
    // Both ends hold one descriptor per connection.
    raise_nofile(IDLE as u64 * 2 + 1000);
    let cluster = Cluster::start_configured(1, 0, &extra, "");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        cluster.wait_leader(Duration::from_secs(20)).await;
        let addr = format!("127.0.0.1:{}", cluster.nodes[0].query_port);
        let pid = cluster.pid(0);
        let rss_before = mem_of(pid, "VmRSS");

        // 5,000 clients connect, read the greeting, and say nothing more.
        let opened = Instant::now();
        let mut idle = Vec::with_capacity(IDLE);
        for i in 0..IDLE {
            let mut s = tokio::net::TcpStream::connect(&addr)
                .await
                .unwrap_or_else(|e| panic!("connection {i}: {e}"));
            let greeting = read_packet(&mut s).await.expect("greeting");
            assert_eq!(greeting[0], 10, "connection {i}: protocol 10 greeting");
            idle.push(s);
        }
        let all_open = opened.elapsed();
        let rss_open = mem_of(pid, "VmRSS");

        // The 5,001st is refused with 1040 and closed.
        let mut extra = tokio::net::TcpStream::connect(&addr).await.expect("connect");
        let p = tokio::time::timeout(Duration::from_secs(5), read_packet(&mut extra))
            .await
            .expect("the refusal within 5 s")
            .expect("an error packet");
        assert_eq!(p[0], 0xff, "an error packet, got {p:?}");
        let code = u16::from_le_bytes([p[1], p[2]]);
        assert_eq!(code, 1040, "{}", String::from_utf8_lossy(&p[3..]));
        assert!(String::from_utf8_lossy(&p).contains("Too many connections"));

        // Every idle one is closed by the FE after connect_timeout_sec (counted from its
        // accept), and none long before.
        let mut closed = tokio::task::JoinSet::new();
        for mut s in idle {
            closed.spawn(async move {
                let mut b = [0u8; 64];
                loop {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => return Instant::now(),
                        Ok(_) => {}
                    }
                }
            });
        }
        let deadline = Duration::from_secs(TIMEOUT_SEC + 20);
        let mut first: Option<Instant> = None;
        let mut last = opened;
        let mut n = 0;
        while let Some(r) = tokio::time::timeout(deadline, closed.join_next())
            .await
            .unwrap_or_else(|_| panic!("{} idle connections still open after {deadline:?}", IDLE - n))
        {
            let t = r.expect("reader");
            first = Some(first.map_or(t, |f| f.min(t)));
            last = last.max(t);
            n += 1;
        }
        assert_eq!(n, IDLE);
        let first = first.expect("closed").duration_since(opened);
        assert!(
            first >= Duration::from_secs(TIMEOUT_SEC) - Duration::from_millis(500),
            "an idle connection was closed after only {first:?} (connect_timeout_sec = {TIMEOUT_SEC})"
        );
        let rss_after = mem_of(pid, "VmRSS");
        eprintln!(
            "{IDLE} idle connections opened in {all_open:?}; closed between {first:?} and {:?}; FE RSS {} MiB before, {} MiB with all open, {} MiB after",
            last.duration_since(opened),
            rss_before / MIB,
            rss_open / MIB,
            rss_after / MIB
        );
        assert!(
            rss_open < rss_before + 256 * MIB,
            "RSS grew from {} MiB to {} MiB with {IDLE} idle connections",
            rss_before / MIB,
            rss_open / MIB
        );

        // And the FE takes new logins at once.
        let (code, err) = mysql_at(
            cluster.nodes[0].query_port,
            "root",
            ROOT_PASSWORD,
            "SELECT 1",
        );
        assert_eq!(code, 0, "login after the idle flood: {err}");
    });
}

/// Raise this process's open-file limit (the FEs it starts inherit it).
fn raise_nofile(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        }
    }
    assert!(
        lim.rlim_cur >= want,
        "this test needs {want} open files; the hard limit is {}",
        lim.rlim_max
    );
}

/// The leader's applied index.
async fn applied(cluster: &Cluster, i: usize) -> u64 {
    cluster
        .client(i)
        .status()
        .await
        .expect("status")
        .last_applied
}

/// Sends `statement` through the real mysql client; returns (error code, stderr, time taken).
fn mysql_big(port: u16, statement: &str) -> (u32, String, Duration) {
    let t = Instant::now();
    let mut child = Command::new("mysql")
        .args([
            "-h127.0.0.1",
            &format!("-P{port}"),
            "-uroot",
            &format!("-p{ROOT_PASSWORD}"),
            "--max-allowed-packet=1G",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mysql client");
    {
        let mut stdin = child.stdin.take().unwrap();
        // The server may close before it has read everything: a broken pipe is fine.
        let _ = stdin.write_all(statement.as_bytes());
        let _ = stdin.write_all(b";\n");
    }
    let out = child.wait_with_output().expect("mysql ran");
    // The client echoes the failed statement (100 MB) before its ERROR line: keep that line.
    let err = last_line(&out.stderr);
    (error_code(&err), err, t.elapsed())
}

#[test]
fn a_100mb_statement_is_refused_at_once_and_costs_nothing() {
    const BIG: usize = 100 * 1024 * 1024;
    let cluster = Cluster::start(3, 0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let _in_rt = rt.enter();
    let leader = rt.block_on(cluster.wait_leader(Duration::from_secs(20)));
    let follower = (leader + 1) % 3;
    let statement = format!(
        "ALTER SYSTEM ADD BACKEND '127.0.9.1:9050' PROPERTIES ('tag.location' = '{}')",
        "x".repeat(BIG)
    );
    rt.block_on(common::exec_retry(
        &cluster.client(leader),
        "CREATE USER 'first' IDENTIFIED BY 'p'",
        Duration::from_secs(20),
    ))
    .expect("first write");

    // Alone: through the real mysql client to the leader, and through the gRPC client library
    // to a follower. Each is refused at once, names the limit, and costs no log entry (the next
    // write lands right after the last one) and no memory (peak RSS).
    let before = rt.block_on(applied(&cluster, leader));
    let (leader_pid, follower_pid) = (cluster.pid(leader), cluster.pid(follower));
    let (hwm_leader, hwm_follower) = (mem_of(leader_pid, "VmHWM"), mem_of(follower_pid, "VmHWM"));
    let (code, err, mysql_took) = mysql_big(cluster.nodes[leader].query_port, &statement);
    assert_eq!(code, 1153, "mysql: {err}");
    assert!(err.contains("max_allowed_packet"), "mysql: {err}");
    assert!(mysql_took < Duration::from_secs(10), "took {mysql_took:?}");
    let t = Instant::now();
    let r = rt.block_on(cluster.client(follower).execute(&statement));
    let grpc_took = t.elapsed();
    let e = r
        .expect_err("a 100 MB statement must be refused")
        .to_string();
    let e: String = e.chars().take(300).collect();
    assert!(
        e.contains("max_allowed_packet"),
        "the gRPC refusal names the limit: {e}"
    );
    assert!(grpc_took < Duration::from_secs(10), "took {grpc_took:?}");
    let leader_grew = mem_of(leader_pid, "VmHWM").saturating_sub(hwm_leader);
    let follower_grew = mem_of(follower_pid, "VmHWM").saturating_sub(hwm_follower);
    rt.block_on(common::exec_retry(
        &cluster.client(leader),
        "CREATE USER 'after' IDENTIFIED BY 'p'",
        Duration::from_secs(10),
    ))
    .expect("follow-up write");
    let after = rt.block_on(applied(&cluster, leader));
    assert_eq!(
        after,
        before + 1,
        "the follow-up write is the only new log entry"
    );
    assert!(
        leader_grew < 64 * MIB && follower_grew < 64 * MIB,
        "peak RSS grew by {} MiB (leader) and {} MiB (follower)",
        leader_grew / MIB,
        follower_grew / MIB
    );

    // With company: a writer on the other follower goes on while big statements arrive at the
    // leader over both ports; every write succeeds, none is held up.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let client = cluster.client((leader + 2) % 3);
        rt.spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                client
                    .execute(&format!("CREATE USER 'w{i}' IDENTIFIED BY 'p'"))
                    .await
                    .unwrap_or_else(|e| panic!("write {i} failed during the big statements: {e}"));
                lat.push(t.elapsed());
                i += 1;
            }
            lat
        })
    };
    for _ in 0..2 {
        let (code, err, _) = mysql_big(cluster.nodes[leader].query_port, &statement);
        assert_eq!(code, 1153, "mysql: {err}");
        let r = rt.block_on(cluster.client(leader).execute(&statement));
        assert!(r.is_err(), "the big statement over gRPC was accepted");
    }
    stop.store(true, Ordering::Relaxed);
    let lat = rt.block_on(writer).expect("writer");
    let slowest = lat.iter().max().copied().unwrap_or_default();
    eprintln!(
        "100 MB statement: mysql refused in {mysql_took:?} (leader peak RSS +{} MiB), gRPC in {grpc_took:?} (follower peak RSS +{} MiB); {} writes during 4 more, slowest {slowest:?}",
        leader_grew / MIB,
        follower_grew / MIB,
        lat.len()
    );
    assert!(
        lat.len() >= 3,
        "only {} writes went through meanwhile",
        lat.len()
    );
    assert!(
        slowest < Duration::from_secs(3),
        "a write took {slowest:?} meanwhile"
    );
}
