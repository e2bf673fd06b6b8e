//! Every read: the state the exchange resumes from, and the queries behind the REST API
//! (Binance semantics: a `from_id` reads ascending from that id, otherwise the most
//! recent `limit` rows are returned in ascending order).

use std::collections::HashMap;

use ztx_core::{
    CustomerId, ExchangeState, Order, OrderId, PendingState, Trade, TradeId, Transfer, TransferId,
};

use crate::codec;
use crate::error::{Result, StoreError};
use crate::model::{
    ApiKeyRecord, Candle, CustomerRecord, InboxId, InboxItem, Mode, OrderQuery, StoredEmail,
};
use crate::schema;
use crate::sql::{self, Conn, Param, Row, RowReader};

fn decode_all<T>(rows: Vec<Row>, decode: impl Fn(Row) -> Result<T>) -> Result<Vec<T>> {
    rows.into_iter().map(decode).collect()
}

fn max_id(conn: &mut dyn Conn, sql: &'static str, table: &'static str) -> Result<u64> {
    let row = sql::first(conn.query(sql, &[])?)
        .ok_or_else(|| StoreError::corrupt(table, "id", "MAX(id) returned no row"))?;
    RowReader::new(table, row).u64("id")
}

pub(crate) fn load_state(conn: &mut dyn Conn) -> Result<ExchangeState> {
    let mut accounts = decode_all(
        conn.query(
            concat!("SELECT ", account_columns!(), " FROM accounts"),
            &[],
        )?,
        codec::account,
    )?;
    accounts.sort_by_key(|(key, _)| *key);
    let mut transfers = decode_all(
        conn.query(
            concat!("SELECT ", transfer_columns!(), " FROM transfers"),
            &[],
        )?,
        codec::transfer,
    )?;
    transfers.sort_by_key(|t| t.id);
    let by_id: HashMap<TransferId, &Transfer> = transfers.iter().map(|t| (t.id, t)).collect();
    let mut pending = Vec::new();
    for row in conn.query("SELECT transfer_id, remaining FROM pending", &[])? {
        let mut r = RowReader::new("pending", row);
        let id = r.transfer_id("transfer_id")?;
        let remaining = r.amount("remaining")?;
        let transfer = by_id
            .get(&id)
            .ok_or_else(|| r.corrupt_here("transfer_id", format!("no transfer {id:?}")))?;
        pending.push(PendingState {
            transfer: **transfer,
            remaining,
        });
    }
    pending.sort_by_key(|p| p.transfer.id);
    let mut open_orders = decode_all(
        conn.query(
            concat!(
                "SELECT ",
                order_columns!(),
                " FROM orders WHERE status IN ",
                open_statuses!()
            ),
            &[],
        )?,
        codec::order,
    )?;
    // Sorted here, not in SQL: text collation differs between engines and locales.
    open_orders.sort_by(|a, b| (&a.symbol, a.priority, a.id).cmp(&(&b.symbol, b.priority, b.id)));
    Ok(ExchangeState {
        accounts,
        transfers,
        pending,
        open_orders,
        last_order_id: max_id(conn, "SELECT COALESCE(MAX(id), 0) FROM orders", "orders")?,
        last_trade_id: max_id(conn, "SELECT COALESCE(MAX(id), 0) FROM trades", "trades")?,
    })
}

pub(crate) fn mode(conn: &mut dyn Conn) -> Result<Option<Mode>> {
    match schema::read_meta(conn, "mode")? {
        None => Ok(None),
        Some(text) => Mode::parse(&text)
            .map(Some)
            .ok_or_else(|| StoreError::corrupt("meta", "value", format!("mode {text:?}"))),
    }
}

pub(crate) fn customer(conn: &mut dyn Conn, id: CustomerId) -> Result<Option<CustomerRecord>> {
    let rows = conn.query(
        "SELECT id, email_sealed IS NOT NULL, created_ms FROM customers WHERE id = $1",
        &[sql::int(id.0, "customer id")?],
    )?;
    sql::first(rows).map(codec::customer).transpose()
}

/// A customer's address as stored, with their wrapped data key: for the holders of the
/// key-encryption key (key rotation, the notification sender), not the exchange, whose
/// role may not read `customer_keys`.
pub(crate) fn sealed_email(conn: &mut dyn Conn, id: CustomerId) -> Result<Option<StoredEmail>> {
    let rows = conn.query(
        "SELECT c.email_index, c.email_sealed, k.kek_version, k.data_key \
         FROM customers c LEFT JOIN customer_keys k ON k.customer_id = c.id WHERE c.id = $1",
        &[sql::int(id.0, "customer id")?],
    )?;
    sql::first(rows)
        .map(|row| codec::stored_email(&mut RowReader::new("customers", row)))
        .transpose()
}

pub(crate) fn api_key_by_key(conn: &mut dyn Conn, api_key: &str) -> Result<Option<ApiKeyRecord>> {
    let rows = conn.query(
        concat!(
            "SELECT ",
            api_key_columns!(),
            " FROM api_keys WHERE api_key = $1"
        ),
        &[sql::text(api_key)],
    )?;
    sql::first(rows).map(codec::api_key).transpose()
}

pub(crate) fn api_keys_of(conn: &mut dyn Conn, customer: CustomerId) -> Result<Vec<ApiKeyRecord>> {
    let rows = conn.query(
        concat!(
            "SELECT ",
            api_key_columns!(),
            " FROM api_keys WHERE customer_id = $1 ORDER BY id"
        ),
        &[sql::int(customer.0, "customer id")?],
    )?;
    decode_all(rows, codec::api_key)
}

pub(crate) fn order(
    conn: &mut dyn Conn,
    customer: CustomerId,
    symbol: &str,
    query: &OrderQuery,
) -> Result<Option<Order>> {
    let customer = sql::int(customer.0, "customer id")?;
    let rows = match query {
        OrderQuery::ById(id) => conn.query(
            concat!(
                "SELECT ",
                order_columns!(),
                " FROM orders WHERE customer_id = $1 AND symbol = $2 AND id = $3"
            ),
            &[customer, sql::text(symbol), sql::int(id.0, "order id")?],
        )?,
        OrderQuery::ByClientId(client_id) => {
            let indexed = indexed_to(conn, "orders")?;
            conn.query(
                concat!(
                    "SELECT * FROM (SELECT ",
                    order_columns!(),
                    " FROM order_client_index JOIN orders ON orders.id = order_id \
                     AND orders.customer_id = owner AND orders.symbol = market \
                     AND orders.client_order_id = client_id \
                     WHERE owner = $1 AND market = $2 AND client_id = $3 AND order_id <= $4 \
                     ORDER BY order_id DESC LIMIT 1) AS indexed \
                     UNION ALL SELECT * FROM (SELECT ",
                    order_columns!(),
                    " FROM orders WHERE customer_id = $1 AND symbol = $2 \
                     AND client_order_id = $3 AND id > $4 \
                     ORDER BY id DESC LIMIT 1) AS tail ORDER BY id DESC LIMIT 1"
                ),
                &[customer, sql::text(symbol), sql::text(client_id), indexed],
            )?
        }
    };
    sql::first(rows).map(codec::order).transpose()
}

/// Runs the ascending statement from `from_id`, or the descending one (most recent first)
/// and reverses it. Both take `$1 $2` key, `$3` from id, `$4 $5` time window, `$6` the
/// id up to which `history` is indexed, `$7` limit.
#[allow(clippy::too_many_arguments)] // each is one part of the page asked for
fn page<T>(
    conn: &mut dyn Conn,
    (ascending, descending): (&'static str, &'static str),
    history: &'static str,
    key: [Param; 2],
    from_id: Option<u64>,
    window: (Option<u64>, Option<u64>),
    limit: u32,
    decode: impl Fn(Row) -> Result<T>,
) -> Result<Vec<T>> {
    let [a, b] = key;
    let params = [
        a,
        b,
        sql::lower_bound(from_id, "from id")?,
        sql::lower_bound(window.0, "start_ms")?,
        sql::upper_bound(window.1),
        indexed_to(conn, history)?,
        sql::limit(limit),
    ];
    if from_id.is_some() {
        decode_all(conn.query(ascending, &params)?, decode)
    } else {
        let mut out = decode_all(conn.query(descending, &params)?, decode)?;
        out.reverse();
        Ok(out)
    }
}

/// The id up to which a history table is indexed, read before the query that uses it:
/// the index rows up to it committed together with it and are never removed, so the
/// index part (ids up to it) and the tail (ids above it) neither miss nor repeat a row
/// whatever snapshot each is read at. A bound parameter, not a sub-select, so that
/// PostgreSQL plans the tail as the short range scan it is.
fn indexed_to(conn: &mut dyn Conn, history: &'static str) -> Result<Param> {
    let last = crate::write::indexed_to(conn, history)?;
    sql::int(last, "history_indexed last_id")
}

/// One page of history: `$1` customer, `$2` symbol, `$3` from id, `$4 $5` time window,
/// `$6` indexed to, `$7` limit; the indexed part and the tail each give at most `$7`
/// rows, and the union is cut to `$7` again in the same order. The indexed part is joined
/// back on customer and market too, so an index that does not belong to these rows (a
/// history file restored beside another store) can never show one customer another's.
macro_rules! order_page {
    ($direction:literal) => {
        concat!(
            "SELECT * FROM (SELECT ",
            order_columns!(),
            " FROM order_index JOIN orders ON orders.id = order_id \
             AND orders.customer_id = owner AND orders.symbol = market \
             WHERE owner = $1 AND market = $2 AND order_id >= $3 \
             AND created_ms >= $4 AND created_ms <= $5 AND order_id <= $6 ORDER BY order_id ",
            $direction,
            " LIMIT $7) AS indexed UNION ALL SELECT * FROM (SELECT ",
            order_columns!(),
            " FROM orders WHERE customer_id = $1 AND symbol = $2 AND id >= $3 \
             AND created_ms >= $4 AND created_ms <= $5 AND id > $6 ORDER BY id ",
            $direction,
            " LIMIT $7) AS tail ORDER BY id ",
            $direction,
            " LIMIT $7"
        )
    };
}

pub(crate) fn orders(
    conn: &mut dyn Conn,
    customer: CustomerId,
    symbol: &str,
    from_id: Option<OrderId>,
    window: (Option<u64>, Option<u64>),
    limit: u32,
) -> Result<Vec<Order>> {
    page(
        conn,
        (order_page!("ASC"), order_page!("DESC")),
        "orders",
        [sql::int(customer.0, "customer id")?, sql::text(symbol)],
        from_id.map(|id| id.0),
        window,
        limit,
        codec::order,
    )
}

/// Scans every open order of the exchange (the `orders_open` index), which is what
/// restart reads too; the API asks the engine, which keeps them in memory.
pub(crate) fn open_orders(
    conn: &mut dyn Conn,
    customer: CustomerId,
    symbol: Option<&str>,
) -> Result<Vec<Order>> {
    let rows = conn.query(
        concat!(
            "SELECT ",
            order_columns!(),
            " FROM orders WHERE status IN ",
            open_statuses!(),
            " AND customer_id = $1 AND ($2 = '' OR symbol = $2) ORDER BY id"
        ),
        &[
            sql::int(customer.0, "customer id")?,
            sql::text(symbol.unwrap_or("")),
        ],
    )?;
    decode_all(rows, codec::order)
}

macro_rules! my_trade_page {
    ($direction:literal) => {
        concat!(
            "SELECT * FROM (SELECT ",
            trade_columns!(),
            " FROM trade_index JOIN trades ON trades.id = trade_id \
             AND (trades.buyer_id = owner OR trades.seller_id = owner) \
             AND trades.symbol = market \
             WHERE owner = $1 AND market = $2 AND trade_id >= $3 \
             AND time_ms >= $4 AND time_ms <= $5 AND trade_id <= $6 ORDER BY trade_id ",
            $direction,
            " LIMIT $7) AS indexed UNION ALL SELECT * FROM (SELECT ",
            trade_columns!(),
            " FROM trades WHERE (buyer_id = $1 OR seller_id = $1) AND symbol = $2 \
             AND id >= $3 AND time_ms >= $4 AND time_ms <= $5 AND id > $6 ORDER BY id ",
            $direction,
            " LIMIT $7) AS tail ORDER BY id ",
            $direction,
            " LIMIT $7"
        )
    };
}

pub(crate) fn my_trades(
    conn: &mut dyn Conn,
    customer: CustomerId,
    symbol: &str,
    from_id: Option<TradeId>,
    window: (Option<u64>, Option<u64>),
    limit: u32,
) -> Result<Vec<Trade>> {
    page(
        conn,
        (my_trade_page!("ASC"), my_trade_page!("DESC")),
        "trades",
        [sql::int(customer.0, "customer id")?, sql::text(symbol)],
        from_id.map(|id| id.0),
        window,
        limit,
        codec::trade,
    )
}

pub(crate) fn recent_trades(conn: &mut dyn Conn, symbol: &str, limit: u32) -> Result<Vec<Trade>> {
    let rows = conn.query(
        concat!(
            "SELECT ",
            trade_columns!(),
            " FROM trades WHERE symbol = $1 ORDER BY id DESC LIMIT $2"
        ),
        &[sql::text(symbol), sql::limit(limit)],
    )?;
    let mut out = decode_all(rows, codec::trade)?;
    out.reverse();
    Ok(out)
}

/// The first trade of a market at or after `start_ms` (the 24-hour ticker's `firstId`).
pub(crate) fn first_trade_since(
    conn: &mut dyn Conn,
    symbol: &str,
    start_ms: u64,
) -> Result<Option<Trade>> {
    let rows = conn.query(
        concat!(
            "SELECT ",
            trade_columns!(),
            " FROM trades WHERE symbol = $1 AND time_ms >= $2 ORDER BY time_ms, id LIMIT 1"
        ),
        &[sql::text(symbol), sql::int(start_ms, "start time")?],
    )?;
    Ok(decode_all(rows, codec::trade)?.pop())
}

pub(crate) fn last_trade(conn: &mut dyn Conn, symbol: &str) -> Result<Option<Trade>> {
    Ok(recent_trades(conn, symbol, 1)?.pop())
}

macro_rules! candle_page {
    ($direction:literal) => {
        concat!(
            "SELECT ",
            candle_columns!(),
            " FROM candles WHERE symbol = $1 AND open_ms >= $2 AND open_ms <= $3 \
             ORDER BY open_ms ",
            $direction,
            " LIMIT $4"
        )
    };
}

/// Binance klines: with a start, ascending from it; otherwise the most recent `limit`.
pub(crate) fn candles(
    conn: &mut dyn Conn,
    symbol: &str,
    window: (Option<u64>, Option<u64>),
    limit: u32,
) -> Result<Vec<Candle>> {
    let params = [
        sql::text(symbol),
        sql::lower_bound(window.0, "start_ms")?,
        sql::upper_bound(window.1),
        sql::limit(limit),
    ];
    if window.0.is_some() {
        decode_all(conn.query(candle_page!("ASC"), &params)?, codec::candle)
    } else {
        let mut out = decode_all(conn.query(candle_page!("DESC"), &params)?, codec::candle)?;
        out.reverse();
        Ok(out)
    }
}

pub(crate) fn pending_inbox(
    conn: &mut dyn Conn,
    after: InboxId,
    limit: u32,
) -> Result<Vec<InboxItem>> {
    let rows = conn.query(
        concat!(
            "SELECT ",
            inbox_columns!(),
            " FROM inbox WHERE completed_ms IS NULL AND id > $1 ORDER BY id LIMIT $2"
        ),
        &[sql::int(after.0, "inbox id")?, sql::limit(limit)],
    )?;
    decode_all(rows, codec::inbox_item)
}

pub(crate) fn inbox_item(conn: &mut dyn Conn, id: InboxId) -> Result<Option<InboxItem>> {
    let rows = conn.query(
        concat!("SELECT ", inbox_columns!(), " FROM inbox WHERE id = $1"),
        &[sql::int(id.0, "inbox id")?],
    )?;
    sql::first(rows).map(codec::inbox_item).transpose()
}
