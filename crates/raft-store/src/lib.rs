//! Roster's Raft storage: the openraft type config, the `Cmd` enum and its one applier, and the
//! redb-backed log store and state machine. The only crate that knows openraft's storage traits.

pub mod applier;
pub mod cmd;
pub mod codec;
pub mod committed;
pub mod events;
pub mod failpoints;
pub mod integrity;
pub mod legacy;
pub mod log_store;
pub mod state_machine;
pub mod stats;
pub mod types;
pub mod version;
pub mod wal;

pub use cmd::{Cmd, Reply, Request, Response};
pub use log_store::LogStore;
pub use state_machine::{AppliedState, StateMachineStore};
pub use types::{FeNode, NodeId, TypeConfig};

/// Roster's Raft: its types with the redb state machine (here, so `types` needs no store).
pub type Raft = openraft::Raft<TypeConfig, StateMachineStore>;

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Set by the test-only `skip-fsync` bug switch (see `skip_fsync`).
static SKIP_FSYNC: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Test-only, for the `skip-fsync` bug switch: every redb commit of this process from now on
/// is `Durability::None`, and the log's entries stay in memory (`wal`). Both are then kept in
/// this process's memory only, so killing the process loses them, as a power failure loses
/// writes never fsynced. Call before `open`.
pub fn skip_fsync() {
    SKIP_FSYNC.store(true, std::sync::atomic::Ordering::Relaxed);
}

pub(crate) fn skipping_fsync() -> bool {
    SKIP_FSYNC.load(std::sync::atomic::Ordering::Relaxed)
}

/// Every write transaction of the log and the state machine starts here: durable (fsynced
/// before `commit` returns) unless the test-only `skip-fsync` switch is on.
fn begin_write(db: &redb::Database) -> std::io::Result<redb::WriteTransaction> {
    let mut w = db.begin_write().map_err(io_err)?;
    if skipping_fsync() {
        w.set_durability(redb::Durability::None).map_err(io_err)?;
    }
    Ok(w)
}

/// Open (or create) the log and state-machine files under `dir`, `log.redb` and `sm.redb`,
/// checking every stored value (a damaged one refuses, naming the file, table and key). Both
/// report later storage failures to one `Fault` (`StateMachineStore::fault`).
pub fn open(dir: &std::path::Path) -> std::io::Result<(LogStore, StateMachineStore)> {
    std::fs::create_dir_all(dir).map_err(|e| integrity::at_file(dir, e))?;
    let fault = integrity::Fault::new();
    let (log_path, sm_path) = (dir.join("log.redb"), dir.join("sm.redb"));
    let log = integrity::guarded(&log_path, || LogStore::open(&log_path, fault.clone()))?;
    let sm = integrity::guarded(&sm_path, || StateMachineStore::open(&sm_path, fault))?;
    sm.gate_on(log.durable_index());
    Ok((log, sm))
}

#[cfg(test)]
mod suite_test;

#[cfg(test)]
mod tests {
    use openraft::storage::{IOFlushed, RaftLogStorage, RaftSnapshotBuilder, RaftStateMachine};
    use openraft::testing::blank_ent;
    use openraft::type_config::TypeConfigExt;
    use std::time::Duration;

    /// A snapshot (which makes every apply before it durable) waits until the log holds the
    /// applied entries on disk: a leader may apply what the other voters made durable before
    /// its own fsync, and a crash must never leave `sm.redb` ahead of `log.redb`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_state_machine_is_never_durable_ahead_of_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, mut sm) = super::open(dir.path()).unwrap();
        let entries: Vec<_> = (1..=3)
            .map(|i| blank_ent::<super::TypeConfig>(1, 1, i))
            .collect();
        sm.apply(futures::stream::iter(
            entries.clone().into_iter().map(|e| Ok((e, None))),
        ))
        .await
        .unwrap();
        let mut builder = sm.clone();
        let mut snapshot = tokio::spawn(async move { builder.build_snapshot().await });
        assert!(
            tokio::time::timeout(Duration::from_millis(300), &mut snapshot)
                .await
                .is_err(),
            "a snapshot was made durable before the log held its entries"
        );
        assert_eq!(sm.durable_commits(), 0);
        let (tx, rx) = super::TypeConfig::oneshot();
        log.append(entries, IOFlushed::signal(tx)).await.unwrap();
        rx.await.unwrap().unwrap();
        tokio::time::timeout(Duration::from_secs(10), snapshot)
            .await
            .expect("the snapshot still waits once the log is durable")
            .unwrap()
            .unwrap();
        assert_eq!(sm.durable_commits(), 1);
    }
}
