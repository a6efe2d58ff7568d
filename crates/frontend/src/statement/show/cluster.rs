//! Result sets of the SHOW statements, built from this FE's applied state.

use crate::statement::session::like;
use roster_membership::model::settings::SETTINGS;
use roster_membership::{BackendMembership, model, query};
use roster_node::error::ApiError;
use roster_node::node::FeNodeHandle;
use roster_proto::QueryResult;
use roster_proto::VERSION;
use roster_proto::cell::Cell;
use roster_proto::format::{datetime, now_ms};

/// SPEC section 2 column order.
pub const BACKEND_COLUMNS: &[&str] = &[
    "BackendId",
    "Host",
    "HeartbeatPort",
    "BePort",
    "HttpPort",
    "BrpcPort",
    "LastStartTime",
    "LastHeartbeat",
    "Alive",
    "SystemDecommissioned",
    "TabletNum",
    "DataUsedCapacity",
    "AvailCapacity",
    "TotalCapacity",
    "UsedPct",
    "Tag",
    "ErrMsg",
    "Version",
    "Status",
    "HeartbeatFailureCounter",
    "NodeRole",
];

pub const FRONTEND_COLUMNS: &[&str] = &[
    "Name",
    "Host",
    "EditLogPort",
    "HttpPort",
    "QueryPort",
    "RpcPort",
    "Role",
    "IsMaster",
    "ClusterId",
    "Join",
    "Alive",
    "ReplayedJournalId",
    "LastHeartbeat",
    "ErrMsg",
    "Version",
    "CurrentConnected",
];

fn s(v: impl ToString) -> Option<String> {
    Some(v.to_string())
}

/// An agent port as SHOW BACKENDS prints it: -1 (JSON null) until a heartbeat reported it.
fn port(p: Option<u16>) -> Cell {
    match p {
        Some(p) => Cell::int(p),
        None => Cell::Sql("-1".into(), Box::new(Cell::Null)),
    }
}

pub fn show_backends(fe: &FeNodeHandle) -> QueryResult {
    let rows = fe.store().read(|state, _| {
        // A CLONING replica is not one yet: TabletNum counts it once its move finishes. The
        // counts come from the catalog's index; the cloning replicas are the moves' (few).
        let mut tablets = query::catalog::replica_counts(state);
        for m in state.moves.values() {
            let cloning = state.tablets.get(&m.plan.tablet).is_some_and(|t| {
                t.replicas.iter().any(|r| {
                    r.backend == m.plan.dest && r.state == model::catalog::ReplicaState::Cloning
                })
            });
            if cloning && let Some(n) = tablets.get_mut(&m.plan.dest) {
                *n = n.saturating_sub(1);
            }
        }
        state
            .backends
            .values()
            .map(|b| {
                let l = &b.liveness;
                let used_pct = if l.total_capacity_bytes == 0 {
                    0.0
                } else {
                    100.0 * (l.total_capacity_bytes - l.avail_capacity_bytes.min(l.total_capacity_bytes)) as f64
                        / l.total_capacity_bytes as f64
                };
                let status = format!(
                    "{{\"lastSuccessReportTabletsTime\":\"N/A\",\"isQueryDisabled\":{},\"isLoadDisabled\":{},\"membership\":\"{}\",\"isDraining\":{}}}",
                    b.disable_query,
                    b.disable_load,
                    b.membership.as_str(),
                    b.draining.is_some()
                );
                let status_obj = Cell::Object(vec![
                    ("lastSuccessReportTabletsTime", Cell::Time(None)),
                    ("isQueryDisabled", Cell::Bool(b.disable_query)),
                    ("isLoadDisabled", Cell::Bool(b.disable_load)),
                    ("membership", Cell::text(b.membership.as_str())),
                    ("isDraining", Cell::Bool(b.draining.is_some())),
                ]);
                let opt = |v: &Option<String>| v.as_ref().map(Cell::text).unwrap_or(Cell::Null);
                let tag_obj = Cell::Object(vec![
                    ("location", Cell::text(&b.tags.location)),
                    ("compute_group_name", opt(&b.tags.compute_group_name)),
                    ("public_endpoint", opt(&b.tags.public_endpoint)),
                    ("private_endpoint", opt(&b.tags.private_endpoint)),
                ]);
                vec![
                    Cell::int(b.id.0),
                    Cell::text(&b.addr.host),
                    Cell::int(b.addr.port),
                    port(l.be_port),
                    port(l.http_port),
                    port(l.brpc_port),
                    Cell::Time(l.last_start_time_ms),
                    Cell::Time(l.last_heartbeat_ms),
                    Cell::Bool(l.alive),
                    Cell::Bool(b.membership != BackendMembership::Active),
                    Cell::int(tablets.get(&b.id).copied().unwrap_or(0)),
                    Cell::Bytes(l.data_used_capacity_bytes),
                    Cell::Bytes(l.avail_capacity_bytes),
                    Cell::Bytes(l.total_capacity_bytes),
                    Cell::Pct(used_pct),
                    Cell::Sql(b.tags.to_json(), Box::new(tag_obj)),
                    Cell::text(&l.err_msg),
                    Cell::text(&l.version),
                    Cell::Sql(status, Box::new(status_obj)),
                    Cell::int(l.heartbeat_failure_counter),
                    Cell::text("mix"),
                ]
            })
            .collect()
    });
    QueryResult::typed(BACKEND_COLUMNS, rows)
}

/// SHOW DROPPED BACKENDS: every tombstone, and for a backend the master dropped after its
/// decommission, what that moved (`roster node status` lists these as decommissioned).
pub fn show_dropped_backends(fe: &FeNodeHandle) -> QueryResult {
    let rows = fe.store().read(|state, _| {
        state
            .tombstones
            .values()
            .map(|t| {
                let d = t.decommission.as_ref();
                vec![
                    s(t.id),
                    s(&t.addr.host),
                    s(t.addr.port),
                    s(datetime(t.dropped_at_ms)),
                    s(d.is_some()),
                    d.and_then(|d| d.started_ms).map(datetime),
                    d.map(|d| d.drain.tablets_moved.to_string()),
                    d.map(|d| d.drain.bytes_moved.to_string()),
                ]
            })
            .collect()
    });
    QueryResult::rows(
        &[
            "BackendId",
            "Host",
            "HeartbeatPort",
            "DroppedAt",
            "Decommissioned",
            "DecommissionStartedAt",
            "TabletsMoved",
            "BytesMoved",
        ],
        rows,
    )
}

pub fn show_frontends(fe: &FeNodeHandle) -> QueryResult {
    let (nodes, voters) = fe.members();
    let leader = fe.leader().map(|(id, _)| id);
    let peers = fe.peer_status();
    let me = fe.id();
    let now = now_ms();
    let my_applied = fe.node_info().last_applied_index;
    let cluster_id = fe.config().cluster_id.clone();
    let rows = nodes
        .iter()
        .map(|(id, n)| {
            let (alive, applied, last_hb, err, version, name) = if *id == me {
                // Why this FE is failing, if it is: a storage fault (it stops), low disk space.
                let err = fe
                    .storage_fault()
                    .map(|f| format!("storage fault: {f}"))
                    .or_else(|| fe.nospace())
                    .unwrap_or_default();
                (
                    fe.storage_fault().is_none(),
                    Some(my_applied),
                    Some(now),
                    err,
                    VERSION.to_string(),
                    fe.config().name.clone(),
                )
            } else {
                let p = peers.get(id).cloned().unwrap_or_default();
                let alive = p.last_ok_ms.is_some_and(|t| now.saturating_sub(t) <= 3_000);
                let info = p.info.as_ref();
                (
                    alive,
                    info.map(|i| i.last_applied_index),
                    p.last_ok_ms,
                    p.err.clone(),
                    info.map(|i| i.version.clone()).unwrap_or_default(),
                    info.map(|i| i.name.clone())
                        .unwrap_or_else(|| format!("fe{id}")),
                )
            };
            vec![
                Cell::text(name),
                Cell::text(&n.host),
                Cell::int(n.edit_log_port),
                Cell::int(n.http_port),
                Cell::int(n.query_port),
                Cell::int(n.rpc_port),
                Cell::text(if voters.contains(id) {
                    "FOLLOWER"
                } else {
                    "OBSERVER"
                }),
                Cell::Bool(leader == Some(*id)),
                Cell::text(&cluster_id),
                Cell::Bool(true),
                Cell::Bool(alive),
                applied.map(Cell::int).unwrap_or(Cell::Null),
                Cell::Time(last_hb),
                Cell::text(err),
                Cell::text(version),
                Cell::Bool(*id == me),
            ]
        })
        .collect();
    QueryResult::typed(FRONTEND_COLUMNS, rows)
}

pub fn show_config(fe: &FeNodeHandle, pattern: Option<&str>) -> QueryResult {
    let rows = fe.store().read(|state, _| {
        state
            .meta
            .settings
            .list()
            .into_iter()
            .filter(|(name, ..)| pattern.is_none_or(|p| like(p, name)))
            .map(|(name, value, default, desc)| {
                let kind = SETTINGS
                    .iter()
                    .find(|x| x.0 == name)
                    .map(|x| format!("{:?}", x.1).to_lowercase())
                    .unwrap_or_default();
                vec![
                    s(name),
                    s(value),
                    s(kind),
                    s(true),
                    s(true),
                    s(format!("{desc} (default {default})")),
                ]
            })
            .collect()
    });
    QueryResult::rows(
        &["Key", "Value", "Type", "IsMutable", "MasterOnly", "Comment"],
        rows,
    )
}

/// SHOW GRANTS [FOR 'u'].
pub fn show_grants(fe: &FeNodeHandle, user: &str) -> Result<QueryResult, ApiError> {
    let row = fe.store().read(|state, _| {
        state.users.get(&user.to_string()).map(|u| {
            let privs: Vec<&str> = u.privileges.iter().map(|p| p.as_str()).collect();
            vec![
                s(format!("'{}'@'%'", u.name)),
                s(if u.password.is_some() { "Yes" } else { "No" }),
                s(privs.join(",")),
                s(datetime(u.created_ms)),
            ]
        })
    });
    let row = row.ok_or_else(|| {
        ApiError::Refused(roster_membership::DomainError::UnknownUser(
            user.to_string(),
        ))
    })?;
    Ok(QueryResult::rows(
        &["UserIdentity", "Password", "GlobalPrivs", "CreatedTime"],
        vec![row],
    ))
}

/// SHOW BACKEND BLACKLIST [FROM ALL FRONTENDS]: StarRocks's columns, then LastFailure (what the
/// last failed connection said). CheckTimePeriod(s) shows black_host_history_sec, the window
/// over which LostConnectionNumberInPeriod counts this FE's failed connections, as StarRocks's
/// documentation says (its code shows black_host_connect_failures_within_time there, which is
/// a count, not a period). LostConnectionTime is when the entry was added (for MANUAL: by the
/// statement).
pub fn show_blacklist(fe: &FeNodeHandle, all_frontends: bool) -> QueryResult {
    let (nodes, _) = fe.members();
    let me = fe.id();
    let rows = fe.store().read(|state, _| {
        let period = state.meta.settings.values().black_host_history_sec;
        let now = roster_proto::format::now_ms();
        state
            .blacklist
            .values()
            .filter(|e| {
                all_frontends
                    || e.frontend == me
                    || roster_node::bugs::on(roster_node::bugs::Bug::BlacklistGlobal)
            })
            .map(|e| {
                let mut row = Vec::new();
                if all_frontends {
                    let name = nodes
                        .get(&e.frontend)
                        .map(|n| n.edit_log_addr())
                        .unwrap_or_else(|| format!("fe{}", e.frontend));
                    row.push(Cell::text(name));
                }
                row.extend([
                    Cell::int(e.backend.0),
                    Cell::text(e.kind.as_str()),
                    Cell::Time(Some(e.added_ms)),
                    Cell::int(e.failures_within(now, period.saturating_mul(1000))),
                    Cell::int(period),
                    Cell::text(&e.last_failure),
                ]);
                row
            })
            .collect()
    });
    let cols = [
        "BackendId",
        "AddBlackListType",
        "LostConnectionTime",
        "LostConnectionNumberInPeriod",
        "CheckTimePeriod(s)",
        "LastFailure",
    ];
    if all_frontends {
        let mut c = vec!["Frontend"];
        c.extend(cols);
        QueryResult::typed(&c, rows)
    } else {
        QueryResult::typed(&cols, rows)
    }
}
