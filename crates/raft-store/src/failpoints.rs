//! Test-only storage failpoints: the process crashes (abort, as a power cut or SIGKILL would
//! stop it) at a chosen point of the log or state-machine write path, so the Jepsen harness can
//! check that a restart recovers everything acknowledged. Built on the `fail` crate; without
//! the `failpoints` feature every point compiles to nothing and arming them is refused.
//!
//! Armed at start from `FAILPOINTS`, in the `fail` crate's syntax with `return` meaning crash,
//! e.g. `FAILPOINTS="raft-log-after-append=20%return"`.

/// Every failpoint there is, in write-path order.
pub const ALL: &[&str] = &[
    // The log writer, before its batch's commit.
    "raft-log-before-append",
    // The log writer, after the commit, before openraft hears of it.
    "raft-log-after-append",
    // The state machine, entries applied in memory, before their rows are committed.
    "raft-sm-before-apply",
    // The state machine, rows committed, before clients are answered.
    "raft-sm-after-apply",
    // A snapshot received, before it replaces the state.
    "raft-sm-before-install",
];

/// Crash here, now: the action of every armed failpoint.
pub fn crash(name: &str) -> ! {
    eprintln!("failpoint {name}: crashing on purpose (FAILPOINTS)");
    std::process::abort()
}

/// Arm the failpoints named in `spec` (`name=actions;name=actions`, see `fail::cfg`).
pub fn arm(spec: &str) -> Result<(), String> {
    for part in spec.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, actions) = part
            .split_once('=')
            .ok_or_else(|| format!("FAILPOINTS: {part:?} is not name=actions"))?;
        if !ALL.contains(&name) {
            return Err(format!(
                "FAILPOINTS: no failpoint {name:?} (there are: {})",
                ALL.join(", ")
            ));
        }
        if !cfg!(feature = "failpoints") {
            return Err(
                "FAILPOINTS needs a build with the failpoints feature (roster-faulty: cargo build --release --features bug-switches --bin roster-faulty)"
                    .into(),
            );
        }
        fail::cfg(name, actions).map_err(|e| format!("FAILPOINTS: {name}: {e}"))?;
    }
    Ok(())
}

/// Arm from the `FAILPOINTS` environment variable, if set.
pub fn arm_from_env() -> Result<Option<String>, String> {
    match std::env::var("FAILPOINTS") {
        Ok(spec) if !spec.trim().is_empty() => arm(&spec).map(|_| Some(spec)),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_specs_are_refused_with_their_reason() {
        assert!(arm("nope=return").unwrap_err().contains("no failpoint"));
        assert!(
            arm("raft-log-before-append")
                .unwrap_err()
                .contains("name=actions")
        );
        assert_eq!(arm(""), Ok(()));
    }
}
