//! The FE's `/metrics` (Prometheus text, unauthenticated): the durable-commit counters that
//! `roster bench quorum` reads from the leader are there, and a write makes the leader's grow.

mod common;

use common::*;
use std::time::Duration;

/// The value of the sample `name` in a Prometheus text body.
fn sample(body: &str, name: &str) -> Option<u64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
}

const LOG: &str = r#"roster_disk_durable_commits_total{file="log.redb"}"#;
const SM: &str = r#"roster_disk_durable_commits_total{file="sm.redb"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_leaders_durable_commits() {
    let cluster = Cluster::start(3, 0);
    let l = cluster.wait_leader(Duration::from_secs(30)).await;
    let port = cluster.nodes[l].http_port;
    let (code, before) = http_get(port, "/metrics", None);
    assert_eq!(code, 200, "{before}");
    assert!(
        before.contains("# TYPE roster_disk_durable_commits_total counter"),
        "{before}"
    );
    let (log0, sm0) = (sample(&before, LOG), sample(&before, SM));
    assert!(log0.is_some() && sm0.is_some(), "{before}");

    let c = cluster.client(l);
    exec_retry(
        &c,
        r#"ALTER SYSTEM ADD BACKEND "127.0.9.1:9050""#,
        Duration::from_secs(20),
    )
    .await
    .expect("a write");
    exec_retry(
        &c,
        r#"ALTER SYSTEM MODIFY BACKEND "127.0.9.1:9050" SET ("tag.location" = "m1")"#,
        Duration::from_secs(20),
    )
    .await
    .expect("a write");

    let (code, after) = http_get(port, "/metrics", None);
    assert_eq!(code, 200, "{after}");
    let (log1, sm1) = (sample(&after, LOG), sample(&after, SM));
    // Two writes: at least one more durable commit of each file on the leader.
    assert!(log1 > log0, "log.redb: {log0:?} -> {log1:?}\n{after}");
    assert!(sm1 > sm0, "sm.redb: {sm0:?} -> {sm1:?}\n{after}");
}
