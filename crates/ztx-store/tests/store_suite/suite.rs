//! The store behaviour every backend must show, written once against `&dyn Fixture`.

use ztx_core::{
    AccountKey, Amount, Balances, Changes, CustomerId, ExchangeState, OrderId, OrderStatus,
    OrderType, Owner, PendingState, Price, TradeId, TransferId, TransferKind,
};
use ztx_store::{ApiKeyCredential, InboxCommand, InboxId, Mode, NewApiKey, OrderQuery, StoreError};

use crate::common::*;

fn balances(seed: u128) -> Balances {
    Balances {
        debits_pending: Amount::from_minor(seed),
        debits_posted: Amount::from_minor(seed * 2),
        credits_pending: Amount::from_minor(seed * 3),
        credits_posted: Amount::from_minor(seed * 4),
    }
}

/// Two batches touching every table, and the state they must leave.
fn two_batches() -> (Changes, Changes, ExchangeState) {
    let hold = transfer(10, TransferKind::Pending, 500, 1);
    let other_hold = transfer(11, TransferKind::Pending, 40, 1);
    let post = transfer(
        12,
        TransferKind::PostPending {
            pending_id: TransferId(10),
        },
        100,
        2,
    );
    let huge_id = transfer(u128::MAX, TransferKind::Single, 1, 3);
    let void = transfer(
        13,
        TransferKind::VoidPending {
            pending_id: TransferId(11),
        },
        40,
        4,
    );
    let mut market = order(3, 2, "BTCUSDT", OrderStatus::New, 30);
    market.order_type = OrderType::Market;
    market.price = None;
    market.orig_quote_qty = Amount::MAX;
    let first = Changes {
        orders: vec![
            order(1, 1, "BTCUSDT", OrderStatus::New, 10),
            order(2, 1, "ETHUSDT", OrderStatus::PartiallyFilled, 20),
            market.clone(),
        ],
        trades: vec![trade(1, "BTCUSDT", 1, 2, 60_000, 30_000, 5, true)],
        transfers: vec![hold, other_hold, post, huge_id],
        accounts: vec![
            (customer_key(1, "USDT"), balances(1)),
            (AccountKey::new(Owner::Escrow, asset("USDT")), balances(2)),
            (customer_key(1, "USDT"), balances(3)),
            (
                AccountKey::new(Owner::External, asset("BTC")),
                balances(u128::MAX / 4),
            ),
        ],
        pending: vec![
            (TransferId(10), Amount::from_minor(400)),
            (TransferId(11), Amount::from_minor(40)),
        ],
    };
    let second = Changes {
        orders: vec![order(1, 1, "BTCUSDT", OrderStatus::Filled, 10)],
        trades: vec![trade(7, "BTCUSDT", 2, 1, 61_000, 30_001, 1, false)],
        transfers: vec![void],
        accounts: vec![(AccountKey::new(Owner::Fees, asset("BTC")), balances(9))],
        pending: vec![(TransferId(11), Amount::ZERO)],
    };
    let mut accounts = vec![
        (customer_key(1, "USDT"), balances(3)),
        (AccountKey::new(Owner::Escrow, asset("USDT")), balances(2)),
        (
            AccountKey::new(Owner::External, asset("BTC")),
            balances(u128::MAX / 4),
        ),
        (AccountKey::new(Owner::Fees, asset("BTC")), balances(9)),
    ];
    accounts.sort_by_key(|(k, _)| *k);
    let expected = ExchangeState {
        accounts,
        transfers: vec![hold, other_hold, post, void, huge_id],
        pending: vec![PendingState {
            transfer: hold,
            remaining: Amount::from_minor(400),
        }],
        open_orders: vec![
            market,
            order(2, 1, "ETHUSDT", OrderStatus::PartiallyFilled, 20),
        ],
        last_order_id: 3,
        last_trade_id: 7,
    };
    (first, second, expected)
}

pub fn apply_then_load_round_trips(fx: &dyn Fixture) {
    let mut store = fx.open();
    assert_eq!(store.load_state().unwrap(), ExchangeState::default());
    let (first, second, expected) = two_batches();
    store.apply(&first).unwrap();
    store.apply(&second).unwrap();
    store.apply(&Changes::default()).unwrap();
    assert_eq!(store.load_state().unwrap(), expected);
}

pub fn reopening_keeps_data_and_migrates_once(fx: &dyn Fixture) {
    let (first, second, expected) = two_batches();
    {
        let mut store = fx.open();
        store.init_mode(Mode::Development).unwrap();
        store.apply(&first).unwrap();
        store.apply(&second).unwrap();
    }
    for _ in 0..2 {
        let mut store = fx.open();
        assert_eq!(store.load_state().unwrap(), expected);
        assert_eq!(store.mode().unwrap(), Some(Mode::Development));
    }
}

/// `maintain` (SQLite's passive checkpoint) runs on its own connection while another
/// writes: nothing committed is lost or changed.
pub fn upkeep_alongside_writes_keeps_every_commit(fx: &dyn Fixture) {
    let (first, second, expected) = two_batches();
    let mut writer = fx.open();
    let mut upkeep = fx.open();
    writer.apply(&first).unwrap();
    upkeep.maintain().unwrap();
    writer.apply(&second).unwrap();
    upkeep.maintain().unwrap();
    upkeep.maintain().unwrap();
    drop(writer);
    assert_eq!(fx.open().load_state().unwrap(), expected);
}

pub fn mode_is_written_once(fx: &dyn Fixture) {
    let mut store = fx.open();
    assert_eq!(store.mode().unwrap(), None);
    store.init_mode(Mode::Production).unwrap();
    store.init_mode(Mode::Production).unwrap();
    match store.init_mode(Mode::Development) {
        Err(StoreError::ModeMismatch {
            stored: Mode::Production,
            requested: Mode::Development,
        }) => {}
        other => panic!("expected a mode mismatch, got {other:?}"),
    }
    assert_eq!(fx.open().mode().unwrap(), Some(Mode::Production));
}

pub fn duplicate_email_is_refused_and_changes_nothing(fx: &dyn Fixture) {
    let mut store = fx.open();
    let alice = ztx_store::testing::create_customer(&mut *store, "alice@example.com", 100).unwrap();
    let bob = ztx_store::testing::create_customer(&mut *store, "bob@example.com", 200).unwrap();
    assert_eq!((alice, bob), (CustomerId(1), CustomerId(2)));
    match ztx_store::testing::create_customer(&mut *store, "alice@example.com", 300) {
        Err(StoreError::DuplicateEmail) => {}
        other => panic!("expected DuplicateEmail, got {other:?}"),
    }
    assert!(!store.customer_exists(CustomerId(3)).unwrap());
    let record = store
        .customer_scope(alice)
        .unwrap()
        .customer()
        .unwrap()
        .unwrap();
    assert_eq!((record.email_sealed, record.created_ms), (true, 100));
    assert_eq!(
        store.sealed_email(alice).unwrap(),
        Some(ztx_store::StoredEmail::Sealed(
            ztx_store::testing::stand_in_sealed(alice)
        ))
    );
    assert!(store.customer_exists(bob).unwrap());
    assert_eq!(
        store
            .customer_scope(CustomerId(99))
            .unwrap()
            .customer()
            .unwrap(),
        None
    );
    assert_eq!(
        ztx_store::testing::create_customer(&mut *store, "carol@example.com", 400).unwrap(),
        CustomerId(3)
    );
}

pub fn api_keys_round_trip(fx: &dyn Fixture) {
    let mut store = fx.open();
    let owner = ztx_store::testing::create_customer(&mut *store, "keys@example.com", 1).unwrap();
    let hmac = NewApiKey {
        api_key: "pubkeyA".into(),
        customer: owner,
        credential: ApiKeyCredential::Hmac {
            secret_sealed: vec![0xde, 0xad, 0xbe, 0xef],
            data_key: Some(ztx_store::WrappedDataKey {
                kek_version: 3,
                wrapped: vec![0xfe, 0xed],
            }),
        },
        permissions: "read,trade".into(),
        ip_allowlist: "".into(),
        enabled: true,
        created_ms: 5,
    };
    let ed = NewApiKey {
        api_key: "pubkeyB".into(),
        credential: ApiKeyCredential::Ed25519 {
            public_key: [7; 32],
        },
        ip_allowlist: "127.0.0.1,10.0.0.1".into(),
        enabled: false,
        ..hmac.clone()
    };
    let a = store.create_api_key(&hmac).unwrap();
    let b = store.create_api_key(&ed).unwrap();
    assert!(a < b);
    let found = store.api_key_by_key("pubkeyA").unwrap().unwrap();
    assert_eq!(
        (found.id, &found.credential, found.enabled),
        (a, &hmac.credential, true)
    );
    assert!(
        !format!("{found:?}").contains("222, 173"),
        "sealed secret leaked into Debug"
    );
    let found = store.api_key_by_key("pubkeyB").unwrap().unwrap();
    assert_eq!(
        (
            &found.credential,
            found.ip_allowlist.as_str(),
            found.enabled
        ),
        (&ed.credential, "127.0.0.1,10.0.0.1", false)
    );
    assert_eq!(store.api_key_by_key("nope").unwrap(), None);
    let keys = store.customer_scope(owner).unwrap().api_keys().unwrap();
    assert_eq!(keys.iter().map(|k| k.id).collect::<Vec<_>>(), vec![a, b]);

    // A secret an older release sealed under the master key: no data key.
    let legacy = NewApiKey {
        api_key: "pubkeyC".into(),
        credential: ApiKeyCredential::Hmac {
            secret_sealed: vec![1, 2, 3],
            data_key: None,
        },
        ..hmac.clone()
    };
    let c = store.create_api_key(&legacy).unwrap();
    let status = store.key_status().unwrap();
    assert_eq!(
        (status.secret_keys, status.master_sealed_secrets),
        (vec![(3, 1)], 1)
    );
    // Listed for rotation to version 4: both HMAC keys, not the Ed25519 one.
    let listed = store
        .api_key_secrets(ztx_store::ApiKeyId(0), 4, 10)
        .unwrap();
    assert_eq!(listed.iter().map(|s| s.id).collect::<Vec<_>>(), vec![a, c]);
    assert_eq!(listed[1].data_key, None);
    // Already under version 3: only the legacy one.
    let listed = store
        .api_key_secrets(ztx_store::ApiKeyId(0), 3, 10)
        .unwrap();
    assert_eq!(listed.iter().map(|s| s.id).collect::<Vec<_>>(), vec![c]);
    let to_v4 = ztx_store::WrappedDataKey {
        kek_version: 4,
        wrapped: vec![4; 8],
    };
    let reseal = |id, from_version| ztx_store::SecretReseal {
        id,
        from_version,
        secret_sealed: vec![8; 8],
        data_key: to_v4.clone(),
    };
    // Each replaced only while it is still as it was read: a stale version changes nothing.
    assert_eq!(
        store
            .reseal_api_key_secrets(&[reseal(a, Some(2)), reseal(c, Some(3))])
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .reseal_api_key_secrets(&[reseal(a, Some(3)), reseal(c, None)])
            .unwrap(),
        2
    );
    assert_eq!(store.reseal_api_key_secrets(&[reseal(c, None)]).unwrap(), 0);
    let found = store.api_key_by_key("pubkeyC").unwrap().unwrap();
    assert_eq!(
        found.credential,
        ApiKeyCredential::Hmac {
            secret_sealed: vec![8; 8],
            data_key: Some(to_v4),
        }
    );
    let status = store.key_status().unwrap();
    assert_eq!(
        (status.secret_keys, status.master_sealed_secrets),
        (vec![(4, 2)], 0)
    );
    assert!(
        matches!(store.create_api_key(&hmac), Err(StoreError::DuplicateApiKey(k)) if k == "pubkeyA")
    );
    let stranger = NewApiKey {
        api_key: "pubkeyD".into(),
        customer: CustomerId(77),
        ..hmac
    };
    assert!(matches!(
        store.create_api_key(&stranger),
        Err(StoreError::UnknownCustomer(CustomerId(77)))
    ));
    assert_eq!(
        store
            .customer_scope(owner)
            .unwrap()
            .api_keys()
            .unwrap()
            .len(),
        3
    );
}

/// Orders of customers 1 and 2 in two markets; "client-2" is used twice (ids 2 and 9).
fn order_history() -> Vec<ztx_core::Order> {
    let mut orders = Vec::new();
    for id in 1..=6 {
        let status = if id % 3 == 0 {
            OrderStatus::Filled
        } else {
            OrderStatus::New
        };
        orders.push(order(id, 1, "BTCUSDT", status, id * 1000));
    }
    orders.push(order(7, 1, "ETHUSDT", OrderStatus::New, 7000));
    orders.push(order(8, 2, "BTCUSDT", OrderStatus::New, 8000));
    let mut same_client = order(9, 1, "BTCUSDT", OrderStatus::Canceled, 9000);
    same_client.client_order_id = "client-2".into();
    orders.push(same_client);
    orders
}

/// Trades among customers 1–3, with a self-trade (id 4).
fn trade_history() -> Vec<ztx_core::Trade> {
    vec![
        trade(1, "BTCUSDT", 1, 2, 1_000, 10, 1, true),
        trade(2, "BTCUSDT", 2, 1, 2_000, 11, 1, false),
        trade(3, "BTCUSDT", 2, 3, 3_000, 12, 1, true),
        trade(4, "BTCUSDT", 1, 1, 4_000, 13, 1, true),
        trade(5, "ETHUSDT", 1, 2, 5_000, 14, 1, true),
        trade(6, "BTCUSDT", 3, 1, 6_000, 15, 1, false),
    ]
}

/// Runs the history checks before any indexing, part-way (the older "client-2" indexed,
/// the newer in the tail), and after: reads are complete whether or not the
/// per-customer index has caught up.
fn check_history_at_every_indexing_point(store: &mut dyn ztx_store::Store) {
    let trades = trade_history();
    let check = |store: &mut dyn ztx_store::Store| {
        check_order_queries(store);
        check_trade_queries(store, &trades);
    };
    check(store);
    store.index_history(3).unwrap();
    check(store);
    while store.index_history(2).unwrap() > 0 {}
    check(store);
}

pub fn history_queries_follow_binance(fx: &dyn Fixture) {
    let mut store = fx.open();
    store
        .apply(&Changes {
            orders: order_history(),
            trades: trade_history(),
            ..Changes::default()
        })
        .unwrap();
    check_history_at_every_indexing_point(store.as_mut());
}

/// Indexers on several connections at once (two servers on one PostgreSQL database, or
/// an upkeep thread beside a tool) all succeed: each takes the history lock first, so
/// none reads a mark another is about to move and indexes the same rows again.
pub fn concurrent_indexers_all_succeed(fx: &dyn Fixture) {
    let orders = order_history();
    let trades = trade_history();
    let last = (
        orders.iter().map(|o| o.id).max().unwrap(),
        trades.iter().map(|t| t.id).max().unwrap(),
    );
    fx.open()
        .apply(&Changes {
            orders,
            trades,
            ..Changes::default()
        })
        .unwrap();
    let indexers: Vec<Box<dyn ztx_store::Store>> = (0..4).map(|_| fx.open()).collect();
    std::thread::scope(|scope| {
        for mut store in indexers {
            scope.spawn(move || {
                for _ in 0..40 {
                    store.index_history(1).unwrap();
                }
            });
        }
    });
    let mut store = fx.open();
    assert_eq!(store.history_indexed_to().unwrap(), last);
    check_history_at_every_indexing_point(store.as_mut());
}

/// A database written by schema version 1 (per-customer indexes on the tables
/// themselves) reads the same after the migration, before and after indexing.
pub fn version_one_history_is_complete_after_migrating(fx: &dyn Fixture) {
    let mut old = fx.open_at_version(1);
    old.apply(&Changes {
        orders: order_history(),
        trades: trade_history(),
        ..Changes::default()
    })
    .unwrap();
    drop(old);
    let mut store = fx.open();
    assert_eq!(
        store.history_indexed_to().unwrap(),
        (OrderId(0), TradeId(0))
    );
    check_history_at_every_indexing_point(store.as_mut());
    assert_eq!(
        store.history_indexed_to().unwrap(),
        (OrderId(9), TradeId(6))
    );
}

fn check_order_queries(store: &mut dyn ztx_store::Store) {
    let c1 = CustomerId(1);
    let ids = |v: Vec<ztx_core::Order>| v.into_iter().map(|o| o.id.0).collect::<Vec<_>>();

    let by_id = store
        .customer_scope(c1)
        .unwrap()
        .order("BTCUSDT", &OrderQuery::ById(OrderId(4)))
        .unwrap()
        .unwrap();
    assert_eq!(by_id, order(4, 1, "BTCUSDT", OrderStatus::New, 4000));
    assert_eq!(
        store
            .customer_scope(c1)
            .unwrap()
            .order("BTCUSDT", &OrderQuery::ById(OrderId(8)))
            .unwrap(),
        None,
        "another customer's order"
    );
    assert_eq!(
        store
            .customer_scope(c1)
            .unwrap()
            .order("ETHUSDT", &OrderQuery::ById(OrderId(4)))
            .unwrap(),
        None,
        "another market"
    );
    let by_client = store
        .customer_scope(c1)
        .unwrap()
        .order("BTCUSDT", &OrderQuery::ByClientId("client-2".into()))
        .unwrap();
    assert_eq!(
        by_client.map(|o| o.id),
        Some(OrderId(9)),
        "the most recent with that client id"
    );

    assert_eq!(
        ids(store
            .customer_scope(c1)
            .unwrap()
            .orders("BTCUSDT", None, None, None, 500)
            .unwrap()),
        vec![1, 2, 3, 4, 5, 6, 9]
    );
    assert_eq!(
        ids(store
            .customer_scope(c1)
            .unwrap()
            .orders("BTCUSDT", None, None, None, 3)
            .unwrap()),
        vec![5, 6, 9]
    );
    assert_eq!(
        ids(store
            .customer_scope(c1)
            .unwrap()
            .orders("BTCUSDT", Some(OrderId(3)), None, None, 2)
            .unwrap()),
        vec![3, 4]
    );
    assert_eq!(
        ids(store
            .customer_scope(c1)
            .unwrap()
            .orders("BTCUSDT", None, Some(2000), Some(4000), 10)
            .unwrap()),
        vec![2, 3, 4]
    );
    assert_eq!(
        ids(store
            .customer_scope(c1)
            .unwrap()
            .orders("BTCUSDT", None, None, None, 0)
            .unwrap()),
        Vec::<u64>::new()
    );

    assert_eq!(
        ids(store
            .customer_scope(c1)
            .unwrap()
            .open_orders(Some("BTCUSDT"))
            .unwrap()),
        vec![1, 2, 4, 5]
    );
    assert_eq!(
        ids(store.customer_scope(c1).unwrap().open_orders(None).unwrap()),
        vec![1, 2, 4, 5, 7]
    );
    assert_eq!(
        ids(store
            .customer_scope(CustomerId(3))
            .unwrap()
            .open_orders(None)
            .unwrap()),
        Vec::<u64>::new()
    );
}

fn check_trade_queries(store: &mut dyn ztx_store::Store, trades: &[ztx_core::Trade]) {
    let ids = |v: Vec<ztx_core::Trade>| v.into_iter().map(|t| t.id.0).collect::<Vec<_>>();
    let c1 = CustomerId(1);
    assert_eq!(
        ids(store
            .customer_scope(c1)
            .unwrap()
            .my_trades("BTCUSDT", None, None, None, 100)
            .unwrap()),
        vec![1, 2, 4, 6]
    );
    assert_eq!(
        ids(store
            .customer_scope(c1)
            .unwrap()
            .my_trades("BTCUSDT", None, None, None, 2)
            .unwrap()),
        vec![4, 6]
    );
    assert_eq!(
        ids(store
            .customer_scope(c1)
            .unwrap()
            .my_trades("BTCUSDT", Some(TradeId(2)), None, None, 2)
            .unwrap()),
        vec![2, 4]
    );
    assert_eq!(
        ids(store
            .customer_scope(c1)
            .unwrap()
            .my_trades("BTCUSDT", None, Some(1_500), Some(4_000), 10)
            .unwrap()),
        vec![2, 4]
    );
    assert_eq!(
        ids(store
            .customer_scope(c1)
            .unwrap()
            .my_trades("ETHUSDT", None, None, None, 10)
            .unwrap()),
        vec![5]
    );
    let full = store
        .customer_scope(CustomerId(3))
        .unwrap()
        .my_trades("BTCUSDT", None, None, None, 10)
        .unwrap();
    assert_eq!(full, vec![trades[2].clone(), trades[5].clone()]);
    assert_eq!(
        ids(store.recent_trades("BTCUSDT", 3).unwrap()),
        vec![3, 4, 6]
    );
    assert_eq!(
        ids(store.recent_trades("BTCUSDT", 100).unwrap()),
        vec![1, 2, 3, 4, 6]
    );
    assert_eq!(
        store.last_trade("BTCUSDT").unwrap(),
        Some(trades[5].clone())
    );
    assert_eq!(store.last_trade("XRPUSDT").unwrap(), None);
    let first = |store: &mut dyn ztx_store::Store, from| {
        store
            .first_trade_since("BTCUSDT", from)
            .unwrap()
            .map(|t| t.id.0)
    };
    assert_eq!(first(store, 0), Some(1));
    assert_eq!(first(store, 2_500), Some(3));
    assert_eq!(
        first(store, 4_001),
        Some(6),
        "the ETHUSDT trade between is not counted"
    );
    assert_eq!(first(store, 6_001), None);
}

pub fn candles_are_built_from_trades(fx: &dyn Fixture) {
    let mut store = fx.open();
    let batch = |trades| Changes {
        trades,
        ..Changes::default()
    };
    store
        .apply(&batch(vec![
            trade(1, "BTCUSDT", 1, 2, 60_000, 100, 2, false),
            trade(2, "BTCUSDT", 1, 2, 60_001, 120, 1, true),
            trade(3, "ETHUSDT", 1, 2, 60_002, 7, 1, true),
        ]))
        .unwrap();
    store
        .apply(&batch(vec![
            trade(4, "BTCUSDT", 1, 2, 119_999, 90, 3, false),
            trade(5, "BTCUSDT", 1, 2, 180_000, 95, 1, true),
        ]))
        .unwrap();
    let candles = store.candles("BTCUSDT", None, None, 100).unwrap();
    assert_eq!(candles.len(), 2);
    let c = candles[0];
    assert_eq!(c.open_ms, 60_000);
    assert_eq!(
        (c.open, c.high, c.low, c.close),
        (
            Price::from_minor(100),
            Price::from_minor(120),
            Price::from_minor(90),
            Price::from_minor(90)
        )
    );
    assert_eq!(
        (c.base_volume, c.quote_volume),
        (Amount::from_minor(6), Amount::from_minor(200 + 120 + 270))
    );
    assert_eq!(c.trade_count, 3);
    assert_eq!(
        (c.taker_buy_base_volume, c.taker_buy_quote_volume),
        (Amount::from_minor(5), Amount::from_minor(470))
    );
    assert_eq!(candles[1].open_ms, 180_000);
    assert_eq!(candles[1].trade_count, 1);
    assert_eq!(
        store.candles("BTCUSDT", None, None, 1).unwrap(),
        vec![candles[1]]
    );
    assert_eq!(
        store.candles("BTCUSDT", Some(0), None, 1).unwrap(),
        vec![candles[0]]
    );
    assert_eq!(
        store
            .candles("BTCUSDT", Some(60_001), Some(180_000), 10)
            .unwrap(),
        vec![candles[1]]
    );
    assert_eq!(store.candles("ETHUSDT", None, None, 10).unwrap().len(), 1);
}

pub fn inbox_queues_and_completes(fx: &dyn Fixture) {
    let mut store = fx.open();
    let c = ztx_store::testing::create_customer(&mut *store, "faucet@example.com", 1).unwrap();
    let a = store
        .enqueue_deposit(
            TransferId(1 << 100),
            c,
            asset("BTC"),
            Amount::from_minor(5),
            10,
        )
        .unwrap();
    let b = store
        .enqueue_deposit(TransferId(2), c, asset("USDT"), Amount::MAX, 11)
        .unwrap();
    let pending = store.pending_inbox(InboxId(0), 10).unwrap();
    assert_eq!(pending.iter().map(|i| i.id).collect::<Vec<_>>(), vec![a, b]);
    assert_eq!(
        pending[0].command,
        InboxCommand::Deposit {
            transfer_id: TransferId(1 << 100),
            customer: c,
            asset: asset("BTC"),
            amount: Amount::from_minor(5)
        }
    );
    assert_eq!(store.pending_inbox(InboxId(0), 1).unwrap().len(), 1);
    // A reader that has taken `a` and waits for its completion asks only for what follows.
    assert_eq!(
        store
            .pending_inbox(a, 10)
            .unwrap()
            .iter()
            .map(|i| i.id)
            .collect::<Vec<_>>(),
        vec![b]
    );
    assert!(store.pending_inbox(b, 10).unwrap().is_empty());
    store.complete_inbox(a, "credited", 20).unwrap();
    assert_eq!(
        store
            .pending_inbox(InboxId(0), 10)
            .unwrap()
            .iter()
            .map(|i| i.id)
            .collect::<Vec<_>>(),
        vec![b]
    );
    let done = store.inbox_item(a).unwrap().unwrap();
    let completion = done.completion.unwrap();
    assert_eq!(
        (completion.completed_ms, completion.result.as_str()),
        (20, "credited")
    );
    assert!(
        matches!(store.complete_inbox(a, "again", 21), Err(StoreError::InboxAlreadyCompleted(id)) if id == a)
    );
    assert!(matches!(
        store.complete_inbox(InboxId(99), "x", 21),
        Err(StoreError::UnknownInboxItem(InboxId(99)))
    ));
    assert_eq!(store.inbox_item(InboxId(99)).unwrap(), None);
    assert!(matches!(
        store.enqueue_deposit(
            TransferId(3),
            CustomerId(42),
            asset("BTC"),
            Amount::from_minor(1),
            1
        ),
        Err(StoreError::UnknownCustomer(CustomerId(42)))
    ));
}

pub fn failed_apply_changes_nothing(fx: &dyn Fixture) {
    let mut store = fx.open();
    let (first, _, _) = two_batches();
    store.apply(&first).unwrap();
    let before = store.load_state().unwrap();
    let candles_before = store.candles("BTCUSDT", None, None, 100).unwrap();
    let bad = Changes {
        orders: vec![order(50, 1, "BTCUSDT", OrderStatus::New, 1)],
        trades: vec![trade(60, "BTCUSDT", 1, 2, 60_500, 1, 1, true)],
        transfers: vec![
            transfer(70, TransferKind::Single, 1, 1),
            transfer(70, TransferKind::Single, 2, 1),
        ],
        accounts: vec![(customer_key(5, "BTC"), balances(1))],
        pending: vec![(TransferId(10), Amount::ZERO)],
    };
    assert!(matches!(
        store.apply(&bad),
        Err(StoreError::DuplicateTransfer(TransferId(70)))
    ));
    let already_stored = Changes {
        transfers: vec![transfer(10, TransferKind::Single, 1, 1)],
        ..bad.clone()
    };
    assert!(matches!(
        store.apply(&already_stored),
        Err(StoreError::DuplicateTransfer(TransferId(10)))
    ));
    let duplicate_trade = Changes {
        trades: vec![trade(1, "BTCUSDT", 1, 2, 1, 1, 1, true)],
        transfers: vec![],
        ..bad
    };
    assert!(matches!(
        store.apply(&duplicate_trade),
        Err(StoreError::DuplicateTrade(TradeId(1)))
    ));
    let too_big = Changes {
        orders: vec![order(u64::MAX, 1, "BTCUSDT", OrderStatus::New, 1)],
        ..Changes::default()
    };
    assert!(matches!(
        store.apply(&too_big),
        Err(StoreError::OutOfRange { .. })
    ));
    assert_eq!(store.load_state().unwrap(), before);
    assert_eq!(
        store.candles("BTCUSDT", None, None, 100).unwrap(),
        candles_before
    );
    // The store is still usable after the rollbacks.
    store
        .apply(&Changes {
            orders: vec![order(50, 1, "BTCUSDT", OrderStatus::New, 1)],
            ..Changes::default()
        })
        .unwrap();
    assert_eq!(store.load_state().unwrap().last_order_id, 50);
}

fn expect_corrupt<T: std::fmt::Debug>(result: Result<T, StoreError>, table: &str, column: &str) {
    match result {
        Err(StoreError::CorruptRow {
            table: t,
            column: c,
            ..
        }) if t == table && c == column => {}
        other => panic!("expected corrupt {table}.{column}, got {other:?}"),
    }
}

pub fn corrupt_rows_are_errors_not_panics(fx: &dyn Fixture) {
    let (first, _, _) = two_batches();
    fx.open().apply(&first).unwrap();
    fx.raw("UPDATE accounts SET credits_posted = '12abc' WHERE owner_kind = 'escrow'");
    expect_corrupt(fx.open().load_state(), "accounts", "credits_posted");
    fx.raw("UPDATE accounts SET credits_posted = '12' WHERE owner_kind = 'escrow'");
    fx.raw("UPDATE orders SET executed_qty = '-5' WHERE id = 2");
    expect_corrupt(
        fx.open()
            .customer_scope(CustomerId(1))
            .unwrap()
            .open_orders(None),
        "orders",
        "executed_qty",
    );
    fx.raw("UPDATE orders SET executed_qty = '5', side = 'SIDEWAYS' WHERE id = 2");
    expect_corrupt(fx.open().load_state(), "orders", "side");
    fx.raw("UPDATE orders SET side = 'BUY'; UPDATE trades SET time_ms = -1");
    expect_corrupt(fx.open().recent_trades("BTCUSDT", 5), "trades", "time_ms");
    fx.raw("UPDATE trades SET time_ms = 1; DELETE FROM transfers WHERE amount = '500'");
    expect_corrupt(fx.open().load_state(), "pending", "transfer_id");
}
