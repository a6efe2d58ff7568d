//! This FE's leadership by term, from Raft's metrics: published for the leader work
//! (`Some(term)` while this FE is the master of `term`), and logged, one INFO line when it
//! becomes the master and one when it stops being it. The same loop publishes the index of the
//! last applied entry, which wakes the move executor.

use openraft::async_runtime::watch::WatchReceiver;
use roster_membership::FrontendId;
use roster_membership::Term;
use roster_raft_store::Raft;
use tokio::sync::watch;

/// Runs until Raft shuts down (its metrics channels close) or nobody listens any more.
///
/// Why not `raft.metrics()`: Raft sends that channel on every turn of its core loop, changed
/// or not, so a task waiting on it wakes (and often wakes a parked thread) once per batch of
/// writes; at 64 writing clients that was a third of the leader's core-loop CPU. The server
/// metrics change only with the leader, the vote or the membership, and the apply progress
/// only when entries are applied.
pub(crate) async fn follow(
    raft: Raft,
    me: FrontendId,
    out: watch::Sender<Option<Term>>,
    applied: watch::Sender<u64>,
) {
    let mut server = raft.server_metrics();
    let mut apply = raft.watch_apply_progress();
    drop(raft);
    loop {
        let index = apply.get().map_or(0, |l| l.index);
        applied.send_if_modified(|a| std::mem::replace(a, index) != index);
        let (now, now_term) = {
            let m = server.borrow_watched();
            let term = m.vote.leader_id.term;
            ((m.current_leader == Some(me.0)).then_some(Term(term)), term)
        };
        let was = *out.borrow();
        if was != now {
            if let Some(t) = was {
                tracing::info!(
                    term = t.0,
                    now_term,
                    "leadership lost: this FE is no longer the master"
                );
            }
            if let Some(t) = now {
                tracing::info!(term = t.0, "leadership gained: this FE is the master");
            }
            if out.send(now).is_err() {
                return;
            }
        }
        let open = tokio::select! {
            r = server.changed() => r.is_ok(),
            r = apply.changed() => r.is_ok(),
        };
        if !open {
            out.send_replace(None);
            return;
        }
    }
}
