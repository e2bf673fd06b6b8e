//! Proof of liabilities: a Merkle sum tree over every customer's balances at one ledger
//! snapshot (an epoch), and the inclusion proof each customer checks against the root
//! the platform publishes. Pure: no IO, no clock; the epoch's secret comes in as bytes.
//!
//! # The tree (version 1, the non-private variant)
//!
//! Each leaf holds one customer's balance of every asset of the epoch (in the epoch's
//! asset order, in each asset's smallest unit), salted per customer per epoch; padding
//! subtrees hold zero. A node's hash binds **each child's hash and each child's sums
//! separately**, not only their total, so that a parent cannot claim a sum its children
//! do not add up to (Hu, Zhang and Guo, eprint 2018/1139, against the Maxwell tree);
//! a parent's sums are its children's, added without overflow; every value is unsigned,
//! so no subtree can hide a negative balance. Customers' leaves sit at positions drawn
//! from the epoch's secret in a tree at least `2^min_height` leaves wide, and every
//! subtree without a customer is one padding node (as in DAPOL+), so neither the order
//! of customer numbers nor their number (beyond that bound) shows in the root. Hashes are SHA-256 with a domain tag per kind:
//!
//! | value | SHA-256 of |
//! |---|---|
//! | leaf | `"ztx-por/v1/leaf"`, epoch (u64), customer (u64), salt (32 bytes), balances (u128 each) |
//! | padding node | `"ztx-por/v1/pad"`, a 32-byte value drawn from the epoch's secret, the level and the index |
//! | node | `"ztx-por/v1/node"`, left hash, left sums, right hash, right sums |
//!
//! Integers are big-endian. The salt is HMAC-SHA256 of the epoch's secret over
//! `"salt"`, epoch and customer, so the platform can issue proofs all epoch long
//! without storing them, and a customer learns nothing from their own salt about
//! anyone else's.
//!
//! What the non-private variant reveals: the totals (in the root) and, to a customer,
//! the sums of the subtrees beside their path — the nearest of which may be one other
//! customer's balances, and a zero sum says a subtree holds no customer. The
//! zero-knowledge variant (commitments with range proofs) hides all three.

#![forbid(unsafe_code)]

mod cap;
mod epoch;
mod proof;
mod snapshot;
mod tree;
mod zk;

pub use cap::{CAP_VERSION, CheckedCap, ZkCap};
pub use epoch::{Proof, Proven, Published, Tree, Variant, verify_proof};
pub use proof::{InclusionProof, PathStep, Verified, verify};
pub use snapshot::Snapshot;
pub use tree::{EpochSecret, Root, SumTree, TreeConfig};
pub use zk::{
    MAX_CAP, SPLIT_RUN, ZK_CAPPED_VERSION, ZK_SPLIT_VERSION, ZK_VERSION, ZkProof, ZkRoot, ZkStep,
    ZkTree, ZkVerified, verify_totals, verify_zk,
};

/// The levels of the cap a zero-knowledge epoch publishes by default: its 1,022 top
/// nodes range-proven once, so that a proof of a 2^20-wide tree range-proves 11 levels,
/// 22 values for two assets, as runs of 16 and 6 made on two cores at once, in under
/// 3 KB (BENCHMARKS.md).
pub const DEFAULT_CAP: u8 = 9;

/// The most assets one epoch covers.
pub const MAX_ASSETS: usize = 64;
/// The tallest tree built: 2^32 leaves.
pub const MAX_HEIGHT: u8 = 32;
/// The format version of trees, roots and proofs.
pub const VERSION: u8 = 1;

/// A 32-byte SHA-256 value.
pub type Hash = [u8; 32];

/// Why a tree could not be built, or a proof not be read or verified. Each names what
/// is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PorError {
    #[error("{0} assets: an epoch covers 1 to {MAX_ASSETS}")]
    AssetCount(usize),
    #[error("customer {customer} has {got} balances, the epoch has {assets} assets")]
    BalanceCount {
        customer: u64,
        got: usize,
        assets: usize,
    },
    #[error("customer {0} appears twice")]
    DuplicateCustomer(u64),
    #[error("{0} customers do not fit a tree of at most 2^{MAX_HEIGHT} leaves")]
    TooManyCustomers(usize),
    #[error("the sum of {asset} overflows")]
    Overflow { asset: String },
    #[error(
        "{asset}'s liabilities reach 2^64 smallest units, beyond the zero-knowledge range \
         proofs (at 8 decimals they cover 184 billion coins); publish with --plain"
    )]
    BeyondRange { asset: String },
    #[error("customer {0} is not in this tree")]
    UnknownCustomer(u64),
    #[error("the proof ends inside {0}")]
    Truncated(&'static str),
    #[error("the proof has {0} bytes after its end")]
    Trailing(usize),
    #[error("unknown format version {0}")]
    Version(u8),
    #[error("{field} is invalid: {why}")]
    Invalid { field: &'static str, why: String },
    #[error("the proof's root {got} is not the published root {published}")]
    WrongRoot { got: String, published: String },
}

impl PorError {
    /// A proof whose path leads to `got`, not to the `published` root.
    pub(crate) fn wrong_root(got: &Hash, published: &Hash) -> PorError {
        PorError::WrongRoot {
            got: hex::encode(got),
            published: hex::encode(published),
        }
    }
}
