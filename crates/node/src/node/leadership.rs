//! This FE's leadership by term, from Raft's metrics: published for the leader work
//! (`Some(term)` while this FE is the master of `term`), and logged, one INFO line when it
//! becomes the master and one when it stops being it. The same loop publishes the index of the
//! last applied entry, which wakes the move executor.

use openraft::async_runtime::watch::WatchReceiver;
use roster_membership::FrontendId;
use roster_membership::Term;
use roster_raft_store::Raft;
use tokio::sync::watch;

/// Runs until Raft shuts down (its metrics channel closes) or nobody listens any more.
pub(crate) async fn follow(
    raft: Raft,
    me: FrontendId,
    out: watch::Sender<Option<Term>>,
    applied: watch::Sender<u64>,
) {
    let mut rx = raft.metrics();
    drop(raft);
    loop {
        let (now, now_term) = {
            let m = rx.borrow_watched();
            let index = m.last_applied.map_or(0, |l| l.index);
            applied.send_if_modified(|a| std::mem::replace(a, index) != index);
            let term = m.current_term;
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
        if rx.changed().await.is_err() {
            out.send_replace(None);
            return;
        }
    }
}
