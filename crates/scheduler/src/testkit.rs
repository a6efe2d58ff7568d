//! Fakes for the actors' tests: a `Cluster` whose state lives in memory and whose proposals go
//! through the real applier with a chosen entry term, and agents that answer from a table.

use crate::cluster::{Agents, CloneError, CloneOrder, Cluster, CreateOrder, Fence, Held};
use roster_membership::model::liveness::HeartbeatInfo;
use roster_membership::{ClusterState, FrontendId, HostPort, TabletId, Term};
use roster_raft_store::{Cmd, Request, Response, applier};
use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

#[derive(Clone)]
pub struct FakeCluster {
    pub state: Arc<Mutex<ClusterState>>,
    /// The term of the entries proposals land in: the term this FE leads now.
    pub entry_term: Arc<Mutex<Term>>,
    pub leadership: Arc<watch::Sender<Option<Term>>>,
    /// Every proposal with what apply answered.
    pub proposals: Arc<Mutex<Vec<(Cmd, Response)>>>,
    pub applied: Arc<Notify>,
    /// The applied index: one more per proposal (and per `change`).
    pub index: Arc<watch::Sender<u64>>,
    /// While false, read barriers fail (a deposed leader, a lost quorum).
    pub linearizable: Arc<AtomicBool>,
    start: Instant,
}

impl FakeCluster {
    pub fn new(state: ClusterState, term: Term) -> FakeCluster {
        FakeCluster {
            state: Arc::new(Mutex::new(state)),
            entry_term: Arc::new(Mutex::new(term)),
            leadership: Arc::new(watch::channel(Some(term)).0),
            proposals: Arc::default(),
            applied: Arc::default(),
            index: Arc::new(watch::channel(0).0),
            linearizable: Arc::new(AtomicBool::new(true)),
            start: Instant::now(),
        }
    }

    /// Wait (in tokio time, so paused tests skip ahead) until `f` holds of the state; panics
    /// after `within`.
    pub async fn wait_for(&self, within: Duration, f: impl Fn(&ClusterState) -> bool) {
        let deadline = Instant::now() + within;
        loop {
            let applied = self.applied.notified();
            if f(&self.state.lock().unwrap()) {
                return;
            }
            if tokio::time::timeout_at(deadline, applied).await.is_err() {
                panic!("condition not reached within {within:?}");
            }
        }
    }
}

impl FakeCluster {
    /// Apply `cmd` through the real applier in the current entry term, as Raft would.
    fn apply(&self, cmd: Cmd) -> Response {
        let req = Request {
            time_ms: self.now_ms(),
            user: None,
            cmd,
        };
        let entry_term = *self.entry_term.lock().unwrap();
        let resp = applier::apply(&mut self.state.lock().unwrap(), &req, entry_term);
        self.proposals.lock().unwrap().push((req.cmd, resp.clone()));
        self.index.send_modify(|i| *i += 1);
        self.applied.notify_waiters();
        resp
    }

    /// Change the state as an entry applied from elsewhere would (an operator's statement).
    pub fn change(&self, f: impl FnOnce(&mut ClusterState)) {
        f(&mut self.state.lock().unwrap());
        self.index.send_modify(|i| *i += 1);
        self.applied.notify_waiters();
    }

    /// The proposals whose command (inside its fence) matches `f`, with their answers.
    pub fn proposed(&self, f: impl Fn(&Cmd) -> bool) -> Vec<(Cmd, Response)> {
        let all = self.proposals.lock().unwrap();
        all.iter()
            .filter(|(c, _)| f(c.unfenced()))
            .cloned()
            .collect()
    }

    /// Wait (in tokio time) until at least `n` proposals were applied; panics after `within`.
    pub async fn wait_proposals(&self, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let applied = self.applied.notified();
            if self.proposals.lock().unwrap().len() >= n {
                return;
            }
            if tokio::time::timeout_at(deadline, applied).await.is_err() {
                panic!("{n} proposals not made within {within:?}");
            }
        }
    }
}

impl Cluster for FakeCluster {
    fn read<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> R {
        f(&self.state.lock().unwrap())
    }

    async fn linearize(&self) -> Result<(), String> {
        if self.linearizable.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err("no read index: not the leader".into())
        }
    }

    fn applied(&self) -> watch::Receiver<u64> {
        self.index.subscribe()
    }

    fn me(&self) -> FrontendId {
        FrontendId(1)
    }

    async fn submit(&self, cmd: Cmd) -> Result<Response, String> {
        Ok(self.apply(cmd))
    }

    async fn propose(&self, term: Term, cmd: Cmd) -> Result<Response, String> {
        Ok(self.apply(Cmd::fenced(term, cmd)))
    }

    fn leadership(&self) -> watch::Receiver<Option<Term>> {
        self.leadership.subscribe()
    }

    fn now_ms(&self) -> u64 {
        1_000_000 + self.start.elapsed().as_millis() as u64
    }
}

#[derive(Clone)]
pub struct FakeAgents {
    /// Agents that answer; any other address fails as a refused connection would.
    pub up: Arc<Mutex<BTreeMap<HostPort, HeartbeatInfo>>>,
    /// Heartbeats wait while this is false (a round held in flight).
    pub open: Arc<watch::Sender<bool>>,
    /// How many heartbeats were sent, and the fences they carried.
    pub calls: Arc<watch::Sender<usize>>,
    pub seen: Arc<Mutex<Vec<Fence>>>,
    /// The replicas each agent (by heartbeat address) holds; only agents in `up` answer.
    pub disks: Arc<Mutex<BTreeMap<HostPort, BTreeMap<TabletId, Held>>>>,
    /// Clones wait while this is false (a clone held in flight).
    pub clones_open: Arc<watch::Sender<bool>>,
    /// Errors the next clones answer with, in order, before any copying.
    pub clone_errors: Arc<Mutex<VecDeque<CloneError>>>,
    /// Every clone ordered, with its destination.
    pub clones: Arc<Mutex<Vec<(HostPort, CloneOrder)>>>,
    /// How many clones ended with a copy (not counting errors and aborted ones).
    pub copied: Arc<watch::Sender<usize>>,
}

impl Default for FakeAgents {
    fn default() -> Self {
        FakeAgents {
            up: Arc::default(),
            open: Arc::new(watch::channel(true).0),
            calls: Arc::new(watch::channel(0).0),
            seen: Arc::default(),
            disks: Arc::default(),
            clones_open: Arc::new(watch::channel(true).0),
            clone_errors: Arc::default(),
            clones: Arc::default(),
            copied: Arc::new(watch::channel(0).0),
        }
    }
}

impl FakeAgents {
    /// What the agent at `addr` holds.
    pub fn held(&self, addr: &HostPort) -> BTreeMap<TabletId, Held> {
        self.disks
            .lock()
            .unwrap()
            .get(addr)
            .cloned()
            .unwrap_or_default()
    }

    /// Wait (in tokio time) until `f` holds of the agents' disks; panics after `within`.
    /// Polls every 50 ms of tokio time: agents' disks change from the actor's calls.
    pub async fn wait_disks(
        &self,
        within: Duration,
        f: impl Fn(&BTreeMap<HostPort, BTreeMap<TabletId, Held>>) -> bool,
    ) {
        let deadline = Instant::now() + within;
        while !f(&self.disks.lock().unwrap()) {
            assert!(
                Instant::now() < deadline,
                "disks not as wanted within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn answering(&self, addr: &HostPort) -> Result<(), String> {
        if self.up.lock().unwrap().contains_key(addr) {
            Ok(())
        } else {
            Err(format!("{addr}: connection refused"))
        }
    }

    /// Wait until at least `n` heartbeats were sent.
    pub async fn wait_calls(&self, n: usize) {
        let mut rx = self.calls.subscribe();
        rx.wait_for(|c| *c >= n).await.unwrap();
    }
}

impl Agents for FakeAgents {
    async fn heartbeat(
        &self,
        addr: &HostPort,
        fence: &Fence,
        _timeout: Duration,
    ) -> Result<HeartbeatInfo, String> {
        self.seen.lock().unwrap().push(fence.clone());
        self.calls.send_modify(|c| *c += 1);
        let mut open = self.open.subscribe();
        open.wait_for(|o| *o).await.unwrap();
        self.up
            .lock()
            .unwrap()
            .get(addr)
            .cloned()
            .ok_or_else(|| format!("heartbeat to {addr} failed: connection refused"))
    }

    async fn connect(&self, addr: &HostPort, _timeout: Duration) -> Result<(), String> {
        self.answering(addr)
    }

    async fn list_replicas(
        &self,
        addr: &HostPort,
        _timeout: Duration,
    ) -> Result<Vec<Held>, String> {
        self.answering(addr)?;
        Ok(self.held(addr).into_values().collect())
    }

    async fn create_replica(
        &self,
        addr: &HostPort,
        order: &CreateOrder,
        _timeout: Duration,
    ) -> Result<Held, String> {
        self.answering(addr)?;
        let held = Held {
            tablet: order.tablet,
            bytes: order.fill_bytes,
            checksum: order.tablet.0 as u32,
        };
        let mut disks = self.disks.lock().unwrap();
        disks
            .entry(addr.clone())
            .or_default()
            .insert(order.tablet, held);
        Ok(held)
    }

    async fn drop_replica(
        &self,
        addr: &HostPort,
        tablet: TabletId,
        _timeout: Duration,
    ) -> Result<(), String> {
        self.answering(addr)?;
        let mut disks = self.disks.lock().unwrap();
        disks.entry(addr.clone()).or_default().remove(&tablet);
        Ok(())
    }

    async fn clone_replica(
        &self,
        dest: &HostPort,
        order: &CloneOrder,
        _timeout: Duration,
    ) -> Result<Held, CloneError> {
        self.clone_now(dest, order).await
    }
}

impl FakeAgents {
    async fn clone_now(&self, dest: &HostPort, order: &CloneOrder) -> Result<Held, CloneError> {
        self.clones
            .lock()
            .unwrap()
            .push((dest.clone(), order.clone()));
        let mut open = self.clones_open.subscribe();
        open.wait_for(|o| *o).await.unwrap();
        if let Some(e) = self.clone_errors.lock().unwrap().pop_front() {
            return Err(e);
        }
        self.answering(dest).map_err(CloneError::Failed)?;
        let mut disks = self.disks.lock().unwrap();
        // The source is named by its data address: the agent on that host holding the tablet.
        let source = disks
            .iter()
            .find(|(a, held)| a.host == order.source.host && held.contains_key(&order.tablet))
            .map(|(_, held)| held[&order.tablet])
            .ok_or_else(|| CloneError::Failed(format!("{}: no such replica", order.source)))?;
        if order
            .expected_checksum
            .is_some_and(|c| c != source.checksum)
        {
            return Err(CloneError::Failed("checksum mismatch".into()));
        }
        disks
            .entry(dest.clone())
            .or_default()
            .insert(order.tablet, source);
        drop(disks);
        self.copied.send_modify(|c| *c += 1);
        Ok(source)
    }
}

/// `n` alive backends on hosts 127.0.9.1.. (port 9050), each with an agent that answers.
pub fn alive_backends(n: u8, agents: &FakeAgents) -> (ClusterState, Vec<HostPort>) {
    use roster_membership::transition::registry;
    let mut s = ClusterState::default();
    let addrs: Vec<HostPort> = (1..=n)
        .map(|k| HostPort::new(format!("127.0.9.{k}"), 9050))
        .collect();
    for id in registry::add_backends(&mut s, 0, &addrs, &[]).unwrap() {
        s.backends.get_mut(&id).unwrap().liveness.alive = true;
    }
    for a in &addrs {
        agents
            .up
            .lock()
            .unwrap()
            .insert(a.clone(), HeartbeatInfo::default());
    }
    (s, addrs)
}

/// CREATE TABLE `name` with `buckets` tablets of `rf` replicas, `fill` bytes each (CREATING).
pub fn create_table(s: &mut ClusterState, name: &str, buckets: u32, rf: usize, fill: u64) {
    use roster_membership::model::catalog::TableDef;
    let def = TableDef {
        name: name.into(),
        if_not_exists: false,
        columns: vec![],
        hash_columns: vec![],
        buckets,
        properties: vec![
            ("replication_num".into(), rf.to_string()),
            ("fill_bytes_per_tablet".into(), fill.to_string()),
        ],
    };
    roster_membership::transition::catalog::create_table(s, 0, &def).unwrap();
}

/// Whether every replica of every tablet is NORMAL.
pub fn all_normal(s: &ClusterState) -> bool {
    use roster_membership::model::catalog::ReplicaState;
    s.tablets
        .values()
        .all(|t| t.replicas.iter().all(|r| r.state == ReplicaState::Normal))
}

/// Every replica NORMAL with `bytes`, held by its backend's agent (checksum: the tablet id).
pub fn settle(s: &mut ClusterState, agents: &FakeAgents, bytes: u64) {
    use roster_membership::model::catalog::ReplicaReport;
    let mut reports = Vec::new();
    let mut disks = agents.disks.lock().unwrap();
    for t in s.tablets.values() {
        for r in &t.replicas {
            let held = Held {
                tablet: t.id,
                bytes,
                checksum: t.id.0 as u32,
            };
            let addr = s.backends.get(&r.backend).unwrap().addr.clone();
            disks.entry(addr).or_default().insert(t.id, held);
            reports.push(ReplicaReport {
                tablet: t.id,
                backend: r.backend,
                bytes,
                checksum: held.checksum,
            });
        }
    }
    roster_membership::transition::catalog::record_replicas(s, &reports);
}
