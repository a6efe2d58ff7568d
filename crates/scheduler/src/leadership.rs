//! Leader work follows leadership (DESIGN rule 5): for each term this FE leads, one child
//! cancellation token and one `JoinSet` of actors. When the term ends (leadership lost, or a
//! later term began) its token is cancelled and its actors joined before the next term's start,
//! so two terms' actors never run side by side on one FE. Whatever a cancelled actor already
//! sent is fenced by its term at apply (`Cmd::Fenced`).

use crate::cluster::Cluster;
use crate::task::Task;
use roster_membership::Term;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The actors of one term, started by the supervisor: spawn each into `set`; each must end
/// soon after `cancel` fires.
pub trait StartTerm: Send + 'static {
    fn start(&mut self, term: Term, cancel: CancellationToken, set: &mut JoinSet<()>);
}

impl<F: FnMut(Term, CancellationToken, &mut JoinSet<()>) + Send + 'static> StartTerm for F {
    fn start(&mut self, term: Term, cancel: CancellationToken, set: &mut JoinSet<()>) {
        self(term, cancel, set)
    }
}

/// The running supervisor. Dropping it cancels the work without waiting; `stop` also joins.
pub struct LeaderWork(Task);

impl LeaderWork {
    pub fn spawn<C: Cluster>(cluster: C, actors: impl StartTerm) -> LeaderWork {
        LeaderWork(Task::spawn(|cancel| supervise(cluster, actors, cancel)))
    }

    /// Cancel every term's actors and wait until they have ended.
    pub async fn stop(self) {
        self.0.stop().await
    }
}

struct Running {
    term: Term,
    cancel: CancellationToken,
    set: JoinSet<()>,
}

impl Running {
    async fn stop(mut self) {
        self.cancel.cancel();
        while let Some(r) = self.set.join_next().await {
            log_end(self.term, r);
        }
        tracing::info!(term = self.term.0, "leader work of this term stopped");
    }
}

fn log_end(term: Term, r: Result<(), tokio::task::JoinError>) {
    if let Err(e) = r
        && e.is_panic()
    {
        tracing::error!(term = term.0, "a leader actor panicked: {e}");
    }
}

async fn supervise<C: Cluster>(cluster: C, mut actors: impl StartTerm, cancel: CancellationToken) {
    let mut leadership = cluster.leadership();
    let mut running: Option<Running> = None;
    loop {
        let want = *leadership.borrow_and_update();
        if running.as_ref().map(|r| r.term) != want {
            if let Some(r) = running.take() {
                r.stop().await;
            }
            if let Some(term) = want {
                let mut r = Running {
                    term,
                    cancel: cancel.child_token(),
                    set: JoinSet::new(),
                };
                actors.start(term, r.cancel.clone(), &mut r.set);
                tracing::info!(term = term.0, "leader work of this term started");
                running = Some(r);
            }
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            changed = leadership.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            // An actor that ends on its own (it should not) is reaped and reported.
            Some(r) = async {
                match running.as_mut() {
                    Some(r) if !r.set.is_empty() => r.set.join_next().await,
                    _ => std::future::pending().await,
                }
            } => {
                if let Some(term) = running.as_ref().map(|r| r.term) {
                    log_end(term, r);
                }
            }
        }
    }
    if let Some(r) = running.take() {
        r.stop().await;
    }
}

// Under paused tokio time: `cargo test -p roster-scheduler --features paused-time`.
#[cfg(all(test, feature = "paused-time"))]
mod tests {
    use super::*;
    use crate::testkit::FakeCluster;
    use roster_membership::ClusterState;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    type Log = Arc<Mutex<Vec<String>>>;

    /// One actor per term that notes when it starts and when its cancellation ended it.
    fn noting(log: Log) -> impl StartTerm {
        move |term: Term, cancel: CancellationToken, set: &mut JoinSet<()>| {
            let log = log.clone();
            log.lock().unwrap().push(format!("start {term}"));
            set.spawn(async move {
                cancel.cancelled().await;
                // Some work on the way out: the next term must still wait for it.
                tokio::time::sleep(Duration::from_millis(50)).await;
                log.lock().unwrap().push(format!("stop {term}"));
            });
        }
    }

    async fn settle() {
        // Paused time: sleeping lets every ready task run, then advances the clock.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn each_term_is_started_once_and_joined_before_the_next() {
        let cluster = FakeCluster::new(ClusterState::default(), Term(1));
        let log: Log = Arc::default();
        let work = LeaderWork::spawn(cluster.clone(), noting(log.clone()));
        settle().await;
        cluster.leadership.send_replace(None);
        settle().await;
        cluster.leadership.send_replace(Some(Term(2)));
        settle().await;
        // Deposed and re-elected between two looks: term 2's actors end before term 3's start.
        cluster.leadership.send_replace(Some(Term(3)));
        settle().await;
        cluster.leadership.send_replace(Some(Term(3)));
        settle().await;
        work.stop().await;
        assert_eq!(
            log.lock().unwrap().clone(),
            [
                "start 1", "stop 1", "start 2", "stop 2", "start 3", "stop 3"
            ]
        );
    }
}
