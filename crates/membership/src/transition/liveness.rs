//! Recording liveness reports: the changes of alive/dead, restarts, ports and capacity that the
//! master's heartbeats found.

use crate::model::ids::BackendId;
use crate::model::liveness::LivenessReport;
use crate::model::state::ClusterState;

/// Record reports; backends dropped meanwhile are skipped. Returns the backends changed.
pub fn record(state: &mut ClusterState, now_ms: u64, reports: &[LivenessReport]) -> Vec<BackendId> {
    let mut changed = Vec::new();
    for r in reports {
        let Some(b) = state.backends.get_mut(&r.id) else {
            continue;
        };
        let l = &mut b.liveness;
        if r.alive {
            l.dead_since_ms = None;
        } else {
            l.dead_since_ms.get_or_insert(now_ms);
        }
        l.alive = r.alive;
        if r.last_heartbeat_ms.is_some() {
            l.last_heartbeat_ms = r.last_heartbeat_ms;
        }
        l.heartbeat_failure_counter = r.failure_counter;
        l.err_msg = r.err_msg.clone();
        if let Some(i) = &r.info {
            // Port 0 means the agent does not serve that port.
            l.be_port = (i.be_port != 0).then_some(i.be_port);
            l.http_port = (i.http_port != 0).then_some(i.http_port);
            l.brpc_port = (i.brpc_port != 0).then_some(i.brpc_port);
            l.version = i.version.clone();
            l.last_start_time_ms = Some(i.start_time_ms);
            l.total_capacity_bytes = i.total_capacity_bytes;
            l.avail_capacity_bytes = i.avail_capacity_bytes;
            l.data_used_capacity_bytes = i.data_used_capacity_bytes;
        }
        changed.push(r.id);
    }
    changed
}
