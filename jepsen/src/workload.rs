//! Client workloads. Each worker is a sequence of logical processes (a process that gets `info`
//! retires and the worker continues as `process + concurrency`, as in Jepsen); every operation
//! is recorded as an invocation and its completion.
//!
//! - `register`: per-key registers over registry entries: key k is fake backend
//!   `10.99.0.k:9050`, its value the backend's `tag.location`. Writes (`ALTER SYSTEM MODIFY
//!   BACKEND ... SET ("tag.location" = v)`, unique values) and reads (the typed `ListBackends`
//!   call, linearizable), through a fixed FE per worker so followers serve reads too.
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
use roster_api::{Client, ClientConfig, ClientError};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The initial value of every register key (a new backend's tag).
pub const INITIAL_TAG: &str = "default";

pub fn key_host(k: usize) -> String {
    format!("10.99.0.{}", k + 1)
}

/// A client of the FEs in `addrs` (comma-separated). With one FE it never follows leader hints
/// (that FE forwards writes itself, and serves reads); with several it goes to the leader.
pub fn client_of(addrs: &str, timeout: Duration) -> Client {
    let mut cfg = ClientConfig::new(addrs.split(',').map(str::to_string).collect());
    cfg.password = crate::db::ROOT_PASSWORD.into();
    cfg.timeout = timeout;
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

pub struct RegisterWorker {
    pub worker: usize,
    pub concurrency: usize,
    /// FE index and address this worker talks to.
    pub node: usize,
    pub addr: String,
    pub keys: usize,
    pub seed: u64,
    pub until: Instant,
    /// Pause between operations.
    pub gap: Duration,
}

impl RegisterWorker {
    pub async fn run(self, h: Recorder) {
        let mut rng =
            StdRng::seed_from_u64(self.seed ^ (self.worker as u64).wrapping_mul(0x9e37_79b9));
        let c = client_of(&self.addr, Duration::from_secs(3));
        let mut process = self.worker as u64;
        let mut seq = 0u64;
        let node = self.node as u64 + 1;
        while Instant::now() < self.until && !crate::stopped() {
            let k = rng.random_range(0..self.keys);
            let key = Some(format!("be/{}", key_host(k)));
            if rng.random_bool(0.5) {
                let inv = invoke(&h, process, "read", key, Value::Null);
                match c.list_backends().await {
                    Ok(bs) => {
                        let v = bs
                            .iter()
                            .find(|b| b.host == key_host(k))
                            .map(|b| json!(b.tag_location))
                            .unwrap_or(Value::Null);
                        complete(&h, &inv, OpType::Ok, v, node, None);
                    }
                    Err(e) => complete(
                        &h,
                        &inv,
                        OpType::Fail,
                        Value::Null,
                        node,
                        Some(e.to_string()),
                    ),
                }
            } else {
                seq += 1;
                let v = format!("w{process}-{seq}");
                let inv = invoke(&h, process, "write", key, json!(v));
                let sql = format!(
                    r#"ALTER SYSTEM MODIFY BACKEND "{}:9050" SET ("tag.location" = "{v}")"#,
                    key_host(k)
                );
                match c.execute(&sql).await {
                    Ok(_) => complete(&h, &inv, OpType::Ok, json!(v), node, None),
                    Err(e) => {
                        let kind = failure(&e, false);
                        complete(&h, &inv, kind, json!(v), node, Some(e.to_string()));
                        if kind == OpType::Info {
                            process += self.concurrency as u64;
                        }
                    }
                }
            }
            tokio::time::sleep(self.gap).await;
        }
    }
}

pub struct SetWorker {
    pub worker: usize,
    pub concurrency: usize,
    pub node: usize,
    pub addr: String,
    pub until: Instant,
    pub gap: Duration,
}

/// The element of add number `n` of process `p`: a unique backend address.
fn element(worker: usize, n: u64) -> String {
    format!("10.{}.{}.{}:9050", 100 + worker, n / 250, n % 250 + 1)
}

impl SetWorker {
    pub async fn run(self, h: Recorder) {
        let c = client_of(&self.addr, Duration::from_secs(3));
        let mut process = self.worker as u64;
        let mut n = 0u64;
        let node = self.node as u64 + 1;
        while Instant::now() < self.until && !crate::stopped() {
            let e = element(self.worker, n);
            n += 1;
            let inv = invoke(&h, process, "add", Some("set".into()), json!(e));
            match c
                .execute(&format!("ALTER SYSTEM ADD BACKEND \"{e}\""))
                .await
            {
                Ok(_) => complete(&h, &inv, OpType::Ok, json!(e), node, None),
                Err(err) => {
                    let kind = failure(&err, false);
                    complete(&h, &inv, kind, json!(e), node, Some(err.to_string()));
                    if kind == OpType::Info {
                        process += self.concurrency as u64;
                    }
                }
            }
            tokio::time::sleep(self.gap).await;
        }
    }
}

/// The final read of the set from FE `node`: every backend address it knows.
pub async fn read_set(h: &Recorder, process: u64, node: usize, addr: &str) -> bool {
    let c = client_of(addr, Duration::from_secs(10));
    let inv = invoke(h, process, "read_set", Some("set".into()), Value::Null);
    match c.list_backends().await {
        Ok(bs) => {
            let v: Vec<Value> = bs
                .iter()
                .map(|b| json!(format!("{}:{}", b.host, b.heartbeat_port)))
                .collect();
            complete(h, &inv, OpType::Ok, Value::Array(v), node as u64 + 1, None);
            true
        }
        Err(e) => {
            complete(
                h,
                &inv,
                OpType::Fail,
                Value::Null,
                node as u64 + 1,
                Some(e.to_string()),
            );
            false
        }
    }
}

/// Backend ids of the blacklist workload's fake backends (registered first, so 10001..).
pub fn blacklist_backend(k: usize) -> u64 {
    10001 + k as u64
}

pub struct BlacklistWorker {
    pub worker: usize,
    pub concurrency: usize,
    pub node: usize,
    pub addr: String,
    pub backends: usize,
    pub seed: u64,
    pub until: Instant,
    pub gap: Duration,
}

impl BlacklistWorker {
    pub async fn run(self, h: Recorder) {
        let mut rng =
            StdRng::seed_from_u64(self.seed ^ (self.worker as u64).wrapping_mul(0x51_7cc1_b727));
        let c = client_of(&self.addr, Duration::from_secs(3));
        let mut process = self.worker as u64;
        let node = self.node as u64 + 1;
        while Instant::now() < self.until && !crate::stopped() {
            let b = blacklist_backend(rng.random_range(0..self.backends));
            let key = Some(format!("bl/fe{node}/{b}"));
            match rng.random_range(0..4) {
                0 | 1 => {
                    let inv = invoke(&h, process, "read", key, Value::Null);
                    match c.execute("SHOW BACKEND BLACKLIST").await {
                        Ok(r) => {
                            let listed = r
                                .rows
                                .iter()
                                .any(|row| row.first().cloned().flatten() == Some(b.to_string()));
                            let v = if listed { "on" } else { "off" };
                            complete(&h, &inv, OpType::Ok, json!(v), node, None);
                        }
                        Err(e) => complete(
                            &h,
                            &inv,
                            OpType::Fail,
                            Value::Null,
                            node,
                            Some(e.to_string()),
                        ),
                    }
                }
                n => {
                    let (v, sql) = if n == 2 {
                        ("on", format!("ADD BACKEND BLACKLIST {b}"))
                    } else {
                        ("off", format!("DELETE BACKEND BLACKLIST {b}"))
                    };
                    let inv = invoke(&h, process, "write", key, json!(v));
                    match c.execute(&sql).await {
                        Ok(_) => complete(&h, &inv, OpType::Ok, json!(v), node, None),
                        Err(e) => {
                            let kind = failure(&e, false);
                            complete(&h, &inv, kind, json!(v), node, Some(e.to_string()));
                            if kind == OpType::Info {
                                process += self.concurrency as u64;
                            }
                        }
                    }
                }
            }
            tokio::time::sleep(self.gap).await;
        }
    }
}

pub const ACTIVE: &str = "ACTIVE";
pub const DECOMMISSIONING: &str = "DECOMMISSIONING";

pub struct IntentWorker {
    pub worker: usize,
    pub concurrency: usize,
    pub node: usize,
    pub addr: String,
    pub keys: usize,
    pub seed: u64,
    pub until: Instant,
    pub gap: Duration,
}

impl IntentWorker {
    pub async fn run(self, h: Recorder) {
        let mut rng =
            StdRng::seed_from_u64(self.seed ^ (self.worker as u64).wrapping_mul(0x2545_f491));
        let c = client_of(&self.addr, Duration::from_secs(3));
        let mut process = self.worker as u64;
        let node = self.node as u64 + 1;
        while Instant::now() < self.until && !crate::stopped() {
            let k = rng.random_range(0..self.keys);
            let key = Some(format!("intent/{}", key_host(k)));
            let roll = rng.random_range(0..10);
            if roll < 4 {
                let inv = invoke(&h, process, "read", key, Value::Null);
                match c.list_backends().await {
                    Ok(bs) => {
                        let v = bs
                            .iter()
                            .find(|b| b.host == key_host(k))
                            .map(|b| json!(b.membership))
                            .unwrap_or(Value::Null);
                        complete(&h, &inv, OpType::Ok, v, node, None);
                    }
                    Err(e) => complete(
                        &h,
                        &inv,
                        OpType::Fail,
                        Value::Null,
                        node,
                        Some(e.to_string()),
                    ),
                }
                tokio::time::sleep(self.gap).await;
                continue;
            }
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
            let value = json!([from, to]);
            let inv = invoke(&h, process, "cas", key, value.clone());
            match c.execute(&sql).await {
                Ok(r) if r.affected_rows == 1 => complete(&h, &inv, OpType::Ok, value, node, None),
                Ok(_) => complete(
                    &h,
                    &inv,
                    OpType::Fail,
                    value,
                    node,
                    Some(format!("no change: already {to}")),
                ),
                Err(e) => {
                    let kind = failure(&e, false);
                    complete(&h, &inv, kind, value, node, Some(e.to_string()));
                    if kind == OpType::Info {
                        process += self.concurrency as u64;
                    }
                }
            }
            tokio::time::sleep(self.gap).await;
        }
    }
}
