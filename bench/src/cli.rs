//! `trove bench` subcommands.
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Object GET latency and throughput vs nginx, the disk and loopback TCP.
    Object,
}

pub fn run(_cmd: BenchCommand, _trove: PathBuf) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
