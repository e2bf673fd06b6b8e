//! The export: a log from its first entry, with the checkpoints it signed, as JSON lines
//! anyone can check offline against the log's public key — and that check.
//!
//! ```text
//! {"format":"ztx-audit-export","version":1,"origin":"<log>","size":N}
//! {"checkpoint":"<signed note>"}            one per checkpoint, smallest size first
//! {"index":0,"leaf":"<hex>","entry":"<base64>"}   one per entry, in order
//! ```
//!
//! The check replays the log: every entry in order, hashing to the leaf recorded beside
//! it, naming the leaf before it, decoding; the tree's root at every checkpoint's size
//! equal to the root that checkpoint signed; and, given a checkpoint the reader trusts
//! from before, the same root at its size. It stops at the first entry that breaks any
//! of this and names it.

use std::io::{BufRead, Write};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::entry::Entry;
use crate::hash::Hash;
use crate::note::{Checkpoint, VerifierKey};
use crate::tree::Frontier;

pub const FORMAT: &str = "ztx-audit-export";
pub const VERSION: u32 = 1;
/// The longest line read (an entry is at most 64 KiB before base64).
const MAX_LINE: usize = 128 * 1024;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    version: u32,
    origin: String,
    size: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointLine {
    checkpoint: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryLine {
    index: u64,
    leaf: String,
    entry: String,
}

/// Writes an export line by line.
#[derive(Debug)]
pub struct ExportWriter<W: Write> {
    out: W,
}

impl<W: Write> ExportWriter<W> {
    pub fn new(mut out: W, origin: &str, size: u64) -> std::io::Result<Self> {
        let header = Header {
            format: FORMAT.into(),
            version: VERSION,
            origin: origin.into(),
            size,
        };
        line(&mut out, &header)?;
        Ok(ExportWriter { out })
    }

    pub fn checkpoint(&mut self, note: &str) -> std::io::Result<()> {
        line(
            &mut self.out,
            &CheckpointLine {
                checkpoint: note.into(),
            },
        )
    }

    pub fn entry(&mut self, index: u64, leaf: &Hash, entry: &[u8]) -> std::io::Result<()> {
        line(
            &mut self.out,
            &EntryLine {
                index,
                leaf: leaf.to_hex(),
                entry: B64.encode(entry),
            },
        )
    }

    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

fn line<T: Serialize>(out: &mut impl Write, value: &T) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")
}

/// Why an export is not an intact log.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    #[error("line {line}: {what}")]
    Format { line: u64, what: String },
    #[error("entry {index} is bad: {why}")]
    BadEntry { index: u64, why: String },
    #[error("checkpoint at size {size}: {why}")]
    BadCheckpoint { size: u64, why: String },
    #[error("the log was cut: it ends at entry {have}, but a checkpoint signed {signed} entries")]
    Truncated { have: u64, signed: u64 },
    #[error("a fork: {0}")]
    Fork(String),
    #[error("cannot read the export: {0}")]
    Io(String),
}

/// What an intact export proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub size: u64,
    pub root: Hash,
    /// The newest checkpoint, which a reader may keep as trusted from now on.
    pub latest: Option<(Checkpoint, String)>,
    pub checkpoints: u64,
}

/// Checks an export against the log's key and, if given, a checkpoint trusted from an
/// earlier look (which the log must extend).
pub fn verify(
    reader: impl BufRead,
    key: &VerifierKey,
    trusted: Option<&Checkpoint>,
) -> Result<Verified, ExportError> {
    let mut lines = reader.lines().zip(1u64..);
    let mut next = |what: &str| -> Result<Option<(String, u64)>, ExportError> {
        match lines.next() {
            None => Ok(None),
            Some((Err(e), _)) => Err(ExportError::Io(format!("{what}: {e}"))),
            Some((Ok(text), n)) if text.len() > MAX_LINE => Err(ExportError::Format {
                line: n,
                what: format!("{what} is longer than {MAX_LINE} bytes"),
            }),
            Some((Ok(text), n)) => Ok(Some((text, n))),
        }
    };
    let (text, n) = next("the header")?.ok_or(ExportError::Format {
        line: 1,
        what: "empty: no header".into(),
    })?;
    let header: Header = parse(&text, n)?;
    if header.format != FORMAT || header.version != VERSION {
        return Err(ExportError::Format {
            line: n,
            what: format!("not a {FORMAT} v{VERSION} file"),
        });
    }
    if header.origin != key.name() {
        return Err(ExportError::Format {
            line: n,
            what: format!(
                "the log is {:?}, the key is {:?}",
                header.origin,
                key.name()
            ),
        });
    }
    let mut checkpoints: Vec<(Checkpoint, String)> = Vec::new();
    let mut frontier = Frontier::new();
    let mut last_leaf = Hash::ZERO;
    let mut pending = 0usize;
    let check_at = |frontier: &Frontier,
                    checkpoints: &[(Checkpoint, String)],
                    pending: &mut usize|
     -> Result<(), ExportError> {
        while let Some((c, _)) = checkpoints.get(*pending) {
            if c.size > frontier.size() {
                break;
            }
            if c.root != frontier.root() {
                return Err(ExportError::BadCheckpoint {
                    size: c.size,
                    why: "the entries up to it do not have the root it signed".into(),
                });
            }
            *pending += 1;
        }
        if let Some(t) = trusted
            && t.size == frontier.size()
            && t.root != frontier.root()
        {
            return Err(ExportError::Fork(format!(
                "the log's root at size {} is not the one in the trusted checkpoint",
                t.size
            )));
        }
        Ok(())
    };
    check_at(&frontier, &checkpoints, &mut pending)?;
    while let Some((text, n)) = next("a line")? {
        if text.starts_with("{\"checkpoint\"") {
            if frontier.size() > 0 {
                return Err(ExportError::Format {
                    line: n,
                    what: "a checkpoint after the entries began".into(),
                });
            }
            let line: CheckpointLine = parse(&text, n)?;
            let checkpoint = Checkpoint::open(&line.checkpoint, key).map_err(|e| {
                ExportError::BadCheckpoint {
                    size: 0,
                    why: format!("line {n}: {e}"),
                }
            })?;
            if let Some((before, _)) = checkpoints.last()
                && checkpoint.size <= before.size
            {
                return Err(ExportError::Format {
                    line: n,
                    what: "checkpoints out of order".into(),
                });
            }
            checkpoints.push((checkpoint, line.checkpoint));
            check_at(&frontier, &checkpoints, &mut pending)?;
            continue;
        }
        let line: EntryLine = parse(&text, n)?;
        let index = frontier.size();
        let bad = |why: String| ExportError::BadEntry { index, why };
        if line.index > index {
            return Err(bad(format!(
                "missing: the log goes on with entry {} (removed)",
                line.index
            )));
        }
        if line.index < index {
            return Err(ExportError::BadEntry {
                index: line.index,
                why: format!(
                    "appears again after entry {} (inserted or moved)",
                    index - 1
                ),
            });
        }
        let bytes = B64
            .decode(&line.entry)
            .map_err(|_| bad("its bytes are not base64".into()))?;
        let recorded =
            Hash::from_hex(&line.leaf).ok_or_else(|| bad("its leaf is not a hex hash".into()))?;
        let leaf = Hash::leaf(&bytes);
        if leaf != recorded {
            return Err(bad(
                "its bytes do not hash to the leaf the log recorded (edited)".into(),
            ));
        }
        let entry = Entry::decode(&bytes).map_err(|e| bad(format!("not a valid entry: {e}")))?;
        if entry.prev != last_leaf {
            return Err(bad(format!(
                "it does not name entry {} before it: that entry or this one was rewritten, \
                 or an entry removed, inserted or moved here",
                index.saturating_sub(1)
            )));
        }
        last_leaf = leaf;
        frontier.push(leaf, |_| {});
        check_at(&frontier, &checkpoints, &mut pending)?;
    }
    let size = frontier.size();
    if let Some((c, _)) = checkpoints.get(pending) {
        return Err(ExportError::Truncated {
            have: size,
            signed: c.size,
        });
    }
    if size != header.size {
        return Err(ExportError::Truncated {
            have: size,
            signed: header.size,
        });
    }
    if let Some(t) = trusted
        && t.size > size
    {
        return Err(ExportError::Fork(format!(
            "the export ends at {size} entries, before the trusted checkpoint's {}: \
             the log was cut or this is another log",
            t.size
        )));
    }
    Ok(Verified {
        size,
        root: frontier.root(),
        checkpoints: u64::try_from(checkpoints.len()).unwrap_or(u64::MAX),
        latest: checkpoints.pop(),
    })
}

fn parse<'a, T: Deserialize<'a>>(text: &'a str, line: u64) -> Result<T, ExportError> {
    serde_json::from_str(text).map_err(|e| ExportError::Format {
        line,
        what: e.to_string(),
    })
}
