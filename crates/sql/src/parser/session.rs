//! Settings, users and grants, and the housekeeping MySQL clients send on connect
//! (`SET NAMES`, `SELECT @@version_comment`, `SHOW VARIABLES`).

use sqlparser::tokenizer::Token;

use super::{Parser, Result};
use crate::ast::{SelectExpr, SelectItem, Statement};

/// Privileges of SPEC section 2; anything else is a typo worth pointing at.
const PRIVILEGES: &[&str] = &["ADMIN_PRIV", "NODE_PRIV", "BLACKLIST", "SELECT_PRIV"];

impl Parser {
    /// `ADMIN SET FRONTEND CONFIG (...)`, `ADMIN SHOW FRONTEND CONFIG [LIKE]`,
    /// `ADMIN SHOW REPLICA DISTRIBUTION FROM t`.
    pub(super) fn admin(&mut self) -> Result<Statement> {
        self.expect_kw("ADMIN")?;
        if self.expect_one_of(&["SET", "SHOW"])? == "SET" {
            self.expect_kw("FRONTEND")?;
            self.expect_kw("CONFIG")?;
            let properties = self.properties()?;
            return Ok(Statement::AdminSetConfig { properties });
        }
        if self.expect_one_of(&["FRONTEND", "REPLICA"])? == "REPLICA" {
            self.expect_kw("DISTRIBUTION")?;
            let table = self.table_after_from()?;
            return Ok(Statement::ShowReplicaDistribution { table });
        }
        self.expect_kw("CONFIG")?;
        let like = self.opt_like()?;
        Ok(Statement::AdminShowConfig { like })
    }

    /// A user name: `'u'`, `"u"` or a bare word.
    fn user(&mut self) -> Result<String> {
        let loc = self.loc();
        let user = match self.peek() {
            Some(Token::Word(_)) => self.ident("a user name")?,
            _ => self.string("a user name")?.0,
        };
        if user.is_empty() {
            return self.error_at(loc, "empty user name".to_string());
        }
        Ok(user)
    }

    /// After `CREATE USER`.
    pub(super) fn create_user(&mut self) -> Result<Statement> {
        let user = self.user()?;
        self.expect_kw("IDENTIFIED")?;
        self.expect_kw("BY")?;
        let password = self.string("a password string")?.0;
        Ok(Statement::CreateUser { user, password })
    }

    /// After `DROP USER`.
    pub(super) fn drop_user(&mut self) -> Result<Statement> {
        Ok(Statement::DropUser { user: self.user()? })
    }

    /// `GRANT p[, ...] [ON *.*[.*]] TO u`, `REVOKE p[, ...] [ON ...] FROM u`.
    pub(super) fn grant_or_revoke(&mut self) -> Result<Statement> {
        let grant = self.expect_one_of(&["GRANT", "REVOKE"])? == "GRANT";
        let privs = self.comma_list(Self::privilege)?;
        // Privileges are cluster-wide; accept the Doris/MySQL global scope and drop it.
        if self.eat_kw("ON") {
            self.expect(&Token::Mul)?;
            for _ in 0..2 {
                if !self.eat(&Token::Period) {
                    break;
                }
                self.expect(&Token::Mul)?;
            }
        }
        self.expect_kw(if grant { "TO" } else { "FROM" })?;
        let user = self.user()?;
        Ok(if grant {
            Statement::Grant { privs, user }
        } else {
            Statement::Revoke { privs, user }
        })
    }

    fn privilege(&mut self) -> Result<String> {
        let loc = self.loc();
        let Some(word) = self.peek_word() else {
            return self.expected("a privilege");
        };
        let word = word.to_ascii_uppercase();
        if !PRIVILEGES.contains(&word.as_str()) {
            let known = PRIVILEGES.join(", ");
            return self.error_at(
                loc,
                format!("unknown privilege \"{word}\", expected one of {known}"),
            );
        }
        self.pos += 1;
        Ok(word)
    }

    /// After `SHOW GRANTS`.
    pub(super) fn show_grants(&mut self) -> Result<Statement> {
        let user = if self.eat_kw("FOR") {
            Some(self.user()?)
        } else {
            None
        };
        Ok(Statement::ShowGrants { user })
    }

    /// `SHOW [GLOBAL|SESSION] VARIABLES [LIKE 'pat']`; the scope is accepted and ignored.
    pub(super) fn show_variables(&mut self) -> Result<Statement> {
        if !self.eat_kw("GLOBAL") {
            self.eat_kw("SESSION");
        }
        self.expect_kw("VARIABLES")?;
        let like = self.opt_like()?;
        Ok(Statement::ShowVariables { like })
    }

    /// `SET assignment[, ...]`
    pub(super) fn set(&mut self) -> Result<Statement> {
        self.expect_kw("SET")?;
        let mut assignments = Vec::new();
        loop {
            let is_assign = |t: Option<&Token>| matches!(t, Some(Token::Eq | Token::Assignment));
            if self.peek_kw("NAMES") && !is_assign(self.peek_nth(1)) {
                self.pos += 1;
                assignments.push(("names".to_string(), self.set_value()?));
                if self.eat_kw("COLLATE") {
                    assignments.push(("collation_connection".to_string(), self.set_value()?));
                }
            } else {
                let name = self.variable_name()?;
                if !self.eat(&Token::Assignment) {
                    self.expect(&Token::Eq)?;
                }
                assignments.push((name, self.set_value()?));
            }
            if !self.eat(&Token::Comma) {
                break;
            }
        }
        Ok(Statement::SetVariables { assignments })
    }

    /// `[SESSION|LOCAL] x`, `@@[session.|local.]x` or `@x`, lower-cased without scope.
    fn variable_name(&mut self) -> Result<String> {
        // A scope keyword only when a name follows: `SET session = 1` sets `session`.
        let name_follows = matches!(self.peek_nth(1), Some(Token::Word(_)));
        if name_follows && self.peek_kw("GLOBAL") {
            return self.refuse_global();
        }
        if name_follows && (self.peek_kw("SESSION") || self.peek_kw("LOCAL")) {
            self.pos += 1;
        }
        let loc = self.loc();
        let Some(word) = self.peek_word().map(str::to_ascii_lowercase) else {
            return self.expected("a variable name");
        };
        let name = match word.strip_prefix("@@") {
            Some(scope) if self.peek_nth(1) == Some(&Token::Period) => {
                match scope {
                    "global" => return self.refuse_global(),
                    "session" | "local" => {}
                    _ => return self.error_at(loc, format!("unknown variable scope \"{scope}\"")),
                }
                self.pos += 2;
                match self.peek_word() {
                    Some(name) => name.to_ascii_lowercase(),
                    None => return self.expected("a variable name"),
                }
            }
            Some(name) => name.to_string(),
            None => word.clone(),
        };
        self.pos += 1;
        // `@@@@x` would print back as `@@x`, a different variable.
        if name.is_empty() || name == "@" || name.starts_with("@@") {
            return self.error_at(loc, format!("invalid variable name \"{word}\""));
        }
        Ok(name)
    }

    fn refuse_global<T>(&self) -> Result<T> {
        self.error_at(
            self.loc(),
            "SET GLOBAL is not supported; use ADMIN SET FRONTEND CONFIG".to_string(),
        )
    }

    /// A SET value as text: string, (signed) number or bare word (`utf8mb4`, `NULL`, `ON`).
    fn set_value(&mut self) -> Result<String> {
        let value = match self.peek() {
            Some(
                Token::SingleQuotedString(s)
                | Token::DoubleQuotedString(s)
                | Token::Number(s, false),
            ) => s.clone(),
            Some(Token::Word(w)) if w.quote_style.is_none() => w.value.clone(),
            Some(sign @ (Token::Minus | Token::Plus)) => {
                let sign = if *sign == Token::Minus { "-" } else { "" };
                self.pos += 1;
                match self.peek() {
                    Some(Token::Number(n, false)) => format!("{sign}{n}"),
                    _ => return self.expected("a number"),
                }
            }
            _ => return self.expected("a value"),
        };
        self.pos += 1;
        Ok(value)
    }

    /// `SELECT item[, ...] [LIMIT n]`
    pub(super) fn select(&mut self) -> Result<Statement> {
        self.expect_kw("SELECT")?;
        let items = self.comma_list(Self::select_item)?;
        let limit = if self.eat_kw("LIMIT") {
            Some(self.uint("a row count")?.0)
        } else {
            None
        };
        Ok(Statement::Select { items, limit })
    }

    fn select_item(&mut self) -> Result<SelectItem> {
        let expr = self.select_expr()?;
        let alias = if self.eat_kw("AS") {
            match self.peek() {
                Some(Token::SingleQuotedString(_) | Token::DoubleQuotedString(_)) => {
                    Some(self.string("an alias")?.0)
                }
                _ => Some(self.ident("an alias")?),
            }
        } else {
            None
        };
        Ok(SelectItem { expr, alias })
    }

    /// `@@[scope.]name`, `name()`, a number or a string.
    fn select_expr(&mut self) -> Result<SelectExpr> {
        let loc = self.loc();
        let word = self.peek_word().map(str::to_string);
        let expr = match (self.peek(), word) {
            (Some(Token::Number(n, false)), _) => SelectExpr::Number(n.clone()),
            (Some(Token::SingleQuotedString(s) | Token::DoubleQuotedString(s)), _) => {
                SelectExpr::String(s.clone())
            }
            (_, Some(word)) if word.starts_with("@@") => {
                self.pos += 1;
                let mut var = word[2..].to_string();
                if self.eat(&Token::Period) {
                    let Some(name) = self.peek_word() else {
                        return self.expected("a variable name");
                    };
                    var = format!("{var}.{name}");
                    self.pos += 1;
                }
                if var.is_empty() || var.starts_with(['@', '.']) {
                    return self.error_at(loc, format!("invalid variable \"@@{var}\""));
                }
                return Ok(SelectExpr::Variable(var));
            }
            (_, Some(word))
                if !word.starts_with('@') && self.peek_nth(1) == Some(&Token::LParen) =>
            {
                self.pos += 2;
                self.expect(&Token::RParen)?;
                return Ok(SelectExpr::Function(word));
            }
            _ => return self.expected("@@variable, function() or literal"),
        };
        self.pos += 1;
        Ok(expr)
    }
}
