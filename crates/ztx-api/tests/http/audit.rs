//! The audit log over the API: every request — public, signed, refused at the gate or by
//! the exchange — has its entry when its answer arrives, with who, from where, what (the
//! signature left out) and the outcome.

use ztx_audit::{Denial, Entry, Outcome};

use ztx_monitor::ocsf::param;

use super::*;

/// Sends `req` and returns the one entry it added to the log (besides those of its
/// store calls).
async fn logged(ex: &Exchange, req: Req) -> Entry {
    let before = ex.request_log().len();
    ex.send(req).await;
    let log = ex.request_log();
    assert_eq!(log.len(), before + 1, "one entry per request");
    log.last().unwrap().clone()
}

#[tokio::test]
async fn every_request_is_logged_before_it_is_answered() {
    let (ex, alice, _) = setup().await;
    let ping = logged(&ex, Req::get("/api/v3/ping", "")).await;
    assert_eq!(ping.action, "GET /api/v3/ping");
    assert_eq!(
        (ping.outcome, ping.code, ping.customer),
        (Outcome::Success, None, None)
    );
    assert_eq!(ping.client_ip, Some(common::CLIENT_IP));

    let account = logged(
        &ex,
        ex.signed_req(Method::GET, "/api/v3/account", "", &alice),
    )
    .await;
    assert_eq!(account.action, "GET /api/v3/account");
    assert_eq!(account.customer, Some(alice.customer.0));
    assert_eq!(account.api_key, Some(ex.key_id(&alice)));
    assert!(param(&account, "timestamp").is_some());
    assert_eq!(
        param(&account, "signature"),
        None,
        "the signature is not logged"
    );

    // An order's entry commits with the order itself: one entry, its parameters, success.
    let order = logged(&ex, order_req(&ex, &alice, BUY)).await;
    assert_eq!(order.action, "POST /api/v3/order");
    assert_eq!(order.outcome, Outcome::Success);
    assert_eq!(param(&order, "side"), Some("BUY"));
    assert_eq!(param(&order, "quantity"), Some("0.1"));
}

/// An order the store cannot write is refused, changes nothing, and its request is
/// still logged: on its own, with the refusal the caller got and every parameter it
/// sent but the signature, as if the command had committed it.
#[tokio::test]
async fn an_order_the_store_cannot_write_is_logged_with_its_refusal() {
    let (ex, alice, _) = setup().await;
    let placed = logged(&ex, order_req(&ex, &alice, BUY)).await;
    ex.break_order_inserts();
    let before = ex.snapshot().await;
    let entries = ex.request_log().len();
    let resp = ex.send(order_req(&ex, &alice, BUY)).await;
    assert_eq!(resp.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        ex.snapshot().await,
        before,
        "an unwritten order changed something"
    );
    let log = ex.request_log();
    assert_eq!(log.len(), entries + 1, "one entry for the refused order");
    let refused = log.last().unwrap();
    assert_eq!(refused.action, "POST /api/v3/order");
    assert_eq!(
        (refused.outcome, refused.code),
        (Outcome::Failure, Some(-1000))
    );
    assert_eq!(
        (refused.customer, refused.api_key, refused.client_ip),
        (placed.customer, placed.api_key, placed.client_ip)
    );
    assert_ne!(refused.request_id, placed.request_id);
    let names = |e: &Entry| e.params.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(refused), names(&placed));
    assert_eq!(param(refused, "side"), Some("BUY"));
    assert_eq!(param(refused, "quantity"), Some("0.1"));
    assert_eq!(param(refused, "signature"), None);
}

/// Each kind of refusal is logged as denied, with why and the code the caller got.
#[tokio::test]
async fn refused_requests_are_logged_with_why() {
    let (mut ex, alice, bob) = setup().await;
    let alice_id = ex.key_id(&alice);
    let check = |e: &Entry, denial: Denial, code: i32| {
        assert_eq!(e.outcome, Outcome::Denied, "{e:?}");
        assert_eq!(e.denial, Some(denial), "{e:?}");
        assert_eq!(e.code, Some(code), "{e:?}");
    };

    let forged = logged(&ex, order_req(&ex, &alice.signing_with(&bob), BUY)).await;
    check(&forged, Denial::BadSignature, -1022);
    assert_eq!(
        forged.api_key,
        Some(alice_id),
        "the key whose name was used"
    );

    let unknown = Req::get("/api/v3/account", &format!("timestamp={NOW}&signature=00"))
        .api_key(&"A".repeat(64));
    check(&logged(&ex, unknown).await, Denial::UnknownKey, -2015);

    let fenced = ex.hmac_key(alice.customer, "read,trade", "198.51.100.7");
    let req = ex.signed_req(Method::GET, "/api/v3/account", "", &fenced);
    check(&logged(&ex, req).await, Denial::IpNotAllowed, -2015);

    let reader = ex.hmac_key(alice.customer, "read", "");
    check(
        &logged(&ex, order_req(&ex, &reader, BUY)).await,
        Denial::MissingPermission,
        -2015,
    );

    let late = order_req(&ex, &alice, BUY);
    ex.advance_ms(60_001);
    check(&logged(&ex, late).await, Denial::ExpiredTimestamp, -1021);

    let twice = Req::get("/api/v3/depth", &format!("symbol={SYMBOL}&symbol={SYMBOL}"));
    check(&logged(&ex, twice).await, Denial::MalformedRequest, -1101);

    // Refused by the exchange, not the gate: a failure with its code.
    let broke = logged(
        &ex,
        order_req(
            &ex,
            &alice,
            "side=BUY&type=LIMIT&timeInForce=GTC&price=100&quantity=9000",
        ),
    )
    .await;
    assert_eq!(
        (broke.outcome, broke.denial, broke.code),
        (Outcome::Failure, None, Some(-2010))
    );
}

#[tokio::test]
async fn throttled_requests_are_logged() {
    let ex = Exchange::with_limits(limits(2, 100));
    for _ in 0..2 {
        ex.send(Req::get("/api/v3/ping", "")).await.assert_ok();
    }
    let throttled = logged(&ex, Req::get("/api/v3/ping", "")).await;
    assert_eq!(throttled.denial, Some(Denial::RateLimited));
    assert_eq!(throttled.code, Some(-1003));
}
