//! Tables, tablets, settings, users and MySQL client housekeeping.

use roster_sql::{ParseError, SelectExpr, SelectItem, Statement, parse};

fn ok(sql: &str) -> Statement {
    parse(sql).unwrap_or_else(|e| panic!("{sql:?} failed: {e}"))
}

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

fn s(x: &str) -> String {
    x.to_string()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter().map(|(k, v)| (s(k), s(v))).collect()
}

#[test]
fn create_table_full() {
    let sql = "create table if not exists `demo t` (\n  k BIGINT NOT NULL,\n  v varchar ( 20 ),\n  \
               d DECIMAL(10,2), m MAP<INT,ARRAY<INT>> COMMENT \"x\"\n) distributed by hash(k, v) \
               buckets 8 properties ('replication_allocation' = 'tag.location.g1: 2, tag.location.g2: 1');";
    let stmt = ok(sql);
    assert_eq!(
        stmt,
        Statement::CreateTable {
            name: s("demo t"),
            if_not_exists: true,
            columns: pairs(&[
                ("k", "BIGINT NOT NULL"),
                ("v", "varchar(20)"),
                ("d", "DECIMAL(10, 2)"),
                ("m", "MAP<INT, ARRAY<INT>> COMMENT 'x'"),
            ]),
            hash_columns: vec![s("k"), s("v")],
            buckets: 8,
            properties: pairs(&[(
                "replication_allocation",
                "tag.location.g1: 2, tag.location.g2: 1"
            )]),
        }
    );
    assert_eq!(parse(&stmt.to_string()), Ok(stmt));
}

#[test]
fn create_table_minimal_and_errors() {
    assert_eq!(
        ok("CREATE TABLE t BUCKETS 3 PROPERTIES (\"replication_num\" = 3)"),
        Statement::CreateTable {
            name: s("t"),
            if_not_exists: false,
            columns: vec![],
            hash_columns: vec![],
            buckets: 3,
            properties: pairs(&[("replication_num", "3")]),
        }
    );
    assert_eq!(
        err("CREATE TABLE t (a INT) DISTRIBUTED BY HASH(a)"),
        (
            "Syntax error: expected BUCKETS, found end of input".into(),
            1,
            46
        )
    );
    assert_eq!(
        err("CREATE TABLE t BUCKETS 0"),
        ("invalid BUCKETS 0: must be 1 to 4294967295".into(), 1, 24)
    );
    assert_eq!(
        err("CREATE TABLE t (a, b INT) BUCKETS 1"),
        (
            r#"Syntax error: expected a column type, found ",""#.into(),
            1,
            18
        )
    );
    assert_eq!(
        err("CREATE TABLE t (a INT BUCKETS 1"),
        (
            r#"Syntax error: expected "," or ")", found end of input"#.into(),
            1,
            32
        )
    );
    assert_eq!(
        err("CREATE TABLE t (a VARCHAR(10"),
        (
            r#"Syntax error: expected ")", found end of input"#.into(),
            1,
            29
        )
    );
    assert_eq!(
        err("CREATE TABLE t (a INT = 1) BUCKETS 1"),
        (
            r#"Syntax error: expected "," or ")", found "=""#.into(),
            1,
            23
        )
    );
}

#[test]
fn drop_recover_and_show_tables() {
    assert_eq!(
        ok("drop table t;"),
        Statement::DropTable {
            name: s("t"),
            if_exists: false,
            force: false
        }
    );
    assert_eq!(
        ok("DROP TABLE IF EXISTS `t` FORCE"),
        Statement::DropTable {
            name: s("t"),
            if_exists: true,
            force: true
        }
    );
    assert_eq!(
        ok("recover table t"),
        Statement::RecoverTable { name: s("t") }
    );
    assert_eq!(ok("SHOW CATALOG RECYCLE BIN"), Statement::ShowRecycleBin);
    assert_eq!(ok("show tables;"), Statement::ShowTables);
    assert_eq!(ok("SHOW TABLET 12345"), Statement::ShowTablet { id: 12345 });
    assert_eq!(
        ok("show tablet routes from t"),
        Statement::ShowTabletRoutes { table: s("t") }
    );
    assert_eq!(
        ok("SHOW TABLETS FROM t"),
        Statement::ShowTablets { table: s("t") }
    );
    assert_eq!(
        ok("admin show replica distribution from t;"),
        Statement::ShowReplicaDistribution { table: s("t") }
    );
    assert_eq!(
        err("SHOW TABLET x"),
        (
            r#"Syntax error: expected a tablet id or ROUTES, found "x""#.into(),
            1,
            13
        )
    );
    assert_eq!(
        err("SHOW TABLETS t"),
        (r#"Syntax error: expected FROM, found "t""#.into(), 1, 14)
    );
    assert_eq!(
        err("SHOW CATALOG RECYCLE"),
        (
            "Syntax error: expected BIN, found end of input".into(),
            1,
            21
        )
    );
    assert_eq!(
        err("DROP TABLE"),
        (
            "Syntax error: expected a table name, found end of input".into(),
            1,
            11
        )
    );
}

#[test]
fn admin_config() {
    assert_eq!(
        ok("ADMIN SET FRONTEND CONFIG ('catalog_trash_expire_second' = '60');"),
        Statement::AdminSetConfig {
            properties: pairs(&[("catalog_trash_expire_second", "60")])
        }
    );
    assert_eq!(
        ok("admin show frontend config like '%trash%'"),
        Statement::AdminShowConfig {
            like: Some(s("%trash%"))
        }
    );
    assert_eq!(
        ok("ADMIN SHOW FRONTEND CONFIG"),
        Statement::AdminShowConfig { like: None }
    );
    assert_eq!(
        err("ADMIN SET FRONTEND CONFIG"),
        (
            r#"Syntax error: expected "(", found end of input"#.into(),
            1,
            26
        )
    );
}

#[test]
fn users_and_grants() {
    assert_eq!(
        ok("CREATE USER 'alice' IDENTIFIED BY \"s3cr'et\";"),
        Statement::CreateUser {
            user: s("alice"),
            password: s("s3cr'et")
        }
    );
    assert_eq!(ok("drop user bob"), Statement::DropUser { user: s("bob") });
    assert_eq!(
        ok("grant node_priv, BLACKLIST on *.*.* to 'alice'"),
        Statement::Grant {
            privs: vec![s("NODE_PRIV"), s("BLACKLIST")],
            user: s("alice")
        }
    );
    assert_eq!(
        ok("REVOKE ADMIN_PRIV FROM \"alice\""),
        Statement::Revoke {
            privs: vec![s("ADMIN_PRIV")],
            user: s("alice")
        }
    );
    assert_eq!(ok("SHOW GRANTS"), Statement::ShowGrants { user: None });
    assert_eq!(
        ok("show grants for 'alice';"),
        Statement::ShowGrants {
            user: Some(s("alice"))
        }
    );
    assert_eq!(
        err("GRANT NODE_PRIV, ALL TO 'u'"),
        (
            r#"unknown privilege "ALL", expected one of ADMIN_PRIV, NODE_PRIV, BLACKLIST, SELECT_PRIV"#
                .into(),
            1,
            18
        )
    );
    assert_eq!(
        err("CREATE USER '' IDENTIFIED BY 'p'"),
        ("empty user name".into(), 1, 13)
    );
    assert_eq!(
        err("CREATE USER u IDENTIFIED BY p"),
        (
            r#"Syntax error: expected a password string, found "p""#.into(),
            1,
            29
        )
    );
    assert_eq!(
        err("GRANT NODE_PRIV 'u'"),
        (r#"Syntax error: expected TO, found 'u'"#.into(), 1, 17)
    );
}

#[test]
fn set_variables() {
    assert_eq!(
        ok("SET NAMES utf8mb4"),
        Statement::SetVariables {
            assignments: pairs(&[("names", "utf8mb4")])
        }
    );
    assert_eq!(
        ok("set names 'utf8mb4' collate utf8mb4_general_ci;"),
        Statement::SetVariables {
            assignments: pairs(&[
                ("names", "utf8mb4"),
                ("collation_connection", "utf8mb4_general_ci")
            ])
        }
    );
    assert_eq!(
        ok(
            "SET @@session.Auto_Commit = 1, SESSION sql_mode = '', @@x := -5, LOCAL y = NULL, @u = 'v'"
        ),
        Statement::SetVariables {
            assignments: pairs(&[
                ("auto_commit", "1"),
                ("sql_mode", ""),
                ("x", "-5"),
                ("y", "NULL"),
                ("@u", "v"),
            ])
        }
    );
    assert_eq!(
        ok("SET read_consistency = 'stale'"),
        Statement::SetVariables {
            assignments: pairs(&[("read_consistency", "stale")])
        }
    );
    assert_eq!(
        err("SET GLOBAL x = 1"),
        (
            "SET GLOBAL is not supported; use ADMIN SET FRONTEND CONFIG".into(),
            1,
            5
        )
    );
    assert_eq!(err("SET a = 1, @@global.x = 1").2, 12);
    assert_eq!(
        err("SET x 1"),
        (r#"Syntax error: expected "=", found "1""#.into(), 1, 7)
    );
    assert_eq!(
        err("SET x = "),
        (
            "Syntax error: expected a value, found end of input".into(),
            1,
            8
        )
    );
}

#[test]
fn selects_clients_send() {
    assert_eq!(
        ok("select @@version_comment limit 1"),
        Statement::Select {
            items: vec![SelectItem {
                expr: SelectExpr::Variable(s("version_comment")),
                alias: None
            }],
            limit: Some(1)
        }
    );
    let stmt = ok(
        "SELECT @@session.auto_increment_increment AS auto_increment_increment, \
                   @@character_set_client, DATABASE(), USER(), 1, 'x' AS `my col`;",
    );
    assert_eq!(
        stmt,
        Statement::Select {
            items: vec![
                SelectItem {
                    expr: SelectExpr::Variable(s("session.auto_increment_increment")),
                    alias: Some(s("auto_increment_increment"))
                },
                SelectItem {
                    expr: SelectExpr::Variable(s("character_set_client")),
                    alias: None
                },
                SelectItem {
                    expr: SelectExpr::Function(s("DATABASE")),
                    alias: None
                },
                SelectItem {
                    expr: SelectExpr::Function(s("USER")),
                    alias: None
                },
                SelectItem {
                    expr: SelectExpr::Number(s("1")),
                    alias: None
                },
                SelectItem {
                    expr: SelectExpr::String(s("x")),
                    alias: Some(s("my col"))
                },
            ],
            limit: None
        }
    );
    assert_eq!(parse(&stmt.to_string()), Ok(stmt));
    assert_eq!(
        err("SELECT * FROM t"),
        (
            r#"Syntax error: expected @@variable, function() or literal, found "*""#.into(),
            1,
            8
        )
    );
    assert_eq!(
        err("SELECT a FROM t"),
        (
            r#"Syntax error: expected @@variable, function() or literal, found "a""#.into(),
            1,
            8
        )
    );
}

#[test]
fn show_variables_use_databases() {
    assert_eq!(
        ok("SHOW VARIABLES LIKE 'x%';"),
        Statement::ShowVariables {
            like: Some(s("x%"))
        }
    );
    assert_eq!(
        ok("show session variables"),
        Statement::ShowVariables { like: None }
    );
    assert_eq!(ok("use demo;"), Statement::Use { db: s("demo") });
    assert_eq!(ok("SHOW DATABASES"), Statement::ShowDatabases);
    assert_eq!(
        err("SHOW VARIABLES LIKE x"),
        (
            r#"Syntax error: expected a pattern string, found "x""#.into(),
            1,
            21
        )
    );
}

#[test]
fn identifiers_print_back_quoted_when_needed() {
    let stmt = ok("DROP TABLE `select`");
    assert_eq!(stmt.to_string(), "DROP TABLE `select`");
    let stmt = ok("DROP TABLE `we``ird name`");
    assert_eq!(stmt.to_string(), "DROP TABLE `we``ird name`");
    assert_eq!(parse(&stmt.to_string()), Ok(stmt));
    assert_eq!(ok("DROP TABLE plain_1").to_string(), "DROP TABLE plain_1");
}
