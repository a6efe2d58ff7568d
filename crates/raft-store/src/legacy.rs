//! The shapes of stored values before they grew (format 1), read when a data directory or a
//! snapshot written by an older FE is loaded. Never written.

use roster_membership::model::backend::{
    Backend, BackendMembership, DrainProgress, HostPort, Liveness, Tags, Tombstone,
};
use roster_membership::model::blacklist::{BlacklistEntry, BlacklistKey};
use roster_membership::model::catalog::{Table, Tablet};
use roster_membership::model::moves::Move;
use roster_membership::model::state::Meta;
use roster_membership::model::tracked::TrackedMap;
use roster_membership::model::users::User;
use roster_membership::{BackendId, ClusterState, MoveId, TableId, TabletId};
use serde::{Deserialize, Serialize};

/// A tombstone before it kept its decommission: such a backend reads as removed by DROPP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TombstoneV1 {
    pub id: BackendId,
    pub addr: HostPort,
    pub dropped_at_ms: u64,
}

impl From<TombstoneV1> for Tombstone {
    fn from(t: TombstoneV1) -> Tombstone {
        Tombstone {
            id: t.id,
            addr: t.addr,
            dropped_at_ms: t.dropped_at_ms,
            decommission: None,
        }
    }
}

/// A backend before it could be drained (`roster node drain`): it reads as not drained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendV1 {
    pub id: BackendId,
    pub addr: HostPort,
    pub tags: Tags,
    pub membership: BackendMembership,
    pub disable_query: bool,
    pub disable_load: bool,
    pub added_at_ms: u64,
    pub decommission_started_ms: Option<u64>,
    pub drain: DrainProgress,
    pub liveness: Liveness,
}

impl From<BackendV1> for Backend {
    fn from(b: BackendV1) -> Backend {
        Backend {
            id: b.id,
            addr: b.addr,
            tags: b.tags,
            membership: b.membership,
            disable_query: b.disable_query,
            disable_load: b.disable_load,
            added_at_ms: b.added_at_ms,
            decommission_started_ms: b.decommission_started_ms,
            drain: b.drain,
            liveness: b.liveness,
            draining: None,
        }
    }
}

/// `ClusterState` as format 1 wrote it: the same fields in the same order, old backends and
/// tombstones.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClusterStateV1 {
    pub backends: TrackedMap<BackendId, BackendV1>,
    pub tombstones: TrackedMap<BackendId, TombstoneV1>,
    pub users: TrackedMap<String, User>,
    pub blacklist: TrackedMap<BlacklistKey, BlacklistEntry>,
    pub tables: TrackedMap<TableId, Table>,
    pub tablets: TrackedMap<TabletId, Tablet>,
    pub moves: TrackedMap<MoveId, Move>,
    pub meta: Meta,
}

impl From<ClusterStateV1> for ClusterState {
    fn from(s: ClusterStateV1) -> ClusterState {
        let tombstones = s
            .tombstones
            .iter()
            .map(|(id, t)| (*id, Tombstone::from(t.clone())))
            .collect();
        let backends = s
            .backends
            .iter()
            .map(|(id, b)| (*id, Backend::from(b.clone())))
            .collect();
        ClusterState {
            backends: TrackedMap::from_clean(backends),
            tombstones: TrackedMap::from_clean(tombstones),
            users: s.users,
            blacklist: s.blacklist,
            tables: s.tables,
            tablets: s.tablets.into(),
            moves: s.moves,
            meta: s.meta,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;
    use roster_membership::model::backend::FinishedDecommission;

    /// A tombstone row exactly as format 1 stored it (id 10001, "h:9050", dropped at 7).
    const V1_ROW: &str = "0111270000000000000100000000000000685a230700000000000000";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn old() -> TombstoneV1 {
        TombstoneV1 {
            id: BackendId(10001),
            addr: HostPort::new("h", 9050),
            dropped_at_ms: 7,
        }
    }

    #[test]
    fn format_1_tombstone_rows_read_as_dropped_without_a_decommission() {
        assert_eq!(
            codec::encode(&old()).unwrap(),
            unhex(V1_ROW),
            "the pinned row"
        );
        let t: Tombstone = codec::decode_v2::<Tombstone, TombstoneV1>(&unhex(V1_ROW)).unwrap();
        assert_eq!(t, Tombstone::from(old()));
        let grown = Tombstone {
            decommission: Some(FinishedDecommission {
                started_ms: Some(3),
                drain: DrainProgress {
                    tablets_moved: 2,
                    bytes_moved: 9,
                    ..Default::default()
                },
            }),
            ..t
        };
        let bytes = codec::encode_v2(&grown).unwrap();
        assert_eq!(
            codec::decode_v2::<Tombstone, TombstoneV1>(&bytes).unwrap(),
            grown
        );
        assert!(
            codec::decode::<Tombstone>(&bytes).is_err(),
            "format 2 is never read as format 1"
        );
    }

    #[test]
    fn format_1_snapshots_read_with_their_tombstones() {
        let mut v1 = ClusterStateV1::default();
        // Without tombstones the old shape is the current one, byte for byte.
        assert_eq!(
            codec::encode(&v1).unwrap(),
            codec::encode(&ClusterState::default()).unwrap()
        );
        v1.tombstones.insert(BackendId(10001), old());
        v1.meta.next_backend_id = 10002;
        let blob = codec::encode(&v1).unwrap();
        let s: ClusterState = codec::decode_v2::<ClusterState, ClusterStateV1>(&blob).unwrap();
        assert_eq!(
            s.tombstones.get(&BackendId(10001)),
            Some(&Tombstone::from(old()))
        );
        assert_eq!(s.meta.next_backend_id, 10002);
    }

    #[test]
    fn format_1_backend_rows_and_snapshots_read_as_not_drained() {
        let old = BackendV1 {
            id: BackendId(10001),
            addr: HostPort::new("h", 9050),
            tags: Tags::default(),
            membership: BackendMembership::Active,
            disable_query: true,
            disable_load: false,
            added_at_ms: 5,
            decommission_started_ms: None,
            drain: DrainProgress::default(),
            liveness: Liveness::default(),
        };
        let row = codec::encode(&old).unwrap();
        let b: Backend = codec::decode_v2::<Backend, BackendV1>(&row).unwrap();
        assert_eq!(b, Backend::from(old.clone()));
        assert_eq!(b.draining, None);
        assert!(b.disable_query, "the operator's flag is kept");
        let mut v1 = ClusterStateV1::default();
        v1.backends.insert(BackendId(10001), old);
        let blob = codec::encode(&v1).unwrap();
        let s: ClusterState = codec::decode_v2::<ClusterState, ClusterStateV1>(&blob).unwrap();
        assert_eq!(s.backends.get(&BackendId(10001)), Some(&b));
    }
}
