//! The order book's tests: priority, cancels, self-trade prevention, and that `simulate`
//! predicts `match_taker`.

use proptest::prelude::*;

use super::*;

/// One base unit per smallest unit, so every notional is exact, as `MarketSpec::new`
/// guarantees for real markets.
const SIZING: Sizing = Sizing {
    base_unit: 1,
    step: 1,
};

fn resting(id: u64, customer: u64, side: Side, price: u128, qty: u128) -> Resting {
    Resting {
        id: OrderId(id),
        customer: CustomerId(customer),
        side,
        price: Price::from_minor(price),
        remaining: Amount::from_minor(qty),
    }
}

fn taker(customer: u64, side: Side, limit: Option<u128>, qty: u128, stp: StpMode) -> Taker {
    Taker {
        customer: CustomerId(customer),
        side,
        limit: limit.map(Price::from_minor),
        qty: Amount::from_minor(qty),
        quote_budget: None,
        stp,
    }
}

fn fills(events: &[BookEvent]) -> Vec<(u64, u128)> {
    events
        .iter()
        .filter_map(|e| match e {
            BookEvent::Fill { maker, qty, .. } => Some((maker.id.0, qty.minor())),
            BookEvent::MakerExpired { .. } => None,
        })
        .collect()
}

#[test]
fn best_price_first_then_oldest_first() {
    let mut book = OrderBook::new();
    book.insert(resting(1, 1, Side::Sell, 101, 5)).unwrap();
    book.insert(resting(2, 1, Side::Sell, 100, 5)).unwrap();
    book.insert(resting(3, 2, Side::Sell, 100, 5)).unwrap();
    let mut events = Vec::new();
    let s = book
        .match_taker(
            &taker(9, Side::Buy, Some(101), 12, StpMode::None),
            SIZING,
            &mut events,
        )
        .unwrap();
    assert_eq!(fills(&events), vec![(2, 5), (3, 5), (1, 2)]);
    assert_eq!(s.filled_qty.minor(), 12);
    assert_eq!(s.filled_quote.minor(), 10 * 100 + 2 * 101);
    assert_eq!(book.get(OrderId(1)).unwrap().remaining.minor(), 3);
    assert_eq!(
        book.depth(Side::Sell, 10),
        vec![(Price::from_minor(101), Amount::from_minor(3))]
    );
}

#[test]
fn limit_price_stops_matching() {
    let mut book = OrderBook::new();
    book.insert(resting(1, 1, Side::Buy, 99, 5)).unwrap();
    book.insert(resting(2, 1, Side::Buy, 98, 5)).unwrap();
    let mut events = Vec::new();
    let s = book
        .match_taker(
            &taker(9, Side::Sell, Some(99), 8, StpMode::None),
            SIZING,
            &mut events,
        )
        .unwrap();
    assert_eq!(fills(&events), vec![(1, 5)]);
    assert_eq!(s.filled_qty.minor(), 5);
    assert_eq!(book.best_bid(), Some(Price::from_minor(98)));
}

#[test]
fn cancel_from_the_middle_keeps_the_queue() {
    let mut book = OrderBook::new();
    for id in 1..=3 {
        book.insert(resting(id, id, Side::Buy, 50, 1)).unwrap();
    }
    assert_eq!(book.remove(OrderId(2)).unwrap().id, OrderId(2));
    assert!(book.remove(OrderId(2)).is_none());
    let ids: Vec<u64> = book.orders().iter().map(|o| o.id.0).collect();
    assert_eq!(ids, vec![1, 3]);
    assert_eq!(
        book.depth(Side::Buy, 5),
        vec![(Price::from_minor(50), Amount::from_minor(2))]
    );
}

#[test]
fn reprice_loses_time_priority() {
    let mut book = OrderBook::new();
    book.insert(resting(1, 1, Side::Buy, 50, 1)).unwrap();
    book.insert(resting(2, 2, Side::Buy, 50, 1)).unwrap();
    book.reprice(OrderId(1), Price::from_minor(50)).unwrap();
    let ids: Vec<u64> = book.orders().iter().map(|o| o.id.0).collect();
    assert_eq!(ids, vec![2, 1]);
}

#[test]
fn duplicate_and_empty_orders_are_refused() {
    let mut book = OrderBook::new();
    book.insert(resting(1, 1, Side::Buy, 50, 1)).unwrap();
    assert_eq!(
        book.insert(resting(1, 1, Side::Buy, 51, 1)),
        Err(BookError::Duplicate(OrderId(1)))
    );
    assert_eq!(
        book.insert(resting(2, 1, Side::Buy, 51, 0)),
        Err(BookError::Empty(OrderId(2)))
    );
    assert_eq!(book.len(), 1);
}

fn self_trade_book() -> OrderBook {
    let mut book = OrderBook::new();
    book.insert(resting(1, 7, Side::Sell, 100, 5)).unwrap(); // the taker's own order
    book.insert(resting(2, 8, Side::Sell, 100, 5)).unwrap();
    book
}

#[test]
fn self_trade_expire_taker_stops_at_own_order() {
    let mut book = self_trade_book();
    let mut events = Vec::new();
    let s = book
        .match_taker(
            &taker(7, Side::Buy, Some(100), 10, StpMode::ExpireTaker),
            SIZING,
            &mut events,
        )
        .unwrap();
    assert!(s.taker_expired_by_stp);
    assert!(events.is_empty());
    assert_eq!(book.len(), 2, "the maker stays");
}

#[test]
fn self_trade_expire_maker_removes_own_order_and_continues() {
    let mut book = self_trade_book();
    let mut events = Vec::new();
    let s = book
        .match_taker(
            &taker(7, Side::Buy, Some(100), 10, StpMode::ExpireMaker),
            SIZING,
            &mut events,
        )
        .unwrap();
    assert!(!s.taker_expired_by_stp);
    assert!(matches!(events[0], BookEvent::MakerExpired { maker } if maker.id == OrderId(1)));
    assert_eq!(fills(&events), vec![(2, 5)]);
    assert!(book.is_empty());
}

#[test]
fn self_trade_expire_both_removes_maker_and_stops() {
    let mut book = self_trade_book();
    let mut events = Vec::new();
    let s = book
        .match_taker(
            &taker(7, Side::Buy, Some(100), 10, StpMode::ExpireBoth),
            SIZING,
            &mut events,
        )
        .unwrap();
    assert!(s.taker_expired_by_stp);
    assert_eq!(events.len(), 1);
    assert_eq!(book.len(), 1);
    assert!(book.get(OrderId(2)).is_some());
}

#[test]
fn self_trade_none_trades_with_itself() {
    let mut book = self_trade_book();
    let mut events = Vec::new();
    book.match_taker(
        &taker(7, Side::Buy, Some(100), 10, StpMode::None),
        SIZING,
        &mut events,
    )
    .unwrap();
    assert_eq!(fills(&events), vec![(1, 5), (2, 5)]);
}

#[test]
fn quote_budget_buys_whole_steps_only() {
    let mut book = OrderBook::new();
    book.insert(resting(1, 1, Side::Sell, 3, 10)).unwrap();
    let mut events = Vec::new();
    let t = Taker {
        quote_budget: Some(Amount::from_minor(10)),
        ..taker(2, Side::Buy, None, u128::MAX, StpMode::None)
    };
    let s = book.match_taker(&t, SIZING, &mut events).unwrap();
    // 10 quote at 3 a unit buys 3.33 → 3 whole steps costing 9.
    assert_eq!((s.filled_qty.minor(), s.filled_quote.minor()), (3, 9));
}

fn arb_book() -> impl Strategy<Value = Vec<(u64, bool, u128, u128)>> {
    proptest::collection::vec((0u64..3, any::<bool>(), 95u128..106, 1u128..20), 0..40)
}

proptest! {
    /// `simulate` predicts exactly what `match_taker` then does: fill-or-kill and market
    /// holds rely on it.
    #[test]
    fn simulate_predicts_match(
        orders in arb_book(),
        customer in 0u64..3,
        buy in any::<bool>(),
        limit in proptest::option::of(95u128..106),
        qty in 1u128..200,
        budget in proptest::option::of(1u128..400),
        stp in prop_oneof![Just(StpMode::None), Just(StpMode::ExpireTaker), Just(StpMode::ExpireMaker), Just(StpMode::ExpireBoth)],
    ) {
        let mut book = OrderBook::new();
        for (i, (c, is_buy, price, q)) in orders.iter().enumerate() {
            let side = if *is_buy { Side::Buy } else { Side::Sell };
            // Keep the book uncrossed, as matching keeps it.
            if book.would_cross(side, Price::from_minor(*price)) { continue; }
            book.insert(resting(i as u64 + 1, *c, side, *price, *q)).unwrap();
        }
        let side = if buy { Side::Buy } else { Side::Sell };
        let t = Taker { quote_budget: budget.map(Amount::from_minor), ..taker(customer, side, limit, qty, stp) };
        let predicted = book.simulate(&t, SIZING).unwrap();
        let before = book.len();
        let mut events = Vec::new();
        let actual = book.match_taker(&t, SIZING, &mut events).unwrap();
        prop_assert_eq!(predicted, actual);
        let total: u128 = fills(&events).iter().map(|(_, q)| q).sum();
        prop_assert_eq!(total, actual.filled_qty.minor());
        prop_assert!(book.len() <= before);
        if let (Some(bid), Some(ask)) = (book.best_bid(), book.best_ask()) {
            prop_assert!(bid < ask, "book left crossed");
        }
    }
}
