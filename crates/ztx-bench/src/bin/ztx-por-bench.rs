//! Proof of liabilities' cost (issue 5's targets for the non-private variant): building
//! the sum tree of N accounts (two assets, or one, random balances), then generating, encoding
//! and verifying customers' inclusion proofs, with the proof's size and the process's
//! peak memory.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::float_arithmetic,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::panic,
    reason = "a benchmark harness: failing loudly is the right behaviour, and floats only format figures"
)]

use std::time::Instant;

use clap::Parser;
use ztx_por::{EpochSecret, SumTree, TreeConfig, verify};

#[derive(Debug, Parser)]
#[command(about = "Proof of liabilities: tree build, proof generation and verification")]
struct Args {
    /// Accounts in the tree.
    #[arg(long, default_value_t = 1_000_000)]
    accounts: u64,
    /// The tree's minimum height (it grows to fit the accounts).
    #[arg(long, default_value_t = 20)]
    min_height: u8,
    /// Proofs generated and verified.
    #[arg(long, default_value_t = 1_000)]
    proofs: u64,
    /// The zero-knowledge variant (commitments and range proofs) instead of sums.
    #[arg(long)]
    zk: bool,
    /// Assets per account: 2 (BTC and USDT) or 1 (BTC alone, as the `dapol` peer
    /// proves one liability per leaf).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=2))]
    assets: u8,
    /// With `--zk`: publish a cap of this many top levels (range-proven once, at build)
    /// and make capped proofs (version 4) that range-prove only the levels below it; 0
    /// for uncapped proofs (version 2). The default is the platform's.
    #[arg(long, default_value_t = ztx_por::DEFAULT_CAP, value_parser = clap::value_parser!(u8).range(0..=i64::from(ztx_por::MAX_CAP)))]
    cap: u8,
    /// Instead of a tree: the range-proof crate alone (`RangeProof::prove_multiple`,
    /// 64-bit values), aggregated over m = 8, 16, 32 and 64 values, then two proofs made
    /// at once on two threads, as a version-4 proof makes its runs.
    #[arg(long)]
    range_proofs: bool,
}

/// A deterministic stream of balances (SplitMix64), so that runs compare.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn report_build(built: std::time::Duration, accounts: u64, height: u8) {
    println!(
        "build: {:.2} s for {accounts} accounts (height {height}), peak memory {:.0} MB",
        built.as_secs_f64(),
        peak_rss_mb().unwrap_or(0.0)
    );
}

/// The process's peak resident memory, from /proc (Linux), in MB.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn main() {
    let args = Args::parse();
    if args.range_proofs {
        range_proofs(usize::try_from(args.proofs).unwrap_or(usize::MAX));
        return;
    }
    println!(
        "ztx-por-bench --accounts {} --min-height {} --proofs {} --assets {}{}{}",
        args.accounts,
        args.min_height,
        args.proofs,
        args.assets,
        if args.zk { " --zk" } else { "" },
        if args.zk {
            format!(" --cap {}", args.cap)
        } else {
            String::new()
        }
    );
    println!(
        "machine: {} cores; build: {}; variant: {}",
        std::thread::available_parallelism().map_or(0, usize::from),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        if args.zk {
            "zero-knowledge (Pedersen commitments, Bulletproofs per path)"
        } else {
            "non-private (sums in clear)"
        }
    );
    let mut seed = 7u64;
    let accounts: Vec<(u64, Vec<u128>)> = (1..=args.accounts)
        .map(|c| {
            let btc = u128::from(next(&mut seed) % 10_000_000_000);
            // Up to 10,000 USDT at 8 decimals: a million such accounts stay below
            // 2^64 units, the zero-knowledge tree's range.
            let usdt = u128::from(next(&mut seed) % 1_000_000_000_000);
            let mut balances = vec![btc, usdt];
            balances.truncate(usize::from(args.assets));
            (c, balances)
        })
        .collect();
    let assets: Vec<String> = ["BTC", "USDT"]
        .iter()
        .take(usize::from(args.assets))
        .map(|a| (*a).to_owned())
        .collect();
    let secret = EpochSecret::from_bytes([9; 32]);
    if args.zk {
        zk(&args, assets, &accounts, &secret);
        return;
    }
    let started = Instant::now();
    let tree = SumTree::build(
        1,
        assets,
        &accounts,
        &secret,
        TreeConfig {
            min_height: args.min_height,
        },
    )
    .unwrap();
    let built = started.elapsed();
    let root = tree.root();
    report_build(built, args.accounts, root.height);
    let step = (args.accounts / args.proofs.max(1)).max(1);
    let customers: Vec<u64> = (0..args.proofs)
        .map(|i| 1 + (i * step) % args.accounts)
        .collect();
    let started = Instant::now();
    let proofs: Vec<Vec<u8>> = customers
        .iter()
        .map(|c| tree.proof(*c).unwrap().encode().unwrap())
        .collect();
    let generated = started.elapsed();
    let started = Instant::now();
    for bytes in &proofs {
        let proof = ztx_por::InclusionProof::decode(bytes).unwrap();
        verify(&proof, &root.hash).unwrap();
    }
    let verified = started.elapsed();
    let n = proofs.len() as f64;
    println!(
        "proof: {} bytes; generate {:.1} µs each; decode and verify {:.1} µs each ({} proofs)",
        proofs.first().map_or(0, Vec::len),
        generated.as_secs_f64() * 1e6 / n,
        verified.as_secs_f64() * 1e6 / n,
        proofs.len()
    );
}

fn zk(args: &Args, assets: Vec<String>, accounts: &[(u64, Vec<u128>)], secret: &EpochSecret) {
    let accounts: Vec<(u64, Vec<u64>)> = accounts
        .iter()
        .map(|(c, b)| (*c, b.iter().map(|v| u64::try_from(*v).unwrap()).collect()))
        .collect();
    let started = Instant::now();
    let tree = ztx_por::ZkTree::build(
        1,
        assets,
        &accounts,
        secret,
        TreeConfig {
            min_height: args.min_height,
        },
        &|done, of| {
            eprintln!(
                "{:.2} s: levels built: {done}/{of}",
                started.elapsed().as_secs_f64()
            )
        },
    )
    .unwrap();
    eprintln!();
    let built = started.elapsed();
    let root = tree.root();
    report_build(built, args.accounts, root.height);
    // The cap is made once per epoch, with the tree, and checked once by each verifier.
    let checked = (args.cap > 0).then(|| {
        let started = Instant::now();
        let cap = tree.make_cap(args.cap).unwrap().encode().unwrap();
        let made = started.elapsed();
        let started = Instant::now();
        let checked = ztx_por::ZkCap::decode(&cap)
            .unwrap()
            .verify(&root.hash)
            .unwrap();
        println!(
            "cap: {} levels, {} bytes; made in {:.1} ms (build with it: {:.2} s); decoded and checked in {:.1} ms",
            args.cap,
            cap.len(),
            made.as_secs_f64() * 1e3,
            (built + made).as_secs_f64(),
            started.elapsed().as_secs_f64() * 1e3
        );
        checked
    });
    let n = args.proofs.clamp(1, 100);
    let step = (args.accounts / n).max(1);
    let (mut generate, mut check, mut size) = (0.0, 0.0, 0);
    for i in 0..n {
        let customer = 1 + (i * step) % args.accounts;
        let started = Instant::now();
        let bytes = tree
            .proof_capped(customer, args.cap)
            .unwrap()
            .encode()
            .unwrap();
        generate += started.elapsed().as_secs_f64();
        size = size.max(bytes.len());
        let started = Instant::now();
        let proof = ztx_por::ZkProof::decode(&bytes).unwrap();
        match &checked {
            Some(cap) => cap.verify(&proof).map(|_| ()).unwrap(),
            None => ztx_por::verify_zk(&proof, &root.hash).map(|_| ()).unwrap(),
        }
        check += started.elapsed().as_secs_f64();
    }
    println!(
        "proof: {size} bytes at most; generate and encode {:.1} ms each; decode and verify {:.1} ms each ({n} proofs)",
        generate * 1e3 / n as f64,
        check * 1e3 / n as f64,
    );
}

/// One aggregated range proof over `m` values: its bytes and the commitments it proves.
fn prove_range(
    gens: &(bulletproofs::BulletproofGens, bulletproofs::PedersenGens),
    m: u64,
) -> (
    bulletproofs::RangeProof,
    Vec<curve25519_dalek::ristretto::CompressedRistretto>,
) {
    let values: Vec<u64> = (0..m).map(|i| i.wrapping_mul(1_000_003)).collect();
    let blinds: Vec<curve25519_dalek::scalar::Scalar> = values
        .iter()
        .map(|_| curve25519_dalek::scalar::Scalar::random(&mut rand::rngs::OsRng))
        .collect();
    let mut transcript = merlin::Transcript::new(b"ztx-por-bench/range");
    bulletproofs::RangeProof::prove_multiple(
        &gens.0,
        &gens.1,
        &mut transcript,
        &values,
        &blinds,
        64,
    )
    .expect("values below 2^64 and a power-of-two count always prove")
}

/// `--range-proofs`: what one range proof costs, by the values it aggregates, and two
/// made at once.
fn range_proofs(reps: usize) {
    println!("ztx-por-bench --range-proofs --proofs {reps}");
    let gens = (
        bulletproofs::BulletproofGens::new(64, 64),
        bulletproofs::PedersenGens::default(),
    );
    let reps = reps.max(1);
    let per = |start: Instant| start.elapsed().as_secs_f64() * 1_000.0 / reps as f64;
    for m in [8u64, 16, 32, 64] {
        let start = Instant::now();
        let proven: Vec<_> = (0..reps).map(|_| prove_range(&gens, m)).collect();
        let prove_ms = per(start);
        let start = Instant::now();
        for (proof, commitments) in &proven {
            let mut transcript = merlin::Transcript::new(b"ztx-por-bench/range");
            proof
                .verify_multiple(&gens.0, &gens.1, &mut transcript, commitments, 64)
                .expect("a proof just made verifies");
        }
        let verify_ms = per(start);
        let bytes = proven.first().map_or(0, |(p, _)| p.to_bytes().len());
        println!(
            "m = {m}: prove {prove_ms:.1} ms, verify {verify_ms:.1} ms, {bytes} bytes (mean of {reps})"
        );
    }
    for (a, b) in [(16u64, 8u64), (16, 16)] {
        let start = Instant::now();
        for _ in 0..reps {
            std::thread::scope(|s| {
                let other = s.spawn(|| prove_range(&gens, b));
                let _ = prove_range(&gens, a);
                let _ = other.join();
            });
        }
        println!(
            "m = {a} and m = {b} at once on two threads: {:.1} ms (mean of {reps})",
            per(start)
        );
    }
}
