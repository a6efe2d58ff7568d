//! The records of the replicated state, with what each record says about itself; no module
//! here reads or changes a `ClusterState` beyond its own fields.

pub mod backend;
pub mod blacklist;
pub mod catalog;
pub mod error;
pub mod ids;
pub mod liveness;
pub mod moves;
pub mod settings;
pub mod state;
pub mod tablets;
pub mod tracked;
pub mod users;
