//! The reference backend agent (`roster backend`): stores tablet replicas as files with
//! checksums and serves the master's heartbeats and replica calls, and other agents' clones.

pub mod fence;
pub mod service;
pub mod store;

pub use service::{Agent, Faults, Shared};
pub use store::{ReplicaMeta, ReplicaStore, StoreError};
