//! Server side of `roster.proto`, the public client API. The one place that maps `ApiError`
//! to the wire.

use crate::auth;
use crate::error::ApiError;
use crate::executor::{self, QueryResult, Session};
use crate::node::FeNodeHandle;
use crate::pb::v1::{self as pb, roster_server::Roster};
use openraft::async_runtime::watch::WatchReceiver;
use roster_membership::Privilege;
use tonic::{Request, Response, Status};

pub struct RosterService {
    pub fe: FeNodeHandle,
}

pub fn error_to_pb(e: &ApiError) -> pb::Error {
    pb::Error {
        code: 1105,
        message: e.mysql_message(),
        retryable: e.is_retryable(),
        outcome: if e.outcome_unknown() {
            pb::Outcome::Unknown
        } else {
            pb::Outcome::NotApplied
        } as i32,
    }
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
    /// Every call carries user and password (checked against the stored hash).
    async fn login(&self, user: &str, password: &str) -> Result<(), ApiError> {
        auth::login(&self.fe, user, !password.is_empty(), |stored| {
            auth::verify_password(stored, password)
        })
        .await
    }

    /// Login, read barrier (unless stale reads were asked for), then the privilege, checked
    /// against state at least as new as the request.
    async fn read_access(
        &self,
        user: &str,
        password: &str,
        consistency: i32,
        privilege: Privilege,
    ) -> Result<(), ApiError> {
        self.login(user, password).await?;
        if consistency != pb::ReadConsistency::Stale as i32 {
            self.fe.linearize().await?;
        }
        self.fe.authorize_here(user, privilege)
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
        let req = req.into_inner();
        let user = user_or_root(&req.user);
        if let Err(e) = self.login(&user, &req.password).await {
            return Ok(Response::new(pb::ExecuteResponse {
                error: Some(error_to_pb(&e)),
                leader_rpc_addr: self.leader_rpc(),
                ..Default::default()
            }));
        }
        let mut session = Session::new(user);
        session.stale_reads = req.consistency == pb::ReadConsistency::Stale as i32;
        let mut resp = match executor::execute_sql(&self.fe, &mut session, &req.sql).await {
            Ok(r) => result_to_pb(r),
            Err(e) => pb::ExecuteResponse {
                error: Some(error_to_pb(&e)),
                ..Default::default()
            },
        };
        resp.leader_rpc_addr = self.leader_rpc();
        Ok(Response::new(resp))
    }

    async fn status(
        &self,
        req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let m = self.fe.raft().metrics().borrow_watched().clone();
        // Read state and index together, under the state lock. Hashing the whole state costs
        // time proportional to it, so only on request.
        let (digest_index, state_digest) = if req.into_inner().with_digest {
            self.fe.store().read(|state, applied| {
                use sha1::Digest;
                let bytes = bincode::serialize(state).unwrap_or_default();
                let hex: String = sha1::Sha1::digest(&bytes)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                (applied.last_applied.map(|l| l.index).unwrap_or(0), hex)
            })
        } else {
            (0, String::new())
        };
        Ok(Response::new(pb::StatusResponse {
            node_id: self.fe.id(),
            cluster_id: self.fe.config().cluster_id.clone(),
            leader_id: m.current_leader,
            leader_rpc_addr: self.leader_rpc(),
            term: m.current_term,
            last_applied: m.last_applied.map(|l| l.index).unwrap_or(0),
            is_leader: m.current_leader == Some(self.fe.id()),
            snapshot_index: m.snapshot.map(|l| l.index).unwrap_or(0),
            purged_index: m.purged.map(|l| l.index).unwrap_or(0),
            state_digest,
            digest_index,
        }))
    }

    async fn list_backends(
        &self,
        req: Request<pb::ListBackendsRequest>,
    ) -> Result<Response<pb::ListBackendsResponse>, Status> {
        let req = req.into_inner();
        let user = user_or_root(&req.user);
        let checked = self
            .read_access(&user, &req.password, req.consistency, Privilege::AdminPriv)
            .await;
        if let Err(e) = checked {
            return Ok(Response::new(pb::ListBackendsResponse {
                error: Some(error_to_pb(&e)),
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
        let req = req.into_inner();
        let user = user_or_root(&req.user);
        let routes = match self
            .read_access(&user, &req.password, req.consistency, Privilege::SelectPriv)
            .await
            .and_then(|()| executor::tablet_routes(&self.fe, &req.table))
        {
            Ok(r) => r,
            Err(e) => {
                return Ok(Response::new(pb::TabletRoutesResponse {
                    error: Some(error_to_pb(&e)),
                    leader_rpc_addr: self.leader_rpc(),
                    frontend_id: self.fe.id(),
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
            frontend_id: self.fe.id(),
        }))
    }
}
