//! The catalog: tables, their tablets, and which backends hold each tablet's replicas (SPEC
//! section 2, "Tables and tablets"). Transitions validate the whole statement first and change
//! nothing when they refuse. Placement itself is in `placement`.

use crate::error::DomainError;
use crate::ids::{BackendId, TableId, TabletId};
use crate::placement;
use crate::state::ClusterState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Doris's default when a table names no replication property.
pub const DEFAULT_REPLICATION_NUM: usize = 3;
/// Upper bounds that keep one statement from creating an absurd number of replicas.
pub const MAX_REPLICATION_NUM: usize = 32;
pub const MAX_BUCKETS: u32 = 768;
/// The fill hook writes real bytes to disk: 64 GiB per replica is plenty for any demo or test.
pub const MAX_FILL_BYTES_PER_TABLET: u64 = 64 << 30;

const TABLE_PROPERTIES: &str = "replication_num, replication_allocation, fill_bytes_per_tablet";

/// How many replicas each tablet keeps in each `tag.location` (Doris `replication_allocation`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaAllocation(pub BTreeMap<String, usize>);

impl ReplicaAllocation {
    pub fn default_tag(n: usize) -> Self {
        ReplicaAllocation(BTreeMap::from([("default".to_string(), n)]))
    }

    pub fn total(&self) -> usize {
        self.0.values().sum()
    }

    /// Parse `tag.location.g1: 2, tag.location.g2: 1`.
    pub fn parse(key: &str, text: &str) -> Result<Self, DomainError> {
        let bad = |reason: String| DomainError::InvalidProperty {
            key: key.to_string(),
            value: text.to_string(),
            reason,
        };
        let mut out = BTreeMap::new();
        for part in text.split(',') {
            let part = part.trim();
            let (tag, n) = part.split_once(':').ok_or_else(|| {
                bad(format!(
                    "\"{part}\" is not of the form tag.location.<tag>: <count>"
                ))
            })?;
            let tag = tag
                .trim()
                .strip_prefix("tag.location.")
                .filter(|t| crate::registry::is_valid_tag(t))
                .ok_or_else(|| {
                    bad(format!(
                        "\"{}\" is not tag.location.<tag> with a valid tag name",
                        tag.trim()
                    ))
                })?;
            let n: usize = n
                .trim()
                .parse()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| bad(format!("\"{}\" is not a count of at least 1", n.trim())))?;
            if out.insert(tag.to_string(), n).is_some() {
                return Err(bad(format!("tag \"{tag}\" is named twice")));
            }
        }
        let alloc = ReplicaAllocation(out);
        if alloc.total() > MAX_REPLICATION_NUM {
            return Err(bad(format!(
                "{} replicas in all; at most {MAX_REPLICATION_NUM}",
                alloc.total()
            )));
        }
        Ok(alloc)
    }
}

impl fmt::Display for ReplicaAllocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(t, n)| format!("tag.location.{t}: {n}"))
            .collect();
        f.write_str(&parts.join(", "))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TableState {
    Normal,
    /// In the recycle bin since this leader-stamped time; still holds its replicas.
    Recycled {
        dropped_at_ms: u64,
    },
}

/// What CREATE TABLE says; the statement as replicated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDef {
    pub name: String,
    pub if_not_exists: bool,
    /// Column names and types, recorded and not interpreted.
    pub columns: Vec<(String, String)>,
    pub hash_columns: Vec<String>,
    pub buckets: u32,
    pub properties: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    pub id: TableId,
    pub name: String,
    pub columns: Vec<(String, String)>,
    pub hash_columns: Vec<String>,
    pub allocation: ReplicaAllocation,
    /// Bytes the agents write into each new replica (a demo and test hook, 0 normally).
    pub fill_bytes_per_tablet: u64,
    pub created_at_ms: u64,
    pub state: TableState,
    /// In bucket order.
    pub tablets: Vec<TabletId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicaState {
    /// Placed by the catalog; the master is asking the backend to create its files.
    Creating,
    /// The backend reported the replica's files.
    Normal,
    /// The destination of a move, being filled by a clone; not yet a healthy replica.
    Cloning,
}

impl ReplicaState {
    pub fn as_str(&self) -> &'static str {
        match self {
            ReplicaState::Creating => "CREATING",
            ReplicaState::Normal => "NORMAL",
            ReplicaState::Cloning => "CLONING",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replica {
    pub backend: BackendId,
    pub state: ReplicaState,
    /// As last reported by the backend.
    pub bytes: u64,
    pub checksum: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tablet {
    pub id: TabletId,
    pub table: TableId,
    pub replicas: Vec<Replica>,
    /// Failed clones of this tablet since its last successful move (bounded retries).
    pub failures: CloneFailures,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloneFailures {
    pub count: u32,
    pub last_reason: String,
    /// Leader-stamped time of the last failure (retries back off from here).
    pub last_at_ms: u64,
    /// Destinations that failed; the planner tries others first.
    pub failed_dests: Vec<BackendId>,
}

/// What a backend told the master about one replica it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaReport {
    pub tablet: TabletId,
    pub backend: BackendId,
    pub bytes: u64,
    pub checksum: u32,
}

/// Doris's rule for table names.
fn check_name(name: &str) -> Result<(), DomainError> {
    let mut chars = name.chars();
    let ok = name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(DomainError::InvalidTable(format!(
            "table name '{name}' must start with a letter and have at most 64 letters, digits, '_' or '-'"
        )))
    }
}

struct Parsed {
    allocation: ReplicaAllocation,
    fill_bytes_per_tablet: u64,
}

fn parse_properties(props: &[(String, String)]) -> Result<Parsed, DomainError> {
    let mut num = None;
    let mut alloc = None;
    let mut fill = 0;
    for (k, v) in props {
        let invalid = |reason: &str| DomainError::InvalidProperty {
            key: k.clone(),
            value: v.clone(),
            reason: reason.to_string(),
        };
        match k.to_ascii_lowercase().as_str() {
            "replication_num" => {
                let n: usize = v
                    .trim()
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_REPLICATION_NUM).contains(n))
                    .ok_or_else(|| invalid("expected a number from 1 to 32"))?;
                num = Some(n);
            }
            "replication_allocation" => alloc = Some(ReplicaAllocation::parse(k, v)?),
            "fill_bytes_per_tablet" => {
                fill = v
                    .trim()
                    .parse()
                    .ok()
                    .filter(|n| *n <= MAX_FILL_BYTES_PER_TABLET)
                    .ok_or_else(|| invalid("expected a number of bytes up to 64 GiB"))?;
            }
            _ => {
                return Err(DomainError::UnknownProperty {
                    key: k.clone(),
                    valid: TABLE_PROPERTIES.to_string(),
                });
            }
        }
    }
    let allocation = match (num, alloc) {
        (Some(_), Some(_)) => {
            return Err(DomainError::InvalidTable(
                "give replication_num or replication_allocation, not both".to_string(),
            ));
        }
        (Some(n), None) => ReplicaAllocation::default_tag(n),
        (None, Some(a)) => a,
        (None, None) => ReplicaAllocation::default_tag(DEFAULT_REPLICATION_NUM),
    };
    Ok(Parsed {
        allocation,
        fill_bytes_per_tablet: fill,
    })
}

fn check_columns(def: &TableDef) -> Result<(), DomainError> {
    let mut seen = std::collections::BTreeSet::new();
    for (name, _) in &def.columns {
        if !seen.insert(name.to_ascii_lowercase()) {
            return Err(DomainError::InvalidTable(format!(
                "column '{name}' is defined twice"
            )));
        }
    }
    if !def.columns.is_empty()
        && let Some(h) = def
            .hash_columns
            .iter()
            .find(|h| !seen.contains(&h.to_ascii_lowercase()))
    {
        return Err(DomainError::InvalidTable(format!(
            "distribution column '{h}' is not a column of the table"
        )));
    }
    if def.buckets == 0 || def.buckets > MAX_BUCKETS {
        return Err(DomainError::InvalidTable(format!(
            "BUCKETS must be from 1 to {MAX_BUCKETS}, not {}",
            def.buckets
        )));
    }
    Ok(())
}

/// Everything CREATE TABLE checks that needs no state (name, properties, columns, buckets):
/// the executor runs it before proposing, the applier again inside `create_table`.
pub fn check_table_def(def: &TableDef) -> Result<(), DomainError> {
    check_name(&def.name)?;
    parse_properties(&def.properties)?;
    check_columns(def)
}

/// The table in normal use with this name, if any.
pub fn table_by_name<'a>(state: &'a ClusterState, name: &str) -> Option<&'a Table> {
    state
        .tables
        .values()
        .find(|t| t.state == TableState::Normal && t.name.eq_ignore_ascii_case(name))
}

/// CREATE TABLE: validate, place every tablet, record replicas as CREATING. Returns the table
/// id and whether it was created (false for IF NOT EXISTS on an existing table).
pub fn create_table(
    state: &mut ClusterState,
    now_ms: u64,
    def: &TableDef,
) -> Result<(TableId, bool), DomainError> {
    check_name(&def.name)?;
    let parsed = parse_properties(&def.properties)?;
    check_columns(def)?;
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
    let placed = placement::place_tablets(state, &parsed.allocation, &tablet_ids)?;
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
            allocation: parsed.allocation,
            fill_bytes_per_tablet: parsed.fill_bytes_per_tablet,
            created_at_ms: now_ms,
            state: TableState::Normal,
            tablets: tablet_ids,
        },
    );
    Ok((table_id, true))
}

fn remove_table(state: &mut ClusterState, id: TableId) {
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

/// Recycled tables whose time is up at `now_ms`.
pub fn expired_tables(state: &ClusterState, now_ms: u64, expire_sec: u64) -> Vec<TableId> {
    state
        .tables
        .values()
        .filter(|t| match t.state {
            TableState::Recycled { dropped_at_ms } => {
                dropped_at_ms.saturating_add(expire_sec.saturating_mul(1000)) <= now_ms
            }
            TableState::Normal => false,
        })
        .map(|t| t.id)
        .collect()
}

/// Remove recycled tables past `catalog_trash_expire_second`. Returns the tables removed.
pub fn expire_recycle_bin(state: &mut ClusterState, now_ms: u64) -> Vec<TableId> {
    let expire_sec = state.meta.settings.u64("catalog_trash_expire_second");
    let ids = expired_tables(state, now_ms, expire_sec);
    for id in &ids {
        remove_table(state, *id);
    }
    ids
}

/// Backends' reports of replicas they hold: a CREATING replica becomes NORMAL, sizes and
/// checksums are updated. Reports of replicas the catalog does not place there are ignored
/// (the master deletes such files), and so are CLONING ones: a move finishes only through
/// `moves::finish_move`, which checks the checksum. Returns the tablets changed.
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
        let t = state.tablets.get_mut(&r.tablet).expect("checked above");
        let replica = t
            .replicas
            .iter_mut()
            .find(|x| x.backend == r.backend)
            .expect("checked above");
        replica.state = ReplicaState::Normal;
        replica.bytes = r.bytes;
        replica.checksum = Some(r.checksum);
        if changed.last() != Some(&r.tablet) {
            changed.push(r.tablet);
        }
    }
    changed
}

/// Whether the tablet's table is in normal use (not in the recycle bin).
pub fn is_live(state: &ClusterState, tablet: &Tablet) -> bool {
    state
        .tables
        .get(&tablet.table)
        .is_some_and(|t| t.state == TableState::Normal)
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
            let t = state.tablets.get_mut(tablet).expect("checked");
            t.replicas
                .retain(|r| !(r.backend == *backend && r.state == ReplicaState::Normal));
            n += 1;
        }
    }
    n
}

/// Remove every replica on a dropped backend. Returns how many tablets now have none.
pub fn forget_backend(state: &mut ClusterState, backend: BackendId) -> usize {
    let holding: Vec<TabletId> = state
        .tablets
        .values()
        .filter(|t| t.replicas.iter().any(|r| r.backend == backend))
        .map(|t| t.id)
        .collect();
    let mut lost = 0;
    for id in holding {
        let t = state.tablets.get_mut(&id).expect("listed above");
        t.replicas.retain(|r| r.backend != backend);
        if t.replicas.is_empty() {
            lost += 1;
        }
    }
    lost
}

/// Replicas per backend (TabletNum of SHOW BACKENDS): every replica in the catalog, including
/// those of tables in the recycle bin, which still hold data.
pub fn replica_counts(state: &ClusterState) -> BTreeMap<BackendId, usize> {
    replica_counts_where(state, |_| true)
}

/// Replicas per backend of the tables `keep` accepts.
pub fn replica_counts_where(
    state: &ClusterState,
    keep: impl Fn(&Table) -> bool,
) -> BTreeMap<BackendId, usize> {
    let mut counts = BTreeMap::new();
    for t in state.tablets.values() {
        if !state.tables.get(&t.table).is_some_and(&keep) {
            continue;
        }
        for r in &t.replicas {
            *counts.entry(r.backend).or_insert(0) += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests;
