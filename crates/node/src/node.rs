//! One FE: its Raft instance and state machine, and the three things every statement needs:
//! `propose` (a write, forwarded to the leader when this FE is not it), `linearize` (a read
//! barrier: the leader's read index, then wait for local apply), and leader-only operations
//! (frontend membership changes, see `frontends`).

mod authz;
pub mod diskspace;
pub mod drain;
mod frontends;
mod leader_work;
mod leadership;
mod read_index;

use crate::error::ApiError;
use crate::network::{Channels, NetworkFactory};
use crate::wire::{ForwardResult, LeaderOp, LeaderReply, NodeInfo};
use openraft::LinearizerOption;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::error::{ClientWriteError, RaftError};
use openraft::raft::{linearizable_read::Linearizer, linearizable_read::ReadLogId};
use openraft::{Config, SnapshotPolicy};
use read_index::Rounds;
use roster_membership::{FrontendId, model};
use roster_proto::format::now_ms;
use roster_proto::pb::raft::Blob;
use roster_raft_store::types::LogId;
use roster_raft_store::{Cmd, FeNode, NodeId, Raft, Request, Response, StateMachineStore, codec};
use roster_scheduler::leadership::LeaderWork;
use roster_scheduler::task::Task;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Raft timing of this FE (per-FE config, validated: election > 2 x heartbeat).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftTiming {
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
}

impl Default for RaftTiming {
    fn default() -> Self {
        // etcd's heartbeat (100 ms) with the shortest timeouts that stay quiet under load:
        // openraft's leader lease is election_timeout_max and a follower votes only once its
        // lease has expired, so failover takes about max + part of [min, max). Measured on a
        // loaded 2-core machine (BENCHMARKS.md, `roster bench quorum`): 100/400/700 fails over
        // faster than etcd at its 100/1000 defaults and saw no election in a 600 s 64-client
        // write soak at load average 6.2; openraft's own 50/150-300 elects spuriously there.
        RaftTiming {
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 400,
            election_timeout_max_ms: 700,
        }
    }
}

/// The clock drift a leader's lease reads tolerate: any two FEs' clocks run at rates less than
/// this factor apart (see `RaftTiming::lease_read_age`).
pub const LEASE_DRIFT_BOUND: u32 = 4;

impl RaftTiming {
    /// How old a quorum's acknowledgement may be (on the leader's clock, from when the
    /// acknowledged message was sent) for a linearizable read to go without a heartbeat round.
    ///
    /// A follower that acknowledged a message grants no vote until openraft's leader lease
    /// (`election_timeout_max`) has passed on its own clock since it received it, so no other
    /// leader can exist within lease / rate(follower) of the send, in real time; the leader
    /// sees age / rate(leader) pass meanwhile. With the rates less than `LEASE_DRIFT_BOUND`
    /// apart, age = lease / (bound + 1) leaves a quarter of that bound to spare: 140 ms at the
    /// shipped 700 ms. Jepsen's `register-clocks` runs the leader at half speed and a
    /// follower at double (a factor of 4) and checks the reads, though a lease held too long
    /// would only show under a partition as well, which no scenario combines yet.
    pub fn lease_read_age(&self) -> Duration {
        Duration::from_millis(self.election_timeout_max_ms) / (LEASE_DRIFT_BOUND + 1)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.heartbeat_interval_ms == 0 {
            return Err("raft.heartbeat_interval_ms must be positive".into());
        }
        if self.election_timeout_min_ms <= 2 * self.heartbeat_interval_ms {
            return Err(format!(
                "raft.election_timeout_min_ms ({}) must be more than twice raft.heartbeat_interval_ms ({})",
                self.election_timeout_min_ms, self.heartbeat_interval_ms
            ));
        }
        if self.election_timeout_max_ms <= self.election_timeout_min_ms {
            return Err(format!(
                "raft.election_timeout_max_ms ({}) must be more than raft.election_timeout_min_ms ({})",
                self.election_timeout_max_ms, self.election_timeout_min_ms
            ));
        }
        Ok(())
    }
}

/// Everything an FE needs to run, already validated by the binary's config loader.
#[derive(Debug, Clone)]
pub struct FeConfig {
    pub id: FrontendId,
    pub name: String,
    pub cluster_id: String,
    pub node: FeNode,
    pub data_dir: PathBuf,
    /// Voters of a brand-new cluster; empty for an FE that waits to be added (ADD FOLLOWER).
    pub initial_members: BTreeMap<FrontendId, FeNode>,
    pub raft: RaftTiming,
    /// Bound on how long a read waits for a leader's read index and local apply.
    pub read_timeout: Duration,
    /// Bound on how long a write waits for a leader and for commit.
    pub write_timeout: Duration,
    /// Build a snapshot (and purge the log) after this many applied entries.
    pub snapshot_logs_since_last: u64,
    /// Entries kept in the log behind the latest snapshot, for slightly lagging followers.
    pub max_in_snapshot_log_to_keep: u64,
    /// root's password hash, if this FE was given one: the first leader that has it creates
    /// root (once; later values are ignored).
    pub root_password: Option<model::users::PasswordHash>,
    /// The local address this FE's connection checks to backends come from (multi-homed
    /// hosts; `None`: the kernel picks). Blacklist entries are per FE, so this is per FE too.
    pub backend_source_ip: Option<std::net::IpAddr>,
    /// Statement size, handshake time, connection count and login throttling.
    pub limits: crate::limits::ClientLimits,
    /// Mutual TLS towards other FEs and agents (secure mode), or plaintext (insecure).
    pub transport: roster_transport::tls::Transport,
    /// Sent on every call to an agent: insecure agents obey only holders of it.
    pub cluster_token: Option<roster_transport::cluster_token::ClusterToken>,
    /// What peers may send over the Raft port (term bound, snapshot size).
    pub raft_limits: crate::raft_guard::RaftLimits,
    /// The free-space alarm's threshold under data_dir (see `diskspace`); 0 turns it off.
    pub min_free_disk_bytes: u64,
}

/// What this FE last heard from a peer FE (soft state, never replicated).
#[derive(Debug, Clone, Default)]
pub struct PeerStatus {
    pub last_ok_ms: Option<u64>,
    pub info: Option<NodeInfo>,
    pub err: String,
}

struct Inner {
    cfg: FeConfig,
    raft: Raft,
    sm: StateMachineStore,
    channels: Channels,
    start_time_ms: u64,
    peers: Mutex<BTreeMap<FrontendId, PeerStatus>>,
    /// Whether this FE is drained (see `drain`); local to the process.
    draining: tokio::sync::watch::Sender<bool>,
    login_throttle: crate::login_throttle::LoginThrottle,
    /// Soft state of the checks on peers' Raft messages (see `raft_guard`).
    guard: crate::raft_guard::GuardState,
    /// The free-space alarm's text while raised (see `diskspace`).
    nospace: Mutex<Option<String>>,
    /// Cancels the prober and the free-space watch when the FE is dropped.
    _background: Background,
    /// The actors of each term this FE leads (heartbeats, replica reconciler, move executor);
    /// dropping it cancels them.
    _leader_work: LeaderWork,
    /// This FE's blacklist refresher (`roster_scheduler::refresher`); dropping it cancels it.
    _refresher: Task,
    /// Read-index rounds of this FE's linearizable reads (`read_index`): the leader and the
    /// index it answered.
    read_rounds: Arc<Rounds<Result<(FrontendId, LogId), ApiError>>>,
    /// Leadership checks of this FE as leader, shared by its own reads and its followers'.
    leader_rounds: Arc<Rounds<Result<LogId, ApiError>>>,
}

/// A running FE. Cheap to clone.
#[derive(Clone)]
pub struct FeNodeHandle {
    inner: Arc<Inner>,
}

/// This FE's own loops (the peer prober, the free-space watch) share one cancellation token:
/// dropping the FE cancels it, and each loop ends at its next wait.
struct Background(CancellationToken);

impl Drop for Background {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

fn raft_config(cfg: &FeConfig) -> Result<Config, ApiError> {
    cfg.raft.validate().map_err(ApiError::Invalid)?;
    let c = Config {
        cluster_name: cfg.cluster_id.clone(),
        heartbeat_interval: cfg.raft.heartbeat_interval_ms,
        election_timeout_min: cfg.raft.election_timeout_min_ms,
        election_timeout_max: cfg.raft.election_timeout_max_ms,
        install_snapshot_timeout: 10_000,
        enable_pre_vote: Some(true),
        // A restarted leader must win a new election, never resume its old term: its log may
        // have lost entries it had replicated and committed through the other voters before
        // its own fsync (appends return before their fsync), and resuming would write other
        // entries under the same log ids (the storage-crashes scenario caught it).
        enable_leader_restore: Some(false),
        snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.snapshot_logs_since_last),
        max_in_snapshot_log_to_keep: cfg.max_in_snapshot_log_to_keep,
        replication_lag_threshold: 10_000,
        ..Default::default()
    };
    c.validate()
        .map_err(|e| ApiError::Invalid(format!("raft config: {e}")))
}

fn raft_err<E: std::fmt::Display>(e: E) -> ApiError {
    ApiError::Internal(e.to_string())
}

impl FeNodeHandle {
    /// Open the stores, start Raft, and bootstrap a new cluster if this FE is one of the
    /// configured initial members and has never been initialized.
    pub async fn start(cfg: FeConfig) -> Result<Self, ApiError> {
        let config = Arc::new(raft_config(&cfg)?);
        if crate::bugs::on(crate::bugs::Bug::SkipFsync) {
            roster_raft_store::skip_fsync();
        }
        let (log, sm) = roster_raft_store::open(&cfg.data_dir.join("raft"))
            .map_err(|e| ApiError::Internal(format!("opening {}: {e}", cfg.data_dir.display())))?;
        // Left by a snapshot that was arriving when this FE stopped.
        let _ = std::fs::remove_dir_all(cfg.data_dir.join("raft").join("incoming"));
        let channels = Channels::new(cfg.transport.clone());
        let net = NetworkFactory {
            channels: channels.clone(),
            limits: cfg.raft_limits,
        };
        let raft = Raft::new(cfg.id.0, config, net, log, sm.clone())
            .await
            .map_err(raft_err)?;

        if !raft.is_initialized().await.map_err(raft_err)?
            && cfg.initial_members.contains_key(&cfg.id)
        {
            // Every initial member may call this with the same voters: the first log entry is the
            // same membership everywhere, so the calls agree.
            let voters: BTreeMap<NodeId, FeNode> = cfg
                .initial_members
                .iter()
                .map(|(id, n)| (id.0, n.clone()))
                .collect();
            match raft.initialize(voters).await {
                Ok(()) => {
                    tracing::info!(members = ?cfg.initial_members.keys().collect::<Vec<_>>(), "bootstrapped a new cluster")
                }
                Err(e) => tracing::info!("initialize skipped: {e}"),
            }
        }

        // Ends by itself when Raft shuts down.
        let (leading, leadership) = tokio::sync::watch::channel(None);
        let (applied_tx, applied) = tokio::sync::watch::channel(0);
        tokio::spawn(leadership::follow(
            raft.clone(),
            cfg.id,
            leading,
            applied_tx,
        ));
        let peers = Mutex::new(BTreeMap::new());
        let inner = Arc::new_cyclic(|weak: &std::sync::Weak<Inner>| {
            let weak = weak.clone();
            let weak2 = weak.clone();
            let weak5 = weak.clone();
            let cluster = leader_work::NodeCluster {
                node: weak2.clone(),
                sm: sm.clone(),
                leadership,
                applied,
                me: cfg.id,
            };
            let agents = leader_work::NodeAgents {
                node: weak2,
                source: cfg.backend_source_ip,
            };
            // Every FE's, leader or not: its own blacklist.
            let refresher = roster_scheduler::refresher::spawn(cluster.clone(), agents.clone());
            let quirks = roster_scheduler::mover::Quirks {
                drop_draining_at_once: crate::bugs::on(crate::bugs::Bug::DecommissionNoRfCheck),
            };
            let leader_work = LeaderWork::spawn(
                cluster.clone(),
                roster_scheduler::actors(cluster, agents, quirks),
            );
            let background = CancellationToken::new();
            tokio::spawn(prober_loop(weak, background.clone()));
            tokio::spawn(diskspace::watch_loop(weak5, background.clone()));
            Inner {
                login_throttle: crate::login_throttle::LoginThrottle::new(cfg.limits.login.clone()),
                cfg,
                raft,
                sm,
                channels,
                start_time_ms: now_ms(),
                peers,
                draining: tokio::sync::watch::Sender::new(false),
                guard: Default::default(),
                nospace: Mutex::new(None),
                _background: Background(background),
                _leader_work: leader_work,
                _refresher: refresher,
                read_rounds: Rounds::new(),
                leader_rounds: Rounds::new(),
            }
        });
        let fe = FeNodeHandle { inner };
        fe.check_disk_space();
        Ok(fe)
    }

    /// Why this FE's storage failed, once it has: the first storage error, or the error that
    /// stopped its Raft core. The FE then stops (`roster start` exits).
    pub fn storage_fault(&self) -> Option<String> {
        if let Some(f) = self.inner.sm.fault().get() {
            return Some(f.to_string());
        }
        let m = self.inner.raft.metrics();
        let m = m.borrow_watched();
        m.running_state
            .as_ref()
            .err()
            .map(|f| format!("raft stopped: {f}"))
    }

    /// Waits until `storage_fault` has something to say, and says it.
    pub async fn wait_storage_fault(&self) -> String {
        // Not `metrics()`, which is sent on every turn of Raft's core loop (see
        // `leadership::follow`): a fault stops the core, which closes this channel too, after
        // it has put the error in `metrics()`.
        let mut rx = self.inner.raft.server_metrics();
        let mut open = true;
        loop {
            if let Some(f) = self.storage_fault() {
                return f;
            }
            if !open {
                // Raft is gone without a fault (looked at after it closed the channel, as a
                // fault and the close can arrive together): shut down on purpose.
                return std::future::pending().await;
            }
            tokio::select! {
                f = self.inner.sm.fault().wait() => return f,
                r = rx.changed() => open = r.is_ok(),
            }
        }
    }

    /// Writes are refused while this FE's storage is failing or low on space.
    fn refuse_writes(&self) -> Result<(), ApiError> {
        if let Some(f) = self.storage_fault() {
            return Err(ApiError::Unavailable(format!(
                "this frontend is stopping on a storage fault: {f}"
            )));
        }
        if let Some(m) = self.nospace() {
            return Err(ApiError::Unavailable(m));
        }
        Ok(())
    }

    pub fn id(&self) -> FrontendId {
        self.inner.cfg.id
    }

    pub fn config(&self) -> &FeConfig {
        &self.inner.cfg
    }

    /// This FE's login throttle (shared by its MySQL, gRPC and HTTP ports).
    pub fn login_throttle(&self) -> &crate::login_throttle::LoginThrottle {
        &self.inner.login_throttle
    }

    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    pub fn raft_guard(&self) -> &crate::raft_guard::GuardState {
        &self.inner.guard
    }

    pub fn store(&self) -> &StateMachineStore {
        &self.inner.sm
    }

    pub fn channels(&self) -> &Channels {
        &self.inner.channels
    }

    /// A client of the agent at `addr` that sends this FE's cluster token on every call.
    pub fn agent_client(
        &self,
        addr: &str,
    ) -> Result<roster_transport::cluster_token::AgentClient, tonic::transport::Error> {
        let channel = self.inner.channels.get(addr)?;
        Ok(roster_transport::cluster_token::agent_client(
            channel,
            self.inner.cfg.cluster_token.as_ref(),
        ))
    }

    pub fn peer_status(&self) -> BTreeMap<FrontendId, PeerStatus> {
        self.inner.peers.lock().expect("peers lock").clone()
    }

    /// Stops Raft, then persists what the state machine applied since its last persist, so a
    /// clean stop restarts without re-applying from the log.
    pub async fn shutdown(&self) {
        let _ = self.inner.raft.shutdown().await;
        if let Err(e) = self.inner.sm.persist_now().await {
            tracing::warn!(
                "the applied state was not persisted at stop ({e}); the next start re-applies it from the log"
            );
        }
    }

    /// Raft's progress as this FE sees it now, for status answers and stale reads.
    pub fn raft_view(&self) -> RaftView {
        let m = self.inner.raft.metrics();
        let m = m.borrow_watched();
        RaftView {
            term: m.current_term,
            leader: m.current_leader.map(FrontendId),
            last_applied: m.last_applied.map_or(0, |l| l.index),
            committed: m.cluster_committed.map_or(0, |l| l.index),
            snapshot: m.snapshot.map_or(0, |l| l.index),
            purged: m.purged.map_or(0, |l| l.index),
        }
    }

    /// The leader as this FE currently knows it.
    pub fn leader(&self) -> Option<(FrontendId, FeNode)> {
        let m = self.inner.raft.metrics();
        let m = m.borrow_watched();
        let id = m.current_leader?;
        let node = m.membership_config.membership().get_node(&id)?.clone();
        Some((FrontendId(id), node))
    }

    pub fn node_info(&self) -> NodeInfo {
        let applied = self
            .inner
            .raft
            .metrics()
            .borrow_watched()
            .last_applied
            .map(|l| l.index)
            .unwrap_or(0);
        NodeInfo {
            id: self.inner.cfg.id,
            node: self.inner.cfg.node.clone(),
            cluster_id: self.inner.cfg.cluster_id.clone(),
            name: self.inner.cfg.name.clone(),
            version: roster_proto::VERSION.to_string(),
            last_applied_index: applied,
            start_time_ms: self.inner.start_time_ms,
        }
    }

    /// Wait (bounded) until some leader is known.
    async fn wait_for_leader(&self, deadline: Instant) -> Result<(FrontendId, FeNode), ApiError> {
        let mut rx = self.inner.raft.metrics();
        loop {
            if let Some(l) = self.leader() {
                return Ok(l);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ApiError::Unavailable(
                    "no leader is known to this frontend".into(),
                ));
            }
            if let Ok(Err(_)) = tokio::time::timeout(left, rx.changed()).await {
                return Err(ApiError::Unavailable(
                    "this frontend is shutting down".into(),
                ));
            }
        }
    }

    /// Give Raft a moment to learn about a new leader before the next attempt.
    async fn settle(&self) {
        let mut rx = self.inner.raft.metrics();
        let wait = Duration::from_millis(100);
        if let Ok(Err(_)) = tokio::time::timeout(wait, rx.changed()).await {
            // Raft has stopped and nothing will change: do not spin.
            tokio::time::sleep(wait).await;
        }
    }

    /// Propose a command on behalf of `user` (`None`: the FEs' own work) and wait for its
    /// applied answer.
    pub async fn propose(&self, user: Option<&str>, cmd: Cmd) -> Result<Response, ApiError> {
        self.leader_op(LeaderOp::Write {
            user: user.map(str::to_string),
            cmd,
        })
        .await?
        .into_applied()
    }

    /// Run an operation on the leader: here if this FE leads, otherwise forwarded to it.
    /// Retries only when the operation certainly did not run.
    pub async fn leader_op(&self, op: LeaderOp) -> Result<LeaderReply, ApiError> {
        if matches!(op, LeaderOp::Write { .. }) {
            self.refuse_writes()?;
        }
        let deadline = Instant::now() + self.inner.cfg.write_timeout;
        loop {
            let (leader_id, leader) = self.wait_for_leader(deadline).await?;
            let res = if leader_id == self.id() {
                self.run_as_leader(&op, deadline).await
            } else {
                self.forward(&leader, &op, deadline).await
            };
            match res {
                Err(e) if e.is_retryable() && Instant::now() < deadline => self.settle().await,
                other => return other,
            }
        }
    }

    async fn forward(&self, leader: &FeNode, op: &LeaderOp, deadline: Instant) -> ForwardResult {
        let mut client = self
            .inner
            .channels
            .raft_client(&leader.edit_log_addr())
            .map_err(raft_err)?;
        let data = codec::encode(op).map_err(raft_err)?;
        let left = deadline.saturating_duration_since(Instant::now());
        let mut req = tonic::Request::new(Blob { data });
        req.set_timeout(left);
        match tokio::time::timeout(left, client.forward(req)).await {
            Ok(Ok(resp)) => {
                codec::decode::<ForwardResult>(&resp.into_inner().data).map_err(raft_err)?
            }
            Ok(Err(status)) if roster_transport::never_sent(&status) => {
                Err(ApiError::Unavailable(format!(
                    "leader {} unreachable: {}",
                    leader.edit_log_addr(),
                    status.message()
                )))
            }
            Ok(Err(status)) => Err(ApiError::Unknown(format!(
                "lost the connection to the leader {} after sending: {}",
                leader.edit_log_addr(),
                status.message()
            ))),
            Err(_) => Err(ApiError::Unknown(format!(
                "no answer from the leader {} in time",
                leader.edit_log_addr()
            ))),
        }
    }

    /// Carry out a leader operation on this FE, which believes it is the leader.
    pub async fn run_as_leader(&self, op: &LeaderOp, deadline: Instant) -> ForwardResult {
        match op {
            LeaderOp::Write { user, cmd } => self
                .propose_here(user.clone(), cmd.clone(), deadline)
                .await
                .map(LeaderReply::Applied),
            LeaderOp::AddFrontend { user, voter, addr } => {
                self.authorize_here(user, roster_membership::Privilege::NodePriv)?;
                frontends::add(self, *voter, addr, deadline).await
            }
            LeaderOp::DropFrontend { user, voter, addr } => {
                self.authorize_here(user, roster_membership::Privilege::NodePriv)?;
                frontends::drop(self, *voter, addr, deadline).await
            }
        }
    }

    /// How long the `ack-before-commit` bug waits after acknowledging before it proposes.
    const ACK_BEFORE_COMMIT_LAG: Duration = Duration::from_millis(100);

    /// Propose `cmd` on this FE, which believes it is the leader (never forwarded): the
    /// answer at apply, or why it was not committed.
    pub async fn propose_here(
        &self,
        user: Option<String>,
        cmd: Cmd,
        deadline: Instant,
    ) -> Result<Response, ApiError> {
        // The leader's own disk: a proposal it cannot store is refused here, for every FE.
        self.refuse_writes()?;
        let ack_before_commit = crate::bugs::on(crate::bugs::Bug::AckBeforeCommit);
        let req = Request {
            time_ms: now_ms(),
            user,
            cmd,
        };
        if ack_before_commit {
            // The reply a committed entry of this kind would give, made up.
            let fake = match &req.cmd {
                Cmd::AddBackends { .. } | Cmd::AddTaggedBackends { .. } => {
                    Some(roster_raft_store::Reply::Added(Vec::new()))
                }
                Cmd::ModifyBackends { .. } | Cmd::ChangeBackends { .. } => {
                    Some(roster_raft_store::Reply::Changed(Vec::new()))
                }
                _ => None,
            };
            if let Some(fake) = fake {
                let raft = self.inner.raft.clone();
                tokio::spawn(async move {
                    // The entry goes to Raft a while after the acknowledgement, as a commit
                    // slowed by a pause or a slow disk would be: with commits taking about a
                    // millisecond, an immediate proposal left the bug's window so short that
                    // the register-pauses twin missed it in one run of two.
                    tokio::time::sleep(Self::ACK_BEFORE_COMMIT_LAG).await;
                    let _ = raft.client_write(req).await;
                });
                return Ok(Response::Ok(fake));
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, self.inner.raft.client_write(req)).await {
            Ok(Ok(resp)) => Ok(resp.data),
            Ok(Err(e)) => Err(self.map_write_error(e)),
            Err(_) => Err(ApiError::Unknown(
                "the write was not committed in time".into(),
            )),
        }
    }

    fn map_write_error(
        &self,
        e: RaftError<
            roster_raft_store::TypeConfig,
            ClientWriteError<roster_raft_store::TypeConfig>,
        >,
    ) -> ApiError {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ApiError::NotLeader {
                leader_rpc_addr: f.leader_node.map(|n| n.rpc_addr()),
            },
            RaftError::APIError(ClientWriteError::LogEntryDiscarded(_)) => {
                ApiError::Unknown("the leader changed while the write was in flight".into())
            }
            RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
                ApiError::Invalid(e.to_string())
            }
            RaftError::APIError(ClientWriteError::PreconditionFailed(e)) => {
                ApiError::Invalid(e.to_string())
            }
            RaftError::Fatal(f) => ApiError::Unknown(format!("raft stopped: {f}")),
        }
    }

    /// The leader's read index, answered to a follower (`GetReadIndex`) and to this FE's own
    /// reads: concurrent calls share one leadership check (`read_index`).
    pub async fn read_index_as_leader(&self) -> Result<LogId, ApiError> {
        let this = self.clone();
        let round = move || {
            let this = this.clone();
            async move { this.leader_round().await }
        };
        self.inner
            .leader_rounds
            .join(round)
            .await
            .unwrap_or_else(|| Err(ApiError::Unavailable("this frontend is stopping".into())))
    }

    /// One leadership check: openraft confirms with a quorum that this FE still leads, or
    /// finds a quorum's acknowledgement recent enough to stand for one (a lease read, see
    /// `RaftTiming::lease_read_age`); when none is, it sends heartbeats at once and waits.
    async fn leader_round(&self) -> Result<LogId, ApiError> {
        let t = self.inner.cfg.read_timeout;
        let lease = LinearizerOption::new(Some(self.inner.cfg.raft.lease_read_age()), true);
        match tokio::time::timeout(t, self.inner.raft.get_read_linearizer(lease)).await {
            Ok(Ok(lin)) => Ok(*lin.read_log_id().log_id()),
            Ok(Err(RaftError::APIError(e))) => Err(ApiError::NotLeader {
                leader_rpc_addr: leader_hint(&e),
            }),
            Ok(Err(RaftError::Fatal(f))) => {
                Err(ApiError::Unavailable(format!("raft stopped: {f}")))
            }
            Err(_) => Err(ApiError::Unavailable(
                "the leader could not confirm its leadership in time".into(),
            )),
        }
    }

    /// A linearizable read barrier: returns once this FE has applied everything that was
    /// committed before the call, or fails after `read_timeout`; never lets a stale read through.
    pub async fn linearize(&self) -> Result<(), ApiError> {
        if crate::bugs::on(crate::bugs::Bug::StaleLocalRead) {
            return Ok(());
        }
        let deadline = Instant::now() + self.inner.cfg.read_timeout;
        loop {
            let res = self.linearize_once(deadline).await;
            match res {
                Err(e) if e.is_retryable() && Instant::now() < deadline => self.settle().await,
                other => return other,
            }
        }
    }

    async fn linearize_once(&self, deadline: Instant) -> Result<(), ApiError> {
        let left = deadline.saturating_duration_since(Instant::now());
        let this = self.clone();
        let round = move || {
            let this = this.clone();
            async move { this.read_index_round().await }
        };
        let (leader_id, read_log_id) =
            match tokio::time::timeout(left, self.inner.read_rounds.join(round)).await {
                Ok(Some(answer)) => answer?,
                Ok(None) => return Err(ApiError::Unavailable("this frontend is stopping".into())),
                Err(_) => {
                    return Err(ApiError::Unavailable(
                        "no read index from the leader in time".into(),
                    ));
                }
            };
        let left = deadline.saturating_duration_since(Instant::now());
        // Built with the leader's id and no applied index, so the wait cannot be skipped.
        let lin = Linearizer::new(leader_id.0, ReadLogId::from_log_id(read_log_id), None);
        match lin.try_await_ready(&self.inner.raft, Some(left)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(state)) => Err(ApiError::Unavailable(format!(
                "this frontend has not applied up to the read index {} in time",
                state.read_log_id().index()
            ))),
            Err(f) => Err(ApiError::Unavailable(format!("raft stopped: {f}"))),
        }
    }

    /// One read-index round of this FE: the leader, and the index it answered (a leadership
    /// check of its own when this FE leads, else a `GetReadIndex` call to the leader).
    async fn read_index_round(&self) -> Result<(FrontendId, LogId), ApiError> {
        let deadline = Instant::now() + self.inner.cfg.read_timeout;
        let (leader_id, leader) = self.wait_for_leader(deadline).await?;
        let left = deadline.saturating_duration_since(Instant::now());
        let read_log_id = if leader_id == self.id() {
            self.read_index_as_leader().await?
        } else {
            let mut client = self
                .inner
                .channels
                .raft_client(&leader.edit_log_addr())
                .map_err(raft_err)?;
            // A short per-attempt bound, so a paused leader costs one attempt, not the whole read.
            let attempt = left.min(Duration::from_millis(1500));
            let mut req = tonic::Request::new(Blob { data: vec![] });
            req.set_timeout(attempt);
            let reply = match tokio::time::timeout(attempt, client.get_read_index(req)).await {
                Ok(Ok(r)) => r.into_inner(),
                Ok(Err(s)) => {
                    return Err(ApiError::Unavailable(format!(
                        "read index from {}: {}",
                        leader.edit_log_addr(),
                        s.message()
                    )));
                }
                Err(_) => {
                    return Err(ApiError::Unavailable(format!(
                        "no read index from {} in time",
                        leader.edit_log_addr()
                    )));
                }
            };
            codec::decode::<Result<LogId, ApiError>>(&reply.data).map_err(raft_err)??
        };
        Ok((leader_id, read_log_id))
    }

    /// FEs that were members once and are not now, as this FE's applied state has them.
    pub fn removed_frontends(&self) -> BTreeSet<FrontendId> {
        self.inner.sm.read(|state, applied| {
            let m = applied.membership.membership();
            state
                .meta
                .frontends_ever
                .iter()
                .filter(|id| m.get_node(&id.0).is_none())
                .copied()
                .collect()
        })
    }

    /// Current voters and learners as this FE's applied state has them.
    pub fn members(&self) -> (BTreeMap<FrontendId, FeNode>, BTreeSet<FrontendId>) {
        self.inner.sm.read(|_, applied| {
            let m = applied.membership.membership();
            let nodes = m
                .nodes()
                .map(|(id, n)| (FrontendId(*id), n.clone()))
                .collect();
            let voters = m.voter_ids().map(FrontendId).collect();
            (nodes, voters)
        })
    }
}

fn leader_hint(
    e: &openraft::error::LinearizableReadError<roster_raft_store::TypeConfig>,
) -> Option<String> {
    use openraft::TryAsRef;
    let f: Option<&openraft::error::ForwardToLeader<roster_raft_store::TypeConfig>> =
        e.try_as_ref();
    f.and_then(|f| f.leader_node.as_ref().map(|n| n.rpc_addr()))
}

/// Every second, ask each other member who it is and how far it has applied: the source of
/// SHOW FRONTENDS' Alive, LastHeartbeat and ReplayedJournalId, and of quorum checks.
async fn prober_loop(weak: std::sync::Weak<Inner>, cancel: CancellationToken) {
    let mut tick = roster_scheduler::task::ticker(Duration::from_secs(1));
    while cancel.run_until_cancelled(tick.tick()).await.is_some() {
        // Not yet upgradable while `Arc::new_cyclic` is still building the FE (this task may
        // already run then); once the FE is dropped, its `Background` cancels this loop.
        let Some(inner) = weak.upgrade() else {
            continue;
        };
        let fe = FeNodeHandle {
            inner: inner.clone(),
        };
        tokio::spawn(async move { fe.ensure_root().await });
        let members: Vec<(FrontendId, FeNode)> = {
            let m = inner.raft.metrics();
            let m = m.borrow_watched();
            m.membership_config
                .membership()
                .nodes()
                .map(|(id, n)| (FrontendId(*id), n.clone()))
                .collect()
        };
        let me = inner.cfg.id;
        let channels = inner.channels.clone();
        drop(inner);
        let probes = members
            .into_iter()
            .filter(|(id, _)| *id != me)
            .map(|(id, node)| {
                let channels = channels.clone();
                async move {
                    (
                        id,
                        probe(&channels, &node.edit_log_addr(), Duration::from_millis(900)).await,
                    )
                }
            });
        let results = futures::future::join_all(probes).await;
        let Some(inner) = weak.upgrade() else { return };
        let mut peers = inner.peers.lock().expect("peers lock");
        let ids: BTreeSet<FrontendId> = results.iter().map(|(id, _)| *id).collect();
        peers.retain(|id, _| ids.contains(id));
        for (id, r) in results {
            let p = peers.entry(id).or_default();
            match r {
                Ok(info) => {
                    p.last_ok_ms = Some(now_ms());
                    p.info = Some(info);
                    p.err.clear();
                }
                Err(e) => p.err = e,
            }
        }
    }
}

/// One NodeInfo call.
pub(crate) async fn probe(
    channels: &Channels,
    addr: &str,
    timeout: Duration,
) -> Result<NodeInfo, String> {
    let mut client = channels.raft_client(addr).map_err(|e| e.to_string())?;
    let mut req = tonic::Request::new(Blob { data: vec![] });
    req.set_timeout(timeout);
    match tokio::time::timeout(timeout, client.node_info(req)).await {
        Ok(Ok(r)) => codec::decode::<NodeInfo>(&r.into_inner().data).map_err(|e| e.to_string()),
        Ok(Err(s)) => Err(s.message().to_string()),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// Raft's progress as one FE sees it (`FeNodeHandle::raft_view`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftView {
    pub term: u64,
    pub leader: Option<FrontendId>,
    pub last_applied: u64,
    /// The highest index this FE knows to be committed (on the leader: the quorum's).
    pub committed: u64,
    /// The last index in this FE's snapshot, and the last one purged from its log.
    pub snapshot: u64,
    pub purged: u64,
}

#[cfg(test)]
mod lease_tests {
    use super::*;

    /// With clocks `LEASE_DRIFT_BOUND` apart (the leader slow, a follower fast), the real time
    /// a leader serves lease reads after a send ends before the follower's lease does.
    #[test]
    fn a_lease_read_ends_before_any_follower_can_vote() {
        for timing in [
            RaftTiming::default(),
            RaftTiming {
                heartbeat_interval_ms: 200,
                election_timeout_min_ms: 1000,
                election_timeout_max_ms: 2000,
            },
        ] {
            let bound = f64::from(LEASE_DRIFT_BOUND);
            let (leader_rate, follower_rate) = (1.0 / bound.sqrt(), bound.sqrt());
            let served_real = timing.lease_read_age().as_secs_f64() / leader_rate;
            let lease_real = timing.election_timeout_max_ms as f64 / 1000.0 / follower_rate;
            assert!(
                served_real < lease_real * 0.9,
                "{timing:?}: lease reads for {served_real} s, a follower's lease ends at {lease_real} s"
            );
        }
    }
}
