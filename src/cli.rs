//! The command line: cockroach-style subcommands of one binary.

use crate::{backend, bench, cert_cmd, config, node_cmd, playground, sql_shell, start};

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "roster",
    version,
    about = "Roster: the metadata quorum for a fleet of storage backends"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one FE.
    Start {
        /// TOML config file (see config/fe1.toml for every key).
        #[arg(long)]
        config: PathBuf,
        /// Override data_dir.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Print the merged configuration as JSON and exit.
        #[arg(long)]
        print_config: bool,
        /// Secure mode with the certificates in DIR (see `roster cert`); overrides certs_dir.
        #[arg(long, value_name = "DIR", conflicts_with = "insecure")]
        certs_dir: Option<PathBuf>,
        /// Run without TLS or peer authentication (loopback playgrounds only).
        #[arg(long)]
        insecure: bool,
    },
    /// Run the reference backend agent.
    Backend(backend::BackendArgs),
    /// A SQL shell over the client library, or one statement with -e.
    Sql(sql_shell::SqlArgs),
    /// Benchmarks that print their ratio against a bound or a peer measured in the same run.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// Operator commands in CockroachDB's style: status, decommission, recommission, drain.
    #[command(subcommand)]
    Node(node_cmd::NodeCmd),
    /// Start a local cluster on loopback (3 FEs, 4 agents, each its own process) and print how
    /// to connect.
    Playground(playground::PlaygroundArgs),
    /// Make the certificates of a secure cluster: a CA, node and client certificates.
    #[command(subcommand)]
    Cert(cert_cmd::CertCmd),
}

fn init_tracing(json: bool) {
    crate::logging::init(json);
}

/// The whole program: parse the command line, run the subcommand, map its error to an exit code.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Start {
                config,
                data_dir,
                print_config,
                certs_dir,
                insecure,
            } => {
                let overrides = config::Overrides {
                    data_dir,
                    node_id: None,
                    insecure: (insecure || certs_dir.is_some()).then_some(insecure),
                    certs_dir,
                };
                let mut cfg = config::load(&config, &overrides)?;
                if print_config {
                    cfg.root_password = if cfg.root_password.is_empty() {
                        String::new()
                    } else {
                        "<hidden>".into()
                    };
                    if cfg.cluster_token.is_some() {
                        cfg.cluster_token = Some("<hidden>".into());
                    }
                    println!("{}", serde_json::to_string_pretty(&cfg)?);
                    return Ok(());
                }
                cfg.require_root_password()?;
                init_tracing(cfg.log_format == "json");
                start::run(cfg).await
            }
            Command::Sql(args) => sql_shell::run(args).await,
            Command::Cert(cmd) => cert_cmd::run(cmd),
            Command::Node(cmd) => node_cmd::run(cmd).await,
            Command::Bench(cmd) => {
                init_tracing(false);
                bench::run(cmd).await
            }
            Command::Backend(args) => {
                init_tracing(false);
                backend::run(args).await
            }
            Command::Playground(args) => {
                init_tracing(false);
                playground::run(args).await
            }
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
