//! The API over HTTP against a real engine and a fresh SQLite store: every refused attack
//! or bad input answers Binance's exact code and status and changes nothing (balances,
//! open orders, order history and trades are compared before and after); rate limits
//! throttle floods; and the positive paths (usage headers, Ed25519, `order/test`, fills)
//! work in-process and over a real socket. See `common/mod.rs` for the harness.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers: a panic is a failed test"
)]

mod common;

#[path = "http/access.rs"]
mod access;
#[path = "http/audit.rs"]
mod audit;
#[path = "http/auth.rs"]
mod auth;
#[path = "http/flows.rs"]
mod flows;
#[path = "http/limits.rs"]
mod limits;
#[path = "http/orders.rs"]
mod orders;
#[path = "http/security.rs"]
mod security;
#[path = "http/socket.rs"]
mod socket;
#[path = "http/webhooks.rs"]
mod webhooks;

use std::net::{IpAddr, Ipv4Addr};

use axum::http::{Method, StatusCode};
use common::{Exchange, Key, NOW, Req, SYMBOL, send_tcp};
use ztx_api::RateLimits;

const BAD_REQUEST: StatusCode = StatusCode::BAD_REQUEST;
const UNAUTHORIZED: StatusCode = StatusCode::UNAUTHORIZED;
const ORDER: &str = "/api/v3/order";
const REJECTED_KEY: &str = "Invalid API-key, IP, or permissions for action.";
const BAD_SIGNATURE: &str = "Signature for this request is not valid.";
const DECIMAL_RANGE: &str = r"^([0-9]{1,20})(\.[0-9]{1,20})?$";
/// A valid resting buy: 0.1 BTC at 100 USDT (notional 10 USDT).
const BUY: &str = "side=BUY&type=LIMIT&timeInForce=GTC&price=100&quantity=0.1";

/// Alice (10 000 USDT, 1 BTC) with a resting buy, Bob (10 000 USDT, 1 BTC) with a resting
/// sell, so that a snapshot has balances, holds and orders to compare.
async fn two_traders(limits: RateLimits) -> (Exchange, Key, Key) {
    let mut ex = Exchange::with_limits(limits);
    let alice = ex.trader("10000", "1").await;
    let bob = ex.trader("10000", "1").await;
    ex.rest(&alice, "BUY", "100", "0.1").await;
    ex.rest(&bob, "SELL", "200", "0.1").await;
    (ex, alice, bob)
}

async fn setup() -> (Exchange, Key, Key) {
    two_traders(RateLimits::default()).await
}

/// Sends `req`, asserts the Binance error, and that nothing changed.
async fn refused(ex: &Exchange, req: Req, status: StatusCode, code: i64, msg: &str) {
    let before = ex.snapshot().await;
    let resp = ex.send(req.clone()).await;
    resp.assert_error(status, code, msg);
    assert_eq!(ex.snapshot().await, before, "{req:?} changed something");
}

fn order_req(ex: &Exchange, key: &Key, params: &str) -> Req {
    ex.signed_req(
        Method::POST,
        ORDER,
        &format!("symbol={SYMBOL}&{params}"),
        key,
    )
}

fn illegal(param: &str) -> String {
    format!("Illegal characters found in parameter '{param}'; legal range is '{DECIMAL_RANGE}'.")
}

fn limits(weight_per_minute: u64, orders_per_10s: u64) -> RateLimits {
    RateLimits {
        weight_per_minute,
        orders_per_10s,
        ..RateLimits::default()
    }
}
