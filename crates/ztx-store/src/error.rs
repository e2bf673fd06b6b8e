//! The store's error values: each names the input, table or column at fault.

use thiserror::Error;
use ztx_core::{CustomerId, TradeId, TransferId};

use crate::model::{InboxId, Mode};

/// Why a store operation failed. Nothing was changed by a failed write.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The caller's fault: another customer already uses this e-mail address (the store
    /// holds only its blind index, so the caller names it).
    #[error("a customer with this e-mail address already exists")]
    DuplicateEmail,
    /// The caller's sealing of a new customer's contact data failed.
    #[error("cannot seal the customer's contact data: {0}")]
    Sealing(String),
    /// The caller's fault: the public API key string is already taken.
    #[error("API key {0:?} already exists")]
    DuplicateApiKey(String),
    /// The caller's fault: a transfer with this id is already stored.
    #[error("transfer {0:?} is already stored")]
    DuplicateTransfer(TransferId),
    /// The caller's fault: a trade with this id is already stored.
    #[error("trade {0:?} is already stored")]
    DuplicateTrade(TradeId),
    /// The caller's fault: no such customer.
    #[error("customer {0:?} does not exist")]
    UnknownCustomer(CustomerId),
    /// The caller's fault: no such inbox item.
    #[error("inbox item {0:?} does not exist")]
    UnknownInboxItem(InboxId),
    /// The caller's fault: the inbox item was completed before.
    #[error("outbox message {0} does not exist or is already delivered")]
    UnknownOutboxMessage(u64),
    #[error("inbox item {0:?} is already completed")]
    InboxAlreadyCompleted(InboxId),
    /// The operator's fault: the database was created for the other mode.
    #[error("database mode is {stored:?}, refusing to use it as {requested:?}")]
    ModeMismatch { stored: Mode, requested: Mode },
    /// The operator's fault: the database was written by a newer ztx.
    #[error("database schema version {found} is newer than this build supports ({supported})")]
    SchemaTooNew { found: u32, supported: u32 },
    /// The caller's fault: a number does not fit the database's signed 64-bit integers,
    /// or a running total overflowed.
    #[error("{what} = {value} is out of the storable range")]
    OutOfRange { what: &'static str, value: String },
    /// The data's fault: a stored value cannot be decoded. Never silently skipped.
    #[error("corrupt row in {table}.{column}: {detail}")]
    CorruptRow {
        table: &'static str,
        column: &'static str,
        detail: String,
    },
    /// The operator's fault: the database URL's TLS settings, or the files they name,
    /// cannot be used (the message names the parameter or file and the problem).
    #[error("database TLS: {0}")]
    Tls(String),
    /// The operator's fault: the database refused a setting the store depends on.
    #[error("database setting refused: {0}")]
    Setting(String),
    /// The operator's fault: a database role cannot serve as asked (see
    /// [`crate::grant_service_role`]), or lacks a privilege the store needs.
    #[error("{0}")]
    Role(String),
    /// A programming error: a statement's `$N` parameters are not numbered in order of
    /// first use, which SQLite would silently bind to the wrong values.
    #[error("statement parameters out of order: {0}")]
    ParameterOrder(&'static str),
    /// A programming error: audit entries must continue the log exactly at its end.
    #[error("audit entry {got} appended where entry {expected} is next")]
    AuditGap { expected: u64, got: u64 },
    /// The caller's fault: a proof or node of a tree larger than the log.
    #[error(transparent)]
    AuditRange(#[from] ztx_audit::RangeError),
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database file could not be opened or synced outside SQLite.
    #[error("database file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    /// The server's own message when it sent one (the client's `Display` says only
    /// "db error").
    #[error("PostgreSQL: {}", postgres_message(.0))]
    Postgres(#[from] postgres::Error),
}

fn postgres_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

impl StoreError {
    /// Whether the database refused a write because of a UNIQUE or PRIMARY KEY constraint.
    pub(crate) fn is_unique_violation(&self) -> bool {
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            }
            StoreError::Postgres(e) => {
                e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION)
            }
            _ => false,
        }
    }

    pub(crate) fn corrupt(
        table: &'static str,
        column: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        StoreError::CorruptRow {
            table,
            column,
            detail: detail.into(),
        }
    }
}

/// The store's result type.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
