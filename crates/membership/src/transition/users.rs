//! CREATE / DROP USER, GRANT, REVOKE, and the root user at first start.

use crate::model::error::DomainError;
use crate::model::state::ClusterState;
use crate::model::users::{PasswordHash, Privilege, ROOT, User, check_name};
use std::collections::BTreeSet;

pub(crate) fn user_mut<'a>(
    state: &'a mut ClusterState,
    name: &str,
) -> Result<&'a mut User, DomainError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::users::authorize;

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
