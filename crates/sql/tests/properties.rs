//! Property tests: printed statements parse back to themselves, and no input panics.

use proptest::prelude::*;
use roster_membership::BackendId;
use roster_sql::{BackendRef, FrontendRole, HostPort, SelectExpr, SelectItem, Statement, parse};

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,10}(\\.[a-z0-9_]{1,5}){0,2}",
        any::<[u8; 4]>().prop_map(|b| std::net::Ipv4Addr::from(b).to_string()),
        any::<[u16; 8]>().prop_map(|b| std::net::Ipv6Addr::from(b).to_string()),
    ]
}

fn host_port() -> impl Strategy<Value = HostPort> {
    (host(), 1..=u16::MAX).prop_map(|(host, port)| HostPort { host, port })
}

fn backend_ref() -> impl Strategy<Value = BackendRef> {
    prop_oneof![
        any::<u64>().prop_map(|id| BackendRef::Id(BackendId(id))),
        host_port().prop_map(BackendRef::Addr),
    ]
}

fn targets() -> impl Strategy<Value = Vec<BackendRef>> {
    prop::collection::vec(backend_ref(), 1..4)
}

/// Any text, including quotes, backslashes, newlines and non-ASCII.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[a-zA-Z0-9 ._:,'\"\\\\`%\n\té€]{0,12}",]
}

fn non_empty_text() -> impl Strategy<Value = String> {
    text().prop_filter("non-empty", |s| !s.is_empty())
}

/// Non-empty keys, unique ignoring ASCII case (the parser rejects duplicates).
fn properties(min: usize) -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec((non_empty_text(), text()), min..4).prop_map(|mut pairs| {
        let mut seen: Vec<String> = Vec::new();
        pairs.retain(|(k, _)| {
            let k = k.to_ascii_lowercase();
            let fresh = !seen.contains(&k);
            seen.push(k);
            fresh
        });
        pairs
    })
}

fn ident() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z_][a-zA-Z0-9_]{0,8}",
        Just("select".to_string()),
        Just("IF".to_string()),
        non_empty_text(),
    ]
}

fn column_type() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "INT",
        "BIGINT NOT NULL",
        "varchar(20)",
        "DECIMAL(10, 2)",
        "MAP<INT, ARRAY<INT>>",
        "ARRAY<ARRAY<ARRAY<INT>>>",
        "STRING COMMENT 'it\\'s'",
        "DATETIME DEFAULT '1970-01-01 00:00:00'",
    ])
    .prop_map(str::to_string)
}

fn role() -> impl Strategy<Value = FrontendRole> {
    prop_oneof![Just(FrontendRole::Follower), Just(FrontendRole::Observer)]
}

fn backend_statement() -> impl Strategy<Value = Statement> {
    prop_oneof![
        (prop::collection::vec(host_port(), 1..4), properties(0))
            .prop_map(|(addrs, properties)| Statement::AddBackends { addrs, properties }),
        targets().prop_map(|targets| Statement::DropBackends { targets }),
        targets().prop_map(|targets| Statement::DroppBackends { targets }),
        (targets(), any::<bool>())
            .prop_map(|(targets, explain)| Statement::DecommissionBackends { targets, explain }),
        targets().prop_map(|targets| Statement::CancelDecommission { targets }),
        (targets(), properties(1)).prop_map(|(targets, properties)| {
            Statement::ModifyBackends {
                targets,
                properties,
            }
        }),
        (role(), host_port()).prop_map(|(role, addr)| Statement::AddFrontend { role, addr }),
        (role(), host_port()).prop_map(|(role, addr)| Statement::DropFrontend { role, addr }),
        Just(Statement::ShowBackends),
        Just(Statement::ShowDroppedBackends),
        Just(Statement::ShowFrontends),
    ]
}

fn other_statement() -> impl Strategy<Value = Statement> {
    let ids = || prop::collection::vec(any::<u64>(), 1..4);
    let privs = prop::sample::subsequence(
        vec!["ADMIN_PRIV", "NODE_PRIV", "BLACKLIST", "SELECT_PRIV"],
        1..4,
    )
    .prop_map(|v| v.into_iter().map(str::to_string).collect::<Vec<_>>());
    prop_oneof![
        Just(Statement::ShowDecommission),
        prop::option::of(backend_ref())
            .prop_map(|backend| Statement::ShowDecommissionBlockers { backend }),
        ids().prop_map(|ids| Statement::AddBlacklist { ids }),
        ids().prop_map(|ids| Statement::DeleteBlacklist { ids }),
        any::<bool>().prop_map(|all_frontends| Statement::ShowBlacklist { all_frontends }),
        (
            ident(),
            any::<bool>(),
            prop::collection::vec((ident(), column_type()), 0..4),
            prop::collection::vec(ident(), 0..3),
            1..=u32::MAX,
            properties(0),
        )
            .prop_map(
                |(name, if_not_exists, columns, hash_columns, buckets, properties)| {
                    Statement::CreateTable {
                        name,
                        if_not_exists,
                        columns,
                        hash_columns,
                        buckets,
                        properties,
                    }
                }
            ),
        (ident(), any::<bool>(), any::<bool>()).prop_map(|(name, if_exists, force)| {
            Statement::DropTable {
                name,
                if_exists,
                force,
            }
        }),
        ident().prop_map(|name| Statement::RecoverTable { name }),
        any::<u64>().prop_map(|id| Statement::ShowTablet { id }),
        ident().prop_map(|table| Statement::ShowTabletRoutes { table }),
        ident().prop_map(|table| Statement::ShowReplicaDistribution { table }),
        properties(1).prop_map(|properties| Statement::AdminSetConfig { properties }),
        prop::option::of(text()).prop_map(|like| Statement::AdminShowConfig { like }),
        (non_empty_text(), text())
            .prop_map(|(user, password)| Statement::CreateUser { user, password }),
        (privs.clone(), non_empty_text())
            .prop_map(|(privs, user)| Statement::Grant { privs, user }),
        (privs, non_empty_text()).prop_map(|(privs, user)| Statement::Revoke { privs, user }),
        prop::option::of(non_empty_text()).prop_map(|user| Statement::ShowGrants { user }),
    ]
}

fn housekeeping_statement() -> impl Strategy<Value = Statement> {
    let var_name = prop_oneof![
        "[a-z_][a-z0-9_]{0,10}",
        "@[a-z][a-z0-9_]{0,5}",
        Just("names".to_string())
    ];
    let select_expr = prop_oneof![
        "(session\\.)?[a-z_][a-z0-9_]{0,10}".prop_map(SelectExpr::Variable),
        "[A-Za-z_][A-Za-z0-9_]{0,8}".prop_map(SelectExpr::Function),
        "[0-9]{1,6}".prop_map(SelectExpr::Number),
        text().prop_map(SelectExpr::String),
    ];
    let item = (select_expr, prop::option::of(ident()))
        .prop_map(|(expr, alias)| SelectItem { expr, alias });
    prop_oneof![
        prop::collection::vec((var_name, text()), 1..4)
            .prop_map(|assignments| Statement::SetVariables { assignments }),
        (
            prop::collection::vec(item, 1..4),
            prop::option::of(any::<u64>())
        )
            .prop_map(|(items, limit)| Statement::Select { items, limit }),
        prop::option::of(text()).prop_map(|like| Statement::ShowVariables { like }),
        ident().prop_map(|db| Statement::Use { db }),
        Just(Statement::ShowDatabases),
        Just(Statement::ShowRecycleBin),
        Just(Statement::ShowTables),
    ]
}

/// Words and punctuation of the dialect, to build inputs that get deep into the parser.
const FRAGMENTS: &[&str] = &[
    "ALTER",
    "SYSTEM",
    "ADD",
    "DROP",
    "DROPP",
    "DECOMMISSION",
    "MODIFY",
    "BACKEND",
    "BACKENDS",
    "FOLLOWER",
    "OBSERVER",
    "FRONTENDS",
    "EXPLAIN",
    "CANCEL",
    "SHOW",
    "BLOCKERS",
    "FOR",
    "BLACKLIST",
    "DELETE",
    "FROM",
    "ALL",
    "CREATE",
    "TABLE",
    "IF",
    "NOT",
    "EXISTS",
    "DISTRIBUTED",
    "BY",
    "HASH",
    "BUCKETS",
    "PROPERTIES",
    "SET",
    "FORCE",
    "RECOVER",
    "CATALOG",
    "RECYCLE",
    "BIN",
    "TABLES",
    "TABLET",
    "TABLETS",
    "ROUTES",
    "ADMIN",
    "FRONTEND",
    "CONFIG",
    "LIKE",
    "REPLICA",
    "DISTRIBUTION",
    "USER",
    "IDENTIFIED",
    "GRANT",
    "REVOKE",
    "TO",
    "ON",
    "GRANTS",
    "NAMES",
    "COLLATE",
    "GLOBAL",
    "SESSION",
    "SELECT",
    "LIMIT",
    "AS",
    "VARIABLES",
    "USE",
    "DATABASES",
    "@@session",
    "@@version_comment",
    "@x",
    ".",
    "*",
    "(",
    ")",
    "<",
    ">",
    ">>",
    ",",
    ";",
    "=",
    ":=",
    "-",
    "\"h:9050\"",
    "'10002'",
    "\"[::1]:1\"",
    "\"a:1,b:2\"",
    "'",
    "\"",
    "`",
    "`t`",
    "10001",
    "0",
    "99999999999999999999",
    "1.5",
    "\n",
    "-- c\n",
    "/*",
    "*/",
    "\\",
    "é",
    "💥",
    "NODE_PRIV",
    "INT",
    "VARCHAR",
    "MAP",
    "DATABASE",
];

fn fragment_soup() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => prop::sample::select(FRAGMENTS).prop_map(str::to_string),
        1 => any::<String>(),
    ];
    let sep = prop::sample::select(vec![" ", "", "\n", "\t"]);
    prop::collection::vec((piece, sep), 0..24)
        .prop_map(|parts| parts.into_iter().map(|(p, s)| p + s).collect())
}

fn any_statement() -> impl Strategy<Value = Statement> {
    prop_oneof![
        backend_statement(),
        other_statement(),
        housekeeping_statement()
    ]
}

/// A valid statement with one edit: a fragment inserted, or the text cut short.
fn mutated_statement() -> impl Strategy<Value = String> {
    (
        any_statement(),
        any::<prop::sample::Index>(),
        prop::sample::select(FRAGMENTS),
        any::<bool>(),
    )
        .prop_map(|(stmt, at, frag, cut)| {
            let sql = stmt.to_string();
            let bounds: Vec<usize> = sql
                .char_indices()
                .map(|(i, _)| i)
                .chain([sql.len()])
                .collect();
            let at = bounds[at.index(bounds.len())];
            if cut {
                sql[..at].to_string()
            } else {
                format!("{}{frag}{}", &sql[..at], &sql[at..])
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn printed_backend_statements_parse_back(stmt in backend_statement()) {
        let sql = stmt.to_string();
        prop_assert_eq!(parse(&sql), Ok(stmt), "sql: {}", sql);
    }

    #[test]
    fn printed_other_statements_parse_back(stmt in other_statement()) {
        let sql = stmt.to_string();
        prop_assert_eq!(parse(&sql), Ok(stmt), "sql: {}", sql);
    }

    #[test]
    fn printed_housekeeping_statements_parse_back(stmt in housekeeping_statement()) {
        let sql = stmt.to_string();
        prop_assert_eq!(parse(&sql), Ok(stmt), "sql: {}", sql);
    }

    /// No panic on anything; whatever parses prints to SQL that parses to the same value;
    /// errors point inside the input (or just past it).
    #[test]
    fn arbitrary_input_never_panics(sql in prop_oneof![fragment_soup(), mutated_statement(), any::<String>()]) {
        match parse(&sql) {
            Ok(stmt) => {
                let printed = stmt.to_string();
                prop_assert_eq!(parse(&printed), Ok(stmt), "printed: {}", printed);
            }
            Err(e) => {
                let lines = sql.split('\n').count() as u64;
                prop_assert!(e.line >= 1 && e.line <= lines, "{e:?} for {sql:?}");
                prop_assert!(e.column >= 1, "{e:?}");
            }
        }
    }
}
