//! The client library: give it a list of FE endpoints or one VIP address. It finds the leader
//! from hints, retries what is safe to retry with jittered backoff inside the caller's
//! deadline, and reports an operation whose outcome it cannot know as `Unknown`, never as
//! failed.
//!
//! Every FE accepts every statement (writes are forwarded to the leader), so following leader
//! hints only saves a hop; it is off by default for a single (VIP) endpoint, whose hints may
//! name addresses the client cannot reach.

pub mod statement;

pub use roster_proto::QueryResult;
pub use roster_transport::tls::ClientTls;

use backon::{BackoffBuilder, ExponentialBuilder};
use roster_proto::pb::v1::{self as pb, roster_client::RosterClient};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` of FE rpc ports, or one VIP.
    pub endpoints: Vec<String>,
    pub user: String,
    pub password: String,
    /// The deadline of each call, retries included.
    pub timeout: Duration,
    pub stale_reads: bool,
    pub follow_leader_hints: bool,
    /// TLS towards FEs of a secure cluster (`None`: plaintext, for insecure clusters).
    pub tls: Option<ClientTls>,
}

impl ClientConfig {
    pub fn new(endpoints: Vec<String>) -> Self {
        let follow = endpoints.len() > 1;
        ClientConfig {
            endpoints,
            user: "root".into(),
            password: String::new(),
            timeout: Duration::from_secs(15),
            stale_reads: false,
            follow_leader_hints: follow,
            tls: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error; the statement did not take effect.
    #[error("ERROR {code} (HY000): {message}")]
    Server { code: u32, message: String },
    /// The statement may or may not have taken effect (e.g. timeout after sending a write).
    #[error("outcome unknown: {0}")]
    Unknown(String),
    /// No FE could serve the call before the deadline; nothing took effect.
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("invalid client configuration: {0}")]
    Config(String),
}

impl ClientError {
    pub fn is_unknown(&self) -> bool {
        match self {
            ClientError::Unknown(_) => true,
            ClientError::Server { .. } | ClientError::Unavailable(_) | ClientError::Config(_) => {
                false
            }
        }
    }
}

/// The answer of `Client::tablet_routes`.
#[derive(Debug, Clone, PartialEq)]
pub struct TabletRoutes {
    /// The FE whose blacklist these routes obey.
    pub frontend_id: u64,
    pub routes: Vec<pb::TabletRoute>,
}

pub struct Client {
    cfg: ClientConfig,
    channels: Mutex<Vec<(String, Channel)>>,
    /// The endpoint to try first: the last leader hint or the last endpoint that answered.
    preferred: Mutex<Option<String>>,
    next: AtomicUsize,
}

/// The server refused the request for its size, before decoding it (tonic's limit on the
/// client service, set from `max_allowed_packet`): nothing took effect.
fn is_too_large(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::OutOfRange
        && status.message().contains("message length too large")
}

impl Client {
    pub fn new(cfg: ClientConfig) -> Result<Self, ClientError> {
        if cfg.endpoints.is_empty() {
            return Err(ClientError::Config("no endpoints given".into()));
        }
        let c = Client {
            cfg,
            channels: Mutex::new(Vec::new()),
            preferred: Mutex::new(None),
            next: AtomicUsize::new(0),
        };
        for e in c.cfg.endpoints.clone() {
            c.channel(&e)?;
        }
        Ok(c)
    }

    fn channel(&self, addr: &str) -> Result<Channel, ClientError> {
        let mut chans = self.channels.lock().expect("channels lock");
        if let Some((_, c)) = chans.iter().find(|(a, _)| a == addr) {
            return Ok(c.clone());
        }
        let ep = match &self.cfg.tls {
            Some(tls) => tls.endpoint(addr),
            None => Endpoint::from_shared(format!("http://{addr}")),
        }
        .map_err(|e| ClientError::Config(format!("bad endpoint {addr}: {e}")))?;
        let ep = roster_transport::http2::endpoint(ep).connect_timeout(Duration::from_millis(1000));
        let c = ep.connect_lazy();
        chans.push((addr.to_string(), c.clone()));
        Ok(c)
    }

    fn pick(&self) -> String {
        if let Some(p) = self.preferred.lock().expect("preferred lock").clone() {
            return p;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        self.cfg.endpoints[i % self.cfg.endpoints.len()].clone()
    }

    fn demote(&self, addr: &str) {
        let mut p = self.preferred.lock().expect("preferred lock");
        if p.as_deref() == Some(addr) {
            *p = None;
        }
    }

    fn hint(&self, leader_rpc_addr: &str) {
        if self.cfg.follow_leader_hints && !leader_rpc_addr.is_empty() {
            *self.preferred.lock().expect("preferred lock") = Some(leader_rpc_addr.to_string());
        }
    }

    /// The delays between attempts of one call: 25 ms doubling up to 500 ms, each with up to
    /// as much again of random jitter (so clients that failed together do not retry together),
    /// for as long as the caller's deadline lasts.
    fn delays() -> impl Iterator<Item = Duration> {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(25))
            .with_factor(2.0)
            .with_max_delay(Duration::from_millis(500))
            .with_jitter()
            .without_max_times()
            .build()
    }

    /// Sleep the next delay, cut short by the deadline.
    async fn backoff(delays: &mut impl Iterator<Item = Duration>, deadline: Instant) {
        let left = deadline.saturating_duration_since(Instant::now());
        let d = delays.next().unwrap_or(left).min(left);
        tokio::time::sleep(d).await;
    }

    /// Execute one statement.
    pub async fn execute(&self, sql: &str) -> Result<QueryResult, ClientError> {
        let read_only = crate::statement::is_read_only(sql);
        let deadline = Instant::now() + self.cfg.timeout;
        let mut delays = Self::delays();
        let mut last = String::from("no attempt made");
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::Unavailable(last));
            }
            let addr = self.pick();
            let mut client = RosterClient::new(self.channel(&addr)?);
            let mut req = tonic::Request::new(pb::ExecuteRequest {
                sql: sql.to_string(),
                user: self.cfg.user.clone(),
                password: self.cfg.password.clone(),
                consistency: self.consistency(),
            });
            req.set_timeout(left);
            match tokio::time::timeout(left, client.execute(req)).await {
                Ok(Ok(resp)) => {
                    let mut resp = resp.into_inner();
                    self.hint(&resp.leader_rpc_addr);
                    match resp.error.take() {
                        None => return Ok(QueryResult::from(resp)),
                        Some(e) if e.outcome == pb::Outcome::Unknown as i32 => {
                            if read_only {
                                last = e.message;
                            } else {
                                return Err(ClientError::Unknown(e.message));
                            }
                        }
                        Some(e) if e.retryable => last = e.message,
                        Some(e) => {
                            return Err(ClientError::Server {
                                code: e.code,
                                message: e.message,
                            });
                        }
                    }
                }
                Ok(Err(status)) if is_too_large(&status) => {
                    return Err(ClientError::Server {
                        code: 1153,
                        message: format!(
                            "Got a packet bigger than 'max_allowed_packet' bytes: the statement has {} bytes and {addr} refused the request before reading it ({})",
                            sql.len(),
                            status.message()
                        ),
                    });
                }
                Ok(Err(status)) => {
                    self.demote(&addr);
                    last = format!("{addr}: {}", status.message());
                    if !roster_transport::never_sent(&status) && !read_only {
                        return Err(ClientError::Unknown(last));
                    }
                }
                Err(_) => {
                    self.demote(&addr);
                    last = format!("{addr}: no answer before the deadline");
                    if !read_only {
                        return Err(ClientError::Unknown(last));
                    }
                }
            }
            Self::backoff(&mut delays, deadline).await;
        }
    }

    fn consistency(&self) -> i32 {
        let c = if self.cfg.stale_reads {
            pb::ReadConsistency::Stale
        } else {
            pb::ReadConsistency::Linearizable
        };
        c as i32
    }

    /// One typed read, retried on other endpoints until the deadline: `call` sends it with the
    /// time left and returns (answer, error, leader hint).
    async fn typed_read<R, Fut>(
        &self,
        mut call: impl FnMut(RosterClient<Channel>, Duration) -> Fut,
    ) -> Result<R, ClientError>
    where
        Fut: Future<Output = Result<(R, Option<pb::Error>, String), tonic::Status>>,
    {
        let deadline = Instant::now() + self.cfg.timeout;
        let mut delays = Self::delays();
        let mut last = String::from("no attempt made");
        while Instant::now() < deadline {
            let addr = self.pick();
            let client = RosterClient::new(self.channel(&addr)?);
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, call(client, left)).await {
                Ok(Ok((r, error, leader))) => {
                    self.hint(&leader);
                    match error {
                        None => return Ok(r),
                        Some(e) if e.retryable => last = e.message,
                        Some(e) => {
                            return Err(ClientError::Server {
                                code: e.code,
                                message: e.message,
                            });
                        }
                    }
                }
                Ok(Err(s)) => {
                    self.demote(&addr);
                    last = format!("{addr}: {}", s.message());
                }
                Err(_) => {
                    self.demote(&addr);
                    last = format!("{addr}: no answer before the deadline");
                }
            }
            Self::backoff(&mut delays, deadline).await;
        }
        Err(ClientError::Unavailable(last))
    }

    /// Typed call: the backends, read linearizably (unless configured for stale reads).
    pub async fn list_backends(&self) -> Result<Vec<pb::Backend>, ClientError> {
        self.typed_read(|mut client, left| {
            let mut req = tonic::Request::new(pb::ListBackendsRequest {
                consistency: self.consistency(),
                user: self.cfg.user.clone(),
                password: self.cfg.password.clone(),
            });
            req.set_timeout(left);
            async move {
                let r = client.list_backends(req).await?.into_inner();
                Ok((r.backends, r.error, r.leader_rpc_addr))
            }
        })
        .await
    }

    /// The routing call: for each tablet of `table`, the replica the answering FE would send a
    /// query to, under that FE's own blacklist (`frontend_id` says which FE answered). Point
    /// the client at one FE to get that FE's routes.
    pub async fn tablet_routes(&self, table: &str) -> Result<TabletRoutes, ClientError> {
        self.typed_read(|mut client, left| {
            let mut req = tonic::Request::new(pb::TabletRoutesRequest {
                table: table.to_string(),
                consistency: self.consistency(),
                user: self.cfg.user.clone(),
                password: self.cfg.password.clone(),
            });
            req.set_timeout(left);
            async move {
                let r = client.tablet_routes(req).await?.into_inner();
                let routes = TabletRoutes {
                    frontend_id: r.frontend_id,
                    routes: r.routes,
                };
                Ok((routes, r.error, r.leader_rpc_addr))
            }
        })
        .await
    }

    /// Drain (or, with `undrain`, undrain) the FE at the first endpoint: a drain is local to
    /// the FE that receives it, so this call is never sent elsewhere. The FE waits up to `wait`
    /// for the drain to complete (`complete` in the answer) before answering.
    pub async fn drain_frontend(
        &self,
        undrain: bool,
        wait: Duration,
    ) -> Result<pb::DrainResponse, ClientError> {
        let addr = &self.cfg.endpoints[0];
        let mut client = RosterClient::new(self.channel(addr)?);
        let left = wait + self.cfg.timeout;
        let mut req = tonic::Request::new(pb::DrainRequest {
            user: self.cfg.user.clone(),
            password: self.cfg.password.clone(),
            undrain,
            wait_ms: wait.as_millis() as u64,
        });
        req.set_timeout(left);
        let r = match tokio::time::timeout(left, client.drain(req)).await {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(s)) if s.code() == tonic::Code::Unimplemented => {
                return Err(ClientError::Config(format!(
                    "{addr} does not serve the client API: give the FE's rpc address (host:rpc_port)"
                )));
            }
            Ok(Err(s)) => return Err(ClientError::Unavailable(format!("{addr}: {}", s.message()))),
            Err(_) => {
                return Err(ClientError::Unknown(format!(
                    "{addr}: no answer before the deadline"
                )));
            }
        };
        match r.error {
            Some(e) => Err(ClientError::Server {
                code: e.code,
                message: e.message,
            }),
            None => Ok(r),
        }
    }

    /// Ask endpoints in turn who the leader is, with indexes and term (logged in as the
    /// configured user; a failed login is an error).
    pub async fn status(&self) -> Result<pb::StatusResponse, ClientError> {
        self.status_within(Duration::from_secs(2)).await
    }

    /// `status`, waiting at most `per_endpoint` for each endpoint.
    pub async fn status_within(
        &self,
        per_endpoint: Duration,
    ) -> Result<pb::StatusResponse, ClientError> {
        self.status_request(per_endpoint, false).await
    }

    /// `status_within`, with the digest of the answering FE's state (`state_digest` at
    /// `digest_index`): FEs at one index must agree.
    pub async fn status_with_digest(
        &self,
        per_endpoint: Duration,
    ) -> Result<pb::StatusResponse, ClientError> {
        self.status_request(per_endpoint, true).await
    }

    async fn status_request(
        &self,
        per_endpoint: Duration,
        with_digest: bool,
    ) -> Result<pb::StatusResponse, ClientError> {
        let mut last = String::new();
        for e in &self.cfg.endpoints {
            let mut client = RosterClient::new(self.channel(e)?);
            let mut req = tonic::Request::new(pb::StatusRequest {
                with_digest,
                user: self.cfg.user.clone(),
                password: self.cfg.password.clone(),
            });
            req.set_timeout(per_endpoint);
            match tokio::time::timeout(per_endpoint, client.status(req)).await {
                // A failed login still answers the leader hints; the caller asked for more.
                Ok(Ok(r)) => {
                    let r = r.into_inner();
                    return match r.error {
                        Some(err) => Err(ClientError::Server {
                            code: err.code,
                            message: err.message,
                        }),
                        None => Ok(r),
                    };
                }
                Ok(Err(s)) => last = format!("{e}: {}", s.message()),
                Err(_) => last = format!("{e}: no answer within {per_endpoint:?}"),
            }
        }
        Err(ClientError::Unavailable(last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_with_jitter_and_stay_bounded() {
        let ms = |d: Duration| d.as_millis() as u64;
        let runs: Vec<Vec<u64>> = (0..20)
            .map(|_| Client::delays().take(12).map(ms).collect())
            .collect();
        for r in &runs {
            // Attempt k waits within [25 * 2^k, 2 * 25 * 2^k), capped at [500, 1000).
            for (k, d) in r.iter().enumerate() {
                let base = (25u64 << k.min(5)).min(500);
                assert!((base..2 * base).contains(d), "attempt {k}: {d} ms in {r:?}");
            }
        }
        // Jitter: clients that failed together do not all wait the same.
        assert!(runs.iter().any(|r| r != &runs[0]), "{runs:?}");
    }
}
