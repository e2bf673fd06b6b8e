//! Checking proofs without trusting whoever made them (RFC 9162 §2.1.3.2 and §2.1.4.2).
//! Every failure is the same to the caller in kind — the proof does not prove it — but
//! says which check failed, for the operator's log.

use crate::hash::Hash;

/// Why a proof does not prove what it claims.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf {index} is not in a tree of {size} leaves")]
    LeafOutside { index: u64, size: u64 },
    #[error("size {from} is larger than size {to}: a log never shrinks")]
    Shrunk { from: u64, to: u64 },
    #[error("the proof has {got} hashes, not the {want} these sizes need")]
    Length { got: usize, want: usize },
    #[error("the proof leads to root {got}, not {want}")]
    RootMismatch { got: Hash, want: Hash },
    #[error("the proof's old root is {got}, not the trusted {want}")]
    OldRootMismatch { got: Hash, want: Hash },
    #[error("trees of equal size {size} with different roots: a fork")]
    Fork { size: u64 },
}

/// How many hashes an inclusion proof of `index` in a tree of `size` has.
fn inclusion_len(index: u64, size: u64) -> usize {
    // The path has one hash per level where the leaf's ancestor has a sibling: the
    // levels below the point where `index` and `size - 1` diverge, plus the levels
    // above it where `size - 1`'s remaining prefix is not yet a lone right edge.
    let last = size - 1;
    let inner = 64 - (index ^ last).leading_zeros();
    // Past bit 63 nothing is left (a plain shift by 64 would overflow).
    let border = index.checked_shr(inner).unwrap_or(0).count_ones() as usize;
    let inner = inner as usize;
    inner + border
}

/// The root that `proof` gives for `leaf` at `index` in a tree of `size` leaves.
pub fn root_from_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    if index >= size {
        return Err(ProofError::LeafOutside { index, size });
    }
    let want = inclusion_len(index, size);
    let wrong_length = || ProofError::Length {
        got: proof.len(),
        want,
    };
    if proof.len() != want {
        return Err(wrong_length());
    }
    let mut f = index;
    let mut s = size - 1;
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return Err(wrong_length());
        }
        if f & 1 == 1 || f == s {
            r = Hash::node(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = Hash::node(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(wrong_length());
    }
    Ok(r)
}

/// Checks that `leaf` is entry `index` of the tree of `size` leaves whose root is `root`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    let got = root_from_inclusion(index, size, leaf, proof)?;
    if got != *root {
        return Err(ProofError::RootMismatch { got, want: *root });
    }
    Ok(())
}

/// Checks that the tree of `to` leaves with root `new_root` extends the tree of `from`
/// leaves with root `old_root`.
pub fn verify_consistency(
    from: u64,
    to: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if from > to {
        return Err(ProofError::Shrunk { from, to });
    }
    let want = if from == 0 || from == to {
        0
    } else {
        consistency_len(from, to)
    };
    let wrong_length = || ProofError::Length {
        got: proof.len(),
        want,
    };
    if proof.len() != want {
        return Err(wrong_length());
    }
    if from == to {
        if old_root != new_root {
            return Err(ProofError::Fork { size: from });
        }
        return Ok(());
    }
    if from == 0 {
        // Every tree extends the empty one; its root is fixed.
        if *old_root != Hash::empty() {
            return Err(ProofError::OldRootMismatch {
                got: *old_root,
                want: Hash::empty(),
            });
        }
        return Ok(());
    }
    let mut f = from - 1;
    let mut s = to - 1;
    // When the old tree is a perfect subtree of the new one, its root is the proof's
    // implicit first hash.
    let (first, rest) = if from.is_power_of_two() {
        (old_root, proof)
    } else {
        proof.split_first().ok_or_else(wrong_length)?
    };
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let mut fr = *first;
    let mut sr = *first;
    for c in rest {
        if s == 0 {
            return Err(wrong_length());
        }
        if f & 1 == 1 || f == s {
            fr = Hash::node(c, &fr);
            sr = Hash::node(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = Hash::node(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(wrong_length());
    }
    if fr != *old_root {
        return Err(ProofError::OldRootMismatch {
            got: fr,
            want: *old_root,
        });
    }
    if sr != *new_root {
        return Err(ProofError::RootMismatch {
            got: sr,
            want: *new_root,
        });
    }
    Ok(())
}

/// How many hashes a consistency proof from `from` to `to` has, `0 < from < to`.
fn consistency_len(from: u64, to: u64) -> usize {
    // The old tree's right edge below the point where `from - 1` and `to - 1` diverge,
    // then the path from that subtree up to the new root; a perfect old tree is implicit.
    let f = from - 1;
    let s = to - 1;
    let inner = 64 - (f ^ s).leading_zeros();
    let border = f.checked_shr(inner).unwrap_or(0).count_ones() as usize;
    let inner = inner as usize;
    let shift = f.trailing_ones() as usize;
    let implicit = usize::from(from.is_power_of_two());
    1 + inner - shift.min(inner) + border - implicit
}
