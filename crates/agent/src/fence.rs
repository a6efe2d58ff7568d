//! The agent's clone fence: what the newest master told it in heartbeats (its Raft term and
//! the cluster's backends), and the check of a `CloneReplica` against it. An agent dials a
//! clone's source only if the master of the newest term it has heard named that address, and
//! only for a task of that term or a newer one: an old master's task (a deposed leader's) and
//! a made-up address are refused, so the agent cannot be made to dial anywhere.

use std::collections::BTreeSet;

/// The newest master's word, from its heartbeats.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fence {
    term: u64,
    /// `host:be_port` of every registered backend.
    sources: BTreeSet<String>,
    heard: bool,
}

/// Why a clone task was refused (answered as FAILED_PRECONDITION).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    #[error(
        "no master has heartbeated this agent yet: it clones only from backends a master named"
    )]
    NoMasterYet,
    #[error(
        "clone task of term {task} is stale: the master of term {newest} heartbeats this agent (a deposed master's task)"
    )]
    StaleTerm { task: u64, newest: u64 },
    #[error(
        "clone source {addr} is not a backend of this cluster as the master of term {term} named them"
    )]
    UnknownSource { addr: String, term: u64 },
}

impl Fence {
    /// A heartbeat's fence: kept if its term is the newest heard (the same term may update
    /// the list: backends are added and dropped within a term); an older one is ignored.
    /// Returns whether it was kept.
    pub fn observe(&mut self, term: u64, backends: &[String]) -> bool {
        if self.heard && term < self.term {
            return false;
        }
        self.term = term;
        self.sources = backends.iter().cloned().collect();
        self.heard = true;
        true
    }

    /// May a task of `task_term` clone from `source`? A newer task term than heard is fine (a
    /// new master's task can come before its first heartbeat); its source must still be one
    /// the newest heartbeat named.
    pub fn check(&self, task_term: u64, source: &str) -> Result<(), Refusal> {
        if !self.heard {
            return Err(Refusal::NoMasterYet);
        }
        if task_term < self.term {
            return Err(Refusal::StaleTerm {
                task: task_term,
                newest: self.term,
            });
        }
        if !self.sources.contains(source) {
            return Err(Refusal::UnknownSource {
                addr: source.to_string(),
                term: self.term,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn newest_term_wins_and_fences_tasks() {
        let mut f = Fence::default();
        assert_eq!(f.check(1, "a:1"), Err(Refusal::NoMasterYet));
        assert!(f.observe(3, &list(&["a:1", "b:1"])));
        assert_eq!(f.check(3, "a:1"), Ok(()));
        assert_eq!(f.check(4, "b:1"), Ok(()));
        assert_eq!(
            f.check(2, "a:1"),
            Err(Refusal::StaleTerm { task: 2, newest: 3 })
        );
        assert_eq!(
            f.check(3, "evil:1"),
            Err(Refusal::UnknownSource {
                addr: "evil:1".into(),
                term: 3
            })
        );
        // A deposed master's heartbeat does not bring its list back.
        assert!(!f.observe(2, &list(&["evil:1"])));
        assert!(f.check(3, "evil:1").is_err());
        // The same term updates the list (a backend dropped).
        assert!(f.observe(3, &list(&["a:1"])));
        assert!(f.check(3, "b:1").is_err());
        assert!(f.observe(5, &list(&["b:1"])));
        assert!(f.check(4, "b:1").is_err());
        assert_eq!(f.check(5, "b:1"), Ok(()));
    }
}
