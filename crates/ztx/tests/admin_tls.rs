//! The admin API of a real server speaks mutual TLS only: operators are who their
//! certificates from the platform's CA say, and everything else — plain HTTP, another
//! CA's certificate, a workload's, a revoked one — is refused and logged.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers: a panic is a failed test"
)]

mod common;

use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn events(d: &str) -> Vec<Value> {
    let out = succeeds(&["admin", "--data-dir", d, "events", "--limit", "1000"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn messages_starting(d: &str, prefix: &str) -> Vec<Value> {
    events(d)
        .into_iter()
        .filter(|e| e["message"].as_str().is_some_and(|m| m.starts_with(prefix)))
        .collect()
}

fn create_customer_as(d: &str, cert: &std::path::Path, email: &str) -> std::process::Output {
    let cert_key = cert.with_extension("key");
    ztx(&[
        "admin",
        "--data-dir",
        d,
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        cert_key.to_str().unwrap(),
        "customer",
        "create",
        "--email",
        email,
    ])
}

#[test]
fn the_admin_port_admits_only_operators_of_the_platform_and_logs_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (_server, _) = serve(dir.path(), &[]);
    let admin = std::fs::read_to_string(dir.path().join("admin.addr")).unwrap();
    let certs = dir.path().join("certs");
    let c = certs.to_str().unwrap();

    // Plain HTTP gets no HTTP answer.
    let mut tcp = std::net::TcpStream::connect(admin.trim()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(
        b"POST /ztx/admin/v1/customers HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
    )
    .unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    assert!(
        !answer.starts_with(b"HTTP/"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // An operator of another authority, even of the same trust domain, is refused.
    let other = tempfile::tempdir().unwrap();
    let o = other.path().to_str().unwrap();
    succeeds(&["pki", "--data-dir", o, "init"]);
    succeeds(&[
        "pki",
        "--data-dir",
        o,
        "issue",
        "--operator",
        "mallory",
        "--out-dir",
        o,
    ]);
    let mallory = other.path().join("operator-mallory.pem");
    let refused = create_customer_as(d, &mallory, "m@example.com");
    assert!(!refused.status.success(), "another CA's operator got in");

    // A workload's certificate of ours is not an operator's.
    succeeds(&[
        "pki",
        "--data-dir",
        d,
        "issue",
        "--service",
        "exchange",
        "--out-dir",
        c,
    ]);
    let exchange = certs.join("exchange.pem");
    assert!(
        !create_customer_as(d, &exchange, "w@example.com")
            .status
            .success()
    );

    // An operator of ours gets in, and the log names them.
    succeeds(&[
        "pki",
        "--data-dir",
        d,
        "issue",
        "--operator",
        "alice",
        "--out-dir",
        c,
    ]);
    let alice = certs.join("operator-alice.pem");
    let made = create_customer_as(d, &alice, "a@example.com");
    assert!(made.status.success(), "{}", stderr(&made));
    let created = messages_starting(d, "admin customer create");
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(
        created[0]["actor"]["user"]["name"],
        "spiffe://ztx.local/operator/alice"
    );

    // Revoked, alice is refused as soon as the server has taken the new list; the
    // bootstrap operator is not.
    succeeds(&[
        "pki",
        "--data-dir",
        d,
        "revoke",
        "--cert",
        alice.to_str().unwrap(),
    ]);
    // (Until the server has re-read the list, within seconds, she still gets in.)
    let mut attempt = 0;
    eventually("the server to refuse a revoked operator", || {
        attempt += 1;
        let out = create_customer_as(d, &alice, &format!("a{attempt}@example.org"));
        assert!(
            out.status.success() || stderr(&out).contains("CertificateRevoked"),
            "{}",
            stderr(&out)
        );
        !out.status.success()
    });
    succeeds(&[
        "admin",
        "--data-dir",
        d,
        "customer",
        "create",
        "--email",
        "b@example.com",
    ]);

    // Every refused connection is in the log as a failed logon, with why.
    let mut refusals = Vec::new();
    eventually("four refused connections in the log", || {
        refusals = messages_starting(d, "admin TLS handshake");
        refusals.len() >= 4
    });
    assert!(
        refusals
            .iter()
            .all(|e| e["class_uid"] == 3002 && e["status"] == "Failure")
    );
    let why: Vec<&str> = refusals
        .iter()
        .map(|e| e["unmapped"]["params"]["error"].as_str().unwrap())
        .collect();
    assert!(
        why.iter()
            .any(|w| w.contains("spiffe://ztx.local/exchange is not allowed")),
        "{why:?}"
    );
    assert!(why.iter().any(|w| w.contains("Revoked")), "{why:?}");
}

#[test]
fn the_server_creates_its_authority_and_a_bootstrap_operator_on_first_start() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, _) = serve(dir.path(), &[]);
    let pki = dir.path().join("pki");
    for file in [
        "root.pem",
        "root.key",
        "intermediate.pem",
        "intermediate.key",
        "crl.pem",
    ] {
        assert!(pki.join(file).exists(), "no {file}");
    }
    let shown = succeeds(&[
        "pki",
        "show",
        pki.join("operator-bootstrap.pem").to_str().unwrap(),
    ]);
    let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
    assert!(
        shown.contains("identity: spiffe://ztx.local/operator/bootstrap"),
        "{shown}"
    );
    assert!(!dir.path().join("admin.token").exists());
}
