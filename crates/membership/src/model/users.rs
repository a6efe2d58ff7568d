//! Users and privileges (SPEC section 2, "Settings, users"). Passwords arrive already hashed:
//! the replicated log never holds a plaintext password.

use crate::model::error::DomainError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

pub const ROOT: &str = "root";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Privilege {
    /// Everything.
    AdminPriv,
    /// Backends and frontends: ALTER SYSTEM ..., tables.
    NodePriv,
    /// ADD/DELETE/SHOW BACKEND BLACKLIST.
    Blacklist,
    /// SHOW statements other than those needing ADMIN_PRIV or BLACKLIST.
    SelectPriv,
}

impl Privilege {
    pub const ALL: [Privilege; 4] = [
        Privilege::AdminPriv,
        Privilege::NodePriv,
        Privilege::Blacklist,
        Privilege::SelectPriv,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Privilege::AdminPriv => "ADMIN_PRIV",
            Privilege::NodePriv => "NODE_PRIV",
            Privilege::Blacklist => "BLACKLIST",
            Privilege::SelectPriv => "SELECT_PRIV",
        }
    }

    pub fn parse(s: &str) -> Option<Privilege> {
        Privilege::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for Privilege {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `SHA1(SHA1(password))`, what mysql_native_password verifies against; `None` is the empty
/// password (allowed for root only when the config says `insecure = true`).
pub type PasswordHash = Option<[u8; 20]>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub password: PasswordHash,
    pub privileges: BTreeSet<Privilege>,
    pub created_ms: u64,
}

impl User {
    /// ADMIN_PRIV implies every privilege.
    pub fn has(&self, p: Privilege) -> bool {
        self.privileges.contains(&Privilege::AdminPriv) || self.privileges.contains(&p)
    }
}

/// A user name is valid (checked before proposing, and again at apply).
pub fn check_name(name: &str) -> Result<(), DomainError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(DomainError::InvalidUserName(name.to_string()))
    }
}
