//! The cap of a zero-knowledge epoch: its top levels, range-proven once for every
//! customer. A customer's proof spends most of its time on range proofs, one 64-bit
//! value per sibling per asset; the siblings near the root are the same nodes for
//! every customer, so an epoch may publish them once with their range proofs, and each
//! customer's proof (version 3 or 4) then range-proves only the levels below.
//! Soundness is DAPOL+'s: every node beside a customer's path is shown in range — below
//! the cap by their own proof, within it by the cap each verifier checks against the
//! published root.
//!
//! A cap of `k` levels holds every node of levels `height - k` to `height - 1` (hash and
//! commitments each): the `2^k` of the lowest, then each level above, in index order.
//! Every node, not only the lowest level's, because the tree is sparse: an empty
//! subtree is one padding node wherever it starts, so a cap node need not be its cap
//! children's parent, and only the nodes on a customer's way up must be. The verifier
//! checks the published root over the top's two children, and the range proofs over
//! every cap node's commitments in the order above (each node's assets in asset
//! order), cut into runs of at most 64 as in a proof; the transcript binds the epoch,
//! the cap's levels, every node's hash and the run. A capped proof's path then
//! continues through the cap: at each cap level the node it reached must be the cap's
//! node there, and its parent is hashed with the cap's sibling, up to the top.
//!
//! # Encoding
//!
//! Big-endian: `0xC3`; epoch (`u64`); height (`u8`); the assets as in a proof; levels
//! (`u8`, 1 to 8 and at most the height); per node (`2^(levels+1) - 2` of them, in the
//! order above), its hash and its commitment per asset (32 bytes each); per run, the
//! range proof's length (`u16`) and bytes. Nothing may follow.

use curve25519_dalek::ristretto::CompressedRistretto;
use merlin::Transcript;

use crate::proof::{Reader, write_header};
use crate::tree::check_assets;
use crate::zk::{
    Gens, MAX_CAP, Node, RUN, ZkStep, check_ranges, read_ranges, read_steps, verified, verify_runs,
    walk, wipe, write_ranges, write_steps, zk_root_hash,
};
use crate::{Hash, PorError, ZkProof, ZkTree, ZkVerified};

/// The leading byte of an encoded cap (not a proof's version: a cap is no proof).
pub const CAP_VERSION: u8 = 0xC3;

/// An epoch's cap (see the module).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkCap {
    pub epoch: u64,
    pub assets: Vec<String>,
    pub height: u8,
    pub levels: u8,
    /// Every node of the cap's levels, the lowest level first, each by index.
    pub nodes: Vec<ZkStep>,
    pub ranges: Vec<Vec<u8>>,
}

/// A cap checked against its published root: what capped proofs are verified under.
#[derive(Debug, Clone)]
pub struct CheckedCap {
    epoch: u64,
    assets: Vec<String>,
    height: u8,
    levels: u8,
    /// As in [`ZkCap::nodes`].
    nodes: Vec<Node>,
    top: Node,
}

fn invalid(field: &'static str, why: impl Into<String>) -> PorError {
    PorError::Invalid {
        field,
        why: why.into(),
    }
}

/// Binds the epoch, the levels, every node's hash (so that no byte of a cap can change
/// while its range proofs hold) and the run.
fn cap_transcript(epoch: u64, levels: u8, nodes: &[ZkStep], run: usize) -> Transcript {
    let mut t = Transcript::new(b"ztx-por/v3z/cap");
    t.append_u64(b"epoch", epoch);
    t.append_u64(b"levels", u64::from(levels));
    for node in nodes {
        t.append_message(b"node", &node.hash);
    }
    t.append_u64(b"run", u64::try_from(run).unwrap_or(u64::MAX));
    t
}

/// How many nodes a cap of `levels` levels holds: 2 + 4 + … + 2^levels.
fn node_count(levels: u8) -> usize {
    (1usize << (levels + 1)) - 2
}

/// How many range proofs cover a cap of `levels` levels of `width` assets.
fn runs(levels: u8, width: usize) -> usize {
    node_count(levels).saturating_mul(width).div_ceil(RUN)
}

fn check_levels(levels: u8, height: u8) -> Result<(), PorError> {
    if levels == 0 || levels > MAX_CAP.min(height) {
        return Err(invalid(
            "cap",
            format!(
                "{levels} levels in a tree of height {height} (1 to {} allowed)",
                MAX_CAP.min(height)
            ),
        ));
    }
    Ok(())
}

impl ZkTree {
    /// The epoch's cap of `levels` levels, its range proofs made on every core.
    pub fn make_cap(&self, levels: u8) -> Result<ZkCap, PorError> {
        let height = self.height();
        check_levels(levels, height)?;
        let lowest = height - levels;
        let mut nodes = Vec::with_capacity(node_count(levels));
        let mut values = Vec::new();
        let mut blinds = Vec::new();
        for level in lowest..height {
            for index in 0..1u64 << (height - level) {
                let (hash, v, b, commitments) = self.node_at(level, index);
                values.extend(v);
                blinds.extend(b);
                nodes.push(ZkStep {
                    hash,
                    commitments: commitments.iter().map(|c| c.to_bytes()).collect(),
                });
            }
        }
        let epoch = self.epoch();
        let ranges = self.prove_runs(&values, &blinds, RUN, &|run| {
            cap_transcript(epoch, levels, &nodes, run)
        });
        wipe(&mut values, &mut blinds);
        Ok(ZkCap {
            epoch,
            assets: self.assets().to_vec(),
            height,
            levels,
            nodes,
            ranges: ranges?,
        })
    }
}

impl ZkCap {
    fn check_shape(&self) -> Result<(), PorError> {
        check_assets(&self.assets)?;
        check_levels(self.levels, self.height)?;
        let width = self.assets.len();
        if self.nodes.len() != node_count(self.levels) {
            return Err(invalid(
                "cap",
                format!(
                    "{} nodes where {} levels hold {}",
                    self.nodes.len(),
                    self.levels,
                    node_count(self.levels)
                ),
            ));
        }
        if let Some(n) = self.nodes.iter().position(|n| n.commitments.len() != width) {
            return Err(invalid(
                "cap",
                format!("node {n} has the wrong number of values"),
            ));
        }
        check_ranges(&self.ranges, runs(self.levels, width))
    }

    /// Checks the cap against the published `root`: the top's two children hash to it,
    /// every cap node is in range, and no node's hash differs from the one proven with.
    pub fn verify(&self, root: &Hash) -> Result<CheckedCap, PorError> {
        self.check_shape()?;
        let nodes: Vec<Node> = self
            .nodes
            .iter()
            .map(|n| Node {
                hash: n.hash,
                commitments: n
                    .commitments
                    .iter()
                    .map(|c| CompressedRistretto(*c))
                    .collect(),
            })
            .collect();
        let top = match nodes.as_slice() {
            [.., left, right] => Node::parent(left, right),
            _ => None,
        }
        .ok_or_else(|| invalid("cap", "a commitment of the top's children is not a point"))?;
        let hash = zk_root_hash(
            self.epoch,
            self.height,
            &self.assets,
            &top.hash,
            &top.commitments,
        );
        if hash != *root {
            return Err(PorError::wrong_root(&hash, root));
        }
        let ranged: Vec<CompressedRistretto> = nodes
            .iter()
            .flat_map(|n| n.commitments.iter().copied())
            .collect();
        verify_runs(&ranged, &self.ranges, RUN, &|run| {
            cap_transcript(self.epoch, self.levels, &self.nodes, run)
        })?;
        Ok(CheckedCap {
            epoch: self.epoch,
            assets: self.assets.clone(),
            height: self.height,
            levels: self.levels,
            nodes,
            top,
        })
    }

    /// The canonical bytes (see the module).
    pub fn encode(&self) -> Result<Vec<u8>, PorError> {
        self.check_shape()?;
        let mut out = Vec::new();
        write_header(&mut out, CAP_VERSION, self.epoch, self.height, &self.assets)?;
        out.push(self.levels);
        write_steps(&mut out, &self.nodes);
        write_ranges(&mut out, &self.ranges);
        Ok(out)
    }

    /// Reads the canonical bytes, refusing anything else by name.
    pub fn decode(bytes: &[u8]) -> Result<ZkCap, PorError> {
        let mut r = Reader(bytes);
        let (epoch, height, assets) = r.header(CAP_VERSION)?;
        let levels = r.u8("cap")?;
        check_levels(levels, height)?;
        let width = assets.len();
        let nodes = read_steps(&mut r, node_count(levels), width, "cap")?;
        let ranges = read_ranges(&mut r, runs(levels, width))?;
        if !r.0.is_empty() {
            return Err(PorError::Trailing(r.0.len()));
        }
        let cap = ZkCap {
            epoch,
            assets,
            height,
            levels,
            nodes,
            ranges,
        };
        cap.check_shape()?;
        Ok(cap)
    }
}

impl CheckedCap {
    /// Checks a capped proof (version 3 or 4) under this cap: the proof's path leads to the
    /// cap's node above the customer's leaf, and its range proofs hold.
    pub fn verify(&self, proof: &ZkProof) -> Result<ZkVerified, PorError> {
        proof.check_shape()?;
        if proof.cap != self.levels
            || proof.epoch != self.epoch
            || proof.height != self.height
            || proof.assets != self.assets
        {
            return Err(invalid(
                "cap",
                format!(
                    "the proof is of epoch {} with a cap of {} levels, this cap of epoch {} \
                     with {}",
                    proof.epoch, proof.cap, self.epoch, self.levels
                ),
            ));
        }
        let (mut node, siblings) = walk(proof, Gens::get())?;
        // Up through the cap: each node reached must be the cap's, hashed with the cap's
        // sibling, until the top.
        let leaves = |levels| {
            invalid(
                "path",
                format!("it leaves the epoch's cap {levels} levels below the top"),
            )
        };
        let mut index = proof.index >> (self.height - self.levels);
        let mut offset = 0usize;
        for level in 0..self.levels {
            let width = 1usize << (self.levels - level);
            let at = usize::try_from(index).unwrap_or(usize::MAX);
            let (Some(held), Some(sibling)) = (
                self.nodes.get(offset.saturating_add(at)),
                self.nodes.get(offset.saturating_add(at ^ 1)),
            ) else {
                return Err(leaves(self.levels - level));
            };
            if *held != node {
                return Err(leaves(self.levels - level));
            }
            node = if at & 1 == 1 {
                Node::parent(sibling, &node)
            } else {
                Node::parent(&node, sibling)
            }
            .ok_or_else(|| invalid("cap", "a commitment is not a point"))?;
            index >>= 1;
            offset += width;
        }
        if node != self.top {
            return Err(leaves(0));
        }
        verified(proof, &siblings)
    }
}

#[cfg(test)]
mod tests {
    use curve25519_dalek::scalar::Scalar;

    use super::*;
    use crate::{EpochSecret, TreeConfig};

    /// The attack the cap's range proof exists for: the platform lowers its liabilities
    /// by making a cap node commit to -1,000, and publishes the root over that cap. The
    /// cap hashes to that root, but no range proof can show the value in range.
    #[allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "a test")]
    #[test]
    fn a_negative_value_hidden_in_the_cap_fails_its_range_proof() {
        let accounts: Vec<(u64, Vec<u64>)> = (1..=6).map(|c| (c, vec![c * 10])).collect();
        let tree = ZkTree::build(
            1,
            vec!["BTC".into()],
            &accounts,
            &EpochSecret::from_bytes([3; 32]),
            TreeConfig { min_height: 3 },
            &|_, _| {},
        )
        .unwrap();
        let honest = tree.make_cap(2).unwrap();
        assert!(honest.verify(&tree.root().hash).is_ok());
        // The cap's values as `cap` proves them: level 1's four nodes, then level 2's two.
        let (mut values, mut blinds) = (Vec::new(), Vec::new());
        for (level, count) in [(1, 4), (2, 2)] {
            for index in 0..count {
                let (_, v, b, _) = tree.node_at(level, index);
                values.extend(v);
                blinds.extend(b);
            }
        }
        let lowered = values[0] + 1_000;
        // Node 0 of level 1 and its parent, node 0 of level 2 (the cap's fifth), both
        // lowered: a tree built to owe 1,000 less.
        let mut forged = honest.clone();
        for n in [0, 4] {
            let point = CompressedRistretto(forged.nodes[n].commitments[0])
                .decompress()
                .unwrap()
                - curve25519_dalek::constants::RISTRETTO_BASEPOINT_POINT * Scalar::from(lowered);
            forged.nodes[n].commitments[0] = point.compress().to_bytes();
        }
        // The root the platform would publish over the forged cap.
        let Err(PorError::WrongRoot { got, .. }) = forged.verify(&[0; 32]) else {
            panic!("the forged cap leads to some root");
        };
        let forged_root: Hash = hex::decode(got).unwrap().try_into().unwrap();
        // The closest the platform can come: the values as u64s, wrapped.
        values[0] = values[0].wrapping_sub(lowered);
        values[4] = values[4].wrapping_sub(lowered);
        forged.ranges = tree
            .prove_runs(&values, &blinds, RUN, &|run| {
                cap_transcript(1, 2, &forged.nodes, run)
            })
            .unwrap();
        assert!(matches!(
            forged.verify(&forged_root),
            Err(PorError::Invalid {
                field: "range proof",
                ..
            })
        ));
    }
}
