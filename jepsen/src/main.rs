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
    /// The roster binary to test: `roster-faulty`, the build with the bug switches the twins
    /// need (`cargo build --release --features bug-switches --bin roster-faulty`).
    #[arg(long, default_value = "target/release/roster-faulty")]
    bin: PathBuf,
    /// Where run directories go.
    #[arg(long, default_value = "jepsen/store")]
    store: PathBuf,
    /// Seed of the fault and operation schedule.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Run the clients this many seconds instead of the scenario's own time.
    #[arg(long)]
    secs: Option<u64>,
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
    /// Run the CI gate: every scenario of the gate must pass, and every twin must fail its
    /// check (twins run 20 s each unless --secs says otherwise).
    Gate {
        #[command(flatten)]
        args: RunArgs,
    },
    /// Run every scenario, then every twin.
    All {
        #[command(flatten)]
        args: RunArgs,
    },
    /// Check a recorded history again.
    Check {
        history: PathBuf,
        /// register, blacklist, intent, set or replication
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

/// What went wrong in a gate, repeated at its end: CI shows only the tail of a long output.
#[derive(Default)]
struct Failures(Vec<String>);

impl Failures {
    /// A scenario that should have passed: its failed checks, cut to one short line each.
    fn scenario(&mut self, name: &str, o: &scenario::Outcome) {
        for l in o.summary.iter().filter(|l| l.starts_with("FAIL")) {
            self.0.push(format!("{name}: {}", short(l)));
        }
    }

    fn print(&self) {
        for l in &self.0 {
            eprintln!("   failed: {l}");
        }
    }
}

fn short(l: &str) -> String {
    const MAX: usize = 240;
    match l.char_indices().nth(MAX) {
        Some((i, _)) => format!("{} ...", &l[..i]),
        None => l.to_string(),
    }
}

fn run_many(names: &[&str], args: &RunArgs, failures: &mut Failures) -> anyhow::Result<bool> {
    let mut ok = true;
    for name in names {
        let s = scenario::find(name)?;
        let o = run_scenario(&s, args, None)?;
        if !o.valid {
            failures.scenario(name, &o);
        }
        ok &= o.valid;
        if STOP.load(Ordering::Relaxed) {
            anyhow::bail!("interrupted");
        }
    }
    Ok(ok)
}

/// Run every twin; true when each failed its own check.
fn run_twins(args: &RunArgs, failures: &mut Failures) -> anyhow::Result<bool> {
    let mut ok = true;
    for t in scenario::TWINS {
        let o = run_scenario(&scenario::find(t.scenario)?, args, Some(t.bug.to_string()))?;
        let caught = t.caught(&o);
        let verdict = if caught {
            format!("failed its {} check, as it must", t.anomaly)
        } else if o.valid {
            "PASSED: the bug went unseen".to_string()
        } else {
            format!("failed, but not its {} check", t.anomaly)
        };
        eprintln!("   twin {} with {}: {verdict}", t.scenario, t.bug);
        if !caught {
            failures
                .0
                .push(format!("twin {} with {}: {verdict}", t.scenario, t.bug));
            failures.scenario(&format!("  {}", t.scenario), &o);
        }
        ok &= caught;
        if STOP.load(Ordering::Relaxed) {
            anyhow::bail!("interrupted");
        }
    }
    Ok(ok)
}

fn run_one(s: &scenario::Scenario, args: &RunArgs, bug: Option<String>) -> anyhow::Result<bool> {
    Ok(run_scenario(s, args, bug)?.valid)
}

fn run_scenario(
    s: &scenario::Scenario,
    args: &RunArgs,
    bug: Option<String>,
) -> anyhow::Result<scenario::Outcome> {
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
        duration: args.secs.map(Duration::from_secs),
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
    Ok(o)
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
            let mut failures = Failures::default();
            let mut ok = run_many(scenario::GATE, &args, &mut failures)?;
            let twins = RunArgs {
                secs: args.secs.or(Some(scenario::TWIN_DURATION.as_secs())),
                ..args.clone()
            };
            ok &= run_twins(&twins, &mut failures)?;
            failures.print();
            eprintln!("gate: {}", if ok { "ok" } else { "FAILED" });
            ok
        }
        Cmd::All { args } => {
            let mut failures = Failures::default();
            let names: Vec<&str> = scenario::all().iter().map(|s| s.name).collect();
            let ok = run_many(&names, &args, &mut failures)?;
            let ok = run_twins(&args, &mut failures)? && ok;
            failures.print();
            ok
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
                "replication" => {
                    let r = checker::replication::check(
                        &ops,
                        roster_jepsen::tablets::RF,
                        roster_jepsen::tablets::BUCKETS,
                    )?;
                    println!("{r:?}");
                    r.valid()
                }
                other => {
                    anyhow::bail!(
                        "unknown model {other:?}: register, blacklist, intent, set or replication"
                    )
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
