//! The free-space alarm (etcd's NOSPACE, per FE): every second this FE looks at the space free
//! under its data_dir; below `min_free_disk_bytes` it refuses writes (the statements it is
//! given, and every proposal while it leads) until space is freed, and says so in
//! `/api/health` and its SHOW FRONTENDS ErrMsg. Replication to it goes on: refusing entries the
//! leader has committed would only stall it; a disk that does fill stops the FE (fail-stop).

use super::{FeNodeHandle, Inner};
use std::path::Path;
use std::sync::Weak;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Bytes free to unprivileged writers on the filesystem holding `dir`.
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(dir)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// The alarm's text for `free` bytes, or `None` when there is enough.
pub fn alarm(dir: &Path, free: u64, min: u64) -> Option<String> {
    (min > 0 && free < min).then(|| {
        format!(
            "low disk space: {free} bytes free under {}, below min_free_disk_bytes {min}; \
             this frontend refuses writes until space is freed",
            dir.display()
        )
    })
}

pub(super) async fn watch_loop(weak: Weak<Inner>, cancel: CancellationToken) {
    let mut tick = roster_scheduler::task::ticker(Duration::from_secs(1));
    while cancel.run_until_cancelled(tick.tick()).await.is_some() {
        let Some(inner) = weak.upgrade() else {
            continue;
        };
        let fe = FeNodeHandle { inner };
        fe.check_disk_space();
    }
}

impl FeNodeHandle {
    /// Look at the free space now and raise or clear the alarm.
    pub fn check_disk_space(&self) {
        let cfg = &self.inner.cfg;
        if cfg.min_free_disk_bytes == 0 {
            return;
        }
        let now = match free_bytes(&cfg.data_dir) {
            Ok(free) => alarm(&cfg.data_dir, free, cfg.min_free_disk_bytes),
            Err(e) => {
                tracing::warn!(
                    "cannot read the free space under {}: {e}",
                    cfg.data_dir.display()
                );
                return;
            }
        };
        let mut cur = self.inner.nospace.lock().expect("nospace lock");
        match (&*cur, &now) {
            (None, Some(m)) => tracing::error!("{m}"),
            (Some(_), None) => tracing::info!(
                "disk space under {} is back above min_free_disk_bytes; writes accepted again",
                cfg.data_dir.display()
            ),
            _ => {}
        }
        *cur = now;
    }

    /// The free-space alarm's text while it is raised.
    pub fn nospace(&self) -> Option<String> {
        self.inner.nospace.lock().expect("nospace lock").clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarm_below_the_threshold_only() {
        let d = Path::new("/data");
        assert!(
            alarm(d, 99, 100)
                .unwrap()
                .contains("99 bytes free under /data")
        );
        assert_eq!(alarm(d, 100, 100), None);
        assert_eq!(alarm(d, 0, 0), None, "0 turns the alarm off");
        assert!(free_bytes(Path::new("/")).unwrap() > 0);
    }
}
