//! Checkers of recorded histories.

pub mod linear;
pub mod set;
