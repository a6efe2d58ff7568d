//! Scenarios and the runner: make the topology, start the FEs, set up the workload, run
//! clients and the nemesis side by side for the scenario's time, heal, check that the cluster
//! serves again (liveness) and that every FE holds the same state (convergence), then check the
//! history. Everything goes to the run directory: `history.jsonl`, `history.edn`,
//! `nemesis.jsonl`, the FEs' logs and data, and `results.json`. Seeded: the same seed gives the
//! same schedule of faults and operations (not the same timing).

use crate::checker::{linear, replication, set};
use crate::db::Db;
use crate::history::{self, OpType, Process, Recorder};
use crate::nemesis::{self, Fault, Nemesis};
use crate::proxy;
use crate::stopped;
use crate::tablets;
use crate::topology::Topology;
use crate::workload::{self, RegisterWorker, SetWorker};
use anyhow::{Context, bail};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub enum Workload {
    /// Per-key registers; `via_leader`: clients follow leader hints (else each worker keeps
    /// one FE, so followers serve reads).
    Register { keys: usize, via_leader: bool },
    /// Unique adds, then a final read from every FE.
    Set,
    /// A register per (FE, backend) over each FE's own blacklist.
    Blacklist { backends: usize },
    /// Decommission intents as CAS registers per backend.
    Intent { keys: usize },
    /// Real agents holding a table's replicas; an operator decommissions, cancels and re-adds
    /// backends; observers check the replication factor (see `tablets`).
    Tablets { agents: usize },
}

impl Workload {
    /// Backend-agent hosts the workload needs.
    pub fn agents(&self) -> usize {
        match self {
            Workload::Tablets { agents } => *agents,
            _ => 0,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    pub about: &'static str,
    pub nodes: usize,
    /// Of the nodes, how many start outside the cluster, waiting to be added.
    pub spares: usize,
    /// Snapshot (and purge the log) every this many applied entries, instead of the default,
    /// so that a lagging FE must catch up by snapshot.
    pub snapshot_logs: Option<u64>,
    pub workload: Workload,
    pub faults: &'static [Fault],
    /// How long clients run.
    pub duration: Duration,
    /// A fault lasts this long (seconds, from..to)...
    pub fault_secs: (u64, u64),
    /// ...with this much calm between faults.
    pub calm_secs: (u64, u64),
    /// SIGKILL every FE once, mid-run, and restart them.
    pub kill_all_once: bool,
    /// The run must have seen the leader change.
    pub require_leader_change: bool,
}

const NONE: &[Fault] = &[];

/// A scenario run with a bug switch on, which must then fail, and fail the check that watches
/// for that bug: the proof that the checkers and faults can see it.
#[derive(Debug, Clone, Copy)]
pub struct Twin {
    pub scenario: &'static str,
    pub bug: &'static str,
    /// The check that must fail: the start of its summary line (`linearizable`, `set`,
    /// `replication`).
    pub anomaly: &'static str,
}

impl Twin {
    /// Whether a run's outcome shows this twin's anomaly.
    pub fn caught(&self, o: &Outcome) -> bool {
        o.summary
            .iter()
            .any(|l| l.starts_with(&format!("FAIL {}", self.anomaly)))
    }
}

const fn twin(scenario: &'static str, bug: &'static str, anomaly: &'static str) -> Twin {
    Twin {
        scenario,
        bug,
        anomaly,
    }
}

/// The twins: every scenario but the control and set-membership has one.
pub const TWINS: &[Twin] = &[
    twin("set-kill-leader", "ack-before-commit", "set"),
    // Through the leader a stale local read needs a deposed leader that a client still
    // trusts, which a 20 s run may not produce; an acknowledgement before commit shows at once.
    twin(
        "register-leader-partitions",
        "ack-before-commit",
        "linearizable",
    ),
    twin(
        "register-follower-partitions",
        "stale-local-read",
        "linearizable",
    ),
    // Not stale-local-read: since accepted sockets set TCP_NODELAY a follower applies a commit
    // within a fraction of a millisecond, and clock faults neither isolate nor slow a follower,
    // so five 20 s runs in a row saw no stale read at all. An acknowledgement before commit
    // (a follower's fsync and a round trip wide) shows in every run.
    twin("register-clocks", "ack-before-commit", "linearizable"),
    twin(
        "decommission-tablets",
        "decommission-no-rf-check",
        "replication",
    ),
    twin("decommission-intents", "decommission-twice", "linearizable"),
    twin("blacklist-partitions", "blacklist-global", "linearizable"),
    twin("register-pauses", "ack-before-commit", "linearizable"),
    twin("set-kill-leader", "skip-fsync", "set"),
    twin("storage-crashes", "skip-fsync", "set"),
    twin("register-slow-links", "stale-local-read", "linearizable"),
    // set-membership has none: no switch is sure to show within a gate run there (an
    // acknowledgement before commit is lost only when a leader dies in time), and its set
    // checker is the one the twins of set-kill-leader and storage-crashes prove.
];

/// How long twins run in the gate: their bugs show within seconds.
pub const TWIN_DURATION: Duration = Duration::from_secs(20);

/// The scenarios `.ci/run` runs on every change (about 10 minutes in all, twins included).
pub const GATE: &[&str] = &[
    "register-calm",
    "set-kill-leader",
    "register-leader-partitions",
    "register-follower-partitions",
    "register-pauses",
    "register-clocks",
    "blacklist-partitions",
    "decommission-intents",
    "decommission-tablets",
    "storage-crashes",
    "set-membership",
    "register-slow-links",
];

pub fn all() -> Vec<Scenario> {
    use Fault::*;
    vec![
        Scenario {
            name: "set-kill-leader",
            about: "1: acknowledged ADD BACKENDs are never lost when the leader is killed (5 FEs, kill -9 of the leader, once of all)",
            nodes: 5,
            spares: 0,
            snapshot_logs: None,
            workload: Workload::Set,
            faults: &[KillLeader],
            duration: Duration::from_secs(40),
            fault_secs: (3, 6),
            calm_secs: (3, 6),
            kill_all_once: true,
            require_leader_change: true,
        },
        Scenario {
            name: "register-leader-partitions",
            about: "2: linearizable reads and writes through the leader under random halves and an isolated leader",
            nodes: 3,
            spares: 0,
            snapshot_logs: None,
            workload: Workload::Register {
                keys: 10,
                via_leader: true,
            },
            faults: &[PartitionHalves, IsolateLeader],
            duration: Duration::from_secs(40),
            fault_secs: (4, 8),
            calm_secs: (2, 5),
            kill_all_once: false,
            require_leader_change: true,
        },
        Scenario {
            name: "register-follower-partitions",
            about: "3: linearizable follower reads under an isolated leader, majorities ring, bridge and a paused leader (5 FEs)",
            nodes: 5,
            spares: 0,
            snapshot_logs: None,
            workload: Workload::Register {
                keys: 10,
                via_leader: false,
            },
            faults: &[
                IsolateLeader,
                MajoritiesRing,
                Bridge,
                PauseLeader,
                OneWayFromLeader,
            ],
            duration: Duration::from_secs(45),
            fault_secs: (4, 8),
            calm_secs: (2, 5),
            kill_all_once: false,
            require_leader_change: true,
        },
        Scenario {
            name: "register-clocks",
            about: "4: linearizable follower reads while wall clocks jump by minutes, the leader runs at half speed and a follower at double speed (libfaketime), and the leader is paused; reads take a read index from the leader, which stands a quorum's acknowledgement younger than election_timeout_max / 5 for a heartbeat round (a lease read that a factor of 4 between clock rates must not break)",
            nodes: 3,
            spares: 0,
            snapshot_logs: None,
            workload: Workload::Register {
                keys: 10,
                via_leader: false,
            },
            faults: &[ClockBump, ClockSkewLeader, ClockRates, PauseLeader],
            duration: Duration::from_secs(40),
            fault_secs: (4, 8),
            calm_secs: (2, 5),
            kill_all_once: false,
            require_leader_change: true,
        },
        Scenario {
            name: "register-pauses",
            about: "13: SIGSTOP of a minority and of the leader (past the election timeout); no write acknowledged that was not committed",
            nodes: 3,
            spares: 0,
            snapshot_logs: None,
            workload: Workload::Register {
                keys: 10,
                via_leader: false,
            },
            faults: &[PauseMinority, PauseLeader],
            duration: Duration::from_secs(40),
            fault_secs: (5, 10),
            calm_secs: (2, 5),
            kill_all_once: false,
            require_leader_change: true,
        },
        Scenario {
            name: "blacklist-partitions",
            about: "7 and 8: each FE's blacklist is its own and linearizable per (FE, backend), under partitions, kills and pauses",
            nodes: 3,
            spares: 0,
            snapshot_logs: None,
            workload: Workload::Blacklist { backends: 4 },
            faults: &[PartitionHalves, IsolateLeader, KillOne, PauseLeader],
            duration: Duration::from_secs(40),
            fault_secs: (4, 8),
            calm_secs: (2, 5),
            kill_all_once: false,
            require_leader_change: true,
        },
        Scenario {
            name: "decommission-intents",
            about: "6: concurrent and repeated DECOMMISSION / CANCEL of the same backends are carried out exactly once, across killed, paused and isolated leaders",
            nodes: 3,
            spares: 0,
            snapshot_logs: None,
            workload: Workload::Intent { keys: 6 },
            faults: &[KillLeader, PauseLeader, IsolateLeader],
            duration: Duration::from_secs(40),
            fault_secs: (4, 8),
            calm_secs: (2, 5),
            kill_all_once: false,
            require_leader_change: true,
        },
        Scenario {
            name: "decommission-tablets",
            about: "5: decommissions, cancels and re-adds of backends holding real replicas, under partitions and leader kills; no tablet ever below its replication factor, agents' files match the catalog",
            nodes: 3,
            spares: 0,
            snapshot_logs: None,
            workload: Workload::Tablets { agents: 6 },
            faults: &[PartitionHalves, IsolateLeader, KillLeader],
            duration: Duration::from_secs(45),
            fault_secs: (3, 6),
            calm_secs: (2, 4),
            kill_all_once: false,
            require_leader_change: true,
        },
        Scenario {
            name: "storage-crashes",
            about: "11: FEs crash (abort) at storage failpoints: before and after a log append, before and after a state-machine commit, and all are killed once; restarts recover every acknowledged ADD BACKEND",
            nodes: 3,
            spares: 0,
            snapshot_logs: None,
            workload: Workload::Set,
            faults: &[CrashAtFailpoint],
            duration: Duration::from_secs(40),
            fault_secs: (3, 5),
            calm_secs: (1, 3),
            // Also every FE at once: what skip-fsync's twin needs to lose acknowledged adds.
            kill_all_once: true,
            require_leader_change: true,
        },
        Scenario {
            name: "set-membership",
            about: "9: followers added and dropped (the leader too) while partitions isolate the leader and FEs are killed; dropped FEs rejoin with new ids and empty disks; no acknowledged ADD BACKEND is lost",
            nodes: 5,
            spares: 2,
            snapshot_logs: None,
            workload: Workload::Set,
            // Membership changes twice as often as the other faults.
            faults: &[
                AddFollower,
                RemoveFollower,
                AddFollower,
                RemoveFollower,
                IsolateLeader,
                KillOne,
            ],
            duration: Duration::from_secs(45),
            fault_secs: (1, 3),
            calm_secs: (1, 2),
            kill_all_once: false,
            require_leader_change: false,
        },
        Scenario {
            name: "register-slow-links",
            about: "12: linearizable follower reads while Raft links are slowed (100 ms ± 50 ms each way, a userspace proxy) or lose 30 % of packets, and a follower is cut off long enough that it must catch up by snapshot (snapshots every 30 entries)",
            nodes: 3,
            spares: 0,
            snapshot_logs: Some(30),
            workload: Workload::Register {
                keys: 10,
                via_leader: false,
            },
            faults: &[SlowLinks, LossyLinks, IsolateFollower],
            duration: Duration::from_secs(40),
            fault_secs: (4, 8),
            calm_secs: (2, 4),
            kill_all_once: false,
            require_leader_change: false,
        },
        Scenario {
            name: "register-calm",
            about: "a control run without faults: the checkers accept a healthy cluster",
            nodes: 3,
            spares: 0,
            snapshot_logs: None,
            workload: Workload::Register {
                keys: 10,
                via_leader: false,
            },
            faults: NONE,
            duration: Duration::from_secs(15),
            fault_secs: (1, 1),
            calm_secs: (1, 1),
            kill_all_once: false,
            require_leader_change: false,
        },
    ]
}

pub fn find(name: &str) -> anyhow::Result<Scenario> {
    all().into_iter().find(|s| s.name == name).ok_or_else(|| {
        anyhow::anyhow!(
            "no scenario {name:?}; there are: {}",
            all().iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
        )
    })
}

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub bin: PathBuf,
    /// Run directories go under here: `<store>/<scenario>/<seed>-<unix time>/`.
    pub store: PathBuf,
    pub seed: u64,
    /// A bug switch to turn on in every FE (`ROSTER_BUG`); the run is then expected to fail.
    pub bug: Option<String>,
    /// Run the clients this long instead of the scenario's own duration.
    pub duration: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub valid: bool,
    pub dir: PathBuf,
    /// One line per check.
    pub summary: Vec<String>,
}

/// Run one scenario on its own thread (which moves into the client namespace), tearing
/// everything down whatever happens.
pub fn run(s: &Scenario, cfg: &RunConfig) -> anyhow::Result<Outcome> {
    let dir = cfg.store.join(s.name).join(format!(
        "{}-{}",
        cfg.seed,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let (mut s, cfg, d) = (s.clone(), cfg.clone(), dir.clone());
    if let Some(t) = cfg.duration {
        s.duration = t;
    }
    let result = std::thread::spawn(move || -> anyhow::Result<Outcome> {
        let mut topo = Topology::create(s.nodes, s.workload.agents())?;
        let r = (|| {
            topo.enter_client()?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(run_in(&s, &cfg, &d, &topo))
        })();
        topo.teardown();
        r
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the run panicked (everything was torn down)"))?;
    let outcome = result?;
    std::fs::write(dir.join("summary.txt"), outcome.summary.join("\n") + "\n")?;
    Ok(outcome)
}

async fn wait_for_leader(db: &Db, within: Duration) -> anyhow::Result<usize> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(l) = nemesis::leader(db).await {
            return Ok(l);
        }
        if Instant::now() > deadline || stopped() {
            bail!("no leader within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn run_in(
    s: &Scenario,
    cfg: &RunConfig,
    dir: &Path,
    topo: &Topology,
) -> anyhow::Result<Outcome> {
    let mut db = Db::new(&cfg.bin, dir, topo, s.nodes - s.spares)?;
    if let Some(k) = s.snapshot_logs {
        db.raft_settings(&format!(
            "snapshot_logs_since_last = {k}\nmax_in_snapshot_log_to_keep = {}",
            k / 5
        ))?;
    }
    // The Raft-link proxies, for as long as the run.
    let proxies = if s.faults.contains(&Fault::SlowLinks) {
        Some(proxy::start(topo)?)
    } else {
        None
    };
    if let Some(bug) = &cfg.bug {
        db.env("ROSTER_BUG", bug);
    }
    if s.faults.iter().any(|f| {
        matches!(
            f,
            Fault::ClockBump | Fault::ClockSkewLeader | Fault::ClockRates
        )
    }) {
        db.fake_clocks()?;
    }
    db.start_all()?;
    let mut agents = crate::db::Agents::new(&cfg.bin, dir, topo);
    agents.start_all()?;
    let first_leader = wait_for_leader(&db, Duration::from_secs(30)).await?;
    let setup = workload::client_of(&db.rpc_addr(first_leader), Duration::from_secs(10));
    // The cluster is up when root can log in and write.
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = setup
        .execute("ADMIN SET FRONTEND CONFIG (\"heartbeat_interval_second\" = \"5\")")
        .await
    {
        if Instant::now() > deadline || stopped() {
            bail!("the cluster did not accept a write: {e}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    match s.workload {
        Workload::Tablets { .. } => tablets::setup(&setup, &agents).await?,
        _ => workload::setup_cluster(&setup).await?,
    }
    match s.workload {
        Workload::Register { keys, .. } => workload::setup_registers(&setup, keys).await?,
        // The same fake backends serve as the blacklist's backends (ids 10001..).
        Workload::Blacklist { backends } => workload::setup_registers(&setup, backends).await?,
        Workload::Intent { keys } => workload::setup_registers(&setup, keys).await?,
        Workload::Set | Workload::Tablets { .. } => {}
    }

    let history = Recorder::new();
    let until = Instant::now() + s.duration;
    let concurrency = match s.workload {
        // An observer per FE and one operator.
        Workload::Tablets { .. } => s.nodes + 1,
        _ => 2 * s.nodes,
    };
    let mut workers = Vec::new();
    let all_fes = db.rpc_addrs(0..s.nodes);
    for worker in 0..concurrency {
        let node = worker % s.nodes;
        let h = history.clone();
        let w = workload::Worker {
            worker,
            concurrency,
            node,
            addr: db.rpc_addr(node),
            seed: cfg.seed,
            until,
            gap: Duration::from_millis(20),
        };
        workers.push(match s.workload {
            Workload::Register { keys, via_leader } => {
                // Leader hints are followed when a client has several endpoints.
                let addr = if via_leader { all_fes.clone() } else { w.addr };
                let w = workload::Worker { addr, ..w };
                tokio::spawn(RegisterWorker { w, keys }.run(h))
            }
            Workload::Blacklist { backends } => {
                tokio::spawn(workload::BlacklistWorker { w, backends }.run(h))
            }
            Workload::Intent { keys } => tokio::spawn(workload::IntentWorker { w, keys }.run(h)),
            Workload::Set => tokio::spawn(SetWorker { w }.run(h)),
            Workload::Tablets { .. } if worker == s.nodes => {
                let w = workload::Worker {
                    addr: all_fes.clone(),
                    ..w
                };
                let agents = (0..agents.len()).map(|k| agents.addr(k)).collect();
                tokio::spawn(tablets::OperatorWorker { w, agents }.run(h))
            }
            Workload::Tablets { .. } => {
                let w = workload::Worker {
                    gap: Duration::from_millis(50),
                    ..w
                };
                tokio::spawn(tablets::ObserverWorker { w }.run(h))
            }
        });
    }

    // The nemesis, on this task.
    let mut nem = Nemesis {
        rng: StdRng::seed_from_u64(cfg.seed),
        history: history.clone(),
        ever_members: BTreeSet::new(),
        delay: proxies.as_ref().map(|p| p.delay.clone()),
        deck: Vec::new(),
    };
    let mut leaders: BTreeSet<usize> = BTreeSet::from([first_leader]);
    let watched = LeaderWatch::start((0..db.len()).map(|i| db.rpc_addr(i)).collect());
    let mut killed_all = !s.kill_all_once;
    let mut crashed = Vec::new();
    while Instant::now() < until && !stopped() {
        let calm = Duration::from_secs(nem.rng.random_range(s.calm_secs.0..=s.calm_secs.1));
        sleep_until(Instant::now() + calm, until).await;
        if let Some(l) = nemesis::leader(&db).await {
            leaders.insert(l);
        }
        if Instant::now() >= until || stopped() || s.faults.is_empty() && killed_all {
            continue;
        }
        if !killed_all && Instant::now() + s.duration / 2 >= until {
            killed_all = true;
            history.nemesis("kill-all", Value::Null);
            db.kill_all();
            tokio::time::sleep(Duration::from_secs(1)).await;
            db.start_all()?;
            history.nemesis("restart-all", Value::Null);
            continue;
        }
        let fault = nem.next_fault(s.faults);
        let Some(active) = nem.start(fault, topo, &mut db).await? else {
            // No leader known, or nothing to change: the history says so.
            history.nemesis("skipped", json!(fault.name()));
            continue;
        };
        let hold = Duration::from_secs(nem.rng.random_range(s.fault_secs.0..=s.fault_secs.1));
        sleep_until(Instant::now() + hold, until + Duration::from_secs(10)).await;
        if let Some(l) = nemesis::leader(&db).await {
            leaders.insert(l);
        }
        nem.stop(active, topo, &mut db)?;
        for i in 0..db.len() {
            if let Some(st) = db.exited(i) {
                crashed.push(format!("n{} exited by itself: {st}", i + 1));
            }
        }
    }
    for w in workers {
        let _ = w.await;
    }
    // Heal everything.
    nemesis::heal(topo);
    for i in 0..db.len() {
        db.resume(i);
        db.start(i)?;
    }
    history.nemesis("heal-all", Value::Null);

    crashed.extend(agents.exited());
    let mut summary = Summary::default();
    summary.note(
        crashed.is_empty(),
        format!("no FE crashed by itself {crashed:?}"),
    );

    // The FEs to check: the cluster's members (every FE, unless membership changed).
    let members: Vec<usize> = if s.spares > 0
        || s.faults
            .iter()
            .any(|f| matches!(f, Fault::AddFollower | Fault::RemoveFollower))
    {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match nemesis::members(&db).await {
                Some(m) => break m.into_iter().collect(),
                None if Instant::now() > deadline || stopped() => {
                    bail!("no FE says who the members are, 30 s after healing")
                }
                None => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    } else {
        (0..db.len()).collect()
    };
    summary.lines.push(format!(
        "members at the end: {:?}",
        members
            .iter()
            .map(|h| format!("n{} (id {})", h + 1, db.node_id(*h)))
            .collect::<Vec<_>>()
    ));

    // Liveness: within 30 s every FE serves a linearizable read and a write goes through.
    let live = liveness(&db, &members, Duration::from_secs(30)).await;
    summary.note(
        live.is_ok(),
        format!(
            "liveness after healing: {}",
            live.as_ref()
                .map(|d| format!("{d:?}"))
                .unwrap_or_else(|e| e.to_string())
        ),
    );
    if let Some(l) = nemesis::leader(&db).await {
        leaders.insert(l);
    }
    leaders.extend(watched.stop().await);
    if s.require_leader_change {
        summary.note(
            leaders.len() > 1,
            format!("the leader changed (leaders seen: {leaders:?})"),
        );
    }
    if s.faults.contains(&Fault::CrashAtFailpoint) {
        let crashes: Vec<String> = history
            .ops()
            .iter()
            .filter(|o| o.f == "restart-disarmed" && o.value["crashed"] == json!(true))
            .map(|o| o.value["failpoint"].as_str().unwrap_or("?").to_string())
            .collect();
        summary.note(
            !crashes.is_empty(),
            format!("FEs crashed at failpoints: {crashes:?}"),
        );
    }
    if s.faults.contains(&Fault::AddFollower) {
        let done = |f: Fault| {
            history
                .ops()
                .iter()
                .filter(|o| o.f == f.name() && o.value["outcome"]["type"] == json!("ok"))
                .count()
        };
        let (added, dropped) = (done(Fault::AddFollower), done(Fault::RemoveFollower));
        summary.note(
            added > 0 && dropped > 0,
            format!("membership changed: {added} follower(s) added, {dropped} dropped"),
        );
    }
    if s.faults.contains(&Fault::IsolateFollower) {
        let isolated = history
            .ops()
            .iter()
            .any(|o| o.f == Fault::IsolateFollower.name());
        let installs: usize = (0..db.len())
            .map(|i| {
                std::fs::read_to_string(db.log_path(i))
                    .unwrap_or_default()
                    .matches("installed a snapshot")
                    .count()
            })
            .sum();
        summary.note(
            !isolated || installs > 0,
            format!(
                "a cut-off follower caught up by snapshot: {installs} snapshot(s) installed{}",
                if isolated {
                    ""
                } else {
                    " (no follower was cut off this run)"
                }
            ),
        );
    }
    let conv = convergence(&db, &members, Duration::from_secs(20)).await;
    summary.note(
        conv.is_ok(),
        format!(
            "convergence: {}",
            conv.as_ref()
                .map(|s| s.clone())
                .unwrap_or_else(|e| e.to_string())
        ),
    );

    if let Workload::Set = s.workload {
        for &i in &members {
            workload::read_set(&history, 1_000_000 + i as u64, i, &db.rpc_addr(i)).await;
        }
    }
    if let Workload::Tablets { .. } = s.workload {
        let all = workload::client_of(&db.rpc_addrs(0..db.len()), Duration::from_secs(5));
        let settled = tablets::settle(&all, Duration::from_secs(90)).await;
        summary.note(
            settled.is_ok(),
            format!(
                "after healing every tablet settles at {} NORMAL replicas: {}",
                tablets::RF,
                settled
                    .as_ref()
                    .map(|_| "yes".to_string())
                    .unwrap_or_else(|e| e.to_string())
            ),
        );
        // The final observations, from every FE, join the history the checker reads.
        for i in 0..db.len() {
            let c = workload::client_of(&db.rpc_addr(i), Duration::from_secs(5));
            tablets::observe(&workload::Proc::once(&history, 1_000_000 + i as u64, i), &c).await;
        }
        let files = tablets::files_match(&all, &agents, Duration::from_secs(30)).await;
        summary.note(
            files.is_ok(),
            format!(
                "agents' replica files: {}",
                files.unwrap_or_else(|e| e.to_string())
            ),
        );
    }

    let ops = history.ops();
    history::write_jsonl(&ops, &dir.join("history.jsonl"))?;
    history::write_edn(&ops, &dir.join("history.edn"))?;
    let nemesis_ops: Vec<_> = ops
        .iter()
        .filter(|o| o.process == Process::Nemesis)
        .cloned()
        .collect();
    history::write_jsonl(&nemesis_ops, &dir.join("nemesis.jsonl"))?;
    let count = |k: OpType| {
        ops.iter()
            .filter(|o| o.kind == k && o.process != Process::Nemesis)
            .count()
    };
    let (oks, fails, infos) = (count(OpType::Ok), count(OpType::Fail), count(OpType::Info));
    summary.lines.push(format!(
        "ops: {} invoked, {oks} ok, {fails} fail, {infos} info; {} nemesis actions",
        count(OpType::Invoke),
        nemesis_ops.len()
    ));

    let check = match s.workload {
        Workload::Register { .. } | Workload::Blacklist { .. } | Workload::Intent { .. } => {
            let initial = match s.workload {
                Workload::Blacklist { .. } => "off",
                Workload::Intent { .. } => workload::ACTIVE,
                _ => workload::INITIAL_TAG,
            };
            let r = linear::check(&ops, &json!(initial), Duration::from_secs(60))?;
            summary.note(oks > 0, format!("{oks} operations succeeded"));
            let ok = r.valid();
            summary.note(
                ok,
                format!(
                    "linearizable: {} ops over {} keys{}",
                    r.ops,
                    r.keys,
                    if ok {
                        String::new()
                    } else {
                        format!(": {:?}", r.bad)
                    }
                ),
            );
            json!({"linearizable": ok, "keys": r.keys, "ops": r.ops, "bad": r.bad.iter().map(|(k, v)| (k.clone(), format!("{v:?}"))).collect::<std::collections::BTreeMap<_, _>>()})
        }
        Workload::Tablets { .. } => {
            let r = replication::check(&ops, tablets::RF, tablets::BUCKETS)?;
            summary.note(
                r.valid(),
                format!(
                    "replication: {} observations, lowest healthy count {:?}, {} below {}{}",
                    r.observations,
                    r.min_healthy,
                    r.bad,
                    tablets::RF,
                    if r.violations.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", r.violations.join("; "))
                    }
                ),
            );
            json!({"valid": r.valid(), "observations": r.observations, "min_healthy": r.min_healthy, "violations": r.violations})
        }
        Workload::Set => {
            let r = set::check(&ops)?;
            let ok = r.valid();
            summary.note(
                r.acknowledged > 0,
                format!("{} adds acknowledged", r.acknowledged),
            );
            summary.note(
                ok,
                format!(
                    "set: {} acknowledged, {} unknown, {} final reads; lost {:?}, unexpected {:?}, failed but present {:?}",
                    r.acknowledged,
                    r.unknown,
                    r.final_reads,
                    r.lost,
                    r.unexpected,
                    r.failed_but_present
                ),
            );
            json!({"valid": ok, "acknowledged": r.acknowledged, "lost": r.lost, "unexpected": r.unexpected})
        }
    };
    let results = json!({
        "scenario": s.name,
        "seed": cfg.seed,
        "bug": cfg.bug,
        "valid": summary.valid(),
        "summary": summary.lines,
        "check": check,
    });
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    db.kill_all();
    Ok(Outcome {
        valid: summary.valid(),
        dir: dir.to_path_buf(),
        summary: summary.lines,
    })
}

/// Which hosts claimed leadership, polled every 300 ms for the whole run (the nemesis's own
/// samples miss short reigns).
struct LeaderWatch {
    seen: std::sync::Arc<std::sync::Mutex<BTreeSet<usize>>>,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl LeaderWatch {
    fn start(addrs: Vec<String>) -> LeaderWatch {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(BTreeSet::new()));
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, d) = (seen.clone(), done.clone());
        let task = tokio::spawn(async move {
            let clients: Vec<roster_client::Client> = addrs
                .iter()
                .map(|a| workload::client_of(a, Duration::from_millis(500)))
                .collect();
            while !d.load(std::sync::atomic::Ordering::Relaxed) && !stopped() {
                for (i, c) in clients.iter().enumerate() {
                    if let Ok(st) = c.status_within(Duration::from_millis(500)).await
                        && st.is_leader
                    {
                        s.lock().expect("leader set").insert(i);
                    }
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        LeaderWatch { seen, done, task }
    }

    async fn stop(self) -> BTreeSet<usize> {
        self.done.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.task.await;
        self.seen.lock().expect("leader set").clone()
    }
}

/// The run's checks, one line each.
#[derive(Default)]
struct Summary {
    failed: bool,
    lines: Vec<String>,
}

impl Summary {
    fn note(&mut self, ok: bool, line: String) {
        self.failed |= !ok;
        self.lines
            .push(format!("{} {line}", if ok { "PASS" } else { "FAIL" }));
    }

    fn valid(&self) -> bool {
        !self.failed
    }
}

async fn sleep_until(t: Instant, cap: Instant) {
    let t = t.min(cap);
    while Instant::now() < t && !stopped() {
        tokio::time::sleep(
            Duration::from_millis(100).min(t.saturating_duration_since(Instant::now())),
        )
        .await;
    }
}

/// Every FE of `members` serves a linearizable read, and a write goes through; returns how long
/// it took.
async fn liveness(db: &Db, members: &[usize], within: Duration) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let deadline = t0 + within;
    for &i in members {
        let c = workload::client_of(&db.rpc_addr(i), Duration::from_secs(3));
        loop {
            match c.list_backends().await {
                Ok(_) => break,
                Err(e) if Instant::now() > deadline || stopped() => {
                    bail!("n{} serves no read: {e}", i + 1)
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
    let c = workload::client_of(&db.rpc_addr(members[0]), Duration::from_secs(3));
    loop {
        // A setting no workload reads, written with its default value.
        match c
            .execute("ADMIN SET FRONTEND CONFIG (\"catalog_trash_expire_second\" = \"86400\")")
            .await
        {
            Ok(_) => return Ok(t0.elapsed()),
            Err(e) if Instant::now() > deadline || stopped() => bail!("no write goes through: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Every FE of `members` reports a digest of its replicated state with the index it was read
/// at: two FEs at the same index must agree (checked on every sample), and all must be seen at
/// one common index within `within`.
async fn convergence(db: &Db, members: &[usize], within: Duration) -> anyhow::Result<String> {
    use std::collections::BTreeMap;
    let deadline = Instant::now() + within;
    let clients: Vec<(usize, roster_client::Client)> = members
        .iter()
        .map(|&i| {
            (
                i,
                workload::client_of(&db.rpc_addr(i), Duration::from_secs(2)),
            )
        })
        .collect();
    let mut seen: Vec<BTreeMap<u64, String>> = vec![BTreeMap::new(); clients.len()];
    let mut by_index: BTreeMap<u64, (String, usize)> = BTreeMap::new();
    while Instant::now() < deadline && !stopped() {
        for (k, (i, c)) in clients.iter().enumerate() {
            let i = *i;
            let Ok(st) = c.status_with_digest(Duration::from_secs(1)).await else {
                continue;
            };
            match by_index.get(&st.digest_index) {
                Some((d, j)) if *d != st.state_digest => bail!(
                    "n{} and n{} hold different states at applied index {}",
                    j + 1,
                    i + 1,
                    st.digest_index
                ),
                Some(_) => {}
                None => {
                    by_index.insert(st.digest_index, (st.state_digest.clone(), i));
                }
            }
            seen[k].insert(st.digest_index, st.state_digest);
        }
        let common = seen[0]
            .keys()
            .rev()
            .find(|idx| seen.iter().all(|s| s.contains_key(idx)));
        if let Some(idx) = common {
            return Ok(format!(
                "{} FEs hold the same state at applied index {idx} ({} samples compared)",
                clients.len(),
                seen.iter().map(BTreeMap::len).sum::<usize>()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "the FEs were never seen at one applied index within {within:?} (last: {:?})",
        seen.iter()
            .map(|s| s.keys().last().copied())
            .collect::<Vec<_>>()
    )
}
