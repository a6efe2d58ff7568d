//! Privilege checks on this FE, and the creation of root by the first leader.

use super::FeNodeHandle;
use crate::error::ApiError;
use roster_membership::model::users::ROOT;
use roster_membership::{DomainError, Privilege, query};
use roster_raft_store::Cmd;

fn to_api(e: DomainError) -> ApiError {
    match e {
        DomainError::AccessDenied { .. } | DomainError::UnknownUser(_) => {
            ApiError::AccessDenied(e.to_string())
        }
        other => ApiError::Refused(other),
    }
}

impl FeNodeHandle {
    /// Check `user`'s privilege against this FE's applied state as it is now.
    pub fn authorize_here(&self, user: &str, p: Privilege) -> Result<(), ApiError> {
        self.store()
            .read(|s, _| query::users::authorize(s, user, p))
            .map_err(to_api)
    }

    /// Check `user`'s privilege; a refusal is confirmed after a read barrier, so a GRANT
    /// acknowledged on another FE takes effect here at once.
    pub async fn authorize(&self, user: &str, p: Privilege) -> Result<(), ApiError> {
        if self.authorize_here(user, p).is_ok() {
            return Ok(());
        }
        self.linearize().await?;
        self.authorize_here(user, p)
    }

    /// If this FE leads, root does not exist yet, and this FE was given root's password,
    /// create root. Idempotent: EnsureRoot does nothing once root exists.
    pub(super) async fn ensure_root(&self) {
        let Some(password) = self.config().root_password else {
            return;
        };
        if self.leader().map(|(id, _)| id) != Some(self.id()) {
            return;
        }
        if self
            .store()
            .read(|s, _| s.users.contains_key(&ROOT.to_string()))
        {
            return;
        }
        match self.propose(None, Cmd::EnsureRoot { password }).await {
            Ok(_) => tracing::info!("created the root user"),
            Err(e) => tracing::warn!("creating the root user failed, will retry: {e}"),
        }
    }
}
