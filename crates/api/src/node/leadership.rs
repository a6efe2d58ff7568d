//! Logs this FE's leadership changes, with the term, from Raft's metrics: one INFO line when
//! it becomes the master and one when it stops being it.

use openraft::ServerState;
use openraft::async_runtime::watch::WatchReceiver;
use roster_raft_store::Raft;

/// Runs until Raft shuts down (its metrics channel closes).
pub(crate) async fn log_changes(raft: Raft) {
    let mut rx = raft.metrics();
    drop(raft);
    let mut leading: Option<u64> = None;
    loop {
        let (is_leader, term) = {
            let m = rx.borrow_watched();
            (m.state == ServerState::Leader, m.current_term)
        };
        match (leading, is_leader) {
            (None, true) => {
                tracing::info!(term, "leadership gained: this FE is the master");
                leading = Some(term);
            }
            (Some(was), false) => {
                tracing::info!(
                    term = was,
                    now_term = term,
                    "leadership lost: this FE is no longer the master"
                );
                leading = None;
            }
            (Some(was), true) if was != term => {
                // Re-elected in a later term without an observed gap.
                tracing::info!(
                    term = was,
                    "leadership lost: this FE is no longer the master"
                );
                tracing::info!(term, "leadership gained: this FE is the master");
                leading = Some(term);
            }
            _ => {}
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}
