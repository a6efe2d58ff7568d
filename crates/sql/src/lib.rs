//! Roster's admin SQL dialect (Doris/StarRocks style): the statement AST and its parser.

mod addr;
pub mod ast;
mod error;
mod parser;

pub use addr::{AddrError, HostPort};
pub use ast::{BackendRef, FrontendRole, Properties, SelectExpr, SelectItem, Statement};
pub use error::ParseError;

/// Parses one statement (optionally ending in `;`) of the admin dialect.
pub fn parse(sql: &str) -> Result<Statement, ParseError> {
    parser::parse(sql)
}
