//! The master's move executor and tablet scheduler, one actor per term. Each round it records
//! the outcome of finished clones (FinishMove / AbortMove), plans new moves with the pure
//! planner and proposes them, finishes drained decommissions, aborts moves past their deadline,
//! and asks destination agents to pull the replicas of moves that have no clone running. Moves
//! live in the replicated state, so a new master resumes them; the clone calls in flight are
//! soft state of this term only, in a `JoinSet` that ends with the actor.
//!
//! A round runs on its tick, when a clone ends, and when this FE applies a new entry (a
//! DECOMMISSION, a finished move), so the next move starts without waiting for the tick.

use crate::cluster::{Agents, CloneError, CloneOrder, Cluster, Held, propose};
use crate::planner;
use roster_membership::model::moves::Move;
use roster_membership::{
    BackendId, BackendMembership, BackendRef, HostPort, MoveId, TableId, Term, query,
};
use roster_raft_store::{Cmd, Reply};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long to wait before asking again for a clone that another master's clone still runs,
/// or that the destination's fence refused.
const RECHECK: Duration = Duration::from_secs(1);
/// After a plan the applier refused whole, how long before planning again.
const REPLAN: Duration = Duration::from_millis(500);

/// Test-only switches for the Jepsen twins, set by the FE at start.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quirks {
    /// The bug `decommission-no-rf-check`: drop a draining backend at once, replicas and all,
    /// without waiting for them to be copied elsewhere.
    pub drop_draining_at_once: bool,
}

type Outcome = (MoveId, Result<Held, CloneError>);

/// Soft state of one term of leadership.
struct Mover<C, A> {
    cluster: C,
    agents: A,
    term: Term,
    quirks: Quirks,
    /// The clone calls in flight; each ends with its move's outcome. Dropping the set (the
    /// term ended) aborts them.
    clones: JoinSet<Outcome>,
    running: BTreeMap<MoveId, AbortHandle>,
    /// Outcomes received while waiting, recorded by the next round.
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

/// What one round's drive step needs from the state.
struct Snapshot {
    moves: Vec<(Move, TableId)>,
    rate_limit_bytes_per_sec: u64,
    /// Per backend: its agent's address and the data address clones pull from.
    addrs: BTreeMap<BackendId, (HostPort, HostPort)>,
}

impl<C: Cluster, A: Agents> Mover<C, A> {
    fn new(cluster: C, agents: A, term: Term, quirks: Quirks) -> Self {
        Mover {
            cluster,
            agents,
            term,
            quirks,
            clones: JoinSet::new(),
            running: BTreeMap::new(),
            pending: Vec::new(),
            recheck_at: BTreeMap::new(),
            refused: BTreeMap::new(),
            plan_after: Instant::now(),
        }
    }

    async fn round(&mut self) {
        self.collect().await;
        self.plan().await;
        self.drive().await;
    }

    /// Record what finished clones returned.
    async fn collect(&mut self) {
        while let Some(Ok(o)) = self.clones.try_join_next() {
            self.pending.push(o);
        }
        for (id, result) in std::mem::take(&mut self.pending) {
            self.running.remove(&id);
            let cmd = match result {
                Ok(h) => Cmd::FinishMove {
                    id,
                    bytes: h.bytes,
                    checksum: h.checksum,
                },
                Err(CloneError::Busy(_)) => {
                    self.recheck_at.insert(id, Instant::now() + RECHECK);
                    continue;
                }
                // The destination has not yet heard this term's heartbeat naming the source
                // (a restarted agent, a backend just added), or this master is deposed. Ask
                // again; the move's deadline bounds the wait.
                Err(CloneError::Fenced(why)) => {
                    tracing::warn!(move_id = %id, "clone refused by its destination: {why}");
                    self.recheck_at.insert(id, Instant::now() + RECHECK);
                    self.refused.insert(id, why);
                    continue;
                }
                Err(CloneError::Failed(reason)) => Cmd::AbortMove { id, reason },
            };
            propose(&self.cluster, self.term, cmd).await;
        }
    }

    /// Plan new moves and finish drained decommissions.
    async fn plan(&mut self) {
        let now = self.cluster.now_ms();
        // `disable_tablet_scheduler` pauses completions too: they are the scheduler's work.
        let (plans, finished) = self.cluster.read(|s| {
            (
                planner::plan(s, now),
                !s.meta.settings.values().disable_tablet_scheduler
                    && !query::drain::ready_to_finish(s).is_empty(),
            )
        });
        if !plans.is_empty() && Instant::now() >= self.plan_after {
            let n = plans.len();
            if let Some(Reply::Moves(started)) =
                propose(&self.cluster, self.term, Cmd::StartMoves { moves: plans }).await
                && started.is_empty()
            {
                tracing::warn!(
                    "the applier refused all {n} planned moves; planning again in a moment"
                );
                self.plan_after = Instant::now() + REPLAN;
            }
        }
        if finished {
            propose(&self.cluster, self.term, Cmd::FinishDecommissions).await;
        }
        if self.quirks.drop_draining_at_once {
            let draining: Vec<_> = self.cluster.read(|s| {
                s.backends
                    .values()
                    .filter(|b| b.membership == BackendMembership::Decommissioning)
                    .map(|b| BackendRef::Id(b.id))
                    .collect()
            });
            if !draining.is_empty() {
                let cmd = Cmd::DroppBackends { targets: draining };
                propose(&self.cluster, self.term, cmd).await;
            }
        }
    }

    fn snapshot(&self) -> Snapshot {
        self.cluster.read(|s| {
            let tables: BTreeMap<_, _> = s.tablets.values().map(|t| (t.id, t.table)).collect();
            Snapshot {
                moves: s
                    .moves
                    .values()
                    .map(|m| (m.clone(), tables.get(&m.plan.tablet).copied()))
                    .map(|(m, t)| (m, t.unwrap_or(TableId(0))))
                    .collect(),
                rate_limit_bytes_per_sec: s.meta.settings.values().clone_rate_limit_bytes_per_sec,
                // The same data address the heartbeats name to agents as clone sources.
                addrs: s
                    .backends
                    .values()
                    .map(|b| (b.id, (b.addr.clone(), b.data_addr())))
                    .collect(),
            }
        })
    }

    /// Abort moves past their deadline; start clones for moves without one.
    async fn drive(&mut self) {
        let now = self.cluster.now_ms();
        let snap = self.snapshot();
        let live = |id: &MoveId| snap.moves.iter().any(|(m, _)| m.id == *id);
        self.running.retain(|id, h| {
            live(id) || {
                h.abort();
                false
            }
        });
        self.recheck_at.retain(|id, _| live(id));
        self.refused.retain(|id, _| live(id));
        for (m, table) in &snap.moves {
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
                let cmd = Cmd::AbortMove { id: m.id, reason };
                propose(&self.cluster, self.term, cmd).await;
                continue;
            }
            let waiting = self
                .recheck_at
                .get(&m.id)
                .is_some_and(|t| Instant::now() < *t);
            if self.running.contains_key(&m.id) || waiting {
                continue;
            }
            let (Some((dest, _)), Some((_, source))) =
                (snap.addrs.get(&m.plan.dest), snap.addrs.get(&m.plan.source))
            else {
                continue; // a backend was dropped: the applier already aborted the move
            };
            let order = CloneOrder {
                tablet: m.plan.tablet,
                table: *table,
                source: source.clone(),
                expected_bytes: m.bytes,
                expected_checksum: m.checksum,
                rate_limit_bytes_per_sec: snap.rate_limit_bytes_per_sec,
                term: self.term,
            };
            let left = Duration::from_millis(m.deadline_ms() - now);
            let (agents, dest, id) = (self.agents.clone(), dest.clone(), m.id);
            let task = self.clones.spawn(async move {
                let result =
                    match tokio::time::timeout(left, agents.clone_replica(&dest, &order, left))
                        .await
                    {
                        Ok(r) => r,
                        Err(_) => Err(CloneError::Failed("clone timed out".into())),
                    };
                (id, result)
            });
            tracing::info!(
                move_id = %m.id, tablet = %m.plan.tablet, source = %m.plan.source,
                dest = %m.plan.dest, reason = m.plan.reason.as_str(), bytes = m.bytes,
                "clone started"
            );
            self.running.insert(m.id, task);
        }
    }

    /// Wait until a clone ends (cancel-safe: the outcome is kept for the next round). An
    /// aborted clone's end is not an outcome: its move was aborted or finished meanwhile.
    async fn wait_outcome(&mut self) {
        loop {
            match self.clones.join_next().await {
                Some(Ok(o)) => return self.pending.push(o),
                Some(Err(_)) => continue,
                None => return std::future::pending().await,
            }
        }
    }
}

/// Run until `cancel` fires; the clones in flight end with it.
pub async fn run<C: Cluster, A: Agents>(
    cluster: C,
    agents: A,
    term: Term,
    quirks: Quirks,
    cancel: CancellationToken,
) {
    let mut applied = cluster.applied();
    let mut mover = Mover::new(cluster, agents, term, quirks);
    let mut tick = crate::task::ticker(crate::reconciler::ROUND);
    let mut quiet_until = Instant::now();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
            () = mover.wait_outcome() => {}
            r = async {
                tokio::time::sleep_until(quiet_until).await;
                applied.changed().await
            } => if r.is_err() {
                // The FE is going away; its cancellation follows.
                return cancel.cancelled().await;
            },
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = mover.round() => {}
        }
        quiet_until = Instant::now() + APPLIED_QUIET;
    }
}

/// After a round, entries applied within this long wake the mover only once it is over, all
/// together. A round per applied entry was a wake-up of the leader's main runtime per write
/// and a plan over every tablet each time; the mover's own entries need no wake (a round
/// awaits their apply and plans on what they changed), and others (a DECOMMISSION, a
/// backend's liveness) wait at most this long.
const APPLIED_QUIET: Duration = Duration::from_millis(20);

// Under paused tokio time: `cargo test -p roster-scheduler --features paused-time`.
#[cfg(all(test, feature = "paused-time"))]
mod tests {
    use super::*;
    use crate::testkit::{FakeAgents, FakeCluster, alive_backends, create_table, settle};
    use roster_membership::model::catalog::ReplicaState;
    use roster_membership::{ClusterState, DomainError, transition};
    use roster_raft_store::Response;

    const DRAINED: BackendId = BackendId(10001);

    /// Four backends, a table of 3 tablets x 3 replicas settled on the agents, and this FE
    /// leading `term`.
    fn cluster(term: Term) -> (FakeCluster, FakeAgents) {
        let agents = FakeAgents::default();
        let (mut s, _) = alive_backends(4, &agents);
        create_table(&mut s, "t", 3, 3, 0);
        settle(&mut s, &agents, 1000);
        (FakeCluster::new(s, term), agents)
    }

    fn decommission(cluster: &FakeCluster, id: BackendId) {
        cluster.change(|s| {
            transition::registry::decommission(s, 0, &[BackendRef::Id(id)]).unwrap();
        });
    }

    fn start(cluster: &FakeCluster, agents: &FakeAgents, term: Term) -> CancellationToken {
        let cancel = CancellationToken::new();
        let (c, a, q) = (cluster.clone(), agents.clone(), Quirks::default());
        tokio::spawn(run(c, a, term, q, cancel.clone()));
        cancel
    }

    /// Every tablet has 3 NORMAL replicas, none on `id`.
    fn drained(s: &ClusterState, id: BackendId) -> bool {
        s.tablets.values().all(|t| {
            t.replicas.len() == 3
                && t.replicas.iter().all(|r| r.state == ReplicaState::Normal)
                && t.replicas.iter().all(|r| r.backend != id)
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_decommission_is_drained_by_clones_then_finished() {
        let (cluster, agents) = cluster(Term(1));
        let on_drained = cluster.read(|s| {
            s.tablets
                .values()
                .filter(|t| t.replicas.iter().any(|r| r.backend == DRAINED))
                .count()
        });
        assert!(on_drained > 0);
        decommission(&cluster, DRAINED);
        let cancel = start(&cluster, &agents, Term(1));
        cluster
            .wait_for(Duration::from_secs(10), |s| {
                drained(s, DRAINED) && !s.backends.contains_key(&DRAINED)
            })
            .await;
        cancel.cancel();
        let clones = agents.clones.lock().unwrap().clone();
        assert_eq!(
            clones.len(),
            on_drained,
            "one clone per replica: {clones:?}"
        );
        for (_, order) in &clones {
            assert_eq!(order.term, Term(1));
            assert_eq!(order.expected_checksum, Some(order.tablet.0 as u32));
        }
        for (cmd, resp) in cluster.proposals.lock().unwrap().iter() {
            assert!(matches!(cmd, Cmd::Fenced { term: Term(1), .. }), "{cmd:?}");
            assert!(matches!(resp, Response::Ok(_)), "{cmd:?}: {resp:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_applied_entry_wakes_it_before_the_tick() {
        let (cluster, agents) = cluster(Term(1));
        let cancel = start(&cluster, &agents, Term(1));
        // Past the first round, which found nothing to do.
        tokio::time::sleep(ROUND_PROBE).await;
        assert!(cluster.proposals.lock().unwrap().is_empty());
        let at = Instant::now();
        decommission(&cluster, DRAINED);
        cluster.wait_proposals(1, Duration::from_secs(2)).await;
        assert!(
            at.elapsed() < ROUND_PROBE,
            "woken by its tick, not by the entry: {:?}",
            at.elapsed()
        );
        cancel.cancel();
        let (cmd, _) = cluster.proposals.lock().unwrap()[0].clone();
        assert!(matches!(cmd.unfenced(), Cmd::StartMoves { .. }), "{cmd:?}");
    }

    /// Shorter than the tick.
    const ROUND_PROBE: Duration = Duration::from_millis(100);

    #[tokio::test(start_paused = true)]
    async fn a_fenced_clone_is_asked_again_and_a_failed_one_aborted() {
        let (cluster, agents) = cluster(Term(1));
        agents.clone_errors.lock().unwrap().extend([
            CloneError::Fenced("no heartbeat of term 1 yet".into()),
            CloneError::Failed("source gone".into()),
        ]);
        decommission(&cluster, DRAINED);
        let cancel = start(&cluster, &agents, Term(1));
        cluster
            .wait_for(Duration::from_secs(20), |s| {
                drained(s, DRAINED) && !s.backends.contains_key(&DRAINED)
            })
            .await;
        cancel.cancel();
        let aborts = cluster.proposed(|c| matches!(c, Cmd::AbortMove { .. }));
        assert_eq!(aborts.len(), 1, "only the failed clone aborts: {aborts:?}");
        assert!(format!("{:?}", aborts[0].0).contains("source gone"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_clone_finished_after_leadership_moved_on_is_refused_at_apply() {
        let (cluster, agents) = cluster(Term(3));
        agents.clones_open.send_replace(false);
        decommission(&cluster, DRAINED);
        let cancel = start(&cluster, &agents, Term(3));
        let mut copied = agents.copied.subscribe();
        cluster.wait_proposals(1, Duration::from_secs(2)).await; // StartMoves, in term 3
        while agents.clones.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // This FE loses leadership and wins term 5 while the clone is in flight.
        *cluster.entry_term.lock().unwrap() = Term(5);
        agents.clones_open.send_replace(true);
        copied.wait_for(|c| *c >= 1).await.unwrap();
        let finish = |c: &Cmd| matches!(c, Cmd::FinishMove { .. });
        while cluster.proposed(finish).is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        cancel.cancel();
        let (_, resp) = cluster.proposed(finish)[0].clone();
        assert_eq!(
            resp,
            Response::Refused(DomainError::StaleTerm {
                decided: Term(3),
                entry: Term(5)
            })
        );
        assert!(cluster.read(|s| !s.moves.is_empty() && !drained(s, DRAINED)));
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_it_ends_at_once_and_its_clones_with_it() {
        let (cluster, agents) = cluster(Term(2));
        agents.clones_open.send_replace(false);
        decommission(&cluster, DRAINED);
        let cancel = CancellationToken::new();
        let (c, a, q) = (cluster.clone(), agents.clone(), Quirks::default());
        let actor = tokio::spawn(run(c, a, Term(2), q, cancel.clone()));
        while agents.clones.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(1), actor)
            .await
            .expect("ends at once")
            .unwrap();
        agents.clones_open.send_replace(true);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            *agents.copied.borrow(),
            0,
            "the clone ran on after its term"
        );
    }
}
