//! RFC 6962 / RFC 9162 hashing: what a leaf and an interior node hash to.

use std::fmt;

use sha2::{Digest, Sha256};

/// Length of a hash in bytes (SHA-256).
pub const HASH_LEN: usize = 32;

/// A SHA-256 hash of a leaf, an interior node or a whole tree.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; HASH_LEN]);

impl Hash {
    /// The hash of a leaf: `SHA-256(0x00 ‖ entry)`.
    pub fn leaf(entry: &[u8]) -> Hash {
        let mut h = Sha256::new();
        h.update([0x00]);
        h.update(entry);
        Hash(h.finalize().into())
    }

    /// The hash of an interior node: `SHA-256(0x01 ‖ left ‖ right)`.
    pub fn node(left: &Hash, right: &Hash) -> Hash {
        let mut h = Sha256::new();
        h.update([0x01]);
        h.update(left.0);
        h.update(right.0);
        Hash(h.finalize().into())
    }

    /// The root of the empty tree: `SHA-256()` of nothing.
    pub fn empty() -> Hash {
        Hash(Sha256::digest([]).into())
    }

    /// All zeros: the `prev` of a log's first entry.
    pub const ZERO: Hash = Hash([0; HASH_LEN]);

    /// Reads a hash from exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Hash> {
        <[u8; HASH_LEN]>::try_from(bytes).ok().map(Hash)
    }

    /// Reads a hash from 64 hexadecimal digits.
    pub fn from_hex(text: &str) -> Option<Hash> {
        let mut out = [0u8; HASH_LEN];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(Hash(out))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}
