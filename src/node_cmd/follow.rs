//! `roster node decommission --wait=all`: follow the drain with a progress bar until the master
//! reports every backend DECOMMISSIONED or dropped. Blockers are printed once when they appear
//! and once when they clear (not the whole table every second), and the last line carries the
//! totals, read back from the master (a dropped backend's tombstone keeps them).

use super::{col, membership_of};
use crate::table;
use roster_client::{Client, QueryResult};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// The backends named (ids or host:port) that are still to be followed: live and not yet
/// DECOMMISSIONED. The others were answered by the statement itself.
fn to_follow(backends: &QueryResult, names: &[String]) -> BTreeSet<String> {
    (0..backends.rows.len())
        .filter(|i| {
            let id = col(backends, *i, "BackendId");
            let addr = format!(
                "{}:{}",
                col(backends, *i, "Host"),
                col(backends, *i, "HeartbeatPort")
            );
            names.iter().any(|n| n == id || *n == addr)
                && membership_of(col(backends, *i, "Status")) != "decommissioned"
        })
        .map(|i| col(backends, i, "BackendId").to_string())
        .collect()
}

/// The last SHOW DECOMMISSION numbers of one backend (kept when its row goes away).
#[derive(Default, Clone, Copy)]
struct Progress {
    total: u64,
    left: u64,
    bytes_moved: u64,
    bytes_left: u64,
    rate: u64,
    blockers: u64,
}

/// A blocker as the operator reads it, keyed by (tablet, backend): its reason text changes
/// every second ("has run N s") but it is the same blocker.
type Blockers = BTreeMap<(String, String), String>;

fn blockers_of(r: &QueryResult, ids: &BTreeSet<String>) -> Blockers {
    (0..r.rows.len())
        .filter(|i| ids.contains(col(r, *i, "BackendId")))
        .map(|i| {
            (
                (
                    col(r, i, "TabletId").to_string(),
                    col(r, i, "BackendId").to_string(),
                ),
                format!("of table {}: {}", col(r, i, "Table"), col(r, i, "Reason")),
            )
        })
        .collect()
}

/// Print what appeared and what cleared since `shown`, and remember the current set.
fn report_blockers(bar: &indicatif::ProgressBar, shown: &mut Blockers, now: Blockers) {
    let mut lines = Vec::new();
    for ((tablet, backend), why) in &now {
        if !shown.contains_key(&(tablet.clone(), backend.clone())) {
            lines.push(format!(
                "blocker: tablet {tablet} on backend {backend} {why}"
            ));
        }
    }
    for (tablet, backend) in shown.keys() {
        if !now.contains_key(&(tablet.clone(), backend.clone())) {
            lines.push(format!("cleared: tablet {tablet} on backend {backend}"));
        }
    }
    if !lines.is_empty() {
        bar.suspend(|| lines.iter().for_each(|l| println!("{l}")));
    }
    *shown = now;
}

pub async fn follow(c: &Client, names: &[String]) -> anyhow::Result<()> {
    let started = Instant::now();
    let ids = to_follow(&c.execute("SHOW BACKENDS").await?, names);
    if ids.is_empty() {
        return Ok(());
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} tablets moved  {msg}",
        )
        .expect("valid template"),
    );
    let mut progress: BTreeMap<String, Progress> = BTreeMap::new();
    let mut shown = Blockers::new();
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
        for i in 0..d.rows.len() {
            let id = col(&d, i, "BackendId");
            if ids.contains(id) {
                let n = |name: &str| col(&d, i, name).parse::<u64>().unwrap_or(0);
                progress.insert(
                    id.to_string(),
                    Progress {
                        total: n("TabletsTotal"),
                        left: n("TabletsLeft"),
                        bytes_moved: n("BytesMoved"),
                        bytes_left: n("BytesLeft"),
                        rate: n("RateBytesPerSec"),
                        blockers: n("Blockers"),
                    },
                );
            }
        }
        let sum = |f: fn(&Progress) -> u64| progress.values().map(f).sum::<u64>();
        let total = sum(|p| p.total);
        bar.set_length(total);
        bar.set_position(if done {
            total
        } else {
            total.saturating_sub(sum(|p| p.left))
        });
        let rate = sum(|p| p.rate);
        let eta = match rate {
            0 => "-".to_string(),
            r => format!("{} s", sum(|p| p.bytes_left).div_ceil(r)),
        };
        let blockers = if done { 0 } else { sum(|p| p.blockers) };
        bar.set_message(format!(
            "{} moved, {}/s, ETA {eta}, {blockers} blocker(s)",
            roster_proto::format::bytes(sum(|p| p.bytes_moved)),
            roster_proto::format::bytes(rate)
        ));
        let now = if blockers > 0 {
            blockers_of(&c.execute("SHOW DECOMMISSION BLOCKERS").await?, &ids)
        } else {
            Blockers::new()
        };
        report_blockers(&bar, &mut shown, now);
        if done {
            bar.finish();
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    print_outcome(c, &ids, started.elapsed()).await
}

/// The cockroach-style table of the backends followed, then one totals line per backend, read
/// back from the master: SHOW DECOMMISSION for a kept one, its tombstone for a dropped one.
async fn print_outcome(c: &Client, ids: &BTreeSet<String>, took: Duration) -> anyhow::Result<()> {
    let after = c.execute("SHOW BACKENDS").await?;
    let kept = c.execute("SHOW DECOMMISSION").await?;
    let dropped = c.execute("SHOW DROPPED BACKENDS").await?;
    let row = |r: &QueryResult, id: &str| (0..r.rows.len()).find(|i| col(r, *i, "BackendId") == id);
    let mut rows = Vec::new();
    let mut totals = Vec::new();
    for id in ids {
        let num = |r: &QueryResult, i: usize, name: &str| col(r, i, name).parse().unwrap_or(0u64);
        let (tablets, bytes, how) = match (row(&kept, id), row(&dropped, id)) {
            (Some(i), _) => (
                num(&kept, i, "TabletsTotal"),
                num(&kept, i, "BytesMoved"),
                "",
            ),
            (None, Some(i)) => (
                num(&dropped, i, "TabletsMoved"),
                num(&dropped, i, "BytesMoved"),
                "; dropped",
            ),
            (None, None) => (0, 0, "; dropped"),
        };
        totals.push(format!(
            "decommissioned {id}: {tablets} tablets, {} moved in {} s{how}",
            roster_proto::format::bytes(bytes),
            took.as_secs()
        ));
        rows.push(match row(&after, id) {
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
    totals.iter().for_each(|t| println!("{t}"));
    Ok(())
}
