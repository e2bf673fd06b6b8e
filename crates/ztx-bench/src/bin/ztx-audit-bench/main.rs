//! `ztx-audit-bench`: what the audit log's three costly operations take, each a
//! subcommand that prints the exact command and the machine before its results.
//!
//! - `append`: the writer's whole path, from building realistic entries to the commit
//!   that makes them durable on the embedded store (SQLite, WAL, synchronous=FULL), in
//!   group-commit batches of several sizes; then deriving the tree's nodes
//!   (`Store::index_audit`) on its own.
//! - `proofs`: inclusion proofs from a large store (10 million entries by default),
//!   built through the store's API; every proof is checked against the log's root.
//! - `monitor`: what the security monitor spends on each entry: decoding it, writing its
//!   OCSF event, running the detection rules.
//! - `verify`: the real `ztx audit verify` of an export of a million entries.
#![forbid(unsafe_code)]

#[path = "../../machine.rs"]
mod machine;

mod append;
mod log;
mod monitor;
mod proofs;
#[path = "../../rng.rs"]
mod rng;
mod verify;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;

/// Benchmarks of the audit log.
#[derive(Debug, Parser)]
#[command(name = "ztx-audit-bench", about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Entries per second through the writer's path and `Store::commit`, by batch size;
    /// then `Store::index_audit`'s entries per second.
    Append(append::AppendArgs),
    /// Latency of `Store::audit_inclusion_proof` on a large store, every proof verified.
    Proofs(proofs::ProofsArgs),
    /// Nanoseconds an entry through the security monitor's steps.
    Monitor(monitor::MonitorArgs),
    /// Time of `ztx audit verify` on an export with signed checkpoints.
    Verify(verify::VerifyArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    machine::print_header();
    match &cli.command {
        Command::Append(args) => append::run(args)?,
        Command::Proofs(args) => proofs::run(args)?,
        Command::Monitor(args) => monitor::run(args)?,
        Command::Verify(args) => verify::run(args)?,
    }
    println!(
        "load average at end: {} (other processes share these cores)",
        machine::loadavg()
    );
    Ok(())
}

/// A fresh temporary directory under `parent` (or the system's), removed when dropped.
fn scratch_dir(parent: Option<&Path>) -> Result<tempfile::TempDir> {
    let dir = match parent {
        Some(p) => tempfile::Builder::new()
            .prefix("ztx-audit-bench-")
            .tempdir_in(p),
        None => tempfile::Builder::new()
            .prefix("ztx-audit-bench-")
            .tempdir(),
    };
    dir.context("cannot create a temporary directory")
}

/// The path as the store API takes it.
fn path_text(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))
}

/// The sizes of the files of a SQLite store: the database, its WAL and its history file.
fn store_bytes(db: &Path) -> u64 {
    let with = |suffix: &str| {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        std::fs::metadata(PathBuf::from(name)).map_or(0, |m| m.len())
    };
    ["", "-wal", "-history", "-history-wal"]
        .iter()
        .map(|s| with(s))
        .sum()
}

/// Nanoseconds, saturated.
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// 1 ns .. 1,000 s at three significant figures.
fn histogram() -> Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 1_000_000_000_000, 3)?)
}

#[allow(
    clippy::float_arithmetic,
    clippy::cast_precision_loss,
    reason = "a rate for display; counts are far below 2^52"
)]
fn per_second(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}

#[allow(
    clippy::float_arithmetic,
    clippy::cast_precision_loss,
    reason = "nanoseconds shown as milliseconds"
)]
fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

#[allow(
    clippy::float_arithmetic,
    clippy::cast_precision_loss,
    reason = "nanoseconds shown as microseconds"
)]
fn us(ns: u64) -> f64 {
    ns as f64 / 1e3
}

#[allow(
    clippy::float_arithmetic,
    clippy::cast_precision_loss,
    reason = "bytes shown as MiB"
)]
fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// `a / b` for display (a per-entry figure), `b` taken as at least 1.
#[allow(
    clippy::float_arithmetic,
    clippy::cast_precision_loss,
    reason = "a per-entry figure for display"
)]
fn ratio(a: u64, b: u64) -> f64 {
    a as f64 / b.max(1) as f64
}

/// The median of some figures (the upper one of an even count); 0 for none.
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(0.0)
}

/// Figures joined for one line of output.
fn list(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}
