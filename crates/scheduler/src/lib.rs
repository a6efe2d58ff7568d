//! Leader-only decisions as pure functions of state and time: which backend liveness changes
//! to record after a heartbeat round, and which replicas the tablet scheduler moves.
//! The loops that run them live with the FE node; nothing here does I/O.

pub mod liveness;
pub mod planner;
