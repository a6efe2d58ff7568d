//! Print result sets the way the mysql client does (`+---+` boxes, NULL, "N rows in set").

use roster_client::QueryResult;
use std::fmt::Write;

pub fn render(r: &QueryResult) -> String {
    let mut out = String::new();
    if !r.is_result_set() {
        let _ = write!(
            out,
            "Query OK, {} row{} affected",
            r.affected_rows,
            if r.affected_rows == 1 { "" } else { "s" }
        );
        if !r.message.is_empty() {
            let _ = write!(out, " ({})", r.message);
        }
        out.push('\n');
        return out;
    }
    let cell = |v: &Option<String>| v.clone().unwrap_or_else(|| "NULL".to_string());
    let mut widths: Vec<usize> = r.columns.iter().map(|c| c.chars().count()).collect();
    for row in &r.rows {
        for (i, v) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell(v).chars().count());
            }
        }
    }
    let line: String = widths
        .iter()
        .map(|w| format!("+{}", "-".repeat(w + 2)))
        .collect::<String>()
        + "+\n";
    let fmt_row = |vals: Vec<String>| -> String {
        let mut s = String::new();
        for (v, w) in vals.iter().zip(&widths) {
            let pad = w - v.chars().count();
            let _ = write!(s, "| {v}{} ", " ".repeat(pad));
        }
        s + "|\n"
    };
    if r.rows.is_empty() {
        out.push_str("Empty set\n");
    } else {
        out.push_str(&line);
        out.push_str(&fmt_row(r.columns.clone()));
        out.push_str(&line);
        for row in &r.rows {
            out.push_str(&fmt_row(row.iter().map(cell).collect()));
        }
        out.push_str(&line);
        let n = r.rows.len();
        let _ = writeln!(out, "{n} row{} in set", if n == 1 { "" } else { "s" });
    }
    if !r.message.is_empty() {
        let _ = writeln!(out, "Note: {}", r.message);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_mysql() {
        let r = QueryResult::rows(&["Id", "Name"], vec![vec![Some("1".into()), None]]);
        assert_eq!(
            render(&r),
            "+----+------+\n| Id | Name |\n+----+------+\n| 1  | NULL |\n+----+------+\n1 row in set\n"
        );
        assert_eq!(
            render(&QueryResult::ok(2, "")),
            "Query OK, 2 rows affected\n"
        );
    }
}
