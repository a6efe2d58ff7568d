//! Issue 7, point 3: a run leaves no namespace, nftables rule, process or mount behind, also
//! when it is interrupted: SIGINT mid-run tears down at once; after SIGKILL of the harness its
//! FEs die with it (PR_SET_PDEATHSIG) and `roster-jepsen cleanup` removes the namespaces.
//! Needs root (network namespaces), like every run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn roster_bin() -> PathBuf {
    // target/debug/deps/teardown-... -> target/debug/roster
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("roster")
}

fn namespaces(prefix: &str) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// Processes whose command line mentions `needle` (the run's store directory).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) && !cmd.contains("roster-jepsen") {
                found.push(format!("{name}: {cmd}"));
            }
        }
    }
    found
}

fn start_run(store: &Path, scenario: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_roster-jepsen"))
        .args(["run", scenario, "--bin"])
        .arg(roster_bin())
        .arg("--store")
        .arg(store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("roster-jepsen")
}

/// Wait until the run is under way: its namespaces exist and `procs` processes (FEs and
/// agents) run.
fn wait_running(child: &Child, store: &Path, procs: usize) -> String {
    let prefix = format!("jt{}_", child.id());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let running = processes_mentioning(&store.display().to_string());
        if namespaces(&prefix).len() >= 4 && running.len() >= procs {
            return prefix;
        }
        assert!(Instant::now() < deadline, "the run never got going");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn wait_exit(child: &mut Child, within: Duration) {
    let deadline = Instant::now() + within;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the harness did not exit");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_gone(what: &str, within: Duration, mut left: impl FnMut() -> Vec<String>) {
    let deadline = Instant::now() + within;
    loop {
        let l = left();
        if l.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "{what} left behind: {l:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn interrupted_runs_leave_nothing_behind() {
    let store = tempfile_dir();

    // SIGINT: the harness tears down by itself (a run with the Raft-link proxies, whose
    // threads live in the FEs' namespaces, and their nftables redirects).
    let mut run = start_run(&store, "register-slow-links");
    let prefix = wait_running(&run, &store, 3);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(run.id() as i32, libc::SIGINT) };
    wait_exit(&mut run, Duration::from_secs(60));
    assert!(namespaces(&prefix).is_empty(), "{:?}", namespaces(&prefix));
    wait_gone("processes", Duration::from_secs(5), || {
        processes_mentioning(&store.display().to_string())
    });

    // SIGKILL: the FEs and the backend agents die with the harness; cleanup removes the
    // namespaces.
    let mut run = start_run(&store, "decommission-tablets");
    let prefix = wait_running(&run, &store, 3 + 6);
    run.kill().unwrap();
    run.wait().unwrap();
    wait_gone("processes", Duration::from_secs(10), || {
        processes_mentioning(&store.display().to_string())
    });
    let out = Command::new(env!("CARGO_BIN_EXE_roster-jepsen"))
        .arg("cleanup")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(namespaces(&prefix).is_empty(), "{:?}", namespaces(&prefix));
    // No mount of a namespace file is left either.
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(
        !mounts.contains(&prefix),
        "a netns mount was left: {mounts}"
    );
    std::fs::remove_dir_all(&store).unwrap();
}

fn tempfile_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("jepsen-teardown-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
