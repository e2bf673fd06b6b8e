//! Proof of liabilities end to end: `ztx por publish` through the running server (and
//! beside an engine of its own when none runs), the root in the audit log, a customer's
//! proof fetched over the signed API and written by the operator tool, and `ztx por
//! verify` accepting it against the published root and refusing it against any other.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a panic is a failed test"
)]

mod common;

use common::*;

fn publish(d: &str) -> serde_json::Value {
    let out = succeeds(&["por", "--data-dir", d, "publish", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `ztx por proof` for `customer` (of `epoch`, else the latest) into `out`.
fn operator_proof(
    d: &str,
    customer: &str,
    epoch: Option<&str>,
    out: &std::path::Path,
) -> std::process::Output {
    let mut args = vec!["por", "--data-dir", d, "proof", "--customer", customer];
    if let Some(epoch) = epoch {
        args.extend(["--epoch", epoch]);
    }
    args.extend(["--out", out.to_str().unwrap()]);
    ztx(&args)
}

/// `ztx por verify`, with the epoch's cap when one was written beside the proof.
fn verify(file: &std::path::Path, root: &str) -> std::process::Output {
    let cap = format!("{}.cap", file.display());
    let mut args = vec![
        "por",
        "verify",
        file.to_str().unwrap(),
        "--root",
        root,
        "--json",
    ];
    if std::path::Path::new(&cap).exists() {
        args.extend(["--cap", &cap]);
    }
    ztx(&args)
}

#[test]
fn a_customer_verifies_their_balances_against_the_published_root() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let d = data.to_str().unwrap();
    let (server, addr) = serve(&data, &[]);
    let (alice_key, alice_secret) = customer_with_key(d, "alice@example.com");
    let _bob = customer_with_key(d, "bob@example.com");
    // Nothing published yet: the root and the proofs say so.
    let (status, body) = http(&addr, "GET", "/ztx/v1/por/root", None);
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no epoch has been published yet"), "{body}");

    // The default is the zero-knowledge tree: commitments, no totals.
    let published = publish(d);
    assert_eq!(published["epoch"], 1);
    assert_eq!(published["variant"], "zero-knowledge");
    assert_eq!(published["customers"], 2);
    assert_eq!(published["assets"], serde_json::json!(["BTC", "USDT"]));
    assert!(published.get("totals").is_none(), "{published}");
    assert_eq!(published["commitments"].as_array().unwrap().len(), 2);
    let root = published["root"].as_str().unwrap().to_owned();

    // The public root, and Alice's own proof over the signed API.
    let (status, body) = http(&addr, "GET", "/ztx/v1/por/root", None);
    assert_eq!(status, 200, "{body}");
    let served: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(served["root"], root.as_str());
    let (status, body) = http(
        &addr,
        "GET",
        &signed("/ztx/v1/por/proof", "", &alice_secret),
        Some(&alice_key),
    );
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    let file = dir.path().join("alice.proof");
    std::fs::write(
        &file,
        hex::decode(answer["proof"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    // The proof is capped (version 4): without the epoch's cap it cannot be checked.
    fails_with(
        &verify(&file, &root),
        "cap of 9 levels, which was not given",
    );
    assert_eq!(served["version"], 4);
    std::fs::write(
        dir.path().join("alice.proof.cap"),
        hex::decode(served["cap"].as_str().unwrap()).unwrap(),
    )
    .unwrap();

    let out = verify(&file, &root);
    assert!(out.status.success(), "{}", stderr(&out));
    // Without --cap, the cap kept beside the proof is the one used.
    let plain_args = ["por", "verify", file.to_str().unwrap(), "--root", &root];
    assert!(ztx(&plain_args).status.success());
    let proven: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(proven["customer"], answer["customer"]);
    assert_eq!(proven["variant"], "zero-knowledge");
    assert_eq!(
        proven["balances"],
        serde_json::json!({"BTC": "10000000000", "USDT": "100000000000000"})
    );
    // Under a file that is no cap, it fails naming the file.
    let cap_file = dir.path().join("alice.proof.cap");
    let cap = std::fs::read(&cap_file).unwrap();
    std::fs::write(&cap_file, b"not a cap").unwrap();
    fails_with(&verify(&file, &root), "is not a cap");
    std::fs::write(&cap_file, &cap).unwrap();
    // Against any other root, or altered by a byte, it fails, saying why.
    let other = "00".repeat(32);
    fails_with(&verify(&file, &other), "the proof is invalid");
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
    fails_with(&verify(&file, &root), "the proof is invalid");
    bytes.push(0);
    std::fs::write(&file, &bytes).unwrap();
    fails_with(&verify(&file, &root), "is not a proof");

    // The operator's tool writes the same customer's proof from the kept epoch.
    let customer = answer["customer"].to_string();
    let out_file = dir.path().join("by-operator.proof");
    let out = operator_proof(d, &customer, None, &out_file);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(verify(&out_file, &root).status.success());
    // A customer with no balance in the epoch has no proof; the refusal says why.
    let out = operator_proof(d, "999", None, &out_file);
    fails_with(&out, "customer 999 had no balance to prove in this epoch");
    // An epoch not kept here is refused by name.
    let (status, body) = http(&addr, "GET", "/ztx/v1/por/root?epoch=77", None);
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("epoch 77 is not kept here"), "{body}");
    drop(server);

    // With no server running, publishing runs beside an engine of its own; the plain
    // variant publishes the totals. Two customers with 100 BTC and 1,000,000 USDT
    // each, in smallest units.
    let out = succeeds(&["por", "--data-dir", d, "publish", "--json", "--plain"]);
    let second: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(second["epoch"], 2);
    assert_eq!(second["variant"], "plain");
    assert_eq!(
        second["totals"],
        serde_json::json!(["20000000000", "200000000000000"])
    );
    let plain_file = dir.path().join("plain.proof");
    let out = operator_proof(d, &customer, None, &plain_file);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = verify(&plain_file, second["root"].as_str().unwrap());
    assert!(out.status.success(), "{}", stderr(&out));
    let proven: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(proven["variant"], "plain");
    // A proof of one epoch does not verify against another's root.
    fails_with(&verify(&plain_file, &root), "the proof is invalid");
    // An earlier release's epoch (no publication file) is still served from its tree.
    std::fs::remove_file(data.join("por").join("publication-0000000002.json")).unwrap();
    let legacy = dir.path().join("legacy.proof");
    let out = operator_proof(d, &customer, Some("2"), &legacy);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        verify(&legacy, second["root"].as_str().unwrap())
            .status
            .success()
    );
    // Every root is in the audit log, each as a publication.
    let mut store = ztx_store::open(data.join("ztx.sqlite").to_str().unwrap()).unwrap();
    let roots: Vec<String> = store
        .audit_entries(0, 10_000)
        .unwrap()
        .iter()
        .map(|row| ztx_audit::Entry::decode(&row.entry).unwrap())
        .filter(|e| e.kind == ztx_audit::Kind::Publication)
        .map(|e| {
            e.params
                .iter()
                .find(|(n, _)| n == "root")
                .map(|(_, v)| v.to_string())
                .unwrap()
        })
        .collect();
    assert_eq!(
        roots,
        vec![root, second["root"].as_str().unwrap().to_owned()]
    );
    // The log with its publications, one root an epoch, checks out offline.
    drop(store);
    let export = dir.path().join("log.jsonl");
    succeeds(&[
        "audit",
        "export",
        "--data-dir",
        d,
        "--out",
        export.to_str().unwrap(),
    ]);
    let key = succeeds(&["audit", "public-key", "--data-dir", d]);
    let key = String::from_utf8(key.stdout).unwrap();
    succeeds(&[
        "audit",
        "verify",
        export.to_str().unwrap(),
        "--public-key",
        key.trim(),
    ]);
    // The kept epochs are sealed: no balance in clear, no readable secret.
    let sealed = std::fs::read(data.join("por").join("epoch-0000000001")).unwrap();
    assert!(ztx_por::Snapshot::decode(&sealed).is_err());
}

/// A server with one published epoch, and its customer Alice with her key's secret in
/// a file.
struct Epoch {
    dir: tempfile::TempDir,
    data: std::path::PathBuf,
    _server: Server,
    addr: String,
    key: String,
    customer: String,
    root: String,
}

impl Epoch {
    fn published() -> Epoch {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("d");
        let (server, addr) = serve(&data, &[]);
        let d = data.to_str().unwrap();
        let (key, secret) = customer_with_key(d, "alice@example.com");
        std::fs::write(dir.path().join("alice.secret"), format!("{secret}\n")).unwrap();
        let root = publish(d)["root"].as_str().unwrap().to_owned();
        let (_, body) = http(
            &addr,
            "GET",
            &signed("/ztx/v1/por/proof", "", &secret),
            Some(&key),
        );
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        Epoch {
            customer: answer["customer"].to_string(),
            dir,
            data,
            _server: server,
            addr,
            key,
            root,
        }
    }

    /// `ztx wallet … proof --out <dir>/wallet.proof --json [extra]` with `key`.
    fn wallet(&self, key: &str, extra: &[&str]) -> std::process::Output {
        let url = format!("http://{}", self.addr);
        let secret = self.dir.path().join("alice.secret");
        let out = self.dir.path().join("wallet.proof");
        let mut args = vec![
            "wallet",
            "--server",
            &url,
            "--api-key",
            key,
            "--secret-file",
            secret.to_str().unwrap(),
            "proof",
            "--out",
            out.to_str().unwrap(),
            "--json",
        ];
        args.extend_from_slice(extra);
        ztx(&args)
    }

    /// A checkpoint pinned once it covers the publication, its state file, and what
    /// the wallet said with it.
    fn pinned(&self) -> (std::path::PathBuf, serde_json::Value) {
        let state = self.dir.path().join("audit.state");
        let url = format!("http://{}", self.addr);
        for _ in 0..50 {
            let pinned = ztx(&[
                "audit",
                "checkpoint",
                "--server",
                &url,
                "--state",
                state.to_str().unwrap(),
                "--trust-on-first-use",
            ]);
            if !pinned.status.success() {
                // A server this young may not have signed its first checkpoint yet.
                fails_with(&pinned, "no signed checkpoint yet");
                std::thread::sleep(std::time::Duration::from_millis(200));
                continue;
            }
            let out = self.wallet(&self.key, &["--audit-state", state.to_str().unwrap()]);
            if out.status.success() {
                return (state, serde_json::from_slice(&out.stdout).unwrap());
            }
            // The newest checkpoint may not yet cover the publication: one a second
            // later does.
            assert!(
                stderr(&out).contains("not under the pinned checkpoint"),
                "{}",
                stderr(&out)
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        panic!("no checkpoint covered the publication");
    }
}

#[test]
fn a_customer_fetches_checks_and_keeps_their_proof_with_their_own_key() {
    let epoch = Epoch::published();
    let out = epoch.wallet(&epoch.key, &["--customer", &epoch.customer]);
    assert!(out.status.success(), "{}", stderr(&out));
    let kept: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(kept["root"], epoch.root.as_str());
    assert_eq!(kept["customer"].to_string(), epoch.customer);
    assert_eq!(
        kept["balances"],
        serde_json::json!({"BTC": "10000000000", "USDT": "100000000000000"})
    );
    let file = epoch.dir.path().join("wallet.proof");
    assert!(verify(&file, &epoch.root).status.success());
    fails_with(&epoch.wallet("not-a-key", &[]), "GET");
    // With a pinned checkpoint, the root is also the log's publication.
    let (_, logged) = epoch.pinned();
    assert!(logged["log_index"].as_u64().is_some(), "{logged}");
}

/// The server answers with someone else's proof (whose balances may look the same):
/// the wallet, told whose it must be, refuses it.
#[test]
fn another_customers_proof_is_refused_by_the_wallet() {
    let epoch = Epoch::published();
    fails_with(
        &epoch.wallet(&epoch.key, &["--customer", "999"]),
        "not mine (999)",
    );
    fails_with(
        &epoch.wallet(&epoch.key, &["--epoch", "7"]),
        "epoch 7 is not kept here",
    );
}

/// A server shows a customer a root it never published in the log, pointing at
/// another entry or at an entry it made up: the wallet refuses it.
#[test]
fn a_root_the_log_does_not_publish_is_refused_by_the_wallet() {
    let epoch = Epoch::published();
    let (state, logged) = epoch.pinned();
    let index = logged["log_index"].as_u64().unwrap();
    let state = state.to_str().unwrap();
    let pointer = epoch.data.join("por").join("publication-0000000001.json");
    let original = std::fs::read_to_string(&pointer).unwrap();
    let mut moved: serde_json::Value = serde_json::from_str(&original).unwrap();
    moved["log"]["index"] = serde_json::json!(index - 1);
    std::fs::write(&pointer, moved.to_string()).unwrap();
    fails_with(
        &epoch.wallet(&epoch.key, &["--audit-state", state]),
        "the root's publication is not proven in the audit log",
    );
    let kept: serde_json::Value = serde_json::from_str(&original).unwrap();
    let mut entry = ztx_audit::Entry::decode(
        &base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            kept["log"]["entry"].as_str().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    for (name, value) in &mut entry.params {
        if name == "root" {
            *value = "00".repeat(32).into();
        }
    }
    let mut forged = kept.clone();
    forged["log"]["entry"] = serde_json::json!(base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        entry.encode().unwrap(),
    ));
    std::fs::write(&pointer, forged.to_string()).unwrap();
    fails_with(
        &epoch.wallet(&epoch.key, &["--audit-state", state]),
        "is not the publication of root",
    );
    // The true pointer passes again.
    std::fs::write(&pointer, original).unwrap();
    assert!(
        epoch
            .wallet(&epoch.key, &["--audit-state", state])
            .status
            .success()
    );
}

/// A publication cut short after its snapshot was kept (and perhaps its root logged)
/// keeps its number and is never shown: the next epoch is past it, so no number ever
/// names two roots.
#[test]
fn a_publication_cut_short_never_lends_its_epoch_number() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    drop(serve(&data, &[]).0);
    let d = data.to_str().unwrap();
    succeeds(&[
        "admin",
        "--data-dir",
        d,
        "customer",
        "create",
        "--email",
        "a@example.com",
    ]);
    succeeds(&[
        "admin",
        "--data-dir",
        d,
        "faucet",
        "--customer",
        "1",
        "--asset",
        "BTC",
        "--amount",
        "1",
    ]);
    assert_eq!(publish(d)["epoch"], 1);
    std::fs::write(
        data.join("por").join("epoch-0000000002.unpublished"),
        b"cut short",
    )
    .unwrap();
    assert_eq!(publish(d)["epoch"], 3);
    let file = dir.path().join("x.proof");
    fails_with(
        &operator_proof(d, "1", Some("2"), &file),
        "epoch 2 is not kept here",
    );
    assert!(operator_proof(d, "1", Some("3"), &file).status.success());
}

#[test]
fn a_malformed_root_or_proof_file_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.proof");
    std::fs::write(&file, b"not a proof").unwrap();
    fails_with(&verify(&file, &"ab".repeat(32)), "is not a proof");
    fails_with(&verify(&file, "xyz"), "is not a proof");
    std::fs::write(&file, []).unwrap();
    fails_with(&verify(&file, "xyz"), "ends inside version");
    fails_with(&verify(&dir.path().join("missing"), "xyz"), "cannot read");
}
