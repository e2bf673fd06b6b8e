//! The gate every request passes: request weight per IP, parameter parsing, then for
//! signed endpoints the API key, its IP allow-list, the timestamp window, the signature and
//! the permission the endpoint needs — in that order, each refusal with Binance's code.
//! Answers carry Binance's `X-MBX-USED-WEIGHT-1M` (and for orders `X-MBX-ORDER-COUNT-*`).
//! Every request, whatever its outcome, is logged in the audit log before it is answered
//! (see `audit.rs`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, Uri};
use axum::response::{IntoResponse, Response};
use ztx_audit::{Denial, Entry};
use ztx_core::CustomerId;
use ztx_engine::{Accessor, Principal};

use crate::accounting::{Caller, SERVICE_API};
use crate::audit::{AuditSlot, Refusal, deny};
use crate::auth::{API_KEY_HEADER, check_api_key_format, check_timestamp, signature_payload};
use crate::error::ApiError;
use crate::params::Params;
use crate::state::{AppState, KeyEntry};

/// Who may call an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Public,
    /// Signed, with a key that may read.
    Read,
    /// Signed, with a key that may trade.
    Trade,
    /// Signed by the key itself, whatever its permissions, even while detection has it
    /// frozen: only to re-enable it.
    Unfreeze,
}

/// A request that passed the gate.
#[derive(Debug)]
pub struct Call {
    pub params: Params,
    pub ip: IpAddr,
    pub now_ms: u64,
    /// The key's customer, for signed endpoints.
    pub customer: Option<CustomerId>,
    pub key: Option<Arc<KeyEntry>>,
    /// The request's audit entry, for a command to commit with its effects.
    pub audit: AuditSlot,
}

impl Call {
    /// The authenticated customer; only signed endpoints call this.
    pub fn customer(&self) -> Result<CustomerId, ApiError> {
        self.customer.ok_or_else(ApiError::unauthorized)
    }
}

/// The largest request body accepted (Binance requests are small).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The raw request as the gate needs it. The body is read by the gate itself, so that an
/// oversized one is refused in Binance's shape and charged like any other request.
#[derive(Debug)]
pub struct Raw {
    pub ip: IpAddr,
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Body,
}

impl Raw {
    pub fn new(
        ConnectInfo(peer): ConnectInfo<SocketAddr>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Body,
    ) -> Self {
        Self {
            // An IPv4 client on a dual-stack listener arrives as ::ffff:a.b.c.d; allow-lists
            // and rate limits must see a.b.c.d.
            ip: peer.ip().to_canonical(),
            method,
            uri,
            headers,
            body,
        }
    }
}

/// What a request costs in Binance's request weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weight {
    Fixed(u64),
    /// The order book: by its `limit` parameter, as decoded (an encoded name cannot hide it).
    Depth,
}

impl Weight {
    fn of(self, params: Option<&Params>) -> u64 {
        match self {
            Weight::Fixed(w) => w,
            Weight::Depth => {
                let limit = params
                    .and_then(|p| p.optional_str("limit").ok().flatten())
                    .and_then(|l| l.parse::<u64>().ok())
                    .unwrap_or(100);
                crate::market::depth_weight(limit)
            }
        }
    }
}

/// Headers to add to an answer.
#[derive(Debug, Default)]
struct Usage {
    weight: Option<u64>,
    orders_10s: Option<u64>,
    orders_1d: Option<u64>,
}

impl Usage {
    fn apply(&self, response: &mut Response) {
        let headers = response.headers_mut();
        let mut put = |name: &'static str, value: Option<u64>| {
            if let Some(v) = value
                && let Ok(v) = HeaderValue::from_str(&v.to_string())
            {
                headers.insert(name, v);
            }
        };
        put("x-mbx-used-weight-1m", self.weight);
        put("x-mbx-used-weight", self.weight);
        put("x-mbx-order-count-10s", self.orders_10s);
        put("x-mbx-order-count-1d", self.orders_1d);
    }
}

/// Runs the gate, then `handler`, and turns either outcome into a response with the
/// usage headers. `weight` is the endpoint's request weight; `counts_order` charges the
/// customer's order-rate limits.
pub async fn serve<F, Fut>(
    state: State<AppState>,
    raw: Raw,
    access: Access,
    weight: Weight,
    counts_order: bool,
    handler: F,
) -> Response
where
    F: FnOnce(AppState, Call) -> Fut,
    Fut: std::future::Future<Output = Result<Response, ApiError>>,
{
    let State(state) = state;
    let mut usage = Usage::default();
    let now_ms = state.now_ms();
    let Raw {
        ip,
        method,
        uri,
        headers,
        body,
    } = raw;
    // What the log will say of this request, filled in as the gate learns it.
    let request_id = state.request_id();
    let mut entry = state
        .is_audited()
        .then(|| crate::audit::arriving(&method, uri.path(), ip, now_ms, request_id));
    // Whom the request's store calls serve: nobody proven, until the signature is.
    let caller = Caller::new(Accessor {
        service: SERVICE_API,
        principal: Principal::Anonymous,
        request_id,
        api_key: None,
        client_ip: Some(ip),
    });
    // Should the client go away mid-request, what the request read is logged anyway.
    let _cancelled = state.is_audited().then(|| {
        let clock = state.clock.clone();
        caller.flush_on_drop(state.engine.clone(), move || clock())
    });
    let slot = AuditSlot::default();
    let work = async {
        let query = uri.query().unwrap_or_default().as_bytes();
        let body = axum::body::to_bytes(body, MAX_BODY_BYTES).await;
        let parsed = match &body {
            Ok(body) => Some(Params::parse(query, body)),
            Err(_) => None,
        };
        if let (Some(entry), Some(Ok(params))) = (&mut entry, &parsed) {
            entry.params = crate::audit::loggable(params);
        }
        if let Some(until) = state.bans.banned_until(ip, now_ms) {
            return Err(deny(Denial::IpBanned)(crate::security::banned(
                until, now_ms,
            )));
        }
        let cost = weight.of(parsed.as_ref().and_then(|p| p.as_ref().ok()));
        match state.limiter.charge_weight(ip, cost, now_ms) {
            Ok(used) => usage.weight = Some(used.used_1m),
            Err(limited) => {
                usage.weight = Some(state.limiter.used_weight(ip, now_ms).used_1m);
                return Err(deny(Denial::RateLimited)(ApiError::from(limited)));
            }
        }
        let (Ok(body), Some(params)) = (body, parsed) else {
            return Err(deny(Denial::MalformedRequest)(ApiError::payload_too_large()));
        };
        let params = params.map_err(deny(Denial::MalformedRequest))?;
        let mut call = Call {
            params,
            ip,
            now_ms,
            customer: None,
            key: None,
            audit: slot.clone(),
        };
        if access != Access::Public {
            let request = Signed {
                headers: &headers,
                query,
                body: &body,
            };
            let key = authenticate(&state, &request, &call, access, entry.as_mut()).await?;
            let customer = key.customer;
            caller.authenticated(customer, key.id.0);
            call.customer = Some(customer);
            call.key = Some(key);
            if counts_order {
                let counts = state
                    .limiter
                    .charge_order(customer.0, now_ms)
                    .map_err(|l| deny(Denial::RateLimited)(ApiError::from(l)))?;
                usage.orders_10s = Some(counts.count_10s);
                usage.orders_1d = Some(counts.count_1d);
            }
        }
        // Handed over, not copied: a request's entry is a score of small strings.
        if let Some(entry) = entry.take() {
            slot.fill(entry);
        }
        handler(state.clone(), call).await.map_err(Refusal::from)
    };
    let mut result = caller.scope(work).await;
    // The request's entry, unless a command committed it, then its store calls.
    let request_entry = crate::audit::finish(entry, &slot, &result);
    let committed_by_command = state.is_audited() && request_entry.is_none();
    let mut entries: Vec<Entry> = request_entry.into_iter().collect();
    entries.extend(caller.take_entries(state.now_ms()));
    if !entries.is_empty()
        && let Err(e) = state.engine.record_all(entries).await
    {
        if committed_by_command {
            // The command and its entry are durable (and the calls it made before it
            // with them): refusing now would have the client retry a done command.
            tracing::error!(error = %e, "cannot log the store calls made after a command");
        } else {
            // Nothing may be answered that the log does not hold: not even a refusal.
            tracing::error!(error = %e, "cannot log the request; refusing it");
            result = Err(Refusal::from(crate::trade::engine_error(e)));
        }
    }
    let mut response = match result {
        Ok(response) => response,
        Err(Refusal { error, .. }) => {
            if let Some(detail) = error.detail() {
                tracing::warn!(code = error.code(), detail, "request refused");
            }
            error.into_response()
        }
    };
    usage.apply(&mut response);
    response
}

/// What a signature covers, and the header naming the key.
struct Signed<'a> {
    headers: &'a HeaderMap,
    query: &'a [u8],
    body: &'a [u8],
}

/// Checks the key, its allow-list, the timestamp, the signature and the permission, in
/// that order; records in `entry` whose key it is as soon as that is known.
async fn authenticate(
    state: &AppState,
    raw: &Signed<'_>,
    call: &Call,
    access: Access,
    entry: Option<&mut Entry>,
) -> Result<Arc<KeyEntry>, Refusal> {
    let header = raw
        .headers
        .get(API_KEY_HEADER)
        .map(HeaderValue::as_bytes)
        .unwrap_or_default();
    check_api_key_format(header).map_err(deny(Denial::UnknownKey))?;
    let api_key = std::str::from_utf8(header)
        .map_err(|_| deny(Denial::UnknownKey)(ApiError::bad_api_key_format()))?;
    let key = state
        .key(api_key)
        .await?
        .ok_or_else(|| deny(Denial::UnknownKey)(ApiError::rejected_api_key()))?;
    if let Some(entry) = entry {
        entry.customer = Some(key.customer.0);
        entry.api_key = Some(key.id.0);
    }
    if !key.enabled || (key.frozen_ms.is_some() && access != Access::Unfreeze) {
        return Err(deny(Denial::KeyFrozen)(
            ApiError::rejected_api_key().with_detail("the key is disabled or frozen"),
        ));
    }
    if !key.allowed_ips.is_empty() && !key.allowed_ips.contains(&call.ip) {
        return Err(deny(Denial::IpNotAllowed)(ApiError::rejected_api_key()));
    }
    let malformed = deny(Denial::MalformedRequest);
    let timestamp = call.params.u64("timestamp").map_err(malformed)?;
    let recv_window = call
        .params
        .optional_u64("recvWindow")
        .map_err(deny(Denial::MalformedRequest))?;
    check_timestamp(timestamp, recv_window, call.now_ms).map_err(deny(Denial::ExpiredTimestamp))?;
    let signed = signature_payload(raw.query, raw.body).map_err(deny(Denial::MalformedRequest))?;
    key.key
        .verify(&signed)
        .map_err(deny(Denial::BadSignature))?;
    call.params.mark_read(crate::auth::SIGNATURE_PARAM);
    let allowed = match access {
        Access::Public | Access::Unfreeze => true,
        Access::Read => key.permissions.read,
        Access::Trade => key.permissions.trade,
    };
    if !allowed {
        return Err(deny(Denial::MissingPermission)(ApiError::rejected_api_key()));
    }
    Ok(key)
}
