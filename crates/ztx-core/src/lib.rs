//! The pure core of ztx: money, the double-entry ledger, the matching engine and the
//! exchange that settles every fill through the ledger. No IO, no clock, no randomness:
//! commands in, events out; time is passed in.
#![forbid(unsafe_code)]

pub mod book;
pub mod changes;
pub mod command;
pub mod error;
pub mod exchange;
pub mod ledger;
pub mod market;
pub mod money;
pub mod order;

pub use changes::{Changes, ExchangeState};
pub use error::{ParseAmountError, TransferError};
pub use exchange::{
    Command, Deposit, Exchange, ExchangeError, NewOrder, OrderRef, Reply, check_order,
};
pub use ledger::{
    AccountKey, Applied, Balances, CustomerId, Ledger, Owner, PendingState, Transfer, TransferCode,
    TransferId, TransferKind,
};
pub use market::{FilterError, MarketParams, MarketSpec, MarketSpecError};
pub use money::{Amount, Asset, AssetCode, Price};
pub use order::{
    Order, OrderId, OrderStatus, OrderType, Side, StpMode, TimeInForce, Trade, TradeId,
};
