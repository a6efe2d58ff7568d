//! Stage 2 of the pipeline: a parsed statement becomes a `Plan`, what will run. A write becomes
//! the `Cmd` it proposes, with its PROPERTIES parsed here into typed fields (tags, backend
//! changes, the replica allocation; settings in their canonical spelling), so apply never runs
//! a properties parser and a later parser cannot change how an entry replays. Frontend
//! changes, reads of the replicated state and session housekeeping become their own kinds. An
//! invalid statement is refused here and never costs a Raft log entry; checks that depend on
//! the state (does the backend exist?) are the applier's, which also re-checks the typed values
//! without parsing anything.

use roster_membership::model::catalog::TableDef;
use roster_membership::{
    BackendId, BackendRef, DomainError, FrontendId, HostPort, Privilege, Settings, model, query,
};
use roster_node::auth;
use roster_node::error::ApiError;
use roster_raft_store::Cmd;
use roster_sql::{FrontendRole, SelectItem, Statement};

/// What a statement will do.
#[derive(Debug)]
pub enum Plan {
    /// A replicated change, proposed through Raft (forwarded to the leader) and checked again
    /// where it is applied.
    Write(Write),
    /// Adding or dropping an FE: a leader operation (a Raft membership change).
    Frontend {
        add: bool,
        voter: bool,
        addr: String,
    },
    /// A read of the replicated state, after a read barrier.
    Read(Read),
    /// Session housekeeping that real MySQL clients send; touches no state.
    Session(SessionOp),
    /// Refused whatever the state (DROP BACKEND, seed 001), once the privilege is checked.
    Refuse(DomainError),
}

/// A command to propose, and what the statement was, for its answer.
#[derive(Debug)]
pub struct Write {
    pub cmd: Cmd,
    pub kind: WriteKind,
}

/// Which statement a write came from: its answer's wording depends on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteKind {
    AddBackends,
    DroppBackends,
    /// DECOMMISSION of `named` backends.
    Decommission {
        named: usize,
    },
    CancelDecommission,
    ModifyBackends,
    SetConfig,
    Users,
    Blacklist,
    CreateTable {
        name: String,
    },
    DropTable {
        name: String,
        force: bool,
    },
    RecoverTable {
        name: String,
    },
}

/// A read of the replicated state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    Backends,
    DroppedBackends,
    Frontends,
    Config { like: Option<String> },
    Grants { user: String },
    Blacklist { all_frontends: bool },
    ExplainDecommission { targets: Vec<BackendRef> },
    Decommission,
    DecommissionBlockers { backend: Option<BackendRef> },
    Tables,
    RecycleBin,
    Tablet { id: u64 },
    Tablets { table: String },
    TabletRoutes { table: String },
    ReplicaDistribution { table: String },
}

/// Session housekeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionOp {
    Set(Vec<(String, String)>),
    Select(Vec<SelectItem>),
    ShowVariables { like: Option<String> },
    Use { db: String },
    ShowDatabases,
}

fn refs(targets: &[BackendRef]) -> Vec<BackendRef> {
    targets.iter().map(BackendRef::lowercased).collect()
}

fn privileges(names: &[String]) -> Result<Vec<Privilege>, ApiError> {
    names
        .iter()
        .map(|n| {
            Privilege::parse(n).ok_or_else(|| ApiError::Invalid(format!("unknown privilege {n}")))
        })
        .collect()
}

fn write(cmd: Cmd, kind: WriteKind) -> Plan {
    Plan::Write(Write { cmd, kind })
}

/// Plan `stmt` for `user` on the FE `me` (the blacklist statements act on this FE's list).
pub fn plan(stmt: &Statement, user: &str, me: FrontendId) -> Result<Plan, ApiError> {
    use WriteKind as K;
    Ok(match stmt {
        Statement::AddBackends { addrs, properties } => {
            let cmd = Cmd::AddTaggedBackends {
                addrs: addrs.iter().map(HostPort::lowercased).collect(),
                tags: query::backends::tags_from_properties(properties)?,
            };
            write(cmd, K::AddBackends)
        }
        Statement::DropBackends { .. } => Plan::Refuse(DomainError::DropRefused),
        Statement::DroppBackends { targets } => {
            let cmd = Cmd::DroppBackends {
                targets: refs(targets),
            };
            write(cmd, K::DroppBackends)
        }
        Statement::DecommissionBackends {
            targets,
            explain: false,
        } => {
            let cmd = Cmd::DecommissionBackends {
                targets: refs(targets),
            };
            write(
                cmd,
                K::Decommission {
                    named: targets.len(),
                },
            )
        }
        Statement::DecommissionBackends {
            targets,
            explain: true,
        } => Plan::Read(Read::ExplainDecommission {
            targets: refs(targets),
        }),
        Statement::CancelDecommission { targets } => {
            let cmd = Cmd::CancelDecommission {
                targets: refs(targets),
            };
            write(cmd, K::CancelDecommission)
        }
        Statement::ModifyBackends {
            targets,
            properties,
        } => {
            let cmd = Cmd::ChangeBackends {
                targets: refs(targets),
                changes: query::backends::parse_modify(properties)?,
            };
            write(cmd, K::ModifyBackends)
        }
        Statement::AddFrontend { role, addr } | Statement::DropFrontend { role, addr } => {
            Plan::Frontend {
                add: matches!(stmt, Statement::AddFrontend { .. }),
                voter: *role == FrontendRole::Follower,
                addr: addr.to_string(),
            }
        }
        Statement::ShowBackends => Plan::Read(Read::Backends),
        Statement::ShowDroppedBackends => Plan::Read(Read::DroppedBackends),
        Statement::ShowFrontends => Plan::Read(Read::Frontends),
        Statement::AdminSetConfig { properties } => {
            // Each key and value alone, in their canonical spelling (settings are stored as
            // that text); min/max relations between keys need the state, and apply checks them.
            let pairs = properties
                .iter()
                .map(|(k, v)| Settings::validate(k, v))
                .collect::<Result<_, _>>()?;
            let cmd = Cmd::SetConfig { pairs };
            write(cmd, K::SetConfig)
        }
        Statement::AdminShowConfig { like } => Plan::Read(Read::Config { like: like.clone() }),
        Statement::CreateUser {
            user: name,
            password,
        } => {
            model::users::check_name(name)?;
            let cmd = Cmd::CreateUser {
                name: name.clone(),
                password: auth::hash_password(password),
            };
            write(cmd, K::Users)
        }
        Statement::DropUser { user: name } => write(Cmd::DropUser { name: name.clone() }, K::Users),
        Statement::Grant { privs, user: name } => {
            let cmd = Cmd::Grant {
                name: name.clone(),
                privileges: privileges(privs)?,
            };
            write(cmd, K::Users)
        }
        Statement::Revoke { privs, user: name } => {
            let cmd = Cmd::Revoke {
                name: name.clone(),
                privileges: privileges(privs)?,
            };
            write(cmd, K::Users)
        }
        Statement::ShowGrants { user: target } => Plan::Read(Read::Grants {
            user: target.clone().unwrap_or_else(|| user.to_string()),
        }),
        Statement::AddBlacklist { ids } | Statement::DeleteBlacklist { ids } => {
            let backends: Vec<BackendId> = ids.iter().map(|i| BackendId(*i)).collect();
            let cmd = if matches!(stmt, Statement::AddBlacklist { .. }) {
                Cmd::AddBlacklist {
                    frontend: me,
                    backends,
                }
            } else {
                Cmd::DeleteBlacklist {
                    frontend: me,
                    backends,
                }
            };
            write(cmd, K::Blacklist)
        }
        Statement::ShowBlacklist { all_frontends } => Plan::Read(Read::Blacklist {
            all_frontends: *all_frontends,
        }),
        Statement::CreateTable {
            name,
            if_not_exists,
            columns,
            hash_columns,
            buckets,
            properties,
        } => {
            let def = TableDef {
                name: name.clone(),
                if_not_exists: *if_not_exists,
                columns: columns.clone(),
                hash_columns: hash_columns.clone(),
                buckets: *buckets,
                properties: properties.clone(),
            };
            let kind = K::CreateTable { name: name.clone() };
            write(
                Cmd::CreateTableSpec(query::catalog::table_spec(&def)?),
                kind,
            )
        }
        Statement::DropTable {
            name,
            if_exists,
            force,
        } => {
            let cmd = Cmd::DropTable {
                name: name.clone(),
                if_exists: *if_exists,
                force: *force,
            };
            let kind = K::DropTable {
                name: name.clone(),
                force: *force,
            };
            write(cmd, kind)
        }
        Statement::RecoverTable { name } => {
            let cmd = Cmd::RecoverTable { name: name.clone() };
            write(cmd, K::RecoverTable { name: name.clone() })
        }
        Statement::ShowDecommission => Plan::Read(Read::Decommission),
        Statement::ShowDecommissionBlockers { backend } => Plan::Read(Read::DecommissionBlockers {
            backend: backend.as_ref().map(BackendRef::lowercased),
        }),
        Statement::ShowTables => Plan::Read(Read::Tables),
        Statement::ShowRecycleBin => Plan::Read(Read::RecycleBin),
        Statement::ShowTablet { id } => Plan::Read(Read::Tablet { id: *id }),
        Statement::ShowTablets { table } => Plan::Read(Read::Tablets {
            table: table.clone(),
        }),
        Statement::ShowTabletRoutes { table } => Plan::Read(Read::TabletRoutes {
            table: table.clone(),
        }),
        Statement::ShowReplicaDistribution { table } => Plan::Read(Read::ReplicaDistribution {
            table: table.clone(),
        }),
        Statement::SetVariables { assignments } => {
            Plan::Session(SessionOp::Set(assignments.clone()))
        }
        Statement::Select { items, .. } => Plan::Session(SessionOp::Select(items.clone())),
        Statement::ShowVariables { like } => {
            Plan::Session(SessionOp::ShowVariables { like: like.clone() })
        }
        Statement::Use { db } => Plan::Session(SessionOp::Use { db: db.clone() }),
        Statement::ShowDatabases => Plan::Session(SessionOp::ShowDatabases),
    })
}
