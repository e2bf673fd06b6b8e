//! Persistence for ztx: one [`Store`] trait with a SQLite and a PostgreSQL backend,
//! sharing one logical schema, one set of SQL statements and one row codec. The store
//! decides nothing: it writes what the core changed, in one transaction per batch, and
//! gives it back on restart.
#![forbid(unsafe_code)]

#[macro_use]
mod columns;
pub mod access;
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
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod write;

use ztx_core::{
    Amount, AssetCode, Changes, CustomerId, ExchangeState, OrderId, Trade, TradeId, TransferId,
};

pub use access::{Activity, DataAccess, Segment, commit_access};
pub use audit::{AuditAppend, AuditRow, StoredCheckpoint};
pub use error::{Result, StoreError};
pub use model::{
    ApiKeyCredential, ApiKeyId, ApiKeyRecord, Candle, CustomerKeyRow, CustomerRecord, InboxCommand,
    InboxCompletion, InboxId, InboxItem, KeyRewrap, KeyStatus, Mode, NewApiKey, OrderQuery,
    SealedEmailRow, SecretReseal, StoredEmail, StoredSecret, StoredWebhook, WebhookRewrap,
    WrappedDataKey,
};
pub use pg::{
    APPEND_ONLY_TABLES, KEY_MATERIAL_TABLES, PgStore, SUPPORT_COLUMNS, connect as pg_connect,
    grant_service_role, grant_support_role, grant_support_role_beside,
};
pub use schema::SCHEMA_VERSION;
pub use scope::CustomerScope;
pub use security::{
    Channel, Destination, Notification, OUTBOX_MAX_ATTEMPTS, OUTBOX_PER_CUSTOMER, OutboxMessage,
    SecurityEffect, outbox_retry_after_ms,
};
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
    /// Turns accounting of data accesses on or off for this connection (off when
    /// opened); see [`access`].
    fn account(&mut self, on: bool);
    /// The accesses accounted for since the last take, oldest first, and how many older
    /// ones were dropped untaken (past [`access::MAX_UNTAKEN`]).
    fn take_accesses(&mut self) -> (Vec<DataAccess>, u64);

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
    /// Up to `limit` HMAC keys after `after`, by id, whose secret is under the master key
    /// (an older release's) or whose data key is wrapped by a KEK version other than
    /// `except_version`.
    fn api_key_secrets(
        &mut self,
        after: ApiKeyId,
        except_version: u32,
        limit: u32,
    ) -> Result<Vec<StoredSecret>>;
    /// Stores each re-sealed secret (or re-wrapped data key) whose row is still as it was
    /// read, in one transaction; how many.
    fn reseal_api_key_secrets(&mut self, rows: &[SecretReseal]) -> Result<u64>;
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
    /// Stores the nodes the writer completed appending entries `start..end` (see
    /// [`AuditRow::chain_encoded`]) without reading the entries; 0 when the indexed mark
    /// is not within that range (nothing changed: [`Store::index_audit`] then reads).
    fn index_audit_nodes(
        &mut self,
        start: u64,
        end: u64,
        nodes: &[ztx_audit::Completed],
    ) -> Result<u64>;
    /// The newest signed checkpoint.
    fn latest_checkpoint(&mut self) -> Result<Option<StoredCheckpoint>>;
    /// Up to `limit` checkpoints of sizes above `after_size`, smallest first.
    fn audit_checkpoints(&mut self, after_size: u64, limit: u32) -> Result<Vec<StoredCheckpoint>>;

    /// Up to `limit` outbox messages of `channel` due at `now_ms`, oldest first, at most
    /// [`OUTBOX_PER_CUSTOMER`] of each customer's, each with its destination sealed,
    /// for a sender.
    fn pending_outbox(
        &mut self,
        channel: Channel,
        now_ms: u64,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>>;
    /// Up to `limit` webhooks' wrapped data keys, of customers after `after`, of KEK
    /// versions other than `except_version`, for a rotation.
    fn webhook_keys(
        &mut self,
        after: CustomerId,
        except_version: u32,
        limit: u32,
    ) -> Result<Vec<CustomerKeyRow>>;
    /// Replaces webhooks' wrapped data keys (each only if unchanged meanwhile); how many.
    fn rewrap_webhook_keys(&mut self, rows: &[WebhookRewrap]) -> Result<u64>;
    /// A sender's attempt at message `id`: delivered, or failed with the error (tried
    /// again after [`outbox_retry_after_ms`], given up after [`OUTBOX_MAX_ATTEMPTS`]).
    fn outbox_attempt(
        &mut self,
        id: u64,
        outcome: std::result::Result<(), &str>,
        now_ms: u64,
    ) -> Result<()>;
    /// Every address each key was used from.
    fn key_addresses(&mut self) -> Result<Vec<(ApiKeyId, String)>>;
    /// The addresses banned at `now_ms`, and until when.
    fn ip_bans(&mut self, now_ms: u64) -> Result<Vec<(String, u64)>>;
}

/// Implements [`Store`] for a backend by calling the shared operations, each accounted
/// for (see [`access`]) with the activity, tables and segment it names here.
macro_rules! impl_store {
    ($backend:ty) => {
        impl Store for $backend {
            fn account(&mut self, on: bool) {
                self.accounting.set(on);
            }
            fn take_accesses(&mut self) -> (Vec<DataAccess>, u64) {
                self.accounting.take()
            }
            fn mode(&mut self) -> Result<Option<Mode>> {
                let r = read::mode(self);
                self.accounting.note("mode", Read, &["meta"], Platform, r)
            }
            fn init_mode(&mut self, mode: Mode) -> Result<()> {
                let r = write::init_mode(self, mode);
                self.accounting
                    .note_one("init_mode", Write, &["meta"], Platform, r)
            }
            fn create_customer(
                &mut self,
                email_index: &str,
                seal: SealEmail<'_>,
                now_ms: u64,
            ) -> Result<CustomerId> {
                let r = write::create_customer(self, email_index, seal, now_ms);
                let segment = r.as_ref().map_or(Platform, |c| Segment::Customer(*c));
                self.accounting
                    .note_one("create_customer", Create, CUSTOMER_TABLES, segment, r)
            }
            fn customer_keys(
                &mut self,
                after: CustomerId,
                except_version: u32,
                limit: u32,
            ) -> Result<Vec<CustomerKeyRow>> {
                let r = contact::keys(self, Customers, after, except_version, limit);
                self.accounting
                    .note("customer_keys", Query, &["customer_keys"], Platform, r)
            }
            fn rewrap_customer_keys(&mut self, rows: &[KeyRewrap]) -> Result<u64> {
                let r = contact::rewrap(self, rows);
                self.accounting.note(
                    "rewrap_customer_keys",
                    Update,
                    &["customer_keys"],
                    Platform,
                    r,
                )
            }
            fn plain_emails(&mut self, limit: u32) -> Result<Vec<(CustomerId, String)>> {
                let r = contact::plain_emails(self, limit);
                self.accounting
                    .note("plain_emails", Query, &["customers"], Platform, r)
            }
            fn seal_plain_email(
                &mut self,
                customer: CustomerId,
                email_index: &str,
                sealed: &SealedEmailRow,
            ) -> Result<bool> {
                let r = contact::seal_plain_email(self, customer, email_index, sealed);
                self.accounting.note_one(
                    "seal_plain_email",
                    Update,
                    CUSTOMER_TABLES,
                    Segment::Customer(customer),
                    r,
                )
            }
            fn api_key_secrets(
                &mut self,
                after: ApiKeyId,
                except_version: u32,
                limit: u32,
            ) -> Result<Vec<StoredSecret>> {
                let r = contact::secrets(self, after, except_version, limit);
                self.accounting
                    .note("api_key_secrets", Query, &["api_keys"], Platform, r)
            }
            fn reseal_api_key_secrets(&mut self, rows: &[SecretReseal]) -> Result<u64> {
                let r = contact::reseal_secrets(self, rows);
                self.accounting
                    .note("reseal_api_key_secrets", Update, &["api_keys"], Platform, r)
            }
            fn key_status(&mut self) -> Result<KeyStatus> {
                let r = contact::status(self);
                self.accounting.note_one(
                    "key_status",
                    Query,
                    &["customers", "customer_keys", "api_keys", "webhooks"],
                    Platform,
                    r,
                )
            }
            fn sealed_email(&mut self, customer: CustomerId) -> Result<Option<StoredEmail>> {
                let r = read::sealed_email(self, customer);
                self.accounting.note(
                    "sealed_email",
                    Read,
                    CUSTOMER_TABLES,
                    Segment::Customer(customer),
                    r,
                )
            }
            fn customer_exists(&mut self, id: CustomerId) -> Result<bool> {
                let r = write::customer_exists(self, id);
                self.accounting.note(
                    "customer_exists",
                    Read,
                    &["customers"],
                    Segment::Customer(id),
                    r,
                )
            }
            fn create_api_key(&mut self, key: &NewApiKey) -> Result<ApiKeyId> {
                let r = write::create_api_key(self, key);
                self.accounting.note_one(
                    "create_api_key",
                    Create,
                    &["api_keys"],
                    Segment::Customer(key.customer),
                    r,
                )
            }
            fn api_key_by_key(&mut self, api_key: &str) -> Result<Option<ApiKeyRecord>> {
                let r = read::api_key_by_key(self, api_key);
                // Looked up before anyone is known: the segment is whose key it is.
                let segment = match &r {
                    Ok(Some(record)) => Segment::Customer(record.customer),
                    _ => Platform,
                };
                self.accounting
                    .note("api_key_by_key", Read, &["api_keys"], segment, r)
            }
            fn customer_scope(&mut self, customer: CustomerId) -> Result<CustomerScope<'_>> {
                let accounting = self.accounting.clone();
                let conn = sql::Backend::customer_conn(self, customer)?;
                Ok(CustomerScope::new(conn, customer, accounting))
            }
            fn commit(&mut self, changes: &Changes, audit: &AuditAppend) -> Result<()> {
                // Accounted for by the writer, in this very commit: see `commit_access`.
                write::apply(self, changes, audit)
            }
            fn audit_size(&mut self) -> Result<u64> {
                let r = audit::size(self);
                self.accounting
                    .note_one("audit_size", Read, &["audit_entries"], Platform, r)
            }
            fn audit_entries(&mut self, start: u64, limit: u32) -> Result<Vec<AuditRow>> {
                let r = audit::entries(self, start, limit);
                self.accounting
                    .note("audit_entries", Query, &["audit_entries"], Platform, r)
            }
            fn audit_frontier(&mut self, size: u64) -> Result<ztx_audit::Frontier> {
                let r = sql::Backend::history(self).and_then(|()| audit::frontier(self, size));
                self.accounting
                    .note_one("audit_frontier", Read, AUDIT_TREE_TABLES, Platform, r)
            }
            fn audit_root(&mut self, size: u64) -> Result<ztx_audit::Hash> {
                let r = sql::Backend::history(self).and_then(|()| audit::root(self, size));
                self.accounting
                    .note_one("audit_root", Read, AUDIT_TREE_TABLES, Platform, r)
            }
            fn audit_inclusion_proof(
                &mut self,
                index: u64,
                size: u64,
            ) -> Result<Vec<ztx_audit::Hash>> {
                let r = sql::Backend::history(self)
                    .and_then(|()| audit::inclusion_proof(self, index, size));
                self.accounting.note(
                    "audit_inclusion_proof",
                    Read,
                    AUDIT_TREE_TABLES,
                    Platform,
                    r,
                )
            }
            fn audit_consistency_proof(
                &mut self,
                from: u64,
                to: u64,
            ) -> Result<Vec<ztx_audit::Hash>> {
                let r = sql::Backend::history(self)
                    .and_then(|()| audit::consistency_proof(self, from, to));
                self.accounting.note(
                    "audit_consistency_proof",
                    Read,
                    AUDIT_TREE_TABLES,
                    Platform,
                    r,
                )
            }
            fn index_audit(&mut self, limit: u32) -> Result<u64> {
                // The log's own derived rows (see `access`): accounting for them would add
                // an entry to index for every one indexed, without end.
                audit::index_audit(self, limit)
            }
            fn index_audit_nodes(
                &mut self,
                start: u64,
                end: u64,
                nodes: &[ztx_audit::Completed],
            ) -> Result<u64> {
                // Derived rows of the log, as `index_audit`'s.
                audit::index_audit_nodes(self, start, end, nodes)
            }
            fn latest_checkpoint(&mut self) -> Result<Option<StoredCheckpoint>> {
                let r = audit::checkpoints(self, None, 1).map(|c| c.into_iter().next());
                self.accounting.note(
                    "latest_checkpoint",
                    Read,
                    &["audit_checkpoints"],
                    Platform,
                    r,
                )
            }
            fn audit_checkpoints(
                &mut self,
                after_size: u64,
                limit: u32,
            ) -> Result<Vec<StoredCheckpoint>> {
                let r = audit::checkpoints(self, Some(after_size), limit);
                self.accounting.note(
                    "audit_checkpoints",
                    Query,
                    &["audit_checkpoints"],
                    Platform,
                    r,
                )
            }
            fn pending_outbox(
                &mut self,
                channel: Channel,
                now_ms: u64,
                limit: u32,
            ) -> Result<Vec<OutboxMessage>> {
                let r = security::pending_outbox(self, channel, now_ms, limit);
                let tables: &'static [&'static str] = match channel {
                    Channel::Email => &[
                        "notification_outbox",
                        "notifications",
                        "customers",
                        "customer_keys",
                    ],
                    Channel::Webhook => &["notification_outbox", "notifications", "webhooks"],
                };
                self.accounting
                    .note("pending_outbox", Query, tables, Platform, r)
            }
            fn webhook_keys(
                &mut self,
                after: CustomerId,
                except_version: u32,
                limit: u32,
            ) -> Result<Vec<CustomerKeyRow>> {
                let r = contact::keys(self, Webhooks, after, except_version, limit);
                self.accounting
                    .note("webhook_keys", Query, &["webhooks"], Platform, r)
            }
            fn rewrap_webhook_keys(&mut self, rows: &[WebhookRewrap]) -> Result<u64> {
                let r = contact::rewrap_webhooks(self, rows);
                self.accounting
                    .note("rewrap_webhook_keys", Update, &["webhooks"], Platform, r)
            }
            fn outbox_attempt(
                &mut self,
                id: u64,
                outcome: std::result::Result<(), &str>,
                now_ms: u64,
            ) -> Result<()> {
                let r = security::outbox_attempt(self, id, outcome, now_ms);
                self.accounting.note_one(
                    "outbox_attempt",
                    Update,
                    &["notification_outbox"],
                    Platform,
                    r,
                )
            }
            fn key_addresses(&mut self) -> Result<Vec<(ApiKeyId, String)>> {
                let r = security::key_addresses(self);
                self.accounting
                    .note("key_addresses", Query, &["key_addresses"], Platform, r)
            }
            fn ip_bans(&mut self, now_ms: u64) -> Result<Vec<(String, u64)>> {
                let r = security::ip_bans(self, now_ms);
                self.accounting
                    .note("ip_bans", Query, &["ip_bans"], Platform, r)
            }
            fn load_state(&mut self) -> Result<ExchangeState> {
                // One transaction, so the state is a consistent snapshot.
                let r = sql::Backend::transaction(self, read::load_state);
                self.accounting
                    .note_one("load_state", Query, STATE_TABLES, Platform, r)
            }
            fn recent_trades(&mut self, symbol: &str, limit: u32) -> Result<Vec<Trade>> {
                let r = read::recent_trades(self, symbol, limit);
                self.accounting
                    .note("recent_trades", Query, &["trades"], Platform, r)
            }
            fn last_trade(&mut self, symbol: &str) -> Result<Option<Trade>> {
                let r = read::last_trade(self, symbol);
                self.accounting
                    .note("last_trade", Read, &["trades"], Platform, r)
            }
            fn first_trade_since(&mut self, symbol: &str, start_ms: u64) -> Result<Option<Trade>> {
                let r = read::first_trade_since(self, symbol, start_ms);
                self.accounting
                    .note("first_trade_since", Read, &["trades"], Platform, r)
            }
            fn candles(
                &mut self,
                symbol: &str,
                start_ms: Option<u64>,
                end_ms: Option<u64>,
                limit: u32,
            ) -> Result<Vec<Candle>> {
                let r = read::candles(self, symbol, (start_ms, end_ms), limit);
                self.accounting
                    .note("candles", Query, &["candles"], Platform, r)
            }
            fn enqueue_deposit(
                &mut self,
                transfer_id: TransferId,
                customer: CustomerId,
                asset: AssetCode,
                amount: Amount,
                now_ms: u64,
            ) -> Result<InboxId> {
                let r = write::enqueue_deposit(self, transfer_id, customer, asset, amount, now_ms);
                self.accounting.note_one(
                    "enqueue_deposit",
                    Create,
                    &["inbox"],
                    Segment::Customer(customer),
                    r,
                )
            }
            fn pending_inbox(&mut self, after: InboxId, limit: u32) -> Result<Vec<InboxItem>> {
                let r = read::pending_inbox(self, after, limit);
                self.accounting
                    .note("pending_inbox", Query, &["inbox"], Platform, r)
            }
            fn complete_inbox(&mut self, id: InboxId, result: &str, now_ms: u64) -> Result<()> {
                let r = write::complete_inbox(self, id, result, now_ms);
                self.accounting
                    .note_one("complete_inbox", Update, &["inbox"], Platform, r)
            }
            fn maintain(&mut self) -> Result<()> {
                // Touches no row: not a data access (see `access`).
                sql::Backend::maintain(self)
            }
            fn complete_checkpoint(&mut self) -> Result<()> {
                sql::Backend::complete_checkpoint(self)
            }
            fn index_history(&mut self, limit: u32) -> Result<u64> {
                let r =
                    sql::Backend::history(self).and_then(|()| write::index_history(self, limit));
                self.accounting
                    .note("index_history", Write, HISTORY_INDEX_TABLES, Platform, r)
            }
            fn history_indexed_to(&mut self) -> Result<(OrderId, TradeId)> {
                let r = sql::Backend::history(self).and_then(|()| {
                    Ok((
                        OrderId(write::indexed_to(self, "orders")?),
                        TradeId(write::indexed_to(self, "trades")?),
                    ))
                });
                self.accounting.note_one(
                    "history_indexed_to",
                    Read,
                    &["history_indexed"],
                    Platform,
                    r,
                )
            }
            fn inbox_item(&mut self, id: InboxId) -> Result<Option<InboxItem>> {
                let r = read::inbox_item(self, id);
                self.accounting
                    .note("inbox_item", Read, &["inbox"], Platform, r)
            }
        }
    };
}

use access::Activity::{Create, Query, Read, Update, Write};
use access::Segment::Platform;
use contact::KeyTable::{Customers, Webhooks};

/// A customer's record and the data key its address is sealed under.
const CUSTOMER_TABLES: &[&str] = &["customers", "customer_keys"];
/// The audit log's leaves and the tree's nodes.
const AUDIT_TREE_TABLES: &[&str] = &["audit_entries", "audit_nodes"];
/// What the exchange's state is loaded from.
const STATE_TABLES: &[&str] = &["accounts", "transfers", "pending", "orders"];
/// The per-customer history indexes.
const HISTORY_INDEX_TABLES: &[&str] = &[
    "order_index",
    "order_client_index",
    "trade_index",
    "history_indexed",
];

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
