//! `proofs`: how long `Store::audit_inclusion_proof` takes for any entry of a large log.
//!
//! Builds a SQLite store of `--entries` order entries through the store's API (the
//! writer's path in commits of `--build-batch`, a signed checkpoint each), derives the
//! tree's nodes with `Store::index_audit` until caught up (as the upkeep thread does),
//! then times `--proofs` inclusion proofs of uniformly random entries in the whole log
//! on a connection of their own, `--rounds` times. Every proof is checked, outside the
//! timing, with `ztx_audit::verify_inclusion` against the leaf the writer computed and
//! the root the last checkpoint signed: a wrong or short proof stops the benchmark. The
//! store lives in a temporary directory removed at the end (unless `--keep`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ztx_audit::{Checkpoint, Hash, verify_inclusion};
use ztx_core::Changes;

use crate::append::index_all;
use crate::log::{Orders, Writer, log_key};
use crate::rng::SplitMix64;
use crate::{histogram, median, mib, ms, nanos, path_text, per_second, us};

/// Options of the `proofs` subcommand.
#[derive(Debug, clap::Args)]
pub struct ProofsArgs {
    /// Entries in the log.
    #[arg(long, default_value_t = 10_000_000)]
    entries: u64,
    /// Entries per commit while building the log.
    #[arg(long, default_value_t = 100_000)]
    build_batch: u64,
    /// Proofs timed per round.
    #[arg(long, default_value_t = 10_000)]
    proofs: u64,
    /// Rounds of proofs, each with other random entries.
    #[arg(long, default_value_t = 3)]
    rounds: u64,
    /// Where the temporary store goes (default: the system's temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the store instead of deleting it (its path is printed).
    #[arg(long)]
    keep: bool,
    /// Seed of the entry generator (the proofs' entries are drawn from seed + 1).
    #[arg(long, default_value_t = 0xA0D1_7002)]
    seed: u64,
}

pub fn run(args: &ProofsArgs) -> Result<()> {
    if args.entries == 0 || args.build_batch == 0 {
        bail!("--entries and --build-batch must be positive");
    }
    let dir = crate::scratch_dir(args.dir.as_deref())?;
    let path = dir.path().join("audit.sqlite");
    let db = path_text(&path)?;
    let key = log_key()?;
    let verifier = key.verifier();

    // Build, through the store's API.
    let mut store = ztx_store::open(db)?;
    let mut writer = Writer::new(key);
    let mut orders = Orders::new(args.seed);
    let capacity = usize::try_from(args.entries).context("--entries too large")?;
    let mut leaves: Vec<Hash> = Vec::with_capacity(capacity);
    let started = Instant::now();
    let mut reported = 0u64;
    while writer.size() < args.entries {
        let count = args.build_batch.min(args.entries - writer.size());
        let entries: Vec<_> = (0..count).map(|_| orders.next_entry()).collect();
        let prepared = writer.prepare(entries, orders.now_ms(), true)?;
        leaves.extend(prepared.append.rows.iter().map(|r| r.leaf));
        store.commit(&Changes::default(), &prepared.append)?;
        writer.committed(prepared);
        if writer.size() >= reported + 1_000_000 {
            reported = writer.size();
            eprintln!(
                "built {reported} entries in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    let built = started.elapsed();
    let size = writer.size();
    println!(
        "built: {size} entries in commits of {} (a signed checkpoint each) in {:.1} s: \
         {:.0} entries/s; store {:.0} MiB before indexing",
        args.build_batch,
        built.as_secs_f64(),
        per_second(size, built),
        mib(crate::store_bytes(&path))
    );

    // Derive the tree's nodes, as the upkeep thread does, on a connection of its own.
    let mut indexer = ztx_store::open(db)?;
    let started = Instant::now();
    let indexed = index_all(indexer.as_mut())?;
    let index_elapsed = started.elapsed();
    drop(indexer);
    println!(
        "index_audit: {indexed} entries in {:.1} s: {:.0} entries/s; store {:.0} MiB \
         (database, WAL, history file)",
        index_elapsed.as_secs_f64(),
        per_second(indexed, index_elapsed),
        mib(crate::store_bytes(&path))
    );

    // The root every proof must lead to: the one the newest checkpoint signed, checked
    // against the writer's own and the store's.
    let newest = store
        .latest_checkpoint()?
        .context("the store has no checkpoint")?;
    let signed = Checkpoint::open(&newest.note, &verifier)?;
    let root = writer.root();
    if signed.size != size || signed.root != root || store.audit_root(size)? != root {
        bail!("the store's root, the writer's and the signed one differ");
    }
    drop(store);

    // Proofs, on a reading connection of their own (as the API's read pool has).
    let mut reader = ztx_store::open(db)?;
    let mut rng = SplitMix64::new(args.seed.wrapping_add(1));
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    for round in 1..=args.rounds {
        let mut latency = histogram()?;
        let mut total = Duration::ZERO;
        let mut first = None;
        let mut hashes = 0usize;
        for _ in 0..args.proofs {
            let index = rng.below(size);
            let t0 = Instant::now();
            let proof = reader.audit_inclusion_proof(index, size)?;
            let elapsed = t0.elapsed();
            let leaf = usize::try_from(index)
                .ok()
                .and_then(|i| leaves.get(i))
                .context("a leaf the writer did not keep")?;
            verify_inclusion(index, size, leaf, &proof, &root)
                .with_context(|| format!("the proof of entry {index} does not verify"))?;
            hashes += proof.len();
            first.get_or_insert(elapsed);
            total += elapsed;
            latency.saturating_record(nanos(elapsed).max(1));
        }
        let over_1ms = latency.len() - latency.count_between(0, 1_000_000);
        println!(
            "round {round}: {} proofs of random entries in the {size}-entry log, all \
             verified ({} hashes each on average): p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs, \
             p99.9 {:.1} µs, max {:.3} ms, mean {:.1} µs; {over_1ms} over 1 ms; first {:.3} ms",
            latency.len(),
            hashes / usize::try_from(args.proofs).unwrap_or(usize::MAX).max(1),
            us(latency.value_at_quantile(0.5)),
            us(latency.value_at_quantile(0.9)),
            us(latency.value_at_quantile(0.99)),
            us(latency.value_at_quantile(0.999)),
            ms(latency.max()),
            us(nanos(total) / args.proofs.max(1)),
            ms(first.map_or(0, nanos)),
        );
        p50s.push(us(latency.value_at_quantile(0.5)));
        p99s.push(us(latency.value_at_quantile(0.99)));
    }
    println!(
        "median over rounds: p50 {:.1} µs, p99 {:.1} µs",
        median(&p50s),
        median(&p99s)
    );
    drop(reader);
    if args.keep {
        let kept = dir.keep();
        println!("store kept in {}", kept.display());
    } else {
        dir.close().context("cannot remove the temporary store")?;
        println!("store removed");
    }
    Ok(())
}
