//! Which statements the client may resend after a transport failure: reads, known from their
//! first words alone, so the library needs no SQL parser. A statement it cannot place counts
//! as a write, whose outcome after a lost answer is unknown; calling a read a write only costs a
//! retry, calling a write a read could apply it twice, so every doubt falls on the write side.
//! `tests` checks this against the server's parser (`roster_sql`, a dev-dependency only).

/// True when `sql` is a read (SHOW, SELECT, session SET/USE, EXPLAIN, ADMIN SHOW): sending it
/// again cannot change the cluster.
pub fn is_read_only(sql: &str) -> bool {
    let mut words = Words { rest: sql };
    match words.next().map(|w| w.to_ascii_uppercase()).as_deref() {
        Some("SHOW" | "SELECT" | "USE" | "EXPLAIN") => true,
        // Session variables only: the server has no statement that starts with SET and writes.
        Some("SET") => true,
        Some("ADMIN") => words.next().is_some_and(|w| w.eq_ignore_ascii_case("SHOW")),
        _ => false,
    }
}

/// The leading words of a statement, past whitespace and comments (`-- `, `#`, `/* */`). It
/// stops (None) at anything else, such as a quote or a symbol.
struct Words<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Words<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        loop {
            self.rest = self.rest.trim_start();
            if let Some(r) = self.rest.strip_prefix("/*") {
                // An unterminated comment hides the statement: no word.
                self.rest = &r[r.find("*/")? + 2..];
            } else if self.rest.starts_with("--") || self.rest.starts_with('#') {
                self.rest = self.rest.find('\n').map_or("", |i| &self.rest[i..]);
            } else {
                break;
            }
        }
        let end = self
            .rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(self.rest.len());
        if end == 0 {
            return None;
        }
        let (word, rest) = self.rest.split_at(end);
        self.rest = rest;
        Some(word)
    }
}

#[cfg(test)]
mod tests {
    use super::is_read_only;
    use proptest::prelude::*;

    /// One statement of each kind the server knows, as operators and tests write them.
    const STATEMENTS: &[&str] = &[
        "SHOW BACKENDS",
        "show backends;",
        "SHOW DROPPED BACKENDS",
        "SHOW FRONTENDS",
        "SHOW DECOMMISSION",
        "SHOW DECOMMISSION BLOCKERS FOR \"10002\"",
        "SHOW BACKEND BLACKLIST",
        "SHOW BACKEND BLACKLIST FROM ALL FRONTENDS",
        "SHOW CATALOG RECYCLE BIN",
        "SHOW TABLES",
        "SHOW TABLET 1",
        "SHOW TABLETS FROM t",
        "SHOW TABLET ROUTES FROM t",
        "ADMIN SHOW REPLICA DISTRIBUTION FROM t",
        "ADMIN SHOW FRONTEND CONFIG LIKE 'tablet%'",
        "SHOW GRANTS FOR 'alice'",
        "SHOW VARIABLES LIKE 'version%'",
        "SHOW DATABASES",
        "SET NAMES utf8mb4",
        "SET read_consistency = 'stale'",
        "SELECT @@version_comment LIMIT 1",
        "USE roster",
        "EXPLAIN ALTER SYSTEM DECOMMISSION BACKEND \"10002\"",
        "/* a comment */ SHOW BACKENDS",
        "-- a comment\nSHOW FRONTENDS",
        "ALTER SYSTEM ADD BACKEND \"127.0.9.1:9050\"",
        "ALTER SYSTEM DROP BACKEND \"10002\"",
        "ALTER SYSTEM DROPP BACKEND \"10002\"",
        "ALTER SYSTEM DECOMMISSION BACKEND \"10002\"",
        "CANCEL DECOMMISSION BACKEND \"10002\"",
        "ALTER SYSTEM MODIFY BACKEND \"10002\" SET (\"disable_query\" = \"true\")",
        "ALTER SYSTEM ADD FOLLOWER \"127.0.0.1:9010\"",
        "ALTER SYSTEM DROP OBSERVER \"127.0.0.1:9010\"",
        "ADD BACKEND BLACKLIST 10002",
        "DELETE BACKEND BLACKLIST 10002",
        "CREATE TABLE t BUCKETS 2",
        "DROP TABLE t FORCE",
        "RECOVER TABLE t",
        "ADMIN SET FRONTEND CONFIG (\"tablet_repair_delay_second\" = \"5\")",
        "CREATE USER 'bob' IDENTIFIED BY 'pw'",
        "DROP USER 'bob'",
        "GRANT NODE_PRIV TO 'bob'",
        "REVOKE NODE_PRIV FROM 'bob'",
        "/* SHOW */ ALTER SYSTEM DROPP BACKEND \"10002\"",
        "-- SHOW\nADD BACKEND BLACKLIST 10002",
    ];

    /// What the server's parser says: `None` when it refuses the text (then nothing runs).
    fn server_read_only(sql: &str) -> Option<bool> {
        roster_sql::parse(sql).ok().map(|s| s.is_read_only())
    }

    #[test]
    fn every_kind_of_statement_is_placed_as_the_server_places_it() {
        for sql in STATEMENTS {
            let server = server_read_only(sql)
                .unwrap_or_else(|| panic!("the server refuses the sample {sql:?}"));
            assert_eq!(is_read_only(sql), server, "{sql:?}");
        }
    }

    #[test]
    fn text_that_hides_its_first_word_counts_as_a_write() {
        for sql in [
            "",
            "   ",
            "/* SHOW BACKENDS",
            "'SHOW' BACKENDS",
            "(SELECT 1)",
        ] {
            assert!(!is_read_only(sql), "{sql:?}");
        }
    }

    /// A sample statement dressed as people and tools send it: any letter case, comments
    /// before it and between its words, stray whitespace.
    fn dressed() -> impl Strategy<Value = String> {
        let gap = prop::sample::select(vec![" ", "  ", "\n", " /* x */ ", " -- x\n", " # x\n"]);
        let lead = prop::sample::select(vec![
            "",
            " ",
            "\n",
            "/* SHOW */ ",
            "-- SHOW\n",
            "# SELECT\n",
            "/*! */ ",
            "--\n",
            "/**/",
        ]);
        (
            prop::sample::select(STATEMENTS),
            lead,
            prop::collection::vec(gap, 12),
            prop::collection::vec(any::<bool>(), 64),
        )
            .prop_map(|(sql, lead, gaps, upper)| {
                let mut out = lead.to_string();
                for (i, word) in sql.split(' ').enumerate() {
                    if i > 0 {
                        out.push_str(gaps[i % gaps.len()]);
                    }
                    for (j, c) in word.chars().enumerate() {
                        let up = upper[(i * 7 + j) % upper.len()];
                        out.push(if up {
                            c.to_ascii_uppercase()
                        } else {
                            c.to_ascii_lowercase()
                        });
                    }
                }
                out
            })
    }

    proptest! {
        /// The safety half: whatever the text, the client never calls a statement a read that
        /// the server would run as a write.
        #[test]
        fn never_a_read_where_the_server_sees_a_write(sql in dressed()) {
            if server_read_only(&sql) == Some(false) {
                prop_assert!(!is_read_only(&sql), "{sql:?}");
            }
        }
    }
}
