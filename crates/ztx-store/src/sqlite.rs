//! The SQLite backend: the store in one file (WAL journal, `synchronous=FULL` so that a
//! committed transaction survives a power loss), the derived per-customer history
//! indexes in a second file beside it, and cached prepared statements.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, TransactionBehavior};

use crate::error::{Result, StoreError};
use crate::schema;
use crate::sql::{Backend, Cell, Conn, Dialect, Param, Row};

/// WAL frames (64 MiB of pages) after which the writing connection checkpoints on its
/// own. The engine has it checkpoint after each of the upkeep thread's checkpoints, long
/// before this; the limit bounds the WAL if that stops.
const WAL_AUTOCHECKPOINT: i64 = 16_000;

/// How many prepared statements each connection keeps; above the number the store uses.
const STATEMENT_CACHE: usize = 64;

/// How long a statement waits for another connection's lock before SQLITE_BUSY.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A store in one SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    /// The database file, for syncing what checkpoints copy; see [`sync_handle`].
    file: Option<Arc<std::fs::File>>,
    /// Frames the WAL had copied back at the last checkpoint here (SQLite's count).
    backfilled: i64,
    /// How far the history database is set up on this connection.
    history: History,
    pub(crate) accounting: crate::access::Accounting,
    /// See [`Backend::audit_end`].
    audit_end: Option<u64>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_at(path, schema::SCHEMA_VERSION)
    }

    /// Opens the file with its schema brought up to `version` only (tests of migrations).
    pub(crate) fn open_at(path: impl AsRef<Path>, version: u32) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let journal = to_wal(&conn, "PRAGMA journal_mode = WAL")?;
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
        // Checkpoints run off the commit path (`Store::maintain`), but under continuous
        // writes a checkpoint on another connection never catches up with the last
        // commit, so the WAL would never start over and grow without end (lookups in
        // it slowing down as it does). A checkpoint on the committing connection, between
        // two commits, catches up and lets the next commit rewind the WAL: the engine's
        // writer runs one right after each upkeep checkpoint, when little is left to
        // copy, and this limit makes it run one anyway if the WAL grows past it.
        conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT)?;
        conn.pragma_update(None, "mmap_size", 268_435_456)?;
        // Statement journals (an `INSERT … SELECT` inside a transaction keeps one) and
        // sorts stay in memory instead of temporary files: indexing history wrote about
        // 1.4 MB of them ten times a second.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let mut store = Self {
            conn,
            file: None,
            backfilled: 0,
            history: History::Detached,
            accounting: crate::access::Accounting::default(),
            audit_end: None,
        };
        schema::migrate_to(&mut store, version)?;
        Ok(store)
    }
}

impl SqliteStore {
    /// The main database file's sync handle (`None` in memory).
    fn database_file(&mut self) -> Result<Option<Arc<std::fs::File>>> {
        if self.file.is_none() {
            let Some(path) = self.conn.path().filter(|p| !p.is_empty()) else {
                return Ok(None);
            };
            self.file = Some(sync_handle(Path::new(path))?);
        }
        Ok(self.file.clone())
    }
}

/// A handle on a database file for `fdatasync`, one per file for the life of the process.
/// SQLite locks the file with POSIX advisory locks, which the kernel drops for the whole
/// process as soon as *any* descriptor of the file is closed, so no handle opened here is
/// ever closed: closing it would silently unlock every connection's locks on the file.
/// Handles are told apart by path and, on Unix, by device and inode, so that a file
/// replaced at the same path (a restored backup) gets a handle of its own.
fn sync_handle(path: &Path) -> Result<Arc<std::fs::File>> {
    type Identity = (PathBuf, u64, u64);
    static HANDLES: Mutex<Vec<(Identity, Arc<std::fs::File>)>> = Mutex::new(Vec::new());
    let error = |source| StoreError::File {
        path: path.display().to_string(),
        source,
    };
    #[cfg(unix)]
    fn device_and_inode(meta: &std::fs::Metadata) -> (u64, u64) {
        use std::os::unix::fs::MetadataExt;
        (meta.dev(), meta.ino())
    }
    #[cfg(not(unix))]
    fn device_and_inode(_: &std::fs::Metadata) -> (u64, u64) {
        (0, 0)
    }
    let canonical = path.canonicalize().map_err(error)?;
    let (device, inode) = device_and_inode(&std::fs::metadata(&canonical).map_err(error)?);
    let identity = (canonical, device, inode);
    let mut handles = HANDLES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, file)) = handles.iter().find(|(id, _)| *id == identity) {
        return Ok(file.clone());
    }
    let file = Arc::new(std::fs::File::open(&identity.0).map_err(error)?);
    handles.push((identity, file.clone()));
    Ok(file)
}

impl rusqlite::ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Param::Int(v) => ValueRef::Integer(*v),
            Param::Text(v) => ValueRef::Text(v.as_bytes()),
            Param::Blob(v) => ValueRef::Blob(v),
            Param::Bool(v) => ValueRef::Integer(i64::from(*v)),
            Param::NullText | Param::NullBlob | Param::NullInt => ValueRef::Null,
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
        // The answer depends on the text alone: each thread checks a text once.
        let key = (sql.as_ptr() as usize, sql.len());
        if CHECKED.with_borrow(|checked| checked.contains(&key)) {
            return Ok(stmt);
        }
        for i in 1..=stmt.parameter_count() {
            let numbered = stmt
                .parameter_name(i)
                .and_then(|name| name.strip_prefix('$'))
                .and_then(|n| n.parse::<usize>().ok());
            if numbered != Some(i) {
                return Err(StoreError::ParameterOrder(sql));
            }
        }
        CHECKED.with_borrow_mut(|checked| checked.insert(key));
        Ok(stmt)
    }
}

thread_local! {
    /// Statement texts (address and length) whose parameters were found in order.
    static CHECKED: std::cell::RefCell<std::collections::HashSet<(usize, usize)>> =
        std::cell::RefCell::default();
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

    fn audit_end(&mut self) -> &mut Option<u64> {
        &mut self.audit_end
    }

    fn maintain(&mut self) -> Result<()> {
        // PASSIVE copies what is committed into the database file without blocking the
        // writer. SQLite syncs the database file only when a checkpoint copies the WAL up
        // to the newest commit, which under continuous commits only the writer's own
        // does (see `WAL_AUTOCHECKPOINT`): its sync would flush every page copied here
        // since, with the writer stalled. So they are synced here, off the commit path,
        // and the writer's sync has only its own few pages to flush.
        let backfilled: i64 =
            self.conn
                .query_row("PRAGMA main.wal_checkpoint(PASSIVE)", [], |row| row.get(2))?;
        // The count is of frames copied back since the WAL last started over, so a
        // change means this checkpoint copied pages (an idle store syncs nothing).
        if backfilled > 0
            && backfilled != self.backfilled
            && let Some(file) = self.database_file()?
        {
            file.sync_data().map_err(|source| StoreError::File {
                path: self.conn.path().unwrap_or_default().to_string(),
                source,
            })?;
        }
        self.backfilled = backfilled;
        if self.history != History::Detached {
            self.conn
                .query_row("PRAGMA history.wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        }
        Ok(())
    }

    fn complete_checkpoint(&mut self) -> Result<()> {
        // With no commit running beside it, a passive checkpoint here reaches the newest
        // commit, and SQLite syncs the database file itself.
        self.conn
            .query_row("PRAGMA main.wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        Ok(())
    }

    fn transaction<T>(&mut self, f: impl FnOnce(&mut dyn Conn) -> Result<T>) -> Result<T> {
        // IMMEDIATE takes the write lock up front, so a writer never fails half-way with
        // SQLITE_BUSY on lock upgrade. Dropping `tx` on an error rolls it back.
        self.run(TransactionBehavior::Immediate, f)
    }

    fn derived_transaction<T>(&mut self, f: impl FnOnce(&mut dyn Conn) -> Result<T>) -> Result<T> {
        // Derived data lives in the history database (synchronous=NORMAL: its commits
        // skip the fsync). DEFERRED locks only the database actually written, so the
        // exchange's commits to the main database go on meanwhile.
        self.history()?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Deferred)?;
        // Take the history database's write lock first, while the busy timeout still
        // applies: a transaction that has read and then writes gets SQLITE_BUSY at once
        // when another connection holds the lock, rather than waiting (deadlock
        // avoidance).
        tx.execute(
            "UPDATE history.history_indexed SET last_id = last_id WHERE 0",
            [],
        )?;
        let out = f(&mut SqliteConn(&tx))?;
        tx.commit()?;
        Ok(out)
    }

    fn customer_conn(&mut self, _customer: ztx_core::CustomerId) -> Result<Box<dyn Conn + '_>> {
        // No row security in SQLite: the scope's own filters are the segmentation.
        self.history()?;
        Ok(Box::new(self))
    }

    fn history(&mut self) -> Result<()> {
        if self.history == History::Ready {
            return Ok(());
        }
        if self.history == History::Detached {
            let main = self.conn.path().filter(|p| !p.is_empty()).ok_or_else(|| {
                StoreError::Setting("an in-memory database has no history".into())
            })?;
            let path = format!("{main}-history");
            self.conn
                .execute("ATTACH DATABASE ?1 AS history", [&path])?;
            // From here on a failure leaves it attached; the next call resumes below.
            self.history = History::Attached;
        }
        let journal = to_wal(&self.conn, "PRAGMA history.journal_mode = WAL")?;
        if !journal.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Setting(format!(
                "history journal_mode=WAL refused (got {journal:?})"
            )));
        }
        self.conn
            .pragma_update(Some("history"), "synchronous", "NORMAL")?;
        // Checked with plain reads first, so that attaching takes no lock once the
        // history belongs to this store; (re)built under IMMEDIATE, which waits for the
        // write locks rather than failing on a lock upgrade when connections attach at
        // once, and which re-checks inside.
        if !self.history_matches()? {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            rebuild_history_if_foreign(&tx)?;
            tx.commit()?;
        }
        self.history = History::Ready;
        Ok(())
    }
}

/// Whether the history database is attached and known to belong to this store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum History {
    Detached,
    Attached,
    Ready,
}

/// The history database records which store it indexes (a random id kept in the
/// store's `meta`) and how far. It is foreign, and emptied to be indexed again from the
/// start, when it was built for another store, or for a later state of this one than the
/// store holds (an older backup of the store restored beside a newer history file):
/// otherwise ids reused after the restore would never be indexed nor read from the tail.
const HISTORY_IS_OURS: &str = "SELECT \
    (SELECT COUNT(*) FROM history.sqlite_master WHERE name = 'source') = 1 \
    AND (SELECT database_id FROM history.source) \
        = (SELECT value FROM main.meta WHERE key = 'database_id') \
    AND (SELECT last_id FROM history.history_indexed WHERE name = 'orders') \
        <= (SELECT COALESCE(MAX(id), 0) FROM main.orders) \
    AND (SELECT last_id FROM history.history_indexed WHERE name = 'trades') \
        <= (SELECT COALESCE(MAX(id), 0) FROM main.trades) \
    AND (SELECT last_id FROM history.history_indexed WHERE name = 'audit') \
        <= (SELECT COALESCE(MAX(idx) + 1, 0) FROM main.audit_entries)";

/// Runs `switch`, a `PRAGMA … journal_mode = WAL`, and returns the mode it reports. While another
/// connection switches a new file, SQLite answers SQLITE_BUSY at once rather than
/// through the busy handler (seen about once in a thousand runs of eight connections
/// attaching a new history database together): so it is asked again, for as long as
/// the busy timeout would have waited.
fn to_wal(conn: &Connection, switch: &str) -> Result<String> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.query_row(switch, [], |r| r.get(0)) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            other => return Ok(other?),
        }
    }
}

impl SqliteStore {
    fn history_matches(&self) -> Result<bool> {
        let exists: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM history.sqlite_master \
             WHERE name IN ('history_indexed', 'source', 'audit_nodes')",
            [],
            |r| r.get(0),
        )?;
        if exists < 3 {
            return Ok(false);
        }
        let ours: Option<bool> = self.conn.query_row(HISTORY_IS_OURS, [], |r| r.get(0))?;
        Ok(ours == Some(true))
    }
}

/// Inside an IMMEDIATE transaction: creates the history tables if needed and empties
/// them unless they belong to this store as it is now (see [`HISTORY_IS_OURS`]).
fn rebuild_history_if_foreign(tx: &rusqlite::Transaction<'_>) -> Result<()> {
    tx.execute(
        "INSERT INTO main.meta (key, value) VALUES ('database_id', lower(hex(randomblob(16)))) \
         ON CONFLICT (key) DO NOTHING",
        [],
    )?;
    tx.execute_batch(&schema::render(schema::HISTORY, Dialect::Sqlite))?;
    tx.execute_batch(&schema::render(schema::AUDIT_NODES, Dialect::Sqlite))?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS history.source (database_id TEXT NOT NULL)")?;
    let ours: Option<bool> = tx.query_row(HISTORY_IS_OURS, [], |r| r.get(0))?;
    if ours != Some(true) {
        tx.execute_batch(
            "DELETE FROM history.order_index; \
             DELETE FROM history.order_client_index; \
             DELETE FROM history.trade_index; \
             DELETE FROM history.audit_nodes; \
             UPDATE history.history_indexed SET last_id = 0; \
             DELETE FROM history.source; \
             INSERT INTO history.source (database_id) \
                 SELECT value FROM main.meta WHERE key = 'database_id';",
        )?;
    }
    Ok(())
}

impl SqliteStore {
    fn run<T>(
        &mut self,
        behavior: TransactionBehavior,
        f: impl FnOnce(&mut dyn Conn) -> Result<T>,
    ) -> Result<T> {
        let tx = self.conn.transaction_with_behavior(behavior)?;
        let out = f(&mut SqliteConn(&tx))?;
        tx.commit()?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The history database is a file of its own, so that indexing in the background
    /// never holds the lock the exchange's commits need, and its commits skip fsync.
    #[test]
    fn history_lives_in_its_own_unsynced_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let mut store = SqliteStore::open(&path).unwrap();
        let main_tables = |store: &SqliteStore| -> Vec<String> {
            let mut stmt = store
                .conn
                .prepare("SELECT name FROM main.sqlite_master WHERE type = 'table'")
                .unwrap();
            stmt.query_map([], |r| r.get(0))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        };
        assert!(!main_tables(&store).iter().any(|t| t.contains("index")));
        store.history().unwrap();
        assert!(dir.path().join("s.sqlite-history").exists());
        let synchronous: i64 = store
            .conn
            .query_row("PRAGMA history.synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(synchronous, 1, "NORMAL");
        let main_synchronous: i64 = store
            .conn
            .query_row("PRAGMA main.synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(main_synchronous, 2, "FULL");
        let temp_store: i64 = store
            .conn
            .query_row("PRAGMA temp_store", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            temp_store, 2,
            "statement journals in memory, not temporary files"
        );
        let indexed: i64 = store
            .conn
            .query_row("SELECT COUNT(*) FROM history.history_indexed", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(indexed, 3, "orders, trades and the audit tree");
        assert!(!main_tables(&store).iter().any(|t| t.contains("index")));
    }

    /// `SET a = $2 WHERE b = $1` would bind each value to the other column on SQLite;
    /// such a statement is refused before it runs, and in-order ones run.
    #[test]
    fn misnumbered_parameters_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("s.sqlite")).unwrap();
        let mut conn = SqliteConn(&store.conn);
        let params = [Param::Int(1), Param::Int(2)];
        assert!(matches!(
            conn.query("SELECT $2, $1", &params),
            Err(StoreError::ParameterOrder("SELECT $2, $1"))
        ));
        assert_eq!(
            conn.query("SELECT $1, $2, $1", &params).unwrap(),
            vec![vec![Cell::Int(1), Cell::Int(2), Cell::Int(1)]]
        );
    }

    /// One sync handle per file, kept: asking again gives the same one, and a file
    /// replaced at the same path gets a new one (the old one stays open, never closed).
    #[test]
    fn sync_handles_are_one_per_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        std::fs::write(&path, b"first").unwrap();
        let first = sync_handle(&path).unwrap();
        assert!(Arc::ptr_eq(&first, &sync_handle(&path).unwrap()));
        let replacement = dir.path().join("s.sqlite.new");
        std::fs::write(&replacement, b"second").unwrap();
        std::fs::rename(&replacement, &path).unwrap();
        let second = sync_handle(&path).unwrap();
        assert!(!Arc::ptr_eq(&first, &second));
        assert_eq!(
            Arc::strong_count(&first),
            2,
            "the first stays in the registry"
        );
        second.sync_data().unwrap();
    }

    /// Connections that attach the history database at the same moment, while another
    /// indexes, all succeed (none gets SQLITE_BUSY from a lock upgrade).
    #[test]
    fn connections_attach_history_concurrently() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        drop(SqliteStore::open(&path).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let mut store = SqliteStore::open(&path).unwrap();
                    for _ in 0..20 {
                        if i % 2 == 0 {
                            crate::Store::index_history(&mut store, 10).unwrap();
                        } else {
                            crate::Store::history_indexed_to(&mut store).unwrap();
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
}
