//! Read-index rounds shared by concurrent linearizable reads: a read joins the first round that
//! starts after it arrived, so N reads in flight cost one round trip to the leader (and one
//! leadership check there) instead of N. A round already running when a read arrives may have
//! been answered by the leader before the read began, so its index is never reused for it.

use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// Rounds of one kind; `T` is a round's answer, handed to every read that waited for it.
pub(crate) struct Rounds<T> {
    state: Mutex<State<T>>,
}

struct State<T> {
    /// A driver task is running rounds.
    running: bool,
    /// Reads waiting for the next round to start.
    waiting: Vec<oneshot::Sender<T>>,
}

impl<T: Clone + Send + 'static> Rounds<T> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Rounds {
            state: Mutex::new(State {
                running: false,
                waiting: Vec::new(),
            }),
        })
    }

    /// The answer of a round that starts after this call. `round` is what one round does; the
    /// first read to find no driver starts one with it, which runs rounds until none waits.
    /// `None` when the driver went away (the runtime is shutting down).
    pub(crate) async fn join<F, Fut>(self: &Arc<Self>, round: F) -> Option<T>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send,
    {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut s = self.state.lock().expect("read rounds lock poisoned");
            s.waiting.push(tx);
            !std::mem::replace(&mut s.running, true)
        };
        if start {
            let this = self.clone();
            tokio::spawn(async move { this.drive(round).await });
        }
        rx.await.ok()
    }

    async fn drive<F, Fut>(self: Arc<Self>, round: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = T>,
    {
        loop {
            let batch = {
                let mut s = self.state.lock().expect("read rounds lock poisoned");
                if s.waiting.is_empty() {
                    s.running = false;
                    return;
                }
                std::mem::take(&mut s.waiting)
            };
            let answer = round().await;
            for tx in batch {
                let _ = tx.send(answer.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::sync::Notify;

    /// Reads arriving while a round runs share the next one; none gets an answer from a round
    /// that started before it arrived.
    #[tokio::test]
    async fn reads_share_the_next_round_never_an_earlier_one() {
        let rounds = Rounds::<u64>::new();
        let started = Arc::new(AtomicU64::new(0));
        let release = Arc::new(Notify::new());
        let round = {
            let (started, release) = (started.clone(), release.clone());
            move || {
                let (started, release) = (started.clone(), release.clone());
                async move {
                    // The answer is the number of the round: 1, 2, ...
                    let n = started.fetch_add(1, Ordering::SeqCst) + 1;
                    release.notified().await;
                    n
                }
            }
        };
        let first = tokio::spawn({
            let (rounds, round) = (rounds.clone(), round.clone());
            async move { rounds.join(round).await }
        });
        while started.load(Ordering::SeqCst) < 1 {
            tokio::task::yield_now().await;
        }
        // Round 1 is running: these five arrive after it started.
        let later: Vec<_> = (0..5)
            .map(|_| {
                let (rounds, round) = (rounds.clone(), round.clone());
                tokio::spawn(async move { rounds.join(round).await })
            })
            .collect();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        release.notify_one();
        assert_eq!(first.await.unwrap(), Some(1));
        while started.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        release.notify_one();
        for r in later {
            assert_eq!(r.await.unwrap(), Some(2), "answered by an earlier round");
        }
        assert_eq!(started.load(Ordering::SeqCst), 2, "one round for the five");
        // Idle again: the next read starts a round of its own.
        let next = tokio::spawn({
            let rounds = rounds.clone();
            async move { rounds.join(round).await }
        });
        while started.load(Ordering::SeqCst) < 3 {
            tokio::task::yield_now().await;
        }
        release.notify_one();
        assert_eq!(next.await.unwrap(), Some(3));
    }
}
