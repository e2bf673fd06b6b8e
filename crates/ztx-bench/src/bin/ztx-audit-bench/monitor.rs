//! `monitor`: what the security monitor spends on each entry of the log, one core.
//!
//! The monitor (`ztx-api`'s `monitor.rs`) takes every committed entry, decodes it, writes
//! it as an OCSF event to the rotating file and runs the detection rules on it. This
//! times those steps on `--entries` order entries (the shape `ztx-load` makes the API
//! log), first the whole path as the monitor runs it, then each step alone (the event
//! also through `serde_json`, as it was written before its own writer), and prints
//! nanoseconds an entry and the bytes an event takes in the file. Each event written is
//! parsed back once before the timing and checked to name its entry, so a serializer
//! that writes nothing or garbage stops the benchmark.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use ztx_audit::Entry;
use ztx_monitor::{DetectionConfig, Detector, Product, RotatingFile, ocsf};

use crate::log::{ORIGIN, Orders, Writer, log_key};
use crate::{median, nanos};

/// Options of the `monitor` subcommand.
#[derive(Debug, clap::Args)]
pub struct MonitorArgs {
    /// Entries per round.
    #[arg(long, default_value_t = 500_000)]
    entries: u64,
    /// Rounds; the median is reported.
    #[arg(long, default_value_t = 5)]
    rounds: u64,
    /// Where the OCSF files go (default: the system's temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Seed of the entry generator.
    #[arg(long, default_value_t = 0xA0D1_7003)]
    seed: u64,
}

fn product() -> Product {
    Product {
        name: "ztx".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        log_name: ORIGIN.into(),
    }
}

pub fn run(args: &MonitorArgs) -> Result<()> {
    if args.entries == 0 || args.rounds == 0 {
        bail!("--entries and --rounds must be positive");
    }
    // The rows as the writer commits them: chained, encoded, hashed.
    let mut orders = Orders::new(args.seed);
    let entries: Vec<Entry> = (0..args.entries).map(|_| orders.next_entry()).collect();
    let writer = Writer::new(log_key()?);
    let rows = writer.prepare(entries, orders.now_ms(), false)?.append.rows;
    let product = product();
    let now_ms = orders.now_ms();

    let dir = crate::scratch_dir(args.dir.as_deref())?;
    check_events(&rows, &product, dir.path())?;

    let (mut whole, mut decode, mut observe) = (vec![], vec![], vec![]);
    let (mut event, mut event_serde) = (vec![], vec![]);
    let (mut serialize, mut serialize_serde) = (vec![], vec![]);
    let mut bytes_per_event = 0.0;
    for round in 0..args.rounds {
        let round_dir = dir.path().join(format!("round-{round}"));
        // As the monitor runs it: decode, write the event, observe.
        let (mut file, _) = RotatingFile::open(&round_dir, 64 << 20, 10)?;
        let mut detector = Detector::new(DetectionConfig::default());
        let start = Instant::now();
        for row in &rows {
            let entry = Entry::decode(&row.entry)?;
            file.append_event(&ocsf::Event::new(row.index, &entry, &product))?;
            std::hint::black_box(detector.observe(row.index, &entry, now_ms));
        }
        file.flush()?;
        whole.push(crate::ratio(nanos(start.elapsed()), args.entries));
        drop(file);
        bytes_per_event = crate::ratio(written(&round_dir)?, args.entries);

        // Each step alone.
        let start = Instant::now();
        let decoded: Vec<Entry> = rows
            .iter()
            .map(|row| Entry::decode(&row.entry))
            .collect::<Result<_, _>>()?;
        decode.push(crate::ratio(nanos(start.elapsed()), args.entries));

        // Each writer of the lines: into the file, then into one reused buffer alone.
        let alone = dir.path().join(format!("events-{round}"));
        let events = || {
            rows.iter()
                .zip(&decoded)
                .map(|(row, e)| ocsf::Event::new(row.index, e, &product))
        };
        let own: WriteLine = |line, event| {
            event.write_json(line);
            Ok(())
        };
        let serde: WriteLine = |line, event| serde_json::to_writer(line, event);
        // Which writer goes first alternates: the first file written in a round took
        // longer whichever wrote it (the page cache), so neither gets that round's luck.
        let mut firsts = [(own, &mut event), (serde, &mut event_serde)];
        if round % 2 == 1 {
            firsts.reverse();
        }
        for (n, (write, times)) in firsts.into_iter().enumerate() {
            if n > 0 {
                std::fs::remove_dir_all(&alone)?;
            }
            times.push(to_file(&alone, events(), write)?);
        }
        serialize.push(to_buffer(events(), own)?);
        serialize_serde.push(to_buffer(events(), serde)?);

        let mut detector = Detector::new(DetectionConfig::default());
        let start = Instant::now();
        for (row, entry) in rows.iter().zip(&decoded) {
            std::hint::black_box(detector.observe(row.index, entry, now_ms));
        }
        observe.push(crate::ratio(nanos(start.elapsed()), args.entries));
        // Each round's files go before the next, as rotation would remove them.
        std::fs::remove_dir_all(&round_dir)?;
        std::fs::remove_dir_all(&alone)?;
    }
    let show = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("| step | ns an entry (median) | rounds |");
    println!("|---|---:|---|");
    for (name, v) in [
        ("the monitor's whole path", &whole),
        ("decode the entry", &decode),
        ("OCSF event to the file", &event),
        ("OCSF event to the file through serde_json", &event_serde),
        ("OCSF line alone (no file)", &serialize),
        ("OCSF line alone through serde_json", &serialize_serde),
        ("detection rules", &observe),
    ] {
        println!("| {name} | {:.0} | {} |", median(v), show(v));
    }
    println!("OCSF event: {bytes_per_event:.0} bytes an entry in the file");
    Ok(())
}

/// How a benchmark writes an event's line.
type WriteLine = fn(&mut Vec<u8>, &ocsf::Event<'_>) -> serde_json::Result<()>;

/// Nanoseconds an event to write `events` into a fresh file in `dir`, each line by `write`.
fn to_file<'a>(
    dir: &std::path::Path,
    events: impl ExactSizeIterator<Item = ocsf::Event<'a>>,
    write: WriteLine,
) -> Result<f64> {
    let count = u64::try_from(events.len())?;
    let (mut file, _) = RotatingFile::open(dir, 64 << 20, 10)?;
    let start = Instant::now();
    for event in events {
        file.append_with(|line| write(line, &event).map_err(std::io::Error::other))?;
    }
    file.flush()?;
    Ok(crate::ratio(nanos(start.elapsed()), count))
}

/// Nanoseconds an event to write each of `events` by `write` into one reused buffer.
fn to_buffer<'a>(
    events: impl ExactSizeIterator<Item = ocsf::Event<'a>>,
    write: WriteLine,
) -> Result<f64> {
    let count = u64::try_from(events.len())?;
    let mut line = Vec::with_capacity(4096);
    let start = Instant::now();
    for event in events {
        line.clear();
        write(&mut line, &event)?;
        std::hint::black_box(&line);
    }
    Ok(crate::ratio(nanos(start.elapsed()), count))
}

/// The bytes of the OCSF files in `dir`.
fn written(dir: &std::path::Path) -> Result<u64> {
    let mut total = 0;
    for file in std::fs::read_dir(dir)? {
        total += file?.metadata()?.len();
    }
    Ok(total)
}

/// Writes the first rows' events and reads them back: each line must be an OCSF event of
/// its entry (class, index, time), or the timings below would measure nothing.
fn check_events(
    rows: &[ztx_store::AuditRow],
    product: &Product,
    dir: &std::path::Path,
) -> Result<()> {
    let check_dir = dir.join("check");
    let sample = rows.get(..rows.len().min(1000)).unwrap_or_default();
    let (mut file, _) = RotatingFile::open(&check_dir, 64 << 20, 10)?;
    for row in sample {
        file.append_event(&ocsf::Event::new(
            row.index,
            &Entry::decode(&row.entry)?,
            product,
        ))?;
    }
    file.flush()?;
    drop(file);
    let text = std::fs::read_to_string(check_dir.join(ztx_monitor::sink::FILE_NAME))?;
    let mut lines = 0;
    for (line, row) in text.lines().zip(sample) {
        let event: serde_json::Value =
            serde_json::from_str(line).context("an OCSF line is not JSON")?;
        let entry = Entry::decode(&row.entry)?;
        let (class, _, _) = ocsf::classify(&entry);
        let number = |path: &str| event.pointer(path).and_then(serde_json::Value::as_u64);
        if number("/class_uid") != Some(u64::from(class.uid()))
            || number("/metadata/sequence") != Some(row.index)
            || number("/time") != Some(entry.time_ms)
        {
            bail!(
                "the OCSF event of entry {} does not describe it: {line}",
                row.index
            );
        }
        lines += 1;
    }
    if lines != sample.len() {
        bail!("{} events written, {} read back", sample.len(), lines);
    }
    std::fs::remove_dir_all(&check_dir)?;
    Ok(())
}
