//! The catalog's SHOW statements (tables, recycle bin, tablets, routes, replica distribution),
//! read from this FE's applied state.

use roster_membership::model::catalog::TableState;
use roster_membership::query::routing;
use roster_membership::{ClusterState, DomainError, TabletId, model, query};
use roster_node::error::ApiError;
use roster_node::node::FeNodeHandle;
use roster_proto::QueryResult;
use roster_proto::format::{bytes, datetime};

fn s(v: impl ToString) -> Option<String> {
    Some(v.to_string())
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
    let me = fe.id();
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
