//! The plumbing every actor shares: a spawned task with its cancellation token (dropping the
//! handle cancels, `stop` cancels and joins), and the ticker of the actors that run a round per
//! tick.

use std::future::Future;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Interval;
use tokio_util::sync::CancellationToken;

/// A running actor. Dropping it cancels the work without waiting; `stop` also joins.
pub struct Task {
    cancel: CancellationToken,
    handle: Option<JoinHandle<()>>,
}

impl Task {
    /// Spawn `run(cancel)`; the future must end soon after `cancel` fires.
    pub fn spawn<F: Future<Output = ()> + Send + 'static>(
        run: impl FnOnce(CancellationToken) -> F,
    ) -> Task {
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(run(cancel.clone()));
        Task {
            cancel,
            handle: Some(handle),
        }
    }

    /// Cancel the work and wait until it has ended.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// A ticker for an actor that runs a round per `period`: the first tick at once, and a round
/// that overruns is followed by the next at once (missed ticks skipped, never a burst).
pub fn ticker(period: Duration) -> Interval {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tick
}
