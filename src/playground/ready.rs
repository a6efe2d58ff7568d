//! When the playground is ready: every FE and backend alive and every replica of the demo
//! table NORMAL, as the cluster itself reports it; and which FE leads.

use roster_client::{Client, QueryResult};
use std::time::{Duration, Instant};

/// The demo table: 8 tablets, 3 replicas each of 2 MiB of real data, so a decommission moves
/// real bytes.
pub const DEMO_TABLE: &str = "CREATE TABLE IF NOT EXISTS demo (id BIGINT, name VARCHAR(64)) \
     DISTRIBUTED BY HASH(id) BUCKETS 8 \
     PROPERTIES (\"replication_num\" = \"3\", \"fill_bytes_per_tablet\" = \"2097152\")";
pub const DEMO_REPLICAS: usize = 8 * 3;

/// The values of column `name` in every row of `r` (none if there is no such column).
fn column<'a>(r: &'a QueryResult, name: &str) -> Vec<&'a str> {
    let Some(i) = r.columns.iter().position(|c| c == name) else {
        return Vec::new();
    };
    r.rows
        .iter()
        .map(|row| row.get(i).and_then(|v| v.as_deref()).unwrap_or(""))
        .collect()
}

/// What is up so far, e.g. "3/3 frontends alive, 4/4 backends alive, 24/24 replicas NORMAL".
struct Seen {
    fes: usize,
    backends: usize,
    replicas: usize,
}

async fn seen(client: &Client) -> Result<Seen, roster_client::ClientError> {
    let alive = |r: &QueryResult| column(r, "Alive").iter().filter(|a| **a == "true").count();
    let fes = alive(&client.execute("SHOW FRONTENDS").await?);
    let backends = alive(&client.execute("SHOW BACKENDS").await?);
    let tablets = client.execute("SHOW TABLETS FROM demo").await?;
    let replicas = column(&tablets, "State")
        .iter()
        .filter(|s| **s == "NORMAL")
        .count();
    Ok(Seen {
        fes,
        backends,
        replicas,
    })
}

/// Wait until `fes` FEs and `backends` backends are alive and the demo table's replicas are
/// all NORMAL; returns the line to print.
pub async fn wait_ready(
    client: &Client,
    fes: usize,
    backends: usize,
    within: Duration,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + within;
    loop {
        let last = match seen(client).await {
            Ok(s) if s.fes == fes && s.backends == backends && s.replicas == DEMO_REPLICAS => {
                return Ok(format!(
                    "ready: {fes} frontends, {backends} backends alive, demo table \
                     {DEMO_REPLICAS}/{DEMO_REPLICAS} replicas NORMAL"
                ));
            }
            Ok(s) => format!(
                "{}/{fes} frontends alive, {}/{backends} backends alive, \
                 {}/{DEMO_REPLICAS} demo replicas NORMAL",
                s.fes, s.backends, s.replicas
            ),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            anyhow::bail!("the playground was not ready within {within:?}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The leader's node id, as the first FE that answers knows it.
pub async fn leader(client: &Client) -> Option<u64> {
    client
        .status_within(Duration::from_millis(500))
        .await
        .ok()?
        .leader_id
}
