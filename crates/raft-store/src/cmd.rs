//! Every replicated change is a variant of `Cmd`. Log entries live forever: never reorder or
//! remove variants, only append; `tests::encoding_is_pinned` fails if an encoding moves.

use roster_membership::model::backend::{BackendChange, Tags, Tombstone};
use roster_membership::model::catalog::{ReplicaReport, TableDef, TableSpec};
use roster_membership::model::liveness::LivenessReport;
use roster_membership::model::moves::MovePlan;
use roster_membership::model::users::PasswordHash;
use roster_membership::transition::registry::MembershipOutcome;
use roster_membership::{
    BackendId, BackendRef, DomainError, FrontendId, HostPort, MoveId, Privilege, TableId, TabletId,
    Term,
};
use serde::{Deserialize, Serialize};
use std::fmt;

pub type Properties = Vec<(String, String)>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cmd {
    /// Does nothing; used to learn a fresh index and as a write barrier.
    Noop,
    AddBackends {
        addrs: Vec<HostPort>,
        properties: Properties,
    },
    DroppBackends {
        targets: Vec<BackendRef>,
    },
    DecommissionBackends {
        targets: Vec<BackendRef>,
    },
    CancelDecommission {
        targets: Vec<BackendRef>,
    },
    ModifyBackends {
        targets: Vec<BackendRef>,
        properties: Properties,
    },
    SetConfig {
        pairs: Properties,
    },
    /// Create root with ADMIN_PRIV unless it exists (proposed once by the first leader).
    EnsureRoot {
        password: PasswordHash,
    },
    CreateUser {
        name: String,
        password: PasswordHash,
    },
    DropUser {
        name: String,
    },
    Grant {
        name: String,
        privileges: Vec<Privilege>,
    },
    Revoke {
        name: String,
        privileges: Vec<Privilege>,
    },
    /// ADD BACKEND BLACKLIST on `frontend` (MANUAL entries).
    AddBlacklist {
        frontend: FrontendId,
        backends: Vec<BackendId>,
    },
    DeleteBlacklist {
        frontend: FrontendId,
        backends: Vec<BackendId>,
    },
    /// The master's heartbeat verdicts (only changes). Proposed by the leader's own loop,
    /// never forwarded, so a deposed master's verdicts cannot be applied.
    RecordLiveness {
        reports: Vec<LivenessReport>,
    },
    /// CREATE TABLE: placement is decided at apply, from the replicated state.
    CreateTable(TableDef),
    DropTable {
        name: String,
        if_exists: bool,
        force: bool,
    },
    RecoverTable {
        name: String,
    },
    /// Remove recycle-bin tables past `catalog_trash_expire_second`, by the entry's time.
    ExpireRecycleBin,
    /// What the backends reported of the replicas they hold (only changes), from the master.
    RecordReplicas {
        reports: Vec<ReplicaReport>,
    },
    /// The master's planner: start these moves (each re-checked at apply; stale ones skipped).
    StartMoves {
        moves: Vec<MovePlan>,
    },
    /// The destination agent holds the clone with these bytes (checked against the source).
    FinishMove {
        id: MoveId,
        bytes: u64,
        checksum: u32,
    },
    /// A clone failed or timed out; the tablet counts a failure and is planned again later.
    AbortMove {
        id: MoveId,
        reason: String,
    },
    /// Mark drained DECOMMISSIONING backends DECOMMISSIONED (and drop them if so configured).
    FinishDecommissions,
    /// NORMAL replicas whose backends no longer hold their files (seen twice by the master):
    /// forgotten, so the planner repairs the tablets.
    ReplicasLost {
        lost: Vec<(TabletId, BackendId)>,
    },
    /// `frontend` failed `count` times to connect to `backend` (its own connection checks): an
    /// AUTO entry if it has none, and the failures join the entry's history.
    RecordConnectFailures {
        frontend: FrontendId,
        backend: BackendId,
        count: u32,
        reason: String,
    },
    /// `frontend`'s refresher found every port of `backend` answering: its AUTO entry goes if
    /// the window holds fewer failures than the threshold (re-checked at apply).
    ClearAutoBlacklist {
        frontend: FrontendId,
        backend: BackendId,
    },
    /// Leader work decided in `term` (liveness verdicts, replica reports, moves, recycle-bin
    /// expiry): applied only when its entry was appended in that same term. A round a master
    /// started before it lost and regained leadership is refused, not acted on with what it saw
    /// in the old term. Un-fenced leader commands of older logs still apply as they did.
    Fenced {
        term: Term,
        cmd: Box<Cmd>,
    },
    /// ALTER SYSTEM ADD BACKEND with its PROPERTIES parsed into tags when the statement was
    /// planned. `AddBackends` (parsed at apply) is what older logs hold; they replay through it.
    AddTaggedBackends {
        addrs: Vec<HostPort>,
        tags: Tags,
    },
    /// ALTER SYSTEM MODIFY BACKEND with its properties parsed when planned (older logs:
    /// `ModifyBackends`).
    ChangeBackends {
        targets: Vec<BackendRef>,
        changes: Vec<BackendChange>,
    },
    /// CREATE TABLE with its PROPERTIES parsed when planned (older logs: `CreateTable`).
    CreateTableSpec(TableSpec),
}

impl Cmd {
    /// The privilege a user needs for this command; checked again at apply.
    pub fn required_privilege(&self) -> Privilege {
        match self {
            Cmd::Noop => Privilege::SelectPriv,
            Cmd::AddBackends { .. }
            | Cmd::DroppBackends { .. }
            | Cmd::DecommissionBackends { .. }
            | Cmd::CancelDecommission { .. }
            | Cmd::ModifyBackends { .. }
            | Cmd::CreateTable(_)
            | Cmd::DropTable { .. }
            | Cmd::RecoverTable { .. }
            | Cmd::AddTaggedBackends { .. }
            | Cmd::ChangeBackends { .. }
            | Cmd::CreateTableSpec(_) => Privilege::NodePriv,
            Cmd::SetConfig { .. }
            | Cmd::EnsureRoot { .. }
            | Cmd::CreateUser { .. }
            | Cmd::DropUser { .. }
            | Cmd::Grant { .. }
            | Cmd::Revoke { .. } => Privilege::AdminPriv,
            Cmd::AddBlacklist { .. } | Cmd::DeleteBlacklist { .. } => Privilege::Blacklist,
            Cmd::RecordLiveness { .. }
            | Cmd::ExpireRecycleBin
            | Cmd::RecordReplicas { .. }
            | Cmd::StartMoves { .. }
            | Cmd::FinishMove { .. }
            | Cmd::AbortMove { .. }
            | Cmd::FinishDecommissions
            | Cmd::ReplicasLost { .. } => Privilege::AdminPriv,
            Cmd::RecordConnectFailures { .. } | Cmd::ClearAutoBlacklist { .. } => {
                Privilege::Blacklist
            }
            Cmd::Fenced { cmd, .. } => cmd.required_privilege(),
        }
    }

    /// `cmd` as leader work of `term` (see `Cmd::Fenced`).
    pub fn fenced(term: Term, cmd: Cmd) -> Cmd {
        Cmd::Fenced {
            term,
            cmd: Box::new(cmd),
        }
    }

    /// The command a `Fenced` wraps (itself otherwise): what it does, whatever its fence.
    pub fn unfenced(&self) -> &Cmd {
        match self {
            Cmd::Fenced { cmd, .. } => cmd.unfenced(),
            other => other,
        }
    }
}

/// A command as proposed: stamped by the leader with its wall time (the applier keeps the
/// state's clock monotonic, so apply never reads a clock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub time_ms: u64,
    /// Who asked; `None` for the FEs' own housekeeping. Checked against `Cmd::required_privilege`
    /// at apply, so a privilege revoked meanwhile is honoured.
    pub user: Option<String>,
    pub cmd: Cmd,
}

/// What openraft prints when it logs an entry: never a password hash.
impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let user = self.user.as_deref().unwrap_or("-");
        match &self.cmd {
            Cmd::EnsureRoot { .. } => write!(f, "EnsureRoot {{ password: <hidden> }}"),
            Cmd::CreateUser { name, .. } => {
                write!(f, "CreateUser {{ name: {name:?}, password: <hidden> }}")
            }
            other => write!(f, "{other:?}"),
        }?;
        write!(f, " by {user} @{}", self.time_ms)
    }
}

/// The answer to an applied command. A refusal is an answer, not an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Ok(Reply),
    Refused(DomainError),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    Done,
    Added(Vec<BackendId>),
    /// DROPP BACKEND: the tombstones, and how many tablets lost their last replica.
    Dropped {
        tombstones: Vec<Tombstone>,
        tablets_lost: u64,
    },
    /// The backends whose record changed.
    Changed(Vec<BackendId>),
    /// The table a catalog statement acted on (`None`: IF EXISTS found nothing), and whether
    /// CREATE made it (false: IF NOT EXISTS found it).
    Table {
        id: Option<TableId>,
        created: bool,
    },
    /// Tables removed from the recycle bin.
    Expired(Vec<TableId>),
    /// Moves started.
    Moves(Vec<MoveId>),
    /// Whether a move finished (or was aborted); false if it was already gone.
    MoveEnded(bool),
    /// DECOMMISSION / CANCEL DECOMMISSION: what happened to each backend named.
    Memberships(Vec<(BackendId, MembershipOutcome)>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;
    use roster_membership::model::catalog::ReplicaAllocation;
    use roster_membership::model::moves::MoveReason;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn display_hides_password_hashes() {
        let r = Request {
            time_ms: 1,
            user: None,
            cmd: Cmd::CreateUser {
                name: "u".into(),
                password: Some([0xab; 20]),
            },
        };
        let text = r.to_string();
        assert!(
            !text.contains("171") && !text.to_lowercase().contains("ab, "),
            "{text}"
        );
        assert!(text.contains("<hidden>"));
    }

    /// Pins the on-disk encoding of each variant. If this fails, you changed the log format:
    /// add a new variant at the end instead of editing an existing one.
    #[test]
    fn encoding_is_pinned() {
        let id = BackendRef::Id(BackendId(10001));
        let addr = HostPort::new("h", 9050);
        let cases: Vec<(Cmd, &str)> = vec![
            (Cmd::Noop, "0100000000"),
            (
                Cmd::AddBackends {
                    addrs: vec![addr.clone()],
                    properties: vec![("k".into(), "v".into())],
                },
                "010100000001000000000000000100000000000000685a23010000000000000001000000000000006b010000000000000076",
            ),
            (
                Cmd::DroppBackends {
                    targets: vec![id.clone()],
                },
                "01020000000100000000000000000000001127000000000000",
            ),
            (
                Cmd::DecommissionBackends {
                    targets: vec![id.clone()],
                },
                "01030000000100000000000000000000001127000000000000",
            ),
            (
                Cmd::CancelDecommission {
                    targets: vec![id.clone()],
                },
                "01040000000100000000000000000000001127000000000000",
            ),
            (
                Cmd::ModifyBackends {
                    targets: vec![BackendRef::Addr(addr.clone())],
                    properties: vec![],
                },
                "01050000000100000000000000010000000100000000000000685a230000000000000000",
            ),
            (
                Cmd::SetConfig { pairs: vec![] },
                "01060000000000000000000000",
            ),
            (Cmd::EnsureRoot { password: None }, "010700000000"),
            (
                Cmd::CreateUser {
                    name: "u".into(),
                    password: Some([0xab; 20]),
                },
                "010800000001000000000000007501abababababababababababababababababababab",
            ),
            (
                Cmd::DropUser { name: "u".into() },
                "0109000000010000000000000075",
            ),
            (
                Cmd::Grant {
                    name: "u".into(),
                    privileges: vec![Privilege::NodePriv],
                },
                "010a000000010000000000000075010000000000000001000000",
            ),
            (
                Cmd::Revoke {
                    name: "u".into(),
                    privileges: vec![Privilege::Blacklist],
                },
                "010b000000010000000000000075010000000000000002000000",
            ),
            (
                Cmd::AddBlacklist {
                    frontend: FrontendId(2),
                    backends: vec![BackendId(10001)],
                },
                "010c000000020000000000000001000000000000001127000000000000",
            ),
            (
                Cmd::DeleteBlacklist {
                    frontend: FrontendId(2),
                    backends: vec![BackendId(10001)],
                },
                "010d000000020000000000000001000000000000001127000000000000",
            ),
            (
                Cmd::RecordLiveness {
                    reports: vec![LivenessReport {
                        id: BackendId(10001),
                        alive: true,
                        last_heartbeat_ms: Some(5),
                        failure_counter: 0,
                        err_msg: String::new(),
                        info: None,
                    }],
                },
                "010e00000001000000000000001127000000000000010105000000000000000000000000000000000000000000000000",
            ),
            (
                Cmd::CreateTable(TableDef {
                    name: "t".into(),
                    if_not_exists: true,
                    columns: vec![("k".into(), "INT".into())],
                    hash_columns: vec!["k".into()],
                    buckets: 2,
                    properties: vec![("replication_num".into(), "1".into())],
                }),
                "010f00000001000000000000007401010000000000000001000000000000006b0300000000000000494e54010000000000000001000000000000006b0200000001000000000000000f000000000000007265706c69636174696f6e5f6e756d010000000000000031",
            ),
            (
                Cmd::DropTable {
                    name: "t".into(),
                    if_exists: false,
                    force: true,
                },
                "01100000000100000000000000740001",
            ),
            (
                Cmd::RecoverTable { name: "t".into() },
                "0111000000010000000000000074",
            ),
            (Cmd::ExpireRecycleBin, "0112000000"),
            (
                Cmd::StartMoves {
                    moves: vec![MovePlan {
                        tablet: roster_membership::TabletId(100002),
                        source: BackendId(10001),
                        dest: BackendId(10002),
                        replaces: Some(BackendId(10003)),
                        reason: MoveReason::Decommission,
                    }],
                },
                "01140000000100000000000000a2860100000000001127000000000000122700000000000001132700000000000001000000",
            ),
            (
                Cmd::FinishMove {
                    id: MoveId(1),
                    bytes: 2,
                    checksum: 3,
                },
                "01150000000100000000000000020000000000000003000000",
            ),
            (
                Cmd::AbortMove {
                    id: MoveId(1),
                    reason: "r".into(),
                },
                "01160000000100000000000000010000000000000072",
            ),
            (Cmd::FinishDecommissions, "0117000000"),
            (
                Cmd::ReplicasLost {
                    lost: vec![(TabletId(100002), BackendId(10001))],
                },
                "01180000000100000000000000a2860100000000001127000000000000",
            ),
            (
                Cmd::RecordConnectFailures {
                    frontend: FrontendId(2),
                    backend: BackendId(10001),
                    count: 3,
                    reason: "r".into(),
                },
                "01190000000200000000000000112700000000000003000000010000000000000072",
            ),
            (
                Cmd::ClearAutoBlacklist {
                    frontend: FrontendId(2),
                    backend: BackendId(10001),
                },
                "011a00000002000000000000001127000000000000",
            ),
            (
                Cmd::RecordReplicas {
                    reports: vec![ReplicaReport {
                        tablet: roster_membership::TabletId(100002),
                        backend: BackendId(10001),
                        bytes: 3,
                        checksum: 4,
                    }],
                },
                "01130000000100000000000000a2860100000000001127000000000000030000000000000004000000",
            ),
            (
                Cmd::fenced(Term(7), Cmd::FinishDecommissions),
                "011b000000070000000000000017000000",
            ),
            (
                Cmd::AddTaggedBackends {
                    addrs: vec![addr.clone()],
                    tags: Tags {
                        location: "g1".into(),
                        compute_group_name: Some("c".into()),
                        public_endpoint: None,
                        private_endpoint: None,
                    },
                },
                "011c00000001000000000000000100000000000000685a2302000000000000006731010100000000000000630000",
            ),
            (
                Cmd::ChangeBackends {
                    targets: vec![id.clone()],
                    changes: vec![
                        BackendChange::Location("g2".into()),
                        BackendChange::DisableQuery(true),
                        BackendChange::DisableLoad(false),
                        BackendChange::Draining(true),
                    ],
                },
                "011d000000010000000000000000000000112700000000000004000000000000000000000002000000000000006732010000000102000000000300000001",
            ),
            (
                Cmd::CreateTableSpec(TableSpec {
                    name: "t".into(),
                    if_not_exists: true,
                    columns: vec![("k".into(), "INT".into())],
                    hash_columns: vec!["k".into()],
                    buckets: 2,
                    allocation: ReplicaAllocation::default_tag(3),
                    fill_bytes_per_tablet: 5,
                }),
                "011e00000001000000000000007401010000000000000001000000000000006b0300000000000000494e54010000000000000001000000000000006b020000000100000000000000070000000000000064656661756c7403000000000000000500000000000000",
            ),
        ];
        for (cmd, want) in cases {
            let got = hex(&codec::encode(&cmd).unwrap());
            if std::env::var("PRINT_PINS").is_ok() {
                println!("PIN {got}");
                continue;
            }
            assert_eq!(got, want.replace(' ', ""), "encoding of {cmd:?} changed");
            assert_eq!(
                codec::decode::<Cmd>(&codec::encode(&cmd).unwrap()).unwrap(),
                cmd
            );
        }
        let req = Request {
            time_ms: 7,
            user: Some("u".into()),
            cmd: Cmd::Noop,
        };
        let got = hex(&codec::encode(&req).unwrap());
        if std::env::var("PRINT_PINS").is_ok() {
            println!("PIN {got}");
            return;
        }
        assert_eq!(
            got, "0107000000000000000101000000000000007500000000",
            "encoding of Request changed"
        );
    }
}
