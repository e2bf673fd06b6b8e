//! `ztx-bench matching`: the ztx matching engine alone against the `orderbook-rs` crate,
//! single-threaded, on one pre-generated operation sequence (exchange-core's mix, see
//! [`workload`]).
//!
//! For each engine, every run starts from a fresh book and replays, untimed, the seeding
//! orders and the warm-up operations; then it measures the same `--ops` operations:
//! - a check run (untimed) counts fills, traded quantity, missed targets and refusals, so
//!   the reader can see both engines did the same work;
//! - `--runs` throughput runs time the measured operations with one `Instant` pair each
//!   (no per-op timing); the median is reported;
//! - one latency run times each operation with its own `Instant` pair into HdrHistograms
//!   (all operations and per kind). The timer's own cost is printed in the header.
//!
//! A book is dropped after its timer stops.

mod engines;
mod workload;

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use engines::{Engine, ObMove, OrderbookRs, Tally, Ztx};
use workload::{Op, OpKind, Workload};

/// Options of the `matching` subcommand.
#[derive(Debug, clap::Args)]
pub struct MatchingArgs {
    /// Measured operations per run.
    #[arg(long, default_value_t = 3_000_000)]
    pub ops: usize,
    /// Untimed operations of the same mix replayed before the measured ones.
    #[arg(long, default_value_t = 500_000)]
    pub warmup: usize,
    /// Resting orders the generator seeds and keeps the book near.
    #[arg(long, default_value_t = 1_000)]
    pub book: usize,
    /// Seed of the workload generator.
    #[arg(long, default_value_t = 0x5EED_0001)]
    pub seed: u64,
    /// Throughput runs per engine (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Which engines to run.
    #[arg(long, value_enum, default_value_t = Which::All)]
    pub engine: Which,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    /// ztx and both orderbook-rs variants.
    All,
    Ztx,
    /// orderbook-rs, moves by `update_order(UpdatePrice)`.
    OrderbookRs,
    /// orderbook-rs, moves by `cancel_order` + `add_limit_order_with_user`.
    OrderbookRsCancelAdd,
}

/// One engine's results.
struct Report {
    name: &'static str,
    tally: Tally,
    resting_end: usize,
    runs: Vec<Duration>,
    all: Histogram<u64>,
    by_kind: [Histogram<u64>; 4],
}

impl Report {
    fn median(&self) -> Duration {
        let mut sorted = self.runs.clone();
        sorted.sort();
        sorted.get(sorted.len() / 2).copied().unwrap_or_default()
    }
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    // 1 ns .. 100 s at three significant figures.
    Ok(Histogram::new_with_bounds(1, 100_000_000_000, 3)?)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn replay<E: Engine>(engine: &mut E, ops: &[Op]) {
    for op in ops {
        engine.apply(op);
    }
}

/// A fresh engine with the untimed prefix replayed.
fn prepared<E: Engine>(make: &impl Fn() -> E, workload: &Workload) -> E {
    let mut engine = make();
    replay(&mut engine, workload.prefix_ops());
    engine
}

fn measure<E: Engine>(
    name: &'static str,
    make: impl Fn() -> E,
    make_counting: impl Fn() -> E,
    workload: &Workload,
    runs: usize,
) -> anyhow::Result<Report> {
    eprintln!("[{name}] check run");
    let mut check = make_counting();
    replay(&mut check, &workload.ops);
    let tally = check.tally();
    let resting_end = check.resting();
    drop(check);

    let mut durations = Vec::with_capacity(runs);
    for run in 0..runs {
        let mut engine = prepared(&make, workload);
        let start = Instant::now();
        replay(&mut engine, workload.measured_ops());
        let elapsed = start.elapsed();
        drop(engine);
        eprintln!("[{name}] throughput run {}: {elapsed:?}", run + 1);
        durations.push(elapsed);
    }

    eprintln!("[{name}] latency run");
    let mut all = histogram()?;
    let mut by_kind = [histogram()?, histogram()?, histogram()?, histogram()?];
    let mut engine = prepared(&make, workload);
    for op in workload.measured_ops() {
        let start = Instant::now();
        engine.apply(op);
        let ns = nanos(start.elapsed()).max(1);
        all.saturating_record(ns);
        if let Some(h) = by_kind.get_mut(op.kind.index()) {
            h.saturating_record(ns);
        }
    }
    drop(engine);

    Ok(Report {
        name,
        tally,
        resting_end,
        runs: durations,
        all,
        by_kind,
    })
}

/// The cost of one `Instant::now()` pair, as the latency run pays it.
fn timer_overhead() -> anyhow::Result<Histogram<u64>> {
    let mut h = histogram()?;
    for _ in 0..1_000_000 {
        let start = Instant::now();
        let ns = nanos(start.elapsed()).max(1);
        h.saturating_record(ns);
    }
    Ok(h)
}

#[allow(
    clippy::float_arithmetic,
    clippy::cast_precision_loss,
    reason = "rates for display; operation counts are far below 2^52"
)]
fn ops_per_sec(ops: usize, elapsed: Duration) -> f64 {
    ops as f64 / elapsed.as_secs_f64().max(1e-9)
}

pub fn run(args: &MatchingArgs) -> anyhow::Result<()> {
    let timer = timer_overhead()?;
    println!(
        "timer: Instant::now() pair p50 {} ns, p99 {} ns (included in every latency sample)",
        timer.value_at_quantile(0.5),
        timer.value_at_quantile(0.99)
    );

    let started = Instant::now();
    let workload = workload::generate(args.seed, args.book, args.warmup, args.ops)?;
    eprintln!("workload generated in {:?}", started.elapsed());
    print_workload(args, &workload);

    let mut reports = Vec::new();
    let wants = |w: Which| args.engine == Which::All || args.engine == w;
    if wants(Which::Ztx) {
        reports.push(measure("ztx", Ztx::new, Ztx::new, &workload, args.runs)?);
    }
    for (which, name, mode) in [
        (Which::OrderbookRs, "orderbook-rs", ObMove::UpdatePrice),
        (Which::OrderbookRsCancelAdd, "ob-rs c+a", ObMove::CancelAdd),
    ] {
        if wants(which) {
            reports.push(measure(
                name,
                || OrderbookRs::new(mode),
                || OrderbookRs::counting(mode),
                &workload,
                args.runs,
            )?);
        }
    }
    print_reports(args, &reports);
    println!(
        "load average at end: {} (other processes share these cores)",
        crate::machine::loadavg()
    );
    Ok(())
}

fn print_workload(args: &MatchingArgs, workload: &Workload) {
    let s = &workload.stats;
    let measured = u64::try_from(args.ops).unwrap_or(u64::MAX);
    println!(
        "workload: seed {:#x}; {} seeding GTCs + {} warm-up ops (untimed), then {} measured ops",
        args.seed, args.book, args.warmup, args.ops
    );
    let mix: Vec<String> = OpKind::ALL
        .iter()
        .map(|k| {
            let count = s.count.get(k.index()).copied().unwrap_or(0);
            let trading = s.trading.get(k.index()).copied().unwrap_or(0);
            format!(
                "{} {} ({}, {} of them trade)",
                k.name(),
                count,
                percent(count, measured),
                percent(trading, count)
            )
        })
        .collect();
    println!("  mix: {}", mix.join("; "));
    println!(
        "  resting orders over the measured ops: mean {}, min {}, max {}; {} fills; {} cancels/moves drawn on an empty book issued as GTC",
        s.book_mean(measured),
        s.book_min,
        s.book_max,
        s.fills,
        s.fallbacks
    );
}

/// `part / whole` as a percentage with one decimal, in integer arithmetic.
fn percent(part: u64, whole: u64) -> String {
    let tenths = u128::from(part) * 1000 / u128::from(whole.max(1));
    format!("{}.{}%", tenths / 10, tenths % 10)
}

#[allow(
    clippy::float_arithmetic,
    reason = "throughput figures and ratios for display only"
)]
fn print_reports(args: &MatchingArgs, reports: &[Report]) {
    println!();
    println!(
        "{:<13} {:>12} {:>8} {:>8} {:>8} {:>9} {:>10} {:>11} {:>7} {:>7} {:>7}",
        "engine",
        "ops/s",
        "p50 ns",
        "p99 ns",
        "p99.9 ns",
        "max ns",
        "fills",
        "filled qty",
        "misses",
        "errors",
        "resting"
    );
    for r in reports {
        let runs: Vec<String> = r
            .runs
            .iter()
            .map(|d| format!("{:.0}", ops_per_sec(args.ops, *d)))
            .collect();
        println!(
            "{:<13} {:>12.0} {:>8} {:>8} {:>8} {:>9} {:>10} {:>11} {:>7} {:>7} {:>7}",
            r.name,
            ops_per_sec(args.ops, r.median()),
            r.all.value_at_quantile(0.5),
            r.all.value_at_quantile(0.99),
            r.all.value_at_quantile(0.999),
            r.all.max(),
            r.tally.fills,
            r.tally.filled_qty,
            r.tally.misses,
            r.tally.errors,
            r.resting_end
        );
        println!("  throughput runs (ops/s): {}", runs.join(", "));
        for kind in OpKind::ALL {
            if let Some(h) = r.by_kind.get(kind.index()) {
                println!(
                    "  {:<7} n={:<8} p50 {:>6} ns  p99 {:>7} ns  p99.9 {:>7} ns  max {:>9} ns",
                    kind.name(),
                    h.len(),
                    h.value_at_quantile(0.5),
                    h.value_at_quantile(0.99),
                    h.value_at_quantile(0.999),
                    h.max()
                );
            }
        }
    }
    if let Some((ztx, others)) = reports.split_first()
        && ztx.name == "ztx"
    {
        println!();
        for other in others {
            let same = ztx.tally.fills == other.tally.fills
                && ztx.tally.filled_qty == other.tally.filled_qty
                && ztx.resting_end == other.resting_end;
            println!(
                "ztx vs {}: same work {} (fills, traded quantity, final resting orders over the whole sequence)",
                other.name,
                if same { "yes" } else { "NO" },
            );
            let speedup = other.median().as_secs_f64() / ztx.median().as_secs_f64().max(1e-12);
            let quantile =
                |q: f64| ratio(other.all.value_at_quantile(q), ztx.all.value_at_quantile(q));
            println!(
                "  throughput ztx/{name} = {speedup:.2}; latency {name}/ztx = {:.2} (p50), {:.2} (p99), {:.2} (p99.9)",
                quantile(0.5),
                quantile(0.99),
                quantile(0.999),
                name = other.name,
            );
        }
    }
    println!(
        "note: a move is cancel + re-add (new time priority, may trade) in every engine: ztx does \
         remove + match_taker + insert; orderbook-rs does update_order(UpdatePrice) (its own \
         cancel + re-add), ob-rs c+a does cancel_order + add_limit_order_with_user. \
         orderbook-rs fills are counted in the untimed check run through a trade listener; \
         timed runs have none."
    );
}

#[allow(
    clippy::float_arithmetic,
    clippy::cast_precision_loss,
    reason = "a display ratio of two nanosecond counts"
)]
fn ratio(a: u64, b: u64) -> f64 {
    a as f64 / (b.max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_is_deterministic_and_both_engines_do_the_same_work() {
        let a = workload::generate(7, 200, 2_000, 20_000).unwrap();
        let b = workload::generate(7, 200, 2_000, 20_000).unwrap();
        assert_eq!(format!("{:?}", a.ops), format!("{:?}", b.ops));

        let mut ztx = Ztx::new();
        replay(&mut ztx, &a.ops);
        let zt = ztx.tally();
        assert!(zt.fills > 0);
        assert_eq!((zt.misses, zt.errors), (0, 0));
        for mode in [ObMove::UpdatePrice, ObMove::CancelAdd] {
            let mut other = OrderbookRs::counting(mode);
            replay(&mut other, &a.ops);
            assert_eq!(zt, other.tally(), "{mode:?}");
            assert_eq!(ztx.resting(), other.resting(), "{mode:?}");
        }
    }
}
