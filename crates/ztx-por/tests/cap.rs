//! The cap: an epoch's top levels range-proven once, and customers' proofs (versions 3 and 4)
//! that range-prove only the levels below it. A capped proof verifies only under a cap
//! checked against the published root; any change to either fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a panic is a failed test"
)]

use proptest::prelude::*;
use ztx_por::{
    EpochSecret, PorError, Snapshot, TreeConfig, Variant, ZkCap, ZkProof, ZkTree, verify_zk,
};

fn build(epoch: u64, accounts: &[(u64, Vec<u64>)]) -> ZkTree {
    ZkTree::build(
        epoch,
        vec!["BTC".into(), "USDT".into()],
        accounts,
        &EpochSecret::from_bytes([5; 32]),
        TreeConfig { min_height: 5 },
        &|_, _| {},
    )
    .unwrap()
}

fn accounts() -> Vec<(u64, Vec<u64>)> {
    (1..=12).map(|c| (c, vec![c * 3, c * 1_000])).collect()
}

#[test]
fn every_capped_proof_verifies_under_its_cap_and_names_the_balances() {
    let tree = build(7, &accounts());
    let root = tree.root();
    let cap = tree.make_cap(3).unwrap();
    assert_eq!(cap.nodes.len(), 2 + 4 + 8);
    let cap = ZkCap::decode(&cap.encode().unwrap()).unwrap();
    let checked = cap.verify(&root.hash).unwrap();
    for (customer, balances) in accounts() {
        let proof = tree.proof_capped(customer, 3).unwrap();
        assert_eq!(proof.path.len(), usize::from(tree.root().height) - 3);
        let bytes = proof.encode().unwrap();
        assert_eq!(bytes[0], ztx_por::ZK_SPLIT_VERSION);
        let full = tree.proof(customer).unwrap().encode().unwrap();
        assert!(
            bytes.len() < full.len(),
            "{} vs {}",
            bytes.len(),
            full.len()
        );
        let verified = checked.verify(&ZkProof::decode(&bytes).unwrap()).unwrap();
        assert_eq!(verified.customer, customer);
        assert_eq!(
            verified.balances,
            vec![
                ("BTC".to_owned(), balances[0]),
                ("USDT".to_owned(), balances[1])
            ]
        );
    }
}

/// A wide tree with few customers: most cap nodes are padding, each the top of an
/// empty subtree rather than its cap children's parent.
#[test]
fn capped_proofs_of_a_sparse_tree_verify_through_its_padding() {
    let accounts = vec![(1, vec![5, 6]), (2, vec![7, 8]), (3, vec![0, 1])];
    let tree = ZkTree::build(
        9,
        vec!["BTC".into(), "USDT".into()],
        &accounts,
        &EpochSecret::from_bytes([6; 32]),
        TreeConfig { min_height: 12 },
        &|_, _| {},
    )
    .unwrap()
    .with_cap(4)
    .unwrap();
    let root = tree.root();
    let checked = root.cap.as_ref().unwrap().verify(&root.hash).unwrap();
    for (customer, _) in &accounts {
        let proof = tree.proof(*customer).unwrap();
        assert_eq!(proof.cap, 4);
        assert_eq!(checked.verify(&proof).unwrap().customer, *customer);
    }
}

#[test]
fn a_cap_of_another_root_is_refused() {
    let tree = build(7, &accounts());
    let other = build(8, &accounts());
    let cap = tree.make_cap(2).unwrap();
    assert!(matches!(
        cap.verify(&other.root().hash),
        Err(PorError::WrongRoot { .. })
    ));
}

#[test]
fn a_cap_with_two_nodes_swapped_is_refused() {
    let tree = build(7, &accounts());
    let honest = tree.make_cap(2).unwrap();
    // The top's children: the cap leads to another root.
    let mut cap = honest.clone();
    cap.nodes.swap(4, 5);
    assert!(matches!(
        cap.verify(&tree.root().hash),
        Err(PorError::WrongRoot { .. })
    ));
    // Two of the lowest level: the range proof was made over the other order.
    let mut cap = honest;
    cap.nodes.swap(0, 1);
    assert!(matches!(
        cap.verify(&tree.root().hash),
        Err(PorError::Invalid {
            field: "range proof",
            ..
        })
    ));
}

#[test]
fn a_capped_proof_is_refused_without_its_cap() {
    let tree = build(7, &accounts());
    let proof = tree.proof_capped(1, 2).unwrap();
    let err = verify_zk(&proof, &tree.root().hash).unwrap_err();
    assert!(err.to_string().contains("cap"), "{err}");
    assert!(proof.implied_root().is_err());
}

#[test]
fn a_capped_proof_under_another_epochs_cap_is_refused() {
    let tree = build(7, &accounts());
    let other = build(8, &accounts());
    let checked = other
        .make_cap(2)
        .unwrap()
        .verify(&other.root().hash)
        .unwrap();
    let err = checked
        .verify(&tree.proof_capped(1, 2).unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("epoch 7"), "{err}");
    // Nor under a cap of other levels from its own epoch.
    let deeper = tree.make_cap(3).unwrap().verify(&tree.root().hash).unwrap();
    assert!(deeper.verify(&tree.proof_capped(1, 2).unwrap()).is_err());
}

/// A platform that alters a sibling below the cap cannot make the path meet the cap's
/// node again: the cap is what the published root holds.
#[test]
fn a_capped_proof_whose_path_leaves_the_cap_is_refused() {
    let tree = build(7, &accounts());
    let checked = tree.make_cap(2).unwrap().verify(&tree.root().hash).unwrap();
    let mut proof = tree.proof_capped(3, 2).unwrap();
    proof.path[1].hash[0] ^= 1;
    let err = checked.verify(&proof).unwrap_err();
    assert!(err.to_string().contains("leaves the epoch's cap"), "{err}");
}

#[test]
fn a_capped_proofs_range_proof_moved_to_another_customer_is_refused() {
    let tree = build(7, &accounts());
    let checked = tree.make_cap(2).unwrap().verify(&tree.root().hash).unwrap();
    let mut proof = tree.proof_capped(3, 2).unwrap();
    proof.ranges = tree.proof_capped(4, 2).unwrap().ranges;
    assert!(matches!(
        checked.verify(&proof),
        Err(PorError::Invalid {
            field: "range proof",
            ..
        })
    ));
}

#[test]
fn malformed_caps_are_refused_by_name() {
    let tree = build(7, &accounts());
    let bytes = tree.make_cap(2).unwrap().encode().unwrap();
    let err = ZkCap::decode(&bytes[..bytes.len() - 1]).unwrap_err();
    assert!(matches!(err, PorError::Truncated("range proof")), "{err}");
    let mut long = bytes.clone();
    long.push(0);
    assert_eq!(ZkCap::decode(&long).unwrap_err(), PorError::Trailing(1));
    assert_eq!(ZkCap::decode(&[2]).unwrap_err(), PorError::Version(2));
    // The levels byte follows the header (version, epoch, height, asset list).
    let levels_at = 1 + 8 + 1 + 1 + (1 + 3) + (1 + 4);
    assert_eq!(bytes[levels_at], 2);
    for bad in [0, ztx_por::MAX_CAP + 1] {
        let mut b = bytes.clone();
        b[levels_at] = bad;
        let err = ZkCap::decode(&b).unwrap_err();
        assert!(err.to_string().contains("levels in a tree"), "{err}");
    }
    assert!(tree.make_cap(0).is_err());
    assert!(tree.proof_capped(1, ztx_por::MAX_CAP + 1).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Any byte of a cap or of a capped proof altered: refused, by decoding or by
    /// checking.
    #[test]
    fn any_altered_byte_of_a_cap_or_capped_proof_fails(at in any::<prop::sample::Index>(), flip in 1u8..=255, in_cap: bool) {
        let tree = build(7, &accounts());
        let root = tree.root().hash;
        let cap = tree.make_cap(2).unwrap();
        let proof = tree.proof_capped(5, 2).unwrap();
        let (mut cap_bytes, mut proof_bytes) = (cap.encode().unwrap(), proof.encode().unwrap());
        let target = if in_cap { &mut cap_bytes } else { &mut proof_bytes };
        let i = at.index(target.len());
        target[i] ^= flip;
        let result = ZkCap::decode(&cap_bytes).and_then(|cap| {
            let checked = cap.verify(&root)?;
            checked.verify(&ZkProof::decode(&proof_bytes)?)
        });
        prop_assert!(result.is_err());
    }
}

/// An epoch's snapshot (version 3) keeps its cap, so that every proof of the epoch,
/// rebuilt after a restart, is made under the same cap nodes.
#[test]
fn a_capped_snapshot_keeps_its_cap_and_rebuilds_the_same_cap() {
    let snapshot = Snapshot {
        epoch: 4,
        assets: vec!["BTC".into()],
        accounts: vec![(1, vec![5]), (2, vec![6])],
        secret: EpochSecret::from_bytes([2; 32]),
        config: TreeConfig { min_height: 6 },
        variant: Variant::ZeroKnowledge,
        cap: 3,
    };
    let bytes = snapshot.encode().unwrap();
    assert_eq!(bytes[0], ztx_por::ZK_CAPPED_VERSION);
    let back = Snapshot::decode(&bytes).unwrap();
    assert_eq!(back.cap, 3);
    let first = snapshot.build(&|_, _| {}).unwrap().root();
    let again = back.build(&|_, _| {}).unwrap().root();
    assert_eq!(first.hash(), again.hash());
    assert_eq!(first.version(), ztx_por::ZK_SPLIT_VERSION);
    // The range proofs are randomized; the nodes they prove are the same.
    assert_eq!(first.cap().unwrap().nodes, again.cap().unwrap().nodes);
    // A version 3 snapshot must name a cap.
    let mut none = bytes.to_vec();
    none[1 + 8 + 1] = 0;
    let err = Snapshot::decode(&none).unwrap_err();
    assert!(err.to_string().contains("no cap"), "{err}");
}

/// Version 4 cuts a proof's sibling commitments into runs of at most 16, each its own
/// aggregated range proof: a path of 5 levels under the cap, two assets, is 10 values
/// in one run; 12 levels, 24 values, in two.
#[test]
fn a_split_proof_carries_one_range_proof_per_run_of_sixteen() {
    for (min_height, runs) in [(8u8, 1usize), (15, 2)] {
        let tree = ZkTree::build(
            2,
            vec!["BTC".into(), "USDT".into()],
            &accounts(),
            &EpochSecret::from_bytes([3; 32]),
            TreeConfig { min_height },
            &|_, _| {},
        )
        .unwrap();
        let root = tree.root();
        let checked = tree.make_cap(3).unwrap().verify(&root.hash).unwrap();
        let proof = tree.proof_capped(7, 3).unwrap();
        assert_eq!(proof.version, ztx_por::ZK_SPLIT_VERSION);
        assert_eq!(proof.ranges.len(), runs, "height {min_height}");
        let decoded = ZkProof::decode(&proof.encode().unwrap()).unwrap();
        assert_eq!(checked.verify(&decoded).unwrap().customer, 7);
        // The same siblings as version 3 are one run of up to 64.
        let old = tree.proof_as(7, 3, ztx_por::ZK_CAPPED_VERSION).unwrap();
        assert_eq!(old.ranges.len(), 1);
        assert_eq!(old.path, proof.path);
        assert_eq!(checked.verify(&old).unwrap().customer, 7);
    }
}

/// A version 4 proof whose runs are regrouped as version 3's is refused: the run count
/// no longer matches the version, and each run's transcript names its version.
#[test]
fn a_split_proof_relabelled_as_version_three_is_refused() {
    let tree = ZkTree::build(
        2,
        vec!["BTC".into(), "USDT".into()],
        &accounts(),
        &EpochSecret::from_bytes([3; 32]),
        TreeConfig { min_height: 15 },
        &|_, _| {},
    )
    .unwrap();
    let checked = tree.make_cap(3).unwrap().verify(&tree.root().hash).unwrap();
    let mut proof = tree.proof_capped(7, 3).unwrap();
    proof.version = ztx_por::ZK_CAPPED_VERSION;
    let err = checked.verify(&proof).unwrap_err();
    assert!(err.to_string().contains("range proof"), "{err}");
    proof.ranges.truncate(1);
    assert!(checked.verify(&proof).is_err());
    // A version with no cap, or a capped version with none, is refused by name.
    let mut uncapped = tree.proof_capped(7, 3).unwrap();
    uncapped.version = ztx_por::ZK_VERSION;
    let err = uncapped.encode().unwrap_err();
    assert!(err.to_string().contains("version"), "{err}");
}

/// A version 3 proof, cap and root written by an earlier build (tests/fixtures) still
/// verify: new versions add to what the verifier reads and take nothing away.
#[test]
fn a_version_three_proof_from_an_earlier_build_still_verifies() {
    let root: ztx_por::Hash = hex::decode(include_str!("fixtures/v3-root.hex").trim())
        .unwrap()
        .try_into()
        .unwrap();
    let cap = ZkCap::decode(include_bytes!("fixtures/v3-cap2.bin")).unwrap();
    let proof = ZkProof::decode(include_bytes!("fixtures/v3-customer12.proof")).unwrap();
    assert_eq!(proof.version, ztx_por::ZK_CAPPED_VERSION);
    let verified = cap.verify(&root).unwrap().verify(&proof).unwrap();
    assert_eq!(verified.customer, 12);
    assert_eq!(
        verified.balances,
        vec![("BTC".to_owned(), 7), ("USDT".to_owned(), 0)]
    );
    let proof = ztx_por::Proof::decode(include_bytes!("fixtures/v3-customer12.proof")).unwrap();
    assert!(ztx_por::verify_proof(&proof, &root, Some(&cap)).is_ok());
}
