//! The header every benchmark prints: the exact command, the build and the machine
//! (CPU model and count from `/proc/cpuinfo`, usable parallelism, kernel, load average), so
//! a result can be read with its context and reproduced.

use std::fs;

/// The first value of `key` in `/proc/cpuinfo`, and how many processors it lists.
fn cpuinfo(key: &str) -> (Option<String>, usize) {
    let Ok(text) = fs::read_to_string("/proc/cpuinfo") else {
        return (None, 0);
    };
    let value = text.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_string())
    });
    let processors = text
        .lines()
        .filter(|l| {
            l.split_once(':')
                .is_some_and(|(k, _)| k.trim() == "processor")
        })
        .count();
    (value, processors)
}

/// `/proc/loadavg`'s 1, 5 and 15 minute load: other work on the machine skews results.
pub fn loadavg() -> String {
    let text = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let fields: Vec<&str> = text.split_whitespace().take(3).collect();
    fields.join(" ")
}

pub fn print_header() {
    let args: Vec<String> = std::env::args().collect();
    println!("command: {}", args.join(" "));
    let build = if cfg!(debug_assertions) {
        "DEBUG build (debug assertions on) - numbers are meaningless, use --release"
    } else {
        "release build"
    };
    println!("build: {build}, ztx-bench {}", env!("CARGO_PKG_VERSION"));
    let (model, processors) = cpuinfo("model name");
    let (mhz, _) = cpuinfo("cpu MHz");
    let (cache, _) = cpuinfo("cache size");
    let nproc = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "machine: cpu \"{}\", {} processors in /proc/cpuinfo, nproc {}, {} MHz, cache {}",
        model.as_deref().unwrap_or("unknown"),
        processors,
        nproc,
        mhz.as_deref().unwrap_or("?"),
        cache.as_deref().unwrap_or("?"),
    );
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "kernel: {}; single-threaded run (one core of the above); load average at start {}",
        kernel.trim(),
        loadavg()
    );
}
