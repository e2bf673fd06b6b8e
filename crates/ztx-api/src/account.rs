//! Signed account endpoints: balances, the customer's trades, and the key's restrictions.

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use ztx_engine::{Query, QueryReply};

use crate::error::ApiError;
use crate::gate::Call;
use crate::json;
use crate::market::spec;
use crate::state::AppState;
use crate::trade::{engine_error, paging};

pub async fn account(state: AppState, call: Call) -> Result<Response, ApiError> {
    let customer = call.customer()?;
    let key = call.key.as_ref().ok_or_else(ApiError::unauthorized)?;
    let QueryReply::Balances(balances) = state
        .engine
        .query(Query::Balances(customer))
        .await
        .map_err(engine_error)?
    else {
        return Err(ApiError::unknown().with_detail("unexpected engine reply"));
    };
    let decimals = |asset: ztx_core::AssetCode| {
        state
            .engine
            .markets()
            .iter()
            .find_map(|m| {
                [m.base(), m.quote()]
                    .into_iter()
                    .find(|a| a.code() == asset)
                    .map(|a| a.decimals())
            })
            .unwrap_or(8)
    };
    let omit_zero = match call.params.optional_str("omitZeroBalances")? {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(ApiError::illegal_chars(
                "omitZeroBalances",
                "^(true|false)$",
            ));
        }
    };
    let list: Vec<Value> = balances
        .iter()
        .filter(|(_, b)| !(omit_zero && b.available().is_zero() && b.held().is_zero()))
        .map(|(asset, b)| {
            let d = decimals(*asset);
            json!({
                "asset": asset.to_string(),
                "free": b.available().to_decimal(d),
                "locked": b.held().to_decimal(d),
            })
        })
        .collect();
    // Fees differ per market; the account shows the first market's, as a summary.
    let (maker_bps, taker_bps) = state
        .engine
        .markets()
        .first()
        .map_or((0, 0), |m| (m.maker_fee_bps(), m.taker_fee_bps()));
    let rate = |bps: u32| json::ratio(i128::from(bps), 10_000, 8);
    Ok(Json(json!({
        "makerCommission": maker_bps,
        "takerCommission": taker_bps,
        "buyerCommission": 0,
        "sellerCommission": 0,
        "commissionRates": {
            "maker": rate(maker_bps),
            "taker": rate(taker_bps),
            "buyer": rate(0),
            "seller": rate(0),
        },
        "canTrade": key.permissions.trade,
        "canWithdraw": false,
        "canDeposit": true,
        "brokered": false,
        "requireSelfTradePrevention": false,
        "preventSor": false,
        "updateTime": call.now_ms,
        "accountType": "SPOT",
        "balances": list,
        "permissions": ["SPOT"],
        "uid": customer.0,
    }))
    .into_response())
}

pub async fn my_trades(state: AppState, call: Call) -> Result<Response, ApiError> {
    let spec = spec(&state, call.params.symbol("symbol")?)?.clone();
    let customer = call.customer()?;
    let page = paging(&call, "fromId")?;
    let order_id = call.params.optional_u64("orderId")?;
    let symbol = spec.symbol().to_string();
    let trades = state
        .reads
        .with(move |s| {
            s.customer_scope(customer)?.my_trades(
                &symbol,
                page.from_id.map(ztx_core::TradeId),
                page.start_ms,
                page.end_ms,
                page.limit,
            )
        })
        .await?;
    let list: Vec<Value> = trades
        .iter()
        .filter(|t| order_id.is_none_or(|id| t.buy_order.0 == id || t.sell_order.0 == id))
        .flat_map(|t| {
            // A self-trade shows once per side, as Binance shows it.
            let mut sides = Vec::with_capacity(2);
            if t.buyer == customer {
                sides.push(json::my_trade(&spec, t, true));
            }
            if t.seller == customer {
                sides.push(json::my_trade(&spec, t, false));
            }
            sides
        })
        .collect();
    Ok(Json(list).into_response())
}

pub async fn api_restrictions(_: AppState, call: Call) -> Result<Response, ApiError> {
    let key = call.key.as_ref().ok_or_else(ApiError::unauthorized)?;
    Ok(Json(json!({
        "ipRestrict": !key.allowed_ips.is_empty(),
        "createTime": key.created_ms,
        "enableReading": key.permissions.read,
        "enableSpotAndMarginTrading": key.permissions.trade,
        "enableWithdrawals": key.permissions.withdraw,
        "enableInternalTransfer": false,
        "enableMargin": false,
        "enableFutures": false,
        "permitsUniversalTransfer": false,
        "enableVanillaOptions": false,
        "enableFixApiTrade": false,
        "enableFixReadOnly": false,
        "enablePortfolioMarginTrading": false,
    }))
    .into_response())
}
