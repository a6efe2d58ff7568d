//! Roster's network face: the generated protobuf types, the FE node (propose with forwarding,
//! linearizable reads, frontend membership), the statement executor, the gRPC services, and the
//! client library that finds the leader by itself.

pub mod accept;
pub mod auth;
pub mod bugs;
pub mod cell;
pub mod client;
pub mod cluster_token;
pub mod error;
pub mod executor;
pub mod format;
pub mod limits;
pub mod login_throttle;
pub mod network;
pub mod node;
pub mod raft_guard;
pub mod raft_service;
pub mod ratelog;
pub mod roster_service;
pub mod tls;
pub mod wire;

pub mod pb {
    //! Generated from `proto/`.
    pub mod raft {
        tonic::include_proto!("roster.raft");
    }
    pub mod v1 {
        tonic::include_proto!("roster.v1");
    }
    pub mod backend {
        tonic::include_proto!("roster.backend");
    }
}

pub use client::{Client, ClientConfig, ClientError, TabletRoutes};
pub use error::ApiError;
pub use executor::QueryResult;
pub use node::{FeConfig, FeNodeHandle, RaftTiming};
