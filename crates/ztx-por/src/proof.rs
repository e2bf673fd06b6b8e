//! A customer's inclusion proof: its encoding, and the check anyone can run against the
//! published root.
//!
//! # Encoding, version 1
//!
//! Big-endian integers, in this order: version (`u8`, 1); epoch (`u64`); height (`u8`,
//! at most 32); the number of assets (`u8`, 1 to 64) and each asset's code (`u8` length,
//! 1 to 16 capital letters and digits); customer (`u64`); salt (32 bytes); a balance per
//! asset (`u128`); the leaf's index (`u64`, below `2^height`); then per level, from the
//! leaf up, the sibling's hash (32 bytes) and its sum per asset (`u128`). Nothing may
//! follow. Decoding refuses anything else, so a proof has one encoding.
//!
//! Room for what comes next: a later version (proof of assets, commitments instead of
//! sums) takes a new version byte; a version-1 proof keeps its bytes and its meaning.

use crate::tree::{check_assets, leaf_hash, node_hash};
use crate::{Hash, MAX_ASSETS, MAX_HEIGHT, PorError, VERSION};

/// One level of a proof: the sibling of the path's node there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathStep {
    pub hash: Hash,
    pub sums: Vec<u128>,
}

/// What a customer keeps to check that their balances are counted in the epoch's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    pub version: u8,
    pub epoch: u64,
    pub assets: Vec<String>,
    pub height: u8,
    pub customer: u64,
    pub salt: Hash,
    pub balances: Vec<u128>,
    pub index: u64,
    pub path: Vec<PathStep>,
}

/// What a valid proof proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub epoch: u64,
    pub customer: u64,
    /// (asset, balance) in the epoch's asset order.
    pub balances: Vec<(String, u128)>,
    /// The root's totals per asset.
    pub totals: Vec<u128>,
}

/// Checks `proof` against the published root hash: the leaf rebuilt from the customer's
/// number, salt and balances, hashed up the path with each sibling's sums, sums added
/// without overflow, must give exactly `root`.
pub fn verify(proof: &InclusionProof, root: &Hash) -> Result<Verified, PorError> {
    proof.check_shape()?;
    let mut hash = leaf_hash(proof.epoch, proof.customer, &proof.salt, &proof.balances);
    let mut sums = proof.balances.clone();
    for (level, step) in proof.path.iter().enumerate() {
        let on_right = (proof.index >> level) & 1 == 1;
        hash = if on_right {
            node_hash(&step.hash, &step.sums, &hash, &sums)
        } else {
            node_hash(&hash, &sums, &step.hash, &step.sums)
        };
        for (k, (sum, add)) in sums.iter_mut().zip(&step.sums).enumerate() {
            *sum = sum.checked_add(*add).ok_or_else(|| PorError::Overflow {
                asset: proof.assets.get(k).cloned().unwrap_or_default(),
            })?;
        }
    }
    if hash != *root {
        return Err(PorError::wrong_root(&hash, root));
    }
    Ok(Verified {
        epoch: proof.epoch,
        customer: proof.customer,
        balances: named(&proof.assets, &proof.balances),
        totals: sums,
    })
}

impl InclusionProof {
    fn check_shape(&self) -> Result<(), PorError> {
        if self.version != VERSION {
            return Err(PorError::Version(self.version));
        }
        let steps: Vec<usize> = self.path.iter().map(|s| s.sums.len()).collect();
        check_common(
            &self.assets,
            self.height,
            self.index,
            self.balances.len(),
            &steps,
            self.height,
        )
    }

    /// The canonical bytes (see the module).
    pub fn encode(&self) -> Result<Vec<u8>, PorError> {
        self.check_shape()?;
        let width = self.assets.len();
        let mut out = Vec::with_capacity(64 + (1 + self.path.len()) * (32 + 16 * width));
        write_header(
            &mut out,
            self.version,
            self.epoch,
            self.height,
            &self.assets,
        )?;
        out.extend_from_slice(&self.customer.to_be_bytes());
        out.extend_from_slice(&self.salt);
        for b in &self.balances {
            out.extend_from_slice(&b.to_be_bytes());
        }
        out.extend_from_slice(&self.index.to_be_bytes());
        for step in &self.path {
            out.extend_from_slice(&step.hash);
            for s in &step.sums {
                out.extend_from_slice(&s.to_be_bytes());
            }
        }
        Ok(out)
    }

    /// Reads the canonical bytes, refusing anything else by name.
    pub fn decode(bytes: &[u8]) -> Result<InclusionProof, PorError> {
        let mut r = Reader(bytes);
        let (epoch, height, assets) = r.header(VERSION)?;
        let version = VERSION;
        let width = assets.len();
        let customer = r.u64("customer")?;
        let salt = r.hash("salt")?;
        let balances = (0..width)
            .map(|_| r.u128("balances"))
            .collect::<Result<Vec<_>, _>>()?;
        let index = r.u64("index")?;
        let mut path = Vec::with_capacity(usize::from(height));
        for _ in 0..height {
            let hash = r.hash("path")?;
            let sums = (0..width)
                .map(|_| r.u128("path"))
                .collect::<Result<Vec<_>, _>>()?;
            path.push(PathStep { hash, sums });
        }
        if !r.0.is_empty() {
            return Err(PorError::Trailing(r.0.len()));
        }
        let proof = InclusionProof {
            version,
            epoch,
            assets,
            height,
            customer,
            salt,
            balances,
            index,
            path,
        };
        proof.check_shape()?;
        Ok(proof)
    }
}

/// The header both proof versions begin with: version, epoch, height, assets.
/// A proof's balances by asset name, in the epoch's asset order.
pub(crate) fn named<T: Copy>(assets: &[String], balances: &[T]) -> Vec<(String, T)> {
    assets
        .iter()
        .cloned()
        .zip(balances.iter().copied())
        .collect()
}

pub(crate) fn write_header(
    out: &mut Vec<u8>,
    version: u8,
    epoch: u64,
    height: u8,
    assets: &[String],
) -> Result<(), PorError> {
    out.push(version);
    out.extend_from_slice(&epoch.to_be_bytes());
    out.push(height);
    out.push(u8::try_from(assets.len()).map_err(|_| PorError::AssetCount(assets.len()))?);
    for asset in assets {
        // Checked by the caller's shape check: 1 to 16 bytes.
        out.push(u8::try_from(asset.len()).unwrap_or(0));
        out.extend_from_slice(asset.as_bytes());
    }
    Ok(())
}

/// The shape both proof versions share: assets, a height the format allows, an index
/// inside the tree, one balance per asset, one step per level, each step holding
/// `step_width(level)` values where one per asset is due.
pub(crate) fn check_common(
    assets: &[String],
    height: u8,
    index: u64,
    balances: usize,
    steps: &[usize],
    levels: u8,
) -> Result<(), PorError> {
    check_assets(assets)?;
    let invalid = |field, why: String| PorError::Invalid { field, why };
    if height > MAX_HEIGHT {
        return Err(invalid("height", format!("{height} is above {MAX_HEIGHT}")));
    }
    if index >> height != 0 {
        return Err(invalid(
            "index",
            format!("{index} is outside a tree of height {height}"),
        ));
    }
    let width = assets.len();
    if balances != width {
        return Err(invalid(
            "balances",
            format!("{balances} for {width} assets"),
        ));
    }
    if steps.len() != usize::from(levels) {
        return Err(invalid(
            "path",
            format!(
                "{} levels where a tree of height {height} needs {levels}",
                steps.len()
            ),
        ));
    }
    if let Some(level) = steps.iter().position(|n| *n != width) {
        return Err(invalid(
            "path",
            format!("level {level} has the wrong number of values"),
        ));
    }
    Ok(())
}

pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], PorError> {
        if self.0.len() < n {
            return Err(PorError::Truncated(field));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], PorError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, PorError> {
        Ok(u8::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, PorError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, PorError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, PorError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u128(&mut self, field: &'static str) -> Result<u128, PorError> {
        Ok(u128::from_be_bytes(self.array(field)?))
    }

    /// The asset count and codes, checked as [`check_assets`] checks them.
    pub(crate) fn assets(&mut self) -> Result<Vec<String>, PorError> {
        let width = usize::from(self.u8("asset count")?);
        if width == 0 || width > MAX_ASSETS {
            return Err(PorError::AssetCount(width));
        }
        let mut assets = Vec::with_capacity(width);
        for _ in 0..width {
            let len = usize::from(self.u8("asset")?);
            let code = self.take(len, "asset")?;
            assets.push(
                String::from_utf8(code.to_vec()).map_err(|_| PorError::Invalid {
                    field: "asset",
                    why: "not ASCII".into(),
                })?,
            );
        }
        check_assets(&assets)?;
        Ok(assets)
    }

    /// The header of a proof of format `version`: its epoch, height and assets.
    pub(crate) fn header(&mut self, version: u8) -> Result<(u64, u8, Vec<String>), PorError> {
        let got = self.u8("version")?;
        if got != version {
            return Err(PorError::Version(got));
        }
        let epoch = self.u64("epoch")?;
        let height = self.u8("height")?;
        if height > MAX_HEIGHT {
            return Err(PorError::Invalid {
                field: "height",
                why: format!("{height} is above {MAX_HEIGHT}"),
            });
        }
        Ok((epoch, height, self.assets()?))
    }

    pub(crate) fn hash(&mut self, field: &'static str) -> Result<Hash, PorError> {
        self.array(field)
    }
}
