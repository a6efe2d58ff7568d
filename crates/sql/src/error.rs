//! The one error type every parse failure is reported with.

/// A parse failure with a 1-based position in the statement text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at line {line}, column {column}")]
pub struct ParseError {
    pub message: String,
    pub line: u64,
    pub column: u64,
}
