//! Stage 4 of the pipeline: carry out an authorized plan. A write is proposed (forwarded to
//! the leader when this FE is not it) and answers the applier's reply; CREATE TABLE then waits
//! until the agents hold every replica. A frontend change is a leader operation. A read renders
//! the replicated state of this FE, which the read barrier brought up to date. Session
//! housekeeping changes only the session.

use super::plan::{Plan, Read, SessionOp, Write, WriteKind};
use super::session::Session;
use super::show;
use roster_membership::model::catalog::ReplicaState;
use roster_membership::{ClusterState, DomainError, TableId};
use roster_node::FeNodeHandle;
use roster_node::error::ApiError;
use roster_node::wire::{LeaderOp, LeaderReply};
use roster_proto::QueryResult;
use roster_raft_store::{Reply, Response};
use std::time::{Duration, Instant};

/// How long CREATE TABLE waits for the agents to confirm the replicas before answering anyway
/// (the master keeps creating them; SHOW TABLETS shows CREATING until then).
const CREATE_WAIT: Duration = Duration::from_secs(30);

/// What running a plan produced.
#[derive(Debug)]
pub enum Outcome {
    /// The applier's reply to a write, to be worded for the statement it came from.
    Applied(WriteKind, Reply),
    /// A finished result (reads, session statements, frontend changes, CREATE TABLE).
    Done(QueryResult),
}

/// The applier's answer as the caller sees it: a refusal is an error that says why.
pub fn applied(r: Response) -> Result<Reply, ApiError> {
    match r {
        Response::Ok(reply) => Ok(reply),
        // Refused at apply for lack of privilege (e.g. revoked meanwhile): an access error.
        Response::Refused(e @ DomainError::AccessDenied { .. }) => {
            Err(ApiError::AccessDenied(e.to_string()))
        }
        Response::Refused(e) => Err(ApiError::Refused(e)),
    }
}

pub async fn run(
    fe: &FeNodeHandle,
    session: &mut Session,
    plan: Plan,
) -> Result<Outcome, ApiError> {
    let user = session.user.clone();
    match plan {
        Plan::Write(Write { cmd, kind }) => {
            let reply = applied(fe.propose(Some(&user), cmd).await?)?;
            match (kind, reply) {
                (
                    WriteKind::CreateTable { name },
                    Reply::Table {
                        id: Some(id),
                        created: true,
                    },
                ) => created(fe, &name, id).await.map(Outcome::Done),
                (kind, reply) => Ok(Outcome::Applied(kind, reply)),
            }
        }
        Plan::Frontend { add, voter, addr } => {
            let op = if add {
                LeaderOp::AddFrontend { user, voter, addr }
            } else {
                LeaderOp::DropFrontend { user, voter, addr }
            };
            Ok(Outcome::Done(match fe.leader_op(op).await? {
                LeaderReply::Done(m) => QueryResult::ok(0, m),
                LeaderReply::Applied(r) => applied(r).map(|_| QueryResult::ok(0, ""))?,
            }))
        }
        Plan::Read(r) => read(fe, &r).map(Outcome::Done),
        Plan::Session(op) => session_op(session, op).map(Outcome::Done),
        Plan::Refuse(e) => Err(ApiError::Refused(e)),
    }
}

fn read(fe: &FeNodeHandle, r: &Read) -> Result<QueryResult, ApiError> {
    match r {
        Read::Backends => Ok(show::cluster::show_backends(fe)),
        Read::DroppedBackends => Ok(show::cluster::show_dropped_backends(fe)),
        Read::Frontends => Ok(show::cluster::show_frontends(fe)),
        Read::Config { like } => Ok(show::cluster::show_config(fe, like.as_deref())),
        Read::Grants { user } => show::cluster::show_grants(fe, user),
        Read::Blacklist { all_frontends } => Ok(show::cluster::show_blacklist(fe, *all_frontends)),
        Read::ExplainDecommission { targets } => show::decommission::explain(fe, targets),
        Read::Decommission => Ok(show::decommission::show(fe)),
        Read::DecommissionBlockers { backend } => {
            show::decommission::blockers(fe, backend.as_ref())
        }
        Read::Tables => Ok(show::tables::show_tables(fe)),
        Read::RecycleBin => Ok(show::tables::show_recycle_bin(fe)),
        Read::Tablet { id } => show::tables::show_tablet(fe, *id),
        Read::Tablets { table } => show::tables::show_tablets(fe, table),
        Read::TabletRoutes { table } => show::tables::show_tablet_routes(fe, table),
        Read::ReplicaDistribution { table } => show::tables::show_replica_distribution(fe, table),
    }
}

fn session_op(session: &mut Session, op: SessionOp) -> Result<QueryResult, ApiError> {
    match op {
        SessionOp::Set(assignments) => session.set(&assignments),
        SessionOp::Select(items) => session.select(&items),
        SessionOp::ShowVariables { like } => Ok(session.show_variables(like.as_deref())),
        SessionOp::Use { db } => {
            session.db = Some(db);
            Ok(QueryResult::ok(0, ""))
        }
        SessionOp::ShowDatabases => Ok(QueryResult::rows(
            &["Database"],
            vec![vec![Some("information_schema".into())]],
        )),
    }
}

/// Replicas of table `id` still being created, `None` once the table is gone.
fn creating(state: &ClusterState, id: TableId) -> Option<usize> {
    let t = state.tables.get(&id)?;
    Some(
        t.tablets
            .iter()
            .filter_map(|tid| state.tablets.get(tid))
            .flat_map(|t| &t.replicas)
            .filter(|r| r.state == ReplicaState::Creating)
            .count(),
    )
}

/// CREATE TABLE made table `id`: answer once the agents hold every replica, or after
/// `CREATE_WAIT` saying how many are still being created.
async fn created(fe: &FeNodeHandle, name: &str, id: TableId) -> Result<QueryResult, ApiError> {
    // The master asks the agents; their reports arrive through Raft. Poll the local state once
    // it holds our own write: on a follower the leader's answer can arrive before this FE has
    // applied the entry, and the table would look dropped.
    fe.linearize().await?;
    let deadline = Instant::now() + CREATE_WAIT;
    loop {
        let (left, tablets, replicas) = fe.store().read(|st, _| {
            let t = st.tables.get(&id);
            let tablets = t.map(|t| t.tablets.len()).unwrap_or(0);
            let replicas = t.map(|t| t.allocation.total()).unwrap_or(0) * tablets;
            (creating(st, id), tablets, replicas)
        });
        let message = match left {
            Some(0) => {
                format!("created table {name} (id {id}): {tablets} tablets, {replicas} replicas")
            }
            Some(n) if Instant::now() >= deadline => format!(
                "created table {name} (id {id}); {n} of {replicas} replicas are still being created by their backends (see SHOW TABLETS FROM {name})"
            ),
            // Dropped meanwhile by someone else.
            None => format!("created table {name} (id {id})"),
            Some(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        return Ok(QueryResult::ok(0, message));
    }
}
