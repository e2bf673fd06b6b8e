//! The audit log: a transparency log (RFC 6962 / RFC 9162) of every access attempt and
//! every administrative action, with signed checkpoints in the C2SP tlog-checkpoint
//! format, inclusion and consistency proofs, and the checks anyone can run on them.
//!
//! Pure: no IO, no clock, no randomness. The store keeps the entries and the tree's
//! nodes; the server signs checkpoints with a key it passes in; verifiers need only this
//! crate.

pub mod answers;
pub mod entry;
pub mod export;
pub mod hash;
pub mod note;
pub mod tree;
pub mod verify;
pub mod witness;

pub use compact_str::{ToCompactString, format_compact};
pub use entry::{Denial, Entry, EntryError, Kind, MAX_FIELD_LEN, MAX_PARAMS, Outcome, Text};
pub use hash::{HASH_LEN, Hash};
pub use note::{Checkpoint, LogKey, NoteError, VerifierKey};
pub use tree::{Completed, Frontier, MemoryTree, NodeSource, RangeError};
pub use verify::{ProofError, root_from_inclusion, verify_consistency, verify_inclusion};
pub use witness::{Witness, WitnessError};
