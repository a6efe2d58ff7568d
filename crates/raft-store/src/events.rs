//! The lifecycle events an operator greps for, found by comparing the state before and after
//! an entry is applied, and logged at INFO once per FE when the entry is applied there (after
//! it is durable). Every FE applies every entry, so each FE's own log tells the whole story;
//! a lagging FE that catches up by snapshot skips the events inside the snapshot.

use crate::cmd::{Cmd, Reply, Response};
use crate::types::{FeNode, NodeId};
use roster_membership::model::blacklist::BlacklistKind;
use roster_membership::{
    BackendId, BackendMembership, ClusterState, FrontendId, HostPort, MoveId, TabletId,
};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    BackendAdded {
        backend: BackendId,
        addr: HostPort,
    },
    DecommissionAccepted {
        backend: BackendId,
    },
    DecommissionCancelled {
        backend: BackendId,
    },
    Decommissioned {
        backend: BackendId,
    },
    BackendDropped {
        backend: BackendId,
        addr: HostPort,
    },
    BackendLiveness {
        backend: BackendId,
        alive: bool,
    },
    BlacklistAdded {
        frontend: FrontendId,
        backend: BackendId,
        kind: BlacklistKind,
        reason: String,
    },
    BlacklistRemoved {
        frontend: FrontendId,
        backend: BackendId,
        kind: BlacklistKind,
    },
    MoveFinished {
        id: MoveId,
        tablet: TabletId,
        from: Option<BackendId>,
        to: BackendId,
        source: BackendId,
    },
    MoveAborted {
        id: MoveId,
        tablet: TabletId,
        to: BackendId,
    },
    FrontendJoined {
        frontend: NodeId,
        addr: String,
        voter: bool,
    },
    FrontendRole {
        frontend: NodeId,
        addr: String,
        voter: bool,
    },
    FrontendLeft {
        frontend: NodeId,
        addr: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct BackendView {
    addr: HostPort,
    membership: BackendMembership,
    alive: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct MoveView {
    tablet: TabletId,
    from: Option<BackendId>,
    to: BackendId,
    source: BackendId,
}

/// What an entry may change that the events are about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Before {
    backends: BTreeMap<BackendId, BackendView>,
    blacklist: BTreeMap<(FrontendId, BackendId), BlacklistKind>,
    moves: BTreeMap<MoveId, MoveView>,
}

fn view(state: &ClusterState) -> Before {
    Before {
        backends: state
            .backends
            .values()
            .map(|b| {
                (
                    b.id,
                    BackendView {
                        addr: b.addr.clone(),
                        membership: b.membership,
                        alive: b.liveness.alive,
                    },
                )
            })
            .collect(),
        blacklist: state.blacklist.iter().map(|(k, e)| (*k, e.kind)).collect(),
        moves: state
            .moves
            .values()
            .map(|m| {
                (
                    m.id,
                    MoveView {
                        tablet: m.plan.tablet,
                        from: m.plan.replaces,
                        to: m.plan.dest,
                        source: m.plan.source,
                    },
                )
            })
            .collect(),
    }
}

/// The view before applying `cmd`, or `None` for the frequent commands that change none of it
/// (replica reports, table DDL, users, settings, a backend's tags and disables): those skip the
/// copy of every backend, blacklist entry and move.
pub fn before(state: &ClusterState, cmd: &Cmd) -> Option<Before> {
    let quiet = matches!(
        cmd,
        Cmd::Noop
            | Cmd::RecordReplicas { .. }
            | Cmd::SetConfig { .. }
            | Cmd::EnsureRoot { .. }
            | Cmd::CreateUser { .. }
            | Cmd::DropUser { .. }
            | Cmd::Grant { .. }
            | Cmd::Revoke { .. }
            | Cmd::CreateTable(_)
            | Cmd::CreateTableSpec(_)
            | Cmd::RecoverTable { .. }
            | Cmd::StartMoves { .. }
            | Cmd::ModifyBackends { .. }
            | Cmd::ChangeBackends { .. }
    );
    (!quiet).then(|| view(state))
}

/// The events of one applied entry.
pub fn after(before: Before, state: &ClusterState, cmd: &Cmd, resp: &Response) -> Vec<Event> {
    let Response::Ok(reply) = resp else {
        return Vec::new();
    };
    let now = view(state);
    let mut out = Vec::new();
    for (id, b) in &now.backends {
        match before.backends.get(id) {
            None => out.push(Event::BackendAdded {
                backend: *id,
                addr: b.addr.clone(),
            }),
            Some(old) => {
                use BackendMembership::*;
                match (old.membership, b.membership) {
                    (Active, Decommissioning) => {
                        out.push(Event::DecommissionAccepted { backend: *id })
                    }
                    (Decommissioning, Active) => {
                        out.push(Event::DecommissionCancelled { backend: *id })
                    }
                    (Active | Decommissioning, Decommissioned) => {
                        out.push(Event::Decommissioned { backend: *id })
                    }
                    _ => {}
                }
                if old.alive != b.alive {
                    out.push(Event::BackendLiveness {
                        backend: *id,
                        alive: b.alive,
                    });
                }
            }
        }
    }
    for (id, old) in &before.backends {
        if !now.backends.contains_key(id) {
            // Finished and dropped in one entry (drop_backend_after_decommission).
            if old.membership != BackendMembership::Decommissioned
                && matches!(cmd, Cmd::FinishDecommissions)
            {
                out.push(Event::Decommissioned { backend: *id });
            }
            out.push(Event::BackendDropped {
                backend: *id,
                addr: old.addr.clone(),
            });
        }
    }
    for (key, kind) in &now.blacklist {
        if before.blacklist.get(key) != Some(kind) {
            let reason = state
                .blacklist
                .get(key)
                .map(|e| e.last_failure.clone())
                .unwrap_or_default();
            out.push(Event::BlacklistAdded {
                frontend: key.0,
                backend: key.1,
                kind: *kind,
                reason,
            });
        }
    }
    for (key, kind) in &before.blacklist {
        if now.blacklist.get(key) != Some(kind) {
            out.push(Event::BlacklistRemoved {
                frontend: key.0,
                backend: key.1,
                kind: *kind,
            });
        }
    }
    for (id, m) in &before.moves {
        if now.moves.contains_key(id) {
            continue;
        }
        let finished = matches!((cmd, reply), (Cmd::FinishMove { id: f, .. }, Reply::MoveEnded(true)) if f == id);
        out.push(if finished {
            Event::MoveFinished {
                id: *id,
                tablet: m.tablet,
                from: m.from,
                to: m.to,
                source: m.source,
            }
        } else {
            Event::MoveAborted {
                id: *id,
                tablet: m.tablet,
                to: m.to,
            }
        });
    }
    out
}

/// Frontends that joined, changed role (learner <-> voter) or left with a membership entry.
pub fn membership(old: &crate::types::Membership, new: &crate::types::Membership) -> Vec<Event> {
    let voters = |m: &crate::types::Membership| -> BTreeSet<NodeId> { m.voter_ids().collect() };
    let nodes = |m: &crate::types::Membership| -> BTreeMap<NodeId, FeNode> {
        m.nodes().map(|(id, n)| (*id, n.clone())).collect()
    };
    let (old_v, new_v, old_n, new_n) = (voters(old), voters(new), nodes(old), nodes(new));
    let mut out = Vec::new();
    for (id, n) in &new_n {
        let voter = new_v.contains(id);
        if !old_n.contains_key(id) {
            out.push(Event::FrontendJoined {
                frontend: *id,
                addr: n.edit_log_addr(),
                voter,
            });
        } else if old_v.contains(id) != voter {
            out.push(Event::FrontendRole {
                frontend: *id,
                addr: n.edit_log_addr(),
                voter,
            });
        }
    }
    for (id, n) in &old_n {
        if !new_n.contains_key(id) {
            out.push(Event::FrontendLeft {
                frontend: *id,
                addr: n.edit_log_addr(),
            });
        }
    }
    out
}

fn role(voter: bool) -> &'static str {
    if voter { "FOLLOWER" } else { "OBSERVER" }
}

impl Event {
    /// One INFO line; `index` is the log entry that made the change.
    pub fn log(&self, index: u64) {
        use tracing::info;
        match self {
            Event::BackendAdded { backend, addr } => {
                info!(index, %backend, %addr, "backend added (applied)")
            }
            Event::DecommissionAccepted { backend } => {
                info!(index, %backend, "DECOMMISSION accepted (applied): backend is DECOMMISSIONING")
            }
            Event::DecommissionCancelled { backend } => {
                info!(index, %backend, "decommission cancelled (applied): backend is ACTIVE")
            }
            Event::Decommissioned { backend } => {
                info!(index, %backend, "backend DECOMMISSIONED (applied)")
            }
            Event::BackendDropped { backend, addr } => {
                info!(index, %backend, %addr, "backend dropped (applied)")
            }
            Event::BackendLiveness { backend, alive } => {
                let state = if *alive { "alive" } else { "dead" };
                info!(index, %backend, "backend {state} (applied)")
            }
            Event::BlacklistAdded {
                frontend,
                backend,
                kind,
                reason,
            } => info!(
                index, %frontend, %backend, kind = %kind.as_str(), reason = %reason,
                "blacklist entry added (applied)"
            ),
            Event::BlacklistRemoved {
                frontend,
                backend,
                kind,
            } => info!(
                index, %frontend, %backend, kind = %kind.as_str(),
                "blacklist entry removed (applied)"
            ),
            Event::MoveFinished {
                id,
                tablet,
                from,
                to,
                source,
            } => {
                let from = from.map(|b| b.to_string()).unwrap_or_else(|| "none".into());
                info!(
                    index, move_id = %id, %tablet, from = %from, to = %to, source = %source,
                    "replica move finished (applied)"
                )
            }
            Event::MoveAborted { id, tablet, to } => {
                info!(index, move_id = %id, %tablet, to = %to, "replica move aborted (applied)")
            }
            Event::FrontendJoined {
                frontend,
                addr,
                voter,
            } => info!(index, frontend, %addr, role = %role(*voter), "frontend joined (applied)"),
            Event::FrontendRole {
                frontend,
                addr,
                voter,
            } => {
                info!(index, frontend, %addr, role = %role(*voter), "frontend role changed (applied)")
            }
            Event::FrontendLeft { frontend, addr } => {
                info!(index, frontend, %addr, "frontend left (applied)")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use roster_membership::Term;

    fn apply(state: &mut ClusterState, req: &Request) -> Response {
        crate::applier::apply(state, req, Term(1))
    }
    use crate::cmd::Request;
    use roster_membership::BackendRef;
    use roster_membership::model::liveness::LivenessReport;

    /// Apply `cmd` and return its events, as the state machine does.
    fn run(s: &mut ClusterState, cmd: Cmd) -> Vec<Event> {
        let req = Request {
            time_ms: 1_000,
            user: None,
            cmd,
        };
        let b = before(s, &req.cmd);
        let resp = apply(s, &req);
        b.map(|b| after(b, s, &req.cmd, &resp)).unwrap_or_default()
    }

    fn alive(id: u64, alive: bool) -> Cmd {
        Cmd::RecordLiveness {
            reports: vec![LivenessReport {
                id: BackendId(id),
                alive,
                last_heartbeat_ms: None,
                failure_counter: 0,
                err_msg: String::new(),
                info: None,
            }],
        }
    }

    #[test]
    fn each_transition_is_one_event_and_repeats_are_none() {
        let mut s = ClusterState::default();
        let b = BackendId(10001);
        let addr = HostPort::new("127.0.9.1", 9050);
        let e = run(
            &mut s,
            Cmd::AddBackends {
                addrs: vec![addr.clone()],
                properties: vec![],
            },
        );
        assert_eq!(
            e,
            vec![Event::BackendAdded {
                backend: b,
                addr: addr.clone()
            }]
        );
        assert_eq!(
            run(&mut s, alive(10001, true)),
            vec![Event::BackendLiveness {
                backend: b,
                alive: true
            }]
        );
        assert_eq!(
            run(&mut s, alive(10001, true)),
            vec![],
            "no change, no event"
        );
        assert_eq!(
            run(&mut s, alive(10001, false)),
            vec![Event::BackendLiveness {
                backend: b,
                alive: false
            }]
        );
        let targets = vec![BackendRef::Id(b)];
        let decommission = Cmd::DecommissionBackends {
            targets: targets.clone(),
        };
        assert_eq!(
            run(&mut s, decommission.clone()),
            vec![Event::DecommissionAccepted { backend: b }]
        );
        assert_eq!(
            run(&mut s, decommission),
            vec![],
            "a repeat is harmless and silent"
        );
        let fe = FrontendId(1);
        let add = Cmd::AddBlacklist {
            frontend: fe,
            backends: vec![b],
        };
        let added = run(&mut s, add);
        assert!(
            matches!(&added[..], [Event::BlacklistAdded { frontend, backend, kind: BlacklistKind::Manual, .. }] if *frontend == fe && *backend == b),
            "{added:?}"
        );
        // A refusal logs nothing.
        assert_eq!(
            run(
                &mut s,
                Cmd::DroppBackends {
                    targets: vec![BackendRef::Id(BackendId(99))]
                }
            ),
            vec![]
        );
        // Finished (nothing on it) and dropped in one entry: both, and the entry goes with it.
        let done = run(&mut s, Cmd::FinishDecommissions);
        assert_eq!(
            done,
            vec![
                Event::Decommissioned { backend: b },
                Event::BackendDropped { backend: b, addr },
                Event::BlacklistRemoved {
                    frontend: fe,
                    backend: b,
                    kind: BlacklistKind::Manual
                },
            ]
        );
    }

    /// The commands `before` skips really change nothing an event is about: with the views
    /// taken anyway, they give no event.
    #[test]
    fn quiet_commands_give_no_event() {
        use roster_membership::model::backend::BackendChange;
        let mut s = ClusterState::default();
        run(
            &mut s,
            Cmd::AddBackends {
                addrs: vec![HostPort::new("127.0.9.1", 9050)],
                properties: vec![],
            },
        );
        run(&mut s, alive(10001, true));
        let targets = vec![BackendRef::Id(BackendId(10001))];
        for cmd in [
            Cmd::ChangeBackends {
                targets: targets.clone(),
                changes: vec![
                    BackendChange::Location("g2".into()),
                    BackendChange::DisableQuery(true),
                    BackendChange::DisableLoad(true),
                    BackendChange::Draining(true),
                ],
            },
            Cmd::ChangeBackends {
                targets: targets.clone(),
                changes: vec![BackendChange::Draining(false)],
            },
            Cmd::ModifyBackends {
                targets: targets.clone(),
                properties: vec![("tag.location".into(), "g3".into())],
            },
        ] {
            assert!(before(&s, &cmd).is_none(), "{cmd:?} is quiet");
            let req = Request {
                time_ms: 1_000,
                user: None,
                cmd,
            };
            let b = view(&s);
            let resp = apply(&mut s, &req);
            assert!(matches!(resp, Response::Ok(_)), "{resp:?}");
            assert_eq!(after(b, &s, &req.cmd, &resp), vec![], "{:?}", req.cmd);
        }
    }
}
