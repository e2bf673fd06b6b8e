//! End to end with real Binance clients: starts `ztx serve` on a free loopback port, creates
//! customers and API keys (HMAC, read-only, IP-restricted, Ed25519), funds them through the
//! faucet, and runs `tests/python/e2e_clients.py`, which drives the server with the official
//! Binance Python connector (`binance-connector`) and with `ccxt`.
//!
//! The clients are pinned in `tests/python/requirements.txt` and installed from PyPI into a
//! virtual environment cached outside the repository (`$ZTX_E2E_VENV_DIR`, default
//! `$HOME/.cache/ztx-e2e-venv/<hash>`), keyed by a hash of that file and of the Python
//! version, so a changed pin builds a new one and later runs reuse it.
//!
//! A second test sends a customer's security notice through a real SMTP server
//! (`aiosmtpd`, from the same environment) and reads the message it stored.
//!
//! When Python or PyPI is not available the tests print `SKIPPED: …` and pass, unless
//! `CI=true`, where they fail.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers: a panic is a failed test"
)]

use std::fs::{self, File};
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const ZTX: &str = env!("CARGO_BIN_EXE_ztx");
const PYTHON_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python");
/// Part of the venv's cache key; `include_str!` also rebuilds the test when a pin changes.
const REQUIREMENTS: &str = include_str!("python/requirements.txt");
const SERVER_START: Duration = Duration::from_secs(20);
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

#[test]
fn binance_connector_and_ccxt_against_a_real_server() {
    let started = Instant::now();
    let Some(python) = venv_python() else {
        return;
    };
    eprintln!(
        "e2e: Python environment ready in {:.1?}: {}",
        started.elapsed(),
        python.display()
    );

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, dir.path());
    let admin = |args: &[&str]| server.admin(args);

    let customer = |email: &str| {
        admin(&["customer", "create", "--email", email, "--json"])["customer_id"]
            .as_u64()
            .unwrap()
            .to_string()
    };
    let (a, b, e) = (
        customer("a@e2e.test"),
        customer("b@e2e.test"),
        customer("e@e2e.test"),
    );
    let key = |customer: &str, permissions: &str, extra: &[&str]| {
        let mut args = vec![
            "api-key",
            "create",
            "--customer",
            customer,
            "--permissions",
            permissions,
            "--json",
        ];
        args.extend_from_slice(extra);
        let key = admin(&args);
        assert!(key["api_key"].is_string(), "{key}");
        key
    };
    let key_a = key(&a, "read,trade", &[]);
    let key_b = key(&b, "read,trade", &[]);
    let read_only = key(&a, "read", &[]);
    // Never contacted: only an allowlist entry that 127.0.0.1 does not match.
    let ip_restricted = key(&a, "read,trade", &["--ip", "10.9.9.9"]);

    let keys = dir.path().join("keys");
    fs::create_dir(&keys).unwrap();
    let keygen = run_python(&python, &["keygen", keys.to_str().unwrap()], dir.path());
    assert!(keygen.status.success(), "keygen failed: {}", show(&keygen));
    let public = keys.join("ed25519_public.pem");
    let mut key_e = key(
        &e,
        "read,trade",
        &["--ed25519-public-key", public.to_str().unwrap()],
    );
    assert!(key_e["secret"].is_null(), "{key_e}");
    key_e["private_key_pem"] =
        Value::String(fs::read_to_string(keys.join("ed25519_private.pem")).unwrap());

    for (customer, asset, amount) in [
        (&a, "USDT", "100000"),
        (&b, "BTC", "2"),
        (&e, "USDT", "1000"),
    ] {
        let credited = admin(&[
            "faucet",
            "--customer",
            customer,
            "--asset",
            asset,
            "--amount",
            amount,
            "--json",
        ]);
        assert_eq!(credited["status"], "credited", "{credited}");
    }

    let config = dir.path().join("clients.json");
    let body = json!({
        "base_url": server.base_url,
        "a": key_a,
        "b": key_b,
        "read_only": read_only,
        "ip_restricted": ip_restricted,
        "e": key_e,
    });
    fs::write(&config, serde_json::to_vec_pretty(&body).unwrap()).unwrap();

    let script_started = Instant::now();
    let (ok, output) = run_script(&python, &config, dir.path());
    if ok {
        println!("{output}");
    }
    eprintln!(
        "e2e: script ran in {:.1?}; whole test {:.1?}",
        script_started.elapsed(),
        started.elapsed()
    );
    assert!(
        ok,
        "the Python clients found problems (server log: {}):\n{output}\n--- server stderr ---\n{}",
        server.log.display(),
        fs::read_to_string(&server.log).unwrap_or_default()
    );
}

/// The shipped configuration, which the e-mail test points at its relay.
const DEFAULT_CONFIG: &str = include_str!("../../../config/default.toml");
const MAIL_TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn a_security_notice_reaches_the_customer_through_a_real_smtp_server() {
    let Some(python) = venv_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The relay: aiosmtpd, keeping each message it takes in a maildir.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let maildir = dir.path().join("mail");
    let smtpd = Command::new(&python)
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(&maildir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(dir.path().join("smtpd.stderr")).unwrap())
        .spawn()
        .unwrap();
    let _smtpd = Killed(smtpd);
    let relay: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + SERVER_START;
    while TcpStream::connect_timeout(&relay, Duration::from_millis(500)).is_err() {
        assert!(
            Instant::now() < deadline,
            "aiosmtpd does not listen on {relay}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The server sends through it (plain SMTP on this machine: a development setting).
    let data = dir.path().join("data");
    fs::create_dir_all(&data).unwrap();
    let config = DEFAULT_CONFIG
        .replace(
            "smtp = \"\"",
            &format!("smtp = \"smtp://127.0.0.1:{port}\""),
        )
        .replace(
            "from = \"ztx security <security@localhost>\"",
            "from = \"ztx e2e <security@e2e.test>\"",
        )
        .replace("allow_plaintext = false", "allow_plaintext = true");
    assert!(config.contains(&format!("127.0.0.1:{port}")));
    fs::write(data.join("config.toml"), config).unwrap();
    let server = Server::start(&data, dir.path());
    let customer = server.admin(&[
        "customer",
        "create",
        "--email",
        "notice.me@e2e.test",
        "--json",
    ]);
    let customer = customer["customer_id"].as_u64().unwrap().to_string();
    let key = server.admin(&[
        "api-key",
        "create",
        "--customer",
        &customer,
        "--permissions",
        "read",
        "--json",
    ]);
    let api_key = key["api_key"].as_str().unwrap();

    // Five requests with her key but a forged signature: detection freezes the key and
    // notifies her.
    let addr: SocketAddr = server
        .base_url
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    for _ in 0..5 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let answer = http_get(
            addr,
            &format!(
                "/api/v3/account?timestamp={now}&signature={}",
                "0".repeat(64)
            ),
            &[("X-MBX-APIKEY", api_key)],
        );
        assert!(answer.contains("-1022"), "{answer}");
    }

    // The message arrives at the relay, addressed to her, saying what happened.
    let new = maildir.join("new");
    let deadline = Instant::now() + MAIL_TIMEOUT;
    let message = loop {
        let found: Vec<PathBuf> = fs::read_dir(&new)
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        if let Some(path) = found.first() {
            break fs::read_to_string(path).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "no e-mail within {MAIL_TIMEOUT:?}; server log:\n{}",
            fs::read_to_string(&server.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(message.contains("To: notice.me@e2e.test"), "{message}");
    assert!(
        message.contains("From: \"ztx e2e\" <security@e2e.test>"),
        "{message}"
    );
    assert!(
        message.contains("Subject: Security notice about your account"),
        "{message}"
    );
    assert!(message.contains("frozen"), "{message}");
    // Delivered once.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(fs::read_dir(&new).unwrap().count(), 1);
}

/// A child process killed when dropped, also when the test panics.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET target` over HTTP/1.1 with `headers`; the whole answer as text.
fn http_get(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> String {
    use std::io::Read as _;
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut request = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// A running `ztx serve`; killed when dropped, also when the test panics.
struct Server {
    child: Child,
    data: PathBuf,
    log: PathBuf,
    base_url: String,
}

impl Server {
    fn start(data: &Path, scratch: &Path) -> Self {
        let log = scratch.join("server.stderr");
        let mut child = Command::new(ZTX)
            .args(["serve", "--data-dir"])
            .arg(data)
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        // Reads stdout to the end so that the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // After start-up nobody listens: the send fails and draining goes on.
                let _ = tx.send(line);
            }
        });
        let mut server = Server {
            child,
            data: data.to_path_buf(),
            log,
            base_url: String::new(),
        };
        let deadline = Instant::now() + SERVER_START;
        let addr: SocketAddr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(url) = line.split("http://").nth(1)
                        && line.contains("serving")
                    {
                        break url.trim().parse().unwrap();
                    }
                }
                Err(_) => panic!(
                    "ztx serve did not report listening within {SERVER_START:?}; stderr:\n{}",
                    fs::read_to_string(&server.log).unwrap_or_default()
                ),
            }
        };
        // It prints after binding; a connection proves it.
        while TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err() {
            assert!(
                Instant::now() < deadline,
                "ztx serve does not accept connections on {addr}"
            );
            assert!(
                server.child.try_wait().unwrap().is_none(),
                "ztx serve exited"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server.base_url = format!("http://{addr}");
        server
    }

    /// Runs `ztx admin --data-dir DATA ARGS…` and parses its JSON output.
    fn admin(&self, args: &[&str]) -> Value {
        let out = Command::new(ZTX)
            .arg("admin")
            .arg("--data-dir")
            .arg(&self.data)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "ztx admin {args:?}: {}", show(&out));
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("ztx admin {args:?}: not JSON ({e}): {}", show(&out)))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn show(out: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Without Python or PyPI: a loud skip, or a failure on CI.
fn unavailable(why: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true and cannot install binance-connector/ccxt from PyPI: {why}"
    );
    // Straight to the process's stderr, past the test harness's capture.
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED: cannot install binance-connector/ccxt from PyPI: {why}\n"
    );
}

/// FNV-1a: a stable hash for the cache key (std's hasher may change between releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn venv_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("ZTX_E2E_VENV_DIR") {
        return PathBuf::from(dir);
    }
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(".cache")
        .join("ztx-e2e-venv")
}

fn bin_python(venv: &Path) -> PathBuf {
    venv.join("bin").join("python")
}

/// Whether the clients import in this venv.
fn usable(python: &Path) -> bool {
    Command::new(python)
        .args([
            "-c",
            "import binance.spot, ccxt, cryptography, requests, aiosmtpd",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The venv's python, made on first use; None (after reporting) when it cannot be made.
fn venv_python() -> Option<PathBuf> {
    let version = match Command::new("python3").arg("--version").output() {
        Ok(out) if out.status.success() => {
            let mut v = out.stdout;
            v.extend_from_slice(&out.stderr);
            v
        }
        Ok(out) => {
            unavailable(&format!("python3 --version failed: {}", show(&out)));
            return None;
        }
        Err(e) => {
            unavailable(&format!("no python3: {e}"));
            return None;
        }
    };
    let mut keyed = REQUIREMENTS.as_bytes().to_vec();
    keyed.extend_from_slice(&version);
    let root = venv_root();
    let venv = root.join(format!("{:016x}", fnv1a(&keyed)));
    let python = bin_python(&venv);
    if usable(&python) {
        return Some(python);
    }
    let _ = fs::remove_dir_all(&venv);
    fs::create_dir_all(&root).unwrap();
    // Built beside its final place and renamed when complete, so an interrupted or
    // concurrent build never leaves a half-made venv under the final name.
    let partial = root.join(format!(
        "{}.partial-{}",
        venv.file_name().unwrap().to_string_lossy(),
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&partial);
    eprintln!(
        "e2e: creating the Python environment {} (once per requirements.txt)",
        venv.display()
    );
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&partial)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    if !made.status.success() {
        let _ = fs::remove_dir_all(&partial);
        unavailable(&format!("python3 -m venv failed: {}", show(&made)));
        return None;
    }
    let installed = Command::new(bin_python(&partial))
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--retries",
            "2",
            "--timeout",
            "30",
            "-r",
        ])
        .arg(Path::new(PYTHON_DIR).join("requirements.txt"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    if !installed.status.success() {
        let _ = fs::remove_dir_all(&partial);
        unavailable(&format!("pip install failed: {}", show(&installed)));
        return None;
    }
    if fs::rename(&partial, &venv).is_err() {
        // Another run finished first: use its venv.
        let _ = fs::remove_dir_all(&partial);
    }
    assert!(
        usable(&python),
        "the new venv {} cannot import the clients",
        venv.display()
    );
    Some(python)
}

fn python_command(python: &Path, scratch: &Path) -> Command {
    let mut cmd = Command::new(python);
    cmd.arg("-u")
        .arg(Path::new(PYTHON_DIR).join("e2e_clients.py"))
        .current_dir(scratch)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONNOUSERSITE", "1")
        .env_remove("PYTHONPATH")
        // Loopback traffic must not go through a proxy from the environment.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .stdin(Stdio::null());
    cmd
}

fn run_python(python: &Path, args: &[&str], scratch: &Path) -> Output {
    python_command(python, scratch).args(args).output().unwrap()
}

/// Runs the checks with a time limit; returns (success, stdout and stderr).
fn run_script(python: &Path, config: &Path, scratch: &Path) -> (bool, String) {
    let out_path = scratch.join("clients.out");
    let out = File::create(&out_path).unwrap();
    let mut child = python_command(python, scratch)
        .arg("run")
        .arg(config)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = fs::read_to_string(&out_path).unwrap_or_default();
    match status {
        Some(status) => (status.success(), format!("{output}\n(exit: {status})")),
        None => (
            false,
            format!("{output}\n(killed after {SCRIPT_TIMEOUT:?}: the script hung)"),
        ),
    }
}
