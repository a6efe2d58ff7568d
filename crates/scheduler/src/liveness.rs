//! The master's soft state about heartbeats, and the decision of what to record.
//! Complexity: O(backends) per round.

use roster_membership::model::liveness::{HeartbeatInfo, LivenessReport};
use roster_membership::{Backend, BackendId};
use std::collections::BTreeMap;

/// Refresh LastHeartbeat in the replicated state at least this often while nothing changes.
pub const REFRESH_LAST_HEARTBEAT_MS: u64 = 30_000;

#[derive(Debug, Clone, Default)]
struct Soft {
    consecutive_failures: u64,
    last_ok_ms: Option<u64>,
    last_info: Option<HeartbeatInfo>,
    last_err: String,
}

/// Lives as long as one term of leadership: a new master starts with no soft state.
#[derive(Debug, Default)]
pub struct Tracker {
    soft: BTreeMap<BackendId, Soft>,
}

/// Capacity numbers move all the time; record them only when they move by more than 1%.
fn capacity_moved(old: u64, new: u64) -> bool {
    old.abs_diff(new) > old.max(new) / 100
}

impl Tracker {
    /// Note one heartbeat's outcome.
    pub fn observe(&mut self, id: BackendId, now_ms: u64, result: Result<HeartbeatInfo, String>) {
        let s = self.soft.entry(id).or_default();
        match result {
            Ok(info) => {
                s.consecutive_failures = 0;
                s.last_ok_ms = Some(now_ms);
                s.last_info = Some(info);
                s.last_err.clear();
            }
            Err(e) => {
                s.consecutive_failures += 1;
                s.last_err = e;
            }
        }
    }

    /// Reports for the backends whose recorded liveness differs from what this master saw.
    /// A backend is dead after `tolerance` consecutive failures (at least 1).
    pub fn changes<'a>(
        &self,
        backends: impl Iterator<Item = &'a Backend>,
        tolerance: u64,
    ) -> Vec<LivenessReport> {
        let tolerance = tolerance.max(1);
        let mut out = Vec::new();
        for b in backends {
            let Some(s) = self.soft.get(&b.id) else {
                continue;
            };
            let alive = s.last_ok_ms.is_some() && s.consecutive_failures < tolerance;
            let l = &b.liveness;
            let info_changed = match (&s.last_info, l.last_start_time_ms) {
                (Some(i), recorded_start) => {
                    recorded_start != Some(i.start_time_ms)
                        || l.be_port != (i.be_port != 0).then_some(i.be_port)
                        || l.version != i.version
                        || capacity_moved(l.total_capacity_bytes, i.total_capacity_bytes)
                        || capacity_moved(l.avail_capacity_bytes, i.avail_capacity_bytes)
                        || capacity_moved(l.data_used_capacity_bytes, i.data_used_capacity_bytes)
                }
                (None, _) => false,
            };
            let stale_heartbeat = alive
                && s.last_ok_ms.is_some_and(|t| {
                    l.last_heartbeat_ms
                        .is_none_or(|r| t.saturating_sub(r) >= REFRESH_LAST_HEARTBEAT_MS)
                });
            // Counted up to the failure that makes the backend dead, not beyond: a dead
            // backend's counter would otherwise be a Raft entry per backend per round (1,000
            // dead backends were 60 entries/s); it starts again from 0 when it answers.
            let failures_changed = l.heartbeat_failure_counter != s.consecutive_failures
                // A 0 is always written: a counter recorded under a larger tolerance than now.
                && (l.heartbeat_failure_counter < tolerance || s.consecutive_failures == 0);
            if alive != l.alive || info_changed || stale_heartbeat || failures_changed {
                out.push(LivenessReport {
                    id: b.id,
                    alive,
                    last_heartbeat_ms: s.last_ok_ms,
                    failure_counter: s.consecutive_failures,
                    err_msg: if alive {
                        String::new()
                    } else {
                        s.last_err.clone()
                    },
                    info: s.last_info.clone(),
                });
            }
        }
        out
    }

    /// Forget backends that are gone from the registry.
    pub fn retain(&mut self, keep: impl Fn(&BackendId) -> bool) {
        self.soft.retain(|id, _| keep(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use roster_membership::{ClusterState, HostPort, transition};

    fn info(start: u64) -> HeartbeatInfo {
        HeartbeatInfo {
            be_port: 9060,
            version: "v".into(),
            start_time_ms: start,
            total_capacity_bytes: 1000,
            avail_capacity_bytes: 500,
            ..Default::default()
        }
    }

    #[test]
    fn records_changes_only() {
        let mut s = ClusterState::default();
        transition::registry::add_backends(
            &mut s,
            0,
            &[HostPort::new("a", 1), HostPort::new("b", 1)],
            &[],
        )
        .unwrap();
        let (a, b) = (BackendId(10001), BackendId(10002));
        let mut t = Tracker::default();
        // Unheard-of backends produce nothing; new and answering ones turn alive.
        t.observe(a, 1_000, Ok(info(7)));
        let r = t.changes(s.backends.values(), 1);
        assert_eq!(r.len(), 1);
        assert!(r[0].alive && r[0].info.as_ref().unwrap().start_time_ms == 7);
        transition::liveness::record(&mut s, 0, &r);
        // Nothing changed: nothing to record.
        t.observe(a, 2_000, Ok(info(7)));
        assert!(t.changes(s.backends.values(), 1).is_empty());
        // A restart (new start time) is recorded.
        t.observe(a, 3_000, Ok(info(8)));
        let r = t.changes(s.backends.values(), 1);
        assert_eq!(r[0].info.as_ref().unwrap().start_time_ms, 8);
        transition::liveness::record(&mut s, 0, &r);
        // With tolerance 2, one failure keeps it alive (only the counter changes); two kill it.
        t.observe(a, 4_000, Err("refused".into()));
        let r = t.changes(s.backends.values(), 2);
        assert!(r[0].alive && r[0].failure_counter == 1);
        transition::liveness::record(&mut s, 0, &r);
        t.observe(a, 5_000, Err("refused".into()));
        let r = t.changes(s.backends.values(), 2);
        assert!(!r[0].alive && r[0].err_msg == "refused");
        transition::liveness::record(&mut s, 0, &r);
        // Dead: further failures write nothing (no entry per dead backend per round).
        for at in [6_000, 7_000] {
            t.observe(a, at, Err("refused".into()));
            assert!(t.changes(s.backends.values(), 2).is_empty());
        }
        // Back: alive, the counter from 0.
        t.observe(a, 8_000, Ok(info(8)));
        let r = t.changes(s.backends.values(), 2);
        assert!(r[0].alive && r[0].failure_counter == 0);
        transition::liveness::record(&mut s, 0, &r);
        // A backend that never answered stays not alive, with its error.
        t.observe(b, 5_000, Err("timeout".into()));
        let r = t.changes(s.backends.values(), 1);
        assert_eq!(r.len(), 1);
        assert!(!r[0].alive && r[0].id == b);
        // LastHeartbeat is refreshed after a while even when nothing else changes.
        let mut t2 = Tracker::default();
        let mut s2 = ClusterState::default();
        transition::registry::add_backends(&mut s2, 0, &[HostPort::new("c", 1)], &[]).unwrap();
        t2.observe(BackendId(10001), 1_000, Ok(info(1)));
        let r = t2.changes(s2.backends.values(), 1);
        transition::liveness::record(&mut s2, 0, &r);
        t2.observe(BackendId(10001), 2_000, Ok(info(1)));
        assert!(t2.changes(s2.backends.values(), 1).is_empty());
        t2.observe(
            BackendId(10001),
            1_000 + REFRESH_LAST_HEARTBEAT_MS,
            Ok(info(1)),
        );
        assert_eq!(t2.changes(s2.backends.values(), 1).len(), 1);
    }
}
