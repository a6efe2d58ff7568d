//! The runtime Raft runs on: one worker thread of its own for openraft's core loop, its
//! replication streams and state-machine worker, the Raft port's server and the channels to
//! the peers. The client ports, SQL, the leader's scheduler and everything else stay on the
//! process's main runtime.
//!
//! Why: a write hops between several tasks (core, replication, the h2 connections, the
//! log's flush callback). On a runtime of several workers, a hop that leaves more than one
//! task ready wakes a sibling worker: a futex round trip, on this kind of VM dearer than the
//! work itself. perf sched at one writing client counted about 4 such wake-ups per write on
//! each FE; with Raft on a thread of its own they are gone, and `roster bench quorum` went
//! from 1.44x etcd to 1.70-1.78x at 64 clients (CPU per write 108 -> 84-94 µs) and from
//! 1.50x to 1.56-1.61x at 256 (BENCHMARKS.md).
//!
//! The price: nothing on this runtime may block or compute for long, since the same thread
//! sends the heartbeats. Disk work goes to the blocking pool (`spawn_blocking`) or the log's
//! writer thread, as before; an apply is in memory.

use crate::error::ApiError;

pub(super) struct RaftRuntime(Option<tokio::runtime::Runtime>);

impl RaftRuntime {
    pub(super) fn new() -> Result<Self, ApiError> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("raft-rt")
            .enable_all()
            .build()
            .map(|rt| Self(Some(rt)))
            .map_err(|e| ApiError::Internal(format!("starting Raft's runtime: {e}")))
    }

    pub(super) fn handle(&self) -> &tokio::runtime::Handle {
        self.0
            .as_ref()
            .expect("the runtime lives until drop")
            .handle()
    }
}

impl Drop for RaftRuntime {
    fn drop(&mut self) {
        // Dropped from async code, where waiting is not allowed: its tasks are let go (Raft
        // was shut down before, or the process is ending).
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}
