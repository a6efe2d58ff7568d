//! Whether a user holds a privilege.

use crate::model::error::DomainError;
use crate::model::state::ClusterState;
use crate::model::users::Privilege;

/// Whether `user` may act with privilege `p`. Unknown users may do nothing.
pub fn authorize(state: &ClusterState, user: &str, p: Privilege) -> Result<(), DomainError> {
    match state.users.get(&user.to_string()) {
        Some(u) if u.has(p) => Ok(()),
        Some(_) => Err(DomainError::AccessDenied {
            user: user.to_string(),
            needed: p.as_str().to_string(),
        }),
        None => Err(DomainError::UnknownUser(user.to_string())),
    }
}
