//! The FE node: its config, the write path (propose, forwarded to the leader), the read path
//! (read index), frontend membership, peers and the Raft network and service, authentication
//! against the replicated users, and the one place that maps errors to the wire. The statement
//! pipeline and the front doors are `roster-frontend`'s; leader work is `roster-scheduler`'s.

pub mod auth;
pub mod bugs;
pub mod error;
pub mod limits;
pub mod login_throttle;
pub mod network;
pub mod node;
pub mod raft_guard;
pub mod raft_service;
pub mod wire;

pub use error::ApiError;
pub use node::{FeConfig, FeNodeHandle, RaftTiming, RaftView};
