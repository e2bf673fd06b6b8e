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

    /// Keeps only the last state of each account, order and pending transfer, in the
    /// order of their last change: what a batch must write is then one row per thing
    /// touched, however often the batch touched it. Trades and transfers are all kept.
    pub fn compact(&mut self) {
        fn last_wins<K: Eq + std::hash::Hash + Copy, V>(items: &mut Vec<V>, key: impl Fn(&V) -> K) {
            let mut seen = rustc_hash::FxHashSet::default();
            let mut kept: Vec<V> = Vec::with_capacity(items.len());
            for item in items.drain(..).rev() {
                if seen.insert(key(&item)) {
                    kept.push(item);
                }
            }
            kept.reverse();
            *items = kept;
        }
        last_wins(&mut self.accounts, |(k, _)| *k);
        last_wins(&mut self.orders, |o| o.id);
        last_wins(&mut self.pending, |(id, _)| *id);
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::ledger::{CustomerId, Owner};
    use crate::money::AssetCode;

    fn fold_accounts(c: &Changes) -> std::collections::BTreeMap<AccountKey, Balances> {
        c.accounts.iter().copied().collect()
    }

    proptest! {
        /// Compaction changes nothing a store would end up with: the last state of each
        /// account and pending transfer is the same, with no duplicates left.
        #[test]
        fn compaction_keeps_the_last_state(updates in proptest::collection::vec((0u64..5, 0u128..100, 0u128..4, 0u128..50), 0..60)) {
            let asset = AssetCode::new("BTC").unwrap();
            let mut c = Changes::default();
            for (owner, credit, pending_id, remaining) in &updates {
                let key = AccountKey::new(Owner::Customer(CustomerId(*owner)), asset);
                let b = Balances { credits_posted: Amount::from_minor(*credit), ..Balances::default() };
                c.accounts.push((key, b));
                c.pending.push((TransferId(*pending_id), Amount::from_minor(*remaining)));
            }
            let before_accounts = fold_accounts(&c);
            let before_pending: std::collections::BTreeMap<_, _> = c.pending.iter().copied().collect();
            c.compact();
            prop_assert_eq!(fold_accounts(&c), before_accounts.clone());
            prop_assert_eq!(c.accounts.len(), before_accounts.len());
            let after_pending: std::collections::BTreeMap<_, _> = c.pending.iter().copied().collect();
            prop_assert_eq!(after_pending.len(), c.pending.len());
            prop_assert_eq!(after_pending, before_pending);
        }
    }
}
