//! Backend, frontend, decommission and blacklist statements, and general error reporting.

use roster_membership::BackendId;
use roster_sql::{BackendRef, FrontendRole, HostPort, ParseError, Statement, parse};

fn ok(sql: &str) -> Statement {
    parse(sql).unwrap_or_else(|e| panic!("{sql:?} failed: {e}"))
}

/// The error's message, line and column.
fn err(sql: &str) -> (String, u64, u64) {
    match parse(sql) {
        Ok(stmt) => panic!("{sql:?} parsed as {stmt:?}"),
        Err(ParseError {
            message,
            line,
            column,
        }) => (message, line, column),
    }
}

fn hp(host: &str, port: u16) -> HostPort {
    HostPort {
        host: host.to_string(),
        port,
    }
}

fn addr(host: &str, port: u16) -> BackendRef {
    BackendRef::Addr(hp(host, port))
}

#[test]
fn add_backends_all_quote_styles_and_multi_entry_strings() {
    let stmt = ok("alter System ADD backend \"h1:9050\", 'h2:9051', \" h3:1 , h4:2 \";");
    assert_eq!(
        stmt,
        Statement::AddBackends {
            addrs: vec![hp("h1", 9050), hp("h2", 9051), hp("h3", 1), hp("h4", 2)],
            properties: vec![],
        }
    );
}

#[test]
fn add_backends_seed_examples() {
    assert_eq!(
        ok(r#"ALTER SYSTEM ADD BACKEND "127.0.9.1:9050,127.0.9.2:9050";"#),
        Statement::AddBackends {
            addrs: vec![hp("127.0.9.1", 9050), hp("127.0.9.2", 9050)],
            properties: vec![],
        }
    );
    let sql = "ALTER SYSTEM ADD BACKEND \"127.0.9.3:9050\" PROPERTIES (\n    \
               \"tag.public_endpoint\" = \"11.10.20.12:8010\",\n    \
               'Tag.Private_Endpoint' = '10.10.10.9:8020'\n);";
    assert_eq!(
        ok(sql),
        Statement::AddBackends {
            addrs: vec![hp("127.0.9.3", 9050)],
            properties: vec![
                ("tag.public_endpoint".into(), "11.10.20.12:8010".into()),
                ("Tag.Private_Endpoint".into(), "10.10.10.9:8020".into()),
            ],
        }
    );
}

#[test]
fn ipv6_in_brackets() {
    let stmt = ok(r#"ALTER SYSTEM ADD BACKEND "[::1]:9050""#);
    assert_eq!(
        stmt,
        Statement::AddBackends {
            addrs: vec![hp("::1", 9050)],
            properties: vec![],
        }
    );
    assert_eq!(stmt.to_string(), r#"ALTER SYSTEM ADD BACKEND "[::1]:9050""#);
    let (msg, _, col) = err(r#"ALTER SYSTEM ADD BACKEND "::1:9050""#);
    assert_eq!(
        msg,
        r#"invalid backend address "::1:9050": IPv6 addresses need brackets, e.g. "[::1]:9050""#
    );
    assert_eq!(col, 26);
}

#[test]
fn bad_addresses_point_at_the_string() {
    assert_eq!(
        err(r#"ALTER SYSTEM ADD BACKEND "abc""#),
        (
            r#"invalid backend address "abc": expected "host:port""#.into(),
            1,
            26
        )
    );
    assert_eq!(
        err(r#"ALTER SYSTEM ADD BACKEND "h:99999""#),
        (r#"invalid port in "h:99999""#.into(), 1, 26)
    );
    assert_eq!(
        err(r#"ALTER SYSTEM ADD BACKEND "h:0""#),
        (r#"invalid port in "h:0""#.into(), 1, 26)
    );
    assert_eq!(
        err(r#"ALTER SYSTEM ADD BACKEND ":9050""#),
        (
            r#"invalid backend address ":9050": empty host"#.into(),
            1,
            26
        )
    );
    // The second literal is the bad one.
    assert_eq!(
        err(r#"ALTER SYSTEM ADD BACKEND "h1:9050", "h2:x""#),
        (r#"invalid port in "h2:x""#.into(), 1, 37)
    );
    // An id is not an address for ADD.
    assert_eq!(
        err(r#"ALTER SYSTEM ADD BACKEND "10002""#).0,
        r#"invalid backend address "10002": expected "host:port""#
    );
    // An empty entry in a multi-entry string.
    assert_eq!(
        err(r#"ALTER SYSTEM ADD BACKEND "h1:1,""#).0,
        r#"invalid backend address "": expected "host:port""#
    );
    assert_eq!(
        err(r#"ALTER SYSTEM ADD BACKEND "a b:1""#).0,
        r#"invalid backend address "a b:1": invalid host"#
    );
}

#[test]
fn keyword_typos_say_what_was_expected() {
    assert_eq!(
        err(r#"ALTER SYSTEM ADD BACKENDZ "h:1""#),
        (
            r#"Syntax error: expected one of BACKEND, FOLLOWER, OBSERVER, found "BACKENDZ""#.into(),
            1,
            18
        )
    );
    assert_eq!(
        err(r#"ALTER SYSTEM DECOMMISSION BACKENDZ "1""#),
        (
            r#"Syntax error: expected BACKEND, found "BACKENDZ""#.into(),
            1,
            27
        )
    );
    assert_eq!(
        err("ALTER TABLE t").0,
        r#"Syntax error: expected SYSTEM, found "TABLE""#
    );
    assert_eq!(
        err("FROB").0,
        r#"Syntax error: expected a statement, found "FROB""#
    );
    // Display form of the error.
    assert_eq!(
        parse(r#"ALTER SYSTEM DROPP BACKENDZ "1""#)
            .unwrap_err()
            .to_string(),
        r#"Syntax error: expected BACKEND, found "BACKENDZ" at line 1, column 20"#
    );
}

#[test]
fn end_of_input_points_past_the_last_token() {
    assert_eq!(
        err(""),
        (
            "Syntax error: expected a statement, found end of input".into(),
            1,
            1
        )
    );
    assert_eq!(err("  \n  -- only a comment\n").1, 1);
    assert_eq!(
        err("ALTER SYSTEM ADD BACKEND   "),
        (
            r#"Syntax error: expected a "host:port" string, found end of input"#.into(),
            1,
            25
        )
    );
    // Missing closing parenthesis.
    assert_eq!(
        err(r#"ALTER SYSTEM ADD BACKEND "h:1" PROPERTIES ("a"="b""#),
        (
            r#"Syntax error: expected "," or ")", found end of input"#.into(),
            1,
            51
        )
    );
}

#[test]
fn one_statement_and_optional_semicolon() {
    assert_eq!(ok("SHOW BACKENDS;"), Statement::ShowBackends);
    assert_eq!(ok("show dropped backends;"), Statement::ShowDroppedBackends);
    assert_eq!(
        err("SHOW BACKENDS; SHOW FRONTENDS"),
        (
            r#"Syntax error: expected end of input, found "SHOW""#.into(),
            1,
            16
        )
    );
    assert_eq!(
        err("SHOW BACKENDS;;"),
        (
            r#"Syntax error: expected end of input, found ";""#.into(),
            1,
            15
        )
    );
    assert_eq!(
        err("SHOW BACKENDS x"),
        (
            r#"Syntax error: expected ";" or end of input, found "x""#.into(),
            1,
            15
        )
    );
}

#[test]
fn multi_line_errors_report_the_right_line() {
    assert_eq!(
        err("ALTER SYSTEM ADD BACKEND\n  \"h1:9050\", \"nope\""),
        (
            r#"invalid backend address "nope": expected "host:port""#.into(),
            2,
            14
        )
    );
    assert_eq!(
        err("alter system\ndecommission backend 10002"),
        (
            r#"Syntax error: expected a "host:port" or backend id string, found "10002""#.into(),
            2,
            22
        )
    );
}

#[test]
fn tokenizer_errors_keep_their_position() {
    assert_eq!(
        err(r#"ALTER SYSTEM ADD BACKEND "h:1"#),
        ("Syntax error: Unterminated string literal".into(), 1, 26)
    );
}

#[test]
fn comments_are_ignored() {
    assert_eq!(
        ok("/* hi */ SHOW -- x\n FRONTENDS # y"),
        Statement::ShowFrontends
    );
}

#[test]
fn drop_dropp_decommission_cancel() {
    let targets = vec![
        BackendRef::Id(BackendId(10002)),
        addr("h", 9050),
        BackendRef::Id(BackendId(7)),
    ];
    assert_eq!(
        ok(r#"ALTER SYSTEM DROP BACKEND "10002", 'h:9050,7'"#),
        Statement::DropBackends {
            targets: targets.clone()
        }
    );
    assert_eq!(
        ok(r#"alter system dropp backend "10002", 'h:9050,7';"#),
        Statement::DroppBackends {
            targets: targets.clone()
        }
    );
    assert_eq!(
        ok(r#"Alter System Decommission Backend "10002", 'h:9050,7'"#),
        Statement::DecommissionBackends {
            targets: targets.clone(),
            explain: false
        }
    );
    assert_eq!(
        ok(r#"explain ALTER SYSTEM DECOMMISSION BACKEND "10002", 'h:9050,7';"#),
        Statement::DecommissionBackends {
            targets: targets.clone(),
            explain: true
        }
    );
    assert_eq!(
        ok(r#"cancel decommission backend "10002", 'h:9050,7'"#),
        Statement::CancelDecommission { targets }
    );
    assert_eq!(
        err(r#"EXPLAIN ALTER SYSTEM ADD BACKEND "h:1""#),
        (
            r#"Syntax error: expected DECOMMISSION, found "ADD""#.into(),
            1,
            22
        )
    );
    assert_eq!(
        err(r#"ALTER SYSTEM DROPP BACKEND "abc""#),
        (
            r#"invalid backend address "abc": expected "host:port" or a backend id"#.into(),
            1,
            28
        )
    );
    assert_eq!(
        err(r#"ALTER SYSTEM DROPP BACKEND "99999999999999999999""#).0,
        r#"invalid backend id "99999999999999999999": out of range"#
    );
}

#[test]
fn modify_backends() {
    assert_eq!(
        ok(
            r#"ALTER SYSTEM MODIFY BACKEND "10002", "h:1" SET ("tag.location" = "g1", 'disable_query' = 'true');"#
        ),
        Statement::ModifyBackends {
            targets: vec![BackendRef::Id(BackendId(10002)), addr("h", 1)],
            properties: vec![
                ("tag.location".into(), "g1".into()),
                ("disable_query".into(), "true".into()),
            ],
        }
    );
    assert_eq!(
        err(r#"ALTER SYSTEM MODIFY BACKEND "10002" ("a" = "b")"#),
        (r#"Syntax error: expected SET, found "(""#.into(), 1, 37)
    );
    assert_eq!(
        err(r#"ALTER SYSTEM MODIFY BACKEND "1" SET ()"#),
        (
            r#"Syntax error: expected a property name string, found ")""#.into(),
            1,
            38
        )
    );
    assert_eq!(
        err(r#"ALTER SYSTEM MODIFY BACKEND "1" SET ("a" = "1", "A" = "2")"#),
        (r#"duplicate property "A""#.into(), 1, 49)
    );
}

#[test]
fn frontends() {
    assert_eq!(
        ok(r#"alter system add follower "fe2:9010";"#),
        Statement::AddFrontend {
            role: FrontendRole::Follower,
            addr: hp("fe2", 9010)
        }
    );
    assert_eq!(
        ok("ALTER SYSTEM ADD OBSERVER 'fe3:9010'"),
        Statement::AddFrontend {
            role: FrontendRole::Observer,
            addr: hp("fe3", 9010)
        }
    );
    assert_eq!(
        ok(r#"ALTER SYSTEM DROP FOLLOWER " fe2:9010 ""#),
        Statement::DropFrontend {
            role: FrontendRole::Follower,
            addr: hp("fe2", 9010)
        }
    );
    assert_eq!(
        ok(r#"ALTER SYSTEM DROP OBSERVER "[fe80::1]:9010""#),
        Statement::DropFrontend {
            role: FrontendRole::Observer,
            addr: hp("fe80::1", 9010)
        }
    );
    assert_eq!(
        err(r#"ALTER SYSTEM ADD FOLLOWER "a:1,b:2""#),
        (
            r#"invalid frontend address "a:1,b:2": expected a single "host:port""#.into(),
            1,
            27
        )
    );
    assert_eq!(
        err(r#"ALTER SYSTEM ADD FOLLOWER "10002""#).0,
        r#"invalid frontend address "10002": expected "host:port""#
    );
    assert_eq!(
        err(r#"ALTER SYSTEM ADD FOLLOWER "a:1", "b:2""#),
        (
            r#"Syntax error: expected ";" or end of input, found ",""#.into(),
            1,
            32
        )
    );
    assert_eq!(ok("show frontends"), Statement::ShowFrontends);
    assert_eq!(ok("Show Backends ;"), Statement::ShowBackends);
}

#[test]
fn show_decommission() {
    assert_eq!(ok("SHOW DECOMMISSION;"), Statement::ShowDecommission);
    assert_eq!(
        ok("show decommission blockers"),
        Statement::ShowDecommissionBlockers { backend: None }
    );
    assert_eq!(
        ok("SHOW DECOMMISSION BLOCKERS FOR '10002'"),
        Statement::ShowDecommissionBlockers {
            backend: Some(BackendRef::Id(BackendId(10002)))
        }
    );
    assert_eq!(
        ok(r#"SHOW DECOMMISSION BLOCKERS FOR "h:9050""#),
        Statement::ShowDecommissionBlockers {
            backend: Some(addr("h", 9050))
        }
    );
    assert_eq!(
        err(r#"SHOW DECOMMISSION BLOCKERS FOR "1,2""#),
        (
            r#"invalid backend "1,2": expected a single backend"#.into(),
            1,
            32
        )
    );
    assert_eq!(
        err("SHOW DECOMMISSION BLOCKERS FOR").0,
        r#"Syntax error: expected a "host:port" or backend id string, found end of input"#
    );
}

#[test]
fn blacklist() {
    assert_eq!(
        ok("add backend blacklist 10001, 10002;"),
        Statement::AddBlacklist {
            ids: vec![10001, 10002]
        }
    );
    assert_eq!(
        ok("DELETE BACKEND BLACKLIST 10001, \"10003\""),
        Statement::DeleteBlacklist {
            ids: vec![10001, 10003]
        }
    );
    assert_eq!(
        ok("SHOW BACKEND BLACKLIST"),
        Statement::ShowBlacklist {
            all_frontends: false
        }
    );
    assert_eq!(
        ok("show backend blacklist from all frontends;"),
        Statement::ShowBlacklist {
            all_frontends: true
        }
    );
    assert_eq!(
        err("ADD BACKEND BLACKLIST abc"),
        (
            r#"Syntax error: expected a backend id, found "abc""#.into(),
            1,
            23
        )
    );
    assert_eq!(
        err("ADD BACKEND BLACKLIST 10001,"),
        (
            "Syntax error: expected a backend id, found end of input".into(),
            1,
            29
        )
    );
    assert_eq!(
        err("ADD BACKEND BLACKLIST 'h:1'"),
        (r#"invalid backend id "h:1""#.into(), 1, 23)
    );
    // Singular typos of the lists point at the plural.
    assert_eq!(
        err("SHOW BACKEND;"),
        (
            "Syntax error: expected BLACKLIST (did you mean SHOW BACKENDS?), found \";\"".into(),
            1,
            13
        )
    );
    assert_eq!(
        err("show backend").0,
        "Syntax error: expected BLACKLIST (did you mean SHOW BACKENDS?), found end of input"
    );
    assert_eq!(
        err("SHOW FRONTEND").0,
        "Syntax error: expected FRONTENDS (did you mean SHOW FRONTENDS?), found \"FRONTEND\""
    );
    assert_eq!(
        err("SHOW BACKEND BLAKLIST").0,
        "Syntax error: expected BLACKLIST, found \"BLAKLIST\""
    );
    assert_eq!(
        err("SHOW BACKEND BLACKLIST FROM ALL"),
        (
            "Syntax error: expected FRONTENDS, found end of input".into(),
            1,
            32
        )
    );
}

#[test]
fn canonical_display() {
    let cases = [
        (
            "alter system add backend 'h1:1,h2:2' properties ('tag.location'='g')",
            r#"ALTER SYSTEM ADD BACKEND "h1:1", "h2:2" PROPERTIES ("tag.location" = "g")"#,
        ),
        (
            "explain alter system decommission backend '10002'",
            r#"EXPLAIN ALTER SYSTEM DECOMMISSION BACKEND "10002""#,
        ),
        (
            "alter system modify backend 'h:1' set ('disable_load'='true')",
            r#"ALTER SYSTEM MODIFY BACKEND "h:1" SET ("disable_load" = "true")"#,
        ),
        (
            "alter system drop observer 'h:1'",
            r#"ALTER SYSTEM DROP OBSERVER "h:1""#,
        ),
        ("add backend blacklist 1,2", "ADD BACKEND BLACKLIST 1, 2"),
    ];
    for (sql, canonical) in cases {
        assert_eq!(ok(sql).to_string(), canonical);
    }
}

#[test]
fn read_only_classification() {
    assert!(ok("SHOW BACKENDS").is_read_only());
    assert!(ok("EXPLAIN ALTER SYSTEM DECOMMISSION BACKEND '1'").is_read_only());
    assert!(!ok("ALTER SYSTEM DECOMMISSION BACKEND '1'").is_read_only());
    assert!(!ok("ALTER SYSTEM ADD BACKEND 'h:1'").is_read_only());
    assert!(!ok("ADD BACKEND BLACKLIST 1").is_read_only());
    assert!(ok("SHOW BACKEND BLACKLIST").is_read_only());
    assert!(ok("SELECT @@version_comment LIMIT 1").is_read_only());
    assert!(ok("SET NAMES utf8mb4").is_read_only());
    assert!(!ok("CREATE TABLE t BUCKETS 1").is_read_only());
}
