//! The catalog's records: tables, their tablets, and which backends hold each tablet's replicas
//! (SPEC section 2, "Tables and tablets"), with the limits a table definition must keep.

use crate::model;
use crate::model::error::DomainError;
use crate::model::ids::{BackendId, TableId, TabletId};
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
                .filter(|t| model::backend::Tags::is_valid(t))
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

/// A CREATE TABLE as proposed: its PROPERTIES already parsed (`query::catalog::table_spec`,
/// when the statement is planned), so apply never runs the properties parser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSpec {
    pub name: String,
    pub if_not_exists: bool,
    pub columns: Vec<(String, String)>,
    pub hash_columns: Vec<String>,
    pub buckets: u32,
    pub allocation: ReplicaAllocation,
    pub fill_bytes_per_tablet: u64,
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
