//! `roster node ...`: CockroachDB-style operator commands over the client library.
//! `status [--decommission]` shows backends in cockroach's columns; `decommission ID...`
//! starts a drain and (with `--wait=all`, the default) follows it with a progress bar until the
//! master reports the backends DECOMMISSIONED or dropped: unlike CockroachDB, the command is not
//! what finishes the decommission, so leaving early (Ctrl-C or `--wait=none`) is harmless.
//! `--dry-run` runs the pre-check alone; `recommission ID...` cancels (and ends a drain).
//! `drain` / `undrain` take backends out of routing, or a frontend out of client service
//! (see `drain`).

mod drain;

use crate::sql_shell::ConnArgs;
use crate::table;
use roster_api::{Client, QueryResult};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

#[derive(clap::Subcommand)]
pub enum NodeCmd {
    /// Backends, in `cockroach node status` columns.
    Status {
        /// Add the decommission columns (replicas, membership, ...).
        #[arg(long)]
        decommission: bool,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Decommission backends (by id or "host:port") and, by default, wait until they are done.
    Decommission {
        #[arg(required = true)]
        ids: Vec<String>,
        /// `all`: follow the drain to the end with a progress bar; `none`: return at once.
        #[arg(long, default_value = "all", value_parser = ["all", "none"])]
        wait: String,
        /// Only run the pre-check (EXPLAIN): what would move and what would block it.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Drain backends (queries and loads routed away, nothing moved) and/or frontends
    /// (leadership moved away, new client connections refused), then wait until it is done.
    Drain {
        /// Backends, by id or "host:port".
        ids: Vec<String>,
        /// A frontend to drain, by its rpc address (host:rpc_port, as in --endpoints);
        /// repeatable. Local to that FE's process: a restart un-drains it.
        #[arg(long = "frontend", value_name = "HOST:RPC_PORT")]
        frontends: Vec<String>,
        /// How long to wait for the drain to complete before reporting "drain not complete"
        /// and exiting 1 (e.g. 10m, 30s, 500ms).
        #[arg(long, default_value = "10m", value_parser = drain::parse_duration)]
        drain_wait: Duration,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Undo a drain: backends get back the admin flags they had, frontends serve clients.
    Undrain {
        ids: Vec<String>,
        #[arg(long = "frontend", value_name = "HOST:RPC_PORT")]
        frontends: Vec<String>,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Cancel a decommission: the backends return to ACTIVE, moved replicas stay. Also ends a
    /// drain of the backends named.
    Recommission {
        #[arg(required = true)]
        ids: Vec<String>,
        #[command(flatten)]
        conn: ConnArgs,
    },
}

fn quoted(ids: &[String]) -> String {
    ids.iter()
        .map(|i| format!("\"{}\"", i.replace('"', "")))
        .collect::<Vec<_>>()
        .join(", ")
}

fn col<'a>(r: &'a QueryResult, row: usize, name: &str) -> &'a str {
    r.columns
        .iter()
        .position(|c| c == name)
        .and_then(|i| r.rows[row][i].as_deref())
        .unwrap_or("")
}

fn membership_of(status: &str) -> String {
    status
        .split("\"membership\":\"")
        .nth(1)
        .and_then(|x| x.split('"').next())
        .unwrap_or("")
        .to_ascii_lowercase()
}

fn locality(tag: &str) -> String {
    tag.split("\"location\" : \"")
        .nth(1)
        .and_then(|x| x.split('"').next())
        .map(|l| format!("location={l}"))
        .unwrap_or_default()
}

/// SHOW BACKENDS in cockroach's `node status` columns.
fn status_table(r: &QueryResult, decommission: bool) -> QueryResult {
    let mut columns = vec![
        "id",
        "address",
        "build",
        "started_at",
        "updated_at",
        "locality",
        "is_available",
        "is_live",
    ];
    if decommission {
        columns.extend([
            "gossiped_replicas",
            "is_decommissioning",
            "membership",
            "is_draining",
        ]);
    }
    let rows = (0..r.rows.len())
        .map(|i| {
            let alive = col(r, i, "Alive").to_string();
            let membership = membership_of(col(r, i, "Status"));
            let mut row = vec![
                col(r, i, "BackendId").to_string(),
                format!("{}:{}", col(r, i, "Host"), col(r, i, "HeartbeatPort")),
                col(r, i, "Version").to_string(),
                col(r, i, "LastStartTime").to_string(),
                col(r, i, "LastHeartbeat").to_string(),
                locality(col(r, i, "Tag")),
                alive.clone(),
                alive,
            ];
            if decommission {
                row.extend([
                    col(r, i, "TabletNum").to_string(),
                    (membership == "decommissioning").to_string(),
                    membership,
                    col(r, i, "Status")
                        .contains("\"isDraining\":true")
                        .to_string(),
                ]);
            }
            row.into_iter().map(Some).collect()
        })
        .collect();
    QueryResult::rows(&columns, rows)
}

pub async fn run(cmd: NodeCmd) -> anyhow::Result<()> {
    match cmd {
        NodeCmd::Status { decommission, conn } => {
            let c = conn.client()?;
            let r = c.execute("SHOW BACKENDS").await?;
            print!("{}", table::render(&status_table(&r, decommission)));
        }
        NodeCmd::Recommission { ids, conn } => {
            let c = conn.client()?;
            let r = c
                .execute(&format!("CANCEL DECOMMISSION BACKEND {}", quoted(&ids)))
                .await?;
            print!("{}", table::render(&r));
            drain::undrain_recommissioned(&c, &ids).await?;
        }
        NodeCmd::Drain {
            ids,
            frontends,
            drain_wait,
            conn,
        } => {
            let t = drain::Targets {
                backends: ids,
                frontends,
            };
            drain::drain(&conn, &t, drain_wait).await?;
        }
        NodeCmd::Undrain {
            ids,
            frontends,
            conn,
        } => {
            let t = drain::Targets {
                backends: ids,
                frontends,
            };
            drain::undrain(&conn, &t).await?;
        }
        NodeCmd::Decommission {
            ids,
            wait,
            dry_run,
            conn,
        } => {
            let c = conn.client()?;
            if dry_run {
                let r = c
                    .execute(&format!(
                        "EXPLAIN ALTER SYSTEM DECOMMISSION BACKEND {}",
                        quoted(&ids)
                    ))
                    .await?;
                print!("{}", table::render(&r));
                let refused = (0..r.rows.len()).any(|i| col(&r, i, "Readiness") != "READY");
                if refused {
                    anyhow::bail!("the decommission would be refused (see the reasons above)");
                }
                return Ok(());
            }
            let r = c
                .execute(&format!(
                    "ALTER SYSTEM DECOMMISSION BACKEND {}",
                    quoted(&ids)
                ))
                .await?;
            print!("{}", table::render(&r));
            if wait == "all" {
                follow(&c, &ids).await?;
            }
        }
    }
    Ok(())
}

/// The backend ids the operator named (ids or host:port), resolved through SHOW BACKENDS.
fn resolve(backends: &QueryResult, names: &[String]) -> BTreeSet<String> {
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

/// Follow the drain with a progress bar until every backend is DECOMMISSIONED or dropped.
async fn follow(c: &Client, names: &[String]) -> anyhow::Result<()> {
    let ids = resolve(&c.execute("SHOW BACKENDS").await?, names);
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} tablets moved  {msg}",
        )
        .expect("valid template"),
    );
    let mut last_blockers = String::new();
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    loop {
        let backends = c.execute("SHOW BACKENDS").await?;
        let present: BTreeMap<String, String> = (0..backends.rows.len())
            .map(|i| {
                (
                    col(&backends, i, "BackendId").to_string(),
                    membership_of(col(&backends, i, "Status")),
                )
            })
            .collect();
        let done = ids
            .iter()
            .all(|id| present.get(id).is_none_or(|m| m == "decommissioned"));
        let d = c.execute("SHOW DECOMMISSION").await?;
        let (mut left, mut bytes_moved, mut bytes_left, mut rate, mut blockers) = (0, 0, 0, 0, 0);
        for i in 0..d.rows.len() {
            let id = col(&d, i, "BackendId").to_string();
            if !ids.contains(&id) {
                continue;
            }
            let n = |name: &str| col(&d, i, name).parse::<u64>().unwrap_or(0);
            totals.insert(id, n("TabletsTotal"));
            left += n("TabletsLeft");
            bytes_moved += n("BytesMoved");
            bytes_left += n("BytesLeft");
            rate += n("RateBytesPerSec");
            blockers += n("Blockers");
        }
        let total: u64 = totals.values().sum();
        bar.set_length(total);
        bar.set_position(if done {
            total
        } else {
            total.saturating_sub(left)
        });
        let eta = if rate > 0 {
            format!("{} s", bytes_left.div_ceil(rate))
        } else {
            "-".to_string()
        };
        bar.set_message(format!(
            "{} moved, {}/s, ETA {eta}, {blockers} blocker(s)",
            roster_api::format::bytes(bytes_moved),
            roster_api::format::bytes(rate)
        ));
        if blockers > 0 {
            let b = c.execute("SHOW DECOMMISSION BLOCKERS").await?;
            let text = table::render(&b);
            if text != last_blockers {
                bar.suspend(|| print!("{text}"));
                last_blockers = text;
            }
        }
        if done {
            bar.finish();
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let after = c.execute("SHOW BACKENDS").await?;
    let mut rows = Vec::new();
    for id in &ids {
        let row = (0..after.rows.len()).find(|i| col(&after, *i, "BackendId") == id);
        rows.push(match row {
            Some(i) => vec![
                Some(id.clone()),
                Some(col(&after, i, "Alive").to_string()),
                Some(col(&after, i, "TabletNum").to_string()),
                Some(membership_of(col(&after, i, "Status"))),
            ],
            None => vec![
                Some(id.clone()),
                None,
                Some("0".into()),
                Some("decommissioned (dropped)".into()),
            ],
        });
    }
    print!(
        "{}",
        table::render(&QueryResult::rows(
            &["id", "is_live", "replicas", "membership"],
            rows
        ))
    );
    println!("No more data reported on target nodes. The master finished the decommission itself.");
    Ok(())
}
