//! The PostgreSQL backend: `tokio-postgres` driven by a runtime of the store's own (one
//! thread: the caller's), with prepared statements cached per connection. Async
//! underneath for one reason: a batch of statements is pipelined — all sent, then all
//! answers read — so a group commit of many rows costs one round trip, not one per row
//! (see [`Conn::exec_all`]). The synchronous `postgres` client, which runs the same
//! library the same way, cannot pipeline.

use std::collections::HashMap;
use std::fmt;

use postgres::error::SqlState;
use postgres::types::{ToSql, Type};
use postgres::{Client, NoTls};
use tokio_postgres::Statement;

use crate::error::{Result, StoreError};
use crate::schema;
use crate::sql::{Backend, Cell, Conn, Dialect, Param, Row, Stmt};

/// The URL's configuration and how to secure it: mutual TLS when the URL says
/// `sslmode=verify-full` (see [`crate::pg_tls`]); plain text only to a Unix socket or
/// a loopback address, and never by falling back. The one place that decides.
fn configure(url: &str) -> Result<(tokio_postgres::Config, Option<crate::pg_tls::MakeTls>)> {
    match crate::pg_tls::split(url)? {
        (url, None) => {
            let mut config: tokio_postgres::Config = url.parse()?;
            crate::pg_tls::check_local(&config)?;
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
            Ok((config, None))
        }
        (url, Some(files)) => Ok((url.parse()?, Some(crate::pg_tls::connector(&files)?))),
    }
}

/// Opens a synchronous client connection, transport chosen as for the store (for
/// one-off administration, e.g. [`grant_service_role`], and tests).
pub fn connect(url: &str) -> Result<Client> {
    let (config, tls) = configure(url)?;
    let config = postgres::Config::from(config);
    Ok(match tls {
        None => config.connect(NoTls)?,
        Some(tls) => config.connect(tls)?,
    })
}

/// A store in a PostgreSQL database.
pub struct PgStore {
    client: tokio_postgres::Client,
    statements: HashMap<&'static str, Statement>,
    /// Drives the connection while a call waits for its answer (the store is used
    /// from threads outside any async runtime, like the synchronous client).
    runtime: tokio::runtime::Runtime,
    pub(crate) accounting: crate::access::Accounting,
    /// See [`Backend::audit_end`].
    audit_end: Option<u64>,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("cached_statements", &self.statements.len())
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects (see [`connect`]) and brings the schema up to date.
    pub fn connect(url: &str) -> Result<Self> {
        Self::connect_at(url, schema::SCHEMA_VERSION)
    }

    /// Connects with the schema brought up to `version` only (tests of migrations).
    pub(crate) fn connect_at(url: &str, version: u32) -> Result<Self> {
        let (config, tls) = configure(url)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| StoreError::Setting(format!("cannot start the database client: {e}")))?;
        let client = runtime.block_on(async {
            // The connection runs as a task of the runtime, polled whenever a call
            // waits on it; it ends when the client is dropped.
            let client = match tls {
                None => {
                    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
                    tokio::spawn(drive(connection));
                    client
                }
                Some(tls) => {
                    let (client, connection) = config.connect(tls).await?;
                    tokio::spawn(drive(connection));
                    client
                }
            };
            Ok::<_, StoreError>(client)
        })?;
        let mut store = Self {
            client,
            statements: HashMap::new(),
            runtime,
            accounting: crate::access::Accounting::default(),
            audit_end: None,
        };
        // The engine's connections work for the whole platform; customer-scoped reads
        // narrow this per transaction (see the schema's row security).
        store.batch("SELECT set_config('app.scope', 'platform', false)")?;
        schema::migrate_to(&mut store, version).map_err(|e| {
            if is_insufficient_privilege(&e) {
                StoreError::Role(format!(
                    "this role may not bring the schema to version {version} ({e}); run \
                     `ztx database setup` as the database's owner first"
                ))
            } else {
                e
            }
        })?;
        Ok(store)
    }
}

async fn drive<F>(connection: F)
where
    F: std::future::Future<Output = std::result::Result<(), tokio_postgres::Error>>,
{
    if let Err(e) = connection.await {
        tracing::warn!(error = %e, "database connection ended");
    }
}

/// The tables a service role may only add to and read: their rows are never changed.
pub const APPEND_ONLY_TABLES: [&str; 2] = ["audit_entries", "audit_checkpoints"];

/// Key material: the exchange's role may add to these (a new customer's wrapped data
/// key) but not read, change or remove what is there. Key rotation runs as the owner.
pub const KEY_MATERIAL_TABLES: [&str; 1] = ["customer_keys"];

fn is_insufficient_privilege(e: &StoreError) -> bool {
    matches!(e, StoreError::Postgres(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE))
}

/// Brings the schema at `owner_url` up to date as its owner, then lets `role` run the
/// exchange on it with no more than that needs: read and write the exchange's tables,
/// but only add to and read the audit log ([`APPEND_ONLY_TABLES`]) — no UPDATE, DELETE
/// or TRUNCATE, and, not being their owner, no way to drop or disable the triggers that
/// refuse those even to the owner — and only add to the key material
/// ([`KEY_MATERIAL_TABLES`]). Row security binds it (see the schema's version 5).
/// Run it again after an upgrade adds tables.
///
/// `role` must exist, may log in or not, and must be neither a superuser (who passes
/// every check) nor the tables' owner.
pub fn grant_service_role(owner_url: &str, role: &str) -> Result<()> {
    drop(PgStore::connect(owner_url)?);
    let mut client = connect(owner_url)?;
    let mut tx = client.transaction()?;
    check_role(&mut tx, role)?;
    // A role once made the support role keeps its see-everything policies otherwise,
    // which would OR into the customer scope's.
    for (table, _) in SUPPORT_COLUMNS {
        tx.batch_execute(&format!("DROP POLICY IF EXISTS support_{role} ON {table}"))?;
    }
    let append_only = APPEND_ONLY_TABLES.join(", ");
    let key_material = KEY_MATERIAL_TABLES.join(", ");
    tx.batch_execute(&format!(
        "GRANT USAGE ON SCHEMA public TO {role};
         REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role};
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};
         REVOKE UPDATE, DELETE, TRUNCATE ON {append_only} FROM {role};
         REVOKE ALL ON {append_only} FROM PUBLIC;
         REVOKE SELECT, UPDATE, DELETE, TRUNCATE ON {key_material} FROM {role};
         REVOKE ALL ON {key_material} FROM PUBLIC;"
    ))?;
    tx.commit()?;
    Ok(())
}

/// What the support role may read, table by table: who the customers are and what
/// their keys may do, never a secret — not the sealed HMAC secret, not the customers'
/// data keys (so their sealed addresses stay sealed), and nothing of the orders,
/// balances or the audit log.
pub const SUPPORT_COLUMNS: [(&str, &str); 3] = [
    ("customers", "id, email_index, email_sealed, created_ms"),
    (
        "api_keys",
        "id, api_key, customer_id, kind, permissions, ip_allowlist, enabled, created_ms, \
         frozen_ms",
    ),
    (
        "notifications",
        "id, customer_id, created_ms, finding, message",
    ),
];

/// Like [`grant_service_role`], for a read-only support role: SELECT on the columns of
/// [`SUPPORT_COLUMNS`] and nothing else, with a row-security policy of its own that
/// shows it those tables' rows of every customer (support looks customers up), and
/// only to SELECT.
pub fn grant_support_role(owner_url: &str, role: &str) -> Result<()> {
    grant_support_role_beside(owner_url, role, None)
}

/// [`grant_support_role`], refusing the service's own role: a support policy of
/// `true` on it would show customer-scoped reads every customer's rows.
pub fn grant_support_role_beside(owner_url: &str, role: &str, service: Option<&str>) -> Result<()> {
    if service == Some(role) {
        return Err(StoreError::Role(format!(
            "{role} cannot be both the service role and the support role"
        )));
    }
    drop(PgStore::connect(owner_url)?);
    let mut client = connect(owner_url)?;
    let mut tx = client.transaction()?;
    check_role(&mut tx, role)?;
    let mut sql = format!(
        "GRANT USAGE ON SCHEMA public TO {role};
         REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role};"
    );
    for (table, columns) in SUPPORT_COLUMNS {
        sql.push_str(&format!(
            "GRANT SELECT ({columns}) ON {table} TO {role};
             DROP POLICY IF EXISTS support_{role} ON {table};
             CREATE POLICY support_{role} ON {table} FOR SELECT TO {role} USING (true);"
        ));
    }
    tx.batch_execute(&sql)?;
    tx.commit()?;
    Ok(())
}

/// Refuses a role no grant can bind: a name we would not put into SQL, a role that
/// does not exist, a superuser or `BYPASSRLS` role, or one that may act as the owner.
fn check_role(tx: &mut postgres::Transaction<'_>, role: &str) -> Result<()> {
    let valid = !role.is_empty()
        && role.len() <= 55
        && role.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && role
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Err(StoreError::Role(format!(
            "{role:?} is not a role name this command takes: lowercase letters, digits and \
             _, starting with a letter, at most 55"
        )));
    }
    let found = tx.query_opt(
        "SELECT r.rolsuper, r.rolbypassrls, pg_has_role(r.rolname, t.tableowner, 'MEMBER') \
         FROM pg_roles r, pg_tables t \
         WHERE r.rolname = $1 AND t.schemaname = 'public' AND t.tablename = 'audit_entries'",
        &[&role],
    )?;
    let Some(found) = found else {
        return Err(StoreError::Role(format!(
            "role {role} does not exist; create it first (CREATE ROLE {role} LOGIN PASSWORD …)"
        )));
    };
    let (superuser, bypass_rls, owns): (bool, bool, bool) =
        (found.try_get(0)?, found.try_get(1)?, found.try_get(2)?);
    if superuser || bypass_rls {
        return Err(StoreError::Role(format!(
            "role {role} is a superuser or bypasses row security, so no grant would bind it; \
             give the service a role of its own"
        )));
    }
    if owns {
        return Err(StoreError::Role(format!(
            "role {role} owns the tables, or may act as their owner, and so could drop their \
             triggers; the service needs a role of its own"
        )));
    }
    Ok(())
}

// Typed nulls: PostgreSQL checks a parameter's type even when it is NULL.
static NULL_TEXT: Option<String> = None;
static NULL_BLOB: Option<Vec<u8>> = None;
static NULL_INT: Option<i64> = None;

fn bind(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| -> &(dyn ToSql + Sync) {
            match p {
                Param::Int(v) => v,
                Param::Text(v) => v,
                Param::Blob(v) => v,
                Param::Bool(v) => v,
                Param::NullText => &NULL_TEXT,
                Param::NullBlob => &NULL_BLOB,
                Param::NullInt => &NULL_INT,
            }
        })
        .collect()
}

fn cells(row: &postgres::Row) -> Result<Row> {
    let mut out = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let ty = column.type_();
        let cell = if *ty == Type::INT8 {
            row.try_get::<_, Option<i64>>(i)?
                .map_or(Cell::Null, Cell::Int)
        } else if *ty == Type::INT4 {
            row.try_get::<_, Option<i32>>(i)?
                .map_or(Cell::Null, |v| Cell::Int(i64::from(v)))
        } else if *ty == Type::TEXT || *ty == Type::VARCHAR {
            row.try_get::<_, Option<String>>(i)?
                .map_or(Cell::Null, Cell::Text)
        } else if *ty == Type::BYTEA {
            row.try_get::<_, Option<Vec<u8>>>(i)?
                .map_or(Cell::Null, Cell::Blob)
        } else if *ty == Type::BOOL {
            row.try_get::<_, Option<bool>>(i)?
                .map_or(Cell::Null, Cell::Bool)
        } else {
            Cell::Other("an unexpected PostgreSQL type")
        };
        out.push(cell);
    }
    Ok(out)
}

/// Runs statements on the store's connection, sharing its cache.
struct PgConn<'a> {
    client: &'a tokio_postgres::Client,
    statements: &'a mut HashMap<&'static str, Statement>,
    runtime: &'a tokio::runtime::Runtime,
}

impl PgConn<'_> {
    fn statement(&mut self, sql: &'static str) -> Result<Statement> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.runtime.block_on(self.client.prepare(sql))?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }
}

impl Conn for PgConn<'_> {
    fn exec(&mut self, sql: &'static str, params: &[Param]) -> Result<u64> {
        let statement = self.statement(sql)?;
        Ok(self
            .runtime
            .block_on(self.client.execute(&statement, &bind(params)))?)
    }

    fn query(&mut self, sql: &'static str, params: &[Param]) -> Result<Vec<Row>> {
        let statement = self.statement(sql)?;
        let rows = self
            .runtime
            .block_on(self.client.query(&statement, &bind(params)))?;
        rows.iter().map(cells).collect()
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        Ok(self.runtime.block_on(self.client.batch_execute(sql))?)
    }

    /// Pipelined: every statement is sent before the first answer is awaited (the
    /// client sends each request as its future is first polled, and `join_all` polls
    /// them all in order), so the batch costs one round trip. The database runs them in
    /// order; after a failure it refuses the rest (the transaction is aborted), and the
    /// first failure is the one reported.
    fn exec_all(&mut self, statements: &[Stmt]) -> std::result::Result<(), (usize, StoreError)> {
        let mut prepared = Vec::with_capacity(statements.len());
        for (i, stmt) in statements.iter().enumerate() {
            prepared.push(self.statement(stmt.sql).map_err(|e| (i, e))?);
        }
        let bound: Vec<_> = statements.iter().map(|stmt| bind(&stmt.params)).collect();
        let client = self.client;
        let answers = self.runtime.block_on(futures_util::future::join_all(
            prepared
                .iter()
                .zip(&bound)
                .map(|(statement, params)| client.execute(statement, params)),
        ));
        match answers
            .into_iter()
            .enumerate()
            .find_map(|(i, a)| a.err().map(|e| (i, e)))
        {
            Some((i, e)) => Err((i, e.into())),
            None => Ok(()),
        }
    }
}

/// A customer-scoped read transaction; dropping it ends it (ROLLBACK: it only read).
/// A read-write transaction, rolled back when dropped while still open: after an error,
/// and after a panic inside it, so that the connection's next transaction does not
/// commit what this one left half done.
struct OpenTx<'a> {
    conn: PgConn<'a>,
    open: bool,
}

impl Drop for OpenTx<'_> {
    fn drop(&mut self) {
        if self.open
            && let Err(e) = self.conn.batch("ROLLBACK")
        {
            tracing::warn!(error = %e, "rolling back failed");
        }
    }
}

struct PgTxConn<'a> {
    conn: PgConn<'a>,
}

impl Drop for PgTxConn<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.conn.batch("ROLLBACK") {
            tracing::warn!(error = %e, "ending a customer-scoped read failed");
        }
    }
}

impl Conn for PgTxConn<'_> {
    fn exec(&mut self, sql: &'static str, params: &[Param]) -> Result<u64> {
        self.conn.exec(sql, params)
    }
    fn query(&mut self, sql: &'static str, params: &[Param]) -> Result<Vec<Row>> {
        self.conn.query(sql, params)
    }
    fn batch(&mut self, sql: &str) -> Result<()> {
        self.conn.batch(sql)
    }
}

impl PgStore {
    fn conn(&mut self) -> PgConn<'_> {
        PgConn {
            client: &self.client,
            statements: &mut self.statements,
            runtime: &self.runtime,
        }
    }
}

impl Conn for PgStore {
    fn exec(&mut self, sql: &'static str, params: &[Param]) -> Result<u64> {
        self.conn().exec(sql, params)
    }
    fn query(&mut self, sql: &'static str, params: &[Param]) -> Result<Vec<Row>> {
        self.conn().query(sql, params)
    }
    fn batch(&mut self, sql: &str) -> Result<()> {
        self.conn().batch(sql)
    }
    fn exec_all(&mut self, statements: &[Stmt]) -> std::result::Result<(), (usize, StoreError)> {
        self.conn().exec_all(statements)
    }
}

impl Backend for PgStore {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn audit_end(&mut self) -> &mut Option<u64> {
        &mut self.audit_end
    }

    fn maintain(&mut self) -> Result<()> {
        // PostgreSQL checkpoints and vacuums by itself.
        Ok(())
    }

    fn complete_checkpoint(&mut self) -> Result<()> {
        Ok(())
    }

    fn transaction<T>(&mut self, f: impl FnOnce(&mut dyn Conn) -> Result<T>) -> Result<T> {
        let mut tx = OpenTx {
            conn: self.conn(),
            open: false,
        };
        tx.conn.batch("BEGIN")?;
        tx.open = true;
        let out = f(&mut tx.conn)?;
        // A failed COMMIT has ended the transaction too (rolled back).
        tx.open = false;
        tx.conn.batch("COMMIT")?;
        Ok(out)
    }

    fn customer_conn(&mut self, customer: ztx_core::CustomerId) -> Result<Box<dyn Conn + '_>> {
        let id = i64::try_from(customer.0).map_err(|_| StoreError::OutOfRange {
            what: "customer id",
            value: customer.0.to_string(),
        })?;
        let mut conn = self.conn();
        // One round trip. Local to the transaction: its end restores the session's
        // platform scope.
        conn.batch(&format!(
            "BEGIN READ ONLY; \
             SELECT set_config('app.scope', 'customer', true), \
                    set_config('app.customer_id', '{id}', true)"
        ))?;
        Ok(Box::new(PgTxConn { conn }))
    }

    fn history(&mut self) -> Result<()> {
        Ok(())
    }

    fn derived_transaction<T>(&mut self, f: impl FnOnce(&mut dyn Conn) -> Result<T>) -> Result<T> {
        self.transaction(|tx| {
            // For this transaction only: the commit returns before its WAL record is
            // flushed; the next synchronous commit flushes it first.
            tx.batch("SET LOCAL synchronous_commit TO OFF")?;
            // One derived transaction at a time, as on SQLite (whose history database
            // has one write lock): a second indexer waits here and then reads the mark
            // the first one moved, instead of indexing the same rows again and failing
            // on their keys. The mode does not block readers.
            tx.batch("LOCK TABLE history_indexed IN SHARE ROW EXCLUSIVE MODE")?;
            f(tx)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::panic,
        reason = "tests: a panic is a failed test"
    )]

    use super::*;
    use crate::testing::PgCluster;

    /// A panic inside a transaction leaves nothing for the connection's next
    /// transaction to commit.
    #[test]
    fn a_panic_inside_a_transaction_rolls_it_back() {
        let Some(cluster) = PgCluster::shared().unwrap() else {
            return;
        };
        let url = cluster.fresh_database().unwrap();
        let mut store = PgStore::connect(&url).unwrap();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = store.transaction(|tx| {
                crate::schema::write_meta(tx, "half", "done")?;
                panic!("inside the transaction");
                #[allow(unreachable_code)]
                Ok(())
            });
        }));
        assert!(panicked.is_err());
        store
            .transaction(|tx| crate::schema::write_meta(tx, "next", "one"))
            .unwrap();
        let read = |store: &mut PgStore, key| {
            store
                .transaction(|tx| crate::schema::read_meta(tx, key))
                .unwrap()
        };
        assert_eq!(read(&mut store, "next"), Some("one".into()));
        assert_eq!(
            read(&mut store, "half"),
            None,
            "the panicked write was committed"
        );
    }
}
