//! Known-answer tests. The tree vectors are RFC 6962's eight-leaf example as published in
//! transparency-dev/merkle (`proof/verify_test.go`: leaves, the root of every size, and
//! inclusion and consistency proofs). The note vector is the example of the Go
//! `golang.org/x/mod/sumdb/note` package (the PeterNeumann key).

use ztx_audit::tree::{consistency_proof, inclusion_proof, root};
use ztx_audit::{
    Checkpoint, Hash, LogKey, MemoryTree, NoteError, ProofError, VerifierKey, root_from_inclusion,
    verify_consistency, verify_inclusion,
};

const LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

const ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// (leaf index counted from 1, tree size, proof)
const INCLUSION: [(u64, u64, &[&str]); 4] = [
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        &[
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        3,
        3,
        &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    ),
    (
        2,
        5,
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
];

/// (size1, size2, proof)
const CONSISTENCY: [(u64, u64, &[&str]); 4] = [
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        &[
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
];

fn h(text: &str) -> Hash {
    Hash::from_hex(text).unwrap_or_else(Hash::empty)
}

fn at(i: u64) -> usize {
    usize::try_from(i).unwrap_or(usize::MAX)
}

fn hashes(list: &[&str]) -> Vec<Hash> {
    list.iter().map(|t| h(t)).collect()
}

fn tree() -> MemoryTree {
    let mut tree = MemoryTree::new();
    for leaf in LEAVES {
        tree.push_entry(&hex::decode(leaf).unwrap_or_default());
    }
    tree
}

#[test]
fn the_empty_tree_hashes_to_sha256_of_nothing() {
    assert_eq!(
        Hash::empty(),
        h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    );
    assert_eq!(root(&MemoryTree::new(), 0), Ok(Hash::empty()));
}

#[test]
fn roots_of_every_size_match_rfc6962() {
    let tree = tree();
    let mut frontier = ztx_audit::Frontier::new();
    for (size, want) in (1u64..).zip(ROOTS) {
        assert_eq!(root(&tree, size), Ok(h(want)), "root of size {size}");
        let leaf = LEAVES[at(size - 1)];
        frontier.push(Hash::leaf(&hex::decode(leaf).unwrap_or_default()), |_| {});
        assert_eq!(frontier.root(), h(want), "frontier root of size {size}");
    }
}

#[test]
fn inclusion_proofs_match_rfc6962_and_verify() {
    let tree = tree();
    for (leaf, size, proof) in INCLUSION {
        let index = leaf - 1;
        let want = hashes(proof);
        assert_eq!(inclusion_proof(&tree, index, size), Ok(want.clone()));
        let leaf_hash = Hash::leaf(&hex::decode(LEAVES[at(index)]).unwrap_or_default());
        let root = h(ROOTS[at(size) - 1]);
        assert_eq!(
            verify_inclusion(index, size, &leaf_hash, &want, &root),
            Ok(())
        );
    }
}

#[test]
fn consistency_proofs_match_rfc6962_and_verify() {
    let tree = tree();
    for (from, to, proof) in CONSISTENCY {
        let want = hashes(proof);
        assert_eq!(
            consistency_proof(&tree, from, to),
            Ok(want.clone()),
            "{from}->{to}"
        );
        let old = h(ROOTS[at(from) - 1]);
        let new = h(ROOTS[at(to) - 1]);
        assert_eq!(
            verify_consistency(from, to, &old, &new, &want),
            Ok(()),
            "{from}->{to}"
        );
    }
}

/// The corruptions transparency-dev/merkle applies to every known-good proof; none may
/// verify.
#[test]
fn corrupted_inclusion_proofs_fail() {
    let some = h("abacaba000000000000000000000000000000000000000000060061e00123456");
    for (leaf, size, proof) in INCLUSION {
        let index = leaf - 1;
        let proof = hashes(proof);
        let leaf_hash = Hash::leaf(&hex::decode(LEAVES[at(index)]).unwrap_or_default());
        let root = h(ROOTS[at(size) - 1]);
        let mut probes: Vec<(u64, u64, Hash, Hash, Vec<Hash>)> = vec![
            (index.wrapping_sub(1), size, root, leaf_hash, proof.clone()),
            (index + 1, size, root, leaf_hash, proof.clone()),
            (index ^ 2, size, root, leaf_hash, proof.clone()),
            (index, size * 2, root, leaf_hash, proof.clone()),
            (index, size / 2, root, leaf_hash, proof.clone()),
            (index, size, root, Hash::leaf(b"WrongLeaf"), proof.clone()),
            (index, size, Hash::empty(), leaf_hash, proof.clone()),
            (index, size, some, leaf_hash, proof.clone()),
            (
                index,
                size,
                root,
                leaf_hash,
                [proof.clone(), vec![root]].concat(),
            ),
            (
                index,
                size,
                root,
                leaf_hash,
                [vec![root], proof.clone()].concat(),
            ),
        ];
        for i in 0..proof.len() {
            let mut wrong = proof.clone();
            wrong[i].0[0] ^= 8;
            probes.push((index, size, root, leaf_hash, wrong));
        }
        if !proof.is_empty() {
            probes.push((
                index,
                size,
                root,
                leaf_hash,
                proof[..proof.len() - 1].to_vec(),
            ));
        }
        if proof.len() > 1 {
            let wrong = [vec![proof[0], some], proof[1..].to_vec()].concat();
            probes.push((index, size, root, leaf_hash, wrong));
        }
        for (n, (i, s, r, l, p)) in probes.iter().enumerate() {
            assert!(
                verify_inclusion(*i, *s, l, p, r).is_err(),
                "probe {n} of leaf {leaf} in {size} verified"
            );
        }
    }
}

#[test]
fn corrupted_consistency_proofs_fail() {
    for (from, to, proof) in CONSISTENCY {
        let proof = hashes(proof);
        let old = h(ROOTS[at(from) - 1]);
        let new = h(ROOTS[at(to) - 1]);
        let wrong_root = Hash::leaf(b"WrongRoot");
        let mut probes: Vec<(u64, u64, Hash, Hash, Vec<Hash>)> = vec![
            (from - 1, to, old, new, proof.clone()),
            (from + 1, to, old, new, proof.clone()),
            (from ^ 2, to, old, new, proof.clone()),
            (from, to * 2, old, new, proof.clone()),
            (from, to / 2, old, new, proof.clone()),
            (from, to, wrong_root, new, proof.clone()),
            (from, to, old, wrong_root, proof.clone()),
            (from, to, new, old, proof.clone()),
            (from, to, old, new, Vec::new()),
            (from, to, old, new, [proof.clone(), vec![old]].concat()),
            (from, to, old, new, [proof.clone(), vec![new]].concat()),
            (from, to, old, new, [vec![old], proof.clone()].concat()),
            (from, to, old, new, [vec![new], proof.clone()].concat()),
            (from, to, old, new, [vec![proof[0]], proof.clone()].concat()),
            (from, to, old, new, proof[..proof.len() - 1].to_vec()),
        ];
        for i in 0..proof.len() {
            let mut wrong = proof.clone();
            wrong[i].0[0] ^= 16;
            probes.push((from, to, old, new, wrong));
        }
        for (n, (f, t, o, w, p)) in probes.iter().enumerate() {
            assert!(
                verify_consistency(*f, *t, o, w, p).is_err(),
                "probe {n} of {from}->{to} verified"
            );
        }
    }
}

#[test]
fn trivial_consistency_cases() {
    let a = h(ROOTS[0]);
    let b = h(ROOTS[1]);
    assert_eq!(verify_consistency(1, 1, &a, &a, &[]), Ok(()));
    assert_eq!(
        verify_consistency(1, 1, &a, &b, &[]),
        Err(ProofError::Fork { size: 1 })
    );
    assert!(verify_consistency(1, 1, &a, &a, &[Hash::empty()]).is_err());
    assert_eq!(verify_consistency(0, 5, &Hash::empty(), &b, &[]), Ok(()));
    assert!(verify_consistency(0, 5, &a, &b, &[]).is_err());
    assert_eq!(
        verify_consistency(2, 1, &a, &b, &[]),
        Err(ProofError::Shrunk { from: 2, to: 1 })
    );
    assert!(verify_consistency(1, 2, &a, &b, &[]).is_err());
    assert!(root_from_inclusion(0, 0, &a, &[]).is_err());
    assert!(root_from_inclusion(2, 1, &a, &[]).is_err());
}

const GO_SIGNER: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const GO_VERIFIER: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                       then you don't know what your problem is.\n";
const GO_NOTE: &str = "If you think cryptography is the answer to your problem,\n\
                       then you don't know what your problem is.\n\
                       \n\
                       \u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

#[test]
fn signed_notes_match_the_go_note_package() {
    let key = LogKey::parse(GO_SIGNER).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(key.verifier().to_string(), GO_VERIFIER);
    assert_eq!(key.sign(GO_TEXT).as_deref(), Ok(GO_NOTE));
    assert_eq!(&*key.to_private_text(), GO_SIGNER);
    let verifier = VerifierKey::parse(GO_VERIFIER).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(verifier.open(GO_NOTE), Ok(GO_TEXT));
}

#[test]
fn an_edited_note_does_not_open() {
    let verifier = VerifierKey::parse(GO_VERIFIER).unwrap_or_else(|e| panic!("{e}"));
    let edited = GO_NOTE.replace("cryptography", "cryptographY");
    assert_eq!(
        verifier.open(&edited),
        Err(NoteError::BadSignature("PeterNeumann".into()))
    );
    // A note signed only by some other key is not signed by this one.
    let other = LogKey::from_seed("PeterNeumann", &[7; 32]).unwrap_or_else(|e| panic!("{e}"));
    let forged = other.sign(GO_TEXT).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        verifier.open(&forged),
        Err(NoteError::NotSigned(_))
    ));
    assert!(verifier.open(GO_TEXT).is_err());
}

#[test]
fn mangled_verifier_keys_are_refused() {
    // Every proper substring and every one-byte change of the key must fail to parse
    // (the Go package's own test).
    let bytes = GO_VERIFIER.as_bytes();
    for i in 0..=bytes.len() {
        for j in i + 1..=bytes.len() {
            if i == 0 && j == bytes.len() {
                continue;
            }
            let Ok(part) = std::str::from_utf8(&bytes[i..j]) else {
                continue;
            };
            assert!(VerifierKey::parse(part).is_err(), "{part:?} parsed");
        }
    }
    for i in 0..bytes.len() {
        let mut changed = bytes.to_vec();
        changed[i] = changed[i].wrapping_add(1);
        if let Ok(text) = std::str::from_utf8(&changed) {
            // Trailing base64 bits may be ignored by a lenient decoder; ours is strict.
            assert!(VerifierKey::parse(text).is_err(), "{text:?} parsed");
        }
    }
}

#[test]
fn checkpoints_round_trip_through_signed_notes() {
    let key = LogKey::from_seed("ztx.example/audit", &[1; 32]).unwrap_or_else(|e| panic!("{e}"));
    let checkpoint = Checkpoint::new("ztx.example/audit", 8, h(ROOTS[7]));
    assert_eq!(
        checkpoint.to_text(),
        "ztx.example/audit\n8\nXcnaeacGWamtVZy3Ad7Zoqudgjqt L0lgz+Nw7/RgQyg=\n".replace(' ', "")
    );
    let note = checkpoint.sign(&key).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        Checkpoint::open(&note, &key.verifier()),
        Ok(checkpoint.clone())
    );
    let other = LogKey::from_seed("other.example/log", &[1; 32]).unwrap_or_else(|e| panic!("{e}"));
    let misnamed = checkpoint.sign(&other).unwrap_or_else(|e| panic!("{e}"));
    assert!(Checkpoint::open(&misnamed, &other.verifier()).is_err());
    for bad in [
        "o\n08\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n",
        "o\n-8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n",
        "o\n8\nXcnaeacGWamtVZy3Ad7Zoqudgjqt\n",
        "o\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=",
        "\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n",
        "o\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n\n",
        "o\n18446744073709551616\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n",
    ] {
        assert!(Checkpoint::parse(bad).is_err(), "{bad:?} parsed");
    }
}

/// Sizes near 2^64 (found by fuzzing: a length computation shifted by 64) are refused,
/// not a panic.
#[test]
fn proofs_for_huge_sizes_are_refused_without_panicking() {
    let h = Hash::empty();
    for (index, size) in [(0, u64::MAX), (1 << 63, u64::MAX), (u64::MAX - 1, u64::MAX)] {
        assert!(verify_inclusion(index, size, &h, &[h], &h).is_err());
        assert!(verify_consistency(index.max(1), size, &h, &h, &[h]).is_err());
    }
}
