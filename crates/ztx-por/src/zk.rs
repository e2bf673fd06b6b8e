//! The zero-knowledge variant (the default): every balance and every sum is a Pedersen
//! commitment `v·B + r·B̃` (Ristretto, the Bulletproofs generators), so the tree shows
//! no balance, no total and — padding subtrees committing to zero under blindings of
//! their own — no customer count. A parent's commitment is the sum of its children's;
//! its hash binds each child's hash and commitments separately, as in the plain tree.
//!
//! A customer's proof opens their own leaf (values, and a leaf key from which the salt
//! and blindings follow), carries every sibling on the path (hash and commitments), and
//! a Bulletproofs range proof, aggregated over every sibling's commitment of every
//! asset, that each commits to a value in `[0, 2^64)`: no subtree beside the path can
//! hide a negative balance, and the sums up the path cannot wrap around the group's
//! order (at most 33 terms below `2^64`). The leaf needs no range proof: its values are
//! opened, and are `u64`. The platform can open the root's commitments (the totals and
//! their blindings) to an auditor alone.
//!
//! | value | SHA-256 of |
//! |---|---|
//! | leaf key | HMAC-SHA256 of the epoch's secret over `"leaf-key"`, epoch, customer |
//! | salt | `"ztx-por/v2z/salt"`, leaf key |
//! | leaf blinding of asset `a` | SHA-512 of `"ztx-por/v2z/blind"`, leaf key, `a` (`u8`), reduced mod ℓ |
//! | leaf | `"ztx-por/v2z/leaf"`, epoch, customer, salt, the leaf's commitments (32 bytes each) |
//! | node | `"ztx-por/v2z/node"`, left hash, left commitments, right hash, right commitments |
//! | padding node | `"ztx-por/v2z/pad"`, a value drawn from the epoch's secret, level and index |
//! | root (published) | `"ztx-por/v2z/root"`, epoch, height (`u8`), the assets as in the proof encoding, the top node's hash and commitments |
//!
//! The published root binds the epoch, the tree's height, which asset each slot holds
//! and the totals' commitments, so neither the commitments an auditor opens nor the
//! assets' order can differ from what the customers' proofs verify against.
//!
//! # The range proof
//!
//! The sibling commitments are taken level by level from the leaf up, each level's in
//! asset order, and cut into runs of at most 64; each run is one aggregated proof over
//! its values followed by commitments to zero under a zero blinding (the identity, known
//! to the verifier) up to a power of two. The transcript binds the epoch, the customer,
//! the leaf's index and the run's number, so a range proof serves no other proof.
//!
//! # Proof encoding, version 2
//!
//! Big-endian: version (`u8`, 2); epoch (`u64`); height (`u8`, at most 32); the assets
//! as in version 1; customer (`u64`); leaf key (32 bytes); a balance per asset (`u64`);
//! the leaf's index (`u32`); per level from the leaf up, the sibling's hash (32 bytes)
//! and its commitment per asset (32 bytes each); then per run, the range proof's length
//! (`u16`) and bytes. Nothing may follow.
//!
//! # Version 3: under the epoch's cap
//!
//! The same, with version 3 and the cap's levels (`u8`, 1 to [`MAX_CAP`]) after the
//! assets; the path stops below the cap (`height - levels` levels), the range proofs
//! cover those siblings alone, and their transcript binds the cap's levels too. It is
//! checked under the epoch's cap ([`crate::cap`]), which carries the rest of the way up.
//!
//! # Version 4: under the cap, in runs of 16
//!
//! Version 3's layout with version 4, its sibling commitments cut into runs of at most
//! [`SPLIT_RUN`] instead of 64, and the version bound into each run's transcript. A
//! range proof's time grows with the values it aggregates and runs on one core; runs
//! of 16 are made on the cores at once, so that a proof of 22 values (11 levels under a
//! cap of 9, two assets) takes what one of 16 takes, and stays under 3 KB because the
//! cap carries the levels that would otherwise make it long.

use std::collections::HashMap;

use bulletproofs::{BulletproofGens, PedersenGens, RangeProof};
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoBasepointTable, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::Identity as _;
use hmac::{Hmac, Mac};
use merlin::Transcript;
use sha2::{Digest, Sha256, Sha512};
use zeroize::{Zeroize, Zeroizing};

use crate::proof::{Reader, check_common, named, write_header};
use crate::tree::{
    EpochSecret, available_threads, check_assets, height_for, in_parallel, level_parts, on_cores,
    shuffled_positions,
};
use crate::{Hash, PorError, TreeConfig, ZkCap};

/// The format version of zero-knowledge proofs.
pub const ZK_VERSION: u8 = 2;
/// The format version of zero-knowledge proofs whose top levels the epoch's cap proves
/// (see [`crate::cap`]).
pub const ZK_CAPPED_VERSION: u8 = 3;
/// The format version of capped proofs whose range proofs come in runs of at most
/// [`SPLIT_RUN`] (the default; see the module).
pub const ZK_SPLIT_VERSION: u8 = 4;
/// The most levels a cap holds: 2^11 - 2 nodes, bounding what one costs to check.
pub const MAX_CAP: u8 = 10;
/// The most values one aggregated range proof of a version-4 proof covers.
pub const SPLIT_RUN: usize = 16;

const SALT_TAG: &[u8] = b"ztx-por/v2z/salt";
const BLIND_TAG: &[u8] = b"ztx-por/v2z/blind";
const LEAF_TAG: &[u8] = b"ztx-por/v2z/leaf";
pub(crate) const NODE_TAG: &[u8] = b"ztx-por/v2z/node";
const PAD_TAG: &[u8] = b"ztx-por/v2z/pad";
const ROOT_TAG: &[u8] = b"ztx-por/v2z/root";
/// Every committed value is proven in `[0, 2^64)`.
pub(crate) const RANGE_BITS: usize = 64;
/// The most values one aggregated range proof covers (caps, and proofs before
/// version 4).
pub(crate) const RUN: usize = 64;

/// The most values one aggregated range proof of a proof of `version` covers.
fn run_of(version: u8) -> usize {
    if version == ZK_SPLIT_VERSION {
        SPLIT_RUN
    } else {
        RUN
    }
}

/// The generators, the same for prover and verifier; the blinding base's table makes
/// each commitment two table look-ups instead of a variable-base multiplication.
pub(crate) struct Gens {
    pedersen: PedersenGens,
    blinding_table: RistrettoBasepointTable,
    bulletproofs: BulletproofGens,
    /// 1/2 mod ℓ: the build keeps half of each commitment (see [`Gens::half_commit`]).
    half: Scalar,
}

impl Gens {
    /// The generators, made once per process (the range proofs' take milliseconds).
    pub(crate) fn get() -> &'static Gens {
        static GENS: std::sync::OnceLock<Gens> = std::sync::OnceLock::new();
        GENS.get_or_init(|| {
            let pedersen = PedersenGens::default();
            Gens {
                blinding_table: RistrettoBasepointTable::create(&pedersen.B_blinding),
                bulletproofs: BulletproofGens::new(RANGE_BITS, RUN),
                pedersen,
                half: Scalar::from(2u64).invert(),
            }
        })
    }

    fn commit(&self, value: u64, blinding: &Scalar) -> RistrettoPoint {
        // PedersenGens' value base is the Ristretto basepoint (a test checks it), whose
        // table the crate has built in.
        curve25519_dalek::constants::RISTRETTO_BASEPOINT_TABLE * &Scalar::from(value)
            + &self.blinding_table * blinding
    }

    /// Half of [`Gens::commit`]'s point. Sums of halves are halves of sums, and
    /// `double_and_compress_batch` turns a batch of halves into the commitments'
    /// encodings sharing one inversion, where compressing each alone costs one apiece.
    fn half_commit(&self, value: u64, blinding: &Scalar) -> RistrettoPoint {
        curve25519_dalek::constants::RISTRETTO_BASEPOINT_TABLE * &(Scalar::from(value) * self.half)
            + &self.blinding_table * &(blinding * self.half)
    }

    /// Half of a padding node's commitment to zero under `blinding`.
    fn half_pad(&self, blinding: &Scalar) -> RistrettoPoint {
        &self.blinding_table * &(blinding * self.half)
    }
}

/// What a leaf key opens: the salt, and a blinding per asset.
fn open_leaf_key(key: &Hash, width: usize) -> (Hash, Vec<Scalar>) {
    let salt: Hash = Sha256::new()
        .chain_update(SALT_TAG)
        .chain_update(key)
        .finalize()
        .into();
    let blindings = (0..width)
        .map(|a| {
            let wide: [u8; 64] = Sha512::new()
                .chain_update(BLIND_TAG)
                .chain_update(key)
                .chain_update([u8::try_from(a).unwrap_or(u8::MAX)])
                .finalize()
                .into();
            Scalar::from_bytes_mod_order_wide(&wide)
        })
        .collect();
    (salt, blindings)
}

/// Draws padding nodes' blindings and hashes from the epoch's secret; the keyed MAC is
/// set up once and cloned per draw.
#[derive(Clone)]
struct PadDraws {
    mac: Hmac<Sha512>,
    epoch: u64,
}

impl PadDraws {
    fn new(secret: &EpochSecret, epoch: u64) -> PadDraws {
        // HMAC takes keys of any length: `new_from_slice` cannot fail, and the fallback
        // only keeps the function total without a panic path.
        let mac = <Hmac<Sha512> as Mac>::new_from_slice(secret.as_bytes())
            .unwrap_or_else(|_| <Hmac<Sha512> as hmac::digest::KeyInit>::new(&Default::default()));
        PadDraws { mac, epoch }
    }

    /// The padding node at `index` of `level`: its hash and a blinding per asset.
    fn pad(&self, level: u8, index: u64, width: usize) -> (Hash, Vec<Scalar>) {
        let draw = |what: u8| -> Zeroizing<[u8; 64]> {
            let mut mac = self.mac.clone();
            mac.update(b"pad");
            mac.update(&self.epoch.to_be_bytes());
            mac.update(&[level, what]);
            mac.update(&index.to_be_bytes());
            Zeroizing::new(mac.finalize().into_bytes().into())
        };
        let first = draw(0);
        let hash = Sha256::new()
            .chain_update(PAD_TAG)
            .chain_update(first.get(..32).unwrap_or_default())
            .finalize()
            .into();
        let blindings = (0..width)
            .map(|a| Scalar::from_bytes_mod_order_wide(&draw(1 + u8::try_from(a).unwrap_or(0))))
            .collect();
        (hash, blindings)
    }
}

/// One epoch's tree of commitments, sparse like [`crate::SumTree`]: per level, only the
/// nodes above some customer, each missing sibling a padding node made when needed.
pub struct ZkTree {
    epoch: u64,
    assets: Vec<String>,
    height: u8,
    /// Per level: (index, hash) of the nodes kept, by index.
    nodes: Vec<Vec<(u64, Hash)>>,
    /// Per level, flat (`assets` per node): values, blindings, commitments.
    values: Vec<Vec<u64>>,
    blindings: Vec<Vec<Scalar>>,
    commitments: Vec<Vec<CompressedRistretto>>,
    positions: HashMap<u64, u64>,
    secret: EpochSecret,
    pads: PadDraws,
    gens: &'static Gens,
    /// The cap its proofs are made under, if any (see [`ZkTree::with_cap`]).
    capped: Option<ZkCap>,
}

impl std::fmt::Debug for ZkTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZkTree")
            .field("epoch", &self.epoch)
            .field("height", &self.height)
            .finish_non_exhaustive()
    }
}

/// What is published for a zero-knowledge epoch: no total, no count. A proof is checked
/// against the hash alone; the commitments are there for an auditor's opening.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkRoot {
    pub epoch: u64,
    pub assets: Vec<String>,
    pub height: u8,
    /// The published root: binds everything else here.
    pub hash: Hash,
    /// The top node's hash (below the published root).
    pub top: Hash,
    /// The root's commitment per asset.
    pub commitments: Vec<[u8; 32]>,
    /// The epoch's cap, when its proofs are capped (checked against `hash`).
    pub cap: Option<ZkCap>,
}

impl ZkRoot {
    /// Whether the hash binds this epoch, height, assets, top node and commitments.
    pub fn is_consistent(&self) -> bool {
        let commitments: Vec<CompressedRistretto> = self
            .commitments
            .iter()
            .map(|c| CompressedRistretto(*c))
            .collect();
        zk_root_hash(
            self.epoch,
            self.height,
            &self.assets,
            &self.top,
            &commitments,
        ) == self.hash
    }

    /// The root as published: its hash, in hex.
    pub fn hex(&self) -> String {
        hex::encode(self.hash)
    }
}

/// One level of a zero-knowledge proof: the sibling's hash and commitment per asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkStep {
    pub hash: Hash,
    pub commitments: Vec<[u8; 32]>,
}

/// A customer's zero-knowledge proof (see the module for its encoding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkProof {
    /// [`ZK_VERSION`] uncapped; [`ZK_CAPPED_VERSION`] or [`ZK_SPLIT_VERSION`] capped.
    pub version: u8,
    pub epoch: u64,
    pub assets: Vec<String>,
    pub height: u8,
    pub customer: u64,
    /// Opens the customer's salt and leaf blindings, and nothing else.
    pub leaf_key: Hash,
    pub balances: Vec<u64>,
    pub index: u64,
    /// The levels below the root the epoch's cap proves instead (0: none, version 2).
    pub cap: u8,
    /// Per level from the leaf up, to the cap.
    pub path: Vec<ZkStep>,
    /// One aggregated range proof per run of at most 64 sibling commitments.
    pub ranges: Vec<Vec<u8>>,
}

/// What a valid zero-knowledge proof proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkVerified {
    pub epoch: u64,
    pub customer: u64,
    /// (asset, balance) in the epoch's asset order.
    pub balances: Vec<(String, u64)>,
}

/// One level being built: kept nodes and their flat values.
#[derive(Default)]
struct Level {
    nodes: Vec<(u64, Hash)>,
    values: Vec<u64>,
    blindings: Vec<Scalar>,
    points: Vec<RistrettoPoint>,
    commitments: Vec<CompressedRistretto>,
}

impl Level {
    fn append(&mut self, mut other: Level) {
        self.nodes.append(&mut other.nodes);
        self.values.append(&mut other.values);
        self.blindings.append(&mut other.blindings);
        self.points.append(&mut other.points);
        self.commitments.append(&mut other.commitments);
    }
}

/// Balances and blindings open every commitment: wiped when a level or a tree goes.
pub(crate) fn wipe(values: &mut [u64], blindings: &mut [Scalar]) {
    values.zeroize();
    blindings.iter_mut().for_each(Zeroize::zeroize);
}

impl Drop for Level {
    fn drop(&mut self) {
        wipe(&mut self.values, &mut self.blindings);
    }
}

impl Drop for ZkTree {
    fn drop(&mut self) {
        for (values, blindings) in self.values.iter_mut().zip(&mut self.blindings) {
            wipe(values, blindings);
        }
    }
}

impl ZkTree {
    /// Builds the tree; refuses what [`crate::SumTree::build`] refuses, and any sum of
    /// 2^64 or more (beyond the range proofs). `progress` hears each finished level
    /// (`done` of `height + 1`).
    pub fn build(
        epoch: u64,
        assets: Vec<String>,
        accounts: &[(u64, Vec<u64>)],
        secret: &EpochSecret,
        config: TreeConfig,
        progress: &(dyn Fn(u8, u8) + Sync),
    ) -> Result<ZkTree, PorError> {
        check_assets(&assets)?;
        let width = assets.len();
        let mut order: Vec<&(u64, Vec<u64>)> = accounts.iter().collect();
        order.sort_unstable_by_key(|(customer, _)| *customer);
        for pair in order.windows(2) {
            if let [a, b] = pair
                && a.0 == b.0
            {
                return Err(PorError::DuplicateCustomer(a.0));
            }
        }
        if let Some((customer, balances)) = order.iter().find(|(_, b)| b.len() != width) {
            return Err(PorError::BalanceCount {
                customer: *customer,
                got: balances.len(),
                assets: width,
            });
        }
        let height = height_for(order.len(), config.min_height)?;
        let slots = shuffled_positions(secret, epoch, 1u64 << height, order.len());
        let mut placed: Vec<(u64, &(u64, Vec<u64>))> =
            slots.iter().copied().zip(order.iter().copied()).collect();
        placed.sort_unstable_by_key(|(position, _)| *position);
        let gens = Gens::get();
        let positions = placed.iter().map(|(p, (c, _))| (*c, *p)).collect();
        // The leaves: two table multiplications per asset, on every core.
        let parts = in_parallel(&placed, |part| {
            let mut level = Level::default();
            let mut salts = Vec::with_capacity(part.len());
            for (position, (customer, balances)) in part {
                let key = leaf_key(secret, epoch, *customer);
                let (salt, blinds) = open_leaf_key(&key, width);
                for (v, r) in balances.iter().zip(&blinds) {
                    level.points.push(gens.half_commit(*v, r));
                }
                salts.push(salt);
                level.nodes.push((*position, [0; 32]));
                level.values.extend_from_slice(balances);
                level.blindings.extend(blinds);
            }
            level.commitments = RistrettoPoint::double_and_compress_batch(&level.points);
            for (k, ((node, salt), (_, (customer, _)))) in
                level.nodes.iter_mut().zip(&salts).zip(part).enumerate()
            {
                node.1 = zk_leaf_hash(
                    epoch,
                    *customer,
                    salt,
                    level
                        .commitments
                        .get(k * width..(k + 1) * width)
                        .unwrap_or_default(),
                );
            }
            level
        });
        let mut level = Level::default();
        for part in parts {
            level.append(part);
        }
        progress(1, height + 1);
        let mut tree = ZkTree {
            epoch,
            assets,
            height,
            nodes: Vec::new(),
            values: Vec::new(),
            blindings: Vec::new(),
            commitments: Vec::new(),
            positions,
            secret: secret.clone(),
            pads: PadDraws::new(secret, epoch),
            gens,
            capped: None,
        };
        for l in 0..height {
            let above = tree.parents(&level, l)?;
            tree.keep(level);
            level = above;
            progress(l + 2, height + 1);
        }
        tree.keep(level);
        Ok(tree)
    }

    fn keep(&mut self, mut level: Level) {
        self.nodes.push(std::mem::take(&mut level.nodes));
        self.values.push(std::mem::take(&mut level.values));
        self.blindings.push(std::mem::take(&mut level.blindings));
        self.commitments
            .push(std::mem::take(&mut level.commitments));
    }

    /// The level above `below`, every missing sibling a padding node.
    fn parents(&self, below: &Level, level: u8) -> Result<Level, PorError> {
        let parts = level_parts(&below.nodes);
        let built = on_cores(&parts, |&(start, end)| {
            self.parents_of(below, level, start, end)
        });
        let mut above = Level::default();
        for part in built {
            above.append(part?);
        }
        Ok(above)
    }

    fn parents_of(
        &self,
        below: &Level,
        level: u8,
        start: usize,
        end: usize,
    ) -> Result<Level, PorError> {
        let width = self.assets.len();
        let nodes = below.nodes.get(start..end).unwrap_or_default();
        // Which kept nodes pair with their sibling, and the padding nodes the others
        // need, whose commitments are compressed in one batch.
        let mut pairs = Vec::with_capacity(nodes.len());
        let mut pad_hashes = Vec::new();
        let mut pad_blindings = Vec::new();
        let mut pad_points = Vec::new();
        let mut k = 0;
        while let Some(&(index, _)) = nodes.get(k) {
            let paired = nodes.get(k + 1).is_some_and(|(i, _)| *i == index ^ 1);
            pairs.push((start + k, paired));
            if paired {
                k += 2;
            } else {
                let (hash, blindings) = self.pads.pad(level, index ^ 1, width);
                pad_points.extend(blindings.iter().map(|r| self.gens.half_pad(r)));
                pad_blindings.extend(blindings);
                pad_hashes.push(hash);
                k += 1;
            }
        }
        let pad_commitments = RistrettoPoint::double_and_compress_batch(&pad_points);
        let mut out = Level::default();
        let mut pad = 0;
        for (k, paired) in pairs {
            let Some(&(index, hash)) = below.nodes.get(k) else {
                break;
            };
            let own = k * width..(k + 1) * width;
            let mut hasher = Sha256::new();
            hasher.update(NODE_TAG);
            if paired {
                // Both children kept: the left is `own`.
                let right = (k + 1) * width..(k + 2) * width;
                let sibling_hash = below.nodes.get(k + 1).map(|(_, h)| *h).unwrap_or_default();
                absorb(&mut hasher, &hash, below.commitments.get(own.clone()));
                absorb(
                    &mut hasher,
                    &sibling_hash,
                    below.commitments.get(right.clone()),
                );
                for (a, (l, r)) in own.zip(right).enumerate() {
                    let sum = value(&below.values, l)
                        .checked_add(value(&below.values, r))
                        .ok_or_else(|| self.overflow(a))?;
                    out.values.push(sum);
                    out.blindings
                        .push(scalar(&below.blindings, l) + scalar(&below.blindings, r));
                    out.points
                        .push(point(&below.points, l) + point(&below.points, r));
                }
            } else {
                let pad_hash = pad_hashes.get(pad).copied().unwrap_or_default();
                let padding = pad * width..(pad + 1) * width;
                let kept = below.commitments.get(own.clone());
                if index & 1 == 0 {
                    absorb(&mut hasher, &hash, kept);
                    absorb(&mut hasher, &pad_hash, pad_commitments.get(padding.clone()));
                } else {
                    absorb(&mut hasher, &pad_hash, pad_commitments.get(padding.clone()));
                    absorb(&mut hasher, &hash, kept);
                }
                for (i, j) in own.zip(padding) {
                    out.values.push(value(&below.values, i));
                    out.blindings
                        .push(scalar(&below.blindings, i) + scalar(&pad_blindings, j));
                    out.points
                        .push(point(&below.points, i) + point(&pad_points, j));
                }
                pad += 1;
            }
            out.nodes.push((index >> 1, hasher.finalize().into()));
        }
        out.commitments = RistrettoPoint::double_and_compress_batch(&out.points);
        Ok(out)
    }

    fn overflow(&self, asset: usize) -> PorError {
        PorError::BeyondRange {
            asset: self.assets.get(asset).cloned().unwrap_or_default(),
        }
    }

    /// The node at `index` of `level`, kept or padding: hash, values, blindings,
    /// commitments.
    pub(crate) fn node_at(
        &self,
        level: u8,
        index: u64,
    ) -> (Hash, Vec<u64>, Vec<Scalar>, Vec<CompressedRistretto>) {
        let width = self.assets.len();
        let l = usize::from(level);
        let kept = self.nodes.get(l).and_then(|nodes| {
            nodes
                .binary_search_by_key(&index, |(i, _)| *i)
                .ok()
                .and_then(|k| nodes.get(k).map(|(_, h)| (k, *h)))
        });
        match kept {
            Some((k, hash)) => {
                let range = k * width..(k + 1) * width;
                (
                    hash,
                    flat(self.values.get(l), range.clone()),
                    flat(self.blindings.get(l), range.clone()),
                    flat(self.commitments.get(l), range),
                )
            }
            None => {
                let (hash, blindings) = self.pads.pad(level, index, width);
                let commitments = blindings
                    .iter()
                    .map(|r| (&self.gens.blinding_table * r).compress())
                    .collect();
                (hash, vec![0; width], blindings, commitments)
            }
        }
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    pub(crate) fn height(&self) -> u8 {
        self.height
    }

    pub(crate) fn assets(&self) -> &[String] {
        &self.assets
    }

    /// What is published.
    pub fn root(&self) -> ZkRoot {
        let (top, _, _, commitments) = self.node_at(self.height, 0);
        ZkRoot {
            epoch: self.epoch,
            assets: self.assets.clone(),
            height: self.height,
            hash: zk_root_hash(self.epoch, self.height, &self.assets, &top, &commitments),
            top,
            commitments: commitments.iter().map(|c| c.to_bytes()).collect(),
            cap: self.capped.clone(),
        }
    }

    /// How many customers the tree holds (not published).
    pub fn customers(&self) -> usize {
        self.positions.len()
    }

    /// The root's totals and blindings, for an auditor (never published).
    pub fn open_totals(&self) -> (Vec<u64>, Vec<[u8; 32]>) {
        let (_, values, blindings, _) = self.node_at(self.height, 0);
        (values, blindings.iter().map(Scalar::to_bytes).collect())
    }

    /// Customer `customer`'s proof: their leaf opened, the path's siblings, and the
    /// range proofs over every sibling's commitments (each run on a core of its own).
    pub fn proof(&self, customer: u64) -> Result<ZkProof, PorError> {
        self.proof_capped(customer, self.capped.as_ref().map_or(0, |c| c.levels))
    }

    /// The tree with a cap of `levels` levels (at most the height and [`MAX_CAP`];
    /// none at 0) published with its root, its proofs made under it (version 3).
    pub fn with_cap(mut self, levels: u8) -> Result<ZkTree, PorError> {
        let levels = levels.min(self.height).min(MAX_CAP);
        self.capped = if levels == 0 {
            None
        } else {
            Some(self.make_cap(levels)?)
        };
        Ok(self)
    }

    /// Customer `customer`'s proof up to the epoch's cap of `cap` levels (see
    /// [`crate::cap`]): its range proofs cover only the siblings below the cap, in runs
    /// of 16 (version 4; version 2 without a cap).
    pub fn proof_capped(&self, customer: u64, cap: u8) -> Result<ZkProof, PorError> {
        let version = if cap == 0 {
            ZK_VERSION
        } else {
            ZK_SPLIT_VERSION
        };
        self.proof_as(customer, cap, version)
    }

    /// Customer `customer`'s proof of format `version` (2 without a cap, 3 or 4 with
    /// one): what [`ZkTree::proof_capped`] makes, or an older version's proof.
    pub fn proof_as(&self, customer: u64, cap: u8, version: u8) -> Result<ZkProof, PorError> {
        check_version(version, cap)?;
        let index = *self
            .positions
            .get(&customer)
            .ok_or(PorError::UnknownCustomer(customer))?;
        if cap > MAX_CAP.min(self.height) {
            return Err(PorError::Invalid {
                field: "cap",
                why: format!("{cap} levels in a tree of height {}", self.height),
            });
        }
        let (_, balances, _, _) = self.node_at(0, index);
        let levels = self.height - cap;
        let mut path = Vec::with_capacity(usize::from(levels));
        let mut values = Vec::new();
        let mut blinds = Vec::new();
        for level in 0..levels {
            let (hash, v, b, commitments) = self.node_at(level, (index >> level) ^ 1);
            values.extend(v);
            blinds.extend(b);
            path.push(ZkStep {
                hash,
                commitments: commitments.iter().map(|c| c.to_bytes()).collect(),
            });
        }
        let proven = self.prove_runs(&values, &blinds, run_of(version), &|run| {
            range_transcript(self.epoch, customer, index, cap, version, run)
        });
        wipe(&mut values, &mut blinds);
        Ok(ZkProof {
            version,
            epoch: self.epoch,
            assets: self.assets.clone(),
            height: self.height,
            customer,
            leaf_key: leaf_key(&self.secret, self.epoch, customer),
            balances,
            index,
            cap,
            path,
            ranges: proven?,
        })
    }

    /// One aggregated range proof per run of at most `run` of `values`, the runs shared
    /// round-robin among the cores; run `n`'s transcript is `transcript(n)`.
    pub(crate) fn prove_runs(
        &self,
        values: &[u64],
        blinds: &[Scalar],
        run: usize,
        transcript: &(dyn Fn(usize) -> Transcript + Sync),
    ) -> Result<Vec<Vec<u8>>, PorError> {
        let runs: Vec<(&[u64], &[Scalar])> = values.chunks(run).zip(blinds.chunks(run)).collect();
        let workers = available_threads().clamp(1, runs.len().max(1));
        let mut proven: Vec<Option<Result<Vec<u8>, PorError>>> = vec![None; runs.len()];
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|w| {
                    let runs = &runs;
                    scope.spawn(move || {
                        runs.iter()
                            .enumerate()
                            .skip(w)
                            .step_by(workers)
                            .map(|(run, (v, b))| (run, self.prove_run(v, b, transcript(run))))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for handle in handles {
                let done = handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                for (run, result) in done {
                    if let Some(slot) = proven.get_mut(run) {
                        *slot = Some(result);
                    }
                }
            }
        });
        proven
            .into_iter()
            .map(|p| {
                p.unwrap_or_else(|| {
                    Err(PorError::Invalid {
                        field: "range proof",
                        why: "a run was not proven".into(),
                    })
                })
            })
            .collect()
    }

    fn prove_run(
        &self,
        values: &[u64],
        blindings: &[Scalar],
        mut transcript: Transcript,
    ) -> Result<Vec<u8>, PorError> {
        let m = values.len().next_power_of_two();
        let mut values = values.to_vec();
        let mut blindings = blindings.to_vec();
        values.resize(m, 0);
        blindings.resize(m, Scalar::ZERO);
        let proof = RangeProof::prove_multiple(
            &self.gens.bulletproofs,
            &self.gens.pedersen,
            &mut transcript,
            &values,
            &blindings,
            RANGE_BITS,
        )
        .map_err(|e| PorError::Invalid {
            field: "range proof",
            why: e.to_string(),
        });
        wipe(&mut values, &mut blindings);
        let (proof, _) = proof?;
        Ok(proof.to_bytes())
    }
}

/// Checks a zero-knowledge proof against the published root hash: the leaf's
/// commitments rebuilt from the opened balances and leaf key, the path hashed and summed
/// up to the root's hash, and every range proof.
pub fn verify_zk(proof: &ZkProof, root: &Hash) -> Result<ZkVerified, PorError> {
    proof.check_shape()?;
    if proof.cap != 0 {
        return Err(PorError::Invalid {
            field: "cap",
            why: "a capped proof is checked against its epoch's cap".into(),
        });
    }
    let (node, siblings) = walk(proof, Gens::get())?;
    let hash = node.root(proof);
    if hash != *root {
        return Err(PorError::wrong_root(&hash, root));
    }
    verified(proof, &siblings)
}

/// Checks the range proofs of a proof whose path led where it should.
pub(crate) fn verified(
    proof: &ZkProof,
    siblings: &[CompressedRistretto],
) -> Result<ZkVerified, PorError> {
    verify_runs(siblings, &proof.ranges, run_of(proof.version), &|run| {
        range_transcript(
            proof.epoch,
            proof.customer,
            proof.index,
            proof.cap,
            proof.version,
            run,
        )
    })?;
    Ok(ZkVerified {
        epoch: proof.epoch,
        customer: proof.customer,
        balances: named(&proof.assets, &proof.balances),
    })
}

/// Checks one range proof per run of at most `run` of `commitments`, run `n` under
/// `transcript(n)`, each padded with identities to a power of two.
pub(crate) fn verify_runs(
    commitments: &[CompressedRistretto],
    ranges: &[Vec<u8>],
    run: usize,
    transcript: &dyn Fn(usize) -> Transcript,
) -> Result<(), PorError> {
    let invalid = |why: String| PorError::Invalid {
        field: "range proof",
        why,
    };
    let gens = Gens::get();
    if commitments.len().div_ceil(run) != ranges.len() {
        return Err(invalid(format!(
            "{} range proofs for {} values",
            ranges.len(),
            commitments.len()
        )));
    }
    for (run, (values, bytes)) in commitments.chunks(run).zip(ranges).enumerate() {
        let mut all = values.to_vec();
        all.resize(
            values.len().next_power_of_two(),
            CompressedRistretto::identity(),
        );
        let range =
            RangeProof::from_bytes(bytes).map_err(|e| invalid(format!("run {run}: {e}")))?;
        range
            .verify_multiple(
                &gens.bulletproofs,
                &gens.pedersen,
                &mut transcript(run),
                &all,
                RANGE_BITS,
            )
            .map_err(|e| invalid(format!("run {run}: {e}")))?;
    }
    Ok(())
}

/// A node as a verifier sees it: its hash and commitments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub(crate) hash: Hash,
    pub(crate) commitments: Vec<CompressedRistretto>,
}

impl Node {
    /// The published root over this node as the top of `proof`'s tree.
    fn root(&self, proof: &ZkProof) -> Hash {
        zk_root_hash(
            proof.epoch,
            proof.height,
            &proof.assets,
            &self.hash,
            &self.commitments,
        )
    }

    /// The parent of `left` and `right`, `None` if a commitment is not a point.
    pub(crate) fn parent(left: &Node, right: &Node) -> Option<Node> {
        let mut h = Sha256::new();
        h.update(NODE_TAG);
        absorb(&mut h, &left.hash, Some(&left.commitments));
        absorb(&mut h, &right.hash, Some(&right.commitments));
        let commitments = left
            .commitments
            .iter()
            .zip(&right.commitments)
            .map(|(l, r)| Some((l.decompress()? + r.decompress()?).compress()))
            .collect::<Option<Vec<_>>>()?;
        Some(Node {
            hash: h.finalize().into(),
            commitments,
        })
    }
}

/// The node a proof's path leads to (the top node, or the cap's node it must equal),
/// and every sibling's commitments in range order.
pub(crate) fn walk(
    proof: &ZkProof,
    gens: &Gens,
) -> Result<(Node, Vec<CompressedRistretto>), PorError> {
    let width = proof.assets.len();
    let (salt, blindings) = open_leaf_key(&proof.leaf_key, width);
    let mut points: Vec<RistrettoPoint> = proof
        .balances
        .iter()
        .zip(&blindings)
        .map(|(v, r)| gens.commit(*v, r))
        .collect();
    let mut commitments: Vec<CompressedRistretto> =
        points.iter().map(RistrettoPoint::compress).collect();
    let mut hash = zk_leaf_hash(proof.epoch, proof.customer, &salt, &commitments);
    let mut siblings = Vec::with_capacity(proof.path.len() * width);
    for (level, step) in proof.path.iter().enumerate() {
        let sibling: Vec<CompressedRistretto> = step
            .commitments
            .iter()
            .map(|b| CompressedRistretto(*b))
            .collect();
        let mut h = Sha256::new();
        h.update(NODE_TAG);
        if (proof.index >> level) & 1 == 1 {
            absorb(&mut h, &step.hash, Some(&sibling));
            absorb(&mut h, &hash, Some(&commitments));
        } else {
            absorb(&mut h, &hash, Some(&commitments));
            absorb(&mut h, &step.hash, Some(&sibling));
        }
        hash = h.finalize().into();
        for (p, s) in points.iter_mut().zip(&sibling) {
            *p += s.decompress().ok_or_else(|| PorError::Invalid {
                field: "path",
                why: format!("level {level}: a commitment is not a point"),
            })?;
        }
        commitments = points.iter().map(RistrettoPoint::compress).collect();
        siblings.extend(sibling);
    }
    Ok((Node { hash, commitments }, siblings))
}

/// Checks the platform's opening of the root to an auditor: the commitments are the
/// ones the published hash binds, and the totals and blindings open exactly them.
pub fn verify_totals(root: &ZkRoot, totals: &[u64], blindings: &[[u8; 32]]) -> bool {
    let gens = Gens::get();
    root.is_consistent()
        && totals.len() == root.commitments.len()
        && blindings.len() == totals.len()
        && totals
            .iter()
            .zip(blindings)
            .zip(&root.commitments)
            .all(|((v, r), c)| {
                Option::<Scalar>::from(Scalar::from_canonical_bytes(*r))
                    .is_some_and(|r| gens.commit(*v, &r).compress().to_bytes() == *c)
            })
}

impl ZkProof {
    /// The root this proof's path leads to (its range proofs unchecked): what a proof
    /// claims, to compare with what was published.
    pub fn implied_root(&self) -> Result<Hash, PorError> {
        self.check_shape()?;
        if self.cap != 0 {
            return Err(PorError::Invalid {
                field: "cap",
                why: "a capped proof leads to its epoch's cap, not to the root".into(),
            });
        }
        walk(self, Gens::get()).map(|(node, _)| node.root(self))
    }

    /// The levels the path covers, below the cap.
    fn levels(&self) -> u8 {
        self.height.saturating_sub(self.cap)
    }

    /// How many range proofs a proof of this shape carries.
    fn runs(&self) -> usize {
        (usize::from(self.levels()) * self.assets.len()).div_ceil(run_of(self.version))
    }

    pub(crate) fn check_shape(&self) -> Result<(), PorError> {
        let invalid = |field, why: String| PorError::Invalid { field, why };
        check_version(self.version, self.cap)?;
        if self.cap > MAX_CAP.min(self.height) {
            return Err(invalid(
                "cap",
                format!("{} levels in a tree of height {}", self.cap, self.height),
            ));
        }
        let steps: Vec<usize> = self.path.iter().map(|s| s.commitments.len()).collect();
        check_common(
            &self.assets,
            self.height,
            self.index,
            self.balances.len(),
            &steps,
            self.levels(),
        )?;
        check_ranges(&self.ranges, self.runs())
    }

    /// The canonical bytes (see the module).
    pub fn encode(&self) -> Result<Vec<u8>, PorError> {
        self.check_shape()?;
        let width = self.assets.len();
        let mut out = Vec::with_capacity(
            96 + self.path.len() * 32 * (1 + width)
                + self.ranges.iter().map(Vec::len).sum::<usize>(),
        );
        write_header(
            &mut out,
            self.version,
            self.epoch,
            self.height,
            &self.assets,
        )?;
        if self.cap != 0 {
            out.push(self.cap);
        }
        out.extend_from_slice(&self.customer.to_be_bytes());
        out.extend_from_slice(&self.leaf_key);
        for b in &self.balances {
            out.extend_from_slice(&b.to_be_bytes());
        }
        // Below 2^height, height at most 32: checked above.
        out.extend_from_slice(&u32::try_from(self.index).unwrap_or(u32::MAX).to_be_bytes());
        write_steps(&mut out, &self.path);
        write_ranges(&mut out, &self.ranges);
        Ok(out)
    }

    /// Reads the canonical bytes, refusing anything else by name.
    pub fn decode(bytes: &[u8]) -> Result<ZkProof, PorError> {
        let mut r = Reader(bytes);
        let version = match bytes.first() {
            Some(&v @ (ZK_CAPPED_VERSION | ZK_SPLIT_VERSION)) => v,
            _ => ZK_VERSION,
        };
        let capped = version != ZK_VERSION;
        let (epoch, height, assets) = r.header(version)?;
        let cap = if capped { r.u8("cap")? } else { 0 };
        if cap > MAX_CAP.min(height) || (capped && cap == 0) {
            return Err(PorError::Invalid {
                field: "cap",
                why: format!("{cap} levels in a tree of height {height}"),
            });
        }
        let levels = height - cap;
        let width = assets.len();
        let customer = r.u64("customer")?;
        let leaf_key = r.hash("leaf key")?;
        let balances = (0..width)
            .map(|_| r.u64("balances"))
            .collect::<Result<Vec<_>, _>>()?;
        let index = u64::from(r.u32("index")?);
        let path = read_steps(&mut r, usize::from(levels), width, "path")?;
        let ranges = read_ranges(
            &mut r,
            (usize::from(levels) * width).div_ceil(run_of(version)),
        )?;
        if !r.0.is_empty() {
            return Err(PorError::Trailing(r.0.len()));
        }
        let proof = ZkProof {
            version,
            epoch,
            assets,
            height,
            customer,
            leaf_key,
            balances,
            index,
            cap,
            path,
            ranges,
        };
        proof.check_shape()?;
        Ok(proof)
    }
}

/// That a proof or cap carries the `due` range proofs, each short enough to encode.
pub(crate) fn check_ranges(ranges: &[Vec<u8>], due: usize) -> Result<(), PorError> {
    let invalid = |why: String| PorError::Invalid {
        field: "range proof",
        why,
    };
    if ranges.len() != due {
        return Err(invalid(format!(
            "{} range proofs where {due} are due",
            ranges.len()
        )));
    }
    if let Some(run) = ranges.iter().position(|r| r.len() > usize::from(u16::MAX)) {
        return Err(invalid(format!("run {run} is too long")));
    }
    Ok(())
}

/// Nodes as a proof or a cap encodes them: each its hash, then its commitments.
pub(crate) fn write_steps(out: &mut Vec<u8>, steps: &[ZkStep]) {
    for step in steps {
        out.extend_from_slice(&step.hash);
        for c in &step.commitments {
            out.extend_from_slice(c);
        }
    }
}

/// Range proofs as a proof or a cap encodes them: each its length (`u16`), its bytes.
pub(crate) fn write_ranges(out: &mut Vec<u8>, ranges: &[Vec<u8>]) {
    for range in ranges {
        out.extend_from_slice(&u16::try_from(range.len()).unwrap_or(u16::MAX).to_be_bytes());
        out.extend_from_slice(range);
    }
}

/// `count` nodes of `width` commitments each, as [`write_steps`] writes them.
pub(crate) fn read_steps(
    r: &mut Reader<'_>,
    count: usize,
    width: usize,
    field: &'static str,
) -> Result<Vec<ZkStep>, PorError> {
    (0..count)
        .map(|_| {
            let hash = r.hash(field)?;
            let commitments = (0..width)
                .map(|_| r.hash(field))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ZkStep { hash, commitments })
        })
        .collect()
}

/// `count` range proofs, as [`write_ranges`] writes them.
pub(crate) fn read_ranges(r: &mut Reader<'_>, count: usize) -> Result<Vec<Vec<u8>>, PorError> {
    (0..count)
        .map(|_| {
            let len = usize::from(r.u16("range proof")?);
            Ok(r.take(len, "range proof")?.to_vec())
        })
        .collect()
}

pub(crate) fn absorb(h: &mut Sha256, hash: &Hash, commitments: Option<&[CompressedRistretto]>) {
    h.update(hash);
    for c in commitments.unwrap_or_default() {
        h.update(c.as_bytes());
    }
}

fn value(values: &[u64], i: usize) -> u64 {
    values.get(i).copied().unwrap_or(0)
}

fn scalar(scalars: &[Scalar], i: usize) -> Scalar {
    scalars.get(i).copied().unwrap_or(Scalar::ZERO)
}

fn point(points: &[RistrettoPoint], i: usize) -> RistrettoPoint {
    points.get(i).copied().unwrap_or_default()
}

/// The `range` of a level's flat values, or nothing.
fn flat<T: Clone>(level: Option<&Vec<T>>, range: std::ops::Range<usize>) -> Vec<T> {
    level
        .and_then(|v| v.get(range))
        .map(<[T]>::to_vec)
        .unwrap_or_default()
}

fn range_transcript(
    epoch: u64,
    customer: u64,
    index: u64,
    cap: u8,
    version: u8,
    run: usize,
) -> Transcript {
    let mut t = Transcript::new(b"ztx-por/v2z/range");
    t.append_u64(b"epoch", epoch);
    t.append_u64(b"customer", customer);
    t.append_u64(b"index", index);
    // Version 2's and 3's transcripts stay as they were.
    if cap != 0 {
        t.append_u64(b"cap", u64::from(cap));
    }
    if version == ZK_SPLIT_VERSION {
        t.append_u64(b"version", u64::from(version));
    }
    t.append_u64(b"run", u64::try_from(run).unwrap_or(u64::MAX));
    t
}

/// That `version` is a zero-knowledge proof's, capped exactly when `cap` is not 0.
fn check_version(version: u8, cap: u8) -> Result<(), PorError> {
    let fits = match version {
        ZK_VERSION => cap == 0,
        ZK_CAPPED_VERSION | ZK_SPLIT_VERSION => cap != 0,
        _ => false,
    };
    if fits {
        Ok(())
    } else {
        Err(PorError::Invalid {
            field: "version",
            why: format!("version {version} with a cap of {cap} levels"),
        })
    }
}

fn leaf_key(secret: &EpochSecret, epoch: u64, customer: u64) -> Hash {
    secret.draw_labelled(b"leaf-key", b"", epoch, customer)
}

/// The published root: the top node with everything a proof is read against.
pub(crate) fn zk_root_hash(
    epoch: u64,
    height: u8,
    assets: &[String],
    top: &Hash,
    commitments: &[CompressedRistretto],
) -> Hash {
    let mut h = Sha256::new();
    h.update(ROOT_TAG);
    h.update(epoch.to_be_bytes());
    h.update([height, u8::try_from(assets.len()).unwrap_or(u8::MAX)]);
    for asset in assets {
        h.update([u8::try_from(asset.len()).unwrap_or(u8::MAX)]);
        h.update(asset.as_bytes());
    }
    absorb(&mut h, top, Some(commitments));
    h.finalize().into()
}

fn zk_leaf_hash(
    epoch: u64,
    customer: u64,
    salt: &Hash,
    commitments: &[CompressedRistretto],
) -> Hash {
    let mut h = Sha256::new();
    h.update(LEAF_TAG);
    h.update(epoch.to_be_bytes());
    h.update(customer.to_be_bytes());
    h.update(salt);
    for c in commitments {
        h.update(c.as_bytes());
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_value_base_is_the_basepoint_whose_table_commits() {
        let gens = Gens::get();
        assert_eq!(
            gens.pedersen.B,
            curve25519_dalek::constants::RISTRETTO_BASEPOINT_POINT
        );
        let r = Scalar::from(77u64);
        assert_eq!(
            gens.commit(5, &r),
            gens.pedersen.commit(Scalar::from(5u64), r)
        );
    }

    /// Padding values in a run are commitments to zero under a zero blinding: the
    /// identity, which the verifier supplies itself.
    #[test]
    fn a_zero_under_a_zero_blinding_is_the_identity() {
        let gens = Gens::get();
        assert_eq!(
            gens.commit(0, &Scalar::ZERO).compress(),
            CompressedRistretto::identity()
        );
    }

    /// The attack range proofs exist for: the platform lowers its liabilities by hiding
    /// a negative value in a subtree beside a customer's path (here -1,000 beside
    /// customer 1, whose sibling holds 7). The path hashes to the root it publishes, but
    /// no range proof can show a negative value in range.
    #[allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "a test")]
    #[test]
    fn a_negative_balance_hidden_in_a_subtree_fails_the_range_proof() {
        let accounts = vec![(1, vec![5]), (2, vec![7]), (3, vec![9])];
        let secret = EpochSecret::from_bytes([3; 32]);
        let config = TreeConfig { min_height: 2 };
        let tree = ZkTree::build(
            1,
            vec!["BTC".into()],
            &accounts,
            &secret,
            config,
            &|_, _| {},
        )
        .unwrap();
        let honest = tree.proof(1).unwrap();
        let gens = Gens::get();
        assert!(verify_zk(&honest, &tree.root().hash).is_ok());
        let (mut values, mut blindings) = (Vec::new(), Vec::new());
        for level in 0..tree.height {
            let (_, v, b, _) = tree.node_at(level, (honest.index >> level) ^ 1);
            values.extend(v);
            blindings.extend(b);
        }
        let target = values.iter().position(|v| *v > 0).unwrap();
        let mut forged = honest.clone();
        let step = &mut forged.path[target];
        let lowered = CompressedRistretto(step.commitments[0])
            .decompress()
            .unwrap()
            - gens.pedersen.B * Scalar::from(values[target] + 1_000);
        step.commitments[0] = lowered.compress().to_bytes();
        let forged_root = walk(&forged, gens).unwrap().0.root(&forged);
        // The closest the platform can come: the sibling's value as a u64, wrapped.
        values[target] = 0u64.wrapping_sub(1_000);
        forged.ranges = vec![
            tree.prove_run(
                &values,
                &blindings,
                range_transcript(1, 1, honest.index, 0, ZK_VERSION, 0),
            )
            .unwrap(),
        ];
        assert!(matches!(
            verify_zk(&forged, &forged_root),
            Err(PorError::Invalid {
                field: "range proof",
                ..
            })
        ));
    }
}
