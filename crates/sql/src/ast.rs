//! Statement types. `Display` prints canonical SQL that parses back to the same value.

use std::fmt::{self, Display, Formatter};

pub use roster_membership::{BackendRef, HostPort};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrontendRole {
    Follower,
    Observer,
}

/// `("k" = "v", ...)` pairs in source order; keys kept as written (case preserved).
pub type Properties = Vec<(String, String)>;

/// One output column of a housekeeping `SELECT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectItem {
    pub expr: SelectExpr,
    pub alias: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectExpr {
    /// `@@name`, text after `@@` as written, e.g. `version_comment` or `session.tx_isolation`
    /// (scope prefix kept so the column header matches what the client asked for).
    Variable(String),
    /// A zero-argument function such as `DATABASE()` or `USER()`, name as written.
    Function(String),
    /// A numeric literal, as written (`1`).
    Number(String),
    /// A string literal.
    String(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    /// `ALTER SYSTEM ADD BACKEND "h:p"[, ...] [PROPERTIES ("k"="v", ...)]`
    AddBackends {
        addrs: Vec<HostPort>,
        properties: Properties,
    },
    /// `ALTER SYSTEM DROP BACKEND ...` (parsed; the executor always refuses it)
    DropBackends { targets: Vec<BackendRef> },
    /// `ALTER SYSTEM DROPP BACKEND ...`
    DroppBackends { targets: Vec<BackendRef> },
    /// `[EXPLAIN] ALTER SYSTEM DECOMMISSION BACKEND ...`
    DecommissionBackends {
        targets: Vec<BackendRef>,
        explain: bool,
    },
    /// `CANCEL DECOMMISSION BACKEND ...`
    CancelDecommission { targets: Vec<BackendRef> },
    /// `ALTER SYSTEM MODIFY BACKEND "id|h:p"[, ...] SET ("k"="v", ...)`
    ModifyBackends {
        targets: Vec<BackendRef>,
        properties: Properties,
    },
    /// `ALTER SYSTEM ADD FOLLOWER|OBSERVER "h:p"`
    AddFrontend { role: FrontendRole, addr: HostPort },
    /// `ALTER SYSTEM DROP FOLLOWER|OBSERVER "h:p"`
    DropFrontend { role: FrontendRole, addr: HostPort },
    /// `SHOW BACKENDS`
    ShowBackends,
    /// `SHOW DROPPED BACKENDS`: the tombstones, with the decommission that drained each.
    ShowDroppedBackends,
    /// `SHOW FRONTENDS`
    ShowFrontends,
    /// `SHOW DECOMMISSION`
    ShowDecommission,
    /// `SHOW DECOMMISSION BLOCKERS [FOR "id|h:p"]`
    ShowDecommissionBlockers { backend: Option<BackendRef> },
    /// `ADD BACKEND BLACKLIST id[, ...]`
    AddBlacklist { ids: Vec<u64> },
    /// `DELETE BACKEND BLACKLIST id[, ...]`
    DeleteBlacklist { ids: Vec<u64> },
    /// `SHOW BACKEND BLACKLIST [FROM ALL FRONTENDS]`
    ShowBlacklist { all_frontends: bool },
    /// `CREATE TABLE [IF NOT EXISTS] name [(col type, ...)] [DISTRIBUTED BY HASH(col, ...)]
    /// BUCKETS n [PROPERTIES (...)]`. `hash_columns` is empty without DISTRIBUTED BY; column
    /// types are normalised token text (`VARCHAR(10)`, `DECIMAL(10, 2)`), not interpreted.
    CreateTable {
        name: String,
        if_not_exists: bool,
        columns: Vec<(String, String)>,
        hash_columns: Vec<String>,
        buckets: u32,
        properties: Properties,
    },
    /// `DROP TABLE [IF EXISTS] name [FORCE]`
    DropTable {
        name: String,
        if_exists: bool,
        force: bool,
    },
    /// `RECOVER TABLE name`
    RecoverTable { name: String },
    /// `SHOW CATALOG RECYCLE BIN`
    ShowRecycleBin,
    /// `SHOW TABLES`
    ShowTables,
    /// `SHOW TABLET id`
    ShowTablet { id: u64 },
    /// `SHOW TABLETS FROM name`
    ShowTablets { table: String },
    /// `ADMIN SHOW REPLICA DISTRIBUTION FROM name`
    ShowReplicaDistribution { table: String },
    /// `SHOW TABLET ROUTES FROM name`
    ShowTabletRoutes { table: String },
    /// `ADMIN SET FRONTEND CONFIG ("k"="v", ...)`
    AdminSetConfig { properties: Properties },
    /// `ADMIN SHOW FRONTEND CONFIG [LIKE 'pat']`
    AdminShowConfig { like: Option<String> },
    /// `CREATE USER 'u' IDENTIFIED BY 'p'`
    CreateUser { user: String, password: String },
    /// `DROP USER 'u'`
    DropUser { user: String },
    /// `GRANT p[, ...] [ON *.*[.*]] TO 'u'`; privileges upper-cased and checked against the
    /// known set (ADMIN_PRIV, NODE_PRIV, BLACKLIST, SELECT_PRIV).
    Grant { privs: Vec<String>, user: String },
    /// `REVOKE p[, ...] [ON *.*[.*]] FROM 'u'`
    Revoke { privs: Vec<String>, user: String },
    /// `SHOW GRANTS [FOR 'u']`
    ShowGrants { user: Option<String> },
    /// Session `SET`: `SET NAMES cs [COLLATE c]`, `SET [SESSION|LOCAL] x = v`,
    /// `SET @@[session.]x = v`, several separated by commas. Names are lower-cased without
    /// `@@`/scope (`SET NAMES cs COLLATE c` gives `names` and `collation_connection`);
    /// values are the literal's text (`NULL`, `1`, `-1`, `stale`). `SET GLOBAL` is refused:
    /// cluster-wide settings go through `ADMIN SET FRONTEND CONFIG`.
    SetVariables { assignments: Vec<(String, String)> },
    /// `SELECT item[, ...] [LIMIT n]` with `@@variables`, zero-argument functions and literals
    /// only: what MySQL clients send on connect (`SELECT @@version_comment LIMIT 1`).
    Select {
        items: Vec<SelectItem>,
        limit: Option<u64>,
    },
    /// `SHOW [GLOBAL|SESSION] VARIABLES [LIKE 'pat']`
    ShowVariables { like: Option<String> },
    /// `SHOW DATABASES`
    ShowDatabases,
    /// `USE db`
    Use { db: String },
}

impl Statement {
    /// True for statements that only read (SHOW..., EXPLAIN, SELECT, housekeeping): a retry
    /// after an unknown outcome is safe.
    pub fn is_read_only(&self) -> bool {
        use Statement::*;
        match self {
            DecommissionBackends { explain, .. } => *explain,
            ShowBackends
            | ShowDroppedBackends
            | ShowFrontends
            | ShowDecommission
            | ShowDecommissionBlockers { .. }
            | ShowBlacklist { .. }
            | ShowRecycleBin
            | ShowTables
            | ShowTablet { .. }
            | ShowTablets { .. }
            | ShowReplicaDistribution { .. }
            | ShowTabletRoutes { .. }
            | AdminShowConfig { .. }
            | ShowGrants { .. }
            | SetVariables { .. }
            | Select { .. }
            | ShowVariables { .. }
            | ShowDatabases
            | Use { .. } => true,
            AddBackends { .. }
            | DropBackends { .. }
            | DroppBackends { .. }
            | CancelDecommission { .. }
            | ModifyBackends { .. }
            | AddFrontend { .. }
            | DropFrontend { .. }
            | AddBlacklist { .. }
            | DeleteBlacklist { .. }
            | CreateTable { .. }
            | DropTable { .. }
            | RecoverTable { .. }
            | AdminSetConfig { .. }
            | CreateUser { .. }
            | DropUser { .. }
            | Grant { .. }
            | Revoke { .. } => false,
        }
    }
}

impl Display for FrontendRole {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FrontendRole::Follower => "FOLLOWER",
            FrontendRole::Observer => "OBSERVER",
        })
    }
}

impl Display for SelectExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            SelectExpr::Variable(v) => write!(f, "@@{v}"),
            SelectExpr::Function(name) => write!(f, "{name}()"),
            SelectExpr::Number(n) => f.write_str(n),
            SelectExpr::String(s) => write!(f, "{}", Sq(s)),
        }
    }
}

impl Display for SelectItem {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.expr)?;
        match &self.alias {
            Some(alias) => write!(f, " AS {}", Ident(alias)),
            None => Ok(()),
        }
    }
}

impl Display for Statement {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        use Statement::*;
        match self {
            AddBackends { addrs, properties } => {
                write!(f, "ALTER SYSTEM ADD BACKEND {}", List(addrs, Dq))?;
                props(f, " PROPERTIES ", properties)
            }
            DropBackends { targets } => {
                write!(f, "ALTER SYSTEM DROP BACKEND {}", List(targets, Dq))
            }
            DroppBackends { targets } => {
                write!(f, "ALTER SYSTEM DROPP BACKEND {}", List(targets, Dq))
            }
            DecommissionBackends { targets, explain } => {
                let explain = if *explain { "EXPLAIN " } else { "" };
                let targets = List(targets, Dq);
                write!(f, "{explain}ALTER SYSTEM DECOMMISSION BACKEND {targets}")
            }
            CancelDecommission { targets } => {
                write!(f, "CANCEL DECOMMISSION BACKEND {}", List(targets, Dq))
            }
            ModifyBackends {
                targets,
                properties,
            } => {
                write!(f, "ALTER SYSTEM MODIFY BACKEND {}", List(targets, Dq))?;
                props(f, " SET ", properties)
            }
            AddFrontend { role, addr } => write!(f, "ALTER SYSTEM ADD {role} {}", Dq(addr)),
            DropFrontend { role, addr } => write!(f, "ALTER SYSTEM DROP {role} {}", Dq(addr)),
            ShowBackends => f.write_str("SHOW BACKENDS"),
            ShowDroppedBackends => f.write_str("SHOW DROPPED BACKENDS"),
            ShowFrontends => f.write_str("SHOW FRONTENDS"),
            ShowDecommission => f.write_str("SHOW DECOMMISSION"),
            ShowDecommissionBlockers { backend } => {
                f.write_str("SHOW DECOMMISSION BLOCKERS")?;
                match backend {
                    Some(b) => write!(f, " FOR {}", Dq(b)),
                    None => Ok(()),
                }
            }
            AddBlacklist { ids } => write!(f, "ADD BACKEND BLACKLIST {}", List(ids, |x| x)),
            DeleteBlacklist { ids } => {
                write!(f, "DELETE BACKEND BLACKLIST {}", List(ids, |x| x))
            }
            ShowBlacklist { all_frontends } => {
                f.write_str("SHOW BACKEND BLACKLIST")?;
                if *all_frontends {
                    f.write_str(" FROM ALL FRONTENDS")?;
                }
                Ok(())
            }
            CreateTable {
                name,
                if_not_exists,
                columns,
                hash_columns,
                buckets,
                properties,
            } => {
                f.write_str("CREATE TABLE ")?;
                if *if_not_exists {
                    f.write_str("IF NOT EXISTS ")?;
                }
                write!(f, "{}", Ident(name))?;
                if !columns.is_empty() {
                    let cols = List(columns, |(n, t): &(String, String)| {
                        format!("{} {t}", Ident(n))
                    });
                    write!(f, " ({cols})")?;
                }
                if !hash_columns.is_empty() {
                    write!(f, " DISTRIBUTED BY HASH({})", List(hash_columns, Ident))?;
                }
                write!(f, " BUCKETS {buckets}")?;
                props(f, " PROPERTIES ", properties)
            }
            DropTable {
                name,
                if_exists,
                force,
            } => {
                let if_exists = if *if_exists { "IF EXISTS " } else { "" };
                let force = if *force { " FORCE" } else { "" };
                write!(f, "DROP TABLE {if_exists}{}{force}", Ident(name))
            }
            RecoverTable { name } => write!(f, "RECOVER TABLE {}", Ident(name)),
            ShowRecycleBin => f.write_str("SHOW CATALOG RECYCLE BIN"),
            ShowTables => f.write_str("SHOW TABLES"),
            ShowTablet { id } => write!(f, "SHOW TABLET {id}"),
            ShowTablets { table } => write!(f, "SHOW TABLETS FROM {}", Ident(table)),
            ShowReplicaDistribution { table } => {
                write!(f, "ADMIN SHOW REPLICA DISTRIBUTION FROM {}", Ident(table))
            }
            ShowTabletRoutes { table } => write!(f, "SHOW TABLET ROUTES FROM {}", Ident(table)),
            AdminSetConfig { properties } => props(f, "ADMIN SET FRONTEND CONFIG ", properties),
            AdminShowConfig { like } => {
                f.write_str("ADMIN SHOW FRONTEND CONFIG")?;
                like_clause(f, like)
            }
            CreateUser { user, password } => {
                write!(f, "CREATE USER {} IDENTIFIED BY {}", Sq(user), Sq(password))
            }
            DropUser { user } => write!(f, "DROP USER {}", Sq(user)),
            Grant { privs, user } => write!(f, "GRANT {} TO {}", List(privs, |p| p), Sq(user)),
            Revoke { privs, user } => {
                write!(f, "REVOKE {} FROM {}", List(privs, |p| p), Sq(user))
            }
            ShowGrants { user } => {
                f.write_str("SHOW GRANTS")?;
                match user {
                    Some(u) => write!(f, " FOR {}", Sq(u)),
                    None => Ok(()),
                }
            }
            SetVariables { assignments } => {
                let set = List(assignments, |(n, v): &(String, String)| {
                    format!("{n} = {}", Sq(v))
                });
                write!(f, "SET {set}")
            }
            Select { items, limit } => {
                write!(f, "SELECT {}", List(items, |i| i))?;
                match limit {
                    Some(n) => write!(f, " LIMIT {n}"),
                    None => Ok(()),
                }
            }
            ShowVariables { like } => {
                f.write_str("SHOW VARIABLES")?;
                like_clause(f, like)
            }
            ShowDatabases => f.write_str("SHOW DATABASES"),
            Use { db } => write!(f, "USE {}", Ident(db)),
        }
    }
}

fn props(f: &mut Formatter<'_>, prefix: &str, properties: &Properties) -> fmt::Result {
    if properties.is_empty() {
        return Ok(());
    }
    let pairs = List(properties, |(k, v): &(String, String)| {
        format!("{} = {}", Dq(k), Dq(v))
    });
    write!(f, "{prefix}({pairs})")
}

fn like_clause(f: &mut Formatter<'_>, like: &Option<String>) -> fmt::Result {
    match like {
        Some(pat) => write!(f, " LIKE {}", Sq(pat)),
        None => Ok(()),
    }
}

/// Items joined by ", ", each shown through `show`.
struct List<'a, T, F>(&'a [T], F);

impl<'a, T, F, D> Display for List<'a, T, F>
where
    F: Fn(&'a T) -> D,
    D: Display,
{
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for (i, item) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}", (self.1)(item))?;
        }
        Ok(())
    }
}

/// A double-quoted string literal with MySQL backslash escapes.
pub(crate) struct Dq<T>(pub T);

impl<T: Display> Display for Dq<T> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        quote(f, &self.0.to_string(), '"')
    }
}

/// A single-quoted string literal with MySQL backslash escapes.
pub(crate) struct Sq<T>(pub T);

impl<T: Display> Display for Sq<T> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        quote(f, &self.0.to_string(), '\'')
    }
}

fn quote(f: &mut Formatter<'_>, s: &str, q: char) -> fmt::Result {
    use fmt::Write;
    f.write_char(q)?;
    for c in s.chars() {
        if c == q || c == '\\' {
            f.write_char('\\')?;
        }
        f.write_char(c)?;
    }
    f.write_char(q)
}

/// An identifier: bare when it is a plain word that is not a keyword, else in backticks.
pub(crate) struct Ident<T>(pub T);

impl<T: AsRef<str>> Display for Ident<T> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let s = self.0.as_ref();
        if is_plain_ident(s) {
            f.write_str(s)
        } else {
            write!(f, "`{}`", s.replace('`', "``"))
        }
    }
}

fn is_plain_ident(s: &str) -> bool {
    let mut chars = s.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first_ok
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && sqlparser::keywords::ALL_KEYWORDS
            .binary_search(&s.to_ascii_uppercase().as_str())
            .is_err()
}
