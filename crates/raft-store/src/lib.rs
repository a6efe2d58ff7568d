//! Roster's Raft storage: the openraft type config, the `Cmd` enum and its one applier, and the
//! redb-backed log store and state machine. The only crate that knows openraft's storage traits.

pub mod applier;
pub mod cmd;
pub mod codec;
pub mod log_store;
pub mod state_machine;
pub mod types;

pub use cmd::{Cmd, Reply, Request, Response};
pub use log_store::LogStore;
pub use state_machine::{AppliedState, StateMachineStore};
pub use types::{FeNode, NodeId, Raft, TypeConfig};

/// Open (or create) the log and state-machine files under `dir`: `log.redb` and `sm.redb`.
pub fn open(dir: &std::path::Path) -> std::io::Result<(LogStore, StateMachineStore)> {
    std::fs::create_dir_all(dir)?;
    let log = LogStore::open(&dir.join("log.redb"))?;
    let sm = StateMachineStore::open(&dir.join("sm.redb"))?;
    Ok((log, sm))
}

#[cfg(test)]
mod suite_test;
