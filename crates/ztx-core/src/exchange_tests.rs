//! The exchange's tests: each order type, time in force and self-trade mode, refusals,
//! and properties over random command streams (conservation, exact holds, determinism,
//! restart).

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::ledger::PendingState;
use crate::market::MarketParams;
use crate::money::Asset;
use crate::order::StpMode;

fn code(s: &str) -> AssetCode {
    AssetCode::new(s).unwrap()
}

/// BTCUSDT with BTC at 8 decimals and USDT at 6: tick 0.01 USDT, step 0.0001 BTC, fees
/// 10 bps maker and 20 bps taker.
fn btcusdt() -> MarketSpec {
    let btc = Asset::new(code("BTC"), 8).unwrap();
    let usdt = Asset::new(code("USDT"), 6).unwrap();
    MarketSpec::new(MarketParams {
        symbol: "BTCUSDT".into(),
        base: btc,
        quote: usdt,
        tick_size: Price::from_minor(10_000),
        min_price: Price::from_minor(10_000),
        max_price: Price::from_minor(1_000_000_000_000),
        step_size: Amount::from_minor(10_000),
        min_qty: Amount::from_minor(10_000),
        max_qty: Amount::from_minor(100_000_000_000),
        min_notional: Amount::from_minor(1_000_000),
        max_notional: Amount::from_minor(10u128.pow(18)),
        maker_fee_bps: 10,
        taker_fee_bps: 20,
    })
    .unwrap()
}

fn usdt(whole: u128) -> Amount {
    Amount::from_minor(whole * 1_000_000)
}
fn btc_milli(milli: u128) -> Amount {
    Amount::from_minor(milli * 100_000)
}
fn price(whole: u128) -> Price {
    Price::from_minor(whole * 1_000_000)
}

struct World {
    ex: Exchange,
    changes: Changes,
    now: u64,
}

impl World {
    fn new() -> Self {
        let mut w = World {
            ex: Exchange::new(vec![btcusdt()]).unwrap(),
            changes: Changes::default(),
            now: 1_000,
        };
        for c in 1..=3 {
            w.deposit(c, "USDT", usdt(1_000_000));
            w.deposit(c, "BTC", btc_milli(100_000));
        }
        w
    }
    fn run(&mut self, cmd: Command) -> Result<Reply, ExchangeError> {
        self.now += 1;
        self.ex.execute(cmd, self.now, &mut self.changes)
    }
    fn deposit(&mut self, customer: u64, asset: &str, amount: Amount) {
        let id = TransferId(self.now as u128 * 1000 + customer as u128);
        self.run(Command::Deposit(Deposit {
            transfer_id: id,
            customer: CustomerId(customer),
            asset: code(asset),
            amount,
        }))
        .unwrap();
    }
    fn place(&mut self, o: NewOrder) -> Result<(Order, Vec<Trade>), ExchangeError> {
        match self.run(Command::Place(o))? {
            Reply::Placed { order, trades } => Ok((order, trades)),
            other => panic!("unexpected {other:?}"),
        }
    }
    fn bal(&self, customer: u64, asset: &str) -> Balances {
        self.ex.ledger().balances(&AccountKey::new(
            Owner::Customer(CustomerId(customer)),
            code(asset),
        ))
    }
}

fn limit(customer: u64, side: Side, p: u128, milli: u128, tif: TimeInForce) -> NewOrder {
    NewOrder {
        customer: CustomerId(customer),
        symbol: "BTCUSDT".into(),
        side,
        order_type: OrderType::Limit,
        time_in_force: Some(tif),
        price: Some(price(p)),
        quantity: Some(btc_milli(milli)),
        quote_order_qty: None,
        client_order_id: None,
        stp_mode: StpMode::ExpireMaker,
    }
}

fn market(customer: u64, side: Side, milli: Option<u128>, quote: Option<u128>) -> NewOrder {
    NewOrder {
        order_type: OrderType::Market,
        time_in_force: None,
        price: None,
        quantity: milli.map(btc_milli),
        quote_order_qty: quote.map(usdt),
        ..limit(customer, side, 0, 0, TimeInForce::Gtc)
    }
}

#[test]
fn resting_limit_order_holds_its_funds() {
    let mut w = World::new();
    let (o, trades) = w
        .place(limit(1, Side::Buy, 50_000, 100, TimeInForce::Gtc))
        .unwrap();
    assert_eq!(o.status, OrderStatus::New);
    assert!(trades.is_empty());
    // 0.1 BTC at 50,000 USDT = 5,000 USDT held.
    assert_eq!(w.bal(1, "USDT").held(), usdt(5_000));
    assert_eq!(w.bal(1, "USDT").available(), usdt(995_000));
}

#[test]
fn crossing_orders_trade_at_the_makers_price_with_fees_and_price_improvement() {
    let mut w = World::new();
    w.place(limit(1, Side::Sell, 50_000, 100, TimeInForce::Gtc))
        .unwrap();
    let (o, trades) = w
        .place(limit(2, Side::Buy, 51_000, 100, TimeInForce::Gtc))
        .unwrap();
    assert_eq!(o.status, OrderStatus::Filled);
    assert_eq!(trades.len(), 1);
    let t = &trades[0];
    assert_eq!(t.price, price(50_000));
    assert_eq!(t.quote_qty, usdt(5_000));
    assert!(!t.buyer_is_maker);
    // Buyer (taker, 20 bps) pays 0.0002 BTC; seller (maker, 10 bps) pays 5 USDT.
    assert_eq!(t.buyer_fee, Amount::from_minor(20_000));
    assert_eq!(t.seller_fee, usdt(5));
    // The buyer held 5,100 at its limit and was charged 5,000: the rest came back.
    assert_eq!(w.bal(2, "USDT").held(), Amount::ZERO);
    assert_eq!(w.bal(2, "USDT").available(), usdt(995_000));
    assert_eq!(
        w.bal(2, "BTC").available(),
        btc_milli(100_100)
            .checked_sub(Amount::from_minor(20_000))
            .unwrap()
    );
    assert_eq!(w.bal(1, "USDT").available(), usdt(1_004_995));
    assert_eq!(w.bal(1, "BTC").available(), btc_milli(99_900));
    let fees_btc =
        w.ex.ledger()
            .balances(&AccountKey::new(Owner::Fees, code("BTC")));
    assert_eq!(fees_btc.credits_posted, Amount::from_minor(20_000));
    let escrow =
        w.ex.ledger()
            .balances(&AccountKey::new(Owner::Escrow, code("USDT")));
    assert_eq!(escrow.net_posted(), 0, "escrow nets out after a trade");
}

#[test]
fn partial_fill_rests_the_remainder() {
    let mut w = World::new();
    w.place(limit(1, Side::Sell, 50_000, 30, TimeInForce::Gtc))
        .unwrap();
    let (o, _) = w
        .place(limit(2, Side::Buy, 50_000, 100, TimeInForce::Gtc))
        .unwrap();
    assert_eq!(o.status, OrderStatus::PartiallyFilled);
    assert_eq!(o.executed_qty, btc_milli(30));
    assert_eq!(w.bal(2, "USDT").held(), usdt(3_500));
    let (bids, asks) = w.ex.depth("BTCUSDT", 5).unwrap();
    assert_eq!(bids, vec![(price(50_000), btc_milli(70))]);
    assert!(asks.is_empty());
}

#[test]
fn ioc_expires_the_unfilled_rest_and_releases_its_hold() {
    let mut w = World::new();
    w.place(limit(1, Side::Sell, 50_000, 30, TimeInForce::Gtc))
        .unwrap();
    let (o, trades) = w
        .place(limit(2, Side::Buy, 50_000, 100, TimeInForce::Ioc))
        .unwrap();
    assert_eq!(o.status, OrderStatus::Expired);
    assert_eq!(trades.len(), 1);
    assert_eq!(w.bal(2, "USDT").held(), Amount::ZERO);
    assert_eq!(w.ex.open_order_count(), 0);
}

#[test]
fn fok_that_cannot_fill_completely_changes_nothing_but_its_record() {
    let mut w = World::new();
    w.place(limit(1, Side::Sell, 50_000, 30, TimeInForce::Gtc))
        .unwrap();
    let before = w.bal(2, "USDT");
    let (o, trades) = w
        .place(limit(2, Side::Buy, 50_000, 100, TimeInForce::Fok))
        .unwrap();
    assert_eq!(o.status, OrderStatus::Expired);
    assert!(trades.is_empty());
    assert_eq!(w.bal(2, "USDT"), before);
    assert_eq!(w.ex.open_order_count(), 1, "the maker is untouched");
    let (o, trades) = w
        .place(limit(2, Side::Buy, 50_000, 30, TimeInForce::Fok))
        .unwrap();
    assert_eq!((o.status, trades.len()), (OrderStatus::Filled, 1));
}

#[test]
fn limit_maker_that_would_take_is_rejected() {
    let mut w = World::new();
    w.place(limit(1, Side::Sell, 50_000, 30, TimeInForce::Gtc))
        .unwrap();
    let o = NewOrder {
        order_type: OrderType::LimitMaker,
        time_in_force: None,
        ..limit(2, Side::Buy, 50_000, 10, TimeInForce::Gtc)
    };
    assert_eq!(w.place(o.clone()), Err(ExchangeError::WouldTake));
    let resting = NewOrder {
        price: Some(price(49_000)),
        ..o
    };
    assert_eq!(w.place(resting).unwrap().0.status, OrderStatus::New);
}

#[test]
fn market_buy_by_quantity_walks_the_book() {
    let mut w = World::new();
    w.place(limit(1, Side::Sell, 50_000, 10, TimeInForce::Gtc))
        .unwrap();
    w.place(limit(1, Side::Sell, 51_000, 10, TimeInForce::Gtc))
        .unwrap();
    let (o, trades) = w.place(market(2, Side::Buy, Some(15), None)).unwrap();
    assert_eq!(o.status, OrderStatus::Filled);
    assert_eq!(trades.len(), 2);
    assert_eq!(o.cumulative_quote, usdt(500 + 255));
    assert_eq!(w.bal(2, "USDT").held(), Amount::ZERO);
    assert_eq!(w.bal(2, "USDT").available(), usdt(1_000_000 - 755));
}

#[test]
fn market_buy_by_quote_amount_spends_at_most_the_budget() {
    let mut w = World::new();
    w.place(limit(1, Side::Sell, 50_000, 100, TimeInForce::Gtc))
        .unwrap();
    let (o, _) = w.place(market(2, Side::Buy, None, Some(1_234))).unwrap();
    // 1,234 USDT at 50,000 buys 0.0246 BTC (whole steps of 0.0001) for 1,230 USDT.
    assert_eq!(o.executed_qty, Amount::from_minor(2_460_000));
    assert_eq!(o.cumulative_quote, usdt(1_230));
    assert_eq!(o.status, OrderStatus::Filled);
    assert_eq!(w.bal(2, "USDT").available(), usdt(1_000_000 - 1_230));
}

#[test]
fn market_order_on_an_empty_book_expires() {
    let mut w = World::new();
    let (o, trades) = w.place(market(2, Side::Sell, Some(10), None)).unwrap();
    assert_eq!((o.status, trades.len()), (OrderStatus::Expired, 0));
    assert_eq!(w.bal(2, "BTC").held(), Amount::ZERO);
}

#[test]
fn self_trade_prevention_modes() {
    for (mode, taker_status, maker_left) in [
        (StpMode::ExpireTaker, OrderStatus::ExpiredInMatch, 1),
        (StpMode::ExpireMaker, OrderStatus::New, 1),
        (StpMode::ExpireBoth, OrderStatus::ExpiredInMatch, 0),
    ] {
        let mut w = World::new();
        w.place(limit(1, Side::Sell, 50_000, 10, TimeInForce::Gtc))
            .unwrap();
        let o = NewOrder {
            stp_mode: mode,
            ..limit(1, Side::Buy, 50_000, 10, TimeInForce::Gtc)
        };
        let (order, trades) = w.place(o).unwrap();
        assert!(trades.is_empty(), "{mode:?}");
        assert_eq!(order.status, taker_status, "{mode:?}");
        assert_eq!(w.ex.open_order_count(), maker_left, "{mode:?}");
        let expected_hold = if mode == StpMode::ExpireMaker {
            usdt(500)
        } else {
            Amount::ZERO
        };
        assert_eq!(w.bal(1, "USDT").held(), expected_hold, "{mode:?}");
    }
}

#[test]
fn insufficient_balance_is_refused_and_changes_nothing() {
    let mut w = World::new();
    let before = w.changes.clone();
    let huge = limit(1, Side::Buy, 50_000, 100_000, TimeInForce::Gtc);
    assert_eq!(w.place(huge), Err(ExchangeError::InsufficientBalance));
    assert_eq!(w.changes, before);
    assert_eq!(w.ex.open_order_count(), 0);
}

#[test]
fn filters_refuse_off_tick_price_off_step_quantity_and_small_notional() {
    let mut w = World::new();
    let mut off_tick = limit(1, Side::Buy, 50_000, 10, TimeInForce::Gtc);
    off_tick.price = Some(Price::from_minor(50_000_000_001));
    assert_eq!(
        w.place(off_tick),
        Err(ExchangeError::Filter(FilterError::Price))
    );
    let mut off_step = limit(1, Side::Buy, 50_000, 10, TimeInForce::Gtc);
    off_step.quantity = Some(Amount::from_minor(1_000_001));
    assert_eq!(
        w.place(off_step),
        Err(ExchangeError::Filter(FilterError::LotSize))
    );
    let tiny = limit(1, Side::Buy, 1, 1, TimeInForce::Gtc); // 0.001 BTC at 1 USDT
    assert_eq!(
        w.place(tiny),
        Err(ExchangeError::Filter(FilterError::Notional))
    );
    let zero = NewOrder {
        quantity: Some(Amount::ZERO),
        ..limit(1, Side::Buy, 50_000, 1, TimeInForce::Gtc)
    };
    assert_eq!(
        w.place(zero),
        Err(ExchangeError::Filter(FilterError::LotSize))
    );
    assert_eq!(w.ex.open_order_count(), 0);
}

#[test]
fn cancel_releases_the_hold_and_unknown_orders_are_refused() {
    let mut w = World::new();
    let (o, _) = w
        .place(limit(1, Side::Buy, 50_000, 100, TimeInForce::Gtc))
        .unwrap();
    let other_customer = Command::Cancel {
        customer: CustomerId(2),
        symbol: "BTCUSDT".into(),
        target: OrderRef::Id(o.id),
    };
    assert_eq!(w.run(other_customer), Err(ExchangeError::UnknownOrder));
    let cancel = Command::Cancel {
        customer: CustomerId(1),
        symbol: "BTCUSDT".into(),
        target: OrderRef::ClientId(o.client_order_id.clone()),
    };
    let Reply::Canceled(c) = w.run(cancel.clone()).unwrap() else {
        panic!()
    };
    assert_eq!(c.status, OrderStatus::Canceled);
    assert_eq!(w.bal(1, "USDT").held(), Amount::ZERO);
    assert_eq!(w.run(cancel), Err(ExchangeError::UnknownOrder));
}

#[test]
fn duplicate_open_client_order_id_is_refused() {
    let mut w = World::new();
    let o = NewOrder {
        client_order_id: Some("bot-1".into()),
        ..limit(1, Side::Buy, 50_000, 10, TimeInForce::Gtc)
    };
    w.place(o.clone()).unwrap();
    assert_eq!(w.place(o), Err(ExchangeError::DuplicateClientOrderId));
}

#[test]
fn deposits_are_idempotent() {
    let mut w = World::new();
    let d = Deposit {
        transfer_id: TransferId(42),
        customer: CustomerId(3),
        asset: code("USDT"),
        amount: usdt(7),
    };
    w.run(Command::Deposit(d.clone())).unwrap();
    let Reply::Deposited { applied, .. } = w.run(Command::Deposit(d.clone())).unwrap() else {
        panic!()
    };
    assert_eq!(applied, Applied::AlreadyApplied);
    assert_eq!(w.bal(3, "USDT").available(), usdt(1_000_007));
    let changed = Deposit {
        amount: usdt(8),
        ..d
    };
    assert!(matches!(
        w.run(Command::Deposit(changed)),
        Err(ExchangeError::Deposit(_))
    ));
    let reserved = Deposit {
        transfer_id: TransferId(1 << 121),
        customer: CustomerId(3),
        asset: code("USDT"),
        amount: usdt(1),
    };
    assert_eq!(
        w.run(Command::Deposit(reserved)),
        Err(ExchangeError::ReservedTransferId)
    );
}

// ---- Properties over random command streams ----

fn arb_command() -> impl Strategy<Value = Command> {
    let side = prop_oneof![Just(Side::Buy), Just(Side::Sell)];
    let tif = prop_oneof![
        Just(TimeInForce::Gtc),
        Just(TimeInForce::Ioc),
        Just(TimeInForce::Fok)
    ];
    let stp = prop_oneof![
        Just(StpMode::None),
        Just(StpMode::ExpireTaker),
        Just(StpMode::ExpireMaker),
        Just(StpMode::ExpireBoth)
    ];
    let limit_order = (
        1u64..4,
        side.clone(),
        49_990u128..50_010,
        1u128..50,
        tif,
        stp.clone(),
    )
        .prop_map(|(c, s, p, q, t, stp)| {
            Command::Place(NewOrder {
                stp_mode: stp,
                ..limit(c, s, p, q, t)
            })
        });
    let maker = (1u64..4, side.clone(), 49_990u128..50_010, 1u128..50).prop_map(|(c, s, p, q)| {
        Command::Place(NewOrder {
            order_type: OrderType::LimitMaker,
            time_in_force: None,
            ..limit(c, s, p, q, TimeInForce::Gtc)
        })
    });
    let mkt =
        (1u64..4, side, 1u128..80, any::<bool>(), stp).prop_map(|(c, s, q, by_quote, stp)| {
            let o = if by_quote {
                market(c, s, None, Some(q * 100))
            } else {
                market(c, s, Some(q), None)
            };
            Command::Place(NewOrder { stp_mode: stp, ..o })
        });
    let cancel = (1u64..4, 1u64..40).prop_map(|(c, id)| Command::Cancel {
        customer: CustomerId(c),
        symbol: "BTCUSDT".into(),
        target: OrderRef::Id(OrderId(id)),
    });
    let cancel_all = (1u64..4).prop_map(|c| Command::CancelAll {
        customer: CustomerId(c),
        symbol: "BTCUSDT".into(),
    });
    prop_oneof![4 => limit_order, 1 => maker, 2 => mkt, 2 => cancel, 1 => cancel_all]
}

/// A minimal store: folds `Changes` the way the real stores do, then gives the state back.
fn fold(changes: &Changes) -> ExchangeState {
    let mut accounts = BTreeMap::new();
    let mut orders = BTreeMap::new();
    let mut pending_remaining = BTreeMap::new();
    for (k, b) in &changes.accounts {
        accounts.insert(*k, *b);
    }
    for o in &changes.orders {
        orders.insert(o.id, o.clone());
    }
    for (id, r) in &changes.pending {
        pending_remaining.insert(*id, *r);
    }
    let pending = changes
        .transfers
        .iter()
        .filter(|t| t.kind == TransferKind::Pending)
        .filter_map(|t| {
            let remaining = *pending_remaining.get(&t.id)?;
            (!remaining.is_zero()).then_some(PendingState {
                transfer: *t,
                remaining,
            })
        })
        .collect();
    ExchangeState {
        accounts: accounts.into_iter().collect(),
        transfers: changes.transfers.clone(),
        pending,
        open_orders: orders
            .values()
            .filter(|o| o.status.is_open())
            .cloned()
            .collect(),
        last_order_id: orders.keys().last().map_or(0, |id| id.0),
        last_trade_id: changes.trades.last().map_or(0, |t| t.id.0),
    }
}

fn check_invariants(w: &World, deposited: &BTreeMap<AssetCode, u128>) -> Result<(), TestCaseError> {
    let ledger = w.ex.ledger();
    for asset in w.ex.assets() {
        let accounts: Vec<_> = ledger
            .accounts()
            .filter(|(k, _)| k.asset == *asset)
            .collect();
        let net: i128 = accounts.iter().map(|(_, b)| b.net_posted()).sum();
        prop_assert_eq!(net, 0, "double entry for {}", asset);
        let inside: i128 = accounts
            .iter()
            .filter(|(k, _)| k.owner != Owner::External)
            .map(|(_, b)| b.net_posted())
            .sum();
        prop_assert_eq!(
            inside,
            *deposited.get(asset).unwrap_or(&0) as i128,
            "conservation of {}",
            asset
        );
        let escrow = ledger.balances(&AccountKey::new(Owner::Escrow, *asset));
        prop_assert_eq!(
            escrow.net_posted(),
            0,
            "escrow of {} nets out between commands",
            asset
        );
    }
    for (key, b) in ledger.accounts() {
        if key.owner != Owner::External {
            prop_assert!(
                b.debits_posted.minor() + b.debits_pending.minor() <= b.credits_posted.minor(),
                "negative balance {:?} {:?}",
                key,
                b
            );
        }
    }
    // Holds equal exactly what open orders may still spend; nothing else is held.
    let spec = btcusdt();
    let mut expected_holds = 0usize;
    for o in
        w.ex.open_orders(CustomerId(1), None)
            .into_iter()
            .chain(w.ex.open_orders(CustomerId(2), None))
            .chain(w.ex.open_orders(CustomerId(3), None))
    {
        let remaining = o.orig_qty.checked_sub(o.executed_qty).unwrap();
        let need = match o.side {
            Side::Buy => spec.notional(o.price.unwrap(), remaining).unwrap(),
            Side::Sell => remaining,
        };
        let held = ledger
            .pending(o.hold_id)
            .map(|p| p.remaining)
            .unwrap_or_default();
        prop_assert_eq!(held, need, "hold of {:?}", o.id);
        expected_holds += 1;
    }
    prop_assert_eq!(ledger.pending_transfers().count(), expected_holds);
    Ok(())
}

/// A store written before transfer ids ascended holds open orders whose holds have the
/// first layout (kind 1 on top, then the order id, then a leg byte). Restored, they fill
/// and cancel like any other, and what they release is new-layout ids beside them.
#[test]
fn holds_of_the_first_id_layout_fill_and_cancel_after_restore() {
    let mut live = World::new();
    let (filled, _) = live
        .place(limit(1, Side::Buy, 50_000, 200, TimeInForce::Gtc))
        .unwrap();
    let (canceled, _) = live
        .place(limit(1, Side::Buy, 49_000, 100, TimeInForce::Gtc))
        .unwrap();
    let mut state = fold(&live.changes);
    // A new-layout hold id's subject (its low 56 bits) is its order's id.
    let first_layout = |id: TransferId| -> TransferId {
        let order = id.0 & ((1u128 << 56) - 1);
        TransferId((1u128 << 120) | (order << 8))
    };
    for o in &mut state.open_orders {
        o.hold_id = first_layout(o.hold_id);
    }
    for p in &mut state.pending {
        p.transfer.id = first_layout(p.transfer.id);
    }
    for t in &mut state.transfers {
        if t.kind == TransferKind::Pending {
            t.id = first_layout(t.id);
        }
    }
    let mut w = World {
        ex: Exchange::restore(vec![btcusdt()], state).unwrap(),
        changes: Changes::default(),
        now: live.now,
    };
    let old_holds: Vec<TransferId> =
        w.ex.open_orders(CustomerId(1), None)
            .iter()
            .map(|o| o.hold_id)
            .collect();
    assert!(old_holds.iter().all(|id| id.0 >> 120 == 1), "{old_holds:?}");

    let (sell, trades) = w
        .place(limit(2, Side::Sell, 50_000, 200, TimeInForce::Gtc))
        .unwrap();
    assert_eq!(sell.status, OrderStatus::Filled);
    assert_eq!(trades.len(), 1);
    assert_eq!(trades[0].buy_order, filled.id);
    let cancel = Command::Cancel {
        customer: CustomerId(1),
        symbol: "BTCUSDT".into(),
        target: OrderRef::Id(canceled.id),
    };
    let Reply::Canceled(c) = w.run(cancel).unwrap() else {
        panic!()
    };
    assert_eq!(c.status, OrderStatus::Canceled);
    assert_eq!(w.bal(1, "USDT").held(), Amount::ZERO);
    assert!(
        old_holds
            .iter()
            .all(|id| w.ex.ledger().pending(*id).is_none())
    );
    let released: Vec<&Transfer> = w
        .changes
        .transfers
        .iter()
        .filter(|t| matches!(t.kind, TransferKind::VoidPending { pending_id } if old_holds.contains(&pending_id)))
        .collect();
    assert!(!released.is_empty());
    assert!(released.iter().all(|t| t.id.0 >> 120 == 4));
    let mut deposited = BTreeMap::new();
    deposited.insert(code("USDT"), 3 * usdt(1_000_000).minor());
    deposited.insert(code("BTC"), 3 * btc_milli(100_000).minor());
    check_invariants(&w, &deposited).unwrap();
}

proptest! {
    /// Invariant 2 through the exchange: conservation per asset, no negative balance,
    /// escrow nets out, and holds match open orders, after every command.
    #[test]
    fn trading_conserves_money_and_keeps_holds_exact(cmds in proptest::collection::vec(arb_command(), 1..60)) {
        let mut w = World::new();
        let mut deposited = BTreeMap::new();
        deposited.insert(code("USDT"), 3 * usdt(1_000_000).minor());
        deposited.insert(code("BTC"), 3 * btc_milli(100_000).minor());
        for cmd in cmds {
            match w.run(cmd) {
                Err(ExchangeError::Internal(e)) => prop_assert!(false, "internal error {}", e),
                _ => check_invariants(&w, &deposited)?,
            }
        }
    }

    /// Transfer ids: every transfer the exchange derives has an id never used before,
    /// and a command that places an order makes ids above every earlier command's, so the
    /// store appends them at one end of its B-tree.
    #[test]
    fn placing_commands_make_new_ascending_transfer_ids(cmds in proptest::collection::vec(arb_command(), 1..60)) {
        let mut w = World::new();
        let mut seen = std::collections::HashSet::new();
        let mut highest = w.changes.transfers.iter().map(|t| t.id).max();
        for cmd in cmds {
            let places = matches!(cmd, Command::Place(_));
            let before = w.changes.transfers.len();
            // A reused id would be refused by the ledger as an internal error.
            if let Err(ExchangeError::Internal(e)) = w.run(cmd) {
                prop_assert!(false, "internal error {}", e);
            }
            let made: Vec<TransferId> = w.changes.transfers[before..].iter().map(|t| t.id).collect();
            for id in &made {
                prop_assert!(seen.insert(*id), "transfer id {:#x} made twice", id.0);
                prop_assert_eq!(id.0 >> 120, 4, "engine ids carry the engine tag");
                if places {
                    prop_assert!(highest.is_none_or(|h| *id > h), "{:#x} not above {:?}", id.0, highest);
                }
            }
            if places {
                highest = made.iter().copied().max().or(highest);
            }
        }
    }

    /// Determinism: the same commands give the same replies and the same changes.
    #[test]
    fn same_commands_same_events(cmds in proptest::collection::vec(arb_command(), 1..60)) {
        let mut a = World::new();
        let mut b = World::new();
        for cmd in cmds {
            prop_assert_eq!(a.run(cmd.clone()), b.run(cmd));
        }
        prop_assert_eq!(a.changes, b.changes);
    }

    /// Restart: an exchange restored from the persisted changes behaves exactly like the
    /// one that never stopped.
    #[test]
    fn restored_exchange_continues_identically(
        before in proptest::collection::vec(arb_command(), 1..40),
        after in proptest::collection::vec(arb_command(), 1..40),
    ) {
        let mut live = World::new();
        for cmd in before {
            let _ = live.run(cmd);
        }
        let state = fold(&live.changes);
        let mut restored = World {
            ex: Exchange::restore(vec![btcusdt()], state).unwrap(),
            changes: Changes::default(),
            now: live.now,
        };
        let mut live_tail = World { ex: live.ex.clone(), changes: Changes::default(), now: live.now };
        for cmd in after {
            prop_assert_eq!(live_tail.run(cmd.clone()), restored.run(cmd));
        }
        prop_assert_eq!(live_tail.changes, restored.changes);
        for c in 1..=3 {
            prop_assert_eq!(live_tail.ex.balances(CustomerId(c)), restored.ex.balances(CustomerId(c)));
        }
        prop_assert_eq!(live_tail.ex.depth("BTCUSDT", 100), restored.ex.depth("BTCUSDT", 100));
    }
}

#[test]
fn market_sell_larger_than_the_balance_is_refused_even_on_a_thin_book() {
    let mut w = World::new();
    w.place(limit(1, Side::Buy, 50_000, 1, TimeInForce::Gtc))
        .unwrap();
    // Customer 2 holds 100 BTC; the book could only take 0.001 of it.
    let too_much = market(2, Side::Sell, Some(100_001), None);
    assert_eq!(w.place(too_much), Err(ExchangeError::InsufficientBalance));
}

#[test]
fn market_buy_for_more_quote_than_the_balance_is_refused_even_on_a_thin_book() {
    let mut w = World::new();
    w.place(limit(1, Side::Sell, 50_000, 1, TimeInForce::Gtc))
        .unwrap();
    let too_much = market(2, Side::Buy, None, Some(1_000_001));
    assert_eq!(w.place(too_much), Err(ExchangeError::InsufficientBalance));
    let (o, _) = w
        .place(market(2, Side::Buy, None, Some(1_000_000)))
        .unwrap();
    assert_eq!(
        o.status,
        OrderStatus::Expired,
        "the book ran out before the budget"
    );
    assert_eq!(
        w.bal(2, "USDT").held(),
        Amount::ZERO,
        "what was not spent is released"
    );
}

#[test]
fn malformed_client_order_id_is_named_as_such() {
    let mut w = World::new();
    for bad in ["", "has space", "x".repeat(37).as_str(), "emoji-🙂"] {
        let o = NewOrder {
            client_order_id: Some(bad.to_string()),
            ..limit(1, Side::Buy, 50_000, 10, TimeInForce::Gtc)
        };
        assert_eq!(
            w.place(o),
            Err(ExchangeError::MalformedParameter("newClientOrderId")),
            "{bad:?}"
        );
    }
    assert_eq!(w.ex.open_order_count(), 0);
}

/// An order or trade id past the 56 bits a derived transfer id has for it is refused as
/// an internal error (the engine then stops taking orders) rather than wrapped into an
/// id that could meet another.
#[test]
fn transfer_id_fields_past_56_bits_are_refused_not_wrapped() {
    let top = (1u64 << 56) - 1;
    assert!(derived_id(top, KIND_TRADE, top).is_ok());
    for (command, subject) in [(top + 1, 0), (1, top + 1), (u64::MAX, u64::MAX)] {
        assert!(matches!(
            derived_id(command, KIND_RELEASE, subject),
            Err(ExchangeError::Internal(_))
        ));
    }
    let a = derived_id(1, KIND_HOLD, 2).unwrap();
    let b = derived_id(2, KIND_HOLD, 1).unwrap();
    assert!(a < b, "the command's order decides the order of ids");
}
