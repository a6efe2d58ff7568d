//! Reads of the state: placement, the drain pre-check and blockers, routing, name resolution,
//! authorization, and the checks of a statement's input. Nothing here changes the state.

pub mod backends;
pub mod blacklist;
pub mod catalog;
pub mod drain;
pub mod moves;
pub mod placement;
pub mod routing;
pub mod users;
