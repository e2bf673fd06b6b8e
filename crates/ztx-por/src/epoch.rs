//! One epoch whichever its variant: the tree built from a snapshot, the root it
//! publishes, the proofs it issues and their check. A proof's first byte (its format
//! version) names its variant, so one verifier reads both and old proofs keep their
//! meaning.

use crate::{
    Hash, InclusionProof, PorError, Root, SumTree, VERSION, ZK_CAPPED_VERSION, ZK_SPLIT_VERSION,
    ZK_VERSION, ZkCap, ZkProof, ZkRoot, ZkTree, verify, verify_zk,
};

/// How an epoch's tree shows its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Variant {
    /// Sums in the clear: the totals are published, and each proof shows the sums
    /// beside its path.
    Plain,
    /// Pedersen commitments and range proofs: no balance, total or count shows.
    #[default]
    ZeroKnowledge,
}

impl Variant {
    /// The format version of this variant's proofs (and of its snapshots).
    pub fn version(self) -> u8 {
        match self {
            Variant::Plain => VERSION,
            Variant::ZeroKnowledge => ZK_VERSION,
        }
    }

    /// The variant whose format version is `version` (a zero-knowledge one's proofs
    /// are version 2, or 3 or 4 under a cap).
    pub fn of_version(version: u8) -> Result<Variant, PorError> {
        match version {
            VERSION => Ok(Variant::Plain),
            ZK_VERSION | ZK_CAPPED_VERSION | ZK_SPLIT_VERSION => Ok(Variant::ZeroKnowledge),
            other => Err(PorError::Version(other)),
        }
    }

    /// Its name where a person reads it.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Plain => "plain",
            Variant::ZeroKnowledge => "zero-knowledge",
        }
    }
}

/// An epoch's tree.
#[derive(Debug)]
pub enum Tree {
    Plain(SumTree),
    ZeroKnowledge(Box<ZkTree>),
}

/// What an epoch publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    Plain(Root),
    ZeroKnowledge(ZkRoot),
}

/// A customer's proof of either variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    Plain(InclusionProof),
    ZeroKnowledge(ZkProof),
}

/// What a valid proof of either variant proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proven {
    pub variant: Variant,
    pub epoch: u64,
    pub customer: u64,
    /// (asset, balance) in the epoch's asset order.
    pub balances: Vec<(String, u128)>,
    /// The totals, where the variant publishes them.
    pub totals: Option<Vec<u128>>,
}

impl Tree {
    pub fn root(&self) -> Published {
        match self {
            Tree::Plain(t) => Published::Plain(t.root()),
            Tree::ZeroKnowledge(t) => Published::ZeroKnowledge(t.root()),
        }
    }

    /// How many customers the tree holds (not published).
    pub fn customers(&self) -> usize {
        match self {
            Tree::Plain(t) => t.customers(),
            Tree::ZeroKnowledge(t) => t.customers(),
        }
    }

    pub fn proof(&self, customer: u64) -> Result<Proof, PorError> {
        Ok(match self {
            Tree::Plain(t) => Proof::Plain(t.proof(customer)?),
            Tree::ZeroKnowledge(t) => Proof::ZeroKnowledge(t.proof(customer)?),
        })
    }
}

impl Published {
    pub fn variant(&self) -> Variant {
        match self {
            Published::Plain(_) => Variant::Plain,
            Published::ZeroKnowledge(_) => Variant::ZeroKnowledge,
        }
    }

    pub fn epoch(&self) -> u64 {
        match self {
            Published::Plain(r) => r.epoch,
            Published::ZeroKnowledge(r) => r.epoch,
        }
    }

    pub fn hash(&self) -> Hash {
        match self {
            Published::Plain(r) => r.hash,
            Published::ZeroKnowledge(r) => r.hash,
        }
    }

    /// The root hash in hex, as published.
    pub fn hex(&self) -> String {
        hex::encode(self.hash())
    }

    pub fn height(&self) -> u8 {
        match self {
            Published::Plain(r) => r.height,
            Published::ZeroKnowledge(r) => r.height,
        }
    }

    pub fn assets(&self) -> &[String] {
        match self {
            Published::Plain(r) => &r.assets,
            Published::ZeroKnowledge(r) => &r.assets,
        }
    }

    /// The epoch's cap, when its proofs are capped.
    pub fn cap(&self) -> Option<&ZkCap> {
        match self {
            Published::Plain(_) => None,
            Published::ZeroKnowledge(r) => r.cap.as_ref(),
        }
    }

    /// The format version of the epoch's proofs.
    pub fn version(&self) -> u8 {
        match self.cap() {
            Some(_) => ZK_SPLIT_VERSION,
            None => self.variant().version(),
        }
    }
}

impl Proof {
    /// Reads either variant's canonical bytes, by their version byte.
    pub fn decode(bytes: &[u8]) -> Result<Proof, PorError> {
        let version = *bytes.first().ok_or(PorError::Truncated("version"))?;
        Ok(match Variant::of_version(version)? {
            Variant::Plain => Proof::Plain(InclusionProof::decode(bytes)?),
            Variant::ZeroKnowledge => Proof::ZeroKnowledge(ZkProof::decode(bytes)?),
        })
    }

    pub fn encode(&self) -> Result<Vec<u8>, PorError> {
        match self {
            Proof::Plain(p) => p.encode(),
            Proof::ZeroKnowledge(p) => p.encode(),
        }
    }

    pub fn epoch(&self) -> u64 {
        match self {
            Proof::Plain(p) => p.epoch,
            Proof::ZeroKnowledge(p) => p.epoch,
        }
    }

    pub fn customer(&self) -> u64 {
        match self {
            Proof::Plain(p) => p.customer,
            Proof::ZeroKnowledge(p) => p.customer,
        }
    }
}

/// Checks a proof of either variant against the published root hash; a capped proof
/// (version 3) under its epoch's `cap`, itself checked against the root.
pub fn verify_proof(proof: &Proof, root: &Hash, cap: Option<&ZkCap>) -> Result<Proven, PorError> {
    Ok(match proof {
        Proof::Plain(p) => {
            let v = verify(p, root)?;
            Proven {
                variant: Variant::Plain,
                epoch: v.epoch,
                customer: v.customer,
                balances: v.balances,
                totals: Some(v.totals),
            }
        }
        Proof::ZeroKnowledge(p) => {
            let v = match (p.cap, cap) {
                (0, _) => verify_zk(p, root)?,
                (_, Some(cap)) => cap.verify(root)?.verify(p)?,
                (levels, None) => {
                    return Err(PorError::Invalid {
                        field: "cap",
                        why: format!(
                            "the proof is checked against its epoch's cap of {levels} levels, \
                             which was not given"
                        ),
                    });
                }
            };
            Proven {
                variant: Variant::ZeroKnowledge,
                epoch: v.epoch,
                customer: v.customer,
                balances: v
                    .balances
                    .into_iter()
                    .map(|(a, b)| (a, u128::from(b)))
                    .collect(),
                totals: None,
            }
        }
    })
}
