//! `roster sql`: one statement with `-e`, or an interactive shell reading statements ended by `;`.

use crate::table;
use roster_client::{Client, ClientConfig, ClientError};
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
    /// The password. Prefer ROSTER_PASSWORD or a bare `-p` (asks at a prompt, like mysql):
    /// a password on the command line is visible to every user in `ps`.
    #[arg(
        short = 'p',
        long,
        env = "ROSTER_PASSWORD",
        default_value = "",
        hide_env_values = true,
        num_args = 0..=1,
        default_missing_value = ASK_PASSWORD
    )]
    password: String,
    /// Serve reads from the FE's local state (says how far behind it is).
    #[arg(long)]
    stale: bool,
    /// Deadline of each statement, retries included.
    #[arg(long, default_value_t = 15)]
    timeout_sec: u64,
    /// A secure cluster: verify the FEs with DIR/ca.crt (and log in with
    /// DIR/client.USER.crt when it exists). Without it the connection is plaintext.
    #[arg(long, env = "ROSTER_CERTS_DIR", value_name = "DIR")]
    certs_dir: Option<std::path::PathBuf>,
}

/// What a bare `-p` stands for: ask at a prompt. Not a password anyone can type.
const ASK_PASSWORD: &str = "\u{0}ask";

/// Whether the command line itself carries a password (`-p PW`, `-pPW`, `--password PW`,
/// `--password=PW`), as opposed to ROSTER_PASSWORD or a bare `-p`.
fn password_on_command_line(args: &[String]) -> bool {
    args.iter().enumerate().any(|(i, a)| {
        let next_is_value = args.get(i + 1).is_some_and(|n| !n.starts_with('-'));
        ((a == "-p" || a == "--password") && next_is_value)
            || (a.starts_with("-p") && a.len() > 2 && !a.starts_with("--"))
            || a.starts_with("--password=")
    })
}

impl ConnArgs {
    pub fn client(&self) -> anyhow::Result<Client> {
        self.client_of(self.endpoints.clone())
    }

    /// A client of other endpoints, with these credentials (one FE: `roster node drain`).
    pub fn client_of(&self, endpoints: Vec<String>) -> anyhow::Result<Client> {
        let mut cfg = ClientConfig::new(endpoints);
        cfg.user = self.user.clone();
        cfg.password = if self.password == ASK_PASSWORD {
            rpassword::prompt_password(format!("Password for {}: ", self.user))?
        } else {
            let args: Vec<String> = std::env::args_os()
                .skip(2)
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            static WARNED: std::sync::Once = std::sync::Once::new();
            if password_on_command_line(&args) {
                WARNED.call_once(|| {
                eprintln!(
                    "warning: a password on the command line is visible to other users in `ps`; \
                     prefer ROSTER_PASSWORD=... or a bare -p, which asks for it"
                )
                });
            }
            self.password.clone()
        };
        cfg.stale_reads = self.stale;
        cfg.timeout = Duration::from_secs(self.timeout_sec);
        if let Some(dir) = &self.certs_dir {
            cfg.tls = Some(
                roster_client::ClientTls::from_dir(dir, &self.user)
                    .map_err(|e| anyhow::anyhow!("--certs-dir {}: {e}", dir.display()))?,
            );
        }
        Ok(Client::new(cfg)?)
    }
}

#[derive(clap::Args)]
pub struct SqlArgs {
    /// Execute this statement and exit.
    #[arg(short = 'e', long = "execute")]
    execute: Option<String>,
    /// Longest statement sent, in bytes (as the FE's max_allowed_packet, 1 MiB by default): a
    /// longer one is refused here, without being read into memory whole.
    #[arg(long, default_value_t = 1024 * 1024)]
    max_allowed_packet: usize,
    #[command(flatten)]
    conn: ConnArgs,
}

fn too_long(len: usize, limit: usize) -> String {
    format!(
        "ERROR: statement of {len} bytes or more is longer than --max-allowed-packet ({limit} bytes); not sent"
    )
}

/// One line (with its '\n'), read in pieces: bytes past `max` are read and dropped, not kept.
/// Returns the bytes read (0 at the end of input), whether any were dropped, and whether the
/// whole line (kept or not) ends with ';'.
fn read_line_bounded(
    r: &mut impl BufRead,
    max: usize,
    out: &mut Vec<u8>,
) -> std::io::Result<(usize, bool, bool)> {
    let (mut total, mut dropped, mut last) = (0, false, None);
    loop {
        let chunk = r.fill_buf()?;
        if chunk.is_empty() {
            return Ok((total, dropped, last == Some(b';')));
        }
        let (take, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        if let Some(b) = chunk[..take]
            .iter()
            .rev()
            .find(|b| !b.is_ascii_whitespace())
        {
            last = Some(*b);
        }
        let room = max.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..take.min(room)]);
        dropped |= take > room;
        r.consume(take);
        total += take;
        if done {
            return Ok((total, dropped, last == Some(b';')));
        }
    }
}

async fn run_one(client: &Client, sql: &str) -> Result<(), ClientError> {
    let r = client.execute(sql).await?;
    print!("{}", table::render(&r));
    Ok(())
}

pub async fn run(args: SqlArgs) -> anyhow::Result<()> {
    let client = args.conn.client()?;
    let limit = args.max_allowed_packet;
    if let Some(sql) = args.execute {
        if sql.len() > limit {
            eprintln!("{}", too_long(sql.len(), limit));
            std::process::exit(1);
        }
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
    // The statement being read is over the limit: drop lines up to its ';'.
    let mut skipping = false;
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
        let mut bytes = Vec::new();
        let room = limit.saturating_sub(buf.len()) + 1;
        let (n, dropped, ends) = read_line_bounded(&mut stdin.lock(), room, &mut bytes)?;
        if n == 0 {
            break;
        }
        let line = String::from_utf8_lossy(&bytes).into_owned();
        let t = line.trim();
        if buf.is_empty() && (t.eq_ignore_ascii_case("quit") || t.eq_ignore_ascii_case("exit")) {
            break;
        }
        if !skipping && (dropped || buf.len() + line.len() > limit) {
            eprintln!("{}", too_long(buf.len() + n, limit));
            failed = true;
            skipping = true;
            buf.clear();
        }
        if skipping {
            // A ';' at the end of a line ends the oversized statement.
            if ends {
                skipping = false;
            }
            continue;
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

#[cfg(test)]
mod tests {
    use super::{password_on_command_line, read_line_bounded};

    #[test]
    fn long_lines_are_dropped_not_kept() {
        let input = format!("{}\nSELECT 1;\n", "x".repeat(100_000));
        let mut r = std::io::BufReader::with_capacity(1024, input.as_bytes());
        let mut out = Vec::new();
        assert_eq!(
            read_line_bounded(&mut r, 10, &mut out).unwrap(),
            (100_001, true, false)
        );
        assert_eq!(out.len(), 10, "only the first bytes are kept");
        out.clear();
        assert_eq!(
            read_line_bounded(&mut r, 10, &mut out).unwrap(),
            (10, false, true)
        );
        assert_eq!(out, b"SELECT 1;\n");
        out.clear();
        assert_eq!(
            read_line_bounded(&mut r, 10, &mut out).unwrap(),
            (0, false, false)
        );
    }

    fn on(args: &[&str]) -> bool {
        password_on_command_line(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn finds_passwords_typed_on_the_command_line() {
        assert!(on(&["-p", "secret", "-e", "SHOW BACKENDS"]));
        assert!(on(&["-psecret"]));
        assert!(on(&["--password", "secret"]));
        assert!(on(&["--password=secret"]));
        assert!(
            !on(&["-p", "-e", "SHOW BACKENDS"]),
            "a bare -p asks at a prompt"
        );
        assert!(!on(&["-u", "ops", "-e", "SHOW BACKENDS"]));
        assert!(!on(&["--endpoints", "127.0.0.1:9020"]));
    }
}
