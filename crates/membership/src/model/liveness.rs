//! What the master observed of a backend's heartbeats. Heartbeats themselves are soft state in
//! the master's memory; only what changes (alive/dead, a restart, ports, capacity) and an
//! occasional LastHeartbeat refresh are recorded, so every FE shows the same Alive.

use crate::model::ids::BackendId;
use serde::{Deserialize, Serialize};

/// What a successful heartbeat told the master.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatInfo {
    pub be_port: u16,
    pub http_port: u16,
    pub brpc_port: u16,
    pub version: String,
    pub start_time_ms: u64,
    pub total_capacity_bytes: u64,
    pub avail_capacity_bytes: u64,
    pub data_used_capacity_bytes: u64,
}

/// One backend's liveness as the master decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LivenessReport {
    pub id: BackendId,
    pub alive: bool,
    /// Time of the last successful heartbeat, if any.
    pub last_heartbeat_ms: Option<u64>,
    pub failure_counter: u64,
    pub err_msg: String,
    /// From the last successful heartbeat.
    pub info: Option<HeartbeatInfo>,
}
