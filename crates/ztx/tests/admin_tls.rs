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
use std::time::Duration;

use common::*;
use serde_json::Value;

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
        // Refused at the handshake, or, when the server took the new list between
        // the handshake and the request, by the request's own check.
        let refused = stderr(&out);
        assert!(
            out.status.success()
                || refused.contains("CertificateRevoked")
                || refused.contains("the operator certificate has been revoked"),
            "{refused}"
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

/// Sends one keep-alive request on `conn` and reads its answer (status, body).
async fn request_on(
    conn: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    email: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let body = format!("{{\"email\":\"{email}\"}}");
    let request = format!(
        "POST /ztx/admin/v1/customers HTTP/1.1\r\nHost: admin\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = conn.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            if body.len() >= length {
                let status = head.split(' ').nth(1).unwrap().parse().unwrap();
                return (status, body.to_owned());
            }
        }
    }
}

/// A connection opened before its certificate was revoked does not keep the operator in:
/// every request checks the certificate against the current list.
#[test]
fn a_connection_kept_open_does_not_outlive_its_revoked_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (_server, _) = serve(dir.path(), &[]);
    let certs = dir.path().join("certs");
    succeeds(&[
        "pki",
        "--data-dir",
        d,
        "issue",
        "--operator",
        "alice",
        "--out-dir",
        certs.to_str().unwrap(),
    ]);
    let alice = certs.join("operator-alice.pem");
    let admin: std::net::SocketAddr = std::fs::read_to_string(dir.path().join("admin.addr"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let now = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    let pki = dir.path().join("pki");
    let bundle = ztx_pki::verify::TrustBundle::load(&pki.join("root.pem"), now).unwrap();
    let allow = ztx_pki::Allow::new("ztx.local", &["spiffe://ztx.local/admin"]).unwrap();
    let verifier = ztx_pki::verify::SpiffeServerVerifier::new(bundle, allow).unwrap();
    let identity = std::sync::Arc::new(
        ztx_pki::RotatingIdentity::from_pem(
            &std::fs::read_to_string(&alice).unwrap(),
            &std::fs::read_to_string(alice.with_extension("key")).unwrap(),
            &alice,
        )
        .unwrap(),
    );
    let config = ztx_pki::verify::client_config(verifier, identity).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tcp = tokio::net::TcpStream::connect(admin).await.unwrap();
        let name = rustls::pki_types::ServerName::IpAddress(admin.ip().into());
        let mut conn = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap();
        let (status, body) = request_on(&mut conn, "first@example.com").await;
        assert_eq!(status, 200, "{body}");
        succeeds(&[
            "pki",
            "--data-dir",
            d,
            "revoke",
            "--cert",
            alice.to_str().unwrap(),
        ]);
        // Once the server has taken the list (new connections are refused), the open one
        // is refused too.
        let mut attempt = 0;
        eventually("the server to take the new list", || {
            attempt += 1;
            !create_customer_as(d, &alice, &format!("n{attempt}@example.org"))
                .status
                .success()
        });
        let (status, body) = request_on(&mut conn, "second@example.com").await;
        assert_eq!(status, 401, "{body}");
        assert!(body.contains("revoked"), "{body}");
    });
    eventually("the refused request in the log", || {
        messages_starting(d, "admin customer create")
            .iter()
            .any(|e| {
                e["status"] == "Failure"
                    && e["actor"]["user"]["name"] == "spiffe://ztx.local/operator/alice"
            })
    });
}

/// After `ztx pki renew-intermediate` the server issues its own certificate and the
/// bootstrap operator's again from the new intermediate, so `ztx admin` keeps working.
#[test]
fn the_server_follows_a_renewed_intermediate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (_server, _) = serve(dir.path(), &[]);
    succeeds(&[
        "admin",
        "--data-dir",
        d,
        "customer",
        "create",
        "--email",
        "a@example.com",
    ]);
    let before = std::fs::read_to_string(dir.path().join("pki/operator-bootstrap.pem")).unwrap();
    succeeds(&["pki", "--data-dir", d, "renew-intermediate"]);
    eventually("the server to issue the bootstrap operator again", || {
        std::fs::read_to_string(dir.path().join("pki/operator-bootstrap.pem")).unwrap() != before
    });
    // Its own certificate was issued again in the same round, before the operator's.
    succeeds(&[
        "admin",
        "--data-dir",
        d,
        "customer",
        "create",
        "--email",
        "b@example.com",
    ]);
}
