//! The openraft type configuration and the frontend node record carried in Raft membership.

use roster_membership::HostPort;
use serde::{Deserialize, Serialize};
use std::fmt;

use crate::cmd::{Request, Response};

pub type NodeId = u64;

/// The largest Raft term Roster stores or accepts. openraft computes a candidate's term as
/// `term + 1`; a term near `u64::MAX` (only ever seen from a forged message) would overflow it
/// and leave the cluster unable to elect for good. No real cluster gets near 2^63 elections.
pub const MAX_TERM: u64 = u64::MAX >> 1;

/// A frontend as recorded in Raft membership: where to reach each of its ports.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FeNode {
    pub host: String,
    pub edit_log_port: u16,
    pub rpc_port: u16,
    pub query_port: u16,
    pub http_port: u16,
}

impl FeNode {
    /// `host:edit_log_port`, how ADD/DROP FOLLOWER name a frontend (Doris).
    pub fn edit_log_addr(&self) -> String {
        HostPort::new(self.host.clone(), self.edit_log_port).to_string()
    }

    pub fn rpc_addr(&self) -> String {
        HostPort::new(self.host.clone(), self.rpc_port).to_string()
    }
}

impl fmt::Display for FeNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.edit_log_addr())
    }
}

openraft::declare_raft_types!(
    /// Roster's Raft types: commands are `Request`s, answers `Response`s, nodes `FeNode`s.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = FeNode,
);

pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, Vec<u8>>;
pub type Membership = openraft::Membership<NodeId, FeNode>;
