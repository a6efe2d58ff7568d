//! Faults: partitions as per-node grudges in nftables (each node drops packets from the peers it
//! holds a grudge against; the client host is never in a grudge, as in Jepsen), SIGKILL and
//! restart, SIGSTOP and SIGCONT. Every action is recorded in the history as a nemesis `info`.

use crate::db::Db;
use crate::history::Recorder;
use crate::topology::Topology;
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

/// What the nemesis may do in a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Split the nodes into two random halves.
    PartitionHalves,
    /// Cut the current leader off from every other node.
    IsolateLeader,
    /// Every node sees a majority, no two the same one (5 nodes).
    MajoritiesRing,
    /// Two halves joined only through one middle node (5 nodes).
    Bridge,
    /// The leader hears nobody, but everybody hears it.
    OneWayFromLeader,
    /// SIGKILL the leader, restart it later.
    KillLeader,
    /// SIGKILL a random node, restart it later.
    KillOne,
    /// SIGSTOP the leader, SIGCONT it later.
    PauseLeader,
    /// SIGSTOP a minority, SIGCONT them later.
    PauseMinority,
    /// Move one node's wall clock by minutes, forwards or backwards (libfaketime).
    ClockBump,
    /// Move the leader's wall clock back and a follower's forward.
    ClockSkewLeader,
    /// Restart the leader with every clock (monotonic too, which Raft's timers use) at half
    /// speed and a follower at double speed (libfaketime), the direction that breaks clock
    /// leases; restart both at normal speed later.
    ClockRates,
    /// Restart an FE (the leader half the time) with a storage failpoint armed, so that it
    /// crashes (abort) at that point of its write path soon after; restart it clean later.
    CrashAtFailpoint,
    /// ALTER SYSTEM ADD FOLLOWER of a host outside the membership (a host whose FE was dropped
    /// rejoins with a new node id and an empty data directory).
    AddFollower,
    /// ALTER SYSTEM DROP FOLLOWER of a random member (the leader included) while more than
    /// three remain; a dropped FE is stopped.
    RemoveFollower,
    /// Every Raft link 100 ms ± 50 ms slower each way (the userspace proxy, `proxy.rs`).
    SlowLinks,
    /// Every FE drops 30 % of the packets from other FEs at random (nftables `numgen`).
    LossyLinks,
    /// Cut one random follower off from every other FE.
    IsolateFollower,
}

/// The failpoints the nemesis arms: the write path of every entry (snapshot installation,
/// `raft-sm-before-install`, is too rare to be worth arming at random).
pub const CRASH_POINTS: &[&str] = &[
    "raft-log-before-append",
    "raft-log-after-append",
    "raft-sm-before-apply",
    "raft-sm-after-apply",
];

impl Fault {
    pub fn name(&self) -> &'static str {
        match self {
            Fault::PartitionHalves => "partition-random-halves",
            Fault::IsolateLeader => "partition-leader",
            Fault::MajoritiesRing => "partition-majorities-ring",
            Fault::Bridge => "partition-bridge",
            Fault::OneWayFromLeader => "partition-one-way",
            Fault::KillLeader => "kill-leader",
            Fault::KillOne => "kill-one",
            Fault::PauseLeader => "pause-leader",
            Fault::PauseMinority => "pause-minority",
            Fault::ClockBump => "clock-bump",
            Fault::ClockSkewLeader => "clock-skew-leader",
            Fault::ClockRates => "clock-rates",
            Fault::CrashAtFailpoint => "crash-at-failpoint",
            Fault::AddFollower => "add-follower",
            Fault::RemoveFollower => "remove-follower",
            Fault::SlowLinks => "slow-links",
            Fault::LossyLinks => "lossy-links",
            Fault::IsolateFollower => "partition-follower",
        }
    }
}

/// Which node (index) leads, according to the first node that answers and knows.
pub async fn leader(db: &Db) -> Option<usize> {
    for i in 0..db.len() {
        if !db.is_running(i) {
            continue;
        }
        // Logged in: a probe without root's password is a failed login, which the login
        // throttle counts against this source until it refuses the harness itself.
        let c = crate::workload::client_of(&db.rpc_addr(i), Duration::from_secs(1));
        if let Ok(s) = c.status_within(Duration::from_millis(500)).await
            && let Some(l) = s.leader_id
        {
            return db.host_of(l);
        }
    }
    None
}

/// The hosts in the cluster's membership, from SHOW FRONTENDS (a linearizable read) through
/// whichever running FE answers.
pub async fn members(db: &Db) -> Option<BTreeSet<usize>> {
    let addrs = db.rpc_addrs((0..db.len()).filter(|i| db.is_running(*i)));
    if addrs.is_empty() {
        return None;
    }
    let c = crate::workload::client_of(&addrs, Duration::from_secs(3));
    let r = c.execute("SHOW FRONTENDS").await.ok()?;
    let col = r.columns.iter().position(|c| c == "Host")?;
    Some(
        r.rows
            .iter()
            .filter_map(|row| db.host_of_ip(row.get(col)?.as_deref()?))
            .collect(),
    )
}

/// How a membership statement ended, for the history.
fn outcome(
    r: &Result<roster_client::QueryResult, roster_client::ClientError>,
) -> serde_json::Value {
    match r {
        Ok(q) => json!({"type": "ok", "message": q.message}),
        Err(e) => json!({
            "type": if matches!(e, roster_client::ClientError::Unknown(_)) { "info" } else { "fail" },
            "error": e.to_string(),
        }),
    }
}

/// Grudges: `drop[i]` is the set of nodes whose packets node i drops (`inbound`) and to which it
/// sends nothing (`outbound`).
fn apply_grudges(
    topo: &Topology,
    grudges: &[BTreeSet<usize>],
    inbound: bool,
    outbound: bool,
) -> anyhow::Result<()> {
    for (i, g) in grudges.iter().enumerate() {
        if g.is_empty() {
            continue;
        }
        let ips = g
            .iter()
            .map(|j| topo.nodes[*j].ip.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let mut rules = String::from("table inet jepsen {\n");
        if inbound {
            rules.push_str(&format!(
                "  chain input {{\n    type filter hook input priority 0; policy accept;\n    ip saddr {{ {ips} }} drop\n  }}\n"
            ));
        }
        if outbound {
            rules.push_str(&format!(
                "  chain output {{\n    type filter hook output priority 0; policy accept;\n    ip daddr {{ {ips} }} drop\n  }}\n"
            ));
        }
        rules.push_str("}\n");
        topo.nft(i, &rules)?;
    }
    Ok(())
}

/// Grudges that cut `parts` from each other completely.
fn split(n: usize, part_of: impl Fn(usize) -> usize) -> Vec<BTreeSet<usize>> {
    (0..n)
        .map(|i| (0..n).filter(|j| part_of(*j) != part_of(i)).collect())
        .collect()
}

/// Remove every partition and loss rule (the table `inet jepsen`; the proxy's redirect, in a
/// table of its own, stays).
pub fn heal(topo: &Topology) {
    for i in 0..topo.nodes.len() {
        // Declaring the table first makes the delete succeed when there is none.
        let _ = topo.nft(i, "table inet jepsen {}\ndelete table inet jepsen\n");
    }
}

/// A fault in force, to be undone.
#[derive(Debug)]
pub enum Active {
    Partition,
    Killed(usize),
    Paused(Vec<usize>),
    Clocks(Vec<usize>),
    /// Running with this failpoint armed.
    Armed(usize, &'static str),
    /// Nothing to undo (a membership change).
    Done,
    /// Running at other clock rates.
    Rates(Vec<usize>),
    /// The proxies delay every link.
    Slow,
}

pub struct Nemesis {
    pub rng: StdRng,
    pub history: Recorder,
    /// Node ids seen in the membership: such an FE, once out, cannot join again.
    pub ever_members: BTreeSet<u64>,
    /// The Raft-link proxies' delay, in scenarios that run the proxies.
    pub delay: Option<std::sync::Arc<crate::proxy::Delay>>,
    /// Faults still to deal before the next shuffle.
    pub deck: Vec<Fault>,
}

impl Nemesis {
    /// The current members (see `members`), remembered in `ever_members`.
    async fn members(&mut self, db: &Db) -> Option<BTreeSet<usize>> {
        let m = members(db).await?;
        self.ever_members.extend(m.iter().map(|h| db.node_id(*h)));
        Some(m)
    }

    /// The next fault: the scenario's faults dealt in a seeded shuffled order, reshuffled when
    /// all have been dealt, so that a run with as many faults as kinds has each kind once.
    pub fn next_fault(&mut self, faults: &[Fault]) -> Fault {
        if self.deck.is_empty() {
            self.deck = faults.to_vec();
            self.deck.shuffle(&mut self.rng);
        }
        self.deck.pop().expect("a scenario with faults")
    }

    /// Start `fault`; returns what to undo, or `None` when it could not apply (no leader known).
    pub async fn start(
        &mut self,
        fault: Fault,
        topo: &Topology,
        db: &mut Db,
    ) -> anyhow::Result<Option<Active>> {
        let n = db.len();
        let f = fault.name();
        let active = match fault {
            Fault::PartitionHalves => {
                let mut order: Vec<usize> = (0..n).collect();
                order.shuffle(&mut self.rng);
                let small: BTreeSet<usize> = order[..n / 2].iter().copied().collect();
                apply_grudges(topo, &split(n, |i| small.contains(&i) as usize), true, true)?;
                self.history
                    .nemesis(f, json!([names(&small), names(&complement(n, &small))]));
                Active::Partition
            }
            Fault::IsolateLeader | Fault::OneWayFromLeader => {
                let Some(l) = leader(db).await else {
                    return Ok(None);
                };
                let mut g = vec![BTreeSet::new(); n];
                if fault == Fault::IsolateLeader {
                    g = split(n, |i| (i == l) as usize);
                    apply_grudges(topo, &g, true, true)?;
                } else {
                    // The leader drops what it receives; it still sends.
                    g[l] = (0..n).filter(|j| *j != l).collect();
                    apply_grudges(topo, &g, true, false)?;
                }
                self.history.nemesis(f, json!(format!("n{}", l + 1)));
                Active::Partition
            }
            Fault::MajoritiesRing => {
                // Node i sees i-1, i+1 (and itself): with 5 nodes, a majority each, all distinct.
                let g: Vec<BTreeSet<usize>> = (0..n)
                    .map(|i| {
                        (0..n)
                            .filter(|j| {
                                let d = (i + n - j) % n;
                                d != 0 && d != 1 && d != n - 1
                            })
                            .collect()
                    })
                    .collect();
                apply_grudges(topo, &g, true, true)?;
                self.history.nemesis(f, json!("ring"));
                Active::Partition
            }
            Fault::Bridge => {
                let mut order: Vec<usize> = (0..n).collect();
                order.shuffle(&mut self.rng);
                let middle = order[0];
                let left: BTreeSet<usize> = order[1..].iter().take((n - 1) / 2).copied().collect();
                let g: Vec<BTreeSet<usize>> = (0..n)
                    .map(|i| {
                        if i == middle {
                            BTreeSet::new()
                        } else {
                            (0..n)
                                .filter(|j| {
                                    *j != middle && *j != i && left.contains(j) != left.contains(&i)
                                })
                                .collect()
                        }
                    })
                    .collect();
                apply_grudges(topo, &g, true, true)?;
                self.history
                    .nemesis(f, json!({"bridge": format!("n{}", middle + 1)}));
                Active::Partition
            }
            Fault::KillLeader | Fault::KillOne => {
                let target = if fault == Fault::KillLeader {
                    match leader(db).await {
                        Some(l) => l,
                        None => return Ok(None),
                    }
                } else {
                    self.rng.random_range(0..n)
                };
                db.kill(target);
                self.history.nemesis(f, json!(format!("n{}", target + 1)));
                Active::Killed(target)
            }
            Fault::CrashAtFailpoint => {
                let target = match leader(db).await {
                    Some(l) if self.rng.random_bool(0.5) => l,
                    _ => self.rng.random_range(0..n),
                };
                let point = CRASH_POINTS[self.rng.random_range(0..CRASH_POINTS.len())];
                db.kill(target);
                db.start_with(target, &[("FAILPOINTS", &format!("{point}=10%return"))])?;
                self.history
                    .nemesis(f, json!({format!("n{}", target + 1): point}));
                Active::Armed(target, point)
            }
            Fault::SlowLinks => {
                let Some(d) = &self.delay else {
                    anyhow::bail!("slow-links needs the proxies (Scenario::proxies)");
                };
                d.set(100, 50);
                self.history.nemesis(f, json!("100ms ± 50ms each way"));
                Active::Slow
            }
            Fault::LossyLinks => {
                let ips = |i: usize| {
                    (0..n)
                        .filter(|j| *j != i)
                        .map(|j| topo.nodes[j].ip.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                for i in 0..n {
                    topo.nft(
                        i,
                        &format!(
                            "table inet jepsen {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n    ip saddr {{ {} }} numgen random mod 100 < 30 drop\n  }}\n}}\n",
                            ips(i)
                        ),
                    )?;
                }
                self.history.nemesis(f, json!("30% of packets between FEs"));
                Active::Partition
            }
            Fault::IsolateFollower => {
                let Some(l) = leader(db).await else {
                    return Ok(None);
                };
                let target = (l + 1 + self.rng.random_range(0..n - 1)) % n;
                apply_grudges(topo, &split(n, |i| (i == target) as usize), true, true)?;
                self.history.nemesis(f, json!(format!("n{}", target + 1)));
                Active::Partition
            }
            Fault::AddFollower => {
                let Some(members) = self.members(db).await else {
                    return Ok(None);
                };
                let out: Vec<usize> = (0..n).filter(|h| !members.contains(h)).collect();
                if out.is_empty() {
                    return Ok(None);
                }
                let host = out[self.rng.random_range(0..out.len())];
                if db.is_retired(host) || self.ever_members.contains(&db.node_id(host)) {
                    db.rejoin(host)?;
                } else {
                    db.start(host)?;
                }
                let sql = format!("ALTER SYSTEM ADD FOLLOWER \"{}\"", db.edit_log_addr(host));
                // A joiner just started may not listen yet: the FE refuses it as unreachable.
                let c = crate::workload::client_of(
                    &db.rpc_addrs(members.iter().copied()),
                    Duration::from_secs(10),
                );
                let deadline = std::time::Instant::now() + Duration::from_secs(5);
                let r = loop {
                    let r = c.execute(&sql).await;
                    match &r {
                        Err(e)
                            if e.to_string().contains("not reachable")
                                && std::time::Instant::now() < deadline =>
                        {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                        }
                        _ => break r,
                    }
                };
                self.history.nemesis(
                    f,
                    json!({"node": format!("n{}", host + 1), "id": db.node_id(host), "outcome": outcome(&r)}),
                );
                Active::Done
            }
            Fault::RemoveFollower => {
                let Some(members) = self.members(db).await else {
                    return Ok(None);
                };
                if members.len() <= 3 {
                    return Ok(None);
                }
                let list: Vec<usize> = members.iter().copied().collect();
                let host = list[self.rng.random_range(0..list.len())];
                let sql = format!("ALTER SYSTEM DROP FOLLOWER \"{}\"", db.edit_log_addr(host));
                let c = crate::workload::client_of(
                    &db.rpc_addrs(members.iter().copied()),
                    Duration::from_secs(10),
                );
                let r = c.execute(&sql).await;
                if r.is_ok() {
                    db.retire(host);
                }
                self.history.nemesis(
                    f,
                    json!({"node": format!("n{}", host + 1), "id": db.node_id(host), "outcome": outcome(&r)}),
                );
                Active::Done
            }
            Fault::ClockBump => {
                let target = self.rng.random_range(0..n);
                let secs = self.rng.random_range(60..=600);
                let sign = if self.rng.random_bool(0.5) { '+' } else { '-' };
                db.set_clock(target, &format!("{sign}{secs}"))?;
                self.history.nemesis(
                    f,
                    json!({format!("n{}", target + 1): format!("{sign}{secs}s")}),
                );
                Active::Clocks(vec![target])
            }
            Fault::ClockSkewLeader => {
                let Some(l) = leader(db).await else {
                    return Ok(None);
                };
                let other = (l + 1 + self.rng.random_range(0..n - 1)) % n;
                db.set_clock(l, "-300")?;
                db.set_clock(other, "+300")?;
                self.history.nemesis(
                    f,
                    json!({format!("n{}", l + 1): "-300s", format!("n{}", other + 1): "+300s"}),
                );
                Active::Clocks(vec![l, other])
            }
            Fault::ClockRates => {
                let Some(l) = leader(db).await else {
                    return Ok(None);
                };
                let other = (l + 1 + self.rng.random_range(0..n - 1)) % n;
                // A rate counts from the process's start, so it is set before a restart and
                // kept until the next one: no jump.
                for (t, rate) in [(l, "x0.5"), (other, "x2")] {
                    db.set_clock(t, &format!("+0 {rate}"))?;
                    db.kill(t);
                    db.start_with(t, &[("FAKETIME_DONT_FAKE_MONOTONIC", "0")])?;
                }
                self.history.nemesis(
                    f,
                    json!({format!("n{}", l + 1): "x0.5", format!("n{}", other + 1): "x2"}),
                );
                Active::Rates(vec![l, other])
            }
            Fault::PauseLeader | Fault::PauseMinority => {
                let targets: Vec<usize> = if fault == Fault::PauseLeader {
                    match leader(db).await {
                        Some(l) => vec![l],
                        None => return Ok(None),
                    }
                } else {
                    let mut order: Vec<usize> = (0..n).collect();
                    order.shuffle(&mut self.rng);
                    order[..(n - 1) / 2].to_vec()
                };
                for t in &targets {
                    db.pause(*t);
                }
                let set: BTreeSet<usize> = targets.iter().copied().collect();
                self.history.nemesis(f, json!(names(&set)));
                Active::Paused(targets)
            }
        };
        Ok(Some(active))
    }

    /// Undo an active fault.
    pub fn stop(&mut self, active: Active, topo: &Topology, db: &mut Db) -> anyhow::Result<()> {
        match active {
            Active::Partition => {
                heal(topo);
                self.history.nemesis("heal", serde_json::Value::Null);
            }
            Active::Done => {}
            Active::Rates(ts) => {
                for t in &ts {
                    db.set_clock(*t, "+0")?;
                    db.kill(*t);
                    db.start(*t)?;
                }
                let set: BTreeSet<usize> = ts.into_iter().collect();
                self.history
                    .nemesis("clock-rates-reset", json!(names(&set)));
            }
            Active::Slow => {
                if let Some(d) = &self.delay {
                    d.set(0, 0);
                }
                self.history.nemesis("fast-links", serde_json::Value::Null);
            }
            Active::Armed(t, point) => {
                // Did it crash at the point? Either way it restarts clean.
                let crashed = db.exited(t).is_some();
                db.kill(t);
                db.start(t)?;
                self.history.nemesis(
                    "restart-disarmed",
                    json!({"node": format!("n{}", t + 1), "failpoint": point, "crashed": crashed}),
                );
            }
            Active::Killed(t) => {
                db.start(t)?;
                self.history
                    .nemesis("restart", json!(format!("n{}", t + 1)));
            }
            Active::Clocks(ts) => {
                for t in &ts {
                    db.set_clock(*t, "+0")?;
                }
                let set: BTreeSet<usize> = ts.into_iter().collect();
                self.history.nemesis("clock-reset", json!(names(&set)));
            }
            Active::Paused(ts) => {
                for t in &ts {
                    db.resume(*t);
                }
                let set: BTreeSet<usize> = ts.into_iter().collect();
                self.history.nemesis("resume", json!(names(&set)));
            }
        }
        Ok(())
    }
}

fn names(s: &BTreeSet<usize>) -> Vec<String> {
    s.iter().map(|i| format!("n{}", i + 1)).collect()
}

fn complement(n: usize, s: &BTreeSet<usize>) -> BTreeSet<usize> {
    (0..n).filter(|i| !s.contains(i)).collect()
}
