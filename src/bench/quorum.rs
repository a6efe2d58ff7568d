//! `roster bench quorum`: Roster's FEs against etcd 3.4 (issue 15, `reference/perf.md` P1-P3),
//! both as real processes on 127.0.0.1, one after the other, never at the same time: for each
//! case and round, a fresh etcd cluster is measured, then a fresh Roster cluster (A B A B), by
//! the same load generator with the same channels, clients, warm-up and op count. The table
//! gives medians over the rounds and the median of the per-round Roster/etcd ratios; then the
//! failover trials (kill -9 of the leader to the first acknowledged write).
//!
//! Fresh clusters (new data dirs, new ports) for every case of every round: each measurement
//! starts from the same empty state, so neither the order of the cases nor a previous case's
//! data (redb file growth, etcd's bbolt and WAL) leaks into another; it costs a few seconds of
//! start-up per run, outside the measured phase.

use super::etcd::{self, EtcdCluster};
use super::fes::RosterCluster;
use super::load::{self, Conn, Op, Phase, RosterRead};
use super::sys;
use anyhow::Context;
use comfy_table::{CellAlignment, ContentArrangement, Table, presets::ASCII_MARKDOWN};
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct QuorumBench {
    /// Members of each cluster: 3 or 5.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(3..=5))]
    members: u8,
    /// Interleaved rounds per case (etcd, Roster, etcd, Roster ...); the table shows medians.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Measured operations per case at 16 or more clients; a 1-client case does ops/16 (it is
    /// latency-bound: the same count would take minutes).
    #[arg(long, default_value_t = 10_000)]
    ops: u64,
    /// Warm-up operations before each measured phase, as a fraction of its ops.
    #[arg(long, default_value_t = 0.1)]
    warmup: f64,
    /// Cases, comma-separated: write-1, write-16, write-64, write-256, write-follower-64,
    /// read-lin-64, read-stale-64 (any client count works: write-N, write-follower-N,
    /// read-lin-N, read-stale-N). Default: all of those.
    #[arg(long, value_delimiter = ',')]
    cases: Vec<String>,
    /// Failover trials per system (kill -9 of the leader, time to the first acknowledged write).
    #[arg(long, default_value_t = 10)]
    failover_trials: usize,
    /// Skip the failover trials.
    #[arg(long)]
    no_failover: bool,
    /// Roster's Raft timing for this run, `HEARTBEAT/ELECTION_MIN/ELECTION_MAX` in ms (as
    /// `[raft]` in an FE's config); default: the shipped timing.
    #[arg(long, value_name = "HB/MIN/MAX", value_parser = parse_timing)]
    roster_timing: Option<[u64; 3]>,
    /// Instead of the table: write to Roster's leader from 64 clients for this many seconds and
    /// count elections (term changes) and failed writes, to check a timing for spurious
    /// elections under load (issue 15 asks for none in 600 s).
    #[arg(long, value_name = "SECS")]
    soak_secs: Option<u64>,
    /// How Roster reads the backends: SHOW BACKENDS (issue 15's baseline) or ListBackends.
    #[arg(long, value_enum, default_value_t = RosterRead::Show)]
    roster_read: RosterRead,
}

fn parse_timing(s: &str) -> Result<[u64; 3], String> {
    let parts: Vec<u64> = s
        .split('/')
        .map(|p| p.trim().parse::<u64>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{s:?}: {e} (want HEARTBEAT/ELECTION_MIN/ELECTION_MAX in ms)"))?;
    parts.try_into().map_err(|_| {
        format!("{s:?}: want three numbers, HEARTBEAT/ELECTION_MIN/ELECTION_MAX in ms")
    })
}

/// What Roster's timing is called in the output.
fn timing_name(t: Option<[u64; 3]>) -> String {
    match t {
        Some([hb, min, max]) => format!("{hb}/{min}/{max} ms"),
        None => "shipped timing".into(),
    }
}

const DEFAULT_CASES: &[&str] = &[
    "write-1",
    "write-16",
    "write-64",
    "write-256",
    "write-follower-64",
    "read-lin-64",
    "read-stale-64",
];

/// Where a case's channels go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Leader,
    /// One follower, which forwards to the leader.
    Follower,
    /// Channel j to member j mod n.
    AllMembers,
}

#[derive(Clone, Debug)]
struct Case {
    name: String,
    op: Op,
    target: Target,
    clients: usize,
}

impl Case {
    fn parse(s: &str) -> anyhow::Result<Case> {
        let (kind, n) = s
            .rsplit_once('-')
            .with_context(|| format!("case {s:?}: expected e.g. write-64"))?;
        let clients: usize = n
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .with_context(|| format!("case {s:?}: {n:?} is not a client count"))?;
        let (op, target) = match kind {
            "write" => (Op::Write, Target::Leader),
            "write-follower" => (Op::Write, Target::Follower),
            "read-lin" => (Op::ReadLinearizable, Target::AllMembers),
            "read-stale" => (Op::ReadStale, Target::AllMembers),
            _ => anyhow::bail!(
                "case {s:?}: the kinds are write, write-follower, read-lin, read-stale"
            ),
        };
        Ok(Case {
            name: s.to_string(),
            op,
            target,
            clients,
        })
    }

    /// gRPC channels for this many clients, as perf.md: 1/16/64/256 clients on 1/4/8/16.
    fn channels(&self) -> usize {
        match self.clients {
            1 => 1,
            2..=16 => 4.min(self.clients),
            17..=64 => 8,
            _ => 16,
        }
    }

    fn ops(&self, ops: u64) -> u64 {
        if self.clients == 1 {
            (ops / 16).max(1)
        } else {
            ops
        }
    }
}

/// One system's measurement of one case in one round.
struct Run {
    ops_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_us_per_op: f64,
    /// None for reads (not measured: no writes to fsync).
    fsyncs_per_op: Option<f64>,
}

/// Either cluster, for the code that treats them alike.
enum Servers {
    Etcd(EtcdCluster),
    Roster(RosterCluster),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum System {
    Etcd,
    Roster,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Etcd => "etcd",
            System::Roster => "Roster",
        }
    }
}

/// The time a request of the load may take before it counts as failed.
const OP_TIMEOUT: Duration = Duration::from_secs(15);

impl Servers {
    async fn start(
        system: System,
        etcd_exe: &Path,
        dir: &Path,
        n: usize,
        roster_timing: Option<[u64; 3]>,
    ) -> anyhow::Result<Servers> {
        std::fs::create_dir_all(dir)?;
        let s = match system {
            System::Etcd => Servers::Etcd(EtcdCluster::start(etcd_exe, dir, n).await?),
            System::Roster => Servers::Roster(RosterCluster::start(dir, n, roster_timing).await?),
        };
        let set_up = match &s {
            Servers::Etcd(c) => c.set_up().await,
            Servers::Roster(c) => c.set_up().await,
        };
        if let Err(e) = set_up {
            s.stop().await;
            return Err(e);
        }
        Ok(s)
    }

    fn len(&self) -> usize {
        match self {
            Servers::Etcd(c) => c.len(),
            Servers::Roster(c) => c.len(),
        }
    }
    fn pids(&self) -> Vec<u32> {
        match self {
            Servers::Etcd(c) => c.pids(),
            Servers::Roster(c) => c.pids(),
        }
    }
    async fn leader(&self, except: Option<usize>) -> anyhow::Result<usize> {
        match self {
            Servers::Etcd(c) => c.leader(except).await,
            Servers::Roster(c) => c.leader(except).await,
        }
    }
    async fn fsyncs(&self, i: usize) -> anyhow::Result<f64> {
        match self {
            Servers::Etcd(c) => c.fsyncs(i).await,
            Servers::Roster(c) => c.fsyncs(i).await,
        }
    }
    /// A channel to member `i` for operations `op`, each waiting at most `timeout`.
    fn conn(&self, i: usize, op: Op, read: RosterRead, timeout: Duration) -> anyhow::Result<Conn> {
        match self {
            Servers::Etcd(c) => Conn::etcd(&c.addr(i)),
            Servers::Roster(c) => Conn::roster(&c.addr(i), op == Op::ReadStale, read, timeout),
        }
    }
    async fn kill9(&mut self, i: usize) -> anyhow::Result<()> {
        match self {
            Servers::Etcd(c) => c.kill9(i).await,
            Servers::Roster(c) => c.kill9(i).await,
        }
    }
    async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        match self {
            Servers::Etcd(c) => c.restart(i).await,
            Servers::Roster(c) => c.restart(i).await,
        }
    }
    async fn stop(self) {
        match self {
            Servers::Etcd(c) => c.stop().await,
            Servers::Roster(c) => c.stop().await,
        }
    }
}

pub async fn run(b: QuorumBench) -> anyhow::Result<()> {
    let etcd_exe = etcd::find()?;
    let cases: Vec<Case> = if b.cases.is_empty() {
        DEFAULT_CASES
            .iter()
            .map(|c| Case::parse(c))
            .collect::<anyhow::Result<_>>()
    } else {
        b.cases
            .iter()
            .map(|c| Case::parse(c.trim()))
            .collect::<anyhow::Result<_>>()
    }?;
    anyhow::ensure!(b.rounds >= 1, "--rounds must be at least 1");
    let scratch = tempfile::Builder::new()
        .prefix("roster-bench-quorum-")
        .tempdir()?;
    let signal = crate::start::wait_for_signal();
    let work = async {
        match b.soak_secs {
            Some(secs) => soak(&b, secs, scratch.path()).await,
            None => bench(&b, &cases, &etcd_exe, scratch.path()).await,
        }
    };
    let result = tokio::select! {
        r = work => r,
        _ = signal => Err(anyhow::anyhow!("interrupted")),
    };
    // On an error or Ctrl-C the clusters were dropped, not stopped: their children got SIGKILL
    // (kill_on_drop). Remove the data only once they are gone.
    sys::wait_all_ended(Duration::from_secs(10)).await;
    drop(scratch);
    result
}

async fn bench(
    b: &QuorumBench,
    cases: &[Case],
    etcd_exe: &Path,
    scratch: &Path,
) -> anyhow::Result<()> {
    let n = b.members as usize;
    println!(
        "roster bench quorum: {n} members each, {} round(s), {} ops per case (1 client: {}), \
         warm-up {:.0} %, etcd {} (heartbeat 100 ms, election 1000 ms), Roster's {}; load \
         average {}",
        b.rounds,
        b.ops,
        (b.ops / 16).max(1),
        b.warmup * 100.0,
        etcd_exe.display(),
        timing_name(b.roster_timing),
        sys::loadavg()
    );
    let mut rows = Vec::new();
    let mut seq = 0;
    for case in cases {
        let mut runs: Vec<(Run, Run)> = Vec::new();
        for round in 1..=b.rounds {
            let mut pair = Vec::new();
            for system in [System::Etcd, System::Roster] {
                seq += 1;
                let dir = scratch.join(format!("{seq:03}-{}-{}", case.name, system.name()));
                let servers = Servers::start(system, etcd_exe, &dir, n, b.roster_timing).await?;
                let r = measure(&servers, case, b).await;
                servers.stop().await;
                let _ = std::fs::remove_dir_all(&dir);
                let r =
                    r.with_context(|| format!("{} {} round {round}", system.name(), case.name))?;
                println!(
                    "  {:<18} round {round} {:<6} {:>8.0} ops/s  p50 {:>7.2} ms  p99 {:>7.2} ms  \
                     {:>6.0} CPU-µs/op{}",
                    case.name,
                    system.name(),
                    r.ops_per_sec,
                    r.p50_ms,
                    r.p99_ms,
                    r.cpu_us_per_op,
                    r.fsyncs_per_op
                        .map(|f| format!("  {f:.2} leader fsyncs/op"))
                        .unwrap_or_default()
                );
                pair.push(r);
            }
            let roster = pair.pop().expect("two runs");
            let etcd = pair.pop().expect("two runs");
            runs.push((etcd, roster));
        }
        rows.push((case.clone(), runs));
    }

    let mut failover = None;
    if !b.no_failover && b.failover_trials > 0 {
        let mut both = Vec::new();
        for system in [System::Etcd, System::Roster] {
            seq += 1;
            let dir = scratch.join(format!("{seq:03}-failover-{}", system.name()));
            let mut servers = Servers::start(system, etcd_exe, &dir, n, b.roster_timing).await?;
            let r = failover_trials(&mut servers, system, b.failover_trials).await;
            servers.stop().await;
            let _ = std::fs::remove_dir_all(&dir);
            both.push(r.with_context(|| format!("{} failover", system.name()))?);
        }
        failover = Some(both);
    }
    print_table(n, b, &rows, failover.as_deref());
    Ok(())
}

/// 64 clients writing to Roster's leader for `secs`: the elections (term changes) and the
/// writes that failed meanwhile.
async fn soak(b: &QuorumBench, secs: u64, scratch: &Path) -> anyhow::Result<()> {
    let n = b.members as usize;
    let dir = scratch.join("soak-Roster");
    std::fs::create_dir_all(&dir)?;
    let c = RosterCluster::start(&dir, n, b.roster_timing).await?;
    c.set_up().await?;
    let case = Case::parse("write-64")?;
    let leader = c.leader(None).await?;
    let conns = (0..case.channels())
        .map(|_| Conn::roster(&c.addr(leader), false, b.roster_read, OP_TIMEOUT))
        .collect::<anyhow::Result<Vec<Conn>>>()?;
    let term0 = c.term().await?;
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let (mut ops, mut errors, mut first_error, mut next) = (0u64, 0u64, None, 0u64);
    while Instant::now() < until {
        // Chunks of about a second, so the run ends near `secs`.
        let phase = load::drive(&conns, case.clients, case.op, next, 8_000).await;
        next += 8_000;
        ops += phase.ops;
        errors += phase.errors;
        first_error = first_error.or(phase.first_error);
    }
    let term1 = c.term().await?;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "soak: {n} members, Roster's {}, 64 clients writing to the leader for {elapsed:.0} s: \
         {ops} writes ({:.0}/s), {errors} failed{}, elections (term changes): {}; load \
         average {}",
        timing_name(b.roster_timing),
        ops as f64 / elapsed,
        first_error
            .map(|e| format!(" (the first: {e})"))
            .unwrap_or_default(),
        term1 - term0,
        sys::loadavg()
    );
    c.stop().await;
    Ok(())
}

/// One case on one fresh cluster: warm-up, then the measured phase.
async fn measure(s: &Servers, case: &Case, b: &QuorumBench) -> anyhow::Result<Run> {
    let n = s.len();
    let leader = s.leader(None).await?;
    let members: Vec<usize> = match case.target {
        Target::Leader => vec![leader],
        Target::Follower => vec![(leader + 1) % n],
        Target::AllMembers => (0..n).collect(),
    };
    let conns = (0..case.channels())
        .map(|j| {
            s.conn(
                members[j % members.len()],
                case.op,
                b.roster_read,
                OP_TIMEOUT,
            )
        })
        .collect::<anyhow::Result<Vec<Conn>>>()?;
    let ops = case.ops(b.ops);
    let warmup = ((ops as f64 * b.warmup) as u64).max(1);
    let w = load::drive(&conns, case.clients, case.op, 0, warmup).await;
    if let Some(e) = w.first_error {
        anyhow::bail!(
            "{} of {warmup} warm-up operations failed, the first: {e}",
            w.errors
        );
    }
    let pids = s.pids();
    let cpu0 = sys::cpu_us(&pids)?;
    let fs0 = s.fsyncs(leader).await?;
    let phase: Phase = load::drive(&conns, case.clients, case.op, warmup, ops).await;
    let cpu1 = sys::cpu_us(&pids)?;
    let fs1 = s.fsyncs(leader).await?;
    if let Some(e) = &phase.first_error {
        anyhow::bail!(
            "{} of {ops} operations failed, the first: {e}",
            phase.errors
        );
    }
    let still = s.leader(None).await?;
    if still != leader {
        tracing::warn!(
            "{}: the leader changed during the measured phase (member {} -> {}); its fsyncs \
             per op count only the first",
            case.name,
            leader + 1,
            still + 1
        );
    }
    Ok(Run {
        ops_per_sec: phase.ops_per_sec(),
        p50_ms: phase.p_ms(0.5),
        p99_ms: phase.p_ms(0.99),
        cpu_us_per_op: (cpu1 - cpu0) as f64 / ops as f64,
        fsyncs_per_op: (case.op == Op::Write).then(|| (fs1 - fs0) / ops as f64),
    })
}

/// How long one failover probe may wait for its answer (perf.md's etcd trials used 50 ms;
/// 100 ms leaves room for a commit on this loaded 2-core machine).
const PROBE_TIMEOUT: Duration = Duration::from_millis(100);
/// Pause between failed probes.
const PROBE_GAP: Duration = Duration::from_millis(5);

/// `trials` times: kill -9 the leader, time until a write through the survivors (round-robin,
/// each probe with a short timeout) is acknowledged, restart the killed member and wait until
/// it is healthy. Returns the times in ms.
async fn failover_trials(
    s: &mut Servers,
    system: System,
    trials: usize,
) -> anyhow::Result<Vec<f64>> {
    let n = s.len();
    let mut times = Vec::new();
    let mut op = 1_000_000_000u64;
    for trial in 1..=trials {
        let leader = s.leader(None).await?;
        let survivors: Vec<Conn> = (0..n)
            .filter(|i| *i != leader)
            .map(|i| s.conn(i, Op::Write, RosterRead::Show, PROBE_TIMEOUT))
            .collect::<anyhow::Result<_>>()?;
        // Channels up before the kill, so the probes measure the election, not a TCP connect.
        for c in &survivors {
            op += 1;
            c.write(op).await.context("a write before the kill")?;
        }
        s.kill9(leader).await?;
        let killed = Instant::now();
        let deadline = killed + Duration::from_secs(60);
        let mut k = 0;
        loop {
            op += 1;
            let probe = &survivors[k % survivors.len()];
            k += 1;
            if let Ok(Ok(())) = tokio::time::timeout(PROBE_TIMEOUT, probe.write(op)).await {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "no write was acknowledged within 60 s of killing the leader"
            );
            tokio::time::sleep(PROBE_GAP).await;
        }
        let ms = killed.elapsed().as_secs_f64() * 1000.0;
        println!(
            "  failover {:<6} trial {trial}: {ms:>6.0} ms (killed member {})",
            system.name(),
            leader + 1
        );
        times.push(ms);
        s.restart(leader).await?;
        // Healthy: a write through the restarted member is acknowledged.
        let back = s.conn(leader, Op::Write, RosterRead::Show, Duration::from_secs(5))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            op += 1;
            match back.write(op).await {
                Ok(()) => break,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!("member {} not healthy yet: {e:#}", leader + 1);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e.context("the restarted member did not become healthy")),
            }
        }
    }
    Ok(times)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.is_empty() {
        f64::NAN
    } else if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn print_table(
    n: usize,
    b: &QuorumBench,
    rows: &[(Case, Vec<(Run, Run)>)],
    failover: Option<&[Vec<f64>]>,
) {
    let mut t = Table::new();
    t.load_style(ASCII_MARKDOWN)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(vec![
            "case",
            "clients/channels",
            "etcd ops/s",
            "Roster ops/s",
            "Roster/etcd",
            "p50 ms etcd / Roster",
            "p99 ms etcd / Roster",
            "CPU-µs/op etcd / Roster",
            "leader fsyncs/op etcd / Roster",
        ]);
    for (case, runs) in rows {
        let m = |f: &dyn Fn(&Run) -> f64, side: usize| {
            median(
                runs.iter()
                    .map(|p| f(if side == 0 { &p.0 } else { &p.1 }))
                    .collect(),
            )
        };
        let ratio = median(
            runs.iter()
                .map(|(e, r)| r.ops_per_sec / e.ops_per_sec)
                .collect(),
        );
        let pair = |f: &dyn Fn(&Run) -> f64, digits: usize| {
            format!("{:.*} / {:.*}", digits, m(f, 0), digits, m(f, 1))
        };
        let fsyncs = if case.op == Op::Write {
            pair(&|r| r.fsyncs_per_op.unwrap_or(f64::NAN), 2)
        } else {
            "–".into()
        };
        t.add_row(vec![
            case.name.clone(),
            format!("{}/{}", case.clients, case.channels()),
            format!("{:.0}", m(&|r| r.ops_per_sec, 0)),
            format!("{:.0}", m(&|r| r.ops_per_sec, 1)),
            format!("{ratio:.2}x"),
            pair(&|r| r.p50_ms, 2),
            pair(&|r| r.p99_ms, 1),
            pair(&|r| r.cpu_us_per_op, 0),
            fsyncs,
        ]);
    }
    for i in 2..9 {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    println!();
    println!(
        "{n} members each, medians of {} interleaved round(s); Roster/etcd is the median of the \
         per-round ratios of ops/s; CPU is utime+stime of the {n} server processes; load \
         average now {}",
        b.rounds,
        sys::loadavg()
    );
    println!("{t}");
    if let Some([etcd, roster]) = failover {
        let (e, r) = (median(etcd.clone()), median(roster.clone()));
        println!(
            "failover (kill -9 of the leader to the first acknowledged write, {} trials, probes \
             of {} ms): etcd (100/1000 ms) median {e:.0} ms, Roster ({}) median {r:.0} ms, \
             Roster/etcd {:.2}x",
            etcd.len(),
            PROBE_TIMEOUT.as_millis(),
            timing_name(b.roster_timing),
            r / e
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_parse_with_perf_md_channel_counts() {
        let c = Case::parse("write-follower-64").unwrap();
        assert_eq!(
            (c.op, c.target, c.clients, c.channels()),
            (Op::Write, Target::Follower, 64, 8)
        );
        let c = Case::parse("read-stale-256").unwrap();
        assert_eq!(
            (c.op, c.target, c.channels()),
            (Op::ReadStale, Target::AllMembers, 16)
        );
        assert_eq!(Case::parse("write-1").unwrap().channels(), 1);
        assert_eq!(Case::parse("write-16").unwrap().channels(), 4);
        assert!(Case::parse("write").is_err());
        assert!(Case::parse("write-0").is_err());
        assert!(Case::parse("delete-4").is_err());
        for c in DEFAULT_CASES {
            Case::parse(c).unwrap();
        }
    }

    #[test]
    fn roster_timing_is_three_numbers() {
        assert_eq!(parse_timing("100/400/700"), Ok([100, 400, 700]));
        assert!(
            parse_timing("100/400")
                .unwrap_err()
                .contains("three numbers")
        );
        assert!(parse_timing("100/x/700").unwrap_err().contains("HEARTBEAT"));
    }

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
