//! What the exchange is asked to do and what it answers: commands, replies, refusals, and
//! the checks of a new order's shape against its market (parameters and filters).

use thiserror::Error;

use crate::error::TransferError;
use crate::ledger::{Applied, Balances, CustomerId, TransferId};
use crate::market::{FilterError, MarketSpec};
use crate::money::{Amount, AssetCode, Price};
use crate::order::{Order, OrderId, OrderType, Side, StpMode, TimeInForce, Trade};

/// A deposit credited from outside (for now only the development faucet makes them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deposit {
    /// Chosen by the caller so that a retry is applied once. The top byte must be zero:
    /// the exchange derives its own transfer ids above that.
    pub transfer_id: TransferId,
    pub customer: CustomerId,
    pub asset: AssetCode,
    pub amount: Amount,
}

/// A new order as the customer asked for it; checked by the exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewOrder {
    pub customer: CustomerId,
    pub symbol: String,
    pub side: Side,
    pub order_type: OrderType,
    pub time_in_force: Option<TimeInForce>,
    pub price: Option<Price>,
    pub quantity: Option<Amount>,
    pub quote_order_qty: Option<Amount>,
    pub client_order_id: Option<String>,
    pub stp_mode: StpMode,
}

/// Which order a cancel or query means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderRef {
    Id(OrderId),
    ClientId(String),
}

/// A command to the exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Deposit(Deposit),
    Place(NewOrder),
    Cancel {
        customer: CustomerId,
        symbol: String,
        target: OrderRef,
    },
    CancelAll {
        customer: CustomerId,
        symbol: String,
    },
}

/// The answer to a command that succeeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Deposited { applied: Applied, balance: Balances },
    Placed { order: Order, trades: Vec<Trade> },
    Canceled(Order),
    CanceledAll(Vec<Order>),
}

/// Why a command was refused. Except for `Internal`, nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ExchangeError {
    #[error("unknown symbol {0}")]
    UnknownSymbol(String),
    #[error("unknown asset {0}")]
    UnknownAsset(AssetCode),
    #[error("parameter {0} is required for this order type")]
    MissingParameter(&'static str),
    #[error("parameter {0} is not allowed for this order type")]
    UnexpectedParameter(&'static str),
    #[error("parameter {0} has characters or a length it may not have")]
    MalformedParameter(&'static str),
    #[error("{0}")]
    Filter(#[from] FilterError),
    #[error("insufficient balance")]
    InsufficientBalance,
    #[error("order would immediately match and take")]
    WouldTake,
    #[error("an open order with this client order id exists")]
    DuplicateClientOrderId,
    #[error("unknown order")]
    UnknownOrder,
    #[error("the book of this market is full")]
    BookFull,
    #[error("deposit transfer ids must have a zero top byte")]
    ReservedTransferId,
    #[error("deposit refused: {0}")]
    Deposit(TransferError),
    /// A broken invariant: the exchange must stop and not persist this command.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why stored state cannot be resumed.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum RestoreError {
    #[error("market {0} is defined twice")]
    DuplicateMarket(String),
    #[error("open order {0:?} belongs to unknown market {1}")]
    UnknownMarket(OrderId, String),
    #[error("open order {0:?} cannot rest: {1}")]
    BadOrder(OrderId, String),
}

/// Checks an order as `order/test` does: parameters and filters of its market, no balance,
/// no effect.
pub fn check_order(spec: &MarketSpec, order: &NewOrder) -> Result<(), ExchangeError> {
    if order.symbol != spec.symbol() {
        return Err(ExchangeError::UnknownSymbol(order.symbol.clone()));
    }
    check_shape(spec, order).map(|_| ())
}

/// Checks which parameters an order type needs and the market's filters. Returns the
/// limit price, the base quantity (the most possible for a quote-amount market order) and
/// the quote budget.
pub(crate) fn check_shape(
    spec: &MarketSpec,
    o: &NewOrder,
) -> Result<(Option<Price>, Amount, Option<Amount>), ExchangeError> {
    use ExchangeError::{MissingParameter as Missing, UnexpectedParameter as Unexpected};
    if let Some(cid) = &o.client_order_id {
        let ok = (1..=36).contains(&cid.len())
            && cid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:/-".contains(&b));
        if !ok {
            return Err(ExchangeError::MalformedParameter("newClientOrderId"));
        }
    }
    match o.order_type {
        OrderType::Limit | OrderType::LimitMaker => {
            let price = o.price.ok_or(Missing("price"))?;
            let qty = o.quantity.ok_or(Missing("quantity"))?;
            if o.quote_order_qty.is_some() {
                return Err(Unexpected("quoteOrderQty"));
            }
            match (o.order_type, o.time_in_force) {
                (OrderType::Limit, None) => return Err(Missing("timeInForce")),
                (OrderType::LimitMaker, Some(_)) => return Err(Unexpected("timeInForce")),
                _ => {}
            }
            spec.check_price(price)?;
            spec.check_qty(qty)?;
            let notional = spec.notional(price, qty).ok_or(FilterError::Notional)?;
            spec.check_notional(notional)?;
            Ok((Some(price), qty, None))
        }
        OrderType::Market => {
            if o.price.is_some() {
                return Err(Unexpected("price"));
            }
            if o.time_in_force.is_some() {
                return Err(Unexpected("timeInForce"));
            }
            match (o.quantity, o.quote_order_qty) {
                (Some(qty), None) => {
                    spec.check_qty(qty)?;
                    Ok((None, qty, None))
                }
                (None, Some(quote)) => {
                    spec.check_notional(quote)?;
                    Ok((None, spec.max_qty(), Some(quote)))
                }
                (Some(_), Some(_)) => Err(Unexpected("quoteOrderQty")),
                (None, None) => Err(Missing("quantity")),
            }
        }
    }
}
