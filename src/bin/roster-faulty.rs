//! `roster-faulty`: the `roster` program built with the test-only bug switches (`ROSTER_BUG`)
//! and storage failpoints (`FAILPOINTS`) that the Jepsen twins turn on. Built only with
//! `--features bug-switches`, so neither `target/*/roster` nor the default build carries them:
//! `cargo build --release --features bug-switches --bin roster-faulty`.

fn main() -> std::process::ExitCode {
    roster::main()
}
