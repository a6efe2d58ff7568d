//! Backend, frontend, decommission and blacklist statements.

use sqlparser::tokenizer::Token;

use super::{Parser, Result};
use crate::ast::{BackendRef, FrontendRole, Statement};
use roster_membership::BackendId;
use roster_membership::model::backend::{AddrError, HostPort};

impl Parser {
    /// `[EXPLAIN] ALTER SYSTEM ...` and `CANCEL DECOMMISSION BACKEND ...`.
    pub(super) fn cluster_statement(&mut self) -> Result<Statement> {
        if self.eat_kw("CANCEL") {
            self.expect_kw("DECOMMISSION")?;
            self.expect_kw("BACKEND")?;
            let targets = self.backend_refs()?;
            return Ok(Statement::CancelDecommission { targets });
        }
        let explain = self.eat_kw("EXPLAIN");
        self.expect_kw("ALTER")?;
        self.expect_kw("SYSTEM")?;
        // Only decommission has a dry run.
        let verbs: &[&str] = if explain {
            &["DECOMMISSION"]
        } else {
            &["ADD", "DROP", "DROPP", "DECOMMISSION", "MODIFY"]
        };
        match self.expect_one_of(verbs)? {
            verb @ ("ADD" | "DROP") => self.add_or_drop(verb == "ADD"),
            "DROPP" => {
                self.expect_kw("BACKEND")?;
                let targets = self.backend_refs()?;
                Ok(Statement::DroppBackends { targets })
            }
            "DECOMMISSION" => {
                self.expect_kw("BACKEND")?;
                let targets = self.backend_refs()?;
                Ok(Statement::DecommissionBackends { targets, explain })
            }
            _ => {
                self.expect_kw("BACKEND")?;
                let targets = self.backend_refs()?;
                self.expect_kw("SET")?;
                let properties = self.properties()?;
                Ok(Statement::ModifyBackends {
                    targets,
                    properties,
                })
            }
        }
    }

    /// After `ALTER SYSTEM ADD|DROP`: BACKEND list, or one FOLLOWER/OBSERVER.
    fn add_or_drop(&mut self, add: bool) -> Result<Statement> {
        let role = match self.expect_one_of(&["BACKEND", "FOLLOWER", "OBSERVER"])? {
            "BACKEND" if add => {
                let addrs = self.backend_strings("a \"host:port\" string", |entry| {
                    entry
                        .parse::<HostPort>()
                        .map_err(|e| addr_message("backend", entry, e))
                })?;
                let properties = if self.eat_kw("PROPERTIES") {
                    self.properties()?
                } else {
                    Vec::new()
                };
                return Ok(Statement::AddBackends { addrs, properties });
            }
            "BACKEND" => {
                let targets = self.backend_refs()?;
                return Ok(Statement::DropBackends { targets });
            }
            "FOLLOWER" => FrontendRole::Follower,
            _ => FrontendRole::Observer,
        };
        let (s, loc) = self.string("a \"host:port\" string")?;
        let addr = match s.trim().parse::<HostPort>() {
            Ok(addr) => addr,
            Err(_) if s.contains(',') => {
                let msg =
                    format!("invalid frontend address \"{s}\": expected a single \"host:port\"");
                return self.error_at(loc, msg);
            }
            Err(e) => return self.error_at(loc, addr_message("frontend", s.trim(), e)),
        };
        Ok(if add {
            Statement::AddFrontend { role, addr }
        } else {
            Statement::DropFrontend { role, addr }
        })
    }

    /// `"id|h:p"[, ...]`, each string possibly holding several comma-separated entries.
    fn backend_refs(&mut self) -> Result<Vec<BackendRef>> {
        self.backend_strings("a \"host:port\" or backend id string", backend_ref)
    }

    /// A list of strings split into trimmed entries; a bad entry is reported at its string.
    fn backend_strings<T>(
        &mut self,
        what: &str,
        entry: impl Fn(&str) -> std::result::Result<T, String>,
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        loop {
            let (s, loc) = self.string(what)?;
            for part in s.split(',') {
                match entry(part.trim()) {
                    Ok(v) => out.push(v),
                    Err(msg) => return self.error_at(loc, msg),
                }
            }
            if !self.eat(&Token::Comma) {
                return Ok(out);
            }
        }
    }

    /// `ADD|DELETE BACKEND BLACKLIST id[, ...]`
    pub(super) fn blacklist_statement(&mut self) -> Result<Statement> {
        let add = self.expect_one_of(&["ADD", "DELETE"])? == "ADD";
        self.expect_kw("BACKEND")?;
        self.expect_kw("BLACKLIST")?;
        let ids = self.comma_list(Self::backend_id)?;
        Ok(if add {
            Statement::AddBlacklist { ids }
        } else {
            Statement::DeleteBlacklist { ids }
        })
    }

    /// A bare id as in StarRocks, or a quoted one as the other backend statements use.
    fn backend_id(&mut self) -> Result<u64> {
        if let Some(Token::SingleQuotedString(_) | Token::DoubleQuotedString(_)) = self.peek() {
            let (s, loc) = self.string("a backend id")?;
            return match s.parse::<u64>() {
                Ok(id) if s.bytes().all(|b| b.is_ascii_digit()) => Ok(id),
                _ => self.error_at(loc, format!("invalid backend id \"{s}\"")),
            };
        }
        Ok(self.uint("a backend id")?.0)
    }

    /// After `SHOW BACKEND`: `BLACKLIST [FROM ALL FRONTENDS]`.
    pub(super) fn show_blacklist(&mut self) -> Result<Statement> {
        if !self.peek_kw("BLACKLIST") && matches!(self.peek(), None | Some(Token::SemiColon)) {
            // `SHOW BACKEND;` is a typo of Doris's list of backends far more often than an
            // unfinished blacklist statement.
            return self.expected("BLACKLIST (did you mean SHOW BACKENDS?)");
        }
        self.expect_kw("BLACKLIST")?;
        let all_frontends = self.eat_kw("FROM");
        if all_frontends {
            self.expect_kw("ALL")?;
            self.expect_kw("FRONTENDS")?;
        }
        Ok(Statement::ShowBlacklist { all_frontends })
    }

    /// After `SHOW DECOMMISSION`: `[BLOCKERS [FOR "id|h:p"]]`.
    pub(super) fn show_decommission(&mut self) -> Result<Statement> {
        if !self.eat_kw("BLOCKERS") {
            return Ok(Statement::ShowDecommission);
        }
        if !self.eat_kw("FOR") {
            return Ok(Statement::ShowDecommissionBlockers { backend: None });
        }
        let (s, loc) = self.string("a \"host:port\" or backend id string")?;
        if s.contains(',') {
            let msg = format!("invalid backend \"{s}\": expected a single backend");
            return self.error_at(loc, msg);
        }
        match backend_ref(s.trim()) {
            Ok(b) => Ok(Statement::ShowDecommissionBlockers { backend: Some(b) }),
            Err(msg) => self.error_at(loc, msg),
        }
    }
}

/// `"10002"` (all digits) is an id, anything else must be `host:port`.
fn backend_ref(entry: &str) -> std::result::Result<BackendRef, String> {
    if !entry.is_empty() && entry.bytes().all(|b| b.is_ascii_digit()) {
        return entry
            .parse()
            .map(|id| BackendRef::Id(BackendId(id)))
            .map_err(|_| format!("invalid backend id \"{entry}\": out of range"));
    }
    match entry.parse() {
        Ok(addr) => Ok(BackendRef::Addr(addr)),
        Err(AddrError::NotHostPort) => Err(format!(
            "invalid backend address \"{entry}\": expected \"host:port\" or a backend id"
        )),
        Err(e) => Err(addr_message("backend", entry, e)),
    }
}

fn addr_message(kind: &str, entry: &str, e: AddrError) -> String {
    match e {
        AddrError::BadPort => format!("invalid port in \"{entry}\""),
        e => format!("invalid {kind} address \"{entry}\": {e}"),
    }
}
