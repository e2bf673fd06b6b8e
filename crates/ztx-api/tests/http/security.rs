//! Detection and response over the API: the monitor follows the audit log, each rule
//! fires on what an attacker does, and each response — a ban, a frozen key, a
//! notification — is in the log, linked to the events behind it, before it takes
//! effect. The monitor is stepped by hand, so the tests see exactly when it acts.

use std::net::{IpAddr, Ipv4Addr};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use http_body_util::BodyExt as _;
use serde_json::Value;
use tower::ServiceExt as _;
use ztx_api::monitor::{FileSink, Monitor};
use ztx_audit::{Denial, Entry, Kind, Outcome};
use ztx_monitor::DetectionConfig;
use ztx_store::Store as _;

use super::*;

const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 66));
const ACCOUNT: &str = "/api/v3/account";

/// Steps the monitor until it has seen the whole log.
async fn drain(monitor: &mut Monitor) {
    while monitor.step().await.unwrap() > 0 {}
}

fn param<'a>(entry: &'a Entry, name: &str) -> Option<&'a str> {
    ztx_monitor::ocsf::param(entry, name)
}

/// The entries of the finding `detect <rule>` and its responses, in log order.
fn finding(log: &[Entry], rule: &str) -> Vec<Entry> {
    let detect = log
        .iter()
        .find(|e| e.action == format!("detect {rule}"))
        .unwrap_or_else(|| panic!("no finding of {rule}"));
    let uid = param(detect, "finding").unwrap();
    log.iter()
        .filter(|e| param(e, "finding") == Some(uid))
        .cloned()
        .collect()
}

/// The log indices the finding links to.
fn linked(detect: &Entry) -> Vec<usize> {
    param(detect, "events")
        .unwrap()
        .split(',')
        .map(|i| i.parse().unwrap())
        .collect()
}

#[tokio::test]
async fn a_signature_failure_burst_freezes_the_key_until_its_customer_re_enables_it() {
    let (mut ex, alice, bob) = setup().await;
    let mut monitor = ex.monitor().await;
    // Someone with Alice's key string but not her secret.
    let forged = alice.signing_with(&bob);
    for _ in 0..5 {
        ex.send(
            ex.signed_req(Method::GET, ACCOUNT, "", &forged)
                .sent_from(ATTACKER),
        )
        .await
        .assert_error(
            StatusCode::BAD_REQUEST,
            -1022,
            "Signature for this request is not valid.",
        );
    }
    ex.signed(Method::GET, ACCOUNT, "", &alice)
        .await
        .assert_ok();
    drain(&mut monitor).await;

    let log = ex.audit_log();
    let entries = finding(&log, "bad_signatures_per_key");
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "detect bad_signatures_per_key",
            "api-key freeze",
            "notify customer"
        ]
    );
    // The finding names exactly the five forged requests.
    let events = linked(&entries[0]);
    assert_eq!(events.len(), 5);
    for i in events {
        assert_eq!(log[i].denial, Some(Denial::BadSignature));
        assert_eq!(log[i].api_key, Some(ex.key_id(&alice)));
    }
    assert_eq!(entries[1].kind, Kind::KeyChange);
    assert_eq!(entries[1].api_key, Some(ex.key_id(&alice)));

    // Frozen: even Alice's own valid signature is refused now.
    ex.signed(Method::GET, ACCOUNT, "", &alice)
        .await
        .assert_error(
            StatusCode::UNAUTHORIZED,
            -2015,
            "Invalid API-key, IP, or permissions for action.",
        );
    assert_eq!(
        ex.request_log().last().unwrap().denial,
        Some(Denial::KeyFrozen)
    );

    // Alice reads why with another key of hers, and a message waits for her mail.
    let other = ex.hmac_key(alice.customer, "read", "");
    let notes = ex
        .signed(Method::GET, "/ztx/v1/notifications", "", &other)
        .await;
    let notes = notes.assert_ok().as_array().unwrap().clone();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0]["finding"], param(&entries[0], "finding").unwrap());
    assert!(notes[0]["message"].as_str().unwrap().contains("frozen"));
    let outbox = ex
        .store()
        .pending_outbox(ztx_store::Channel::Email, 1 << 62, 10)
        .unwrap();
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].channel(), ztx_store::Channel::Email);
    assert_eq!(outbox[0].notification.customer, alice.customer);
    // Bob was not told anything.
    let bobs = ex
        .signed(Method::GET, "/ztx/v1/notifications", "", &bob)
        .await;
    assert_eq!(bobs.assert_ok().as_array().unwrap().len(), 0);

    // The forger cannot lift the freeze; Alice can, with her own signature.
    ex.signed(Method::POST, "/ztx/v1/apiKey/unfreeze", "", &forged)
        .await
        .assert_error(
            StatusCode::BAD_REQUEST,
            -1022,
            "Signature for this request is not valid.",
        );
    let lifted = ex
        .signed(Method::POST, "/ztx/v1/apiKey/unfreeze", "", &alice)
        .await;
    assert_eq!(lifted.assert_ok()["frozen"], false);
    let log = ex.audit_log();
    let change = &log[log.len() - 1];
    assert_eq!(
        (change.kind, change.action.as_str()),
        (Kind::KeyChange, "api-key unfreeze")
    );
    assert_eq!(log[log.len() - 2].action, "POST /ztx/v1/apiKey/unfreeze");
    ex.signed(Method::GET, ACCOUNT, "", &alice)
        .await
        .assert_ok();
}

#[tokio::test]
async fn bad_signatures_from_one_address_get_it_banned_with_418() {
    let (ex, alice, bob) = setup().await;
    // Only the per-address rule, so that the keys stay usable.
    let mut config = DetectionConfig::default();
    config.bad_signatures_per_key.enabled = false;
    let mut monitor = ex.monitor_with(config, None).await;
    let forged = alice.signing_with(&bob);
    for _ in 0..10 {
        ex.send(
            ex.signed_req(Method::GET, ACCOUNT, "", &forged)
                .sent_from(ATTACKER),
        )
        .await;
    }
    drain(&mut monitor).await;
    let log = ex.audit_log();
    let entries = finding(&log, "bad_signatures_per_ip");
    let ban = entries.iter().find(|e| e.action == "ban ip").unwrap();
    assert_eq!(ban.client_ip, Some(ATTACKER));
    assert_eq!(
        param(ban, "until_ms"),
        Some((NOW + 600_000).to_string().as_str())
    );

    // Banned: every request from the address, even a public one, gets Binance's 418.
    let banned = ex
        .send(Req::get("/api/v3/ping", "").sent_from(ATTACKER))
        .await;
    assert_eq!(banned.status, StatusCode::IM_A_TEAPOT);
    assert_eq!(banned.json["code"], -1003);
    assert_eq!(banned.header_u64("retry-after"), Some(600));
    let refusal = ex.request_log().last().unwrap().clone();
    assert_eq!(
        (refusal.outcome, refusal.denial),
        (Outcome::Denied, Some(Denial::IpBanned))
    );
    // Alice, from her own address, is not affected.
    ex.signed(Method::GET, ACCOUNT, "", &alice)
        .await
        .assert_ok();
    // The ban ends when it said.
    ex.advance_ms(600_000);
    ex.send(Req::get("/api/v3/ping", "").sent_from(ATTACKER))
        .await
        .assert_ok();
}

#[tokio::test]
async fn a_key_used_from_a_new_address_tells_its_customer_once() {
    let (ex, alice, _) = setup().await;
    let mut monitor = ex.monitor().await;
    let home = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 20));
    let away = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 9));
    let account = |ip| {
        ex.signed_req(Method::GET, ACCOUNT, "", &alice)
            .sent_from(ip)
    };
    ex.send(account(home)).await.assert_ok();
    drain(&mut monitor).await;
    let notes = || async {
        let r = ex
            .signed(Method::GET, "/ztx/v1/notifications", "", &alice)
            .await;
        r.assert_ok().as_array().unwrap().clone()
    };
    // The key's first address is learned without a word (the notifications request
    // itself comes from CLIENT_IP, a second address, so it is noticed in turn).
    assert_eq!(notes().await.len(), 0);
    drain(&mut monitor).await;
    ex.send(account(away)).await.assert_ok();
    ex.send(account(away)).await.assert_ok();
    drain(&mut monitor).await;
    let all = notes().await;
    assert_eq!(all.len(), 2, "one notice per new address: {all:?}");
    assert!(all[0]["message"].as_str().unwrap().contains("198.51.100.9"));

    // A restarted monitor remembers the addresses from the store.
    drop(monitor);
    let mut monitor = ex.monitor().await;
    ex.send(account(away)).await.assert_ok();
    ex.send(account(home)).await.assert_ok();
    drain(&mut monitor).await;
    assert_eq!(notes().await.len(), 2);
}

#[tokio::test]
async fn requests_from_outside_the_allow_list_ban_the_address() {
    let (mut ex, alice, _) = setup().await;
    let mut monitor = ex.monitor().await;
    let pinned = ex.hmac_key(alice.customer, "read", "192.0.2.10");
    for _ in 0..3 {
        ex.send(
            ex.signed_req(Method::GET, ACCOUNT, "", &pinned)
                .sent_from(ATTACKER),
        )
        .await
        .assert_error(
            StatusCode::UNAUTHORIZED,
            -2015,
            "Invalid API-key, IP, or permissions for action.",
        );
    }
    drain(&mut monitor).await;
    let entries = finding(&ex.audit_log(), "outside_allow_list");
    assert!(entries.iter().any(|e| e.action == "ban ip"));
    assert!(
        entries
            .iter()
            .any(|e| e.action == "notify customer" && e.customer == Some(alice.customer.0))
    );
    let banned = ex
        .send(Req::get("/api/v3/time", "").sent_from(ATTACKER))
        .await;
    assert_eq!(banned.status, StatusCode::IM_A_TEAPOT);
    // From the allowed address the key still works.
    ex.signed(Method::GET, ACCOUNT, "", &pinned)
        .await
        .assert_ok();
}

#[tokio::test]
async fn an_account_query_burst_from_one_address_bans_it() {
    let (ex, alice, _) = setup().await;
    let mut monitor = ex.monitor().await;
    for _ in 0..39 {
        ex.signed(Method::GET, ACCOUNT, "", &alice)
            .await
            .assert_ok();
    }
    drain(&mut monitor).await;
    assert!(
        ex.audit_log()
            .iter()
            .all(|e| !e.action.starts_with("detect account"))
    );
    ex.signed(Method::GET, ACCOUNT, "", &alice)
        .await
        .assert_ok();
    drain(&mut monitor).await;
    let entries = finding(&ex.audit_log(), "account_query_burst");
    // The finding links all forty queries that fired it.
    assert_eq!(linked(&entries[0]).len(), 40);
    let banned = ex.signed(Method::GET, ACCOUNT, "", &alice).await;
    assert_eq!(banned.status, StatusCode::IM_A_TEAPOT);
}

/// The monitor takes rows from the writer's feed as they commit and, for those the full
/// queue dropped, from the store: either way each entry is one event, in order.
#[tokio::test]
async fn the_monitor_sees_each_entry_once_whether_handed_over_or_dropped() {
    let (ex, alice, _) = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let sink = FileSink {
        dir: dir.path().to_path_buf(),
        max_bytes: 1 << 20,
        keep: 3,
    };
    let mut monitor = ex
        .monitor_with(DetectionConfig::default(), Some(sink))
        .await
        .following(ex.take_feed());
    // Many more commits than the queue holds, none taken meanwhile: most are dropped.
    for _ in 0..3 * common::FEED_COMMITS {
        ex.signed(Method::GET, ACCOUNT, "", &alice)
            .await
            .assert_ok();
    }
    drain(&mut monitor).await;
    // Then one at a time, each taken from the feed as it comes (with, at times, the
    // engine's own upkeep entries that share the request's commit).
    for _ in 0..5 {
        ex.signed(Method::GET, ACCOUNT, "", &alice)
            .await
            .assert_ok();
        let taken = monitor.step().await.unwrap();
        assert!((1..=3).contains(&taken), "{taken} entries in one step");
    }
    drain(&mut monitor).await;
    let text = std::fs::read_to_string(dir.path().join(ztx_monitor::sink::FILE_NAME)).unwrap();
    let sequence: Vec<u64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["metadata"]["sequence"]
                .as_u64()
                .unwrap()
        })
        .collect();
    let size = u64::try_from(ex.audit_log().len()).unwrap();
    assert_eq!(sequence, (0..size).collect::<Vec<_>>());
}

#[tokio::test]
async fn every_entry_becomes_one_ocsf_event_in_the_file_across_restarts() {
    let (ex, alice, bob) = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let sink = FileSink {
        dir: dir.path().to_path_buf(),
        max_bytes: 1 << 20,
        keep: 3,
    };
    let mut monitor = ex
        .monitor_with(DetectionConfig::default(), Some(sink.clone()))
        .await;
    ex.signed(Method::GET, ACCOUNT, "", &alice)
        .await
        .assert_ok();
    let forged = alice.signing_with(&bob);
    ex.signed(Method::GET, ACCOUNT, "", &forged).await;
    drain(&mut monitor).await;
    drop(monitor);
    ex.send(Req::get("/api/v3/ping", "")).await.assert_ok();
    let mut monitor = ex
        .monitor_with(DetectionConfig::default(), Some(sink))
        .await;
    drain(&mut monitor).await;

    let text = std::fs::read_to_string(dir.path().join(ztx_monitor::sink::FILE_NAME)).unwrap();
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let log = ex.audit_log();
    assert_eq!(events.len(), log.len(), "one event per entry, none twice");
    for (i, (event, entry)) in events.iter().zip(&log).enumerate() {
        assert_eq!(event["metadata"]["sequence"], i);
        assert_eq!(event["time"], entry.time_ms);
    }
    let forged_event = events
        .iter()
        .find(|e| e["status_detail"] == "bad_signature")
        .unwrap();
    assert_eq!(forged_event["class_uid"], 3002);
    let last_request = events
        .iter()
        .rev()
        .find(|e| e["unmapped"]["kind"] == "request")
        .unwrap();
    assert_eq!(last_request["api"]["operation"], "GET /api/v3/ping");
}

async fn admin_get(ex: &Exchange, uri: &str, token: Option<&str>) -> (StatusCode, Value) {
    admin_call(ex, Method::GET, uri, token, None).await
}

async fn admin_post(
    ex: &Exchange,
    uri: &str,
    token: Option<&str>,
    body: Value,
) -> (StatusCode, Value) {
    admin_call(ex, Method::POST, uri, token, Some(body)).await
}

async fn admin_call(
    ex: &Exchange,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let router = ztx_api::admin::admin_router(
        ex.state.clone(),
        ztx_api::admin::token_digest("operator-token"),
        ztx_monitor::Product {
            name: "ztx".into(),
            version: "test".into(),
            log_name: "ztx.test/audit".into(),
        },
    );
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    let body = match body {
        Some(json) => {
            builder = builder.header("content-type", "application/json");
            Body::from(json.to_string())
        }
        None => Body::empty(),
    };
    let mut request = builder.body(body).unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(ztx_api::admin::AdminPeer {
            addr: std::net::SocketAddr::new(common::CLIENT_IP, 40_000),
            operator: None,
        }));
    let response = router.oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

/// The log's entries of one admin command, in order.
fn commands(ex: &Exchange, action: &str) -> Vec<Entry> {
    ex.audit_log()
        .into_iter()
        .filter(|e| e.action == action)
        .collect()
}

#[tokio::test]
async fn an_operator_command_is_in_the_log_before_it_takes_effect() {
    let (ex, _, _) = setup().await;
    let (status, created) = admin_post(
        &ex,
        "/ztx/admin/v1/customers",
        Some("operator-token"),
        serde_json::json!({ "email": "New@Example.com" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(created["email"], "new@example.com");
    let id = created["customer_id"].as_u64().unwrap();
    assert!(
        ex.store()
            .customer_scope(ztx_core::CustomerId(id))
            .unwrap()
            .customer()
            .unwrap()
            .is_some()
    );
    let logged = commands(&ex, "admin customer create");
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0].kind, Kind::Admin);
    assert_eq!(logged[0].outcome, Outcome::Success);
    assert_eq!(
        logged[0].operator.as_deref(),
        Some(ztx_api::admin::TOKEN_OPERATOR)
    );
    // The address is personal data and stays out of the log.
    assert!(
        logged[0]
            .params
            .iter()
            .all(|(_, v)| !v.contains("example.com"))
    );

    let (status, key) = admin_post(
        &ex,
        "/ztx/admin/v1/api-keys",
        Some("operator-token"),
        serde_json::json!({ "customer": id, "permissions": "read", "ip": ["192.0.2.7"] }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{key}");
    let secret = key["secret"].as_str().unwrap();
    let logged = commands(&ex, "admin api-key create");
    assert_eq!(logged.len(), 1);
    assert_eq!(param(&logged[0], "customer"), Some(id.to_string().as_str()));
    assert_eq!(param(&logged[0], "permissions"), Some("read"));
    assert_eq!(param(&logged[0], "allow_list"), Some("192.0.2.7"));
    // Neither the secret nor the key itself is logged.
    let api_key = key["api_key"].as_str().unwrap();
    assert!(
        logged[0]
            .params
            .iter()
            .all(|(_, v)| !v.contains(secret) && !v.contains(api_key))
    );
    let stored = ex.store().api_key_by_key(api_key).unwrap().unwrap();
    assert_eq!(stored.customer.0, id);
}

#[tokio::test]
async fn an_operator_command_that_fails_says_why_in_the_log_and_changes_nothing() {
    let (ex, _, _) = setup().await;
    let customers_before = customer_count(&ex);
    let email = serde_json::json!({ "email": "twice@example.com" });
    let (status, _) = admin_post(
        &ex,
        "/ztx/admin/v1/customers",
        Some("operator-token"),
        email.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, again) = admin_post(
        &ex,
        "/ztx/admin/v1/customers",
        Some("operator-token"),
        email,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    let logged = commands(&ex, "admin customer create");
    let outcomes: Vec<_> = logged.iter().map(|e| e.outcome).collect();
    // The second command was logged before it was tried, then its failure.
    assert_eq!(
        outcomes,
        [Outcome::Success, Outcome::Success, Outcome::Failure]
    );
    assert!(
        param(&logged[2], "error")
            .unwrap()
            .contains("exists already")
    );

    let (status, bad) = admin_post(
        &ex,
        "/ztx/admin/v1/customers",
        Some("operator-token"),
        serde_json::json!({ "email": "not an address" }),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        bad["error"]
            .as_str()
            .unwrap()
            .contains("not an e-mail address")
    );
    assert_eq!(
        commands(&ex, "admin customer create")
            .last()
            .unwrap()
            .outcome,
        Outcome::Failure
    );

    for (body, status, says) in [
        (
            serde_json::json!({ "customer": 999, "permissions": "read" }),
            StatusCode::NOT_FOUND,
            "does not exist",
        ),
        (
            serde_json::json!({ "customer": 1, "permissions": "withdraw" }),
            StatusCode::BAD_REQUEST,
            "withdraw",
        ),
        (
            serde_json::json!({ "customer": 1, "permissions": "read", "ip": ["nowhere"] }),
            StatusCode::BAD_REQUEST,
            "not an IP address",
        ),
    ] {
        let before = ex.request_log().len();
        let (got, answer) =
            admin_post(&ex, "/ztx/admin/v1/api-keys", Some("operator-token"), body).await;
        assert_eq!(got, status, "{answer}");
        assert!(answer["error"].as_str().unwrap().contains(says), "{answer}");
        // Refused before it was made: one entry, the failure.
        let log = ex.request_log();
        assert_eq!(log.len(), before + 1);
        assert_eq!(log.last().unwrap().outcome, Outcome::Failure);
    }
    // A body that is not the command's is refused, naming the field, and creates nothing.
    let (status, bad) = admin_post(
        &ex,
        "/ztx/admin/v1/customers",
        Some("operator-token"),
        serde_json::json!({ "mail": "someone@example.com" }),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(bad["error"].as_str().unwrap().contains("mail"), "{bad}");
    let last = commands(&ex, "admin customer create").pop().unwrap();
    assert_eq!(last.outcome, Outcome::Failure);
    assert!(param(&last, "error").unwrap().contains("mail"), "{last:?}");
    // Only the first "twice@" was created.
    assert_eq!(
        customers_before + 1,
        customer_count(&ex),
        "a customer was created"
    );
}

/// The faucet's credit is the exchange's own command: its entry commits with the credit,
/// and a refused deposit is a failed entry that credits nothing.
#[tokio::test]
async fn a_faucet_deposit_is_logged_in_the_commit_that_credits_it() {
    let (mut ex, _, _) = setup().await;
    ex.store().init_mode(ztx_store::Mode::Development).unwrap();
    let customer = ex.customer();
    let balance = |ex: &Exchange| {
        let handle = ex.handle.clone();
        async move {
            handle
                .query(ztx_engine::Query::Balances(customer))
                .await
                .unwrap()
        }
    };
    let before = balance(&ex).await;
    let deposit = |asset: &str, amount: &str| serde_json::json!({ "customer": customer.0, "asset": asset, "amount": amount });
    let (status, credited) = admin_post(
        &ex,
        "/ztx/admin/v1/deposits",
        Some("operator-token"),
        deposit("USDT", "250.5"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{credited}");
    assert_eq!(credited["amount"], "250.50000000");
    let logged = commands(&ex, "admin faucet deposit");
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0].outcome, Outcome::Success);
    assert_eq!(
        logged[0].operator.as_deref(),
        Some(ztx_api::admin::TOKEN_OPERATOR)
    );
    assert_eq!(param(&logged[0], "amount"), Some("250.5"));
    assert_eq!(param(&logged[0], "asset"), Some("USDT"));
    let after = balance(&ex).await;
    assert_ne!(before, after, "the deposit credited nothing");

    for (body, status, says) in [
        (
            deposit("DOGE", "1"),
            StatusCode::BAD_REQUEST,
            "unknown asset",
        ),
        (deposit("USDT", "0"), StatusCode::BAD_REQUEST, "positive"),
        (
            deposit("USDT", "0.000000001"),
            StatusCode::BAD_REQUEST,
            "decimal",
        ),
        (
            serde_json::json!({ "customer": 999, "asset": "USDT", "amount": "1" }),
            StatusCode::NOT_FOUND,
            "does not exist",
        ),
    ] {
        let (got, answer) =
            admin_post(&ex, "/ztx/admin/v1/deposits", Some("operator-token"), body).await;
        assert_eq!(got, status, "{answer}");
        assert!(answer["error"].as_str().unwrap().contains(says), "{answer}");
        let last = commands(&ex, "admin faucet deposit").pop().unwrap();
        assert_eq!(last.outcome, Outcome::Failure);
        assert!(param(&last, "error").unwrap().contains(says), "{last:?}");
    }
    assert_eq!(balance(&ex).await, after, "a refused deposit credited");
}

#[tokio::test]
async fn the_faucet_of_a_production_exchange_is_refused_and_logged() {
    let (mut ex, _, _) = setup().await;
    ex.store().init_mode(ztx_store::Mode::Production).unwrap();
    let customer = ex.customer();
    let balances = || {
        let handle = ex.handle.clone();
        async move {
            handle
                .query(ztx_engine::Query::Balances(customer))
                .await
                .unwrap()
        }
    };
    let before = balances().await;
    let (status, answer) = admin_post(
        &ex,
        "/ztx/admin/v1/deposits",
        Some("operator-token"),
        serde_json::json!({ "customer": customer.0, "asset": "USDT", "amount": "1000" }),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("development only")
    );
    let logged = commands(&ex, "admin faucet deposit");
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0].outcome, Outcome::Failure);
    assert_eq!(balances().await, before, "credited");
}

#[tokio::test]
async fn a_forged_admin_command_is_refused_logged_and_changes_nothing() {
    let (ex, _, _) = setup().await;
    let customers_before = customer_count(&ex);
    for token in [None, Some("guess")] {
        let (status, answer) = admin_post(
            &ex,
            "/ztx/admin/v1/customers",
            token,
            serde_json::json!({ "email": "intruder@example.com" }),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
        let last = ex.request_log().last().unwrap().clone();
        assert_eq!(last.action, "admin customer create");
        assert_eq!(
            (last.outcome, last.denial),
            (Outcome::Denied, Some(Denial::UnknownKey))
        );
        assert_eq!(last.operator, None);
    }
    assert!(
        commands(&ex, "admin customer create")
            .iter()
            .all(|e| e.outcome == Outcome::Denied)
    );
    assert_eq!(
        customers_before,
        customer_count(&ex),
        "the forged command created a customer"
    );
}

#[tokio::test]
async fn the_admin_endpoint_pages_through_the_events_with_a_cursor() {
    let (ex, alice, _) = setup().await;
    for _ in 0..4 {
        ex.signed(Method::GET, ACCOUNT, "", &alice)
            .await
            .assert_ok();
    }
    let size = ex.audit_log().len();
    let (status, page) =
        admin_get(&ex, "/ztx/admin/v1/events?limit=3", Some("operator-token")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["events"].as_array().unwrap().len(), 3);
    assert_eq!(page["next_cursor"], 3);
    assert_eq!(page["events"][0]["metadata"]["uid"], "0");
    let (_, rest) = admin_get(
        &ex,
        "/ztx/admin/v1/events?cursor=3&limit=1000",
        Some("operator-token"),
    )
    .await;
    // The first page's own request is in the log too, before its answer, and with it
    // its two store calls (the log's size and its entries), by the operator.
    let rest = rest["events"].as_array().unwrap();
    // From entry 3 on: all but the first page of the `size` before, and those three.
    assert!(rest.len() >= size, "{} events", rest.len());
    let kind = |e: &Value| e["unmapped"]["kind"].as_str().unwrap().to_owned();
    let read = rest
        .iter()
        .rev()
        .find(|e| kind(e) == "admin")
        .unwrap()
        .clone();
    assert_eq!(read["class_uid"], 6005);
    let calls: Vec<&Value> = rest.iter().filter(|e| kind(e) == "data_access").collect();
    let by_operator: Vec<(&str, &str)> = calls
        .iter()
        .filter(|e| e["actor"]["user"]["name"] == ztx_api::admin::TOKEN_OPERATOR)
        .map(|e| {
            (
                e["actor"]["app_name"].as_str().unwrap(),
                e["unmapped"]["params"]["activity"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(by_operator, vec![("admin", "read"), ("admin", "query")]);
    assert!(calls.iter().all(|e| e["class_uid"] == 6005));
    assert_eq!(
        read["actor"]["user"]["name"],
        ztx_api::admin::TOKEN_OPERATOR
    );

    let (status, refused) = admin_get(&ex, "/ztx/admin/v1/events", Some("guess")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(refused["error"].as_str().unwrap().contains("admin token"));
    let last = ex.request_log().last().unwrap().clone();
    assert_eq!((last.kind, last.outcome), (Kind::Admin, Outcome::Denied));
    let (status, _) = admin_get(&ex, "/ztx/admin/v1/events", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, bad) =
        admin_get(&ex, "/ztx/admin/v1/events?limit=0", Some("operator-token")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(bad["error"].as_str().unwrap().contains("limit"));
    let (status, bad) =
        admin_get(&ex, "/ztx/admin/v1/events?cursor=x", Some("operator-token")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(bad["error"].as_str().unwrap().contains("cursor"), "{bad}");
}

/// How many customers there are (ids are dense from 1).
fn customer_count(ex: &Exchange) -> usize {
    (1..=1_000u64)
        .take_while(|c| {
            ex.store()
                .customer_exists(ztx_core::CustomerId(*c))
                .unwrap()
        })
        .count()
}
