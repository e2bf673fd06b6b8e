//! What the platform keeps of an epoch to issue its proofs all epoch long: the balances
//! the tree was built from, the epoch's secret and the tree's shape. Its bytes are the
//! most sensitive the platform has (every customer's balances and the salts that hide
//! them): the caller seals them before they touch a disk.
//!
//! # Encoding, versions 1 to 3
//!
//! Version (`u8`: 1 for a plain tree, 2 for a zero-knowledge one, 3 for a
//! zero-knowledge one with a cap, the version of the proofs it issues); epoch (`u64`);
//! minimum height (`u8`); in version 3 only, the cap's levels (`u8`); secret (32 bytes); the
//! number of assets (`u8`) and each code (`u8` length, bytes); the number of accounts
//! (`u64`) and each account's customer (`u64`) and balances (`u128` per asset).
//! Nothing may follow.

use zeroize::Zeroizing;

use crate::proof::Reader;
use crate::tree::check_assets;
use crate::{EpochSecret, PorError, SumTree, Tree, TreeConfig, Variant, ZK_CAPPED_VERSION, ZkTree};

/// One epoch's inputs (see the module).
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub epoch: u64,
    pub assets: Vec<String>,
    /// (customer, balance per asset).
    pub accounts: Vec<(u64, Vec<u128>)>,
    pub secret: EpochSecret,
    pub config: TreeConfig,
    pub variant: Variant,
    /// The levels of a zero-knowledge tree's cap (see [`ZkTree::with_cap`]; 0: none).
    pub cap: u8,
}

impl Snapshot {
    /// The epoch's tree, of the snapshot's variant. `progress` hears each level built
    /// of the zero-knowledge tree (`done` of `levels`).
    pub fn build(&self, progress: &(dyn Fn(u8, u8) + Sync)) -> Result<Tree, PorError> {
        match self.variant {
            Variant::Plain => Ok(Tree::Plain(SumTree::build(
                self.epoch,
                self.assets.clone(),
                &self.accounts,
                &self.secret,
                self.config,
            )?)),
            Variant::ZeroKnowledge => {
                let accounts = self
                    .accounts
                    .iter()
                    .map(|(customer, balances)| {
                        let narrow = balances
                            .iter()
                            .zip(&self.assets)
                            .map(|(b, asset)| {
                                u64::try_from(*b).map_err(|_| PorError::BeyondRange {
                                    asset: asset.clone(),
                                })
                            })
                            .collect::<Result<Vec<u64>, _>>()?;
                        Ok((*customer, narrow))
                    })
                    .collect::<Result<Vec<_>, PorError>>()?;
                Ok(Tree::ZeroKnowledge(Box::new(
                    ZkTree::build(
                        self.epoch,
                        self.assets.clone(),
                        &accounts,
                        &self.secret,
                        self.config,
                        progress,
                    )?
                    .with_cap(self.cap)?,
                )))
            }
        }
    }

    /// The canonical bytes, wiped when dropped.
    pub fn encode(&self) -> Result<Zeroizing<Vec<u8>>, PorError> {
        check_assets(&self.assets)?;
        let width = self.assets.len();
        let mut out = Zeroizing::new(Vec::with_capacity(
            64 + self.accounts.len() * (8 + 16 * width),
        ));
        let capped = self.variant == Variant::ZeroKnowledge && self.cap > 0;
        out.push(if capped {
            ZK_CAPPED_VERSION
        } else {
            self.variant.version()
        });
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.push(self.config.min_height);
        if capped {
            out.push(self.cap);
        }
        out.extend_from_slice(self.secret.as_bytes());
        out.push(u8::try_from(width).map_err(|_| PorError::AssetCount(width))?);
        for asset in &self.assets {
            out.push(u8::try_from(asset.len()).unwrap_or(0));
            out.extend_from_slice(asset.as_bytes());
        }
        out.extend_from_slice(
            &u64::try_from(self.accounts.len())
                .unwrap_or(u64::MAX)
                .to_be_bytes(),
        );
        for (customer, balances) in &self.accounts {
            if balances.len() != width {
                return Err(PorError::BalanceCount {
                    customer: *customer,
                    got: balances.len(),
                    assets: width,
                });
            }
            out.extend_from_slice(&customer.to_be_bytes());
            for b in balances {
                out.extend_from_slice(&b.to_be_bytes());
            }
        }
        Ok(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<Snapshot, PorError> {
        let mut r = Reader(bytes);
        let version = r.u8("version")?;
        let variant = Variant::of_version(version)?;
        let epoch = r.u64("epoch")?;
        let min_height = r.u8("minimum height")?;
        let cap = if version == ZK_CAPPED_VERSION {
            match r.u8("cap")? {
                0 => {
                    return Err(PorError::Invalid {
                        field: "cap",
                        why: "a version 3 snapshot with no cap".into(),
                    });
                }
                levels => levels,
            }
        } else {
            0
        };
        let secret = EpochSecret::from_bytes(r.hash("secret")?);
        let assets = r.assets()?;
        let width = assets.len();
        let count = r.u64("account count")?;
        // Each account takes at least 8 + 16 bytes: a count the rest cannot hold is
        // refused before anything is allocated for it.
        let each = 8 + 16 * width;
        if count > u64::try_from(r.0.len() / each).unwrap_or(u64::MAX) {
            return Err(PorError::Truncated("accounts"));
        }
        let mut accounts = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
        for _ in 0..count {
            let customer = r.u64("accounts")?;
            let balances = (0..width)
                .map(|_| r.u128("accounts"))
                .collect::<Result<Vec<_>, _>>()?;
            accounts.push((customer, balances));
        }
        if !r.0.is_empty() {
            return Err(PorError::Trailing(r.0.len()));
        }
        Ok(Snapshot {
            epoch,
            assets,
            accounts,
            secret,
            config: TreeConfig { min_height },
            variant,
            cap,
        })
    }
}
