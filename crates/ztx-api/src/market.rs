//! Public market data: ping, time, exchangeInfo, depth, trades, tickers and klines.

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use ztx_core::{Amount, MarketSpec, Price};
use ztx_engine::{Query, QueryReply};
use ztx_store::Candle;

use crate::error::ApiError;
use crate::gate::Call;
use crate::json::{self, base, price, quote, ratio};
use crate::state::AppState;
use crate::trade::engine_error;

/// The markets named by `symbol` (or all), or -1121.
pub fn spec<'a>(state: &'a AppState, symbol: &str) -> Result<&'a MarketSpec, ApiError> {
    state
        .engine
        .markets()
        .iter()
        .find(|m| m.symbol() == symbol)
        .ok_or_else(ApiError::bad_symbol)
}

pub async fn ping(_: AppState, _: Call) -> Result<Response, ApiError> {
    Ok(Json(json!({})).into_response())
}

pub async fn time(_: AppState, call: Call) -> Result<Response, ApiError> {
    Ok(Json(json!({ "serverTime": call.now_ms })).into_response())
}

pub async fn exchange_info(state: AppState, call: Call) -> Result<Response, ApiError> {
    let wanted: Vec<String> = match (
        call.params.optional_str("symbol")?,
        call.params.optional_str("symbols")?,
    ) {
        (Some(s), None) => vec![s.to_string()],
        (None, Some(list)) => serde_json::from_str(list)
            .map_err(|_| ApiError::illegal_chars("symbols", "[\"SYMBOL\",…]"))?,
        (None, None) => Vec::new(),
        (Some(_), Some(_)) => return Err(ApiError::bad_param_combo()),
    };
    let mut symbols = Vec::new();
    for spec in state.engine.markets() {
        if wanted.is_empty() || wanted.iter().any(|w| w == spec.symbol()) {
            symbols.push(json::symbol_info(spec));
        }
    }
    if !wanted.is_empty() && symbols.len() != wanted.len() {
        return Err(ApiError::bad_symbol());
    }
    let limits = state.limiter.limits();
    Ok(Json(json!({
        "timezone": "UTC",
        "serverTime": call.now_ms,
        "rateLimits": [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": limits.weight_per_minute},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": limits.orders_per_10s},
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": limits.orders_per_day},
        ],
        "exchangeFilters": [],
        "symbols": symbols,
    }))
    .into_response())
}

/// The weight of a depth request of `limit` levels, as Binance charges it.
pub fn depth_weight(limit: u64) -> u64 {
    match limit {
        0..=100 => 5,
        101..=500 => 25,
        501..=1000 => 50,
        _ => 250,
    }
}

pub async fn depth(state: AppState, call: Call) -> Result<Response, ApiError> {
    let spec = spec(&state, call.params.symbol("symbol")?)?.clone();
    let limit = call
        .params
        .optional_u64("limit")?
        .unwrap_or(100)
        .clamp(1, 5000);
    let reply = state
        .engine
        .query(Query::Depth {
            symbol: spec.symbol().to_string(),
            limit: usize::try_from(limit).unwrap_or(5000),
        })
        .await
        .map_err(engine_error)?;
    let QueryReply::Depth(Some(view)) = reply else {
        return Err(ApiError::bad_symbol());
    };
    let side = |levels: &[(Price, Amount)]| -> Vec<Value> {
        levels
            .iter()
            .map(|(p, q)| json!([price(&spec, *p), base(&spec, *q)]))
            .collect()
    };
    Ok(Json(json!({
        "lastUpdateId": view.update_id,
        "bids": side(&view.bids),
        "asks": side(&view.asks),
    }))
    .into_response())
}

pub async fn trades(state: AppState, call: Call) -> Result<Response, ApiError> {
    let spec = spec(&state, call.params.symbol("symbol")?)?.clone();
    let limit = call
        .params
        .optional_u64("limit")?
        .unwrap_or(500)
        .clamp(1, 1000);
    let symbol = spec.symbol().to_string();
    let limit = u32::try_from(limit).unwrap_or(1000);
    let rows = state
        .reads
        .with(move |s| s.recent_trades(&symbol, limit))
        .await?;
    let list: Vec<Value> = rows.iter().map(|t| json::public_trade(&spec, t)).collect();
    Ok(Json(list).into_response())
}

/// Kline intervals and their length in milliseconds.
fn interval_ms(text: &str) -> Option<u64> {
    const MINUTE: u64 = 60_000;
    Some(match text {
        "1m" => MINUTE,
        "3m" => 3 * MINUTE,
        "5m" => 5 * MINUTE,
        "15m" => 15 * MINUTE,
        "30m" => 30 * MINUTE,
        "1h" => 60 * MINUTE,
        "2h" => 120 * MINUTE,
        "4h" => 240 * MINUTE,
        "6h" => 360 * MINUTE,
        "8h" => 480 * MINUTE,
        "12h" => 720 * MINUTE,
        "1d" => 1440 * MINUTE,
        "3d" => 3 * 1440 * MINUTE,
        "1w" => 7 * 1440 * MINUTE,
        _ => return None,
    })
}

/// Folds 1-minute candles into candles of `interval` ms.
fn aggregate(rows: &[Candle], interval: u64) -> Result<Vec<Candle>, ApiError> {
    let mut out: Vec<Candle> = Vec::new();
    for c in rows {
        let open_ms = c.open_ms - c.open_ms % interval;
        match out.last_mut() {
            Some(last) if last.open_ms == open_ms => {
                *last = last
                    .merge(c)
                    .map_err(|e| ApiError::unknown().with_detail(e.to_string()))?;
            }
            _ => out.push(Candle { open_ms, ..*c }),
        }
    }
    Ok(out)
}

pub async fn klines(state: AppState, call: Call) -> Result<Response, ApiError> {
    let spec = spec(&state, call.params.symbol("symbol")?)?.clone();
    let interval =
        interval_ms(call.params.required_str("interval")?).ok_or_else(ApiError::bad_interval)?;
    let limit = call
        .params
        .optional_u64("limit")?
        .unwrap_or(500)
        .clamp(1, 1000);
    let end = call.params.optional_u64("endTime")?.unwrap_or(call.now_ms);
    let start = match call.params.optional_u64("startTime")? {
        Some(start) => start,
        None => end.saturating_sub(limit.saturating_mul(interval)),
    };
    let start = start - start % interval;
    let symbol = spec.symbol().to_string();
    let rows_wanted = u32::try_from(limit.saturating_mul(interval / 60_000)).unwrap_or(u32::MAX);
    let rows = state
        .reads
        .with(move |s| s.candles(&symbol, Some(start), Some(end), rows_wanted))
        .await?;
    let klines: Vec<Value> = aggregate(&rows, interval)?
        .iter()
        .take(usize::try_from(limit).unwrap_or(1000))
        .map(|k| {
            json!([
                k.open_ms,
                price(&spec, k.open),
                price(&spec, k.high),
                price(&spec, k.low),
                price(&spec, k.close),
                base(&spec, k.base_volume),
                k.open_ms + interval - 1,
                quote(&spec, k.quote_volume),
                k.trade_count,
                base(&spec, k.taker_buy_base_volume),
                quote(&spec, k.taker_buy_quote_volume),
                "0"
            ])
        })
        .collect();
    Ok(Json(klines).into_response())
}

/// The markets a ticker request names: `symbol`, `symbols` (a JSON list) or all.
fn ticker_specs(state: &AppState, call: &Call) -> Result<(Vec<MarketSpec>, bool), ApiError> {
    match (
        call.params.optional_str("symbol")?,
        call.params.optional_str("symbols")?,
    ) {
        (Some(_), Some(_)) => Err(ApiError::bad_param_combo()),
        (Some(_), None) => Ok((
            vec![spec(state, call.params.symbol("symbol")?)?.clone()],
            true,
        )),
        (None, Some(list)) => {
            let names: Vec<String> = serde_json::from_str(list)
                .map_err(|_| ApiError::illegal_chars("symbols", "[\"SYMBOL\",…]"))?;
            let specs = names
                .iter()
                .map(|n| spec(state, n).cloned())
                .collect::<Result<Vec<_>, _>>()?;
            Ok((specs, false))
        }
        (None, None) => Ok((state.engine.markets().to_vec(), false)),
    }
}

fn one_or_list(mut items: Vec<Value>, single: bool) -> Response {
    if single && let Some(item) = items.pop() {
        return Json(item).into_response();
    }
    Json(items).into_response()
}

pub async fn ticker_price(state: AppState, call: Call) -> Result<Response, ApiError> {
    let (specs, single) = ticker_specs(&state, &call)?;
    let mut items = Vec::with_capacity(specs.len());
    for spec in specs {
        let symbol = spec.symbol().to_string();
        let last = state.reads.with(move |s| s.last_trade(&symbol)).await?;
        let p = last.map(|t| t.price).unwrap_or_default();
        items.push(json!({ "symbol": spec.symbol(), "price": price(&spec, p) }));
    }
    Ok(one_or_list(items, single))
}

pub async fn ticker_24hr(state: AppState, call: Call) -> Result<Response, ApiError> {
    let (specs, single) = ticker_specs(&state, &call)?;
    let mut items = Vec::with_capacity(specs.len());
    for spec in specs {
        items.push(ticker_of(&state, &spec, call.now_ms).await?);
    }
    Ok(one_or_list(items, single))
}

async fn ticker_of(state: &AppState, spec: &MarketSpec, now_ms: u64) -> Result<Value, ApiError> {
    const DAY: u64 = 86_400_000;
    let open_time = now_ms.saturating_sub(DAY);
    let symbol = spec.symbol().to_string();
    let (rows, first, last) = state
        .reads
        .with(move |s| {
            Ok((
                s.candles(&symbol, Some(open_time), Some(now_ms), 1_440)?,
                s.first_trade_since(&symbol, open_time)?,
                s.last_trade(&symbol)?,
            ))
        })
        .await?;
    let day = aggregate(&rows, u64::MAX)?.into_iter().next();
    let depth = state
        .engine
        .query(Query::Depth {
            symbol: spec.symbol().to_string(),
            limit: 1,
        })
        .await
        .map_err(engine_error)?;
    let (bid, ask) = match depth {
        QueryReply::Depth(Some(view)) => (view.bids.first().copied(), view.asks.first().copied()),
        _ => (None, None),
    };
    let zero = (Price::default(), Amount::ZERO);
    let (bid_p, bid_q) = bid.unwrap_or(zero);
    let (ask_p, ask_q) = ask.unwrap_or(zero);
    let last_price = last.as_ref().map(|t| t.price).unwrap_or_default();
    let last_qty = last.as_ref().map(|t| t.qty).unwrap_or_default();
    let (open, high, low, volume, quote_volume, count) = match &day {
        Some(d) => (
            d.open,
            d.high,
            d.low,
            d.base_volume,
            d.quote_volume,
            d.trade_count,
        ),
        None => (
            last_price,
            last_price,
            last_price,
            Amount::ZERO,
            Amount::ZERO,
            0,
        ),
    };
    let change = i128::try_from(last_price.minor()).unwrap_or(i128::MAX)
        - i128::try_from(open.minor()).unwrap_or(i128::MAX);
    let weighted = if volume.is_zero() {
        Price::default()
    } else {
        let unit = spec.base().unit().minor();
        Price::from_minor(quote_volume.minor().saturating_mul(unit) / volume.minor())
    };
    let signed_price = |magnitude: i128| {
        let text = Amount::from_minor(magnitude.unsigned_abs()).to_decimal(spec.quote().decimals());
        if magnitude < 0 {
            format!("-{text}")
        } else {
            text
        }
    };
    Ok(json!({
        "symbol": spec.symbol(),
        "priceChange": signed_price(change),
        "priceChangePercent": ratio(change.saturating_mul(100), open.minor(), 3),
        "weightedAvgPrice": price(spec, weighted),
        "prevClosePrice": price(spec, open),
        "lastPrice": price(spec, last_price),
        "lastQty": base(spec, last_qty),
        "bidPrice": price(spec, bid_p),
        "bidQty": base(spec, bid_q),
        "askPrice": price(spec, ask_p),
        "askQty": base(spec, ask_q),
        "openPrice": price(spec, open),
        "highPrice": price(spec, high),
        "lowPrice": price(spec, low),
        "volume": base(spec, volume),
        "quoteVolume": quote(spec, quote_volume),
        "openTime": open_time,
        "closeTime": now_ms,
        // Binance: -1 for both when the window saw no trade.
        "firstId": first.as_ref().map_or(-1, |t| i64::try_from(t.id.0).unwrap_or(-1)),
        "lastId": first.and(last.as_ref()).map_or(-1, |t| i64::try_from(t.id.0).unwrap_or(-1)),
        "count": count,
    }))
}
