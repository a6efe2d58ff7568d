//! Reads of the backend registry: name resolution (`"id"` or `"host:port"`), tombstones, and the
//! checks of ADD / MODIFY BACKEND properties and of a frontend joining.

use crate::model::backend::{BackendChange, BackendMembership, BackendRef, Tags, Tombstone};
use crate::model::error::DomainError;
use crate::model::ids::{BackendId, FrontendId};
use crate::model::state::ClusterState;
use std::collections::BTreeSet;

pub(crate) const ADD_PROPERTIES: &str =
    "tag.location, tag.compute_group_name, tag.public_endpoint, tag.private_endpoint";

pub(crate) const MODIFY_PROPERTIES: &str = "tag.location, disable_query, disable_load, is_draining";

pub(crate) fn check_tag_value(key: &str, value: &str) -> Result<String, DomainError> {
    if Tags::is_valid(value) {
        Ok(value.to_string())
    } else {
        Err(DomainError::InvalidProperty {
            key: key.to_string(),
            value: value.to_string(),
            reason: "expected 1-128 characters of letters, digits, '_', '-', '.', ':' or '/'"
                .to_string(),
        })
    }
}

pub(crate) fn parse_bool(key: &str, value: &str) -> Result<bool, DomainError> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(DomainError::InvalidProperty {
            key: key.to_string(),
            value: value.to_string(),
            reason: "expected true or false".to_string(),
        }),
    }
}

/// Tags from ADD BACKEND's PROPERTIES; unknown keys are refused.
pub fn tags_from_properties(props: &[(String, String)]) -> Result<Tags, DomainError> {
    let mut tags = Tags::default();
    for (k, v) in props {
        match k.to_ascii_lowercase().as_str() {
            "tag.location" => tags.location = check_tag_value(k, v)?,
            "tag.compute_group_name" => tags.compute_group_name = Some(check_tag_value(k, v)?),
            "tag.public_endpoint" => tags.public_endpoint = Some(check_tag_value(k, v)?),
            "tag.private_endpoint" => tags.private_endpoint = Some(check_tag_value(k, v)?),
            _ => {
                return Err(DomainError::UnknownProperty {
                    key: k.clone(),
                    valid: ADD_PROPERTIES.to_string(),
                });
            }
        }
    }
    Ok(tags)
}

/// Resolve statement targets to live backends, in order, without duplicates.
pub fn resolve(state: &ClusterState, refs: &[BackendRef]) -> Result<Vec<BackendId>, DomainError> {
    let mut out: Vec<BackendId> = Vec::with_capacity(refs.len());
    for r in refs {
        let id = match r {
            BackendRef::Id(id) => {
                if state.backends.contains_key(id) {
                    *id
                } else if let Some(t) = state.tombstones.get(id) {
                    return Err(DomainError::DroppedBackend {
                        id: *id,
                        addr: t.addr.clone(),
                    });
                } else {
                    return Err(DomainError::UnknownBackend(r.to_string()));
                }
            }
            BackendRef::Addr(a) => match state.backend_by_addr(a) {
                Some(b) => b.id,
                None => return Err(DomainError::UnknownBackend(r.to_string())),
            },
        };
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(out)
}

/// DECOMMISSIONED is final: statements that would change such a backend are refused.
pub(crate) fn refuse_decommissioned(
    state: &ClusterState,
    ids: &[BackendId],
) -> Result<(), DomainError> {
    match ids.iter().find(|id| {
        state.backends.get(id).map(|b| b.membership) == Some(BackendMembership::Decommissioned)
    }) {
        Some(id) => Err(DomainError::AlreadyDecommissioned(*id)),
        None => Ok(()),
    }
}

/// The tombstone of a backend the master decommissioned and dropped, named by id or address
/// (the latest one of that address, if no live backend has it now).
pub fn decommissioned_tombstone<'a>(
    state: &'a ClusterState,
    r: &BackendRef,
) -> Option<&'a Tombstone> {
    let t = match r {
        BackendRef::Id(id) => state.tombstones.get(id),
        BackendRef::Addr(a) if state.backend_by_addr(a).is_none() => state
            .tombstones
            .as_map()
            .values()
            .rev()
            .find(|t| &t.addr == a),
        BackendRef::Addr(_) => None,
    };
    t.filter(|t| t.decommission.is_some())
}

/// Tags as proposed are valid: what `tags_from_properties` would have accepted (checked again
/// at apply, without parsing anything).
pub fn check_tags(tags: &Tags) -> Result<(), DomainError> {
    check_tag_value("tag.location", &tags.location)?;
    let optional = [
        ("tag.compute_group_name", &tags.compute_group_name),
        ("tag.public_endpoint", &tags.public_endpoint),
        ("tag.private_endpoint", &tags.private_endpoint),
    ];
    for (key, value) in optional {
        if let Some(v) = value {
            check_tag_value(key, v)?;
        }
    }
    Ok(())
}

/// MODIFY BACKEND's changes as proposed are valid (checked again at apply).
pub fn check_changes(changes: &[BackendChange]) -> Result<(), DomainError> {
    if changes.is_empty() {
        return Err(DomainError::UnknownProperty {
            key: String::new(),
            valid: MODIFY_PROPERTIES.to_string(),
        });
    }
    for c in changes {
        if let BackendChange::Location(l) = c {
            check_tag_value("tag.location", l)?;
        }
    }
    Ok(())
}

/// MODIFY BACKEND's properties, parsed in the order given.
pub fn parse_modify(props: &[(String, String)]) -> Result<Vec<BackendChange>, DomainError> {
    if props.is_empty() {
        return Err(DomainError::UnknownProperty {
            key: String::new(),
            valid: MODIFY_PROPERTIES.to_string(),
        });
    }
    props
        .iter()
        .map(|(k, v)| match k.to_ascii_lowercase().as_str() {
            "tag.location" => Ok(BackendChange::Location(check_tag_value(k, v)?)),
            "disable_query" => Ok(BackendChange::DisableQuery(parse_bool(k, v)?)),
            "disable_load" => Ok(BackendChange::DisableLoad(parse_bool(k, v)?)),
            "is_draining" => Ok(BackendChange::Draining(parse_bool(k, v)?)),
            _ => Err(DomainError::UnknownProperty {
                key: k.clone(),
                valid: MODIFY_PROPERTIES.to_string(),
            }),
        })
        .collect()
}

/// Whether a frontend id may join: ids that were members once and are not now are never reused.
pub fn check_frontend_join(
    state: &ClusterState,
    id: FrontendId,
    current_members: &BTreeSet<FrontendId>,
) -> Result<(), DomainError> {
    if state.meta.frontends_ever.contains(&id) && !current_members.contains(&id) {
        return Err(DomainError::ReusedFrontendId(id));
    }
    Ok(())
}
