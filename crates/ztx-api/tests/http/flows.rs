//! What must work: usage headers, Ed25519 keys, `order/test`, a fill's commissions, and
//! the 404 answer.

use super::*;

#[tokio::test]
async fn usage_headers_are_present_on_success_and_on_error() {
    let (ex, alice, _) = setup().await;
    // setup() placed two orders from CLIENT_IP: weight 2.
    let ok = ex.send(Req::get("/api/v3/time", "")).await;
    assert_eq!(ok.assert_ok()["serverTime"], NOW);
    assert_eq!(ok.header_u64("X-MBX-USED-WEIGHT-1M"), Some(3));
    assert_eq!(ok.header_u64("X-MBX-USED-WEIGHT"), Some(3));
    let err = ex.send(Req::get("/api/v3/depth", "symbol=NOPE")).await;
    assert_eq!(err.status, BAD_REQUEST);
    assert_eq!(err.header_u64("X-MBX-USED-WEIGHT-1M"), Some(8));
    let mut bad_sig = order_req(&ex, &alice, BUY);
    bad_sig.query = bad_sig.query.replace("price=100", "price=101");
    let err = ex.send(bad_sig).await;
    assert_eq!(err.status, BAD_REQUEST);
    assert_eq!(err.header_u64("X-MBX-USED-WEIGHT-1M"), Some(9));
    // Order counts appear once the key is known, on a refused order too.
    let err = ex
        .order(
            &alice,
            "side=BUY&type=LIMIT&timeInForce=GTC&price=100.001&quantity=0.1",
        )
        .await;
    assert_eq!(err.json["code"], -1013);
    assert_eq!(err.header_u64("X-MBX-ORDER-COUNT-10S"), Some(2));
    let ok = ex.order(&alice, BUY).await;
    ok.assert_ok();
    assert_eq!(ok.header_u64("X-MBX-USED-WEIGHT-1M"), Some(11));
    assert_eq!(ok.header_u64("X-MBX-ORDER-COUNT-10S"), Some(3));
    assert_eq!(ok.header_u64("X-MBX-ORDER-COUNT-1D"), Some(3));
}

#[tokio::test]
async fn ed25519_signed_order_is_placed() {
    let (mut ex, alice, bob) = setup().await;
    let key = ex.ed25519_key(alice.customer, "read,trade");
    let resp = ex
        .order(&key, &format!("{BUY}&newClientOrderId=ed-1"))
        .await;
    assert_eq!(resp.assert_ok()["clientOrderId"], "ed-1");
    assert_eq!(ex.open_orders(alice.customer).await.len(), 2);
    // Signatures sent without percent-encoding also verify; a tampered one does not.
    let mut raw = order_req(&ex, &key, BUY);
    raw.query = raw
        .query
        .replace("%2B", "+")
        .replace("%2F", "/")
        .replace("%3D", "=");
    ex.send(raw).await.assert_ok();
    let mut tampered = order_req(&ex, &key, BUY);
    tampered.query = tampered.query.replace("quantity=0.1", "quantity=0.2");
    refused(&ex, tampered, BAD_REQUEST, -1022, BAD_SIGNATURE).await;
    // Bob's Ed25519 key cannot sign for Alice's.
    let bobs = ex.ed25519_key(bob.customer, "read,trade");
    let forged = key.signing_with(&bobs);
    refused(
        &ex,
        order_req(&ex, &forged, BUY),
        BAD_REQUEST,
        -1022,
        BAD_SIGNATURE,
    )
    .await;
}

#[tokio::test]
async fn order_test_validates_without_placing() {
    let (ex, alice, _) = setup().await;
    let test = |params: &str| {
        ex.signed_req(
            Method::POST,
            "/api/v3/order/test",
            &format!("symbol={SYMBOL}&{params}"),
            &alice,
        )
    };
    let before = ex.snapshot().await;
    let resp = ex
        .send(test(&format!("{BUY}&computeCommissionRates=false")))
        .await;
    assert_eq!(resp.assert_ok(), &serde_json::json!({}));
    // Even an order that would fill at once, or exceed the balance: no balance check.
    let resp = ex
        .send(test(
            "side=BUY&type=LIMIT&timeInForce=GTC&price=300&quantity=50",
        ))
        .await;
    assert_eq!(resp.assert_ok(), &serde_json::json!({}));
    assert_eq!(ex.snapshot().await, before);
    let req = test("side=BUY&type=LIMIT&timeInForce=GTC&price=100&quantity=0.100001");
    refused(&ex, req, BAD_REQUEST, -1013, "Filter failure: LOT_SIZE").await;
    let req = test(&format!("{BUY}&stopPrice=1"));
    let msg = "Not all sent parameters were read; read '8' parameter(s) but was sent '9'.";
    refused(&ex, req, BAD_REQUEST, -1104, msg).await;
}

#[tokio::test]
async fn a_fills_full_response_shows_commissions() {
    let (ex, alice, bob) = setup().await;
    // Bob's sell rests at 200; Alice buys it at market.
    let resp = ex.order(&alice, "side=BUY&type=MARKET&quantity=0.1").await;
    let body = resp.assert_ok();
    assert_eq!(body["status"], "FILLED", "{body}");
    assert_eq!(body["executedQty"], "0.10000000");
    assert_eq!(body["cummulativeQuoteQty"], "20.00000000");
    let fills = body["fills"].as_array().unwrap();
    assert_eq!(fills.len(), 1, "{body}");
    assert_eq!(fills[0]["price"], "200.00000000");
    assert_eq!(fills[0]["qty"], "0.10000000");
    // 10 bps of what the buyer gets, in BTC.
    assert_eq!(fills[0]["commission"], "0.00010000");
    assert_eq!(fills[0]["commissionAsset"], "BTC");
    // Balances as the account endpoint shows them.
    let balance = |account: &serde_json::Value, asset: &str| {
        account["balances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["asset"] == asset)
            .map(|b| (b["free"].clone(), b["locked"].clone()))
            .unwrap()
    };
    let account = ex.signed(Method::GET, "/api/v3/account", "", &alice).await;
    let account = account.assert_ok();
    assert_eq!(
        balance(account, "BTC"),
        ("1.09990000".into(), "0.00000000".into())
    );
    assert_eq!(
        balance(account, "USDT"),
        ("9970.00000000".into(), "10.00000000".into())
    );
    // Bob, the maker, paid 10 bps of the 20 USDT he got.
    let params = format!("symbol={SYMBOL}");
    let trades = ex
        .signed(Method::GET, "/api/v3/myTrades", &params, &bob)
        .await;
    let trades = trades.assert_ok();
    assert_eq!(trades[0]["commission"], "0.02000000");
    assert_eq!(trades[0]["commissionAsset"], "USDT");
    assert_eq!(trades[0]["isMaker"], true);
}

/// Binance answers an unknown path with 404; ours says so in the JSON error shape.
#[tokio::test]
async fn unknown_endpoint_gets_404_json() {
    let ex = Exchange::new();
    for path in [
        "/api/v3/nope",
        "/",
        "/api/v3/order/../account",
        "/sapi/v1/capital/withdraw/apply",
    ] {
        let resp = ex.send(Req::get(path, "")).await;
        assert_eq!(resp.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(resp.json["code"], -1000, "{path}: {}", resp.text);
        // JSON, and said to be JSON, like every other error answer.
        assert_eq!(
            resp.header("content-type"),
            Some("application/json;charset=UTF-8"),
            "{path}"
        );
    }
}
