//! The audit log's rows. Entries are appended in the transaction that commits the
//! changes they record (so an entry is durable no later than its effect), with their
//! leaf hashes; signed checkpoints likewise. Both tables refuse UPDATE and DELETE by
//! trigger. The tree's interior nodes are derived data: [`index_audit`] fills them off
//! the commit path, like the history indexes, and proofs compute any node not yet
//! stored from its children. Only every [`STORED_LEVELS`]th level is stored (one node
//! per 16 entries, not one per entry): a proof computes the levels between from at
//! most 16 stored hashes each, and the indexing writes a fifteenth of what it would.

use std::cell::RefCell;
use std::sync::LazyLock;

use ztx_audit::tree::{self, NodeSource, RangeError};
use ztx_audit::{Completed, Frontier, Hash};

use crate::error::{Result, StoreError};
use crate::sql::{self, Backend, Conn, RowReader, Stmt};
use crate::write::indexed_to;

/// One appended entry: its position in the log, its leaf hash and its canonical bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub index: u64,
    pub leaf: Hash,
    pub entry: Vec<u8>,
}

impl AuditRow {
    /// The rows that continue a log whose right edge is `frontier` and whose newest leaf
    /// is `last_leaf`, both advanced past them, and each entry as logged: what each row
    /// decodes to. The entries come encoded, each as [`ztx_audit::Entry::logged`] gave
    /// it (whatever its `prev` then); each is given its predecessor's leaf as `prev`, in
    /// the entry and in its bytes, hashed, and numbered where the log ends. The engine
    /// encodes each batch's entries on its own thread, so that the writer, which every
    /// commit waits for, only chains and hashes them.
    ///
    /// The tree's nodes the entries complete at the levels the store keeps go to
    /// `stored`: the writer hands them to the indexer ([`crate::Store::index_audit_nodes`]),
    /// which then need not read the entries back.
    pub fn chain_encoded(
        encoded: Vec<(ztx_audit::Entry, Vec<u8>)>,
        frontier: &mut Frontier,
        last_leaf: &mut Hash,
        stored: &mut Vec<Completed>,
    ) -> (Vec<AuditRow>, Vec<ztx_audit::Entry>) {
        let mut rows = Vec::with_capacity(encoded.len());
        let mut logged = Vec::with_capacity(encoded.len());
        for (mut entry, mut bytes) in encoded {
            entry.prev = *last_leaf;
            if !ztx_audit::Entry::set_encoded_prev(&mut bytes, last_leaf) {
                // Not bytes this version encodes: encode the entry again.
                (entry, bytes) = entry.logged();
            }
            let leaf = Hash::leaf(&bytes);
            *last_leaf = leaf;
            rows.push(AuditRow {
                index: frontier.size(),
                leaf,
                entry: bytes,
            });
            logged.push(entry);
            frontier.push(leaf, |c| {
                if is_stored(c.level) {
                    stored.push(c);
                }
            });
        }
        (rows, logged)
    }
}

/// A checkpoint note the log signed, with the size and root it commits to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub size: u64,
    pub root: Hash,
    pub note: String,
    pub created_ms: u64,
}

/// What one commit appends to the audit log, and the security responses its entries
/// record (carried out in the same transaction).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditAppend {
    /// Consecutive entries, continuing the log exactly where it ends.
    pub rows: Vec<AuditRow>,
    pub checkpoint: Option<StoredCheckpoint>,
    pub effects: Vec<crate::security::SecurityEffect>,
}

impl AuditAppend {
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.checkpoint.is_none() && self.effects.is_empty()
    }
}

/// Interior nodes are stored at the levels that are multiples of this.
pub(crate) const STORED_LEVELS: u32 = 4;

/// Whether the store keeps the tree's nodes at `level` (the leaves are the entries').
fn is_stored(level: u32) -> bool {
    level > 0 && level.is_multiple_of(STORED_LEVELS)
}

/// How many rows one INSERT of entries takes: a commit's rows go in as few statements of
/// these sizes as add up to them (nine rows: 8 + 1), each a multi-row `VALUES` list.
/// Statement by statement, SQLite's cost per row is mostly the statement's own (look it
/// up, bind, step, reset); a group commit holds about ten entries.
const INSERT_SIZES: [usize; 5] = [16, 8, 4, 2, 1];

/// The INSERT of `INSERT_SIZES[i]` rows, for each `i`: the statement text is `'static`, so
/// that both backends cache each prepared statement.
static INSERT_ENTRIES: LazyLock<[String; INSERT_SIZES.len()]> =
    LazyLock::new(|| INSERT_SIZES.map(insert_entries));

fn insert_entries(rows: usize) -> String {
    let values = (0..rows)
        .map(|r| format!("(${}, ${}, ${})", 3 * r + 1, 3 * r + 2, 3 * r + 3))
        .collect::<Vec<_>>()
        .join(", ");
    format!("INSERT INTO audit_entries (idx, leaf, entry) VALUES {values}")
}

const INSERT_CHECKPOINT: &str = "INSERT INTO audit_checkpoints (size, root, note, created_ms) \
     VALUES ($1, $2, $3, $4)";

/// Inside the commit's transaction: checks that the entries continue the log, and adds
/// their inserts (and the checkpoint's) to the commit's `batch`.
///
/// `end`: where the log ended after this connection's last commit of entries, if it
/// made one. The log's only appender is the server's writer, on one connection, so that
/// is where it still ends, and the check for a gap costs no query; another appender
/// would take the next index first and the primary key would refuse ours. A connection
/// that has not committed entries yet (or whose last commit failed) asks the database.
pub(crate) fn append(
    tx: &mut dyn Conn,
    audit: &AuditAppend,
    end: Option<u64>,
    batch: &mut Vec<Stmt>,
) -> Result<()> {
    if let Some(first) = audit.rows.first() {
        // Appending anywhere but at the end would leave a gap or hit an existing index
        // (the primary key refuses that); check the gap here, once per commit.
        let size = match end {
            Some(end) => end,
            None => size(tx)?,
        };
        if first.index != size {
            return Err(StoreError::AuditGap {
                expected: size,
                got: first.index,
            });
        }
    }
    for (n, row) in (0u64..).zip(&audit.rows) {
        let expected = audit.rows.first().map_or(0, |f| f.index).saturating_add(n);
        if row.index != expected {
            return Err(StoreError::AuditGap {
                expected,
                got: row.index,
            });
        }
    }
    let mut rest = audit.rows.as_slice();
    // The largest size that fits each time; the last size is 1, so one always does.
    while let Some((sql, size)) = INSERT_ENTRIES
        .iter()
        .zip(INSERT_SIZES)
        .find(|&(_, size)| size <= rest.len())
    {
        let Some((chunk, after)) = rest.split_at_checked(size) else {
            break;
        };
        let mut params = Vec::with_capacity(3 * size);
        for row in chunk {
            params.push(sql::int(row.index, "audit index")?);
            params.push(sql::Param::Blob(row.leaf.0.to_vec()));
            params.push(sql::Param::Blob(row.entry.clone()));
        }
        batch.push(Stmt {
            sql: sql.as_str(),
            params,
        });
        rest = after;
    }
    if let Some(c) = &audit.checkpoint {
        batch.push(Stmt {
            sql: INSERT_CHECKPOINT,
            params: vec![
                sql::int(c.size, "checkpoint size")?,
                sql::Param::Blob(c.root.0.to_vec()),
                sql::text(&c.note),
                sql::int(c.created_ms, "checkpoint created_ms")?,
            ],
        });
    }
    Ok(())
}

/// How many entries the log holds.
pub(crate) fn size(conn: &mut dyn Conn) -> Result<u64> {
    let row = sql::first(conn.query("SELECT MAX(idx) AS last FROM audit_entries", &[])?);
    let last = match row {
        None => None,
        Some(row) => RowReader::new("audit_entries", row).opt_u64("last")?,
    };
    Ok(last.map_or(0, |l| l.saturating_add(1)))
}

pub(crate) fn entries(conn: &mut dyn Conn, start: u64, limit: u32) -> Result<Vec<AuditRow>> {
    let rows = conn.query(
        "SELECT idx, leaf, entry FROM audit_entries WHERE idx >= $1 ORDER BY idx LIMIT $2",
        &[sql::int(start, "audit index")?, sql::limit(limit)],
    )?;
    rows.into_iter()
        .map(|row| {
            let mut r = RowReader::new("audit_entries", row);
            Ok(AuditRow {
                index: r.u64("idx")?,
                leaf: hash(&mut r, "leaf")?,
                entry: r
                    .opt_blob("entry")?
                    .ok_or_else(|| StoreError::corrupt("audit_entries", "entry", "NULL"))?,
            })
        })
        .collect()
}

fn hash(r: &mut RowReader, column: &'static str) -> Result<Hash> {
    let bytes = r
        .opt_blob(column)?
        .ok_or_else(|| r.corrupt_here(column, "NULL"))?;
    Hash::from_slice(&bytes).ok_or_else(|| r.corrupt_here(column, "not a 32-byte hash"))
}

pub(crate) fn checkpoints(
    conn: &mut dyn Conn,
    after_size: Option<u64>,
    limit: u32,
) -> Result<Vec<StoredCheckpoint>> {
    let rows = match after_size {
        // The newest one.
        None => conn.query(
            "SELECT size, root, note, created_ms FROM audit_checkpoints \
             ORDER BY size DESC LIMIT 1",
            &[],
        )?,
        Some(after) => conn.query(
            "SELECT size, root, note, created_ms FROM audit_checkpoints \
             WHERE size > $1 ORDER BY size LIMIT $2",
            &[sql::int(after, "checkpoint size")?, sql::limit(limit)],
        )?,
    };
    rows.into_iter()
        .map(|row| {
            let mut r = RowReader::new("audit_checkpoints", row);
            Ok(StoredCheckpoint {
                size: r.u64("size")?,
                root: hash(&mut r, "root")?,
                note: r.text("note")?,
                created_ms: r.u64("created_ms")?,
            })
        })
        .collect()
}

/// How many nodes of a stored level one read fetches: an aligned group of siblings, the
/// 16 nodes under one node [`STORED_LEVELS`] levels up.
const GROUP: u64 = 1 << STORED_LEVELS;

/// The nodes of one group as read: `hashes[i]` is node `start + i`, `None` where the
/// store has none (not indexed yet, or past the tree).
struct Group {
    start: u64,
    hashes: Vec<Option<Hash>>,
}

/// The tree's perfect subtrees as the store has them: leaves from `audit_entries`,
/// interior nodes from `audit_nodes` where indexed, computed from their children where
/// not yet.
///
/// Stored nodes are read a [`GROUP`] at a time and the last group read at each stored
/// level is kept: a proof's siblings at four consecutive levels all hang from the 16
/// nodes under one ancestor, and computing a node from its children reads its stored
/// descendants in order, so one query serves what took one per node (an inclusion proof
/// in a tree of ten million entries: at most ten queries for its nodes, not about 113).
pub(crate) struct StoredNodes<'a> {
    conn: RefCell<&'a mut dyn Conn>,
    size: u64,
    /// Indexed by `level / STORED_LEVELS`.
    groups: RefCell<Vec<Option<Group>>>,
}

impl<'a> StoredNodes<'a> {
    /// Nodes of the tree of the first `size` entries (which must exist).
    pub(crate) fn new(conn: &'a mut dyn Conn, size: u64) -> Result<StoredNodes<'a>> {
        let have = self::size(conn)?;
        if have < size {
            return Err(RangeError::TooShort { want: size, have }.into());
        }
        Ok(StoredNodes {
            conn: RefCell::new(conn),
            size,
            groups: RefCell::new(Vec::new()),
        })
    }

    /// The stored node at `level` (a multiple of [`STORED_LEVELS`]) and `index`, from the
    /// group that holds it, read if it is not the one kept for its level.
    fn stored(&self, level: u32, index: u64) -> Result<Option<Hash>> {
        let start = index - index % GROUP;
        let slot = usize::try_from(level / STORED_LEVELS).unwrap_or(usize::MAX);
        let mut groups = self.groups.borrow_mut();
        let kept = groups
            .get(slot)
            .and_then(Option::as_ref)
            .is_some_and(|g| g.start == start);
        if !kept {
            let group = self.read_group(level, start)?;
            if groups.len() <= slot {
                groups.resize_with(slot + 1, || None);
            }
            if let Some(entry) = groups.get_mut(slot) {
                *entry = Some(group);
            }
        }
        let offset = usize::try_from(index - start).unwrap_or(usize::MAX);
        Ok(groups
            .get(slot)
            .and_then(Option::as_ref)
            .and_then(|g| g.hashes.get(offset).copied().flatten()))
    }

    /// One query for the nodes `start..start + GROUP` at `level` that are in the tree.
    fn read_group(&self, level: u32, start: u64) -> Result<Group> {
        // Only nodes whose leaves are all in the tree of `size` entries.
        let end = start.saturating_add(GROUP).min(self.size >> level);
        let mut conn = self.conn.borrow_mut();
        let (rows, table) = if level == 0 {
            let rows = conn.query(
                "SELECT idx, leaf FROM audit_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx",
                &[
                    sql::int(start, "audit index")?,
                    sql::int(end, "audit index")?,
                ],
            )?;
            (rows, "audit_entries")
        } else {
            let rows = conn.query(
                "SELECT idx, hash FROM audit_nodes WHERE level = $1 AND idx >= $2 AND idx < $3 \
                 ORDER BY idx",
                &[
                    sql::int(u64::from(level), "audit level")?,
                    sql::int(start, "audit index")?,
                    sql::int(end, "audit index")?,
                ],
            )?;
            (rows, "audit_nodes")
        };
        let mut hashes = vec![None; usize::try_from(GROUP).unwrap_or(16)];
        for row in rows {
            let mut r = RowReader::new(table, row);
            let idx = r.u64("idx")?;
            let column = if level == 0 { "leaf" } else { "hash" };
            let hash = hash(&mut r, column)?;
            let slot = idx
                .checked_sub(start)
                .and_then(|o| usize::try_from(o).ok())
                .and_then(|o| hashes.get_mut(o))
                .ok_or_else(|| r.corrupt_here("idx", format!("{idx} outside the range read")))?;
            *slot = Some(hash);
        }
        Ok(Group { start, hashes })
    }
}

impl NodeSource for StoredNodes<'_> {
    type Error = StoreError;

    fn perfect(&self, level: u32, index: u64) -> Result<Hash> {
        let end = index
            .checked_add(1)
            .and_then(|n| n.checked_shl(level))
            .unwrap_or(u64::MAX);
        if level >= 64 || end > self.size {
            return Err(RangeError::TooShort {
                want: end,
                have: self.size,
            }
            .into());
        }
        if level.is_multiple_of(STORED_LEVELS) {
            if let Some(hash) = self.stored(level, index)? {
                return Ok(hash);
            }
            if level == 0 {
                return Err(StoreError::corrupt(
                    "audit_entries",
                    "idx",
                    format!("entry {index} is missing"),
                ));
            }
        }
        let left = self.perfect(level - 1, index * 2)?;
        let right = self.perfect(level - 1, index * 2 + 1)?;
        Ok(Hash::node(&left, &right))
    }
}

pub(crate) fn frontier(conn: &mut dyn Conn, size: u64) -> Result<Frontier> {
    Frontier::of(&StoredNodes::new(conn, size)?, size)
}

pub(crate) fn root(conn: &mut dyn Conn, size: u64) -> Result<Hash> {
    tree::root(&StoredNodes::new(conn, size)?, size)
}

pub(crate) fn inclusion_proof(conn: &mut dyn Conn, index: u64, size: u64) -> Result<Vec<Hash>> {
    tree::inclusion_proof(&StoredNodes::new(conn, size)?, index, size)
}

pub(crate) fn consistency_proof(conn: &mut dyn Conn, from: u64, to: u64) -> Result<Vec<Hash>> {
    tree::consistency_proof(&StoredNodes::new(conn, to)?, from, to)
}

/// Stores the interior nodes completed by up to `limit` entries past the indexed mark, in
/// one derived transaction; returns how many entries it covered.
pub(crate) fn index_audit<B: Backend>(db: &mut B, limit: u32) -> Result<u64> {
    db.derived_transaction(|tx| {
        let mark = indexed_to(tx, "audit")?;
        let rows = tx.query(
            "SELECT idx, leaf FROM audit_entries WHERE idx >= $1 ORDER BY idx LIMIT $2",
            &[sql::int(mark, "audit index")?, sql::limit(limit)],
        )?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut frontier = Frontier::of(&StoredNodes::new(tx, mark)?, mark)?;
        let mut completed = Vec::new();
        for (n, row) in (mark..).zip(rows) {
            let mut r = RowReader::new("audit_entries", row);
            let index = r.u64("idx")?;
            if index != n {
                return Err(StoreError::corrupt(
                    "audit_entries",
                    "idx",
                    format!("entry {n} is missing (found {index} next)"),
                ));
            }
            frontier.push(hash(&mut r, "leaf")?, |c| {
                if is_stored(c.level) {
                    completed.push(c);
                }
            });
        }
        store_nodes(tx, &completed, frontier.size())?;
        Ok(frontier.size() - mark)
    })
}

/// Stores the nodes the writer completed as it appended entries `start..end` (those of
/// the stored levels, as [`AuditRow::chain_encoded`] gives them) without reading the
/// entries back, when the indexed mark lies within that range: the nodes are the ones
/// [`index_audit`] would compute from the entries, and any already stored are left as
/// they are. Otherwise (entries before `start` not indexed yet, or entries up to `end`
/// not in the log) it changes nothing and returns 0; returns how many entries it
/// covered past the mark.
pub(crate) fn index_audit_nodes<B: Backend>(
    db: &mut B,
    start: u64,
    end: u64,
    nodes: &[Completed],
) -> Result<u64> {
    db.derived_transaction(|tx| {
        let mark = indexed_to(tx, "audit")?;
        if !(start..end).contains(&mark) || size(tx)? < end {
            return Ok(0);
        }
        store_nodes(tx, nodes, end)?;
        Ok(end - mark)
    })
}

/// Stores `nodes` (keeping any already stored) and moves the indexed mark to `mark`.
fn store_nodes(tx: &mut dyn Conn, nodes: &[Completed], mark: u64) -> Result<()> {
    for c in nodes {
        tx.exec(
            "INSERT INTO audit_nodes (level, idx, hash) VALUES ($1, $2, $3) \
             ON CONFLICT (level, idx) DO NOTHING",
            &[
                sql::int(u64::from(c.level), "audit level")?,
                sql::int(c.index, "audit index")?,
                sql::Param::Blob(c.hash.0.to_vec()),
            ],
        )?;
    }
    tx.exec(
        "UPDATE history_indexed SET last_id = $1 WHERE name = 'audit'",
        &[sql::int(mark, "audit mark")?],
    )?;
    Ok(())
}
