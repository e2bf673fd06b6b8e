//! Property tests of the customer's witness: it accepts every honest extension of the
//! checkpoint it holds, whatever the steps, and refuses every fork, every rollback and
//! every altered proof — and a refusal leaves it holding what it held.

use proptest::prelude::*;
use ztx_audit::tree::{consistency_proof, root};
use ztx_audit::{Checkpoint, Hash, LogKey, MemoryTree, Witness, WitnessError};

const NAME: &str = "example.com/witnessed";

fn fail(e: impl std::fmt::Debug) -> TestCaseError {
    TestCaseError::fail(format!("{e:?}"))
}

fn key() -> Result<LogKey, TestCaseError> {
    LogKey::from_seed(NAME, &[42; 32]).map_err(fail)
}

/// A tree of `n` entries, entry `forged` (if any) replaced.
fn tree(n: u64, forged: Option<u64>) -> MemoryTree {
    let mut t = MemoryTree::new();
    for i in 0..n {
        if Some(i) == forged {
            t.push_entry(b"forged");
        } else {
            t.push_entry(&i.to_be_bytes());
        }
    }
    t
}

fn signed(t: &MemoryTree, size: u64) -> Result<String, TestCaseError> {
    let root = root(t, size).map_err(fail)?;
    Checkpoint::new(NAME, size, root)
        .sign(&key()?)
        .map_err(fail)
}

fn witness(t: &MemoryTree, size: u64) -> Result<Witness, TestCaseError> {
    Witness::new(key()?.verifier(), &signed(t, size)?).map_err(fail)
}

/// Sizes `0 < m < n` (so that the proof between them is not empty).
fn growing() -> impl Strategy<Value = (u64, u64)> {
    (2u64..300).prop_flat_map(|n| (1..n, Just(n)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn accepts_every_honest_extension_in_any_steps(
        n in 1u64..300, start in any::<prop::sample::Index>(),
        steps in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let t = tree(n, None);
        let mut at = start.index(usize::try_from(n + 1).unwrap()) as u64;
        let mut w = witness(&t, at)?;
        for step in steps {
            let next = at + step.index(usize::try_from(n - at + 1).unwrap()) as u64;
            let proof = consistency_proof(&t, at, next).unwrap();
            let accepted = w.accept(&signed(&t, next)?, &proof).unwrap();
            prop_assert_eq!(accepted.size, next);
            prop_assert_eq!(w.latest().size, next);
            prop_assert_eq!(w.note(), signed(&t, next)?);
            at = next;
        }
        // And a state kept between runs is the same witness.
        prop_assert_eq!(Witness::from_state(&w.to_state()).unwrap(), w);
    }

    /// A log that changed any entry the held checkpoint covers is refused at every later
    /// size, with the forked log's own proof or the honest one.
    #[test]
    fn refuses_every_fork((m, n) in growing(), at in any::<prop::sample::Index>(),
                          later in any::<prop::sample::Index>()) {
        let honest = tree(n, None);
        let forged_at = at.index(usize::try_from(m).unwrap()) as u64;
        let forked = tree(n, Some(forged_at));
        let mut w = witness(&honest, m)?;
        let before = w.clone();
        let to = m + later.index(usize::try_from(n - m + 1).unwrap()) as u64;
        let note = signed(&forked, to)?;
        for proof in [
            consistency_proof(&forked, m, to).unwrap(),
            consistency_proof(&honest, m, to).unwrap(),
        ] {
            let refused = w.accept(&note, &proof);
            if to == m {
                prop_assert!(matches!(refused, Err(WitnessError::Fork { .. })), "{:?}", refused);
            } else {
                prop_assert!(
                    matches!(refused, Err(WitnessError::NotAnExtension { .. })),
                    "{:?}", refused
                );
            }
            prop_assert_eq!(&w, &before);
        }
    }

    #[test]
    fn refuses_every_rollback((m, n) in growing(), back in any::<prop::sample::Index>()) {
        let t = tree(n, None);
        let mut w = witness(&t, n)?;
        let to = back.index(usize::try_from(n).unwrap()) as u64;
        prop_assert!(to < n && m < n);
        for proof in [vec![], consistency_proof(&t, to, n).unwrap()] {
            prop_assert_eq!(
                w.accept(&signed(&t, to)?, &proof),
                Err(WitnessError::Rollback { trusted: n, got: to })
            );
            prop_assert_eq!(w.latest().size, n);
        }
    }

    /// Every flipped bit, dropped, added or reordered hash of a proof is refused.
    #[test]
    fn refuses_every_altered_proof(
        (m, n) in growing(), pick in any::<prop::sample::Index>(), bit in 0usize..256,
    ) {
        let t = tree(n, None);
        let mut w = witness(&t, m)?;
        let before = w.clone();
        let note = signed(&t, n)?;
        let proof = consistency_proof(&t, m, n).unwrap();
        prop_assert!(!proof.is_empty());
        let at = pick.index(proof.len());
        let mut flipped = proof.clone();
        flipped[at].0[bit / 8] ^= 1 << (bit % 8);
        let mut dropped = proof.clone();
        dropped.remove(at);
        let mut added = proof.clone();
        added.insert(at, Hash::leaf(b"extra"));
        let mut alterations = vec![flipped, dropped, added];
        if proof.len() > 1 && proof[0] != proof[proof.len() - 1] {
            let mut reversed = proof.clone();
            reversed.reverse();
            alterations.push(reversed);
        }
        for altered in alterations {
            let refused = w.accept(&note, &altered);
            prop_assert!(
                matches!(refused, Err(WitnessError::NotAnExtension { from, to, .. }) if (from, to) == (m, n)),
                "{:?}", refused
            );
            prop_assert_eq!(&w, &before);
        }
        prop_assert!(w.accept(&note, &proof).is_ok());
    }
}
