//! The SQLite backend: one file, WAL journal, `synchronous=FULL` so that a committed
//! transaction survives a power loss, and cached prepared statements.

use std::path::Path;
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, TransactionBehavior};

use crate::error::{Result, StoreError};
use crate::schema;
use crate::sql::{Backend, Cell, Conn, Dialect, Param, Row};

/// How many prepared statements each connection keeps; above the number the store uses.
const STATEMENT_CACHE: usize = 64;

/// A store in one SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    /// False while `synchronous` may be NORMAL (after a derived transaction whose
    /// restore failed): a durable transaction then sets FULL again before it starts.
    synchronous_full: bool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_at(path, schema::SCHEMA_VERSION)
    }

    /// Opens the file with its schema brought up to `version` only (tests of migrations).
    pub(crate) fn open_at(path: impl AsRef<Path>, version: u32) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let journal: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !journal.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Setting(format!(
                "journal_mode=WAL refused (got {journal:?})"
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        // A commit touches index pages spread over many customers; with SQLite's default
        // 2 MiB page cache they are read back from the OS on every commit. A larger cache
        // (a ceiling, filled only as used) and memory-mapped reads keep them at hand: about
        // +30% signed orders per second in `ztx-load`.
        conn.pragma_update(None, "cache_size", -65_536)?;
        // Checkpoints run off the commit path (`Store::maintain`); this is only the
        // backstop that bounds the WAL (about 400 MiB) if nobody runs them.
        conn.pragma_update(None, "wal_autocheckpoint", 100_000)?;
        conn.pragma_update(None, "mmap_size", 268_435_456)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let mut store = Self {
            conn,
            synchronous_full: true,
        };
        schema::migrate_to(&mut store, version)?;
        Ok(store)
    }
}

impl rusqlite::ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Param::Int(v) => ValueRef::Integer(*v),
            Param::Text(v) => ValueRef::Text(v.as_bytes()),
            Param::Blob(v) => ValueRef::Blob(v),
            Param::Bool(v) => ValueRef::Integer(i64::from(*v)),
            Param::NullText | Param::NullBlob => ValueRef::Null,
        }))
    }
}

fn cell(value: ValueRef<'_>) -> Cell {
    match value {
        ValueRef::Null => Cell::Null,
        ValueRef::Integer(v) => Cell::Int(v),
        ValueRef::Real(_) => Cell::Other("real"),
        ValueRef::Text(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => Cell::Text(text.to_owned()),
            Err(_) => Cell::Other("text that is not UTF-8"),
        },
        ValueRef::Blob(bytes) => Cell::Blob(bytes.to_vec()),
    }
}

/// Runs statements on a borrowed connection: the store's own, or its open transaction.
struct SqliteConn<'a>(&'a Connection);

impl SqliteConn<'_> {
    /// The cached statement, refused unless its parameters are `$1`, `$2`, … in order of
    /// first appearance. SQLite numbers `$N` by appearance, not by `N`, so a statement
    /// such as `SET a = $2 WHERE b = $1` would bind each value to the other column;
    /// PostgreSQL binds by `N`. Checking here keeps one statement text right for both.
    fn prepare(&self, sql: &'static str) -> Result<rusqlite::CachedStatement<'_>> {
        let stmt = self.0.prepare_cached(sql)?;
        for i in 1..=stmt.parameter_count() {
            let numbered = stmt
                .parameter_name(i)
                .and_then(|name| name.strip_prefix('$'))
                .and_then(|n| n.parse::<usize>().ok());
            if numbered != Some(i) {
                return Err(StoreError::ParameterOrder(sql));
            }
        }
        Ok(stmt)
    }
}

impl Conn for SqliteConn<'_> {
    fn exec(&mut self, sql: &'static str, params: &[Param]) -> Result<u64> {
        let mut stmt = self.prepare(sql)?;
        let changed = stmt.execute(rusqlite::params_from_iter(params))?;
        Ok(u64::try_from(changed).unwrap_or(u64::MAX))
    }

    fn query(&mut self, sql: &'static str, params: &[Param]) -> Result<Vec<Row>> {
        let mut stmt = self.prepare(sql)?;
        let width = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let cells = (0..width)
                .map(|i| row.get_ref(i).map(cell))
                .collect::<rusqlite::Result<Row>>()?;
            out.push(cells);
        }
        Ok(out)
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        Ok(self.0.execute_batch(sql)?)
    }
}

impl Conn for SqliteStore {
    fn exec(&mut self, sql: &'static str, params: &[Param]) -> Result<u64> {
        SqliteConn(&self.conn).exec(sql, params)
    }
    fn query(&mut self, sql: &'static str, params: &[Param]) -> Result<Vec<Row>> {
        SqliteConn(&self.conn).query(sql, params)
    }
    fn batch(&mut self, sql: &str) -> Result<()> {
        SqliteConn(&self.conn).batch(sql)
    }
}

impl Backend for SqliteStore {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn maintain(&mut self) -> Result<()> {
        // PASSIVE copies what is committed into the database file without blocking the
        // writer; the WAL starts over once a checkpoint has caught up.
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        Ok(())
    }

    fn transaction<T>(&mut self, f: impl FnOnce(&mut dyn Conn) -> Result<T>) -> Result<T> {
        if !self.synchronous_full {
            self.conn.pragma_update(None, "synchronous", "FULL")?;
            self.synchronous_full = true;
        }
        self.unsynced_transaction(f)
    }

    fn derived_transaction<T>(&mut self, f: impl FnOnce(&mut dyn Conn) -> Result<T>) -> Result<T> {
        // In WAL mode, NORMAL skips the fsync at commit; the frames are still appended in
        // order, so the next FULL commit's fsync makes this one durable too.
        self.synchronous_full = false;
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        let out = self.unsynced_transaction(f);
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        self.synchronous_full = true;
        out
    }
}

impl SqliteStore {
    /// A transaction at whatever `synchronous` setting the connection has.
    fn unsynced_transaction<T>(&mut self, f: impl FnOnce(&mut dyn Conn) -> Result<T>) -> Result<T> {
        // IMMEDIATE takes the write lock up front, so a writer never fails half-way with
        // SQLITE_BUSY on lock upgrade. Dropping `tx` on an error rolls it back.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&mut SqliteConn(&tx))?;
        tx.commit()?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synchronous(store: &SqliteStore) -> i64 {
        store
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap()
    }

    /// A derived (unsynced) transaction must never leave the connection unsynced: every
    /// later commit on it acknowledges orders.
    #[test]
    fn a_derived_transaction_leaves_the_connection_synchronous_full() {
        const FULL: i64 = 2;
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(dir.path().join("s.sqlite")).unwrap();
        assert_eq!(synchronous(&store), FULL);
        store
            .derived_transaction(|tx| tx.query("PRAGMA synchronous", &[]))
            .map(|rows| assert_eq!(rows, vec![vec![Cell::Int(1)]], "NORMAL inside"))
            .unwrap();
        assert_eq!(synchronous(&store), FULL);
        let failed: Result<()> =
            store.derived_transaction(|_| Err(StoreError::Setting("refused".into())));
        assert!(failed.is_err());
        assert_eq!(synchronous(&store), FULL, "restored after a failure too");
    }
}
