//! The routes: each names its access, weight and handler; the gate does the rest.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use axum::routing::{get, post};

use crate::error::ApiError;
pub use crate::gate::MAX_BODY_BYTES;
use crate::gate::{Access, Call, Raw, Weight, serve};
use crate::state::AppState;
use crate::{account, market, reserves, security, trade, transparency, webhooks};

/// Declares a handler that passes through the gate with fixed access and weight.
macro_rules! endpoint {
    ($name:ident, $access:expr, $weight:expr, $orders:expr, $handler:path) => {
        async fn $name(
            state: State<AppState>,
            peer: ConnectInfo<SocketAddr>,
            method: Method,
            uri: Uri,
            headers: HeaderMap,
            body: Body,
        ) -> Response {
            let raw = Raw::new(peer, method, uri, headers, body);
            serve(state, raw, $access, $weight, $orders, $handler).await
        }
    };
}

use Access::{Public, Read, Trade, Unfreeze};
use Weight::{Depth, Fixed};

endpoint!(ping, Public, Fixed(1), false, market::ping);
endpoint!(time, Public, Fixed(1), false, market::time);
endpoint!(
    exchange_info,
    Public,
    Fixed(20),
    false,
    market::exchange_info
);
endpoint!(depth, Public, Depth, false, market::depth);
endpoint!(trades, Public, Fixed(25), false, market::trades);
endpoint!(klines, Public, Fixed(2), false, market::klines);
endpoint!(ticker_24hr, Public, Fixed(40), false, market::ticker_24hr);
endpoint!(ticker_price, Public, Fixed(4), false, market::ticker_price);
endpoint!(new_order, Trade, Fixed(1), true, trade::place);
endpoint!(test_order, Trade, Fixed(1), false, trade::test_order);
endpoint!(query_order, Read, Fixed(4), false, trade::query_order);
endpoint!(cancel_order, Trade, Fixed(1), false, trade::cancel_order);
endpoint!(open_orders, Read, Fixed(6), false, trade::open_orders);
endpoint!(
    cancel_open_orders,
    Trade,
    Fixed(1),
    false,
    trade::cancel_open_orders
);
endpoint!(all_orders, Read, Fixed(20), false, trade::all_orders);
endpoint!(account, Read, Fixed(20), false, account::account);
endpoint!(my_trades, Read, Fixed(20), false, account::my_trades);
endpoint!(
    api_restrictions,
    Read,
    Fixed(1),
    false,
    account::api_restrictions
);
endpoint!(audit_key, Public, Fixed(1), false, transparency::key);
endpoint!(
    audit_checkpoint,
    Public,
    Fixed(1),
    false,
    transparency::checkpoint
);
endpoint!(
    audit_inclusion,
    Public,
    Fixed(2),
    false,
    transparency::inclusion
);
endpoint!(
    audit_consistency,
    Public,
    Fixed(2),
    false,
    transparency::consistency
);
endpoint!(
    notifications,
    Read,
    Fixed(5),
    false,
    security::notifications
);
endpoint!(unfreeze, Unfreeze, Fixed(1), false, security::unfreeze);
// A key that may trade: a read-only one is what a portfolio tracker gets, and the
// webhook receives the customer's security notices.
endpoint!(webhook_show, Trade, Fixed(1), false, webhooks::show);
endpoint!(webhook_set, Trade, Fixed(10), false, webhooks::set);
endpoint!(webhook_remove, Trade, Fixed(1), false, webhooks::remove);
endpoint!(por_root, Public, Fixed(1), false, reserves::root);
endpoint!(por_proof, Read, Fixed(5), false, reserves::proof);
endpoint!(not_found, Public, Fixed(1), false, no_such_endpoint);
endpoint!(wrong_method, Public, Fixed(1), false, no_such_method);

async fn no_such_endpoint(_: AppState, _: Call) -> Result<Response, ApiError> {
    Err(ApiError::not_found())
}

async fn no_such_method(_: AppState, _: Call) -> Result<Response, ApiError> {
    Err(ApiError::method_not_allowed())
}

/// The Binance-compatible API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v3/ping", get(ping))
        .route("/api/v3/time", get(time))
        .route("/api/v3/exchangeInfo", get(exchange_info))
        .route("/api/v3/depth", get(depth))
        .route("/api/v3/trades", get(trades))
        .route("/api/v3/klines", get(klines))
        .route("/api/v3/ticker/24hr", get(ticker_24hr))
        .route("/api/v3/ticker/price", get(ticker_price))
        .route(
            "/api/v3/order",
            post(new_order).get(query_order).delete(cancel_order),
        )
        .route("/api/v3/order/test", post(test_order))
        .route(
            "/api/v3/openOrders",
            get(open_orders).delete(cancel_open_orders),
        )
        .route("/api/v3/allOrders", get(all_orders))
        .route("/api/v3/account", get(account))
        .route("/api/v3/myTrades", get(my_trades))
        .route("/sapi/v1/account/apiRestrictions", get(api_restrictions))
        .route("/ztx/v1/audit/key", get(audit_key))
        .route("/ztx/v1/audit/checkpoint", get(audit_checkpoint))
        .route("/ztx/v1/audit/inclusion", get(audit_inclusion))
        .route("/ztx/v1/audit/consistency", get(audit_consistency))
        .route("/ztx/v1/notifications", get(notifications))
        .route("/ztx/v1/apiKey/unfreeze", post(unfreeze))
        .route(
            "/ztx/v1/webhook",
            get(webhook_show).post(webhook_set).delete(webhook_remove),
        )
        .route("/ztx/v1/por/root", get(por_root))
        .route("/ztx/v1/por/proof", get(por_proof))
        .fallback(not_found)
        .method_not_allowed_fallback(wrong_method)
        .with_state(state)
}
