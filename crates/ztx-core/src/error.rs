//! Error values of the core: each names the offending input and whose fault it is.

use thiserror::Error;

use crate::ledger::TransferId;

/// Why a decimal string is not an amount. The caller's fault.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseAmountError {
    #[error("not a plain decimal number (digits, optionally one '.' and more digits)")]
    Malformed,
    #[error("more than {decimals} decimal places")]
    TooPrecise { decimals: u8 },
    #[error("larger than the largest accepted amount")]
    TooLarge,
}

/// Why the ledger refused a transfer. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TransferError {
    #[error("transfer {0:?} already exists with different content")]
    ExistsWithDifferentContent(TransferId),
    #[error("transfer {0:?}: amount must be positive")]
    ZeroAmount(TransferId),
    #[error("transfer {0:?}: debit and credit accounts are the same")]
    SameAccount(TransferId),
    #[error("transfer {0:?}: debit and credit accounts hold different assets")]
    AssetMismatch(TransferId),
    #[error("transfer {0:?}: the debit account would exceed its credits")]
    ExceedsCredits(TransferId),
    #[error("transfer {0:?}: the credit account would exceed its debits")]
    ExceedsDebits(TransferId),
    #[error("transfer {0:?}: pending transfer {1:?} not found or already finished")]
    PendingNotFound(TransferId, TransferId),
    #[error("transfer {0:?}: amount exceeds what remains of pending transfer {1:?}")]
    ExceedsPending(TransferId, TransferId),
    #[error("transfer {0:?}: arithmetic overflow")]
    Overflow(TransferId),
}
