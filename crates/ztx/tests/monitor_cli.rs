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

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Polls `f` for up to 20 s.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
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
    for _ in 0..5 {
        let (status, _) = http(
            &addr,
            "GET",
            &signed("/api/v3/account", "", "not-the-secret"),
            Some(&api_key),
        );
        assert_eq!(status, 400);
    }
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
