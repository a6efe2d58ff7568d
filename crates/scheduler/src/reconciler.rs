//! The master's replica reconciler, one actor per term: every half second it compares the
//! catalog with what each alive backend reports holding and closes the gap. It asks agents to
//! create replicas the catalog placed on them, records what they report (CREATING -> NORMAL,
//! sizes, checksums), records NORMAL replicas whose files are gone twice in a row as lost, and
//! deletes files of replicas the catalog no longer has there (DROP TABLE FORCE, recycle-bin
//! expiry, the old copy of a finished move) and of tablet ids it never gave out (made by a
//! direct call; in two reports in a row). It also proposes the recycle-bin expiry when a
//! dropped table's time is up. Every decision is proposed fenced by its term. A round costs one
//! list call per alive backend.

use crate::cluster::{Agents, Cluster, CreateOrder, Held, propose};
use roster_membership::model::catalog::{ReplicaReport, ReplicaState};
use roster_membership::{BackendId, HostPort, TableId, TabletId, Term, query};
use roster_raft_store::Cmd;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub(crate) const ROUND: Duration = Duration::from_millis(500);
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Creating a filled replica writes real bytes: allow for a slow disk (10 MB/s) on top.
const FILL_BYTES_PER_SEC_FLOOR: u64 = 10 << 20;

/// What the catalog expects one backend to hold.
#[derive(Debug, Clone)]
struct Expected {
    table: TableId,
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

/// The catalog as one round sees it, read after the reports.
struct Catalog {
    work: Vec<BackendWork>,
    next_catalog_id: u64,
    tablets: BTreeSet<TabletId>,
}

fn read_catalog<C: Cluster>(cluster: &C) -> Catalog {
    cluster.read(|s| {
        let mut work: BTreeMap<BackendId, BackendWork> = s
            .backends
            .values()
            .filter(|b| b.liveness.alive)
            .map(|b| {
                let w = BackendWork {
                    id: b.id,
                    addr: b.addr.clone(),
                    expected: BTreeMap::new(),
                };
                (b.id, w)
            })
            .collect();
        for t in s.tablets.values() {
            let fill_bytes = s
                .tables
                .get(&t.table)
                .map_or(0, |x| x.fill_bytes_per_tablet);
            for r in &t.replicas {
                if let Some(w) = work.get_mut(&r.backend) {
                    let e = Expected {
                        table: t.table,
                        fill_bytes,
                        state: r.state,
                        bytes: r.bytes,
                        checksum: r.checksum,
                    };
                    w.expected.insert(t.id, e);
                }
            }
        }
        Catalog {
            work: work.into_values().collect(),
            next_catalog_id: s.meta.next_catalog_id,
            tablets: s.tablets.keys().copied().collect(),
        }
    })
}

type Report = BTreeMap<TabletId, Held>;

/// One alive backend's tablet report, or `None` if it did not answer.
async fn list<A: Agents>(agents: &A, id: BackendId, addr: &HostPort) -> Option<Report> {
    match agents.list_replicas(addr, CALL_TIMEOUT).await {
        Ok(held) => Some(held.into_iter().map(|h| (h.tablet, h)).collect()),
        Err(e) => {
            tracing::debug!(backend = %id, "tablet report failed: {e}");
            None
        }
    }
}

/// What one backend's round found: replicas to record, NORMAL replicas whose files are gone,
/// and orphans seen for the first time (dropped if still there next round).
#[derive(Default)]
struct Found {
    reports: Vec<ReplicaReport>,
    missing: Vec<(TabletId, BackendId)>,
    orphans: Vec<(TabletId, BackendId)>,
}

async fn reconcile_backend<A: Agents>(
    agents: &A,
    w: BackendWork,
    held: Report,
    catalog: &Catalog,
    orphans_before: &BTreeSet<(TabletId, BackendId)>,
) -> Found {
    let mut found = Found::default();
    let report = |h: Held| ReplicaReport {
        tablet: h.tablet,
        backend: w.id,
        bytes: h.bytes,
        checksum: h.checksum,
    };
    for (tablet, exp) in &w.expected {
        match held.get(tablet) {
            // A CLONING replica is finished by its move, which checks the checksum.
            Some(h)
                if exp.state == ReplicaState::Creating
                    || exp.state == ReplicaState::Normal
                        && (exp.bytes != h.bytes || exp.checksum != Some(h.checksum)) =>
            {
                found.reports.push(report(*h));
            }
            Some(_) => {}
            None if exp.state == ReplicaState::Creating => {
                let timeout =
                    CALL_TIMEOUT + Duration::from_secs(exp.fill_bytes / FILL_BYTES_PER_SEC_FLOOR);
                let order = CreateOrder {
                    tablet: *tablet,
                    table: exp.table,
                    fill_bytes: exp.fill_bytes,
                };
                match agents.create_replica(&w.addr, &order, timeout).await {
                    Ok(h) => found.reports.push(report(h)),
                    Err(e) => {
                        tracing::warn!(backend = %w.id, %tablet, "creating replica failed: {e}")
                    }
                }
            }
            // A NORMAL replica whose files are gone: lost if still gone next round.
            None if exp.state == ReplicaState::Normal => found.missing.push((*tablet, w.id)),
            None => {}
        }
    }
    let never_given = |t: &TabletId| t.0 >= catalog.next_catalog_id;
    for tablet in held.keys() {
        if w.expected.contains_key(tablet) {
            continue;
        }
        // An id the catalog never gave out (at or past `next_catalog_id`): not a tablet being
        // created, since a master asks for a replica only after the tablet is committed and
        // the report was taken before this (linearized) catalog read. Such a replica was made
        // by someone calling the agent directly (it would otherwise fill the disk forever).
        // Dropped only when it is there in two reports in a row, as a margin.
        if never_given(tablet) && !orphans_before.contains(&(*tablet, w.id)) {
            tracing::warn!(backend = %w.id, %tablet, "replica of a tablet id the catalog never gave out: deleting it next round if still there");
            found.orphans.push((*tablet, w.id));
            continue;
        }
        match agents.drop_replica(&w.addr, *tablet, CALL_TIMEOUT).await {
            // The tablet lives on elsewhere: this was a move's old copy, and the move's
            // completion was logged where it was applied ("replica move finished").
            Ok(()) if catalog.tablets.contains(tablet) => {
                tracing::debug!(backend = %w.id, %tablet, "deleted the old copy of a moved replica")
            }
            Ok(()) if never_given(tablet) => {
                tracing::warn!(backend = %w.id, %tablet, "deleted a replica of a tablet id the catalog never gave out")
            }
            Ok(()) => {
                tracing::info!(backend = %w.id, %tablet, "deleted a replica the catalog no longer has")
            }
            Err(e) => tracing::warn!(backend = %w.id, %tablet, "deleting replica failed: {e}"),
        }
    }
    found
}

/// The reconciler's memory between rounds, for one term.
#[derive(Default)]
struct Memory {
    /// NORMAL replicas missing from their backend's report in the previous round; missing
    /// twice in a row, they are recorded lost (and repaired by the planner).
    suspects: BTreeSet<(TabletId, BackendId)>,
    /// Replicas of ids the catalog never gave out, seen in the previous round's reports;
    /// still there, they are deleted.
    orphans: BTreeSet<(TabletId, BackendId)>,
}

async fn round<C: Cluster, A: Agents>(cluster: &C, agents: &A, term: Term, mem: &mut Memory) {
    let alive: Vec<(BackendId, HostPort)> = cluster.read(|s| {
        s.backends
            .values()
            .filter(|b| b.liveness.alive)
            .map(|b| (b.id, b.addr.clone()))
            .collect()
    });
    let lists =
        futures::future::join_all(alive.iter().map(|(id, addr)| list(agents, *id, addr))).await;
    let mut held: BTreeMap<BackendId, Report> = alive
        .iter()
        .zip(lists)
        .filter_map(|((id, _), l)| Some((*id, l?)))
        .collect();
    // Read the catalog only after the reports, through a read barrier: a replica in a report is
    // then either in this view or truly gone, never one added after our read (e.g. a clone
    // finished for a move this view does not know yet), and a deposed master stops here.
    if let Err(e) = cluster.linearize().await {
        tracing::debug!("replica reconciler skips a round: {e}");
        return;
    }
    let mut catalog = read_catalog(cluster);
    let work = std::mem::take(&mut catalog.work);
    let results = futures::future::join_all(work.into_iter().filter_map(|w| {
        let h = held.remove(&w.id)?;
        Some(reconcile_backend(agents, w, h, &catalog, &mem.orphans))
    }))
    .await;
    let mut reports = Vec::new();
    let mut missing = BTreeSet::new();
    mem.orphans.clear();
    for f in results {
        reports.extend(f.reports);
        missing.extend(f.missing);
        mem.orphans.extend(f.orphans);
    }
    let lost: Vec<(TabletId, BackendId)> = missing.intersection(&mem.suspects).copied().collect();
    mem.suspects = missing.into_iter().filter(|m| !lost.contains(m)).collect();
    if !lost.is_empty() {
        tracing::warn!(
            ?lost,
            "replicas lost: their backends no longer hold their files"
        );
        propose(cluster, term, Cmd::ReplicasLost { lost }).await;
    }
    if !reports.is_empty() {
        propose(cluster, term, Cmd::RecordReplicas { reports }).await;
    }
    let now = cluster.now_ms();
    let due = cluster.read(|s| {
        let expire = s.meta.settings.values().catalog_trash_expire_second;
        !query::catalog::expired_tables(s, now, expire).is_empty()
    });
    if due {
        propose(cluster, term, Cmd::ExpireRecycleBin).await;
    }
}

/// Run until `cancel` fires: a round at once, then one per `ROUND` (missed ticks skipped).
/// Cancelled mid-round, what was already proposed is fenced by its term at apply.
pub async fn run<C: Cluster, A: Agents>(
    cluster: C,
    agents: A,
    term: Term,
    cancel: CancellationToken,
) {
    let mut mem = Memory::default();
    let mut tick = crate::task::ticker(ROUND);
    while cancel.run_until_cancelled(tick.tick()).await.is_some() {
        let round = round(&cluster, &agents, term, &mut mem);
        if cancel.run_until_cancelled(round).await.is_none() {
            return;
        }
    }
}

// Under paused tokio time: `cargo test -p roster-scheduler --features paused-time`.
#[cfg(all(test, feature = "paused-time"))]
mod tests {
    use super::*;
    use crate::testkit::{FakeAgents, FakeCluster, alive_backends, all_normal, create_table};
    use roster_membership::{ClusterState, DomainError};
    use roster_raft_store::Response;

    fn start(cluster: &FakeCluster, agents: &FakeAgents, term: Term) -> CancellationToken {
        let cancel = CancellationToken::new();
        tokio::spawn(run(cluster.clone(), agents.clone(), term, cancel.clone()));
        cancel
    }

    fn replicas_on(s: &ClusterState, b: u64) -> usize {
        let b = BackendId(b);
        s.tablets
            .values()
            .filter(|t| t.replicas.iter().any(|r| r.backend == b))
            .count()
    }

    #[tokio::test(start_paused = true)]
    async fn creates_placed_replicas_and_records_them_fenced() {
        let agents = FakeAgents::default();
        let (mut s, addrs) = alive_backends(3, &agents);
        create_table(&mut s, "t", 4, 3, 1000);
        let cluster = FakeCluster::new(s, Term(1));
        let cancel = start(&cluster, &agents, Term(1));
        cluster.wait_for(Duration::from_secs(2), all_normal).await;
        cancel.cancel();
        for a in &addrs {
            let held = agents.held(a);
            assert_eq!(held.len(), 4, "{a}: {held:?}");
            assert!(held.values().all(|h| h.bytes == 1000));
        }
        let recorded = cluster.proposed(|c| matches!(c, Cmd::RecordReplicas { .. }));
        assert!(!recorded.is_empty());
        for (cmd, resp) in cluster.proposals.lock().unwrap().iter() {
            assert!(matches!(cmd, Cmd::Fenced { term: Term(1), .. }), "{cmd:?}");
            assert!(matches!(resp, Response::Ok(_)), "{resp:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn lost_files_are_recorded_twice_seen_and_strays_deleted() {
        let agents = FakeAgents::default();
        let (mut s, addrs) = alive_backends(4, &agents);
        create_table(&mut s, "t", 2, 3, 10);
        let cluster = FakeCluster::new(s, Term(1));
        let cancel = start(&cluster, &agents, Term(1));
        cluster.wait_for(Duration::from_secs(2), all_normal).await;
        // Backend 10001's files of one tablet vanish; a stray id the catalog never gave out
        // and a tablet the catalog no longer has appear on another agent.
        let victim = *agents.held(&addrs[0]).keys().next().unwrap();
        let next = cluster.read(|s| s.meta.next_catalog_id);
        // An id given out, but to the table: no tablet has it.
        let given = cluster.read(|s| s.tables.keys().next().unwrap().0);
        {
            let mut disks = agents.disks.lock().unwrap();
            disks.get_mut(&addrs[0]).unwrap().remove(&victim);
            let stray = |t: u64| Held {
                tablet: TabletId(t),
                bytes: 1,
                checksum: 1,
            };
            let other = disks.entry(addrs[3].clone()).or_default();
            other.insert(TabletId(next + 100), stray(next + 100));
            other.insert(TabletId(given), stray(given));
        }
        let before = cluster.read(|s| replicas_on(s, 10001));
        let vanished = tokio::time::Instant::now();
        cluster
            .wait_for(Duration::from_secs(3), |s| replicas_on(s, 10001) < before)
            .await;
        // Seen missing in two rounds in a row, not one: a report taken mid-write is no loss.
        assert!(vanished.elapsed() > ROUND, "{:?}", vanished.elapsed());
        let lost = cluster.proposed(|c| matches!(c, Cmd::ReplicasLost { .. }));
        assert_eq!(lost.len(), 1, "{lost:?}");
        let other = addrs[3].clone();
        agents
            .wait_disks(ROUND * 6, |d| {
                let held = &d[&other];
                !held.contains_key(&TabletId(next + 100)) && !held.contains_key(&TabletId(given))
            })
            .await;
        cancel.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_round_from_a_lost_term_is_refused_at_apply() {
        let agents = FakeAgents::default();
        let (mut s, _) = alive_backends(3, &agents);
        create_table(&mut s, "t", 2, 3, 10);
        let cluster = FakeCluster::new(s, Term(3));
        // The actor decided in term 3, but this FE lost leadership and won term 5 since: its
        // entries land in term 5.
        *cluster.entry_term.lock().unwrap() = Term(5);
        let cancel = start(&cluster, &agents, Term(3));
        cluster.wait_proposals(1, Duration::from_secs(2)).await;
        cancel.cancel();
        let (cmd, resp) = cluster.proposals.lock().unwrap()[0].clone();
        assert!(
            matches!(cmd.unfenced(), Cmd::RecordReplicas { .. }),
            "{cmd:?}"
        );
        assert_eq!(
            resp,
            Response::Refused(DomainError::StaleTerm {
                decided: Term(3),
                entry: Term(5)
            })
        );
        assert!(cluster.read(|s| !all_normal(s)));
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_read_barrier_it_decides_nothing() {
        let agents = FakeAgents::default();
        let (mut s, addrs) = alive_backends(3, &agents);
        create_table(&mut s, "t", 2, 3, 10);
        let cluster = FakeCluster::new(s, Term(1));
        cluster
            .linearizable
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let cancel = start(&cluster, &agents, Term(1));
        // Six rounds of tokio time: the actor lists agents but never gets past the barrier.
        tokio::time::sleep(ROUND * 6).await;
        cancel.cancel();
        assert!(cluster.proposals.lock().unwrap().is_empty());
        assert!(addrs.iter().all(|a| agents.held(a).is_empty()));
    }
}
