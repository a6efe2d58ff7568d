//! Typed result cells: one value renders as SQL text (Doris's human units and times) and as a
//! JSON value for programs (integer bytes, RFC 3339 times, objects), so the two never drift.

use crate::format::{bytes, datetime, rfc3339};

/// One cell of a typed result set. The HTTP API maps it to JSON; SQL sees `to_sql`.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Bool(bool),
    Text(String),
    /// A size in bytes: an integer for programs, `1.500 KB` in SQL.
    Bytes(u64),
    /// Unix milliseconds, `None` when it never happened: RFC 3339 or null for programs,
    /// `YYYY-MM-DD HH:MM:SS` or NULL in SQL.
    Time(Option<u64>),
    /// A percentage: a number for programs, `12.34 %` in SQL.
    Pct(f64),
    /// A JSON object for programs (Tag, Status).
    Object(Vec<(&'static str, Cell)>),
    /// SQL shows this text (Doris's spelling, such as `-1` for an unknown port or `N/A`);
    /// programs get the inner cell.
    Sql(String, Box<Cell>),
}

impl Cell {
    pub fn text(v: impl ToString) -> Cell {
        Cell::Text(v.to_string())
    }

    pub fn int(v: impl TryInto<i64>) -> Cell {
        v.try_into().map(Cell::Int).unwrap_or(Cell::Null)
    }

    /// SQL text as the MySQL port, gRPC and the shell show it.
    pub fn to_sql(&self) -> Option<String> {
        Some(match self {
            Cell::Null | Cell::Time(None) => return None,
            Cell::Int(v) => v.to_string(),
            Cell::Bool(v) => v.to_string(),
            Cell::Text(v) => v.clone(),
            Cell::Bytes(v) => bytes(*v),
            Cell::Time(Some(ms)) => datetime(*ms),
            Cell::Pct(v) => format!("{v:.2} %"),
            Cell::Object(_) => self.to_json_text(),
            Cell::Sql(text, _) => text.clone(),
        })
    }

    /// Compact JSON text of the program-facing value.
    pub fn to_json_text(&self) -> String {
        match self {
            Cell::Null | Cell::Time(None) => "null".into(),
            Cell::Int(v) => v.to_string(),
            Cell::Bool(v) => v.to_string(),
            Cell::Bytes(v) => v.to_string(),
            Cell::Pct(v) if v.is_finite() => format!("{v}"),
            Cell::Pct(_) => "null".into(),
            Cell::Text(v) => quote(v),
            Cell::Time(Some(ms)) => quote(&rfc3339(*ms)),
            Cell::Object(fields) => {
                let parts: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("{}:{}", quote(k), v.to_json_text()))
                    .collect();
                format!("{{{}}}", parts.join(","))
            }
            Cell::Sql(_, inner) => inner.to_json_text(),
        }
    }
}

/// A JSON string literal.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::Cell;

    #[test]
    fn sql_and_json_forms() {
        assert_eq!(Cell::Bytes(1536).to_sql().as_deref(), Some("1.500 KB"));
        assert_eq!(Cell::Bytes(1536).to_json_text(), "1536");
        assert_eq!(Cell::Time(None).to_sql(), None);
        assert_eq!(Cell::Time(None).to_json_text(), "null");
        assert_eq!(
            Cell::Time(Some(1_700_000_000_123)).to_json_text(),
            "\"2023-11-14T22:13:20.123Z\""
        );
        assert_eq!(Cell::Pct(12.345).to_sql().as_deref(), Some("12.35 %"));
        let port = Cell::Sql("-1".into(), Box::new(Cell::Null));
        assert_eq!(port.to_sql().as_deref(), Some("-1"));
        assert_eq!(port.to_json_text(), "null");
        let obj = Cell::Object(vec![
            ("a", Cell::text("x\"y")),
            ("b", Cell::Bool(true)),
            ("c", Cell::Time(None)),
        ]);
        assert_eq!(obj.to_json_text(), r#"{"a":"x\"y","b":true,"c":null}"#);
    }
}
