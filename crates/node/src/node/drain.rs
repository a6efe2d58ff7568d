//! Draining this FE (`roster node drain --frontend`), a switch local to the process as in
//! CockroachDB: a restart un-drains, and nothing is replicated (an FE that is down cannot serve
//! clients anyway). While drained, the client ports refuse new work (`DRAINING_MESSAGE`), the
//! VIP health check fails, and a watcher hands leadership to another follower whenever this FE
//! holds it. The FE keeps voting and replicating: a drain is the precursor of a short stop.

use super::{FeNodeHandle, Inner, frontends};
use std::sync::Weak;
use std::time::{Duration, Instant};

/// How long one hand-over attempt may take before the watcher tries again.
const HANDOVER_ATTEMPT: Duration = Duration::from_secs(3);

impl FeNodeHandle {
    pub fn is_draining(&self) -> bool {
        *self.inner.draining.borrow()
    }

    /// Drain this FE; starts the watcher that keeps leadership away. Harmless when drained.
    pub fn drain(&self) {
        if self.inner.draining.send_replace(true) {
            return;
        }
        tracing::info!(node_id = self.id().0, "frontend draining");
        let weak = std::sync::Arc::downgrade(&self.inner);
        tokio::spawn(keep_leadership_away(weak));
    }

    /// Serve clients again; leadership is not taken back (a later election may bring it).
    pub fn undrain(&self) {
        if self.inner.draining.send_replace(false) {
            tracing::info!(node_id = self.id().0, "frontend no longer draining");
        }
    }

    /// Whether the drain is complete: drained, not the leader, and another leader known.
    pub fn drain_complete(&self) -> bool {
        self.is_draining() && self.leader().is_some_and(|(l, _)| l != self.id())
    }

    /// Wait until the drain is complete or `deadline` passes; returns `drain_complete()`.
    pub async fn wait_drained(&self, deadline: Instant) -> bool {
        let mut rx = self.raft().metrics();
        while !self.drain_complete() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.is_draining() {
                return false;
            }
            use openraft::async_runtime::watch::WatchReceiver;
            if let Ok(Err(_)) = tokio::time::timeout(left, rx.changed()).await {
                return false;
            }
        }
        true
    }
}

/// While drained: whenever this FE leads, hand leadership away (retried, since the chosen
/// follower may lose its election). Leadership comes back only if no other FE can win, which
/// keeps the cluster available. Ends on undrain or when the FE stops.
async fn keep_leadership_away(weak: Weak<Inner>) {
    use openraft::async_runtime::watch::WatchReceiver;
    let mut last_error = String::new();
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let fe = FeNodeHandle { inner };
        let mut drained = fe.inner.draining.subscribe();
        if !*drained.borrow_and_update() {
            return;
        }
        let mut metrics = fe.raft().metrics();
        if fe.leader().map(|(l, _)| l) == Some(fe.id()) {
            let deadline = Instant::now() + HANDOVER_ATTEMPT;
            match frontends::hand_over(&fe, "because this frontend is draining", deadline).await {
                Ok(_) => last_error.clear(),
                Err(e) => {
                    // Once per distinct failure, not once per attempt.
                    let text = e.to_string();
                    if text != last_error {
                        tracing::warn!("draining: leadership not handed over ({text}); retrying");
                        last_error = text;
                    }
                }
            }
        }
        drop(fe);
        tokio::select! {
            r = metrics.changed() => if r.is_err() { return },
            _ = drained.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
