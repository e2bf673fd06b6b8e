//! The log's Merkle tree (RFC 9162 §2.1): the root of any prefix, and inclusion and
//! consistency proofs, computed from the hashes of perfect subtrees.
//!
//! A tree of `n` leaves splits at `k`, the largest power of two below `n`; so every
//! subtree the RFC's recursion visits starts at a multiple of a power of two and is made
//! of at most `log2(n)` perfect subtrees. Whoever stores the log only needs to answer
//! "the hash of the perfect subtree at this level and index" ([`NodeSource`]); the
//! proofs need `O(log n)` of them.

use crate::hash::Hash;

/// A request outside the tree: a leaf past its end, or a proof between sizes that do not
/// exist or are in the wrong order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("leaf {index} is not in a tree of {size} leaves")]
    LeafOutside { index: u64, size: u64 },
    #[error("no consistency proof from size {from} to the smaller size {to}")]
    Backwards { from: u64, to: u64 },
    #[error("the tree has {have} leaves, not {want}")]
    TooShort { want: u64, have: u64 },
}

/// Where proofs get their hashes from: the stored log.
pub trait NodeSource {
    type Error: From<RangeError>;

    /// The hash of the perfect subtree of `2^level` leaves starting at leaf
    /// `index << level` (level 0: a leaf hash).
    fn perfect(&self, level: u32, index: u64) -> Result<Hash, Self::Error>;
}

/// The largest power of two smaller than `n`, for `n >= 2` (RFC 9162's `k`).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The hash of leaves `[start, end)`, where `start` is a multiple of the subtree size the
/// RFC's recursion gives it (so every piece is a perfect subtree the source knows).
pub fn range_hash<S: NodeSource>(src: &S, start: u64, end: u64) -> Result<Hash, S::Error> {
    let n = end.saturating_sub(start);
    if n == 0 {
        return Ok(Hash::empty());
    }
    if n.is_power_of_two() && start.is_multiple_of(n) {
        let level = n.trailing_zeros();
        return src.perfect(level, start >> level);
    }
    let k = split(n);
    let left = range_hash(src, start, start + k)?;
    let right = range_hash(src, start + k, end)?;
    Ok(Hash::node(&left, &right))
}

/// The root of the first `size` leaves.
pub fn root<S: NodeSource>(src: &S, size: u64) -> Result<Hash, S::Error> {
    range_hash(src, 0, size)
}

/// The audit path of leaf `index` in the tree of the first `size` leaves (RFC 9162
/// §2.1.3.1), deepest sibling first.
pub fn inclusion_proof<S: NodeSource>(
    src: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, S::Error> {
    if index >= size {
        return Err(RangeError::LeafOutside { index, size }.into());
    }
    let mut proof = Vec::new();
    path(src, index, 0, size, &mut proof)?;
    Ok(proof)
}

fn path<S: NodeSource>(
    src: &S,
    index: u64,
    start: u64,
    end: u64,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    let n = end - start;
    if n <= 1 {
        return Ok(());
    }
    let k = split(n);
    if index < start + k {
        path(src, index, start, start + k, out)?;
        out.push(range_hash(src, start + k, end)?);
    } else {
        path(src, index, start + k, end, out)?;
        out.push(range_hash(src, start, start + k)?);
    }
    Ok(())
}

/// The proof that the tree of `to` leaves extends the tree of its first `from` leaves
/// (RFC 9162 §2.1.4.1). Empty when `from` is 0 or equals `to`.
pub fn consistency_proof<S: NodeSource>(
    src: &S,
    from: u64,
    to: u64,
) -> Result<Vec<Hash>, S::Error> {
    if from > to {
        return Err(RangeError::Backwards { from, to }.into());
    }
    let mut proof = Vec::new();
    if from > 0 && from < to {
        subproof(src, from, 0, to, true, &mut proof)?;
    }
    Ok(proof)
}

fn subproof<S: NodeSource>(
    src: &S,
    m: u64,
    start: u64,
    end: u64,
    whole: bool,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    let n = end - start;
    if m == n {
        if !whole {
            out.push(range_hash(src, start, end)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(src, m, start, start + k, whole, out)?;
        out.push(range_hash(src, start + k, end)?);
    } else {
        subproof(src, m - k, start + k, end, false, out)?;
        out.push(range_hash(src, start, start + k)?);
    }
    Ok(())
}

/// The right edge of a growing tree: the roots of its perfect subtrees, largest first
/// (a "compact range" from the start). Appending costs `O(1)` hashes amortized and the
/// root `O(log n)`; this is all a writer or a verifier streaming a log needs to keep.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// Perfect subtrees of decreasing size, one per set bit of `size`.
    peaks: Vec<Hash>,
}

/// A perfect subtree completed by an append: what a store of nodes records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completed {
    pub level: u32,
    pub index: u64,
    pub hash: Hash,
}

impl Frontier {
    pub fn new() -> Frontier {
        Frontier::default()
    }

    /// Rebuilds the edge of a tree of `size` leaves from its source.
    pub fn of<S: NodeSource>(src: &S, size: u64) -> Result<Frontier, S::Error> {
        let mut peaks = Vec::new();
        let mut start = 0u64;
        for level in (0..64u32).rev() {
            if size & (1u64 << level) != 0 {
                peaks.push(src.perfect(level, start >> level)?);
                start += 1u64 << level;
            }
        }
        Ok(Frontier { size, peaks })
    }

    /// The edge of a tree of `size` leaves from its perfect subtrees, largest first (as
    /// [`Frontier::peaks`] gives them): `None` unless there is one per set bit of `size`.
    pub fn from_peaks(size: u64, peaks: Vec<Hash>) -> Option<Frontier> {
        (u32::try_from(peaks.len()).ok()? == size.count_ones()).then_some(Frontier { size, peaks })
    }

    /// The roots of the tree's perfect subtrees, largest first.
    pub fn peaks(&self) -> &[Hash] {
        &self.peaks
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash and calls `completed` for every perfect subtree it completes,
    /// the leaf itself (level 0) first.
    pub fn push(&mut self, leaf: Hash, mut completed: impl FnMut(Completed)) {
        let index = self.size;
        completed(Completed {
            level: 0,
            index,
            hash: leaf,
        });
        let mut hash = leaf;
        let mut level = 0u32;
        while (index >> level) & 1 == 1 {
            let Some(left) = self.peaks.pop() else { break };
            hash = Hash::node(&left, &hash);
            level += 1;
            completed(Completed {
                level,
                index: index >> level,
                hash,
            });
        }
        self.peaks.push(hash);
        self.size += 1;
    }

    /// The root of the tree so far.
    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some(last) = peaks.next() else {
            return Hash::empty();
        };
        peaks.fold(*last, |right, left| Hash::node(left, &right))
    }
}

/// A whole tree in memory, every level kept: for tests, tools and small logs.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    /// `levels[l][i]` is the perfect subtree at level `l`, index `i`.
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    pub fn new() -> MemoryTree {
        MemoryTree::default()
    }

    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Appends one entry (its leaf hash is computed here).
    pub fn push_entry(&mut self, entry: &[u8]) {
        self.push_leaf(Hash::leaf(entry));
    }

    pub fn push_leaf(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut level = 0usize;
        loop {
            if self.levels.len() <= level {
                self.levels.resize_with(level + 1, Vec::new);
            }
            let Some(row) = self.levels.get_mut(level) else {
                return;
            };
            row.push(hash);
            // A node at an odd index completes its parent with its left sibling.
            let index = row.len() - 1;
            if index % 2 == 0 {
                return;
            }
            let Some(left) = row.get(index - 1) else {
                return;
            };
            hash = Hash::node(left, &hash);
            level += 1;
        }
    }
}

impl NodeSource for MemoryTree {
    type Error = RangeError;

    fn perfect(&self, level: u32, index: u64) -> Result<Hash, RangeError> {
        let have = self.size();
        let missing = || RangeError::TooShort {
            want: index
                .saturating_add(1)
                .saturating_mul(1u64 << level.min(63)),
            have,
        };
        let row = self.levels.get(level as usize).ok_or_else(missing)?;
        let i = usize::try_from(index).map_err(|_| missing())?;
        row.get(i).copied().ok_or_else(missing)
    }
}
