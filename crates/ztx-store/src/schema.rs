//! The schema, one DDL text for both engines, and the migrations run on every open.

use crate::error::{Result, StoreError};
use crate::sql::{self, Backend, Conn, Dialect, RowReader};

/// The `meta` table exists before any migration: it records how far they got.
const META_DDL: &str =
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)";

/// Version 1. Placeholders stand for what differs between the engines, and nothing else:
/// `{blob}` is the byte-string type (SQLite `BLOB`, PostgreSQL `BYTEA`); `{id}` an integer
/// primary key (SQLite `INTEGER`, which makes it the rowid instead of a second index;
/// PostgreSQL `BIGINT`); `{without_rowid}` keeps SQLite tables keyed by blobs or several
/// columns in one B-tree instead of two. Integers are signed 64-bit on both, amounts
/// decimal `TEXT`, transfer ids 16-byte big-endian `{blob}`.
const V1: &str = "
CREATE TABLE customers (
    id {id} PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    created_ms BIGINT NOT NULL
);
CREATE TABLE api_keys (
    id {id} PRIMARY KEY,
    api_key TEXT NOT NULL UNIQUE,
    customer_id BIGINT NOT NULL REFERENCES customers (id),
    kind TEXT NOT NULL,
    secret_sealed {blob},
    public_key {blob},
    permissions TEXT NOT NULL,
    ip_allowlist TEXT NOT NULL,
    enabled BOOLEAN NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX api_keys_customer ON api_keys (customer_id, id);
CREATE TABLE accounts (
    owner_kind TEXT NOT NULL,
    owner_id BIGINT NOT NULL,
    asset TEXT NOT NULL,
    debits_pending TEXT NOT NULL,
    debits_posted TEXT NOT NULL,
    credits_pending TEXT NOT NULL,
    credits_posted TEXT NOT NULL,
    PRIMARY KEY (owner_kind, owner_id, asset)
){without_rowid};
CREATE TABLE transfers (
    id {blob} PRIMARY KEY,
    debit_kind TEXT NOT NULL,
    debit_id BIGINT NOT NULL,
    debit_asset TEXT NOT NULL,
    credit_kind TEXT NOT NULL,
    credit_id BIGINT NOT NULL,
    credit_asset TEXT NOT NULL,
    amount TEXT NOT NULL,
    kind TEXT NOT NULL,
    pending_id {blob},
    code TEXT NOT NULL,
    timestamp_ms BIGINT NOT NULL
){without_rowid};
CREATE TABLE pending (
    transfer_id {blob} PRIMARY KEY,
    remaining TEXT NOT NULL
){without_rowid};
CREATE TABLE orders (
    id {id} PRIMARY KEY,
    symbol TEXT NOT NULL,
    customer_id BIGINT NOT NULL,
    client_order_id TEXT NOT NULL,
    side TEXT NOT NULL,
    order_type TEXT NOT NULL,
    time_in_force TEXT NOT NULL,
    stp_mode TEXT NOT NULL,
    price TEXT,
    orig_qty TEXT NOT NULL,
    orig_quote_qty TEXT NOT NULL,
    executed_qty TEXT NOT NULL,
    cumulative_quote TEXT NOT NULL,
    status TEXT NOT NULL,
    hold_id {blob} NOT NULL,
    priority BIGINT NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE INDEX orders_customer_symbol_id ON orders (customer_id, symbol, id);
CREATE INDEX orders_customer_symbol_client ON orders (customer_id, symbol, client_order_id);
CREATE INDEX orders_open ON orders (customer_id, symbol, id)
    WHERE status IN ('NEW', 'PARTIALLY_FILLED');
CREATE TABLE trades (
    id {id} PRIMARY KEY,
    symbol TEXT NOT NULL,
    price TEXT NOT NULL,
    qty TEXT NOT NULL,
    quote_qty TEXT NOT NULL,
    buy_order_id BIGINT NOT NULL,
    sell_order_id BIGINT NOT NULL,
    buyer_id BIGINT NOT NULL,
    seller_id BIGINT NOT NULL,
    buyer_is_maker BOOLEAN NOT NULL,
    buyer_fee TEXT NOT NULL,
    buyer_fee_asset TEXT NOT NULL,
    seller_fee TEXT NOT NULL,
    seller_fee_asset TEXT NOT NULL,
    time_ms BIGINT NOT NULL
);
CREATE INDEX trades_symbol_id ON trades (symbol, id);
CREATE INDEX trades_symbol_time ON trades (symbol, time_ms, id);
CREATE INDEX trades_buyer_symbol ON trades (buyer_id, symbol, id);
CREATE INDEX trades_seller_symbol ON trades (seller_id, symbol, id);
CREATE TABLE candles (
    symbol TEXT NOT NULL,
    open_ms BIGINT NOT NULL,
    open TEXT NOT NULL,
    high TEXT NOT NULL,
    low TEXT NOT NULL,
    close TEXT NOT NULL,
    base_volume TEXT NOT NULL,
    quote_volume TEXT NOT NULL,
    trade_count BIGINT NOT NULL,
    taker_buy_base_volume TEXT NOT NULL,
    taker_buy_quote_volume TEXT NOT NULL,
    PRIMARY KEY (symbol, open_ms)
){without_rowid};
CREATE TABLE inbox (
    id {id} PRIMARY KEY,
    kind TEXT NOT NULL,
    transfer_id {blob} NOT NULL,
    customer_id BIGINT NOT NULL,
    asset TEXT NOT NULL,
    amount TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    completed_ms BIGINT,
    result TEXT
);
CREATE INDEX inbox_waiting ON inbox (id) WHERE completed_ms IS NULL;
";

/// Version 2: per-customer history indexes off the commit path. `orders` and `trades`
/// keep only indexes that grow at their right end (ids increase), so committing a batch
/// touches few pages. Their per-customer look-ups move to the tables of [`HISTORY`],
/// which [`crate::Store::index_history`] fills in the background, many batches at a
/// time, up to the ids recorded in `history_indexed`; reads take the rows above those
/// ids from the tables themselves, so nothing committed is ever missing from a query
/// (see `read.rs`). On PostgreSQL those tables are created here; on SQLite they live
/// in a database file of their own (see `sqlite.rs`).
const V2: &str = "
DROP INDEX orders_customer_symbol_id;
DROP INDEX orders_customer_symbol_client;
DROP INDEX orders_open;
CREATE INDEX orders_open ON orders (id) WHERE status IN ('NEW', 'PARTIALLY_FILLED');
DROP INDEX trades_buyer_symbol;
DROP INDEX trades_seller_symbol;
{history_tables}";

/// The per-customer history indexes, derived from `orders` and `trades` and so safe to
/// lose: `history_indexed` starting at 0 rebuilds them. `{history}` qualifies the names
/// with the schema they live in (SQLite's attached `history` database).
pub(crate) const HISTORY: &str = "
CREATE TABLE IF NOT EXISTS {history}order_index (
    owner BIGINT NOT NULL,
    market TEXT NOT NULL,
    order_id BIGINT NOT NULL,
    PRIMARY KEY (owner, market, order_id)
){without_rowid};
CREATE TABLE IF NOT EXISTS {history}order_client_index (
    owner BIGINT NOT NULL,
    market TEXT NOT NULL,
    client_id TEXT NOT NULL,
    order_id BIGINT NOT NULL,
    PRIMARY KEY (owner, market, client_id, order_id)
){without_rowid};
CREATE TABLE IF NOT EXISTS {history}trade_index (
    owner BIGINT NOT NULL,
    market TEXT NOT NULL,
    trade_id BIGINT NOT NULL,
    PRIMARY KEY (owner, market, trade_id)
){without_rowid};
CREATE TABLE IF NOT EXISTS {history}history_indexed (
    name TEXT PRIMARY KEY,
    last_id BIGINT NOT NULL
);
INSERT INTO {history}history_indexed (name, last_id) VALUES ('orders', 0), ('trades', 0)
    ON CONFLICT (name) DO NOTHING;
";

/// Version 3: the audit log. Entries and signed checkpoints are appended by the
/// exchange's commits and never changed: triggers refuse UPDATE and DELETE (and, on
/// PostgreSQL, TRUNCATE) even to the tables' owner, who would have to drop them first —
/// and the verifier catches whatever such an owner then does. The tree's interior nodes
/// are derived ([`AUDIT_NODES`], with the history indexes).
const V3: &str = "
CREATE TABLE audit_entries (
    idx {id} PRIMARY KEY,
    leaf {blob} NOT NULL,
    entry {blob} NOT NULL
);
CREATE TABLE audit_checkpoints (
    size BIGINT PRIMARY KEY,
    root {blob} NOT NULL,
    note TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
{append_only}{audit_history}";

/// The audit tree's interior nodes, derived from the leaves in `audit_entries` and so
/// safe to lose: the `audit` mark in `history_indexed` starting at 0 rebuilds them.
pub(crate) const AUDIT_NODES: &str = "
CREATE TABLE IF NOT EXISTS {history}audit_nodes (
    level BIGINT NOT NULL,
    idx BIGINT NOT NULL,
    hash {blob} NOT NULL,
    PRIMARY KEY (level, idx)
){without_rowid};
INSERT INTO {history}history_indexed (name, last_id) VALUES ('audit', 0)
    ON CONFLICT (name) DO NOTHING;
";

const APPEND_ONLY_SQLITE: &str = "
CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
";

const APPEND_ONLY_POSTGRES: &str = "
CREATE FUNCTION ztx_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % on % refused', TG_OP, TG_TABLE_NAME;
END
$$;
CREATE TRIGGER audit_entries_append_only BEFORE UPDATE OR DELETE ON audit_entries
    FOR EACH ROW EXECUTE FUNCTION ztx_append_only();
CREATE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE ON audit_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ztx_append_only();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION ztx_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION ztx_append_only();
";

/// Version 4: security monitoring's responses. A key frozen by the detector until its
/// customer re-enables it; the addresses each key was used from (so that a new one is
/// noticed across restarts); the notifications customers read in the API, and the
/// outbox from which e-mail or webhook senders deliver them.
const V4: &str = "
ALTER TABLE api_keys ADD COLUMN frozen_ms BIGINT;
CREATE TABLE key_addresses (
    api_key_id BIGINT NOT NULL REFERENCES api_keys (id),
    ip TEXT NOT NULL,
    first_ms BIGINT NOT NULL,
    PRIMARY KEY (api_key_id, ip)
){without_rowid};
CREATE TABLE notifications (
    id {id} PRIMARY KEY,
    customer_id BIGINT NOT NULL REFERENCES customers (id),
    created_ms BIGINT NOT NULL,
    finding TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX notifications_customer ON notifications (customer_id, id);
CREATE TABLE notification_outbox (
    id {id} PRIMARY KEY,
    notification_id BIGINT NOT NULL REFERENCES notifications (id),
    channel TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    delivered_ms BIGINT,
    last_error TEXT
);
CREATE INDEX notification_outbox_pending ON notification_outbox (delivered_ms, id);
";

/// Version 5: row-level security (PostgreSQL; SQLite has none, and its store reaches
/// customer rows only through [`crate::CustomerScope`]). See [`ROW_SECURITY`].
const V5: &str = "{row_security}";

/// Every customer-owned table shows a transaction the rows of one customer, or all
/// rows, or none, by two settings the store makes:
///
/// - `app.scope = 'platform'`: the engine's own work (matching, recovery, the writer's
///   commits, public market data, indexing), set for the session by the store on
///   every connection it opens for the platform;
/// - `app.scope = 'customer'` with `app.customer_id`: a customer-scoped read, set with
///   `set_config(…, true)` for that transaction only, which overrides the session's
///   platform scope until it ends. Such a transaction may only read.
///
/// Neither set (any other connection, e.g. a shell, or a role that sets nothing) sees
/// no rows at all. FORCE makes the policies bind the tables' owner too; only a
/// superuser or a `BYPASSRLS` role passes them, and [`crate::grant_service_role`]
/// refuses both as service roles. `pending` and `key_addresses` and the outbox carry
/// no customer id, and no customer-scoped read needs them: platform only.
///
/// The policies are `all_rows` (the platform's) and `own_rows` (SELECT only), named
/// so that PostgreSQL, which ORs permissive policies in name order, tests the
/// platform's one setting first and stops there on the engine's statements: an
/// upsert also checks the SELECT policies on the row it meets. `own_rows` reads only
/// `app.customer_id` (never set for a session by the store; a connection that sets it
/// itself has only chosen a customer scope).
const ROW_SECURITY: &str = "
CREATE FUNCTION ztx_platform() RETURNS boolean LANGUAGE sql STABLE AS
    $$ SELECT current_setting('app.scope', true) = 'platform' $$;
CREATE FUNCTION ztx_customer() RETURNS bigint LANGUAGE sql STABLE AS
    $$ SELECT nullif(current_setting('app.customer_id', true), '')::bigint $$;
{policies}";

/// Customer-owned tables and the condition that makes a row the scoped customer's
/// (`None`: platform only).
const CUSTOMER_ROWS: &[(&str, Option<&str>)] = &[
    ("customers", Some("id = ztx_customer()")),
    ("api_keys", Some("customer_id = ztx_customer()")),
    (
        "accounts",
        Some("owner_kind = 'customer' AND owner_id = ztx_customer()"),
    ),
    (
        "transfers",
        Some(
            "(debit_kind = 'customer' AND debit_id = ztx_customer()) \
             OR (credit_kind = 'customer' AND credit_id = ztx_customer())",
        ),
    ),
    ("pending", None),
    ("orders", Some("customer_id = ztx_customer()")),
    (
        "trades",
        Some("buyer_id = ztx_customer() OR seller_id = ztx_customer()"),
    ),
    ("inbox", Some("customer_id = ztx_customer()")),
    ("key_addresses", None),
    ("notifications", Some("customer_id = ztx_customer()")),
    ("notification_outbox", None),
    ("order_index", Some("owner = ztx_customer()")),
    ("order_client_index", Some("owner = ztx_customer()")),
    ("trade_index", Some("owner = ztx_customer()")),
];

/// The policy of a table only the platform reads or writes (see [`ROW_SECURITY`]).
fn platform_rows(table: &str) -> String {
    format!(
        "ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;\n\
         ALTER TABLE {table} FORCE ROW LEVEL SECURITY;\n\
         CREATE POLICY all_rows ON {table} USING (ztx_platform()) WITH CHECK (ztx_platform());\n"
    )
}

fn row_security() -> String {
    let mut ddl = ROW_SECURITY.replace("{policies}", "");
    for (table, mine) in CUSTOMER_ROWS {
        ddl.push_str(&platform_rows(table));
        if let Some(mine) = mine {
            ddl.push_str(&format!(
                "CREATE POLICY own_rows ON {table} FOR SELECT USING ({mine});\n"
            ));
        }
    }
    ddl
}

/// Version 6: contact data encrypted. `email` holds the address's blind index from
/// now on (renamed, so that its UNIQUE and NOT NULL stay), the address itself is sealed
/// by the customer's data key, and the data keys live wrapped in `customer_keys`. Rows
/// from before keep their address in the clear in `email_index` (with `email_sealed`
/// NULL) until `ztx vault rotate` seals them. On PostgreSQL a customer scope reads its
/// own wrapped key with its record (useless without the KEK, which the database never
/// holds), and no grant but the exchange's reaches the table.
const V6: &str = "
ALTER TABLE customers RENAME COLUMN email TO email_index;
ALTER TABLE customers ADD COLUMN email_sealed {blob};
CREATE TABLE customer_keys (
    customer_id BIGINT PRIMARY KEY REFERENCES customers (id),
    kek_version BIGINT NOT NULL,
    data_key {blob} NOT NULL
);
CREATE INDEX customer_keys_version ON customer_keys (kek_version, customer_id);
{customer_keys_security}";

const CUSTOMER_KEYS_SECURITY: &str = "
ALTER TABLE customer_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE customer_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY all_rows ON customer_keys USING (ztx_platform()) WITH CHECK (ztx_platform());
CREATE POLICY own_rows ON customer_keys FOR SELECT USING (customer_id = ztx_customer());
";

/// Version 7: API keys' HMAC secrets under envelope encryption. Each HMAC key gets a data
/// key of its own, stored wrapped by a KEK version beside the secret it seals (the
/// exchange opens secrets on every key-cache miss and may not read `customer_keys`), so
/// a KEK rotation re-wraps it like a customer's. Secrets from before stay sealed under
/// the master key, both columns NULL, until `ztx serve` (at start) or `ztx vault rotate`
/// re-seals them.
///
/// Also (PostgreSQL): the audit log is closed to customer scopes. Its entries name every
/// customer's requests; a transaction narrowed to one customer reads none of them, while
/// every other session (the engine's, the owner's, the verifier's) reads them as before.
const V7: &str = "
ALTER TABLE api_keys ADD COLUMN secret_kek_version BIGINT;
ALTER TABLE api_keys ADD COLUMN secret_data_key {blob};
CREATE INDEX api_keys_secret_version ON api_keys (secret_kek_version, id);
{audit_security}";

/// The audit log's tables, closed to customer scopes (see [`V7`]).
pub(crate) const AUDIT_TABLES: &[&str] = &["audit_entries", "audit_checkpoints", "audit_nodes"];

fn audit_security() -> String {
    AUDIT_TABLES
        .iter()
        .map(|table| {
            format!(
                "ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;\n\
                 ALTER TABLE {table} FORCE ROW LEVEL SECURITY;\n\
                 CREATE POLICY outside_customer_scope ON {table} \
                 USING (ztx_customer() IS NULL) WITH CHECK (ztx_customer() IS NULL);\n"
            )
        })
        .collect()
}

/// Version 8: the addresses detection banned, and until when, so that a restart does not
/// lift a ban (the server loads those still running as it starts). Written only in the
/// commit that logs the ban. Platform only: on PostgreSQL no customer scope reads it.
const V8: &str = "
CREATE TABLE ip_bans (
    ip TEXT PRIMARY KEY,
    until_ms BIGINT NOT NULL
);
{ip_bans_security}";

/// Version 9: customers' webhooks, and an outbox that retries. A customer registers at
/// most one webhook: its address and signing secret sealed by a data key of its own,
/// stored wrapped by a KEK version beside them (the sender opens them and may not read
/// `customer_keys`), so a KEK rotation re-wraps it like an API key's. A notification
/// gets a `webhook` outbox message when its customer has one. A failed delivery is tried
/// again from `next_ms`, and after the last try, or once the webhook is replaced or
/// removed, the message is given up (`given_up_ms`); the index holds only messages
/// still to send. Webhooks are customer rows: on PostgreSQL a
/// customer scope reads its own.
const V9: &str = "
CREATE TABLE webhooks (
    customer_id BIGINT PRIMARY KEY REFERENCES customers (id),
    url_sealed {blob} NOT NULL,
    secret_sealed {blob} NOT NULL,
    kek_version BIGINT NOT NULL,
    data_key {blob} NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX webhooks_kek_version ON webhooks (kek_version, customer_id);
ALTER TABLE notification_outbox ADD COLUMN next_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE notification_outbox ADD COLUMN given_up_ms BIGINT;
CREATE INDEX notification_outbox_due ON notification_outbox (channel, id)
    WHERE delivered_ms IS NULL AND given_up_ms IS NULL;
{webhooks_security}";

/// Every migration in order; entry `i` brings the schema to version `i + 1`.
const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5, V6, V7, V8, V9];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = 9;

/// The schema the history tables are created in, as a qualifier for [`HISTORY`].
pub(crate) const HISTORY_SCHEMA: &str = "history.";

pub(crate) fn render(ddl: &str, dialect: Dialect) -> String {
    let (blob, id, without_rowid, history_tables, history) = match dialect {
        Dialect::Sqlite => ("BLOB", "INTEGER", " WITHOUT ROWID", "", HISTORY_SCHEMA),
        Dialect::Postgres => ("BYTEA", "BIGINT", "", HISTORY, ""),
    };
    // SQLite creates the derived tables when it attaches the history file.
    let (append_only, audit_history) = match dialect {
        Dialect::Sqlite => (APPEND_ONLY_SQLITE, ""),
        Dialect::Postgres => (APPEND_ONLY_POSTGRES, AUDIT_NODES),
    };
    let (row_security, customer_keys_security, audit_security, ip_bans_security) = match dialect {
        Dialect::Sqlite => (String::new(), "", String::new(), String::new()),
        Dialect::Postgres => (
            row_security(),
            CUSTOMER_KEYS_SECURITY,
            audit_security(),
            platform_rows("ip_bans"),
        ),
    };
    let webhooks_security = match dialect {
        Dialect::Sqlite => String::new(),
        Dialect::Postgres => format!(
            "{}CREATE POLICY own_rows ON webhooks FOR SELECT USING (customer_id = ztx_customer());\n",
            platform_rows("webhooks")
        ),
    };
    ddl.replace("{history_tables}", history_tables)
        .replace("{webhooks_security}", &webhooks_security)
        .replace("{row_security}", &row_security)
        .replace("{ip_bans_security}", &ip_bans_security)
        .replace("{customer_keys_security}", customer_keys_security)
        .replace("{audit_security}", &audit_security)
        .replace("{append_only}", append_only)
        .replace("{audit_history}", audit_history)
        .replace("{history}", history)
        .replace("{blob}", blob)
        .replace("{id}", id)
        .replace("{without_rowid}", without_rowid)
}

pub(crate) fn read_meta(conn: &mut dyn Conn, key: &str) -> Result<Option<String>> {
    let rows = conn.query("SELECT value FROM meta WHERE key = $1", &[sql::text(key)])?;
    match sql::first(rows) {
        None => Ok(None),
        Some(row) => RowReader::new("meta", row).text("value").map(Some),
    }
}

pub(crate) fn write_meta(conn: &mut dyn Conn, key: &str, value: &str) -> Result<()> {
    conn.exec(
        "INSERT INTO meta (key, value) VALUES ($1, $2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[sql::text(key), sql::text(value)],
    )?;
    Ok(())
}

pub(crate) fn read_version(conn: &mut dyn Conn) -> Result<u32> {
    match read_meta(conn, "schema_version")? {
        None => Ok(0),
        Some(text) => text
            .parse()
            .map_err(|_| StoreError::corrupt("meta", "value", format!("schema_version {text:?}"))),
    }
}

/// Brings the schema up to `target` in one transaction; a no-op when it is there
/// already, so every open may call it. Opening a store asks for [`SCHEMA_VERSION`]; only
/// tests stop short of it, to build a database as an older release left it.
pub(crate) fn migrate_to<B: Backend>(db: &mut B, target: u32) -> Result<()> {
    // Nearly every open finds the schema current: check with a plain read, so that opening
    // a connection never takes the write lock the running exchange's commits need.
    if matches!(read_version(db), Ok(v) if v == target) {
        return Ok(());
    }
    let dialect = db.dialect();
    db.transaction(|tx| {
        tx.batch(META_DDL)?;
        if dialect == Dialect::Postgres {
            // Two processes opening a fresh database at once: the second waits here, then
            // sees the first one's version and has nothing to do.
            tx.batch("LOCK TABLE meta IN SHARE ROW EXCLUSIVE MODE")?;
        }
        let current = read_version(tx)?;
        if current > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                found: current,
                supported: SCHEMA_VERSION,
            });
        }
        for (version, ddl) in (1u32..).zip(MIGRATIONS) {
            if version > current && version <= target {
                tx.batch(&render(ddl, dialect))?;
                write_meta(tx, "schema_version", &version.to_string())?;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ztx_core::OrderStatus;

    #[test]
    fn open_status_list_matches_the_core() {
        let all = [
            OrderStatus::New,
            OrderStatus::PartiallyFilled,
            OrderStatus::Filled,
            OrderStatus::Canceled,
            OrderStatus::Rejected,
            OrderStatus::Expired,
            OrderStatus::ExpiredInMatch,
        ];
        for status in all {
            let quoted = format!("'{}'", status.as_str());
            assert_eq!(
                open_statuses!().contains(&quoted),
                status.is_open(),
                "{status:?}"
            );
            for ddl in MIGRATIONS.iter().filter(|d| d.contains("orders_open")) {
                assert_eq!(
                    ddl.contains(&quoted),
                    status.is_open(),
                    "{status:?} in orders_open"
                );
            }
        }
        let _ = SCHEMA_VERSION;
        assert_eq!(MIGRATIONS.len(), usize::try_from(SCHEMA_VERSION).unwrap());
    }

    #[test]
    fn dialects_differ_only_in_storage_placeholders() {
        for ddl in MIGRATIONS {
            // The triggers are written in each engine's own language; the rest is one.
            let with_history = ddl
                .replace("{history_tables}", HISTORY)
                .replace("{append_only}", "")
                .replace("{row_security}", "")
                .replace("{customer_keys_security}", "")
                .replace("{audit_security}", "")
                .replace("{ip_bans_security}", "")
                .replace("{webhooks_security}", "")
                .replace("{audit_history}", AUDIT_NODES);
            dialects_differ_only_in_placeholders(&with_history);
        }
        dialects_differ_only_in_placeholders(HISTORY);
        dialects_differ_only_in_placeholders(AUDIT_NODES);
    }

    fn dialects_differ_only_in_placeholders(ddl: &str) {
        let sqlite = render(ddl, Dialect::Sqlite).replace(HISTORY_SCHEMA, "");
        let pg = render(ddl, Dialect::Postgres);
        assert!(!sqlite.contains("BYTEA") && !pg.contains("BLOB") && !pg.contains("ROWID"));
        assert!(
            !sqlite.contains('{') && !pg.contains('{'),
            "a placeholder was left"
        );
        let normalised = sqlite
            .replace(" WITHOUT ROWID", "")
            .replace("BLOB", "BYTEA")
            .replace("id INTEGER PRIMARY KEY", "id BIGINT PRIMARY KEY")
            .replace("idx INTEGER PRIMARY KEY", "idx BIGINT PRIMARY KEY");
        assert_eq!(normalised, pg);
    }
}
