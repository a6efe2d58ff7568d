//! What a damaged or failing store reports: `Corruption` (a stored value that fails its check,
//! naming the file, table and key, and what the operator does about it), the opening error
//! that names the file and the cause, and `Fault`, the first storage failure of a running FE,
//! which stops it (fail-stop, as etcd stops on a WAL error).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// What to do about a damaged data dir; said with every corruption.
pub const REMEDY: &str = "this FE's data is damaged and it will not start on it: remove its \
    data_dir and start it again with the same config (it rejoins and receives a snapshot from \
    the leader), or ALTER SYSTEM DROP FOLLOWER it and ADD FOLLOWER a fresh FE";

/// A stored value that is not what was written.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: table {table}, key {key}: {detail}; {REMEDY}", file.display())]
pub struct Corruption {
    pub file: PathBuf,
    pub table: String,
    pub key: String,
    pub detail: String,
}

impl Corruption {
    pub fn new(file: &Path, table: &str, key: impl Into<String>, detail: impl ToString) -> Self {
        Corruption {
            file: file.to_path_buf(),
            table: table.to_string(),
            key: key.into(),
            detail: detail.to_string(),
        }
    }
}

impl From<Corruption> for io::Error {
    fn from(c: Corruption) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, c)
    }
}

/// An error's message with its causes, for errors whose `Display` leaves the cause out.
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let m = s.to_string();
        if !m.is_empty() && !out.contains(&m) {
            out.push_str(": ");
            out.push_str(&m);
        }
        src = s.source();
    }
    if out.trim_end().ends_with(':') || out.is_empty() {
        out.push_str(" (no cause given)");
    }
    out
}

/// An error while opening or checking `file`, naming it and the cause.
pub fn at_file(file: &Path, e: impl std::error::Error + 'static) -> io::Error {
    let kind = io_kind(&e);
    io::Error::new(kind, format!("{}: {}", file.display(), describe(&e)))
}

/// The OS error kind inside a redb error, so `ENOSPC` stays `StorageFull`.
fn io_kind(e: &(dyn std::error::Error + 'static)) -> io::ErrorKind {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<io::Error>() {
            return io.kind();
        }
        cur = c.source();
    }
    io::ErrorKind::Other
}

/// The first storage failure of a running FE. Once set it stays: the FE stops (see
/// `roster start`), and until it is gone `/api/health` and SHOW FRONTENDS give this reason.
#[derive(Debug, Default)]
pub struct Fault {
    first: OnceLock<String>,
    notify: tokio::sync::Notify,
}

impl Fault {
    pub fn new() -> Arc<Fault> {
        Arc::new(Fault::default())
    }

    /// Record `e` from `what` (the first one wins) and wake whoever waits in `wait`.
    pub fn report(&self, what: &str, e: &io::Error) {
        let msg = if e.to_string().contains(what) {
            e.to_string()
        } else {
            format!("{what}: {e}")
        };
        if self.first.set(msg.clone()).is_ok() {
            tracing::error!("storage fault, this FE stops: {msg}");
        }
        self.notify.notify_waiters();
    }

    pub fn get(&self) -> Option<&str> {
        self.first.get().map(String::as_str)
    }

    /// Returns the fault once there is one.
    pub async fn wait(&self) -> String {
        loop {
            let notified = self.notify.notified();
            if let Some(m) = self.get() {
                return m.to_string();
            }
            notified.await;
        }
    }
}

/// Run `f`, which reads or writes `file`, turning a panic into an error naming the file: redb
/// checks no checksums of its own pages, and may panic on a damaged one (an index out of
/// range) instead of returning an error. The FE then stops or refuses to start, saying why.
pub fn guarded<T>(file: &Path, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: the file is damaged (the storage engine failed on it: {msg}); {REMEDY}",
                    file.display()
                ),
            ))
        }
    }
}
