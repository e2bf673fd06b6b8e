//! Property: any sequence of batches of `Changes` applied to SQLite loads back as the
//! state a simple in-memory model predicts (last write wins, zero pending removed).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use ztx_core::{
    AccountKey, Amount, Balances, Changes, CustomerId, ExchangeState, Order, OrderId, OrderStatus,
    OrderType, Owner, PendingState, Price, Side, StpMode, TimeInForce, Trade, TradeId, Transfer,
    TransferCode, TransferId, TransferKind,
};

use crate::common::*;

const I64_MAX: u64 = i64::MAX as u64;

fn owner() -> impl Strategy<Value = Owner> {
    prop_oneof![
        (0..I64_MAX).prop_map(|id| Owner::Customer(CustomerId(id))),
        Just(Owner::Escrow),
        Just(Owner::Fees),
        Just(Owner::External),
    ]
}

fn account_key() -> impl Strategy<Value = AccountKey> {
    (
        owner(),
        prop::sample::select(vec![
            "BTC",
            "USDT",
            "ETH",
            "A1234567890"[..10].to_owned().leak() as &str,
        ]),
    )
        .prop_map(|(owner, code)| AccountKey::new(owner, asset(code)))
}

fn amount() -> impl Strategy<Value = Amount> {
    prop_oneof![any::<u128>(), 0u128..1000].prop_map(Amount::from_minor)
}

fn balances() -> impl Strategy<Value = Balances> {
    (amount(), amount(), amount(), amount()).prop_map(|(a, b, c, d)| Balances {
        debits_pending: a,
        debits_posted: b,
        credits_pending: c,
        credits_posted: d,
    })
}

fn transfer_body() -> impl Strategy<Value = Transfer> {
    let kind = prop_oneof![
        Just(TransferKind::Single),
        Just(TransferKind::Pending),
        any::<u128>().prop_map(|p| TransferKind::PostPending {
            pending_id: TransferId(p)
        }),
        any::<u128>().prop_map(|p| TransferKind::VoidPending {
            pending_id: TransferId(p)
        }),
    ];
    let code = prop::sample::select(vec![
        TransferCode::Deposit,
        TransferCode::OrderHold,
        TransferCode::Trade,
        TransferCode::Fee,
        TransferCode::HoldRelease,
    ]);
    (
        account_key(),
        account_key(),
        amount(),
        kind,
        code,
        0..I64_MAX,
    )
        .prop_map(
            |(debit, credit, amount, kind, code, timestamp_ms)| Transfer {
                id: TransferId(0),
                debit,
                credit,
                amount,
                kind,
                code,
                timestamp_ms,
            },
        )
}

fn order_strategy() -> impl Strategy<Value = Order> {
    let status = prop::sample::select(vec![
        OrderStatus::New,
        OrderStatus::PartiallyFilled,
        OrderStatus::Filled,
        OrderStatus::Canceled,
        OrderStatus::Rejected,
        OrderStatus::Expired,
        OrderStatus::ExpiredInMatch,
    ]);
    let enums = (
        prop::sample::select(vec![Side::Buy, Side::Sell]),
        prop::sample::select(vec![
            OrderType::Limit,
            OrderType::Market,
            OrderType::LimitMaker,
        ]),
        prop::sample::select(vec![TimeInForce::Gtc, TimeInForce::Ioc, TimeInForce::Fok]),
        prop::sample::select(vec![
            StpMode::None,
            StpMode::ExpireTaker,
            StpMode::ExpireMaker,
            StpMode::ExpireBoth,
        ]),
        status,
    );
    let numbers = (
        prop::option::of(any::<u128>().prop_map(Price::from_minor)),
        (amount(), amount(), amount(), amount()),
        any::<u128>(),
        (0..I64_MAX, 0..I64_MAX, 0..I64_MAX, 0..I64_MAX),
    );
    (
        1u64..40,
        prop::sample::select(vec!["BTCUSDT", "ETHUSDT", "ETHBTC"]),
        "[ -~]{0,36}",
        enums,
        numbers,
    )
        .prop_map(
            |(
                id,
                symbol,
                client,
                (side, order_type, tif, stp, status),
                (price, qty, hold, ints),
            )| Order {
                id: OrderId(id),
                symbol: symbol.into(),
                customer: CustomerId(ints.0),
                client_order_id: client,
                side,
                order_type,
                time_in_force: tif,
                stp_mode: stp,
                price,
                orig_qty: qty.0,
                orig_quote_qty: qty.1,
                executed_qty: qty.2,
                cumulative_quote: qty.3,
                status,
                hold_id: TransferId(hold),
                priority: ints.1,
                created_ms: ints.2,
                updated_ms: ints.3,
            },
        )
}

fn trade_body() -> impl Strategy<Value = Trade> {
    // Volumes stay below 2^100 so candle sums cannot overflow.
    let small = (0u128..1 << 100).prop_map(Amount::from_minor);
    (
        prop::sample::select(vec!["BTCUSDT", "ETHUSDT"]),
        (0u128..1 << 120).prop_map(Price::from_minor),
        (small.clone(), small.clone(), small.clone(), small),
        (0..I64_MAX, 0..I64_MAX, 0..I64_MAX, 0..I64_MAX),
        any::<bool>(),
        0u64..10_000_000_000_000,
    )
        .prop_map(
            |(symbol, price, (qty, quote, bf, sf), (bo, so, b, s), maker, time_ms)| Trade {
                id: TradeId(0),
                symbol: symbol.into(),
                price,
                qty,
                quote_qty: quote,
                buy_order: OrderId(bo),
                sell_order: OrderId(so),
                buyer: CustomerId(b),
                seller: CustomerId(s),
                buyer_is_maker: maker,
                buyer_fee: bf,
                buyer_fee_asset: asset("BTC"),
                seller_fee: sf,
                seller_fee_asset: asset("USDT"),
                time_ms,
            },
        )
}

/// One batch; `batch` keeps transfer and trade ids unique across batches.
fn changes(batch: u64) -> impl Strategy<Value = Changes> {
    (
        prop::collection::vec(order_strategy(), 0..8),
        prop::collection::vec(trade_body(), 0..6),
        prop::collection::btree_map(any::<u64>(), transfer_body(), 0..10),
        prop::collection::vec((account_key(), balances()), 0..8),
        prop::collection::vec(
            (any::<prop::sample::Index>(), amount(), any::<bool>()),
            0..8,
        ),
    )
        .prop_map(move |(orders, mut trades, transfers, accounts, pending)| {
            let transfers: Vec<Transfer> = transfers
                .into_iter()
                .map(|(id, t)| Transfer {
                    id: TransferId((u128::from(batch) << 64) | u128::from(id)),
                    ..t
                })
                .collect();
            for (i, t) in (0u64..).zip(trades.iter_mut()) {
                t.id = TradeId(batch * 1_000 + i + 1);
            }
            let pending = if transfers.is_empty() {
                Vec::new()
            } else {
                pending
                    .into_iter()
                    .map(|(index, remaining, finished)| {
                        let id = transfers[index.index(transfers.len())].id;
                        (id, if finished { Amount::ZERO } else { remaining })
                    })
                    .collect()
            };
            Changes {
                orders,
                trades,
                transfers,
                accounts,
                pending,
            }
        })
}

fn model(batches: &[Changes]) -> ExchangeState {
    let mut accounts = BTreeMap::new();
    let mut transfers = BTreeMap::new();
    let mut pending = BTreeMap::new();
    let mut orders = BTreeMap::new();
    let mut trade_ids = BTreeSet::new();
    for c in batches {
        accounts.extend(c.accounts.iter().copied());
        transfers.extend(c.transfers.iter().map(|t| (t.id, *t)));
        for (id, remaining) in &c.pending {
            if remaining.is_zero() {
                pending.remove(id);
            } else {
                pending.insert(*id, *remaining);
            }
        }
        orders.extend(c.orders.iter().map(|o| (o.id, o.clone())));
        trade_ids.extend(c.trades.iter().map(|t| t.id.0));
    }
    let mut open_orders: Vec<Order> = orders
        .values()
        .filter(|o| o.status.is_open())
        .cloned()
        .collect();
    open_orders.sort_by(|a, b| (&a.symbol, a.priority, a.id).cmp(&(&b.symbol, b.priority, b.id)));
    ExchangeState {
        accounts: accounts.into_iter().collect(),
        pending: pending
            .into_iter()
            .map(|(id, remaining)| PendingState {
                transfer: transfers[&id],
                remaining,
            })
            .collect(),
        transfers: transfers.into_values().collect(),
        open_orders,
        last_order_id: orders.keys().last().map_or(0, |id| id.0),
        last_trade_id: trade_ids.last().copied().unwrap_or(0),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_changes_round_trip_through_sqlite(
        a in changes(1), b in changes(2), c in changes(3)
    ) {
        let fixture = SqliteFixture::new();
        let mut store = fixture.open();
        let batches = [a, b, c];
        for batch in &batches {
            store.apply(batch).unwrap();
        }
        prop_assert_eq!(store.load_state().unwrap(), model(&batches));
        prop_assert_eq!(fixture.open().load_state().unwrap(), model(&batches));
    }
}
