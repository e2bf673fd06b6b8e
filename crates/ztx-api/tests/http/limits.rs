//! Rate limits: request weight per IP and orders per customer, with the usage headers.

use super::*;

#[tokio::test]
async fn request_weight_flood_is_throttled() {
    let mut ex = Exchange::with_limits(limits(50, 100));
    let alice = ex.trader("10000", "1").await;
    for used in 1..=50 {
        let resp = ex.send(Req::get("/api/v3/ping", "")).await;
        resp.assert_ok();
        assert_eq!(resp.header_u64("X-MBX-USED-WEIGHT-1M"), Some(used));
    }
    let msg = "Too much request weight used; current limit is 50 request weight per 1 MINUTE. \
               Please use WebSocket Streams for live updates to avoid polling the API.";
    let resp = ex.send(Req::get("/api/v3/ping", "")).await;
    resp.assert_error(StatusCode::TOO_MANY_REQUESTS, -1003, msg);
    // NOW is 20 s into its minute.
    assert_eq!(resp.header("Retry-After"), Some("40"));
    // A signed order from the same address is throttled before anything else.
    refused(
        &ex,
        order_req(&ex, &alice, BUY),
        StatusCode::TOO_MANY_REQUESTS,
        -1003,
        msg,
    )
    .await;
    // Another address is not.
    let other = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5));
    ex.send(Req::get("/api/v3/ping", "").sent_from(other))
        .await
        .assert_ok();
    // The next minute starts afresh.
    ex.advance_ms(40_000);
    let resp = ex.send(Req::get("/api/v3/ping", "")).await;
    resp.assert_ok();
    assert_eq!(resp.header_u64("X-MBX-USED-WEIGHT-1M"), Some(1));
}

/// Binance sends `X-MBX-USED-WEIGHT-1M` on every answer, 429 included.
#[tokio::test]
async fn throttled_answer_still_reports_the_weight_used() {
    let ex = Exchange::with_limits(limits(3, 100));
    for _ in 0..3 {
        ex.send(Req::get("/api/v3/ping", "")).await.assert_ok();
    }
    let resp = ex.send(Req::get("/api/v3/ping", "")).await;
    assert_eq!(resp.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.header_u64("X-MBX-USED-WEIGHT-1M"), Some(3));
}

#[tokio::test]
async fn heavy_endpoints_cost_their_weight() {
    let ex = Exchange::new();
    let cases = [
        ("/api/v3/exchangeInfo", "", 20),
        ("/api/v3/depth", "symbol=BTCUSDT", 5),
        ("/api/v3/depth", "symbol=BTCUSDT&limit=500", 25),
        ("/api/v3/depth", "symbol=BTCUSDT&limit=5000", 250),
        ("/api/v3/ticker/24hr", "", 40),
    ];
    let mut total = 0;
    for (path, query, weight) in cases {
        total += weight;
        let resp = ex.send(Req::get(path, query)).await;
        resp.assert_ok();
        assert_eq!(
            resp.header_u64("X-MBX-USED-WEIGHT-1M"),
            Some(total),
            "{path}?{query}"
        );
    }
}

/// Depth's weight follows its `limit` as the handler reads it: after decoding names and
/// merging the body. `l%69mit=5000` (or `limit=5000` in the body) fetches 5000 levels and
/// must be charged 250, not 5 — else it is a 50× way around the weight limit.
#[tokio::test]
async fn depth_limit_hidden_from_the_weight_check_is_charged_in_full() {
    let ex = Exchange::new();
    let encoded = ex
        .send(Req::get("/api/v3/depth", "symbol=BTCUSDT&l%69mit=5000"))
        .await;
    encoded.assert_ok();
    assert_eq!(encoded.header_u64("X-MBX-USED-WEIGHT-1M"), Some(250));
    let in_body = ex
        .send(Req::get("/api/v3/depth", "symbol=BTCUSDT").body("limit=5000"))
        .await;
    in_body.assert_ok();
    assert_eq!(in_body.header_u64("X-MBX-USED-WEIGHT-1M"), Some(500));
}

#[tokio::test]
async fn order_flood_is_throttled() {
    let mut ex = Exchange::with_limits(limits(6_000, 3));
    let alice = ex.trader("10000", "1").await;
    for n in 1..=3 {
        let resp = ex.order(&alice, BUY).await;
        resp.assert_ok();
        assert_eq!(resp.header_u64("X-MBX-ORDER-COUNT-10S"), Some(n));
        assert_eq!(resp.header_u64("X-MBX-ORDER-COUNT-1D"), Some(n));
    }
    let msg = "Too many new orders; current limit is 3 orders per 10 SECOND.";
    let req = order_req(&ex, &alice, BUY);
    refused(&ex, req, StatusCode::TOO_MANY_REQUESTS, -1015, msg).await;
    let resp = ex.send(order_req(&ex, &alice, BUY)).await;
    assert_eq!(
        resp.header("Retry-After"),
        None,
        "Binance sends none for -1015"
    );
    assert!(resp.header_u64("X-MBX-USED-WEIGHT-1M").is_some());
    // Cancels, tests and other customers are not orders of hers.
    let id = ex.open_orders(alice.customer).await[0].id.0;
    let params = format!("symbol={SYMBOL}&orderId={id}");
    ex.signed(Method::DELETE, ORDER, &params, &alice)
        .await
        .assert_ok();
    let params = format!("symbol={SYMBOL}&{BUY}");
    ex.signed(Method::POST, "/api/v3/order/test", &params, &alice)
        .await
        .assert_ok();
    let bob = ex.trader("100", "0").await;
    ex.order(&bob, BUY).await.assert_ok();
    // The next 10-second window starts afresh; the day keeps counting.
    ex.advance_ms(10_000);
    let resp = ex.order(&alice, BUY).await;
    resp.assert_ok();
    assert_eq!(resp.header_u64("X-MBX-ORDER-COUNT-10S"), Some(1));
    assert_eq!(resp.header_u64("X-MBX-ORDER-COUNT-1D"), Some(4));
}
