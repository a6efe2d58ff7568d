//! Server side of `roster.proto`, the public client API. The one place that maps `ApiError`
//! to the wire.

use crate::statement::{self, Session};
use roster_membership::Privilege;
use roster_node::auth;
use roster_node::error::ApiError;
use roster_node::node::FeNodeHandle;
use roster_proto::QueryResult;
use roster_proto::pb::v1::{self as pb, roster_server::Roster};
use std::net::{IpAddr, Ipv4Addr};
use tonic::{Request, Response, Status};

/// The caller's address (the throttle's key). Every server here listens on TCP, so it is
/// always known; an unknown one counts as one shared source.
fn source<T>(req: &Request<T>) -> IpAddr {
    req.remote_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

pub struct RosterService {
    pub fe: FeNodeHandle,
}

/// An empty user name means root, as in `roster sql`.
fn user_or_root(user: &str) -> String {
    if user.is_empty() { "root" } else { user }.to_string()
}

fn result_to_pb(r: QueryResult) -> pb::ExecuteResponse {
    pb::ExecuteResponse {
        columns: r.columns,
        rows: r
            .rows
            .into_iter()
            .map(|row| pb::Row {
                values: row.into_iter().map(|text| pb::Value { text }).collect(),
            })
            .collect(),
        affected_rows: r.affected_rows,
        message: r.message,
        error: None,
        leader_rpc_addr: String::new(),
    }
}

impl RosterService {
    /// Every call carries user and password (checked against the stored hash), throttled per
    /// source address.
    async fn login(&self, source: IpAddr, user: &str, password: &str) -> Result<(), ApiError> {
        auth::login(&self.fe, source, user, !password.is_empty(), |stored| {
            auth::verify_password(stored, password)
        })
        .await
    }

    /// Login, read barrier (unless stale reads were asked for), then the privilege, checked
    /// against state at least as new as the request.
    async fn read_access(
        &self,
        source: IpAddr,
        user: &str,
        password: &str,
        consistency: i32,
        privilege: Privilege,
    ) -> Result<(), ApiError> {
        self.login(source, user, password).await?;
        if consistency != pb::ReadConsistency::Stale as i32 {
            self.fe.linearize().await?;
        }
        self.fe.authorize_here(user, privilege)
    }

    /// A drained FE takes no new client work (`node::drain`).
    fn refuse_if_draining(&self) -> Result<(), Status> {
        if self.fe.is_draining() {
            Err(roster_proto::status::draining_status())
        } else {
            Ok(())
        }
    }

    fn leader_rpc(&self) -> String {
        self.fe
            .leader()
            .map(|(_, n)| n.rpc_addr())
            .unwrap_or_default()
    }
}

#[tonic::async_trait]
impl Roster for RosterService {
    async fn execute(
        &self,
        req: Request<pb::ExecuteRequest>,
    ) -> Result<Response<pb::ExecuteResponse>, Status> {
        self.refuse_if_draining()?;
        let from = source(&req);
        let req = req.into_inner();
        let user = user_or_root(&req.user);
        if let Err(e) = self.login(from, &user, &req.password).await {
            return Ok(Response::new(pb::ExecuteResponse {
                error: Some(e.to_pb()),
                leader_rpc_addr: self.leader_rpc(),
                ..Default::default()
            }));
        }
        let mut session = Session::new(user);
        session.stale_reads = req.consistency == pb::ReadConsistency::Stale as i32;
        let mut resp = match statement::execute_sql(&self.fe, &mut session, &req.sql).await {
            Ok(r) => result_to_pb(r),
            Err(e) => pb::ExecuteResponse {
                error: Some(e.to_pb()),
                ..Default::default()
            },
        };
        resp.leader_rpc_addr = self.leader_rpc();
        Ok(Response::new(resp))
    }

    /// Without credentials: only where the leader is (what a client needs to find it). With a
    /// login: indexes, term and (on request) the state digest too.
    async fn status(
        &self,
        req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let from = source(&req);
        let req = req.into_inner();
        let m = self.fe.raft_view();
        let hints = pb::StatusResponse {
            node_id: self.fe.id().0,
            cluster_id: self.fe.config().cluster_id.clone(),
            leader_id: m.leader.map(|l| l.0),
            leader_rpc_addr: self.leader_rpc(),
            is_leader: m.leader == Some(self.fe.id()),
            draining: self.fe.is_draining(),
            ..Default::default()
        };
        if req.user.is_empty() && req.password.is_empty() {
            return Ok(Response::new(hints));
        }
        if let Err(e) = self
            .login(from, &user_or_root(&req.user), &req.password)
            .await
        {
            return Ok(Response::new(pb::StatusResponse {
                error: Some(e.to_pb()),
                ..hints
            }));
        }
        // Read state and index together, under the state lock. Hashing the whole state costs
        // time proportional to it, so only on request.
        let (digest_index, state_digest) = if req.with_digest {
            self.fe.store().digest()
        } else {
            (0, String::new())
        };
        Ok(Response::new(pb::StatusResponse {
            term: m.term,
            last_applied: m.last_applied,
            snapshot_index: m.snapshot,
            purged_index: m.purged,
            state_digest,
            digest_index,
            ..hints
        }))
    }

    async fn drain(
        &self,
        req: Request<pb::DrainRequest>,
    ) -> Result<Response<pb::DrainResponse>, Status> {
        let from = source(&req);
        let req = req.into_inner();
        let user = user_or_root(&req.user);
        let checked = self
            .login(from, &user, &req.password)
            .await
            .and_then(|()| self.fe.authorize_here(&user, Privilege::NodePriv));
        if let Err(e) = checked {
            return Ok(Response::new(pb::DrainResponse {
                error: Some(e.to_pb()),
                draining: self.fe.is_draining(),
                node_id: self.fe.id().0,
                ..Default::default()
            }));
        }
        let message = if req.undrain {
            self.fe.undrain();
            "frontend serves clients again".to_string()
        } else {
            self.fe.drain();
            let deadline =
                std::time::Instant::now() + std::time::Duration::from_millis(req.wait_ms);
            if self.fe.wait_drained(deadline).await {
                "drained: not the master, new client connections refused".to_string()
            } else if self.fe.leader().is_some_and(|(l, _)| l == self.fe.id()) {
                "draining: still the master (no other follower took leadership yet)".to_string()
            } else {
                "draining: no master is known".to_string()
            }
        };
        Ok(Response::new(pb::DrainResponse {
            error: None,
            draining: self.fe.is_draining(),
            complete: self.fe.drain_complete(),
            message,
            node_id: self.fe.id().0,
            leader_rpc_addr: self.leader_rpc(),
        }))
    }

    async fn list_backends(
        &self,
        req: Request<pb::ListBackendsRequest>,
    ) -> Result<Response<pb::ListBackendsResponse>, Status> {
        self.refuse_if_draining()?;
        let from = source(&req);
        let req = req.into_inner();
        let user = user_or_root(&req.user);
        let checked = self
            .read_access(
                from,
                &user,
                &req.password,
                req.consistency,
                Privilege::AdminPriv,
            )
            .await;
        if let Err(e) = checked {
            return Ok(Response::new(pb::ListBackendsResponse {
                error: Some(e.to_pb()),
                leader_rpc_addr: self.leader_rpc(),
                ..Default::default()
            }));
        }
        let backends = self.fe.store().read(|s, _| {
            s.backends
                .values()
                .map(|b| pb::Backend {
                    id: b.id.0,
                    host: b.addr.host.clone(),
                    heartbeat_port: b.addr.port as u32,
                    membership: b.membership.as_str().to_string(),
                    alive: b.liveness.alive,
                    tag_location: b.tags.location.clone(),
                    disable_query: b.disable_query,
                    disable_load: b.disable_load,
                    is_draining: b.draining.is_some(),
                })
                .collect()
        });
        Ok(Response::new(pb::ListBackendsResponse {
            backends,
            error: None,
            leader_rpc_addr: self.leader_rpc(),
        }))
    }

    async fn tablet_routes(
        &self,
        req: Request<pb::TabletRoutesRequest>,
    ) -> Result<Response<pb::TabletRoutesResponse>, Status> {
        self.refuse_if_draining()?;
        let from = source(&req);
        let req = req.into_inner();
        let user = user_or_root(&req.user);
        let routes = match self
            .read_access(
                from,
                &user,
                &req.password,
                req.consistency,
                Privilege::SelectPriv,
            )
            .await
            .and_then(|()| statement::tablet_routes(&self.fe, &req.table))
        {
            Ok(r) => r,
            Err(e) => {
                return Ok(Response::new(pb::TabletRoutesResponse {
                    error: Some(e.to_pb()),
                    leader_rpc_addr: self.leader_rpc(),
                    frontend_id: self.fe.id().0,
                    ..Default::default()
                }));
            }
        };
        Ok(Response::new(pb::TabletRoutesResponse {
            routes: routes
                .into_iter()
                .map(|r| {
                    let (backend_id, host, be_port) = match r.backend {
                        Some((id, host, port)) => (Some(id.0), host, port as u32),
                        None => (None, String::new(), 0),
                    };
                    pb::TabletRoute {
                        tablet_id: r.tablet.0,
                        backend_id,
                        host,
                        be_port,
                        reason: r.reason,
                    }
                })
                .collect(),
            error: None,
            leader_rpc_addr: self.leader_rpc(),
            frontend_id: self.fe.id().0,
        }))
    }
}
