//! One market's order book: price-time priority matching, nothing else. It knows no
//! balances and no fees; the exchange settles what it reports. Resting orders live in a
//! slab and form one FIFO list per price level (intrusive, so a cancel is O(1)); levels sit
//! in ordered maps, so the best price is the first or last key.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use crate::ledger::CustomerId;
use crate::money::{Amount, Price};
use crate::order::{OrderId, Side, StpMode};

const NIL: u32 = u32::MAX;

/// An order resting in the book.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resting {
    pub id: OrderId,
    pub customer: CustomerId,
    pub side: Side,
    pub price: Price,
    pub remaining: Amount,
}

impl Resting {
    /// The book's view of an order resting at `price` with `remaining` left.
    pub fn of(order: &crate::order::Order, price: Price, remaining: Amount) -> Resting {
        Resting {
            id: order.id,
            customer: order.customer,
            side: order.side,
            price,
            remaining,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Node {
    order: Resting,
    prev: u32,
    next: u32,
}

#[derive(Clone, Copy, Debug)]
struct Level {
    head: u32,
    tail: u32,
    total: Amount,
    count: u32,
}

/// What an incoming (taker) order asks of the book.
#[derive(Clone, Copy, Debug)]
pub struct Taker {
    pub customer: CustomerId,
    pub side: Side,
    /// The worst price the taker accepts; `None` for a market order.
    pub limit: Option<Price>,
    /// The most base quantity to trade.
    pub qty: Amount,
    /// For a market order by quote amount: the most quote to spend (buy) or receive (sell).
    pub quote_budget: Option<Amount>,
    pub stp: StpMode,
}

/// How quote amounts are computed: the base asset's unit and the lot step.
#[derive(Clone, Copy, Debug)]
pub struct Sizing {
    pub base_unit: u128,
    pub step: u128,
}

impl Sizing {
    /// `price × qty` in quote units (exact for prices on the tick and quantities on the step).
    pub fn notional(&self, price: Price, qty: Amount) -> Option<Amount> {
        let product = price.minor().checked_mul(qty.minor())?;
        Some(Amount::from_minor(product / self.base_unit))
    }
    /// The largest quantity on the step whose notional at `price` is at most `quote`.
    pub fn qty_for_quote(&self, price: Price, quote: Amount) -> Option<Amount> {
        if price.minor() == 0 || self.step == 0 {
            return None;
        }
        let raw = quote.minor().checked_mul(self.base_unit)? / price.minor();
        Some(Amount::from_minor(raw - raw % self.step))
    }
}

/// What happened to resting orders while a taker matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BookEvent {
    /// The maker traded `qty` at its own price; `maker_remaining` is what is left resting.
    Fill {
        maker: Resting,
        qty: Amount,
        quote: Amount,
        maker_remaining: Amount,
    },
    /// Self-trade prevention removed the maker with `remaining` unfilled.
    MakerExpired { maker: Resting },
}

/// How matching ended for the taker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MatchSummary {
    pub filled_qty: Amount,
    pub filled_quote: Amount,
    /// Self-trade prevention expired the taker (EXPIRE_TAKER or EXPIRE_BOTH).
    pub taker_expired_by_stp: bool,
}

/// One market's book.
#[derive(Debug, Default, Clone)]
pub struct OrderBook {
    nodes: Vec<Node>,
    free: Vec<u32>,
    index: FxHashMap<OrderId, u32>,
    bids: BTreeMap<Price, Level>,
    asks: BTreeMap<Price, Level>,
}

/// A book operation that cannot be done; the book is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BookError {
    #[error("order {0:?} is already in the book")]
    Duplicate(OrderId),
    #[error("order {0:?} has nothing to rest")]
    Empty(OrderId),
    #[error("the book is full")]
    Full,
    #[error("arithmetic overflow")]
    Overflow,
}

impl OrderBook {
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of resting orders.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn get(&self, id: OrderId) -> Option<Resting> {
        let slot = *self.index.get(&id)?;
        self.nodes.get(slot as usize).map(|n| n.order)
    }

    pub fn best_bid(&self) -> Option<Price> {
        self.bids.last_key_value().map(|(p, _)| *p)
    }

    pub fn best_ask(&self) -> Option<Price> {
        self.asks.first_key_value().map(|(p, _)| *p)
    }

    /// Aggregated levels, best first: `(price, total quantity)`, at most `limit` of them.
    pub fn depth(&self, side: Side, limit: usize) -> Vec<(Price, Amount)> {
        let view = |(p, l): (&Price, &Level)| (*p, l.total);
        match side {
            Side::Buy => self.bids.iter().rev().take(limit).map(view).collect(),
            Side::Sell => self.asks.iter().take(limit).map(view).collect(),
        }
    }

    /// Whether a limit order at `price` on `side` would trade on arrival.
    pub fn would_cross(&self, side: Side, price: Price) -> bool {
        match side {
            Side::Buy => self.best_ask().is_some_and(|ask| ask <= price),
            Side::Sell => self.best_bid().is_some_and(|bid| bid >= price),
        }
    }

    /// Puts an order at the back of its price level.
    pub fn insert(&mut self, order: Resting) -> Result<(), BookError> {
        if order.remaining.is_zero() {
            return Err(BookError::Empty(order.id));
        }
        if self.index.contains_key(&order.id) {
            return Err(BookError::Duplicate(order.id));
        }
        let node = Node {
            order,
            prev: NIL,
            next: NIL,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                if let Some(n) = self.nodes.get_mut(slot as usize) {
                    *n = node;
                }
                slot
            }
            None => {
                let slot = u32::try_from(self.nodes.len()).map_err(|_| BookError::Full)?;
                if slot == NIL {
                    return Err(BookError::Full);
                }
                self.nodes.push(node);
                slot
            }
        };
        let levels = match order.side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        };
        let level = levels.entry(order.price).or_insert(Level {
            head: NIL,
            tail: NIL,
            total: Amount::ZERO,
            count: 0,
        });
        let total = level.total.checked_add(order.remaining);
        let Some(total) = total else {
            self.free.push(slot);
            if level.count == 0 {
                levels.remove(&order.price);
            }
            return Err(BookError::Overflow);
        };
        let old_tail = level.tail;
        level.total = total;
        level.count += 1;
        level.tail = slot;
        if old_tail == NIL {
            level.head = slot;
        }
        if let Some(n) = self.nodes.get_mut(slot as usize) {
            n.prev = old_tail;
        }
        if let Some(t) = self.nodes.get_mut(old_tail as usize) {
            t.next = slot;
        }
        self.index.insert(order.id, slot);
        Ok(())
    }

    /// Removes an order; returns it as it was.
    pub fn remove(&mut self, id: OrderId) -> Option<Resting> {
        let slot = self.index.remove(&id)?;
        let node = *self.nodes.get(slot as usize)?;
        self.unlink(slot, node);
        Some(node.order)
    }

    /// Moves an order to a new price (or the same price) at the back of that level; it
    /// loses its time priority. Returns the order as moved. The caller decides whether the
    /// new price crosses; this never matches.
    pub fn reprice(&mut self, id: OrderId, price: Price) -> Result<Option<Resting>, BookError> {
        let Some(mut order) = self.remove(id) else {
            return Ok(None);
        };
        order.price = price;
        self.insert(order)?;
        Ok(Some(order))
    }

    fn unlink(&mut self, slot: u32, node: Node) {
        if let Some(p) = self.nodes.get_mut(node.prev as usize) {
            p.next = node.next;
        }
        if let Some(n) = self.nodes.get_mut(node.next as usize) {
            n.prev = node.prev;
        }
        let levels = match node.order.side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        };
        if let Some(level) = levels.get_mut(&node.order.price) {
            if level.head == slot {
                level.head = node.next;
            }
            if level.tail == slot {
                level.tail = node.prev;
            }
            level.count = level.count.saturating_sub(1);
            level.total = level.total.saturating_sub(node.order.remaining);
            if level.count == 0 {
                levels.remove(&node.order.price);
            }
        }
        self.free.push(slot);
    }

    /// The best opposite level's head order for a taker on `side`, if it is within `limit`.
    fn best_maker(&self, side: Side, limit: Option<Price>) -> Option<(u32, Resting)> {
        let (price, level) = match side {
            Side::Buy => self.asks.first_key_value()?,
            Side::Sell => self.bids.last_key_value()?,
        };
        let acceptable = match (side, limit) {
            (_, None) => true,
            (Side::Buy, Some(l)) => *price <= l,
            (Side::Sell, Some(l)) => *price >= l,
        };
        if !acceptable {
            return None;
        }
        let node = self.nodes.get(level.head as usize)?;
        Some((level.head, node.order))
    }

    /// How much of `taker` one maker can absorb, given what is left to trade.
    fn fill_qty(
        maker: &Resting,
        left_qty: Amount,
        left_quote: Option<Amount>,
        sizing: Sizing,
    ) -> Option<Amount> {
        let mut qty = maker.remaining.min(left_qty);
        if let Some(quote) = left_quote {
            qty = qty.min(sizing.qty_for_quote(maker.price, quote)?);
        }
        Some(qty)
    }

    /// Matches `taker` against the book, best price first, oldest first within a price.
    /// Fills and self-trade expiries are appended to `events`.
    pub fn match_taker(
        &mut self,
        taker: &Taker,
        sizing: Sizing,
        events: &mut Vec<BookEvent>,
    ) -> Result<MatchSummary, BookError> {
        let mut summary = MatchSummary::default();
        let mut left_qty = taker.qty;
        let mut left_quote = taker.quote_budget;
        while !left_qty.is_zero() {
            let Some((slot, maker)) = self.best_maker(taker.side, taker.limit) else {
                break;
            };
            if maker.customer == taker.customer && taker.stp != StpMode::None {
                if matches!(taker.stp, StpMode::ExpireMaker | StpMode::ExpireBoth) {
                    self.remove(maker.id);
                    events.push(BookEvent::MakerExpired { maker });
                }
                if matches!(taker.stp, StpMode::ExpireTaker | StpMode::ExpireBoth) {
                    summary.taker_expired_by_stp = true;
                    break;
                }
                continue;
            }
            let qty =
                Self::fill_qty(&maker, left_qty, left_quote, sizing).ok_or(BookError::Overflow)?;
            if qty.is_zero() {
                break;
            }
            let quote = sizing
                .notional(maker.price, qty)
                .ok_or(BookError::Overflow)?;
            let maker_remaining = maker.remaining.saturating_sub(qty);
            if maker_remaining.is_zero() {
                self.remove(maker.id);
            } else {
                self.reduce(slot, maker, qty);
            }
            events.push(BookEvent::Fill {
                maker,
                qty,
                quote,
                maker_remaining,
            });
            left_qty = left_qty.saturating_sub(qty);
            left_quote = left_quote.map(|q| q.saturating_sub(quote));
            summary.filled_qty = summary
                .filled_qty
                .checked_add(qty)
                .ok_or(BookError::Overflow)?;
            summary.filled_quote = summary
                .filled_quote
                .checked_add(quote)
                .ok_or(BookError::Overflow)?;
        }
        Ok(summary)
    }

    fn reduce(&mut self, slot: u32, maker: Resting, qty: Amount) {
        if let Some(node) = self.nodes.get_mut(slot as usize) {
            node.order.remaining = node.order.remaining.saturating_sub(qty);
        }
        let levels = match maker.side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        };
        if let Some(level) = levels.get_mut(&maker.price) {
            level.total = level.total.saturating_sub(qty);
        }
    }

    /// What [`OrderBook::match_taker`] would fill, without changing the book: used for
    /// fill-or-kill and to size the hold of a market order. Self-trade prevention is
    /// simulated as the real match applies it.
    pub fn simulate(&self, taker: &Taker, sizing: Sizing) -> Option<MatchSummary> {
        let mut summary = MatchSummary::default();
        let mut left_qty = taker.qty;
        let mut left_quote = taker.quote_budget;
        let levels: Box<dyn Iterator<Item = (&Price, &Level)>> = match taker.side {
            Side::Buy => Box::new(self.asks.iter()),
            Side::Sell => Box::new(self.bids.iter().rev()),
        };
        'levels: for (price, level) in levels {
            let acceptable = match (taker.side, taker.limit) {
                (_, None) => true,
                (Side::Buy, Some(l)) => *price <= l,
                (Side::Sell, Some(l)) => *price >= l,
            };
            if !acceptable {
                break;
            }
            let mut slot = level.head;
            while let Some(node) = self.nodes.get(slot as usize) {
                if left_qty.is_zero() {
                    break 'levels;
                }
                slot = node.next;
                let maker = node.order;
                if maker.customer == taker.customer && taker.stp != StpMode::None {
                    if matches!(taker.stp, StpMode::ExpireTaker | StpMode::ExpireBoth) {
                        summary.taker_expired_by_stp = true;
                        break 'levels;
                    }
                    continue;
                }
                let qty = Self::fill_qty(&maker, left_qty, left_quote, sizing)?;
                if qty.is_zero() {
                    break 'levels;
                }
                let quote = sizing.notional(maker.price, qty)?;
                left_qty = left_qty.saturating_sub(qty);
                left_quote = left_quote.map(|q| q.saturating_sub(quote));
                summary.filled_qty = summary.filled_qty.checked_add(qty)?;
                summary.filled_quote = summary.filled_quote.checked_add(quote)?;
                if qty < maker.remaining {
                    // The taker ran out (of quantity or budget) on this maker: the real
                    // match stops here too, before looking at later orders.
                    break 'levels;
                }
            }
        }
        Some(summary)
    }

    /// All resting orders, best price first on each side and in time order within a price
    /// (bids, then asks). For tests and snapshots.
    pub fn orders(&self) -> Vec<Resting> {
        let mut out = Vec::with_capacity(self.len());
        let walk = |level: &Level, out: &mut Vec<Resting>| {
            let mut slot = level.head;
            while let Some(node) = self.nodes.get(slot as usize) {
                out.push(node.order);
                slot = node.next;
            }
        };
        for level in self.bids.values().rev() {
            walk(level, &mut out);
        }
        for level in self.asks.values() {
            walk(level, &mut out);
        }
        out
    }
}

#[cfg(test)]
#[path = "book_tests.rs"]
mod tests;
