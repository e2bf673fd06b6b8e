//! End-to-end load: signed orders per second and their latency, over HTTP on loopback,
//! against a real `ztx serve` process with its durable embedded store (SQLite, WAL,
//! synchronous=FULL; every order is committed before it is answered).
//!
//! The generator signs every request like a bot (HMAC-SHA256 over the query string, a fresh
//! timestamp each time) and keeps many keep-alive connections busy, one request in flight
//! on each. Orders are LIMIT GTC at random prices around a mid, so about half cross and
//! trade and the book stays bounded. Latency is measured per request from just before
//! signing to the end of the response body.
//!
//! With `--reads P`, P% of the requests are signed balance queries (`GET /api/v3/account`)
//! instead, the read a bot makes most: audited, each is in the log before its answer
//! leaves, like an order, so it waits for a group commit too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::float_arithmetic,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "a benchmark harness: failing loudly is the right behaviour, and floats only format figures"
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Parser;
use hdrhistogram::Histogram;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use sha2::Sha256;
use tokio::net::TcpStream;

#[derive(Debug, Parser)]
#[command(about = "End-to-end signed-order load against a real ztx server")]
struct Args {
    /// The ztx binary (default: next to this one).
    #[arg(long)]
    ztx: Option<PathBuf>,
    /// Keep-alive connections, each with one request in flight.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Customers (each with its own API key); connections are spread over them.
    #[arg(long, default_value_t = 16)]
    customers: usize,
    /// Seconds of measured load, after the warm-up.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    #[arg(long, default_value_t = 3)]
    warmup_seconds: u64,
    /// Threads of the load generator (the server gets the rest of the machine).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Run the server without its audit log (the baseline of what the log costs).
    #[arg(long)]
    unaudited: bool,
    /// Measure what the audit log costs: this many rounds, each a run without and a run
    /// with it (which goes first alternates, so that a drift of the machine's speed
    /// favours neither); prints both medians, their ratio, and the median of the rounds'
    /// own ratios.
    #[arg(long)]
    compare_audit: Option<usize>,
    /// Run the server on a throw-away PostgreSQL cluster instead of the embedded store:
    /// `plain` (TCP, no TLS) or `mtls` (a cluster that takes only `hostssl … cert`, the
    /// server connecting with `sslmode=verify-full` and a certificate of the platform's
    /// CA as its role).
    #[arg(long, value_enum)]
    postgres: Option<PgMode>,
    /// Measure what mutual TLS to PostgreSQL costs: this many rounds, each a run on a
    /// plain cluster and one on a TLS-only cluster, alternating.
    #[arg(long)]
    compare_postgres: Option<usize>,
    /// This share of the requests, in percent, are signed balance queries
    /// (`GET /api/v3/account`) instead of orders; the rest are orders. The detector's
    /// account-query burst rule is raised out of the way, like the order limits.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
    reads: u8,
    /// Also report the CPU time spent per accepted order (with `--reads`, per accepted
    /// request) during the measured seconds: by each of the server's threads (grouped by
    /// name), by this generator, and by the whole machine (kernel threads such as the
    /// disk's writeback included); and the bytes written per order (or request), by the
    /// server's process (to the page cache, as the kernel counts them) and by the
    /// machine's disks (what reached the device), from `/proc` (Linux only).
    #[arg(long)]
    cpu: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PgMode {
    Plain,
    Mtls,
}

/// A throw-away cluster and the URL the server uses, owned by the role `exchange`.
struct Database {
    _cluster: ztx_store::testing::PgCluster,
    _pki: tempfile::TempDir,
    url: String,
}

fn database(mode: PgMode) -> Result<Database> {
    use ztx_pki::{Authority, Lifetimes, Request, Subject};
    let pki = tempfile::tempdir()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    let workload = |authority: &Authority, service: &str| {
        authority.issue(
            &Request {
                subject: Subject::Workload {
                    service: service.into(),
                    dns: vec!["localhost".into()],
                    ips: vec!["127.0.0.1".parse().unwrap()],
                },
                lifetime_ms: 3_600_000,
            },
            now,
        )
    };
    let authority = Authority::init(pki.path(), "ztx.bench", Lifetimes::default(), now)?;
    let cluster = match mode {
        PgMode::Plain => ztx_store::testing::PgCluster::start()?,
        PgMode::Mtls => {
            let server = workload(&authority, "database")?;
            ztx_store::testing::PgCluster::start_tls(&ztx_store::testing::ServerTls {
                cert_pem: server.chain_pem.clone(),
                key_pem: server.key_pem.to_string(),
                ca_pem: std::fs::read_to_string(authority.root_path())?,
                crl_pem: authority.crl_bundle()?,
            })?
        }
    }
    .context("PostgreSQL is not installed")?;
    // The baseline is PostgreSQL as it comes: no TLS, and no row security (a role that
    // bypasses it, so the policies are never evaluated). `mtls` is the platform as
    // shipped: certificates only, and the policies bind the server's role (it owns the
    // tables here, and FORCE ROW LEVEL SECURITY binds owners too).
    cluster.execute(match mode {
        PgMode::Plain => "CREATE ROLE exchange LOGIN BYPASSRLS",
        PgMode::Mtls => "CREATE ROLE exchange LOGIN",
    })?;
    cluster.execute("CREATE DATABASE ztx OWNER exchange")?;
    let mut url = format!("postgres://exchange@127.0.0.1:{}/ztx", cluster.port());
    if mode == PgMode::Mtls {
        let (cert, key) = workload(&authority, "exchange")?.write(pki.path(), "exchange")?;
        url.push_str(&format!(
            "?sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}",
            authority.root_path().display(),
            cert.display(),
            key.display()
        ));
    }
    Ok(Database {
        _cluster: cluster,
        _pki: pki,
        url,
    })
}

struct Server {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Key {
    api_key: String,
    secret: Vec<u8>,
}

fn ztx_bin(args: &Args) -> Result<PathBuf> {
    if let Some(p) = &args.ztx {
        return Ok(p.clone());
    }
    let me = std::env::current_exe()?;
    let candidate = me.with_file_name("ztx");
    if !candidate.exists() {
        bail!(
            "{} not found: build it first (cargo build --release -p ztx) or pass --ztx",
            candidate.display()
        );
    }
    Ok(candidate)
}

fn admin(ztx: &Path, data: &Path, args: &[&str]) -> Result<serde_json::Value> {
    let out = Command::new(ztx)
        .arg("admin")
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .arg("--json")
        .output()
        .context("running ztx admin")?;
    if !out.status.success() {
        bail!(
            "ztx admin {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start_server(
    ztx: &Path,
    audited: bool,
    database_url: Option<&str>,
) -> Result<(Server, SocketAddr, PathBuf)> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let config = dir.path().join("bench.toml");
    std::fs::write(&config, bench_config()?)?;
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let child = Command::new(ztx)
        .args(["serve", "--listen", &addr.to_string(), "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .args((!audited).then_some("--unaudited-benchmark-only"))
        .args(database_url.map(|url| format!("--database-url={url}")))
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting ztx serve")?;
    let server = Server { child, _dir: dir };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            bail!("the server did not start listening on {addr}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((server, addr, data))
}

/// The default configuration, with the order and request limits and the account-query
/// burst rule raised, so that neither the limiter nor the detector's ban is what is
/// measured.
fn bench_config() -> Result<String> {
    lift_limits(include_str!("../../../../config/default.toml"))
}

/// `config` with the limits [`bench_config`] lifts lifted; an error naming the first it
/// does not find (a renamed setting would otherwise leave its limit in place unseen).
fn lift_limits(config: &str) -> Result<String> {
    let mut text = config.to_string();
    for (from, to) in [
        ("orders_per_10s = 100\n", "orders_per_10s = 1000000000\n"),
        ("orders_per_day = 200000\n", "orders_per_day = 1000000000\n"),
        (
            "weight_per_minute = 6000\n",
            "weight_per_minute = 1000000000\n",
        ),
        (
            "[detection.account_query_burst]\nthreshold = 40\n",
            "[detection.account_query_burst]\nthreshold = 1000000000\n",
        ),
    ] {
        if !text.contains(from) {
            bail!("config/default.toml no longer has {from:?}: the load would hit a limit");
        }
        text = text.replace(from, to);
    }
    Ok(text)
}

fn setup_customers(ztx: &Path, data: &Path, n: usize) -> Result<Vec<Key>> {
    let mut keys = Vec::with_capacity(n);
    for i in 0..n {
        let c = admin(
            ztx,
            data,
            &[
                "customer",
                "create",
                "--email",
                &format!("load{i}@example.com"),
            ],
        )?;
        let id = c["customer_id"].to_string();
        let k = admin(
            ztx,
            data,
            &[
                "api-key",
                "create",
                "--customer",
                &id,
                "--permissions",
                "read,trade",
            ],
        )?;
        for (asset, amount) in [("USDT", "1000000000"), ("BTC", "100000")] {
            let f = admin(
                ztx,
                data,
                &[
                    "faucet",
                    "--customer",
                    &id,
                    "--asset",
                    asset,
                    "--amount",
                    amount,
                ],
            )?;
            if f["status"] != "credited" {
                bail!("faucet did not credit: {f}");
            }
        }
        keys.push(Key {
            api_key: k["api_key"].as_str().unwrap().to_string(),
            secret: k["secret"].as_str().unwrap().as_bytes().to_vec(),
        });
    }
    Ok(keys)
}

/// A small deterministic PRNG (splitmix64) so runs are repeatable.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[derive(Default)]
struct Tally {
    /// Accepted requests, orders and reads.
    ok: u64,
    /// Of which reads (`--reads`).
    reads: u64,
    errors: std::collections::BTreeMap<String, u64>,
    latency_us: Option<Histogram<u64>>,
    /// CPU time over the measured seconds, when asked for.
    cpu: Option<CpuTimes>,
}

/// CPU time in nanoseconds: of the server's threads by name (`/proc/<pid>/task/*/
/// schedstat`, tokio's workers under one name), of this process, and of the whole
/// machine (`/proc/stat`: busy and stolen, in clock ticks turned into nanoseconds).
#[derive(Debug, Default, Clone)]
struct CpuTimes {
    server: std::collections::BTreeMap<String, u64>,
    generator: u64,
    machine_busy: u64,
    machine_steal: u64,
    /// Bytes the server's process had written to storage (`/proc/<pid>/io`), and bytes
    /// and write requests the machine's whole disks completed (`/proc/diskstats`).
    server_written: u64,
    disk_written: u64,
    disk_writes: u64,
}

impl CpuTimes {
    fn read(pid: u32) -> CpuTimes {
        let mut times = CpuTimes::default();
        // Threads that exit between the two readings are not counted.
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for task in tasks.flatten() {
                let dir = task.path();
                let (Ok(comm), Ok(stat)) = (
                    std::fs::read_to_string(dir.join("comm")),
                    std::fs::read_to_string(dir.join("schedstat")),
                ) else {
                    continue;
                };
                let run: u64 = stat
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                *times.server.entry(comm.trim().to_owned()).or_default() += run;
            }
        }
        if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
            for task in tasks.flatten() {
                if let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) {
                    times.generator += stat
                        .split_whitespace()
                        .next()
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0);
                }
            }
        }
        // user nice system idle iowait irq softirq steal: ticks of 10 ms (USER_HZ 100).
        if let Ok(stat) = std::fs::read_to_string("/proc/stat")
            && let Some(line) = stat.lines().next()
        {
            let ticks: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|v| v.parse().ok())
                .collect();
            let tick_ns = 10_000_000;
            let busy = [0, 1, 2, 5, 6]
                .iter()
                .filter_map(|&i| ticks.get(i))
                .sum::<u64>();
            times.machine_busy = busy * tick_ns;
            times.machine_steal = ticks.get(7).copied().unwrap_or(0) * tick_ns;
        }
        if let Ok(io) = std::fs::read_to_string(format!("/proc/{pid}/io")) {
            times.server_written = io
                .lines()
                .find_map(|l| l.strip_prefix("write_bytes:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
        }
        // major minor name, then reads (4 fields), then writes completed, merged,
        // sectors (of 512 bytes); whole disks only (those under /sys/block), not their
        // partitions, and not loop or RAM devices.
        if let Ok(stats) = std::fs::read_to_string("/proc/diskstats") {
            for line in stats.lines() {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let Some(name) = fields.get(2) else { continue };
                if name.starts_with("loop")
                    || name.starts_with("ram")
                    || !Path::new("/sys/block").join(name).exists()
                {
                    continue;
                }
                let field = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
                times.disk_writes += field(7).unwrap_or(0);
                times.disk_written += field(9).unwrap_or(0) * 512;
            }
        }
        times
    }

    /// What was spent since `earlier`.
    fn since(&self, earlier: &CpuTimes) -> CpuTimes {
        CpuTimes {
            server: self
                .server
                .iter()
                .map(|(name, &t)| {
                    (
                        name.clone(),
                        t.saturating_sub(earlier.server.get(name).copied().unwrap_or(0)),
                    )
                })
                .collect(),
            generator: self.generator.saturating_sub(earlier.generator),
            machine_busy: self.machine_busy.saturating_sub(earlier.machine_busy),
            machine_steal: self.machine_steal.saturating_sub(earlier.machine_steal),
            server_written: self.server_written.saturating_sub(earlier.server_written),
            disk_written: self.disk_written.saturating_sub(earlier.disk_written),
            disk_writes: self.disk_writes.saturating_sub(earlier.disk_writes),
        }
    }

    /// Two lines: µs of CPU per request (`unit`: an order, or with `--reads` a request)
    /// by each server thread group, the server, the generator and the machine; then the
    /// bytes written per request, each line starting with `indent`.
    fn per_request(&self, requests: u64, unit: &str, indent: &str) -> String {
        let us = |ns: u64| ns as f64 / 1000.0 / requests.max(1) as f64;
        let mut parts: Vec<String> = self
            .server
            .iter()
            .filter(|(_, t)| **t > 0)
            .map(|(name, &t)| format!("{name} {:.1}", us(t)))
            .collect();
        parts.push(format!("server {:.1}", us(self.server.values().sum())));
        parts.push(format!("generator {:.1}", us(self.generator)));
        parts.push(format!("machine busy {:.1}", us(self.machine_busy)));
        parts.push(format!("stolen {:.1}", us(self.machine_steal)));
        let per = |n: u64| n as f64 / requests.max(1) as f64;
        format!(
            "{indent}CPU µs per {unit}: {}\n{indent}written per {unit}: server {:.0} B · disk {:.0} B \
             in {:.2} writes",
            parts.join(" · "),
            per(self.server_written),
            per(self.disk_written),
            per(self.disk_writes)
        )
    }
}

async fn connection(
    addr: SocketAddr,
    key: Arc<Key>,
    seed: u64,
    reads: u8,
    measuring: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> Result<Tally> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(io).await?;
    tokio::spawn(conn);
    let mut rng = Rng(seed);
    let mut tally = Tally {
        latency_us: Some(Histogram::new_with_bounds(1, 60_000_000, 3)?),
        ..Tally::default()
    };
    let mac = Hmac::<Sha256>::new_from_slice(&key.secret)?;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        // Drawn only for a mix, so that an orders-only run sends the orders it always did.
        let read = reads > 0 && rng.next() % 100 < u64::from(reads);
        let (method, path, query) = if read {
            (
                hyper::Method::GET,
                "/api/v3/account",
                format!("recvWindow=5000&timestamp={}", now_ms()),
            )
        } else {
            let side = if rng.next().is_multiple_of(2) {
                "BUY"
            } else {
                "SELL"
            };
            let price = 49_950 + rng.next() % 101;
            (
                hyper::Method::POST,
                "/api/v3/order",
                format!(
                    "symbol=BTCUSDT&side={side}&type=LIMIT&timeInForce=GTC&quantity=0.00100&price={price}.00&recvWindow=5000&timestamp={}",
                    now_ms()
                ),
            )
        };
        let mut m = mac.clone();
        m.update(query.as_bytes());
        let signature = hex::encode(m.finalize().into_bytes());
        let request = hyper::Request::builder()
            .method(method)
            .uri(format!("{path}?{query}&signature={signature}"))
            .header("host", addr.to_string())
            .header("x-mbx-apikey", &key.api_key)
            .body(Empty::<Bytes>::new())?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        let elapsed = started.elapsed();
        if !measuring.load(Ordering::Relaxed) {
            continue;
        }
        if status.is_success() {
            tally.ok += 1;
            tally.reads += u64::from(read);
            if let Some(h) = tally.latency_us.as_mut() {
                h.record(elapsed.as_micros().max(1) as u64)?;
            }
        } else {
            let text = String::from_utf8_lossy(&body)
                .chars()
                .take(120)
                .collect::<String>();
            *tally.errors.entry(format!("{status} {text}")).or_default() += 1;
        }
    }
    Ok(tally)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let ztx = ztx_bin(&args)?;
    if args.compare_audit == Some(0) || args.compare_postgres == Some(0) {
        bail!("--compare-audit and --compare-postgres need at least one round");
    }
    if let Some(rounds) = args.compare_postgres {
        return compare_postgres(&args, &ztx, rounds);
    }
    let Some(rounds) = args.compare_audit else {
        let (tally, measured) = run(&args, &ztx, !args.unaudited, args.postgres)?;
        report(&args, &tally, measured);
        return Ok(());
    };
    let mut without = Vec::new();
    let mut with = Vec::new();
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        let order = if round % 2 == 1 {
            [false, true]
        } else {
            [true, false]
        };
        for audited in order {
            let rates = if audited { &mut with } else { &mut without };
            let (tally, measured) = run(&args, &ztx, audited, args.postgres)?;
            let per_s = tally.ok as f64 / measured.as_secs_f64();
            let h = tally
                .latency_us
                .as_ref()
                .map(|h| h.value_at_quantile(0.99) as f64 / 1000.0);
            println!(
                "round {round} audit {}: {per_s:.0} {}s/s, p99 {:.2} ms, refused {}",
                if audited { "on " } else { "off" },
                unit(&args),
                h.unwrap_or(0.0),
                tally.errors.values().sum::<u64>()
            );
            if let Some(cpu) = &tally.cpu {
                println!("{}", cpu.per_request(tally.ok, unit(&args), "  "));
            }
            rates.push(per_s);
        }
        if let (Some(on), Some(off)) = (with.last(), without.last()) {
            ratios.push(on / off);
        }
    }
    let pairs: Vec<(f64, f64)> = without.iter().copied().zip(with.iter().copied()).collect();
    let (off, on) = (median(&mut without), median(&mut with));
    println!(
        "median: audit off {off:.0} {unit}s/s, audit on {on:.0} {unit}s/s: {:.1}% of the throughput",
        100.0 * on / off,
        unit = unit(&args)
    );
    // In round order (the median sorts them).
    let shown: Vec<String> = ratios
        .iter()
        .map(|r| format!("{:.1}%", 100.0 * r))
        .collect();
    let ratio = median(&mut ratios);
    println!(
        "each round, audit on against the run beside it: median {:.1}% (by round: {})",
        100.0 * ratio,
        shown.join(", ")
    );
    if let Some([medians, by_round]) = bootstrap(&pairs) {
        println!(
            "95% intervals ({BOOTSTRAP_RESAMPLES} resamples of the rounds): on/off of the medians \
             {:.1}-{:.1}%, median of the rounds' ratios {:.1}-{:.1}%",
            100.0 * medians.0,
            100.0 * medians.1,
            100.0 * by_round.0,
            100.0 * by_round.1
        );
    }
    Ok(())
}

/// What one request of the load is called in figures: an order, or with `--reads` a
/// request (of either kind).
fn unit(args: &Args) -> &'static str {
    if args.reads > 0 { "request" } else { "order" }
}

/// The median as these comparisons report it: the upper of the two middle values of an
/// even count.
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// How many times [`bootstrap`] resamples the rounds.
const BOOTSTRAP_RESAMPLES: usize = 10_000;

/// 95% percentile-bootstrap intervals of the two figures `--compare-audit` reports, the
/// ratio of the medians and the median of the rounds' ratios, from the rounds'
/// (unaudited, audited) throughputs: the rounds are drawn again with replacement, with a
/// fixed seed so that the same rounds give the same intervals. `None` below two rounds.
fn bootstrap(rounds: &[(f64, f64)]) -> Option<[(f64, f64); 2]> {
    use rand::{Rng, SeedableRng};
    if rounds.len() < 2 {
        return None;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x7a78);
    let mut medians = Vec::with_capacity(BOOTSTRAP_RESAMPLES);
    let mut by_round = Vec::with_capacity(BOOTSTRAP_RESAMPLES);
    let (mut off, mut on, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..BOOTSTRAP_RESAMPLES {
        off.clear();
        on.clear();
        ratios.clear();
        for _ in 0..rounds.len() {
            let (without, with) = rounds[rng.gen_range(0..rounds.len())];
            off.push(without);
            on.push(with);
            ratios.push(with / without);
        }
        medians.push(median(&mut on) / median(&mut off));
        by_round.push(median(&mut ratios));
    }
    let interval = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        (at(0.025), at(0.975))
    };
    Some([interval(&mut medians), interval(&mut by_round)])
}

fn compare_postgres(args: &Args, ztx: &Path, rounds: usize) -> Result<()> {
    let mut plain = Vec::new();
    let mut mtls = Vec::new();
    for round in 1..=rounds {
        for (mode, rates) in [(PgMode::Plain, &mut plain), (PgMode::Mtls, &mut mtls)] {
            let (tally, measured) = run(args, ztx, !args.unaudited, Some(mode))?;
            let per_s = tally.ok as f64 / measured.as_secs_f64();
            let p99 = tally
                .latency_us
                .as_ref()
                .map(|h| h.value_at_quantile(0.99) as f64 / 1000.0);
            println!(
                "round {round} postgres {mode:?}: {per_s:.0} {}s/s, p99 {:.2} ms, refused {}",
                unit(args),
                p99.unwrap_or(0.0),
                tally.errors.values().sum::<u64>()
            );
            rates.push(per_s);
        }
    }
    let (p, m) = (median(&mut plain), median(&mut mtls));
    println!(
        "median: plain {p:.0} {unit}s/s, mtls {m:.0} {unit}s/s: {:.1}% of the throughput",
        100.0 * m / p,
        unit = unit(args)
    );
    Ok(())
}

/// One measured run against a fresh server (on a fresh PostgreSQL cluster if asked).
fn run(
    args: &Args,
    ztx: &Path,
    audited: bool,
    postgres: Option<PgMode>,
) -> Result<(Tally, Duration)> {
    let database = postgres.map(database).transpose()?;
    let (server, addr, data) =
        start_server(ztx, audited, database.as_ref().map(|d| d.url.as_str()))?;
    eprintln!("server on {addr}; creating {} customers", args.customers);
    let keys: Vec<Arc<Key>> = setup_customers(ztx, &data, args.customers)?
        .into_iter()
        .map(Arc::new)
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()?;
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let (tally, measured) = runtime.block_on(async {
        let mut tasks = Vec::with_capacity(args.connections);
        for i in 0..args.connections {
            let key = keys[i % keys.len()].clone();
            tasks.push(tokio::spawn(connection(
                addr,
                key,
                i as u64 + 1,
                args.reads,
                measuring.clone(),
                stop.clone(),
            )));
        }
        tokio::time::sleep(Duration::from_secs(args.warmup_seconds)).await;
        let before = args.cpu.then(|| CpuTimes::read(server.child.id()));
        measuring.store(true, Ordering::Relaxed);
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs(args.seconds)).await;
        measuring.store(false, Ordering::Relaxed);
        let measured = t0.elapsed();
        let cpu = before.map(|b| CpuTimes::read(server.child.id()).since(&b));
        stop.store(true, Ordering::Relaxed);
        let mut total = Tally {
            latency_us: Some(Histogram::new_with_bounds(1, 60_000_000, 3).unwrap()),
            ..Tally::default()
        };
        for t in tasks {
            let t = t.await.unwrap().unwrap();
            total.ok += t.ok;
            total.reads += t.reads;
            for (k, v) in t.errors {
                *total.errors.entry(k).or_default() += v;
            }
            if let (Some(all), Some(h)) = (total.latency_us.as_mut(), t.latency_us.as_ref()) {
                all.add(h).unwrap();
            }
        }
        total.cpu = cpu;
        (total, measured)
    });
    drop(server);
    drop(database);
    Ok((tally, measured))
}

fn report(args: &Args, tally: &Tally, measured: Duration) {
    let Some(h) = tally.latency_us.as_ref() else {
        return;
    };
    let per_s = tally.ok as f64 / measured.as_secs_f64();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let store = match args.postgres {
        None => "embedded store",
        Some(PgMode::Plain) => "PostgreSQL over plain TCP",
        Some(PgMode::Mtls) => "PostgreSQL over mutual TLS",
    };
    let load = if args.reads > 0 {
        format!(
            "signed orders and balance queries ({}% queries)",
            args.reads
        )
    } else {
        "signed orders".to_string()
    };
    println!("ztx end-to-end {load} over HTTP (loopback), {store}, durable before reply");
    println!(
        "machine: {} cores, {cpu}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "connections {} · customers {} · generator threads {} · measured {:.1} s after {} s warm-up",
        args.connections,
        args.customers,
        args.threads,
        measured.as_secs_f64(),
        args.warmup_seconds
    );
    if args.reads > 0 {
        println!(
            "accepted requests: {} ({per_s:.0} requests/s): {} orders, {} balance queries",
            tally.ok,
            tally.ok - tally.reads,
            tally.reads
        );
    } else {
        println!("accepted orders: {} ({per_s:.0} orders/s)", tally.ok);
    }
    println!(
        "latency: p50 {:.2} ms · p99 {:.2} ms · p99.9 {:.2} ms · max {:.2} ms",
        h.value_at_quantile(0.50) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.value_at_quantile(0.999) as f64 / 1000.0,
        h.max() as f64 / 1000.0
    );
    for (k, v) in &tally.errors {
        println!("refused: {v} × {k}");
    }
    if let Some(cpu) = &tally.cpu {
        println!("{}", cpu.per_request(tally.ok, unit(args), ""));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_load_config_lifts_what_the_load_would_trip_and_nothing_else() {
        let text = bench_config().expect("the default config names every limit");
        for lifted in [
            "orders_per_10s = 1000000000\n",
            "orders_per_day = 1000000000\n",
            "weight_per_minute = 1000000000\n",
            "[detection.account_query_burst]\nthreshold = 1000000000\n",
        ] {
            assert!(text.contains(lifted), "{lifted:?} missing");
        }
        // The rules the load never trips keep their defaults.
        assert!(text.contains("[detection.bad_signatures_per_ip]\nthreshold = 10\n"));
        assert!(text.contains("[detection.outside_allow_list]\nthreshold = 3\n"));
    }

    #[test]
    fn a_config_without_a_limit_the_load_lifts_is_refused_by_name() {
        let default = include_str!("../../../../config/default.toml");
        let renamed = default.replace("orders_per_day = 200000\n", "orders_daily = 200000\n");
        let error = lift_limits(&renamed).unwrap_err().to_string();
        assert!(error.contains("orders_per_day"), "{error}");
        let unruled = default.replace("[detection.account_query_burst]", "[detection.other]");
        let error = lift_limits(&unruled).unwrap_err().to_string();
        assert!(error.contains("account_query_burst"), "{error}");
    }

    #[test]
    fn rounds_that_agree_give_an_interval_of_their_one_ratio() {
        let rounds = vec![(10_000.0, 9_000.0); 8];
        let [medians, by_round] = bootstrap(&rounds).expect("eight rounds");
        for (low, high) in [medians, by_round] {
            assert!((low - 0.9).abs() < 1e-12 && (high - 0.9).abs() < 1e-12);
        }
    }

    #[test]
    fn the_interval_holds_the_estimate_and_narrows_with_more_rounds() {
        // Ratios 0.80, 0.82, ..., 1.00 around unaudited rates that drift.
        let rounds: Vec<(f64, f64)> = (0..11)
            .map(|i| {
                let off = 10_000.0 + 500.0 * f64::from(i % 3);
                (off, off * (0.80 + 0.02 * f64::from(i)))
            })
            .collect();
        let mut ratios: Vec<f64> = rounds.iter().map(|(off, on)| on / off).collect();
        let estimate = median(&mut ratios);
        let [_, (low, high)] = bootstrap(&rounds).expect("eleven rounds");
        assert!(low < estimate && estimate < high, "{low} {estimate} {high}");
        let more: Vec<(f64, f64)> = rounds
            .iter()
            .copied()
            .cycle()
            .take(rounds.len() * 4)
            .collect();
        let [_, (more_low, more_high)] = bootstrap(&more).expect("44 rounds");
        assert!(more_high - more_low < high - low);
        assert!(bootstrap(&rounds[..1]).is_none());
    }
}
