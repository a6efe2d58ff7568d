//! Issue 4, first slice: real backend agents heartbeated by the master. Backends turn Alive on
//! every FE; kill -9 of an agent turns it dead everywhere; a restart shows a new
//! LastStartTime; a leader change does not mark live backends dead.

mod common;

use common::*;
use roster_api::QueryResult;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Agent {
    port: u16,
    be_port: u16,
    dir: std::path::PathBuf,
    log: std::path::PathBuf,
    child: Option<Child>,
}

impl Agent {
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(BIN)
            .args(["backend", "--data-dir"])
            .arg(&self.dir)
            .args([
                "--heartbeat-port",
                &self.port.to_string(),
                "--be-port",
                &self.be_port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn column(r: &QueryResult, row: usize, name: &str) -> String {
    let i = r.columns.iter().position(|c| c == name).unwrap();
    r.rows[row][i].clone().unwrap_or_default()
}

/// Wait until `pred` holds for SHOW BACKENDS on every FE in `fes`.
async fn wait_all(
    cluster: &Cluster,
    fes: &[usize],
    within: Duration,
    what: &str,
    pred: impl Fn(&QueryResult) -> bool,
) {
    let deadline = Instant::now() + within;
    'outer: loop {
        for &i in fes {
            let ok = match cluster.client(i).execute("SHOW BACKENDS").await {
                Ok(r) => pred(&r),
                Err(_) => false,
            };
            if !ok {
                assert!(
                    Instant::now() < deadline,
                    "{what}: not reached within {within:?}\n{}",
                    cluster.logs()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue 'outer;
            }
        }
        return;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_turn_alive_dead_and_alive_again_on_every_fe() {
    let mut cluster = Cluster::start(3, 0);
    cluster.wait_leader(Duration::from_secs(20)).await;
    let c = cluster.client_of(&[0, 1, 2]);
    c.execute(r#"ADMIN SET FRONTEND CONFIG ("heartbeat_interval_second" = "1")"#)
        .await
        .unwrap();

    let held: Vec<TcpListener> = (0..8)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let ports: Vec<u16> = held
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    drop(held);
    let mut agents: Vec<Agent> = (0..4)
        .map(|i| Agent {
            port: ports[2 * i],
            be_port: ports[2 * i + 1],
            dir: cluster.dir.path().join(format!("be{i}")),
            log: cluster.dir.path().join(format!("be{i}.log")),
            child: None,
        })
        .collect();
    for a in agents.iter_mut() {
        a.spawn();
    }
    let addrs: Vec<String> = agents
        .iter()
        .map(|a| format!("\"127.0.0.1:{}\"", a.port))
        .collect();
    c.execute(&format!("ALTER SYSTEM ADD BACKEND {}", addrs.join(", ")))
        .await
        .unwrap();

    let all = [0, 1, 2];
    let alive = |r: &QueryResult, i: usize| column(r, i, "Alive") == "true";
    wait_all(
        &cluster,
        &all,
        Duration::from_secs(15),
        "all four alive",
        |r| r.rows.len() == 4 && (0..4).all(|i| alive(r, i)),
    )
    .await;
    let r = c.execute("SHOW BACKENDS").await.unwrap();
    for (i, a) in agents.iter().enumerate() {
        assert_eq!(column(&r, i, "BePort"), a.be_port.to_string());
        assert!(
            !column(&r, i, "LastStartTime").is_empty() && column(&r, i, "LastStartTime") != "NULL"
        );
        assert!(
            column(&r, i, "TotalCapacity") != "0.000 B",
            "capacity reported"
        );
    }
    let first_start = column(&r, 0, "LastStartTime");

    // kill -9 one agent: dead on every FE, with a reason.
    agents[0].kill9();
    wait_all(
        &cluster,
        &all,
        Duration::from_secs(10),
        "agent 0 dead",
        |r| !alive(r, 0) && (1..4).all(|i| alive(r, i)),
    )
    .await;
    let r = cluster.client(1).execute("SHOW BACKENDS").await.unwrap();
    assert!(
        !column(&r, 0, "ErrMsg").is_empty(),
        "a dead backend says why"
    );

    // Restart it (start times have 1 ms resolution: make sure the clock moved).
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(1100) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    agents[0].spawn();
    wait_all(
        &cluster,
        &all,
        Duration::from_secs(15),
        "agent 0 alive again with a new start time",
        |r| alive(r, 0) && column(r, 0, "LastStartTime") != first_start,
    )
    .await;

    // A leader change: the new master takes over heartbeats without marking live backends dead.
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    cluster.kill9(leader);
    let survivors: Vec<usize> = all.iter().copied().filter(|i| *i != leader).collect();
    cluster.wait_leader(Duration::from_secs(15)).await;
    let watch_until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < watch_until {
        for &i in &survivors {
            if let Ok(r) = cluster.client(i).execute("SHOW BACKENDS").await {
                assert!(
                    (0..4).all(|b| alive(&r, b)),
                    "fe{} shows a live backend dead after the leader change: {:?}",
                    i + 1,
                    r.rows
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The new master heartbeats: killing an agent now is noticed.
    agents[3].kill9();
    wait_all(
        &cluster,
        &survivors,
        Duration::from_secs(10),
        "agent 3 dead under the new master",
        |r| !alive(r, 3),
    )
    .await;
}
