//! Every data access accounted for: each store call a request makes is in the audit log
//! right after the request's own entry, naming the service, the principal it served and
//! the customer segment it ran under; the engine's commits and upkeep are logged as the
//! platform's; a store call outside any accounted caller is refused.

use ztx_api::accounting::{Caller, SERVICE_API};
use ztx_audit::{Entry, Kind};
use ztx_engine::{Accessor, Principal};

use ztx_monitor::ocsf::param;

use super::*;

/// The request entry for `action` last logged, its index, and the store calls logged
/// right after it for it.
fn request_and_calls(log: &[Entry], action: &str) -> (usize, Entry, Vec<Entry>) {
    let (at, request) = log
        .iter()
        .enumerate()
        .rev()
        .find(|(_, e)| e.kind == Kind::Request && e.action == action)
        .unwrap();
    let calls: Vec<Entry> = log[at + 1..]
        .iter()
        .take_while(|e| e.kind == Kind::DataAccess && e.request_id == request.request_id)
        .cloned()
        .collect();
    (at, request.clone(), calls)
}

#[tokio::test]
async fn every_store_call_of_a_request_is_logged_with_its_principal_and_segment() {
    let (ex, alice, _bob) = setup().await;
    ex.signed(
        Method::GET,
        "/api/v3/allOrders",
        &format!("symbol={SYMBOL}"),
        &alice,
    )
    .await
    .assert_ok();
    let (_, request, calls) = request_and_calls(&ex.audit_log(), "GET /api/v3/allOrders");
    let orders = calls
        .iter()
        .find(|e| e.action == "store orders")
        .expect("the history read is logged with its request");
    assert_eq!(orders.customer, Some(alice.customer.0), "alice's segment");
    assert_eq!(orders.api_key, request.api_key);
    assert_eq!(orders.client_ip, Some(common::CLIENT_IP));
    assert_eq!(param(orders, "service"), Some(SERVICE_API));
    let principal = format!("customer {}", alice.customer.0);
    assert_eq!(param(orders, "principal"), Some(principal.as_str()));
    assert_eq!(param(orders, "activity"), Some("query"));
    assert_eq!(param(orders, "tables"), Some("orders,order_index"));
    assert_eq!(
        param(orders, "rows"),
        Some("1"),
        "alice's one resting order"
    );

    // A public read: nobody proven, the platform's segment.
    ex.send(Req::get("/api/v3/trades", &format!("symbol={SYMBOL}")))
        .await
        .assert_ok();
    let (_, _, calls) = request_and_calls(&ex.audit_log(), "GET /api/v3/trades");
    let trades = calls
        .iter()
        .find(|e| e.action == "store recent_trades")
        .unwrap();
    assert_eq!(
        (trades.customer, param(trades, "principal")),
        (None, Some("anonymous"))
    );
}

#[tokio::test]
async fn a_key_looked_up_for_a_forged_signature_is_logged_as_read_for_nobody_proven() {
    let (mut ex, alice, bob) = setup().await;
    // A key the API has not cached yet: the gate reads it from the store.
    let fresh = ex.hmac_key(alice.customer, "read", "");
    let forged = fresh.signing_with(&bob);
    ex.signed(Method::GET, "/api/v3/account", "", &forged)
        .await
        .assert_error(BAD_REQUEST, -1022, BAD_SIGNATURE);
    let (_, request, calls) = request_and_calls(&ex.audit_log(), "GET /api/v3/account");
    assert_eq!(request.denial, Some(ztx_audit::Denial::BadSignature));
    let lookup = calls
        .iter()
        .find(|e| e.action == "store api_key_by_key")
        .expect("the key's look-up is logged with the refused request");
    // Whose key it was is the segment; the caller never proved to be its owner.
    assert_eq!(lookup.customer, Some(alice.customer.0));
    assert_eq!(param(lookup, "principal"), Some("anonymous"));
    assert_eq!(param(lookup, "rows"), Some("1"));
}

#[tokio::test]
async fn an_order_commit_is_logged_in_its_commit_naming_its_customers() {
    let (ex, alice, bob) = setup().await;
    // Alice rests a buy at 100: Bob sells into it.
    ex.send(order_req(
        &ex,
        &bob,
        "side=SELL&type=LIMIT&timeInForce=GTC&price=100&quantity=0.1",
    ))
    .await
    .assert_ok();
    let log = ex.audit_log();
    let (at, _, _) = request_and_calls(&log, "POST /api/v3/order");
    let commit = &log[at + 1];
    assert_eq!(commit.kind, Kind::DataAccess);
    assert_eq!(
        commit.action, "store commit",
        "logged in the order's own commit"
    );
    assert_eq!(param(commit, "service"), Some(ztx_engine::SERVICE_ENGINE));
    assert_eq!(param(commit, "principal"), Some("platform"));
    assert_eq!(param(commit, "activity"), Some("write"));
    assert_eq!(commit.customer, None, "the platform's segment");
    let mut both = [alice.customer.0, bob.customer.0];
    both.sort_unstable();
    assert_eq!(
        param(commit, "customers"),
        Some(format!("{},{}", both[0], both[1]).as_str())
    );
    assert!(param(commit, "rows").unwrap().parse::<u64>().unwrap() >= 4);
}

#[tokio::test]
async fn the_engines_upkeep_is_logged_as_the_platforms() {
    let (ex, _alice, _bob) = setup().await;
    // The upkeep indexes the orders into the history tables within a few rounds.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let indexed = loop {
        let found = ex
            .audit_log()
            .into_iter()
            .find(|e| e.action == "store index_history");
        if let Some(entry) = found {
            break entry;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no upkeep entry in 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(param(&indexed, "service"), Some(ztx_engine::SERVICE_ENGINE));
    assert_eq!(param(&indexed, "principal"), Some("platform"));
    assert!(param(&indexed, "rows").unwrap().parse::<u64>().unwrap() > 0);
    // The engine loaded the state once, at start.
    assert!(
        ex.audit_log()
            .iter()
            .any(|e| e.action == "store load_state")
    );
}

#[tokio::test]
async fn unaccounted_store_call_is_refused() {
    let ex = Exchange::new();
    // A code path that reads outside any caller gets nothing.
    let refused = ex.state.reads.with(|s| s.audit_size()).await;
    assert!(refused.is_err(), "an unaccounted read was answered");
    // Inside one, the same read is answered and accounted for.
    let caller = Caller::new(Accessor {
        service: SERVICE_API,
        principal: Principal::Anonymous,
        request_id: 77,
        api_key: None,
        client_ip: None,
    });
    caller
        .scope(ex.state.reads.with(|s| s.audit_size()))
        .await
        .unwrap();
    let entries = caller.take_entries(NOW);
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (entries[0].action.as_str(), entries[0].request_id),
        ("store audit_size", 77)
    );
}
