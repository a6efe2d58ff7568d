//! Tables and tablets: CREATE / DROP / RECOVER TABLE (proposed through Raft; CREATE then waits
//! until the agents hold every replica) and the catalog's SHOW statements, read from this FE's
//! applied state.

use super::{QueryResult, applied, unexpected};
use roster_membership::model::catalog::{ReplicaState, TableDef, TableState};
use roster_membership::query::routing;
use roster_membership::{ClusterState, DomainError, TableId, TabletId, model, query};
use roster_node::error::ApiError;
use roster_node::node::FeNodeHandle;
use roster_proto::format::{bytes, datetime};
use roster_raft_store::{Cmd, Reply};
use std::time::{Duration, Instant};

/// How long CREATE TABLE waits for the agents to confirm the replicas before answering anyway
/// (the master keeps creating them; SHOW TABLETS shows CREATING until then).
const CREATE_WAIT: Duration = Duration::from_secs(30);

fn s(v: impl ToString) -> Option<String> {
    Some(v.to_string())
}

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

pub async fn create_table(
    fe: &FeNodeHandle,
    who: Option<&str>,
    def: TableDef,
) -> Result<QueryResult, ApiError> {
    let name = def.name.clone();
    let (id, created) = match applied(fe.propose(who, Cmd::CreateTable(def)).await?)? {
        Reply::Table {
            id: Some(id),
            created,
        } => (id, created),
        other => return Err(unexpected(other)),
    };
    if !created {
        return Ok(QueryResult::ok(
            0,
            format!("table {name} already exists (id {id})"),
        ));
    }
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
        match left {
            Some(0) => {
                return Ok(QueryResult::ok(
                    0,
                    format!(
                        "created table {name} (id {id}): {tablets} tablets, {replicas} replicas"
                    ),
                ));
            }
            Some(n) if Instant::now() >= deadline => {
                return Ok(QueryResult::ok(
                    0,
                    format!(
                        "created table {name} (id {id}); {n} of {replicas} replicas are still being created by their backends (see SHOW TABLETS FROM {name})"
                    ),
                ));
            }
            // Dropped meanwhile by someone else.
            None => {
                return Ok(QueryResult::ok(
                    0,
                    format!("created table {name} (id {id})"),
                ));
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

pub async fn drop_table(
    fe: &FeNodeHandle,
    who: Option<&str>,
    name: &str,
    if_exists: bool,
    force: bool,
) -> Result<QueryResult, ApiError> {
    let cmd = Cmd::DropTable {
        name: name.to_string(),
        if_exists,
        force,
    };
    match applied(fe.propose(who, cmd).await?)? {
        Reply::Table { id: None, .. } => Ok(QueryResult::ok(0, format!("no table {name}"))),
        Reply::Table { id: Some(id), .. } if force => Ok(QueryResult::ok(
            0,
            format!("dropped table {name} (id {id}); its replicas are being deleted"),
        )),
        Reply::Table { id: Some(id), .. } => Ok(QueryResult::ok(
            0,
            format!(
                "table {name} (id {id}) is in the recycle bin; RECOVER TABLE {name} brings it back"
            ),
        )),
        other => Err(unexpected(other)),
    }
}

pub async fn recover_table(
    fe: &FeNodeHandle,
    who: Option<&str>,
    name: &str,
) -> Result<QueryResult, ApiError> {
    let cmd = Cmd::RecoverTable {
        name: name.to_string(),
    };
    match applied(fe.propose(who, cmd).await?)? {
        Reply::Table { id: Some(id), .. } => Ok(QueryResult::ok(
            0,
            format!("recovered table {name} (id {id})"),
        )),
        other => Err(unexpected(other)),
    }
}

fn table_bytes(state: &ClusterState, t: &model::catalog::Table) -> u64 {
    t.tablets
        .iter()
        .filter_map(|id| state.tablets.get(id))
        .flat_map(|t| &t.replicas)
        .map(|r| r.bytes)
        .sum()
}

/// SHOW TABLES: the tables in normal use (Doris's one-column form).
pub fn show_tables(fe: &FeNodeHandle) -> QueryResult {
    let rows = fe.store().read(|st, _| {
        let mut names: Vec<String> = st
            .tables
            .values()
            .filter(|t| t.state == TableState::Normal)
            .map(|t| t.name.clone())
            .collect();
        names.sort();
        names.into_iter().map(|n| vec![s(n)]).collect()
    });
    QueryResult::rows(&["Tables_in_roster"], rows)
}

/// SHOW CATALOG RECYCLE BIN: Doris's columns, plus when each table will be purged.
pub fn show_recycle_bin(fe: &FeNodeHandle) -> QueryResult {
    let rows = fe.store().read(|st, _| {
        let expire_ms = st
            .meta
            .settings
            .values()
            .catalog_trash_expire_second
            .saturating_mul(1000);
        st.tables
            .values()
            .filter_map(|t| match t.state {
                TableState::Recycled { dropped_at_ms } => Some(vec![
                    s("Table"),
                    s(&t.name),
                    s(0),
                    s(t.id),
                    s(""),
                    s(datetime(dropped_at_ms)),
                    s(bytes(table_bytes(st, t))),
                    s(bytes(0)),
                    s(datetime(dropped_at_ms.saturating_add(expire_ms))),
                ]),
                TableState::Normal => None,
            })
            .collect()
    });
    QueryResult::rows(
        &[
            "Type",
            "Name",
            "DbId",
            "TableId",
            "PartitionId",
            "DropTime",
            "DataSize",
            "RemoteDataSize",
            "ExpireTime",
        ],
        rows,
    )
}

fn table_named<'a>(
    st: &'a ClusterState,
    name: &str,
) -> Result<&'a model::catalog::Table, ApiError> {
    query::catalog::table_by_name(st, name)
        .ok_or_else(|| ApiError::Refused(DomainError::UnknownTable(name.to_string())))
}

const REPLICA_COLUMNS: &[&str] = &[
    "TabletId",
    "BackendId",
    "Host",
    "State",
    "LocalDataSize",
    "Checksum",
    "BackendAlive",
];

fn replica_rows(st: &ClusterState, tablet: TabletId) -> Vec<Vec<Option<String>>> {
    let Some(t) = st.tablets.get(&tablet) else {
        return Vec::new();
    };
    t.replicas
        .iter()
        .map(|r| {
            let b = st.backends.get(&r.backend);
            vec![
                s(t.id),
                s(r.backend),
                b.map(|b| b.addr.to_string()),
                s(r.state.as_str()),
                s(r.bytes),
                r.checksum.map(|c| format!("{c:08x}")),
                s(b.is_some_and(|b| b.liveness.alive)),
            ]
        })
        .collect()
}

/// SHOW TABLETS FROM name: one row per replica, tablets in bucket order.
pub fn show_tablets(fe: &FeNodeHandle, name: &str) -> Result<QueryResult, ApiError> {
    let rows = fe.store().read(|st, _| -> Result<_, ApiError> {
        let t = table_named(st, name)?;
        Ok(t.tablets
            .iter()
            .flat_map(|id| replica_rows(st, *id))
            .collect())
    })?;
    Ok(QueryResult::rows(REPLICA_COLUMNS, rows))
}

/// SHOW TABLET id: the tablet's table and its replicas, one row each.
pub fn show_tablet(fe: &FeNodeHandle, id: u64) -> Result<QueryResult, ApiError> {
    let rows = fe.store().read(|st, _| -> Result<_, ApiError> {
        let tablet = st
            .tablets
            .get(&TabletId(id))
            .ok_or_else(|| ApiError::Invalid(format!("tablet {id} does not exist")))?;
        let table = st.tables.get(&tablet.table);
        let (name, state) = match table {
            Some(t) => (
                t.name.clone(),
                match t.state {
                    TableState::Normal => "NORMAL",
                    TableState::Recycled { .. } => "RECYCLED",
                },
            ),
            None => (String::new(), ""),
        };
        Ok(replica_rows(st, tablet.id)
            .into_iter()
            .map(|mut row| {
                let mut out = vec![s(&name), s(tablet.table), s(state)];
                out.append(&mut row);
                out
            })
            .collect::<Vec<_>>())
    })?;
    let mut columns = vec!["TableName", "TableId", "TableState"];
    columns.extend_from_slice(REPLICA_COLUMNS);
    Ok(QueryResult::rows(&columns, rows))
}

/// One tablet's route from this FE: the chosen replica's backend and where it listens, or
/// `None`, and why other replicas were passed over.
#[derive(Debug, Clone)]
pub struct TabletRoute {
    pub tablet: TabletId,
    pub backend: Option<(roster_membership::BackendId, String, u16)>,
    pub reason: String,
}

/// The routes this FE would take to every tablet of `name` (SPEC section 5): its own
/// blacklist, never another FE's.
pub fn tablet_routes(fe: &FeNodeHandle, name: &str) -> Result<Vec<TabletRoute>, ApiError> {
    let me = roster_membership::FrontendId(fe.id());
    fe.store().read(|st, _| -> Result<_, ApiError> {
        let t = table_named(st, name)?;
        Ok(t.tablets
            .iter()
            .filter_map(|id| st.tablets.get(id))
            .map(|tablet| {
                let r = routing::route(st, me, tablet);
                let backend = r
                    .chosen
                    .and_then(|b| st.backends.get(&b))
                    .map(|b| (b.id, b.addr.host.clone(), b.liveness.be_port.unwrap_or(0)));
                let reason = match (&backend, r.skipped.is_empty()) {
                    (Some(_), true) => String::new(),
                    (Some(_), false) => format!("passed over {}", r.reasons()),
                    (None, true) => "the tablet has no replica".to_string(),
                    (None, false) => format!("no replica qualifies: {}", r.reasons()),
                };
                TabletRoute {
                    tablet: tablet.id,
                    backend,
                    reason,
                }
            })
            .collect())
    })
}

/// SHOW TABLET ROUTES FROM t: one row per tablet, the replica this FE would query.
pub fn show_tablet_routes(fe: &FeNodeHandle, name: &str) -> Result<QueryResult, ApiError> {
    let rows = tablet_routes(fe, name)?
        .into_iter()
        .map(|r| match r.backend {
            Some((id, host, be_port)) => vec![s(r.tablet), s(id), s(host), s(be_port), s(r.reason)],
            None => vec![s(r.tablet), s("NONE"), None, None, s(r.reason)],
        })
        .collect();
    Ok(QueryResult::rows(
        &["TabletId", "BackendId", "Host", "BePort", "Reason"],
        rows,
    ))
}

fn graph(part: u64, total: u64) -> (String, String) {
    let pct = if total == 0 {
        0.0
    } else {
        100.0 * part as f64 / total as f64
    };
    (
        "#".repeat((pct / 2.0).round() as usize),
        format!("{pct:.2} %"),
    )
}

/// ADMIN SHOW REPLICA DISTRIBUTION FROM name: replicas and bytes per backend (every backend,
/// so an empty one shows as 0), in Doris's columns.
pub fn show_replica_distribution(fe: &FeNodeHandle, name: &str) -> Result<QueryResult, ApiError> {
    let rows = fe.store().read(|st, _| -> Result<_, ApiError> {
        let t = table_named(st, name)?;
        let mut per: std::collections::BTreeMap<_, (u64, u64)> =
            st.backends.values().map(|b| (b.id, (0, 0))).collect();
        for r in t
            .tablets
            .iter()
            .filter_map(|id| st.tablets.get(id))
            .flat_map(|t| &t.replicas)
        {
            let e = per.entry(r.backend).or_insert((0, 0));
            e.0 += 1;
            e.1 += r.bytes;
        }
        let (n_total, b_total) = per
            .values()
            .fold((0, 0), |(n, b), (n2, b2)| (n + n2, b + b2));
        Ok(per
            .into_iter()
            .map(|(id, (n, b))| {
                let (ng, np) = graph(n, n_total);
                let (bg, bp) = graph(b, b_total);
                vec![s(id), s(n), s(b), s(ng), s(np), s(bg), s(bp)]
            })
            .collect::<Vec<_>>())
    })?;
    Ok(QueryResult::rows(
        &[
            "BackendId",
            "ReplicaNum",
            "ReplicaSize",
            "NumGraph",
            "NumPercent",
            "SizeGraph",
            "SizePercent",
        ],
        rows,
    ))
}
