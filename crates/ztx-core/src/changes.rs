//! What one command changed, for the store to persist in the same transaction, and the
//! state the store gives back on restart.

use crate::ledger::{AccountKey, Balances, PendingState, Transfer, TransferId};
use crate::money::Amount;
use crate::order::{Order, Trade};

/// The effects of commands, in the order they happened. Orders and accounts appear with
/// their latest state (an upsert), trades and transfers are new rows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub orders: Vec<Order>,
    pub trades: Vec<Trade>,
    pub transfers: Vec<Transfer>,
    pub accounts: Vec<(AccountKey, Balances)>,
    /// What remains of each pending transfer touched; zero means finished.
    pub pending: Vec<(TransferId, Amount)>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
            && self.trades.is_empty()
            && self.transfers.is_empty()
            && self.accounts.is_empty()
            && self.pending.is_empty()
    }

    /// Appends `other`, keeping order.
    pub fn extend(&mut self, other: Changes) {
        self.orders.extend(other.orders);
        self.trades.extend(other.trades);
        self.transfers.extend(other.transfers);
        self.accounts.extend(other.accounts);
        self.pending.extend(other.pending);
    }
}

/// Everything the exchange needs to resume exactly where it stopped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExchangeState {
    pub accounts: Vec<(AccountKey, Balances)>,
    pub transfers: Vec<Transfer>,
    pub pending: Vec<PendingState>,
    /// Open orders (NEW or PARTIALLY_FILLED) of every market.
    pub open_orders: Vec<Order>,
    /// The largest order id and trade id ever used (0 if none).
    pub last_order_id: u64,
    pub last_trade_id: u64,
}
