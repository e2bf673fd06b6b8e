//! `ztx-bench`: benchmarks of ztx parts, each a subcommand. Every run prints the exact
//! command and the machine it ran on before its results.
//!
//! - `matching`: the ztx matching engine alone against the `orderbook-rs` crate,
//!   single-threaded, on one deterministic exchange-core-style operation sequence
//!   (see `matching/mod.rs`).
#![forbid(unsafe_code)]

mod machine;
mod matching;
mod rng;

use clap::{Parser, Subcommand};

/// ztx benchmarks.
#[derive(Debug, Parser)]
#[command(name = "ztx-bench", about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The ztx order book vs orderbook-rs on exchange-core's mix (9 % GTC, 3 % IOC,
    /// 6 % cancel, 82 % move) over a book of about 1,000 resting orders.
    Matching(matching::MatchingArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    machine::print_header();
    match &cli.command {
        Command::Matching(args) => matching::run(args),
    }
}
