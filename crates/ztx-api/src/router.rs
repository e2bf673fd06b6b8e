//! The routes: each names its access, weight and handler; the gate does the rest.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::error::ApiError;
use crate::gate::{Access, Raw, serve};
use crate::state::AppState;
use crate::{account, market, trade};

/// The largest request body accepted (Binance requests are small).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

type Parts = (
    State<AppState>,
    ConnectInfo<SocketAddr>,
    Uri,
    HeaderMap,
    Bytes,
);

/// Declares a handler that passes through the gate with fixed access and weight.
macro_rules! endpoint {
    ($name:ident, $access:expr, $weight:expr, $orders:expr, $handler:path) => {
        async fn $name(
            state: State<AppState>,
            peer: ConnectInfo<SocketAddr>,
            uri: Uri,
            headers: HeaderMap,
            body: Bytes,
        ) -> Response {
            let parts: Parts = (state, peer, uri, headers, body);
            let (state, peer, uri, headers, body) = parts;
            serve(
                state,
                Raw::new(peer, uri, headers, body),
                $access,
                $weight,
                $orders,
                $handler,
            )
            .await
        }
    };
}

endpoint!(ping, Access::Public, 1, false, market::ping);
endpoint!(time, Access::Public, 1, false, market::time);
endpoint!(
    exchange_info,
    Access::Public,
    20,
    false,
    market::exchange_info
);
endpoint!(trades, Access::Public, 25, false, market::trades);
endpoint!(klines, Access::Public, 2, false, market::klines);
endpoint!(ticker_24hr, Access::Public, 40, false, market::ticker_24hr);
endpoint!(ticker_price, Access::Public, 4, false, market::ticker_price);
endpoint!(new_order, Access::Trade, 1, true, trade::place);
endpoint!(test_order, Access::Trade, 1, false, trade::test_order);
endpoint!(query_order, Access::Read, 4, false, trade::query_order);
endpoint!(cancel_order, Access::Trade, 1, false, trade::cancel_order);
endpoint!(open_orders, Access::Read, 6, false, trade::open_orders);
endpoint!(
    cancel_open_orders,
    Access::Trade,
    1,
    false,
    trade::cancel_open_orders
);
endpoint!(all_orders, Access::Read, 20, false, trade::all_orders);
endpoint!(account, Access::Read, 20, false, account::account);
endpoint!(my_trades, Access::Read, 20, false, account::my_trades);
endpoint!(
    api_restrictions,
    Access::Read,
    1,
    false,
    account::api_restrictions
);

/// Depth's weight depends on its `limit`, so it reads it before the gate.
async fn depth(
    state: State<AppState>,
    peer: ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let limit = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix("limit="))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(100);
    let weight = market::depth_weight(limit);
    serve(
        state,
        Raw::new(peer, uri, headers, body),
        Access::Public,
        weight,
        false,
        market::depth,
    )
    .await
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        ApiError::unknown()
            .with_detail("no such endpoint")
            .body_json(),
    )
        .into_response()
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
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}
