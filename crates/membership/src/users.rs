//! Users and privileges (SPEC section 2, "Settings, users"). Passwords arrive already hashed:
//! the replicated log never holds a plaintext password.

use crate::error::DomainError;
use crate::state::ClusterState;
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

fn user_mut<'a>(state: &'a mut ClusterState, name: &str) -> Result<&'a mut User, DomainError> {
    state
        .users
        .get_mut(&name.to_string())
        .ok_or_else(|| DomainError::UnknownUser(name.to_string()))
}

/// Create root with ADMIN_PRIV if it does not exist yet (the first leader does this once).
pub fn ensure_root(state: &mut ClusterState, now_ms: u64, password: PasswordHash) -> bool {
    if state.users.contains_key(&ROOT.to_string()) {
        return false;
    }
    let user = User {
        name: ROOT.into(),
        password,
        privileges: [Privilege::AdminPriv].into(),
        created_ms: now_ms,
    };
    state.users.insert(ROOT.into(), user);
    true
}

pub fn create_user(
    state: &mut ClusterState,
    now_ms: u64,
    name: &str,
    password: PasswordHash,
) -> Result<(), DomainError> {
    check_name(name)?;
    if state.users.contains_key(&name.to_string()) {
        return Err(DomainError::DuplicateUser(name.to_string()));
    }
    let user = User {
        name: name.into(),
        password,
        privileges: BTreeSet::new(),
        created_ms: now_ms,
    };
    state.users.insert(name.into(), user);
    Ok(())
}

pub fn drop_user(state: &mut ClusterState, name: &str) -> Result<(), DomainError> {
    if name == ROOT {
        return Err(DomainError::RootIsPermanent("dropped".into()));
    }
    state
        .users
        .remove(&name.to_string())
        .map(|_| ())
        .ok_or_else(|| DomainError::UnknownUser(name.to_string()))
}

pub fn grant(state: &mut ClusterState, name: &str, privs: &[Privilege]) -> Result<(), DomainError> {
    user_mut(state, name)?
        .privileges
        .extend(privs.iter().copied());
    Ok(())
}

pub fn revoke(
    state: &mut ClusterState,
    name: &str,
    privs: &[Privilege],
) -> Result<(), DomainError> {
    if name == ROOT && privs.contains(&Privilege::AdminPriv) {
        return Err(DomainError::RootIsPermanent(
            "stripped of ADMIN_PRIV".into(),
        ));
    }
    let u = user_mut(state, name)?;
    for p in privs {
        u.privileges.remove(p);
    }
    Ok(())
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_and_privileges() {
        let mut s = ClusterState::default();
        assert!(ensure_root(&mut s, 1, None));
        assert!(
            !ensure_root(&mut s, 2, Some([1; 20])),
            "root is created once"
        );
        assert!(
            authorize(&s, ROOT, Privilege::NodePriv).is_ok(),
            "ADMIN_PRIV implies all"
        );
        create_user(&mut s, 3, "ops", Some([7; 20])).unwrap();
        assert_eq!(
            create_user(&mut s, 3, "ops", None),
            Err(DomainError::DuplicateUser("ops".into()))
        );
        assert!(matches!(
            create_user(&mut s, 3, "bad name", None),
            Err(DomainError::InvalidUserName(_))
        ));
        assert!(matches!(
            authorize(&s, "ops", Privilege::NodePriv),
            Err(DomainError::AccessDenied { .. })
        ));
        grant(&mut s, "ops", &[Privilege::Blacklist]).unwrap();
        assert!(authorize(&s, "ops", Privilege::Blacklist).is_ok());
        assert!(authorize(&s, "ops", Privilege::NodePriv).is_err());
        revoke(&mut s, "ops", &[Privilege::Blacklist]).unwrap();
        assert!(authorize(&s, "ops", Privilege::Blacklist).is_err());
        assert!(revoke(&mut s, ROOT, &[Privilege::AdminPriv]).is_err());
        assert!(drop_user(&mut s, ROOT).is_err());
        assert_eq!(
            grant(&mut s, "ghost", &[Privilege::NodePriv]),
            Err(DomainError::UnknownUser("ghost".into()))
        );
        drop_user(&mut s, "ops").unwrap();
        assert_eq!(
            authorize(&s, "ops", Privilege::SelectPriv),
            Err(DomainError::UnknownUser("ops".into()))
        );
    }
}
