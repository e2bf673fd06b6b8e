//! Building the sum tree of one epoch, and issuing each customer's proof from it.

use std::collections::HashMap;
use std::fmt;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::proof::{InclusionProof, PathStep};
use crate::{Hash, MAX_ASSETS, MAX_HEIGHT, PorError, VERSION};

const LEAF_TAG: &[u8] = b"ztx-por/v1/leaf";
const PAD_TAG: &[u8] = b"ztx-por/v1/pad";
const NODE_TAG: &[u8] = b"ztx-por/v1/node";

/// The secret an epoch's salts, padding and leaf positions are drawn from. Kept by the
/// platform for the epoch (to issue proofs), never published. Zeroed on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct EpochSecret([u8; 32]);

impl fmt::Debug for EpochSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EpochSecret(**redacted**)")
    }
}

impl EpochSecret {
    pub fn from_bytes(bytes: [u8; 32]) -> EpochSecret {
        EpochSecret(bytes)
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A value drawn for `label` and `sub`: `draw` of the two joined, length-prefixed.
    pub(crate) fn draw_labelled(&self, label: &[u8], sub: &[u8], epoch: u64, n: u64) -> Hash {
        let mut joined = Vec::with_capacity(label.len() + sub.len() + 1);
        joined.push(u8::try_from(label.len()).unwrap_or(u8::MAX));
        joined.extend_from_slice(label);
        joined.extend_from_slice(sub);
        self.draw(&joined, epoch, n)
    }

    fn draw(&self, label: &[u8], epoch: u64, n: u64) -> Hash {
        // HMAC takes keys of any length: `new_from_slice` cannot fail, and the fallback
        // only keeps the function total without a panic path.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| <Hmac<Sha256> as hmac::digest::KeyInit>::new(&Default::default()));
        mac.update(label);
        mac.update(&epoch.to_be_bytes());
        mac.update(&n.to_be_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Customer `customer`'s salt for `epoch`.
    pub fn salt(&self, epoch: u64, customer: u64) -> Hash {
        self.draw(b"salt", epoch, customer)
    }
}

/// How a tree is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeConfig {
    /// The tree has at least `2^min_height` leaves, whatever the number of customers.
    pub min_height: u8,
}

impl Default for TreeConfig {
    /// 2^20 leaves: a published tree says only that there are at most a million
    /// customers, until there are more.
    fn default() -> Self {
        TreeConfig { min_height: 20 }
    }
}

/// What the platform publishes for an epoch: everything a proof is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    pub version: u8,
    pub epoch: u64,
    pub assets: Vec<String>,
    pub height: u8,
    /// The root node's hash: the published root.
    pub hash: Hash,
    /// Total liabilities per asset (the non-private variant publishes them).
    pub totals: Vec<u128>,
}

impl Root {
    /// The root as published: its hash, in hex.
    pub fn hex(&self) -> String {
        hex::encode(self.hash)
    }
}

/// One epoch's tree, kept sparse as DAPOL+ keeps it: per level, only the nodes above
/// some customer's leaf (sorted by index, sums flat: `assets` per node). Every other
/// node is padding — a subtree with no customer in it, its hash drawn from the epoch's
/// secret and its sums zero — computed when a proof needs it. Building costs the
/// customers times the height, not the width of the tree.
#[derive(Debug)]
pub struct SumTree {
    epoch: u64,
    assets: Vec<String>,
    height: u8,
    /// Per level from the leaves up: (index, hash) of the nodes kept, by index.
    nodes: Vec<Vec<(u64, Hash)>>,
    sums: Vec<Vec<u128>>,
    positions: HashMap<u64, u64>,
    secret: EpochSecret,
}

impl SumTree {
    /// Builds the tree of `accounts` (customer number, balance per asset in the order of
    /// `assets`). Refuses a customer listed twice, a wrong number of balances, and sums
    /// that do not fit 128 bits.
    pub fn build(
        epoch: u64,
        assets: Vec<String>,
        accounts: &[(u64, Vec<u128>)],
        secret: &EpochSecret,
        config: TreeConfig,
    ) -> Result<SumTree, PorError> {
        check_assets(&assets)?;
        let width = assets.len();
        let mut order: Vec<&(u64, Vec<u128>)> = accounts.iter().collect();
        order.sort_unstable_by_key(|(customer, _)| *customer);
        for pair in order.windows(2) {
            if let [a, b] = pair
                && a.0 == b.0
            {
                return Err(PorError::DuplicateCustomer(a.0));
            }
        }
        for (customer, balances) in &order {
            if balances.len() != width {
                return Err(PorError::BalanceCount {
                    customer: *customer,
                    got: balances.len(),
                    assets: width,
                });
            }
        }
        let height = height_for(order.len(), config.min_height)?;
        let size = 1u64 << height;
        let slots = shuffled_positions(secret, epoch, size, order.len());
        let mut placed: Vec<(u64, usize)> = slots.iter().copied().zip(0..).collect();
        placed.sort_unstable_by_key(|(position, _)| *position);
        let mut positions = HashMap::with_capacity(order.len());
        let mut leaf_sums = Vec::with_capacity(placed.len() * width);
        let mut owners = Vec::with_capacity(placed.len());
        for &(position, i) in &placed {
            let Some((customer, balances)) = order.get(i) else {
                continue;
            };
            leaf_sums.extend_from_slice(balances);
            positions.insert(*customer, position);
            owners.push((position, *customer, balances.as_slice()));
        }
        // The leaves' salts and hashes, the bulk of the work, on every core.
        let leaves: Vec<(u64, Hash)> = in_parallel(&owners, |part| {
            part.iter()
                .map(|(position, customer, balances)| {
                    let salt = secret.salt(epoch, *customer);
                    (*position, leaf_hash(epoch, *customer, &salt, balances))
                })
                .collect::<Vec<_>>()
        })
        .into_iter()
        .flatten()
        .collect();
        let mut nodes = vec![leaves];
        let mut sums = vec![leaf_sums];
        for level in 0..height {
            let (Some(below), Some(below_sums)) = (nodes.last(), sums.last()) else {
                break;
            };
            let parts = level_parts(below);
            let built = on_cores(&parts, |&(start, end)| {
                let (Some(nodes), Some(sums)) = (
                    below.get(start..end),
                    below_sums.get(start * width..end * width),
                ) else {
                    return Ok((Vec::new(), Vec::new()));
                };
                parents(nodes, sums, width, |index| {
                    pad_node(secret, epoch, level, index)
                })
                .map_err(|k| PorError::Overflow {
                    asset: assets.get(k).cloned().unwrap_or_default(),
                })
            });
            let mut above = Vec::with_capacity(below.len() / 2 + 1);
            let mut above_sums = Vec::with_capacity((below.len() / 2 + 1) * width);
            for part in built {
                let (n, s) = part?;
                above.extend(n);
                above_sums.extend(s);
            }
            nodes.push(above);
            sums.push(above_sums);
        }
        Ok(SumTree {
            epoch,
            assets,
            height,
            nodes,
            sums,
            positions,
            secret: secret.clone(),
        })
    }

    /// What is published for this epoch.
    pub fn root(&self) -> Root {
        let width = self.assets.len();
        let top = usize::from(self.height);
        let hash = match self.nodes.get(top).and_then(|level| level.first()) {
            Some((_, hash)) => *hash,
            // No customer at all: the whole tree is one padding subtree.
            None => pad_node(&self.secret, self.epoch, self.height, 0),
        };
        let totals = self
            .sums
            .get(top)
            .and_then(|s| s.get(..width))
            .map_or_else(|| vec![0; width], <[u128]>::to_vec);
        Root {
            version: VERSION,
            epoch: self.epoch,
            assets: self.assets.clone(),
            height: self.height,
            hash,
            totals,
        }
    }

    /// How many customers the tree holds (not published).
    pub fn customers(&self) -> usize {
        self.positions.len()
    }

    /// The node at `index` of `level`: kept, or padding.
    fn node(&self, level: u8, index: u64) -> (Hash, Vec<u128>) {
        let width = self.assets.len();
        let kept = self.nodes.get(usize::from(level)).and_then(|nodes| {
            nodes
                .binary_search_by_key(&index, |(i, _)| *i)
                .ok()
                .and_then(|k| nodes.get(k).map(|(_, h)| (k, *h)))
        });
        match kept {
            Some((k, hash)) => {
                let sums = self
                    .sums
                    .get(usize::from(level))
                    .and_then(|s| s.get(k * width..(k + 1) * width))
                    .map_or_else(|| vec![0; width], <[u128]>::to_vec);
                (hash, sums)
            }
            None => (
                pad_node(&self.secret, self.epoch, level, index),
                vec![0; width],
            ),
        }
    }

    /// Customer `customer`'s inclusion proof.
    pub fn proof(&self, customer: u64) -> Result<InclusionProof, PorError> {
        let index = *self
            .positions
            .get(&customer)
            .ok_or(PorError::UnknownCustomer(customer))?;
        let mut path = Vec::with_capacity(usize::from(self.height));
        for level in 0..self.height {
            let (hash, sums) = self.node(level, (index >> level) ^ 1);
            path.push(PathStep { hash, sums });
        }
        Ok(InclusionProof {
            version: VERSION,
            epoch: self.epoch,
            assets: self.assets.clone(),
            height: self.height,
            customer,
            salt: self.secret.salt(self.epoch, customer),
            balances: self.node(0, index).1,
            index,
            path,
        })
    }
}

/// One level's kept nodes (index, hash) and their sums, flat.
type Level = (Vec<(u64, Hash)>, Vec<u128>);

/// The parents of `below` (kept nodes of one level, by index, with their flat sums),
/// each missing sibling a padding node from `pad`. On overflow, the asset's position.
fn parents(
    below: &[(u64, Hash)],
    below_sums: &[u128],
    width: usize,
    pad: impl Fn(u64) -> Hash,
) -> Result<Level, usize> {
    let zero = vec![0u128; width];
    let mut above = Vec::with_capacity(below.len() / 2 + 1);
    let mut above_sums = Vec::with_capacity((below.len() / 2 + 1) * width);
    let mut k = 0;
    while let Some(&(index, hash)) = below.get(k) {
        let own = below_sums.get(k * width..(k + 1) * width).unwrap_or(&zero);
        let sibling = index ^ 1;
        let next = below.get(k + 1).filter(|(i, _)| *i == sibling);
        let (sibling_hash, sibling_sums, step) = match next {
            Some(&(_, h)) => (
                h,
                below_sums
                    .get((k + 1) * width..(k + 2) * width)
                    .unwrap_or(&zero),
                2,
            ),
            None => (pad(sibling), zero.as_slice(), 1),
        };
        let (l, ls, r, rs) = if index & 1 == 0 {
            (&hash, own, &sibling_hash, sibling_sums)
        } else {
            (&sibling_hash, sibling_sums, &hash, own)
        };
        above.push((index >> 1, node_hash(l, ls, r, rs)));
        for (asset, (a, b)) in ls.iter().zip(rs).enumerate() {
            above_sums.push(a.checked_add(*b).ok_or(asset)?);
        }
        k += step;
    }
    Ok((above, above_sums))
}

pub(crate) fn available_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Cuts `nodes` into about `parts` ranges that never separate two siblings.
pub(crate) fn pair_aligned(nodes: &[(u64, Hash)], parts: usize) -> Vec<(usize, usize)> {
    let len = nodes.len();
    let step = len.div_ceil(parts.max(1)).max(1);
    let mut ranges = Vec::with_capacity(parts);
    let mut start = 0;
    while start < len {
        let mut end = (start + step).min(len);
        // A cut between siblings moves on by one.
        if let (Some(a), Some(b)) = (
            end.checked_sub(1).and_then(|e| nodes.get(e)),
            nodes.get(end),
        ) && a.0 >> 1 == b.0 >> 1
        {
            end += 1;
        }
        ranges.push((start, end));
        start = end;
    }
    ranges
}

/// A level's nodes cut into one range per core, never between two siblings; one range
/// where the level is too small to be worth the threads.
pub(crate) fn level_parts(nodes: &[(u64, Hash)]) -> Vec<(usize, usize)> {
    if nodes.len() < SERIAL_BELOW {
        return vec![(0, nodes.len())];
    }
    pair_aligned(nodes, available_threads())
}

/// Runs `work` on each of `parts`, a thread each when there are several, and returns
/// the results in order.
pub(crate) fn on_cores<T: Sync, U: Send>(parts: &[T], work: impl Fn(&T) -> U + Sync) -> Vec<U> {
    if parts.len() < 2 {
        return parts.iter().map(&work).collect();
    }
    std::thread::scope(|scope| {
        let work = &work;
        let handles: Vec<_> = parts
            .iter()
            .map(|part| scope.spawn(move || work(part)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// Fewer items than this are not worth a thread.
const SERIAL_BELOW: usize = 4096;

/// Runs `work` on about equal parts of `items`, one thread each when it is worth it,
/// and returns the parts' results in order.
pub(crate) fn in_parallel<T: Sync, U: Send>(
    items: &[T],
    work: impl Fn(&[T]) -> U + Sync,
) -> Vec<U> {
    let threads = available_threads();
    if threads < 2 || items.len() < SERIAL_BELOW {
        return vec![work(items)];
    }
    let parts: Vec<&[T]> = items.chunks(items.len().div_ceil(threads)).collect();
    on_cores(&parts, |part| work(part))
}

/// A padding node: the root of a subtree with no customer, at `index` of `level`.
fn pad_node(secret: &EpochSecret, epoch: u64, level: u8, index: u64) -> Hash {
    // Indices are below 2^32 and levels at most 32: one number names each node.
    pad_hash(&secret.draw(b"pad", epoch, (u64::from(level) << 40) | index))
}

pub(crate) fn check_assets(assets: &[String]) -> Result<(), PorError> {
    if assets.is_empty() || assets.len() > MAX_ASSETS {
        return Err(PorError::AssetCount(assets.len()));
    }
    for (i, asset) in assets.iter().enumerate() {
        let ok = !asset.is_empty()
            && asset.len() <= 16
            && asset
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if !ok {
            return Err(PorError::Invalid {
                field: "asset",
                why: format!("asset {i} is not 1 to 16 capital letters and digits"),
            });
        }
        if assets.get(..i).is_some_and(|before| before.contains(asset)) {
            return Err(PorError::Invalid {
                field: "asset",
                why: format!("{asset} is listed twice"),
            });
        }
    }
    Ok(())
}

/// The height of a tree of `customers` leaves at least `2^min_height` wide.
pub(crate) fn height_for(customers: usize, min_height: u8) -> Result<u8, PorError> {
    let mut height = min_height.min(MAX_HEIGHT);
    while (1u64 << height) < u64::try_from(customers).unwrap_or(u64::MAX) {
        if height == MAX_HEIGHT {
            return Err(PorError::TooManyCustomers(customers));
        }
        height += 1;
    }
    Ok(height)
}

/// The first `take` positions of a permutation of `0..size` drawn from the secret (a
/// Fisher–Yates shuffle stopped after `take` swaps).
pub(crate) fn shuffled_positions(
    secret: &EpochSecret,
    epoch: u64,
    size: u64,
    take: usize,
) -> Vec<u64> {
    // Up to 2^26 positions the permutation is kept whole (256 MB at most); beyond, only
    // the positions swapped are stored. The same draws give the same positions.
    if size <= 1 << 26 {
        dense_positions(secret, epoch, size, take)
    } else {
        sparse_positions(secret, epoch, size, take)
    }
}

fn dense_positions(secret: &EpochSecret, epoch: u64, size: u64, take: usize) -> Vec<u64> {
    let mut all: Vec<u32> = (0..u32::try_from(size).unwrap_or(u32::MAX)).collect();
    draws(secret, epoch, size, take)
        .enumerate()
        .map(|(i, j)| {
            let last = all.len().saturating_sub(1);
            let j = usize::try_from(j).unwrap_or(usize::MAX).min(last);
            all.swap(i, j);
            u64::from(all.get(i).copied().unwrap_or(0))
        })
        .collect()
}

fn sparse_positions(secret: &EpochSecret, epoch: u64, size: u64, take: usize) -> Vec<u64> {
    let mut moved: HashMap<u64, u64> = HashMap::with_capacity(take.saturating_mul(2));
    let mut out = Vec::with_capacity(take);
    for (i, j) in (0u64..).zip(draws(secret, epoch, size, take)) {
        let at_i = moved.get(&i).copied().unwrap_or(i);
        let at_j = moved.get(&j).copied().unwrap_or(j);
        moved.insert(j, at_i);
        out.push(at_j);
    }
    out
}

/// The Fisher–Yates draws: for step `i`, a position in `i..size`.
fn draws(
    secret: &EpochSecret,
    epoch: u64,
    size: u64,
    take: usize,
) -> impl Iterator<Item = u64> + '_ {
    let mut block = [0u8; 32];
    (0..u64::try_from(take).unwrap_or(u64::MAX)).map(move |i| {
        let lane = usize::try_from(i % 4).unwrap_or(0);
        if lane == 0 {
            block = secret.draw(b"position", epoch, i / 4);
        }
        let mut word = [0u8; 8];
        if let Some(bytes) = block.get(lane * 8..lane * 8 + 8) {
            word.copy_from_slice(bytes);
        }
        // A 64-bit draw over at most 2^32 choices: the bias is below 2^-32.
        i + u64::from_be_bytes(word) % (size - i)
    })
}

pub(crate) fn leaf_hash(epoch: u64, customer: u64, salt: &Hash, balances: &[u128]) -> Hash {
    let mut h = Sha256::new();
    h.update(LEAF_TAG);
    h.update(epoch.to_be_bytes());
    h.update(customer.to_be_bytes());
    h.update(salt);
    for b in balances {
        h.update(b.to_be_bytes());
    }
    h.finalize().into()
}

fn pad_hash(drawn: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update(PAD_TAG);
    h.update(drawn);
    h.finalize().into()
}

pub(crate) fn node_hash(
    left: &Hash,
    left_sums: &[u128],
    right: &Hash,
    right_sums: &[u128],
) -> Hash {
    let mut h = Sha256::new();
    h.update(NODE_TAG);
    h.update(left);
    for s in left_sums {
        h.update(s.to_be_bytes());
    }
    h.update(right);
    for s in right_sums {
        h.update(s.to_be_bytes());
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// The whole permutation and the sparse one give the same positions, and no
        /// position twice.
        #[test]
        fn dense_and_sparse_shuffles_agree(height in 0u8..12, fill in 0.0f64..=1.0, seed: [u8; 32]) {
            let size = 1u64 << height;
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss, clippy::float_arithmetic)]
            let take = ((size as f64) * fill) as usize;
            let secret = EpochSecret::from_bytes(seed);
            let dense = dense_positions(&secret, 3, size, take);
            prop_assert_eq!(&dense, &sparse_positions(&secret, 3, size, take));
            let mut seen = dense.clone();
            seen.sort_unstable();
            seen.dedup();
            prop_assert_eq!(seen.len(), take);
            prop_assert!(dense.iter().all(|p| *p < size));
        }
    }
}
