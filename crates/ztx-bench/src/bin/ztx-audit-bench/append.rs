//! `append`: entries per second through the writer's whole path on the embedded store.
//!
//! Each run starts a fresh SQLite store (WAL, synchronous=FULL, as `SqliteStore::open`
//! sets it) and appends `--entries` order entries in commits of `--batch` entries: build
//! and encode the entries (the API and the engine's thread do that), chain them (write in
//! each one's `prev`), leaf-hash and push them onto the frontier, sign a
//! checkpoint (`--checkpoints`), and `Store::commit` them with empty `Changes` — one
//! transaction and one WAL sync per commit, as the engine's writer does. With `--upkeep`
//! the server's upkeep thread runs beside it on its own connection (every 100 ms: index
//! history and the audit tree, checkpoint the WAL, and the writer finishes that
//! checkpoint between two commits); without it the WAL is checkpointed only by SQLite's
//! backstop on the writing connection. After each run, untimed for the append, the store
//! is checked (size, and the root the store computes against the writer's own), and
//! without `--upkeep` the tree's nodes are derived with `Store::index_audit` on a second
//! connection and timed alone.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ztx_core::Changes;
use ztx_store::Store;

use crate::log::{Orders, Writer, log_key};
use crate::{histogram, list, median, ms, nanos, path_text, per_second, us};

/// Options of the `append` subcommand.
#[derive(Debug, clap::Args)]
pub struct AppendArgs {
    /// Entries appended per run.
    #[arg(long, default_value_t = 300_000)]
    entries: u64,
    /// Entries per commit (group-commit batch sizes), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,10000")]
    batch: Vec<u64>,
    /// Runs per batch size, each on a fresh store; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// When the writer signs a checkpoint.
    #[arg(long, value_enum, default_value_t = Checkpoints::PerCommit)]
    checkpoints: Checkpoints,
    /// Run the server's upkeep thread beside the writer (index every 100 ms, WAL
    /// checkpoints the writer finishes).
    #[arg(long)]
    upkeep: bool,
    /// Where the temporary stores go (default: the system's temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Seed of the entry generator.
    #[arg(long, default_value_t = 0xA0D1_7001)]
    seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Checkpoints {
    /// Every commit carries a signed checkpoint (the most the writer ever signs).
    PerCommit,
    /// One a second, and one at the end, as the server signs them.
    PerSecond,
    /// None (the entries alone).
    None,
}

/// What one run measured.
struct Run {
    elapsed: Duration,
    /// Making and encoding the entries, as the API and the engine's thread do before they
    /// reach the writer.
    build: Duration,
    /// The writer's work before the commit: chain, hash, frontier, signature.
    prepare: Duration,
    commit: Duration,
    commits: u64,
    checkpoints: u64,
    commit_ns: hdrhistogram::Histogram<u64>,
    bytes: u64,
    /// Entries indexed beside the writer (`--upkeep`) or afterwards on their own.
    indexed: u64,
    index_elapsed: Duration,
}

pub fn run(args: &AppendArgs) -> Result<()> {
    if args.entries == 0 || args.batch.contains(&0) || args.runs == 0 {
        bail!("--entries, --batch and --runs must be positive");
    }
    let sign_ns = sign_cost()?;
    let mut orders = Orders::new(args.seed);
    let sample = (0..10_000).map(|_| orders.next_entry()).collect();
    let sample = Writer::new(log_key()?).prepare(sample, 0, false)?;
    let bytes: usize = sample.append.rows.iter().map(|r| r.entry.len()).sum();
    println!(
        "entries: order requests as ztx-load sends them (POST /api/v3/order, customer, key, \
         IPv4, 8 parameters), {} bytes encoded on average; store: SQLite, WAL, \
         synchronous=FULL; checkpoints: {:?} (one Ed25519 signature: {:.1} µs); upkeep \
         beside the writer: {}",
        bytes / sample.append.rows.len().max(1),
        args.checkpoints,
        us(sign_ns),
        if args.upkeep { "yes" } else { "no" }
    );
    let mut summary = Vec::new();
    for &batch in &args.batch {
        let mut rates = Vec::new();
        let mut writer_rates = Vec::new();
        let mut index_rates = Vec::new();
        for n in 1..=args.runs {
            let dir = crate::scratch_dir(args.dir.as_deref())?;
            let r = one_run(args, batch, &dir.path().join("audit.sqlite"))?;
            let rate = per_second(args.entries, r.elapsed);
            let index_rate = per_second(r.indexed, r.index_elapsed);
            println!(
                "batch {batch:>6} run {n}: {rate:>9.0} entries/s ({} commits, {} checkpoints, \
                 {:.2} s); per entry: build+encode {:.2} µs, chain+hash+sign {:.2} µs, commit \
                 {:.2} µs; commit p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {:.0} bytes/entry \
                 on disk; {}",
                r.commits,
                r.checkpoints,
                r.elapsed.as_secs_f64(),
                us(nanos(r.build) / args.entries),
                us(nanos(r.prepare) / args.entries),
                us(nanos(r.commit) / args.entries),
                ms(r.commit_ns.value_at_quantile(0.5)),
                ms(r.commit_ns.value_at_quantile(0.99)),
                ms(r.commit_ns.max()),
                crate::ratio(r.bytes, args.entries),
                if args.upkeep {
                    format!("{} entries indexed beside the writer", r.indexed)
                } else {
                    format!(
                        "index_audit: {index_rate:.0} entries/s ({} in {:.2} s)",
                        r.indexed,
                        r.index_elapsed.as_secs_f64()
                    )
                }
            );
            rates.push(rate);
            writer_rates.push(per_second(args.entries, r.elapsed.saturating_sub(r.build)));
            index_rates.push(index_rate);
        }
        summary.push((batch, rates, writer_rates, index_rates));
    }
    println!();
    println!(
        "{:>8} {:>16} {:>22} {:>28}   runs",
        "batch", "entries/s (med)", "without building (med)", "index_audit entries/s (med)"
    );
    for (batch, rates, writer_rates, index_rates) in &summary {
        println!(
            "{batch:>8} {:>16.0} {:>22.0} {:>28}   {}",
            median(rates),
            median(writer_rates),
            if args.upkeep {
                "(beside the writer)".to_string()
            } else {
                format!("{:.0}", median(index_rates))
            },
            list(rates)
        );
    }
    Ok(())
}

/// The cost of one checkpoint signature, over 1,000 of them.
fn sign_cost() -> Result<u64> {
    let writer = Writer::new(log_key()?);
    let started = Instant::now();
    for i in 0..1_000 {
        writer.checkpoint(i)?;
    }
    Ok(nanos(started.elapsed()) / 1_000)
}

fn one_run(args: &AppendArgs, batch: u64, path: &Path) -> Result<Run> {
    let db = path_text(path)?;
    let mut store = ztx_store::open(db)?;
    let upkeep = args.upkeep.then(|| Upkeep::start(db)).transpose()?;
    let mut writer = Writer::new(log_key()?);
    let mut orders = Orders::new(args.seed);
    let mut commit_ns = histogram()?;
    let (mut build, mut prepare, mut commit) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let (mut commits, mut checkpoints) = (0u64, 0u64);
    let mut last_checkpoint = Instant::now();
    let started = Instant::now();
    while writer.size() < args.entries {
        let count = batch.min(args.entries - writer.size());
        let t0 = Instant::now();
        let last = writer.size() + count == args.entries;
        let sign = match args.checkpoints {
            Checkpoints::PerCommit => true,
            Checkpoints::PerSecond => last || last_checkpoint.elapsed() >= Duration::from_secs(1),
            Checkpoints::None => false,
        };
        // Built and encoded as the API and the engine's thread do; the writer chains them.
        let entries: Vec<_> = (0..count).map(|_| orders.next_entry().logged()).collect();
        let built = Instant::now();
        let prepared = writer.prepare_encoded(entries, orders.now_ms(), sign)?;
        let t1 = Instant::now();
        store.commit(&Changes::default(), &prepared.append)?;
        let t2 = Instant::now();
        if prepared.append.checkpoint.is_some() {
            checkpoints += 1;
            last_checkpoint = t2;
        }
        writer.committed(prepared);
        if let Some(u) = &upkeep {
            u.follow(store.as_mut())?;
        }
        build += built - t0;
        prepare += t1 - built;
        commit += t2 - t1;
        commit_ns.saturating_record(nanos(t2 - t1).max(1));
        commits += 1;
    }
    let elapsed = started.elapsed();
    let upkept = upkeep.map(Upkeep::stop).transpose()?;
    let bytes = crate::store_bytes(path);
    check(store.as_mut(), &writer, args.entries)?;
    let (indexed, index_elapsed) = match upkept {
        Some(indexed) => (indexed, elapsed),
        None => {
            let mut indexer = ztx_store::open(db)?;
            let started = Instant::now();
            let indexed = index_all(indexer.as_mut())?;
            (indexed, started.elapsed())
        }
    };
    // Now from stored nodes (what a proof reads), not only the leaves.
    let root = store.audit_root(args.entries)?;
    if root != writer.root() {
        bail!("after indexing, the store's root differs from the writer's");
    }
    Ok(Run {
        elapsed,
        build,
        prepare,
        commit,
        commits,
        checkpoints,
        commit_ns,
        bytes,
        indexed,
        index_elapsed,
    })
}

/// The store holds what the writer appended: every entry, and its newest checkpoint
/// signs the writer's root.
fn check(store: &mut dyn Store, writer: &Writer, entries: u64) -> Result<()> {
    let size = store.audit_size()?;
    if size != entries || writer.size() != entries {
        bail!(
            "the store has {size} entries, the writer {}, not {entries}",
            writer.size()
        );
    }
    if let Some(c) = store.latest_checkpoint()?
        && (c.size != entries || c.root != writer.root())
    {
        bail!("the newest stored checkpoint is not of the writer's log");
    }
    Ok(())
}

/// `Store::index_audit` with the engine's limit until the tree is derived to the end;
/// returns how many entries it covered.
pub fn index_all(store: &mut dyn Store) -> Result<u64> {
    let mut total = 0u64;
    loop {
        let covered = store.index_audit(INDEX_LIMIT)?;
        if covered == 0 {
            return Ok(total);
        }
        total += covered;
    }
}

/// The engine's upkeep thread indexes this many entries at most per round.
const INDEX_LIMIT: u32 = 10_000;
/// And runs every this often.
const UPKEEP_EVERY: Duration = Duration::from_millis(100);

/// The server's upkeep thread, as `ztx-engine` runs it, on a connection of its own.
struct Upkeep {
    stop: Arc<AtomicBool>,
    checkpointed: Arc<AtomicBool>,
    thread: JoinHandle<Result<u64>>,
}

impl Upkeep {
    fn start(db: &str) -> Result<Upkeep> {
        let mut store = ztx_store::open(db)?;
        let stop = Arc::new(AtomicBool::new(false));
        let checkpointed = Arc::new(AtomicBool::new(false));
        let (stopping, signal) = (stop.clone(), checkpointed.clone());
        let thread = std::thread::Builder::new()
            .name("upkeep".into())
            .spawn(move || -> Result<u64> {
                let mut indexed = 0u64;
                while !stopping.load(Ordering::Acquire) {
                    std::thread::sleep(UPKEEP_EVERY);
                    store.index_history(INDEX_LIMIT)?;
                    indexed += store.index_audit(INDEX_LIMIT)?;
                    store.maintain()?;
                    signal.store(true, Ordering::Release);
                }
                Ok(indexed)
            })
            .context("cannot start the upkeep thread")?;
        Ok(Upkeep {
            stop,
            checkpointed,
            thread,
        })
    }

    /// On the writer, between two commits: finish the upkeep's WAL checkpoint.
    fn follow(&self, store: &mut dyn Store) -> Result<()> {
        if self.checkpointed.swap(false, Ordering::AcqRel) {
            store.complete_checkpoint()?;
        }
        Ok(())
    }

    fn stop(self) -> Result<u64> {
        self.stop.store(true, Ordering::Release);
        match self.thread.join() {
            Ok(result) => result,
            Err(_) => bail!("the upkeep thread panicked"),
        }
    }
}
