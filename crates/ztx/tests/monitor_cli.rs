//! Security monitoring in a real server: a burst of forged signatures freezes the key and
//! tells its customer, each step is an OCSF event in the SIEM file and on the admin
//! endpoint (read with `ztx admin events`), and the customer lifts the freeze.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers: a panic is a failed test"
)]

mod common;

use common::*;
use serde_json::Value;

/// `n` account reads with `api_key` but a forged signature, each refused.
fn forge_signatures(addr: &str, api_key: &str, n: usize) {
    for _ in 0..n {
        let (status, _) = http(
            addr,
            "GET",
            &signed("/api/v3/account", "", "not-the-secret"),
            Some(api_key),
        );
        assert_eq!(status, 400);
    }
}

fn events(d: &str, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["admin", "--data-dir", d, "events", "--limit", "1000"];
    args.extend_from_slice(extra);
    let out = ztx(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_forged_signature_burst_is_detected_answered_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let (_server, addr) = serve(&data, &[]);
    let d = data.to_str().unwrap();
    let (api_key, secret) = customer_with_key(d, "saver@example.com");
    assert_eq!(
        http(
            &addr,
            "GET",
            &signed("/api/v3/account", "", &secret),
            Some(&api_key)
        )
        .0,
        200
    );
    forge_signatures(&addr, &api_key, 5);
    // The monitor follows the log: once it has acted, the key is frozen.
    eventually("the key to be frozen", || {
        let (status, body) = http(
            &addr,
            "GET",
            &signed("/api/v3/account", "", &secret),
            Some(&api_key),
        );
        status == 401 && body.contains("-2015")
    });
    let (status, body) = http(
        &addr,
        "GET",
        &signed("/ztx/v1/notifications", "", &secret),
        Some(&api_key),
    );
    assert_eq!(status, 401, "a frozen key reads nothing: {body}");

    // The operator's view: every entry as an OCSF event, the finding linked to the
    // forged requests.
    let all = events(d, &[]);
    let finding = all
        .iter()
        .find(|e| e["class_uid"] == 2004 && e["activity_id"] == 1)
        .expect("a Detection Finding");
    assert_eq!(
        finding["finding_info"]["analytic"]["name"],
        "bad_signatures_per_key"
    );
    let related: Vec<u64> = finding["finding_info"]["related_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["uid"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(related.len(), 5);
    for i in &related {
        let e = &all[usize::try_from(*i).unwrap()];
        assert_eq!(
            (e["class_uid"].as_u64(), e["status_detail"].as_str()),
            (Some(3002), Some("bad_signature"))
        );
    }
    let lock = all
        .iter()
        .find(|e| e["class_uid"] == 3001 && e["activity_name"] == "Lock")
        .expect("the freeze as an Account Change");
    assert_eq!(lock["actor"]["app_name"], "ztx-monitor");

    // Paging: from a cursor on, nothing before it.
    let later = events(d, &["--cursor", &related[2].to_string()]);
    assert_eq!(later[0]["metadata"]["sequence"], related[2]);

    // The SIEM file holds the same events, one per line.
    let path = data.join("events").join("ocsf.jsonl");
    eventually("the OCSF file to catch up", || {
        std::fs::read_to_string(&path).is_ok_and(|t| t.lines().count() >= all.len())
    });
    let text = std::fs::read_to_string(&path).unwrap();
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first, all[0]);

    // The customer lifts the freeze with the key's own signature.
    let (status, body) = http(
        &addr,
        "POST",
        &signed("/ztx/v1/apiKey/unfreeze", "", &secret),
        Some(&api_key),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        http(
            &addr,
            "GET",
            &signed("/api/v3/account", "", &secret),
            Some(&api_key)
        )
        .0,
        200
    );
}

#[test]
fn admin_events_without_a_running_server_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    std::fs::create_dir_all(&data).unwrap();
    let out = ztx(&["admin", "--data-dir", data.to_str().unwrap(), "events"]);
    fails_with(&out, "is `ztx serve --data-dir");
}

/// The actors of the log's `admin customer create` events, in order.
fn customer_creations(d: &str) -> Vec<(String, String)> {
    events(d, &[])
        .into_iter()
        .filter(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("admin customer create"))
        })
        .map(|e| {
            (
                e["actor"]["user"]["name"].as_str().unwrap().to_owned(),
                e["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Before, `ztx admin` wrote customers and keys straight into the store, where no entry
/// recorded them: an operator could add an account the log never showed. Now the command
/// is logged first, whether a server runs (it goes to the admin API) or not (this
/// process appends to the log itself, holding the data directory's lock).
#[test]
fn an_account_added_by_an_operator_is_never_missing_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let d = data.to_str().unwrap();
    {
        // First start creates the data directory, its keys and its log.
        let _server = serve(&data, &[]);
    }
    let offline = ztx(&[
        "admin",
        "--data-dir",
        d,
        "customer",
        "create",
        "--email",
        "a@example.com",
    ]);
    assert!(offline.status.success(), "{}", stderr(&offline));
    let (_server, _addr) = serve(&data, &[]);
    let online = ztx(&[
        "admin",
        "--data-dir",
        d,
        "customer",
        "create",
        "--email",
        "b@example.com",
    ]);
    assert!(online.status.success(), "{}", stderr(&online));
    let key = ztx(&[
        "admin",
        "--data-dir",
        d,
        "api-key",
        "create",
        "--customer",
        "2",
        "--permissions",
        "read",
    ]);
    assert!(key.status.success(), "{}", stderr(&key));
    let creations = customer_creations(d);
    assert_eq!(creations.len(), 2, "{creations:?}");
    // Run on the data directory, the command names the system user; through the server,
    // the operator its mTLS certificate names.
    assert!(creations[0].0.ends_with("@data-dir"), "{creations:?}");
    assert_eq!(creations[1].0, "spiffe://ztx.local/operator/bootstrap");
    assert!(creations.iter().all(|(_, status)| status == "Success"));
    let keys: Vec<Value> = events(d, &[])
        .into_iter()
        .filter(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("admin api-key create"))
        })
        .collect();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["class_uid"], 3001);
    assert_eq!(keys[0]["unmapped"]["params"]["customer"], "2");
}

/// Test funds credited by the faucet, with a server running or not, are in the log with
/// the operator who asked for them.
#[test]
fn money_credited_by_the_faucet_is_never_missing_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let d = data.to_str().unwrap();
    {
        let _server = serve(&data, &[]);
    }
    let admin = |args: &[&str]| {
        let mut full = vec!["admin", "--data-dir", d];
        full.extend_from_slice(args);
        let out = ztx(&full);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        out
    };
    admin(&["customer", "create", "--email", "f@example.com"]);
    let deposit = ["faucet", "--customer", "1", "--asset", "USDT", "--amount"];
    let offline = admin(&[&deposit[..], &["7", "--json"]].concat());
    let offline: Value = serde_json::from_slice(&offline.stdout).unwrap();
    assert_eq!(offline["status"], "credited");
    let (_server, _addr) = serve(&data, &[]);
    let online = admin(&[&deposit[..], &["8", "--json"]].concat());
    let online: Value = serde_json::from_slice(&online.stdout).unwrap();
    assert_eq!(online["available"], "15.00000000", "{online}");
    let deposits: Vec<Value> = events(d, &[])
        .into_iter()
        .filter(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("admin faucet deposit"))
        })
        .collect();
    assert_eq!(deposits.len(), 2, "{deposits:?}");
    let by = |e: &Value| e["actor"]["user"]["name"].as_str().unwrap().to_owned();
    assert!(by(&deposits[0]).ends_with("@data-dir"), "{deposits:?}");
    assert_eq!(by(&deposits[1]), "spiffe://ztx.local/operator/bootstrap");
    let amounts: Vec<_> = deposits
        .iter()
        .map(|e| e["unmapped"]["params"]["amount"].clone())
        .collect();
    assert_eq!(amounts, ["7", "8"]);
}

/// Two servers on one data directory would each extend the audit log from the same
/// point, forking it; the second is refused.
#[test]
fn a_second_server_on_the_same_data_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let (_server, _addr) = serve(&data, &[]);
    let second = ztx(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    fails_with(
        &second,
        "another ztx serve is running on the data directory",
    );
}

/// The nice value of each of a process's threads, by thread name (Linux reports each
/// thread's own in field 19 of `/proc/<pid>/task/<tid>/stat`).
#[cfg(target_os = "linux")]
fn thread_nice(pid: u32) -> Vec<(String, i32)> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(dir.join("comm")),
            std::fs::read_to_string(dir.join("stat")),
        ) else {
            continue; // the thread ended meanwhile
        };
        let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
        let nice = after_comm
            .split_whitespace()
            .nth(16)
            .unwrap()
            .parse()
            .unwrap();
        threads.push((comm.trim_end().to_owned(), nice));
    }
    threads
}

/// The monitor follows the log after the fact; under load the threads that answer
/// requests come first. Its thread and the store's upkeep run at a lower priority than
/// the engine, the writer and the HTTP threads.
#[cfg(target_os = "linux")]
#[test]
fn the_security_monitor_yields_to_the_request_path() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _addr) = serve(dir.path(), &[]);
    let mine = thread_nice(std::process::id())[0].1;
    let background = 10.max(mine);
    let mut threads = Vec::new();
    eventually("the background threads to lower their priority", || {
        threads = thread_nice(server.0.id());
        ["ztx-monitor", "ztx-upkeep"].iter().all(|name| {
            threads
                .iter()
                .any(|(n, nice)| n == name && *nice == background)
        })
    });
    for name in ["ztx-engine", "ztx-writer", "tokio-rt-worker"] {
        let of_name: Vec<i32> = threads
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, nice)| *nice)
            .collect();
        assert!(!of_name.is_empty(), "no thread {name} in {threads:?}");
        assert!(
            of_name.iter().all(|&n| n == mine),
            "{name} at {of_name:?}, not {mine}"
        );
    }
}

/// A ban is stored with the entry that records it: killing the server and starting it
/// again does not lift it.
#[test]
fn a_ban_outlives_a_crash_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let (server, addr) = serve(&data, &[]);
    let d = data.to_str().unwrap();
    // Twelve forged signatures from one address (the default threshold is ten), spread
    // over three keys so that none reaches its own freezing threshold of five (a frozen
    // key's requests are refused before their signature is checked).
    let keys: Vec<String> = (0..3)
        .map(|i| customer_with_key(d, &format!("saver{i}@example.com")).0)
        .collect();
    for _ in 0..4 {
        for api_key in &keys {
            let (status, _) = http(
                &addr,
                "GET",
                &signed("/api/v3/account", "", "not-the-secret"),
                Some(api_key),
            );
            assert!(status == 400 || status == 418, "{status}");
        }
    }
    eventually("the address to be banned", || {
        http(&addr, "GET", "/api/v3/ping", None).0 == 418
    });
    drop(server); // SIGKILL
    let (_server, addr) = serve(&data, &[]);
    let (status, body) = http(&addr, "GET", "/api/v3/ping", None);
    assert_eq!(status, 418, "{body}");
}

/// One request a receiver got: its headers (names lower-cased) and body.
type Received = (Vec<(String, String)>, String);

/// A webhook receiver on a loopback port, answering 200 to each request; what it got,
/// request by request.
fn webhook_receiver() -> (u16, std::sync::mpsc::Receiver<Received>) {
    use std::io::{BufRead as _, Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut headers = Vec::new();
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                if let Some((name, value)) = line.trim_end().split_once(':') {
                    headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
                }
                line.clear();
            }
            let length: usize = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = tx.send((headers, String::from_utf8(body).unwrap()));
        }
    });
    (port, rx)
}

/// A signed POST with its parameters in the body; (status, body).
fn signed_post(addr: &str, path: &str, params: &str, secret: &str, api_key: &str) -> (u16, String) {
    let params = format!("{params}&timestamp={}", now_ms());
    let signature =
        ztx_api::HmacSecret::new(secret.as_bytes().to_vec()).sign_hex(params.as_bytes());
    let body = format!("{params}&signature={signature}");
    http_with_body(addr, "POST", path, Some(api_key), &body)
}

#[test]
fn on_postgresql_a_detection_reaches_the_customers_webhook() {
    // The whole path on PostgreSQL under a service role and row security: the customer
    // registers over HTTP, the sender reads the sealed webhook, the monitor's notice
    // is posted, signed with the secret the customer got.
    let Some((_cluster, _owner, url)) = postgres_for_serving() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    std::fs::create_dir_all(&data).unwrap();
    // Development mode, and the receiver is on this machine.
    let config = default_config().replace("allow_insecure = false", "allow_insecure = true");
    std::fs::write(data.join("config.toml"), config).unwrap();
    let (port, received) = webhook_receiver();
    let (_server, addr) = serve(&data, &["--database-url", &url]);
    let d = data.to_str().unwrap();
    let (api_key, secret) = customer_with_key(d, "hooked@example.com");

    let hook = format!("http%3A%2F%2F127.0.0.1%3A{port}%2Fhook");
    let (status, body) = signed_post(
        &addr,
        "/ztx/v1/webhook",
        &format!("url={hook}"),
        &secret,
        &api_key,
    );
    assert_eq!(status, 200, "{body}");
    let registered: Value = serde_json::from_str(&body).unwrap();
    let whsec = registered["secret"].as_str().unwrap().to_owned();
    let (status, body) = http(
        &addr,
        "GET",
        &signed("/ztx/v1/webhook", "", &secret),
        Some(&api_key),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("127.0.0.1:{port}/hook")), "{body}");

    let arrive = |what: &str| {
        let (headers, body) = received
            .recv_timeout(std::time::Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no webhook for {what}"));
        let signature = headers
            .iter()
            .find(|(n, _)| n == ztx_api::webhooks::SIGNATURE_HEADER)
            .map(|(_, v)| v.clone())
            .unwrap();
        ztx_api::webhooks::verify_signature(
            whsec.as_bytes(),
            &signature,
            body.as_bytes(),
            now_ms(),
            300_000,
        )
        .unwrap();
        serde_json::from_str::<Value>(&body).unwrap()
    };
    // The notice of the registration itself, then the detection's.
    assert_eq!(arrive("the registration")["finding"], "account-change");
    forge_signatures(&addr, &api_key, 5);
    let notice = arrive("the detection");
    assert!(
        notice["message"].as_str().unwrap().contains("frozen"),
        "{notice}"
    );
}
