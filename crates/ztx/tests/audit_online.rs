//! `ztx audit checkpoint` and `ztx audit inclusion` against real running servers: the
//! first run pins the log's key and checkpoint, later runs accept the log as it grows;
//! a fork (a copy of the data directory, same signing key, diverging) and a rollback
//! are refused with the state file untouched, as are a wrong key and every kind of bad
//! answer a server or someone in between can give.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers: a panic is a failed test"
)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use ztx_audit::{LogKey, VerifierKey, Witness};

fn public_key(data: &Path) -> String {
    let out = ztx(&["audit", "public-key", "--data-dir", data.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The size of the server's newest checkpoint, if it has signed one.
fn signed_size(addr: &str) -> Option<u64> {
    let (status, note) = http(addr, "GET", "/ztx/v1/audit/checkpoint", None);
    (status == 200).then(|| note.lines().nth(1).unwrap().parse().unwrap())
}

/// Makes requests until the server has signed a checkpoint of more than `above` entries
/// (it signs at least every second while entries arrive); returns its size.
fn grow_past(addr: &str, above: u64) -> u64 {
    for _ in 0..100 {
        http(addr, "GET", "/api/v3/ping", None);
        if let Some(size) = signed_size(addr).filter(|&s| s > above) {
            return size;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{addr} signed no checkpoint past {above} entries in 10 s");
}

fn checkpoint(addr: &str, state: &Path, extra: &[&str]) -> Output {
    let url = format!("http://{addr}");
    let mut args = vec![
        "audit",
        "checkpoint",
        "--server",
        &url,
        "--state",
        state.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    ztx(&args)
}

fn succeeds(out: &Output, expected: &str) {
    assert!(out.status.success(), "{}", stderr(out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(expected), "{said}");
}

/// Asserts a refusal that said `expected`, did not panic, and left `state` as `before`.
fn refused(out: &Output, expected: &str, state: &Path, before: &Option<Vec<u8>>) {
    fails_with(out, expected);
    assert!(!stderr(out).contains("panicked"), "{}", stderr(out));
    assert_eq!(&std::fs::read(state).ok(), before, "the state file changed");
}

fn pinned_size(state: &Path) -> u64 {
    let text = std::fs::read_to_string(state).unwrap();
    Witness::from_state(&text).unwrap().latest().size
}

fn tempdir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    (dir, data)
}

/// SIGTERM, so that the server signs its last checkpoint.
fn stop_gracefully(mut server: Server) {
    let pid = server.0.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    server.0.wait().unwrap();
}

#[test]
fn pins_on_first_use_then_accepts_the_log_as_it_grows() {
    let (dir, data) = tempdir();
    let (_server, addr) = serve(&data, &[]);
    let first = grow_past(&addr, 2);
    let key = public_key(&data);
    let state = dir.path().join("seen.json");

    succeeds(
        &checkpoint(&addr, &state, &["--public-key", &key]),
        "pinned log ztx.local/audit/",
    );
    let pinned = pinned_size(&state);
    assert!(pinned >= first);
    let witness = Witness::from_state(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(witness.key().to_string(), key);

    let grown = grow_past(&addr, pinned + 5);
    let out = checkpoint(&addr, &state, &[]);
    succeeds(&out, &format!("ok: the log grew from {pinned} to "));
    assert!(pinned_size(&state) >= grown);
    // The key given again is the pinned one: fine.
    succeeds(&checkpoint(&addr, &state, &["--public-key", &key]), "ok: ");

    // An entry under the pinned checkpoint is proven to be in it.
    let size = pinned_size(&state);
    let url = format!("http://{addr}");
    let inclusion = |index: u64, extra: &[&str]| {
        let index = index.to_string();
        let mut args = vec![
            "audit",
            "inclusion",
            "--server",
            &url,
            "--state",
            state.to_str().unwrap(),
            "--index",
            &index,
        ];
        args.extend_from_slice(extra);
        ztx(&args)
    };
    let out = inclusion(3, &[]);
    succeeds(&out, "ok: entry 3 (leaf ");
    let said = String::from_utf8_lossy(&out.stdout);
    let leaf = said
        .split("(leaf ")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    succeeds(&inclusion(3, &["--leaf", leaf]), "ok: entry 3");
    fails_with(
        &inclusion(4, &["--leaf", leaf]),
        "the server says entry 4 is leaf",
    );
    fails_with(
        &inclusion(size, &[]),
        &format!("entry {size} is not under the pinned checkpoint of {size} entries"),
    );
}

#[test]
fn trusts_the_servers_key_on_first_use_only_when_asked() {
    let (dir, data) = tempdir();
    let (_server, addr) = serve(&data, &[]);
    grow_past(&addr, 0);
    let state = dir.path().join("seen.json");
    refused(
        &checkpoint(&addr, &state, &[]),
        "give the log's public key with --public-key",
        &state,
        &None,
    );
    succeeds(
        &checkpoint(&addr, &state, &["--trust-on-first-use"]),
        "pinned log",
    );
    let text = std::fs::read_to_string(&state).unwrap();
    let witness = Witness::from_state(&text).unwrap();
    assert_eq!(witness.key().to_string(), public_key(&data));
}

#[test]
fn a_wrong_public_key_is_refused() {
    let (dir, data) = tempdir();
    let (_server, addr) = serve(&data, &[]);
    grow_past(&addr, 0);
    let key = public_key(&data);
    let name = VerifierKey::parse(&key).unwrap().name().to_string();
    // An impostor's key under the log's own name, and another log's key.
    let impostor = LogKey::from_seed(&name, &[9; 32])
        .unwrap()
        .verifier()
        .to_string();
    let other = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    let state = dir.path().join("seen.json");
    for wrong in [impostor.as_str(), other] {
        refused(
            &checkpoint(&addr, &state, &["--public-key", wrong]),
            "the checkpoint does not open with the pinned key: the note is not signed by",
            &state,
            &None,
        );
    }
    refused(
        &checkpoint(&addr, &state, &["--public-key", "not-a-key"]),
        "the public key is not valid",
        &state,
        &None,
    );

    // Once pinned, another key given later is refused too.
    succeeds(
        &checkpoint(&addr, &state, &["--public-key", &key]),
        "pinned",
    );
    let before = std::fs::read(&state).ok();
    refused(
        &checkpoint(&addr, &state, &["--public-key", &impostor]),
        "pins key",
        &state,
        &before,
    );
}

/// Two servers sign with the same key from copies of one data directory, then diverge:
/// a customer who pinned one of them refuses the other, smaller (a rollback) and larger
/// (not an extension), and still accepts the one they pinned as it grows.
#[test]
fn a_forked_log_is_refused_and_the_state_kept() {
    let (dir, data) = tempdir();
    let (server, addr) = serve(&data, &[]);
    grow_past(&addr, 3);
    stop_gracefully(server);
    let fork = dir.path().join("fork");
    copy_data_dir(&data, &fork);
    let key = public_key(&data);
    assert_eq!(public_key(&fork), key);

    let (_honest, addr) = serve(&data, &[]);
    let (_forked, forked_addr) = serve(&fork, &[]);
    let forked_size = signed_size(&forked_addr).unwrap();
    grow_past(&addr, forked_size + 10);
    let state = dir.path().join("seen.json");
    succeeds(
        &checkpoint(&addr, &state, &["--public-key", &key]),
        "pinned",
    );
    let pinned = pinned_size(&state);
    let before = std::fs::read(&state).ok();

    // The other copy is behind: it looks like the log lost entries.
    refused(
        &checkpoint(&forked_addr, &state, &[]),
        &format!("refused; {} is unchanged: a rollback", state.display()),
        &state,
        &before,
    );
    // Grown past the pinned size with other entries, it cannot prove it extends it.
    for i in 0..100 {
        assert!(i < 99, "the fork did not grow");
        http(&forked_addr, "GET", "/api/v3/time", None);
        if signed_size(&forked_addr).unwrap() > pinned + 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    refused(
        &checkpoint(&forked_addr, &state, &[]),
        &format!("entries is not proven to extend the one of {pinned} seen before"),
        &state,
        &before,
    );

    // The log that was pinned is still accepted as it grows.
    grow_past(&addr, pinned);
    succeeds(
        &checkpoint(&addr, &state, &[]),
        &format!("ok: the log grew from {pinned} to"),
    );
}

/// What the tampering proxy does to the answers it passes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tamper {
    Nothing,
    DropAHash,
    CutTheProof,
    GarbleTheCheckpoint,
    GarbleEverything,
    ErrorWithEscapes,
    ShortBody,
    HugeBody,
}

const TAMPERS: [Tamper; 8] = [
    Tamper::Nothing,
    Tamper::DropAHash,
    Tamper::CutTheProof,
    Tamper::GarbleTheCheckpoint,
    Tamper::GarbleEverything,
    Tamper::ErrorWithEscapes,
    Tamper::ShortBody,
    Tamper::HugeBody,
];

fn answer(status: u16, body: &str) -> String {
    format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn tampered(how: Tamper, target: &str, status: u16, body: String) -> String {
    let consistency = target.starts_with("/ztx/v1/audit/consistency");
    match how {
        Tamper::DropAHash if consistency => {
            let mut v: serde_json::Value = serde_json::from_str(&body).unwrap();
            v["proof"].as_array_mut().unwrap().pop();
            answer(status, &v.to_string())
        }
        Tamper::CutTheProof if consistency => answer(status, &body[..body.len() / 2]),
        Tamper::GarbleTheCheckpoint if target.ends_with("/checkpoint") => {
            answer(200, "<html>hello</html>")
        }
        Tamper::GarbleEverything => answer(200, "\u{0}\u{1}garbage"),
        Tamper::ErrorWithEscapes => answer(502, "bad \u{1b}[31mgateway\u{7}"),
        Tamper::ShortBody => format!(
            "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n{}",
            &body[..body.len().min(10)]
        ),
        Tamper::HugeBody => answer(200, &"x".repeat(300 * 1024)),
        _ => answer(status, &body),
    }
}

/// A server in front of `upstream` that passes GETs on and tampers with the answers as
/// `mode` (an index into [`TAMPERS`]) says; returns its address.
fn tampering_proxy(upstream: String, mode: Arc<AtomicUsize>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(200) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(&stream);
            let mut first = String::new();
            if reader.read_line(&mut first).is_err() {
                continue;
            }
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let Some(target) = first.split(' ').nth(1) else {
                continue;
            };
            let (status, body) = http(&upstream, "GET", target, None);
            let how = TAMPERS[mode.load(Ordering::SeqCst)];
            let _ = stream.write_all(tampered(how, target, status, body).as_bytes());
        }
    });
    addr
}

#[test]
fn bad_answers_are_refused_clearly_and_change_nothing() {
    let (dir, data) = tempdir();
    let (_server, upstream) = serve(&data, &[]);
    grow_past(&upstream, 0);
    let mode = Arc::new(AtomicUsize::new(0));
    let proxy = tampering_proxy(upstream.clone(), Arc::clone(&mode));
    let state = dir.path().join("seen.json");
    let set = |how: Tamper| {
        let at = TAMPERS.iter().position(|&t| t == how).unwrap();
        mode.store(at, Ordering::SeqCst);
    };

    // Before anything is pinned: a server that is not one is refused, nothing written.
    set(Tamper::GarbleEverything);
    refused(
        &checkpoint(&proxy, &state, &["--trust-on-first-use"]),
        "the key the server publishes is not valid",
        &state,
        &None,
    );
    set(Tamper::Nothing);
    succeeds(
        &checkpoint(&proxy, &state, &["--trust-on-first-use"]),
        "pinned",
    );
    let before = std::fs::read(&state).ok();

    let cases = [
        (Tamper::DropAHash, "is not proven to extend the one of"),
        (
            Tamper::CutTheProof,
            "the server's consistency proof is unreadable",
        ),
        (
            Tamper::GarbleTheCheckpoint,
            "the checkpoint does not open with the pinned key: malformed note",
        ),
        (Tamper::GarbleEverything, "malformed note"),
        (
            Tamper::ErrorWithEscapes,
            "the server answered 502 Bad Gateway: bad  [31mgateway",
        ),
        (Tamper::ShortBody, "cannot read the answer"),
        (Tamper::HugeBody, "the answer is longer than 262144 bytes"),
    ];
    for (how, expected) in cases {
        grow_past(&upstream, pinned_size(&state));
        set(how);
        let out = checkpoint(&proxy, &state, &[]);
        refused(&out, expected, &state, &before);
        assert!(
            !stderr(&out).contains('\u{1b}') && !stderr(&out).contains('\u{7}'),
            "{how:?}: control characters reached the terminal"
        );
    }
    // The truncated proof names what is wrong with it.
    set(Tamper::DropAHash);
    grow_past(&upstream, pinned_size(&state));
    let out = checkpoint(&proxy, &state, &[]);
    assert!(stderr(&out).contains("hashes, not the"), "{}", stderr(&out));

    // Honest answers through the same proxy are accepted.
    set(Tamper::Nothing);
    succeeds(&checkpoint(&proxy, &state, &[]), "ok: the log grew");
}

#[test]
fn a_server_that_is_not_there_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("seen.json");
    // A port just released: nothing listens on it.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    refused(
        &checkpoint(&addr, &state, &["--trust-on-first-use"]),
        "cannot connect",
        &state,
        &None,
    );
    let out = ztx(&[
        "audit",
        "checkpoint",
        "--server",
        "https://example.invalid",
        "--state",
        state.to_str().unwrap(),
        "--trust-on-first-use",
    ]);
    refused(&out, "https is not supported", &state, &None);
}
