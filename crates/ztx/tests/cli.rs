//! The `ztx` command line: clear errors for a bad configuration, a taken port, a data
//! directory that is not one, and refusals of what must not be done (the faucet outside
//! development mode, keys that may withdraw).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers: a panic is a failed test"
)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const ZTX: &str = env!("CARGO_BIN_EXE_ztx");

fn ztx(args: &[&str]) -> Output {
    Command::new(ZTX).args(args).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn default_config() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/default.toml"
    ))
    .unwrap()
}

/// Starts `ztx serve` and waits until it says it is serving; killed on drop.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(data: &Path, extra: &[&str]) -> (Server, String) {
    let mut child = Command::new(ZTX)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(addr) = line.split("http://").nth(1) {
                let _ = tx.send(addr.trim().to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("server did not start");
    (Server(child), addr)
}

#[test]
fn bad_config_is_refused_naming_the_file_and_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        default_config().replace("taker_fee_bps = 10", "taker_fee_bps = 20000"),
    )
    .unwrap();
    let out = ztx(&[
        "serve",
        "--data-dir",
        dir.path().join("d").to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("bad.toml") && e.contains("BTCUSDT") && e.contains("fees"),
        "{e}"
    );
}

#[test]
fn unparsable_config_is_refused_with_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("broken.toml");
    std::fs::write(&config, "mode = \"development\"\nlisten = [\n").unwrap();
    let out = ztx(&[
        "serve",
        "--data-dir",
        dir.path().join("d").to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(e.contains("broken.toml") && e.contains("line"), "{e}");
}

#[test]
fn data_dir_that_is_a_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let out = ztx(&["serve", "--data-dir", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is not a directory"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn admin_on_a_missing_data_dir_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here");
    let out = ztx(&[
        "admin",
        "--data-dir",
        missing.to_str().unwrap(),
        "customer",
        "create",
        "--email",
        "a@example.com",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    assert!(!missing.exists(), "admin must not create a data directory");
}

#[test]
fn taken_port_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().to_string();
    let out = ztx(&[
        "serve",
        "--data-dir",
        dir.path().join("d").to_str().unwrap(),
        "--listen",
        &port,
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("port is taken"), "{}", stderr(&out));
}

#[test]
fn faucet_is_refused_outside_development_mode() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let config = dir.path().join("prod.toml");
    std::fs::write(
        &config,
        default_config().replace("mode = \"development\"", "mode = \"production\""),
    )
    .unwrap();
    let (_server, _) = serve(&data, &["--config", config.to_str().unwrap()]);
    let d = data.to_str().unwrap();
    assert!(
        ztx(&[
            "admin",
            "--data-dir",
            d,
            "customer",
            "create",
            "--email",
            "p@example.com"
        ])
        .status
        .success()
    );
    let out = ztx(&[
        "admin",
        "--data-dir",
        d,
        "faucet",
        "--customer",
        "1",
        "--asset",
        "USDT",
        "--amount",
        "5",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("development only"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn data_created_in_one_mode_is_refused_in_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    drop(serve(&data, &[]));
    let config = dir.path().join("prod.toml");
    std::fs::write(
        &config,
        default_config().replace("mode = \"development\"", "mode = \"production\""),
    )
    .unwrap();
    let out = ztx(&[
        "serve",
        "--data-dir",
        data.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("mode"), "{}", stderr(&out));
}

#[test]
fn keys_that_may_withdraw_are_refused_and_bad_input_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let (_server, _) = serve(&data, &[]);
    let d = data.to_str().unwrap();
    assert!(
        ztx(&[
            "admin",
            "--data-dir",
            d,
            "customer",
            "create",
            "--email",
            "w@example.com"
        ])
        .status
        .success()
    );
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "api-key",
                "create",
                "--customer",
                "1",
                "--permissions",
                "read,withdraw",
            ],
            "withdraw",
        ),
        (
            &[
                "api-key",
                "create",
                "--customer",
                "1",
                "--permissions",
                "read,fly",
            ],
            "permissions",
        ),
        (
            &[
                "api-key",
                "create",
                "--customer",
                "9",
                "--permissions",
                "read",
            ],
            "customer 9 does not exist",
        ),
        (
            &[
                "api-key",
                "create",
                "--customer",
                "1",
                "--permissions",
                "read",
                "--ip",
                "1.2.3",
            ],
            "not an IP address",
        ),
        (
            &[
                "faucet",
                "--customer",
                "1",
                "--asset",
                "USDT",
                "--amount",
                "1.123456789",
            ],
            "decimal places",
        ),
        (
            &[
                "faucet",
                "--customer",
                "1",
                "--asset",
                "DOGE",
                "--amount",
                "1",
            ],
            "unknown asset",
        ),
        (
            &[
                "faucet",
                "--customer",
                "1",
                "--asset",
                "USDT",
                "--amount",
                "-5",
            ],
            "amount",
        ),
        (
            &["customer", "create", "--email", "not-an-address"],
            "not an e-mail address",
        ),
    ];
    for (args, expected) in cases {
        let mut full = vec!["admin", "--data-dir", d];
        full.extend_from_slice(args);
        let out = ztx(&full);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn the_faucet_credits_once_and_json_is_one_object() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let (_server, addr) = serve(&data, &[]);
    let d = data.to_str().unwrap();
    let out = ztx(&[
        "admin",
        "--data-dir",
        d,
        "customer",
        "create",
        "--email",
        "Bob@Example.com",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["customer_id"], 1);
    assert_eq!(v["email"], "bob@example.com");
    let again = ztx(&[
        "admin",
        "--data-dir",
        d,
        "customer",
        "create",
        "--email",
        "bob@EXAMPLE.com",
    ]);
    assert!(
        !again.status.success(),
        "the same address in other case is the same customer"
    );
    let started = Instant::now();
    let out = ztx(&[
        "admin",
        "--data-dir",
        d,
        "faucet",
        "--customer",
        "1",
        "--asset",
        "BTC",
        "--amount",
        "0.5",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "credited", "{v}");
    assert_eq!(v["amount"], "0.50000000");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!addr.is_empty());
}

#[test]
fn serves_on_postgresql() {
    let Some(cluster) = ztx_store::testing::PgCluster::shared().unwrap() else {
        return; // the harness said loudly why (and fails under CI=true)
    };
    let url = cluster.fresh_database().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let (_server, addr) = serve(&data, &["--database-url", &url]);
    let d = data.to_str().unwrap();
    let admin = |args: &[&str]| {
        let mut full = vec!["admin", "--data-dir", d, "--database-url", &url];
        full.extend_from_slice(args);
        ztx(&full)
    };
    assert!(
        admin(&["customer", "create", "--email", "pg@example.com"])
            .status
            .success()
    );
    let out = admin(&[
        "faucet",
        "--customer",
        "1",
        "--asset",
        "USDT",
        "--amount",
        "12.5",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(v["status"], "credited", "{}", stderr(&out));
    // The server answers over HTTP too.
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.write_all(b"GET /api/v3/ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
