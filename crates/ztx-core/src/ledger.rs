//! The double-entry ledger, with TigerBeetle's semantics: every transfer moves one amount
//! from a debit account to a credit account of the same asset; ids are idempotent (a
//! repeat with the same content is a no-op that reports the first result, a repeat with
//! different content is refused); balance-limit flags keep customer accounts from going
//! negative; two-phase transfers hold an amount (pending) that is later posted or voided.
//!
//! One deliberate difference from TigerBeetle: a pending transfer may be posted or voided
//! in several parts (each by its own transfer), because an order's hold is consumed fill by
//! fill. The pending transfer is finished when nothing of it remains.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use crate::error::TransferError;
use crate::money::{Amount, AssetCode};

/// A customer of the platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CustomerId(pub u64);

/// Who an account belongs to. Customers own their balances; the platform owns the escrow
/// that holds funds between the two legs of a trade, the fee income, and the `External`
/// account that stands for the world outside (deposits come from it, withdrawals go to it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Owner {
    Customer(CustomerId),
    Escrow,
    Fees,
    External,
}

impl Owner {
    /// A stable short name for storage: `customer`, `escrow`, `fees`, `external`.
    pub fn kind(&self) -> &'static str {
        match self {
            Owner::Customer(_) => "customer",
            Owner::Escrow => "escrow",
            Owner::Fees => "fees",
            Owner::External => "external",
        }
    }
    /// The customer id, or 0 for the platform's own accounts.
    pub fn id(&self) -> u64 {
        match self {
            Owner::Customer(c) => c.0,
            _ => 0,
        }
    }
    /// The inverse of [`Owner::kind`] and [`Owner::id`].
    pub fn from_parts(kind: &str, id: u64) -> Option<Owner> {
        match kind {
            "customer" => Some(Owner::Customer(CustomerId(id))),
            "escrow" if id == 0 => Some(Owner::Escrow),
            "fees" if id == 0 => Some(Owner::Fees),
            "external" if id == 0 => Some(Owner::External),
            _ => None,
        }
    }
    /// The balance limit of this owner's accounts. Only the external account may show more
    /// debits than credits (money that came in from outside).
    pub fn limit(&self) -> BalanceLimit {
        match self {
            Owner::External => BalanceLimit::CreditsMustNotExceedDebits,
            _ => BalanceLimit::DebitsMustNotExceedCredits,
        }
    }
}

/// TigerBeetle's balance-limit flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BalanceLimit {
    DebitsMustNotExceedCredits,
    CreditsMustNotExceedDebits,
}

/// One account: an owner's balance of one asset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountKey {
    pub owner: Owner,
    pub asset: AssetCode,
}

impl AccountKey {
    pub fn new(owner: Owner, asset: AssetCode) -> Self {
        Self { owner, asset }
    }
}

/// The four running totals of an account, as in TigerBeetle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Balances {
    pub debits_pending: Amount,
    pub debits_posted: Amount,
    pub credits_pending: Amount,
    pub credits_posted: Amount,
}

impl Balances {
    /// What a customer can spend: posted credits less posted and pending debits.
    pub fn available(&self) -> Amount {
        self.credits_posted
            .saturating_sub(self.debits_posted)
            .saturating_sub(self.debits_pending)
    }
    /// What is held by open orders (pending debits).
    pub fn held(&self) -> Amount {
        self.debits_pending
    }
    /// Posted credits minus posted debits, signed (the external account is negative).
    pub fn net_posted(&self) -> i128 {
        signed(self.credits_posted) - signed(self.debits_posted)
    }
}

fn signed(a: Amount) -> i128 {
    // Amounts are bounded far below i128::MAX by the arithmetic checks.
    i128::try_from(a.minor()).unwrap_or(i128::MAX)
}

/// A transfer id, chosen by the caller; the same id is applied at most once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransferId(pub u128);

/// The phase of a transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransferKind {
    /// Posted at once.
    Single,
    /// Reserves the amount on both accounts until posted or voided.
    Pending,
    /// Posts part or all of what remains of a pending transfer.
    PostPending { pending_id: TransferId },
    /// Releases part or all of what remains of a pending transfer.
    VoidPending { pending_id: TransferId },
}

/// Why money moved, for people reading the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransferCode {
    Deposit,
    OrderHold,
    Trade,
    Fee,
    HoldRelease,
}

impl TransferCode {
    pub fn as_str(&self) -> &'static str {
        match self {
            TransferCode::Deposit => "deposit",
            TransferCode::OrderHold => "order_hold",
            TransferCode::Trade => "trade",
            TransferCode::Fee => "fee",
            TransferCode::HoldRelease => "hold_release",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "deposit" => TransferCode::Deposit,
            "order_hold" => TransferCode::OrderHold,
            "trade" => TransferCode::Trade,
            "fee" => TransferCode::Fee,
            "hold_release" => TransferCode::HoldRelease,
            _ => return None,
        })
    }
}

/// One movement of money. For post and void transfers the accounts are those of the
/// pending transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Transfer {
    pub id: TransferId,
    pub debit: AccountKey,
    pub credit: AccountKey,
    pub amount: Amount,
    pub kind: TransferKind,
    pub code: TransferCode,
    pub timestamp_ms: u64,
}

/// The outcome of a transfer that the ledger accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Newly applied.
    Created,
    /// The same transfer was applied before; nothing changed.
    AlreadyApplied,
}

/// What remains of an unfinished pending transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingState {
    pub transfer: Transfer,
    pub remaining: Amount,
}

/// The ledger: accounts, the transfers applied, and the pending transfers still open.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    accounts: FxHashMap<AccountKey, Balances>,
    /// Every transfer applied, for idempotency. Ordered rather than hashed: a hash map
    /// this large doubles by rehashing everything at once, which stalled the exchange for
    /// tens of milliseconds each time; a B-tree grows a node at a time.
    transfers: BTreeMap<TransferId, Transfer>,
    pending: FxHashMap<TransferId, PendingState>,
}

/// An undo record, so that a linked chain of transfers is all-or-nothing.
#[derive(Debug)]
struct Undo {
    id: TransferId,
    debit: (AccountKey, Balances),
    credit: (AccountKey, Balances),
    pending: Option<(TransferId, Option<PendingState>)>,
}

impl Ledger {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a ledger from stored state: balances, every transfer applied, and what
    /// remains of each open pending transfer.
    pub fn restore(
        accounts: impl IntoIterator<Item = (AccountKey, Balances)>,
        transfers: impl IntoIterator<Item = Transfer>,
        pending: impl IntoIterator<Item = PendingState>,
    ) -> Self {
        Self {
            accounts: accounts.into_iter().collect(),
            transfers: transfers.into_iter().map(|t| (t.id, t)).collect(),
            pending: pending.into_iter().map(|p| (p.transfer.id, p)).collect(),
        }
    }

    pub fn balances(&self, key: &AccountKey) -> Balances {
        self.accounts.get(key).copied().unwrap_or_default()
    }

    pub fn accounts(&self) -> impl Iterator<Item = (&AccountKey, &Balances)> {
        self.accounts.iter()
    }

    /// How many transfers were ever applied.
    pub fn transfer_count(&self) -> usize {
        self.transfers.len()
    }

    pub fn transfer(&self, id: TransferId) -> Option<&Transfer> {
        self.transfers.get(&id)
    }

    pub fn pending(&self, id: TransferId) -> Option<&PendingState> {
        self.pending.get(&id)
    }

    pub fn pending_transfers(&self) -> impl Iterator<Item = &PendingState> {
        self.pending.values()
    }

    /// Applies one transfer.
    pub fn apply(&mut self, transfer: Transfer) -> Result<Applied, TransferError> {
        self.apply_one(transfer).map(|(applied, _)| applied)
    }

    /// Applies a linked chain: every transfer or none. Returns one outcome per transfer.
    pub fn apply_linked(&mut self, chain: &[Transfer]) -> Result<Vec<Applied>, TransferError> {
        let mut undo = Vec::with_capacity(chain.len());
        let mut outcomes = Vec::with_capacity(chain.len());
        for transfer in chain {
            match self.apply_one(*transfer) {
                Ok((applied, record)) => {
                    outcomes.push(applied);
                    if let Some(record) = record {
                        undo.push(record);
                    }
                }
                Err(error) => {
                    for record in undo.into_iter().rev() {
                        self.undo(record);
                    }
                    return Err(error);
                }
            }
        }
        Ok(outcomes)
    }

    fn undo(&mut self, record: Undo) {
        self.accounts.insert(record.debit.0, record.debit.1);
        self.accounts.insert(record.credit.0, record.credit.1);
        self.transfers.remove(&record.id);
        if let Some((pending_id, previous)) = record.pending {
            match previous {
                Some(state) => self.pending.insert(pending_id, state),
                None => self.pending.remove(&pending_id),
            };
        }
    }

    fn apply_one(&mut self, t: Transfer) -> Result<(Applied, Option<Undo>), TransferError> {
        if let Some(existing) = self.transfers.get(&t.id) {
            return if *existing == t {
                Ok((Applied::AlreadyApplied, None))
            } else {
                Err(TransferError::ExistsWithDifferentContent(t.id))
            };
        }
        if t.amount.is_zero() {
            return Err(TransferError::ZeroAmount(t.id));
        }
        let (debit_key, credit_key, pending_ref) = match t.kind {
            TransferKind::Single | TransferKind::Pending => (t.debit, t.credit, None),
            TransferKind::PostPending { pending_id } | TransferKind::VoidPending { pending_id } => {
                let state = self
                    .pending
                    .get(&pending_id)
                    .ok_or(TransferError::PendingNotFound(t.id, pending_id))?;
                if t.amount > state.remaining {
                    return Err(TransferError::ExceedsPending(t.id, pending_id));
                }
                if t.debit != state.transfer.debit || t.credit != state.transfer.credit {
                    return Err(TransferError::PendingNotFound(t.id, pending_id));
                }
                (state.transfer.debit, state.transfer.credit, Some(*state))
            }
        };
        if debit_key == credit_key {
            return Err(TransferError::SameAccount(t.id));
        }
        if debit_key.asset != credit_key.asset {
            return Err(TransferError::AssetMismatch(t.id));
        }
        let old_debit = self.balances(&debit_key);
        let old_credit = self.balances(&credit_key);
        let (new_debit, new_credit) = next_balances(&t, old_debit, old_credit)?;
        check_limit(t.id, debit_key.owner.limit(), &new_debit)?;
        check_limit(t.id, credit_key.owner.limit(), &new_credit)?;

        let mut pending_undo = None;
        match (t.kind, pending_ref) {
            (TransferKind::Pending, _) => {
                self.pending.insert(
                    t.id,
                    PendingState {
                        transfer: t,
                        remaining: t.amount,
                    },
                );
                pending_undo = Some((t.id, None));
            }
            (_, Some(state)) => {
                let pending_id = state.transfer.id;
                let remaining = state
                    .remaining
                    .checked_sub(t.amount)
                    .ok_or(TransferError::ExceedsPending(t.id, pending_id))?;
                if remaining.is_zero() {
                    self.pending.remove(&pending_id);
                } else {
                    self.pending.insert(
                        pending_id,
                        PendingState {
                            transfer: state.transfer,
                            remaining,
                        },
                    );
                }
                pending_undo = Some((pending_id, Some(state)));
            }
            _ => {}
        }
        self.accounts.insert(debit_key, new_debit);
        self.accounts.insert(credit_key, new_credit);
        self.transfers.insert(t.id, t);
        Ok((
            Applied::Created,
            Some(Undo {
                id: t.id,
                debit: (debit_key, old_debit),
                credit: (credit_key, old_credit),
                pending: pending_undo,
            }),
        ))
    }
}

/// The balances of both accounts after `t`, or an overflow or underflow error.
fn next_balances(
    t: &Transfer,
    mut debit: Balances,
    mut credit: Balances,
) -> Result<(Balances, Balances), TransferError> {
    let overflow = || TransferError::Overflow(t.id);
    let add = |a: Amount| a.checked_add(t.amount).ok_or_else(overflow);
    let sub = |a: Amount| a.checked_sub(t.amount).ok_or_else(overflow);
    match t.kind {
        TransferKind::Single => {
            debit.debits_posted = add(debit.debits_posted)?;
            credit.credits_posted = add(credit.credits_posted)?;
        }
        TransferKind::Pending => {
            debit.debits_pending = add(debit.debits_pending)?;
            credit.credits_pending = add(credit.credits_pending)?;
        }
        TransferKind::PostPending { .. } => {
            debit.debits_pending = sub(debit.debits_pending)?;
            debit.debits_posted = add(debit.debits_posted)?;
            credit.credits_pending = sub(credit.credits_pending)?;
            credit.credits_posted = add(credit.credits_posted)?;
        }
        TransferKind::VoidPending { .. } => {
            debit.debits_pending = sub(debit.debits_pending)?;
            credit.credits_pending = sub(credit.credits_pending)?;
        }
    }
    if debit.debits_posted > Amount::MAX || credit.credits_posted > Amount::MAX {
        return Err(overflow());
    }
    Ok((debit, credit))
}

/// TigerBeetle's rule: pending amounts count against the limit, pending credits do not
/// count towards it.
fn check_limit(id: TransferId, limit: BalanceLimit, b: &Balances) -> Result<(), TransferError> {
    let total = |x: Amount, y: Amount| x.checked_add(y).ok_or(TransferError::Overflow(id));
    match limit {
        BalanceLimit::DebitsMustNotExceedCredits => {
            if total(b.debits_pending, b.debits_posted)? > b.credits_posted {
                return Err(TransferError::ExceedsCredits(id));
            }
        }
        BalanceLimit::CreditsMustNotExceedDebits => {
            if total(b.credits_pending, b.credits_posted)? > b.debits_posted {
                return Err(TransferError::ExceedsDebits(id));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "ledger_tests.rs"]
mod tests;
