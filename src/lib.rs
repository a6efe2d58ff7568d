//! The code of the `roster` binary: FE wiring, the backend agent runner, the playground, the SQL
//! shell, `roster node`. A library only so that two binaries can
//! share it: `roster`, and `roster-faulty` (the same program with the test-only bug switches,
//! built only with the `bug-switches` feature, for the Jepsen twins).

mod backend;
mod bench;
mod cert_cmd;
mod cli;
mod config;
mod local_cluster;
mod logging;
mod node_cmd;
mod playground;
mod sql_shell;
mod start;
mod table;

pub use cli::main;
