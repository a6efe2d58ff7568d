//! Roster's admin SQL dialect (Doris/StarRocks style): the statement AST and its parser.

pub mod ast;
mod error;
mod parser;

pub use ast::{FrontendRole, Properties, SelectExpr, SelectItem, Statement};
pub use error::ParseError;
pub use roster_membership::model::backend::{AddrError, BackendRef, HostPort};

/// Parses one statement (optionally ending in `;`) of the admin dialect.
pub fn parse(sql: &str) -> Result<Statement, ParseError> {
    parser::parse(sql)
}
