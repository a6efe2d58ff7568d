//! The SHOW statements' result sets, built from this FE's applied state (after the read
//! barrier), and the wording of decommission answers.

pub mod cluster;
pub mod decommission;
pub mod tables;

use roster_membership::BackendId;

/// `10001, 10002`.
pub fn ids_text(ids: &[BackendId]) -> String {
    ids.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
