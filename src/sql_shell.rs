//! `roster sql`: one statement with `-e`, or an interactive shell reading statements ended by `;`.

use crate::table;
use roster_api::{Client, ClientConfig, ClientError};
use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

/// How the command-line tools reach the cluster (shared by `roster sql` and `roster node`).
#[derive(clap::Args, Clone)]
pub struct ConnArgs {
    /// FE rpc endpoints (comma-separated host:port), or one VIP.
    #[arg(
        long,
        env = "ROSTER_ENDPOINTS",
        default_value = "127.0.0.1:9020",
        value_delimiter = ','
    )]
    endpoints: Vec<String>,
    #[arg(short = 'u', long, default_value = "root")]
    user: String,
    #[arg(short = 'p', long, env = "ROSTER_PASSWORD", default_value = "")]
    password: String,
    /// Serve reads from the FE's local state (says how far behind it is).
    #[arg(long)]
    stale: bool,
    /// Deadline of each statement, retries included.
    #[arg(long, default_value_t = 15)]
    timeout_sec: u64,
}

impl ConnArgs {
    pub fn client(&self) -> Result<Client, ClientError> {
        self.client_of(self.endpoints.clone())
    }

    /// A client of other endpoints, with these credentials (one FE: `roster node drain`).
    pub fn client_of(&self, endpoints: Vec<String>) -> Result<Client, ClientError> {
        let mut cfg = ClientConfig::new(endpoints);
        cfg.user = self.user.clone();
        cfg.password = self.password.clone();
        cfg.stale_reads = self.stale;
        cfg.timeout = Duration::from_secs(self.timeout_sec);
        Client::new(cfg)
    }
}

#[derive(clap::Args)]
pub struct SqlArgs {
    /// Execute this statement and exit.
    #[arg(short = 'e', long = "execute")]
    execute: Option<String>,
    #[command(flatten)]
    conn: ConnArgs,
}

async fn run_one(client: &Client, sql: &str) -> Result<(), ClientError> {
    let r = client.execute(sql).await?;
    print!("{}", table::render(&r));
    Ok(())
}

pub async fn run(args: SqlArgs) -> anyhow::Result<()> {
    let client = args.conn.client()?;
    if let Some(sql) = args.execute {
        if let Err(e) = run_one(&client, &sql).await {
            eprintln!("{e}");
            std::process::exit(1);
        }
        return Ok(());
    }
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        println!(
            "Connected to Roster at {}. End statements with ';'. Ctrl-D quits.",
            args.conn.endpoints.join(",")
        );
    }
    let mut buf = String::new();
    let mut failed = false;
    let stdin = std::io::stdin();
    loop {
        if interactive {
            print!(
                "{}",
                if buf.is_empty() {
                    "roster> "
                } else {
                    "     -> "
                }
            );
            std::io::stdout().flush()?;
        }
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        let t = line.trim();
        if buf.is_empty() && (t.eq_ignore_ascii_case("quit") || t.eq_ignore_ascii_case("exit")) {
            break;
        }
        buf.push_str(&line);
        if t.ends_with(';') {
            let sql = std::mem::take(&mut buf);
            if let Err(e) = run_one(&client, sql.trim()).await {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    if !buf.trim().is_empty()
        && let Err(e) = run_one(&client, buf.trim()).await
    {
        eprintln!("{e}");
        failed = true;
    }
    if failed && !interactive {
        std::process::exit(1);
    }
    Ok(())
}
