//! The master's heartbeat loop: every `heartbeat_interval_second` it heartbeats every
//! registered backend (dead ones too), keeps the results as soft state for its term, and
//! proposes only the changes. Verdicts are proposed on this FE only, never forwarded: if it
//! lost leadership they are refused, so a deposed master cannot mark anything dead.

use super::{FeNodeHandle, Inner};
use crate::wire::LeaderOp;
use openraft::async_runtime::watch::WatchReceiver;
use roster_membership::model::liveness::HeartbeatInfo;
use roster_membership::{BackendId, HostPort, Term};
use roster_proto::format::now_ms;
use roster_proto::pb::backend::HeartbeatRequest;
use roster_raft_store::Cmd;
use roster_scheduler::liveness::Tracker;
use std::sync::Weak;
use std::time::{Duration, Instant};

/// What every heartbeat of a round tells the agents: this master's term and the backends
/// agents may clone from (`host:be_port` of each registered one).
struct Fence {
    term: u64,
    backends: Vec<String>,
}

async fn heartbeat_one(
    fe: &FeNodeHandle,
    addr: &HostPort,
    fence: &Fence,
    timeout: Duration,
) -> Result<HeartbeatInfo, String> {
    let mut client = fe
        .agent_client(&addr.to_string())
        .map_err(|e| e.to_string())?;
    let mut req = tonic::Request::new(HeartbeatRequest {
        cluster_id: fe.config().cluster_id.clone(),
        master_node_id: fe.id(),
        master_term: fence.term,
        backends: fence.backends.clone(),
    });
    req.set_timeout(timeout);
    match tokio::time::timeout(timeout, client.heartbeat(req)).await {
        Ok(Ok(r)) => {
            let r = r.into_inner();
            Ok(HeartbeatInfo {
                be_port: r.be_port as u16,
                http_port: r.http_port as u16,
                brpc_port: r.brpc_port as u16,
                version: r.version,
                start_time_ms: r.start_time_ms,
                total_capacity_bytes: r.total_capacity_bytes,
                avail_capacity_bytes: r.avail_capacity_bytes,
                data_used_capacity_bytes: r.data_used_capacity_bytes,
            })
        }
        Ok(Err(s)) => Err(format!("heartbeat to {addr} failed: {}", s.message())),
        Err(_) => Err(format!("heartbeat to {addr} timed out after {timeout:?}")),
    }
}

pub(super) async fn heartbeat_loop(weak: Weak<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut tracker: Option<(u64, Tracker)> = None;
    let mut next_round = Instant::now();
    loop {
        tick.tick().await;
        let Some(inner) = weak.upgrade() else {
            continue;
        };
        let fe = FeNodeHandle { inner };
        let (leader, term) = {
            let m = fe.raft().metrics();
            let m = m.borrow_watched();
            (m.current_leader, m.current_term)
        };
        if leader != Some(fe.id()) {
            tracker = None;
            continue;
        }
        if tracker.as_ref().map(|(t, _)| *t) != Some(term) {
            // A new term: start from nothing, and heartbeat at once.
            tracker = Some((term, Tracker::default()));
            next_round = Instant::now();
        }
        if Instant::now() < next_round {
            continue;
        }
        let (interval_s, tolerance, backends, fence) = fe.store().read(|s, _| {
            let settings = &s.meta.settings;
            let backends: Vec<(BackendId, HostPort)> = s
                .backends
                .values()
                .map(|b| (b.id, b.addr.clone()))
                .collect();
            let fence = Fence {
                term,
                backends: s
                    .backends
                    .values()
                    .map(|b| b.data_addr().to_string())
                    .collect(),
            };
            (
                settings.u64("heartbeat_interval_second").max(1),
                settings.u64("max_backend_heartbeat_failure_tolerance_count"),
                backends,
                fence,
            )
        });
        let interval = Duration::from_secs(interval_s);
        next_round = Instant::now() + interval;
        let timeout = interval.min(Duration::from_secs(2));
        let results = futures::future::join_all(backends.iter().map(|(id, addr)| {
            let fe = fe.clone();
            let fence = &fence;
            async move { (*id, heartbeat_one(&fe, addr, fence, timeout).await) }
        }))
        .await;
        let Some((_, t)) = tracker.as_mut() else {
            continue;
        };
        let now = now_ms();
        for (id, r) in results {
            t.observe(id, now, r);
        }
        t.retain(|id| backends.iter().any(|(b, _)| b == id));
        let reports = fe
            .store()
            .read(|s, _| t.changes(s.backends.values(), tolerance));
        if reports.is_empty() {
            continue;
        }
        let op = LeaderOp::Write {
            user: None,
            // Fenced: a verdict of this term must not land in a later one.
            cmd: Cmd::fenced(Term(term), Cmd::RecordLiveness { reports }),
        };
        if let Err(e) = fe
            .run_as_leader(&op, Instant::now() + Duration::from_secs(5))
            .await
        {
            tracing::warn!("recording backend liveness failed: {e}");
        }
    }
}
