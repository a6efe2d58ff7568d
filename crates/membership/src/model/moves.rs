//! Replica moves: persisted, resumable procedures, make before break (the steps are in
//! `transition::moves`). This holds the records and the clone-time budget a move is given.

use crate::model::ids::{BackendId, MoveId, TabletId};
use crate::model::settings::Settings;
use serde::{Deserialize, Serialize};

/// Doris estimates a clone's duration at 5 MB/s; the timeout is clamped to the settings.
pub const ESTIMATED_CLONE_BYTES_PER_SEC: u64 = 5 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum MoveReason {
    /// A tablet has fewer counted replicas than its allocation.
    Repair,
    /// A replica on a DECOMMISSIONING backend is re-created elsewhere.
    Decommission,
    /// A replica moves from a loaded backend to an emptier one of its tag.
    Balance,
}

impl MoveReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            MoveReason::Repair => "REPAIR",
            MoveReason::Decommission => "DECOMMISSION",
            MoveReason::Balance => "BALANCE",
        }
    }
}

/// What the planner proposes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovePlan {
    pub tablet: TabletId,
    /// A backend holding a NORMAL replica to copy from.
    pub source: BackendId,
    pub dest: BackendId,
    /// The replica removed once the new one is NORMAL (None: a missing replica is added).
    pub replaces: Option<BackendId>,
    pub reason: MoveReason,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    pub id: MoveId,
    pub plan: MovePlan,
    /// Size and checksum of the source replica when the move started.
    pub bytes: u64,
    pub checksum: Option<u32>,
    pub started_ms: u64,
    pub timeout_ms: u64,
}

impl Move {
    pub fn deadline_ms(&self) -> u64 {
        self.started_ms.saturating_add(self.timeout_ms)
    }
}

/// The rate a clone is expected to reach: Doris's 5 MB/s estimate, or the per-stream limit
/// `clone_rate_limit_bytes_per_sec` when that is lower (a limited clone cannot go faster).
pub fn expected_clone_rate_bytes_per_sec(settings: &Settings) -> u64 {
    match settings.values().clone_rate_limit_bytes_per_sec {
        0 => ESTIMATED_CLONE_BYTES_PER_SEC,
        limit => limit.min(ESTIMATED_CLONE_BYTES_PER_SEC),
    }
}

/// How long a healthy clone of `bytes` may run before it shows as a blocker: its duration at
/// the expected rate, plus half again and 2 s for connecting and verifying the checksum.
pub fn expected_clone_ms(settings: &Settings, bytes: u64) -> u64 {
    let rate = expected_clone_rate_bytes_per_sec(settings);
    let ms = bytes.saturating_mul(1000) / rate;
    ms.saturating_add(ms / 2).saturating_add(2000)
}

/// The timeout of a clone of `bytes`: its duration at the expected rate, clamped to
/// [`min_clone_task_timeout_sec`, `max_clone_task_timeout_sec`].
pub fn clone_timeout_ms(settings: &Settings, bytes: u64) -> u64 {
    let min = settings.values().min_clone_task_timeout_sec;
    let max = settings.values().max_clone_task_timeout_sec.max(min);
    let estimate = bytes.div_ceil(expected_clone_rate_bytes_per_sec(settings));
    estimate.clamp(min, max).saturating_mul(1000)
}

/// How long a tablet waits after its `count`-th failed clone before the next try.
pub fn retry_backoff_ms(count: u32) -> u64 {
    1000u64 << count.min(6)
}
