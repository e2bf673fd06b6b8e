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

/// One epoch's tree. Nodes are kept level by level, sums flat (`assets` per node).
#[derive(Debug)]
pub struct SumTree {
    epoch: u64,
    assets: Vec<String>,
    height: u8,
    hashes: Vec<Vec<Hash>>,
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
        let leaf_count =
            usize::try_from(size).map_err(|_| PorError::TooManyCustomers(order.len()))?;
        let mut leaves: Vec<Hash> = Vec::with_capacity(leaf_count);
        let mut leaf_sums = vec![0u128; leaf_count.saturating_mul(width)];
        let mut owner: Vec<Option<usize>> = vec![None; leaf_count];
        let mut positions = HashMap::with_capacity(order.len());
        for (i, slot) in slots.iter().enumerate() {
            if let Some(o) = owner.get_mut(to_usize(*slot)) {
                *o = Some(i);
            }
        }
        for (position, owned) in owner.iter().enumerate() {
            let position_u64 = u64::try_from(position).unwrap_or(u64::MAX);
            match owned.and_then(|i| order.get(i)) {
                Some((customer, balances)) => {
                    let salt = secret.salt(epoch, *customer);
                    leaves.push(leaf_hash(epoch, *customer, &salt, balances));
                    let start = position * width;
                    if let Some(cells) = leaf_sums.get_mut(start..start + width) {
                        cells.copy_from_slice(balances);
                    }
                    positions.insert(*customer, position_u64);
                }
                None => leaves.push(pad_hash(&secret.draw(b"pad", epoch, position_u64))),
            }
        }
        let mut hashes = vec![leaves];
        let mut sums = vec![leaf_sums];
        while hashes.last().is_some_and(|level| level.len() > 1) {
            let (Some(below), Some(below_sums)) = (hashes.last(), sums.last()) else {
                break;
            };
            let n = below.len() / 2;
            let mut level = Vec::with_capacity(n);
            let mut level_sums = vec![0u128; n * width];
            for i in 0..n {
                let (l, r) = (2 * i, 2 * i + 1);
                let (Some(lh), Some(rh)) = (below.get(l), below.get(r)) else {
                    break;
                };
                let (Some(ls), Some(rs)) = (
                    below_sums.get(l * width..(l + 1) * width),
                    below_sums.get(r * width..(r + 1) * width),
                ) else {
                    break;
                };
                level.push(node_hash(lh, ls, rh, rs));
                let out = level_sums
                    .get_mut(i * width..(i + 1) * width)
                    .unwrap_or_default();
                for (k, cell) in out.iter_mut().enumerate() {
                    let (a, b) = (ls.get(k).copied(), rs.get(k).copied());
                    *cell = a
                        .zip(b)
                        .and_then(|(a, b)| a.checked_add(b))
                        .ok_or_else(|| PorError::Overflow {
                            asset: assets.get(k).cloned().unwrap_or_default(),
                        })?;
                }
            }
            hashes.push(level);
            sums.push(level_sums);
        }
        Ok(SumTree {
            epoch,
            assets,
            height,
            hashes,
            sums,
            positions,
            secret: secret.clone(),
        })
    }

    /// What is published for this epoch.
    pub fn root(&self) -> Root {
        let hash = self
            .hashes
            .last()
            .and_then(|level| level.first())
            .copied()
            .unwrap_or_default();
        let totals = self.sums.last().cloned().unwrap_or_default();
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

    /// Customer `customer`'s inclusion proof.
    pub fn proof(&self, customer: u64) -> Result<InclusionProof, PorError> {
        let index = *self
            .positions
            .get(&customer)
            .ok_or(PorError::UnknownCustomer(customer))?;
        let width = self.assets.len();
        let node_sums = |level: usize, i: usize| -> Vec<u128> {
            self.sums
                .get(level)
                .and_then(|s| s.get(i * width..(i + 1) * width))
                .map(<[u128]>::to_vec)
                .unwrap_or_default()
        };
        let leaf = to_usize(index);
        let mut path = Vec::with_capacity(usize::from(self.height));
        for level in 0..usize::from(self.height) {
            let sibling = (leaf >> level) ^ 1;
            let hash = self
                .hashes
                .get(level)
                .and_then(|l| l.get(sibling))
                .copied()
                .unwrap_or_default();
            path.push(PathStep {
                hash,
                sums: node_sums(level, sibling),
            });
        }
        Ok(InclusionProof {
            version: VERSION,
            epoch: self.epoch,
            assets: self.assets.clone(),
            height: self.height,
            customer,
            salt: self.secret.salt(self.epoch, customer),
            balances: node_sums(0, leaf),
            index,
            path,
        })
    }
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
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
fn height_for(customers: usize, min_height: u8) -> Result<u8, PorError> {
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
fn shuffled_positions(secret: &EpochSecret, epoch: u64, size: u64, take: usize) -> Vec<u64> {
    // Positions are kept sparse: only those swapped are stored.
    let mut moved: HashMap<u64, u64> = HashMap::with_capacity(take.saturating_mul(2));
    let mut out = Vec::with_capacity(take);
    let mut block = [0u8; 32];
    for i in 0..u64::try_from(take).unwrap_or(u64::MAX) {
        let lane = usize::try_from(i % 4).unwrap_or(0);
        if lane == 0 {
            block = secret.draw(b"position", epoch, i / 4);
        }
        let mut word = [0u8; 8];
        if let Some(bytes) = block.get(lane * 8..lane * 8 + 8) {
            word.copy_from_slice(bytes);
        }
        // A 64-bit draw over at most 2^32 choices: the bias is below 2^-32.
        let j = i + u64::from_be_bytes(word) % (size - i);
        let at_i = moved.get(&i).copied().unwrap_or(i);
        let at_j = moved.get(&j).copied().unwrap_or(j);
        moved.insert(j, at_i);
        out.push(at_j);
    }
    out
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
