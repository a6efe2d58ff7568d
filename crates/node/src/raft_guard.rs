//! Sanity checks on Raft messages between FEs, before openraft sees them: the sender must be a
//! member of this FE's membership, terms must stay within a bound of this FE's term, and a
//! leadership-transfer vote counts as one only when the current leader announced it. They hold
//! for authenticated peers too (TLS says who is talking, not that what they say is sane).
//!
//! Every refusal is a `Refusal`, answered to the sender as a gRPC error; nothing changes here.

use openraft::async_runtime::watch::WatchReceiver;
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use roster_raft_store::types::{LogId, MAX_TERM, Vote};
use roster_raft_store::{NodeId, Raft, TypeConfig};
use roster_transport::ratelog::{LOG_INTERVAL, RateLimit};
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Limits on what peers may send (config `raft.max_term_jump`, `raft.max_snapshot_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftLimits {
    /// A message whose term is more than this above this FE's term is refused. With Pre-Vote a
    /// term grows only by real elections, so a million is far beyond any honest gap.
    pub max_term_jump: u64,
    /// An incoming snapshot larger than this is refused (it is streamed to a file meanwhile).
    pub max_snapshot_bytes: u64,
}

impl Default for RaftLimits {
    fn default() -> Self {
        RaftLimits {
            max_term_jump: 1_000_000,
            max_snapshot_bytes: 1 << 30,
        }
    }
}

/// Why a Raft message from a peer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "term {term} from FE {from} is above the largest term Roster accepts ({MAX_TERM}); refused"
    )]
    TermOverflow { from: NodeId, term: u64 },
    #[error(
        "term {term} from FE {from} is more than raft.max_term_jump ({jump}) above this FE's term {current}; refused"
    )]
    TermJump {
        from: NodeId,
        term: u64,
        current: u64,
        jump: u64,
    },
    #[error(
        "{what} from FE {from}, which is not a {role} of this FE's membership {members:?}; refused"
    )]
    NotMember {
        what: &'static str,
        from: NodeId,
        role: &'static str,
        members: BTreeSet<NodeId>,
    },
    #[error(
        "{what} from FE {from} has log id {log_id} with a term above its own term {term}; refused"
    )]
    LogTermAboveVote {
        what: &'static str,
        from: NodeId,
        log_id: String,
        term: u64,
    },
    #[error("AppendEntries from FE {from}: entry {got} does not follow {expected_after}; refused")]
    NotConsecutive {
        from: NodeId,
        got: u64,
        expected_after: String,
    },
    #[error(
        "snapshot from FE {from} with vote {vote} is stale: this FE's vote is {current}; refused before reading it"
    )]
    StaleVote {
        from: NodeId,
        vote: String,
        current: String,
    },
    #[error(
        "snapshot from FE {from} is larger than raft.max_snapshot_bytes ({limit} bytes); refused, nothing installed"
    )]
    SnapshotTooLarge { from: NodeId, limit: u64 },
}

impl Refusal {
    /// The gRPC answer to the sender.
    pub fn status(&self) -> tonic::Status {
        match self {
            Refusal::SnapshotTooLarge { .. } => tonic::Status::resource_exhausted(self.to_string()),
            Refusal::StaleVote { .. } => tonic::Status::failed_precondition(self.to_string()),
            _ => tonic::Status::permission_denied(self.to_string()),
        }
    }

    fn sender(&self) -> NodeId {
        match self {
            Refusal::TermOverflow { from, .. }
            | Refusal::TermJump { from, .. }
            | Refusal::NotMember { from, .. }
            | Refusal::LogTermAboveVote { from, .. }
            | Refusal::NotConsecutive { from, .. }
            | Refusal::StaleVote { from, .. }
            | Refusal::SnapshotTooLarge { from, .. } => *from,
        }
    }

    /// What kind of refusal, for the log's rate limit.
    fn kind(&self) -> &'static str {
        match self {
            Refusal::TermOverflow { .. } => "term overflow",
            Refusal::TermJump { .. } => "term jump",
            Refusal::NotMember { .. } => "not a member",
            Refusal::LogTermAboveVote { .. } => "log term above vote",
            Refusal::NotConsecutive { .. } => "not consecutive",
            Refusal::StaleVote { .. } => "stale vote",
            Refusal::SnapshotTooLarge { .. } => "snapshot too large",
        }
    }
}

/// One ERROR line per claimed sender and kind of refusal per interval (a hostile peer may send
/// thousands; a harmless refusal, such as a vote before this FE applied its first membership,
/// must not hide an attack of another kind from the same id).
static REFUSED: RateLimit<(NodeId, &'static str)> = RateLimit::new(LOG_INTERVAL);

/// Log a refusal (rate-limited) and turn it into the gRPC answer.
pub fn refuse(r: Refusal) -> tonic::Status {
    // An FE that has no membership yet (it is starting, before the cluster's first entry
    // reaches it) refuses every peer: expected while a cluster starts, so not an error.
    let starting = matches!(&r, Refusal::NotMember { members, .. } if members.is_empty());
    if let Some(suppressed) = REFUSED.check((r.sender(), r.kind())) {
        if starting {
            tracing::info!(
                peer = r.sender(),
                "{r}: this FE has no membership yet (it is starting)"
            );
        } else {
            tracing::error!(
                peer = r.sender(),
                suppressed,
                "{r} ({suppressed} more of this kind from this peer in the last {LOG_INTERVAL:?} not logged)"
            );
        }
    }
    r.status()
}

/// What this FE knows when it judges a message: from Raft's metrics, read once per message.
#[derive(Debug, Clone)]
pub struct LocalView {
    pub term: u64,
    pub vote: Vote,
    pub leader: Option<NodeId>,
    /// Voters of the effective membership (both halves of a joint one).
    pub voters: BTreeSet<NodeId>,
    /// Voters and learners.
    pub members: BTreeSet<NodeId>,
    /// FEs that were members once and are not now, by this FE's applied state: never admitted
    /// again, whatever certificate they hold.
    pub removed: BTreeSet<NodeId>,
    /// The peer proved with its certificate that it is an FE of this cluster (secure mode).
    pub peer_is_fe: bool,
}

impl LocalView {
    pub fn of(raft: &Raft) -> Self {
        let m = raft.metrics();
        let m = m.borrow_watched();
        let membership = m.membership_config.membership();
        LocalView {
            term: m.current_term,
            vote: m.vote,
            leader: m.current_leader,
            voters: membership.voter_ids().collect(),
            members: membership.nodes().map(|(id, _)| *id).collect(),
            removed: BTreeSet::new(),
            peer_is_fe: false,
        }
    }

    /// The same view for a peer the transport authenticated as an FE of the cluster, with the
    /// FEs this FE knows were removed.
    pub fn for_fe_peer(mut self, peer_is_fe: bool, removed: BTreeSet<NodeId>) -> Self {
        self.peer_is_fe = peer_is_fe;
        self.removed = removed;
        self
    }

    /// An FE this FE's view does not name and does not know as removed: one added after the
    /// view was made (this FE lags). Node ids come from each FE's config, so an FE added later
    /// may have a lower id than one added earlier; only the removed ones are known for sure.
    /// Only a peer whose certificate proves it is an FE gets this benefit of the doubt; without
    /// it, anyone could claim an id.
    fn newer_fe(&self, from: NodeId) -> bool {
        self.peer_is_fe && !self.members.contains(&from) && !self.removed.contains(&from)
    }

    pub fn check_term(&self, from: NodeId, term: u64, limits: &RaftLimits) -> Result<(), Refusal> {
        check_term(from, term, self.term, limits)
    }

    fn check_voter(&self, what: &'static str, from: NodeId) -> Result<(), Refusal> {
        if self.voters.contains(&from) || self.newer_fe(from) {
            return Ok(());
        }
        Err(Refusal::NotMember {
            what,
            from,
            role: "voter",
            members: self.voters.clone(),
        })
    }

    /// Leaders come from the membership. An FE with no membership yet (waiting to be added)
    /// learns it from whoever replicates to it first, and keeps following that leader for its
    /// term (`vote`: the leader this FE already accepted) while it replays a log whose early
    /// memberships do not name it. An FE whose membership is behind learns of a newer leader
    /// from the entries it brings (a membership naming it), or from its certificate
    /// (`newer_fe`); otherwise a follower that missed a membership change could never be
    /// caught up by a leader added since.
    fn check_leader(
        &self,
        what: &'static str,
        vote: &Vote,
        carried: &[&roster_raft_store::types::Membership],
    ) -> Result<(), Refusal> {
        let from = vote.leader_id.node_id;
        if self.members.is_empty()
            || self.members.contains(&from)
            || (vote.committed && *vote == self.vote)
            || self.newer_fe(from)
            || carried.iter().any(|m| m.nodes().any(|(id, _)| *id == from))
        {
            return Ok(());
        }
        Err(Refusal::NotMember {
            what,
            from,
            role: "member",
            members: self.members.clone(),
        })
    }

    /// Vote and PreVote: from a voter, with a sane term and a last log id not beyond it.
    pub fn check_vote_request(
        &self,
        what: &'static str,
        req: &VoteRequest<TypeConfig>,
        limits: &RaftLimits,
    ) -> Result<(), Refusal> {
        let from = req.vote.leader_id.node_id;
        self.check_voter(what, from)?;
        self.check_term(from, req.vote.leader_id.term, limits)?;
        check_log_id(
            what,
            from,
            req.vote.leader_id.term,
            req.last_log_id.as_ref(),
        )
    }

    /// AppendEntries: from a member, with a sane term, log ids not beyond it, and entries that
    /// follow `prev_log_id` one by one.
    pub fn check_append(
        &self,
        req: &AppendEntriesRequest<TypeConfig>,
        limits: &RaftLimits,
    ) -> Result<(), Refusal> {
        const WHAT: &str = "AppendEntries";
        let from = req.vote.leader_id.node_id;
        let term = req.vote.leader_id.term;
        let carried: Vec<_> = req
            .entries
            .iter()
            .filter_map(|e| match &e.payload {
                openraft::EntryPayload::Membership(m) => Some(m),
                _ => None,
            })
            .collect();
        self.check_leader(WHAT, &req.vote, &carried)?;
        self.check_term(from, term, limits)?;
        check_log_id(WHAT, from, term, req.prev_log_id.as_ref())?;
        check_log_id(WHAT, from, term, req.leader_commit.as_ref())?;
        let first = req.prev_log_id.map(|l| l.index + 1).unwrap_or(0);
        for (expected, e) in (first..).zip(&req.entries) {
            check_log_id(WHAT, from, term, Some(&e.log_id))?;
            if e.log_id.index != expected {
                return Err(Refusal::NotConsecutive {
                    from,
                    got: e.log_id.index,
                    expected_after: match req.prev_log_id {
                        Some(p) => format!("prev_log_id {p}"),
                        None => "an empty log".into(),
                    },
                });
            }
        }
        Ok(())
    }

    /// InstallSnapshot, judged on its first message alone: from a member, with a sane term,
    /// and a vote not older than this FE's (a stale one is refused without reading the body).
    pub fn check_snapshot(
        &self,
        vote: &Vote,
        last_log_id: Option<&LogId>,
        membership: &roster_raft_store::types::Membership,
        limits: &RaftLimits,
    ) -> Result<(), Refusal> {
        const WHAT: &str = "InstallSnapshot";
        let from = vote.leader_id.node_id;
        self.check_leader(WHAT, vote, &[membership])?;
        self.check_term(from, vote.leader_id.term, limits)?;
        check_log_id(WHAT, from, vote.leader_id.term, last_log_id)?;
        match vote.partial_cmp(&self.vote) {
            Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal) => Ok(()),
            _ => Err(Refusal::StaleVote {
                from,
                vote: vote.to_string(),
                current: self.vote.to_string(),
            }),
        }
    }
}

/// A term a peer may bring next to `current` (this FE's term, or the term it sent): not one
/// that cannot be incremented, and not a jump far above `current`.
pub fn check_term(
    from: NodeId,
    term: u64,
    current: u64,
    limits: &RaftLimits,
) -> Result<(), Refusal> {
    if term > MAX_TERM {
        return Err(Refusal::TermOverflow { from, term });
    }
    if term > current.saturating_add(limits.max_term_jump) {
        return Err(Refusal::TermJump {
            from,
            term,
            current,
            jump: limits.max_term_jump,
        });
    }
    Ok(())
}

/// A log id a peer sends along with its vote never has a higher term than the vote: a leader
/// only holds entries of its own or earlier terms.
fn check_log_id(
    what: &'static str,
    from: NodeId,
    term: u64,
    log_id: Option<&LogId>,
) -> Result<(), Refusal> {
    match log_id {
        Some(l) if l.leader_id.term > term => Err(Refusal::LogTermAboveVote {
            what,
            from,
            log_id: l.to_string(),
            term,
        }),
        _ => Ok(()),
    }
}

/// How long a leadership transfer announced by the leader stays valid: a few election rounds.
const TRANSFER_WINDOW: Duration = Duration::from_secs(15);

/// The soft state behind the checks, one per FE.
#[derive(Debug, Default)]
pub struct GuardState {
    pub transfers: Transfers,
    /// One incoming snapshot at a time: each may take `max_snapshot_bytes` of disk.
    pub snapshot_slot: tokio::sync::Mutex<()>,
}

/// Leadership transfers this FE was told about by the current leader (or started itself as
/// leader). A vote that claims to be part of a transfer is honoured only for that candidate.
#[derive(Debug, Default)]
pub struct Transfers {
    to: Mutex<Option<(NodeId, Instant)>>,
}

impl Transfers {
    /// The current leader hands leadership to `to`.
    pub fn announce(&self, to: NodeId) {
        *self.to.lock().expect("transfers lock") = Some((to, Instant::now()));
    }

    /// Whether `candidate`'s vote may skip the leader lease as a transfer.
    pub fn allows(&self, candidate: NodeId) -> bool {
        matches!(*self.to.lock().expect("transfers lock"),
            Some((to, at)) if to == candidate && at.elapsed() < TRANSFER_WINDOW)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::entry::RaftEntry;
    use roster_raft_store::types::Entry;

    fn view() -> LocalView {
        LocalView {
            term: 5,
            vote: Vote::new_committed(5, 1),
            leader: Some(1),
            voters: [1, 2, 3].into(),
            members: [1, 2, 3, 4].into(),
            removed: [5].into(),
            peer_is_fe: false,
        }
    }

    fn log_id(term: u64, node: NodeId, index: u64) -> LogId {
        LogId::new(
            openraft::impls::leader_id_adv::LeaderId {
                term,
                node_id: node,
            },
            index,
        )
    }

    fn vote_req(term: u64, node: NodeId) -> VoteRequest<TypeConfig> {
        VoteRequest::new(Vote::new(term, node), Some(log_id(5, 1, 10)))
    }

    fn append(term: u64, node: NodeId, first: u64, n: u64) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: Vote::new_committed(term, node),
            prev_log_id: first.checked_sub(1).map(|i| log_id(5, 1, i)),
            entries: (first..first + n)
                .map(|i| Entry::new_blank(log_id(term, node, i)))
                .collect(),
            leader_commit: None,
        }
    }

    #[test]
    fn terms_that_overflow_or_jump_are_refused() {
        let l = RaftLimits::default();
        let v = view();
        assert!(v.check_vote_request("Vote", &vote_req(6, 2), &l).is_ok());
        assert!(matches!(
            v.check_vote_request("Vote", &vote_req(u64::MAX, 2), &l),
            Err(Refusal::TermOverflow { term: u64::MAX, .. })
        ));
        assert!(matches!(
            v.check_vote_request("Vote", &vote_req(5 + 1_000_000_000, 2), &l),
            Err(Refusal::TermJump { current: 5, .. })
        ));
        assert!(
            v.check_vote_request("Vote", &vote_req(5 + 1_000_000, 2), &l)
                .is_ok()
        );
        assert!(v.check_append(&append(u64::MAX, 1, 11, 1), &l).is_err());
    }

    #[test]
    fn only_members_send_votes_and_entries() {
        let l = RaftLimits::default();
        let v = view();
        assert!(matches!(
            v.check_vote_request("Vote", &vote_req(6, 99), &l),
            Err(Refusal::NotMember { from: 99, .. })
        ));
        assert!(
            v.check_vote_request("Vote", &vote_req(6, 4), &l).is_err(),
            "a learner does not campaign"
        );
        assert!(v.check_append(&append(6, 2, 11, 2), &l).is_ok());
        assert!(matches!(
            v.check_append(&append(6, 99, 11, 1), &l),
            Err(Refusal::NotMember { from: 99, .. })
        ));
        let fresh = LocalView {
            voters: BTreeSet::new(),
            members: BTreeSet::new(),
            term: 0,
            ..view()
        };
        assert!(
            fresh.check_append(&append(6, 2, 0, 1), &l).is_ok(),
            "an FE waiting to be added learns its membership from the leader"
        );
        // It then replays memberships from before that leader was added, and keeps following
        // it in the term it accepted it, not in another.
        let replaying = LocalView {
            vote: Vote::new_committed(6, 7),
            ..view()
        };
        assert!(replaying.check_append(&append(6, 7, 11, 1), &l).is_ok());
        assert!(replaying.check_append(&append(7, 7, 11, 1), &l).is_err());
        assert!(replaying.check_append(&append(6, 8, 11, 1), &l).is_err());
    }

    /// A follower that missed membership changes is caught up by a leader added since: the
    /// leader's entries name it, or (secure mode) its certificate proves it is an FE that the
    /// follower does not know as removed, whatever its id. A removed FE stays refused.
    #[test]
    fn a_follower_behind_on_membership_follows_a_newer_leader() {
        let l = RaftLimits::default();
        let v = view(); // members 1..=4
        assert!(v.check_append(&append(6, 7, 11, 1), &l).is_err());
        let mut with_config = append(6, 7, 11, 2);
        let m = roster_raft_store::types::Membership::new_with_defaults(
            vec![[1, 2, 7].into()],
            Vec::<NodeId>::new(),
        );
        with_config.entries[0] = Entry::new_membership(log_id(6, 7, 11), m.clone());
        assert!(v.check_append(&with_config, &l).is_ok());
        assert!(
            v.check_snapshot(&Vote::new_committed(6, 7), None, &m, &l)
                .is_ok()
        );
        let secure = view().for_fe_peer(true, [5].into());
        assert!(secure.check_append(&append(6, 7, 11, 1), &l).is_ok());
        assert!(
            secure.check_append(&append(6, 0, 11, 1), &l).is_ok(),
            "an FE added later may have a lower id than the view's highest"
        );
        assert!(
            secure
                .check_vote_request("Vote", &vote_req(6, 7), &l)
                .is_ok()
        );
        assert!(
            secure.check_append(&append(6, 5, 11, 1), &l).is_err(),
            "a removed FE stays refused"
        );
        assert!(
            secure
                .check_vote_request("Vote", &vote_req(6, 4), &l)
                .is_err(),
            "a learner of the view still does not campaign"
        );
    }

    #[test]
    fn log_ids_beyond_the_vote_or_with_gaps_are_refused() {
        let l = RaftLimits::default();
        let v = view();
        let mut r = append(6, 2, 11, 2);
        r.entries[1] = Entry::new_blank(log_id(7, 2, 12));
        assert!(matches!(
            v.check_append(&r, &l),
            Err(Refusal::LogTermAboveVote { .. })
        ));
        let mut r = append(6, 2, 11, 2);
        r.entries[1] = Entry::new_blank(log_id(6, 2, 14));
        assert!(matches!(
            v.check_append(&r, &l),
            Err(Refusal::NotConsecutive { got: 14, .. })
        ));
        let mut r = VoteRequest::new(Vote::new(6, 2), Some(log_id(u64::MAX, 2, 10)));
        assert!(v.check_vote_request("Vote", &r, &l).is_err());
        r.last_log_id = None;
        assert!(v.check_vote_request("Vote", &r, &l).is_ok());
    }

    #[test]
    fn a_stale_snapshot_vote_is_refused() {
        let l = RaftLimits::default();
        let v = view();
        assert!(
            v.check_snapshot(&Vote::new_committed(5, 1), None, &Default::default(), &l)
                .is_ok()
        );
        assert!(
            v.check_snapshot(&Vote::new_committed(6, 2), None, &Default::default(), &l)
                .is_ok()
        );
        assert!(matches!(
            v.check_snapshot(&Vote::new_committed(4, 2), None, &Default::default(), &l),
            Err(Refusal::StaleVote { .. })
        ));
        assert!(
            v.check_snapshot(&Vote::new_committed(6, 99), None, &Default::default(), &l)
                .is_err()
        );
    }

    #[test]
    fn a_transfer_counts_only_for_the_announced_candidate() {
        let t = Transfers::default();
        assert!(!t.allows(2));
        t.announce(2);
        assert!(t.allows(2));
        assert!(!t.allows(3));
    }
}
