//! Messages between FEs that are not Raft's own: forwarded leader operations and node info.
//! Encoded with the versioned codec of raft-store.

use crate::error::ApiError;
use roster_membership::FrontendId;
use roster_raft_store::{Cmd, FeNode, Response};
use serde::{Deserialize, Serialize};

/// What a non-leader FE asks the leader to do on its behalf.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LeaderOp {
    /// `user` is checked against the command's privilege at apply; `None` is the FEs' own work.
    Write { user: Option<String>, cmd: Cmd },
    AddFrontend {
        user: String,
        voter: bool,
        addr: String,
    },
    DropFrontend {
        user: String,
        voter: bool,
        addr: String,
    },
}

/// The leader's answer: `Applied` to a `Write`, `Done` to a frontend change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LeaderReply {
    Applied(Response),
    Done(String),
}

impl LeaderReply {
    /// The answer to a `Write`. The two kinds share one wire message, so a leader answering a
    /// write with `Done` broke the protocol between FEs: said as such, not taken as success.
    pub fn into_applied(self) -> Result<Response, ApiError> {
        match self {
            LeaderReply::Applied(r) => Ok(r),
            LeaderReply::Done(m) => Err(ApiError::Internal(format!(
                "the leader answered a write as a frontend change ({m:?}): FEs of incompatible versions?"
            ))),
        }
    }
}

pub type ForwardResult = Result<LeaderReply, ApiError>;

/// Answer of `NodeInfo`: who this FE is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: FrontendId,
    pub node: FeNode,
    pub cluster_id: String,
    pub name: String,
    pub version: String,
    pub last_applied_index: u64,
    pub start_time_ms: u64,
}
