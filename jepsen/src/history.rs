//! The history of a run, as Jepsen records it: every client operation is an invocation followed
//! by its completion from the same process (`ok`: it happened, `fail`: it certainly did not,
//! `info`: unknown), nemesis actions are `info` records of process "nemesis", and every time
//! comes from one monotonic clock (nanoseconds since the run began).
//!
//! Written as JSONL, one record per line, in the shape of reference/jepsen.md section 4
//! (`process, type, f, key, value, time`, plus `node` and `error` when known), and exported as
//! Jepsen EDN (`{:process 0, :type :ok, :f :write, :value [k v], :time t, :index i}`, keys as
//! `independent` tuples) so that Knossos, Elle or Porcupine can re-check a verdict.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt::Write as _;
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Who did it: a client process (sequential; retired after an `info`) or the nemesis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Process {
    Client(u64),
    Nemesis,
}

impl Serialize for Process {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Process::Client(n) => s.serialize_u64(*n),
            Process::Nemesis => s.serialize_str("nemesis"),
        }
    }
}

impl<'de> Deserialize<'de> for Process {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Number(n) => n
                .as_u64()
                .map(Process::Client)
                .ok_or_else(|| serde::de::Error::custom("process must be a non-negative integer")),
            Value::String(s) if s == "nemesis" => Ok(Process::Nemesis),
            other => Err(serde::de::Error::custom(format!(
                "process must be an integer or \"nemesis\", not {other}"
            ))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    Invoke,
    Ok,
    Fail,
    Info,
}

impl OpType {
    fn as_str(&self) -> &'static str {
        match self {
            OpType::Invoke => "invoke",
            OpType::Ok => "ok",
            OpType::Fail => "fail",
            OpType::Info => "info",
        }
    }
}

/// One record of the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Op {
    pub process: Process,
    #[serde(rename = "type")]
    pub kind: OpType,
    /// `read`, `write`, `cas`, `add`, ... or the nemesis action.
    pub f: String,
    /// The object the operation is on (`null` for whole-system operations).
    pub key: Option<String>,
    /// For `cas`: `[expected, new]`; for reads, `null` on invocation and the value read on `ok`.
    pub value: Value,
    /// Nanoseconds since the run began, from one monotonic clock.
    pub time: u64,
    /// The FE that answered, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A shared, append-only history with its clock.
#[derive(Clone)]
pub struct Recorder {
    start: Instant,
    ops: Arc<Mutex<Vec<Op>>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub fn new() -> Self {
        Recorder {
            start: Instant::now(),
            ops: Arc::new(Mutex::new(Vec::new())),
        }
    }

    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Append `op`, stamped now.
    pub fn record(&self, mut op: Op) -> Op {
        let mut ops = self.ops.lock().expect("history lock");
        // Stamped under the lock, so the history is in time order.
        op.time = self.now();
        ops.push(op.clone());
        op
    }

    /// A nemesis action (an `info` of process "nemesis").
    pub fn nemesis(&self, f: &str, value: Value) {
        self.record(Op {
            process: Process::Nemesis,
            kind: OpType::Info,
            f: f.to_string(),
            key: None,
            value,
            time: 0,
            node: None,
            error: None,
        });
    }

    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().expect("history lock").clone()
    }
}

pub fn write_jsonl(ops: &[Op], path: &Path) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for op in ops {
        serde_json::to_writer(&mut f, op)?;
        f.write_all(b"\n")?;
    }
    f.flush()
}

pub fn read_jsonl(path: &Path) -> anyhow::Result<Vec<Op>> {
    let f = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut ops = Vec::new();
    for (i, line) in f.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        ops.push(
            serde_json::from_str(&line)
                .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), i + 1))?,
        );
    }
    Ok(ops)
}

fn edn_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn edn_value(v: &Value) -> String {
    match v {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => edn_string(s),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(edn_value).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!(":{k} {}", edn_value(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// One op as a Jepsen EDN map; keyed values become `independent` tuples `[k v]`.
pub fn to_edn(op: &Op, index: usize) -> String {
    let process = match op.process {
        Process::Client(n) => n.to_string(),
        Process::Nemesis => ":nemesis".into(),
    };
    let value = match &op.key {
        Some(k) => format!("[{} {}]", edn_string(k), edn_value(&op.value)),
        None => edn_value(&op.value),
    };
    let mut s = String::new();
    let _ = write!(
        s,
        "{{:process {process}, :type :{}, :f :{}, :value {value}, :time {}, :index {index}",
        op.kind.as_str(),
        op.f,
        op.time
    );
    if let Some(e) = &op.error {
        let _ = write!(s, ", :error {}", edn_string(e));
    }
    s.push('}');
    s
}

pub fn write_edn(ops: &[Op], path: &Path) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for (i, op) in ops.iter().enumerate() {
        writeln!(f, "{}", to_edn(op, i))?;
    }
    f.flush()
}

/// A completed (or never completed) client operation: its invocation paired with what came
/// back. `None` completion: the process never heard back (as `info`).
#[derive(Debug, Clone)]
pub struct Pair<'a> {
    pub invoke: &'a Op,
    pub complete: Option<&'a Op>,
}

/// Pair each client invocation with the next record of the same process.
pub fn pairs(ops: &[Op]) -> anyhow::Result<Vec<Pair<'_>>> {
    let mut open: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
    let mut out: Vec<Pair<'_>> = Vec::new();
    for op in ops {
        let Process::Client(p) = op.process else {
            continue;
        };
        match op.kind {
            OpType::Invoke => {
                if open.contains_key(&p) {
                    anyhow::bail!(
                        "process {p} invoked twice without completing, at {}",
                        op.time
                    );
                }
                open.insert(p, out.len());
                out.push(Pair {
                    invoke: op,
                    complete: None,
                });
            }
            _ => {
                let i = open.remove(&p).ok_or_else(|| {
                    anyhow::anyhow!("process {p} completed {} without invoking it", op.f)
                })?;
                out[i].complete = Some(op);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op(process: Process, kind: OpType, f: &str, key: Option<&str>, value: Value) -> Op {
        Op {
            process,
            kind,
            f: f.into(),
            key: key.map(str::to_string),
            value,
            time: 5,
            node: None,
            error: None,
        }
    }

    #[test]
    fn jsonl_has_the_documented_shape() {
        let o = op(
            Process::Client(3),
            OpType::Ok,
            "cas",
            Some("be/17"),
            json!(["a", "b"]),
        );
        let line = serde_json::to_string(&o).unwrap();
        assert_eq!(
            line,
            r#"{"process":3,"type":"ok","f":"cas","key":"be/17","value":["a","b"],"time":5}"#
        );
        let n = op(Process::Nemesis, OpType::Info, "kill", None, json!("n1"));
        assert_eq!(
            serde_json::to_string(&n).unwrap(),
            r#"{"process":"nemesis","type":"info","f":"kill","key":null,"value":"n1","time":5}"#
        );
        let dir = std::env::temp_dir().join(format!("jepsen-h-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("h.jsonl");
        write_jsonl(&[o.clone(), n.clone()], &p).unwrap();
        assert_eq!(read_jsonl(&p).unwrap(), vec![o, n]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn edn_is_jepsens_shape() {
        let o = op(
            Process::Client(0),
            OpType::Ok,
            "write",
            Some("k\"1"),
            json!("v"),
        );
        assert_eq!(
            to_edn(&o, 7),
            r#"{:process 0, :type :ok, :f :write, :value ["k\"1" "v"], :time 5, :index 7}"#
        );
        let n = op(
            Process::Nemesis,
            OpType::Info,
            "start-partition",
            None,
            json!(["n1", "n2"]),
        );
        assert_eq!(
            to_edn(&n, 0),
            r#"{:process :nemesis, :type :info, :f :start-partition, :value ["n1" "n2"], :time 5, :index 0}"#
        );
    }

    #[test]
    fn pairs_follow_processes() {
        let ops = vec![
            op(
                Process::Client(1),
                OpType::Invoke,
                "read",
                Some("a"),
                Value::Null,
            ),
            op(
                Process::Client(2),
                OpType::Invoke,
                "write",
                Some("a"),
                json!(1),
            ),
            op(Process::Nemesis, OpType::Info, "kill", None, Value::Null),
            op(Process::Client(1), OpType::Ok, "read", Some("a"), json!(1)),
        ];
        let p = pairs(&ops).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].complete.unwrap().value, json!(1));
        assert!(p[1].complete.is_none());
        let bad = vec![op(
            Process::Client(1),
            OpType::Ok,
            "read",
            Some("a"),
            Value::Null,
        )];
        assert!(pairs(&bad).is_err());
    }
}
