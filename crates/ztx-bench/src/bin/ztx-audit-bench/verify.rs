//! `verify`: how long the real `ztx audit verify` takes on an export of `--entries`
//! order entries.
//!
//! The export is written with `ztx_audit::export::ExportWriter`, as `ztx audit export`
//! writes one: the header, every signed checkpoint (one per `--checkpoint-every`
//! entries, about one a second at the end-to-end benchmark's rate, and one at the end, as
//! the server signs when it stops), then every entry with its leaf. Then the `ztx` binary
//! beside this one checks it with the log's public key, `--runs` times, each timed from
//! spawning the process to its exit; a run counts only if it exits 0 and reports every
//! entry.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use ztx_audit::export::ExportWriter;

use crate::log::{ORIGIN, Orders, Writer, log_key};
use crate::{median, mib, path_text};

/// Options of the `verify` subcommand.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Entries in the export.
    #[arg(long, default_value_t = 1_000_000)]
    entries: u64,
    /// A signed checkpoint every this many entries (and one at the end).
    #[arg(long, default_value_t = 7_000)]
    checkpoint_every: u64,
    /// Timed runs of `ztx audit verify`.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// The ztx binary (default: the one beside this binary, built with
    /// `cargo build --release -p ztx`).
    #[arg(long)]
    ztx: Option<PathBuf>,
    /// Where the temporary export goes (default: the system's temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the export instead of deleting it (its path is printed).
    #[arg(long)]
    keep: bool,
    /// Seed of the entry generator.
    #[arg(long, default_value_t = 0xA0D1_7003)]
    seed: u64,
}

pub fn run(args: &VerifyArgs) -> Result<()> {
    if args.entries == 0 || args.checkpoint_every == 0 || args.runs == 0 {
        bail!("--entries, --checkpoint-every and --runs must be positive");
    }
    let ztx = ztx_bin(args.ztx.as_deref())?;
    let dir = crate::scratch_dir(args.dir.as_deref())?;
    let file = dir.path().join("audit-export.jsonl");
    let public_key = log_key()?.verifier().to_string();

    let started = Instant::now();
    let (checkpoints, root) = write_export(args, &file)?;
    let bytes = std::fs::metadata(&file).map_or(0, |m| m.len());
    println!(
        "export: {} entries, {checkpoints} signed checkpoints, {:.0} MiB, root {root}, written \
         in {:.1} s",
        args.entries,
        mib(bytes),
        started.elapsed().as_secs_f64()
    );
    println!(
        "timed command: {} audit verify {} --public-key {public_key}",
        ztx.display(),
        file.display()
    );
    let expected = format!("ok: {} entries, root {root}, ", args.entries);
    let mut seconds = Vec::new();
    for n in 1..=args.runs {
        let t0 = Instant::now();
        let out = Command::new(&ztx)
            .args(["audit", "verify"])
            .arg(&file)
            .args(["--public-key", &public_key])
            .output()
            .with_context(|| format!("cannot run {}", ztx.display()))?;
        let elapsed = t0.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || !stdout.starts_with(&expected) {
            bail!(
                "ztx audit verify failed ({}): {stdout}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        println!(
            "run {n}: {:.3} s — {}",
            elapsed.as_secs_f64(),
            stdout.trim()
        );
        seconds.push(elapsed.as_secs_f64());
    }
    println!("median: {:.3} s", median(&seconds));
    if args.keep {
        let kept = dir.keep();
        println!("export kept in {}", kept.display());
    } else {
        dir.close().context("cannot remove the temporary export")?;
    }
    Ok(())
}

/// The `ztx` binary: given, or the one built beside this benchmark.
fn ztx_bin(given: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p.to_path_buf());
    }
    let candidate = std::env::current_exe()?.with_file_name("ztx");
    if !candidate.exists() {
        bail!(
            "{} not found: build it first (cargo build --release -p ztx) or pass --ztx",
            candidate.display()
        );
    }
    Ok(candidate)
}

/// Writes the export; returns how many checkpoints it holds and the log's root.
fn write_export(args: &VerifyArgs, file: &Path) -> Result<(u64, ztx_audit::Hash)> {
    // The checkpoints come first in an export, so the log is made twice from the same
    // seed: once for the checkpoints, once for the entries.
    let mut notes = Vec::new();
    let mut writer = Writer::new(log_key()?);
    let mut orders = Orders::new(args.seed);
    while writer.size() < args.entries {
        let count = args.checkpoint_every.min(args.entries - writer.size());
        let entries: Vec<_> = (0..count).map(|_| orders.next_entry()).collect();
        let prepared = writer.prepare(entries, orders.now_ms(), true)?;
        if let Some(c) = &prepared.append.checkpoint {
            notes.push(c.note.clone());
        }
        writer.committed(prepared);
    }
    let root = writer.root();

    let out = File::create(file).with_context(|| format!("cannot create {}", file.display()))?;
    let mut export = ExportWriter::new(BufWriter::new(out), ORIGIN, args.entries)?;
    for note in &notes {
        export.checkpoint(note)?;
    }
    let mut writer = Writer::new(log_key()?);
    let mut orders = Orders::new(args.seed);
    while writer.size() < args.entries {
        let count = args.checkpoint_every.min(args.entries - writer.size());
        let entries: Vec<_> = (0..count).map(|_| orders.next_entry()).collect();
        let prepared = writer.prepare(entries, orders.now_ms(), false)?;
        for row in &prepared.append.rows {
            export.entry(row.index, &row.leaf, &row.entry)?;
        }
        writer.committed(prepared);
    }
    export
        .finish()
        .with_context(|| format!("cannot write {}", path_text(file).unwrap_or("the export")))?;
    if writer.root() != root {
        bail!("the entries written are not the log the checkpoints sign");
    }
    Ok((u64::try_from(notes.len()).unwrap_or(u64::MAX), root))
}
