//! Decommission progress and blockers, read from this FE's applied state: EXPLAIN (the
//! pre-check alone), SHOW DECOMMISSION and SHOW DECOMMISSION BLOCKERS.

use super::ids_text;
use roster_membership::query::drain::Blocker;
use roster_membership::transition::registry::MembershipOutcome;
use roster_membership::{BackendId, BackendMembership, BackendRef, ClusterState};
use roster_node::error::ApiError;
use roster_proto::QueryResult;
use roster_proto::cell::Cell;
use roster_proto::format::now_ms;
use std::collections::BTreeSet;

use roster_membership::query;
use roster_node::node::FeNodeHandle;

fn s(v: impl ToString) -> Option<String> {
    Some(v.to_string())
}

/// The backends whose membership a DECOMMISSION or CANCEL changed.
pub fn changed(outcomes: &[(BackendId, MembershipOutcome)]) -> Vec<BackendId> {
    outcomes
        .iter()
        .filter(|(_, o)| *o == MembershipOutcome::Changed)
        .map(|(id, _)| *id)
        .collect()
}

/// The answer to DECOMMISSION, one clause per kind of outcome (`roster node` prints it as is).
pub fn decommission_message(outcomes: &[(BackendId, MembershipOutcome)]) -> String {
    let of = |want: &dyn Fn(&MembershipOutcome) -> bool| -> Vec<BackendId> {
        outcomes
            .iter()
            .filter(|(_, o)| want(o))
            .map(|(id, _)| *id)
            .collect()
    };
    let mut parts = Vec::new();
    let started = changed(outcomes);
    if !started.is_empty() {
        parts.push(format!(
            "backends {} are now DECOMMISSIONING; watch SHOW BACKENDS",
            ids_text(&started)
        ));
    }
    let clauses: [(Vec<BackendId>, &str); 3] = [
        (
            of(&|o| matches!(o, MembershipOutcome::Unchanged(_))),
            "already DECOMMISSIONING",
        ),
        (
            of(&|o| *o == MembershipOutcome::AlreadyDecommissioned { dropped: false }),
            "already decommissioned",
        ),
        (
            of(&|o| *o == MembershipOutcome::AlreadyDecommissioned { dropped: true }),
            "already decommissioned and dropped by the master",
        ),
    ];
    for (ids, what) in clauses {
        if !ids.is_empty() {
            parts.push(format!("backends {} are {what}", ids_text(&ids)));
        }
    }
    parts.join("; ")
}

/// The answer to CANCEL DECOMMISSION: a backend that was not decommissioning is said so.
pub fn cancel_message(outcomes: &[(BackendId, MembershipOutcome)]) -> String {
    let mut parts = Vec::new();
    let back = changed(outcomes);
    if !back.is_empty() {
        parts.push(format!("backends back to ACTIVE: {}", ids_text(&back)));
    }
    let idle: Vec<BackendId> = outcomes
        .iter()
        .filter(|(_, o)| *o != MembershipOutcome::Changed)
        .map(|(id, _)| *id)
        .collect();
    if !idle.is_empty() {
        parts.push(format!(
            "backends {} are ACTIVE and not being decommissioned: nothing to cancel",
            ids_text(&idle)
        ));
    }
    parts.join("; ")
}

/// EXPLAIN's readiness of a backend whose decommission already finished.
const ALREADY: &str = "ALREADY DECOMMISSIONED";

/// EXPLAIN ALTER SYSTEM DECOMMISSION BACKEND: what the drain would move and everything that
/// would block it, one row per blocker (or one READY row per backend). Changes nothing.
pub fn explain(fe: &FeNodeHandle, targets: &[BackendRef]) -> Result<QueryResult, ApiError> {
    let rows = fe.store().read(|state, _| -> Result<_, ApiError> {
        let mut rows = Vec::new();
        let mut live = Vec::new();
        for r in targets {
            match query::backends::decommissioned_tombstone(state, r) {
                // The re-run of a finished decommission: nothing to do, and it would succeed.
                Some(t) => rows.push(vec![
                    s(t.id),
                    s(&t.addr),
                    s("DECOMMISSIONED (dropped)"),
                    s(ALREADY),
                    s(0),
                    s(0),
                    s(0),
                    None,
                    None,
                    None,
                ]),
                None => {
                    let id = query::backends::resolve(state, std::slice::from_ref(r))?[0];
                    if !live.contains(&id) {
                        live.push(id);
                    }
                }
            }
        }
        let leaving: BTreeSet<BackendId> = live.iter().copied().collect();
        let blockers = query::drain::precheck(state, &leaving);
        for b in live.iter().filter_map(|id| state.backends.get(id)) {
            let (tablets, bytes) = query::drain::live_on(state, b.id);
            let mine: Vec<&Blocker> = blockers.iter().filter(|x| x.backend == b.id).collect();
            let readiness = if b.membership == BackendMembership::Decommissioned {
                ALREADY.to_string()
            } else if !blockers.is_empty() {
                format!("REFUSED: {} tablet(s) cannot be moved", blockers.len())
            } else {
                "READY".to_string()
            };
            let base = vec![
                s(b.id),
                s(&b.addr),
                s(b.membership.as_str()),
                s(&readiness),
                s(tablets),
                s(bytes),
                s(mine.len()),
            ];
            if mine.is_empty() {
                let mut row = base.clone();
                row.extend([None, None, None]);
                rows.push(row);
            }
            for x in mine {
                let mut row = base.clone();
                row.extend([s(x.tablet), s(&x.table), s(&x.reason)]);
                rows.push(row);
            }
        }
        Ok(rows)
    })?;
    Ok(QueryResult::rows(
        &[
            "BackendId",
            "Address",
            "Membership",
            "Readiness",
            "TabletsToMove",
            "BytesToMove",
            "Blockers",
            "BlockedTabletId",
            "Table",
            "Reason",
        ],
        rows,
    ))
}

/// SHOW DECOMMISSION: one row per DECOMMISSIONING (or DECOMMISSIONED, not dropped) backend.
pub fn show(fe: &FeNodeHandle) -> QueryResult {
    let now = now_ms();
    let rows = fe.store().read(|state, _| {
        let blockers = query::drain::blockers(state, now);
        state
            .backends
            .values()
            .filter(|b| b.membership != BackendMembership::Active)
            .map(|b| {
                let (left, bytes_left) = query::drain::live_on(state, b.id);
                let elapsed_s = b
                    .decommission_started_ms
                    .map(|t| now.saturating_sub(t) as f64 / 1000.0)
                    .unwrap_or(0.0);
                let rate = if elapsed_s > 0.0 {
                    b.drain.bytes_moved as f64 / elapsed_s
                } else {
                    0.0
                };
                let eta = if bytes_left == 0 {
                    Cell::Int(0)
                } else if rate > 0.0 {
                    Cell::int((bytes_left as f64 / rate).ceil() as u64)
                } else {
                    Cell::Null
                };
                vec![
                    Cell::int(b.id.0),
                    Cell::text(b.membership.as_str()),
                    Cell::int(b.drain.tablets_total),
                    Cell::int(left),
                    Cell::int(b.drain.bytes_moved),
                    Cell::int(bytes_left),
                    Cell::int(rate.round() as u64),
                    eta,
                    Cell::int(blockers.iter().filter(|x| x.backend == b.id).count()),
                ]
            })
            .collect()
    });
    QueryResult::typed(
        &[
            "BackendId",
            "State",
            "TabletsTotal",
            "TabletsLeft",
            "BytesMoved",
            "BytesLeft",
            "RateBytesPerSec",
            "EtaSec",
            "Blockers",
        ],
        rows,
    )
}

/// SHOW DECOMMISSION BLOCKERS [FOR "id"].
pub fn blockers(fe: &FeNodeHandle, target: Option<&BackendRef>) -> Result<QueryResult, ApiError> {
    let now = now_ms();
    let rows = fe
        .store()
        .read(|state: &ClusterState, _| -> Result<_, ApiError> {
            let only = match target {
                Some(t) => Some(query::backends::resolve(state, std::slice::from_ref(t))?[0]),
                None => None,
            };
            Ok(query::drain::blockers(state, now)
                .into_iter()
                .filter(|b| only.is_none_or(|o| o == b.backend))
                .map(|b| {
                    vec![
                        Cell::int(b.tablet.0),
                        Cell::text(&b.table),
                        Cell::int(b.backend.0),
                        Cell::text(&b.reason),
                    ]
                })
                .collect::<Vec<_>>())
        })?;
    Ok(QueryResult::typed(
        &["TabletId", "Table", "BackendId", "Reason"],
        rows,
    ))
}
