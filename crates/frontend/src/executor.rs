//! Statement execution: parse -> plan (a `Cmd`, a leader operation, or a read) -> propose or
//! linearize -> render. The same executor serves gRPC, the SQL shell and (later) MySQL.

mod decommission;
mod render;
mod session;
mod tables;
mod validate;

pub use tables::{TabletRoute, tablet_routes};

use roster_membership::model::catalog::TableDef;
use roster_membership::{BackendId, BackendRef, DomainError, FrontendId, HostPort, Privilege};
use roster_node::auth;
use roster_node::error::ApiError;
use roster_node::node::FeNodeHandle;
use roster_node::wire::{LeaderOp, LeaderReply};
use roster_proto::QueryResult;
use roster_raft_store::{Cmd, Reply, Response};
use roster_sql::{FrontendRole, Statement};

pub use session::Session;

fn refs(targets: &[BackendRef]) -> Vec<BackendRef> {
    targets.iter().map(BackendRef::lowercased).collect()
}

fn applied(r: Response) -> Result<Reply, ApiError> {
    match r {
        Response::Ok(reply) => Ok(reply),
        // Refused at apply for lack of privilege (e.g. revoked meanwhile): an access error.
        Response::Refused(e @ DomainError::AccessDenied { .. }) => {
            Err(ApiError::AccessDenied(e.to_string()))
        }
        Response::Refused(e) => Err(ApiError::Refused(e)),
    }
}

fn ids_text(ids: &[BackendId]) -> String {
    ids.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parse and execute one statement.
pub async fn execute_sql(
    fe: &FeNodeHandle,
    session: &mut Session,
    sql: &str,
) -> Result<QueryResult, ApiError> {
    // Before the parser looks at it: a huge statement costs nothing but this comparison.
    fe.config().limits.check_statement(sql.len())?;
    let stmt = roster_sql::parse(sql).map_err(|e| ApiError::Parse(e.to_string()))?;
    execute(fe, session, &stmt).await
}

/// What a statement needs: `Write(p)` is checked here and again where it is applied;
/// `Read(p)` is checked after the read barrier, against state at least as new as the statement.
enum Access {
    Anyone,
    Write(Privilege),
    Read(Privilege),
}

fn access(stmt: &Statement, user: &str) -> Access {
    use Access::*;
    match stmt {
        Statement::AddBackends { .. }
        | Statement::DropBackends { .. }
        | Statement::DroppBackends { .. }
        | Statement::DecommissionBackends { explain: false, .. }
        | Statement::CancelDecommission { .. }
        | Statement::ModifyBackends { .. }
        | Statement::AddFrontend { .. }
        | Statement::DropFrontend { .. }
        | Statement::CreateTable { .. }
        | Statement::DropTable { .. }
        | Statement::RecoverTable { .. } => Write(Privilege::NodePriv),
        Statement::DecommissionBackends { explain: true, .. }
        | Statement::ShowDecommission
        | Statement::ShowDecommissionBlockers { .. } => Read(Privilege::NodePriv),
        Statement::ShowBackends
        | Statement::ShowDroppedBackends
        | Statement::ShowFrontends
        | Statement::AdminShowConfig { .. } => Read(Privilege::AdminPriv),
        Statement::AddBlacklist { .. } | Statement::DeleteBlacklist { .. } => {
            Write(Privilege::Blacklist)
        }
        Statement::ShowBlacklist { .. } => Read(Privilege::Blacklist),
        Statement::AdminSetConfig { .. }
        | Statement::CreateUser { .. }
        | Statement::DropUser { .. }
        | Statement::Grant { .. }
        | Statement::Revoke { .. } => Write(Privilege::AdminPriv),
        Statement::ShowGrants { user: Some(u) } if u != user => Read(Privilege::AdminPriv),
        // Everyone may see their own grants.
        Statement::ShowGrants { .. } => Anyone,
        Statement::ShowTables
        | Statement::ShowRecycleBin
        | Statement::ShowTablet { .. }
        | Statement::ShowTablets { .. }
        | Statement::ShowReplicaDistribution { .. }
        | Statement::ShowTabletRoutes { .. } => Read(Privilege::SelectPriv),
        Statement::SetVariables { .. }
        | Statement::Select { .. }
        | Statement::ShowVariables { .. }
        | Statement::Use { .. }
        | Statement::ShowDatabases => Anyone,
    }
}

fn privileges(names: &[String]) -> Result<Vec<Privilege>, ApiError> {
    names
        .iter()
        .map(|n| {
            Privilege::parse(n).ok_or_else(|| ApiError::Invalid(format!("unknown privilege {n}")))
        })
        .collect()
}

pub async fn execute(
    fe: &FeNodeHandle,
    session: &mut Session,
    stmt: &Statement,
) -> Result<QueryResult, ApiError> {
    let user = session.user.clone();
    let mut note = None;
    match access(stmt, &user) {
        Access::Anyone => {}
        Access::Write(p) => fe.authorize(&user, p).await?,
        Access::Read(p) => {
            note = read_barrier(fe, session).await?;
            fe.authorize_here(&user, p)?;
        }
    }
    validate::check(stmt)?;
    let who = Some(user.as_str());
    match stmt {
        Statement::AddBackends { addrs, properties } => {
            let cmd = Cmd::AddBackends {
                addrs: addrs.iter().map(HostPort::lowercased).collect(),
                properties: properties.clone(),
            };
            match applied(fe.propose(who, cmd).await?)? {
                Reply::Added(ids) => Ok(QueryResult::ok(
                    ids.len() as u64,
                    format!("added backends {}", ids_text(&ids)),
                )),
                other => Err(unexpected(other)),
            }
        }
        Statement::DropBackends { .. } => Err(ApiError::Refused(DomainError::DropRefused)),
        Statement::DroppBackends { targets } => {
            match applied(
                fe.propose(
                    who,
                    Cmd::DroppBackends {
                        targets: refs(targets),
                    },
                )
                .await?,
            )? {
                Reply::Dropped {
                    tombstones,
                    tablets_lost,
                } => {
                    let ids: Vec<BackendId> = tombstones.iter().map(|t| t.id).collect();
                    Ok(QueryResult::ok(
                        tombstones.len() as u64,
                        format!(
                            "dropped backends {}; {tablets_lost} tablets lost their last replica",
                            ids_text(&ids)
                        ),
                    ))
                }
                other => Err(unexpected(other)),
            }
        }
        Statement::DecommissionBackends {
            targets,
            explain: false,
        } => {
            match applied(
                fe.propose(
                    who,
                    Cmd::DecommissionBackends {
                        targets: refs(targets),
                    },
                )
                .await?,
            )? {
                Reply::Memberships(outcomes) => Ok(QueryResult::ok(
                    if roster_node::bugs::on(roster_node::bugs::Bug::DecommissionTwice) {
                        targets.len() as u64
                    } else {
                        decommission::changed(&outcomes).len() as u64
                    },
                    decommission::decommission_message(&outcomes),
                )),
                other => Err(unexpected(other)),
            }
        }
        Statement::DecommissionBackends {
            targets,
            explain: true,
        } => decommission::explain(fe, &refs(targets)).map(|r| with_note(r, note)),
        Statement::CancelDecommission { targets } => {
            match applied(
                fe.propose(
                    who,
                    Cmd::CancelDecommission {
                        targets: refs(targets),
                    },
                )
                .await?,
            )? {
                Reply::Memberships(outcomes) => Ok(QueryResult::ok(
                    decommission::changed(&outcomes).len() as u64,
                    decommission::cancel_message(&outcomes),
                )),
                other => Err(unexpected(other)),
            }
        }
        Statement::ModifyBackends {
            targets,
            properties,
        } => {
            let cmd = Cmd::ModifyBackends {
                targets: refs(targets),
                properties: properties.clone(),
            };
            match applied(fe.propose(who, cmd).await?)? {
                Reply::Changed(ids) => Ok(QueryResult::ok(
                    ids.len() as u64,
                    format!("modified backends {}", ids_text(&ids)),
                )),
                other => Err(unexpected(other)),
            }
        }
        Statement::AddFrontend { role, addr } => {
            let op = LeaderOp::AddFrontend {
                user,
                voter: *role == FrontendRole::Follower,
                addr: addr.to_string(),
            };
            done(fe.leader_op(op).await?)
        }
        Statement::DropFrontend { role, addr } => {
            let op = LeaderOp::DropFrontend {
                user,
                voter: *role == FrontendRole::Follower,
                addr: addr.to_string(),
            };
            done(fe.leader_op(op).await?)
        }
        Statement::ShowBackends => Ok(with_note(render::show_backends(fe), note)),
        Statement::ShowDroppedBackends => Ok(with_note(render::show_dropped_backends(fe), note)),
        Statement::ShowFrontends => Ok(with_note(render::show_frontends(fe), note)),
        Statement::AdminSetConfig { properties } => {
            match applied(
                fe.propose(
                    who,
                    Cmd::SetConfig {
                        pairs: properties.clone(),
                    },
                )
                .await?,
            )? {
                Reply::Done => Ok(QueryResult::ok(0, "")),
                other => Err(unexpected(other)),
            }
        }
        Statement::AdminShowConfig { like } => {
            Ok(with_note(render::show_config(fe, like.as_deref()), note))
        }
        Statement::CreateUser {
            user: name,
            password,
        } => {
            let cmd = Cmd::CreateUser {
                name: name.clone(),
                password: auth::hash_password(password),
            };
            applied(fe.propose(who, cmd).await?).map(|_| QueryResult::ok(0, ""))
        }
        Statement::DropUser { user: name } => applied(
            fe.propose(who, Cmd::DropUser { name: name.clone() })
                .await?,
        )
        .map(|_| QueryResult::ok(0, "")),
        Statement::Grant { privs, user: name } => {
            let cmd = Cmd::Grant {
                name: name.clone(),
                privileges: privileges(privs)?,
            };
            applied(fe.propose(who, cmd).await?).map(|_| QueryResult::ok(0, ""))
        }
        Statement::Revoke { privs, user: name } => {
            let cmd = Cmd::Revoke {
                name: name.clone(),
                privileges: privileges(privs)?,
            };
            applied(fe.propose(who, cmd).await?).map(|_| QueryResult::ok(0, ""))
        }
        Statement::ShowGrants { user: target } => {
            if target.is_none() || target.as_deref() == Some(user.as_str()) {
                // Your own grants: make sure a GRANT acknowledged elsewhere is visible.
                note = read_barrier(fe, session).await?;
            }
            render::show_grants(fe, target.as_deref().unwrap_or(&user)).map(|r| with_note(r, note))
        }
        Statement::AddBlacklist { ids } | Statement::DeleteBlacklist { ids } => {
            let frontend = FrontendId(fe.id());
            let backends: Vec<BackendId> = ids.iter().map(|i| BackendId(*i)).collect();
            let adding = matches!(stmt, Statement::AddBlacklist { .. });
            let cmd = if adding {
                Cmd::AddBlacklist { frontend, backends }
            } else {
                Cmd::DeleteBlacklist { frontend, backends }
            };
            match applied(fe.propose(who, cmd).await?)? {
                Reply::Changed(ids) => Ok(QueryResult::ok(ids.len() as u64, "")),
                other => Err(unexpected(other)),
            }
        }
        Statement::ShowBlacklist { all_frontends } => {
            Ok(with_note(render::show_blacklist(fe, *all_frontends), note))
        }
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
            tables::create_table(fe, who, def).await
        }
        Statement::DropTable {
            name,
            if_exists,
            force,
        } => tables::drop_table(fe, who, name, *if_exists, *force).await,
        Statement::RecoverTable { name } => tables::recover_table(fe, who, name).await,
        Statement::ShowDecommission => Ok(with_note(decommission::show(fe), note)),
        Statement::ShowDecommissionBlockers { backend } => {
            decommission::blockers(fe, backend.as_ref().map(BackendRef::lowercased).as_ref())
                .map(|r| with_note(r, note))
        }
        Statement::ShowTables => Ok(with_note(tables::show_tables(fe), note)),
        Statement::ShowRecycleBin => Ok(with_note(tables::show_recycle_bin(fe), note)),
        Statement::ShowTablet { id } => tables::show_tablet(fe, *id).map(|r| with_note(r, note)),
        Statement::ShowTablets { table } => {
            tables::show_tablets(fe, table).map(|r| with_note(r, note))
        }
        Statement::ShowTabletRoutes { table } => {
            tables::show_tablet_routes(fe, table).map(|r| with_note(r, note))
        }
        Statement::ShowReplicaDistribution { table } => {
            tables::show_replica_distribution(fe, table).map(|r| with_note(r, note))
        }
        Statement::SetVariables { assignments } => session.set(assignments),
        Statement::Select { items, .. } => session.select(items),
        Statement::ShowVariables { like } => Ok(session.show_variables(like.as_deref())),
        Statement::Use { db } => {
            session.db = Some(db.clone());
            Ok(QueryResult::ok(0, ""))
        }
        Statement::ShowDatabases => Ok(QueryResult::rows(
            &["Database"],
            vec![vec![Some("information_schema".into())]],
        )),
    }
}

fn done(r: LeaderReply) -> Result<QueryResult, ApiError> {
    match r {
        LeaderReply::Done(m) => Ok(QueryResult::ok(0, m)),
        LeaderReply::Applied(r) => applied(r).map(|_| QueryResult::ok(0, "")),
    }
}

fn unexpected(r: Reply) -> ApiError {
    ApiError::Internal(format!("unexpected reply {r:?}"))
}

fn with_note(mut r: QueryResult, note: Option<String>) -> QueryResult {
    if let Some(n) = note {
        r.message = n;
    }
    r
}

/// Linearizable unless the session asked for stale reads; a stale read says how far behind it
/// may be.
async fn read_barrier(fe: &FeNodeHandle, session: &Session) -> Result<Option<String>, ApiError> {
    if session.stale_reads {
        let m = fe.raft_view();
        Ok(Some(format!(
            "stale read: applied index {}, known committed index {}, leader {}",
            m.last_applied,
            m.committed,
            m.leader
                .map(|l| l.to_string())
                .unwrap_or_else(|| "unknown".into())
        )))
    } else {
        fe.linearize().await?;
        Ok(None)
    }
}
