//! This FE's own view of which backends it can reach (SPEC section 5). Every FE, leader or not,
//! tries each second a TCP connection to every port of every registered backend (the heartbeat
//! port and the data port it reported). Failing to connect is recorded as this FE's AUTO
//! blacklist entry, through Raft so that it survives restarts and shows on every FE; the same
//! loop is the refresher that removes this FE's AUTO entries once every port answers and the
//! window holds fewer failures than the threshold.
//!
//! Only failing to *connect* counts. A connection that opens is a success however slow the
//! backend is afterwards: a busy or even stopped agent still completes the TCP handshake in its
//! kernel, so slowness never blacklists (StarRocks issue 18835).

use super::{FeNodeHandle, Inner};
use roster_membership::{BackendId, FrontendId, model, query};
use roster_proto::format::now_ms;
use roster_raft_store::{Cmd, Reply, Response};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Weak;
use std::time::{Duration, Instant};

/// How often the checker runs (StarRocks's UpdateBlacklistThread runs each second too).
const ROUND: Duration = Duration::from_secs(1);
/// A connection not established within this is a failure (the SYN was dropped somewhere).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Failures of a backend that already has an entry are written at most this often, so an
/// unreachable backend costs a write per FE every few seconds, not every second.
const FLUSH_EVERY: Duration = Duration::from_secs(5);
/// Bound on a proposal of the checker's, so a partitioned FE keeps probing.
const PROPOSE_WITHIN: Duration = Duration::from_secs(3);

/// One port to try.
struct Target {
    host: String,
    port: u16,
    what: &'static str,
}

/// Failures seen since they were last written.
#[derive(Default)]
struct Pending {
    count: u32,
    reason: String,
    last_flush: Option<Instant>,
}

/// Try to open a TCP connection from `source` (when set) to `host:port`.
async fn connect(source: Option<IpAddr>, host: &str, port: u16) -> Result<(), String> {
    let attempt = async {
        let addr: SocketAddr = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("cannot resolve: {e}"))?
            .next()
            .ok_or_else(|| "cannot resolve: no address".to_string())?;
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        }
        .map_err(|e| e.to_string())?;
        if let Some(ip) = source {
            socket
                .bind(SocketAddr::new(ip, 0))
                .map_err(|e| format!("cannot bind source address {ip}: {e}"))?;
        }
        socket
            .connect(addr)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("no connection within {CONNECT_TIMEOUT:?}")),
    }
}

/// Probe every port of one backend; `None` when all answered, else what failed.
async fn probe(source: Option<IpAddr>, targets: &[Target]) -> Option<String> {
    let results = futures::future::join_all(targets.iter().map(|t| async move {
        connect(source, &t.host, t.port)
            .await
            .map_err(|e| format!("{}:{} ({}): {e}", t.host, t.port, t.what))
    }))
    .await;
    let failed: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    (!failed.is_empty()).then(|| failed.join("; "))
}

/// Propose one of the checker's commands; `None` when it may not have been written (retried
/// next round), else whether it changed an entry.
async fn propose(fe: &FeNodeHandle, cmd: Cmd) -> Option<bool> {
    match tokio::time::timeout(PROPOSE_WITHIN, fe.propose(None, cmd)).await {
        Ok(Ok(Response::Ok(Reply::Changed(ids)))) => Some(!ids.is_empty()),
        Ok(Ok(Response::Ok(_))) => Some(false),
        // Refused: the backend was dropped meanwhile; nothing to retry.
        Ok(Ok(Response::Refused(e))) => {
            tracing::debug!("blacklist update refused: {e}");
            Some(false)
        }
        Ok(Err(e)) => {
            tracing::debug!("blacklist update not written: {e}");
            None
        }
        Err(_) => None,
    }
}

pub(super) async fn checker_loop(weak: Weak<Inner>) {
    let mut tick = tokio::time::interval(ROUND);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut pending: BTreeMap<BackendId, Pending> = BTreeMap::new();
    loop {
        tick.tick().await;
        let Some(inner) = weak.upgrade() else {
            continue;
        };
        let fe = FeNodeHandle { inner };
        let me = FrontendId(fe.id());
        let source = fe.config().backend_source_ip;
        let (disabled, backends) = fe.store().read(|s, _| {
            let disabled = s.meta.settings.values().disable_backend_black_list;
            // Switched off, the checker only looks after the AUTO entries still listed.
            let wanted = |id: BackendId| {
                !disabled
                    || s.blacklist
                        .get(&(me, id))
                        .is_some_and(|e| e.kind == model::blacklist::BlacklistKind::Auto)
            };
            let backends: Vec<(BackendId, Vec<Target>)> = s
                .backends
                .values()
                .filter(|b| wanted(b.id))
                .map(|b| {
                    let mut t = vec![Target {
                        host: b.addr.host.clone(),
                        port: b.addr.port,
                        what: "heartbeat_port",
                    }];
                    if let Some(p) = b.liveness.be_port.filter(|p| *p != 0) {
                        t.push(Target {
                            host: b.addr.host.clone(),
                            port: p,
                            what: "be_port",
                        });
                    }
                    (b.id, t)
                })
                .collect();
            (disabled, backends)
        });
        pending.retain(|id, _| backends.iter().any(|(b, _)| b == id));
        let results = futures::future::join_all(
            backends
                .iter()
                .map(|(id, targets)| async move { (*id, probe(source, targets).await) }),
        )
        .await;
        for (id, failure) in results {
            let p = pending.entry(id).or_default();
            let answered = failure.is_none();
            if let Some(reason) = failure
                && !disabled
            {
                p.count = p
                    .count
                    .saturating_add(1)
                    .min(model::blacklist::MAX_HISTORY as u32);
                p.reason = reason;
            }
            let listed = fe.store().read(|s, _| s.blacklist.contains_key(&(me, id)));
            let due = p.last_flush.is_none_or(|t| t.elapsed() >= FLUSH_EVERY);
            if p.count > 0 && (!listed || due || answered) {
                let cmd = Cmd::RecordConnectFailures {
                    frontend: me,
                    backend: id,
                    count: p.count,
                    reason: p.reason.clone(),
                };
                if let Some(added) = propose(&fe, cmd).await {
                    if added {
                        // The INFO line is the applied event ("blacklist entry added").
                        tracing::debug!(backend = %id, reason = %p.reason, "cannot connect to backend: added to this FE's blacklist (AUTO)");
                    }
                    *p = Pending {
                        last_flush: Some(Instant::now()),
                        ..Pending::default()
                    };
                }
            }
            let clearable = fe
                .store()
                .read(|s, _| query::blacklist::auto_clearable(s, now_ms(), me, id));
            if answered && clearable {
                let cmd = Cmd::ClearAutoBlacklist {
                    frontend: me,
                    backend: id,
                };
                if propose(&fe, cmd).await == Some(true) {
                    tracing::debug!(backend = %id, "backend answers on every port: removed from this FE's blacklist (AUTO)");
                }
            }
        }
    }
}
