//! The set checker: unique `add`s, then final reads of the whole set (from every node). Every
//! acknowledged add must be in every final read (nothing lost), every element read must come
//! from an add that was invoked and did not fail (nothing invented, nothing from a refused add).
//! Adds that ended `info` may be present or not.

use crate::history::{OpType, Pair, pairs};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetReport {
    pub acknowledged: usize,
    pub unknown: usize,
    pub final_reads: usize,
    /// Acknowledged adds missing from a final read, with the reader.
    pub lost: BTreeMap<String, Vec<String>>,
    /// Elements read that no add (other than a failed one) explains.
    pub unexpected: BTreeSet<String>,
    /// Elements of failed adds that were read.
    pub failed_but_present: BTreeSet<String>,
}

impl SetReport {
    pub fn valid(&self) -> bool {
        self.final_reads > 0
            && self.lost.is_empty()
            && self.unexpected.is_empty()
            && self.failed_but_present.is_empty()
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `add` ops carry the element as value; `read` ops (f = `read_set`) return an array; the
/// reader is named by the op's `node`.
pub fn check(ops: &[crate::history::Op]) -> anyhow::Result<SetReport> {
    let mut r = SetReport::default();
    let mut ok = BTreeSet::new();
    let mut maybe = BTreeSet::new();
    let mut failed = BTreeSet::new();
    let mut reads: Vec<(String, BTreeSet<String>)> = Vec::new();
    for Pair { invoke, complete } in pairs(ops)? {
        let kind = complete.map(|c| c.kind).unwrap_or(OpType::Info);
        match invoke.f.as_str() {
            "add" => {
                let e = text(&invoke.value);
                match kind {
                    OpType::Ok => ok.insert(e),
                    OpType::Fail => failed.insert(e),
                    _ => maybe.insert(e),
                };
            }
            "read_set" if kind == OpType::Ok => {
                let c = complete.expect("ok");
                let elems = c
                    .value
                    .as_array()
                    .ok_or_else(|| anyhow::anyhow!("read_set at {} is not an array", c.time))?
                    .iter()
                    .map(text)
                    .collect();
                let who = c
                    .node
                    .map(|n| format!("fe{n}"))
                    .unwrap_or_else(|| "?".into());
                reads.push((who, elems));
            }
            _ => {}
        }
    }
    r.acknowledged = ok.len();
    r.unknown = maybe.len();
    r.final_reads = reads.len();
    for (who, got) in &reads {
        for e in ok.difference(got) {
            r.lost.entry(e.clone()).or_default().push(who.clone());
        }
        for e in got {
            if failed.contains(e) {
                r.failed_but_present.insert(e.clone());
            } else if !ok.contains(e) && !maybe.contains(e) {
                r.unexpected.insert(e.clone());
            }
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Op, Process};
    use serde_json::json;

    fn rec(p: u64, kind: OpType, f: &str, value: Value, node: Option<u64>) -> Op {
        Op {
            process: Process::Client(p),
            kind,
            f: f.into(),
            key: Some("set".into()),
            value,
            time: 0,
            node,
            error: None,
        }
    }

    #[test]
    fn lost_invented_and_failed_elements_are_found() {
        let mut h = vec![
            rec(0, OpType::Invoke, "add", json!("a"), None),
            rec(0, OpType::Ok, "add", json!("a"), None),
            rec(1, OpType::Invoke, "add", json!("b"), None),
            rec(1, OpType::Info, "add", json!("b"), None),
            rec(2, OpType::Invoke, "add", json!("c"), None),
            rec(2, OpType::Fail, "add", json!("c"), None),
            rec(3, OpType::Invoke, "read_set", Value::Null, None),
            rec(3, OpType::Ok, "read_set", json!(["a"]), Some(1)),
            rec(4, OpType::Invoke, "read_set", Value::Null, None),
            rec(4, OpType::Ok, "read_set", json!(["a", "b"]), Some(2)),
        ];
        let r = check(&h).unwrap();
        assert!(r.valid(), "{r:?}");
        assert_eq!((r.acknowledged, r.unknown, r.final_reads), (1, 1, 2));
        h[7].value = json!(["b", "c", "z"]);
        let r = check(&h).unwrap();
        assert!(!r.valid());
        assert_eq!(r.lost["a"], vec!["fe1".to_string()]);
        assert!(r.unexpected.contains("z"));
        assert!(r.failed_but_present.contains("c"));
        // No final read at all proves nothing.
        assert!(!check(&h[..6]).unwrap().valid());
    }
}
