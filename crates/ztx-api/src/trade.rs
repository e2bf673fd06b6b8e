//! Signed trading endpoints: new, test, query and cancel orders, open orders, all orders.

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use ztx_audit::Entry;
use ztx_core::{
    Command, ExchangeError, FilterError, MarketSpec, NewOrder, Order, OrderId, OrderRef, Reply,
    StpMode,
};
use ztx_engine::{Audit, EngineError, Query, QueryReply};
use ztx_store::OrderQuery;

use crate::error::{
    ApiError, REASON_DUPLICATE_ORDER, REASON_INSUFFICIENT_BALANCE, REASON_WOULD_TAKE,
};
use crate::gate::Call;
use crate::json::{self, RespType};
use crate::market::spec;
use crate::state::AppState;

/// Maps the engine's refusals onto Binance's codes.
/// Runs a command; with auditing on, its request's entry commits with its effects.
async fn execute(state: &AppState, call: &Call, command: Command) -> Result<Reply, ApiError> {
    let Some(entry) = call.audit.take_for_command() else {
        return state.engine.execute(command).await.map_err(engine_error);
    };
    let accessed = crate::accounting::take_for_commit(call.now_ms);
    // Should the command not be written, its entry is logged on its own. Kept for that:
    // all of the entry but its parameters, which are the call's and are rebuilt from it
    // then — not copied for every order (a score of small strings) to serve the rare
    // failure.
    let unwritten = Entry {
        params: Vec::new(),
        operator: entry.operator.clone(),
        action: entry.action.clone(),
        ..entry
    };
    let audit = Audit {
        entry,
        code_of: |e| exchange_error(e.clone()).code(),
        accessed: accessed.clone(),
    };
    match state.engine.execute_audited(command, audit).await {
        Ok(reply) => Ok(reply),
        Err(e @ EngineError::Refused(_)) => Err(engine_error(e)),
        Err(e) => {
            // Not written: the entry is logged on its own, with the refusal.
            call.audit.put_back(Entry {
                params: crate::audit::loggable(&call.params),
                ..unwritten
            });
            crate::accounting::put_back(accessed);
            Err(engine_error(e))
        }
    }
}

pub fn engine_error(e: EngineError) -> ApiError {
    match e {
        EngineError::Refused(e) => exchange_error(e),
        EngineError::Busy => ApiError::server_busy(),
        EngineError::Unavailable => ApiError::unknown().with_detail("engine unavailable"),
    }
}

fn exchange_error(e: ExchangeError) -> ApiError {
    match e {
        ExchangeError::UnknownSymbol(_) => ApiError::bad_symbol(),
        ExchangeError::UnknownAsset(_) => ApiError::illegal_chars("asset", "^[A-Z0-9]{1,10}$"),
        ExchangeError::MissingParameter(p) => ApiError::mandatory_param(p),
        ExchangeError::UnexpectedParameter(p) => ApiError::param_not_required(p),
        ExchangeError::MalformedParameter(p) => {
            ApiError::illegal_chars(p, crate::error::CLIENT_ORDER_ID_LEGAL_RANGE)
        }
        ExchangeError::Filter(f) => ApiError::filter_failure(f),
        ExchangeError::InsufficientBalance => {
            ApiError::new_order_rejected(REASON_INSUFFICIENT_BALANCE)
        }
        ExchangeError::WouldTake => ApiError::new_order_rejected(REASON_WOULD_TAKE),
        ExchangeError::DuplicateClientOrderId => {
            ApiError::new_order_rejected(REASON_DUPLICATE_ORDER)
        }
        ExchangeError::UnknownOrder => ApiError::cancel_rejected(),
        ExchangeError::BookFull => {
            ApiError::new_order_rejected("Too many open orders in this market.")
        }
        e @ (ExchangeError::ReservedTransferId
        | ExchangeError::Deposit(_)
        | ExchangeError::Internal(_)) => ApiError::unknown().with_detail(e.to_string()),
    }
}

/// Reads a new order's parameters, checking each against the market's precision.
fn new_order(call: &Call, spec: &MarketSpec) -> Result<NewOrder, ApiError> {
    let p = &call.params;
    let base_decimals = spec.base().decimals();
    let quote_decimals = spec.quote().decimals();
    Ok(NewOrder {
        customer: call.customer()?,
        symbol: spec.symbol().to_string(),
        side: p.side()?,
        order_type: p.order_type()?,
        time_in_force: p.optional_time_in_force()?,
        price: p
            .optional_decimal("price", quote_decimals)?
            .map(|a| ztx_core::Price::from_minor(a.minor())),
        quantity: p.optional_decimal("quantity", base_decimals)?,
        quote_order_qty: p.optional_decimal("quoteOrderQty", quote_decimals)?,
        client_order_id: p
            .optional_client_order_id("newClientOrderId")?
            .map(str::to_string),
        stp_mode: p.optional_stp_mode()?.unwrap_or(StpMode::ExpireMaker),
    })
}

fn resp_type(call: &Call, order: &NewOrder) -> Result<RespType, ApiError> {
    Ok(match call.params.optional_str("newOrderRespType")? {
        Some("ACK") => RespType::Ack,
        Some("RESULT") => RespType::Result,
        Some("FULL") => RespType::Full,
        Some(_) => {
            return Err(ApiError::illegal_chars(
                "newOrderRespType",
                "^(ACK|RESULT|FULL)$",
            ));
        }
        None => match order.order_type {
            ztx_core::OrderType::Market | ztx_core::OrderType::Limit => RespType::Full,
            ztx_core::OrderType::LimitMaker => RespType::Ack,
        },
    })
}

/// Refuses a zero or negative-looking quantity before the filters, as Binance does.
fn check_positive(order: &NewOrder) -> Result<(), ApiError> {
    if order.quantity.is_some_and(|q| q.is_zero())
        || order.quote_order_qty.is_some_and(|q| q.is_zero())
    {
        return Err(ApiError::invalid_quantity());
    }
    if order.price.is_some_and(|p| p.minor() == 0) {
        return Err(ApiError::filter_failure(FilterError::Price));
    }
    Ok(())
}

pub async fn place(state: AppState, call: Call) -> Result<Response, ApiError> {
    let spec = spec(&state, call.params.symbol("symbol")?)?.clone();
    let order = new_order(&call, &spec)?;
    check_positive(&order)?;
    let resp = resp_type(&call, &order)?;
    // Query and body are signed as one string: a parameter nobody reads may be bytes moved
    // across that boundary. Refuse before anything is executed.
    call.params.ensure_all_read()?;
    let reply = execute(&state, &call, Command::Place(order)).await?;
    let Reply::Placed { order, trades } = reply else {
        return Err(ApiError::unknown().with_detail("unexpected engine reply"));
    };
    Ok(Json(json::placed(&spec, &order, &trades, resp)).into_response())
}

pub async fn test_order(state: AppState, call: Call) -> Result<Response, ApiError> {
    let spec = spec(&state, call.params.symbol("symbol")?)?.clone();
    let order = new_order(&call, &spec)?;
    check_positive(&order)?;
    resp_type(&call, &order)?;
    call.params.optional_str("computeCommissionRates")?;
    call.params.ensure_all_read()?;
    ztx_core::check_order(&spec, &order).map_err(exchange_error)?;
    Ok(Json(serde_json::json!({})).into_response())
}

/// `orderId` or `origClientOrderId`, as Binance requires one of them.
fn target(call: &Call) -> Result<OrderRef, ApiError> {
    match (
        call.params.optional_u64("orderId")?,
        call.params.optional_client_order_id("origClientOrderId")?,
    ) {
        (Some(id), _) => Ok(OrderRef::Id(OrderId(id))),
        (None, Some(cid)) => Ok(OrderRef::ClientId(cid.to_string())),
        (None, None) => Err(ApiError::one_of_params("orderId", "origClientOrderId")),
    }
}

pub async fn query_order(state: AppState, call: Call) -> Result<Response, ApiError> {
    let spec = spec(&state, call.params.symbol("symbol")?)?.clone();
    let customer = call.customer()?;
    let query = match target(&call)? {
        OrderRef::Id(id) => OrderQuery::ById(id),
        OrderRef::ClientId(cid) => OrderQuery::ByClientId(cid),
    };
    let symbol = spec.symbol().to_string();
    let found = state
        .reads
        .with(move |s| s.customer_scope(customer)?.order(&symbol, &query))
        .await?;
    let order = found.ok_or_else(ApiError::no_such_order)?;
    Ok(Json(json::order(&spec, &order)).into_response())
}

pub async fn cancel_order(state: AppState, call: Call) -> Result<Response, ApiError> {
    let spec = spec(&state, call.params.symbol("symbol")?)?.clone();
    let target = target(&call)?;
    let orig = match &target {
        OrderRef::ClientId(cid) => Some(cid.clone()),
        OrderRef::Id(_) => None,
    };
    // Binance lets a cancel name itself; ztx records cancels under the order's own id.
    call.params.optional_client_order_id("newClientOrderId")?;
    call.params.ensure_all_read()?;
    let command = Command::Cancel {
        customer: call.customer()?,
        symbol: spec.symbol().to_string(),
        target,
    };
    let reply = execute(&state, &call, command).await?;
    let Reply::Canceled(order) = reply else {
        return Err(ApiError::unknown().with_detail("unexpected engine reply"));
    };
    let orig = orig.unwrap_or_else(|| order.client_order_id.clone());
    Ok(Json(json::canceled(&spec, &order, &orig, call.now_ms)).into_response())
}

pub async fn open_orders(state: AppState, call: Call) -> Result<Response, ApiError> {
    let symbol = match call.params.optional_symbol("symbol")? {
        Some(s) => Some(spec(&state, s)?.symbol().to_string()),
        None => None,
    };
    let query = Query::OpenOrders {
        customer: call.customer()?,
        symbol,
    };
    let QueryReply::OpenOrders(orders) = state.engine.query(query).await.map_err(engine_error)?
    else {
        return Err(ApiError::unknown().with_detail("unexpected engine reply"));
    };
    orders_json(&state, &orders, json::order)
}

pub async fn cancel_open_orders(state: AppState, call: Call) -> Result<Response, ApiError> {
    let spec = spec(&state, call.params.symbol("symbol")?)?.clone();
    call.params.ensure_all_read()?;
    let command = Command::CancelAll {
        customer: call.customer()?,
        symbol: spec.symbol().to_string(),
    };
    let Reply::CanceledAll(orders) = execute(&state, &call, command).await? else {
        return Err(ApiError::unknown().with_detail("unexpected engine reply"));
    };
    let now = call.now_ms;
    orders_json(&state, &orders, |spec, o| {
        json::canceled(spec, o, &o.client_order_id, now)
    })
}

fn orders_json(
    state: &AppState,
    orders: &[Order],
    shape: impl Fn(&MarketSpec, &Order) -> Value,
) -> Result<Response, ApiError> {
    let list = orders
        .iter()
        .map(|o| spec(state, &o.symbol).map(|s| shape(s, o)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(list).into_response())
}

/// Binance's paging parameters: `fromId`, `startTime`, `endTime`, `limit` (≤ 1000).
#[derive(Debug, Clone, Copy)]
pub struct Paging {
    pub from_id: Option<u64>,
    pub start_ms: Option<u64>,
    pub end_ms: Option<u64>,
    pub limit: u32,
}

pub fn paging(call: &Call, id_name: &str) -> Result<Paging, ApiError> {
    let limit = call
        .params
        .optional_u64("limit")?
        .unwrap_or(500)
        .clamp(1, 1000);
    Ok(Paging {
        from_id: call.params.optional_u64(id_name)?,
        start_ms: call.params.optional_u64("startTime")?,
        end_ms: call.params.optional_u64("endTime")?,
        limit: u32::try_from(limit).unwrap_or(1000),
    })
}

pub async fn all_orders(state: AppState, call: Call) -> Result<Response, ApiError> {
    let spec = spec(&state, call.params.symbol("symbol")?)?.clone();
    let customer = call.customer()?;
    let page = paging(&call, "orderId")?;
    let symbol = spec.symbol().to_string();
    let orders = state
        .reads
        .with(move |s| {
            s.customer_scope(customer)?.orders(
                &symbol,
                page.from_id.map(OrderId),
                page.start_ms,
                page.end_ms,
                page.limit,
            )
        })
        .await?;
    let list: Vec<Value> = orders.iter().map(|o| json::order(&spec, o)).collect();
    Ok(Json(list).into_response())
}
