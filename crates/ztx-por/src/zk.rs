//! The zero-knowledge variant (the default): every balance and every sum is a Pedersen
//! commitment `v·B + r·B̃` (Ristretto, the Bulletproofs generators), so the tree shows
//! no balance, no total and — padding subtrees committing to zero with blindings of
//! their own — no customer count. A parent's commitment is the sum of its children's;
//! its hash binds each child's hash and commitments separately, as in the plain tree.
//! A customer's proof opens their own leaf (values and blindings) and carries, per
//! asset, one Bulletproofs range proof aggregated over the leaf and every sibling on the
//! path, that each commits to a value in `[0, 2^64)`: no subtree beside the path can
//! hide a negative balance. The platform can open the root's commitments (the totals and
//! their blindings) to an auditor alone.
//!
//! | value | SHA-256 of |
//! |---|---|
//! | leaf | `"ztx-por/v2z/leaf"`, epoch, customer, salt, the leaf's commitments (32 bytes each) |
//! | node | `"ztx-por/v2z/node"`, left hash, left commitments, right hash, right commitments |
//! | padding node | `"ztx-por/v2z/pad"`, a value drawn from the epoch's secret, level and index |
//!
//! Blindings are drawn from the epoch's secret (64 bytes reduced modulo the group
//! order), so proofs can be issued all epoch long from the kept inputs.

use std::collections::HashMap;

use bulletproofs::{BulletproofGens, PedersenGens, RangeProof};
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoBasepointTable, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use merlin::Transcript;
use sha2::{Digest, Sha256};

use crate::tree::{
    EpochSecret, available_threads, check_assets, height_for, in_parallel, shuffled_positions,
};
use crate::{Hash, PorError, TreeConfig};

const LEAF_TAG: &[u8] = b"ztx-por/v2z/leaf";
const NODE_TAG: &[u8] = b"ztx-por/v2z/node";
const PAD_TAG: &[u8] = b"ztx-por/v2z/pad";
/// Every committed value is proven in `[0, 2^64)`.
const RANGE_BITS: usize = 64;

/// The generators, the same for prover and verifier; the blinding base's table makes
/// each commitment two table look-ups instead of a variable-base multiplication.
struct Gens {
    pedersen: PedersenGens,
    blinding_table: RistrettoBasepointTable,
    bulletproofs: BulletproofGens,
}

impl Gens {
    /// The generators, made once per process (the range proofs' take milliseconds).
    fn get() -> &'static Gens {
        static GENS: std::sync::OnceLock<Gens> = std::sync::OnceLock::new();
        GENS.get_or_init(Gens::new)
    }

    fn new() -> Gens {
        let pedersen = PedersenGens::default();
        Gens {
            blinding_table: RistrettoBasepointTable::create(&pedersen.B_blinding),
            // The widest aggregation: the leaf and 32 siblings, padded to 64.
            bulletproofs: BulletproofGens::new(RANGE_BITS, 64),
            pedersen,
        }
    }

    fn commit(&self, value: u64, blinding: &Scalar) -> RistrettoPoint {
        // PedersenGens' value base is the Ristretto basepoint (a test checks it), whose
        // table the crate has built in.
        curve25519_dalek::constants::RISTRETTO_BASEPOINT_TABLE * &Scalar::from(value)
            + &self.blinding_table * blinding
    }
}

fn blinding(secret: &EpochSecret, label: &[u8], epoch: u64, n: u64) -> Scalar {
    let mut wide = [0u8; 64];
    let (a, b) = wide.split_at_mut(32);
    a.copy_from_slice(&secret.draw_labelled(label, b"lo", epoch, n));
    b.copy_from_slice(&secret.draw_labelled(label, b"hi", epoch, n));
    Scalar::from_bytes_mod_order_wide(&wide)
}

/// One epoch's tree of commitments, sparse like [`crate::SumTree`].
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
    gens: &'static Gens,
}

impl std::fmt::Debug for ZkTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZkTree")
            .field("epoch", &self.epoch)
            .field("height", &self.height)
            .finish_non_exhaustive()
    }
}

/// What is published for a zero-knowledge epoch: no total, no count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkRoot {
    pub epoch: u64,
    pub assets: Vec<String>,
    pub height: u8,
    pub hash: Hash,
    /// The root's commitment per asset.
    pub commitments: Vec<[u8; 32]>,
}

/// A customer's zero-knowledge proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkProof {
    pub epoch: u64,
    pub assets: Vec<String>,
    pub height: u8,
    pub customer: u64,
    pub salt: Hash,
    pub balances: Vec<u64>,
    /// The leaf's blinding per asset (opens the customer's own commitments only).
    pub blindings: Vec<[u8; 32]>,
    pub index: u64,
    /// Per level from the leaf up: the sibling's hash and commitment per asset.
    pub path: Vec<(Hash, Vec<[u8; 32]>)>,
    /// Per asset: commitments to zero padding the aggregation to a power of two, then
    /// the range proof's bytes.
    pub ranges: Vec<(Vec<[u8; 32]>, Vec<u8>)>,
}

impl ZkTree {
    /// Builds the tree; refuses what [`crate::SumTree::build`] refuses, and any balance
    /// or sum of 2^64 or more (beyond the range proofs).
    pub fn build(
        epoch: u64,
        assets: Vec<String>,
        accounts: &[(u64, Vec<u64>)],
        secret: &EpochSecret,
        config: TreeConfig,
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
        let leaves = in_parallel(&placed, |part| {
            part.iter()
                .map(|(position, (customer, balances))| {
                    let blinds: Vec<Scalar> = (0..width)
                        .map(|k| leaf_blinding(secret, epoch, *customer, k))
                        .collect();
                    let points: Vec<RistrettoPoint> = balances
                        .iter()
                        .zip(&blinds)
                        .map(|(v, r)| gens.commit(*v, r))
                        .collect();
                    let compressed: Vec<CompressedRistretto> =
                        points.iter().map(RistrettoPoint::compress).collect();
                    let salt = secret.salt(epoch, *customer);
                    let hash = zk_leaf_hash(epoch, *customer, &salt, &compressed);
                    (
                        *position,
                        hash,
                        balances.clone(),
                        blinds,
                        points,
                        compressed,
                    )
                })
                .collect::<Vec<_>>()
        });
        let mut level = Level::default();
        let mut points = Vec::new();
        for (position, hash, values, blinds, pts, compressed) in leaves.into_iter().flatten() {
            level.nodes.push((position, hash));
            level.values.extend(values);
            level.blindings.extend(blinds);
            level.commitments.extend(compressed);
            points.extend(pts);
        }
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
            gens,
        };
        for l in 0..height {
            let (above, above_points) = tree.parents(&level, &points, l)?;
            tree.push(level);
            level = above;
            points = above_points;
        }
        tree.push(level);
        Ok(tree)
    }

    fn push(&mut self, level: Level) {
        self.nodes.push(level.nodes);
        self.values.push(level.values);
        self.blindings.push(level.blindings);
        self.commitments.push(level.commitments);
    }

    /// The level above `below` (whose points are `points`), every missing sibling a
    /// padding node.
    fn parents(
        &self,
        below: &Level,
        points: &[RistrettoPoint],
        level: u8,
    ) -> Result<(Level, Vec<RistrettoPoint>), PorError> {
        let width = self.assets.len();
        let ranges = crate::tree::pair_aligned(&below.nodes, available_threads());
        let built = in_parallel(&ranges, |part| {
            part.iter()
                .map(|&(start, end)| self.parents_of(below, points, level, start, end, width))
                .collect::<Vec<_>>()
        });
        let mut above = Level::default();
        let mut above_points = Vec::with_capacity(points.len() / 2 + width);
        for part in built.into_iter().flatten() {
            let (l, p) = part?;
            above.nodes.extend(l.nodes);
            above.values.extend(l.values);
            above.blindings.extend(l.blindings);
            above.commitments.extend(l.commitments);
            above_points.extend(p);
        }
        Ok((above, above_points))
    }

    fn parents_of(
        &self,
        below: &Level,
        points: &[RistrettoPoint],
        level: u8,
        start: usize,
        end: usize,
        width: usize,
    ) -> Result<(Level, Vec<RistrettoPoint>), PorError> {
        let mut out = Level::default();
        let mut out_points = Vec::new();
        let mut k = start;
        while k < end {
            let Some(&(index, hash)) = below.nodes.get(k) else {
                break;
            };
            let own = below.node(k, width, points);
            let sibling_index = index ^ 1;
            let next = below
                .nodes
                .get(k + 1)
                .filter(|(i, _)| *i == sibling_index && k + 1 < end);
            let (sibling, step) = match next {
                Some(&(_, h)) => (below.node(k + 1, width, points).with_hash(h), 2),
                None => (self.pad(level, sibling_index), 1),
            };
            let own = own.with_hash(hash);
            let (left, right) = if index & 1 == 0 {
                (&own, &sibling)
            } else {
                (&sibling, &own)
            };
            out.nodes.push((
                index >> 1,
                zk_node_hash(
                    &left.hash,
                    &left.commitments,
                    &right.hash,
                    &right.commitments,
                ),
            ));
            for a in 0..width {
                let (lv, rv) = (
                    left.values.get(a).copied().unwrap_or(0),
                    right.values.get(a).copied().unwrap_or(0),
                );
                let sum = lv.checked_add(rv).ok_or_else(|| PorError::Overflow {
                    asset: self.assets.get(a).cloned().unwrap_or_default(),
                })?;
                let (lb, rb) = (
                    left.blindings.get(a).copied().unwrap_or(Scalar::ZERO),
                    right.blindings.get(a).copied().unwrap_or(Scalar::ZERO),
                );
                let point = left.points.get(a).copied().unwrap_or_default()
                    + right.points.get(a).copied().unwrap_or_default();
                out.values.push(sum);
                out.blindings.push(lb + rb);
                out.commitments.push(point.compress());
                out_points.push(point);
            }
            k += step;
        }
        Ok((out, out_points))
    }

    /// A padding node: zero under a blinding of its own, a hash drawn from the secret.
    fn pad(&self, level: u8, index: u64) -> Node {
        let width = self.assets.len();
        let n = (u64::from(level) << 40) | index;
        let blindings: Vec<Scalar> = (0..width)
            .map(|a| {
                blinding(
                    &self.secret,
                    b"pad-blinding",
                    self.epoch,
                    n.wrapping_mul(64)
                        .wrapping_add(u64::try_from(a).unwrap_or(0)),
                )
            })
            .collect();
        let points: Vec<RistrettoPoint> =
            blindings.iter().map(|b| self.gens.commit(0, b)).collect();
        let commitments = points.iter().map(RistrettoPoint::compress).collect();
        let mut h = Sha256::new();
        h.update(PAD_TAG);
        h.update(self.secret.draw_labelled(b"pad", b"", self.epoch, n));
        Node {
            hash: h.finalize().into(),
            values: vec![0; width],
            blindings,
            points,
            commitments,
        }
    }

    /// The node at `index` of `level`, kept or padding (without its points).
    fn node_at(
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
                .map(|k| (k, nodes))
        });
        match kept {
            Some((k, nodes)) => {
                let hash = nodes.get(k).map(|(_, h)| *h).unwrap_or_default();
                let range = k * width..(k + 1) * width;
                (
                    hash,
                    flat(self.values.get(l), range.clone()),
                    flat(self.blindings.get(l), range.clone()),
                    flat(self.commitments.get(l), range),
                )
            }
            None => {
                let pad = self.pad(level, index);
                (pad.hash, pad.values, pad.blindings, pad.commitments)
            }
        }
    }

    /// What is published.
    pub fn root(&self) -> ZkRoot {
        let (hash, _, _, commitments) = self.node_at(self.height, 0);
        ZkRoot {
            epoch: self.epoch,
            assets: self.assets.clone(),
            height: self.height,
            hash,
            commitments: commitments.iter().map(|c| c.to_bytes()).collect(),
        }
    }

    /// The root's totals and blindings, for an auditor (never published).
    pub fn open_totals(&self) -> (Vec<u64>, Vec<[u8; 32]>) {
        let (_, values, blindings, _) = self.node_at(self.height, 0);
        (values, blindings.iter().map(Scalar::to_bytes).collect())
    }

    /// Customer `customer`'s proof: their leaf opened, the path's siblings, and per
    /// asset a range proof over the leaf and every sibling.
    pub fn proof(&self, customer: u64) -> Result<ZkProof, PorError> {
        let index = *self
            .positions
            .get(&customer)
            .ok_or(PorError::UnknownCustomer(customer))?;
        let width = self.assets.len();
        let (_, balances, leaf_blindings, _) = self.node_at(0, index);
        let mut path = Vec::with_capacity(usize::from(self.height));
        let mut sibling_values: Vec<Vec<u64>> = vec![Vec::new(); width];
        let mut sibling_blindings: Vec<Vec<Scalar>> = vec![Vec::new(); width];
        for level in 0..self.height {
            let (hash, values, blindings, commitments) = self.node_at(level, (index >> level) ^ 1);
            for a in 0..width {
                if let (Some(vs), Some(bs)) =
                    (sibling_values.get_mut(a), sibling_blindings.get_mut(a))
                {
                    vs.push(values.get(a).copied().unwrap_or(0));
                    bs.push(blindings.get(a).copied().unwrap_or(Scalar::ZERO));
                }
            }
            path.push((hash, commitments.iter().map(|c| c.to_bytes()).collect()));
        }
        let mut ranges = Vec::with_capacity(width);
        for a in 0..width {
            let mut values = vec![balances.get(a).copied().unwrap_or(0)];
            values.extend(sibling_values.get(a).cloned().unwrap_or_default());
            let mut blinds = vec![leaf_blindings.get(a).copied().unwrap_or(Scalar::ZERO)];
            blinds.extend(sibling_blindings.get(a).cloned().unwrap_or_default());
            let real = values.len();
            let m = real.next_power_of_two();
            for extra in real..m {
                values.push(0);
                blinds.push(blinding(
                    &self.secret,
                    b"range-pad",
                    self.epoch,
                    customer
                        .wrapping_mul(1 << 12)
                        .wrapping_add(u64::try_from(a * 64 + extra).unwrap_or(0)),
                ));
            }
            let mut transcript = range_transcript(self.epoch, customer, a);
            let (proof, commitments) = RangeProof::prove_multiple(
                &self.gens.bulletproofs,
                &self.gens.pedersen,
                &mut transcript,
                &values,
                &blinds,
                RANGE_BITS,
            )
            .map_err(|e| PorError::Invalid {
                field: "range proof",
                why: e.to_string(),
            })?;
            let extras = commitments
                .get(real..)
                .unwrap_or_default()
                .iter()
                .map(|c| c.to_bytes())
                .collect();
            ranges.push((extras, proof.to_bytes()));
        }
        Ok(ZkProof {
            epoch: self.epoch,
            assets: self.assets.clone(),
            height: self.height,
            customer,
            salt: self.secret.salt(self.epoch, customer),
            balances,
            blindings: leaf_blindings.iter().map(Scalar::to_bytes).collect(),
            index,
            path,
            ranges,
        })
    }
}

/// Checks a zero-knowledge proof against the published root: the leaf's commitments
/// rebuilt from the opened balances and blindings, the path hashed and summed up to the
/// root's hash and commitments, and every range proof.
pub fn verify_zk(proof: &ZkProof, root: &ZkRoot) -> Result<Vec<(String, u64)>, PorError> {
    let invalid = |field: &'static str, why: &str| PorError::Invalid {
        field,
        why: why.to_owned(),
    };
    check_assets(&proof.assets)?;
    let width = proof.assets.len();
    if proof.epoch != root.epoch || proof.assets != root.assets || proof.height != root.height {
        return Err(invalid(
            "epoch",
            "the proof is of another epoch or tree than the root",
        ));
    }
    if proof.balances.len() != width
        || proof.blindings.len() != width
        || proof.ranges.len() != width
    {
        return Err(invalid("balances", "not one per asset"));
    }
    if proof.path.len() != usize::from(proof.height) || proof.index >> proof.height != 0 {
        return Err(invalid("path", "does not fit the tree's height"));
    }
    let gens = Gens::get();
    let scalar = |bytes: &[u8; 32]| {
        Option::<Scalar>::from(Scalar::from_canonical_bytes(*bytes))
            .ok_or_else(|| invalid("blindings", "not a canonical scalar"))
    };
    let point = |bytes: &[u8; 32]| {
        CompressedRistretto(*bytes)
            .decompress()
            .ok_or_else(|| invalid("path", "a commitment is not a point"))
    };
    let mut points = Vec::with_capacity(width);
    for (v, r) in proof.balances.iter().zip(&proof.blindings) {
        points.push(gens.commit(*v, &scalar(r)?));
    }
    let leaf_commitments: Vec<CompressedRistretto> =
        points.iter().map(RistrettoPoint::compress).collect();
    let mut hash = zk_leaf_hash(proof.epoch, proof.customer, &proof.salt, &leaf_commitments);
    let mut commitments = leaf_commitments.clone();
    for (level, (sibling_hash, sibling)) in proof.path.iter().enumerate() {
        if sibling.len() != width {
            return Err(invalid("path", "a level without one commitment per asset"));
        }
        let sibling_c: Vec<CompressedRistretto> =
            sibling.iter().map(|b| CompressedRistretto(*b)).collect();
        hash = if (proof.index >> level) & 1 == 1 {
            zk_node_hash(sibling_hash, &sibling_c, &hash, &commitments)
        } else {
            zk_node_hash(&hash, &commitments, sibling_hash, &sibling_c)
        };
        for (p, s) in points.iter_mut().zip(sibling) {
            *p += point(s)?;
        }
        commitments = points.iter().map(RistrettoPoint::compress).collect();
    }
    let root_commitments: Vec<[u8; 32]> = commitments.iter().map(|c| c.to_bytes()).collect();
    if hash != root.hash || root_commitments != root.commitments {
        return Err(PorError::WrongRoot {
            got: hex::encode(hash),
            published: hex::encode(root.hash),
        });
    }
    for (a, (extras, bytes)) in proof.ranges.iter().enumerate() {
        let mut all = vec![leaf_commitments.get(a).copied().unwrap_or_default()];
        all.extend(
            proof
                .path
                .iter()
                .map(|(_, c)| CompressedRistretto(c.get(a).copied().unwrap_or_default())),
        );
        all.extend(extras.iter().map(|e| CompressedRistretto(*e)));
        if !all.len().is_power_of_two() || all.len() > 64 {
            return Err(invalid("range proof", "covers the wrong number of values"));
        }
        let range =
            RangeProof::from_bytes(bytes).map_err(|e| invalid("range proof", &e.to_string()))?;
        let mut transcript = range_transcript(proof.epoch, proof.customer, a);
        range
            .verify_multiple(
                &gens.bulletproofs,
                &gens.pedersen,
                &mut transcript,
                &all,
                RANGE_BITS,
            )
            .map_err(|e| PorError::Invalid {
                field: "range proof",
                why: format!("{}: {e}", proof.assets.get(a).cloned().unwrap_or_default()),
            })?;
    }
    Ok(proof
        .assets
        .iter()
        .cloned()
        .zip(proof.balances.iter().copied())
        .collect())
}

/// Checks the platform's opening of the root to an auditor: the totals and blindings
/// commit to exactly the published root commitments.
pub fn verify_totals(root: &ZkRoot, totals: &[u64], blindings: &[[u8; 32]]) -> bool {
    let gens = Gens::get();
    totals.len() == root.commitments.len()
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

/// The `range` of a level's flat values, or nothing.
fn flat<T: Clone>(level: Option<&Vec<T>>, range: std::ops::Range<usize>) -> Vec<T> {
    level
        .and_then(|v| v.get(range))
        .map(<[T]>::to_vec)
        .unwrap_or_default()
}

fn range_transcript(epoch: u64, customer: u64, asset: usize) -> Transcript {
    let mut t = Transcript::new(b"ztx-por/v2z/range");
    t.append_u64(b"epoch", epoch);
    t.append_u64(b"customer", customer);
    t.append_u64(b"asset", u64::try_from(asset).unwrap_or(u64::MAX));
    t
}

fn leaf_blinding(secret: &EpochSecret, epoch: u64, customer: u64, asset: usize) -> Scalar {
    blinding(
        secret,
        b"leaf-blinding",
        epoch,
        customer
            .wrapping_mul(64)
            .wrapping_add(u64::try_from(asset).unwrap_or(0)),
    )
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

fn zk_node_hash(
    left: &Hash,
    left_c: &[CompressedRistretto],
    right: &Hash,
    right_c: &[CompressedRistretto],
) -> Hash {
    let mut h = Sha256::new();
    h.update(NODE_TAG);
    h.update(left);
    for c in left_c {
        h.update(c.as_bytes());
    }
    h.update(right);
    for c in right_c {
        h.update(c.as_bytes());
    }
    h.finalize().into()
}

/// One level being built.
#[derive(Default)]
struct Level {
    nodes: Vec<(u64, Hash)>,
    values: Vec<u64>,
    blindings: Vec<Scalar>,
    commitments: Vec<CompressedRistretto>,
}

/// A node with everything a parent needs of it.
struct Node {
    hash: Hash,
    values: Vec<u64>,
    blindings: Vec<Scalar>,
    points: Vec<RistrettoPoint>,
    commitments: Vec<CompressedRistretto>,
}

impl Node {
    fn with_hash(mut self, hash: Hash) -> Node {
        self.hash = hash;
        self
    }
}

impl Level {
    fn node(&self, k: usize, width: usize, points: &[RistrettoPoint]) -> Node {
        let range = k * width..(k + 1) * width;
        Node {
            hash: [0; 32],
            values: self
                .values
                .get(range.clone())
                .map(<[u64]>::to_vec)
                .unwrap_or_default(),
            blindings: self
                .blindings
                .get(range.clone())
                .map(<[Scalar]>::to_vec)
                .unwrap_or_default(),
            points: points
                .get(range.clone())
                .map(<[RistrettoPoint]>::to_vec)
                .unwrap_or_default(),
            commitments: self
                .commitments
                .get(range)
                .map(<[CompressedRistretto]>::to_vec)
                .unwrap_or_default(),
        }
    }
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
}
