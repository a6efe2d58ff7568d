//! `roster bench`: benchmarks that print their ratio against a bound or a peer measured in the
//! same run (`reference/perf.md`): `decommission` against the lower bound of a drain, `quorum`
//! against etcd 3.4 on the same machine.

mod decommission;
mod etcd;
mod fes;
mod load;
mod quorum;
mod sys;

#[derive(clap::Subcommand)]
pub enum BenchCmd {
    /// Drain one backend and compare with the lower bound.
    Decommission(decommission::DecommissionBench),
    /// Roster's FEs against etcd 3.4, side by side on loopback: writes, reads, failover.
    Quorum(quorum::QuorumBench),
}

pub async fn run(cmd: BenchCmd) -> anyhow::Result<()> {
    match cmd {
        BenchCmd::Decommission(b) => decommission::run(b).await,
        BenchCmd::Quorum(b) => quorum::run(b).await,
    }
}
