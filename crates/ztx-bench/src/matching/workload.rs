//! The operation sequence both engines replay: a deterministic generator in the spirit of
//! exchange-core's `TestOrdersGenerator`. The mix is exchange-core's benchmark mix — 9 %
//! GTC limit orders, 3 % IOC orders, 6 % cancels, 82 % moves (re-price a resting order) —
//! drawn per operation from a seeded SplitMix64, over a book kept near a target size
//! (1,000 resting orders by default) with several customers.
//!
//! Which orders rest (and may be cancelled or moved) depends on matching, so the generator
//! keeps a model book — a ztx [`OrderBook`] driven by the same [`ztx_apply`] the timed ztx
//! run uses — and draws targets from it. Both engines then replay the finished sequence;
//! the benchmark checks afterwards that they produced the same fills and found every
//! target, so the model cannot bias one engine.
//!
//! Prices: integer ticks around a mid of 1,000,000. A passive price is 0–127 ticks behind
//! the best opposite price; a crossing price is 0–3 ticks through it. Cancels and moves
//! pick a uniformly random resting order. The share of GTCs and moves priced to cross is
//! the control that holds the book near its target: 3 % at the target, more when the book
//! is larger, none when it is 60 or more orders short. IOCs always cross (when the
//! opposite side is not empty). Quantities: 1–100 for a GTC, 1–40 for an IOC (an IOC
//! then takes about one resting order, so the mix itself keeps the book's size steady).
//! Besides cancels, only trades take orders out of the book, so with 9 % of operations
//! adding and 6 % cancelling, a steady book means only a few percent of operations trade
//! (about 4 % with the default seed); the rest re-price resting orders.

use std::collections::HashMap;

use ztx_core::book::{BookEvent, OrderBook};
use ztx_core::{OrderId, Side};

use super::engines::{Applied, ztx_apply};
use crate::rng::SplitMix64;

/// Where prices start, in ticks.
const MID_START: u64 = 1_000_000;
/// How far behind the best opposite price a passive order may rest, in ticks (exclusive).
const PASSIVE_DEPTH: u64 = 128;
/// How far through the best opposite price a crossing order may reach, in ticks (exclusive).
const SWEEP_DEPTH: u64 = 4;
/// The number of distinct customers placing orders.
pub const CUSTOMERS: u64 = 16;
/// The share of GTCs and moves priced to cross at the target book size, in per mille.
const CROSS_BASE_PERMILLE: i64 = 30;

/// What an operation asks of an engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// A limit order, good till cancelled: matches, then rests what is left.
    Gtc,
    /// A limit order, immediate or cancel: matches, the rest is dropped.
    Ioc,
    /// Removes a resting order.
    Cancel,
    /// Re-prices a resting order (exchange-core `MoveOrder`): it leaves the book, matches
    /// at the new price like a new GTC with the same id and remaining quantity, and rests
    /// what is left at the back of its new level.
    Move,
}

impl OpKind {
    pub const ALL: [OpKind; 4] = [OpKind::Gtc, OpKind::Ioc, OpKind::Cancel, OpKind::Move];

    pub fn index(self) -> usize {
        match self {
            OpKind::Gtc => 0,
            OpKind::Ioc => 1,
            OpKind::Cancel => 2,
            OpKind::Move => 3,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            OpKind::Gtc => "GTC",
            OpKind::Ioc => "IOC",
            OpKind::Cancel => "cancel",
            OpKind::Move => "move",
        }
    }
}

/// One operation. `side`, `customer` and `qty` are meaningful for GTC and IOC only (a
/// cancel or move acts on the resting order `id`); `price` for everything but a cancel.
#[derive(Clone, Copy, Debug)]
pub struct Op {
    pub kind: OpKind,
    pub side: Side,
    pub customer: u16,
    pub id: u64,
    pub price: u64,
    pub qty: u64,
}

/// The finished sequence: `ops[..prefix]` builds the book and warms up, untimed;
/// `ops[prefix..]` is measured.
#[derive(Debug)]
pub struct Workload {
    pub ops: Vec<Op>,
    pub prefix: usize,
    pub stats: WorkloadStats,
}

impl Workload {
    pub fn prefix_ops(&self) -> &[Op] {
        self.ops.get(..self.prefix).unwrap_or_default()
    }
    pub fn measured_ops(&self) -> &[Op] {
        self.ops.get(self.prefix..).unwrap_or_default()
    }
}

/// What the measured part of the sequence looks like, as the model book saw it.
#[derive(Debug, Default, Clone)]
pub struct WorkloadStats {
    /// Operations of each kind, indexed by [`OpKind::index`].
    pub count: [u64; 4],
    /// Operations of each kind that produced at least one fill.
    pub trading: [u64; 4],
    pub fills: u64,
    pub book_min: usize,
    pub book_max: usize,
    pub book_sum: u128,
    /// Cancels or moves drawn while the book was empty, issued as GTCs instead.
    pub fallbacks: u64,
}

impl WorkloadStats {
    pub fn book_mean(&self, ops: u64) -> u128 {
        self.book_sum.checked_div(u128::from(ops)).unwrap_or(0)
    }
}

/// The model book plus an index of resting ids that supports uniform random picks.
struct Model {
    book: OrderBook,
    events: Vec<BookEvent>,
    resting: Vec<u64>,
    slot_of: HashMap<u64, usize>,
    last_mid: u64,
}

impl Model {
    fn add(&mut self, id: u64) {
        self.slot_of.insert(id, self.resting.len());
        self.resting.push(id);
    }

    fn forget(&mut self, id: u64) {
        let Some(slot) = self.slot_of.remove(&id) else {
            return;
        };
        self.resting.swap_remove(slot);
        if let Some(&moved) = self.resting.get(slot) {
            self.slot_of.insert(moved, slot);
        }
    }

    fn best(&self, side: Side) -> Option<u64> {
        let price = match side {
            Side::Buy => self.book.best_bid(),
            Side::Sell => self.book.best_ask(),
        }?;
        u64::try_from(price.minor()).ok()
    }

    /// A price for `side` that rests without trading, up to `PASSIVE_DEPTH` ticks behind
    /// the best opposite price (or the last mid when that side is empty).
    fn passive_price(&self, side: Side, rng: &mut SplitMix64) -> u64 {
        let depth = rng.below(PASSIVE_DEPTH);
        match side {
            Side::Buy => {
                let ask = self.best(Side::Sell).unwrap_or(self.last_mid + 1);
                ask.saturating_sub(1 + depth).max(1)
            }
            Side::Sell => {
                let bid = self
                    .best(Side::Buy)
                    .unwrap_or(self.last_mid.saturating_sub(1));
                bid + 1 + depth
            }
        }
    }

    /// A price for `side` that trades through the best opposite price; `None` when that
    /// side is empty.
    fn crossing_price(&self, side: Side, rng: &mut SplitMix64) -> Option<u64> {
        let reach = rng.below(SWEEP_DEPTH);
        match side {
            Side::Buy => self.best(Side::Sell).map(|ask| ask + reach),
            Side::Sell => self
                .best(Side::Buy)
                .map(|bid| bid.saturating_sub(reach).max(1)),
        }
    }

    fn apply(&mut self, op: &Op) -> anyhow::Result<Applied> {
        let applied = ztx_apply(&mut self.book, &mut self.events, op)
            .map_err(|e| anyhow::anyhow!("model book refused {op:?}: {e}"))?;
        let events = std::mem::take(&mut self.events);
        for event in &events {
            if let BookEvent::Fill {
                maker,
                maker_remaining,
                ..
            } = event
                && maker_remaining.is_zero()
            {
                self.forget(maker.id.0);
            }
        }
        self.events = events;
        match op.kind {
            OpKind::Gtc | OpKind::Move => {
                if self.book.get(OrderId(op.id)).is_some() {
                    if !self.slot_of.contains_key(&op.id) {
                        self.add(op.id);
                    }
                } else {
                    self.forget(op.id);
                }
            }
            OpKind::Cancel => self.forget(op.id),
            OpKind::Ioc => {}
        }
        if let (Some(bid), Some(ask)) = (self.best(Side::Buy), self.best(Side::Sell)) {
            self.last_mid = bid / 2 + ask / 2;
        }
        Ok(applied)
    }
}

/// Generates `target` seeding GTCs, then `warmup` and `measured` operations of the mix.
pub fn generate(
    seed: u64,
    target: usize,
    warmup: usize,
    measured: usize,
) -> anyhow::Result<Workload> {
    let mut rng = SplitMix64::new(seed);
    let mut model = Model {
        book: OrderBook::new(),
        events: Vec::new(),
        resting: Vec::with_capacity(target * 2),
        slot_of: HashMap::with_capacity(target * 2),
        last_mid: MID_START,
    };
    let total = target + warmup + measured;
    let mut ops = Vec::with_capacity(total);
    let mut stats = WorkloadStats {
        book_min: usize::MAX,
        ..WorkloadStats::default()
    };
    let mut next_id = 1u64;
    let target_i = i64::try_from(target)?;

    for n in 0..total {
        let side = if rng.below(2) == 0 {
            Side::Buy
        } else {
            Side::Sell
        };
        let customer = u16::try_from(rng.below(CUSTOMERS))?;
        let op = if n < target {
            new_order(
                OpKind::Gtc,
                side,
                customer,
                &mut next_id,
                &model,
                &mut rng,
                false,
            )
        } else {
            let len = i64::try_from(model.resting.len())?;
            let cross_permille = (CROSS_BASE_PERMILLE + (len - target_i) / 2).clamp(0, 1000);
            let cross = i64::try_from(rng.below(1000))? < cross_permille;
            let draw = rng.below(100);
            let mut kind = match draw {
                0..9 => OpKind::Gtc,
                9..12 => OpKind::Ioc,
                12..18 => OpKind::Cancel,
                _ => OpKind::Move,
            };
            if matches!(kind, OpKind::Cancel | OpKind::Move) && model.resting.is_empty() {
                kind = OpKind::Gtc;
                if n >= target + warmup {
                    stats.fallbacks += 1;
                }
            }
            match kind {
                OpKind::Gtc | OpKind::Ioc => {
                    new_order(kind, side, customer, &mut next_id, &model, &mut rng, cross)
                }
                OpKind::Cancel | OpKind::Move => existing_order(kind, &model, &mut rng, cross)?,
            }
        };
        let applied = model.apply(&op)?;
        ops.push(op);
        if n >= target + warmup {
            let k = op.kind.index();
            if let (Some(c), Some(t)) = (stats.count.get_mut(k), stats.trading.get_mut(k)) {
                *c += 1;
                *t += u64::from(applied.fills > 0);
            }
            stats.fills += applied.fills;
            let len = model.resting.len();
            stats.book_min = stats.book_min.min(len);
            stats.book_max = stats.book_max.max(len);
            stats.book_sum += len as u128;
        }
    }
    if model.resting.len() != model.book.len() {
        anyhow::bail!(
            "generator index out of step: {} ids, {} resting",
            model.resting.len(),
            model.book.len()
        );
    }
    Ok(Workload {
        ops,
        prefix: target + warmup,
        stats,
    })
}

/// A new GTC or IOC order with a fresh id.
fn new_order(
    kind: OpKind,
    side: Side,
    customer: u16,
    next_id: &mut u64,
    model: &Model,
    rng: &mut SplitMix64,
    cross: bool,
) -> Op {
    let id = *next_id;
    *next_id += 1;
    let (price, qty) = match kind {
        OpKind::Ioc => (
            model
                .crossing_price(side, rng)
                .unwrap_or_else(|| model.passive_price(side, rng)),
            1 + rng.below(40),
        ),
        _ => {
            let crossing = if cross {
                model.crossing_price(side, rng)
            } else {
                None
            };
            (
                crossing.unwrap_or_else(|| model.passive_price(side, rng)),
                1 + rng.below(100),
            )
        }
    };
    Op {
        kind,
        side,
        customer,
        id,
        price,
        qty,
    }
}

/// A cancel or move of a uniformly chosen resting order. A move always changes the price.
fn existing_order(
    kind: OpKind,
    model: &Model,
    rng: &mut SplitMix64,
    cross: bool,
) -> anyhow::Result<Op> {
    let pick = usize::try_from(rng.below(u64::try_from(model.resting.len())?))?;
    let id = *model
        .resting
        .get(pick)
        .ok_or_else(|| anyhow::anyhow!("no resting order to pick"))?;
    let order = model
        .book
        .get(OrderId(id))
        .ok_or_else(|| anyhow::anyhow!("indexed order {id} is not in the model book"))?;
    let old = u64::try_from(order.price.minor())?;
    let price = if kind == OpKind::Move {
        let crossing = if cross {
            model.crossing_price(order.side, rng)
        } else {
            None
        };
        let mut price = crossing.unwrap_or_else(|| model.passive_price(order.side, rng));
        if price == old {
            // Same price is not a move (orderbook-rs refuses it): one tick further back.
            price = match order.side {
                Side::Buy => old.saturating_sub(1).max(1),
                Side::Sell => old + 1,
            };
            if price == old {
                price = old + 1;
            }
        }
        price
    } else {
        0
    };
    Ok(Op {
        kind,
        side: order.side,
        customer: u16::try_from(order.customer.0)?,
        id,
        price,
        qty: u64::try_from(order.remaining.minor())?,
    })
}
