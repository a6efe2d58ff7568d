//! `roster playground` as a newcomer uses it: each FE and agent its own child process with its
//! pid printed, one "ready" line, log lines prefixed with the node's name, a real mysql client
//! seeing 4 alive backends and the demo table; kill -9 of the leader's printed pid and writes
//! resume through another FE; SIGTERM stops every node gracefully; the nodes die with the
//! playground even when it is killed with SIGKILL; a taken port is refused before anything
//! starts. Every playground here runs on a `--base-port` block of free ports.

mod common;

use common::{BIN, free_ports};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The first port of 20 consecutive free ones (the playground's `--base-port` block).
fn free_block() -> u16 {
    loop {
        let p = free_ports(20);
        if p.windows(2).all(|w| w[1] == w[0] + 1) {
            return p[0];
        }
    }
}

/// A running `roster playground`: stdout lines arrive on `out`, stderr lines gather in `err`.
/// Dropping it kills the playground with SIGKILL; its nodes die with it.
struct Playground {
    child: Child,
    out: Receiver<String>,
    seen: Vec<String>,
    err: Arc<Mutex<Vec<String>>>,
    /// Ends when the playground's stderr does (every process holding it has exited).
    err_reader: Option<std::thread::JoinHandle<()>>,
}

impl Playground {
    fn start(base: u16, data_dir: &std::path::Path) -> Playground {
        let mut child = Command::new(BIN)
            .args(["playground", "--base-port", &base.to_string(), "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, out) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let err = Arc::new(Mutex::new(Vec::new()));
        let sink = err.clone();
        let err_reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Playground {
            child,
            out,
            seen: Vec::new(),
            err,
            err_reader: Some(err_reader),
        }
    }

    /// The next stdout line that satisfies `want`, within `within`.
    fn wait_line(&mut self, within: Duration, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.out.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if want(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no such line within {within:?}; stdout so far:\n{}\nstderr (last lines):\n{}",
                    self.seen.join("\n"),
                    self.stderr_tail()
                ),
            }
        }
    }

    fn stderr_tail(&self) -> String {
        let err = self.err.lock().unwrap();
        let from = err.len().saturating_sub(40);
        err[from..].join("\n")
    }
}

impl Drop for Playground {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mysql_on(port: u16, sql: &str) -> Result<String, String> {
    let o = Command::new("mysql")
        .args([
            "-h127.0.0.1",
            &format!("-P{port}"),
            "-uroot",
            "--batch",
            "--connect-timeout=10",
            "-e",
            sql,
        ])
        .output()
        .expect("the mysql client is installed (.ci/run installs mariadb-client)");
    if o.status.success() {
        Ok(String::from_utf8(o.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&o.stderr).into_owned())
    }
}

fn mysql(port: u16, sql: &str) -> String {
    mysql_on(port, sql).unwrap_or_else(|e| panic!("mysql -e {sql:?} failed: {e}"))
}

/// The parent pid of `pid` and its command line, from /proc; None once it is gone (a zombie
/// counts as gone: it no longer runs).
fn proc_info(pid: u32) -> Option<(u32, String)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces, so split after its ')'.
    let mut after = stat.rsplit_once(')')?.1.split_whitespace();
    let state = after.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    let ppid = after.next()?.parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    Some((ppid, cmdline))
}

const NODES: [&str; 7] = ["fe1", "fe2", "fe3", "be1", "be2", "be3", "be4"];

#[test]
fn playground_runs_each_node_as_a_process_and_writes_resume_after_kill_9_of_the_leader() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_block();
    let query_port = |fe: usize| base + 4 * (fe as u16 - 1) + 2;
    let started = Instant::now();
    let mut pg = Playground::start(base, &dir.path().join("pg"));
    let playground_pid = pg.child.id();

    // (a) One "ready" line, once everything is up; before it, each node's name and pid.
    let ready = pg.wait_line(Duration::from_secs(120), |l| l.starts_with("ready"));
    eprintln!("ready after {:?}: {ready}", started.elapsed());
    assert_eq!(
        ready,
        "ready: 3 frontends, 4 backends alive, demo table 24/24 replicas NORMAL"
    );
    let mut pids: BTreeMap<String, u32> = BTreeMap::new();
    for l in &pg.seen {
        let w: Vec<&str> = l.split_whitespace().collect();
        if w.len() >= 4 && w[0] == "started" && w[2] == "pid" {
            pids.insert(w[1].to_string(), w[3].parse().unwrap());
        }
    }
    assert_eq!(
        pids.keys().map(String::as_str).collect::<Vec<_>>(),
        {
            let mut n = NODES.to_vec();
            n.sort();
            n
        },
        "{:#?}",
        pg.seen
    );
    let mut distinct: Vec<u32> = pids.values().copied().collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), NODES.len(), "pids are distinct: {pids:?}");
    for (name, pid) in &pids {
        let (ppid, cmdline) =
            proc_info(*pid).unwrap_or_else(|| panic!("{name}'s pid {pid} is not running"));
        assert_eq!(ppid, playground_pid, "{name} is a child of the playground");
        let sub = if name.starts_with("fe") {
            "start --config"
        } else {
            "backend --config"
        };
        assert!(cmdline.contains(sub), "{name}: {cmdline}");
    }
    assert!(
        pg.seen
            .iter()
            .any(|l| l.contains(&format!("mysql -h127.0.0.1 -P{} -uroot", query_port(1)))),
        "{:#?}",
        pg.seen
    );

    // The cluster a mysql client sees once ready.
    let backends = mysql(query_port(1), "SHOW BACKENDS");
    let mut lines = backends.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let alive = header.iter().position(|c| *c == "Alive").unwrap();
    let tablets = header.iter().position(|c| *c == "TabletNum").unwrap();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 4, "{backends}");
    assert!(rows.iter().all(|r| r[alive] == "true"), "{backends}");
    assert_eq!(
        rows.iter()
            .map(|r| r[tablets].parse::<u64>().unwrap())
            .sum::<u64>(),
        24,
        "8 tablets x 3 replicas: {backends}"
    );
    assert!(
        mysql(query_port(2), "SHOW TABLES")
            .lines()
            .any(|l| l == "demo")
    );
    let tablets = mysql(query_port(3), "SHOW TABLETS FROM demo");
    assert_eq!(tablets.lines().count(), 1 + 24, "{tablets}");
    assert!(
        tablets
            .lines()
            .skip(1)
            .all(|l| l.contains("\tNORMAL\t2097152\t")),
        "{tablets}"
    );

    // (d) Each node's log lines carry its name: each FE's and agent's start line is prefixed
    // with the name of the node it describes, and none comes without a prefix.
    {
        let err = pg.err.lock().unwrap();
        for n in 1..=3 {
            assert!(
                err.iter().any(|l| l.starts_with(&format!("fe{n} | "))
                    && l.contains("frontend started")
                    && l.contains(&format!("node_id={n}"))),
                "no prefixed start line of fe{n}:\n{}",
                err.join("\n")
            );
        }
        for n in 1..=4 {
            assert!(
                err.iter().any(|l| l.starts_with(&format!("be{n} | "))
                    && l.contains("backend agent started")
                    && l.contains(&format!("host=127.0.0.{n}"))),
                "no prefixed start line of be{n}:\n{}",
                err.join("\n")
            );
        }
        let unprefixed: Vec<&String> = err
            .iter()
            .filter(|l| l.contains("frontend started") || l.contains("backend agent started"))
            .filter(|l| !NODES.iter().any(|n| l.starts_with(&format!("{n} | "))))
            .collect();
        assert!(unprefixed.is_empty(), "{unprefixed:#?}");
    }

    // (b) kill -9 exactly as printed; writes through another FE succeed again.
    let kill_line = pg.wait_line(Duration::from_secs(30), |l| {
        l.starts_with("kill -9 ") && l.ends_with(", the current leader")
    });
    let w: Vec<&str> = kill_line.split_whitespace().collect();
    let (leader_pid, leader): (u32, String) = (
        w[2].parse().unwrap(),
        w[4].trim_end_matches(',').to_string(),
    );
    assert_eq!(pids[&leader], leader_pid, "{kill_line}");
    let st = Command::new("sh")
        .args(["-c", &kill_line])
        .status()
        .unwrap();
    assert!(st.success(), "{kill_line}");
    let killed_at = Instant::now();
    let other: usize = (1..=3)
        .find(|n| format!("fe{n}") != leader)
        .expect("another FE");
    let deadline = killed_at + Duration::from_secs(30);
    loop {
        match mysql_on(
            query_port(other),
            r#"ALTER SYSTEM ADD BACKEND "127.0.9.1:9050""#,
        ) {
            Ok(_) => break,
            Err(e) => assert!(
                Instant::now() < deadline,
                "no write through fe{other} within 30 s of killing {leader}: {e}\n{}",
                pg.stderr_tail()
            ),
        }
    }
    eprintln!(
        "a write through fe{other} succeeded {:?} after kill -9 of {leader}",
        killed_at.elapsed()
    );
    let b = mysql(query_port(other), "SHOW BACKENDS");
    assert!(b.contains("127.0.9.1\t9050"), "{b}");
    // The playground saw its node end, and names the new leader with its kill command.
    pg.wait_line(Duration::from_secs(10), |l| {
        l.starts_with(&format!("{leader} (pid {leader_pid}) ended"))
    });
    let next = pg.wait_line(Duration::from_secs(30), |l| {
        l.starts_with("kill -9 ") && l.ends_with(", the current leader")
    });
    assert!(!next.contains(&format!("# {leader},")), "{next}");
    let readies = pg.seen.iter().filter(|l| l.starts_with("ready")).count();
    assert_eq!(readies, 1, "exactly one ready line: {:#?}", pg.seen);

    // The nodes die with the playground, even when it is killed with SIGKILL.
    drop(pg);
    let deadline = Instant::now() + Duration::from_secs(10);
    for (name, pid) in &pids {
        while proc_info(*pid).is_some() {
            assert!(
                Instant::now() < deadline,
                "{name} (pid {pid}) outlived the playground"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Runs `roster playground` expected to refuse; returns (exit success, stdout, stderr).
fn refused_run(base: u16, data_dir: &std::path::Path) -> (bool, String, String) {
    let child = Command::new(BIN)
        .args(["playground", "--base-port", &base.to_string(), "--data-dir"])
        .arg(data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(o) => {
            let o = o.unwrap();
            (
                o.status.success(),
                String::from_utf8_lossy(&o.stdout).into_owned(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        }
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("the playground did not refuse within 20 s: it started");
        }
    }
}

#[test]
fn a_taken_port_is_refused_naming_it_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    // fe1's query_port on 127.0.0.1, then be3's heartbeat_port on be3's own address.
    for (host, offset, what) in [
        ("127.0.0.1", 2u16, "fe1 query_port"),
        ("127.0.0.3", 16, "be3 heartbeat_port"),
    ] {
        let base = free_block();
        let taken = base + offset;
        let _holder = std::net::TcpListener::bind((host, taken)).unwrap();
        let data = dir.path().join(format!("pg-{taken}"));
        let (ok, out, err) = refused_run(base, &data);
        assert!(
            !ok,
            "exit status must be non-zero; stdout {out} stderr {err}"
        );
        assert!(
            err.contains(&format!(
                "port {taken} ({what}) is in use on {host}; pass --base-port"
            )),
            "{err}"
        );
        assert!(!out.contains("started"), "nothing may start: {out}");
        assert!(
            !data.exists(),
            "nothing may be written: {:?}",
            std::fs::read_dir(&data).map(|d| d.count())
        );
    }
}

#[test]
fn sigterm_stops_every_node_gracefully_and_the_playground_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut pg = Playground::start(free_block(), &dir.path().join("pg"));
    pg.wait_line(Duration::from_secs(120), |l| l.starts_with("ready"));
    let pids: Vec<u32> = pg
        .seen
        .iter()
        .filter_map(|l| l.strip_prefix("started "))
        .map(|l| l.split_whitespace().nth(2).unwrap().parse().unwrap())
        .collect();
    assert_eq!(pids.len(), NODES.len(), "{:#?}", pg.seen);
    let st = Command::new("kill")
        .args(["-TERM", &pg.child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = pg.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the playground did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    pg.err_reader.take().unwrap().join().unwrap();
    for pid in &pids {
        assert!(
            proc_info(*pid).is_none(),
            "pid {pid} outlived the playground"
        );
    }
    // Each FE was asked to stop (SIGTERM) rather than killed: it logged its own shutdown.
    let err = pg.err.lock().unwrap();
    for n in 1..=3 {
        assert!(
            err.iter()
                .any(|l| l.starts_with(&format!("fe{n} | ")) && l.contains("shutting down")),
            "fe{n} was not stopped gracefully:\n{}",
            err.join("\n")
        );
    }
}
