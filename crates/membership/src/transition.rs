//! The transitions `(state, command, time) -> result` that apply runs: each validates the
//! whole command first (with `query`) and changes nothing when it refuses.

pub mod blacklist;
pub mod catalog;
pub mod drain;
pub mod liveness;
pub mod moves;
pub mod node_drain;
pub mod registry;
pub mod users;
