//! The pure domain of Roster: ids, backend records, the cluster state and its transitions
//! `(state, command, time) -> result`. No I/O, no clock, no randomness: everything here is
//! deterministic so that every FE applying the same log reaches the same state.
//!
//! Three layers, importing one way: `model` (the records) <- `query` (reads: placement, the
//! drain pre-check, routing, checks of input) <- `transition` (what apply runs).

pub mod model;
pub mod query;
pub mod transition;

pub use model::backend::{Backend, BackendMembership, BackendRef, HostPort, Tags};
pub use model::error::DomainError;
pub use model::ids::{BackendId, FrontendId, MoveId, TableId, TabletId, Term};
pub use model::settings::Settings;
pub use model::state::ClusterState;
pub use model::users::{Privilege, User};
