//! Binance's JSON shapes for orders, trades and markets. Amounts are decimal strings with
//! each asset's own number of places; nothing passes through floating point.

use serde_json::{Value, json};
use ztx_core::{Amount, MarketSpec, Order, OrderType, Price, Trade};

/// Formats an amount of the market's base asset.
pub fn base(spec: &MarketSpec, amount: Amount) -> String {
    amount.to_decimal(spec.base().decimals())
}

/// Formats an amount of the market's quote asset.
pub fn quote(spec: &MarketSpec, amount: Amount) -> String {
    amount.to_decimal(spec.quote().decimals())
}

/// Formats a price (quote per whole base unit).
pub fn price(spec: &MarketSpec, price: Price) -> String {
    price.as_amount().to_decimal(spec.quote().decimals())
}

fn order_price(spec: &MarketSpec, order: &Order) -> String {
    price(spec, order.price.unwrap_or_default())
}

/// `timeInForce` as Binance shows it (GTC for market orders too).
fn tif(order: &Order) -> &'static str {
    order.time_in_force.as_str()
}

type Object = serde_json::Map<String, Value>;

/// The identity of an order, common to every answer about it.
fn identity(o: &Order) -> Object {
    let mut m = Object::new();
    m.insert("symbol".into(), json!(o.symbol));
    m.insert("orderId".into(), json!(o.id.0));
    m.insert("orderListId".into(), json!(-1));
    m.insert("clientOrderId".into(), json!(o.client_order_id));
    m
}

/// An order's terms and progress, common to every detailed answer.
fn progress(spec: &MarketSpec, o: &Order, m: &mut Object) {
    let fields = [
        ("price", json!(order_price(spec, o))),
        ("origQty", json!(base(spec, o.orig_qty))),
        ("executedQty", json!(base(spec, o.executed_qty))),
        ("origQuoteOrderQty", json!(quote(spec, o.orig_quote_qty))),
        (
            "cummulativeQuoteQty",
            json!(quote(spec, o.cumulative_quote)),
        ),
        ("status", json!(o.status.as_str())),
        ("timeInForce", json!(tif(o))),
        ("type", json!(o.order_type.as_str())),
        ("side", json!(o.side.as_str())),
        ("selfTradePreventionMode", json!(o.stp_mode.as_str())),
    ];
    m.extend(fields.into_iter().map(|(k, v)| (k.to_string(), v)));
}

/// The order as `GET /api/v3/order` and `openOrders` show it.
pub fn order(spec: &MarketSpec, o: &Order) -> Value {
    let mut m = identity(o);
    progress(spec, o, &mut m);
    m.insert("stopPrice".into(), json!(price(spec, Price::default())));
    m.insert("icebergQty".into(), json!(base(spec, Amount::ZERO)));
    m.insert("time".into(), json!(o.created_ms));
    m.insert("updateTime".into(), json!(o.updated_ms));
    m.insert("isWorking".into(), json!(o.order_type != OrderType::Market));
    m.insert("workingTime".into(), json!(o.created_ms));
    Value::Object(m)
}

/// The answer to a cancel.
pub fn canceled(spec: &MarketSpec, o: &Order, orig_client_id: &str, now_ms: u64) -> Value {
    let mut m = identity(o);
    progress(spec, o, &mut m);
    m.insert("origClientOrderId".into(), json!(orig_client_id));
    m.insert("transactTime".into(), json!(now_ms));
    Value::Object(m)
}

/// `newOrderRespType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RespType {
    Ack,
    Result,
    Full,
}

/// The answer to a new order, in the requested detail.
pub fn placed(spec: &MarketSpec, o: &Order, trades: &[Trade], resp: RespType) -> Value {
    let mut map = identity(o);
    map.insert("transactTime".into(), json!(o.created_ms));
    if resp != RespType::Ack {
        progress(spec, o, &mut map);
        map.insert("workingTime".into(), json!(o.created_ms));
        if resp == RespType::Full {
            let fills: Vec<Value> = trades
                .iter()
                .map(|t| {
                    let (commission, asset) = if t.buy_order == o.id {
                        (base(spec, t.buyer_fee), t.buyer_fee_asset.to_string())
                    } else {
                        (quote(spec, t.seller_fee), t.seller_fee_asset.to_string())
                    };
                    json!({
                        "price": price(spec, t.price),
                        "qty": base(spec, t.qty),
                        "commission": commission,
                        "commissionAsset": asset,
                        "tradeId": t.id.0,
                    })
                })
                .collect();
            map.insert("fills".into(), Value::Array(fills));
        }
    }
    Value::Object(map)
}

/// A trade as `myTrades` shows it to one side.
pub fn my_trade(spec: &MarketSpec, t: &Trade, as_buyer: bool) -> Value {
    let (order_id, commission, asset, is_maker) = if as_buyer {
        (
            t.buy_order.0,
            base(spec, t.buyer_fee),
            t.buyer_fee_asset,
            t.buyer_is_maker,
        )
    } else {
        (
            t.sell_order.0,
            quote(spec, t.seller_fee),
            t.seller_fee_asset,
            !t.buyer_is_maker,
        )
    };
    json!({
        "symbol": t.symbol,
        "id": t.id.0,
        "orderId": order_id,
        "orderListId": -1,
        "price": price(spec, t.price),
        "qty": base(spec, t.qty),
        "quoteQty": quote(spec, t.quote_qty),
        "commission": commission,
        "commissionAsset": asset.to_string(),
        "time": t.time_ms,
        "isBuyer": as_buyer,
        "isMaker": is_maker,
        "isBestMatch": true,
    })
}

/// A trade as the public `trades` endpoint shows it.
pub fn public_trade(spec: &MarketSpec, t: &Trade) -> Value {
    json!({
        "id": t.id.0,
        "price": price(spec, t.price),
        "qty": base(spec, t.qty),
        "quoteQty": quote(spec, t.quote_qty),
        "time": t.time_ms,
        "isBuyerMaker": t.buyer_is_maker,
        "isBestMatch": true,
    })
}

/// One market in `exchangeInfo`, with its filters.
pub fn symbol_info(spec: &MarketSpec) -> Value {
    let base_decimals = spec.base().decimals();
    let quote_decimals = spec.quote().decimals();
    json!({
        "symbol": spec.symbol(),
        "status": "TRADING",
        "baseAsset": spec.base().code().to_string(),
        "baseAssetPrecision": base_decimals,
        "quoteAsset": spec.quote().code().to_string(),
        "quotePrecision": quote_decimals,
        "quoteAssetPrecision": quote_decimals,
        "baseCommissionPrecision": base_decimals,
        "quoteCommissionPrecision": quote_decimals,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
        "icebergAllowed": false,
        "ocoAllowed": false,
        "otoAllowed": false,
        "quoteOrderQtyMarketAllowed": true,
        "allowTrailingStop": false,
        "cancelReplaceAllowed": false,
        "isSpotTradingAllowed": true,
        "isMarginTradingAllowed": false,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": price(spec, spec.min_price()),
                "maxPrice": price(spec, spec.max_price()),
                "tickSize": price(spec, spec.tick_size()),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": base(spec, spec.min_qty()),
                "maxQty": base(spec, spec.max_qty()),
                "stepSize": base(spec, spec.step_size()),
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": quote(spec, spec.min_notional()),
                "applyMinToMarket": true,
                "maxNotional": quote(spec, spec.max_notional()),
                "applyMaxToMarket": false,
                "avgPriceMins": 5,
            },
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    })
}

/// `num / den` as a decimal string with `places` places, rounded down; integers only.
pub fn ratio(num: i128, den: u128, places: u8) -> String {
    if den == 0 {
        return Amount::ZERO.to_decimal(places);
    }
    let negative = num < 0;
    let scale = 10u128.pow(u32::from(places));
    let scaled = num.unsigned_abs().saturating_mul(scale) / den;
    let text = Amount::from_minor(scaled).to_decimal(places);
    if negative && scaled != 0 {
        format!("-{text}")
    } else {
        text
    }
}
