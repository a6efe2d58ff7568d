//! Acceptance 8: malformed statements, unknown backend ids, bad host:port strings, duplicate
//! adds and DROP without DROPP each get a clear error and change nothing; no input takes an
//! FE down.

mod common;

use common::*;
use roster_client::ClientError;
use std::time::Duration;

fn err_text(r: Result<roster_client::QueryResult, ClientError>) -> String {
    match r {
        Err(ClientError::Server { code, message }) => {
            assert_eq!(code, 1105);
            assert!(
                message.starts_with("errCode = 2, detailMessage = "),
                "Doris-style error expected: {message}"
            );
            message["errCode = 2, detailMessage = ".len()..].to_string()
        }
        other => panic!("expected a server error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_statements_get_clear_errors_and_change_nothing() {
    let cluster = Cluster::start(3, 0);
    cluster.wait_leader(Duration::from_secs(20)).await;
    let c = cluster.client_of(&[0, 1, 2]);
    // Keep the empty backend DECOMMISSIONING: with the scheduler on, the master would finish
    // and drop it at once.
    c.execute(r#"ADMIN SET FRONTEND CONFIG ("disable_tablet_scheduler" = "true")"#)
        .await
        .expect("setup");
    c.execute(r#"ALTER SYSTEM ADD BACKEND "127.2.0.1:9050", "127.2.0.2:9050""#)
        .await
        .expect("setup");
    c.execute(r#"ALTER SYSTEM DECOMMISSION BACKEND "10002""#)
        .await
        .expect("setup");
    let before = c.execute("SHOW BACKENDS").await.unwrap();
    let frontends_before = c.execute("SHOW FRONTENDS").await.unwrap().rows.len();

    let cases: &[(&str, &str)] = &[
        // Malformed statements say where.
        (
            r#"ALTER SYSTEM ADD BACKENDZ "127.2.0.3:9050""#,
            "found \"BACKENDZ\" at line 1, column 18",
        ),
        ("ALTER SYSTEM", "at line 1, column 13"),
        ("SHOW BACKENDS extra", "at line 1, column 15"),
        (
            "ALTER SYSTEM ADD BACKEND \"127.2.0.3:9050\"\n  PROPERTIES (\"tag.location\" = )",
            "at line 2, column",
        ),
        ("", "at line 1, column 1"),
        // Bad host:port strings.
        (
            r#"ALTER SYSTEM ADD BACKEND "abc""#,
            r#"invalid backend address "abc""#,
        ),
        (
            r#"ALTER SYSTEM ADD BACKEND "127.2.0.3:99999""#,
            "invalid port",
        ),
        (
            r#"ALTER SYSTEM ADD BACKEND ":9050""#,
            "invalid backend address",
        ),
        (r#"ALTER SYSTEM ADD FOLLOWER "nohost""#, "invalid"),
        // Unknown backend ids and addresses.
        (
            r#"ALTER SYSTEM DROPP BACKEND "99999""#,
            "backend does not exist[99999]",
        ),
        (
            r#"ALTER SYSTEM DECOMMISSION BACKEND "127.2.0.9:9050""#,
            "backend does not exist[127.2.0.9:9050]",
        ),
        (
            r#"CANCEL DECOMMISSION BACKEND "10001", "424242""#,
            "backend does not exist[424242]",
        ),
        (
            r#"ALTER SYSTEM MODIFY BACKEND "31337" SET ("disable_query" = "true")"#,
            "backend does not exist[31337]",
        ),
        // Duplicates, in the registry and inside one statement.
        (
            r#"ALTER SYSTEM ADD BACKEND "127.2.0.1:9050""#,
            "Same backend already exists[127.2.0.1:9050]",
        ),
        (
            r#"ALTER SYSTEM ADD BACKEND "127.2.0.7:9050", "127.2.0.7:9050""#,
            "Same backend already exists[127.2.0.7:9050]",
        ),
        // DROP without DROPP: Doris's exact text.
        (
            r#"ALTER SYSTEM DROP BACKEND "10001""#,
            "It is highly NOT RECOMMENDED to use DROP BACKEND stmt.It is not safe to directly drop a backend. All data on this backend will be discarded permanently. If you insist, use DROPP instead of DROP",
        ),
        // Bad properties and values.
        (
            r#"ALTER SYSTEM ADD BACKEND "127.2.0.8:9050" PROPERTIES ("tag.colour" = "red")"#,
            "unknown property \"tag.colour\"",
        ),
        (
            r#"ALTER SYSTEM MODIFY BACKEND "10001" SET ("disable_query" = "maybe")"#,
            "expected true or false",
        ),
        // Frontend statements naming nobody.
        (
            r#"ALTER SYSTEM DROP FOLLOWER "127.0.0.1:1""#,
            "frontend 127.0.0.1:1 does not exist",
        ),
        (
            r#"ALTER SYSTEM DROP OBSERVER "127.0.0.1:1""#,
            "frontend 127.0.0.1:1 does not exist",
        ),
    ];
    for (sql, want) in cases {
        let got = err_text(c.execute(sql).await);
        assert!(
            got.contains(want),
            "{sql:?}\n  got:  {got}\n  want: ...{want}..."
        );
    }

    // Repeating a decommission is harmless; nothing above changed anything.
    c.execute(r#"ALTER SYSTEM DECOMMISSION BACKEND "10002""#)
        .await
        .expect("repeat decommission");
    for i in 0..3 {
        let after = cluster.client(i).execute("SHOW BACKENDS").await.unwrap();
        assert_eq!(
            after.rows,
            before.rows,
            "fe{} state changed after refused statements",
            i + 1
        );
    }
    assert_eq!(
        c.execute("SHOW FRONTENDS").await.unwrap().rows.len(),
        frontends_before
    );

    // Garbage of every shape: each gets an error, and every FE still answers afterwards.
    let junk = [
        "\u{0}",
        "'unterminated",
        "ALTER SYSTEM ADD BACKEND (((",
        ";;;;",
        "🦀 SHOW",
        "SELECT @@",
        "ALTER SYSTEM ADD BACKEND \"[::1\"",
    ];
    for j in junk {
        assert!(c.execute(j).await.is_err(), "{j:?} should be refused");
    }
    for i in 0..3 {
        cluster
            .client(i)
            .execute("SHOW FRONTENDS")
            .await
            .expect("FE still serving");
    }
}
