//! Binance-compatible API errors: a numeric code, Binance's own message text and an HTTP
//! status, rendered as `{"code":-1121,"msg":"Invalid symbol."}`.
//!
//! Codes, texts and statuses follow Binance's spot `errors.md` and `rest-api.md`
//! (github.com/binance/binance-spot-api-docs). Statuses observed from Binance: 400 for
//! request errors including -1021 and -1022, 401 for -2014/-2015, 429 for rate limits
//! and 418 for a banned IP. Anything internal stays in `detail`, which is for the log and
//! never sent to the caller.

use std::borrow::Cow;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use ztx_core::FilterError;

/// Binance's legal range for decimal parameters, quoted in -1100 messages.
pub const DECIMAL_LEGAL_RANGE: &str = r"^([0-9]{1,20})(\.[0-9]{1,20})?$";
/// Binance's legal range for `newClientOrderId` and friends.
pub const CLIENT_ORDER_ID_LEGAL_RANGE: &str = r"^[\.A-Z\:/a-z0-9_\-]{1,36}$";
/// Legal range for symbols.
pub const SYMBOL_LEGAL_RANGE: &str = "^[A-Z0-9-_.]{1,20}$";
/// Legal range quoted for integer parameters.
pub const INTEGER_LEGAL_RANGE: &str = "^[0-9]{1,20}$";

/// -2010 reasons, Binance's texts.
pub const REASON_INSUFFICIENT_BALANCE: &str =
    "Account has insufficient balance for requested action.";
pub const REASON_WOULD_TAKE: &str = "Order would immediately match and take.";
pub const REASON_DUPLICATE_ORDER: &str = "Duplicate order sent.";
pub const REASON_MARKET_CLOSED: &str = "Market is closed.";
pub const REASON_UNSUPPORTED_COMBINATION: &str = "Unsupported order combination";
/// -2011 reason for an order that cannot be found.
pub const REASON_UNKNOWN_ORDER: &str = "Unknown order sent.";

/// An error answer in Binance's shape. Build it with the named constructors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {msg}")]
pub struct ApiError {
    status: StatusCode,
    code: i32,
    msg: Cow<'static, str>,
    retry_after_s: Option<u64>,
    detail: Option<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    code: i32,
    msg: &'a str,
}

impl ApiError {
    fn new(status: StatusCode, code: i32, msg: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status,
            code,
            msg: msg.into(),
            retry_after_s: None,
            detail: None,
        }
    }

    fn bad_request(code: i32, msg: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, msg)
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
    pub fn code(&self) -> i32 {
        self.code
    }
    pub fn msg(&self) -> &str {
        &self.msg
    }
    /// Seconds to wait before retrying, sent as `Retry-After` (429 / 418 only).
    pub fn retry_after_s(&self) -> Option<u64> {
        self.retry_after_s
    }
    /// Internal detail for logs and the audit trail; never sent to the caller.
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }
    /// Attaches internal detail (for the log) without changing what the caller sees.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The JSON body exactly as Binance sends it.
    pub fn body_json(&self) -> String {
        let body = Body {
            code: self.code,
            msg: &self.msg,
        };
        // Serializing a struct of an integer and a string cannot fail; the fallback keeps
        // the shape should it ever.
        serde_json::to_string(&body)
            .unwrap_or_else(|_| format!("{{\"code\":{},\"msg\":\"\"}}", self.code))
    }

    // ---- 10xx: general ---------------------------------------------------------------

    /// -1000: internal failure. HTTP 500: like Binance's 5XX, execution status unknown.
    pub fn unknown() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            -1000,
            "An unknown error occurred while processing the request.",
        )
    }
    /// -1002, HTTP 401.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            -1002,
            "You are not authorized to execute this request.",
        )
    }
    /// -1003, HTTP 429 with `Retry-After`: request weight exhausted for this window.
    pub fn too_much_weight(limit: u64, interval: &str, retry_after_s: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            -1003,
            format!(
                "Too much request weight used; current limit is {limit} request weight per \
                 {interval}. Please use WebSocket Streams for live updates to avoid polling \
                 the API."
            ),
        );
        e.retry_after_s = Some(retry_after_s);
        e
    }
    /// -1003, HTTP 418 with `Retry-After`: the IP is banned until `until_ms`.
    pub fn ip_banned(until_ms: u64, retry_after_s: u64) -> Self {
        let mut e = Self::new(
            StatusCode::IM_A_TEAPOT,
            -1003,
            format!(
                "Way too much request weight used; IP banned until {until_ms}. Please use \
                 WebSocket Streams for live updates to avoid bans."
            ),
        );
        e.retry_after_s = Some(retry_after_s);
        e
    }
    /// -1013: a market filter refused the order, e.g. "Filter failure: LOT_SIZE".
    pub fn filter_failure(filter: FilterError) -> Self {
        Self::bad_request(-1013, filter.to_string())
    }
    /// -1013 with another filter name, e.g. `"MAX_NUM_ORDERS"`.
    pub fn filter_failure_named(filter_name: &str) -> Self {
        Self::bad_request(-1013, format!("Filter failure: {filter_name}"))
    }
    /// -1013 "Invalid quantity." (e.g. a zero quantity).
    pub fn invalid_quantity() -> Self {
        Self::bad_request(-1013, "Invalid quantity.")
    }
    /// -1015, HTTP 429. Binance sends no `Retry-After` for order-count limits.
    pub fn too_many_orders(limit: u64, interval: &str) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            -1015,
            format!("Too many new orders; current limit is {limit} orders per {interval}."),
        )
    }
    /// -1021: the request is older than its `recvWindow`.
    pub fn timestamp_outside_recv_window() -> Self {
        Self::bad_request(
            -1021,
            "Timestamp for this request is outside of the recvWindow.",
        )
    }
    /// -1021: the request's timestamp is more than 1000 ms ahead of the server.
    pub fn timestamp_ahead() -> Self {
        Self::bad_request(
            -1021,
            "Timestamp for this request was 1000ms ahead of the server's time.",
        )
    }
    /// -1022, HTTP 400 (as Binance answers).
    pub fn invalid_signature() -> Self {
        Self::bad_request(-1022, "Signature for this request is not valid.")
    }

    // ---- 11xx: request issues ----------------------------------------------------------

    /// -1100 naming the parameter and the legal range.
    pub fn illegal_chars(param: &str, legal_range: &str) -> Self {
        Self::bad_request(
            -1100,
            format!(
                "Illegal characters found in parameter '{param}'; legal range is '{legal_range}'."
            ),
        )
    }
    /// -1100 when no parameter name can be given (e.g. a malformed name).
    pub fn illegal_chars_anywhere() -> Self {
        Self::bad_request(-1100, "Illegal characters found in a parameter.")
    }
    /// -1101 for a parameter sent twice.
    pub fn duplicate_parameter() -> Self {
        Self::bad_request(-1101, "Duplicate values for a parameter detected.")
    }
    /// -1101 for too many parameters.
    pub fn too_many_parameters() -> Self {
        Self::bad_request(-1101, "Too many parameters sent for this endpoint.")
    }
    /// -1102 naming the missing or malformed parameter.
    pub fn mandatory_param(param: &str) -> Self {
        Self::bad_request(
            -1102,
            format!("Mandatory parameter '{param}' was not sent, was empty/null, or malformed."),
        )
    }
    /// -1102 when one of two parameters must be sent.
    pub fn one_of_params(a: &str, b: &str) -> Self {
        Self::bad_request(
            -1102,
            format!("Param '{a}' or '{b}' must be sent, but both were empty/null!"),
        )
    }
    /// -1130 naming the parameter and what is wrong with its value.
    pub fn invalid_param(param: &str, why: &dyn std::fmt::Display) -> Self {
        Self::bad_request(
            -1130,
            format!("Data sent for parameter '{param}' is not valid: {why}."),
        )
    }
    /// -1104: parameters the endpoint does not read.
    pub fn unread_parameters(read: usize, sent: usize) -> Self {
        Self::bad_request(
            -1104,
            format!(
                "Not all sent parameters were read; read '{read}' parameter(s) but was sent '{sent}'."
            ),
        )
    }
    /// -1106 naming the parameter.
    pub fn param_not_required(param: &str) -> Self {
        Self::bad_request(
            -1106,
            format!("Parameter '{param}' sent when not required."),
        )
    }
    /// -1111 naming the parameter.
    pub fn bad_precision(param: &str) -> Self {
        Self::bad_request(
            -1111,
            format!("Parameter '{param}' has too much precision."),
        )
    }
    /// -1115.
    pub fn invalid_tif() -> Self {
        Self::bad_request(-1115, "Invalid timeInForce.")
    }
    /// -1116.
    pub fn invalid_order_type() -> Self {
        Self::bad_request(-1116, "Invalid orderType.")
    }
    /// -1117.
    pub fn invalid_side() -> Self {
        Self::bad_request(-1117, "Invalid side.")
    }
    /// -1120.
    pub fn bad_interval() -> Self {
        Self::bad_request(-1120, "Invalid interval.")
    }
    /// -1121: well-formed but unknown symbol.
    pub fn bad_symbol() -> Self {
        Self::bad_request(-1121, "Invalid symbol.")
    }
    /// -1128.
    pub fn bad_param_combo() -> Self {
        Self::bad_request(-1128, "Combination of optional parameters invalid.")
    }
    /// -1131: `recvWindow` above 60000.
    pub fn bad_recv_window() -> Self {
        Self::bad_request(-1131, "recvWindow must be less than 60000")
    }

    // ---- 20xx: order and key issues ----------------------------------------------------

    /// -2010 with the matching engine's reason, e.g. [`REASON_INSUFFICIENT_BALANCE`].
    pub fn new_order_rejected(reason: &'static str) -> Self {
        Self::bad_request(-2010, reason)
    }
    /// -2011 "Unknown order sent.".
    pub fn cancel_rejected() -> Self {
        Self::bad_request(-2011, REASON_UNKNOWN_ORDER)
    }
    /// -2013.
    pub fn no_such_order() -> Self {
        Self::bad_request(-2013, "Order does not exist.")
    }
    /// -2014, HTTP 401.
    pub fn bad_api_key_format() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, -2014, "API-key format invalid.")
    }
    /// -2015, HTTP 401: an unknown key, a disallowed address or a missing permission, as
    /// Binance answers them. (A known key with a bad signature gets -1022, also as Binance.)
    pub fn rejected_api_key() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            -2015,
            "Invalid API-key, IP, or permissions for action.",
        )
    }

    // ---- transport -----------------------------------------------------------------------

    /// HTTP 413 for a body above the limit. Binance's own answer here comes from its
    /// front proxy, not the API, so it has no Binance code; -1101 ("too many parameters")
    /// is the closest meaning a client library already handles.
    pub fn payload_too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            -1101,
            "Too many parameters sent for this endpoint.",
        )
    }
    /// HTTP 404 in Binance's error shape: no such endpoint.
    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            -1000,
            "An unknown error occurred while processing the request.",
        )
    }
    /// HTTP 404 from ztx's own endpoints (Binance has none like them): what is missing,
    /// in words the caller may read. Never for anything a caller must not learn.
    pub fn nothing_here(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, -1000, what.into())
    }
    /// HTTP 405 in Binance's error shape: the path exists, the method does not.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            -1000,
            "An unknown error occurred while processing the request.",
        )
    }
    /// -1008, HTTP 503: the exchange's queue is full; try again shortly.
    pub fn server_busy() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            -1008,
            "Server is currently overloaded with other requests. Please try again in a few minutes.",
        )
    }
}

impl From<FilterError> for ApiError {
    fn from(filter: FilterError) -> Self {
        Self::filter_failure(filter)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/json;charset=UTF-8")],
            self.body_json(),
        )
            .into_response();
        if let Some(seconds) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn render(e: ApiError) -> (StatusCode, Option<String>, String) {
        let response = e.into_response();
        let status = response.status();
        let retry = response
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, retry, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn renders_binance_shape_exactly() {
        let (status, retry, body) = render(ApiError::bad_symbol()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(retry, None);
        assert_eq!(body, r#"{"code":-1121,"msg":"Invalid symbol."}"#);
    }

    #[tokio::test]
    async fn rate_limit_carries_retry_after() {
        let (status, retry, body) = render(ApiError::too_much_weight(6000, "1 MINUTE", 17)).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(retry.as_deref(), Some("17"));
        assert!(body.starts_with(r#"{"code":-1003,"msg":"Too much request weight used; current limit is 6000 request weight per 1 MINUTE."#));
        let (status, retry, _) = render(ApiError::ip_banned(1_700_000_000_000, 120)).await;
        assert_eq!(status, StatusCode::IM_A_TEAPOT);
        assert_eq!(retry.as_deref(), Some("120"));
        let (status, retry, _) = render(ApiError::too_many_orders(100, "10 SECOND")).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(retry, None);
    }

    #[tokio::test]
    async fn detail_is_never_sent() {
        let e = ApiError::unknown().with_detail("db password wrong at host 10.0.0.7");
        assert_eq!(e.detail(), Some("db password wrong at host 10.0.0.7"));
        let (status, _, body) = render(e).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!body.contains("10.0.0.7"));
    }

    #[test]
    fn messages_match_binance_texts() {
        let cases: Vec<(ApiError, i32, &str)> = vec![
            (
                ApiError::illegal_chars("price", DECIMAL_LEGAL_RANGE),
                -1100,
                r"Illegal characters found in parameter 'price'; legal range is '^([0-9]{1,20})(\.[0-9]{1,20})?$'.",
            ),
            (
                ApiError::duplicate_parameter(),
                -1101,
                "Duplicate values for a parameter detected.",
            ),
            (
                ApiError::mandatory_param("symbol"),
                -1102,
                "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
            ),
            (
                ApiError::param_not_required("price"),
                -1106,
                "Parameter 'price' sent when not required.",
            ),
            (
                ApiError::bad_precision("quantity"),
                -1111,
                "Parameter 'quantity' has too much precision.",
            ),
            (ApiError::invalid_tif(), -1115, "Invalid timeInForce."),
            (ApiError::invalid_order_type(), -1116, "Invalid orderType."),
            (ApiError::invalid_side(), -1117, "Invalid side."),
            (
                ApiError::bad_recv_window(),
                -1131,
                "recvWindow must be less than 60000",
            ),
            (
                ApiError::filter_failure(FilterError::LotSize),
                -1013,
                "Filter failure: LOT_SIZE",
            ),
            (
                ApiError::from(FilterError::Price),
                -1013,
                "Filter failure: PRICE_FILTER",
            ),
            (
                ApiError::new_order_rejected(REASON_INSUFFICIENT_BALANCE),
                -2010,
                "Account has insufficient balance for requested action.",
            ),
            (ApiError::cancel_rejected(), -2011, "Unknown order sent."),
            (ApiError::no_such_order(), -2013, "Order does not exist."),
            (
                ApiError::invalid_signature(),
                -1022,
                "Signature for this request is not valid.",
            ),
        ];
        for (e, code, msg) in cases {
            assert_eq!((e.code(), e.msg()), (code, msg));
            assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{msg}");
        }
        assert_eq!(
            ApiError::bad_api_key_format().status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            ApiError::rejected_api_key().status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            ApiError::payload_too_large().status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }

    #[test]
    fn messages_with_quotes_are_escaped() {
        let e = ApiError::mandatory_param("a\"b");
        let v: serde_json::Value = serde_json::from_str(&e.body_json()).unwrap();
        assert_eq!(v["code"], -1102);
        assert!(v["msg"].as_str().unwrap().contains("a\"b"));
    }
}
