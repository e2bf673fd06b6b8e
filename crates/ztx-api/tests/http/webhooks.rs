//! Customers' webhooks: registered over the signed API with a key that may trade, logged
//! without the address's secret parts, sealed at rest, and each notification posted to a
//! real HTTP receiver on this machine, signed with the secret the customer was given;
//! failures are tried again later, redirects are not followed, addresses inside the
//! platform's network are refused, and nothing leaves before its read is in the log.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse as _;
use serde_json::Value;
use ztx_api::webhooks::{ID_HEADER, SIGNATURE_HEADER, verify_signature};
use ztx_audit::Kind;
use ztx_store::{Channel, Store as _};

use super::*;

const WEBHOOK: &str = "/ztx/v1/webhook";
const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 66));
/// How far a receiver lets a signature's time be from its clock.
const TOLERANCE_MS: u64 = 300_000;

/// What a receiver got: each request's headers and body.
type Received = Arc<Mutex<Vec<(HeaderMap, String)>>>;

/// A webhook receiver on a loopback port: it answers each request with the next of
/// `answers` (200 once they run out) and keeps what it got.
async fn receiver(answers: Vec<axum::response::Response>) -> (SocketAddr, Received) {
    let received: Received = Arc::default();
    let answers = Arc::new(Mutex::new(answers.into_iter().rev().collect::<Vec<_>>()));
    let kept = received.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap, body: String| {
        let kept = kept.clone();
        let answers = answers.clone();
        async move {
            kept.lock().unwrap().push((headers, body));
            answers
                .lock()
                .unwrap()
                .pop()
                .unwrap_or_else(|| StatusCode::OK.into_response())
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, received)
}

/// `url` as a parameter, percent-encoded.
fn url_param(url: &str) -> String {
    let mut out = String::from("url=");
    for b in url.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A signed registration of `url`, the address in the body as the endpoint wants it.
fn register_req(ex: &Exchange, key: &Key, url: &str) -> Req {
    Req::new(Method::POST, WEBHOOK, &format!("timestamp={}", ex.now()))
        .body(&url_param(url))
        .signed_by(key)
}

/// Registers `url` for `key`'s customer; the secret the answer gives.
async fn register(ex: &Exchange, key: &Key, url: &str) -> String {
    let answer = ex.send(register_req(ex, key, url)).await;
    let answer = answer.assert_ok();
    assert_eq!(answer["url"], url);
    answer["secret"].as_str().unwrap().to_owned()
}

/// Five forged signatures with Alice's key: detection freezes it and notifies her.
async fn freeze_alices_key(ex: &Exchange, alice: &Key, bob: &Key) {
    let mut monitor = ex.monitor().await;
    let forged = alice.signing_with(bob);
    for _ in 0..5 {
        ex.send(
            ex.signed_req(Method::GET, "/api/v3/account", "", &forged)
                .sent_from(ATTACKER),
        )
        .await;
    }
    while monitor.step().await.unwrap() > 0 {}
}

/// Webhook messages due now.
fn pending_webhooks(ex: &Exchange) -> usize {
    ex.store()
        .pending_outbox(Channel::Webhook, ex.now(), 100)
        .unwrap()
        .len()
}

fn signed_by(secret: &str, ex: &Exchange, (headers, body): &(HeaderMap, String)) -> bool {
    let header = headers[SIGNATURE_HEADER].to_str().unwrap();
    verify_signature(
        secret.as_bytes(),
        header,
        body.as_bytes(),
        ex.now(),
        TOLERANCE_MS,
    )
    .is_ok()
}

#[tokio::test]
async fn a_customers_notifications_reach_their_webhook_signed() {
    let (mut ex, alice, bob) = setup().await;
    ex.allow_insecure_webhooks();
    let (addr, received) = receiver(Vec::new()).await;
    let url = format!("http://{addr}/hooks/ztx?token=s3cr3t-path");
    let secret = register(&ex, &alice, &url).await;
    assert!(
        secret.starts_with("whsec_") && secret.len() == 70,
        "{secret}"
    );

    // She reads it back; Bob has none.
    let shown = ex.signed(Method::GET, WEBHOOK, "", &alice).await;
    assert_eq!(shown.assert_ok()["url"], url.as_str());
    let none = ex.signed(Method::GET, WEBHOOK, "", &bob).await;
    assert_eq!(none.assert_ok()["url"], Value::Null);

    // In the log: the request with its address removed, and the change naming the host
    // only; the address's token and the secret appear in no entry.
    let log = ex.request_log();
    let request = log
        .iter()
        .rfind(|e| e.action == "POST /ztx/v1/webhook")
        .unwrap();
    assert_eq!(
        ztx_monitor::ocsf::param(request, "url"),
        Some(ztx_api::audit::REMOVED)
    );
    let change = log.iter().rfind(|e| e.action == "webhook set").unwrap();
    assert_eq!(change.kind, Kind::KeyChange);
    assert_eq!(ztx_monitor::ocsf::param(change, "host"), Some("127.0.0.1"));
    assert_eq!(change.customer, Some(alice.customer.0));
    for row in ex.store().audit_entries(0, 100_000).unwrap() {
        let text = String::from_utf8_lossy(&row.entry);
        assert!(!text.contains("s3cr3t-path") && !text.contains(&secret[6..]));
    }
    // Sealed at rest: the stored row holds neither in the clear.
    let stored = ex
        .store()
        .customer_scope(alice.customer)
        .unwrap()
        .webhook()
        .unwrap()
        .unwrap();
    let raw = [stored.url_sealed, stored.secret_sealed].concat();
    assert!(!String::from_utf8_lossy(&raw).contains("s3cr3t-path"));

    // She is told of the change, in the API and at the new webhook.
    let notes = ex
        .signed(Method::GET, "/ztx/v1/notifications", "", &alice)
        .await;
    let notes = notes.assert_ok().as_array().unwrap().clone();
    assert_eq!(notes[0]["finding"], ztx_api::webhooks::ACCOUNT_CHANGE);
    assert!(notes[0]["message"].as_str().unwrap().contains("127.0.0.1"));
    assert_eq!(pending_webhooks(&ex), 1);
    let sender = ex.webhook_sender();
    assert_eq!(sender.step().await.unwrap(), 1);
    let first = received.lock().unwrap()[0].clone();
    assert!(signed_by(&secret, &ex, &first));
    let first: Value = serde_json::from_str(&first.1).unwrap();
    assert_eq!(first["finding"], ztx_api::webhooks::ACCOUNT_CHANGE);

    // A detection's notification goes to the webhook as well as by e-mail.
    let other = ex.hmac_key(alice.customer, "read", "");
    freeze_alices_key(&ex, &alice, &bob).await;
    assert_eq!(pending_webhooks(&ex), 1);
    assert_eq!(sender.step().await.unwrap(), 1);
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    let (headers, body) = &got[1];
    assert!(signed_by(&secret, &ex, &got[1]));
    assert!(!signed_by("whsec_guess", &ex, &got[1]));
    let event: Value = serde_json::from_str(body).unwrap();
    assert!(event["message"].as_str().unwrap().contains("frozen"));
    assert_eq!(
        headers[ID_HEADER].to_str().unwrap(),
        event["id"].to_string()
    );
    let listed = ex
        .signed(Method::GET, "/ztx/v1/notifications", "", &other)
        .await;
    assert_eq!(
        listed.assert_ok()[0]["finding"],
        event["finding"],
        "the webhook carries the notification the API lists"
    );
    // Delivered once: nothing waits, a second look sends nothing.
    assert_eq!(pending_webhooks(&ex), 0);
    assert_eq!(sender.step().await.unwrap(), 0);
    assert_eq!(received.lock().unwrap().len(), 2);
    // The sender's reads of the sealed webhook are in the log.
    assert!(ex.audit_log().iter().any(|e| {
        e.kind == Kind::DataAccess
            && ztx_monitor::ocsf::param(e, "service") == Some("webhooks")
            && e.action.contains("pending_outbox")
    }));
}

#[tokio::test]
async fn a_failed_delivery_is_tried_again_later_and_a_redirect_is_not_followed() {
    let (mut ex, alice, bob) = setup().await;
    ex.allow_insecure_webhooks();
    let (elsewhere, elsewhere_got) = receiver(Vec::new()).await;
    let redirect = (
        StatusCode::TEMPORARY_REDIRECT,
        [("location", format!("http://{elsewhere}/"))],
    )
        .into_response();
    let (addr, received) = receiver(vec![
        StatusCode::OK.into_response(),
        StatusCode::SERVICE_UNAVAILABLE.into_response(),
        redirect,
    ])
    .await;
    register(&ex, &alice, &format!("http://{addr}/hook")).await;
    let sender = ex.webhook_sender();
    assert_eq!(sender.step().await.unwrap(), 1, "the change's notice");
    received.lock().unwrap().clear();
    freeze_alices_key(&ex, &alice, &bob).await;

    assert_eq!(sender.step().await.unwrap(), 1, "503: failed");
    assert_eq!(sender.step().await.unwrap(), 0, "not due again yet");
    ex.advance_ms(ztx_store::outbox_retry_after_ms(1));
    assert_eq!(sender.step().await.unwrap(), 1, "307: failed, not followed");
    assert!(elsewhere_got.lock().unwrap().is_empty());
    ex.advance_ms(ztx_store::outbox_retry_after_ms(2));
    assert_eq!(sender.step().await.unwrap(), 1, "200: delivered");
    assert_eq!(pending_webhooks(&ex), 0);
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 3);
    // The same message each time, as the receiver can tell by its id.
    assert!(got.iter().all(|(h, _)| h[ID_HEADER] == got[0].0[ID_HEADER]));
}

#[tokio::test]
async fn a_webhook_aimed_inside_the_platforms_network_is_refused() {
    // The production policy: https:// on public addresses only.
    let (ex, alice, _) = setup().await;
    for (url, why) in [
        (
            "https://169.254.169.254/latest/meta-data/",
            "169.254.169.254 is not a public address",
        ),
        ("https://10.0.0.7/hook", "10.0.0.7 is not a public address"),
        ("https://[::1]/hook", "::1 is not a public address"),
        ("https://localhost/hook", "\"localhost\" names this machine"),
        ("https://127.1/hook", "\"127.1\" is not a host name"),
        ("http://hooks.example.com/", "its scheme must be https"),
        (
            "https://me:pw@hooks.example.com/",
            "it carries a user name or password",
        ),
    ] {
        refused(
            &ex,
            register_req(&ex, &alice, url),
            BAD_REQUEST,
            -1130,
            &format!("Data sent for parameter 'url' is not valid: {why}."),
        )
        .await;
    }
    // `url` in neither the query nor the body.
    let missing = ex.signed_req(Method::POST, WEBHOOK, "", &alice);
    refused(
        &ex,
        missing,
        BAD_REQUEST,
        -1102,
        "Mandatory parameter 'url' was not sent, was empty/null, or malformed.",
    )
    .await;
    assert_eq!(
        ex.store()
            .customer_scope(alice.customer)
            .unwrap()
            .webhook()
            .unwrap(),
        None
    );
    // A public https address is fine.
    register(&ex, &alice, "https://hooks.example.com/ztx").await;
}

#[tokio::test]
async fn a_webhook_to_this_machine_is_not_delivered_under_the_production_policy() {
    // Registered while insecure webhooks were allowed, delivered under the production
    // policy: the sender checks the address again at each delivery.
    let (mut ex, alice, bob) = setup().await;
    ex.allow_insecure_webhooks();
    let (addr, received) = receiver(Vec::new()).await;
    let url = format!("http://localhost:{}/hook", addr.port());
    register(&ex, &alice, &url).await;
    freeze_alices_key(&ex, &alice, &bob).await;
    let strict = ztx_api::webhooks::Sender::trusting(
        ex.state
            .clone()
            .with_webhook_policy(ztx_api::webhooks::WebhookPolicy::default()),
        rustls::RootCertStore::empty(),
    );
    // The change's notice and the detection's.
    assert_eq!(strict.step().await.unwrap(), 2);
    assert!(received.lock().unwrap().is_empty());
    assert_eq!(pending_webhooks(&ex), 0, "failed: waiting for their retry");
    let rows = ex
        .store()
        .pending_outbox(Channel::Webhook, 1 << 62, 10)
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|m| m.attempts == 1));
}

#[tokio::test]
async fn removing_the_webhook_gives_up_what_waits_for_it() {
    let (mut ex, alice, bob) = setup().await;
    ex.allow_insecure_webhooks();
    let (addr, received) = receiver(Vec::new()).await;
    register(&ex, &alice, &format!("http://{addr}/one")).await;
    assert_eq!(pending_webhooks(&ex), 1);
    // Replaced: the first notice, not yet sent, is given up rather than sent to the
    // new address; the notice of this change goes to the new one.
    register(&ex, &alice, &format!("http://{addr}/two")).await;
    assert_eq!(pending_webhooks(&ex), 1);
    let other = ex.hmac_key(alice.customer, "read,trade", "");
    freeze_alices_key(&ex, &alice, &bob).await;
    assert_eq!(pending_webhooks(&ex), 2);
    let removed = ex.signed(Method::DELETE, WEBHOOK, "", &other).await;
    assert_eq!(removed.assert_ok()["removed"], true);
    assert_eq!(pending_webhooks(&ex), 0);
    assert_eq!(ex.webhook_sender().step().await.unwrap(), 0);
    assert!(received.lock().unwrap().is_empty());
    let shown = ex.signed(Method::GET, WEBHOOK, "", &other).await;
    assert_eq!(shown.assert_ok()["url"], Value::Null);
    let again = ex.signed(Method::DELETE, WEBHOOK, "", &other).await;
    assert_eq!(again.assert_ok()["removed"], false);
    assert!(ex.request_log().iter().any(|e| e.action == "webhook remove"
        && e.kind == Kind::KeyChange
        && e.customer == Some(alice.customer.0)));
}

#[tokio::test]
async fn a_webhook_is_delivered_after_a_key_rotation() {
    let (mut ex, alice, bob) = setup().await;
    ex.allow_insecure_webhooks();
    let (addr, received) = receiver(Vec::new()).await;
    let secret = register(&ex, &alice, &format!("http://{addr}/hook")).await;
    let (version, rewrapped) = ex.rotate_webhook_keys();
    assert_eq!(rewrapped, 1);
    assert_eq!(
        ex.store().key_status().unwrap().webhook_keys,
        vec![(version, 1)]
    );
    freeze_alices_key(&ex, &alice, &bob).await;
    assert_eq!(ex.webhook_sender().step().await.unwrap(), 2);
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|request| signed_by(&secret, &ex, request)));
}

#[tokio::test]
async fn a_read_only_key_cannot_redirect_notifications() {
    // What a portfolio tracker holds: it may read the account, not decide where the
    // customer's security notices go, nor read the address.
    let (mut ex, alice, _) = setup().await;
    ex.allow_insecure_webhooks();
    let tracker = ex.hmac_key(alice.customer, "read", "");
    register(&ex, &alice, "http://127.0.0.1:9/mine").await;
    for req in [
        register_req(&ex, &tracker, "http://127.0.0.1:9/theirs"),
        ex.signed_req(Method::DELETE, WEBHOOK, "", &tracker),
        ex.signed_req(Method::GET, WEBHOOK, "", &tracker),
    ] {
        refused(&ex, req, UNAUTHORIZED, -2015, REJECTED_KEY).await;
    }
    let shown = ex.signed(Method::GET, WEBHOOK, "", &alice).await;
    assert_eq!(shown.assert_ok()["url"], "http://127.0.0.1:9/mine");
}

#[tokio::test]
async fn a_webhook_address_in_the_query_string_is_refused() {
    // Proxies and load balancers log query strings; the body is where it goes.
    let (mut ex, alice, _) = setup().await;
    ex.allow_insecure_webhooks();
    let req = ex.signed_req(
        Method::POST,
        WEBHOOK,
        &url_param("http://127.0.0.1:9/hook"),
        &alice,
    );
    refused(
        &ex,
        req,
        BAD_REQUEST,
        -1130,
        "Data sent for parameter 'url' is not valid: send it in the request body, not the \
         query string.",
    )
    .await;
    let shown = ex.signed(Method::GET, WEBHOOK, "", &alice).await;
    assert_eq!(shown.assert_ok()["url"], Value::Null);
}

#[tokio::test]
async fn a_webhook_is_not_sent_when_its_read_cannot_be_logged() {
    // The sender's read of the sealed address must be in the log before anything
    // leaves: with the log refusing entries, nothing is posted.
    let (mut ex, alice, _) = setup().await;
    ex.allow_insecure_webhooks();
    let (addr, received) = receiver(Vec::new()).await;
    register(&ex, &alice, &format!("http://{addr}/hook")).await;
    assert_eq!(pending_webhooks(&ex), 1);
    ex.break_audit_appends();
    assert!(ex.webhook_sender().step().await.is_err());
    assert!(received.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_receiver_that_never_answers_holds_up_nobody_else() {
    let (mut ex, alice, bob) = setup().await;
    ex.allow_insecure_webhooks();
    // Alice's receiver takes the connection and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let (addr, bobs) = receiver(Vec::new()).await;
    register(&ex, &alice, &format!("http://{silent_addr}/hook")).await;
    register(&ex, &bob, &format!("http://{addr}/hook")).await;
    let sender = ex.webhook_sender();
    let first = sender.start().await.unwrap();
    assert_eq!(first.len(), 2, "both changes' notices");
    // Bob changes his webhook again while Alice's delivery still waits: the next look
    // starts his new notice alone (Alice's is under way), and it arrives.
    register(&ex, &bob, &format!("http://{addr}/again")).await;
    let bobs_new: Vec<u64> = ex
        .store()
        .pending_outbox(Channel::Webhook, ex.now(), 10)
        .unwrap()
        .iter()
        .filter(|m| m.notification.customer == bob.customer)
        .map(|m| m.id)
        .collect();
    assert_eq!(bobs_new.len(), 1);
    let second = sender.start().await.unwrap();
    assert_eq!(second.len(), 1);
    for task in second {
        task.await.unwrap();
    }
    let id = bobs_new[0].to_string();
    assert!(
        bobs.lock()
            .unwrap()
            .iter()
            .any(|(h, _)| h[ID_HEADER] == id.as_str())
    );
    assert!(
        first.iter().any(|task| !task.is_finished()),
        "Alice's delivery is still waiting for an answer"
    );
    for task in first {
        task.abort();
    }
}
