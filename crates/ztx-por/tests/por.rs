//! The sum tree and its proofs: the documented encoding recomputed by hand, every
//! customer's proof verifying, and each published attack on proofs of liabilities
//! refused, in a test named after it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a panic is a failed test"
)]

use proptest::prelude::*;
use sha2::{Digest, Sha256};
use ztx_por::{
    EpochSecret, InclusionProof, PorError, Published, Snapshot, SumTree, TreeConfig, Variant,
    verify,
};

const EPOCH: u64 = 7;

fn assets() -> Vec<String> {
    vec!["BTC".into(), "USDT".into()]
}

fn secret() -> EpochSecret {
    EpochSecret::from_bytes([42; 32])
}

fn small(min_height: u8) -> TreeConfig {
    TreeConfig { min_height }
}

fn tree(accounts: &[(u64, Vec<u128>)], min_height: u8) -> SumTree {
    SumTree::build(EPOCH, assets(), accounts, &secret(), small(min_height)).unwrap()
}

fn sha(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn sums_bytes(sums: &[u128]) -> Vec<u8> {
    sums.iter().flat_map(|s| s.to_be_bytes()).collect()
}

/// The encoding the crate documents, recomputed here with SHA-256 alone: a tree of one
/// customer padded to two leaves.
#[test]
fn the_root_is_the_documented_hash_of_its_leaves() {
    let balances = vec![3u128, 500];
    let t = tree(&[(9, balances.clone())], 1);
    let root = t.root();
    assert_eq!((root.height, root.totals.clone()), (1, balances.clone()));
    let proof = t.proof(9).unwrap();
    let leaf = sha(&[
        b"ztx-por/v1/leaf",
        &EPOCH.to_be_bytes(),
        &9u64.to_be_bytes(),
        &proof.salt,
        &sums_bytes(&balances),
    ]);
    let pad = &proof.path[0];
    assert_eq!(pad.sums, vec![0, 0], "the other leaf is padding");
    let (left, left_sums, right, right_sums) = if proof.index == 0 {
        (leaf, balances.clone(), pad.hash, pad.sums.clone())
    } else {
        (pad.hash, pad.sums.clone(), leaf, balances.clone())
    };
    let expected = sha(&[
        b"ztx-por/v1/node",
        &left,
        &sums_bytes(&left_sums),
        &right,
        &sums_bytes(&right_sums),
    ]);
    assert_eq!(root.hash, expected);
    // The salt is HMAC-SHA256 of the secret over "salt", epoch and customer.
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<Sha256>::new_from_slice(&[42; 32]).unwrap();
    mac.update(b"salt");
    mac.update(&EPOCH.to_be_bytes());
    mac.update(&9u64.to_be_bytes());
    assert_eq!(proof.salt, <[u8; 32]>::from(mac.finalize().into_bytes()));
}

/// Pinned (taken from this build after the test above checked the encoding by hand):
/// any change to the encoding, the salts or the positions changes this root.
#[test]
fn known_answer_for_a_fixed_epoch() {
    let t = tree(&[(1, vec![1, 2]), (2, vec![30, 40]), (3, vec![0, 7])], 3);
    assert_eq!(
        t.root().hex(),
        "890c97c3fb7a8010ff0c2a276cdd94c125dbf5700447510eb6a3741b6b4f2411"
    );
}

fn accounts() -> impl Strategy<Value = Vec<(u64, Vec<u128>)>> {
    prop::collection::btree_map(any::<u64>(), (0u128..1 << 100, 0u128..1 << 100), 1..40)
        .prop_map(|m| m.into_iter().map(|(c, (a, b))| (c, vec![a, b])).collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Every customer's proof verifies against the root and proves exactly their
    /// balances, and the root's totals are the sums of all balances.
    #[test]
    fn every_customers_proof_verifies(accounts in accounts(), min_height in 0u8..8) {
        let t = tree(&accounts, min_height);
        let root = t.root();
        let mut totals = [0u128; 2];
        for (customer, balances) in &accounts {
            let proof = t.proof(*customer).unwrap();
            let bytes = proof.encode().unwrap();
            prop_assert_eq!(&InclusionProof::decode(&bytes).unwrap(), &proof);
            let proven = verify(&proof, &root.hash).unwrap();
            prop_assert_eq!(proven.customer, *customer);
            prop_assert_eq!(
                proven.balances,
                vec![("BTC".to_owned(), balances[0]), ("USDT".to_owned(), balances[1])]
            );
            prop_assert_eq!(&proven.totals, &root.totals);
            totals[0] += balances[0];
            totals[1] += balances[1];
        }
        prop_assert_eq!(root.totals, totals.to_vec());
    }

    /// Any change to a proof — a balance, the salt, the customer, the index, a sibling's
    /// hash or any of its sums — makes it fail.
    #[test]
    fn any_altered_proof_fails(
        accounts in accounts(),
        which in 0usize..6,
        level in any::<prop::sample::Index>(),
        delta in 1u128..1000,
    ) {
        let t = tree(&accounts, 3);
        let root = t.root();
        let mut proof = t.proof(accounts[0].0).unwrap();
        let step = level.index(proof.path.len());
        match which {
            0 => proof.balances[0] = proof.balances[0].wrapping_add(delta),
            1 => proof.salt[0] ^= 1,
            2 => proof.customer = proof.customer.wrapping_add(1),
            3 => proof.index ^= 1,
            4 => proof.path[step].hash[31] ^= 1,
            _ => proof.path[step].sums[1] = proof.path[step].sums[1].wrapping_add(delta),
        }
        prop_assert!(verify(&proof, &root.hash).is_err());
    }

    /// Any change to any balance changes the root: a customer checking an old proof
    /// against the new root sees it fail.
    #[test]
    fn any_changed_balance_changes_the_root(
        accounts in accounts(),
        who in any::<prop::sample::Index>(),
        delta in 1u128..1000,
    ) {
        let before = tree(&accounts, 3);
        let mut changed = accounts.clone();
        let i = who.index(changed.len());
        changed[i].1[0] = changed[i].1[0].wrapping_add(delta);
        let after = tree(&changed, 3);
        prop_assert_ne!(before.root().hash, after.root().hash);
        let old = before.proof(accounts[i].0).unwrap();
        prop_assert!(verify(&old, &after.root().hash).is_err());
    }

    /// An epoch's snapshot round-trips and rebuilds the same tree.
    #[test]
    fn a_snapshot_rebuilds_the_same_tree(accounts in accounts()) {
        let snapshot = Snapshot {
            epoch: EPOCH,
            assets: assets(),
            accounts: accounts.clone(),
            secret: secret(),
            config: small(4),
            variant: Variant::Plain,
            cap: 0,
        };
        let bytes = snapshot.encode().unwrap();
        let back = Snapshot::decode(&bytes).unwrap();
        prop_assert_eq!(&back.accounts, &accounts);
        prop_assert_eq!(back.variant, Variant::Plain);
        prop_assert_eq!(
            back.build(&|_, _| {}).unwrap().root(),
            Published::Plain(tree(&accounts, 4).root())
        );
        prop_assert!(Snapshot::decode(&bytes[..bytes.len() - 1]).is_err());
    }

    /// Snapshot bytes from anywhere never panic the decoder.
    #[test]
    fn decoding_arbitrary_snapshots_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = Snapshot::decode(&bytes);
    }

    /// The decoder never panics, and what it accepts re-encodes to the same bytes.
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(proof) = InclusionProof::decode(&bytes) {
            prop_assert_eq!(proof.encode().unwrap(), bytes);
        }
    }
}

/// Hu, Zhang and Guo's attack on the Maxwell tree: a parent that hashes only its
/// children's total lets the platform move value between siblings (or hide a debt in
/// one) as long as the total holds. Here each child's sums are bound separately: a
/// proof whose sibling sums are shifted, total unchanged, fails.
#[test]
fn maxwell_sum_only_binding_attack_is_refused() {
    let t = tree(&[(1, vec![5, 50]), (2, vec![7, 70])], 1);
    let root = t.root();
    let mut proof = t.proof(1).unwrap();
    // Claim one less for the customer and one more for the sibling: same parent total.
    proof.balances[1] -= 1;
    proof.path[0].sums[1] += 1;
    assert!(matches!(
        verify(&proof, &root.hash),
        Err(PorError::WrongRoot { .. })
    ));
}

/// A negative balance hidden in a subtree: values are unsigned, so the only way to
/// lower a total is to wrap it, and sums that overflow are refused.
#[test]
fn negative_balance_hidden_by_overflow_is_refused() {
    let refused = SumTree::build(
        EPOCH,
        assets(),
        &[(1, vec![u128::MAX, 0]), (2, vec![1, 0])],
        &secret(),
        small(1),
    );
    assert!(matches!(refused, Err(PorError::Overflow { asset }) if asset == "BTC"));
    let t = tree(&[(1, vec![5, 0]), (2, vec![7, 0])], 1);
    let mut proof = t.proof(1).unwrap();
    proof.path[0].sums[0] = u128::MAX;
    assert!(matches!(
        verify(&proof, &t.root().hash),
        Err(PorError::Overflow { .. })
    ));
}

/// A customer left out of the tree has no proof to show, and a proof from another
/// tree does not verify against the published root.
#[test]
fn omitted_customer_is_caught() {
    let full = tree(&[(1, vec![5, 0]), (2, vec![7, 0]), (3, vec![9, 1])], 2);
    let without = tree(&[(1, vec![5, 0]), (2, vec![7, 0])], 2);
    assert!(matches!(
        without.proof(3),
        Err(PorError::UnknownCustomer(3))
    ));
    let theirs = full.proof(3).unwrap();
    assert!(verify(&theirs, &without.root().hash).is_err());
}

/// Two customers with equal balances share no leaf: the customer number and a salt of
/// their own are in each leaf, so one proof cannot serve two customers.
#[test]
fn two_customers_sharing_one_leaf_is_refused() {
    let t = tree(&[(1, vec![5, 5]), (2, vec![5, 5])], 1);
    let (a, b) = (t.proof(1).unwrap(), t.proof(2).unwrap());
    assert_ne!(a.salt, b.salt);
    assert_ne!(a.path[0].hash, b.path[0].hash, "their leaves differ");
    let mut relabelled = a.clone();
    relabelled.customer = 2;
    assert!(verify(&relabelled, &t.root().hash).is_err());
}

/// A customer number listed twice would let two balances hide behind one id.
#[test]
fn duplicate_customer_ids_are_refused() {
    let refused = SumTree::build(
        EPOCH,
        assets(),
        &[(4, vec![1, 1]), (4, vec![2, 2])],
        &secret(),
        small(2),
    );
    assert_eq!(refused.unwrap_err(), PorError::DuplicateCustomer(4));
}

/// The number of customers does not show: a tree of one customer and a tree of many
/// have the same height, and padding leaves look like leaves.
#[test]
fn padding_hides_the_number_of_customers() {
    let one = tree(&[(1, vec![1, 1])], 6);
    let many: Vec<(u64, Vec<u128>)> = (1..=40).map(|c| (c, vec![c.into(), 1])).collect();
    let forty = tree(&many, 6);
    assert_eq!(one.root().height, 6);
    assert_eq!(forty.root().height, 6);
    assert_eq!(
        one.proof(1).unwrap().path.len(),
        forty.proof(1).unwrap().path.len()
    );
    // Positions are scattered, not the first n leaves.
    let highest = (1..=40)
        .map(|c| forty.proof(c).unwrap().index)
        .max()
        .unwrap();
    assert!(highest >= 40, "customers fill the first leaves in order");
}

#[test]
fn malformed_proofs_are_refused_by_name() {
    let t = tree(&[(1, vec![5, 0])], 2);
    let bytes = t.proof(1).unwrap().encode().unwrap();
    assert_eq!(
        InclusionProof::decode(&bytes[..bytes.len() - 1]).unwrap_err(),
        PorError::Truncated("path")
    );
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        InclusionProof::decode(&longer).unwrap_err(),
        PorError::Trailing(1)
    );
    let mut version = bytes.clone();
    version[0] = 9;
    assert_eq!(
        InclusionProof::decode(&version).unwrap_err(),
        PorError::Version(9)
    );
    assert_eq!(
        InclusionProof::decode(&[]).unwrap_err(),
        PorError::Truncated("version")
    );
    let mut tall = bytes;
    tall[9] = 200;
    assert!(matches!(
        InclusionProof::decode(&tall),
        Err(PorError::Invalid {
            field: "height",
            ..
        })
    ));
}

#[test]
fn bad_input_to_a_build_is_refused_by_name() {
    let wrong_count = SumTree::build(EPOCH, assets(), &[(1, vec![1])], &secret(), small(1));
    assert_eq!(
        wrong_count.unwrap_err(),
        PorError::BalanceCount {
            customer: 1,
            got: 1,
            assets: 2
        }
    );
    let bad_asset = SumTree::build(EPOCH, vec!["btc".into()], &[], &secret(), small(1));
    assert!(matches!(
        bad_asset,
        Err(PorError::Invalid { field: "asset", .. })
    ));
    let none = SumTree::build(EPOCH, vec![], &[], &secret(), small(1));
    assert_eq!(none.unwrap_err(), PorError::AssetCount(0));
    assert!(!format!("{:?}", secret()).contains("42"));
}

#[test]
fn a_snapshot_claiming_more_accounts_than_it_holds_is_refused_before_allocating() {
    let snapshot = Snapshot {
        epoch: EPOCH,
        assets: assets(),
        accounts: vec![(1, vec![1, 2])],
        secret: secret(),
        config: small(1),
        variant: Variant::Plain,
        cap: 0,
    };
    let mut bytes = snapshot.encode().unwrap().to_vec();
    // The account count sits after version, epoch, height, secret and the assets.
    let at = 1 + 8 + 1 + 32 + 1 + (1 + 3) + (1 + 4);
    bytes[at..at + 8].copy_from_slice(&u64::MAX.to_be_bytes());
    assert_eq!(
        Snapshot::decode(&bytes).unwrap_err(),
        PorError::Truncated("accounts")
    );
}

/// A tree large enough to be built on every core, its leaves dense enough that most
/// have a customer beside them: every proof verifies, so no level was cut between two
/// siblings, and the totals add up.
#[test]
fn a_tree_built_in_parallel_proves_every_customer() {
    let accounts: Vec<(u64, Vec<u128>)> = (1..=20_000u64)
        .map(|c| (c * 3, vec![u128::from(c % 97), u128::from(c)]))
        .collect();
    let t = tree(&accounts, 15);
    let root = t.root();
    assert_eq!(root.height, 15);
    for (customer, balances) in &accounts {
        let proven = verify(&t.proof(*customer).unwrap(), &root.hash).unwrap();
        assert_eq!(proven.balances[1].1, balances[1]);
    }
    let total: u128 = accounts.iter().map(|(_, b)| b[1]).sum();
    assert_eq!(root.totals[1], total);
}
