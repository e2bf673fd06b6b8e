//! Signatures, keys, timestamps and permissions: forged, tampered, replayed or
//! misdirected requests are refused and change nothing.

use super::*;

#[tokio::test]
async fn tampered_query_after_signing_is_refused() {
    let (ex, alice, _) = setup().await;
    let mut req = order_req(&ex, &alice, BUY);
    req.query = req.query.replace("quantity=0.1", "quantity=9.1");
    refused(&ex, req, BAD_REQUEST, -1022, BAD_SIGNATURE).await;
    // A parameter appended after signing, or the signature moved onto a re-encoded name.
    let mut req = order_req(&ex, &alice, BUY);
    req.query.push_str("&newOrderRespType=ACK");
    refused(&ex, req, BAD_REQUEST, -1022, BAD_SIGNATURE).await;
    let mut req = order_req(&ex, &alice, BUY);
    req.query = req.query.replace("side=BUY", "sid%65=BUY");
    refused(&ex, req, BAD_REQUEST, -1022, BAD_SIGNATURE).await;
}

#[tokio::test]
async fn signature_by_another_customers_secret_is_refused() {
    let (ex, alice, bob) = setup().await;
    let forged = alice.signing_with(&bob);
    refused(
        &ex,
        order_req(&ex, &forged, BUY),
        BAD_REQUEST,
        -1022,
        BAD_SIGNATURE,
    )
    .await;
    // Bob's key header with Alice's signature, on a read endpoint too.
    let forged = bob.signing_with(&alice);
    let req = ex.signed_req(Method::GET, "/api/v3/account", "", &forged);
    refused(&ex, req, BAD_REQUEST, -1022, BAD_SIGNATURE).await;
}

#[tokio::test]
async fn garbage_signature_is_refused() {
    let (ex, alice, _) = setup().await;
    for sig in ["zz", "00", &"a".repeat(63), &"a".repeat(66)] {
        let query = format!("symbol={SYMBOL}&{BUY}&timestamp={NOW}&signature={sig}");
        let req = Req::new(Method::POST, ORDER, &query).api_key(&alice.api_key);
        refused(&ex, req, BAD_REQUEST, -1022, BAD_SIGNATURE).await;
    }
}

#[tokio::test]
async fn replayed_request_outside_recv_window_is_refused() {
    let (mut ex, alice, _) = setup().await;
    let req = order_req(&ex, &alice, BUY);
    ex.send(req.clone()).await.assert_ok();
    ex.advance_ms(5_001);
    refused(
        &ex,
        req,
        BAD_REQUEST,
        -1021,
        "Timestamp for this request is outside of the recvWindow.",
    )
    .await;
    // A wider window signed by the client is honoured, and its edge is exact.
    let carol = ex.trader("100", "0").await;
    let req = order_req(&ex, &carol, &format!("{BUY}&recvWindow=10000"));
    ex.advance_ms(10_000);
    ex.send(req.clone()).await.assert_ok();
    let req = order_req(&ex, &carol, &format!("{BUY}&recvWindow=10000"));
    ex.advance_ms(10_001);
    refused(
        &ex,
        req,
        BAD_REQUEST,
        -1021,
        "Timestamp for this request is outside of the recvWindow.",
    )
    .await;
}

#[tokio::test]
async fn request_from_the_future_is_refused() {
    let (ex, alice, _) = setup().await;
    let ahead = |ms: u64| {
        let query = format!("symbol={SYMBOL}&{BUY}&timestamp={}", NOW + ms);
        Req::new(Method::POST, ORDER, &query).signed_by(&alice)
    };
    let msg = "Timestamp for this request was 1000ms ahead of the server's time.";
    refused(&ex, ahead(1_000), BAD_REQUEST, -1021, msg).await;
    refused(&ex, ahead(u64::MAX - NOW), BAD_REQUEST, -1021, msg).await;
    ex.send(ahead(999)).await.assert_ok();
}

#[tokio::test]
async fn recv_window_above_maximum_is_refused() {
    let (ex, alice, _) = setup().await;
    let msg = "recvWindow must be less than 60000";
    for window in ["60001", "18446744073709551615"] {
        let req = order_req(&ex, &alice, &format!("{BUY}&recvWindow={window}"));
        refused(&ex, req, BAD_REQUEST, -1131, msg).await;
    }
}

#[tokio::test]
async fn missing_signature_is_refused() {
    let (ex, alice, _) = setup().await;
    let msg = "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.";
    let query = format!("symbol={SYMBOL}&{BUY}&timestamp={NOW}");
    let req = Req::new(Method::POST, ORDER, &query).api_key(&alice.api_key);
    refused(&ex, req.clone(), BAD_REQUEST, -1102, msg).await;
    let mut empty = req;
    empty.query.push_str("&signature=");
    refused(&ex, empty, BAD_REQUEST, -1102, msg).await;
}

#[tokio::test]
async fn missing_timestamp_is_refused() {
    let (ex, alice, _) = setup().await;
    let req = Req::new(Method::POST, ORDER, &format!("symbol={SYMBOL}&{BUY}")).signed_by(&alice);
    let msg = "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.";
    refused(&ex, req, BAD_REQUEST, -1102, msg).await;
}

#[tokio::test]
async fn missing_api_key_header_is_refused() {
    let (ex, alice, _) = setup().await;
    let signed = order_req(&ex, &alice, BUY);
    let mut req = signed.clone();
    req.api_key = None;
    refused(&ex, req, UNAUTHORIZED, -2014, "API-key format invalid.").await;
    for bad in ["", "not a key", &"a".repeat(65), "k\u{e9}y"] {
        let mut req = signed.clone();
        req.api_key = Some(bad.into());
        refused(&ex, req, UNAUTHORIZED, -2014, "API-key format invalid.").await;
    }
}

#[tokio::test]
async fn unknown_api_key_is_refused() {
    let (ex, alice, _) = setup().await;
    let mut req = order_req(&ex, &alice, BUY);
    req.api_key = Some("f".repeat(64));
    refused(&ex, req, UNAUTHORIZED, -2015, REJECTED_KEY).await;
}

#[tokio::test]
async fn key_used_from_a_disallowed_ip_is_refused() {
    let (mut ex, alice, _) = setup().await;
    let allowed = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
    let key = ex.hmac_key(alice.customer, "read,trade", "198.51.100.7,2001:db8::1");
    let req = order_req(&ex, &key, BUY);
    refused(&ex, req.clone(), UNAUTHORIZED, -2015, REJECTED_KEY).await;
    let other_v6: IpAddr = "2001:db8::2".parse().unwrap();
    refused(
        &ex,
        req.clone().sent_from(other_v6),
        UNAUTHORIZED,
        -2015,
        REJECTED_KEY,
    )
    .await;
    ex.send(req.sent_from(allowed)).await.assert_ok();
    let v6: IpAddr = "2001:db8::1".parse().unwrap();
    ex.send(order_req(&ex, &key, BUY).sent_from(v6))
        .await
        .assert_ok();
}

/// A server listening on a dual-stack `[::]` socket sees IPv4 clients as
/// `::ffff:a.b.c.d`; the allow-list must see `a.b.c.d`, or a key allowed for `192.0.2.10`
/// is refused for the very client it was issued to.
#[tokio::test]
async fn key_allowed_for_an_ipv4_address_works_from_its_ipv4_mapped_form() {
    let (mut ex, alice, _) = setup().await;
    let key = ex.hmac_key(alice.customer, "read,trade", "192.0.2.10");
    let mapped: IpAddr = "::ffff:192.0.2.10".parse().unwrap();
    let resp = ex.send(order_req(&ex, &key, BUY).sent_from(mapped)).await;
    resp.assert_ok();
}

#[tokio::test]
async fn read_only_key_cannot_place_orders() {
    let (mut ex, alice, _) = setup().await;
    let read_only = ex.hmac_key(alice.customer, "read", "");
    let req = order_req(&ex, &read_only, BUY);
    refused(&ex, req, UNAUTHORIZED, -2015, REJECTED_KEY).await;
    let req = ex.signed_req(
        Method::POST,
        "/api/v3/order/test",
        &format!("symbol={SYMBOL}&{BUY}"),
        &read_only,
    );
    refused(&ex, req, UNAUTHORIZED, -2015, REJECTED_KEY).await;
    // It still reads.
    let resp = ex
        .signed(Method::GET, "/api/v3/account", "", &read_only)
        .await;
    assert_eq!(resp.assert_ok()["canTrade"], false);
}

#[tokio::test]
async fn trade_only_key_cannot_read() {
    let (mut ex, alice, _) = setup().await;
    let trade_only = ex.hmac_key(alice.customer, "trade", "");
    let req = ex.signed_req(Method::GET, "/api/v3/account", "", &trade_only);
    refused(&ex, req, UNAUTHORIZED, -2015, REJECTED_KEY).await;
}

#[tokio::test]
async fn read_only_key_cannot_cancel() {
    let (mut ex, alice, _) = setup().await;
    let read_only = ex.hmac_key(alice.customer, "read", "");
    let id = ex.open_orders(alice.customer).await[0].id.0;
    let params = format!("symbol={SYMBOL}&orderId={id}");
    let req = ex.signed_req(Method::DELETE, ORDER, &params, &read_only);
    refused(&ex, req, UNAUTHORIZED, -2015, REJECTED_KEY).await;
    let params = format!("symbol={SYMBOL}");
    let req = ex.signed_req(Method::DELETE, "/api/v3/openOrders", &params, &read_only);
    refused(&ex, req, UNAUTHORIZED, -2015, REJECTED_KEY).await;
    assert_eq!(ex.open_orders(alice.customer).await.len(), 1);
}

#[tokio::test]
async fn customer_cannot_cancel_another_customers_order() {
    let (ex, alice, bob) = setup().await;
    let resp = ex
        .order(&alice, &format!("{BUY}&newClientOrderId=alice-1"))
        .await;
    let id = resp.assert_ok()["orderId"].as_u64().unwrap();
    for target in [format!("orderId={id}"), "origClientOrderId=alice-1".into()] {
        let params = format!("symbol={SYMBOL}&{target}");
        let req = ex.signed_req(Method::DELETE, ORDER, &params, &bob);
        refused(&ex, req, BAD_REQUEST, -2011, "Unknown order sent.").await;
    }
    // Bob cancelling all his orders leaves Alice's alone.
    let before = ex.open_orders(alice.customer).await;
    let params = format!("symbol={SYMBOL}");
    ex.signed(Method::DELETE, "/api/v3/openOrders", &params, &bob)
        .await
        .assert_ok();
    assert_eq!(ex.open_orders(alice.customer).await, before);
    assert!(ex.open_orders(bob.customer).await.is_empty());
}

#[tokio::test]
async fn customer_cannot_query_another_customers_order() {
    let (ex, alice, bob) = setup().await;
    let resp = ex
        .order(&alice, &format!("{BUY}&newClientOrderId=alice-2"))
        .await;
    let id = resp.assert_ok()["orderId"].as_u64().unwrap();
    for target in [format!("orderId={id}"), "origClientOrderId=alice-2".into()] {
        let params = format!("symbol={SYMBOL}&{target}");
        let req = ex.signed_req(Method::GET, ORDER, &params, &bob);
        refused(&ex, req, BAD_REQUEST, -2013, "Order does not exist.").await;
    }
    let params = format!("symbol={SYMBOL}");
    let all = ex
        .signed(Method::GET, "/api/v3/allOrders", &params, &bob)
        .await;
    assert!(
        all.assert_ok()
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["orderId"] != id)
    );
    // Alice sees it.
    let params = format!("symbol={SYMBOL}&orderId={id}");
    let own = ex.signed(Method::GET, ORDER, &params, &alice).await;
    assert_eq!(own.assert_ok()["clientOrderId"], "alice-2");
}

#[tokio::test]
async fn a_secret_an_older_release_sealed_under_the_master_key_still_signs_and_moves_off_it() {
    use ztx_store::Store as _;
    let mut ex = Exchange::new();
    let customer = ex.customer();
    let legacy = ex.legacy_hmac_key(customer, "read");
    let current = ex.hmac_key(customer, "read", "");
    for key in [&legacy, &current] {
        ex.signed(Method::GET, "/api/v3/account", "", key)
            .await
            .assert_ok();
    }
    // Re-sealed as `ztx serve` does at start: the legacy one only.
    assert_eq!(ex.reseal_secrets(), (0, 1));
    assert_eq!(ex.reseal_secrets(), (0, 0), "nothing left to move");
    let stored = ex.store().api_key_by_key(&legacy.api_key).unwrap().unwrap();
    let ztx_store::ApiKeyCredential::Hmac { data_key, .. } = &stored.credential else {
        panic!("not an HMAC key");
    };
    assert!(data_key.is_some(), "the secret is under a data key now");
    // Read afresh from the store, the re-sealed secret still verifies.
    ex.state.forget_key(stored.id);
    ex.signed(Method::GET, "/api/v3/account", "", &legacy)
        .await
        .assert_ok();
    assert_eq!(ex.store().key_status().unwrap().master_sealed_secrets, 0);
}
