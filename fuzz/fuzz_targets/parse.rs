//! The admin SQL parser must never panic, and whatever it accepts must print back to a
//! statement that parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else { return };
    match roster_sql::parse(sql) {
        Ok(stmt) => {
            let printed = stmt.to_string();
            assert_eq!(roster_sql::parse(&printed).as_ref(), Ok(&stmt), "round trip of {sql:?} via {printed:?}");
        }
        Err(e) => {
            // Errors point inside (or just past) the input.
            let lines = sql.split('\n').count() as u64;
            assert!(e.line >= 1 && e.line <= lines.max(1), "{e} for {sql:?}");
        }
    }
});
