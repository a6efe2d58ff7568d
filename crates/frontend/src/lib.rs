//! The FE's front doors and the statement pipeline behind them: statements from the gRPC
//! service (`roster_service`), the MySQL protocol (`mysql`) and HTTP (`http`, with the JSON
//! APIs) all go through the statement pipeline (`statement`) to the node (`roster-node`).

pub mod http;
pub mod mysql;
pub mod roster_service;
pub mod statement;
