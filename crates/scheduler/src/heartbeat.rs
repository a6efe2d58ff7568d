//! The master's heartbeat actor, one per term: every `heartbeat_interval_second` it heartbeats
//! every registered backend (dead ones too), keeps what it saw as soft state of its term
//! (`liveness::Tracker`), and proposes only the changes, fenced by its term, on this FE alone:
//! a deposed master cannot mark anything dead.

use crate::cluster::{Agents, Cluster, Fence, propose};
use crate::liveness::Tracker;
use roster_membership::{BackendId, HostPort, Term};
use roster_raft_store::Cmd;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// No heartbeat waits longer than this, whatever the interval.
const MAX_TIMEOUT: Duration = Duration::from_secs(2);

/// What one round needs from the state.
struct Round {
    interval: Duration,
    tolerance: u64,
    backends: Vec<(BackendId, HostPort)>,
    fence: Fence,
}

fn plan_round<C: Cluster>(cluster: &C, term: Term) -> Round {
    cluster.read(|s| {
        let settings = &s.meta.settings;
        Round {
            interval: Duration::from_secs(settings.values().heartbeat_interval_second.max(1)),
            tolerance: settings
                .values()
                .max_backend_heartbeat_failure_tolerance_count,
            backends: s
                .backends
                .values()
                .map(|b| (b.id, b.addr.clone()))
                .collect(),
            fence: Fence {
                term,
                backends: s
                    .backends
                    .values()
                    .map(|b| b.data_addr().to_string())
                    .collect(),
            },
        }
    })
}

/// Run until `cancel` fires: the first round at once, then one per interval (a round that
/// overruns its interval is followed by the next at once, never by a burst).
pub async fn run<C: Cluster, A: Agents>(
    cluster: C,
    agents: A,
    term: Term,
    cancel: CancellationToken,
) {
    let mut tracker = Tracker::default();
    loop {
        let round = plan_round(&cluster, term);
        let next = Instant::now() + round.interval;
        let timeout = round.interval.min(MAX_TIMEOUT);
        let calls = futures::future::join_all(round.backends.iter().map(|(id, addr)| {
            let agents = &agents;
            let fence = &round.fence;
            async move { (*id, agents.heartbeat(addr, fence, timeout).await) }
        }));
        let results = tokio::select! {
            () = cancel.cancelled() => return,
            r = calls => r,
        };
        let now = cluster.now_ms();
        for (id, r) in results {
            tracker.observe(id, now, r);
        }
        // A set, not a scan of the round per tracked backend: O(backends) at 5,000 backends.
        let registered: std::collections::BTreeSet<_> =
            round.backends.iter().map(|(b, _)| *b).collect();
        tracker.retain(|id| registered.contains(id));
        let reports = cluster.read(|s| tracker.changes(s.backends.values(), round.tolerance));
        if !reports.is_empty() {
            // Cancelled meanwhile, the proposal may still commit: its fence decides.
            let cmd = Cmd::RecordLiveness { reports };
            if cancel
                .run_until_cancelled(propose(&cluster, term, cmd))
                .await
                .is_none()
            {
                return;
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep_until(next) => {}
        }
    }
}

// Under paused tokio time: `cargo test -p roster-scheduler --features paused-time`.
#[cfg(all(test, feature = "paused-time"))]
mod tests {
    use super::*;
    use crate::testkit::{FakeAgents, FakeCluster};
    use roster_membership::model::liveness::HeartbeatInfo;
    use roster_membership::{ClusterState, DomainError, transition};
    use roster_raft_store::Response;

    const A: (&str, u16) = ("127.0.9.1", 9050);
    const B: (&str, u16) = ("127.0.9.2", 9050);

    fn addr((h, p): (&str, u16)) -> HostPort {
        HostPort::new(h, p)
    }

    /// Backends A (10001) and B (10002), neither alive yet.
    fn two_backends() -> ClusterState {
        let mut s = ClusterState::default();
        transition::registry::add_backends(&mut s, 0, &[addr(A), addr(B)], &[]).unwrap();
        s
    }

    fn alive(s: &ClusterState, id: u64) -> bool {
        s.backends.get(&BackendId(id)).unwrap().liveness.alive
    }

    fn up(agents: &FakeAgents, a: (&str, u16)) {
        agents
            .up
            .lock()
            .unwrap()
            .insert(addr(a), HeartbeatInfo::default());
    }

    #[tokio::test(start_paused = true)]
    async fn records_deaths_and_recoveries_fenced_by_its_term() {
        let cluster = FakeCluster::new(two_backends(), Term(1));
        let agents = FakeAgents::default();
        up(&agents, A);
        up(&agents, B);
        let cancel = CancellationToken::new();
        let actor = tokio::spawn(run(
            cluster.clone(),
            agents.clone(),
            Term(1),
            cancel.clone(),
        ));
        let secs = Duration::from_secs;
        cluster
            .wait_for(secs(1), |s| alive(s, 10001) && alive(s, 10002))
            .await;
        agents.up.lock().unwrap().remove(&addr(B));
        // Tolerance 1, interval 5 s: dead at the next round.
        cluster.wait_for(secs(6), |s| !alive(s, 10002)).await;
        assert!(cluster.read(|s| alive(s, 10001)));
        up(&agents, B);
        cluster.wait_for(secs(6), |s| alive(s, 10002)).await;
        cancel.cancel();
        actor.await.unwrap();
        let proposals = cluster.proposals.lock().unwrap().clone();
        assert_eq!(
            proposals.len(),
            3,
            "only changes are proposed: {proposals:?}"
        );
        for (cmd, resp) in proposals {
            assert!(matches!(cmd, Cmd::Fenced { term: Term(1), .. }), "{cmd:?}");
            assert!(matches!(resp, Response::Ok(_)), "{resp:?}");
        }
        let fences = agents.seen.lock().unwrap().clone();
        assert!(
            fences
                .iter()
                .all(|f| f.term == Term(1) && f.backends.len() == 2)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_round_from_a_lost_term_is_refused_at_apply() {
        let cluster = FakeCluster::new(two_backends(), Term(3));
        let agents = FakeAgents::default();
        up(&agents, A);
        up(&agents, B);
        agents.open.send_replace(false);
        let cancel = CancellationToken::new();
        let actor = tokio::spawn(run(
            cluster.clone(),
            agents.clone(),
            Term(3),
            cancel.clone(),
        ));
        agents.wait_calls(2).await;
        // While the term-3 round is in flight, this FE loses leadership and wins term 5: its
        // entries now land in term 5, and the round's verdicts arrive late.
        *cluster.entry_term.lock().unwrap() = Term(5);
        agents.open.send_replace(true);
        cluster.wait_proposals(1, Duration::from_secs(1)).await;
        cancel.cancel();
        actor.await.unwrap();
        let (_, resp) = cluster.proposals.lock().unwrap()[0].clone();
        assert_eq!(
            resp,
            Response::Refused(DomainError::StaleTerm {
                decided: Term(3),
                entry: Term(5)
            })
        );
        assert!(cluster.read(|s| !alive(s, 10001) && !alive(s, 10002)));
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_mid_round_it_ends_without_proposing() {
        let cluster = FakeCluster::new(two_backends(), Term(2));
        let agents = FakeAgents::default();
        up(&agents, A);
        agents.open.send_replace(false);
        let cancel = CancellationToken::new();
        let actor = tokio::spawn(run(
            cluster.clone(),
            agents.clone(),
            Term(2),
            cancel.clone(),
        ));
        agents.wait_calls(2).await;
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(1), actor)
            .await
            .expect("ends at once")
            .unwrap();
        assert!(cluster.proposals.lock().unwrap().is_empty());
    }
}
