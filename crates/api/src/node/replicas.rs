//! The master's replica reconciler: every half second it compares the catalog with what each
//! alive backend reports holding (`ListReplicas`) and closes the gap: it asks agents to create
//! replicas the catalog placed on them, records what they report (CREATING -> NORMAL, sizes,
//! checksums) through Raft, and deletes files of replicas the catalog no longer has there
//! (DROP TABLE FORCE, recycle-bin expiry, DROPP of a table's last use) and of tablet ids it
//! never gave out (made by a direct call; in two reports in a row). It also proposes the
//! recycle-bin expiry when a dropped table's time is up. Decisions are proposed on this FE only,
//! like heartbeat verdicts. Each round costs one list call per alive backend.

use super::moves::{Executor, propose};
use super::{FeNodeHandle, Inner};
use openraft::async_runtime::watch::WatchReceiver;
use roster_membership::model::catalog::{ReplicaReport, ReplicaState};
use roster_membership::{BackendId, HostPort, TabletId, query};
use roster_proto::format::now_ms;
use roster_proto::pb::backend::{CreateReplicaRequest, DropReplicaRequest, ListReplicasRequest};
use roster_raft_store::Cmd;
use roster_transport::cluster_token::AgentClient;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Weak;
use std::time::Duration;

const ROUND: Duration = Duration::from_millis(500);
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Creating a filled replica writes real bytes: allow for a slow disk (10 MB/s) on top.
const FILL_BYTES_PER_SEC_FLOOR: u64 = 10 << 20;

/// What the catalog expects one backend to hold.
#[derive(Debug, Clone)]
struct Expected {
    table_id: u64,
    fill_bytes: u64,
    state: ReplicaState,
    bytes: u64,
    checksum: Option<u32>,
}

struct BackendWork {
    id: BackendId,
    addr: HostPort,
    expected: BTreeMap<TabletId, Expected>,
}

/// The work per alive backend, the next catalog id, and every tablet the catalog has.
fn plan(fe: &FeNodeHandle) -> (Vec<BackendWork>, u64, BTreeSet<TabletId>) {
    fe.store().read(|s, _| {
        let mut work: BTreeMap<BackendId, BackendWork> = s
            .backends
            .values()
            .filter(|b| b.liveness.alive)
            .map(|b| {
                (
                    b.id,
                    BackendWork {
                        id: b.id,
                        addr: b.addr.clone(),
                        expected: BTreeMap::new(),
                    },
                )
            })
            .collect();
        for t in s.tablets.values() {
            let fill_bytes = s
                .tables
                .get(&t.table)
                .map(|x| x.fill_bytes_per_tablet)
                .unwrap_or(0);
            for r in &t.replicas {
                if let Some(w) = work.get_mut(&r.backend) {
                    w.expected.insert(
                        t.id,
                        Expected {
                            table_id: t.table.0,
                            fill_bytes,
                            state: r.state,
                            bytes: r.bytes,
                            checksum: r.checksum,
                        },
                    );
                }
            }
        }
        (
            work.into_values().collect(),
            s.meta.next_catalog_id,
            s.tablets.keys().copied().collect(),
        )
    })
}

fn client(fe: &FeNodeHandle, addr: &HostPort) -> Result<AgentClient, String> {
    fe.agent_client(&addr.to_string())
        .map_err(|e| e.to_string())
}

fn timed<T>(msg: T, timeout: Duration) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(timeout);
    r
}

/// One alive backend's tablet report, or `None` if it did not answer.
async fn list(fe: &FeNodeHandle, id: BackendId, addr: &HostPort) -> Option<Held> {
    let mut c = client(fe, addr).ok()?;
    match c
        .list_replicas(timed(ListReplicasRequest {}, CALL_TIMEOUT))
        .await
    {
        Ok(r) => Some(
            r.into_inner()
                .replicas
                .into_iter()
                .map(|r| (TabletId(r.tablet_id), r))
                .collect(),
        ),
        Err(s) => {
            tracing::debug!(backend = %id, "tablet report failed: {}", s.message());
            None
        }
    }
}

type Held = BTreeMap<TabletId, roster_proto::pb::backend::ReplicaInfo>;

/// Bring one backend in line with the catalog; returns what to record, and the NORMAL
/// replicas whose files the backend no longer has.
/// What one backend's round found: replicas to record, NORMAL replicas whose files are
/// gone, and orphans seen for the first time (dropped if still there next round).
#[derive(Default)]
struct Found {
    reports: Vec<ReplicaReport>,
    missing: Vec<(TabletId, BackendId)>,
    orphans: Vec<(TabletId, BackendId)>,
}

async fn reconcile_backend(
    fe: &FeNodeHandle,
    w: BackendWork,
    held: Held,
    next_catalog_id: u64,
    catalog: &BTreeSet<TabletId>,
    orphans_before: &BTreeSet<(TabletId, BackendId)>,
) -> Found {
    let mut reports = Vec::new();
    let mut missing = Vec::new();
    let mut orphans = Vec::new();
    let Ok(mut c) = client(fe, &w.addr) else {
        return Found::default();
    };
    let report = |tablet: TabletId, bytes: u64, checksum: u32| ReplicaReport {
        tablet,
        backend: w.id,
        bytes,
        checksum,
    };
    for (tablet, exp) in &w.expected {
        match held.get(tablet) {
            // A CLONING replica is finished by its move, which checks the checksum.
            Some(h)
                if exp.state == ReplicaState::Creating
                    || exp.state == ReplicaState::Normal
                        && (exp.bytes != h.bytes || exp.checksum != Some(h.checksum)) =>
            {
                reports.push(report(*tablet, h.bytes, h.checksum));
            }
            Some(_) => {}
            None if exp.state == ReplicaState::Creating => {
                let timeout =
                    CALL_TIMEOUT + Duration::from_secs(exp.fill_bytes / FILL_BYTES_PER_SEC_FLOOR);
                let req = CreateReplicaRequest {
                    tablet_id: tablet.0,
                    table_id: exp.table_id,
                    fill_bytes: exp.fill_bytes,
                };
                match c.create_replica(timed(req, timeout)).await {
                    Ok(r) => {
                        let r = r.into_inner();
                        reports.push(report(*tablet, r.bytes, r.checksum));
                    }
                    Err(s) => tracing::warn!(
                        backend = %w.id, %tablet,
                        "creating replica failed: {}", s.message()
                    ),
                }
            }
            // A NORMAL replica whose files are gone: lost if still gone next round.
            None if exp.state == ReplicaState::Normal => missing.push((*tablet, w.id)),
            None => {}
        }
    }
    for tablet in held.keys() {
        if w.expected.contains_key(tablet) {
            continue;
        }
        // An id the catalog never gave out (at or past `next_catalog_id`): not a tablet being
        // created, since a master asks for a replica only after the tablet is committed and
        // the report was taken before this (linearized) catalog read. Such a replica was made
        // by someone calling the agent directly (it would otherwise fill the disk forever).
        // Dropped only when it is there in two reports in a row, as a margin.
        if tablet.0 >= next_catalog_id && !orphans_before.contains(&(*tablet, w.id)) {
            tracing::warn!(backend = %w.id, %tablet, "replica of a tablet id the catalog never gave out: deleting it next round if still there");
            orphans.push((*tablet, w.id));
            continue;
        }
        let req = DropReplicaRequest {
            tablet_id: tablet.0,
        };
        match c.drop_replica(timed(req, CALL_TIMEOUT)).await {
            // The tablet lives on elsewhere: this was a move's old copy, and the move's
            // completion was logged where it was applied ("replica move finished").
            Ok(_) if catalog.contains(tablet) => {
                tracing::debug!(backend = %w.id, %tablet, "deleted the old copy of a moved replica")
            }
            Ok(_) if tablet.0 >= next_catalog_id => {
                tracing::warn!(backend = %w.id, %tablet, "deleted a replica of a tablet id the catalog never gave out")
            }
            Ok(_) => {
                tracing::info!(backend = %w.id, %tablet, "deleted a replica the catalog no longer has")
            }
            Err(s) => {
                tracing::warn!(backend = %w.id, %tablet, "deleting replica failed: {}", s.message())
            }
        }
    }
    Found {
        reports,
        missing,
        orphans,
    }
}

/// One reconciler round. `suspects`: NORMAL replicas missing from their backend's report in
/// the previous round; missing twice in a row, they are recorded lost and repaired.
/// `orphans`: replicas of ids the catalog never gave out, seen in the previous round's
/// reports; still there, they are deleted.
async fn round(
    fe: &FeNodeHandle,
    term: u64,
    suspects: &mut BTreeSet<(TabletId, BackendId)>,
    orphans: &mut BTreeSet<(TabletId, BackendId)>,
) {
    let alive: Vec<(BackendId, HostPort)> = fe.store().read(|s, _| {
        s.backends
            .values()
            .filter(|b| b.liveness.alive)
            .map(|b| (b.id, b.addr.clone()))
            .collect()
    });
    let lists = futures::future::join_all(alive.iter().map(|(id, addr)| list(fe, *id, addr))).await;
    let mut held: BTreeMap<BackendId, Held> = alive
        .iter()
        .zip(lists)
        .filter_map(|((id, _), l)| Some((*id, l?)))
        .collect();
    // Read the catalog only after the reports, through a read barrier: a replica in a report is
    // then either in this view or truly gone, never one added after our read (e.g. a clone
    // finished for a move this view does not know yet), and a deposed master stops here.
    if let Err(e) = fe.linearize().await {
        tracing::debug!("replica reconciler skips a round: {e}");
        return;
    }
    let (work, next_catalog_id, catalog) = plan(fe);
    let results = futures::future::join_all(work.into_iter().filter_map(|w| {
        let h = held.remove(&w.id)?;
        Some(reconcile_backend(
            fe,
            w,
            h,
            next_catalog_id,
            &catalog,
            orphans,
        ))
    }))
    .await;
    let mut reports = Vec::new();
    let mut missing = BTreeSet::new();
    orphans.clear();
    for f in results {
        reports.extend(f.reports);
        missing.extend(f.missing);
        orphans.extend(f.orphans);
    }
    let lost: Vec<(TabletId, BackendId)> = missing.intersection(suspects).copied().collect();
    *suspects = missing
        .difference(&lost.iter().copied().collect())
        .copied()
        .collect();
    if !lost.is_empty() {
        tracing::warn!(
            ?lost,
            "replicas lost: their backends no longer hold their files"
        );
        propose(fe, term, Cmd::ReplicasLost { lost }).await;
    }
    if !reports.is_empty() {
        propose(fe, term, Cmd::RecordReplicas { reports }).await;
    }
    let due = fe.store().read(|s, _| {
        let expire = s.meta.settings.values().catalog_trash_expire_second;
        !query::catalog::expired_tables(s, now_ms(), expire).is_empty()
    });
    if due {
        propose(fe, term, Cmd::ExpireRecycleBin).await;
    }
}

/// The master's tablet loop: reconcile replicas, then run the move executor and planner.
/// The executor's soft state lives for one term.
type MetricsRx = openraft::type_config::alias::WatchReceiverOf<
    roster_raft_store::TypeConfig,
    openraft::RaftMetrics<roster_raft_store::TypeConfig>,
>;

/// Wait until the applied index moves past `seen` (cancel-safe).
async fn wait_applied(rx: &mut MetricsRx, seen: &mut Option<u64>) {
    loop {
        let now = rx.borrow_watched().last_applied.map(|l| l.index);
        if now != *seen {
            *seen = now;
            return;
        }
        if rx.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

pub(super) async fn tablet_loop(weak: Weak<Inner>) {
    let mut tick = tokio::time::interval(ROUND);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut executor: Option<Executor> = None;
    let mut suspects = BTreeSet::new();
    let mut orphans = BTreeSet::new();
    let mut metrics = None;
    let mut applied = None;
    loop {
        // A clone finishing, or a new entry applied (a DECOMMISSION, a finished move), wakes
        // the executor at once, so the next move starts without waiting for the tick; the
        // reconciler runs on ticks only.
        let ticked = tokio::select! {
            _ = tick.tick() => true,
            () = async {
                match executor.as_mut() {
                    Some(x) => x.wait_outcome().await,
                    None => std::future::pending().await,
                }
            } => false,
            () = async {
                match metrics.as_mut() {
                    Some(rx) => wait_applied(rx, &mut applied).await,
                    None => std::future::pending().await,
                }
            } => false,
        };
        // Not yet upgradable while the node is being built; aborted when it is dropped.
        let Some(inner) = weak.upgrade() else {
            continue;
        };
        let fe = FeNodeHandle { inner };
        if metrics.is_none() {
            metrics = Some(fe.raft().metrics());
        }
        let (leader, term) = {
            let m = fe.raft().metrics();
            let m = m.borrow_watched();
            (m.current_leader, m.current_term)
        };
        if leader != Some(fe.id()) {
            executor = None;
            suspects.clear();
            orphans.clear();
            continue;
        }
        if executor.as_ref().map(Executor::term) != Some(term) {
            executor = Some(Executor::new(term));
        }
        if ticked {
            round(&fe, term, &mut suspects, &mut orphans).await;
        }
        if let Some(x) = executor.as_mut() {
            x.round(&fe).await;
        }
    }
}
