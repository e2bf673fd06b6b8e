//! The customer's side of the log: the log's key and the last checkpoint seen, and the
//! refusal of any newer checkpoint that is not provably an extension of it.
//!
//! A log that shows one customer one history and another a different one (a fork), or
//! that forgets entries it once signed (a rollback), cannot hide it from someone who
//! remembers a checkpoint: every later checkpoint must either be the same tree or come
//! with a consistency proof (RFC 9162 §2.1.4) from the remembered one. The IO — where
//! the checkpoint and the proof come from, where the state is kept — is the caller's.

use serde::{Deserialize, Serialize};

use crate::hash::Hash;
use crate::note::{Checkpoint, MAX_NOTE_LEN, NoteError, VerifierKey};
use crate::verify::{ProofError, verify_consistency, verify_inclusion};

/// What a state file is, so that another file given by mistake is refused by name.
const STATE_FORMAT: &str = "ztx-audit-witness";
const STATE_VERSION: u32 = 1;
/// A note is at most [`MAX_NOTE_LEN`] bytes, and JSON at most doubles it (a note has no
/// control characters but its newlines); the key and the rest are short.
const MAX_STATE_LEN: usize = 2 * MAX_NOTE_LEN + 4096;

/// Why a checkpoint, a proof or a witness state is refused. Every variant is the log's
/// fault (or whoever stands between it and us), except a [`WitnessError::State`], which
/// is the local file's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WitnessError {
    #[error("the checkpoint does not open with the pinned key: {0}")]
    Note(NoteError),
    #[error(
        "a rollback: the log's checkpoint has {got} entries, but one with {trusted} was seen \
         before; a log never shrinks"
    )]
    Rollback { trusted: u64, got: u64 },
    #[error(
        "a fork: the log's checkpoint of {size} entries has root {got}, but the one seen \
         before has root {trusted}"
    )]
    Fork { size: u64, trusted: Hash, got: Hash },
    #[error(
        "the checkpoint of {to} entries is not proven to extend the one of {from} seen \
         before (a fork, or a bad proof): {why}"
    )]
    NotAnExtension { from: u64, to: u64, why: ProofError },
    #[error("entry {index} is not proven to be in the checkpoint of {size} entries: {why}")]
    NotIncluded {
        index: u64,
        size: u64,
        why: ProofError,
    },
    #[error("the witness state is not valid: {0}")]
    State(String),
}

/// The log's key and the newest checkpoint proven consistent with every one seen before.
///
/// It only ever moves forward: [`Witness::accept`] changes it only for a checkpoint that
/// extends the one it holds, and leaves it as it was on any refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witness {
    key: VerifierKey,
    latest: Checkpoint,
    note: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct State {
    format: String,
    version: u32,
    key: String,
    checkpoint: String,
}

impl Witness {
    /// Starts from a first checkpoint, trusted because it is the first seen (the key is
    /// what the caller chose to trust).
    pub fn new(key: VerifierKey, note: &str) -> Result<Witness, WitnessError> {
        let latest = Checkpoint::open(note, &key).map_err(WitnessError::Note)?;
        Ok(Witness {
            key,
            latest,
            note: note.to_owned(),
        })
    }

    pub fn key(&self) -> &VerifierKey {
        &self.key
    }

    /// The newest checkpoint accepted.
    pub fn latest(&self) -> &Checkpoint {
        &self.latest
    }

    /// The signed note of [`Witness::latest`], as the log signed it.
    pub fn note(&self) -> &str {
        &self.note
    }

    /// Opens a signed checkpoint with the pinned key (its origin must be the key's
    /// name) without accepting it: what a caller needs to know which proof to ask for.
    pub fn open(&self, note: &str) -> Result<Checkpoint, WitnessError> {
        Checkpoint::open(note, &self.key).map_err(WitnessError::Note)
    }

    /// The sizes of the consistency proof that `next` needs, if it needs one.
    pub fn proof_needed(&self, next: &Checkpoint) -> Option<(u64, u64)> {
        (next.size > self.latest.size).then_some((self.latest.size, next.size))
    }

    /// Accepts `note` if it is the same tree as the checkpoint held, or a larger one that
    /// `proof` proves consistent with it; then holds it. On any refusal nothing changes.
    pub fn accept(&mut self, note: &str, proof: &[Hash]) -> Result<Checkpoint, WitnessError> {
        let next = self.check(note, proof)?;
        self.latest = next.clone();
        note.clone_into(&mut self.note);
        Ok(next)
    }

    /// What [`Witness::accept`] checks, without holding the result.
    pub fn check(&self, note: &str, proof: &[Hash]) -> Result<Checkpoint, WitnessError> {
        let next = self.open(note)?;
        let trusted = &self.latest;
        if next.size < trusted.size {
            return Err(WitnessError::Rollback {
                trusted: trusted.size,
                got: next.size,
            });
        }
        if next.size == trusted.size && next.root != trusted.root {
            return Err(WitnessError::Fork {
                size: next.size,
                trusted: trusted.root,
                got: next.root,
            });
        }
        verify_consistency(trusted.size, next.size, &trusted.root, &next.root, proof).map_err(
            |why| WitnessError::NotAnExtension {
                from: trusted.size,
                to: next.size,
                why,
            },
        )?;
        Ok(next)
    }

    /// Checks that `leaf` is entry `index` of the tree the held checkpoint signed.
    pub fn check_inclusion(
        &self,
        index: u64,
        leaf: &Hash,
        proof: &[Hash],
    ) -> Result<(), WitnessError> {
        let size = self.latest.size;
        verify_inclusion(index, size, leaf, proof, &self.latest.root)
            .map_err(|why| WitnessError::NotIncluded { index, size, why })
    }

    /// The state to keep between runs: the key and the held checkpoint's signed note,
    /// as one JSON object.
    pub fn to_state(&self) -> String {
        let state = State {
            format: STATE_FORMAT.into(),
            version: STATE_VERSION,
            key: self.key.to_string(),
            checkpoint: self.note.clone(),
        };
        // A struct of strings and a number always serializes.
        let mut text = serde_json::to_string_pretty(&state).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Reads what [`Witness::to_state`] wrote; the checkpoint must still open with the
    /// key (a state edited by hand into an inconsistent one is refused).
    pub fn from_state(text: &str) -> Result<Witness, WitnessError> {
        if text.len() > MAX_STATE_LEN {
            return Err(WitnessError::State("longer than a state can be".into()));
        }
        let state: State =
            serde_json::from_str(text).map_err(|e| WitnessError::State(e.to_string()))?;
        if state.format != STATE_FORMAT || state.version != STATE_VERSION {
            return Err(WitnessError::State(format!(
                "not a {STATE_FORMAT} v{STATE_VERSION} file"
            )));
        }
        let key = VerifierKey::parse(&state.key)
            .map_err(|e| WitnessError::State(format!("its key: {e}")))?;
        Witness::new(key, &state.checkpoint)
            .map_err(|e| WitnessError::State(format!("its checkpoint: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::LogKey;
    use crate::tree::{MemoryTree, consistency_proof, inclusion_proof, root};

    const NAME: &str = "example.com/log";

    fn key() -> LogKey {
        LogKey::from_seed(NAME, &[7; 32]).unwrap()
    }

    fn tree(n: u64, tag: &str) -> MemoryTree {
        let mut t = MemoryTree::new();
        for i in 0..n {
            t.push_entry(format!("{tag}{i}").as_bytes());
        }
        t
    }

    fn signed(t: &MemoryTree, size: u64) -> String {
        Checkpoint::new(NAME, size, root(t, size).unwrap())
            .sign(&key())
            .unwrap()
    }

    fn witness_at(t: &MemoryTree, size: u64) -> Witness {
        Witness::new(key().verifier(), &signed(t, size)).unwrap()
    }

    #[test]
    fn accepts_an_extension_with_its_proof_and_holds_it() {
        let t = tree(13, "e");
        let mut w = witness_at(&t, 6);
        let proof = consistency_proof(&t, 6, 13).unwrap();
        let next = w.accept(&signed(&t, 13), &proof).unwrap();
        assert_eq!((next.size, w.latest().size), (13, 13));
        assert_eq!(w.note(), signed(&t, 13));
        // The same checkpoint again is no change.
        assert_eq!(w.accept(&signed(&t, 13), &[]).unwrap().size, 13);
    }

    #[test]
    fn refuses_a_forked_checkpoint() {
        let honest = tree(8, "e");
        let forked = tree(8, "forged");
        let mut w = witness_at(&honest, 8);
        let before = w.clone();
        let err = w.accept(&signed(&forked, 8), &[]).unwrap_err();
        assert!(matches!(err, WitnessError::Fork { size: 8, .. }), "{err}");
        assert!(err.to_string().starts_with("a fork"), "{err}");
        assert_eq!(w, before);
    }

    #[test]
    fn refuses_a_forked_larger_checkpoint_with_its_own_honest_proof() {
        let honest = tree(5, "e");
        let forked = tree(9, "forged");
        let mut w = witness_at(&honest, 5);
        let proof = consistency_proof(&forked, 5, 9).unwrap();
        let err = w.accept(&signed(&forked, 9), &proof).unwrap_err();
        assert!(
            matches!(
                err,
                WitnessError::NotAnExtension {
                    from: 5,
                    to: 9,
                    why: ProofError::OldRootMismatch { .. }
                }
            ),
            "{err}"
        );
        assert_eq!(w.latest().size, 5);
    }

    #[test]
    fn refuses_a_rolled_back_checkpoint() {
        let t = tree(10, "e");
        let mut w = witness_at(&t, 10);
        let err = w.accept(&signed(&t, 7), &[]).unwrap_err();
        assert_eq!(
            err,
            WitnessError::Rollback {
                trusted: 10,
                got: 7
            }
        );
        assert!(err.to_string().starts_with("a rollback"), "{err}");
        assert_eq!(w.latest().size, 10);
    }

    #[test]
    fn refuses_an_extension_without_a_proof() {
        let t = tree(10, "e");
        let mut w = witness_at(&t, 3);
        let err = w.accept(&signed(&t, 10), &[]).unwrap_err();
        assert!(
            matches!(
                err,
                WitnessError::NotAnExtension {
                    why: ProofError::Length { got: 0, .. },
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn refuses_an_altered_proof() {
        let t = tree(10, "e");
        let mut w = witness_at(&t, 3);
        let mut proof = consistency_proof(&t, 3, 10).unwrap();
        proof[1].0[0] ^= 1;
        assert!(matches!(
            w.accept(&signed(&t, 10), &proof),
            Err(WitnessError::NotAnExtension { .. })
        ));
        assert_eq!(w.latest().size, 3);
    }

    #[test]
    fn refuses_a_checkpoint_signed_by_another_key() {
        let t = tree(4, "e");
        let mut w = witness_at(&t, 2);
        let impostor = LogKey::from_seed(NAME, &[8; 32]).unwrap();
        let note = Checkpoint::new(NAME, 4, root(&t, 4).unwrap())
            .sign(&impostor)
            .unwrap();
        let proof = consistency_proof(&t, 2, 4).unwrap();
        let err = w.accept(&note, &proof).unwrap_err();
        assert!(
            matches!(err, WitnessError::Note(NoteError::NotSigned(_))),
            "{err}"
        );
    }

    #[test]
    fn refuses_a_checkpoint_whose_text_was_edited_after_signing() {
        let t = tree(4, "e");
        let mut w = witness_at(&t, 2);
        let note = signed(&t, 4).replacen("\n4\n", "\n5\n", 1);
        let err = w.accept(&note, &[]).unwrap_err();
        assert!(
            matches!(err, WitnessError::Note(NoteError::BadSignature(_))),
            "{err}"
        );
    }

    #[test]
    fn refuses_a_checkpoint_of_another_log_under_the_same_key() {
        let t = tree(4, "e");
        let mut w = witness_at(&t, 2);
        let note = key()
            .sign(&Checkpoint::new("other.example/log", 4, root(&t, 4).unwrap()).to_text())
            .unwrap();
        let err = w.accept(&note, &[]).unwrap_err();
        assert!(
            matches!(err, WitnessError::Note(NoteError::Origin { .. })),
            "{err}"
        );
    }

    #[test]
    fn checks_inclusion_against_the_held_checkpoint() {
        let t = tree(9, "e");
        let w = witness_at(&t, 9);
        let proof = inclusion_proof(&t, 4, 9).unwrap();
        let leaf = Hash::leaf(b"e4");
        assert_eq!(w.check_inclusion(4, &leaf, &proof), Ok(()));
        assert!(matches!(
            w.check_inclusion(4, &Hash::leaf(b"forged"), &proof),
            Err(WitnessError::NotIncluded {
                index: 4,
                size: 9,
                ..
            })
        ));
    }

    #[test]
    fn the_state_of_the_largest_note_round_trips() {
        // Backslashes and quotes are what JSON doubles.
        let t = tree(2, "e");
        let mut c = Checkpoint::new(NAME, 2, root(&t, 2).unwrap());
        let room = MAX_NOTE_LEN - c.to_text().len() - 200;
        c.extensions = vec!["\\\"".repeat(room / 20); 10];
        let w = Witness::new(key().verifier(), &c.sign(&key()).unwrap()).unwrap();
        assert!(w.note().len() > MAX_NOTE_LEN - 300);
        assert_eq!(Witness::from_state(&w.to_state()).unwrap(), w);
    }

    #[test]
    fn the_state_round_trips_and_an_edited_one_is_refused() {
        let t = tree(9, "e");
        let w = witness_at(&t, 9);
        let state = w.to_state();
        assert_eq!(Witness::from_state(&state).unwrap(), w);
        let edited = state.replace("\\n9\\n", "\\n8\\n");
        assert_ne!(edited, state);
        assert!(matches!(
            Witness::from_state(&edited),
            Err(WitnessError::State(_))
        ));
        assert!(Witness::from_state("{}").is_err());
        assert!(Witness::from_state("not json").is_err());
    }
}
