//! The two engines behind one small trait, each driven the most direct way its API offers.
//!
//! ztx (`ztx_core::book::OrderBook`, the matching engine alone — no ledger, no fees):
//! GTC = `match_taker` then `insert` of what is left; IOC = `match_taker`; cancel =
//! `remove`; move = `remove`, then `match_taker` at the new price with the same id and the
//! remaining quantity, then `insert` of what is left (exchange-core `MoveOrder`). One
//! `events` buffer is reused; `Sizing { base_unit: 1, step: 1 }`, STP off.
//!
//! orderbook-rs 0.15 (`OrderBook<()>` from `OrderBook::new`, as its own HDR benches build
//! it: no trade or price-level listener, no risk layer, no fees, no STP, no order-state
//! tracker, default wall clock): GTC and IOC = `add_limit_order_with_user` with
//! `TimeInForce::Gtc` / `Ioc`; cancel = `cancel_order`; move = `update_order(OrderUpdate::
//! UpdatePrice)`, which the crate implements as cancel + re-add of the remaining quantity
//! with the same id at the new price, matching first — the same semantics as ztx's move.
//! A second variant, [`ObMove::CancelAdd`], does the move as `cancel_order` then
//! `add_limit_order_with_user` (GTC, same id, side and user, the remaining quantity the
//! cancel returned, the new price): the same semantics without `update_order`'s extra work
//! (it looks the order up by scanning its price level).
//! Its API takes `&self` (a concurrent book with internal gates); everything here runs on
//! one thread. Fills are not visible from the timed calls (an IOC that does not fill
//! completely returns `Err(InsufficientLiquidity)` and its fills go only to a listener), so
//! fills are counted in a separate check run with a trade listener installed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use orderbook_rs::{OrderBook as ObBook, OrderBookError, TradeResult};
use pricelevel::{Hash32, Id, OrderUpdate, Price as ObPrice, TimeInForce};
use ztx_core::book::{BookError, BookEvent, OrderBook, Resting, Sizing, Taker};
use ztx_core::{Amount, CustomerId, OrderId, Price, Side, StpMode};

use super::workload::{CUSTOMERS, Op, OpKind};

/// Integer prices and quantities: notionals are exact `price × qty`.
const SIZING: Sizing = Sizing {
    base_unit: 1,
    step: 1,
};

/// What one run of an engine did, for checking that both did the same work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Maker fills (one per maker order touched), i.e. trades.
    pub fills: u64,
    /// Base quantity traded.
    pub filled_qty: u128,
    /// Cancels or moves whose target was not resting.
    pub misses: u64,
    /// Calls refused other than the expected IOC `InsufficientLiquidity`.
    pub errors: u64,
}

/// One matching engine, driven op by op.
pub trait Engine {
    /// Applies one operation; failures are counted, not returned (the hot loop stays flat).
    fn apply(&mut self, op: &Op);
    /// What the runs so far did; fills may be 0 where the engine cannot see them cheaply.
    fn tally(&self) -> Tally;
    /// Resting orders now (may be slow: called outside timed regions).
    fn resting(&self) -> usize;
}

/// What [`ztx_apply`] did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Applied {
    pub fills: u64,
    pub filled_qty: u128,
    pub missed: bool,
}

/// Matches `taker` and rests what is left as `order` (with `remaining` replaced).
fn ztx_match_and_rest(
    book: &mut OrderBook,
    events: &mut Vec<BookEvent>,
    taker: &Taker,
    mut order: Resting,
) -> Result<Applied, BookError> {
    let summary = book.match_taker(taker, SIZING, events)?;
    let left = taker.qty.saturating_sub(summary.filled_qty);
    if !left.is_zero() {
        order.remaining = left;
        book.insert(order)?;
    }
    Ok(Applied {
        fills: events.len() as u64,
        filled_qty: summary.filled_qty.minor(),
        missed: false,
    })
}

/// Applies `op` to a ztx book. Shared by the timed engine and the workload generator's
/// model book, so both follow one definition of the four operations.
#[inline]
pub fn ztx_apply(
    book: &mut OrderBook,
    events: &mut Vec<BookEvent>,
    op: &Op,
) -> Result<Applied, BookError> {
    events.clear();
    match op.kind {
        OpKind::Gtc | OpKind::Ioc => {
            let customer = CustomerId(u64::from(op.customer));
            let taker = Taker {
                customer,
                side: op.side,
                limit: Some(Price::from_minor(u128::from(op.price))),
                qty: Amount::from_minor(u128::from(op.qty)),
                quote_budget: None,
                stp: StpMode::None,
            };
            if op.kind == OpKind::Ioc {
                let summary = book.match_taker(&taker, SIZING, events)?;
                return Ok(Applied {
                    fills: events.len() as u64,
                    filled_qty: summary.filled_qty.minor(),
                    missed: false,
                });
            }
            let order = Resting {
                id: OrderId(op.id),
                customer,
                side: taker.side,
                price: Price::from_minor(u128::from(op.price)),
                remaining: taker.qty,
            };
            ztx_match_and_rest(book, events, &taker, order)
        }
        OpKind::Cancel => Ok(Applied {
            missed: book.remove(OrderId(op.id)).is_none(),
            ..Applied::default()
        }),
        OpKind::Move => {
            let Some(mut order) = book.remove(OrderId(op.id)) else {
                return Ok(Applied {
                    missed: true,
                    ..Applied::default()
                });
            };
            order.price = Price::from_minor(u128::from(op.price));
            let taker = Taker {
                customer: order.customer,
                side: order.side,
                limit: Some(order.price),
                qty: order.remaining,
                quote_budget: None,
                stp: StpMode::None,
            };
            ztx_match_and_rest(book, events, &taker, order)
        }
    }
}

/// The ztx matching engine alone.
#[derive(Debug, Default)]
pub struct Ztx {
    book: OrderBook,
    events: Vec<BookEvent>,
    tally: Tally,
}

impl Ztx {
    pub fn new() -> Self {
        Self {
            book: OrderBook::new(),
            events: Vec::with_capacity(64),
            tally: Tally::default(),
        }
    }
}

impl Engine for Ztx {
    #[inline]
    fn apply(&mut self, op: &Op) {
        match ztx_apply(&mut self.book, &mut self.events, op) {
            Ok(applied) => {
                self.tally.fills += applied.fills;
                self.tally.filled_qty += applied.filled_qty;
                self.tally.misses += u64::from(applied.missed);
            }
            Err(_) => self.tally.errors += 1,
        }
    }

    fn tally(&self) -> Tally {
        self.tally
    }

    fn resting(&self) -> usize {
        self.book.len()
    }
}

/// Counts what the trade listener of an orderbook-rs book reports.
#[derive(Debug, Default)]
struct TradeCounter {
    fills: AtomicU64,
    filled_qty: AtomicU64,
}

/// How the orderbook-rs engine does a move.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObMove {
    /// `update_order(OrderUpdate::UpdatePrice)`: the crate's own re-price.
    UpdatePrice,
    /// `cancel_order`, then `add_limit_order_with_user` of the remainder at the new price.
    CancelAdd,
}

/// The orderbook-rs crate's `OrderBook<()>`.
pub struct OrderbookRs {
    book: ObBook<()>,
    move_mode: ObMove,
    users: Vec<Hash32>,
    tally: Tally,
    counter: Option<Arc<TradeCounter>>,
}

impl std::fmt::Debug for OrderbookRs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderbookRs")
            .field("tally", &self.tally)
            .finish_non_exhaustive()
    }
}

impl OrderbookRs {
    /// A book as orderbook-rs's own benches build it: nothing attached.
    pub fn new(move_mode: ObMove) -> Self {
        let users = (0..CUSTOMERS)
            .map(|c| {
                let mut bytes = [0u8; 32];
                for (b, v) in bytes.iter_mut().zip((c + 1).to_le_bytes()) {
                    *b = v;
                }
                Hash32::new(bytes)
            })
            .collect();
        Self {
            book: ObBook::<()>::new("BENCH"),
            move_mode,
            users,
            tally: Tally::default(),
            counter: None,
        }
    }

    /// A book with a trade listener that counts fills: for the untimed check run only.
    pub fn counting(move_mode: ObMove) -> Self {
        let mut engine = Self::new(move_mode);
        let counter = Arc::new(TradeCounter::default());
        let sink = Arc::clone(&counter);
        engine
            .book
            .set_trade_listener(Arc::new(move |result: &TradeResult| {
                let trades = result.match_result.trades().as_vec();
                let qty: u64 = trades.iter().map(|t| t.quantity().as_u64()).sum();
                sink.fills.fetch_add(trades.len() as u64, Ordering::Relaxed);
                sink.filled_qty.fetch_add(qty, Ordering::Relaxed);
            }));
        engine.counter = Some(counter);
        engine
    }

    fn side(side: Side) -> pricelevel::Side {
        match side {
            Side::Buy => pricelevel::Side::Buy,
            Side::Sell => pricelevel::Side::Sell,
        }
    }
}

impl Engine for OrderbookRs {
    #[inline]
    fn apply(&mut self, op: &Op) {
        let id = Id::from_u64(op.id);
        let failed = match op.kind {
            OpKind::Gtc | OpKind::Ioc => {
                let tif = if op.kind == OpKind::Gtc {
                    TimeInForce::Gtc
                } else {
                    TimeInForce::Ioc
                };
                let user = self
                    .users
                    .get(usize::from(op.customer))
                    .copied()
                    .unwrap_or_else(Hash32::zero);
                match self.book.add_limit_order_with_user(
                    id,
                    u128::from(op.price),
                    op.qty,
                    Self::side(op.side),
                    tif,
                    user,
                    None,
                ) {
                    Ok(order) => {
                        std::hint::black_box(order);
                        false
                    }
                    // An IOC that did not fill completely: expected, its rest is dropped.
                    Err(OrderBookError::InsufficientLiquidity { .. }) => op.kind == OpKind::Gtc,
                    Err(_) => true,
                }
            }
            OpKind::Cancel => match self.book.cancel_order(id) {
                Ok(Some(order)) => {
                    std::hint::black_box(order);
                    false
                }
                Ok(None) => {
                    self.tally.misses += 1;
                    false
                }
                Err(_) => true,
            },
            OpKind::Move if self.move_mode == ObMove::UpdatePrice => {
                match self.book.update_order(OrderUpdate::UpdatePrice {
                    order_id: id,
                    new_price: ObPrice::new(u128::from(op.price)),
                }) {
                    Ok(Some(order)) => {
                        std::hint::black_box(order);
                        false
                    }
                    Ok(None) => {
                        self.tally.misses += 1;
                        false
                    }
                    Err(_) => true,
                }
            }
            OpKind::Move => match self.book.cancel_order(id) {
                Ok(Some(old)) => {
                    let added = self.book.add_limit_order_with_user(
                        id,
                        u128::from(op.price),
                        old.visible_quantity().as_u64(),
                        old.side(),
                        TimeInForce::Gtc,
                        old.user_id(),
                        None,
                    );
                    match added {
                        Ok(order) => {
                            std::hint::black_box(order);
                            false
                        }
                        Err(_) => true,
                    }
                }
                Ok(None) => {
                    self.tally.misses += 1;
                    false
                }
                Err(_) => true,
            },
        };
        self.tally.errors += u64::from(failed);
    }

    fn tally(&self) -> Tally {
        let mut tally = self.tally;
        if let Some(counter) = &self.counter {
            tally.fills = counter.fills.load(Ordering::Relaxed);
            tally.filled_qty = u128::from(counter.filled_qty.load(Ordering::Relaxed));
        }
        tally
    }

    fn resting(&self) -> usize {
        self.book.get_all_orders().len()
    }
}
