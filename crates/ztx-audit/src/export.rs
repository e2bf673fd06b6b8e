//! The export: a log, or a range of it, with the checkpoints it signed, as JSON lines
//! anyone can check offline against the log's public key — and that check.
//!
//! ```text
//! {"format":"ztx-audit-export","version":1,"origin":"<log>","size":N}
//! {"checkpoint":"<signed note>"}            one per checkpoint, smallest size first
//! {"index":0,"leaf":"<hex>","entry":"<base64>"}   one per entry, in order
//! ```
//!
//! A range of the log, entries `start..size`, has two more members in its header:
//! `"start":S` and `"peaks":["<hex>",…]`, the roots of the perfect subtrees of the tree of
//! the first `S` entries, largest first (one per set bit of `S`). They are not trusted:
//! the entries grow the tree on from them, and a checkpoint's root at its size proves
//! both. Its checkpoints are those of sizes `S` to `size`. A reader that predates ranges
//! refuses such a header by its unknown members rather than misreading it.
//!
//! The check replays the log: every entry in order, hashing to the leaf recorded beside
//! it, naming the leaf before it, decoding; the tree's root at every checkpoint's size
//! equal to the root that checkpoint signed; and, given a checkpoint the reader trusts
//! from before, the same root at its size. Every entry must be under a signed checkpoint:
//! an entry no signature covers proves nothing. It stops at the first entry that breaks
//! any of this and names it — or, where the evidence cannot tell which, the two entries
//! between which the chain breaks, or the entries since the last checkpoint that held.

use std::io::{BufRead, Read as _, Write};

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
    /// A range's first entry (0, and left out, for a whole log).
    #[serde(default, skip_serializing_if = "is_zero")]
    start: u64,
    /// The tree of the entries before `start`, as its peaks in hex.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    peaks: Vec<String>,
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if"
)]
fn is_zero(n: &u64) -> bool {
    *n == 0
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
    /// A whole log of `size` entries.
    pub fn new(out: W, origin: &str, size: u64) -> std::io::Result<Self> {
        Self::range(out, origin, &Frontier::new(), size)
    }

    /// The entries from `before.size()` to `size`, after the tree `before` of the
    /// entries ahead of them.
    pub fn range(mut out: W, origin: &str, before: &Frontier, size: u64) -> std::io::Result<Self> {
        let header = Header {
            format: FORMAT.into(),
            version: VERSION,
            origin: origin.into(),
            size,
            start: before.size(),
            peaks: before.peaks().iter().map(Hash::to_hex).collect(),
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
    /// The chain breaks between two entries; the evidence cannot tell which of them (or
    /// what between them) was changed.
    #[error(
        "entry {before} or {after} is bad: entry {after} does not name entry {before} before \
         it, so one of the two was rewritten, or entries were removed, inserted or moved \
         between them"
    )]
    Unchained { before: u64, after: u64 },
    #[error("checkpoint at size {size}: {why}")]
    BadCheckpoint { size: u64, why: String },
    #[error("the log was cut: it ends at entry {have}, but a checkpoint signed {signed} entries")]
    Truncated { have: u64, signed: u64 },
    #[error(
        "entry {first} is bad: no signed checkpoint covers it (nor the {} after it), so \
         nothing proves them (`ztx audit export` leaves out the entries the log has not \
         signed yet)",
        .size.saturating_sub(.first.saturating_add(1))
    )]
    Unsigned { first: u64, size: u64 },
    #[error("a fork: {0}")]
    Fork(String),
    /// The export does not reach the trusted checkpoint's size, or starts after it: it
    /// may be intact, but nothing shows it extends what the reader saw.
    #[error("cannot check the export against the trusted checkpoint: {0}")]
    Unchecked(String),
    #[error("nothing proves {0}")]
    Unproven(String),
    /// An entry the caller's own check refused.
    #[error("{0}")]
    Refused(String),
    #[error("cannot read the export: {0}")]
    Io(String),
}

/// What an intact export proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The first entry checked (0 for a whole log).
    pub start: u64,
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
    verify_with(reader, key, trusted, |_, _| Ok(()))
}

/// [`verify`], also handing each entry, decoded, to `check` as it goes. The first error
/// it returns is the answer, as [`ExportError::Refused`], once the export has proven
/// every entry; any other fault of the export comes first.
pub fn verify_with(
    reader: impl BufRead,
    key: &VerifierKey,
    trusted: Option<&Checkpoint>,
    mut check: impl FnMut(u64, &Entry) -> Result<(), String>,
) -> Result<Verified, ExportError> {
    let mut lines = Lines {
        reader,
        number: 0,
        buf: Vec::new(),
    };
    let (text, n) = lines.next("the header")?.ok_or(ExportError::Format {
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
    let mut log = Replay::start(&header, n, trusted)?;
    // The caller's refusal is of entries not yet proven when it is made (an unsigned
    // tail could hold anything): it stands only if the export proves them all.
    let mut refusal = None;
    while let Some((text, n)) = lines.next("a line")? {
        if text.starts_with("{\"checkpoint\"") {
            let line: CheckpointLine = parse(&text, n)?;
            let checkpoint = Checkpoint::open(&line.checkpoint, key).map_err(|e| {
                ExportError::BadCheckpoint {
                    size: 0,
                    why: format!("line {n}: {e}"),
                }
            })?;
            log.checkpoint(checkpoint, line.checkpoint, n)?;
            continue;
        }
        let line: EntryLine = parse(&text, n)?;
        let entry = log.entry(&line)?;
        if let Err(why) = check(line.index, &entry) {
            refusal.get_or_insert(why);
        }
    }
    let verified = log.finish(&header)?;
    match refusal {
        Some(why) => Err(ExportError::Refused(why)),
        None => Ok(verified),
    }
}

/// The check's state between lines.
struct Replay<'t> {
    start: u64,
    frontier: Frontier,
    /// The leaf of the entry before the next; unknown before a range's first entry.
    last_leaf: Option<Hash>,
    checkpoints: Vec<(Checkpoint, String)>,
    /// How many of `checkpoints` the entries so far have reached, and so checked.
    checked: usize,
    /// The size of the newest root that held: the entries before it are proven.
    proven: Option<u64>,
    trusted: Option<&'t Checkpoint>,
}

impl<'t> Replay<'t> {
    fn start(
        header: &Header,
        line: u64,
        trusted: Option<&'t Checkpoint>,
    ) -> Result<Replay<'t>, ExportError> {
        let bad = |what: String| ExportError::Format { line, what };
        let peaks = header
            .peaks
            .iter()
            .map(|p| Hash::from_hex(p).ok_or_else(|| bad(format!("peak {p:?} is not a hex hash"))))
            .collect::<Result<Vec<_>, _>>()?;
        let frontier = Frontier::from_peaks(header.start, peaks).ok_or_else(|| {
            bad(format!(
                "a range from entry {} needs {} peaks, not {}",
                header.start,
                header.start.count_ones(),
                header.peaks.len()
            ))
        })?;
        if header.size < header.start {
            return Err(bad(format!(
                "the range ends at {} before it starts at {}",
                header.size, header.start
            )));
        }
        if let Some(t) = trusted
            && t.size < header.start
        {
            return Err(ExportError::Unchecked(format!(
                "its {} entries end before this export's first, entry {}: export the log \
                 from entry {} or earlier",
                t.size, header.start, t.size
            )));
        }
        let mut log = Replay {
            start: header.start,
            frontier,
            last_leaf: (header.start == 0).then_some(Hash::ZERO),
            checkpoints: Vec::new(),
            checked: 0,
            proven: None,
            trusted,
        };
        log.check_roots()?;
        Ok(log)
    }

    fn checkpoint(
        &mut self,
        checkpoint: Checkpoint,
        note: String,
        line: u64,
    ) -> Result<(), ExportError> {
        let format = |what: &str| ExportError::Format {
            line,
            what: what.into(),
        };
        if self.frontier.size() > self.start {
            return Err(format("a checkpoint after the entries began"));
        }
        if checkpoint.size < self.start {
            return Err(format(
                "a checkpoint of a size before the range's first entry",
            ));
        }
        if let Some((before, _)) = self.checkpoints.last()
            && checkpoint.size <= before.size
        {
            return Err(format("checkpoints out of order"));
        }
        self.checkpoints.push((checkpoint, note));
        self.check_roots()
    }

    /// Checks an entry line and grows the tree by it; returns the entry, decoded.
    fn entry(&mut self, line: &EntryLine) -> Result<Entry, ExportError> {
        let index = self.frontier.size();
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
        if index == u64::MAX {
            return Err(bad("past the largest tree a log can have".into()));
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
        if index == 0 && entry.prev != Hash::ZERO {
            return Err(bad(
                "it names an entry before it, but it is the log's first".into(),
            ));
        }
        // A range's first entry names one the export does not hold; the root proves it.
        if let Some(last) = self.last_leaf
            && entry.prev != last
        {
            return Err(ExportError::Unchained {
                before: index.saturating_sub(1),
                after: index,
            });
        }
        self.last_leaf = Some(leaf);
        self.frontier.push(leaf, |_| {});
        self.check_roots()?;
        Ok(entry)
    }

    /// Checks the root of every checkpoint (and the trusted one) the entries have reached.
    fn check_roots(&mut self) -> Result<(), ExportError> {
        let size = self.frontier.size();
        let root = self.frontier.root();
        let trusted_here = self.trusted.filter(|t| t.size == size);
        while let Some((c, _)) = self.checkpoints.get(self.checked) {
            if c.size > size {
                break;
            }
            if c.root != root {
                // The reader's checkpoint of this size holds and the export's does not:
                // the log signed two trees of one size.
                if trusted_here.is_some_and(|t| t.root == root) {
                    return Err(ExportError::Fork(format!(
                        "the log signed two roots at size {size}: the trusted checkpoint's \
                         and one in the export"
                    )));
                }
                return Err(ExportError::BadCheckpoint {
                    size: c.size,
                    why: self.changed_since(c.size),
                });
            }
            self.checked += 1;
            self.proven = Some(size);
        }
        if let Some(t) = trusted_here {
            if t.root != root {
                return Err(ExportError::Fork(format!(
                    "the log's root at size {size} is not the one in the trusted checkpoint: \
                     its history before entry {size} is not the one the reader saw"
                )));
            }
            self.proven = Some(size);
        }
        Ok(())
    }

    /// Which entries a root that does not hold at `size` accuses: those since the last
    /// one that held. A rewrite whose chain was rewritten on to match breaks no link;
    /// only the roots see it, and they cannot say which of those entries it was.
    fn changed_since(&self, size: u64) -> String {
        let first = self.proven.unwrap_or(self.start);
        if size <= first {
            return if self.start > 0 {
                "the range's peaks are not the tree of the entries before it".into()
            } else {
                "it signs a root of no entries other than the empty tree's".into()
            };
        }
        let last = size - 1;
        let which = if first == last {
            format!("entry {first} is bad")
        } else {
            format!("one of entries {first} to {last} is bad")
        };
        let why = match self.proven {
            Some(held) if held > 0 => format!(" (the root at size {held} held)"),
            None if self.start > 0 => ", or the peaks of those before them".into(),
            _ => String::new(),
        };
        format!("the entries up to it do not have the root it signed: {which}{why}")
    }

    fn finish(mut self, header: &Header) -> Result<Verified, ExportError> {
        let size = self.frontier.size();
        if let Some((c, _)) = self.checkpoints.get(self.checked) {
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
        if let Some(t) = self.trusted
            && t.size > size
        {
            return Err(ExportError::Unchecked(format!(
                "the export ends at {size} entries, before its {}: export the log up to it \
                 or later (if this is the whole log, it was cut, or it is another log)",
                t.size
            )));
        }
        if self.start > 0 && self.proven.is_none() {
            return Err(ExportError::Unproven(format!(
                "the peaks of the entries before this range: it has no checkpoint of a size \
                 from {} on",
                self.start
            )));
        }
        let proven = self.proven.unwrap_or(self.start);
        if proven < size {
            return Err(ExportError::Unsigned {
                first: proven,
                size,
            });
        }
        Ok(Verified {
            start: self.start,
            size,
            root: self.frontier.root(),
            checkpoints: u64::try_from(self.checkpoints.len()).unwrap_or(u64::MAX),
            latest: self.checkpoints.pop(),
        })
    }
}

/// The export's lines, numbered from 1, each read no further than [`MAX_LINE`] bytes:
/// a file of one endless line is refused at that length, not read into memory whole.
struct Lines<R> {
    reader: R,
    number: u64,
    buf: Vec<u8>,
}

impl<R: BufRead> Lines<R> {
    fn next(&mut self, what: &str) -> Result<Option<(String, u64)>, ExportError> {
        self.buf.clear();
        let limit = u64::try_from(MAX_LINE)
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let read = (&mut self.reader)
            .take(limit)
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| ExportError::Io(format!("{what}: {e}")))?;
        if read == 0 {
            return Ok(None);
        }
        self.number += 1;
        let line = self.number;
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
            if self.buf.last() == Some(&b'\r') {
                self.buf.pop();
            }
        }
        if self.buf.len() > MAX_LINE {
            return Err(ExportError::Format {
                line,
                what: format!("{what} is longer than {MAX_LINE} bytes"),
            });
        }
        let text =
            String::from_utf8(std::mem::take(&mut self.buf)).map_err(|_| ExportError::Format {
                line,
                what: format!("{what} is not UTF-8"),
            })?;
        Ok(Some((text, line)))
    }
}

fn parse<'a, T: Deserialize<'a>>(text: &'a str, line: u64) -> Result<T, ExportError> {
    serde_json::from_str(text).map_err(|e| ExportError::Format {
        line,
        what: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use std::io::BufReader;

    use super::*;
    use crate::entry::{Kind, Outcome};
    use crate::note::LogKey;

    fn key() -> LogKey {
        LogKey::from_seed("ztx.test/audit", &[7; 32]).unwrap()
    }

    /// `n` chained entries: their bytes and leaves.
    fn entries(n: u64) -> Vec<(Vec<u8>, Hash)> {
        let mut prev = Hash::ZERO;
        (0..n)
            .map(|i| {
                let bytes = Entry {
                    prev,
                    time_ms: 1_700_000_000_000 + i,
                    kind: Kind::Request,
                    request_id: i,
                    customer: Some(3),
                    api_key: None,
                    operator: None,
                    client_ip: None,
                    action: "GET /api/v3/ping".into(),
                    params: Vec::new(),
                    outcome: Outcome::Success,
                    denial: None,
                    code: None,
                }
                .encode()
                .unwrap();
                prev = Hash::leaf(&bytes);
                (bytes, prev)
            })
            .collect()
    }

    /// The export of `log[start..end]` with checkpoints at `signed` sizes.
    fn export(log: &[(Vec<u8>, Hash)], start: u64, end: u64, signed: &[u64]) -> String {
        let key = key();
        let frontier = |size: u64| {
            let mut f = Frontier::new();
            for (_, leaf) in &log[..usize::try_from(size).unwrap()] {
                f.push(*leaf, |_| {});
            }
            f
        };
        let mut out = ExportWriter::range(Vec::new(), key.name(), &frontier(start), end).unwrap();
        for &size in signed {
            let root = frontier(size).root();
            out.checkpoint(&Checkpoint::new(key.name(), size, root).sign(&key).unwrap())
                .unwrap();
        }
        for i in start..end {
            let (bytes, leaf) = &log[usize::try_from(i).unwrap()];
            out.entry(i, leaf, bytes).unwrap();
        }
        String::from_utf8(out.finish().unwrap()).unwrap()
    }

    fn check(text: &str, trusted: Option<&Checkpoint>) -> Result<Verified, ExportError> {
        verify(text.as_bytes(), &key().verifier(), trusted)
    }

    fn refused(text: &str, expected: &str) {
        let e = check(text, None).unwrap_err().to_string();
        assert!(e.contains(expected), "{e:?} does not say {expected:?}");
    }

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    fn join(lines: &[String]) -> String {
        lines.iter().map(|l| format!("{l}\n")).collect()
    }

    fn checkpoint_at(log: &[(Vec<u8>, Hash)], size: u64) -> Checkpoint {
        let mut f = Frontier::new();
        for (_, leaf) in &log[..usize::try_from(size).unwrap()] {
            f.push(*leaf, |_| {});
        }
        Checkpoint::new(key().name(), size, f.root())
    }

    #[test]
    fn a_whole_log_and_every_range_of_it_verify() {
        let log = entries(13);
        let whole = check(&export(&log, 0, 13, &[5, 13]), None).unwrap();
        assert_eq!((whole.start, whole.size, whole.checkpoints), (0, 13, 2));
        assert_eq!(whole.latest.unwrap().0.size, 13);
        for start in 0..=13 {
            let range = check(&export(&log, start, 13, &[13]), None).unwrap();
            assert_eq!(
                (range.start, range.size, range.root),
                (start, 13, whole.root)
            );
        }
        // A range checked against a checkpoint trusted from within it.
        let trusted = checkpoint_at(&log, 9);
        check(&export(&log, 4, 13, &[13]), Some(&trusted)).unwrap();
        // A whole log's header is the one readers before ranges knew.
        assert!(
            !export(&log, 0, 13, &[13])
                .lines()
                .next()
                .unwrap()
                .contains("start")
        );
    }

    #[test]
    fn malformed_exports_are_refused_by_what_is_wrong() {
        let log = entries(6);
        let good = lines(&export(&log, 0, 6, &[3, 6]));
        let with = |i: usize, line: &str| {
            let mut l = good.clone();
            l[i] = line.to_string();
            join(&l)
        };
        refused("", "line 1: empty: no header");
        refused("{\"format\":", "line 1:");
        refused(
            &with(0, &good[0].replace("\"version\":1", "\"version\":9")),
            "not a ztx-audit-export v1 file",
        );
        refused(
            &with(0, &good[0].replace("ztx.test/audit", "ztx.other/audit")),
            "the log is \"ztx.other/audit\"",
        );
        refused(
            &with(0, &good[0].replace("\"size\":6", "\"size\":6,\"extra\":1")),
            "unknown field",
        );
        // Checkpoints: out of order, after the entries, not signed by the key.
        let mut swapped = good.clone();
        swapped.swap(1, 2);
        refused(&join(&swapped), "line 3: checkpoints out of order");
        let mut late = good.clone();
        let moved = late.remove(1);
        late.push(moved);
        refused(&join(&late), "a checkpoint after the entries began");
        let other = LogKey::from_seed("ztx.test/audit", &[8; 32]).unwrap();
        let forged = serde_json::to_string(&CheckpointLine {
            checkpoint: Checkpoint::new("ztx.test/audit", 3, Hash::ZERO)
                .sign(&other)
                .unwrap(),
        })
        .unwrap();
        refused(&with(1, &forged), "line 2:");
        // Entries: a leaf that is not hex, bytes that are not base64 or not an entry.
        let entry = |f: &dyn Fn(&mut EntryLine)| {
            let mut e: EntryLine = serde_json::from_str(&good[5]).unwrap();
            f(&mut e);
            with(5, &serde_json::to_string(&e).unwrap())
        };
        refused(
            &entry(&|e| e.leaf = "zz".into()),
            "entry 2 is bad: its leaf is not a hex",
        );
        refused(
            &entry(&|e| e.entry = "***".into()),
            "entry 2 is bad: its bytes are not base64",
        );
        refused(
            &entry(&|e| {
                e.entry = B64.encode(b"junk");
                e.leaf = Hash::leaf(b"junk").to_hex();
            }),
            "entry 2 is bad: not a valid entry",
        );
        refused(&with(5, "not json"), "line 6:");
        // Not text.
        let mut bytes = join(&good).into_bytes();
        bytes.extend_from_slice(b"\xff\xfe\n");
        let e = verify(&bytes[..], &key().verifier(), None).unwrap_err();
        assert_eq!(
            e,
            ExportError::Format {
                line: 10,
                what: "a line is not UTF-8".into()
            }
        );
    }

    /// A file of one endless line is refused at the longest line allowed, not read into
    /// memory whole.
    #[test]
    fn an_endless_line_is_refused_at_the_limit() {
        let endless = BufReader::new(std::io::repeat(b'x'));
        assert_eq!(
            verify(endless, &key().verifier(), None),
            Err(ExportError::Format {
                line: 1,
                what: format!("the header is longer than {MAX_LINE} bytes")
            })
        );
    }

    #[test]
    fn entries_no_checkpoint_signs_are_refused() {
        let log = entries(6);
        assert_eq!(
            check(&export(&log, 0, 6, &[]), None),
            Err(ExportError::Unsigned { first: 0, size: 6 })
        );
        let e = check(&export(&log, 0, 6, &[4]), None).unwrap_err();
        assert_eq!(e, ExportError::Unsigned { first: 4, size: 6 });
        assert!(
            e.to_string()
                .starts_with("entry 4 is bad: no signed checkpoint covers it (nor the 1 after it)")
        );
        // A trusted checkpoint signs them as well as one in the export.
        check(&export(&log, 0, 6, &[4]), Some(&checkpoint_at(&log, 6))).unwrap();
        // No entries, nothing to sign.
        check(&export(&log, 0, 0, &[]), None).unwrap();
    }

    /// A rewrite carried on through the chain breaks no link; the first root that does
    /// not hold names the entries since the last one that did.
    #[test]
    fn a_rewrite_with_its_chain_rewritten_is_placed_between_two_roots() {
        let mut log = entries(10);
        let mut forged = Entry::decode(&log[6].0).unwrap();
        forged.customer = Some(4);
        let mut prev = log[5].1;
        for item in log.iter_mut().skip(6) {
            let mut e = Entry::decode(&item.0).unwrap();
            if e.request_id == 6 {
                e = forged.clone();
            }
            e.prev = prev;
            item.0 = e.encode().unwrap();
            item.1 = Hash::leaf(&item.0);
            prev = item.1;
        }
        let honest = entries(10);
        let mut text = lines(&export(&log, 0, 10, &[]));
        // Checkpoints signed over the honest log.
        for (i, size) in [4u64, 10].into_iter().enumerate() {
            let c = checkpoint_at(&honest, size).sign(&key()).unwrap();
            text.insert(
                1 + i,
                serde_json::to_string(&CheckpointLine { checkpoint: c }).unwrap(),
            );
        }
        assert_eq!(
            check(&join(&text), None),
            Err(ExportError::BadCheckpoint {
                size: 10,
                why: "the entries up to it do not have the root it signed: one of entries 4 \
                      to 9 is bad (the root at size 4 held)"
                    .into()
            })
        );
    }

    #[test]
    fn a_broken_link_names_both_entries() {
        let log = entries(6);
        let mut text = lines(&export(&log, 0, 6, &[6]));
        // Entries 2 and 3 swapped, each with its own leaf.
        text.swap(4, 5);
        let fix = |line: &str, index: u64| {
            let mut e: EntryLine = serde_json::from_str(line).unwrap();
            e.index = index;
            serde_json::to_string(&e).unwrap()
        };
        text[4] = fix(&text[4], 2);
        text[5] = fix(&text[5], 3);
        let e = check(&join(&text), None).unwrap_err();
        assert_eq!(
            e,
            ExportError::Unchained {
                before: 1,
                after: 2
            }
        );
        assert!(e.to_string().starts_with("entry 1 or 2 is bad"), "{e}");
    }

    #[test]
    fn ranges_are_refused_where_they_cannot_be_checked() {
        let log = entries(9);
        let range = lines(&export(&log, 5, 9, &[9]));
        // Peaks: a wrong count, not hex, or not the tree of the entries before.
        let header: Header = serde_json::from_str(&range[0]).unwrap();
        assert_eq!(header.peaks.len(), 2);
        let with_header = |f: &dyn Fn(&mut Header)| {
            let mut h: Header = serde_json::from_str(&range[0]).unwrap();
            f(&mut h);
            let mut l = range.clone();
            l[0] = serde_json::to_string(&h).unwrap();
            join(&l)
        };
        refused(
            &with_header(&|h| {
                h.peaks.pop();
            }),
            "needs 2 peaks, not 1",
        );
        refused(
            &with_header(&|h| h.peaks[0] = "xyz".into()),
            "peak \"xyz\" is not a hex hash",
        );
        refused(
            &with_header(&|h| h.peaks[1] = Hash::leaf(b"other").to_hex()),
            "checkpoint at size 9: the entries up to it do not have the root it signed: one of \
             entries 5 to 8 is bad, or the peaks of those before them",
        );
        refused(
            &with_header(&|h| h.size = 4),
            "ends at 4 before it starts at 5",
        );
        // A range at the end of all sizes grows no further (and does not overflow).
        let mut last = lines(&export(&log, 5, 6, &[]));
        let mut h: Header = serde_json::from_str(&last[0]).unwrap();
        h.start = u64::MAX;
        h.size = u64::MAX;
        h.peaks = vec![Hash::ZERO.to_hex(); 64];
        last[0] = serde_json::to_string(&h).unwrap();
        let mut e: EntryLine = serde_json::from_str(&last[1]).unwrap();
        e.index = u64::MAX;
        last[1] = serde_json::to_string(&e).unwrap();
        refused(&join(&last), "past the largest tree a log can have");
        // A checkpoint at the range's start checks the peaks alone.
        refused(
            &with_header(&|h| h.peaks[1] = Hash::leaf(b"other").to_hex()).replacen(
                "{\"checkpoint\"",
                &format!(
                    "{}\n{{\"checkpoint\"",
                    serde_json::to_string(&CheckpointLine {
                        checkpoint: checkpoint_at(&log, 5).sign(&key()).unwrap()
                    })
                    .unwrap()
                ),
                1,
            ),
            "checkpoint at size 5: the range's peaks are not the tree of the entries before it",
        );
        // A checkpoint of a size before the range, or a trusted one before it.
        let early = export(&log, 5, 9, &[3, 9]);
        refused(
            &early,
            "a checkpoint of a size before the range's first entry",
        );
        let e = check(&join(&range), Some(&checkpoint_at(&log, 4))).unwrap_err();
        assert!(
            matches!(e, ExportError::Unchecked(ref why) if why.contains("export the log from entry 4 or earlier")),
            "{e}"
        );
    }

    /// A shorter export may be intact, but nothing shows it extends what the reader saw.
    #[test]
    fn an_export_that_ends_before_a_trusted_checkpoint_cannot_be_checked() {
        let log = entries(8);
        let e = check(&export(&log, 0, 5, &[5]), Some(&checkpoint_at(&log, 8))).unwrap_err();
        assert_eq!(
            e,
            ExportError::Unchecked(
                "the export ends at 5 entries, before its 8: export the log up to it or \
                 later (if this is the whole log, it was cut, or it is another log)"
                    .into()
            )
        );
    }

    /// A log rewritten from entry 3 on and signed again with the log's key (stolen):
    /// alone it verifies; against a checkpoint kept from before it is a fork.
    #[test]
    fn a_rewritten_log_signed_again_is_a_fork_of_a_kept_checkpoint() {
        let honest = entries(8);
        let mut forged = honest.clone();
        let mut prev = forged[2].1;
        for item in forged.iter_mut().skip(3) {
            let mut e = Entry::decode(&item.0).unwrap();
            e.prev = prev;
            e.customer = Some(99);
            item.0 = e.encode().unwrap();
            item.1 = Hash::leaf(&item.0);
            prev = item.1;
        }
        let text = export(&forged, 0, 8, &[4, 8]);
        check(&text, None).unwrap();
        assert_eq!(
            check(&text, Some(&checkpoint_at(&honest, 6))),
            Err(ExportError::Fork(
                "the log's root at size 6 is not the one in the trusted checkpoint: its \
                 history before entry 6 is not the one the reader saw"
                    .into()
            ))
        );
        // Kept at a size the export signs too: the log signed two roots for one size.
        let kept = checkpoint_at(&forged, 4);
        let mut text = lines(&export(&honest, 0, 8, &[8]));
        let honest_4 = checkpoint_at(&honest, 4).sign(&key()).unwrap();
        text.insert(
            1,
            serde_json::to_string(&CheckpointLine {
                checkpoint: honest_4,
            })
            .unwrap(),
        );
        // The honest entries hold at 4 against the honest checkpoint, so the kept
        // (forged) one is the other root at that size.
        assert_eq!(
            check(&join(&text), Some(&kept)),
            Err(ExportError::Fork(
                "the log's root at size 4 is not the one in the trusted checkpoint: its \
                 history before entry 4 is not the one the reader saw"
                    .into()
            ))
        );
        let wrong_4 = checkpoint_at(&forged, 4).sign(&key()).unwrap();
        text[1] = serde_json::to_string(&CheckpointLine {
            checkpoint: wrong_4,
        })
        .unwrap();
        assert_eq!(
            check(&join(&text), Some(&checkpoint_at(&honest, 4))),
            Err(ExportError::Fork(
                "the log signed two roots at size 4: the trusted checkpoint's and one in the \
                 export"
                    .into()
            ))
        );
    }

    #[test]
    fn a_first_entry_that_names_a_predecessor_is_refused() {
        let mut log = entries(3);
        let mut e = Entry::decode(&log[0].0).unwrap();
        e.prev = Hash::leaf(b"before");
        log[0].0 = e.encode().unwrap();
        log[0].1 = Hash::leaf(&log[0].0);
        assert_eq!(
            check(&export(&log, 0, 1, &[1]), None),
            Err(ExportError::BadEntry {
                index: 0,
                why: "it names an entry before it, but it is the log's first".into()
            })
        );
    }

    /// A range with no entries and no checkpoint proves nothing about its peaks.
    #[test]
    fn an_empty_range_without_a_checkpoint_proves_nothing() {
        let log = entries(6);
        let e = check(&export(&log, 4, 4, &[]), None).unwrap_err();
        assert!(matches!(e, ExportError::Unproven(_)), "{e}");
        // With the checkpoint of its start, the peaks are proven.
        check(&export(&log, 4, 4, &[4]), None).unwrap();
    }

    #[test]
    fn the_caller_s_check_sees_every_entry_and_can_refuse() {
        let log = entries(5);
        let text = export(&log, 2, 5, &[5]);
        let mut seen = Vec::new();
        verify_with(text.as_bytes(), &key().verifier(), None, |i, e| {
            seen.push((i, e.request_id));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, [(2, 2), (3, 3), (4, 4)]);
        let refuse_3 = |i: u64, _: &Entry| if i == 3 { Err("no".into()) } else { Ok(()) };
        let e = verify_with(text.as_bytes(), &key().verifier(), None, refuse_3);
        assert_eq!(e, Err(ExportError::Refused("no".into())));
    }

    /// Entries appended after the last checkpoint, chained but signed by nothing, that
    /// the caller's check would refuse (a second root for an epoch, say): the answer is
    /// that nothing proves them, not an accusation built on them.
    #[test]
    fn a_forged_unsigned_tail_cannot_make_the_check_accuse_the_platform() {
        let log = entries(5);
        let refuse_3 = |i: u64, _: &Entry| if i == 3 { Err("no".into()) } else { Ok(()) };
        let unsigned = export(&log, 2, 5, &[3]);
        let e = verify_with(unsigned.as_bytes(), &key().verifier(), None, refuse_3);
        assert_eq!(e, Err(ExportError::Unsigned { first: 3, size: 5 }));
    }
}
