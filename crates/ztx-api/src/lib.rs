//! The Binance-compatible HTTP edge of ztx: error answers, request parameters, request
//! signing and rate limits, as pure building blocks for the axum handlers.
#![forbid(unsafe_code)]

pub mod account;
pub mod accounting;
pub mod admin;
pub mod admin_tls;
pub mod audit;
pub mod auth;
pub mod contacts;
pub mod email;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod gate;
pub mod json;
pub mod market;
pub mod monitor;
pub mod operate;
pub mod outbox;
pub mod params;
pub mod ratelimit;
pub mod reserves;
pub mod router;
pub mod security;
pub mod state;
pub mod trade;
pub mod transparency;
pub mod webhooks;

pub use auth::{
    ClientKey, Ed25519Key, HmacSecret, KeyError, SignaturePayload, check_api_key_format,
    check_timestamp, signature_payload,
};
pub use error::ApiError;
pub use params::{Param, Params, Source};
pub use ratelimit::{LimitKind, Limited, OrderCounts, RateLimiter, RateLimits, UsedWeight};
pub use router::router;
pub use state::{AppState, StorePool};
pub use ztx_store::StoreFactory;
