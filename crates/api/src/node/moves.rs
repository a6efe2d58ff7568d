//! The master's move executor and tablet scheduler tick. Each round (after the replica
//! reconciler) it: records the outcome of finished clones (FinishMove / AbortMove), aborts
//! moves past their deadline, asks destination agents to pull the replicas of moves that have
//! no clone running, plans new moves with the pure planner (`roster_scheduler::planner`) and
//! proposes them, and finishes drained decommissions. Moves live in the replicated state, so a
//! new master resumes them; the clone calls in flight are soft state of this term only.

use super::FeNodeHandle;
use crate::wire::{LeaderOp, LeaderReply};
use roster_membership::model::moves::Move;
use roster_membership::{MoveId, Term, query};
use roster_proto::format::now_ms;
use roster_proto::pb::backend::{CloneReplicaRequest, ReplicaInfo};
use roster_raft_store::{Cmd, Reply, Response};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

type Outcome = (MoveId, Result<ReplicaInfo, tonic::Status>);

/// Clone outcomes waiting for the executor.
const OUTCOME_QUEUE: usize = 64;

/// Soft state of one term of leadership.
pub(super) struct Executor {
    term: u64,
    running: BTreeMap<MoveId, tokio::task::AbortHandle>,
    tx: mpsc::Sender<Outcome>,
    rx: mpsc::Receiver<Outcome>,
    /// Outcomes received while waiting, handled by the next round.
    pending: Vec<Outcome>,
    /// Moves whose clone another master started on the agent, or that the agent's fence
    /// refused: ask again after this.
    recheck_at: BTreeMap<MoveId, Instant>,
    /// The last refusal by a destination's fence, for the reason of a move that times out.
    refused: BTreeMap<MoveId, String>,
    /// After a plan the applier refused whole (made on a view it no longer agrees with), do
    /// not plan again before this: applying the refusal would wake us straight back.
    plan_after: Instant,
}

impl Executor {
    pub(super) fn new(term: u64) -> Self {
        // Each clone task sends one outcome; a full queue only makes a finished clone wait
        // for the executor's next look.
        let (tx, rx) = mpsc::channel(OUTCOME_QUEUE);
        Executor {
            term,
            running: BTreeMap::new(),
            tx,
            rx,
            pending: Vec::new(),
            recheck_at: BTreeMap::new(),
            refused: BTreeMap::new(),
            plan_after: Instant::now(),
        }
    }

    /// Wait until a clone finishes (cancel-safe: the outcome is kept for the next round).
    pub(super) async fn wait_outcome(&mut self) {
        match self.rx.recv().await {
            Some(o) => self.pending.push(o),
            None => std::future::pending().await,
        }
    }

    pub(super) fn term(&self) -> u64 {
        self.term
    }

    pub(super) async fn round(&mut self, fe: &FeNodeHandle) {
        self.collect(fe).await;
        self.plan(fe).await;
        self.drive(fe).await;
    }

    /// Record what finished clones returned.
    async fn collect(&mut self, fe: &FeNodeHandle) {
        while let Ok(o) = self.rx.try_recv() {
            self.pending.push(o);
        }
        for (id, result) in std::mem::take(&mut self.pending) {
            self.running.remove(&id);
            let cmd = match result {
                Ok(r) => Cmd::FinishMove {
                    id,
                    bytes: r.bytes,
                    checksum: r.checksum,
                },
                // Another master's clone of it is still running there: ask again later.
                Err(s) if s.code() == tonic::Code::AlreadyExists => {
                    self.recheck_at
                        .insert(id, Instant::now() + Duration::from_secs(1));
                    continue;
                }
                // The agent's clone fence (see the agent's service): it has not yet heard this
                // term's heartbeat naming the source (a restarted agent, a backend just added),
                // or this master is deposed. Ask again; the move's deadline bounds the wait.
                Err(s) if s.code() == tonic::Code::FailedPrecondition => {
                    tracing::warn!(move_id = %id, "clone refused by its destination: {}", s.message());
                    self.recheck_at
                        .insert(id, Instant::now() + Duration::from_secs(1));
                    self.refused.insert(id, s.message().to_string());
                    continue;
                }
                Err(s) => Cmd::AbortMove {
                    id,
                    reason: s.message().to_string(),
                },
            };
            propose(fe, self.term, cmd).await;
        }
    }

    /// Abort moves past their deadline; start clones for moves without one.
    async fn drive(&mut self, fe: &FeNodeHandle) {
        let now = now_ms();
        let (moves, rate, addrs) = fe.store().read(|s, _| {
            let addrs: BTreeMap<_, _> = s
                .backends
                .values()
                // The same data address the heartbeats name to agents as clone sources.
                .map(|b| (b.id, (b.addr.to_string(), b.data_addr().to_string())))
                .collect();
            let tables: BTreeMap<_, _> = s.tablets.values().map(|t| (t.id, t.table)).collect();
            let moves: Vec<(Move, u64)> = s
                .moves
                .values()
                .map(|m| (m.clone(), tables.get(&m.plan.tablet).map_or(0, |t| t.0)))
                .collect();
            (
                moves,
                s.meta.settings.values().clone_rate_limit_bytes_per_sec,
                addrs,
            )
        });
        self.running
            .retain(|id, _| moves.iter().any(|(m, _)| m.id == *id));
        self.recheck_at
            .retain(|id, _| moves.iter().any(|(m, _)| m.id == *id));
        self.refused
            .retain(|id, _| moves.iter().any(|(m, _)| m.id == *id));
        for (m, table_id) in moves {
            if now >= m.deadline_ms() {
                if let Some(h) = self.running.remove(&m.id) {
                    h.abort();
                }
                let mut reason = format!(
                    "clone to backend {} from backend {} timed out after {} s",
                    m.plan.dest,
                    m.plan.source,
                    m.timeout_ms / 1000
                );
                if let Some(r) = self.refused.get(&m.id) {
                    reason.push_str(&format!(" (last refused: {r})"));
                }
                propose(fe, self.term, Cmd::AbortMove { id: m.id, reason }).await;
                continue;
            }
            if self.running.contains_key(&m.id)
                || self
                    .recheck_at
                    .get(&m.id)
                    .is_some_and(|t| Instant::now() < *t)
            {
                continue;
            }
            let (Some((dest, _)), Some((_, source))) =
                (addrs.get(&m.plan.dest), addrs.get(&m.plan.source))
            else {
                continue; // a backend was dropped: the applier already aborted the move
            };
            let req = CloneReplicaRequest {
                tablet_id: m.plan.tablet.0,
                table_id,
                source_addr: source.clone(),
                expected_bytes: m.bytes,
                expected_checksum: m.checksum.unwrap_or(0),
                checksum_known: m.checksum.is_some(),
                rate_limit_bytes_per_sec: rate,
                master_term: self.term,
            };
            let left = Duration::from_millis(m.deadline_ms() - now);
            let mut client = match fe.agent_client(dest) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("no channel to {dest}: {e}");
                    continue;
                }
            };
            let tx = self.tx.clone();
            let id = m.id;
            let task = tokio::spawn(async move {
                let mut r = tonic::Request::new(req);
                r.set_timeout(left);
                let result = match tokio::time::timeout(left, client.clone_replica(r)).await {
                    Ok(r) => r.map(|r| r.into_inner()),
                    Err(_) => Err(tonic::Status::deadline_exceeded("clone timed out")),
                };
                let _ = tx.send((id, result)).await;
            });
            tracing::info!(
                move_id = %m.id, tablet = %m.plan.tablet, source = %m.plan.source,
                dest = %m.plan.dest, reason = m.plan.reason.as_str(), bytes = m.bytes,
                "clone started"
            );
            self.running.insert(m.id, task.abort_handle());
        }
    }

    /// Plan new moves and finish drained decommissions.
    async fn plan(&mut self, fe: &FeNodeHandle) {
        let now = now_ms();
        // `disable_tablet_scheduler` pauses completions too: they are the scheduler's work.
        let (plans, finished) = fe.store().read(|s, _| {
            (
                roster_scheduler::planner::plan(s, now),
                !s.meta.settings.values().disable_tablet_scheduler
                    && !query::drain::ready_to_finish(s).is_empty(),
            )
        });
        if !plans.is_empty() && Instant::now() >= self.plan_after {
            let n = plans.len();
            if let Some(Reply::Moves(started)) =
                propose(fe, self.term, Cmd::StartMoves { moves: plans }).await
                && started.is_empty()
            {
                tracing::warn!(
                    "the applier refused all {n} planned moves; planning again in a moment"
                );
                self.plan_after = Instant::now() + Duration::from_millis(500);
            }
        }
        if finished {
            propose(fe, self.term, Cmd::FinishDecommissions).await;
        }
        if crate::bugs::on(crate::bugs::Bug::DecommissionNoRfCheck) {
            // The bug: a draining backend is dropped at once, with the replicas it still holds.
            let draining: Vec<_> = fe.store().read(|s, _| {
                s.backends
                    .values()
                    .filter(|b| {
                        b.membership == roster_membership::BackendMembership::Decommissioning
                    })
                    .map(|b| roster_membership::BackendRef::Id(b.id))
                    .collect()
            });
            if !draining.is_empty() {
                propose(fe, self.term, Cmd::DroppBackends { targets: draining }).await;
            }
        }
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        for h in self.running.values() {
            h.abort();
        }
    }
}

/// Propose a command of the master's own work on this FE (never forwarded: a deposed master's
/// proposal fails); a failure is logged, as the next round retries from the state.
/// Propose leader work decided in `term` on this FE (never forwarded), fenced by that term: if
/// leadership was lost and regained since, apply refuses it (`Cmd::Fenced`).
pub(super) async fn propose(fe: &FeNodeHandle, term: u64, cmd: Cmd) -> Option<Reply> {
    let what = format!("{cmd:?}");
    let op = LeaderOp::Write {
        user: None,
        cmd: Cmd::fenced(Term(term), cmd),
    };
    match fe
        .run_as_leader(&op, Instant::now() + Duration::from_secs(5))
        .await
    {
        Ok(LeaderReply::Applied(Response::Ok(r))) => Some(r),
        Ok(other) => {
            tracing::warn!("proposing {what}: {other:?}");
            None
        }
        Err(e) => {
            tracing::warn!("proposing {what} failed: {e}");
            None
        }
    }
}
