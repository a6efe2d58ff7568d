//! Per-FE backend blacklist entries (SPEC section 5), keyed by (frontend, backend) in the
//! replicated state: every FE can show every list, but an entry of FE A never changes FE B's
//! routing. MANUAL entries stay until deleted or until the backend is dropped; AUTO entries come
//! from an FE's own failed connections (the rules are in `query::blacklist`).

use crate::model::ids::{BackendId, FrontendId};
use serde::{Deserialize, Serialize};

/// At most this many failure times are kept per entry (StarRocks caps its history at 1000).
pub const MAX_HISTORY: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlacklistKind {
    Manual,
    Auto,
}

impl BlacklistKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            BlacklistKind::Manual => "MANUAL",
            BlacklistKind::Auto => "AUTO",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlacklistEntry {
    pub frontend: FrontendId,
    pub backend: BackendId,
    pub kind: BlacklistKind,
    /// Leader-stamped time the entry was added (for AUTO: the first failed connection).
    pub added_ms: u64,
    /// Leader-stamped times of this FE's failed connections to the backend, oldest first, pruned
    /// to the window at each record.
    pub failures: Vec<u64>,
    /// What the last failed connection said (empty for a MANUAL entry without failures).
    pub last_failure: String,
}

impl BlacklistEntry {
    /// Failures within the last `window_ms` before `now_ms`.
    pub fn failures_within(&self, now_ms: u64, window_ms: u64) -> usize {
        let since = now_ms.saturating_sub(window_ms);
        self.failures.iter().filter(|t| **t > since).count()
    }
}

pub type BlacklistKey = (FrontendId, BackendId);
