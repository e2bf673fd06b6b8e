//! Column lists as macros, so that `concat!` builds `'static` statement text (the key of
//! the prepared-statement caches) and every SELECT reads columns in the decoder's order.

/// The `IN (...)` list of open order states; a test checks it against
/// `ztx_core::OrderStatus::is_open`.
macro_rules! open_statuses {
    () => {
        "('NEW', 'PARTIALLY_FILLED')"
    };
}

macro_rules! account_columns {
    () => {
        "owner_kind, owner_id, asset, debits_pending, debits_posted, credits_pending, \
         credits_posted"
    };
}

macro_rules! transfer_columns {
    () => {
        "id, debit_kind, debit_id, debit_asset, credit_kind, credit_id, credit_asset, amount, \
         kind, pending_id, code, timestamp_ms"
    };
}

macro_rules! order_columns {
    () => {
        "id, symbol, customer_id, client_order_id, side, order_type, time_in_force, stp_mode, \
         price, orig_qty, orig_quote_qty, executed_qty, cumulative_quote, status, hold_id, \
         priority, created_ms, updated_ms"
    };
}

macro_rules! trade_columns {
    () => {
        "id, symbol, price, qty, quote_qty, buy_order_id, sell_order_id, buyer_id, seller_id, \
         buyer_is_maker, buyer_fee, buyer_fee_asset, seller_fee, seller_fee_asset, time_ms"
    };
}

macro_rules! candle_columns {
    () => {
        "open_ms, open, high, low, close, base_volume, quote_volume, trade_count, \
         taker_buy_base_volume, taker_buy_quote_volume"
    };
}

macro_rules! api_key_columns {
    () => {
        "id, api_key, customer_id, kind, secret_sealed, public_key, permissions, ip_allowlist, \
         enabled, created_ms, frozen_ms, secret_kek_version, secret_data_key"
    };
}

macro_rules! inbox_columns {
    () => {
        "id, kind, transfer_id, customer_id, asset, amount, created_ms, completed_ms, result"
    };
}
