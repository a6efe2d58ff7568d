//! Counters of this process's durable (fsynced) redb commits, per file: what `roster bench
//! quorum` reports as fsyncs per operation, and what the one-fsync-per-batch design is held to.

use std::sync::atomic::{AtomicU64, Ordering};

static LOG: AtomicU64 = AtomicU64::new(0);
static STATE_MACHINE: AtomicU64 = AtomicU64::new(0);

/// Which file a commit went to.
#[derive(Clone, Copy, Debug)]
pub enum File {
    /// `log.redb`
    Log,
    /// `sm.redb`
    StateMachine,
}

/// Durable commits since this process started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DurableCommits {
    pub log: u64,
    pub state_machine: u64,
}

pub fn durable_commits() -> DurableCommits {
    DurableCommits {
        log: LOG.load(Ordering::Relaxed),
        state_machine: STATE_MACHINE.load(Ordering::Relaxed),
    }
}

/// Count one commit of `file` that was durable (not under the `skip-fsync` switch), in the
/// process's total and in the store's own `count` (which tests read).
pub(crate) fn durable_commit(file: File, count: &AtomicU64) {
    if crate::skipping_fsync() {
        return;
    }
    count.fetch_add(1, Ordering::Relaxed);
    match file {
        File::Log => LOG.fetch_add(1, Ordering::Relaxed),
        File::StateMachine => STATE_MACHINE.fetch_add(1, Ordering::Relaxed),
    };
}
