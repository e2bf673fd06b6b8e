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

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

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
    fails_with(&out, "is not a directory");
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
    fails_with(&out, "does not exist");
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
    fails_with(&out, "port is taken");
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
    fails_with(&out, "development only");
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
    fails_with(&out, "mode");
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
fn database_setup_is_refused_where_there_are_no_roles() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ztx.sqlite");
    let out = ztx(&[
        "database",
        "setup",
        "--database-url",
        path.to_str().unwrap(),
        "--service-role",
        "ztx_service",
    ]);
    fails_with(&out, "must be a postgres:// URL");
    assert!(!path.exists(), "the refused command created a store");
}

#[test]
fn serves_on_postgresql() {
    // As an operator runs it: the owner sets the schema up, the server runs as a role
    // that may only add to and read the audit log.
    let Some((_, _, url)) = postgres_for_serving() else {
        return;
    };
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
    // The service role reads the log it wrote: the export verifies.
    let file = dir.path().join("log.export");
    succeeds(&[
        "audit",
        "export",
        "--data-dir",
        d,
        "--database-url",
        &url,
        "--out",
        file.to_str().unwrap(),
    ]);
    let key =
        String::from_utf8(succeeds(&["audit", "public-key", "--data-dir", d]).stdout).unwrap();
    let verify = ztx(&[
        "audit",
        "verify",
        file.to_str().unwrap(),
        "--public-key",
        key.trim(),
    ]);
    assert!(verify.status.success(), "{}", stderr(&verify));
}

/// Invariant 8: a crash at any instant loses no acknowledged order. Orders stream in from
/// several connections; the server is killed with SIGKILL mid-stream; after a restart
/// every order that was acknowledged is there, with the state it was acknowledged in or a
/// later one.
#[test]
fn a_crash_loses_no_acknowledged_order() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let (mut server, addr) = serve(&data, &[]);
    let d = data.to_str().unwrap().to_string();
    let (key, secret) = customer_with_key(&d, "crash@example.com");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (addr, key, secret, stop) = (addr.clone(), key.clone(), secret.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let side = if n.is_multiple_of(2) { "BUY" } else { "SELL" };
                    let price = 50_000 + (n * 7 + w) % 20;
                    let q = format!(
                        "symbol=BTCUSDT&side={side}&type=LIMIT&timeInForce=GTC&quantity=0.001&price={price}&newClientOrderId=w{w}n{n}"
                    );
                    let result = std::panic::catch_unwind(|| http(&addr, "POST", &signed("/api/v3/order", &q, &secret), Some(&key)));
                    match result {
                        Ok((200, body)) => {
                            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                            acked.push(v["orderId"].as_u64().unwrap());
                        }
                        _ => break, // the server is gone
                    }
                }
                acked
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    // SIGKILL: no shutdown path runs.
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked: Vec<u64> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(
        acked.len() > 10,
        "too few orders before the crash: {}",
        acked.len()
    );

    let (_server, addr) = serve(&data, &[]);
    let mut stored = std::collections::BTreeSet::new();
    let mut from = 1u64;
    loop {
        let (status, body) = http(
            &addr,
            "GET",
            &signed(
                "/api/v3/allOrders",
                &format!("symbol=BTCUSDT&orderId={from}&limit=1000"),
                &secret,
            ),
            Some(&key),
        );
        assert_eq!(status, 200, "{body}");
        let page: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        let Some(last) = page.last().and_then(|o| o["orderId"].as_u64()) else {
            break;
        };
        stored.extend(page.iter().filter_map(|o| o["orderId"].as_u64()));
        if page.len() < 1000 {
            break;
        }
        from = last + 1;
    }
    let lost: Vec<&u64> = acked.iter().filter(|id| !stored.contains(id)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged orders lost after the crash: {lost:?}",
        lost.len()
    );
}

#[test]
fn secrets_never_reach_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let log = dir.path().join("serve.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let (server, addr) = serve_logging(&data, &[], Stdio::from(log_file), "trace");
    let d = data.to_str().unwrap();
    let (key, secret) = customer_with_key(d, "log@example.com");
    // A good request, a bad signature and a refused order, each through every log path.
    let q = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=50000";
    assert_eq!(
        http(
            &addr,
            "POST",
            &signed("/api/v3/order", q, &secret),
            Some(&key)
        )
        .0,
        200
    );
    assert_eq!(
        http(
            &addr,
            "POST",
            &signed("/api/v3/order", q, "wrong"),
            Some(&key)
        )
        .0,
        400
    );
    assert_eq!(
        http(
            &addr,
            "POST",
            &signed("/api/v3/order", &q.replace("0.001", "99999"), &secret),
            Some(&key)
        )
        .0,
        400
    );
    drop(server);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.is_empty(),
        "trace logging produced nothing: the check would be empty"
    );
    assert!(
        !text.contains(&secret),
        "the HMAC secret appeared in the server log"
    );
    let master = std::fs::read_to_string(data.join("master.key")).unwrap();
    assert!(
        !text.contains(master.trim()),
        "the master key appeared in the server log"
    );
}

/// Nobody reading the server's stdout (`ztx serve | head -1`, a closed terminal) must not
/// bring it down: its messages are not worth a crash.
#[test]
fn serve_survives_a_closed_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader); // every write to stdout now fails with EPIPE
    let child = Command::new(ZTX)
        .args(["serve", "--listen", &addr, "--data-dir"])
        .arg(dir.path().join("d"))
        .stdout(writer)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "the server never listened");
        assert!(server.0.try_wait().unwrap().is_none(), "the server died");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(http(&addr, "GET", "/api/v3/ping", None).0, 200);
    assert!(server.0.try_wait().unwrap().is_none(), "the server died");
}

#[test]
fn a_half_given_smtp_login_stops_the_start_rather_than_mail_without_it() {
    // With only the user set, the server would reach the relay without a login and
    // every notice would bounce; it refuses to start and says what is missing.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    std::fs::create_dir_all(&data).unwrap();
    let config = default_config().replace("smtp = \"\"", "smtp = \"smtps://smtp.example.com\"");
    std::fs::write(data.join("config.toml"), config).unwrap();
    let out = std::process::Command::new(ZTX)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("ZTX_SMTP_USER", "ops")
        .env_remove("ZTX_SMTP_PASSWORD")
        .output()
        .unwrap();
    fails_with(&out, "needs both ZTX_SMTP_USER and ZTX_SMTP_PASSWORD");
}
