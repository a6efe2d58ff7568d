//! The pure domain of Roster: ids, backend records, the cluster state and its transitions
//! `(state, command, time) -> result`. No I/O, no clock, no randomness: everything here is
//! deterministic so that every FE applying the same log reaches the same state.

pub mod backend;
pub mod blacklist;
pub mod catalog;
pub mod drain;
pub mod error;
pub mod ids;
pub mod liveness;
pub mod moves;
pub mod node_drain;
pub mod placement;
pub mod registry;
pub mod routing;
pub mod settings;
pub mod state;
pub mod tracked;
pub mod users;

pub use backend::{Backend, BackendMembership, BackendRef, HostPort, Tags};
pub use error::DomainError;
pub use ids::{BackendId, FrontendId, MoveId, TableId, TabletId};
pub use settings::Settings;
pub use state::ClusterState;
pub use users::{Privilege, User};
