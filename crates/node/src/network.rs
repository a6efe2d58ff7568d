//! The Raft network over tonic: one cached, lazily connected channel per peer; openraft's
//! messages travel as versioned bincode blobs. Replication runs over one bidirectional
//! AppendStream per session, so the leader pipelines batches instead of waiting for each
//! answer (and a batch costs an HTTP/2 data frame, not a new call with its headers). A peer's answer that carries a term beyond
//! `raft.max_term_jump` above the request's (or one that cannot be incremented) is dropped as
//! a network error, as the server side refuses such requests (see `raft_guard`).

use crate::raft_guard::RaftLimits;
use futures::{Stream, StreamExt};
use openraft::base::{BoxFuture, BoxStream};
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendError,
    StreamAppendResult, TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{AnyError, OptionalSend};
use roster_proto::pb::raft::{Blob, raft_service_client::RaftServiceClient};
use roster_raft_store::types::{Snapshot, Vote};
use roster_raft_store::{FeNode, NodeId, TypeConfig, codec};
use roster_transport::ratelog::{LOG_INTERVAL, RateLimit};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// Largest message between FEs (AppendEntries batches, snapshot chunks).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;
const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

/// Channels to peers, keyed by address; shared by Raft replication and leader forwarding.
#[derive(Clone, Default)]
pub struct Channels {
    inner: Arc<Mutex<HashMap<String, Channel>>>,
    transport: roster_transport::tls::Transport,
}

impl Channels {
    /// Channels that dial with `transport` (mutual TLS with this node's certificate, or
    /// plaintext in insecure mode).
    pub fn new(transport: roster_transport::tls::Transport) -> Self {
        Channels {
            inner: Arc::default(),
            transport,
        }
    }

    pub fn transport(&self) -> &roster_transport::tls::Transport {
        &self.transport
    }

    pub fn get(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        let mut m = self.inner.lock().expect("channels lock");
        if let Some(c) = m.get(addr) {
            return Ok(c.clone());
        }
        use roster_transport::http2;
        let ep = http2::endpoint(self.transport.endpoint(addr)?)
            .connect_timeout(Duration::from_millis(500))
            .http2_keep_alive_interval(http2::PEER_KEEPALIVE)
            .keep_alive_timeout(http2::PEER_KEEPALIVE);
        let c = ep.connect_lazy();
        m.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    pub fn raft_client(
        &self,
        addr: &str,
    ) -> Result<RaftServiceClient<Channel>, tonic::transport::Error> {
        Ok(RaftServiceClient::new(self.get(addr)?)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }
}

pub struct NetworkFactory {
    pub channels: Channels,
    pub limits: RaftLimits,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &FeNode) -> Self::Network {
        PeerClient {
            target,
            addr: node.edit_log_addr(),
            channels: self.channels.clone(),
            limits: self.limits,
            unary_until: None,
        }
    }
}

pub struct PeerClient {
    target: NodeId,
    addr: String,
    channels: Channels,
    limits: RaftLimits,
    /// Set when the peer answered AppendStream with Unimplemented (an FE of an older version):
    /// until then replication to it goes over unary AppendEntries.
    unary_until: Option<std::time::Instant>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Msg(String);

fn net_err(e: impl std::fmt::Display) -> NetworkError<TypeConfig> {
    NetworkError::new(&Msg(e.to_string()))
}

/// Transport failures where the peer never got the message are `Unreachable` (openraft backs
/// off); anything else is a `Network` error.
fn status_to_rpc(s: tonic::Status) -> RPCError<TypeConfig> {
    match s.code() {
        tonic::Code::Unavailable => {
            RPCError::Unreachable(Unreachable::new(&Msg(s.message().to_string())))
        }
        _ => RPCError::Network(net_err(s.message())),
    }
}

/// One line per peer per interval for a peer that cannot be reached (openraft's own warnings
/// about it are dropped by the binary's log filter, see `src/logging.rs`).
static UNREACHABLE: RateLimit<NodeId> = RateLimit::new(LOG_INTERVAL);

/// Refuse an answer from `target` whose vote's term is not sane next to `sent`, the term this
/// FE sent (openraft would adopt a higher one). Logged like the server side's refusals.
fn check_answer_term(
    target: NodeId,
    limits: &RaftLimits,
    sent: u64,
    answer: &Vote,
) -> Result<(), RPCError<TypeConfig>> {
    crate::raft_guard::check_term(target, answer.leader_id.term, sent, limits).map_err(|r| {
        let status = crate::raft_guard::refuse(r);
        RPCError::Network(net_err(format!("answer refused: {}", status.message())))
    })
}

impl PeerClient {
    fn check_answer_term(&self, sent: u64, answer: &Vote) -> Result<(), RPCError<TypeConfig>> {
        check_answer_term(self.target, &self.limits, sent, answer)
    }

    /// Log (rate-limited) a failure to reach this peer; forget it once the peer answers.
    fn note<T, E: std::fmt::Display>(&self, r: &Result<T, RPCError<TypeConfig>>, what: &E) {
        match r {
            Err(RPCError::Unreachable(e)) => {
                if let Some(suppressed) = UNREACHABLE.check(self.target) {
                    tracing::warn!(
                        peer = self.target,
                        addr = %self.addr,
                        suppressed,
                        "{e} ({what} to FE {}; {suppressed} more in the last {LOG_INTERVAL:?} not logged)",
                        self.target
                    );
                }
            }
            Ok(_) => UNREACHABLE.reset(&self.target),
            Err(_) => {}
        }
    }

    async fn call<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
        &mut self,
        which: &'static str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<TypeConfig>> {
        let mut client = self
            .channels
            .raft_client(&self.addr)
            .map_err(|e| RPCError::Network(net_err(e)))?;
        let data = codec::encode(req).map_err(|e| RPCError::Network(net_err(e)))?;
        let mut request = tonic::Request::new(Blob { data });
        request.set_timeout(option.hard_ttl());
        let fut = async {
            match which {
                "append" => client.append_entries(request).await,
                "vote" => client.vote(request).await,
                "pre_vote" => client.pre_vote(request).await,
                _ => client.transfer_leader(request).await,
            }
        };
        let resp = match tokio::time::timeout(option.hard_ttl(), fut).await {
            Ok(r) => r.map_err(status_to_rpc)?,
            Err(_) => {
                return Err(RPCError::Timeout(openraft::error::Timeout {
                    action: openraft::network::RPCTypes::AppendEntries,
                    id: 0,
                    target: self.target,
                    timeout: option.hard_ttl(),
                }));
            }
        };
        let r: Result<Resp, String> =
            codec::decode(&resp.into_inner().data).map_err(|e| RPCError::Network(net_err(e)))?;
        r.map_err(|e| RPCError::Network(net_err(format!("remote: {e}"))))
    }
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = Vec<u8>;

    /// Over one AppendStream per replication session (see `append_stream`), or over unary
    /// AppendEntries to a peer that lacks it.
    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<'s, Result<BoxStream<'s, AppendAnswer>, RPCError<TypeConfig>>>
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
    {
        // A stream of exactly one message (openraft's heartbeats, and the leadership checks of
        // linearizable reads) is cheaper as one unary call than as a stream of its own.
        let single = input.size_hint() == (1, Some(1));
        if self
            .unary_until
            .is_some_and(|until| std::time::Instant::now() >= until)
        {
            self.unary_until = None;
        }
        if single || self.unary_until.is_some() {
            return openraft::network::stream_append_sequential(self, input, option);
        }
        Box::pin(async move {
            let r = self.open_append_stream(input, option).await;
            self.note(&r, &"append_stream");
            r
        })
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let sent = rpc.vote.leader_id.term;
        let r = self.call("append", &rpc, &option).await;
        self.note(&r, &"append_entries");
        if let Ok(AppendEntriesResponse::HigherVote(v)) = &r {
            self.check_answer_term(sent, v)?;
        }
        r
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let sent = rpc.vote.leader_id.term;
        let r: Result<VoteResponse<TypeConfig>, _> = self.call("vote", &rpc, &option).await;
        self.note(&r, &"vote");
        if let Ok(resp) = &r {
            self.check_answer_term(sent, &resp.vote)?;
        }
        r
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let sent = rpc.vote.leader_id.term;
        let r: Result<VoteResponse<TypeConfig>, _> = self.call("pre_vote", &rpc, &option).await;
        self.note(&r, &"pre_vote");
        if let Ok(resp) = &r {
            self.check_answer_term(sent, &resp.vote)?;
        }
        r
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call("transfer", &req, &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let mut client = self.channels.raft_client(&self.addr).map_err(net_err)?;
        let mut chunks = vec![Blob {
            data: codec::encode(&(&vote, &snapshot.meta)).map_err(net_err)?,
        }];
        for c in snapshot.snapshot.chunks(SNAPSHOT_CHUNK_BYTES) {
            chunks.push(Blob { data: c.to_vec() });
        }
        let send = client.install_snapshot(futures::stream::iter(chunks));
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            r = send => {
                let resp = r.map_err(|s| match status_to_rpc(s) {
                    RPCError::Unreachable(u) => StreamingError::Unreachable(u),
                    other => StreamingError::Network(net_err(other)),
                })?;
                let r: Result<SnapshotResponse<TypeConfig>, String> = codec::decode(&resp.into_inner().data).map_err(net_err)?;
                let r = r.map_err(|e| StreamingError::Network(net_err(format!("remote: {e}"))))?;
                self.check_answer_term(vote.leader_id.term, &r.vote).map_err(|e| StreamingError::Network(net_err(e)))?;
                Ok(r)
            }
        }
    }
}

/// One answer of a replication stream, as openraft's replication expects it.
type AppendAnswer = Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>;

/// How long a peer that lacks AppendStream is served over unary AppendEntries before the
/// stream is tried again (it may have been upgraded).
const UNARY_FALLBACK: Duration = Duration::from_secs(60);

impl PeerClient {
    /// Open an AppendStream carrying `input`; its answers come back in order, one per request.
    /// A request left unanswered for the RPC's time to live fails the stream with a timeout
    /// (as a unary AppendEntries would), and openraft starts a new session.
    async fn open_append_stream<S>(
        &mut self,
        input: S,
        option: RPCOption,
    ) -> Result<BoxStream<'static, AppendAnswer>, RPCError<TypeConfig>>
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
    {
        let mut client = self
            .channels
            .raft_client(&self.addr)
            .map_err(|e| RPCError::Network(net_err(e)))?;
        let ttl = option.hard_ttl();
        let target = self.target;
        let timeout = move || {
            RPCError::Timeout(openraft::error::Timeout {
                action: openraft::network::RPCTypes::AppendEntries,
                id: 0,
                target,
                timeout: ttl,
            })
        };
        // The send time and term of each request not yet answered, oldest first.
        let inflight = Arc::new(Mutex::new(VecDeque::<(Instant, u64)>::new()));
        let sent = inflight.clone();
        let requests = input.scan((), move |_, req| {
            let blob = match codec::encode(&req) {
                Ok(data) => Some(Blob { data }),
                Err(e) => {
                    // Nothing more is sent: the answers end short and openraft starts over.
                    tracing::error!(peer = target, "encoding an AppendEntries request: {e}");
                    None
                }
            };
            if blob.is_some() {
                let mut q = sent.lock().expect("inflight lock");
                q.push_back((Instant::now(), req.vote.leader_id.term));
            }
            std::future::ready(blob)
        });
        let answers = match tokio::time::timeout(ttl, client.append_stream(requests)).await {
            Err(_) => return Err(timeout()),
            Ok(Err(s)) if s.code() == tonic::Code::Unimplemented => {
                tracing::info!(
                    peer = target,
                    "FE {target} has no AppendStream (an older version): replicating to it over AppendEntries"
                );
                self.unary_until = Some(std::time::Instant::now() + UNARY_FALLBACK);
                return Err(RPCError::Unreachable(Unreachable::new(&Msg(
                    "peer has no AppendStream".into(),
                ))));
            }
            Ok(Err(s)) => return Err(status_to_rpc(s)),
            Ok(Ok(r)) => r.into_inner(),
        };
        let limits = self.limits;
        let answers = futures::stream::unfold(Some(answers), move |state| {
            let inflight = inflight.clone();
            async move {
                let mut answers = state?;
                loop {
                    // Wake at least every ttl to look at the oldest unanswered request.
                    let wait = inflight
                        .lock()
                        .expect("inflight lock")
                        .front()
                        .map_or(ttl, |(at, _)| ttl.saturating_sub(at.elapsed()));
                    let msg = match tokio::time::timeout(wait, answers.message()).await {
                        Err(_) => {
                            let q = inflight.lock().expect("inflight lock");
                            if q.front().is_some_and(|(at, _)| at.elapsed() >= ttl) {
                                return Some((Err(timeout()), None));
                            }
                            continue;
                        }
                        Ok(Err(s)) => return Some((Err(status_to_rpc(s)), None)),
                        Ok(Ok(None)) => return None,
                        Ok(Ok(Some(msg))) => msg,
                    };
                    let sent = inflight.lock().expect("inflight lock").pop_front();
                    let answer = codec::decode::<StreamAppendResult<TypeConfig>>(&msg.data)
                        .map_err(|e| RPCError::Network(net_err(e)))
                        .and_then(|r| match (&r, sent) {
                            (Err(StreamAppendError::HigherVote(v)), Some((_, term))) => {
                                check_answer_term(target, &limits, term, v).map(|()| r)
                            }
                            _ => Ok(r),
                        });
                    let go_on = matches!(answer, Ok(Ok(_)));
                    return Some((answer, go_on.then_some(answers)));
                }
            }
        });
        Ok(Box::pin(answers))
    }
}

/// For errors that openraft wants as `AnyError`.
pub fn any_error(msg: impl std::fmt::Display) -> AnyError {
    AnyError::error(msg.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use roster_proto::pb::raft::raft_service_server::{RaftService, RaftServiceServer};
    use tonic::{Request, Response, Status, Streaming};

    /// An FE of a version before AppendStream: it has unary AppendEntries only (a server
    /// without the route answers Unimplemented, as this one does).
    struct OldFe;

    fn unimplemented<T>() -> Result<Response<T>, Status> {
        Err(Status::unimplemented("not in this version"))
    }

    #[tonic::async_trait]
    impl RaftService for OldFe {
        async fn append_entries(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
            let _: AppendEntriesRequest<TypeConfig> = codec::decode(&req.into_inner().data)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            let r: Result<AppendEntriesResponse<TypeConfig>, String> =
                Ok(AppendEntriesResponse::Success);
            Ok(Response::new(Blob {
                data: codec::encode(&r).expect("encodes"),
            }))
        }
        type AppendStreamStream = futures::stream::BoxStream<'static, Result<Blob, Status>>;
        async fn append_stream(
            &self,
            _: Request<Streaming<Blob>>,
        ) -> Result<Response<Self::AppendStreamStream>, Status> {
            unimplemented()
        }
        async fn vote(&self, _: Request<Blob>) -> Result<Response<Blob>, Status> {
            unimplemented()
        }
        async fn pre_vote(&self, _: Request<Blob>) -> Result<Response<Blob>, Status> {
            unimplemented()
        }
        async fn install_snapshot(
            &self,
            _: Request<Streaming<Blob>>,
        ) -> Result<Response<Blob>, Status> {
            unimplemented()
        }
        async fn transfer_leader(&self, _: Request<Blob>) -> Result<Response<Blob>, Status> {
            unimplemented()
        }
        async fn get_read_index(&self, _: Request<Blob>) -> Result<Response<Blob>, Status> {
            unimplemented()
        }
        async fn forward(&self, _: Request<Blob>) -> Result<Response<Blob>, Status> {
            unimplemented()
        }
        async fn node_info(&self, _: Request<Blob>) -> Result<Response<Blob>, Status> {
            unimplemented()
        }
    }

    fn heartbeat() -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: Vote::new_committed(1, 1),
            prev_log_id: None,
            entries: vec![],
            leader_commit: None,
        }
    }

    #[tokio::test]
    async fn a_peer_without_append_stream_is_served_over_append_entries() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(RaftServiceServer::new(OldFe))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let mut factory = NetworkFactory {
            channels: Channels::default(),
            limits: RaftLimits::default(),
        };
        let node = FeNode {
            host: "127.0.0.1".into(),
            edit_log_port: port,
            rpc_port: 0,
            query_port: 0,
            http_port: 0,
        };
        let mut peer = factory.new_client(2, &node).await;
        let opt = RPCOption::new(Duration::from_secs(5));

        // One message (a heartbeat) goes as a unary call: no stream is tried.
        let one: Vec<AppendAnswer> = peer
            .stream_append(futures::stream::iter(vec![heartbeat()]), opt.clone())
            .await
            .expect("a single message goes unary")
            .collect()
            .await;
        assert!(matches!(one[..], [Ok(Ok(_))]), "{one:?}");
        // The first session learns that the peer has no stream; openraft retries it.
        let first = match peer
            .stream_append(
                futures::stream::iter(vec![heartbeat(), heartbeat()]),
                opt.clone(),
            )
            .await
        {
            Ok(_) => "opened".to_string(),
            Err(e) => format!("{e:?}"),
        };
        assert!(
            first.starts_with("Unreachable"),
            "the first session fails as unreachable: {first}"
        );
        // The next one goes over AppendEntries, one answer per request, in order.
        let answers: Vec<AppendAnswer> = peer
            .stream_append(futures::stream::iter(vec![heartbeat(), heartbeat()]), opt)
            .await
            .expect("the fallback opens")
            .collect()
            .await;
        assert_eq!(answers.len(), 2, "{answers:?}");
        assert!(
            answers.iter().all(|a| matches!(a, Ok(Ok(_)))),
            "{answers:?}"
        );
    }
}
