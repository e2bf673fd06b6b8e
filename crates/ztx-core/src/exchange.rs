//! The exchange: every market's book, the ledger and the open orders, driven by commands.
//! Placing an order first holds (a pending transfer) everything it could spend; each fill
//! is settled as one linked chain of transfers — both holds posted, both sides paid through
//! the escrow, fees to the fee account — so a trade is all or nothing. Deterministic: the
//! same commands with the same timestamps give the same replies and changes.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use crate::book::{BookEvent, OrderBook, Resting, Taker};
use crate::changes::{Changes, ExchangeState};
use crate::command::check_shape;
pub use crate::command::{
    Command, Deposit, ExchangeError, NewOrder, OrderRef, Reply, RestoreError, check_order,
};
use crate::ledger::{
    AccountKey, Applied, Balances, CustomerId, Ledger, Owner, Transfer, TransferCode, TransferId,
    TransferKind,
};
use crate::market::{FilterError, MarketSpec, fee};
use crate::money::{Amount, AssetCode, Price};
use crate::order::{Order, OrderId, OrderStatus, OrderType, Side, TimeInForce, Trade, TradeId};

/// The most open orders one market's book holds; past it new resting orders are refused.
pub const MAX_OPEN_ORDERS_PER_MARKET: usize = 10_000_000;

#[derive(Debug, Clone)]
struct Market {
    spec: MarketSpec,
    book: OrderBook,
}

/// The top byte of every transfer id the exchange derives. Operators' deposit ids have a
/// zero top byte, and the first layout (kind byte on top) used 1 to 3, so none can meet.
const ENGINE_TAG: u8 = 4;
const KIND_HOLD: u8 = 1;
const KIND_TRADE: u8 = 2;
const KIND_RELEASE: u8 = 3;
/// Bits for the command's order id and for the subject; 56 each, beside two tag bytes.
const FIELD_BITS: u32 = 56;

/// Derives the exchange's own transfer ids: the tag byte, then the id of the order whose
/// command made the transfer, then a kind byte, then its subject (the order whose hold is
/// taken or released, or a trade's id and leg). Orders are numbered in command order, so
/// the ids of one command sort after every earlier command's, and the store appends them
/// at the right end of one B-tree instead of writing into three places in the middle of
/// it. A cancel has no order of its own and uses the canceled order's id.
fn derived_id(command: u64, kind: u8, subject: u64) -> Result<TransferId, ExchangeError> {
    let limit = 1u64 << FIELD_BITS;
    if command >= limit || subject >= limit {
        return Err(ExchangeError::Internal(format!(
            "transfer id fields out of range: order {command}, subject {subject}"
        )));
    }
    Ok(TransferId(
        (u128::from(ENGINE_TAG) << 120)
            | (u128::from(command) << 64)
            | (u128::from(kind) << FIELD_BITS)
            | u128::from(subject),
    ))
}

/// The id of the pending transfer that holds an order's funds.
fn hold_id(order: OrderId) -> Result<TransferId, ExchangeError> {
    derived_id(order.0, KIND_HOLD, order.0)
}

/// The whole exchange state.
#[derive(Debug, Clone)]
pub struct Exchange {
    markets: BTreeMap<String, Market>,
    assets: Vec<AssetCode>,
    ledger: Ledger,
    open: FxHashMap<OrderId, Order>,
    client_ids: FxHashMap<(CustomerId, String), OrderId>,
    last_order_id: u64,
    last_trade_id: u64,
}

/// Collects what one command changed, then writes it into [`Changes`] once.
#[derive(Default)]
struct Recorder {
    /// The order this command placed, which names the transfers it makes.
    placed: Option<OrderId>,
    transfers: Vec<Transfer>,
    accounts: Vec<AccountKey>,
    pending: Vec<TransferId>,
    orders: Vec<Order>,
    trades: Vec<Trade>,
}

impl Recorder {
    fn transfer(&mut self, t: &Transfer) {
        self.transfers.push(*t);
        for key in [t.debit, t.credit] {
            if !self.accounts.contains(&key) {
                self.accounts.push(key);
            }
        }
        let pending = match t.kind {
            TransferKind::Pending => Some(t.id),
            TransferKind::PostPending { pending_id } | TransferKind::VoidPending { pending_id } => {
                Some(pending_id)
            }
            TransferKind::Single => None,
        };
        if let Some(id) = pending
            && !self.pending.contains(&id)
        {
            self.pending.push(id);
        }
    }

    fn finish(self, ledger: &Ledger, changes: &mut Changes) {
        changes.transfers.extend(self.transfers);
        changes
            .accounts
            .extend(self.accounts.iter().map(|k| (*k, ledger.balances(k))));
        changes.pending.extend(self.pending.iter().map(|id| {
            let remaining = ledger.pending(*id).map_or(Amount::ZERO, |p| p.remaining);
            (*id, remaining)
        }));
        changes.orders.extend(self.orders);
        changes.trades.extend(self.trades);
    }
}

/// A checked order, ready to execute.
struct Plan {
    limit: Option<Price>,
    qty: Amount,
    quote_budget: Option<Amount>,
    hold_asset: AssetCode,
    hold: Amount,
    /// Fill-or-kill that cannot fill completely: recorded as expired, nothing else.
    fok_fails: bool,
}

impl Exchange {
    /// An empty exchange with these markets.
    pub fn new(specs: Vec<MarketSpec>) -> Result<Self, RestoreError> {
        Self::restore(specs, ExchangeState::default())
    }

    /// Resumes from stored state: balances, transfers, holds and every open order back in
    /// its book in time priority.
    pub fn restore(specs: Vec<MarketSpec>, state: ExchangeState) -> Result<Self, RestoreError> {
        let mut markets = BTreeMap::new();
        let mut assets = Vec::new();
        for spec in specs {
            for asset in [spec.base().code(), spec.quote().code()] {
                if !assets.contains(&asset) {
                    assets.push(asset);
                }
            }
            let symbol = spec.symbol().to_string();
            let market = Market {
                spec,
                book: OrderBook::new(),
            };
            if markets.insert(symbol.clone(), market).is_some() {
                return Err(RestoreError::DuplicateMarket(symbol));
            }
        }
        assets.sort();
        let mut open_orders = state.open_orders;
        open_orders.sort_by_key(|o| (o.priority, o.id));
        let mut open = FxHashMap::default();
        let mut client_ids = FxHashMap::default();
        for order in open_orders {
            let market = markets
                .get_mut(&order.symbol)
                .ok_or_else(|| RestoreError::UnknownMarket(order.id, order.symbol.clone()))?;
            let price = order
                .price
                .ok_or_else(|| RestoreError::BadOrder(order.id, "no price".into()))?;
            let remaining = order.orig_qty.saturating_sub(order.executed_qty);
            market
                .book
                .insert(Resting::of(&order, price, remaining))
                .map_err(|e| RestoreError::BadOrder(order.id, e.to_string()))?;
            client_ids.insert((order.customer, order.client_order_id.clone()), order.id);
            open.insert(order.id, order);
        }
        Ok(Self {
            markets,
            assets,
            ledger: Ledger::restore(state.accounts, state.transfers, state.pending),
            open,
            client_ids,
            last_order_id: state.last_order_id,
            last_trade_id: state.last_trade_id,
        })
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn markets(&self) -> impl Iterator<Item = &MarketSpec> {
        self.markets.values().map(|m| &m.spec)
    }

    pub fn market(&self, symbol: &str) -> Option<&MarketSpec> {
        self.markets.get(symbol).map(|m| &m.spec)
    }

    /// Every asset of every market, sorted.
    pub fn assets(&self) -> &[AssetCode] {
        &self.assets
    }

    /// A customer's balances of every asset.
    pub fn balances(&self, customer: CustomerId) -> Vec<(AssetCode, Balances)> {
        self.assets
            .iter()
            .map(|a| {
                let key = AccountKey::new(Owner::Customer(customer), *a);
                (*a, self.ledger.balances(&key))
            })
            .collect()
    }

    /// A customer's open orders, oldest first, in one market or all.
    pub fn open_orders(&self, customer: CustomerId, symbol: Option<&str>) -> Vec<Order> {
        let mut orders: Vec<Order> = self
            .open
            .values()
            .filter(|o| o.customer == customer && symbol.is_none_or(|s| s == o.symbol))
            .cloned()
            .collect();
        orders.sort_by_key(|o| o.id);
        orders
    }

    /// Grows with every change to any book, and never runs backwards, restarts included:
    /// Binance's `lastUpdateId`. Every book change applies at least one transfer (a hold,
    /// a fill or a release), and every transfer is persisted, so their count serves.
    pub fn version(&self) -> u64 {
        u64::try_from(self.ledger.transfer_count()).unwrap_or(u64::MAX)
    }

    pub fn open_order_count(&self) -> usize {
        self.open.len()
    }

    /// Aggregated depth `(bids, asks)`, best first.
    pub fn depth(&self, symbol: &str, limit: usize) -> Option<DepthView> {
        let book = &self.markets.get(symbol)?.book;
        Some((book.depth(Side::Buy, limit), book.depth(Side::Sell, limit)))
    }

    /// Executes one command at time `now_ms`, appending what changed to `changes`.
    pub fn execute(
        &mut self,
        command: Command,
        now_ms: u64,
        changes: &mut Changes,
    ) -> Result<Reply, ExchangeError> {
        let mut rec = Recorder::default();
        let reply = match command {
            Command::Deposit(d) => self.deposit(d, now_ms, &mut rec),
            Command::Place(o) => self.place(o, now_ms, &mut rec),
            Command::Cancel {
                customer,
                symbol,
                target,
            } => self
                .cancel(customer, &symbol, &target, now_ms, &mut rec)
                .map(Reply::Canceled),
            Command::CancelAll { customer, symbol } => {
                self.cancel_all(customer, &symbol, now_ms, &mut rec)
            }
        }?;
        rec.finish(&self.ledger, changes);
        Ok(reply)
    }

    fn deposit(
        &mut self,
        d: Deposit,
        now_ms: u64,
        rec: &mut Recorder,
    ) -> Result<Reply, ExchangeError> {
        if d.transfer_id.0 >> 120 != 0 {
            return Err(ExchangeError::ReservedTransferId);
        }
        if !self.assets.contains(&d.asset) {
            return Err(ExchangeError::UnknownAsset(d.asset));
        }
        let customer = AccountKey::new(Owner::Customer(d.customer), d.asset);
        let t = Transfer {
            id: d.transfer_id,
            debit: AccountKey::new(Owner::External, d.asset),
            credit: customer,
            amount: d.amount,
            kind: TransferKind::Single,
            code: TransferCode::Deposit,
            timestamp_ms: now_ms,
        };
        // A retried deposit carries the first attempt's time: compare without it.
        let t = match self.ledger.transfer(t.id) {
            Some(first)
                if Transfer {
                    timestamp_ms: first.timestamp_ms,
                    ..t
                } == *first =>
            {
                *first
            }
            _ => t,
        };
        let applied = self.ledger.apply(t).map_err(ExchangeError::Deposit)?;
        if applied == Applied::Created {
            rec.transfer(&t);
        }
        Ok(Reply::Deposited {
            applied,
            balance: self.ledger.balances(&customer),
        })
    }

    fn plan(&self, market: &Market, o: &NewOrder) -> Result<Plan, ExchangeError> {
        let spec = &market.spec;
        let (limit, qty, quote_budget) = check_shape(spec, o)?;
        let tif = o.time_in_force.unwrap_or(TimeInForce::Gtc);
        if let Some(cid) = &o.client_order_id
            && self.client_ids.contains_key(&(o.customer, cid.clone()))
        {
            return Err(ExchangeError::DuplicateClientOrderId);
        }
        if o.order_type == OrderType::LimitMaker
            && let Some(price) = limit
            && market.book.would_cross(o.side, price)
        {
            return Err(ExchangeError::WouldTake);
        }
        let taker = Taker {
            customer: o.customer,
            side: o.side,
            limit,
            qty,
            quote_budget,
            stp: o.stp_mode,
        };
        let sim = || {
            market
                .book
                .simulate(&taker, spec.sizing())
                .ok_or_else(|| ExchangeError::Internal("overflow simulating a match".into()))
        };
        let fok_fails = tif == TimeInForce::Fok && o.order_type == OrderType::Limit && {
            let s = sim()?;
            s.filled_qty < qty
        };
        // An order holds what it asks for, as Binance checks it: the notional at its limit
        // or the quote amount for a buy, the quantity for a sell. Only what cannot be known
        // in advance — a market buy's cost, a market sell's quantity for a quote amount —
        // is held as the match would fill it. Whatever is not spent is released.
        let (hold_asset, hold) = match (o.side, limit, quote_budget) {
            (Side::Buy, Some(price), _) => (
                spec.quote().code(),
                spec.notional(price, qty)
                    .ok_or(ExchangeError::Filter(FilterError::Notional))?,
            ),
            (Side::Buy, None, Some(budget)) => (spec.quote().code(), budget),
            (Side::Buy, None, None) => (spec.quote().code(), sim()?.filled_quote),
            (Side::Sell, None, Some(_)) => (spec.base().code(), sim()?.filled_qty),
            (Side::Sell, _, _) => (spec.base().code(), qty),
        };
        let hold = if fok_fails { Amount::ZERO } else { hold };
        let account = AccountKey::new(Owner::Customer(o.customer), hold_asset);
        if self.ledger.balances(&account).available() < hold {
            return Err(ExchangeError::InsufficientBalance);
        }
        if limit.is_some() && market.book.len() >= MAX_OPEN_ORDERS_PER_MARKET {
            return Err(ExchangeError::BookFull);
        }
        Ok(Plan {
            limit,
            qty,
            quote_budget,
            hold_asset,
            hold,
            fok_fails,
        })
    }

    fn place(
        &mut self,
        o: NewOrder,
        now_ms: u64,
        rec: &mut Recorder,
    ) -> Result<Reply, ExchangeError> {
        let market = self
            .markets
            .get(&o.symbol)
            .ok_or_else(|| ExchangeError::UnknownSymbol(o.symbol.clone()))?;
        let plan = self.plan(market, &o)?;
        // Everything below is checked: from here on a failure is a broken invariant.
        self.last_order_id += 1;
        let id = OrderId(self.last_order_id);
        rec.placed = Some(id);
        let mut order = Order {
            id,
            symbol: o.symbol.clone(),
            customer: o.customer,
            client_order_id: o
                .client_order_id
                .clone()
                .unwrap_or_else(|| format!("ztx-{}", id.0)),
            side: o.side,
            order_type: o.order_type,
            time_in_force: o.time_in_force.unwrap_or(TimeInForce::Gtc),
            stp_mode: o.stp_mode,
            price: plan.limit,
            orig_qty: if plan.quote_budget.is_some() {
                Amount::ZERO
            } else {
                plan.qty
            },
            orig_quote_qty: plan.quote_budget.unwrap_or(Amount::ZERO),
            executed_qty: Amount::ZERO,
            cumulative_quote: Amount::ZERO,
            status: OrderStatus::New,
            hold_id: hold_id(id)?,
            priority: id.0,
            created_ms: now_ms,
            updated_ms: now_ms,
        };
        if plan.fok_fails {
            order.status = OrderStatus::Expired;
            rec.orders.push(order.clone());
            return Ok(Reply::Placed {
                order,
                trades: Vec::new(),
            });
        }
        if !plan.hold.is_zero() {
            let hold = Transfer {
                id: order.hold_id,
                debit: AccountKey::new(Owner::Customer(o.customer), plan.hold_asset),
                credit: AccountKey::new(Owner::Escrow, plan.hold_asset),
                amount: plan.hold,
                kind: TransferKind::Pending,
                code: TransferCode::OrderHold,
                timestamp_ms: now_ms,
            };
            self.apply(&[hold], rec)?;
        }
        let trades = self.match_order(&mut order, &plan, now_ms, rec)?;
        Ok(Reply::Placed { order, trades })
    }

    fn match_order(
        &mut self,
        order: &mut Order,
        plan: &Plan,
        now_ms: u64,
        rec: &mut Recorder,
    ) -> Result<Vec<Trade>, ExchangeError> {
        let market = self
            .markets
            .get_mut(&order.symbol)
            .ok_or_else(|| ExchangeError::Internal("market vanished".into()))?;
        let spec = market.spec.clone();
        let taker = Taker {
            customer: order.customer,
            side: order.side,
            limit: plan.limit,
            qty: plan.qty,
            quote_budget: plan.quote_budget,
            stp: order.stp_mode,
        };
        let mut events = Vec::new();
        let summary = market
            .book
            .match_taker(&taker, spec.sizing(), &mut events)
            .map_err(|e| ExchangeError::Internal(e.to_string()))?;
        let mut trades = Vec::with_capacity(events.len());
        for event in events {
            match event {
                BookEvent::Fill {
                    maker, qty, quote, ..
                } => {
                    let trade = self.settle(&spec, order, &maker, qty, quote, now_ms, rec)?;
                    trades.push(trade);
                }
                BookEvent::MakerExpired { maker } => {
                    self.close(maker.id, OrderStatus::ExpiredInMatch, now_ms, rec)?;
                }
            }
        }
        order.executed_qty = summary.filled_qty;
        order.cumulative_quote = summary.filled_quote;
        order.updated_ms = now_ms;
        let remaining = plan.qty.saturating_sub(summary.filled_qty);
        let rests = matches!(order.order_type, OrderType::Limit | OrderType::LimitMaker)
            && order.time_in_force == TimeInForce::Gtc
            && !summary.taker_expired_by_stp
            && !remaining.is_zero();
        if rests {
            let price = plan
                .limit
                .ok_or_else(|| ExchangeError::Internal("resting order without price".into()))?;
            order.status = if summary.filled_qty.is_zero() {
                OrderStatus::New
            } else {
                OrderStatus::PartiallyFilled
            };
            let market = self
                .markets
                .get_mut(&order.symbol)
                .ok_or_else(|| ExchangeError::Internal("market vanished".into()))?;
            market
                .book
                .insert(Resting::of(order, price, remaining))
                .map_err(|e| ExchangeError::Internal(e.to_string()))?;
            self.client_ids
                .insert((order.customer, order.client_order_id.clone()), order.id);
            self.open.insert(order.id, order.clone());
        } else {
            order.status = if summary.taker_expired_by_stp {
                OrderStatus::ExpiredInMatch
            } else if self.is_filled(&spec, order, plan, remaining) {
                OrderStatus::Filled
            } else {
                OrderStatus::Expired
            };
            self.release_hold(order.id, order.hold_id, now_ms, rec)?;
        }
        rec.orders.push(order.clone());
        Ok(trades)
    }

    /// A market order by quote amount is filled when what is left of the budget cannot buy
    /// one more step at the best price still in the book; other orders when no quantity is
    /// left.
    fn is_filled(&self, spec: &MarketSpec, order: &Order, plan: &Plan, remaining: Amount) -> bool {
        let Some(budget) = plan.quote_budget else {
            return remaining.is_zero();
        };
        let left = budget.saturating_sub(order.cumulative_quote);
        if left.is_zero() {
            return true;
        }
        let book = self.markets.get(&order.symbol).map(|m| &m.book);
        let best = book.and_then(|b| match order.side {
            Side::Buy => b.best_ask(),
            Side::Sell => b.best_bid(),
        });
        // With the book empty the liquidity ran out: expired, as Binance reports it.
        !order.executed_qty.is_zero()
            && best.is_some_and(|p| {
                spec.sizing()
                    .qty_for_quote(p, left)
                    .is_none_or(|q| q.is_zero())
            })
    }

    /// Settles one fill between the taker `order` and a resting maker.
    #[allow(clippy::too_many_arguments)] // each argument is one fact of the fill
    fn settle(
        &mut self,
        spec: &MarketSpec,
        taker: &Order,
        maker: &Resting,
        qty: Amount,
        quote: Amount,
        now_ms: u64,
        rec: &mut Recorder,
    ) -> Result<Trade, ExchangeError> {
        self.last_trade_id += 1;
        let trade_id = TradeId(self.last_trade_id);
        let maker_order = self
            .open
            .get(&maker.id)
            .cloned()
            .ok_or_else(|| ExchangeError::Internal(format!("maker {:?} not open", maker.id)))?;
        let (buy, sell) = match taker.side {
            Side::Buy => (taker, &maker_order),
            Side::Sell => (&maker_order, taker),
        };
        let buyer_is_maker = taker.side == Side::Sell;
        let (buyer_bps, seller_bps) = if buyer_is_maker {
            (spec.maker_fee_bps(), spec.taker_fee_bps())
        } else {
            (spec.taker_fee_bps(), spec.maker_fee_bps())
        };
        let overflow = || ExchangeError::Internal("fee overflow".into());
        let buyer_fee = fee(qty, buyer_bps).ok_or_else(overflow)?;
        let seller_fee = fee(quote, seller_bps).ok_or_else(overflow)?;
        let base = spec.base().code();
        let quote_asset = spec.quote().code();
        let acct = |owner, asset| AccountKey::new(owner, asset);
        let buyer = Owner::Customer(buy.customer);
        let seller = Owner::Customer(sell.customer);
        let leg = |n: u64| {
            let subject = trade_id.0.checked_mul(8).map_or(u64::MAX, |t| t | n);
            derived_id(taker.id.0, KIND_TRADE, subject)
        };
        let t = |id, debit, credit, amount, kind, code| Transfer {
            id,
            debit,
            credit,
            amount,
            kind,
            code,
            timestamp_ms: now_ms,
        };
        let mut chain = vec![
            t(
                leg(0)?,
                acct(buyer, quote_asset),
                acct(Owner::Escrow, quote_asset),
                quote,
                TransferKind::PostPending {
                    pending_id: buy.hold_id,
                },
                TransferCode::Trade,
            ),
            t(
                leg(1)?,
                acct(seller, base),
                acct(Owner::Escrow, base),
                qty,
                TransferKind::PostPending {
                    pending_id: sell.hold_id,
                },
                TransferCode::Trade,
            ),
        ];
        let mut pay = |n, to: Owner, asset, amount: Amount, code| {
            if !amount.is_zero() {
                chain.push(t(
                    leg(n)?,
                    acct(Owner::Escrow, asset),
                    acct(to, asset),
                    amount,
                    TransferKind::Single,
                    code,
                ));
            }
            Ok::<(), ExchangeError>(())
        };
        pay(
            2,
            buyer,
            base,
            qty.saturating_sub(buyer_fee),
            TransferCode::Trade,
        )?;
        pay(3, Owner::Fees, base, buyer_fee, TransferCode::Fee)?;
        pay(
            4,
            seller,
            quote_asset,
            quote.saturating_sub(seller_fee),
            TransferCode::Trade,
        )?;
        pay(5, Owner::Fees, quote_asset, seller_fee, TransferCode::Fee)?;
        // A buying taker with a limit above the maker's price held for its own limit: the
        // difference is released now, so the hold always equals what the rest may cost.
        if !buyer_is_maker && let Some(limit) = taker.price {
            let held = spec.notional(limit, qty).ok_or_else(overflow)?;
            let improvement = held.saturating_sub(quote);
            if !improvement.is_zero() {
                chain.push(t(
                    leg(6)?,
                    acct(buyer, quote_asset),
                    acct(Owner::Escrow, quote_asset),
                    improvement,
                    TransferKind::VoidPending {
                        pending_id: buy.hold_id,
                    },
                    TransferCode::HoldRelease,
                ));
            }
        }
        self.apply(&chain, rec)?;

        let trade = Trade {
            id: trade_id,
            symbol: taker.symbol.clone(),
            price: maker.price,
            qty,
            quote_qty: quote,
            buy_order: buy.id,
            sell_order: sell.id,
            buyer: buy.customer,
            seller: sell.customer,
            buyer_is_maker,
            buyer_fee,
            buyer_fee_asset: base,
            seller_fee,
            seller_fee_asset: quote_asset,
            time_ms: now_ms,
        };
        rec.trades.push(trade.clone());
        self.record_maker_fill(maker.id, qty, quote, now_ms, rec)?;
        Ok(trade)
    }

    fn record_maker_fill(
        &mut self,
        id: OrderId,
        qty: Amount,
        quote: Amount,
        now_ms: u64,
        rec: &mut Recorder,
    ) -> Result<(), ExchangeError> {
        let bad = || ExchangeError::Internal(format!("maker {id:?} accounting"));
        let order = self.open.get_mut(&id).ok_or_else(bad)?;
        order.executed_qty = order.executed_qty.checked_add(qty).ok_or_else(bad)?;
        order.cumulative_quote = order.cumulative_quote.checked_add(quote).ok_or_else(bad)?;
        order.updated_ms = now_ms;
        if order.executed_qty >= order.orig_qty {
            self.close(id, OrderStatus::Filled, now_ms, rec)?;
        } else {
            order.status = OrderStatus::PartiallyFilled;
            rec.orders.push(order.clone());
        }
        Ok(())
    }

    /// Takes an open order out of the exchange with its final status and releases what
    /// remains of its hold. The order must already be out of the book or is taken out.
    fn close(
        &mut self,
        id: OrderId,
        status: OrderStatus,
        now_ms: u64,
        rec: &mut Recorder,
    ) -> Result<Order, ExchangeError> {
        let mut order = self.open.remove(&id).ok_or(ExchangeError::UnknownOrder)?;
        self.client_ids
            .remove(&(order.customer, order.client_order_id.clone()));
        if let Some(market) = self.markets.get_mut(&order.symbol) {
            market.book.remove(id);
        }
        order.status = status;
        order.updated_ms = now_ms;
        self.release_hold(order.id, order.hold_id, now_ms, rec)?;
        rec.orders.push(order.clone());
        Ok(order)
    }

    fn release_hold(
        &mut self,
        order: OrderId,
        hold: TransferId,
        now_ms: u64,
        rec: &mut Recorder,
    ) -> Result<(), ExchangeError> {
        let Some(pending) = self.ledger.pending(hold).copied() else {
            return Ok(());
        };
        let command = rec.placed.unwrap_or(order);
        let release = Transfer {
            id: derived_id(command.0, KIND_RELEASE, order.0)?,
            debit: pending.transfer.debit,
            credit: pending.transfer.credit,
            amount: pending.remaining,
            kind: TransferKind::VoidPending { pending_id: hold },
            code: TransferCode::HoldRelease,
            timestamp_ms: now_ms,
        };
        self.apply(&[release], rec)
    }

    fn apply(&mut self, chain: &[Transfer], rec: &mut Recorder) -> Result<(), ExchangeError> {
        self.ledger
            .apply_linked(chain)
            .map_err(|e| ExchangeError::Internal(format!("ledger refused settlement: {e}")))?;
        for t in chain {
            rec.transfer(t);
        }
        Ok(())
    }

    fn find_open(&self, customer: CustomerId, symbol: &str, target: &OrderRef) -> Option<OrderId> {
        let id = match target {
            OrderRef::Id(id) => *id,
            OrderRef::ClientId(cid) => *self.client_ids.get(&(customer, cid.clone()))?,
        };
        let order = self.open.get(&id)?;
        (order.customer == customer && order.symbol == symbol).then_some(id)
    }

    fn cancel(
        &mut self,
        customer: CustomerId,
        symbol: &str,
        target: &OrderRef,
        now_ms: u64,
        rec: &mut Recorder,
    ) -> Result<Order, ExchangeError> {
        if !self.markets.contains_key(symbol) {
            return Err(ExchangeError::UnknownSymbol(symbol.to_string()));
        }
        let id = self
            .find_open(customer, symbol, target)
            .ok_or(ExchangeError::UnknownOrder)?;
        self.close(id, OrderStatus::Canceled, now_ms, rec)
    }

    fn cancel_all(
        &mut self,
        customer: CustomerId,
        symbol: &str,
        now_ms: u64,
        rec: &mut Recorder,
    ) -> Result<Reply, ExchangeError> {
        if !self.markets.contains_key(symbol) {
            return Err(ExchangeError::UnknownSymbol(symbol.to_string()));
        }
        let ids: Vec<OrderId> = self
            .open_orders(customer, Some(symbol))
            .iter()
            .map(|o| o.id)
            .collect();
        let mut canceled = Vec::with_capacity(ids.len());
        for id in ids {
            canceled.push(self.close(id, OrderStatus::Canceled, now_ms, rec)?);
        }
        Ok(Reply::CanceledAll(canceled))
    }
}

/// Aggregated `(bids, asks)`, best first.
pub type DepthView = (Vec<(Price, Amount)>, Vec<(Price, Amount)>);

#[cfg(test)]
#[path = "exchange_tests.rs"]
mod tests;
