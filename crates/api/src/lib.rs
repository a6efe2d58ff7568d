//! The FE node and its services: propose with forwarding, linearizable reads, frontend
//! membership, the statement executor, the gRPC services. (Being split into `node` and
//! `frontend` crates; the protocol, the transport and the client library have their own.)

pub mod auth;
pub mod bugs;
pub mod error;
pub mod executor;
pub mod limits;
pub mod login_throttle;
pub mod network;
pub mod node;
pub mod raft_guard;
pub mod raft_service;
pub mod roster_service;
pub mod wire;

pub use error::ApiError;
pub use node::{FeConfig, FeNodeHandle, RaftTiming};
