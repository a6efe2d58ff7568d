//! Linearizability of per-key registers: Wing & Gong's search with Lowe's memoization, as
//! Porcupine's `checkSingle` does it, split by key (P-compositionality: a history is
//! linearizable iff each key's sub-history is), keys checked in parallel, each under a deadline.
//! A deadline that passes gives `Unknown`, which fails a test like `Illegal` does.
//!
//! Semantics (Knossos's): `fail` operations did not happen and are dropped; `info` reads carry
//! nothing and are dropped; `info` writes and CAS, and invocations never answered, may have
//! happened at any time after their invocation (their return is at infinity).

use crate::history::{OpType, Pair, pairs};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// What a key's sub-history came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// No linearization exists; the text names the operation that cannot be placed.
    Illegal(String),
    /// The search did not finish before the deadline.
    Unknown,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub keys: usize,
    pub ops: usize,
    /// Keys whose verdict is not Ok.
    pub bad: BTreeMap<String, Verdict>,
}

impl Report {
    pub fn valid(&self) -> bool {
        self.bad.is_empty()
    }
}

type V = u32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    Read,
    Write(V),
    Cas(V, V),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    /// A read's value.
    Read(V),
    /// A write or CAS that happened.
    Done,
    /// An `info` write or CAS: may or may not have happened.
    Unknown,
}

#[derive(Debug, Clone)]
struct Operation {
    call: u64,
    ret: u64,
    input: Input,
    output: Output,
    /// Index of the invocation in the history, for the report.
    at: usize,
}

/// The register's step: `None` if `output` is impossible from `state`, else the new state.
fn step(state: V, input: Input, output: Output) -> Option<V> {
    match (input, output) {
        (Input::Read, Output::Read(v)) => (v == state).then_some(state),
        (Input::Read, _) => None,
        (Input::Write(v), _) => Some(v),
        (Input::Cas(old, new), Output::Done) => (state == old).then_some(new),
        // Unknown: if it applied it needed `old`; otherwise nothing changed.
        (Input::Cas(old, new), _) => Some(if state == old { new } else { state }),
    }
}

/// Doubly linked list of call and return entries over an arena (index 0 is the head).
#[derive(Clone, Copy)]
struct Entry {
    /// The operation; `usize::MAX` for the head.
    op: usize,
    is_call: bool,
    /// For a call: its return entry.
    matched: usize,
    prev: usize,
    next: usize,
}

const NIL: usize = usize::MAX;

fn lift(e: &mut [Entry], call: usize) {
    let (p, n) = (e[call].prev, e[call].next);
    e[p].next = n;
    if n != NIL {
        e[n].prev = p;
    }
    let m = e[call].matched;
    let (mp, mn) = (e[m].prev, e[m].next);
    e[mp].next = mn;
    if mn != NIL {
        e[mn].prev = mp;
    }
}

fn unlift(e: &mut [Entry], call: usize) {
    let m = e[call].matched;
    let (mp, mn) = (e[m].prev, e[m].next);
    e[mp].next = m;
    if mn != NIL {
        e[mn].prev = m;
    }
    let (p, n) = (e[call].prev, e[call].next);
    e[p].next = call;
    if n != NIL {
        e[n].prev = call;
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Self {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// Check one key's operations.
fn check_single(
    ops: &[Operation],
    init: V,
    deadline: Instant,
    describe: &dyn Fn(usize) -> String,
) -> Verdict {
    if ops.is_empty() {
        return Verdict::Ok;
    }
    // Entries sorted by time; at equal times calls come first (they may overlap).
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * ops.len());
    for (i, o) in ops.iter().enumerate() {
        events.push((o.call, true, i));
        events.push((o.ret, false, i));
    }
    events.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
    let mut e: Vec<Entry> = Vec::with_capacity(events.len() + 1);
    e.push(Entry {
        op: usize::MAX,
        is_call: false,
        matched: NIL,
        prev: NIL,
        next: NIL,
    });
    let mut ret_of = vec![NIL; ops.len()];
    let mut call_of = vec![NIL; ops.len()];
    for (_, is_call, op) in &events {
        let idx = e.len();
        let prev = idx - 1;
        e[prev].next = idx;
        e.push(Entry {
            op: *op,
            is_call: *is_call,
            matched: NIL,
            prev,
            next: NIL,
        });
        if *is_call {
            call_of[*op] = idx;
        } else {
            ret_of[*op] = idx;
        }
    }
    for i in 0..ops.len() {
        e[call_of[i]].matched = ret_of[i];
    }

    let mut state = init;
    let mut linearized = Bits::new(ops.len());
    let mut cache: HashMap<(Bits, V), ()> = HashMap::new();
    let mut calls: Vec<(usize, V)> = Vec::new();
    let mut entry = e[0].next;
    // The deepest point reached, for the report: (ops linearized, the return that blocked).
    let mut deepest = (0usize, NIL);
    let mut steps = 0u64;
    while e[0].next != NIL {
        steps += 1;
        if steps.is_multiple_of(4096) && Instant::now() > deadline {
            return Verdict::Unknown;
        }
        if e[entry].is_call {
            let o = &ops[e[entry].op];
            let mut moved = false;
            if let Some(next_state) = step(state, o.input, o.output) {
                let mut bits = linearized.clone();
                bits.set(e[entry].op);
                if cache.insert((bits, next_state), ()).is_none() {
                    calls.push((entry, state));
                    state = next_state;
                    linearized.set(e[entry].op);
                    lift(&mut e, entry);
                    entry = e[0].next;
                    moved = true;
                }
            }
            if !moved {
                entry = e[entry].next;
            }
        } else {
            if calls.len() >= deepest.0 {
                deepest = (calls.len(), entry);
            }
            let Some((call, prev_state)) = calls.pop() else {
                let blocked = e[deepest.1].op;
                return Verdict::Illegal(format!(
                    "{} cannot be linearized (at most {} of {} operations were)",
                    describe(ops[blocked].at),
                    deepest.0,
                    ops.len()
                ));
            };
            entry = call;
            state = prev_state;
            linearized.clear(e[entry].op);
            unlift(&mut e, entry);
            entry = e[entry].next;
        }
    }
    Verdict::Ok
}

/// Interns register values so the search compares integers.
#[derive(Default)]
struct Values(HashMap<String, V>);

impl Values {
    fn id(&mut self, v: &Value) -> V {
        let key = v.to_string();
        let n = self.0.len() as V;
        *self.0.entry(key).or_insert(n)
    }
}

/// Check a history of `read` / `write` / `cas` register operations, per key. Every key starts
/// at `initial`. Other operations (and the nemesis) are ignored.
pub fn check(
    ops: &[crate::history::Op],
    initial: &Value,
    timeout: Duration,
) -> anyhow::Result<Report> {
    let mut values = Values::default();
    let init = values.id(initial);
    let mut by_key: BTreeMap<String, Vec<Operation>> = BTreeMap::new();
    let all = pairs(ops)?;
    let mut counted = 0;
    for Pair { invoke, complete } in &all {
        let Some(key) = &invoke.key else { continue };
        let kind = complete.map(|c| c.kind).unwrap_or(OpType::Info);
        if kind == OpType::Fail {
            continue;
        }
        let ok = kind == OpType::Ok;
        let (input, output) = match invoke.f.as_str() {
            "read" => {
                if !ok {
                    continue;
                }
                (
                    Input::Read,
                    Output::Read(values.id(&complete.expect("ok").value)),
                )
            }
            "write" => (
                Input::Write(values.id(&invoke.value)),
                if ok { Output::Done } else { Output::Unknown },
            ),
            "cas" => {
                let pair = invoke
                    .value
                    .as_array()
                    .filter(|a| a.len() == 2)
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "cas at {} has value {}, not [expected, new]",
                            invoke.time,
                            invoke.value
                        )
                    })?;
                (
                    Input::Cas(values.id(&pair[0]), values.id(&pair[1])),
                    if ok { Output::Done } else { Output::Unknown },
                )
            }
            _ => continue,
        };
        let at = ops
            .iter()
            .position(|o| std::ptr::eq(o, *invoke))
            .unwrap_or(0);
        by_key.entry(key.clone()).or_default().push(Operation {
            call: invoke.time,
            ret: if ok {
                complete.expect("ok").time
            } else {
                u64::MAX
            },
            input,
            output,
            at,
        });
        counted += 1;
    }
    let deadline = Instant::now() + timeout;
    let describe = |at: usize| {
        let o = &ops[at];
        let done = all
            .iter()
            .find(|p| std::ptr::eq(p.invoke, o))
            .and_then(|p| p.complete);
        format!(
            "{} of process {:?} on {} (value {}, invoked at {} ns{})",
            o.f,
            o.process,
            o.key.as_deref().unwrap_or("-"),
            done.map(|d| d.value.clone()).unwrap_or(o.value.clone()),
            o.time,
            done.map(|d| format!(", answered at {} ns", d.time))
                .unwrap_or_default()
        )
    };
    let keys: Vec<(&String, &Vec<Operation>)> = by_key.iter().collect();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let chunk = keys.len().div_ceil(threads).max(1);
    let verdicts: Vec<(String, Verdict)> = std::thread::scope(|s| {
        let handles: Vec<_> = keys
            .chunks(chunk)
            .map(|part| {
                let describe = &describe;
                s.spawn(move || {
                    part.iter()
                        .map(|(k, ops)| ((*k).clone(), check_single(ops, init, deadline, describe)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("checker thread"))
            .collect()
    });
    Ok(Report {
        keys: by_key.len(),
        ops: counted,
        bad: verdicts
            .into_iter()
            .filter(|(_, v)| *v != Verdict::Ok)
            .collect(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::history::{Op, Process};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use serde_json::json;

    fn rec(process: u64, kind: OpType, f: &str, key: &str, value: Value, time: u64) -> Op {
        Op {
            process: Process::Client(process),
            kind,
            f: f.into(),
            key: Some(key.into()),
            value,
            time,
            node: None,
            error: None,
        }
    }

    /// A linearizable history of `n` operations over `keys` registers from `procs` concurrent
    /// processes, simulated against an atomic register; `info_pct` percent of the writes and
    /// CAS never hear back (half of those took effect).
    pub(crate) fn generate(
        seed: u64,
        n: usize,
        keys: usize,
        procs: usize,
        info_pct: u32,
    ) -> Vec<Op> {
        let mut rng = StdRng::seed_from_u64(seed);
        struct Planned {
            process: u64,
            key: String,
            f: &'static str,
            value: Value,
            call: u64,
            lin: u64,
            ret: Option<u64>,
            applies: bool,
        }
        let mut free_at = vec![0u64; procs];
        let mut next_process: Vec<u64> = (0..procs as u64).collect();
        let mut planned = Vec::new();
        let mut counter = 0u64;
        for _ in 0..n {
            let w = (0..procs).min_by_key(|w| free_at[*w]).unwrap();
            let call = free_at[w] + rng.random_range(1..50);
            let lin = call + rng.random_range(1..200);
            let ret = lin + rng.random_range(1..200);
            let key = format!("k{}", rng.random_range(0..keys));
            let (f, value) = match rng.random_range(0..10) {
                0..=4 => ("read", Value::Null),
                5..=7 => {
                    counter += 1;
                    ("write", json!(counter))
                }
                _ => {
                    counter += 1;
                    let expect = rng.random_range(0..=counter.saturating_sub(1).max(1));
                    ("cas", json!([expect, counter]))
                }
            };
            let info = f != "read" && rng.random_range(0..100) < info_pct;
            planned.push(Planned {
                process: next_process[w],
                key,
                f,
                value,
                call,
                lin,
                ret: (!info).then_some(ret),
                applies: !info || rng.random_bool(0.5),
            });
            free_at[w] = ret;
            if info {
                // A process that got `info` retires; its worker continues as a new process.
                next_process[w] += procs as u64;
            }
        }
        // Apply at the linearization points, in order.
        let mut order: Vec<usize> = (0..planned.len()).collect();
        order.sort_by_key(|i| planned[*i].lin);
        let mut regs: HashMap<String, Value> = HashMap::new();
        let mut outputs: Vec<Option<(OpType, Value)>> = vec![None; planned.len()];
        for i in order {
            let p = &planned[i];
            let cur = regs.get(&p.key).cloned().unwrap_or(json!(0));
            match p.f {
                "read" => outputs[i] = Some((OpType::Ok, cur)),
                "write" => {
                    if p.applies {
                        regs.insert(p.key.clone(), p.value.clone());
                    }
                    outputs[i] = Some((OpType::Ok, p.value.clone()));
                }
                _ => {
                    let (old, new) = (p.value[0].clone(), p.value[1].clone());
                    if cur == old && p.applies {
                        regs.insert(p.key.clone(), new);
                        outputs[i] = Some((OpType::Ok, p.value.clone()));
                    } else {
                        outputs[i] = Some((OpType::Fail, p.value.clone()));
                    }
                }
            }
        }
        let mut ops = Vec::new();
        for (p, out) in planned.iter().zip(outputs) {
            let (kind, value) = out.unwrap();
            ops.push(rec(
                p.process,
                OpType::Invoke,
                p.f,
                &p.key,
                if p.f == "read" {
                    Value::Null
                } else {
                    p.value.clone()
                },
                p.call,
            ));
            if let Some(ret) = p.ret {
                ops.push(rec(p.process, kind, p.f, &p.key, value, ret));
            }
        }
        ops.sort_by_key(|o| o.time);
        ops
    }

    const T: Duration = Duration::from_secs(30);

    #[test]
    fn small_histories() {
        // Two overlapping writes, then a read of either: fine.
        let h = vec![
            rec(0, OpType::Invoke, "write", "a", json!(1), 0),
            rec(1, OpType::Invoke, "write", "a", json!(2), 1),
            rec(0, OpType::Ok, "write", "a", json!(1), 10),
            rec(1, OpType::Ok, "write", "a", json!(2), 11),
            rec(0, OpType::Invoke, "read", "a", Value::Null, 20),
            rec(0, OpType::Ok, "read", "a", json!(1), 21),
        ];
        assert!(check(&h, &json!(0), T).unwrap().valid());
        // A stale read: after the write of 2 completed, a read of the initial 0.
        let mut stale = h.clone();
        stale[5].value = json!(0);
        let r = check(&stale, &json!(0), T).unwrap();
        match &r.bad["a"] {
            Verdict::Illegal(why) => assert!(why.contains("read of process Client(0)"), "{why}"),
            other => panic!("{other:?}"),
        }
        // An info write may take effect later, even after reads that did not see it.
        let h = vec![
            rec(0, OpType::Invoke, "write", "a", json!(1), 0),
            rec(1, OpType::Invoke, "read", "a", Value::Null, 5),
            rec(1, OpType::Ok, "read", "a", json!(0), 6),
            rec(1, OpType::Invoke, "read", "a", Value::Null, 7),
            rec(1, OpType::Ok, "read", "a", json!(1), 8),
        ];
        assert!(check(&h, &json!(0), T).unwrap().valid());
        // ...but once seen it cannot be unseen.
        let mut h2 = h.clone();
        h2.push(rec(1, OpType::Invoke, "read", "a", Value::Null, 9));
        h2.push(rec(1, OpType::Ok, "read", "a", json!(0), 10));
        assert!(!check(&h2, &json!(0), T).unwrap().valid());
        // A failed write never happened.
        let h = vec![
            rec(0, OpType::Invoke, "write", "a", json!(1), 0),
            rec(0, OpType::Fail, "write", "a", json!(1), 1),
            rec(0, OpType::Invoke, "read", "a", Value::Null, 2),
            rec(0, OpType::Ok, "read", "a", json!(1), 3),
        ];
        assert!(!check(&h, &json!(0), T).unwrap().valid());
        // CAS: succeeds only from the expected value.
        let h = vec![
            rec(0, OpType::Invoke, "cas", "a", json!([5, 6]), 0),
            rec(0, OpType::Ok, "cas", "a", json!([5, 6]), 1),
        ];
        assert!(!check(&h, &json!(0), T).unwrap().valid());
        assert!(check(&h, &json!(5), T).unwrap().valid());
        // Keys are independent.
        let h = vec![
            rec(0, OpType::Invoke, "write", "a", json!(1), 0),
            rec(0, OpType::Ok, "write", "a", json!(1), 1),
            rec(0, OpType::Invoke, "read", "b", Value::Null, 2),
            rec(0, OpType::Ok, "read", "b", json!(0), 3),
        ];
        assert!(check(&h, &json!(0), T).unwrap().valid());
    }

    #[test]
    fn generated_histories_pass_and_an_injected_stale_read_fails() {
        for seed in 0..20 {
            let h = generate(seed, 400, 3, 6, 5);
            let r = check(&h, &json!(0), T).unwrap();
            assert!(r.valid(), "seed {seed}: {:?}", r.bad);
        }
        // Make one late read return a value overwritten long before.
        let mut h = generate(7, 2000, 4, 8, 2);
        let (first_write, _) = h
            .iter()
            .enumerate()
            .find(|(_, o)| o.f == "write" && o.kind == OpType::Ok && o.key.as_deref() == Some("k0"))
            .unwrap();
        let old = h[first_write].value.clone();
        let late = h
            .iter()
            .rposition(|o| {
                o.f == "read"
                    && o.kind == OpType::Ok
                    && o.key.as_deref() == Some("k0")
                    && o.value != old
            })
            .unwrap();
        h[late].value = old;
        let r = check(&h, &json!(0), T).unwrap();
        assert!(
            matches!(r.bad.get("k0"), Some(Verdict::Illegal(_))),
            "{:?}",
            r.bad
        );
    }

    /// Acceptance (issue 7, point 4): 10,000 operations over 20 keys in under 10 s.
    #[test]
    fn ten_thousand_operations_over_twenty_keys_in_under_ten_seconds() {
        let h = generate(42, 10_000, 20, 20, 2);
        let t = Instant::now();
        let r = check(&h, &json!(0), Duration::from_secs(10)).unwrap();
        let took = t.elapsed();
        assert!(r.valid(), "{:?}", r.bad);
        let invoked = h.iter().filter(|o| o.kind == OpType::Invoke).count();
        assert_eq!(invoked, 10_000);
        // Failed CAS did not happen, so the search places fewer than were invoked.
        assert!(r.ops >= 7_500, "{} ops checked", r.ops);
        assert_eq!(r.keys, 20);
        assert!(took < Duration::from_secs(10), "took {took:?}");
        eprintln!("checked {} ops over {} keys in {took:?}", r.ops, r.keys);
    }
}
