//! Tables and tablets: CREATE/DROP/RECOVER TABLE and the SHOW statements about them.

use sqlparser::tokenizer::Token;

use super::{Parser, Result};
use crate::ast::{Sq, Statement};

impl Parser {
    /// `CREATE|DROP TABLE|USER ...`, `RECOVER TABLE ...`.
    pub(super) fn ddl_statement(&mut self) -> Result<Statement> {
        match self.expect_one_of(&["CREATE", "DROP", "RECOVER"])? {
            "RECOVER" => {
                self.expect_kw("TABLE")?;
                let name = self.ident("a table name")?;
                Ok(Statement::RecoverTable { name })
            }
            verb => match (verb, self.expect_one_of(&["TABLE", "USER"])?) {
                ("CREATE", "TABLE") => self.create_table(),
                ("CREATE", _) => self.create_user(),
                (_, "TABLE") => self.drop_table(),
                _ => self.drop_user(),
            },
        }
    }

    /// After `CREATE TABLE`.
    fn create_table(&mut self) -> Result<Statement> {
        let if_not_exists = self.eat_kw("IF");
        if if_not_exists {
            self.expect_kw("NOT")?;
            self.expect_kw("EXISTS")?;
        }
        let name = self.ident("a table name")?;
        let mut columns = Vec::new();
        if self.eat(&Token::LParen) {
            columns = self.comma_list(|p| Ok((p.ident("a column name")?, p.column_type()?)))?;
            if !self.eat(&Token::RParen) {
                return self.expected("\",\" or \")\"");
            }
        }
        let mut hash_columns = Vec::new();
        if self.eat_kw("DISTRIBUTED") {
            self.expect_kw("BY")?;
            self.expect_kw("HASH")?;
            self.expect(&Token::LParen)?;
            hash_columns = self.comma_list(|p| p.ident("a column name"))?;
            if !self.eat(&Token::RParen) {
                return self.expected("\",\" or \")\"");
            }
        }
        self.expect_kw("BUCKETS")?;
        let (buckets, loc) = self.uint("a bucket count")?;
        let buckets = match u32::try_from(buckets) {
            Ok(n) if n > 0 => n,
            _ => {
                return self.error_at(
                    loc,
                    format!("invalid BUCKETS {buckets}: must be 1 to {}", u32::MAX),
                );
            }
        };
        let properties = if self.eat_kw("PROPERTIES") {
            self.properties()?
        } else {
            Vec::new()
        };
        Ok(Statement::CreateTable {
            name,
            if_not_exists,
            columns,
            hash_columns,
            buckets,
            properties,
        })
    }

    /// A column type, recorded as normalised token text up to the `,` or `)` that ends the
    /// column. Parentheses and `<>` nest so `DECIMAL(10, 2)` and `MAP<INT, STRING>` stay whole.
    fn column_type(&mut self) -> Result<String> {
        let mut text = String::new();
        let mut prev: Option<Piece> = None;
        let (mut parens, mut angles) = (0u32, 0u32);
        while let Some(tok) = self.peek() {
            let nested = parens > 0 || angles > 0;
            let piece = match tok {
                Token::Comma if nested => Piece::Comma,
                Token::LParen => Piece::Open("("),
                Token::RParen if parens > 0 => Piece::Close(")"),
                Token::Lt => Piece::Open("<"),
                Token::Gt if angles >= 1 => Piece::Close(">"),
                Token::ShiftRight if angles >= 2 => Piece::Close(">>"),
                Token::Word(w) if w.quote_style.is_none() => Piece::Text(w.value.clone()),
                Token::Word(w) => Piece::Text(format!("`{}`", w.value.replace('`', "``"))),
                Token::Number(n, false) => Piece::Text(n.clone()),
                Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => {
                    Piece::Text(Sq(s).to_string())
                }
                _ => break,
            };
            match &piece {
                Piece::Open("(") => parens += 1,
                Piece::Open(_) => angles += 1,
                Piece::Close(")") => parens -= 1,
                Piece::Close(">") => angles -= 1,
                Piece::Close(_) => angles -= 2,
                _ => {}
            }
            if space_between(prev.as_ref(), &piece) {
                text.push(' ');
            }
            text.push_str(piece.as_str());
            prev = Some(piece);
            self.pos += 1;
        }
        if text.is_empty() {
            self.expected("a column type")
        } else if parens > 0 {
            self.expected("\")\"")
        } else if angles > 0 {
            self.expected("\">\"")
        } else {
            Ok(text)
        }
    }

    /// After `DROP TABLE`.
    fn drop_table(&mut self) -> Result<Statement> {
        let if_exists = self.eat_kw("IF");
        if if_exists {
            self.expect_kw("EXISTS")?;
        }
        let name = self.ident("a table name")?;
        let force = self.eat_kw("FORCE");
        Ok(Statement::DropTable {
            name,
            if_exists,
            force,
        })
    }

    /// After `SHOW`, one of `CATALOG RECYCLE BIN`, `TABLES`, `TABLET id`,
    /// `TABLET ROUTES FROM t`, `TABLETS FROM t`.
    pub(super) fn show_catalog(&mut self, what: &str) -> Result<Statement> {
        match what {
            "CATALOG" => {
                self.expect_kw("RECYCLE")?;
                self.expect_kw("BIN")?;
                Ok(Statement::ShowRecycleBin)
            }
            "TABLES" => Ok(Statement::ShowTables),
            "TABLET" if self.eat_kw("ROUTES") => Ok(Statement::ShowTabletRoutes {
                table: self.table_after_from()?,
            }),
            "TABLET" => match self.peek() {
                Some(Token::Number(..)) => Ok(Statement::ShowTablet {
                    id: self.uint("a tablet id")?.0,
                }),
                _ => self.expected("a tablet id or ROUTES"),
            },
            _ => Ok(Statement::ShowTablets {
                table: self.table_after_from()?,
            }),
        }
    }

    /// `FROM name`
    pub(super) fn table_after_from(&mut self) -> Result<String> {
        self.expect_kw("FROM")?;
        self.ident("a table name")
    }
}

/// One token of a column type as it is printed.
enum Piece {
    Open(&'static str),
    Close(&'static str),
    Comma,
    Text(String),
}

impl Piece {
    fn as_str(&self) -> &str {
        match self {
            Piece::Open(s) | Piece::Close(s) => s,
            Piece::Comma => ",",
            Piece::Text(s) => s,
        }
    }
}

/// Spacing that prints `VARCHAR(10)`, `DECIMAL(10, 2)`, `ARRAY<INT> NOT NULL`, and that
/// re-tokenizes to the same pieces (`< <` must not become `<<`, nor `< >` become `<>`).
fn space_between(prev: Option<&Piece>, cur: &Piece) -> bool {
    match (prev, cur) {
        (None, _) => false,
        (Some(Piece::Open("<")), Piece::Open("<") | Piece::Close(">" | ">>")) => true,
        (_, Piece::Open(_) | Piece::Close(_) | Piece::Comma) => false,
        (Some(Piece::Open(_)), _) => false,
        _ => true,
    }
}
