//! The one applier: a `match` over `Cmd` whose arms call the pure transitions of the
//! membership crate. Deterministic: time comes from the entry, maps are ordered.

use crate::cmd::{Cmd, Reply, Request, Response};
use roster_membership::{ClusterState, DomainError, Term, query, transition};

/// Apply one command, from an entry appended in `entry_term`, to the state. Refusals leave the
/// state unchanged.
pub fn apply(state: &mut ClusterState, req: &Request, entry_term: Term) -> Response {
    let now = state.tick(req.time_ms);
    if let Some(user) = &req.user
        && let Err(e) = query::users::authorize(state, user, req.cmd.required_privilege())
    {
        return Response::Refused(e);
    }
    match run(state, now, &req.cmd, entry_term) {
        Ok(r) => Response::Ok(r),
        Err(e) => Response::Refused(e),
    }
}

fn run(
    state: &mut ClusterState,
    now: u64,
    cmd: &Cmd,
    entry_term: Term,
) -> Result<Reply, DomainError> {
    match cmd {
        Cmd::Fenced { term, cmd } if *term == entry_term => run(state, now, cmd, entry_term),
        Cmd::Fenced { term, .. } => Err(DomainError::StaleTerm {
            decided: *term,
            entry: entry_term,
        }),
        Cmd::Noop => Ok(Reply::Done),
        Cmd::AddBackends { addrs, properties } => {
            transition::registry::add_backends(state, now, addrs, properties).map(Reply::Added)
        }
        Cmd::AddTaggedBackends { addrs, tags } => {
            transition::registry::add_tagged_backends(state, now, addrs, tags).map(Reply::Added)
        }
        Cmd::DroppBackends { targets } => transition::registry::dropp_backends(state, now, targets)
            .map(|(tombstones, lost)| Reply::Dropped {
                tombstones,
                tablets_lost: lost as u64,
            }),
        Cmd::DecommissionBackends { targets } => {
            transition::registry::decommission(state, now, targets).map(Reply::Memberships)
        }
        Cmd::CancelDecommission { targets } => {
            transition::registry::cancel_decommission(state, now, targets).map(Reply::Memberships)
        }
        Cmd::ModifyBackends {
            targets,
            properties,
        } => transition::registry::modify_backends(state, targets, properties).map(Reply::Changed),
        Cmd::ChangeBackends { targets, changes } => {
            transition::registry::change_backends(state, targets, changes).map(Reply::Changed)
        }
        Cmd::SetConfig { pairs } => state.meta.settings.set_all(pairs).map(|_| Reply::Done),
        Cmd::EnsureRoot { password } => {
            transition::users::ensure_root(state, now, *password);
            Ok(Reply::Done)
        }
        Cmd::CreateUser { name, password } => {
            transition::users::create_user(state, now, name, *password).map(|_| Reply::Done)
        }
        Cmd::DropUser { name } => transition::users::drop_user(state, name).map(|_| Reply::Done),
        Cmd::Grant { name, privileges } => {
            transition::users::grant(state, name, privileges).map(|_| Reply::Done)
        }
        Cmd::Revoke { name, privileges } => {
            transition::users::revoke(state, name, privileges).map(|_| Reply::Done)
        }
        Cmd::AddBlacklist { frontend, backends } => {
            transition::blacklist::add_manual(state, now, *frontend, backends).map(Reply::Changed)
        }
        Cmd::DeleteBlacklist { frontend, backends } => {
            transition::blacklist::delete(state, *frontend, backends).map(Reply::Changed)
        }
        Cmd::RecordLiveness { reports } => Ok(Reply::Changed(transition::liveness::record(
            state, now, reports,
        ))),
        Cmd::CreateTable(def) => {
            transition::catalog::create_table(state, now, def).map(|(id, created)| Reply::Table {
                id: Some(id),
                created,
            })
        }
        Cmd::CreateTableSpec(spec) => {
            transition::catalog::create_table_spec(state, now, spec).map(|(id, created)| {
                Reply::Table {
                    id: Some(id),
                    created,
                }
            })
        }
        Cmd::DropTable {
            name,
            if_exists,
            force,
        } => transition::catalog::drop_table(state, now, name, *if_exists, *force)
            .map(|id| Reply::Table { id, created: false }),
        Cmd::RecoverTable { name } => {
            transition::catalog::recover_table(state, name).map(|id| Reply::Table {
                id: Some(id),
                created: false,
            })
        }
        Cmd::ExpireRecycleBin => Ok(Reply::Expired(transition::catalog::expire_recycle_bin(
            state, now,
        ))),
        Cmd::RecordReplicas { reports } => {
            transition::catalog::record_replicas(state, reports);
            Ok(Reply::Done)
        }
        Cmd::StartMoves { moves: plans } => Ok(Reply::Moves(transition::moves::start_moves(
            state, now, plans,
        ))),
        Cmd::FinishMove {
            id,
            bytes,
            checksum,
        } => Ok(Reply::MoveEnded(transition::moves::finish_move(
            state, now, *id, *bytes, *checksum,
        ))),
        Cmd::AbortMove { id, reason } => Ok(Reply::MoveEnded(transition::moves::abort_move(
            state, now, *id, reason, true,
        ))),
        Cmd::FinishDecommissions => Ok(Reply::Changed(transition::drain::finish(state, now))),
        Cmd::ReplicasLost { lost } => {
            transition::catalog::forget_lost(state, lost);
            Ok(Reply::Done)
        }
        Cmd::RecordConnectFailures {
            frontend,
            backend,
            count,
            reason,
        } => {
            transition::blacklist::record_failures(state, now, *frontend, *backend, *count, reason)
                .map(|added| Reply::Changed(if added { vec![*backend] } else { vec![] }))
        }
        Cmd::ClearAutoBlacklist { frontend, backend } => Ok(Reply::Changed(
            if transition::blacklist::clear_auto(state, now, *frontend, *backend) {
                vec![*backend]
            } else {
                vec![]
            },
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use roster_membership::{BackendId, BackendRef, HostPort};

    /// Entries of term 1, the term of every test here that does not name one.
    fn apply(state: &mut ClusterState, req: &Request) -> Response {
        super::apply(state, req, Term(1))
    }

    fn req(time_ms: u64, cmd: Cmd) -> Request {
        Request {
            time_ms,
            user: None,
            cmd,
        }
    }

    /// Older logs carry ADD BACKEND, MODIFY BACKEND and CREATE TABLE with their properties as
    /// text, parsed at apply; new entries carry them parsed when planned. Both replay to the
    /// same state, and a typed entry with a value the parser would refuse is refused at apply.
    #[test]
    fn typed_and_text_forms_apply_alike_and_bad_typed_values_are_refused() {
        use roster_membership::model::backend::{BackendChange, Tags};
        use roster_membership::model::catalog::{ReplicaAllocation, TableDef, TableSpec};
        let addrs: Vec<HostPort> = (1..=3)
            .map(|k| HostPort::new(format!("127.0.9.{k}"), 9050))
            .collect();
        let text = [
            Cmd::AddBackends {
                addrs: addrs.clone(),
                properties: vec![("tag.location".into(), "g1".into())],
            },
            Cmd::ModifyBackends {
                targets: vec![BackendRef::Id(BackendId(10002))],
                properties: vec![("disable_query".into(), "true".into())],
            },
            Cmd::CreateTable(TableDef {
                name: "t".into(),
                if_not_exists: false,
                columns: vec![],
                hash_columns: vec![],
                buckets: 2,
                properties: vec![
                    ("replication_allocation".into(), "tag.location.g1: 2".into()),
                    ("fill_bytes_per_tablet".into(), "7".into()),
                ],
            }),
        ];
        let g1 = Tags {
            location: "g1".into(),
            ..Tags::default()
        };
        let spec = TableSpec {
            name: "t".into(),
            if_not_exists: false,
            columns: vec![],
            hash_columns: vec![],
            buckets: 2,
            allocation: ReplicaAllocation([("g1".to_string(), 2)].into()),
            fill_bytes_per_tablet: 7,
        };
        let typed = [
            Cmd::AddTaggedBackends {
                addrs: addrs.clone(),
                tags: g1.clone(),
            },
            Cmd::ChangeBackends {
                targets: vec![BackendRef::Id(BackendId(10002))],
                changes: vec![BackendChange::DisableQuery(true)],
            },
            Cmd::CreateTableSpec(spec.clone()),
        ];
        let (mut a, mut b) = (ClusterState::default(), ClusterState::default());
        for (i, (x, y)) in text.into_iter().zip(typed).enumerate() {
            let (ra, rb) = (apply(&mut a, &req(5, x)), apply(&mut b, &req(5, y)));
            assert!(matches!(ra, Response::Ok(_)), "{ra:?}");
            assert_eq!(ra, rb);
            if i == 0 {
                // Placement needs alive backends.
                for s in [&mut a, &mut b] {
                    for id in 10001..=10003 {
                        s.backends.get_mut(&BackendId(id)).unwrap().liveness.alive = true;
                    }
                }
            }
        }
        assert_eq!(a, b);
        assert_eq!(a.tablets.len(), 2);

        let bad_tag = Tags {
            location: "no spaces".into(),
            ..Tags::default()
        };
        let bad = [
            Cmd::AddTaggedBackends {
                addrs: vec![HostPort::new("127.0.9.9", 9050)],
                tags: bad_tag,
            },
            Cmd::ChangeBackends {
                targets: vec![BackendRef::Id(BackendId(10001))],
                changes: vec![BackendChange::Location(String::new())],
            },
            Cmd::ChangeBackends {
                targets: vec![BackendRef::Id(BackendId(10001))],
                changes: vec![],
            },
            Cmd::CreateTableSpec(TableSpec {
                name: "u".into(),
                allocation: ReplicaAllocation([("g1".to_string(), 0)].into()),
                ..spec.clone()
            }),
            Cmd::CreateTableSpec(TableSpec {
                name: "9u".into(),
                ..spec
            }),
        ];
        for cmd in bad {
            let before = b.clone();
            let r = apply(&mut b, &req(5, cmd.clone()));
            assert!(matches!(r, Response::Refused(_)), "{cmd:?}: {r:?}");
            assert_eq!(b, before, "{cmd:?} changed the state");
        }
    }

    /// A state with one registered backend, 10001, not yet alive.
    fn one_backend() -> ClusterState {
        let mut s = ClusterState::default();
        let add = Cmd::AddBackends {
            addrs: vec![HostPort::new("127.0.9.1", 9050)],
            properties: vec![],
        };
        assert!(matches!(apply(&mut s, &req(1, add)), Response::Ok(_)));
        s
    }

    fn alive(id: u64) -> Cmd {
        Cmd::RecordLiveness {
            reports: vec![roster_membership::model::liveness::LivenessReport {
                id: BackendId(id),
                alive: true,
                last_heartbeat_ms: Some(2),
                failure_counter: 0,
                err_msg: String::new(),
                info: None,
            }],
        }
    }

    #[test]
    fn leader_work_applies_only_in_the_term_it_was_decided() {
        // A round decided in term 3, appended by the same master re-elected in term 5: refused,
        // and the backend stays as it was.
        let mut s = one_backend();
        let stale = req(2, Cmd::fenced(Term(3), alive(10001)));
        assert_eq!(
            super::apply(&mut s, &stale, Term(5)),
            Response::Refused(DomainError::StaleTerm {
                decided: Term(3),
                entry: Term(5)
            })
        );
        assert!(!s.backends.get(&BackendId(10001)).unwrap().liveness.alive);
        // The same work decided in the term of its entry applies.
        let fresh = req(3, Cmd::fenced(Term(5), alive(10001)));
        assert!(matches!(
            super::apply(&mut s, &fresh, Term(5)),
            Response::Ok(Reply::Changed(ref c)) if c == &[BackendId(10001)]
        ));
        assert!(s.backends.get(&BackendId(10001)).unwrap().liveness.alive);
    }

    #[test]
    fn every_fence_of_a_nested_command_must_hold() {
        let mut s = one_backend();
        let inner_stale = Cmd::fenced(Term(5), Cmd::fenced(Term(4), alive(10001)));
        assert!(matches!(
            super::apply(&mut s, &req(2, inner_stale), Term(5)),
            Response::Refused(DomainError::StaleTerm { .. })
        ));
        assert!(!s.backends.get(&BackendId(10001)).unwrap().liveness.alive);
    }

    #[test]
    fn unfenced_leader_commands_of_older_logs_still_apply() {
        let mut s = one_backend();
        assert!(matches!(
            super::apply(&mut s, &req(2, alive(10001)), Term(9)),
            Response::Ok(_)
        ));
        assert!(s.backends.get(&BackendId(10001)).unwrap().liveness.alive);
    }

    #[test]
    fn a_fence_takes_the_privilege_of_what_it_wraps() {
        let mut s = one_backend();
        apply(&mut s, &req(2, Cmd::EnsureRoot { password: None }));
        let create = Cmd::CreateUser {
            name: "ops".into(),
            password: None,
        };
        apply(&mut s, &req(2, create));
        let as_ops = Request {
            time_ms: 3,
            user: Some("ops".into()),
            cmd: Cmd::fenced(Term(1), alive(10001)),
        };
        assert!(matches!(
            apply(&mut s, &as_ops),
            Response::Refused(DomainError::AccessDenied { .. })
        ));
        assert!(!s.backends.get(&BackendId(10001)).unwrap().liveness.alive);
    }

    #[test]
    fn privileges_are_checked_at_apply() {
        let mut s = ClusterState::default();
        apply(&mut s, &req(1, Cmd::EnsureRoot { password: None }));
        apply(
            &mut s,
            &req(
                1,
                Cmd::CreateUser {
                    name: "ops".into(),
                    password: None,
                },
            ),
        );
        let add = Cmd::AddBackends {
            addrs: vec![HostPort::new("a", 1)],
            properties: vec![],
        };
        let as_ops = Request {
            time_ms: 2,
            user: Some("ops".into()),
            cmd: add.clone(),
        };
        assert!(matches!(
            apply(&mut s, &as_ops),
            Response::Refused(DomainError::AccessDenied { .. })
        ));
        assert!(s.backends.is_empty());
        apply(
            &mut s,
            &Request {
                time_ms: 3,
                user: Some("root".into()),
                cmd: Cmd::Grant {
                    name: "ops".into(),
                    privileges: vec![roster_membership::Privilege::NodePriv],
                },
            },
        );
        assert!(matches!(
            apply(&mut s, &as_ops),
            Response::Ok(Reply::Added(_))
        ));
        let unknown = Request {
            time_ms: 4,
            user: Some("ghost".into()),
            cmd: Cmd::Noop,
        };
        assert!(matches!(
            apply(&mut s, &unknown),
            Response::Refused(DomainError::UnknownUser(_))
        ));
    }

    #[test]
    fn applies_and_refuses_without_change() {
        let mut s = ClusterState::default();
        let add = Cmd::AddBackends {
            addrs: vec![HostPort::new("a", 1)],
            properties: vec![],
        };
        assert_eq!(
            apply(&mut s, &req(10, add.clone())),
            Response::Ok(Reply::Added(vec![BackendId(10001)]))
        );
        let before = s.clone();
        let r = apply(&mut s, &req(5, add));
        assert!(matches!(
            r,
            Response::Refused(DomainError::DuplicateBackend(_))
        ));
        // Only the clock may differ, and it did not go back.
        assert_eq!(s.backends, before.backends);
        assert_eq!(s.meta.clock_ms, 10);
        let r = apply(
            &mut s,
            &req(
                20,
                Cmd::DecommissionBackends {
                    targets: vec![BackendRef::Id(BackendId(10001))],
                },
            ),
        );
        assert_eq!(
            r,
            Response::Ok(Reply::Memberships(vec![(
                BackendId(10001),
                transition::registry::MembershipOutcome::Changed
            )]))
        );
        assert_eq!(
            s.backends
                .get(&BackendId(10001))
                .unwrap()
                .decommission_started_ms,
            Some(20)
        );
    }

    #[test]
    fn same_log_same_state() {
        let log = [
            req(
                1,
                Cmd::AddBackends {
                    addrs: vec![HostPort::new("a", 1), HostPort::new("b", 1)],
                    properties: vec![],
                },
            ),
            req(
                2,
                Cmd::DroppBackends {
                    targets: vec![BackendRef::Addr(HostPort::new("a", 1))],
                },
            ),
            req(
                3,
                Cmd::SetConfig {
                    pairs: vec![("disable_balance".into(), "true".into())],
                },
            ),
        ];
        let mut s1 = ClusterState::default();
        let mut s2 = ClusterState::default();
        let r1: Vec<_> = log.iter().map(|r| apply(&mut s1, r)).collect();
        let r2: Vec<_> = log.iter().map(|r| apply(&mut s2, r)).collect();
        assert_eq!(r1, r2);
        assert_eq!(s1, s2);
    }
}
