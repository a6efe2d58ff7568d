//! This FE's own view of which backends it can reach (SPEC section 5), an actor for the FE's
//! lifetime on every FE, leader or not. Each second it tries a TCP connection to every port of
//! every registered backend (the heartbeat port and the data port it reported). Failing to
//! connect is recorded as this FE's AUTO blacklist entry, through Raft so that it survives
//! restarts and shows on every FE; the same actor removes this FE's AUTO entries once every
//! port answers and the window holds fewer failures than the threshold.
//!
//! Only failing to *connect* counts. A connection that opens is a success however slow the
//! backend is afterwards: a busy or even stopped agent still completes the TCP handshake in its
//! kernel, so slowness never blacklists (StarRocks issue 18835).

use crate::cluster::{Agents, Cluster};
use crate::task::Task;
use roster_membership::{BackendId, FrontendId, HostPort, model, query};
use roster_raft_store::{Cmd, Reply, Response};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often the refresher runs (StarRocks's UpdateBlacklistThread runs each second too).
pub(crate) const ROUND: Duration = Duration::from_secs(1);
/// A connection not established within this is a failure (the SYN was dropped somewhere).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Failures of a backend that already has an entry are written at most this often, so an
/// unreachable backend costs a write per FE every few seconds, not every second.
const FLUSH_EVERY: Duration = Duration::from_secs(5);
/// Bound on a proposal, so a partitioned FE keeps probing.
const SUBMIT_WITHIN: Duration = Duration::from_secs(3);

/// One port to try.
struct Target {
    addr: HostPort,
    what: &'static str,
}

/// Failures seen since they were last written.
#[derive(Default)]
struct Pending {
    count: u32,
    reason: String,
    last_flush: Option<Instant>,
}

/// Probe every port of one backend; `None` when all answered, else what failed.
async fn probe<A: Agents>(agents: &A, targets: &[Target]) -> Option<String> {
    let results = futures::future::join_all(targets.iter().map(|t| async move {
        agents
            .connect(&t.addr, CONNECT_TIMEOUT)
            .await
            .map_err(|e| format!("{} ({}): {e}", t.addr, t.what))
    }))
    .await;
    let failed: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    (!failed.is_empty()).then(|| failed.join("; "))
}

/// Submit one of the refresher's commands; `None` when it may not have been written (retried
/// next round), else whether it changed an entry.
async fn submit<C: Cluster>(cluster: &C, cmd: Cmd) -> Option<bool> {
    match tokio::time::timeout(SUBMIT_WITHIN, cluster.submit(cmd)).await {
        Ok(Ok(Response::Ok(Reply::Changed(ids)))) => Some(!ids.is_empty()),
        Ok(Ok(Response::Ok(_))) => Some(false),
        // Refused: the backend was dropped meanwhile; nothing to retry.
        Ok(Ok(Response::Refused(e))) => {
            tracing::debug!("blacklist update refused: {e}");
            Some(false)
        }
        Ok(Err(e)) => {
            tracing::debug!("blacklist update not written: {e}");
            None
        }
        Err(_) => None,
    }
}

/// The backends to probe this round, and whether the blacklist is switched off (then only
/// this FE's AUTO entries still listed are looked after).
fn targets<C: Cluster>(cluster: &C, me: FrontendId) -> (bool, Vec<(BackendId, Vec<Target>)>) {
    cluster.read(|s| {
        let disabled = s.meta.settings.values().disable_backend_black_list;
        let wanted = |id: BackendId| {
            !disabled
                || s.blacklist
                    .get(&(me, id))
                    .is_some_and(|e| e.kind == model::blacklist::BlacklistKind::Auto)
        };
        let backends = s
            .backends
            .values()
            .filter(|b| wanted(b.id))
            .map(|b| {
                let mut t = vec![Target {
                    addr: b.addr.clone(),
                    what: "heartbeat_port",
                }];
                if let Some(p) = b.liveness.be_port.filter(|p| *p != 0) {
                    t.push(Target {
                        addr: HostPort::new(b.addr.host.clone(), p),
                        what: "be_port",
                    });
                }
                (b.id, t)
            })
            .collect();
        (disabled, backends)
    })
}

async fn round<C: Cluster, A: Agents>(
    cluster: &C,
    agents: &A,
    pending: &mut BTreeMap<BackendId, Pending>,
) {
    let me = cluster.me();
    let (disabled, backends) = targets(cluster, me);
    let registered: std::collections::BTreeSet<_> = backends.iter().map(|(b, _)| *b).collect();
    pending.retain(|id, _| registered.contains(id));
    let results = futures::future::join_all(
        backends
            .iter()
            .map(|(id, targets)| async move { (*id, probe(agents, targets).await) }),
    )
    .await;
    for (id, failure) in results {
        let p = pending.entry(id).or_default();
        let answered = failure.is_none();
        if let Some(reason) = failure
            && !disabled
        {
            p.count = p
                .count
                .saturating_add(1)
                .min(model::blacklist::MAX_HISTORY as u32);
            p.reason = reason;
        }
        let listed = cluster.read(|s| s.blacklist.contains_key(&(me, id)));
        let due = p.last_flush.is_none_or(|t| t.elapsed() >= FLUSH_EVERY);
        if p.count > 0 && (!listed || due || answered) {
            let cmd = Cmd::RecordConnectFailures {
                frontend: me,
                backend: id,
                count: p.count,
                reason: p.reason.clone(),
            };
            if let Some(added) = submit(cluster, cmd).await {
                if added {
                    // The INFO line is the applied event ("blacklist entry added").
                    tracing::debug!(backend = %id, reason = %p.reason, "cannot connect to backend: added to this FE's blacklist (AUTO)");
                }
                *p = Pending {
                    last_flush: Some(Instant::now()),
                    ..Pending::default()
                };
            }
        }
        let now = cluster.now_ms();
        let clearable = cluster.read(|s| query::blacklist::auto_clearable(s, now, me, id));
        if answered && clearable {
            let cmd = Cmd::ClearAutoBlacklist {
                frontend: me,
                backend: id,
            };
            if submit(cluster, cmd).await == Some(true) {
                tracing::debug!(backend = %id, "backend answers on every port: removed from this FE's blacklist (AUTO)");
            }
        }
    }
}

/// Run until `cancel` fires: a round each second (missed ticks skipped).
pub async fn run<C: Cluster, A: Agents>(cluster: C, agents: A, cancel: CancellationToken) {
    let mut pending: BTreeMap<BackendId, Pending> = BTreeMap::new();
    let mut tick = crate::task::ticker(ROUND);
    while cancel.run_until_cancelled(tick.tick()).await.is_some() {
        let round = round(&cluster, &agents, &mut pending);
        if cancel.run_until_cancelled(round).await.is_none() {
            return;
        }
    }
}

/// Start this FE's refresher; dropping the task cancels it.
pub fn spawn<C: Cluster, A: Agents>(cluster: C, agents: A) -> Task {
    Task::spawn(|cancel| run(cluster, agents, cancel))
}

// Under paused tokio time: `cargo test -p roster-scheduler --features paused-time`.
#[cfg(all(test, feature = "paused-time"))]
mod tests {
    use super::*;
    use crate::testkit::{FakeAgents, FakeCluster, alive_backends};
    use model::blacklist::BlacklistKind;
    use roster_membership::{ClusterState, Term, transition};

    const B: BackendId = BackendId(10002);

    fn entry(s: &ClusterState) -> Option<BlacklistKind> {
        s.blacklist.get(&(FrontendId(1), B)).map(|e| e.kind)
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_backend_is_listed_then_cleared_when_it_answers() {
        let agents = FakeAgents::default();
        let (s, addrs) = alive_backends(2, &agents);
        let cluster = FakeCluster::new(s, Term(1));
        let down = agents.up.lock().unwrap().remove(&addrs[1]).unwrap();
        let refresher = spawn(cluster.clone(), agents.clone());
        let secs = Duration::from_secs;
        cluster
            .wait_for(secs(2), |s| entry(s) == Some(BlacklistKind::Auto))
            .await;
        // Still down for four more rounds: written again once per FLUSH_EVERY, not per round.
        let listed_at = Instant::now();
        while listed_at.elapsed() < ROUND * 4 {
            tokio::time::sleep(ROUND).await;
        }
        let writes = cluster.proposed(|c| matches!(c, Cmd::RecordConnectFailures { .. }));
        assert!(
            (1..=2).contains(&writes.len()),
            "one write per flush: {writes:?}"
        );
        // Every FE's own housekeeping: never fenced by a term.
        assert!(
            writes
                .iter()
                .all(|(c, _)| matches!(c, Cmd::RecordConnectFailures { .. }))
        );
        agents.up.lock().unwrap().insert(addrs[1].clone(), down);
        cluster.wait_for(secs(3), |s| entry(s).is_none()).await;
        refresher.stop().await;
        assert!(cluster.read(|s| s.blacklist.is_empty()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_manual_entry_is_left_alone() {
        let agents = FakeAgents::default();
        let (mut s, _) = alive_backends(2, &agents);
        transition::blacklist::add_manual(&mut s, 0, FrontendId(1), &[B]).unwrap();
        let cluster = FakeCluster::new(s, Term(1));
        let refresher = spawn(cluster.clone(), agents.clone());
        tokio::time::sleep(ROUND * 5).await;
        refresher.stop().await;
        assert_eq!(cluster.read(entry), Some(BlacklistKind::Manual));
        assert!(cluster.proposals.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn switched_off_it_adds_nothing() {
        let agents = FakeAgents::default();
        let (s, addrs) = alive_backends(2, &agents);
        let cluster = FakeCluster::new(s, Term(1));
        let off = Cmd::SetConfig {
            pairs: vec![("disable_backend_black_list".into(), "true".into())],
        };
        assert!(matches!(cluster.submit(off).await, Ok(Response::Ok(_))));
        agents.up.lock().unwrap().remove(&addrs[1]);
        let refresher = spawn(cluster.clone(), agents.clone());
        tokio::time::sleep(ROUND * 5).await;
        refresher.stop().await;
        assert_eq!(cluster.read(entry), None);
        assert_eq!(cluster.proposals.lock().unwrap().len(), 1);
    }
}
