//! The wire vocabulary shared by FEs, agents and clients: the generated protobuf types, the
//! statement result with its typed cells, and the meanings carried in gRPC statuses. No I/O.

pub mod cell;
pub mod format;
pub mod result;
pub mod status;

pub use cell::Cell;
pub use result::{QueryResult, SqlType};

/// This build as it names itself on the wire (heartbeats, SHOW FRONTENDS, `--version`).
pub const VERSION: &str = concat!("roster-", env!("CARGO_PKG_VERSION"));

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
    /// The part of etcd's v3 API that `roster bench quorum` drives etcd with (its peer).
    pub mod etcd {
        tonic::include_proto!("etcdserverpb");
    }
}
