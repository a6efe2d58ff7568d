//! Client workloads. Each worker is a sequence of logical processes (a process that gets `info`
//! retires and the worker continues as `process + concurrency`, as in Jepsen); every operation
//! is recorded as an invocation and its completion.
//!
//! - `register`: per-key registers over registry entries: key k is fake backend
//!   `127.99.0.k:9050`, its value the backend's `tag.location`. Writes (`ALTER SYSTEM MODIFY
//!   BACKEND ... SET ("tag.location" = v)`, unique values) and reads (the typed `ListBackends`
//!   call, linearizable), through a fixed FE per worker so followers serve reads too. Two
//!   settings are registers as well (`SETTING_KEYS`: ADMIN SET / SHOW FRONTEND CONFIG).
//! - `set`: unique `ALTER SYSTEM ADD BACKEND`s, then a final read of the registry from every FE.
//! - `intent`: decommission intents as compare-and-set registers: key k's value is backend k's
//!   membership; DECOMMISSION is `cas(ACTIVE, DECOMMISSIONING)` and CANCEL the reverse, `ok`
//!   when the statement changed the backend (affected rows 1) and `fail` when it found it
//!   already there (it changed nothing). Two DECOMMISSIONs both reporting the change with no
//!   CANCEL between them are not linearizable: an intent carried out twice.
//! - `blacklist`: a register per (FE, backend): `on` after ADD BACKEND BLACKLIST on that FE,
//!   `off` after DELETE; reads are SHOW BACKEND BLACKLIST on that FE. An entry of another FE
//!   showing up reads `on` where that FE's own history says `off`: not linearizable.

use crate::history::{Op, OpType, Process, Recorder};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use roster_client::{Client, ClientConfig, ClientError};
use serde_json::{Value, json};
use std::future::Future;
use std::time::{Duration, Instant};

/// The initial value of every register key (a new backend's tag).
pub const INITIAL_TAG: &str = "default";

pub fn key_host(k: usize) -> String {
    format!("127.99.0.{}", k + 1)
}

/// A client of the FEs in `addrs` (comma-separated). With one FE it never follows leader hints
/// (that FE forwards writes itself, and serves reads); with several it goes to the leader.
pub fn client_of(addrs: &str, timeout: Duration) -> Client {
    let mut cfg = ClientConfig::new(addrs.split(',').map(str::to_string).collect());
    cfg.password = crate::db::ROOT_PASSWORD.into();
    cfg.timeout = timeout;
    cfg.tls = crate::db::client_tls();
    Client::new(cfg).expect("client config")
}

/// How a failed call ends in the history.
pub(crate) fn failure(e: &ClientError, read_only: bool) -> OpType {
    match e {
        _ if read_only => OpType::Fail,
        // The client library's contract: Server and Unavailable mean "not applied".
        ClientError::Server { .. } | ClientError::Unavailable(_) | ClientError::Config(_) => {
            OpType::Fail
        }
        ClientError::Unknown(_) => OpType::Info,
    }
}

/// What every worker has: its number, the FE(s) it talks to, its seed and schedule.
#[derive(Debug, Clone)]
pub struct Worker {
    pub worker: usize,
    pub concurrency: usize,
    /// The FE index this worker talks to (its answers are recorded as that FE's).
    pub node: usize,
    /// FE address(es), comma-separated (see `client_of`).
    pub addr: String,
    pub seed: u64,
    pub until: Instant,
    /// Pause between operations.
    pub gap: Duration,
}

impl Worker {
    /// This worker's generator: the seed mixed with the worker number and a per-workload salt.
    pub fn rng(&self, salt: u64) -> StdRng {
        StdRng::seed_from_u64(self.seed ^ (self.worker as u64).wrapping_mul(salt))
    }

    pub fn running(&self) -> bool {
        Instant::now() < self.until && !crate::stopped()
    }

    /// The worker's first logical process.
    pub fn process<'a>(&self, h: &'a Recorder) -> Proc<'a> {
        Proc {
            h,
            id: self.worker as u64,
            concurrency: self.concurrency as u64,
            node: self.node as u64 + 1,
        }
    }
}

/// A worker's current logical process, which records each operation as an invocation and its
/// completion. An `info` completion retires it: the worker goes on as `id + concurrency`.
pub struct Proc<'a> {
    h: &'a Recorder,
    pub id: u64,
    concurrency: u64,
    /// The answering FE (1-based; 0 when the client follows the leader).
    pub node: u64,
}

impl<'a> Proc<'a> {
    /// A one-off process (e.g. the final reads), answered by FE index `node`.
    pub fn once(h: &'a Recorder, id: u64, node: usize) -> Proc<'a> {
        Proc {
            h,
            id,
            concurrency: 0,
            node: node as u64 + 1,
        }
    }

    /// A read: `ok` with `value(answer)`, or `fail` (a read that changed nothing).
    pub async fn read<T>(
        &self,
        f: &str,
        key: Option<String>,
        call: impl Future<Output = Result<T, ClientError>>,
        value: impl FnOnce(T) -> Value,
    ) -> bool {
        let inv = invoke(self.h, self.id, f, key, Value::Null);
        match call.await {
            Ok(t) => {
                complete(self.h, &inv, OpType::Ok, value(t), self.node, None);
                true
            }
            Err(e) => {
                let why = Some(e.to_string());
                complete(self.h, &inv, OpType::Fail, Value::Null, self.node, why);
                false
            }
        }
    }

    /// A write of `value`: `ok` when the call succeeds and `judge` accepts its answer; `fail`
    /// when `judge` says it changed nothing, or the client knows it was not applied; `info`
    /// when its fate is unknown (and the process retires).
    pub async fn write<T>(
        &mut self,
        f: &str,
        key: Option<String>,
        value: Value,
        call: impl Future<Output = Result<T, ClientError>>,
        judge: impl FnOnce(T) -> Result<(), String>,
    ) {
        let inv = invoke(self.h, self.id, f, key, value.clone());
        let (kind, why) = match call.await {
            Ok(t) => match judge(t) {
                Ok(()) => (OpType::Ok, None),
                Err(why) => (OpType::Fail, Some(why)),
            },
            Err(e) => (failure(&e, false), Some(e.to_string())),
        };
        complete(self.h, &inv, kind, value, self.node, why);
        if kind == OpType::Info {
            self.id += self.concurrency;
        }
    }
}

pub(crate) fn invoke(h: &Recorder, process: u64, f: &str, key: Option<String>, value: Value) -> Op {
    h.record(Op {
        process: Process::Client(process),
        kind: OpType::Invoke,
        f: f.into(),
        key,
        value,
        time: 0,
        node: None,
        error: None,
    })
}

pub(crate) fn complete(
    h: &Recorder,
    inv: &Op,
    kind: OpType,
    value: Value,
    node: u64,
    error: Option<String>,
) {
    h.record(Op {
        kind,
        value,
        node: Some(node),
        error,
        ..inv.clone()
    });
}

/// The workloads' backends are fake addresses: nothing to schedule, and no FE should
/// blacklist them (or probe them every second).
pub async fn setup_cluster(c: &Client) -> anyhow::Result<()> {
    for sql in [
        r#"ADMIN SET FRONTEND CONFIG ("disable_tablet_scheduler" = "true")"#,
        r#"ADMIN SET FRONTEND CONFIG ("disable_backend_black_list" = "true")"#,
    ] {
        c.execute(sql).await?;
    }
    Ok(())
}

/// Register the workload's keys (fake backends) through `c`.
pub async fn setup_registers(c: &Client, keys: usize) -> anyhow::Result<()> {
    let addrs: Vec<String> = (0..keys)
        .map(|k| format!("\"{}:9050\"", key_host(k)))
        .collect();
    c.execute(&format!("ALTER SYSTEM ADD BACKEND {}", addrs.join(", ")))
        .await?;
    Ok(())
}

/// Settings that are register keys too (`cfg/<name>`), with their defaults: nothing reads them
/// in register runs (no tables, the scheduler off). A read of the default value is recorded as
/// `default`, the registers' initial value; writes never write it.
pub const SETTING_KEYS: &[(&str, &str)] = &[
    ("catalog_trash_expire_second", "86400"),
    ("tablet_repair_delay_second", "60"),
];

pub struct RegisterWorker {
    pub w: Worker,
    /// Backend keys; `SETTING_KEYS` come on top.
    pub keys: usize,
}

impl RegisterWorker {
    pub async fn run(self, h: Recorder) {
        let mut rng = self.w.rng(0x9e37_79b9);
        let c = client_of(&self.w.addr, Duration::from_secs(3));
        let mut p = self.w.process(&h);
        let mut seq = 0u64;
        while self.w.running() {
            let k = rng.random_range(0..self.keys + SETTING_KEYS.len());
            if k >= self.keys {
                let (name, default) = SETTING_KEYS[k - self.keys];
                let key = Some(format!("cfg/{name}"));
                if rng.random_bool(0.5) {
                    let sql = format!("ADMIN SHOW FRONTEND CONFIG LIKE '{name}'");
                    p.read("read", key, c.execute(&sql), |r| {
                        let v = (0..r.rows.len())
                            .find(|i| {
                                r.rows[*i].first().cloned().flatten().as_deref() == Some(name)
                            })
                            .and_then(|i| r.rows[i].get(1).cloned().flatten());
                        match v {
                            Some(v) if v == default => json!(INITIAL_TAG),
                            Some(v) => json!(v),
                            None => Value::Null,
                        }
                    })
                    .await;
                } else {
                    seq += 1;
                    let v = (1_000_000 + p.id * 100_000 + seq).to_string();
                    let sql = format!(r#"ADMIN SET FRONTEND CONFIG ("{name}" = "{v}")"#);
                    p.write("write", key, json!(v), c.execute(&sql), |_| Ok(()))
                        .await;
                }
                tokio::time::sleep(self.w.gap).await;
                continue;
            }
            let key = Some(format!("be/{}", key_host(k)));
            if rng.random_bool(0.5) {
                p.read("read", key, c.list_backends(), |bs| {
                    bs.iter()
                        .find(|b| b.host == key_host(k))
                        .map(|b| json!(b.tag_location))
                        .unwrap_or(Value::Null)
                })
                .await;
            } else {
                seq += 1;
                let v = format!("w{}-{seq}", p.id);
                let sql = format!(
                    r#"ALTER SYSTEM MODIFY BACKEND "{}:9050" SET ("tag.location" = "{v}")"#,
                    key_host(k)
                );
                p.write("write", key, json!(v), c.execute(&sql), |_| Ok(()))
                    .await;
            }
            tokio::time::sleep(self.w.gap).await;
        }
    }
}

pub struct SetWorker {
    pub w: Worker,
}

/// The element of add number `n` of worker `worker`: a unique backend address.
fn element(worker: usize, n: u64) -> String {
    format!("127.{}.{}.{}:9050", 100 + worker, n / 250, n % 250 + 1)
}

impl SetWorker {
    pub async fn run(self, h: Recorder) {
        let c = client_of(&self.w.addr, Duration::from_secs(3));
        let mut p = self.w.process(&h);
        let mut n = 0u64;
        while self.w.running() {
            let e = element(self.w.worker, n);
            n += 1;
            let sql = format!("ALTER SYSTEM ADD BACKEND \"{e}\"");
            p.write("add", Some("set".into()), json!(e), c.execute(&sql), |_| {
                Ok(())
            })
            .await;
            tokio::time::sleep(self.w.gap).await;
        }
    }
}

/// The final read of the set from FE `node`: every backend address it knows.
pub async fn read_set(h: &Recorder, process: u64, node: usize, addr: &str) -> bool {
    let c = client_of(addr, Duration::from_secs(10));
    Proc::once(h, process, node)
        .read("read_set", Some("set".into()), c.list_backends(), |bs| {
            Value::Array(
                bs.iter()
                    .map(|b| json!(format!("{}:{}", b.host, b.heartbeat_port)))
                    .collect(),
            )
        })
        .await
}

/// Backend ids of the blacklist workload's fake backends (registered first, so 10001..).
pub fn blacklist_backend(k: usize) -> u64 {
    10001 + k as u64
}

pub struct BlacklistWorker {
    pub w: Worker,
    pub backends: usize,
}

impl BlacklistWorker {
    pub async fn run(self, h: Recorder) {
        let mut rng = self.w.rng(0x51_7cc1_b727);
        let c = client_of(&self.w.addr, Duration::from_secs(3));
        let mut p = self.w.process(&h);
        while self.w.running() {
            let b = blacklist_backend(rng.random_range(0..self.backends));
            let key = Some(format!("bl/fe{}/{b}", p.node));
            match rng.random_range(0..4) {
                0 | 1 => {
                    p.read("read", key, c.execute("SHOW BACKEND BLACKLIST"), |r| {
                        let listed = r
                            .rows
                            .iter()
                            .any(|row| row.first().cloned().flatten() == Some(b.to_string()));
                        json!(if listed { "on" } else { "off" })
                    })
                    .await;
                }
                n => {
                    let (v, sql) = if n == 2 {
                        ("on", format!("ADD BACKEND BLACKLIST {b}"))
                    } else {
                        ("off", format!("DELETE BACKEND BLACKLIST {b}"))
                    };
                    p.write("write", key, json!(v), c.execute(&sql), |_| Ok(()))
                        .await;
                }
            }
            tokio::time::sleep(self.w.gap).await;
        }
    }
}

pub const ACTIVE: &str = "ACTIVE";
pub const DECOMMISSIONING: &str = "DECOMMISSIONING";

pub struct IntentWorker {
    pub w: Worker,
    pub keys: usize,
}

impl IntentWorker {
    pub async fn run(self, h: Recorder) {
        let mut rng = self.w.rng(0x2545_f491);
        let c = client_of(&self.w.addr, Duration::from_secs(3));
        let mut p = self.w.process(&h);
        while self.w.running() {
            let k = rng.random_range(0..self.keys);
            let key = Some(format!("intent/{}", key_host(k)));
            let roll = rng.random_range(0..10);
            if roll < 4 {
                p.read("read", key, c.list_backends(), |bs| {
                    bs.iter()
                        .find(|b| b.host == key_host(k))
                        .map(|b| json!(b.membership))
                        .unwrap_or(Value::Null)
                })
                .await;
            } else {
                let (from, to, sql) = if roll < 7 {
                    (
                        ACTIVE,
                        DECOMMISSIONING,
                        format!(
                            r#"ALTER SYSTEM DECOMMISSION BACKEND "{}:9050""#,
                            key_host(k)
                        ),
                    )
                } else {
                    (
                        DECOMMISSIONING,
                        ACTIVE,
                        format!(r#"CANCEL DECOMMISSION BACKEND "{}:9050""#, key_host(k)),
                    )
                };
                // `ok` when the statement changed the backend; finding it already there
                // changed nothing: the cas failed.
                p.write("cas", key, json!([from, to]), c.execute(&sql), |r| {
                    if r.affected_rows == 1 {
                        Ok(())
                    } else {
                        Err(format!("no change: already {to}"))
                    }
                })
                .await;
            }
            tokio::time::sleep(self.w.gap).await;
        }
    }
}
