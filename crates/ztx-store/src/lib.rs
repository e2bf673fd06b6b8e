//! Persistence for ztx: one [`Store`] trait with a SQLite and a PostgreSQL backend,
//! sharing one logical schema, one set of SQL statements and one row codec. The store
//! decides nothing: it writes what the core changed, in one transaction per batch, and
//! gives it back on restart.
#![forbid(unsafe_code)]

#[macro_use]
mod columns;
mod audit;
mod codec;
mod contact;
mod error;
mod model;
mod pg;
mod pg_tls;
mod read;
mod schema;
mod scope;
mod security;
mod sql;
mod sqlite;
pub mod testing;
mod write;

use ztx_core::{
    Amount, AssetCode, Changes, CustomerId, ExchangeState, OrderId, Trade, TradeId, TransferId,
};

pub use audit::{AuditAppend, AuditRow, StoredCheckpoint};
pub use error::{Result, StoreError};
pub use model::{
    ApiKeyCredential, ApiKeyId, ApiKeyRecord, Candle, CustomerKeyRow, CustomerRecord, InboxCommand,
    InboxCompletion, InboxId, InboxItem, KeyRewrap, KeyStatus, Mode, NewApiKey, OrderQuery,
    SealedEmailRow, StoredEmail,
};
pub use pg::{
    APPEND_ONLY_TABLES, KEY_MATERIAL_TABLES, PgStore, SUPPORT_COLUMNS, connect as pg_connect,
    grant_service_role, grant_support_role, grant_support_role_beside,
};
pub use schema::SCHEMA_VERSION;
pub use scope::CustomerScope;
pub use security::{CHANNELS, Notification, OutboxMessage, SecurityEffect};
pub use sqlite::SqliteStore;

/// Opens a new connection to the same store each call (a SQLite file or a PostgreSQL
/// URL): the engine's writer, its reader and the API's read pool each hold their own.
pub type StoreFactory = std::sync::Arc<dyn Fn() -> Result<Box<dyn Store>> + Send + Sync>;

/// Seals a new customer's address once their number is known (it is bound into the
/// sealing); the error is the caller's, in words.
pub type SealEmail<'a> =
    &'a mut dyn FnMut(CustomerId) -> std::result::Result<SealedEmailRow, String>;

/// The most rows one query returns, whatever limit the caller asks for.
pub const MAX_ROWS: u32 = 10_000;

/// The exchange's persistent state. Object safe: callers hold a `Box<dyn Store>`.
///
/// Reads take `&mut self` because a backend caches prepared statements on its single
/// connection. Time windows are inclusive; `None` means unbounded. Every list of history
/// follows Binance: with a `from_id`, ascending from that id; otherwise the most recent
/// `limit` rows, in ascending order. Limits are capped at [`MAX_ROWS`].
pub trait Store: Send {
    /// The mode the database was created for, if set.
    fn mode(&mut self) -> Result<Option<Mode>>;
    /// Records the mode once; refuses a different one later.
    fn init_mode(&mut self, mode: Mode) -> Result<()>;

    /// Creates a customer found by `email_index` (the address's blind index; unique),
    /// whose address `seal` seals, in one transaction.
    fn create_customer(
        &mut self,
        email_index: &str,
        seal: SealEmail<'_>,
        now_ms: u64,
    ) -> Result<CustomerId>;
    /// Up to `limit` customers' wrapped data keys after `after`, of KEK versions other
    /// than `except_version` (what a rotation to that version still has to re-wrap).
    fn customer_keys(
        &mut self,
        after: CustomerId,
        except_version: u32,
        limit: u32,
    ) -> Result<Vec<CustomerKeyRow>>;
    /// Replaces wrapped data keys still under their `from_version`, in one
    /// transaction; how many.
    fn rewrap_customer_keys(&mut self, rows: &[KeyRewrap]) -> Result<u64>;
    /// Up to `limit` customers whose address predates encryption, with the address.
    fn plain_emails(&mut self, limit: u32) -> Result<Vec<(CustomerId, String)>>;
    /// Seals one of those (see [`Store::plain_emails`]); whether it was still plain.
    fn seal_plain_email(
        &mut self,
        customer: CustomerId,
        email_index: &str,
        sealed: &SealedEmailRow,
    ) -> Result<bool>;
    /// Data keys per KEK version, and addresses still in the clear.
    fn key_status(&mut self) -> Result<KeyStatus>;
    /// A customer's address as stored, with the wrapped data key that opens it; for the
    /// holders of the key-encryption key only (on PostgreSQL the exchange's role may
    /// not read the data keys).
    fn sealed_email(&mut self, customer: CustomerId) -> Result<Option<StoredEmail>>;
    /// Whether the customer exists (a platform check, e.g. before queuing a deposit).
    fn customer_exists(&mut self, id: CustomerId) -> Result<bool>;

    fn create_api_key(&mut self, key: &NewApiKey) -> Result<ApiKeyId>;
    fn api_key_by_key(&mut self, api_key: &str) -> Result<Option<ApiKeyRecord>>;
    /// The only way to a customer's own rows: their record, keys, orders, trades and
    /// notifications (see [`CustomerScope`]).
    fn customer_scope(&mut self, customer: CustomerId) -> Result<CustomerScope<'_>>;

    /// Persists a batch of changes in one transaction: all of it or, on error, none.
    fn apply(&mut self, changes: &Changes) -> Result<()> {
        self.commit(changes, &AuditAppend::default())
    }
    /// Persists a batch of changes and the audit entries (and checkpoint) that record
    /// them, in one transaction. The entries must continue the log where it ends.
    fn commit(&mut self, changes: &Changes, audit: &AuditAppend) -> Result<()>;
    /// Everything the exchange resumes from: accounts sorted by key, transfers and
    /// pending transfers by id, open orders by (symbol, priority).
    fn load_state(&mut self) -> Result<ExchangeState>;

    fn recent_trades(&mut self, symbol: &str, limit: u32) -> Result<Vec<Trade>>;
    fn last_trade(&mut self, symbol: &str) -> Result<Option<Trade>>;
    /// The first trade of a market at or after `start_ms`.
    fn first_trade_since(&mut self, symbol: &str, start_ms: u64) -> Result<Option<Trade>>;
    /// 1-minute candles by open time; with a `start_ms` ascending from it, otherwise the
    /// most recent `limit`.
    fn candles(
        &mut self,
        symbol: &str,
        start_ms: Option<u64>,
        end_ms: Option<u64>,
        limit: u32,
    ) -> Result<Vec<Candle>>;

    /// Queues a deposit for the running server; the customer must exist.
    fn enqueue_deposit(
        &mut self,
        transfer_id: TransferId,
        customer: CustomerId,
        asset: AssetCode,
        amount: Amount,
        now_ms: u64,
    ) -> Result<InboxId>;
    /// Items not completed yet, oldest first, after `after` (the last one the caller has
    /// taken and not yet seen completed; `InboxId(0)` for all).
    fn pending_inbox(&mut self, after: InboxId, limit: u32) -> Result<Vec<InboxItem>>;
    /// Marks an item done, once.
    fn complete_inbox(&mut self, id: InboxId, result: &str, now_ms: u64) -> Result<()>;
    fn inbox_item(&mut self, id: InboxId) -> Result<Option<InboxItem>>;
    /// Upkeep to run off the commit path, on a connection of its own, about every tenth
    /// of a second (SQLite: a passive WAL checkpoint, its copies synced; PostgreSQL:
    /// nothing).
    fn maintain(&mut self) -> Result<()>;
    /// Run on the committing connection between two commits, right after `maintain`
    /// elsewhere (SQLite: copies the few commits that checkpoint missed, so the next
    /// commit can start the WAL over; PostgreSQL: nothing).
    fn complete_checkpoint(&mut self) -> Result<()>;
    /// Adds up to `limit` orders and `limit` trades committed since the last call to the
    /// per-customer history indexes, in one transaction; returns how many rows it added.
    /// Reads are complete whether or not this has run: it only moves rows from the small
    /// unindexed tail, which every read also scans, into the index. Call it in the
    /// background every few tens of milliseconds, on a connection of its own: one call
    /// indexes many commits at once, which is what keeps the per-customer B-trees off
    /// the commit path, and it never holds a lock the commits need (SQLite keeps the
    /// indexes in a database file of their own; PostgreSQL does not lock readers out).
    fn index_history(&mut self, limit: u32) -> Result<u64>;
    /// The largest order id and trade id in the per-customer history indexes (the
    /// indexing lag is the distance from the newest ids).
    fn history_indexed_to(&mut self) -> Result<(OrderId, TradeId)>;

    /// How many entries the audit log holds.
    fn audit_size(&mut self) -> Result<u64>;
    /// Up to `limit` entries from index `start` on, in order.
    fn audit_entries(&mut self, start: u64, limit: u32) -> Result<Vec<AuditRow>>;
    /// The right edge of the tree of the first `size` entries, to append after it.
    fn audit_frontier(&mut self, size: u64) -> Result<ztx_audit::Frontier>;
    fn audit_root(&mut self, size: u64) -> Result<ztx_audit::Hash>;
    fn audit_inclusion_proof(&mut self, index: u64, size: u64) -> Result<Vec<ztx_audit::Hash>>;
    fn audit_consistency_proof(&mut self, from: u64, to: u64) -> Result<Vec<ztx_audit::Hash>>;
    /// Stores the tree nodes completed by up to `limit` entries not yet indexed, off the
    /// commit path (like [`Store::index_history`]); returns how many entries it covered.
    fn index_audit(&mut self, limit: u32) -> Result<u64>;
    /// The newest signed checkpoint.
    fn latest_checkpoint(&mut self) -> Result<Option<StoredCheckpoint>>;
    /// Up to `limit` checkpoints of sizes above `after_size`, smallest first.
    fn audit_checkpoints(&mut self, after_size: u64, limit: u32) -> Result<Vec<StoredCheckpoint>>;

    /// Outbox messages not yet delivered, oldest first, for a sender.
    fn pending_outbox(&mut self, limit: u32) -> Result<Vec<OutboxMessage>>;
    /// A sender's attempt at message `id`: delivered, or failed with the error (the
    /// message stays pending).
    fn outbox_attempt(
        &mut self,
        id: u64,
        outcome: std::result::Result<(), &str>,
        now_ms: u64,
    ) -> Result<()>;
    /// Every address each key was used from.
    fn key_addresses(&mut self) -> Result<Vec<(ApiKeyId, String)>>;
}

/// Implements [`Store`] for a backend by calling the shared operations.
macro_rules! impl_store {
    ($backend:ty) => {
        impl Store for $backend {
            fn mode(&mut self) -> Result<Option<Mode>> {
                read::mode(self)
            }
            fn init_mode(&mut self, mode: Mode) -> Result<()> {
                write::init_mode(self, mode)
            }
            fn create_customer(
                &mut self,
                email_index: &str,
                seal: SealEmail<'_>,
                now_ms: u64,
            ) -> Result<CustomerId> {
                write::create_customer(self, email_index, seal, now_ms)
            }
            fn customer_keys(
                &mut self,
                after: CustomerId,
                except_version: u32,
                limit: u32,
            ) -> Result<Vec<CustomerKeyRow>> {
                contact::keys(self, after, except_version, limit)
            }
            fn rewrap_customer_keys(&mut self, rows: &[KeyRewrap]) -> Result<u64> {
                contact::rewrap(self, rows)
            }
            fn plain_emails(&mut self, limit: u32) -> Result<Vec<(CustomerId, String)>> {
                contact::plain_emails(self, limit)
            }
            fn seal_plain_email(
                &mut self,
                customer: CustomerId,
                email_index: &str,
                sealed: &SealedEmailRow,
            ) -> Result<bool> {
                contact::seal_plain_email(self, customer, email_index, sealed)
            }
            fn key_status(&mut self) -> Result<KeyStatus> {
                contact::status(self)
            }
            fn sealed_email(&mut self, customer: CustomerId) -> Result<Option<StoredEmail>> {
                read::sealed_email(self, customer)
            }
            fn customer_exists(&mut self, id: CustomerId) -> Result<bool> {
                write::customer_exists(self, id)
            }
            fn create_api_key(&mut self, key: &NewApiKey) -> Result<ApiKeyId> {
                write::create_api_key(self, key)
            }
            fn api_key_by_key(&mut self, api_key: &str) -> Result<Option<ApiKeyRecord>> {
                read::api_key_by_key(self, api_key)
            }
            fn customer_scope(&mut self, customer: CustomerId) -> Result<CustomerScope<'_>> {
                let conn = sql::Backend::customer_conn(self, customer)?;
                Ok(CustomerScope::new(conn, customer))
            }
            fn commit(&mut self, changes: &Changes, audit: &AuditAppend) -> Result<()> {
                write::apply(self, changes, audit)
            }
            fn audit_size(&mut self) -> Result<u64> {
                audit::size(self)
            }
            fn audit_entries(&mut self, start: u64, limit: u32) -> Result<Vec<AuditRow>> {
                audit::entries(self, start, limit)
            }
            fn audit_frontier(&mut self, size: u64) -> Result<ztx_audit::Frontier> {
                sql::Backend::history(self)?;
                audit::frontier(self, size)
            }
            fn audit_root(&mut self, size: u64) -> Result<ztx_audit::Hash> {
                sql::Backend::history(self)?;
                audit::root(self, size)
            }
            fn audit_inclusion_proof(
                &mut self,
                index: u64,
                size: u64,
            ) -> Result<Vec<ztx_audit::Hash>> {
                sql::Backend::history(self)?;
                audit::inclusion_proof(self, index, size)
            }
            fn audit_consistency_proof(
                &mut self,
                from: u64,
                to: u64,
            ) -> Result<Vec<ztx_audit::Hash>> {
                sql::Backend::history(self)?;
                audit::consistency_proof(self, from, to)
            }
            fn index_audit(&mut self, limit: u32) -> Result<u64> {
                audit::index_audit(self, limit)
            }
            fn latest_checkpoint(&mut self) -> Result<Option<StoredCheckpoint>> {
                Ok(audit::checkpoints(self, None, 1)?.into_iter().next())
            }
            fn audit_checkpoints(
                &mut self,
                after_size: u64,
                limit: u32,
            ) -> Result<Vec<StoredCheckpoint>> {
                audit::checkpoints(self, Some(after_size), limit)
            }
            fn pending_outbox(&mut self, limit: u32) -> Result<Vec<OutboxMessage>> {
                security::pending_outbox(self, limit)
            }
            fn outbox_attempt(
                &mut self,
                id: u64,
                outcome: std::result::Result<(), &str>,
                now_ms: u64,
            ) -> Result<()> {
                security::outbox_attempt(self, id, outcome, now_ms)
            }
            fn key_addresses(&mut self) -> Result<Vec<(ApiKeyId, String)>> {
                security::key_addresses(self)
            }
            fn load_state(&mut self) -> Result<ExchangeState> {
                // One transaction, so the state is a consistent snapshot.
                sql::Backend::transaction(self, read::load_state)
            }
            fn recent_trades(&mut self, symbol: &str, limit: u32) -> Result<Vec<Trade>> {
                read::recent_trades(self, symbol, limit)
            }
            fn last_trade(&mut self, symbol: &str) -> Result<Option<Trade>> {
                read::last_trade(self, symbol)
            }
            fn first_trade_since(&mut self, symbol: &str, start_ms: u64) -> Result<Option<Trade>> {
                read::first_trade_since(self, symbol, start_ms)
            }
            fn candles(
                &mut self,
                symbol: &str,
                start_ms: Option<u64>,
                end_ms: Option<u64>,
                limit: u32,
            ) -> Result<Vec<Candle>> {
                read::candles(self, symbol, (start_ms, end_ms), limit)
            }
            fn enqueue_deposit(
                &mut self,
                transfer_id: TransferId,
                customer: CustomerId,
                asset: AssetCode,
                amount: Amount,
                now_ms: u64,
            ) -> Result<InboxId> {
                write::enqueue_deposit(self, transfer_id, customer, asset, amount, now_ms)
            }
            fn pending_inbox(&mut self, after: InboxId, limit: u32) -> Result<Vec<InboxItem>> {
                read::pending_inbox(self, after, limit)
            }
            fn complete_inbox(&mut self, id: InboxId, result: &str, now_ms: u64) -> Result<()> {
                write::complete_inbox(self, id, result, now_ms)
            }
            fn maintain(&mut self) -> Result<()> {
                sql::Backend::maintain(self)
            }
            fn complete_checkpoint(&mut self) -> Result<()> {
                sql::Backend::complete_checkpoint(self)
            }
            fn index_history(&mut self, limit: u32) -> Result<u64> {
                sql::Backend::history(self)?;
                write::index_history(self, limit)
            }
            fn history_indexed_to(&mut self) -> Result<(OrderId, TradeId)> {
                sql::Backend::history(self)?;
                Ok((
                    OrderId(write::indexed_to(self, "orders")?),
                    TradeId(write::indexed_to(self, "trades")?),
                ))
            }
            fn inbox_item(&mut self, id: InboxId) -> Result<Option<InboxItem>> {
                read::inbox_item(self, id)
            }
        }
    };
}

impl_store!(SqliteStore);
impl_store!(PgStore);

/// Opens a store: a `postgres://` or `postgresql://` URL connects to PostgreSQL,
/// anything else is the path of a SQLite file.
pub fn open(url_or_path: &str) -> Result<Box<dyn Store>> {
    if url_or_path.starts_with("postgres://") || url_or_path.starts_with("postgresql://") {
        Ok(Box::new(PgStore::connect(url_or_path)?))
    } else {
        Ok(Box::new(SqliteStore::open(url_or_path)?))
    }
}
