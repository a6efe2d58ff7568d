//! Changes of the catalog: CREATE / DROP / RECOVER TABLE, the recycle bin's expiry, replica
//! reports, lost replicas. Each validates the whole statement first and changes nothing when it
//! refuses. Placement itself is in `query::placement`.

use crate::model::catalog::{
    CloneFailures, Replica, ReplicaReport, ReplicaState, Table, TableDef, TableSpec, TableState,
    Tablet,
};
use crate::model::error::DomainError;
use crate::model::ids::{BackendId, TableId, TabletId};
use crate::model::state::ClusterState;
use crate::query;
use crate::query::catalog::{expired_tables, table_by_name};

/// CREATE TABLE: validate, place every tablet, record replicas as CREATING. Returns the table
/// id and whether it was created (false for IF NOT EXISTS on an existing table).
pub fn create_table(
    state: &mut ClusterState,
    now_ms: u64,
    def: &TableDef,
) -> Result<(TableId, bool), DomainError> {
    // Entries proposed before CREATE TABLE was parsed when planned carry the statement's text.
    create_table_spec(state, now_ms, &query::catalog::table_spec(def)?)
}

/// CREATE TABLE as parsed when planned: check, place every tablet, record replicas as
/// CREATING. Returns the table id and whether it was created (false for IF NOT EXISTS on an
/// existing table).
pub fn create_table_spec(
    state: &mut ClusterState,
    now_ms: u64,
    def: &TableSpec,
) -> Result<(TableId, bool), DomainError> {
    query::catalog::check_spec(def)?;
    if let Some(t) = table_by_name(state, &def.name) {
        return if def.if_not_exists {
            Ok((t.id, false))
        } else {
            Err(DomainError::TableExists(def.name.clone()))
        };
    }
    let first = state.meta.next_catalog_id;
    let table_id = TableId(first);
    let tablet_ids: Vec<TabletId> = (1..=u64::from(def.buckets))
        .map(|i| TabletId(first + i))
        .collect();
    let placed = query::placement::place_tablets(state, &def.allocation, &tablet_ids)?;
    state.meta.next_catalog_id = first + 1 + u64::from(def.buckets);
    for (id, backends) in tablet_ids.iter().zip(placed) {
        let replicas = backends
            .into_iter()
            .map(|backend| Replica {
                backend,
                state: ReplicaState::Creating,
                bytes: 0,
                checksum: None,
            })
            .collect();
        state.tablets.insert(
            *id,
            Tablet {
                id: *id,
                table: table_id,
                replicas,
                failures: CloneFailures::default(),
            },
        );
    }
    state.tables.insert(
        table_id,
        Table {
            id: table_id,
            name: def.name.clone(),
            columns: def.columns.clone(),
            hash_columns: def.hash_columns.clone(),
            allocation: def.allocation.clone(),
            fill_bytes_per_tablet: def.fill_bytes_per_tablet,
            created_at_ms: now_ms,
            state: TableState::Normal,
            tablets: tablet_ids,
        },
    );
    Ok((table_id, true))
}

pub(crate) fn remove_table(state: &mut ClusterState, id: TableId) {
    if let Some(t) = state.tables.remove(&id) {
        for tablet in &t.tablets {
            state.tablets.remove(tablet);
        }
    }
}

/// DROP TABLE [IF EXISTS] name [FORCE]: to the recycle bin, or (FORCE) gone at once. Returns
/// the table dropped, `None` for IF EXISTS on a missing table.
pub fn drop_table(
    state: &mut ClusterState,
    now_ms: u64,
    name: &str,
    if_exists: bool,
    force: bool,
) -> Result<Option<TableId>, DomainError> {
    let Some(id) = table_by_name(state, name).map(|t| t.id) else {
        return if if_exists {
            Ok(None)
        } else {
            Err(DomainError::UnknownTable(name.to_string()))
        };
    };
    if force {
        remove_table(state, id);
    } else {
        let t = state.tables.get_mut(&id).expect("found above");
        t.state = TableState::Recycled {
            dropped_at_ms: now_ms,
        };
    }
    Ok(Some(id))
}

/// RECOVER TABLE name: the most recently dropped table of that name comes back.
pub fn recover_table(state: &mut ClusterState, name: &str) -> Result<TableId, DomainError> {
    if table_by_name(state, name).is_some() {
        return Err(DomainError::TableExists(name.to_string()));
    }
    let id = state
        .tables
        .values()
        .filter_map(|t| match t.state {
            TableState::Recycled { dropped_at_ms } if t.name.eq_ignore_ascii_case(name) => {
                Some((dropped_at_ms, t.id))
            }
            _ => None,
        })
        .max()
        .map(|(_, id)| id)
        .ok_or_else(|| DomainError::NotInRecycleBin(name.to_string()))?;
    state.tables.get_mut(&id).expect("found above").state = TableState::Normal;
    Ok(id)
}

/// Remove recycled tables past `catalog_trash_expire_second`. Returns the tables removed.
pub fn expire_recycle_bin(state: &mut ClusterState, now_ms: u64) -> Vec<TableId> {
    let expire_sec = state.meta.settings.values().catalog_trash_expire_second;
    let ids = expired_tables(state, now_ms, expire_sec);
    for id in &ids {
        remove_table(state, *id);
    }
    ids
}

/// Backends' reports of replicas they hold: a CREATING replica becomes NORMAL, sizes and
/// checksums are updated. Reports of replicas the catalog does not place there are ignored
/// (the master deletes such files), and so are CLONING ones: a move finishes only through
/// `transition::moves::finish_move`, which checks the checksum. Returns the tablets changed.
pub fn record_replicas(state: &mut ClusterState, reports: &[ReplicaReport]) -> Vec<TabletId> {
    let mut changed = Vec::new();
    for r in reports {
        let known = state.tablets.get(&r.tablet).is_some_and(|t| {
            t.replicas
                .iter()
                .any(|x| x.backend == r.backend && x.state != ReplicaState::Cloning)
        });
        if !known {
            continue;
        }
        state.tablets.update(&r.tablet, |t| {
            let replica = t
                .replicas
                .iter_mut()
                .find(|x| x.backend == r.backend)
                .expect("checked above");
            replica.state = ReplicaState::Normal;
            replica.bytes = r.bytes;
            replica.checksum = Some(r.checksum);
        });
        if changed.last() != Some(&r.tablet) {
            changed.push(r.tablet);
        }
    }
    changed
}

/// Forget NORMAL replicas whose backends no longer hold their files; the planner then
/// repairs their tablets from the other replicas. Returns how many were forgotten.
pub fn forget_lost(state: &mut ClusterState, lost: &[(TabletId, BackendId)]) -> usize {
    let mut n = 0;
    for (tablet, backend) in lost {
        let present = state.tablets.get(tablet).is_some_and(|t| {
            t.replicas
                .iter()
                .any(|r| r.backend == *backend && r.state == ReplicaState::Normal)
        });
        if present {
            state.tablets.update(tablet, |t| {
                t.replicas
                    .retain(|r| !(r.backend == *backend && r.state == ReplicaState::Normal))
            });
            n += 1;
        }
    }
    n
}

/// Remove every replica on a dropped backend. Returns how many tablets now have none.
pub fn forget_backend(state: &mut ClusterState, backend: BackendId) -> usize {
    let holding: Vec<TabletId> = state.tablets.on(backend).collect();
    let mut lost = 0;
    for id in holding {
        let none_left = state.tablets.update(&id, |t| {
            t.replicas.retain(|r| r.backend != backend);
            t.replicas.is_empty()
        });
        if none_left == Some(true) {
            lost += 1;
        }
    }
    lost
}

#[cfg(test)]
mod tests;
