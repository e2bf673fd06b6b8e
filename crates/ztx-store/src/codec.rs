//! Rows to records and back: one encoder and one decoder per table, shared by both
//! backends. Decoders refuse anything the encoders would not have written.

use ztx_core::{
    AccountKey, Balances, CustomerId, Order, OrderId, OrderStatus, OrderType, Owner, Side, StpMode,
    TimeInForce, Trade, TradeId, Transfer, TransferCode, TransferKind,
};

use crate::error::Result;
use crate::model::{
    ApiKeyCredential, ApiKeyId, ApiKeyRecord, Candle, CustomerRecord, InboxCommand,
    InboxCompletion, InboxId, InboxItem, SealedEmailRow, StoredEmail, WrappedDataKey,
};
use crate::sql::{self, Param, Row, RowReader};

fn owner_params(owner: Owner) -> Result<[Param; 2]> {
    Ok([
        sql::text(owner.kind()),
        sql::int(owner.id(), "account owner id")?,
    ])
}

fn read_owner(r: &mut RowReader, kind_col: &'static str, id_col: &'static str) -> Result<Owner> {
    let kind = r.text(kind_col)?;
    let id = r.u64(id_col)?;
    Owner::from_parts(&kind, id)
        .ok_or_else(|| r.corrupt_here(kind_col, format!("bad owner {kind:?}/{id}")))
}

fn read_key(
    r: &mut RowReader,
    kind_col: &'static str,
    id_col: &'static str,
    asset_col: &'static str,
) -> Result<AccountKey> {
    let owner = read_owner(r, kind_col, id_col)?;
    Ok(AccountKey::new(owner, r.asset(asset_col)?))
}

pub(crate) fn account_params(key: &AccountKey, b: &Balances) -> Result<Vec<Param>> {
    let [kind, id] = owner_params(key.owner)?;
    Ok(vec![
        kind,
        id,
        sql::text(key.asset.as_str()),
        sql::amount(b.debits_pending),
        sql::amount(b.debits_posted),
        sql::amount(b.credits_pending),
        sql::amount(b.credits_posted),
    ])
}

pub(crate) fn account(row: Row) -> Result<(AccountKey, Balances)> {
    let mut r = RowReader::new("accounts", row);
    let key = read_key(&mut r, "owner_kind", "owner_id", "asset")?;
    Ok((
        key,
        Balances {
            debits_pending: r.amount("debits_pending")?,
            debits_posted: r.amount("debits_posted")?,
            credits_pending: r.amount("credits_pending")?,
            credits_posted: r.amount("credits_posted")?,
        },
    ))
}

fn transfer_kind_parts(kind: TransferKind) -> (&'static str, Param) {
    match kind {
        TransferKind::Single => ("single", Param::NullBlob),
        TransferKind::Pending => ("pending", Param::NullBlob),
        TransferKind::PostPending { pending_id } => ("post_pending", sql::transfer_id(pending_id)),
        TransferKind::VoidPending { pending_id } => ("void_pending", sql::transfer_id(pending_id)),
    }
}

pub(crate) fn transfer_params(t: &Transfer) -> Result<Vec<Param>> {
    let [debit_kind, debit_id] = owner_params(t.debit.owner)?;
    let [credit_kind, credit_id] = owner_params(t.credit.owner)?;
    let (kind, pending_id) = transfer_kind_parts(t.kind);
    Ok(vec![
        sql::transfer_id(t.id),
        debit_kind,
        debit_id,
        sql::text(t.debit.asset.as_str()),
        credit_kind,
        credit_id,
        sql::text(t.credit.asset.as_str()),
        sql::amount(t.amount),
        sql::text(kind),
        pending_id,
        sql::text(t.code.as_str()),
        sql::int(t.timestamp_ms, "transfer timestamp_ms")?,
    ])
}

pub(crate) fn transfer(row: Row) -> Result<Transfer> {
    let mut r = RowReader::new("transfers", row);
    let id = r.transfer_id("id")?;
    let debit = read_key(&mut r, "debit_kind", "debit_id", "debit_asset")?;
    let credit = read_key(&mut r, "credit_kind", "credit_id", "credit_asset")?;
    let amount = r.amount("amount")?;
    let kind_text = r.text("kind")?;
    let pending_id = r.opt_transfer_id("pending_id")?;
    let kind = match (kind_text.as_str(), pending_id) {
        ("single", None) => TransferKind::Single,
        ("pending", None) => TransferKind::Pending,
        ("post_pending", Some(pending_id)) => TransferKind::PostPending { pending_id },
        ("void_pending", Some(pending_id)) => TransferKind::VoidPending { pending_id },
        (other, pending) => {
            return Err(r.corrupt_here(
                "kind",
                format!("kind {other:?} with pending_id {pending:?}"),
            ));
        }
    };
    Ok(Transfer {
        id,
        debit,
        credit,
        amount,
        kind,
        code: r.parsed("code", TransferCode::parse)?,
        timestamp_ms: r.u64("timestamp_ms")?,
    })
}

pub(crate) fn order_params(o: &Order) -> Result<Vec<Param>> {
    Ok(vec![
        sql::int(o.id.0, "order id")?,
        sql::text(&o.symbol),
        sql::int(o.customer.0, "order customer id")?,
        sql::text(&o.client_order_id),
        sql::text(o.side.as_str()),
        sql::text(o.order_type.as_str()),
        sql::text(o.time_in_force.as_str()),
        sql::text(o.stp_mode.as_str()),
        o.price.map_or(Param::NullText, sql::price),
        sql::amount(o.orig_qty),
        sql::amount(o.orig_quote_qty),
        sql::amount(o.executed_qty),
        sql::amount(o.cumulative_quote),
        sql::text(o.status.as_str()),
        sql::transfer_id(o.hold_id),
        sql::int(o.priority, "order priority")?,
        sql::int(o.created_ms, "order created_ms")?,
        sql::int(o.updated_ms, "order updated_ms")?,
    ])
}

pub(crate) fn order(row: Row) -> Result<Order> {
    let mut r = RowReader::new("orders", row);
    Ok(Order {
        id: OrderId(r.u64("id")?),
        symbol: r.text("symbol")?,
        customer: CustomerId(r.u64("customer_id")?),
        client_order_id: r.text("client_order_id")?,
        side: r.parsed("side", Side::parse)?,
        order_type: r.parsed("order_type", OrderType::parse)?,
        time_in_force: r.parsed("time_in_force", TimeInForce::parse)?,
        stp_mode: r.parsed("stp_mode", StpMode::parse)?,
        price: r.opt_price("price")?,
        orig_qty: r.amount("orig_qty")?,
        orig_quote_qty: r.amount("orig_quote_qty")?,
        executed_qty: r.amount("executed_qty")?,
        cumulative_quote: r.amount("cumulative_quote")?,
        status: r.parsed("status", OrderStatus::parse)?,
        hold_id: r.transfer_id("hold_id")?,
        priority: r.u64("priority")?,
        created_ms: r.u64("created_ms")?,
        updated_ms: r.u64("updated_ms")?,
    })
}

pub(crate) fn trade_params(t: &Trade) -> Result<Vec<Param>> {
    Ok(vec![
        sql::int(t.id.0, "trade id")?,
        sql::text(&t.symbol),
        sql::price(t.price),
        sql::amount(t.qty),
        sql::amount(t.quote_qty),
        sql::int(t.buy_order.0, "trade buy order id")?,
        sql::int(t.sell_order.0, "trade sell order id")?,
        sql::int(t.buyer.0, "trade buyer id")?,
        sql::int(t.seller.0, "trade seller id")?,
        Param::Bool(t.buyer_is_maker),
        sql::amount(t.buyer_fee),
        sql::text(t.buyer_fee_asset.as_str()),
        sql::amount(t.seller_fee),
        sql::text(t.seller_fee_asset.as_str()),
        sql::int(t.time_ms, "trade time_ms")?,
    ])
}

pub(crate) fn trade(row: Row) -> Result<Trade> {
    let mut r = RowReader::new("trades", row);
    Ok(Trade {
        id: TradeId(r.u64("id")?),
        symbol: r.text("symbol")?,
        price: r.price("price")?,
        qty: r.amount("qty")?,
        quote_qty: r.amount("quote_qty")?,
        buy_order: OrderId(r.u64("buy_order_id")?),
        sell_order: OrderId(r.u64("sell_order_id")?),
        buyer: CustomerId(r.u64("buyer_id")?),
        seller: CustomerId(r.u64("seller_id")?),
        buyer_is_maker: r.bool("buyer_is_maker")?,
        buyer_fee: r.amount("buyer_fee")?,
        buyer_fee_asset: r.asset("buyer_fee_asset")?,
        seller_fee: r.amount("seller_fee")?,
        seller_fee_asset: r.asset("seller_fee_asset")?,
        time_ms: r.u64("time_ms")?,
    })
}

pub(crate) fn candle_params(symbol: &str, c: &Candle) -> Result<Vec<Param>> {
    Ok(vec![
        sql::text(symbol),
        sql::int(c.open_ms, "candle open_ms")?,
        sql::price(c.open),
        sql::price(c.high),
        sql::price(c.low),
        sql::price(c.close),
        sql::amount(c.base_volume),
        sql::amount(c.quote_volume),
        sql::int(c.trade_count, "candle trade_count")?,
        sql::amount(c.taker_buy_base_volume),
        sql::amount(c.taker_buy_quote_volume),
    ])
}

pub(crate) fn candle(row: Row) -> Result<Candle> {
    let mut r = RowReader::new("candles", row);
    Ok(Candle {
        open_ms: r.u64("open_ms")?,
        open: r.price("open")?,
        high: r.price("high")?,
        low: r.price("low")?,
        close: r.price("close")?,
        base_volume: r.amount("base_volume")?,
        quote_volume: r.amount("quote_volume")?,
        trade_count: r.u64("trade_count")?,
        taker_buy_base_volume: r.amount("taker_buy_base_volume")?,
        taker_buy_quote_volume: r.amount("taker_buy_quote_volume")?,
    })
}

pub(crate) fn customer(row: Row) -> Result<CustomerRecord> {
    let mut r = RowReader::new("customers", row);
    Ok(CustomerRecord {
        id: CustomerId(r.u64("id")?),
        email_sealed: r.bool("email_sealed")?,
        created_ms: r.u64("created_ms")?,
    })
}

/// `email_index, email_sealed, kek_version, data_key` (the last two from
/// `customer_keys`, NULL without a row there).
pub(crate) fn stored_email(r: &mut RowReader) -> Result<StoredEmail> {
    let index = r.text("email_index")?;
    let sealed = r.opt_blob("email_sealed")?;
    let version = r.opt_u64("kek_version")?;
    let data_key = r.opt_blob("data_key")?;
    match (sealed, version, data_key) {
        (None, _, _) => Ok(StoredEmail::Plain(index)),
        (Some(sealed), Some(version), Some(data_key)) => Ok(StoredEmail::Sealed(SealedEmailRow {
            sealed,
            kek_version: u32::try_from(version)
                .map_err(|_| r.corrupt_here("kek_version", format!("version {version}")))?,
            data_key,
        })),
        (Some(_), _, _) => Err(r.corrupt_here("data_key", "a sealed address without its data key")),
    }
}

pub(crate) fn api_key(row: Row) -> Result<ApiKeyRecord> {
    let mut r = RowReader::new("api_keys", row);
    let id = ApiKeyId(r.u64("id")?);
    let api_key = r.text("api_key")?;
    let customer = CustomerId(r.u64("customer_id")?);
    let kind = r.text("kind")?;
    let secret = r.opt_blob("secret_sealed")?;
    let public = r.opt_blob("public_key")?;
    let credential = match (kind.as_str(), secret, public) {
        ("hmac", Some(secret_sealed), None) => ApiKeyCredential::Hmac {
            secret_sealed,
            // Read with the rest of the row below.
            data_key: None,
        },
        ("ed25519", None, Some(bytes)) => ApiKeyCredential::Ed25519 {
            public_key: bytes.as_slice().try_into().map_err(|_| {
                r.corrupt_here("public_key", format!("{} bytes, not 32", bytes.len()))
            })?,
        },
        (other, secret, public) => {
            return Err(r.corrupt_here(
                "kind",
                format!(
                    "kind {other:?} with secret {} and public key {}",
                    if secret.is_some() { "set" } else { "unset" },
                    if public.is_some() { "set" } else { "unset" },
                ),
            ));
        }
    };
    let permissions = r.text("permissions")?;
    let ip_allowlist = r.text("ip_allowlist")?;
    let enabled = r.bool("enabled")?;
    let created_ms = r.u64("created_ms")?;
    let frozen_ms = r.opt_u64("frozen_ms")?;
    let wrapped = secret_data_key(&mut r)?;
    let credential = match (credential, wrapped) {
        (ApiKeyCredential::Hmac { secret_sealed, .. }, data_key) => ApiKeyCredential::Hmac {
            secret_sealed,
            data_key,
        },
        (ed25519, None) => ed25519,
        (_, Some(_)) => return Err(r.corrupt_here("secret_data_key", "on an Ed25519 key")),
    };
    Ok(ApiKeyRecord {
        id,
        api_key,
        customer,
        credential,
        permissions,
        ip_allowlist,
        enabled,
        created_ms,
        frozen_ms,
    })
}

/// An API key's wrapped data key: its two columns, both set or both NULL.
pub(crate) fn secret_data_key(r: &mut RowReader) -> Result<Option<WrappedDataKey>> {
    let version = r.opt_u64("secret_kek_version")?;
    let wrapped = r.opt_blob("secret_data_key")?;
    match (version, wrapped) {
        (None, None) => Ok(None),
        (Some(version), Some(wrapped)) => Ok(Some(WrappedDataKey {
            kek_version: u32::try_from(version)
                .map_err(|_| r.corrupt_here("secret_kek_version", format!("version {version}")))?,
            wrapped,
        })),
        _ => Err(r.corrupt_here(
            "secret_data_key",
            "a data key without its version, or a version without its key",
        )),
    }
}

pub(crate) fn inbox_item(row: Row) -> Result<InboxItem> {
    let mut r = RowReader::new("inbox", row);
    let id = InboxId(r.u64("id")?);
    let kind = r.text("kind")?;
    let command = match kind.as_str() {
        "deposit" => InboxCommand::Deposit {
            transfer_id: r.transfer_id("transfer_id")?,
            customer: CustomerId(r.u64("customer_id")?),
            asset: r.asset("asset")?,
            amount: r.amount("amount")?,
        },
        other => return Err(r.corrupt_here("kind", format!("unknown command {other:?}"))),
    };
    let created_ms = r.u64("created_ms")?;
    let completion = match (r.opt_u64("completed_ms")?, r.opt_text("result")?) {
        (None, None) => None,
        (Some(completed_ms), Some(result)) => Some(InboxCompletion {
            completed_ms,
            result,
        }),
        _ => {
            return Err(r.corrupt_here("result", "completed_ms and result must be set together"));
        }
    };
    Ok(InboxItem {
        id,
        command,
        created_ms,
        completion,
    })
}
