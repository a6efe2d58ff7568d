//! Checks of a statement's own values (properties, tags, settings, names) made when it is
//! planned, before anything is proposed: an invalid statement never costs a Raft log entry.
//! Checks that depend on the state (does the backend exist?) stay with the applier, which
//! repeats these too (entries already in logs must still be judged the same way).

use roster_membership::model::catalog::TableDef;
use roster_membership::{Settings, model, query};
use roster_node::error::ApiError;
use roster_sql::Statement;

pub fn check(stmt: &Statement) -> Result<(), ApiError> {
    match stmt {
        Statement::AddBackends { properties, .. } => {
            query::backends::tags_from_properties(properties)?;
        }
        Statement::ModifyBackends { properties, .. } => {
            query::backends::check_modify_properties(properties)?;
        }
        // Each key and value alone; min/max relations between keys need the state.
        Statement::AdminSetConfig { properties } => {
            for (k, v) in properties {
                Settings::validate(k, v)?;
            }
        }
        Statement::CreateUser { user, .. } => model::users::check_name(user)?,
        Statement::CreateTable {
            name,
            if_not_exists,
            columns,
            hash_columns,
            buckets,
            properties,
        } => query::catalog::check_table_def(&TableDef {
            name: name.clone(),
            if_not_exists: *if_not_exists,
            columns: columns.clone(),
            hash_columns: hash_columns.clone(),
            buckets: *buckets,
            properties: properties.clone(),
        })?,
        _ => {}
    }
    Ok(())
}
