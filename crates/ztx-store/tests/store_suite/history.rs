//! Property: per-customer history reads (`orders`, `order` by client id, `my_trades`)
//! return exactly what a plain in-memory model of all committed rows says, whatever part
//! of the history `index_history` has indexed so far.

use proptest::prelude::*;
use ztx_core::{Changes, CustomerId, Order, OrderId, OrderStatus, Trade, TradeId};
use ztx_store::{OrderQuery, Store};

use crate::common::*;

const CUSTOMERS: u64 = 3;
const SYMBOLS: [&str; 2] = ["BTCUSDT", "ETHUSDT"];

#[derive(Clone, Debug)]
enum Step {
    /// New orders `(customer, symbol, client id)` and trades `(buyer, seller, symbol)`.
    Apply(Vec<(u64, usize, u8)>, Vec<(u64, u64, usize)>),
    Index(u32),
}

fn step() -> impl Strategy<Value = Step> {
    let customer = 1..=CUSTOMERS;
    let symbol = 0..SYMBOLS.len();
    prop_oneof![
        3 => (
            prop::collection::vec((customer.clone(), symbol.clone(), 0u8..3), 0..6),
            prop::collection::vec((customer.clone(), customer, symbol), 0..4),
        )
            .prop_map(|(orders, trades)| Step::Apply(orders, trades)),
        1 => (1u32..6).prop_map(Step::Index),
    ]
}

#[derive(Default)]
struct Model {
    orders: Vec<Order>,
    trades: Vec<Trade>,
}

impl Model {
    /// Binance paging: ascending from `from`, else the most recent `limit` ascending.
    fn page<T: Clone>(rows: Vec<&T>, from: Option<u64>, limit: usize) -> Vec<T> {
        let rows: Vec<T> = rows.into_iter().cloned().collect();
        match from {
            Some(_) => rows.into_iter().take(limit).collect(),
            None => rows[rows.len().saturating_sub(limit)..].to_vec(),
        }
    }

    fn orders(&self, c: u64, symbol: &str, from: Option<u64>, limit: usize) -> Vec<Order> {
        let rows = self
            .orders
            .iter()
            .filter(|o| o.customer.0 == c && o.symbol == symbol)
            .filter(|o| o.id.0 >= from.unwrap_or(0))
            .collect();
        Self::page(rows, from, limit)
    }

    fn by_client(&self, c: u64, symbol: &str, client: &str) -> Option<Order> {
        self.orders
            .iter()
            .rev()
            .find(|o| o.customer.0 == c && o.symbol == symbol && o.client_order_id == client)
            .cloned()
    }

    fn trades(&self, c: u64, symbol: &str, from: Option<u64>, limit: usize) -> Vec<Trade> {
        let rows = self
            .trades
            .iter()
            .filter(|t| (t.buyer.0 == c || t.seller.0 == c) && t.symbol == symbol)
            .filter(|t| t.id.0 >= from.unwrap_or(0))
            .collect();
        Self::page(rows, from, limit)
    }
}

fn check(store: &mut dyn Store, model: &Model) -> Result<(), TestCaseError> {
    let last_order = u64::try_from(model.orders.len()).unwrap();
    let last_trade = u64::try_from(model.trades.len()).unwrap();
    for c in 1..=CUSTOMERS {
        let customer = CustomerId(c);
        for symbol in SYMBOLS {
            for limit in [1usize, 2, 100] {
                let l = u32::try_from(limit).unwrap();
                for from in [None, Some(1), Some(last_order / 2 + 1)] {
                    prop_assert_eq!(
                        store.customer_scope(customer)?.orders(
                            symbol,
                            from.map(OrderId),
                            None,
                            None,
                            l
                        )?,
                        model.orders(c, symbol, from, limit),
                        "orders of {} in {} from {:?} limit {}",
                        c,
                        symbol,
                        from,
                        limit
                    );
                }
                for from in [None, Some(1), Some(last_trade / 2 + 1)] {
                    prop_assert_eq!(
                        store.customer_scope(customer)?.my_trades(
                            symbol,
                            from.map(TradeId),
                            None,
                            None,
                            l
                        )?,
                        model.trades(c, symbol, from, limit),
                        "trades of {} in {} from {:?} limit {}",
                        c,
                        symbol,
                        from,
                        limit
                    );
                }
            }
            for client in ["client-0", "client-1", "client-2"] {
                let query = OrderQuery::ByClientId(client.into());
                prop_assert_eq!(
                    store.customer_scope(customer)?.order(symbol, &query)?,
                    model.by_client(c, symbol, client)
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn history_reads_are_exact_however_far_indexing_got(
        steps in prop::collection::vec(step(), 1..12)
    ) {
        let fixture = SqliteFixture::new();
        let mut store = fixture.open();
        let mut model = Model::default();
        for step in steps {
            match step {
                Step::Apply(new_orders, new_trades) => {
                    let mut changes = Changes::default();
                    for (c, s, client) in new_orders {
                        let id = u64::try_from(model.orders.len()).unwrap() + 1;
                        let mut o = order(id, c, SYMBOLS[s], OrderStatus::New, id * 10);
                        o.client_order_id = format!("client-{client}");
                        changes.orders.push(o.clone());
                        model.orders.push(o);
                    }
                    for (buyer, seller, s) in new_trades {
                        let id = u64::try_from(model.trades.len()).unwrap() + 1;
                        let t = trade(id, SYMBOLS[s], buyer, seller, id * 10, 100, 1, true);
                        changes.trades.push(t.clone());
                        model.trades.push(t);
                    }
                    store.apply(&changes)?;
                }
                Step::Index(limit) => {
                    store.index_history(limit)?;
                }
            }
            check(store.as_mut(), &model)?;
        }
    }
}

/// The attack the history file's provenance check refuses: an index built for another
/// store (or for a later state of this one) placed beside the store, e.g. by restoring
/// an older backup of `ztx.sqlite` next to a newer `ztx.sqlite-history`. It must never
/// show one customer another's orders, nor hide orders committed since.
#[test]
fn foreign_history_file_beside_a_restored_store_leaks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ztx.sqlite");
    let path = path.to_str().unwrap();
    let mut first = ztx_store::open(path).unwrap();
    let theirs: Vec<Order> = (1..=3)
        .map(|id| order(id, 1, "BTCUSDT", OrderStatus::New, id * 10))
        .collect();
    first
        .apply(&Changes {
            orders: theirs,
            ..Changes::default()
        })
        .unwrap();
    while first.index_history(100).unwrap() > 0 {}
    drop(first);
    // A different store in the same place, keeping the old history file.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{path}{suffix}"));
    }
    let mut store = ztx_store::open(path).unwrap();
    let ours: Vec<Order> = (1..=2)
        .map(|id| order(id, 2, "BTCUSDT", OrderStatus::New, id * 10))
        .collect();
    store
        .apply(&Changes {
            orders: ours.clone(),
            ..Changes::default()
        })
        .unwrap();
    let all = |store: &mut Box<dyn Store>, c: u64| {
        store
            .customer_scope(CustomerId(c))
            .unwrap()
            .orders("BTCUSDT", None, None, None, 100)
            .unwrap()
    };
    assert_eq!(
        all(&mut store, 1),
        Vec::<Order>::new(),
        "another store's orders"
    );
    assert_eq!(all(&mut store, 2), ours);
    let by_client = store
        .customer_scope(CustomerId(1))
        .unwrap()
        .order("BTCUSDT", &OrderQuery::ByClientId("client-1".into()))
        .unwrap();
    assert_eq!(by_client, None);
    while store.index_history(100).unwrap() > 0 {}
    assert_eq!(all(&mut store, 1), Vec::<Order>::new());
    assert_eq!(all(&mut store, 2), ours);
    assert_eq!(
        store.history_indexed_to().unwrap(),
        (OrderId(2), TradeId(0))
    );
}
