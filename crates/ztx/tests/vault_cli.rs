//! Contact data at rest: the addresses customers are created with appear nowhere in
//! the database's files, and `ztx vault rotate` re-wraps every data key online under a
//! new key-encryption-key version while the old data stays readable.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a panic is a failed test"
)]

mod common;

use std::path::Path;

use common::*;
use ztx_core::CustomerId;
use ztx_store::StoredEmail;
use ztx_vault::contact::ContactKeys;

fn create(d: &str, email: &str) {
    let out = admin_create_customer(d, email, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
}

fn status(d: &str) -> serde_json::Value {
    let out = succeeds(&["vault", "--data-dir", d, "status", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every customer's address, opened with the data directory's keys.
fn addresses(data: &Path, customers: u64) -> Vec<String> {
    let keys = ContactKeys::load_or_create(data).unwrap();
    let mut store = ztx_store::open(data.join("ztx.sqlite").to_str().unwrap()).unwrap();
    (1..=customers)
        .map(|c| {
            let Some(StoredEmail::Sealed(row)) = store.sealed_email(CustomerId(c)).unwrap() else {
                panic!("customer {c}'s address is in the clear");
            };
            keys.open_email(c, &ztx_api::contacts::sealing(&row))
                .unwrap()
        })
        .collect()
}

/// The operators the audit log names for each `ztx vault rotate`, in order.
fn rotations_logged(data: &Path) -> Vec<String> {
    let db = rusqlite::Connection::open(data.join("ztx.sqlite")).unwrap();
    let mut stmt = db
        .prepare("SELECT entry FROM audit_entries ORDER BY idx")
        .unwrap();
    stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(|bytes| ztx_audit::Entry::decode(&bytes.unwrap()).unwrap())
        .filter(|e| e.action == "admin vault rotate")
        .map(|e| e.operator.unwrap_or_default().to_string())
        .collect()
}

/// Whether `needle` occurs in any file of the directory (the database, its WAL, the
/// history database).
fn appears_in_files(dir: &Path, needle: &str) -> Option<String> {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("ztx.sqlite") || !path.is_file() {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        if bytes
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
        {
            return Some(name);
        }
    }
    None
}

#[test]
fn a_dump_of_the_database_holds_no_address_and_rotation_keeps_every_one_readable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let d = data.to_str().unwrap();
    let (server, addr) = serve(&data, &[]);
    let emails = ["alice.secret@example.com", "bob.hidden@example.org"];
    for email in emails {
        create(d, email);
    }
    // Dave's HMAC key: its secret sealed under a data key of the key's own.
    let (api_key, secret) = customer_with_key(d, "dave.quiet@example.com");
    let account = || {
        http(
            &addr,
            "GET",
            &signed("/api/v3/account", "", &secret),
            Some(&api_key),
        )
    };
    assert_eq!(account().0, 200);
    let before = status(d);
    assert_eq!(before["dataKeysByVersion"], serde_json::json!({"1": 3}));
    assert_eq!(
        before["apiKeyDataKeysByVersion"],
        serde_json::json!({"1": 1})
    );
    assert_eq!(before["masterSealedSecrets"], 0);
    assert_eq!(before["plainEmails"], 0);

    // Online: the server keeps running while the key is rotated.
    assert_eq!(rotations_logged(&data), Vec::<String>::new());
    let out = succeeds(&["vault", "--data-dir", d, "rotate", "--json"]);
    // The running server logged it first, naming the operator its certificate names.
    let logged = rotations_logged(&data);
    assert!(
        logged.len() == 1 && logged[0].contains("/operator/"),
        "{logged:?}"
    );
    let rotated: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rotated["addedVersion"], 2);
    assert_eq!(rotated["rewrapped"], 3);
    assert_eq!(rotated["rewrappedApiKeys"], 1);
    // Once its cached copy expires, the server reads the key re-wrapped under a version
    // it did not hold when it started, and the secret still verifies.
    std::thread::sleep(ztx_api::state::KEY_CACHE_TTL);
    assert_eq!(account().0, 200, "the re-wrapped secret verifies");
    assert_eq!(
        appears_in_files(&data, &secret),
        None,
        "the secret in clear"
    );
    // The server seals a new customer under the new version without a restart.
    create(d, "carol.private@example.net");
    let after = status(d);
    assert_eq!(after["dataKeysByVersion"], serde_json::json!({"2": 4}));
    assert_eq!(
        after["apiKeyDataKeysByVersion"],
        serde_json::json!({"2": 1})
    );
    assert_eq!(after["underOldVersions"], 0);
    assert_eq!(after["kekVersions"], serde_json::json!([1, 2]));
    drop(server);

    assert_eq!(
        addresses(&data, 4),
        [
            emails[0],
            emails[1],
            "dave.quiet@example.com",
            "carol.private@example.net"
        ]
    );
    // Neither the whole address nor its local part is in any database file.
    for needle in [
        "alice.secret",
        "bob.hidden",
        "carol.private",
        "example.org",
        "example.net",
    ] {
        assert_eq!(appears_in_files(&data, needle), None, "{needle}");
    }
    // A second rotation moves all four to version 3.
    let out = succeeds(&["vault", "--data-dir", d, "rotate", "--json"]);
    let again: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (again["addedVersion"].clone(), again["rewrapped"].clone()),
        (3.into(), 4.into())
    );
    // With no server, an engine of the tool's own logged it, naming the system user.
    let logged = rotations_logged(&data);
    assert!(
        logged.len() == 2 && logged[1].ends_with("@data-dir"),
        "{logged:?}"
    );
    assert_eq!(addresses(&data, 4)[3], "carol.private@example.net");
}

#[test]
fn addresses_an_older_release_stored_in_the_clear_are_sealed_by_rotate_or_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let d = data.to_str().unwrap();
    drop(serve(&data, &[]));
    // The database as schema version 5 left it: the address in the clear.
    let db = data.join("ztx.sqlite");
    std::fs::remove_file(&db).unwrap();
    for suffix in ["-wal", "-shm", "-history", "-history-wal", "-history-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let legacy = |db: &Path| {
        drop(ztx_store::testing::open_at_version(db.to_str().unwrap(), 5).unwrap());
        rusqlite::Connection::open(db)
            .unwrap()
            .execute_batch(
                "INSERT INTO customers (id, email, created_ms) \
                 VALUES (1, 'legacy.person@example.com', 1)",
            )
            .unwrap();
    };
    let before_upgrade = dir.path().join("copy");
    copy_data_dir(&data, &before_upgrade);
    legacy(&db);
    // Opening it migrates; the address is reported as still in the clear.
    assert_eq!(status(d)["plainEmails"], 1);
    let out = succeeds(&["vault", "--data-dir", d, "rotate", "--json"]);
    let rotated: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rotated["sealedAddresses"], 1);
    assert_eq!(status(d)["plainEmails"], 0);
    assert_eq!(addresses(&data, 1), ["legacy.person@example.com"]);
    // The customer is found by the address's blind index now, so a second customer
    // with the same address is refused.
    let (_server, _) = serve(&data, &[]);
    let out = admin_create_customer(d, "legacy.person@example.com", &[]);
    fails_with(&out, "exists already");
    drop(_server);

    // Without a rotation, the upgraded server seals it at start, before a customer
    // with the same address could be created beside it.
    let db = before_upgrade.join("ztx.sqlite");
    legacy(&db);
    let b = before_upgrade.to_str().unwrap();
    let (_server, _) = serve(&before_upgrade, &[]);
    assert_eq!(status(b)["plainEmails"], 0);
    let out = admin_create_customer(b, "legacy.person@example.com", &[]);
    fails_with(&out, "exists already");
    assert_eq!(addresses(&before_upgrade, 1), ["legacy.person@example.com"]);
}

#[test]
fn a_key_file_readable_by_others_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    drop(serve(&data, &[]));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(data.join("kek"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = ztx(&["vault", "--data-dir", data.to_str().unwrap(), "status"]);
        fails_with(&out, "kek");
    }
}

#[test]
fn a_pg_dump_holds_no_address() {
    let Some((cluster, owner, url)) = postgres_for_serving() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let d = data.to_str().unwrap();
    let (_server, _) = serve(&data, &["--database-url", &url]);
    for email in ["dora.secret@example.com", "eve.hidden@example.org"] {
        succeeds(&[
            "admin",
            "--data-dir",
            d,
            "--database-url",
            &url,
            "customer",
            "create",
            "--email",
            email,
        ]);
    }
    let dump = cluster.pg_dump(&owner).unwrap();
    // The dump has the rows (sealed), and no trace of the addresses.
    assert!(dump.contains("COPY public.customers"), "{dump}");
    assert!(dump.contains("COPY public.customer_keys"));
    for needle in ["dora.secret", "eve.hidden", "example.org"] {
        assert!(
            !dump.to_ascii_lowercase().contains(needle),
            "{needle} in the dump"
        );
    }
    // The key status and rotation read the data keys: the owner may, the exchange's
    // role may not.
    let as_service = ztx(&[
        "vault",
        "--data-dir",
        d,
        "--database-url",
        &url,
        "status",
        "--json",
    ]);
    fails_with(&as_service, "permission denied for table customer_keys");
    let out = succeeds(&[
        "vault",
        "--data-dir",
        d,
        "--database-url",
        &owner,
        "status",
        "--json",
    ]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["dataKeysByVersion"], serde_json::json!({"1": 2}));
}

#[test]
fn a_data_directory_restored_without_its_key_file_is_refused_not_given_new_keys() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let (server, _) = serve(&data, &[]);
    let d = data.to_str().unwrap();
    create(d, "frank.kept@example.com");
    drop(server);
    for file in ["kek", "email-index.key"] {
        let kept = std::fs::read(data.join(file)).unwrap();
        std::fs::remove_file(data.join(file)).unwrap();
        for args in [
            vec!["serve", "--data-dir", d],
            vec!["vault", "--data-dir", d, "status"],
        ] {
            let out = ztx(&args);
            fails_with(&out, &format!("{file} is missing from"));
            assert!(stderr(&out).contains("restore it"), "{}", stderr(&out));
        }
        assert!(!data.join(file).exists(), "no fresh {file} was made");
        std::fs::write(data.join(file), kept).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(data.join(file), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // Restored, the address opens again.
    assert_eq!(addresses(&data, 1), ["frank.kept@example.com"]);
}

#[test]
fn the_index_key_from_the_environment_without_the_keks_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("d");
    drop(serve(&d, &[]));
    let out = std::process::Command::new(ZTX)
        .args(["vault", "--data-dir", d.to_str().unwrap(), "status"])
        .env("ZTX_EMAIL_INDEX_KEY", "00".repeat(32))
        .env_remove("ZTX_KEKS")
        .output()
        .unwrap();
    fails_with(&out, "ZTX_EMAIL_INDEX_KEY is set but ZTX_KEKS is not");
}

#[test]
fn a_malformed_key_file_is_refused_naming_the_file_and_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    drop(serve(&data, &[]));
    let d = data.to_str().unwrap();
    // A second version line whose key is not hex: the file and the line are named,
    // the content is not echoed.
    let kek = data.join("kek");
    let mut text = std::fs::read_to_string(&kek).unwrap();
    text.push_str("2 not-a-key-at-all\n");
    std::fs::write(&kek, text).unwrap();
    let out = ztx(&["vault", "--data-dir", d, "status"]);
    fails_with(&out, "kek: key-encryption-key line 2");
    assert!(
        !stderr(&out).contains("not-a-key-at-all"),
        "{}",
        stderr(&out)
    );
    // An empty one holds no version.
    std::fs::write(&kek, "").unwrap();
    fails_with(
        &ztx(&["vault", "--data-dir", d, "status"]),
        "no key-encryption key",
    );
    // The server refuses to start on it too, saying why.
    let out = ztx(&["serve", "--data-dir", d, "--listen", "127.0.0.1:0"]);
    fails_with(&out, "no key-encryption key");
}

#[test]
fn a_rotation_the_running_server_cannot_log_does_not_start() {
    // A server holds the data directory (its lock), but its admin API does not answer:
    // the rotation, which must be in the log before it rewrites a key, is refused.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let d = data.to_str().unwrap();
    drop(serve(&data, &[]));
    create(d, "dana@example.com");
    let before = status(d);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(data.join("serve.lock"))
        .unwrap();
    lock.lock().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone = closed.local_addr().unwrap();
    drop(closed);
    std::fs::write(data.join("admin.addr"), format!("{gone}\n")).unwrap();

    let out = ztx(&["vault", "--data-dir", d, "rotate", "--json"]);
    fails_with(&out, "did not log the rotation, so it did not start");
    lock.unlock().unwrap();
    // Nothing moved: no key version added, every data key where it was, nothing logged.
    let after = status(d);
    assert_eq!(after["kekVersions"], before["kekVersions"]);
    assert_eq!(after["dataKeysByVersion"], before["dataKeysByVersion"]);
    assert!(rotations_logged(&data).is_empty());
    assert_eq!(addresses(&data, 1), ["dana@example.com"]);
}
