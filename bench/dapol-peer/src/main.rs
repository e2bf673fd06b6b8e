//! Peer benchmark: the `dapol` crate (v0.4.0, the Rust reference implementation of
//! DAPOL+ proof of liabilities, NDM-SMT accumulator) on the very accounts that
//! `ztx-por-bench` uses (SplitMix64 from state 7), for a side-by-side comparison.
//!
//! dapol holds one liability per entity, so each leaf carries the account's BTC balance
//! only (ztx-por carries BTC and USDT). Inclusion proofs use 64-bit Bulletproofs range
//! proofs aggregated over the whole path (dapol's default, 100% aggregation) when the
//! height is a power of two; see `--aggregate` for other heights.
//!
//! Only dapol's public API is used.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::float_arithmetic,
    clippy::cast_precision_loss,
    clippy::panic,
    reason = "a benchmark harness: failing loudly is the right behaviour, and floats only format figures"
)]

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Instant;

use clap::Parser;
use dapol::{
    AccumulatorType, AggregationFactor, DapolTree, Entity, EntityId, Height, InclusionProof,
    InclusionProofFileType, MaxLiability, MaxThreadCount, Salt, Secret,
};

/// dapol's version, pinned in Cargo.toml (`dapol = "=0.4.0"`).
const DAPOL_VERSION: &str = "0.4.0";

#[derive(Debug, Parser)]
#[command(
    about = "dapol (DAPOL+ reference implementation): tree build, proof generation and verification"
)]
struct Args {
    /// Accounts (entities) in the tree.
    #[arg(long, default_value_t = 1_000_000)]
    accounts: u64,
    /// dapol tree height: the number of levels, leaves included, so the tree holds
    /// 2^(height-1) leaves and a path has height-1 siblings. The default is dapol's
    /// own default (32). dapol's height h+1 is ztx-por's height h (2^h leaves).
    #[arg(long, default_value_t = Height::default().as_u8())]
    height: u8,
    /// Proofs generated and verified, for customers spread evenly over the accounts.
    #[arg(long, default_value_t = 20)]
    proofs: u64,
    /// Threads for the tree build (dapol's max_thread_count and its rayon pool).
    #[arg(long, default_value_t = 2)]
    threads: u8,
    /// Path nodes (of `height`) whose range proofs go into the one aggregated Bulletproof;
    /// the rest get individual range proofs. Default: the whole path (dapol's default,
    /// 100%) when `height` is a power of two, else the largest power of two below it,
    /// because dapol 0.4.0 cannot verify its own padded (non-power-of-two) aggregate.
    #[arg(long)]
    aggregate: Option<u8>,
}

/// A deterministic stream of balances (SplitMix64), identical to ztx-por-bench's.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The process's peak resident memory (VmHWM, from /proc on Linux), in MB.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The machine's 1, 5 and 15 minute load averages, from /proc/loadavg.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The process's CPU time (user + system) so far, from /proc/self/stat, in seconds.
/// Linux reports it in USER_HZ ticks, which the userspace ABI fixes at 100 per second.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn main() {
    let args = Args::parse();
    println!(
        "command: {}",
        std::env::args().collect::<Vec<_>>().join(" ")
    );
    println!(
        "ztx-dapol-peer --accounts {} --height {} --proofs {} --threads {}",
        args.accounts, args.height, args.proofs, args.threads
    );
    println!(
        "machine: {} cores; build: {}; dapol {DAPOL_VERSION}, accumulator NDM-SMT",
        std::thread::available_parallelism().map_or(0, usize::from),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
    );
    println!(
        "load average at start: {} (other jobs skew the timings)",
        load_average()
    );
    println!(
        "NOTE: dapol proves ONE asset per leaf: the liability is the account's BTC balance \
         (ztx-por-bench proves BTC and USDT per leaf)"
    );

    let height = Height::try_from(args.height).unwrap_or_else(|e| panic!("--height: {e}"));
    let capacity = height.max_bottom_layer_nodes();
    if args.accounts > capacity {
        eprintln!(
            "error: a dapol tree of height {} holds at most 2^{} = {capacity} leaves, fewer than \
             {} accounts; dapol's height counts levels (leaves included), so ztx-por's height h \
             is dapol's h+1 (e.g. use --height {} here)",
            args.height,
            args.height - 1,
            args.accounts,
            64 - (args.accounts - 1).leading_zeros() + 1,
        );
        std::process::exit(2);
    }
    assert!(args.accounts >= 1, "--accounts must be at least 1");
    assert!(args.threads >= 1, "--threads must be at least 1");

    // dapol's leaf hashing runs on rayon's global pool; its tree builder spawns up to
    // max_thread_count threads. Both are sized by --threads.
    rayon::ThreadPoolBuilder::new()
        .num_threads(usize::from(args.threads))
        .build_global()
        .unwrap();

    // 64-bit range proofs. dapol maps max_liability to the smallest allowed bit length
    // (8, 16, 32, 64) above floor(log2(max_liability)); u64::MAX rounds to 2^64 in f64
    // and panics there, so 2^63 is dapol's way of saying "64 bits".
    let max_liability = MaxLiability::from(1u64 << 63);
    assert_eq!(max_liability.as_range_proof_upper_bound_bit_length(), 64);
    // Range proofs over every node of the path (leaf to root: `height` commitments),
    // aggregated into one Bulletproof, as DAPOL+ does. dapol 0.4.0 pads a
    // non-power-of-two aggregate to the next power of two when proving but verifies
    // against the unpadded commitments (`AggregatedRangeProof::verify`, Padding arm), so
    // such proofs never verify; there the default aggregates the largest power of two
    // and proves the remaining nodes individually, through dapol's public API.
    let full_is_sound = args.height.is_power_of_two();
    let aggregate = args.aggregate.unwrap_or(if full_is_sound {
        args.height
    } else {
        1 << (7 - args.height.leading_zeros())
    });
    assert!(
        (1..=args.height).contains(&aggregate),
        "--aggregate must be in 1..={}",
        args.height
    );
    let aggregation = if aggregate == args.height {
        AggregationFactor::Percent(dapol::percentage::ONE_HUNDRED_PERCENT)
    } else {
        AggregationFactor::Number(aggregate)
    };
    println!(
        "tree: height {} (2^{} leaves, {} path siblings), max_thread_count {}, range proofs {} bits",
        args.height,
        args.height - 1,
        args.height - 1,
        args.threads,
        max_liability.as_range_proof_upper_bound_bit_length(),
    );
    println!(
        "range proofs per inclusion proof: {aggregate} of the {} path commitments in one \
         aggregated Bulletproof{}{}",
        args.height,
        if aggregate == args.height {
            " (dapol's full aggregation)".to_string()
        } else {
            format!(", {} individual", args.height - aggregate)
        },
        if aggregate.is_power_of_two() {
            ""
        } else {
            "; WARNING: not a power of two, dapol 0.4.0 will fail to verify these proofs"
        },
    );
    if !full_is_sound && args.aggregate.is_none() {
        println!(
            "NOTE: height {} is not a power of two; dapol 0.4.0's full aggregation would pad \
             to {} and then fail its own verification (pass --aggregate {} to see it)",
            args.height,
            args.height.next_power_of_two(),
            args.height
        );
    }

    // The accounts, exactly as ztx-por-bench draws them (USDT is drawn and discarded so
    // that the BTC stream matches).
    let started = Instant::now();
    let mut seed = 7u64;
    let mut total_btc = 0u64;
    let entities: Vec<Entity> = (1..=args.accounts)
        .map(|c| {
            let btc = next(&mut seed) % 10_000_000_000;
            let _usdt = next(&mut seed) % 1_000_000_000_000;
            total_btc += btc;
            Entity {
                liability: btc,
                id: EntityId::from_str(&c.to_string()).unwrap(),
            }
        })
        .collect();
    println!(
        "accounts: {} generated in {:.2} s (not counted in the build)",
        entities.len(),
        started.elapsed().as_secs_f64()
    );

    let cpu_before = cpu_seconds().unwrap_or(0.0);
    let started = Instant::now();
    let tree = DapolTree::new(
        AccumulatorType::NdmSmt,
        Secret::from_str("ztx-dapol-peer master secret").unwrap(),
        Salt::from_str("ztx-dapol-peer salt_b").unwrap(),
        Salt::from_str("ztx-dapol-peer salt_s").unwrap(),
        max_liability,
        MaxThreadCount::from(args.threads),
        height,
        entities,
    )
    .unwrap();
    let built = started.elapsed();
    let build_cpu = cpu_seconds().unwrap_or(0.0) - cpu_before;
    let peak_after_build = peak_rss_mb().unwrap_or(0.0);
    assert_eq!(
        tree.root_liability(),
        total_btc,
        "root liability is the BTC total"
    );
    println!(
        "build: {:.2} s for {} accounts (dapol height {}), peak memory {:.0} MB (VmHWM after build); \
         {:.1} s of CPU ({:.2} cores busy on average)",
        built.as_secs_f64(),
        args.accounts,
        args.height,
        peak_after_build,
        build_cpu,
        build_cpu / built.as_secs_f64()
    );
    let root_hash = *tree.root_hash();

    let dir: PathBuf = std::env::temp_dir().join(format!("ztx-dapol-peer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let proofs = args.proofs.max(1);
    let step = (args.accounts / proofs).max(1);
    let (mut generate, mut check) = (0.0, 0.0);
    let mut sizes = Vec::new();
    for i in 0..proofs {
        let customer = 1 + (i * step) % args.accounts;
        let id = EntityId::from_str(&customer.to_string()).unwrap();

        let started = Instant::now();
        let proof = tree
            .generate_inclusion_proof_with(&id, aggregation.clone())
            .unwrap();
        generate += started.elapsed().as_secs_f64();

        // dapol's own serialization (bincode, `.dapolproof` file); verify what a customer
        // would receive, i.e. the decoded proof.
        let path = proof
            .serialize(&id, dir.clone(), InclusionProofFileType::Binary)
            .unwrap();
        sizes.push(std::fs::metadata(&path).unwrap().len());
        let received = InclusionProof::deserialize(path.clone()).unwrap();
        std::fs::remove_file(&path).unwrap();

        let started = Instant::now();
        let verdict = received.verify(root_hash);
        check += started.elapsed().as_secs_f64();
        if let Err(e) = verdict {
            panic!(
                "customer {customer}: dapol inclusion proof failed to verify: {e:?} \
                 (the proof before serialization: {:?})",
                proof.verify(root_hash)
            );
        }

        if i == 0 {
            // The check is real: a different root must be rejected.
            let mut wrong = root_hash;
            wrong.0[0] ^= 1;
            assert!(
                received.verify(wrong).is_err(),
                "a proof verified against a wrong root hash"
            );
        }
    }
    let _ = std::fs::remove_dir(&dir);

    let n = proofs as f64;
    let (min, max) = (
        sizes.iter().min().copied().unwrap_or(0),
        sizes.iter().max().copied().unwrap_or(0),
    );
    println!(
        "proof: {} bytes (dapol bincode{}, one asset); generate {:.1} ms each; verify {:.1} ms each \
         ({} proofs, all verified Ok; a wrong root is rejected)",
        max,
        if min == max {
            String::new()
        } else {
            format!(", {min}..{max}")
        },
        generate * 1e3 / n,
        check * 1e3 / n,
        proofs
    );
    println!(
        "peak memory at exit: {:.0} MB (VmHWM); load average at exit: {}",
        peak_rss_mb().unwrap_or(0.0),
        load_average()
    );
}
