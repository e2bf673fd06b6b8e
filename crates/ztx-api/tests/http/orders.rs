//! Parameters and orders: malformed, duplicated, smuggled or out-of-filter input is
//! refused with the code naming it, and changes nothing.

use super::*;

#[tokio::test]
async fn duplicate_parameter_is_refused() {
    let (ex, alice, _) = setup().await;
    let msg = "Duplicate values for a parameter detected.";
    // Twice in the query, correctly signed.
    let req = order_req(&ex, &alice, &format!("{BUY}&quantity=0.2"));
    refused(&ex, req, BAD_REQUEST, -1101, msg).await;
    // Once in the query and once in the body, signed together.
    let query = format!("symbol={SYMBOL}&{BUY}");
    let req = Req::new(Method::POST, ORDER, &query)
        .body(&format!("quantity=5&timestamp={NOW}"))
        .signed_by(&alice);
    refused(&ex, req, BAD_REQUEST, -1101, msg).await;
    // The same name percent-encoded.
    let req = order_req(&ex, &alice, &format!("{BUY}&quantit%79=0.2"));
    refused(&ex, req, BAD_REQUEST, -1101, msg).await;
    // Two signatures, one in the query and one in the body.
    let mut req = order_req(&ex, &alice, BUY);
    let sig = req.query.rsplit_once("signature=").unwrap().1.to_string();
    req.body = format!("signature={sig}");
    refused(&ex, req, BAD_REQUEST, -1101, msg).await;
}

#[tokio::test]
async fn parameter_smuggled_across_query_and_body_is_refused() {
    let (ex, alice, _) = setup().await;
    // A client signs query ‖ body with no separator (Binance's example 3). Moving one
    // byte across the boundary keeps the signature valid but changes the parameters:
    // `recvWindow=5000` + `quantity=0.1` becomes `recvWindow=500` + `0quantity=0.1`.
    let query = format!("symbol={SYMBOL}&side=BUY&type=LIMIT&timeInForce=GTC&price=100");
    let legit = Req::new(Method::POST, ORDER, &format!("{query}&recvWindow=5000"))
        .body(&format!("quantity=0.1&timestamp={NOW}"))
        .signed_by(&alice);
    let mut smuggled = legit.clone();
    smuggled.query = format!("{query}&recvWindow=500");
    smuggled.body = format!("0{}", legit.body);
    let msg = "Not all sent parameters were read; read '8' parameter(s) but was sent '9'.";
    refused(&ex, smuggled, BAD_REQUEST, -1104, msg).await;
    // The signature was good: the unmoved request is accepted.
    ex.send(legit).await.assert_ok();
    // A signed parameter the endpoint does not know is refused the same way.
    let req = order_req(&ex, &alice, &format!("{BUY}&icebergQty=0.01"));
    refused(&ex, req, BAD_REQUEST, -1104, msg).await;
}

#[tokio::test]
async fn malformed_parameter_names_and_values_are_refused() {
    let (ex, alice, _) = setup().await;
    let anywhere = "Illegal characters found in a parameter.";
    let req = order_req(&ex, &alice, &format!("{BUY}&a-b=1"));
    refused(&ex, req, BAD_REQUEST, -1100, anywhere).await;
    let bad_client_id = r"Illegal characters found in parameter 'newClientOrderId'; legal range is '^[\.A-Z\:/a-z0-9_\-]{1,36}$'.";
    for cid in ["a%20b", &"x".repeat(37), "%C3%A9"] {
        let req = order_req(&ex, &alice, &format!("{BUY}&newClientOrderId={cid}"));
        refused(&ex, req, BAD_REQUEST, -1100, bad_client_id).await;
    }
    let control = "Illegal characters found in parameter 'newClientOrderId'; legal range is 'UTF-8 without control characters'.";
    let req = order_req(&ex, &alice, &format!("{BUY}&newClientOrderId=a%00"));
    refused(&ex, req, BAD_REQUEST, -1100, control).await;
}

#[tokio::test]
async fn oversized_body_is_refused() {
    let (ex, alice, _) = setup().await;
    let query = format!("symbol={SYMBOL}&{BUY}");
    let filler = "a".repeat(ztx_api::router::MAX_BODY_BYTES);
    let req = Req::new(Method::POST, ORDER, &query)
        .body(&format!("timestamp={NOW}&pad={filler}"))
        .signed_by(&alice);
    let before = ex.snapshot().await;
    let resp = ex.send(req).await;
    assert_eq!(resp.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", resp.text);
    assert_eq!(ex.snapshot().await, before);
    // In Binance's shape, not the HTTP library's plain-text rejection.
    resp.assert_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        -1101,
        "Too many parameters sent for this endpoint.",
    );
}

#[tokio::test]
async fn too_many_parameters_are_refused() {
    let (ex, alice, _) = setup().await;
    let pad: Vec<String> = (0..60).map(|i| format!("p{i}=1")).collect();
    let req = order_req(&ex, &alice, &format!("{BUY}&{}", pad.join("&")));
    let msg = "Too many parameters sent for this endpoint.";
    refused(&ex, req, BAD_REQUEST, -1101, msg).await;
}

#[tokio::test]
async fn too_many_decimals_is_refused() {
    let (ex, alice, _) = setup().await;
    let cases = [
        (
            "price=100&quantity=0.000000001",
            "Parameter 'quantity' has too much precision.",
        ),
        (
            "price=100.000000001&quantity=0.1",
            "Parameter 'price' has too much precision.",
        ),
    ];
    for (params, msg) in cases {
        let req = order_req(
            &ex,
            &alice,
            &format!("side=BUY&type=LIMIT&timeInForce=GTC&{params}"),
        );
        refused(&ex, req, BAD_REQUEST, -1111, msg).await;
    }
    // Trailing zeros past the precision are padding, not precision.
    let padded = "side=BUY&type=LIMIT&timeInForce=GTC&price=100.0000000000&quantity=0.1000000000";
    ex.order(&alice, padded).await.assert_ok();
}

#[tokio::test]
async fn malformed_number_is_refused() {
    let (ex, alice, _) = setup().await;
    for qty in [
        "1e5",
        "-1",
        "0x10",
        "1,5",
        ".5",
        "5.",
        "%2B1",
        "1%20",
        "NaN",
        "%EF%BC%91",
    ] {
        let params = format!("side=BUY&type=LIMIT&timeInForce=GTC&price=100&quantity={qty}");
        let req = order_req(&ex, &alice, &params);
        refused(&ex, req, BAD_REQUEST, -1100, &illegal("quantity")).await;
    }
    let digits21 = "1".repeat(21);
    let params = format!("side=BUY&type=LIMIT&timeInForce=GTC&price={digits21}&quantity=0.1");
    refused(
        &ex,
        order_req(&ex, &alice, &params),
        BAD_REQUEST,
        -1100,
        &illegal("price"),
    )
    .await;
    let req = order_req(&ex, &alice, &format!("{BUY}&recvWindow=5e3"));
    let msg = "Illegal characters found in parameter 'recvWindow'; legal range is '^[0-9]{1,20}$'.";
    refused(&ex, req, BAD_REQUEST, -1100, msg).await;
}

#[tokio::test]
async fn zero_quantity_is_refused() {
    let (ex, alice, _) = setup().await;
    for params in [
        "side=BUY&type=LIMIT&timeInForce=GTC&price=100&quantity=0",
        "side=BUY&type=LIMIT&timeInForce=GTC&price=100&quantity=0.00000000",
        "side=BUY&type=MARKET&quantity=0",
        "side=BUY&type=MARKET&quoteOrderQty=0",
    ] {
        let req = order_req(&ex, &alice, params);
        refused(&ex, req, BAD_REQUEST, -1013, "Invalid quantity.").await;
    }
    let req = order_req(
        &ex,
        &alice,
        "side=BUY&type=LIMIT&timeInForce=GTC&price=0&quantity=0.1",
    );
    refused(&ex, req, BAD_REQUEST, -1013, "Filter failure: PRICE_FILTER").await;
}

#[tokio::test]
async fn negative_quantity_is_refused() {
    let (ex, alice, _) = setup().await;
    let cases = [
        ("price=100&quantity=-0.1", "quantity"),
        ("price=-100&quantity=0.1", "price"),
    ];
    for (params, name) in cases {
        let req = order_req(
            &ex,
            &alice,
            &format!("side=BUY&type=LIMIT&timeInForce=GTC&{params}"),
        );
        refused(&ex, req, BAD_REQUEST, -1100, &illegal(name)).await;
    }
    let req = order_req(&ex, &alice, "side=BUY&type=MARKET&quoteOrderQty=-10");
    refused(&ex, req, BAD_REQUEST, -1100, &illegal("quoteOrderQty")).await;
}

#[tokio::test]
async fn price_off_the_tick_is_refused() {
    let (ex, alice, _) = setup().await;
    for price in ["100.001", "0.001", "1000000.01"] {
        let params = format!("side=BUY&type=LIMIT&timeInForce=GTC&price={price}&quantity=0.1");
        let req = order_req(&ex, &alice, &params);
        refused(&ex, req, BAD_REQUEST, -1013, "Filter failure: PRICE_FILTER").await;
    }
}

#[tokio::test]
async fn quantity_off_the_step_is_refused() {
    let (ex, alice, _) = setup().await;
    for qty in ["0.100001", "0.000001", "9000.00001"] {
        let params = format!("side=BUY&type=LIMIT&timeInForce=GTC&price=100&quantity={qty}");
        let req = order_req(&ex, &alice, &params);
        refused(&ex, req, BAD_REQUEST, -1013, "Filter failure: LOT_SIZE").await;
    }
}

#[tokio::test]
async fn notional_below_minimum_is_refused() {
    let (ex, alice, _) = setup().await;
    for params in [
        "side=BUY&type=LIMIT&timeInForce=GTC&price=100&quantity=0.04999",
        "side=BUY&type=MARKET&quoteOrderQty=4.99999999",
    ] {
        let req = order_req(&ex, &alice, params);
        refused(&ex, req, BAD_REQUEST, -1013, "Filter failure: NOTIONAL").await;
    }
    // Exactly the minimum is fine.
    ex.order(
        &alice,
        "side=BUY&type=LIMIT&timeInForce=GTC&price=100&quantity=0.05",
    )
    .await
    .assert_ok();
}

#[tokio::test]
async fn unknown_symbol_is_refused() {
    let (ex, alice, _) = setup().await;
    let params = |symbol: &str| format!("symbol={symbol}&{BUY}");
    let req = ex.signed_req(Method::POST, ORDER, &params("ETHBTC"), &alice);
    refused(&ex, req, BAD_REQUEST, -1121, "Invalid symbol.").await;
    let req = ex.signed_req(Method::POST, ORDER, &params(&"A".repeat(21)), &alice);
    refused(&ex, req, BAD_REQUEST, -1121, "Invalid symbol.").await;
    let msg = "Illegal characters found in parameter 'symbol'; legal range is '^[A-Z0-9]{1,20}$'.";
    let req = ex.signed_req(Method::POST, ORDER, &params("btcusdt"), &alice);
    refused(&ex, req, BAD_REQUEST, -1100, msg).await;
    let resp = ex.send(Req::get("/api/v3/depth", "symbol=ETHBTC")).await;
    resp.assert_error(BAD_REQUEST, -1121, "Invalid symbol.");
}

#[tokio::test]
async fn invalid_side_type_and_tif_are_refused() {
    let (ex, alice, _) = setup().await;
    let cases = [
        (
            "side=buy&type=LIMIT&timeInForce=GTC",
            -1117,
            "Invalid side.",
        ),
        (
            "side=HOLD&type=LIMIT&timeInForce=GTC",
            -1117,
            "Invalid side.",
        ),
        (
            "side=BUY&type=STOP_LOSS&timeInForce=GTC",
            -1116,
            "Invalid orderType.",
        ),
        (
            "side=BUY&type=limit&timeInForce=GTC",
            -1116,
            "Invalid orderType.",
        ),
        (
            "side=BUY&type=LIMIT&timeInForce=GTX",
            -1115,
            "Invalid timeInForce.",
        ),
    ];
    for (params, code, msg) in cases {
        let req = order_req(&ex, &alice, &format!("{params}&price=100&quantity=0.1"));
        refused(&ex, req, BAD_REQUEST, code, msg).await;
    }
    let req = order_req(&ex, &alice, &format!("{BUY}&newOrderRespType=EVERYTHING"));
    let msg = "Illegal characters found in parameter 'newOrderRespType'; legal range is '^(ACK|RESULT|FULL)$'.";
    refused(&ex, req, BAD_REQUEST, -1100, msg).await;
}

#[tokio::test]
async fn limit_order_without_price_is_refused() {
    let (ex, alice, _) = setup().await;
    let mandatory =
        |p: &str| format!("Mandatory parameter '{p}' was not sent, was empty/null, or malformed.");
    let cases = [
        ("side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.1", "price"),
        (
            "side=BUY&type=LIMIT&timeInForce=GTC&price=&quantity=0.1",
            "price",
        ),
        ("side=BUY&type=LIMIT&timeInForce=GTC&price=100", "quantity"),
        ("side=BUY&type=LIMIT&price=100&quantity=0.1", "timeInForce"),
        ("type=LIMIT&timeInForce=GTC&price=100&quantity=0.1", "side"),
        ("side=BUY&type=MARKET", "quantity"),
    ];
    for (params, missing) in cases {
        let req = order_req(&ex, &alice, params);
        refused(&ex, req, BAD_REQUEST, -1102, &mandatory(missing)).await;
    }
}

#[tokio::test]
async fn market_order_with_quantity_and_quote_quantity_is_refused() {
    let (ex, alice, _) = setup().await;
    let not_required = |p: &str| format!("Parameter '{p}' sent when not required.");
    let cases = [
        (
            "side=BUY&type=MARKET&quantity=0.1&quoteOrderQty=10",
            "quoteOrderQty",
        ),
        ("side=BUY&type=MARKET&quantity=0.1&price=100", "price"),
        (
            "side=BUY&type=MARKET&quantity=0.1&timeInForce=GTC",
            "timeInForce",
        ),
        (
            "side=BUY&type=LIMIT_MAKER&price=100&quantity=0.1&timeInForce=GTC",
            "timeInForce",
        ),
        (
            "side=BUY&type=LIMIT&timeInForce=GTC&price=100&quantity=0.1&quoteOrderQty=10",
            "quoteOrderQty",
        ),
    ];
    for (params, extra) in cases {
        let req = order_req(&ex, &alice, params);
        refused(&ex, req, BAD_REQUEST, -1106, &not_required(extra)).await;
    }
}

#[tokio::test]
async fn insufficient_balance_is_refused() {
    let (mut ex, alice, _) = setup().await;
    // Enough on the book for the market orders to fill in full: Carol bids 3 BTC at 150
    // and offers 60 BTC at 210 (Bob's 0.1 BTC at 200 is ahead of it).
    let carol = ex.trader("1000", "60").await;
    ex.rest(&carol, "BUY", "150", "3").await;
    ex.rest(&carol, "SELL", "210", "60").await;
    let msg = "Account has insufficient balance for requested action.";
    for params in [
        // 10 000 USDT less the 10 held: 99.91 BTC at 100 needs 9 991 — just too much.
        "side=BUY&type=LIMIT&timeInForce=GTC&price=100&quantity=99.91",
        "side=SELL&type=LIMIT&timeInForce=GTC&price=300&quantity=1.00001",
        "side=SELL&type=MARKET&quantity=1.00001",
        "side=BUY&type=MARKET&quantity=50",
        "side=BUY&type=MARKET&quoteOrderQty=10000",
    ] {
        let req = order_req(&ex, &alice, params);
        refused(&ex, req, BAD_REQUEST, -2010, msg).await;
    }
}

#[tokio::test]
async fn duplicate_client_order_id_is_refused() {
    let (ex, alice, bob) = setup().await;
    let params = format!("{BUY}&newClientOrderId=bot-7");
    ex.order(&alice, &params).await.assert_ok();
    let req = order_req(&ex, &alice, &params);
    refused(&ex, req, BAD_REQUEST, -2010, "Duplicate order sent.").await;
    // The id is per customer: Bob may use it.
    ex.order(&bob, &params).await.assert_ok();
}

#[tokio::test]
async fn limit_maker_that_would_take_is_refused() {
    let (ex, alice, _) = setup().await;
    // Bob rests a sell at 200; a maker-only buy at 200 or above would take it.
    for price in ["200", "250"] {
        let params = format!("side=BUY&type=LIMIT_MAKER&price={price}&quantity=0.1");
        let req = order_req(&ex, &alice, &params);
        refused(
            &ex,
            req,
            BAD_REQUEST,
            -2010,
            "Order would immediately match and take.",
        )
        .await;
    }
    let resp = ex
        .order(
            &alice,
            "side=BUY&type=LIMIT_MAKER&price=199.99&quantity=0.1",
        )
        .await;
    // LIMIT_MAKER answers ACK by default, as Binance does.
    let body = resp.assert_ok();
    assert!(body.get("status").is_none(), "{body}");
}
