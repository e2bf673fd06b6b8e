//! Fixtures for the store tests: builders of records and the two backends' databases.

use std::path::PathBuf;

use ztx_core::{
    AccountKey, Amount, AssetCode, CustomerId, Order, OrderId, OrderStatus, OrderType, Owner,
    Price, Side, StpMode, TimeInForce, Trade, TradeId, Transfer, TransferCode, TransferId,
    TransferKind,
};
use ztx_store::Store;
use ztx_store::testing::PgCluster;

/// A database the suite can open (again) and poke with raw SQL.
pub trait Fixture {
    fn open(&self) -> Box<dyn Store>;
    /// Opens with the schema of an older release (see `testing::open_at_version`).
    fn open_at_version(&self, version: u32) -> Box<dyn Store>;
    /// Runs raw SQL behind the store's back (to corrupt rows).
    fn raw(&self, sql: &str) {
        self.try_raw(sql).unwrap();
    }
    /// Runs raw SQL behind the store's back; the database's refusal as text.
    fn try_raw(&self, sql: &str) -> Result<(), String>;
}

#[derive(Debug)]
pub struct SqliteFixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl SqliteFixture {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ztx.db");
        Self { _dir: dir, path }
    }
}

impl Fixture for SqliteFixture {
    fn open(&self) -> Box<dyn Store> {
        // Through `open`, so that its dispatch on the argument is tested too.
        ztx_store::open(self.path.to_str().unwrap()).unwrap()
    }
    fn open_at_version(&self, version: u32) -> Box<dyn Store> {
        ztx_store::testing::open_at_version(self.path.to_str().unwrap(), version).unwrap()
    }
    fn try_raw(&self, sql: &str) -> Result<(), String> {
        rusqlite::Connection::open(&self.path)
            .unwrap()
            .execute_batch(sql)
            .map_err(|e| e.to_string())
    }
}

#[derive(Debug)]
pub struct PgFixture {
    url: String,
}

impl PgFixture {
    /// A fresh database, or `None` when PostgreSQL is not installed (and not CI).
    pub fn new() -> Option<Self> {
        let cluster = PgCluster::shared().unwrap()?;
        Some(Self {
            url: cluster.fresh_database().unwrap(),
        })
    }
}

impl Fixture for PgFixture {
    fn open(&self) -> Box<dyn Store> {
        ztx_store::open(&self.url).unwrap()
    }
    fn open_at_version(&self, version: u32) -> Box<dyn Store> {
        ztx_store::testing::open_at_version(&self.url, version).unwrap()
    }
    fn try_raw(&self, sql: &str) -> Result<(), String> {
        postgres::Client::connect(&self.url, postgres::NoTls)
            .unwrap()
            .batch_execute(sql)
            .map_err(|e| format!("{e:?}"))
    }
}

pub fn asset(code: &str) -> AssetCode {
    AssetCode::new(code).unwrap()
}

pub fn customer_key(id: u64, code: &str) -> AccountKey {
    AccountKey::new(Owner::Customer(CustomerId(id)), asset(code))
}

pub fn transfer(id: u128, kind: TransferKind, amount: u128, timestamp_ms: u64) -> Transfer {
    Transfer {
        id: TransferId(id),
        debit: customer_key(1, "USDT"),
        credit: AccountKey::new(Owner::Escrow, asset("USDT")),
        amount: Amount::from_minor(amount),
        kind,
        code: match kind {
            TransferKind::Pending => TransferCode::OrderHold,
            TransferKind::VoidPending { .. } => TransferCode::HoldRelease,
            _ => TransferCode::Trade,
        },
        timestamp_ms,
    }
}

pub fn order(id: u64, customer: u64, symbol: &str, status: OrderStatus, created_ms: u64) -> Order {
    Order {
        id: OrderId(id),
        symbol: symbol.into(),
        customer: CustomerId(customer),
        client_order_id: format!("client-{id}"),
        side: if id.is_multiple_of(2) {
            Side::Buy
        } else {
            Side::Sell
        },
        order_type: OrderType::Limit,
        time_in_force: TimeInForce::Gtc,
        stp_mode: StpMode::ExpireMaker,
        price: Some(Price::from_minor(30_000_000_000 + u128::from(id))),
        orig_qty: Amount::from_minor(100_000_000),
        orig_quote_qty: Amount::ZERO,
        executed_qty: Amount::from_minor(u128::from(id)),
        cumulative_quote: Amount::from_minor(7),
        status,
        hold_id: TransferId(u128::from(id) << 64),
        priority: 1_000_000u64.saturating_sub(id),
        created_ms,
        updated_ms: created_ms + 1,
    }
}

#[allow(clippy::too_many_arguments)] // each argument is one fact of the trade
pub fn trade(
    id: u64,
    symbol: &str,
    buyer: u64,
    seller: u64,
    time_ms: u64,
    price: u128,
    qty: u128,
    buyer_is_maker: bool,
) -> Trade {
    Trade {
        id: TradeId(id),
        symbol: symbol.into(),
        price: Price::from_minor(price),
        qty: Amount::from_minor(qty),
        quote_qty: Amount::from_minor(price * qty),
        buy_order: OrderId(id * 2),
        sell_order: OrderId(id * 2 + 1),
        buyer: CustomerId(buyer),
        seller: CustomerId(seller),
        buyer_is_maker,
        buyer_fee: Amount::from_minor(qty / 1000),
        buyer_fee_asset: asset("BTC"),
        seller_fee: Amount::from_minor(price * qty / 1000),
        seller_fee_asset: asset("USDT"),
        time_ms,
    }
}
