//! Fakes for the actors' tests: a `Cluster` whose state lives in memory and whose proposals go
//! through the real applier with a chosen entry term, and agents that answer from a table.

use crate::cluster::{Agents, Cluster, Fence};
use roster_membership::model::liveness::HeartbeatInfo;
use roster_membership::{ClusterState, HostPort, Term};
use roster_raft_store::{Cmd, Request, Response, applier};
use std::collections::BTreeMap;
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

    async fn propose(&self, term: Term, cmd: Cmd) -> Result<Response, String> {
        let req = Request {
            time_ms: self.now_ms(),
            user: None,
            cmd: Cmd::fenced(term, cmd),
        };
        let entry_term = *self.entry_term.lock().unwrap();
        let resp = applier::apply(&mut self.state.lock().unwrap(), &req, entry_term);
        self.proposals.lock().unwrap().push((req.cmd, resp.clone()));
        self.applied.notify_waiters();
        Ok(resp)
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
}

impl Default for FakeAgents {
    fn default() -> Self {
        FakeAgents {
            up: Arc::default(),
            open: Arc::new(watch::channel(true).0),
            calls: Arc::new(watch::channel(0).0),
            seen: Arc::default(),
        }
    }
}

impl FakeAgents {
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
}
