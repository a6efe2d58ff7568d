//! `roster-jepsen`: Jepsen-style scenarios against real Roster processes (run as root).
//! See jepsen/README.md.

use clap::{Parser, Subcommand};
use roster_jepsen::STOP;
use roster_jepsen::scenario::{self, RunConfig};
use roster_jepsen::{checker, history, topology};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "roster-jepsen", about = "Jepsen-style tests of Roster")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// The roster binary to test.
    #[arg(long, default_value = "target/debug/roster")]
    bin: PathBuf,
    /// Where run directories go.
    #[arg(long, default_value = "jepsen/store")]
    store: PathBuf,
    /// Seed of the fault and operation schedule.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Subcommand)]
enum Cmd {
    /// List the scenarios.
    List,
    /// Run one scenario.
    Run {
        name: String,
        #[command(flatten)]
        args: RunArgs,
        /// Turn on a bug switch in every FE; the run is then expected to fail.
        #[arg(long)]
        bug: Option<String>,
    },
    /// Run the CI gate: every scenario of the gate, each must pass.
    Gate {
        #[command(flatten)]
        args: RunArgs,
    },
    /// Run every scenario.
    All {
        #[command(flatten)]
        args: RunArgs,
    },
    /// Check a recorded history again.
    Check {
        history: PathBuf,
        /// register, blacklist, intent or set
        #[arg(long, default_value = "register")]
        model: String,
    },
    /// Remove what interrupted runs left behind (namespaces and their processes).
    Cleanup {
        /// Also the namespaces of runs still alive.
        #[arg(long)]
        all: bool,
    },
}

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn run_many(names: &[&str], args: &RunArgs) -> anyhow::Result<bool> {
    let mut ok = true;
    for name in names {
        let s = scenario::find(name)?;
        let o = run_one(&s, args, None)?;
        ok &= o;
        if STOP.load(Ordering::Relaxed) {
            anyhow::bail!("interrupted");
        }
    }
    Ok(ok)
}

fn run_one(s: &scenario::Scenario, args: &RunArgs, bug: Option<String>) -> anyhow::Result<bool> {
    eprintln!(
        "== {} (seed {}){}: {}",
        s.name,
        args.seed,
        bug.as_ref()
            .map(|b| format!(" with bug {b}"))
            .unwrap_or_default(),
        s.about
    );
    let cfg = RunConfig {
        bin: std::fs::canonicalize(&args.bin).map_err(|e| {
            anyhow::anyhow!("{}: {e} (build it first: cargo build)", args.bin.display())
        })?,
        store: args.store.clone(),
        seed: args.seed,
        bug,
    };
    let o = scenario::run(s, &cfg)?;
    for line in &o.summary {
        eprintln!("   {line}");
    }
    eprintln!(
        "   {} -> {}",
        if o.valid { "VALID" } else { "INVALID" },
        o.dir.display()
    );
    Ok(o.valid)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let ok = match cli.cmd {
        Cmd::List => {
            for s in scenario::all() {
                println!("{:32} {}", s.name, s.about);
            }
            true
        }
        Cmd::Run { name, args, bug } => run_one(&scenario::find(&name)?, &args, bug)?,
        Cmd::Gate { args } => {
            let mut ok = run_many(scenario::GATE, &args)?;
            for (name, bug) in scenario::TWINS {
                let caught = !run_one(&scenario::find(name)?, &args, Some(bug.to_string()))?;
                eprintln!(
                    "   twin {name} with {bug}: {}",
                    if caught {
                        "failed, as it must"
                    } else {
                        "PASSED: the bug went unseen"
                    }
                );
                ok &= caught;
            }
            eprintln!("gate: {}", if ok { "ok" } else { "FAILED" });
            ok
        }
        Cmd::All { args } => {
            let names: Vec<&str> = scenario::all().iter().map(|s| s.name).collect();
            run_many(&names, &args)?
        }
        Cmd::Check {
            history: path,
            model,
        } => {
            let ops = history::read_jsonl(&path)?;
            match model.as_str() {
                "register" | "blacklist" | "intent" => {
                    let initial = match model.as_str() {
                        "register" => roster_jepsen::workload::INITIAL_TAG,
                        "intent" => roster_jepsen::workload::ACTIVE,
                        _ => "off",
                    };
                    let r = checker::linear::check(
                        &ops,
                        &serde_json::json!(initial),
                        Duration::from_secs(60),
                    )?;
                    println!("{} ops over {} keys; bad keys: {:?}", r.ops, r.keys, r.bad);
                    r.valid()
                }
                "set" => {
                    let r = checker::set::check(&ops)?;
                    println!("{r:?}");
                    r.valid()
                }
                other => {
                    anyhow::bail!("unknown model {other:?}: register, blacklist, intent or set")
                }
            }
        }
        Cmd::Cleanup { all } => {
            let removed = topology::sweep(all);
            println!("removed {} namespaces: {removed:?}", removed.len());
            true
        }
    };
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}
