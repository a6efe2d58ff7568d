//! Reads of the catalog (tables by name, live replicas, replica counts, the recycle bin's
//! expired tables) and the checks of a CREATE TABLE definition and its PROPERTIES.

use crate::model::catalog::{
    DEFAULT_REPLICATION_NUM, MAX_BUCKETS, MAX_FILL_BYTES_PER_TABLET, MAX_REPLICATION_NUM,
    ReplicaAllocation, Table, TableDef, TableSpec, TableState, Tablet,
};
use crate::model::error::DomainError;
use crate::model::ids::{BackendId, TableId};
use crate::model::state::ClusterState;
use std::collections::BTreeMap;

pub(crate) const TABLE_PROPERTIES: &str =
    "replication_num, replication_allocation, fill_bytes_per_tablet";

/// Doris's rule for table names.
pub(crate) fn check_name(name: &str) -> Result<(), DomainError> {
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

pub(crate) struct Parsed {
    pub(crate) allocation: ReplicaAllocation,
    pub(crate) fill_bytes_per_tablet: u64,
}

pub(crate) fn parse_properties(props: &[(String, String)]) -> Result<Parsed, DomainError> {
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

fn check_columns(
    columns: &[(String, String)],
    hash_columns: &[String],
    buckets: u32,
) -> Result<(), DomainError> {
    let mut seen = std::collections::BTreeSet::new();
    for (name, _) in columns {
        if !seen.insert(name.to_ascii_lowercase()) {
            return Err(DomainError::InvalidTable(format!(
                "column '{name}' is defined twice"
            )));
        }
    }
    if !columns.is_empty()
        && let Some(h) = hash_columns
            .iter()
            .find(|h| !seen.contains(&h.to_ascii_lowercase()))
    {
        return Err(DomainError::InvalidTable(format!(
            "distribution column '{h}' is not a column of the table"
        )));
    }
    if buckets == 0 || buckets > MAX_BUCKETS {
        return Err(DomainError::InvalidTable(format!(
            "BUCKETS must be from 1 to {MAX_BUCKETS}, not {buckets}"
        )));
    }
    Ok(())
}

/// A CREATE TABLE statement's definition with its PROPERTIES parsed and checked: what is
/// proposed (`Cmd::CreateTableSpec`), so the parser runs when the statement is planned and
/// never at apply.
pub fn table_spec(def: &TableDef) -> Result<TableSpec, DomainError> {
    check_name(&def.name)?;
    let parsed = parse_properties(&def.properties)?;
    check_columns(&def.columns, &def.hash_columns, def.buckets)?;
    Ok(TableSpec {
        name: def.name.clone(),
        if_not_exists: def.if_not_exists,
        columns: def.columns.clone(),
        hash_columns: def.hash_columns.clone(),
        buckets: def.buckets,
        allocation: parsed.allocation,
        fill_bytes_per_tablet: parsed.fill_bytes_per_tablet,
    })
}

/// The checks of a parsed CREATE TABLE that apply repeats: values a proposer could have got
/// wrong, checked without parsing anything.
pub fn check_spec(spec: &TableSpec) -> Result<(), DomainError> {
    check_name(&spec.name)?;
    check_columns(&spec.columns, &spec.hash_columns, spec.buckets)?;
    let total = spec.allocation.total();
    if total == 0 || total > MAX_REPLICATION_NUM {
        return Err(DomainError::InvalidTable(format!(
            "a tablet has from 1 to {MAX_REPLICATION_NUM} replicas, not {total}"
        )));
    }
    if spec.fill_bytes_per_tablet > MAX_FILL_BYTES_PER_TABLET {
        return Err(DomainError::InvalidTable(format!(
            "fill_bytes_per_tablet is at most {MAX_FILL_BYTES_PER_TABLET}, not {}",
            spec.fill_bytes_per_tablet
        )));
    }
    Ok(())
}

/// The table in normal use with this name, if any.
pub fn table_by_name<'a>(state: &'a ClusterState, name: &str) -> Option<&'a Table> {
    state
        .tables
        .values()
        .find(|t| t.state == TableState::Normal && t.name.eq_ignore_ascii_case(name))
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

/// Whether the tablet's table is in normal use (not in the recycle bin).
pub fn is_live(state: &ClusterState, tablet: &Tablet) -> bool {
    state
        .tables
        .get(&tablet.table)
        .is_some_and(|t| t.state == TableState::Normal)
}

/// Replicas per backend (TabletNum of SHOW BACKENDS): every replica in the catalog, including
/// those of tables in the recycle bin, which still hold data. From the index: O(backends).
pub fn replica_counts(state: &ClusterState) -> BTreeMap<BackendId, usize> {
    state.tablets.counts()
}
