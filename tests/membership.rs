//! Acceptance 7: grow the quorum from 3 to 5 FEs with ADD FOLLOWER and shrink it back to 3 with
//! DROP FOLLOWER (the master included) while a writer keeps writing; SHOW FRONTENDS is right at
//! each step, and no acknowledged write is lost. Plus the refusals (unreachable FE, unknown
//! FE, a reused node id) and ADD/DROP OBSERVER.

mod common;

use common::*;
use roster_client::{Client, ClientError, QueryResult};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

fn col(r: &QueryResult, name: &str) -> usize {
    r.columns
        .iter()
        .position(|c| c == name)
        .unwrap_or_else(|| panic!("no {name} column in {:?}", r.columns))
}

/// One SHOW FRONTENDS row, the parts we check.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct FeRow {
    edit_log_port: String,
    host: String,
    http_port: String,
    query_port: String,
    rpc_port: String,
    role: String,
    is_master: bool,
    alive: bool,
}

fn fe_rows(r: &QueryResult) -> Vec<FeRow> {
    let get = |row: &Vec<Option<String>>, name: &str| row[col(r, name)].clone().unwrap_or_default();
    let mut rows: Vec<FeRow> = r
        .rows
        .iter()
        .map(|row| FeRow {
            edit_log_port: get(row, "EditLogPort"),
            host: get(row, "Host"),
            http_port: get(row, "HttpPort"),
            query_port: get(row, "QueryPort"),
            rpc_port: get(row, "RpcPort"),
            role: get(row, "Role"),
            is_master: get(row, "IsMaster") == "true",
            alive: get(row, "Alive") == "true",
        })
        .collect();
    rows.sort();
    rows
}

/// SHOW FRONTENDS served by `on` lists exactly `members` (indexes) with the given roles and
/// ports, exactly one master among them, and (within a deadline, the peer prober runs every
/// second) every member alive. Returns the master's index.
async fn check_frontends(cluster: &Cluster, on: usize, members: &[(usize, &str)]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    let c = cluster.client(on);
    loop {
        let r = c
            .execute("SHOW FRONTENDS")
            .await
            .unwrap_or_else(|e| panic!("SHOW FRONTENDS on fe{}: {e}", on + 1));
        let rows = fe_rows(&r);
        let mut want: Vec<(String, String, String, String, String, String)> = members
            .iter()
            .map(|(i, role)| {
                let n = &cluster.nodes[*i];
                (
                    n.edit_log_port.to_string(),
                    "127.0.0.1".to_string(),
                    n.http_port.to_string(),
                    n.query_port.to_string(),
                    n.rpc_port.to_string(),
                    role.to_string(),
                )
            })
            .collect();
        want.sort();
        let got: Vec<(String, String, String, String, String, String)> = rows
            .iter()
            .map(|x| {
                (
                    x.edit_log_port.clone(),
                    x.host.clone(),
                    x.http_port.clone(),
                    x.query_port.clone(),
                    x.rpc_port.clone(),
                    x.role.clone(),
                )
            })
            .collect();
        // Membership is committed state behind a linearizable read: right at once, no waiting.
        assert_eq!(
            got,
            want,
            "SHOW FRONTENDS on fe{} lists the wrong frontends\n{r:?}",
            on + 1
        );
        // One master, a FOLLOWER member; none at all only while an election is under way.
        let masters: Vec<&FeRow> = rows.iter().filter(|x| x.is_master).collect();
        assert!(
            masters.len() <= 1,
            "SHOW FRONTENDS on fe{} shows {} masters\n{r:?}",
            on + 1,
            masters.len()
        );
        if let Some(m) = masters.first() {
            let master = cluster
                .nodes
                .iter()
                .position(|n| n.edit_log_port.to_string() == m.edit_log_port)
                .expect("master is a known FE");
            assert!(
                members
                    .iter()
                    .any(|(i, role)| *i == master && *role == "FOLLOWER"),
                "the master fe{} is not a FOLLOWER member",
                master + 1
            );
            if rows.iter().all(|x| x.alive) {
                return master;
            }
        }
        assert!(
            Instant::now() < deadline,
            "SHOW FRONTENDS on fe{} still shows no master or dead members after 10 s\n{r:?}\n{}",
            on + 1,
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn followers(idx: &[usize]) -> Vec<(usize, &'static str)> {
    idx.iter().map(|i| (*i, "FOLLOWER")).collect()
}

/// Sequential unique ADD BACKENDs through a client over the FEs in `endpoints` (rebuilt when
/// it changes), until `stop`.
struct Writer {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    log: Arc<Mutex<WriteLog>>,
    unavailable: Arc<Mutex<Vec<String>>>,
    /// The slowest write: how long it took, and which.
    slowest: Arc<Mutex<(Duration, String)>>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    fn start(endpoints: watch::Receiver<Vec<String>>) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let log = Arc::new(Mutex::new(WriteLog::default()));
        let unavailable = Arc::new(Mutex::new(Vec::new()));
        let slowest = Arc::new(Mutex::new((Duration::ZERO, String::new())));
        let (s, d, l, u, w) = (
            stop.clone(),
            done.clone(),
            log.clone(),
            unavailable.clone(),
            slowest.clone(),
        );
        let task = tokio::spawn(async move {
            let mut endpoints = endpoints;
            let mut client: Client = client_for(endpoints.borrow_and_update().clone());
            let mut k = 0u32;
            while !s.load(Ordering::SeqCst) {
                if endpoints.has_changed().unwrap_or(false) {
                    client = client_for(endpoints.borrow_and_update().clone());
                }
                k += 1;
                let addr = format!("127.7.{}.{}:9050", k / 250, k % 250 + 1);
                let t = Instant::now();
                let res = client
                    .execute(&format!("ALTER SYSTEM ADD BACKEND \"{addr}\""))
                    .await;
                let took = t.elapsed();
                {
                    let mut w = w.lock().unwrap();
                    if took > w.0 {
                        *w = (took, addr.clone());
                    }
                }
                match res {
                    Ok(_) => l.lock().unwrap().acked.push(addr),
                    Err(ClientError::Unknown(e)) => {
                        eprintln!("writer: {addr} outcome unknown: {e}");
                        l.lock().unwrap().unknown.push(addr);
                    }
                    Err(ClientError::Unavailable(e)) => {
                        eprintln!("writer: {addr} unavailable: {e}");
                        u.lock().unwrap().push(addr);
                    }
                    Err(e) => {
                        eprintln!("writer: {addr} refused: {e}");
                        l.lock().unwrap().refused.push(addr);
                    }
                }
                d.fetch_add(1, Ordering::SeqCst);
            }
        });
        Writer {
            stop,
            done,
            log,
            unavailable,
            slowest,
            task,
        }
    }

    fn acked(&self) -> usize {
        self.log.lock().unwrap().acked.len()
    }

    /// Wait until `n` more writes are acknowledged: writes go on after this step.
    async fn wait_more_acks(&self, n: usize, what: &str) -> usize {
        let start = self.acked();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.acked() < start + n {
            assert!(
                Instant::now() < deadline,
                "writes stalled {what}: {:?}",
                self.log.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.acked()
    }

    /// Wait until the writer has finished `n` more writes (so it uses the current endpoints).
    async fn wait_done(&self, n: usize) {
        let start = self.done.load(Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.done.load(Ordering::SeqCst) < start + n {
            assert!(
                Instant::now() < deadline,
                "the writer made no progress in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn sql_add(role: &str, addr: &str) -> String {
    format!("ALTER SYSTEM ADD {role} \"{addr}\"")
}

fn sql_drop(role: &str, addr: &str) -> String {
    format!("ALTER SYSTEM DROP {role} \"{addr}\"")
}

fn server_error(r: Result<QueryResult, ClientError>, what: &str) -> String {
    match r {
        Err(ClientError::Server { message, .. }) => message,
        other => panic!("{what}: expected an error answer, got {other:?}"),
    }
}

fn unused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grow_to_five_and_shrink_to_three_while_writing() {
    let t_start = Instant::now();
    let mut cluster = Cluster::start(3, 2);
    let rpcs: Vec<String> = cluster.nodes.iter().map(|n| n.rpc_addr()).collect();
    let rpc = |i: usize| rpcs[i].clone();
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    check_frontends(&cluster, leader, &followers(&[0, 1, 2])).await;

    // Refusals that change nothing.
    let c123 = cluster.client_of(&[0, 1, 2]);
    let nobody = format!("127.0.0.1:{}", unused_port());
    let t = Instant::now();
    let msg = server_error(
        c123.execute(&sql_add("FOLLOWER", &nobody)).await,
        "ADD FOLLOWER of an address nobody listens on",
    );
    assert!(
        msg.contains(&nobody) && msg.contains("not reachable"),
        "unclear error: {msg}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "the refusal took {:?}",
        t.elapsed()
    );
    let msg = server_error(
        c123.execute(&sql_drop("FOLLOWER", &nobody)).await,
        "DROP FOLLOWER of an unknown address",
    );
    assert!(msg.contains("does not exist"), "unclear error: {msg}");
    check_frontends(&cluster, (leader + 1) % 3, &followers(&[0, 1, 2])).await;

    let (ep_tx, ep_rx) = watch::channel(vec![rpc(0), rpc(1), rpc(2)]);
    let writer = Writer::start(ep_rx);
    let mut acks_at = vec![writer.wait_more_acks(3, "before any change").await];

    // 3 -> 4, through a non-master (forwarded to the master).
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let via = cluster.client((leader + 1) % 3);
    let r = via
        .execute(&sql_add("FOLLOWER", &cluster.nodes[3].edit_log_addr()))
        .await
        .expect("ADD FOLLOWER fe4");
    eprintln!("{}", r.message);
    for on in [0, 3] {
        check_frontends(&cluster, on, &followers(&[0, 1, 2, 3])).await;
    }
    ep_tx.send_replace(vec![rpc(0), rpc(1), rpc(2), rpc(3)]);
    acks_at.push(writer.wait_more_acks(3, "after adding fe4").await);

    // 4 -> 5, through all members.
    let c1234 = cluster.client_of(&[0, 1, 2, 3]);
    c1234
        .execute(&sql_add("FOLLOWER", &cluster.nodes[4].edit_log_addr()))
        .await
        .expect("ADD FOLLOWER fe5");
    let mut master = 0;
    for on in [1, 4] {
        master = check_frontends(&cluster, on, &followers(&[0, 1, 2, 3, 4])).await;
    }
    ep_tx.send_replace((0..5).map(rpc).collect());
    acks_at.push(writer.wait_more_acks(3, "after adding fe5").await);
    let msg = server_error(
        c1234
            .execute(&sql_add("FOLLOWER", &cluster.nodes[4].edit_log_addr()))
            .await,
        "adding fe5 twice",
    );
    assert!(msg.contains("already exists"), "unclear error: {msg}");

    // 5 -> 4: drop the master, sent to the master itself: it hands leadership away first.
    let t = Instant::now();
    let r = cluster
        .client(master)
        .execute(&sql_drop(
            "FOLLOWER",
            &cluster.nodes[master].edit_log_addr(),
        ))
        .await;
    let r = r.unwrap_or_else(|e| {
        panic!(
            "DROP FOLLOWER of the master fe{}: {e}\n{}",
            master + 1,
            cluster.logs()
        )
    });
    eprintln!(
        "dropped the master fe{} in {:?}: {}",
        master + 1,
        t.elapsed(),
        r.message
    );
    let dropped_master = master;
    let mut members: Vec<usize> = (0..5).filter(|i| *i != dropped_master).collect();
    let mut new_master = 0;
    for on in [members[0], members[3]] {
        new_master = check_frontends(&cluster, on, &followers(&members)).await;
    }
    assert_ne!(new_master, dropped_master);
    // The operator stops a dropped FE; the writer first stops using it.
    ep_tx.send_replace(members.iter().map(|i| rpc(*i)).collect());
    writer.wait_done(2).await;
    cluster.kill9(dropped_master);
    acks_at.push(writer.wait_more_acks(3, "after dropping the master").await);

    // 4 -> 3: drop a non-master, through all members.
    let victim = *members.iter().find(|i| **i != new_master).unwrap();
    let c = cluster.client_of(&members);
    c.execute(&sql_drop(
        "FOLLOWER",
        &cluster.nodes[victim].edit_log_addr(),
    ))
    .await
    .expect("DROP FOLLOWER of a non-master");
    members.retain(|i| *i != victim);
    for on in members.clone() {
        let m = check_frontends(&cluster, on, &followers(&members)).await;
        assert_eq!(m, new_master, "dropping a non-master changed the master");
    }
    ep_tx.send_replace(members.iter().map(|i| rpc(*i)).collect());
    writer.wait_done(2).await;
    cluster.kill9(victim);
    acks_at.push(
        writer
            .wait_more_acks(3, "after dropping a non-master")
            .await,
    );

    // Stop the writer.
    writer.stop.store(true, Ordering::SeqCst);
    writer.task.await.expect("writer task");
    let log = std::mem::take(&mut *writer.log.lock().unwrap());
    let unavailable = writer.unavailable.lock().unwrap().clone();
    let slowest = writer.slowest.lock().unwrap().clone();
    eprintln!(
        "writer: {} acked (cumulative at steps {acks_at:?}), {} unknown, {} refused, {} unavailable; slowest write {slowest:?}",
        log.acked.len(),
        log.unknown.len(),
        log.refused.len(),
        unavailable.len()
    );
    assert!(log.refused.is_empty(), "writes refused: {:?}", log.refused);
    assert!(
        unavailable.is_empty(),
        "writes found the cluster unavailable: {unavailable:?}"
    );

    // Every acknowledged write is on every remaining FE (linearizable reads there), and nothing
    // that was never written.
    let acked: BTreeSet<String> = log.acked.iter().cloned().collect();
    let unknown: BTreeSet<String> = log.unknown.iter().cloned().collect();
    for on in members.clone() {
        let r = cluster
            .client(on)
            .execute("SHOW BACKENDS")
            .await
            .expect("SHOW BACKENDS");
        let got: BTreeSet<String> = backend_addrs(&r).into_iter().collect();
        let missing: Vec<&String> = acked.difference(&got).collect();
        assert!(
            missing.is_empty(),
            "fe{} lost acknowledged writes {missing:?}",
            on + 1
        );
        let applied_unknown = unknown.iter().filter(|a| got.contains(*a)).count();
        eprintln!(
            "fe{}: {applied_unknown} of {} writes of unknown outcome were applied",
            on + 1,
            unknown.len()
        );
        let extra: Vec<&String> = got
            .iter()
            .filter(|a| !acked.contains(*a) && !unknown.contains(*a))
            .collect();
        assert!(
            extra.is_empty(),
            "fe{} shows backends never written: {extra:?}",
            on + 1
        );
    }

    // Planned changes with every FE healthy: no write waits long. A write that waited out the
    // FEs' write_timeout (8 s), or more (the client kept retrying, e.g. against a master that
    // dropped itself without handing leadership over), is a failure to keep writes going.
    assert!(
        slowest.0 < Duration::from_secs(5),
        "write {} took {:?}",
        slowest.1,
        slowest.0
    );

    // Node ids are never reused: the dropped master, started afresh with its old id, is refused.
    std::fs::remove_dir_all(
        cluster
            .dir
            .path()
            .join(format!("data-fe{}", cluster.nodes[dropped_master].id)),
    )
    .expect("wipe data");
    cluster.spawn(dropped_master);
    let addr = cluster.nodes[dropped_master].edit_log_addr();
    let c = cluster.client_of(&members);
    let deadline = Instant::now() + Duration::from_secs(20);
    let msg = loop {
        let msg = server_error(
            c.execute(&sql_add("FOLLOWER", &addr)).await,
            "re-adding a dropped node id",
        );
        // Until the restarted process listens, the refusal is "not reachable".
        if !msg.contains("not reachable") {
            break msg;
        }
        assert!(
            Instant::now() < deadline,
            "fe{} never came up: {msg}",
            dropped_master + 1
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        msg.contains(&cluster.nodes[dropped_master].id.to_string()),
        "unclear error: {msg}"
    );
    for on in members.clone() {
        check_frontends(&cluster, on, &followers(&members)).await;
    }

    let phase_acks: Vec<usize> = acks_at.windows(2).map(|w| w[1] - w[0]).collect();
    eprintln!(
        "acks per phase {phase_acks:?}; test took {:?}",
        t_start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_and_drop_observer() {
    let mut cluster = Cluster::start(3, 1);
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let c = cluster.client_of(&[0, 1, 2]);
    let obs = cluster.nodes[3].edit_log_addr();

    c.execute(&sql_add("OBSERVER", &obs))
        .await
        .expect("ADD OBSERVER");
    let members = [
        (0, "FOLLOWER"),
        (1, "FOLLOWER"),
        (2, "FOLLOWER"),
        (3, "OBSERVER"),
    ];
    for on in [leader, 3] {
        check_frontends(&cluster, on, &members).await;
    }
    let msg = server_error(
        c.execute(&sql_drop("FOLLOWER", &obs)).await,
        "DROP FOLLOWER of an observer",
    );
    assert!(msg.contains("OBSERVER"), "unclear error: {msg}");

    // An observer serves linearizable reads: each acknowledged write is there at once.
    let via_follower = cluster.client((leader + 1) % 3);
    let on_observer = cluster.client(3);
    let mut acked = Vec::new();
    for k in 1..=5 {
        let addr = format!("127.8.0.{k}:9050");
        via_follower
            .execute(&format!("ALTER SYSTEM ADD BACKEND \"{addr}\""))
            .await
            .expect("add");
        acked.push(addr);
        let r = on_observer
            .execute("SHOW BACKENDS")
            .await
            .expect("read on the observer");
        let got = backend_addrs(&r);
        assert!(
            acked.iter().all(|a| got.contains(a)),
            "the observer misses acknowledged writes: {got:?} vs {acked:?}"
        );
    }
    // Writes through the observer are forwarded to the master.
    on_observer
        .execute("ALTER SYSTEM ADD BACKEND \"127.8.1.1:9050\"")
        .await
        .expect("write via the observer");

    // The quorum is still the three followers: it survives losing the observer.
    c.execute(&sql_drop("OBSERVER", &obs))
        .await
        .expect("DROP OBSERVER");
    for on in [0, 1, 2] {
        check_frontends(&cluster, on, &followers(&[0, 1, 2])).await;
    }
    cluster.kill9(3);
    c.execute("ALTER SYSTEM ADD BACKEND \"127.8.1.2:9050\"")
        .await
        .expect("write after the observer left");
    let msg = server_error(
        c.execute(&sql_drop("OBSERVER", &obs)).await,
        "dropping it twice",
    );
    assert!(msg.contains("does not exist"), "unclear error: {msg}");
}
