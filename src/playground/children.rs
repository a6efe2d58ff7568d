//! The playground's nodes (and `roster bench quorum`'s servers) as child processes: started so
//! that they die with the playground, their output relayed with the node's name in front, their
//! exits reported.

use anyhow::Context;
use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

/// How long a node may take to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A node that ended, and how (`exit status: 1`, `signal: 9 (SIGKILL)`).
pub struct Exit {
    pub name: String,
    pub pid: u32,
    pub how: String,
}

/// Exits waiting to be read: more than the playground's children (3 FEs, 4 agents).
const EXIT_QUEUE: usize = 16;

pub struct Children {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    exits_tx: mpsc::Sender<Exit>,
    exits: mpsc::Receiver<Exit>,
}

impl Children {
    pub fn new() -> Children {
        // Each child sends one exit; a full queue only makes a supervisor wait for the reader.
        let (exits_tx, exits) = mpsc::channel(EXIT_QUEUE);
        Children {
            stop: watch::channel(false).0,
            tasks: JoinSet::new(),
            exits_tx,
            exits,
        }
    }

    /// Run `roster <args>` as node `name`; returns its pid. Must be called on the playground's
    /// main thread (see `die_with_parent`).
    pub fn spawn(&mut self, name: &str, args: &[OsString]) -> anyhow::Result<u32> {
        let exe = std::env::current_exe().context("finding the roster executable")?;
        self.spawn_program(name, &exe, args, &[])
    }

    /// Run `program <args>` (with `envs` added to this process's environment) as node `name`;
    /// returns its pid. `roster bench quorum` runs etcd members this way. Main thread only.
    pub fn spawn_program(
        &mut self,
        name: &str,
        program: &Path,
        args: &[OsString],
        envs: &[(&str, &str)],
    ) -> anyhow::Result<u32> {
        debug_assert_eq!(std::thread::current().name(), Some("main"));
        let mut cmd = Command::new(program);
        cmd.args(args)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Also on every early return of the playground: dropping the task drops the child.
            .kill_on_drop(true);
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        let pid = child.id().context("a just-started child has a pid")?;
        if let Some(out) = child.stdout.take() {
            self.tasks.spawn(relay(name.to_string(), out));
        }
        if let Some(err) = child.stderr.take() {
            self.tasks.spawn(relay(name.to_string(), err));
        }
        self.tasks.spawn(supervise(
            Exit {
                name: name.to_string(),
                pid,
                how: String::new(),
            },
            child,
            self.stop.subscribe(),
            self.exits_tx.clone(),
        ));
        Ok(pid)
    }

    /// The next node to end.
    pub async fn next_exit(&mut self) -> Exit {
        match self.exits.recv().await {
            Some(e) => e,
            // Unreachable: `self` holds a sender.
            None => std::future::pending().await,
        }
    }

    /// SIGTERM every node still running, SIGKILL those still there after `STOP_GRACE`, and
    /// wait until all have ended and their output is relayed.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

/// The child gets SIGKILL when the playground dies, however it dies (SIGKILL included):
/// Linux's PR_SET_PDEATHSIG, as jepsen/src/db.rs does for its FEs. The signal follows the
/// *thread* that forked, so nodes are started from the main thread, which lives as long as the
/// process. A child whose playground died before the prctl sees another parent and gives up.
fn die_with_parent(cmd: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: between fork and exec only async-signal-safe calls (prctl, getppid) and no
    // allocation.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Wait for the child to end, or stop it when told to; then report how it ended.
async fn supervise(
    mut exit: Exit,
    mut child: Child,
    mut stop: watch::Receiver<bool>,
    exits: mpsc::Sender<Exit>,
) {
    let status = tokio::select! {
        s = child.wait() => s,
        _ = stop.changed() => {
            // SAFETY: a plain kill(2). The child is not reaped yet (wait() has not returned),
            // so the pid is still this child's.
            unsafe { libc::kill(exit.pid as libc::pid_t, libc::SIGTERM) };
            match tokio::time::timeout(STOP_GRACE, child.wait()).await {
                Ok(s) => s,
                Err(_) => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            }
        }
    };
    exit.how = match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("unknown ({e})"),
    };
    let _ = exits.send(exit).await;
}

/// Copy a child's output to this process's stderr, each line prefixed with the node's name.
/// Relaying (rather than a name field in the child's tracing) also labels what the child writes
/// outside tracing: a start-up error, a panic. One write per line under the stderr lock, so
/// lines of different nodes never interleave.
async fn relay(name: String, from: impl AsyncRead + Unpin) {
    let mut from = BufReader::new(from);
    let mut line = Vec::new();
    loop {
        line.clear();
        match from.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if line.last() != Some(&b'\n') {
                    line.push(b'\n');
                }
                let mut out = Vec::with_capacity(name.len() + 3 + line.len());
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b" | ");
                out.extend_from_slice(&line);
                // Keep reading even when stderr is gone: a child blocked on a full pipe would
                // stop serving.
                let _ = std::io::stderr().lock().write_all(&out);
            }
        }
    }
}
