//! Every write: `apply` (one transaction per batch of changes, candles included), and the
//! customer, API key, mode and inbox records.

use std::collections::BTreeMap;

use ztx_core::{Amount, AssetCode, Changes, CustomerId, Trade, TransferId};

use crate::audit::AuditAppend;
use crate::codec;
use crate::error::{Result, StoreError};
use crate::model::{ApiKeyCredential, ApiKeyId, Candle, InboxId, Mode, NewApiKey};
use crate::schema;
use crate::sql::{self, Backend, Conn, Param, RowReader, Stmt};

const UPSERT_ACCOUNT: &str = concat!(
    "INSERT INTO accounts (",
    account_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (owner_kind, owner_id, asset) DO UPDATE \
     SET debits_pending = excluded.debits_pending, debits_posted = excluded.debits_posted, \
     credits_pending = excluded.credits_pending, credits_posted = excluded.credits_posted"
);

const INSERT_TRANSFER: &str = concat!(
    "INSERT INTO transfers (",
    transfer_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
);

const UPSERT_PENDING: &str = "INSERT INTO pending (transfer_id, remaining) VALUES ($1, $2) \
     ON CONFLICT (transfer_id) DO UPDATE SET remaining = excluded.remaining";

const DELETE_PENDING: &str = "DELETE FROM pending WHERE transfer_id = $1";

const UPSERT_ORDER: &str = concat!(
    "INSERT INTO orders (",
    order_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) \
     ON CONFLICT (id) DO UPDATE SET symbol = excluded.symbol, \
     customer_id = excluded.customer_id, client_order_id = excluded.client_order_id, \
     side = excluded.side, order_type = excluded.order_type, \
     time_in_force = excluded.time_in_force, stp_mode = excluded.stp_mode, \
     price = excluded.price, orig_qty = excluded.orig_qty, \
     orig_quote_qty = excluded.orig_quote_qty, executed_qty = excluded.executed_qty, \
     cumulative_quote = excluded.cumulative_quote, status = excluded.status, \
     hold_id = excluded.hold_id, priority = excluded.priority, \
     created_ms = excluded.created_ms, updated_ms = excluded.updated_ms"
);

const INSERT_TRADE: &str = concat!(
    "INSERT INTO trades (",
    trade_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
);

const SELECT_CANDLE: &str = concat!(
    "SELECT ",
    candle_columns!(),
    " FROM candles WHERE symbol = $1 AND open_ms = $2"
);

const UPSERT_CANDLE: &str = concat!(
    "INSERT INTO candles (symbol, ",
    candle_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
     ON CONFLICT (symbol, open_ms) DO UPDATE SET open = excluded.open, high = excluded.high, \
     low = excluded.low, close = excluded.close, base_volume = excluded.base_volume, \
     quote_volume = excluded.quote_volume, trade_count = excluded.trade_count, \
     taker_buy_base_volume = excluded.taker_buy_base_volume, \
     taker_buy_quote_volume = excluded.taker_buy_quote_volume"
);

const MINUTE_MS: u64 = 60_000;

fn overflow(what: &'static str) -> StoreError {
    StoreError::OutOfRange {
        what,
        value: "sum beyond u128".into(),
    }
}

fn add(a: Amount, b: Amount, what: &'static str) -> Result<Amount> {
    a.checked_add(b).ok_or_else(|| overflow(what))
}

impl Candle {
    fn of_trade(trade: &Trade) -> Candle {
        let taker_is_buyer = !trade.buyer_is_maker;
        Candle {
            open_ms: trade.time_ms - trade.time_ms % MINUTE_MS,
            open: trade.price,
            high: trade.price,
            low: trade.price,
            close: trade.price,
            base_volume: trade.qty,
            quote_volume: trade.quote_qty,
            trade_count: 1,
            taker_buy_base_volume: if taker_is_buyer {
                trade.qty
            } else {
                Amount::ZERO
            },
            taker_buy_quote_volume: if taker_is_buyer {
                trade.quote_qty
            } else {
                Amount::ZERO
            },
        }
    }

    /// Folds `later` (which happened after `self`, in the same period) into `self`:
    /// the open and open time stay, the close is `later`'s, volumes add up (checked).
    pub fn merge(self, later: &Candle) -> Result<Candle> {
        Ok(Candle {
            open_ms: self.open_ms,
            open: self.open,
            high: self.high.max(later.high),
            low: self.low.min(later.low),
            close: later.close,
            base_volume: add(self.base_volume, later.base_volume, "candle base volume")?,
            quote_volume: add(self.quote_volume, later.quote_volume, "candle quote volume")?,
            trade_count: self
                .trade_count
                .checked_add(later.trade_count)
                .ok_or_else(|| overflow("candle trade count"))?,
            taker_buy_base_volume: add(
                self.taker_buy_base_volume,
                later.taker_buy_base_volume,
                "candle taker buy base volume",
            )?,
            taker_buy_quote_volume: add(
                self.taker_buy_quote_volume,
                later.taker_buy_quote_volume,
                "candle taker buy quote volume",
            )?,
        })
    }
}

/// The batch's trades folded into one candle per (symbol, minute), in trade order.
pub(crate) fn aggregate_candles(trades: &[Trade]) -> Result<BTreeMap<(String, u64), Candle>> {
    let mut out: BTreeMap<(String, u64), Candle> = BTreeMap::new();
    for trade in trades {
        let candle = Candle::of_trade(trade);
        let key = (trade.symbol.clone(), candle.open_ms);
        let merged = match out.remove(&key) {
            Some(earlier) => earlier.merge(&candle)?,
            None => candle,
        };
        out.insert(key, merged);
    }
    Ok(out)
}

/// Runs an insert, turning a unique violation into `duplicate`.
fn insert_unique(
    tx: &mut dyn Conn,
    sql: &'static str,
    params: &[Param],
    duplicate: impl FnOnce() -> StoreError,
) -> Result<()> {
    match tx.exec(sql, params) {
        Err(e) if e.is_unique_violation() => Err(duplicate()),
        other => other.map(|_| ()),
    }
}

pub(crate) fn apply<B: Backend>(db: &mut B, changes: &Changes, audit: &AuditAppend) -> Result<()> {
    if changes.is_empty() && audit.is_empty() {
        return Ok(());
    }
    let candles = aggregate_candles(&changes.trades)?;
    // Taken, so that a commit that fails leaves the next one to ask the database.
    let audit_end = db.audit_end().take();
    let committed = db.transaction(|tx| {
        // The rows go as one batch (one round trip on PostgreSQL, see `Conn::exec_all`);
        // `duplicate[i]` says what a unique violation of statement `i` means.
        let mut batch = Vec::new();
        let mut duplicate: Vec<Option<StoreError>> = Vec::new();
        crate::audit::append(tx, audit, audit_end, &mut batch)?;
        crate::security::apply(tx, &audit.effects)?;
        let mut push = |sql: &'static str, params: Vec<Param>, on_duplicate: Option<StoreError>| {
            batch.push(Stmt { sql, params });
            duplicate.resize_with(batch.len() - 1, || None);
            duplicate.push(on_duplicate);
        };
        for (key, balances) in &changes.accounts {
            push(UPSERT_ACCOUNT, codec::account_params(key, balances)?, None);
        }
        for t in &changes.transfers {
            let dup = StoreError::DuplicateTransfer(t.id);
            push(INSERT_TRANSFER, codec::transfer_params(t)?, Some(dup));
        }
        for (id, remaining) in &changes.pending {
            if remaining.is_zero() {
                push(DELETE_PENDING, vec![sql::transfer_id(*id)], None);
            } else {
                let params = vec![sql::transfer_id(*id), sql::amount(*remaining)];
                push(UPSERT_PENDING, params, None);
            }
        }
        for o in &changes.orders {
            push(UPSERT_ORDER, codec::order_params(o)?, None);
        }
        for t in &changes.trades {
            let dup = StoreError::DuplicateTrade(t.id);
            push(INSERT_TRADE, codec::trade_params(t)?, Some(dup));
        }
        if let Err((i, e)) = tx.exec_all(&batch) {
            return Err(match duplicate.get_mut(i).and_then(Option::take) {
                Some(dup) if e.is_unique_violation() => dup,
                _ => e,
            });
        }
        for ((symbol, open_ms), batch) in &candles {
            let key = [sql::text(symbol), sql::int(*open_ms, "candle open_ms")?];
            let merged = match sql::first(tx.query(SELECT_CANDLE, &key)?) {
                Some(row) => codec::candle(row)?.merge(batch)?,
                None => *batch,
            };
            tx.exec(UPSERT_CANDLE, &codec::candle_params(symbol, &merged)?)?;
        }
        Ok(())
    });
    if committed.is_ok() {
        *db.audit_end() = match audit.rows.last() {
            Some(last) => Some(last.index.saturating_add(1)),
            None => audit_end,
        };
    }
    committed
}

/// Statements that move one table's unindexed tail, `($1, $2]` by id, into its
/// per-customer index.
struct HistoryIndex {
    /// The row of `history_indexed` that records how far this table is indexed.
    name: &'static str,
    /// The largest id of at most `$2` rows above `$1`; NULL when there are none.
    tail_end: &'static str,
    inserts: &'static [&'static str],
}

const HISTORY_INDEXES: [HistoryIndex; 2] = [
    HistoryIndex {
        name: "orders",
        tail_end: "SELECT MAX(id) FROM \
                   (SELECT id FROM orders WHERE id > $1 ORDER BY id LIMIT $2) AS t",
        inserts: &[
            "INSERT INTO order_index (owner, market, order_id) \
             SELECT customer_id, symbol, id FROM orders WHERE id > $1 AND id <= $2",
            "INSERT INTO order_client_index (owner, market, client_id, order_id) \
             SELECT customer_id, symbol, client_order_id, id FROM orders \
             WHERE id > $1 AND id <= $2",
        ],
    },
    HistoryIndex {
        name: "trades",
        tail_end: "SELECT MAX(id) FROM \
                   (SELECT id FROM trades WHERE id > $1 ORDER BY id LIMIT $2) AS t",
        inserts: &[
            "INSERT INTO trade_index (owner, market, trade_id) \
             SELECT buyer_id, symbol, id FROM trades WHERE id > $1 AND id <= $2",
            // A self-trade (STP mode NONE) is indexed once.
            "INSERT INTO trade_index (owner, market, trade_id) \
             SELECT seller_id, symbol, id FROM trades \
             WHERE id > $1 AND id <= $2 AND seller_id <> buyer_id",
        ],
    },
];

/// How far the history table `name` is indexed: the largest id in its index.
pub(crate) fn indexed_to(conn: &mut dyn Conn, name: &'static str) -> Result<u64> {
    let row = sql::first(conn.query(
        "SELECT last_id FROM history_indexed WHERE name = $1",
        &[sql::text(name)],
    )?)
    .ok_or_else(|| StoreError::corrupt("history_indexed", "name", format!("no row {name:?}")))?;
    RowReader::new("history_indexed", row).u64("last_id")
}

/// See [`crate::Store::index_history`]. Correct because ids only grow and a single
/// writer commits them in order: no row at or below a recorded `last_id` appears later.
pub(crate) fn index_history<B: Backend>(db: &mut B, limit: u32) -> Result<u64> {
    let limit = sql::limit(limit);
    // The indexes are derived from `orders` and `trades`: if a crash loses this commit,
    // it loses the matching `history_indexed` too, and the rows are indexed again.
    db.derived_transaction(|tx| {
        let mut added = 0u64;
        for index in &HISTORY_INDEXES {
            let last = sql::int(indexed_to(tx, index.name)?, "history_indexed last_id")?;
            let end = sql::first(tx.query(index.tail_end, &[last.clone(), limit.clone()])?)
                .map(|row| RowReader::new(index.name, row).opt_u64("id"))
                .transpose()?
                .flatten();
            let Some(end) = end else { continue };
            let end = sql::int(end, "history_indexed last_id")?;
            for insert in index.inserts {
                added = added.saturating_add(tx.exec(insert, &[last.clone(), end.clone()])?);
            }
            tx.exec(
                "UPDATE history_indexed SET last_id = $1 WHERE name = $2",
                &[end, sql::text(index.name)],
            )?;
        }
        Ok(added)
    })
}

pub(crate) fn init_mode<B: Backend>(db: &mut B, mode: Mode) -> Result<()> {
    db.transaction(|tx| match schema::read_meta(tx, "mode")? {
        None => schema::write_meta(tx, "mode", mode.as_str()),
        Some(text) => {
            let stored = Mode::parse(&text)
                .ok_or_else(|| StoreError::corrupt("meta", "value", format!("mode {text:?}")))?;
            if stored == mode {
                Ok(())
            } else {
                Err(StoreError::ModeMismatch {
                    stored,
                    requested: mode,
                })
            }
        }
    })
}

/// The next id of a table whose ids the store assigns: one above the largest. Run inside
/// the inserting transaction (SQLite serialises writers; on PostgreSQL a concurrent
/// insert of the same id fails on the primary key rather than duplicating it).
pub(crate) fn next_id(tx: &mut dyn Conn, sql: &'static str, table: &'static str) -> Result<u64> {
    let row = sql::first(tx.query(sql, &[])?)
        .ok_or_else(|| StoreError::corrupt(table, "id", "MAX(id) returned no row"))?;
    let last = RowReader::new(table, row).u64("id")?;
    last.checked_add(1).ok_or_else(|| StoreError::OutOfRange {
        what: table,
        value: last.to_string(),
    })
}

pub(crate) fn customer_exists(conn: &mut dyn Conn, id: CustomerId) -> Result<bool> {
    let rows = conn.query(
        "SELECT id FROM customers WHERE id = $1",
        &[sql::int(id.0, "customer id")?],
    )?;
    Ok(!rows.is_empty())
}

pub(crate) fn create_customer<B: Backend>(
    db: &mut B,
    email_index: &str,
    seal: crate::SealEmail<'_>,
    now_ms: u64,
) -> Result<CustomerId> {
    db.transaction(|tx| {
        let id = next_id(
            tx,
            "SELECT COALESCE(MAX(id), 0) FROM customers",
            "customers",
        )?;
        let sealed = seal(CustomerId(id)).map_err(StoreError::Sealing)?;
        insert_unique(
            tx,
            "INSERT INTO customers (id, email_index, email_sealed, created_ms) \
             VALUES ($1, $2, $3, $4)",
            &[
                sql::int(id, "customer id")?,
                sql::text(email_index),
                Param::Blob(sealed.sealed),
                sql::int(now_ms, "customer created_ms")?,
            ],
            || StoreError::DuplicateEmail,
        )?;
        crate::contact::insert_key(tx, CustomerId(id), sealed.kek_version, sealed.data_key)?;
        Ok(CustomerId(id))
    })
}

pub(crate) fn create_api_key<B: Backend>(db: &mut B, key: &NewApiKey) -> Result<ApiKeyId> {
    db.transaction(|tx| {
        if !customer_exists(tx, key.customer)? {
            return Err(StoreError::UnknownCustomer(key.customer));
        }
        let id = next_id(tx, "SELECT COALESCE(MAX(id), 0) FROM api_keys", "api_keys")?;
        let (secret, public, version, data_key) = match &key.credential {
            ApiKeyCredential::Hmac {
                secret_sealed,
                data_key,
            } => (
                Param::Blob(secret_sealed.clone()),
                Param::NullBlob,
                data_key
                    .as_ref()
                    .map_or(Param::NullInt, |k| Param::Int(i64::from(k.kek_version))),
                data_key
                    .as_ref()
                    .map_or(Param::NullBlob, |k| Param::Blob(k.wrapped.clone())),
            ),
            ApiKeyCredential::Ed25519 { public_key } => (
                Param::NullBlob,
                Param::Blob(public_key.to_vec()),
                Param::NullInt,
                Param::NullBlob,
            ),
        };
        insert_unique(
            tx,
            concat!(
                "INSERT INTO api_keys (",
                api_key_columns!(),
                // A new key is never frozen.
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, $11, $12)"
            ),
            &[
                sql::int(id, "api key id")?,
                sql::text(&key.api_key),
                sql::int(key.customer.0, "customer id")?,
                sql::text(key.credential.kind()),
                secret,
                public,
                sql::text(&key.permissions),
                sql::text(&key.ip_allowlist),
                Param::Bool(key.enabled),
                sql::int(key.created_ms, "api key created_ms")?,
                version,
                data_key,
            ],
            || StoreError::DuplicateApiKey(key.api_key.clone()),
        )?;
        Ok(ApiKeyId(id))
    })
}

pub(crate) fn enqueue_deposit<B: Backend>(
    db: &mut B,
    transfer_id: TransferId,
    customer: CustomerId,
    asset: AssetCode,
    amount: Amount,
    now_ms: u64,
) -> Result<InboxId> {
    db.transaction(|tx| {
        if !customer_exists(tx, customer)? {
            return Err(StoreError::UnknownCustomer(customer));
        }
        let id = next_id(tx, "SELECT COALESCE(MAX(id), 0) FROM inbox", "inbox")?;
        tx.exec(
            "INSERT INTO inbox (id, kind, transfer_id, customer_id, asset, amount, created_ms) \
             VALUES ($1, 'deposit', $2, $3, $4, $5, $6)",
            &[
                sql::int(id, "inbox id")?,
                sql::transfer_id(transfer_id),
                sql::int(customer.0, "customer id")?,
                sql::text(asset.as_str()),
                sql::amount(amount),
                sql::int(now_ms, "inbox created_ms")?,
            ],
        )?;
        Ok(InboxId(id))
    })
}

pub(crate) fn complete_inbox<B: Backend>(
    db: &mut B,
    id: InboxId,
    result: &str,
    now_ms: u64,
) -> Result<()> {
    db.transaction(|tx| {
        let key = sql::int(id.0, "inbox id")?;
        let changed = tx.exec(
            "UPDATE inbox SET completed_ms = $1, result = $2 WHERE id = $3 AND completed_ms IS NULL",
            &[sql::int(now_ms, "inbox completed_ms")?, sql::text(result), key.clone()],
        )?;
        if changed == 1 {
            return Ok(());
        }
        let exists = !tx.query("SELECT id FROM inbox WHERE id = $1", &[key])?.is_empty();
        Err(if exists {
            StoreError::InboxAlreadyCompleted(id)
        } else {
            StoreError::UnknownInboxItem(id)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ztx_core::{OrderId, Price, TradeId};

    fn trade(id: u64, time_ms: u64, price: u128, qty: u128, buyer_is_maker: bool) -> Trade {
        let usdt = AssetCode::new("USDT").unwrap();
        Trade {
            id: TradeId(id),
            symbol: "BTCUSDT".into(),
            price: Price::from_minor(price),
            qty: Amount::from_minor(qty),
            quote_qty: Amount::from_minor(price * qty),
            buy_order: OrderId(1),
            sell_order: OrderId(2),
            buyer: CustomerId(1),
            seller: CustomerId(2),
            buyer_is_maker,
            buyer_fee: Amount::ZERO,
            buyer_fee_asset: usdt,
            seller_fee: Amount::ZERO,
            seller_fee_asset: usdt,
            time_ms,
        }
    }

    #[test]
    fn candles_fold_trades_per_minute() {
        let trades = [
            trade(1, 60_000, 10, 1, false),
            trade(2, 60_500, 12, 2, true),
            trade(3, 119_999, 9, 3, false),
            trade(4, 120_000, 11, 1, true),
        ];
        let candles = aggregate_candles(&trades).unwrap();
        assert_eq!(candles.len(), 2);
        let first = candles[&("BTCUSDT".to_string(), 60_000)];
        assert_eq!(
            (first.open, first.high, first.low, first.close),
            (
                Price::from_minor(10),
                Price::from_minor(12),
                Price::from_minor(9),
                Price::from_minor(9)
            )
        );
        assert_eq!(first.base_volume, Amount::from_minor(6));
        assert_eq!(first.quote_volume, Amount::from_minor(10 + 24 + 27));
        assert_eq!(first.trade_count, 3);
        assert_eq!(first.taker_buy_base_volume, Amount::from_minor(4));
        assert_eq!(first.taker_buy_quote_volume, Amount::from_minor(37));
        let second = candles[&("BTCUSDT".to_string(), 120_000)];
        assert_eq!(second.trade_count, 1);
        assert_eq!(second.taker_buy_base_volume, Amount::ZERO);
    }
}
