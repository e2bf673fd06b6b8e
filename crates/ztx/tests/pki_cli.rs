//! `ztx pki`: the operator's certificate authority from the command line, checked with
//! OpenSSL's own view of what it writes where OpenSSL is installed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers: a panic is a failed test"
)]

mod common;

use common::*;

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn field<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[test]
fn an_operator_creates_the_authority_issues_revokes_and_inspects() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out_dir = dir.path().join("certs");
    let o = out_dir.to_str().unwrap();
    succeeds(&[
        "pki",
        "--data-dir",
        d,
        "init",
        "--trust-domain",
        "ztx.example",
    ]);
    fails_with(
        &ztx(&["pki", "--data-dir", d, "init"]),
        "a certificate authority already exists",
    );
    let issued = stdout(&succeeds(&[
        "pki",
        "--data-dir",
        d,
        "issue",
        "--service",
        "exchange",
        "--dns",
        "localhost",
        "--ip",
        "127.0.0.1",
        "--hours",
        "2",
        "--out-dir",
        o,
    ]));
    assert_eq!(field(&issued, "identity"), "spiffe://ztx.example/exchange");
    let alice = stdout(&succeeds(&[
        "pki",
        "--data-dir",
        d,
        "issue",
        "--operator",
        "alice",
        "--out-dir",
        o,
    ]));
    let serial = field(&alice, "serial").to_owned();
    let cert = out_dir.join("operator-alice.pem");
    let shown = stdout(&succeeds(&["pki", "show", cert.to_str().unwrap()]));
    assert_eq!(
        field(&shown, "identity"),
        "spiffe://ztx.example/operator/alice"
    );
    assert_eq!(field(&shown, "serial"), serial);
    assert!(shown.contains("valid now"), "{shown}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for key in [
            out_dir.join("operator-alice.key"),
            dir.path().join("pki/root.key"),
        ] {
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{} is readable by others", key.display());
        }
    }
    succeeds(&[
        "pki",
        "--data-dir",
        d,
        "revoke",
        "--cert",
        cert.to_str().unwrap(),
    ]);
    let again = stdout(&succeeds(&["pki", "--data-dir", d, "revoke", &serial]));
    assert!(again.contains("already revoked"), "{again}");
    let crl = stdout(&succeeds(&["pki", "--data-dir", d, "crl", "--refresh"]));
    assert_eq!(field(&crl, "number"), "3");
    assert!(field(&crl, "revoked").starts_with(&serial), "{crl}");

    // OpenSSL agrees: the chain verifies to the root, and the list revokes alice.
    let pki = dir.path().join("pki");
    let openssl = |args: &[&str]| std::process::Command::new("openssl").args(args).output();
    if let Ok(out) = openssl(&["version"]) {
        assert!(out.status.success());
        let root = pki.join("root.pem");
        let chain = out_dir.join("exchange.pem");
        let ok = openssl(&[
            "verify",
            "-CAfile",
            root.to_str().unwrap(),
            "-untrusted",
            chain.to_str().unwrap(),
            chain.to_str().unwrap(),
        ])
        .unwrap();
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stdout)
        );
        let text = openssl(&[
            "crl",
            "-in",
            pki.join("crl.pem").to_str().unwrap(),
            "-noout",
            "-text",
        ])
        .unwrap();
        let text = String::from_utf8_lossy(&text.stdout).to_uppercase();
        assert!(text.contains(&serial.to_uppercase()), "{text}");
    } else {
        eprintln!("openssl not installed: the cross-check with OpenSSL is skipped");
    }
}

#[test]
fn bad_files_and_bad_requests_are_refused_with_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let o = dir.path().join("out");
    fails_with(
        &ztx(&[
            "pki",
            "--data-dir",
            d,
            "issue",
            "--service",
            "x",
            "--out-dir",
            o.to_str().unwrap(),
        ]),
        "no certificate authority",
    );
    succeeds(&["pki", "--data-dir", d, "init"]);
    fails_with(
        &ztx(&[
            "pki",
            "--data-dir",
            d,
            "issue",
            "--service",
            "Bad Name",
            "--out-dir",
            o.to_str().unwrap(),
        ]),
        "not a SPIFFE id",
    );
    fails_with(
        &ztx(&[
            "pki",
            "--data-dir",
            d,
            "issue",
            "--service",
            "x",
            "--hours",
            "0",
            "--out-dir",
            o.to_str().unwrap(),
        ]),
        "--hours",
    );
    fails_with(
        &ztx(&["pki", "--data-dir", d, "revoke", "zz"]),
        "not a serial number",
    );
    let key = dir.path().join("pki/root.key");
    fails_with(
        &ztx(&["pki", "show", key.to_str().unwrap()]),
        "root.key: a PRIVATE KEY block where a CERTIFICATE belongs",
    );
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "hello").unwrap();
    fails_with(&ztx(&["pki", "show", junk.to_str().unwrap()]), "junk.pem");
    // A damaged revocation list is named, and nothing is revoked.
    let crl = dir.path().join("pki/crl.pem");
    std::fs::write(
        &crl,
        "-----BEGIN X509 CRL-----\nMIIB\n-----END X509 CRL-----\n",
    )
    .unwrap();
    fails_with(&ztx(&["pki", "--data-dir", d, "revoke", "0a"]), "crl.pem");
}

/// An operator's key is made on their machine and never travels: the authority signs
/// their request, and the certificate works with the key they kept.
#[test]
fn a_certificate_for_a_key_that_never_left_its_owner() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (_server, _) = serve(dir.path(), &[]);
    let laptop = tempfile::tempdir().unwrap();
    let l = laptop.path().to_str().unwrap();
    succeeds(&["pki", "request", "--name", "carol", "--out-dir", l]);
    let csr = laptop.path().join("carol.csr");
    let issued = stdout(&succeeds(&[
        "pki",
        "--data-dir",
        d,
        "issue",
        "--operator",
        "carol",
        "--csr",
        csr.to_str().unwrap(),
        "--out-dir",
        l,
    ]));
    assert_eq!(
        field(&issued, "identity"),
        "spiffe://ztx.local/operator/carol"
    );
    assert!(!issued.contains("key:"), "{issued}");
    let cert = laptop.path().join("operator-carol.pem");
    // The key ztx pki request made sits beside it under the certificate's name.
    std::fs::rename(laptop.path().join("carol.key"), cert.with_extension("key")).unwrap();
    let made = create_customer_as(d, &cert, "c@example.com");
    assert!(made.status.success(), "{}", stderr(&made));
    // A request whose signature does not hold (here: cut short) is refused by name.
    let text = std::fs::read_to_string(&csr).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut damaged = lines[..lines.len() - 2].join("\n");
    damaged.push_str("\nAAAA\n-----END CERTIFICATE REQUEST-----\n");
    let bad = laptop.path().join("bad.csr");
    std::fs::write(&bad, damaged).unwrap();
    fails_with(
        &ztx(&[
            "pki",
            "--data-dir",
            d,
            "issue",
            "--operator",
            "dave",
            "--csr",
            bad.to_str().unwrap(),
            "--out-dir",
            l,
        ]),
        "bad.csr: not a usable certificate signing request",
    );
}
