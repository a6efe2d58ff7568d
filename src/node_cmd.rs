//! `roster node ...`: CockroachDB-style operator commands over the client library.
//! `status [--decommission]` shows backends in cockroach's columns; `decommission ID...`
//! starts a drain and (with `--wait=all`, the default) follows it with a progress bar until the
//! master reports the backends DECOMMISSIONED or dropped: unlike CockroachDB, the command is not
//! what finishes the decommission, so leaving early (Ctrl-C or `--wait=none`) is harmless.
//! `--dry-run` runs the pre-check alone; `recommission ID...` cancels (and ends a drain).
//! Re-running a finished decommission succeeds (the runbook's re-run), and `status
//! --decommission` keeps listing backends the master dropped, from their tombstones.
//! `drain` / `undrain` take backends out of routing, or a frontend out of client service
//! (see `drain`).

mod drain;
mod follow;

use crate::sql_shell::ConnArgs;
use crate::table;
use roster_client::QueryResult;
use std::time::Duration;

#[derive(clap::Subcommand)]
pub enum NodeCmd {
    /// Backends, in `cockroach node status` columns.
    Status {
        /// Only these backends (ids or "host:port"); an unknown one is an error.
        ids: Vec<String>,
        /// Add the decommission columns (replicas, membership, ...) and list the backends
        /// the master decommissioned and dropped.
        #[arg(long)]
        decommission: bool,
        /// Everything: the decommission columns, and every dropped backend (also by DROPP).
        #[arg(long)]
        all: bool,
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

pub(crate) fn col<'a>(r: &'a QueryResult, row: usize, name: &str) -> &'a str {
    r.columns
        .iter()
        .position(|c| c == name)
        .and_then(|i| r.rows[row][i].as_deref())
        .unwrap_or("")
}

pub(crate) fn membership_of(status: &str) -> String {
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

/// Status rows of dropped backends, from SHOW DROPPED BACKENDS: decommissioned ones always,
/// those removed by DROPP (membership `dropped`) only with `all`.
fn dropped_rows(r: &QueryResult, all: bool) -> Vec<Vec<Option<String>>> {
    (0..r.rows.len())
        .filter_map(|i| {
            let decommissioned = col(r, i, "Decommissioned") == "true";
            (decommissioned || all).then(|| {
                [
                    col(r, i, "BackendId").to_string(),
                    format!("{}:{}", col(r, i, "Host"), col(r, i, "HeartbeatPort")),
                    String::new(),
                    String::new(),
                    col(r, i, "DroppedAt").to_string(),
                    String::new(),
                    "false".into(),
                    "false".into(),
                    "0".into(),
                    "false".into(),
                    if decommissioned {
                        "decommissioned"
                    } else {
                        "dropped"
                    }
                    .into(),
                    "false".into(),
                ]
                .into_iter()
                .map(Some)
                .collect()
            })
        })
        .collect()
}

/// Keep the rows of the backends named (by id or address); every name must match one.
fn only(mut t: QueryResult, names: &[String]) -> anyhow::Result<QueryResult> {
    if names.is_empty() {
        return Ok(t);
    }
    let cell = |row: &[Option<String>], i: usize| row[i].clone().unwrap_or_default();
    let matches = |row: &[Option<String>], n: &String| cell(row, 0) == *n || cell(row, 1) == *n;
    if let Some(n) = names.iter().find(|n| !t.rows.iter().any(|r| matches(r, n))) {
        anyhow::bail!("backend does not exist[{n}] (dropped ones are listed with --decommission)");
    }
    t.rows.retain(|r| names.iter().any(|n| matches(r, n)));
    Ok(t)
}

pub async fn run(cmd: NodeCmd) -> anyhow::Result<()> {
    match cmd {
        NodeCmd::Status {
            ids,
            decommission,
            all,
            conn,
        } => {
            let c = conn.client()?;
            let r = c.execute("SHOW BACKENDS").await?;
            let mut t = status_table(&r, decommission || all);
            if decommission || all {
                let dropped = c.execute("SHOW DROPPED BACKENDS").await?;
                t.rows.extend(dropped_rows(&dropped, all));
            }
            print!("{}", table::render(&only(t, &ids)?));
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
                let refused =
                    (0..r.rows.len()).any(|i| col(&r, i, "Readiness").starts_with("REFUSED"));
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
                follow::follow(&c, &ids).await?;
            }
        }
    }
    Ok(())
}
