//! `ROSTER_*` environment overrides reach a real `roster start` process: every documented kind
//! (root's password, a nested `[raft]` key with `__`, a top-level number), the flag still beats
//! the variable, a bad value is an error naming the key, and variables of other subcommands
//! (`ROSTER_PASSWORD`, `ROSTER_ENDPOINTS`) are ignored.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

fn shipped_fe1() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/fe1.toml")
}

/// `roster start --config config/fe1.toml --print-config [extra]` with exactly `vars` of the
/// `ROSTER_*` family set (the test's own environment may carry others).
fn print_config(vars: &[(&str, &str)], extra: &[&str]) -> Output {
    let mut cmd = Command::new(common::BIN);
    cmd.arg("start")
        .arg("--config")
        .arg(shipped_fe1())
        .arg("--print-config")
        // The shipped configs choose no transport: the tour passes --insecure or --certs-dir.
        .arg("--insecure")
        .args(extra);
    for (k, _) in std::env::vars() {
        if k.starts_with("ROSTER_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(vars.iter().copied());
    cmd.output().expect("run roster start --print-config")
}

fn merged(vars: &[(&str, &str)], extra: &[&str]) -> serde_json::Value {
    let out = print_config(vars, extra);
    assert!(
        out.status.success(),
        "roster start --print-config failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("--print-config prints JSON")
}

#[test]
fn environment_overrides_reach_roster_start() {
    let base = merged(&[], &[]);
    assert_eq!(
        base["root_password"], "",
        "fe1.toml ships without a password"
    );
    assert_eq!(base["raft"]["heartbeat_interval_ms"], 100);
    assert_eq!(base["read_timeout_ms"], 5000);

    let v = merged(
        &[
            ("ROSTER_ROOT_PASSWORD", "change-me"),
            ("ROSTER_RAFT__HEARTBEAT_INTERVAL_MS", "77"),
            ("ROSTER_READ_TIMEOUT_MS", "1234"),
            // Other subcommands' variables, set in the same shell by the README tour.
            ("ROSTER_PASSWORD", "change-me"),
            ("ROSTER_ENDPOINTS", "127.0.0.1:9020"),
        ],
        &[],
    );
    assert_eq!(v["root_password"], "<hidden>", "ROSTER_ROOT_PASSWORD: {v}");
    assert_eq!(
        v["raft"]["heartbeat_interval_ms"], 77,
        "nested raft key: {v}"
    );
    assert_eq!(v["read_timeout_ms"], 1234, "top-level number: {v}");
    // Untouched keys keep the file's values.
    assert_eq!(
        v["raft"]["election_timeout_min_ms"],
        base["raft"]["election_timeout_min_ms"]
    );

    // A flag beats the variable.
    let v = merged(
        &[("ROSTER_DATA_DIR", "/tmp/from-env")],
        &["--data-dir", "/tmp/from-flag"],
    );
    assert_eq!(v["data_dir"], "/tmp/from-flag");
    let v = merged(&[("ROSTER_DATA_DIR", "/tmp/from-env")], &[]);
    assert_eq!(v["data_dir"], "/tmp/from-env");
}

#[test]
fn a_bad_environment_value_is_an_error_naming_the_key() {
    let out = print_config(&[("ROSTER_RAFT__HEARTBEAT_INTERVAL_MS", "fast")], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(err.contains("heartbeat_interval_ms"), "{err}");
    // Validation runs on the merged result: election must stay above twice the heartbeat.
    let out = print_config(&[("ROSTER_RAFT__HEARTBEAT_INTERVAL_MS", "900")], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("more than twice"), "{err}");
}
