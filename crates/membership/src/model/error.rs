//! Refusals of the domain. These are answers, not failures: apply returns them as `Ok` replies.

use crate::model::backend::HostPort;
use crate::model::ids::{BackendId, FrontendId, TabletId, Term};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum DomainError {
    #[error("Same backend already exists[{0}]")]
    DuplicateBackend(HostPort),
    #[error("backend does not exist[{0}]")]
    UnknownBackend(String),
    #[error("backend {id} was dropped (it was {addr}); backend ids are never reused")]
    DroppedBackend { id: BackendId, addr: HostPort },
    #[error("backend {0} is named twice in one statement")]
    RepeatedBackend(BackendId),
    #[error("unknown property \"{key}\"; valid properties are {valid}")]
    UnknownProperty { key: String, valid: String },
    #[error("invalid value \"{value}\" for property \"{key}\": {reason}")]
    InvalidProperty {
        key: String,
        value: String,
        reason: String,
    },
    #[error("backend {0} is DECOMMISSIONED and cannot be changed; add a new backend instead")]
    AlreadyDecommissioned(BackendId),
    #[error("backend {0} is not being decommissioned")]
    NotDecommissioning(BackendId),
    #[error(
        "It is highly NOT RECOMMENDED to use DROP BACKEND stmt.It is not safe to directly drop a backend. All data on this backend will be discarded permanently. If you insist, use DROPP instead of DROP"
    )]
    DropRefused,
    #[error("frontend {0} was removed from this cluster before; frontend ids are never reused")]
    ReusedFrontendId(FrontendId),
    #[error("user '{0}' already exists")]
    DuplicateUser(String),
    #[error("user '{0}' does not exist")]
    UnknownUser(String),
    #[error("invalid user name '{0}': use 1-64 letters, digits, '_', '.' or '-'")]
    InvalidUserName(String),
    #[error("root cannot be {0}")]
    RootIsPermanent(String),
    #[error(
        "Access denied; you need (at least one of) the {needed} privilege(s) for this operation (user '{user}')"
    )]
    AccessDenied { user: String, needed: String },
    #[error("unknown config \"{0}\"")]
    UnknownSetting(String),
    #[error("invalid value \"{value}\" for config \"{key}\": {reason}")]
    InvalidSetting {
        key: String,
        value: String,
        reason: String,
    },
    #[error("Unknown table '{0}'")]
    UnknownTable(String),
    #[error("Table '{0}' already exists")]
    TableExists(String),
    #[error("table '{0}' is not in the catalog recycle bin")]
    NotInRecycleBin(String),
    #[error("invalid table definition: {0}")]
    InvalidTable(String),
    #[error(
        "Failed to find enough backends for tag {{\"location\" : \"{tag}\"}}: tablet {tablet} needs {needed} replica(s) there on distinct backends and distinct hosts, but only {eligible} qualify (alive, ACTIVE, load enabled, with free capacity){detail}"
    )]
    NotEnoughBackends {
        tag: String,
        tablet: TabletId,
        needed: usize,
        eligible: usize,
        detail: String,
    },
    #[error(
        "cannot decommission backend(s) {backends}: {count} tablet(s) could not be moved; first: {first}. EXPLAIN ALTER SYSTEM DECOMMISSION BACKEND ... lists them all"
    )]
    DecommissionBlocked {
        backends: String,
        count: usize,
        first: String,
    },
    #[error(
        "leader work decided in term {decided} reached the log in term {entry}: refused, the \
         master of term {entry} decides again from what it sees"
    )]
    StaleTerm { decided: Term, entry: Term },
}
