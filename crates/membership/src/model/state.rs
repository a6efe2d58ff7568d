//! The replicated cluster state: every table the state machine holds, in ordered maps.

use crate::model::backend::{Backend, HostPort, Tombstone};
use crate::model::blacklist::{BlacklistEntry, BlacklistKey};
use crate::model::catalog::Table;
use crate::model::ids::{BackendId, FIRST_CATALOG_ID, FrontendId, MoveId, TableId};
use crate::model::moves::Move;
use crate::model::settings::Settings;
use crate::model::tablets::TabletMap;
use crate::model::tracked::TrackedMap;
use crate::model::users::User;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Small singletons, persisted together under one key after every batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Next backend id to hand out; only grows, so ids are never reused.
    pub next_backend_id: u64,
    /// The latest leader-stamped time applied; entry times are clamped to never go back.
    pub clock_ms: u64,
    pub settings: Settings,
    /// Every frontend id that was ever a Raft member, so a removed id is never admitted again.
    pub frontends_ever: BTreeSet<FrontendId>,
    /// Next table or tablet id; only grows.
    pub next_catalog_id: u64,
    pub next_move_id: u64,
}

impl Default for Meta {
    fn default() -> Self {
        Meta {
            next_backend_id: BackendId::FIRST.0,
            clock_ms: 0,
            settings: Settings::default(),
            frontends_ever: BTreeSet::new(),
            next_catalog_id: FIRST_CATALOG_ID,
            next_move_id: 1,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    pub backends: TrackedMap<BackendId, Backend>,
    pub tombstones: TrackedMap<BackendId, Tombstone>,
    pub users: TrackedMap<String, User>,
    pub blacklist: TrackedMap<BlacklistKey, BlacklistEntry>,
    pub tables: TrackedMap<TableId, Table>,
    /// With the index of the tablets on each backend (`tablets`).
    pub tablets: TabletMap,
    /// Replica moves in flight.
    pub moves: TrackedMap<MoveId, Move>,
    pub meta: Meta,
}

impl ClusterState {
    /// Advance the state's clock to a leader-stamped entry time, never backwards; returns it.
    pub fn tick(&mut self, entry_time_ms: u64) -> u64 {
        self.meta.clock_ms = self.meta.clock_ms.max(entry_time_ms);
        self.meta.clock_ms
    }

    pub fn backend_by_addr(&self, addr: &HostPort) -> Option<&Backend> {
        self.backends.values().find(|b| &b.addr == addr)
    }

    /// Record the voters and learners of an applied Raft membership entry.
    pub fn note_frontends(&mut self, ids: impl IntoIterator<Item = FrontendId>) {
        self.meta.frontends_ever.extend(ids);
    }
}
