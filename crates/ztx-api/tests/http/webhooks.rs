//! Customers' webhooks: registered over the signed API, logged without the address's
//! secret parts, sealed at rest, and each notification posted to a real HTTP receiver on
//! this machine, signed with the secret the customer was given; failures are tried
//! again later, redirects are not followed, addresses inside the platform's network are
//! refused.

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

/// `url` as a parameter value, percent-encoded.
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

/// Registers `url` for `key`'s customer; the secret the answer gives.
async fn register(ex: &Exchange, key: &Key, url: &str) -> String {
    let answer = ex.signed(Method::POST, WEBHOOK, &url_param(url), key).await;
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
    // She was told of the change (by e-mail: the webhook was not hers yet).
    let notes = ex
        .signed(Method::GET, "/ztx/v1/notifications", "", &alice)
        .await;
    let notes = notes.assert_ok().as_array().unwrap().clone();
    assert_eq!(notes[0]["finding"], ztx_api::webhooks::ACCOUNT_CHANGE);
    assert!(notes[0]["message"].as_str().unwrap().contains("127.0.0.1"));
    assert_eq!(pending_webhooks(&ex), 0);

    // A detection's notification goes to the webhook as well as by e-mail.
    let other = ex.hmac_key(alice.customer, "read", "");
    freeze_alices_key(&ex, &alice, &bob).await;
    assert_eq!(pending_webhooks(&ex), 1);
    let sender = ex.webhook_sender();
    assert_eq!(sender.step().await.unwrap(), 1);
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let (headers, body) = &got[0];
    let signed = headers[SIGNATURE_HEADER].to_str().unwrap();
    assert_eq!(
        verify_signature(
            secret.as_bytes(),
            signed,
            body.as_bytes(),
            ex.now(),
            300_000
        ),
        Ok(ex.now())
    );
    assert!(verify_signature(b"whsec_guess", signed, body.as_bytes(), ex.now(), 300_000).is_err());
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
    assert_eq!(received.lock().unwrap().len(), 1);
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
        StatusCode::SERVICE_UNAVAILABLE.into_response(),
        redirect,
    ])
    .await;
    register(&ex, &alice, &format!("http://{addr}/hook")).await;
    freeze_alices_key(&ex, &alice, &bob).await;
    let sender = ex.webhook_sender();

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
        let req = ex.signed_req(Method::POST, WEBHOOK, &url_param(url), &alice);
        refused(
            &ex,
            req,
            BAD_REQUEST,
            -1130,
            &format!("Data sent for parameter 'url' is not valid: {why}."),
        )
        .await;
    }
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
    register(
        &ex,
        &alice,
        &format!("http://localhost:{}/hook", addr.port()),
    )
    .await;
    freeze_alices_key(&ex, &alice, &bob).await;
    let strict = ztx_api::webhooks::Sender::trusting(
        ex.state
            .clone()
            .with_webhook_policy(ztx_api::webhooks::WebhookPolicy::default()),
        rustls::RootCertStore::empty(),
    );
    assert_eq!(strict.step().await.unwrap(), 1);
    assert!(received.lock().unwrap().is_empty());
    assert_eq!(pending_webhooks(&ex), 0, "failed: waiting for its retry");
    let row = ex
        .store()
        .pending_outbox(Channel::Webhook, 1 << 62, 10)
        .unwrap();
    assert_eq!(row.len(), 1);
    assert_eq!(row[0].attempts, 1);
}

#[tokio::test]
async fn removing_the_webhook_gives_up_what_waits_for_it() {
    let (mut ex, alice, bob) = setup().await;
    ex.allow_insecure_webhooks();
    let (addr, received) = receiver(Vec::new()).await;
    register(&ex, &alice, &format!("http://{addr}/one")).await;
    // Replaced: the notice of the change goes to the webhook registered now.
    register(&ex, &alice, &format!("http://{addr}/two")).await;
    assert_eq!(pending_webhooks(&ex), 1);
    let other = ex.hmac_key(alice.customer, "read", "");
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
    let change = ex.request_log();
    assert!(change.iter().any(|e| e.action == "webhook remove"
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
    assert_eq!(ex.webhook_sender().step().await.unwrap(), 1);
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let (headers, body) = &got[0];
    assert!(
        verify_signature(
            secret.as_bytes(),
            headers[SIGNATURE_HEADER].to_str().unwrap(),
            body.as_bytes(),
            ex.now(),
            300_000
        )
        .is_ok()
    );
}
