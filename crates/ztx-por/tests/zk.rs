//! The zero-knowledge variant: every customer's proof verifies against a root that
//! shows no balance, total or count; any change to a proof fails; the platform can open
//! the totals to an auditor; and a range proof cannot be moved to another customer.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a panic is a failed test"
)]

use proptest::prelude::*;
use ztx_por::{EpochSecret, PorError, TreeConfig, ZkProof, ZkTree, verify_totals, verify_zk};

fn build(accounts: &[(u64, Vec<u64>)], min_height: u8) -> ZkTree {
    ZkTree::build(
        3,
        vec!["BTC".into(), "USDT".into()],
        accounts,
        &EpochSecret::from_bytes([5; 32]),
        TreeConfig { min_height },
        &|_, _| {},
    )
    .unwrap()
}

fn accounts() -> Vec<(u64, Vec<u64>)> {
    vec![
        (10, vec![1, 100]),
        (11, vec![0, 250]),
        (12, vec![7, 0]),
        (40, vec![3, 3]),
        (41, vec![9, 1_000_000]),
    ]
}

#[test]
fn every_customers_zero_knowledge_proof_verifies_and_the_auditor_sees_the_totals() {
    let tree = build(&accounts(), 3);
    let root = tree.root();
    assert_eq!(root.height, 3);
    for (customer, balances) in accounts() {
        let proof = tree.proof(customer).unwrap();
        let proven = verify_zk(&proof, &root.hash).unwrap();
        assert_eq!((proven.epoch, proven.customer), (3, customer));
        assert_eq!(
            proven.balances,
            vec![
                ("BTC".to_owned(), balances[0]),
                ("USDT".to_owned(), balances[1])
            ]
        );
    }
    let (totals, blindings) = tree.open_totals();
    assert_eq!(totals, vec![20, 1_000_353]);
    assert!(verify_totals(&root, &totals, &blindings));
    assert!(!verify_totals(&root, &[21, 1_000_353], &blindings));
}

#[test]
fn any_altered_zero_knowledge_proof_fails() {
    let tree = build(&accounts(), 4);
    let root = tree.root();
    let good = tree.proof(41).unwrap();
    type Alteration = Box<dyn Fn(&mut ZkProof)>;
    let alterations: Vec<Alteration> = vec![
        Box::new(|p| p.balances[1] += 1),
        Box::new(|p| p.balances[0] = p.balances[0].wrapping_sub(1)),
        Box::new(|p| p.leaf_key[0] ^= 1),
        Box::new(|p| p.customer += 1),
        Box::new(|p| p.epoch += 1),
        Box::new(|p| p.index ^= 1),
        Box::new(|p| p.path[1].hash[0] ^= 1),
        Box::new(|p| p.path[2].commitments[1] = p.path[0].commitments[1]),
        Box::new(|p| p.path.swap(0, 1)),
        Box::new(|p| p.ranges[0][40] ^= 1),
        Box::new(|p| p.ranges[0].truncate(100)),
        Box::new(|p| p.ranges.clear()),
    ];
    assert_eq!(good.ranges.len(), 1);
    for (i, alter) in alterations.iter().enumerate() {
        let mut proof = good.clone();
        alter(&mut proof);
        assert!(
            verify_zk(&proof, &root.hash).is_err(),
            "alteration {i} verified"
        );
    }
    assert!(verify_zk(&good, &root.hash).is_ok());
}

/// The encoding round-trips, has one form, and every cut or addition is refused by
/// name; a proof of 64 assets needs two range proofs and still verifies.
#[test]
fn the_zero_knowledge_proof_encoding_is_canonical() {
    let tree = build(&accounts(), 3);
    let root = tree.root();
    let proof = tree.proof(12).unwrap();
    let bytes = proof.encode().unwrap();
    assert_eq!(bytes[0], ztx_por::ZK_VERSION);
    assert_eq!(ZkProof::decode(&bytes).unwrap(), proof);
    for cut in [0, 1, 10, bytes.len() / 2, bytes.len() - 1] {
        assert!(matches!(
            ZkProof::decode(&bytes[..cut]),
            Err(PorError::Truncated(_))
        ));
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(ZkProof::decode(&longer), Err(PorError::Trailing(1)));
    let mut other_version = bytes.clone();
    other_version[0] = 1;
    assert_eq!(ZkProof::decode(&other_version), Err(PorError::Version(1)));
    assert!(verify_zk(&ZkProof::decode(&bytes).unwrap(), &root.hash).is_ok());

    let assets: Vec<String> = (0..64).map(|i| format!("A{i}")).collect();
    let wide = ZkTree::build(
        9,
        assets,
        &[(1, (0..64).collect()), (2, vec![1; 64])],
        &EpochSecret::from_bytes([2; 32]),
        TreeConfig { min_height: 2 },
        &|_, _| {},
    )
    .unwrap();
    let proof = wide.proof(2).unwrap();
    assert_eq!(proof.ranges.len(), 2);
    let decoded = ZkProof::decode(&proof.encode().unwrap()).unwrap();
    assert_eq!(
        verify_zk(&decoded, &wide.root().hash)
            .unwrap()
            .balances
            .len(),
        64
    );
}

/// A range proof made for one customer does not serve another's proof: each is bound
/// to its epoch, customer and asset.
#[test]
fn a_range_proof_moved_to_another_customer_is_refused() {
    let tree = build(&accounts(), 3);
    let root = tree.root();
    let mut proof = tree.proof(10).unwrap();
    let other = tree.proof(11).unwrap();
    proof.ranges = other.ranges.clone();
    assert!(matches!(
        verify_zk(&proof, &root.hash),
        Err(PorError::Invalid {
            field: "range proof",
            ..
        })
    ));
}

/// A tree of one customer and of five have the same shape, and their roots carry no
/// total: only commitments.
#[test]
fn the_root_shows_neither_totals_nor_count() {
    let one = build(&accounts()[..1], 3);
    let five = build(&accounts(), 3);
    assert_eq!(one.root().height, five.root().height);
    let (a, b) = (one.proof(10).unwrap(), five.proof(10).unwrap());
    assert_eq!(a.path.len(), b.path.len());
    assert_eq!(a.encode().unwrap().len(), b.encode().unwrap().len());
    assert_eq!(five.root().commitments.len(), 2);
}

#[test]
fn balances_beyond_the_range_proofs_are_refused() {
    let refused = ZkTree::build(
        1,
        vec!["BTC".into()],
        &[(1, vec![u64::MAX]), (2, vec![1])],
        &EpochSecret::from_bytes([1; 32]),
        TreeConfig { min_height: 1 },
        &|_, _| {},
    );
    assert!(matches!(refused, Err(PorError::BeyondRange { .. })));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    /// Whatever the balances, each customer's proof verifies and proves exactly theirs.
    #[test]
    fn zero_knowledge_proofs_verify_for_any_balances(
        balances in prop::collection::btree_map(1u64..1000, (0u64..1 << 40, 0u64..1 << 40), 1..6),
    ) {
        let accounts: Vec<(u64, Vec<u64>)> =
            balances.into_iter().map(|(c, (a, b))| (c, vec![a, b])).collect();
        let tree = build(&accounts, 2);
        let root = tree.root();
        let (customer, own) = &accounts[0];
        let proven = verify_zk(&tree.proof(*customer).unwrap(), &root.hash).unwrap();
        prop_assert_eq!(proven.balances[0].1, own[0]);
        prop_assert_eq!(proven.balances[1].1, own[1]);
    }
}

/// A tree wide enough to be built on every core (levels cut between sibling pairs)
/// proves its customers, wherever the cut fell, and sums to the totals.
#[test]
fn a_zero_knowledge_tree_built_on_every_core_proves_its_customers() {
    let accounts: Vec<(u64, Vec<u64>)> = (1..=6_000u64).map(|c| (c, vec![c % 7, c])).collect();
    let tree = build(&accounts, 13);
    let root = tree.root();
    for customer in [1, 999, 2_048, 3_001, 4_096, 6_000] {
        let proof = tree.proof(customer).unwrap();
        let proven = verify_zk(&proof, &root.hash).unwrap();
        assert_eq!(proven.balances[1].1, customer);
    }
    let (totals, _) = tree.open_totals();
    let sum = |a: usize| accounts.iter().map(|(_, b)| b[a]).sum::<u64>();
    assert_eq!(totals, vec![sum(0), sum(1)]);
}

/// A leaf recomputed by hand from the documented encoding: its key, its hash and its
/// commitments.
struct HandLeaf {
    key: [u8; 32],
    hash: [u8; 32],
    commitments: Vec<curve25519_dalek::ristretto::RistrettoPoint>,
}

fn hand_leaf(secret: &[u8; 32], epoch: u64, customer: u64, balances: &[u64]) -> HandLeaf {
    use bulletproofs::PedersenGens;
    use curve25519_dalek::scalar::Scalar;
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256, Sha512};

    let gens = PedersenGens::default();
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap();
    mac.update(b"\x08leaf-key");
    mac.update(&epoch.to_be_bytes());
    mac.update(&customer.to_be_bytes());
    let key: [u8; 32] = mac.finalize().into_bytes().into();
    let salt = Sha256::new()
        .chain_update(b"ztx-por/v2z/salt")
        .chain_update(key)
        .finalize();
    let commitments: Vec<_> = balances
        .iter()
        .enumerate()
        .map(|(a, v)| {
            let wide: [u8; 64] = Sha512::new()
                .chain_update(b"ztx-por/v2z/blind")
                .chain_update(key)
                .chain_update([u8::try_from(a).unwrap()])
                .finalize()
                .into();
            gens.commit(Scalar::from(*v), Scalar::from_bytes_mod_order_wide(&wide))
        })
        .collect();
    let mut leaf = Sha256::new()
        .chain_update(b"ztx-por/v2z/leaf")
        .chain_update(epoch.to_be_bytes())
        .chain_update(customer.to_be_bytes())
        .chain_update(salt);
    for c in &commitments {
        leaf.update(c.compress().as_bytes());
    }
    HandLeaf {
        key,
        hash: leaf.finalize().into(),
        commitments,
    }
}

/// A node's hash by hand: its children's hashes and commitments, left then right.
fn hand_node(left: &HandLeaf, right: &HandLeaf) -> HandLeaf {
    use sha2::{Digest, Sha256};

    let mut node = Sha256::new().chain_update(b"ztx-por/v2z/node");
    for child in [left, right] {
        node.update(child.hash);
        for c in &child.commitments {
            node.update(c.compress().as_bytes());
        }
    }
    HandLeaf {
        key: [0; 32],
        hash: node.finalize().into(),
        commitments: left
            .commitments
            .iter()
            .zip(&right.commitments)
            .map(|(l, r)| l + r)
            .collect(),
    }
}

/// The published root by hand, for epoch 3 and the assets BTC and USDT.
fn hand_root(height: u8, top: &HandLeaf) -> [u8; 32] {
    use sha2::{Digest, Sha256};

    let mut published = Sha256::new()
        .chain_update(b"ztx-por/v2z/root")
        .chain_update(3u64.to_be_bytes())
        .chain_update([height, 2, 3])
        .chain_update(b"BTC")
        .chain_update([4])
        .chain_update(b"USDT")
        .chain_update(top.hash);
    for c in &top.commitments {
        published.update(c.compress().as_bytes());
    }
    published.finalize().into()
}

/// The documented encoding, recomputed by hand for a full tree of two customers (no
/// padding): leaf keys, salts, blindings, commitments, leaves and the root; and the
/// root's hash pinned, so that any change to the encoding shows here.
#[test]
fn known_answer_for_a_fixed_zero_knowledge_epoch() {
    let accounts = vec![(10u64, vec![1u64, 100]), (11, vec![0, 250])];
    let secret = [5u8; 32];
    // `build` uses this same secret.
    let tree = build(&accounts, 1);
    let root = tree.root();
    let mut leaves = Vec::new();
    for (customer, balances) in &accounts {
        let proof = tree.proof(*customer).unwrap();
        let leaf = hand_leaf(&secret, 3, *customer, balances);
        assert_eq!(proof.leaf_key, leaf.key);
        leaves.push((proof.index, leaf));
    }
    leaves.sort_by_key(|(index, _)| *index);
    assert_eq!((leaves[0].0, leaves[1].0), (0, 1));
    let top = hand_node(&leaves[0].1, &leaves[1].1);
    let totals: Vec<[u8; 32]> = top
        .commitments
        .iter()
        .map(|c| c.compress().to_bytes())
        .collect();
    assert_eq!(root.commitments, totals);
    assert_eq!(root.hash, hand_root(1, &top));
    assert_eq!(
        root.hex(),
        "c6a536e0429f18d202301c29cb72c2d625c64a2831e24a4195cc915254f56e3c"
    );
}

/// The bytes of a cap and of a capped proof (versions 3 and 4), laid out by hand from the
/// documented encodings around the nodes recomputed by hand: four customers, a tree of
/// height 2, a cap of one level. The range proofs are randomized, so they are taken from
/// the encoded values (and checked, by verifying, to be the live ones); every other
/// byte is pinned.
#[test]
fn known_answer_for_a_cap_and_a_capped_proof() {
    let accounts = vec![
        (10u64, vec![1u64, 100]),
        (11, vec![0, 250]),
        (12, vec![7, 0]),
        (13, vec![2, 5]),
    ];
    let secret = [5u8; 32];
    // `build` uses this same secret.
    let tree = build(&accounts, 2);
    let mut leaves: Vec<(u64, u64, HandLeaf)> = accounts
        .iter()
        .map(|(customer, balances)| {
            let index = tree.proof(*customer).unwrap().index;
            (index, *customer, hand_leaf(&secret, 3, *customer, balances))
        })
        .collect();
    leaves.sort_by_key(|(index, _, _)| *index);
    assert_eq!(
        leaves.iter().map(|(i, _, _)| *i).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    let lower = [
        hand_node(&leaves[0].2, &leaves[1].2),
        hand_node(&leaves[2].2, &leaves[3].2),
    ];
    let top = hand_node(&lower[0], &lower[1]);
    let root = tree.root();
    assert_eq!(root.hash, hand_root(2, &top));

    let header = |version: u8| {
        let mut out = vec![version];
        out.extend_from_slice(&3u64.to_be_bytes());
        out.extend_from_slice(&[2, 2, 3]);
        out.extend_from_slice(b"BTC");
        out.push(4);
        out.extend_from_slice(b"USDT");
        out
    };
    let node_bytes = |out: &mut Vec<u8>, node: &HandLeaf| {
        out.extend_from_slice(&node.hash);
        for c in &node.commitments {
            out.extend_from_slice(c.compress().as_bytes());
        }
    };
    let range_bytes = |out: &mut Vec<u8>, ranges: &[Vec<u8>]| {
        for range in ranges {
            out.extend_from_slice(&u16::try_from(range.len()).unwrap().to_be_bytes());
            out.extend_from_slice(range);
        }
    };

    let cap = tree.make_cap(1).unwrap();
    assert_eq!(cap.ranges.len(), 1, "four values: one run");
    let mut expected = header(ztx_por::CAP_VERSION);
    expected.push(1);
    for node in &lower {
        node_bytes(&mut expected, node);
    }
    range_bytes(&mut expected, &cap.ranges);
    assert_eq!(cap.encode().unwrap(), expected);
    let checked = cap.verify(&root.hash).unwrap();

    let (index, customer, _) = &leaves[2];
    for version in [ztx_por::ZK_CAPPED_VERSION, ztx_por::ZK_SPLIT_VERSION] {
        let proof = tree.proof_as(*customer, 1, version).unwrap();
        assert_eq!(proof.ranges.len(), 1);
        let mut expected = header(version);
        expected.push(1);
        expected.extend_from_slice(&customer.to_be_bytes());
        expected.extend_from_slice(&leaves[2].2.key);
        for balance in [7u64, 0] {
            expected.extend_from_slice(&balance.to_be_bytes());
        }
        expected.extend_from_slice(&u32::try_from(*index).unwrap().to_be_bytes());
        node_bytes(&mut expected, &leaves[3].2);
        range_bytes(&mut expected, &proof.ranges);
        assert_eq!(proof.encode().unwrap(), expected);
        let verified = checked
            .verify(&ZkProof::decode(&expected).unwrap())
            .unwrap();
        assert_eq!(verified.customer, 12);
        // The versions' range proofs are bound to their version.
        let mut relabelled = expected.clone();
        relabelled[0] = if version == ztx_por::ZK_SPLIT_VERSION {
            ztx_por::ZK_CAPPED_VERSION
        } else {
            ztx_por::ZK_SPLIT_VERSION
        };
        assert!(
            checked
                .verify(&ZkProof::decode(&relabelled).unwrap())
                .is_err()
        );
    }
}

/// The platform cannot open other totals to an auditor than the ones customers'
/// proofs verify against: the published hash binds the root's commitments.
#[test]
fn totals_opened_to_an_auditor_are_the_ones_the_customers_verify() {
    let tree = build(&accounts(), 3);
    let root = tree.root();
    assert!(root.is_consistent());
    let (totals, blindings) = tree.open_totals();
    assert!(verify_totals(&root, &totals, &blindings));
    // Lower totals under commitments of the platform's choosing, beside the same hash.
    let other = build(&accounts()[..2], 3);
    let (lower, lower_blindings) = other.open_totals();
    let mut forged = root.clone();
    forged.commitments = other.root().commitments;
    assert!(!forged.is_consistent());
    assert!(!verify_totals(&forged, &lower, &lower_blindings));
}

/// A customer's balances cannot be shown under other assets' names: the root binds
/// which asset each slot holds.
#[test]
fn a_proof_with_its_assets_relabelled_is_refused() {
    let tree = build(&accounts(), 3);
    let root = tree.root();
    let mut proof = tree.proof(41).unwrap();
    proof.assets.swap(0, 1);
    assert!(matches!(
        verify_zk(&proof, &root.hash),
        Err(PorError::WrongRoot { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Any byte of an encoded zero-knowledge proof, changed, makes it unreadable or
    /// invalid: nothing in a proof is left unchecked.
    #[test]
    fn any_altered_byte_of_a_zero_knowledge_proof_fails(
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        static GOOD: std::sync::OnceLock<(Vec<u8>, [u8; 32])> = std::sync::OnceLock::new();
        let (bytes, root) = GOOD.get_or_init(|| {
            let tree = build(&accounts(), 3);
            (tree.proof(40).unwrap().encode().unwrap(), tree.root().hash)
        });
        let mut altered = bytes.clone();
        altered[at.index(bytes.len())] ^= flip;
        let refused = match ZkProof::decode(&altered) {
            Err(_) => true,
            Ok(proof) => verify_zk(&proof, root).is_err(),
        };
        prop_assert!(refused);
    }
}

/// A proof's implied root is the published one, and the check beyond it is the range
/// proofs': a proof whose range proof is spoiled leads to the same root and still fails.
#[test]
fn a_proof_implies_its_root_and_the_range_proofs_are_checked_beyond_it() {
    let tree = build(&accounts(), 3);
    let mut proof = tree.proof(11).unwrap();
    assert_eq!(proof.implied_root().unwrap(), tree.root().hash);
    proof.ranges[0][200] ^= 1;
    assert_eq!(proof.implied_root().unwrap(), tree.root().hash);
    assert!(matches!(
        verify_zk(&proof, &tree.root().hash),
        Err(PorError::Invalid {
            field: "range proof",
            ..
        })
    ));
}
