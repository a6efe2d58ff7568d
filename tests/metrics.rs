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
    // Two writes: at least one more durable commit of the log on the leader.
    let log1 = sample(&after, LOG);
    assert!(log1 > log0, "log.redb: {log0:?} -> {log1:?}\n{after}");
    // sm.redb is made durable at most once a second, with a later apply (the liveness of the
    // dead backend keeps applying), once the log covers it: wait for that, with a deadline.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, now) = http_get(port, "/metrics", None);
        let sm1 = sample(&now, SM);
        if sm1 > sm0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sm.redb: {sm0:?} -> {sm1:?} after 20 s\n{now}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
