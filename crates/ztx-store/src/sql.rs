//! The small SQL surface both backends share: bound parameters, fetched cells, the
//! connection traits, and the checked conversions between Rust values and columns.

use ztx_core::{Amount, AssetCode, Price, TransferId};

use crate::error::{Result, StoreError};

/// A bound parameter. Nulls carry their column type because PostgreSQL checks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Param {
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
    Bool(bool),
    NullText,
    NullBlob,
    NullInt,
}

/// A fetched value. `Other` names a type the store never writes (e.g. a float).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Cell {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
    Bool(bool),
    Other(&'static str),
}

pub(crate) type Row = Vec<Cell>;

/// The SQL dialects, for the few places where DDL must differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// Runs statements. Statement text is `'static` so that backends can cache the prepared
/// statement by it. Parameters are written `$1`, `$2`, … in order of first use, which
/// both SQLite and PostgreSQL accept.
pub(crate) trait Conn {
    /// Runs a statement, returning the number of rows changed.
    fn exec(&mut self, sql: &'static str, params: &[Param]) -> Result<u64>;
    /// Runs a query, returning every row.
    fn query(&mut self, sql: &'static str, params: &[Param]) -> Result<Vec<Row>>;
    /// Runs several parameterless statements (DDL).
    fn batch(&mut self, sql: &str) -> Result<()>;
    /// Runs statements in order, stopping at the first that fails: its position in
    /// `statements` and its error. A backend may send them all before it reads an
    /// answer (PostgreSQL pipelines them); this default runs one at a time.
    fn exec_all(&mut self, statements: &[Stmt]) -> std::result::Result<(), (usize, StoreError)> {
        for (i, stmt) in statements.iter().enumerate() {
            self.exec(stmt.sql, &stmt.params).map_err(|e| (i, e))?;
        }
        Ok(())
    }
}

/// One statement of a batch for [`Conn::exec_all`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stmt {
    pub(crate) sql: &'static str,
    pub(crate) params: Vec<Param>,
}

impl<C: Conn + ?Sized> Conn for &mut C {
    fn exec(&mut self, sql: &'static str, params: &[Param]) -> Result<u64> {
        (**self).exec(sql, params)
    }
    fn query(&mut self, sql: &'static str, params: &[Param]) -> Result<Vec<Row>> {
        (**self).query(sql, params)
    }
    fn batch(&mut self, sql: &str) -> Result<()> {
        (**self).batch(sql)
    }
    fn exec_all(&mut self, statements: &[Stmt]) -> std::result::Result<(), (usize, StoreError)> {
        (**self).exec_all(statements)
    }
}

/// A database connection that can run a closure in one transaction: committed when the
/// closure returns `Ok`, rolled back otherwise.
pub(crate) trait Backend: Conn {
    fn dialect(&self) -> Dialect;
    /// Background upkeep that must not run on the commit path (SQLite: checkpoint).
    fn maintain(&mut self) -> Result<()>;
    /// On the committing connection, between commits: finish what `maintain` started
    /// elsewhere (SQLite: copy the commits its checkpoint missed, so the WAL restarts).
    fn complete_checkpoint(&mut self) -> Result<()>;
    fn transaction<T>(&mut self, f: impl FnOnce(&mut dyn Conn) -> Result<T>) -> Result<T>;
    /// Where the audit log ended after this connection's last commit of entries, when
    /// it committed some (see [`crate::audit::append`]); `None` makes the next append
    /// ask the database.
    fn audit_end(&mut self) -> &mut Option<u64>;
    /// A transaction for data derived from what is durable (the history indexes): still
    /// atomic, but its commit does not wait for the disk, so a crash may lose it; the
    /// data and its progress mark are then lost together and derived again. Two never
    /// run at once: each takes the history lock before reading anything.
    fn derived_transaction<T>(&mut self, f: impl FnOnce(&mut dyn Conn) -> Result<T>) -> Result<T>;
    /// A connection on which only `customer`'s rows are to be read (PostgreSQL: a
    /// transaction whose row security shows no others; see [`crate::CustomerScope`]).
    fn customer_conn(&mut self, customer: ztx_core::CustomerId) -> Result<Box<dyn Conn + '_>>;
    /// Makes the history index tables reachable on this connection (SQLite: attaches
    /// their database, creating it if needed; PostgreSQL: they are in the database).
    fn history(&mut self) -> Result<()>;
}

/// The first row of a query, if any.
pub(crate) fn first(rows: Vec<Row>) -> Option<Row> {
    rows.into_iter().next()
}

// ---- encoding ----

/// A `u64` as a signed 64-bit column value; refused above `i64::MAX`.
pub(crate) fn int(value: u64, what: &'static str) -> Result<Param> {
    i64::try_from(value)
        .map(Param::Int)
        .map_err(|_| StoreError::OutOfRange {
            what,
            value: value.to_string(),
        })
}

/// Amounts are decimal text of minor units: exact on both engines and readable in a SQL
/// shell, with no engine-specific 128-bit type.
pub(crate) fn amount(value: Amount) -> Param {
    Param::Text(value.minor().to_string())
}

pub(crate) fn price(value: Price) -> Param {
    Param::Text(value.minor().to_string())
}

/// Transfer ids are 16-byte big-endian blobs rather than text: fixed width, and the
/// engines' byte-wise blob comparison then orders them numerically (text would sort
/// `10` before `9`), so `ORDER BY id` and range scans mean what they say.
pub(crate) fn transfer_id(value: TransferId) -> Param {
    Param::Blob(value.0.to_be_bytes().to_vec())
}

pub(crate) fn text(value: &str) -> Param {
    Param::Text(value.to_owned())
}

/// A `u32` query limit, capped at [`crate::MAX_ROWS`].
pub(crate) fn limit(value: u32) -> Param {
    Param::Int(i64::from(value.min(crate::MAX_ROWS)))
}

/// An optional lower time bound; absent means from the beginning.
pub(crate) fn lower_bound(value: Option<u64>, what: &'static str) -> Result<Param> {
    int(value.unwrap_or(0), what)
}

/// An optional upper time bound; absent (or beyond the storable range) means no bound.
pub(crate) fn upper_bound(value: Option<u64>) -> Param {
    Param::Int(value.map_or(i64::MAX, |v| i64::try_from(v).unwrap_or(i64::MAX)))
}

// ---- decoding ----

/// Parses canonical decimal minor units: digits only, no sign, no leading zeros.
pub(crate) fn parse_u128(text: &str) -> Option<u128> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if !canonical {
        return None;
    }
    text.parse().ok()
}

/// Reads one row's cells in column order, turning anything unexpected into
/// [`StoreError::CorruptRow`] naming the table and column.
pub(crate) struct RowReader {
    table: &'static str,
    cells: std::vec::IntoIter<Cell>,
}

impl RowReader {
    pub(crate) fn new(table: &'static str, row: Row) -> Self {
        Self {
            table,
            cells: row.into_iter(),
        }
    }

    fn corrupt(&self, column: &'static str, detail: impl Into<String>) -> StoreError {
        StoreError::corrupt(self.table, column, detail)
    }

    fn cell(&mut self, column: &'static str) -> Result<Cell> {
        match self.cells.next() {
            Some(cell) => Ok(cell),
            None => Err(self.corrupt(column, "column missing from result")),
        }
    }

    fn unexpected(&self, column: &'static str, wanted: &str, cell: &Cell) -> StoreError {
        self.corrupt(column, format!("expected {wanted}, found {cell:?}"))
    }

    pub(crate) fn opt_i64(&mut self, column: &'static str) -> Result<Option<i64>> {
        match self.cell(column)? {
            Cell::Null => Ok(None),
            Cell::Int(v) => Ok(Some(v)),
            other => Err(self.unexpected(column, "an integer", &other)),
        }
    }

    pub(crate) fn opt_u64(&mut self, column: &'static str) -> Result<Option<u64>> {
        match self.opt_i64(column)? {
            None => Ok(None),
            Some(v) => u64::try_from(v)
                .map(Some)
                .map_err(|_| self.corrupt(column, format!("negative value {v}"))),
        }
    }

    pub(crate) fn u64(&mut self, column: &'static str) -> Result<u64> {
        self.opt_u64(column)?
            .ok_or_else(|| self.corrupt(column, "unexpected NULL"))
    }

    pub(crate) fn opt_text(&mut self, column: &'static str) -> Result<Option<String>> {
        match self.cell(column)? {
            Cell::Null => Ok(None),
            Cell::Text(v) => Ok(Some(v)),
            other => Err(self.unexpected(column, "text", &other)),
        }
    }

    pub(crate) fn text(&mut self, column: &'static str) -> Result<String> {
        self.opt_text(column)?
            .ok_or_else(|| self.corrupt(column, "unexpected NULL"))
    }

    pub(crate) fn opt_blob(&mut self, column: &'static str) -> Result<Option<Vec<u8>>> {
        match self.cell(column)? {
            Cell::Null => Ok(None),
            Cell::Blob(v) => Ok(Some(v)),
            other => Err(self.unexpected(column, "a blob", &other)),
        }
    }

    /// SQLite has no boolean type: it stores 0 or 1.
    pub(crate) fn bool(&mut self, column: &'static str) -> Result<bool> {
        match self.cell(column)? {
            Cell::Bool(v) => Ok(v),
            Cell::Int(0) => Ok(false),
            Cell::Int(1) => Ok(true),
            other => Err(self.unexpected(column, "a boolean", &other)),
        }
    }

    pub(crate) fn opt_u128(&mut self, column: &'static str) -> Result<Option<u128>> {
        match self.opt_text(column)? {
            None => Ok(None),
            Some(text) => parse_u128(&text)
                .map(Some)
                .ok_or_else(|| self.corrupt(column, format!("{text:?} is not a decimal amount"))),
        }
    }

    pub(crate) fn amount(&mut self, column: &'static str) -> Result<Amount> {
        self.opt_u128(column)?
            .map(Amount::from_minor)
            .ok_or_else(|| self.corrupt(column, "unexpected NULL"))
    }

    pub(crate) fn price(&mut self, column: &'static str) -> Result<Price> {
        Ok(Price::from_minor(self.amount(column)?.minor()))
    }

    pub(crate) fn opt_price(&mut self, column: &'static str) -> Result<Option<Price>> {
        Ok(self.opt_u128(column)?.map(Price::from_minor))
    }

    pub(crate) fn opt_transfer_id(&mut self, column: &'static str) -> Result<Option<TransferId>> {
        match self.opt_blob(column)? {
            None => Ok(None),
            Some(bytes) => {
                let raw: [u8; 16] = bytes.as_slice().try_into().map_err(|_| {
                    self.corrupt(
                        column,
                        format!("transfer id of {} bytes, not 16", bytes.len()),
                    )
                })?;
                Ok(Some(TransferId(u128::from_be_bytes(raw))))
            }
        }
    }

    pub(crate) fn transfer_id(&mut self, column: &'static str) -> Result<TransferId> {
        self.opt_transfer_id(column)?
            .ok_or_else(|| self.corrupt(column, "unexpected NULL"))
    }

    pub(crate) fn asset(&mut self, column: &'static str) -> Result<AssetCode> {
        let text = self.text(column)?;
        AssetCode::new(&text)
            .ok_or_else(|| self.corrupt(column, format!("bad asset code {text:?}")))
    }

    /// Text decoded by `parse`, e.g. an enum's wire name.
    pub(crate) fn parsed<T>(
        &mut self,
        column: &'static str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T> {
        let text = self.text(column)?;
        parse(&text).ok_or_else(|| self.corrupt(column, format!("unknown value {text:?}")))
    }

    pub(crate) fn corrupt_here(
        &self,
        column: &'static str,
        detail: impl Into<String>,
    ) -> StoreError {
        self.corrupt(column, detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_must_be_canonical_decimals() {
        assert_eq!(parse_u128("0"), Some(0));
        assert_eq!(parse_u128("1234"), Some(1234));
        assert_eq!(parse_u128(&u128::MAX.to_string()), Some(u128::MAX));
        for bad in [
            "",
            "+1",
            "-1",
            "01",
            "1.5",
            " 1",
            "1e3",
            "abc",
            "340282366920938463463374607431768211456",
        ] {
            assert_eq!(parse_u128(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ids_beyond_i64_are_refused() {
        assert!(int(u64::MAX, "id").is_err());
        assert_eq!(int(7, "id").ok(), Some(Param::Int(7)));
    }

    #[test]
    fn transfer_id_blobs_sort_numerically() {
        let a = transfer_id(TransferId(9));
        let b = transfer_id(TransferId(10));
        let c = transfer_id(TransferId(1 << 70));
        match (a, b, c) {
            (Param::Blob(a), Param::Blob(b), Param::Blob(c)) => assert!(a < b && b < c),
            other => unreachable!("{other:?}"),
        }
    }
}
