//! `ztx audit` against a real server's log: the public key and proofs it serves, an export
//! that verifies, and each way of tampering with the stored rows — as the tables' owner,
//! triggers dropped — caught by the offline verifier, which names the first bad entry.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers: a panic is a failed test"
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::*;
use ztx_audit::{Checkpoint, Entry, Hash, VerifierKey, verify_consistency, verify_inclusion};

const REQUESTS: usize = 8;

/// A data directory whose log holds a few requests, every one covered by the checkpoint
/// signed when the server stopped; made once, copied by each test.
fn logged_site() -> &'static Path {
    static SITE: OnceLock<tempfile::TempDir> = OnceLock::new();
    SITE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (server, addr) = serve(&data, &[]);
        for i in 0..REQUESTS {
            let target = if i % 3 == 2 {
                "/api/v3/account"
            } else {
                "/api/v3/ping"
            };
            http(&addr, "GET", target, Some(&"k".repeat(64)));
        }
        stop_gracefully(server);
        dir
    })
    .path()
}

/// SIGTERM, so that the server signs its last checkpoint.
fn stop_gracefully(mut server: Server) {
    let pid = server.0.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    server.0.wait().unwrap();
}

fn copy_site() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let from = logged_site().join("data");
    let to = dir.path().join("data");
    copy_data_dir(&from, &to);
    (dir, to)
}

fn public_key(data: &Path) -> String {
    let out = ztx(&["audit", "public-key", "--data-dir", data.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn export_and_verify(data: &Path, extra: &[&str]) -> Output {
    export_and_verify_with(data, &[], extra)
}

/// `ztx audit export` of `data`'s log, with `extra` (e.g. a range), to a file beside it:
/// the file, and how the command ended.
fn export_to(data: &Path, extra: &[&str]) -> (std::path::PathBuf, Output) {
    let file = data.with_extension("export");
    let mut args = vec![
        "audit",
        "export",
        "--data-dir",
        data.to_str().unwrap(),
        "--out",
        file.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = ztx(&args);
    (file, out)
}

/// `ztx audit export` with `export` (e.g. a range), then `ztx audit verify` of the file
/// with `verify`.
fn export_and_verify_with(data: &Path, export: &[&str], verify: &[&str]) -> Output {
    let (file, out) = export_to(data, export);
    assert!(out.status.success(), "{}", stderr(&out));
    let key = public_key(data);
    let mut args = vec![
        "audit",
        "verify",
        file.to_str().unwrap(),
        "--public-key",
        &key,
    ];
    args.extend_from_slice(verify);
    ztx(&args)
}

/// Exports and verifies the log, keeping its newest checkpoint as a reader would (in
/// `dir`/trusted.note); the file's path.
fn keep_checkpoint(dir: &Path, data: &Path) -> PathBuf {
    let kept = dir.join("trusted.note");
    let out = export_and_verify(
        data,
        &["--trusted-checkpoint", kept.to_str().unwrap(), "--update"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(kept.exists());
    kept
}

/// Runs SQL on the copy's store as its owner, the append-only triggers dropped first.
fn tamper(data: &Path, sql: &str) {
    let db = rusqlite::Connection::open(data.join("ztx.sqlite")).unwrap();
    db.execute_batch("DROP TRIGGER audit_entries_no_update; DROP TRIGGER audit_entries_no_delete;")
        .unwrap();
    db.execute_batch(sql).unwrap();
}

fn entries(data: &Path) -> Vec<(Vec<u8>, Hash)> {
    let db = rusqlite::Connection::open(data.join("ztx.sqlite")).unwrap();
    let mut stmt = db
        .prepare("SELECT entry, leaf FROM audit_entries ORDER BY idx")
        .unwrap();
    stmt.query_map([], |r| {
        Ok((
            r.get::<_, Vec<u8>>(0)?,
            Hash::from_slice(&r.get::<_, Vec<u8>>(1)?).unwrap(),
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn rejects(out: &Output, expected: &str) {
    fails_with(out, expected);
}

#[test]
fn an_untouched_log_verifies() {
    let (_dir, data) = copy_site();
    let out = export_and_verify(&data, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    let logged = entries(&data);
    assert!(
        said.contains(&format!("ok: {} entries", logged.len())),
        "{said}"
    );
    // One entry per request, besides those of the store calls they and the engine made.
    let requests = logged
        .iter()
        .filter(|(bytes, _)| Entry::decode(bytes).unwrap().kind == ztx_audit::Kind::Request)
        .count();
    assert_eq!(requests, REQUESTS);
}

#[test]
fn an_edited_entry_is_named() {
    let (_dir, data) = copy_site();
    tamper(
        &data,
        "UPDATE audit_entries SET entry = CAST(entry || X'00' AS BLOB) WHERE idx = 2;",
    );
    rejects(
        &export_and_verify(&data, &[]),
        "entry 2 is bad: its bytes do not hash",
    );
}

#[test]
fn an_edited_entry_with_its_leaf_rewritten_is_named() {
    let (_dir, data) = copy_site();
    let (bytes, _) = &entries(&data)[2];
    let mut entry = Entry::decode(bytes).unwrap();
    entry.client_ip = Some("198.51.100.1".parse().unwrap());
    let forged = entry.encode().unwrap();
    tamper(
        &data,
        &format!(
            "UPDATE audit_entries SET entry = X'{}', leaf = X'{}' WHERE idx = 2;",
            hex::encode(&forged),
            Hash::leaf(&forged).to_hex()
        ),
    );
    rejects(
        &export_and_verify(&data, &[]),
        "entry 2 or 3 is bad: entry 3 does not name entry 2",
    );
}

#[test]
fn a_deleted_entry_is_named() {
    let (_dir, data) = copy_site();
    tamper(&data, "DELETE FROM audit_entries WHERE idx = 4;");
    rejects(&export_and_verify(&data, &[]), "entry 4 is bad: missing");
}

#[test]
fn a_deleted_entry_with_the_rest_renumbered_is_named() {
    let (_dir, data) = copy_site();
    tamper(
        &data,
        "DELETE FROM audit_entries WHERE idx = 4; \
                   UPDATE audit_entries SET idx = idx - 1 WHERE idx > 4;",
    );
    rejects(
        &export_and_verify(&data, &[]),
        "entry 3 or 4 is bad: entry 4 does not name entry 3",
    );
}

#[test]
fn an_inserted_entry_is_named() {
    let (_dir, data) = copy_site();
    let all = entries(&data);
    let mut entry = Entry::decode(&all[3].0).unwrap();
    entry.prev = all[2].1;
    entry.action = "GET /api/v3/forged".into();
    let forged = entry.encode().unwrap();
    tamper(
        &data,
        &format!(
            "UPDATE audit_entries SET idx = -idx - 1 WHERE idx >= 3; \
         UPDATE audit_entries SET idx = -idx WHERE idx < 0; \
         INSERT INTO audit_entries (idx, leaf, entry) VALUES (3, X'{}', X'{}');",
            Hash::leaf(&forged).to_hex(),
            hex::encode(&forged)
        ),
    );
    rejects(
        &export_and_verify(&data, &[]),
        "entry 3 or 4 is bad: entry 4 does not name entry 3",
    );
}

#[test]
fn reordered_entries_are_named() {
    let (_dir, data) = copy_site();
    tamper(
        &data,
        "UPDATE audit_entries SET idx = 100 WHERE idx = 5; \
                   UPDATE audit_entries SET idx = 5 WHERE idx = 6; \
                   UPDATE audit_entries SET idx = 6 WHERE idx = 100;",
    );
    rejects(
        &export_and_verify(&data, &[]),
        "entry 4 or 5 is bad: entry 5 does not name entry 4",
    );
}

#[test]
fn a_truncated_log_is_caught() {
    let (_dir, data) = copy_site();
    tamper(
        &data,
        &format!("DELETE FROM audit_entries WHERE idx >= {};", REQUESTS - 2),
    );
    rejects(
        &export_and_verify(&data, &[]),
        &format!("the log was cut: it ends at entry {}", REQUESTS - 2),
    );
}

/// A log rewritten whole from entry 1 on — every chain link and leaf recomputed, the
/// checkpoints it cannot re-sign deleted — is still caught by a reader who kept a
/// checkpoint from before: the rewritten log is a fork of the one they saw.
#[test]
fn a_forked_log_is_caught_by_a_kept_checkpoint() {
    let (dir, data) = copy_site();
    let kept = keep_checkpoint(dir.path(), &data);
    let mut sql =
        String::from("DROP TRIGGER audit_checkpoints_no_delete; DELETE FROM audit_checkpoints;");
    let mut prev = entries(&data)[0].1;
    for (i, (bytes, _)) in entries(&data).iter().enumerate().skip(1) {
        let mut entry = Entry::decode(bytes).unwrap();
        entry.prev = prev;
        if i == 1 {
            entry.client_ip = Some("198.51.100.1".parse().unwrap());
        }
        let forged = entry.encode().unwrap();
        prev = Hash::leaf(&forged);
        sql.push_str(&format!(
            "UPDATE audit_entries SET entry = X'{}', leaf = X'{}' WHERE idx = {i};",
            hex::encode(&forged),
            prev.to_hex()
        ));
    }
    tamper(&data, &sql);
    // Alone, the rewritten log proves nothing: no checkpoint signs its entries, so the
    // export leaves them out and says so (a file holding them is refused, as the
    // export module's tests show).
    let (_, out) = export_to(&data, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("exported 0 entries") && said.contains("no checkpoint signs them"),
        "{said}"
    );
    rejects(
        &export_and_verify(&data, &["--trusted-checkpoint", kept.to_str().unwrap()]),
        "cannot check the export against the trusted checkpoint: the export ends at 0 \
         entries",
    );
}

/// The log's newest entries, signed when the server stopped, and an earlier checkpoint:
/// the site run again for one more request and stopped, so that it has two.
fn site_with_two_checkpoints() -> (tempfile::TempDir, PathBuf) {
    let (dir, data) = copy_site();
    let (server, addr) = serve(&data, &[]);
    http(&addr, "GET", "/api/v3/ping", None);
    stop_gracefully(server);
    (dir, data)
}

fn checkpoint_lines(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("{\"checkpoint\""))
        .map(str::to_string)
        .collect()
}

/// The operator deletes the newest checkpoints; the export still verifies against the
/// checkpoint a reader kept (the entries it covers are all there), but remembering the
/// export's newest would move the reader back, and the entries between the two could
/// then be rewritten unseen.
#[test]
fn deleting_the_newest_checkpoints_does_not_roll_back_a_kept_one() {
    let (dir, data) = site_with_two_checkpoints();
    let kept = keep_checkpoint(dir.path(), &data);
    let trusted = std::fs::read_to_string(&kept).unwrap();
    let file = data.with_extension("export");
    let signed = checkpoint_lines(&file);
    assert!(signed.len() >= 2, "{signed:?}");
    // The export without its newest checkpoint, as the operator would hand it out.
    let newest = signed.last().unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    let cut = data.with_extension("cut");
    std::fs::write(&cut, text.replace(&format!("{newest}\n"), "")).unwrap();
    let key = public_key(&data);
    let out = ztx(&[
        "audit",
        "verify",
        cut.to_str().unwrap(),
        "--public-key",
        &key,
        "--trusted-checkpoint",
        kept.to_str().unwrap(),
        "--update",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("still trusting the checkpoint at size"),
        "{said}"
    );
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), trusted);
}

/// A range of the log checks on its own: its entries, the peaks of the tree before
/// them, and the checkpoints that sign them.
#[test]
fn a_range_of_the_log_verifies_and_an_edit_in_it_is_named() {
    let (dir, data) = site_with_two_checkpoints();
    let size = entries(&data).len();
    let range = |data: &Path, from: &str, extra: &[&str]| {
        export_and_verify_with(data, &["--from", from], extra)
    };
    let out = range(&data, "3", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("ok: entries 3 to {} of {size}", size - 1)),
        "{said}"
    );
    // Checked against a checkpoint kept from before the range: it cannot be.
    let out = export_and_verify(&data, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let older: serde_json::Value =
        serde_json::from_str(&checkpoint_lines(&data.with_extension("export"))[0]).unwrap();
    let kept = dir.path().join("trusted.note");
    std::fs::write(&kept, older["checkpoint"].as_str().unwrap()).unwrap();
    let key = VerifierKey::parse(&public_key(&data)).unwrap();
    let older = Checkpoint::open(older["checkpoint"].as_str().unwrap(), &key).unwrap();
    assert!(older.size + 1 < size as u64);
    rejects(
        &range(
            &data,
            &(older.size + 1).to_string(),
            &["--trusted-checkpoint", kept.to_str().unwrap()],
        ),
        &format!(
            "cannot check the export against the trusted checkpoint: its {} entries end \
             before this export's first",
            older.size
        ),
    );
    // From the kept checkpoint's size on, it can.
    let out = range(
        &data,
        &older.size.to_string(),
        &["--trusted-checkpoint", kept.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    tamper(
        &data,
        "UPDATE audit_entries SET entry = CAST(entry || X'00' AS BLOB) WHERE idx = 5;",
    );
    rejects(
        &range(&data, "3", &[]),
        "entry 5 is bad: its bytes do not hash",
    );
}

/// The running server publishes the same key, a signed checkpoint, and proofs that
/// verify against it.
#[test]
fn the_server_publishes_its_key_checkpoints_and_proofs() {
    let (_dir, data) = copy_site();
    let key_text = public_key(&data);
    let (_server, addr) = serve(&data, &[]);
    let (status, served) = http(&addr, "GET", "/ztx/v1/audit/key", None);
    assert_eq!((status, served.trim()), (200, key_text.as_str()));
    let key = VerifierKey::parse(&key_text).unwrap();
    let (status, note) = http(&addr, "GET", "/ztx/v1/audit/checkpoint", None);
    assert_eq!(status, 200, "{note}");
    let checkpoint = Checkpoint::open(&note, &key).unwrap();
    assert!(checkpoint.size >= REQUESTS as u64);
    let hashes = |v: &serde_json::Value| -> Vec<Hash> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|h| Hash::from_slice(&B64.decode(h.as_str().unwrap()).unwrap()).unwrap())
            .collect()
    };
    let (status, body) = http(
        &addr,
        "GET",
        &format!("/ztx/v1/audit/inclusion?index=3&size={}", checkpoint.size),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let leaf = Hash::from_slice(&B64.decode(v["leaf"].as_str().unwrap()).unwrap()).unwrap();
    verify_inclusion(
        3,
        checkpoint.size,
        &leaf,
        &hashes(&v["proof"]),
        &checkpoint.root,
    )
    .unwrap();
    // Against the checkpoint fetched above: a newer one may have been signed since
    // (every second while entries arrive, and these requests are entries).
    let (status, body) = http(
        &addr,
        "GET",
        &format!("/ztx/v1/audit/consistency?from=2&to={}", checkpoint.size),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let old = ztx_audit::tree::root(
        &{
            let mut t = ztx_audit::MemoryTree::new();
            for (_, leaf) in entries(&data).iter().take(2) {
                t.push_leaf(*leaf);
            }
            t
        },
        2,
    )
    .unwrap();
    verify_consistency(
        2,
        checkpoint.size,
        &old,
        &checkpoint.root,
        &hashes(&v["proof"]),
    )
    .unwrap();
    // Past the newest checkpoint there is no proof to give.
    let (status, _) = http(
        &addr,
        "GET",
        "/ztx/v1/audit/inclusion?index=0&size=999999",
        None,
    );
    assert_eq!(status, 400);
}

/// The same tampering on PostgreSQL, as the tables' owner (the append-only trigger
/// dropped first): an edit is named, undone the log verifies again, and a deletion is
/// named.
#[test]
fn tampering_on_postgresql_is_caught() {
    let Some((cluster, owner, url)) = postgres_for_serving() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let (server, addr) = serve(&data, &["--database-url", &url]);
    for _ in 0..REQUESTS {
        http(&addr, "GET", "/api/v3/ping", None);
    }
    stop_gracefully(server);
    let verify = || export_and_verify_with(&data, &["--database-url", &owner], &[]);
    let out = verify();
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    let size: usize = said
        .strip_prefix("ok: ")
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(size >= REQUESTS, "{said}");
    let tamper = |sql: &str| cluster.execute_in(&owner, sql).unwrap();
    tamper("DROP TRIGGER audit_entries_append_only ON audit_entries;");
    tamper("UPDATE audit_entries SET entry = entry || '\\x00'::bytea WHERE idx = 2;");
    rejects(&verify(), "entry 2 is bad: its bytes do not hash");
    tamper(
        "UPDATE audit_entries SET entry = substring(entry FROM 1 FOR length(entry) - 1) \
         WHERE idx = 2;",
    );
    assert!(verify().status.success());
    tamper("DELETE FROM audit_entries WHERE idx = 4;");
    rejects(&verify(), "entry 4 is bad: missing");
}

/// A server run without the log (for benchmarks only) leaves a gap in the record of
/// accesses; the log says when it began, and who started it.
#[test]
fn a_server_run_without_the_log_is_on_the_record() {
    let (_dir, data) = copy_site();
    let before = entries(&data).len();
    let (server, addr) = serve(&data, &["--unaudited-benchmark-only"]);
    http(&addr, "GET", "/api/v3/ping", None);
    stop_gracefully(server);
    let after = entries(&data);
    let logged: Vec<Entry> = after[before..]
        .iter()
        .map(|(bytes, _)| Entry::decode(bytes).unwrap())
        .filter(|e| e.kind == ztx_audit::Kind::Admin)
        .collect();
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(logged[0].action, "admin serve unaudited");
    assert!(
        logged[0]
            .operator
            .as_deref()
            .is_some_and(|o| o.ends_with("@data-dir"))
    );
    // The ping itself is not in the log: that is the gap.
    assert!(
        after[before..]
            .iter()
            .all(|(bytes, _)| Entry::decode(bytes).unwrap().action != "GET /api/v3/ping")
    );
    // The log stays intact across it.
    assert!(export_and_verify(&data, &[]).status.success());
}
