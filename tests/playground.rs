//! Issue 4, acceptance 5: `roster playground` starts 3 FEs and 4 agents in under a minute, and
//! a real mysql client connected to it sees 4 alive backends and the demo table with its
//! replicas. The playground uses its fixed ports (9010..9360), which no other test uses.

mod common;

use common::BIN;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn mysql(sql: &str) -> String {
    let o = Command::new("mysql")
        .args([
            "-h127.0.0.1",
            "-P9030",
            "-uroot",
            "--batch",
            "--connect-timeout=10",
            "-e",
            sql,
        ])
        .output()
        .expect("the mysql client is installed (.ci/run installs mariadb-client)");
    assert!(
        o.status.success(),
        "mysql -e {sql:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn playground_starts_within_a_minute_with_backends_and_a_demo_table() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .args(["playground", "--data-dir"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _guard = Killed(child);
    // The banner is printed once the backends are registered and the demo table created.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut banner = Vec::new();
    loop {
        let left = Duration::from_secs(60).saturating_sub(started.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let done = line.contains("Ctrl-C stops the playground");
                banner.push(line);
                if done {
                    break;
                }
            }
            Err(_) => panic!("no banner within a minute; got {banner:#?}"),
        }
    }
    assert!(
        banner
            .iter()
            .any(|l| l.contains("mysql -h127.0.0.1 -P9030 -uroot"))
    );

    let backends = mysql("SHOW BACKENDS");
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
    assert!(mysql("SHOW TABLES").lines().any(|l| l == "demo"));
    let tablets = mysql("SHOW TABLETS FROM demo");
    assert_eq!(tablets.lines().count(), 1 + 24, "{tablets}");
    assert!(
        tablets
            .lines()
            .skip(1)
            .all(|l| l.contains("\tNORMAL\t2097152\t")),
        "{tablets}"
    );
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
