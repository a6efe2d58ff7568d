//! `roster node drain` / `undrain`. A backend drain is replicated (`MODIFY BACKEND ... SET
//! ("is_draining" = ...)`) and is complete once every live FE has applied it, since each FE
//! routes from its own applied state. A frontend drain is local to that FE's process (a
//! restart un-drains, as in CockroachDB), so it is sent to that FE's rpc address alone, and is
//! complete once another FE is master.

use super::{col, quoted};
use crate::sql_shell::ConnArgs;
use roster_client::{Client, QueryResult};
use std::time::{Duration, Instant};

/// `10m`, `30s`, `500ms`, `1h`: a number and a unit.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (write e.g. 10m, 30s, 500ms)"))?;
    let ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => {
            return Err(format!(
                "{text:?} is not a duration: the unit must be ms, s, m or h (e.g. 10m)"
            ));
        }
    };
    n.checked_mul(ms)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?} is too long"))
}

/// What to drain or undrain; refused when empty.
pub struct Targets {
    pub backends: Vec<String>,
    pub frontends: Vec<String>,
}

impl Targets {
    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.backends.is_empty() || !self.frontends.is_empty(),
            "name at least one backend (id or host:port) or --frontend HOST:RPC_PORT"
        );
        Ok(())
    }
}

pub async fn drain(conn: &ConnArgs, t: &Targets, wait: Duration) -> anyhow::Result<()> {
    t.check()?;
    let deadline = Instant::now() + wait;
    if !t.backends.is_empty() {
        let c = conn.client()?;
        set_draining(&c, &t.backends, true).await?;
        let fes = applied_everywhere(conn, &c, deadline)
            .await
            .map_err(|e| anyhow::anyhow!("drain not complete: {e}"))?;
        println!(
            "backends {} drained: queries and loads are routed away (applied on {fes})",
            t.backends.join(", ")
        );
    }
    for addr in &t.frontends {
        let left = deadline.saturating_duration_since(Instant::now());
        let r = conn
            .client_of(vec![addr.clone()])?
            .drain_frontend(false, left)
            .await?;
        if !r.complete {
            anyhow::bail!(
                "drain not complete: frontend {addr} (node id {}): {}",
                r.node_id,
                r.message
            );
        }
        println!(
            "frontend {addr} (node id {}) {}; the master is at {}",
            r.node_id, r.message, r.leader_rpc_addr
        );
    }
    Ok(())
}

pub async fn undrain(conn: &ConnArgs, t: &Targets) -> anyhow::Result<()> {
    t.check()?;
    if !t.backends.is_empty() {
        set_draining(&conn.client()?, &t.backends, false).await?;
        println!("backends {} undrained", t.backends.join(", "));
    }
    for addr in &t.frontends {
        let r = conn
            .client_of(vec![addr.clone()])?
            .drain_frontend(true, Duration::ZERO)
            .await?;
        println!("frontend {addr} (node id {}): {}", r.node_id, r.message);
    }
    Ok(())
}

async fn set_draining(c: &Client, ids: &[String], on: bool) -> anyhow::Result<()> {
    c.execute(&format!(
        r#"ALTER SYSTEM MODIFY BACKEND {} SET ("is_draining" = "{on}")"#,
        quoted(ids)
    ))
    .await?;
    Ok(())
}

/// `recommission` also ends a drain of the backends it names (those that are draining).
pub async fn undrain_recommissioned(c: &Client, names: &[String]) -> anyhow::Result<()> {
    let backends = c.execute("SHOW BACKENDS").await?;
    let draining: Vec<String> = resolve(&backends, names)
        .into_iter()
        .filter(|id| {
            (0..backends.rows.len()).any(|i| {
                col(&backends, i, "BackendId") == id
                    && col(&backends, i, "Status").contains("\"isDraining\":true")
            })
        })
        .collect();
    if !draining.is_empty() {
        set_draining(c, &draining, false).await?;
        println!("backends {} undrained", draining.join(", "));
    }
    Ok(())
}

/// Wait until every live FE has applied the master's log as of now (so it routes by the new
/// flags). Returns "N of M frontends"; FEs that SHOW FRONTENDS reports dead are not waited
/// for (they route nothing).
async fn applied_everywhere(
    conn: &ConnArgs,
    c: &Client,
    deadline: Instant,
) -> Result<String, String> {
    let fes: QueryResult = c
        .execute("SHOW FRONTENDS")
        .await
        .map_err(|e| e.to_string())?;
    let addr = |i: usize| format!("{}:{}", col(&fes, i, "Host"), col(&fes, i, "RpcPort"));
    let master = (0..fes.rows.len())
        .find(|i| col(&fes, *i, "IsMaster") == "true")
        .ok_or("no master is known")?;
    let probe = |a: String| async move {
        let fe = conn.client_of(vec![a]).map_err(|e| e.to_string())?;
        fe.status_within(Duration::from_secs(1))
            .await
            .map_err(|e| e.to_string())
    };
    let target = probe(addr(master)).await?.last_applied;
    let live: Vec<String> = (0..fes.rows.len())
        .filter(|i| col(&fes, *i, "Alive") == "true")
        .map(addr)
        .collect();
    let mut behind = live.clone();
    loop {
        let mut still = Vec::new();
        for a in behind {
            match probe(a.clone()).await {
                Ok(s) if s.last_applied >= target => {}
                Ok(s) => still.push((a, format!("applied {} of {target}", s.last_applied))),
                Err(e) => still.push((a, e)),
            }
        }
        if still.is_empty() {
            return Ok(format!("{} of {} frontends", live.len(), fes.rows.len()));
        }
        if Instant::now() >= deadline {
            let list: Vec<String> = still.iter().map(|(a, e)| format!("{a} ({e})")).collect();
            return Err(format!(
                "not yet applied on frontend(s) {}",
                list.join(", ")
            ));
        }
        behind = still.into_iter().map(|(a, _)| a).collect();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The ids of the backends named (ids or host:port) that SHOW BACKENDS lists.
fn resolve(backends: &QueryResult, names: &[String]) -> std::collections::BTreeSet<String> {
    (0..backends.rows.len())
        .filter(|i| {
            let id = col(backends, *i, "BackendId");
            let addr = format!(
                "{}:{}",
                col(backends, *i, "Host"),
                col(backends, *i, "HeartbeatPort")
            );
            names.iter().any(|n| n == id || *n == addr)
        })
        .map(|i| col(backends, i, "BackendId").to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        for bad in ["10", "m", "-1s", "1.5s", "10x", ""] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
