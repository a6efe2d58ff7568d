//! Recursive-descent parser over sqlparser's MySQL tokens: the token cursor and the pieces
//! shared by every statement (keywords, strings, identifiers, lists, PROPERTIES).

mod catalog;
mod cluster;
mod session;

use sqlparser::dialect::MySqlDialect;
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

use crate::ast::{Properties, Statement};
use crate::error::ParseError;

type Result<T> = std::result::Result<T, ParseError>;

/// Parses exactly one statement, optionally followed by `;`.
pub fn parse(sql: &str) -> Result<Statement> {
    let tokens = Tokenizer::new(&MySqlDialect {}, sql)
        .tokenize_with_location()
        .map_err(|e| ParseError {
            message: format!("Syntax error: {}", e.message),
            line: e.location.line,
            column: e.location.column,
        })?;
    let mut p = Parser::new(tokens);
    let stmt = p.statement()?;
    p.finish()?;
    Ok(stmt)
}

pub(crate) struct Parser {
    /// Significant tokens only; whitespace and comments are dropped up front.
    tokens: Vec<TokenWithSpan>,
    pos: usize,
    /// Where "end of input" is reported: just past the last token.
    eof: Location,
}

impl Parser {
    fn new(tokens: Vec<TokenWithSpan>) -> Self {
        let tokens: Vec<_> = tokens
            .into_iter()
            .filter(|t| !matches!(t.token, Token::Whitespace(_) | Token::EOF))
            .collect();
        let eof = tokens.last().map_or(Location::new(1, 1), |t| t.span.end);
        Parser {
            tokens,
            pos: 0,
            eof,
        }
    }

    fn statement(&mut self) -> Result<Statement> {
        let Some(kw) = self.peek_word() else {
            return self.expected("a statement");
        };
        match kw.to_ascii_uppercase().as_str() {
            "ALTER" | "EXPLAIN" | "CANCEL" => self.cluster_statement(),
            "ADD" | "DELETE" => self.blacklist_statement(),
            "SHOW" => self.show(),
            "CREATE" | "DROP" | "RECOVER" => self.ddl_statement(),
            "ADMIN" => self.admin(),
            "GRANT" | "REVOKE" => self.grant_or_revoke(),
            "SET" => self.set(),
            "SELECT" => self.select(),
            "USE" => {
                self.pos += 1;
                Ok(Statement::Use {
                    db: self.ident("a database name")?,
                })
            }
            _ => self.expected("a statement"),
        }
    }

    /// `SHOW ...`: the families live in their own modules, this only dispatches.
    fn show(&mut self) -> Result<Statement> {
        self.expect_kw("SHOW")?;
        if self.peek_kw("GLOBAL") || self.peek_kw("SESSION") || self.peek_kw("VARIABLES") {
            return self.show_variables();
        }
        for (singular, plural) in [("FRONTEND", "FRONTENDS"), ("TABLE", "TABLES")] {
            if self.peek_kw(singular) {
                return self.expected(format!("{plural} (did you mean SHOW {plural}?)"));
            }
        }
        let what = self.expect_one_of(&[
            "BACKENDS",
            "FRONTENDS",
            "BACKEND",
            "DECOMMISSION",
            "CATALOG",
            "TABLES",
            "TABLET",
            "TABLETS",
            "GRANTS",
            "VARIABLES",
            "DATABASES",
        ])?;
        match what {
            "BACKENDS" => Ok(Statement::ShowBackends),
            "FRONTENDS" => Ok(Statement::ShowFrontends),
            "BACKEND" => self.show_blacklist(),
            "DECOMMISSION" => self.show_decommission(),
            "GRANTS" => self.show_grants(),
            "DATABASES" => Ok(Statement::ShowDatabases),
            _ => self.show_catalog(what),
        }
    }

    /// Optional `;`, then nothing: one statement per request.
    fn finish(&mut self) -> Result<()> {
        if self.eat(&Token::SemiColon) {
            if self.peek().is_some() {
                return self.expected("end of input");
            }
        } else if self.peek().is_some() {
            return self.expected("\";\" or end of input");
        }
        Ok(())
    }

    // ---- cursor ----

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|t| &t.token)
    }

    fn peek_nth(&self, n: usize) -> Option<&Token> {
        self.tokens.get(self.pos + n).map(|t| &t.token)
    }

    /// Start of the current token, or end of input.
    fn loc(&self) -> Location {
        self.tokens.get(self.pos).map_or(self.eof, |t| t.span.start)
    }

    /// The current token's text if it is an unquoted word (a keyword candidate).
    fn peek_word(&self) -> Option<&str> {
        match self.peek() {
            Some(Token::Word(w)) if w.quote_style.is_none() => Some(&w.value),
            _ => None,
        }
    }

    fn peek_kw(&self, kw: &str) -> bool {
        self.peek_word().is_some_and(|w| w.eq_ignore_ascii_case(kw))
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        let hit = self.peek_kw(kw);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn expect_kw(&mut self, kw: &str) -> Result<()> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            self.expected(kw)
        }
    }

    /// Consumes one of `kws` and returns it (as spelled in `kws`).
    fn expect_one_of(&mut self, kws: &[&'static str]) -> Result<&'static str> {
        if let Some(kw) = kws.iter().find(|kw| self.peek_kw(kw)) {
            self.pos += 1;
            return Ok(kw);
        }
        match kws {
            [one] => self.expected(one),
            _ => self.expected(format!("one of {}", kws.join(", "))),
        }
    }

    fn eat(&mut self, tok: &Token) -> bool {
        let hit = self.peek() == Some(tok);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn expect(&mut self, tok: &Token) -> Result<()> {
        if self.eat(tok) {
            Ok(())
        } else {
            self.expected(format!("\"{tok}\""))
        }
    }

    // ---- errors ----

    fn error_at<T>(&self, loc: Location, message: String) -> Result<T> {
        Err(ParseError {
            message,
            line: loc.line,
            column: loc.column,
        })
    }

    /// `Syntax error: expected X, found Y` at the current token.
    fn expected<T>(&self, what: impl std::fmt::Display) -> Result<T> {
        let found = match self.peek() {
            None => "end of input".to_string(),
            Some(tok) => describe(tok),
        };
        self.error_at(
            self.loc(),
            format!("Syntax error: expected {what}, found {found}"),
        )
    }

    // ---- shared pieces ----

    /// A 'single' or "double" quoted string and where it starts.
    fn string(&mut self, what: &str) -> Result<(String, Location)> {
        let loc = self.loc();
        match self.peek() {
            Some(Token::SingleQuotedString(s) | Token::DoubleQuotedString(s)) => {
                let s = s.clone();
                self.pos += 1;
                Ok((s, loc))
            }
            _ => self.expected(what),
        }
    }

    /// A bare or `backquoted` identifier. Bare words starting with `@` are variables, not names.
    fn ident(&mut self, what: &str) -> Result<String> {
        match self.peek() {
            Some(Token::Word(w))
                if !w.value.is_empty()
                    && (w.quote_style == Some('`') || !w.value.starts_with('@')) =>
            {
                let name = w.value.clone();
                self.pos += 1;
                Ok(name)
            }
            _ => self.expected(what),
        }
    }

    /// An unsigned integer literal that fits in u64.
    fn uint(&mut self, what: &str) -> Result<(u64, Location)> {
        let loc = self.loc();
        match self.peek() {
            Some(Token::Number(n, false)) if n.bytes().all(|b| b.is_ascii_digit()) => {
                let Ok(v) = n.parse::<u64>() else {
                    return self.error_at(loc, format!("Syntax error: {what} out of range: {n}"));
                };
                self.pos += 1;
                Ok((v, loc))
            }
            _ => self.expected(what),
        }
    }

    /// `item (, item)*`
    fn comma_list<T>(&mut self, mut item: impl FnMut(&mut Self) -> Result<T>) -> Result<Vec<T>> {
        let mut items = vec![item(self)?];
        while self.eat(&Token::Comma) {
            items.push(item(self)?);
        }
        Ok(items)
    }

    /// `("k" = "v", ...)`: at least one pair; values may also be bare numbers.
    fn properties(&mut self) -> Result<Properties> {
        self.expect(&Token::LParen)?;
        let mut props: Properties = Vec::new();
        loop {
            let (key, key_loc) = self.string("a property name string")?;
            if key.is_empty() {
                return self.error_at(key_loc, "empty property name".to_string());
            }
            if props.iter().any(|(k, _)| k.eq_ignore_ascii_case(&key)) {
                return self.error_at(key_loc, format!("duplicate property \"{key}\""));
            }
            self.expect(&Token::Eq)?;
            let value = match self.peek() {
                Some(Token::Number(n, false)) => {
                    let n = n.clone();
                    self.pos += 1;
                    n
                }
                _ => self.string("a property value string")?.0,
            };
            props.push((key, value));
            if !self.eat(&Token::Comma) {
                break;
            }
        }
        if !self.eat(&Token::RParen) {
            return self.expected("\",\" or \")\"");
        }
        Ok(props)
    }

    /// `LIKE 'pattern'` if present.
    fn opt_like(&mut self) -> Result<Option<String>> {
        if self.eat_kw("LIKE") {
            Ok(Some(self.string("a pattern string")?.0))
        } else {
            Ok(None)
        }
    }
}

/// How a token is named in "found ..." messages; long literals are cut short.
fn describe(tok: &Token) -> String {
    let text = match tok {
        Token::Word(w) if w.quote_style == Some('`') => format!("`{}`", w.value),
        Token::Word(w) => w.value.clone(),
        Token::SingleQuotedString(s) => return format!("'{}'", shorten(s)),
        Token::DoubleQuotedString(s) => return format!("\"{}\"", shorten(s)),
        other => other.to_string(),
    };
    format!("\"{}\"", shorten(&text))
}

fn shorten(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head}...")
    }
}
