//! The answer to one statement as every front door carries it: a result set (SQL text, the
//! columns' SQL types, and the typed cells when the statement renders them) or an OK packet.

use crate::cell::Cell;

/// A result set or an OK packet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
    pub affected_rows: u64,
    pub message: String,
    /// The same rows typed, for the HTTP API, when the statement renders them so (the JSON
    /// views); empty otherwise, and never sent over gRPC.
    pub cells: Vec<Vec<Cell>>,
    /// Each column's SQL type, as the statement declares it (the MySQL front door sends it);
    /// a column without one is text, as SHOW output is in Doris.
    pub types: Vec<SqlType>,
}

/// The SQL type of a result column.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SqlType {
    #[default]
    Text,
    /// A 64-bit integer (`SELECT 1`, `SELECT @@max_allowed_packet`).
    Int,
}

impl QueryResult {
    pub fn ok(affected_rows: u64, message: impl Into<String>) -> Self {
        QueryResult {
            affected_rows,
            message: message.into(),
            ..Default::default()
        }
    }

    pub fn rows(columns: &[&str], rows: Vec<Vec<Option<String>>>) -> Self {
        QueryResult {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows,
            ..Default::default()
        }
    }

    /// A result set from typed cells: SQL text and the typed values from one source.
    pub fn typed(columns: &[&str], cells: Vec<Vec<Cell>>) -> Self {
        QueryResult {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: cells
                .iter()
                .map(|r| r.iter().map(Cell::to_sql).collect())
                .collect(),
            cells,
            ..Default::default()
        }
    }

    /// The SQL type of column `i` (text unless declared).
    pub fn column_type(&self, i: usize) -> SqlType {
        self.types.get(i).copied().unwrap_or_default()
    }

    pub fn is_result_set(&self) -> bool {
        !self.columns.is_empty()
    }
}

/// A result set or OK packet as gRPC carries it (SQL text only: typed cells never travel).
/// The caller has already looked at `error` and `leader_rpc_addr`.
impl From<crate::pb::v1::ExecuteResponse> for QueryResult {
    fn from(resp: crate::pb::v1::ExecuteResponse) -> QueryResult {
        QueryResult {
            columns: resp.columns,
            rows: resp
                .rows
                .into_iter()
                .map(|r| r.values.into_iter().map(|v| v.text).collect())
                .collect(),
            affected_rows: resp.affected_rows,
            message: resp.message,
            cells: Vec::new(),
            types: Vec::new(),
        }
    }
}
