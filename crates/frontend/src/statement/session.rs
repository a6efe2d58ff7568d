//! Per-connection session state and the housekeeping statements real MySQL clients send on
//! connect (`SET NAMES`, `SELECT @@version_comment`, `SHOW VARIABLES`, `USE`).

use roster_node::FeNodeHandle;
use roster_node::error::ApiError;
use roster_proto::{QueryResult, SqlType};
use roster_sql::{SelectExpr, SelectItem};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default)]
pub struct Session {
    pub user: String,
    pub db: Option<String>,
    /// `SET read_consistency = 'stale'`: serve local state, saying how far behind it is.
    pub stale_reads: bool,
    /// Variables the client set that we only echo back.
    vars: BTreeMap<String, String>,
}

/// Server variables answered to clients, as MySQL 5.7 would.
const SERVER_VARS: &[(&str, &str)] = &[
    ("auto_increment_increment", "1"),
    ("character_set_client", "utf8mb4"),
    ("character_set_connection", "utf8mb4"),
    ("character_set_database", "utf8mb4"),
    ("character_set_results", "utf8mb4"),
    ("character_set_server", "utf8mb4"),
    ("collation_connection", "utf8mb4_general_ci"),
    ("collation_database", "utf8mb4_general_ci"),
    ("collation_server", "utf8mb4_general_ci"),
    ("init_connect", ""),
    ("interactive_timeout", "28800"),
    ("license", "Apache-2.0"),
    ("lower_case_table_names", "0"),
    ("max_allowed_packet", "67108864"),
    ("net_write_timeout", "60"),
    ("performance_schema", "0"),
    ("read_consistency", "linearizable"),
    ("sql_mode", "ONLY_FULL_GROUP_BY"),
    ("system_time_zone", "UTC"),
    ("time_zone", "UTC"),
    ("transaction_isolation", "REPEATABLE-READ"),
    ("tx_isolation", "REPEATABLE-READ"),
    ("version", "5.7.99"),
    (
        "version_comment",
        "Roster (Doris-compatible metadata quorum)",
    ),
    ("wait_timeout", "28800"),
];

/// The server variables whose values are integers (MySQL declares them so; clients such as
/// JDBC read `@@max_allowed_packet` as a number). The rest are text.
const INT_VARS: &[&str] = &[
    "auto_increment_increment",
    "interactive_timeout",
    "lower_case_table_names",
    "max_allowed_packet",
    "net_write_timeout",
    "performance_schema",
    "wait_timeout",
];

/// SQL LIKE with `%` and `_`, case-insensitive.
pub fn like(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('%', rest)) => (0..=t.len()).any(|i| go(rest, &t[i..])),
            Some(('_', rest)) => !t.is_empty() && go(rest, &t[1..]),
            Some((c, rest)) => {
                t.first().is_some_and(|x| x.eq_ignore_ascii_case(c)) && go(rest, &t[1..])
            }
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    go(&p, &t)
}

impl Session {
    /// The read barrier of this session's reads: linearizable unless it asked for stale reads;
    /// a stale read says how far behind it may be.
    pub async fn read_barrier(&self, fe: &FeNodeHandle) -> Result<Option<String>, ApiError> {
        if !self.stale_reads {
            fe.linearize().await?;
            return Ok(None);
        }
        let m = fe.raft_view();
        Ok(Some(format!(
            "stale read: applied index {}, known committed index {}, leader {}",
            m.last_applied,
            m.committed,
            m.leader
                .map(|l| l.to_string())
                .unwrap_or_else(|| "unknown".into())
        )))
    }

    pub fn new(user: impl Into<String>) -> Self {
        Session {
            user: user.into(),
            ..Default::default()
        }
    }

    fn var(&self, name: &str) -> Option<String> {
        let name = name.to_ascii_lowercase();
        let name = name
            .strip_prefix("session.")
            .or_else(|| name.strip_prefix("local."))
            .unwrap_or(&name);
        if name == "read_consistency" {
            return Some(
                if self.stale_reads {
                    "stale"
                } else {
                    "linearizable"
                }
                .to_string(),
            );
        }
        if let Some(v) = self.vars.get(name) {
            return Some(v.clone());
        }
        SERVER_VARS
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }

    pub fn set(&mut self, assignments: &[(String, String)]) -> Result<QueryResult, ApiError> {
        // Validate everything first: a bad statement changes nothing.
        let mut stale = self.stale_reads;
        for (k, v) in assignments {
            if k == "read_consistency" {
                stale = match v.to_ascii_lowercase().as_str() {
                    "stale" => true,
                    "linearizable" => false,
                    _ => {
                        return Err(ApiError::Invalid(format!(
                            "read_consistency must be 'linearizable' or 'stale', not '{v}'"
                        )));
                    }
                };
            }
        }
        self.stale_reads = stale;
        for (k, v) in assignments {
            if k != "read_consistency" {
                self.vars.insert(k.clone(), v.clone());
            }
        }
        Ok(QueryResult::ok(0, ""))
    }

    pub fn select(&self, items: &[SelectItem]) -> Result<QueryResult, ApiError> {
        let mut columns = Vec::new();
        let mut types = Vec::new();
        let mut row = Vec::new();
        for item in items {
            let mut ty = SqlType::Text;
            let (header, value) = match &item.expr {
                SelectExpr::Variable(name) => {
                    let v = self.var(name).ok_or_else(|| {
                        ApiError::Invalid(format!("Unknown system variable '{name}'"))
                    })?;
                    let bare = name.to_ascii_lowercase();
                    let bare = bare.rsplit('.').next().unwrap_or(&bare);
                    if INT_VARS.contains(&bare) && v.parse::<i64>().is_ok() {
                        ty = SqlType::Int;
                    }
                    (format!("@@{name}"), Some(v))
                }
                SelectExpr::Function(f) => {
                    let v = match f.to_ascii_uppercase().as_str() {
                        "DATABASE" | "SCHEMA" => self.db.clone(),
                        "USER" | "CURRENT_USER" | "SESSION_USER" | "SYSTEM_USER" => {
                            Some(format!("{}@%", self.user))
                        }
                        "VERSION" => self.var("version"),
                        "CONNECTION_ID" => {
                            ty = SqlType::Int;
                            Some("0".into())
                        }
                        other => {
                            return Err(ApiError::Invalid(format!(
                                "function {other}() is not supported"
                            )));
                        }
                    };
                    (format!("{f}()"), v)
                }
                SelectExpr::Number(n) => {
                    if n.parse::<i64>().is_ok() {
                        ty = SqlType::Int;
                    }
                    (n.clone(), Some(n.clone()))
                }
                SelectExpr::String(s) => (s.clone(), Some(s.clone())),
            };
            columns.push(item.alias.clone().unwrap_or(header));
            types.push(ty);
            row.push(value);
        }
        Ok(QueryResult {
            columns,
            rows: vec![row],
            types,
            ..Default::default()
        })
    }

    pub fn show_variables(&self, pattern: Option<&str>) -> QueryResult {
        let mut names: Vec<String> = SERVER_VARS.iter().map(|(k, _)| k.to_string()).collect();
        names.extend(self.vars.keys().cloned());
        names.sort();
        names.dedup();
        let rows = names
            .into_iter()
            .filter(|n| pattern.is_none_or(|p| like(p, n)))
            .map(|n| {
                let v = self.var(&n);
                vec![Some(n), v]
            })
            .collect();
        QueryResult::rows(&["Variable_name", "Value"], rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_declares_its_column_types() {
        let s = Session::new("root");
        let item = |expr| SelectItem { expr, alias: None };
        let r = s
            .select(&[
                item(SelectExpr::Number("1".into())),
                item(SelectExpr::Number("1.5".into())),
                item(SelectExpr::Variable("max_allowed_packet".into())),
                item(SelectExpr::Variable("session.wait_timeout".into())),
                item(SelectExpr::Variable("version_comment".into())),
                item(SelectExpr::String("7".into())),
                item(SelectExpr::Function("CONNECTION_ID".into())),
            ])
            .unwrap();
        use SqlType::{Int, Text};
        assert_eq!(r.types, [Int, Text, Int, Int, Text, Text, Int]);
    }

    #[test]
    fn like_matches_sql_semantics() {
        assert!(like("max%", "max_clone_task_timeout_sec"));
        assert!(like("%TIMEOUT%", "wait_timeout"));
        assert!(like("a_c", "abc"));
        assert!(!like("a_c", "abbc"));
        assert!(!like("max", "max_x"));
    }

    #[test]
    fn read_consistency_is_validated_before_anything_changes() {
        let mut s = Session::new("root");
        assert!(
            s.set(&[
                ("x".into(), "1".into()),
                ("read_consistency".into(), "bogus".into())
            ])
            .is_err()
        );
        assert!(s.var("x").is_none(), "a refused SET changes nothing");
        s.set(&[("read_consistency".into(), "stale".into())])
            .unwrap();
        assert!(s.stale_reads);
        assert_eq!(
            s.var("@@session.read_consistency".trim_start_matches('@'))
                .as_deref(),
            Some("stale")
        );
    }
}
