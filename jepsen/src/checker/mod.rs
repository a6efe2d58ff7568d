//! Checkers of recorded histories.

pub mod linear;
pub mod replication;
pub mod set;
