//! `roster`: one binary, cockroach-style subcommands (see `cli`).

fn main() -> std::process::ExitCode {
    roster::main()
}
