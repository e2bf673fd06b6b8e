//! The same router over a real loopback socket: the peer address, headers and limits
//! as a client on the wire sees them.

use super::*;

#[tokio::test]
async fn over_tcp_a_signed_order_is_placed_with_usage_headers() {
    let (mut ex, _, _) = setup().await;
    let carol = ex.trader("1000", "0").await;
    let addr = ex.serve().await;
    // Binance's example 3: part in the query, part in the body, signed as one string.
    let req = Req::new(
        Method::POST,
        ORDER,
        &format!("symbol={SYMBOL}&side=BUY&type=LIMIT"),
    )
    .body(&format!(
        "timeInForce=GTC&price=100&quantity=0.1&timestamp={NOW}"
    ))
    .signed_by(&carol);
    let resp = send_tcp(addr, &req).await;
    assert_eq!(resp.assert_ok()["status"], "NEW");
    assert_eq!(resp.header_u64("X-MBX-USED-WEIGHT-1M"), Some(1));
    assert_eq!(resp.header_u64("X-MBX-ORDER-COUNT-10S"), Some(1));
    assert_eq!(resp.header_u64("X-MBX-ORDER-COUNT-1D"), Some(1));
    let open = ex.signed_req(
        Method::GET,
        "/api/v3/openOrders",
        &format!("symbol={SYMBOL}"),
        &carol,
    );
    let resp = send_tcp(addr, &open).await;
    assert_eq!(resp.assert_ok().as_array().unwrap().len(), 1);
    assert_eq!(resp.header_u64("X-MBX-USED-WEIGHT-1M"), Some(7));
    // A tampered request over the wire is refused with the same answer.
    let mut tampered = req.clone();
    tampered.body = tampered.body.replace("quantity=0.1", "quantity=9");
    let before = ex.snapshot().await;
    send_tcp(addr, &tampered)
        .await
        .assert_error(BAD_REQUEST, -1022, BAD_SIGNATURE);
    assert_eq!(ex.snapshot().await, before);
}

#[tokio::test]
async fn over_tcp_the_allow_list_sees_the_real_peer_address() {
    let (mut ex, alice, _) = setup().await;
    let loopback = ex.hmac_key(alice.customer, "read,trade", "127.0.0.1");
    let elsewhere = ex.hmac_key(alice.customer, "read,trade", "192.0.2.10");
    let addr = ex.serve().await;
    let resp = send_tcp(addr, &order_req(&ex, &loopback, BUY)).await;
    resp.assert_ok();
    let before = ex.snapshot().await;
    // Sent from 127.0.0.1, so the key for 192.0.2.10 is refused whatever `req.ip` says.
    let resp = send_tcp(addr, &order_req(&ex, &elsewhere, BUY)).await;
    resp.assert_error(UNAUTHORIZED, -2015, REJECTED_KEY);
    assert_eq!(ex.snapshot().await, before);
}

#[tokio::test]
async fn over_tcp_a_weight_flood_is_throttled() {
    let ex = Exchange::with_limits(limits(5, 100));
    let addr = ex.serve().await;
    for used in 1..=5 {
        let resp = send_tcp(addr, &Req::get("/api/v3/ping", "")).await;
        resp.assert_ok();
        assert_eq!(resp.header_u64("X-MBX-USED-WEIGHT-1M"), Some(used));
    }
    let resp = send_tcp(addr, &Req::get("/api/v3/ping", "")).await;
    assert_eq!(resp.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.json["code"], -1003);
    assert_eq!(resp.header("Retry-After"), Some("40"));
}

#[tokio::test]
async fn over_tcp_an_oversized_body_is_refused() {
    let (ex, alice, _) = setup().await;
    let addr = ex.serve().await;
    let filler = "a".repeat(ztx_api::router::MAX_BODY_BYTES);
    let req = Req::new(Method::POST, ORDER, &format!("symbol={SYMBOL}&{BUY}"))
        .body(&format!("timestamp={NOW}&pad={filler}"))
        .signed_by(&alice);
    let before = ex.snapshot().await;
    let resp = send_tcp(addr, &req).await;
    assert_eq!(resp.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", resp.text);
    assert_eq!(ex.snapshot().await, before);
}
