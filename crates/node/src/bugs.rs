//! Test-only bug switches: deliberately broken behaviour that the Jepsen checkers must catch,
//! so we know they are not vacuous. Compiled only with the `bug-switches` feature (the
//! `roster-faulty` binary turns it on); chosen at start with `ROSTER_BUG=<name>`.

/// Every switch there is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bug {
    /// Serve reads from local state without a read index: stale reads on a deposed leader or a
    /// partitioned follower.
    StaleLocalRead,
    /// SHOW BACKEND BLACKLIST on an FE lists every FE's entries as its own.
    BlacklistGlobal,
    /// DECOMMISSION answers that it changed every backend named, even one it found already
    /// DECOMMISSIONING: an intent seemingly carried out twice.
    DecommissionTwice,
    /// The leader acknowledges ADD BACKEND and MODIFY BACKEND as soon as it has handed the
    /// entry to Raft, before it is committed: a leader killed or deposed then loses
    /// acknowledged writes, and a read right after the acknowledgement may miss the write.
    AckBeforeCommit,
    /// The master finishes a decommission without waiting for the backend's replicas to be
    /// copied elsewhere: it drops the draining backend at once, replicas and all.
    DecommissionNoRfCheck,
    /// The log and the state machine never make a commit durable: killing an FE loses what it
    /// wrote since it started, acknowledged entries included, as a power failure loses writes
    /// never fsynced.
    SkipFsync,
}

impl Bug {
    pub const ALL: &[Bug] = &[
        Bug::StaleLocalRead,
        Bug::BlacklistGlobal,
        Bug::DecommissionTwice,
        Bug::AckBeforeCommit,
        Bug::DecommissionNoRfCheck,
        Bug::SkipFsync,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Bug::StaleLocalRead => "stale-local-read",
            Bug::BlacklistGlobal => "blacklist-global",
            Bug::DecommissionTwice => "decommission-twice",
            Bug::AckBeforeCommit => "ack-before-commit",
            Bug::DecommissionNoRfCheck => "decommission-no-rf-check",
            Bug::SkipFsync => "skip-fsync",
        }
    }
}

fn parse(v: &str) -> Result<Option<Bug>, String> {
    if v.is_empty() {
        return Ok(None);
    }
    Bug::ALL
        .iter()
        .find(|b| b.name() == v)
        .copied()
        .map(Some)
        .ok_or_else(|| {
            format!(
                "ROSTER_BUG={v:?} is not a bug switch (there are: {})",
                Bug::ALL
                    .iter()
                    .map(Bug::name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

/// The switch of this process, checked once at start: a switch asked of a build without the
/// feature is an error, so a test cannot silently run without its bug.
pub fn from_env() -> Result<Option<Bug>, String> {
    let v = std::env::var("ROSTER_BUG").unwrap_or_default();
    let bug = parse(&v)?;
    if bug.is_some() && !cfg!(feature = "bug-switches") {
        return Err(format!(
            "ROSTER_BUG={v} needs a build with the bug-switches feature (roster-faulty: cargo build --release --features bug-switches --bin roster-faulty)"
        ));
    }
    Ok(bug)
}

/// Whether `bug` is on in this process.
pub fn on(bug: Bug) -> bool {
    #[cfg(feature = "bug-switches")]
    {
        static ON: std::sync::OnceLock<Option<Bug>> = std::sync::OnceLock::new();
        *ON.get_or_init(|| from_env().ok().flatten()) == Some(bug)
    }
    #[cfg(not(feature = "bug-switches"))]
    {
        let _ = bug;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse() {
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("stale-local-read"), Ok(Some(Bug::StaleLocalRead)));
        assert!(parse("nope").unwrap_err().contains("stale-local-read"));
    }
}
