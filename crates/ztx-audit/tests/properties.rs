//! Property tests: every proof the tree makes verifies, and every altered proof, leaf,
//! root or size fails; the streaming frontier agrees with the whole tree; entries have
//! exactly one encoding; a signed checkpoint survives no edit.

use std::net::IpAddr;

use proptest::prelude::*;
use ztx_audit::tree::{consistency_proof, inclusion_proof, root};
use ztx_audit::{
    Checkpoint, Denial, Entry, Frontier, Hash, Kind, LogKey, MemoryTree, NodeSource, Outcome,
    verify_consistency, verify_inclusion,
};

fn tree_of(n: u64) -> MemoryTree {
    let mut tree = MemoryTree::new();
    for i in 0..n {
        tree.push_entry(&i.to_be_bytes());
    }
    tree
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_inclusion_proof_verifies_and_every_alteration_fails(
        n in 1u64..300, i in any::<prop::sample::Index>(), bit in 0usize..256, pick in any::<prop::sample::Index>(),
    ) {
        let tree = tree_of(n);
        let index = i.index(usize::try_from(n).unwrap()) as u64;
        let root = root(&tree, n).unwrap();
        let leaf = Hash::leaf(&index.to_be_bytes());
        let proof = inclusion_proof(&tree, index, n).unwrap();
        prop_assert_eq!(verify_inclusion(index, n, &leaf, &proof, &root), Ok(()));

        // Another leaf, index or size does not verify.
        prop_assert!(verify_inclusion(index, n, &Hash::leaf(b"forged"), &proof, &root).is_err());
        if n > 1 {
            let other = (index + 1) % n;
            prop_assert!(verify_inclusion(other, n, &leaf, &proof, &root).is_err());
        }
        // (The size is bound to the root by the signed checkpoint, not by the path: the
        // path of leaf 0 in 5 leaves is also a well-shaped path in 6.)
        if n > 1 {
            let older = ztx_audit::tree::root(&tree, n - 1).unwrap();
            prop_assert!(verify_inclusion(index.min(n - 2), n, &leaf, &proof, &older).is_err());
        }
        // Any flipped bit of any hash of the proof fails.
        if !proof.is_empty() {
            let mut altered = proof.clone();
            let at = pick.index(altered.len());
            altered[at].0[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(verify_inclusion(index, n, &leaf, &altered, &root).is_err());
            prop_assert!(verify_inclusion(index, n, &leaf, &proof[1..], &root).is_err());
        }
        let mut longer = proof.clone();
        longer.push(root);
        prop_assert!(verify_inclusion(index, n, &leaf, &longer, &root).is_err());
    }

    #[test]
    fn every_consistency_proof_verifies_and_every_alteration_fails(
        n in 1u64..300, m in any::<prop::sample::Index>(), bit in 0usize..256, pick in any::<prop::sample::Index>(),
    ) {
        let tree = tree_of(n);
        let m = m.index(usize::try_from(n).unwrap() + 1) as u64;
        let old = root(&tree, m).unwrap();
        let new = root(&tree, n).unwrap();
        let proof = consistency_proof(&tree, m, n).unwrap();
        prop_assert_eq!(verify_consistency(m, n, &old, &new, &proof), Ok(()));
        if m > 0 && m < n {
            let mut altered = proof.clone();
            let at = pick.index(altered.len());
            altered[at].0[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(verify_consistency(m, n, &old, &new, &altered).is_err());
            prop_assert!(verify_consistency(m, n, &new, &old, &proof).is_err());
            prop_assert!(verify_consistency(m, n, &old, &new, &proof[1..]).is_err());
            prop_assert!(verify_consistency(m + 1, n, &old, &new, &proof).is_err());
        }
    }

    /// A fork — a log that rewrote any entry of the old tree — has no consistency proof
    /// from the old root, whatever proof it shows.
    #[test]
    fn a_rewritten_history_is_not_consistent(
        n in 2u64..200, m in any::<prop::sample::Index>(), victim in any::<prop::sample::Index>(),
    ) {
        let tree = tree_of(n);
        let m = 1 + m.index(usize::try_from(n - 1).unwrap()) as u64;
        let victim = victim.index(usize::try_from(m).unwrap()) as u64;
        let old = root(&tree, m).unwrap();
        let mut forked = MemoryTree::new();
        for i in 0..n {
            let entry = if i == victim { b"rewritten".to_vec() } else { i.to_be_bytes().to_vec() };
            forked.push_entry(&entry);
        }
        let new = root(&forked, n).unwrap();
        let proof = consistency_proof(&forked, m, n).unwrap();
        prop_assert!(verify_consistency(m, n, &old, &new, &proof).is_err());
    }

    #[test]
    fn the_frontier_agrees_with_the_whole_tree(n in 0u64..600) {
        let tree = tree_of(n);
        let mut frontier = Frontier::new();
        let mut completed = Vec::new();
        for i in 0..n {
            frontier.push(Hash::leaf(&i.to_be_bytes()), |c| completed.push(c));
        }
        prop_assert_eq!(frontier.root(), root(&tree, n).unwrap());
        prop_assert_eq!(&Frontier::of(&tree, n).unwrap(), &frontier);
        // Every node the frontier reports completed is the tree's node.
        for c in &completed {
            prop_assert_eq!(tree.perfect(c.level, c.index), Ok(c.hash));
        }
        // ... and there is one per perfect subtree: n leaves, n - popcount(n) parents.
        prop_assert_eq!(completed.len() as u64, 2 * n - u64::from(n.count_ones()));
    }

    /// A frontier rebuilt from another's peaks (what a range export carries) grows to
    /// the same roots; peaks of the wrong count are refused.
    #[test]
    fn a_frontier_resumed_from_its_peaks_grows_the_same_tree(m in 0u64..300, more in 0u64..300) {
        let tree = tree_of(m + more);
        let at_m = Frontier::of(&tree, m).unwrap();
        let mut resumed = Frontier::from_peaks(m, at_m.peaks().to_vec()).unwrap();
        prop_assert_eq!(&resumed, &at_m);
        for i in m..m + more {
            resumed.push(Hash::leaf(&i.to_be_bytes()), |_| {});
        }
        prop_assert_eq!(resumed.root(), root(&tree, m + more).unwrap());
        let mut extra = at_m.peaks().to_vec();
        extra.push(Hash::ZERO);
        prop_assert_eq!(Frontier::from_peaks(m, extra), None);
        if !at_m.peaks().is_empty() {
            prop_assert_eq!(Frontier::from_peaks(m, at_m.peaks()[1..].to_vec()), None);
        }
    }
}

fn text() -> impl Strategy<Value = String> {
    "[ -~é€]{0,24}"
}

fn entry() -> impl Strategy<Value = Entry> {
    use prop::sample::select;
    let kinds = select(Kind::ALL.to_vec());
    let outcomes = select(Outcome::ALL.to_vec());
    let denials = select(Denial::ALL.to_vec());
    (
        (any::<u64>(), kinds, any::<u64>(), any::<[u8; 32]>()),
        (any::<Option<u64>>(), any::<Option<u64>>()),
        (prop::option::of(text()), any::<Option<IpAddr>>(), text()),
        prop::collection::vec((text(), text()), 0..6),
        (outcomes, denials, any::<Option<i32>>()),
    )
        .prop_map(
            |(
                (time_ms, kind, request_id, prev),
                (customer, api_key),
                (operator, client_ip, action),
                params,
                (outcome, denial, code),
            )| Entry {
                prev: Hash(prev),
                time_ms,
                kind,
                request_id,
                customer,
                api_key,
                operator: operator.map(Into::into),
                client_ip,
                action: action.into(),
                params: ztx_audit::entry::params(params),
                outcome,
                denial: (outcome == Outcome::Denied).then_some(denial),
                code,
            },
        )
}

proptest! {
    #[test]
    fn entries_round_trip_through_their_encoding(e in entry()) {
        let bytes = e.encode().unwrap();
        prop_assert_eq!(e.clone().logged(), (e.clone(), bytes.clone()));
        prop_assert_eq!(Entry::decode(&bytes), Ok(e));
    }

    /// An entry encoded before its place in the log is known, then given its `prev` in
    /// the bytes, is byte for byte the entry encoded with that `prev`; bytes too short
    /// or of another version are left alone.
    #[test]
    fn prev_set_in_the_bytes_is_prev_encoded(e in entry(), prev in any::<[u8; 32]>(), cut in 0usize..33) {
        let (mut logged, mut bytes) = e.logged();
        prop_assert!(Entry::set_encoded_prev(&mut bytes, &Hash(prev)));
        logged.prev = Hash(prev);
        prop_assert_eq!(&bytes, &logged.encode().unwrap());
        let mut short = bytes.get(..cut).unwrap().to_vec();
        prop_assert!(!Entry::set_encoded_prev(&mut short, &Hash::ZERO));
        prop_assert_eq!(short.as_slice(), bytes.get(..cut).unwrap());
        let mut other = bytes.clone();
        other[0] = 2;
        prop_assert!(!Entry::set_encoded_prev(&mut other, &Hash::ZERO));
        prop_assert_eq!(other.get(1..33), bytes.get(1..33));
    }

    /// Whatever a caller puts in an entry, it can be logged: cut to the limits, it
    /// encodes, and decodes to the cut entry.
    #[test]
    fn any_entry_can_be_logged(mut e in entry(), long in "[a-zé]{1000,1100}", extra in 0usize..40, deny in any::<bool>()) {
        e.action = long.as_str().into();
        e.operator = Some(long.as_str().into());
        e.params = ztx_audit::entry::params((0..extra).map(|i| (format!("p{i}"), long.clone())));
        if deny { e.outcome = Outcome::Denied; e.denial = None; }
        let bytes = e.clone().to_bytes();
        let back = Entry::decode(&bytes).unwrap();
        // What the writer hands the monitor instead of these bytes is what they decode to.
        let (logged, same) = e.clone().logged();
        prop_assert_eq!(&same, &bytes);
        prop_assert_eq!(&logged, &back);
        prop_assert!(back.action.len() <= ztx_audit::entry::MAX_FIELD_LEN);
        prop_assert!(long.starts_with(back.action.trim_end_matches('…')));
        prop_assert!(back.params.len() <= ztx_audit::entry::MAX_PARAMS);
        prop_assert_eq!(back.denial.is_some(), back.outcome == Outcome::Denied);
        prop_assert_eq!(back.time_ms, e.time_ms);
    }

    /// Any bytes either fail to decode or are the one encoding of what they decode to.
    #[test]
    fn entries_have_one_encoding(bytes in prop::collection::vec(any::<u8>(), 0..200), e in entry(), cut in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>()) {
        if let Ok(decoded) = Entry::decode(&bytes) {
            prop_assert_eq!(decoded.encode().unwrap(), bytes);
        }
        let good = e.encode().unwrap();
        let cut = cut.index(good.len());
        prop_assert!(Entry::decode(&good[..cut]).is_err());
        let mut longer = good.clone();
        longer.push(0);
        prop_assert!(Entry::decode(&longer).is_err());
        let mut flipped = good.clone();
        flipped[flip.index(good.len())] ^= 0x80;
        if let Ok(decoded) = Entry::decode(&flipped) {
            prop_assert_eq!(decoded.encode().unwrap(), flipped);
        }
    }

    #[test]
    fn a_signed_checkpoint_survives_no_edit(size in any::<u64>(), root in any::<[u8; 32]>(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let key = LogKey::from_seed("ztx.example/audit", &[9; 32]).unwrap();
        let checkpoint = Checkpoint::new("ztx.example/audit", size, Hash(root));
        let note = checkpoint.sign(&key).unwrap();
        prop_assert_eq!(Checkpoint::open(&note, &key.verifier()), Ok(checkpoint));
        let mut edited = note.clone().into_bytes();
        let i = at.index(edited.len());
        if edited[i] != byte {
            edited[i] = byte;
            if let Ok(edited) = String::from_utf8(edited) {
                prop_assert!(Checkpoint::open(&edited, &key.verifier()).is_err(), "{:?}", edited);
            }
        }
    }
}
