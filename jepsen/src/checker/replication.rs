//! The promise of decommission, checked at every observation: every tablet of the watched table
//! has at least `rf` healthy replicas (NORMAL, on a backend the FE sees alive), and no tablet is
//! missing. Observations are the `ok` completions of `tablets` ops, whose value maps each
//! tablet id to its count of healthy replicas. Every observation is a linearizable read, so
//! each one is a committed state of the cluster.

use crate::history::{Op, OpType};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicationReport {
    pub observations: usize,
    /// The lowest healthy count seen for any tablet (`None` without observations).
    pub min_healthy: Option<u64>,
    /// One line per bad observation (the first few): when, from which FE, what was wrong.
    pub violations: Vec<String>,
    /// Bad observations in all.
    pub bad: usize,
}

impl ReplicationReport {
    pub fn valid(&self) -> bool {
        self.observations > 0 && self.bad == 0
    }
}

/// How many violations are described; the rest are counted.
const SHOWN: usize = 3;

pub fn check(ops: &[Op], rf: u64, tablets: usize) -> anyhow::Result<ReplicationReport> {
    let mut r = ReplicationReport::default();
    for op in ops
        .iter()
        .filter(|o| o.f == "tablets" && o.kind == OpType::Ok)
    {
        let seen: BTreeMap<String, u64> = serde_json::from_value(op.value.clone())
            .map_err(|e| anyhow::anyhow!("tablets at {} is not a map of counts: {e}", op.time))?;
        r.observations += 1;
        if let Some(m) = seen.values().min() {
            r.min_healthy = Some(r.min_healthy.map_or(*m, |x| x.min(*m)));
        }
        let under: Vec<String> = seen
            .iter()
            .filter(|(_, n)| **n < rf)
            .map(|(t, n)| format!("tablet {t} has {n}"))
            .collect();
        if under.is_empty() && seen.len() == tablets {
            continue;
        }
        r.bad += 1;
        if r.violations.len() < SHOWN {
            let mut what = under;
            if seen.len() != tablets {
                what.push(format!("{} tablets instead of {tablets}", seen.len()));
            }
            r.violations.push(format!(
                "at {:.3} s on fe{}: {}",
                op.time as f64 / 1e9,
                op.node.unwrap_or(0),
                what.join(", ")
            ));
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Process;
    use serde_json::json;

    fn obs(time: u64, counts: serde_json::Value) -> Op {
        Op {
            process: Process::Client(0),
            kind: OpType::Ok,
            f: "tablets".into(),
            key: Some("tablets".into()),
            value: counts,
            time,
            node: Some(2),
            error: None,
        }
    }

    #[test]
    fn every_observation_must_keep_the_replication_factor() {
        let good = obs(1, json!({"1": 3, "2": 4}));
        let r = check(std::slice::from_ref(&good), 3, 2).unwrap();
        assert!(r.valid(), "{r:?}");
        assert_eq!(r.min_healthy, Some(3));

        let under = obs(2_000_000_000, json!({"1": 3, "2": 2}));
        let r = check(&[good.clone(), under], 3, 2).unwrap();
        assert!(!r.valid());
        assert_eq!(r.bad, 1);
        assert_eq!(r.violations, vec!["at 2.000 s on fe2: tablet 2 has 2"]);

        // A tablet gone from the catalog is a violation too.
        let missing = obs(3, json!({"1": 3}));
        let r = check(&[missing], 3, 2).unwrap();
        assert!(r.violations[0].contains("1 tablets instead of 2"), "{r:?}");

        // Failed reads are not observations; no observation at all is not a pass.
        let mut failed = obs(4, json!(null));
        failed.kind = OpType::Fail;
        assert!(!check(&[failed], 3, 2).unwrap().valid());
    }
}
